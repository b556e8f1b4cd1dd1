"""An OpenTelemetry SDK span exporter that writes OTLP/JSON lines into the aiobs landing layout.

Python's SDK has no file exporter, so this one encodes each batch with the SDK's own OTLP encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`, the code behind the OTLP/HTTP and
gRPC exporters) into an `ExportTraceServiceRequest` and writes it as one JSON object per line, in the layout
the OpenTelemetry Collector's `file` exporter writes: protobuf's JSON mapping with camelCase names, 64-bit
integers as strings and enums as integers, except that trace and span ids are lowercase hex (OTLP/JSON)
instead of the base64 protobuf's generic JSON mapping gives `bytes` fields.

Where lines go: `<landing_root>/YYYY/MM/DD/HH/<prefix>-<host>-<pid>.jsonl`, the hour being the UTC hour in
which the span ended (its start when it has no end), so a batch that straddles an hour boundary becomes one
line in each hour's file. That is the hourly rotation: a new hour starts a new file in a new folder.

Concurrency: every process writes its own file (host and pid in the name, re-derived after a fork), opened
with O_APPEND; a batch is one `write` of whole lines under a lock, so threads of one process never interleave
and a reader sees complete lines except, at worst, the tail of a batch being written. A file left without a
trailing newline (a crash mid-write) gets one before new lines are appended, so only the torn line is lost.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger(__name__)

# Open files kept per exporter: the current hour and the previous one (spans ending just before the hour
# turned still arrive in the next batch); older hours are closed as soon as a newer one is opened.
MAX_OPEN_FILES = 2
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def hex_id(value: str, where: str) -> str:
    """A base64 id (protobuf's JSON mapping of bytes) as OTLP/JSON's lowercase hex; ValueError naming `where`."""
    try:
        return base64.b64decode(value, validate=True).hex()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: not a base64 id: {value!r}") from exc


def request_to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """An ExportTraceServiceRequest as the Collector's file exporter writes it (OTLP/JSON, hex ids)."""
    body = MessageToDict(request, preserving_proto_field_name=False, use_integers_for_enums=True)
    for i, resource_spans in enumerate(body.get("resourceSpans", [])):
        for j, scope_spans in enumerate(resource_spans.get("scopeSpans", [])):
            for k, span in enumerate(scope_spans.get("spans", [])):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                for name in _ID_FIELDS:
                    if name in span:
                        span[name] = hex_id(span[name], f"{where}.{name}")
                for n, link in enumerate(span.get("links", [])):
                    for name in ("traceId", "spanId"):
                        if name in link:
                            link[name] = hex_id(link[name], f"{where}.links[{n}].{name}")
    return body


def encode_line(spans: Sequence[ReadableSpan]) -> bytes:
    """One JSON line (newline included) holding the OTLP trace request for these spans."""
    return orjson.dumps(request_to_otlp_json(encode_spans(spans))) + b"\n"


def span_hour(span: ReadableSpan) -> datetime:
    """The UTC hour a span is filed under: the hour it ended in, else the hour it started in."""
    nanos = span.end_time if span.end_time is not None else span.start_time
    if nanos is None:
        raise ValueError(f"span {span.name!r} has neither an end nor a start time")
    moment = datetime.fromtimestamp(nanos / 1e9, tz=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def group_by_hour(spans: Iterable[ReadableSpan]) -> dict[datetime, list[ReadableSpan]]:
    """Spans grouped by `span_hour`, hours in ascending order, spans in their original order."""
    groups: dict[datetime, list[ReadableSpan]] = {}
    for span in spans:
        groups.setdefault(span_hour(span), []).append(span)
    return dict(sorted(groups.items()))


def hour_folder(landing_root: Path, hour: datetime) -> Path:
    """ROOT/YYYY/MM/DD/HH for a UTC hour (the landing layout of docs/formats.md).

    The same rule as `aiobs_pipeline.ingest.partition.landing_folder` (a test holds them equal), repeated so
    that applications importing the exporter do not import the pipeline's pandas-based ingest modules.
    """
    hour = hour.astimezone(UTC)
    return Path(landing_root) / f"{hour:%Y}" / f"{hour:%m}" / f"{hour:%d}" / f"{hour:%H}"


def process_file_name(prefix: str, host: str | None = None, pid: int | None = None) -> str:
    """`<prefix>-<host>-<pid>.jsonl` with anything but letters, digits, '.', '_' and '-' replaced by '_'."""
    host = host if host is not None else socket.gethostname()
    pid = pid if pid is not None else os.getpid()
    return f"{_UNSAFE_NAME.sub('_', prefix)}-{_UNSAFE_NAME.sub('_', host) or 'host'}-{pid}.jsonl"


class HourlyJsonlFiles:
    """The files one exporter appends OTLP/JSON lines to: `<root>/YYYY/MM/DD/HH/<prefix>-<host>-<pid>.jsonl`.

    Shared by the span and the log exporter (they differ only in what they encode and in the file prefix):
    O_APPEND descriptors for the last MAX_OPEN_FILES hours, one `write` of whole lines per hour under a lock,
    a torn last line ended before appending, a file of its own after a fork, optional fsync.
    """

    def __init__(self, landing_root: str | os.PathLike[str], file_prefix: str, fsync: bool = False) -> None:
        root = Path(landing_root)
        if root.exists() and not root.is_dir():
            raise ValueError(f"landing root {root} exists and is not a folder")
        if not file_prefix or _UNSAFE_NAME.fullmatch(file_prefix):
            raise ValueError(f"file_prefix {file_prefix!r} must contain a letter, digit, '.', '_' or '-'")
        self.landing_root = root
        self.file_prefix = file_prefix
        self.fsync = fsync
        self._lock = threading.Lock()
        self._files: OrderedDict[Path, int] = OrderedDict()  # path -> fd, least recently used first
        self._pid = os.getpid()
        self.shut_down = False
        # A fork while another thread holds the lock would leave the child's copy locked forever.
        reinit = weakref.WeakMethod(self._reset_lock)
        os.register_at_fork(after_in_child=lambda: (method := reinit()) is not None and method())

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    def path_for(self, hour: datetime) -> Path:
        """The file this process writes the lines of `hour` to."""
        return hour_folder(self.landing_root, hour) / process_file_name(self.file_prefix)

    def append(self, lines: dict[datetime, bytes]) -> Path | None:
        """Append each hour's lines to its file; the path that failed (error logged) or None when all were written."""
        with self._lock:
            self._after_fork()
            for hour, line in lines.items():
                path = self.path_for(hour)
                try:
                    self._write(path, line)
                except OSError as exc:
                    log.error("could not write OTLP/JSON lines to %s: %s", path, exc)
                    return path
        return None

    def _after_fork(self) -> None:
        # A forked child inherits the parent's descriptors; it must write a file of its own (its pid's).
        if os.getpid() != self._pid:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()
            self._pid = os.getpid()

    def _open(self, path: Path) -> int:
        fd = self._files.get(path)
        if fd is not None:
            self._files.move_to_end(path)
            return fd
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(fd, b"\n")  # end a line torn by a crash, so the next batch starts cleanly
        self._files[path] = fd
        while len(self._files) > MAX_OPEN_FILES:
            _, old = self._files.popitem(last=False)
            os.close(old)
        return fd

    def _write(self, path: Path, data: bytes) -> None:
        fd = self._open(path)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(fd)

    def flush(self) -> None:
        """Writes are unbuffered (one write per batch), so there is nothing to flush; fsync if configured."""
        with self._lock:
            if self.fsync:
                for fd in self._files.values():
                    os.fsync(fd)

    def close(self) -> None:
        """Close the open files; the owner refuses later exports."""
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()
            self.shut_down = True


class HourlyFileExporter:
    """What the span and log exporters share: the hourly files, and export's guard, encoding and error rules.

    A subclass also derives from the SDK's exporter interface and sets `_noun`, `_encode(batch)` (lines by
    hour) and the SDK's `_success` / `_failure` results; its `export` calls `_export`.
    """

    _noun = "items"

    def __init__(self, landing_root: str | os.PathLike[str], file_prefix: str = "otel", fsync: bool = False,
                 file_infix: str | None = None) -> None:
        self._out = HourlyJsonlFiles(landing_root, f"{file_prefix}-{file_infix}" if file_infix else file_prefix,
                                     fsync)
        self.landing_root = self._out.landing_root
        self.file_prefix = file_prefix
        self.fsync = fsync

    def path_for(self, hour: datetime) -> Path:
        """The file this process writes the batch items of `hour` to."""
        return self._out.path_for(hour)

    def _encode(self, batch: Sequence[Any]) -> dict[datetime, bytes]:
        raise NotImplementedError

    def _export(self, batch: Sequence[Any], success: Any, failure: Any) -> Any:
        """Append the batch to the files of its items' hours; `failure` (logged) on any error, never raise."""
        if self._out.shut_down:
            log.warning("%s.export called after shutdown; %d %s dropped", type(self).__name__, len(batch), self._noun)
            return failure
        if not batch:
            return success
        try:
            lines = self._encode(batch)
        except Exception:  # an exporter must not raise into its processor: report and drop the batch
            log.exception("could not encode %d %s as OTLP/JSON", len(batch), self._noun)
            return failure
        return failure if self._out.append(lines) else success

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Writes are unbuffered (one write per batch), so there is nothing to flush; fsync if configured."""
        self._out.flush()
        return True

    def shutdown(self) -> None:
        """Close the open files; later exports fail."""
        self._out.close()


class OtlpJsonFileSpanExporter(HourlyFileExporter, SpanExporter):
    """Writes span batches as OTLP/JSON lines into hourly folders of an aiobs landing root.

    Use it with a `BatchSpanProcessor` (or `SimpleSpanProcessor` in short scripts and tests):

        provider.add_span_processor(BatchSpanProcessor(OtlpJsonFileSpanExporter("/data/landing")))
    """

    _noun = "spans"

    def _encode(self, batch: Sequence[Any]) -> dict[datetime, bytes]:
        return {hour: encode_line(group) for hour, group in group_by_hour(batch).items()}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append the batch to the files of the hours its spans ended in; FAILURE (logged) on any error."""
        return self._export(spans, SpanExportResult.SUCCESS, SpanExportResult.FAILURE)
