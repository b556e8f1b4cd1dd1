"""Self-consistency (SelfCheckGPT-style): re-ask a response's messages and measure how much the samples agree.

A model that knows a fact repeats it when asked again; one that makes it up tends to make up something else
each time. For each selected response the same input messages are sent again `samples` times (one request
with `n` choices, or one request per seed), and every sentence of the original answer is compared with every
sample:

- lexical: rapidfuzz `partial_ratio` of the sentence against the sample (the best-aligning window of the
  sample, i.e. the maximum partial similarity), blended with the share of the sentence's *facts* (numbers and
  name-like tokens) that the sample repeats: `(1 - fact_weight) * partial + fact_weight * facts`. Wording
  that merely follows the same template cannot hide different names and numbers;
- embedding (when the endpoint offers embeddings): the cosine of the sentence's vector and the most similar
  sample sentence's vector, clamped to 0-1, blended in with `embedding_weight`.

sentence score = mean over samples of its similarity to that sample; response score = mean of its sentence
scores (0-1, higher = more consistent = safer). Which responses are checked: LLM spans with an output text,
the riskiest first (an optional priority column such as a precomputed trust score, lowest first), an
optional deterministic sample share, and a per-hour budget of calls. Every selected response gets a row with
a status (`scored`, `failed` with the reason, `skipped_budget`, `skipped_no_messages`,
`skipped_no_sentences`, `skipped_sample`); a failed call never becomes a score.

The helpers for choosing and budgeting responses (`SelectionSettings`, `plan_order`, `LLMCheckOutput`) are
shared with the fact checker (factcheck.py). No Dagster imports here (DESIGN.md, layers).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rapidfuzz import fuzz

from aiobs_pipeline.hallucination.text import (
    as_text,
    content_words,
    entity_tokens,
    normalise,
    numbers,
    split_sentences,
    to_json,
    words,
)
from aiobs_pipeline.llm import LLMClient, LLMResult

PROMPT_NAME = "aiobs.consistency.resample"
PROMPT_VERSION = "1"
CHAT_ROLES = ("system", "developer", "user", "assistant")
# Embedding failures that mean the endpoint has no embeddings at all (404, 400 for an unknown model, no auth):
# stop asking for the rest of the run instead of paying one failed call per response.
EMBEDDING_UNAVAILABLE_REASONS = frozenset({"client_error", "auth_error"})

STATUSES: dict[str, str] = {
    "scored": "the check ran and produced a score",
    "failed": "the LLM calls failed (or returned nothing usable): no score; `reason` says why",
    "skipped_budget": "not checked: the hour's call budget was spent on riskier responses",
    "skipped_no_messages": "not checked: the span has no input messages that can be sent again",
    "skipped_no_sentences": "not checked: the answer has no sentence with a content word or number",
    "skipped_no_claims": "fact check only: the answer makes no checkable factual claim",
    "not_covered": "fact check only: no claim is covered by the trusted corpus, so no score",
    "skipped_sample": "not checked: outside the configured sample share",
}


class SelectionSettings(BaseModel):
    """Which responses an LLM-backed check looks at, in what order, within what budget."""

    model_config = ConfigDict(extra="forbid")

    max_calls_per_hour: int = Field(
        default=200, ge=0,
        description="LLM requests (chat and embedding, retries not counted) allowed per export hour; responses "
                    "past the budget are `skipped_budget`.")
    sample_rate: float = Field(
        default=1.0, ge=0, le=1,
        description="Share of candidate responses considered at all, chosen deterministically by span id "
                    "(the rest are `skipped_sample`).")
    priority_column: str | None = Field(
        default="trust_score",
        description="Column of the spans frame ordering responses within an hour (e.g. a precomputed trust "
                    "score); absent or null values come last. None = chronological order.")
    priority_ascending: bool = Field(
        default=True, description="Check the lowest priority values first (lower trust = riskier = first).")
    kinds: list[str] = Field(default_factory=lambda: ["llm"], description="Span kinds that are responses.")
    model: str | None = Field(default=None, description="Chat model for the check; None = llm.model.")

    @field_validator("kinds")
    @classmethod
    def _kinds_present(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("kinds must name at least one span kind, e.g. ['llm']")
        return value


class ConsistencySettings(SelectionSettings):
    """How responses are re-sampled and how agreement is scored (the `[hallucination.consistency]` section)."""

    samples: int = Field(default=3, ge=1, le=20, description="Samples drawn per response.")
    sampling: Literal["n", "seeds"] = Field(
        default="n",
        description="'n': one request asking for `samples` choices (prompt tokens paid once); 'seeds': one "
                    "request per sample with seeds seed, seed+1, ... (for endpoints without n > 1).")
    min_samples: int = Field(default=2, ge=1, le=20,
                             description="Fewest usable samples a score needs; fewer = `failed`.")
    temperature: float = Field(default=1.0, gt=0, le=2,
                               description="Sampling temperature (> 0, or every sample is the greedy one).")
    seed: int = Field(default=0, description="Request seed (the first seed in 'seeds' mode).")
    max_output_tokens: int | None = Field(default=512, ge=1, description="max_tokens of each sample.")
    use_embeddings: Literal["auto", "never"] = Field(
        default="auto",
        description="'auto': one embedding request per response when the endpoint offers embeddings (a "
                    "4xx turns them off for the run); 'never': rapidfuzz only.")
    embedding_weight: float = Field(default=0.5, ge=0, le=1,
                                    description="Weight of the embedding cosine against the lexical similarity.")
    fact_weight: float = Field(
        default=0.6, ge=0, le=1,
        description="Weight, within the lexical similarity, of the share of a sentence's numbers and names "
                    "that the sample repeats (sentences without any use partial_ratio alone).")
    evidence_sample_chars: int = Field(default=2000, ge=0,
                                       description="Characters of each sample kept in the evidence JSON.")

    @model_validator(mode="after")
    def _min_samples_reachable(self) -> ConsistencySettings:
        if self.min_samples > self.samples:
            raise ValueError(f"hallucination.consistency.min_samples ({self.min_samples}) must not exceed "
                             f"samples ({self.samples})")
        return self


class LLMCheckOutput(NamedTuple):
    """A check's result: one row per selected response, and every LLM call it made (to record as spans)."""

    frame: pd.DataFrame
    results: list[LLMResult]


# ---------------------------------------------------------------------------------------------------------
# Selection shared with the fact checker


REQUIRED_COLUMNS = ("span_id", "output_text")


def _values(spans: pd.DataFrame, column: str) -> list[Any]:
    if column not in spans.columns:
        return [None] * len(spans)
    return [None if _missing(v) else v for v in spans[column].tolist()]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, list | dict | tuple) else False
    except (TypeError, ValueError):
        return False


def in_sample(span_id: str, rate: float) -> bool:
    """Whether a span falls in the sample share `rate` (stable across runs and processes: a hash of its id)."""
    if rate >= 1:
        return True
    digest = hashlib.blake2b(str(span_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


@dataclass
class Candidate:
    """One response a check may look at: its position in the spans frame and the fields checks read."""

    position: int
    export_hour: Any
    trace_id: Any
    span_id: str
    output_text: str
    input_messages: Any
    priority: float | None


def plan_order(spans: pd.DataFrame, settings: SelectionSettings) -> list[list[Candidate]]:
    """Candidate responses grouped by export hour, each group in check order (riskiest first).

    A candidate is a span of one of `settings.kinds`, not in error, with a non-empty output text. Within an
    hour: by the priority column (nulls last), then start time, then span id, so a re-run picks the same ones.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in spans.columns]
    if missing:
        raise ValueError(f"the spans frame lacks the column(s) {', '.join(missing)} (see schema.SPAN_COLUMNS)")
    kinds, statuses = _values(spans, "kind"), _values(spans, "status")
    texts, hours = _values(spans, "output_text"), _values(spans, "export_hour")
    starts = _values(spans, "start_time")
    column = settings.priority_column
    raw_priority = _values(spans, column) if column else [None] * len(spans)
    priorities = pd.to_numeric(pd.Series(raw_priority, dtype="object"), errors="coerce").tolist()
    trace_ids, span_ids, messages = _values(spans, "trace_id"), _values(spans, "span_id"), \
        _values(spans, "input_messages")
    groups: dict[Any, list[tuple[tuple[Any, ...], Candidate]]] = {}
    for i in range(len(spans)):
        if kinds[i] is not None and kinds[i] not in settings.kinds:
            continue
        if statuses[i] == "error" or not as_text(texts[i]).strip() or span_ids[i] is None:
            continue
        priority = None if priorities[i] is None or math.isnan(priorities[i]) else float(priorities[i])
        key_priority = (1, 0.0) if priority is None else (0, priority if settings.priority_ascending else -priority)
        start = starts[i]
        start_key = (1, "") if start is None else (0, pd.Timestamp(start).isoformat())
        candidate = Candidate(i, hours[i], trace_ids[i], str(span_ids[i]), as_text(texts[i]), messages[i], priority)
        groups.setdefault(hours[i], []).append(((*key_priority, *start_key, str(span_ids[i])), candidate))
    return [[c for _, c in sorted(group, key=lambda item: item[0])] for group in groups.values()]


class Budget:
    """Calls left for one export hour; a response either fits whole or is skipped."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, calls: int) -> bool:
        """Reserve `calls` if they fit (True), else reserve nothing (False)."""
        if calls > self.left:
            return False
        self.left -= calls
        return True


def usage_totals(results: Iterable[LLMResult]) -> dict[str, int]:
    """calls, cache_hits, input_tokens, output_tokens of a response's calls (tokens of successful calls)."""
    results = list(results)
    ok = [r for r in results if r.ok]
    return {
        "calls": len(results),
        "cache_hits": sum(1 for r in results if r.cache_hit),
        "input_tokens": sum(r.usage.prompt_tokens or 0 for r in ok),
        "output_tokens": sum(r.usage.completion_tokens or 0 for r in ok),
    }


def llm_span_ids(results: Iterable[LLMResult]) -> str:
    """JSON list of the span ids `spans_from_results` gives these calls (links a row to its recorded calls)."""
    return to_json([r.call_id[:16] for r in results])


def result_frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """Rows as a frame with exactly `columns`, in order; score and priority float (null = NaN), counts int."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for name in ("score", "priority"):
        if name in frame.columns:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in ("calls", "cache_hits", "input_tokens", "output_tokens", "samples_requested", "samples_used",
                 "claims_total", "claims_checked", "supported", "refuted", "not_covered", "claims_failed"):
        if name in frame.columns:
            frame[name] = frame[name].fillna(0).astype("int64")
    return frame


def chat_messages(input_messages: Any) -> tuple[list[dict[str, str]] | None, str | None]:
    """The span's input messages as plain chat messages to send again, or (None, why not).

    Keeps system, developer, user and assistant turns with text content (content parts joined); tool turns
    and tool calls are left out because they cannot be replayed without the tools. Needs a user turn.
    """
    value = input_messages
    if value is None:
        return None, "the span has no input_messages"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            return None, f"input_messages is not valid JSON ({error})"
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list):
        return None, f"input_messages is a JSON {type(value).__name__}, not a list of messages"
    out: list[dict[str, str]] = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            continue
        text = _content_text(message.get("content"))
        if text.strip():
            out.append({"role": str(message["role"]), "content": text})
    if not any(m["role"] == "user" for m in out):
        return None, "input_messages has no user message with text"
    return out, None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, str | dict)]
        return "\n".join(p for p in parts if isinstance(p, str) and p.strip())
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


# ---------------------------------------------------------------------------------------------------------
# Scoring (pure)


@dataclass(frozen=True)
class SentenceConsistency:
    """One answer sentence against the samples: its score and the similarity to each sample."""

    text: str
    score: float
    per_sample: tuple[float, ...]
    lexical: tuple[float, ...]
    embedding: tuple[float, ...] | None


@dataclass(frozen=True)
class ConsistencyScore:
    """A response's agreement with its samples (score None when there is nothing to compare)."""

    score: float | None
    sentences: tuple[SentenceConsistency, ...] = field(default_factory=tuple)
    note: str | None = None


def answer_sentences(text: str | None) -> list[str]:
    """The sentences of an answer that say something (a content word or a number)."""
    return [s for s in split_sentences(as_text(text)) if content_words(s) or numbers(s)]


def _facts(sentence: str) -> set[str]:
    return numbers(sentence) | {t.lower() for t in entity_tokens(sentence)}


def _sample_vocabulary(sample: str) -> set[str]:
    return {w.lower() for w in words(sample)} | numbers(sample, lenient=True)


def lexical_similarity(sentence: str, sample: str, fact_weight: float = 0.6) -> float:
    """0-1 similarity of one answer sentence to one sample: partial_ratio blended with fact agreement."""
    left, right = normalise(sentence).lower(), normalise(sample).lower()
    if not left or not right:
        return 0.0
    partial = fuzz.partial_ratio(left, right) / 100
    facts = _facts(sentence)
    if not facts or fact_weight <= 0:
        return partial
    agreement = len(facts & _sample_vocabulary(sample)) / len(facts)
    return (1 - fact_weight) * partial + fact_weight * agreement


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return max(0.0, min(1.0, dot / norm)) if norm else 0.0


def score_samples(answer: str, samples: Sequence[str], settings: ConsistencySettings | None = None,
                  vectors: dict[str, Sequence[float]] | None = None) -> ConsistencyScore:
    """Consistency of an answer with its samples; `vectors` maps texts (sentences) to embeddings, if any."""
    settings = settings or ConsistencySettings()
    sentences = answer_sentences(answer)
    usable = [s for s in samples if as_text(s).strip()]
    if not sentences:
        return ConsistencyScore(None, note="the answer has no sentence with a content word or number")
    if not usable:
        return ConsistencyScore(None, note="no usable sample")
    sample_sentences = [split_sentences(s) or [s] for s in usable]
    scored: list[SentenceConsistency] = []
    for sentence in sentences:
        lexical = tuple(lexical_similarity(sentence, s, settings.fact_weight) for s in usable)
        embedding: tuple[float, ...] | None = None
        if vectors is not None and sentence in vectors:
            embedding = tuple(max((_cosine(vectors[sentence], vectors[p]) for p in parts if p in vectors),
                                  default=0.0) for parts in sample_sentences)
        if embedding is None:
            combined = lexical
        else:
            w = settings.embedding_weight
            combined = tuple((1 - w) * x + w * y for x, y in zip(lexical, embedding, strict=True))
        scored.append(SentenceConsistency(sentence, round(sum(combined) / len(combined), 4),
                                          tuple(round(x, 4) for x in combined), tuple(round(x, 4) for x in lexical),
                                          None if embedding is None else tuple(round(x, 4) for x in embedding)))
    score = round(sum(s.score for s in scored) / len(scored), 4)
    return ConsistencyScore(score, tuple(scored))


def embedding_inputs(answer: str, samples: Sequence[str]) -> list[str]:
    """The distinct texts one embedding request needs: the answer's sentences and every sample's sentences."""
    texts = list(answer_sentences(answer))
    for sample in samples:
        if as_text(sample).strip():
            texts.extend(split_sentences(sample) or [sample])
    return list(dict.fromkeys(t for t in texts if t.strip()))


# ---------------------------------------------------------------------------------------------------------
# The check over a spans frame


CONSISTENCY_COLUMNS: dict[str, str] = {
    "export_hour": "Export hour of the checked span.",
    "trace_id": "Trace of the checked span.",
    "span_id": "The checked span (an LLM response).",
    "status": "scored, failed, skipped_budget, skipped_no_messages, skipped_no_sentences or skipped_sample.",
    "reason": "Why the response is not scored (failure or skip detail); null when scored.",
    "score": "Consistency 0-1 (mean sentence agreement with the samples, higher = safer); null unless scored.",
    "samples_requested": "Samples asked for.",
    "samples_used": "Samples that came back with text.",
    "evidence": "JSON: per-sentence scores (per sample, lexical, embedding), the samples, the method.",
    "calls": "LLM requests made for this response (chat and embedding; cache hits included).",
    "cache_hits": "Of those, answered from the response cache (not paid again).",
    "input_tokens": "Prompt tokens of the successful calls.",
    "output_tokens": "Completion tokens of the successful calls.",
    "llm_span_ids": "JSON list of the span ids of those calls in spans_from_results.",
    "priority": "The priority value the response was ordered by (null when absent).",
}


@dataclass
class _Job:
    candidate: Candidate
    messages: list[dict[str, str]]
    chat: list[LLMResult] = field(default_factory=list)
    embedding: LLMResult | None = None
    embedding_note: str | None = None


def _calls_per_response(settings: ConsistencySettings) -> int:
    chat = 1 if settings.sampling == "n" else settings.samples
    return chat + (1 if settings.use_embeddings == "auto" else 0)


def _chat_requests(job: _Job, settings: ConsistencySettings) -> list[dict[str, Any]]:
    c = job.candidate
    tags = {"check": "consistency", "span_id": c.span_id, "trace_id": c.trace_id,
            "export_hour": None if c.export_hour is None else pd.Timestamp(c.export_hour).isoformat()}
    base: dict[str, Any] = {"messages": job.messages, "model": settings.model, "temperature": settings.temperature,
                            "max_tokens": settings.max_output_tokens, "prompt_name": PROMPT_NAME,
                            "prompt_version": PROMPT_VERSION}
    if settings.sampling == "n":
        return [{**base, "n": settings.samples, "seed": settings.seed, "metadata": tags}]
    return [{**base, "seed": settings.seed + j, "metadata": {**tags, "sample": j}} for j in range(settings.samples)]


def _samples(job: _Job) -> list[str]:
    return [t for r in job.chat if r.ok for t in r.texts if t.strip()]


def _embed_all(client: LLMClient, jobs: list[_Job], settings: ConsistencySettings) -> None:
    """One embedding request per job; the first alone, so an endpoint without embeddings costs one call."""
    pending = [j for j in jobs if len(_samples(j)) >= settings.min_samples]
    if settings.use_embeddings == "never" or not pending:
        return

    def embed(job: _Job) -> None:
        texts = embedding_inputs(job.candidate.output_text, _samples(job))
        if not texts:
            return
        job.embedding = client.embed(texts, metadata={"check": "consistency", "span_id": job.candidate.span_id})

    embed(pending[0])
    first = pending[0].embedding
    if first is not None and not first.ok and first.error is not None \
            and first.error.reason in EMBEDDING_UNAVAILABLE_REASONS:
        note = f"embeddings unavailable ({first.error.describe()}); rapidfuzz only"
        for job in pending[1:]:
            job.embedding_note = note
        pending[0].embedding_note = note
        return
    rest = pending[1:]
    if rest:
        with ThreadPoolExecutor(max_workers=min(client.settings.max_concurrency, len(rest))) as pool:
            list(pool.map(embed, rest))


def _vectors(job: _Job) -> dict[str, Sequence[float]] | None:
    result = job.embedding
    if result is None or not result.ok:
        if result is not None and result.error is not None and job.embedding_note is None:
            job.embedding_note = f"embedding call failed ({result.error.describe()}); rapidfuzz only"
        return None
    texts = result.request.get("input") or []
    if len(texts) != len(result.embeddings):
        job.embedding_note = (f"embedding response has {len(result.embeddings)} vectors for {len(texts)} texts; "
                              "rapidfuzz only")
        return None
    return dict(zip(texts, result.embeddings, strict=True))


def _failure_reason(job: _Job, settings: ConsistencySettings) -> str:
    failed = [r for r in job.chat if not r.ok]
    used = len(_samples(job))
    first = failed[0].error.describe() if failed and failed[0].error is not None else None
    if settings.sampling == "n" and failed:
        return f"the sampling call failed: {first}"
    detail = f"{used} of {settings.samples} samples usable (min_samples {settings.min_samples})"
    if failed:
        return f"{detail}; {len(failed)} of {len(job.chat)} calls failed, first: {first}"
    return f"{detail}: the model returned empty text"


def _row(candidate: Candidate, status: str, reason: str | None, settings: ConsistencySettings,
         results: Sequence[LLMResult] = (), **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"export_hour": candidate.export_hour, "trace_id": candidate.trace_id,
                           "span_id": candidate.span_id, "status": status, "reason": reason, "score": None,
                           "samples_requested": settings.samples, "samples_used": 0, "evidence": to_json({}),
                           "llm_span_ids": llm_span_ids(results), "priority": candidate.priority,
                           **usage_totals(results)}
    row.update(values)
    return row


def _scored_row(job: _Job, settings: ConsistencySettings) -> dict[str, Any]:
    results = [*job.chat, *([job.embedding] if job.embedding is not None else [])]
    samples = _samples(job)
    if len(samples) < settings.min_samples:
        evidence = {"method": settings.sampling, "errors": [r.error.describe() for r in job.chat
                                                            if r.error is not None]}
        return _row(job.candidate, "failed", _failure_reason(job, settings), settings, results,
                    samples_used=len(samples), evidence=to_json(evidence))
    vectors = _vectors(job)
    result = score_samples(job.candidate.output_text, samples, settings, vectors)
    cut = settings.evidence_sample_chars
    evidence = {
        "method": settings.sampling,
        "similarity": "rapidfuzz+embedding" if vectors is not None else "rapidfuzz",
        "embedding_note": job.embedding_note,
        "sentences": [{"text": s.text, "score": s.score, "per_sample": list(s.per_sample),
                       "lexical": list(s.lexical), "embedding": None if s.embedding is None else list(s.embedding)}
                      for s in result.sentences],
        "samples": [s[:cut] for s in samples],
    }
    if result.score is None:
        return _row(job.candidate, "failed", result.note, settings, results, samples_used=len(samples),
                    evidence=to_json(evidence))
    return _row(job.candidate, "scored", None, settings, results, score=result.score, samples_used=len(samples),
                evidence=to_json(evidence))


def check_consistency(spans: pd.DataFrame, client: LLMClient,
                      settings: ConsistencySettings | None = None) -> LLMCheckOutput:
    """Re-sample the selected responses of `spans` and score their agreement (see the module docstring).

    Returns one row per candidate response (CONSISTENCY_COLUMNS, in the spans frame's order) and every
    LLMResult of the calls made, for `llm.spans_from_results`. Never raises for failed calls.
    """
    settings = settings or ConsistencySettings()
    per_response = _calls_per_response(settings)
    rows: dict[int, dict[str, Any]] = {}
    jobs: list[_Job] = []
    for group in plan_order(spans, settings):
        budget = Budget(settings.max_calls_per_hour)
        for candidate in group:
            if not in_sample(candidate.span_id, settings.sample_rate):
                rows[candidate.position] = _row(candidate, "skipped_sample",
                                                f"outside sample_rate {settings.sample_rate}", settings)
                continue
            messages, why = chat_messages(candidate.input_messages)
            if messages is None:
                rows[candidate.position] = _row(candidate, "skipped_no_messages", why, settings)
                continue
            if not answer_sentences(candidate.output_text):
                rows[candidate.position] = _row(candidate, "skipped_no_sentences",
                                                "the answer has no sentence with a content word or number", settings)
                continue
            if not budget.take(per_response):
                rows[candidate.position] = _row(
                    candidate, "skipped_budget",
                    f"max_calls_per_hour {settings.max_calls_per_hour} reached ({per_response} calls per response)",
                    settings)
                continue
            jobs.append(_Job(candidate, messages))
    requests = [(job, request) for job in jobs for request in _chat_requests(job, settings)]
    for (job, _), result in zip(requests, client.chat_many(r for _, r in requests), strict=True):
        job.chat.append(result)
    _embed_all(client, jobs, settings)
    for job in jobs:
        rows[job.candidate.position] = _scored_row(job, settings)
    ordered = [rows[p] for p in sorted(rows)]
    results = [r for job in jobs for r in (*job.chat, *([job.embedding] if job.embedding is not None else []))]
    return LLMCheckOutput(result_frame(ordered, CONSISTENCY_COLUMNS), results)
