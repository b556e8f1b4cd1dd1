"""Feedback events: reading an export hour of feedback files, mapping formats, row rules, dedupe and audit.

Owns the canonical feedback-event table (`schema.FEEDBACK_COLUMNS`): which records become events, which are
quarantined and why, and the identity the audit promises per file:
    events_found = events_written + events_quarantined.
Files are read with the span ingest's own machinery (`ingest.files.iter_records`, `ingest.partition`'s
landing layout), so gzip, encodings, JSON Lines vs documents and damaged files behave the same.
Also owns `join_to_responses`, which attaches response attributes to events by span id across partitions.
It must not talk to Dagster or a database, and must not score satisfaction (`satisfaction.py` does).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from rapidfuzz.distance import Levenshtein

from aiobs_pipeline.feedback.settings import FeedbackSettings, normalise_name
from aiobs_pipeline.ingest.base import RawRecord, Reject, as_str, parse_time
from aiobs_pipeline.ingest.files import Source, UnreadableFile, iter_records
from aiobs_pipeline.ingest.layout import DEFAULT_LAYOUT, Layout, parse_layout
from aiobs_pipeline.ingest.partition import partition_files, source_name
from aiobs_pipeline.ingest.storage import Store, StoreObject, open_root
from aiobs_pipeline.schema import (
    FEEDBACK_AUDIT_COLUMNS,
    FEEDBACK_COLUMNS,
    FEEDBACK_EVENT_TYPES,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASONS,
    RATING_MAX,
    RATING_MIN,
    SCHEMA_VERSION,
    THUMBS_DOWN_REASONS,
    conform,
    empty_frame,
)

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)

# Reason codes only feedback uses; the shared ones come from schema.QUARANTINE_REASONS.
FEEDBACK_QUARANTINE_REASONS: dict[str, str] = {
    "invalid_event_type": "the event type is not one of the canonical feedback event types",
    "invalid_reason": "a thumbs-down reason outside the allowed list, or a reason on another event type",
    "invalid_rating": "a rating event without a value, or with a value outside 1..5",
    "not_user_feedback": "a score from an automated evaluator (a source in feedback.ignored_sources)",
    "not_a_signal": "a well-formed record that says nothing about satisfaction: an abandoned session that "
                    "lasted at least feedback.abandon_threshold_seconds, or a flag score that is false",
    "duplicate_event_id": "the event id (or, without ids, the same response, user, type and time) was "
                          "already read in this export hour",
}
SHARED_REASONS: tuple[str, ...] = (
    "unreadable_file", "corrupt_gzip", "invalid_encoding", "invalid_json", "unknown_format",
    "unsupported_record", "missing_required_field", "invalid_type", "negative_value",
)
REASONS: dict[str, str] = {**{r: QUARANTINE_REASONS[r] for r in SHARED_REASONS}, **FEEDBACK_QUARANTINE_REASONS}

STRING_FIELDS = ("event_id", "span_id", "trace_id", "user_id", "session_id", "event_type", "reason", "comment",
                 "original_text", "edited_text", "source")
NUMBER_FIELDS = ("value", "duration_seconds", "diff_size")

# canonical field <- native keys, first present wins (the layout `aiobs generate` writes; docs/feedback.md).
NATIVE_KEYS: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "id"),
    "span_id": ("span_id", "response_id"),
    "trace_id": ("trace_id",),
    "user_id": ("user_id",),
    "session_id": ("session_id",),
    "event_type": ("event_type",),
    "value": ("value",),
    "reason": ("reason",),
    "comment": ("comment",),
    "original_text": ("original_text",),
    "edited_text": ("edited_text",),
    "diff_size": ("diff_size",),
    "duration_seconds": ("duration_seconds",),
    "timestamp": ("timestamp",),
    "source": ("source",),
}

# Langfuse score names / LangSmith feedback keys (normalised) -> how their value is read.
NAME_KINDS: dict[str, str] = {
    **{t: t for t in FEEDBACK_EVENT_TYPES},
    **dict.fromkeys(("thumbs", "thumb", "thumbs_up_down", "user_feedback", "feedback", "user_score", "like",
                     "vote"), "thumbs"),
    **dict.fromkeys(("rating", "user_rating", "stars", "star_rating", "csat"), "rating"),
    **dict.fromkeys(("correctness", "correct", "is_correct"), "correctness"),
    **dict.fromkeys(("hallucination", "hallucinated", "is_hallucination"), "hallucination_report"),
    **dict.fromkeys(("regenerate", "regeneration", "retry"), "regenerated"),
    **dict.fromkeys(("copy",), "copied"),
    **dict.fromkeys(("edit", "user_edit"), "edited"),
    **dict.fromkeys(("abandoned", "abandon"), "session_abandoned"),
}
POSITIVE_WORDS = frozenset({"up", "thumbs_up", "thumb_up", "positive", "good", "true", "yes", "like", "helpful",
                            "correct", "1", "👍"})
NEGATIVE_WORDS = frozenset({"down", "thumbs_down", "thumb_down", "negative", "bad", "false", "no", "dislike",
                            "not_helpful", "unhelpful", "incorrect", "wrong", "0", "-1", "👎"})


@dataclass
class FeedbackIngest:
    """The three tables one feedback export hour produces."""

    events: pd.DataFrame
    quarantined: pd.DataFrame
    audit: pd.DataFrame


class _Problem(Exception):
    """A record that cannot become an event: reason code and a detail naming the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class _FileRead:
    path: Source
    source_file: str
    records_read: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    file_error: str | None = None


# ------------------------------------------------------------------------------------------------ formats
def detect_format(value: Any) -> str | None:
    """native, langfuse or langsmith for a record that looks like one of their feedback records, else None."""
    if not isinstance(value, dict):
        return None
    if "event_type" in value:
        return "native"
    if "key" in value and any(k in value for k in ("run_id", "feedback_source", "score", "correction")):
        return "langsmith"
    if "name" in value and any(k in value for k in ("traceId", "observationId", "dataType", "stringValue")):
        return "langfuse"
    return None


def _is_page(value: Any) -> bool:
    """A Langfuse / LangSmith API page: {"data": [...], "meta": {...}} (or a bare {"data": [...]})."""
    return isinstance(value, dict) and isinstance(value.get("data"), list) and detect_format(value) is None


def _first(mapping: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def map_native(value: dict[str, Any]) -> dict[str, Any]:
    """A native feedback record as canonical fields (values unchecked: the row rules check them)."""
    row = {name: _first(value, keys) for name, keys in NATIVE_KEYS.items()}
    for name in ("event_id", "span_id", "trace_id", "user_id", "session_id"):
        row[name] = as_str(row[name])
    return row


def _is_false(signal: Any) -> bool:
    if isinstance(signal, bool):
        return not signal
    if isinstance(signal, int | float):
        return signal == 0
    if isinstance(signal, str):
        return normalise_name(signal) in {"false", "no", "0"}
    return False


def _polarity(signal: Any, name: str, what: str) -> bool:
    """True for a positive thumbs / correctness value, False for a negative one; _Problem otherwise."""
    if isinstance(signal, bool):
        return signal
    if isinstance(signal, int | float) and math.isfinite(signal):
        if what == "correctness" and 0 <= signal <= 1:
            return signal >= 0.5
        if signal in (1, 0, -1):
            return signal > 0
    if isinstance(signal, str):
        word = normalise_name(signal)
        if word in POSITIVE_WORDS:
            return True
        if word in NEGATIVE_WORDS:
            return False
    expected = "true/false or 0..1" if what == "correctness" else "true/false, 1/0/-1 or up/down"
    raise _Problem("invalid_type", f"'{name}' value {signal!r} is not a {what} value ({expected})")


def _interpret(kind: str, name: str, signal: Any, row: dict[str, Any], extra: dict[str, Any],
               label: Any = None) -> None:
    """Fill event_type / value / reason of `row` from a mapped score; _Problem when it cannot be read.

    `signal` is the value read as the score; `label` a categorical value next to it (LangSmith `value`).
    """
    if isinstance(signal, int | float) and not isinstance(signal, bool):
        row["value"] = signal
    if kind in ("thumbs", "correctness"):
        positive = _polarity(signal, name, kind)
        row["event_type"] = "thumbs_up" if positive else "thumbs_down"
        if not positive:
            row["reason"] = "incorrect_information" if kind == "correctness" else _reason_from(extra, signal, label)
        return
    if kind == "rating":
        if isinstance(signal, str):
            try:
                signal = float(signal)
            except ValueError:
                raise _Problem("invalid_rating", f"'{name}' value {signal!r} is not a number") from None
        if signal is None or isinstance(signal, bool) or not isinstance(signal, int | float):
            raise _Problem("invalid_rating", f"'{name}' has no numeric value (got {signal!r})")
        row["event_type"], row["value"] = "rating", signal
        return
    # A flag: the event happened unless the score says false.
    if signal is not None and _is_false(signal):
        raise _Problem("not_a_signal", f"'{name}' is {signal!r}: no {kind} event")
    row["event_type"] = kind
    if kind == "thumbs_down":
        row["reason"] = _reason_from(extra, signal, label)
    if kind == "session_abandoned":
        row["duration_seconds"] = extra.get("duration_seconds")


def _reason_from(extra: dict[str, Any], *labels: Any) -> Any:
    """A thumbs-down reason from the record's metadata, else a categorical value that names one."""
    if extra.get("reason") is not None:
        return extra["reason"]
    for label in labels:
        if isinstance(label, str) and normalise_name(label) in THUMBS_DOWN_REASONS:
            return label
    return None


def _kind_of(name: Any, settings: FeedbackSettings) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _Problem("missing_required_field", f"score name is missing or not a string ({name!r})")
    key = normalise_name(name)
    kind = settings.score_name_map.get(key) or NAME_KINDS.get(key)
    if kind is None:
        raise _Problem("unsupported_record", f"score name '{name}' is not mapped to a feedback event "
                       "(add it to feedback.score_name_map)")
    return kind


def _check_source(source: Any, settings: FeedbackSettings) -> None:
    if isinstance(source, str) and source.strip().lower() in settings.ignored_sources:
        raise _Problem("not_user_feedback", f"source '{source}' is an automated evaluator, not a user")


def map_langfuse(value: dict[str, Any], settings: FeedbackSettings) -> dict[str, Any]:
    """A Langfuse score (GET /api/public/scores item) as canonical fields; _Problem when it is not one."""
    source = value.get("source")
    _check_source(source, settings)
    metadata = _dict(value.get("metadata"))
    row: dict[str, Any] = {
        "event_id": as_str(value.get("id")),
        "span_id": as_str(value.get("observationId")),
        "trace_id": as_str(value.get("traceId")),
        "session_id": as_str(value.get("sessionId")),
        "user_id": as_str(_first(_dict(value.get("trace")), ("userId",)) or _first(metadata, ("userId", "user_id"))),
        "comment": value.get("comment"),
        "timestamp": _first(value, ("timestamp", "createdAt")),
        "source": source.lower() if isinstance(source, str) else source,
    }
    data_type = str(value.get("dataType") or "").upper()
    if data_type == "CORRECTION":
        row["event_type"] = "edited"
        row["edited_text"] = _first(value, ("stringValue", "value"))
        return row
    name = value.get("name")
    kind = _kind_of(name, settings)
    signal = value.get("stringValue") if data_type == "CATEGORICAL" else value.get("value")
    _interpret(kind, name, signal, row, metadata)
    return row


def map_langsmith(value: dict[str, Any], settings: FeedbackSettings) -> dict[str, Any]:
    """A LangSmith feedback record (`langsmith.schemas.Feedback`) as canonical fields; _Problem if not one."""
    feedback_source = _dict(value.get("feedback_source"))
    source = feedback_source.get("type")
    _check_source(source, settings)
    extra = {**_dict(_dict(value.get("extra")).get("metadata")), **_dict(value.get("extra")),
             **_dict(feedback_source.get("metadata"))}
    row: dict[str, Any] = {
        "event_id": as_str(value.get("id")),
        "span_id": as_str(value.get("run_id")),
        "trace_id": as_str(value.get("trace_id")),
        "user_id": as_str(_first(extra, ("user_id", "userId"))),
        "session_id": as_str(_first(extra, ("session_id", "thread_id", "conversation_id"))),
        "comment": value.get("comment"),
        "timestamp": _first(value, ("created_at", "modified_at")),
        "source": source.lower() if isinstance(source, str) else source,
    }
    correction = value.get("correction")
    if correction is not None:
        row["event_type"] = "edited"
        row["edited_text"] = correction if isinstance(correction, str) else orjson.dumps(correction).decode()
        if isinstance(value.get("score"), int | float) and not isinstance(value.get("score"), bool):
            row["value"] = value["score"]
        return row
    name = value.get("key")
    kind = _kind_of(name, settings)
    signal = value.get("score") if value.get("score") is not None else value.get("value")
    _interpret(kind, name, signal, row, extra, label=value.get("value"))
    return row


# ------------------------------------------------------------------------------------------------ row rules
def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Problem("invalid_type", f"field '{name}' must be a number, got {_short(value)}")
    if name == "diff_size" and value != int(value):
        raise _Problem("invalid_type", f"field '{name}' must be an integer, got {_short(value)}")
    return float(value)


def derive_event_id(span_id: str | None, trace_id: str | None, user_id: str | None, event_type: str,
                    timestamp: pd.Timestamp) -> str:
    """A stable id for an event without one, from what makes it the same event twice."""
    key = "\x1f".join([span_id or f"trace:{trace_id}", user_id or "", event_type, timestamp.isoformat()])
    return "derived-" + hashlib.sha1(key.encode()).hexdigest()[:32]


def check_row(row: dict[str, Any], settings: FeedbackSettings) -> dict[str, Any]:
    """Validate and normalise one candidate event; raise _Problem with the first rule it breaks."""
    for name in ("event_type", "timestamp"):
        if _blank(row.get(name)):
            raise _Problem("missing_required_field", f"required field '{name}' is missing or empty")
    if _blank(row.get("span_id")) and _blank(row.get("trace_id")):
        raise _Problem("missing_required_field", "required field 'span_id' (or 'trace_id') is missing or empty")
    out = dict(row)
    for name in STRING_FIELDS:
        value = out.get(name)
        if value is not None and not isinstance(value, str):
            raise _Problem("invalid_type", f"field '{name}' must be a string, got {type(value).__name__} "
                                           f"{_short(value)}")
        out[name] = None if _blank(value) else value
    numbers = {name: _number(out, name) for name in NUMBER_FIELDS}
    try:
        stamp = parse_time(out["timestamp"])
    except (ValueError, TypeError, OverflowError, OSError):
        stamp = None
    if stamp is None:
        raise _Problem("invalid_type", f"field 'timestamp' is not a timestamp: {_short(out['timestamp'])}")
    out["timestamp"] = pd.Timestamp(stamp)

    event_type = normalise_name(out["event_type"])
    if event_type not in FEEDBACK_EVENT_TYPES:
        raise _Problem("invalid_event_type", f"field 'event_type' is {_short(out['event_type'])}; allowed: "
                       f"{', '.join(FEEDBACK_EVENT_TYPES)}")
    out["event_type"] = event_type
    _check_source(out.get("source"), settings)
    for name in ("duration_seconds", "diff_size"):
        if numbers[name] is not None and numbers[name] < 0:
            raise _Problem("negative_value", f"field '{name}' is {numbers[name]:g}, below 0")
    if event_type == "rating":
        rating = numbers["value"]
        if rating is None:
            raise _Problem("invalid_rating", "field 'value' is missing: a rating event needs a value 1..5")
        if not RATING_MIN <= rating <= RATING_MAX:
            raise _Problem("invalid_rating", f"field 'value' is {rating:g}; a rating must be {RATING_MIN}..{RATING_MAX}")
    if out["reason"] is not None:
        reason = normalise_name(out["reason"])
        if event_type != "thumbs_down":
            raise _Problem("invalid_reason", f"field 'reason' ({_short(out['reason'])}) is only allowed on "
                                             f"thumbs_down, not {event_type}")
        if reason not in THUMBS_DOWN_REASONS:
            raise _Problem("invalid_reason", f"field 'reason' is {_short(out['reason'])}; allowed: "
                                             f"{', '.join(THUMBS_DOWN_REASONS)}")
        out["reason"] = reason
    if event_type == "session_abandoned":
        duration = numbers["duration_seconds"]
        if duration is None:
            raise _Problem("missing_required_field", "field 'duration_seconds' is required for session_abandoned")
        if duration >= settings.abandon_threshold_seconds:
            raise _Problem("not_a_signal", f"field 'duration_seconds' is {duration:g}: a session of at least "
                           f"{settings.abandon_threshold_seconds:g} s is not an abandonment")
    for name in STRING_FIELDS:
        if isinstance(out[name], str) and "\x00" in out[name]:
            raise _Problem("invalid_encoding", f"field '{name}' contains a NUL character")

    out.update(numbers)
    if out["original_text"] is not None and out["edited_text"] is not None:
        out["diff_size"] = Levenshtein.distance(out["original_text"], out["edited_text"])
    elif out["diff_size"] is not None:
        out["diff_size"] = int(out["diff_size"])
    if out["event_id"] is None:
        out["event_id"] = derive_event_id(out["span_id"], out["trace_id"], out["user_id"], event_type,
                                          out["timestamp"])
    return out


# ------------------------------------------------------------------------------------------------ reading
def _candidates(item: RawRecord) -> Iterator[tuple[str, Any, str]]:
    """(location suffix, value, raw text) for a record, expanding API pages into their items."""
    if _is_page(item.value):
        for index, value in enumerate(item.value["data"]):
            yield f" data[{index}]", value, orjson.dumps(value).decode()
    else:
        yield "", item.value, item.text


def _map(value: Any, fmt: str | None, settings: FeedbackSettings) -> dict[str, Any]:
    """Canonical fields of a record of the detected format; _Problem when there is no format."""
    if fmt is None:
        if isinstance(value, dict):
            keys = ", ".join(sorted(value)[:8])
            raise _Problem("unknown_format", f"not a native, Langfuse or LangSmith feedback record (keys: {keys})")
        raise _Problem("invalid_type", f"a feedback record must be a JSON object, got {type(value).__name__}")
    if fmt == "native":
        return map_native(value)
    return map_langfuse(value, settings) if fmt == "langfuse" else map_langsmith(value, settings)


def _ids(value: Any) -> tuple[str | None, str | None]:
    """(span_id, trace_id) of a raw record, for the quarantine row, whatever its format."""
    if not isinstance(value, dict):
        return None, None
    span = _first(value, ("span_id", "response_id", "observationId", "run_id"))
    trace = _first(value, ("trace_id", "traceId"))
    return (span if isinstance(span, str) else None), (trace if isinstance(trace, str) else None)


def read_feedback_file(path: Source, source_file: str, settings: FeedbackSettings) -> _FileRead:
    """Read one feedback file into candidate events (row rules applied) and rejects."""
    read = _FileRead(path=path, source_file=source_file)
    try:
        for item in iter_records(path):
            read.records_read += 1
            if isinstance(item, Reject):
                if item.reason == "corrupt_gzip":
                    read.records_read -= 1  # the damaged tail is not a record, but it is reported
                    read.file_error = item.detail
                read.rejects.append(item)
                continue
            for where, value, raw in _candidates(item):
                fmt = detect_format(value)
                span_id, trace_id = _ids(value)
                try:
                    row = check_row(_map(value, fmt, settings), settings)
                except _Problem as problem:
                    read.rejects.append(Reject(problem.reason, f"line {item.number}{where}: {problem.detail}",
                                               item.number, raw, span_id, trace_id, fmt))
                    continue
                read.formats[fmt] += 1
                row["source_format"] = fmt
                row["source_line"] = item.number
                row["_where"] = where
                read.rows.append(row)
    except UnreadableFile as exc:
        read.file_error = str(exc)
        read.rejects.append(Reject("unreadable_file", str(exc)))
    return read


def _utc_hour(export_hour: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(export_hour)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def ingest_feedback_files(files: Iterable[Source], export_hour: datetime, feedback_root: str | Path | Store,
                          settings: FeedbackSettings | None = None) -> FeedbackIngest:
    """Read, validate and deduplicate the given feedback files as the export hour `export_hour`."""
    settings = settings or FeedbackSettings()
    hour = _utc_hour(export_hour)
    reads: list[_FileRead] = []
    for path in files:
        source_file = source_name(path, feedback_root)
        read = read_feedback_file(path if isinstance(path, StoreObject) else Path(path), source_file, settings)
        if read.file_error:
            log.warning("feedback file %s could not be read in full: %s", source_file, read.file_error)
        reads.append(read)

    quarantine: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    first_seen: dict[str, str] = {}
    for read in reads:
        for reject in read.rejects:
            quarantine.append({
                "source_file": read.source_file, "source_line": reject.number,
                "source_format": reject.source_format, "trace_id": reject.trace_id, "span_id": reject.span_id,
                "reason": reject.reason, "detail": f"{read.source_file}: {reject.detail}", "raw": reject.raw,
            })
        # Dedupe in file, then line order: the first copy of an event is kept, later ones are quarantined.
        for row in read.rows:
            where = f"{read.source_file}:{row['source_line']}{row.pop('_where')}"
            seen = first_seen.get(row["event_id"])
            if seen is None:
                first_seen[row["event_id"]] = where
                row["source_file"] = read.source_file
                kept.append(row)
                continue
            what = (f"event_id '{row['event_id']}'" if not row["event_id"].startswith("derived-") else
                    "an event without event_id with the same (span_id, user_id, event_type, timestamp)")
            quarantine.append({
                "source_file": read.source_file, "source_line": row["source_line"],
                "source_format": row["source_format"], "trace_id": row["trace_id"], "span_id": row["span_id"],
                "reason": "duplicate_event_id", "detail": f"{where}: {what} was already read at {seen}",
                "raw": orjson.dumps(_raw_event(row)).decode(),
            })
    events = _events_frame(kept, hour)
    quarantined = _quarantine_frame(quarantine, hour)
    audit = _audit(reads, events, quarantined, hour)
    return FeedbackIngest(events, quarantined, audit)


def _raw_event(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()}


def _events_frame(rows: list[dict[str, Any]], hour: pd.Timestamp) -> pd.DataFrame:
    if not rows:
        return empty_frame(FEEDBACK_COLUMNS)
    frame = pd.DataFrame(rows)
    frame["export_hour"] = hour
    frame["schema_version"] = SCHEMA_VERSION
    return conform(frame, FEEDBACK_COLUMNS)


def _quarantine_frame(rows: list[dict[str, Any]], hour: pd.Timestamp) -> pd.DataFrame:
    if not rows:
        return empty_frame(QUARANTINE_COLUMNS)
    frame = pd.DataFrame(rows)
    frame["export_hour"] = hour
    frame["schema_version"] = SCHEMA_VERSION
    frame["raw"] = [Reject("x", "", raw=r).raw if isinstance(r, str) else None for r in frame["raw"]]
    return conform(frame, QUARANTINE_COLUMNS)


def _audit(reads: list[_FileRead], events: pd.DataFrame, quarantined: pd.DataFrame,
           hour: pd.Timestamp) -> pd.DataFrame:
    """One row per file: records read, events found / written / quarantined (by reason), late events."""
    late = events[(events["timestamp"] < hour) | (events["timestamp"] >= hour + HOUR)]
    late_by_file = Counter(late["source_file"])
    written_by_file = Counter(events["source_file"])
    rows = []
    for read in reads:
        q = quarantined[quarantined["source_file"] == read.source_file]
        rows.append({
            "export_hour": hour,
            "source_file": read.source_file,
            "source_format": read.formats.most_common(1)[0][0] if read.formats else None,
            "records_read": read.records_read,
            # Counted before dedupe, so found = written + quarantined checks the whole path.
            "events_found": len(read.rows) + len(read.rejects),
            "events_written": written_by_file.get(read.source_file, 0),
            "events_quarantined": len(q),
            "quarantined_by_reason": orjson.dumps(dict(sorted(Counter(q["reason"]).items()))).decode(),
            "late_events": late_by_file.get(read.source_file, 0),
            "file_error": read.file_error,
            "schema_version": SCHEMA_VERSION,
        })
    if not rows:
        return empty_frame(FEEDBACK_AUDIT_COLUMNS)
    return conform(pd.DataFrame(rows), FEEDBACK_AUDIT_COLUMNS)


def ingest_feedback_partition(feedback_root: str | Path | Store, export_hour: datetime,
                              settings: FeedbackSettings | None = None,
                              layout: str | Layout = DEFAULT_LAYOUT) -> FeedbackIngest:
    """Ingest every feedback file of one export hour (by default FEEDBACK_ROOT/YYYY/MM/DD/HH/*.jsonl[.gz]).

    Under a layout filed by day, the day's files are read once, in the day's first hour: feedback is joined
    to responses by id, not by the hour it lands in, so no event is split across hours or read twice."""
    layout = parse_layout(layout) if isinstance(layout, str) else layout
    store = open_root(feedback_root)
    files = partition_files(store, export_hour, layout)
    if layout.daily and not layout.window(export_hour).keeps_timeless:
        files = []
    return ingest_feedback_files(files, export_hour, store, settings)


# ------------------------------------------------------------------------------------------------ responses
RESPONSE_ATTRIBUTES: tuple[str, ...] = ("feature", "endpoint", "model", "prompt_name", "prompt_version")
JOIN_COLUMNS: tuple[str, ...] = (
    "response_span_id", "resolved_by", "response_found", *RESPONSE_ATTRIBUTES, "response_start_time",
    "response_hour", "feedback_delay_seconds",
)


def _final_responses(spans: pd.DataFrame) -> pd.Series:
    """trace_id -> span id of the answer the user saw: the trace's last LLM span, else its first span."""
    ordered = spans.sort_values(["start_time", "span_id"], kind="stable")
    first = ordered.groupby("trace_id", sort=False)["span_id"].first()
    if "kind" in spans.columns:
        llm_last = ordered[ordered["kind"] == "llm"].groupby("trace_id", sort=False)["span_id"].last()
        first.update(llm_last)
    return first


def join_to_responses(events: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Attach the response's feature, model, prompt version and hour to each event, by span id.

    `spans` may cover many partitions (feedback arrives hours after its response). An event that names a
    span is matched on it; one that names only a trace is matched to the trace's final LLM span. Events
    whose response is not in `spans` are kept with `response_found = False` and null attributes.
    Missing trace/user/session ids on an event are filled from its response.
    """
    out = events.reset_index(drop=True).copy()
    needed = ["span_id", "trace_id", "start_time", "end_time", "kind", "user_id", "session_id",
              *RESPONSE_ATTRIBUTES]
    present = spans[[c for c in needed if c in spans.columns]].copy()
    for column in needed:
        if column not in present.columns:
            present[column] = pd.NaT if column.endswith("_time") else None
    present["start_time"] = pd.to_datetime(present["start_time"], utc=True)
    present["end_time"] = pd.to_datetime(present["end_time"], utc=True)
    # The same span read in two partitions (a re-sent export) is one response.
    present = present.drop_duplicates("span_id", keep="first").set_index("span_id", drop=False)

    by_span = out["span_id"].where(out["span_id"].isin(present.index))
    finals = _final_responses(present.reset_index(drop=True)) if len(present) else pd.Series(dtype=object)
    by_trace = out["trace_id"].map(finals).where(out["span_id"].isna())
    out["response_span_id"] = by_span.combine_first(by_trace).astype(object)
    out["resolved_by"] = np.where(by_span.notna(), "span_id", np.where(by_trace.notna(), "trace_id", None))
    out["resolved_by"] = out["resolved_by"].astype(object).where(out["response_span_id"].notna(), None)
    out["response_found"] = out["response_span_id"].notna()

    matched = present.reindex(out["response_span_id"]).reset_index(drop=True)
    for column in ("trace_id", "user_id", "session_id"):
        out[column] = out[column].where(out[column].notna(), matched[column]).astype(object)
        out[column] = out[column].where(out[column].notna(), None)
    for column in RESPONSE_ATTRIBUTES:
        out[column] = matched[column].astype(object).where(matched[column].notna(), None)
    out["response_start_time"] = matched["start_time"]
    out["response_hour"] = matched["start_time"].dt.floor("h")
    answered = matched["end_time"].where(matched["end_time"].notna(), matched["start_time"])
    out["feedback_delay_seconds"] = (pd.to_datetime(out["timestamp"], utc=True) - answered).dt.total_seconds()
    return out


def unknown_responses(joined: pd.DataFrame) -> pd.DataFrame:
    """The events of a `join_to_responses` result whose response was not found."""
    return joined[~joined["response_found"]].reset_index(drop=True)
