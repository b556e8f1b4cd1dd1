"""Scoring outputs, running prompt versions through a client, and comparing versions with bootstrap intervals:
failed calls count against their version and are reported, a regression fails, an equal version passes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from aiobs_pipeline.evals.compare import bootstrap_interval, compare_runs, comparison_markdown
from aiobs_pipeline.evals.prompts import PromptVersion
from aiobs_pipeline.evals.runner import JUDGE_SYSTEM, parse_verdict, run_eval, score_output
from aiobs_pipeline.evals.settings import CompareSettings, RunSettings
from aiobs_pipeline.llm import LLMError, LLMResult, LLMSettings

FACTS = ["Invoices are generated on the first business day of each month.",
         "Annual plans are billed upfront and include a 15% discount.",
         "Refunds for unused seats are issued as account credit within 5 business days.",
         "The REST API allows 600 requests per minute per API key on the Team plan.",
         "Requests over the limit receive HTTP 429 with a Retry-After header.",
         "Single sign-on supports SAML 2.0 and OpenID Connect identity providers.",
         "SCIM provisioning syncs users and groups every 40 minutes.",
         "Export download links expire after 24 hours.",
         "Webhooks are signed with an HMAC-SHA256 signature.",
         "Backups are taken every 6 hours and retained for 30 days."]
CASES = [{"case_id": f"case-{i}", "question": f"Question {i}?", "context": [{"id": f"kb-{i:04d}", "text": fact}],
          "correction": fact if i % 2 else None, "tags": {"prompt_name": "p"}} for i, fact in enumerate(FACTS)]
GOOD = PromptVersion(name="p", version="1", model="m", template="Context:\n{context}\n\nQuestion: {question}")
WORSE = PromptVersion(name="p", version="2", model="m", template="Guess: {question}")


def _result(request: Mapping[str, Any], text: str | None, error: LLMError | None = None) -> LLMResult:
    return LLMResult(endpoint="chat.completions", status="failed" if error else "ok",
                     request_model=request.get("model", "m"), request=dict(request), started_at=datetime.now(UTC),
                     latency_ms=12.0, attempts=1, cache_hit=False, cache_key="k",
                     texts=[] if error else [text or ""], error=error)


class StubClient:
    """Answers like a model: grounded with a citation for `Context:` prompts, invented otherwise; fails the
    cases listed in `fail`; the judge says SUPPORTS when the claim repeats the evidence."""

    def __init__(self, fail: Iterable[str] = (), judge_reply: Callable[[str], str] | None = None) -> None:
        self.settings = LLMSettings(base_url="http://127.0.0.1:1/v1")
        self.fail = set(fail)
        self.judge_reply = judge_reply
        self.requests: list[Mapping[str, Any]] = []

    def chat_many(self, requests: Iterable[Mapping[str, Any]]) -> list[LLMResult]:
        out = []
        for request in requests:
            self.requests.append(request)
            messages = request["messages"]
            if messages[0]["content"] == JUDGE_SYSTEM:
                claim = messages[-1]["content"].split("Claim: ", 1)[1].split("\n\nEvidence:", 1)[0]
                reply = self.judge_reply(claim) if self.judge_reply else (
                    "SUPPORTS\nok" if claim in messages[-1]["content"].split("Evidence:", 1)[1] else "REFUTES\nno")
                out.append(_result(request, reply))
                continue
            case_id = request["metadata"]["case_id"]
            index = int(case_id.split("-")[1])
            if case_id in self.fail:
                out.append(_result(request, None, LLMError("server_error", 503, "InternalServerError", "down")))
            elif messages[-1]["content"].startswith("Context:"):
                out.append(_result(request, f"{FACTS[index]} [kb-{index:04d}]\nConfidence: high"))
            else:
                out.append(_result(request, f"Zorblat Inc was founded in {1800 + index} by Maria Lindqvist [kb-9999]."))
        return out


def test_score_output_metrics_and_applicability() -> None:
    case = CASES[1]
    metrics, details = score_output(case, f"{FACTS[1]} [kb-0001]", True)
    assert metrics["success_rate"] == 1.0 and metrics["citation_validity"] == 1.0
    assert metrics["grounding"] > 0.9 and metrics["reference_similarity"] == 1.0
    assert metrics["judge_score"] is None and details["reference_from"] == "correction"
    invented, details = score_output(case, "It was founded in 1899 by Maria Lindqvist [kb-0042].", True)
    assert invented["citation_validity"] == 0.0 and details["invalid_citations"] == ["kb-0042"]
    assert invented["grounding"] < 0.5 and invented["reference_similarity"] < 0.5
    uncited, details = score_output(case, FACTS[1], True)
    assert uncited["citation_validity"] == 0.0 and details["citation_note"] == "no citations"
    lenient, _ = score_output(case, FACTS[1], True, RunSettings(require_citations_with_context=False))
    assert lenient["citation_validity"] is None
    no_context, _ = score_output({"question": "hi?"}, "Hello.", True)
    assert no_context == {"success_rate": 1.0, "citation_validity": None, "grounding": None,
                          "reference_similarity": None, "judge_score": None}
    failed, _ = score_output(case, None, False)
    assert failed == {"success_rate": 0.0, "citation_validity": 0.0, "grounding": 0.0,
                      "reference_similarity": 0.0, "judge_score": None}
    with_reference, details = score_output({**case, "reference": "Something else entirely."}, FACTS[1], True)
    assert details["reference_from"] == "reference" and with_reference["reference_similarity"] < 0.5


def test_run_sends_rendered_cases_and_records_failures() -> None:
    client = StubClient(fail={"case-3"})
    run = run_eval(GOOD, CASES, client, dataset="ds/v0001")
    assert [r["metadata"]["case_id"] for r in client.requests] == [c["case_id"] for c in CASES]
    assert client.requests[0]["prompt_name"] == "p" and client.requests[0]["prompt_version"] == "1"
    assert [c.case_id for c in run.failures()] == ["case-3"]
    failed = run.cases[3]
    assert failed.error_reason == "server_error" and "HTTP 503" in failed.error
    assert failed.metrics["success_rate"] == 0.0 and failed.metrics["grounding"] == 0.0
    summary = run.summary()
    assert summary["failed_calls"] == 1 and summary["failures_by_reason"] == {"server_error": 1}
    assert summary["metrics"]["success_rate"] == {"mean": 0.9, "cases": 10}
    assert summary["metrics"]["reference_similarity"]["cases"] == 5


def test_worse_version_fails_with_regressed_metrics_and_cases() -> None:
    client = StubClient()
    comparison = compare_runs(run_eval(GOOD, CASES, client), run_eval(WORSE, CASES, client))
    assert comparison.status == "fail"
    assert {"citation_validity", "grounding", "reference_similarity"} <= set(comparison.regressed)
    assert "success_rate" not in comparison.regressed
    by_metric = {m.metric: m for m in comparison.metrics}
    grounding = by_metric["grounding"]
    assert grounding.pairs == 10 and grounding.ci_high < -grounding.tolerance and grounding.delta < -0.4
    assert by_metric["judge_score"].verdict == "not_applicable"
    assert len(comparison.worse_cases) == 10
    report = comparison_markdown(comparison)
    assert "**Result: FAIL**" in report and "| grounding |" in report and "**REGRESSED**" in report
    assert "case-7" in report.split("## Cases that got worse (10)", 1)[1]
    assert "invalid citations: kb-9999" in report


def test_equal_version_passes_and_failed_candidate_calls_regress() -> None:
    client = StubClient()
    same = compare_runs(run_eval(GOOD, CASES, client), run_eval(GOOD, CASES, client))
    assert same.status == "pass" and same.regressed == [] and same.worse_cases == []
    assert {m.verdict for m in same.metrics} == {"no_significant_change", "not_applicable"}
    assert "**Result: PASS**" in comparison_markdown(same)

    flaky = StubClient(fail={"case-2", "case-4", "case-6", "case-8"})
    comparison = compare_runs(run_eval(GOOD, CASES, client), run_eval(GOOD, CASES, flaky))
    assert comparison.status == "fail" and "success_rate" in comparison.regressed
    report = comparison_markdown(comparison)
    assert "## Failed calls (0 baseline, 4 candidate)" in report
    assert "| p@1 | case-4 | server_error |" in report


def test_baseline_without_any_answer_is_an_error_not_a_pass() -> None:
    down = StubClient(fail={c["case_id"] for c in CASES})
    comparison = compare_runs(run_eval(GOOD, CASES, down), run_eval(GOOD, CASES, down))
    assert comparison.regressed == [] and comparison.status == "error"
    assert "**Result: ERROR**" in comparison_markdown(comparison)


def test_tolerance_min_pairs_and_improvement() -> None:
    client = StubClient()
    worse, better = run_eval(WORSE, CASES, client), run_eval(GOOD, CASES, client)
    assert compare_runs(worse, better).status == "pass"
    assert {m.metric: m.verdict for m in compare_runs(worse, better).metrics}["grounding"] == "improved"
    lenient = CompareSettings(tolerances={"grounding": 1.0, "citation_validity": 1.0, "reference_similarity": 1.0})
    assert compare_runs(better, worse, lenient).status == "pass"
    few = CompareSettings(min_pairs=50)
    assert {m.verdict for m in compare_runs(better, worse, few).metrics} <= {"insufficient_data", "not_applicable"}
    ungated = CompareSettings(gated_metrics=["success_rate"])
    assert compare_runs(better, worse, ungated).status == "pass"
    with pytest.raises(ValueError, match="different cases"):
        compare_runs(better, run_eval(GOOD, CASES[:3], client))


def test_judge_scores_and_unreadable_verdicts() -> None:
    run = run_eval(GOOD, CASES[:4], StubClient(fail={"case-0"}), judge=True)
    assert [c.metrics["judge_score"] for c in run.cases] == [0.0, 1.0, 1.0, 1.0]
    assert run.cases[1].details["judge_verdict"] == "SUPPORTS"
    confused = run_eval(GOOD, CASES[:2], StubClient(judge_reply=lambda claim: "I cannot decide."), judge=True)
    assert [c.metrics["judge_score"] for c in confused.cases] == [None, None]
    assert [f["case_id"] for f in confused.judge_failures] == ["case-0", "case-1"]
    assert parse_verdict('{"verdict": "not_enough_info"}') == "NOT_ENOUGH_INFO"


def test_bootstrap_interval() -> None:
    assert bootstrap_interval(np.array([-0.5, -0.5, -0.5])) == (-0.5, -0.5)
    assert bootstrap_interval(np.array([0.2])) == (0.2, 0.2)
    values = np.random.default_rng(1).normal(-0.3, 0.1, 40)
    low, high = bootstrap_interval(values, seed=3)
    assert low < values.mean() < high < 0
    assert bootstrap_interval(values, seed=3) == (low, high)
    wide = bootstrap_interval(values, confidence_level=0.99, seed=3)
    assert wide[0] < low and wide[1] > high
    with pytest.raises(ValueError):
        bootstrap_interval(np.array([]))
