"""A LangSmith bulk-export Parquet file in a local landing folder, ingested and priced through Dagster."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey, materialize

from aiobs_pipeline.defs.costs import priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project

FIXTURES = Path(__file__).parents[1] / "fixtures" / "langsmith_bulk"
HOUR = datetime(2026, 12, 7, 10, tzinfo=UTC)
OUTER, INNER = (f"b2000000-0000-4000-8000-00000000000{i}" for i in (1, 2))


def test_parquet_runs_are_ingested_priced_once_and_bad_files_quarantined(project: Project, instance) -> None:
    folder = landing_folder(project.landing, HOUR)
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "runs_v1.parquet", folder / "part-00000.parquet")
    shutil.copy(FIXTURES / "not_parquet.parquet", folder / "part-00001.parquet")

    result = materialize([ingest_export_hours, priced_spans], resources=project.resources(), instance=instance,
                         partition_key=f"{HOUR:%Y-%m-%d-%H:%M}")
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks} == {"spans_valid": True, "unpriced_share": True}

    spans = project.read("spans").set_index("span_id")
    # No window in the hourly layout: the whole file is this hour's, its other hours' runs are late spans.
    assert len(spans) == 7 and set(spans["source_format"]) == {"langsmith_bulk"}
    assert spans.at[INNER, "time_to_first_token_ms"] == 395.0
    assert spans.at[INNER, "parent_span_id"] == OUTER

    quarantine = project.read("quarantined_spans")
    assert sorted(quarantine["reason"]) == ["end_before_start", "invalid_type", "missing_required_field",
                                            "negative_value", "unreadable_file"]
    unreadable = quarantine[quarantine["reason"] == "unreadable_file"].iloc[0]
    assert unreadable["source_file"] == "2026/12/07/10/part-00001.parquet"
    assert "not a readable Parquet file" in unreadable["detail"]

    audit = project.read("ingest_audit").set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit.at["2026/12/07/10/part-00000.parquet", "late_spans"] == 5

    priced = project.read("priced_spans").set_index("span_id")
    assert priced.at[OUTER, "cost_status"] == "rollup" and priced.at[INNER, "billable"]
    assert priced[priced["trace_id"] == OUTER]["billable"].sum() == 1
    keys = {m.asset_key for m in result.get_asset_materialization_events()}
    assert {AssetKey("spans"), AssetKey("priced_spans"), AssetKey("ingest_audit")} <= keys
