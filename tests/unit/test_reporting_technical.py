"""The technical dashboard table on synthetic priced spans: exact percentiles and rates, dimensions, missing
optional inputs, empty days. `priced_calls` is also used by the business, monthly and browser tests."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import (
    HISTOGRAM_METRIC,
    LATENCY_BOUNDS_MS,
    pivot,
    response_cache_flags,
    technical_dashboard,
)


def priced_calls(day: str, n: int, *, hour: int = 10, cost: float = 0.01, users: int = 4, error_every: int = 0,
                 latency: Callable[[int], float] = lambda i: 100.0 * (i + 1), prefix: str = "",
                 **columns: Callable[[int], object]) -> pd.DataFrame:
    """n billable llm calls of one export hour, as priced_spans holds them; `columns` override per call."""
    export_hour = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=hour)
    rows = []
    for i in range(n):
        row = {
            "export_hour": export_hour, "span_id": f"{prefix}{day}-{hour}-{i}", "trace_id": f"{prefix}t{day}-{i}",
            "session_id": f"{prefix}{day}-conv-{i // 2}", "kind": "llm",
            "status": "error" if error_every and i % error_every == 0 else "ok", "billable": True,
            "model": "gpt-4o" if i % 2 == 0 else "gpt-4o-mini", "endpoint": "/chat", "feature": "support",
            "prompt_version": "v1", "user_id": f"u{i % users}", "latency_ms": latency(i),
            "time_to_first_token_ms": np.nan, "input_tokens": 1000, "output_tokens": 100,
            "cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "cost_usd": cost,
            "reported_cost_usd": np.nan, "cost_mismatch": False, "metadata": None,
        }
        row.update({name: make(i) for name, make in columns.items()})
        rows.append(row)
    if not rows:  # an empty partition still has its columns
        return priced_calls(day, 1, hour=hour).iloc[0:0]
    return pd.DataFrame(rows)


def value(frame: pd.DataFrame, metric: str, dimension: str = "all", label: str = "all") -> float:
    rows = frame[(frame["metric"] == metric) & (frame["dimension"] == dimension)
                 & (frame["dimension_value"] == label)]
    assert len(rows) == 1, f"{metric} {dimension}={label}: {len(rows)} rows"
    return float(rows["value"].iloc[0])


def row(frame: pd.DataFrame, metric: str) -> pd.Series:
    return frame[(frame["metric"] == metric) & (frame["dimension"] == "all")].iloc[0]


def test_exact_figures_overall_and_by_dimension() -> None:
    spans = priced_calls(
        "2026-10-01", 20, error_every=5, cost=0.02,
        endpoint=lambda i: "/chat" if i < 15 else "/search",
        prompt_version=lambda i: "v2" if i >= 10 else "v1",
        time_to_first_token_ms=lambda i: 10.0 * i if i % 2 else np.nan,
        cached_input_tokens=lambda i: 250 if i < 8 else 0,
        model=lambda i: None if i == 19 else ("gpt-4o" if i % 2 == 0 else "gpt-4o-mini"),
    )
    table = technical_dashboard(spans, "2026-10-01")
    assert value(table, "calls") == 20 and value(table, "errors") == 4
    assert value(table, "error_rate") == pytest.approx(0.2)
    # Nearest rank over 100, 200, ..., 2000 ms: p50 is the 10th value, p95 the 19th, p99 the 20th.
    assert (value(table, "latency_p50_ms"), value(table, "latency_p95_ms"), value(table, "latency_p99_ms")) == (
        1000.0, 1900.0, 2000.0)
    assert value(table, "ttft_p50_ms") == 90.0 and row(table, "ttft_p50_ms")["sample_size"] == 10
    assert value(table, "input_tokens") == 20_000 and value(table, "tokens_per_call") == 1100
    assert value(table, "cached_input_share") == pytest.approx(2000 / 20_000)
    assert value(table, "prompt_cache_hit_rate") == pytest.approx(8 / 20)
    assert value(table, "cost_usd") == pytest.approx(0.4) and value(table, "cost_per_call_usd") == pytest.approx(0.02)
    assert value(table, "calls", "endpoint", "/search") == 5
    assert value(table, "error_rate", "endpoint", "/search") == pytest.approx(1 / 5)  # call 15
    assert value(table, "latency_p95_ms", "prompt_version", "v1") == 1000.0
    assert value(table, "calls", "model", "(none)") == 1  # a blank key is a visible group, not dropped
    assert set(table["day"]) == {pd.Timestamp("2026-10-01")}


def test_only_billable_llm_calls_of_the_day_count() -> None:
    spans = pd.concat([
        priced_calls("2026-10-01", 3),
        priced_calls("2026-10-01", 2, prefix="rollup-", billable=lambda i: False),
        priced_calls("2026-10-01", 2, prefix="embed-", kind=lambda i: "embedding"),
        priced_calls("2026-10-02", 5, hour=0),
    ], ignore_index=True)
    table = technical_dashboard(spans, "2026-10-01")
    assert value(table, "calls") == 3


def test_hourly_series_and_histogram() -> None:
    spans = pd.concat([priced_calls("2026-10-01", 4, hour=3), priced_calls("2026-10-01", 2, hour=22, prefix="b")])
    table = technical_dashboard(spans, "2026-10-01")
    hourly = pivot(table, "hour", ["calls", "errors", "latency_p95_ms"])
    assert len(hourly) == 24
    assert dict(zip(hourly["dimension_value"], hourly["calls"], strict=True))["2026-10-01 03:00"] == 4
    assert hourly["calls"].sum() == 6 and hourly["latency_p95_ms"].notna().sum() == 2
    histogram = table[table["metric"] == HISTOGRAM_METRIC]
    assert len(histogram) == len(LATENCY_BOUNDS_MS)
    counts = dict(zip(histogram["dimension_value"].astype(int), histogram["value"], strict=True))
    # Latencies 100, 200, 300, 400 and 100, 200 ms; the bounds are exclusive.
    assert (counts[100], counts[200], counts[300], counts[500]) == (0, 2, 4, 6)


def test_empty_day_has_every_metric_with_a_reason() -> None:
    empty = priced_calls("2026-10-01", 0)
    table = technical_dashboard(empty, "2026-10-01")
    assert value(table, "calls") == 0
    assert np.isnan(value(table, "latency_p95_ms")) and row(table, "latency_p95_ms")["note"]
    assert np.isnan(value(table, "error_rate")) and row(table, "error_rate")["note"] == "no model calls"
    assert (table["dimension"] == "hour").sum() == 3 * 24
    assert set(table["dimension"]) == {"all", "hour", "latency_bound_ms"}


def test_optional_quality_inputs() -> None:
    spans = priced_calls("2026-10-01", 10, prompt_version=lambda i: "v2" if i >= 5 else "v1")
    missing = technical_dashboard(spans, "2026-10-01")
    assert np.isnan(value(missing, "quality_score"))
    assert row(missing, "quality_score")["note"] == "hallucination_scores has not been materialised"
    assert row(missing, "satisfaction")["note"] == "satisfaction_scores has not been materialised"

    scores = pd.DataFrame({"export_hour": spans["export_hour"], "span_id": spans["span_id"],
                           "trust_score": [0.9] * 5 + [0.4] * 5, "risk_level": ["low"] * 5 + ["high"] * 5})
    feedback = pd.DataFrame({"span_id": spans["span_id"][:4], "response_hour": spans["export_hour"][:4],
                             "satisfaction": [1.0, 0.5, 0.75, 0.25]})
    table = technical_dashboard(spans, "2026-10-01", hallucination=scores, satisfaction=feedback)
    assert value(table, "quality_score") == pytest.approx(0.65)
    assert value(table, "quality_score", "prompt_version", "v2") == pytest.approx(0.4)
    assert value(table, "high_risk_share", "prompt_version", "v2") == 1.0
    assert value(table, "satisfaction") == pytest.approx(0.625) and row(table, "satisfaction")["sample_size"] == 4
    # Present but without rows for a group: "no responses with feedback", not "not materialised".
    assert table[(table["metric"] == "satisfaction") & (table["dimension_value"] == "v2")]["note"].iloc[0] == (
        "no responses with feedback")


def test_response_cache_flags() -> None:
    metadata = pd.Series([json.dumps({"cache_hit": True}), '{"cache_hit": "MISS"}', {"cache_hit": "hit"},
                          '{"other": 1}', "not json cache_hit", None, '{"cache_hit": "maybe"}'])
    flags = response_cache_flags(metadata, ["cache_hit"])
    assert flags.tolist()[:3] == [1.0, 0.0, 1.0] and flags.iloc[3:].isna().all()
    spans = priced_calls("2026-10-01", 4, metadata=lambda i: json.dumps({"cache_hit": i == 0}) if i < 2 else None)
    table = technical_dashboard(spans, "2026-10-01", ReportingSettings())
    assert value(table, "response_cache_hit_rate") == 0.5 and row(table, "response_cache_hit_rate")["sample_size"] == 2
    silent = technical_dashboard(priced_calls("2026-10-01", 4), "2026-10-01")
    assert np.isnan(value(silent, "response_cache_hit_rate"))
