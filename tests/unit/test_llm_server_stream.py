"""The local server's streaming, as pure functions: how an answer is cut into chunks, the chunk sequence
OpenAI streams, reasoning tokens, and the request checks for `stream` / `stream_options`."""

from __future__ import annotations

import pytest

from aiobs_pipeline.llmserver import text as t
from aiobs_pipeline.llmserver.server import (
    RequestError,
    ServerConfig,
    ServerState,
    _pieces,
    chat_completion,
    reasoning_tokens,
    stream_chunks,
)

MESSAGES = [{"role": "user", "content": "How tall is Mount Everest?"}]


@pytest.mark.parametrize("text", ["", "one", "  leading space, then words.", "a b c d e f g", "naïve café — ünïcode!",
                                  "line\nbreaks\n\nkept", "trailing   "])
def test_pieces_join_back_to_the_text_with_at_most_three_tokens_each(text: str) -> None:
    pieces = _pieces(text)
    assert "".join(pieces) == text
    assert all(piece and t.count_tokens(piece) <= 3 for piece in pieces)


def test_chunks_follow_openai_order_for_every_choice_then_usage() -> None:
    completion = chat_completion({"model": "o3-mini", "messages": MESSAGES, "n": 2, "temperature": 0.5, "seed": 4},
                                 ServerConfig(), ServerState(), 0)
    chunks = stream_chunks(completion, include_usage=True)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    for choice in completion["choices"]:
        own = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == choice["index"]]
        assert own[0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert own[-1] == {"index": choice["index"], "delta": {}, "logprobs": None,
                           "finish_reason": choice["finish_reason"]}
        assert "".join(c["delta"]["content"] for c in own[1:-1]) == choice["message"]["content"]
        assert all(c["finish_reason"] is None for c in own[:-1])
    without = stream_chunks(completion, include_usage=False)
    assert len(without) == len(chunks) - 1 and all("usage" not in c for c in without)


def test_reasoning_models_report_reasoning_tokens_inside_completion_tokens() -> None:
    config, state = ServerConfig(), ServerState()
    plain = chat_completion({"model": "gpt-4o-mini", "messages": MESSAGES}, config, state, 0)
    reasoning = chat_completion({"model": "o4-mini", "messages": MESSAGES}, config, state, 1)
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    hidden = reasoning["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert 16 <= hidden <= 64 and hidden == reasoning_tokens("o4-mini", '[{"content": "How tall is Mount Everest?", '
                                                                        '"role": "user"}]')
    assert reasoning["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] + hidden
    assert reasoning["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    three = reasoning_tokens("o1", "x", n=3)  # per choice, the first choice's count included
    assert 3 * 16 <= three <= 3 * 64 and three > reasoning_tokens("o1", "x", n=1)
    assert reasoning_tokens("omni-model", "x") == 0 and reasoning_tokens("gpt-5", "x") == 0


def test_prompt_cache_block_and_minimum_are_configurable() -> None:
    config, state = ServerConfig(prompt_cache_min_tokens=4, prompt_cache_block=4), ServerState()
    first, second = (chat_completion({"model": "m", "messages": MESSAGES}, config, state, i)["usage"] for i in (0, 1))
    assert first["prompt_tokens"] == 6 and first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == 4
    with pytest.raises(ValueError, match="prompt_cache_block must be >= 1"):
        ServerConfig(prompt_cache_block=0)
    with pytest.raises(ValueError, match="ttft_ms"):
        ServerConfig(ttft_ms=-1)


@pytest.mark.parametrize(("body", "message"), [
    ({"stream": "yes"}, "'stream' must be a boolean"),
    ({"stream_options": {"include_usage": True}}, "only allowed when 'stream' is true"),
    ({"stream": False, "stream_options": {"include_usage": True}}, "only allowed when 'stream' is true"),
    ({"stream": True, "stream_options": ["include_usage"]}, "'stream_options' must be an object"),
])
def test_bad_stream_parameters_are_refused_naming_the_field(body: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message) as error:
        chat_completion({"model": "m", "messages": MESSAGES, **body}, ServerConfig(), ServerState(), 0)
    assert error.value.status == 400 and error.value.param in ("stream", "stream_options")
