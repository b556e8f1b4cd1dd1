"""Budget breaches and cost-spike detection on synthetic frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.costs.aggregate import HOURLY_COLUMNS, NONE_LABEL, hourly_costs
from aiobs_pipeline.costs.anomalies import ANOMALY_COLUMNS, alerts, cost_anomalies
from aiobs_pipeline.costs.budgets import BREACH_COLUMNS, budget_breaches, user_spend_before
from aiobs_pipeline.costs.pricing import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.schema import SPAN_COLUMNS, conform

HOUR = pd.Timestamp("2025-03-08T14:00:00Z")


def spans(hour: pd.Timestamp, calls: dict[str | None, int], input_tokens: int = 8000, output_tokens: int = 500,
          feature: str = "chat") -> pd.DataFrame:
    """`calls[user]` gpt-4o calls per user in `hour` (about $0.025 each with the default tokens)."""
    rows = [{
        "trace_id": f"{user}-{i}", "span_id": "s", "name": "chat", "kind": "llm", "status": "ok",
        "start_time": hour + pd.Timedelta(seconds=i), "provider": "openai", "response_model": "gpt-4o",
        "model": "gpt-4o", "input_tokens": input_tokens, "output_tokens": output_tokens, "user_id": user,
        "feature": feature, "endpoint": "/chat", "prompt_version": "v1", "source_format": "native",
        "source_file": "f.jsonl", "source_line": i + 1, "export_hour": hour, "schema_version": 1,
    } for user, count in calls.items() for i in range(count)]
    return conform(pd.DataFrame(rows), SPAN_COLUMNS)


def hourly_row(hour: pd.Timestamp, user: str, cost: float, calls: int, feature: str = "chat") -> dict:
    return {"hour": hour, "user_id": user, "feature": feature, "endpoint": "/chat", "model": "gpt-4o",
            "prompt_version": "v1", "cost_usd": cost, "reported_cost_usd": 0.0, "input_tokens": calls * 8000,
            "output_tokens": calls * 500, "cached_input_tokens": 0, "cache_write_tokens": 0,
            "reasoning_tokens": 0, "calls": calls, "errors": 0, "unpriced_calls": 0, "cost_mismatches": 0}


def hourly_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(HOURLY_COLUMNS)).astype(HOURLY_COLUMNS)


# ---------------------------------------------------------------- budgets

def test_user_over_daily_budget_counting_earlier_hours() -> None:
    settings = CostSettings(user_budget_overrides={"vip": 50.0})
    earlier = hourly_frame([
        hourly_row(HOUR - pd.Timedelta(hours=2), "heavy", 4.5, 180),
        hourly_row(HOUR - pd.Timedelta(hours=1), "already", 6.0, 240),
        hourly_row(HOUR - pd.Timedelta(hours=1), "vip", 40.0, 1600),
        hourly_row(HOUR - pd.Timedelta(hours=15), "heavy", 100.0, 4000),  # yesterday: another budget day
        hourly_row(HOUR, "heavy", 100.0, 4000),  # this hour itself: comes from the spans, not from here
    ])
    before = user_spend_before(earlier, HOUR, settings)
    assert before.set_index("user_id")["spend_usd"].to_dict() == {"already": 6.0, "heavy": 4.5, "vip": 40.0}
    current = price_spans(spans(HOUR, {"heavy": 40, "light": 10, "already": 1, "vip": 40}), settings)
    breaches = budget_breaches(current, before, settings)
    assert list(breaches.columns) == list(BREACH_COLUMNS)
    by_user = breaches.set_index("subject")
    assert set(by_user.index) == {"heavy", "already"}  # light stays under 5 USD, vip under its 50 USD
    heavy = by_user.loc["heavy"]
    assert heavy["spend_usd"] == pytest.approx(4.5 + heavy["spend_this_hour_usd"])
    assert heavy["spend_this_hour_usd"] == pytest.approx(40 * 0.025)
    assert (heavy["scope"], heavy["budget_usd"], heavy["recommended_action"]) == ("user", 5.0, "rate_limit_user")
    assert bool(heavy["first_breach"]) and not bool(by_user.loc["already", "first_breach"])
    assert heavy["window"] == "day 2025-03-08 (UTC)"
    assert heavy["window_start"] == pd.Timestamp("2025-03-08T00:00Z")
    assert heavy["window_end"] == HOUR + pd.Timedelta(hours=1)


def test_budget_day_follows_the_configured_timezone() -> None:
    settings = CostSettings(budget_timezone="America/New_York")  # 14:00 UTC = 09:00 in New York (EST)
    earlier = hourly_frame([hourly_row(pd.Timestamp("2025-03-08T04:00Z"), "u1", 4.9, 100),  # 23:00 the day before
                            hourly_row(pd.Timestamp("2025-03-08T06:00Z"), "u2", 4.9, 100)])  # 01:00 same day
    before = user_spend_before(earlier, HOUR, settings)
    assert before["user_id"].tolist() == ["u2"]
    breaches = budget_breaches(price_spans(spans(HOUR, {"u1": 10, "u2": 10}), settings), before, settings)
    assert breaches["subject"].tolist() == ["u2"]
    assert breaches.loc[0, "window_start"] == pd.Timestamp("2025-03-08T05:00Z")


def test_total_over_hourly_budget_pages_and_spend_without_user_is_not_a_user_breach() -> None:
    settings = CostSettings(hourly_total_budget_usd=9.0)
    current = price_spans(spans(HOUR, {None: 300, "u1": 100}), settings)
    breaches = budget_breaches(current, None, settings)
    assert breaches[["scope", "subject", "recommended_action"]].values.tolist() == [
        ["total", "all", "page_oncall"]]
    assert breaches.loc[0, "spend_usd"] == pytest.approx(400 * 0.025)
    assert breaches.loc[0, "window"] == "hour 2025-03-08 14:00 UTC"


def test_no_breach_gives_an_empty_typed_frame() -> None:
    out = budget_breaches(price_spans(spans(HOUR, {"u1": 1}), CostSettings()), None, CostSettings())
    assert out.empty and {c: str(out[c].dtype) for c in BREACH_COLUMNS} == BREACH_COLUMNS
    with pytest.raises(ValueError, match="exactly one export_hour"):
        budget_breaches(price_spans(spans(HOUR, {}), CostSettings()), None, CostSettings())


# ---------------------------------------------------------------- anomalies

# user -> (feature, calls per active hour, active hours UTC); gpt-4o calls of about 0.025 USD.
USERS = {
    "bot-a": ("support_bot", 120, range(24)),
    "bot-b": ("support_bot", 200, range(24)),
    "analyst-1": ("search", 70, range(8, 19)),
    "analyst-2": ("search", 90, range(9, 18)),
    "writer-1": ("summarise", 60, range(7, 21)),
    "writer-2": ("summarise", 80, range(10, 16)),
    **{f"casual-{i}": ("chat", 6, range(6, 23)) for i in range(12)},
}
CALL_USD = 0.025


def ordinary_history(days: int, seed: int = 11, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """hourly_costs rows for `days` ordinary days before `end` (default: HOUR's midnight): Poisson calls,
    noisy cost per call, quieter weekends."""
    rng = np.random.default_rng(seed)
    end = HOUR.normalize() if end is None else end
    rows = []
    for hour in pd.date_range(end - pd.Timedelta(days=days), end, freq="h", inclusive="left"):
        weekend = hour.dayofweek >= 5
        for user, (feature, rate, hours) in USERS.items():
            if hour.hour not in hours:
                continue
            calls = rng.poisson(rate * (0.8 if weekend else 1.0))
            if calls:
                cost = float(np.sum(rng.lognormal(np.log(CALL_USD), 0.3, calls)))
                rows.append(hourly_row(hour, user, cost, int(calls), feature))
    return hourly_frame(rows)


def test_seven_ordinary_days_raise_no_alert() -> None:
    history = ordinary_history(8)
    settings = CostSettings()
    statuses: list[str] = []
    for hour in pd.date_range(HOUR.normalize() - pd.Timedelta(days=1), periods=24, freq="h"):
        current = history[history["hour"] == hour]
        result = cost_anomalies(current, history, settings, hour=hour)
        assert alerts(result).empty, result[result["status"].isin(["warning", "critical"])]
        statuses += result["status"].tolist()
    counts = pd.Series(statuses).value_counts()
    assert counts["ok"] > 100  # heavy users, features and totals were really judged
    assert counts["below_min_spend"] > 100  # casual users never are


def test_user_in_an_infinite_loop_is_critical_within_the_hour() -> None:
    history = ordinary_history(7)
    ordinary_now = ordinary_history(1, seed=99, end=HOUR.normalize() + pd.Timedelta(days=1))
    ordinary_now = ordinary_now[(ordinary_now["hour"] == HOUR) & (ordinary_now["user_id"] != "analyst-1")]
    # analyst-1 normally makes ~70 calls an hour; a retry loop makes 700 in this one.
    loop = hourly_costs(price_spans(spans(HOUR, {"analyst-1": 700}, feature="search"), CostSettings()))
    current = pd.concat([ordinary_now, loop], ignore_index=True)
    result = cost_anomalies(current, history, CostSettings())
    assert list(result.columns) == list(ANOMALY_COLUMNS)
    flagged = alerts(result)
    user = result.set_index(["scope", "subject"]).loc[("user", "analyst-1")]
    assert user["status"] == "critical" and user["ratio"] >= 3
    assert user["baseline_method"] == "same_hour_7d" and user["baseline_points"] >= 3
    assert user["baseline_usd"] == pytest.approx(70 * CALL_USD, rel=0.25)
    naive = history.assign(hour=history["hour"].dt.tz_localize(None))  # as a warehouse may return it
    pd.testing.assert_frame_equal(cost_anomalies(current, naive, CostSettings()), result)
    assert ("feature", "search") in set(zip(flagged["scope"], flagged["subject"], strict=True))
    assert flagged.iloc[0]["status"] == "critical" and flagged.iloc[0]["subject"] == "analyst-1"
    others = result[(result["scope"] == "user") & (result["subject"] != "analyst-1")]
    assert not others["status"].isin(["warning", "critical"]).any()


def test_a_new_users_first_dollars_are_not_a_spike() -> None:
    history = ordinary_history(7)
    current = hourly_frame([hourly_row(HOUR, "newcomer", 3.0, 120), hourly_row(HOUR, "bot-a", 0.4, 16)])
    result = cost_anomalies(current, history, CostSettings(anomaly_scopes=["user"])).set_index("subject")
    assert result.loc["newcomer", "status"] == "insufficient_history"
    assert pd.isna(result.loc["newcomer", "ratio"]) and result.loc["newcomer", "baseline_points"] == 0
    assert result.loc["bot-a", "status"] == "below_min_spend"


def test_falls_back_to_the_trailing_24h_median_with_little_history() -> None:
    history = ordinary_history(1, end=HOUR)  # the last 24 hours: one same-hour point, 24 recent hours
    current = hourly_frame([hourly_row(HOUR, "bot-b", 200 * CALL_USD * 4, 800)])
    row = cost_anomalies(current, history, CostSettings(anomaly_scopes=["user"])).iloc[0]
    assert row["baseline_method"] == "trailing_24h" and row["baseline_points"] == 24
    assert row["status"] == "critical"
    warning = cost_anomalies(hourly_frame([hourly_row(HOUR, "bot-b", 200 * CALL_USD * 2, 400)]), history,
                             CostSettings(anomaly_scopes=["user"])).iloc[0]
    assert warning["status"] == "warning"


def test_median_baseline_is_not_masked_by_yesterdays_incident() -> None:
    history = ordinary_history(7)
    yesterday = HOUR - pd.Timedelta(days=1)
    history.loc[(history["hour"] == yesterday) & (history["user_id"] == "bot-b"), "cost_usd"] = 500.0
    current = hourly_frame([hourly_row(HOUR, "bot-b", 200 * CALL_USD * 5, 1000)])
    row = cost_anomalies(current, history, CostSettings(anomaly_scopes=["user"])).iloc[0]
    assert row["status"] == "critical" and row["baseline_usd"] < 10


def test_quiet_hour_still_reports_the_total_and_history_after_the_hour_is_ignored() -> None:
    history = ordinary_history(7)
    future = hourly_frame([hourly_row(HOUR + pd.Timedelta(hours=1), "bot-a", 1000.0, 10)])
    result = cost_anomalies(hourly_frame([]), pd.concat([history, future]), CostSettings(), hour=HOUR)
    assert result[["scope", "subject", "spend_usd", "status"]].values.tolist() == [
        ["total", "all", 0.0, "below_min_spend"]]
    unknown_user = hourly_frame([hourly_row(HOUR, None, 2.0, 80)])
    out = cost_anomalies(unknown_user, history, CostSettings(anomaly_scopes=["user"]))
    assert out["subject"].tolist() == [NONE_LABEL]


def test_small_absolute_increase_is_not_a_spike() -> None:
    history = hourly_frame([hourly_row(HOUR - pd.Timedelta(days=d), "writer", 1.4, 56) for d in range(1, 8)])
    current = hourly_frame([hourly_row(HOUR, "writer", 2.2, 88)])  # 1.57x, but only 0.80 USD more
    default = cost_anomalies(current, history, CostSettings(anomaly_scopes=["user"])).iloc[0]
    assert (default["status"], default["ratio"]) == ("ok", pytest.approx(2.2 / 1.4))
    strict = cost_anomalies(current, history, CostSettings(anomaly_scopes=["user"], min_increase_usd=0.5))
    assert strict.iloc[0]["status"] == "warning"
