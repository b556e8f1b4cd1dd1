"""The monthly report from dashboard tables built by the pure functions: every sentence follows the figures
(the cause of a cost change, weighted means, latency bounds), months without data or comparisons say so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.reporting.business import business_dashboard
from aiobs_pipeline.reporting.metrics import MONTHLY_COLUMNS
from aiobs_pipeline.reporting.monthly import monthly_report, render_html, render_markdown
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import technical_dashboard
from tests.unit.test_reporting_business import cost_tables
from tests.unit.test_reporting_technical import priced_calls


def dashboards(spans: pd.DataFrame, days: list[str], satisfaction: pd.DataFrame | None = None,
               settings: ReportingSettings | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """business_dashboard, technical_dashboard and daily_costs rows for the given days."""
    daily, summary = cost_tables(spans, days)
    business = pd.concat([business_dashboard(d, daily, summary, spans, settings, None, satisfaction) for d in days])
    technical = pd.concat([technical_dashboard(spans, d, settings, None, satisfaction) for d in days])
    return business, technical, daily


def metric(report, name: str) -> pd.Series:
    return report.rows[report.rows["metric"] == name].iloc[0]


def test_cost_rise_from_usage_is_named_as_usage() -> None:
    spans = pd.concat([priced_calls("2026-09-30", 10, cost=0.01), priced_calls("2026-10-01", 14, cost=0.01)])
    report = monthly_report("2026-10-01", *dashboards(spans, ["2026-09-30", "2026-10-01"]))
    assert "Costs increased 40% due to higher usage (requests +40%) ($0.10 → $0.14)." in report.summary
    assert report.summary[0] == "Our AI assistant served 4 users this month; user satisfaction was not measured."
    assert "Cost per user increased 40% (from $0.025 to $0.035)." in report.watch
    assert "Total AI cost: $0.14 (↑ 40% vs last month)" in report.key_metrics
    assert list(report.rows.columns) == list(MONTHLY_COLUMNS)
    assert set(report.rows["month"]) == {pd.Timestamp("2026-10-01")}


def test_cost_rise_at_equal_usage_is_named_as_cost_per_call() -> None:
    spans = pd.concat([priced_calls("2026-09-30", 10, cost=0.01), priced_calls("2026-10-01", 10, cost=0.014)])
    report = monthly_report("2026-10-01", *dashboards(spans, ["2026-09-30", "2026-10-01"]))
    assert "Costs increased 40% due to higher cost per call (+40%) ($0.10 → $0.14)." in report.summary
    assert not any("usage" in s for s in report.summary)


def test_unequal_coverage_compares_daily_averages_not_totals() -> None:
    spans = pd.concat([priced_calls("2026-09-29", 10), priced_calls("2026-09-30", 10),
                       priced_calls("2026-10-01", 10)])
    report = monthly_report("2026-10-01", *dashboards(spans, ["2026-09-29", "2026-09-30", "2026-10-01"]))
    cost = metric(report, "cost_usd")
    assert np.isnan(cost["previous_value"]) and cost["trend"] == "n/a"
    assert "not compared: October has data for 1 of 31 days, September for 2 of 30" in cost["note"]
    assert "Average daily costs held steady at $0.10 ($0.10 last month)." in report.summary
    assert "Figures cover 1 of 31 days of October 2026." in report.summary


def test_weighted_satisfaction_latency_bound_and_improvement() -> None:
    spans = pd.concat([priced_calls("2026-09-30", 20), priced_calls("2026-10-01", 20),
                       priced_calls("2026-10-02", 20)])
    hours = {d: pd.Timestamp(f"{d} 10:00", tz="UTC") for d in ("2026-09-30", "2026-10-01", "2026-10-02")}
    feedback = pd.concat([
        pd.DataFrame({"span_id": [f"a{i}" for i in range(40)], "response_hour": hours["2026-09-30"],
                      "satisfaction": 0.6}),
        pd.DataFrame({"span_id": [f"b{i}" for i in range(25)], "response_hour": hours["2026-10-01"],
                      "satisfaction": 0.8}),
        pd.DataFrame({"span_id": [f"c{i}" for i in range(75)], "response_hour": hours["2026-10-02"],
                      "satisfaction": 0.6}),
    ])
    business, technical, daily = dashboards(spans, list(hours), feedback)
    report = monthly_report("2026-10-15", business, technical, daily)
    satisfaction = metric(report, "user_satisfaction")
    assert satisfaction["value"] == pytest.approx((25 * 0.8 + 75 * 0.6) / 100) and satisfaction["sample_size"] == 100
    assert report.summary[0] == "Our AI assistant served 4 users this month with 65% satisfaction."
    assert "User satisfaction increased 5 points (from 60% to 65%)." in report.improved
    assert "User satisfaction is below its 70% target (65%)." in report.watch
    assert "Bring user satisfaction to at least 70% (now 65%)." in report.focus
    # 100, 200, ..., 2000 ms each day: 19 of 20 calls are faster than 2 s.
    latency = metric(report, "latency_p95_under_ms")
    assert latency["value"] == 2000 and latency["sample_size"] == 40
    assert "Response time: 95% of responses in under 2 seconds (2 seconds last month; target at most 5 s: met)" in (
        report.key_metrics)
    assert "95% of responses in under 2 seconds" in report.summary[-2]


def test_first_month_has_no_comparison_and_says_so() -> None:
    spans = priced_calls("2026-10-01", 8, error_every=4)
    report = monthly_report("2026-10-01", *dashboards(spans, ["2026-10-01"]))
    assert report.improved == ["No comparison is possible: there is no data for September 2026."]
    assert "Costs were $0.08; there is no previous period to compare with." in report.summary
    assert "Total AI cost: $0.08" in report.key_metrics
    assert "Error rate is above its 5% limit (25%)." in report.watch
    assert ("Reliability: 75% of requests answered without an error (error rate 25%; target at most 5%: missed)"
            in report.key_metrics)
    assert "User satisfaction is not measured: satisfaction_scores has not been materialised." in report.watch
    assert ("Collect user feedback (thumbs up/down, regenerations) so user satisfaction can be reported."
            in report.focus)


def test_month_without_data() -> None:
    empty = priced_calls("2026-10-01", 0)
    report = monthly_report("2026-10-01", *dashboards(empty, ["2026-09-30"]))
    assert report.summary == ["There is no data for October 2026: no daily dashboard with costs was computed for it."]
    assert report.improved == ["No data for October 2026."]
    assert report.key_metrics[0] == "User satisfaction: not available (no dashboards for October 2026)"
    assert report.rows["value"].isna().all()


def every_day(frame: pd.DataFrame, month: str) -> pd.DataFrame:
    """One day's rows copied to every day of the month (a steady month, cheaply)."""
    days = pd.date_range(month, pd.Timestamp(month) + pd.offsets.MonthEnd(0), freq="D")
    return pd.concat([frame.assign(day=day) for day in days], ignore_index=True)


def test_a_steady_month_on_target_has_nothing_to_watch() -> None:
    spans = pd.concat([priced_calls("2026-07-31", 25), priced_calls("2026-08-01", 25)])
    hallucination = spans[["export_hour", "span_id"]].assign(trust_score=0.9, risk_level="low")
    feedback = pd.DataFrame({"span_id": spans["span_id"], "response_hour": spans["export_hour"],
                             "satisfaction": 0.8})
    daily, summary = cost_tables(spans, ["2026-07-31", "2026-08-01"])
    parts = {}
    for day, month in (("2026-07-31", "2026-07-01"), ("2026-08-01", "2026-08-01")):
        business = business_dashboard(day, daily, summary, spans, None, hallucination, feedback)
        technical = technical_dashboard(spans, day, None, hallucination, feedback)
        costs = daily[daily["day"] == pd.Timestamp(day)]
        parts[month] = (every_day(business, month), every_day(technical, month), every_day(costs, month))
    business, technical, costs = (pd.concat([parts["2026-07-01"][i], parts["2026-08-01"][i]]) for i in range(3))
    report = monthly_report("2026-08-01", business, technical, costs)
    assert report.days_covered == 31 and report.previous_days_covered == 31
    assert report.improved == ["No tracked metric improved by more than 2% compared with July 2026."]
    assert report.watch == ["Nothing to watch: no tracked metric worsened by more than 2% or missed its target."]
    assert report.focus == ["No focus area follows from this month's figures."]
    # Two full months of 31 days: totals are compared.
    cost = metric(report, "cost_usd")
    assert cost["change_pct"] == pytest.approx(0) and cost["trend"] == "flat"
    assert "Quality score: 90% (→ flat vs last month; target at least 85%: met)" in report.key_metrics


def test_markdown_and_html_rendering() -> None:
    spans = pd.concat([priced_calls("2026-09-30", 10), priced_calls("2026-10-01", 12)])
    report = monthly_report("2026-10-01", *dashboards(spans, ["2026-09-30", "2026-10-01"]))
    text = render_markdown(report)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == ["# AI System Performance - October 2026", "## Executive Summary", "## Key Metrics",
                        "## What Improved", "## Areas to Watch", "## Next Month Focus"]
    for sentence in [*report.summary, *report.key_metrics, *report.improved, *report.watch, *report.focus]:
        assert sentence in text
    page = render_html(report)
    assert page.count("<svg") >= 2 and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "").replace('xmlns:xlink="http://www.w3.org/1999/xlink"', "")


def test_satisfaction_on_too_few_responses_is_not_called_unmeasured() -> None:
    spans = priced_calls("2026-10-02", 20)
    feedback = pd.DataFrame({"span_id": [f"c{i}" for i in range(5)],
                             "response_hour": pd.Timestamp("2026-10-02 10:00", tz="UTC"), "satisfaction": 0.4})
    settings = ReportingSettings(min_responses=30)
    business, technical, daily = dashboards(spans, ["2026-10-02"], feedback, settings)
    report = monthly_report("2026-10-15", business, technical, daily, settings)
    assert metric(report, "user_satisfaction")["sample_size"] == 5
    # The summary and Key metrics must not contradict each other: measured, but on too few responses.
    assert report.summary[0] == ("Our AI assistant served 4 users this month; user satisfaction was measured on "
                                 "only 5 responses, too few to state.")
    assert any(line.startswith("User satisfaction: 40%") for line in report.key_metrics)
