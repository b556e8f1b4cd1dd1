"""Feedback settings: abandonment threshold, satisfaction weights, metric targets and minimum counts.

Plain pydantic models; the project's settings object composes `FeedbackSettings` under `feedback`, so every
value can come from `[feedback]` in aiobs.toml. Defaults follow the product brief. Every validation message
names the setting at fault.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiobs_pipeline.schema import FEEDBACK_EVENT_TYPES

# What a score / feedback name of an external export can be mapped to (see docs/feedback.md).
MAPPING_KINDS: tuple[str, ...] = ("thumbs", "rating", "correctness", *FEEDBACK_EVENT_TYPES)


class SatisfactionWeights(BaseModel):
    """Contribution of each event type to a response's raw satisfaction score (ratings: (r - 3) / 2)."""

    model_config = ConfigDict(extra="forbid")

    thumbs_up: float = Field(default=1.0, ge=-2, le=2)
    thumbs_down: float = Field(default=-1.0, ge=-2, le=2)
    copied: float = Field(default=0.5, ge=-2, le=2)
    regenerated: float = Field(default=-0.5, ge=-2, le=2)
    edited: float = Field(default=-0.2, ge=-2, le=2)
    session_abandoned: float = Field(default=-0.7, ge=-2, le=2)
    # The brief's formula has no term for it: a report is flagged (hallucination_reported), not scored.
    hallucination_report: float = Field(default=0.0, ge=-2, le=2)


class FeedbackSettings(BaseModel):
    """Everything the feedback assets need: reading rules, the satisfaction formula and metric targets."""

    model_config = ConfigDict(extra="forbid")

    # --- reading
    abandon_threshold_seconds: float = Field(
        default=30.0, gt=0, description="A session_abandoned event counts only when the session lasted less "
                                        "than this; longer ones are quarantined as not_a_signal.")
    ignored_sources: list[str] = Field(
        default_factory=lambda: ["eval", "model", "auto_eval"],
        description="Sources (case-insensitive) whose records are automated evaluators, not users: quarantined "
                    "as not_user_feedback (Langfuse source EVAL, LangSmith feedback_source.type model).")
    score_name_map: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Langfuse score / LangSmith feedback names -> thumbs, rating, correctness or an "
                    "event type; names match case-insensitively, '-' and ' ' read as '_'.")
    # --- satisfaction
    weights: SatisfactionWeights = SatisfactionWeights()
    # --- metrics
    min_responses: int = Field(
        default=20, ge=1, description="Responses with feedback a group needs before its metrics are judged.")
    thumbs_up_rate_target: float = Field(default=0.70, ge=0, le=1, description="Met when the rate is above.")
    thumbs_down_rate_target: float = Field(default=0.15, ge=0, le=1, description="Met when the rate is below.")
    regeneration_rate_target: float = Field(default=0.10, ge=0, le=1, description="Met when the rate is below.")
    satisfaction_target: float = Field(
        default=0.70, ge=0, le=1, description="Average satisfaction score above which the target is met.")

    @field_validator("ignored_sources")
    @classmethod
    def _lower_sources(cls, value: list[str]) -> list[str]:
        return [s.strip().lower() for s in value if s.strip()]

    @field_validator("score_name_map")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, kind in value.items():
            key = normalise_name(name)
            if not key:
                raise ValueError(f"score_name_map has an empty name (mapped to {kind!r})")
            if kind not in MAPPING_KINDS:
                raise ValueError(f"score_name_map[{name!r}] = {kind!r} is not one of {', '.join(MAPPING_KINDS)}")
            out[key] = kind
        return out


def normalise_name(name: str) -> str:
    """A score or event-type name in canonical spelling: lower case, '-' and spaces as '_'."""
    return "_".join(name.strip().lower().replace("-", " ").split())
