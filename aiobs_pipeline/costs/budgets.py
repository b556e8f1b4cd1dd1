"""Budget breaches: users above their daily budget and total spend above the hourly budget.

A user's day is the calendar day in `budget_timezone`; their spend is what earlier hours of that day already
cost (from hourly_costs) plus this hour's billable spans. Spend without a user id counts towards the hourly
total but not towards any user budget: there is nobody to rate-limit.
"""

from __future__ import annotations

import pandas as pd

from aiobs_pipeline.costs.aggregate import NONE_LABEL, as_utc, empty
from aiobs_pipeline.costs.pricing import clean_names
from aiobs_pipeline.costs.settings import CostSettings

# The priced_spans columns budget_breaches reads (the asset loads only these).
BREACH_INPUT_COLUMNS: tuple[str, ...] = ("export_hour", "billable", "user_id", "cost_usd")

BREACH_COLUMNS: dict[str, str] = {
    "hour": "datetime64[ns, UTC]",
    "scope": "object",
    "subject": "object",
    "spend_usd": "float64",
    "spend_this_hour_usd": "float64",
    "budget_usd": "float64",
    "window": "object",
    "window_start": "datetime64[ns, UTC]",
    "window_end": "datetime64[ns, UTC]",
    "first_breach": "bool",
    "recommended_action": "object",
}
BREACH_DESCRIPTIONS: dict[str, str] = {
    "hour": "The hour evaluated (UTC start).",
    "scope": "user (daily budget) or total (hourly budget).",
    "subject": "The user id, or 'all' for the total.",
    "spend_usd": "Spend in the window up to the end of the hour.",
    "spend_this_hour_usd": "Part of spend_usd spent in this hour.",
    "budget_usd": "The budget the spend exceeded.",
    "window": "Human-readable budget window, e.g. 'day 2025-03-01 (Europe/Paris)'.",
    "window_start": "Start of the budget window, UTC.",
    "window_end": "End of the evaluated part of the window (end of the hour), UTC.",
    "first_breach": "True in the hour the spend crossed the budget; False while it stays above it.",
    "recommended_action": "rate_limit_user for a user, page_oncall for the total.",
}


def day_window(hour: pd.Timestamp, timezone: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC start of the budget day holding `hour`, and the UTC end of `hour`."""
    hour = _utc(hour)
    local_midnight = hour.tz_convert(timezone).normalize()
    return local_midnight.tz_convert("UTC"), hour + pd.Timedelta(hours=1)


def _utc(hour: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(hour)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def user_spend_before(hourly: pd.DataFrame, hour: pd.Timestamp, settings: CostSettings) -> pd.DataFrame:
    """Each user's spend (user_id, spend_usd) in hourly_costs rows of the same budget day before `hour`."""
    start, _ = day_window(hour, settings.budget_timezone)
    hour = _utc(hour)
    if hourly.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype="object"), "spend_usd": pd.Series(dtype="float64")})
    hours = as_utc(hourly["hour"])
    earlier = hourly[(hours >= start) & (hours < hour)]
    spend = earlier.groupby("user_id", sort=True)["cost_usd"].sum()
    return pd.DataFrame({"user_id": spend.index.astype(object), "spend_usd": spend.to_numpy(dtype="float64")})


def _hour_of(priced_hour: pd.DataFrame, hour: pd.Timestamp | None) -> pd.Timestamp:
    if hour is not None:
        return _utc(hour).floor("h")
    hours = priced_hour["export_hour"].dropna().unique()
    if len(hours) != 1:
        raise ValueError(f"budget_breaches needs spans of exactly one export_hour (or hour=), got {len(hours)}")
    return _utc(pd.Timestamp(hours[0])).floor("h")


def budget_breaches(
    priced_hour: pd.DataFrame,
    spend_before: pd.DataFrame | None,
    settings: CostSettings,
    hour: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Users above their daily budget and the total above the hourly budget, one row each (BREACH_COLUMNS).

    `priced_hour` is price_spans output for one hour; `spend_before` is user_spend_before() for that hour
    (None when the hour starts the budget day); `hour` defaults to the spans' single export_hour.
    """
    hour = _hour_of(priced_hour, hour)
    day_start, hour_end = day_window(hour, settings.budget_timezone)
    billable = priced_hour.loc[priced_hour["billable"].to_numpy(dtype=bool)]
    rows: list[dict[str, object]] = []

    users = pd.Series(clean_names(billable["user_id"]), index=billable.index)
    known = users.notna()
    this_hour = billable.loc[known, "cost_usd"].groupby(users[known]).sum()
    before = (spend_before.groupby("user_id")["spend_usd"].sum()
              if spend_before is not None and not spend_before.empty else pd.Series(dtype="float64"))
    before = before.drop(NONE_LABEL, errors="ignore")
    local_day = day_start.tz_convert(settings.budget_timezone).date()
    for user in sorted(set(this_hour.index) | set(before.index)):
        spent_now = float(this_hour.get(user, 0.0))
        spent_before = float(before.get(user, 0.0))
        total = spent_before + spent_now
        budget = settings.user_budget(user)
        if total > budget:
            rows.append({
                "hour": hour, "scope": "user", "subject": user, "spend_usd": total,
                "spend_this_hour_usd": spent_now, "budget_usd": budget,
                "window": f"day {local_day} ({settings.budget_timezone})",
                "window_start": day_start, "window_end": hour_end,
                "first_breach": spent_before <= budget, "recommended_action": "rate_limit_user",
            })

    hour_total = float(billable["cost_usd"].sum())
    if hour_total > settings.hourly_total_budget_usd:
        rows.append({
            "hour": hour, "scope": "total", "subject": "all", "spend_usd": hour_total,
            "spend_this_hour_usd": hour_total, "budget_usd": settings.hourly_total_budget_usd,
            "window": f"hour {hour:%Y-%m-%d %H:00} UTC", "window_start": hour, "window_end": hour_end,
            "first_breach": True, "recommended_action": "page_oncall",
        })
    if not rows:
        return empty(BREACH_COLUMNS)
    return pd.DataFrame(rows)[list(BREACH_COLUMNS)].astype(BREACH_COLUMNS)
