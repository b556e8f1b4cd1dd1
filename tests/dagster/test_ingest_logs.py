"""OTLP/JSON log files through Dagster: a span file and a log file in one export hour, ingested by the ingest
assets with materialize(); events joined into the spans, the orphan quarantined, the audit identity kept."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from dagster import AssetKey, materialize

from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project, range_tags

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp_logs"
HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)


def ingest(project: Project, instance, first: datetime, last: datetime):
    return materialize([ingest_export_hours], resources=project.resources(), instance=instance,
                       tags=range_tags(f"{first:%Y-%m-%d-%H:%M}", f"{last:%Y-%m-%d-%H:%M}"))


def test_span_and_log_files_of_one_hour_are_joined_idempotently(project: Project, instance) -> None:
    folder = landing_folder(project.landing, HOUR)
    folder.mkdir(parents=True)
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, folder / path.name)
    # The next hour holds only a log file: its event's span is in the hour before, so it is an orphan there.
    later = landing_folder(project.landing, HOUR + timedelta(hours=1))
    later.mkdir(parents=True)
    (later / "late.logs.jsonl").write_text(json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "eventName": "gen_ai.choice", "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "body": {"kvlistValue": {"values": [{"key": "message", "value": {"kvlistValue": {"values": [
            {"key": "content", "value": {"stringValue": "late"}}]}}}]}}}]}]}]}) + "\n")

    result = ingest(project, instance, HOUR, HOUR + timedelta(hours=1))
    assert result.success
    spans = project.read("spans").set_index("span_id")
    assert len(spans) == 3 and set(spans["source_format"]) == {"otlp"}
    joined = spans.loc["eee19b7ec3c1b174"]
    assert [m["role"] for m in json.loads(joined["input_messages"])] == ["system", "user"]
    assert joined["output_text"] == "Open Settings, then Security, then Reset password."
    assert spans.loc["a1b2c3d4e5f60718", "output_text"] == "We are open 9:00 to 17:00, Monday to Friday."

    quarantine = project.read("quarantined_spans")
    assert sorted(quarantine["reason"]) == ["orphan_event", "orphan_event"]
    late = quarantine[quarantine["export_hour"] == pd.Timestamp(HOUR + timedelta(hours=1))].iloc[0]
    assert "span eee19b7ec3c1b174" in late["detail"] and "2026-12-07T14:00Z" in late["detail"]

    audit = project.read("ingest_audit")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"] + audit["events_joined"]
            + audit["records_ignored"]).all()
    logs = audit.set_index("source_file").loc["2026/12/07/13/2026-12-07T13.logs.jsonl"]
    assert (logs["events_joined"], logs["records_ignored"], logs["spans_quarantined"]) == (6, 1, 1)
    materialization = next(m for m in result.get_asset_materialization_events()
                           if m.asset_key == AssetKey("ingest_audit"))
    assert materialization.materialization.metadata["identity_holds"].value is True
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]

    order = {"spans": ["span_id"], "quarantined_spans": ["source_file", "detail"], "ingest_audit": ["source_file"]}
    first = {t: project.read(t).sort_values(keys).reset_index(drop=True) for t, keys in order.items()}
    assert ingest(project, instance, HOUR, HOUR + timedelta(hours=1)).success  # the same hours again
    for table, frame in first.items():
        again = project.read(table).sort_values(order[table]).reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, again, obj=table)
