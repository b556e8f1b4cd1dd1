"""Self-reported confidence: a stated label or percentage, else hedging language, as a 0-1 score.

Order of evidence: an explicit statement ("Confidence: high", "Confidence: 85%", "I am 70% confident",
"with low confidence", "confidence score: 0.4", "Confidence: 8/10") wins; the last one counts, because
prompts ask for it at the end. Without one, hedges ("I think", "might", "I'm not sure", ...) lower a base
score, strong hedges more than mild ones. An answer with neither has **no** confidence score
(`score=None`, `source="none"`): silence is not "medium".

Hedges are English phrases: text that is not English-like (mostly non-Latin script, or without English
function words) gets `None` with a note, unless it carries an explicit statement in English. Code blocks
are ignored, since `maybe` in a variable name is not a hedge. Pure function; never raises on any input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from aiobs_pipeline.hallucination.settings import ConfidenceSettings
from aiobs_pipeline.hallucination.text import (
    as_text,
    column_values,
    key_frame,
    looks_english,
    normalise,
    strip_code,
    to_json,
)

ConfidenceSource = Literal["stated_label", "stated_percent", "hedging", "none"]

_I_AM = r"i(?:'m| am|m)"
STRONG_HEDGES: tuple[str, ...] = (
    rf"{_I_AM} not (?:entirely |completely |totally |100% |quite |really |very )?(?:sure|certain|confident)",
    rf"{_I_AM} unsure", r"not (?:entirely |completely |totally |100% )?(?:sure|certain) (?:if|whether|that|about)",
    r"i (?:do not|don't|dont) know", r"i (?:can't|cannot|can not|couldn't) (?:be sure|confirm|verify|say for sure)",
    r"i have no idea", r"i (?:may|might|could) be (?:wrong|mistaken)", r"don't quote me", r"hard to say",
    r"(?:just )?a (?:wild )?guess", rf"{_I_AM} guessing", r"i'?m not aware", r"unverified", r"not confident",
)
MILD_HEDGES: tuple[str, ...] = (
    r"i think", r"i believe", r"i guess", r"i suppose", r"i assume", r"i'd say", r"i would say",
    r"probably", r"possibly", r"perhaps", r"maybe",
    # Modal verbs hedge a claim, not advice ("you might want to") or a capability ("could be used to").
    r"might(?! (?:also )?(?:want|need|like|wish|consider|find)\b)",
    r"(?:could|may|might) (?:also )?be(?! (?:used|done|made|found|seen|applied|adapted|added|achieved|"
    r"accomplished|considered|improved|expanded|written|described|given|taken|helpful|useful)\b)",
    r"it seems",
    r"seems? to", r"appears? to", r"it appears", r"as far as i (?:know|can tell)",
    r"to (?:the best of )?my knowledge", r"if i (?:recall|remember)(?: correctly)?", r"likely", r"unlikely",
    r"presumably", r"supposedly", r"reportedly", r"it is possible", r"it's possible", r"there is a chance",
    r"not necessarily", r"in my opinion",
)

_SEP = r"\s*(?:\*\*|__)?\s*(?:[:=\-]|is|of|was)?\s*(?:\*\*|__)?\s*"
_CONFIDENCE_WORD = r"(?:self[- ]reported )?confidence(?: level| score| rating)?"
_PERCENT_AFTER = re.compile(rf"\b{_CONFIDENCE_WORD}{_SEP}(\d{{1,3}}(?:\.\d+)?)\s*(%|percent\b|/\s*(?:10|5|100)\b)?")
_PERCENT_BEFORE = re.compile(r"\b(\d{1,3}(?:\.\d+)?)\s*(?:%|percent)\s*(?:confident|confidence|sure|certain)\b")


@dataclass(frozen=True)
class ConfidenceResult:
    """A response's confidence: score 0-1 (None when it states none), where it came from, and the evidence."""

    score: float | None
    source: ConfidenceSource
    label: str | None = None
    evidence: tuple[str, ...] = field(default_factory=tuple)
    note: str | None = None


def _label_patterns(labels: list[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    alternatives = "|".join(re.escape(label).replace(r"\ ", r"\s+") for label in
                            sorted(labels, key=len, reverse=True))
    after = re.compile(rf"\b{_CONFIDENCE_WORD}{_SEP}({alternatives})\b")
    before = re.compile(rf"\b(?:with\s+(?:a\s+)?)?({alternatives})(?:\s*-\s*|\s+)confidence\b")
    return after, before


def _phrase_pattern(phrases: tuple[str, ...] | list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w'])(?:" + "|".join(phrases) + r")(?![\w'])")


def _stated(text: str, settings: ConfidenceSettings) -> tuple[float, ConfidenceSource, str, str] | None:
    """The last explicit confidence statement as (score, source, label, matched text), if any."""
    after, before = _label_patterns(list(settings.label_scores))
    found: list[tuple[int, float, ConfidenceSource, str, str]] = []
    for pattern in (after, before):
        for m in pattern.finditer(text):
            label = " ".join(m.group(1).split())
            found.append((m.start(), settings.label_scores[label], "stated_label", label, m.group(0)))
    for m in _PERCENT_AFTER.finditer(text):
        value, unit = float(m.group(1)), (m.group(2) or "").replace(" ", "")
        if unit.startswith("/"):
            value /= float(unit[1:])
        elif unit or value > 1:
            value /= 100
        if 0 <= value <= 1:
            found.append((m.start(), value, "stated_percent", f"{value:.0%}", m.group(0)))
    for m in _PERCENT_BEFORE.finditer(text):
        value = float(m.group(1)) / 100
        if 0 <= value <= 1:
            found.append((m.start(), value, "stated_percent", f"{value:.0%}", m.group(0)))
    if not found:
        return None
    _, score, source, label, matched = max(found, key=lambda f: f[0])
    return score, source, label, matched


def _hedges(text: str, settings: ConfidenceSettings) -> list[tuple[str, float]]:
    """Hedge phrases in text with their discounts, strong first; a strong hedge's words are not re-counted."""
    hedges: list[tuple[str, float]] = []
    strong = _phrase_pattern(list(STRONG_HEDGES) + [re.escape(p.lower()) for p in settings.extra_strong_hedges])
    for m in strong.finditer(text):
        hedges.append((m.group(0), settings.strong_hedge_discount))
    remaining = strong.sub(" ", text)
    mild = _phrase_pattern(list(MILD_HEDGES) + [re.escape(p.lower()) for p in settings.extra_mild_hedges])
    for m in mild.finditer(remaining):
        hedges.append((m.group(0), settings.mild_hedge_discount))
    return hedges


def score_confidence(output_text: str | None, settings: ConfidenceSettings | None = None) -> ConfidenceResult:
    """Confidence of one response: stated label/percentage, else hedging, else no score (source 'none')."""
    settings = settings or ConfidenceSettings()
    raw = as_text(output_text)
    if not raw.strip():
        return ConfidenceResult(None, "none", note="empty response")
    text = normalise(strip_code(raw)).lower()
    stated = _stated(text, settings)
    if stated is not None:
        score, source, label, matched = stated
        evidence = (matched.strip(),) + tuple(h for h, _ in _hedges(text, settings))
        return ConfidenceResult(round(score, 4), source, label, evidence)
    if not looks_english(text):
        return ConfidenceResult(None, "none", note="not English-like text: hedging is not read")
    hedges = _hedges(text, settings)
    if not hedges:
        return ConfidenceResult(None, "none")
    score = settings.hedge_base
    for _, discount in sorted(hedges, key=lambda h: -h[1])[: settings.max_hedges]:
        score *= 1 - discount
    return ConfidenceResult(round(score, 4), "hedging", None, tuple(h for h, _ in hedges))


_STATEMENT_LINE = re.compile(
    r"(?im)^[^\S\n]*(?:\*\*|__)?\s*(?:self[- ]reported )?confidence(?: level| score| rating)?\s*(?:\*\*|__)?"
    r"\s*[:=-].*$"
    r"|\(\s*confidence(?: level| score)?\s*[:=]\s*[^)\n]{1,30}\)")


def remove_confidence_statements(text: str) -> str:
    """Text without 'Confidence: ...' lines and '(confidence: ...)' asides, which are not claims about the world."""
    return _STATEMENT_LINE.sub(" ", text)


CONFIDENCE_COLUMNS: dict[str, str] = {
    "confidence_score": "Stated or hedged confidence, 0-1; null when the response states none.",
    "confidence_source": "stated_label, stated_percent, hedging or none.",
    "confidence_label": "The stated label ('high') or percentage ('85%'); null otherwise.",
    "confidence_evidence": "JSON list of the matched statement and hedge phrases.",
}


def confidence_scores(spans: pd.DataFrame, settings: ConfidenceSettings | None = None) -> pd.DataFrame:
    """One row per span: key columns plus CONFIDENCE_COLUMNS, from the canonical `output_text`."""
    results = [score_confidence(text, settings) for text in column_values(spans, "output_text")]
    out = key_frame(spans)
    out["confidence_score"] = pd.Series([r.score for r in results], dtype="float64")
    out["confidence_source"] = [r.source for r in results]
    out["confidence_label"] = [r.label for r in results]
    out["confidence_evidence"] = [to_json(list(r.evidence)) for r in results]
    return out
