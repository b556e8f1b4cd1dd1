"""LangSmith reader: the real {post, patch} payload, run lists, usage rules, patch merging, rejects, end to end."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import detect, langsmith
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import iter_records
from aiobs_pipeline.ingest.partition import ingest_files, landing_folder
from aiobs_pipeline.quality.rules import apply_row_rules

FIXTURES = Path(__file__).parents[1] / "fixtures" / "langsmith"
STREAM = FIXTURES / "langsmith_py_wrap_openai_stream.json"
RUNS = FIXTURES / "runs_spec.jsonl"
HOUR = datetime(2024, 10, 11, 20, tzinfo=UTC)
RUN_ID = "fe8ffecb-72ce-4cd2-bdb7-01f34654c391"


def read_path(path: Path) -> list[Any]:
    return list(langsmith.read(r for r in iter_records(path) if isinstance(r, RawRecord)))


def read_values(*values: Any) -> list[Any]:
    return list(langsmith.read(RawRecord(i, json.dumps(v), v) for i, v in enumerate(values, start=1)))


def rows_of(out: list[Any]) -> list[dict[str, Any]]:
    return [r for r in out if not isinstance(r, Reject)]


def rejects_of(out: list[Any]) -> list[Reject]:
    return [r for r in out if isinstance(r, Reject)]


def through_frame(rows: list[dict[str, Any]], file: str) -> list[dict[str, Any]]:
    """Rows as partition.py hands them to postprocess: via a DataFrame, so absent values are NaN."""
    frame = pd.DataFrame(rows)
    frame["_file"] = file
    return frame.to_dict("records")


def stream_payload() -> dict[str, Any]:
    return json.loads(STREAM.read_text())


def llm_run(**overrides: Any) -> dict[str, Any]:
    base = {"id": "r1", "trace_id": "r1", "name": "ChatOpenAI", "run_type": "llm",
            "start_time": "2024-10-11T20:00:00+00:00", "end_time": "2024-10-11T20:00:01+00:00",
            "inputs": {"messages": [{"role": "user", "content": "hi"}]}}
    base.update(overrides)
    return base


def test_matches_langsmith_shapes_and_not_others() -> None:
    assert langsmith.matches(stream_payload())
    assert langsmith.matches({"patch": []})
    assert langsmith.matches({"id": "x", "run_type": "chain"})
    assert langsmith.matches({"dotted_order": "20240101T000000000000Zabc"})
    assert not langsmith.matches({"trace": {}, "observations": []})
    assert not langsmith.matches({"span_id": "s", "trace_id": "t"})
    assert not langsmith.matches(["post"])
    assert detect.detect_reader(stream_payload()) is langsmith


def test_stream_sample_post_and_patch_merge_into_one_span() -> None:
    out = read_path(STREAM)
    assert not rejects_of(out)
    post, patch = rows_of(out)
    assert patch["_patch"] is True and "_patch" not in post
    assert post["end_time"] is None and patch["start_time"] is None

    (row,), rejects = langsmith.postprocess(through_frame([post, patch], "2024/10/11/20/batch.json"))
    assert rejects == []
    assert {k for k in row if k.startswith("_")} == {"_file"}
    assert (row["span_id"], row["trace_id"], row["parent_span_id"]) == (RUN_ID, RUN_ID, None)
    assert (row["name"], row["kind"], row["status"]) == ("ChatOpenAI", "llm", "ok")
    assert row["start_time"] == "2024-10-11T20:58:20.695375+00:00"
    assert row["end_time"] == "2024-10-11T20:58:22.023816+00:00"
    assert row["latency_ms"] == pytest.approx(1328.441)
    # First new_token event at 20:58:21.933794, 1238.419 ms after the start.
    assert row["time_to_first_token_ms"] == pytest.approx(1238.419)
    assert (row["provider"], row["request_model"], row["model"]) == ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert row["request_params"] == {"stream": True, "stream_options": {"include_usage": True}}
    assert row["input_messages"] == [{"role": "user", "content": "howdy"}]
    assert row["output_text"] == "Howdy! How can I assist you today?"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (9, 9, 18)
    assert row["cached_input_tokens"] == 0 and row["reasoning_tokens"] == 0
    assert row["app"] == "default"  # the LangSmith project (session_name)
    meta = row["metadata"]["langsmith"]
    assert meta["event_counts"] == {"new_token": 12} and meta["patched_from"] == ["2024/10/11/20/batch.json:1"]
    assert "signature" not in json.dumps(row["metadata"])  # the traced function's signature is not kept
    assert row["metadata"]["outputs"]["system_fingerprint"] == "fp_8552ec53e1"


def test_run_list_maps_run_types_usage_and_lineage() -> None:
    out = read_path(RUNS)
    rows = {r["name"]: r for r in rows_of(out)}
    assert set(rows) == {"SupportBot", "ChatAnthropic", "VectorStoreRetriever", "lookup_order"}
    root_id = "7f0a3c2e-1111-4a6b-9d0e-000000000001"

    root = rows["SupportBot"]
    assert (root["kind"], root["parent_span_id"], root["trace_id"]) == ("chain", None, root_id)
    assert (root["user_id"], root["session_id"], root["environment"]) == ("user-7", "conv-42", "staging")
    assert root["app"] == "support-bot" and root["metadata"]["langsmith"]["project_id"].startswith("0b8f9f0e")
    # Run-level tokens on a chain aggregate its children: kept in metadata, not counted twice.
    assert root.get("input_tokens") is None and root.get("reported_cost_usd") is None
    assert root["metadata"]["langsmith"]["aggregate_usage"]["prompt_tokens"] == 1200
    assert root["metadata"]["inputs"] == {"question": "What is the refund window?"}
    assert root["output_text"] == "Refunds are accepted within 30 days."
    assert root["metadata"]["tags"] == ["prod-canary"] and root["metadata"]["app_version"] == "1.4.0"
    assert root["latency_ms"] == pytest.approx(3000.0)

    llm = rows["ChatAnthropic"]
    assert (llm["kind"], llm["parent_span_id"], llm["trace_id"]) == ("llm", root_id, root_id)
    assert [m["role"] for m in llm["input_messages"]] == ["system", "user"]
    assert llm["output_text"] == "Refunds are accepted within 30 days."
    assert llm["request_model"] == "claude-3-5-sonnet-latest" and llm["model"] == "claude-3-5-sonnet-20241022"
    assert (llm["provider"], llm["temperature"], llm["max_tokens"]) == ("anthropic", 0.3, 512)
    assert llm["request_params"] == {"stop": ["\n\nHuman:"], "_type": "anthropic-chat"}
    # UsageMetadata: input_tokens already include cache reads and writes, output_tokens the reasoning.
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (1200, 80, 1280)
    assert (llm["cached_input_tokens"], llm["cache_write_tokens"], llm["reasoning_tokens"]) == (1024, 100, 30)
    assert llm["reported_cost_usd"] == pytest.approx(0.00115)  # a Decimal serialised as a string
    assert llm["time_to_first_token_ms"] == pytest.approx(400.0)  # first_token_time
    assert (llm["prompt_name"], llm["prompt_version"]) == ("acme/refund-answer", "a1b2c3d4")
    assert llm["session_id"] == "conv-42"

    retriever = rows["VectorStoreRetriever"]
    assert retriever["kind"] == "retrieval"
    assert retriever["documents"] == [{"metadata": {"id": "doc-17", "relevance_score": 0.88}, "id": "doc-17",
                                       "text": "Refunds are accepted within 30 days.", "score": 0.88, "rank": 1}]

    tool = rows["lookup_order"]
    assert (tool["kind"], tool["status"], tool["error_message"]) == ("tool", "error", "KeyError('A-1')")
    assert (tool["trace_id"], tool["parent_span_id"]) == (root_id, root_id)  # from the dotted order
    assert tool["metadata"]["inputs"] == {"order_id": "A-1"}

    rejects = rejects_of(out)
    assert [(r.reason, r.number, r.detail) for r in rejects] == [
        ("invalid_type", 5, "record 5: expected a JSON object, got str"),
        ("missing_required_field", 6, "record 6: run.id is missing"),
    ]
    assert rejects[1].trace_id == root_id and rejects[1].raw


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
          "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 10}},
         (100, 30, 130, 60, None, 10)),
        ({"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5},
         (105, 4, 109, 90, 5, None)),
        ({"input_tokens": 50, "output_tokens": 20, "input_tokens_details": {"cached_tokens": 30},
          "output_tokens_details": {"reasoning_tokens": 12}},
         (50, 20, 70, 30, None, 12)),
    ],
)
def test_provider_usage_objects_follow_the_token_rule(usage: dict[str, Any], expected: tuple[Any, ...]) -> None:
    (row,) = rows_of(read_values(llm_run(outputs={"choices": [], "usage": usage})))
    columns = ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens", "cache_write_tokens",
               "reasoning_tokens")
    assert tuple(row.get(c) for c in columns) == expected


def test_leaf_run_level_usage_and_costs() -> None:
    (row,) = rows_of(read_values(llm_run(
        prompt_tokens=40, completion_tokens=10, total_tokens=50, prompt_token_details={"cache_read": 32},
        completion_token_details={"reasoning": 3}, prompt_cost="0.0001", completion_cost="0.0002")))
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (40, 10, 50)
    assert (row["cached_input_tokens"], row["reasoning_tokens"]) == (32, 3)
    assert row["reported_cost_usd"] == pytest.approx(0.0003)


def test_prompt_strings_and_params_from_invocation() -> None:
    (row,) = rows_of(read_values(llm_run(
        inputs={"prompts": ["Say hi"]},
        outputs={"generations": [[{"text": "hi", "generation_info": {"finish_reason": "stop"}}]],
                 "llm_output": {"token_usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                                "model_name": "gpt-3.5-turbo-instruct"}},
        extra={"invocation_params": {"model_name": "gpt-3.5-turbo-instruct", "top_p": 0.9, "n": 1}})))
    assert row["input_messages"] == [{"role": "user", "content": "Say hi"}]
    assert row["output_text"] == "hi" and row["output_messages"] == [{"role": "assistant", "content": "hi"}]
    assert (row["input_tokens"], row["output_tokens"]) == (3, 1)
    assert row["top_p"] == 0.9 and row["request_params"] == {"n": 1}
    assert row["request_model"] == row["model"] == "gpt-3.5-turbo-instruct"


def test_nested_child_runs_are_flattened() -> None:
    parent = {"id": "p", "name": "agent", "run_type": "chain", "start_time": "2024-10-11T20:00:00Z",
              "child_runs": [llm_run(id="c1", trace_id=None), {"run_type": "tool", "name": "broken"}]}
    out = read_values(parent)
    rows = rows_of(out)
    assert [(r["span_id"], r["parent_span_id"], r["trace_id"]) for r in rows] == [("p", None, "p"), ("c1", "p", "p")]
    (reject,) = rejects_of(out)
    assert reject.detail == "record 1: run.child_runs[1].id is missing"


def test_batch_shape_errors_keep_the_good_runs() -> None:
    out = read_values(
        {"post": [llm_run(id="a"), 3, {"name": "no id"}, llm_run(id="b")], "patch": "nope"},
        {"post": [llm_run(id={"x": 1}), llm_run(id="c", run_type=["llm"])]},
        [1, 2],
        {"unrelated": True},
    )
    assert [r["span_id"] for r in rows_of(out)] == ["a", "b"]
    assert [(r.reason, r.detail) for r in rejects_of(out)] == [
        ("invalid_type", "record 1: post[1] must be a JSON object, got int"),
        ("missing_required_field", "record 1: post[2].id is missing"),
        ("invalid_type", "record 1: field 'patch' must be a list of runs, got str"),
        ("invalid_type", "record 2: post[0].id must be a string, got dict"),
        ("invalid_type", "record 2: post[1].run_type must be a string, got list"),
        ("invalid_type", "record 3: expected a JSON object, got list"),
        ("unknown_format", "record 4: not a LangSmith run or ingest batch (keys: unrelated)"),
    ]


def test_first_token_time_is_the_earliest_new_token_event() -> None:
    events = [{"name": "new_token", "time": "2024-10-11T20:00:00.300000+00:00"},
              {"name": "new_token", "time": 1728676800.2},  # epoch seconds, the earliest
              {"name": "new_token", "time": "2024-10-11T20:00:00.200000+00:00"},
              {"name": "new_token", "time": "not a time"}, {"name": "start", "time": "2024-10-11T19:00:00Z"}]
    (row,) = rows_of(read_values(llm_run(events=events)))
    assert row["time_to_first_token_ms"] == pytest.approx(200.0, abs=0.01)


def test_error_patch_and_orphan_patch() -> None:
    rows = rows_of(read_values(
        {"post": [llm_run(id="r1", end_time=None)]},
        {"patch": [{"id": "r1", "trace_id": "r1", "end_time": "2024-10-11T20:00:03+00:00",
                    "error": "openai.RateLimitError: 429"},
                   {"id": "ghost", "trace_id": "t-ghost", "end_time": "2024-10-11T20:00:03+00:00"}]},
    ))
    merged, rejects = langsmith.postprocess(through_frame(rows[:1], "a.json") + through_frame(rows[1:], "b.json"))
    (row,) = merged
    assert (row["status"], row["error_message"]) == ("error", "openai.RateLimitError: 429")
    assert row["latency_ms"] == pytest.approx(3000.0) and row["kind"] == "llm" and row["_file"] == "a.json"
    (orphan,) = rejects
    assert (orphan.reason, orphan.span_id, orphan.trace_id, orphan.source_file, orphan.number) == (
        "orphan_patch", "ghost", "t-ghost", "b.json", 2)
    assert "ghost" in orphan.detail and orphan.raw and orphan.source_format == "langsmith"


def langchain_document(doc_id: str, text: str, score_key: str, score: float) -> dict[str, Any]:
    return {"id": doc_id, "page_content": text, "metadata": {score_key: score, "source": "kb"}, "type": "Document"}


def chain_run(run_id: str, name: str, run_type: str = "chain", **fields: Any) -> dict[str, Any]:
    return {"id": run_id, "trace_id": "root", "parent_run_id": "root", "name": name, "run_type": run_type,
            "start_time": "2024-10-11T20:00:00+00:00", "inputs": {"query": "refunds?"}, **fields}


def test_documents_sent_in_a_patch_are_kept_for_retriever_and_rerank_runs() -> None:
    """The SDK posts a run with its inputs and patches the outputs in later; patches carry no run_type."""
    docs = [langchain_document("kb-1", "Refunds within 30 days.", "score", 0.8),
            langchain_document("kb-2", "Shipping takes 3 days.", "score", 0.4)]
    reranked = [langchain_document("kb-1", "Refunds within 30 days.", "relevance_score", 0.97)]
    rows = rows_of(read_values(
        {"post": [chain_run("ret", "vector_search", "retriever"), chain_run("rr", "reranking")]},
        {"patch": [{"id": "ret", "end_time": "2024-10-11T20:00:01+00:00", "outputs": {"documents": docs}},
                   {"id": "rr", "end_time": "2024-10-11T20:00:02+00:00",
                    "outputs": {"documents": reranked, "model": "rerank-v3.5"}}]},
    ))
    merged, rejects = langsmith.postprocess(through_frame(rows[:2], "a.json") + through_frame(rows[2:], "b.json"))
    assert rejects == []
    by_id = {r["span_id"]: r for r in merged}
    retrieval, rerank = by_id["ret"], by_id["rr"]
    assert retrieval["kind"] == "retrieval"
    assert retrieval["documents"] == [
        {"id": "kb-1", "metadata": {"score": 0.8, "source": "kb"}, "text": "Refunds within 30 days.", "score": 0.8,
         "rank": 1},
        {"id": "kb-2", "metadata": {"score": 0.4, "source": "kb"}, "text": "Shipping takes 3 days.", "score": 0.4,
         "rank": 2}]
    # The documents are the span's result, not repeated in its metadata.
    assert "outputs" not in retrieval["metadata"]
    assert rerank["kind"] == "rerank"  # run_type chain: the name says what it is
    assert [(d["id"], d["score"], d["rank"]) for d in rerank["documents"]] == [("kb-1", 0.97, 1)]
    assert rerank["metadata"]["outputs"] == {"model": "rerank-v3.5"}
    assert rerank["latency_ms"] == pytest.approx(2000.0)


@pytest.mark.parametrize(("name", "run_type", "kind"), [
    ("reranking", "chain", "rerank"),
    ("Rerank documents", None, "rerank"),
    ("rerank", "retriever", "retrieval"),  # a run type that names a kind wins over the name
    ("tools", "chain", "chain"),  # only kinds LangSmith has no run type for are read from the name
    ("retrieve", "chain", "chain"),
])
def test_kind_from_run_type_then_name(name: str, run_type: str | None, kind: str) -> None:
    run = chain_run("x", name, run_type)
    if run_type is None:
        del run["run_type"]
    (row,) = rows_of(read_values(run))
    assert row["kind"] == kind


def test_tool_calls_take_the_canonical_shape_from_every_message_form() -> None:
    openai_call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    langchain_call = {"name": "lookup", "args": {"q": "x"}, "id": "call_1", "type": "tool_call"}
    serialised = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                  "kwargs": {"content": "", "tool_calls": [langchain_call], "type": "ai"}}
    (row,) = rows_of(read_values(llm_run(inputs={"messages": [
        {"role": "assistant", "content": None, "tool_calls": [openai_call]},
        {"type": "ai", "content": "", "tool_calls": [langchain_call], "additional_kwargs": {},
         "response_metadata": {"finish_reason": "tool_calls"}},
        serialised,
        {"type": "tool", "content": "found", "tool_call_id": "call_1", "name": "lookup"},
    ]})))
    first, second, third, tool = row["input_messages"]
    assert first["tool_calls"] == [{"id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'}]
    assert second == third == {"role": "assistant", "content": "",
                               "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]}
    assert tool == {"role": "tool", "content": "found", "tool_call_id": "call_1", "name": "lookup"}


def write_json(root: Path, name: str, value: Any) -> Path:
    folder = landing_folder(root, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(value))
    return path


def test_end_to_end_patch_in_another_file_of_the_partition(tmp_path: Path) -> None:
    payload = stream_payload()
    orphan = copy.deepcopy(payload["patch"][0])
    orphan["id"] = "00000000-0000-4000-8000-00000000dead"
    files = [
        write_json(tmp_path, "a_post.json", {"post": payload["post"]}),
        write_json(tmp_path, "b_patch.json", {"patch": [payload["patch"][0], orphan]}),
        write_json(tmp_path, "c_whole.json", payload | {"post": [dict(payload["post"][0], id="r-whole")],
                                                        "patch": [dict(payload["patch"][0], id="r-whole")]}),
    ]
    result = ingest_files(files, HOUR, tmp_path)
    audit = result.audit.set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit["spans_written"].to_dict() == {
        "2024/10/11/20/a_post.json": 1, "2024/10/11/20/b_patch.json": 0, "2024/10/11/20/c_whole.json": 1}
    assert audit.loc["2024/10/11/20/b_patch.json", "spans_quarantined"] == 1
    assert orjson.loads(audit.loc["2024/10/11/20/b_patch.json", "quarantined_by_reason"]) == {"orphan_patch": 1}

    span = result.spans.set_index("span_id").loc[RUN_ID]
    assert span["source_file"] == "2024/10/11/20/a_post.json" and span["status"] == "ok"
    assert span["latency_ms"] == pytest.approx(1328.441)
    assert span["time_to_first_token_ms"] == pytest.approx(1238.419)
    assert span["output_tokens"] == 9 and span["output_text"] == "Howdy! How can I assist you today?"
    assert str(span["end_time"]) == "2024-10-11 20:58:22.023816+00:00"
    assert orjson.loads(span["metadata"])["langsmith"]["patched_from"] == ["2024/10/11/20/b_patch.json:1"]

    (quarantined,) = result.quarantined.itertuples()
    assert (quarantined.reason, quarantined.span_id) == ("orphan_patch", orphan["id"])
    assert quarantined.source_file == "2024/10/11/20/b_patch.json" and quarantined.source_line == 1
    assert quarantined.detail.startswith("2024/10/11/20/b_patch.json: record 1: patch for run")


def test_end_to_end_run_list(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, datetime(2026, 10, 1, 5, tzinfo=UTC))
    folder.mkdir(parents=True)
    path = folder / RUNS.name
    path.write_bytes(RUNS.read_bytes())
    result = ingest_files([path], datetime(2026, 10, 1, 5, tzinfo=UTC), tmp_path)
    (audit,) = result.audit.itertuples()
    assert (audit.records_read, audit.spans_found, audit.spans_written, audit.spans_quarantined) == (6, 6, 4, 2)
    assert audit.late_spans == 0
    assert sorted(result.spans["kind"]) == ["chain", "llm", "retrieval", "tool"]


FIELD_NAMES = ["id", "trace_id", "parent_run_id", "dotted_order", "name", "run_type", "start_time", "end_time",
               "inputs", "outputs", "error", "extra", "events", "tags", "usage_metadata", "prompt_tokens",
               "total_cost", "first_token_time", "child_runs", "messages", "choices", "generations", "role",
               "content", "metadata", "time"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), children,
                                                                      max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(["post", "patch"]), field=st.sampled_from(FIELD_NAMES), value=JSON_VALUES)
def test_any_value_in_any_field_gives_rows_or_rejects(op: str, field: str, value: Any) -> None:
    payload = stream_payload()
    payload[op][0][field] = value
    out = read_values(payload, value)
    assert out and all(isinstance(item, dict | Reject) for item in out)
    rows, rejects = langsmith.postprocess(through_frame(rows_of(out), "f.json")) if rows_of(out) else ([], [])
    assert all(r.reason == "orphan_patch" for r in rejects)
    assert all(not key.startswith("_") or key == "_file" for row in rows for key in row)
    if rows:
        frame = pd.DataFrame(rows).drop(columns="_file").assign(
            source_file="f", source_format="langsmith", export_hour=pd.Timestamp(HOUR), schema_version=1)
        checked = apply_row_rules(frame)
        assert len(checked.valid) + len(checked.quarantined) == len(rows)


# ---------------------------------------------------------------------------------------------------------------
# Patches without `id` (the JS SDK's RunUpdate): matched by dotted_order, else by a trace with one run

JS_BATCH = FIXTURES / "langsmith_js_batch_no_patch_id.json"
JS_ROOT = "01a250d2-a719-7000-ba1f-9c2b77d40e51"
JS_LLM = "01a250d2-a751-7001-91c0-2e8a9b1366f7"
JS_HOUR = datetime(2026, 12, 7, 14, tzinfo=UTC)


def js_batch() -> dict[str, Any]:
    return json.loads(JS_BATCH.read_text())


@pytest.mark.parametrize(("dotted", "expected"), [
    ("20241011T205820695375Zfe8ffecb-72ce-4cd2-bdb7-01f34654c391", "fe8ffecb-72ce-4cd2-bdb7-01f34654c391"),
    (f"20261207T140512345001Z{JS_ROOT}.20261207T140512401002Z{JS_LLM}", JS_LLM),  # JS: ms + execution order
    (f"20230914T223155647Z{JS_LLM}", JS_LLM),  # older JS SDKs: milliseconds only
    (f"20261207T140512345001Z{JS_ROOT}.", None),
    (f"20261207T140512345001Z{JS_ROOT}.20261207T140512Znot-a-uuid", None),
    (f"2026-12-07T14:05:12Z{JS_LLM}", None),
    ("", None),
    (42, None),
])
def test_dotted_run_id_is_the_last_segments_uuid(dotted: Any, expected: str | None) -> None:
    assert langsmith.dotted_run_id(dotted) == expected


def test_js_sdk_batch_patches_without_id_merge_by_dotted_order() -> None:
    rows = rows_of(read_path(JS_BATCH))
    assert [r.get("_matched_by") for r in rows if r.get("_patch")] == ["dotted_order", "dotted_order"]
    merged, rejects = langsmith.postprocess(through_frame(rows, "2026/12/07/14/batch.json"))
    assert rejects == []
    by_id = {r["span_id"]: r for r in merged}
    assert set(by_id) == {JS_ROOT, JS_LLM}

    llm = by_id[JS_LLM]
    assert (llm["kind"], llm["trace_id"], llm["parent_span_id"], llm["status"]) == ("llm", JS_ROOT, JS_ROOT, "ok")
    assert llm["start_time"] == "2026-12-07T14:05:12.401002Z"
    assert llm["end_time"] == 1796652313295  # JS sends end_time as epoch milliseconds
    assert llm["latency_ms"] == pytest.approx(893.998)
    assert llm["time_to_first_token_ms"] == pytest.approx(611.998)  # the first new_token event
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (31, 13, 44)
    assert (llm["cached_input_tokens"], llm["reasoning_tokens"]) == (0, 0)
    assert (llm["request_model"], llm["model"], llm["provider"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18",
                                                                     "openai")
    assert llm["output_text"] == "Annual plans can be refunded within 30 days of purchase."
    assert [m["role"] for m in llm["input_messages"]] == ["system", "user"]
    assert (llm["user_id"], llm["session_id"], llm["environment"]) == ("u-1042", "conv-77", "production")
    meta = llm["metadata"]["langsmith"]
    assert meta["patch_matched_by"] == "dotted_order" and meta["event_counts"] == {"new_token": 14}
    assert meta["patched_from"] == ["2026/12/07/14/batch.json:1"]

    root = by_id[JS_ROOT]
    assert (root["kind"], root["parent_span_id"], root["output_text"]) == (
        "chain", None, "Annual plans can be refunded within 30 days of purchase.")
    assert root["latency_ms"] == pytest.approx(953.999)


def test_js_sdk_patches_without_id_in_another_file_of_the_hour(tmp_path: Path) -> None:
    batch = js_batch()
    folder = landing_folder(tmp_path, JS_HOUR)
    folder.mkdir(parents=True)
    (folder / "a_post.json").write_text(json.dumps({"post": batch["post"]}))
    (folder / "b_patch.json").write_text(json.dumps({"patch": batch["patch"]}))
    result = ingest_files(sorted(folder.iterdir()), JS_HOUR, tmp_path)
    assert result.quarantined.empty
    assert result.audit.set_index("source_file")["spans_written"].to_dict() == {
        "2026/12/07/14/a_post.json": 2, "2026/12/07/14/b_patch.json": 0}
    span = result.spans.set_index("span_id").loc[JS_LLM]
    assert span["source_file"] == "2026/12/07/14/a_post.json"
    assert str(span["end_time"]) == "2026-12-07 14:05:13.295000+00:00"
    assert span["latency_ms"] == pytest.approx(893.998)
    assert span["time_to_first_token_ms"] == pytest.approx(611.998)
    assert span["output_tokens"] == 13
    meta = orjson.loads(span["metadata"])["langsmith"]
    assert meta["patched_from"] == ["2026/12/07/14/b_patch.json:1"] and meta["patch_matched_by"] == "dotted_order"


def without_id(run: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("id", *drop)}


def test_patch_without_id_or_dotted_order_matches_the_only_run_of_its_trace() -> None:
    batch = js_batch()
    root_patch = without_id(batch["patch"][1], "dotted_order")
    rows = rows_of(read_values({"post": batch["post"][:1]}, {"patch": [root_patch]}))
    (row,), rejects = langsmith.postprocess(through_frame(rows, "f.json"))
    assert rejects == []
    assert row["span_id"] == JS_ROOT and row["end_time"] == 1796652313299
    assert row["metadata"]["langsmith"]["patch_matched_by"] == "trace_id"


def test_patch_without_id_that_names_no_run_is_an_orphan() -> None:
    batch = js_batch()
    by_dotted = batch["patch"][0]  # names the llm run, whose post is not in the hour
    by_trace = dict(without_id(batch["patch"][1], "dotted_order"), trace_id="01a250d2-0000-7000-8000-000000000000")
    rows = rows_of(read_values({"post": batch["post"][:1]}, {"patch": [by_dotted, by_trace]}))
    merged, rejects = langsmith.postprocess(through_frame(rows, "b.json"))
    assert [r["span_id"] for r in merged] == [JS_ROOT] and pd.isna(merged[0]["end_time"])
    assert [(r.reason, r.span_id, r.trace_id, r.source_file, r.number) for r in rejects] == [
        ("orphan_patch", JS_LLM, JS_ROOT, "b.json", 2),
        ("orphan_patch", None, "01a250d2-0000-7000-8000-000000000000", "b.json", 2)]
    assert rejects[0].detail == (f"record 2: patch[0] has no id; its dotted_order names run '{JS_LLM}', which has "
                                 "no post or run in this export hour")
    assert rejects[1].detail == ("record 2: patch[1] has no id or dotted_order, and no run of its trace_id "
                                 "'01a250d2-0000-7000-8000-000000000000' is in this export hour")
    assert all(r.raw and r.source_format == "langsmith" for r in rejects)


def test_patch_without_id_or_dotted_order_in_a_trace_of_several_runs_is_ambiguous() -> None:
    batch = js_batch()
    llm_patch = without_id(batch["patch"][0], "dotted_order")
    rows = rows_of(read_values(batch | {"patch": [llm_patch]}))
    merged, rejects = langsmith.postprocess(through_frame(rows, "f.json"))
    assert sorted(r["span_id"] for r in merged) == sorted([JS_ROOT, JS_LLM])
    assert all(pd.isna(r["end_time"]) for r in merged)  # nothing merged into a guessed run
    (reject,) = rejects
    assert (reject.reason, reject.trace_id, reject.span_id) == ("ambiguous_patch", JS_ROOT, None)
    assert reject.detail == (f"record 1: patch[0] has no id or dotted_order, and its trace_id '{JS_ROOT}' has 2 "
                             "runs in this export hour: which one it completes is unknown")


def test_patch_without_id_needs_a_readable_dotted_order_or_a_trace_id() -> None:
    patch = js_batch()["patch"][0]
    out = read_values({"patch": [
        without_id(patch, "dotted_order", "trace_id"),
        dict(without_id(patch), dotted_order="20261207T140512Znot-a-run"),
        dict(without_id(patch), dotted_order=20261207),
        dict(patch, id=""),  # an empty id counts as none: the dotted order still finds the run
    ]})
    assert [(r.reason, r.detail) for r in rejects_of(out)] == [
        ("missing_required_field", "record 1: patch[0] has no id, dotted_order or trace_id to find its run by"),
        ("invalid_type", "record 1: patch[1] has no id, and its dotted_order '20261207T140512Znot-a-run' does not "
                         "end in a '<timestamp>Z<run uuid>' segment naming its run"),
        ("invalid_type", "record 1: patch[2] has no id, and its dotted_order must be a string, got int"),
    ]
    (row,) = rows_of(out)
    assert (row["span_id"], row["_matched_by"]) == (JS_LLM, "dotted_order")


def test_posts_and_run_lists_still_need_an_id() -> None:
    post = without_id(js_batch()["post"][1])
    out = read_values({"post": [post]}, post)
    assert [(r.reason, r.detail) for r in rejects_of(out)] == [
        ("missing_required_field", "record 1: post[0].id is missing"),
        ("missing_required_field", "record 2: run.id is missing")]
