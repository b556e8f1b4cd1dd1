"""Hourly and daily cost tables, the monthly summary and the Markdown helper."""

from __future__ import annotations

import pandas as pd
import pytest

from aiobs_pipeline.costs.aggregate import (
    DAILY_COLUMNS,
    HOURLY_COLUMNS,
    NONE_LABEL,
    daily_costs,
    hourly_costs,
    to_markdown,
)
from aiobs_pipeline.costs.pricing import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.costs.summary import PROJECTION_DAYS, cost_summary
from aiobs_pipeline.schema import SPAN_COLUMNS, conform

HOUR = pd.Timestamp("2025-03-01T10:00:00Z")
BASE = {
    "trace_id": "t1", "kind": "llm", "status": "ok", "source_format": "native", "source_file": "f.jsonl",
    "source_line": 1, "export_hour": HOUR, "schema_version": 1, "provider": "openai", "response_model": "gpt-4o",
    "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
}
CALL_USD = (1000 * 2.5 + 100 * 10) / 1e6


def spans(*rows: dict) -> pd.DataFrame:
    full = [{**BASE, "span_id": f"s{i}", "name": "chat", "start_time": HOUR + pd.Timedelta(minutes=i),
             "user_id": "u1", "feature": "chat", "endpoint": "/chat", "prompt_version": "v1", **row}
            for i, row in enumerate(rows)]
    return conform(pd.DataFrame(full), SPAN_COLUMNS)


def test_hourly_costs_counts_billable_spans_once_and_keeps_null_groups() -> None:
    frame = spans(
        {},
        {"status": "error", "cached_input_tokens": 400, "reasoning_tokens": 50},
        {"user_id": None, "feature": "", "prompt_version": None},
        {"response_model": "gpt-4-mystery", "model": "gpt-4-mystery"},
        # A rollup parent carrying its child's tokens, and its child.
        {"span_id": "parent", "input_tokens": 5000, "output_tokens": 500},
        {"span_id": "child", "parent_span_id": "parent", "input_tokens": 5000, "output_tokens": 500},
        {"kind": "retrieval", "name": "vector_search", "model": None, "response_model": None,
         "input_tokens": None, "output_tokens": None},
    )
    priced = price_spans(frame, CostSettings(per_call_prices=[{"name": "vector_search", "usd_per_call": 0.001}]))
    hourly = hourly_costs(priced)
    assert list(hourly.columns) == list(HOURLY_COLUMNS)
    assert {c: str(hourly[c].dtype) for c in HOURLY_COLUMNS} == HOURLY_COLUMNS
    assert hourly["hour"].unique().tolist() == [HOUR]
    by_key = hourly.set_index(["user_id", "feature", "model", "prompt_version"])
    main = by_key.loc[("u1", "chat", "gpt-4o", "v1")]
    assert main["calls"] == 3 and main["errors"] == 1 and main["unpriced_calls"] == 0
    assert main["input_tokens"] == 1000 + 1000 + 5000 and main["cached_input_tokens"] == 400
    assert main["reasoning_tokens"] == 50
    nulls = by_key.loc[(NONE_LABEL, NONE_LABEL, "gpt-4o", NONE_LABEL)]
    assert nulls["calls"] == 1 and nulls["cost_usd"] == pytest.approx(CALL_USD)
    mystery = by_key.loc[("u1", "chat", "gpt-4-mystery", "v1")]
    assert mystery["unpriced_calls"] == 1 and mystery["cost_usd"] == 0
    assert by_key.loc[("u1", "chat", NONE_LABEL, "v1"), "cost_usd"] == pytest.approx(0.001)
    assert hourly["calls"].sum() == int(priced["billable"].sum()) == 6
    assert hourly["cost_usd"].sum() == pytest.approx(priced.loc[priced["billable"], "cost_usd"].sum())


def test_hourly_costs_by_start_time_puts_late_spans_in_their_hour() -> None:
    frame = spans({}, {"start_time": HOUR - pd.Timedelta(minutes=90)})
    priced = price_spans(frame, CostSettings())
    assert hourly_costs(priced)["hour"].tolist() == [HOUR]
    by_start = hourly_costs(priced, time_column="start_time")
    assert by_start["hour"].tolist() == [HOUR - pd.Timedelta(hours=2), HOUR]


def test_hourly_costs_of_an_hour_without_billable_spans_is_empty() -> None:
    priced = price_spans(spans({"kind": "chain"}), CostSettings())
    hourly = hourly_costs(priced)
    assert hourly.empty and {c: str(hourly[c].dtype) for c in HOURLY_COLUMNS} == HOURLY_COLUMNS


def _hourly_for(hour: pd.Timestamp, user: str = "u1", calls: int = 1) -> pd.DataFrame:
    frame = spans(*[{"export_hour": hour, "start_time": hour, "user_id": user}] * calls)
    return hourly_costs(price_spans(frame, CostSettings()))


def test_daily_costs_sums_24_hourly_frames_by_day_in_a_timezone() -> None:
    hours = pd.date_range("2025-03-01T00:00Z", periods=24, freq="h")
    frames = [_hourly_for(h, calls=2) for h in hours]
    daily = daily_costs(frames)
    assert list(daily.columns) == list(DAILY_COLUMNS)
    assert daily["day"].tolist() == [pd.Timestamp("2025-03-01")]
    assert daily.loc[0, "calls"] == 48 and daily.loc[0, "cost_usd"] == pytest.approx(48 * CALL_USD)
    paris = daily_costs(pd.concat(frames), timezone="Europe/Paris")  # UTC+1: 23:00 UTC is the next day
    assert paris.set_index("day")["calls"].to_dict() == {pd.Timestamp("2025-03-01"): 46,
                                                          pd.Timestamp("2025-03-02"): 2}
    assert daily_costs([]).empty
    naive = pd.concat(frames).assign(hour=lambda f: f["hour"].dt.tz_localize(None))  # as a warehouse may return
    pd.testing.assert_frame_equal(daily_costs(naive), daily)


def _daily(day: str, user: str, cost: float, feature: str = "chat", model: str = "gpt-4o",
           calls: int = 1) -> dict:
    return {"day": pd.Timestamp(day), "user_id": user, "feature": feature, "endpoint": "/chat", "model": model,
            "prompt_version": "v1", "cost_usd": cost, "reported_cost_usd": 0.0, "input_tokens": 10,
            "output_tokens": 1, "cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
            "calls": calls, "errors": 0, "unpriced_calls": 0, "cost_mismatches": 0}


def test_cost_summary_month_to_date() -> None:
    rows = [_daily(f"2025-03-{d:02d}", f"u{u}", 1.0 + u, feature="chat" if u % 2 else "search",
                   model="gpt-4o" if u < 6 else "gpt-4o-mini")
            for d in (1, 2, 4, 5, 6, 7, 8, 9, 10) for u in range(12)]
    rows.append(_daily("2025-03-10", NONE_LABEL, 100.0))
    rows.append(_daily("2025-02-28", "u1", 1000.0))  # previous month: ignored
    rows.append(_daily("2025-03-11", "u1", 1000.0))  # after the day: ignored
    summary = cost_summary(pd.DataFrame(rows), pd.Timestamp("2025-03-10"))
    per_day = sum(1.0 + u for u in range(12))  # 78
    mtd = 9 * per_day + 100.0
    assert summary["month_to_date_usd"] == pytest.approx(mtd)
    assert (summary["days_elapsed"], summary["days_in_month"]) == (10, 31)
    trend = summary["cost_trend"]
    assert len(trend) == 10 and trend.loc[2, "cost_usd"] == 0  # March 3rd had no spend: a zero, not a gap
    last7 = trend["cost_usd"].tail(PROJECTION_DAYS).mean()
    assert last7 == pytest.approx((6 * per_day + 178.0) / 7)
    assert summary["projected_month_usd"] == pytest.approx(mtd + last7 * 21)
    top = summary["top_spenders"]
    assert len(top) == 10 and top.iloc[0]["user_id"] == "u11" and NONE_LABEL not in top["user_id"].tolist()
    assert top.iloc[0]["cost_usd"] == pytest.approx(9 * 12.0)
    assert summary["active_users"] == 12
    assert summary["cost_per_active_user_usd"] == pytest.approx(mtd / 12)
    features = summary["cost_by_feature"].set_index("feature")
    assert features["share_of_cost"].sum() == pytest.approx(1.0)
    assert set(summary["cost_by_model"]["model"]) == {"gpt-4o", "gpt-4o-mini"}
    assert trend["active_users"].tolist()[:3] == [12, 12, 0]


def test_cost_summary_of_an_empty_month() -> None:
    summary = cost_summary(pd.DataFrame(columns=list(DAILY_COLUMNS)), pd.Timestamp("2025-02-03"))
    assert summary["month_to_date_usd"] == 0 and summary["projected_month_usd"] == 0
    assert summary["cost_per_active_user_usd"] is None and len(summary["cost_trend"]) == 3
    assert summary["top_spenders"].empty


def test_to_markdown_limits_rows() -> None:
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(12)], "cost_usd": [i / 3 for i in range(12)]})
    text = to_markdown(frame, 3)
    assert text.count("\n| u") == 3 and "| u0 " in text and "0.3333" in text
    assert text.endswith("_9 more rows not shown_")
    assert to_markdown(frame.iloc[0:0]) == "_no rows_"
