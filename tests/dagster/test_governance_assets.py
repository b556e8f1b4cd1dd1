"""The retention asset through Dagster on both warehouses: old content is nulled (metrics kept), then old rows
and landing folders are deleted, recent data is untouched, and every removal lands in retention_log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import Definitions, materialize

from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.governance import defs as governance_defs
from aiobs_pipeline.defs.governance import retention
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.generate import generate
from tests.dagster.conftest import Project, range_tags

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
OLD = (NOW - timedelta(days=100)).replace(hour=10)
RECENT = NOW - timedelta(days=2)


def _config(project: Project, spans_days: str) -> Path:
    path = project.root / f"aiobs-{spans_days}.toml"
    warehouse = (f'kind = "duckdb"\nduckdb_path = "{project.duckdb_path}"\nschema_name = "{project.schema}"\n'
                 if project.kind == "duckdb" else f'kind = "postgres"\nschema_name = "{project.schema}"\n')
    path.write_text(f"[warehouse]\n{warehouse}[alerts]\nstate_path = \"{project.root / 'alerts.sqlite'}\"\n"
                    f"[governance]\nspan_content_days = 30\nquarantine_days = 30\n"
                    + (f"spans_days = {spans_days}\nfeedback_days = {spans_days}\nlanding_days = {spans_days}\n"
                       f"feedback_landing_days = {spans_days}\n" if spans_days != "none" else
                       "spans_days = 400\nfeedback_days = 400\nlanding_days = 400\nfeedback_landing_days = 400\n"))
    return path


def _resources(project: Project, config: Path) -> dict:
    resources = project.resources()
    resources["aiobs"] = AiobsSettings(config_file=str(config), landing_root=str(project.landing),
                                       feedback_root=str(project.feedback), reports_dir=str(project.root / "reports"))
    return resources


def test_retention_nulls_content_then_deletes_old_data(project: Project, instance,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if project.postgres_url:
        monkeypatch.setenv("AIOBS_WAREHOUSE__POSTGRES_URL", project.postgres_url)
    for start in (OLD, RECENT):
        generate(project.landing, start, start + timedelta(hours=2), seed=3, scale=0.2, incidents=[],
                 formats=("native", "otlp"), feedback_root=project.feedback, inject_bad_records=False)
        result = materialize([ingest_export_hours, ingest_feedback_hours], resources=project.resources(),
                             instance=instance, tags=range_tags(f"{start:%Y-%m-%d-%H:%M}",
                                                                f"{start + timedelta(hours=1):%Y-%m-%d-%H:%M}"))
        assert result.success
    before = project.read("spans")
    old = before["export_hour"] < RECENT - timedelta(days=1)
    assert old.any() and (~old).any()

    # Only content retention (30 days) applies: old spans keep their row and metrics, lose their messages.
    first = materialize([retention], resources=_resources(project, _config(project, "none")), instance=instance)
    assert first.success
    spans = project.read("spans").sort_values("span_id").reset_index(drop=True)
    assert len(spans) == len(before)
    by_id = spans.set_index("span_id")
    old_ids = before.loc[old, "span_id"]
    recent_ids = before.loc[~old & (before["kind"] == "llm"), "span_id"]
    assert by_id.loc[old_ids, ["input_messages", "output_text", "output_messages"]].isna().all().all()
    # Retrieved documents keep their ids, scores and ranks, nothing else.
    old_documents = before.set_index("span_id").loc[old_ids, "documents"].dropna()
    assert len(old_documents) > 0
    for span_id, text in old_documents.items():
        kept = json.loads(by_id.loc[span_id, "documents"])
        assert all(set(document) == {"id", "score", "rank"} for document in kept), kept
        assert [d["id"] for d in kept] == [d.get("id") for d in json.loads(text)]
    assert by_id.loc[old_ids, "latency_ms"].notna().all()
    llm_old = before.loc[old & (before["kind"] == "llm"), "span_id"]
    assert by_id.loc[llm_old, "input_tokens"].notna().all()
    # Recent rows are untouched (an error span may have had no output to begin with).
    recent_before = before.set_index("span_id").loc[recent_ids, "output_text"]
    assert recent_before.notna().any()
    assert by_id.loc[recent_ids, "output_text"].equals(recent_before)
    log = project.read("retention_log")
    nulled = log[(log["action"] == "null_content") & (log["target"] == "spans")]
    content = before[["input_messages", "output_text", "output_messages", "documents"]].notna().any(axis=1)
    assert int(nulled["rows"].sum()) == int((old & content).sum()) > 0
    assert (log.loc[log["action"] == "delete_rows", "rows"] == 0).all()

    # Now 60 days for spans, feedback and landing: the data of 100 days ago goes, the recent data stays.
    second = materialize([retention], resources=_resources(project, _config(project, "60")), instance=instance)
    assert second.success
    after = project.read("spans")
    assert set(after["span_id"]) == set(before.loc[~old, "span_id"])
    assert (project.read("feedback_events")["export_hour"] >= RECENT).all()
    assert not (project.landing / f"{OLD:%Y/%m}").exists() and not (project.feedback / f"{OLD:%Y/%m}").exists()
    assert any((project.landing / f"{RECENT:%Y/%m/%d/%H}").iterdir())
    log = project.read("retention_log")
    assert log["run_id"].nunique() == 2
    deleted = log[(log["action"] == "delete_rows") & (log["target"] == "spans")]
    assert int(deleted["rows"].max()) == int(old.sum())
    landing = log[(log["action"] == "delete_folders") & (log["setting"] == "landing_days")]
    assert int(landing["files"].max()) >= 2 and int(landing["bytes"].max()) > 0
    metadata = second.asset_materializations_for_node("retention")[0].metadata
    assert "| spans | delete_rows | spans_days |" in metadata["removed"].value
    assert metadata["rows_deleted"].value >= int(old.sum())

    # A third run finds nothing more to remove.
    third = materialize([retention], resources=_resources(project, _config(project, "60")), instance=instance)
    assert third.success
    assert third.asset_materializations_for_node("retention")[0].metadata["rows_deleted"].value == 0


def test_governance_definitions_load() -> None:
    defs = Definitions.merge(governance_defs, Definitions(resources={"aiobs": AiobsSettings()}))
    job = defs.resolve_job_def("retention_job")
    assert job.name == "retention_job"
    schedule = defs.resolve_schedule_def("retention_schedule")
    assert schedule.cron_schedule == "40 4 * * *"
    assert retention.group_names_by_key[retention.key] == "governance"
