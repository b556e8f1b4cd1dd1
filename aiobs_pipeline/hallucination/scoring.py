"""The trust score: a weighted combination of the hallucination signals of one response, and its risk level.

Each signal is 0-1 with higher = safer: confidence (stated or hedged), citations (share valid),
user_reports (1 - share of users reporting the answer wrong), grounding (support in the retrieved context),
consistency and fact_check (from the LLM detectors). Weights default to the product brief's 0.3 / 0.4 / 0.3
for the first three; the others join with their own defaults. Weights are renormalised over the signals a
response actually has, so a response checked only for citations is scored on citations alone, and a
response with no signal gets no score (None), never a default. The per-signal contributions (value,
renormalised weight, value x weight) are returned so a reviewer sees why a response was flagged.

trust_score = sum(w_i * s_i) / sum(w_i) over present signals i; risk level: high below `high_risk_below`
(0.5), medium below `medium_risk_below` (0.7), low otherwise. Definitions match DESIGN.md's metrics table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aiobs_pipeline.hallucination.settings import SIGNALS, RiskSettings


@dataclass(frozen=True)
class Contribution:
    """One signal's part in a trust score."""

    value: float
    weight: float
    share: float
    contribution: float


@dataclass(frozen=True)
class RiskResult:
    """A response's trust score (None without signals), risk level and per-signal contributions."""

    trust_score: float | None
    risk_level: str | None
    contributions: dict[str, Contribution] = field(default_factory=dict)


def _present(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def risk_level(trust: float | None, settings: RiskSettings | None = None) -> str | None:
    """high / medium / low for a trust score (None stays None)."""
    settings = settings or RiskSettings()
    if trust is None or math.isnan(trust):
        return None
    if trust < settings.high_risk_below:
        return "high"
    if trust < settings.medium_risk_below:
        return "medium"
    return "low"


def combine_signals(signals: Mapping[str, float | None], settings: RiskSettings | None = None) -> RiskResult:
    """Trust score of one response from its signals (missing or None signals are left out, not zeroed)."""
    settings = settings or RiskSettings()
    present: dict[str, tuple[float, float]] = {}
    for name, value in signals.items():
        if name not in SIGNALS:
            raise ValueError(f"unknown hallucination signal {name!r}; known: {', '.join(SIGNALS)}")
        if not _present(value):
            continue
        value = float(value)
        if not 0 <= value <= 1:
            raise ValueError(f"hallucination signal {name!r} must be within 0-1, got {value!r}")
        weight = settings.weights.get(name, 0.0)
        if weight > 0:
            present[name] = (value, weight)
    total_weight = sum(w for _, w in present.values())
    if not present:
        return RiskResult(None, None, {})
    contributions = {
        name: Contribution(round(value, 4), weight, round(weight / total_weight, 4),
                           round(value * weight / total_weight, 4))
        for name, (value, weight) in present.items()
    }
    trust = round(sum(v * w for v, w in present.values()) / total_weight, 4)
    return RiskResult(trust, risk_level(trust, settings), contributions)


def user_report_signal(negative_reports: int, responses: int) -> float | None:
    """The user_reports signal: 1 - share of responses users reported wrong; None without responses."""
    if responses <= 0:
        return None
    return 1 - min(max(negative_reports, 0), responses) / responses


SCORE_COLUMNS: dict[str, str] = {
    "trust_score": "Weighted hallucination signals, 0-1, higher = safer; null without any signal.",
    "risk_level": "high (< high_risk_below), medium (< medium_risk_below) or low; null without a score.",
    "signals_used": "Number of signals the score combines.",
}


def score_frame(frame: pd.DataFrame, settings: RiskSettings | None = None) -> pd.DataFrame:
    """Vectorised trust scores: a frame with one column per signal (null = absent) -> a copy with
    trust_score, risk_level, signals_used and `contribution_<signal>` (renormalised weight x value) columns.
    """
    settings = settings or RiskSettings()
    out = frame.copy()
    names = [n for n in SIGNALS if n in frame.columns and settings.weights.get(n, 0) > 0]
    numerator = np.zeros(len(frame))
    denominator = np.zeros(len(frame))
    values: dict[str, np.ndarray] = {}
    for name in names:
        column = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")
        bad = ~np.isnan(column) & ((column < 0) | (column > 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"hallucination signal {name!r} must be within 0-1; row {row} has {column[row]!r}")
        values[name] = column
        present = ~np.isnan(column)
        weight = settings.weights[name]
        numerator += np.where(present, column * weight, 0.0)
        denominator += np.where(present, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        trust = np.where(denominator > 0, numerator / denominator, np.nan)
    out["trust_score"] = np.round(trust, 4)
    levels = np.where(trust < settings.high_risk_below, "high",
                      np.where(trust < settings.medium_risk_below, "medium", "low")).astype(object)
    levels[np.isnan(trust)] = None
    out["risk_level"] = levels
    out["signals_used"] = sum((~np.isnan(v)).astype("int64") for v in values.values()) if values \
        else np.zeros(len(frame), dtype="int64")
    for name, column in values.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(~np.isnan(column) & (denominator > 0), settings.weights[name] / denominator, np.nan)
        out[f"contribution_{name}"] = np.round(share * column, 4)
    return out
