"""The local LLM server as a real separate process, for tests that need an OpenAI-compatible endpoint.

Use from any test module (import the fixtures you use; pytest picks them up from the module namespace, and
listing them in `__all__` keeps ruff from reading the test parameters as redefinitions, F811):

    from tests.integration.llm_fixtures import llm_server, llm_server_factory, local_llm_settings

    __all__ = ["llm_server", "llm_server_factory"]

    def test_something(llm_server, tmp_path):
        settings = local_llm_settings(llm_server, tmp_path)          # LLMSettings for aiobs_pipeline.llm
        result = LLMClient(settings).chat([{"role": "user", "content": "When was the Eiffel Tower built?"}])

API:
- `llm_server` (session-scoped fixture): one well-behaved server (seed 0, no faults) shared by the session.
  Its per-request fault sequences (X-Aiobs-Fault) are keyed by request body: use prompts unique to your test,
  or call `server.reset()` first.
- `llm_server_factory` (function-scoped fixture): `factory(**options) -> LLMServer` starts a fresh server with
  options seed, error_rate, malformed_rate, timeout_rate, timeout_s, latency_ms, retry_after_ms,
  embedding_dims, ttft_ms, chunk_delay_ms, prompt_cache_min_tokens, prompt_cache_block (the
  `python -m aiobs_pipeline.llmserver` flags); every server it started is stopped when
  the test ends.
- `start_llm_server(**options) -> LLMServer`: the same without pytest (a context manager; call `stop()`
  or use `with`). Raises `RuntimeError` with the server's stderr if it does not come up within 20 s.
- `LLMServer`: `base_url` (`http://127.0.0.1:<port>/v1`, what LLMSettings.base_url and openai.OpenAI take),
  `port`, `options`, `process`, `stop()`, `reset()` (forget fault sequences and the simulated prompt cache).
- `local_llm_settings(server, cache_dir, **overrides) -> LLMSettings`: settings pointing at the server with
  test-sized timeouts and backoff (timeout 5 s, 4 attempts, backoff 10-50 ms) and the cache in cache_dir.

The server is started with `--port 0` (the OS picks a free port) and prints its URL as its first stdout line,
so parallel test processes never collide on a port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiobs_pipeline.llm import LLMSettings
from aiobs_pipeline.llmserver.process import LLMServer, start_llm_server


def local_llm_settings(server: LLMServer, cache_dir: Path, **overrides: Any) -> LLMSettings:
    """LLMSettings for the local server with test-sized timeouts and backoff; overrides win."""
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "cache_dir": cache_dir,
        "timeout_s": 5.0,
        "max_attempts": 4,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return LLMSettings(**values)


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LLMServer]:
    """A well-behaved local LLM server (seed 0, no faults) for the whole session."""
    server = start_llm_server(seed=0)
    yield server
    server.stop()


@pytest.fixture
def llm_server_factory() -> Iterator[Callable[..., LLMServer]]:
    """A factory starting local LLM servers with options; all of them are stopped after the test."""
    started: list[LLMServer] = []

    def factory(**options: Any) -> LLMServer:
        server = start_llm_server(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
