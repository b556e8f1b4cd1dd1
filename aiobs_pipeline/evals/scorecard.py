"""Production performance per prompt version: the scorecard a candidate version is judged against.

One row per (day, prompt_name, prompt_version) of the LLM calls that carry a prompt name or version:

| column | definition |
|---|---|
| `calls` | LLM spans (every call, retries and failures included) |
| `error_rate` | error spans / calls |
| `cost_per_call_usd` | mean `cost_usd` of the priced calls (null when none is priced) |
| `total_cost_usd` | sum of `cost_usd` |
| `latency_p95_ms` | 95th percentile of `latency_ms` of the successful calls |
| `scored_responses`, `mean_trust_score`, `high_risk_share` | responses with a trust score, their mean, and the share rated high risk |
| `responses_with_feedback`, `avg_satisfaction`, `thumbs_down_rate` | as in docs/feedback.md: satisfaction of the responses with feedback, and thumbs-down responses / responses with feedback |
| `models` | models that served the version that day |
| `prompt_file` | the prompt file of that version under `evals/prompts/`, when there is one |

Rates and means are null when their denominator is zero: no data is not a score of 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

NONE_LABEL = "(none)"
KEYS = ("day", "prompt_name", "prompt_version")
SCORECARD_COLUMNS: dict[str, str] = {
    "day": "datetime64[ns]", "prompt_name": "object", "prompt_version": "object", "calls": "int64",
    "error_rate": "float64", "cost_per_call_usd": "float64", "total_cost_usd": "float64",
    "latency_p95_ms": "float64", "scored_responses": "int64", "mean_trust_score": "float64",
    "high_risk_share": "float64", "responses_with_feedback": "int64", "avg_satisfaction": "float64",
    "thumbs_down_rate": "float64", "models": "object", "prompt_file": "object",
}


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).dt.floor("D")


def _labels(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("prompt_name", "prompt_version"):
        values = out[column] if column in out.columns else pd.Series(None, index=out.index, dtype=object)
        out[column] = values.astype(object).where(values.notna(), NONE_LABEL).astype(str)
    return out


def _empty() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SCORECARD_COLUMNS.items()})


def scorecard(priced_spans: pd.DataFrame, hallucination_scores: pd.DataFrame | None,
              satisfaction_scores: pd.DataFrame | None,
              prompt_files: Mapping[tuple[str, str], Path] | None = None) -> pd.DataFrame:
    """The per-day, per-prompt-version scorecard (see the module docstring for every column)."""
    if priced_spans.empty or "kind" not in priced_spans.columns:
        return _empty()
    llm = priced_spans[priced_spans["kind"] == "llm"]
    has_prompt = llm["prompt_name"].notna() | llm["prompt_version"].notna()
    llm = _labels(llm[has_prompt])
    if llm.empty:
        return _empty()
    # The day follows the export hour (the partition column), so a daily partition holds exactly the calls of
    # its 24 export hours, late spans that started just before midnight included.
    day_source = llm["export_hour"] if "export_hour" in llm.columns else llm["start_time"]
    llm = llm.assign(day=_day(day_source), error=(llm["status"] == "error").astype(float),
                     ok_latency=llm["latency_ms"].where(llm["status"] == "ok"))
    grouped = llm.groupby(list(KEYS), sort=True)
    out = grouped.agg(calls=("span_id", "size"), error_rate=("error", "mean"),
                      cost_per_call_usd=("cost_usd", "mean"), total_cost_usd=("cost_usd", "sum"),
                      latency_p95_ms=("ok_latency", lambda s: s.quantile(0.95) if s.notna().any() else np.nan),
                      models=("model", lambda s: ", ".join(sorted({str(m) for m in s.dropna()}))))
    out = out.reset_index()

    if hallucination_scores is not None and not hallucination_scores.empty:
        scored = hallucination_scores[["span_id", "trust_score", "risk_level"]].merge(
            llm[["span_id", *KEYS]].drop_duplicates("span_id"), on="span_id")
        scored = scored[scored["trust_score"].notna()]
        risk = scored.assign(high=(scored["risk_level"] == "high").astype(float)).groupby(list(KEYS)).agg(
            scored_responses=("span_id", "size"), mean_trust_score=("trust_score", "mean"),
            high_risk_share=("high", "mean")).reset_index()
        out = out.merge(risk, on=list(KEYS), how="left")

    if satisfaction_scores is not None and not satisfaction_scores.empty:
        sat = satisfaction_scores[["span_id", "satisfaction", "thumbs_down"]].merge(llm[["span_id", *KEYS]].drop_duplicates("span_id"), on="span_id")
        feedback = sat.assign(down=sat["thumbs_down"].astype(bool).astype(float)).groupby(list(KEYS)).agg(
            responses_with_feedback=("span_id", "size"), avg_satisfaction=("satisfaction", "mean"),
            thumbs_down_rate=("down", "mean")).reset_index()
        out = out.merge(feedback, on=list(KEYS), how="left")

    for column in ("scored_responses", "responses_with_feedback"):
        out[column] = out[column].fillna(0).astype("int64") if column in out else 0
    for column in ("mean_trust_score", "high_risk_share", "avg_satisfaction", "thumbs_down_rate"):
        if column not in out:
            out[column] = np.nan
    files = prompt_files or {}
    out["prompt_file"] = [str(files[(n, v)]) if (n, v) in files else None
                          for n, v in zip(out["prompt_name"], out["prompt_version"], strict=True)]
    return out[list(SCORECARD_COLUMNS)].astype(SCORECARD_COLUMNS)
