"""Conformance of the OTLP reader with the instrumentation libraries, table-driven over recorded fixtures.

Every `tests/fixtures/conformance/<library>[-<mode>]/manifest.json` names the files a real library wrote
(OTLP/JSON spans, and logs in event modes) while making chat, streamed chat and embeddings calls against the
local server, and what the server answered for each call (model, tokens, text, the user and session the
script set). Each fixture goes through the real partition ingest (`ingest_files`), and each call is checked
aspect by aspect, so a failure names library, call and aspect (e.g. `logfire-stream-latency`):

- rows: exactly one row of the call's kind (llm for chat and stream, embedding for embeddings) overlaps the
  call, and the fixture has no more llm/embedding rows than calls;
- model: the model the server answered;
- tokens: input, output, cached and reasoning tokens equal to the server's usage;
- content: where the library captures content, the request's messages each exactly once, and the answer text;
- user_session: the user and session the script set (an explicit user beats the request's `user` field, which
  is the user only when nothing else is set);
- latency: a streamed call's row ends after the first content reached the client and lasts at least the
  server's time to first token;
- ttft: where the library writes one, a time to first token within the row's latency;
- metadata: bounded (under METADATA_LIMIT bytes of JSON, no vectors, no per-chunk events);
- quarantine (per fixture): nothing quarantined.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from aiobs_pipeline.ingest import detect
from aiobs_pipeline.ingest.partition import PartitionIngest, ingest_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conformance"
MANIFESTS = sorted(FIXTURES.glob("*/manifest.json"))
ROW_KINDS = {"chat": "llm", "stream": "llm", "embeddings": "embedding"}
ASPECTS = ("rows", "model", "tokens", "content", "user_session", "latency", "ttft", "metadata")
TOKENS = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
          "cached_input_tokens": "cached_tokens", "reasoning_tokens": "reasoning_tokens"}
METADATA_LIMIT = 4096
VECTOR_LENGTH = 64  # a list of more numbers than this in metadata is an embedding vector
CHUNK_EVENTS = ("llm.content.completion.chunk", "gen_ai.content.completion.chunk")
NEEDS_LOGS = "needs OTLP logs reader"


# What a library does not write at all, so no reader can give it: (fixture, call kind) -> {column: why}.
# Each claim is checked against the raw span (no attribute key with the column's hint), and the column must
# then be null, not a guess.
LIBRARY_GAPS: dict[tuple[str, str], dict[str, str]] = {
    ("openllmetry", "stream"): {"reasoning_tokens": "OpenLLMetry 0.62.4 writes reasoning tokens only on "
                                                    "unstreamed calls"},
    ("openllmetry-events", "stream"): {"reasoning_tokens": "OpenLLMetry 0.62.4 writes reasoning tokens only on "
                                                           "unstreamed calls"},
    ("openllmetry-0.33", "chat"): {"reasoning_tokens": "OpenLLMetry 0.33 writes no reasoning tokens"},
    ("openllmetry-0.33", "stream"): {c: "OpenLLMetry 0.33 writes no usage on streamed calls" for c in
                                     ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")},
}
for _fixture in ("otel-official", "otel-official-events", "otel-official-legacy"):
    for _kind in ("chat", "stream"):
        LIBRARY_GAPS[(_fixture, _kind)] = {
            "cached_input_tokens": "opentelemetry-instrumentation-openai-v2 2.4b0 writes no cache read tokens",
            "reasoning_tokens": "opentelemetry-instrumentation-openai-v2 2.4b0 writes no reasoning tokens"}
for _kind in ("chat", "stream"):
    LIBRARY_GAPS[("openlit", _kind)] = {"reasoning_tokens": "OpenLIT 1.45.0 writes no reasoning tokens for "
                                                            "OpenAI chat completions"}
GAP_HINTS = {"input_tokens": ("prompt_tokens", "input_tokens"), "output_tokens": ("completion_tokens", "output_tokens"),
             "cached_input_tokens": ("cache",), "reasoning_tokens": ("reasoning",)}


def raw_span(folder: str, span_id: str) -> dict[str, Any]:
    """One span as the library wrote it, read from the fixture's span file as it is."""
    info = manifest(FIXTURES / folder / "manifest.json")
    for line in (FIXTURES / folder / info["files"]["spans"]).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        for resource in json.loads(line).get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    if span.get("spanId", "").lower() == span_id:
                        return span
    raise AssertionError(f"span {span_id} not in {folder}")


def raw_attribute_keys(folder: str, span_id: str) -> set[str]:
    """The attribute keys the library wrote on one span."""
    return {a["key"] for a in raw_span(folder, span_id).get("attributes", [])}


def has_logs_reader() -> bool:
    """True when a reader for OTLP/JSON log files is registered (the h3-logs branch adds it)."""
    return any("log" in reader.FORMAT for reader in detect.READERS)


def manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def ingested(folder: str) -> tuple[PartitionIngest, bool]:
    """The fixture's files through partition ingest; and whether its log file could be read."""
    root = FIXTURES / folder
    info = manifest(root / "manifest.json")
    files = [root / info["files"]["spans"]]
    logs = info["files"].get("logs")
    logs_read = bool(logs) and has_logs_reader()
    if logs_read:
        files.append(root / logs)
    first = min(call["client_started_unix_nano"] for call in info["calls"])
    hour = datetime.fromtimestamp(first // 1_000_000_000, tz=UTC).replace(minute=0, second=0)
    return ingest_files([f for f in files if f.exists()], hour, root), logs_read


def cases() -> list[Any]:
    out = []
    for path in MANIFESTS:
        info = manifest(path)
        for index, call in enumerate(info["calls"]):
            for aspect in ASPECTS:
                out.append(pytest.param(path.parent.name, index, aspect,
                                        id=f"{path.parent.name}-{call['kind']}-{aspect}"))
    return out


def ns(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(pd.Timestamp(value).value)


def call_rows(spans: pd.DataFrame, call: dict[str, Any]) -> pd.DataFrame:
    """Rows of the call's kind whose time overlaps the call (as the client measured it)."""
    kind = ROW_KINDS[call["kind"]]
    started, ended = call["client_started_unix_nano"], call["client_ended_unix_nano"]
    rows = spans[spans["kind"] == kind]
    keep = [ns(r.start_time) <= ended and (ns(r.end_time) or ns(r.start_time)) >= started for r in rows.itertuples()]
    return rows[keep]


def value(row: pd.Series, column: str) -> Any:
    item = row[column]
    if isinstance(item, str) and column in ("input_messages", "output_messages", "metadata", "request_params"):
        return orjson.loads(item)
    return None if item is None or (not isinstance(item, list | dict) and pd.isna(item)) else item


@pytest.mark.parametrize("folder", [p.parent.name for p in MANIFESTS])
def test_nothing_quarantined(folder: str) -> None:
    result, _ = ingested(folder)
    assert len(result.quarantined) == 0, result.quarantined[["reason", "detail"]].to_dict("records")


@pytest.mark.parametrize("folder", [p.parent.name for p in MANIFESTS])
def test_no_extra_call_rows(folder: str) -> None:
    result, _ = ingested(folder)
    calls = manifest(FIXTURES / folder / "manifest.json")["calls"]
    for kind in ("llm", "embedding"):
        expected = sum(1 for c in calls if ROW_KINDS[c["kind"]] == kind)
        found = result.spans[result.spans["kind"] == kind]
        assert len(found) == expected, f"{kind} rows: {found[['name', 'span_id']].to_dict('records')}"


@pytest.mark.parametrize(("folder", "index", "aspect"), cases())
def test_call(folder: str, index: int, aspect: str) -> None:
    info = manifest(FIXTURES / folder / "manifest.json")
    call = info["calls"][index]
    captures = info.get("captures") or {}
    result, logs_read = ingested(folder)
    rows = call_rows(result.spans, call)
    if aspect == "rows":
        assert len(rows) == 1, f"{len(rows)} {ROW_KINDS[call['kind']]} rows overlap the call"
        return
    if len(rows) != 1:
        pytest.fail(f"no single row for the call ({len(rows)} found); see the rows aspect")
    row = rows.iloc[0]
    response = call["response"]
    stream = call["kind"] == "stream"
    if aspect == "model":
        assert value(row, "model") == response["model"]
    elif aspect == "tokens":
        found = {column: value(row, column) for column in TOKENS}
        expected = {column: response[key] for column, key in TOKENS.items()}
        if call["kind"] == "embeddings":
            found["output_tokens"] = found["output_tokens"] or 0  # an embedding has no output tokens to report
        gaps = LIBRARY_GAPS.get((folder, call["kind"]), {})
        if gaps:
            keys = raw_attribute_keys(folder, row["span_id"])
            for column in gaps:
                written = [k for k in keys if any(h in k for h in GAP_HINTS[column])]
                assert not written, f"{column} is listed as not written, but the span has {written}"
                assert found.pop(column) is None, f"{column} was not written by the library, yet the row has one"
                expected.pop(column)
        for column in ("cached_input_tokens", "reasoning_tokens", "output_tokens"):
            if column in found and found[column] is None and expected[column] == 0:
                found[column] = 0  # nothing to report is not a wrong count
        assert found == expected
    elif aspect == "content":
        if not captures.get("content", True):
            pytest.skip(f"{info['library']} records no content in this mode")
        try:
            check_content(row, call, json.dumps(raw_span(folder, row["span_id"])))
        except AssertionError:
            if info["files"].get("logs") and not logs_read:
                pytest.xfail(NEEDS_LOGS)  # the content is in the log file, which this branch cannot read
            raise
    elif aspect == "user_session":
        if captures.get("user_session") in (None, False, "none"):
            pytest.skip(f"{info['library']} records no user or session in this mode")
        expected_user = call.get("user_id") or call.get("request_user")
        assert (value(row, "user_id"), value(row, "session_id")) == (expected_user, call.get("session_id"))
    elif aspect == "latency":
        if not stream:
            assert value(row, "latency_ms") is not None
            return
        first = call.get("client_first_content_unix_nano")
        assert ns(row["end_time"]) >= first, "the row ends before the first content reached the client"
        assert value(row, "latency_ms") >= info["server"]["ttft_ms"]
    elif aspect == "ttft":
        if not stream:
            pytest.skip("time to first token applies to streamed calls")
        if not captures.get("ttft"):
            pytest.skip(f"{info['library']} writes no time to first token")
        ttft = value(row, "time_to_first_token_ms")
        assert ttft is not None and 0 < ttft <= value(row, "latency_ms")
    elif aspect == "metadata":
        metadata = value(row, "metadata") or {}
        text = orjson.dumps(metadata)
        assert len(text) < METADATA_LIMIT, f"metadata is {len(text)} bytes: {sorted(metadata)}"
        assert not any(name.encode() in text for name in CHUNK_EVENTS)
        assert not _has_vector(metadata)


def check_content(row: pd.Series, call: dict[str, Any], raw: str) -> None:
    """The request's messages each exactly once and in order, and the answer text (chat calls); an embedding's
    input text as one user message wherever the library wrote it on the span (`raw`, the span's JSON)."""
    if call["kind"] == "embeddings":
        assert value(row, "output_text") is None
        text = call["request"]["input"]
        if text in raw:
            assert value(row, "input_messages") == [{"role": "user", "content": text}]
        return
    messages = value(row, "input_messages") or []
    pairs = [(m.get("role"), m.get("content")) for m in messages]
    assert pairs == [(m["role"], m["content"]) for m in call["request"]["messages"]]
    assert value(row, "output_text") == call["response"]["output_text"]


def _has_vector(item: Any) -> bool:
    if isinstance(item, dict):
        return any(_has_vector(v) for v in item.values())
    if isinstance(item, list):
        if len(item) > VECTOR_LENGTH and all(isinstance(v, int | float) for v in item):
            return True
        return any(_has_vector(v) for v in item)
    if isinstance(item, str) and item[:1] in ("{", "["):
        try:
            return _has_vector(orjson.loads(item))
        except orjson.JSONDecodeError:
            return False
    return False
