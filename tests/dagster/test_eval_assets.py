"""Eval assets through Dagster on a generated incident day with feedback: the eval dataset (versioned,
deduplicated, redacted), the prompt-version scorecard, and the prompt regression job against the local LLM
server as a real process.

`hallucination_scores` is materialised here by a stand-in asset with the same key, partitions and IO
manager that combines the no-LLM detectors (confidence, citations, grounding) with the domain functions:
the real asset also waits for the LLM consistency / fact checks, which this test does not exercise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import BackfillPolicy, Definitions, Output, asset, materialize
from rapidfuzz import fuzz, utils

from aiobs_pipeline.defs.costs import priced_spans
from aiobs_pipeline.defs.evals import eval_dataset, prompt_regression_job, prompt_version_scorecard
from aiobs_pipeline.defs.feedback import ingest_feedback_hours, satisfaction_scores_daily
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.partitions import hourly_partitions
from aiobs_pipeline.evals.dataset import CASES_FILE, MANIFEST_FILE, list_versions
from aiobs_pipeline.generate import generate
from aiobs_pipeline.hallucination import (
    citation_checks,
    confidence_scores,
    grounding_checks,
    score_frame,
    with_trace_documents,
)
from tests.dagster.conftest import Project, range_tags
from tests.integration.llm_fixtures import llm_server

__all__ = ["llm_server"]

DAY = datetime(2026, 10, 5, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@asset(name="hallucination_scores", partitions_def=hourly_partitions, io_manager_key="warehouse",
       backfill_policy=BackfillPolicy.single_run(),
       metadata={"partition_expr": "export_hour"})
def stand_in_hallucination_scores(spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Trust scores from the no-LLM detectors only (see the module docstring)."""
    responses = with_trace_documents(spans)
    frame = confidence_scores(responses)[["export_hour", "trace_id", "span_id", "confidence_score"]]
    frame = frame.rename(columns={"confidence_score": "confidence"})
    frame["citations"] = citation_checks(responses)["citation_score"].to_numpy()
    frame["grounding"] = grounding_checks(responses)["grounding_score"].to_numpy()
    return Output(score_frame(frame))


def _materialise_day(project: Project, instance) -> None:
    hourly = materialize([ingest_export_hours, ingest_feedback_hours, priced_spans, stand_in_hallucination_scores],
                         resources=project.resources(), instance=instance,
                         tags=range_tags(f"{DAY:%Y-%m-%d-%H:%M}", f"{DAY + timedelta(hours=23):%Y-%m-%d-%H:%M}"))
    assert hourly.success


def _daily(project: Project, instance):
    sources = [*ingest_export_hours.to_source_assets(), *ingest_feedback_hours.to_source_assets(),
               *priced_spans.to_source_assets(), *stand_in_hallucination_scores.to_source_assets()]
    return materialize([*sources, satisfaction_scores_daily, eval_dataset, prompt_version_scorecard],
                       resources=project.resources(), instance=instance, partition_key=f"{DAY:%Y-%m-%d}")


def test_eval_dataset_scorecard_and_regression_job(project: Project, instance, llm_server, monkeypatch) -> None:
    datasets = project.root / "datasets"
    monkeypatch.setenv("AIOBS_PATHS__DATASETS_DIR", str(datasets))
    monkeypatch.setenv("AIOBS_LLM__CACHE_DIR", str(project.root / "llm_cache"))
    generate(project.landing, DAY, DAY + timedelta(days=1), seed=5, scale=0.3, feedback_root=project.feedback)
    truth = {i["kind"]: i for i in json.loads((project.landing / "_ground_truth.json").read_text())["incidents"]}
    _materialise_day(project, instance)

    first = _daily(project, instance)
    assert first.success
    root = datasets / "bad-answers"
    assert list_versions(root) == ["v0001"]
    meta = first.asset_materializations_for_node("eval_dataset")[0].metadata
    assert meta["new_version_written"].value is True and meta["dataset_version"].value == "v0001"

    cases = [json.loads(line) for line in (root / "v0001" / CASES_FILE).read_text().splitlines()]
    manifest = json.loads((root / "v0001" / MANIFEST_FILE).read_text())
    assert manifest["counts"]["cases"] == len(cases) > 5
    assert manifest["source_partitions"] == [f"{DAY:%Y-%m-%d}"]
    assert sum(manifest["counts"]["by_feature"].values()) == len(cases)
    assert len({c["case_id"] for c in cases}) == len(cases) and all(c["reasons"] for c in cases)
    # The bad prompt version's answers cite documents nobody retrieved: they are in the dataset.
    bad = truth["bad_prompt_version"]["params"]
    assert manifest["counts"]["by_prompt"].get(f"answer-with-sources@{bad['prompt_version']}", 0) > 0
    assert any(c["context"] for c in cases if c["tags"]["feature"] == bad["feature"])
    # No two cases of one feature ask (nearly) the same question.
    for i, a in enumerate(cases):
        for b in cases[i + 1:]:
            if a["tags"]["feature"] == b["tags"]["feature"]:
                assert fuzz.token_sort_ratio(a["question"], b["question"], processor=utils.default_process) < 90

    table = project.read("eval_dataset")
    assert set(table["outcome"]) <= {"added", "duplicate"} and (table["outcome"] == "added").sum() == len(cases)
    assert table.loc[table["outcome"] == "duplicate", "duplicate_of"].isin({c["case_id"] for c in cases}).all()

    # Same inputs again: the same cases, so no new version.
    again = _daily(project, instance)
    assert again.success and list_versions(root) == ["v0001"]
    assert again.asset_materializations_for_node("eval_dataset")[0].metadata["new_version_written"].value is False
    assert set(project.read("eval_dataset")["outcome"]) <= {"unchanged", "duplicate"}

    card = project.read("prompt_version_scorecard").set_index(["prompt_name", "prompt_version"])
    good, worse = card.loc[("answer-with-sources", "2")], card.loc[("answer-with-sources", bad["prompt_version"])]
    assert good["calls"] > 0 and worse["calls"] > 0
    assert worse["high_risk_share"] > good["high_risk_share"] and worse["mean_trust_score"] < good["mean_trust_score"]
    assert worse["thumbs_down_rate"] > (good["thumbs_down_rate"] if pd.notna(good["thumbs_down_rate"]) else 0)
    assert str(good["prompt_file"]).endswith("answer-with-sources.v2.toml")
    assert (card["latency_p95_ms"] > 0).all() and (card["cost_per_call_usd"].dropna() > 0).all()

    # The regression job on the dataset just built, against the local server.
    job = Definitions(jobs=[prompt_regression_job], resources=project.resources()).resolve_job_def(
        "prompt_regression_job")

    def run(candidate: str):
        config = {"ops": {"compare_prompt_versions": {"config": {
            "prompt": "answer-with-sources", "baseline": "2", "candidate": candidate,
            "base_url": llm_server.base_url}}}}
        return job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)

    worse_run = run("3")
    assert not worse_run.success
    report = worse_run.asset_materializations_for_node("compare_prompt_versions")[0].metadata
    assert report["status"].value == "fail"
    assert {"grounding", "citation_validity"} <= set(report["regressed_metrics"].value)
    assert "REGRESSED" in report["report"].value and "Cases that got worse" in report["report"].value
    equal_run = run("2")
    assert equal_run.success
    assert equal_run.asset_materializations_for_node("compare_prompt_versions")[0].metadata["status"].value == "pass"


@pytest.fixture(autouse=True)
def _no_repo_settings(monkeypatch) -> None:
    """Settings come from the environment only; relative paths (evals/prompts) resolve in the repository."""
    monkeypatch.setenv("AIOBS_CONFIG", "/nonexistent/aiobs.toml")
    monkeypatch.chdir(REPO)
