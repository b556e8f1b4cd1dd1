"""The canonical span schema: the single source of truth for readers, validation, warehouse DDL and docs.

Every reader produces rows with exactly these columns; every later asset reads them. Missing optional
values are null (None / NaN / NaT), never invented. Nested values (messages, documents, metadata) are
held as JSON text so the same frame round-trips through DuckDB and PostgreSQL (JSONB).

This module must not import Dagster or any reader: it only describes data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

# The version of the layout below, stored with the data: in every row's `schema_version` and per warehouse
# table in `aiobs_schema` (see warehouse/migrations.py, which upgrades tables written by older versions).
#   1  the first layout
#   2  PII masking at ingest: spans.pii_masked, quarantined rows' pii_masked, the audit's pii_masked and
#      pii_masked_by_pattern
#   3  OTLP/JSON log files: the audit's events_joined and records_ignored
SCHEMA_VERSION = 3

# Span kinds and statuses allowed in the canonical table.
KINDS = ("llm", "embedding", "retrieval", "rerank", "tool", "chain")
STATUSES = ("ok", "error")
SOURCE_FORMATS = ("native", "otlp", "openinference", "langfuse", "langsmith")
# LangSmith's bulk export (Parquet files of runs; ingest/langsmith_bulk.py).
SOURCE_FORMATS += ("langsmith_bulk",)

# Langfuse's blob-storage export (ingest/langfuse_blob.py); on its own line so other formats merge cleanly.
SOURCE_FORMATS = (*SOURCE_FORMATS, "langfuse_blob")

ColumnType = Literal["str", "int", "float", "timestamp", "json"]


@dataclass(frozen=True)
class Column:
    """One column of a canonical table: name, logical type, whether a row may lack it, and what it means."""

    name: str
    type: ColumnType
    required: bool = False
    description: str = ""
    # Inclusive lower bound for numeric columns; values below it are quarantined.
    minimum: float | None = None


SPAN_COLUMNS: tuple[Column, ...] = (
    Column("trace_id", "str", True, "Trace identifier (hex for OTLP, UUID for Langfuse/LangSmith)."),
    Column("span_id", "str", True, "Span identifier, unique within an export hour."),
    Column("parent_span_id", "str", False, "Parent span id; null for a root span."),
    Column("name", "str", True, "Span name as the source reported it."),
    Column("kind", "str", True, "One of llm, embedding, retrieval, rerank, tool, chain."),
    Column("start_time", "timestamp", True, "Start of the span, UTC."),
    Column("end_time", "timestamp", False, "End of the span, UTC."),
    Column("latency_ms", "float", False, "Wall-clock duration in milliseconds.", 0),
    Column("time_to_first_token_ms", "float", False, "Time to the first streamed token, ms.", 0),
    Column("status", "str", True, "ok or error."),
    Column("error_message", "str", False, "Error text when status is error."),
    Column("provider", "str", False, "Model provider (openai, anthropic, azure, ...)."),
    Column("request_model", "str", False, "Model named in the request."),
    Column("response_model", "str", False, "Model named in the response (dated snapshot)."),
    Column("model", "str", False, "Response model, falling back to the request model."),
    Column("temperature", "float", False, "Sampling temperature.", 0),
    Column("top_p", "float", False, "Nucleus sampling parameter.", 0),
    Column("max_tokens", "int", False, "Maximum output tokens requested.", 0),
    Column("request_params", "json", False, "Other request parameters (seed, stop, penalties, ...)."),
    Column("input_messages", "json", False, "Input messages: [{role, content, tool_calls?, tool_call_id?}]."),
    Column("output_text", "str", False, "The completion text (assistant message content joined)."),
    Column("output_messages", "json", False, "Structured output messages incl. tool calls, reasoning."),
    Column("input_tokens", "int", False, "Input tokens, including cached input tokens.", 0),
    Column("output_tokens", "int", False, "Output tokens, including reasoning tokens.", 0),
    Column("total_tokens", "int", False, "Total tokens as reported (or input + output).", 0),
    Column("cached_input_tokens", "int", False, "Input tokens read from the provider's prompt cache.", 0),
    Column("cache_write_tokens", "int", False, "Input tokens written to the provider's prompt cache.", 0),
    Column("reasoning_tokens", "int", False, "Reasoning tokens (part of output tokens).", 0),
    Column("reported_cost_usd", "float", False, "Cost the source itself reported, USD.", 0),
    Column("user_id", "str", False, "End user of the application."),
    Column("session_id", "str", False, "Conversation / session id."),
    Column("environment", "str", False, "Deployment environment (production, staging, ...)."),
    Column("app", "str", False, "Application or service name."),
    Column("feature", "str", False, "Product feature the call served."),
    Column("endpoint", "str", False, "API endpoint / route the call served."),
    Column("prompt_name", "str", False, "Prompt template name."),
    Column("prompt_version", "str", False, "Prompt template version."),
    Column("documents", "json", False, "Retrieved documents: [{id, score, text, rank}]."),
    Column("source_format", "str", True, "Reader that produced the row."),
    Column("source_file", "str", True, "Landing file the row came from."),
    Column("source_line", "int", True, "Line (JSONL) or record number (JSON documents), 1-based.", 1),
    Column("metadata", "json", False, "Every other attribute of the source span."),
    Column("export_hour", "timestamp", True, "The hourly partition (landing hour) the row was ingested in."),
    Column("schema_version", "int", True, "Canonical schema version the row was written with.", 1),
)

# Columns of the spans table the ingest step adds after reading and validating (readers never produce them).
# A frame has them only when the step applies: `pii_masked` only when ingest.mask_pii is on.
SPAN_INGEST_COLUMNS: tuple[Column, ...] = (
    Column("pii_masked", "int", False, "Values replaced by PII masking at ingest in this row's messages, output, "
           "documents, error and metadata; null when masking was off (ingest.mask_pii).", 0),
)
# Every column the warehouse's spans table can hold.
SPAN_TABLE_COLUMNS: tuple[Column, ...] = SPAN_COLUMNS + SPAN_INGEST_COLUMNS

SPAN_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS)
# What people wrote and read: most of a span's bytes, needed by the quality checks but not by costs or reports.
SPAN_CONTENT_COLUMNS: tuple[str, ...] = ("input_messages", "output_text", "output_messages", "documents")
SPAN_COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in SPAN_COLUMNS}
REQUIRED_SPAN_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS if c.required)
JSON_SPAN_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS if c.type == "json")
INT_SPAN_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS if c.type == "int")
FLOAT_SPAN_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS if c.type == "float")
TIMESTAMP_SPAN_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPAN_COLUMNS if c.type == "timestamp")
TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

# Values above these are not plausible for one span and are quarantined as `absurd_value`.
ABSURD_LIMITS: dict[str, float] = {
    "latency_ms": 24 * 3600 * 1000.0,  # a single call running longer than a day
    "time_to_first_token_ms": 24 * 3600 * 1000.0,
    "input_tokens": 50_000_000,
    "output_tokens": 50_000_000,
    "total_tokens": 100_000_000,
    "cached_input_tokens": 50_000_000,
    "cache_write_tokens": 50_000_000,
    "reasoning_tokens": 50_000_000,
    "reported_cost_usd": 100_000.0,
    "temperature": 10.0,
    # Also keeps integers inside Int64: a larger max_tokens would crash the cast instead of being quarantined.
    "max_tokens": 100_000_000,
}

QUARANTINE_COLUMNS: tuple[Column, ...] = (
    Column("export_hour", "timestamp", True, "The hourly partition the record was read in."),
    Column("source_file", "str", True, "Landing file the record came from."),
    Column("source_line", "int", False, "Line or record number, 1-based; null when the whole file failed."),
    Column("source_format", "str", False, "Detected format, null when unknown."),
    Column("trace_id", "str", False, "Trace id, when it could be read."),
    Column("span_id", "str", False, "Span id, when it could be read."),
    Column("reason", "str", True, "Machine-readable reason code (see QUARANTINE_REASONS)."),
    Column("detail", "str", True, "Human-readable explanation naming the field at fault."),
    Column("raw", "str", False, "The raw record text, truncated to RAW_TEXT_LIMIT characters."),
    Column("schema_version", "int", True, "Canonical schema version."),
    Column("pii_masked", "int", False, "Values replaced by PII masking in raw and detail; null when masking was "
           "off (and for quarantined feedback, which is not masked).", 0),
)
QUARANTINE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in QUARANTINE_COLUMNS)
RAW_TEXT_LIMIT = 2000

QUARANTINE_REASONS: dict[str, str] = {
    "unreadable_file": "the file could not be opened or decompressed at all",
    "corrupt_gzip": "the gzip stream is truncated or corrupt; records before the damage were kept",
    "invalid_encoding": "the record is not valid UTF-8",
    "invalid_json": "the record is not valid JSON",
    "invalid_csv": "a CSV row with broken quoting, or another number of fields than the header",
    "unknown_format": "the record matches none of the supported export formats",
    "unsupported_record": "the record is of the detected format but not a span (e.g. a Langfuse score)",
    "missing_required_field": "a required canonical field is missing or empty",
    "invalid_type": "a field has a value of the wrong type",
    "negative_value": "a count or duration is negative",
    "absurd_value": "a value is outside any plausible range",
    "end_before_start": "the span ends before it starts",
    "invalid_kind": "the span kind is not one of the canonical kinds",
    "invalid_status": "the span status is not ok or error",
    "duplicate_span_id": "the span id was already seen in this export hour",
    "orphan_patch": "a LangSmith patch whose run is not in the same export hour",
    "orphan_event": "an OTLP log record (GenAI content event) whose span is not in the same export hour",
}

AUDIT_COLUMNS: tuple[Column, ...] = (
    Column("export_hour", "timestamp", True, "The hourly partition."),
    Column("source_file", "str", True, "Landing file (relative to the landing root)."),
    Column("source_format", "str", False, "Detected format; null when the file was unreadable or unknown."),
    Column("records_read", "int", True, "Lines (JSONL) or records (JSON documents) read from the file."),
    Column("spans_found", "int", True, "Candidate spans found, unreadable records included; for log files, log "
           "records found. Always spans_written + spans_quarantined + events_joined + records_ignored."),
    Column("spans_written", "int", True, "Spans written to the spans table."),
    Column("spans_quarantined", "int", True, "Spans and records sent to quarantine."),
    Column("quarantined_by_reason", "json", True, "Quarantined count per reason code."),
    Column("late_spans", "int", True, "Written spans whose start time falls outside the export hour."),
    Column("file_error", "str", False, "Why the file could not be read in full, if so."),
    Column("schema_version", "int", True, "Canonical schema version."),
    Column("pii_masked", "int", False, "Values PII masking replaced in the file's spans and quarantined records; "
           "null when masking was off.", 0),
    Column("pii_masked_by_pattern", "json", False, "The same count per pattern, e.g. {\"email\": 3}; null when "
           "masking was off."),
    Column("events_joined", "int", True, "Log records (GenAI content events) of the file joined into a span of "
           "the export hour (otlp_logs).", 0),
    Column("records_ignored", "int", True, "Log records of the file that are not GenAI events (plain application "
           "logs): counted, not stored.", 0),
)
AUDIT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in AUDIT_COLUMNS)

_PANDAS_DTYPES: dict[str, str] = {
    "str": "object",
    "json": "object",
    "int": "Int64",
    "float": "float64",
    "timestamp": "datetime64[ns, UTC]",
}


def pandas_dtype(column: Column) -> str:
    """Return the pandas dtype a column of this logical type is held in."""
    return _PANDAS_DTYPES[column.type]


def empty_frame(columns: tuple[Column, ...]) -> pd.DataFrame:
    """Return an empty DataFrame with the given columns and their canonical dtypes."""
    return pd.DataFrame({c.name: pd.Series(dtype=pandas_dtype(c)) for c in columns})


def conform(df: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Return df with exactly the given columns, in order, cast to their canonical dtypes (missing = null)."""
    out = pd.DataFrame(index=df.index)
    for c in columns:
        if c.name in df.columns:
            series = df[c.name]
        else:
            series = pd.Series([None] * len(df), index=df.index, dtype="object")
        dtype = pandas_dtype(c)
        if c.type == "timestamp":
            out[c.name] = pd.to_datetime(series, utc=True, errors="raise").astype(dtype)
        elif c.type == "int":
            out[c.name] = pd.to_numeric(series, errors="raise").astype("Int64")
        elif c.type == "float":
            out[c.name] = pd.to_numeric(series, errors="raise").astype("float64")
        else:
            out[c.name] = series.astype("object").where(series.notna(), None)
    return out.reset_index(drop=True)


SPAN_KIND_DESCRIPTIONS: dict[str, str] = {
    "llm": "a model call that generates text (chat or completion)",
    "embedding": "a call that turns text into vectors",
    "retrieval": "a search over a document store (vector search, BM25, ...)",
    "rerank": "a reranker call ordering retrieved documents",
    "tool": "a tool / function invocation",
    "chain": "any other step grouping child spans (agent, workflow, HTTP handler, ...)",
}


def markdown_table(columns: tuple[Column, ...]) -> str:
    """The columns as a Markdown table (name, type, required, meaning), as docs/formats.md shows them."""
    lines = ["| column | type | required | meaning |", "|---|---|---|---|"]
    for c in columns:
        lines.append(f"| `{c.name}` | {c.type} | {'yes' if c.required else ''} | {c.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(SPAN_COLUMNS))


# ----------------------------------------------------------------------------------------------------------
# Feedback events (aiobs_pipeline/feedback/): the canonical feedback-event table, its audit, and the allowed
# event types and thumbs-down reasons. Quarantined feedback uses QUARANTINE_COLUMNS (span_id = the response).
# ----------------------------------------------------------------------------------------------------------

# Explicit events a user gives on purpose, then implicit ones the application observes.
FEEDBACK_EVENT_TYPES: tuple[str, ...] = (
    "thumbs_up", "thumbs_down", "rating", "hallucination_report",
    "regenerated", "edited", "copied", "session_abandoned",
)
THUMBS_DOWN_REASONS: tuple[str, ...] = (
    "incorrect_information", "not_helpful", "too_verbose", "misunderstood_question", "other",
)
# The feedback formats `feedback.events.detect_format` recognises (the source_format column).
FEEDBACK_SOURCE_FORMATS: tuple[str, ...] = ("native", "langfuse", "langsmith", "langfuse_blob")
RATING_MIN, RATING_MAX = 1, 5

FEEDBACK_COLUMNS: tuple[Column, ...] = (
    Column("event_id", "str", True, "Event id from the source; 'derived-<hash>' of (span_id or trace_id, user_id, "
           "event_type, timestamp) when the source has none."),
    Column("span_id", "str", False, "The response (span) the feedback is about; null for trace-level feedback."),
    Column("trace_id", "str", False, "Trace of the response; at least one of span_id and trace_id is present."),
    Column("user_id", "str", False, "End user who gave the feedback."),
    Column("session_id", "str", False, "Conversation / session id."),
    Column("event_type", "str", True, "One of FEEDBACK_EVENT_TYPES."),
    Column("value", "float", False, "Rating 1-5 for rating events; the source's numeric score for mapped "
           "Langfuse/LangSmith feedback; else null."),
    Column("reason", "str", False, "thumbs_down only: one of THUMBS_DOWN_REASONS (null when not given)."),
    Column("comment", "str", False, "Free text the user wrote."),
    Column("original_text", "str", False, "edited only: the answer as generated."),
    Column("edited_text", "str", False, "edited only: the answer after the user's edit (or a correction)."),
    Column("diff_size", "int", False, "edited only: Levenshtein distance in characters between original and "
           "edited text.", 0),
    Column("duration_seconds", "float", False, "session_abandoned only: how long the session lasted.", 0),
    Column("timestamp", "timestamp", True, "When the feedback was given, UTC."),
    Column("source", "str", False, "Who produced it, as the source says (app, api, annotation, ...)."),
    Column("source_format", "str", True, "Reader that produced the row: native, langfuse, langfuse_blob or langsmith."),
    Column("source_file", "str", True, "Feedback file the row came from (relative to the feedback root)."),
    Column("source_line", "int", True, "Line (JSONL) or record number (JSON documents), 1-based.", 1),
    Column("export_hour", "timestamp", True, "The hourly partition (feedback landing hour) it was read in."),
    Column("schema_version", "int", True, "Canonical schema version the row was written with.", 1),
)
FEEDBACK_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FEEDBACK_COLUMNS)

FEEDBACK_AUDIT_COLUMNS: tuple[Column, ...] = (
    Column("export_hour", "timestamp", True, "The hourly partition."),
    Column("source_file", "str", True, "Feedback file (relative to the feedback root)."),
    Column("source_format", "str", False, "Format of the file's events (the most frequent one); null if none."),
    Column("records_read", "int", True, "Lines (JSONL) or records (JSON documents) read from the file."),
    Column("events_found", "int", True, "Candidate events found, unreadable records included."),
    Column("events_written", "int", True, "Events written to the feedback events table."),
    Column("events_quarantined", "int", True, "Events and records sent to quarantine."),
    Column("quarantined_by_reason", "json", True, "Quarantined count per reason code."),
    Column("late_events", "int", True, "Written events whose timestamp falls outside the export hour."),
    Column("file_error", "str", False, "Why the file could not be read in full, if so."),
    Column("schema_version", "int", True, "Canonical schema version."),
)
FEEDBACK_AUDIT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FEEDBACK_AUDIT_COLUMNS)
# ------------------------------------------------ end feedback ------------------------------------------------
