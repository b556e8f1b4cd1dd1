"""Langfuse blob-storage export files in a local landing folder, through the hourly ingest and feedback assets."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetCheckSeverity, materialize

from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.ingest import ingest_export_hours
from tests.dagster.conftest import Project

BLOB = Path(__file__).parents[1] / "fixtures" / "langfuse_blob"
WINDOW = "2026-12-07T14-00-00"
HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
PARTITION = f"{HOUR:%Y-%m-%d-%H:%M}"


def land(root: Path, *names: str) -> None:
    """Copy fixtures into the hour's folder, named `<table>-<window end>.<ext>` as a sync job might."""
    folder = root / f"{HOUR:%Y/%m/%d/%H}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        table, file = name.split("/")
        shutil.copy(BLOB / name, folder / f"{table}-{file}")


def test_blob_export_hour_through_ingest_and_feedback(project: Project, instance) -> None:
    land(project.landing, f"observations_v2/{WINDOW}.csv", f"observations/{WINDOW}.json",
         f"traces/{WINDOW}.jsonl", f"manifests/{WINDOW}.json")
    land(project.feedback, f"scores/{WINDOW}.csv")
    result = materialize([ingest_export_hours, ingest_feedback_hours], resources=project.resources(),
                         instance=instance, partition_key=PARTITION)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"spans_valid", "feedback_valid"} and checks["feedback_valid"].passed
    # Only the token-coverage warnings fail: the rate-limited ERROR generation o-2006 has no usage (1 of 5 llm).
    spans_check = checks["spans_valid"]
    assert not spans_check.passed and spans_check.severity == AssetCheckSeverity.WARN
    assert re.fullmatch(r"2 of \d+ expectations failed on 11 rows\.", spans_check.description)

    spans = project.read("spans")
    assert sorted(spans["span_id"]) == ["o-2001", "o-2002", "o-2003", "o-2004", "o-2005", "o-2006", "o-2007",
                                        "o-4001", "o-4002", "o-4003", "t-3002"]
    assert set(spans["source_format"]) == {"langfuse_blob"}
    joined = spans.set_index("span_id").loc["o-4002"]
    assert (joined["user_id"], joined["session_id"], joined["total_tokens"]) == ("user-43", "sess-9", 30)
    gen = spans.set_index("span_id").loc["o-2002"]
    assert (gen["input_tokens"], gen["cached_input_tokens"], gen["output_tokens"]) == (100, 60, 20)
    assert gen["source_file"] == f"2026/12/07/13/observations_v2-{WINDOW}.csv"

    quarantined = project.read("quarantined_spans")
    by_file = quarantined.groupby("source_file")["reason"].apply(sorted).to_dict()
    assert by_file == {
        f"2026/12/07/13/observations_v2-{WINDOW}.csv": ["invalid_type", "invalid_type", "invalid_type",
                                                        "missing_required_field", "missing_required_field"],
        f"2026/12/07/13/observations-{WINDOW}.json": ["missing_required_field"],
        f"2026/12/07/13/traces-{WINDOW}.jsonl": ["missing_required_field"],
    }
    audit = project.read("ingest_audit").set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit.loc[f"2026/12/07/13/manifests-{WINDOW}.json", "spans_found"] == 0
    assert set(audit["source_format"]) == {"langfuse_blob"}

    events = project.read("feedback_events")
    assert sorted(events["event_id"]) == ["s-5001", "s-5002", "s-5003", "s-5004", "s-5011"]
    assert set(events["source_format"]) == {"langfuse_blob"}
    assert sorted(project.read("quarantined_feedback")["reason"]) == [
        "invalid_type", "invalid_type", "missing_required_field", "missing_required_field", "not_user_feedback",
        "unsupported_record"]
    feedback_audit = project.read("feedback_audit").iloc[0]
    assert feedback_audit["events_found"] == feedback_audit["events_written"] + \
        feedback_audit["events_quarantined"] == 11

    # Re-materialising the hour replaces it: the same tables.
    again = materialize([ingest_export_hours, ingest_feedback_hours], resources=project.resources(),
                        instance=instance, partition_key=PARTITION)
    assert again.success
    assert sorted(project.read("spans")["span_id"]) == sorted(spans["span_id"])
    assert len(project.read("feedback_events")) == 5
