"""The OTLP/JSON file log exporter: the encoding (hex ids, 64-bit integers as strings, event names and
structured bodies as the Collector's file exporter writes them), hourly files beside the span files, and
failures reported, not raised."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aiobs_pipeline.ingest.partition import landing_folder
from aiobs_pipeline.otel import (
    OtlpJsonFileLogExporter,
    OtlpJsonFileSpanExporter,
    encode_logs_line,
    group_records_by_hour,
    process_file_name,
    record_hour,
)
from aiobs_pipeline.otel import log_exporter as le

HOUR = datetime(2026, 10, 3, 5, tzinfo=UTC)
T0 = int(HOUR.timestamp()) * 10**9 + 59 * 60 * 10**9  # 05:59:00 in Unix nanoseconds
RESOURCE = Resource({"service.name": "helpdesk"})


def readable(timestamp: int | None = T0, observed: int | None = T0, **fields: Any) -> ReadableLogRecord:
    record = LogRecord(timestamp=timestamp, observed_timestamp=observed, **fields)
    record.observed_timestamp = observed  # the API fills in "now" when None; a test needs None to stay None
    return ReadableLogRecord(log_record=record, resource=RESOURCE)


def records_of(line: bytes) -> list[dict[str, Any]]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1, "one request per line"
    request = json.loads(line)
    return [r for rl in request["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]


def test_events_emitted_in_a_span_carry_its_ids_in_hex(tmp_path: Path) -> None:
    spans = OtlpJsonFileSpanExporter(tmp_path)
    logs = OtlpJsonFileLogExporter(tmp_path)
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = logger_provider.get_logger("tests.otel.logs", "1.0")
    with tracer_provider.get_tracer("tests").start_as_current_span("chat gpt-4o-mini") as span:
        logger.emit(event_name="gen_ai.user.message", body={"content": "How tall is Everest?", "n": 2**40},
                    attributes={"gen_ai.system": "openai"}, severity_number=SeverityNumber.INFO)
        context = span.get_span_context()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    span_files = sorted(tmp_path.rglob("otel-*.jsonl"))
    log_files = [p for p in span_files if "-logs-" in p.name]
    assert len(span_files) == 2 and len(log_files) == 1, "a log file beside the span file, told apart by name"
    [record] = records_of(log_files[0].read_bytes())
    assert record["traceId"] == f"{context.trace_id:032x}" and record["spanId"] == f"{context.span_id:016x}"
    assert record["eventName"] == "gen_ai.user.message" and record["severityNumber"] == 9
    body = {kv["key"]: kv["value"] for kv in record["body"]["kvlistValue"]["values"]}
    assert body == {"content": {"stringValue": "How tall is Everest?"}, "n": {"intValue": str(2**40)}}
    assert record["attributes"] == [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}]
    # emit() without a timestamp leaves timeUnixNano unset (0): the file's hour is the observed timestamp's.
    assert "timeUnixNano" not in record and int(record["observedTimeUnixNano"]) > 0
    request = json.loads(log_files[0].read_bytes())
    assert request["resourceLogs"][0]["scopeLogs"][0]["scope"] == {"name": "tests.otel.logs", "version": "1.0"}


def test_a_record_outside_a_span_has_no_ids() -> None:
    [record] = records_of(encode_logs_line([readable(body="plain")]))
    assert "traceId" not in record and "spanId" not in record and record["body"] == {"stringValue": "plain"}


def test_records_are_filed_by_timestamp_else_observed_timestamp(tmp_path: Path) -> None:
    late = T0 + 2 * 60 * 10**9  # 06:01
    batch = [readable(body="a"), readable(timestamp=None, observed=late, body="b"), readable(timestamp=late, body="c")]
    assert [record_hour(r) for r in batch] == [HOUR, HOUR + timedelta(hours=1), HOUR + timedelta(hours=1)]
    assert {h: [r.log_record.body for r in g] for h, g in group_records_by_hour(batch).items()} == {
        HOUR: ["a"], HOUR + timedelta(hours=1): ["b", "c"]}
    exporter = OtlpJsonFileLogExporter(tmp_path, file_prefix="app")
    assert exporter.export(batch) is LogRecordExportResult.SUCCESS
    assert exporter.export(batch[:1]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    name = process_file_name("app-logs")
    first = landing_folder(tmp_path, HOUR) / name
    second = landing_folder(tmp_path, HOUR + timedelta(hours=1)) / name
    assert sorted(tmp_path.rglob("*.jsonl")) == [first, second]
    assert [len(records_of(line)) for line in first.read_bytes().splitlines(keepends=True)] == [1, 1]
    assert [r["body"]["stringValue"] for r in records_of(second.read_bytes())] == ["b", "c"]


def test_a_torn_last_line_is_ended_before_new_lines(tmp_path: Path) -> None:
    exporter = OtlpJsonFileLogExporter(tmp_path)
    path = exporter.path_for(HOUR)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"resourceLogs": [')
    exporter.export([readable(body="after the crash")])
    exporter.shutdown()
    torn, line = path.read_bytes().splitlines(keepends=True)
    assert torn == b'{"resourceLogs": [\n' and records_of(line)[0]["body"] == {"stringValue": "after the crash"}


def test_failures_are_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exporter = OtlpJsonFileLogExporter(tmp_path)
    blocked = landing_folder(tmp_path, HOUR)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the hour folder should be")
    with caplog.at_level(logging.ERROR):
        assert exporter.export([readable(body="x")]) is LogRecordExportResult.FAILURE
        timeless = readable(timestamp=None, observed=None, event_name="gen_ai.choice")
        assert exporter.export([timeless]) is LogRecordExportResult.FAILURE
    assert str(blocked) in caplog.text
    assert "could not encode 1 log records" in caplog.text and "'gen_ai.choice' has neither" in caplog.text
    assert exporter.export([]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    assert exporter.export([readable()]) is LogRecordExportResult.FAILURE
    assert exporter.force_flush() is True


def test_bad_configuration_is_refused_with_the_path(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "landing"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match=f"landing root {not_a_folder} exists and is not a folder"):
        OtlpJsonFileLogExporter(not_a_folder)
    assert le.LOG_FILE_INFIX in OtlpJsonFileLogExporter(tmp_path).path_for(HOUR).name
