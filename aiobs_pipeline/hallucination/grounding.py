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
                 * (1 - penalty) for each relation conflict             (see below)
The response score aggregates the sentence scores ('mean' weighted by content words and numbers, or
'min'). Sentences below `unsupported_below` are listed as unsupported.

Relation checks, each a listed conflict with its own penalty (score *= 1 - penalty): a negation the context
never states near the same words (refusals and hedges exempt), a causal or concessive link ("due to",
"despite") the context never states near the same words, and an answer to "which came first/later, A or B?"
(the last user message) that the years the context gives for A and B contradict.

Limits, by design: lexical evidence cannot see most swapped relations or wrong reasoning over the right
words beyond these checks; that is what the LLM consistency and fact-check detectors are for. No context (no
documents, or documents without text) gives no score (None), never 0. Pure functions; `check_grounding`
never raises on bad data (unreadable documents become a note).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rapidfuzz import fuzz, process

from aiobs_pipeline.hallucination.citations import remove_citations
from aiobs_pipeline.hallucination.confidence import remove_confidence_statements
from aiobs_pipeline.hallucination.settings import GroundingSettings
from aiobs_pipeline.hallucination.text import (
    STATED_NUMBER_WORDS,
    STOPWORDS,
    DocumentsError,
    as_text,
    column_values,
    document_text,
    entity_tokens,
    key_frame,
    last_user_text,
    message_texts,
    normalise,
    numbers,
    parse_documents,
    same_root_name,
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
    question: str = ""
    said_text: str = ""
    _fuzzy_cache: dict[str, bool] = field(default_factory=dict, repr=False)
    _cue_cache: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def cue_stems(self, kind: str) -> frozenset[str]:
        """Stems of the words near the context's negation ('negation') or causal ('causal') cues.

        Computed on first use: most answers state no negation or causal link, so most contexts never pay.
        The question's own negations count too ("Which of them is not ...?" may be answered with 'not').
        """
        cached = self._cue_cache.get(kind)
        if cached is None:
            pattern = _CUE_PATTERNS[kind]
            stems = _cue_stems(pattern, self.text)
            if kind == "negation" and self.said_text:
                stems |= _cue_stems(pattern, self.said_text)
            cached = self._cue_cache[kind] = frozenset(stems)
        return cached


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
    conflicts: tuple[str, ...] = ()


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
    question = normalise(last_user_text(input_messages)) if input_messages is not None else ""
    return GroundingContext(
        text=text.lower(),
        vocabulary=frozenset(vocab),
        stems=frozenset(stems),
        numbers=frozenset(numbers(text, lenient=True)),
        said_vocabulary=frozenset(said_vocab),
        said_stems=frozenset(said_stems),
        said_numbers=frozenset(numbers(said, lenient=True)) if said else frozenset(),
        fuzzy_choices=tuple(sorted(w for w in vocab | said_vocab if len(w) >= 3 and not w.isdigit())),
        question=question,
        said_text=said.lower(),
    )

# Negation cues: an answer that denies something asserts a fact the context must state too.
_NEGATION = re.compile(r"\b(?:not|never|no longer|neither|nor|cannot|none|nobody|nothing)\b|n't\b", re.I)
# A negated sentence about the speaker or the sources ("I'm not sure", "the documents do not mention it")
# is a refusal or a hedge, not a claim about the world.
_META = frozenset("""i i'm i've i'd me my we we're our context document documents source sources information
passage text mention mentions mentioned provided specify specified state stated say says said available
sure know knows known clear certain unclear find found""".split())
# Causal and concessive links ("X, leading to Y", "despite Y"): a model that joins two supported facts with
# a relation the context never states has invented that relation.
_CAUSAL = re.compile(r"\b(?:because|due to|owing to|caused|causing|causes|leading to|led to|leads to|as a result|"
                     r"resulted in|resulting in|results in|thanks to|despite|in spite of|therefore|consequently|"
                     r"hence|so that|in order to|prompting|prompted|sparking|sparked|triggering|triggered)\b",
                     re.I)
_CUE_PATTERNS: dict[str, re.Pattern[str]] = {"negation": _NEGATION, "causal": _CAUSAL}
_CUE_WINDOW = 120


def _cue_stems(pattern: re.Pattern[str], text: str) -> set[str]:
    """Stems of the content words within _CUE_WINDOW characters of each match of a cue pattern in a text."""
    out: set[str] = set()
    for match in pattern.finditer(text):
        window = text[max(0, match.start() - _CUE_WINDOW): match.end() + _CUE_WINDOW]
        out |= {stem(w) for w in words(window) if w.lower() not in STOPWORDS}
    return out


def _cue_conflict(kind: str, sentence: str, context: GroundingContext) -> str | None:
    """The conflict of a sentence stating a `kind` cue that the context states near none of its words.

    Supported when the context has such a cue within _CUE_WINDOW characters of at least two of the claim's
    content words (one when the claim has only one).
    """
    cue = _CUE_PATTERNS[kind].search(sentence)
    if cue is None:
        return None
    cue_words = {stem(w) for w in words(cue.group(0))}
    content = {stem(w) for w in words(sentence) if w.lower() not in STOPWORDS} - cue_words
    if not content:
        return None
    if len(content & context.cue_stems(kind)) >= min(2, len(content)):
        return None
    return f"{kind} '{cue.group(0)}' not stated in the context"


def negation_conflict(sentence: str, context: GroundingContext) -> str | None:
    """Why a negated claim is unsupported: it denies something the context never denies; None otherwise.

    Refusals and hedges about the speaker or the sources ("I'm not sure", "the documents do not say") are
    exempt. The question's own negations count as stated ("Which of them is not ...?").
    """
    if _NEGATION.search(sentence) is None:
        return None
    if any(w.lower().replace("’", "'") in _META for w in words(sentence)):
        return None
    return _cue_conflict("negation", sentence, context)


def causal_conflict(sentence: str, context: GroundingContext) -> str | None:
    """Why a causal or concessive claim is unsupported: the context states no such link near the same words."""
    return _cue_conflict("causal", sentence, context)


# Temporal comparison questions ("Who was born first, A or B?"): the answer's pick is checked against the
# years the context gives for each option.
# A year stands alone, or starts a digit run glued to the next date when scraping lost the dash of a range
# ("26 September 188926 May 1976").
_YEAR = re.compile(r"(?<![\d.,])(1[0-9]{3}|20[0-9]{2})(?:(?![\d])|(?=[0-3]?\d [a-z]+ (?:1[0-9]|20)\d\d))")
_EARLY = frozenset("first earlier earliest older oldest before sooner elder eldest preceded".split())
_LATE = frozenset("later latest younger youngest newer newest recent recently after".split())
_DEATH = frozenset("died die dies death deaths".split())
# Small words inside names and titles ("First for Women", "Pirates of the Caribbean", "Ibn Rushd").
_CONNECTORS = frozenset("of the de van von da del der la le du di and & y bin ibn al el for in on at to from with a an"
                        .split())
_OPTION_WINDOW = 220


def _option_runs(question: str) -> tuple[list[str], list[str]] | None:
    """The two name-like options around the question's ' or ' ('Hinder or The Fatima Mansions')."""
    pieces = re.findall(r"[^\W_]+(?:['’.\-][^\W_]+)*\.?|[,;:?()\"]", question)
    lowered = [p.lower() for p in pieces]
    if lowered.count("or") != 1:
        return None
    at = lowered.index("or")

    def run(indices: range) -> list[str]:
        out: list[str] = []
        for i in indices:
            piece = pieces[i]
            if piece[:1].isupper() or piece[:1].isdigit():
                if lowered[i] in STOPWORDS and lowered[i] not in _CONNECTORS:
                    break
                out.append(piece)
            elif lowered[i] in _CONNECTORS:
                out.append(piece)
            else:
                break
        return out

    before = run(range(at - 1, -1, -1))[::-1]
    after = run(range(at + 1, len(pieces)))
    while before and before[0].lower() in _CONNECTORS:
        before.pop(0)
    while after and after[-1].lower() in _CONNECTORS:
        after.pop()
    if not before or not after:
        return None
    return before, after


def _distinctive(option: list[str], other: list[str], question: str) -> list[str]:
    """The option's words that can find it in a text: not the other option's, nor the question's category
    words ('magazine' in "Which magazine ..., Arthur's Magazine or ...?")."""
    rest = question.lower()
    for name in (" ".join(option), " ".join(other)):
        rest = rest.replace(name.lower(), " ")
    taken = {w.lower().rstrip(".") for w in other} | {w.lower() for w in words(rest)}
    return [w.lower().rstrip(".") for w in option
            if len(w.rstrip(".")) >= 3 and w.lower() not in STOPWORDS and w.lower().rstrip(".") not in taken]


def _first_mention(tokens: list[str], text: str, start: int = 0) -> int | None:
    found = [m.start() for t in tokens for m in [re.compile(rf"\b{re.escape(t)}\b").search(text, start)] if m]
    return min(found) if found else None


def _option_year(tokens: list[str], other: list[str], text: str, death: bool) -> int | None:
    start = _first_mention(tokens, text)
    if start is None:
        return None
    end = min(start + _OPTION_WINDOW, len(text))
    rival = _first_mention(other, text, start)
    if rival is not None:
        end = min(end, rival)
    years = [int(y) for y in _YEAR.findall(text[start:end])]
    if death:
        return years[1] if len(years) >= 2 else None
    return years[0] if years else None


def _without(text: str, names: list[str]) -> str:
    lowered = text.lower()
    for name in names:
        lowered = lowered.replace(name, " ")
    return lowered


def comparison_conflict(sentence: str, context: GroundingContext) -> str | None:
    """Why an answer to 'which came first/later, A or B?' contradicts the context's years; None otherwise.

    Each option's year is the first year after its first mention in the context (the second one for
    questions about deaths), before the other option is mentioned. No year for either option, equal
    years, or an answer that names neither option (or both without a direction) gives no verdict.
    """
    question = context.question
    if not question or " or " not in question.lower():
        return None
    options = _option_runs(question)
    if options is None:
        return None
    # The option names ("First for Women") say nothing about the direction asked or answered.
    names = [" ".join(options[0]).lower(), " ".join(options[1]).lower()]
    asked = {w.lower() for w in words(_without(question, names))}
    early, late = bool(asked & _EARLY), bool(asked & _LATE)
    if early == late:
        return None
    a_tokens = _distinctive(options[0], options[1], question)
    b_tokens = _distinctive(options[1], options[0], question)
    if not a_tokens or not b_tokens:
        return None
    said = sentence.lower()
    a_at, b_at = _first_mention(a_tokens, said), _first_mention(b_tokens, said)
    if a_at is None and b_at is None:
        return None
    answer_words = {w.lower() for w in words(_without(sentence, names))}
    flipped = bool(answer_words & (_LATE if early else _EARLY)) and not answer_words & (_EARLY if early else _LATE)
    if a_at is not None and b_at is not None:
        if not answer_words & (_EARLY | _LATE) and "than" not in answer_words:
            return None
        picked_a = a_at < b_at
    else:
        picked_a = a_at is not None
    if flipped:
        picked_a = not picked_a
    death = bool(asked & _DEATH)
    a_year = _option_year(a_tokens, b_tokens, context.text, death)
    b_year = _option_year(b_tokens, a_tokens, context.text, death)
    if a_year is None or b_year is None or a_year == b_year:
        return None
    picked, other = (a_year, b_year) if picked_a else (b_year, a_year)
    if (picked < other) == early:
        return None
    shown = (" ".join(options[0]), " ".join(options[1]))
    chosen, rejected = (shown[0], shown[1]) if picked_a else (shown[1], shown[0])
    return f"picks {chosen} ({picked}) over {rejected} ({other}), against the context's years"


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
        cached = match is not None or (word[:1].isupper() and _demonym_known(lower, context.fuzzy_choices))
        context._fuzzy_cache[lower] = cached
    return cached


def _demonym_known(lower: str, choices: tuple[str, ...]) -> bool:
    """A capitalised word whose place or demonym the context names ('Chilean' when it says 'Chile')."""
    prefix = lower[:4]
    at = bisect_left(choices, prefix)
    while at < len(choices) and choices[at].startswith(prefix):
        if same_root_name(lower, choices[at]):
            return True
        at += 1
    return False


def score_sentence(sentence: str, context: GroundingContext, settings: GroundingSettings) -> SentenceSupport | None:
    """Evidence and score for one sentence; None when it makes no checkable claim."""
    tokens = [w for w in words(sentence) if w.lower().replace("’", "'") not in STOPWORDS]
    content = [w for w in tokens if not any(ch.isdigit() for ch in w) and w.lower() not in STATED_NUMBER_WORDS]
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
    checks = ((negation_conflict, settings.negation_penalty), (causal_conflict, settings.causal_penalty),
              (comparison_conflict, settings.relation_penalty))
    found = [(conflict, penalty) for check, penalty in checks if penalty > 0
             for conflict in [check(sentence, context)] if conflict]
    conflicts = tuple(conflict for conflict, _ in found)
    for _, penalty in found:
        score *= 1 - penalty
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
        conflicts=conflicts,
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
                     "unsupported_numbers": list(s.unsupported_numbers),
                     "conflicts": list(s.conflicts)} for s in result.sentences])


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
