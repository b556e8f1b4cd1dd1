"""Instrumentation dialects inside OTLP (ingest/dialects.py): Langfuse SDK, Logfire, OpenLLMetry, OpenLIT and
OpenInference attribute sets as those libraries write them (attribute names taken from their source code),
and the Logfire streaming fold across spans of one export hour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from aiobs_pipeline.ingest import dialects, otlp
from aiobs_pipeline.ingest.partition import ingest_files
from tests.unit.test_reader_otlp import HOUR, START, event, one, request, span, write_landing

MS = 1_000_000


def lines(*requests: Any) -> str:
    return "\n".join(json.dumps(r) for r in requests) + "\n"


def ingest(tmp_path: Path, *files: str) -> Any:
    paths = [write_landing(tmp_path, f"part-{i}.jsonl", text) for i, text in enumerate(files)]
    return ingest_files(paths, HOUR, tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Langfuse SDK v3+ (langfuse/_client/attributes.py; langfuse/openai.py for the OpenAI drop-in)

LANGFUSE_OPENAI_USAGE = {  # langfuse.openai._parse_usage: the OpenAI usage object as a dict
    "prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}


def langfuse_generation(**extra: Any) -> dict[str, Any]:
    attrs = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o-mini",
        "langfuse.observation.usage_details": json.dumps(LANGFUSE_OPENAI_USAGE),
        "langfuse.observation.input": json.dumps([{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Refund?"}]),
        "langfuse.observation.output": json.dumps({"role": "assistant", "content": "Yes, within 30 days."}),
        # json.dumps writes the wrapper's "no max_tokens" default (float inf) as Infinity, which is not JSON.
        "langfuse.observation.model.parameters": json.dumps({"temperature": 0.2, "max_tokens": float("inf"),
                                                            "top_p": 1, "frequency_penalty": 0}),
        "langfuse.observation.completion_start_time": json.dumps("2026-09-21T14:13:20.250000Z"),
        "langfuse.observation.metadata.team": "support",
        "langfuse.environment": "staging",
        "langfuse.release": "r42",
        "langfuse.version": "v1",
        "user.id": "u-1",
        "session.id": "s-1",
    }
    attrs.update(extra)
    return attrs


def test_langfuse_openai_generation_is_an_llm_row_with_tokens_messages_and_ttft() -> None:
    row = one(request(span("a1", "OpenAI-generation", langfuse_generation(), kind=1)))
    assert (row["kind"], row["model"], row["request_model"]) == ("llm", "gpt-4o-mini", "gpt-4o-mini")
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (20, 9, 29)
    assert (row["cached_input_tokens"], row["reasoning_tokens"]) == (4, 2)
    assert [m["role"] for m in row["input_messages"]] == ["system", "user"]
    assert row["output_text"] == "Yes, within 30 days."
    assert row["time_to_first_token_ms"] == pytest.approx(250.0)
    assert (row["temperature"], row["top_p"], row["max_tokens"]) == (0.2, 1, None)
    assert row["request_params"] == {"frequency_penalty": 0}
    assert (row["user_id"], row["session_id"], row["environment"]) == ("u-1", "s-1", "staging")
    meta = row["metadata"]
    assert meta["langfuse.release"] == "r42" and meta["langfuse.observation.metadata.team"] == "support"
    assert not any(k.startswith(("langfuse.observation.input", "langfuse.observation.usage")) for k in meta)


def test_langfuse_manual_generation_spells_usage_with_langfuse_keys() -> None:
    attrs = langfuse_generation(**{
        "langfuse.observation.usage_details": json.dumps({"input": 20, "output": 9, "total": 29}),
        "langfuse.observation.cost_details": json.dumps({"input": 0.001, "output": 0.002}),
        "langfuse.observation.output": "Yes, within 30 days.",
    })
    row = one(request(span("a2", "my-generation", attrs, kind=1)))
    assert (row["kind"], row["input_tokens"], row["output_tokens"], row["total_tokens"]) == ("llm", 20, 9, 29)
    assert row["cached_input_tokens"] is None and row["reasoning_tokens"] is None
    assert row["reported_cost_usd"] == pytest.approx(0.003)
    assert row["output_messages"] == [{"role": "assistant", "content": "Yes, within 30 days."}]


def test_langfuse_embedding_is_an_embedding_row() -> None:
    attrs = {"langfuse.observation.type": "embedding", "langfuse.observation.model.name": "text-embedding-3-small",
             "langfuse.observation.usage_details": json.dumps({"input": 8}),
             "langfuse.observation.input": "refund policy",
             "langfuse.observation.output": json.dumps({"dimensions": 1536, "count": 1})}
    row = one(request(span("a3", "OpenAI-embedding", attrs, kind=1)))
    assert (row["kind"], row["model"], row["input_tokens"]) == ("embedding", "text-embedding-3-small", 8)
    assert row["output_tokens"] is None and row["output_text"] is None
    assert row["metadata"]["langfuse.observation.output"] == {"dimensions": 1536, "count": 1}
    assert row["input_messages"] == [{"role": "user", "content": "refund policy"}]


@pytest.mark.parametrize(("observation_type", "kind"), [("span", "chain"), ("agent", "chain"), ("tool", "tool"),
                                                        ("retriever", "retrieval"), ("event", "chain")])
def test_langfuse_observation_types_give_kinds(observation_type: str, kind: str) -> None:
    row = one(request(span("a4", "step", {"langfuse.observation.type": observation_type}, kind=1)))
    assert row["kind"] == kind


def test_langfuse_unreadable_usage_and_start_time_stay_in_metadata() -> None:
    attrs = langfuse_generation(**{"langfuse.observation.usage_details": "n/a",
                                   "langfuse.observation.completion_start_time": "soon"})
    row = one(request(span("a5", "g", attrs, kind=1)))
    assert row["input_tokens"] is None and row["time_to_first_token_ms"] is None
    assert row["metadata"]["langfuse.observation.usage_details"] == "n/a"
    assert row["metadata"]["langfuse.observation.completion_start_time"] == "soon"


# ---------------------------------------------------------------------------------------------------------
# Logfire (logfire/_internal/integrations/llm_providers/openai.py, llm_provider.py)

LOGFIRE_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Refund?"}],
                   "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.3}
LOGFIRE_USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                 "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}


def logfire_chat(template: str = "Chat Completion with {request_data[model]!r}", **extra: Any) -> dict[str, Any]:
    attrs = {"logfire.msg_template": template, "logfire.msg": "Chat Completion with 'gpt-4o-mini'",
             "logfire.span_type": "span", "logfire.tags": ["LLM"], "request_data": json.dumps(LOGFIRE_REQUEST),
             "gen_ai.system": "openai", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.operation.name": "chat", "gen_ai.request.temperature": 0.3, "async": False}
    attrs.update(extra)
    return attrs


def logfire_stream_log(**extra: Any) -> dict[str, Any]:
    attrs = logfire_chat("streaming response from {request_data[model]!r} took {duration:.2f}s", **{
        "logfire.span_type": "log", "duration": 1.2,
        "response_data": json.dumps({"message": {"role": "assistant", "content": "Yes."}, "usage": LOGFIRE_USAGE}),
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.raw": json.dumps(LOGFIRE_USAGE)})
    attrs.update(extra)
    return attrs


def logfire_pair(parent: str = "00000000000000aa") -> tuple[dict[str, Any], dict[str, Any]]:
    req = span("b1", "Chat Completion with 'gpt-4o-mini'", logfire_chat(user_id="u-7", session_id="s-7"),
               parent=parent, duration_ms=15)
    log = span("b2", "streaming response from 'gpt-4o-mini' took 1.20s",
               logfire_stream_log(user_id="u-7", session_id="s-7"), parent=parent, start=START + 1_215 * MS,
               duration_ms=0, kind=1)
    return req, log


def test_logfire_stream_is_folded_into_one_llm_row_covering_the_stream(tmp_path: Path) -> None:
    req, log = logfire_pair()
    result = ingest(tmp_path, lines(request(req, log)))
    assert len(result.quarantined) == 0
    llm = result.spans[result.spans["kind"] == "llm"]
    assert len(llm) == 1
    row = llm.iloc[0]
    assert row["span_id"] == "b1"
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"]) == (12, 7, 0)
    assert row["latency_ms"] == pytest.approx(1215.0)
    assert row["output_text"] == "Yes."
    assert (row["user_id"], row["session_id"]) == ("u-7", "s-7")
    assert [m["content"] for m in orjson.loads(row["input_messages"])] == ["Refund?"]
    assert orjson.loads(row["metadata"])["logfire.stream"]["span_id"] == "b2"


def test_logfire_stream_and_request_in_different_files_of_the_hour(tmp_path: Path) -> None:
    req, log = logfire_pair(parent="")
    result = ingest(tmp_path, lines(request(req)), lines(request(log)))
    assert len(result.spans) == 1 and result.spans.iloc[0]["output_tokens"] == 7
    assert set(result.audit["spans_written"]) == {0, 1}


def test_logfire_stream_without_its_request_span_keeps_the_streams_duration(tmp_path: Path) -> None:
    _, log = logfire_pair()
    result = ingest(tmp_path, lines(request(log)))
    row = result.spans.iloc[0]
    assert (row["kind"], row["output_tokens"]) == ("llm", 7)
    assert row["latency_ms"] == pytest.approx(1200.0)
    assert "aiobs.logfire_stream" in orjson.loads(row["metadata"])


def test_two_streams_under_one_parent_each_fold_into_their_own_request(tmp_path: Path) -> None:
    req, log = logfire_pair()
    req2 = {**req, "spanId": "c1", "startTimeUnixNano": str(START + 2_000 * MS),
            "endTimeUnixNano": str(START + 2_015 * MS)}
    log2 = {**log, "spanId": "c2", "startTimeUnixNano": str(START + 2_500 * MS),
            "endTimeUnixNano": str(START + 2_500 * MS)}
    result = ingest(tmp_path, lines(request(req, log, req2, log2)))
    assert sorted(result.spans["span_id"]) == ["b1", "c1"]
    assert sorted(result.spans["latency_ms"]) == pytest.approx([500.0, 1215.0])


def test_logfire_v1_request_and_response_data_without_genai_attributes() -> None:
    attrs = {"logfire.msg_template": "Chat Completion with {request_data[model]!r}", "logfire.span_type": "span",
             "request_data": json.dumps({"model": "gpt-4o-mini", "max_tokens": 50,
                                         "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Refund?"}]}),
             "response_data": json.dumps({"message": {"role": "assistant", "content": "Yes.", "refusal": None},
                                          "usage": {**LOGFIRE_USAGE, "prompt_tokens_details": {"cached_tokens": 5}}})}
    row = one(request(span("d1", "Chat Completion with 'gpt-4o-mini'", attrs)))
    assert (row["kind"], row["model"], row["max_tokens"]) == ("llm", "gpt-4o-mini", 50)
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"]) == (12, 7, 5)
    assert [m["role"] for m in row["input_messages"]] == ["system", "user"]
    assert row["output_text"] == "Yes."
    assert "request_data" not in row["metadata"] and "response_data" not in row["metadata"]


def test_logfire_embedding_span() -> None:
    attrs = {"logfire.msg_template": "Embedding Creation with {request_data[model]!r}",
             "request_data": json.dumps({"model": "text-embedding-3-small", "input": "refund policy",
                                         "encoding_format": "base64"}),
             "response_data": json.dumps({"usage": {"prompt_tokens": 3, "total_tokens": 3}})}
    row = one(request(span("d2", "Embedding Creation with 'text-embedding-3-small'", attrs)))
    assert (row["kind"], row["input_tokens"], row["model"]) == ("embedding", 3, "text-embedding-3-small")
    assert row["input_messages"] == [{"role": "user", "content": "refund policy"}]
    assert row["request_params"] == {"encoding_format": "base64"}


# ---------------------------------------------------------------------------------------------------------
# OpenLLMetry (opentelemetry-semantic-conventions-ai; traceloop-sdk association properties)


def test_openllmetry_association_properties_beat_the_request_user() -> None:
    attrs = {"llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.user": "acct-9",
             "traceloop.association.properties.user_id": "u-3",
             "traceloop.association.properties.session_id": "s-3"}
    row = one(request(span("e1", "openai.chat", attrs)))
    assert (row["user_id"], row["session_id"]) == ("u-3", "s-3")
    assert row["metadata"]["gen_ai.user"] == "acct-9"


@pytest.mark.parametrize("key", ["gen_ai.user", "llm.user", "gen_ai.request.user"])
def test_request_user_field_is_the_user_when_nothing_explicit(key: str) -> None:
    row = one(request(span("e2", "openai.chat", {"llm.request.type": "chat", key: "acct-9"})))
    assert row["user_id"] == "acct-9"
    assert key not in (row["metadata"] or {}) and "user" not in (row["request_params"] or {})


def test_openllmetry_older_generation_fully_read() -> None:
    attrs = {"llm.request.type": "chat", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "llm.usage.prompt_tokens": 30,
             "llm.usage.completion_tokens": 12, "llm.usage.total_tokens": 42,
             "llm.usage.cache_read_input_tokens": 8, "llm.usage.reasoning_tokens": 4, "llm.is_streaming": True,
             "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Refund?",
             "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Yes."}
    chunks = [event("llm.content.completion.chunk", offset_ms=300 + i) for i in range(40)]
    row = one(request(span("e3", "openai.chat", attrs, events=chunks)))
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (30, 12, 42)
    assert (row["cached_input_tokens"], row["reasoning_tokens"]) == (8, 4)
    assert row["time_to_first_token_ms"] == pytest.approx(300.0)
    assert row["metadata"]["aiobs.stream_chunk_events"] == 40
    assert "otel.events" not in row["metadata"]
    assert row["output_text"] == "Yes."


# ---------------------------------------------------------------------------------------------------------
# OpenLIT (sdk/python/src/openlit/semcov)


def openlit_chat(**extra: Any) -> dict[str, Any]:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.usage.input_tokens": 25, "gen_ai.usage.output_tokens": 6, "gen_ai.usage.cost": 0.0,
             "gen_ai.server.time_to_first_token": 0.21, "gen_ai.request.user": "acct-5",
             "gen_ai.usage.prompt_tokens_details.cached_tokens": 0,
             "gen_ai.usage.completion_tokens_details.reasoning_tokens": 0,
             "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
             "gen_ai.input.messages": json.dumps([
                 {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                 {"role": "user", "parts": [{"type": "text", "content": "Refund?"}]}]),
             "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Yes."}],
                                                    "finish_reason": "stop"}])}
    attrs.update(extra)
    return attrs


def test_openlit_system_prompt_stored_once_ttft_and_user() -> None:
    row = one(request(span("f1", "chat gpt-4o-mini", openlit_chat())))
    assert [m["role"] for m in row["input_messages"]] == ["system", "user"]
    assert row["time_to_first_token_ms"] == pytest.approx(210.0)
    assert row["user_id"] == "acct-5"
    assert (row["cached_input_tokens"], row["reasoning_tokens"]) == (0, 0)


def test_system_instructions_not_in_the_messages_are_still_prepended() -> None:
    attrs = openlit_chat(**{"gen_ai.input.messages": json.dumps([{"role": "user", "content": "Refund?"}])})
    row = one(request(span("f2", "chat", attrs)))
    assert [(m["role"], m["content"]) for m in row["input_messages"]] == [("system", "Be brief."), ("user", "Refund?")]


def test_openlit_zero_cost_on_a_call_with_tokens_is_not_a_price() -> None:
    row = one(request(span("f3", "chat", openlit_chat())))
    assert row["reported_cost_usd"] is None
    assert row["metadata"]["gen_ai.usage.cost"] == 0.0
    free = one(request(span("f4", "chat", openlit_chat(**{"gen_ai.usage.input_tokens": 0,
                                                         "gen_ai.usage.output_tokens": 0}))))
    assert free["reported_cost_usd"] == 0.0
    priced = one(request(span("f5", "chat", openlit_chat(**{"gen_ai.usage.cost": 0.00012}))))
    assert priced["reported_cost_usd"] == pytest.approx(0.00012)


# ---------------------------------------------------------------------------------------------------------
# OpenInference embeddings: vectors dropped, count and dimension kept


def test_openinference_embedding_vectors_are_dropped_from_metadata() -> None:
    vector = [0.01 * i for i in range(256)]
    response = {"object": "list", "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    attrs = {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
             "embedding.embeddings.0.embedding.text": "refund policy",
             "embedding.embeddings.0.embedding.vector": vector, "llm.token_count.prompt": 3,
             "output.value": json.dumps(response), "output.mime_type": "application/json"}
    row = one(request(span("9a", "CreateEmbeddings", attrs)))
    assert (row["kind"], row["input_tokens"]) == ("embedding", 3)
    meta = row["metadata"]
    assert meta["aiobs.embedding_vectors"] == {"count": 1, "dimensions": 256}
    assert "embedding.embeddings.0.embedding.vector" not in meta
    assert "embedding" not in meta["output.value"]["data"][0]
    assert len(orjson.dumps(meta)) < 2_000


def test_drop_vectors_leaves_other_metadata_alone() -> None:
    meta = {"output.value": '{"data": [{"text": "x"}]}', "n": [1, 2, 3]}
    assert dialects.drop_vectors(meta) is None
    assert meta == {"output.value": '{"data": [{"text": "x"}]}', "n": [1, 2, 3]}


def test_postprocess_without_logfire_rows_returns_them_unchanged() -> None:
    rows = [{"span_id": "x", "kind": "llm", "metadata": {"a": 1}}]
    assert otlp.postprocess(rows) == (rows, [])


def test_logfire_root_stream_in_its_own_trace_folds_into_the_root_request(tmp_path: Path) -> None:
    # Outside any span Logfire logs the stream in the request's (empty) context: a root of a new trace.
    req, log = logfire_pair(parent="")
    log = {**log, "traceId": "ab" * 16}
    result = ingest(tmp_path, lines(request(req, log)))
    assert list(result.spans["span_id"]) == ["b1"]
    assert result.spans.iloc[0]["output_tokens"] == 7


def test_logfire_stream_of_another_user_or_too_late_is_not_folded(tmp_path: Path) -> None:
    req, log = logfire_pair(parent="")
    other = {**log, "attributes": [a for a in log["attributes"] if a["key"] != "user_id"]}
    result = ingest(tmp_path, lines(request(req, other)))
    assert sorted(result.spans["span_id"]) == ["b1", "b2"]
    # A stream read 20 s after a request closed (duration 1.2 s) belongs to some later request.
    late = {**log, "startTimeUnixNano": str(START + 21_215 * MS), "endTimeUnixNano": str(START + 21_215 * MS)}
    result = ingest(tmp_path, lines(request(req, late)))
    assert sorted(result.spans["span_id"]) == ["b1", "b2"]


def test_every_dialect_attribute_is_documented() -> None:
    from aiobs_pipeline.ingest import openinference

    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    keys = [k for table in (dialects.GENAI_EXTRA, dialects.LANGFUSE, dialects.LOGFIRE) for ks in table.values()
            for k in ks]
    keys += [*dialects.TTFT_SECONDS, *dialects.REQUEST_USER, *dialects.LOGFIRE_KINDS, *dialects.CHUNK_EVENTS,
             dialects.LANGFUSE_TYPE]
    keys += [k for table in (openinference.COMMON_SPAN, openinference.COMMON_LOW) for ks in table.values() for k in ks]
    missing = [k for k in keys if k not in text]
    assert not missing, f"docs/formats.md does not mention: {missing}"


def test_postprocess_is_wanted_only_for_hours_with_logfire_streams() -> None:
    import pandas as pd

    assert not otlp.postprocess_wanted(pd.DataFrame({"name": ["chat gpt-4o", None]}))
    assert not otlp.postprocess_wanted(None)
    assert otlp.postprocess_wanted(pd.DataFrame(
        {"name": ["chat", "streaming response from {request_data[model]!r} took {duration:.2f}s"]}))


def test_unreadable_logfire_and_langfuse_values_stay_in_metadata_or_reach_the_row_rules(tmp_path: Path) -> None:
    logfire = {"logfire.msg_template": "Chat Completion with {request_data[model]!r}",
               "request_data": "{not json", "response_data": json.dumps([1, 2])}
    bad_usage = langfuse_generation(**{"langfuse.observation.usage_details": json.dumps({"input": -3,
                                                                                        "output": 2})})
    result = ingest(tmp_path, lines(request(span("aa", "Chat Completion with 'x'", logfire),
                                            span("ab", "g", bad_usage, kind=1))))
    kept = result.spans.iloc[0]
    assert kept["span_id"] == "aa" and kept["kind"] == "llm"
    assert orjson.loads(kept["metadata"])["request_data"] == "{not json"
    assert orjson.loads(kept["metadata"])["response_data"] == [1, 2]
    (reason, detail), = result.quarantined[["reason", "detail"]].itertuples(index=False)
    assert reason == "negative_value" and "input_tokens" in detail


def test_missing_values_as_pandas_gives_them_back() -> None:
    import pandas as pd

    assert otlp._missing(None) and otlp._missing(float("nan")) and otlp._missing(pd.NaT) and otlp._missing(pd.NA)
    assert not otlp._missing(0) and not otlp._missing("") and not otlp._missing({"a": 1})


def test_logfire_v1_responses_api_events_give_the_conversation() -> None:
    events = [{"event.name": "gen_ai.system.message", "content": "Be brief.", "role": "system"},
              {"event.name": "gen_ai.user.message", "content": "Refund?", "role": "user"},
              {"event.name": "gen_ai.assistant.message", "content": "Yes.", "role": "assistant"}]
    attrs = {"logfire.msg_template": "Responses API with {gen_ai.request.model!r}", "gen_ai.operation.name": "chat",
             "gen_ai.request.model": "gpt-4o-mini",
             "request_data": json.dumps({"model": "gpt-4o-mini", "stream": False}), "events": json.dumps(events)}
    row = one(request(span("ac", "Responses API with 'gpt-4o-mini'", attrs)))
    assert [(m["role"], m["content"]) for m in row["input_messages"]] == [("system", "Be brief."), ("user", "Refund?")]
    assert row["output_text"] == "Yes."
    assert "events" not in row["metadata"]
    odd = one(request(span("ad", "Responses API with 'x'", {**attrs, "events": json.dumps([{"x": 1}])})))
    assert odd["metadata"]["events"] == [{"x": 1}] and odd["input_messages"] is None


def test_langfuse_metadata_fills_application_columns_explicit_attributes_win() -> None:
    attrs = langfuse_generation(**{"langfuse.observation.metadata.feature": "refunds",
                                   "langfuse.trace.metadata.endpoint": "/v1/ask",
                                   "langfuse.observation.metadata.user_id": "someone-else",
                                   "langfuse.observation.metadata.prompt_version": 3})
    row = one(request(span("ae", "g", attrs, kind=1)))
    assert (row["feature"], row["endpoint"], row["prompt_version"]) == ("refunds", "/v1/ask", "3")
    assert row["user_id"] == "u-1"
    assert row["metadata"]["langfuse.observation.metadata.user_id"] == "someone-else"
    assert "langfuse.observation.metadata.feature" not in row["metadata"]
