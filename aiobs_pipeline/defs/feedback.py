"""Dagster assets for feedback: feedback_events (+ quarantine and audit, with a GX check) per landing hour,
and per-response satisfaction and satisfaction metrics per day. The work lives in `aiobs_pipeline.feedback`.

Late feedback: a day's `satisfaction_scores` reads the feedback of that day and of the next one
(LATE_FEEDBACK_DAYS), joined to the day's responses by span id, so feedback given up to a day after its
answer counts. Re-materialising a day (a backfill) recomputes it from everything received by then.
"""

from datetime import timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)

from aiobs_pipeline.defs.common import WAREHOUSE_POOL, concat_parts, hours_between, markdown_preview
from aiobs_pipeline.defs.jobs import DAILY, HOURLY
from aiobs_pipeline.defs.partitions import daily_partitions, hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.feedback import (
    ingest_feedback_partition,
    join_to_responses,
    satisfaction_metrics,
    satisfaction_scores,
    week_over_week,
)

GROUP = "feedback"
LATE_FEEDBACK_DAYS = 1
PARTITION_EXPR = {"partition_expr": "export_hour"}


@multi_asset(
    outs={
        "feedback_events": AssetOut(
            description="User feedback events (thumbs, ratings, reports, regenerate, edit, copy, abandon), "
                        "validated and deduplicated, by feedback landing hour.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY),
        "quarantined_feedback": AssetOut(
            description="Feedback records that could not be used, with file, line, raw text and reason.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY),
        "feedback_audit": AssetOut(
            description="Per feedback hour and file: records read, events found / written / quarantined.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY),
    },
    check_specs=[AssetCheckSpec("feedback_valid", asset="feedback_events", blocking=True,
                                description="Great Expectations suite built from schema.FEEDBACK_COLUMNS.")],
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP,
    pool=WAREHOUSE_POOL,
)
def ingest_feedback_hours(context: AssetExecutionContext, aiobs: AiobsSettings):
    """Read the feedback landing files of each hour in the run's range."""
    from aiobs_pipeline.quality.expectations import validate_feedback  # noqa: PLC0415 - GX imports slowly

    settings = aiobs.get()
    window = context.partition_time_window
    results = [ingest_feedback_partition(settings.feedback_root, hour, settings.feedback,
                                         layout=settings.ingest.feedback_layout_or_default)
               for hour in hours_between(window.start, window.end)]
    events = concat_parts([r.events for r in results])
    quarantined = concat_parts([r.quarantined for r in results])
    audit = concat_parts([r.audit for r in results])
    reasons = (quarantined["reason"].value_counts().rename_axis("reason").reset_index(name="count")
               if len(quarantined) else pd.DataFrame())
    yield Output(events, output_name="feedback_events", metadata={
        "dagster/row_count": len(events),
        "by_type": MetadataValue.md(markdown_preview(
            events["event_type"].value_counts().rename_axis("event_type").reset_index(name="events"))
            if len(events) else "_none_"),
    })
    yield Output(quarantined, output_name="quarantined_feedback", metadata={
        "dagster/row_count": len(quarantined), "by_reason": MetadataValue.md(markdown_preview(reasons))})
    yield Output(audit, output_name="feedback_audit", metadata={"dagster/row_count": len(audit)})
    written = int(audit["events_written"].sum()) if len(audit) and "events_written" in audit else len(events)
    validation = validate_feedback(events, expected_row_count=written)
    yield AssetCheckResult(
        check_name="feedback_valid", asset_key="feedback_events", passed=validation.success,
        severity=AssetCheckSeverity(validation.severity or "ERROR"), description=validation.summary(),
        metadata={"report": MetadataValue.md(validation.to_markdown())},
    )


@asset(
    name="satisfaction_scores",
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    ins={
        "feedback_events": AssetIn(partition_mapping=TimeWindowPartitionMapping(
            start_offset=0, end_offset=LATE_FEEDBACK_DAYS, allow_nonexistent_upstream_partitions=True)),
        "spans": AssetIn(),
    },
    description="One row per response of the day with feedback: the brief's satisfaction score (0-1) and the "
                "events behind it; feedback up to a day late counts.",
)
def satisfaction_scores_daily(context: AssetExecutionContext, aiobs: AiobsSettings,
                              feedback_events: pd.DataFrame, spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Score each response of the run's days from its feedback events."""
    settings = aiobs.get().feedback
    joined = join_to_responses(feedback_events, spans)
    found = joined[joined["response_found"]]
    scores = satisfaction_scores(found, settings)
    scores["day"] = pd.to_datetime(scores["response_hour"], utc=True).dt.tz_localize(None).dt.floor("D")
    window = context.partition_time_window
    start, end = pd.Timestamp(window.start).tz_localize(None), pd.Timestamp(window.end).tz_localize(None)
    scores = scores[(scores["day"] >= start) & (scores["day"] < end)].reset_index(drop=True)
    unmatched = int((~joined["response_found"]).sum())
    return Output(scores, metadata={
        "dagster/row_count": len(scores),
        "mean_satisfaction": float(scores["satisfaction"].mean()) if len(scores) else None,
        "events_for_other_days_or_unknown_responses": unmatched,
    })


@asset(
    name="satisfaction_metrics",
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    ins={"scores": AssetIn(key="satisfaction_scores", partition_mapping=TimeWindowPartitionMapping(
        start_offset=-7, end_offset=0, allow_nonexistent_upstream_partitions=True))},
    description="Thumbs-up / thumbs-down / regeneration rates and average satisfaction per day by feature, "
                "model and prompt version (and per hour), with target status and week-over-week change.",
)
def satisfaction_metrics_daily(context: AssetExecutionContext, aiobs: AiobsSettings,
                               scores: pd.DataFrame) -> Output[pd.DataFrame]:
    """Aggregate the day's per-response satisfaction and compare it with the same day a week before."""
    settings = aiobs.get().feedback
    frames = []
    window = context.partition_time_window
    for day in pd.date_range(window.start, window.end - timedelta(days=1), freq="D"):
        day = day.tz_localize(None)
        today = scores[scores["day"] == day]
        last_week = scores[scores["day"] == day - timedelta(days=7)]
        keys = ["feature", "model", "prompt_version"]
        daily = satisfaction_metrics(today, keys, settings)
        wow = week_over_week(daily, satisfaction_metrics(last_week, keys, settings), keys)
        change_columns = [c for c in wow.columns if c.endswith("_change") or c == "comparable"]
        daily = daily.merge(wow[[*keys, *change_columns]], on=keys, how="left")
        daily["grain"] = "day"
        hourly = satisfaction_metrics(today, ["response_hour"], settings)
        hourly["grain"] = "hour"
        frame = pd.concat([daily, hourly], ignore_index=True)
        frame["day"] = day
        frames.append(frame)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"day": pd.Series(dtype="datetime64[ns]")})
    shown = metrics[metrics["grain"] == "day"] if "grain" in metrics else metrics
    return Output(metrics, metadata={
        "dagster/row_count": len(metrics),
        "by_feature": MetadataValue.md(markdown_preview(shown.drop(columns=[c for c in shown.columns if c.endswith("_status")
                                                                     or c == "grain"], errors="ignore"), 15)),
    })


defs = Definitions(assets=[ingest_feedback_hours, satisfaction_scores_daily, satisfaction_metrics_daily])
