"""Reader for OTLP/JSON log exports, and the join of GenAI content events into their spans.

Instrumentations that send prompt and completion content as OpenTelemetry log records ("events") instead of
span attributes: OpenLLMetry with `use_legacy_attributes=False`, the official OpenTelemetry instrumentation
in an event mode (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=EVENT_ONLY` / `SPAN_AND_EVENT`), anything
routed through the Collector's logs pipeline. A record is one `ExportLogsServiceRequest` as the Collector's
`file` and `awss3` exporters write it with the `otlp_json` marshaler (one per line, gzip or not), or a whole
pretty-printed request. The envelope is read as `otlp` reads spans (camelCase or snake_case, hex or base64
ids, every AnyValue form, a kvlist `body`), with its helpers.

Each log record becomes one of:
* a `SpanEvent`, when it is a GenAI content event (`GENAI_EVENTS`; the name from the record's `eventName`
  field, OTLP 1.5+, else its `event.name` attribute) with a trace and span id;
* a `Reject`: a GenAI event without ids (`missing_required_field`), one of a name aiobs does not join
  (`unsupported_record`), or an unreadable record (`invalid_type`);
* a `SkippedRecord`, for any other log record (plain application logs): counted in the audit as
  `records_ignored`, not stored.

`join_events` runs in the hour's ingest (`partition.ingest_files`) once every file of the hour is read. A
span's events (any file of the hour) are put in emission order and mapped by `otlp.messages_from_events`
exactly as span events are; the result fills the span's `input_messages`, `output_messages` and
`output_text` only where the span has none of its own (content from attributes wins, nothing is repeated).
An event whose span is not among the hour's spans is quarantined as `orphan_event`: events are never joined
across export hours. The whole join is a function of the hour's files, so re-ingesting an hour gives the
same rows. The rules are documented in docs/formats.md ("OTLP/JSON logs").
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import pandas as pd

from aiobs_pipeline.ingest.base import RawRecord, Reject, SkippedRecord, SpanEvent
from aiobs_pipeline.ingest.messages import dump_json, reply_text

# The envelope helpers are otlp's own (private there, shared here) so both signals are decoded alike.
from aiobs_pipeline.ingest.otlp import (
    DETAILS_EVENT,
    MESSAGE_EVENTS,
    MalformedSpan,
    Signal,
    _get,
    _nanos,
    decode_attributes,
    hex_id,
    messages_from_events,
    reject,
    walk_request,
)
from aiobs_pipeline.ingest.otlp import any_value as decode_any_value

FORMAT = "otlp_logs"

# The GenAI events joined into spans: per-message and choice events (semantic conventions up to v1.36),
# OpenLLMetry's older prompt/completion events, and the inference details event (v1.37+).
GENAI_EVENTS: frozenset[str] = frozenset({
    *MESSAGE_EVENTS, "gen_ai.choice", DETAILS_EVENT, "gen_ai.content.prompt", "gen_ai.content.completion"})
# Keys of a log record's attributes that name the event rather than carry content.
_NAME_ATTRIBUTES = ("event.name",)
# Span columns the join fills (when the span has none of its own).
CONTENT_COLUMNS = ("input_messages", "output_messages", "output_text")
# Resource attributes an event without ids must share with the span it is matched to by time.
_RESOURCE_KEYS = ("service.name", "service.instance.id")
# The span columns the join looks at.
_READ_COLUMNS = (*CONTENT_COLUMNS, "metadata", "kind")
# Span kinds an event without ids can be matched to.
_TIMED_KINDS = ("llm", "embedding")


def matches(value: Any) -> bool:
    """An OTLP logs request: an object with `resourceLogs` (or `resource_logs`)."""
    return isinstance(value, dict) and ("resourceLogs" in value or "resource_logs" in value)


def read(records: Iterable[RawRecord]) -> Iterator[SpanEvent | SkippedRecord | Reject]:
    """Turn OTLP logs requests into span events, skipped plain log records and rejects, one per log record."""
    for record in records:
        yield from _read_request(record)


LOGS = Signal("ExportLogsServiceRequest", ("resourceLogs", "resource_logs"),
              ("scopeLogs", "scope_logs", "instrumentationLibraryLogs", "instrumentation_library_logs"),
              ("logRecords", "log_records", "logs"), FORMAT, "; write traces and logs to separate files")


def _reject(reason: str, record: RawRecord, where: str, message: str, raw: Any,
            span_id: str | None = None, trace_id: str | None = None) -> Reject:
    return reject(reason, record, where, message, raw, span_id, trace_id, source_format=FORMAT)


def _read_request(record: RawRecord) -> Iterator[SpanEvent | SkippedRecord | Reject]:
    for found in walk_request(record, LOGS):
        if isinstance(found, Reject):
            yield found
        else:
            log_record, where, resource, _ = found
            yield _read_log_record(log_record, record, where, resource)


def event_name(log_record: dict[str, Any], attributes: dict[str, Any]) -> Any:
    """The event name of a log record: its `eventName` field (OTLP 1.5+), else its `event.name` attribute."""
    name = _get(log_record, "eventName", "event_name")
    if name in (None, ""):
        name = next((attributes[k] for k in _NAME_ATTRIBUTES if attributes.get(k) not in (None, "")), None)
    return name


def _read_log_record(log_record: Any, record: RawRecord, where: str,
                     resource: dict[str, Any] | None = None) -> SpanEvent | SkippedRecord | Reject:
    if not isinstance(log_record, dict):
        return _reject("invalid_type", record, where, f"expected a log record object, got "
                       f"{type(log_record).__name__}", log_record)
    items = _get(log_record, "attributes")
    if items is not None and not isinstance(items, list):
        return _reject("invalid_type", record, where, f"field 'attributes' must be a list of {{key, value}}, got "
                       f"{type(items).__name__}", log_record)
    attributes, bad = decode_attributes(items or [])
    name = event_name(log_record, attributes)
    if name is not None and not isinstance(name, str):
        return _reject("invalid_type", record, where, f"the event name must be a string, got {type(name).__name__} "
                       f"{name!r}"[:200], log_record)
    if name is None or not name.startswith("gen_ai."):
        return SkippedRecord(record.number, f"{where}: not a GenAI event (event name {name!r})")
    try:
        trace_id = hex_id(_get(log_record, "traceId", "trace_id"), "traceId")
        span_id = hex_id(_get(log_record, "spanId", "span_id"), "spanId")
    except MalformedSpan as exc:
        return _reject("invalid_type", record, where, f"GenAI event '{name}': {exc}", log_record)
    # An all-zero id is how some SDKs write a record emitted outside any span.
    trace_id = trace_id if trace_id and trace_id.strip("0") else None
    span_id = span_id if span_id and span_id.strip("0") else None
    if name not in GENAI_EVENTS:
        known = ", ".join(sorted(GENAI_EVENTS))
        return _reject("unsupported_record", record, where, f"GenAI event '{name}' is not one aiobs joins into spans "
                       f"(joined: {known})", log_record, span_id, trace_id)
    missing = [field for field, value in (("traceId", trace_id), ("spanId", span_id)) if value is None]
    if len(missing) == 1:
        return _reject("missing_required_field", record, where, f"GenAI event '{name}' has no {' or '.join(missing)}, so "
                       "it cannot be joined to a span (was it emitted outside the span's context?)", log_record,
                       span_id, trace_id)
    if bad:
        keys = ", ".join(str(b.get("key")) if isinstance(b, dict) else type(b).__name__ for b in bad)
        return _reject("invalid_type", record, where, f"GenAI event '{name}': unreadable attributes: {keys}"[:300],
                       log_record, span_id, trace_id)
    try:
        body = decode_any_value(_get(log_record, "body"))
    except (ValueError, TypeError, OverflowError) as exc:
        return _reject("invalid_type", record, where, f"GenAI event '{name}': field 'body': {exc}", log_record,
                       span_id, trace_id)
    content = {k: v for k, v in attributes.items() if k not in _NAME_ATTRIBUTES}
    if isinstance(body, dict):
        content.update(body)  # the body carries the message; the attributes say which system sent it
    elif body is not None:
        content["content"] = body
    time = _nanos(_get(log_record, "timeUnixNano", "time_unix_nano")) or \
        _nanos(_get(log_record, "observedTimeUnixNano", "observed_time_unix_nano"))
    # Both ids missing: emitted outside the span's context (OpenLLMetry and OpenLIT emit a stream's last
    # event so); `join_events` matches it by time, or quarantines it.
    return SpanEvent(trace_id=trace_id, span_id=span_id, name=name, time=time if isinstance(time, datetime) else None,
                     attributes=content, number=record.number, where=where, raw=dump_json(log_record),
                     source_format=FORMAT, resource={k: v for k, v in (resource or {}).items() if k in _RESOURCE_KEYS})


# ---------------------------------------------------------------------------------------------------------
# The join, over one export hour.


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, list | str) and len(value) == 0)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"aiobs.unparsed_metadata": value}
        return parsed if isinstance(parsed, dict) else {"aiobs.unparsed_metadata": value}
    return {}


def _ordered(events: list[tuple[int, SpanEvent]]) -> list[SpanEvent]:
    """A span's events in emission order: by time, ties (and events without a time) by file and position."""
    if all(e.time is not None for _, e in events):
        return [e for _, e in sorted(events, key=lambda p: (p[1].time, p[0]))]
    return [e for _, e in sorted(events, key=lambda p: p[0])]


def join_events(frames: Sequence[pd.DataFrame | None], events: Sequence[tuple[int, SpanEvent]], hour_label: str,
                elsewhere: dict[tuple[str, str], str] | None = None
                ) -> tuple[dict[int, int], list[tuple[int, Reject]]]:
    """Join span events into the span rows of one export hour, in place.

    `frames` are the hour's candidate span rows, one frame per file (None for a file without rows); `events`
    are (file index, event) in reading order; `elsewhere` says, for spans of the hour that are not in
    `frames` (quarantined, or read by a fast path), where they went. Returns events joined per file index
    and one `orphan_event` reject per event whose span is not in `frames`, with its file index.
    """
    index: dict[tuple[str, str], tuple[int, int]] = {}
    for f, frame in enumerate(frames):
        if frame is None or not len(frame) or "span_id" not in frame or "trace_id" not in frame:
            continue
        for position, (trace_id, span_id) in enumerate(zip(frame["trace_id"], frame["span_id"], strict=True)):
            if isinstance(trace_id, str) and isinstance(span_id, str):
                index.setdefault((trace_id, span_id), (f, position))  # the first copy, as the dedupe keeps
    by_span: dict[tuple[str, str], list[tuple[int, SpanEvent]]] = {}
    file_of: dict[int, int] = {}
    rejects: list[tuple[int, Reject]] = []
    running = _running_spans(frames) if any(e.span_id is None for _, e in events) else None
    timed: set[int] = set()
    for sequence, (f, event) in enumerate(events):
        file_of[sequence] = f
        if event.trace_id is None or event.span_id is None:
            key, problem = _match_by_time(event, running)
            if key is None:
                rejects.append((f, _unmatched(event, problem)))
                continue
            event.trace_id, event.span_id = key
            timed.add(sequence)
        by_span.setdefault((event.trace_id, event.span_id), []).append((sequence, event))
    joined: Counter[int] = Counter()
    updates: dict[int, dict[int, dict[str, Any]]] = {}
    # The columns `_content` reads, as lists: a pandas lookup per span would cost more than the mapping.
    current: dict[int, dict[str, list[Any]]] = {}
    for key, group in by_span.items():
        target = index.get(key)
        if target is None:
            for sequence, event in group:
                rejects.append((file_of[sequence], _orphan(event, hour_label, (elsewhere or {}).get(key))))
            continue
        f, position = target
        if f not in current:
            current[f] = {c: frames[f][c].tolist() for c in _READ_COLUMNS if c in frames[f]}  # type: ignore[index]
        row = {c: values[position] for c, values in current[f].items()}
        try:
            changes = _content(row, _ordered(group), sum(1 for sequence, _ in group if sequence in timed))
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            # Content of shapes no convention allows must not stop the hour: the span keeps its own.
            rejects.extend((file_of[sequence], _unmappable(event, exc)) for sequence, event in group)
            continue
        updates.setdefault(f, {})[position] = changes
        joined.update(file_of[sequence] for sequence, _ in group)
    for f, changes in updates.items():
        _apply(frames[f], changes)  # type: ignore[arg-type]
    return dict(joined), rejects


def _unmappable(event: SpanEvent, exc: Exception) -> Reject:
    return Reject(
        "invalid_type",
        f"record {event.number}: {event.where}: GenAI event '{event.name}' for trace {event.trace_id} span "
        f"{event.span_id}: the span's events could not be mapped to messages: {exc!r}"[:600],
        event.number, event.raw, span_id=event.span_id, trace_id=event.trace_id, source_format=event.source_format)


def _orphan(event: SpanEvent, hour_label: str, elsewhere: str | None) -> Reject:
    where = (f"its span is in this export hour but {elsewhere}" if elsewhere else
             "the span must be in a span file of the same export hour (the same landing folder); "
             "events are not joined across hours")
    return Reject(
        "orphan_event",
        f"record {event.number}: {event.where}: GenAI event '{event.name}' for trace {event.trace_id} span "
        f"{event.span_id}: no span with that trace and span id in export hour {hour_label}; {where}",
        event.number, event.raw, span_id=event.span_id, trace_id=event.trace_id, source_format=event.source_format)


class _Running:
    """The hour's LLM and embedding spans by start time, to find the ones running at an instant quickly."""

    def __init__(self, spans: list[tuple[Any, Any, tuple[str, str], dict[str, Any]]]) -> None:
        self.spans = sorted(spans, key=lambda s: s[0])
        self.starts = [s[0] for s in self.spans]
        self.longest = max((end - start for start, end, _, _ in self.spans), default=timedelta(0))

    def at(self, time: datetime) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """(key, resource) of the spans whose [start, end] holds `time`."""
        # Only spans starting within the longest span's duration before `time` can still be running then.
        low, high = bisect_left(self.starts, time - self.longest), bisect_right(self.starts, time)
        return [(key, resource) for start, end, key, resource in self.spans[low:high] if start <= time <= end]


def _running_spans(frames: Sequence[pd.DataFrame | None]) -> _Running:
    """The hour's LLM and embedding spans with readable times and ids, with their resources."""
    out = []
    for frame in frames:
        if frame is None or not len(frame) or not {"trace_id", "span_id", "start_time", "end_time"} <= set(frame):
            continue
        kinds = frame["kind"] if "kind" in frame else pd.Series([None] * len(frame), index=frame.index)
        apps = frame["app"] if "app" in frame else pd.Series([None] * len(frame), index=frame.index)
        metas = frame["metadata"] if "metadata" in frame else pd.Series([None] * len(frame), index=frame.index)
        for trace_id, span_id, kind, start, end, app, meta in zip(
                frame["trace_id"], frame["span_id"], kinds, frame["start_time"], frame["end_time"], apps, metas,
                strict=True):
            if kind not in _TIMED_KINDS or not isinstance(start, datetime) or not isinstance(end, datetime) \
                    or not isinstance(trace_id, str) or not isinstance(span_id, str):
                continue
            resource = dict((meta if isinstance(meta, dict) else _as_dict(meta)).get("otel.resource") or {})
            if isinstance(app, str):
                resource.setdefault("service.name", app)
            out.append((start, end, (trace_id, span_id), resource))
    return _Running(out)


def _match_by_time(event: SpanEvent, running: _Running | None) -> tuple[tuple[str, str] | None, str]:
    """The one span of the same service running when an event without ids was emitted, else why not."""
    if event.time is None or running is None:
        return None, "and no time to match it to a span by"
    candidates = {key for key, resource in running.at(event.time) if _same_service(event.resource, resource)}
    if len(candidates) == 1:
        return candidates.pop(), ""
    return None, (f"and {len(candidates)} LLM or embedding spans of the same service in this export hour were "
                  f"running at its time {event.time.isoformat()} (it is matched by time only to exactly one)")


def _same_service(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether two resources may be one process: the same instance id when both have one, else the same
    service name when both name one (the SDK's `unknown_service` placeholder names none: an app often sets
    its resource on the tracer provider only)."""
    if mine.get("service.instance.id") and theirs.get("service.instance.id"):
        return mine["service.instance.id"] == theirs["service.instance.id"]
    names = [r.get("service.name") for r in (mine, theirs)]
    if all(isinstance(n, str) and n and not n.startswith("unknown_service") for n in names):
        return names[0] == names[1]
    return True


def _unmatched(event: SpanEvent, problem: str) -> Reject:
    return Reject(
        "missing_required_field",
        f"record {event.number}: {event.where}: GenAI event '{event.name}' has no traceId or spanId (emitted "
        f"outside the span's context) {problem}",
        event.number, event.raw, source_format=event.source_format)


def _content(row: dict[str, Any], events: list[SpanEvent], timed: int = 0) -> dict[str, Any]:
    """The column values a span (`row`: its `_READ_COLUMNS`) gets from its events: content only where it has none."""
    current = row.get
    inputs, outputs = messages_from_events([{"name": e.name, "time": e.time, "attributes": e.attributes}
                                            for e in events])
    changes: dict[str, Any] = {}
    not_used = []
    if inputs is not None:
        if _missing(current("input_messages")):
            changes["input_messages"] = inputs
        else:
            not_used.append("input_messages")
    vectors = 0
    if outputs is not None and current("kind") == "embedding":
        # An embedding's "choice" is its vector (OpenLLMetry writes it so): not a message; only its count is kept.
        vectors, outputs = len(outputs), None
    if outputs is not None:
        if _missing(current("output_messages")):
            changes["output_messages"] = outputs
            if _missing(current("output_text")):
                changes["output_text"] = reply_text(outputs)
        else:
            not_used.append("output_messages")
    metadata = _as_dict(current("metadata"))
    metadata["aiobs.joined_events"] = dict(sorted(Counter(e.name for e in events).items()))
    if vectors:
        metadata["aiobs.event_vectors_dropped"] = vectors
    if timed:
        # Events without ids (a stream's last event) joined because only this span was running then.
        metadata["aiobs.events_matched_by_time"] = timed
    if not_used:
        # The span's own attributes already carried this content (an instrumentation writing both).
        metadata["aiobs.event_content_not_used"] = not_used
    changes["metadata"] = metadata
    return changes


def _apply(frame: pd.DataFrame, changes: dict[int, dict[str, Any]]) -> None:
    columns = {c for change in changes.values() for c in change}
    for column in sorted(columns):
        values = frame[column].tolist() if column in frame else [None] * len(frame)
        for position, change in changes.items():
            if column in change:
                values[position] = change[column]
        frame[column] = pd.Series(values, index=frame.index, dtype="object")
