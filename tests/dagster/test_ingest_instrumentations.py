"""Recorded instrumentation exports (tests/fixtures/conformance) through the ingest asset: the Logfire stream
fold and the Langfuse observations reach the warehouse as one row per call.

The recordings are moved back by SHIFT (every OTLP time, and Langfuse's completion start time), so their hour is
a complete partition whenever the test runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project, range_tags

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conformance"
SHIFT = timedelta(days=28)
TIME_FIELDS = ("startTimeUnixNano", "endTimeUnixNano", "timeUnixNano")
COMPLETION_START = "langfuse.observation.completion_start_time"


def shifted(value: Any) -> Any:
    """An OTLP request with every time moved back by SHIFT."""
    if isinstance(value, list):
        return [shifted(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: shifted(v) for k, v in value.items()}
    for key in TIME_FIELDS:
        if key in out:
            out[key] = str(int(out[key]) - int(SHIFT.total_seconds()) * 1_000_000_000)
    if out.get("key") == COMPLETION_START:
        moment = datetime.fromisoformat(json.loads(out["value"]["stringValue"]).replace("Z", "+00:00"))
        out["value"] = {"stringValue": json.dumps((moment - SHIFT).isoformat())}
    return out


def land_fixture(project: Project, name: str) -> tuple[datetime, dict]:
    manifest = json.loads((FIXTURES / name / "manifest.json").read_text(encoding="utf-8"))
    nanos = int(SHIFT.total_seconds()) * 1_000_000_000
    for call in manifest["calls"]:
        for key in [k for k in call if k.endswith("_unix_nano") and call[k] is not None]:
            call[key] -= nanos
    first = min(c["client_started_unix_nano"] for c in manifest["calls"])
    hour = datetime.fromtimestamp(first // 1_000_000_000, tz=UTC).replace(minute=0, second=0)
    folder = landing_folder(project.landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    lines = (FIXTURES / name / manifest["files"]["spans"]).read_text(encoding="utf-8").splitlines()
    (folder / f"{name}.otlp.jsonl").write_text(
        "".join(json.dumps(shifted(json.loads(line))) + "\n" for line in lines if line.strip()), encoding="utf-8")
    return hour, manifest


@pytest.mark.parametrize("name", ["logfire", "langfuse-observe"])
def test_recorded_export_becomes_one_row_per_call(project: Project, instance, name: str) -> None:
    if not (FIXTURES / name / "manifest.json").exists():
        pytest.skip(f"fixture {name} not recorded in this checkout")
    hour, manifest = land_fixture(project, name)
    key = f"{hour:%Y-%m-%d-%H:%M}"
    result = materialize([ingest_export_hours], resources=project.resources(), instance=instance,
                         tags=range_tags(key, key))
    assert result.success
    spans = project.read("spans")
    calls = spans[spans["kind"].isin(["llm", "embedding"])].sort_values("start_time")
    assert len(calls) == len(manifest["calls"])
    assert list(calls["input_tokens"]) == [c["response"]["input_tokens"] for c in manifest["calls"]]
    assert list(calls["user_id"]) == [c["user_id"] for c in manifest["calls"]]
    stream = next(i for i, c in enumerate(manifest["calls"]) if c["kind"] == "stream")
    row, call = calls.iloc[stream], manifest["calls"][stream]
    assert row["output_tokens"] == call["response"]["output_tokens"]
    assert row["end_time"].value >= call["client_first_content_unix_nano"]  # the row covers the stream
    assert len(project.read("quarantined_spans")) == 0
    audit = project.read("ingest_audit")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
