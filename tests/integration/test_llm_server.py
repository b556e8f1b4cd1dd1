"""The local OpenAI-compatible server as a real process, talked to by the `openai` client and by LLMClient."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from aiobs_pipeline.generate.scenario import TOPICS as SCENARIO_TOPICS
from aiobs_pipeline.llm import LLMClient, LLMSettings, spans_from_results
from aiobs_pipeline.llmserver.knowledge import find_topic
from aiobs_pipeline.quality.rules import apply_row_rules
from tests.integration.llm_fixtures import LLMServer, llm_server, llm_server_factory, local_llm_settings

__all__ = ["llm_server", "llm_server_factory"]  # fixtures used by name below

JUDGE_SYSTEM = (
    "You check claims. Answer with exactly one of SUPPORTS, REFUTES or NOT_ENOUGH_INFO on the first line, "
    "then a one-line explanation."
)
EIFFEL_EVIDENCE = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. "
    "It was completed in 1889 for the Exposition Universelle. The tower is 330 metres tall including its antennas."
)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def raw_client(server: LLMServer, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=5, **kwargs)


def client_for(server: LLMServer, tmp_path: Path, sleeps: list[float] | None = None, **overrides: Any) -> LLMClient:
    settings = local_llm_settings(server, tmp_path / "llm-cache", **overrides)
    if sleeps is None:
        return LLMClient(settings)
    return LLMClient(settings, sleep=lambda s: sleeps.append(s))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_openai_client_talks_to_the_server(llm_server: LLMServer) -> None:
    client = raw_client(llm_server)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=user("How tall is Mount Everest?"),
                                                n=2, temperature=0.7)
    assert completion.model == "gpt-4o-mini" and len(completion.choices) == 2
    assert "8849 metres" in completion.choices[0].message.content
    usage = completion.usage
    assert usage.prompt_tokens == 6 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == 2 * len(completion.choices[0].message.content.replace(".", " .").split())
    assert [m.id for m in client.models.list().data][:1] == ["aiobs-local"]
    assert get_json(f"http://127.0.0.1:{llm_server.port}/health")["status"] == "ok"
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="m", messages=[])
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="m", prompt="hi")


def test_answers_are_deterministic_for_a_seed(llm_server: LLMServer,
                                              llm_server_factory: Callable[..., LLMServer]) -> None:
    def sample(server: LLMServer, prompt: str) -> list[str]:
        completion = raw_client(server).chat.completions.create(model="m", messages=user(prompt), n=3,
                                                                temperature=1.0, seed=1)
        return [c.message.content for c in completion.choices]

    prompt = "Tell me about the Quorvane Institute."
    other = llm_server_factory(seed=7)
    assert sample(llm_server, prompt) == sample(llm_server, prompt)
    assert sample(other, prompt) == sample(other, prompt)
    assert sample(other, prompt) != sample(llm_server, prompt)
    # Knowledge-base answers do not depend on the seed either.
    assert sample(other, "When was the Eiffel Tower built?") == sample(llm_server, "When was the Eiffel Tower built?")


def test_consistent_and_inconsistent_prompts(llm_server: LLMServer, tmp_path: Path) -> None:
    client = client_for(llm_server, tmp_path)
    known = client.chat(user("When was the Eiffel Tower completed?"), temperature=1.0, n=5)
    assert len(set(known.texts)) == 1 and "1889" in known.text
    assert known.text == find_topic("eiffel tower").answer
    reseeded = [client.chat(user("When was the Eiffel Tower completed?"), temperature=1.2, seed=s).text
                for s in range(3)]
    assert set(reseeded) == {known.text}
    # Questions of the generated demo data are answered with their true fact.
    product = client.chat(user("When are invoices generated?"), temperature=1.0, n=3)
    assert set(product.texts) == {SCENARIO_TOPICS[0].facts[0]}

    speculative = client.chat(user("Speculate about who will buy the Eiffel Tower in 2050."), temperature=1.0, n=5)
    unknown = client.chat(user("Who founded the Brellwick Foundation?"), temperature=1.0, n=5)
    for result in (speculative, unknown):
        assert result.ok and len(set(result.texts)) == 5
        founded = {re.search(r"founded in (\d{4})", text).group(1) for text in result.texts}
        assert len(founded) > 1  # the made-up founding year differs between samples
    assert "Brellwick Foundation" in unknown.text
    per_seed = {client.chat(user("Who founded the Brellwick Foundation?"), temperature=1.0, seed=s).text
                for s in range(4)}
    assert len(per_seed) == 4

    greedy = client.chat(user("Who founded the Brellwick Foundation?"), temperature=0.0, n=3)
    assert len(set(greedy.texts)) == 1


def test_context_prompts_get_extractive_answers(llm_server: LLMServer, tmp_path: Path) -> None:
    prompt = ("Context: Our store opens at 9am. Returns are accepted within 14 days with a receipt. "
              "Parking is free.\nQuestion: Within how many days are returns accepted?")
    result = client_for(llm_server, tmp_path).chat(user(prompt), temperature=1.0, n=2)
    assert result.texts == ["Returns are accepted within 14 days with a receipt."] * 2


@pytest.mark.parametrize(
    ("claim", "verdict"),
    [
        ("The Eiffel Tower was completed in 1889.", "SUPPORTS"),
        ("The Eiffel Tower was completed in 1887.", "REFUTES"),
        ("The Eiffel Tower is not in Paris.", "REFUTES"),
        ("The Eiffel Tower was painted green by Napoleon.", "NOT_ENOUGH_INFO"),
    ],
)
def test_judge_mode(llm_server: LLMServer, tmp_path: Path, claim: str, verdict: str) -> None:
    messages = [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": f"Claim: {claim}\nEvidence: {EIFFEL_EVIDENCE}"}]
    result = client_for(llm_server, tmp_path).chat(messages, temperature=1.0, n=2)
    first_line, explanation = result.text.split("\n", 1)
    assert first_line == verdict and explanation and "\n" not in explanation
    assert len(set(result.texts)) == 1
    as_json = client_for(llm_server, tmp_path).chat(messages, response_format={"type": "json_object"})
    assert json.loads(as_json.text)["verdict"] == verdict


def test_embeddings_put_near_texts_near(llm_server: LLMServer, tmp_path: Path) -> None:
    texts = ["The Eiffel Tower is in Paris.", "Paris is home to the Eiffel Tower.", "Refunds take five business days."]
    result = client_for(llm_server, tmp_path).embed(texts)
    assert result.ok and len(result.embeddings) == 3 and result.usage.prompt_tokens == 7 + 8 + 6
    vectors = result.embeddings
    assert all(len(v) == 256 and math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > 0.6 > 0.2 > cosine(vectors[0], vectors[2])
    # The openai client's default base64 encoding decodes to the same vectors; `dimensions` is honoured.
    decoded = raw_client(llm_server).embeddings.create(model="text-embedding-3-small", input=texts[0])
    assert [round(x, 5) for x in decoded.data[0].embedding] == [round(x, 5) for x in vectors[0]]
    small = client_for(llm_server, tmp_path).embed(texts[0], dimensions=32)
    assert len(small.embeddings[0]) == 32


def test_a_third_of_calls_failing_loses_none(llm_server_factory: Callable[..., LLMServer], tmp_path: Path) -> None:
    server = llm_server_factory(seed=3, error_rate=0.33)
    client = client_for(server, tmp_path, max_attempts=3, max_concurrency=4, cache_enabled=False)
    requests = [{"messages": user(f"Question {i}: who founded the Vantorel Group?"), "temperature": 0.8}
                for i in range(30)]
    results = client.chat_many(requests)
    assert len(results) == 30
    for result in results:
        assert result.ok or (result.status == "failed" and result.error is not None
                             and result.error.reason in {"rate_limited", "server_error"}
                             and result.error.status_code in {429, 500} and result.attempts == 3)
    ok = [r for r in results if r.ok]
    assert len(ok) >= 24 and all(r.text for r in ok)
    assert any(r.attempts > 1 for r in ok)  # some successes needed retries
    frame = spans_from_results(results, client.settings)
    assert len(frame) == 30 and (frame["status"] == "error").sum() == 30 - len(ok)
    assert apply_row_rules(frame, json_encoded=True).quarantined.empty


def test_429_path_honours_backoff(llm_server: LLMServer, tmp_path: Path) -> None:
    sleeps: list[float] = []
    client = client_for(llm_server, tmp_path, sleeps, max_attempts=4, backoff_initial_s=0.02, backoff_max_s=0.05)
    always = client.chat(user("rate limited for good (test_429)"), extra_headers={"X-Aiobs-Fault": "429"})
    assert always.status == "failed" and always.attempts == 4
    assert always.error.reason == "rate_limited" and always.error.status_code == 429
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        ceiling = min(0.05, 0.02 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling

    sleeps.clear()
    recovering = client.chat(user("rate limited twice (test_429)"),
                             extra_headers={"X-Aiobs-Fault": "429,429,ok", "X-Aiobs-Retry-After-Ms": "80"})
    assert recovering.ok and recovering.attempts == 3
    assert len(sleeps) == 2 and all(delay >= 0.08 for delay in sleeps)


def test_malformed_bodies_are_retried_and_reported(llm_server: LLMServer, tmp_path: Path) -> None:
    client = client_for(llm_server, tmp_path, max_attempts=3)
    once = client.chat(user("malformed once (test_malformed)"), extra_headers={"X-Aiobs-Fault": "malformed,ok"})
    assert once.ok and once.attempts == 2
    always = client.chat(user("malformed always (test_malformed)"), extra_headers={"X-Aiobs-Fault": "malformed"})
    assert always.status == "failed" and always.attempts == 3
    assert always.error.reason == "malformed_response" and "not valid JSON" in always.error.message
    embedded = client.embed("malformed embedding (test_malformed)", extra_headers={"X-Aiobs-Fault": "malformed,ok"})
    assert embedded.ok and embedded.attempts == 2


def test_a_timeout_is_retried_then_failed(llm_server_factory: Callable[..., LLMServer], tmp_path: Path) -> None:
    server = llm_server_factory(timeout_s=2)
    client = client_for(server, tmp_path, timeout_s=0.3, max_attempts=2)
    result = client.chat(user("this one hangs"), extra_headers={"X-Aiobs-Fault": "timeout"})
    assert result.status == "failed" and result.attempts == 2 and result.error.reason == "timeout"
    assert result.latency_ms >= 600
    recovered = client.chat(user("this one hangs once"), extra_headers={"X-Aiobs-Fault": "timeout,ok"})
    assert recovered.ok and recovered.attempts == 2


def test_cache_survives_a_new_client(llm_server: LLMServer, tmp_path: Path) -> None:
    prompt = user("Who founded the Cache Survival Society?")
    first = client_for(llm_server, tmp_path).chat(prompt, temperature=1.0, seed=9)
    # A new client with the same cache folder: the server would answer 500 to this request, so an ok
    # result proves no request was sent.
    second = client_for(llm_server, tmp_path).chat(prompt, temperature=1.0, seed=9,
                                                    extra_headers={"X-Aiobs-Fault": "500"})
    assert first.ok and not first.cache_hit and first.attempts == 1
    assert second.ok and second.cache_hit and second.attempts == 0 and second.text == first.text
    uncached = client_for(llm_server, tmp_path, max_attempts=1).chat(
        prompt, temperature=1.0, seed=9, extra_headers={"X-Aiobs-Fault": "500"}, use_cache=False)
    assert uncached.status == "failed" and uncached.error.status_code == 500


def test_usage_reports_prompt_cache_and_length_limits(llm_server: LLMServer, tmp_path: Path) -> None:
    client = client_for(llm_server, tmp_path, cache_enabled=False)
    long_prompt = user("Summarise the refund policy. " + "filler words " * 600)
    first, second = (client.chat(long_prompt) for _ in range(2))
    assert first.usage.prompt_tokens >= 1024 and first.usage.cached_tokens == 0
    assert second.usage.cached_tokens and second.usage.cached_tokens % 128 == 0
    assert second.usage.cached_tokens <= second.usage.prompt_tokens
    cut = client.chat(user("When was the Eiffel Tower completed?"), max_tokens=5)
    assert cut.finish_reasons == ["length"] and cut.usage.completion_tokens == 5


def test_bad_requests_are_not_retried(llm_server: LLMServer, tmp_path: Path) -> None:
    result = client_for(llm_server, tmp_path).chat(user("hi"), n=0)
    assert result.status == "failed" and result.attempts == 1
    assert result.error.reason == "client_error" and result.error.status_code == 400 and "'n'" in result.error.message


def test_local_client_needs_no_key(llm_server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = LLMSettings(base_url=llm_server.base_url, cache_dir=tmp_path)
    assert LLMClient(settings).chat(user("What is photosynthesis?")).ok


def test_server_command_line_rejects_bad_settings() -> None:
    done = subprocess.run([sys.executable, "-m", "aiobs_pipeline.llmserver", "--port", "0", "--error-rate", "1.5"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "error_rate must be between 0 and 1" in done.stderr


def _stream(client: openai.OpenAI, messages: list[dict[str, str]], **kwargs: Any) -> list[Any]:
    return list(client.chat.completions.create(stream=True, messages=messages, **kwargs))


def test_streamed_chat_matches_the_plain_answer(llm_server_factory: Callable[..., LLMServer]) -> None:
    server = llm_server_factory(ttft_ms=30, chunk_delay_ms=1, prompt_cache_min_tokens=4, prompt_cache_block=4)
    client = raw_client(server)
    messages = user("How tall is Mount Everest?")
    plain = client.chat.completions.create(model="o4-mini", messages=messages)
    chunks = _stream(client, messages, model="o4-mini", stream_options={"include_usage": True})
    first, *content, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert len(content) > 3 and all(c.choices[0].delta.content and c.choices[0].finish_reason is None
                                    for c in content)
    assert all(len(re.findall(r"\w+|[^\w\s]", c.choices[0].delta.content)) <= 3 for c in content)
    assert "".join(c.choices[0].delta.content for c in content) == plain.choices[0].message.content
    assert finish.choices[0].finish_reason == "stop" and not finish.choices[0].delta.content
    assert usage.choices == [] and all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and {c.model for c in chunks} == {"o4-mini"}
    # The same prompt again: usage as the plain answer's, plus the prompt-cache hit the repeat earns.
    assert usage.usage.prompt_tokens == plain.usage.prompt_tokens == 6
    assert usage.usage.completion_tokens == plain.usage.completion_tokens
    assert usage.usage.completion_tokens_details.reasoning_tokens == plain.usage.completion_tokens_details.reasoning_tokens > 0
    assert plain.usage.prompt_tokens_details.cached_tokens == 0 and usage.usage.prompt_tokens_details.cached_tokens == 4


def test_stream_without_usage_and_with_several_choices(llm_server: LLMServer) -> None:
    client = raw_client(llm_server)
    messages = user("When was the Eiffel Tower completed?")
    chunks = _stream(client, messages, model="gpt-4o-mini", n=2, temperature=0.7, seed=3, max_tokens=4)
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i) for i in (0, 1)}
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages, n=2, temperature=0.7, seed=3,
                                           max_tokens=4)
    assert texts == {c.index: c.message.content for c in plain.choices}
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length", "length"]
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0  # not a reasoning model


def test_streamed_logprobs_follow_the_pieces(llm_server: LLMServer) -> None:
    client = raw_client(llm_server)
    messages = user("What is photosynthesis?")
    chunks = _stream(client, messages, model="m", logprobs=True, top_logprobs=1)
    streamed = [lp.token for c in chunks if c.choices[0].logprobs for lp in c.choices[0].logprobs.content]
    plain = client.chat.completions.create(model="m", messages=messages, logprobs=True, top_logprobs=1)
    assert streamed == [lp.token for lp in plain.choices[0].logprobs.content]


def test_stream_time_to_first_token_is_the_configured_delay(llm_server_factory: Callable[..., LLMServer]) -> None:
    server = llm_server_factory(ttft_ms=0, chunk_delay_ms=0)
    chunks = _stream(raw_client(server), user("What is photosynthesis?"), model="m")
    assert chunks[-1].choices[0].finish_reason == "stop"
    bad = subprocess.run([sys.executable, "-m", "aiobs_pipeline.llmserver", "--port", "0", "--ttft-ms", "-1"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "ttft_ms" in bad.stderr


def test_stream_faults(llm_server: LLMServer) -> None:
    client = raw_client(llm_server)
    messages = user("Stream faults: how tall is Mount Everest?")
    with pytest.raises(openai.RateLimitError):
        _stream(client, messages, model="m", extra_headers={"X-Aiobs-Fault": "429"})
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=messages, stream=True,
                                                    extra_headers={"X-Aiobs-Fault": "malformed"}):
            received.append(chunk)
    # The cut stream delivered its first events, then failed instead of ending as if complete.
    assert received and all(c.choices[0].finish_reason is None for c in received)
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(model="m", messages=messages, stream_options={"include_usage": True})
    with pytest.raises(openai.BadRequestError, match="'stream' must be a boolean"):
        client.chat.completions.create(model="m", messages=messages, extra_body={"stream": "yes"})


def test_malformed_rate_cuts_some_streams(llm_server_factory: Callable[..., LLMServer]) -> None:
    server = llm_server_factory(malformed_rate=0.5, seed=2, chunk_delay_ms=0, ttft_ms=0)
    client = raw_client(server)
    outcomes = []
    for i in range(12):
        try:
            chunks = _stream(client, user(f"Question {i}: what is photosynthesis?"), model="m")
            outcomes.append("ok" if chunks[-1].choices[0].finish_reason == "stop" else "incomplete")
        except openai.APIConnectionError:
            outcomes.append("cut")
    assert set(outcomes) == {"ok", "cut"}
