"""The one place that talks to an OpenAI-compatible API: chat completions and embeddings for aiobs' own checks.

What a call goes through, in order:
1. **cache** - the request body (model, messages and sampling parameters; never headers or the key) is
   hashed into a cache key; a stored response for that key is returned without any network call, so a
   backfill never pays twice. The cache is a SQLite file (`<cache_dir>/responses.sqlite3`, WAL mode, safe
   for several threads and processes); only successful responses are stored.
2. **concurrency limit** - a semaphore per client bounds the HTTP requests in flight from this process
   (share one `LLMClient` between threads). Limits across runs are Dagster pools, not this.
3. **retries** - 429, 408, 409, 5xx, timeouts, connection errors and malformed bodies are retried up to
   `max_attempts` attempts in total, with exponential backoff and equal jitter: before attempt k+1 the
   client waits a random time in [c/2, c] with c = min(backoff_max_s, backoff_initial_s * multiplier**(k-1)),
   and at least the server's `retry-after-ms`/`retry-after` (capped at retry_after_max_s). Other 4xx fail
   at once. The `openai` client's own retries are off (max_retries=0) so attempts are not multiplied.
   (tenacity is not installed in this environment, so the loop is written here; it is a dozen lines.)
4. **result** - every call returns an `LLMResult`: the text(s) or vectors, usage, latency, cache-hit flag and
   attempt count, or status `failed` with an `LLMError` (reason code, HTTP status, error class, message).
   Nothing is raised into the caller's loop and nothing is dropped; a failed call has no text and no score.
   `spans_from_results` turns results into canonical span rows so our own calls are costed like any span.

Settings come from `LLMSettings` (the `[llm]` section); the API key only from the environment variable it
names (OPENAI_API_KEY by default), held as SecretStr and never logged. Production defaults point at the
OpenAI API; the local server (`aiobs llm-server`) is only used when its URL is passed explicitly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from aiobs_pipeline.schema import SCHEMA_VERSION, SPAN_COLUMNS, conform

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CACHE_VERSION = 1
CACHE_FILE_NAME = "responses.sqlite3"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
# Placeholder sent to a local server when no key is set: the openai client refuses to start without one.
LOCAL_PLACEHOLDER_KEY = "aiobs-local-no-key"
RETRYABLE_STATUS = frozenset({408, 409, 429})

Endpoint = Literal["chat.completions", "embeddings"]

ERROR_REASONS: dict[str, str] = {
    "rate_limited": "the last attempt got HTTP 429",
    "server_error": "the last attempt got HTTP 5xx (or 409)",
    "timeout": "the last attempt timed out (or got HTTP 408)",
    "connection_error": "the last attempt could not reach the server",
    "malformed_response": "the last attempt's body was not the expected JSON",
    "auth_error": "HTTP 401 or 403: the key is missing, wrong or lacks permission (not retried)",
    "client_error": "another HTTP 4xx: the request itself is wrong (not retried)",
    "missing_api_key": "no API key in the environment for a non-local base URL (no call made)",
    "invalid_request": "the arguments could not form a request (no call made)",
    "unexpected_error": "any other exception (not retried)",
}


class LLMSettings(BaseModel):
    """How aiobs calls an OpenAI-compatible API for its own checks (the `[llm]` settings section)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default=DEFAULT_BASE_URL, description="OpenAI-compatible base URL, ending in /v1.")
    model: str = Field(default="gpt-4o-mini", min_length=1, description="Chat model for checks.")
    embedding_model: str = Field(default="text-embedding-3-small", min_length=1, description="Embedding model.")
    provider: str = Field(default="openai", min_length=1, description="Provider recorded on our spans (pricing).")
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1,
                             description="Environment variable holding the API key (the key itself is never a setting).")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Timeout of one HTTP attempt, seconds.")
    max_attempts: int = Field(default=4, ge=1, le=20, description="Attempts per call, the first included.")
    backoff_initial_s: float = Field(default=0.5, ge=0, le=600, description="Backoff ceiling before attempt 2.")
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10, description="Growth of the backoff ceiling.")
    backoff_max_s: float = Field(default=20.0, ge=0, le=3600, description="Largest backoff ceiling, seconds.")
    retry_after_max_s: float = Field(default=60.0, ge=0, le=3600,
                                     description="Longest server retry-after honoured, seconds.")
    max_concurrency: int = Field(default=4, ge=1, le=256, description="HTTP requests in flight per process.")
    cache_enabled: bool = Field(default=True, description="Use the persistent response cache.")
    cache_dir: Path = Field(default=Path("var/llm_cache"), description="Folder of the response cache.")
    app: str = Field(default="aiobs", description="`app` recorded on our spans.")
    feature: str = Field(default="aiobs-checks", description="`feature` recorded on our spans.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"llm.base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _backoff_order(self) -> LLMSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"llm.backoff_max_s ({self.backoff_max_s}) must be >= llm.backoff_initial_s ({self.backoff_initial_s})"
            )
        return self

    @property
    def is_local(self) -> bool:
        """Whether base_url points at this machine (the local server needs no key)."""
        return (urlsplit(self.base_url).hostname or "") in LOCAL_HOSTS

    def api_key(self) -> SecretStr | None:
        """The API key from the environment variable api_key_env, or None when it is unset or empty."""
        value = os.environ.get(self.api_key_env, "").strip()
        return SecretStr(value) if value else None


@dataclass(frozen=True)
class Usage:
    """Token counts of one call as the API reported them (None when it did not report a count)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class LLMError:
    """Why a call failed: a reason code (see ERROR_REASONS), the HTTP status if any, error class, message."""

    reason: str
    status_code: int | None
    error_class: str
    message: str

    def describe(self) -> str:
        """One line for error_message columns and logs: reason, status, class and message."""
        status = f"HTTP {self.status_code} " if self.status_code is not None else ""
        return f"{self.reason}: {status}{self.error_class}: {self.message}"


@dataclass
class LLMResult:
    """The outcome of one call: response or failure, usage, timing, cache and retry facts."""

    endpoint: Endpoint
    status: Literal["ok", "failed"]
    request_model: str
    request: dict[str, Any]
    started_at: datetime
    latency_ms: float
    attempts: int
    cache_hit: bool
    cache_key: str
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)
    logprobs: list[list[dict[str, Any]] | None] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    response_model: str | None = None
    response_id: str | None = None
    error: LLMError | None = None
    trace_id: str | None = None
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt_name: str | None = None
    prompt_version: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the call produced a response."""
        return self.status == "ok"

    @property
    def text(self) -> str | None:
        """The first choice's text (None for failed calls and embeddings)."""
        return self.texts[0] if self.texts else None

    @property
    def model(self) -> str:
        """The response model, falling back to the request model."""
        return self.response_model or self.request_model

    def span_row(self, settings: LLMSettings, line: int = 1, *, export_hour: datetime | None = None,
                 source_file: str = "aiobs-llm-client", environment: str | None = None) -> dict[str, Any]:
        """This call as one canonical span row (a dict keyed by schema column names; JSON columns as text)."""
        end = self.started_at + timedelta(milliseconds=self.latency_ms)
        hour = export_hour or self.started_at.replace(minute=0, second=0, microsecond=0)
        is_chat = self.endpoint == "chat.completions"
        params = {k: self.request.get(k) for k in ("n", "seed", "logprobs", "top_logprobs", "response_format",
                                                    "dimensions") if self.request.get(k) is not None}
        meta: dict[str, Any] = {"cache_hit": self.cache_hit, "attempts": self.attempts, "cache_key": self.cache_key,
                                "response_id": self.response_id, "base_url": settings.base_url}
        if is_chat:
            meta["finish_reasons"] = self.finish_reasons
        else:
            meta["input"] = self.request.get("input")
            meta["vectors"] = len(self.embeddings)
        if self.error is not None:
            meta["error"] = {"reason": self.error.reason, "status_code": self.error.status_code,
                             "error_class": self.error.error_class, "message": self.error.message}
        if self.metadata:
            meta["tags"] = self.metadata
        ok = self.ok
        return {
            "trace_id": self.trace_id or self.call_id,
            "span_id": self.call_id[:16],
            "parent_span_id": None,
            "name": self.endpoint,
            "kind": "llm" if is_chat else "embedding",
            "start_time": self.started_at,
            "end_time": end,
            "latency_ms": self.latency_ms,
            "status": "ok" if ok else "error",
            "error_message": None if ok or self.error is None else self.error.describe(),
            "provider": settings.provider,
            "request_model": self.request_model,
            "response_model": self.response_model,
            "model": self.model,
            "temperature": self.request.get("temperature"),
            "max_tokens": self.request.get("max_tokens"),
            "request_params": _json(params) if params else None,
            "input_messages": _json(self.request.get("messages")) if is_chat else None,
            "output_text": self.text if is_chat else None,
            "output_messages": _json([{"role": "assistant", "content": t} for t in self.texts])
            if is_chat and ok else None,
            "input_tokens": self.usage.prompt_tokens if ok else None,
            "output_tokens": (self.usage.completion_tokens if is_chat else 0) if ok else None,
            "total_tokens": self.usage.total_tokens if ok else None,
            "cached_input_tokens": self.usage.cached_tokens if ok else None,
            "reasoning_tokens": self.usage.reasoning_tokens if ok else None,
            "app": settings.app,
            "feature": settings.feature,
            "environment": environment,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "source_format": "native",
            "source_file": source_file,
            "source_line": line,
            "metadata": _json(meta),
            "export_hour": hour,
            "schema_version": SCHEMA_VERSION,
        }


def spans_from_results(results: Iterable[LLMResult], settings: LLMSettings, *, export_hour: datetime | None = None,
                       source_file: str = "aiobs-llm-client", environment: str | None = None) -> pd.DataFrame:
    """Canonical span rows (schema.SPAN_COLUMNS, conformed) for a list of call results, failed calls included.

    A cache hit keeps the usage of the cached response, so a partition recomputed from the cache gets the
    same rows as when it was computed fresh; `metadata.cache_hit` tells which calls were actually paid for.
    export_hour defaults to each call's start hour.
    """
    rows = [r.span_row(settings, i, export_hour=export_hour, source_file=source_file, environment=environment)
            for i, r in enumerate(results, start=1)]
    return conform(pd.DataFrame(rows, columns=[c.name for c in SPAN_COLUMNS]), SPAN_COLUMNS)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def cache_key(endpoint: str, base_url: str, body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (cache version, endpoint, base URL, request body); dict order is irrelevant."""
    canonical = json.dumps({"v": CACHE_VERSION, "endpoint": endpoint, "base_url": base_url.rstrip("/"), "body": body},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A persistent response store keyed by request hash: one SQLite file, safe across threads and processes."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_FILE_NAME
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, "
                "model TEXT, created_at TEXT NOT NULL, payload TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        # A connection per operation: sqlite3 connections must not cross threads, and opening one is cheap.
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response payload for key, or None (also when the stored text is unreadable)."""
        connection = self._connect()
        try:
            row = connection.execute("SELECT payload FROM responses WHERE key = ?", (key,)).fetchone()
        finally:
            connection.close()
        if row is None:
            return None
        try:
            payload = json.loads(row[0])
        except ValueError:
            logger.warning("LLM cache entry %s in %s is unreadable; calling the API again", key[:12], self.path)
            return None
        return payload if isinstance(payload, dict) else None

    def put(self, key: str, endpoint: str, model: str, payload: Mapping[str, Any]) -> None:
        """Store a response payload under key (replacing any older one)."""
        text = json.dumps(payload, ensure_ascii=False)
        connection = self._connect()
        try:
            with connection:
                connection.execute(
                    "INSERT OR REPLACE INTO responses (key, endpoint, model, created_at, payload) VALUES (?, ?, ?, ?, ?)",
                    (key, endpoint, model, datetime.now(UTC).isoformat(), text),
                )
        finally:
            connection.close()

    def __len__(self) -> int:
        connection = self._connect()
        try:
            return int(connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        finally:
            connection.close()


class MalformedResponseError(Exception):
    """The server answered 2xx but the body is not the JSON shape the endpoint promises."""


@dataclass(frozen=True)
class _Failure:
    error: LLMError
    retryable: bool
    retry_after_s: float | None


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException, secret: str | None = None) -> _Failure:
    """Turn an exception from one attempt into an LLMError, whether to retry, and the server's retry-after."""
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    if secret:
        message = message.replace(secret, "***")
    name = type(exc).__name__
    if isinstance(exc, openai.APITimeoutError):
        return _Failure(LLMError("timeout", None, name, message), True, None)
    if isinstance(exc, openai.APIConnectionError):
        return _Failure(LLMError("connection_error", None, name, message), True, None)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        after = _retry_after(exc.response)
        if status == 429:
            return _Failure(LLMError("rate_limited", status, name, message), True, after)
        if status == 408:
            return _Failure(LLMError("timeout", status, name, message), True, after)
        if status >= 500 or status in RETRYABLE_STATUS:
            return _Failure(LLMError("server_error", status, name, message), True, after)
        reason = "auth_error" if status in (401, 403) else "client_error"
        return _Failure(LLMError(reason, status, name, message), False, None)
    if isinstance(exc, MalformedResponseError | openai.APIResponseValidationError | json.JSONDecodeError):
        status = getattr(exc, "status_code", None)
        return _Failure(LLMError("malformed_response", status, name, message), True, None)
    return _Failure(LLMError("unexpected_error", None, name, message), False, None)


def _parse_chat(payload: Mapping[str, Any]) -> dict[str, Any]:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("chat completion without a 'choices' array")
    texts, reasons, logprobs = [], [], []
    for index, choice in enumerate(sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise MalformedResponseError(f"choices[{index}] has no 'message' object")
        content = message.get("content")
        texts.append(content if isinstance(content, str) else "")
        reasons.append(choice.get("finish_reason"))
        lp = choice.get("logprobs")
        logprobs.append(lp.get("content") if isinstance(lp, dict) else None)
    return {"texts": texts, "finish_reasons": reasons, "logprobs": logprobs, "usage": _usage(payload)}


def _parse_embeddings(payload: Mapping[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise MalformedResponseError("embedding response without a 'data' array")
    vectors = []
    for index, item in enumerate(sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list) or not all(isinstance(v, int | float) for v in vector):
            raise MalformedResponseError(f"data[{index}].embedding is not an array of numbers")
        vectors.append([float(v) for v in vector])
    return {"embeddings": vectors, "usage": _usage(payload)}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(payload: Mapping[str, Any]) -> Usage:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        total_tokens=_count(usage.get("total_tokens")),
        cached_tokens=_count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        reasoning_tokens=_count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict) else None,
    )


class LLMClient:
    """Calls an OpenAI-compatible API with caching, retries, a concurrency limit and failure capture.

    Thread-safe: share one instance between threads so the concurrency limit holds. `sleep` and `rng` are
    injectable so tests can observe backoff without waiting.
    """

    def __init__(
        self,
        settings: LLMSettings | None = None,
        *,
        api_key: str | SecretStr | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or LLMSettings()
        key = api_key if api_key is not None else self.settings.api_key()
        self._secret: str | None = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._semaphore = threading.BoundedSemaphore(self.settings.max_concurrency)
        self._client: openai.OpenAI | None = None
        client_key = self._secret or (LOCAL_PLACEHOLDER_KEY if self.settings.is_local else None)
        if client_key is not None:
            self._client = openai.OpenAI(api_key=client_key, base_url=self.settings.base_url,
                                         timeout=self.settings.timeout_s, max_retries=0, http_client=http_client)
        self.cache: ResponseCache | None = None
        if self.settings.cache_enabled:
            try:
                self.cache = ResponseCache(Path(self.settings.cache_dir))
            except (OSError, sqlite3.Error) as error:
                logger.warning("LLM response cache disabled: cannot open %s (%s)", self.settings.cache_dir, error)

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.settings.base_url!r}, model={self.settings.model!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            self._client.close()

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        prompt_name: str | None = None,
        prompt_version: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        use_cache: bool = True,
    ) -> LLMResult:
        """One chat completion (n choices); never raises - failures come back as status `failed`."""
        body: dict[str, Any] = {"model": model or self.settings.model, "messages": _plain(messages)}
        optional = {"temperature": temperature, "n": n, "seed": seed, "max_tokens": max_tokens, "logprobs": logprobs,
                    "top_logprobs": top_logprobs, "response_format": _plain(response_format)}
        body.update({k: v for k, v in optional.items() if v is not None})
        extras = {"trace_id": trace_id, "metadata": dict(metadata or {}), "prompt_name": prompt_name,
                  "prompt_version": prompt_version}
        return self._call("chat.completions", body, extra_headers, use_cache, extras)

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        dimensions: int | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        use_cache: bool = True,
    ) -> LLMResult:
        """Embeddings for one text or a list of texts, in input order; never raises."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        body: dict[str, Any] = {"model": model or self.settings.embedding_model, "input": inputs,
                                "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        extras = {"trace_id": trace_id, "metadata": dict(metadata or {})}
        return self._call("embeddings", body, extra_headers, use_cache, extras)

    def chat_many(self, requests: Iterable[Mapping[str, Any]]) -> list[LLMResult]:
        """Run several chat calls (each a dict of `chat` keyword arguments) on max_concurrency threads, in order."""
        batch = list(requests)
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(batch))) as pool:
            return list(pool.map(lambda kwargs: self.chat(**kwargs), batch))

    def _call(self, endpoint: Endpoint, body: dict[str, Any], extra_headers: Mapping[str, str] | None,
              use_cache: bool, extras: dict[str, Any]) -> LLMResult:
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        model = str(body.get("model"))

        def result(status: Literal["ok", "failed"], attempts: int, key: str, **values: Any) -> LLMResult:
            return LLMResult(endpoint=endpoint, status=status, request_model=model, request=body,
                             started_at=started_at, latency_ms=(time.perf_counter() - clock) * 1000,
                             attempts=attempts, cache_key=key, **extras, **values)

        try:
            key = cache_key(endpoint, self.settings.base_url, body)
        except (TypeError, ValueError) as error:
            return result("failed", 0, "", cache_hit=False,
                          error=LLMError("invalid_request", None, type(error).__name__,
                                         f"the request is not JSON-serialisable: {error}"))
        cache = self.cache if use_cache else None
        if cache is not None:
            cached = self._cache_get(cache, key)
            if cached is not None:
                try:
                    return result("ok", 0, key, cache_hit=True, **self._parse(endpoint, cached))
                except MalformedResponseError as error:
                    logger.warning("LLM cache entry %s is not a valid response (%s); calling the API", key[:12], error)
        if self._client is None:
            return result("failed", 0, key, cache_hit=False,
                          error=LLMError("missing_api_key", None, "MissingAPIKey",
                                         f"environment variable {self.settings.api_key_env} is not set and "
                                         f"{self.settings.base_url} is not a local server"))
        failure: _Failure | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                with self._semaphore:
                    payload = self._post(endpoint, body, extra_headers)
                parsed = self._parse(endpoint, payload)
            except Exception as error:  # noqa: BLE001 - every failure becomes a result, never a raise
                failure = classify(error, self._secret)
                if not failure.retryable or attempt == self.settings.max_attempts:
                    logger.warning("LLM %s call failed after %d attempt(s): %s", endpoint, attempt,
                                   failure.error.describe())
                    return result("failed", attempt, key, cache_hit=False, error=failure.error)
                delay = self.backoff_delay(attempt, failure.retry_after_s)
                logger.info("LLM %s attempt %d failed (%s); retrying in %.2fs", endpoint, attempt,
                            failure.error.reason, delay)
                self._sleep(delay)
                continue
            if cache is not None:
                self._cache_put(cache, key, endpoint, model, payload)
            return result("ok", attempt, key, cache_hit=False, **parsed)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def backoff_delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): equal-jitter exponential, >= retry-after."""
        s = self.settings
        ceiling = min(s.backoff_max_s, s.backoff_initial_s * s.backoff_multiplier ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, s.retry_after_max_s))
        return delay

    def _post(self, endpoint: Endpoint, body: dict[str, Any], extra_headers: Mapping[str, str] | None) -> Any:
        assert self._client is not None
        headers = dict(extra_headers) if extra_headers else None
        if endpoint == "chat.completions":
            raw = self._client.chat.completions.with_raw_response.create(**body, extra_headers=headers)
        else:
            raw = self._client.embeddings.with_raw_response.create(**body, extra_headers=headers)
        response = raw.http_response
        try:
            return json.loads(response.content)
        except ValueError as error:
            snippet = response.content[:120].decode("utf-8", "replace")
            raise MalformedResponseError(
                f"HTTP {response.status_code} body is not valid JSON ({error}); it starts {snippet!r}"
            ) from None

    @staticmethod
    def _parse(endpoint: Endpoint, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise MalformedResponseError(f"the response body is a JSON {type(payload).__name__}, not an object")
        parsed = _parse_chat(payload) if endpoint == "chat.completions" else _parse_embeddings(payload)
        model = payload.get("model")
        parsed["response_model"] = model if isinstance(model, str) else None
        response_id = payload.get("id")
        parsed["response_id"] = response_id if isinstance(response_id, str) else None
        return parsed

    @staticmethod
    def _cache_get(cache: ResponseCache, key: str) -> dict[str, Any] | None:
        try:
            return cache.get(key)
        except sqlite3.Error as error:
            logger.warning("LLM cache read failed (%s); calling the API", error)
            return None

    @staticmethod
    def _cache_put(cache: ResponseCache, key: str, endpoint: str, model: str, payload: Any) -> None:
        try:
            cache.put(key, endpoint, model, payload)
        except sqlite3.Error as error:
            logger.warning("LLM cache write failed (%s); the response is used but not stored", error)


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists, so request bodies hash and serialise the same way."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
