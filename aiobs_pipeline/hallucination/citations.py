"""Citation validation: find the citations an answer makes and check each against the retrieved documents.

Syntaxes read (code blocks are skipped):

| syntax | kind | valid when |
|---|---|---|
| `[kb-0101]`, `[doc_3, doc_7]` | id | a document has that id (exact, else case-insensitive), title, source or URL |
| `[1]`, `[2, 3]`, `[1-3]` | number | a document has that rank (1-based position when it has no rank) or that id |
| `[^1]` (+ optional `[^1]: ...` definition) | footnote | the definition names a document; else as `[1]` |
| `(Source: Employee Handbook)`, `Sources: a; b` | source | a document has that id, title, source or URL (titles also fuzzily) |
| `【3†handbook.pdf】`, `【4:0†source】`, `【kb-1】` | cjk_bracket | the file/title names a document, else the index is a rank |
| `https://...` (bare or `[text](url)`) | url | a document's url / uri / link / source / id is the same URL |

A bracketed word without a digit or separator (`[sic]`, `[Paris]`) is read as a citation only when it names
a document, so editorial brackets are not counted as invented sources. Each distinct citation counts once.
Score: share of valid citations; None when the answer cites nothing (its own value, not 1.0). With
citations but no documents, every citation is invalid (score 0). Pure function; never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd
from rapidfuzz import fuzz

from aiobs_pipeline.hallucination.settings import CitationSettings
from aiobs_pipeline.hallucination.text import (
    DocumentsError,
    as_text,
    column_values,
    document_field,
    key_frame,
    normalise,
    parse_documents,
    strip_code,
    to_json,
)

CitationKind = Literal["id", "number", "footnote", "source", "cjk_bracket", "url"]

_URL = re.compile(r"https?://[^\s<>()\[\]{}\"'`]+", re.I)
_MD_LINK = re.compile(r"\[([^\[\]\n]{0,200})\]\((https?://[^)\s]+)\)")
_FOOTNOTE_DEF = re.compile(r"(?m)^[^\S\n]*\[\^([^\]\s]{1,40})\]:[^\S\n]*(.+?)[^\S\n]*$")
_FOOTNOTE_REF = re.compile(r"\[\^([^\]\s]{1,40})\]")
_CJK = re.compile(r"【([^】\n]{1,160})】")
_OPENAI_CJK = re.compile(r"^\s*(?:(\d+):)?(\d+)\s*†\s*(.*?)\s*$")
_SOURCE = re.compile(
    r"[(\[]\s*(?:sources?|references?|refs?|cited?|see)\s*[:\-]\s*([^)\]\n]{1,300})[)\]]"
    r"|(?im:^[^\S\n]*(?:\*\*|__)?(?:sources?|references?)(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*(.{1,300})$)",
    re.I)
_BRACKET = re.compile(r"\[([^\[\]\n^]{1,120})\](?!\()")
_NUMBER_ITEM = re.compile(r"^\s*(\d{1,3})\s*(?:[-–—]\s*(\d{1,3}))?\s*$")
_ITEM_PREFIX = re.compile(r"^\s*(?:sources?|source id|doc(?:ument)?s?|ref|id)\s*[:#]\s*", re.I)
_ID_SIGNAL = re.compile(r"[\d\-_:./#@]")
_MAX_RANGE = 50


@dataclass(frozen=True)
class Citation:
    """One distinct citation: as written, its kind, what it points at, and whether a document matches."""

    raw: str
    kind: CitationKind
    target: str
    valid: bool
    document_id: str | None = None


@dataclass(frozen=True)
class CitationResult:
    """Citation check of one response: score = share valid (None without citations), invalid targets."""

    score: float | None
    citations: tuple[Citation, ...] = field(default_factory=tuple)
    invalid: tuple[str, ...] = field(default_factory=tuple)
    n_documents: int = 0
    note: str | None = None


def normalise_url(url: str) -> str:
    """A URL in comparable form: lower-case host without www., no scheme, fragment or trailing slash."""
    url = url.strip().rstrip(".,;:!?")
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return url.lower()
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return f"{host}{path}" + (f"?{parts.query}" if parts.query else "")


class _Library:
    """The retrieved documents indexed by every name a citation may use."""

    def __init__(self, documents: list[dict[str, Any]], settings: CitationSettings) -> None:
        self.settings = settings
        self.count = len(documents)
        self.by_id: dict[str, str] = {}
        self.by_id_folded: dict[str, str] = {}
        self.by_rank: dict[int, str] = {}
        self.by_url: dict[str, str] = {}
        self.by_title: dict[str, str] = {}
        for doc in documents:
            position = doc["_position"]
            ids = document_field(doc, "id", "doc_id", "document_id")
            label = ids[0] if ids else f"#{position}"
            rank = doc.get("rank")
            rank_value = rank if isinstance(rank, int) and not isinstance(rank, bool) else position
            self.by_rank.setdefault(rank_value, label)
            for value in ids:
                self.by_id.setdefault(value, label)
                self.by_id_folded.setdefault(value.casefold(), label)
            for value in document_field(doc, "url", "uri", "link", "source", "id", "file_name", "filename",
                                        "path"):
                if "/" in value or "." in value:
                    self.by_url.setdefault(normalise_url(value), label)
            for value in document_field(doc, "title", "name", "source", "file_name", "filename"):
                self.by_title.setdefault(normalise(value).casefold(), label)

    def named(self, name: str, fuzzy_titles: bool) -> str | None:
        """The document a name (id, title, source, file name or URL) points at, if any."""
        name = name.strip().strip("\"'`*").strip()
        if not name:
            return None
        if name in self.by_id:
            return self.by_id[name]
        folded = normalise(name).casefold()
        if folded in self.by_id_folded:
            return self.by_id_folded[folded]
        if folded in self.by_title:
            return self.by_title[folded]
        url = normalise_url(name)
        if url in self.by_url:
            return self.by_url[url]
        if fuzzy_titles and self.settings.match_titles and self.by_title:
            for title, label in self.by_title.items():
                if fuzz.token_set_ratio(folded, title) >= self.settings.title_match_cutoff:
                    return label
        return None

    def ranked(self, number: int) -> str | None:
        """The document at a 1-based rank (or whose id is that number)."""
        return self.by_rank.get(number) or self.by_id.get(str(number))


def _bracket_items(content: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,;]", content) if item.strip()]


def extract_citations(text: str | None, documents: list[dict[str, Any]] | None = None,
                      settings: CitationSettings | None = None) -> list[Citation]:
    """Every distinct citation in the text, each checked against the parsed documents (None = no documents)."""
    settings = settings or CitationSettings()
    library = _Library(documents or [], settings)
    id_pattern = re.compile(settings.id_pattern)
    body = strip_code(as_text(text))
    found: list[Citation] = []
    seen: set[tuple[str, str]] = set()

    def add(raw: str, kind: CitationKind, target: str, document_id: str | None) -> None:
        key = ("url" if kind == "url" else "number" if kind == "number" else "name",
               normalise_url(target) if kind == "url" else target.casefold())
        if key not in seen:
            seen.add(key)
            found.append(Citation(raw, kind, target, document_id is not None, document_id))

    def add_number(raw: str, kind: CitationKind, number: int) -> None:
        add(raw, kind, str(number), library.ranked(number))

    for m in _MD_LINK.finditer(body):
        add(m.group(0), "url", m.group(2), library.named(m.group(2), False))
    body = _MD_LINK.sub(" ", body)

    definitions = {m.group(1): m.group(2) for m in _FOOTNOTE_DEF.finditer(body)}
    body = _FOOTNOTE_DEF.sub(" ", body)
    for m in _FOOTNOTE_REF.finditer(body):
        label = m.group(1)
        definition = definitions.get(label)
        if definition is not None:
            urls = _URL.findall(definition)
            target = urls[0] if urls else definition.strip()
            add(m.group(0), "footnote", target, library.named(target, True))
        elif label.isdigit():
            add_number(m.group(0), "footnote", int(label))
        else:
            add(m.group(0), "footnote", label, library.named(label, False))
    body = _FOOTNOTE_REF.sub(" ", body)

    for m in _CJK.finditer(body):
        content = m.group(1)
        openai = _OPENAI_CJK.match(content)
        if openai:
            name = openai.group(3)
            doc = library.named(name, True) if name and name.lower() != "source" else None
            if doc is not None or (name and name.lower() != "source"):
                add(m.group(0), "cjk_bracket", name, doc)
            else:
                add_number(m.group(0), "cjk_bracket", int(openai.group(2)))
            continue
        for item in _bracket_items(content):
            number = _NUMBER_ITEM.match(item)
            if number and not number.group(2):
                add_number(m.group(0), "cjk_bracket", int(number.group(1)))
            else:
                add(m.group(0), "cjk_bracket", item, library.named(item, True))
    body = _CJK.sub(" ", body)

    for m in _SOURCE.finditer(body):
        content = (m.group(1) or m.group(2) or "").strip().rstrip(".")
        whole = library.named(content, True)
        parts = [p.strip() for p in re.split(r"[;|]|,\s*(?=\S)", content) if p.strip()]
        if whole is None and len(parts) > 1:
            for part in parts:
                number = _NUMBER_ITEM.match(part.strip("[]"))
                if number and not number.group(2):
                    add_number(m.group(0), "source", int(number.group(1)))
                else:
                    add(m.group(0), "source", part.strip("[]"), library.named(part.strip("[]"), True))
        elif _NUMBER_ITEM.match(content.strip("[]")) and not _NUMBER_ITEM.match(content.strip("[]")).group(2):
            add_number(m.group(0), "source", int(content.strip("[]")))
        else:
            add(m.group(0), "source", content, whole)
    body = _SOURCE.sub(" ", body)

    for m in _BRACKET.finditer(body):
        content = m.group(1).strip()
        if content.lower() in ("", "x", " "):
            continue  # a task-list checkbox
        for item in _bracket_items(_ITEM_PREFIX.sub("", content)):
            number = _NUMBER_ITEM.match(item)
            if number:
                first = int(number.group(1))
                last = int(number.group(2)) if number.group(2) else first
                if last < first or last - first > _MAX_RANGE:
                    add(m.group(0), "number", item, None)
                    continue
                for n in range(first, last + 1):
                    add_number(m.group(0), "number", n)
                continue
            doc = library.named(item, False)
            plausible_id = bool(id_pattern.fullmatch(item) and _ID_SIGNAL.search(item)) and not item.isdigit()
            if doc is not None or plausible_id:  # "[2020]" is a year, not the 2020th source
                add(m.group(0), "id", item, doc)
    body = _BRACKET.sub(" ", body)

    for m in _URL.finditer(body):
        url = m.group(0).rstrip(".,;:!?")
        add(url, "url", url, library.named(url, False))
    return found


def check_citations(output_text: str | None, documents: Any,
                    settings: CitationSettings | None = None) -> CitationResult:
    """Citation check of one span: output text against its documents (JSON text, list or None)."""
    try:
        parsed = parse_documents(documents)
    except DocumentsError as exc:
        return CitationResult(None, note=f"documents unreadable: {exc}")
    citations = extract_citations(output_text, parsed, settings)
    n_documents = len(parsed or [])
    if not citations:
        return CitationResult(None, (), (), n_documents, "no citations")
    valid = sum(1 for c in citations if c.valid)
    invalid = tuple(c.target for c in citations if not c.valid)
    note = "citations but no retrieved documents" if not parsed else None
    return CitationResult(round(valid / len(citations), 4), tuple(citations), invalid, n_documents, note)


def remove_citations(text: str) -> str:
    """Text without citation markers and URLs, so a claim is compared with the context on its words only."""
    text = _MD_LINK.sub(lambda m: m.group(1), text)
    text = _FOOTNOTE_DEF.sub(" ", text)
    for pattern in (_FOOTNOTE_REF, _CJK, _SOURCE, _URL):
        text = pattern.sub(" ", text)
    return _BRACKET.sub(lambda m: " " if _looks_like_marker(m.group(1)) else m.group(0), text)


def _looks_like_marker(content: str) -> bool:
    items = _bracket_items(_ITEM_PREFIX.sub("", content))
    return bool(items) and all(_NUMBER_ITEM.match(i) or (" " not in i and _ID_SIGNAL.search(i)) for i in items)


CITATION_COLUMNS: dict[str, str] = {
    "citation_score": "Share of the response's citations that match a retrieved document; null without citations.",
    "citations": "Distinct citations found.",
    "valid_citations": "Citations that match a retrieved document.",
    "invalid_citations": "JSON list of the cited ids / numbers / URLs no retrieved document matches.",
    "citation_note": "Why there is no score ('no citations', 'documents unreadable: ...'), or a caveat.",
}


def citation_checks(spans: pd.DataFrame, settings: CitationSettings | None = None) -> pd.DataFrame:
    """One row per span: key columns plus CITATION_COLUMNS, from `output_text` and `documents`."""
    results = [check_citations(text, docs, settings) for text, docs in
               zip(column_values(spans, "output_text"), column_values(spans, "documents"), strict=True)]
    out = key_frame(spans)
    out["citation_score"] = pd.Series([r.score for r in results], dtype="float64")
    out["citations"] = pd.Series([len(r.citations) for r in results], dtype="int64")
    out["valid_citations"] = pd.Series([sum(c.valid for c in r.citations) for r in results], dtype="int64")
    out["invalid_citations"] = [to_json(list(r.invalid)) for r in results]
    out["citation_note"] = [r.note for r in results]
    return out
