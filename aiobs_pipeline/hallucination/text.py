"""Text helpers shared by the hallucination detectors: sentence splitting, normalisation, tokens, numbers.

Everything here is deterministic, dependency-light and safe on any input (None, empty, non-English text,
markdown, code). It owns no scoring: detectors decide what a token or a sentence means.

Sentence splitting uses pysbd when it is installed (rule-based, no downloaded model); otherwise a regex
splitter that knows common abbreviations, initials, decimals, closing quotes, list lines, CJK full stops and
the glued sentences of scraped text ("...19th century.First for Women is..."). `SENTENCE_SPLITTER` says
which one is in use.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

try:  # pysbd is optional: the regex splitter below is the fallback.
    import pysbd as _pysbd
except ImportError:  # pragma: no cover - depends on the environment
    _pysbd = None

SENTENCE_SPLITTER = "pysbd" if _pysbd is not None else "regex"

# A compact English stopword list (function words): they carry no checkable fact.
STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
each either even ever every few for from further get gets got had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into
is isn't it it's its itself just let's like many may me might more most much must mustn't my myself neither
no nor not now of off on once one only or other ought our ours ourselves out over own per quite rather really
same shall she she'd she'll she's should shouldn't so some such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those though through thus to
too under until up upon us very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's whether which while who who's whom whose why why's will with won't would wouldn't yes yet you
you'd you'll you're you've your yours yourself yourselves yeah yep ok okay well oh sure also still already
s t d ll m re ve
""".split())

# Words that start sentences in capitals without naming anything.
_DISCOURSE = frozenset("""
absolutely actually additionally afterwards although anyway apparently as basically besides certainly
definitely especially eventually finally first firstly fortunately furthermore great hello hi hmm honestly
hope however indeed instead interestingly later likewise maybe meanwhile moreover nevertheless next
nonetheless note notably of otherwise overall perhaps personally please probably regardless second secondly
similarly since so sorry still thank thanks then therefore third though thus today unfortunately unlike
while yesterday tomorrow good nice cool wow right exactly true false correct incorrect
""".split())

_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept est inc ltd co corp gov gen col lt sgt capt
rev hon jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun u.s u.k u.n a.m p.m
ph.d b.a m.a d.c n.y l.a
""".split())
# Abbreviations that only shorten a word when a number follows ("No. 5", "Fig. 2"); else they end a sentence.
_NUMBER_ABBREVIATIONS = frozenset("no nos fig figs vol vols pp p art sec ch eq op".split())

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMBER = re.compile(r"(?<![A-Za-z\d.])[-+]?\d[\d,]*(?:\.\d+)?")
_CAMEL_GLUE = re.compile(r"(?<=[a-z)\"'”])(?=[A-Z][a-z])")
_SPACES = re.compile(r"\s+")
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LIST_LINE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)]|#{1,6})\s+")
# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace.
_BOUNDARY = re.compile(r"([.!?…]+|[。！？]+)([\"'”’)\]]*)(\s+|$)")
_CJK_BOUNDARY = re.compile(r"(?<=[。！？])|(?<=[.!?])(?=[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af])")
# Sentences glued without a space in scraped text: "...century.First for Women is ...".
_GLUED = re.compile(r"(?<=[A-Za-z][a-z0-9\"”)][.!?])(?=[A-Z][a-z])")
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "–": "-", "—": "-",
                         "‐": "-", "‑": "-", "−": "-", "\u00a0": " "})

NUMBER_WORDS: dict[str, str] = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
    "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
    "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
    "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
    "million": "1000000", "billion": "1000000000", "dozen": "12", "first": "1", "second": "2",
    "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7", "eighth": "8", "ninth": "9",
    "tenth": "10", "twice": "2", "half": "0.5", "single": "1", "once": "1",
}
# Number words an answer may use without stating a number ("the one who", "second-hand", "half the time").
_AMBIGUOUS_NUMBER_WORDS = frozenset({"one", "first", "second", "single", "once", "half", "hundred",
                                     "thousand", "million", "billion", "dozen", "twice"})
# Number words `numbers` reads from an answer: the number check judges them, not word coverage.
STATED_NUMBER_WORDS: frozenset[str] = frozenset(NUMBER_WORDS) - _AMBIGUOUS_NUMBER_WORDS
# Endings that turn a place into its people or language ("Chile" -> "Chilean", "Iraq" -> "Iraqi").
_DEMONYM_ENDINGS: tuple[str, ...] = ("ian", "ean", "an", "ese", "ish", "i", "n")


def same_root_name(a: str, b: str) -> bool:
    """True when two lower-case names are a place and its demonym ('chile'/'chilean', 'italy'/'italian')."""
    if a == b:
        return True
    for longer, shorter in ((a, b), (b, a)):
        for ending in _DEMONYM_ENDINGS:
            if not longer.endswith(ending):
                continue
            root = longer[: len(longer) - len(ending)]
            if len(root) >= 4 and shorter.startswith(root) and len(shorter) - len(root) <= 2:
                return True
    return False


def as_text(value: Any) -> str:
    """Any value as text: None -> '', str kept, other values JSON-dumped (never raises)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value != value:  # NaN from a pandas column
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def normalise(text: str) -> str:
    """NFKC, straight quotes and dashes, single spaces: the form every comparison is made on."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).translate(_QUOTES)).strip()


def strip_code(text: str) -> str:
    """Text without fenced or inline code, whose words are not claims or hedges."""
    return _INLINE_CODE.sub(" ", _CODE_BLOCK.sub("\n", text))


def latin_share(text: str) -> float:
    """Share of letters that are Latin (0 when there are none): a cheap 'is this English-like text' test."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    latin = sum(1 for ch in letters if ch.isascii() or "LATIN" in unicodedata.name(ch, ""))
    return latin / len(letters)


def looks_english(text: str, min_stopword_share: float = 0.08) -> bool:
    """True when the text is mostly Latin script and uses English function words."""
    if latin_share(text) < 0.8:
        return False
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return False
    return len(words) < 3 or sum(1 for w in words if w in STOPWORDS) / len(words) >= min_stopword_share


def _split_block(block: str) -> list[str]:
    """Regex sentence split of one line-free block."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(block):
        end = match.end()
        rest = block[end:]
        if not rest:
            break
        punct = match.group(1)
        if punct in (".", "..") or punct.endswith("."):
            before = block[start:match.start()]
            last = before.rsplit(None, 1)[-1] if before.strip() else ""
            stem = last.lower().lstrip("(\"'[")
            if punct == "." and (stem in _ABBREVIATIONS or stem.rstrip(".") in _ABBREVIATIONS):
                continue
            if punct == "." and stem in _NUMBER_ABBREVIATIONS and rest[:1].isdigit():
                continue
            if punct == "." and len(stem) == 1 and stem.isalpha() and last[-1:].isupper():
                continue  # an initial: "J. K. Rowling"
            if punct == "." and re.fullmatch(r"(?:[a-z]\.){1,3}[a-z]", stem):
                continue  # "e.g" / "u.s.a" style abbreviations not in the list
        if not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘([" or not rest[0].isascii()
                or punct[-1] in "。！？"):
            continue
        sentences.append(block[start:end].strip())
        start = end
    tail = block[start:].strip()
    if tail:
        sentences.append(tail)
    out: list[str] = []
    for sentence in sentences:
        for part in _GLUED.split(sentence):
            out.extend(p.strip() for p in _CJK_BOUNDARY.split(part) if p.strip())
    return out


@lru_cache(maxsize=1)
def _pysbd_segmenter() -> Any:
    return _pysbd.Segmenter(language="en", clean=False) if _pysbd is not None else None


def split_sentences(text: str | None) -> list[str]:
    """Sentences of a text: lines (list items, headings) first, then sentence boundaries within each."""
    if not text:
        return []
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    sentences: list[str] = []
    segmenter = _pysbd_segmenter()
    for line in text.split("\n"):
        line = _LIST_LINE.sub("", line).strip()
        if not line:
            continue
        if segmenter is not None:
            parts = [p.strip() for p in segmenter.segment(line) if p.strip()]
            for part in parts:
                sentences.extend(p.strip() for p in _GLUED.split(part) if p.strip())
        else:
            sentences.extend(_split_block(line))
    return sentences


def words(text: str) -> list[str]:
    """Word tokens (letters and digits, inner apostrophes kept), in text order, original case."""
    return _WORD.findall(text)


def unglue(text: str) -> str:
    """Insert a space where scraped text glued two words ('DreamDancing' -> 'Dream Dancing')."""
    return _CAMEL_GLUE.sub(" ", text)


# Irregular inflections of common English verbs: the answer says "told" where the context says "tells".
# Forms that are also other words ("found" = established, "left" = direction, "born") are left out.
IRREGULAR_FORMS: dict[str, str] = {
    form: base for base, forms in {
        "say": "said", "tell": "told", "make": "made", "take": "took taken", "come": "came", "give": "gave given",
        "go": "went gone", "get": "got gotten", "see": "saw seen", "know": "knew known", "think": "thought",
        "bring": "brought", "buy": "bought", "build": "built", "catch": "caught", "choose": "chose chosen",
        "draw": "drew drawn", "drive": "drove driven", "eat": "ate eaten", "fall": "fell fallen", "feel": "felt",
        "fight": "fought", "flee": "fled", "fly": "flew flown", "forget": "forgot forgotten",
        "freeze": "froze frozen", "grow": "grew grown", "hold": "held", "hide": "hid hidden", "keep": "kept",
        "lead": "led", "lend": "lent", "lose": "lost", "mean": "meant", "meet": "met", "pay": "paid",
        "run": "ran", "ring": "rang rung", "rise": "rose risen", "sell": "sold", "send": "sent", "shoot": "shot",
        "shake": "shook shaken", "sing": "sang sung", "sink": "sank sunk", "sit": "sat", "sleep": "slept",
        "speak": "spoke spoken", "spend": "spent", "stand": "stood", "steal": "stole stolen",
        "strike": "struck stricken", "swear": "swore sworn", "teach": "taught", "tear": "tore torn",
        "throw": "threw thrown", "understand": "understood", "wake": "woke woken", "wear": "wore worn",
        "win": "won", "write": "wrote written", "begin": "began begun", "become": "became",
        "break": "broke broken", "seek": "sought", "die": "died dies dying dead death", "lie": "lying",
        "child": "children", "man": "men", "woman": "women", "person": "people", "mouse": "mice",
    }.items() for form in [base, *forms.split()]
}


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English suffix stripper ('Healing' -> 'heal', "Ward's" -> 'ward'): cheap morphology matching."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.rstrip("'")
    w = IRREGULAR_FORMS.get(w, w)
    if len(w) <= 3 or not w.isalpha():
        return w
    for suffix, keep in (("ies", "y"), ("ied", "y"), ("ying", "y"), ("ing", ""), ("edly", ""), ("ed", ""),
                         ("ly", ""), ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and w.endswith(("ss", "us", "is")):
                return w
            w = w[: len(w) - len(suffix)] + keep
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # "stopp(ed)" -> "stop"
    if w.endswith("e") and len(w) > 3 and not w.endswith("ee"):
        w = w[:-1]  # "believe" / "believ(ed)" and "name" / "nam(es)" meet
    return w


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens that are not stopwords (a sentence's checkable vocabulary)."""
    return [w.lower() for w in words(text) if w.lower().replace("’", "'") not in STOPWORDS]


def numbers(text: str, *, lenient: bool = False) -> set[str]:
    """Numbers a text states, normalised ('2,466' -> '2466', '3.50' -> '3.5', 'three' -> '3').

    `lenient` also reads ambiguous number words ('one', 'first', 'half'): use it for the context, so an
    answer's '1' can be found in 'one', but never for the answer, where 'the one who' states no number.
    """
    found: set[str] = set()
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", "").lstrip("+")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        if value.startswith("-"):
            found.add(value[1:])  # "1990-1995" reads as "1990" and "-1995"
        found.add(value)
    for word in _WORD.findall(text.lower()):
        for part in word.split("-"):
            number = NUMBER_WORDS.get(part)
            if number is not None and (lenient or part not in _AMBIGUOUS_NUMBER_WORDS):
                found.add(number)
    return found


def entity_tokens(sentence: str) -> list[str]:
    """Name-like tokens of one sentence: capitalised words not at its start, acronyms, and multi-word names.

    A capitalised first word counts only inside a run of capitalised words ("Snow Crash is ..."), because
    sentences start with capitals anyway. Stopwords and discourse words ("However", "Sure") never count.
    """
    tokens = words(sentence)
    out: list[str] = []
    for i, token in enumerate(tokens):
        lower = token.lower().replace("’", "'")
        if lower in STOPWORDS or lower in _DISCOURSE or not token[:1].isupper():
            continue
        if token.isupper() and len(token) == 1:
            continue  # "I", "A"
        if i == 0:
            next_capital = len(tokens) > 1 and tokens[1][:1].isupper() and tokens[1].lower() not in STOPWORDS
            if not next_capital and not any(ch.isupper() for ch in token[1:]):
                continue
        out.append(token)
    return out


def message_texts(input_messages: Any) -> list[str]:
    """The text content of input messages given as JSON text or a list of {role, content} dicts."""
    if isinstance(input_messages, str):
        try:
            input_messages = json.loads(input_messages)
        except ValueError:
            return [input_messages] if input_messages.strip() else []
    if not isinstance(input_messages, list):
        return []
    texts: list[str] = []
    for message in input_messages:
        content = message.get("content") if isinstance(message, dict) else message
        texts.extend(_content_strings(content))
    return [t for t in texts if t.strip()]


def last_user_text(input_messages: Any) -> str:
    """The text of the last user turn of input messages (the question an answer replies to); '' if none."""
    if isinstance(input_messages, str):
        try:
            input_messages = json.loads(input_messages)
        except ValueError:
            return input_messages.strip()
    if not isinstance(input_messages, list):
        return ""
    for message in reversed(input_messages):
        if isinstance(message, dict) and message.get("role") in ("user", "human"):
            text = " ".join(t for t in _content_strings(message.get("content")) if t.strip())
            if text.strip():
                return text.strip()
    return ""


def _content_strings(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]
    elif isinstance(content, dict) and isinstance(content.get("text"), str):
        yield content["text"]


class DocumentsError(ValueError):
    """The documents value is present but is not a list of documents."""


def parse_documents(documents: Any) -> list[dict[str, Any]] | None:
    """Retrieved documents (the `documents` column: JSON text or list) as dicts; None when absent.

    Strings become {"text": ...}; every document keeps its position (1-based) under `_position`. Raises
    DocumentsError, naming the problem, when the value is present but unreadable.
    """
    if documents is None or (isinstance(documents, float) and documents != documents):
        return None
    if isinstance(documents, str | bytes):
        if not documents.strip():
            return None
        try:
            documents = json.loads(documents)
        except ValueError as exc:
            raise DocumentsError(f"documents is not valid JSON: {exc}") from exc
    if isinstance(documents, dict) and isinstance(documents.get("documents"), list):
        documents = documents["documents"]
    if documents is None:
        return None
    if not isinstance(documents, list | tuple):
        raise DocumentsError(f"documents must be a list, got {type(documents).__name__}")
    out: list[dict[str, Any]] = []
    for position, doc in enumerate(documents, start=1):
        if isinstance(doc, str):
            item: dict[str, Any] = {"text": doc}
        elif isinstance(doc, dict):
            item = dict(doc)
        elif doc is None:
            continue
        else:
            raise DocumentsError(f"documents[{position - 1}] must be an object or a string, "
                                 f"got {type(doc).__name__}")
        item["_position"] = position
        out.append(item)
    return out


def document_text(doc: dict[str, Any]) -> str:
    """The text of one parsed document (text, content or page_content)."""
    for key in ("text", "content", "page_content"):
        value = doc.get(key)
        if isinstance(value, str):
            return value
        if value is not None:
            return as_text(value)
    return ""


def document_field(doc: dict[str, Any], *keys: str) -> list[str]:
    """String values of the given keys, at the top level or under `metadata`, in that order."""
    values: list[str] = []
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    for source in (doc, metadata):
        for key in keys:
            value = source.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                values.append(str(value).strip())
    return values


KEY_COLUMNS: tuple[str, ...] = ("export_hour", "trace_id", "span_id")


def key_frame(spans: Any) -> Any:
    """The identifying columns (export_hour, trace_id, span_id) a detector's output table keeps."""
    return spans[[c for c in KEY_COLUMNS if c in spans.columns]].reset_index(drop=True)


def to_json(value: Any) -> str:
    """Compact JSON text for a list or dict column (warehouse JSON columns are text)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def column_values(spans: Any, column: str) -> list[Any]:
    """A column's values as a list (None for every row when the frame lacks it; NaN becomes None)."""
    if column not in spans.columns:
        return [None] * len(spans)
    return [None if isinstance(v, float) and v != v else v for v in spans[column].tolist()]
