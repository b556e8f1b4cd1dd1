"""CSV landing files as records: one `RawRecord` per data row, its value the row as a dict keyed by the header.

Written for the CSV that export products write (Langfuse's blob-storage export among them): a header row, then
one row per record; fields may be quoted, a quoted field may hold commas, `""` and newlines. Cell values:
  * an empty cell is None (CSV cannot tell an empty string from a null, and exporters write null as empty);
  * a cell holding a JSON object or array (`{...}` / `[...]`) is parsed into it, because exporters serialise
    nested values (metadata, usage maps, tag lists) as JSON text in the cell; a cell that only looks like JSON
    stays text;
  * every other cell stays text: which text is a number, a boolean or a timestamp is the reader's business.
`RawRecord.number` is the physical line the row starts on (the header is line 1), counted across quoted
newlines, so quarantine rows point at the line an editor shows. `RawRecord.text` is the row's own CSV text.

A leading UTF-8 BOM is dropped. Rows are rejected one by one, naming the line (and the column): not UTF-8
(`invalid_encoding`), broken quoting or a field count that differs from the header's (`invalid_csv`). A
damaged gzip stream yields the rows before the damage, then one `corrupt_gzip` Reject.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from typing import IO

import orjson

from aiobs_pipeline.ingest.base import RawRecord, Reject

CSV_SUFFIXES = (".csv", ".csv.gz")
# csv's default cap is 128 KiB per field; LLM inputs and outputs exported in one cell are often larger.
MAX_FIELD_BYTES = 512 * 1024 * 1024
csv.field_size_limit(MAX_FIELD_BYTES)


def is_csv_name(name: str) -> bool:
    """Return True for a name ending in .csv or .csv.gz (case-insensitive)."""
    return name.lower().endswith(CSV_SUFFIXES)


def cell_value(cell: str) -> object:
    """The value of one CSV cell: None when empty, a parsed JSON object/array when it holds one, else the text."""
    if cell == "":
        return None
    head = cell.lstrip()[:1]
    if head in ("{", "["):
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            return cell
    return cell


def _bad_column(cells: list[str], header: list[str]) -> str | None:
    """The name of the first column whose text held bytes that are not UTF-8 (decoded as surrogates)."""
    for index, cell in enumerate(cells):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return header[index] if index < len(header) else f"#{index + 1}"
    return None


def iter_csv_records(stream: IO[bytes], name: str) -> Iterator[RawRecord | Reject]:
    """Yield one RawRecord per CSV data row of a binary stream (already decompressed), or Rejects for bad rows.

    `name` is the file or object name, used in the details of rejects about the whole file.
    """
    # surrogateescape keeps going past a bad byte so only the row holding it is rejected.
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    consumed: list[str] = []
    line_count = 0

    def lines() -> Iterator[str]:
        nonlocal line_count
        for line in text:
            line_count += 1
            if line_count == 1:
                line = line.removeprefix("\ufeff")  # before csv sees it: a BOM before a quote breaks the quoting
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), strict=True)
    header: list[str] | None = None
    header_line = 0
    while True:
        start = line_count + 1
        consumed.clear()
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raw = "".join(consumed).rstrip("\r\n")
            yield Reject("invalid_csv", f"line {start}: broken CSV quoting ({exc})", start,
                         raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            continue
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            yield Reject("corrupt_gzip", f"after line {line_count}: compressed stream is damaged: {exc}",
                         line_count + 1)
            return
        raw = "".join(consumed)
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        if header is None:
            bad = _bad_column(cells, cells)
            if bad is not None or len(set(cells)) != len(cells) or any(not c.strip() for c in cells):
                problem = ("is not valid UTF-8" if bad is not None else
                           "has an empty or repeated column name")
                yield Reject("invalid_csv", f"{name}: line {start}: the CSV header {problem}; no row can be read",
                             start, raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                return
            header, header_line = cells, start
            continue
        shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace").rstrip("\r\n")
        bad = _bad_column(cells, header)
        if bad is not None:
            yield Reject("invalid_encoding", f"line {start}: column '{bad}' is not valid UTF-8", start, shown)
            continue
        if len(cells) != len(header):
            yield Reject("invalid_csv", f"line {start}: {len(cells)} fields, but the header (line {header_line}) "
                         f"has {len(header)}", start, shown)
            continue
        yield RawRecord(start, shown, {key: cell_value(cell) for key, cell in zip(header, cells, strict=True)})
