"""Ingesting one export hour: landing layout, reading every file, row rules, dedupe, and the audit.

Owns the identity the audit promises for every partition and file:
    spans_found = spans_written + spans_quarantined + events_joined + records_ignored
where unreadable records (bad JSON, bad encoding, unknown format, a damaged gzip tail) are quarantined too,
`events_joined` counts log records (GenAI content events) merged into a span of the hour instead of becoming
rows (`otlp_logs.join_events`), and `records_ignored` plain log records that carry nothing aiobs reads.
It must not talk to Dagster or a database: it returns three DataFrames, and the Dagster layer stores them.

Where the files come from is `storage` (a local folder or an object store) and `layout` (which objects
belong to which export hour, `ingest.landing_layout`): this module asks them for an hour's files and opens
each through `files.open_binary`. For layouts filed by day, an hour keeps only the records whose start time
falls in it (`layout.Window.filter_rows`).

PII masking (`ingest.masking`, optional) happens here, on the hour's final spans and quarantined records: every
row of every reader, the native fast path's included, passes this one place before anything is stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson
import pandas as pd

from aiobs_pipeline.ingest import csv_records, detect, otlp_logs
from aiobs_pipeline.ingest.base import RawRecord, Reject, SkippedRecord, SpanEvent
from aiobs_pipeline.ingest.files import Source, UnreadableFile, is_landing_file, iter_records, open_binary
from aiobs_pipeline.ingest.layout import DEFAULT_LAYOUT, Layout, Window, objects_for_hour, parse_layout
from aiobs_pipeline.ingest.masking import Masker, counts_by_file, mask_quarantine, mask_spans
from aiobs_pipeline.ingest.storage import Store, StoreObject, open_root
from aiobs_pipeline.quality.rules import _timestamps, apply_row_rules, split_duplicates
from aiobs_pipeline.schema import (
    AUDIT_COLUMNS,
    QUARANTINE_COLUMNS,
    SCHEMA_VERSION,
    SPAN_COLUMN_NAMES,
    SPAN_COLUMNS,
    conform,
    empty_frame,
)

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)


def landing_folder(root: Path, hour: datetime) -> Path:
    """The folder holding the files of one export hour: ROOT/YYYY/MM/DD/HH (UTC)."""
    hour = hour.astimezone(UTC)
    return Path(root) / f"{hour:%Y}" / f"{hour:%m}" / f"{hour:%d}" / f"{hour:%H}"


def partition_objects(root: str | Path | Store, hour: datetime,
                      layout: str | Layout = DEFAULT_LAYOUT) -> list[StoreObject]:
    """The landing objects of one export hour under a root (local or object store), sorted by key."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    return [o for o in objects_for_hour(open_root(root), layout, hour) if is_landing_file(o)]


def partition_files(root: str | Path | Store, hour: datetime, layout: str | Layout = DEFAULT_LAYOUT) -> list[Source]:
    """The landing files of one export hour, sorted by name (the order spans are deduplicated in): local
    paths under a local root, `StoreObject`s under an object-store root."""
    return [o.local_path or o for o in partition_objects(root, hour, layout)]


def source_name(path: Source, root: str | Path | Store) -> str:
    """The `source_file` of a file: its key relative to the root."""
    if isinstance(path, StoreObject):
        return path.key
    store = open_root(root)
    try:
        return Path(path).relative_to(store.local if store.local is not None else Path(str(root))).as_posix()
    except ValueError:
        return str(path)


@dataclass
class FileRead:
    """What came out of one file before the row rules: candidate rows, rejects and counts."""

    path: Source
    source_file: str
    source_format: str | None = None
    records_read: int = 0
    rows: pd.DataFrame | None = None
    rejects: list[Reject] = field(default_factory=list)
    file_error: str | None = None
    json_encoded: bool = False
    spans_found: int = 0
    # Rows a fast path already validated, all canonical columns in canonical dtypes and order (the context
    # columns are set here); they skip the row rules. `rows` then holds the file's other rows.
    prevalidated: pd.DataFrame | None = None
    # A 64-bit hash of each pre-validated row's span id, when the fast path computed them (for the dedupe).
    span_hashes: np.ndarray | None = None
    # Log readers: content events for spans (joined by `otlp_logs.join_events`), and records counted only.
    events: list[SpanEvent] = field(default_factory=list)
    events_joined: int = 0
    records_ignored: int = 0


@dataclass
class PartitionIngest:
    """The three tables one export hour produces, plus the names of files that could not be read."""

    spans: pd.DataFrame
    quarantined: pd.DataFrame
    audit: pd.DataFrame
    unreadable_files: list[str]
    # Values masked per pattern over the hour (spans and quarantine); None when masking was off.
    pii_masked: Counter | None = None


def read_file(path: Source, source_file: str, fast_path: bool = True,
              window: Window | tuple[datetime, datetime] | None = None,
              keep_undated: bool | None = None) -> FileRead:
    """Read one landing file with the reader its bytes (Parquet) or its first readable record selects.

    `window` (start inclusive, end exclusive: a `layout.Window` or a pair) keeps only the spans starting in
    it, for file readers that hold more than one export hour (a daily LangSmith bulk export); the JSON readers
    read every record (`ingest_files` then keeps a day file's rows with `keep_window`). Rows without a
    readable start time go to the window only with `keep_undated` (default: the window's `keeps_timeless`,
    which is true in the first hour of a day only).
    """
    if keep_undated is None:
        keep_undated = getattr(window, "keeps_timeless", True)
    binary = _file_reader(path)
    if binary is not None:
        return _read_binary(binary, path, source_file, window, keep_undated)
    # --- native fast path (aiobs_pipeline/ingest/native_fast.py); imported here to avoid an import cycle ---
    if fast_path:
        from aiobs_pipeline.ingest import native_fast

        fast = native_fast.try_read(path, source_file)
        if fast is not None:
            return fast
    # --- end native fast path ---
    result = FileRead(path=path, source_file=source_file)
    reader: ModuleType | None = None
    rows: list[dict] = []
    try:
        records = iter_records(path)
        pending: list[RawRecord] = []
        for item in records:
            result.records_read += 1
            if isinstance(item, Reject):
                result.rejects.append(item)
                if item.reason == "corrupt_gzip":
                    result.records_read -= 1  # the damaged tail is not a record, but it is reported
                    result.file_error = item.detail
                continue
            if reader is None:
                reader = detect.detect_reader(item.value)
                if reader is None:
                    result.rejects.append(_unknown(item))
                    continue
                result.source_format = reader.FORMAT
            pending.append(item)
            if len(pending) >= 10_000:
                _collect(reader, pending, rows, result)
                pending = []
        if reader is not None and pending:
            _collect(reader, pending, rows, result)
    except UnreadableFile as exc:
        result.file_error = str(exc)
        result.rejects.append(Reject("unreadable_file", str(exc)))
    result.rows = pd.DataFrame(rows) if rows else None
    return result


def _file_reader(path: Source) -> ModuleType | None:
    """The file reader (detect.FILE_READERS) that claims this file by its name and first bytes, if any."""
    try:
        with open_binary(path) as stream:
            head = stream.read(detect.HEAD_BYTES)
    except (UnreadableFile, OSError, EOFError):
        head = b""  # the JSON path reports a file it cannot open; a `.parquet` name is still claimed below
    return detect.detect_file_reader(path.name, head)


def _read_binary(reader: ModuleType, path: Source, source_file: str,
                 window: tuple[datetime, datetime] | None, keep_undated: bool) -> FileRead:
    result = FileRead(path=path, source_file=source_file)
    try:
        with open_binary(path) as stream:
            read = reader.read_stream(stream, source_file, window, keep_undated)
    except UnreadableFile as exc:
        result.file_error = str(exc)
        # The quarantine prefixes every detail with the file name already.
        result.rejects.append(Reject("unreadable_file", str(exc).removeprefix(f"{source_file}: ")))
        return result
    result.rows, result.rejects, result.file_error = read.rows, read.rejects, read.file_error
    result.records_read = read.records_read
    if read.rows is not None or not read.rejects or read.records_read:
        result.source_format = reader.FORMAT  # null in the audit when the file is not of the format at all
    return result


def _unknown(item: RawRecord) -> Reject:
    keys = ", ".join(sorted(item.value)[:8]) if isinstance(item.value, dict) else type(item.value).__name__
    return Reject("unknown_format", f"record {item.number}: matches no supported export format (keys: {keys})",
                  item.number, item.text)


def _collect(reader: ModuleType, records: Iterable[RawRecord], rows: list[dict], result: FileRead) -> None:
    for out in reader.read(records):
        if isinstance(out, Reject):
            out.source_format = out.source_format or reader.FORMAT
            result.rejects.append(out)
        elif isinstance(out, SpanEvent):
            result.events.append(out)
        elif isinstance(out, SkippedRecord):
            result.records_ignored += 1
        else:
            rows.append(out)


def ingest_files(files: Iterable[Source], export_hour: datetime, landing_root: str | Path | Store,
                 fast_path: bool = True, masker: Masker | None = None,
                 window: Window | tuple[datetime, datetime] | None = None,
                 keep_undated: bool | None = None) -> PartitionIngest:
    """Read, validate and deduplicate the given files as the export hour `export_hour`; mask PII if asked.

    With a `layout.Window` that filters rows (day files), only records starting in the hour are kept, and
    file readers get it to read less; a Window that does not filter (hourly layouts) reaches no reader, so
    late spans are kept. A plain (start, end) pair and `keep_undated` are handed to every file reader."""
    export_hour = pd.Timestamp(export_hour).tz_convert("UTC") if pd.Timestamp(export_hour).tzinfo else \
        pd.Timestamp(export_hour).tz_localize("UTC")
    reads: list[FileRead] = []
    pushdown = None if isinstance(window, Window) and not window.filter_rows else window
    for path in files:
        source_file = source_name(path, landing_root)
        read = read_file(path if isinstance(path, StoreObject) else Path(path), source_file,
                         fast_path=fast_path, window=pushdown, keep_undated=keep_undated)
        if read.file_error:
            log.warning("landing file %s could not be read in full: %s", source_file, read.file_error)
        reads.append(read)
    _postprocess_by_format(reads)
    if isinstance(window, Window) and window.filter_rows:
        for read in reads:
            keep_window(read, window)
    for read in reads:
        # Counted before the row rules, so the audit identity found = written + quarantined is a real check.
        read.spans_found = (0 if read.rows is None else len(read.rows)) + len(read.rejects) + (
            0 if read.prevalidated is None else len(read.prevalidated)) + len(read.events) + read.records_ignored
    _join_events(reads, export_hour)

    valid_parts: list[pd.DataFrame] = []
    # The span-id hashes of each valid part, None for a part without them.
    hash_parts: list[np.ndarray | None] = []
    quarantine_parts: list[pd.DataFrame] = []
    for read in reads:
        valid = None
        hashes = None
        if read.rows is not None and len(read.rows):
            rows = read.rows
            rows["source_file"] = read.source_file
            rows["source_format"] = read.source_format
            rows["export_hour"] = export_hour
            rows["schema_version"] = SCHEMA_VERSION
            checked = apply_row_rules(rows, json_encoded=read.json_encoded)
            valid = checked.valid
            if len(checked.quarantined):
                quarantine_parts.append(_with_raw(checked.quarantined, read.path))
        if read.prevalidated is not None and len(read.prevalidated):
            pre = read.prevalidated
            pre["source_format"] = read.source_format
            pre["source_file"] = read.source_file
            pre["export_hour"] = pd.Series(export_hour, index=pre.index, dtype="datetime64[ns, UTC]")
            pre["schema_version"] = pd.Series(SCHEMA_VERSION, index=pre.index, dtype="Int64")
            if list(pre.columns) != list(SPAN_COLUMN_NAMES):
                pre = pre[list(SPAN_COLUMN_NAMES)]  # a copy of the whole frame: fast paths give this order
            if valid is not None and len(valid):
                from aiobs_pipeline.ingest.native_fast import merge_in_line_order

                # Both parts are in line order; the file's valid rows are listed in line order.
                pre = merge_in_line_order(pre, valid)
            else:
                hashes = read.span_hashes
            valid = pre
        if valid is not None and len(valid):
            valid_parts.append(valid)
            hash_parts.append(hashes)
        if read.rejects:
            quarantine_parts.append(_rejects_frame(read))
        read.rows = read.prevalidated = read.span_hashes = None  # free memory as we go

    spans = pd.concat(valid_parts, ignore_index=True) if valid_parts else empty_frame(SPAN_COLUMNS)
    known = all(h is not None for h in hash_parts)
    spans, duplicates = split_duplicates(spans, np.concatenate(hash_parts) if known and hash_parts else None)
    if len(duplicates):
        dup = duplicates[["source_file", "source_line", "source_format", "trace_id", "span_id"]].copy()
        dup["reason"] = "duplicate_span_id"
        dup["detail"] = [f"span_id '{s}' already read earlier in this export hour" for s in dup["span_id"]]
        paths = {r.source_file: r.path for r in reads}
        quarantine_parts.extend(_with_raw(g, paths[f]) for f, g in dup.groupby("source_file", sort=False))
    quarantined = _finish_quarantine(quarantine_parts, export_hour)
    if list(spans.columns) != list(SPAN_COLUMN_NAMES):
        spans = spans[list(SPAN_COLUMN_NAMES)]  # a copy of the whole hour: skipped when already in order
    masked_by_file: dict[str, Counter] | None = None
    total: Counter | None = None
    if masker is not None:
        spans, span_report = mask_spans(spans, masker)
        quarantined, quarantine_report = mask_quarantine(quarantined, masker)
        masked_by_file = counts_by_file(spans, span_report)
        for name, counts in counts_by_file(quarantined, quarantine_report).items():
            masked_by_file.setdefault(name, Counter()).update(counts)
        total = span_report.by_pattern + quarantine_report.by_pattern
    audit = build_audit(reads, spans, quarantined, export_hour, masked_by_file)
    # Unreadable files are reported where their unreadable_file record is: a day file's only in the day's
    # first hour (`keep_window` drops its rejects in the others, so nothing there to point at).
    reports_rejects = not isinstance(window, Window) or not window.filter_rows or window.keeps_timeless
    unreadable = [r.source_file for r in reads if r.file_error and r.records_read == 0 and reports_rejects]
    return PartitionIngest(spans, quarantined, audit, unreadable, total)


def keep_window(read: FileRead, window: Window) -> None:
    """Keep only the rows of a day file that start in the window; rows without a usable start time and
    record rejects stay only in the day's first hour (`window.keeps_timeless`), so each is quarantined once."""
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    if read.rows is not None and len(read.rows):
        if "start_time" in read.rows:
            stamps, _ = _timestamps(read.rows["start_time"])
        else:
            stamps = pd.Series(pd.NaT, index=read.rows.index, dtype="datetime64[ns, UTC]")
        keep = ((stamps >= start) & (stamps < end)) | (stamps.isna() & window.keeps_timeless)
        read.rows = read.rows[keep.to_numpy()].reset_index(drop=True) if not keep.all() else read.rows
        if not len(read.rows):
            read.rows = None
    if read.prevalidated is not None and len(read.prevalidated):
        stamps = read.prevalidated["start_time"]
        keep = (((stamps >= start) & (stamps < end)) | (stamps.isna() & window.keeps_timeless)).to_numpy()
        if not keep.all():
            read.prevalidated = read.prevalidated[keep].reset_index(drop=True)
            if read.span_hashes is not None:
                read.span_hashes = read.span_hashes[keep]
    if not window.keeps_timeless:
        read.rejects = []


def _postprocess_by_format(reads: list[FileRead]) -> None:
    """Give readers that need the whole partition (LangSmith patches) all of their format's rows at once.

    A reader's `postprocess(rows) -> (rows, rejects)` receives rows carrying a `_file` key, must keep it on
    the rows it returns, and sets `Reject.source_file` from it; an optional `postprocess_wanted(frame) -> bool`
    skips it for hours where no file's rows need it.
    """
    by_format: dict[str, list[FileRead]] = {}
    for read in reads:
        if read.source_format and read.rows is not None:
            by_format.setdefault(read.source_format, []).append(read)
    for fmt, group in by_format.items():
        postprocess = getattr(detect.reader_for(fmt), "postprocess", None)
        if postprocess is None:
            continue
        # A reader may say cheaply that no row of the hour needs it (OTLP: no Logfire stream spans), which
        # saves the round trip of every row through dicts.
        wanted = getattr(detect.reader_for(fmt), "postprocess_wanted", None)
        if wanted is not None and not any(wanted(read.rows) for read in group):
            continue
        for read in group:
            read.rows["_file"] = read.source_file
        # All-null columns carry nothing and make pandas' concat warn about dtype inference.
        combined = pd.concat([r.rows.dropna(axis=1, how="all") for r in group], ignore_index=True)
        rows, rejects = postprocess(combined.to_dict("records"))
        merged = pd.DataFrame(rows)
        for read in group:
            mine = merged[merged["_file"] == read.source_file].drop(columns="_file") if len(merged) else None
            read.rows = mine.reset_index(drop=True) if mine is not None and len(mine) else None
            read.rejects.extend(r for r in rejects if r.source_file == read.source_file)


def _join_events(reads: list[FileRead], export_hour: pd.Timestamp) -> None:
    """Join the hour's span events (log files) into its span rows (any file); orphans become the log file's
    rejects. Runs after `_postprocess_by_format`, so it sees the rows as they will be validated."""
    events = [(f, event) for f, read in enumerate(reads) for event in read.events]
    if not events:
        return
    elsewhere: dict[tuple[str, str], str] = {}
    for read in reads:
        for reject in read.rejects:
            if reject.trace_id and reject.span_id and reject.source_format != otlp_logs.FORMAT:
                elsewhere.setdefault((reject.trace_id, reject.span_id),
                                     f"was quarantined ({reject.reason}, {read.source_file}:{reject.number})")
        if read.prevalidated is not None and len(read.prevalidated):
            for key in zip(read.prevalidated["trace_id"], read.prevalidated["span_id"], strict=True):
                elsewhere.setdefault(key, f"in {read.source_file}, read by the native fast path, which events "
                                          "are not joined into")
    joined, rejects = otlp_logs.join_events([r.rows for r in reads], events, f"{export_hour:%Y-%m-%dT%H}:00Z",
                                            elsewhere)
    for f, count in joined.items():
        reads[f].events_joined = count
    for f, reject in rejects:
        reads[f].rejects.append(reject)
    for read in reads:
        read.events = []


def _rejects_frame(read: FileRead) -> pd.DataFrame:
    return pd.DataFrame({
        "source_file": read.source_file,
        "source_line": [r.number for r in read.rejects],
        "source_format": [r.source_format or read.source_format for r in read.rejects],
        "trace_id": [r.trace_id for r in read.rejects],
        "span_id": [r.span_id for r in read.rejects],
        "reason": [r.reason for r in read.rejects],
        "detail": [f"{read.source_file}: {r.detail}" for r in read.rejects],
        "raw": [r.raw for r in read.rejects],
    })


def _with_raw(quarantined: pd.DataFrame, path: Source) -> pd.DataFrame:
    """Attach the raw record text to row-rule rejects by re-reading just those records of the file.

    JSON Lines files are re-read line by line up to the last wanted line, decoding only the wanted lines (no
    JSON parsing); the text is what `iter_records` gives a record (a leading BOM dropped, bad UTF-8 replaced).
    """
    import gzip
    import zlib

    from aiobs_pipeline.ingest.files import _decode, looks_like_document

    wanted = set(int(n) for n in quarantined["source_line"].dropna())
    raw: dict[int, str] = {}
    binary = _file_reader(path) if wanted else None
    if binary is not None:
        try:
            with open_binary(path) as stream:
                raw = binary.raw_records(stream, wanted)
        except (UnreadableFile, OSError, ValueError):
            pass  # the rows are quarantined without their raw text; the detail still names file and row
    elif wanted:
        try:
            if csv_records.is_csv_name(path.name) or looks_like_document(path):  # a CSV row may span lines
                for item in iter_records(path):
                    if item.number in wanted:
                        raw[item.number] = item.text if isinstance(item, RawRecord) else (item.raw or "")
            else:
                last = max(wanted)
                with open_binary(path) as stream:
                    for number, line in enumerate(stream, start=1):
                        if number in wanted and (stripped := line.rstrip(b"\r\n")).strip():
                            text = _decode(stripped, number)
                            raw[number] = (text.raw or "") if isinstance(text, Reject) else text
                        if number >= last:
                            break
        except (UnreadableFile, OSError, EOFError, zlib.error, gzip.BadGzipFile):
            pass  # unreadable, or a damaged gzip tail: the lines read before it keep their text
    out = quarantined.copy()
    out["detail"] = [
        f"{f}:{int(n) if pd.notna(n) else '?'}: {d}"
        for f, n, d in zip(out["source_file"], out["source_line"], out["detail"], strict=True)
    ]
    out["raw"] = [Reject("x", "", raw=raw.get(int(n))).raw if pd.notna(n) else None for n in out["source_line"]]
    return out


def _finish_quarantine(parts: list[pd.DataFrame], export_hour: pd.Timestamp) -> pd.DataFrame:
    if not parts:
        return empty_frame(QUARANTINE_COLUMNS)
    frame = pd.concat([p.dropna(axis=1, how="all") for p in parts], ignore_index=True)
    frame["export_hour"] = export_hour
    frame["schema_version"] = SCHEMA_VERSION
    return conform(frame, QUARANTINE_COLUMNS)


def build_audit(reads: list[FileRead], spans: pd.DataFrame, quarantined: pd.DataFrame,
                export_hour: pd.Timestamp, masked_by_file: dict[str, Counter] | None = None) -> pd.DataFrame:
    """One row per file: records read, spans found / written / quarantined (by reason), late spans, and
    values masked per pattern when masking was on (`masked_by_file` not None)."""
    end = export_hour + HOUR
    late = spans[(spans["start_time"] < export_hour) | (spans["start_time"] >= end)]
    late_by_file = Counter(late["source_file"])
    # value_counts, not Counter: a million rows of one file name hash in a tenth of the time.
    written_by_file = spans["source_file"].value_counts(sort=False).to_dict()
    rows = []
    for read in reads:
        q = quarantined[quarantined["source_file"] == read.source_file]
        by_reason = dict(sorted(Counter(q["reason"]).items()))
        written = written_by_file.get(read.source_file, 0)
        masked = None if masked_by_file is None else masked_by_file.get(read.source_file, Counter())
        rows.append({
            "export_hour": export_hour,
            "source_file": read.source_file,
            "source_format": read.source_format,
            "records_read": read.records_read,
            "spans_found": read.spans_found,
            "spans_written": written,
            "spans_quarantined": len(q),
            "quarantined_by_reason": orjson.dumps(by_reason).decode(),
            "late_spans": late_by_file.get(read.source_file, 0),
            "events_joined": read.events_joined,
            "records_ignored": read.records_ignored,
            "file_error": read.file_error,
            "schema_version": SCHEMA_VERSION,
            "pii_masked": None if masked is None else sum(masked.values()),
            "pii_masked_by_pattern": None if masked is None else orjson.dumps(dict(sorted(masked.items()))).decode(),
        })
    if not rows:
        return empty_frame(AUDIT_COLUMNS)
    return conform(pd.DataFrame(rows), AUDIT_COLUMNS)


def ingest_partition(landing_root: str | Path | Store, export_hour: datetime, fast_path: bool = True,
                     masker: Masker | None = None, layout: str | Layout = DEFAULT_LAYOUT) -> PartitionIngest:
    """Ingest every landing file of one export hour (masking PII when given a masker)."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    store = open_root(landing_root)
    return ingest_files(partition_files(store, export_hour, layout), export_hour, store, fast_path, masker,
                        window=layout.window(export_hour))
