"""Eval settings: which answers become eval cases, how PII is redacted, how runs are scored and compared.

Plain pydantic models; the project's settings object composes `EvalSettings` under `evals`, so every value can
come from `[evals]` (and `[evals.dataset]`, `[evals.redaction]`, `[evals.run]`, `[evals.compare]`) in
aiobs.toml. Unknown keys are errors and every validation message names the setting at fault.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Every metric a run scores per case; each is 0-1 with higher = better (see docs/evals.md).
METRICS: tuple[str, ...] = ("success_rate", "citation_validity", "grounding", "reference_similarity", "judge_score")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PATTERN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedactionSettings(_Section):
    """PII removed from every text of an eval case before anything is written."""

    emails: bool = Field(default=True, description="Replace e-mail addresses by <EMAIL>.")
    phone_numbers: bool = Field(default=True, description="Replace phone numbers (phonenumbers) by <PHONE>.")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US"],
        description="Regions (ISO 3166 alpha-2) for numbers written without a country code; numbers with "
                    "+<country code> are found whatever the region.")
    card_numbers: bool = Field(default=True, description="Replace card-like numbers (13-19 digits that pass the "
                                                         "Luhn check) by <CARD>.")
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="More patterns: NAME = regex; each match is replaced by <NAME> (upper-cased).")

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        import phonenumbers  # noqa: PLC0415 - only needed to validate

        known = phonenumbers.SUPPORTED_REGIONS
        out = []
        for region in value:
            code = region.strip().upper()
            if code not in known:
                raise ValueError(f"evals.redaction.phone_regions has unknown region {region!r} (ISO 3166 alpha-2, "
                                 "e.g. US, GB, DE)")
            out.append(code)
        return out

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not _PATTERN_NAME.match(name):
                raise ValueError(f"evals.redaction.patterns: name {name!r} must be a letter followed by letters, "
                                 "digits or underscores")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"evals.redaction.patterns[{name!r}] is not a valid regex: {exc}") from None
            if compiled.match(""):
                raise ValueError(f"evals.redaction.patterns[{name!r}] matches the empty string")
        return value


class DatasetSettings(_Section):
    """Which production answers become eval cases and how near-duplicates are merged."""

    name: str = Field(default="bad-answers", description="Dataset name: the folder under paths.datasets_dir.")
    thumbs_down: bool = Field(default=True, description="A thumbs-down (any reason) makes a case.")
    low_rating_at_most: float | None = Field(
        default=2, ge=1, le=5, description="A rating at or below this makes a case (null: ratings never do).")
    hallucination_reports: bool = Field(default=True, description="A user's hallucination report makes a case.")
    high_risk: bool = Field(default=True, description="A high hallucination risk level makes a case.")
    edits: bool = Field(default=True, description="A user's edit makes a case (the edit is its correction).")
    dedupe_threshold: float = Field(
        default=90.0, ge=50, le=100,
        description="rapidfuzz token_sort_ratio (0-100) at or above which two questions of the same feature "
                    "are the same case; the earliest answer is kept.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"evals.dataset.name {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return value


class RunSettings(_Section):
    """How `eval run` scores each output."""

    require_citations_with_context: bool = Field(
        default=True, description="An answer to a case with context that cites nothing scores 0 on "
                                  "citation_validity (else the metric does not apply to it).")
    judge: bool = Field(default=False, description="Also ask an LLM judge whether the context supports the answer.")
    judge_model: str | None = Field(default=None, description="Judge model (default: llm.model).")


class CompareSettings(_Section):
    """How `eval compare` decides that a candidate prompt version is worse than its baseline."""

    confidence_level: float = Field(default=0.95, gt=0.5, lt=1, description="Of the bootstrap intervals.")
    n_resamples: int = Field(default=2000, ge=100, le=100_000, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Seed of the bootstrap, so a comparison is reproducible.")
    default_tolerance: float = Field(
        default=0.02, ge=0, le=1,
        description="A metric regresses when the CI upper bound of candidate - baseline is below -tolerance.")
    tolerances: dict[str, float] = Field(default_factory=dict, description="Per-metric tolerance overrides.")
    gated_metrics: list[str] = Field(default_factory=lambda: list(METRICS),
                                     description="Metrics whose regression fails the comparison.")
    min_pairs: int = Field(default=3, ge=1, description="Cases both versions were scored on, at least, "
                                                        "before a metric can fail the comparison.")
    worse_case_drop: float = Field(default=0.1, gt=0, le=1,
                                   description="A case is listed as worse when a gated metric drops this much.")
    max_cases_in_report: int = Field(default=25, ge=1, description="Worse cases listed in the report, at most.")

    @field_validator("tolerances")
    @classmethod
    def _tolerances(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, tolerance in value.items():
            if metric not in METRICS:
                raise ValueError(f"evals.compare.tolerances has unknown metric {metric!r}; known: {', '.join(METRICS)}")
            if not math.isfinite(tolerance) or not 0 <= tolerance <= 1:
                raise ValueError(f"evals.compare.tolerances[{metric!r}] must be between 0 and 1, got {tolerance!r}")
        return value

    @field_validator("gated_metrics")
    @classmethod
    def _gated(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METRICS]
        if unknown:
            raise ValueError(f"evals.compare.gated_metrics has unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        return value

    def tolerance(self, metric: str) -> float:
        """The tolerance of one metric."""
        return self.tolerances.get(metric, self.default_tolerance)


class EvalSettings(_Section):
    """Everything the eval dataset, prompt-version runs and comparisons need (the `[evals]` section)."""

    prompts_dir: Path = Field(default=Path("evals/prompts"), description="Prompt version files (*.toml).")
    export_dir: Path = Field(default=Path("evals/datasets"),
                             description="Where `aiobs eval export` copies a dataset version for review.")
    reports_subdir: str = Field(default="evals", description="Folder under paths.reports_dir for run results "
                                                             "and comparison reports.")
    dataset: DatasetSettings = DatasetSettings()
    redaction: RedactionSettings = RedactionSettings()
    run: RunSettings = RunSettings()
    compare: CompareSettings = CompareSettings()

    @model_validator(mode="after")
    def _subdir(self) -> EvalSettings:
        if Path(self.reports_subdir).is_absolute() or ".." in Path(self.reports_subdir).parts:
            raise ValueError(f"evals.reports_subdir {self.reports_subdir!r} must be a relative folder name")
        return self


def eval_settings_of(settings: object) -> EvalSettings:
    """The `evals` section of the project settings (defaults while the project settings lack it)."""
    section = getattr(settings, "evals", None)
    return section if isinstance(section, EvalSettings) else EvalSettings()
