"""PII redaction for eval cases: e-mail addresses, phone numbers, card numbers and configured patterns.

Applied to every text of a case (messages, context, outputs, corrections, comments) before anything is
written, so neither the dataset files nor the warehouse table ever hold the original values. Order matters
and is fixed: e-mail addresses first (their digits must not look like phone numbers), then the configured
patterns (site-specific ids), then card numbers, then phone numbers.

- E-mail addresses: a regex for the common addr-spec shape (no library finds addresses in free text).
- Card numbers: 13-19 digits, optionally grouped by spaces or dashes, that pass the Luhn check
  (`stdnum.luhn`); other long numbers (order ids, timestamps) are left alone.
- Phone numbers: Google's libphonenumber port (`phonenumbers.PhoneNumberMatcher`, leniency VALID) for each
  configured default region; numbers written with +<country code> are found whatever the region.

Each match becomes a placeholder `<EMAIL>`, `<PHONE>`, `<CARD>` or `<NAME>` for a pattern NAME; counts per
kind are returned so the manifest can say how much was removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import phonenumbers
from stdnum import luhn

from aiobs_pipeline.evals.settings import RedactionSettings

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")


class Redactor:
    """Redacts one settings' worth of PII kinds from strings and from nested JSON-like values."""

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        self._patterns = [(name.upper(), re.compile(p)) for name, p in self.settings.patterns.items()]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with every PII match replaced by its placeholder, and the matches per kind."""
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        s = self.settings
        if s.emails:
            text = _sub(_EMAIL, "EMAIL", text, counts)
        for name, pattern in self._patterns:
            text = _sub(pattern, name, text, counts)
        if s.card_numbers:
            text = _sub(_CARD, "CARD", text, counts, keep=lambda raw: not _is_card(raw))
        if s.phone_numbers:
            for region in s.phone_regions:
                text = _redact_phones(text, region, counts)
        return text, counts

    def redact_value(self, value: Any) -> tuple[Any, Counter[str]]:
        """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
        counts: Counter[str] = Counter()

        def walk(item: Any) -> Any:
            if isinstance(item, str):
                out, found = self.redact(item)
                counts.update(found)
                return out
            if isinstance(item, Mapping):
                return {key: walk(v) for key, v in item.items()}
            if isinstance(item, list | tuple):
                return [walk(v) for v in item]
            return item

        return walk(value), counts


def _sub(pattern: re.Pattern[str], kind: str, text: str, counts: Counter[str], keep: Any = None) -> str:
    def replace(match: re.Match[str]) -> str:
        if keep is not None and keep(match.group(0)):
            return match.group(0)
        counts[kind] += 1
        return f"<{kind}>"

    return pattern.sub(replace, text)


def _is_card(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _redact_phones(text: str, region: str, counts: Counter[str]) -> str:
    matches = list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))
    for match in reversed(matches):
        text = f"{text[:match.start]}<PHONE>{text[match.end:]}"
        counts["PHONE"] += 1
    return text
