"""Dagster assets for reporting: technical_dashboard and business_dashboard (daily) and monthly_report
(monthly). Each writes a long-format warehouse table for BI tools and static files under the reports folder;
the work lives in `aiobs_pipeline.reporting`.

Quality inputs are optional: `hallucination_scores` and `satisfaction_scores` are read from the warehouse
inside the asset when those tables exist (they are not declared inputs, so the dashboards run before those
assets are deployed or materialised); without them their figures are reported as not available.
"""

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)

from aiobs_pipeline.defs.common import WAREHOUSE_POOL
from aiobs_pipeline.defs.jobs import DAILY, MONTHLY
from aiobs_pipeline.defs.partitions import daily_partitions, monthly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.reporting import business, html, monthly, technical
from aiobs_pipeline.reporting.metrics import (
    ALL,
    BUSINESS_COLUMNS,
    MONTHLY_COLUMNS,
    TECHNICAL_COLUMNS,
    frame_of,
)
from aiobs_pipeline.reporting.settings import ReportingSettings
from aiobs_pipeline.settings import Settings
from aiobs_pipeline.warehouse import WarehouseError, read_warehouse_table
from aiobs_pipeline.warehouse.tables import quote_ident

GROUP = "reporting"
DAY = timedelta(days=1)
# The business dashboard loads this many days of daily_costs and cost_summary (reporting.cost_trend_days <= 31).
TREND_WINDOW_DAYS = 31
BUSINESS_SPAN_COLUMNS = ["export_hour", "trace_id", "session_id", "kind", "status", "billable", "feature"]
OPTIONAL = (
    "hallucination_scores and satisfaction_scores are read from the warehouse when they exist (ordering deps, "
    "not inputs, so this also runs where those assets do not exist yet); without them quality and "
    "satisfaction show as not available."
)
DAY_AND_PREVIOUS = TimeWindowPartitionMapping(start_offset=-1, end_offset=0,
                                              allow_nonexistent_upstream_partitions=True)
# Ordering only (no data passes through these): in a run that also materialises the quality tables, the
# dashboards run after them; the rows themselves are read from the warehouse, or not at all.
OPTIONAL_DEPS = [AssetDep("hallucination_scores"), AssetDep("satisfaction_scores")]
OPTIONAL_DEPS_WITH_PREVIOUS_DAY = [AssetDep("hallucination_scores", partition_mapping=DAY_AND_PREVIOUS),
                                   AssetDep("satisfaction_scores", partition_mapping=DAY_AND_PREVIOUS)]


def reporting_settings(settings: Settings) -> ReportingSettings:
    """The `[reporting]` section (defaults when the settings object predates it)."""
    section = getattr(settings, "reporting", None)
    return section if isinstance(section, ReportingSettings) else ReportingSettings()


def reports_dir(settings: Settings) -> Path:
    """The absolute reports folder."""
    return settings.resolve(settings.paths.reports_dir)


def optional_table(context: AssetExecutionContext, settings: Settings, table: str, columns: Sequence[str],
                   time_column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame | None:
    """Rows of an optional warehouse table in [start, end); None when the table does not exist (yet).

    Any other failure (a missing column, a locked file) is raised: it is a fault to fix, not an absent input.
    """
    column = quote_ident(time_column)
    where = f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"
    try:
        frame = read_warehouse_table(settings, table, columns=list(columns), where=where)
    except WarehouseError as error:
        if "does not exist" not in str(error):
            raise
        context.log.info(f"{table} is not available ({error}); its figures are reported as not available")
        return None
    context.log.info(f"read {len(frame)} rows of {table} for {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    return frame


def _days(context: AssetExecutionContext) -> list[pd.Timestamp]:
    window = context.partition_time_window
    return list(pd.date_range(window.start, window.end - DAY, freq="D"))


def _window(context: AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    window = context.partition_time_window
    return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")


def _overview(frame: pd.DataFrame, columns: list[str]) -> MetadataValue:
    rows = frame[frame["dimension"] == ALL][columns]
    return MetadataValue.md(rows.to_markdown(index=False, floatfmt=".4g") if len(rows) else "_no rows_")


@asset(
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas", "html"}, pool=WAREHOUSE_POOL,
    ins={"priced_spans": AssetIn(metadata={"columns": list(technical.SPAN_INPUT_COLUMNS)})}, deps=OPTIONAL_DEPS,
    description="Latency and time-to-first-token percentiles, tokens, error and cache hit rates, cost and "
                "quality by model, endpoint and prompt version, one row per metric x dimension value, plus "
                "reports/dashboards/technical-<day>.html. " + OPTIONAL,
)
def technical_dashboard(context: AssetExecutionContext, aiobs: AiobsSettings,
                        priced_spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Compute and write the technical dashboard of each day of the run."""
    settings = aiobs.get()
    config = reporting_settings(settings)
    start, end = _window(context)
    hallucination = optional_table(context, settings, "hallucination_scores", technical.HALLUCINATION_COLUMNS,
                                   "export_hour", start, end)
    satisfaction = optional_table(context, settings, "satisfaction_scores", technical.SATISFACTION_COLUMNS,
                                  "response_hour", start, end)
    frames, paths = [], []
    for day in _days(context):
        frame = technical.technical_dashboard(priced_spans, day, config, hallucination, satisfaction)
        paths.append(html.write_text(html.dashboard_path(reports_dir(settings), config, "technical", day),
                                     html.technical_page(frame, day)))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else frame_of([], TECHNICAL_COLUMNS)
    last = frames[-1] if frames else table
    return Output(table, metadata={
        "dagster/row_count": len(table), "dashboard": MetadataValue.path(str(paths[-1])) if paths else "none",
        "files": len(paths), "hallucination_scores": "read" if hallucination is not None else "not available",
        "satisfaction_scores": "read" if satisfaction is not None else "not available",
        "overview": _overview(last, ["metric", "value", "unit", "sample_size", "note"]),
    })


@asset(
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas", "html"}, pool=WAREHOUSE_POOL,
    ins={
        # The run's days plus the day before (previous period of the support estimate).
        "priced_spans": AssetIn(metadata={"columns": BUSINESS_SPAN_COLUMNS}, partition_mapping=DAY_AND_PREVIOUS),
        # The run's days plus the cost-trend window before them (which includes the previous day).
        "daily_costs": AssetIn(partition_mapping=TimeWindowPartitionMapping(
            start_offset=-(TREND_WINDOW_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
        "cost_summary": AssetIn(partition_mapping=TimeWindowPartitionMapping(
            start_offset=-(TREND_WINDOW_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
    },
    deps=OPTIONAL_DEPS_WITH_PREVIOUS_DAY,
    description="Stakeholder metrics (satisfaction, quality score, answer accuracy, cost per user, cost trend, "
                "feature usage, monthly projection, support tickets deflected and savings) with the previous "
                "day, change, trend and target status, plus reports/dashboards/business-<day>.html. " + OPTIONAL,
)
def business_dashboard(context: AssetExecutionContext, aiobs: AiobsSettings, priced_spans: pd.DataFrame,
                       daily_costs: pd.DataFrame, cost_summary: pd.DataFrame) -> Output[pd.DataFrame]:
    """Compute and write the business dashboard of each day of the run against its previous day."""
    settings = aiobs.get()
    config = reporting_settings(settings)
    start, end = _window(context)
    hallucination = optional_table(context, settings, "hallucination_scores", technical.HALLUCINATION_COLUMNS,
                                   "export_hour", start - DAY, end)
    satisfaction = optional_table(context, settings, "satisfaction_scores", technical.SATISFACTION_COLUMNS,
                                  "response_hour", start - DAY, end)
    frames, paths = [], []
    for day in _days(context):
        frame = business.business_dashboard(day, daily_costs, cost_summary, priced_spans, config, hallucination,
                                            satisfaction)
        paths.append(html.write_text(html.dashboard_path(reports_dir(settings), config, "business", day),
                                     html.business_page(frame, day, config)))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else frame_of([], BUSINESS_COLUMNS)
    last = frames[-1] if frames else table
    return Output(table, metadata={
        "dagster/row_count": len(table), "dashboard": MetadataValue.path(str(paths[-1])) if paths else "none",
        "files": len(paths), "hallucination_scores": "read" if hallucination is not None else "not available",
        "satisfaction_scores": "read" if satisfaction is not None else "not available",
        "overview": _overview(last, ["label", "value", "previous_value", "change_pct", "trend", "target_status",
                                     "note"]),
    })


MONTH_AND_PREVIOUS = DAY_AND_PREVIOUS  # the same offsets, in units of the (monthly) downstream partitions


@asset(
    partitions_def=monthly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP,
    tags=MONTHLY, io_manager_key="warehouse", metadata={"partition_expr": "month"}, kinds={"pandas", "html"},
    pool=WAREHOUSE_POOL,
    # Each month of the run and the month before it (month-over-month change).
    ins={"business_dashboard": AssetIn(partition_mapping=MONTH_AND_PREVIOUS),
         "technical_dashboard": AssetIn(partition_mapping=MONTH_AND_PREVIOUS),
         "daily_costs": AssetIn(partition_mapping=MONTH_AND_PREVIOUS)},
    description="The monthly stakeholder report (executive summary, key metrics with month-over-month change, "
                "what improved, areas to watch, next month focus): one row per metric with its sentence, and "
                "reports/monthly/<YYYY-MM>.md and .html; the Markdown is shown here as metadata.",
)
def monthly_report(context: AssetExecutionContext, aiobs: AiobsSettings, business_dashboard: pd.DataFrame,
                   technical_dashboard: pd.DataFrame, daily_costs: pd.DataFrame) -> Output[pd.DataFrame]:
    """Build, write and show the report of each month of the run."""
    settings = aiobs.get()
    config = reporting_settings(settings)
    folder = config.monthly_dir if config.monthly_dir.is_absolute() else reports_dir(settings) / config.monthly_dir
    window = context.partition_time_window
    months = pd.date_range(pd.Timestamp(window.start).tz_localize(None), pd.Timestamp(window.end).tz_localize(None)
                           - DAY, freq="MS")
    frames, markdown, written = [], "", []
    for month in months:
        report = monthly.monthly_report(month, business_dashboard, technical_dashboard, daily_costs, config)
        markdown = monthly.render_markdown(report)
        written = [html.write_text(folder / f"{month:%Y-%m}.md", markdown),
                   html.write_text(folder / f"{month:%Y-%m}.html", monthly.render_html(report))]
        frames.append(report.rows)
        context.log.info(f"{report.title}: {report.days_covered} of {report.days_in_month} days covered")
    table = pd.concat(frames, ignore_index=True) if frames else frame_of([], MONTHLY_COLUMNS)
    metadata: dict[str, object] = {"dagster/row_count": len(table), "report": MetadataValue.md(markdown or "_none_")}
    if written:
        metadata.update({"markdown": MetadataValue.path(str(written[0])), "html": MetadataValue.path(str(written[1]))})
    return Output(table, metadata=metadata)


defs = Definitions(assets=[technical_dashboard, business_dashboard, monthly_report])
