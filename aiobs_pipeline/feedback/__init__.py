"""User feedback: reading and normalising feedback events, and satisfaction scoring (docs/feedback.md)."""

from aiobs_pipeline.feedback.events import (
    FEEDBACK_QUARANTINE_REASONS,
    FeedbackIngest,
    ingest_feedback_files,
    ingest_feedback_partition,
    join_to_responses,
    unknown_responses,
)
from aiobs_pipeline.feedback.satisfaction import satisfaction_metrics, satisfaction_scores, week_over_week
from aiobs_pipeline.feedback.settings import FeedbackSettings, SatisfactionWeights

__all__ = [
    "FEEDBACK_QUARANTINE_REASONS",
    "FeedbackIngest",
    "FeedbackSettings",
    "SatisfactionWeights",
    "ingest_feedback_files",
    "ingest_feedback_partition",
    "join_to_responses",
    "satisfaction_metrics",
    "satisfaction_scores",
    "unknown_responses",
    "week_over_week",
]
