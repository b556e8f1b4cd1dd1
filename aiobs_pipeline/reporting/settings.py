"""Reporting settings: where dashboards and reports are written, targets, trend bands and the assumptions of
the support-impact estimate.

Plain pydantic models; the project's settings object composes `ReportingSettings` under `reporting`, so every
value can come from `[reporting]` (and `[reporting.support]`) in aiobs.toml. Defaults follow the product brief
(satisfaction target 70%, quality-score target 85%, p95 latency 5 s, error rate 5%, $25 per support ticket:
the brief's 1,240 tickets worth $31,000). Unknown keys are errors; every validation message names the setting.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SupportImpactSettings(_Section):
    """Assumptions behind "support tickets deflected" and "estimated savings" (printed next to the figures)."""

    features: list[str] = Field(
        default_factory=list,
        description="Features whose conversations could otherwise have become support tickets; empty = all.")
    deflection_rate: float = Field(
        default=0.10, ge=0, le=1,
        description="Share of answered conversations assumed to have replaced a support ticket.")
    cost_per_ticket_usd: float = Field(
        default=25.0, ge=0, description="What one support ticket costs to handle, USD.")

    @field_validator("features")
    @classmethod
    def _features_not_blank(cls, value: list[str]) -> list[str]:
        if any(not f.strip() for f in value):
            raise ValueError("reporting.support.features must not contain empty names")
        return [f.strip() for f in value]

    def describe(self) -> str:
        """The assumptions in one sentence, for printing next to the estimate."""
        scope = ", ".join(self.features) if self.features else "all features"
        return (f"assumes {self.deflection_rate:.0%} of answered conversations ({scope}) would otherwise have "
                f"become a support ticket, at ${self.cost_per_ticket_usd:,.2f} per ticket; before AI costs")


class ReportingSettings(_Section):
    """Everything the dashboard and report assets need."""

    # --- output
    dashboards_dir: Path = Field(
        default=Path("dashboards"), description="Daily HTML dashboards, relative to paths.reports_dir.")
    monthly_dir: Path = Field(
        default=Path("monthly"), description="Monthly reports (.md and .html), relative to paths.reports_dir.")
    # --- comparisons
    flat_band: float = Field(
        default=0.02, ge=0, lt=1,
        description="A relative change within +/- this is 'flat'; beyond it 'up' or 'down'.")
    target_band: float = Field(
        default=0.02, ge=0, lt=1,
        description="At or better than the target by less than this (relative) is 'meeting'; by more, "
                    "'exceeding'; worse than the target is 'below'.")
    min_responses: int = Field(
        default=20, ge=1,
        description="Scored responses (quality) or responses with feedback (satisfaction) a period needs "
                    "before its figure is judged against the target.")
    cost_trend_days: int = Field(default=14, ge=2, le=31, description="Days shown in the cost trend.")
    top_user_share: float = Field(
        default=0.05, gt=0, lt=1, description="Power users: this top share of users by spend (monthly report).")
    # --- targets (None = no target)
    satisfaction_target: float | None = Field(default=0.70, ge=0, le=1)
    quality_score_target: float | None = Field(default=0.85, ge=0, le=1)
    answer_accuracy_target: float | None = Field(default=None, ge=0, le=1)
    cost_per_user_target_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(
        default=None, ge=0, description="Target for the monthly cost projection and the month's cost.")
    p95_latency_target_ms: float | None = Field(default=5000.0, gt=0)
    error_rate_target: float | None = Field(default=0.05, ge=0, le=1)
    # --- technical dashboard
    response_cache_keys: list[str] = Field(
        default_factory=lambda: ["cache_hit"],
        description="Span metadata keys that say whether an application response cache served the call "
                    "(true/false, 'hit'/'miss'); calls without any of them are not counted.")
    support: SupportImpactSettings = SupportImpactSettings()

    @field_validator("satisfaction_target", "quality_score_target", "answer_accuracy_target",
                     "cost_per_user_target_usd", "monthly_budget_usd", "p95_latency_target_ms",
                     "error_rate_target")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"reporting targets must be finite numbers, got {value!r}")
        return value

    @field_validator("response_cache_keys")
    @classmethod
    def _keys_not_blank(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("reporting.response_cache_keys must not contain empty keys")
        return [k.strip() for k in value]
