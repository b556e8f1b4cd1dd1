"""OpenTelemetry helpers for applications that send their spans to aiobs (needs `opentelemetry-sdk` and
`opentelemetry-exporter-otlp-proto-common`, which the pipeline itself does not import)."""

from aiobs_pipeline.otel.file_exporter import (
    OtlpJsonFileSpanExporter,
    encode_line,
    group_by_hour,
    hour_folder,
    process_file_name,
    request_to_otlp_json,
    span_hour,
)

__all__ = [
    "OtlpJsonFileSpanExporter",
    "encode_line",
    "group_by_hour",
    "hour_folder",
    "process_file_name",
    "request_to_otlp_json",
    "span_hour",
]
