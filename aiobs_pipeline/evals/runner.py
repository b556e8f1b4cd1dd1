"""Running a prompt version over an eval dataset and scoring every output.

Each case is rendered with the prompt version (`PromptVersion.render`) and sent through `LLMClient` (the one
place that talks to an OpenAI-compatible API: the local server in tests and the demo, any compatible
endpoint in production). Every output is scored per case, each metric 0-1 with higher = better:

| metric | value | applies when |
|---|---|---|
| `success_rate` | 1 when the call returned an answer, 0 when it failed | always |
| `citation_validity` | share of the answer's citations naming a context document (0 when it cites nothing and `require_citations_with_context`) | the case has context |
| `grounding` | support of the answer's sentences in the context (`hallucination.check_grounding`) | the case has context |
| `reference_similarity` | rapidfuzz token_sort_ratio / 100 against the case's `reference`, else the user's `correction` | the case has either |
| `judge_score` | an LLM judge's verdict on the answer against the context (or reference): SUPPORTS 1, NOT_ENOUGH_INFO 0.5, REFUTES 0 | `--judge` and the case has evidence |

A failed call is a failure of the version, never a gap: it scores 0 on every metric that applies to the case
and is listed with its reason. A failed or unreadable judge call leaves `judge_score` empty for that case and
is listed too (it says nothing about the version).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz, utils

from aiobs_pipeline.evals.prompts import PromptVersion, render_context
from aiobs_pipeline.evals.settings import METRICS, RunSettings
from aiobs_pipeline.hallucination import HallucinationSettings, check_citations, check_grounding
from aiobs_pipeline.hallucination.citations import remove_citations
from aiobs_pipeline.hallucination.confidence import remove_confidence_statements
from aiobs_pipeline.llm import LLMClient, LLMResult

JUDGE_SYSTEM = (
    "You are a strict grader. Decide whether the evidence supports the claim, which is an assistant's answer. "
    "Reply with exactly one verdict on the first line - SUPPORTS, REFUTES or NOT_ENOUGH_INFO - and one line "
    "explaining it."
)
JUDGE_SCORES = {"SUPPORTS": 1.0, "NOT_ENOUGH_INFO": 0.5, "REFUTES": 0.0}
_VERDICT = re.compile(r"\b(SUPPORTS|REFUTES|NOT_ENOUGH_INFO)\b")


@dataclass
class CaseResult:
    """One case run through one prompt version: the output or failure, and its scores."""

    case_id: str
    question: str
    status: str
    output: str | None
    error: str | None = None
    error_reason: str | None = None
    latency_ms: float | None = None
    cache_hit: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the call returned an answer."""
        return self.status == "ok"


@dataclass
class RunResult:
    """A prompt version run over a dataset."""

    prompt: str
    version: str
    model: str
    base_url: str
    dataset: str
    started_at: str
    finished_at: str
    cases: list[CaseResult]
    judge: bool = False
    judge_failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """`prompt@version`."""
        return f"{self.prompt}@{self.version}"

    def values(self, metric: str) -> list[float | None]:
        """One value per case (None where the metric does not apply)."""
        return [c.metrics.get(metric) for c in self.cases]

    def failures(self) -> list[CaseResult]:
        """The cases whose call failed."""
        return [c for c in self.cases if not c.ok]

    def summary(self) -> dict[str, Any]:
        """Mean and count per metric, failures by reason, tokens and latency p95."""
        metrics = {}
        for metric in METRICS:
            present = [v for v in self.values(metric) if v is not None]
            metrics[metric] = {"mean": round(float(np.mean(present)), 4) if present else None, "cases": len(present)}
        latencies = [c.latency_ms for c in self.cases if c.ok and c.latency_ms is not None and not c.cache_hit]
        return {
            "prompt": self.label, "model": self.model, "base_url": self.base_url, "dataset": self.dataset,
            "cases": len(self.cases), "failed_calls": len(self.failures()),
            "failures_by_reason": dict(Counter(c.error_reason or "unknown" for c in self.failures())),
            "judge_failures": len(self.judge_failures),
            "metrics": metrics,
            "input_tokens": sum(c.input_tokens or 0 for c in self.cases),
            "output_tokens": sum(c.output_tokens or 0 for c in self.cases),
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
        }


def select_cases(cases: Sequence[dict[str, Any]], prompt_name: str, all_cases: bool = False) -> list[dict[str, Any]]:
    """The cases a prompt is evaluated on: those its production answers produced (tags.prompt_name)."""
    if all_cases:
        return list(cases)
    return [c for c in cases if (c.get("tags") or {}).get("prompt_name") == prompt_name]


def _claim_text(text: str) -> str:
    return " ".join(remove_confidence_statements(remove_citations(text or "")).split())


def score_output(case: dict[str, Any], output: str | None, ok: bool, settings: RunSettings | None = None,
                 hallucination: HallucinationSettings | None = None) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Metrics (without judge_score) and their evidence for one output of one case."""
    settings = settings or RunSettings()
    hallucination = hallucination or HallucinationSettings()
    context = case.get("context") or []
    reference = case.get("reference") or case.get("correction")
    metrics: dict[str, float | None] = dict.fromkeys(METRICS)
    details: dict[str, Any] = {}
    metrics["success_rate"] = 1.0 if ok else 0.0
    if not ok:
        if context:
            metrics["citation_validity"] = 0.0
            metrics["grounding"] = 0.0
        if reference:
            metrics["reference_similarity"] = 0.0
        return metrics, details
    text = output or ""
    citations = check_citations(text, context, hallucination.citations)
    if citations.score is not None:
        metrics["citation_validity"] = citations.score
        details["invalid_citations"] = list(citations.invalid)
    elif context and settings.require_citations_with_context:
        metrics["citation_validity"] = 0.0
        details["invalid_citations"] = []
        details["citation_note"] = "no citations"
    if context:
        said = [{"role": "user", "content": case.get("question") or ""}]
        grounding = check_grounding(text, context, said, hallucination.grounding)
        if grounding.score is not None:
            metrics["grounding"] = grounding.score
            details["unsupported_sentences"] = list(grounding.unsupported)
        elif grounding.note == "empty response":
            metrics["grounding"] = 0.0
            details["grounding_note"] = grounding.note
    if reference:
        similarity = fuzz.token_sort_ratio(_claim_text(text), _claim_text(reference), processor=utils.default_process)
        metrics["reference_similarity"] = round(similarity / 100, 4)
        details["reference_from"] = "reference" if case.get("reference") else "correction"
    return metrics, details


def _judge_request(case: dict[str, Any], output: str, model: str) -> dict[str, Any] | None:
    evidence = render_context(case["context"]) if case.get("context") else (case.get("reference")
                                                                            or case.get("correction"))
    if not evidence:
        return None
    return {"messages": [{"role": "system", "content": JUDGE_SYSTEM},
                         {"role": "user", "content": f"Claim: {_claim_text(output)}\n\nEvidence:\n{evidence}"}],
            "model": model, "temperature": 0.0, "metadata": {"case_id": case["case_id"], "purpose": "eval-judge"}}


def parse_verdict(text: str | None) -> str | None:
    """The first verdict label in a judge's reply (a JSON {"verdict": ...} reply too), or None."""
    match = _VERDICT.search((text or "").upper())
    return match.group(1) if match else None


def run_eval(prompt: PromptVersion, cases: Sequence[dict[str, Any]], client: LLMClient, *, dataset: str = "",
             model: str | None = None, settings: RunSettings | None = None,
             hallucination: HallucinationSettings | None = None, judge: bool | None = None,
             judge_model: str | None = None) -> RunResult:
    """Run every case through the prompt version and score each output (see the module docstring)."""
    settings = settings or RunSettings()
    use_judge = settings.judge if judge is None else judge
    started = datetime.now(UTC)
    params = prompt.call_parameters()
    if model:
        params["model"] = model
    requests = [{"messages": prompt.render(case), **params, "prompt_name": prompt.name,
                 "prompt_version": prompt.version, "metadata": {"case_id": case["case_id"], "purpose": "eval"}}
                for case in cases]
    results = client.chat_many(requests)
    out = [_case_result(case, result, settings, hallucination) for case, result in zip(cases, results, strict=True)]
    run = RunResult(prompt=prompt.name, version=prompt.version, model=params["model"],
                    base_url=client.settings.base_url, dataset=dataset, started_at=started.isoformat(),
                    finished_at="", cases=out, judge=use_judge)
    if use_judge:
        _judge(run, cases, client, judge_model or settings.judge_model or client.settings.model)
    run.finished_at = datetime.now(UTC).isoformat()
    return run


def _case_result(case: dict[str, Any], result: LLMResult, settings: RunSettings,
                 hallucination: HallucinationSettings | None) -> CaseResult:
    metrics, details = score_output(case, result.text, result.ok, settings, hallucination)
    return CaseResult(
        case_id=case["case_id"], question=case.get("question") or "", status=result.status, output=result.text,
        error=result.error.describe() if result.error else None,
        error_reason=result.error.reason if result.error else None,
        latency_ms=round(result.latency_ms, 1), cache_hit=result.cache_hit,
        input_tokens=result.usage.prompt_tokens, output_tokens=result.usage.completion_tokens,
        metrics=metrics, details=details)


def _judge(run: RunResult, cases: Sequence[dict[str, Any]], client: LLMClient, model: str) -> None:
    pending: list[tuple[CaseResult, dict[str, Any]]] = []
    for case, result in zip(cases, run.cases, strict=True):
        if not result.ok:
            has_evidence = bool(case.get("context") or case.get("reference") or case.get("correction"))
            result.metrics["judge_score"] = 0.0 if has_evidence else None
            continue
        request = _judge_request(case, result.output or "", model)
        if request is not None:
            pending.append((result, request))
    verdicts = client.chat_many([request for _, request in pending])
    for (result, _), verdict in zip(pending, verdicts, strict=True):
        if not verdict.ok:
            run.judge_failures.append({"case_id": result.case_id, "error": verdict.error.describe()
                                       if verdict.error else "failed"})
            continue
        label = parse_verdict(verdict.text)
        if label is None:
            run.judge_failures.append({"case_id": result.case_id,
                                       "error": f"no verdict in the judge's reply {(verdict.text or '')[:120]!r}"})
            continue
        result.metrics["judge_score"] = JUDGE_SCORES[label]
        result.details["judge_verdict"] = label


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def run_markdown(run: RunResult) -> str:
    """A short Markdown summary of one run: metrics and failed calls."""
    summary = run.summary()
    lines = [f"# Eval run: {run.label}", "",
             f"- dataset: `{run.dataset}` ({summary['cases']} cases)",
             f"- model: `{run.model}` at `{run.base_url}`",
             f"- failed calls: {summary['failed_calls']}" + (
                 f" ({', '.join(f'{k}: {v}' for k, v in summary['failures_by_reason'].items())})"
                 if summary["failed_calls"] else ""),
             f"- tokens: {summary['input_tokens']} in, {summary['output_tokens']} out; "
             f"latency p95: {_cell(summary['latency_p95_ms'])} ms", "",
             "| metric | mean | cases scored |", "|---|---:|---:|"]
    for metric, values in summary["metrics"].items():
        lines.append(f"| {metric} | {_cell(values['mean'])} | {values['cases']} |")
    if run.failures():
        lines += ["", "## Failed calls", "", "| case | reason | error |", "|---|---|---|"]
        lines += [f"| {c.case_id} | {c.error_reason} | {_cell(c.error)} |" for c in run.failures()]
    if run.judge_failures:
        lines += ["", "## Judge calls without a verdict", ""]
        lines += [f"- {f['case_id']}: {f['error']}" for f in run.judge_failures]
    return "\n".join(lines) + "\n"


def write_run(run: RunResult, out_dir: Path) -> tuple[Path, Path]:
    """Write results.jsonl (one line per case) and summary.md into out_dir; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    with results.open("w", encoding="utf-8") as handle:
        for case in run.cases:
            handle.write(json.dumps({"prompt": run.label, **asdict(case)}, ensure_ascii=False, default=str) + "\n")
    summary = out_dir / "summary.md"
    summary.write_text(run_markdown(run), encoding="utf-8")
    return results, summary
