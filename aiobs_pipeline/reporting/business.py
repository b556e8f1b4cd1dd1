"""The business dashboard table: what stakeholders track, each figure with the previous day, change, trend
and target status (the product brief's BusinessMetricsDashboard).

Figures: user satisfaction, quality score (mean trust_score of scored responses) and answer accuracy
(1 - share of high-risk responses), daily cost and its trend, requests, active users, cost per user and per
call, the monthly cost projection, feature usage, and the support impact estimate (conversations x an assumed
deflection rate x an assumed cost per ticket; the assumptions travel with the figure in `note`).

A day counts as computed when `cost_summary` has a row for it: a day without cost rows then means no traffic,
while a day missing from `cost_summary` has no figures ("n/a"), never zeros. Quality and satisfaction inputs
are optional: without them those figures are null with a note. This module must not read tables.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from aiobs_pipeline.costs.aggregate import NONE_LABEL
from aiobs_pipeline.reporting.metrics import (
    BUSINESS_COLUMNS,
    MISSING_PERIOD,
    Figure,
    MetricSpec,
    compare,
    frame_of,
)
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import (
    NO_HALLUCINATION,
    NO_SATISFACTION,
    day_bounds,
    in_window,
    model_calls,
)

NOT_COMPUTED = "no cost_summary row for this day (costs not computed)"


def metric_specs(settings: ReportingSettings) -> dict[str, MetricSpec]:
    """The overall business metrics in display order, with their targets from settings."""
    specs = [
        MetricSpec("user_satisfaction", "User satisfaction", "ratio", "higher", settings.satisfaction_target),
        MetricSpec("quality_score", "Quality score", "ratio", "higher", settings.quality_score_target),
        MetricSpec("answer_accuracy", "Answer accuracy", "ratio", "higher", settings.answer_accuracy_target),
        MetricSpec("cost_per_user_usd", "Cost per user", "usd", "lower", settings.cost_per_user_target_usd),
        MetricSpec("cost_usd", "Daily cost", "usd", "neutral"),
        MetricSpec("monthly_cost_projection_usd", "Monthly cost projection", "usd", "lower",
                   settings.monthly_budget_usd),
        MetricSpec("calls", "Requests", "count", "neutral"),
        MetricSpec("active_users", "Active users", "count", "neutral"),
        MetricSpec("cost_per_call_usd", "Cost per request", "usd", "lower"),
        MetricSpec("conversations", "Answered conversations", "count", "neutral"),
        MetricSpec("tickets_deflected", "Support tickets deflected (est.)", "count", "higher"),
        MetricSpec("estimated_savings_usd", "Estimated support savings", "usd", "higher"),
    ]
    return {s.name: s for s in specs}


FEATURE_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("feature_calls", "Requests by feature", "count", "neutral"),
    MetricSpec("feature_users", "Users by feature", "count", "neutral"),
    MetricSpec("feature_cost_usd", "Cost by feature", "usd", "neutral"),
)
TREND_SPEC = MetricSpec("daily_cost_usd", "Cost trend", "usd", "neutral")


def _day(value: date | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).normalize()


def computed_days(cost_summary: pd.DataFrame) -> set[pd.Timestamp]:
    """The days cost_summary has a row for (their costs were computed)."""
    if cost_summary.empty:
        return set()
    return {_day(d) for d in pd.to_datetime(cost_summary["day"])}


def _costs_of(daily_costs: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    if daily_costs.empty:
        return daily_costs
    return daily_costs[pd.to_datetime(daily_costs["day"]).dt.normalize() == day]


def _users(rows: pd.DataFrame) -> pd.Series:
    return rows.loc[(rows["user_id"] != NONE_LABEL) & (rows["calls"] > 0), "user_id"]


def quality_figures(hallucination: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp,
                    min_responses: int) -> dict[str, Figure]:
    """Quality score and answer accuracy of the responses scored in [start, end)."""
    if hallucination is None:
        return {"quality_score": Figure(None, 0, NO_HALLUCINATION),
                "answer_accuracy": Figure(None, 0, NO_HALLUCINATION)}
    rows = in_window(hallucination, "export_hour", start, end)
    trust = pd.to_numeric(rows["trust_score"], errors="coerce").dropna()
    levels = rows["risk_level"].dropna()
    figures = {}
    for name, values, compute in (("quality_score", trust, lambda v: float(v.mean())),
                                  ("answer_accuracy", levels, lambda v: float(1 - (v == "high").mean()))):
        n = len(values)
        if n == 0:
            figures[name] = Figure(None, 0, "no scored responses")
        else:
            note = "" if n >= min_responses else f"only {n} scored responses (judged from {min_responses})"
            figures[name] = Figure(compute(values), n, note, judged=n >= min_responses)
    return figures


def satisfaction_figure(satisfaction: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp,
                        min_responses: int) -> Figure:
    """Mean satisfaction of the responses (by response hour) in [start, end) that have feedback."""
    if satisfaction is None:
        return Figure(None, 0, NO_SATISFACTION)
    scores = pd.to_numeric(in_window(satisfaction, "response_hour", start, end)["satisfaction"],
                           errors="coerce").dropna()
    n = len(scores)
    if n == 0:
        return Figure(None, 0, "no responses with feedback")
    note = "" if n >= min_responses else f"only {n} responses with feedback (judged from {min_responses})"
    return Figure(float(scores.mean()), n, note, judged=n >= min_responses)


def answered_conversations(calls: pd.DataFrame, features: list[str]) -> int:
    """Conversations (session, else trace) with at least one successful model call in the given features."""
    ok = calls[calls["status"] != "error"]
    if features:
        ok = ok[ok["feature"].isin(features)]
    if ok.empty:
        return 0
    session = ok["session_id"].astype(object) if "session_id" in ok.columns else pd.Series(None, index=ok.index)
    keys = np.where(session.notna(), "s:" + session.astype(str), "t:" + ok["trace_id"].astype(str))
    return int(pd.unique(keys).size)


def day_figures(day: pd.Timestamp, daily_costs: pd.DataFrame, cost_summary: pd.DataFrame,
                priced: pd.DataFrame, settings: ReportingSettings, hallucination: pd.DataFrame | None,
                satisfaction: pd.DataFrame | None) -> tuple[dict[str, Figure], dict[tuple[str, str], Figure]]:
    """The overall figures of one day, and the per-feature figures keyed by (metric, feature)."""
    start, end = day_bounds(day)
    figures: dict[str, Figure] = {"user_satisfaction": satisfaction_figure(satisfaction, start, end,
                                                                           settings.min_responses)}
    figures.update(quality_figures(hallucination, start, end, settings.min_responses))
    if day not in computed_days(cost_summary):
        for name in metric_specs(settings):
            figures.setdefault(name, Figure(None, 0, NOT_COMPUTED))
        return figures, {}
    rows = _costs_of(daily_costs, day)
    cost, calls = float(rows["cost_usd"].sum()), int(rows["calls"].sum())
    priced_calls = calls - int(rows["unpriced_calls"].sum())
    users = int(_users(rows).nunique())
    summary = cost_summary[pd.to_datetime(cost_summary["day"]).dt.normalize() == day].iloc[-1]
    unpriced = int(rows["unpriced_calls"].sum())
    cost_note = f"{unpriced} calls without a price are not in the cost" if unpriced else ""
    figures.update({
        "cost_usd": Figure(cost, calls, cost_note),
        "calls": Figure(float(calls), calls),
        "active_users": Figure(float(users), users),
        "cost_per_user_usd": Figure(cost / users, users, cost_note) if users
        else Figure(None, 0, "no calls with a user id"),
        "cost_per_call_usd": Figure(cost / priced_calls, priced_calls) if priced_calls
        else Figure(None, 0, "no priced calls"),
        "monthly_cost_projection_usd": Figure(float(summary["projected_month_usd"]),
                                              int(summary.get("calls", 0) or 0),
                                              str(summary.get("projection_method") or "")),
    })
    support = settings.support
    conversations = answered_conversations(model_calls(in_window(priced, "export_hour", start, end)),
                                           support.features)
    tickets = conversations * support.deflection_rate
    assumptions = support.describe()
    figures.update({
        "conversations": Figure(float(conversations), conversations),
        "tickets_deflected": Figure(tickets, conversations, assumptions),
        "estimated_savings_usd": Figure(tickets * support.cost_per_ticket_usd, conversations, assumptions),
    })
    by_feature: dict[tuple[str, str], Figure] = {}
    for feature, group in rows.groupby("feature", sort=True):
        n = int(group["calls"].sum())
        by_feature[("feature_calls", str(feature))] = Figure(float(n), n)
        by_feature[("feature_users", str(feature))] = Figure(float(_users(group).nunique()), n)
        by_feature[("feature_cost_usd", str(feature))] = Figure(float(group["cost_usd"].sum()), n)
    return figures, by_feature


def business_dashboard(day: date | pd.Timestamp, daily_costs: pd.DataFrame, cost_summary: pd.DataFrame,
                       priced: pd.DataFrame, settings: ReportingSettings | None = None,
                       hallucination: pd.DataFrame | None = None,
                       satisfaction: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long-format business metrics of `day` against the day before (BUSINESS_COLUMNS).

    The inputs may hold other days (the previous day and the cost trend window must be in them); a feature
    that had no requests on one of the two days counts 0 there when that day was computed.
    """
    settings = settings or ReportingSettings()
    day = _day(day)
    previous_day = day - timedelta(days=1)
    current, current_features = day_figures(day, daily_costs, cost_summary, priced, settings, hallucination,
                                            satisfaction)
    previous, previous_features = day_figures(previous_day, daily_costs, cost_summary, priced, settings,
                                              hallucination, satisfaction)
    if previous_day.month != day.month:
        # On the 1st the previous day projected the previous month: not a figure to compare with.
        previous["monthly_cost_projection_usd"] = Figure(None, 0, "the previous day projected another month")
    rows = [compare(spec, current[name], previous.get(name, MISSING_PERIOD), settings)
            for name, spec in metric_specs(settings).items()]
    known = computed_days(cost_summary)
    zero = Figure(0.0, 0)
    for spec in FEATURE_SPECS:
        features = sorted({f for (m, f) in [*current_features, *previous_features] if m == spec.name})
        for feature in features:
            now = current_features.get((spec.name, feature), zero if day in known else MISSING_PERIOD)
            before = previous_features.get((spec.name, feature), zero if previous_day in known else MISSING_PERIOD)
            rows.append(compare(spec, now, before, settings, "feature", feature))
    for offset in range(settings.cost_trend_days - 1, -1, -1):
        trend_day = day - timedelta(days=offset)
        if trend_day in known:
            spent = _costs_of(daily_costs, trend_day)
            figure = Figure(float(spent["cost_usd"].sum()), int(spent["calls"].sum()))
        else:
            figure = Figure(None, 0, NOT_COMPUTED)
        # A point of the trend has no previous period of its own.
        rows.append(compare(TREND_SPEC, figure, Figure(None), settings, "day", f"{trend_day:%Y-%m-%d}"))
    for row in rows:
        row["day"] = day
    return frame_of(rows, BUSINESS_COLUMNS)
