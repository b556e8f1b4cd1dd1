"""Comparing a candidate prompt version with its baseline on the same cases, with bootstrap intervals.

For each metric, the cases both versions were scored on form pairs; the paired difference per case is
candidate - baseline. The mean difference gets a bootstrap confidence interval (`scipy.stats.bootstrap`,
BCa, seeded so a comparison is reproducible; when every difference is the same the interval is that value).

    regressed  when the CI upper bound < -tolerance   (the candidate is worse beyond the tolerance)
    improved   when the CI lower bound > +tolerance
    otherwise  no significant change; fewer than `min_pairs` pairs: insufficient data

The comparison fails when a gated metric regressed. Failed calls are scored 0 by the runner, so a candidate
that fails calls shows as worse on `success_rate` and every metric of those cases; they are also listed by
reason. When the baseline produced no answer at all (the endpoint is down or rejects the requests) nothing
can be compared: `status` is `error`, never `pass`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats

from aiobs_pipeline.evals.prompts import PromptVersion
from aiobs_pipeline.evals.runner import RunResult, run_eval
from aiobs_pipeline.evals.settings import METRICS, CompareSettings, EvalSettings
from aiobs_pipeline.hallucination import HallucinationSettings
from aiobs_pipeline.llm import LLMClient


@dataclass(frozen=True)
class MetricComparison:
    """One metric: means, the paired mean difference with its interval, and the verdict."""

    metric: str
    pairs: int
    baseline_mean: float | None
    candidate_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    tolerance: float
    gated: bool
    verdict: str


@dataclass
class Comparison:
    """The candidate against the baseline: per-metric results, cases that got worse, and the status."""

    baseline: RunResult
    candidate: RunResult
    metrics: list[MetricComparison]
    worse_cases: list[dict[str, Any]]
    settings: CompareSettings
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def regressed(self) -> list[str]:
        """Gated metrics on which the candidate is significantly worse."""
        return [m.metric for m in self.metrics if m.gated and m.verdict == "regressed"]

    @property
    def baseline_unusable(self) -> bool:
        """True when no baseline call returned an answer, so there is nothing to compare against."""
        return bool(self.baseline.cases) and not any(c.ok for c in self.baseline.cases)

    @property
    def status(self) -> str:
        """`pass`, `fail` (a gated metric regressed) or `error` (the baseline produced no answer)."""
        if self.baseline_unusable:
            return "error"
        return "fail" if self.regressed else "pass"


def bootstrap_interval(differences: np.ndarray, confidence_level: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """A bootstrap CI of the mean of paired differences (BCa; percentile when BCa is undefined)."""
    values = np.asarray(differences, dtype=float)
    if len(values) == 0:
        raise ValueError("no differences to bootstrap")
    if len(values) == 1 or np.ptp(values) == 0:
        return float(values.mean()), float(values.mean())
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap((values,), np.mean, confidence_level=confidence_level,
                                     n_resamples=n_resamples, method=method, rng=np.random.default_rng(seed),
                                     vectorized=True)
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return float(values.min()), float(values.max())


def _compare_metric(metric: str, baseline: list[float | None], candidate: list[float | None],
                    settings: CompareSettings) -> MetricComparison:
    tolerance = settings.tolerance(metric)
    gated = metric in settings.gated_metrics
    pairs = [(b, c) for b, c in zip(baseline, candidate, strict=True) if b is not None and c is not None]
    base_present = [v for v in baseline if v is not None]
    cand_present = [v for v in candidate if v is not None]
    base_mean = round(float(np.mean(base_present)), 4) if base_present else None
    cand_mean = round(float(np.mean(cand_present)), 4) if cand_present else None
    if not pairs:
        return MetricComparison(metric, 0, base_mean, cand_mean, None, None, None, tolerance, gated, "not_applicable")
    differences = np.array([c - b for b, c in pairs])
    delta = float(differences.mean())
    low, high = bootstrap_interval(differences, settings.confidence_level, settings.n_resamples, settings.seed)
    if len(pairs) < settings.min_pairs:
        verdict = "insufficient_data"
    elif high < -tolerance:
        verdict = "regressed"
    elif low > tolerance:
        verdict = "improved"
    else:
        verdict = "no_significant_change"
    return MetricComparison(metric, len(pairs), base_mean, cand_mean, round(delta, 4), round(low, 4), round(high, 4),
                            tolerance, gated, verdict)


def _worse_cases(baseline: RunResult, candidate: RunResult, settings: CompareSettings) -> list[dict[str, Any]]:
    worse = []
    for base, cand in zip(baseline.cases, candidate.cases, strict=True):
        drops = {}
        for metric in settings.gated_metrics:
            b, c = base.metrics.get(metric), cand.metrics.get(metric)
            if b is not None and c is not None and c - b <= -settings.worse_case_drop:
                drops[metric] = (b, c)
        if drops:
            worse.append({"case_id": cand.case_id, "question": cand.question, "drops": drops,
                          "total_drop": round(sum(b - c for b, c in drops.values()), 4),
                          "candidate_status": cand.status, "candidate_error": cand.error,
                          "candidate_output": cand.output, "baseline_output": base.output,
                          "invalid_citations": cand.details.get("invalid_citations"),
                          "unsupported_sentences": cand.details.get("unsupported_sentences")})
    worse.sort(key=lambda w: (-w["total_drop"], w["case_id"]))
    return worse


def compare_runs(baseline: RunResult, candidate: RunResult, settings: CompareSettings | None = None) -> Comparison:
    """Compare two runs over the same cases (same order); see the module docstring for the rules."""
    settings = settings or CompareSettings()
    base_ids = [c.case_id for c in baseline.cases]
    cand_ids = [c.case_id for c in candidate.cases]
    if base_ids != cand_ids:
        raise ValueError(f"the runs cover different cases ({len(base_ids)} vs {len(cand_ids)}): compare runs of "
                         "the same dataset and case selection")
    metrics = [_compare_metric(m, baseline.values(m), candidate.values(m), settings) for m in METRICS]
    return Comparison(baseline, candidate, metrics, _worse_cases(baseline, candidate, settings), settings)


def compare_versions(baseline: PromptVersion, candidate: PromptVersion, cases: Sequence[dict[str, Any]],
                     client: LLMClient, *, dataset: str = "", settings: EvalSettings | None = None,
                     compare_settings: CompareSettings | None = None,
                     hallucination: HallucinationSettings | None = None, model: str | None = None,
                     judge: bool | None = None) -> Comparison:
    """Run both prompt versions over the same cases with one client and compare them."""
    settings = settings or EvalSettings()
    runs = [run_eval(prompt, cases, client, dataset=dataset, model=model, settings=settings.run,
                     hallucination=hallucination, judge=judge) for prompt in (baseline, candidate)]
    return compare_runs(runs[0], runs[1], compare_settings or settings.compare)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _short(text: str | None, limit: int = 140) -> str:
    flat = " ".join((text or "").split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _failure_rows(run: RunResult) -> list[str]:
    return [f"| {run.label} | {c.case_id} | {c.error_reason} | {_short(c.error)} |" for c in run.failures()]


VERDICT_TEXT = {"regressed": "**REGRESSED**", "improved": "improved", "no_significant_change": "no significant change",
                "insufficient_data": "insufficient data", "not_applicable": "not applicable"}


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison report as Markdown: verdict, metric table, failed calls and the cases that got worse."""
    c, base, cand = comparison, comparison.baseline, comparison.candidate
    s = c.settings
    level = f"{s.confidence_level:.0%}"
    if c.status == "error":
        headline = (f"**Result: ERROR** - the baseline {base.label} produced no answer ({len(base.failures())} "
                    "failed calls), so nothing could be compared. See the failed calls below.")
    elif c.status == "fail":
        headline = (f"**Result: FAIL** - candidate {cand.label} is significantly worse than baseline {base.label} "
                    f"on: {', '.join(c.regressed)}.")
    else:
        headline = f"**Result: PASS** - candidate {cand.label} is not significantly worse than baseline {base.label}."
    lines = [
        f"# Prompt regression: {cand.prompt} v{base.version} → v{cand.version}", "", headline, "",
        f"- dataset: `{cand.dataset}` ({len(cand.cases)} cases)",
        f"- baseline: {base.label} (model `{base.model}`), candidate: {cand.label} (model `{cand.model}`)",
        f"- endpoint: `{cand.base_url}`" + (" - with LLM judge" if cand.judge else ""),
        f"- paired differences candidate - baseline per case; {level} bootstrap CI (scipy.stats.bootstrap, BCa, "
        f"{s.n_resamples} resamples, seed {s.seed}); a metric regresses when the CI upper bound is below "
        "-tolerance",
        f"- generated {c.created_at}", "",
        "## Metrics", "",
        f"| metric | baseline | candidate | Δ (cand − base) | {level} CI | tolerance | pairs | gated | verdict |",
        "|---|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for m in c.metrics:
        ci = f"[{_fmt(m.ci_low, True)}, {_fmt(m.ci_high, True)}]" if m.ci_low is not None else "–"
        lines.append(f"| {m.metric} | {_fmt(m.baseline_mean)} | {_fmt(m.candidate_mean)} | {_fmt(m.delta, True)} | "
                     f"{ci} | {m.tolerance:g} | {m.pairs} | {'yes' if m.gated else 'no'} | "
                     f"{VERDICT_TEXT[m.verdict]} |")
    failures = _failure_rows(base) + _failure_rows(cand)
    lines += ["", f"## Failed calls ({len(base.failures())} baseline, {len(cand.failures())} candidate)", ""]
    if failures:
        lines += ["Failed calls score 0 on every metric of their case.", "",
                  "| version | case | reason | error |", "|---|---|---|---|", *failures]
    else:
        lines.append("None.")
    judge = [(run.label, f) for run in (base, cand) for f in run.judge_failures]
    if judge:
        lines += ["", "## Judge calls without a verdict", "", *[f"- {label} {f['case_id']}: {f['error']}"
                                                               for label, f in judge]]
    shown = c.worse_cases[: s.max_cases_in_report]
    lines += ["", f"## Cases that got worse ({len(c.worse_cases)})", "",
              f"A case is listed when a gated metric dropped by at least {s.worse_case_drop:g}."]
    if shown:
        lines += ["", "| case | question | got worse | candidate answer |", "|---|---|---|---|"]
        for w in shown:
            drops = "; ".join(f"{metric} {b:.2f} → {v:.2f}" for metric, (b, v) in w["drops"].items())
            answer = (f"failed: {w['candidate_error']}" if w["candidate_status"] != "ok"
                      else _short(w["candidate_output"]))
            if w.get("invalid_citations"):
                answer += f" (invalid citations: {', '.join(w['invalid_citations'][:5])})"
            lines.append(f"| {w['case_id']} | {_short(w['question'], 80)} | {drops} | {answer} |")
        if len(c.worse_cases) > len(shown):
            lines.append(f"\n_{len(c.worse_cases) - len(shown)} more cases got worse._")
    else:
        lines += ["", "None."]
    return "\n".join(lines) + "\n"
