"""An OpenTelemetry SDK log record exporter that writes OTLP/JSON lines into the aiobs landing layout.

The log-side twin of `OtlpJsonFileSpanExporter`, for applications whose instrumentation sends prompt and
completion content as log records / events (the official OpenAI instrumentation's event modes, OpenLLMetry
with legacy attributes off): each batch is encoded with the SDK's own OTLP encoder
(`opentelemetry.exporter.otlp.proto.common._log_encoder.encode_logs`) into an `ExportLogsServiceRequest`
and written as one JSON object per line, as the Collector's `file` exporter writes OTLP/JSON: camelCase
names, 64-bit integers as strings, enums as integers, trace and span ids as lowercase hex.

Where lines go: `<landing_root>/YYYY/MM/DD/HH/<prefix>-logs-<host>-<pid>.jsonl`, the hour being the UTC
hour of the record's timestamp (its observed timestamp when it has none); the same folders, rotation,
concurrency and crash handling as the span exporter (both use `HourlyJsonlFiles`), and names that tell
log files from span files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

from aiobs_pipeline.otel.file_exporter import HourlyFileExporter, hex_id

try:  # opentelemetry-sdk >= 1.39 renamed the interface (the old names remain, deprecated)
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult as LogResult
except ImportError:  # older SDKs, as some instrumentation libraries pin them
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporter  # type: ignore[no-redef]
    from opentelemetry.sdk._logs.export import LogExportResult as LogResult  # type: ignore[no-redef]

log = logging.getLogger(__name__)
LOG_FILE_INFIX = "logs"
_ID_FIELDS = ("traceId", "spanId")


def logs_request_to_otlp_json(request: Any) -> dict[str, Any]:
    """An ExportLogsServiceRequest as the Collector's file exporter writes it (OTLP/JSON, hex ids)."""
    body = MessageToDict(request, preserving_proto_field_name=False, use_integers_for_enums=True)
    for i, resource_logs in enumerate(body.get("resourceLogs", [])):
        for j, scope_logs in enumerate(resource_logs.get("scopeLogs", [])):
            for k, record in enumerate(scope_logs.get("logRecords", [])):
                for name in _ID_FIELDS:
                    if name in record:
                        record[name] = hex_id(record[name], f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}].{name}")
    return body


def encode_logs_line(records: Sequence[Any]) -> bytes:
    """One JSON line (newline included) holding the OTLP logs request for these SDK log records."""
    return orjson.dumps(logs_request_to_otlp_json(encode_logs(records))) + b"\n"


def record_hour(record: Any) -> datetime:
    """The UTC hour a log record is filed under: its timestamp's, else its observed timestamp's."""
    inner = record.log_record
    nanos = inner.timestamp if inner.timestamp is not None else inner.observed_timestamp
    if nanos is None:
        name = getattr(inner, "event_name", None) or getattr(inner, "body", None)
        raise ValueError(f"log record {name!r} has neither a timestamp nor an observed timestamp")
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC).replace(minute=0, second=0, microsecond=0)


def group_records_by_hour(records: Iterable[Any]) -> dict[datetime, list[Any]]:
    """Log records grouped by `record_hour`, hours ascending, records in their original order."""
    groups: dict[datetime, list[Any]] = {}
    for record in records:
        groups.setdefault(record_hour(record), []).append(record)
    return dict(sorted(groups.items()))


class OtlpJsonFileLogExporter(HourlyFileExporter, _LogExporter):
    """Writes log record batches as OTLP/JSON lines into hourly folders of an aiobs landing root.

    Use it with a `BatchLogRecordProcessor` (or `SimpleLogRecordProcessor` in short scripts and tests):

        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(OtlpJsonFileLogExporter("/data/landing")))
    """

    _noun = "log records"

    def __init__(self, landing_root: str | os.PathLike[str], file_prefix: str = "otel", fsync: bool = False) -> None:
        super().__init__(landing_root, file_prefix, fsync, file_infix=LOG_FILE_INFIX)

    def _encode(self, batch: Sequence[Any]) -> dict[datetime, bytes]:
        return {hour: encode_logs_line(group) for hour, group in group_records_by_hour(batch).items()}

    def export(self, batch: Sequence[Any]) -> Any:
        """Append the batch to the files of the records' hours; FAILURE (logged) on any error."""
        return self._export(batch, LogResult.SUCCESS, LogResult.FAILURE)
