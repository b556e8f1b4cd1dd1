"""Hallucination assets through Dagster on a generated incident day: the prompt version that cites
documents it never retrieved and the model change with ungrounded answers are what gets flagged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import materialize

from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.hallucination import (
    citation_checks,
    confidence_scores,
    flagged_responses,
    grounding_checks,
    hallucination_scores,
    llm_checks,
)
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from tests.dagster.conftest import Project, range_tags
from tests.integration.llm_fixtures import llm_server

__all__ = ["llm_server"]

DAY = datetime(2026, 10, 5, tzinfo=UTC)
ASSETS = [ingest_export_hours, ingest_feedback_hours, confidence_scores, citation_checks, grounding_checks,
          llm_checks, hallucination_scores, flagged_responses]


@pytest.mark.slow
def test_incident_answers_are_flagged(project: Project, instance, llm_server, monkeypatch) -> None:
    # Consistency re-queries go to the local server, a few per hour; fact checks stay off (no corpus).
    monkeypatch.setenv("AIOBS_LLM__BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AIOBS_LLM__CACHE_DIR", str(project.root / "llm_cache"))
    monkeypatch.setenv("AIOBS_HALLUCINATION__CONSISTENCY__MAX_CALLS_PER_HOUR", "6")
    generate(project.landing, DAY, DAY + timedelta(days=1), seed=5, scale=0.3, feedback_root=project.feedback)
    truth = {i["kind"]: i for i in json.loads((project.landing / "_ground_truth.json").read_text())["incidents"]}
    result = materialize(ASSETS, resources=project.resources(), instance=instance,
                         tags=range_tags(f"{DAY:%Y-%m-%d-%H:%M}", f"{DAY + timedelta(hours=23):%Y-%m-%d-%H:%M}"))
    assert result.success

    spans = project.read("spans")
    citations = project.read("citation_checks").merge(spans[["span_id", "feature", "prompt_version"]], on="span_id")
    bad_version = truth["bad_prompt_version"]["params"]
    invalid = citations[citations["citation_score"] < 1]
    assert len(invalid) > 0
    # Every answer with a citation of a document that was not retrieved is from the bad prompt version.
    assert set(zip(invalid["feature"], invalid["prompt_version"], strict=True)) == {
        (bad_version["feature"], bad_version["prompt_version"])}

    scores = project.read("hallucination_scores").merge(spans[["span_id", "feature", "model"]], on="span_id")
    scored = scores[scores["trust_score"].notna()]
    # The looping user's repeated plain chat calls carry no signal; most other answers get a score.
    ordinary = scores[~scores["span_id"].isin(truth["infinite_loop"]["span_ids"])]
    assert ordinary["trust_score"].notna().mean() > 0.4
    assert scored["trust_score"].between(0, 1).all() and (scored["signals_used"] >= 1).all()
    assert (scores.loc[scores["trust_score"].isna(), "signals_used"] == 0).all()  # no signal, no score
    changed = truth["model_change"]
    is_after = scores["span_id"].isin(changed["span_ids"])
    after = scores[is_after]
    before = scores[(scores["feature"] == changed["params"]["feature"]) & ~is_after]
    assert after["trust_score"].notna().sum() >= 5
    assert after["trust_score"].mean() < before["trust_score"].mean() - 0.1

    flagged = project.read("flagged_responses")
    assert (flagged["risk_level"] == "high").all() and len(flagged) > 0
    incident_ids = set(truth["bad_prompt_version"]["span_ids"]) | set(truth["model_change"]["span_ids"])
    assert flagged["span_id"].isin(incident_ids).mean() > 0.8, "most flagged answers are incident answers"
    assert flagged["output_text"].notna().all()
