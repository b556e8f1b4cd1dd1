"""Opening landing files and splitting them into records, whatever their compression and layout.

Owns: gzip detection (by magic bytes, not the name), per-line UTF-8 decoding and JSON parsing, and the choice
between JSON Lines and a single JSON document. Everything that cannot be read becomes a `Reject` naming the
line; a file that cannot be opened at all raises `UnreadableFile`.

A "file" is a local `Path` or a `storage.StoreObject` (an object in S3, GCS, Azure, ...): `open_binary` gives
the same binary stream for both, so readers take a stream and a name and never see where it came from.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson

from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.storage import StoreObject

# What the readers open: a local file or an object under an object-store root.
Source = Path | StoreObject

GZIP_MAGIC = b"\x1f\x8b"
# A JSON document (not JSON Lines) is loaded whole; past this size a file must be JSON Lines.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
LANDING_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")


class UnreadableFile(Exception):
    """The file could not be opened or decompressed at all."""


def is_landing_file(path: Source) -> bool:
    """Return True for names the landing layout accepts (.jsonl, .json, .ndjson, optionally .gz)."""
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(LANDING_SUFFIXES)


class _OwningGzipFile(gzip.GzipFile):
    """A GzipFile that also closes the stream it decompresses (GzipFile(fileobj=...) leaves it open)."""

    def close(self) -> None:
        inner = self.fileobj
        try:
            super().close()
        finally:
            if inner is not None:
                inner.close()


def open_binary(path: Source) -> io.BufferedIOBase:
    """Open a file or object for reading bytes, transparently gunzipping it when it starts with the gzip magic.

    Objects in an object store are streamed in ranged reads (nothing is downloaded to disk); a store that
    fails for good raises `storage.StorageError` (naming the key), which is not an `UnreadableFile`.
    """
    if isinstance(path, StoreObject):
        if path.local_path is None:
            return _open_object(path)
        path = path.local_path
    try:
        handle = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot open: {exc.strerror or exc}") from exc
    magic = handle.read(2)
    handle.seek(0)
    if magic == GZIP_MAGIC:
        # gzip.open owns the file it opens; GzipFile(fileobj=...) would leave this handle open on close.
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.name.endswith(".gz"):
        handle.close()
        raise UnreadableFile(f"{path}: named .gz but is not gzip-compressed")
    return handle


def _open_object(obj: StoreObject) -> io.BufferedIOBase:
    stream = obj.open()
    try:
        magic = stream.peek(2)[:2]
    except FileNotFoundError as exc:
        stream.close()
        raise UnreadableFile(f"{obj.url}: cannot open: the object is gone ({exc.__class__.__name__})") from exc
    except BaseException:
        stream.close()
        raise
    if magic == GZIP_MAGIC:
        return _OwningGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if obj.name.endswith(".gz"):
        stream.close()
        raise UnreadableFile(f"{obj.url}: named .gz but is not gzip-compressed")
    return stream


def size_of(path: Source) -> int:
    """The size in bytes of a file or object (as stored, before any gunzipping)."""
    return path.size if isinstance(path, StoreObject) else path.stat().st_size


def _decode(raw: bytes, number: int) -> str | Reject:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(
            "invalid_encoding",
            f"line {number}: not valid UTF-8 at byte {exc.start} ({exc.reason})",
            number,
            raw.decode("utf-8", errors="replace"),
        )
    return text.removeprefix("\ufeff")


def _parse(text: str, number: int) -> RawRecord | Reject:
    try:
        return RawRecord(number, text, orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        return Reject("invalid_json", f"line {number}: {exc}", number, text)


def iter_lines(stream: io.BufferedIOBase) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line bytes without newline) for non-blank lines; raise on corrupt gzip."""
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line


def looks_like_document(path: Source) -> bool:
    """A file is one JSON document when it starts with '[' or its first line is not a whole JSON value."""
    # The whole first line decides: an OTLP export request written by the Collector can exceed 64 KiB.
    first = b""
    with open_binary(path) as stream:
        try:
            while not first.strip():
                first = stream.readline(MAX_DOCUMENT_BYTES)
                if not first:
                    return False
        except (EOFError, zlib.error, gzip.BadGzipFile):
            # A damaged gzip tail is reported by the line reader after the good records it still yields.
            return False
    stripped = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return True
    first_line = stripped.split(b"\n", 1)[0].strip()
    if not first_line:
        return False
    try:
        orjson.loads(first_line)
        return False
    except orjson.JSONDecodeError:
        return first_line in (b"{",) or (first_line.startswith(b"{") and not first_line.endswith(b"}"))


def iter_records(path: Source) -> Iterator[RawRecord | Reject]:
    """Yield the records of a landing file, or Rejects for lines that are not valid UTF-8 JSON.

    A corrupt or truncated gzip stream yields the records before the damage, then one `corrupt_gzip`
    Reject. A file that cannot be opened raises `UnreadableFile`.
    """
    try:
        document = looks_like_document(path)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableFile(f"{path}: cannot read: {exc}") from exc
    if document:
        yield from _iter_document(path)
        return
    yield from _iter_lines_of(path)


def _iter_lines_of(path: Source) -> Iterator[RawRecord | Reject]:
    last = 0
    try:
        with open_binary(path) as stream:
            for number, line in iter_lines(stream):
                last = number
                text = _decode(line, number)
                yield text if isinstance(text, Reject) else _parse(text, number)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Reject("corrupt_gzip", f"after line {last}: compressed stream is damaged: {exc}", last + 1)


def _iter_document(path: Source) -> Iterator[RawRecord | Reject]:
    try:
        with open_binary(path) as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Reject("corrupt_gzip", f"compressed stream is damaged: {exc}", 1)
        return
    if len(data) > MAX_DOCUMENT_BYTES:
        yield Reject("invalid_json", f"JSON document larger than {MAX_DOCUMENT_BYTES} bytes; use JSON Lines", 1)
        return
    text = _decode(data, 1)
    if isinstance(text, Reject):
        yield text
        return
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        # Not one valid document: read it line by line, so a broken first line cannot take the good
        # lines after it down with it (each bad line is quarantined on its own).
        yield from _iter_lines_of(path)
        return
    if isinstance(value, list):
        for index, item in enumerate(value, start=1):
            yield RawRecord(index, orjson.dumps(item).decode(), item)
    else:
        yield RawRecord(1, text, value)
