"""Picking the reader for a landing file from its first readable record.

Adding a format = one reader module + fixtures + one line in `READERS`. Order matters: the most specific
shapes come first, so a native span (which is the loosest shape) is tried last.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from aiobs_pipeline.ingest import (
    langfuse,
    langfuse_blob,
    langsmith,
    langsmith_bulk,
    native,
    openinference,
    otlp,
    otlp_logs,
)

READERS: tuple[ModuleType, ...] = (
    otlp,
    otlp_logs,
    langsmith,
    langfuse,
    langfuse_blob,
    openinference,
    native,
)


# Formats recognised from a file's name and first bytes rather than a JSON record (binary, columnar files):
# each has `claims(name, head) -> bool` and `read_stream(stream, name, window)`.
FILE_READERS: tuple[ModuleType, ...] = (
    langsmith_bulk,
)
HEAD_BYTES = 4


def detect_file_reader(name: str, head: bytes) -> ModuleType | None:
    """Return the file reader that claims a file by its name and first `HEAD_BYTES` bytes, or None."""
    for reader in FILE_READERS:
        if reader.claims(name, head):
            return reader
    return None


def detect_reader(value: Any) -> ModuleType | None:
    """Return the reader module whose `matches` accepts this parsed record, or None when none does."""
    for reader in READERS:
        if reader.matches(value):
            return reader
    return None


def reader_for(format_name: str) -> ModuleType:
    """Return the reader module for a format name; raise ValueError naming the known formats."""
    for reader in READERS + FILE_READERS:
        if reader.FORMAT == format_name:
            return reader
    known = ", ".join(r.FORMAT for r in READERS + FILE_READERS)
    raise ValueError(f"unknown format {format_name!r}; known formats: {known}")
