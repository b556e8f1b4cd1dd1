"""The OTLP/JSON file span exporter: the encoding (hex ids, 64-bit integers as strings, enums as integers, as
the Collector's file exporter writes them), the hourly landing layout, concurrent writers, and reading the
files back through aiobs's own ingest."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from aiobs_pipeline.ingest.partition import ingest_partition, landing_folder
from aiobs_pipeline.otel import (
    OtlpJsonFileSpanExporter,
    encode_line,
    group_by_hour,
    hour_folder,
    process_file_name,
    span_hour,
)
from aiobs_pipeline.otel import file_exporter as fe

TRACE_ID = 0x00000000000000000000000000ABCDEF  # leading zero bytes must survive as zeros in hex
HOUR = datetime(2026, 10, 3, 5, tzinfo=UTC)
T0 = int(HOUR.timestamp()) * 10**9 + 12 * 60 * 10**9  # 05:12:00 in Unix nanoseconds
RESOURCE = Resource({"service.name": "helpdesk", "deployment.environment.name": "test"})
SCOPE = InstrumentationScope("tests.otel", "1.0")


def make_span(span_id: int, name: str = "work", *, parent_id: int | None = None, start: int | None = T0,
              end: int | None = T0 + 1_500_000_000, attributes: dict[str, Any] | None = None,
              kind: SpanKind = SpanKind.INTERNAL, status: Status | None = None, events: tuple[Event, ...] = (),
              links: tuple[Link, ...] = (), trace_id: int = TRACE_ID) -> ReadableSpan:
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent = SpanContext(trace_id, parent_id, is_remote=False) if parent_id is not None else None
    return ReadableSpan(name=name, context=context, parent=parent, resource=RESOURCE, attributes=attributes,
                        events=events, links=links, kind=kind, status=status or Status(StatusCode.UNSET),
                        start_time=start, end_time=end, instrumentation_scope=SCOPE)


def decode(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1, "one request per line"
    return json.loads(line)


def spans_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def attribute(span: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a["value"] for a in span["attributes"] if a["key"] == key)


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


# --- encoding (pure functions) -------------------------------------------------------------------------


def test_ids_are_lowercase_hex_while_bytes_values_stay_base64() -> None:
    link = Link(SpanContext(0xFEDCBA9876543210FEDCBA9876543210, 0x0A0B0C0D0E0F1011, is_remote=True))
    child = make_span(0x00000000000000AB, parent_id=0x1122334455667788, links=(link,),
                      attributes={"blob": b"\x00\xff\x10"})
    [span] = spans_of(decode(encode_line([child])))
    assert span["traceId"] == "00000000000000000000000000abcdef"
    assert span["spanId"] == "00000000000000ab"
    assert span["parentSpanId"] == "1122334455667788"
    assert span["links"][0]["traceId"] == "fedcba9876543210fedcba9876543210"
    assert span["links"][0]["spanId"] == "0a0b0c0d0e0f1011"
    # OTLP/JSON keeps bytes *values* in base64; only ids are hex.
    assert attribute(span, "blob") == {"bytesValue": "AP8Q"}


def test_root_span_has_no_parent_id() -> None:
    [span] = spans_of(decode(encode_line([make_span(1)])))
    assert "parentSpanId" not in span or span["parentSpanId"] == ""


def test_int64_as_strings_enums_as_integers_and_collector_field_names() -> None:
    error = make_span(2, "chat gpt-4o", kind=SpanKind.CLIENT, status=Status(StatusCode.ERROR, "rate limited"),
                      attributes={"big": 2**62, "neg": -7, "ratio": 0.25, "nan": math.nan, "flag": True,
                                  "tags": ["a", "b"], "nested": {"k": 1}},
                      events=(Event("exception", {"exception.type": "RateLimitError"}, timestamp=T0 + 5),))
    ok = make_span(3, "handler", kind=SpanKind.SERVER, status=Status(StatusCode.OK))
    request = decode(encode_line([error, ok]))
    first, second = spans_of(request)
    assert first["startTimeUnixNano"] == str(T0) and first["endTimeUnixNano"] == str(T0 + 1_500_000_000)
    assert first["events"][0]["timeUnixNano"] == str(T0 + 5)
    assert attribute(first, "big") == {"intValue": str(2**62)}
    assert attribute(first, "neg") == {"intValue": "-7"}
    assert attribute(first, "ratio") == {"doubleValue": 0.25}
    assert attribute(first, "nan") == {"doubleValue": "NaN"}
    assert attribute(first, "flag") == {"boolValue": True}
    assert attribute(first, "tags") == {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}
    assert attribute(first, "nested") == {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "1"}}]}}
    assert (first["kind"], first["status"]) == (3, {"code": 2, "message": "rate limited"})
    assert (second["kind"], second["status"]) == (2, {"code": 1})
    scope = request["resourceSpans"][0]["scopeSpans"][0]["scope"]
    assert scope == {"name": "tests.otel", "version": "1.0"}
    resource = {a["key"]: a["value"] for a in request["resourceSpans"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "helpdesk"}
    # camelCase protobuf JSON names throughout, as the Collector writes them (no snake_case field names).
    assert not {k for k in all_keys(request) if "_" in k}


def test_spans_are_grouped_by_the_utc_hour_they_ended_in() -> None:
    before = make_span(1, start=T0, end=int((HOUR + timedelta(minutes=59, seconds=59)).timestamp() * 1e9))
    straddling = make_span(2, start=T0, end=int((HOUR + timedelta(hours=1, seconds=1)).timestamp() * 1e9))
    unfinished = make_span(3, start=int((HOUR + timedelta(hours=2, minutes=3)).timestamp() * 1e9), end=None)
    groups = group_by_hour([straddling, unfinished, before])
    assert list(groups) == [HOUR, HOUR + timedelta(hours=1), HOUR + timedelta(hours=2)]
    assert [[s.name for s in g] for g in groups.values()] == [["work"]] * 3
    assert span_hour(before) == HOUR
    with pytest.raises(ValueError, match="'timeless' has neither an end nor a start time"):
        span_hour(make_span(4, "timeless", start=None, end=None))


def test_hour_folder_is_the_landing_layout_ingest_reads(tmp_path: Path) -> None:
    for hour in (HOUR, datetime(2027, 1, 1, 0, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC)):
        assert hour_folder(tmp_path, hour) == landing_folder(tmp_path, hour)


def test_process_file_name_is_safe_and_per_process() -> None:
    assert process_file_name("rag-helpdesk", host="web 1/a", pid=42) == "rag-helpdesk-web_1_a-42.jsonl"
    assert process_file_name("otel", host="", pid=1) == "otel-host-1.jsonl"
    assert process_file_name("otel").endswith(f"-{os.getpid()}.jsonl")


# --- the exporter ---------------------------------------------------------------------------------------


def landing_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_exporter_appends_one_line_per_batch_and_hour(tmp_path: Path) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path, file_prefix="app")
    next_hour = int((HOUR + timedelta(hours=1, minutes=1)).timestamp() * 1e9)
    assert exporter.export([make_span(1), make_span(2)]) is SpanExportResult.SUCCESS
    assert exporter.export([make_span(3), make_span(4, start=next_hour, end=next_hour + 10)]) is SpanExportResult.SUCCESS
    assert exporter.export([]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    name = process_file_name("app")
    assert landing_files(tmp_path) == [landing_folder(tmp_path, HOUR) / name,
                                       landing_folder(tmp_path, HOUR + timedelta(hours=1)) / name]
    first, second = (f.read_bytes().splitlines(keepends=True) for f in landing_files(tmp_path))
    assert [len(spans_of(decode(line))) for line in first] == [2, 1]
    assert [len(spans_of(decode(line))) for line in second] == [1]


def test_output_reads_back_through_ingest_as_genai_rows(tmp_path: Path) -> None:
    """Spans shaped as opentelemetry-instrumentation-openai-v2 (latest conventions, content on spans) and a
    GenAI retrieval span come back as canonical rows with tokens, messages, documents and the user."""
    common = {"user.id": "u-7", "session.id": "s-1", "aiobs.feature": "helpdesk-rag"}
    retrieval = make_span(0x10, "retrieval helpdesk-docs", parent_id=0x01, attributes={
        **common, "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "helpdesk-docs",
        "gen_ai.retrieval.documents": json.dumps([{"id": "refunds#1", "score": 1.5, "content": "30 days."}])})
    chat = make_span(0x11, "chat gpt-4o-mini", parent_id=0x01, kind=SpanKind.CLIENT, attributes={
        **common, "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.request.temperature": 0.2, "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 12,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Refunds?"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                               "parts": [{"type": "text", "content": "30 days [refunds#1]."}]}])})
    failed = make_span(0x12, "chat gpt-4o-mini", parent_id=0x01, kind=SpanKind.CLIENT,
                       status=Status(StatusCode.ERROR, "Error code: 500"),
                       attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                                   "error.type": "InternalServerError"})
    root = make_span(0x01, "helpdesk.answer", attributes=common)
    exporter = OtlpJsonFileSpanExporter(tmp_path)
    assert exporter.export([retrieval, chat, failed, root]) is SpanExportResult.SUCCESS
    exporter.shutdown()

    result = ingest_partition(tmp_path, HOUR)
    assert len(result.quarantined) == 0 and result.audit["spans_written"].tolist() == [4]
    rows = result.spans.set_index("span_id")
    assert set(rows["trace_id"]) == {"00000000000000000000000000abcdef"}
    llm = rows.loc["0000000000000011"]
    assert (llm["kind"], llm["provider"], llm["model"], llm["input_tokens"], llm["output_tokens"]) == (
        "llm", "openai", "gpt-4o-mini-2024-07-18", 120, 12)
    assert (llm["user_id"], llm["session_id"], llm["feature"], llm["app"], llm["environment"]) == (
        "u-7", "s-1", "helpdesk-rag", "helpdesk", "test")
    assert json.loads(llm["input_messages"]) == [{"role": "user", "content": "Refunds?"}]
    assert llm["output_text"] == "30 days [refunds#1]."
    assert llm["parent_span_id"] == "0000000000000001" and pd_isna(rows.loc["0000000000000001", "parent_span_id"])
    docs = json.loads(rows.loc["0000000000000010", "documents"])
    assert (rows.loc["0000000000000010", "kind"], docs) == (
        "retrieval", [{"id": "refunds#1", "score": 1.5, "text": "30 days.", "rank": 1}])
    assert (rows.loc["0000000000000012", "status"], rows.loc["0000000000000012", "error_message"]) == (
        "error", "Error code: 500")


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_threads_never_interleave_lines(tmp_path: Path) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path)
    big = {"payload": "x" * 20_000}  # large lines make torn or interleaved writes visible

    def work(worker: int) -> None:
        for i in range(25):
            spans = [make_span(worker * 1000 + i * 10 + j + 1, attributes=big) for j in range(3)]
            assert exporter.export(spans) is SpanExportResult.SUCCESS

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exporter.shutdown()
    [path] = landing_files(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 8 * 25
    span_ids = [s["spanId"] for line in lines for s in spans_of(decode(line))]
    assert len(span_ids) == len(set(span_ids)) == 8 * 25 * 3


WRITER = """
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from aiobs_pipeline.otel import OtlpJsonFileSpanExporter
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OtlpJsonFileSpanExporter(sys.argv[1])))
tracer = provider.get_tracer("writer")
for i in range(200):
    with tracer.start_as_current_span(f"span-{i}"):
        pass
provider.shutdown()
"""


def test_processes_write_their_own_files_and_ingest_reads_them_all(tmp_path: Path) -> None:
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    files = landing_files(tmp_path)
    pids = {f.name.rsplit("-", 1)[1] for f in files}
    assert pids == {f"{w.pid}.jsonl" for w in writers}
    hours = sorted({datetime.strptime("/".join(f.relative_to(tmp_path).parts[:4]), "%Y/%m/%d/%H")
                    .replace(tzinfo=UTC) for f in files})
    written = sum(len(ingest_partition(tmp_path, hour).spans) for hour in hours)
    assert written == 400


def test_a_torn_last_line_is_ended_before_new_lines(tmp_path: Path) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path)
    path = exporter.path_for(HOUR)
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_line([make_span(1)]) + b'{"resourceSpans": [{"scopeSp')  # a crash mid-write
    assert exporter.export([make_span(2)]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    result = ingest_partition(tmp_path, HOUR)
    assert sorted(result.spans["span_id"]) == ["0000000000000001", "0000000000000002"]
    assert result.quarantined[["source_line", "reason"]].values.tolist() == [[2, "invalid_json"]]


def test_a_forked_child_writes_a_file_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path)
    exporter.export([make_span(1)])
    parent_file = exporter.path_for(HOUR)
    monkeypatch.setattr(fe.os, "getpid", lambda: 4242)  # what the child sees after fork
    exporter.export([make_span(2)])
    exporter.shutdown()
    child_file = parent_file.with_name(process_file_name("otel", pid=4242))
    assert landing_files(tmp_path) == sorted([parent_file, child_file])
    assert [len(p.read_bytes().splitlines()) for p in (parent_file, child_file)] == [1, 1]


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_configuration_is_refused_with_the_path(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "landing"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match=f"landing root {not_a_folder} exists and is not a folder"):
        OtlpJsonFileSpanExporter(not_a_folder)
    with pytest.raises(ValueError, match="file_prefix '///'"):
        OtlpJsonFileSpanExporter(tmp_path, file_prefix="///")


def test_failures_are_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path)
    blocked = landing_folder(tmp_path, HOUR)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the hour folder should be")
    with caplog.at_level(logging.ERROR, logger=fe.__name__):
        assert exporter.export([make_span(1)]) is SpanExportResult.FAILURE
        assert exporter.export([make_span(2, "timeless", start=None, end=None)]) is SpanExportResult.FAILURE
    assert str(blocked) in caplog.text
    assert "could not encode 1 spans" in caplog.text and "'timeless' has neither" in caplog.text
    exporter.shutdown()
    assert exporter.export([make_span(3)]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
