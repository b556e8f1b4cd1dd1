"""Dagster assets for governance: the `retention` asset that enforces the retention periods, and its daily
schedule. The work lives in `aiobs_pipeline.governance.retention`; removals are appended to `retention_log`."""

from datetime import UTC, datetime

from dagster import (
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

from aiobs_pipeline.defs.common import WAREHOUSE_POOL
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.governance.retention import enforce_retention, markdown, record_retention
from aiobs_pipeline.governance.store import warehouse_session
from aiobs_pipeline.settings import get_settings

GROUP = "governance"


@asset(
    group_name=GROUP, pool=WAREHOUSE_POOL, kinds={"sql"},
    description="Deletes warehouse rows, landing folders and alert history past their retention periods "
                "([governance] settings) and nulls old message content; each run's removals are appended to "
                "the retention_log table.",
)
def retention(context: AssetExecutionContext, aiobs: AiobsSettings) -> MaterializeResult:
    """Enforce the retention periods now and report what was removed."""
    settings = aiobs.get()
    now = datetime.now(UTC)
    with warehouse_session(settings) as session:
        records = enforce_retention(settings, session, now)
        record_retention(session, records, now, context.run_id)
    for record in records:
        if record.rows or record.files:
            context.log.info(f"retention: {record.target} {record.action}: {record.rows} rows, {record.files} "
                             f"files ({record.detail})")
    return MaterializeResult(metadata={
        "removed": MetadataValue.md(markdown(records)),
        "rows_deleted": sum(r.rows for r in records if r.action != "null_content"),
        "rows_content_nulled": sum(r.rows for r in records if r.action == "null_content"),
        "files_deleted": sum(r.files for r in records),
        "bytes_deleted": sum(r.bytes for r in records),
        "run_at": now.isoformat(),
    })


retention_job = define_asset_job("retention_job", selection=[retention],
                                 description="Enforce the data retention periods.")
retention_schedule = ScheduleDefinition(
    name="retention_schedule", job=retention_job, cron_schedule=get_settings().governance.retention_schedule,
    execution_timezone="UTC", description="Daily retention run (governance.retention_schedule).",
)

defs = Definitions(assets=[retention], jobs=[retention_job], schedules=[retention_schedule])
