"""OpenInference attributes (Arize Phoenix semantic conventions) and the reader for Phoenix span exports.

Two things live here:
- `map_openinference(attributes)`: the one mapping of OpenInference span attributes (`openinference.span.kind`,
  `llm.*`, `retrieval.documents.*`, `reranker.*`, `embedding.*`, `input.value`, ...) to canonical columns. The
  OTLP reader calls it for spans that carry OpenInference attributes; the Phoenix reader below calls it for
  every span. Attributes may come flat and indexed (`llm.input_messages.0.message.role`, as OTLP carries
  them and Phoenix's REST API returns them), semi-flat (`"llm.input_messages": [{"message.role": ...}]`, as
  the OpenInference spec examples show them) or fully nested (`{"llm": {"input_messages": [...]}}`, as
  Phoenix stores them): all three are flattened to the first form before mapping.
- the reader for Phoenix span exports (`FORMAT = "openinference"`): a JSON array or JSON Lines of Phoenix spans
  `{id?, name, context{trace_id, span_id}, span_kind, parent_id, start_time, end_time, status_code,
  status_message, attributes, events}`, the REST response `{"data": [spans], "next_cursor": ...}`, and the
  records of a spans DataFrame written with `to_json(orient="records")` (`context.span_id`, `attributes.*`).

Application-level attributes shared by OTLP and Phoenix spans (`user.id`, `session.id`, `aiobs.*`, service
and environment) are mapped by `map_common`; the same columns are also read from the spec's `metadata`
attribute (a JSON object) when no attribute set them. `map_common` lives here because the OTLP reader
imports this module (so the dependency points one way only; the Phoenix reader imports `otlp` lazily for the
shared row assembly). Messages and documents take the shape every reader shares (`messages.py`).

Token counts: OpenInference's `llm.token_count.prompt` already includes cache reads and writes (the
Anthropic instrumentation adds them, Arize-ai/openinference PRs #1429 and #3734) and
`llm.token_count.completion` includes reasoning tokens (OpenAI's completion_tokens do), which is the
canonical rule, so counts are taken as reported; `otlp.build_row` repairs counts that visibly break it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from aiobs_pipeline.ingest.base import RawRecord, Reject, SpanRow, as_str, parse_time
from aiobs_pipeline.ingest.messages import (
    chat_message,
    content_text,
    dump_json,
    parse_json,
    reply_text,
    to_number,
)
from aiobs_pipeline.ingest.native import METADATA

FORMAT = "openinference"

# OpenInference span kind -> canonical kind; anything else (DECISION, PROMPT, future kinds) is a chain.
SPAN_KINDS = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
    "TOOL": "tool",
    "CHAIN": "chain",
    "AGENT": "chain",
    "GUARDRAIL": "chain",
    "EVALUATOR": "chain",
    "PROMPT": "chain",
}
# Top-level key segments that belong to OpenInference; only these are flattened and mapped.
NAMESPACES = frozenset({
    "openinference", "llm", "input", "output", "retrieval", "reranker", "embedding", "tool", "tool_call",
    "metadata", "tag", "agent", "graph", "prompt",
})
# canonical column <- OpenInference attribute, first present wins (flat keys).
TOKENS = {
    "input_tokens": ("llm.token_count.prompt",),
    "output_tokens": ("llm.token_count.completion",),
    "total_tokens": ("llm.token_count.total",),
    "cached_input_tokens": ("llm.token_count.prompt_details.cache_read",
                            "llm.token_count.prompt_details.cache_input"),
    "cache_write_tokens": ("llm.token_count.prompt_details.cache_write",),
    "reasoning_tokens": ("llm.token_count.completion_details.reasoning",),
}
MODELS = {
    "request_model": ("llm.request.model_name",),
    # llm.model_name is what instrumentations read from the response (the dated snapshot) when there is one.
    "response_model": ("llm.response.model_name", "llm.model_name", "embedding.model_name", "reranker.model_name"),
    "provider": ("llm.provider", "llm.system"),
    "prompt_version": ("llm.prompt_template.version",),
    "prompt_name": ("prompt.id",),
}
# canonical column <- key of the JSON object in llm.invocation_parameters; the rest becomes request_params.
INVOCATION = {
    "temperature": ("temperature",),
    "top_p": ("top_p", "topP"),
    "max_tokens": ("max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens", "maxTokens"),
}
# Application-level attributes (span first, then resource), canonical column <- keys, first present wins.
# The instrumentation libraries' own names come after the OpenTelemetry ones: OpenLLMetry's association
# properties, Logfire's baggage (written onto spans under the baggage key), OpenLIT's, Langfuse's environment.
COMMON_SPAN = {
    "user_id": ("user.id", "enduser.id", "traceloop.association.properties.user_id", "user_id",
                "gen_ai.user.id", "langfuse.user.id"),
    "session_id": ("session.id", "gen_ai.conversation.id", "traceloop.association.properties.session_id",
                   "session_id", "gen_ai.session.id", "langfuse.session.id"),
    "feature": ("aiobs.feature",),
    "endpoint": ("aiobs.endpoint",),
    "prompt_name": ("aiobs.prompt.name", "gen_ai.prompt.name"),
    "prompt_version": ("aiobs.prompt.version",),
    "environment": ("deployment.environment.name", "deployment.environment", "langfuse.environment"),
    "app": ("service.name",),
}
# Fallbacks read but not consumed: http.route names the route only on the server span that carries it.
COMMON_FALLBACK = {"endpoint": ("http.route",)}
# Read (and consumed) only when no COMMON_SPAN key gave the column: the `user` field of the provider request
# (OpenLIT gen_ai.request.user, OpenLLMetry gen_ai.user, older llm.user) is what the app told the provider,
# weaker than the user it set explicitly; when both are present the request's stays in metadata.
COMMON_LOW = {"user_id": ("gen_ai.request.user", "gen_ai.user", "llm.user")}
FIRST_TOKEN_EVENTS = frozenset({
    "First Token Stream Event",  # OpenInference instrumentations
    "llm.content.completion.chunk",  # OpenLLMetry, once per chunk: the first one is the first token
    "gen_ai.content.completion.chunk",
})
_HEX = re.compile(r"^[0-9a-fA-F]+$")


# ---------------------------------------------------------------------------------------------------------
# Generic helpers for attribute maps, shared with the OTLP reader.


def flatten(prefix: str, value: Any, lists: bool = True) -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, leaf value) pairs, descending into dicts and (if `lists`) lists that hold dicts."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten(f"{prefix}.{key}" if prefix else str(key), item, lists)
    elif lists and isinstance(value, list) and value and any(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from flatten(f"{prefix}.{index}", item, lists)
    else:
        yield prefix, value


def indexed(flat: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Group `prefix.N.rest` keys into a list of {rest: value} dicts ordered by N (gaps are skipped)."""
    head = prefix + "."
    groups: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if not key.startswith(head):
            continue
        index, _, rest = key[len(head):].partition(".")
        if index.isdigit() and rest:
            groups.setdefault(int(index), {})[rest] = value
    return [groups[i] for i in sorted(groups)]


def has_indexed(flat: dict[str, Any], prefix: str) -> bool:
    """True when some key has the form `prefix.N...`."""
    head = prefix + "."
    return any(k.startswith(head) and k[len(head):].split(".", 1)[0].isdigit() for k in flat)


def subtree(flat: dict[str, Any], prefix: str) -> Any:
    """The value at `prefix`, or the nested dict rebuilt from `prefix.*` keys, or None; JSON text is parsed."""
    if prefix in flat:
        return parse_json(flat[prefix])
    head = prefix + "."
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith(head):
            node = out
            *parents, leaf = key[len(head):].split(".")
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[leaf] = value
    return out or None


def subtree_keys(flat: dict[str, Any], prefix: str) -> list[str]:
    """The keys `subtree(flat, prefix)` read: `prefix` itself when present, else every `prefix.*` key."""
    if prefix in flat:
        return [prefix]
    return [k for k in flat if k.startswith(prefix + ".")]


def normalise_id(value: Any) -> Any:
    """Strip an id and lowercase it when it is hex; non-strings are returned as is for the row rules."""
    value = as_str(value)
    if isinstance(value, str):
        value = value.strip() or None
        if value is not None and _HEX.match(value):
            value = value.lower()
    return value


def canonical_kind(value: Any) -> str | None:
    """Canonical kind of an OpenInference span kind; None when absent or UNKNOWN, so other hints may decide."""
    if not isinstance(value, str) or not value.strip() or value.strip().upper() == "UNKNOWN":
        return None
    return SPAN_KINDS.get(value.strip().upper(), "chain")


def first_token_time(events: list[dict[str, Any]]) -> Any:
    """Time of the first streamed-token event, or None."""
    times = [e["time"] for e in events if e.get("name") in FIRST_TOKEN_EVENTS and isinstance(e.get("time"), datetime)]
    return min(times) if times else None


def exception_message(events: list[dict[str, Any]]) -> str | None:
    """'Type: message' of the first exception event (OpenTelemetry exception semantic conventions)."""
    for event in events:
        if event.get("name") != "exception":
            continue
        attrs = event.get("attributes") or {}
        kind, message = attrs.get("exception.type"), attrs.get("exception.message")
        if kind and message:
            return f"{kind}: {message}"
        if message or kind:
            return str(message or kind)
    return None


def take(flat: dict[str, Any], used: set[str], *keys: str) -> Any:
    """Return the first present non-null value among keys and mark that key as used."""
    for key in keys:
        value = flat.get(key)
        if value is not None:
            used.add(key)
            return value
    return None


# ---------------------------------------------------------------------------------------------------------
# The OpenInference mapping.


def is_openinference(attributes: dict[str, Any]) -> bool:
    """True when attributes carry OpenInference keys (`openinference.span.kind` or any `llm.*`)."""
    return any(k == "openinference.span.kind" or k == "llm" or k.startswith("llm.") for k in attributes)


def map_openinference(attributes: dict[str, Any], known: dict[str, Any] | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map OpenInference attributes to canonical fields; return (fields, attributes left unmapped).

    Keys outside the OpenInference namespaces pass through untouched. Unmapped OpenInference keys come back
    flattened (dotted, indexed). `openinference.span.kind` is mapped and also kept, because the canonical
    kind is coarser (AGENT -> chain). `known` holds the columns already mapped from application attributes
    (`map_common`), which win over the same keys in the `metadata` attribute.
    """
    flat: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.split(".", 1)[0] in NAMESPACES:
            flat.update(flatten(key, value))
        else:
            rest[key] = value
    used: set[str] = set()
    fields: dict[str, Any] = {"kind": canonical_kind(flat.get("openinference.span.kind"))}
    for column, keys in MODELS.items():
        fields[column] = take(flat, used, *keys)
    for column, keys in TOKENS.items():
        fields[column] = to_number(take(flat, used, *keys))
    fields["reported_cost_usd"] = to_number(take(flat, used, "llm.cost.total"))
    _map_invocation(flat, used, fields)
    _map_messages(flat, used, fields)
    _map_documents(flat, used, fields)
    metadata = subtree(flat, "metadata")
    used.update(subtree_keys(flat, "metadata"))
    if isinstance(metadata, dict):
        metadata = _map_metadata(metadata, {**(known or {}), **{k: v for k, v in fields.items() if v is not None}},
                                 fields)
    leftover = {k: v for k, v in flat.items() if k not in used}
    if metadata not in (None, {}):
        leftover["metadata"] = metadata
    rest.update(leftover)
    return fields, rest


def _map_metadata(metadata: dict[str, Any], known: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Fill application columns (`native.METADATA`: user_id, feature, ...) from the `metadata` attribute.

    An attribute that already set the column wins; a metadata value equal to it is dropped as a repeat, a
    different one stays in the metadata map. Values that are not text or integers stay there too, so an odd
    metadata entry cannot get the span quarantined.
    """
    rest = dict(metadata)
    for column, key in METADATA.items():
        value = rest.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            continue
        if known.get(column) is None:
            fields[column] = as_str(value)
        elif known[column] != as_str(value):
            continue
        del rest[key]
    return rest


def _map_invocation(flat: dict[str, Any], used: set[str], fields: dict[str, Any]) -> None:
    for prefix in ("llm.invocation_parameters", "embedding.invocation_parameters"):
        params = subtree(flat, prefix)
        if params is None:
            continue
        if not isinstance(params, dict):
            return  # unparseable JSON text stays in metadata as it came
        used.update(subtree_keys(flat, prefix))
        params = dict(params)
        model = params.pop("model", None) or params.pop("model_name", None)
        if fields.get("request_model") is None and isinstance(model, str):
            fields["request_model"] = model
        for column, keys in INVOCATION.items():
            for key in keys:
                if params.get(key) is not None:
                    fields[column] = to_number(params.pop(key))
                    break
        # A null parameter was not set; dropping it keeps request_params to what the call actually sent.
        params = {k: v for k, v in params.items() if v is not None}
        fields["request_params"] = params or None
        return


def _map_messages(flat: dict[str, Any], used: set[str], fields: dict[str, Any]) -> None:
    for column, prefix in (("input_messages", "llm.input_messages"), ("output_messages", "llm.output_messages")):
        items = indexed(flat, prefix)
        if items:
            used.update(k for k in flat if k.startswith(prefix + "."))
            fields[column] = [_message(item) for item in items]
    texts = [e.get("embedding.text") for e in indexed(flat, "embedding.embeddings")]
    if fields.get("input_messages") is None and texts and all(isinstance(t, str) for t in texts):
        # An embedding call's inputs, as the GenAI conventions carry them: one user message per text.
        used.update(k for k in flat if k.startswith("embedding.embeddings.") and k.endswith(".embedding.text"))
        fields["input_messages"] = [{"role": "user", "content": t} for t in texts]
    prompts = indexed(flat, "llm.prompts")
    # Only OpenInference's {prompt.text}; OpenLLMetry's older llm.prompts.N.role/content is left to otlp.
    if fields.get("input_messages") is None and any("prompt.text" in p for p in prompts):
        used.update(k for k in flat if k.startswith("llm.prompts."))
        fields["input_messages"] = [{"role": "user", "content": content_text(p.get("prompt.text"))} for p in prompts]
    if fields.get("output_messages") is None and has_indexed(flat, "llm.choices"):
        used.update(k for k in flat if k.startswith("llm.choices."))
        fields["output_messages"] = [{"role": "assistant", "content": content_text(c.get("completion.text"))}
                                     for c in indexed(flat, "llm.choices")]
    text = reply_text(fields.get("output_messages"))
    if text is not None:
        fields["output_text"] = text
    elif fields.get("kind") == "llm" and isinstance(flat.get("output.value"), str) \
            and flat.get("output.mime_type") != "application/json":
        # An LLM span that records only output.value (no output messages): that text is the completion.
        fields["output_text"] = take(flat, used, "output.value")


def _message(item: dict[str, Any]) -> dict[str, Any]:
    """One OpenInference message ({message.role, message.content, ...}) as a canonical message dict."""
    # The flat attribute names are decoded into an OpenAI-style message; messages.py gives it the shape.
    source = {key.removeprefix("message."): value for key, value in item.items()
              if not key.startswith(("message.contents.", "message.tool_calls.", "message.function_call_"))}
    contents = [{k.removeprefix("message_content."): v for k, v in part.items()}
                for part in indexed(item, "message.contents")]
    if contents:
        if source.get("content") is None:
            source["content"] = content_text([c.get("text") for c in contents if c.get("type", "text") == "text"])
        source["reasoning"] = content_text([c.get("text") for c in contents if c.get("type") == "reasoning"])
        source["contents"] = contents
    source["tool_calls"] = [{"id": call.get("tool_call.id"), "name": call.get("tool_call.function.name"),
                             "arguments": call.get("tool_call.function.arguments")}
                            for call in indexed(item, "message.tool_calls")]
    if item.get("message.function_call_name") is not None:
        source["function_call"] = {"name": item["message.function_call_name"],
                                   "arguments": item.get("message.function_call_arguments_json")}
    return chat_message(source, item.get("message.role"))


def documents_from(flat: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenInference documents under `prefix` as canonical {id, score, text, rank, metadata?} dicts."""
    docs = []
    for rank, item in enumerate(indexed(flat, prefix), start=1):
        doc: dict[str, Any] = {
            "id": as_str(item.get("document.id")),
            "score": to_number(item.get("document.score")),
            "text": content_text(item.get("document.content")),
            "rank": rank,
        }
        metadata = subtree(item, "document.metadata")
        if metadata is not None:
            doc["metadata"] = metadata
        for key, value in item.items():
            if not key.startswith(("document.id", "document.score", "document.content", "document.metadata")):
                doc[key.removeprefix("document.")] = value
        docs.append(doc)
    return docs


def _map_documents(flat: dict[str, Any], used: set[str], fields: dict[str, Any]) -> None:
    # A reranker's result is its output documents; its input documents stay in metadata.
    order = ("reranker.output_documents", "retrieval.documents") if fields.get("kind") == "rerank" else (
        "retrieval.documents", "reranker.output_documents")
    for prefix in order:
        if has_indexed(flat, prefix):
            used.update(k for k in flat if k.startswith(prefix + "."))
            fields["documents"] = documents_from(flat, prefix)
            return


def map_common(attributes: dict[str, Any], resource: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Map application-level attributes (span first, then resource).

    Returns (fields, span attributes left, resource attributes left).
    """
    rest = dict(attributes)
    resource_rest = dict(resource)
    fields: dict[str, Any] = {}
    for column, keys in COMMON_SPAN.items():
        value = None
        for key in keys:
            if rest.get(key) is not None:
                value = rest.pop(key)
                break
        else:
            for key in keys:
                if resource_rest.get(key) is not None:
                    value = resource_rest.pop(key)
                    break
        fields[column] = as_str(value)
    for column, keys in COMMON_LOW.items():
        if fields.get(column) is None:
            key = next((k for k in keys if rest.get(k) not in (None, "")), None)
            fields[column] = as_str(rest.pop(key)) if key is not None else None
    for column, keys in COMMON_FALLBACK.items():
        if fields.get(column) is None:
            fields[column] = as_str(next((rest[k] for k in keys if rest.get(k) is not None), None))
    if isinstance(fields.get("app"), str) and fields["app"].startswith("unknown_service"):
        # The SDK's placeholder when the application set no service.name: not an app name, so kept as metadata.
        resource_rest["service.name"] = fields["app"]
        fields["app"] = None
    return fields, rest, resource_rest


# ---------------------------------------------------------------------------------------------------------
# The Phoenix span-export reader.


def _is_phoenix_span(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "context.span_id" in value:
        return "span_kind" in value or any(k.startswith("attributes.") for k in value)
    context = value.get("context")
    if not isinstance(context, dict) or "span_id" not in context:
        return False
    attributes = value.get("attributes")
    return "span_kind" in value or (isinstance(attributes, dict) and (
        is_openinference(attributes) or any(k.split(".", 1)[0] in NAMESPACES for k in attributes)))


def matches(value: Any) -> bool:
    """A Phoenix span (context.span_id plus span_kind or OpenInference attributes), or a REST page of them."""
    if isinstance(value, dict) and isinstance(value.get("data"), list) and "context" not in value:
        return bool(value["data"]) and _is_phoenix_span(value["data"][0])
    return _is_phoenix_span(value)


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn Phoenix span records into canonical rows; a REST page record yields one row per span."""
    from aiobs_pipeline.ingest import otlp  # imported here: otlp imports this module at load time

    for record in records:
        value = record.value
        if isinstance(value, dict) and isinstance(value.get("data"), list) and "context" not in value:
            for index, span in enumerate(value["data"]):
                yield _read_span(otlp, span, record, f"data[{index}]")
        else:
            yield _read_span(otlp, value, record, None)


def _read_span(otlp: Any, span: Any, record: RawRecord, where: str | None) -> SpanRow | Reject:
    at = f"record {record.number}" + (f": {where}" if where else "")
    raw = record.text if where is None else dump_json(span)
    try:
        parts = phoenix_span_parts(span)
    except otlp.MalformedSpan as exc:
        return Reject("invalid_type", f"{at}: {exc}", record.number, raw, span_id=exc.span_id,
                      trace_id=exc.trace_id, source_format=FORMAT)
    try:
        row = otlp.build_row(parts)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # Attribute values of shapes no convention allows must not stop the file: the span is quarantined.
        return Reject("invalid_type", f"{at}: attributes could not be mapped: {exc!r}", record.number, raw,
                      span_id=parts.span_id if isinstance(parts.span_id, str) else None,
                      trace_id=parts.trace_id if isinstance(parts.trace_id, str) else None, source_format=FORMAT)
    row["source_line"] = record.number
    return row


def _from_dataframe_record(value: dict[str, Any]) -> dict[str, Any]:
    """A spans-DataFrame record (`context.span_id`, `attributes.llm.model_name`, ...) as a Phoenix span."""
    span: dict[str, Any] = {"context": {}, "attributes": {}}
    for key, item in value.items():
        if key.startswith("context."):
            span["context"][key.removeprefix("context.")] = item
        elif key.startswith("attributes."):
            if item is not None:  # the DataFrame has a column per attribute: null means absent
                span["attributes"][key.removeprefix("attributes.")] = item
        else:
            span[key] = item
    return span


def phoenix_span_parts(span: Any) -> Any:
    """Read the envelope of one Phoenix span into the `otlp.SpanParts` that `otlp.build_row` assembles."""
    from aiobs_pipeline.ingest.otlp import MalformedSpan, SpanParts

    if not isinstance(span, dict):
        raise MalformedSpan(f"expected a span object, got {type(span).__name__}")
    if "context.span_id" in span:
        span = _from_dataframe_record(span)
    context = span.get("context")
    if context is None:
        keys = ", ".join(sorted(map(str, span))[:8])
        raise MalformedSpan(f"field 'context' (trace_id, span_id) is missing; keys: {keys}")
    if not isinstance(context, dict):
        raise MalformedSpan(f"field 'context' must be an object, got {type(context).__name__}")
    trace_id, span_id = normalise_id(context.get("trace_id")), normalise_id(context.get("span_id"))
    readable = {"span_id": span_id if isinstance(span_id, str) else None,
                "trace_id": trace_id if isinstance(trace_id, str) else None}
    attributes = span.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise MalformedSpan(f"field 'attributes' must be an object, got {type(attributes).__name__}", **readable)
    # Phoenix stores attributes nested by dotted key; lists are left for map_openinference to unfold.
    attributes = dict(flatten("", attributes, lists=False)) if attributes else {}
    if span.get("span_kind") is not None and attributes.get("openinference.span.kind") is None:
        attributes["openinference.span.kind"] = span["span_kind"]
    events = span.get("events")
    if events is None:
        events = []
    if not isinstance(events, list):
        raise MalformedSpan(f"field 'events' must be a list, got {type(events).__name__}", **readable)
    known = {"context", "attributes", "events", "span_kind", "name", "parent_id", "start_time", "end_time",
             "status_code", "status_message"}
    extra = {f"phoenix.{k}": v for k, v in span.items() if k not in known and v is not None}
    return SpanParts(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=normalise_id(span.get("parent_id")),
        name=span.get("name"),
        start_time=_time(span.get("start_time")),
        end_time=_time(span.get("end_time")),
        status_code=_status_code(span.get("status_code")),
        status_message=span.get("status_message") or None,
        attributes=attributes,
        events=[_event(e) for e in events],
        extra_metadata=extra,
        openinference=True,
    )


def _time(value: Any) -> Any:
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return value  # the row rules report the bad timestamp by field name


def _status_code(value: Any) -> Any:
    if value is None or value == "":
        return "unset"
    if isinstance(value, str) and value.strip().upper() in ("OK", "ERROR", "UNSET"):
        return value.strip().lower()
    return value


def _event(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"name": None, "time": None, "attributes": {"raw": event}}
    attributes = event.get("attributes")
    return {
        "name": event.get("name"),
        "time": _time(event.get("timestamp")),
        "attributes": dict(flatten("", attributes, lists=False)) if isinstance(attributes, dict) and attributes else {},
    }
