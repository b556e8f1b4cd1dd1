"""Reader for Langfuse's blob-storage export: `observations_v2/`, legacy `traces/` + `observations/` files.

The export writes one file per table and window (`{projectId}/{table}/{window end}.{json|jsonl|csv}[.gz]`), its
rows with ClickHouse's snake_case column names (Langfuse docs, "Blob Storage Export Field Reference"):
  * an enriched observation (`observations_v2/`) carries its trace's `user_id`, `session_id`, `trace_name`,
    `tags`, `release` (the `basic` and `trace_context` field groups);
  * a legacy observation (`observations/`) carries none of them: its trace is a row of the `traces/` file of the
    same window, and `postprocess` joins the two within the export hour;
  * a score (`scores/`) is feedback, read by `feedback.events`, and is `unsupported_record` here;
  * a run manifest (`manifests/{window end}.json`) lists the run's files and holds no span: it yields nothing.
Each observation is mapped by the Langfuse reader's own mapping (`langfuse.observation_row`: types, usage, cost,
messages, metadata) after its fields are renamed to the API's names, so both Langfuse readers agree.

Values: JSON/JSONL rows are typed; CSV rows are text (see `csv_records`), so numbers and booleans are read here.
The exported `latency` and `time_to_first_token` are not used: their unit is milliseconds for integrations created
before 2026-04-01 and seconds after, so both are recomputed from `start_time`, `end_time`, `completion_start_time`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from aiobs_pipeline.ingest import langfuse
from aiobs_pipeline.ingest.base import RawRecord, Reject, SpanRow
from aiobs_pipeline.ingest.messages import dump_json

FORMAT = "langfuse_blob"

OBSERVATION_KEYS = frozenset({"id", "trace_id", "type", "start_time", "project_id"})
TRACE_KEYS = frozenset({"id", "timestamp", "project_id"})
SCORE_KEYS = frozenset({"name", "value", "data_type"})
MANIFEST_KEYS = frozenset({"exportSource", "files", "window", "projectId"})

# blob field -> the Langfuse API field `langfuse.observation_row` reads.
OBSERVATION_FIELDS = {
    "id": "id", "trace_id": "traceId", "type": "type", "name": "name", "start_time": "startTime",
    "end_time": "endTime", "completion_start_time": "completionStartTime",
    "parent_observation_id": "parentObservationId", "level": "level", "status_message": "statusMessage",
    "provided_model_name": "model", "model_parameters": "modelParameters", "input": "input", "output": "output",
    "metadata": "metadata", "usage_details": "usageDetails", "cost_details": "costDetails",
    "total_cost": "totalCost", "prompt_name": "promptName", "prompt_version": "promptVersion",
    "environment": "environment",
}
# The enriched export's copies of trace attributes (field groups `basic` and `trace_context`).
TRACE_CONTEXT_FIELDS = ("user_id", "session_id", "trace_name", "tags", "release", "bookmarked", "public")
# Unit depends on the integration's age (see the module docstring): recomputed from the timestamps instead.
DROPPED_FIELDS = frozenset({"latency", "time_to_first_token"})
# blob trace field -> Langfuse API trace field (`langfuse.trace_context` / `trace_row` read these).
TRACE_FIELDS = {
    "id": "id", "timestamp": "timestamp", "name": "name", "environment": "environment", "metadata": "metadata",
    "user_id": "userId", "session_id": "sessionId", "release": "release", "version": "version",
    "public": "public", "bookmarked": "bookmarked", "tags": "tags", "input": "input", "output": "output",
    "project_id": "projectId", "created_at": "createdAt", "updated_at": "updatedAt",
}
MAP_FIELDS = ("usage_details", "cost_details")
NUMBER_FIELDS = ("total_cost",)
BOOLEAN_FIELDS = ("bookmarked", "public", "is_root_observation")
TRACE_FLAGS = ("bookmarked", "public")
LIST_FIELDS = ("tags", "tool_calls", "tool_call_names")


def _keys(value: Any) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


def is_observation(value: Any) -> bool:
    """An observation row of `observations_v2/` or `observations/`: the `core` field group's columns."""
    keys = _keys(value)
    return OBSERVATION_KEYS <= keys and "traceId" not in keys


def is_trace(value: Any) -> bool:
    """A row of the legacy `traces/` file: id, timestamp, project_id and no observation `type` or score value."""
    keys = _keys(value)
    return TRACE_KEYS <= keys and "type" not in keys and "data_type" not in keys and "trace_id" not in keys


def is_score(value: Any) -> bool:
    """A row of the `scores/` file."""
    keys = _keys(value)
    return SCORE_KEYS <= keys and "project_id" in keys and "dataType" not in keys


def is_manifest(value: Any) -> bool:
    """A run-completion manifest (`manifests/{window end}.json`)."""
    return MANIFEST_KEYS <= _keys(value)


def matches(value: Any) -> bool:
    """A blob-export observation, trace or score row, or a run manifest (snake_case; the API is camelCase)."""
    return is_observation(value) or is_trace(value) or is_score(value) or is_manifest(value)


# ---------------------------------------------------------------------------------------------------------------
# Values


class _Bad(Exception):
    """A field whose value cannot be read: reason code and a detail naming the blob field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _number(value: Any, field: str) -> Any:
    """A JSON number, or the number a CSV cell (or a ClickHouse quoted 64-bit integer) spells."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _Bad("invalid_type", f"field '{field}' must be a number, got {value!r}")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Bad("invalid_type", f"field '{field}' must be a number, got {value[:80]!r}") from None
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    raise _Bad("invalid_type", f"field '{field}' must be a number, got {type(value).__name__}")


def _map(value: Any, field: str) -> dict[str, Any] | None:
    """usage_details / cost_details: an object of numbers (numeric text read as numbers)."""
    if _blank(value):
        return None
    if not isinstance(value, dict):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise _Bad("invalid_type", f"field '{field}' must be a JSON object, got {shown!r}")
    return {key: _number(item, f"{field}.{key}") for key, item in value.items()}


def _boolean(value: Any, field: str) -> bool | None:
    if _blank(value) or isinstance(value, bool):
        return value if isinstance(value, bool) else None
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int):
        return bool(value)
    raise _Bad("invalid_type", f"field '{field}' must be true or false, got {value!r}")


def _list(value: Any, field: str) -> list[Any]:
    if _blank(value):
        return []
    if isinstance(value, list):
        return value
    raise _Bad("invalid_type", f"field '{field}' must be a JSON array, got {str(value)[:80]!r}")


def _metadata(value: Any) -> Any:
    """Metadata values JSON-parsed where they parse, as Langfuse's API does (`parseMetadataCHRecordToDomain`).

    ClickHouse keeps metadata as a map of strings, and the export writes those strings as they are.
    """
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, str):
            try:
                item = orjson.loads(item)
            except orjson.JSONDecodeError:
                pass
        out[key] = item
    return out


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """The row with empty strings as null and CSV text read as numbers, booleans, objects and lists."""
    out = {key: (None if _blank(value) else value) for key, value in row.items()}
    if "metadata" in out:
        out["metadata"] = _metadata(out["metadata"])
    for field in MAP_FIELDS:
        if field in out:
            out[field] = _map(out[field], field)
    for field in NUMBER_FIELDS:
        if field in out:
            out[field] = _number(out[field], field)
    for field in BOOLEAN_FIELDS:
        if field in out:
            out[field] = _boolean(out[field], field)
    for field in LIST_FIELDS:
        if field in out:
            out[field] = _list(out[field], field)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rows


def _observation(row: dict[str, Any]) -> dict[str, Any]:
    """The observation under the Langfuse API's names; other fields keep theirs (they go to metadata.langfuse)."""
    obs: dict[str, Any] = {}
    for key, value in row.items():
        if key in DROPPED_FIELDS or key in TRACE_CONTEXT_FIELDS:
            continue
        obs[OBSERVATION_FIELDS.get(key, key)] = value
    if isinstance(obs.get("type"), str):
        obs["type"] = obs["type"].upper()
    return obs


def _enriched_context(row: dict[str, Any]) -> dict[str, Any]:
    """The trace context an enriched observation carries, in `langfuse.trace_context`'s shape."""
    rest: dict[str, Any] = {}
    if row.get("trace_name") is not None:
        rest["name"] = row["trace_name"]
    for flag in TRACE_FLAGS:
        if row.get(flag):
            rest[flag] = True
    return {**langfuse.EMPTY_TRACE, "id": row.get("trace_id"), "user_id": row.get("user_id"),
            "session_id": row.get("session_id"), "environment": row.get("environment"),
            "tags": row.get("tags") or [], "release": row.get("release"), "rest": rest}


def _trace(row: dict[str, Any]) -> dict[str, Any]:
    """A legacy trace row under the Langfuse API's names (false flags dropped: they say nothing)."""
    out = {TRACE_FIELDS.get(key, key): value for key, value in row.items()}
    for flag in TRACE_FLAGS:
        if not out.get(flag):
            out.pop(flag, None)
    return out


def _check(row: dict[str, Any], number: int) -> None:
    for field in ("id", "type", "trace_id"):
        if _blank(row.get(field)):
            raise _Bad("missing_required_field", f"record {number}: field '{field}' is missing or empty")
    for field in ("id", "type", "trace_id"):
        if not isinstance(row[field], str | int) or isinstance(row[field], bool):
            raise _Bad("invalid_type", f"record {number}: field '{field}' must be a string, got "
                       f"{type(row[field]).__name__}")


def _ids(value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    span, trace = value.get("id"), value.get("trace_id") if "trace_id" in value else None
    return (span if isinstance(span, str) and span else None), (trace if isinstance(trace, str) and trace else None)


def _read_record(record: RawRecord) -> Iterator[SpanRow | Reject]:
    value = record.value
    number = record.number
    if not isinstance(value, dict):
        yield Reject("invalid_type", f"record {number}: must be a JSON object, got {type(value).__name__}",
                     number, record.text, source_format=FORMAT)
        return
    if is_manifest(value):
        return  # lists the run's files; holds no span
    span_id, trace_id = _ids(value)
    if is_score(value) and not is_observation(value):
        yield Reject("unsupported_record", f"record {number}: a Langfuse score (scores/ export) is feedback, not "
                     "a span; put scores/ files under paths.feedback_root", number, record.text,
                     span_id=None, trace_id=trace_id, source_format=FORMAT)
        return
    try:
        row = _typed(value)
        if is_trace(value):
            if _blank(row.get("id")):
                raise _Bad("missing_required_field", f"record {number}: trace field 'id' is missing or empty")
            # user_id / session_id let a file-by-file reader (aiobs forget) find the user's traces.
            yield {"_blob_trace": _trace(row), "span_id": str(row["id"]), "trace_id": str(row["id"]),
                   "user_id": row.get("user_id"), "session_id": row.get("session_id"), "source_line": number}
            return
        if not is_observation(value):
            keys = ", ".join(sorted(value)[:8])
            raise _Bad("unknown_format", f"record {number}: not a Langfuse blob-export observation, trace or "
                       f"score row (keys: {keys})")
        _check(row, number)
    except _Bad as bad:
        detail = bad.detail if bad.detail.startswith("record ") else f"record {number}: {bad.detail}"
        yield Reject(bad.reason, detail, number, record.text, span_id=span_id, trace_id=trace_id,
                     source_format=FORMAT)
        return
    obs = _observation(row)
    if any(field in value for field in TRACE_CONTEXT_FIELDS):
        out = langfuse.observation_row(obs, _enriched_context(row), None)
    else:
        out = langfuse.observation_row(obs, langfuse.EMPTY_TRACE, None)
        out["_blob_obs"] = obs  # joined to its trace row by `postprocess`
    out["source_line"] = number
    yield out


def read(records: Iterable[RawRecord]) -> Iterator[SpanRow | Reject]:
    """Turn blob-export rows into canonical rows (legacy observations are completed by `postprocess`)."""
    for record in records:
        yield from _read_record(record)


# ---------------------------------------------------------------------------------------------------------------
# The export hour: legacy traces joined to their observations


def _present(value: Any) -> bool:
    """Not None and not the NaN a DataFrame puts where a row had no value."""
    return value is not None and not (isinstance(value, float) and value != value)


def _line(row: SpanRow) -> int | None:
    line = row.get("source_line")
    return int(line) if _present(line) else None


def postprocess(rows: list[SpanRow]) -> tuple[list[SpanRow], list[Reject]]:
    """Join legacy observations to their trace rows of the same export hour; traces left alone become spans.

    A legacy observation whose id an enriched file of the hour also holds (export source "legacy and enriched")
    is quarantined as `duplicate_span_id`: the enriched copy is kept.
    """
    traces: dict[str, SpanRow] = {}
    enriched: dict[str, str] = {}
    for row in rows:
        trace = row.get("_blob_trace")
        if isinstance(trace, dict):
            traces.setdefault(str(row["span_id"]), row)
        elif not isinstance(row.get("_blob_obs"), dict) and isinstance(row.get("span_id"), str):
            enriched.setdefault(row["span_id"], f"{row.get('_file')}:{_line(row)}")
    out: list[SpanRow] = []
    rejects: list[Reject] = []
    joined: set[str] = set()
    for row in rows:
        if isinstance(row.get("_blob_trace"), dict):
            continue
        obs = row.get("_blob_obs")
        if not isinstance(obs, dict):
            out.append({k: v for k, v in row.items() if k not in ("_blob_obs", "_blob_trace")})
            continue
        span_id, trace_id = row.get("span_id"), row.get("trace_id")
        if span_id in enriched:
            rejects.append(Reject(
                "duplicate_span_id", f"record {_line(row)}: observation '{span_id}' is also in the enriched export "
                f"({enriched[span_id]}), which is kept", _line(row), dump_json(obs), span_id=span_id,
                trace_id=trace_id if isinstance(trace_id, str) else None, source_format=FORMAT,
                source_file=row.get("_file")))
            continue
        trace_row = traces.get(trace_id) if isinstance(trace_id, str) else None
        if trace_row is None:
            new = {k: v for k, v in row.items() if k not in ("_blob_obs", "_blob_trace")}
            new["metadata"]["langfuse"]["trace_context"] = "no traces/ row of this trace in this export hour"
        else:
            new = langfuse.observation_row(obs, langfuse.trace_context(trace_row["_blob_trace"]), None)
            new["source_line"], new["_file"] = row.get("source_line"), row.get("_file")
            joined.add(trace_id)
        out.append(new)
    observed = {r.get("trace_id") for r in out}  # enriched observations carry their trace themselves
    for trace_id, marker in traces.items():
        if trace_id in joined or trace_id in observed:
            continue
        value = marker["_blob_trace"]
        span = langfuse.trace_row(value, langfuse.trace_context(value), [])
        span["metadata"]["langfuse"]["trace_context"] = "no observation of this trace in this export hour"
        span["source_line"], span["_file"] = marker.get("source_line"), marker.get("_file")
        out.append(span)
    return out, rejects


# ---------------------------------------------------------------------------------------------------------------
# Scores (read by feedback.events, which maps them as Langfuse API scores)

# blob score field -> Langfuse API score field (`feedback.events.map_langfuse` reads these).
SCORE_FIELDS = {
    "id": "id", "timestamp": "timestamp", "trace_id": "traceId", "observation_id": "observationId",
    "session_id": "sessionId", "dataset_run_id": "datasetRunId", "name": "name", "value": "value",
    "source": "source", "comment": "comment", "data_type": "dataType", "string_value": "stringValue",
    "environment": "environment", "project_id": "projectId", "created_at": "createdAt", "updated_at": "updatedAt",
}


def score_record(value: dict[str, Any]) -> dict[str, Any]:
    """A `scores/` row as a Langfuse API score; ValueError naming the field when `value` is not a number."""
    out = {SCORE_FIELDS.get(key, key): (None if _blank(item) else item) for key, item in value.items()}
    try:
        out["value"] = _number(out.get("value"), "value")
    except _Bad as bad:
        raise ValueError(bad.detail) from None
    return out
