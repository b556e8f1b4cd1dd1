"""PII redaction: e-mails, phone numbers (phonenumbers), Luhn-valid card numbers, configured patterns; and no
false positives on ordinary product text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiobs_pipeline.evals.redact import Redactor
from aiobs_pipeline.evals.settings import RedactionSettings
from aiobs_pipeline.generate.scenario import KNOWLEDGE_BASE, TOPICS


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("write to jane.doe+billing@example.co.uk today", "write to <EMAIL> today", "EMAIL"),
    ("Mail ops@acme.io.", "Mail <EMAIL>.", "EMAIL"),
    ("call (415) 555-2671 now", "call <PHONE> now", "PHONE"),
    ("our London desk is +44 20 7946 0958", "our London desk is <PHONE>", "PHONE"),
    ("card 4111 1111 1111 1111 expired", "card <CARD> expired", "CARD"),
    ("card 5500-0000-0000-0004", "card <CARD>", "CARD"),
    ("amex 378282246310005", "amex <CARD>", "CARD"),
])
def test_each_kind_is_replaced_by_its_placeholder(text: str, expected: str, kind: str) -> None:
    redacted, counts = Redactor().redact(text)
    assert redacted == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "order 4111111111111112 shipped",  # 16 digits that fail the Luhn check: an id, not a card
    "Invoices above 1,000 USD; 600 requests per minute; up to 3,000 on request.",
    "Deployed 2.14.0 on 2024-05-01T08:15:00Z to us-east (build 20240501).",
    "See [kb-0101] and [kb-1203].",
])
def test_ordinary_numbers_are_kept(text: str) -> None:
    assert Redactor().redact(text) == (text, {})


def test_generated_knowledge_base_has_no_false_positives() -> None:
    redactor = Redactor()
    texts = [d.text for d in KNOWLEDGE_BASE] + [f for t in TOPICS for f in (*t.facts, *t.wrong_facts)]
    assert all(redactor.redact(text)[0] == text for text in texts)


def test_configured_patterns_and_switches() -> None:
    settings = RedactionSettings(patterns={"employee_id": r"\bEMP-\d{5}\b"}, phone_numbers=False)
    redactor = Redactor(settings)
    text, counts = redactor.redact("EMP-12345 called (415) 555-2671 from a@b.io")
    assert text == "<EMPLOYEE_ID> called (415) 555-2671 from <EMAIL>"
    assert counts == {"EMPLOYEE_ID": 1, "EMAIL": 1}


def test_phone_regions_find_national_numbers() -> None:
    german = "Rufen Sie 030 12345678 an"
    assert Redactor().redact(german)[0] == german  # not a valid US number
    assert Redactor(RedactionSettings(phone_regions=["US", "de"])).redact(german)[0] == "Rufen Sie <PHONE> an"


def test_nested_values_are_copied_with_every_string_redacted() -> None:
    value = {"messages": [{"role": "user", "content": "I am x@y.org"}], "n": 3, "tags": ("a@b.cc", None)}
    redacted, counts = Redactor().redact_value(value)
    assert redacted == {"messages": [{"role": "user", "content": "I am <EMAIL>"}], "n": 3, "tags": ["<EMAIL>", None]}
    assert value["messages"][0]["content"] == "I am x@y.org"
    assert counts == {"EMAIL": 2}


def test_invalid_settings_name_the_setting() -> None:
    with pytest.raises(ValidationError, match=r"evals.redaction.patterns\['bad'\] is not a valid regex"):
        RedactionSettings(patterns={"bad": "(unclosed"})
    with pytest.raises(ValidationError, match="matches the empty string"):
        RedactionSettings(patterns={"empty": "x*"})
    with pytest.raises(ValidationError, match="unknown region 'XX'"):
        RedactionSettings(phone_regions=["XX"])
