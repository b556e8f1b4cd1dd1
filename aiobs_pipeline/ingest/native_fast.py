"""A DuckDB fast path for large native JSON Lines files: the same spans, quarantine and audit as the
per-record reader, without a Python object per parsed value.

`partition.read_file` calls `try_read` first. It returns None (the generic path takes over) for files that
are small, not JSON Lines, not native, or damaged gzip streams, and if DuckDB fails. Otherwise one DuckDB
query streams over the whole file:

* Python reads the file (gzip by magic, as `files.open_binary` does) in blocks of whole physical lines and
  numbers every line, blank ones included, exactly as `files.iter_lines` does. Each block reaches DuckDB as
  Arrow record batches whose strings are views of the block's own bytes. Lines that do not start with `{`,
  and lines that are not UTF-8 (Python's own decoder decides), stay in Python.
* DuckDB parses each line once into a struct of JSON-typed fields (nothing is cast or lost), maps it to the
  canonical columns as `native.to_row` does, and checks the row rules of `quality.rules` on the result. It
  vouches for a line (`ok`) only when it is certain of both the values and the verdict. Everything else (a
  failed rule, an unusual shape, a timestamp form it might parse differently, JSON that DuckDB accepts and
  orjson refuses, repeated keys, deep nesting, ...) goes to the per-record path: `files` decoding and
  parsing, `native.read`, then the row rules in `partition.ingest_files`, so reasons and details are the
  generic path's own. Those rows get the dtypes `pd.DataFrame` would infer for the whole file
  (`_rows_frame`), since the rules' checks and messages follow the dtype.
* Most of a line's checks concern its values; the rest ask whether its keys are the native ones, each once.
  Answering that by listing the keys costs a second parse of the line. A file's first lines set its
  `Layout` (key order, how nulls are written): a line that is exactly its parse written back in that layout
  (one concat, one comparison) has only those keys, each once, so its keys are not listed. params and
  metadata, whose text DuckDB writes back compact whatever the line's spacing, are matched the same way,
  which also spares the merge patch that drops the keys with a column. Whatever differs in a byte is
  checked the long way, with the same verdict.
* The parse is unguarded at first: a line that is not JSON at all (a syntax error, which DuckDB raises for
  the whole query) stops the query, and the file is read again from the start by the guarded query, whose
  parse (`try`) turns such a line into a null row for the per-record path. The guard costs a few percent on
  every line, so only files that hold such a line pay for it (with a second pass).
* Vouched-for rows come back in batches (DuckDB's threads return them in interleaved runs), are converted to
  canonical dtypes batch by batch (bounded memory; repeated strings share one object per batch), put in line
  order, and handed over as `FileRead.prevalidated`, which `ingest_files` does not run through the rules.

JSON columns hold DuckDB's compact JSON text, which may differ from orjson's in key order and number
spelling (`1e5` vs `100000.0`) but parses to the same value; the warehouse stores JSON in canonical form
(`warehouse.tables.canonical_json`), so the stored tables are identical.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aiobs_pipeline.ingest import detect, files, native
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.messages import KIND_BY_NAME
from aiobs_pipeline.ingest.partition import FileRead
from aiobs_pipeline.ingest.storage import StorageError
from aiobs_pipeline.schema import (
    ABSURD_LIMITS,
    KINDS,
    SCHEMA_VERSION,
    SPAN_COLUMN_BY_NAME,
    SPAN_COLUMN_NAMES,
    SPAN_COLUMNS,
    STATUSES,
)

# Files smaller than this take the generic path, which is fast enough there; tests lower it.
MIN_BYTES = 4 * 1024 * 1024
# Bytes of whole lines handed to DuckDB at once: bounds the memory of one block's text and results.
BLOCK_BYTES = 8 * 1024 * 1024
# Rows per Arrow record batch handed to DuckDB, so that its threads share a block.
BATCH_ROWS = 2048
# Rows per result batch converted to pandas at once.
FETCH_ROWS = 16384
# How many lines to look through for the first readable record, which decides the reader.
SNIFF_LINES = 1000
# How many lines decide a file's layout (see Layout).
LAYOUT_LINES = 1000
# The most keys a layout of params or metadata may name (see _open_layout).
MAX_LAYOUT_KEYS = 32
# A line with this many '[' and '{' could nest a value deeper than orjson can encode (254 levels), which the
# row rules quarantine; such lines take the per-record path (a cheap, conservative bound on the depth).
MAX_OPENERS = 200
DUCKDB_THREADS = max(1, min(2, os.cpu_count() or 1))
DUCKDB_MEMORY_LIMIT = "1GB"

# Columns filled from the file and the partition, not the line (set by `partition.ingest_files`).
CONTEXT_COLUMNS = ("source_format", "source_file", "export_hour", "schema_version")
# The columns a pre-validated frame holds, in canonical order.
FRAME_COLUMNS = tuple(c.name for c in SPAN_COLUMNS if c.name not in CONTEXT_COLUMNS)

log = logging.getLogger(__name__)
_TS_DTYPE = pd.DatetimeTZDtype("ns", "UTC")
_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, files.UnreadableFile)
_OPEN_BRACE = ord("{")
# Room after a block for the rest of its last line, so that it is read in place.
_SLACK = 256 * 1024


def try_read(path: files.Source, source_file: str) -> FileRead | None:
    """Read a large native JSONL file with DuckDB; None when the generic path should read it instead."""
    try:
        if files.size_of(path) < MIN_BYTES or files.looks_like_document(path) or not _first_is_native(path):
            return None
        return _read(path, source_file)
    except _READ_ERRORS:
        # Damaged gzip or a vanished file: the generic path reports it with the exact line it stopped at.
        return None
    except duckdb.Error as exc:
        # Input the SQL does not expect must not stop the ingest: the generic path reads the file instead.
        log.warning("native fast path failed on %s, reading it record by record: %s", source_file, exc)
        return None


def _first_is_native(path: files.Source) -> bool:
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


# (key, whether a null value is written as "key":null rather than the key left out), in the writer's order.
KeyLayout = tuple[tuple[str, bool], ...]
# Keys of params and metadata without a canonical column that a layout may name: they become struct fields,
# whose names DuckDB compares without case, so odd names are left to the long way.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True)
class Layout:
    """How a file's writer lays out its objects, as its first lines show: the order of the keys of the line
    (`keys`, None unless the lines are written exactly as DuckDB writes JSON: compact, numbers and strings
    spelled alike), of usage, params and metadata, and for each key whether a null value is written or the
    key left out.

    An object that is exactly its own parse written back in its layout has every key once and no other key,
    so the query skips listing its keys: for the line, a second parse of the whole line (about a sixth of the
    query); for params and metadata, whose text DuckDB always writes back compact, also the merge patch that
    removes the keys with a column. Objects that differ in any byte are checked the long way: a layout only
    saves work, it never changes a verdict.
    """

    keys: KeyLayout | None
    usage: KeyLayout
    params: KeyLayout
    metadata: KeyLayout


def _merged_order(orders: Iterable[list[str]]) -> list[str]:
    """One key order holding every order seen: a new key goes right after the key that precedes it."""
    merged: list[str] = []
    for keys in orders:
        at = 0
        for key in keys:
            if key in merged:
                at = merged.index(key) + 1
            else:
                merged.insert(at, key)
                at += 1
    return merged


def _key_layout(objects: list[dict[str, Any]], allowed: Callable[[str], bool]) -> KeyLayout:
    """(key, null written) for the keys of the objects that `allowed(key)` accepts, in the writer's order; a
    null value is written when the objects hold the key as null at least as often as they leave it out."""
    order = _merged_order([k for k in value if allowed(k)] for value in objects)
    layout = []
    for key in order:
        nulls = sum(1 for value in objects if key in value and value[key] is None)
        left_out = sum(1 for value in objects if key not in value)
        layout.append((key, nulls > 0 and nulls >= left_out))
    return tuple(layout)


def _nested(objects: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [value[key] for value in objects if isinstance(value.get(key), dict) and value[key]]


def _written_back(value: dict[str, Any]) -> bytes | None:
    """The object as a compact writer writes it; None when it cannot (orjson's nesting limit)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None


def sniff_layout(path: files.Source) -> Layout | None:
    """The layout of a file's first lines (see Layout); None when they hold no object."""
    objects: list[dict[str, Any]] = []
    compact = 0
    with files.open_binary(path) as stream:
        for count, (_, line) in enumerate(files.iter_lines(stream), start=1):
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                objects.append(value)
                compact += _written_back(value) == line
            if count >= LAYOUT_LINES:
                break
    if not objects:
        return None
    top = set(_TOP)
    usage = tuple((key, False) for key, _ in _key_layout(_nested(objects, "usage"), set(_USAGE_KEYS).__contains__))
    keys: KeyLayout | None = None
    if compact >= len(objects) / 2:
        # usage is never written as null here: its check needs the object itself.
        keys = tuple((key, null and key != "usage") for key, null in _key_layout(objects, top.__contains__))
        if not keys or (not usage and any(key == "usage" for key, _ in keys)):
            keys = None
    return Layout(keys=keys, usage=usage, params=_open_layout(_nested(objects, "params")),
                  metadata=_open_layout(_nested(objects, "metadata")))


def _open_layout(objects: list[dict[str, Any]]) -> KeyLayout:
    """The layout of params or metadata, whose keys are the writer's: none when they are many (keys that
    vary from line to line, such as ids, would make a struct of hundreds of fields, parsed on every line)."""
    layout = _key_layout(objects, lambda key: bool(_PLAIN_KEY.fullmatch(key)))
    return layout if len(layout) <= MAX_LAYOUT_KEYS else ()


# ---------------------------------------------------------------------------------------------------------
# Reading blocks of physical lines


def iter_blocks(path: files.Source, block_bytes: int | None = None) -> Iterator[tuple[bytearray, int]]:
    """Yield (buffer, length): the file's bytes in blocks of whole physical lines, about `block_bytes` each.

    Every block but the last ends with b"\n", so line numbers run on from block to block. Each block is filled
    in place (no copy to join a block's last line), and Arrow then views it without a copy. A buffer is filled
    again only once nothing but this reader holds it (see _Buffers); past `length` it holds zeros.
    """
    size = block_bytes or BLOCK_BYTES
    buffers = _Buffers(size + _SLACK)
    with files.open_binary(path) as stream:
        while True:
            buffer = buffers.take()
            view = memoryview(buffer)
            length = stream.readinto(view[:size])
            if not length:
                return
            if buffer[length - 1] != 0x0A:
                tail = stream.readline()
                if len(tail) <= _SLACK:
                    view[length:length + len(tail)] = tail
                    length += len(tail)
                else:  # a very long last line: join it the slow way
                    view.release()
                    buffer = bytearray(buffer[:length] + tail)
                    length = len(buffer)
            buffers.filled(buffer, length)
            yield buffer, length


class _Buffers:
    """Block buffers for one file, each reused once nothing views it any more.

    A fresh 8 MB buffer costs its zero-fill and a page fault per 4 KB page, for every block of a 2 GB file.
    The Arrow arrays DuckDB reads view their block's buffer (a buffer export, through a memoryview) until
    DuckDB is done with them, and a bytearray refuses to change size while it is exported: a buffer that can
    grow by a byte is viewed by no one and can be filled again. Bytes a shorter fill leaves behind are
    zeroed: `_is_utf8` reads the whole buffer.
    """

    # Buffers kept: DuckDB holds a few blocks at a time; a buffer beyond these is left to the allocator.
    KEEP = 8

    def __init__(self, size: int) -> None:
        self.size = size
        self.pool: list[bytearray] = []
        self.ends: dict[int, int] = {}  # id(buffer) -> how far it was filled

    def take(self) -> bytearray:
        """A buffer of `size` bytes, zeros past whatever it was last filled with."""
        for buffer in self.pool:
            if _unviewed(buffer):
                return buffer
        buffer = bytearray(self.size)
        if len(self.pool) < self.KEEP:
            self.pool.append(buffer)
            self.ends[id(buffer)] = 0
        return buffer

    def filled(self, buffer: bytearray, length: int) -> None:
        """Note that `buffer` now holds `length` bytes, zeroing what an earlier, longer fill left after them."""
        end = self.ends.get(id(buffer))
        if end is None:
            return  # not pooled
        if end > length:
            memoryview(buffer)[length:end] = bytes(end - length)
        self.ends[id(buffer)] = length


def _unviewed(buffer: bytearray) -> bool:
    """Whether no memoryview or Arrow buffer views `buffer` (a resize fails while one does)."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    del buffer[-1]
    return True


def line_bounds(data: bytes | bytearray, length: int | None = None) -> np.ndarray:
    """Offsets of the lines of data[:length]: line i is data[offsets[i]:offsets[i + 1]], b"\\n" included."""
    end = len(data) if length is None else length
    stops = []
    find = data.find
    at = find(b"\n", 0, end)
    while at >= 0:
        stops.append(at + 1)
        at = find(b"\n", at + 1, end)
    if not stops or stops[-1] != end:
        stops.append(end)  # a last line without a newline
    offsets = np.empty(len(stops) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = stops
    return offsets


def _is_utf8(data: bytearray, length: int) -> bool:
    """Whether data[:length] decodes as UTF-8, by the decoder the generic path uses."""
    if data.isascii():  # the unused end of the buffer is zeros, which are ASCII
        return True
    try:
        bytes(memoryview(data)[:length]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_BLOCK_SCHEMA = pa.schema([("n", pa.int64()), ("line", pa.string()), ("cand", pa.bool_())])


class _Lines:
    """The file as Arrow record batches (n, line, cand) for DuckDB, produced while DuckDB consumes them.

    Lines that do not start with '{' and lines that are not UTF-8 stay in Python: they are collected in
    `kept` (number, bytes) for the per-record path. A read error (a damaged gzip stream) ends the stream
    early and is kept in `error`: the caller then leaves the file to the generic path.
    """

    def __init__(self, path: files.Source) -> None:
        self.path = path
        self.kept: list[tuple[int, bytes]] = []
        self.error: BaseException | None = None
        self.size = files.size_of(path)
        self.lines_read = 0
        self.bytes_read = 0

    def estimated_lines(self) -> int:
        """The file's line count as the lines and bytes read so far suggest (low for gzip: sizes differ)."""
        if not self.bytes_read:
            return 0
        return int(self.lines_read * max(self.size, self.bytes_read) / self.bytes_read * 1.02) + 1024

    def reader(self) -> pa.RecordBatchReader:
        """A record batch reader over the whole file."""
        return pa.RecordBatchReader.from_batches(_BLOCK_SCHEMA, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        first = 1
        try:
            for data, length in iter_blocks(self.path):
                table, count = self._block(first, data, length)
                first += count
                self.lines_read += count
                self.bytes_read += length
                yield from table.to_batches(max_chunksize=BATCH_ROWS)
        except (*_READ_ERRORS, StorageError) as exc:
            # Kept, not raised: an exception inside DuckDB's scan would come back as a DuckDB error.
            self.error = exc

    def _block(self, first: int, data: bytearray, length: int) -> tuple[pa.Table, int]:
        offsets = line_bounds(data, length)
        count = len(offsets) - 1
        numbers = np.arange(first, first + count, dtype=np.int64)
        starts = offsets[:-1]
        view = np.frombuffer(data, dtype=np.uint8, count=length)
        cand = (offsets[1:] > starts) & (view[np.minimum(starts, length - 1)] == _OPEN_BRACE)
        if length >= 2**31:
            # Beyond Arrow's 32-bit string offsets (a line of gigabytes): the per-record path reads it.
            cand[:] = False
            table = pa.table([numbers[:0], pa.array([], type=pa.string()), cand[:0]], schema=_BLOCK_SCHEMA)
        elif _is_utf8(data, length):
            # The Arrow strings are views of the block's own bytes: no copy of the text.
            lines = pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)),
                                                pa.py_buffer(memoryview(data)[:length]))
            table = pa.table([numbers, lines, cand], schema=_BLOCK_SCHEMA)
        else:
            # Lines that are not UTF-8 stay in Python (invalid_encoding); the others are copied for DuckDB.
            good: list[int] = []
            for index in np.flatnonzero(cand):
                try:
                    bytes(data[offsets[index]:offsets[index + 1]]).decode("utf-8")
                    good.append(int(index))
                except UnicodeDecodeError:
                    cand[index] = False
            table = pa.table([numbers[good],
                              pa.array([bytes(data[offsets[i]:offsets[i + 1]]).decode("utf-8") for i in good],
                                       type=pa.string()),
                              np.ones(len(good), dtype=bool)], schema=_BLOCK_SCHEMA)
        for index in np.flatnonzero(~cand):
            raw = bytes(data[offsets[index]:offsets[index + 1]])
            if raw.strip():  # blank lines are no records (files.iter_lines skips them too)
                self.kept.append((int(numbers[index]), raw))
        return table, count


# ---------------------------------------------------------------------------------------------------------
# The SQL: parse, map (native.to_row) and validate (quality.rules) every line DuckDB can vouch for


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _one_of(expr: str, values: Iterable[str]) -> str:
    """Whether expr is one of the values, as a search in one string of the values between \\x01 (which no
    value holds, see _ESCAPES).

    Not `expr IN (...)`, nor list_contains (which DuckDB rewrites into IN): the in_clause optimizer turns a
    list of six or more into a join, and the plan around that join evaluated the expressions the rows were
    built from again for each of their uses (the ISO timestamp test and cast 12 times a line instead of
    once), which cost about a quarter of the whole query."""
    return f"contains({_lit(_SEP_TEXT + _SEP_TEXT.join(values) + _SEP_TEXT)}, {_SEP} || {expr} || {_SEP})"


def _re_class(chars: str) -> str:
    """The characters as the inside of an RE2 character class."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


def _struct(keys: Iterable[str]) -> str:
    """A from_json structure whose fields are all JSON, so nothing is cast or lost."""
    return _lit(orjson.dumps({k: "JSON" for k in keys}).decode())


# Python's str.strip() and str.isspace() whitespace: a required string is blank when it holds only these.
_PY_SPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_NOT_BLANK = _lit("[^" + _re_class(_PY_SPACE) + "]")
# ASCII whitespace that str.strip() removes; kinds and statuses made of letters and these normalise alike.
_ASCII_SPACE = "".join(c for c in _PY_SPACE if ord(c) < 128)
_LETTERS_AND_SPACE = _lit("[A-Za-z" + _re_class(_ASCII_SPACE) + "]*")
_TRIM = " || ".join(f"chr({ord(c)})" for c in _ASCII_SPACE)
# JSON values DuckDB accepts and orjson refuses: NaN and Infinity (any case, signed), numbers that overflow a
# double, and (after a comma) a trailing comma. Every JSON value follows ':', ',' or '['; one pattern per
# character lets RE2 skip ahead to it. A string that merely looks like one of these takes the other path.
_ODD_VALUE = r"[ \t\r\n]*([+-]?([nN][aA][nN]|[iI][nN][fF])|-?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]{3}|-?[0-9]{300})"
_LENIENT_JSON = (_lit(":" + _ODD_VALUE), _lit(r"\[" + _ODD_VALUE), _lit(r",([ \t\r\n]*[\]}]|" + _ODD_VALUE + ")"))
# Escapes of a lone surrogate (orjson refuses it), NUL (the rules quarantine it) and \x01 (_one_of's separator).
_ESCAPES = _lit(r"\\u([dD][89abAB]|000[01])")
_SEP = "chr(1)"
_SEP_TEXT = "\x01"
# ISO-8601 forms that pandas (format="ISO8601") and base.parse_time read exactly as DuckDB reads them, years
# inside pandas' nanosecond range; anything else (other forms, epoch µs/ns, floats) takes the other path.
_ISO = _lit(r"(1[6-9]|2[0-2])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
            r":[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?")
_TS_LOW, _TS_HIGH = "TIMESTAMPTZ '1678-01-01 00:00:00+00'", "TIMESTAMPTZ '2262-01-01 00:00:00+00'"
# Integer epochs whose parse_time result (a float division, then rounding to µs) is exact: seconds below
# 1e11, milliseconds from 1e11 while seconds stay below 2**32 (the float error then stays under 0.5 µs).
_EPOCH_S_MAX, _EPOCH_MS_MAX = 10**11, 2**32 * 1000
# Integers that orjson, pandas (via float64) and DuckDB all hold exactly.
_EXACT = 2**53

_TOP = sorted(native.KNOWN_KEYS)
_DETAILS = {"cached_input_tokens": ("prompt_tokens_details", "cached_tokens"),
            "reasoning_tokens": ("completion_tokens_details", "reasoning_tokens")}
_USAGE_KEYS = [*native.USAGE.values(), *(outer for outer, _ in _DETAILS.values())]
# (canonical column, object, key) for every value taken from inside usage, params and metadata.
_NESTED = ([(c, "u", k) for c, k in native.USAGE.items()] + [(c, "p", k) for c, k in native.PARAMS.items()]
           + [(c, "m", k) for c, k in native.METADATA.items()])


def _has(keys: str, key: str) -> str:
    """Whether the key list (json_keys) holds the key."""
    return f"list_contains({keys}, {_lit(key)})"


def _sql_list(names: Iterable[str]) -> str:
    return "[" + ", ".join(_lit(name) for name in names) + "]"


def _distinct(keys: str, names: Iterable[str]) -> str:
    """How many of the names are keys (each counted once).

    With the key list's length this answers the key questions without a regular expression: every key is one
    of the names and none is repeated exactly when the two are equal. (list_contains per name costs a fifth
    of matching a pattern over the keys joined into one string.)"""
    return "(" + " + ".join(f"{_has(keys, name)}::INTEGER" for name in names) + ")"


def _repeated(keys: str, names: Iterable[str], var: str = "key_") -> str:
    """True when one of the names is a key twice (DuckDB reads the first, Python keeps the last)."""
    names = list(names)
    return (f"len(list_filter({keys}, lambda {var}: list_contains({_sql_list(names)}, {var}))) > "
            f"{_distinct(keys, names)}")


def _str(v: str) -> str:
    # DuckDB writes a JSON string with its quotes: a type test without parsing the value again.
    return f"CASE WHEN starts_with({v}, '\"') THEN ({v} ->> '$') END"


def _num(v: str) -> str:
    # Only JSON numbers cast: strings keep their quotes, and true/false/objects/arrays are not numbers.
    return f"try_cast({v}::VARCHAR AS DOUBLE)"


def _normalised(s: str, allowed: tuple[str, ...]) -> str:
    """Python's s.strip().lower() when it is certain to be the same here (ASCII letters and spaces)."""
    return (f"CASE WHEN {_one_of(s, allowed)} THEN {s} "
            f"WHEN regexp_full_match({s}, {_LETTERS_AND_SPACE}) THEN lower(trim({s}, {_TRIM})) END")


def _pieces(layout: KeyLayout, value: Callable[[str], str]) -> list[str]:
    """concat's arguments writing an object's keys in the layout, without the closing brace (NULL arguments
    are skipped, so the text is copied once). The first key's name is always written: when its value is
    missing the text cannot be JSON, so it cannot equal the text it is compared with."""
    pieces: list[str] = []
    for index, (key, null) in enumerate(layout):
        prefix = _lit(("{" if index == 0 else ",") + orjson.dumps(key).decode() + ":")
        written = value(key)
        if null:
            pieces += [prefix, f"coalesce({written}, 'null')"]
        elif index == 0:
            pieces += [prefix, written]
        else:
            pieces += [f"CASE WHEN {written} IS NOT NULL THEN {prefix} END", written]
    return pieces


def _template(layout: Layout) -> str:
    """Whether the line is exactly its parse `j` written back in the layout, newline included (see Layout)."""
    if not layout.keys:
        return "false"
    usage = "concat(" + ", ".join([*_pieces(layout.usage, lambda k: f"j.usage.{k}::VARCHAR"), "'}'"]) + ")"

    def value(key: str) -> str:
        return f"CASE WHEN j.usage IS NOT NULL THEN {usage} END" if key == "usage" else f"j.{key}::VARCHAR"

    pieces = [*_pieces(layout.keys, value), "'}' || chr(10)"]
    return f"line = concat({', '.join(pieces)})"


def _nested_layout(layout: Layout | None, key: str, mapped: Iterable[str]) -> tuple[list[str], KeyLayout]:
    """The struct fields for params or metadata (the keys with a column, then the layout's others) and the
    layout's keys that are among them (a name differing only in case from another cannot be a field)."""
    fields = list(mapped)
    if layout is None:
        return fields, ()
    lowered = {name.lower(): name for name in fields}
    kept = []
    for name, null in getattr(layout, key):
        if lowered.setdefault(name.lower(), name) == name:
            kept.append((name, null))
            if name not in fields:
                fields.append(name)
    return fields, tuple(kept)


def _nested_template(value: str, alias: str, layout: KeyLayout) -> str:
    """Whether params or metadata (their JSON text `value`, parsed as `alias`) is exactly its parse written
    back in the layout: DuckDB writes that text compact whatever the line's spacing, so this needs no compact
    writer, only a writer that keeps its key order."""
    if not layout:
        return "false"
    pieces = _pieces(layout, lambda k: f"struct_extract({alias}, {_lit(k)})::VARCHAR")
    return f"coalesce({value}::VARCHAR = concat({', '.join(pieces)}, '}}'), false)"


def _layout_leftover(alias: str, layout: KeyLayout, mapped: Iterable[str]) -> str:
    """For params or metadata that matched their layout: the keys without a column, as the merge patch in
    _leftover writes them (in order, nulls kept); null when there is none."""
    mapped = set(mapped)
    others = [(key, null) for key, null in layout if key not in mapped]
    if not others:
        return "NULL"
    pieces, present = [], []
    for key, null in others:
        written = f"struct_extract({alias}, {_lit(key)})::VARCHAR"
        name = _lit(orjson.dumps(key).decode() + ":")
        pieces.append(f"{name} || coalesce({written}, 'null')" if null else f"{name} || {written}")
        present.append("true" if null else f"{written} IS NOT NULL")
    return f"CASE WHEN {' OR '.join(present)} THEN '{{' || concat_ws(',', {', '.join(pieces)}) || '}}' END"


def _present(key: str, layout: Layout | None) -> str:
    """Whether the line holds the key (perhaps as null): known from the layout where the line matched it."""
    listed = _has("ks", key)
    if layout is None or not layout.keys:
        return listed
    null = dict(layout.keys).get(key)
    known = "false" if null is None else "true" if null else f"j.{key} IS NOT NULL"
    return f"CASE WHEN tpl THEN {known} ELSE {listed} END"


def _build(guarded: bool, layout: Layout | None = None) -> tuple[str, str, list[str]]:
    """The query over the file's lines (`blk`: n, line, cand) giving the canonical columns and whether DuckDB
    vouches for each line (ok); the same query giving each check as a column of its own (check_0, ...,
    for `explain_lines`); and the checks' SQL.

    Unguarded, a line that is not JSON at all stops the query with an error; guarded, its parse is null and
    the line goes to the per-record path. The guard (try) costs about a tenth of the parse on every line, so
    `_read` runs the unguarded query first and the guarded one only after such an error."""
    route = " OR ".join([
        # CASE, not AND: an AND in a projection computes both sides for every row.
        f"CASE WHEN contains(line, '\\u') THEN regexp_matches(line, {_ESCAPES}) ELSE false END",
        *(f"regexp_matches(line, {p})" for p in _LENIENT_JSON),
        f"strlen(line) - strlen(replace(replace(line, '[', ''), '{{', '')) >= {MAX_OPENERS}",
    ])
    # usage is read as a nested struct in the same pass (nothing but its fields is used); params and
    # metadata stay JSON, because the keys without a canonical column are kept as JSON text.
    top = orjson.dumps({k: ({u: "JSON" for u in _USAGE_KEYS} if k == "usage" else "JSON") for k in _TOP}).decode()
    # Not a CASE around from_json: merging a struct result costs as much as a third of the parse.
    parse = f"from_json(line, {_lit(top)})"
    parsed = f"SELECT n, line, {f'try({parse})' if guarded else parse} AS j, {route} AS odd FROM blk WHERE cand"
    # tpl: the line matched the file's layout, so its keys are known without listing them (see Layout).
    templated = f"SELECT *, {_template(layout) if layout else 'false'} AS tpl FROM ({parsed})"
    params, params_layout = _nested_layout(layout, "params", native.PARAMS.values())
    metadata, metadata_layout = _nested_layout(layout, "metadata", native.METADATA.values())
    # Flags no line can set without a layout: their checks are written without the shortcut.
    constant = {flag for flag, able in (("tpl", layout and layout.keys), ("ptpl", params_layout),
                                        ("mtpl", metadata_layout)) if not able}
    # Otherwise the keys of the line and of its usage, params and metadata in one more pass ([] when not an
    # object). A line that matched still has the keys of params and metadata listed (repeats inside them
    # are written back as they are): two small parses instead of the whole line's.
    keyed = ("SELECT n, line, j, odd, tpl, CASE WHEN j IS NOT NULL AND NOT tpl THEN json_keys(line, ['$', "
             f"'$.usage', '$.params', '$.metadata']) END AS k FROM ({templated})")
    objects = ["n", "line", "j", "odd", "tpl", "k", "k[1] AS ks", "j.usage AS u", "k[2] AS uks"]
    for alias, key, names in (("p", "params", params), ("m", "metadata", metadata)):
        objects.append(f"CASE WHEN starts_with(j.{key}, '{{') THEN from_json(j.{key}, {_struct(names)}) END AS {alias}")
    with_objects = "SELECT " + ", ".join(objects) + f" FROM ({keyed})"
    # ptpl, mtpl: params and metadata matched their layout (no key listing, no merge patch). Otherwise their
    # keys come from the listing of the line, or where the line matched its layout, from two small parses.
    nested = ["*", f"{_nested_template('j.params', 'p', params_layout)} AS ptpl",
              f"{_nested_template('j.metadata', 'm', metadata_layout)} AS mtpl"]
    with_nested = "SELECT " + ", ".join(nested) + f" FROM ({with_objects})"
    lists = ["* EXCLUDE (k)", "CASE WHEN ptpl THEN NULL WHEN tpl THEN json_keys(j.params) ELSE k[3] END AS pks",
             "CASE WHEN mtpl THEN NULL WHEN tpl THEN json_keys(j.metadata) ELSE k[4] END AS mks"]
    with_lists = "SELECT " + ", ".join(lists) + f" FROM ({with_nested})"

    # Layer 1: the JSON value of every column as native.to_row picks it, typed but not yet judged.
    raw: dict[str, str] = {col: f"j.{key}" for col, key in native.TOP_LEVEL.items()}
    raw.update({col: f"{obj}.{key}" for col, obj, key in _NESTED})
    raw.update(kind="j.kind", status="j.status", start_time="j.start_time", end_time="j.end_time")
    layer1 = ["n", "line", "j", "odd", "tpl", "ptpl", "mtpl", "ks", "uks", "pks", "mks", "p", "m"]
    for col, (outer, inner) in _DETAILS.items():
        # usage.<outer>.<inner> when the flat key is absent or null and <outer> is an object, which must not
        # repeat a key either (rare: the list functions' cost is paid only then).
        fallback = f"{raw[col]} IS NULL AND starts_with(u.{outer}, '{{')"
        layer1.append(f"CASE WHEN {fallback} THEN len(json_keys(u.{outer})) = "
                      f"len(list_distinct(json_keys(u.{outer}))) ELSE true END AS {col}_detail_ok")
        raw[col] = f"CASE WHEN {fallback} THEN json_extract(u.{outer}, {_lit('$.' + inner)}) ELSE {raw[col]} END"
    for column in SPAN_COLUMNS:
        name, x = column.name, raw.get(column.name)
        if x is None:
            continue
        layer1.append(f"{x} AS {name}_json")
        if name in ("trace_id", "span_id", "parent_span_id"):
            # base.as_str: strings as they are ("" is null), integers (as orjson reads them) as their digits.
            # (Not nullif: DuckDB expands it into a CASE that evaluates its first argument twice.)
            layer1.append(f"CASE WHEN {x} = '\"\"' THEN NULL WHEN starts_with({x}, '\"') THEN {x} ->> '$' "
                          f"WHEN regexp_full_match({x}, '-?[0-9]{{1,18}}') THEN {x}::VARCHAR END AS {name}")
        elif column.type == "str":
            layer1.append(f"{_str(x)} AS {name}")
        elif column.type in ("int", "float"):
            layer1.append(f"{_num(x)} AS {name}")
        elif column.type == "timestamp":
            layer1.append(f"{_str(x)} AS {name}_text")
            # (A string is no epoch: the test spares the usual ISO time a pattern call.)
            layer1.append(f"CASE WHEN starts_with({x}, '\"') THEN NULL WHEN regexp_full_match({x}, '[0-9]{{1,13}}') "
                          f"THEN {x}::VARCHAR::BIGINT END AS {name}_epoch")
    layer1.append(f"{_str('j.response')} AS output_text")
    # Retrieved documents as (JSON text, key list) pairs, for native.normalise_documents below.
    layer1.append("CASE WHEN starts_with(j.documents, '[') THEN list_transform(from_json(j.documents, '[\"JSON\"]'), "
                  "lambda d: {'d': d, 'k': json_keys(d)}) END AS docs")
    with_values = "SELECT " + ", ".join(layer1) + f" FROM ({with_lists})"

    # Layer 2: timestamps, and kinds and statuses as given.
    layer2 = ["*"]
    for name in ("start_time", "end_time"):
        text, epoch = f"{name}_text", f"{name}_epoch"
        layer2.append(
            f"CASE WHEN regexp_full_match({text}, {_ISO}) THEN try_cast({text} AS TIMESTAMPTZ) "
            f"WHEN {epoch} < {_EPOCH_S_MAX} THEN make_timestamp({epoch} * 1000000)::TIMESTAMPTZ "
            f"WHEN {epoch} < {_EPOCH_MS_MAX} THEN make_timestamp({epoch} * 1000)::TIMESTAMPTZ END AS {name}")
    layer2.append(f"{_normalised('kind', KINDS)} AS kind_given")
    layer2.append(f"{_normalised('status', STATUSES)} AS status_given")
    with_times = "SELECT " + ", ".join(layer2) + f" FROM ({with_values})"

    # Layer 3: what native.to_row derives: kind from the name, status from error, latency from the times.
    inferred = " ".join(f"WHEN starts_with(lower(name), {_lit(prefix)}) THEN {_lit(kind)}"
                        for prefix, kind in KIND_BY_NAME.items())
    derived = [
        "* EXCLUDE (kind, status, latency_ms)", "latency_ms AS latency_given",
        f"CASE WHEN j.kind IS NOT NULL THEN kind_given {inferred} WHEN j.model IS NOT NULL AND "
        f"({_present('messages', layout)} OR {_present('response', layout)}) THEN 'llm' ELSE 'chain' END AS kind",
        "CASE WHEN j.status IS NOT NULL THEN status_given WHEN error_message <> '' THEN 'error' ELSE 'ok' END "
        "AS status",
        "CASE WHEN j.latency_ms IS NOT NULL THEN latency_ms WHEN end_time IS NOT NULL THEN "
        "((epoch_us(end_time) - epoch_us(start_time))::DOUBLE / 1000000.0) * 1000.0 END AS latency_ms",
    ]
    with_derived = "SELECT " + ", ".join(derived) + f" FROM ({with_times})"

    # Layer 4: the verdict. First the shape DuckDB can map exactly, then quality.rules' row rules.
    def unless(matched: str, check: str) -> str:
        # CASE, not OR: a CASE computes its branch only for the rows that take it.
        return check if matched in constant else f"CASE WHEN {matched} THEN true ELSE {check} END"

    key_checks = [
        # Every top-level key is a native key, none twice (json_keys lists repeats). A line that matched the
        # layout holds only its keys, each once, and a usage with its first key: nothing to check.
        unless("tpl", f"len(ks) = {_distinct('ks', _TOP)}"),
        # usage must be a non-empty object: its struct cannot tell {} or null from a string or a list.
        unless("tpl", f"NOT {_has('ks', 'usage')} OR (len(uks) > 0 AND NOT {_repeated('uks', _USAGE_KEYS)})"),
        # params and metadata are objects, their keys with a column not repeated (nothing to check where
        # they matched their layout).
        unless("ptpl", f"j.params IS NULL OR (starts_with(j.params, '{{') AND "
                       f"NOT {_repeated('pks', native.PARAMS.values())})"),
        unless("mtpl", f"j.metadata IS NULL OR (starts_with(j.metadata, '{{') AND "
                       f"NOT {_repeated('mks', native.METADATA.values())})"),
    ]
    checks = [
        "j IS NOT NULL", "NOT odd",
        *key_checks,
        *(f"{col}_detail_ok" for col in _DETAILS),
        # A response that is not a string (content_text), and output_messages that are not a non-empty
        # list (Python truthiness), take the per-record path.
        "j.response IS NULL OR output_text IS NOT NULL",
        "j.output_messages IS NULL OR (starts_with(j.output_messages, '[') AND j.output_messages <> '[]')",
        # Documents that are not all objects (content_text), or that repeat doc_id or content.
        f"docs IS NULL OR len(list_filter(docs, lambda x: NOT coalesce(starts_with(x.d, '{{'), false) OR "
        f"{_repeated('x.k', ['doc_id', 'content'], 'doc_key')})) = 0",
        # Required strings are not blank.
        # (A printable ASCII first character settles it without the pattern, whose call costs more.)
        *(f"CASE WHEN ascii({c}) BETWEEN 33 AND 126 THEN true ELSE regexp_matches({c}, {_NOT_BLANK}) END"
          for c in ("trace_id", "span_id", "name")),
        "start_time IS NOT NULL",
        # A kind inferred from the name only when its first characters are ASCII, so lower() agrees.
        # (A pattern anchored at the start, not left(): cutting the string counts its characters.)
        # (An all-ASCII name, one byte a character, settles it without the pattern; NUL cannot be in it, since
        # its escape is routed away and a raw one is no JSON.)
        "CASE WHEN j.kind IS NOT NULL OR strlen(name) = length(name) THEN true "
        "ELSE NOT regexp_matches(name, '^(?s).{0,15}[^\\x01-\\x7f]') END",
        _one_of("kind", KINDS), _one_of("status", STATUSES),
        f"start_time >= {_TS_LOW} AND start_time < {_TS_HIGH}",
        f"end_time_json IS NULL OR (end_time >= {_TS_LOW} AND end_time < {_TS_HIGH} AND end_time >= start_time)",
    ]
    for column in SPAN_COLUMNS:
        name = column.name
        if name not in raw or name in ("kind", "status", "start_time", "end_time"):
            continue
        if name in ("trace_id", "span_id", "parent_span_id"):
            checks.append(f"{name}_json IS NULL OR {name} IS NOT NULL OR {name}_json = '\"\"'")
        elif column.type == "str":
            checks.append(f"{name}_json IS NULL OR {name} IS NOT NULL")
        else:
            bounds = [f"{name} IS NOT NULL", f"isfinite({name})", f"abs({name}) < {_EXACT}"]
            if column.type == "int":
                bounds.append(f"{name} = floor({name})")
            if column.minimum is not None:
                bounds.append(f"{name} >= {column.minimum}")
            if name in ABSURD_LIMITS:
                bounds.append(f"{name} <= {ABSURD_LIMITS[name]!r}")
            if name == "latency_ms":
                # Derived from the times when not given, and judged either way.
                checks.append("latency_ms_json IS NULL OR latency_given IS NOT NULL")
                checks.append("latency_ms IS NULL OR (" + " AND ".join(bounds) + ")")
            else:
                checks.append(f"{name}_json IS NULL OR (" + " AND ".join(bounds) + ")")

    explain = ("SELECT n, tpl, ptpl, mtpl, "
               + ", ".join(f"coalesce(({c}), false) AS check_{i}" for i, c in enumerate(checks))
               + f" FROM ({with_derived})")
    verdict = "SELECT *, coalesce((" + ") AND (".join(checks) + f"), false) AS ok FROM ({with_derived})"
    # The line itself only where DuckDB does not vouch for it: the per-record path reads it.
    out = ["n", "ok", "CASE WHEN ok THEN NULL ELSE line END AS line",
           # Which times were epoch numbers (bit 1 start, bit 2 end): see _representatives.
           "(start_time_epoch IS NOT NULL)::INTEGER + 2 * (end_time_epoch IS NOT NULL)::INTEGER AS epochs",
           # For the hour's dedupe: hashed here, on DuckDB's threads, rather than a million Python strings
           # hashed after the read (see quality.rules.split_duplicates).
           "hash(span_id) AS span_hash"]
    for name in FRAME_COLUMNS:
        column = SPAN_COLUMN_BY_NAME[name]
        if name == "source_line":
            out.append("n AS source_line")
        elif name == "model":
            out.append("CASE WHEN response_model <> '' THEN response_model ELSE request_model END AS model")
        elif name == "input_messages":
            out.append("j.messages::VARCHAR AS input_messages")
        elif name == "output_messages":
            out.append("CASE WHEN j.output_messages IS NOT NULL THEN j.output_messages::VARCHAR "
                       "WHEN j.response IS NOT NULL THEN '[{\"role\":\"assistant\",\"content\":' || j.response || '}]' "
                       "END AS output_messages")
        elif name == "request_params":
            out.append(f"CASE WHEN ptpl THEN {_layout_leftover('p', params_layout, native.PARAMS.values())} "
                       f"ELSE {_leftover('j.params', 'pks', native.PARAMS.values())} END AS {name}")
        elif name == "metadata":
            out.append(f"CASE WHEN mtpl THEN {_layout_leftover('m', metadata_layout, native.METADATA.values())} "
                       f"ELSE {_leftover('j.metadata', 'mks', native.METADATA.values())} END AS {name}")
        elif name == "documents":
            out.append(f"CASE WHEN docs IS NOT NULL THEN '[' || array_to_string(list_transform(docs, lambda x, i: "
                       f"{_normalised_document('x.d', 'x.k', 'i')}), ',') || ']' ELSE j.documents::VARCHAR END "
                       "AS documents")
        elif column.type == "timestamp":
            # Rows DuckDB does not vouch for may hold times outside pandas' nanosecond range.
            out.append(f"CASE WHEN ok THEN {name} END AS {name}")
        elif column.type == "int":
            out.append(f"try_cast({name} AS BIGINT) AS {name}")
        else:
            out.append(name)
    return "SELECT " + ", ".join(out) + f" FROM ({verdict})", explain, checks


def _normalised_document(doc: str, keys: str, position: str) -> str:
    """native.normalise_documents for one object: id from doc_id, text from content, score null, rank the
    1-based position, each only where the key is missing (setdefault)."""
    added = [
        f"CASE WHEN NOT {_has(keys, 'id')} THEN '\"id\":' || coalesce(json_extract({doc}, '$.doc_id')::VARCHAR, 'null') END",
        f"CASE WHEN NOT {_has(keys, 'text')} THEN '\"text\":' || coalesce(json_extract({doc}, '$.content')::VARCHAR, 'null') END",
        f"CASE WHEN NOT {_has(keys, 'score')} THEN '\"score\":null' END",
        f"CASE WHEN NOT {_has(keys, 'rank')} THEN '\"rank\":' || {position}::VARCHAR END",
    ]
    # concat_ws skips the keys not added (NULL); each branch names the additions once, so that they are
    # computed once a document (a test of the additions and then their use computed them twice).
    return (f"CASE WHEN {doc}::VARCHAR = '{{}}' THEN '{{' || concat_ws(',', {', '.join(added)}) || '}}' "
            f"ELSE concat_ws(',', left({doc}::VARCHAR, -1), {', '.join(added)}) || '}}' END")


def _leftover(value: str, keys: str, mapped: Iterable[str]) -> str:
    """The keys of params/metadata without a canonical column (RFC 7386 merge patch: null removes a key);
    null when the object is empty or every key has a column (the patch is skipped then, so its result always
    holds a key: not nullif, which DuckDB expands into a CASE that would run the patch twice)."""
    mapped = list(mapped)
    patch = _lit(orjson.dumps(dict.fromkeys(mapped)).decode())
    return (f"CASE WHEN starts_with({value}, '{{') AND {value} <> '{{}}' AND len({keys}) <> {_distinct(keys, mapped)} "
            f"THEN json_merge_patch({value}, {patch})::VARCHAR END")


SQL, _, _ = _build(guarded=False)
GUARDED_SQL, _EXPLAIN_SQL, _CHECKS = _build(guarded=True)


@lru_cache(maxsize=32)
def _layout_queries(layout: Layout) -> tuple[str, str]:
    return _build(guarded=False, layout=layout)[0], _build(guarded=True, layout=layout)[0]


def _queries(layout: Layout | None) -> tuple[str, str]:
    """The unguarded and guarded queries for a file of this layout."""
    return (SQL, GUARDED_SQL) if layout is None else _layout_queries(layout)


# ---------------------------------------------------------------------------------------------------------
# Per file


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {DUCKDB_THREADS}")
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    # A streamed source's rows come back in runs out of order either way (_InLineOrder places them).
    con.execute("SET preserve_insertion_order = false")
    # Naive timestamps are UTC, as base.parse_time and pandas (utc=True) read them.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws its progress bar on stderr from a thread of its own: noise in a run's log.
    con.execute("SET enable_progress_bar = false")
    return con


class _Slow:
    """Lines DuckDB did not vouch for, read as the generic path reads them: decoding, parsing, native.read."""

    def __init__(self, result: FileRead) -> None:
        self.result = result
        self.rows: list[dict[str, Any]] = []

    def add(self, number: int, raw: bytes) -> None:
        """One physical line (newline included): blank lines are skipped, like files.iter_lines does."""
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            return
        self.result.records_read += 1
        item = files._decode(line, number)
        if isinstance(item, str):
            item = files._parse(item, number)
        if isinstance(item, Reject):
            self.result.rejects.append(item)
            return
        for out in native.read([item]):
            if isinstance(out, Reject):
                out.source_format = out.source_format or native.FORMAT
                self.result.rejects.append(out)
            else:
                self.rows.append(out)


def _read(path: files.Source, source_file: str) -> FileRead | None:
    """The file read by the unguarded query, or by the guarded one when a line is not JSON at all."""
    unguarded, guarded = _queries(sniff_layout(path))
    try:
        return _read_with(path, source_file, unguarded)
    except (duckdb.InvalidInputException, OSError) as exc:
        # The error comes as DuckDB's own exception or, when it surfaces while Arrow reads the result stream,
        # as an OSError carrying DuckDB's message (file read errors never get here: _Lines keeps them).
        if isinstance(exc, OSError) and not str(exc).startswith("Invalid Input Error"):
            raise
        # The first such line stopped the query (what was read so far is dropped): read the file again with
        # every parse guarded. Only files holding a line DuckDB cannot parse pay for the second pass.
        log.info("native fast path: %s holds a line that is not JSON, reading it again guarded: %s",
                 source_file, str(exc).splitlines()[0])
        return _read_with(path, source_file, guarded)


def _read_with(path: files.Source, source_file: str, sql: str) -> FileRead | None:
    """One DuckDB query streams over the whole file; valid rows are converted and put in place as they arrive."""
    result = FileRead(path=path, source_file=source_file, source_format=native.FORMAT)
    slow = _Slow(result)
    lines = _Lines(path)
    placed = _InLineOrder()
    con = _connect()
    try:
        con.register("blk", lines.reader())
        for batch in con.sql(sql).to_arrow_reader(FETCH_ROWS):
            ok = batch.column(1).to_numpy(zero_copy_only=False)
            failed = np.flatnonzero(~ok)
            if len(failed):
                numbers, texts = batch.column(0), batch.column(2)
                for index in failed:
                    slow.add(numbers[index].as_py(), texts[index].as_py().encode("utf-8"))
            # All rows are converted (no Arrow filter copying every string); failed ones are dropped after.
            part = _to_arrays(batch.drop_columns(["n", "ok", "line", "epochs", "span_hash"]))
            part["epochs"] = batch.column(3).to_numpy(zero_copy_only=False).astype(np.int8)
            part["span_hash"] = batch.column(4).to_numpy(zero_copy_only=False)
            if len(failed):
                part = {name: values[ok] for name, values in part.items()}
            count = len(part["source_line"])
            result.records_read += count
            if count:
                placed.put(part, lines.estimated_lines())
    finally:
        con.close()
    if isinstance(lines.error, StorageError):
        raise lines.error  # the object store failed for good: the partition fails, naming the key
    if lines.error is not None:
        return None  # a damaged gzip stream: the generic path reports the line it stopped at
    for number, raw in lines.kept:
        slow.add(number, raw)
    frame = placed.frame()
    if slow.rows:
        slow.rows.sort(key=lambda row: row["source_line"])
        result.rows = _rows_frame(slow.rows, frame)
    if frame is not None:
        result.span_hashes = frame["span_hash"].to_numpy()
        result.prevalidated = _with_context(frame, source_file)
    result.rejects.sort(key=lambda reject: reject.number or 0)
    return result


# Where a nullable integer column keeps its nulls until the frame is built (values hold 0 there).
_NULLS = ".isna"
# Columns whose values differ from row to row (see _to_arrays).
_UNIQUE_COLUMNS = frozenset({"span_id"})


def _to_arrays(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Each column as numpy arrays for the canonical pandas dtypes (as schema.conform makes them): object
    arrays of str/None, float64, datetime64[ns] (UTC; NaT for null), and for Int64 the int64 values plus a
    null mask under `<name>.isna`."""
    arrays: dict[str, np.ndarray] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = SPAN_COLUMN_BY_NAME[name].type
        if kind == "timestamp":
            arrays[name] = column.cast(pa.timestamp("ns", tz="UTC")).to_numpy(zero_copy_only=False)
        elif kind == "int":
            arrays[name] = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            arrays[name + _NULLS] = column.is_null().to_numpy(zero_copy_only=False)
        elif pa.types.is_floating(column.type):
            arrays[name] = column.to_numpy(zero_copy_only=False)
        else:
            # Repeated strings (kinds, models, prompts, ...) share one Python object per batch. Span ids are
            # one per span: hashing them to share nothing cost ten times their conversion.
            arrays[name] = column.to_pandas(deduplicate_objects=name not in _UNIQUE_COLUMNS).to_numpy()
    return arrays


class _InLineOrder:
    """The rows DuckDB vouched for, each column written at its line's place (line n at index n - 1) as its batch
    arrives, so the file's frame is ready, in line order, when the last batch is in.

    DuckDB's threads return a streamed source's rows as interleaved ascending runs (one per vector); placing
    them by line number puts them in order without a sort, and does the copying while DuckDB is still at work
    (the alternative, joining the parts at the end, took a tenth of the whole read on one core). Lines that
    left no row here (blank, kept in Python, or not vouched for) leave holes, which `frame` squeezes out.
    """

    def __init__(self) -> None:
        self.columns: dict[str, np.ndarray] = {}
        self.filled = np.zeros(0, dtype=bool)
        self.end = 0  # one past the highest index written

    def put(self, part: dict[str, np.ndarray], estimate: int) -> None:
        """Write one converted batch (with `source_line`) at its lines' places."""
        at = np.asarray(part["source_line"], dtype=np.int64) - 1
        need = int(at.max()) + 1
        if need > len(self.filled):
            self._grow(max(need, estimate, 2 * len(self.filled)), part)
        # Slices write faster than an index array: one per ascending run of consecutive lines.
        cuts = [0, *(np.flatnonzero(at[1:] != at[:-1] + 1) + 1).tolist(), len(at)]
        if len(cuts) - 1 > len(at) // 64:
            pieces: list[tuple[slice | np.ndarray, slice]] = [(at, slice(None))]  # mostly scattered lines
        else:
            pieces = [(slice(int(at[a]), int(at[b - 1]) + 1), slice(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]
        for name, values in part.items():
            column = self.columns[name]
            for where, taken in pieces:
                column[where] = values[taken]
        for where, _ in pieces:
            self.filled[where] = True
        self.end = max(self.end, need)

    def _grow(self, size: int, part: dict[str, np.ndarray]) -> None:
        for name, values in part.items():
            grown = np.empty(size, dtype=values.dtype)
            old = self.columns.get(name)
            if old is not None:
                grown[:len(old)] = old
            self.columns[name] = grown
        filled = np.zeros(size, dtype=bool)
        filled[:len(self.filled)] = self.filled
        self.filled = filled

    def frame(self) -> pd.DataFrame | None:
        """The rows in line order, in canonical dtypes; None when there were none."""
        if self.end == 0:
            return None
        filled = self.filled[:self.end]
        dense = bool(filled.all())
        # Views when the rows fill the columns; a copy where the columns grew well past them (a gzip file's
        # line count is guessed low, and doubling may leave half unused), so that the slack is freed.
        spare = len(self.filled) > 1.25 * self.end
        arrays = {name: (values[:self.end].copy() if spare else values[:self.end]) if dense
                  else values[:self.end][filled] for name, values in self.columns.items()}
        self.columns = {}
        columns: dict[str, Any] = {}
        for name, values in arrays.items():
            if name.endswith(_NULLS):
                continue
            if name + _NULLS in arrays:
                columns[name] = pd.arrays.IntegerArray(values, arrays[name + _NULLS])
            elif values.dtype.kind == "M":
                columns[name] = pd.array(values, dtype=_TS_DTYPE)
            else:
                columns[name] = values
        return pd.DataFrame(columns, copy=False)


def _rows_frame(rows: list[dict[str, Any]], prevalidated: pd.DataFrame | None) -> pd.DataFrame:
    """The per-record path's rows as `pd.DataFrame(rows)` of the whole file would hold them.

    pandas picks a column's dtype from all of its values ([1, None] is float64, [1, "a"] object), and the
    row rules' checks and messages follow the dtype. So each column gets, for the inference only, one value
    of every kind the rows DuckDB vouched for had there (as native.to_row gave them), and loses them after.
    """
    if prevalidated is None:
        return pd.DataFrame(rows)
    kinds = {name: values for name, values in _representatives(prevalidated).items() if values}
    extra = max((len(values) for values in kinds.values()), default=0)
    padding = [{name: values[i % len(values)] for name, values in kinds.items()} for i in range(extra)]
    frame = pd.DataFrame(rows + padding)
    return frame.iloc[:len(rows)].copy()


def _representatives(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """For each column, one Python value per kind of value (None, str, int, float, bool, list, dict) that
    native.to_row gave the pre-validated rows there; JSON kinds are read from the JSON text."""
    kinds: dict[str, list[Any]] = {}
    epochs = frame["epochs"].to_numpy()
    for column in SPAN_COLUMNS:
        name = column.name
        if name in CONTEXT_COLUMNS:
            continue
        values = frame[name]
        null = values.isna().to_numpy()
        found: list[Any] = [None] if null.any() else []
        if not null.all():
            if column.type == "timestamp":
                epoch = (epochs & (1 if name == "start_time" else 2)) != 0
                found += (["x"] if (~null & ~epoch).any() else []) + ([0] if epoch.any() else [])
            elif column.type == "json":
                found += _json_kinds(values.to_numpy()[~null])
            elif column.type in ("int", "float"):
                found.append(0.5)  # int64 or float64: the row rules treat both alike
            else:
                found.append("x")
        kinds[name] = found
    return kinds


def _json_kinds(texts: np.ndarray) -> list[Any]:
    """A Python value per JSON kind among the texts; one list, object or string makes the column object
    dtype whatever else it holds, so the scan stops at the first."""
    found: dict[str, Any] = {}
    for text in texts:
        first = text[0]
        if first in "[{\"":
            return ["x"]
        if first in "tf":
            found["bool"] = True
        elif "." in text or "e" in text or "E" in text:
            found["float"] = 0.5
        else:
            found["int"] = 0
    return list(found.values())


def _with_context(frame: pd.DataFrame, source_file: str) -> pd.DataFrame:
    """All canonical columns in canonical order; partition.ingest_files sets the export hour."""
    size = len(frame)
    context = {
        "source_format": _same(native.FORMAT, size),
        "source_file": _same(source_file, size),
        "export_hour": pd.array(np.full(size, np.datetime64("NaT"), dtype="datetime64[ns]"),
                                dtype="datetime64[ns, UTC]"),
        "schema_version": pd.array(np.full(size, SCHEMA_VERSION), dtype="Int64"),
    }
    columns = {name: context[name] if name in context else frame[name] for name in SPAN_COLUMN_NAMES}
    return pd.DataFrame(columns, copy=False)


def _same(value: str, size: int) -> np.ndarray:
    """An object array holding `value` `size` times, one object (np.full makes a new string per element)."""
    out = np.empty(size, dtype=object)
    out.fill(value)
    return out


def merge_in_line_order(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Two frames of one file's rows, each in line order and with the same columns and dtypes, as one frame
    in line order: each column is written once into its place (pandas' concat then sort copies it twice)."""
    lines_a = first["source_line"].to_numpy(dtype=np.int64)
    lines_b = second["source_line"].to_numpy(dtype=np.int64)
    total = len(lines_a) + len(lines_b)
    at_b = np.searchsorted(lines_a, lines_b) + np.arange(len(lines_b))
    at_a = np.ones(total, dtype=bool)
    at_a[at_b] = False
    order = np.empty(total, dtype=np.int64)
    order[at_a] = np.arange(len(lines_a))
    order[at_b] = np.arange(len(lines_a), total)
    columns = {}
    for name in first.columns:
        a, b = first[name].array, second[name].array
        if isinstance(a, pd.arrays.NumpyExtensionArray):
            out = np.empty(total, dtype=a.dtype.numpy_dtype)
            out[at_a] = a.to_numpy()
            out[at_b] = b.to_numpy()
            columns[name] = out
        else:
            columns[name] = type(a)._concat_same_type([a, b]).take(order)
    return pd.DataFrame(columns, copy=False)


def explain_lines(path: files.Source) -> dict[int, list[str]]:
    """Why DuckDB did not vouch for lines of a file (line number -> the checks they failed, as SQL), for
    finding what sends a file's lines to the slower per-record path. Lines Python kept (blank, not starting
    with '{', not UTF-8) are listed with the reason "kept in Python"."""
    lines = _Lines(path)
    failed: dict[int, list[str]] = {}
    for batch in _batches_of(lines, _EXPLAIN_SQL):
        checks = [batch.column(i + 4).to_numpy(zero_copy_only=False) for i in range(len(_CHECKS))]
        for row, number in enumerate(batch.column(0).to_pylist()):
            broken = [sql for sql, values in zip(_CHECKS, checks, strict=True) if not values[row]]
            if broken:
                failed[number] = broken
    for number, _ in lines.kept:
        failed[number] = ["kept in Python"]
    return dict(sorted(failed.items()))


def layout_matches(path: files.Source) -> tuple[Layout | None, dict[int, tuple[bool, bool, bool]]]:
    """The file's layout (see Layout) and, for each line DuckDB parsed, whether the line, its params and its
    metadata matched it. What did not match is checked the long way (slower, same verdict): a writer whose
    lines mostly do not match changes its key order or spelling from line to line."""
    layout = sniff_layout(path)
    if layout is None:
        return None, {}
    matched: dict[int, tuple[bool, bool, bool]] = {}
    sql = f"SELECT n, tpl, ptpl, mtpl FROM ({_build(guarded=True, layout=layout)[1]})"
    for batch in _batches_of(_Lines(path), sql):
        for number, *flags in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            matched[number] = (bool(flags[0]), bool(flags[1]), bool(flags[2]))
    return layout, dict(sorted(matched.items()))


def _batches_of(lines: _Lines, sql: str) -> Iterator[pa.RecordBatch]:
    """The result of a diagnostic query over the file's lines (`blk`), batch by batch."""
    con = _connect()
    try:
        con.register("blk", lines.reader())
        yield from con.sql(sql).to_arrow_reader(FETCH_ROWS)
    finally:
        con.close()
