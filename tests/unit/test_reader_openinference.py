"""Phoenix span-export reader and the OpenInference attribute mapping: the spec's published examples,
the three attribute shapes (flat, semi-flat, nested), span kinds, documents, errors, malformed spans, and
the rows' passage through partition ingest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import detect, openinference
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import iter_records
from aiobs_pipeline.ingest.partition import ingest_files, landing_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openinference"
HOUR = datetime(2026, 9, 21, 14, tzinfo=UTC)
TRACE = "0af7651916cd43dd8448eb211c80319c"


def phoenix(span_id: str, kind: str, attributes: dict[str, Any], *, name: str = "span", parent: str | None = None,
            status: str = "OK", message: str = "", events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A span as Phoenix's REST API (GET /v1/projects/{id}/spans) returns it."""
    return {
        "id": f"U3BhbjoxMjM{span_id[:2]}", "name": name, "context": {"trace_id": TRACE, "span_id": span_id},
        "span_kind": kind, "parent_id": parent, "start_time": "2026-09-21T14:05:00.000000+00:00",
        "end_time": "2026-09-21T14:05:01.250000+00:00", "status_code": status, "status_message": message,
        "attributes": attributes, "events": events or [],
    }


def read(*values: Any) -> list[Any]:
    return list(openinference.read([RawRecord(i, json.dumps(v), v) for i, v in enumerate(values, start=1)]))


def one(value: Any) -> dict[str, Any]:
    out = read(value)
    assert len(out) == 1 and isinstance(out[0], dict), out
    return out[0]


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat dotted keys as Phoenix stores them: nested objects, numeric segments as list positions."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: lists(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node
    return lists(root)


LLM_ATTRIBUTES = {
    "llm.model_name": "claude-sonnet-4-5-20250929", "llm.provider": "anthropic", "llm.system": "anthropic",
    "llm.invocation_parameters": json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 0.3,
                                             "top_p": 0.95, "stop_sequences": ["\n\nHuman:"]}),
    "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be exact.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "What is in this picture?",
    "llm.input_messages.1.message.contents.1.message_content.type": "image",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://example.com/cat.png",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.contents.0.message_content.type": "reasoning",
    "llm.output_messages.0.message.contents.0.message_content.text": "It has whiskers.",
    "llm.output_messages.0.message.contents.1.message_content.type": "text",
    "llm.output_messages.0.message.contents.1.message_content.text": "A cat.",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "toolu_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "label",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{\"label\": \"cat\"}",
    "llm.token_count.prompt": 2255, "llm.token_count.completion": 40, "llm.token_count.total": 2295,
    "llm.token_count.prompt_details.cache_read": 512, "llm.token_count.prompt_details.cache_write": 1733,
    "llm.token_count.completion_details.reasoning": 12,
    "llm.cost.total": 0.0071, "llm.cost.prompt": 0.0065,
    "llm.prompt_template.template": "Describe {image}", "llm.prompt_template.version": "v7",
    "llm.prompt_template.variables": json.dumps({"image": "cat.png"}),
    "prompt.id": "describe-image", "user.id": "u-1", "session.id": "s-1",
    "metadata": json.dumps({"experiment": "B"}), "tag.tags": ["vision"], "input.value": "What is in this picture?",
    "aiobs.feature": "vision", "aiobs.prompt.version": "v7-override",
}


def test_matches_phoenix_shapes_only() -> None:
    span = phoenix("a1" * 8, "LLM", {})
    assert openinference.matches(span)
    assert openinference.matches({"data": [span], "next_cursor": None})
    assert openinference.matches({"context.span_id": "a1", "span_kind": "LLM", "attributes.llm.model_name": "x"})
    assert openinference.matches({"context": {"span_id": "a"}, "attributes": {"llm.model_name": "gpt-4o"}})
    assert not openinference.matches({"context": {"span_id": "a"}, "attributes": {"http.route": "/"}})
    assert not openinference.matches({"resourceSpans": []})
    assert not openinference.matches({"span_id": "a", "trace_id": "b", "name": "native"})
    assert not openinference.matches({"data": []})
    assert detect.detect_reader(span) is openinference


def test_real_openinference_spec_examples() -> None:
    rows = list(openinference.read(iter_records(FIXTURES / "openinference_spec_examples.json")))
    assert [r["source_line"] for r in rows] == [1, 2, 3, 4]
    query, hello, tool_call, synthesis = rows
    assert query["kind"] == "chain" and query["parent_span_id"] is None
    assert query["trace_id"] == "ed7b336d-e71a-46f0-a334-5f2e87cb6cfc"
    assert query["start_time"] == datetime(2023, 9, 7, 18, 54, 47, 293922, tzinfo=UTC)  # -06:00 to UTC
    assert query["latency_ms"] == pytest.approx(2028.144)
    assert query["metadata"]["input.value"] == "Is anybody there?"
    assert hello["kind"] == "llm" and hello["parent_span_id"] == query["span_id"]
    assert [m["role"] for m in hello["input_messages"]] == ["system", "user"]
    assert hello["output_text"] == "assistant: Yes I am here"  # no output messages: output.value is the answer
    assert tool_call["model"] == "gpt-3.5-turbo-0613" and tool_call["temperature"] == 0.1
    assert tool_call["request_params"] is None  # "max_tokens": null was not sent
    assert tool_call["output_messages"] == [{"role": "assistant", "content": None, "tool_calls": [
        {"id": None, "name": "multiply", "arguments": "{\n  \"a\": 23,\n  \"b\": 87\n}"}]}]
    assert tool_call["output_text"] is None  # a JSON output.value (tool calls) is not answer text
    assert (tool_call["input_tokens"], tool_call["output_tokens"], tool_call["total_tokens"]) == (229, 21, 250)
    assert synthesis["input_messages"][3] == {"role": "tool", "content": "2001", "name": "multiply"}
    assert synthesis["output_text"] == "The product of 23 times 87 is 2001."
    assert synthesis["metadata"]["output.value"] == synthesis["output_text"]  # not consumed: messages answered


def test_llm_span_from_phoenix_rest_export() -> None:
    events = [{"name": "First Token Stream Event", "timestamp": "2026-09-21T14:05:00.400000+00:00",
               "attributes": {}}]
    row = one(phoenix("b1" * 8, "LLM", LLM_ATTRIBUTES, name="Anthropic.messages.create", events=events))
    assert row["kind"] == "llm" and row["provider"] == "anthropic"
    assert row["request_model"] == "claude-sonnet-4-5" and row["model"] == "claude-sonnet-4-5-20250929"
    assert (row["temperature"], row["top_p"], row["max_tokens"]) == (0.3, 0.95, 1024)
    assert row["request_params"] == {"stop_sequences": ["\n\nHuman:"]}
    # OpenInference counts cache reads and writes inside llm.token_count.prompt: taken as reported.
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (2255, 512, 1733)
    assert (row["output_tokens"], row["reasoning_tokens"], row["total_tokens"]) == (40, 12, 2295)
    assert row["reported_cost_usd"] == 0.0071 and row["time_to_first_token_ms"] == pytest.approx(400.0)
    assert (row["user_id"], row["session_id"], row["feature"]) == ("u-1", "s-1", "vision")
    assert (row["prompt_name"], row["prompt_version"]) == ("describe-image", "v7-override")  # aiobs.* wins
    assert row["input_messages"][1] == {
        "role": "user", "content": "What is in this picture?",
        "contents": [{"type": "text", "text": "What is in this picture?"},
                     {"type": "image", "image.image.url": "https://example.com/cat.png"}],
    }
    out = row["output_messages"][0]
    assert out["content"] == "A cat." and out["reasoning"] == "It has whiskers."
    assert out["tool_calls"] == [{"id": "toolu_1", "name": "label", "arguments": "{\"label\": \"cat\"}"}]
    assert row["output_text"] == "A cat."
    meta = row["metadata"]
    assert meta["metadata"] == {"experiment": "B"} and meta["tag.tags"] == ["vision"]
    assert meta["llm.prompt_template.variables"] == json.dumps({"image": "cat.png"})
    assert meta["llm.cost.prompt"] == 0.0065 and meta["openinference.span.kind"] == "LLM"
    assert meta["phoenix.id"].startswith("U3Bhbj") and meta["llm.system"] == "anthropic"
    assert "aiobs.token_adjustments" not in meta


def semi_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """Messages as the OpenInference spec examples write them: lists of objects with dotted keys."""
    prefixes = ("llm.input_messages", "llm.output_messages")
    out = {k: v for k, v in flat.items() if not k.startswith(tuple(p + "." for p in prefixes))}
    for prefix in prefixes:
        messages = []
        for item in openinference.indexed(flat, prefix):
            message = {k: v for k, v in item.items() if not k.startswith(("message.contents.", "message.tool_calls."))}
            for sub in ("message.contents", "message.tool_calls"):
                if openinference.indexed(item, sub):
                    message[sub] = openinference.indexed(item, sub)
            messages.append(message)
        out[prefix] = messages
    return out


def test_attribute_shapes_map_identically() -> None:
    rows = [one(phoenix("c1" * 8, "LLM", shape)) for shape in (
        LLM_ATTRIBUTES, nest(LLM_ATTRIBUTES), semi_flat(LLM_ATTRIBUTES))]
    assert isinstance(nest(LLM_ATTRIBUTES)["llm"]["input_messages"], list)
    for column in ("input_messages", "output_messages", "output_text", "input_tokens", "cached_input_tokens",
                   "reasoning_tokens", "model", "request_model", "temperature", "user_id", "prompt_version"):
        assert rows[0][column] == rows[1][column] == rows[2][column], column
    assert rows[0]["output_messages"][0]["tool_calls"][0]["name"] == "label"
    assert rows[1]["metadata"]["metadata"] == {"experiment": "B"}


def test_retriever_reranker_embedding_and_other_kinds() -> None:
    retriever = phoenix("d1" * 8, "RETRIEVER", {
        "input.value": "refund policy",
        "retrieval.documents": [
            {"document.id": "kb-12", "document.score": 0.83, "document.content": "Refunds within 30 days.",
             "document.metadata": json.dumps({"source": "faq.md"})},
            {"document.id": 7, "document.content": "Shipping takes 3 days."}]})
    reranker = phoenix("d2" * 8, "RERANKER", {
        "reranker.model_name": "rerank-english-v3.0", "reranker.query": "refund policy", "reranker.top_k": 1,
        "reranker.input_documents.0.document.id": "kb-12", "reranker.input_documents.1.document.id": "7",
        "reranker.output_documents.0.document.id": "kb-12", "reranker.output_documents.0.document.score": 0.99,
        "reranker.output_documents.0.document.content": "Refunds within 30 days."})
    embedding = phoenix("d3" * 8, "EMBEDDING", {
        "embedding.model_name": "text-embedding-3-small", "llm.token_count.prompt": 6,
        "embedding.embeddings.0.embedding.text": "refund policy"})
    rows = {r["span_id"]: r for r in read(retriever, reranker, embedding,
                                          *(phoenix(f"e{i}" * 8, kind, {}) for i, kind in enumerate(
                                              ["AGENT", "TOOL", "GUARDRAIL", "EVALUATOR", "UNKNOWN", "DECISION"])))}
    assert rows["d1" * 8]["kind"] == "retrieval"
    assert rows["d1" * 8]["documents"] == [
        {"id": "kb-12", "score": 0.83, "text": "Refunds within 30 days.", "rank": 1, "metadata": {"source": "faq.md"}},
        {"id": "7", "score": None, "text": "Shipping takes 3 days.", "rank": 2}]
    assert rows["d1" * 8]["metadata"]["input.value"] == "refund policy"
    rerank = rows["d2" * 8]
    assert rerank["kind"] == "rerank" and rerank["model"] == "rerank-english-v3.0"
    assert rerank["documents"] == [{"id": "kb-12", "score": 0.99, "text": "Refunds within 30 days.", "rank": 1}]
    assert rerank["metadata"]["reranker.input_documents.1.document.id"] == "7"
    emb = rows["d3" * 8]
    assert emb["kind"] == "embedding" and emb["model"] == "text-embedding-3-small" and emb["input_tokens"] == 6
    assert emb["input_messages"] == [{"role": "user", "content": "refund policy"}]
    assert "embedding.embeddings.0.embedding.text" not in (emb["metadata"] or {})
    assert [rows[f"e{i}" * 8]["kind"] for i in range(6)] == ["chain", "tool", "chain", "chain", "chain", "chain"]


def test_application_columns_from_the_metadata_attribute() -> None:
    """The spec's `metadata` attribute (JSON text) fills user, session, feature, ...; an attribute wins."""
    metadata = {"user_id": "u-meta", "session_id": "s-1", "feature": "refunds", "endpoint": "/v1/ask",
                "prompt_name": "refund-answer", "prompt_version": 3, "environment": "staging", "app": "support-bot",
                "ab_bucket": "B"}
    row = one(phoenix("b1" * 8, "LLM", {"metadata": json.dumps(metadata), "user.id": "u-attr",
                                         "session.id": "s-1", "llm.model_name": "gpt-4o"}))
    assert (row["user_id"], row["session_id"], row["feature"], row["endpoint"]) == ("u-attr", "s-1", "refunds",
                                                                                    "/v1/ask")
    assert (row["prompt_name"], row["prompt_version"]) == ("refund-answer", "3")
    assert (row["environment"], row["app"]) == ("staging", "support-bot")
    # Mapped keys leave the metadata map; a value that disagrees with the winning attribute stays there.
    assert row["metadata"]["metadata"] == {"user_id": "u-meta", "ab_bucket": "B"}

    attribute_wins = one(phoenix("b2" * 8, "CHAIN", {
        "metadata": json.dumps({"prompt_version": "v9", "feature": {"name": "refunds"}, "app": True}),
        "llm.prompt_template.version": "v2", "aiobs.feature": None}))
    assert attribute_wins["prompt_version"] == "v2"
    # Values that are not text or integers are not columns: they stay in the metadata map, never quarantined.
    assert attribute_wins["feature"] is None and attribute_wins["app"] is None
    assert attribute_wins["metadata"]["metadata"] == {"prompt_version": "v9", "feature": {"name": "refunds"},
                                                      "app": True}
    only_mapped = one(phoenix("b3" * 8, "CHAIN", {"metadata": json.dumps({"feature": "refunds"})}))
    assert only_mapped["feature"] == "refunds" and "metadata" not in (only_mapped["metadata"] or {})


def test_phoenix_span_with_genai_attributes_and_unknown_kind() -> None:
    row = one(phoenix("f1" * 8, "UNKNOWN", {"gen_ai": {"operation": {"name": "chat"}, "request": {"model": "gpt-4o"},
                                                      "usage": {"input_tokens": 12, "output_tokens": 3}}}))
    assert row["kind"] == "llm" and row["model"] == "gpt-4o" and row["total_tokens"] == 15


def test_error_span_from_phoenix() -> None:
    events = [{"name": "exception", "timestamp": "2026-09-21T14:05:01Z",
               "attributes": {"exception.type": "httpx.ReadTimeout", "exception.message": "timed out",
                              "exception.stacktrace": "Traceback ..."}}]
    row = one(phoenix("f2" * 8, "LLM", {"llm.model_name": "gpt-4o"}, status="ERROR", events=events))
    assert row["status"] == "error" and row["error_message"] == "httpx.ReadTimeout: timed out"
    assert row["metadata"]["otel.events"][0]["attributes"]["exception.stacktrace"] == "Traceback ..."
    explicit = one(phoenix("f3" * 8, "CHAIN", {}, status="ERROR", message="ValueError('bad input')"))
    assert explicit["status"] == "error" and explicit["error_message"] == "ValueError('bad input')"
    unset = one(phoenix("f4" * 8, "CHAIN", {}, status="UNSET"))
    assert unset["status"] == "ok"


def test_rest_page_and_dataframe_records() -> None:
    page = {"data": [phoenix("a2" * 8, "CHAIN", {}), phoenix("a3" * 8, "LLM", {"llm.model_name": "gpt-4o"})],
            "next_cursor": "U3BhbjoxMA=="}
    rows = read(page)
    assert [r["span_id"] for r in rows] == ["a2" * 8, "a3" * 8] and all(r["source_line"] == 1 for r in rows)
    # A spans DataFrame written with to_json(orient="records"): epoch-ms times, a column per attribute.
    record = {"name": "ChatOpenAI", "span_kind": "LLM", "parent_id": None, "start_time": 1790000000000,
              "end_time": 1790000000800, "status_code": "OK", "status_message": "", "events": [],
              "context.span_id": "A4A4A4A4A4A4A4A4", "context.trace_id": TRACE,
              "attributes.llm.model_name": "gpt-4o-mini", "attributes.llm.token_count.prompt": 9,
              "attributes.llm.input_messages": [{"message.role": "user", "message.content": "hi"}],
              "attributes.retrieval.documents": None}
    row = one(record)
    assert row["span_id"] == "a4a4a4a4a4a4a4a4" and row["latency_ms"] == 800.0
    assert row["model"] == "gpt-4o-mini" and row["input_tokens"] == 9
    assert row["input_messages"] == [{"role": "user", "content": "hi"}] and row.get("documents") is None


@pytest.mark.parametrize(("value", "text"), [
    ("just a string", "expected a span object, got str"),
    ({"name": "x", "span_kind": "LLM", "context": "ctx"}, "field 'context' must be an object"),
    ({"name": "x", "span_kind": "LLM"}, "field 'context' (trace_id, span_id) is missing; keys: name, span_kind"),
    ({"name": "x", "span_kind": "LLM", "context": {"span_id": "ab", "trace_id": "cd"}, "attributes": ["a"]},
     "field 'attributes' must be an object"),
    ({"name": "x", "span_kind": "LLM", "context": {"span_id": "ab", "trace_id": "cd"}, "events": {}},
     "field 'events' must be a list"),
])
def test_malformed_spans_become_rejects(value: Any, text: str) -> None:
    out = read(value)
    assert len(out) == 1 and isinstance(out[0], Reject)
    assert out[0].reason == "invalid_type" and text in out[0].detail and out[0].detail.startswith("record 1:")
    if isinstance(value, dict) and isinstance(value.get("context"), dict):
        assert out[0].span_id == "ab" and out[0].trace_id == "cd"


def test_page_with_a_bad_span_keeps_its_siblings() -> None:
    out = read({"data": [phoenix("a5" * 8, "CHAIN", {}), 42, phoenix("a6" * 8, "TOOL", {})]})
    assert [o["span_id"] if isinstance(o, dict) else o.reason for o in out] == ["a5" * 8, "invalid_type", "a6" * 8]
    assert "data[1]" in out[1].detail


def test_map_openinference_keeps_foreign_and_unknown_keys() -> None:
    fields, rest = openinference.map_openinference({
        "openinference.span.kind": "TOOL", "tool.name": "search", "tool.parameters": "{}", "http.method": "GET",
        "llm.invocation_parameters": "{not json", "graph.node.id": "n1"})
    assert fields["kind"] == "tool" and fields.get("request_params") is None
    assert rest == {"openinference.span.kind": "TOOL", "tool.name": "search", "tool.parameters": "{}",
                    "http.method": "GET", "llm.invocation_parameters": "{not json", "graph.node.id": "n1"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
attribute_keys = st.sampled_from([
    "llm.input_messages", "llm.input_messages.0.message.content", "llm.output_messages.0.message.tool_calls",
    "llm.token_count.prompt", "llm.invocation_parameters", "retrieval.documents", "retrieval.documents.0",
    "reranker.output_documents.0.document.metadata", "metadata", "llm", "user.id", "gen_ai.input.messages",
    "llm.prompts.0.prompt.text", "output.value", "tag.tags"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(attribute_keys, json_values, max_size=5),
       st.sampled_from(["LLM", "RETRIEVER", "RERANKER", "EMBEDDING", None, 3]),
       st.dictionaries(st.sampled_from(["start_time", "end_time", "status_code", "parent_id", "name"]),
                       json_values, max_size=3))
def test_arbitrary_phoenix_spans_never_crash(attributes: dict[str, Any], kind: Any, envelope: dict[str, Any]) -> None:
    span = {**phoenix("ab" * 8, "LLM", attributes), "span_kind": kind, **envelope}
    out = read(span)
    assert len(out) == 1
    assert not (isinstance(out[0], Reject) and "could not be mapped" in out[0].detail), out[0].detail
    if isinstance(out[0], dict):
        for column in ("input_messages", "output_messages", "documents", "metadata", "request_params"):
            openinference.dump_json(out[0][column])


def test_end_to_end_through_partition_ingest(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    spans = [phoenix("b2" * 8, "CHAIN", {"input.value": "hi"}, name="agent"),
             phoenix("b3" * 8, "LLM", LLM_ATTRIBUTES, parent="b2" * 8),
             "not a span",
             {**phoenix("b4" * 8, "LLM", {"llm.token_count.prompt": -3}), "name": "bad tokens"},
             {**phoenix("b5" * 8, "LLM", {}), "start_time": "not a time"}]
    (folder / "phoenix.json").write_text(json.dumps(spans), encoding="utf-8")
    (folder / "spec.json").write_bytes((FIXTURES / "openinference_spec_examples.json").read_bytes())
    result = ingest_files(sorted(folder.iterdir()), HOUR, tmp_path)
    audit = result.audit.set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    mine = audit.loc["2026/09/21/14/phoenix.json"]
    assert (mine["source_format"], mine["records_read"], mine["spans_found"], mine["spans_written"]) == (
        "openinference", 5, 5, 2)
    assert orjson.loads(mine["quarantined_by_reason"]) == {"invalid_type": 2, "negative_value": 1}
    assert audit.loc["2026/09/21/14/spec.json", "spans_written"] == 4
    assert audit.loc["2026/09/21/14/spec.json", "late_spans"] == 4  # spec examples are from 2023/2024
    spans_out = result.spans.set_index("span_id")
    llm = spans_out.loc["b3" * 8]
    assert llm["source_line"] == 2 and llm["source_format"] == "openinference" and llm["cached_input_tokens"] == 512
    assert orjson.loads(llm["output_messages"])[0]["reasoning"] == "It has whiskers."
    bad_time = result.quarantined[result.quarantined["span_id"] == "b5" * 8].iloc[0]
    assert bad_time["reason"] == "invalid_type" and "start_time" in bad_time["detail"]
