"""Retention: delete, or strip the content of, stored data older than its configured period.

Given the settings' `governance` periods and "now", `enforce_retention` works through
* warehouse tables, by their partition column (`export_hour`, `hour`, `day` or `month`): a row goes when its
  whole partition ended before the cutoff (now - period), so a day or month is never cut in half;
* message content in span and feedback tables (`span_content_days`): content columns are set to null, ids,
  tokens, costs and latencies stay;
* the landing folders of traces and feedback (ROOT/YYYY/MM/DD/HH): whole hour folders, with their files; on
  an object-store root, or under another `ingest.landing_layout`, the objects whose export hours (day, for
  day files) all ended before the cutoff, deleted through `ingest.storage` (`delete_old_objects`);
* the alert state store: alert events, resolved alerts and ended silences;
and returns one `RetentionRecord` per table, folder or store saying what it removed (rows, files, bytes) and
the cutoff; `record_retention` appends them to the `retention_log` table. Works on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from aiobs_pipeline.governance.settings import GovernanceSettings
from aiobs_pipeline.governance.store import WarehouseSession
from aiobs_pipeline.schema import SPAN_CONTENT_COLUMNS
from aiobs_pipeline.warehouse.tables import quote_ident

RETENTION_LOG = "retention_log"
# ingest.layout.DEFAULT_LAYOUT, the layout whose hour folders delete_old_landing removes whole.
DEFAULT_LANDING_LAYOUT = "%Y/%m/%d/%H"
FORGET_AUDIT = "forget_audit"

# Which period governs each table. Tables not named here (our own logs among them) are never touched.
TABLE_PERIODS: dict[str, str] = {
    **dict.fromkeys(("spans", "priced_spans", "ingest_audit", "confidence_scores", "citation_checks",
                     "grounding_checks", "consistency_checks", "fact_checks", "hallucination_scores",
                     "flagged_responses"), "spans_days"),
    "llm_check_spans": "llm_check_spans_days",
    **dict.fromkeys(("quarantined_spans", "quarantined_feedback"), "quarantine_days"),
    **dict.fromkeys(("feedback_events", "feedback_audit", "satisfaction_scores"), "feedback_days"),
    **dict.fromkeys(("hourly_costs", "daily_costs", "budget_breaches", "cost_anomalies", "cost_summary",
                     "satisfaction_metrics", "prompt_version_scorecard", "eval_dataset", "technical_dashboard",
                     "business_dashboard", "monthly_report"), "aggregates_days"),
}
# Columns holding what people wrote or read (messages, answers, documents, comments, quoted sentences).
CONTENT_COLUMNS: tuple[str, ...] = (
    *SPAN_CONTENT_COLUMNS, "comment", "original_text", "edited_text",
    "unsupported_sentences", "grounding_evidence", "confidence_evidence", "evidence",
)
# What a retrieved document keeps after span_content_days: its text and anything else in it go.
DOCUMENT_REFS: tuple[str, ...] = ("id", "score", "rank")
# Tables whose content columns are nulled after span_content_days.
CONTENT_TABLES: tuple[str, ...] = (
    "spans", "priced_spans", "llm_check_spans", "flagged_responses", "feedback_events", "confidence_scores",
    "grounding_checks", "consistency_checks", "fact_checks",
)
# Partition column candidates, in order, and the period each one's partitions span.
TIME_COLUMNS: tuple[tuple[str, str], ...] = (("export_hour", "hour"), ("hour", "hour"), ("day", "day"),
                                            ("month", "month"))
_HOUR_PARTS = (re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"))


@dataclass
class RetentionRecord:
    """What one retention step removed from one table, folder or store."""

    target: str
    action: str  # delete_rows, null_content, delete_folders, delete_objects, delete_alert_history
    setting: str
    cutoff: datetime | None
    rows: int = 0
    files: int = 0
    bytes: int = 0
    detail: str = ""


def cutoff_for(now: datetime, days: int | None) -> datetime | None:
    """now - days, floored to the hour, in UTC; None when the period is None (keep forever)."""
    if days is None:
        return None
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)


def partition_bound(cutoff: datetime, grain: str) -> datetime:
    """The first partition start that is kept: partitions starting before it ended at or before the cutoff."""
    if grain == "day":
        return cutoff.replace(hour=0)
    if grain == "month":
        return cutoff.replace(day=1, hour=0)
    return cutoff


def time_column(columns: dict[str, Any]) -> tuple[str, str] | None:
    """(partition column, grain) of a table, or None when it has none of the known ones."""
    for name, grain in TIME_COLUMNS:
        if name in columns:
            return name, grain
    return None


def _bound_param(kind: Any, bound: datetime) -> Any:
    if kind == "date":
        return bound.date()
    if kind == "naive_timestamp":
        return bound.replace(tzinfo=None)
    return bound


def delete_old_rows(session: WarehouseSession, table: str, setting: str, cutoff: datetime,
                    dry_run: bool = False) -> RetentionRecord:
    """Delete a table's rows whose whole partition ended before the cutoff."""
    columns = session.columns(table)
    found = time_column(columns)
    if found is None:
        return RetentionRecord(table, "delete_rows", setting, cutoff,
                               detail="no partition column (export_hour, hour, day, month): left alone")
    column, grain = found
    bound = partition_bound(cutoff, grain)
    condition = f"{quote_ident(column)} < ?"
    params = [_bound_param(columns[column], bound)]
    if dry_run:
        rows = int(session.query(f"SELECT COUNT(*) FROM {session.name(table)} WHERE {condition}", params)[0][0])
    else:
        rows = session.execute(f"DELETE FROM {session.name(table)} WHERE {condition}", params)
    return RetentionRecord(table, "delete_rows", setting, cutoff, rows=rows,
                           detail=f"{column} < {bound.isoformat()}")


def null_old_content(session: WarehouseSession, table: str, cutoff: datetime,
                     dry_run: bool = False) -> RetentionRecord | None:
    """Null the content columns of a table's rows whose partition ended before the cutoff (None: no content)."""
    columns = session.columns(table)
    content = [c for c in CONTENT_COLUMNS if c in columns]
    found = time_column(columns)
    if not content or found is None:
        return None
    column, grain = found
    bound = partition_bound(cutoff, grain)
    # Retrieved documents keep their ids, scores and ranks (retrieval analytics outlive the texts).
    reduced = {c: _document_refs(session, c) for c in content if c == "documents"}
    nulled = [c for c in content if c not in reduced]
    has_content = " OR ".join([*(f"{quote_ident(c)} IS NOT NULL" for c in nulled),
                               *(f"{session.as_text(quote_ident(c))} IS DISTINCT FROM {session.as_text(value)}"
                                 for c, value in reduced.items())])
    condition = f"{quote_ident(column)} < ? AND ({has_content})"
    params = [_bound_param(columns[column], bound)]
    if dry_run:
        rows = int(session.query(f"SELECT COUNT(*) FROM {session.name(table)} WHERE {condition}", params)[0][0])
    else:
        assignments = ", ".join([*(f"{quote_ident(c)} = NULL" for c in nulled),
                                 *(f"{quote_ident(c)} = {value}" for c, value in reduced.items())])
        rows = session.execute(f"UPDATE {session.name(table)} SET {assignments} WHERE {condition}", params)
    done = ([f"{', '.join(nulled)} nulled"] if nulled else []) + (
        [f"{', '.join(reduced)} reduced to {', '.join(DOCUMENT_REFS)}"] if reduced else [])
    detail = ", ".join(done)
    return RetentionRecord(table, "null_content", "span_content_days", cutoff, rows=rows,
                           detail=f"{detail} where {column} < {bound.isoformat()}")


def _document_refs(session: WarehouseSession, column: str) -> str:
    """SQL for a documents column reduced to each document's DOCUMENT_REFS (null where it is not a list)."""
    col = quote_ident(column)
    refs = ", ".join(f"'{key}', d -> '{key}'" for key in DOCUMENT_REFS)
    if session.dialect == "duckdb":
        return (f"CASE WHEN json_type({col}) = 'ARRAY' THEN to_json(list_transform(from_json({col}, '[\"JSON\"]'), "
                f"lambda d: CASE WHEN json_type(d) = 'OBJECT' THEN json_object({refs}) END)) END")
    return (f"CASE WHEN jsonb_typeof({col}) = 'array' THEN (SELECT coalesce(jsonb_agg(CASE WHEN "
            f"jsonb_typeof(d) = 'object' THEN jsonb_build_object({refs}) END ORDER BY n), '[]'::jsonb) "
            f"FROM jsonb_array_elements({col}) WITH ORDINALITY AS e(d, n)) END")


def hour_folders(root: Path) -> list[tuple[datetime, Path]]:
    """The ROOT/YYYY/MM/DD/HH folders under a landing root with their hour (UTC), oldest first."""
    found: list[tuple[datetime, Path]] = []
    if not root.is_dir():
        return found

    def walk(folder: Path, depth: int, parts: list[str]) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and _HOUR_PARTS[depth].match(p.name)):
            if depth == 3:
                try:
                    hour = datetime(int(parts[0]), int(parts[1]), int(parts[2]), int(child.name), tzinfo=UTC)
                except ValueError:
                    continue  # 2025/02/30/..: not an hour folder of the layout, so not ours to delete
                found.append((hour, child))
            else:
                walk(child, depth + 1, [*parts, child.name])

    walk(root, 0, [])
    return found


def delete_old_landing(root: Path, setting: str, cutoff: datetime, dry_run: bool = False) -> RetentionRecord:
    """Delete hour folders of a landing root that ended before the cutoff, and parents left empty."""
    files = size = folders = 0
    for hour, folder in hour_folders(root):
        if hour + timedelta(hours=1) > cutoff:
            continue
        for path in folder.rglob("*"):
            if path.is_file():
                files += 1
                size += path.stat().st_size
        folders += 1
        if not dry_run:
            shutil.rmtree(folder)
            parent = folder.parent
            for _ in range(3):
                if parent == root or any(parent.iterdir()):
                    break
                parent.rmdir()
                parent = parent.parent
    return RetentionRecord(str(root), "delete_folders", setting, cutoff, files=files, bytes=size,
                           detail=f"{folders} hour folders ending at or before {cutoff.isoformat()}")


def delete_old_objects(root: Any, layout: Any, setting: str, cutoff: datetime,
                       dry_run: bool = False) -> RetentionRecord:
    """Delete the objects of a root (any store, any layout) whose export hours all ended before the cutoff.

    One listing of the whole root; objects that do not follow the layout are never touched. Folders are not
    objects on S3/GCS/Azure, so nothing else is left behind there; a local root keeps its empty folders."""
    from aiobs_pipeline.ingest.layout import parse_layout  # noqa: PLC0415
    from aiobs_pipeline.ingest.storage import open_root  # noqa: PLC0415

    store, layout = open_root(root), parse_layout(layout) if isinstance(layout, str) else layout
    doomed = []
    for obj in store.list():
        hours = layout.hours_of(obj.key)
        if hours and hours[-1] + timedelta(hours=1) <= cutoff:
            doomed.append(obj)
    if doomed and not dry_run:
        for start in range(0, len(doomed), 1000):
            store.delete([o.key for o in doomed[start:start + 1000]])
    return RetentionRecord(str(store), "delete_objects", setting, cutoff, files=len(doomed),
                           bytes=sum(o.size for o in doomed),
                           detail=f"{len(doomed)} objects of layout {layout.setting!r} whose hours ended at or "
                                  f"before {cutoff.isoformat()}")


def prune_alert_history(settings: Any, cutoff: datetime, dry_run: bool = False) -> RetentionRecord | None:
    """Delete alert events older than the cutoff, alerts resolved before it and silences that ended before it."""
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from aiobs_pipeline.alerting.settings import state_url_of  # noqa: PLC0415
    from aiobs_pipeline.alerting.state import AlertStore  # noqa: PLC0415

    url = state_url_of(settings)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).is_file()):
        return None  # no store yet: nothing to prune, and creating one here would be a side effect
    rows = 0
    with AlertStore.from_settings(settings) as store:
        with store.engine.begin() as conn:
            resolved = [r[0] for r in conn.execute(sa.select(store.state.c.key).where(
                store.state.c.status == "resolved", store.state.c.resolved_at < cutoff))]
            statements = [
                sa.delete(store.events).where(store.events.c.at < cutoff),
                sa.delete(store.events).where(store.events.c.key.in_(resolved)),
                sa.delete(store.state).where(store.state.c.key.in_(resolved)),
                sa.delete(store.silences_table).where(store.silences_table.c.until < cutoff),
            ]
            if dry_run:
                events = conn.execute(sa.select(sa.func.count()).select_from(store.events).where(
                    sa.or_(store.events.c.at < cutoff, store.events.c.key.in_(resolved)))).scalar_one()
                silences = conn.execute(sa.select(sa.func.count()).select_from(store.silences_table).where(
                    store.silences_table.c.until < cutoff)).scalar_one()
                rows = int(events) + len(resolved) + int(silences)
            else:
                for statement in statements:
                    rows += max(int(conn.execute(statement).rowcount or 0), 0)
    return RetentionRecord("alert state store", "delete_alert_history", "alert_history_days", cutoff, rows=rows,
                           detail=f"{len(resolved)} resolved alerts with their events, older events and silences")


def enforce_retention(settings: Any, session: WarehouseSession, now: datetime,
                      dry_run: bool = False) -> list[RetentionRecord]:
    """Apply every retention period of `settings.governance` and return what each step removed."""
    periods: GovernanceSettings = settings.governance
    records: list[RetentionRecord] = []
    tables = set(session.tables())
    content_cutoff = cutoff_for(now, periods.span_content_days)
    if content_cutoff is not None:
        for table in CONTENT_TABLES:
            if table in tables:
                record = null_old_content(session, table, content_cutoff, dry_run)
                if record is not None:
                    records.append(record)
    for table in sorted(tables):
        setting = TABLE_PERIODS.get(table)
        if setting is None:
            continue
        cutoff = cutoff_for(now, getattr(periods, setting))
        if cutoff is not None:
            records.append(delete_old_rows(session, table, setting, cutoff, dry_run))
    ingest = getattr(settings, "ingest", None)
    layouts = (getattr(ingest, "landing_layout", DEFAULT_LANDING_LAYOUT),
               getattr(ingest, "feedback_layout_or_default", DEFAULT_LANDING_LAYOUT))
    for root, setting, layout in ((settings.landing_root, "landing_days", layouts[0]),
                                  (settings.feedback_root, "feedback_landing_days", layouts[1])):
        cutoff = cutoff_for(now, getattr(periods, setting))
        if cutoff is None:
            continue
        if isinstance(root, Path) and layout in (DEFAULT_LANDING_LAYOUT, "aiobs"):
            records.append(delete_old_landing(Path(root), setting, cutoff, dry_run))
        else:
            records.append(delete_old_objects(root, layout, setting, cutoff, dry_run))
    cutoff = cutoff_for(now, periods.alert_history_days)
    if cutoff is not None:
        record = prune_alert_history(settings, cutoff, dry_run)
        if record is not None:
            records.append(record)
    return records


def records_frame(records: Sequence[RetentionRecord], run_at: datetime, run_id: str | None = None) -> pd.DataFrame:
    """The records as rows of the retention_log table."""
    rows = [{"run_at": run_at, "run_id": run_id or "", **asdict(r)} for r in records]
    frame = pd.DataFrame(rows, columns=["run_at", "run_id", "target", "action", "setting", "cutoff", "rows",
                                        "files", "bytes", "detail"])
    frame["run_at"] = pd.to_datetime(frame["run_at"], utc=True)
    frame["cutoff"] = pd.to_datetime(frame["cutoff"], utc=True)
    for column in ("rows", "files", "bytes"):
        frame[column] = frame[column].astype("Int64")
    return frame


def record_retention(session: WarehouseSession, records: Sequence[RetentionRecord], run_at: datetime,
                     run_id: str | None = None) -> int:
    """Append the records to the retention_log table (created on first use); return rows written."""
    return session.append(RETENTION_LOG, records_frame(records, run_at, run_id))


def markdown(records: Sequence[RetentionRecord]) -> str:
    """The records as a Markdown table (the asset's metadata)."""
    lines = ["| target | action | setting | cutoff | rows | files | bytes | detail |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        cutoff = r.cutoff.isoformat() if r.cutoff else "never"
        lines.append(f"| {r.target} | {r.action} | {r.setting} | {cutoff} | {r.rows} | {r.files} | {r.bytes} | "
                     f"{r.detail.replace('|', '/')} |")
    return "\n".join(lines) if records else "_every retention period is None: nothing is ever removed_"

