"""A fast writer of synthetic native JSONL spans (about 2 KB each) for speed and memory benchmarks.

Each line is filled into a string template from pools of pre-encoded JSON fragments, so writing a million
spans costs one format call per line instead of json.dumps per field. The shape follows the native layout
(docs/formats.md): chat spans with a system and a user message, a response of a few hundred characters,
usage, params and metadata (user_id, feature, endpoint, prompt_version, ...), plus RAG traces whose
retrieval spans carry documents, and a share of error spans. Every span is valid and unique, starts inside
the given hour, so the ingest must write exactly as many spans as were generated.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

_WORDS = (
    "account billing invoice refund policy shipping order warranty upgrade plan customer support ticket "
    "password login region latency model context window token budget retrieval document answer source "
    "citation evidence summary report dashboard export quarterly revenue forecast churn retention cohort "
    "feature request roadmap release incident outage escalation priority contract renewal discount tier"
).split()
_FEATURES = ("chat", "search", "summarise", "support_bot", "code_assist", "email_draft")
_ENDPOINTS = ("/v1/chat", "/v1/search", "/v1/summarise", "/v1/support", "/v1/code", "/v1/email")
_MODELS = (("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
           ("anthropic", "claude-3-5-sonnet", "claude-3-5-sonnet-20241022"),
           ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022"))
_ERRORS = ("Rate limit exceeded: retry after 20s", "Request timed out after 30000 ms",
           "Upstream 502 Bad Gateway from provider", "Context length exceeded: 131072 tokens")

# Out of every 10 spans: 7 chat spans, then a RAG trace of retrieval + chat; 1 in 40 chat spans fails.
RAG_EVERY = 10
ERROR_EVERY = 40

_CHAT = (
    '{{"trace_id":"{trace}","span_id":"{span}","parent_span_id":{parent},"name":"chat_completion",'
    '"start_time":"{start}Z","end_time":"{end}Z","provider":"{provider}","model":"{model}",'
    '"response_model":"{response_model}","status":"{status}"{error},'
    '"messages":[{{"role":"system","content":{system}}},{{"role":"user","content":{user}}}],'
    '"response":{response},'
    '"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens},'
    '"total_tokens":{total_tokens}}},"cost":{cost},"time_to_first_token_ms":{ttft},'
    '"params":{{"temperature":{temperature},"max_tokens":1024}},'
    '"metadata":{{"user_id":"user-{user_id}","session_id":"sess-{session}","feature":"{feature}",'
    '"endpoint":"{endpoint}","prompt_version":"v{prompt_version}","environment":"production",'
    '"app":"helpdesk","ab_bucket":"{bucket}"}}}}\n'
)
_RETRIEVAL = (
    '{{"trace_id":"{trace}","span_id":"{span}","parent_span_id":null,"name":"vector_search",'
    '"start_time":"{start}Z","end_time":"{end}Z","status":"ok",'
    '"documents":[{documents}],'
    '"metadata":{{"user_id":"user-{user_id}","session_id":"sess-{session}","feature":"{feature}",'
    '"endpoint":"{endpoint}","prompt_version":"v{prompt_version}","environment":"production",'
    '"app":"helpdesk","index":"kb-{index}"}}}}\n'
)


def _sentence(rng: np.random.Generator, words: int) -> str:
    picked = rng.choice(_WORDS, size=words)
    return (" ".join(picked)).capitalize() + "."


def _paragraph(rng: np.random.Generator, chars: int) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(_sentence(rng, int(rng.integers(6, 16))))
    return " ".join(parts)


def _pool(rng: np.random.Generator, size: int, low: int, high: int) -> list[str]:
    """JSON-encoded strings (quotes included) of `low`..`high` characters, one json.dumps per pool entry."""
    return [json.dumps(_paragraph(rng, int(rng.integers(low, high)))) for _ in range(size)]


def write_native_spans(path: Path, spans: int, hour: datetime, seed: int = 7, block: int = 20_000,
                       unique_text: bool = False) -> int:
    """Write `spans` synthetic native spans starting inside `hour` to `path`; return the bytes written.

    The user messages and responses come from pools of 128 texts each, so whole messages repeat across spans
    (as system prompts do in real traces, but more than real conversations would); `unique_text` appends
    the span number to both, so that no two spans share a message or a response.
    """
    rng = np.random.default_rng(seed)
    systems = _pool(rng, 16, 500, 800)
    users = _pool(rng, 128, 150, 350)
    responses = _pool(rng, 128, 300, 600)
    doc_texts = _pool(rng, 256, 120, 240)
    hour_ms = np.datetime64(hour.astimezone(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0), "ms")
    written = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for first in range(0, spans, block):
            count = min(block, spans - first)
            written += out.write(_block(rng, first, count, hour_ms, systems, users, responses, doc_texts,
                                        unique_text))
    return written


def _unique(encoded: str, number: int) -> str:
    """A JSON-encoded string pool entry with the span number appended inside the quotes."""
    return f"{encoded[:-1]} (#{number})\""


def _block(rng: np.random.Generator, first: int, count: int, hour_ms: np.datetime64, systems: list[str],
           users: list[str], responses: list[str], doc_texts: list[str], unique_text: bool = False) -> str:
    """One block of lines; per-span numbers are drawn as arrays, then each line is one template fill."""
    index = np.arange(first, first + count)
    offsets = rng.integers(0, 3_590_000, size=count)
    latency = np.clip(rng.lognormal(7.0, 0.6, size=count), 30, 60_000).astype(np.int64)
    starts = np.datetime_as_string(hour_ms + offsets.astype("timedelta64[ms]"), unit="ms")
    ends = np.datetime_as_string(hour_ms + (offsets + latency).astype("timedelta64[ms]"), unit="ms")
    prompt = rng.integers(300, 1800, size=count)
    completion = rng.integers(40, 400, size=count)
    ttft = (latency * rng.uniform(0.1, 0.4, size=count)).round(1)
    cost = ((prompt * 0.15 + completion * 0.6) / 1e6).round(8)
    picks = rng.integers(0, 1 << 30, size=(count, 8))
    lines: list[str] = []
    for j in range(count):
        i = int(index[j])
        p = picks[j]
        common = {
            "span": f"{i:016x}", "start": starts[j], "end": ends[j], "user_id": int(p[0] % 5000),
            "session": int(p[1] % 20000), "feature": _FEATURES[p[2] % 6], "endpoint": _ENDPOINTS[p[2] % 6],
            "prompt_version": 1 + int(p[3] % 4),
        }
        slot = i % RAG_EVERY
        if slot == RAG_EVERY - 2:
            docs = ",".join(
                f'{{"id":"doc-{(p[4] + k) % 90000}","score":{0.95 - 0.07 * k:.2f},'
                f'"text":{doc_texts[(p[5] + k) % len(doc_texts)]}}}'
                for k in range(3)
            )
            lines.append(_RETRIEVAL.format(trace=f"{i // RAG_EVERY:032x}", documents=docs,
                                           index=int(p[6] % 8), **common))
            continue
        provider, model, response_model = _MODELS[p[4] % 4]
        failed = i % ERROR_EVERY == 3
        lines.append(_CHAT.format(
            trace=f"{i // RAG_EVERY:032x}", parent="null" if slot != RAG_EVERY - 1 else f'"{i - 1:016x}"',
            provider=provider, model=model, response_model=response_model,
            status="error" if failed else "ok",
            error=f',"error":"{_ERRORS[p[5] % 4]}"' if failed else "",
            system=systems[p[5] % len(systems)],
            user=_unique(users[p[6] % len(users)], i) if unique_text else users[p[6] % len(users)],
            response=_unique(responses[p[7] % len(responses)], i) if unique_text else responses[p[7] % len(responses)],
            prompt_tokens=int(prompt[j]), completion_tokens=int(completion[j]),
            total_tokens=int(prompt[j] + completion[j]), cost=repr(float(cost[j])), ttft=repr(float(ttft[j])),
            temperature=(0.0, 0.2, 0.7, 1.0)[p[3] % 4], bucket="AB"[p[0] % 2], **common,
        ))
    return "".join(lines)
