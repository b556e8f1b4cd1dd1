"""The local OpenAI-compatible HTTP server (stdlib `ThreadingHTTPServer`): endpoints, faults and the CLI.

Endpoints: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`, `GET /health`, and
`POST /admin/reset` (forgets per-request fault sequences and the simulated prompt cache).

Streaming: `stream: true` on chat completions answers with server-sent events the way OpenAI does: a first
chunk carrying the assistant role, content deltas of a few tokens each, a chunk with the finish reason, and
with `stream_options: {"include_usage": true}` a last chunk with `choices: []` and the same usage as the
non-streamed answer; then `data: [DONE]`. The first content arrives `--ttft-ms` after the request (plus any
latency), later chunks `--chunk-delay-ms` apart. Usage reports cached prompt tokens for a repeated prompt of
at least `--prompt-cache-min-tokens` (in blocks of `--prompt-cache-block`), and reasoning tokens for reasoning
models (`o1`, `o3-mini`, `o4-mini`, ...: names `o<digit>...`), counted in completion tokens as OpenAI counts them.

Misbehaviour, for testing clients for real:
- server-wide, by flags: `--error-rate` (429 and 500 responses in equal parts), `--malformed-rate` (200 with a
  truncated JSON body), `--timeout-rate` (the response is held back `--timeout-s` seconds), `--latency-ms`
  (added to every model response), `--retry-after-ms` (a `retry-after-ms` header on 429s). Which request
  misbehaves is decided from the seed and the request's arrival number, so a sequential client sees the
  same faults on every run.
- per request, by headers (forced, deterministic): `X-Aiobs-Fault` is a comma-separated sequence played
  against repeats of the same request body - `500` always answers 500; `429,429,ok` answers 429 to the
  first two identical requests and succeeds from the third on. Items: `ok`, any HTTP status code (`429`,
  `500`, `503`, ...), `malformed`, `timeout`. `X-Aiobs-Latency-Ms` adds latency to that request;
  `X-Aiobs-Retry-After-Ms` sets the retry-after header of its 429s.
Fault headers override the random faults for that request; `/health` and `/v1/models` never misbehave.
A malformed fault on a streamed request sends the first half of the events, then half an event, and ends the
response without `[DONE]` (a stream cut by a dropped connection); error statuses come before any event.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiobs_pipeline.llmserver import text as t
from aiobs_pipeline.llmserver.responder import answer, message_text, token_logprobs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MODELS = ("aiobs-local", "gpt-4o-mini", "text-embedding-3-small")
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_BODY_BYTES = 20 * 1024 * 1024
PROMPT_CACHE_BLOCK = 128
DEFAULT_TTFT_MS = 40.0
DEFAULT_CHUNK_DELAY_MS = 8.0
TOKENS_PER_CHUNK = 3
# OpenAI's reasoning models (o1, o3-mini, o4-mini, ...) report hidden reasoning tokens in their usage.
REASONING_MODEL_RE = re.compile(r"^o\d")
_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
}


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI-style error fields."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ServerConfig:
    """How the server behaves: address, seed, and its misbehaviour knobs (rates are shares of requests)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    seed: int = 0
    error_rate: float = 0.0
    malformed_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_s: float = 30.0
    retry_after_ms: int | None = None
    embedding_dims: int = 256
    prompt_cache_min_tokens: int = 1024
    prompt_cache_block: int = PROMPT_CACHE_BLOCK
    ttft_ms: float = DEFAULT_TTFT_MS
    chunk_delay_ms: float = DEFAULT_CHUNK_DELAY_MS
    log_requests: bool = False
    models: tuple[str, ...] = DEFAULT_MODELS

    def __post_init__(self) -> None:
        for name in ("error_rate", "malformed_rate", "timeout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.error_rate + self.malformed_rate + self.timeout_rate > 1.0:
            raise ValueError("error_rate + malformed_rate + timeout_rate must not exceed 1")
        if self.latency_ms < 0 or self.timeout_s < 0 or self.ttft_ms < 0 or self.chunk_delay_ms < 0:
            raise ValueError("latency_ms, timeout_s, ttft_ms and chunk_delay_ms must not be negative")
        if self.prompt_cache_min_tokens < 0 or self.prompt_cache_block < 1:
            raise ValueError("prompt_cache_min_tokens must not be negative and prompt_cache_block must be >= 1")
        if not 1 <= self.embedding_dims <= 4096:
            raise ValueError(f"embedding_dims must be between 1 and 4096, got {self.embedding_dims}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")


@dataclass
class ServerState:
    """Mutable state shared by the handler threads: arrival counter, fault sequences, prompt cache."""

    requests: int = 0
    sequence_positions: Counter[tuple[str, str]] = field(default_factory=Counter)
    seen_prompts: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget fault sequence positions and the simulated prompt cache."""
        with self.lock:
            self.sequence_positions.clear()
            self.seen_prompts.clear()

    def next_fault(self, config: ServerConfig, header: str | None, body_key: str) -> tuple[int, str]:
        """(arrival number, fault) for a request: the X-Aiobs-Fault sequence if given, else the seeded plan."""
        with self.lock:
            number = self.requests
            self.requests += 1
            if header:
                items = [item.strip().lower() for item in header.split(",") if item.strip()]
                position = self.sequence_positions[(header, body_key)]
                self.sequence_positions[(header, body_key)] += 1
                return number, items[min(position, len(items) - 1)] if items else "ok"
        u = t.unit_interval(config.seed, "fault", number)
        if u < config.error_rate:
            return number, "429" if t.unit_interval(config.seed, "status", number) < 0.5 else "500"
        if u < config.error_rate + config.malformed_rate:
            return number, "malformed"
        if u < config.error_rate + config.malformed_rate + config.timeout_rate:
            return number, "timeout"
        return number, "ok"

    def cached_tokens(self, prompt_key: int, prompt_tokens: int, min_tokens: int,
                      block: int = PROMPT_CACHE_BLOCK) -> int:
        """Prompt-cache hits as OpenAI reports them: repeated prompts of >= min_tokens, in whole blocks."""
        if prompt_tokens < min_tokens:
            return 0
        with self.lock:
            seen = prompt_key in self.seen_prompts
            self.seen_prompts.add(prompt_key)
        return (prompt_tokens // block) * block if seen else 0


class LLMHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server carrying the config and state its handlers read."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.state = ServerState()
        super().__init__((config.host, config.port), LLMRequestHandler)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server (`http://host:port/v1`)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def _int_param(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"'{name}' must be an integer between {low} and {high}, got {value!r}", name)
    return value


def _validate_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty array", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            raise RequestError(400, f"messages[{index}] must be an object with a valid 'role'", f"messages[{index}]")
    return messages


def _truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    if max_tokens is None:
        return text, "stop"
    matches = list(t.TOKEN_RE.finditer(text))
    if len(matches) <= max_tokens:
        return text, "stop"
    return text[: matches[max_tokens - 1].end()], "length"


def chat_completion(body: dict[str, Any], config: ServerConfig, state: ServerState, number: int) -> dict[str, Any]:
    """The chat.completion object for a request body (raises RequestError for invalid requests)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "'model' must be a non-empty string", "model")
    messages = _validate_messages(body)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(400, f"'stream' must be a boolean, got {stream!r}", "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not stream:
            raise RequestError(400, "'stream_options' is only allowed when 'stream' is true", "stream_options")
        if not isinstance(stream_options, dict):
            raise RequestError(400, "'stream_options' must be an object", "stream_options")
    n = _int_param(body, "n", 1, 1, 128) or 1
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise RequestError(400, f"'temperature' must be a number between 0 and 2, got {temperature!r}", "temperature")
    seed = _int_param(body, "seed", None, -(2**63), 2**63 - 1)
    max_tokens = _int_param(body, "max_completion_tokens", None, 1, 10**6)
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", None, 1, 10**6)
    top_logprobs = _int_param(body, "top_logprobs", 0, 0, 20) or 0
    want_logprobs = bool(body.get("logprobs"))
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")

    prompt_key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    choices = []
    completion_tokens = 0
    for index in range(n):
        sampled = answer(messages, temperature=float(temperature), request_seed=seed, sample=index,
                         server_seed=config.seed, json_mode=json_mode)
        content, finish = _truncate(sampled.text, max_tokens)
        completion_tokens += t.count_tokens(content)
        logprobs = None
        if want_logprobs:
            logprobs = {"content": token_logprobs(sampled.__class__(content, sampled.mode, sampled.stable),
                                                  prompt_key, index, top_logprobs), "refusal": None}
        choices.append({
            "index": index,
            "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
            "logprobs": logprobs,
            "finish_reason": finish,
        })
    prompt_tokens = sum(t.count_tokens(message_text(m.get("content"))) for m in messages)
    cached = state.cached_tokens(t.stable_hash(model, prompt_key), prompt_tokens, config.prompt_cache_min_tokens,
                                 config.prompt_cache_block)
    reasoning = reasoning_tokens(model, prompt_key, n)
    completion_tokens += reasoning
    return {
        "id": f"chatcmpl-{t.stable_hash(config.seed, prompt_key, number):016x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "system_fingerprint": f"fp_aiobs_local_{config.seed}",
        "service_tier": "default",
    }


def reasoning_tokens(model: str, prompt_key: str, n: int = 1) -> int:
    """Hidden reasoning tokens a reasoning model reports for a prompt (deterministic, 16-64 per choice)."""
    if not REASONING_MODEL_RE.match(model):
        return 0
    return sum(16 + t.stable_hash("reasoning", model, prompt_key, index) % 49 for index in range(n))


def _pieces(text: str, tokens_per_chunk: int = TOKENS_PER_CHUNK) -> list[str]:
    """The text cut after every few tokens, whitespace kept with the following piece; joined it is the text."""
    ends = [m.end() for m in t.TOKEN_RE.finditer(text)][tokens_per_chunk - 1::tokens_per_chunk]
    cuts = [0, *(end for end in ends if end < len(text)), len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def stream_chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects OpenAI streams for a completion, in order (the text split in pieces).

    Every choice gets a role chunk, its content pieces and a finish chunk; with include_usage every chunk
    carries `usage: null` and a last chunk with no choices carries the completion's usage.
    """
    head = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"], "system_fingerprint": completion["system_fingerprint"],
            "service_tier": completion["service_tier"]}
    if include_usage:
        head["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice]}

    chunks = []
    for choice in completion["choices"]:
        index = choice["index"]
        chunks.append(chunk(index, {"role": "assistant", "content": "", "refusal": None}))
        token_lps = (choice.get("logprobs") or {}).get("content")
        position = 0
        for piece in _pieces(choice["message"]["content"] or ""):
            logprobs = None
            if token_lps is not None:
                count = t.count_tokens(piece)
                logprobs = {"content": token_lps[position:position + count], "refusal": None}
                position += count
            chunks.append(chunk(index, {"content": piece}, logprobs=logprobs))
        chunks.append(chunk(index, {}, finish=choice["finish_reason"]))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return chunks


def embeddings(body: dict[str, Any], config: ServerConfig) -> dict[str, Any]:
    """The embeddings list object for a request body (raises RequestError for invalid requests)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "'model' must be a non-empty string", "model")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[str] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        inputs = [" ".join(f"tok{i}" for i in raw)]
    elif isinstance(raw, list) and raw:
        inputs = []
        for index, item in enumerate(raw):
            if isinstance(item, str):
                inputs.append(item)
            elif isinstance(item, list) and item and all(isinstance(i, int) for i in item):
                inputs.append(" ".join(f"tok{i}" for i in item))
            else:
                raise RequestError(400, f"input[{index}] must be a string or an array of token ids", "input")
    else:
        raise RequestError(400, "'input' must be a non-empty string or array", "input")
    for index, item in enumerate(inputs):
        if not item.strip():
            raise RequestError(400, f"input[{index}] is empty", "input")
    dims = _int_param(body, "dimensions", config.embedding_dims, 1, 4096) or config.embedding_dims
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    data = []
    for index, item in enumerate(inputs):
        vector = t.embed(item, dims)
        encoded: Any = vector
        if encoding == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    used = sum(t.count_tokens(item) for item in inputs)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": used, "total_tokens": used}}


class LLMRequestHandler(BaseHTTPRequestHandler):
    """Routes requests, applies faults and writes OpenAI-shaped JSON responses."""

    protocol_version = "HTTP/1.1"
    server_version = "aiobs-llm-server/1"
    server: LLMHTTPServer

    def handle(self) -> None:
        """Handle the connection, ignoring clients that hung up (e.g. after their own timeout)."""
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Access log to stderr, only when asked for (stdout carries only the startup line)."""
        if self.server.config.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, message: str, param: str | None = None,
                    headers: dict[str, str] | None = None) -> None:
        error_type, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                                     f"http_{status}"))
        payload = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
        self._send_json(status, payload, headers)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's handler naming
        """Health and model listing."""
        path = self._path()
        if path == "/health":
            self._send_json(200, {"status": "ok", "seed": self.server.config.seed})
        elif path == "/v1/models":
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "aiobs-local"}
                      for m in self.server.config.models]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_error(404, f"unknown path {path}")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's handler naming
        """Chat completions, embeddings and the admin reset, with faults applied to the model endpoints."""
        path = self._path()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_error(413, f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/admin/reset":
            self.server.state.reset()
            self._send_json(200, {"status": "reset"})
            return
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._send_error(404, f"unknown path {path}")
            return
        config, state = self.server.config, self.server.state
        number, fault = state.next_fault(config, self.headers.get("X-Aiobs-Fault"), f"{path}\n{raw.decode('utf-8', 'replace')}")
        latency = config.latency_ms + _header_float(self.headers.get("X-Aiobs-Latency-Ms"))
        if latency > 0:
            time.sleep(latency / 1000)
        if fault == "timeout":
            time.sleep(config.timeout_s)
            fault = "ok"
        if fault not in ("ok", "none", "malformed"):
            self._send_fault_status(fault)
            return
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            if path == "/v1/chat/completions":
                payload = chat_completion(body, config, state, number)
                if body.get("stream"):
                    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    self._send_stream(stream_chunks(payload, include_usage), cut=fault == "malformed")
                    return
            else:
                payload = embeddings(body, config)
        except json.JSONDecodeError as error:
            self._send_error(400, f"the request body is not valid JSON: {error}")
            return
        except RequestError as error:
            self._send_error(error.status, error.message, error.param)
            return
        encoded = json.dumps(payload).encode("utf-8")
        if fault == "malformed":
            # A body cut mid-stream, as a broken proxy or a dropped connection would deliver it.
            encoded = encoded[: max(1, len(encoded) // 2)]
        self._send_bytes(200, encoded)

    def _send_stream(self, chunks: list[dict[str, Any]], cut: bool = False) -> None:
        """Server-sent events with chunked transfer encoding; `cut` ends mid-event without `[DONE]`."""
        config = self.server.config
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if cut:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        if cut:
            half = events[: max(1, len(events) // 2)]
            events = [*half[:-1], half[-1][: max(1, len(half[-1]) // 2)]]
        else:
            events.append(b"data: [DONE]\n\n")
        # The role chunk and the first piece of content leave together, after the time to first token.
        for position, event in enumerate(events):
            delay = config.ttft_ms if position == 0 else 0.0 if position == 1 else config.chunk_delay_ms
            if delay > 0:
                time.sleep(delay / 1000)
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        if not cut:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_fault_status(self, fault: str) -> None:
        if not (fault.isdigit() and 400 <= int(fault) <= 599):
            self._send_error(400, f"unknown X-Aiobs-Fault item {fault!r} (use ok, malformed, timeout or a 4xx/5xx "
                                  f"status code)", "X-Aiobs-Fault")
            return
        status = int(fault)
        headers: dict[str, str] = {}
        if status == 429:
            retry_ms = self.headers.get("X-Aiobs-Retry-After-Ms")
            after = int(_header_float(retry_ms)) if retry_ms else self.server.config.retry_after_ms
            if after is not None:
                headers = {"retry-after-ms": str(after), "retry-after": str(math.ceil(after / 1000))}
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        self._send_error(status, f"injected fault: {status} {phrase}", headers=headers)


def _header_float(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def make_server(config: ServerConfig) -> LLMHTTPServer:
    """Bind a server for config (port 0 picks a free port) without starting to serve."""
    return LLMHTTPServer(config)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    seed: int = 0,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    malformed_rate: float = 0.0,
    timeout_rate: float = 0.0,
    timeout_s: float = 30.0,
    retry_after_ms: int | None = None,
    embedding_dims: int = 256,
    log_requests: bool = False,
    ttft_ms: float = DEFAULT_TTFT_MS,
    chunk_delay_ms: float = DEFAULT_CHUNK_DELAY_MS,
    prompt_cache_min_tokens: int = 1024,
    prompt_cache_block: int = PROMPT_CACHE_BLOCK,
) -> int:
    """Serve until interrupted; print one line with the base URL to stdout first. Returns an exit code."""
    try:
        config = ServerConfig(host=host, port=port, seed=seed, error_rate=error_rate, latency_ms=latency_ms,
                              malformed_rate=malformed_rate, timeout_rate=timeout_rate, timeout_s=timeout_s,
                              retry_after_ms=retry_after_ms, embedding_dims=embedding_dims,
                              log_requests=log_requests, ttft_ms=ttft_ms, chunk_delay_ms=chunk_delay_ms,
                              prompt_cache_min_tokens=prompt_cache_min_tokens,
                              prompt_cache_block=prompt_cache_block)
    except ValueError as error:
        print(f"aiobs llm-server: invalid setting: {error}", file=sys.stderr)
        return 2
    try:
        server = make_server(config)
    except OSError as error:
        print(f"aiobs llm-server: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 2
    print(f"aiobs llm-server listening on {server.base_url} (seed={seed})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's flags to a parser (used by `python -m aiobs_pipeline.llmserver` and `aiobs llm-server`)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free port, printed on startup)")
    parser.add_argument("--seed", type=int, default=0, help="seed for answers and random faults (default 0)")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="share of model requests answered 429 or 500, half each (default 0)")
    parser.add_argument("--malformed-rate", type=float, default=0.0,
                        help="share of model requests answered 200 with a truncated JSON body (default 0)")
    parser.add_argument("--timeout-rate", type=float, default=0.0,
                        help="share of model requests held back --timeout-s seconds (default 0)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="how long a timeout fault waits (default 30)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to model requests (default 0)")
    parser.add_argument("--retry-after-ms", type=int, default=None,
                        help="send retry-after-ms (and retry-after) headers with 429 responses")
    parser.add_argument("--embedding-dims", type=int, default=256, help="default embedding size (default 256)")
    parser.add_argument("--log-requests", action="store_true", help="write an access log to stderr")
    parser.add_argument("--ttft-ms", type=float, default=DEFAULT_TTFT_MS,
                        help=f"streamed answers: time to the first chunk (default {DEFAULT_TTFT_MS:g})")
    parser.add_argument("--chunk-delay-ms", type=float, default=DEFAULT_CHUNK_DELAY_MS,
                        help=f"streamed answers: delay between later chunks (default {DEFAULT_CHUNK_DELAY_MS:g})")
    parser.add_argument("--prompt-cache-min-tokens", type=int, default=1024,
                        help="a repeated prompt of at least this many tokens reports cached tokens (default 1024)")
    parser.add_argument("--prompt-cache-block", type=int, default=PROMPT_CACHE_BLOCK,
                        help=f"cached tokens come in whole blocks of this size (default {PROMPT_CACHE_BLOCK})")


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with the options parsed by a parser prepared with add_arguments."""
    return serve(host=args.host, port=args.port, seed=args.seed, error_rate=args.error_rate,
                 latency_ms=args.latency_ms, malformed_rate=args.malformed_rate, timeout_rate=args.timeout_rate,
                 timeout_s=args.timeout_s, retry_after_ms=args.retry_after_ms,
                 embedding_dims=args.embedding_dims, log_requests=args.log_requests, ttft_ms=args.ttft_ms,
                 chunk_delay_ms=args.chunk_delay_ms, prompt_cache_min_tokens=args.prompt_cache_min_tokens,
                 prompt_cache_block=args.prompt_cache_block)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: parse flags and serve."""
    parser = argparse.ArgumentParser(
        prog="aiobs llm-server",
        description="Local OpenAI-compatible server for tests and the demo: deterministic, with injectable faults. "
                    "Not a model.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
