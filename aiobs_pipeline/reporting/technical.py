"""The technical dashboard table: latency and time to first token percentiles, tokens, error rates, cache hit
rates, cost and quality of the model calls of one day, overall and by model, endpoint and prompt version.

Model calls are billable `llm` spans of `priced_spans` (so a LangChain parent that rolls up its child's call
is not counted twice), attributed to the day of their export hour, the same rule the cost tables use.
Percentiles are nearest-rank: p95 is the smallest latency at or below which 95% of calls fall, so "95% of
calls in under X" stays true for any X above it. Quality (hallucination_scores) and satisfaction
(satisfaction_scores) are optional inputs: without them those metrics are null with a note, never guessed.
This module must not read tables or write files.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import orjson
import pandas as pd

from aiobs_pipeline.costs.aggregate import NONE_LABEL, as_utc
from aiobs_pipeline.reporting.metrics import ALL, TECHNICAL_COLUMNS, frame_of
from aiobs_pipeline.reporting.settings import ReportingSettings

# Columns of priced_spans the dashboards read (the assets load only these).
SPAN_INPUT_COLUMNS: tuple[str, ...] = (
    "export_hour", "span_id", "trace_id", "session_id", "kind", "status", "billable", "model", "endpoint",
    "feature", "prompt_version", "user_id", "latency_ms", "time_to_first_token_ms", "input_tokens",
    "output_tokens", "cached_input_tokens", "cost_usd", "metadata",
)
HALLUCINATION_COLUMNS: tuple[str, ...] = ("export_hour", "span_id", "trust_score", "risk_level")
SATISFACTION_COLUMNS: tuple[str, ...] = ("span_id", "response_hour", "satisfaction", "thumbs_up",
                                         "thumbs_down", "regenerated")
DIMENSIONS: tuple[str, ...] = ("model", "endpoint", "prompt_version")
PERCENTILES: tuple[int, ...] = (50, 95, 99)
# Upper bounds (exclusive) of the latency histogram: counts of calls faster than each bound add up across
# days, so the monthly report can say "95% of responses in under X" without reloading a month of spans.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    *range(100, 2001, 100), *range(2250, 5001, 250), *range(6000, 10001, 1000), 15000, 20000, 30000, 60000,
    120000,
)
HISTOGRAM_METRIC = "calls_faster_than"
HISTOGRAM_DIMENSION = "latency_bound_ms"

TECHNICAL_METRICS: dict[str, tuple[str, str]] = {
    "calls": ("count", "Model calls (billable llm spans)."),
    "errors": ("count", "Model calls with status error."),
    "error_rate": ("ratio", "errors / calls."),
    **{f"latency_p{p}_ms": ("ms", f"Nearest-rank {p}th percentile of latency_ms.") for p in PERCENTILES},
    **{f"ttft_p{p}_ms": ("ms", f"Nearest-rank {p}th percentile of time_to_first_token_ms (streamed calls).")
       for p in PERCENTILES},
    "input_tokens": ("tokens", "Input tokens (cached included)."),
    "output_tokens": ("tokens", "Output tokens (reasoning included)."),
    "tokens_per_call": ("tokens", "Mean input + output tokens of calls that report both."),
    "cached_input_share": ("ratio", "Cached input tokens / input tokens (provider prompt cache)."),
    "prompt_cache_hit_rate": ("ratio", "Calls that read any cached input tokens / calls reporting the count."),
    "response_cache_hit_rate": ("ratio", "Calls an application response cache served / calls whose metadata "
                                         "says (reporting.response_cache_keys)."),
    "cost_usd": ("usd", "Cost of the priced calls."),
    "cost_per_call_usd": ("usd", "cost_usd / priced calls."),
    "quality_score": ("ratio", "Mean trust_score of the scored responses (hallucination_scores)."),
    "high_risk_share": ("ratio", "Scored responses with risk_level high / scored responses."),
    "satisfaction": ("ratio", "Mean satisfaction of responses with feedback (satisfaction_scores)."),
    HISTOGRAM_METRIC: ("count", "Calls with latency under the bound (dimension latency_bound_ms)."),
}
HOURLY_METRICS: tuple[str, ...] = ("calls", "errors", "latency_p95_ms")
NO_HALLUCINATION = "hallucination_scores has not been materialised"
NO_SATISFACTION = "satisfaction_scores has not been materialised"
_TRUE = frozenset({"true", "hit", "yes", "1"})
_FALSE = frozenset({"false", "miss", "no", "0"})


def day_bounds(day: date | pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The UTC start (inclusive) and end (exclusive) of a day."""
    start = pd.Timestamp(day)
    start = (start.tz_convert("UTC") if start.tzinfo else start.tz_localize("UTC")).normalize()
    return start, start + timedelta(days=1)


def in_window(frame: pd.DataFrame, column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows whose timestamp column falls in [start, end) (naive timestamps read as UTC)."""
    if frame.empty:
        return frame
    stamps = as_utc(frame[column])
    return frame[(stamps >= start) & (stamps < end)]


def _labels(series: pd.Series) -> pd.Series:
    """Values as text, blanks and nulls as "(none)" (each distinct value handled once)."""
    codes, uniques = pd.factorize(series.astype(object))
    labels = np.array([str(u).strip() or NONE_LABEL for u in uniques] + [NONE_LABEL], dtype=object)
    return pd.Series(labels[codes], index=series.index, dtype=object)  # code -1 (null) picks NONE_LABEL


def model_calls(priced: pd.DataFrame) -> pd.DataFrame:
    """The billable llm spans with blank dimension values labelled "(none)" (as the cost tables do)."""
    missing = [c for c in ("kind", "billable", "status") if c not in priced.columns]
    if missing:
        raise ValueError(f"priced_spans lacks column(s) {missing}: the dashboards need {list(SPAN_INPUT_COLUMNS)}")
    billable = priced["billable"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    calls = priced[billable & (priced["kind"] == "llm").to_numpy(dtype=bool)].copy()
    for column in (*DIMENSIONS, "feature", "user_id"):
        calls[column] = _labels(calls[column]) if column in calls.columns else NONE_LABEL
    return calls


def _cache_flag(text: str, keys: list[str]) -> float:
    if not any(k in text for k in keys):
        return np.nan
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return np.nan
    if not isinstance(data, dict):
        return np.nan
    for key in keys:
        if key in data:
            flag = str(data[key]).strip().lower()
            return 1.0 if flag in _TRUE else (0.0 if flag in _FALSE else np.nan)
    return np.nan


def response_cache_flags(metadata: pd.Series, keys: list[str]) -> pd.Series:
    """1.0 when a call's metadata says a response cache served it, 0.0 when it says not, NaN when silent."""
    if not keys or metadata.empty:
        return pd.Series(np.nan, index=metadata.index, dtype="float64")
    text = metadata.map(lambda v: orjson.dumps(v).decode() if isinstance(v, dict) else v)
    # Metadata repeats a lot within a day: parse each distinct text once.
    codes, uniques = pd.factorize(text)
    flags = np.array([_cache_flag(u, keys) if isinstance(u, str) else np.nan for u in uniques] + [np.nan])
    return pd.Series(flags[codes], index=metadata.index, dtype="float64")


def _percentile(values: np.ndarray, p: int) -> float:
    return float(np.quantile(values, p / 100, method="inverted_cdf"))


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _group_metrics(calls: pd.DataFrame, quality_known: bool, satisfaction_known: bool,
                   cache_known: bool) -> list[tuple[str, float, int, str]]:
    """(metric, value, sample size, note) for one group of model calls."""
    n = len(calls)
    rows: list[tuple[str, float, int, str]] = []
    errors = int((calls["status"] == "error").sum())
    rows += [("calls", float(n), n, ""), ("errors", float(errors), n, ""),
             ("error_rate", _ratio(errors, n), n, "" if n else "no model calls")]
    for column, prefix, missing in (("latency_ms", "latency", "no calls with latency_ms"),
                                    ("time_to_first_token_ms", "ttft", "no calls reported time to first token")):
        values = _numbers(calls, column).dropna().to_numpy()
        for p in PERCENTILES:
            value = _percentile(values, p) if len(values) else float("nan")
            rows.append((f"{prefix}_p{p}_ms", value, len(values), "" if len(values) else missing))
    inputs, outputs = _numbers(calls, "input_tokens"), _numbers(calls, "output_tokens")
    cached = _numbers(calls, "cached_input_tokens")
    both = inputs.notna() & outputs.notna()
    rows += [
        ("input_tokens", float(inputs.sum()), int(inputs.notna().sum()), ""),
        ("output_tokens", float(outputs.sum()), int(outputs.notna().sum()), ""),
        ("tokens_per_call", float((inputs[both] + outputs[both]).mean()) if both.any() else float("nan"),
         int(both.sum()), "" if both.any() else "no calls reported token counts"),
    ]
    with_input = inputs.notna() & (inputs > 0)
    input_total = float(inputs[with_input].sum())
    rows.append(("cached_input_share", _ratio(float(cached[with_input].fillna(0).sum()), input_total),
                 int(with_input.sum()), "" if input_total else "no calls reported input tokens"))
    cache_reported = cached.notna() & with_input
    rows.append(("prompt_cache_hit_rate", _ratio(float((cached[cache_reported] > 0).sum()), cache_reported.sum()),
                 int(cache_reported.sum()), "" if cache_reported.any() else "no calls reported cached_input_tokens"))
    flags = calls["response_cache_hit"].dropna()
    rows.append(("response_cache_hit_rate", float(flags.mean()) if len(flags) else float("nan"), len(flags),
                 "" if len(flags) else ("no call metadata says whether a response cache served it"
                                        if not cache_known else "no calls in this group say")))
    cost = _numbers(calls, "cost_usd").dropna()
    rows += [("cost_usd", float(cost.sum()), len(cost), ""),
             ("cost_per_call_usd", float(cost.mean()) if len(cost) else float("nan"), len(cost),
              "" if len(cost) else "no priced calls")]
    trust = calls["trust_score"].dropna()
    levels = calls["risk_level"].dropna()
    absent = NO_HALLUCINATION
    rows += [("quality_score", float(trust.mean()) if len(trust) else float("nan"), len(trust),
              "" if len(trust) else (absent if not quality_known else "no scored responses")),
             ("high_risk_share", float((levels == "high").mean()) if len(levels) else float("nan"), len(levels),
              "" if len(levels) else (absent if not quality_known else "no scored responses"))]
    scores = calls["satisfaction"].dropna()
    rows.append(("satisfaction", float(scores.mean()) if len(scores) else float("nan"), len(scores),
                 "" if len(scores) else (NO_SATISFACTION if not satisfaction_known else "no responses with feedback")))
    return rows


def _attach_optional(calls: pd.DataFrame, hallucination: pd.DataFrame | None,
                     satisfaction: pd.DataFrame | None) -> pd.DataFrame:
    """Add trust_score, risk_level and satisfaction to each call (NaN where the optional input has none)."""
    out = calls.copy()
    out["trust_score"] = np.nan
    out["risk_level"] = None
    out["satisfaction"] = np.nan
    if hallucination is not None and not hallucination.empty and not out.empty:
        keys = ["export_hour", "span_id"] if "export_hour" in hallucination.columns else ["span_id"]
        scores = hallucination[[*keys, "trust_score", "risk_level"]].copy()
        if "export_hour" in keys:
            scores["export_hour"] = as_utc(scores["export_hour"])
        scores = scores.drop_duplicates(keys, keep="last")
        left = out.drop(columns=["trust_score", "risk_level"]).assign(
            **({"export_hour": as_utc(out["export_hour"])} if "export_hour" in keys else {}))
        out = left.merge(scores, on=keys, how="left")
        out["trust_score"] = pd.to_numeric(out["trust_score"], errors="coerce").astype("float64")
    if satisfaction is not None and not satisfaction.empty and not out.empty:
        scores = satisfaction[["span_id", "satisfaction"]].drop_duplicates("span_id", keep="last")
        out = out.drop(columns=["satisfaction"]).merge(scores, on="span_id", how="left")
        out["satisfaction"] = pd.to_numeric(out["satisfaction"], errors="coerce").astype("float64")
    return out


def technical_dashboard(priced: pd.DataFrame, day: date | pd.Timestamp, settings: ReportingSettings | None = None,
                        hallucination: pd.DataFrame | None = None,
                        satisfaction: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long-format technical metrics of one day (TECHNICAL_COLUMNS): overall ("all"), by model, endpoint and
    prompt version, per hour, and the latency histogram. `priced` may hold other days; only `day` is used."""
    settings = settings or ReportingSettings()
    start, end = day_bounds(day)
    calls = model_calls(in_window(priced, "export_hour", start, end)) if not priced.empty else model_calls(priced)
    metadata = calls["metadata"] if "metadata" in calls.columns else pd.Series(None, index=calls.index, dtype=object)
    calls["response_cache_hit"] = response_cache_flags(metadata, settings.response_cache_keys)
    cache_known = bool(calls["response_cache_hit"].notna().any())
    calls = _attach_optional(calls, hallucination, satisfaction)
    rows: list[dict[str, object]] = []

    def add(metric: str, dimension: str, value_label: str, value: float, sample: int, note: str) -> None:
        """Append one long-format row."""
        rows.append({"day": start.tz_localize(None), "metric": metric, "dimension": dimension,
                     "dimension_value": value_label, "value": value, "unit": TECHNICAL_METRICS[metric][0],
                     "sample_size": sample, "note": note})

    groups: list[tuple[str, str, pd.DataFrame]] = [(ALL, ALL, calls)]
    for dimension in DIMENSIONS:
        groups += [(dimension, str(v), g) for v, g in calls.groupby(dimension, sort=True)]
    for dimension, label, group in groups:
        note_all = "no model calls this day" if group.empty else ""
        for metric, value, sample, note in _group_metrics(group, hallucination is not None,
                                                          satisfaction is not None, cache_known):
            add(metric, dimension, label, value, sample, note or (note_all if metric != "calls" else ""))

    hours = as_utc(calls["export_hour"]).dt.floor("h") if len(calls) else pd.Series(dtype="datetime64[ns, UTC]")
    for hour in pd.date_range(start, end - timedelta(hours=1), freq="h"):
        group = calls[hours == hour] if len(calls) else calls
        latencies = _numbers(group, "latency_ms").dropna().to_numpy()
        label = f"{hour:%Y-%m-%d %H:00}"
        errors = int((group["status"] == "error").sum())
        add("calls", "hour", label, float(len(group)), len(group), "")
        add("errors", "hour", label, float(errors), len(group), "")
        add("latency_p95_ms", "hour", label, _percentile(latencies, 95) if len(latencies) else float("nan"),
            len(latencies), "" if len(latencies) else "no calls with latency_ms")

    latencies = _numbers(calls, "latency_ms").dropna().to_numpy()
    for bound in LATENCY_BOUNDS_MS:
        add(HISTOGRAM_METRIC, HISTOGRAM_DIMENSION, str(bound), float((latencies < bound).sum()), len(latencies), "")
    return frame_of(rows, TECHNICAL_COLUMNS)


def pivot(technical: pd.DataFrame, dimension: str, metrics: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """One row per dimension value and one column per metric (for tables and charts)."""
    rows = technical[(technical["dimension"] == dimension) & technical["metric"].isin(metrics)]
    if rows.empty:
        return pd.DataFrame(columns=["dimension_value", *metrics])
    table = rows.pivot_table(index="dimension_value", columns="metric", values="value", aggfunc="first",
                             dropna=False)
    return table.reindex(columns=list(metrics)).reset_index()
