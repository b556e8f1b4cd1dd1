"""Hourly and daily cost tables over priced spans, counting billable spans only.

Grain: hour (or day) x user x feature x endpoint x model x prompt version. Null or blank keys form a visible
"(none)" group instead of being dropped, so the totals of a table always equal the spend. `cost_usd` sums
priced calls; `unpriced_calls` says how many calls the sum lacks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

NONE_LABEL = "(none)"
GROUP_KEYS: tuple[str, ...] = ("user_id", "feature", "endpoint", "model", "prompt_version")
TOKEN_SUMS: tuple[str, ...] = (
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
)
COUNT_SUMS: tuple[str, ...] = ("calls", "errors", "unpriced_calls", "cost_mismatches")
_SUMMED_INPUTS: tuple[str, ...] = (*GROUP_KEYS, *TOKEN_SUMS, "cost_usd", "reported_cost_usd", "status",
                                   "cost_mismatch")
# The priced_spans columns hourly_costs reads with its default time column (the asset loads only these).
HOURLY_INPUT_COLUMNS: tuple[str, ...] = ("export_hour", "billable", *_SUMMED_INPUTS)
METRIC_COLUMNS: dict[str, str] = {
    "cost_usd": "float64",
    "reported_cost_usd": "float64",
    **{c: "int64" for c in TOKEN_SUMS},
    **{c: "int64" for c in COUNT_SUMS},
}
HOURLY_COLUMNS: dict[str, str] = {
    "hour": "datetime64[ns, UTC]", **{k: "object" for k in GROUP_KEYS}, **METRIC_COLUMNS,
}
DAILY_COLUMNS: dict[str, str] = {
    "day": "datetime64[ns]", **{k: "object" for k in GROUP_KEYS}, **METRIC_COLUMNS,
}
METRIC_DESCRIPTIONS: dict[str, str] = {
    "cost_usd": "Our cost of the priced billable calls, USD.",
    "reported_cost_usd": "Cost the sources reported for the same billable calls, USD (where reported).",
    "input_tokens": "Input tokens of billable calls (cached included).",
    "output_tokens": "Output tokens of billable calls (reasoning included).",
    "cached_input_tokens": "Cached input tokens of billable calls.",
    "cache_write_tokens": "Prompt-cache write tokens of billable calls.",
    "reasoning_tokens": "Reasoning tokens of billable calls.",
    "calls": "Billable spans (model calls that made a request, per-call priced spans).",
    "errors": "Billable spans with status error.",
    "unpriced_calls": "Billable spans without a cost (unknown model, missing or invalid tokens).",
    "cost_mismatches": "Billable spans whose reported cost differs from ours beyond the tolerance.",
}


def empty(columns: dict[str, str]) -> pd.DataFrame:
    """An empty frame with the given columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def as_utc(series: pd.Series) -> pd.Series:
    """Timestamps as UTC-aware (warehouses may hand them back naive, meaning UTC)."""
    series = pd.to_datetime(series)
    return series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")


def _label_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and labels of a key column, blanks and nulls as NONE_LABEL (strings hashed once)."""
    codes, uniques = pd.factorize(series.astype("object"))
    labels = [str(u).strip() or NONE_LABEL for u in uniques] + [NONE_LABEL]
    label_codes, label_uniques = pd.factorize(np.array(labels, dtype=object))
    return label_codes[codes], np.asarray(label_uniques, dtype=object)  # code -1 (null) picks NONE_LABEL


def _group_sum(keys: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]], metrics: pd.DataFrame) -> pd.DataFrame:
    """Sum metrics by the keys (values, or (codes, labels) pairs), grouping on integer codes."""
    codes: dict[str, np.ndarray] = {}
    uniques: dict[str, np.ndarray] = {}
    for name, values in keys.items():
        if isinstance(values, tuple):
            codes[name], uniques[name] = values
        else:
            codes[name], uniques[name] = pd.factorize(values)
    frame = pd.DataFrame({**codes, **{c: metrics[c].to_numpy() for c in metrics.columns}})
    summed = frame.groupby(list(keys), sort=False, observed=True).sum().reset_index()
    for name in keys:
        summed[name] = np.asarray(uniques[name], dtype=object)[summed[name].to_numpy()]
    return summed.sort_values(list(keys), kind="stable").reset_index(drop=True)


def hourly_costs(priced: pd.DataFrame, time_column: str = "export_hour") -> pd.DataFrame:
    """Cost, tokens, calls, errors and unpriced calls of billable spans by hour and the GROUP_KEYS.

    `time_column` picks the hour a span counts in: `export_hour` (default) keeps each hourly partition's rows
    inside that partition, so re-materialising an hour replaces exactly its rows; `start_time` attributes
    late spans to the hour the call started instead.
    """
    needed = [time_column, *_SUMMED_INPUTS]
    billable = priced.loc[priced["billable"].to_numpy(dtype=bool), needed]
    if billable.empty:
        return empty(HOURLY_COLUMNS)
    hours = as_utc(billable[time_column]).dt.floor("h")
    keys: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {"hour": hours.to_numpy(dtype="datetime64[ns]")}
    keys.update({k: _label_codes(billable[k]) for k in GROUP_KEYS})
    cost = billable["cost_usd"].to_numpy(dtype="float64")
    metrics = pd.DataFrame({
        "cost_usd": np.nan_to_num(cost),
        "reported_cost_usd": np.nan_to_num(billable["reported_cost_usd"].to_numpy(dtype="float64")),
        # Negative counts (invalid_tokens rows) would cancel real ones: they count as unknown.
        **{c: np.clip(billable[c].to_numpy(dtype="float64", na_value=0), 0, None).astype("int64")
           for c in TOKEN_SUMS},
        "calls": np.ones(len(billable), dtype="int64"),
        "errors": (billable["status"].to_numpy(dtype=object) == "error").astype("int64"),
        "unpriced_calls": np.isnan(cost).astype("int64"),
        "cost_mismatches": billable["cost_mismatch"].to_numpy(dtype=bool).astype("int64"),
    }, index=billable.index)
    out = _group_sum(keys, metrics)
    out["hour"] = pd.to_datetime(out["hour"]).dt.tz_localize("UTC")
    return out[list(HOURLY_COLUMNS)].astype(HOURLY_COLUMNS)


def _concat(frames: pd.DataFrame | Iterable[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    if isinstance(frames, pd.DataFrame):
        return frames
    parts = [f for f in frames if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else empty(columns)


def daily_costs(hourly: pd.DataFrame | Iterable[pd.DataFrame], timezone: str = "UTC") -> pd.DataFrame:
    """Sum hourly_costs rows (one frame or several hours' frames) by calendar day in `timezone`.

    `day` is the local calendar day as a naive midnight timestamp (no time zone: it names a date).
    """
    frame = _concat(hourly, HOURLY_COLUMNS)
    if frame.empty:
        return empty(DAILY_COLUMNS)
    local_day = as_utc(frame["hour"]).dt.tz_convert(timezone).dt.tz_localize(None).dt.floor("D")
    keys: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {"day": local_day.to_numpy(dtype="datetime64[ns]")}
    keys.update({k: _label_codes(frame[k]) for k in GROUP_KEYS})
    out = _group_sum(keys, frame[list(METRIC_COLUMNS)])
    out["day"] = pd.to_datetime(out["day"])
    return out[list(DAILY_COLUMNS)].astype(DAILY_COLUMNS)


def to_markdown(df: pd.DataFrame, n: int = 10, floatfmt: str = ".4f") -> str:
    """The first n rows as a Markdown table (for Dagster metadata), noting how many rows were left out."""
    if df.empty:
        return "_no rows_"
    text = df.head(n).to_markdown(index=False, floatfmt=floatfmt)
    if len(df) > n:
        text += f"\n\n_{len(df) - n} more rows not shown_"
    return text
