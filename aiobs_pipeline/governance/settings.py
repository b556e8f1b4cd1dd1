"""Governance settings: how long each kind of stored data is kept (`[governance]` in aiobs.toml).

Every period is in days; `None` keeps that data forever (TOML has no null: write `"forever"`). A row goes when its whole partition (export hour,
hour, day or month) ended more than that many days before the retention run. The defaults keep more than a
year of spans and files (so a year-over-year comparison still works) and strip message content after 90 days;
none of them touches data younger than 90 days, so the demo (the last days of the previous month) never loses
anything to them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DAYS = {"ge": 1, "le": 36_500}


class GovernanceSettings(BaseModel):
    """Retention periods in days (None = keep forever) and when the retention asset runs."""

    model_config = ConfigDict(extra="forbid")

    landing_days: int | None = Field(
        default=400, **_DAYS, description="Trace landing folders (landing_root/YYYY/MM/DD/HH) older than this "
                                          "are deleted with their files.")
    feedback_landing_days: int | None = Field(
        default=400, **_DAYS, description="Feedback landing folders (feedback_root/YYYY/MM/DD/HH).")
    span_content_days: int | None = Field(
        default=90, **_DAYS, description="After this, message content is nulled in span tables (input/output "
                                         "messages, completion text, retrieved documents) and in feedback "
                                         "(comment, original and edited text); ids, tokens, costs and "
                                         "latencies stay.")
    spans_days: int | None = Field(
        default=400, **_DAYS, description="Spans, priced spans, per-answer check tables and the ingest audit are "
                                          "deleted after this.")
    llm_check_spans_days: int | None = Field(
        default=400, **_DAYS, description="Our own LLM calls made by the hallucination checks.")
    quarantine_days: int | None = Field(
        default=90, **_DAYS, description="Quarantined spans and feedback (their raw text may hold content).")
    feedback_days: int | None = Field(
        default=400, **_DAYS, description="Feedback events, feedback audit and per-answer satisfaction scores.")
    aggregates_days: int | None = Field(
        default=None, **_DAYS, description="Cost roll-ups, budget breaches, anomalies, scorecards, dashboards "
                                           "and report tables (None: kept forever).")
    alert_history_days: int | None = Field(
        default=400, **_DAYS, description="Alert events, and alert states resolved longer ago than this.")
    retention_schedule: str = Field(
        default="40 4 * * *", description="Cron (UTC) of the daily retention run.")

    @field_validator("landing_days", "feedback_landing_days", "span_content_days", "spans_days",
                     "llm_check_spans_days", "quarantine_days", "feedback_days", "aggregates_days",
                     "alert_history_days", mode="before")
    @classmethod
    def _forever(cls, value: Any) -> Any:
        # TOML and environment variables cannot say None; these words can.
        if isinstance(value, str) and value.strip().lower() in ("forever", "never", "none", "null"):
            return None
        return value

    @model_validator(mode="after")
    def _content_before_rows(self) -> GovernanceSettings:
        if (self.span_content_days is not None and self.spans_days is not None
                and self.span_content_days > self.spans_days):
            raise ValueError(f"governance.span_content_days ({self.span_content_days}) must not exceed "
                             f"governance.spans_days ({self.spans_days}): content cannot outlive its spans")
        if len(self.retention_schedule.split()) != 5:
            raise ValueError(f"governance.retention_schedule {self.retention_schedule!r} must be a five-field "
                             "cron expression, e.g. '40 4 * * *'")
        return self
