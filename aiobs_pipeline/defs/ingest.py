"""Dagster assets for ingest: `spans`, `quarantined_spans` and `ingest_audit`, their GX check, the hourly
schedule and the landing sensor. The work itself lives in `aiobs_pipeline.ingest` and `quality`."""


import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
    multi_asset,
    sensor,
)

from aiobs_pipeline.defs.common import WAREHOUSE_POOL, concat_parts, hours_between, markdown_preview
from aiobs_pipeline.defs.jobs import HOURLY, hourly_job
from aiobs_pipeline.defs.partitions import hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.ingest.files import is_landing_file
from aiobs_pipeline.ingest.layout import objects_by_hour, parse_layout
from aiobs_pipeline.ingest.masking import masker_from_settings
from aiobs_pipeline.ingest.partition import ingest_partition
from aiobs_pipeline.ingest.storage import QUICK_RETRY, StorageError, StoreObject, open_root
from aiobs_pipeline.schema import SCHEMA_VERSION

PARTITION_EXPR = {"partition_expr": "export_hour"}


@multi_asset(
    outs={
        "spans": AssetOut(
            description="Canonical LLM spans of every export format, one row per span, by export hour.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY,
        ),
        "quarantined_spans": AssetOut(
            description="Records and spans that could not be ingested, with file, line, raw text and reason.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY,
        ),
        "ingest_audit": AssetOut(
            description="Per export hour and file: format, records read, spans found/written/quarantined, late.",
            io_manager_key="warehouse", metadata=PARTITION_EXPR, kinds={"pandas"}, tags=HOURLY,
        ),
    },
    check_specs=[AssetCheckSpec(
        "spans_valid", asset="spans", blocking=True,
        description="Great Expectations suite built from schema.py: uniqueness, nulls, ranges, allowed values, "
                    "row count equal to the audit's spans written.",
    )],
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="ingest",
    pool=WAREHOUSE_POOL,
)
def ingest_export_hours(context: AssetExecutionContext, aiobs: AiobsSettings):
    """Read the landing files of each export hour in the run's range into the three ingest tables."""
    settings = aiobs.get()
    window = context.partition_time_window
    spans_parts, quarantine_parts, audit_parts, unreadable = [], [], [], []
    masker = masker_from_settings(settings.ingest)
    masked: Counter | None = None if masker is None else Counter({name: 0 for name in masker.names})
    for hour in hours_between(window.start, window.end):
        result = ingest_partition(settings.landing_root, hour, fast_path=settings.ingest.fast_path, masker=masker,
                                  layout=settings.ingest.landing_layout)
        if masked is not None and result.pii_masked:
            masked.update(result.pii_masked)
        spans_parts.append(result.spans)
        quarantine_parts.append(result.quarantined)
        audit_parts.append(result.audit)
        for name in result.unreadable_files:
            context.log.error(f"landing file {name} could not be read at all; see quarantined_spans")
            unreadable.append(name)
        context.log.info(
            f"{hour:%Y-%m-%d %H}:00 {len(result.spans)} spans written, {len(result.quarantined)} quarantined "
            f"from {len(result.audit)} files"
        )
    spans = concat_parts(spans_parts)
    quarantined = concat_parts(quarantine_parts)
    audit = concat_parts(audit_parts)

    identity_ok = bool((audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all())
    reasons = quarantined["reason"].value_counts().rename_axis("reason").reset_index(name="count")
    common = {"partitions": f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC",
              "schema_version": SCHEMA_VERSION, **_masking_metadata(masked)}
    yield Output(spans, output_name="spans", metadata={
        **common,
        "dagster/row_count": len(spans),
        "spans_by_kind": MetadataValue.md(markdown_preview(
            spans["kind"].value_counts().rename_axis("kind").reset_index(name="spans"))),
        "late_spans": int(audit["late_spans"].sum()) if len(audit) else 0,
        "preview": MetadataValue.md(markdown_preview(
            spans[["start_time", "kind", "name", "model", "user_id", "input_tokens", "output_tokens"]], 10)),
    })
    yield Output(quarantined, output_name="quarantined_spans", metadata={
        **common,
        "dagster/row_count": len(quarantined),
        "by_reason": MetadataValue.md(markdown_preview(reasons)),
        "unreadable_files": MetadataValue.json(unreadable),
        "preview": MetadataValue.md(markdown_preview(quarantined[["source_file", "source_line", "reason", "detail"]], 10)),
    })
    yield Output(audit, output_name="ingest_audit", metadata={
        **common,
        "dagster/row_count": len(audit),
        "files": len(audit),
        "spans_found": int(audit["spans_found"].sum()) if len(audit) else 0,
        "spans_written": int(audit["spans_written"].sum()) if len(audit) else 0,
        "spans_quarantined": int(audit["spans_quarantined"].sum()) if len(audit) else 0,
        "identity_holds": identity_ok,
        "per_file": MetadataValue.md(markdown_preview(audit.drop(columns=["schema_version"]), 30)),
    })
    yield spans_check(spans, audit)


def _masking_metadata(masked: Counter | None) -> dict[str, object]:
    """Whether PII masking was on, and values masked per pattern over the run (counts only, never values)."""
    if masked is None:
        return {"pii_masking": "off"}
    table = pd.DataFrame(sorted(masked.items()), columns=["pattern", "values_masked"])
    return {"pii_masking": "on", "pii_masked": int(sum(masked.values())),
            "pii_masked_by_pattern": MetadataValue.md(markdown_preview(table, 50))}


def spans_check(spans: pd.DataFrame, audit: pd.DataFrame) -> AssetCheckResult:
    """Run the Great Expectations suite on the spans of this run and report it as the spans_valid check."""
    from aiobs_pipeline.quality.expectations import validate_spans  # noqa: PLC0415 - GX imports slowly

    expected = int(audit["spans_written"].sum()) if len(audit) else 0
    validation = validate_spans(spans, expected_row_count=expected)
    return AssetCheckResult(
        check_name="spans_valid", asset_key="spans", passed=validation.success,
        # Warning-level expectations (null rates) fail the check without blocking downstream assets.
        severity=AssetCheckSeverity(validation.severity or "ERROR"),
        description=validation.summary(),
        metadata={"report": MetadataValue.md(validation.to_markdown()),
                  "validation": MetadataValue.json(validation.to_metadata())},
    )


hourly_ingest_schedule = build_schedule_from_partitioned_job(
    hourly_job, minute_of_hour=15, name="hourly_ingest_schedule",
    description="Run the hourly pipeline on the previous export hour, 15 minutes after it closes.",
)


def file_set_hash(files: list[StoreObject]) -> str:
    """A stable hash of an hour's objects: (key, size, ETag or modification time) of each."""
    digest = hashlib.sha256()
    for obj in sorted(files, key=lambda o: (o.store.root_display, o.key)):
        digest.update(f"{obj.store.root_display}\0{obj.key}\0{obj.size}\0{obj.version()}\n".encode())
    return digest.hexdigest()[:16]


@sensor(job=hourly_job, minimum_interval_seconds=60,
        description="Starts the hourly run of an export hour when its landing or feedback objects are new "
                    "or changed (local folders or object stores).")
def landing_sensor(context: SensorEvaluationContext, aiobs: AiobsSettings):
    """Request one run per recent export hour whose object set is new or changed (run key = hour + hash)."""
    settings = aiobs.get()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = max(
        now - timedelta(hours=settings.ingest.sensor_lookback_hours),
        datetime.combine(settings.ingest.partitions_start, datetime.min.time(), tzinfo=UTC),
    )
    # Only closed hours: the open hour is not a partition yet (Dagster would reject the request); its files
    # are picked up at the first tick after it closes. One listing per root covers the whole lookback.
    by_hour: dict[datetime, list[StoreObject]] = {}
    roots = ((settings.landing_root, settings.ingest.landing_layout),
             (settings.feedback_root, settings.ingest.feedback_layout_or_default))
    try:
        for root, layout in roots:
            for hour, objects in objects_by_hour(open_root(root, QUICK_RETRY), parse_layout(layout), first, now).items():
                by_hour.setdefault(hour, []).extend(o for o in objects if is_landing_file(o))
    except StorageError as exc:
        return SkipReason(f"could not list the landing objects: {exc}")
    requests = []
    for hour, objects in sorted(by_hour.items()):
        if not objects:
            continue
        key = hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())
        requests.append(RunRequest(run_key=f"{key}:{file_set_hash(objects)}", partition_key=key,
                                   tags={"aiobs/trigger": "landing_sensor"}))
    if not requests:
        return SkipReason(f"no landing files in the last {settings.ingest.sensor_lookback_hours} hours "
                          f"under {open_root(settings.landing_root)}")
    return requests


defs = Definitions(
    assets=[ingest_export_hours],
    jobs=[hourly_job],
    schedules=[hourly_ingest_schedule],
    sensors=[landing_sensor],
)
