"""Grounding: how well each sentence of an answer is supported by the retrieved context, without an LLM.

The answer (less citation markers, URLs and "Confidence: ..." lines) is split into sentences; a sentence
with no content word and no number makes no claim and is skipped. Each claim gets four pieces of evidence:

- coverage: the share of its content words (stopwords and numbers aside) found in the context, exactly, by
  a light stem ("healing" ~ "heal") or as a spelling variant (rapidfuzz ratio >= `fuzzy_token_cutoff`,
  "Dogg" ~ "Dog"). Words of the input messages count as found: repeating the question is not inventing.
- alignment: rapidfuzz `partial_ratio` of the sentence against the whole context, i.e. how closely the
  sentence appears verbatim somewhere in it. Length-sensitive: a two-word answer aligns more easily than a
  paraphrased sentence (the `--no-length` benchmark sets its weight to 0).
- entities: the share of name-like tokens (capitalised words, acronyms) found in the context or messages.
- numbers: the share of numbers ('2,466', '3.5', 'three') found in the context or messages.

sentence score = (w_c * coverage + w_a * alignment) / (w_c + w_a)
                 * (1 - entity_penalty * unsupported entity share)    (when it names anything)
                 * (1 - number_penalty * unsupported number share)    (when it states numbers)
The response score aggregates the sentence scores ('mean' weighted by content words and numbers, or
'min'). Sentences below `unsupported_below` are listed as unsupported.

Limits, by design: lexical evidence cannot see negation, swapped relations or wrong reasoning over the
right words ("X was founded before Y" when the context says the opposite); that is what the LLM
consistency and fact-check detectors are for. No context (no documents, or documents without text) gives
no score (None), never 0. Pure functions; `check_grounding` never raises on bad data (unreadable documents
become a note).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rapidfuzz import fuzz, process

from aiobs_pipeline.hallucination.citations import remove_citations
from aiobs_pipeline.hallucination.confidence import remove_confidence_statements
from aiobs_pipeline.hallucination.settings import GroundingSettings
from aiobs_pipeline.hallucination.text import (
    STOPWORDS,
    DocumentsError,
    as_text,
    column_values,
    document_text,
    entity_tokens,
    key_frame,
    message_texts,
    normalise,
    numbers,
    parse_documents,
    split_sentences,
    stem,
    to_json,
    unglue,
    words,
)

_RUNS_OF_SPACES = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([.,;:!?])")


@dataclass
class GroundingContext:
    """The retrieved context prepared once for scoring any number of answers against it."""

    text: str
    vocabulary: frozenset[str]
    stems: frozenset[str]
    numbers: frozenset[str]
    said_vocabulary: frozenset[str] = frozenset()
    said_stems: frozenset[str] = frozenset()
    said_numbers: frozenset[str] = frozenset()
    fuzzy_choices: tuple[str, ...] = ()
    _fuzzy_cache: dict[str, bool] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SentenceSupport:
    """The evidence for one answer sentence."""

    text: str
    score: float
    coverage: float
    alignment: float
    unsupported_words: tuple[str, ...] = ()
    unsupported_entities: tuple[str, ...] = ()
    unsupported_numbers: tuple[str, ...] = ()
    entities: int = 0
    numbers: int = 0
    weight: int = 1


@dataclass(frozen=True)
class GroundingResult:
    """Grounding of one response: score 0-1 (None without context or claims), per-sentence evidence."""

    score: float | None
    sentences: tuple[SentenceSupport, ...] = ()
    unsupported: tuple[str, ...] = ()
    note: str | None = None


def _vocabulary(text: str) -> tuple[set[str], set[str]]:
    glued = f"{text} {unglue(text)}"
    vocab = {w.lower().replace("’", "'") for w in words(glued)}
    # Hyphenated and possessive forms also count by their parts ("Oxlade-Chamberlain", "Ward's").
    vocab |= {part for w in list(vocab) for part in w.replace("'", "-").split("-") if part}
    return vocab, {stem(w) for w in vocab}


def build_context(documents: Any, input_messages: Any = None) -> GroundingContext | None:
    """The grounding context of a span: its documents' text, plus what its input messages already said.

    None when there is no document text to ground on. Raises DocumentsError for unreadable documents.
    """
    parsed = parse_documents(documents)
    texts = [normalise(document_text(doc)) for doc in parsed or []]
    texts = [t for t in texts if t]
    if not texts:
        return None
    text = " | ".join(texts)
    vocab, stems = _vocabulary(text)
    said = " ".join(normalise(t) for t in message_texts(input_messages))
    said_vocab, said_stems = _vocabulary(said) if said else (set(), set())
    return GroundingContext(
        text=text.lower(),
        vocabulary=frozenset(vocab),
        stems=frozenset(stems),
        numbers=frozenset(numbers(text, lenient=True)),
        said_vocabulary=frozenset(said_vocab),
        said_stems=frozenset(said_stems),
        said_numbers=frozenset(numbers(said, lenient=True)) if said else frozenset(),
        fuzzy_choices=tuple(sorted(w for w in vocab | said_vocab if len(w) >= 3 and not w.isdigit())),
    )


def _known(word: str, context: GroundingContext, settings: GroundingSettings) -> bool:
    lower = word.lower().replace("’", "'")
    stemmed = stem(lower)
    if lower in context.vocabulary or stemmed in context.stems:
        return True
    if lower in context.said_vocabulary or stemmed in context.said_stems:
        return True
    if len(lower) < settings.fuzzy_min_length or not context.fuzzy_choices:
        return False
    cached = context._fuzzy_cache.get(lower)
    if cached is None:
        match = process.extractOne(lower, context.fuzzy_choices, scorer=fuzz.ratio,
                                   score_cutoff=settings.fuzzy_token_cutoff)
        cached = context._fuzzy_cache[lower] = match is not None
    return cached


def score_sentence(sentence: str, context: GroundingContext, settings: GroundingSettings) -> SentenceSupport | None:
    """Evidence and score for one sentence; None when it makes no checkable claim."""
    tokens = [w for w in words(sentence) if w.lower().replace("’", "'") not in STOPWORDS]
    content = [w for w in tokens if not any(ch.isdigit() for ch in w)]
    stated_numbers = sorted(numbers(sentence))
    if not content and not stated_numbers:
        return None
    missing_words = tuple(w for w in content if not _known(w, context, settings))
    coverage = 1 - len(missing_words) / len(content) if content else 1.0
    claim = normalise(sentence).lower()
    if len(claim) <= len(context.text):
        alignment = fuzz.partial_ratio(claim, context.text) / 100
    else:
        alignment = fuzz.ratio(claim, context.text) / 100
    entities = entity_tokens(sentence)
    missing_entities = tuple(e for e in entities if not _known(e, context, settings))
    missing_numbers = tuple(n for n in stated_numbers if n not in context.numbers and n not in context.said_numbers)

    weights = settings.coverage_weight + settings.alignment_weight
    score = (settings.coverage_weight * coverage + settings.alignment_weight * alignment) / weights
    if entities:
        score *= 1 - settings.entity_penalty * len(missing_entities) / len(entities)
    if stated_numbers:
        score *= 1 - settings.number_penalty * len(missing_numbers) / len(stated_numbers)
    return SentenceSupport(
        text=sentence.strip(),
        score=round(score, 4),
        coverage=round(coverage, 4),
        alignment=round(alignment, 4),
        unsupported_words=missing_words,
        unsupported_entities=missing_entities,
        unsupported_numbers=tuple(missing_numbers),
        entities=len(entities),
        numbers=len(stated_numbers),
        weight=len(content) + len(stated_numbers),
    )


def claim_sentences(output_text: str | None) -> list[str]:
    """The answer's sentences with citation markers and confidence statements removed."""
    text = remove_confidence_statements(remove_citations(as_text(output_text)))
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _RUNS_OF_SPACES.sub(" ", text))
    return split_sentences(text)


def score_grounding(output_text: str | None, context: GroundingContext | None,
                    settings: GroundingSettings | None = None) -> GroundingResult:
    """Grounding of one answer against a prepared context (see build_context)."""
    settings = settings or GroundingSettings()
    if context is None:
        return GroundingResult(None, note="no retrieved context")
    if not as_text(output_text).strip():
        return GroundingResult(None, note="empty response")
    supports = [s for s in (score_sentence(t, context, settings) for t in claim_sentences(output_text)) if s]
    if not supports:
        return GroundingResult(None, note="no checkable claim")
    if settings.aggregate == "min":
        score = min(s.score for s in supports)
    else:
        score = sum(s.score * s.weight for s in supports) / sum(s.weight for s in supports)
    unsupported = tuple(s.text for s in supports if s.score < settings.unsupported_below)
    return GroundingResult(round(score, 4), tuple(supports), unsupported)


def check_grounding(output_text: str | None, documents: Any, input_messages: Any = None,
                    settings: GroundingSettings | None = None) -> GroundingResult:
    """Grounding of one span: its output text against its documents, given its input messages."""
    settings = settings or GroundingSettings()
    try:
        context = build_context(documents, input_messages if settings.messages_count_as_said else None)
    except DocumentsError as exc:
        return GroundingResult(None, note=f"documents unreadable: {exc}")
    return score_grounding(output_text, context, settings)


GROUNDING_COLUMNS: dict[str, str] = {
    "grounding_score": "Support of the response in its retrieved context, 0-1; null without context or claims.",
    "sentences_checked": "Answer sentences that made a checkable claim.",
    "unsupported_sentences": "JSON list of the sentences scoring below `unsupported_below`.",
    "grounding_evidence": "JSON list per sentence: text, score, coverage, alignment, unsupported words, "
                          "entities and numbers.",
    "grounding_note": "Why there is no score ('no retrieved context', 'empty response', ...).",
}


def _evidence(result: GroundingResult) -> str:
    return to_json([{"text": s.text, "score": s.score, "coverage": s.coverage, "alignment": s.alignment,
                     "unsupported_words": list(s.unsupported_words),
                     "unsupported_entities": list(s.unsupported_entities),
                     "unsupported_numbers": list(s.unsupported_numbers)} for s in result.sentences])


def grounding_checks(spans: pd.DataFrame, settings: GroundingSettings | None = None) -> pd.DataFrame:
    """One row per span: key columns plus GROUNDING_COLUMNS, from output_text, documents, input_messages."""
    settings = settings or GroundingSettings()
    results = [check_grounding(text, docs, messages, settings) for text, docs, messages in zip(
        column_values(spans, "output_text"), column_values(spans, "documents"),
        column_values(spans, "input_messages"), strict=True)]
    out = key_frame(spans)
    out["grounding_score"] = pd.Series([r.score for r in results], dtype="float64")
    out["sentences_checked"] = pd.Series([len(r.sentences) for r in results], dtype="int64")
    out["unsupported_sentences"] = [to_json(list(r.unsupported)) for r in results]
    out["grounding_evidence"] = [_evidence(r) for r in results]
    out["grounding_note"] = [r.note for r in results]
    return out


def with_trace_documents(spans: pd.DataFrame, kinds: tuple[str, ...] = ("rerank", "retrieval")) -> pd.DataFrame:
    """LLM spans without documents get those of the latest retrieval/rerank span of the same trace that
    ended by the time the LLM span started (RAG pipelines record documents on the retriever, not the model).

    Returns a copy of the LLM spans with `documents` filled where found and `documents_span_id` naming the
    span they came from (null when the LLM span had its own documents or none was found).
    """
    llm = spans[spans["kind"] == "llm"].copy().reset_index(drop=True)
    llm["documents_span_id"] = None
    if llm.empty:
        return llm
    needs = llm["documents"].isna() & llm["start_time"].notna()
    sources = spans[spans["kind"].isin(kinds) & spans["documents"].notna() & spans["end_time"].notna()]
    if not needs.any() or sources.empty:
        return llm
    left = llm.loc[needs, ["trace_id", "start_time"]].reset_index().sort_values("start_time")
    right = (sources[["trace_id", "end_time", "span_id", "documents"]]
             .rename(columns={"span_id": "documents_span_id", "documents": "found_documents"})
             .sort_values("end_time"))
    matched = pd.merge_asof(left, right, left_on="start_time", right_on="end_time", by="trace_id",
                            direction="backward").set_index("index")
    found = matched["found_documents"].notna()
    llm.loc[matched.index[found], "documents"] = matched.loc[found, "found_documents"]
    llm.loc[matched.index[found], "documents_span_id"] = matched.loc[found, "documents_span_id"]
    return llm
