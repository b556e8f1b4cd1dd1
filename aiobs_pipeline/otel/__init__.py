"""OpenTelemetry helpers for applications that send their spans and log records to aiobs (needs
`opentelemetry-sdk` and `opentelemetry-exporter-otlp-proto-common`, which the pipeline itself does not import)."""

from aiobs_pipeline.otel.file_exporter import (
    HourlyJsonlFiles,
    OtlpJsonFileSpanExporter,
    encode_line,
    group_by_hour,
    hour_folder,
    process_file_name,
    request_to_otlp_json,
    span_hour,
)
from aiobs_pipeline.otel.log_exporter import (
    OtlpJsonFileLogExporter,
    encode_logs_line,
    group_records_by_hour,
    logs_request_to_otlp_json,
    record_hour,
)

__all__ = [
    "HourlyJsonlFiles",
    "OtlpJsonFileLogExporter",
    "encode_logs_line",
    "group_records_by_hour",
    "logs_request_to_otlp_json",
    "record_hour",
    "OtlpJsonFileSpanExporter",
    "encode_line",
    "group_by_hour",
    "hour_folder",
    "process_file_name",
    "request_to_otlp_json",
    "span_hour",
]
