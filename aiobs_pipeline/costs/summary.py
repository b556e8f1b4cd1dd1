"""Month-to-date cost summary from daily_costs: top spenders, cost by feature and model, trend, projection.

Projection: month-to-date spend + (mean daily spend of the last 7 days, missing days counted as 0) x days
left in the month. Seven days cover one full weekly cycle, so weekend dips and weekday peaks average out,
while the window still follows a recent change (a new feature, a price cut) within a week; the month-to-date
mean would lag such changes for weeks and the last day alone swings with every busy day. Early in the month
the window is the days elapsed so far.
"""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

import pandas as pd

from aiobs_pipeline.costs.aggregate import DAILY_COLUMNS, NONE_LABEL, empty

PROJECTION_DAYS = 7
PROJECTION_METHOD = (
    f"month-to-date spend + mean daily spend of the last {PROJECTION_DAYS} days (missing days = 0) "
    "x days left in the month"
)


def _ranked(frame: pd.DataFrame, column: str, total: float, n: int | None = None) -> pd.DataFrame:
    """Cost, calls and tokens per value of `column`, largest cost first, with each value's share of `total`."""
    grouped = (frame.groupby(column, sort=False)[["cost_usd", "calls", "input_tokens", "output_tokens"]]
               .sum().sort_values(["cost_usd", "calls"], ascending=False).reset_index())
    grouped["share_of_cost"] = grouped["cost_usd"] / total if total > 0 else 0.0
    return grouped.head(n) if n else grouped


def cost_summary(daily: pd.DataFrame, day: date | pd.Timestamp, top_n: int = 10) -> dict[str, Any]:
    """Summarise the month of `day` up to and including it from daily_costs rows (other days are ignored).

    Keys: day, month_start, days_elapsed, days_in_month, month_to_date_usd, projected_month_usd,
    projection_method, active_users, cost_per_active_user_usd (None without users), calls, unpriced_calls,
    top_spenders, cost_by_feature, cost_by_model (DataFrames with cost_usd, calls, tokens, share_of_cost)
    and cost_trend (one row per day of the month so far: day, cost_usd, calls, active_users).
    Spend without a user id is in every total but not among the spenders or active users.
    """
    stamp = pd.Timestamp(day)
    day = (stamp.tz_localize(None) if stamp.tzinfo else stamp).normalize()
    month_start = day.replace(day=1)
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    days_elapsed = day.day
    frame = daily if not daily.empty else empty(DAILY_COLUMNS)
    days = pd.to_datetime(frame["day"])
    month = frame[(days >= month_start) & (days <= day)].assign(day=days)
    users = month[(month["user_id"] != NONE_LABEL) & (month["calls"] > 0)]
    mtd = float(month["cost_usd"].sum())

    per_day = month.groupby("day")[["cost_usd", "calls"]].sum()
    active_per_day = users.groupby("day")["user_id"].nunique().rename("active_users")
    trend = (per_day.join(active_per_day).reindex(pd.date_range(month_start, day, freq="D"))
             .fillna({"cost_usd": 0.0, "calls": 0, "active_users": 0})
             .rename_axis("day").reset_index()
             .astype({"cost_usd": "float64", "calls": "int64", "active_users": "int64"}))

    window = trend["cost_usd"].tail(min(PROJECTION_DAYS, days_elapsed))
    projected = mtd + float(window.mean()) * (days_in_month - days_elapsed)
    active_users = int(users["user_id"].nunique())
    return {
        "day": day.date(),
        "month_start": month_start.date(),
        "days_elapsed": days_elapsed,
        "days_in_month": days_in_month,
        "month_to_date_usd": mtd,
        "projected_month_usd": projected,
        "projection_method": PROJECTION_METHOD,
        "active_users": active_users,
        "cost_per_active_user_usd": (mtd / active_users) if active_users else None,
        "calls": int(month["calls"].sum()),
        "unpriced_calls": int(month["unpriced_calls"].sum()),
        "top_spenders": _ranked(users, "user_id", mtd, top_n),
        "cost_by_feature": _ranked(month, "feature", mtd),
        "cost_by_model": _ranked(month, "model", mtd),
        "cost_trend": trend,
    }
