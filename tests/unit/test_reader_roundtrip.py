"""Generator -> readers round trip: what `aiobs generate` writes in each format reads back whole and alike.

Expectations come from the generator's own account of what it wrote: its `GenerationSummary` and the traces
`build_hour` builds for the same arguments (the function `generate` writes the hours from), joined to the read
spans by span id. No count is written down here.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pytest

from aiobs_pipeline.generate import FORMATS, default_incidents, generate
from aiobs_pipeline.generate.scenario import APP, ENVIRONMENT, build_users
from aiobs_pipeline.generate.traces import Span, Trace, build_hour
from aiobs_pipeline.ingest.messages import to_messages
from aiobs_pipeline.ingest.partition import ingest_partition

# The default incidents fall on the window's last day; 13:00 UTC is their error burst, so failed calls are
# part of the round trip in most formats.
START = datetime(2025, 6, 10, 13, tzinfo=UTC)
HOURS = 2
END = START + timedelta(hours=HOURS)
SEED, SCALE = 3, 0.5
# Readers whose messages and documents come from ingest/messages.py (native stores messages as sent).
SHARED_SHAPE_FORMATS = ("otlp", "openinference", "langfuse", "langsmith")
RAG_KINDS = {"llm", "embedding", "retrieval", "rerank"}


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    landing = tmp_path_factory.mktemp("round_trip") / "landing"
    summary = generate(landing, START, END, seed=SEED, scale=SCALE)
    hours = [START + timedelta(hours=i) for i in range(HOURS)]
    results = [ingest_partition(landing, hour) for hour in hours]
    users = build_users(SEED)
    incidents = default_incidents(START, END)
    written: dict[str, tuple[Trace, Span]] = {}
    for hour in hours:
        for trace in build_hour(SEED, hour, SCALE, users, incidents, FORMATS).traces:
            for span in trace.spans:
                written[span.span_id] = (trace, span)
    spans = pd.concat([r.spans for r in results], ignore_index=True)
    return {"summary": summary, "results": results, "spans": spans, "written": written}


def rows(round_trip: dict[str, Any]) -> list[tuple[dict[str, Any], Trace, Span]]:
    """Every read span with the generator's trace and span it came from."""
    out = []
    for row in round_trip["spans"].to_dict("records"):
        trace, span = round_trip["written"][row["span_id"]]
        out.append((row, trace, span))
    return out


def json_value(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def test_the_generators_own_model_matches_what_it_wrote(round_trip: dict[str, Any]) -> None:
    """The expectations below are built with build_hour: it must account for every span written."""
    written = Counter(trace.fmt for trace, _ in round_trip["written"].values())
    assert dict(written) == round_trip["summary"].spans_by_format
    kinds = {fmt: {span.kind for trace, span in round_trip["written"].values() if trace.fmt == fmt}
             for fmt in FORMATS}
    # The window exercises retrieval, rerank and embedding steps in every format, not only model calls.
    assert all(RAG_KINDS <= kinds[fmt] for fmt in FORMATS), kinds


def test_nothing_is_quarantined_and_every_file_is_read(round_trip: dict[str, Any]) -> None:
    for result in round_trip["results"]:
        assert result.quarantined.empty, result.quarantined[["source_file", "reason", "detail"]].to_string()
        assert result.unreadable_files == []
        audit = result.audit
        assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    read_formats = set(round_trip["spans"]["source_format"])
    assert read_formats == set(FORMATS)


def test_span_count_and_ids_per_format_match_the_generator(round_trip: dict[str, Any]) -> None:
    spans = round_trip["spans"]
    assert spans.groupby("source_format").size().to_dict() == round_trip["summary"].spans_by_format
    assert spans["span_id"].is_unique
    for row, trace, _ in rows(round_trip):
        assert row["source_format"] == trace.fmt


def test_every_kind_and_status_per_format_reads_back(round_trip: dict[str, Any]) -> None:
    found = Counter((row["source_format"], row["kind"]) for row, _, _ in rows(round_trip))
    expected = Counter((trace.fmt, span.kind) for trace, span in round_trip["written"].values())
    assert found == expected
    for row, trace, span in rows(round_trip):
        assert (row["kind"], row["status"]) == (span.kind, span.status), (trace.fmt, span.name)
        if span.status == "error":
            assert row["error_message"], (trace.fmt, span.name)


def test_retrieval_and_rerank_spans_carry_the_documents_written(round_trip: dict[str, Any]) -> None:
    checked = Counter()
    for row, trace, span in rows(round_trip):
        if span.kind not in ("retrieval", "rerank"):
            continue
        documents = json_value(row["documents"])
        assert documents, (trace.fmt, span.kind)
        assert [(d["id"], d["text"], d["rank"]) for d in documents] == [
            (d.doc_id, d.text, position) for position, d in enumerate(span.documents, start=1)], trace.fmt
        assert [d["score"] for d in documents] == pytest.approx([d.score for d in span.documents])
        checked[(trace.fmt, span.kind)] += 1
    assert {fmt for fmt, _ in checked} == set(FORMATS)


def test_llm_spans_carry_conversation_usage_model_and_application_context(round_trip: dict[str, Any]) -> None:
    checked = Counter()
    for row, trace, span in rows(round_trip):
        if span.kind != "llm":
            continue
        where = (trace.fmt, span.name, span.status)
        messages = json_value(row["input_messages"])
        assert [m["role"] for m in messages] == [m["role"] for m in span.messages], where
        assert messages[-1]["content"] == span.messages[-1]["content"], where
        assert row["model"] in (span.model.name, span.model.response_model), where
        assert (row["user_id"], row["feature"]) == (trace.user_id, trace.feature), where
        assert (row["session_id"], row["endpoint"], row["environment"], row["app"]) == (
            trace.session_id, trace.endpoint, ENVIRONMENT, APP), where
        assert (row["prompt_name"], row["prompt_version"]) == (trace.prompt_name, trace.prompt_version), where
        if span.status == "ok":
            assert (row["input_tokens"], row["output_tokens"]) == (span.input_tokens, span.output_tokens), where
            if span.output_text:
                assert row["output_text"] == span.output_text, where
        checked[trace.fmt] += 1
    assert set(checked) == set(FORMATS)


def test_messages_and_documents_take_one_shape_in_every_reader(round_trip: dict[str, Any]) -> None:
    tool_calls = Counter()
    for row, trace, _ in rows(round_trip):
        if trace.fmt not in SHARED_SHAPE_FORMATS:
            continue
        for column in ("input_messages", "output_messages"):
            for message in json_value(row[column]) or []:
                assert isinstance(message["role"], str), (trace.fmt, column, message)
                assert message["content"] is None or isinstance(message["content"], str), (trace.fmt, message)
                for call in message.get("tool_calls", []):
                    assert set(call) == {"id", "name", "arguments"}, (trace.fmt, call)
                    tool_calls[trace.fmt] += 1
        for document in json_value(row["documents"]) or []:
            assert {"id", "score", "text", "rank"} <= set(document), (trace.fmt, document)
            assert "content" not in document and "page_content" not in document, (trace.fmt, document)
    agent_formats = {trace.fmt for trace, span in round_trip["written"].values()
                     if span.tool_calls and trace.fmt in SHARED_SHAPE_FORMATS}
    assert set(tool_calls) == agent_formats


def test_one_message_in_every_source_shape_normalises_alike() -> None:
    """The same assistant turn as OpenAI, LangChain (dict and serialised) and OpenTelemetry GenAI write it."""
    expected = [{"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "name": "run_tests", "arguments": {"path": "tests/"}}]},
        {"role": "tool", "content": "5 passed", "tool_call_id": "call_1"}]
    openai = [{"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": {"path": "tests/"}}}]},
        {"role": "tool", "content": "5 passed", "tool_call_id": "call_1"}]
    langchain = [{"type": "ai", "content": [{"type": "text", "text": "Checking."}], "additional_kwargs": {},
                  "tool_calls": [{"name": "run_tests", "args": {"path": "tests/"}, "id": "call_1",
                                  "type": "tool_call"}], "response_metadata": {}, "id": "run-1"},
                 {"type": "tool", "content": "5 passed", "tool_call_id": "call_1", "id": None}]
    serialised = [{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                   "kwargs": langchain[0]},
                  {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
                   "kwargs": langchain[1]}]
    genai = [{"role": "assistant", "parts": [
        {"type": "text", "content": "Checking."},
        {"type": "tool_call", "id": "call_1", "name": "run_tests", "arguments": {"path": "tests/"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "5 passed"}]}]
    for shape in (openai, langchain, serialised, genai):
        assert to_messages(shape) == expected, shape
