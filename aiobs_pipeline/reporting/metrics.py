"""What every dashboard and report figure shares: a figure with its sample size, the comparison with the
previous period (change, trend), the status against a target, and the long table layouts.

Tables are long (one row per metric x dimension value) so BI tools can filter and pivot them without a schema
change when a metric is added. A figure whose input is missing has value null and a note saying why; it is
never filled in. This module must not read tables or format text for people (see phrasing.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from aiobs_pipeline.reporting.settings import ReportingSettings

Unit = Literal["ratio", "usd", "count", "ms", "tokens"]
Direction = Literal["higher", "lower", "neutral"]
TRENDS: tuple[str, ...] = ("up", "down", "flat", "n/a")
TARGET_STATUSES: tuple[str, ...] = ("meeting", "below", "exceeding", "no target", "insufficient data", "n/a")
ALL = "all"

TECHNICAL_COLUMNS: dict[str, str] = {
    "day": "datetime64[ns]", "metric": "object", "dimension": "object", "dimension_value": "object",
    "value": "float64", "unit": "object", "sample_size": "int64", "note": "object",
}
COMPARISON_COLUMNS: dict[str, str] = {
    "metric": "object", "label": "object", "dimension": "object", "dimension_value": "object",
    "value": "float64", "previous_value": "float64", "change_abs": "float64", "change_pct": "float64",
    "trend": "object", "target": "float64", "target_status": "object", "direction": "object",
    "unit": "object", "sample_size": "int64", "previous_sample_size": "int64", "note": "object",
}
BUSINESS_COLUMNS: dict[str, str] = {"day": "datetime64[ns]", **COMPARISON_COLUMNS}
MONTHLY_COLUMNS: dict[str, str] = {"month": "datetime64[ns]", **COMPARISON_COLUMNS, "sentence": "object"}
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "day": "The UTC day the row describes (midnight, no time zone).",
    "month": "First day of the month the row describes.",
    "metric": "Metric name (see docs/reports.md).",
    "label": "The metric's name for people.",
    "dimension": "What the row is broken down by: 'all', model, endpoint, prompt_version, feature, hour, ...",
    "dimension_value": "The value of the dimension ('all' for the overall figure).",
    "value": "The figure; null when not available (see note).",
    "previous_value": "The same figure for the previous period; null when that period has no data.",
    "change_abs": "value - previous_value.",
    "change_pct": "(value - previous_value) / |previous_value|; null when previous is missing or 0.",
    "trend": "up, down, flat (within reporting.flat_band) or n/a.",
    "target": "Target from settings; null when the metric has none.",
    "target_status": "meeting, below, exceeding, no target, insufficient data (sample under min_responses) or n/a.",
    "direction": "Which way is better: higher, lower or neutral.",
    "unit": "ratio (0-1), usd, count, ms or tokens.",
    "sample_size": "How many calls, responses, users or conversations the figure is computed from.",
    "previous_sample_size": "The same for the previous period.",
    "note": "Why a figure is missing, or the assumptions behind an estimate.",
    "sentence": "The figure in stakeholder language, as the report prints it.",
}


@dataclass(frozen=True)
class Figure:
    """One computed figure: value (None = not available), what it is computed from, and why it may be missing."""

    value: float | None
    sample_size: int = 0
    note: str = ""
    judged: bool = True

    @property
    def available(self) -> bool:
        """True when the figure has a value."""
        return self.value is not None and not (isinstance(self.value, float) and math.isnan(self.value))


MISSING_PERIOD = Figure(None, 0, "no data for this period")


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, label, unit, better direction and target."""

    name: str
    label: str
    unit: Unit
    direction: Direction
    target: float | None = None


def relative_change(current: float | None, previous: float | None) -> float | None:
    """(current - previous) / |previous|; None when either is missing or previous is 0."""
    if current is None or previous is None or _nan(current) or _nan(previous) or previous == 0:
        return None
    return (current - previous) / abs(previous)


def trend(current: float | None, previous: float | None, flat_band: float) -> str:
    """up / down / flat (relative change within flat_band) / n/a (a side is missing)."""
    if current is None or previous is None or _nan(current) or _nan(previous):
        return "n/a"
    change = relative_change(current, previous)
    if change is None:  # previous is 0: only the sign of the difference is meaningful
        return "flat" if current == previous else ("up" if current > previous else "down")
    if abs(change) <= flat_band:
        return "flat"
    return "up" if change > 0 else "down"


def target_status(value: float | None, target: float | None, direction: Direction, band: float,
                  judged: bool = True) -> str:
    """meeting / below / exceeding the target in the metric's better direction; no target / insufficient data / n/a.

    "below" means falling short of the target whichever way is better (a cost above its budget is "below").
    """
    if value is None or _nan(value):
        return "n/a"
    if target is None or direction == "neutral":
        return "no target"
    if not judged:
        return "insufficient data"
    if direction == "higher":
        if value < target:
            return "below"
        return "meeting" if value <= target * (1 + band) else "exceeding"
    if value > target:
        return "below"
    return "meeting" if value >= target * (1 - band) else "exceeding"


def improved(row: pd.Series | dict, flat_band: float) -> bool | None:
    """True when the metric moved the better way beyond the flat band, False the worse way, None otherwise."""
    direction, moved = row["direction"], row["trend"]
    if direction == "neutral" or moved in ("flat", "n/a"):
        return None
    return (moved == "up") == (direction == "higher")


def compare(spec: MetricSpec, current: Figure, previous: Figure | None, settings: ReportingSettings,
            dimension: str = ALL, dimension_value: str = ALL) -> dict[str, object]:
    """One comparison row: the figure, the previous period's, change, trend and target status."""
    previous = previous or MISSING_PERIOD
    cur = current.value if current.available else None
    prev = previous.value if previous.available else None
    notes = [current.note] if current.note else []
    if cur is not None and prev is None and previous.note:
        notes.append(f"previous period: {previous.note}")
    return {
        "metric": spec.name, "label": spec.label, "dimension": dimension, "dimension_value": dimension_value,
        "value": _float(cur), "previous_value": _float(prev),
        "change_abs": _float(None if cur is None or prev is None else cur - prev),
        "change_pct": _float(relative_change(cur, prev)),
        "trend": trend(cur, prev, settings.flat_band),
        "target": _float(spec.target),
        "target_status": target_status(cur, spec.target, spec.direction, settings.target_band, current.judged),
        "direction": spec.direction, "unit": spec.unit,
        "sample_size": int(current.sample_size), "previous_sample_size": int(previous.sample_size),
        "note": "; ".join(notes),
    }


def frame_of(rows: list[dict[str, object]], columns: dict[str, str]) -> pd.DataFrame:
    """Rows as a frame with exactly `columns` and their dtypes (an empty list gives an empty typed frame)."""
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    frame = pd.DataFrame(rows)
    for name in columns:
        if name not in frame.columns:
            frame[name] = None
    return frame[list(columns)].astype(columns)


def weighted_mean(values: pd.Series, weights: pd.Series) -> tuple[float | None, int]:
    """Mean of per-period means weighted by their sample sizes, and the total sample (rows without a value skip)."""
    mask = values.notna() & weights.notna() & (weights > 0)
    total = int(weights[mask].sum())
    if total == 0:
        return None, 0
    return float((values[mask] * weights[mask]).sum() / total), total


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)
