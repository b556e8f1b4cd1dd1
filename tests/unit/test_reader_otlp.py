"""OTLP/JSON reader: envelope encodings, GenAI attributes (v1.37+ and older forms), OpenInference attributes
inside OTLP, the token rule, errors, malformed spans, and the rows' passage through partition ingest."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import detect, otlp
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import iter_records
from aiobs_pipeline.ingest.partition import ingest_files, landing_folder
from aiobs_pipeline.quality.rules import apply_row_rules
from aiobs_pipeline.schema import QUARANTINE_REASONS, SPAN_COLUMN_NAMES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
TRACE = "5B8EFFF798038103D269B633813FC60C"
START = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z in Unix nanoseconds
HOUR = datetime(2026, 9, 21, 14, tzinfo=UTC)


def av(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP AnyValue (ints as decimal strings, as OTLP/JSON writes 64-bit ints)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [av(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": kv(value)}}
    raise TypeError(value)


def kv(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": av(v)} for k, v in attributes.items()]


def span(span_id: str, name: str = "chat gpt-4o", attrs: dict[str, Any] | None = None, *, parent: str = "",
         events: list[dict[str, Any]] | None = None, status: dict[str, Any] | None = None,
         start: int = START, duration_ms: int = 1500, kind: Any = 3) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": TRACE, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": kind,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + duration_ms * 1_000_000),
        "attributes": kv(attrs or {}),
    }
    if events is not None:
        out["events"] = events
    if status is not None:
        out["status"] = status
    return out


def event(name: str, attrs: dict[str, Any] | None = None, offset_ms: int = 0) -> dict[str, Any]:
    return {"name": name, "timeUnixNano": str(START + offset_ms * 1_000_000), "attributes": kv(attrs or {})}


def request(*spans: Any, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": kv(resource if resource is not None else {"service.name": "support-bot"})},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                        "spans": list(spans)}],
    }]}


def read(*requests: Any) -> list[Any]:
    records = [RawRecord(i, json.dumps(r), r) for i, r in enumerate(requests, start=1)]
    return list(otlp.read(records))


def one(req: dict[str, Any]) -> dict[str, Any]:
    out = read(req)
    assert len(out) == 1 and isinstance(out[0], dict), out
    return out[0]


def case(name: str) -> Any:
    """An attribute value from the GenAI semantic conventions' test cases (see fixtures/otlp/SOURCES.md)."""
    return json.loads((FIXTURES / "genai_cases" / f"{name}.json").read_text(encoding="utf-8"))


def test_matches_only_trace_requests() -> None:
    assert otlp.matches({"resourceSpans": []})
    assert otlp.matches({"resource_spans": []})
    assert not otlp.matches({"context": {"span_id": "a"}, "span_kind": "LLM"})
    assert not otlp.matches({"span_id": "a", "trace_id": "b"})
    assert not otlp.matches([{"resourceSpans": []}])
    assert detect.detect_reader(request(span("aa" * 8))) is otlp


def test_real_opentelemetry_proto_example() -> None:
    records = list(iter_records(FIXTURES / "opentelemetry_proto_trace.json"))
    rows = list(otlp.read(records))
    assert len(rows) == 1
    row = rows[0]
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"  # uppercase hex normalised
    assert row["span_id"] == "eee19b7ec3c1b174" and row["parent_span_id"] == "eee19b7ec3c1b173"
    assert row["kind"] == "chain" and row["status"] == "ok" and row["app"] == "my.service"
    assert row["start_time"] == datetime(2018, 12, 13, 14, 51, tzinfo=UTC)
    assert row["latency_ms"] == 1000.0 and row["source_line"] == 1
    assert row["metadata"] == {
        "my.span.attr": "some value", "otel.span.kind": "server", "otel.scope.name": "my.library",
        "otel.scope.version": "1.0.0", "otel.scope.attributes": {"my.scope.attribute": "some scope attribute"},
    }


def test_real_pydantic_ai_genai_trace() -> None:
    rows = list(otlp.read(iter_records(FIXTURES / "pydantic_ai_tools.otlp.jsonl")))
    assert len(rows) == 12 and all(isinstance(r, dict) and r["source_line"] == 1 for r in rows)
    kinds = sorted(r["kind"] for r in rows)
    assert kinds == ["chain"] * 5 + ["llm"] * 4 + ["tool"] * 3
    by_id = {r["span_id"]: r for r in rows}
    gen = by_id["00d2804abb764b1b"]
    assert gen["provider"] == "openai" and gen["request_model"] == "gpt-4o-mini"
    assert gen["model"] == gen["response_model"] == "gpt-4o-mini-2024-07-18"
    assert (gen["input_tokens"], gen["output_tokens"], gen["total_tokens"]) == (417, 53, 470)
    assert gen["reported_cost_usd"] == pytest.approx(9.435e-05) and gen["temperature"] == 0.7
    assert gen["latency_ms"] == 1707.0 and gen["parent_span_id"] == "5b5c52d029f28206"
    roles = [m["role"] for m in gen["input_messages"]]
    assert roles == ["system", "user", "assistant", "user", "user", "user"]
    calls = gen["input_messages"][2]["tool_calls"]
    assert [c["name"] for c in calls] == ["get_pun_suggestion", "get_dad_joke_suggestion", "get_one_liner_suggestion"]
    assert calls[0] == {"id": "call_X0OSgjUukT5inyEQvuZQnHrk", "name": "get_pun_suggestion",
                        "arguments": {"topic": "programming"}}
    assert gen["input_messages"][3]["tool_call_id"] == "call_X0OSgjUukT5inyEQvuZQnHrk"
    assert gen["input_messages"][3]["content"].startswith("Pun idea")
    assert "Why do programmers prefer dark mode?" in gen["output_text"]
    assert gen["output_messages"][0]["finish_reason"] == "stop"
    assert gen["metadata"]["gen_ai.operation.name"] == "chat"
    assert gen["metadata"]["gen_ai.response.finish_reasons"] == ["stop"]
    # The SDK's placeholder service name is not an app name; it stays visible in metadata.
    assert gen["app"] is None and gen["metadata"]["otel.resource"]["service.name"] == "unknown_service"
    agent = by_id["5b5c52d029f28206"]
    assert agent["kind"] == "chain" and agent["input_tokens"] == 682  # the agent's summed usage, as reported
    tool = by_id["99ec63d0b5ecdbf5"]
    assert tool["kind"] == "tool" and tool["metadata"]["gen_ai.tool.name"] == "get_pun_suggestion"


def test_genai_v137_chat_span_with_cache_and_reasoning_tokens() -> None:
    attrs = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.top_p": 0.9, "gen_ai.request.max_tokens": 1024,
        "gen_ai.request.seed": 7, "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.cache_read.input_tokens": 800,
        "gen_ai.usage.cache_creation.input_tokens": 100, "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.reasoning.output_tokens": 120, "gen_ai.response.time_to_first_chunk": 0.35,
        "gen_ai.conversation.id": "conv_5j66", "gen_ai.response.id": "msg_01",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a weather bot."}]),
        # Structured (kvlist/array) on the span, as the conventions recommend ...
        "gen_ai.input.messages": case("input-messages-tool-call-round-trip"),
        # ... or a JSON string, which they allow.
        "gen_ai.output.messages": json.dumps(case("output-messages-reasoning-and-generic-parts")),
        "user.id": "u-42", "aiobs.feature": "weather", "aiobs.endpoint": "/v1/ask",
        "aiobs.prompt.name": "weather-answer", "aiobs.prompt.version": "v3",
    }
    row = one(request(span("a1" * 8, attrs=attrs),
                      resource={"service.name": "support-bot", "deployment.environment.name": "production"}))
    assert row["kind"] == "llm" and row["provider"] == "anthropic"
    assert row["request_model"] == "claude-sonnet-4-5" and row["model"] == "claude-sonnet-4-5-20250929"
    assert (row["temperature"], row["top_p"], row["max_tokens"]) == (0.2, 0.9, 1024)
    assert row["request_params"] == {"seed": 7, "stop_sequences": ["END"]}
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (1200, 800, 100)
    assert (row["output_tokens"], row["reasoning_tokens"], row["total_tokens"]) == (300, 120, 1500)
    assert row["time_to_first_token_ms"] == pytest.approx(350.0)
    assert (row["app"], row["environment"], row["user_id"], row["session_id"]) == (
        "support-bot", "production", "u-42", "conv_5j66")
    assert (row["feature"], row["endpoint"], row["prompt_name"], row["prompt_version"]) == (
        "weather", "/v1/ask", "weather-answer", "v3")
    assert row["input_messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather", "arguments": {"location": "Paris"}}]},
        {"role": "tool", "content": "rainy, 57°F", "tool_call_id": "call_VSPygqKTWdrhaFErNvMV18Yl"},
    ]
    assert row["output_messages"] == [{
        "role": "assistant", "content": None, "reasoning": "The user wants a short answer.",
        "parts": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLt..."}],
        "finish_reason": "stop",
    }]
    assert row.get("output_text") is None  # reasoning is not the answer
    assert "aiobs.token_adjustments" not in row["metadata"]
    assert row["metadata"]["gen_ai.response.id"] == "msg_01" and row["metadata"]["otel.span.kind"] == "client"


def test_latest_cache_write_name_and_legacy_cache_names() -> None:
    latest = one(request(span("b1" * 8, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.cache_write.input_tokens": 30, "gen_ai.usage.output_tokens": 5})))
    assert latest["cache_write_tokens"] == 30 and latest["input_tokens"] == 50
    legacy = one(request(span("b2" * 8, attrs={
        "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku",
        "gen_ai.usage.prompt_tokens": 900, "gen_ai.usage.completion_tokens": 12,
        "gen_ai.usage.cache_read_input_tokens": 700, "gen_ai.usage.cache_creation_input_tokens": 150})))
    assert legacy["kind"] == "llm" and legacy["provider"] == "anthropic"
    assert (legacy["input_tokens"], legacy["cached_input_tokens"], legacy["cache_write_tokens"]) == (900, 700, 150)


def test_token_rule_converts_counts_that_exclude_cache_and_reasoning() -> None:
    # Raw Anthropic usage: input_tokens excludes cache reads/writes; raw Gemini: output excludes thoughts.
    row = one(request(span("c1" * 8, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 500, "gen_ai.usage.cache_creation.input_tokens": 40,
        "gen_ai.usage.output_tokens": 5, "gen_ai.usage.reasoning.output_tokens": 100})))
    assert row["input_tokens"] == 550 and row["output_tokens"] == 105 and row["total_tokens"] == 655
    assert row["cached_input_tokens"] == 500 and row["reasoning_tokens"] == 100
    assert len(row["metadata"]["aiobs.token_adjustments"]) == 2


def test_old_style_indexed_prompt_and_completion_attributes() -> None:
    attrs = {
        "gen_ai.system": "openai", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Answer in one word.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Capital of France?",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Paris",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.completion.1.role": "assistant",
        "gen_ai.completion.1.tool_calls.0.id": "call_1", "gen_ai.completion.1.tool_calls.0.name": "lookup",
        "gen_ai.completion.1.tool_calls.0.arguments": "{\"q\": \"France\"}",
        "gen_ai.usage.prompt_tokens": 20, "gen_ai.usage.completion_tokens": 3, "llm.usage.total_tokens": 23,
        "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    }
    row = one(request(span("d1" * 8, attrs=attrs)))
    assert row["kind"] == "llm" and row["provider"] == "openai" and row["model"] == "gpt-4o"
    assert row["input_messages"] == [{"role": "system", "content": "Answer in one word."},
                                     {"role": "user", "content": "Capital of France?"}]
    assert row["output_messages"][0] == {"role": "assistant", "content": "Paris", "finish_reason": "stop"}
    assert row["output_messages"][1]["tool_calls"] == [
        {"id": "call_1", "name": "lookup", "arguments": "{\"q\": \"France\"}"}]
    assert row["output_text"] == "Paris"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (20, 3, 23)
    assert not any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in row["metadata"])
    assert row["metadata"]["llm.request.type"] == "chat"
    assert row["metadata"]["gen_ai.openai.api_base"] == "https://api.openai.com/v1/"


def test_openllmetry_legacy_llm_prompts_and_completions() -> None:
    row = one(request(span("d2" * 8, attrs={
        "llm.request.type": "completion", "llm.request.model": "gpt-3.5-turbo-instruct",
        "gen_ai.request.model": "gpt-3.5-turbo-instruct",
        "llm.prompts.0.role": "user", "llm.prompts.0.content": "Say this is a test",
        "llm.completions.0.role": "assistant", "llm.completions.0.content": "This is a test."})))
    assert row["kind"] == "llm" and row["input_messages"] == [{"role": "user", "content": "Say this is a test"}]
    assert row["output_text"] == "This is a test."
    assert row["metadata"]["llm.request.model"] == "gpt-3.5-turbo-instruct"


def test_old_style_content_events() -> None:
    events = [
        event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(
            [{"role": "user", "content": "What is the capital of France?"}])}),
        event("gen_ai.content.completion", {"gen_ai.completion": json.dumps(
            [{"role": "assistant", "content": "The capital of France is Paris."}])}, offset_ms=900),
        event("retry", {"attempt": 1}),
    ]
    row = one(request(span("e1" * 8, attrs={"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4"},
                           events=events)))
    assert row["kind"] == "llm"
    assert row["input_messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert row["output_text"] == "The capital of France is Paris."
    assert [e["name"] for e in row["metadata"]["otel.events"]] == ["retry"]  # content events were consumed
    assert row["metadata"]["otel.events"][0]["time"] == "2026-09-21T14:13:20+00:00"


def test_per_message_log_events_attached_to_the_span() -> None:
    events = [
        event("gen_ai.system.message", {"gen_ai.system": "openai", "gen_ai.event.content": '{"content": "Be brief."}'}),
        event("gen_ai.user.message", {"gen_ai.system": "openai", "content": "Weather in Paris?"}),
        event("gen_ai.assistant.message", {"gen_ai.event.content": json.dumps({"tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]})}),
        event("gen_ai.tool.message", {"gen_ai.event.content": '{"content": "rainy", "id": "call_9"}'}),
        event("gen_ai.choice", {"gen_ai.event.content": json.dumps(
            {"index": 0, "finish_reason": "stop", "message": {"content": "It is rainy."}})}),
    ]
    row = one(request(span("e2" * 8, attrs={"gen_ai.operation.name": "chat"}, events=events)))
    assert row["input_messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_9", "name": "get_weather", "arguments": "{}"}]},
        {"role": "tool", "content": "rainy", "tool_call_id": "call_9"},
    ]
    assert row["output_messages"] == [{"role": "assistant", "content": "It is rainy.", "finish_reason": "stop"}]
    assert row["output_text"] == "It is rainy." and "otel.events" not in row["metadata"]


def test_first_token_event_gives_time_to_first_token() -> None:
    row = one(request(span("f1" * 8, attrs={"gen_ai.operation.name": "chat"},
                           events=[event("gen_ai.content.completion.chunk", offset_ms=420),
                                   event("gen_ai.content.completion.chunk", offset_ms=800)])))
    assert row["time_to_first_token_ms"] == 420.0


def test_embeddings_span() -> None:
    row = one(request(span("a2" * 8, "embeddings text-embedding-3-small", attrs={
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": 8,
        "gen_ai.embeddings.dimension.count": 1536, "gen_ai.request.encoding_formats": ["float"]})))
    assert row["kind"] == "embedding" and row["model"] == "text-embedding-3-small"
    assert row["input_tokens"] == 8 and row.get("output_tokens") is None and row.get("total_tokens") is None
    assert row["request_params"] == {"encoding_formats": ["float"]}
    assert row["metadata"]["gen_ai.embeddings.dimension.count"] == 1536


def test_retrieval_span_with_documents() -> None:
    row = one(request(span("a3" * 8, "retrieval kb", attrs={
        "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "kb-1",
        "gen_ai.retrieval.query.text": "what is opentelemetry",
        "gen_ai.retrieval.documents": json.dumps(case("retrieval-documents-documents"))})))
    assert row["kind"] == "retrieval"
    assert row["documents"] == [
        {"id": "doc-1", "score": 0.91, "title": "OpenTelemetry overview", "text": None, "rank": 1},
        {"id": "doc-2", "score": None, "text": None, "rank": 2},
        {"id": None, "score": None, "text": None, "rank": 3},
    ]
    assert row["metadata"]["gen_ai.retrieval.query.text"] == "what is opentelemetry"


def test_rerank_spans_by_genai_operation_and_openinference_kind() -> None:
    documents = [{"id": "kb-7", "score": 0.97, "content": "Refunds within 30 days."},
                 {"id": "kb-2", "score": 0.41, "content": "Shipping takes 3 days."}]
    genai = one(request(span("a5" * 8, "rerank rerank-v3.5", attrs={
        "gen_ai.operation.name": "rerank", "gen_ai.provider.name": "cohere", "gen_ai.request.model": "rerank-v3.5",
        "gen_ai.request.top_k": 2.0, "gen_ai.retrieval.documents": json.dumps(documents)})))
    assert genai["kind"] == "rerank" and genai["model"] == "rerank-v3.5" and genai["provider"] == "cohere"
    # The text comes from `content`, which is not repeated beside it.
    assert genai["documents"] == [{"id": "kb-7", "score": 0.97, "text": "Refunds within 30 days.", "rank": 1},
                                  {"id": "kb-2", "score": 0.41, "text": "Shipping takes 3 days.", "rank": 2}]
    assert genai["request_params"] == {"top_k": 2.0}
    openinference = one(request(span("a6" * 8, "rerank", attrs={
        "openinference.span.kind": "RERANKER", "reranker.model_name": "rerank-v3.5",
        "reranker.output_documents.0.document.id": "kb-7", "reranker.output_documents.0.document.score": 0.97})))
    assert openinference["kind"] == "rerank"
    assert openinference["documents"] == [{"id": "kb-7", "score": 0.97, "text": None, "rank": 1}]


@pytest.mark.parametrize(("attrs", "kind"), [
    ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}, "tool"),
    ({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}, "chain"),
    ({"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "gpt-3.5-turbo-instruct"}, "llm"),
    ({"gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "gcp.gemini"}, "llm"),
    ({"gen_ai.operation.name": "search_memory"}, "retrieval"),
    ({"gen_ai.operation.name": "create_memory_store"}, "chain"),
    ({"llm.request.type": "rerank"}, "rerank"),
    ({"traceloop.span.kind": "workflow"}, "chain"),
    ({"gen_ai.tool.name": "search"}, "tool"),
    ({"http.route": "/v1/ask", "http.request.method": "POST"}, "chain"),
])
def test_kind_from_genai_attributes(attrs: dict[str, Any], kind: str) -> None:
    assert one(request(span("a4" * 8, attrs=attrs)))["kind"] == kind


def test_http_route_is_the_endpoint_fallback() -> None:
    row = one(request(span("a5" * 8, "POST /v1/ask", attrs={"http.route": "/v1/ask"}, kind="SPAN_KIND_SERVER")))
    assert row["endpoint"] == "/v1/ask" and row["metadata"]["http.route"] == "/v1/ask"


@pytest.mark.parametrize(("status", "events", "attrs", "message"), [
    ({"code": 2, "message": "upstream 429"}, [], {}, "upstream 429"),
    ({"code": "STATUS_CODE_ERROR"}, [event("exception", {"exception.type": "openai.RateLimitError",
                                                         "exception.message": "Rate limit reached"})], {},
     "openai.RateLimitError: Rate limit reached"),
    ({}, [], {"error.type": "timeout"}, "timeout"),
])
def test_error_spans(status: dict[str, Any], events: list[Any], attrs: dict[str, Any], message: str) -> None:
    row = one(request(span("a6" * 8, attrs={"gen_ai.operation.name": "chat", **attrs}, status=status,
                           events=events)))
    assert row["status"] == "error" and row["error_message"] == message


@pytest.mark.parametrize("code", [0, 1, "STATUS_CODE_OK", "STATUS_CODE_UNSET", "1", None])
def test_ok_statuses(code: Any) -> None:
    status = {} if code is None else {"code": code}
    row = one(request(span("a7" * 8, status=status)))
    assert row["status"] == "ok" and row["error_message"] is None


def test_unknown_status_code_is_left_to_the_row_rules() -> None:
    row = one(request(span("a8" * 8, status={"code": 7})))
    checked = apply_row_rules(pd.DataFrame([{**row, "source_file": "f", "source_format": "otlp"}]))
    assert checked.quarantined.iloc[0]["reason"] == "invalid_status"


def test_protobuf_json_variants_and_any_values() -> None:
    trace_b64 = base64.b64encode(bytes.fromhex("0af7651916cd43dd8448eb211c80319c")).decode()
    span_b64 = base64.b64encode(bytes.fromhex("b7ad6b7169203331")).decode()
    req = {"resource_spans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "svc"}},
                                    {"key": "deployment.environment", "value": {"string_value": "staging"}}]},
        "instrumentation_library_spans": [{"instrumentation_library": {"name": "old-lib"}, "spans": [{
            "trace_id": trace_b64, "span_id": span_b64, "parent_span_id": "0000000000000000",
            "name": "legacy", "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": START,
            "end_time_unix_nano": START + 2_000_000, "status": {"code": "STATUS_CODE_OK"},
            "attributes": [
                {"key": "n", "value": {"int_value": 12}},
                {"key": "big", "value": {"intValue": "9223372036854775807"}},
                {"key": "nan", "value": {"doubleValue": "NaN"}},
                {"key": "flag", "value": {"bool_value": False}},
                {"key": "blob", "value": {"bytesValue": "aGVsbG8="}},
                {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "x"}]}}},
                {"key": "map", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": 1.5}}]}}},
                {"key": "empty", "value": {}},
            ],
        }]}],
    }]}
    row = one(req)
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and row["span_id"] == "b7ad6b7169203331"
    assert row["parent_span_id"] is None and row["latency_ms"] == 2.0
    assert row["app"] == "svc" and row["environment"] == "staging" and row["status"] == "ok"
    meta = row["metadata"]
    assert meta["n"] == 12 and meta["big"] == 9223372036854775807 and meta["nan"] != meta["nan"]
    assert meta["flag"] is False and meta["blob"] == "aGVsbG8=" and meta["list"] == [1, "x"]
    assert meta["map"] == {"a": 1.5} and meta["empty"] is None
    assert meta["otel.span.kind"] == "client" and meta["otel.scope.name"] == "old-lib"


def test_openinference_attributes_inside_otlp() -> None:
    llm = span("0a" * 8, "ChatOpenAI", attrs={
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06", "llm.provider": "openai",
        "llm.invocation_parameters": json.dumps({"model": "gpt-4o", "temperature": 0, "max_completion_tokens": 256,
                                                 "seed": 3}),
        "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Hi there",
        "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "Hello!",
        "llm.token_count.prompt": 2000, "llm.token_count.completion": 50, "llm.token_count.total": 2050,
        "llm.token_count.prompt_details.cache_read": 1500, "llm.token_count.prompt_details.cache_write": 100,
        "llm.token_count.completion_details.reasoning": 20, "llm.cost.total": 0.0123,
        "llm.cost.prompt": 0.01, "session.id": "sess-1", "user.id": "u-7",
        "metadata": json.dumps({"tier": "gold"}), "tag.tags": ["beta", "eu"],
        "llm.prompt_template.template": "Say hi to {name}", "llm.prompt_template.version": "v2",
    }, events=[event("First Token Stream Event", offset_ms=180)])
    retriever = span("0b" * 8, "retrieve", parent="0a" * 8, attrs={
        "openinference.span.kind": "RETRIEVER", "input.value": "opentelemetry",
        "retrieval.documents.0.document.id": "d1", "retrieval.documents.0.document.score": 0.8,
        "retrieval.documents.0.document.content": "OTel is ...",
        "retrieval.documents.0.document.metadata": json.dumps({"source": "wiki"}),
        "retrieval.documents.1.document.id": 42, "retrieval.documents.1.document.content": "Second"})
    reranker = span("0c" * 8, "rerank", attrs={
        "openinference.span.kind": "RERANKER", "reranker.model_name": "cross-encoder/ms-marco-MiniLM-L-6-v2",
        "reranker.query": "opentelemetry", "reranker.top_k": 1,
        "reranker.input_documents.0.document.id": "d1", "reranker.input_documents.1.document.id": "d2",
        "reranker.output_documents.0.document.id": "d2", "reranker.output_documents.0.document.score": 0.97})
    agent = span("0d" * 8, "agent", attrs={"openinference.span.kind": "AGENT", "input.value": "hi"})
    rows = {r["span_id"]: r for r in read(request(llm, retriever, reranker, agent))}
    row = rows["0a" * 8]
    assert row["kind"] == "llm" and row["provider"] == "openai"
    assert row["request_model"] == "gpt-4o" and row["model"] == "gpt-4o-2024-08-06"
    assert (row["temperature"], row["max_tokens"], row["request_params"]) == (0, 256, {"seed": 3})
    assert row["input_messages"] == [{"role": "user", "content": "Hi there"}]
    assert row["output_text"] == "Hello!"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (2000, 50, 2050)
    assert (row["cached_input_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (1500, 100, 20)
    assert row["reported_cost_usd"] == 0.0123 and row["time_to_first_token_ms"] == 180.0
    assert (row["session_id"], row["user_id"], row["prompt_version"]) == ("sess-1", "u-7", "v2")
    meta = row["metadata"]
    assert meta["metadata"] == {"tier": "gold"} and meta["tag.tags"] == ["beta", "eu"]
    assert meta["openinference.span.kind"] == "LLM" and meta["llm.cost.prompt"] == 0.01
    assert meta["llm.prompt_template.template"] == "Say hi to {name}"
    docs = rows["0b" * 8]["documents"]
    assert rows["0b" * 8]["kind"] == "retrieval"
    assert docs == [{"id": "d1", "score": 0.8, "text": "OTel is ...", "rank": 1, "metadata": {"source": "wiki"}},
                    {"id": "42", "score": None, "text": "Second", "rank": 2}]
    rerank = rows["0c" * 8]
    assert rerank["kind"] == "rerank" and rerank["model"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert rerank["documents"] == [{"id": "d2", "score": 0.97, "text": None, "rank": 1}]
    assert rerank["metadata"]["reranker.input_documents.1.document.id"] == "d2"
    assert rows["0d" * 8]["kind"] == "chain" and rows["0d" * 8]["metadata"]["openinference.span.kind"] == "AGENT"


def test_malformed_spans_become_rejects_and_siblings_survive() -> None:
    good = span("11" * 8)
    bad_attr = span("12" * 8)
    bad_attr["attributes"].append({"value": {"stringValue": "no key"}})
    bad_attr["attributes"].append({"key": "weird", "value": {"mysteryValue": 1}})
    bad_attr["attributes"].append({"key": "flat", "value": {"arrayValue": [1, 2]}})
    spans = [good, "not a span", {**span("13" * 8), "spanId": 12345},
             {**span("14" * 8), "traceId": "not-hex!"}, {**span("15" * 8), "attributes": {"a": 1}},
             {**span("16" * 8), "events": "none"}, bad_attr]
    out = read(request(*spans))
    rows = [o for o in out if isinstance(o, dict)]
    rejects = [o for o in out if isinstance(o, Reject)]
    assert [r["span_id"] for r in rows] == ["11" * 8, "12" * 8]
    assert rows[1]["metadata"]["otel.unreadable_attributes"] == [
        {"value": {"stringValue": "no key"}}, {"key": "weird", "value": {"mysteryValue": 1}},
        {"key": "flat", "value": {"arrayValue": [1, 2]}}]
    assert len(rejects) == 5 and all(r.reason == "invalid_type" and r.number == 1 for r in rejects)
    assert rejects[0].detail == ("record 1: resourceSpans[0].scopeSpans[0].spans[1]: expected a span object, "
                                 "got str")
    assert "field 'spanId' must be a hex string" in rejects[1].detail and rejects[1].trace_id == TRACE.lower()
    assert "field 'traceId' is not a hex id" in rejects[2].detail and rejects[2].span_id == "14" * 8
    assert "field 'attributes' must be a list" in rejects[3].detail and rejects[3].span_id == "15" * 8
    assert "field 'events' must be a list" in rejects[4].detail
    assert all(r.reason in QUARANTINE_REASONS and r.source_format == "otlp" and r.raw for r in rejects)


@pytest.mark.parametrize(("value", "reason", "text"), [
    (["a list"], "invalid_type", "expected an ExportTraceServiceRequest object"),
    ({"resourceLogs": []}, "unsupported_record", "no 'resourceSpans'"),
    ({"resourceSpans": {"a": 1}}, "invalid_type", "resourceSpans: must be a list"),
    ({"resourceSpans": [7]}, "invalid_type", "resourceSpans[0]: expected an object"),
    ({"resourceSpans": [{"scopeSpans": "x"}]}, "invalid_type", "resourceSpans[0].scopeSpans: must be a list"),
    ({"resourceSpans": [{"scopeSpans": [None]}]}, "invalid_type", "scopeSpans[0]: expected an object"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": 3}]}]}, "invalid_type", "scopeSpans[0].spans: must be a list"),
])
def test_malformed_records(value: Any, reason: str, text: str) -> None:
    out = list(otlp.read([RawRecord(4, json.dumps(value), value)]))
    assert len(out) == 1 and isinstance(out[0], Reject)
    assert out[0].reason == reason and text in out[0].detail and out[0].detail.startswith("record 4:")


def test_empty_request_yields_nothing() -> None:
    assert read({"resourceSpans": []}, {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": []}]}]}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano",
                        "endTimeUnixNano", "attributes", "events", "status", "links"])
attribute_keys = st.sampled_from(["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt.0.content",
                                  "gen_ai.usage.input_tokens", "gen_ai.retrieval.documents", "llm.input_messages",
                                  "llm.invocation_parameters", "metadata", "gen_ai.response.time_to_first_chunk",
                                  "gen_ai.system_instructions", "retrieval.documents.0.document.id", "user.id"])


def structured(value: Any) -> dict[str, Any]:
    """Any JSON value as an AnyValue, nulls as the empty AnyValue."""
    if value is None:
        return {}
    if isinstance(value, list):
        return {"arrayValue": {"values": [structured(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": structured(v)} for k, v in value.items()]}}
    return av(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=6),
       st.lists(st.tuples(attribute_keys, json_values, st.booleans()), max_size=4))
def test_arbitrary_spans_never_crash_the_reader(envelope: dict[str, Any], attrs: list[tuple[str, Any, bool]]) -> None:
    good = span("ab" * 8, attrs=None)
    good["attributes"] = [{"key": k, "value": structured(v) if as_json_text is False or v is None
                           else {"stringValue": json.dumps(v)}} for k, v, as_json_text in attrs]
    for item in (envelope, good):
        out = list(otlp.read([RawRecord(1, "{}", request(item))]))
        assert len(out) == 1 and (isinstance(out[0], Reject) or out[0]["source_line"] == 1)
        # The mapping copes with any attribute value itself; the reader's last-resort guard is not needed.
        assert not (isinstance(out[0], Reject) and "could not be mapped" in out[0].detail), out[0].detail
        if isinstance(out[0], dict):
            orjson.dumps(out[0]["metadata"], option=orjson.OPT_NON_STR_KEYS)  # JSON columns must serialise


def write_landing(root: Path, name: str, text: str) -> Path:
    folder = landing_folder(root, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_end_to_end_through_partition_ingest(tmp_path: Path) -> None:
    first = request(span("21" * 8, attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                          "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 4}),
                    span("22" * 8, "tool", parent="21" * 8, attrs={"gen_ai.operation.name": "execute_tool"}),
                    "garbage")
    second = request(span("23" * 8, attrs={"gen_ai.usage.input_tokens": -5, "gen_ai.operation.name": "chat"}),
                     span("24" * 8, duration_ms=-10),
                     span("21" * 8))  # the same span id again: a duplicate
    lines = [json.dumps(first), "{broken json", json.dumps(second)]
    a = write_landing(tmp_path, "a.jsonl", "\n".join(lines) + "\n")
    b = write_landing(tmp_path, "b.jsonl", (FIXTURES / "pydantic_ai_tools.otlp.jsonl").read_text(encoding="utf-8"))
    c = write_landing(tmp_path, "c.json", (FIXTURES / "opentelemetry_proto_trace.json").read_text(encoding="utf-8"))
    result = ingest_files([a, b, c], HOUR, tmp_path)
    audit = result.audit.set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert list(audit["source_format"]) == ["otlp", "otlp", "otlp"]
    row_a = audit.loc["2026/09/21/14/a.jsonl"]
    assert (row_a["records_read"], row_a["spans_found"], row_a["spans_written"]) == (3, 7, 2)
    assert orjson.loads(row_a["quarantined_by_reason"]) == {
        "duplicate_span_id": 1, "end_before_start": 1, "invalid_json": 1, "invalid_type": 1, "negative_value": 1}
    assert audit.loc["2026/09/21/14/b.jsonl", "spans_written"] == 12
    assert audit.loc["2026/09/21/14/c.json", "spans_written"] == 1
    spans = result.spans.set_index("span_id")
    assert list(result.spans.columns) == list(SPAN_COLUMN_NAMES)
    assert spans.loc["21" * 8, "source_line"] == 1 and spans.loc["22" * 8, "source_line"] == 1
    assert spans.loc["21" * 8, "source_format"] == "otlp" and spans.loc["21" * 8, "total_tokens"] == 34
    gen = spans.loc["00d2804abb764b1b"]
    assert orjson.loads(gen["input_messages"])[0]["role"] == "system"
    assert orjson.loads(gen["metadata"])["gen_ai.operation.name"] == "chat"
    assert str(gen["start_time"].tz) == "UTC"
    quarantined = result.quarantined
    negative = quarantined[quarantined["reason"] == "negative_value"].iloc[0]
    assert negative["span_id"] == "23" * 8 and negative["source_line"] == 3 and "input_tokens" in negative["detail"]
    garbage = quarantined[quarantined["reason"] == "invalid_type"].iloc[0]
    assert "spans[2]" in garbage["detail"] and garbage["source_line"] == 1
