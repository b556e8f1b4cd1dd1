"""Langfuse reader: real trace exports, usage key variants and the token rule, shapes, rejects, end to end."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import detect, langfuse
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import iter_records
from aiobs_pipeline.ingest.partition import ingest_files, landing_folder
from aiobs_pipeline.quality.rules import apply_row_rules
from aiobs_pipeline.schema import KINDS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "langfuse"
LANGGRAPH = FIXTURES / "langgraph-python-2025-08-22.trace.json"
PYDANTIC = FIXTURES / "pydantic-ai-tools-2025-12-04.trace.json"
SPEC = FIXTURES / "observations_spec.jsonl"
HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)


def read_path(path: Path) -> list[Any]:
    return list(langfuse.read(r for r in iter_records(path) if isinstance(r, RawRecord)))


def read_values(*values: Any) -> list[Any]:
    return list(langfuse.read(RawRecord(i, json.dumps(v), v) for i, v in enumerate(values, start=1)))


def rows_of(out: list[Any]) -> list[dict[str, Any]]:
    return [r for r in out if not isinstance(r, Reject)]


def rejects_of(out: list[Any]) -> list[Reject]:
    return [r for r in out if isinstance(r, Reject)]


def generation(**overrides: Any) -> dict[str, Any]:
    base = {"id": "g1", "traceId": "t1", "type": "GENERATION", "name": "llm", "startTime": "2026-10-01T05:00:00Z",
            "endTime": "2026-10-01T05:00:02Z", "model": "gpt-4o-mini"}
    base.update(overrides)
    return base


def test_matches_langfuse_shapes_and_not_others() -> None:
    assert langfuse.matches(json.loads(LANGGRAPH.read_text()))
    assert langfuse.matches({"id": "t", "userId": "u", "observations": []})
    assert langfuse.matches(generation())
    assert langfuse.matches({"data": [generation()], "meta": {"page": 1}})
    assert not langfuse.matches({"type": "GENERATION"})  # no traceId
    assert not langfuse.matches({"span_id": "s", "trace_id": "t"})
    assert not langfuse.matches({"post": [], "patch": []})
    assert not langfuse.matches([generation()])
    assert detect.detect_reader(json.loads(PYDANTIC.read_text())) is langfuse


def test_langgraph_sample_maps_every_observation() -> None:
    out = read_path(LANGGRAPH)
    assert not rejects_of(out)
    rows = rows_of(out)
    # The export repeats the observations inside the trace; each is read once, the trace is not a span.
    assert len(rows) == 9
    assert len({r["span_id"] for r in rows}) == 9
    assert {r["trace_id"] for r in rows} == {"e1fde3efec57ce8a69bafd3fb928a7eb"}
    assert all(r["source_line"] == 1 for r in rows)
    assert sorted(r["metadata"]["langfuse"]["observation_index"] for r in rows) == list(range(9))
    roots = [r for r in rows if r["parent_span_id"] is None]
    assert [r["name"] for r in roots] == ["LangGraph"]
    ids = {r["span_id"] for r in rows}
    assert all(r["parent_span_id"] in ids for r in rows if r is not roots[0])
    # Trace-level scores are feedback on the root span.
    assert {s["name"] for s in roots[0]["metadata"]["langfuse"]["scores"]} == {"hallucination", "toxicity"}

    gen = next(r for r in rows if r["span_id"] == "4f6535aaebcda355")
    assert gen["kind"] == "llm" and gen["status"] == "ok"
    assert gen["request_model"] == "gpt-4o" and gen["model"] == "gpt-4o-2024-08-06"
    assert gen["provider"] == "openai" and gen["temperature"] == 0
    assert (gen["input_tokens"], gen["output_tokens"], gen["total_tokens"]) == (60, 15, 75)
    assert gen["cached_input_tokens"] == 0 and gen["reasoning_tokens"] == 0
    assert gen["reported_cost_usd"] == pytest.approx(7.5e-05)
    assert gen["latency_ms"] == pytest.approx(848.0)
    assert gen["session_id"] == "demo-thread-1"  # LangGraph's thread id in the metadata
    assert gen["environment"] == "default"
    assert [m["role"] for m in gen["input_messages"]] == ["user", "user", "tool"]
    # Tool calls take the one canonical shape whatever the source wrote (here OpenAI's `function` object).
    assert gen["output_messages"][0]["tool_calls"] == [
        {"id": "call_1oGK863sxQHlPreFhDdEs3yl", "name": "Web-Search", "arguments": '{"query":"example"}'}]
    assert gen["metadata"]["langfuse"]["usage_details"]["input_cache_read"] == 0

    final = next(r for r in rows if r["span_id"] == "5ba09605e0929d78")
    assert final["output_text"].startswith('The search for "example" primarily leads')
    tool_span = next(r for r in rows if r["name"] == "Web-Search")
    assert tool_span["kind"] == "chain"  # a Langfuse SPAN, whatever its name
    assert tool_span["metadata"]["input"] == {"query": "example"}  # Python-literal text parsed
    assert tool_span.get("input_tokens") is None and tool_span["reported_cost_usd"] is None


def test_pydantic_ai_sample_reads_otel_parts_messages_and_tools() -> None:
    rows = rows_of(read_path(PYDANTIC))
    assert len(rows) == 12
    kinds = {r["kind"] for r in rows}
    assert kinds == {"chain", "llm", "tool"}
    assert all(r["kind"] in KINDS for r in rows)
    # Langfuse's "default" environment is its fallback; the trace metadata states the real one.
    assert {r["environment"] for r in rows} == {"development"}
    assert all("joke-generator" in r["metadata"]["tags"] for r in rows)

    gen = next(r for r in rows if r["span_id"] == "8976b072313c51f2")
    assert gen["input_messages"][0] == {
        "role": "system",
        "content": "You are a creative joke writer. When asked to get inspiration, you will call THREE of the "
                   "available suggestion tools to gather ideas. When asked to write a joke, create a funny joke "
                   "based on the suggestions you received.",
    }
    assert gen["output_text"] == "Why do programmers hate nature?  \nIt has too many bugs!"
    assert gen["request_model"] == "gpt-4o-mini" and gen["model"] == "gpt-4o-mini-2024-07-18"
    assert gen["provider"] == "openai" and gen["temperature"] == pytest.approx(0.7)
    assert (gen["input_tokens"], gen["output_tokens"], gen["total_tokens"]) == (502, 14, 516)
    assert gen["reported_cost_usd"] == pytest.approx(8.37e-05)

    calls = next(r for r in rows if r["span_id"] == "be64c23f44dd98be")["output_messages"][0]["tool_calls"]
    assert {c["name"] for c in calls} == {"get_pun_suggestion", "get_dad_joke_suggestion",
                                           "get_one_liner_suggestion"}
    tool = next(r for r in rows if r["name"] == "running tool: get_pun_suggestion")
    assert tool["kind"] == "tool"
    assert tool["metadata"]["input"] == {"topic": "programming"}
    assert tool["output_text"].startswith("Pun idea:")


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Langfuse-stored OpenAI usage: cached and reasoning tokens were split out of input/output.
        ({"input": 60, "input_cached_tokens": 40, "output": 20, "output_reasoning_tokens": 12, "total": 132},
         {"input_tokens": 100, "output_tokens": 32, "total_tokens": 132, "cached_input_tokens": 40,
          "reasoning_tokens": 12, "cache_write_tokens": None}),
        # LangChain callback handler keys: input_cache_read / input_cache_creation / output_reasoning.
        ({"input": 100, "input_cache_read": 30, "input_cache_creation": 10, "output": 7, "output_reasoning": 2},
         {"input_tokens": 140, "output_tokens": 9, "total_tokens": 149, "cached_input_tokens": 30,
          "cache_write_tokens": 10, "reasoning_tokens": 2}),
        # Anthropic-style keys from the Langfuse docs: cache traffic beside input.
        ({"input": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5, "output": 4},
         {"input_tokens": 105, "output_tokens": 4, "total_tokens": 109, "cached_input_tokens": 90,
          "cache_write_tokens": 5, "reasoning_tokens": None}),
        # Raw OpenAI chat usage: prompt_tokens already include cached tokens.
        ({"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
          "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 10}},
         {"input_tokens": 100, "output_tokens": 30, "total_tokens": 130, "cached_input_tokens": 60,
          "reasoning_tokens": 10}),
        # Raw OpenAI responses / LangChain UsageMetadata: input_tokens already include cache reads.
        ({"input_tokens": 50, "output_tokens": 9, "input_token_details": {"cache_read": 20},
          "output_token_details": {"reasoning": 4}},
         {"input_tokens": 50, "output_tokens": 9, "total_tokens": 59, "cached_input_tokens": 20,
          "reasoning_tokens": 4}),
        # A bare reasoning usage type is output-side (Langfuse totals are the sum of all types).
        ({"input": 5, "output": 3, "reasoning": 2, "total": 10},
         {"input_tokens": 5, "output_tokens": 5, "total_tokens": 10, "reasoning_tokens": 2}),
        # Audio and other unprefixed types stay out of input/output but inside the reported total.
        ({"input": 5, "output": 3, "audio": 4, "total": 12},
         {"input_tokens": 5, "output_tokens": 3, "total_tokens": 12, "cached_input_tokens": None}),
        ({"output": 3}, {"input_tokens": None, "output_tokens": 3, "total_tokens": None}),
    ],
)
def test_usage_details_follow_the_canonical_token_rule(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    (row,) = rows_of(read_values(generation(usageDetails=usage)))
    for column, value in expected.items():
        assert row.get(column) == value, column


def test_usage_fallbacks_legacy_usage_and_view_totals() -> None:
    legacy, chars, view, zero = rows_of(read_values(
        generation(id="a", usage={"input": 12, "output": 3, "total": 15, "unit": "TOKENS"}),
        generation(id="b", usage={"input": 400, "output": 90, "unit": "CHARACTERS"}),
        generation(id="c", usageDetails={}, inputUsage=70, outputUsage=5, totalUsage=75),
        generation(id="d", usageDetails={}, inputUsage=0, outputUsage=0, totalUsage=0, costDetails={}, totalCost=0),
    ))
    assert (legacy["input_tokens"], legacy["output_tokens"], legacy["total_tokens"]) == (12, 3, 15)
    assert chars.get("input_tokens") is None
    assert chars["metadata"]["langfuse"]["usage"]["unit"] == "CHARACTERS"  # not lost
    assert (view["input_tokens"], view["output_tokens"], view["total_tokens"]) == (70, 5, 75)
    # The observation view's zeros mean "nothing reported", not a free call.
    assert zero.get("input_tokens") is None and zero["reported_cost_usd"] is None


@pytest.mark.parametrize(
    ("fields", "cost"),
    [
        ({"costDetails": {"input": 0.001, "output": 0.002, "total": 0.0031}}, 0.0031),
        ({"costDetails": {"input": 0.001, "output": 0.002}}, 0.003),
        ({"totalCost": 0.004}, 0.004),
        ({"calculatedTotalCost": 0.005}, 0.005),
        ({"usage": {"input": 1, "output": 1, "totalCost": 0.006}}, 0.006),
        ({"costDetails": {}, "totalCost": 0}, None),
    ],
)
def test_reported_cost_sources(fields: dict[str, Any], cost: float | None) -> None:
    (row,) = rows_of(read_values(generation(**fields)))
    assert row["reported_cost_usd"] == (pytest.approx(cost) if cost is not None else None)


def test_spec_fixture_generation_error_event_retriever() -> None:
    out = read_path(SPEC)
    rows = {r["span_id"]: r for r in rows_of(out)}
    assert set(rows) == {"obs-gen-1", "obs-gen-2", "obs-ret-1", "obs-evt-1", "obs-emb-1", "obs-agent-1"}

    gen = rows["obs-gen-1"]
    assert (gen["input_tokens"], gen["output_tokens"], gen["cached_input_tokens"], gen["reasoning_tokens"]) == \
        (100, 32, 40, 12)
    assert gen["time_to_first_token_ms"] == pytest.approx(250.0)
    assert gen["latency_ms"] == pytest.approx(1500.0)
    assert gen["temperature"] == pytest.approx(0.2)  # numeric string in modelParameters
    assert gen["max_tokens"] == 256 and gen["top_p"] == 1
    assert gen["request_params"] == {"seed": 7}
    assert (gen["prompt_name"], gen["prompt_version"]) == ("refund-answer", "3")
    assert gen["feature"] == "support-chat" and gen["metadata"]["ab_bucket"] == "B"
    assert gen["environment"] == "production"
    assert gen["output_text"] == "30 days."
    assert gen["reported_cost_usd"] == pytest.approx(0.00055)

    failed = rows["obs-gen-2"]
    assert failed["status"] == "error"
    assert failed["error_message"] == "RateLimitError: 429 Too Many Requests"
    assert failed["input_messages"] == [{"role": "user", "content": "What is the refund window?"}]
    assert failed["input_tokens"] == 12 and failed["reported_cost_usd"] == pytest.approx(0.0000018)

    event = rows["obs-evt-1"]
    assert event["kind"] == "chain" and event["latency_ms"] == 0.0
    assert event["end_time"] == event["start_time"]
    assert event["status"] == "ok"  # a WARNING is not an error; its message is kept
    assert event["metadata"]["langfuse"]["status_message"] == "semantic cache miss"

    retriever = rows["obs-ret-1"]
    assert retriever["kind"] == "retrieval"
    assert [(d["id"], d["rank"], d["score"]) for d in retriever["documents"]] == [
        ("kb/refunds.md", 1, 0.91), ("kb/shipping.md", 2, 0.42)]
    assert retriever["documents"][0]["text"] == "Refunds are accepted within 30 days."
    assert retriever["metadata"]["input"] == "refund window"
    assert rows["obs-agent-1"]["output_text"] == "30 days." and rows["obs-agent-1"]["output_messages"] is None

    assert rows["obs-emb-1"]["kind"] == "embedding" and rows["obs-emb-1"]["input_tokens"] == 8
    assert rows["obs-agent-1"]["kind"] == "chain" and rows["obs-agent-1"]["parent_span_id"] is None

    rejects = rejects_of(out)
    assert [(r.reason, r.number) for r in rejects] == [
        ("unsupported_record", 6), ("missing_required_field", 7), ("invalid_type", 8)]
    assert "record 7: observation.id is missing" in rejects[1].detail
    assert all(r.raw for r in rejects)


def test_rerank_observation_is_told_by_its_name_and_keeps_its_documents() -> None:
    """Langfuse has no rerank type: a SPAN (or CHAIN, ...) named like a reranker is one; a named type wins."""
    reranked = {"documents": [{"id": "kb-7", "content": "Refunds within 30 days.", "score": 0.97},
                              {"id": "kb-2", "content": "Shipping takes 3 days.", "score": 0.41}]}
    span = generation(id="rr", type="SPAN", name="reranking", model=None, input={"query": "refunds?",
                      "documents": ["kb-2", "kb-7"]}, output=reranked)
    rows = {r["span_id"]: r for r in rows_of(read_values(
        span, dict(span, id="rr2", type="CHAIN", name="Rerank step"),
        dict(span, id="g", type="GENERATION", name="rerank-prompt"), dict(span, id="ws", name="Web-Search")))}
    rerank = rows["rr"]
    assert rerank["kind"] == "rerank" and rows["rr2"]["kind"] == "rerank"
    assert rerank["documents"] == [{"id": "kb-7", "score": 0.97, "text": "Refunds within 30 days.", "rank": 1},
                                   {"id": "kb-2", "score": 0.41, "text": "Shipping takes 3 days.", "rank": 2}]
    assert rerank["output_text"] is None and "output" not in rerank["metadata"]
    assert rerank["metadata"]["input"] == {"query": "refunds?", "documents": ["kb-2", "kb-7"]}
    assert rows["g"]["kind"] == "llm" and rows["ws"]["kind"] == "chain"


def test_trace_attributes_apply_to_every_observation() -> None:
    record = {
        "id": "t9", "name": "checkout", "userId": "user-1", "sessionId": "sess-1", "environment": "staging",
        "release": "2026.10.1", "tags": ["beta"], "metadata": {"tenant": "acme", "endpoint": "/v1/ask"},
        "timestamp": "2026-10-01T05:00:00Z", "latency": 2.0, "htmlPath": "/project/p/traces/t9",
        "observations": [
            generation(id="o1", traceId=None, parentObservationId=None, metadata={"tags": ["fast"]}),
            generation(id="o2", traceId="t9", type="SPAN", parentObservationId="o1", environment="prod"),
        ],
    }
    first, second = rows_of(read_values(record))
    assert first["trace_id"] == "t9"  # inherited from the enclosing trace
    for row in (first, second):
        assert (row["user_id"], row["session_id"], row["endpoint"]) == ("user-1", "sess-1", "/v1/ask")
        assert row["metadata"]["tenant"] == "acme" and row["metadata"]["release"] == "2026.10.1"
        assert row["metadata"]["langfuse"]["trace"]["name"] == "checkout"
    assert first["environment"] == "staging" and second["environment"] == "prod"
    assert first["metadata"]["tags"] == ["beta", "fast"] and second["metadata"]["tags"] == ["beta"]


def test_trace_without_observations_is_one_span() -> None:
    record = {"id": "t5", "name": "quick-call", "timestamp": "2026-10-01T05:00:00Z", "latency": 1.25,
              "userId": "u1", "input": "hello", "output": "hi", "totalCost": 0.01, "observations": ["o-elsewhere"]}
    (row,) = rows_of(read_values(record))
    assert (row["span_id"], row["trace_id"], row["name"], row["kind"]) == ("t5", "t5", "quick-call", "chain")
    assert row["latency_ms"] == pytest.approx(1250.0)
    assert row["output_text"] == "hi" and row["metadata"]["input"] == "hello"
    assert row["metadata"]["langfuse"]["observation_ids"] == ["o-elsewhere"]
    assert row["reported_cost_usd"] == pytest.approx(0.01) and row["user_id"] == "u1"


def test_bad_shapes_are_rejected_and_siblings_survive() -> None:
    out = read_values(
        {"trace": {"id": "t1"}, "observations": [generation(id="ok1"), 7, {"type": "SPAN", "name": "x"},
                                                  generation(id="ok2", type=5), generation(id="ok3")]},
        {"trace": {"id": "t2"}, "observations": {"not": "a list"}},
        {"trace": "t3", "observations": [generation(id="ok4")]},
        generation(id="lonely", traceId=None),
        {"something": "else"},
        "text",
    )
    assert [r["span_id"] for r in rows_of(out)] == ["ok1", "ok3", "ok4"]
    details = [(r.reason, r.detail) for r in rejects_of(out)]
    assert details == [
        ("invalid_type", "record 1: observations[1] must be a JSON object, got int"),
        ("missing_required_field", "record 1: observations[2].id is missing"),
        ("invalid_type", "record 1: observations[3].type must be a string, got int"),
        ("invalid_type", "record 2: field 'observations' must be a list, got dict"),
        ("invalid_type", "record 3: field 'trace' must be a JSON object, got str"),
        ("missing_required_field", "record 4: observation.traceId is missing and no trace encloses it"),
        ("unknown_format", "record 5: record is not a Langfuse trace or observation (keys: something)"),
        ("invalid_type", "record 6: record must be a JSON object, got str"),
    ]
    assert rejects_of(out)[2].span_id == "ok2" and rejects_of(out)[2].trace_id == "t1"


def test_api_page_of_observations() -> None:
    page = {"data": [generation(id="p1", output="plain answer"), generation(id="p2", type="TOOL", output="42"),
                     {"id": "p3"}], "meta": {"page": 1}}
    out = read_values(page)
    first, second = rows_of(out)
    assert [(r["span_id"], r["kind"]) for r in (first, second)] == [("p1", "llm"), ("p2", "tool")]
    assert first["output_messages"] == [{"role": "assistant", "content": "plain answer"}]
    assert second["output_text"] == "42" and second["output_messages"] is None
    assert second["metadata"]["langfuse"]["observation_index"] == 1 and second["source_line"] == 1
    (reject,) = rejects_of(out)
    assert reject.detail == "record 1: data[2] is not a Langfuse trace or observation (keys: id)"


def test_json_array_of_observations_gives_one_record_each(tmp_path: Path) -> None:
    path = tmp_path / "obs.json"
    path.write_text(json.dumps([generation(id="a1"), generation(id="a2", type="EVENT")]))
    rows = rows_of(read_path(path))
    assert [(r["span_id"], r["source_line"]) for r in rows] == [("a1", 1), ("a2", 2)]


def test_end_to_end_partition_ingest_keeps_the_audit_identity(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    for source in (LANGGRAPH, PYDANTIC, SPEC):
        shutil.copy(source, folder / source.name)
    result = ingest_files(sorted(folder.iterdir()), HOUR, tmp_path)
    audit = result.audit.set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert set(audit["source_format"]) == {"langfuse"}
    spec = audit.loc["2026/10/01/05/observations_spec.jsonl"]
    assert (spec["records_read"], spec["spans_found"], spec["spans_written"], spec["spans_quarantined"]) == \
        (9, 9, 6, 3)
    assert orjson.loads(spec["quarantined_by_reason"]) == {
        "invalid_type": 1, "missing_required_field": 1, "unsupported_record": 1}
    assert audit.loc["2026/10/01/05/langgraph-python-2025-08-22.trace.json", "spans_written"] == 9
    assert audit.loc["2026/10/01/05/pydantic-ai-tools-2025-12-04.trace.json", "spans_written"] == 12
    spans = result.spans
    assert len(spans) == 27 and set(spans["source_format"]) == {"langfuse"}
    gen = spans[spans["span_id"] == "obs-gen-1"].iloc[0]
    assert gen["input_tokens"] == 100 and gen["cached_input_tokens"] == 40
    assert orjson.loads(gen["metadata"])["langfuse"]["observation_type"] == "GENERATION"
    assert spans["start_time"].notna().all()


FIELD_NAMES = ["id", "traceId", "type", "name", "startTime", "endTime", "completionStartTime", "parentObservationId",
               "level", "statusMessage", "model", "modelParameters", "input", "output", "metadata", "usageDetails",
               "costDetails", "usage", "totalCost", "promptVersion", "observations", "role", "content", "parts"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), children,
                                                                      max_size=3),
    max_leaves=8,
)
SAMPLE = json.loads(LANGGRAPH.read_text())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELD_NAMES), value=JSON_VALUES, position=st.integers(0, 8))
def test_any_value_in_any_field_gives_rows_or_rejects(field: str, value: Any, position: int) -> None:
    record = json.loads(json.dumps(SAMPLE))
    record["observations"][position][field] = value
    out = read_values(record, value)
    assert out and all(isinstance(item, dict | Reject) for item in out)
    rows = rows_of(out)
    if rows:
        frame = pd.DataFrame(rows).assign(source_file="f", source_format="langfuse",
                                          export_hour=pd.Timestamp(HOUR), schema_version=1)
        checked = apply_row_rules(frame)
        assert len(checked.valid) + len(checked.quarantined) == len(rows)
