"""Cost settings: model aliases, price overrides, per-call prices, budgets and spike thresholds.

These are plain pydantic models; the project's settings object (aiobs_pipeline/settings.py) composes
`CostSettings` under `costs`, so every value here can come from `[costs]` in aiobs.toml. Every validation
message names the setting at fault.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aiobs_pipeline.schema import KINDS

# The subjects cost anomalies are judged for; each maps to an hourly_costs column ("total" sums all rows).
AnomalyScope = Literal["user", "feature", "endpoint", "model", "prompt_version", "total"]
EPOCH = date(1970, 1, 1)


def _finite_non_negative(name: str, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class PriceOverride(BaseModel):
    """A price that wins over genai-prices for one model (optionally one provider) from a date on."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model name as spans report it (after model_aliases), or the genai-prices "
                                   "model id it resolves to, e.g. 'gpt-4o'. Case-insensitive.")
    provider: str | None = Field(default=None, description="Only spans of this provider; None = any provider.")
    input_usd_per_mtok: float = Field(description="USD per million input tokens (cache misses).")
    cached_input_usd_per_mtok: float | None = Field(
        default=None, description="USD per million cached input tokens; None = charged at the input rate.")
    cache_write_usd_per_mtok: float | None = Field(
        default=None, description="USD per million tokens written to the prompt cache; None = input rate.")
    output_usd_per_mtok: float = Field(default=0.0, description="USD per million output tokens (reasoning included).")
    effective_from: date = Field(default=EPOCH, description="First UTC day the price applies to.")

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("pricing_overrides[].model must not be empty")
        return value.strip()

    @field_validator("input_usd_per_mtok", "cached_input_usd_per_mtok", "cache_write_usd_per_mtok",
                     "output_usd_per_mtok")
    @classmethod
    def _price_valid(cls, value: float | None, info: ValidationInfo) -> float | None:
        return _finite_non_negative(f"pricing_overrides[].{info.field_name}", value)


class PerCallPrice(BaseModel):
    """A fixed USD price per call for spans without tokens (a vector search, a rerank call), by name or kind."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Exact span name, e.g. 'vector_search'.")
    kind: str | None = Field(default=None, description="Span kind, e.g. 'rerank' (used when no name matches).")
    usd_per_call: float = Field(description="USD charged per span.")
    effective_from: date = Field(default=EPOCH, description="First UTC day the price applies to.")

    @field_validator("usd_per_call")
    @classmethod
    def _price_valid(cls, value: float) -> float:
        _finite_non_negative("per_call_prices[].usd_per_call", value)
        return value

    @model_validator(mode="after")
    def _name_xor_kind(self) -> PerCallPrice:
        if (self.name is None) == (self.kind is None):
            raise ValueError("per_call_prices[] needs exactly one of name or kind")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"per_call_prices[].kind {self.kind!r} is not one of {', '.join(KINDS)}")
        return self


class CostSettings(BaseModel):
    """Everything the cost assets need: pricing, budgets and the cost-spike detector."""

    model_config = ConfigDict(extra="forbid")

    # --- pricing
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Deployment or gateway model name -> real model, optionally provider-qualified "
                    "('azure/gpt-4o'). Keys match case-insensitively.")
    pricing_overrides: list[PriceOverride] = Field(default_factory=list)
    per_call_prices: list[PerCallPrice] = Field(default_factory=list)
    unpriced_share_warning: float = Field(
        default=0.05, ge=0, le=1, description="Warn when more than this share of billable calls is unpriced.")
    reported_cost_tolerance: float = Field(
        default=0.05, ge=0, description="Flag calls whose reported cost differs from ours by more than this.")
    # --- budgets
    user_daily_budget_usd: float = Field(default=5.0, gt=0, description="Daily budget per user, USD.")
    user_budget_overrides: dict[str, float] = Field(
        default_factory=dict, description="user_id -> daily budget in USD for that user.")
    hourly_total_budget_usd: float = Field(default=100.0, gt=0, description="Budget for all spend in one hour.")
    budget_timezone: str = Field(default="UTC", description="IANA time zone in which a budget day starts.")
    # --- cost spikes
    spike_critical_ratio: float = Field(default=3.0, gt=1, description="spend / baseline at or above: critical.")
    spike_warning_ratio: float = Field(default=1.5, gt=1, description="spend / baseline at or above: warning.")
    baseline_days: int = Field(default=7, ge=1, le=90, description="Same hour of this many previous days.")
    baseline_fallback_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="Fallback baseline: median of this many previous hours.")
    min_baseline_points: int = Field(
        default=3, ge=1, description="Active hours a baseline needs before a subject gets a verdict.")
    min_spend_usd: float = Field(
        default=1.0, ge=0, description="Spend in the hour below which a subject gets no verdict.")
    min_increase_usd: float = Field(
        default=1.0, ge=0, description="A spike must also exceed its baseline by this many USD; smaller "
                                       "excesses are ok (Poisson noise of a few dozen calls an hour).")
    anomaly_scopes: list[AnomalyScope] = Field(
        default_factory=lambda: ["user", "feature", "total"], description="Subjects judged for spikes.")

    @field_validator("budget_timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"budget_timezone {value!r} is not a known IANA time zone "
                             "(e.g. 'UTC', 'Europe/Paris')") from exc
        return value

    @field_validator("user_budget_overrides")
    @classmethod
    def _budgets_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for user, budget in value.items():
            if not math.isfinite(budget) or budget <= 0:
                raise ValueError(f"user_budget_overrides[{user!r}] must be a number > 0, got {budget!r}")
        return value

    @field_validator("model_aliases")
    @classmethod
    def _aliases_valid(cls, value: dict[str, str]) -> dict[str, str]:
        lowered: dict[str, str] = {}
        for name, target in value.items():
            if not name.strip() or not target.strip():
                raise ValueError(f"model_aliases entry {name!r} -> {target!r} must have a non-empty name and target")
            key = name.strip().lower()
            if key in lowered and lowered[key] != target.strip():
                raise ValueError(f"model_aliases has {name!r} twice (names match case-insensitively)")
            lowered[key] = target.strip()
        return lowered

    @model_validator(mode="after")
    def _ratios_ordered(self) -> CostSettings:
        if self.spike_warning_ratio > self.spike_critical_ratio:
            raise ValueError(f"spike_warning_ratio ({self.spike_warning_ratio}) must not exceed "
                             f"spike_critical_ratio ({self.spike_critical_ratio})")
        if not self.anomaly_scopes:
            raise ValueError("anomaly_scopes must name at least one scope")
        return self

    def user_budget(self, user_id: str) -> float:
        """Daily budget of one user: the override if configured, else user_daily_budget_usd."""
        return self.user_budget_overrides.get(user_id, self.user_daily_budget_usd)
