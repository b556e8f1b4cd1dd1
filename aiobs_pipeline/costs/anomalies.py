"""Cost spikes: an hour's spend per user / feature / total against that subject's own baseline.

Baseline: the median spend of the subject's active hours (hours with spend > 0) at the same hour of day over
the previous `baseline_days` days; when fewer than `min_baseline_points` such hours exist, the median of its
active hours in the previous `baseline_fallback_hours` hours; with fewer still, no verdict
(`insufficient_history`). A subject spending less than `min_spend_usd` in the hour gets no verdict either
(`below_min_spend`), so a new user's first dollar, or a cent that is "3x" a cent, never pages anyone.

Why the median: seven points are few, and a mean is dragged by one of them; a past incident (yesterday's
runaway loop) would lift a mean baseline and hide today's repeat, and one idle day would halve it and raise
false alarms. The median of seven ignores up to three such days.

Why an absolute minimum increase too: at a few dozen calls an hour, Poisson noise alone reaches 1.5x now and
then (60 calls expected, 90 seen: p ~ 0.3%, which across every user and hour is a false alarm a day). A spike
must therefore also cost `min_increase_usd` more than the baseline, the same double threshold (percentage
and dollar impact) cloud cost-anomaly monitors use. A runaway loop clears both by far.

Why active hours only: hours without spend have no hourly_costs row, and a part-time user's zero-filled
median is 0, which makes every active hour an infinite ratio. The baseline therefore answers "what does this
subject spend in an hour when it is active", which is exactly what a loop multiplies.

Rows: one per subject with spend in the hour (ANOMALY_COLUMNS); status is ok, warning (ratio >=
spike_warning_ratio), critical (>= spike_critical_ratio), insufficient_history or below_min_spend. Alerts
are the warning and critical rows; ok rows let the alerting layer resolve earlier alerts.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from aiobs_pipeline.costs.aggregate import HOURLY_COLUMNS, NONE_LABEL, as_utc, empty
from aiobs_pipeline.costs.settings import CostSettings

SCOPE_COLUMNS: dict[str, str | None] = {
    "user": "user_id", "feature": "feature", "endpoint": "endpoint", "model": "model",
    "prompt_version": "prompt_version", "total": None,
}
ANOMALY_STATUSES = ("ok", "warning", "critical", "insufficient_history", "below_min_spend")
ANOMALY_COLUMNS: dict[str, str] = {
    "hour": "datetime64[ns, UTC]",
    "scope": "object",
    "subject": "object",
    "spend_usd": "float64",
    "calls": "int64",
    "baseline_usd": "float64",
    "baseline_method": "object",
    "baseline_points": "int64",
    "ratio": "float64",
    "status": "object",
}
ANOMALY_DESCRIPTIONS: dict[str, str] = {
    "hour": "The hour judged (UTC start).",
    "scope": "user, feature, endpoint, model, prompt_version or total.",
    "subject": "The user id / feature / ... ('all' for total; '(none)' for spend without one).",
    "spend_usd": "Spend of the subject in the hour.",
    "calls": "Billable calls of the subject in the hour.",
    "baseline_usd": "Median spend of the subject's active hours in the baseline window; null without one.",
    "baseline_method": "same_hour_<N>d or trailing_<N>h; null without a baseline.",
    "baseline_points": "Active hours the baseline is the median of.",
    "ratio": "spend_usd / baseline_usd; null without a baseline.",
    "status": "One of " + ", ".join(ANOMALY_STATUSES) + ".",
}


def _frame(frames: pd.DataFrame | Iterable[pd.DataFrame] | None) -> pd.DataFrame:
    """One hourly_costs frame with UTC-aware hours."""
    if frames is None:
        return empty(HOURLY_COLUMNS)
    if not isinstance(frames, pd.DataFrame):
        parts = [f for f in frames if not f.empty]
        frames = pd.concat(parts, ignore_index=True) if parts else empty(HOURLY_COLUMNS)
    return frames.assign(hour=as_utc(frames["hour"]))


def _by_subject(frame: pd.DataFrame, column: str | None) -> pd.DataFrame:
    """Spend and calls per (hour, subject) for one scope."""
    subject = frame[column].fillna(NONE_LABEL).astype(str) if column else pd.Series("all", index=frame.index)
    return (pd.DataFrame({"hour": frame["hour"], "subject": subject, "cost_usd": frame["cost_usd"],
                          "calls": frame["calls"]})
            .groupby(["hour", "subject"], sort=True).sum().reset_index())


def _baseline(history: pd.DataFrame, hours: list[pd.Timestamp]) -> pd.DataFrame:
    """Median and count of active-hour spend per subject over the given hours."""
    window = history[history["hour"].isin(hours) & (history["cost_usd"] > 0)]
    grouped = window.groupby("subject")["cost_usd"]
    return pd.DataFrame({"median": grouped.median(), "points": grouped.size()})


def cost_anomalies(
    current: pd.DataFrame,
    history: pd.DataFrame | Iterable[pd.DataFrame] | None,
    settings: CostSettings,
    hour: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Judge one hour's spend per subject (hourly_costs rows) against the history of earlier hourly_costs.

    `history` should hold at least the previous `baseline_days` days; rows at or after `hour` are ignored,
    so passing a longer table is safe. `hour` defaults to the single hour of `current`.
    """
    current = _frame(current)
    if hour is None:
        hours = current["hour"].dropna().unique()
        if len(hours) != 1:
            raise ValueError(f"cost_anomalies needs hourly_costs rows of exactly one hour (or hour=), "
                             f"got {len(hours)}")
        hour = pd.Timestamp(hours[0])
    hour = pd.Timestamp(hour)
    hour = (hour.tz_localize("UTC") if hour.tzinfo is None else hour.tz_convert("UTC")).floor("h")
    past = _frame(history)
    past = past[past["hour"] < hour]
    current = current[current["hour"] == hour] if not current.empty else current

    same_hours = [hour - pd.Timedelta(days=d) for d in range(1, settings.baseline_days + 1)]
    recent_hours = [hour - pd.Timedelta(hours=h) for h in range(1, settings.baseline_fallback_hours + 1)]
    same_label = f"same_hour_{settings.baseline_days}d"
    recent_label = f"trailing_{settings.baseline_fallback_hours}h"

    results: list[pd.DataFrame] = []
    for scope in settings.anomaly_scopes:
        column = SCOPE_COLUMNS[scope]
        now = _by_subject(current, column) if not current.empty else pd.DataFrame(
            {"subject": pd.Series(dtype="object"), "cost_usd": pd.Series(dtype="float64"),
             "calls": pd.Series(dtype="int64")})
        if scope == "total" and now.empty:
            now = pd.DataFrame({"subject": ["all"], "cost_usd": [0.0], "calls": [0]})
        if now.empty:
            continue
        hist = _by_subject(past, column) if not past.empty else pd.DataFrame(
            {"hour": pd.Series(dtype="datetime64[ns, UTC]"), "subject": pd.Series(dtype="object"),
             "cost_usd": pd.Series(dtype="float64")})
        same = _baseline(hist, same_hours).reindex(now["subject"])
        recent = _baseline(hist, recent_hours).reindex(now["subject"])
        use_same = (same["points"].fillna(0) >= settings.min_baseline_points).to_numpy()
        use_recent = ~use_same & (recent["points"].fillna(0) >= settings.min_baseline_points).to_numpy()
        baseline = np.where(use_same, same["median"], np.where(use_recent, recent["median"], np.nan))
        points = np.where(use_same, same["points"].fillna(0), recent["points"].fillna(0)).astype("int64")
        method = np.where(use_same, same_label, np.where(use_recent, recent_label, None))
        spend = now["cost_usd"].to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.isnan(baseline), np.nan, spend / baseline)
        small_increase = np.isnan(baseline) | (spend - np.nan_to_num(baseline) < settings.min_increase_usd)
        status = np.select(
            [np.isnan(baseline), spend < settings.min_spend_usd, small_increase,
             ratio >= settings.spike_critical_ratio, ratio >= settings.spike_warning_ratio],
            ["insufficient_history", "below_min_spend", "ok", "critical", "warning"],
            default="ok",
        )
        results.append(pd.DataFrame({
            "hour": hour, "scope": scope, "subject": now["subject"].to_numpy(dtype=object),
            "spend_usd": spend, "calls": now["calls"].to_numpy(dtype="int64"), "baseline_usd": baseline,
            "baseline_method": method, "baseline_points": points, "ratio": ratio, "status": status,
        }))
    if not results:
        return empty(ANOMALY_COLUMNS)
    out = pd.concat(results, ignore_index=True)
    return out[list(ANOMALY_COLUMNS)].astype(ANOMALY_COLUMNS)


def alerts(anomalies: pd.DataFrame) -> pd.DataFrame:
    """Only the warning and critical rows, most severe and largest ratio first."""
    hits = anomalies[anomalies["status"].isin(["warning", "critical"])]
    order = hits["status"].map({"critical": 0, "warning": 1})
    return hits.assign(_order=order).sort_values(["_order", "ratio"], ascending=[True, False]).drop(
        columns="_order").reset_index(drop=True)
