"""Reader for aiobs native JSON Lines: the span layout of the product brief, plus RAG spans.

One span per line. The layout is documented in docs/formats.md ("native"); the table below is that mapping.
Token counts follow OpenAI's usage object, where prompt_tokens already include cached tokens and
completion_tokens already include reasoning tokens, so no conversion is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from aiobs_pipeline.ingest.base import RawRecord, Reject, SpanRow, as_str, latency_between, parse_time
from aiobs_pipeline.ingest.messages import KIND_BY_NAME, content_text

FORMAT = "native"

# canonical column <- native key (top level)
TOP_LEVEL = {
    "trace_id": "trace_id",
    "span_id": "span_id",
    "parent_span_id": "parent_span_id",
    "name": "name",
    "provider": "provider",
    "request_model": "model",
    "response_model": "response_model",
    "latency_ms": "latency_ms",
    "time_to_first_token_ms": "time_to_first_token_ms",
    "reported_cost_usd": "cost",
    "error_message": "error",
}
# canonical column <- key inside "usage"
USAGE = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "total_tokens": "total_tokens",
    "cached_input_tokens": "cached_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "reasoning_tokens": "reasoning_tokens",
}
# canonical column <- key inside "metadata" (the rest of metadata stays in the metadata map)
METADATA = {
    "user_id": "user_id",
    "session_id": "session_id",
    "environment": "environment",
    "app": "app",
    "feature": "feature",
    "endpoint": "endpoint",
    "prompt_name": "prompt_name",
    "prompt_version": "prompt_version",
}
# canonical column <- key inside "params"
PARAMS = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens"}

KNOWN_KEYS = set(TOP_LEVEL.values()) | {
    "kind", "start_time", "end_time", "status", "messages", "response", "usage", "metadata",
    "params", "documents", "output_messages",
}


def matches(value: Any) -> bool:
    """A native span is an object with span_id and trace_id and none of the other formats' markers."""
    return isinstance(value, dict) and "span_id" in value and "trace_id" in value and "context" not in value


def infer_kind(value: dict[str, Any]) -> str | None:
    """The explicit kind, else one inferred from the span name, else llm for model calls, else chain."""
    kind = value.get("kind")
    if kind is not None:
        return kind
    name = str(value.get("name") or "").lower()
    for prefix, inferred in KIND_BY_NAME.items():
        if name.startswith(prefix):
            return inferred
    if value.get("model") is not None and ("messages" in value or "response" in value):
        return "llm"
    return "chain"


def normalise_documents(documents: Any) -> Any:
    """Give each retrieved document {id, score, text, rank}, keeping extra keys; rank defaults to position."""
    if not isinstance(documents, list):
        return documents
    out = []
    for position, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict):
            out.append({"id": None, "score": None, "text": content_text(doc), "rank": position})
            continue
        item = dict(doc)
        item.setdefault("id", doc.get("doc_id"))
        item.setdefault("text", doc.get("content"))
        item.setdefault("score", None)
        item.setdefault("rank", position)
        out.append(item)
    return out


def to_row(value: dict[str, Any]) -> SpanRow:
    """Map one native span object to a canonical row (no validation: see quality.rules)."""
    row: SpanRow = {col: value.get(key) for col, key in TOP_LEVEL.items()}
    for col in ("trace_id", "span_id", "parent_span_id"):
        row[col] = as_str(row[col])
    row["kind"] = infer_kind(value)
    start = value.get("start_time")
    end = value.get("end_time")
    row["start_time"] = start
    row["end_time"] = end
    if row["latency_ms"] is None:
        try:
            row["latency_ms"] = latency_between(parse_time(start), parse_time(end))
        except (ValueError, TypeError, OverflowError):
            pass  # the row rules report the bad timestamp by name
    status = value.get("status")
    row["status"] = status if status is not None else ("error" if value.get("error") else "ok")
    row["model"] = row["response_model"] or row["request_model"]
    usage = value.get("usage")
    if isinstance(usage, dict):
        for col, key in USAGE.items():
            row[col] = usage.get(key)
        details = usage.get("prompt_tokens_details") or {}
        if row["cached_input_tokens"] is None and isinstance(details, dict):
            row["cached_input_tokens"] = details.get("cached_tokens")
        details = usage.get("completion_tokens_details") or {}
        if row["reasoning_tokens"] is None and isinstance(details, dict):
            row["reasoning_tokens"] = details.get("reasoning_tokens")
    elif usage is not None:
        row["input_tokens"] = usage  # reported as invalid_type for field usage.prompt_tokens
    params = value.get("params")
    if isinstance(params, dict):
        for col, key in PARAMS.items():
            row[col] = params.get(key)
        extra = {k: v for k, v in params.items() if k not in PARAMS}
        row["request_params"] = extra or None
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        for col, key in METADATA.items():
            row[col] = metadata.get(key)
        rest = {k: v for k, v in metadata.items() if k not in METADATA}
    else:
        rest = {}
    unknown = {k: v for k, v in value.items() if k not in KNOWN_KEYS}
    rest.update(unknown)
    row["metadata"] = rest or None
    row["input_messages"] = value.get("messages")
    response = value.get("response")
    row["output_text"] = content_text(response) if not isinstance(response, str) else response
    row["output_messages"] = value.get("output_messages") or (
        [{"role": "assistant", "content": response}] if response is not None else None
    )
    row["documents"] = normalise_documents(value.get("documents"))
    return row


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn native JSONL records into canonical rows; non-object lines become `invalid_type` rejects."""
    for record in records:
        if not isinstance(record.value, dict):
            yield Reject("invalid_type", f"line {record.number}: expected a JSON object, got "
                         f"{type(record.value).__name__}", record.number, record.text, source_format=FORMAT)
            continue
        row = to_row(record.value)
        row["source_line"] = record.number
        yield row
