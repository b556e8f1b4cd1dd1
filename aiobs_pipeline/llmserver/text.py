"""Text helpers of the local server: tokens, content words, stable hashing and hashed bag-of-words embeddings.

Everything here is deterministic across processes and Python versions: hashing uses blake2b, never the
salted built-in `hash`.
"""

from __future__ import annotations

import hashlib
import math
import re

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
WORD_RE = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*(?![\w])")
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its this
    that these those there their they them he she his her we our you your i me my do does did has have had
    what which who whom whose when where why how than then so such into about over under also can could
    would should will shall may might must just very more most some any each all both either neither
    please tell say said says know known much many one""".split()
)
NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor cannot can't isn't wasn't aren't weren't doesn't didn't "
    "don't won't hasn't haven't hadn't false".split()
)


def tokens(text: str) -> list[str]:
    """Split text into word and punctuation tokens (the server's token counter)."""
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """Number of tokens in text as the server counts them for `usage`."""
    return len(tokens(text))


def stem(word: str) -> str:
    """A light suffix stripper so 'towers'/'tower' and 'located'/'locate' meet."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word[:-1].isdigit():
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """Lower-cased word tokens (numbers keep their decimal point and thousands separators)."""
    return WORD_RE.findall(text.lower().replace("\u2019", "'"))


def content_words(text: str) -> list[str]:
    """Stemmed words without stopwords and negations, in order (duplicates kept)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and w not in NEGATIONS]


def numbers(text: str) -> set[str]:
    """Numbers mentioned in text, normalised (thousands separators removed, trailing .0 dropped)."""
    found = set()
    for raw in NUMBER_RE.findall(text):
        value = raw.replace(",", "")
        if value.endswith(".0"):
            value = value[:-2]
        found.add(value)
    return found


def has_negation(text: str) -> bool:
    """Whether text contains a negation word (not, never, no, n't forms, ...)."""
    lowered = text.lower().replace("\u2019", "'")
    return any(w in NEGATIONS for w in re.findall(r"[a-z']+", lowered)) or "n't" in lowered


def sentences(text: str) -> list[str]:
    """Split text into sentences on ., ! and ? followed by whitespace."""
    return [s.strip() for s in SENTENCE_RE.split(text.strip()) if s.strip()]


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts' text that is the same in every process."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def unit_interval(*parts: object) -> float:
    """A deterministic pseudo-random number in [0, 1) derived from the parts."""
    return stable_hash(*parts) / 2**64


def embed(text: str, dims: int = 256) -> list[float]:
    """A hashed bag-of-words vector, L2-normalised, so texts sharing content words are near.

    Each stemmed content word adds a signed unit to one of `dims` buckets; word bigrams add half as much so
    word order counts a little. Text made only of stopwords falls back to all its words.
    """
    vector = [0.0] * dims
    features = content_words(text) or [stem(w) for w in words(text)]
    for word in features:
        h = stable_hash("w", word)
        vector[h % dims] += 1.0 if (h >> 32) & 1 else -1.0
    for left, right in zip(features, features[1:], strict=False):
        h = stable_hash("b", left, right)
        vector[h % dims] += 0.5 if (h >> 32) & 1 else -0.5
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
