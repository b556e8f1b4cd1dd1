"""Forgetting one user: delete their spans, feedback, eval cases and alert references everywhere they are stored.

What belongs to the user:
* their spans: rows whose `user_id` is the user, plus spans without a user id in the same traces (child spans
  an instrumentation did not tag: the user's retrieval results, tool calls); spans of other users in a shared
  trace are kept;
* everything keyed by those spans or traces: priced spans, the per-answer check tables, hallucination scores,
  flagged responses, eval outcomes, satisfaction scores, feedback events about them, and our own LLM calls that
  checked them (`llm_check_spans`, found through `llm_span_ids`);
* rows keyed by the user: any table's `user_id`, and `scope = 'user'` + `subject` (budget breaches, cost
  anomalies); aggregates over all users (hourly totals, dashboards) keep their numbers;
* quarantined rows whose span or trace is the user's, or whose raw record text names the user id as a JSON
  string (a malformed record of the user's): the raw text may hold their messages;
* the user id left inside JSON values of other rows (e.g. a month's top spenders) is replaced by
  `[forgotten user]`.

Files are rewritten atomically (temporary file + rename) without the user's records: a JSON Lines file keeps
every other line byte for byte; a line or document holding several users' spans (an OTLP request, a LangSmith
batch) loses only the user's spans. Every rewritten file is read back with the ingest readers before it
replaces the original, and must hold no span of the user and every span of everyone else; otherwise the file
is left untouched and reported. Lines that are not valid JSON are left in place and reported (with whether
they contain the user id), never dropped.

On an object-store root (s3://, gs://, az://), each landing object is copied to a private temporary folder,
pruned and checked the same way, then replaced whole through `ingest.storage` (object stores replace an
object atomically) or deleted; an object its producer rewrote meanwhile (size or ETag changed) is left and
reported. Object versions or soft-deleted copies that the bucket keeps (S3 versioning, GCS object
versioning, Azure soft delete) are not removed: that is the bucket's lifecycle policy's job.

The audit (table `forget_audit` and a JSON file under `<reports_dir>/governance/`) names tables, files and
counts, and the SHA-256 of the user id, never the id itself or any content.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from aiobs_pipeline.governance.retention import FORGET_AUDIT, RETENTION_LOG
from aiobs_pipeline.governance.store import WarehouseSession
from aiobs_pipeline.ingest.files import GZIP_MAGIC, is_landing_file, looks_like_document
from aiobs_pipeline.ingest.otlp import MalformedSpan, hex_id
from aiobs_pipeline.ingest.storage import StoreObject, is_url, open_root
from aiobs_pipeline.warehouse.tables import quote_ident

REDACTED = "[forgotten user]"
# Keys whose string value is a span's own id in the export formats (native/OpenInference, OTLP, Langfuse/LangSmith).
OWN_ID_KEYS = ("span_id", "spanId", "id")
# Tables forgetting never changes: our own audit logs (they hold no user data).
UNTOUCHED_TABLES = (RETENTION_LOG, FORGET_AUDIT, "ingest_audit", "feedback_audit", "aiobs_schema")
TEXT_SUFFIXES = (".html", ".md", ".json", ".jsonl", ".csv", ".txt", ".svg")
MAX_SCAN_BYTES = 64 * 1024 * 1024


class ForgetError(Exception):
    """Forgetting could not proceed; the message names the store, table or file at fault."""


@dataclass
class ForgetItem:
    """What was (or, in a dry run, would be) removed from one place."""

    store: str  # warehouse, landing, feedback_landing, datasets, alert_store, reports
    location: str  # table name or file path relative to its root
    action: str  # deleted_rows, redacted_rows, rewrote_file, deleted_file, left_in_place, mentions_left,
    # unreadable_kept (a line that is not JSON and does not name the user, kept as is), versions_kept (object
    # versions an object store may keep of rewritten objects)
    count: int
    unit: str  # rows, records, spans, events, cases, alerts, lines, mentions
    detail: str = ""


@dataclass
class UserKeys:
    """The ids that identify what belongs to the user."""

    user_id: str
    traces: set[str] = field(default_factory=set)
    spans: set[str] = field(default_factory=set)

    def mentions(self, text: str) -> bool:
        """True when text holds the user id as a whole word (not as part of a longer id), or as a JSON string
        escaped the way writers escape it (see escaped_spellings)."""
        return bool(_word(self.user_id).search(text)) or any(
            token in text for token in _escaped_tokens(self.user_id))


@dataclass
class ForgetReport:
    """Everything a forget request removed or would remove, and what it could not."""

    user_sha256: str
    dry_run: bool
    started_at: datetime
    warehouse: str
    items: list[ForgetItem] = field(default_factory=list)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def removed(self) -> int:
        """How many rows, records and cases were removed (or would be)."""
        return sum(i.count for i in self.items if i.action in ("deleted_rows", "redacted_rows", "rewrote_file",
                                                                   "deleted_file"))

    @property
    def left_behind(self) -> list[ForgetItem]:
        """Places where traces of the user remain and a person must act."""
        return [i for i in self.items if i.action in ("left_in_place", "mentions_left")]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the audit file)."""
        return {"request_id": self.request_id, "user_sha256": self.user_sha256, "dry_run": self.dry_run,
                "started_at": self.started_at.isoformat(), "warehouse": self.warehouse,
                "removed": self.removed, "items": [asdict(i) for i in self.items]}

    def frame(self) -> pd.DataFrame:
        """One forget_audit row per item."""
        rows = [{"request_id": self.request_id, "forgotten_at": self.started_at, "user_sha256": self.user_sha256,
                 **asdict(i)} for i in self.items]
        if not rows:
            rows = [{"request_id": self.request_id, "forgotten_at": self.started_at, "user_sha256": self.user_sha256,
                     "store": "all", "location": "", "action": "nothing_found", "count": 0, "unit": "",
                     "detail": "no data of this user was found"}]
        frame = pd.DataFrame(rows)
        frame["forgotten_at"] = pd.to_datetime(frame["forgotten_at"], utc=True)
        frame["count"] = frame["count"].astype("Int64")
        return frame


def user_sha256(user_id: str) -> str:
    """SHA-256 of the user id: what the audit stores instead of the id."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def _word(text: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9_\-])" + re.escape(text) + r"(?![A-Za-z0-9_\-])")


def escaped_spellings(text: str) -> set[str]:
    """How JSON writers may spell the string text escaped (json.dumps' \\u00e9 or \\u00E9, \\/ for /, Go's
    \\u003c for <, > and &), without the plain spelling."""
    ascii_form = json.dumps(text)[1:-1]
    bases = {ascii_form, re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), ascii_form),
             json.dumps(text, ensure_ascii=False)[1:-1]}
    go = {base.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") for base in bases}
    spellings = bases | go
    spellings |= {spelling.replace("/", "\\/") for spelling in spellings}
    return spellings - {text}


@lru_cache(maxsize=64)
def _escaped_tokens(text: str) -> tuple[str, ...]:
    """The escaped spellings of text as whole JSON strings (quotes included), as a record holds the id."""
    return tuple(f'"{spelling}"' for spelling in sorted(escaped_spellings(text)))


def _sql_word(text: str) -> str:
    """A regular expression matching text as a whole word, valid in DuckDB (RE2) and PostgreSQL."""
    # Only ASCII punctuation is escaped: RE2 refuses a backslash before a letter such as é.
    escaped = re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)
    return r"(^|[^A-Za-z0-9_-])" + escaped + r"([^A-Za-z0-9_-]|$)"


# ------------------------------------------------------------------------------------------------ warehouse
def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def collect_warehouse_keys(session: WarehouseSession, keys: UserKeys) -> None:
    """Add the user's traces and spans found in the warehouse span tables to keys."""
    tables = set(session.tables())
    for table in ("spans", "priced_spans"):
        if table not in tables:
            continue
        columns = session.columns(table)
        if not {"user_id", "trace_id", "span_id"} <= set(columns):
            continue
        name = session.name(table)
        keys.traces |= {t for (t,) in session.query(
            f"SELECT DISTINCT trace_id FROM {name} WHERE user_id = ?", [keys.user_id]) if _text(t)}
        if keys.traces:
            rows = session.query(f"SELECT span_id FROM {name} WHERE user_id = ? OR "
                                 "(user_id IS NULL AND trace_id = ANY(?))", [keys.user_id, sorted(keys.traces)])
        else:
            rows = session.query(f"SELECT span_id FROM {name} WHERE user_id = ?", [keys.user_id])
        keys.spans |= {s for (s,) in rows if _text(s)}
    if "feedback_events" in tables and "user_id" in session.columns("feedback_events"):
        keys.traces |= {t for (t,) in session.query(
            f"SELECT DISTINCT trace_id FROM {session.name('feedback_events')} WHERE user_id = ? "
            "AND span_id IS NULL", [keys.user_id]) if _text(t)}


def _own_call_spans(session: WarehouseSession, tables: Iterable[str], spans: set[str]) -> set[str]:
    """Span ids of our own LLM calls that checked the user's answers (llm_span_ids of the check tables)."""
    found: set[str] = set()
    for table in tables:
        columns = session.columns(table)
        if "llm_span_ids" not in columns or "span_id" not in columns or not spans:
            continue
        for (value,) in session.query(f"SELECT llm_span_ids FROM {session.name(table)} WHERE span_id = ANY(?)",
                                      [sorted(spans)]):
            try:
                ids = json.loads(value) if isinstance(value, str) else []
            except ValueError:
                ids = []
            found |= {i for i in ids if isinstance(i, str)}
    return found


def _row_condition(session: WarehouseSession, table: str, keys: UserKeys,
                   own_calls: set[str]) -> tuple[str, list[Any]] | None:
    columns = session.columns(table)
    parts: list[str] = []
    params: list[Any] = []
    if "user_id" in columns:
        parts.append("user_id = ?")
        params.append(keys.user_id)
    if "span_id" in columns and keys.spans:
        parts.append("span_id = ANY(?)")  # empty lists are skipped: DuckDB cannot type an empty list
        params.append(sorted(keys.spans))
    if table == "llm_check_spans" and own_calls:
        parts.append("span_id = ANY(?)")
        params.append(sorted(own_calls))
    if "trace_id" in columns and keys.traces and ("user_id" in columns or "span_id" not in columns):
        parts.append("(trace_id = ANY(?)" + (" AND user_id IS NULL)" if "user_id" in columns else ")"))
        params.append(sorted(keys.traces))
    if "scope" in columns and "subject" in columns:
        parts.append("(scope = 'user' AND subject = ?)")
        params.append(keys.user_id)
    if "raw" in columns:
        parts.append("regexp_matches(raw, ?)" if session.dialect == "duckdb" else "raw ~ ?")
        params.append(_sql_word(keys.user_id))
        for token in _escaped_tokens(keys.user_id):
            parts.append("strpos(raw, ?) > 0")  # as a whole JSON string, like the word match above
            params.append(token)
    if not parts:
        return None
    return " OR ".join(f"({p})" for p in parts), params


def forget_in_warehouse(session: WarehouseSession, keys: UserKeys, dry_run: bool) -> list[ForgetItem]:
    """Delete the user's rows from every warehouse table and redact the id inside other rows' JSON values."""
    items: list[ForgetItem] = []
    tables = [t for t in session.tables() if t not in UNTOUCHED_TABLES]
    own_calls = _own_call_spans(session, tables, keys.spans) if keys.spans else set()
    for table in tables:
        condition = _row_condition(session, table, keys, own_calls)
        name = session.name(table)
        if condition is not None:
            where, params = condition
            if dry_run:
                count = int(session.query(f"SELECT COUNT(*) FROM {name} WHERE {where}", params)[0][0])
            else:
                count = session.execute(f"DELETE FROM {name} WHERE {where}", params)
            if count:
                items.append(ForgetItem("warehouse", table, "deleted_rows", count, "rows"))
        items.extend(_redact_columns(session, table, keys.user_id, dry_run, skip_deleted=condition))
    return items


def _redact_columns(session: WarehouseSession, table: str, user_id: str, dry_run: bool,
                    skip_deleted: tuple[str, list[Any]] | None) -> list[ForgetItem]:
    """Replace the user id inside JSON values with REDACTED; count text columns that still mention it."""
    items: list[ForgetItem] = []
    name = session.name(table)
    token = json.dumps(user_id)
    pattern = _sql_word(user_id)
    match = "regexp_matches({col}, ?)" if session.dialect == "duckdb" else "{col} ~ ?"
    for column, kind in session.columns(table).items():
        col = quote_ident(column)
        if kind == "json":
            text = session.as_text(col)
            where = f"strpos({text}, ?) > 0"
            if dry_run:
                extra, extra_params = (f" AND NOT COALESCE(({skip_deleted[0]}), FALSE)", skip_deleted[1]) if (
                    skip_deleted) else ("", [])
                count = int(session.query(f"SELECT COUNT(*) FROM {name} WHERE {where}{extra}",
                                          [token, *extra_params])[0][0])
            else:
                cast = "JSON" if session.dialect == "duckdb" else "jsonb"
                count = session.execute(
                    f"UPDATE {name} SET {col} = CAST(replace({text}, ?, ?) AS {cast}) WHERE {where}",
                    [token, json.dumps(REDACTED), token])
            if count:
                items.append(ForgetItem("warehouse", f"{table}.{column}", "redacted_rows", count, "rows",
                                        "the user id inside JSON values replaced by '[forgotten user]'"))
        elif kind == "str" and column not in ("user_id", "subject", "raw"):
            where = match.format(col=col)
            extra, extra_params = (f" AND NOT COALESCE(({skip_deleted[0]}), FALSE)", skip_deleted[1]) if (
                skip_deleted and dry_run) else ("", [])
            count = int(session.query(f"SELECT COUNT(*) FROM {name} WHERE {where}{extra}",
                                      [pattern, *extra_params])[0][0])
            if count:
                items.append(ForgetItem("warehouse", f"{table}.{column}", "mentions_left", count, "rows",
                                        "free text still mentions the user id; re-materialise these partitions"))
    return items


# ------------------------------------------------------------------------------------------------ files
@dataclass
class _Parsed:
    """A landing file split into records: line mode keeps each line's bytes; document mode one JSON value."""

    gz: bool
    mode: str  # lines or document
    lines: list[bytes] = field(default_factory=list)
    document: Any = None


def _load(path: Path) -> _Parsed:
    raw = path.read_bytes()
    gz = raw[:2] == GZIP_MAGIC
    try:
        data = gzip.decompress(raw) if gz else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise ForgetError(f"{path}: the gzip stream is damaged ({exc}); it cannot be rewritten safely") from None
    if looks_like_document(path):
        try:
            return _Parsed(gz, "document", document=orjson.loads(data.removeprefix(b"\xef\xbb\xbf")))
        except orjson.JSONDecodeError:
            pass  # read line by line, as the ingest does
    lines = data.split(b"\n")
    # split() leaves a final empty piece after the last newline; keep each line's own ending.
    pieces = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return _Parsed(gz, "lines", lines=pieces)


def _dump(parsed: _Parsed) -> bytes:
    data = orjson.dumps(parsed.document) if parsed.mode == "document" else b"".join(parsed.lines)
    return gzip.compress(data, mtime=0) if parsed.gz else data


def _decoded(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return raw
    return raw


_REMOVE = object()


@dataclass
class _Matcher:
    """Decides which JSON elements of a record belong to the user."""

    user_id: str
    remove_ids: set[str]
    keep_ids: set[str]
    own_keys: tuple[str, ...] = OWN_ID_KEYS
    any_string_ids: bool = False  # feedback: any string value naming a removed span or trace counts

    def _norm(self, value: str) -> set[str]:
        out = {value, value.lower()}
        try:
            converted = hex_id(value, "id")
        except MalformedSpan:
            converted = None
        if converted:
            out.add(converted)
        return out

    def scan(self, value: Any) -> tuple[bool, bool]:
        """(belongs to the user, holds something of someone else) for an element and everything inside it."""
        mine = other = False
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(child, str):
                        if self.any_string_ids or key in self.own_keys:
                            forms = self._norm(child)
                            if forms & self.remove_ids:
                                mine = True
                            elif key in self.own_keys and forms & self.keep_ids:
                                other = True
                        if self._names_user(child):
                            mine = True
                    else:
                        stack.append(child)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str) and self._names_user(item):
                mine = True
        return mine, other

    def _names_user(self, text: str) -> bool:
        if text == self.user_id:
            return True
        # JSON text inside a string (metadata kept as text) names the user as a JSON string, perhaps escaped.
        return len(text) > len(self.user_id) + 2 and (
            f'"{self.user_id}"' in text or any(token in text for token in _escaped_tokens(self.user_id)))

    def prune(self, value: Any) -> tuple[Any, int]:
        """The record without the user's elements (or _REMOVE when all of it is theirs) and elements removed."""
        mine, other = self.scan(value)
        if not mine:
            return value, 0
        if not other:
            return _REMOVE, 1
        return self._prune_inside(value)

    def _prune_inside(self, value: Any) -> tuple[Any, int]:
        removed = 0
        if isinstance(value, list):
            kept = []
            for element in value:
                new, count = self.prune(element)
                removed += count
                if new is not _REMOVE:
                    kept.append(new)
            return kept, removed
        if isinstance(value, dict):
            out = {}
            for key, child in value.items():
                if isinstance(child, list | dict):
                    new, count = self._prune_inside(child) if self.scan(child)[0] else (child, 0)
                    removed += count
                    out[key] = new
                else:
                    out[key] = child
            return out, removed
        return value, 0


@dataclass
class _FileOutcome:
    items: list[ForgetItem]
    new_bytes: bytes | None  # None: unchanged; b"" with delete=True: remove the file
    delete: bool = False


def _prune_file(path: Path, rel: str, store: str, matcher: _Matcher, user: UserKeys) -> _FileOutcome:
    parsed = _load(path)
    items: list[ForgetItem] = []
    removed_records = removed_elements = 0
    if parsed.mode == "document":
        records = parsed.document if isinstance(parsed.document, list) else [parsed.document]
        kept = []
        for record in records:
            new, count = matcher.prune(record)
            removed_elements += count
            if new is _REMOVE:
                removed_records += 1
            else:
                kept.append(new)
        if not removed_elements:
            return _FileOutcome(items, None)
        if not kept:
            return _FileOutcome([ForgetItem(store, rel, "deleted_file", removed_elements, "records")], b"", True)
        parsed.document = kept if isinstance(parsed.document, list) else kept[0]
    else:
        new_lines = []
        for number, line in enumerate(parsed.lines, start=1):
            body = line.rstrip(b"\r\n")
            if not body.strip():
                new_lines.append(line)
                continue
            try:
                value = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
            except orjson.JSONDecodeError:
                text = body.decode("utf-8", errors="replace")
                if user.mentions(text):
                    items.append(ForgetItem(store, rel, "left_in_place", 1, "lines",
                                            f"line {number} is not valid JSON and contains the user id; "
                                            "it was left as is: edit or delete it by hand"))
                else:
                    items.append(ForgetItem(store, rel, "unreadable_kept", 1, "lines",
                                            f"line {number} is not valid JSON (it does not contain the user id)"))
                new_lines.append(line)
                continue
            new, count = matcher.prune(value)
            removed_elements += count
            if new is _REMOVE:
                removed_records += 1
            elif count:
                new_lines.append(orjson.dumps(new) + line[len(body):])
            else:
                new_lines.append(line)
        if not removed_elements:
            return _FileOutcome(items, None)
        if not any(line.strip() for line in new_lines):
            return _FileOutcome([*items, ForgetItem(store, rel, "deleted_file", removed_elements, "records")],
                                b"", True)
        parsed.lines = new_lines
    detail = f"{removed_records} whole records removed" if removed_records == removed_elements else (
        f"{removed_records} whole records and {removed_elements - removed_records} elements of shared records")
    items.append(ForgetItem(store, rel, "rewrote_file", removed_elements, "records", detail))
    return _FileOutcome(items, _dump(parsed))


def _files_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and is_landing_file(p))


def _landing_files(root: Path | str) -> Iterator[tuple[Path, str, StoreObject | None]]:
    """(local file, key relative to the root, object) for every landing file of a root.

    A local root gives its files (object None). An object-store root gives each object copied, one at a time,
    to a private temporary folder, so the same parse, prune and read-back check run on it; `_apply` then
    writes the result back through `ingest.storage` (an object is replaced whole, atomically)."""
    if isinstance(root, Path) or not is_url(str(root)):
        for path in _files_under(Path(root)):
            yield path, path.relative_to(Path(root)).as_posix(), None
        return
    store = open_root(root)
    for obj in store.list():
        if not is_landing_file(obj):
            continue
        with tempfile.TemporaryDirectory(prefix="aiobs-forget-") as folder:
            path = Path(folder) / obj.name
            with obj.open() as stream, open(path, "wb") as out:
                shutil.copyfileobj(stream, out, 8 * 1024 * 1024)
            yield path, obj.key, obj


# Characters no JSON writer escapes (Go's writes <, > and & as \u003c...; some write / as \/): an id made of
# them appears in a file's bytes as it is.
_UNESCAPED = re.compile(r"[A-Za-z0-9_.:@+=~ -]*")
# Hex ids of 8 or 16 bytes: OTLP span and trace ids, which a file may spell in either case or as base64.
_HEX_ID = re.compile(r"(?:[0-9a-fA-F]{16}){1,2}")


def _strings_mention(value: Any, keys: UserKeys) -> bool:
    """Whether a string inside a parsed JSON value names the user (where the raw text may hold it escaped)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if keys.mentions(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _may_mention(data: bytes, keys: UserKeys) -> bool:
    """False only when a file's bytes cannot hold the user id, nor a trace or span id of theirs, in any
    spelling the readers accept: the quick test that spares parsing the files that cannot concern the user."""
    ids = [value for value in (keys.user_id, *keys.traces, *keys.spans) if value]
    if not all(_UNESCAPED.fullmatch(value) for value in ids):
        return True  # an escaped spelling (jos\u00e9, a\/b) hides the id from a byte search: read the file
    if any(value.encode() in data for value in ids):
        return True
    hex_ids = [value for value in ids if _HEX_ID.fullmatch(value)]
    if not hex_ids:
        return False
    lowered = data.lower()
    for value in hex_ids:
        encoded = base64.b64encode(bytes.fromhex(value))
        if value.lower().encode() in lowered or encoded in data or encoded.replace(b"/", b"\\/") in data:
            return True
    return False


def _span_rows(path: Path, rel: str) -> pd.DataFrame:
    from aiobs_pipeline.ingest.partition import read_file  # noqa: PLC0415 - import cycle through ingest

    result = read_file(path, rel, fast_path=False)
    rows = result.rows if result.rows is not None else pd.DataFrame()
    for column in ("span_id", "trace_id", "user_id"):
        if column not in rows.columns:
            rows[column] = pd.Series(dtype=object)
    return rows


def _user_rows(rows: pd.DataFrame, keys: UserKeys) -> pd.Series:
    user = rows["user_id"].astype(object)
    return (user == keys.user_id) | (user.isna() & rows["trace_id"].isin(keys.traces)) | rows["span_id"].isin(
        keys.spans)


def collect_landing_keys(roots: Iterable[Path | str], keys: UserKeys) -> None:
    """Add the user's traces and spans found in landing files that mention the user id."""
    for root in roots:
        for path, rel, _ in _landing_files(root):
            # (An id that a writer may have escaped cannot be searched for in the text: every file is read.)
            if _UNESCAPED.fullmatch(keys.user_id) and not keys.mentions(
                    _decoded(path).decode("utf-8", errors="replace")):
                continue
            rows = _span_rows(path, rel)
            if rows.empty:
                continue
            keys.traces |= {t for t in rows.loc[rows["user_id"] == keys.user_id, "trace_id"] if _text(t)}
            keys.spans |= {s for s in rows.loc[_user_rows(rows, keys), "span_id"] if _text(s)}


def _atomic_write(path: Path, data: bytes, verify: Callable[[Path], str | None]) -> str | None:
    """Write data next to path, check it with verify (None = fine), then rename over path; else discard."""
    temp = path.with_name(f".forget-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        temp.write_bytes(data)
        os.chmod(temp, path.stat().st_mode & 0o777)
        problem = verify(temp)
        if problem is not None:
            return problem
        os.replace(temp, path)
        return None
    finally:
        if temp.exists():
            temp.unlink()


def forget_in_landing(root: Path | str, keys: UserKeys, dry_run: bool) -> list[ForgetItem]:
    """Rewrite the span landing files under root (a folder or an object-store URL) without the user's spans."""
    items: list[ForgetItem] = []
    for path, rel, obj in _landing_files(root):
        if not _may_mention(_decoded(path), keys):
            continue
        rows = _span_rows(path, rel)
        mine = _user_rows(rows, keys) if not rows.empty else pd.Series(dtype=bool)
        remove_ids = {s for s in rows.loc[mine, "span_id"] if _text(s)} | keys.spans if len(rows) else set(keys.spans)
        keep_ids = {s for s in rows.loc[~mine, "span_id"] if _text(s)} if len(rows) else set()
        expected_kept = int((~mine).sum()) if len(rows) else 0
        matcher = _Matcher(keys.user_id, remove_ids, keep_ids - remove_ids)
        try:
            outcome = _prune_file(path, rel, "landing", matcher, keys)
        except ForgetError as exc:
            items.append(ForgetItem("landing", rel, "left_in_place", 1, "files", str(exc)))
            continue

        def verify(temp: Path, rel: str = rel, expected: int = expected_kept) -> str | None:
            after = _span_rows(temp, rel)
            left = int(_user_rows(after, keys).sum()) if len(after) else 0
            if left:
                return f"{left} spans of the user would remain"
            if len(after) != expected:
                return f"{expected} spans of other users expected after the rewrite, {len(after)} read back"
            return None

        items.extend(_apply(path, rel, "landing", outcome, dry_run, verify, obj))
    return items


def _apply(path: Path, rel: str, store: str, outcome: _FileOutcome, dry_run: bool,
           verify: Callable[[Path], str | None], obj: StoreObject | None = None) -> list[ForgetItem]:
    if outcome.new_bytes is None or dry_run:
        return outcome.items
    if obj is not None:
        problem = _apply_to_object(path, obj, outcome, verify)
    elif outcome.delete:
        path.unlink()
        return outcome.items
    else:
        problem = _atomic_write(path, outcome.new_bytes, verify)
    if problem is None:
        return outcome.items
    kept = [i for i in outcome.items if i.action not in ("rewrote_file", "deleted_file")]
    return [*kept, ForgetItem(store, rel, "left_in_place", 1, "files",
                              f"the rewritten file did not pass the read-back check ({problem}); the file was "
                              "left unchanged: remove the user's records by hand")]


def _apply_to_object(copy: Path, obj: StoreObject, outcome: _FileOutcome,
                     verify: Callable[[Path], str | None]) -> str | None:
    """Check the rewrite on the local copy, then replace (or delete) the object; None when done."""
    if not outcome.delete:
        copy.write_bytes(outcome.new_bytes or b"")
        problem = verify(copy)
        if problem is not None:
            return problem
    current = obj.store.object(obj.key)
    if (current.size, current.version()) != (obj.size, obj.version()):
        # Rewritten by its producer since it was read: writing ours would lose what it added.
        return "the object changed while it was being rewritten; run forget again"
    if outcome.delete:
        obj.store.delete([obj.key])
    else:
        obj.store.write_bytes(obj.key, outcome.new_bytes or b"")
    return None


def forget_in_feedback_landing(root: Path | str, keys: UserKeys, feedback_settings: Any,
                               dry_run: bool) -> list[ForgetItem]:
    """Rewrite the feedback landing files under root without the user's events and events about their spans."""
    from aiobs_pipeline.feedback.events import read_feedback_file  # noqa: PLC0415

    items: list[ForgetItem] = []

    def mine(row: dict[str, Any]) -> bool:
        return (row.get("user_id") == keys.user_id or row.get("span_id") in keys.spans
                or row.get("trace_id") in keys.traces)

    for path, rel, obj in _landing_files(root):
        if not _may_mention(_decoded(path), keys):
            continue
        before = read_feedback_file(path, rel, feedback_settings)
        expected = sum(1 for row in before.rows if not mine(row))
        others = {str(row["event_id"]) for row in before.rows if not mine(row) and row.get("event_id")}
        matcher = _Matcher(keys.user_id, keys.spans | keys.traces, others, own_keys=("event_id", "id"),
                           any_string_ids=True)
        try:
            outcome = _prune_file(path, rel, "feedback_landing", matcher, keys)
        except ForgetError as exc:
            items.append(ForgetItem("feedback_landing", rel, "left_in_place", 1, "files", str(exc)))
            continue

        def verify(temp: Path, rel: str = rel, expected: int = expected) -> str | None:
            after = read_feedback_file(temp, rel, feedback_settings)
            left = sum(1 for row in after.rows if mine(row))
            if left:
                return f"{left} events of the user would remain"
            if len(after.rows) != expected:
                return f"{expected} events of other users expected after the rewrite, {len(after.rows)} read back"
            return None

        items.extend(_apply(path, rel, "feedback_landing", outcome, dry_run, verify, obj))
    return items


def forget_in_datasets(roots: Iterable[Path], keys: UserKeys, dry_run: bool) -> list[ForgetItem]:
    """Remove the user's eval cases from every cases JSONL file under the dataset folders; refresh manifests."""
    from aiobs_pipeline.evals.dataset import MANIFEST_FILE, case_counts  # noqa: PLC0415

    items: list[ForgetItem] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.jsonl")):
            if path.name.startswith("."):
                continue
            lines = path.read_bytes().split(b"\n")
            kept: list[bytes] = []
            removed = 0
            for line in lines:
                if not line.strip():
                    continue
                try:
                    case = orjson.loads(line)
                except orjson.JSONDecodeError:
                    kept.append(line)
                    continue
                source = case.get("source") if isinstance(case, dict) else None
                source = source if isinstance(source, dict) else {}
                if (source.get("span_id") in keys.spans or source.get("trace_id") in keys.traces
                        or keys.mentions(line.decode("utf-8", errors="replace")) or _strings_mention(case, keys)):
                    removed += 1
                else:
                    kept.append(line)
            if not removed:
                continue
            rel = str(path.relative_to(root.parent))
            items.append(ForgetItem("datasets", rel, "rewrote_file", removed, "cases"))
            if dry_run:
                continue
            content = b"".join(line + b"\n" for line in kept)
            _atomic_write(path, content, lambda _temp: None)
            manifest = path.parent / MANIFEST_FILE
            if manifest.is_file():
                data = json.loads(manifest.read_text(encoding="utf-8"))
                cases = [json.loads(line) for line in kept]
                data["content_sha256"] = hashlib.sha256(content).hexdigest()
                data["counts"] = case_counts(cases)
                data["forgotten_cases"] = int(data.get("forgotten_cases") or 0) + removed
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
                _atomic_write(manifest, text.encode("utf-8"), lambda _temp: None)
    return items


def forget_in_alert_store(settings: Any, keys: UserKeys, dry_run: bool) -> list[ForgetItem]:
    """Delete the user's alerts (scope user) and their events and silences; redact the id in other alerts."""
    import sqlalchemy as sa  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from aiobs_pipeline.alerting.settings import state_url_of  # noqa: PLC0415
    from aiobs_pipeline.alerting.state import AlertStore  # noqa: PLC0415

    url = state_url_of(settings)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).is_file()):
        return []
    word = _word(keys.user_id)
    items: list[ForgetItem] = []
    with AlertStore.from_settings(settings) as store, store.engine.begin() as conn:
        state, events, silences = store.state, store.events, store.silences_table
        own = [r.key for r in conn.execute(sa.select(state.c.key).where(state.c.scope == "user",
                                                                          state.c.subject == keys.user_id))]
        event_count = conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.key.in_(own))).scalar_one() if own else 0
        silenced = [r.id for r in conn.execute(sa.select(silences.c.id, silences.c.pattern))
                    if word.search(r.pattern or "")]
        redact_state = [r for r in conn.execute(sa.select(state.c.key, state.c.summary, state.c.details,
                                                          state.c.links).where(state.c.key.not_in(own)))
                        if any(word.search(v or "") for v in (r.summary, r.details, r.links))]
        redact_events = [r for r in conn.execute(sa.select(events.c.id, events.c.detail).where(
            events.c.key.not_in(own))) if word.search(r.detail or "")]
        if not dry_run:
            if own:
                conn.execute(sa.delete(events).where(events.c.key.in_(own)))
                conn.execute(sa.delete(state).where(state.c.key.in_(own)))
            if silenced:
                conn.execute(sa.delete(silences).where(silences.c.id.in_(silenced)))
            for r in redact_state:
                conn.execute(sa.update(state).where(state.c.key == r.key).values(
                    summary=word.sub(REDACTED, r.summary or ""), details=word.sub(REDACTED, r.details or "{}"),
                    links=word.sub(REDACTED, r.links or "[]")))
            for r in redact_events:
                conn.execute(sa.update(events).where(events.c.id == r.id).values(
                    detail=word.sub(REDACTED, r.detail or "")))
    if own:
        items.append(ForgetItem("alert_store", "alert_state", "deleted_rows", len(own), "alerts",
                                f"user-scoped alerts, with {event_count} events"))
    if silenced:
        items.append(ForgetItem("alert_store", "alert_silences", "deleted_rows", len(silenced), "rows"))
    if redact_state:
        items.append(ForgetItem("alert_store", "alert_state", "redacted_rows", len(redact_state), "alerts"))
    if redact_events:
        items.append(ForgetItem("alert_store", "alert_events", "redacted_rows", len(redact_events), "rows"))
    return items


def scan_reports(reports_dir: Path, keys: UserKeys) -> list[ForgetItem]:
    """Report files (dashboards, monthly reports) that still mention the user id; they are not edited."""
    items: list[ForgetItem] = []
    if not reports_dir.is_dir():
        return items
    for path in sorted(reports_dir.rglob("*")):
        rel = path.relative_to(reports_dir)
        if (not path.is_file() or rel.parts[0] == "governance" or path.suffix.lower() not in TEXT_SUFFIXES
                or path.stat().st_size > MAX_SCAN_BYTES):
            continue
        count = len(_word(keys.user_id).findall(path.read_text(encoding="utf-8", errors="replace")))
        if count:
            items.append(ForgetItem("reports", str(rel), "mentions_left", count, "mentions",
                                    "a rendered report names the user: re-materialise its partition"))
    return items


def write_audit_file(report: ForgetReport, reports_dir: Path) -> Path:
    """Write the audit JSON under reports_dir/governance/ and return its path."""
    folder = reports_dir / "governance"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"forget-{report.started_at:%Y%m%dT%H%M%SZ}-{report.request_id[:8]}.json"
    temp = path.with_name("." + path.name)
    temp.write_text(json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def object_versions_note(items: list[ForgetItem], roots: Iterable[tuple[str, Path | str]]) -> list[ForgetItem]:
    """For object-store roots where objects were rewritten or deleted: what forget cannot remove there."""
    notes = []
    for store, root in roots:
        if isinstance(root, Path) or not is_url(str(root)):
            continue
        changed = sum(1 for i in items if i.store == store and i.action in ("rewrote_file", "deleted_file"))
        if changed:
            notes.append(ForgetItem(store, str(open_root(root)), "versions_kept", changed, "objects",
                                    "earlier versions or soft-deleted copies the bucket keeps (S3 versioning, GCS "
                                    "object versioning, Azure soft delete) are not removed by aiobs: expire them "
                                    "with the bucket's lifecycle rules"))
    return notes


def forget_user(settings: Any, user_id: str, dry_run: bool = False,
                now: datetime | None = None) -> tuple[ForgetReport, Path | None]:
    """Forget one user everywhere the settings point; return the report and the audit file (None in a dry run).

    Raises WarehouseError when the warehouse cannot be opened (nothing is changed then).
    """
    from aiobs_pipeline.governance.store import warehouse_session  # noqa: PLC0415

    if not user_id or not user_id.strip():
        raise ForgetError("the user id is empty")
    keys = UserKeys(user_id)
    started = (now or datetime.now(UTC)).astimezone(UTC)
    label = settings.warehouse.kind + (f" {settings.duckdb_path}" if settings.warehouse.kind == "duckdb" else "")
    report = ForgetReport(user_sha256(user_id), dry_run, started, label)
    landing, feedback = settings.landing_root, settings.feedback_root
    with warehouse_session(settings, read_only=dry_run) as session:
        collect_warehouse_keys(session, keys)
        collect_landing_keys([landing], keys)
        report.items += forget_in_warehouse(session, keys, dry_run)
    report.items += forget_in_landing(landing, keys, dry_run)
    report.items += forget_in_feedback_landing(feedback, keys, settings.feedback, dry_run)
    report.items += object_versions_note(report.items, (("landing", landing), ("feedback_landing", feedback)))
    datasets = [settings.resolve(settings.paths.datasets_dir), settings.resolve(settings.evals.export_dir)]
    report.items += forget_in_datasets(datasets, keys, dry_run)
    report.items += forget_in_alert_store(settings, keys, dry_run)
    reports_dir = settings.resolve(settings.paths.reports_dir)
    report.items += scan_reports(reports_dir, keys)
    if dry_run:
        return report, None
    with warehouse_session(settings) as session:
        session.append(FORGET_AUDIT, report.frame())
    return report, write_audit_file(report, reports_dir)
