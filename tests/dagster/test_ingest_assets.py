"""The ingest multi-asset through Dagster: ranges, idempotence, the GX check, the sensor and schedule."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance, SkipReason, build_sensor_context, materialize

from aiobs_pipeline.definitions import defs
from aiobs_pipeline.defs.ingest import (
    hourly_ingest_schedule,
    ingest_export_hours,
    landing_sensor,
    spans_check,
)
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.ingest.partition import landing_folder
from aiobs_pipeline.schema import SPAN_COLUMNS, conform
from tests.dagster.conftest import Project, range_tags

DAY = datetime(2026, 10, 3, tzinfo=UTC)


def native_span(hour: datetime, i: int, **extra: object) -> str:
    start = hour + timedelta(minutes=i % 60)
    return json.dumps({
        "span_id": f"{hour:%H}-{i}", "trace_id": f"{hour:%H}-t{i // 2}", "name": "chat_completion",
        "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat(),
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}], "response": f"a{i}",
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        "metadata": {"user_id": f"u{i % 3}", "feature": "chat"}, **extra,
    })


def land(project: Project, hour: datetime, name: str, lines: list[str]) -> Path:
    folder = landing_folder(project.landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest_range(project: Project, instance: DagsterInstance, first: datetime, last: datetime):
    return materialize(
        [ingest_export_hours], resources=project.resources(), instance=instance,
        tags=range_tags(f"{first:%Y-%m-%d-%H:%M}", f"{last:%Y-%m-%d-%H:%M}"),
    )


def test_range_run_writes_every_partition_and_keeps_the_audit_identity(project: Project, instance) -> None:
    hours = [DAY + timedelta(hours=h) for h in range(3)]
    for n, hour in enumerate(hours):
        land(project, hour, "native.jsonl", [native_span(hour, i) for i in range(5 + n)] + ["{oops"])
    result = ingest_range(project, instance, hours[0], hours[-1])
    assert result.success

    spans = project.read("spans")
    audit = project.read("ingest_audit")
    quarantine = project.read("quarantined_spans")
    assert len(spans) == 5 + 6 + 7
    assert sorted(spans["export_hour"].unique()) == [pd.Timestamp(h) for h in hours]
    assert len(quarantine) == 3 and set(quarantine["reason"]) == {"invalid_json"}
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit["spans_written"].sum() == len(spans)

    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["spans_valid"] and checks[0].passed
    materialization = next(m for m in result.get_asset_materialization_events()
                           if m.asset_key == AssetKey("ingest_audit"))
    assert materialization.materialization.metadata["identity_holds"].value is True


def test_rematerialising_a_partition_replaces_exactly_it(project: Project, instance) -> None:
    h0, h1 = DAY, DAY + timedelta(hours=1)
    land(project, h0, "a.jsonl", [native_span(h0, i) for i in range(4)])
    land(project, h1, "a.jsonl", [native_span(h1, i) for i in range(6)])
    assert ingest_range(project, instance, h0, h1).success
    first = project.read("spans").sort_values("span_id").reset_index(drop=True)

    assert ingest_range(project, instance, h0, h1).success  # the same backfill again: same tables
    again = project.read("spans").sort_values("span_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again)

    land(project, h1, "a.jsonl", [native_span(h1, i) for i in range(2)])  # the hour's export changed
    assert ingest_range(project, instance, h1, h1).success
    spans = project.read("spans")
    counts = spans.groupby("export_hour").size().to_dict()
    assert counts == {pd.Timestamp(h0): 4, pd.Timestamp(h1): 2}
    assert len(project.read("ingest_audit")) == 2


def test_unreadable_file_is_reported_and_the_rest_is_written(project: Project, instance) -> None:
    land(project, DAY, "good.jsonl", [native_span(DAY, i) for i in range(3)])
    (landing_folder(project.landing, DAY) / "broken.jsonl.gz").write_bytes(b"plain text, not gzip")
    result = ingest_range(project, instance, DAY, DAY)
    assert result.success
    assert len(project.read("spans")) == 3
    quarantine = project.read("quarantined_spans")
    assert quarantine["reason"].tolist() == ["unreadable_file"]
    materialization = next(m for m in result.get_asset_materialization_events()
                           if m.asset_key == AssetKey("quarantined_spans"))
    assert materialization.materialization.metadata["unreadable_files"].value == ["2026/10/03/00/broken.jsonl.gz"]


def test_empty_hour_materialises_empty_tables(project: Project, instance) -> None:
    result = ingest_range(project, instance, DAY, DAY)
    assert result.success
    assert project.read("spans").empty


def test_spans_check_fails_on_rows_that_break_the_suite() -> None:
    rows = pd.DataFrame([{
        "trace_id": "t", "span_id": "s", "name": "n", "kind": "llm", "start_time": DAY, "status": "ok",
        "model": "m", "input_tokens": 1, "output_tokens": 1, "source_format": "native", "source_file": "f",
        "source_line": 1, "export_hour": DAY, "schema_version": 1,
    }] * 2)
    spans = conform(rows, SPAN_COLUMNS)
    audit = pd.DataFrame({"spans_written": [2]})
    result = spans_check(spans, audit)
    assert result.passed is False
    assert "span_id" in result.metadata["report"].value


def test_landing_sensor_run_key_follows_the_file_set(tmp_path: Path, instance) -> None:
    resources = {"aiobs": AiobsSettings(landing_root=str(tmp_path))}
    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        assert isinstance(landing_sensor.evaluate_tick(context).skip_message, str)

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    folder = landing_folder(tmp_path, hour)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(native_span(hour, 1) + "\n")
    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        first = landing_sensor.evaluate_tick(context).run_requests
    assert len(first) == 1
    assert first[0].partition_key == f"{hour:%Y-%m-%d-%H:%M}"
    assert first[0].run_key.startswith(first[0].partition_key + ":")

    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        assert landing_sensor.evaluate_tick(context).run_requests[0].run_key == first[0].run_key

    (folder / "b.jsonl").write_text(native_span(hour, 2) + "\n")
    past = time.time() - 10
    os.utime(folder / "b.jsonl", (past, past))
    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        changed = landing_sensor.evaluate_tick(context).run_requests
    assert changed[0].run_key != first[0].run_key and changed[0].partition_key == first[0].partition_key


def test_landing_sensor_leaves_the_open_hour_until_it_closes(tmp_path: Path, instance) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for hour in (now, now - timedelta(hours=1)):
        folder = landing_folder(tmp_path, hour)
        folder.mkdir(parents=True)
        (folder / "a.jsonl").write_text(native_span(hour, 1) + "\n")
    resources = {"aiobs": AiobsSettings(landing_root=str(tmp_path))}
    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        requests = landing_sensor.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == [f"{now - timedelta(hours=1):%Y-%m-%d-%H:%M}"]
    # Every requested key is a real partition of the job: the daemon would fail the tick otherwise.
    partitions = defs.resolve_job_def("hourly_job").partitions_def
    assert all(partitions.has_partition_key(r.partition_key) for r in requests)


def test_hourly_schedule_targets_the_previous_hour(instance) -> None:
    from dagster import build_schedule_context

    when = datetime(2026, 10, 3, 5, 15, tzinfo=UTC)
    with build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        requests = hourly_ingest_schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-10-03-04:00"]
    assert not isinstance(requests, SkipReason)
