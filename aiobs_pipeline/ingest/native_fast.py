"""A columnar fast path for large, well-formed native JSONL files; same result as the per-record reader.

`partition.read_file` calls `try_read` first. It returns None (the generic path takes over) for files that
are small, not JSON Lines, or not native, and for gzip streams that turn out to be damaged (the generic path
reports those exactly). Otherwise it reads the file in bounded byte chunks and builds the candidate rows
column by column instead of one dict per record:

* each chunk's lines are parsed with orjson in one pass; a chunk holding a blank, non-UTF-8 or non-JSON line
  is re-walked line by line with the same decoding and parsing as `files.iter_records`, so rejects carry the
  same reasons and details;
* lines of the usual shape (an object whose keys are all native keys, and whose usage, params and metadata
  are objects or absent) are mapped to canonical columns with list comprehensions that mirror
  `native.to_row` rule for rule; every other line (unknown top-level keys, a string where an object belongs,
  a non-object line) goes through `native.read` and is spliced back in line order;
* values are never cast here: a string token count stays a string, so the row rules report `invalid_type`
  exactly as they do for the generic path, and the DataFrame is built once per file so pandas infers each
  column's dtype from the same values the generic path would give it;
* JSON columns are encoded here, as `quality.rules` would encode them (`json_encoded=True`).

Why orjson and not DuckDB's or pyarrow's JSON readers: the canonical rows must hold the same Python values
and the same JSON text as the per-record reader. Those readers accept or reject different inputs than orjson
(lone surrogates, duplicate keys, numbers that overflow), re-serialise nested values differently, and cast or
null out mismatched types. Nor would they be much faster here: on 2 KB spans, DuckDB's `read_ndjson` of the
same fields into pandas took 5-11 µs per row, orjson plus the column mapping about 10 µs, because either way
every string must become a Python object for the row rules.
"""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from aiobs_pipeline.ingest import detect, files, native
from aiobs_pipeline.ingest.base import RawRecord, Reject, latency_between, parse_time
from aiobs_pipeline.ingest.messages import content_text
from aiobs_pipeline.ingest.partition import FileRead
from aiobs_pipeline.schema import JSON_SPAN_COLUMNS

# Files smaller than this take the generic path, which is fast enough there; tests lower it.
MIN_BYTES = 4 * 1024 * 1024
# Bytes read per chunk, about 120 spans of 2 KB: small enough that a chunk's parsed objects stay in the CPU
# cache while each column is pulled out of them (measured: 16 MB chunks took twice as long per row).
CHUNK_BYTES = 256 * 1024
# How many lines to look through for the first readable record, which decides the reader.
SNIFF_LINES = 1000
# Low-cardinality string columns whose repeated values share one str object, to save memory (measured:
# a fifth of the rows' memory on 2 KB spans, for about 10% more read time).
INTERNED = ("name", "kind", "status", "provider", "request_model", "response_model", "model", "error_message",
            "user_id", "session_id", "environment", "app", "feature", "endpoint", "prompt_name",
            "prompt_version", "metadata", "request_params")
# Past this many distinct values a column is not low-cardinality and interning stops.
INTERN_LIMIT = 100_000

try:  # pandas' own list-to-array inference, as `pd.Series(list)` runs it (pandas 2.x; pinned < 3)
    from pandas.core.dtypes.cast import maybe_convert_platform as _convert_platform
except ImportError:  # pragma: no cover - a later pandas: fall back to the public constructor
    _convert_platform = None

_KNOWN = frozenset(native.KNOWN_KEYS)
_fromisoformat = datetime.fromisoformat
_OPTION = orjson.OPT_NON_STR_KEYS
_JSON_COLUMNS = frozenset(JSON_SPAN_COLUMNS)
_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, files.UnreadableFile)


class _Unencodable(Exception):
    """A value that orjson parsed but cannot serialise again (nesting deeper than orjson.dumps allows)."""


def try_read(path: Path, source_file: str) -> FileRead | None:
    """Read a large native JSONL file column-wise; None when the generic path should read it instead."""
    try:
        if path.stat().st_size < MIN_BYTES or files._looks_like_document(path) or not _first_is_native(path):
            return None
        with _gc_paused():
            return _read(path, source_file)
    except _READ_ERRORS:
        # Damaged gzip or a vanished file: the generic path reports it with the exact line it stopped at.
        return None


def _first_is_native(path: Path) -> bool:
    """True when the first readable record (as the generic path finds it) selects the native reader."""
    with files.open_binary(path) as stream:
        for count, (number, line) in enumerate(files.iter_lines(stream), start=1):
            item = files._decode(line, number)
            if isinstance(item, str):
                item = files._parse(item, number)
            if isinstance(item, RawRecord):
                return detect.detect_reader(item.value) is native
            if count >= SNIFF_LINES:
                return False
    return False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: parsing allocates millions of short-lived acyclic containers, which trigger
    collections that find nothing to free (measured: 7-15% of the read time on 2 KB spans)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def iter_chunks(path: Path, chunk_bytes: int | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (number of the first line, complete physical lines without b"\\n") in chunks of about
    `chunk_bytes`; line numbers count every physical line, blank ones included, like `files.iter_lines`."""
    size = chunk_bytes or CHUNK_BYTES
    next_number = 1
    carry = b""
    with files.open_binary(path) as stream:
        while True:
            block = stream.read(size)
            if not block:
                break
            pieces = (carry + block).split(b"\n") if carry else block.split(b"\n")
            carry = pieces.pop()
            if pieces:
                yield next_number, pieces
                next_number += len(pieces)
    if carry:
        yield next_number, [carry]


class _Columns:
    """Per-file column lists, filled chunk by chunk in line order."""

    def __init__(self) -> None:
        self.data: dict[str, list[Any]] = {}
        self.rows = 0
        self._caches: dict[str, dict[str, str] | None] = {name: {} for name in INTERNED}

    def extend(self, chunk: dict[str, list[Any]], count: int) -> None:
        """Append one chunk's columns; columns new to this file are back-filled with None."""
        for name, values in chunk.items():
            cache = self._caches.get(name)
            if cache is not None:
                # Only strings: 1, 1.0 and True are equal keys, and the rules report each by its own type.
                values = [cache.setdefault(v, v) if v.__class__ is str else v for v in values]
                if len(cache) > INTERN_LIMIT:
                    self._caches[name] = None
            column = self.data.get(name)
            if column is None:
                self.data[name] = [None] * self.rows + values
            else:
                column.extend(values)
        self.rows += count
        for column in self.data.values():
            if len(column) < self.rows:
                column.extend([None] * (self.rows - len(column)))

    def frame(self) -> pd.DataFrame | None:
        """One DataFrame for the whole file, so pandas infers each column's dtype from all its values."""
        if not self.rows:
            return None
        arrays = {}
        for name in list(self.data):
            arrays[name] = _infer(self.data.pop(name))
        return pd.DataFrame(arrays, copy=False)


def _infer(values: list[Any]) -> Any:
    """The array `pd.Series(values)` would hold, without its scan for datetime objects (JSON has none) and
    without consolidating all columns into one block (measured: a quarter of the read time)."""
    if _convert_platform is None:
        return pd.Series(values)
    return _convert_platform(values)


def _read(path: Path, source_file: str) -> FileRead:
    result = FileRead(path=path, source_file=source_file, source_format=native.FORMAT, json_encoded=True)
    columns = _Columns()
    for first, pieces in iter_chunks(path):
        chunk, count, rejects, read = _read_chunk(first, pieces)
        result.records_read += read
        result.rejects.extend(rejects)
        if count:
            columns.extend(chunk, count)
    result.rows = columns.frame()
    return result


def _read_chunk(first: int, pieces: list[bytes]) -> tuple[dict[str, list[Any]], int, list[Reject], int]:
    """Turn one chunk of lines into (columns, row count, rejects, records read)."""
    try:
        values = list(map(orjson.loads, pieces))
        numbers = list(range(first, first + len(pieces)))
        texts: list[str | None] = []
        rejects: list[Reject] = []
        read = len(pieces)
    except orjson.JSONDecodeError:
        values, numbers, texts, rejects, read = _walk(first, pieces)
    fast_values: list[dict[str, Any]] = []
    fast_numbers: list[int] = []
    slow: list[tuple[int, dict[str, Any]]] = []
    for index, value in enumerate(values):
        if _is_fast(value):
            fast_values.append(value)
            fast_numbers.append(numbers[index])
            continue
        number = numbers[index]
        text = texts[index] if texts else None
        if text is None:
            text = pieces[number - first].rstrip(b"\r").decode("utf-8")
        for out in native.read([RawRecord(number, text, value)]):
            if isinstance(out, Reject):
                out.source_format = out.source_format or native.FORMAT
                rejects.append(out)
            else:
                slow.append((len(fast_values), out))
    try:
        chunk = _assemble(fast_values, fast_numbers)
    except _Unencodable:
        chunk = _assemble_encodable(fast_values, fast_numbers, slow, rejects)
    if slow:
        chunk = _splice(chunk, slow, rejects)
    # Rejects come from three places (decoding, the per-record reader, encoding); the generic path lists
    # them in line order.
    rejects.sort(key=lambda r: r.number or 0)
    return chunk, len(chunk["source_line"]), rejects, read


def _walk(first: int, pieces: list[bytes]) -> tuple[list[Any], list[int], list[str | None], list[Reject], int]:
    """Line-by-line parsing, exactly as `files.iter_records`: skip blank lines, reject bad UTF-8 and JSON.

    Returns values, their line numbers, their text when it had to be decoded apart (else None), rejects and
    the number of records read (non-blank lines).
    """
    values: list[Any] = []
    numbers: list[int] = []
    texts: list[str | None] = []
    rejects: list[Reject] = []
    read = 0
    for offset, piece in enumerate(pieces):
        number = first + offset
        line = piece.rstrip(b"\r")
        if not line.strip():
            continue
        read += 1
        try:
            value = orjson.loads(line)
            text = None
        except orjson.JSONDecodeError:
            # Not JSON as raw bytes: decode first, as the generic path does, so a leading BOM is dropped
            # and bad UTF-8 is reported as such rather than as bad JSON.
            decoded = files._decode(line, number)
            item = decoded if isinstance(decoded, Reject) else files._parse(decoded, number)
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            value, text = item.value, item.text
        values.append(value)
        numbers.append(number)
        texts.append(text)
    return values, numbers, texts, rejects, read


def _is_fast(value: Any) -> bool:
    """The usual shape, which `_assemble` maps without per-record code."""
    if value.__class__ is not dict or not _KNOWN.issuperset(value):
        return False
    for key in ("usage", "params", "metadata"):
        part = value.get(key)
        if part is not None and part.__class__ is not dict:
            return False
    return True


def _json(value: Any) -> str | None:
    """Encode a JSON column value exactly as `quality.rules` does for the generic path."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=_OPTION).decode()
    except orjson.JSONEncodeError as exc:
        raise _Unencodable(str(exc)) from exc


def _json_column(values: list[Any]) -> list[str | None]:
    dumps = orjson.dumps
    try:
        return [None if v is None else dumps(v, option=_OPTION).decode() for v in values]
    except orjson.JSONEncodeError as exc:
        raise _Unencodable(str(exc)) from exc


def _as_id(values: list[Any]) -> list[Any]:
    """`base.as_str` over a column: "" becomes None, ints become strings, other types stay for the rules."""
    as_str = native.as_str
    return [v if v.__class__ is str and v else as_str(v) for v in values]


def _latency(start: Any, end: Any) -> float | None:
    """`native.to_row`'s latency from start and end; the common "...Z" strings skip `parse_time`'s detours."""
    if (start.__class__ is str and end.__class__ is str and start[-1:] == "Z" and end[-1:] == "Z"
            and start[:1].isdigit() and end[:1].isdigit()):
        # parse_time would strip (a no-op here: digit first, Z last) and rewrite Z as +00:00, which
        # fromisoformat reads the same way.
        try:
            return (_fromisoformat(end) - _fromisoformat(start)).total_seconds() * 1000.0
        except ValueError:
            pass  # parse_time below decides, and raises or not exactly as for the generic path
    try:
        return latency_between(parse_time(start), parse_time(end))
    except (ValueError, TypeError, OverflowError):
        return None  # the row rules report the bad timestamp by name


def _kinds(values: list[dict[str, Any]]) -> list[Any]:
    """`native.infer_kind` over a column, memoised on what it looks at when a span has no explicit kind."""
    memo: dict[tuple[str, bool], Any] = {}
    infer = native.infer_kind
    out = []
    for v in values:
        kind = v.get("kind")
        if kind is None:
            name = v.get("name")
            if name is None or name.__class__ is str:
                key = (name or "", v.get("model") is not None and ("messages" in v or "response" in v))
                kind = memo.get(key)
                if kind is None:
                    kind = memo[key] = infer(v)
            else:
                kind = infer(v)
        out.append(kind)
    return out


def _extra(part: dict[str, Any] | None, mapped: dict[str, str]) -> dict[str, Any] | None:
    """The keys of params/metadata that have no canonical column, as `native.to_row` keeps them."""
    if part is None or mapped.keys() >= part.keys():
        return None
    return {k: v for k, v in part.items() if k not in mapped} or None


def _detail(usage: dict[str, Any] | None, current: Any, outer: str, inner: str) -> Any:
    """A token count from usage.<outer>.<inner> when the flat key was absent, as `native.to_row` does."""
    if current is not None or usage is None:
        return current
    details = usage.get(outer) or {}
    return details.get(inner) if isinstance(details, dict) else None


def _assemble(values: list[dict[str, Any]], numbers: list[int]) -> dict[str, list[Any]]:
    """Canonical columns for spans of the usual shape: `native.to_row`, one column at a time."""
    cols: dict[str, list[Any]] = {}
    for col, key in native.TOP_LEVEL.items():
        cols[col] = [v.get(key) for v in values]
    for col in ("trace_id", "span_id", "parent_span_id"):
        cols[col] = _as_id(cols[col])
    cols["kind"] = _kinds(values)
    starts = cols["start_time"] = [v.get("start_time") for v in values]
    ends = cols["end_time"] = [v.get("end_time") for v in values]
    cols["latency_ms"] = [
        lat if lat is not None else _latency(s, e) for lat, s, e in zip(cols["latency_ms"], starts, ends, strict=True)
    ]
    cols["status"] = [
        s if (s := v.get("status")) is not None else ("error" if v.get("error") else "ok") for v in values
    ]
    cols["model"] = [r or q for r, q in zip(cols["response_model"], cols["request_model"], strict=True)]

    usages = [v.get("usage") for v in values]
    if any(u is not None for u in usages):
        for col, key in native.USAGE.items():
            cols[col] = [None if u is None else u.get(key) for u in usages]
        cols["cached_input_tokens"] = [
            _detail(u, c, "prompt_tokens_details", "cached_tokens")
            for u, c in zip(usages, cols["cached_input_tokens"], strict=True)
        ]
        cols["reasoning_tokens"] = [
            _detail(u, c, "completion_tokens_details", "reasoning_tokens")
            for u, c in zip(usages, cols["reasoning_tokens"], strict=True)
        ]
    params = [v.get("params") for v in values]
    if any(p is not None for p in params):
        for col, key in native.PARAMS.items():
            cols[col] = [None if p is None else p.get(key) for p in params]
        cols["request_params"] = _json_column([_extra(p, native.PARAMS) for p in params])
    metadata = [v.get("metadata") for v in values]
    if any(m is not None for m in metadata):
        for col, key in native.METADATA.items():
            cols[col] = [None if m is None else m.get(key) for m in metadata]
        cols["metadata"] = _json_column([_extra(m, native.METADATA) for m in metadata])

    cols["input_messages"] = _json_column([v.get("messages") for v in values])
    responses = [v.get("response") for v in values]
    cols["output_text"] = [r if r.__class__ is str else content_text(r) for r in responses]
    cols["output_messages"] = _json_column([
        v.get("output_messages") or ([{"role": "assistant", "content": r}] if r is not None else None)
        for v, r in zip(values, responses, strict=True)
    ])
    cols["documents"] = _json_column([
        None if (d := v.get("documents")) is None else native.normalise_documents(d) for v in values
    ])
    cols["source_line"] = numbers
    return cols


def _assemble_encodable(values: list[dict[str, Any]], numbers: list[int], slow: list[tuple[int, dict[str, Any]]],
                        rejects: list[Reject]) -> dict[str, list[Any]]:
    """Reject the spans whose nested values cannot be encoded again, then assemble the rest."""
    keep: list[int] = []
    for index, (value, number) in enumerate(zip(values, numbers, strict=True)):
        reject = _unencodable(native.to_row(value), number)
        if reject is None:
            keep.append(index)
        else:
            rejects.append(reject)
    # Slow rows are placed by the count of fast rows before them, which shrinks with every rejected row.
    kept_before = [0] * (len(values) + 1)
    for index in keep:
        kept_before[index + 1] = 1
    for index in range(len(values)):
        kept_before[index + 1] += kept_before[index]
    slow[:] = [(kept_before[position], row) for position, row in slow]
    return _assemble([values[i] for i in keep], [numbers[i] for i in keep])


def _unencodable(row: dict[str, Any], number: int) -> Reject | None:
    """A reject naming the JSON field that cannot be encoded, or None when the row encodes."""
    for col in JSON_SPAN_COLUMNS:
        try:
            _json(row.get(col))
        except _Unencodable as exc:
            return Reject("invalid_json", f"line {number}: field '{col}' cannot be stored as JSON: {exc}",
                          number, span_id=row.get("span_id") if isinstance(row.get("span_id"), str) else None,
                          trace_id=row.get("trace_id") if isinstance(row.get("trace_id"), str) else None,
                          source_format=native.FORMAT)
    return None


def _splice(chunk: dict[str, list[Any]], slow: list[tuple[int, dict[str, Any]]],
            rejects: list[Reject]) -> dict[str, list[Any]]:
    """Insert rows from the per-record reader at their place among the fast rows (line order)."""
    placed: list[tuple[int, dict[str, Any]]] = []
    for position, row in slow:
        reject = _unencodable(row, row["source_line"])
        if reject is None:
            placed.append((position, row))
        else:
            rejects.append(reject)
    names = list(chunk)
    names.extend(name for _, row in placed for name in row if name not in chunk and name not in names)
    fast_count = len(chunk["source_line"])
    out: dict[str, list[Any]] = {}
    for name in names:
        fast = chunk.get(name)
        pick: Callable[[dict[str, Any]], Any] = (
            (lambda row, n=name: _json(row.get(n))) if name in _JSON_COLUMNS else (lambda row, n=name: row.get(n))
        )
        merged: list[Any] = []
        previous = 0
        for position, row in placed:
            if fast is None:
                merged.extend([None] * (position - previous))
            else:
                merged.extend(fast[previous:position])
            merged.append(pick(row))
            previous = position
        merged.extend(fast[previous:] if fast is not None else [None] * (fast_count - previous))
        out[name] = merged
    return out
