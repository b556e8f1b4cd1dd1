"""Reader for Langfuse trace exports: traces with their observations, or observations on their own.

Accepted records (see docs/formats.md, "Langfuse", for the field mapping):
  * `{"trace": {...}, "observations": [...]}`, the UI/export document (observations may also sit in the trace);
  * the public API's trace with observations, `{id, name, userId, sessionId, ..., observations: [...]}`;
  * one observation object (one per JSONL line, or the elements of a JSON array);
  * an API list page `{"data": [...], "meta": {...}}` of any of the above.
Every observation becomes one span and inherits its trace's userId, sessionId, environment, release, tags and
metadata. The trace itself becomes a span only when the record carries no observation objects, so a trace is
never counted twice. Scores attached to a trace are kept in the metadata of its root spans (observation scores
in that observation's metadata); scores are feedback, not spans.

Kind: the observation type decides (`GENERATION` -> llm, `RETRIEVER` -> retrieval, ...); a type that names no
canonical kind (`SPAN`, `EVENT`, `CHAIN`, `AGENT`, ...) lets a name such as `reranking` say rerank, since
Langfuse has no rerank type. Messages and documents are normalised by `messages.py`, as in every reader.

Token rule: Langfuse stores usage as disjoint usage types whose sum is the total: when it ingests an OpenAI-style
usage object it moves `prompt_tokens_details.cached_tokens` to `input_cached_tokens` and subtracts it from `input`
(likewise reasoning from `output`), and Anthropic-style keys such as `cache_read_input_tokens` sit beside `input`.
The canonical rule counts cached tokens inside input_tokens and reasoning tokens inside output_tokens, so the
reader adds every input-side usage type back into input_tokens and every output-side type into output_tokens.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import orjson

from aiobs_pipeline.ingest.base import (
    RawRecord,
    Reject,
    SpanRow,
    as_str,
    latency_between,
    parse_time,
)
from aiobs_pipeline.ingest.messages import (
    dump_json,
    is_count,
    kind_from_name,
    reply_text,
    to_documents,
    to_messages,
    to_number,
)

FORMAT = "langfuse"

OBSERVATION_TYPES = (
    "GENERATION", "SPAN", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EMBEDDING", "EVALUATOR", "GUARDRAIL",
)
KIND_BY_TYPE = {"GENERATION": "llm", "RETRIEVER": "retrieval", "EMBEDDING": "embedding", "TOOL": "tool"}
# Kinds no observation type expresses, so the observation's name may state them (see messages.kind_from_name).
KINDS_BY_NAME = ("rerank",)
# Kinds whose output holds documents.
DOCUMENT_KINDS = ("retrieval", "rerank")
# Parsing a Python-literal string is bounded: a payload this large is kept as text instead.
LITERAL_EVAL_LIMIT = 100_000

# Usage keys Langfuse (and the SDK integrations feeding it) use for the three base amounts.
USAGE_BASE_ALIASES = {
    "input": "input", "prompt_tokens": "input", "input_tokens": "input", "promptTokens": "input",
    "output": "output", "completion_tokens": "output", "output_tokens": "output", "completionTokens": "output",
    "total": "total", "total_tokens": "total", "totalTokens": "total",
}
# Nested breakdowns (OpenAI / LangChain shapes) that are parts of the base amount, as Langfuse's ingestion treats them.
USAGE_NESTED = {
    "prompt_tokens_details": "input", "input_tokens_details": "input", "input_token_details": "input",
    "completion_tokens_details": "output", "output_tokens_details": "output", "output_token_details": "output",
}
TOKEN_UNITS = (None, "TOKENS")
DEFAULT_ENVIRONMENT = "default"
PARAM_COLUMNS = {
    "temperature": ("temperature",),
    "top_p": ("top_p", "topP"),
    "max_tokens": ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxTokens"),
}
# Observation keys the mapping consumes or that only restate mapped values (Langfuse-derived aggregates).
MAPPED_OBSERVATION_KEYS = {
    "id", "traceId", "type", "name", "startTime", "endTime", "completionStartTime", "parentObservationId",
    "level", "statusMessage", "model", "modelParameters", "input", "output", "metadata", "usage", "usageDetails",
    "costDetails", "totalCost", "calculatedTotalCost", "calculatedInputCost", "calculatedOutputCost", "inputUsage",
    "outputUsage", "totalUsage", "promptName", "promptVersion", "environment", "latency", "timeToFirstToken",
}
# Trace keys handled explicitly; the remaining (non-empty) trace keys are kept under metadata["langfuse"]["trace"].
MAPPED_TRACE_KEYS = {
    "id", "userId", "sessionId", "environment", "metadata", "tags", "input", "output", "observations", "scores",
    "timestamp", "latency", "totalCost", "createdAt", "updatedAt", "release",
}
SCORE_KEYS = ("id", "name", "value", "stringValue", "dataType", "source", "comment", "observationId", "timestamp")


def _is_observation(value: dict[str, Any]) -> bool:
    kind = value.get("type")
    return isinstance(kind, str) and kind.upper() in OBSERVATION_TYPES and "traceId" in value


def _is_trace(value: dict[str, Any]) -> bool:
    return isinstance(value.get("observations"), list) or isinstance(value.get("trace"), dict)


def matches(value: Any) -> bool:
    """A trace with `observations`, a `{"trace": ...}` export, an observation (Langfuse type + traceId), or a page."""
    if not isinstance(value, dict):
        return False
    if _is_trace(value) or _is_observation(value):
        return True
    data = value.get("data")
    return (isinstance(data, list) and bool(data) and isinstance(data[0], dict)
            and (_is_trace(data[0]) or _is_observation(data[0])))


# ---------------------------------------------------------------------------------------------------------------
# Values


def _parse_embedded(value: Any) -> Any:
    """A JSON (or Python-literal) string holding an object or list, parsed; anything else unchanged.

    Langfuse's OpenTelemetry ingestion stores input, output and metadata as text, sometimes as a Python repr.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or text[0] not in "[{":
        return value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    if len(text) > LITERAL_EVAL_LIMIT:
        return value
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
    return parsed if isinstance(parsed, dict | list) else value


def _non_empty(value: Any) -> bool:
    return value not in (None, "", {}, [])


# ---------------------------------------------------------------------------------------------------------------
# Usage and cost


def disjoint_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Usage as Langfuse stores it: base keys `input`/`output`/`total` plus disjoint usage types.

    Nested OpenAI/LangChain breakdowns are flattened with an `input_`/`output_` prefix and subtracted from their
    base amount, exactly as Langfuse's ingestion does, so already-stored and raw usage read the same way.
    """
    flat: dict[str, Any] = {}
    nested: list[tuple[str, dict[str, Any]]] = []
    for key, value in usage.items():
        if key in USAGE_NESTED:
            if isinstance(value, dict):
                nested.append((USAGE_NESTED[key], value))
            continue
        name = USAGE_BASE_ALIASES.get(key, key)
        if name not in flat or flat[name] is None:
            flat[name] = value
    for side, parts in nested:
        for key, value in parts.items():
            if not is_count(value):
                continue
            flat[f"{side}_{key}"] = value
            if is_count(flat.get(side)):
                flat[side] = max(flat[side] - value, 0)
    return flat


def usage_detail_columns(usage: dict[str, Any]) -> dict[str, Any]:
    """Canonical token columns from a Langfuse usageDetails map (see the module docstring for the rule).

    input-side types: keys containing "input" or starting with "cache"/"prompt"; output-side: keys containing
    "output", "completion" or "reasoning". Cache reads are input-side keys with "cache" but no "creation",
    "create" or "write"; cache writes are those with one of them; reasoning keys contain "reasoning".
    """
    flat = disjoint_usage(usage)
    sums: dict[str, float] = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "reasoning": 0}
    seen: set[str] = set()
    for key, value in flat.items():
        if key in ("input", "output", "total", "unit") or not is_count(value):
            continue
        name = key.lower()
        if "input" in name or name.startswith(("cache", "prompt")):
            sums["input"] += value
            seen.add("input")
            if "cache" in name:
                bucket = "cache_write" if any(w in name for w in ("creation", "create", "write")) else "cache_read"
                sums[bucket] += value
                seen.add(bucket)
        elif "output" in name or "completion" in name or "reasoning" in name:
            sums["output"] += value
            seen.add("output")
            if "reasoning" in name:
                sums["reasoning"] += value
                seen.add("reasoning")

    def side(base_key: str) -> Any:
        base = flat.get(base_key)
        if base is not None and not is_count(base):
            return base  # left as is so the row rules report invalid_type for the column
        if base is None and base_key not in seen:
            return None
        return (base or 0) + sums[base_key]

    input_tokens, output_tokens = side("input"), side("output")
    total = flat.get("total")
    if total is None and is_count(input_tokens) and is_count(output_tokens):
        total = input_tokens + output_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "cached_input_tokens": sums["cache_read"] if "cache_read" in seen else None,
        "cache_write_tokens": sums["cache_write"] if "cache_write" in seen else None,
        "reasoning_tokens": sums["reasoning"] if "reasoning" in seen else None,
    }


def _usage(obs: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Token columns and the field they came from: usageDetails, legacy usage, or input/output/totalUsage."""
    details = obs.get("usageDetails")
    if isinstance(details, dict) and details:
        return usage_detail_columns(details), "usageDetails"
    legacy = obs.get("usage")
    if isinstance(legacy, dict) and any(legacy.get(k) is not None for k in ("input", "output", "total",
                                                                            "promptTokens", "completionTokens")):
        if legacy.get("unit") not in TOKEN_UNITS:
            return None, None  # characters, seconds, images...: not tokens; kept in metadata
        return usage_detail_columns({k: v for k, v in legacy.items() if k not in (
            "unit", "inputCost", "outputCost", "totalCost")}), "usage"
    totals = [obs.get(k) for k in ("inputUsage", "outputUsage", "totalUsage")]
    # The observation view reports 0 for observations without usage; only a non-zero amount is a report.
    if any(is_count(v) and v != 0 for v in totals):
        return {"input_tokens": totals[0], "output_tokens": totals[1], "total_tokens": totals[2]}, "inputUsage"
    return None, None


def _cost(obs: dict[str, Any]) -> Any:
    """costDetails.total (or the sum of its parts), else totalCost / calculatedTotalCost / usage.totalCost."""
    details = obs.get("costDetails")
    if isinstance(details, dict) and details:
        if details.get("total") is not None:
            return details["total"]
        parts = [v for v in details.values() if v is not None]
        return sum(parts) if parts and all(is_count(p) for p in parts) else (parts[0] if parts else None)
    for key in ("totalCost", "calculatedTotalCost"):
        value = obs.get(key)
        # With no costDetails, a 0 is the view's default for "no cost", not a reported cost.
        if value is not None and (value != 0 or not isinstance(details, dict)):
            return to_number(value)
    legacy = obs.get("usage")
    if isinstance(legacy, dict) and legacy.get("totalCost") is not None:
        return to_number(legacy["totalCost"])
    return None


# ---------------------------------------------------------------------------------------------------------------
# Trace context


def _as_metadata(value: Any, key: str) -> dict[str, Any]:
    parsed = _parse_embedded(value)
    if isinstance(parsed, dict):
        return dict(parsed)
    return {key: parsed} if _non_empty(parsed) else {}


def _compact_score(score: dict[str, Any]) -> dict[str, Any]:
    return {k: score[k] for k in SCORE_KEYS if score.get(k) is not None}


def trace_context(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace-level values every observation of the trace inherits."""
    scores = trace.get("scores") if isinstance(trace.get("scores"), list) else []
    by_observation: dict[Any, list[dict[str, Any]]] = {}
    for score in scores:
        if isinstance(score, dict):
            by_observation.setdefault(score.get("observationId"), []).append(_compact_score(score))
    rest = {k: v for k, v in trace.items() if k not in MAPPED_TRACE_KEYS and _non_empty(v)}
    return {
        "id": as_str(trace.get("id")),
        "user_id": trace.get("userId"),
        "session_id": trace.get("sessionId"),
        "environment": trace.get("environment"),
        "tags": trace.get("tags") if isinstance(trace.get("tags"), list) else [],
        "metadata": _as_metadata(trace.get("metadata"), "trace_metadata"),
        "release": trace.get("release"),
        "scores": by_observation,
        "rest": rest,
    }


EMPTY_TRACE: dict[str, Any] = {
    "id": None, "user_id": None, "session_id": None, "environment": None, "tags": [], "metadata": {},
    "release": None, "scores": {}, "rest": {},
}


# ---------------------------------------------------------------------------------------------------------------
# One observation -> one row


def _lookup(metadata: dict[str, Any], *keys: str) -> Any:
    """A value from observation metadata, at the top level or inside OpenTelemetry `attributes`."""
    attributes = metadata.get("attributes") if isinstance(metadata.get("attributes"), dict) else {}
    for source in (metadata, attributes):
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def _ms_between(start: Any, end: Any) -> float | None:
    try:
        return latency_between(parse_time(start), parse_time(end))
    except (ValueError, TypeError, OverflowError):
        return None  # the row rules report the unreadable timestamp by its field name


def _model_parameters(params: Any) -> dict[str, Any]:
    params = _parse_embedded(params)
    row: dict[str, Any] = {"temperature": None, "top_p": None, "max_tokens": None, "request_params": None}
    if not isinstance(params, dict):
        if _non_empty(params):
            row["request_params"] = {"modelParameters": params}
        return row
    used: set[str] = set()
    for column, keys in PARAM_COLUMNS.items():
        key = next((k for k in keys if params.get(k) is not None), None)
        if key is not None:
            row[column] = to_number(params[key])
            used.add(key)
    rest = {k: v for k, v in params.items() if k not in used and v is not None}
    row["request_params"] = rest or None
    return row


def _service_name(metadata: dict[str, Any]) -> Any:
    resource = metadata.get("resourceAttributes")
    name = resource.get("service.name") if isinstance(resource, dict) else None
    # The OpenTelemetry SDK's placeholder when no service name was configured.
    return None if isinstance(name, str) and name.startswith("unknown_service") else name


def _io_columns(obs: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """input_messages, output_messages, output_text and documents; inputs/outputs that are neither go to metadata."""
    columns: dict[str, Any] = {"output_text": None}
    unmapped: dict[str, Any] = {}
    inputs = _parse_embedded(obs.get("input"))
    messages = to_messages(inputs)
    if messages is None and isinstance(inputs, str) and kind == "llm":
        messages = [{"role": "user", "content": inputs}]
    columns["input_messages"] = messages
    if messages is None and _non_empty(inputs):
        unmapped["input"] = inputs
    outputs = _parse_embedded(obs.get("output"))
    columns["documents"] = to_documents(outputs) if kind in DOCUMENT_KINDS else None
    out_messages = None if columns["documents"] is not None else to_messages(outputs)
    columns["output_messages"] = out_messages
    if out_messages is not None:
        columns["output_text"] = reply_text(out_messages)
    elif isinstance(outputs, str):
        columns["output_text"] = outputs
        if kind == "llm":
            columns["output_messages"] = [{"role": "assistant", "content": outputs}]
    elif columns["documents"] is None and _non_empty(outputs):
        unmapped["output"] = outputs
    return columns, unmapped


def _langfuse_metadata(obs: dict[str, Any], trace: dict[str, Any], row: SpanRow, usage_source: str | None,
                       index: int | None) -> dict[str, Any]:
    """metadata["langfuse"]: observation type, index, level, raw usage and cost, other fields, trace, scores."""
    langfuse: dict[str, Any] = {"observation_type": obs.get("type")}
    if index is not None:
        langfuse["observation_index"] = index
    if obs.get("level") is not None:
        langfuse["level"] = obs["level"]
    if obs.get("statusMessage") and row["status"] != "error":
        langfuse["status_message"] = obs["statusMessage"]
    if _non_empty(obs.get("usageDetails")):
        langfuse["usage_details"] = obs["usageDetails"]
    legacy = obs.get("usage")
    if isinstance(legacy, dict) and (usage_source == "usage" or legacy.get("unit") not in TOKEN_UNITS):
        langfuse["usage"] = legacy  # the only record of this usage (or of non-token units)
    if _non_empty(obs.get("costDetails")):
        langfuse["cost_details"] = obs["costDetails"]
    for key, value in obs.items():
        if key not in MAPPED_OBSERVATION_KEYS and _non_empty(value):
            langfuse[key] = value
    if trace["rest"]:
        langfuse["trace"] = trace["rest"]
    scores = trace["scores"].get(row["span_id"], [])
    if row["parent_span_id"] is None:
        scores = trace["scores"].get(None, []) + scores  # trace-level scores belong to the root spans
    if scores:
        langfuse["scores"] = scores
    return langfuse


def observation_row(obs: dict[str, Any], trace: dict[str, Any], index: int | None) -> SpanRow:
    """Map one Langfuse observation (with its trace context) to a canonical row (no validation)."""
    obs_type = str(obs.get("type")).upper()
    kind = KIND_BY_TYPE.get(obs_type) or kind_from_name(obs.get("name"), KINDS_BY_NAME) or "chain"
    obs_meta = _as_metadata(obs.get("metadata"), "observation_metadata")
    metadata = {**trace["metadata"], **obs_meta}

    start, end = obs.get("startTime"), obs.get("endTime")
    if obs_type == "EVENT":
        end = start  # an event is a point in time
    row: SpanRow = {
        "span_id": as_str(obs.get("id")),
        "trace_id": as_str(obs.get("traceId")) or trace["id"],
        "parent_span_id": as_str(obs.get("parentObservationId")),
        "name": obs.get("name") if obs.get("name") is not None else obs_type,
        "kind": kind,
        "start_time": start,
        "end_time": end,
        "latency_ms": _ms_between(start, end),
        "time_to_first_token_ms": _ms_between(start, obs.get("completionStartTime")),
    }
    if row["time_to_first_token_ms"] is None and is_count(obs.get("timeToFirstToken")):
        row["time_to_first_token_ms"] = obs["timeToFirstToken"] * 1000.0  # the API reports seconds
    level = obs.get("level")
    row["status"] = "error" if isinstance(level, str) and level.upper() == "ERROR" else "ok"
    row["error_message"] = obs.get("statusMessage") if row["status"] == "error" else None

    model = obs.get("model")
    requested = _lookup(obs_meta, "gen_ai.request.model", "ls_model_name")
    responded = _lookup(obs_meta, "gen_ai.response.model")
    row["request_model"] = requested or model
    # Langfuse's `model` is the response model when the integration saw one (that is what it prices).
    row["response_model"] = responded or (model if requested and model and model != requested else None)
    row["model"] = row["response_model"] or row["request_model"]
    row["provider"] = _lookup(obs_meta, "gen_ai.provider.name", "gen_ai.system", "ls_provider")
    row.update(_model_parameters(obs.get("modelParameters")))

    usage, usage_source = _usage(obs)
    if usage:
        row.update(usage)
    row["reported_cost_usd"] = _cost(obs)

    row["user_id"] = trace["user_id"] or _lookup(metadata, "user_id", "langfuse_user_id", "user.id")
    row["session_id"] = trace["session_id"] or _lookup(metadata, "session_id", "langfuse_session_id",
                                                       "session.id", "thread_id")
    environment = obs.get("environment") or trace["environment"]
    stated = _lookup(metadata, "environment")
    # "default" is what Langfuse records when the SDK was given no environment; a stated one is better.
    row["environment"] = stated if environment in (None, DEFAULT_ENVIRONMENT) and isinstance(stated, str) \
        else environment
    row["app"] = _lookup(metadata, "app") or _service_name(metadata)
    row["feature"] = _lookup(metadata, "feature")
    row["endpoint"] = _lookup(metadata, "endpoint")
    row["prompt_name"] = obs.get("promptName")
    version = obs.get("promptVersion")
    row["prompt_version"] = as_str(version) if version is not None else None

    io_columns, unmapped = _io_columns(obs, kind)
    row.update(io_columns)
    tags = list(trace["tags"])
    for tag in obs_meta.get("tags", []) if isinstance(obs_meta.get("tags"), list) else []:
        if tag not in tags:
            tags.append(tag)
    if tags:
        metadata["tags"] = tags
    if trace["release"] is not None:
        metadata["release"] = trace["release"]
    metadata.update(unmapped)
    metadata["langfuse"] = _langfuse_metadata(obs, trace, row, usage_source, index)
    row["metadata"] = metadata
    return row


def trace_row(trace_value: dict[str, Any], trace: dict[str, Any], observation_ids: list[str]) -> SpanRow:
    """The trace itself as one chain span, for a record that carries no observation objects."""
    start = trace_value.get("timestamp")
    end = None
    latency = trace_value.get("latency")
    if is_count(latency):
        try:
            parsed = parse_time(start)
            end = (parsed + timedelta(seconds=latency)).isoformat() if parsed is not None else None
        except (ValueError, TypeError, OverflowError):
            end = None
    pseudo = {
        "id": trace_value.get("id"), "traceId": trace_value.get("id"), "type": "TRACE",
        "name": trace_value.get("name") if trace_value.get("name") is not None else "trace",
        "startTime": start, "endTime": end, "input": trace_value.get("input"), "output": trace_value.get("output"),
        "totalCost": trace_value.get("totalCost"),
    }
    context = dict(trace, rest={k: v for k, v in trace["rest"].items() if k != "name"})
    row = observation_row(pseudo, context, None)
    row["trace_id"] = trace["id"]
    langfuse = row["metadata"]["langfuse"]
    langfuse.pop("observation_type", None)
    langfuse["trace_as_span"] = True
    if observation_ids:
        langfuse["observation_ids"] = observation_ids
    return row


# ---------------------------------------------------------------------------------------------------------------
# Records -> rows


def _check_observation(obs: Any, number: int, where: str, trace_id: str | None) -> Reject | None:
    """Shape errors that stop an observation from becoming a row, naming the record and the field."""
    if not isinstance(obs, dict):
        return Reject("invalid_type", f"record {number}: {where} must be a JSON object, got {type(obs).__name__}",
                      number, dump_json(obs), trace_id=trace_id, source_format=FORMAT)
    raw = dump_json(obs)
    obs_id = obs.get("id")
    obs_trace = obs.get("traceId") if isinstance(obs.get("traceId"), str) else trace_id
    if obs_id is None or obs_id == "":
        return Reject("missing_required_field", f"record {number}: {where}.id is missing", number, raw,
                      trace_id=obs_trace, source_format=FORMAT)
    if isinstance(obs_id, bool) or not isinstance(obs_id, str | int):
        return Reject("invalid_type", f"record {number}: {where}.id must be a string, got {type(obs_id).__name__}",
                      number, raw, trace_id=obs_trace, source_format=FORMAT)
    span_id = str(obs_id)
    obs_type = obs.get("type")
    if obs_type is None:
        return Reject("missing_required_field", f"record {number}: {where}.type is missing", number, raw,
                      span_id=span_id, trace_id=obs_trace, source_format=FORMAT)
    if not isinstance(obs_type, str):
        return Reject("invalid_type", f"record {number}: {where}.type must be a string, got "
                      f"{type(obs_type).__name__}", number, raw, span_id=span_id, trace_id=obs_trace,
                      source_format=FORMAT)
    if obs.get("traceId") is None and trace_id is None:
        return Reject("missing_required_field", f"record {number}: {where}.traceId is missing and no trace "
                      "encloses it", number, raw, span_id=span_id, source_format=FORMAT)
    return None


def _observation_lists(value: dict[str, Any], trace_value: dict[str, Any], number: int, prefix: str,
                       ) -> tuple[list[tuple[str, Any]], list[Reject]]:
    """(path, observation) pairs from the record's observation lists, deduplicated by id; shape rejects."""
    sources = [(f"{prefix}observations", value.get("observations"))]
    if trace_value is not value:
        sources.append((f"{prefix}trace.observations", trace_value.get("observations")))
    found: list[tuple[str, Any]] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for field, items in sources:
        if items is None:
            continue
        if not isinstance(items, list):
            rejects.append(Reject("invalid_type", f"record {number}: field '{field}' must be a list, got "
                                  f"{type(items).__name__}", number, source_format=FORMAT))
            continue
        for index, item in enumerate(items):
            key = str(item.get("id")) if isinstance(item, dict) and item.get("id") is not None else None
            if key is not None:
                if key in seen:
                    continue  # the export repeats the trace's observations next to it
                seen.add(key)
            found.append((f"{field}[{index}]", item))
    return found, rejects


def _read_trace(value: dict[str, Any], number: int, prefix: str) -> Iterator[SpanRow | Reject]:
    trace_value = value.get("trace") if "trace" in value else value
    if not isinstance(trace_value, dict):
        yield Reject("invalid_type", f"record {number}: field '{prefix}trace' must be a JSON object, got "
                     f"{type(trace_value).__name__}", number, source_format=FORMAT)
        trace_value = {}
    trace = trace_context(trace_value)
    found, rejects = _observation_lists(value, trace_value, number, prefix)
    yield from rejects
    observation_ids = [item for _, item in found if isinstance(item, str)]
    objects = [(where, item) for where, item in found if not isinstance(item, str)]
    if not objects and not rejects:
        if trace["id"] is None:
            yield Reject("missing_required_field", f"record {number}: {prefix or 'trace.'}id is missing and the "
                         "record has no observations", number, dump_json(trace_value), source_format=FORMAT)
            return
        row = trace_row(trace_value, trace, observation_ids)
        row["source_line"] = number
        yield row
        return
    for index, (where, obs) in enumerate(objects):
        problem = _check_observation(obs, number, where, trace["id"])
        if problem is not None:
            yield problem
            continue
        row = observation_row(obs, trace, index)
        row["source_line"] = number
        yield row


def _read_value(value: Any, number: int, text: str | None, where: str | None,
                index: int | None = None) -> Iterator[SpanRow | Reject]:
    """Rows or rejects for one trace, observation or other object; `where`/`index` locate it in an API page."""
    label = where or "record"
    raw = text if text is not None else dump_json(value)
    if not isinstance(value, dict):
        yield Reject("invalid_type", f"record {number}: {label} must be a JSON object, got {type(value).__name__}",
                     number, raw, source_format=FORMAT)
        return
    if _is_trace(value) or "trace" in value:
        yield from _read_trace(value, number, f"{where}." if where else "")
        return
    if "type" not in value and "value" in value and "name" in value:
        yield Reject("unsupported_record", f"record {number}: {label} is a Langfuse score, not an observation",
                     number, raw, trace_id=as_str(value.get("traceId")) if isinstance(value.get("traceId"), str)
                     else None, source_format=FORMAT)
        return
    if "type" in value or "traceId" in value:
        problem = _check_observation(value, number, where or "observation", None)
        if problem is not None:
            problem.raw = raw
            yield problem
            return
        row = observation_row(value, EMPTY_TRACE, index)
        row["source_line"] = number
        yield row
        return
    keys = ", ".join(sorted(value)[:8])
    yield Reject("unknown_format", f"record {number}: {label} is not a Langfuse trace or observation "
                 f"(keys: {keys})", number, raw, source_format=FORMAT)


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn Langfuse records into canonical rows: one per observation (or per trace without observations)."""
    for record in records:
        value = record.value
        data = value.get("data") if isinstance(value, dict) else None
        if isinstance(data, list) and not _is_trace(value) and not _is_observation(value):
            for index, item in enumerate(data):
                yield from _read_value(item, record.number, None, f"data[{index}]", index)
            continue
        yield from _read_value(value, record.number, record.text, None)
