"""The monthly stakeholder report: executive summary, key metrics with month-over-month change, what improved,
areas to watch and next month's focus (the product brief's template), as a table, Markdown and HTML.

Figures come from the month's dashboard tables and daily_costs, never from the text: means (satisfaction,
quality score, answer accuracy) are the daily means weighted by their sample sizes, latency comes from the
summed daily latency histograms ("95% of responses in under X" with X a histogram bound, so the sentence is
true), users are distinct over the month. A month counts the days that have a business dashboard with costs;
when either month misses days, totals are not compared (the cost sentence compares average daily cost).
Every sentence is built by phrasing.py from these figures; a section with nothing to say says so.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from aiobs_pipeline.costs.aggregate import NONE_LABEL
from aiobs_pipeline.reporting import charts, phrasing
from aiobs_pipeline.reporting.html import chart_markup, generated_at, render
from aiobs_pipeline.reporting.metrics import (
    ALL,
    MONTHLY_COLUMNS,
    Figure,
    MetricSpec,
    compare,
    frame_of,
    improved,
    weighted_mean,
)
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.reporting.technical import (
    HISTOGRAM_METRIC,
    LATENCY_BOUNDS_MS,
    NO_HALLUCINATION,
    NO_SATISFACTION,
)

LATENCY_SHARE = 0.95
TOTALS: tuple[str, ...] = ("users_served", "calls", "cost_usd", "tickets_deflected", "estimated_savings_usd",
                           "cost_per_user_usd", "power_user_cost_usd")
# Metrics whose movement month over month is reported under "What improved" / "Areas to watch".
MOVEMENT: tuple[str, ...] = ("user_satisfaction", "quality_score", "answer_accuracy", "cost_per_user_usd",
                             "cost_per_call_usd", "error_rate", "latency_p95_under_ms", "power_user_cost_usd")
NOT_MEASURED_FOCUS = {
    "user_satisfaction": "Collect user feedback (thumbs up/down, regenerations) so user satisfaction can be reported.",
    "quality_score": "Run the hallucination scoring on responses so the quality score and answer accuracy can "
                     "be reported.",
}


def metric_specs(settings: ReportingSettings) -> dict[str, MetricSpec]:
    """The monthly metrics in report order, with targets from settings."""
    top = phrasing.percent(settings.top_user_share, 0)
    specs = [
        MetricSpec("users_served", "Users served", "count", "neutral"),
        MetricSpec("user_satisfaction", "User satisfaction", "ratio", "higher", settings.satisfaction_target),
        MetricSpec("cost_per_user_usd", "Cost per user", "usd", "lower", settings.cost_per_user_target_usd),
        MetricSpec("quality_score", "Quality score", "ratio", "higher", settings.quality_score_target),
        MetricSpec("answer_accuracy", "Answer accuracy", "ratio", "higher", settings.answer_accuracy_target),
        MetricSpec("latency_p95_under_ms", "Response time (95% of responses under)", "ms", "lower",
                   settings.p95_latency_target_ms),
        MetricSpec("error_rate", "Error rate", "ratio", "lower", settings.error_rate_target),
        MetricSpec("tickets_deflected", "Support tickets deflected (est.)", "count", "higher"),
        MetricSpec("estimated_savings_usd", "Estimated savings", "usd", "higher"),
        MetricSpec("cost_usd", "Total AI cost", "usd", "lower" if settings.monthly_budget_usd is not None
                   else "neutral", settings.monthly_budget_usd),
        MetricSpec("average_daily_cost_usd", "Average daily cost", "usd", "neutral"),
        MetricSpec("calls", "Requests", "count", "neutral"),
        MetricSpec("cost_per_call_usd", "Cost per request", "usd", "lower"),
        MetricSpec("power_user_cost_usd", f"Cost per power user (top {top})", "usd", "lower"),
    ]
    return {s.name: s for s in specs}


def month_bounds(month: date | pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First day of the month and first day of the next (naive, UTC days)."""
    stamp = pd.Timestamp(month)
    stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
    start = stamp.normalize().replace(day=1)
    return start, start + pd.offsets.MonthBegin(1)


def _in_month(frame: pd.DataFrame, column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    if frame.empty:
        return frame
    days = pd.to_datetime(frame[column])
    days = days.dt.tz_convert("UTC").dt.tz_localize(None) if days.dt.tz is not None else days
    return frame[(days >= start) & (days < end)]


def _overall(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    return frame[(frame["metric"] == metric) & (frame["dimension"] == ALL)]


def covered_days(business: pd.DataFrame) -> list[pd.Timestamp]:
    """Days of the business rows whose costs were computed (a daily cost figure exists)."""
    rows = _overall(business, "cost_usd")
    return sorted({pd.Timestamp(d).normalize() for d in rows.loc[rows["value"].notna(), "day"]})


def latency_bound(technical: pd.DataFrame, share: float = LATENCY_SHARE) -> Figure:
    """The smallest histogram bound that `share` of the month's calls were faster than."""
    rows = technical[technical["metric"] == HISTOGRAM_METRIC]
    if rows.empty:
        return Figure(None, 0, "no latency histogram in technical_dashboard")
    per_day = rows.groupby("day")["sample_size"].max()
    total = int(per_day.sum())
    if total == 0:
        return Figure(None, 0, "no model calls with a latency")
    counts = rows.groupby(rows["dimension_value"].astype(int))["value"].sum().sort_index()
    reached = counts[counts / total >= share]
    if reached.empty:
        return Figure(None, total, f"more than {phrasing.percent(1 - share, 0)} of calls took "
                                   f"{phrasing.seconds(LATENCY_BOUNDS_MS[-1])} s or longer")
    return Figure(float(reached.index[0]), total)


def month_figures(month: date | pd.Timestamp, business: pd.DataFrame, technical: pd.DataFrame,
                  daily_costs: pd.DataFrame, settings: ReportingSettings) -> tuple[dict[str, Figure], int]:
    """Every monthly figure of one month, and the number of days it covers."""
    start, end = month_bounds(month)
    business = _in_month(business, "day", start, end)
    technical = _in_month(technical, "day", start, end)
    days = covered_days(business)
    if not days:
        none = Figure(None, 0, f"no dashboards for {start:%B %Y}")
        return {name: none for name in metric_specs(settings)}, 0
    costs = _in_month(daily_costs, "day", start, end)
    costs = costs[pd.to_datetime(costs["day"]).dt.normalize().isin(days)] if not costs.empty else costs
    cost = float(costs["cost_usd"].sum()) if not costs.empty else 0.0
    calls = int(costs["calls"].sum()) if not costs.empty else 0
    priced_calls = calls - (int(costs["unpriced_calls"].sum()) if not costs.empty else 0)
    spend = (costs[(costs["user_id"] != NONE_LABEL) & (costs["calls"] > 0)].groupby("user_id")["cost_usd"].sum()
             if not costs.empty else pd.Series(dtype="float64"))
    users = len(spend)
    figures: dict[str, Figure] = {
        "users_served": Figure(float(users), users),
        "calls": Figure(float(calls), calls),
        "cost_usd": Figure(cost, calls),
        "average_daily_cost_usd": Figure(cost / len(days), len(days)),
        "cost_per_user_usd": Figure(cost / users, users) if users else Figure(None, 0, "no calls with a user id"),
        "cost_per_call_usd": Figure(cost / priced_calls, priced_calls) if priced_calls
        else Figure(None, 0, "no priced calls"),
    }
    if users:
        top = max(1, math.ceil(settings.top_user_share * users))
        figures["power_user_cost_usd"] = Figure(float(spend.nlargest(top).mean()), top,
                                                f"top {top} of {users} users by spend")
    else:
        figures["power_user_cost_usd"] = Figure(None, 0, "no calls with a user id")
    for name, absent in (("user_satisfaction", "no responses with feedback"),
                         ("quality_score", "no scored responses"), ("answer_accuracy", "no scored responses")):
        rows = _overall(business, name)
        value, n = weighted_mean(rows["value"], rows["sample_size"])
        if value is None:
            notes = [note for note in rows["note"].dropna().unique() if note in (NO_HALLUCINATION, NO_SATISFACTION)]
            figures[name] = Figure(None, 0, notes[0] if notes else absent)
        else:
            judged = n >= settings.min_responses
            figures[name] = Figure(value, n, "" if judged else f"only {n} responses (judged from "
                                                                 f"{settings.min_responses})", judged)
    for name in ("tickets_deflected", "estimated_savings_usd"):
        rows = _overall(business, name)
        present = rows[rows["value"].notna()]
        figures[name] = (Figure(float(present["value"].sum()), int(present["sample_size"].sum()),
                                settings.support.describe()) if len(present) else Figure(None, 0, "not computed"))
    tech_calls = _overall(technical, "calls")["value"].sum()
    errors = _overall(technical, "errors")["value"].sum()
    figures["error_rate"] = (Figure(float(errors / tech_calls), int(tech_calls)) if tech_calls
                             else Figure(None, 0, "no model calls in technical_dashboard"))
    figures["latency_p95_under_ms"] = latency_bound(technical)
    return figures, len(days)


@dataclass
class MonthlyReport:
    """The report of one month: its table rows and the sentences of each section."""

    month: pd.Timestamp
    title: str
    rows: pd.DataFrame
    summary: list[str]
    key_metrics: list[str]
    improved: list[str]
    watch: list[str]
    focus: list[str]
    days_covered: int
    days_in_month: int
    previous_days_covered: int
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)


def _sentence(name: str, row: dict[str, object], settings: ReportingSettings) -> str:
    """The key-metric line of one row, in stakeholder words."""
    unit, value, label = str(row["unit"]), row["value"], str(row["label"])
    if pd.isna(value):
        return f"{label}: not available ({row['note'] or 'no data'})"
    value = float(value)
    change = phrasing.change_phrase(row)
    details = [f"{change} vs last month"] if change != "n/a" else []
    if name == "latency_p95_under_ms" and not pd.isna(row["previous_value"]):
        details = [f"{phrasing.seconds(float(row['previous_value']))} seconds last month"]
    if not pd.isna(row["target"]) and row["target_status"] in ("meeting", "exceeding", "below"):
        met = "missed" if row["target_status"] == "below" else "met"
        details.append(f"target {phrasing.target_phrase(float(row['target']), unit, str(row['direction']))}: {met}")
    if name in ("tickets_deflected", "estimated_savings_usd"):
        details.append(f"from {phrasing.count(row['sample_size'])} answered conversations; "
                       f"{settings.support.describe()}")
    suffix = f" ({'; '.join(details)})" if details else ""
    if name == "latency_p95_under_ms":
        return f"Response time: {phrasing.latency_sentence(value, LATENCY_SHARE)}{suffix}"
    if name == "answer_accuracy":
        return f"{phrasing.accuracy_sentence(value)}{suffix}"
    if name == "error_rate":
        return f"Reliability: {phrasing.success_sentence(value)} (error rate {phrasing.percent(value)}" + (
            f"; {'; '.join(details)})" if details else ")")
    if name == "cost_per_user_usd":
        return f"Cost efficiency: {phrasing.usd(value)} per user{suffix}"
    return f"{label}: {phrasing.value_text(value, unit)}{suffix}"


def _movement(name: str, row: dict[str, object]) -> str:
    if name == "latency_p95_under_ms":
        return phrasing.latency_change_sentence(float(row["value"]), float(row["previous_value"]), LATENCY_SHARE)
    return phrasing.movement_sentence(str(row["label"]), str(row["unit"]), float(row["value"]),
                                      float(row["previous_value"]), str(row["trend"]), "last month")


def _daily_series(business: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    rows = _in_month(business, "day", start, end)
    rows = rows[(rows["dimension"] == ALL) & rows["metric"].isin(["cost_usd", "calls", "user_satisfaction",
                                                                  "quality_score"])]
    if rows.empty:
        return pd.DataFrame(columns=["day", "cost_usd", "calls", "user_satisfaction", "quality_score"])
    table = rows.pivot_table(index="day", columns="metric", values="value", aggfunc="first", dropna=False)
    table = table.reindex(columns=["cost_usd", "calls", "user_satisfaction", "quality_score"]).reset_index()
    table["day"] = pd.to_datetime(table["day"]).dt.strftime("%m-%d")
    return table


def monthly_report(month: date | pd.Timestamp, business: pd.DataFrame, technical: pd.DataFrame,
                   daily_costs: pd.DataFrame, settings: ReportingSettings | None = None) -> MonthlyReport:
    """Build the month's report from the dashboard tables and daily_costs of this and the previous month."""
    settings = settings or ReportingSettings()
    start, end = month_bounds(month)
    previous_start, _ = month_bounds(start - pd.Timedelta(days=1))
    days_in_month = calendar.monthrange(start.year, start.month)[1]
    previous_days = calendar.monthrange(previous_start.year, previous_start.month)[1]
    current, covered = month_figures(start, business, technical, daily_costs, settings)
    previous, previous_covered = month_figures(previous_start, business, technical, daily_costs, settings)
    complete = covered == days_in_month and previous_covered == previous_days
    # Totals grow with the days a month has data for: compare them only between like-for-like months.
    comparable = complete or covered == previous_covered
    specs = metric_specs(settings)
    rows: dict[str, dict[str, object]] = {}
    for name, spec in specs.items():
        before = previous[name]
        if name in TOTALS and previous_covered and not comparable:
            before = Figure(None, 0, f"not compared: {start:%B} has data for {covered} of {days_in_month} days, "
                                     f"{previous_start:%B} for {previous_covered} of {previous_days}")
        rows[name] = compare(spec, current[name], before, settings)
        rows[name]["sentence"] = _sentence(name, rows[name], settings)
    month_name, previous_name = f"{start:%B %Y}", f"{previous_start:%B %Y}"

    summary: list[str] = []
    if not covered:
        summary.append(f"There is no data for {month_name}: no daily dashboard with costs was computed for it.")
    else:
        satisfaction = current["user_satisfaction"]
        shown = satisfaction.value if satisfaction.available and satisfaction.judged else None
        too_few = satisfaction.sample_size if satisfaction.available and not satisfaction.judged else None
        summary.append(phrasing.users_served_sentence(int(current["users_served"].value or 0), shown,
                                                      too_few=too_few))
        per_user = rows["cost_per_user_usd"]
        if per_user["trend"] != "n/a":
            summary.append(_movement("cost_per_user_usd", per_user))
        if comparable:
            summary.append(phrasing.cost_change_sentence(
                current["cost_usd"].value, previous["cost_usd"].value, current["calls"].value,
                previous["calls"].value, settings.flat_band, previous_label="last month"))
        elif previous_covered:
            summary.append(phrasing.cost_change_sentence(
                current["average_daily_cost_usd"].value, previous["average_daily_cost_usd"].value,
                (current["calls"].value or 0) / covered, (previous["calls"].value or 0) / previous_covered,
                settings.flat_band, subject="Average daily costs", previous_label="last month"))
        else:
            summary.append(phrasing.cost_change_sentence(current["cost_usd"].value, None, None, None,
                                                         settings.flat_band))
        quality = [s for s in (
            phrasing.accuracy_sentence(current["answer_accuracy"].value) if current["answer_accuracy"].available
            else "", phrasing.latency_sentence(current["latency_p95_under_ms"].value, LATENCY_SHARE)
            if current["latency_p95_under_ms"].available else "") if s]
        if quality:
            summary.append("; ".join(quality) + ".")
        if covered < days_in_month:
            summary.append(f"Figures cover {covered} of {days_in_month} days of {month_name}.")

    key_metrics = [rows[name]["sentence"] for name in (
        "user_satisfaction", "cost_per_user_usd", "quality_score", "answer_accuracy", "latency_p95_under_ms",
        "error_rate", "tickets_deflected", "estimated_savings_usd", "cost_usd", "users_served", "calls")]

    better: list[str] = []
    misses: list[str] = []
    worse: list[str] = []
    gaps: list[str] = []
    focus_of: dict[str, str] = {}
    for name, row in rows.items():
        unit = str(row["unit"])
        if row["target_status"] == "below":
            misses.append(phrasing.target_miss_sentence(str(row["label"]), float(row["value"]), float(row["target"]),
                                                        unit, str(row["direction"])))
            focus_of[name] = (f"Bring {str(row['label']).lower()} to "
                              f"{phrasing.target_phrase(float(row['target']), unit, str(row['direction']))} "
                              f"(now {phrasing.value_text(row['value'], unit)}).")
        elif row["target_status"] == "insufficient data":
            gaps.append(f"{row['label']} is not judged: {row['note']}.")
    for name in MOVEMENT:
        row = rows[name]
        judged = current[name].judged and previous[name].judged
        moved = improved(row, settings.flat_band) if judged else None
        if moved is True:
            better.append(_movement(name, row))
        elif moved is False:
            worse.append(_movement(name, row))
            unit = str(row["unit"])
            if name == "latency_p95_under_ms":
                focus_of.setdefault(name, f"Find out why responses got slower (95% under "
                                          f"{phrasing.seconds(float(row['previous_value']))} s → "
                                          f"{phrasing.seconds(float(row['value']))} s) and speed them up.")
                continue
            focus_of.setdefault(name, f"Find out why {str(row['label']).lower()} "
                                      f"{'rose' if row['trend'] == 'up' else 'fell'} "
                                      f"({phrasing.value_text(row['previous_value'], unit)} → "
                                      f"{phrasing.value_text(row['value'], unit)}) and reverse it.")
    if covered:
        for name in ("user_satisfaction", "quality_score"):
            if not current[name].available:
                gaps.append(f"{specs[name].label} is not measured: {current[name].note}.")
                focus_of[name] = NOT_MEASURED_FOCUS[name]
        if covered < days_in_month:
            gaps.append(f"Data covers {covered} of {days_in_month} days of {month_name}.")
            focus_of["coverage"] = "Compute the daily dashboards for every day, so monthly figures are complete."
    watch = misses + worse + gaps
    focus = list(dict.fromkeys(focus_of.values()))
    if not covered:
        better = [f"No data for {month_name}."]
        watch = [f"No data for {month_name}: no daily dashboard with costs was computed for it."]
        focus = [f"Compute the daily dashboards for {month_name}, then this report again."]
    if not better:
        better = ([f"No comparison is possible: there is no data for {previous_name}."] if not previous_covered
                  else [f"No tracked metric improved by more than {phrasing.percent(settings.flat_band, 0)} "
                        f"compared with {previous_name}."])
    if not watch:
        watch = [f"Nothing to watch: no tracked metric worsened by more than "
                 f"{phrasing.percent(settings.flat_band, 0)} or missed its target."]
    if not focus:
        focus = ["No focus area follows from this month's figures."]

    table = frame_of([{**row, "month": start} for row in rows.values()], MONTHLY_COLUMNS)
    return MonthlyReport(month=start, title=f"AI System Performance - {month_name}", rows=table, summary=summary,
                         key_metrics=key_metrics, improved=better, watch=watch, focus=focus, days_covered=covered,
                         days_in_month=days_in_month, previous_days_covered=previous_covered,
                         daily=_daily_series(business, start, end))


def render_markdown(report: MonthlyReport) -> str:
    """The report as Markdown (also shown in the Dagster UI)."""
    return render("monthly.md.j2", report=report)


def report_charts(report: MonthlyReport) -> list[charts.Chart]:
    """The report's charts: daily cost, requests, and quality and satisfaction per day."""
    daily = report.daily
    quality = daily.melt(id_vars=["day"], value_vars=["user_satisfaction", "quality_score"], var_name="series",
                         value_name="share") if not daily.empty else pd.DataFrame(columns=["day", "series", "share"])
    quality["series"] = quality["series"].str.replace("_", " ")
    return [
        charts.line_chart(daily, "day", "cost_usd", "Daily cost", "USD", unit="usd",
                          empty_message="No daily costs this month."),
        charts.line_chart(daily, "day", "calls", "Requests per day", "requests",
                          empty_message="No requests this month."),
        charts.line_chart(quality, "day", "share", "Quality score and user satisfaction per day", "share",
                          series="series", unit="ratio",
                          empty_message="Neither quality scores nor satisfaction were measured this month."),
    ]


def render_html(report: MonthlyReport) -> str:
    """The report as a self-contained HTML page with inline SVG charts."""
    return render("monthly.html.j2", report=report, charts=[chart_markup(c) for c in report_charts(report)],
                  generated=generated_at())
