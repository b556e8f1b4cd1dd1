"""Dagster assets for costs: priced_spans, hourly_costs, daily_costs, budget_breaches, cost_anomalies and
cost_summary, plus the unpriced-share check. The work lives in `aiobs_pipeline.costs`."""

from datetime import timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)

from aiobs_pipeline import costs
from aiobs_pipeline.costs.aggregate import HOURLY_COLUMNS, HOURLY_INPUT_COLUMNS, empty
from aiobs_pipeline.costs.anomalies import ANOMALY_COLUMNS
from aiobs_pipeline.costs.budgets import BREACH_COLUMNS, BREACH_INPUT_COLUMNS
from aiobs_pipeline.costs.pricing import PRICED_SPAN_INPUT_COLUMNS
from aiobs_pipeline.defs.common import WAREHOUSE_POOL, hours_between
from aiobs_pipeline.defs.jobs import DAILY, HOURLY
from aiobs_pipeline.defs.partitions import daily_partitions, hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings

GROUP = "costs"


def _hours(context: AssetExecutionContext) -> list[pd.Timestamp]:
    window = context.partition_time_window
    return [pd.Timestamp(hour).tz_convert("UTC") for hour in hours_between(window.start, window.end)]


def _in_hour(frame: pd.DataFrame, column: str, hour: pd.Timestamp) -> pd.DataFrame:
    stamps = pd.to_datetime(frame[column], utc=True)
    return frame[stamps == hour]


def _md(frame: pd.DataFrame, n: int = 10) -> MetadataValue:
    return MetadataValue.md(costs.to_markdown(frame, n) if len(frame) else "_none_")


@asset(
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=HOURLY,
    io_manager_key="warehouse", metadata={"partition_expr": "export_hour"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    # Message content stays in spans: loading and writing it again took most of this step's time.
    ins={"spans": AssetIn(metadata={"columns": list(PRICED_SPAN_INPUT_COLUMNS)})},
    description="Every span with its cost (genai-prices + overrides), price source and billable flag; all span "
                "columns but the message content (input/output messages, output text, documents).",
    check_specs=[AssetCheckSpec("unpriced_share", asset="priced_spans",
                                description="Share of billable calls without a price stays under the setting.")],
)
def priced_spans(context: AssetExecutionContext, aiobs: AiobsSettings, spans: pd.DataFrame):
    """Price the spans of each export hour in the run."""
    settings = aiobs.get().costs
    priced = costs.price_spans(spans, settings)
    summary = costs.pricing_summary(priced, settings)
    share = summary.get("unpriced_share") or 0.0
    unpriced_models = summary.get("unpriced_models") or []
    yield Output(priced, metadata={
        "dagster/row_count": len(priced),
        "cost_usd": float(priced["cost_usd"].sum()),
        "unpriced_share": float(share),
        "calls_by_status": MetadataValue.json(summary.get("calls_by_status", {})),
        "unpriced_models": MetadataValue.json(unpriced_models),
        "cost_mismatches": int(summary.get("cost_mismatches", 0) or 0),
        "genai_prices_version": str(summary.get("genai_prices_version")),
    })
    yield AssetCheckResult(
        check_name="unpriced_share", passed=share <= settings.unpriced_share_warning,
        severity=AssetCheckSeverity.WARN,
        description=f"{share:.1%} of billable calls unpriced (limit {settings.unpriced_share_warning:.1%})",
        metadata={"unpriced_share": float(share), "unpriced_models": MetadataValue.json(unpriced_models)},
    )


@asset(
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=HOURLY,
    io_manager_key="warehouse", metadata={"partition_expr": "hour"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    ins={"priced_spans": AssetIn(metadata={"columns": list(HOURLY_INPUT_COLUMNS)})},
    description="Cost, tokens, calls and errors per hour by user, feature, endpoint, model and prompt version.",
)
def hourly_costs(priced_spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Aggregate billable spans by export hour and the cost dimensions."""
    hourly = costs.hourly_costs(priced_spans)
    by_user = hourly.groupby("user_id", as_index=False)["cost_usd"].sum().sort_values("cost_usd", ascending=False)
    return Output(hourly, metadata={
        "dagster/row_count": len(hourly), "cost_usd": float(hourly["cost_usd"].sum()),
        "calls": int(hourly["calls"].sum()), "top_users": _md(by_user),
    })


@asset(
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    description="The 24 hourly_costs partitions of a UTC day rolled up by the same dimensions.",
)
def daily_costs(hourly_costs: pd.DataFrame) -> Output[pd.DataFrame]:
    """Roll hourly costs up to days (the hourly-to-daily mapping hands in all 24 hours)."""
    daily = costs.daily_costs(hourly_costs)
    return Output(daily, metadata={
        "dagster/row_count": len(daily), "cost_usd": float(daily["cost_usd"].sum()),
        "by_feature": _md(daily.groupby("feature", as_index=False)["cost_usd"].sum()
                          .sort_values("cost_usd", ascending=False)),
    })


@asset(
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=HOURLY,
    io_manager_key="warehouse", metadata={"partition_expr": "hour"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    # The run's hours plus the 24 before them: spend earlier in the budget day counts toward it.
    ins={"hourly_costs": AssetIn(partition_mapping=TimeWindowPartitionMapping(
        start_offset=-24, end_offset=0, allow_nonexistent_upstream_partitions=True)),
         "priced_spans": AssetIn(metadata={"columns": list(BREACH_INPUT_COLUMNS)})},
    description="Users above their daily budget and hours above the total hourly budget, with the "
                "recommended action (rate_limit_user, page_oncall) for alerting.",
)
def budget_breaches(context: AssetExecutionContext, aiobs: AiobsSettings, priced_spans: pd.DataFrame,
                    hourly_costs: pd.DataFrame) -> Output[pd.DataFrame]:
    """Judge each hour of the run against the per-user daily and the total hourly budgets."""
    settings = aiobs.get().costs
    history = hourly_costs if len(hourly_costs) else empty(HOURLY_COLUMNS)
    frames = []
    for hour in _hours(context):
        spend_before = costs.user_spend_before(history, hour, settings)
        frames.append(costs.budget_breaches(_in_hour(priced_spans, "export_hour", hour), spend_before,
                                            settings, hour=hour))
    breaches = pd.concat(frames, ignore_index=True) if frames else empty(BREACH_COLUMNS)
    return Output(breaches, metadata={
        "dagster/row_count": len(breaches), "breaches": _md(breaches[["hour", "scope", "subject", "spend_usd",
                                                                       "budget_usd", "recommended_action"]]),
    })


@asset(
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=HOURLY,
    io_manager_key="warehouse", metadata={"partition_expr": "hour"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    # The run's hours plus the 7 days before them: the baseline window of the first hour of the run.
    ins={"hourly_costs": AssetIn(partition_mapping=TimeWindowPartitionMapping(
        start_offset=-7 * 24, end_offset=0, allow_nonexistent_upstream_partitions=True))},
    description="Spend per user / feature / total against its baseline (same hour of the last 7 days, else "
                "the last 24 h median): ok, warning (>= 1.5x), critical (>= 3x), or no verdict yet.",
)
def cost_anomalies(context: AssetExecutionContext, aiobs: AiobsSettings,
                   hourly_costs: pd.DataFrame) -> Output[pd.DataFrame]:
    """Compare each hour of the run with the hours before it (including earlier hours of this run)."""
    settings = aiobs.get().costs
    everything = hourly_costs if len(hourly_costs) else empty(HOURLY_COLUMNS)
    frames = [costs.cost_anomalies(_in_hour(hourly_costs, "hour", hour), everything, settings, hour=hour)
              for hour in _hours(context)]
    anomalies = pd.concat(frames, ignore_index=True) if frames else empty(ANOMALY_COLUMNS)
    flagged = costs.alerts(anomalies)
    return Output(anomalies, metadata={
        "dagster/row_count": len(anomalies), "warnings": int((anomalies["status"] == "warning").sum()),
        "critical": int((anomalies["status"] == "critical").sum()), "alerts": _md(flagged, 20),
    })


@asset(
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
    ins={"month": AssetIn("daily_costs", partition_mapping=TimeWindowPartitionMapping(
        start_offset=-31, end_offset=0, allow_nonexistent_upstream_partitions=True))},
    description="Month to date per day: spend, projected month, cost per active user; top spenders, "
                "features and models in the metadata.",
)
def cost_summary(context: AssetExecutionContext, month: pd.DataFrame) -> Output[pd.DataFrame]:
    """Summarise the month so far for each day of the run."""
    rows, last = [], None
    for day in pd.date_range(context.partition_time_window.start, context.partition_time_window.end
                             - timedelta(days=1), freq="D"):
        last = costs.cost_summary(month, day.tz_localize(None))
        rows.append({key: last[key] for key in (
            "day", "month_to_date_usd", "projected_month_usd", "active_users", "cost_per_active_user_usd",
            "calls", "unpriced_calls", "projection_method")})
    summary = pd.DataFrame(rows)
    summary["day"] = pd.to_datetime(summary["day"])
    metadata: dict[str, object] = {"dagster/row_count": len(summary)}
    if last is not None:
        metadata.update({
            "month_to_date_usd": float(last["month_to_date_usd"]),
            "projected_month_usd": float(last["projected_month_usd"]),
            "projection_method": str(last["projection_method"]),
            "top_spenders": _md(last["top_spenders"]), "cost_by_feature": _md(last["cost_by_feature"]),
            "cost_by_model": _md(last["cost_by_model"]), "cost_trend": _md(last["cost_trend"], 31),
        })
    return Output(summary, metadata=metadata)


defs = Definitions(assets=[priced_spans, hourly_costs, budget_breaches, cost_anomalies, daily_costs, cost_summary])
