"""Reader for LangSmith run exports: `{post, patch}` ingest payloads and run lists (`Client.list_runs`).

A record is either an ingest batch (`{"post": [runs], "patch": [run updates]}`, the body of LangSmith's
`/runs/batch` endpoint) or one run object (a JSON array of runs or one run per JSONL line). Every run becomes
one span; the mapping table is docs/formats.md ("LangSmith"). A patch completes a run posted earlier (end time,
outputs, error, events, usage), possibly in another file of the same export hour, so `read` emits patches as
private rows (`_patch`) and `postprocess`, which sees the whole partition, merges them into their runs; a patch
whose run is not in the partition becomes an `orphan_patch` reject. A patch without `id` (the JS SDK's `RunUpdate`
body, whose id travels in the URL or the multipart part name) is matched by the run id that ends its
`dotted_order`, else by `trace_id` when the partition holds exactly one run of that trace (`ambiguous_patch` when
it holds several).

Token rule: LangChain's UsageMetadata (`usage_metadata`) and OpenAI usage objects count cached input tokens in
`input_tokens` / `prompt_tokens` and reasoning tokens in `output_tokens` / `completion_tokens`, which is the
canonical rule, so they are copied as they are; Anthropic-style usage (`cache_read_input_tokens` and
`cache_creation_input_tokens` beside `input_tokens`) reports cache traffic outside `input_tokens` and is added back.
Run-level `prompt_tokens` / `total_cost` aggregate the run and all its children, so they are used only for
`llm` and `embedding` runs (leaves); on other runs they are kept in metadata.

Kind: `run_type` decides (`retriever` -> retrieval, ...); a run type that names no canonical kind (`chain`,
`prompt`, `parser`) lets a name such as `reranking` say rerank, since LangSmith has no rerank run type. Outputs
whose mapping depends on the kind (documents of retrieval and rerank runs) are mapped again after a patch is
merged, because patches carry no `run_type`.

Messages and documents are normalised by `messages.py`, as in every reader.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from aiobs_pipeline.ingest.base import (
    RawRecord,
    Reject,
    SpanRow,
    as_str,
    latency_between,
    parse_time,
    truncate,
)
from aiobs_pipeline.ingest.messages import (
    dump_json,
    is_count,
    kind_from_name,
    reply_text,
    to_documents,
    to_message,
    to_messages,
    to_number,
)

FORMAT = "langsmith"

KIND_BY_RUN_TYPE = {
    "llm": "llm",
    "chain": "chain",
    "tool": "tool",
    "retriever": "retrieval",
    "embedding": "embedding",
    "prompt": "chain",
    "parser": "chain",
}
# Kinds LangSmith has no run type for, so a run's name may state them (see messages.kind_from_name).
KINDS_BY_NAME = ("rerank",)
# Kinds whose outputs hold documents.
DOCUMENT_KINDS = ("retrieval", "rerank")
# Runs without children, whose run-level token and cost aggregates are their own usage.
LEAF_RUN_TYPES = {"llm", "embedding"}

# canonical column <- keys of extra.metadata, first present wins (LangSmith's `ls_*` keys come from LangChain).
METADATA_COLUMNS = {
    "provider": ("ls_provider",),
    "user_id": ("user_id", "userId", "user"),
    "session_id": ("session_id", "thread_id", "conversation_id"),
    "environment": ("environment", "env"),
    "app": ("app", "app_name"),
    "feature": ("feature",),
    "endpoint": ("endpoint",),
    "prompt_name": ("prompt_name",),
    "prompt_version": ("prompt_version", "lc_hub_commit_hash"),
}
PARAM_COLUMNS = {
    "temperature": ("temperature", "ls_temperature"),
    "top_p": ("top_p", "ls_top_p"),
    "max_tokens": ("max_tokens", "ls_max_tokens", "max_completion_tokens", "max_output_tokens"),
}
MODEL_KEYS = ("model", "model_name", "ls_model_name")
# Keys of an llm run's `inputs` that are the prompt itself rather than request parameters.
PROMPT_INPUT_KEYS = ("messages", "prompts", "prompt")

# Run keys that the mapping consumes; everything else goes to metadata["langsmith"].
MAPPED_RUN_KEYS = {
    "id", "trace_id", "parent_run_id", "name", "run_type", "start_time", "end_time", "inputs", "outputs",
    "error", "extra", "events", "tags", "usage_metadata", "prompt_tokens", "completion_tokens", "total_tokens",
    "prompt_token_details", "completion_token_details", "prompt_cost", "completion_cost", "total_cost",
    "first_token_time", "status", "session_id", "session_name", "child_runs", "serialized", "dotted_order",
}
# extra.metadata keys mapped to columns, so not repeated in the span's metadata.
MAPPED_METADATA_KEYS = {k for keys in METADATA_COLUMNS.values() for k in keys} | {
    "ls_model_name", "ls_temperature", "ls_max_tokens", "ls_top_p", "usage_metadata", "lc_hub_repo", "lc_hub_owner",
}
# Run fields kept under metadata["langsmith"], by their name there (a LangSmith "session" is a project).
RUN_FIELDS_KEPT = {"status": "status", "dotted_order": "dotted_order", "session_id": "project_id",
                   "session_name": "project"}
AGGREGATE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_cost", "completion_cost", "total_cost")
# One dotted_order segment: a `%Y%m%dT%H%M%S%fZ` time (the JS SDK writes milliseconds plus a 3-digit execution
# order, older JS SDKs milliseconds only) followed by the run's UUID.
DOTTED_SEGMENT_RE = re.compile(r"^\d{8}T\d{6,12}Z(?P<run_id>[0-9A-Fa-f-]{32,36})$")
# Keys that make an object a (possibly malformed) run rather than some other record.
RUN_MARKERS = ("id", "run_type", "dotted_order", "trace_id", "parent_run_id")


def matches(value: Any) -> bool:
    """An ingest batch (`post`/`patch` lists) or a run object (`run_type` and `id`, or a `dotted_order`)."""
    if not isinstance(value, dict):
        return False
    if isinstance(value.get("post"), list) or isinstance(value.get("patch"), list):
        return True
    return ("run_type" in value and "id" in value) or isinstance(value.get("dotted_order"), str)


# ---------------------------------------------------------------------------------------------------------------
# Usage


def _sum_or_first(values: list[Any]) -> Any:
    """The sum of the present values when all are numbers; else the first present one, for the row rules."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return sum(present) if all(is_count(v) for v in present) else present[0]


def usage_columns(usage: dict[str, Any]) -> dict[str, Any]:
    """Canonical token and cost columns from a UsageMetadata, OpenAI (chat or responses) or Anthropic usage."""
    def first(source: dict[str, Any], *keys: str) -> Any:
        return next((source[k] for k in keys if source.get(k) is not None), None)

    def details(*keys: str) -> dict[str, Any]:
        return next((usage[k] for k in keys if isinstance(usage.get(k), dict)), {})

    in_details = details("input_token_details", "input_tokens_details", "prompt_tokens_details",
                         "prompt_token_details")
    out_details = details("output_token_details", "output_tokens_details", "completion_tokens_details",
                          "completion_token_details")
    input_tokens = first(usage, "input_tokens", "prompt_tokens")
    cached = first(in_details, "cache_read", "cached_tokens")
    cache_write = first(in_details, "cache_creation", "cache_write_tokens", "cache_creation_tokens")
    anthropic_read = usage.get("cache_read_input_tokens")
    anthropic_write = usage.get("cache_creation_input_tokens")
    if not in_details and (anthropic_read is not None or anthropic_write is not None):
        # Anthropic reports cache reads and writes beside input_tokens, not inside it.
        cached, cache_write = anthropic_read, anthropic_write
        extra = [v for v in (anthropic_read, anthropic_write) if v is not None]
        if is_count(input_tokens) and all(is_count(v) for v in extra):
            input_tokens = input_tokens + sum(extra)
    output_tokens = first(usage, "output_tokens", "completion_tokens")
    total = first(usage, "total_tokens")
    if total is None and is_count(input_tokens) and is_count(output_tokens):
        total = input_tokens + output_tokens
    cost = to_number(first(usage, "total_cost"))
    if cost is None:
        pair = ("input_cost", "output_cost") if first(usage, "input_cost", "output_cost") is not None \
            else ("prompt_cost", "completion_cost")
        cost = _sum_or_first([to_number(usage.get(k)) for k in pair])
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "cached_input_tokens": cached,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": first(out_details, "reasoning", "reasoning_tokens"),
        "reported_cost_usd": cost,
    }


# ---------------------------------------------------------------------------------------------------------------
# One run -> one row


def _dotted_ids(dotted_order: Any) -> list[str]:
    """Run ids along a dotted order `{time}Z{uuid}.{time}Z{uuid}...`, root first."""
    if not isinstance(dotted_order, str) or not dotted_order:
        return []
    ids = []
    for segment in dotted_order.split("."):
        _, sep, run_id = segment.partition("Z")
        if sep and run_id:
            ids.append(run_id)
    return ids


def dotted_run_id(dotted_order: Any) -> str | None:
    """The run id a dotted order ends with (its last segment's UUID), or None when it does not end in one."""
    if not isinstance(dotted_order, str):
        return None
    match = DOTTED_SEGMENT_RE.match(dotted_order.rsplit(".", 1)[-1].strip())
    if match is None:
        return None
    try:
        uuid.UUID(match["run_id"])
    except ValueError:
        return None
    return match["run_id"]


def _first_token_time(run: dict[str, Any]) -> Any:
    """The run's first_token_time, else the time of its first `new_token` event."""
    if run.get("first_token_time") is not None:
        return run["first_token_time"]
    events = run.get("events")
    if not isinstance(events, list):
        return None
    times = []
    for event in events:
        if isinstance(event, dict) and event.get("name") == "new_token" and event.get("time") is not None:
            try:
                times.append((parse_time(event["time"]), event["time"]))
            except (ValueError, TypeError, OverflowError):
                continue
    return min(times, key=lambda pair: pair[0])[1] if times else None


def _ms_between(start: Any, end: Any) -> float | None:
    try:
        return latency_between(parse_time(start), parse_time(end))
    except (ValueError, TypeError, OverflowError):
        return None  # the row rules report the unreadable timestamp by its field name


def _lookup(keys: tuple[str, ...], *sources: dict[str, Any]) -> Any:
    for source in sources:
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def _generation_message(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The first generation's raw message object in a LangChain LLMResult (`generations: [[...]]`)."""
    generations = outputs.get("generations")
    if isinstance(generations, list) and generations and isinstance(generations[0], list):
        generations = generations[0]
    if isinstance(generations, list) and generations and isinstance(generations[0], dict):
        message = generations[0].get("message")
        if isinstance(message, dict):
            return message.get("kwargs") if isinstance(message.get("kwargs"), dict) else message
    return None


def _outputs(outputs: Any, kind: str) -> dict[str, Any]:
    """output_messages, output_text, documents and the unmapped rest of a run's outputs."""
    out: dict[str, Any] = {"output_messages": None, "output_text": None, "documents": None, "rest": None}
    if outputs is None:
        return out
    if isinstance(outputs, str):
        out["output_text"] = outputs
        return out
    if not isinstance(outputs, dict):
        out["rest"] = outputs
        return out
    consumed: set[str] = {"usage_metadata"}
    if kind in DOCUMENT_KINDS:
        out["documents"] = to_documents(outputs.get("documents"))
        if out["documents"] is not None:
            consumed.add("documents")
    messages = to_messages(outputs)
    if messages is not None:
        consumed.update({"choices", "messages", "role", "content", "tool_calls", "additional_kwargs", "type"})
    elif isinstance(outputs.get("generations"), list):
        generations = outputs["generations"]
        if generations and isinstance(generations[0], list):
            generations = generations[0]
        messages = []
        for gen in generations:
            if not isinstance(gen, dict):
                continue
            found = to_message(gen.get("message"))
            if found is None and gen.get("text") is not None:
                found = [{"role": "assistant", "content": gen["text"]}]
            messages.extend(found or [])
        messages = messages or None
        consumed.update({"generations", "llm_output"})
    else:
        # `output` is how the Python SDK wraps a traced function's non-dict return value, `outputs` the JS SDK's.
        for key in ("output", "outputs", "message", "answer", "result", "text", "content"):
            value = outputs.get(key)
            if isinstance(value, str):
                out["output_text"] = value
                consumed.add(key)
                break
            found = to_messages(value)
            if found is not None:
                messages = found
                consumed.add(key)
                break
    if messages:
        out["output_messages"] = messages
        out["output_text"] = reply_text(messages)
    rest = {k: v for k, v in outputs.items() if k not in consumed and v is not None}
    if isinstance(outputs.get("llm_output"), dict) and "llm_output" in consumed:
        kept = {k: v for k, v in outputs["llm_output"].items() if k not in ("token_usage", "usage")}
        if kept:
            rest["llm_output"] = kept
    out["rest"] = rest or None
    return out


def _usage(run: dict[str, Any], outputs: Any, metadata: dict[str, Any], run_type: Any) -> dict[str, Any] | None:
    """The run's own usage: usage_metadata wherever it sits, provider usage, else leaf-run aggregates."""
    outputs = outputs if isinstance(outputs, dict) else {}
    message = _generation_message(outputs) or {}
    llm_output = outputs.get("llm_output") if isinstance(outputs.get("llm_output"), dict) else {}
    candidates = (
        run.get("usage_metadata"), outputs.get("usage_metadata"), metadata.get("usage_metadata"),
        message.get("usage_metadata"), llm_output.get("token_usage"), llm_output.get("usage"), outputs.get("usage"),
    )
    for usage in candidates:
        if isinstance(usage, dict) and usage:
            columns = usage_columns(usage)
            if columns["reported_cost_usd"] is None and run_type in LEAF_RUN_TYPES:
                columns["reported_cost_usd"] = _run_cost(run)
            return columns
    if run_type in LEAF_RUN_TYPES and any(run.get(k) is not None for k in ("prompt_tokens", "completion_tokens",
                                                                            "total_tokens", "total_cost")):
        columns = usage_columns({k: run.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens",
                                                         "prompt_token_details", "completion_token_details")})
        columns["reported_cost_usd"] = _run_cost(run)
        return columns
    return None


def _run_cost(run: dict[str, Any]) -> Any:
    total = to_number(run.get("total_cost"))
    if total is not None:
        return total
    return _sum_or_first([to_number(run.get(k)) for k in ("prompt_cost", "completion_cost")])


def _call_kwargs(run_type: Any, inputs: Any) -> dict[str, Any]:
    """An llm run's inputs when they are the model call's kwargs (they hold the prompt), else {}."""
    if run_type == "llm" and isinstance(inputs, dict) and any(k in inputs for k in PROMPT_INPUT_KEYS):
        return inputs
    return {}


def _params(llm_inputs: dict[str, Any], invocation: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """temperature/top_p/max_tokens columns and request_params from invocation_params, ls_* metadata, inputs."""
    row: dict[str, Any] = {}
    used: set[str] = set()
    for column, keys in PARAM_COLUMNS.items():
        for source in (invocation, metadata, llm_inputs):
            key = next((k for k in keys if source.get(k) is not None), None)
            if key is not None:
                row[column] = to_number(source[key])
                used.update(keys)
                break
    extra: dict[str, Any] = {}
    for source in (llm_inputs, invocation):  # invocation_params win over the call's own kwargs
        extra.update({k: v for k, v in source.items()
                      if v is not None and k not in used and k not in PROMPT_INPUT_KEYS and k not in MODEL_KEYS})
    row["request_params"] = extra or None
    return row


def _input_messages(run_type: Any, inputs: Any) -> list[dict[str, Any]] | None:
    messages = to_messages(inputs)
    if messages is not None or not isinstance(inputs, dict) or run_type != "llm":
        return messages
    prompts = inputs.get("prompts", inputs.get("prompt"))
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, list) and prompts and all(isinstance(p, str) for p in prompts):
        return [{"role": "user", "content": p} for p in prompts]
    return None


def _run_metadata(run: dict[str, Any], where: str, metadata: dict[str, Any], unmapped_inputs: Any,
                  unmapped_outputs: Any) -> dict[str, Any]:
    """The span's metadata: unmapped extra.metadata keys, tags, unmapped inputs/outputs, and `langsmith`."""
    extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
    run_type = run.get("run_type")
    rest = {k: v for k, v in metadata.items() if k not in MAPPED_METADATA_KEYS}
    langsmith: dict[str, Any] = {"where": where}
    if run_type is not None:
        langsmith["run_type"] = run_type
    for key, name in RUN_FIELDS_KEPT.items():
        if run.get(key) is not None:
            langsmith[name] = run[key]
    for key, value in run.items():
        if key not in MAPPED_RUN_KEYS and value not in (None, {}, []):
            langsmith[key] = value
    serialized = run.get("serialized")
    if isinstance(serialized, dict):
        # The traced function's signature and docstring are code, not run data: keep only its identity.
        kept = {k: serialized[k] for k in ("name", "id") if serialized.get(k) is not None}
        if kept:
            langsmith["serialized"] = kept
    for key, value in extra.items():
        if key == "runtime" and isinstance(value, dict):
            langsmith["runtime"] = value
        elif key not in ("metadata", "invocation_params", "runtime") and value not in (None, {}, []):
            langsmith[f"extra.{key}"] = value
    if run_type not in LEAF_RUN_TYPES:
        aggregates = {k: run[k] for k in AGGREGATE_KEYS if run.get(k) is not None}
        if aggregates:
            langsmith["aggregate_usage"] = aggregates  # this run plus all of its children
    events = run.get("events")
    if isinstance(events, list) and events:
        # Streaming writes one new_token event per token: keep the counts, not the events.
        counts: dict[str, int] = {}
        for event in events:
            name = str(event.get("name")) if isinstance(event, dict) else "None"
            counts[name] = counts.get(name, 0) + 1
        langsmith["event_counts"] = counts
    if run.get("tags"):
        rest["tags"] = run["tags"]
    if unmapped_inputs not in (None, {}, []):
        rest["inputs"] = unmapped_inputs
    if unmapped_outputs is not None:
        rest["outputs"] = unmapped_outputs
    rest["langsmith"] = langsmith
    return rest


def run_kind(run_type: Any, name: Any) -> str:
    """The canonical kind of a run type; a run type that says only `chain` lets the run's name say rerank."""
    kind = KIND_BY_RUN_TYPE.get(run_type, "chain")
    if kind != "chain":
        return kind
    return kind_from_name(name, KINDS_BY_NAME) or kind


def run_row(run: dict[str, Any], where: str) -> SpanRow:
    """Map one LangSmith run (or patch) object to a canonical row; `where` says where it sat in the record."""
    extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
    metadata = dict(extra.get("metadata")) if isinstance(extra.get("metadata"), dict) else {}
    invocation = extra.get("invocation_params") if isinstance(extra.get("invocation_params"), dict) else {}
    run_type = run.get("run_type")
    kind = run_kind(run_type, run.get("name"))
    inputs, outputs = run.get("inputs"), run.get("outputs")
    dotted = _dotted_ids(run.get("dotted_order"))

    row: SpanRow = {
        "span_id": as_str(run.get("id")),
        "trace_id": as_str(run.get("trace_id")) or (dotted[0] if dotted else None),
        "parent_span_id": as_str(run.get("parent_run_id")) or (dotted[-2] if len(dotted) > 1 else None),
        "name": run.get("name"),
        "kind": kind,
        "start_time": run.get("start_time"),
        "end_time": run.get("end_time"),
        "latency_ms": _ms_between(run.get("start_time"), run.get("end_time")),
        "_first_token_time": _first_token_time(run),
    }
    if row["trace_id"] is None and run.get("parent_run_id") is None and not dotted:
        row["trace_id"] = row["span_id"]  # a root run's trace id is its own id
    row["time_to_first_token_ms"] = _ms_between(run.get("start_time"), row["_first_token_time"])
    error = run.get("error")
    row["status"] = "error" if error or run.get("status") == "error" else "ok"
    row["error_message"] = error if error else None

    llm_inputs = _call_kwargs(run_type, inputs)
    message = _generation_message(outputs) if isinstance(outputs, dict) else None
    response_meta = message.get("response_metadata") if isinstance(message, dict) else None
    llm_output = outputs.get("llm_output") if isinstance(outputs, dict) else None
    row["request_model"] = _lookup(("ls_model_name",), metadata) or _lookup(MODEL_KEYS[:2], invocation, llm_inputs)
    row["response_model"] = (
        (outputs.get("model") if isinstance(outputs, dict) and isinstance(outputs.get("model"), str) else None)
        or _lookup(("model_name", "model"), response_meta if isinstance(response_meta, dict) else {},
                   llm_output if isinstance(llm_output, dict) else {})
    )
    row["model"] = row["response_model"] or row["request_model"]
    row.update(_params(llm_inputs, invocation, metadata))
    for column, keys in METADATA_COLUMNS.items():
        row[column] = _lookup(keys, metadata)
    if row["prompt_name"] is None and metadata.get("lc_hub_repo") is not None:
        owner = metadata.get("lc_hub_owner")
        row["prompt_name"] = f"{owner}/{metadata['lc_hub_repo']}" if owner and owner != "-" else metadata["lc_hub_repo"]
    if row["app"] is None:
        row["app"] = run.get("session_name")  # the LangSmith project the run was logged to
    if row["prompt_version"] is not None and not isinstance(row["prompt_version"], str):
        row["prompt_version"] = as_str(row["prompt_version"])

    row["input_messages"] = _input_messages(run_type, inputs)
    mapped_out = _outputs(outputs, kind)
    row["output_messages"] = mapped_out["output_messages"]
    row["output_text"] = mapped_out["output_text"]
    row["documents"] = mapped_out["documents"]
    usage = _usage(run, outputs, metadata, run_type)
    if usage is not None:
        row.update(usage)

    row["metadata"] = _run_metadata(run, where, metadata, inputs if row["input_messages"] is None else None,
                                    mapped_out["rest"])
    return row


# ---------------------------------------------------------------------------------------------------------------
# Records -> rows


def _check_patch_without_id(run: dict[str, Any], number: int, where: str) -> Reject | None:
    """A patch without id needs a dotted_order ending in its run id, or a trace_id to look its run up by."""
    trace_id = run.get("trace_id") if isinstance(run.get("trace_id"), str) and run.get("trace_id") else None
    dotted = run.get("dotted_order")
    if dotted is not None and dotted != "":
        if not isinstance(dotted, str):
            return Reject("invalid_type", f"record {number}: {where} has no id, and its dotted_order must be a "
                          f"string, got {type(dotted).__name__}", number, dump_json(run), trace_id=trace_id,
                          source_format=FORMAT)
        if dotted_run_id(dotted) is None:
            return Reject("invalid_type", f"record {number}: {where} has no id, and its dotted_order "
                          f"{truncate(dotted, 120)!r} does not end in a '<timestamp>Z<run uuid>' segment naming "
                          "its run", number, dump_json(run), trace_id=trace_id, source_format=FORMAT)
        return None
    if trace_id is None:
        return Reject("missing_required_field", f"record {number}: {where} has no id, dotted_order or trace_id "
                      "to find its run by", number, dump_json(run), source_format=FORMAT)
    return None


def _check_run(run: Any, number: int, where: str, patch: bool = False) -> Reject | None:
    """Shape errors that stop a run from becoming a row: not an object, no usable id, a non-text run_type."""
    if not isinstance(run, dict):
        return Reject("invalid_type", f"record {number}: {where} must be a JSON object, got {type(run).__name__}",
                      number, dump_json(run), source_format=FORMAT)
    run_id = run.get("id")
    if (run_id is None or run_id == "") and patch:
        problem = _check_patch_without_id(run, number, where)
        if problem is not None:
            return problem
    elif run_id is None or run_id == "":
        trace_id = run.get("trace_id") if isinstance(run.get("trace_id"), str) else None
        return Reject("missing_required_field", f"record {number}: {where}.id is missing",
                      number, dump_json(run), trace_id=trace_id, source_format=FORMAT)
    if run_id is not None and run_id != "" and (not isinstance(run_id, str | int) or isinstance(run_id, bool)):
        return Reject("invalid_type", f"record {number}: {where}.id must be a string, got {type(run_id).__name__}",
                      number, dump_json(run), source_format=FORMAT)
    run_type = run.get("run_type")
    if run_type is not None and not isinstance(run_type, str):
        return Reject("invalid_type", f"record {number}: {where}.run_type must be a string, got "
                      f"{type(run_type).__name__}", number, dump_json(run), span_id=str(run_id),
                      source_format=FORMAT)
    return None


def _runs(run: dict[str, Any], number: int, where: str, patch: bool) -> Iterator[SpanRow | Reject]:
    """One row for a run (a private `_patch` row for a patch), then its nested `child_runs`, if any."""
    row = run_row(run, where)
    row["source_line"] = number
    if patch:
        _as_patch(row, run)
    yield row
    children = run.get("child_runs")
    if isinstance(children, list):
        for index, child in enumerate(children):
            child_where = f"{where}.child_runs[{index}]"
            problem = _check_run(child, number, child_where, patch)
            if problem is not None:
                yield problem
                continue
            child = dict(child)
            if child.get("parent_run_id") is None:
                child["parent_run_id"] = run.get("id")
            if child.get("trace_id") is None:
                child["trace_id"] = row["trace_id"]
            yield from _runs(child, number, child_where, patch)


def _as_patch(row: SpanRow, patch: dict[str, Any]) -> None:
    """Keep only what the patch itself says, so merging cannot overwrite the run with defaults."""
    row["_patch"] = True
    row["_raw"] = truncate(dump_json(patch))
    if row["span_id"] is None or row["span_id"] == "":
        # The JS SDK's RunUpdate has no id: its dotted_order ends with the run id, else its trace_id may tell.
        row["span_id"] = dotted_run_id(patch.get("dotted_order"))
        row["_matched_by"] = "dotted_order" if row["span_id"] is not None else "trace_id"
        row["_where"] = row["metadata"].get("langsmith", {}).get("where")
    if "run_type" not in patch:
        row["kind"] = None
    if "outputs" in patch:
        row["_outputs"] = patch["outputs"]  # mapped again once the merge knows the run's kind
    if "error" not in patch and "status" not in patch:
        row["status"] = None
        row["error_message"] = None
    if "parent_run_id" not in patch and "dotted_order" not in patch:
        row["parent_span_id"] = None
    if "trace_id" not in patch and "dotted_order" not in patch:
        row["trace_id"] = None
    row["latency_ms"] = None  # recomputed from the merged start and end
    row["time_to_first_token_ms"] = None
    langsmith = row["metadata"].get("langsmith", {})
    langsmith.pop("where", None)


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn LangSmith records into rows: one per run or post, a private `_patch` row per patch."""
    for record in records:
        value, number = record.value, record.number
        if not isinstance(value, dict):
            yield Reject("invalid_type", f"record {number}: expected a JSON object, got {type(value).__name__}",
                         number, record.text, source_format=FORMAT)
            continue
        if "post" in value or "patch" in value:
            for op in ("post", "patch"):
                runs = value.get(op)
                if runs is None:
                    continue
                if not isinstance(runs, list):
                    yield Reject("invalid_type", f"record {number}: field '{op}' must be a list of runs, got "
                                 f"{type(runs).__name__}", number, record.text, source_format=FORMAT)
                    continue
                for index, run in enumerate(runs):
                    where = f"{op}[{index}]"
                    problem = _check_run(run, number, where, patch=op == "patch")
                    if problem is not None:
                        yield problem
                        continue
                    yield from _runs(run, number, where, patch=op == "patch")
            continue
        if not any(key in value for key in RUN_MARKERS):
            keys = ", ".join(sorted(value)[:8])
            yield Reject("unknown_format", f"record {number}: not a LangSmith run or ingest batch (keys: {keys})",
                         number, record.text, source_format=FORMAT)
            continue
        problem = _check_run(value, number, "run")
        if problem is not None:
            problem.raw = record.text
            yield problem
            continue
        yield from _runs(value, number, "run", patch=False)


# ---------------------------------------------------------------------------------------------------------------
# Patches -> their runs, across the files of one export hour


def _missing(value: Any) -> bool:
    """None, or the NaN / NA / NaT a DataFrame puts where a row had no value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _merge(run: SpanRow, patch: SpanRow) -> SpanRow:
    """The run with every value the patch carries (patch wins), metadata merged, durations recomputed."""
    merged = dict(run)
    for key, value in patch.items():
        if key in ("_file", "_patch", "_raw", "source_line", "metadata") or _missing(value):
            continue
        merged[key] = value
    run_meta = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    patch_meta = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else {}
    metadata = {**run_meta, **patch_meta}
    langsmith = {**run_meta.get("langsmith", {}), **patch_meta.get("langsmith", {})}
    line = patch.get("source_line")
    source = f"{patch.get('_file')}:{int(line)}" if not _missing(line) else str(patch.get("_file"))
    langsmith["patched_from"] = [*run_meta.get("langsmith", {}).get("patched_from", []), source]
    metadata["langsmith"] = langsmith
    outputs = patch.get("_outputs")
    if not _missing(outputs) and not _missing(merged.get("kind")):
        mapped = _outputs(outputs, merged["kind"])
        for column in ("output_messages", "output_text", "documents"):
            merged[column] = mapped[column]
        metadata.pop("outputs", None)
        if mapped["rest"] is not None:
            metadata["outputs"] = mapped["rest"]
    merged["metadata"] = metadata
    start, end = merged.get("start_time"), merged.get("end_time")
    if not _missing(start) and not _missing(end):
        merged["latency_ms"] = _ms_between(_plain(start), _plain(end))
    first_token = merged.get("_first_token_time")
    if not _missing(start) and not _missing(first_token):
        merged["time_to_first_token_ms"] = _ms_between(_plain(start), _plain(first_token))
    return merged


def _plain(value: Any) -> Any:
    """pandas Timestamps as datetimes, so parse_time accepts values that went through a DataFrame."""
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def _patch_reject(reason: str, detail: str, patch: SpanRow) -> Reject:
    line = patch.get("source_line")
    number = None if _missing(line) else int(line)
    span_id, trace_id = patch.get("span_id"), patch.get("trace_id")
    return Reject(
        reason, f"record {number}: {detail}", number,
        None if _missing(patch.get("_raw")) else patch.get("_raw"),
        span_id=span_id if isinstance(span_id, str) else None,
        trace_id=trace_id if isinstance(trace_id, str) else None,
        source_format=FORMAT,
        source_file=None if _missing(patch.get("_file")) else patch.get("_file"),
    )


def _find_run(patch: SpanRow, index_by_id: dict[str, int],
              runs_by_trace: dict[str, list[int]]) -> int | Reject:
    """The position of the run a patch completes: by id, by its dotted_order's run id, else by a one-run trace."""
    span_id, trace_id = patch.get("span_id"), patch.get("trace_id")
    matched_by = None if _missing(patch.get("_matched_by")) else patch["_matched_by"]
    where = "patch" if _missing(patch.get("_where")) else patch["_where"]
    if matched_by != "trace_id":
        position = index_by_id.get(span_id) if isinstance(span_id, str) else None
        if position is not None:
            return position
        if matched_by == "dotted_order":
            return _patch_reject("orphan_patch", f"{where} has no id; its dotted_order names run '{span_id}', "
                                 "which has no post or run in this export hour", patch)
        return _patch_reject("orphan_patch", f"patch for run '{span_id}' has no post or run with that id in this "
                             "export hour", patch)
    candidates = runs_by_trace.get(trace_id, []) if isinstance(trace_id, str) else []
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return _patch_reject("orphan_patch", f"{where} has no id or dotted_order, and no run of its trace_id "
                             f"'{trace_id}' is in this export hour", patch)
    return _patch_reject("ambiguous_patch", f"{where} has no id or dotted_order, and its trace_id '{trace_id}' "
                         f"has {len(candidates)} runs in this export hour: which one it completes is unknown", patch)


def postprocess(rows: list[SpanRow]) -> tuple[list[SpanRow], list[Reject]]:
    """Merge patch rows into their run rows (same id, anywhere in the partition); orphans become rejects."""
    out: list[SpanRow] = []
    index_by_id: dict[str, int] = {}
    runs_by_trace: dict[str, list[int]] = {}
    patches: list[SpanRow] = []
    for row in rows:
        flag = row.get("_patch")
        if not _missing(flag) and bool(flag):
            patches.append(row)
            continue
        out.append(row)
        span_id, trace_id = row.get("span_id"), row.get("trace_id")
        if isinstance(span_id, str) and span_id not in index_by_id:
            index_by_id[span_id] = len(out) - 1
            if isinstance(trace_id, str):
                runs_by_trace.setdefault(trace_id, []).append(len(out) - 1)
    rejects: list[Reject] = []
    for patch in patches:
        found = _find_run(patch, index_by_id, runs_by_trace)
        if isinstance(found, Reject):
            rejects.append(found)
            continue
        merged = _merge(out[found], patch)
        matched_by = patch.get("_matched_by")
        if not _missing(matched_by):
            merged["metadata"]["langsmith"]["patch_matched_by"] = matched_by
        out[found] = merged
    cleaned = [{k: v for k, v in row.items() if not k.startswith("_") or k == "_file"} for row in out]
    return cleaned, rejects
