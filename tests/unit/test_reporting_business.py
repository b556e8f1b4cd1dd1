"""The business dashboard table: exact figures against the previous day, missing periods and inputs reported
as n/a (never zero), feature usage, the cost trend, the support estimate and its printed assumptions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from aiobs_pipeline.costs.aggregate import daily_costs, hourly_costs
from aiobs_pipeline.costs.summary import cost_summary
from aiobs_pipeline.reporting.business import business_dashboard
from aiobs_pipeline.reporting.metrics import Figure, MetricSpec, compare, target_status, trend
from aiobs_pipeline.reporting.settings import ReportingSettings, SupportImpactSettings
from tests.unit.test_reporting_technical import priced_calls

SUMMARY_KEYS = ("day", "month_to_date_usd", "projected_month_usd", "active_users", "calls", "projection_method")


def cost_tables(priced: pd.DataFrame, days: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """daily_costs and cost_summary as the cost assets compute them, for the given days."""
    daily = daily_costs(hourly_costs(priced))
    summary = pd.DataFrame([{k: v for k, v in cost_summary(daily, pd.Timestamp(d)).items() if k in SUMMARY_KEYS}
                            for d in days])
    summary["day"] = pd.to_datetime(summary["day"])
    return daily, summary


def overall(frame: pd.DataFrame, metric: str) -> pd.Series:
    rows = frame[(frame["metric"] == metric) & (frame["dimension"] == "all")]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.fixture
def two_days() -> pd.DataFrame:
    return pd.concat([priced_calls("2026-09-30", 10, cost=0.01, users=4),
                      priced_calls("2026-10-01", 15, cost=0.02, users=5)], ignore_index=True)


def test_figures_against_the_previous_day(two_days: pd.DataFrame) -> None:
    daily, summary = cost_tables(two_days, ["2026-09-30", "2026-10-01"])
    settings = ReportingSettings(cost_per_user_target_usd=0.05)
    table = business_dashboard("2026-10-01", daily, summary, two_days, settings)
    assert set(table["day"]) == {pd.Timestamp("2026-10-01")}
    cost = overall(table, "cost_usd")
    assert (cost["value"], cost["previous_value"], cost["trend"]) == (pytest.approx(0.3), pytest.approx(0.1), "up")
    assert cost["change_pct"] == pytest.approx(2.0) and cost["change_abs"] == pytest.approx(0.2)
    calls = overall(table, "calls")
    assert (calls["value"], calls["previous_value"], calls["change_pct"]) == (15, 10, 0.5)
    per_user = overall(table, "cost_per_user_usd")
    assert per_user["value"] == pytest.approx(0.06) and per_user["previous_value"] == pytest.approx(0.025)
    assert per_user["target_status"] == "below" and per_user["target"] == 0.05 and per_user["direction"] == "lower"
    assert overall(table, "active_users")["value"] == 5
    assert overall(table, "cost_per_call_usd")["value"] == pytest.approx(0.02)
    projection = overall(table, "monthly_cost_projection_usd")
    assert projection["value"] == pytest.approx(summary["projected_month_usd"].iloc[1])
    assert "month-to-date spend" in projection["note"]
    assert overall(table, "conversations")["value"] == 8  # sessions of two calls: 0-1, ..., 14


def test_previous_day_not_computed_gives_na_change_not_zero(two_days: pd.DataFrame) -> None:
    daily, summary = cost_tables(two_days, ["2026-10-01"])
    table = business_dashboard("2026-10-01", daily, summary, two_days)
    calls = overall(table, "calls")
    assert calls["value"] == 15 and np.isnan(calls["previous_value"]) and np.isnan(calls["change_pct"])
    assert calls["trend"] == "n/a"
    assert "previous period: no cost_summary row for this day" in calls["note"]


def test_day_not_computed_has_no_figures() -> None:
    daily, summary = cost_tables(priced_calls("2026-09-30", 3), ["2026-09-30"])
    table = business_dashboard("2026-10-01", daily, summary, priced_calls("2026-10-01", 0))
    for metric in ("cost_usd", "calls", "cost_per_user_usd", "tickets_deflected"):
        figure = overall(table, metric)
        assert np.isnan(figure["value"]) and figure["note"].startswith("no cost_summary row"), metric
        assert figure["target_status"] == "n/a" and figure["trend"] == "n/a"


def test_day_without_traffic_is_zero_when_computed() -> None:
    spans = priced_calls("2026-09-30", 3)
    daily, summary = cost_tables(spans, ["2026-09-30", "2026-10-01"])
    table = business_dashboard("2026-10-01", daily, summary, spans)
    calls = overall(table, "calls")
    assert (calls["value"], calls["previous_value"], calls["trend"]) == (0, 3, "down")
    assert np.isnan(overall(table, "cost_per_user_usd")["value"])
    assert overall(table, "cost_per_user_usd")["note"] == "no calls with a user id"


def test_optional_quality_and_satisfaction(two_days: pd.DataFrame) -> None:
    daily, summary = cost_tables(two_days, ["2026-09-30", "2026-10-01"])
    missing = business_dashboard("2026-10-01", daily, summary, two_days)
    for metric, table in (("user_satisfaction", "satisfaction_scores"), ("quality_score", "hallucination_scores"),
                          ("answer_accuracy", "hallucination_scores")):
        row = overall(missing, metric)
        assert np.isnan(row["value"]) and row["note"].startswith(table) and row["target_status"] == "n/a"

    today = two_days[two_days["export_hour"].dt.day == 1]
    trust = [0.9] * 12 + [0.3] * 3
    hallucination = pd.DataFrame({"export_hour": today["export_hour"], "span_id": today["span_id"],
                                  "trust_score": trust, "risk_level": ["low"] * 12 + ["high"] * 3})
    feedback = pd.DataFrame({"span_id": [f"r{i}" for i in range(25)],
                             "response_hour": pd.Timestamp("2026-10-01 10:00", tz="UTC"),
                             "satisfaction": [0.8] * 20 + [0.3] * 5})
    table = business_dashboard("2026-10-01", daily, summary, two_days, ReportingSettings(min_responses=20),
                               hallucination, feedback)
    satisfaction = overall(table, "user_satisfaction")
    assert satisfaction["value"] == pytest.approx(0.7) and satisfaction["sample_size"] == 25
    assert satisfaction["target_status"] == "meeting"  # 0.70 against the 70% target
    assert satisfaction["trend"] == "n/a" and satisfaction["note"] == "previous period: no responses with feedback"
    quality = overall(table, "quality_score")
    assert quality["value"] == pytest.approx(0.78) and quality["target_status"] == "insufficient data"
    assert quality["note"] == "only 15 scored responses (judged from 20); previous period: no scored responses"
    assert overall(table, "answer_accuracy")["value"] == pytest.approx(0.8)


def test_feature_usage_and_cost_trend() -> None:
    spans = pd.concat([priced_calls("2026-09-30", 6, feature=lambda i: "search" if i < 2 else "support"),
                       priced_calls("2026-10-01", 4)], ignore_index=True)
    daily, summary = cost_tables(spans, ["2026-09-30", "2026-10-01"])
    table = business_dashboard("2026-10-01", daily, summary, spans, ReportingSettings(cost_trend_days=5))
    features = table[(table["dimension"] == "feature") & (table["metric"] == "feature_calls")]
    by_name = {r["dimension_value"]: r for _, r in features.iterrows()}
    assert (by_name["search"]["value"], by_name["search"]["previous_value"], by_name["search"]["trend"]) == (
        0, 2, "down")
    assert (by_name["support"]["value"], by_name["support"]["previous_value"]) == (4, 4)
    trend_rows = table[table["metric"] == "daily_cost_usd"]
    assert trend_rows["dimension_value"].tolist() == ["2026-09-27", "2026-09-28", "2026-09-29", "2026-09-30",
                                                      "2026-10-01"]
    assert trend_rows["value"].iloc[:3].isna().all() and trend_rows["value"].iloc[3:].tolist() == pytest.approx(
        [0.06, 0.04])


def test_support_estimate_prints_its_assumptions() -> None:
    spans = priced_calls("2026-10-01", 10, feature=lambda i: "support" if i < 6 else "chat")
    daily, summary = cost_tables(spans, ["2026-10-01"])
    settings = ReportingSettings(support=SupportImpactSettings(features=["support"], deflection_rate=0.5,
                                                               cost_per_ticket_usd=10))
    table = business_dashboard("2026-10-01", daily, summary, spans, settings)
    assert overall(table, "conversations")["value"] == 3  # sessions 0, 1, 2 hold the support calls
    tickets, savings = overall(table, "tickets_deflected"), overall(table, "estimated_savings_usd")
    assert tickets["value"] == 1.5 and savings["value"] == 15.0
    assert tickets["note"] == savings["note"] == (
        "assumes 50% of answered conversations (support) would otherwise have become a support ticket, "
        "at $10.00 per ticket; before AI costs; previous period: no cost_summary row for this day (costs not "
        "computed)")


def test_trend_and_target_status_rules() -> None:
    assert trend(1.01, 1.0, 0.02) == "flat" and trend(1.03, 1.0, 0.02) == "up" and trend(0.9, 1.0, 0.02) == "down"
    assert trend(1.0, 0.0, 0.02) == "up" and trend(0.0, 0.0, 0.02) == "flat" and trend(None, 1.0, 0.02) == "n/a"
    assert target_status(0.87, 0.85, "higher", 0.02) == "exceeding"
    assert target_status(0.86, 0.85, "higher", 0.02) == "meeting"
    assert target_status(0.84, 0.85, "higher", 0.02) == "below"
    assert target_status(0.06, 0.05, "lower", 0.02) == "below"
    assert target_status(0.04, 0.05, "lower", 0.02) == "exceeding"
    assert target_status(0.5, None, "higher", 0.02) == "no target"
    assert target_status(0.9, 0.85, "higher", 0.02, judged=False) == "insufficient data"
    row = compare(MetricSpec("x", "X", "count", "neutral"), Figure(5.0, 5), Figure(0.0, 0), ReportingSettings())
    assert row["trend"] == "up" and np.isnan(row["change_pct"]) and row["change_abs"] == 5


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="flat_bnd"):
        ReportingSettings(flat_bnd=0.1)
    with pytest.raises(ValidationError, match="deflection_rate"):
        ReportingSettings(support={"deflection_rate": 2})
    with pytest.raises(ValidationError, match="response_cache_keys"):
        ReportingSettings(response_cache_keys=[" "])
