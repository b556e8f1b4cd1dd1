"""aiobs_pipeline.llm without a server: the real openai client over an in-memory HTTP transport."""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pandas as pd
import pytest
from pydantic import ValidationError

from aiobs_pipeline.llm import (
    DEFAULT_BASE_URL,
    ERROR_REASONS,
    LLMClient,
    LLMSettings,
    ResponseCache,
    cache_key,
    spans_from_results,
)
from aiobs_pipeline.llmserver import add_arguments
from aiobs_pipeline.llmserver.responder import SPECULATION_MARKERS
from aiobs_pipeline.quality.rules import apply_row_rules
from aiobs_pipeline.schema import SPAN_COLUMN_NAMES, SPAN_COLUMNS, conform

SECRET = "sk-test-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "When was the Eiffel Tower completed?"}]


def chat_payload(text: str = "In 1889.", model: str = "gpt-4o-mini-2024-07-18", n: int = 1) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": f"{text} ({i})" if n > 1 else text},
                     "finish_reason": "stop"} for i in range(n)],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
    }


class FakeAPI:
    """An HTTP handler answering from a list of (status, body) replies, counting and recording requests."""

    def __init__(self, *replies: tuple[int, Any] | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.replies = list(replies) or [(200, chat_payload())]
        self.requests: list[httpx2.Request] = []
        self.lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        with self.lock:
            self.requests.append(request)
            reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if callable(reply):
            return reply(request)
        status, body = reply
        if isinstance(body, bytes):
            return httpx2.Response(status, content=body, headers={"content-type": "application/json"})
        return httpx2.Response(status, json=body)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


def make_client(tmp_path: Path, api: FakeAPI, sleeps: list[float] | None = None, **overrides: Any) -> LLMClient:
    values: dict[str, Any] = {"base_url": "https://llm.example.test/v1", "cache_dir": tmp_path / "cache",
                              "backoff_initial_s": 0.5, "backoff_max_s": 4.0, "max_attempts": 3}
    values.update(overrides)
    recorded = sleeps if sleeps is not None else []
    return LLMClient(LLMSettings(**values), api_key=SECRET, http_client=httpx2.Client(transport=httpx2.MockTransport(api)),
                     sleep=recorded.append, rng=random.Random(0))


# --- cache key ---------------------------------------------------------------------------------------------


def test_cache_key_is_stable_and_ignores_dict_key_order() -> None:
    body_a = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "seed": 3}
    body_b = {"seed": 3, "temperature": 0.5, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    key = cache_key("chat.completions", "https://x/v1", body_a)
    assert key == cache_key("chat.completions", "https://x/v1/", body_b)
    assert len(key) == 64 and int(key, 16) >= 0
    # No per-process salt: the key is the same in every run, so a later backfill finds earlier responses.
    assert key == "01dfd83bf9be6cf04cbcf8a96f983bda5216362a82f5225ba5224641acebf015"
    assert key != cache_key("chat.completions", "https://x/v1", {**body_a, "seed": 4})
    assert key != cache_key("embeddings", "https://x/v1", body_a)
    assert key != cache_key("chat.completions", "http://127.0.0.1:8765/v1", body_a)
    # Message order is meaning, not layout: it changes the key.
    two = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    assert cache_key("chat.completions", "u", {"messages": two}) != cache_key(
        "chat.completions", "u", {"messages": two[::-1]})


def test_cache_hit_skips_the_network_and_survives_a_new_client(tmp_path: Path) -> None:
    api = FakeAPI((200, chat_payload()))
    first = make_client(tmp_path, api).chat(MESSAGES, temperature=0.0)
    again = make_client(tmp_path, api).chat(MESSAGES, temperature=0.0)
    assert api.calls == 1
    assert (first.cache_hit, first.attempts, again.cache_hit, again.attempts) == (False, 1, True, 0)
    assert again.text == first.text == "In 1889." and again.usage == first.usage
    assert again.cache_key == first.cache_key
    different = make_client(tmp_path, api).chat(MESSAGES, temperature=0.7)
    assert api.calls == 2 and not different.cache_hit
    make_client(tmp_path, api).chat(MESSAGES, temperature=0.0, use_cache=False)
    assert api.calls == 3


def test_failed_calls_are_not_cached(tmp_path: Path) -> None:
    api = FakeAPI((400, {"error": {"message": "bad"}}), (200, chat_payload()))
    client = make_client(tmp_path, api)
    assert client.chat(MESSAGES).status == "failed"
    assert client.chat(MESSAGES).ok
    assert api.calls == 2 and client.cache is not None and len(client.cache) == 1


def test_unreadable_cache_entry_is_a_miss(tmp_path: Path) -> None:
    api = FakeAPI((200, chat_payload()))
    client = make_client(tmp_path, api)
    key = client.chat(MESSAGES).cache_key
    cache = ResponseCache(tmp_path / "cache")
    with sqlite3.connect(cache.path) as connection:
        connection.execute("UPDATE responses SET payload = '{not json' WHERE key = ?", (key,))
    result = client.chat(MESSAGES)
    assert result.ok and not result.cache_hit and api.calls == 2


# --- failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason", "status", "attempts"),
    [
        ((400, {"error": {"message": "messages[0] is invalid", "type": "invalid_request_error"}}), "client_error", 400, 1),
        ((401, {"error": {"message": "Incorrect API key provided"}}), "auth_error", 401, 1),
        ((503, {"error": {"message": "overloaded"}}), "server_error", 503, 3),
        ((429, {"error": {"message": "slow down"}}), "rate_limited", 429, 3),
        ((200, b'{"id": "chatcmpl-1", "choices": ['), "malformed_response", None, 3),
        ((200, {"id": "x", "object": "chat.completion"}), "malformed_response", None, 3),
    ],
)
def test_failure_results_carry_the_reason(tmp_path: Path, reply: tuple[int, Any], reason: str,
                                          status: int | None, attempts: int) -> None:
    api = FakeAPI(reply)
    result = make_client(tmp_path, api).chat(MESSAGES)
    assert result.status == "failed" and not result.ok
    assert result.error is not None and result.error.reason == reason and reason in ERROR_REASONS
    assert result.error.status_code == status
    assert result.attempts == attempts == api.calls
    assert result.text is None and result.texts == []
    assert result.error.error_class and result.error.message
    assert reason in result.error.describe()


def test_connection_errors_and_timeouts_are_retried_then_reported(tmp_path: Path) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    refused = make_client(tmp_path, FakeAPI(refuse)).chat(MESSAGES)
    timed_out = make_client(tmp_path, FakeAPI(slow)).chat(MESSAGES)
    assert (refused.error.reason, refused.attempts) == ("connection_error", 3)
    assert (timed_out.error.reason, timed_out.attempts) == ("timeout", 3)


def test_retry_then_success_and_backoff_delays(tmp_path: Path) -> None:
    sleeps: list[float] = []
    api = FakeAPI((500, {"error": {"message": "boom"}}), (429, {"error": {"message": "later"}}), (200, chat_payload()))
    result = make_client(tmp_path, api, sleeps, max_attempts=4).chat(MESSAGES)
    assert result.ok and result.attempts == 3 and api.calls == 3
    # Equal jitter: the wait before attempt k+1 lies in [c/2, c], c = 0.5 * 2**(k-1).
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_backoff_honours_retry_after_and_caps(tmp_path: Path) -> None:
    client = make_client(tmp_path, FakeAPI(), backoff_initial_s=1.0, backoff_max_s=3.0, retry_after_max_s=10.0)
    ceilings = [min(3.0, 2 ** (k - 1)) for k in range(1, 7)]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delay = client.backoff_delay(attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert client.backoff_delay(1, retry_after_s=7.0) == 7.0
    assert client.backoff_delay(1, retry_after_s=60.0) == 10.0


def test_retry_after_header_is_used(tmp_path: Path) -> None:
    sleeps: list[float] = []

    def limited(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "limited"}}, headers={"retry-after-ms": "2500"})

    api = FakeAPI(limited, (200, chat_payload()))
    result = make_client(tmp_path, api, sleeps).chat(MESSAGES)
    assert result.ok and result.attempts == 2 and sleeps == [2.5]


def test_key_is_never_in_messages_or_reprs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI((401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    client = make_client(tmp_path, api)
    result = client.chat(MESSAGES)
    assert result.error is not None and SECRET not in result.error.message and "***" in result.error.message
    assert SECRET not in repr(client) and SECRET not in repr(result)
    assert api.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = LLMSettings()
    assert SECRET not in repr(settings.api_key()) and settings.api_key().get_secret_value() == SECRET
    assert SECRET not in settings.model_dump_json()


def test_missing_key_for_a_remote_url_fails_without_a_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = LLMSettings(cache_dir=tmp_path)
    result = LLMClient(settings).chat(MESSAGES)
    assert result.status == "failed" and result.attempts == 0
    assert result.error.reason == "missing_api_key" and "OPENAI_API_KEY" in result.error.message


def test_unserialisable_request_fails_without_raising(tmp_path: Path) -> None:
    api = FakeAPI()
    result = make_client(tmp_path, api).chat([{"role": "user", "content": object()}])
    assert result.status == "failed" and result.error.reason == "invalid_request" and api.calls == 0


def test_request_body_carries_sampling_parameters(tmp_path: Path) -> None:
    api = FakeAPI((200, chat_payload(n=3)))
    result = make_client(tmp_path, api).chat(MESSAGES, model="gpt-4o", temperature=0.9, n=3, seed=11, max_tokens=50)
    assert api.body() == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.9, "n": 3, "seed": 11,
                          "max_tokens": 50}
    assert result.texts == ["In 1889. (0)", "In 1889. (1)", "In 1889. (2)"]
    assert result.response_model == "gpt-4o-mini-2024-07-18" and result.request_model == "gpt-4o"


def test_embeddings_are_returned_in_input_order(tmp_path: Path) -> None:
    payload = {"object": "list", "model": "text-embedding-3-small",
               "data": [{"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
                        {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}],
               "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    api = FakeAPI((200, payload))
    result = make_client(tmp_path, api).embed(["first", "second"])
    assert result.ok and result.embeddings == [[1.0, 0.0], [0.0, 1.0]]
    assert api.body()["encoding_format"] == "float" and api.body()["input"] == ["first", "second"]
    assert result.usage.prompt_tokens == 5 and result.text is None


def test_chat_many_keeps_order_and_the_concurrency_limit(tmp_path: Path) -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        content = json.loads(request.content)["messages"][0]["content"]
        return httpx2.Response(200, json=chat_payload(text=f"answer to {content}"))

    client = make_client(tmp_path, FakeAPI(handler), max_concurrency=2)
    requests = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(8)]
    results = client.chat_many(requests)
    assert [r.text for r in results] == [f"answer to q{i}" for i in range(8)]
    assert peak <= 2


# --- spans -------------------------------------------------------------------------------------------------


def test_span_rows_conform_to_the_schema_and_pass_the_row_rules(tmp_path: Path) -> None:
    ok_api = FakeAPI((200, chat_payload(n=2)))
    client = make_client(tmp_path, ok_api)
    ok = client.chat(MESSAGES, temperature=1.0, n=2, seed=5, trace_id="t-1", metadata={"check": "consistency"},
                     prompt_name="consistency-requery", prompt_version="v1")
    cached = client.chat(MESSAGES, temperature=1.0, n=2, seed=5)
    failed = make_client(tmp_path, FakeAPI((503, {"error": {"message": "down"}}))).chat(MESSAGES, temperature=0.3)
    embed_api = FakeAPI((200, {"object": "list", "model": "text-embedding-3-small",
                               "data": [{"index": 0, "embedding": [0.6, 0.8]}],
                               "usage": {"prompt_tokens": 3, "total_tokens": 3}}))
    embedded = make_client(tmp_path, embed_api).embed("hello there")
    results = [ok, cached, failed, embedded]
    settings = client.settings

    frame = spans_from_results(results, settings)
    assert list(frame.columns) == list(SPAN_COLUMN_NAMES) and len(frame) == 4
    pd.testing.assert_frame_equal(frame, conform(frame, SPAN_COLUMNS))
    checked = apply_row_rules(frame, json_encoded=True)
    assert checked.quarantined.empty, checked.quarantined.to_dict("records")

    assert frame["kind"].tolist() == ["llm", "llm", "llm", "embedding"]
    assert frame["status"].tolist() == ["ok", "ok", "error", "ok"]
    assert set(frame["feature"]) == {"aiobs-checks"} and set(frame["source_format"]) == {"native"}
    assert set(frame["provider"]) == {"openai"} and frame["span_id"].is_unique
    assert frame["source_line"].tolist() == [1, 2, 3, 4]
    first = frame.iloc[0]
    assert first["trace_id"] == "t-1" and first["model"] == "gpt-4o-mini-2024-07-18"
    assert first["request_model"] == "gpt-4o-mini" and first["input_tokens"] == 12 and first["output_tokens"] == 4
    assert json.loads(first["request_params"]) == {"n": 2, "seed": 5}
    assert len(json.loads(first["output_messages"])) == 2
    assert (first["prompt_name"], first["prompt_version"]) == ("consistency-requery", "v1")
    meta = json.loads(first["metadata"])
    assert meta["tags"] == {"check": "consistency"} and meta["cache_hit"] is False and meta["attempts"] == 1
    assert json.loads(frame.iloc[1]["metadata"])["cache_hit"] is True
    assert frame.iloc[1]["input_tokens"] == 12  # a cache hit keeps the cached response's usage
    error_row = frame.iloc[2]
    assert "server_error" in error_row["error_message"] and "503" in error_row["error_message"]
    assert pd.isna(error_row["input_tokens"]) and error_row["output_text"] is None
    assert json.loads(error_row["metadata"])["error"]["status_code"] == 503
    assert frame.iloc[3]["input_tokens"] == 3 and frame.iloc[3]["output_tokens"] == 0
    assert (frame["export_hour"] == frame["start_time"].dt.floor("h")).all()


def test_span_rows_take_an_explicit_export_hour(tmp_path: Path) -> None:
    result = make_client(tmp_path, FakeAPI()).chat(MESSAGES)
    hour = pd.Timestamp("2026-01-05T10:00:00Z").to_pydatetime()
    frame = spans_from_results([result], LLMSettings(), export_hour=hour, source_file="checks/2026-01-05T10")
    assert frame["export_hour"].iloc[0] == pd.Timestamp(hour) and frame["source_file"].iloc[0] == "checks/2026-01-05T10"
    assert spans_from_results([], LLMSettings()).empty


# --- settings ----------------------------------------------------------------------------------------------


def test_settings_defaults_never_point_at_the_local_server() -> None:
    settings = LLMSettings()
    assert settings.base_url == DEFAULT_BASE_URL and not settings.is_local
    assert LLMSettings(base_url="http://127.0.0.1:8765/v1/").base_url == "http://127.0.0.1:8765/v1"
    assert LLMSettings(base_url="http://localhost:9/v1").is_local


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_key": "sk-x"}, "api_key"),
        ({"modle": "gpt-4o"}, "modle"),
        ({"base_url": "api.openai.com"}, "http(s) URL"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"backoff_initial_s": 5, "backoff_max_s": 1}, "backoff_max_s"),
        ({"model": ""}, "model"),
    ],
)
def test_settings_validation(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LLMSettings(**values)


def test_api_key_comes_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "  sk-other  ")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert LLMSettings().api_key() is None
    assert LLMSettings(api_key_env="MY_LLM_KEY").api_key().get_secret_value() == "sk-other"


# --- docs --------------------------------------------------------------------------------------------------


def test_docs_list_every_setting_reason_flag_and_marker() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    page = next((p for p in (docs / "llm.md",) if p.exists()), None)
    assert page is not None, "the LLM docs section (docs/llm.md) is missing"
    text = page.read_text()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    names = [*LLMSettings.model_fields, *ERROR_REASONS, *flags, *SPECULATION_MARKERS]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"{page.name} does not mention: {missing}"
