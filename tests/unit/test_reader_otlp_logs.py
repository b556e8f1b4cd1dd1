"""OTLP/JSON log files (aiobs_pipeline/ingest/otlp_logs.py): the reader, and the join of GenAI content events
into the spans of their export hour (partition ingest)."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import detect, otlp_logs
from aiobs_pipeline.ingest.base import RawRecord, Reject, SkippedRecord, SpanEvent
from aiobs_pipeline.ingest.masking import build_masker
from aiobs_pipeline.ingest.partition import ingest_files, ingest_partition, landing_folder
from aiobs_pipeline.schema import QUARANTINE_REASONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp_logs"
HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
T0 = int(HOUR.timestamp()) * 1_000_000_000
TRACE = "5b8efff798038103d269b633813fc60c"


def s(value: str) -> dict:
    return {"stringValue": value}


def value(v: object) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": value(x)} for k, x in v.items()]}}
    return s(str(v))


def attrs(**items: object) -> list[dict]:
    return [{"key": k.replace("__", "."), "value": value(v)} for k, v in items.items()]


def log_record(span_id: str | None, name: str | None, body: object = None, at_ms: int = 0,
               trace_id: str | None = TRACE, **attributes: object) -> dict:
    record: dict = {"timeUnixNano": str(T0 + at_ms * 1_000_000), "severityNumber": 9,
                    "attributes": attrs(gen_ai__system="openai", **attributes)}
    if body is not None:
        record["body"] = value(body)
    if trace_id is not None:
        record["traceId"] = trace_id
    if span_id is not None:
        record["spanId"] = span_id
    if name is not None:
        record["eventName"] = name
    return record


def logs_request(*records: dict) -> str:
    return json.dumps({"resourceLogs": [{"resource": {"attributes": attrs(service__name="bot")},
                                         "scopeLogs": [{"scope": {"name": "test"}, "logRecords": list(records)}]}]})


def span(span_id: str, start_ms: int = 100, trace_id: str = TRACE, **attributes: object) -> dict:
    return {"traceId": trace_id, "spanId": span_id, "name": "chat gpt-4o-mini", "kind": 3,
            "startTimeUnixNano": str(T0 + start_ms * 1_000_000),
            "endTimeUnixNano": str(T0 + (start_ms + 500) * 1_000_000),
            "attributes": attrs(**{"gen_ai__operation__name": "chat", "gen_ai__request__model": "gpt-4o-mini",
                                   "gen_ai__usage__input_tokens": 12, "gen_ai__usage__output_tokens": 4, **attributes}),
            "status": {}}


def spans_request(*spans: dict) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": attrs(service__name="bot")},
                                          "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}]}]})


def land(root: Path, name: str, lines: list[str], gz: bool = False) -> Path:
    folder = landing_folder(root, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def read_one(line: str) -> list:
    return list(otlp_logs.read([RawRecord(1, line, orjson.loads(line))]))


def identity_holds(audit: pd.DataFrame) -> bool:
    return bool((audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]
                 + audit["events_joined"] + audit["records_ignored"]).all())


def messages(cell: str | None) -> list[dict] | None:
    return None if cell is None else json.loads(cell)


def audit_of(result, name: str) -> pd.Series:
    return result.audit.set_index("source_file").loc[f"{HOUR:%Y/%m/%d/%H}/{name}"]


# ---------------------------------------------------------------------------------------------------------
# The reader.


def test_logs_requests_are_detected_as_otlp_logs_and_traces_stay_otlp() -> None:
    assert detect.detect_reader(orjson.loads(logs_request())) is otlp_logs
    assert detect.detect_reader({"resource_logs": []}) is otlp_logs
    assert detect.detect_reader(orjson.loads(spans_request())).FORMAT == "otlp"


def test_a_camel_case_event_with_event_name_field_and_kvlist_body() -> None:
    body = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi there",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}
    [event] = read_one(logs_request(log_record("eee19b7ec3c1b174", "gen_ai.choice", body, at_ms=5)))
    assert isinstance(event, SpanEvent)
    assert (event.trace_id, event.span_id, event.name) == (TRACE, "eee19b7ec3c1b174", "gen_ai.choice")
    assert event.time == datetime(2026, 12, 7, 13, 0, 0, 5000, tzinfo=UTC)
    assert event.attributes["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert event.attributes["gen_ai.system"] == "openai" and event.where.endswith("logRecords[0]")
    assert json.loads(event.raw)["eventName"] == "gen_ai.choice"


def test_snake_case_base64_ids_and_the_event_name_attribute() -> None:
    record = {"time_unix_nano": str(T0), "trace_id": base64.b64encode(bytes.fromhex(TRACE)).decode(),
              "span_id": base64.b64encode(bytes.fromhex("a1b2c3d4e5f60718")).decode(),
              "attributes": attrs(event__name="gen_ai.user.message", n=3, ok=True, ratio=0.5),
              "body": {"kvlist_value": {"values": [{"key": "content", "value": {"string_value": "Hello"}}]}}}
    line = json.dumps({"resource_logs": [{"scope_logs": [{"log_records": [record]}]}]})
    [event] = read_one(line)
    assert (event.trace_id, event.span_id, event.name) == (TRACE, "a1b2c3d4e5f60718", "gen_ai.user.message")
    assert event.attributes == {"n": 3, "ok": True, "ratio": 0.5, "content": "Hello"}


def test_the_event_name_field_wins_over_the_attribute() -> None:
    [event] = read_one(logs_request(log_record("eee19b7ec3c1b174", "gen_ai.user.message", {"content": "x"},
                                               event__name="something.else")))
    assert event.name == "gen_ai.user.message" and "event.name" not in event.attributes


def test_an_event_without_any_id_is_kept_for_the_time_match() -> None:
    line = json.dumps({"resourceLogs": [{
        "resource": {"attributes": attrs(service__name="bot", service__instance__id="i-1", host__name="h")},
        "scopeLogs": [{"logRecords": [
            log_record("0000000000000000", "gen_ai.choice", {"index": 0, "message": {"content": "x"}},
                       trace_id="0" * 32),
            log_record(None, "gen_ai.choice", {"index": 0, "message": {"content": "y"}}, trace_id=None)]}]}]})
    out = read_one(line)
    assert [(e.trace_id, e.span_id) for e in out] == [(None, None), (None, None)]
    assert out[0].resource == {"service.name": "bot", "service.instance.id": "i-1"}


def test_plain_log_records_are_skipped_not_stored() -> None:
    out = read_one(logs_request(log_record("eee19b7ec3c1b174", None, "user logged in"),
                                log_record("eee19b7ec3c1b174", "app.checkout", {"cart": 3}),
                                log_record(None, None, "no span at all", trace_id=None)))
    assert all(isinstance(o, SkippedRecord) for o in out) and len(out) == 3


@pytest.mark.parametrize(("record", "reason", "needle"), [
    (log_record("eee19b7ec3c1b174", "gen_ai.evaluation.result", {"score": 1}), "unsupported_record",
     "'gen_ai.evaluation.result' is not one aiobs joins"),
    (log_record(None, "gen_ai.user.message", {"content": "x"}), "missing_required_field", "has no spanId"),
    (log_record("eee19b7ec3c1b174", "gen_ai.user.message", {"content": "x"}, trace_id=None),
     "missing_required_field", "has no traceId"),
    (log_record("not-hex!", "gen_ai.user.message", {"content": "x"}), "invalid_type",
     "field 'spanId' is not a hex id"),
    ({**log_record("eee19b7ec3c1b174", "gen_ai.user.message"), "body": {"weirdValue": 1}}, "invalid_type",
     "field 'body': unknown AnyValue field(s): weirdValue"),
    ({**log_record("eee19b7ec3c1b174", "gen_ai.user.message"), "attributes": {"a": 1}}, "invalid_type",
     "field 'attributes' must be a list"),
    ({**log_record("eee19b7ec3c1b174", None), "attributes": [{"key": "event.name", "value": {"intValue": "7"}}]},
     "invalid_type", "the event name must be a string"),
    ({**log_record("eee19b7ec3c1b174", "gen_ai.choice"), "attributes": [{"key": 5, "value": s("x")}]},
     "invalid_type", "unreadable attributes"),
    ("just text", "invalid_type", "expected a log record object, got str"),
])
def test_bad_log_records_are_rejected_naming_the_problem(record: object, reason: str, needle: str) -> None:
    [out] = read_one(logs_request(record))  # type: ignore[arg-type]
    assert isinstance(out, Reject) and out.reason == reason and needle in out.detail, out
    assert out.reason in QUARANTINE_REASONS and "record 1: resourceLogs[0].scopeLogs[0].logRecords[0]" in out.detail


@pytest.mark.parametrize(("line", "needle"), [
    ("[1, 2]", "expected an ExportLogsServiceRequest object, got list"),
    ('{"resourceLogs": {"a": 1}}', "resourceLogs: must be a list"),
    ('{"resourceLogs": [7]}', "resourceLogs[0]: expected an object"),
    ('{"resourceLogs": [{"scopeLogs": "x"}]}', "resourceLogs[0].scopeLogs: must be a list"),
    ('{"resourceLogs": [{"scopeLogs": [{"logRecords": {"x": 1}}]}]}', "scopeLogs[0].logRecords: must be a list"),
])
def test_bad_envelopes_are_invalid_type(line: str, needle: str) -> None:
    [out] = read_one(line)
    assert isinstance(out, Reject) and out.reason == "invalid_type" and needle in out.detail


def test_a_traces_line_in_a_logs_file_is_unsupported() -> None:
    [out] = read_one(spans_request(span("eee19b7ec3c1b174")))
    assert out.reason == "unsupported_record" and "separate files" in out.detail


# ---------------------------------------------------------------------------------------------------------
# The join, through the hour's ingest.


def test_the_fixture_hour_joins_events_from_both_encodings(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, folder / path.name)
    result = ingest_partition(tmp_path, HOUR)
    spans = result.spans.set_index("span_id")
    assert messages(spans.loc["eee19b7ec3c1b174", "input_messages"]) == [
        {"role": "system", "content": "You are a support assistant."},
        {"role": "user", "content": "How do I reset my password?"}]
    assert spans.loc["eee19b7ec3c1b174", "output_text"] == "Open Settings, then Security, then Reset password."
    # The details event (snake_case, base64 ids, event.name attribute) with structured message attributes.
    assert messages(spans.loc["a1b2c3d4e5f60718", "input_messages"]) == [
        {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What are your opening hours?"}]
    assert spans.loc["a1b2c3d4e5f60718", "output_text"] == "We are open 9:00 to 17:00, Monday to Friday."
    assert list(result.quarantined["reason"]) == ["orphan_event"]
    logs = audit_of(result, "2026-12-07T13.logs.jsonl")
    assert (logs["records_read"], logs["spans_found"], logs["spans_written"], logs["spans_quarantined"],
            logs["events_joined"], logs["records_ignored"]) == (2, 8, 0, 1, 6, 1)
    assert logs["source_format"] == "otlp_logs" and identity_holds(result.audit)


def test_events_in_another_file_of_the_hour_join_in_emission_order(tmp_path: Path) -> None:
    land(tmp_path, "a-spans.jsonl", [spans_request(span("1111111111111111"))])
    # The choice lands in an earlier file than the prompt: time, not file order, decides.
    land(tmp_path, "b-logs.jsonl", [logs_request(log_record("1111111111111111", "gen_ai.choice", {
        "index": 0, "finish_reason": "stop", "message": {"content": "Paris."}}, at_ms=600))])
    land(tmp_path, "c-logs.jsonl.gz", [logs_request(
        log_record("1111111111111111", "gen_ai.system.message", {"content": "Be brief."}, at_ms=101),
        log_record("1111111111111111", "gen_ai.user.message", {"content": "Capital of France?"}, at_ms=101))],
        gz=True)
    result = ingest_partition(tmp_path, HOUR)
    [row] = result.spans.to_dict("records")
    assert messages(row["input_messages"]) == [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Capital of France?"}]
    assert messages(row["output_messages"]) == [{"role": "assistant", "content": "Paris.", "finish_reason": "stop"}]
    assert row["output_text"] == "Paris."
    assert json.loads(row["metadata"])["aiobs.joined_events"] == {
        "gen_ai.choice": 1, "gen_ai.system.message": 1, "gen_ai.user.message": 1}
    assert (audit_of(result, "b-logs.jsonl")["events_joined"], audit_of(result, "c-logs.jsonl.gz")["events_joined"]) \
        == (1, 2)
    assert result.quarantined.empty and identity_holds(result.audit)


def test_older_prompt_and_completion_events(tmp_path: Path) -> None:
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("1111111111111111", "gen_ai.content.prompt", None, at_ms=1,
                   gen_ai__prompt=json.dumps([{"role": "user", "content": "Hi"}])),
        log_record("1111111111111111", "gen_ai.content.completion", None, at_ms=2,
                   gen_ai__completion=json.dumps([{"role": "assistant", "content": "Hello"}])))])
    [row] = ingest_partition(tmp_path, HOUR).spans.to_dict("records")
    assert messages(row["input_messages"]) == [{"role": "user", "content": "Hi"}] and row["output_text"] == "Hello"


def test_a_span_absent_from_the_hour_quarantines_its_events_as_orphans(tmp_path: Path) -> None:
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("2222222222222222", "gen_ai.user.message", {"content": "lost?"}),
        log_record("2222222222222222", "gen_ai.choice", {"index": 0, "message": {"content": "no"}}),
        log_record("1111111111111111", "gen_ai.user.message", {"content": "Hi"}, trace_id="f" * 32))])
    result = ingest_partition(tmp_path, HOUR)
    q = result.quarantined
    assert list(q["reason"]) == ["orphan_event"] * 3
    assert list(q["span_id"]) == ["2222222222222222", "2222222222222222", "1111111111111111"]
    assert list(q["trace_id"]) == [TRACE, TRACE, "f" * 32]  # same span id, other trace: not its span
    detail = q["detail"].iloc[0]
    assert detail.startswith("2026/12/07/13/logs.jsonl: record 1: resourceLogs[0].scopeLogs[0].logRecords[0]: ")
    assert f"trace {TRACE} span 2222222222222222" in detail and "export hour 2026-12-07T13:00Z" in detail
    assert "same export hour" in detail and "not joined across hours" in detail
    assert json.loads(q["raw"].iloc[0])["spanId"] == "2222222222222222"  # the log record itself
    assert result.spans["input_messages"].isna().all()
    assert identity_holds(result.audit)


def test_an_event_of_a_quarantined_span_says_where_the_span_went(tmp_path: Path) -> None:
    bad = {**span("1111111111111111"), "attributes": {"not": "a list"}}
    land(tmp_path, "spans.jsonl", [spans_request(bad)])
    land(tmp_path, "logs.jsonl", [logs_request(log_record("1111111111111111", "gen_ai.user.message", {"content": "x"}))])
    result = ingest_partition(tmp_path, HOUR)
    orphan = result.quarantined[result.quarantined["reason"] == "orphan_event"]["detail"].iloc[0]
    assert "its span is in this export hour but was quarantined (invalid_type, 2026/12/07/13/spans.jsonl:1)" in orphan
    assert identity_holds(result.audit)


def test_content_from_attributes_is_kept_and_not_repeated(tmp_path: Path) -> None:
    own = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "From the span"}]}])
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111", gen_ai__input__messages=own))])
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("1111111111111111", "gen_ai.user.message", {"content": "From the span"}, at_ms=1),
        log_record("1111111111111111", "gen_ai.choice", {"index": 0, "message": {"content": "Answer"}}, at_ms=2))])
    result = ingest_partition(tmp_path, HOUR)
    [row] = result.spans.to_dict("records")
    assert messages(row["input_messages"]) == [{"role": "user", "content": "From the span"}]  # once
    assert row["output_text"] == "Answer"  # the span had no output: the choice event fills it
    meta = json.loads(row["metadata"])
    assert meta["aiobs.event_content_not_used"] == ["input_messages"]
    assert audit_of(result, "logs.jsonl")["events_joined"] == 2 and identity_holds(result.audit)


def test_a_duplicated_span_gets_its_events_on_the_copy_that_is_kept(tmp_path: Path) -> None:
    land(tmp_path, "a.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "b.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "logs.jsonl", [logs_request(log_record("1111111111111111", "gen_ai.user.message", {"content": "x"}))])
    result = ingest_partition(tmp_path, HOUR)
    [row] = result.spans.to_dict("records")
    assert row["source_file"].endswith("a.jsonl") and messages(row["input_messages"]) == [{"role": "user", "content": "x"}]
    assert list(result.quarantined["reason"]) == ["duplicate_span_id"] and identity_holds(result.audit)


def test_reingesting_the_hour_gives_the_same_rows(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, folder / path.name)
    first, second = ingest_partition(tmp_path, HOUR), ingest_partition(tmp_path, HOUR)
    pd.testing.assert_frame_equal(first.spans, second.spans)
    pd.testing.assert_frame_equal(first.quarantined, second.quarantined)
    pd.testing.assert_frame_equal(first.audit, second.audit)


def test_unreadable_lines_and_a_damaged_gzip_tail_in_a_log_file(tmp_path: Path) -> None:
    land(tmp_path, "spans.jsonl", [spans_request(*[span(f"{i:016x}", start_ms=i) for i in range(1, 301)])])
    lines = [logs_request(log_record(f"{i:016x}", "gen_ai.user.message", {"content": f"q{i}"})) for i in range(1, 301)]
    lines[1:1] = ["{not json", "[]"]
    payload = gzip.compress(("\n".join(lines) + "\n").encode())
    folder = landing_folder(tmp_path, HOUR)
    (folder / "logs.jsonl.gz").write_bytes(payload[: len(payload) * 2 // 3])
    result = ingest_partition(tmp_path, HOUR)
    logs = audit_of(result, "logs.jsonl.gz")
    reasons = json.loads(logs["quarantined_by_reason"])
    assert reasons == {"corrupt_gzip": 1, "invalid_json": 1, "invalid_type": 1}
    assert "damaged" in logs["file_error"] and 0 < logs["events_joined"] < 300
    assert result.spans["input_messages"].notna().sum() == logs["events_joined"]
    assert identity_holds(result.audit)


def test_a_file_of_only_plain_logs_is_counted_not_quarantined(tmp_path: Path) -> None:
    land(tmp_path, "app.jsonl", [logs_request(log_record("1111111111111111", None, "hello"),
                                              log_record(None, None, "bye", trace_id=None))])
    result = ingest_partition(tmp_path, HOUR)
    app = audit_of(result, "app.jsonl")
    assert (app["spans_found"], app["records_ignored"], app["spans_quarantined"]) == (2, 2, 0)
    assert result.spans.empty and result.quarantined.empty and identity_holds(result.audit)


def test_joined_content_is_masked_like_any_span_content(tmp_path: Path) -> None:
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("1111111111111111", "gen_ai.user.message", {"content": "mail me at ann@example.com"}))])
    result = ingest_partition(tmp_path, HOUR, masker=build_masker())
    [row] = result.spans.to_dict("records")
    assert "ann@example.com" not in row["input_messages"] and row["pii_masked"] == 1


def stream_events(at_ms: int, **resource: object) -> str:
    """A stream's prompt events (with ids) and its last event emitted outside the span's context (no ids)."""
    return json.dumps({"resourceLogs": [{"resource": {"attributes": attrs(**resource)}, "scopeLogs": [{"logRecords": [
        log_record(None, "gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": {"content": "Streamed."}},
                   at_ms=at_ms, trace_id=None)]}]}]})


def test_an_event_without_ids_joins_the_one_span_running_at_its_time(tmp_path: Path) -> None:
    resource = {"service__name": "bot", "service__instance__id": "i-1"}
    spans = json.loads(spans_request(span("1111111111111111", start_ms=100), span("2222222222222222", start_ms=700)))
    spans["resourceSpans"][0]["resource"]["attributes"] = attrs(**resource)
    land(tmp_path, "spans.jsonl", [json.dumps(spans)])
    land(tmp_path, "logs.jsonl", [logs_request(log_record("2222222222222222", "gen_ai.user.message", {"content": "Go"},
                                                          at_ms=701)),
                                  stream_events(1150, service__name="unknown_service:python", service__instance__id="i-1")])
    result = ingest_partition(tmp_path, HOUR)
    rows = result.spans.set_index("span_id")
    assert rows.loc["2222222222222222", "output_text"] == "Streamed."  # 700..1200 ms holds 1150, 100..600 does not
    assert messages(rows.loc["2222222222222222", "input_messages"]) == [{"role": "user", "content": "Go"}]
    assert json.loads(rows.loc["2222222222222222", "metadata"])["aiobs.events_matched_by_time"] == 1
    assert rows.loc["1111111111111111", "output_text"] is None
    assert result.quarantined.empty and audit_of(result, "logs.jsonl")["events_joined"] == 2
    assert identity_holds(result.audit)


@pytest.mark.parametrize(("at_ms", "instance", "found"), [
    (300, "i-1", 2),   # two spans running: ambiguous
    (5000, "i-1", 0),  # none running
    (150, "i-2", 0),   # running, but in another process
])
def test_an_event_without_ids_is_quarantined_unless_exactly_one_span_ran(tmp_path: Path, at_ms: int, instance: str,
                                                                          found: int) -> None:
    spans = json.loads(spans_request(span("1111111111111111", start_ms=100), span("2222222222222222", start_ms=250)))
    spans["resourceSpans"][0]["resource"]["attributes"] = attrs(service__instance__id="i-1")
    land(tmp_path, "spans.jsonl", [json.dumps(spans)])
    land(tmp_path, "logs.jsonl", [stream_events(at_ms, service__instance__id=instance)])
    result = ingest_partition(tmp_path, HOUR)
    [q] = result.quarantined.to_dict("records")
    assert q["reason"] == "missing_required_field"
    assert "has no traceId or spanId (emitted outside the span's context)" in q["detail"]
    assert f"and {found} LLM or embedding spans of the same service" in q["detail"]
    assert result.spans["output_text"].isna().all() and identity_holds(result.audit)


def test_an_embedding_keeps_its_input_and_drops_the_vector_of_its_choice_event(tmp_path: Path) -> None:
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111", gen_ai__operation__name="embeddings"))])
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("1111111111111111", "gen_ai.user.message", {"content": "refund policy"}, at_ms=101),
        log_record("1111111111111111", "gen_ai.choice", {"index": 0, "message": {"content": [0.1, -0.2, 0.3]}},
                   at_ms=102))])
    [row] = ingest_partition(tmp_path, HOUR).spans.to_dict("records")
    assert row["kind"] == "embedding" and messages(row["input_messages"]) == [{"role": "user", "content": "refund policy"}]
    assert row["output_messages"] is None and row["output_text"] is None
    assert json.loads(row["metadata"])["aiobs.event_vectors_dropped"] == 1


# ---------------------------------------------------------------------------------------------------------
# Recorded with the real libraries (tests/fixtures/conformance, see SOURCES.md): every folder with a log file.

CONFORMANCE = Path(__file__).resolve().parents[1] / "fixtures" / "conformance"
LOG_FOLDERS = sorted(p.parent for p in CONFORMANCE.glob("*/logs.otlp.jsonl"))


def test_the_recorded_fixtures_with_log_files_are_here() -> None:
    assert {p.name for p in LOG_FOLDERS} >= {"openlit", "openllmetry-events", "otel-official-events"}


@pytest.mark.parametrize("folder", LOG_FOLDERS, ids=[p.name for p in LOG_FOLDERS])
def test_recorded_log_events_are_all_joined_into_their_calls(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    result = ingest_files([folder / "spans.otlp.jsonl", folder / "logs.otlp.jsonl"], HOUR, folder)
    logs = result.audit.set_index("source_file").loc["logs.otlp.jsonl"]
    assert logs["spans_quarantined"] == 0 and logs["events_joined"] > 0, result.quarantined["detail"].tolist()
    assert logs["events_joined"] + logs["records_ignored"] == logs["spans_found"] and identity_holds(result.audit)
    calls = result.spans[result.spans["kind"].isin(["llm", "embedding"])].sort_values("start_time")
    assert len(calls) == len(manifest["calls"])
    for call, (_, row) in zip(manifest["calls"], calls.iterrows(), strict=True):
        meta = json.loads(row["metadata"])
        kept_own = meta.get("aiobs.event_content_not_used", [])
        if call["kind"] == "embeddings":
            assert row["kind"] == "embedding" and row["output_text"] is None
            if "gen_ai.user.message" in meta.get("aiobs.joined_events", {}):
                assert messages(row["input_messages"]) == [{"role": "user", "content": call["request"]["input"]}]
            continue
        assert row["output_text"] == call["response"]["output_text"], (call["kind"], meta)
        if "input_messages" not in kept_own:  # from the events, not the span's own attributes
            assert [{"role": m["role"], "content": m["content"]} for m in messages(row["input_messages"])] == \
                call["request"]["messages"]


def test_forgetting_a_user_removes_their_events_from_the_log_files(tmp_path: Path) -> None:
    from aiobs_pipeline.governance.forget import UserKeys, collect_landing_keys, forget_in_landing

    other = "c" * 32
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111", user__id="alice"),
                                                 span("2222222222222222", trace_id=other, user__id="bob"))])
    # One logs request holds both users' events: alice's go, bob's stay.
    land(tmp_path, "logs.jsonl", [logs_request(
        log_record("1111111111111111", "gen_ai.user.message", {"content": "alice's secret question"}),
        log_record("2222222222222222", "gen_ai.user.message", {"content": "bob's question"}, trace_id=other))])
    keys = UserKeys("alice")
    collect_landing_keys([tmp_path], keys)
    items = forget_in_landing(tmp_path, keys, dry_run=False)
    assert {i.action for i in items} == {"rewrote_file"}, items
    text = (landing_folder(tmp_path, HOUR) / "logs.jsonl").read_text()
    assert "alice's secret question" not in text and "bob's question" in text
    result = ingest_partition(tmp_path, HOUR)
    assert list(result.spans["user_id"]) == ["bob"] and result.quarantined.empty
    assert messages(result.spans["input_messages"].iloc[0]) == [{"role": "user", "content": "bob's question"}]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=12)
FIELDS = st.sampled_from(["eventName", "traceId", "spanId", "body", "attributes", "timeUnixNano"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=6)), max_size=5))
def test_any_log_records_give_exactly_one_outcome_each_and_never_raise(records: list) -> None:
    line = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})
    out = read_one(line)
    assert len(out) == len(records)
    assert all(isinstance(o, SpanEvent | SkippedRecord | Reject) for o in out)
    assert all(o.reason in QUARANTINE_REASONS for o in out if isinstance(o, Reject))


EVENT_NAMES = st.sampled_from(sorted(otlp_logs.GENAI_EVENTS))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(EVENT_NAMES, JSON, st.dictionaries(st.sampled_from(
    ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt",
     "gen_ai.completion", "gen_ai.event.content", "content", "message", "index"]), JSON, max_size=3)), max_size=4))
def test_any_event_content_joins_or_is_quarantined_without_stopping_the_hour(tmp_path_factory, events: list) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    land(root, "spans.jsonl", [spans_request(span("1111111111111111"))])
    land(root, "logs.jsonl", [logs_request(*[log_record("1111111111111111", name, body, at_ms=i, **{
        k.replace(".", "__"): v for k, v in extra.items()}) for i, (name, body, extra) in enumerate(events)])])
    result = ingest_partition(root, HOUR)
    assert len(result.spans) + len(result.quarantined[result.quarantined["source_format"] == "otlp"]) == 1
    assert identity_holds(result.audit)


def test_events_that_cannot_be_mapped_are_quarantined_and_the_span_kept(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(events: list) -> tuple:
        raise ValueError("no such message shape")

    monkeypatch.setattr(otlp_logs, "messages_from_events", broken)
    land(tmp_path, "spans.jsonl", [spans_request(span("1111111111111111"))])
    land(tmp_path, "logs.jsonl", [logs_request(log_record("1111111111111111", "gen_ai.user.message", {"content": "x"}))])
    result = ingest_partition(tmp_path, HOUR)
    assert len(result.spans) == 1 and result.spans["input_messages"].isna().all()
    [q] = result.quarantined.to_dict("records")
    assert q["reason"] == "invalid_type" and "could not be mapped to messages" in q["detail"]
    assert "no such message shape" in q["detail"] and identity_holds(result.audit)
