"""The LLM-backed checks through Dagster, with the local OpenAI-compatible server as a real process that
fails a third of its calls: every checked answer ends scored or failed with a reason, and our own calls
are recorded as spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import materialize

from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.hallucination import (
    citation_checks,
    confidence_scores,
    grounding_checks,
    hallucination_scores,
    llm_checks,
)
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from tests.dagster.conftest import Project, range_tags
from tests.integration.llm_fixtures import llm_server_factory

__all__ = ["llm_server_factory"]

HOUR = datetime(2026, 10, 5, 10, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "trusted_corpus" / "documents"


@pytest.mark.slow
def test_checks_survive_a_flaky_llm(project: Project, instance, llm_server_factory, monkeypatch) -> None:
    server = llm_server_factory(error_rate=0.33, seed=3)
    monkeypatch.setenv("AIOBS_LLM__BASE_URL", server.base_url)
    monkeypatch.setenv("AIOBS_LLM__CACHE_DIR", str(project.root / "llm_cache"))
    monkeypatch.setenv("AIOBS_LLM__MAX_ATTEMPTS", "3")
    monkeypatch.setenv("AIOBS_LLM__BACKOFF_INITIAL_S", "0.01")
    monkeypatch.setenv("AIOBS_LLM__BACKOFF_MAX_S", "0.05")
    monkeypatch.setenv("AIOBS_HALLUCINATION__FACT_CHECK__CORPUS_DIR", str(CORPUS))
    monkeypatch.setenv("AIOBS_HALLUCINATION__FACT_CHECK__INDEX_CACHE_DIR", str(project.root / "index"))
    monkeypatch.setenv("AIOBS_HALLUCINATION__CONSISTENCY__MAX_CALLS_PER_HOUR", "30")
    generate(project.landing, HOUR, HOUR + timedelta(hours=2), seed=5, scale=0.4, incidents=[],
             feedback_root=project.feedback)
    result = materialize(
        [ingest_export_hours, ingest_feedback_hours, confidence_scores, citation_checks, grounding_checks,
         llm_checks, hallucination_scores],
        resources=project.resources(), instance=instance,
        tags=range_tags(f"{HOUR:%Y-%m-%d-%H:%M}", f"{HOUR + timedelta(hours=1):%Y-%m-%d-%H:%M}"))
    assert result.success

    for table in ("consistency_checks", "fact_checks"):
        checks = project.read(table)
        assert len(checks) > 0, table
        statuses = set(checks["status"])
        assert statuses <= {"scored", "failed", "skipped_budget", "skipped_sample", "skipped_no_messages",
                            "skipped_no_sentences", "skipped_no_claims", "not_covered"}, statuses
        scored = checks[checks["status"] == "scored"]
        assert scored["score"].between(0, 1).all()
        others = checks[checks["status"] != "scored"]
        assert others["score"].isna().all() and others["reason"].notna().all()
    consistency = project.read("consistency_checks")
    assert (consistency["status"] == "scored").any()
    assert consistency["calls"].sum() <= 2 * 30  # the per-hour budget held in both hours

    own = project.read("llm_check_spans")
    assert len(own) > 0 and (own["feature"] == "aiobs-checks").all()
    assert set(own["status"]) <= {"ok", "error"}
    assert own.loc[own["status"] == "error", "error_message"].notna().all()

    scores = project.read("hallucination_scores")
    assert scores["consistency"].notna().any()
