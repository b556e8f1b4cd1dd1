"""Hallucination settings: detector parameters, risk-score weights and levels, benchmark thresholds.

Plain pydantic models; the project's settings object composes `HallucinationSettings` under `hallucination`,
so every value can come from `[hallucination]` (and `[hallucination.grounding]`, ...) in aiobs.toml.
Unknown keys are errors and every validation message names the setting at fault.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiobs_pipeline.hallucination.consistency import ConsistencySettings
from aiobs_pipeline.hallucination.factcheck import FactCheckSettings

# Every signal the risk score can combine; each is 0-1 with higher = safer.
SIGNALS: tuple[str, ...] = ("confidence", "citations", "user_reports", "grounding", "consistency", "fact_check")
RISK_LEVELS: tuple[str, ...] = ("high", "medium", "low")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfidenceSettings(_Section):
    """How stated confidence and hedging become a 0-1 score."""

    label_scores: dict[str, float] = Field(
        default_factory=lambda: {"very low": 0.1, "low": 0.25, "medium": 0.6, "moderate": 0.6,
                                 "high": 0.9, "very high": 0.95},
        description="Score of each stated label ('Confidence: high'). Keys are matched case-insensitively.")
    hedge_base: float = Field(
        default=0.8, gt=0, le=1,
        description="Score of an answer that hedges, before each hedge's discount (no hedge and no "
                    "statement = no score, not this).")
    mild_hedge_discount: float = Field(
        default=0.25, ge=0, lt=1, description="Discount per mild hedge ('I think', 'possibly').")
    strong_hedge_discount: float = Field(
        default=0.5, ge=0, lt=1, description="Discount per strong hedge ('I'm not sure', 'I don't know').")
    max_hedges: int = Field(default=3, ge=1, description="Hedges counted at most (the score has a floor).")
    extra_mild_hedges: list[str] = Field(
        default_factory=list, description="More mild hedge phrases, matched as whole words, case-insensitively.")
    extra_strong_hedges: list[str] = Field(default_factory=list, description="More strong hedge phrases.")

    @field_validator("label_scores")
    @classmethod
    def _labels_valid(cls, value: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, score in value.items():
            if not label.strip() or not math.isfinite(score) or not 0 <= score <= 1:
                raise ValueError(f"hallucination.confidence.label_scores[{label!r}] must be a 0-1 score for a "
                                 f"non-empty label, got {score!r}")
            out[" ".join(label.lower().split())] = score
        return out


class CitationSettings(_Section):
    """What counts as a citation and what a citation may match."""

    id_pattern: str = Field(
        default=r"[A-Za-z0-9][\w.:/#@-]{0,79}",
        description="Regular expression a bracketed token must fully match to be read as a document id "
                    "('[kb-0101]'); other bracketed text ('[sic]') is a citation only when it names a document.")
    match_titles: bool = Field(
        default=True, description="A '(Source: ...)' citation may name a document by its title, not only its id.")
    title_match_cutoff: float = Field(
        default=90, ge=50, le=100, description="rapidfuzz token_set_ratio a cited title needs to match a title.")

    @field_validator("id_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"hallucination.citations.id_pattern is not a valid regular expression: {exc}") \
                from exc
        return value


class GroundingSettings(_Section):
    """How each answer sentence is scored against the retrieved context (see grounding.py for the formula)."""

    coverage_weight: float = Field(
        default=0.5, ge=0, description="Weight of the share of the sentence's content words found in the context.")
    alignment_weight: float = Field(
        default=0.5, ge=0,
        description="Weight of the best fuzzy alignment (rapidfuzz partial_ratio) of the sentence within the "
                    "context. Length-sensitive: a short answer aligns easily (see docs/hallucination.md).")
    entity_penalty: float = Field(
        default=0.3, ge=0, le=1,
        description="Share of a sentence's score removed when none of its name-like tokens is in the context "
                    "(proportionally less when some are).")
    number_penalty: float = Field(
        default=0.5, ge=0, le=1,
        description="Share of a sentence's score removed when none of its numbers is in the context.")
    negation_penalty: float = Field(
        default=0.3, ge=0, le=1,
        description="Share of a sentence's score removed when it denies something ('X is not Y') that the "
                    "context never denies near the same words (refusals and hedges exempt).")
    causal_penalty: float = Field(
        default=0.3, ge=0, le=1,
        description="Share of a sentence's score removed when it links facts by a cause or concession "
                    "('due to', 'leading to', 'despite') that the context never states near the same words.")
    relation_penalty: float = Field(
        default=0.5, ge=0, le=1,
        description="Share of a sentence's score removed when its answer to a 'which came first/later, A or "
                    "B?' question contradicts the years the context gives for A and B.")
    aggregate: str = Field(
        default="mean",
        description="How sentence scores make the response score: 'mean' (weighted by content words) or "
                    "'min' (the weakest sentence; length-sensitive, more sentences = more chances).")
    fuzzy_token_cutoff: float = Field(
        default=88, ge=50, le=100,
        description="rapidfuzz ratio at which an unseen word counts as a spelling variant of a context word.")
    fuzzy_min_length: int = Field(default=5, ge=3, description="Words shorter than this must match exactly.")
    unsupported_below: float = Field(
        default=0.5, ge=0, le=1, description="A sentence scoring below this is listed as unsupported.")
    messages_count_as_said: bool = Field(
        default=True,
        description="Words of the input messages (the question, the conversation) are not unsupported when "
                    "the answer repeats them; they never count as evidence for a claim.")

    @field_validator("aggregate")
    @classmethod
    def _aggregate_known(cls, value: str) -> str:
        if value not in ("mean", "min"):
            raise ValueError(f"hallucination.grounding.aggregate must be 'mean' or 'min', got {value!r}")
        return value

    @model_validator(mode="after")
    def _some_weight(self) -> GroundingSettings:
        if self.coverage_weight + self.alignment_weight <= 0:
            raise ValueError("hallucination.grounding.coverage_weight + alignment_weight must be > 0")
        return self


class RiskSettings(_Section):
    """The weighted trust score and its risk levels."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {"confidence": 0.3, "citations": 0.4, "user_reports": 0.3,
                                 "grounding": 0.4, "consistency": 0.3, "fact_check": 0.4},
        description="Weight of each signal; renormalised over the signals a response has. The first three "
                    "are the product brief's; grounding, consistency and fact_check join when present.")
    high_risk_below: float = Field(default=0.5, ge=0, le=1, description="Trust score below this: high risk.")
    medium_risk_below: float = Field(default=0.7, ge=0, le=1, description="Below this (and not high): medium.")

    @field_validator("weights")
    @classmethod
    def _weights_valid(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if name not in SIGNALS:
                raise ValueError(f"hallucination.risk.weights has unknown signal {name!r}; known: "
                                 f"{', '.join(SIGNALS)}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"hallucination.risk.weights[{name!r}] must be a finite number >= 0, got "
                                 f"{weight!r}")
        if not any(w > 0 for w in value.values()):
            raise ValueError("hallucination.risk.weights needs at least one weight > 0")
        return value

    @model_validator(mode="after")
    def _levels_ordered(self) -> RiskSettings:
        if self.high_risk_below > self.medium_risk_below:
            raise ValueError(f"hallucination.risk.high_risk_below ({self.high_risk_below}) must not exceed "
                             f"medium_risk_below ({self.medium_risk_below})")
        return self


# Thresholds on the benchmark score (see evals/benchmarks/halueval.py), tuned on the first 60% of each
# HaluEval dev file with `--tune`; the harness never tunes on the rows it reports.
# `general` is not tuned: it has no context, only stated confidence speaks, and the product's high-risk
# boundary is used; only its ROC-AUC is reported.
DEFAULT_HALUEVAL_THRESHOLDS: dict[str, float] = {
    "qa": 0.99, "dialogue": 0.5693, "summarization": 0.7039,
    "qa:no-length": 0.9839, "dialogue:no-length": 0.6606, "summarization:no-length": 0.8234,
    "general": 0.5, "general:no-length": 0.5,
}


class HallucinationSettings(BaseModel):
    """Everything the no-LLM hallucination detectors and the trust score need."""

    model_config = ConfigDict(extra="forbid")

    confidence: ConfidenceSettings = ConfidenceSettings()
    citations: CitationSettings = CitationSettings()
    grounding: GroundingSettings = GroundingSettings()
    risk: RiskSettings = RiskSettings()
    consistency: ConsistencySettings = ConsistencySettings()
    fact_check: FactCheckSettings = FactCheckSettings()
    halueval_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_HALUEVAL_THRESHOLDS),
        description="Benchmark decision thresholds per HaluEval task ('qa', 'qa:no-length', ...): an output "
                    "whose score is below is called hallucinated.")
