"""What every recording script shares: the three calls, how their answers become the manifest, the exporters.

A recording script runs inside the library's own throwaway virtualenv (openai, the library, the
OpenTelemetry SDK and aiobs installed `--no-deps`), so this module imports only the standard library,
`openai` and `aiobs_pipeline.otel`. The expected values of the manifest are taken from the responses the
client actually received (usage, text, model), never typed in.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL = "o4-mini"  # a reasoning model: the local server reports reasoning tokens for it
EMBEDDING_MODEL = "text-embedding-3-small"
SYSTEM = "You are a concise assistant."
QUESTION = "How tall is Mount Everest?"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
EMBEDDING_INPUT = "refund policy for annual plans"
REQUEST_USER = "request-user-7"
# One user and session per call, so a reader that mixes them up is caught; the chat call also sends the
# request's `user` field, which the explicit user must beat.
USERS = {"chat": ("user-chat-1", "session-a"), "stream": ("user-stream-2", "session-a"),
         "embeddings": ("user-embed-3", "session-b")}
# The recorder starts the server with these, so the streamed repeat of the chat prompt hits the prompt cache.
SERVER_OPTIONS = {"prompt_cache_min_tokens": 8, "prompt_cache_block": 8, "ttft_ms": 60, "chunk_delay_ms": 5,
                  "seed": 0}
SPANS_FILE = "spans.otlp.jsonl"
LOGS_FILE = "logs.otlp.jsonl"


def parse_args() -> argparse.Namespace:
    """--base-url of the local server, --landing (exporters write there), --manifest (its path), --mode."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--landing", required=True, type=Path)
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--mode", default="", help="the library's mode, when the script records several")
    return parser.parse_args()


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions (the library, openai, the SDK)."""
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def span_exporter(landing: Path) -> Any:
    """aiobs's OTLP/JSON span exporter into the landing folder."""
    from aiobs_pipeline.otel import OtlpJsonFileSpanExporter

    return OtlpJsonFileSpanExporter(landing, file_prefix="rec")


def log_exporter(landing: Path) -> Any:
    """aiobs's OTLP/JSON log exporter into the landing folder."""
    from aiobs_pipeline.otel import OtlpJsonFileLogExporter

    return OtlpJsonFileLogExporter(landing, file_prefix="rec")


def openai_client(base_url: str, cls: Any = None) -> Any:
    """An openai.OpenAI (or a library's drop-in subclass) pointed at the local server, no retries."""
    if cls is None:
        import openai

        cls = openai.OpenAI
    return cls(base_url=base_url, api_key="sk-local-conformance", max_retries=0, timeout=30)


def _usage(usage: Any) -> dict[str, int | None]:
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": getattr(usage, "completion_tokens", 0) or 0,
        "total_tokens": usage.total_tokens,
        "cached_tokens": getattr(prompt_details, "cached_tokens", None) or 0,
        "reasoning_tokens": getattr(completion_details, "reasoning_tokens", None) or 0,
    }


@dataclass
class Recording:
    """The manifest of one library + mode, built up call by call and written at the end."""

    library: str
    mode: str
    distributions: tuple[str, ...]
    settings: dict[str, Any]
    captures: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def _entry(self, kind: str, request: dict[str, Any], user_id: str | None, session_id: str | None,
               response: dict[str, Any], started: int, ended: int, **extra: Any) -> dict[str, Any]:
        entry = {
            "kind": kind,
            "request": request,
            "user_id": user_id,
            "session_id": session_id,
            "request_user": request.get("user"),
            "response": response,
            "client_started_unix_nano": started,
            "client_ended_unix_nano": ended,
            **extra,
        }
        self.calls.append(entry)
        return entry

    def chat(self, create: Callable[..., Any], user_id: str | None, session_id: str | None,
             request_user: str | None = REQUEST_USER, **extra_args: Any) -> Any:
        """A plain chat completion through `create` (the instrumented client's method); returns the response."""
        request = {"model": MODEL, "messages": MESSAGES}
        if request_user:
            request["user"] = request_user
        started = time.time_ns()
        completion = create(**request, **extra_args)
        ended = time.time_ns()
        choice = completion.choices[0]
        response = {"id": completion.id, "model": completion.model, **_usage(completion.usage),
                    "output_text": choice.message.content, "finish_reason": choice.finish_reason}
        self._entry("chat", request, user_id, session_id, response, started, ended)
        return completion

    def stream(self, create: Callable[..., Any], user_id: str | None, session_id: str | None,
               request_user: str | None = None, **extra_args: Any) -> dict[str, Any]:
        """A streamed chat completion with include_usage, read to the end; returns the manifest response."""
        request: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "stream": True,
                                   "stream_options": {"include_usage": True}}
        if request_user:
            request["user"] = request_user
        started = time.time_ns()
        first_content: int | None = None
        pieces: list[str] = []
        usage = finish = model = response_id = None
        chunks = 0
        for chunk in iterate(create(**request, **extra_args)):
            chunks += 1
            response_id, model = chunk.id, chunk.model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first_content = first_content or time.time_ns()
                    pieces.append(choice.delta.content)
                finish = choice.finish_reason or finish
        ended = time.time_ns()
        if usage is None:
            raise RuntimeError("the stream ended without a usage chunk although include_usage was set")
        response = {"id": response_id, "model": model, **_usage(usage), "output_text": "".join(pieces),
                    "finish_reason": finish, "chunks": chunks}
        self._entry("stream", request, user_id, session_id, response, started, ended,
                    client_first_content_unix_nano=first_content)
        return response

    def embeddings(self, create: Callable[..., Any], user_id: str | None, session_id: str | None,
                   request_user: str | None = None, **extra_args: Any) -> Any:
        """One embeddings call through `create`; returns the response."""
        request: dict[str, Any] = {"model": EMBEDDING_MODEL, "input": EMBEDDING_INPUT}
        if request_user:
            request["user"] = request_user
        started = time.time_ns()
        result = create(**request, **extra_args)
        ended = time.time_ns()
        response = {"model": result.model, "input_tokens": result.usage.prompt_tokens,
                    "output_tokens": 0, "total_tokens": result.usage.total_tokens, "cached_tokens": 0,
                    "reasoning_tokens": 0, "dimensions": len(result.data[0].embedding), "vectors": len(result.data)}
        self._entry("embeddings", request, user_id, session_id, response, started, ended)
        return result

    def expected_identity(self, call: dict[str, Any]) -> dict[str, str | None]:
        """The user and session a reader should find for a call, given how this library records them.

        A user set through the library (explicit, baggage, association properties) beats the request's
        `user` field; a library that records only the request's `user` gives that; one that records
        neither gives none.
        """
        how = self.captures.get("user_session")
        if how in ("explicit", "baggage", "association_properties"):
            return {"user_id": call["user_id"], "session_id": call["session_id"]}
        if how == "request_user":
            return {"user_id": call["request_user"], "session_id": None}
        return {"user_id": None, "session_id": None}

    def write(self, path: Path) -> None:
        """The manifest as JSON: library, versions, mode, settings, what it captures, and every call."""
        for call in self.calls:
            call["expected"] = self.expected_identity(call)
        manifest = {
            "library": self.library,
            "mode": self.mode,
            "versions": versions(*self.distributions, "openai", "opentelemetry-sdk", "opentelemetry-api"),
            "settings": self.settings,
            "server": {**SERVER_OPTIONS, "note": "aiobs local server (aiobs_pipeline.llmserver)"},
            "captures": self.captures,
            "files": {"spans": SPANS_FILE, "logs": LOGS_FILE if self.captures.get("logs") else None},
            "calls": self.calls,
        }
        path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def iterate(stream: Any) -> Iterator[Any]:
    """The chunks of a stream object (openai's Stream, or a library's wrapper of it)."""
    yield from stream if isinstance(stream, Iterable) else stream.__iter__()


@contextmanager
def no_op() -> Iterator[None]:
    """A context that sets nothing (libraries with no user/session API)."""
    yield
