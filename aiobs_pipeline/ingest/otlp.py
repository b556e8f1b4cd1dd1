"""Reader for OTLP/JSON trace exports, with OpenTelemetry GenAI and OpenInference span attributes.

A record is one `ExportTraceServiceRequest` as the OpenTelemetry Collector `file` exporter writes it (one per
line), or a whole pretty-printed request (one record). One record holds many spans, so every row carries the
record number as `source_line`, and a malformed span becomes a `Reject` without losing its siblings.

Encoding details handled (OTLP/JSON and protobuf JSON variants): camelCase or snake_case field names
(`resourceSpans` / `resource_spans`), the pre-1.0 `instrumentationLibrarySpans`, lowercase-hex ids (base64
ids, as generic protobuf JSON writes them, are converted to hex), 64-bit integers as strings or numbers,
enums as integers or names (`kind: 3` / `"SPAN_KIND_CLIENT"`, `code: 2` / `"STATUS_CODE_ERROR"`), and
every AnyValue form (string, int, double incl. "NaN", bool, array, kvlist, bytes).

Attribute mapping, in order of precedence: application attributes (`openinference.map_common`), then
OpenInference (`openinference.map_openinference`, when the span carries `openinference.span.kind` or
`llm.*`), then the OpenTelemetry GenAI conventions below (v1.37+ and the older forms still in the wild).
Whatever none of them maps stays in the row's `metadata`, so nothing is lost. The mapping tables are
documented in docs/formats.md ("otlp"). Messages and documents take the shape every reader shares
(`messages.py`).

Token rule: OpenTelemetry defines `gen_ai.usage.input_tokens` to include cached tokens and
`gen_ai.usage.output_tokens` to include reasoning tokens, which is the canonical rule, so counts are taken as
reported. A source that visibly counts otherwise (cache read + write above input, or reasoning above
output, as raw Anthropic or Gemini usage does) is converted by adding the parts, noted in
`metadata["aiobs.token_adjustments"]`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiobs_pipeline.ingest import dialects, openinference
from aiobs_pipeline.ingest.base import RawRecord, Reject, SpanRow, nanos_to_datetime
from aiobs_pipeline.ingest.messages import (
    content_text,
    dump_json,
    parse_json,
    reply_text,
    to_documents,
    to_message,
    to_messages,
    to_number,
)
from aiobs_pipeline.ingest.openinference import (
    exception_message,
    first_token_time,
    has_indexed,
    indexed,
    take,
)
from aiobs_pipeline.schema import SPAN_COLUMN_NAMES

FORMAT = "otlp"

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}

# canonical column <- GenAI attribute keys, first present wins (current name first, then older names).
GENAI = {
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "request_model": ("gen_ai.request.model",),
    "response_model": ("gen_ai.response.model",),
    "temperature": ("gen_ai.request.temperature",),
    "top_p": ("gen_ai.request.top_p",),
    "max_tokens": ("gen_ai.request.max_tokens",),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "total_tokens": ("gen_ai.usage.total_tokens", "llm.usage.total_tokens"),
    "cached_input_tokens": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                            "gen_ai.usage.input_tokens.cached"),
    "cache_write_tokens": ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
                           "gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.input_tokens.cache_write"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.output_tokens.reasoning",
                         "gen_ai.usage.reasoning_tokens"),
    # Not in the GenAI conventions; pydantic-ai/logfire and some gateways report the call's cost this way.
    "reported_cost_usd": ("gen_ai.usage.cost", "operation.cost"),
}
# Older generations and vendor names (dialects.GENAI_EXTRA) come after the current names.
for _column, _keys in dialects.GENAI_EXTRA.items():
    GENAI[_column] = GENAI[_column] + _keys
_TEXT_COLUMNS = ("provider", "request_model", "response_model")
# Filled by partition ingest (source_file, ...) or by the reader after build_row (source_line).
_CONTEXT_COLUMNS = frozenset({"source_format", "source_file", "source_line", "export_hour", "schema_version"})
# gen_ai.operation.name -> canonical kind.
OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "retrieval": "retrieval",
    "search_memory": "retrieval",
    "execute_tool": "tool",
    # Not a GenAI well-known value (the conventions define no rerank operation); instrumentations that trace
    # rerankers name it so, as the conventions allow for operations they do not list.
    "rerank": "rerank",
}
# OpenLLMetry (Traceloop) markers on spans that predate gen_ai.operation.name.
REQUEST_TYPE_KINDS = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "rerank"}
TRACELOOP_KINDS = {"tool": "tool", "workflow": "chain", "task": "chain", "agent": "chain"}
_LLM_MARKERS = ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.input.messages", "gen_ai.output.messages",
                "gen_ai.prompt", "gen_ai.completion")
# Per-message log events (deprecated), when attached to spans as span events: event name -> role.
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
# An event carrying the span's GenAI content attributes (opt-in in the conventions).
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_MS = timedelta(milliseconds=1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class MalformedSpan(Exception):
    """A span whose envelope cannot be read; carries the ids that could be read, for the reject."""

    def __init__(self, message: str, span_id: str | None = None, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.span_id = span_id
        self.trace_id = trace_id


@dataclass
class SpanParts:
    """One span's envelope and attributes, independent of the export format; `build_row` maps it."""

    trace_id: Any
    span_id: Any
    parent_span_id: Any
    name: Any
    start_time: Any  # datetime, or the unreadable raw value for the row rules to report
    end_time: Any
    status_code: Any  # "ok", "error", "unset", or the unknown raw code
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # {name, time, attributes}
    resource: dict[str, Any] = field(default_factory=dict)
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    # Phoenix spans are OpenInference by definition; OTLP spans are when they carry its attributes.
    openinference: bool = False


def _get(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def matches(value: Any) -> bool:
    """An OTLP trace request: an object with `resourceSpans` (or `resource_spans`)."""
    return isinstance(value, dict) and ("resourceSpans" in value or "resource_spans" in value)


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn OTLP trace requests into canonical rows, one per span; malformed parts become rejects."""
    for record in records:
        yield from _read_request(record)


def reject(reason: str, record: RawRecord, where: str, message: str, raw: Any, span_id: str | None = None,
           trace_id: str | None = None, source_format: str = FORMAT) -> Reject:
    """A reject naming the record and the place inside it (`resourceSpans[0].scopeSpans[1]...`)."""
    text = raw if isinstance(raw, str) else dump_json(raw)
    place = f"record {record.number}: {where}: " if where else f"record {record.number}: "
    return Reject(reason, place + message, record.number, text, span_id=span_id, trace_id=trace_id,
                  source_format=source_format)



@dataclass(frozen=True)
class Signal:
    """The field names of one OTLP signal's request envelope (traces or logs), each with its older spellings."""

    request: str  # the protobuf message name, for errors
    resources: tuple[str, ...]
    scopes: tuple[str, ...]
    items: tuple[str, ...]
    source_format: str
    hint: str = ""  # added to the "not a request of this signal" error


TRACES = Signal("ExportTraceServiceRequest", ("resourceSpans", "resource_spans"),
                ("scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans"),
                ("spans",), FORMAT)


def walk_request(record: RawRecord, signal: Signal
                 ) -> Iterator[tuple[Any, str, dict[str, Any], dict[str, Any]] | Reject]:
    """Yield (item, where, resource attributes, scope metadata) for every span or log record of a request.

    A malformed level of the envelope becomes one Reject naming where it is, and its siblings are still read.
    """
    value = record.value
    fmt = signal.source_format
    resources_name, scopes_name, items_name = signal.resources[0], signal.scopes[0], signal.items[0]
    if not isinstance(value, dict):
        yield reject("invalid_type", record, "", f"expected an {signal.request} object, got "
                     f"{type(value).__name__}", record.text, source_format=fmt)
        return
    entries = _get(value, *signal.resources)
    if entries is None:
        keys = ", ".join(sorted(map(str, value))[:8])
        yield reject("unsupported_record", record, "", f"not an {signal.request}: no '{resources_name}' "
                     f"(keys: {keys}){signal.hint}", record.text, source_format=fmt)
        return
    if not isinstance(entries, list):
        yield reject("invalid_type", record, resources_name, f"must be a list, got {type(entries).__name__}",
                     record.text, source_format=fmt)
        return
    for i, entry in enumerate(entries):
        where = f"{resources_name}[{i}]"
        if not isinstance(entry, dict):
            yield reject("invalid_type", record, where, f"expected an object, got {type(entry).__name__}", entry,
                         source_format=fmt)
            continue
        resource, resource_meta = _resource(_get(entry, "resource"))
        scopes = _get(entry, *signal.scopes)
        if scopes is None:
            continue
        if not isinstance(scopes, list):
            yield reject("invalid_type", record, f"{where}.{scopes_name}",
                         f"must be a list, got {type(scopes).__name__}", entry, source_format=fmt)
            continue
        for j, scope_entry in enumerate(scopes):
            here = f"{where}.{scopes_name}[{j}]"
            if not isinstance(scope_entry, dict):
                yield reject("invalid_type", record, here, f"expected an object, got {type(scope_entry).__name__}",
                             scope_entry, source_format=fmt)
                continue
            scope_meta = {**resource_meta, **_scope(_get(scope_entry, "scope", "instrumentationLibrary",
                                                         "instrumentation_library"))}
            items = _get(scope_entry, *signal.items)
            if items is None:
                continue
            if not isinstance(items, list):
                yield reject("invalid_type", record, f"{here}.{items_name}",
                             f"must be a list, got {type(items).__name__}", scope_entry, source_format=fmt)
                continue
            for k, item in enumerate(items):
                yield item, f"{here}.{items_name}[{k}]", resource, scope_meta


def _read_request(record: RawRecord) -> Iterator[SpanRow | Reject]:
    for found in walk_request(record, TRACES):
        if isinstance(found, Reject):
            yield found
        else:
            span, where, resource, scope_meta = found
            yield _read_span(span, resource, scope_meta, record, where)


def _read_span(span: Any, resource: dict[str, Any], scope_meta: dict[str, Any], record: RawRecord,
               where: str) -> SpanRow | Reject:
    try:
        parts = otlp_span_parts(span, resource, scope_meta)
    except MalformedSpan as exc:
        return reject("invalid_type", record, where, str(exc), span, exc.span_id, exc.trace_id)
    try:
        row = build_row(parts)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # Attribute values of shapes no convention allows must not stop the file: the span is quarantined.
        return reject("invalid_type", record, where, f"attributes could not be mapped: {exc!r}", span,
                       parts.span_id if isinstance(parts.span_id, str) else None,
                       parts.trace_id if isinstance(parts.trace_id, str) else None)
    row["source_line"] = record.number
    return row


# ---------------------------------------------------------------------------------------------------------
# OTLP/JSON envelope.


def any_value(value: Any) -> Any:
    """Decode an OTLP AnyValue object into a Python value; raise ValueError when it is not one."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"AnyValue must be an object, got {type(value).__name__}")
    if not value:
        return None
    for key, raw in value.items():
        if key in ("stringValue", "string_value"):
            if not isinstance(raw, str):
                raise ValueError(f"stringValue must be a string, got {type(raw).__name__}")
            return raw
        if key in ("boolValue", "bool_value"):
            if not isinstance(raw, bool):
                raise ValueError(f"boolValue must be a boolean, got {type(raw).__name__}")
            return raw
        if key in ("intValue", "int_value"):
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError(f"intValue must be an integer or decimal string, got {type(raw).__name__}")
            number = int(raw)
            if not _INT64_MIN <= number <= _INT64_MAX:
                raise ValueError(f"intValue {raw!r} is outside the 64-bit range")
            return number
        if key in ("doubleValue", "double_value"):
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError(f"doubleValue must be a number, got {type(raw).__name__}")
            return float(raw)  # "NaN", "Infinity" and "-Infinity" are how OTLP/JSON writes those
        if key in ("arrayValue", "array_value", "kvlistValue", "kvlist_value"):
            if raw is not None and not isinstance(raw, dict):
                raise ValueError(f"{key} must be an object with 'values', got {type(raw).__name__}")
            items = (raw or {}).get("values")
            if items is not None and not isinstance(items, list):
                raise ValueError(f"{key}.values must be a list")
        if key in ("arrayValue", "array_value"):
            return [any_value(item) for item in items or []]
        if key in ("kvlistValue", "kvlist_value"):
            decoded, bad = decode_attributes(items or [])
            if bad:
                raise ValueError(f"kvlistValue has {len(bad)} unreadable entries")
            return decoded
        if key in ("bytesValue", "bytes_value"):
            if not isinstance(raw, str):
                raise ValueError(f"bytesValue must be a base64 string, got {type(raw).__name__}")
            return raw
    raise ValueError(f"unknown AnyValue field(s): {', '.join(sorted(map(str, value)))}")


def decode_attributes(items: list[Any]) -> tuple[dict[str, Any], list[Any]]:
    """Decode a list of OTLP KeyValue objects; return (attributes, entries that could not be read)."""
    out: dict[str, Any] = {}
    bad: list[Any] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            bad.append(item)
            continue
        try:
            out[item["key"]] = any_value(item.get("value"))
        except (ValueError, TypeError, OverflowError):
            bad.append(item)
    return out, bad


def hex_id(value: Any, name: str) -> str | None:
    """An OTLP id as lowercase hex (base64 ids converted); None when absent; MalformedSpan when unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedSpan(f"field '{name}' must be a hex string, got {type(value).__name__} {value!r}"[:160])
    text = value.strip()
    if _HEX.match(text):
        return text.lower()
    if len(text) in (12, 24):
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) in (8, 16):
            return decoded.hex()
    raise MalformedSpan(f"field '{name}' is not a hex id: {text!r}"[:160])


def _nanos(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    try:
        return nanos_to_datetime(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return value  # the row rules report the unreadable timestamp by field name


def _resource(resource: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resource attributes, plus metadata entries for anything unreadable in them."""
    if resource is None:
        return {}, {}
    items = resource.get("attributes") if isinstance(resource, dict) else resource
    if items is None:
        return {}, {}
    if not isinstance(items, list):
        return {}, {"otel.unreadable_resource": resource}
    attributes, bad = decode_attributes(items)
    return attributes, ({"otel.unreadable_resource_attributes": bad} if bad else {})


def _scope(scope: Any) -> dict[str, Any]:
    if not isinstance(scope, dict):
        return {"otel.unreadable_scope": scope} if scope is not None else {}
    meta: dict[str, Any] = {"otel.scope.name": scope.get("name") or None, "otel.scope.version": scope.get("version") or None}
    items = scope.get("attributes")
    if isinstance(items, list) and items:
        attributes, bad = decode_attributes(items)
        meta["otel.scope.attributes"] = attributes or None
        if bad:
            meta["otel.unreadable_scope_attributes"] = bad
    return {k: v for k, v in meta.items() if v is not None}


def _enum(value: Any, names: dict[int, str], prefix: str) -> Any:
    """An OTLP enum given as an integer, a decimal string, or a name (with or without its prefix)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, value)
    if isinstance(value, str):
        name = value.strip().lower().removeprefix(prefix)
        if name in names.values():
            return name
    return value


def otlp_span_parts(span: Any, resource: dict[str, Any], scope_meta: dict[str, Any]) -> SpanParts:
    """Read the envelope of one OTLP span; raise MalformedSpan when it cannot be read."""
    if not isinstance(span, dict):
        raise MalformedSpan(f"expected a span object, got {type(span).__name__}")
    ids: dict[str, str | None] = {}
    problems: list[str] = []
    for column, names in (("trace_id", ("traceId", "trace_id")), ("span_id", ("spanId", "span_id")),
                          ("parent_span_id", ("parentSpanId", "parent_span_id"))):
        try:
            ids[column] = hex_id(_get(span, *names), names[0])
        except MalformedSpan as exc:
            ids[column] = None
            problems.append(str(exc))
    readable = {"span_id": ids["span_id"], "trace_id": ids["trace_id"]}
    if problems:
        raise MalformedSpan("; ".join(problems), **readable)
    if ids["parent_span_id"] is not None and not ids["parent_span_id"].strip("0"):
        ids["parent_span_id"] = None  # an all-zero parent id is how some exporters write "no parent"
    items = _get(span, "attributes")
    if items is not None and not isinstance(items, list):
        raise MalformedSpan(f"field 'attributes' must be a list of {{key, value}}, got {type(items).__name__}",
                            **readable)
    attributes, bad = decode_attributes(items or [])
    raw_events = _get(span, "events")
    if raw_events is not None and not isinstance(raw_events, list):
        raise MalformedSpan(f"field 'events' must be a list, got {type(raw_events).__name__}", **readable)
    status = _get(span, "status")
    if status is not None and not isinstance(status, dict):
        raise MalformedSpan(f"field 'status' must be an object, got {type(status).__name__}", **readable)
    status = status or {}
    code = _enum(_get(status, "code"), STATUS_CODES, "status_code_") if _get(status, "code") is not None else "unset"
    extra: dict[str, Any] = dict(scope_meta)
    for key, names in (("otel.span.kind", ("kind",)), ("otel.trace_state", ("traceState", "trace_state")), ("otel.links", ("links",)),
                       ("otel.flags", ("flags",)),
                       ("otel.dropped_attributes_count", ("droppedAttributesCount", "dropped_attributes_count")),
                       ("otel.dropped_events_count", ("droppedEventsCount", "dropped_events_count"))):
        value = _get(span, *names)
        if key == "otel.span.kind" and value is not None:
            extra[key] = _enum(value, SPAN_KINDS, "span_kind_")
        elif value not in (None, "", [], 0, "0"):
            extra[key] = value
    if bad:
        extra["otel.unreadable_attributes"] = bad
    events = []
    for event in raw_events or []:
        if not isinstance(event, dict):
            events.append({"name": None, "time": None, "attributes": {"raw": event}})
            continue
        event_items = _get(event, "attributes")
        event_attributes, event_bad = decode_attributes(event_items if isinstance(event_items, list) else [])
        if event_bad or (event_items is not None and not isinstance(event_items, list)):
            event_attributes["otel.unreadable_attributes"] = event_bad or event_items
        events.append({"name": _get(event, "name"), "time": _nanos(_get(event, "timeUnixNano", "time_unix_nano")),
                       "attributes": event_attributes})
    return SpanParts(
        trace_id=ids["trace_id"],
        span_id=ids["span_id"],
        parent_span_id=ids["parent_span_id"],
        name=_get(span, "name"),
        start_time=_nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano")),
        end_time=_nanos(_get(span, "endTimeUnixNano", "end_time_unix_nano")),
        status_code=code,
        status_message=_get(status, "message") or None,
        attributes=attributes,
        events=events,
        resource=resource,
        extra_metadata=extra,
    )


# ---------------------------------------------------------------------------------------------------------
# Row assembly, shared with the Phoenix reader (openinference.read).


def build_row(parts: SpanParts) -> SpanRow:
    """Map one span's parts to a canonical row (no validation: see quality.rules)."""
    attributes = dict(parts.attributes)
    events = list(parts.events)
    for event in [e for e in events if e.get("name") == DETAILS_EVENT]:
        for key, value in (event.get("attributes") or {}).items():
            attributes.setdefault(key, value)
        events.remove(event)
    common, attributes, resource_rest = openinference.map_common(attributes, parts.resource)
    # Dialects in order of precedence (see dialects.py): each maps what it knows and passes the rest on.
    mapped_langfuse: dict[str, Any] = {}
    if dialects.is_langfuse(attributes):
        mapped_langfuse, attributes = dialects.map_langfuse(attributes, parts.start_time, common)
    mapped_oi: dict[str, Any] = {}
    if parts.openinference or openinference.is_openinference(attributes):
        mapped_oi, attributes = openinference.map_openinference(attributes, common)
    mapped_logfire: dict[str, Any] = {}
    if dialects.is_logfire(attributes):
        mapped_logfire, attributes = dialects.map_logfire(attributes)
    mapped_genai, attributes, events = map_genai(attributes, events)
    fields: dict[str, Any] = {}
    for source in (common, mapped_langfuse, mapped_oi, mapped_genai, mapped_logfire):
        for key, value in source.items():
            if fields.get(key) is None and value is not None:
                fields[key] = value
    row: SpanRow = {c: fields.get(c) for c in SPAN_COLUMN_NAMES if c not in _CONTEXT_COLUMNS}
    start, end = parts.start_time, parts.end_time
    latency = None
    if isinstance(start, datetime) and isinstance(end, datetime) and end >= start:
        latency = (end - start) / _MS  # a negative span is left to the rules' end_before_start
    ttft = fields.get("time_to_first_token_ms")
    first = first_token_time(events)
    if ttft is None and first is not None and isinstance(start, datetime) and first >= start:
        ttft = (first - start) / _MS
    events, chunks = dialects.drop_chunk_events(events)
    status, error_message = _status(parts.status_code, parts.status_message or fields.get("error_message"),
                                    attributes, events)
    row.update(
        trace_id=parts.trace_id,
        span_id=parts.span_id,
        parent_span_id=parts.parent_span_id,
        name=parts.name,
        kind=fields.get("kind") or "chain",
        start_time=start,
        end_time=end,
        latency_ms=latency,
        time_to_first_token_ms=ttft,
        status=status,
        error_message=error_message,
        model=fields.get("response_model") or fields.get("request_model"),
    )
    notes = normalise_tokens(row)
    metadata = dict(attributes)
    if resource_rest:
        metadata["otel.resource"] = resource_rest
    if events:
        metadata["otel.events"] = [{**e, "time": e["time"].isoformat() if isinstance(e.get("time"), datetime)
                                    else e.get("time")} for e in events]
    metadata.update(parts.extra_metadata)
    if chunks:
        metadata["aiobs.stream_chunk_events"] = chunks
    vectors = dialects.drop_vectors(metadata)
    if vectors:
        metadata["aiobs.embedding_vectors"] = vectors
    if notes:
        metadata["aiobs.token_adjustments"] = notes
    row["metadata"] = metadata or None
    return row


def _status(code: Any, message: str | None, attributes: dict[str, Any],
            events: list[dict[str, Any]]) -> tuple[str, str | None]:
    error_type = attributes.get("error.type")
    if code == "ok":
        return "ok", None
    if code == "error" or (code in ("unset", None) and error_type not in (None, "")):
        detail = message or exception_message(events) or (str(error_type) if error_type not in (None, "") else None)
        return "error", detail
    if code in ("unset", None):
        return "ok", None
    return f"status code {code!r}", message  # reported by the row rules as invalid_status


def _is_count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def normalise_tokens(row: SpanRow) -> list[str]:
    """Apply the token rule (input includes cache, output includes reasoning); return notes on changes."""
    notes = []
    inp, cached, written = row.get("input_tokens"), row.get("cached_input_tokens"), row.get("cache_write_tokens")
    parts = [v for v in (cached, written) if _is_count(v)]
    if _is_count(inp) and parts and sum(parts) > inp:
        row["input_tokens"] = inp + sum(parts)
        notes.append(f"input_tokens {inp} excluded cache read/write tokens ({sum(parts)}); added them")
    out, reasoning = row.get("output_tokens"), row.get("reasoning_tokens")
    if _is_count(out) and _is_count(reasoning) and reasoning > out:
        row["output_tokens"] = out + reasoning
        notes.append(f"output_tokens {out} excluded reasoning tokens ({reasoning}); added them")
    if row.get("total_tokens") is None and _is_count(row.get("input_tokens")) and _is_count(row.get("output_tokens")):
        row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
    return notes


# ---------------------------------------------------------------------------------------------------------
# Cross-span work over a whole export hour (ingest.partition calls this with every otlp row of the hour).

# Columns a Logfire streaming-response log-span fills on its request span: what only the stream knows.
STREAM_COLUMNS = ("response_model", "model", "input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
                  "cache_write_tokens", "reasoning_tokens", "reported_cost_usd", "output_messages", "output_text",
                  "input_messages", "time_to_first_token_ms")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN / NaT, as pandas gives missing values back
    except TypeError:
        return True  # pd.NA, whose comparisons are NA themselves


def _logfire_stream(row: dict[str, Any]) -> bool:
    metadata = row.get("metadata")
    template = metadata.get(dialects.LOGFIRE_TEMPLATE) if isinstance(metadata, dict) else None
    return isinstance(template, str) and template.startswith(dialects.LOGFIRE_STREAM_TEMPLATE)


def _logfire_request(row: dict[str, Any]) -> bool:
    metadata = row.get("metadata")
    template = metadata.get(dialects.LOGFIRE_TEMPLATE) if isinstance(metadata, dict) else None
    return isinstance(template, str) and not template.startswith(dialects.LOGFIRE_STREAM_TEMPLATE) \
        and row.get("kind") == "llm"


def postprocess_wanted(frame: Any) -> bool:
    """Whether a file's rows (a DataFrame) hold a Logfire streaming-response span, so postprocess has work."""
    if frame is None or "name" not in frame:
        return False
    names = frame["name"]
    # Logfire names a span by its message template; the metadata check in postprocess is the exact one.
    return bool(names.astype("string").str.startswith(dialects.LOGFIRE_STREAM_TEMPLATE, na=False).any())


def postprocess(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Fold each Logfire streaming-response log-span into its request span: one row per streamed call.

    Logfire closes the request span when the response headers arrive and, once the stream has been read,
    writes the usage and the answer on a zero-length log-span in the context the request was made in: the
    same parent (so the same trace), or for a call outside any span a root of its own trace. A stream matches
    the latest request span of the same parent (any root, for a root), model, user and session that ended
    when the stream started being read (the log's time minus Logfire's `duration`, within STREAM_SLACK).
    The request row takes the stream's columns and its end, so latency covers the whole stream. A stream
    whose request span is not in this export hour stays a row of its own, spanning Logfire's `duration`.
    """
    streams = [i for i, row in enumerate(rows) if _logfire_stream(row)]
    if not streams:
        return rows, []
    by_parent: dict[tuple[Any, Any], list[int]] = {}
    for i, row in enumerate(rows):
        if _logfire_request(row) and _missing(row.get("output_tokens")):
            by_parent.setdefault(_parent_key(row), []).append(i)
    dropped: set[int] = set()
    for i in streams:
        stream = rows[i]
        key = _parent_key(stream)
        candidates = [j for j in by_parent.get(key, []) if _stream_of(rows[j], stream)]
        if not candidates:
            _orphan_stream(stream)
            continue
        j = max(candidates, key=lambda k: rows[k]["start_time"])  # the latest request before the stream
        by_parent[key].remove(j)
        _fold_stream(rows[j], stream)
        dropped.add(i)
    return [row for i, row in enumerate(rows) if i not in dropped], []


# How far apart a request span's end and the start of reading its stream may be: the app reads the stream
# right after the call returns, and the two times come from different clock reads.
STREAM_SLACK = timedelta(seconds=10)
# Columns that must agree between a stream and its request span.
STREAM_MATCH = ("request_model", "user_id", "session_id", "app")


def _parent_key(row: dict[str, Any]) -> tuple[Any, Any]:
    parent = row.get("parent_span_id")
    return (None, None) if _missing(parent) else (row.get("trace_id"), parent)


def _stream_of(request: dict[str, Any], stream: dict[str, Any]) -> bool:
    """Whether `stream` can be the streaming-response log of `request` (see postprocess)."""
    if any((None if _missing(request.get(c)) else request.get(c)) != (None if _missing(stream.get(c)) else
                                                                       stream.get(c)) for c in STREAM_MATCH):
        return False
    start, end = request.get("start_time"), request.get("end_time")
    logged = stream.get("end_time") if not _missing(stream.get("end_time")) else stream.get("start_time")
    if not isinstance(start, datetime) or not isinstance(logged, datetime) or _missing(start) or start > logged:
        return False
    duration = to_number((stream.get("metadata") or {}).get("duration"))
    if _is_count(duration) and isinstance(end, datetime) and not _missing(end):
        return abs(end - (logged - timedelta(seconds=duration))) <= STREAM_SLACK
    return True


def _fold_stream(request: dict[str, Any], stream: dict[str, Any]) -> None:
    for column in STREAM_COLUMNS:
        if _missing(request.get(column)) and not _missing(stream.get(column)):
            request[column] = stream[column]
    end = stream.get("end_time") if not _missing(stream.get("end_time")) else stream.get("start_time")
    if isinstance(end, datetime) and (_missing(request.get("end_time")) or end > request["end_time"]):
        request["end_time"] = end
    if isinstance(request.get("start_time"), datetime) and isinstance(request.get("end_time"), datetime):
        request["latency_ms"] = (request["end_time"] - request["start_time"]) / _MS
    metadata = dict(request.get("metadata") or {})
    stream_meta = stream.get("metadata") or {}
    metadata["logfire.stream"] = {"span_id": stream.get("span_id"), "duration": stream_meta.get("duration")}
    request["metadata"] = metadata


def _orphan_stream(stream: dict[str, Any]) -> None:
    metadata = dict(stream.get("metadata") or {})
    duration = to_number(metadata.get("duration"))
    end = stream.get("end_time") if not _missing(stream.get("end_time")) else stream.get("start_time")
    if _is_count(duration) and isinstance(end, datetime):
        stream["start_time"] = end - timedelta(seconds=duration)
        stream["end_time"] = end
        stream["latency_ms"] = duration * 1000.0
    metadata["aiobs.logfire_stream"] = "request span not in this export hour; latency is the stream's duration"
    stream["metadata"] = metadata


# ---------------------------------------------------------------------------------------------------------
# OpenTelemetry GenAI attributes.


def genai_kind(attributes: dict[str, Any]) -> str | None:
    """Canonical kind from GenAI (and OpenLLMetry) attributes; None when the span is not a GenAI span."""
    operation = attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in OPERATION_KINDS:
        return OPERATION_KINDS[operation]
    if isinstance(operation, str) and operation:
        return "chain"  # invoke_agent, create_agent, invoke_workflow, plan, memory writes, ...
    request_type = attributes.get("llm.request.type")
    if isinstance(request_type, str) and request_type in REQUEST_TYPE_KINDS:
        return REQUEST_TYPE_KINDS[request_type]
    traceloop_kind = attributes.get("traceloop.span.kind")
    if isinstance(traceloop_kind, str) and traceloop_kind in TRACELOOP_KINDS:
        return TRACELOOP_KINDS[traceloop_kind]
    if "gen_ai.tool.name" in attributes or "gen_ai.tool.call.id" in attributes:
        return "tool"
    if "gen_ai.agent.name" in attributes or "gen_ai.agent.id" in attributes:
        return "chain"  # agent runs report their children's summed usage: not a model call themselves
    if any(k in attributes for k in _LLM_MARKERS) or any(
            has_indexed(attributes, p) for p in ("gen_ai.prompt", "gen_ai.completion", "llm.prompts")):
        return "llm"
    return None


def map_genai(attributes: dict[str, Any], events: list[dict[str, Any]]
              ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Map GenAI attributes and content events; return (fields, attributes left, events left)."""
    attrs = dict(attributes)
    used: set[str] = set()
    fields: dict[str, Any] = {"kind": genai_kind(attrs)}
    for column, keys in GENAI.items():
        value = take(attrs, used, *keys)
        fields[column] = value if column in _TEXT_COLUMNS else to_number(value)
    cost = fields.get("reported_cost_usd")
    if cost == 0 and any(_is_count(fields.get(c)) and fields[c] > 0 for c in ("input_tokens", "output_tokens")):
        # OpenLIT writes 0 when its price list could not be loaded: a call with tokens has no real price of 0.
        # The attribute stays in metadata as it came.
        used.difference_update(GENAI["reported_cost_usd"])
        fields["reported_cost_usd"] = None
    ttft = to_number(take(attrs, used, *dialects.TTFT_SECONDS))
    if isinstance(ttft, int | float) and not isinstance(ttft, bool):
        fields["time_to_first_token_ms"] = ttft * 1000.0  # the convention (and OpenLIT) record seconds
    else:
        fields["time_to_first_token_ms"] = ttft
    params = {k.removeprefix("gen_ai.request."): v for k, v in attrs.items()
              if k.startswith("gen_ai.request.") and k not in used}
    if params:
        used.update(f"gen_ai.request.{k}" for k in params)
        fields["request_params"] = params
    remaining = _map_conversation(attrs, used, events, fields)
    documents = to_documents(parse_json(attrs.get("gen_ai.retrieval.documents")))
    if documents is not None:
        used.add("gen_ai.retrieval.documents")
        fields["documents"] = documents
    fields["output_text"] = reply_text(fields.get("output_messages"))
    return fields, {k: v for k, v in attrs.items() if k not in used}, remaining


def _map_conversation(attrs: dict[str, Any], used: set[str], events: list[dict[str, Any]],
                      fields: dict[str, Any]) -> list[dict[str, Any]]:
    """Input and output messages from whichever form the span uses; return the events not consumed."""
    consumed: set[int] = set()
    # llm.prompts / llm.completions: OpenLLMetry's names before it moved to gen_ai.prompt / gen_ai.completion.
    inputs = _messages_attribute(attrs, used, ("gen_ai.input.messages", "gen_ai.prompt"),
                                 ("gen_ai.prompt", "llm.prompts"), "user")
    outputs = _messages_attribute(attrs, used, ("gen_ai.output.messages", "gen_ai.completion"),
                                  ("gen_ai.completion", "llm.completions"), "assistant")
    event_inputs: list[dict[str, Any]] = []
    event_outputs: list[tuple[Any, dict[str, Any]]] = []
    for index, event in enumerate(events):
        name, event_attrs = event.get("name"), event.get("attributes") or {}
        if name == "gen_ai.content.prompt" and inputs is None and event_attrs.get("gen_ai.prompt") is not None:
            event_inputs.extend(to_messages(parse_json(event_attrs["gen_ai.prompt"]), "user") or [])
        elif name == "gen_ai.content.completion" and outputs is None and event_attrs.get("gen_ai.completion") is not None:
            messages = to_messages(parse_json(event_attrs["gen_ai.completion"]), "assistant") or []
            event_outputs.extend((len(event_outputs), m) for m in messages)
        elif name in MESSAGE_EVENTS and inputs is None:
            event_inputs.extend(to_message(_event_body(event_attrs), MESSAGE_EVENTS[name]) or [])
        elif name == "gen_ai.choice" and outputs is None:
            body = _event_body(event_attrs)
            message = body.get("message") if isinstance(body.get("message"), dict) else {}
            choice = to_message({**message, "tool_calls": body.get("tool_calls") or message.get("tool_calls"),
                                 "finish_reason": body.get("finish_reason") or message.get("finish_reason")},
                                "assistant") or []
            position = to_number(body.get("index", len(event_outputs)))
            event_outputs.extend((position, m) for m in choice)
        else:
            continue
        consumed.add(index)
    if inputs is None and event_inputs:
        inputs = event_inputs
    if outputs is None and event_outputs:
        outputs = [m for _, m in sorted(event_outputs, key=lambda p: p[0] if isinstance(p[0], int) else 0)]
    system = parse_json(attrs.get("gen_ai.system_instructions"))
    if system is not None:
        used.add("gen_ai.system_instructions")
        text = content_text(system)
        # OpenLIT writes the system prompt here and keeps it in gen_ai.input.messages: stored once.
        if not any(m.get("role") == "system" and content_text(m.get("content")) == text for m in inputs or []):
            inputs = [{"role": "system", "content": text}] + (inputs or [])
    fields["input_messages"] = inputs
    fields["output_messages"] = outputs
    return [e for i, e in enumerate(events) if i not in consumed]


def _messages_attribute(attrs: dict[str, Any], used: set[str], keys: tuple[str, ...],
                        indexed_prefixes: tuple[str, ...], role: str) -> list[dict[str, Any]] | None:
    for key in keys:
        if attrs.get(key) is not None:
            messages = to_messages(parse_json(attrs[key]), role)
            if messages is not None:
                used.add(key)
                return messages
    for prefix in indexed_prefixes:
        if has_indexed(attrs, prefix):
            head = prefix + "."
            used.update(k for k in attrs if k.startswith(head) and k[len(head):].split(".", 1)[0].isdigit())
            return [_flat_message(item, role) for item in indexed(attrs, prefix)]
    return None


def _flat_message(item: dict[str, Any], role: str) -> dict[str, Any]:
    """An indexed message (`gen_ai.prompt.0.role`, `gen_ai.completion.0.tool_calls.0.name`, ...)."""
    source = {k: v for k, v in item.items() if not k.startswith(("tool_calls.", "function_call."))}
    calls = indexed(item, "tool_calls")
    if not calls and item.get("function_call.name") is not None:
        calls = [{"name": item["function_call.name"], "arguments": item.get("function_call.arguments")}]
    source["tool_calls"] = calls or None
    found = to_message(source, role)
    return found[0] if found else {"role": role, "content": None}


def _event_body(attributes: dict[str, Any]) -> dict[str, Any]:
    """A per-message event's body: its attributes, with a JSON `gen_ai.event.content` merged in."""
    body = {k: v for k, v in attributes.items() if k != "gen_ai.event.content"}
    content = parse_json(attributes.get("gen_ai.event.content"))
    if isinstance(content, dict):
        body.update(content)
    elif content is not None:
        body["content"] = content
    return body


def messages_from_events(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]] | None,
                                                                list[dict[str, Any]] | None]:
    """(input, output) messages carried by GenAI content events alone, as a span's events would give them.

    For events that arrive apart from their span (OTLP log records, `otlp_logs`): `DETAILS_EVENT` attributes
    read as the span's content attributes, the per-message and choice events as `_map_conversation` reads
    them; events are `{name, time, attributes}` in the order they were emitted.
    """
    attrs: dict[str, Any] = {}
    rest = []
    for event in events:
        if event.get("name") == DETAILS_EVENT:
            for key, value in (event.get("attributes") or {}).items():
                attrs.setdefault(key, value)
        else:
            rest.append(event)
    fields: dict[str, Any] = {}
    _map_conversation(attrs, set(), rest, fields)
    return fields["input_messages"], fields["output_messages"]
