"""PII masking at ingest: replace personal data in span text with a marker such as `[EMAIL]`.

Optional (setting `ingest.mask_pii`, off by default). When on, `partition.ingest_files` masks the spans and the
quarantined records of an export hour before they leave it, so neither the warehouse nor the quarantine ever
holds the original values. Counts per pattern are reported (never the values).

Detectors, in the order they run (custom patterns first, in the order configured):
  api_key       vendor key prefixes (OpenAI/Anthropic `sk-`, Stripe, AWS `AKIA`, GitHub, Slack, Google), JWTs,
                and `api_key=...` / `password: ...` style assignments (only the value is masked)
  bearer_token  `Bearer <token>` (only the token is masked)
  email         local@domain.tld, Unicode letters allowed
  iban          checked with python-stdnum (country format and mod-97 checksum)
  credit_card   13-19 digits (spaces or dashes allowed) of a known card network, Luhn-checked (python-stdnum)
  us_ssn        AAA-GG-SSSS (or spaces), checked with python-stdnum (no 000/666/9xx areas, known fakes)
  ipv4, ipv6    addresses validated with the standard library's `ipaddress`
  phone         found and validated by `phonenumbers` (international numbers with +, national numbers of
                the configured regions)

Throughput: each column is first screened in one vectorised pass (pyarrow's RE2 engine) for the detectors'
cheap signatures (an `@`, a run of digits, a key prefix, ...); only values that pass are parsed and scanned
in Python. JSON columns are parsed and only their string values are masked, so the JSON stays valid.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

ValueKind = Literal["text", "json"]

# Setting value -> the span columns it covers.
MASKABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "input_messages": ("input_messages",),
    "output": ("output_text", "output_messages"),
    "documents": ("documents",),
    "error_message": ("error_message",),
    "metadata": ("metadata",),
}
SPAN_COLUMN_KINDS: dict[str, ValueKind] = {
    "input_messages": "json",
    "output_text": "text",
    "output_messages": "json",
    "documents": "json",
    "error_message": "text",
    "metadata": "json",
}
# Quarantined records are masked whole, whatever `fields` says: their fields were never mapped.
QUARANTINE_COLUMN_KINDS: dict[str, ValueKind] = {"raw": "json", "detail": "text"}
DEFAULT_REPLACEMENT = "[{NAME}]"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# A JSON text holding \uXXXX escapes can hide any character from the screening pass: scan it in full.
_JSON_ESCAPE = r"\\u[0-9A-Fa-f]{4}"


class MaskingError(ValueError):
    """A masking setting is invalid; the message names the setting and the value at fault."""


# ---------------------------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    """One named kind of PII: how to screen for it cheaply and how to find it exactly."""

    name: str
    find: Callable[[str], list[tuple[int, int]]]
    # RE2 pattern (pyarrow) every value holding this PII matches; None means every value is scanned.
    screen: str | None
    description: str = ""


def _regex_finder(
    regex: re.Pattern[str], accept: Callable[[str], int | None] | None = None
) -> Callable[[str], list[tuple[int, int]]]:
    """Spans to mask for each match: the named group `pii` (or `pii2`) if present, cut to what `accept` keeps."""
    groups = [g for g in ("pii", "pii2") if g in regex.groupindex]

    def find(text: str) -> list[tuple[int, int]]:
        spans = []
        for match in regex.finditer(text):
            group = next((g for g in groups if match.group(g) is not None), 0)
            start, end = match.span(group)
            if accept is not None:
                keep = accept(text[start:end])
                if keep is None:
                    continue
                end = start + keep
            spans.append((start, end))
        return spans

    return find


def _longest_valid_prefix(candidate: str, valid: Callable[[str], bool], min_chars: int) -> int | None:
    """Length of the longest prefix ending at a separator boundary that `valid` accepts.

    A greedy match can run on into a following number ("4111 1111 1111 1111 2024"); cutting back at the
    separators finds the number inside it.
    """
    cuts = [m.start() for m in re.finditer(r"[ \-]", candidate)] + [len(candidate)]
    for end in sorted(set(cuts), reverse=True):
        prefix = candidate[:end].rstrip(" -")
        if len(prefix) >= min_chars and valid(prefix):
            return len(prefix)
    return None


def _card_network(digits: str) -> bool:
    """Whether the number's prefix and length belong to a card network (Luhn alone passes 1 in 10)."""
    n = len(digits)
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
        or (two in (34, 37) and n == 15)  # American Express
        or ((four == 6011 or two == 65 or 644 <= three <= 649) and 16 <= n <= 19)  # Discover
        or (3528 <= four <= 3589 and 16 <= n <= 19)  # JCB
        or ((300 <= three <= 305 or two in (36, 38, 39)) and 14 <= n <= 19)  # Diners Club
        or (two == 62 and 16 <= n <= 19)  # UnionPay
        or ((two == 50 or 56 <= two <= 58) and 12 <= n <= 19)  # Maestro
    )


def _is_card(text: str) -> bool:
    from stdnum import luhn  # noqa: PLC0415 - only candidates get here

    digits = re.sub(r"[ \-]", "", text)
    return 13 <= len(digits) <= 19 and _card_network(digits) and luhn.is_valid(digits)


def _is_iban(text: str) -> bool:
    from stdnum import iban  # noqa: PLC0415

    return iban.is_valid(text)


def _accept_ssn(text: str) -> int | None:
    from stdnum.us import ssn  # noqa: PLC0415

    return len(text) if ssn.is_valid(text.replace(" ", "-")) else None


def _accept_ipv4(text: str) -> int | None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return len(text)


def _accept_ipv6(text: str) -> int | None:
    trimmed = text.rstrip(".:") if not text.endswith("::") else text.rstrip(".")
    address = trimmed.split("%", 1)[0]
    # At least five hex digits, one of them decimal: "::1", "a::b" or "dead::beef" are more often code or
    # words than a person's address.
    if len(re.findall(r"[0-9A-Fa-f]", address)) < 5 or not re.search(r"[0-9]", address):
        return None
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return None
    return len(trimmed)


_API_KEY = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<pii>"
    r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_\-]{20,}"  # OpenAI, Anthropic
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r")"
    r"|(?i:api[_\-]?key|secret|token|password|passwd|access[_\-]?key)[\"']?\s*[:=]\s*[\"']?"
    r"(?P<pii2>[^\s\"',;]{8,})"
)
# JSON object keys whose string value is a secret as a whole.
_SECRET_KEY = re.compile(r"(?i)^(?:[a-z0-9]+[_\-.])*(?:api[_\-]?key|secret|client[_\-]?secret|token|access[_\-]?token"
                         r"|refresh[_\-]?token|password|passwd|access[_\-]?key|authorization)$")
_BEARER = re.compile(r"(?i:\bbearer)\s+(?P<pii>[A-Za-z0-9\-._~+/]{8,}=*)")
_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}(?![\w\-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}")
_CARD = re.compile(r"(?<![0-9A-Za-z.,\-])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")
_SSN = re.compile(r"(?<![0-9A-Za-z\-])[0-9]{3}([\- ])[0-9]{2}\1[0-9]{4}(?![0-9A-Za-z]|-[0-9])")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![0-9A-Za-z.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9A-Za-z]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{3,45}(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:])"
)
# A run of at least 7 digits with the separators phone numbers are written with: the candidates phonenumbers
# looks at (the library's own matcher is too slow to run over every text).
_PHONE_RUN = re.compile(r"\+?\(?[0-9](?:[ \t\u00a0().\-/]{0,3}[0-9]){6,}")
_DATE_LIKE = re.compile(r"(?:[0-9]{4}[\-/.][0-9]{1,2}[\-/.][0-9]{1,2}|[0-9]{1,2}[\-/.][0-9]{1,2}[\-/.][0-9]{4})"
                        r"(?:[ T][0-9]{1,2})?$")
# Characters that, right before a number, make it part of something else (INV-2024-..., #1234567, v1.2).
_PHONE_BLOCKED_BEFORE = frozenset("#-_/.:")


def _phone_finder(regions: Sequence[str]) -> Callable[[str], list[tuple[int, int]]]:
    """Phone numbers found by phonenumbers' matcher around each run of digits.

    Leniency STRICT_GROUPING: the number is valid and its digit groups are written as its country groups
    them (so "2024-000123" is not taken for +1 202-400-0123).
    """
    import phonenumbers  # noqa: PLC0415 - loads its metadata lazily, but the import itself is not free

    leniency = phonenumbers.Leniency.STRICT_GROUPING

    def find(text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for run in _PHONE_RUN.finditer(text):
            if _DATE_LIKE.match(run.group()):
                continue  # dates and timestamps are common and never phone numbers: spare the matcher
            # A little context on each side lets the matcher reject dates, times and numbers inside words.
            lo, hi = max(0, run.start() - 3), min(len(text), run.end() + 3)
            window = text[lo:hi]
            found: list[tuple[int, int]] = []
            for region in regions:
                for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency):
                    start, end = lo + match.start, lo + match.end
                    before = text[start - 1] if start else " "
                    if before.isalnum() or before in _PHONE_BLOCKED_BEFORE:
                        continue
                    if not any(s < end and start < e for s, e in found):
                        found.append((start, end))
            spans.extend(found)
        return sorted(set(spans))

    return find


BUILTIN_DESCRIPTIONS: dict[str, str] = {
    "api_key": "API keys with a vendor prefix, JWTs, and values of api_key=/secret=/token=/password= assignments",
    "bearer_token": "the token after `Bearer`",
    "email": "e-mail addresses",
    "iban": "IBANs (country format and checksum checked with python-stdnum)",
    "credit_card": "payment card numbers of a known network that pass the Luhn check (python-stdnum)",
    "us_ssn": "US social security numbers written AAA-GG-SSSS (python-stdnum rules)",
    "ipv4": "IPv4 addresses",
    "ipv6": "IPv6 addresses",
    "phone": "phone numbers: international (+...) anywhere, national ones of `pii_phone_regions` (phonenumbers)",
}
BUILTIN_PATTERN_NAMES: tuple[str, ...] = tuple(BUILTIN_DESCRIPTIONS)

# RE2 patterns (pyarrow) every text holding the detector's PII matches: close to the detector's own regular
# expression minus its look-arounds, so that ordinary text rarely passes and costs no Python work.
_SCREENS: dict[str, str] = {
    "api_key": r"sk-[A-Za-z0-9_\-]{20}|(?:sk|pk|rk)_(?:live|test)_|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}"
               r"|github_pat_|xox[abprs]-|AIza[0-9A-Za-z_\-]{35}|eyJ[A-Za-z0-9_\-]{8,}\.eyJ"
               # Any value: in JSON objects a secret key's value is masked whatever its length.
               r"|(?i:api[_\-]?key|secret|token|password|passwd|access[_\-]?key|authorization)[\"']?\s*[:=]\s*[\"']?"
               r"[^\s\"',;]",
    "bearer_token": r"(?i:bearer)\s+[A-Za-z0-9\-._~+/]{8}",
    "email": r"@",
    "iban": r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}",
    "credit_card": r"[0-9](?:[ \-]?[0-9]){12}",
    "us_ssn": r"[0-9]{3}[\- ][0-9]{2}[\- ][0-9]{4}",
    "ipv4": r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
    "ipv6": r"::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:",
    "phone": r"[0-9](?:[ \t\x{00a0}().\-/]{0,3}[0-9]){6}",
}


def builtin_detector(name: str, phone_regions: Sequence[str] = ("US",)) -> Detector:
    """The built-in detector of that name (see BUILTIN_DESCRIPTIONS)."""
    finders: dict[str, Callable[[], Callable[[str], list[tuple[int, int]]]]] = {
        "api_key": lambda: _regex_finder(_API_KEY),
        "bearer_token": lambda: _regex_finder(_BEARER),
        "email": lambda: _regex_finder(_EMAIL),
        "iban": lambda: _regex_finder(_IBAN, lambda s: _longest_valid_prefix(s, _is_iban, 15)),
        "credit_card": lambda: _regex_finder(_CARD, lambda s: _longest_valid_prefix(s, _is_card, 13)),
        "us_ssn": lambda: _regex_finder(_SSN, _accept_ssn),
        "ipv4": lambda: _regex_finder(_IPV4, _accept_ipv4),
        "ipv6": lambda: _regex_finder(_IPV6, _accept_ipv6),
        "phone": lambda: _phone_finder(tuple(phone_regions)),
    }
    if name not in finders:
        raise MaskingError(f"unknown PII pattern {name!r}; built-in patterns: {', '.join(BUILTIN_PATTERN_NAMES)}")
    return Detector(name, finders[name](), _SCREENS[name], BUILTIN_DESCRIPTIONS[name])


def custom_detector(name: str, pattern: str) -> Detector:
    """A detector for a user's regular expression (Python syntax); a group named `pii` limits what is masked."""
    check_pattern_name(name, "pii_custom_patterns")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise MaskingError(f"ingest.pii_custom_patterns[{name!r}]: invalid regular expression ({error})") from None
    if regex.search(""):
        raise MaskingError(f"ingest.pii_custom_patterns[{name!r}]: the pattern matches the empty string")
    return Detector(name, _regex_finder(regex), None, f"custom pattern {pattern!r}")


def check_pattern_name(name: str, setting: str) -> str:
    """Refuse names that are not short lower-case identifiers (they become replacement markers)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise MaskingError(f"ingest.{setting}: pattern name {name!r} must match {_NAME.pattern}")
    return name


def check_replacement(template: str) -> str:
    """Refuse a replacement template other than text with the placeholders {NAME} and {name}."""
    try:
        sample = template.format(NAME="EMAIL", name="email")
    except (KeyError, IndexError, ValueError) as error:
        raise MaskingError(
            f"ingest.pii_replacement {template!r}: only the placeholders {{NAME}} and {{name}} are allowed "
            f"({error}); write literal braces as {{{{ and }}}}"
        ) from None
    if not sample:
        raise MaskingError("ingest.pii_replacement must not be empty: masked values would vanish without a trace")
    return template


def check_phone_regions(regions: Iterable[str]) -> list[str]:
    """Upper-case region codes phonenumbers knows (ISO 3166 alpha-2, e.g. US, GB, DE)."""
    import phonenumbers  # noqa: PLC0415

    out = []
    for region in regions:
        code = str(region).strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise MaskingError(f"ingest.pii_phone_regions: {region!r} is not a region phonenumbers knows "
                               "(ISO 3166 alpha-2 code such as US, GB, DE)")
        out.append(code)
    return out


# ------------------------------------------------------------------------------------------------- masker


@dataclass(frozen=True)
class Masker:
    """The configured detectors, the replacement template and the span columns to mask."""

    detectors: tuple[Detector, ...]
    replacement: str = DEFAULT_REPLACEMENT
    columns: tuple[str, ...] = tuple(SPAN_COLUMN_KINDS)
    _tokens: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_replacement(self.replacement)
        names = [d.name for d in self.detectors]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise MaskingError(f"PII pattern names must be unique; repeated: {duplicated}")
        for d in self.detectors:
            self._tokens[d.name] = self.replacement.format(NAME=d.name.upper(), name=d.name)

    @property
    def names(self) -> tuple[str, ...]:
        """Detector names in the order they run."""
        return tuple(d.name for d in self.detectors)

    def token(self, name: str) -> str:
        """The text a value found by detector `name` is replaced with."""
        return self._tokens[name]


def build_masker(
    patterns: Sequence[str] = BUILTIN_PATTERN_NAMES,
    custom_patterns: Mapping[str, str] | None = None,
    replacement: str = DEFAULT_REPLACEMENT,
    fields: Sequence[str] = tuple(MASKABLE_FIELDS),
    phone_regions: Sequence[str] = ("US",),
) -> Masker:
    """A masker from setting values: custom patterns first (in order), then the chosen built-in ones."""
    custom = check_masking_settings(patterns, custom_patterns, replacement, fields)
    regions = check_phone_regions(phone_regions)
    detectors = [custom_detector(name, pattern) for name, pattern in custom.items()]
    detectors += [builtin_detector(name, regions) for name in BUILTIN_PATTERN_NAMES if name in set(patterns)]
    columns = tuple(c for f in MASKABLE_FIELDS if f in fields for c in MASKABLE_FIELDS[f])
    return Masker(tuple(detectors), replacement, columns)


def check_masking_settings(
    patterns: Sequence[str],
    custom_patterns: Mapping[str, str] | None,
    replacement: str,
    fields: Sequence[str],
) -> dict[str, str]:
    """Check the pattern names, custom regular expressions, replacement and fields (not the phone regions,
    which need phonenumbers loaded); returns the custom patterns."""
    unknown = [f for f in fields if f not in MASKABLE_FIELDS]
    if unknown:
        raise MaskingError(f"ingest.pii_fields: unknown field(s) {unknown}; choose from {', '.join(MASKABLE_FIELDS)}")
    unknown_patterns = sorted(set(patterns) - set(BUILTIN_PATTERN_NAMES))
    if unknown_patterns:
        raise MaskingError(f"ingest.pii_patterns: unknown pattern(s) {unknown_patterns}; built-in patterns: "
                           f"{', '.join(BUILTIN_PATTERN_NAMES)} (add others under pii_custom_patterns)")
    custom = dict(custom_patterns or {})
    clash = sorted(set(custom) & set(BUILTIN_PATTERN_NAMES))
    if clash:
        raise MaskingError(f"ingest.pii_custom_patterns: {clash} are built-in pattern names; choose other names")
    for name, pattern in custom.items():
        custom_detector(name, pattern)
    check_replacement(replacement)
    return custom


def masker_from_settings(ingest: Any) -> Masker | None:
    """The masker the ingest settings ask for, or None when `mask_pii` is off (then ingest pays nothing)."""
    if not getattr(ingest, "mask_pii", False):
        return None
    return build_masker(ingest.pii_patterns, ingest.pii_custom_patterns, ingest.pii_replacement,
                        ingest.pii_fields, ingest.pii_phone_regions)


def mask_text(text: str, masker: Masker, detectors: Iterable[Detector] | None = None) -> tuple[str, Counter]:
    """The text with every PII value replaced, and how many values each detector replaced."""
    counts: Counter = Counter()
    for detector in masker.detectors if detectors is None else detectors:
        spans = detector.find(text)
        if not spans:
            continue
        token = masker.token(detector.name)
        parts, last = [], 0
        for start, end in spans:
            if start < last:
                continue  # overlapping finds (phone regions) are masked once
            parts += [text[last:start], token]
            last = end
            counts[detector.name] += 1
        parts.append(text[last:])
        text = "".join(parts)
    return text, counts


def _mask_json_value(value: Any, masker: Masker, detectors: Sequence[Detector], counts: Counter) -> Any:
    """The parsed JSON with every string value masked (object keys are names, not data, and are kept).

    With the api_key detector on, a string under a key that names a secret ({"api_key": "..."}) is masked
    whole: in JSON the key and its value are no longer the `api_key=...` text the pattern looks for.
    """
    if isinstance(value, str):
        masked, found = mask_text(value, masker, detectors)
        counts.update(found)
        return masked
    if isinstance(value, list):
        return [_mask_json_value(v, masker, detectors, counts) for v in value]
    if isinstance(value, dict):
        secrets = any(d.name == "api_key" for d in detectors)
        out = {}
        for key, item in value.items():
            if secrets and isinstance(item, str) and item and isinstance(key, str) and _SECRET_KEY.match(key):
                out[key] = masker.token("api_key")
                counts["api_key"] += 1
            else:
                out[key] = _mask_json_value(item, masker, detectors, counts)
        return out
    return value


def mask_value(value: str, kind: ValueKind, masker: Masker,
               detectors: Sequence[Detector] | None = None) -> tuple[str, Counter]:
    """Mask one stored value: plain text, or JSON text whose string values are masked (text if not JSON)."""
    chosen = masker.detectors if detectors is None else detectors
    if kind == "json":
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return mask_text(value, masker, chosen)
        counts: Counter = Counter()
        masked = _mask_json_value(parsed, masker, chosen, counts)
        return (orjson.dumps(masked).decode() if counts else value), counts
    return mask_text(value, masker, chosen)


def _as_arrow(values: pd.Series) -> Any:
    import pyarrow as pa  # noqa: PLC0415 - pandas' own dependency, loaded only when masking

    return pa.array(values, type=pa.large_string(), from_pandas=True)


def _matches(array: Any, pattern: str) -> np.ndarray:
    import pyarrow.compute as pc  # noqa: PLC0415

    return pc.match_substring_regex(array, pattern).fill_null(False).to_numpy(zero_copy_only=False)


@dataclass
class _Screened:
    """One column after screening: the rows worth scanning and the detectors to run on each of them."""

    positions: np.ndarray
    detectors: list[list[Detector]]


def _screen(values: pd.Series, masker: Masker, kind: ValueKind) -> _Screened:
    """The rows of a column worth scanning in Python, each with the detectors whose screens it passed.

    One RE2 pass over the column with all screens combined (plus, for JSON, escapes that could hide a
    character), then one pass per detector over just the rows that passed: a column without PII costs one
    vectorised scan. Detectors without a screen (custom patterns) run on every non-null value.
    """
    import pyarrow as pa  # noqa: PLC0415

    present = values.notna().to_numpy()
    none: _Screened = _Screened(np.zeros(0, dtype=np.int64), [])
    if not present.any():
        return none
    if any(d.screen is None for d in masker.detectors):
        positions = np.flatnonzero(present)
        escaped = np.ones(len(positions), dtype=bool)
        subset = None
    else:
        array = _as_arrow(values)
        screens = [f"(?:{d.screen})" for d in masker.detectors]
        if kind == "json":
            screens.append(_JSON_ESCAPE)
        positions = np.flatnonzero(_matches(array, "|".join(screens)))
        if not len(positions):
            return none
        subset = array.take(pa.array(positions))
        escaped = _matches(subset, _JSON_ESCAPE) if kind == "json" else np.zeros(len(positions), bool)
    hits = [np.ones(len(positions), dtype=bool) if d.screen is None or subset is None
            else _matches(subset, d.screen) | escaped for d in masker.detectors]
    chosen = [[d for d, hit in zip(masker.detectors, hits, strict=True) if hit[i]] for i in range(len(positions))]
    return _Screened(positions, chosen)


@dataclass
class MaskReport:
    """What masking did to a frame: values replaced per row and per pattern (never the values)."""

    per_row: pd.Series
    by_pattern: Counter = field(default_factory=Counter)
    # Sparse: only rows where something was masked, row position -> counts per pattern.
    row_patterns: dict[int, Counter] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Values replaced in the whole frame."""
        return int(sum(self.by_pattern.values()))


def mask_frame(frame: pd.DataFrame, columns: Mapping[str, ValueKind], masker: Masker) -> tuple[pd.DataFrame,
                                                                                              MaskReport]:
    """A copy of the frame with PII masked in the given columns (missing columns are skipped), and a report.

    Only the columns that change are copied; rows without PII keep their values untouched. The columns are
    screened in parallel threads (pyarrow releases the GIL), then the few rows that passed are masked.
    """
    per_row = np.zeros(len(frame), dtype=np.int64)
    report = MaskReport(pd.Series(per_row, index=frame.index))
    out = frame.copy(deep=False)
    present = [c for c in columns if c in frame.columns] if len(frame) else []
    with ThreadPoolExecutor(max_workers=max(1, min(len(present), os.cpu_count() or 1))) as pool:
        screened = dict(zip(present, pool.map(lambda c: _screen(frame[c], masker, columns[c]), present),
                            strict=True))
    for column in present:
        found = screened[column]
        if not len(found.positions):
            continue
        values = frame[column]
        raw = values.to_numpy(dtype=object)
        updates: dict[int, str] = {}
        for position, chosen in zip(found.positions.tolist(), found.detectors, strict=True):
            if not chosen:
                continue
            masked, counts = mask_value(raw[position], columns[column], masker, chosen)
            if counts:
                updates[position] = masked
                per_row[position] += sum(counts.values())
                report.by_pattern.update(counts)
                report.row_patterns.setdefault(position, Counter()).update(counts)
        if updates:
            replaced = raw.copy()
            for position, masked in updates.items():
                replaced[position] = masked
            out[column] = pd.Series(replaced, index=frame.index, dtype=values.dtype)
    report.per_row = pd.Series(per_row, index=frame.index, dtype="Int64")
    return out, report


def mask_spans(spans: pd.DataFrame, masker: Masker) -> tuple[pd.DataFrame, MaskReport]:
    """Mask the configured span columns; the frame gets `pii_masked` (values replaced per row)."""
    kinds = {c: SPAN_COLUMN_KINDS[c] for c in masker.columns}
    masked, report = mask_frame(spans, kinds, masker)
    masked["pii_masked"] = report.per_row.to_numpy()
    masked["pii_masked"] = masked["pii_masked"].astype("Int64")
    return masked, report


def mask_quarantine(quarantined: pd.DataFrame, masker: Masker) -> tuple[pd.DataFrame, MaskReport]:
    """Mask quarantined records whole (raw text and detail); the frame gets `pii_masked` per row."""
    masked, report = mask_frame(quarantined, QUARANTINE_COLUMN_KINDS, masker)
    masked["pii_masked"] = report.per_row.to_numpy()
    masked["pii_masked"] = masked["pii_masked"].astype("Int64")
    return masked, report


def counts_by_file(frame: pd.DataFrame, report: MaskReport) -> dict[str, Counter]:
    """Per source file, the values masked per pattern (from a frame's report)."""
    out: dict[str, Counter] = {}
    if not report.row_patterns:
        return out
    files = frame["source_file"].to_numpy(dtype=object)
    for position, counts in report.row_patterns.items():
        out.setdefault(str(files[position]), Counter()).update(counts)
    return out
