"""Fact checking against a trusted corpus: extract claims, retrieve evidence with BM25, ask an LLM judge.

1. **claims** - the answer's sentences that assert something checkable: a number or date, a name-like token,
   or an "is/was/are/has" assertion, with at least `min_claim_words` words. Questions, hedged sentences
   ("I think", "might", "probably") and conversational ones ("Let me know ...", "I can help ...") are not
   claims. Citation markers and URLs are removed first.
2. **evidence** - a folder of trusted documents (`.md`, `.txt`, `.jsonl`; one JSON object per line with a
   `text`/`content`/`body` field and optional `id`/`title`) is cut into passages (a markdown heading titles the
   paragraphs under it; long paragraphs are cut every `passage_sentences` sentences) and indexed locally with
   bm25s. The index is cached on disk under a key made of the folder's file hashes (and the passage
   settings), so it is reused while no file changes and rebuilt when one does. Nothing is downloaded.
3. **judge** - for each claim with evidence, one chat call asks whether the passages SUPPORT or REFUTE the
   claim or give NOT_ENOUGH_INFO. The answer is parsed robustly (a JSON object, a `Verdict:` line, a first
   line holding one verdict, or a single upper-case verdict word anywhere); anything else is recorded as
   unparseable with the raw text. A claim without any retrieved passage is not covered without a call.

response score = supported / (supported + refuted_weight * refuted + not_covered_weight * not_covered), over
the claims the judge gave a verdict. Refuted claims weigh more (`refuted_weight` 2 by default: one
contradiction costs as much as two confirmations); claims the corpus does not cover weigh nothing by default,
since a corpus silent on a topic says nothing about the answer. With no supported or refuted claim the status
is `not_covered` (no score). Selection, sampling, budget and statuses work as for consistency.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import pandas as pd
from pydantic import Field

from aiobs_pipeline.hallucination.consistency import (
    Budget,
    Candidate,
    LLMCheckOutput,
    SelectionSettings,
    in_sample,
    llm_span_ids,
    plan_order,
    result_frame,
    usage_totals,
)
from aiobs_pipeline.hallucination.text import (
    STOPWORDS,
    as_text,
    entity_tokens,
    normalise,
    numbers,
    split_sentences,
    stem,
    to_json,
    words,
)
from aiobs_pipeline.llm import LLMClient, LLMResult

logger = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG on import, which would print every index build through any handler.
logging.getLogger("bm25s").setLevel(logging.WARNING)

PROMPT_NAME = "aiobs.factcheck.judge"
PROMPT_VERSION = "1"
# Bump when passage cutting or tokenisation changes: the cache key includes it, so old indexes are not reused.
INDEX_FORMAT = 1
CORPUS_SUFFIXES = (".md", ".markdown", ".txt", ".jsonl")
VERDICTS = ("supported", "refuted", "not_enough_info")


class FactCheckSettings(SelectionSettings):
    """Trusted corpus, retrieval, claim extraction, judge and score (the `[hallucination.fact_check]` section)."""

    corpus_dir: Path | None = Field(
        default=None, description="Folder of trusted .md/.txt/.jsonl documents; None = no fact checking.")
    index_cache_dir: Path | None = Field(
        default=Path("var/factcheck_index"),
        description="Folder for cached BM25 indexes (keyed by the corpus files' hashes); None = no cache.")
    passage_sentences: int = Field(default=3, ge=1, le=50,
                                   description="Sentences per passage when a paragraph is long.")
    top_k: int = Field(default=3, ge=1, le=20, description="Passages retrieved per claim.")
    min_retrieval_score: float = Field(default=0.0, ge=0,
                                       description="A passage is evidence only when its BM25 score exceeds this.")
    min_token_overlap: float = Field(
        default=0.34, ge=0, le=1,
        description="A passage is evidence only when it holds at least this share of the claim's distinct "
                    "search tokens (one shared word of a long claim is not evidence).")
    max_evidence_chars: int = Field(default=2000, ge=100, description="Evidence text sent to the judge, at most.")
    max_claims_per_response: int = Field(default=8, ge=1, le=100,
                                         description="Claims judged per response (the first ones in order).")
    min_claim_words: int = Field(default=3, ge=1, description="Words a sentence needs to be a claim.")
    refuted_weight: float = Field(default=2.0, ge=1, description="Weight of a refuted claim in the score.")
    not_covered_weight: float = Field(default=0.0, ge=0,
                                      description="Weight of a claim the corpus does not cover (0 = ignored).")
    max_output_tokens: int = Field(default=256, ge=16, description="max_tokens of each judge call.")
    json_response_format: bool = Field(
        default=False,
        description="Send response_format json_object to the judge (only for endpoints that support it; the "
                    "prompt asks for JSON either way and plain answers are parsed too).")


# ---------------------------------------------------------------------------------------------------------
# Claims


_CITATION = re.compile(r"\[[^\[\]\n]{1,40}\]|\((?:sources?|see|ref)\s*:[^)]*\)|https?://\S+", re.I)
_CONFIDENCE_LINE = re.compile(r"^\s*confidence\s*[:=-]", re.I)
_HEDGES = re.compile(
    r"\b(?:i think|i believe|i guess|i suppose|i'm not sure|i am not sure|not sure|i don't know|i do not know|"
    r"maybe|perhaps|possibly|probably|might|may be|could be|likely|unlikely|it seems|seems to|appears to|"
    r"apparently|reportedly|allegedly|supposedly|roughly speaking|as far as i know|if i recall|speculat\w*|"
    r"hypothetically|in theory)\b", re.I)
_CONVERSATIONAL = re.compile(
    r"^(?:i(?:'m| am| can| will|'ll| would|'d| hope)|let me|let us|let's|feel free|hope|please|thanks|"
    r"thank you|sure|of course|great question|happy to|glad to|you're welcome|you are welcome)\b", re.I)
_ASSERTION = re.compile(r"\b(?:is|was|are|were|has|have|had|isn't|wasn't|aren't|weren't)\b", re.I)


@dataclass(frozen=True)
class Claim:
    """One checkable sentence of an answer: its text, sentence number (0-based) and why it is a claim."""

    text: str
    sentence: int
    kinds: tuple[str, ...]


def extract_claims(text: str | None, min_words: int = 3) -> list[Claim]:
    """The factual claims of an answer, in order (see the module docstring for the rules)."""
    cleaned = "\n".join(line for line in _CITATION.sub(" ", as_text(text)).splitlines()
                        if not _CONFIDENCE_LINE.match(line))
    claims: list[Claim] = []
    for index, sentence in enumerate(split_sentences(cleaned)):
        sentence = normalise(re.sub(r"\s+([.,;:!?])", r"\1", sentence))
        if len(words(sentence)) < min_words or sentence.endswith("?"):
            continue
        if _HEDGES.search(sentence) or _CONVERSATIONAL.match(sentence):
            continue
        kinds = tuple(kind for kind, present in (
            ("number", bool(numbers(sentence))),
            ("entity", bool(entity_tokens(sentence))),
            ("assertion", bool(_ASSERTION.search(sentence))),
        ) if present)
        if kinds:
            claims.append(Claim(sentence, index, kinds))
    return claims


# ---------------------------------------------------------------------------------------------------------
# Trusted corpus and BM25 retrieval


def tokenize(text: str) -> list[str]:
    """Index and query tokens: stemmed lower-case words without stopwords, then the numbers ('2,466' -> '2466')."""
    tokens = [stem(w) for w in words(text) if not any(ch.isdigit() for ch in w) and w.lower() not in STOPWORDS]
    return tokens + sorted(numbers(text))


@dataclass(frozen=True)
class Passage:
    """A piece of a trusted document: id (`<file>#<n>`), source file (relative), title, text."""

    id: str
    source: str
    title: str | None
    text: str

    @property
    def evidence_text(self) -> str:
        """The text shown to the judge: the title (when the text does not start with it) and the text."""
        if self.title and not self.text.lower().startswith(self.title.lower()):
            return f"{self.title}: {self.text}"
        return self.text


@dataclass(frozen=True)
class CorpusProblem:
    """A corpus file or line that could not be used, and why (the rest of the corpus is still used)."""

    source: str
    line: int | None
    detail: str

    def describe(self) -> str:
        """`file:line: detail`, for logs and reports."""
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.detail}"


@dataclass(frozen=True)
class Evidence:
    """A retrieved passage and its BM25 score."""

    passage: Passage
    score: float


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def _chunks(sentences: list[str], size: int) -> list[str]:
    return [" ".join(sentences[i:i + size]) for i in range(0, len(sentences), size)]


def _text_passages(source: str, text: str, size: int) -> list[Passage]:
    passages: list[Passage] = []
    title: str | None = None
    paragraph: list[str] = []

    def flush() -> None:
        body = " ".join(line.strip() for line in paragraph if line.strip())
        paragraph.clear()
        if not body:
            return
        for chunk in _chunks(split_sentences(body) or [body], size):
            passages.append(Passage(f"{source}#{len(passages) + 1}", source, title, chunk))

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            title = heading.group(1).strip() or None
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return passages


def _jsonl_passages(source: str, text: str, size: int, problems: list[CorpusProblem]) -> list[Passage]:
    passages: list[Passage] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            problems.append(CorpusProblem(source, number, f"not valid JSON ({error})"))
            continue
        if isinstance(record, str):
            record = {"text": record}
        if not isinstance(record, dict):
            problems.append(CorpusProblem(source, number, f"a JSON {type(record).__name__}, not an object"))
            continue
        body = next((record[k] for k in ("text", "content", "body", "page_content")
                     if isinstance(record.get(k), str) and record[k].strip()), None)
        if body is None:
            problems.append(CorpusProblem(source, number, "no text, content or body string field"))
            continue
        title = record.get("title") if isinstance(record.get("title"), str) else None
        record_id = str(record["id"]) if record.get("id") is not None else str(number)
        for part, chunk in enumerate(_chunks(split_sentences(body) or [body], size), start=1):
            passages.append(Passage(f"{source}#{record_id}" + (f".{part}" if part > 1 else ""), source, title,
                                    normalise(chunk)))
    return passages


def corpus_files(folder: Path) -> list[Path]:
    """The corpus's document files under folder (recursively, sorted, hidden files and folders left out)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


class TrustedCorpus:
    """A folder of trusted documents cut into passages, with a BM25 index (cached on disk by file hashes)."""

    def __init__(self, folder: Path, passages: list[Passage], retriever: bm25s.BM25 | None, fingerprint: str,
                 index_dir: Path | None, built: bool, problems: list[CorpusProblem]) -> None:
        self.folder = folder
        self.passages = passages
        self.fingerprint = fingerprint
        self.index_dir = index_dir
        self.built = built
        self.problems = problems
        self._retriever = retriever

    def __repr__(self) -> str:
        return f"TrustedCorpus({str(self.folder)!r}, passages={len(self.passages)}, built={self.built})"

    @classmethod
    def load(cls, folder: str | Path, cache_dir: str | Path | None = None, *,
             passage_sentences: int = 3) -> TrustedCorpus:
        """Read the folder; reuse the cached index for the same file hashes, else build (and cache) one.

        Raises ValueError naming the folder when it does not exist. Unreadable files and bad JSONL lines are
        listed in `problems` (and logged), never fatal.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"hallucination.fact_check.corpus_dir {str(folder)!r} is not a folder")
        problems: list[CorpusProblem] = []
        contents: list[tuple[str, bytes]] = []
        for path in corpus_files(folder):
            relative = path.relative_to(folder).as_posix()
            try:
                contents.append((relative, path.read_bytes()))
            except OSError as error:
                problems.append(CorpusProblem(relative, None, f"unreadable ({error})"))
        fingerprint = hashlib.sha256(json.dumps({
            "format": INDEX_FORMAT, "passage_sentences": passage_sentences,
            "files": [[name, hashlib.sha256(data).hexdigest()] for name, data in contents],
        }, sort_keys=True).encode("utf-8")).hexdigest()
        index_dir = None
        if cache_dir is not None:
            folder_key = hashlib.sha256(str(folder.resolve()).encode("utf-8")).hexdigest()[:16]
            index_dir = Path(cache_dir) / folder_key / fingerprint[:32]
            cached = cls._load_cached(folder, index_dir, fingerprint)
            if cached is not None:
                return cached
        passages: list[Passage] = []
        for relative, data in contents:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                problems.append(CorpusProblem(relative, None, f"not UTF-8 text ({error.reason} at byte "
                                                              f"{error.start})"))
                continue
            if relative.lower().endswith(".jsonl"):
                passages.extend(_jsonl_passages(relative, text, passage_sentences, problems))
            else:
                passages.extend(_text_passages(relative, text, passage_sentences))
        for problem in problems:
            logger.warning("trusted corpus %s: %s", folder, problem.describe())
        retriever = cls._index(passages)
        if index_dir is not None and retriever is not None:
            cls._save(index_dir, retriever, passages, problems, fingerprint, folder)
        return cls(folder, passages, retriever, fingerprint, index_dir, True, problems)

    @classmethod
    def from_settings(cls, settings: FactCheckSettings) -> TrustedCorpus:
        """The corpus named by settings.corpus_dir (ValueError when it is not set)."""
        if settings.corpus_dir is None:
            raise ValueError("hallucination.fact_check.corpus_dir is not set: name a folder of trusted documents")
        return cls.load(settings.corpus_dir, settings.index_cache_dir, passage_sentences=settings.passage_sentences)

    @staticmethod
    def _index(passages: list[Passage]) -> bm25s.BM25 | None:
        tokens = [tokenize(f"{p.title or ''} {p.text}") for p in passages]
        if not any(tokens):
            return None
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return retriever

    @staticmethod
    def _save(index_dir: Path, retriever: bm25s.BM25, passages: list[Passage], problems: list[CorpusProblem],
              fingerprint: str, folder: Path) -> None:
        """Write the index next to its passages, atomically (a temp folder renamed), and drop stale indexes."""
        temporary = index_dir.with_name(f".{index_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            temporary.mkdir(parents=True)
            retriever.save(str(temporary), show_progress=False)
            (temporary / "passages.json").write_text(json.dumps({
                "fingerprint": fingerprint, "folder": str(folder), "created_at": datetime.now(UTC).isoformat(),
                "passages": [[p.id, p.source, p.title, p.text] for p in passages],
                "problems": [[p.source, p.line, p.detail] for p in problems],
            }, ensure_ascii=False), encoding="utf-8")
            if index_dir.exists():
                shutil.rmtree(index_dir)  # an unreadable leftover (a readable one was loaded instead)
            os.replace(temporary, index_dir)
        except OSError as error:
            logger.warning("trusted corpus index not cached in %s (%s); it is used from memory", index_dir, error)
            shutil.rmtree(temporary, ignore_errors=True)
            return
        for sibling in index_dir.parent.iterdir():
            if sibling != index_dir and sibling.is_dir() and not sibling.name.endswith(".tmp"):
                shutil.rmtree(sibling, ignore_errors=True)

    @classmethod
    def _load_cached(cls, folder: Path, index_dir: Path, fingerprint: str) -> TrustedCorpus | None:
        manifest = index_dir / "passages.json"
        if not manifest.is_file():
            return None
        try:
            stored = json.loads(manifest.read_text(encoding="utf-8"))
            if stored.get("fingerprint") != fingerprint:
                return None
            passages = [Passage(*item) for item in stored["passages"]]
            problems = [CorpusProblem(*item) for item in stored["problems"]]
            retriever = bm25s.BM25.load(str(index_dir), load_corpus=False, show_progress=False)
            if int(retriever.scores["num_docs"]) != len(passages):
                raise ValueError(f"the index has {retriever.scores['num_docs']} documents for {len(passages)} "
                                 "passages")
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("cached trusted-corpus index %s is unreadable (%s); rebuilding it", index_dir, error)
            return None
        return cls(folder, passages, retriever, fingerprint, index_dir, False, problems)

    def search(self, query: str, k: int = 3, min_score: float = 0.0, min_overlap: float = 0.0) -> list[Evidence]:
        """The k passages scoring highest for query, best first, among those with BM25 score > min_score
        that contain at least `min_overlap` of the query's distinct tokens."""
        query_tokens = list(dict.fromkeys(t for t in tokenize(query) if t))
        if self._retriever is None or not query_tokens:
            return []
        vocabulary = self._retriever.vocab_dict
        known = [t for t in query_tokens if t in vocabulary]
        if not known:
            return []
        scores = np.asarray(self._retriever.get_scores(known), dtype="float64")
        # Distinct query tokens per passage, from the index's postings (column t lists the passages holding t).
        indices, indptr = self._retriever.scores["indices"], self._retriever.scores["indptr"]
        overlap = np.zeros(len(scores), dtype="int64")
        for token in known:
            token_id = vocabulary[token]
            np.add.at(overlap, indices[indptr[token_id]:indptr[token_id + 1]], 1)
        eligible = (scores > min_score) & (overlap / len(query_tokens) >= min_overlap)
        order = [i for i in np.argsort(-scores, kind="stable") if eligible[i]][:k]
        return [Evidence(self.passages[i], round(float(scores[i]), 4)) for i in order]


# ---------------------------------------------------------------------------------------------------------
# Judge


JUDGE_SYSTEM_PROMPT = (
    "You are a strict fact-checking judge. You get a claim and evidence passages from a trusted corpus. "
    "Judge the claim only by the evidence, not by what you know. Reply SUPPORTS when the evidence states the "
    "claim, REFUTES when the evidence contradicts it (for example a different number, date or name, or a "
    "negation), and NOT_ENOUGH_INFO when the evidence does not cover it. Answer in JSON: "
    '{"verdict": "SUPPORTS" | "REFUTES" | "NOT_ENOUGH_INFO", "explanation": "<one sentence citing the evidence>"}'
)


def judge_messages(claim: str, evidence: Sequence[Evidence], max_chars: int = 2000) -> list[dict[str, str]]:
    """The judge's chat messages for one claim and its evidence passages (cut to max_chars in total)."""
    lines: list[str] = []
    used = 0
    for item in evidence:
        text = item.passage.evidence_text
        if lines and used + len(text) > max_chars:
            break
        lines.append(f"- {text[: max_chars - used]}")
        used += len(text)
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT},
            {"role": "user", "content": f"Claim: {claim}\nEvidence:\n" + "\n".join(lines)}]


@dataclass(frozen=True)
class JudgeVerdict:
    """A parsed judge answer: verdict (supported, refuted, not_enough_info) and explanation."""

    verdict: str
    explanation: str


_LABEL_WORDS = {
    "supported": ("supports", "support", "supported", "true", "correct", "entailed", "entailment"),
    "refuted": ("refutes", "refute", "refuted", "false", "incorrect", "contradicts", "contradicted",
                "contradiction"),
    "not_enough_info": ("not_enough_info", "not enough info", "not enough information", "nei", "insufficient",
                        "insufficient evidence", "unknown", "not covered", "neutral", "unverifiable"),
}
_UPPER_LABELS = re.compile(r"\b(NOT[_ ]ENOUGH[_ ]INFO(?:RMATION)?|SUPPORTS|SUPPORTED|REFUTES|REFUTED)\b")
_VERDICT_LINE = re.compile(r"^\W*(?:final\s+)?(?:verdict|label|answer|decision)\W*[:=-]\s*(.+)$", re.I | re.M)
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def _label(value: str) -> str | None:
    """The verdict a short phrase names, or None when it names none or is longer than a verdict phrase."""
    phrase = " ".join(re.sub(r"[^a-z_ ]", " ", value.lower().replace("-", " ")).split())
    phrase = phrase.removeprefix("the claim is ").removeprefix("claim ")
    for verdict, synonyms in _LABEL_WORDS.items():
        if phrase in synonyms or phrase.replace(" ", "_") in synonyms:
            return verdict
    return None


def _upper_label(text: str) -> str | None:
    return _label(text.replace("_", " ")) if text else None


def _leading_label(text: str) -> str | None:
    """The verdict named by the first one to four words of text ('Supported by the evidence.' -> supported)."""
    tokens = re.sub(r"[^A-Za-z_ ]", " ", text.replace("-", " ")).split()
    for size in range(min(4, len(tokens)), 0, -1):
        verdict = _label(" ".join(tokens[:size]))
        if verdict is not None:
            return verdict
    return None


def parse_verdict(text: str | None) -> JudgeVerdict | None:
    """The judge's verdict from its raw answer, or None when it is missing or ambiguous.

    Tried in order: a JSON object with a verdict/label/answer field; a `Verdict: ...` line; a first line
    that is a verdict; one distinct upper-case verdict word (SUPPORTS, REFUTES, NOT_ENOUGH_INFO) anywhere.
    """
    raw = as_text(text).strip()
    if not raw:
        return None
    match = _JSON_OBJECT.search(raw)
    if match:
        try:
            data = json.loads(match.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict):
            value = next((data[k] for k in ("verdict", "label", "answer", "decision", "result")
                          if isinstance(data.get(k), str)), None)
            verdict = _label(value) if value else None
            if verdict is not None:
                explanation = next((data[k] for k in ("explanation", "reason", "rationale", "justification")
                                    if isinstance(data.get(k), str)), "")
                return JudgeVerdict(verdict, explanation.strip())
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    line_match = _VERDICT_LINE.search(raw)
    if line_match:
        value = line_match.group(1).strip()
        verdict = _leading_label(value)
        if verdict is None:
            found = {_upper_label(m) for m in _UPPER_LABELS.findall(value)}
            verdict = found.pop() if len(found) == 1 else None
        if verdict is not None:
            rest = [line for line in lines if not _VERDICT_LINE.match(line)]
            return JudgeVerdict(verdict, " ".join(rest))
    verdict = _leading_label(lines[0])
    if verdict is not None:
        return JudgeVerdict(verdict, " ".join(lines[1:]))
    found = {_upper_label(m) for m in _UPPER_LABELS.findall(raw)}
    if len(found) == 1:
        return JudgeVerdict(found.pop(), raw)
    return None


# ---------------------------------------------------------------------------------------------------------
# The check over a spans frame


FACT_CHECK_COLUMNS: dict[str, str] = {
    "export_hour": "Export hour of the checked span.",
    "trace_id": "Trace of the checked span.",
    "span_id": "The checked span (an LLM response).",
    "status": "scored, failed, not_covered, skipped_budget, skipped_no_claims or skipped_sample.",
    "reason": "Why the response is not scored (failure or skip detail); null when scored.",
    "score": "Share of supported claims, refuted weighted refuted_weight (0-1, higher = safer); null unless "
             "scored.",
    "claims_total": "Factual claims extracted from the answer.",
    "claims_checked": "Claims looked up (at most max_claims_per_response).",
    "supported": "Claims the judge found supported.",
    "refuted": "Claims the judge found refuted.",
    "not_covered": "Claims without evidence or judged NOT_ENOUGH_INFO.",
    "claims_failed": "Claims whose judge call failed or whose answer was unparseable.",
    "evidence": "JSON list per claim: claim, kinds, verdict, explanation, status, passages, raw/error.",
    "calls": "Judge calls made for this response (cache hits included).",
    "cache_hits": "Of those, answered from the response cache.",
    "input_tokens": "Prompt tokens of the successful calls.",
    "output_tokens": "Completion tokens of the successful calls.",
    "llm_span_ids": "JSON list of the span ids of those calls in spans_from_results.",
    "priority": "The priority value the response was ordered by (null when absent).",
}


@dataclass
class _ClaimCheck:
    claim: Claim
    evidence: list[Evidence]
    result: LLMResult | None = None
    verdict: JudgeVerdict | None = None


@dataclass
class _Job:
    candidate: Candidate
    claims_total: int
    checks: list[_ClaimCheck] = field(default_factory=list)


def _claim_record(check: _ClaimCheck) -> dict[str, Any]:
    record: dict[str, Any] = {
        "claim": check.claim.text, "sentence": check.claim.sentence, "kinds": list(check.claim.kinds),
        "passages": [{"id": e.passage.id, "source": e.passage.source, "score": e.score,
                      "text": e.passage.evidence_text} for e in check.evidence],
    }
    result = check.result
    if not check.evidence:
        record.update(status="no_evidence", verdict="not_enough_info",
                      explanation="no passage of the trusted corpus matches the claim")
    elif result is not None and not result.ok:
        record.update(status="failed", verdict=None,
                      error=result.error.describe() if result.error is not None else "failed")
    elif check.verdict is None:
        record.update(status="unparseable", verdict=None, raw=(result.text if result else "") or "")
    else:
        record.update(status="judged", verdict=check.verdict.verdict, explanation=check.verdict.explanation)
    if result is not None:
        record["llm_span_id"] = result.call_id[:16]
    return record


def _row(candidate: Candidate, status: str, reason: str | None, results: Sequence[LLMResult] = (),
         **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"export_hour": candidate.export_hour, "trace_id": candidate.trace_id,
                           "span_id": candidate.span_id, "status": status, "reason": reason, "score": None,
                           "evidence": to_json([]), "llm_span_ids": llm_span_ids(results),
                           "priority": candidate.priority, **usage_totals(results)}
    row.update(values)
    return row


def _scored_row(job: _Job, settings: FactCheckSettings) -> dict[str, Any]:
    records = [_claim_record(c) for c in job.checks]
    results = [c.result for c in job.checks if c.result is not None]
    counts = {v: sum(1 for r in records if r["verdict"] == v) for v in VERDICTS}
    failed = [r for r in records if r["status"] in ("failed", "unparseable")]
    values = {"claims_total": job.claims_total, "claims_checked": len(records), "supported": counts["supported"],
              "refuted": counts["refuted"], "not_covered": counts["not_enough_info"], "claims_failed": len(failed),
              "evidence": to_json(records)}
    if results and len(failed) == len(results):
        first = failed[0]
        reason = (f"judge call failed: {first['error']}" if first["status"] == "failed"
                  else f"judge answer unparseable: {first['raw'][:300]!r}")
        return _row(job.candidate, "failed", f"all {len(failed)} judge call(s) failed; first: {reason}", results,
                    **values)
    denominator = (counts["supported"] + settings.refuted_weight * counts["refuted"]
                   + settings.not_covered_weight * counts["not_enough_info"])
    if denominator <= 0:
        return _row(job.candidate, "not_covered",
                    "no claim is supported or refuted by the trusted corpus", results, **values)
    score = round(counts["supported"] / denominator, 4)
    return _row(job.candidate, "scored", None, results, score=score, **values)


def fact_check(spans: pd.DataFrame, client: LLMClient, corpus: TrustedCorpus | str | Path,
               settings: FactCheckSettings | None = None) -> LLMCheckOutput:
    """Fact-check the selected responses of `spans` against a trusted corpus (see the module docstring).

    `corpus` is a loaded TrustedCorpus or a folder (loaded with settings' cache and passage size). Returns one
    row per candidate response (FACT_CHECK_COLUMNS, in the spans frame's order) and every judge call's
    LLMResult, for `llm.spans_from_results`. Never raises for failed calls or unparseable answers.
    """
    settings = settings or FactCheckSettings()
    if not isinstance(corpus, TrustedCorpus):
        corpus = TrustedCorpus.load(corpus, settings.index_cache_dir, passage_sentences=settings.passage_sentences)
    rows: dict[int, dict[str, Any]] = {}
    jobs: list[_Job] = []
    for group in plan_order(spans, settings):
        budget = Budget(settings.max_calls_per_hour)
        for candidate in group:
            if not in_sample(candidate.span_id, settings.sample_rate):
                rows[candidate.position] = _row(candidate, "skipped_sample",
                                                f"outside sample_rate {settings.sample_rate}")
                continue
            claims = extract_claims(candidate.output_text, settings.min_claim_words)
            if not claims:
                rows[candidate.position] = _row(candidate, "skipped_no_claims",
                                                "the answer makes no checkable factual claim")
                continue
            checks = [_ClaimCheck(c, corpus.search(c.text, settings.top_k, settings.min_retrieval_score,
                                                 settings.min_token_overlap))
                      for c in claims[: settings.max_claims_per_response]]
            calls = sum(1 for c in checks if c.evidence)
            if not budget.take(calls):
                rows[candidate.position] = _row(
                    candidate, "skipped_budget",
                    f"max_calls_per_hour {settings.max_calls_per_hour} reached (this response needs {calls})",
                    claims_total=len(claims), claims_checked=len(checks))
                continue
            jobs.append(_Job(candidate, len(claims), checks))
    pending = [(job, check) for job in jobs for check in job.checks if check.evidence]
    requests = []
    for job, check in pending:
        c = job.candidate
        request: dict[str, Any] = {
            "messages": judge_messages(check.claim.text, check.evidence, settings.max_evidence_chars),
            "model": settings.model, "temperature": 0.0, "max_tokens": settings.max_output_tokens,
            "prompt_name": PROMPT_NAME, "prompt_version": PROMPT_VERSION,
            "metadata": {"check": "fact_check", "span_id": c.span_id, "trace_id": c.trace_id,
                         "claim_sentence": check.claim.sentence},
        }
        if settings.json_response_format:
            request["response_format"] = {"type": "json_object"}
        requests.append(request)
    for (_, check), result in zip(pending, client.chat_many(requests), strict=True):
        check.result = result
        check.verdict = parse_verdict(result.text) if result.ok else None
    for job in jobs:
        rows[job.candidate.position] = _scored_row(job, settings)
    ordered = [rows[p] for p in sorted(rows)]
    results = [check.result for job in jobs for check in job.checks if check.result is not None]
    return LLMCheckOutput(result_frame(ordered, FACT_CHECK_COLUMNS), results)
