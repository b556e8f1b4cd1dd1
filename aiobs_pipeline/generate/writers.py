"""Encoding an hour's traces into the five export formats, each per its own specification.

- native: aiobs JSON Lines, one span per line (layout of `ingest/native.py` and the product brief).
- otlp: OTLP/JSON as the OpenTelemetry Collector file exporter writes it, one ExportTraceServiceRequest per
  line; OpenTelemetry GenAI semantic conventions v1.37+ (gen_ai.provider.name, gen_ai.input.messages in the
  parts format, ...) and, for an older instrumentation, the pre-1.37 attributes (gen_ai.system,
  gen_ai.prompt.{i}.*, gen_ai.completion.{i}.*, gen_ai.usage.prompt_tokens).
- openinference: a Phoenix span export, a JSON array of spans with flat OpenInference attributes.
- langfuse: one `{"trace": ..., "observations": [...]}` per JSONL line (sometimes one trace per .json file),
  shaped like Langfuse's public API (usageDetails keys are disjoint, so input excludes cache reads).
- langsmith: run ingest payloads `{"post": [...], "patch": [...]}` per JSONL line; the patches of some traces
  sit in a separate file of the same hour, as a client that batches creates and updates apart would send them.

Owns file names, gzip choice and byte-exact output (orjson, gzip with mtime 0), so equal inputs give equal
bytes. It must not draw randomness: every choice is a function of the hour and the ids.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from aiobs_pipeline.generate.scenario import (
    APP,
    APP_VERSION,
    ENVIRONMENT,
    KB_DATA_SOURCE,
    RERANK_MODEL,
    SYSTEM_PROMPTS,
    ModelSpec,
)
from aiobs_pipeline.generate.traces import FORMATS, MS, NS, HourTraces, RetrievedDoc, Span, Trace

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Traces per ExportTraceServiceRequest (one JSON line); a few keeps lines in the tens of kilobytes.
OTLP_TRACES_PER_REQUEST = 4
LANGSMITH_RUNTIME = {"sdk": "langsmith-py", "sdk_version": "0.3.45", "library": "langsmith",
                     "runtime": "python", "py_implementation": "CPython", "runtime_version": "3.11.9"}
# The JS SDK's getRuntimeEnvironment() (js/src/utils/env.ts).
LANGSMITH_JS_RUNTIME = {"library": "langsmith", "runtime": "node", "sdk": "langsmith-js", "sdk_version": "0.9.0"}


# ---------------------------------------------------------------------------------------------------------
# Shared helpers.


def _dt(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def iso_z_us(ns: int) -> str:
    """ISO-8601 UTC with microseconds and Z (native)."""
    return _dt(ns).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_z_ms(ns: int) -> str:
    """ISO-8601 UTC with milliseconds and Z (Langfuse, feedback events)."""
    dt = _dt(ns)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def iso_offset_us(ns: int) -> str:
    """ISO-8601 with microseconds and +00:00 (Phoenix and LangSmith write Python's isoformat)."""
    return _dt(ns).isoformat(timespec="microseconds")


def dumps(value: Any) -> bytes:
    """Compact, deterministic JSON."""
    return orjson.dumps(value)


def json_text(value: Any) -> str:
    """JSON as a string value (attributes that carry structured data as JSON text)."""
    return orjson.dumps(value).decode()


def _stable_bucket(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode()) % buckets


def app_metadata(trace: Trace, span: Span) -> dict[str, Any]:
    """The application's own tags for a span: user, session, feature, endpoint, environment, app, prompt."""
    meta = {
        "user_id": trace.user_id,
        "session_id": trace.session_id,
        "feature": trace.feature,
        "endpoint": trace.endpoint,
        "environment": ENVIRONMENT,
        "app": APP,
    }
    if span.kind == "llm":
        meta["prompt_name"] = trace.prompt_name
        meta["prompt_version"] = trace.prompt_version
    return meta


def _provider_name(span: Span) -> str | None:
    if span.kind == "rerank":
        return "cohere"
    return span.model.provider if span.model else None


def _request_model(span: Span) -> str | None:
    if span.kind == "rerank":
        return RERANK_MODEL
    return span.model.name if span.model else None


def _response_model(span: Span) -> str | None:
    """The dated model the provider answered with; absent when the call failed before a response."""
    if span.model is None or span.status == "error":
        return None
    return span.model.response_model


def _output_message(span: Span) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": span.output_text}
    if span.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json_text(c["arguments"])}}
            for c in span.tool_calls
        ]
    return message


def _cost_parts(model: ModelSpec, span: Span) -> dict[str, float] | None:
    """Cost split by usage type, as Langfuse reports costDetails."""
    if model.input_per_mtok is None or span.input_tokens is None:
        return None
    cached = span.cached_tokens
    cache_rate = model.cache_read_per_mtok if model.cache_read_per_mtok is not None else model.input_per_mtok
    parts = {"input": round((span.input_tokens - cached) * model.input_per_mtok / 1e6, 10)}
    if cached:
        parts["input_cache_read"] = round(cached * cache_rate / 1e6, 10)
    parts["output"] = round((span.output_tokens or 0) * (model.output_per_mtok or 0.0) / 1e6, 10)
    parts["total"] = round(sum(parts.values()), 10)
    return parts


def _first_tokens(text: str | None, count: int = 3) -> list[str]:
    words = (text or "").split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words[:count]) if w]


# ---------------------------------------------------------------------------------------------------------
# native


def native_span(trace: Trace, span: Span) -> dict[str, Any]:
    """One native span object (see ingest/native.py for the mapping back)."""
    out: dict[str, Any] = {
        "span_id": span.span_id,
        "trace_id": span.trace_id,
        "parent_span_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "start_time": iso_z_us(span.start_ns),
        "end_time": iso_z_us(span.end_ns),
    }
    if span.kind in ("llm", "embedding", "rerank"):
        out["model"] = _request_model(span)
        out["response_model"] = _response_model(span) if span.kind != "rerank" else None
        out["provider"] = _provider_name(span)
    if span.kind == "llm":
        out["messages"] = span.messages
        out["response"] = span.output_text
        if span.tool_calls:
            out["output_messages"] = [_output_message(span)]
        out["usage"] = None if span.input_tokens is None else {
            "prompt_tokens": span.input_tokens,
            "completion_tokens": span.output_tokens,
            "total_tokens": span.input_tokens + (span.output_tokens or 0),
            "cached_tokens": span.cached_tokens,
            "reasoning_tokens": span.reasoning_tokens,
        }
        out["cost"] = span.cost_usd
        out["latency_ms"] = span.latency_ms
        out["time_to_first_token_ms"] = span.ttft_ms
        out["params"] = {"temperature": span.temperature, "top_p": span.top_p, "max_tokens": span.max_tokens,
                         "stream": span.stream}
    elif span.kind == "embedding":
        out["input"] = [span.query]
        out["usage"] = {"prompt_tokens": span.input_tokens, "completion_tokens": 0,
                        "total_tokens": span.input_tokens}
        out["cost"] = span.cost_usd
        out["latency_ms"] = span.latency_ms
    elif span.kind in ("retrieval", "rerank"):
        out["query"] = span.query
        out["documents"] = [{"id": d.doc_id, "score": d.score, "text": d.text, "rank": d.rank}
                            for d in span.documents or []]
        out["latency_ms"] = span.latency_ms
    elif span.kind == "tool":
        out["tool"] = {"name": span.tool_name, "call_id": span.tool_call_id, "arguments": span.tool_arguments,
                       "result": span.tool_result}
        out["latency_ms"] = span.latency_ms
    else:
        out["input"] = span.input_value
        out["output"] = span.output_value
        out["latency_ms"] = span.latency_ms
    out["status"] = span.status
    out["error"] = span.error_message
    if span.error_type:
        out["error_type"] = span.error_type
    out["metadata"] = app_metadata(trace, span)
    return out


def encode_native(traces: list[Trace]) -> bytes:
    """JSON Lines, one span per line, the spans of a trace consecutive (root first)."""
    return b"".join(dumps(native_span(t, s)) + b"\n" for t in traces for s in t.spans)


# ---------------------------------------------------------------------------------------------------------
# OTLP/JSON with OpenTelemetry GenAI attributes


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP/JSON AnyValue (int64 as a decimal string, as the proto3 JSON mapping requires)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def kv_list(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """OTLP attributes from (key, value) pairs, skipping null values."""
    return [{"key": k, "value": any_value(v)} for k, v in pairs if v is not None]


OTEL_PROVIDER = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic",
                 "google": "gcp.gemini", "self-hosted": "self-hosted", "cohere": "cohere"}
LEGACY_SYSTEM = {"openai": "openai", "azure": "az.ai.openai", "anthropic": "anthropic", "google": "gemini",
                 "self-hosted": "openai"}
SERVER_ADDRESS = {"openai": "api.openai.com", "azure": "acme-prod.openai.azure.com",
                  "anthropic": "api.anthropic.com", "google": "generativelanguage.googleapis.com",
                  "self-hosted": "llm.internal.acme.io", "cohere": "api.cohere.com"}
SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 1, 2, 3


def parts_messages(messages: list[dict]) -> list[dict[str, Any]]:
    """Chat messages in the GenAI input-messages JSON schema (role + parts)."""
    out = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        if m["role"] == "tool":
            parts.append({"type": "tool_call_response", "id": m.get("tool_call_id"), "response": m["content"]})
        else:
            if m.get("content"):
                parts.append({"type": "text", "content": m["content"]})
            for call in m.get("tool_calls") or []:
                parts.append({"type": "tool_call", "id": call["id"], "name": call["function"]["name"],
                              "arguments": orjson.loads(call["function"]["arguments"])})
        out.append({"role": m["role"], "parts": parts})
    return out


def output_parts(span: Span) -> list[dict[str, Any]]:
    """The answer in the GenAI output-messages JSON schema."""
    parts: list[dict[str, Any]] = []
    if span.output_text:
        parts.append({"type": "text", "content": span.output_text})
    for call in span.tool_calls or []:
        parts.append({"type": "tool_call", "id": call["id"], "name": call["name"], "arguments": call["arguments"]})
    return [{"role": "assistant", "parts": parts, "finish_reason": span.finish_reason or "stop"}]


def _otel_common(trace: Trace, span: Span) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        ("user.id", trace.user_id),
        ("session.id", trace.session_id),
        ("aiobs.feature", trace.feature),
        ("aiobs.endpoint", trace.endpoint),
    ]
    if span.kind == "llm":
        pairs += [("aiobs.prompt.name", trace.prompt_name), ("aiobs.prompt.version", trace.prompt_version)]
    return pairs


def _otel_llm_attributes(trace: Trace, span: Span) -> list[tuple[str, Any]]:
    model = span.model
    assert model is not None
    pairs: list[tuple[str, Any]] = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", OTEL_PROVIDER[model.provider]),
        ("gen_ai.request.model", model.name),
        ("gen_ai.response.model", _response_model(span)),
        ("gen_ai.response.id", span.response_id),
        ("gen_ai.response.finish_reasons", [span.finish_reason] if span.finish_reason else None),
        ("gen_ai.request.temperature", span.temperature),
        ("gen_ai.request.top_p", span.top_p),
        ("gen_ai.request.max_tokens", span.max_tokens),
        ("gen_ai.request.stream", True if span.stream else None),
        ("gen_ai.conversation.id", trace.session_id),
        ("gen_ai.usage.input_tokens", span.input_tokens),
        ("gen_ai.usage.output_tokens", span.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", span.cached_tokens or None),
        ("gen_ai.usage.reasoning.output_tokens", span.reasoning_tokens or None),
        ("gen_ai.response.time_to_first_chunk", round(span.ttft_ms / 1000, 6) if span.ttft_ms else None),
        ("server.address", SERVER_ADDRESS[model.provider]),
        ("server.port", 443),
        ("gen_ai.input.messages", json_text(parts_messages(span.messages or []))),
        ("gen_ai.output.messages", json_text(output_parts(span)) if span.status == "ok" else None),
        ("error.type", span.error_type),
    ]
    return pairs


def _otel_legacy_llm_attributes(trace: Trace, span: Span) -> list[tuple[str, Any]]:
    """The pre-1.37 GenAI attributes an older (OpenLLMetry-style) instrumentation still emits."""
    model = span.model
    assert model is not None
    pairs: list[tuple[str, Any]] = [
        ("gen_ai.system", LEGACY_SYSTEM[model.provider]),
        ("llm.request.type", "chat"),
        ("gen_ai.request.model", model.name),
        ("gen_ai.response.model", _response_model(span)),
        ("gen_ai.request.temperature", span.temperature),
        ("gen_ai.request.max_tokens", span.max_tokens),
        ("llm.is_streaming", span.stream),
    ]
    for i, m in enumerate(span.messages or []):
        pairs += [(f"gen_ai.prompt.{i}.role", m["role"]), (f"gen_ai.prompt.{i}.content", m.get("content") or "")]
    if span.status == "ok":
        pairs += [("gen_ai.completion.0.role", "assistant"),
                  ("gen_ai.completion.0.content", span.output_text or ""),
                  ("gen_ai.completion.0.finish_reason", span.finish_reason)]
    if span.input_tokens is not None:
        pairs += [("gen_ai.usage.prompt_tokens", span.input_tokens),
                  ("gen_ai.usage.completion_tokens", span.output_tokens),
                  ("llm.usage.total_tokens", span.input_tokens + (span.output_tokens or 0))]
        if span.cached_tokens:
            pairs.append(("gen_ai.usage.cache_read_input_tokens", span.cached_tokens))
    pairs.append(("error.type", span.error_type))
    return pairs


def _otel_documents(docs: list[RetrievedDoc] | None) -> str:
    return json_text([{"id": d.doc_id, "score": d.score, "content": d.text} for d in docs or []])


def otlp_span(trace: Trace, span: Span) -> tuple[tuple[str, str], dict[str, Any]]:
    """((scope name, scope version), OTLP/JSON span) for one span."""
    scope = ("acme.assistant", APP_VERSION)
    kind = SPAN_KIND_CLIENT
    if span.kind == "llm":
        if trace.legacy:
            name = f"{LEGACY_SYSTEM[span.model.provider].split('.')[-1]}.chat"
            attrs = _otel_legacy_llm_attributes(trace, span)
            scope = (f"opentelemetry.instrumentation.{span.model.provider.replace('-', '_')}", "0.33.9")
        else:
            name = f"chat {span.model.name}"
            attrs = _otel_llm_attributes(trace, span)
            scope = ("opentelemetry.instrumentation.genai", "2.1b0")
    elif span.kind == "embedding":
        name = f"embeddings {span.model.name}"
        attrs = [("gen_ai.operation.name", "embeddings"), ("gen_ai.provider.name", "openai"),
                 ("gen_ai.request.model", span.model.name), ("gen_ai.response.model", span.model.response_model),
                 ("gen_ai.usage.input_tokens", span.input_tokens), ("gen_ai.embeddings.dimension.count", 1536),
                 ("server.address", SERVER_ADDRESS["openai"]), ("server.port", 443)]
        scope = ("opentelemetry.instrumentation.genai", "2.1b0")
    elif span.kind == "retrieval":
        name = f"retrieval {KB_DATA_SOURCE}"
        attrs = [("gen_ai.operation.name", "retrieval"), ("gen_ai.data_source.id", KB_DATA_SOURCE),
                 ("gen_ai.request.top_k", 5.0), ("gen_ai.retrieval.query.text", span.query),
                 ("gen_ai.retrieval.documents", _otel_documents(span.documents))]
    elif span.kind == "rerank":
        name = f"rerank {RERANK_MODEL}"
        # GenAI conventions have no rerank operation; a custom operation name is what they allow.
        attrs = [("gen_ai.operation.name", "rerank"), ("gen_ai.provider.name", "cohere"),
                 ("gen_ai.request.model", RERANK_MODEL), ("gen_ai.request.top_k", 3.0),
                 ("gen_ai.retrieval.query.text", span.query),
                 ("gen_ai.retrieval.documents", _otel_documents(span.documents)),
                 ("server.address", SERVER_ADDRESS["cohere"]), ("server.port", 443)]
    elif span.kind == "tool":
        name = f"execute_tool {span.tool_name}"
        kind = SPAN_KIND_INTERNAL
        attrs = [("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", span.tool_name),
                 ("gen_ai.tool.type", "function"), ("gen_ai.tool.call.id", span.tool_call_id),
                 ("gen_ai.tool.call.arguments", json_text(span.tool_arguments)),
                 ("gen_ai.tool.call.result", span.tool_result)]
    else:
        name = f"POST {trace.endpoint}"
        kind = SPAN_KIND_SERVER
        attrs = [("http.request.method", "POST"), ("http.route", trace.endpoint), ("url.path", trace.endpoint),
                 ("url.scheme", "https"), ("http.response.status_code", 500 if span.status == "error" else 200),
                 ("error.type", span.error_type)]
    attrs = _otel_common(trace, span) + attrs
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": kv_list(attrs),
    }
    if span.parent_id:
        # proto3 JSON omits empty fields, so a root span has no parentSpanId at all.
        out = {**dict(list(out.items())[:2]), "parentSpanId": span.parent_id, **dict(list(out.items())[2:])}
    events = []
    if span.kind == "llm" and trace.legacy and span.ttft_ms is not None:
        events.append({"timeUnixNano": str(span.start_ns + int(span.ttft_ms * MS)),
                       "name": "llm.content.completion.chunk", "attributes": []})
    if span.status == "error":
        events.append({"timeUnixNano": str(span.end_ns), "name": "exception",
                       "attributes": kv_list([("exception.type", span.error_type),
                                              ("exception.message", span.error_message)])})
    if events:
        out["events"] = events
    out["status"] = {"code": 2, "message": span.error_message} if span.status == "error" else {}
    return scope, out


def otlp_request(traces: list[Trace]) -> dict[str, Any]:
    """One ExportTraceServiceRequest holding the given traces, spans grouped by instrumentation scope."""
    scopes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for trace in traces:
        for span in trace.spans:
            scope, encoded = otlp_span(trace, span)
            scopes.setdefault(scope, []).append(encoded)
    resource = kv_list([("service.name", APP), ("service.version", APP_VERSION),
                        ("deployment.environment.name", ENVIRONMENT), ("telemetry.sdk.language", "python"),
                        ("telemetry.sdk.name", "opentelemetry"), ("telemetry.sdk.version", "1.37.0")])
    return {"resourceSpans": [{
        "resource": {"attributes": resource},
        "scopeSpans": [{"scope": {"name": name, "version": version}, "spans": spans}
                       for (name, version), spans in sorted(scopes.items())],
        "schemaUrl": "https://opentelemetry.io/schemas/1.37.0",
    }]}


def encode_otlp(traces: list[Trace]) -> bytes:
    """Collector file-exporter layout: one ExportTraceServiceRequest per line, a few traces per request."""
    lines = []
    for i in range(0, len(traces), OTLP_TRACES_PER_REQUEST):
        lines.append(dumps(otlp_request(traces[i:i + OTLP_TRACES_PER_REQUEST])) + b"\n")
    return b"".join(lines)


# ---------------------------------------------------------------------------------------------------------
# OpenInference (Phoenix span export)


OI_KIND = {"llm": "LLM", "embedding": "EMBEDDING", "retrieval": "RETRIEVER", "rerank": "RERANKER",
           "tool": "TOOL", "chain": "CHAIN"}
OI_SYSTEM = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "google": "vertexai",
             "self-hosted": "openai"}


def _oi_documents(prefix: str, docs: list[RetrievedDoc] | None) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for i, d in enumerate(docs or []):
        pairs += [(f"{prefix}.{i}.document.id", d.doc_id), (f"{prefix}.{i}.document.content", d.text),
                  (f"{prefix}.{i}.document.score", d.score)]
    return pairs


def _oi_messages(prefix: str, messages: list[dict]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for i, m in enumerate(messages):
        head = f"{prefix}.{i}.message"
        pairs.append((f"{head}.role", m["role"]))
        if m.get("content") is not None:
            pairs.append((f"{head}.content", m["content"]))
        if m.get("tool_call_id"):
            pairs.append((f"{head}.tool_call_id", m["tool_call_id"]))
        for j, call in enumerate(m.get("tool_calls") or []):
            pairs += [(f"{head}.tool_calls.{j}.tool_call.id", call["id"]),
                      (f"{head}.tool_calls.{j}.tool_call.function.name", call["function"]["name"]),
                      (f"{head}.tool_calls.{j}.tool_call.function.arguments", call["function"]["arguments"])]
    return pairs


def openinference_span(trace: Trace, span: Span) -> dict[str, Any]:
    """One span of a Phoenix export with flat OpenInference attributes."""
    meta = {k: v for k, v in app_metadata(trace, span).items() if k not in ("user_id", "session_id")}
    pairs: list[tuple[str, Any]] = [
        ("openinference.span.kind", OI_KIND[span.kind]),
        ("user.id", trace.user_id),
        ("session.id", trace.session_id),
        ("metadata", json_text(meta)),
        ("tag.tags", [trace.feature]),
        ("aiobs.feature", trace.feature),
        ("aiobs.endpoint", trace.endpoint),
    ]
    if span.kind == "llm":
        model = span.model
        pairs += [
            ("llm.request.model_name", model.name),
            ("llm.model_name", _response_model(span) or model.name),
            ("llm.provider", model.provider),
            ("llm.system", OI_SYSTEM[model.provider]),
            ("llm.invocation_parameters", json_text({"model": model.name, "temperature": span.temperature,
                                                     "top_p": span.top_p, "max_tokens": span.max_tokens,
                                                     "stream": span.stream})),
            ("llm.prompt_template.template", SYSTEM_PROMPTS[trace.prompt_name]),
            ("llm.prompt_template.version", trace.prompt_version),
            ("aiobs.prompt.name", trace.prompt_name),
            ("aiobs.prompt.version", trace.prompt_version),
            ("input.value", json_text({"messages": span.messages})),
            ("input.mime_type", "application/json"),
        ]
        pairs += _oi_messages("llm.input_messages", span.messages or [])
        if span.status == "ok":
            pairs += _oi_messages("llm.output_messages", [_output_message(span)])
            pairs += [("output.value", span.output_text), ("output.mime_type", "text/plain"),
                      ("llm.finish_reason", span.finish_reason)]
        if span.input_tokens is not None:
            pairs += [("llm.token_count.prompt", span.input_tokens),
                      ("llm.token_count.completion", span.output_tokens),
                      ("llm.token_count.total", span.input_tokens + (span.output_tokens or 0))]
            if span.cached_tokens:
                pairs.append(("llm.token_count.prompt_details.cache_read", span.cached_tokens))
            if span.reasoning_tokens:
                pairs.append(("llm.token_count.completion_details.reasoning", span.reasoning_tokens))
    elif span.kind == "embedding":
        pairs += [("embedding.model_name", span.model.name), ("llm.provider", "openai"),
                  ("embedding.embeddings.0.embedding.text", span.query),
                  ("llm.token_count.prompt", span.input_tokens), ("llm.token_count.total", span.input_tokens),
                  ("input.value", span.query)]
    elif span.kind == "retrieval":
        pairs += [("input.value", span.query)] + _oi_documents("retrieval.documents", span.documents)
    elif span.kind == "rerank":
        pairs += [("reranker.query", span.query), ("reranker.model_name", RERANK_MODEL), ("reranker.top_k", 3)]
        pairs += _oi_documents("reranker.input_documents", span.input_documents)
        pairs += _oi_documents("reranker.output_documents", span.documents)
    elif span.kind == "tool":
        pairs += [("tool.name", span.tool_name), ("tool.id", span.tool_call_id),
                  ("input.value", json_text(span.tool_arguments)), ("input.mime_type", "application/json"),
                  ("output.value", span.tool_result)]
    else:
        pairs += [("input.value", span.input_value), ("output.value", span.output_value)]
    events = []
    if span.kind == "llm" and span.ttft_ms is not None:
        events.append({"name": "First Token Stream Event",
                       "timestamp": iso_offset_us(span.start_ns + int(span.ttft_ms * MS)), "attributes": {}})
    if span.status == "error":
        events.append({"name": "exception", "timestamp": iso_offset_us(span.end_ns),
                       "attributes": {"exception.type": span.error_type, "exception.message": span.error_message,
                                      "exception.escaped": False}})
    return {
        "name": span.name if span.kind != "llm" else ("ChatCompletion" if span.model.provider != "anthropic"
                                                       else "Messages"),
        "context": {"trace_id": span.trace_id, "span_id": span.span_id},
        "span_kind": OI_KIND[span.kind],
        "parent_id": span.parent_id,
        "start_time": iso_offset_us(span.start_ns),
        "end_time": iso_offset_us(span.end_ns),
        "status_code": "ERROR" if span.status == "error" else "OK",
        "status_message": span.error_message or "",
        "attributes": {k: v for k, v in pairs if v is not None},
        "events": events,
    }


def encode_openinference(traces: list[Trace]) -> bytes:
    """A Phoenix span export: one JSON array of spans."""
    return dumps([openinference_span(t, s) for t in traces for s in t.spans]) + b"\n"


# ---------------------------------------------------------------------------------------------------------
# Langfuse


LANGFUSE_TYPE = {"llm": "GENERATION", "embedding": "EMBEDDING", "retrieval": "RETRIEVER", "rerank": "SPAN",
                 "tool": "TOOL", "chain": "CHAIN"}
LANGFUSE_PROJECT = "cm4acmeprod0001"


def _langfuse_usage(span: Span) -> dict[str, int]:
    """usageDetails: disjoint usage types summing to total, as Langfuse's integrations report them."""
    if span.input_tokens is None:
        return {}
    usage = {"input": span.input_tokens - span.cached_tokens,
             "output": (span.output_tokens or 0) - span.reasoning_tokens}
    if span.cached_tokens:
        usage["input_cache_read"] = span.cached_tokens
    if span.reasoning_tokens:
        usage["output_reasoning"] = span.reasoning_tokens
    usage["total"] = span.input_tokens + (span.output_tokens or 0)
    return usage


def langfuse_observation(trace: Trace, span: Span) -> dict[str, Any]:
    """One Langfuse observation (public API shape)."""
    obs: dict[str, Any] = {
        "id": span.span_id,
        "traceId": span.trace_id,
        "projectId": LANGFUSE_PROJECT,
        "type": LANGFUSE_TYPE[span.kind],
        "environment": ENVIRONMENT,
        "name": span.name,
        "startTime": iso_z_ms(span.start_ns),
        "endTime": iso_z_ms(span.end_ns),
        "completionStartTime": None,
        "parentObservationId": span.parent_id,
        "level": "ERROR" if span.status == "error" else "DEFAULT",
        "statusMessage": span.error_message,
        "version": APP_VERSION,
        "model": None,
        "modelParameters": None,
        "input": None,
        "output": None,
        "usageDetails": {},
        "costDetails": {},
        "promptName": None,
        "promptVersion": None,
        "metadata": {},
    }
    if span.kind == "llm":
        model = span.model
        obs["model"] = _response_model(span) or model.name
        obs["modelParameters"] = {"temperature": span.temperature, "top_p": span.top_p,
                                  "max_tokens": span.max_tokens}
        if span.ttft_ms is not None:
            obs["completionStartTime"] = iso_z_ms(span.start_ns + int(span.ttft_ms * MS))
        obs["input"] = span.messages
        obs["output"] = _output_message(span) if span.status == "ok" else None
        obs["usageDetails"] = _langfuse_usage(span)
        obs["costDetails"] = _cost_parts(model, span) or {}
        obs["promptName"] = trace.prompt_name
        obs["promptVersion"] = int(trace.prompt_version)
        obs["metadata"] = {"ls_provider": model.provider, "ls_model_name": model.name,
                           "ls_model_type": "chat", "finish_reason": span.finish_reason}
    elif span.kind == "embedding":
        obs["model"] = span.model.response_model
        obs["input"] = [span.query]
        obs["usageDetails"] = {"input": span.input_tokens, "total": span.input_tokens}
        obs["costDetails"] = {"input": span.cost_usd, "total": span.cost_usd}
        obs["metadata"] = {"ls_provider": "openai", "ls_model_name": span.model.name}
    elif span.kind == "retrieval":
        obs["input"] = {"query": span.query, "top_k": 5}
        obs["output"] = {"documents": [{"id": d.doc_id, "content": d.text, "score": d.score}
                                       for d in span.documents or []]}
        obs["metadata"] = {"data_source": KB_DATA_SOURCE}
    elif span.kind == "rerank":
        obs["input"] = {"query": span.query, "documents": [d.doc_id for d in span.input_documents or []]}
        obs["output"] = {"documents": [{"id": d.doc_id, "content": d.text, "score": d.score}
                                       for d in span.documents or []]}
        obs["metadata"] = {"reranker_model": RERANK_MODEL, "top_n": 3}
    elif span.kind == "tool":
        obs["input"] = span.tool_arguments
        obs["output"] = span.tool_result
        obs["metadata"] = {"tool_call_id": span.tool_call_id}
    else:
        obs["input"] = span.input_value
        obs["output"] = span.output_value
    obs["createdAt"] = iso_z_ms(span.end_ns + 2 * NS)
    obs["updatedAt"] = iso_z_ms(span.end_ns + 3 * NS)
    return obs


def langfuse_document(trace: Trace) -> dict[str, Any]:
    """One trace with its observations, as GET /api/public/traces/{id} returns it."""
    root = trace.spans[0]
    end = max(s.end_ns for s in trace.spans)
    return {
        "trace": {
            "id": trace.trace_id,
            "projectId": LANGFUSE_PROJECT,
            "name": f"{trace.feature}-request",
            "timestamp": iso_z_ms(root.start_ns),
            "environment": ENVIRONMENT,
            "tags": [trace.feature],
            "bookmarked": False,
            "release": APP_VERSION,
            "version": None,
            "userId": trace.user_id,
            "sessionId": trace.session_id,
            "public": False,
            "input": trace.question,
            "output": trace.answer,
            "metadata": {"feature": trace.feature, "endpoint": trace.endpoint, "app": APP},
            "createdAt": iso_z_ms(root.start_ns + NS),
            "updatedAt": iso_z_ms(end + 3 * NS),
            "latency": round((end - root.start_ns) / NS, 3),
        },
        "observations": [langfuse_observation(trace, s) for s in trace.spans],
    }


# ---------------------------------------------------------------------------------------------------------
# LangSmith


LANGSMITH_RUN_TYPE = {"llm": "llm", "embedding": "embedding", "retrieval": "retriever", "rerank": "chain",
                      "tool": "tool", "chain": "chain"}


def _dotted_segment(span: Span) -> str:
    return f"{_dt(span.start_ns):%Y%m%dT%H%M%S%f}Z{span.span_id}"


def _langsmith_documents(docs: list[RetrievedDoc] | None, score_key: str) -> list[dict[str, Any]]:
    return [{"id": d.doc_id, "page_content": d.text, "metadata": {score_key: d.score, "source": KB_DATA_SOURCE},
             "type": "Document"} for d in docs or []]


def _langsmith_io(trace: Trace, span: Span) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(inputs, outputs) of a run; outputs is None for a failed run."""
    if span.kind == "llm":
        inputs = {"messages": span.messages, "model": span.model.name, "temperature": span.temperature,
                  "top_p": span.top_p, "max_tokens": span.max_tokens, "stream": span.stream}
        if span.status == "error":
            return inputs, None
        usage: dict[str, Any] = {"input_tokens": span.input_tokens, "output_tokens": span.output_tokens,
                                 "total_tokens": (span.input_tokens or 0) + (span.output_tokens or 0)}
        if span.cached_tokens:
            usage["input_token_details"] = {"cache_read": span.cached_tokens}
        if span.reasoning_tokens:
            usage["output_token_details"] = {"reasoning": span.reasoning_tokens}
        outputs = {"id": span.response_id, "object": "chat.completion", "model": _response_model(span),
                   "choices": [{"index": 0, "finish_reason": span.finish_reason, "message": _output_message(span)}],
                   "usage_metadata": usage}
        return inputs, outputs
    if span.kind == "embedding":
        return ({"input": [span.query], "model": span.model.name},
                {"usage_metadata": {"input_tokens": span.input_tokens, "output_tokens": 0,
                                    "total_tokens": span.input_tokens}})
    if span.kind == "retrieval":
        return {"query": span.query}, {"documents": _langsmith_documents(span.documents, "score")}
    if span.kind == "rerank":
        return ({"query": span.query, "documents": _langsmith_documents(span.input_documents, "score")},
                {"documents": _langsmith_documents(span.documents, "relevance_score")})
    if span.kind == "tool":
        return dict(span.tool_arguments or {}), {"output": span.tool_result}
    return {"question": span.input_value}, (None if span.status == "error" else {"answer": span.output_value})


def _langsmith_extra(trace: Trace, span: Span) -> dict[str, Any]:
    meta = app_metadata(trace, span)
    if span.kind == "llm":
        meta.update({"ls_provider": span.model.provider, "ls_model_name": span.model.name,
                     "ls_model_type": "chat", "ls_temperature": span.temperature,
                     "ls_max_tokens": span.max_tokens})
    elif span.kind == "embedding":
        meta.update({"ls_provider": "openai", "ls_model_name": span.model.name})
    elif span.kind == "rerank":
        meta.update({"ls_provider": "cohere", "ls_model_name": RERANK_MODEL})
    return {"metadata": meta, "runtime": LANGSMITH_RUNTIME}


def langsmith_js_sdk(trace: Trace) -> bool:
    """Whether this trace was sent by the LangSmith JS SDK (about one in three LangSmith traces)."""
    return _stable_bucket(f"{trace.trace_id}/js", 3) == 0


def langsmith_runs(trace: Trace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(posts, patches) for one trace: run creation with inputs, then completion with outputs.

    A JS SDK trace's patches are RunTree.patchRun's RunUpdate: no `id` (its run is found by `dotted_order`),
    and `new_token` events without their token (Client._filterNewTokenEvents)."""
    js = langsmith_js_sdk(trace)
    dotted: dict[str, str] = {}
    posts, patches = [], []
    for span in trace.spans:
        order = _dotted_segment(span)
        if span.parent_id is not None:
            order = f"{dotted[span.parent_id]}.{order}"
        dotted[span.span_id] = order
        inputs, outputs = _langsmith_io(trace, span)
        extra = _langsmith_extra(trace, span)
        if js:
            extra = {**extra, "runtime": LANGSMITH_JS_RUNTIME}
        post: dict[str, Any] = {
            "id": span.span_id,
            "trace_id": trace.trace_id,
            "dotted_order": order,
            "name": span.name,
            "run_type": LANGSMITH_RUN_TYPE[span.kind],
            "start_time": iso_offset_us(span.start_ns),
            "inputs": inputs,
            "extra": extra,
            "serialized": {"name": span.name},
            "events": [],
            "tags": [trace.feature],
            "session_name": APP,
        }
        if span.parent_id is not None:
            post["parent_run_id"] = span.parent_id
        posts.append(post)
        events = [{"name": "start", "time": iso_offset_us(span.start_ns)}]
        if span.kind == "llm" and span.ttft_ms is not None:
            first = span.start_ns + int(span.ttft_ms * MS)
            step = max((span.end_ns - first) // 20, MS)
            events += [{"name": "new_token", "time": iso_offset_us(first + i * step)}
                       | ({} if js else {"kwargs": {"token": tok}})
                       for i, tok in enumerate(_first_tokens(span.output_text))]
        events.append({"name": "error" if span.status == "error" else "end", "time": iso_offset_us(span.end_ns)})
        patch: dict[str, Any] = {
            "id": span.span_id,
            "name": span.name,
            "trace_id": trace.trace_id,
            "parent_run_id": span.parent_id,
            "dotted_order": order,
            "tags": [trace.feature],
            "extra": extra,
            "end_time": iso_offset_us(span.end_ns),
            "outputs": outputs,
            "events": events,
        }
        if span.status == "error":
            patch["error"] = f"{span.error_type}({span.error_message!r})"
        if js:
            del patch["id"]
        patches.append(patch)
    return posts, patches


def langsmith_split_patches(trace: Trace) -> bool:
    """Whether this trace's patches go to the hour's separate patch file (about one trace in four)."""
    return _stable_bucket(trace.trace_id, 4) == 0


def encode_langsmith(traces: list[Trace]) -> tuple[bytes, bytes]:
    """(main file, patch file): one {post, patch} payload per trace; split traces send patches apart."""
    main, separate = [], []
    for trace in traces:
        posts, patches = langsmith_runs(trace)
        if langsmith_split_patches(trace):
            main.append(dumps({"post": posts, "patch": []}) + b"\n")
            separate.append(dumps({"post": [], "patch": patches}) + b"\n")
        else:
            main.append(dumps({"post": posts, "patch": patches}) + b"\n")
    return b"".join(main), b"".join(separate)


# ---------------------------------------------------------------------------------------------------------
# Files of an hour.


def hour_stamp(hour: datetime) -> str:
    """The hour in file names: 20240524T13."""
    return f"{hour:%Y%m%dT%H}"


def gzipped(fmt: str, hour: datetime) -> bool:
    """Whether this format's file of this hour is gzip-compressed (every format in some hours)."""
    return (hour.hour + FORMATS.index(fmt)) % 3 == 0


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: no file name, mtime 0."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _named(name: str, data: bytes, compress: bool) -> tuple[str, bytes]:
    return (f"{name}.gz", gzip_bytes(data)) if compress else (name, data)


ENCODERS: dict[str, Callable[[list[Trace]], bytes]] = {
    "native": encode_native,
    "otlp": encode_otlp,
    "openinference": encode_openinference,
}


def encode_hour(hour_traces: HourTraces, formats: tuple[str, ...]) -> dict[str, bytes]:
    """File name -> bytes for every landing file of the hour (spans of a trace stay in one file)."""
    hour = hour_traces.hour
    stamp = hour_stamp(hour)
    by_format: dict[str, list[Trace]] = {f: [] for f in formats}
    for trace in hour_traces.traces:
        by_format[trace.fmt].append(trace)
    files: dict[str, bytes] = {}
    for fmt in formats:
        traces = by_format[fmt]
        if not traces:
            continue
        compress = gzipped(fmt, hour)
        if fmt in ENCODERS:
            ext = "json" if fmt == "openinference" else "jsonl"
            name, data = _named(f"{fmt}-{stamp}.{ext}", ENCODERS[fmt](traces), compress)
            files[name] = data
        elif fmt == "langfuse":
            # Some hours also carry a single trace exported on its own, as a pretty-printed JSON document.
            if hour.hour % 6 == 0 and len(traces) > 1:
                single, traces = traces[0], traces[1:]
                files[f"langfuse-trace-{single.trace_id}.json"] = orjson.dumps(
                    langfuse_document(single), option=orjson.OPT_INDENT_2) + b"\n"
            data = b"".join(dumps(langfuse_document(t)) + b"\n" for t in traces)
            name, data = _named(f"langfuse-{stamp}.jsonl", data, compress)
            files[name] = data
        elif fmt == "langsmith":
            main, separate = encode_langsmith(traces)
            name, data = _named(f"langsmith-{stamp}.jsonl", main, compress)
            files[name] = data
            if separate:
                files[f"langsmith-patches-{stamp}.jsonl"] = separate
    return files


GENERATED_PREFIXES = tuple(f"{f}-" for f in FORMATS) + ("zz-injected-",)


def is_generated_name(name: str) -> bool:
    """True for file names this module writes (so a re-run replaces them and nothing else)."""
    return name.startswith(GENERATED_PREFIXES)
