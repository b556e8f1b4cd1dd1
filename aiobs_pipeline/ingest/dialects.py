"""Attribute dialects of the instrumentation libraries, as tables the OTLP reader applies.

Each library writes its own attributes into OTLP spans besides (or instead of) the OpenTelemetry GenAI
conventions. The OTLP reader (`otlp.build_row`) maps, in this order of precedence: application attributes
(`openinference.map_common`, whose user/session keys include the libraries' own), Langfuse
(`map_langfuse`, spans with `langfuse.observation.type`), OpenInference, Logfire's `request_data` /
`response_data` (`map_logfire`) and the GenAI conventions with the older and vendor names listed here
(`GENAI_EXTRA`). docs/formats.md ("Instrumentation libraries") prints these tables.

Tables are `canonical column <- attribute keys`, first present wins. Everything a table does not consume
stays in the row's metadata, except values that grow with the data and that nobody reads (embedding
vectors, per-chunk stream events): those are dropped and their count kept (`bound_metadata`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from aiobs_pipeline.ingest.base import as_str, parse_time
from aiobs_pipeline.ingest.langfuse import KIND_BY_TYPE, usage_detail_columns
from aiobs_pipeline.ingest.messages import (
    is_count,
    parse_json,
    reply_text,
    to_documents,
    to_messages,
    to_number,
)
from aiobs_pipeline.ingest.native import METADATA

# ---------------------------------------------------------------------------------------------------------
# GenAI attribute names beyond the current conventions: older generations and vendor extensions, appended
# after the current names of `otlp.GENAI` (so a current name always wins).
GENAI_EXTRA: dict[str, tuple[str, ...]] = {
    # OpenLLMetry before it moved to gen_ai.usage.* (traceloop-sdk < 0.34: llm.usage.prompt_tokens, ...).
    "input_tokens": ("llm.usage.prompt_tokens", "llm.usage.input_tokens"),
    "output_tokens": ("llm.usage.completion_tokens", "llm.usage.output_tokens"),
    "cached_input_tokens": (
        "llm.usage.cache_read_input_tokens",
        # OpenLIT: the OpenAI usage breakdown, flattened.
        "gen_ai.usage.prompt_tokens_details.cached_tokens",
    ),
    "cache_write_tokens": (
        "llm.usage.cache_creation_input_tokens",
        "gen_ai.usage.prompt_tokens_details.cache_creation_tokens",
    ),
    "reasoning_tokens": (
        "llm.usage.reasoning_tokens",
        "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    ),
}
# Time to first token in seconds (converted to ms): the conventions' name, then OpenLIT's.
TTFT_SECONDS = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
# Columns the request's own `user` field fills only when no explicit user attribute is present (an explicit
# user set by the application beats the `user` string the app passed to the provider).
REQUEST_USER = ("gen_ai.request.user", "gen_ai.user", "llm.user")

# ---------------------------------------------------------------------------------------------------------
# An OpenAI-style usage object (`usage` of a response, Logfire's `gen_ai.usage.raw` and
# `response_data.usage`), dotted keys into the object.
USAGE_OBJECT: dict[str, tuple[str, ...]] = {
    "input_tokens": ("prompt_tokens", "input_tokens"),
    "output_tokens": ("completion_tokens", "output_tokens"),
    "total_tokens": ("total_tokens",),
    "cached_input_tokens": ("prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens"),
    "reasoning_tokens": ("completion_tokens_details.reasoning_tokens", "output_tokens_details.reasoning_tokens"),
}
# canonical column <- key of a request-parameters object (Langfuse model.parameters, Logfire request_data).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "max_tokens": ("max_tokens", "max_completion_tokens", "max_output_tokens"),
}


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def usage_columns(usage: Any) -> dict[str, Any]:
    """Token columns from an OpenAI-style usage object (`USAGE_OBJECT`); {} when it is not one."""
    usage = parse_json(usage)
    if not isinstance(usage, dict):
        return {}
    out = {}
    for column, keys in USAGE_OBJECT.items():
        value = next((v for v in (_dig(usage, k) for k in keys) if v is not None), None)
        if value is not None:
            out[column] = to_number(value)
    return out


def loads_lenient(value: Any) -> Any:
    """Parse JSON text, also Python's `Infinity`/`NaN` (json.dumps writes them; orjson refuses them)."""
    parsed = parse_json(value)
    if isinstance(value, str) and parsed is value and value[:1] in ("{", "[", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return parsed


def _unlimited(value: Any) -> bool:
    """Infinity or NaN, as a float or as the text json/EventSerializer write for it: no value was set."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, str) and value.strip() in ("Infinity", "-Infinity", "inf", "-inf", "NaN", "nan")


def parameter_columns(params: Any) -> dict[str, Any]:
    """temperature / top_p / max_tokens and the rest as request_params, from a parameters object."""
    if not isinstance(params, dict):
        return {}
    rest = dict(params)
    out: dict[str, Any] = {}
    for column, keys in PARAMETERS.items():
        key = next((k for k in keys if rest.get(k) is not None), None)
        if key is not None:
            value = rest.pop(key)
            # Langfuse's OpenAI wrapper writes max_tokens = inf ("Infinity") when the call set none: no limit.
            out[column] = None if _unlimited(value) else to_number(value)
    rest = {k: v for k, v in rest.items() if v is not None and not _unlimited(v)}
    if rest:
        out["request_params"] = rest
    return out


def embedding_inputs(value: Any) -> list[dict[str, Any]] | None:
    """An embedding call's input texts as user messages (the GenAI shape); None for token ids or other values."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return None
    return [{"role": "user", "content": text} for text in texts]


# ---------------------------------------------------------------------------------------------------------
# Langfuse SDK v3+ (OpenTelemetry-based): `langfuse.observation.*` on every span it creates.
LANGFUSE_TYPE = "langfuse.observation.type"
LANGFUSE = {
    "model": ("langfuse.observation.model.name",),
    "usage": ("langfuse.observation.usage_details",),
    "cost": ("langfuse.observation.cost_details",),
    "input": ("langfuse.observation.input",),
    "output": ("langfuse.observation.output",),
    "parameters": ("langfuse.observation.model.parameters",),
    "completion_start": ("langfuse.observation.completion_start_time",),
    "prompt_name": ("langfuse.observation.prompt.name",),
    "prompt_version": ("langfuse.observation.prompt.version",),
    "status_message": ("langfuse.observation.status_message",),
}
# Observation types whose output is documents.
LANGFUSE_DOCUMENT_KINDS = ("retrieval",)


def is_langfuse(attributes: dict[str, Any]) -> bool:
    """True when the span was written by the Langfuse SDK (it carries `langfuse.observation.type`)."""
    return isinstance(attributes.get(LANGFUSE_TYPE), str)


def _take(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if attrs.get(key) is not None:
            return attrs.pop(key)
    return None


def langfuse_cost(cost: Any) -> Any:
    """cost_details.total, else the sum of its parts (Langfuse's own rule); None when absent."""
    cost = loads_lenient(cost)
    if not isinstance(cost, dict) or not cost:
        return to_number(cost) if cost is not None and not isinstance(cost, dict) else None
    if cost.get("total") is not None:
        return to_number(cost["total"])
    parts = [to_number(v) for v in cost.values() if v is not None]
    return sum(parts) if parts and all(is_count(p) for p in parts) else None


# Application columns from the metadata the app gave Langfuse (observation first, then trace), by the keys of
# the native format's metadata (`native.METADATA`: user_id, feature, endpoint, prompt_version, ...).
LANGFUSE_METADATA_PREFIXES = ("langfuse.observation.metadata.", "langfuse.trace.metadata.")


def map_langfuse(attributes: dict[str, Any], start: Any, known: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map Langfuse observation attributes to canonical fields; return (fields, attributes left).

    `known` holds the columns application attributes already set (they win over the same metadata keys; a
    metadata value that differs from them stays in metadata).
    """
    attrs = dict(attributes)
    observation_type = str(attrs.get(LANGFUSE_TYPE) or "").upper()
    kind = KIND_BY_TYPE.get(observation_type, "chain")
    values = {name: _take(attrs, keys) for name, keys in LANGFUSE.items()}
    fields: dict[str, Any] = {"kind": kind, "request_model": values["model"],
                              "prompt_name": values["prompt_name"],
                              "prompt_version": None if values["prompt_version"] is None
                              else str(values["prompt_version"])}
    usage = loads_lenient(values["usage"])
    if isinstance(usage, dict) and usage:
        fields.update(usage_detail_columns(usage))
    elif values["usage"] is not None:
        attrs["langfuse.observation.usage_details"] = values["usage"]
    fields["reported_cost_usd"] = langfuse_cost(values["cost"])
    fields.update(parameter_columns(loads_lenient(values["parameters"])))
    inputs, outputs = loads_lenient(values["input"]), loads_lenient(values["output"])
    messages = embedding_inputs(inputs) if kind == "embedding" else to_messages(inputs)
    if messages is None and isinstance(inputs, str) and kind == "llm":
        messages = [{"role": "user", "content": inputs}]
    if messages is not None:
        fields["input_messages"] = messages
    elif inputs is not None:
        attrs["langfuse.observation.input"] = inputs  # an embedding's texts, a tool's arguments, ...
    documents = to_documents(outputs) if kind in LANGFUSE_DOCUMENT_KINDS else None
    out_messages = None if documents is not None else to_messages(outputs)
    if documents is not None:
        fields["documents"] = documents
    elif out_messages is not None:
        fields["output_messages"] = out_messages
        fields["output_text"] = reply_text(out_messages)
    elif isinstance(outputs, str):
        fields["output_text"] = outputs
        if kind == "llm":
            fields["output_messages"] = [{"role": "assistant", "content": outputs}]
    elif outputs is not None:
        attrs["langfuse.observation.output"] = outputs  # an embedding's {dimensions, count}, ...
    first = _time(loads_lenient(values["completion_start"]))
    if isinstance(first, datetime) and isinstance(start, datetime) and first >= start:
        fields["time_to_first_token_ms"] = (first - start).total_seconds() * 1000.0
    elif values["completion_start"] is not None:
        attrs["langfuse.observation.completion_start_time"] = values["completion_start"]
    if values["status_message"] is not None:
        fields["error_message"] = values["status_message"]
    for column, key in METADATA.items():
        for prefix in LANGFUSE_METADATA_PREFIXES:
            value = attrs.get(prefix + key)
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                continue
            if (known or {}).get(column) in (None, as_str(value)) and fields.get(column) in (None, as_str(value)):
                fields[column] = as_str(value)
                del attrs[prefix + key]
    return fields, attrs


def _time(value: Any) -> Any:
    try:
        return parse_time(value) if isinstance(value, str | int | float) else None
    except (ValueError, TypeError, OverflowError, OSError):
        return None


# ---------------------------------------------------------------------------------------------------------
# Pydantic Logfire: its OpenAI instrumentation (semconv version 1, the default) writes the whole request as
# `request_data` and the response as `response_data` (JSON), besides the GenAI attributes it also writes.
LOGFIRE_SPAN_TYPE = "logfire.span_type"
LOGFIRE_TEMPLATE = "logfire.msg_template"
# The log-span Logfire writes when a streamed response has been read (same parent as the request span).
LOGFIRE_STREAM_TEMPLATE = "streaming response from"
# logfire.msg_template prefix -> kind, for versions that write no gen_ai.operation.name.
LOGFIRE_KINDS = {
    "Chat Completion with": "llm",
    "Completion with": "llm",
    "Responses API with": "llm",
    "streaming response from": "llm",
    "Embedding Creation with": "embedding",
    "Message with": "llm",  # Anthropic
}
LOGFIRE = {
    "request": ("request_data",),
    "response": ("response_data",),
    "usage_raw": ("gen_ai.usage.raw",),
    # Responses API (version 1): the conversation as OTel-style event dicts {event.name, role, content, ...},
    # the answer's appended with role assistant once the response is in.
    "events": ("events",),
}


def is_logfire(attributes: dict[str, Any]) -> bool:
    """True when the span carries Logfire's message template (every span Logfire writes does)."""
    return isinstance(attributes.get(LOGFIRE_TEMPLATE), str)


def logfire_kind(attributes: dict[str, Any]) -> str | None:
    """Kind from Logfire's message template, for spans of its LLM integrations."""
    template = attributes.get(LOGFIRE_TEMPLATE)
    if not isinstance(template, str) or not any(k in attributes for k in ("request_data", "response_data")):
        return None
    return next((kind for prefix, kind in LOGFIRE_KINDS.items() if template.startswith(prefix)), None)


def map_logfire(attributes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map Logfire's request_data / response_data / gen_ai.usage.raw; return (fields, attributes left)."""
    attrs = dict(attributes)
    fields: dict[str, Any] = {"kind": logfire_kind(attrs)}
    request = loads_lenient(_take(attrs, LOGFIRE["request"]))
    response = loads_lenient(_take(attrs, LOGFIRE["response"]))
    raw_usage = loads_lenient(_take(attrs, LOGFIRE["usage_raw"]))
    if isinstance(request, dict):
        rest = dict(request)
        fields["request_model"] = rest.pop("model", None)
        messages = rest.pop("messages", None)
        fields["input_messages"] = to_messages(messages, "user") if messages is not None else None
        if fields["input_messages"] is None and messages is not None:
            rest["messages"] = messages
        embed_input = rest.pop("input", None)
        if fields["input_messages"] is None and fields["kind"] == "embedding":
            fields["input_messages"] = embedding_inputs(embed_input)
        if embed_input is not None and fields["input_messages"] is None:
            attrs["request_data.input"] = embed_input  # token ids, a Responses API input, ...
        fields.update(parameter_columns(rest))
    elif request is not None:
        attrs["request_data"] = request
    usage: dict[str, Any] = usage_columns(raw_usage)
    if isinstance(response, dict):
        rest = dict(response)
        for column, value in usage_columns(rest.pop("usage", None)).items():
            usage.setdefault(column, value)
        message = rest.pop("message", None)
        if isinstance(message, dict):
            fields["output_messages"] = to_messages(message, "assistant")
        elif isinstance(rest.get("text"), str):
            fields["output_messages"] = [{"role": "assistant", "content": rest.pop("text")}]
        elif isinstance(rest.get("combined_chunk_content"), str):
            fields["output_messages"] = [{"role": "assistant", "content": rest.pop("combined_chunk_content")}]
        fields["output_text"] = reply_text(fields.get("output_messages"))
        rest = {k: v for k, v in rest.items() if v is not None}
        if rest:
            attrs["response_data"] = rest
    elif response is not None:
        attrs["response_data"] = response
    fields.update(usage)
    events = loads_lenient(_take(attrs, LOGFIRE["events"]))
    inputs, outputs = _logfire_events(events)
    if inputs is None and outputs is None:
        if events is not None:
            attrs["events"] = events
    else:
        fields["input_messages"] = fields.get("input_messages") or inputs
        if outputs and not fields.get("output_messages"):
            fields["output_messages"] = outputs
            fields["output_text"] = reply_text(outputs)
    return fields, attrs


def _logfire_events(events: Any) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """(input, output) messages from Logfire's `events` list; the trailing assistant messages are the answer."""
    if not isinstance(events, list) or not events or not all(
            isinstance(e, dict) and str(e.get("event.name", "")).startswith("gen_ai.") for e in events):
        return None, None
    messages = to_messages([{k: v for k, v in e.items() if k != "event.name"} for e in events], "user") or []
    split = len(messages)
    while split and messages[split - 1].get("role") == "assistant":
        split -= 1
    return messages[:split] or None, messages[split:] or None


# ---------------------------------------------------------------------------------------------------------
# Bounded metadata: values that grow with the data are dropped, their size kept.
# Span events emitted once per streamed chunk (the first still gives the time to first token).
CHUNK_EVENTS = frozenset({"llm.content.completion.chunk", "gen_ai.content.completion.chunk"})
# Attribute keys (after OpenInference flattening) holding an embedding vector: `embedding.embeddings.N.`
# + one of these.
VECTOR_SUFFIXES = ("embedding.vector",)
# Keys inside a JSON response (OpenInference `output.value`, ...) that hold vectors.
VECTOR_FIELDS = ("embedding",)


def drop_chunk_events(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Events without the per-chunk stream events, and how many were dropped."""
    kept = [e for e in events if e.get("name") not in CHUNK_EVENTS]
    return kept, len(events) - len(kept)


def _is_vector(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_count(v) for v in value)


def drop_vectors(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """Remove embedding vectors from metadata in place; return {count, dimensions} when any were found."""
    dimensions: set[int] = set()
    # The same vectors are often kept twice (OpenInference: attributes and the response JSON): the count is
    # the larger of the two, not their sum.
    count = keyed = 0
    for key in list(metadata):
        value = metadata[key]
        if key.startswith("embedding.embeddings.") and key.endswith(VECTOR_SUFFIXES):
            del metadata[key]
            keyed += 1
            if _is_vector(value):
                dimensions.add(len(value))
            continue
        parsed = parse_json(value)
        if isinstance(parsed, dict) and isinstance(parsed.get("data"), list):
            items = [d for d in parsed["data"] if isinstance(d, dict)]
            found = [d for d in items if any(f in d for f in VECTOR_FIELDS)]
            if found:
                for item in found:
                    for name in VECTOR_FIELDS:
                        vector = item.pop(name, None)
                        if _is_vector(vector):
                            dimensions.add(len(vector))
                # The response without its vectors: model, usage, object, index.
                metadata[key] = parsed
                count = max(count, len(found))
    count = max(count, keyed)
    if not count:
        return None
    return {"count": count, "dimensions": sorted(dimensions)[0] if len(dimensions) == 1 else sorted(dimensions)}
