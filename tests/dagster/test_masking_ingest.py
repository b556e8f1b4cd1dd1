"""PII masking through the ingest assets, on DuckDB and PostgreSQL: with `ingest.mask_pii` on, no PII value
written into the landing files reaches spans, quarantined_spans or ingest_audit; counts are recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from dagster import AssetKey, materialize

from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from aiobs_pipeline.generate.runner import BAD_RECORDS_HOUR
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project

HOUR = datetime(2026, 10, 3, BAD_RECORDS_HOUR, tzinfo=UTC)
# Written into the landing files below; none of them may be stored.
PII = {
    "email": "maria.lopez@example.com",
    "phone": "+44 20 7946 0958",
    "credit_card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "us_ssn": "536-90-4399",
    "ipv4": "203.0.113.77",
    "api_key": "sk-proj-Zx9Qw8Er7Ty6Ui5Op4As3Df2",
}


def _span(span_id: str, **fields: object) -> bytes:
    start = HOUR + timedelta(minutes=20)
    return orjson.dumps({
        "trace_id": "pii-trace", "span_id": span_id, "name": "chat_completion", "kind": "llm",
        "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=2)).isoformat(),
        "model": "gpt-4o-mini", "usage": {"prompt_tokens": 40, "completion_tokens": 12},
        "metadata": {"user_id": "user_007", "feature": "support"}, **fields,
    })


def _land_pii(project: Project) -> None:
    """One native file with PII in every masked field, plus records that go to quarantine with PII in them."""
    lines = [
        _span("pii-1", messages=[{"role": "user", "content": f"I'm {PII['email']}, card {PII['credit_card']}"}],
              response=f"Thanks, we will call you on {PII['phone']}."),
        _span("pii-2", messages=[{"role": "user", "content": f"Pay to {PII['iban']}; my SSN is {PII['us_ssn']}"}],
              metadata={"user_id": "user_008", "feature": "support", "client_ip": PII["ipv4"]}),
        _span("pii-3", status="error", error=f"401 for key {PII['api_key']}",
              documents=[{"doc_id": "kb-9", "content": f"Escalations: {PII['email']}", "score": 0.91}]),
        # Quarantined: negative tokens (a row rule), and a line cut off mid-record (invalid JSON).
        _span("pii-4", usage={"prompt_tokens": -1, "completion_tokens": 2},
              messages=[{"role": "user", "content": f"ssn {PII['us_ssn']}, mail {PII['email']}"}]),
        b'{"span_id": "pii-5", "messages": [{"role": "user", "content": "call ' + PII["phone"].encode() + b'",',
    ]
    folder = landing_folder(project.landing, HOUR)
    (folder / "native-pii.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def _stored_text(project: Project) -> str:
    return "\n".join(project.read(table).to_json() for table in ("spans", "quarantined_spans", "ingest_audit"))


@pytest.mark.slow
def test_masking_on_keeps_pii_out_of_every_ingest_table(project: Project, instance,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    generate(project.landing, HOUR, HOUR + timedelta(hours=1), seed=11, scale=0.3, inject_bad_records=True)
    _land_pii(project)
    monkeypatch.setenv("AIOBS_INGEST__MASK_PII", "true")
    result = materialize([ingest_export_hours], resources=project.resources(), instance=instance,
                         partition_key=f"{HOUR:%Y-%m-%d-%H:%M}")
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())

    stored = _stored_text(project)
    leaked = [name for name, value in PII.items() if value in stored or value.replace(" ", "") in stored]
    assert not leaked, f"PII stored unmasked: {leaked}"

    spans = project.read("spans").set_index("span_id")
    assert spans.loc[["pii-1", "pii-2", "pii-3"], "pii_masked"].tolist() == [4, 3, 3]
    assert orjson.loads(spans.at["pii-1", "input_messages"])[0]["content"] == "I'm [EMAIL], card [CREDIT_CARD]"
    assert (spans.drop(index=["pii-1", "pii-2", "pii-3"])["pii_masked"] == 0).all()  # generated traffic
    quarantine = project.read("quarantined_spans")
    mine = quarantine[quarantine["source_file"].str.endswith("native-pii.jsonl")]
    assert sorted(mine["reason"]) == ["invalid_json", "negative_value"] and (mine["pii_masked"] >= 1).all()
    assert len(quarantine) > len(mine)  # the generator's injected bad records are there too

    audit = project.read("ingest_audit").set_index("source_file")
    row = audit.loc[next(f for f in audit.index if f.endswith("native-pii.jsonl"))]
    by_pattern = orjson.loads(row["pii_masked_by_pattern"])
    assert set(by_pattern) == set(PII) and row["pii_masked"] == sum(by_pattern.values())
    assert (audit["pii_masked"] >= 0).all()

    spans_event = next(m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey("spans"))
    metadata = spans_event.materialization.metadata
    assert metadata["pii_masking"].value == "on" and metadata["pii_masked"].value == int(audit["pii_masked"].sum())


@pytest.mark.slow
def test_masking_off_stores_text_as_it_came(project: Project, instance) -> None:
    landing_folder(project.landing, HOUR).mkdir(parents=True)
    _land_pii(project)
    result = materialize([ingest_export_hours], resources=project.resources(), instance=instance,
                         partition_key=f"{HOUR:%Y-%m-%d-%H:%M}")
    assert result.success
    assert PII["email"] in _stored_text(project)
    assert project.read("ingest_audit")["pii_masked"].isna().all()
    event = next(m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey("spans"))
    assert event.materialization.metadata["pii_masking"].value == "off"
