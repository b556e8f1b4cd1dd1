"""The reader contract shared by every export format.

A landing file is turned into a sequence of `RawRecord`s (one per JSONL line, one per element of a JSON
array, or one for a single JSON document) by `files.iter_records`. A reader turns records into canonical
span rows (plain dicts keyed by `schema.SPAN_COLUMN_NAMES`; missing keys mean null) or `Reject`s that say
why a record could not become a span. Readers never drop anything: every record ends up as rows or rejects.

Readers must not validate canonical row rules (required fields, ranges, kinds): `quality.rules` does that
once for all formats, so the rules cannot drift between readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiobs_pipeline.schema import RAW_TEXT_LIMIT


@dataclass
class RawRecord:
    """One record of a landing file: its 1-based line or record number, raw text and parsed JSON value."""

    number: int
    text: str
    value: Any


@dataclass
class Reject:
    """A record (or part of one) that cannot become a canonical span, with the reason and the evidence."""

    reason: str
    detail: str
    number: int | None = None
    raw: str | None = None
    span_id: str | None = None
    trace_id: str | None = None
    source_format: str | None = None
    # Set by readers whose `postprocess` sees several files at once (LangSmith patches).
    source_file: str | None = None

    def __post_init__(self) -> None:
        if self.raw is not None and len(self.raw) > RAW_TEXT_LIMIT:
            self.raw = self.raw[:RAW_TEXT_LIMIT] + f"... [truncated, {len(self.raw)} chars]"


SpanRow = dict[str, Any]


@dataclass
class SpanEvent:
    """Content for a span that arrived in another record (an OTLP log record): the hour's ingest joins it
    into the span with the same trace and span id (`otlp_logs.join_events`), or quarantines it."""

    # Both None for an event emitted outside any span context (a stream's last event): matched by time.
    trace_id: str | None
    span_id: str | None
    name: str
    time: datetime | None
    # The log record's attributes with its body merged in, as `otlp.messages_from_events` reads them.
    attributes: dict[str, Any]
    number: int
    where: str  # the record's place in its request, e.g. "resourceLogs[0].scopeLogs[0].logRecords[2]"
    raw: str | None = None
    source_format: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)  # the log record's resource attributes


@dataclass
class SkippedRecord:
    """A record of a known format that carries nothing aiobs reads (a plain application log record):
    counted in the audit as `records_ignored`, never stored."""

    number: int
    detail: str


@dataclass
class ReadResult:
    """What a reader made of one file: canonical span rows and rejects."""

    rows: list[SpanRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class Reader(Protocol):
    """A format reader module: `FORMAT`, `matches(value)` and `read(records)`; `postprocess` is optional."""

    FORMAT: str

    def matches(self, value: Any) -> bool:
        """Return True when a parsed record looks like this format."""
        ...

    def read(self, records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject | SpanEvent | SkippedRecord]:
        """Turn records into canonical span rows or rejects (log readers: span events and skipped records)."""
        ...


def truncate(text: str | None, limit: int = RAW_TEXT_LIMIT) -> str | None:
    """Return text cut to `limit` characters with a marker saying how long it was."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated, {len(text)} chars]"


def nanos_to_datetime(value: Any) -> datetime | None:
    """Convert Unix epoch nanoseconds (int or decimal string, as OTLP/JSON writes them) to UTC datetime."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    nanos = int(value)
    return datetime.fromtimestamp(nanos // 1_000_000_000, tz=UTC).replace(microsecond=(nanos % 1_000_000_000) // 1000)


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO-8601 string (Z or offset, naive = UTC) or epoch seconds/ms/µs/ns into a UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        # Pick the unit by magnitude: seconds (~1e9), ms (~1e12), µs (~1e15), ns (~1e18).
        magnitude = abs(value)
        if magnitude >= 1e17:
            return nanos_to_datetime(int(value))
        divisor = 1e6 if magnitude >= 1e14 else 1e3 if magnitude >= 1e11 else 1
        return datetime.fromtimestamp(value / divisor, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_time(int(text))
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a timestamp: {value!r}")


def latency_between(start: datetime | None, end: datetime | None) -> float | None:
    """Milliseconds from start to end, or None when either is missing."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000.0


def first_present(mapping: dict[str, Any], *keys: str) -> Any:
    """Return the value of the first key present with a non-null value, else None."""
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def as_str(value: Any) -> str | None:
    """Return value as a string id (ints allowed), None for null/empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value  # left as is so the row rules report invalid_type naming the field
