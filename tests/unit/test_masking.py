"""PII masking at ingest (aiobs_pipeline/ingest/masking.py): each pattern, false positives, JSON, frames,
settings, and the ingest of a landing file with masking on (fast path and per-record path)."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest

from aiobs_pipeline.ingest.masking import (
    BUILTIN_PATTERN_NAMES,
    MaskingError,
    build_masker,
    mask_frame,
    mask_quarantine,
    mask_spans,
    mask_text,
    mask_value,
    masker_from_settings,
)
from aiobs_pipeline.ingest.partition import ingest_files, landing_folder
from aiobs_pipeline.schema import AUDIT_COLUMN_NAMES, QUARANTINE_COLUMN_NAMES, SPAN_COLUMN_NAMES
from aiobs_pipeline.settings import IngestSettings, SettingsError, load_settings

MASKER = build_masker()
HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected", "pattern"), [
    ("mail me at john.doe@example.com please", "mail me at [EMAIL] please", "email"),
    ("Schreiben Sie an jürgen.müller@beispiel.de, danke", "Schreiben Sie an [EMAIL], danke", "email"),
    ("call (415) 555-0132 today", "call [PHONE] today", "phone"),
    ("ring +44 20 7946 0958", "ring [PHONE]", "phone"),
    ("card 4111 1111 1111 1111 exp 2027", "card [CREDIT_CARD] exp 2027", "credit_card"),
    ("amex 378282246310005.", "amex [CREDIT_CARD].", "credit_card"),
    ("IBAN DE89 3704 0044 0532 0130 00 bitte", "IBAN [IBAN] bitte", "iban"),
    ("pay to GB82WEST12345698765432.", "pay to [IBAN].", "iban"),
    ("ssn 536-90-4399 on file", "ssn [US_SSN] on file", "us_ssn"),
    ("client 192.168.1.20 connected", "client [IPV4] connected", "ipv4"),
    ("from 2001:db8::ff00:42:8329 today", "from [IPV6] today", "ipv6"),
    ("link-local fe80::1.", "link-local [IPV6].", "ipv6"),
    ("use sk-proj-abcdefghijklmnopqrstuvwxyz012345 now", "use [API_KEY] now", "api_key"),
    ("AWS AKIAIOSFODNN7EXAMPLE key", "AWS [API_KEY] key", "api_key"),
    ("api_key=AbCdEf123456 rest", "api_key=[API_KEY] rest", "api_key"),
    ('password: "hunter2hunter2"', 'password: "[API_KEY]"', "api_key"),
    ("Authorization: Bearer abc.DEF-123_456~xyz", "Authorization: Bearer [BEARER_TOKEN]", "bearer_token"),
])
def test_each_builtin_pattern_is_masked(text: str, expected: str, pattern: str) -> None:
    masked, counts = mask_text(text, MASKER)
    assert masked == expected
    assert counts == Counter({pattern: 1})


@pytest.mark.parametrize("text", [
    "order 1234567890123 shipped on 2024-01-15",
    "Invoice INV-2024-000123 and order #4155550132",
    "ticket 2024-000123 is open",
    "meeting on 2024-01-15 10:30, back at 12:30:45",
    "dates 15/01/2024 and 01.02.2023, timestamp 2026-10-01T05:12:59.027Z",
    "upgrade to version 10.0.19045.2965, v1.2.3.4 or 3.11.4",
    "price $1,234,567.89 and 0.8734529183 similarity",
    "uuid 550e8400-e29b-41d4-a716-446655440000, trace 4bf92f3577b34da6a3ce929d0e0e4736",
    "ISBN 978-3-16-148410-0 and tracking 1Z999AA10123456784",
    "max token: 4096 tokens; the tokenizer splits words",
    "C++ std::vector<int> and a::b",
    "2026/10/31/12/native-20261031T12.jsonl.gz:3: end before start",
    "write to @support on Twitter or see user@localhost",
    "",
])
def test_ordinary_numbers_and_text_are_not_masked(text: str) -> None:
    assert mask_text(text, MASKER) == (text, Counter())


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # fails the Luhn check
    "number 1234 5678 9012 3456",  # fails the Luhn check
    "number 0000 0000 0000 0000",  # passes Luhn, but no card network starts with 0
    "number 9999 9999 9999 9995",  # passes Luhn, no network starts with 9
])
def test_numbers_that_are_not_valid_cards_are_kept(text: str) -> None:
    assert mask_text(text, MASKER) == (text, Counter())


@pytest.mark.parametrize("text", [
    "IBAN DE89 3704 0044 0532 0130 01",  # wrong check digits
    "ssn 078-05-1120 (the famous specimen) and 000-12-3456, 666-12-3456",
    "address 10.0.0.256 and 300.1.2.3",
])
def test_invalid_ibans_ssns_and_addresses_are_kept(text: str) -> None:
    assert mask_text(text, MASKER) == (text, Counter())


def test_non_english_text() -> None:
    text = "Позвоните мне: +7 495 123-45-67 или напишите на иван@пример.рф. 电话 +86 10 6552 9988。"
    masked, counts = mask_text(text, MASKER)
    assert masked == "Позвоните мне: [PHONE] или напишите на [EMAIL]. 电话 [PHONE]。"
    assert counts == Counter({"phone": 2, "email": 1})
    plain = "Grüße aus Köln – 東京の天気は晴れ – مرحبا بالعالم"
    assert mask_text(plain, MASKER) == (plain, Counter())


def test_phone_regions_decide_national_numbers() -> None:
    text = "ruf an: 030 901820"
    assert mask_text(text, MASKER)[0] == text  # a German national number, not US
    german = build_masker(phone_regions=["us", "DE"])
    assert mask_text(text, german) == ("ruf an: [PHONE]", Counter({"phone": 1}))


def test_several_values_and_patterns_in_one_text() -> None:
    text = "a@b.io, c@d.org, card 5555555555554444, from 10.1.2.3"
    masked, counts = mask_text(text, MASKER)
    assert masked == "[EMAIL], [EMAIL], card [CREDIT_CARD], from [IPV4]"
    assert counts == Counter({"email": 2, "credit_card": 1, "ipv4": 1})


def test_json_values_are_masked_and_the_json_stays_valid() -> None:
    messages = [{"role": "user", "content": "my mail is x@y.com\nthanks"},
                {"role": "user", "content": [{"type": "text", "text": "card 4111111111111111"}]},
                {"role": "assistant", "content": "ok", "tool_calls": [{"arguments": '{"phone": "+1 415 555 0132"}'}]}]
    masked, counts = mask_value(orjson.dumps(messages).decode(), "json", MASKER)
    parsed = orjson.loads(masked)
    assert parsed[0] == {"role": "user", "content": "my mail is [EMAIL]\nthanks"}
    assert parsed[1]["content"][0]["text"] == "card [CREDIT_CARD]"
    assert "[PHONE]" in parsed[2]["tool_calls"][0]["arguments"]
    assert counts == Counter({"email": 1, "credit_card": 1, "phone": 1})


def test_json_escapes_cannot_hide_pii() -> None:
    # \u0040 is "@": the raw text holds no "@", the parsed value does.
    masked, counts = mask_value('{"note": "write to jane\\u0040example.com"}', "json", MASKER)
    assert orjson.loads(masked) == {"note": "write to [EMAIL]"} and counts == Counter({"email": 1})
    frame = pd.DataFrame({"metadata": ['{"note": "write to jane\\u0040example.com"}', '{"a": 1}']})
    out, report = mask_frame(frame, {"metadata": "json"}, MASKER)
    assert orjson.loads(out["metadata"][0]) == {"note": "write to [EMAIL]"} and report.total == 1


def test_secret_keys_in_json_objects_are_masked_whole() -> None:
    value = '{"api_key": "abc", "headers": {"Authorization": "Basic dXNlcjpwYXNz"}, "max_tokens": "512", "n": 5}'
    masked, counts = mask_value(value, "json", MASKER)
    assert orjson.loads(masked) == {"api_key": "[API_KEY]", "headers": {"Authorization": "[API_KEY]"},
                                    "max_tokens": "512", "n": 5}
    assert counts == Counter({"api_key": 2})


def test_invalid_json_is_masked_as_text() -> None:
    masked, counts = mask_value('{"span_id": "x", "content": "mail a@b.com', "json", MASKER)
    assert masked == '{"span_id": "x", "content": "mail [EMAIL]' and counts == Counter({"email": 1})


def test_empty_and_missing_values() -> None:
    assert mask_text("", MASKER) == ("", Counter())
    frame = pd.DataFrame({"output_text": [None, "", "x@y.com", float("nan")], "input_messages": [None] * 4})
    out, report = mask_frame(frame, {"output_text": "text", "input_messages": "json"}, MASKER)
    assert out["output_text"].tolist()[:3] == [None, "", "[EMAIL]"] and pd.isna(out["output_text"][3])
    assert report.per_row.tolist() == [0, 0, 1, 0] and report.by_pattern == Counter({"email": 1})
    empty, report = mask_frame(frame.iloc[:0], {"output_text": "text"}, MASKER)
    assert empty.empty and report.total == 0


def test_frame_masking_counts_per_row_and_leaves_other_rows_alone() -> None:
    clean = "nothing to see here, version 1.2.3"
    frame = pd.DataFrame({
        "output_text": [clean, "call +44 20 7946 0958 or a@b.de", None],
        "error_message": [None, None, "auth failed for key sk-abcdefghijklmnopqrstuvwxyz"],
        "source_file": ["f1", "f1", "f2"],
    })
    out, report = mask_frame(frame, {"output_text": "text", "error_message": "text"}, MASKER)
    assert out["output_text"][0] is frame["output_text"][0]  # untouched rows keep their value
    assert out["output_text"][1] == "call [PHONE] or [EMAIL]"
    assert out["error_message"][2] == "auth failed for key [API_KEY]"
    assert report.per_row.tolist() == [0, 2, 1]
    assert report.row_patterns == {1: Counter({"phone": 1, "email": 1}), 2: Counter({"api_key": 1})}
    assert frame["output_text"][1] == "call +44 20 7946 0958 or a@b.de"  # the input frame is not changed


def test_mask_spans_honours_the_fields_setting() -> None:
    spans = pd.DataFrame({"output_text": ["a@b.com"], "output_messages": ['[{"content": "a@b.com"}]'],
                          "metadata": ['{"email": "a@b.com"}'], "error_message": ["a@b.com"]})
    only_output = build_masker(fields=["output"])
    out, report = mask_spans(spans, only_output)
    assert out["output_text"][0] == "[EMAIL]" and "[EMAIL]" in out["output_messages"][0]
    assert out["metadata"][0] == '{"email": "a@b.com"}' and out["error_message"][0] == "a@b.com"
    assert out["pii_masked"].tolist() == [2] and str(out["pii_masked"].dtype) == "Int64"


def test_quarantined_records_are_masked_whole() -> None:
    quarantined = pd.DataFrame({
        "raw": ['{"span_id": "s1", "metadata": {"user_email": "x@y.com"}}', "not json, call +44 20 7946 0958"],
        "detail": ["f.jsonl:1: field 'start_time' is missing", "f.jsonl:2: not JSON"],
        "source_file": ["f.jsonl", "f.jsonl"],
    })
    out, report = mask_quarantine(quarantined, build_masker(fields=["output"]))  # fields do not limit it
    assert orjson.loads(out["raw"][0]) == {"span_id": "s1", "metadata": {"user_email": "[EMAIL]"}}
    assert out["raw"][1] == "not json, call [PHONE]"
    assert out["pii_masked"].tolist() == [1, 1]


def test_custom_patterns_and_replacement() -> None:
    masker = build_masker(patterns=["email"], custom_patterns={"employee_id": r"\bEMP-\d{6}\b",
                                                               "order_ref": r"order (?P<pii>[A-Z]{3}\d{5})"},
                          replacement="<{name}>")
    masked, counts = mask_text("EMP-123456 placed order ABC12345 for a@b.io, call +44 20 7946 0958", masker)
    assert masked == "<employee_id> placed order <order_ref> for <email>, call +44 20 7946 0958"
    assert counts == Counter({"employee_id": 1, "order_ref": 1, "email": 1})
    assert masker.names == ("employee_id", "order_ref", "email")


@pytest.mark.parametrize(("options", "message"), [
    ({"custom_patterns": {"bad": "ORD-("}}, "invalid regular expression"),
    ({"custom_patterns": {"email": "x"}}, "built-in pattern names"),
    ({"custom_patterns": {"Bad Name": "x"}}, "must match"),
    ({"custom_patterns": {"everything": ".*"}}, "matches the empty string"),
    ({"patterns": ["email", "passport"]}, "unknown pattern(s) ['passport']"),
    ({"fields": ["input_messages", "prompt"]}, "unknown field(s) ['prompt']"),
    ({"replacement": "[{KIND}]"}, "only the placeholders"),
    ({"replacement": ""}, "must not be empty"),
    ({"phone_regions": ["XX"]}, "not a region"),
])
def test_bad_masking_settings_are_refused(options: dict, message: str) -> None:
    with pytest.raises(MaskingError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        build_masker(**options)


def test_settings_are_off_by_default_and_checked_when_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestSettings().mask_pii is False and masker_from_settings(IngestSettings()) is None
    assert tuple(IngestSettings().pii_patterns) == BUILTIN_PATTERN_NAMES
    monkeypatch.setenv("AIOBS_INGEST__MASK_PII", "true")
    monkeypatch.setenv("AIOBS_INGEST__PII_PHONE_REGIONS", '["gb"]')
    monkeypatch.setenv("AIOBS_INGEST__PII_FIELDS", '["input_messages"]')
    settings = load_settings()
    masker = masker_from_settings(settings.ingest)
    assert masker is not None and masker.columns == ("input_messages",)
    assert settings.ingest.pii_phone_regions == ["GB"]
    monkeypatch.setenv("AIOBS_INGEST__PII_CUSTOM_PATTERNS", '{"bad": "ORD-("}')
    with pytest.raises(SettingsError, match=r"pii_custom_patterns\['bad'\]: invalid regular expression"):
        load_settings()


def _native(span_id: str, **fields: object) -> dict:
    return {"trace_id": "t1", "span_id": span_id, "name": "chat_completion", "kind": "llm",
            "start_time": "2026-10-01T05:10:00Z", "end_time": "2026-10-01T05:10:01Z", "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}, **fields}


@pytest.mark.parametrize("fast_path", [True, False])
def test_ingest_masks_spans_quarantine_and_audits_counts(tmp_path: Path, fast_path: bool) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    good = [
        _native("s1", messages=[{"role": "user", "content": "I am jane.roe@example.org, card 4111 1111 1111 1111"}],
                response="Noted, we will call +44 20 7946 0958.",
                metadata={"user_id": "u1", "client_ip": "203.0.113.7"}),
        _native("s2", messages=[{"role": "user", "content": "What is the refund policy for order 1234567?"}],
                response="Refunds take 5 days."),
        _native("s3", status="error", error="auth failed for api_key=sk-live-abcdefghijklmnop",
                documents=[{"doc_id": "kb-1", "content": "Contact billing@example.com", "score": 0.87345291}]),
    ]
    bad = _native("s4", start_time="2026-10-01T05:20:00Z", messages=[{"role": "user", "content": "ssn 536-90-4399"}])
    lines = [orjson.dumps(r) for r in good] + [orjson.dumps(bad), b'{"span_id": "s5", "content": "a@b.com']
    with gzip.open(folder / "native-x.jsonl.gz", "wb") as out:
        out.write(b"\n".join(lines) + b"\n")

    plain = ingest_files(sorted(folder.iterdir()), HOUR, tmp_path, fast_path=fast_path)
    assert list(plain.spans.columns) == list(SPAN_COLUMN_NAMES) and plain.pii_masked is None
    assert plain.audit["pii_masked"].isna().all() and plain.quarantined["pii_masked"].isna().all()

    result = ingest_files(sorted(folder.iterdir()), HOUR, tmp_path, fast_path=fast_path, masker=MASKER)
    spans = result.spans.set_index("span_id")
    assert list(result.spans.columns) == [*SPAN_COLUMN_NAMES, "pii_masked"]
    # s1: e-mail, card, the phone in output_text and output_messages, the IP in metadata; s3: the key, and
    # the e-mail in the document's text and content (the native reader keeps both).
    assert spans["pii_masked"].to_dict() == {"s1": 5, "s2": 0, "s3": 3}
    assert orjson.loads(spans.at["s1", "input_messages"])[0]["content"] == "I am [EMAIL], card [CREDIT_CARD]"
    assert spans.at["s1", "output_text"] == "Noted, we will call [PHONE]."
    assert orjson.loads(spans.at["s1", "metadata"])["client_ip"] == "[IPV4]"
    assert spans.at["s3", "error_message"] == "auth failed for api_key=[API_KEY]"
    assert orjson.loads(spans.at["s3", "documents"])[0]["text"] == "Contact [EMAIL]"
    assert spans.at["s2", "input_messages"] == plain.spans.set_index("span_id").at["s2", "input_messages"]

    text = result.spans.to_json() + result.quarantined.to_json()
    for secret in ("jane.roe", "4111", "7946", "203.0.113.7", "abcdefghijklmnop", "billing@", "536-90-4399",
                   "a@b.com"):
        assert secret not in text, secret
    assert list(result.quarantined.columns) == list(QUARANTINE_COLUMN_NAMES)
    assert sorted(result.quarantined["pii_masked"].tolist()) == [1, 1]

    assert list(result.audit.columns) == list(AUDIT_COLUMN_NAMES)
    audit = result.audit.iloc[0]
    expected = {"api_key": 1, "credit_card": 1, "email": 4, "ipv4": 1, "phone": 2, "us_ssn": 1}
    assert orjson.loads(audit["pii_masked_by_pattern"]) == expected and audit["pii_masked"] == 10
    assert result.pii_masked == Counter(expected)
    # Masking changes text only: the spans and their counts are the same as without it.
    assert len(result.spans) == len(plain.spans) == 3 and len(result.quarantined) == len(plain.quarantined) == 2


def test_formats_doc_lists_the_masking_columns() -> None:
    from aiobs_pipeline.schema import AUDIT_COLUMNS, QUARANTINE_COLUMNS, SPAN_INGEST_COLUMNS  # noqa: PLC0415

    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    for column in (*SPAN_INGEST_COLUMNS, *QUARANTINE_COLUMNS, *AUDIT_COLUMNS):
        assert f"| `{column.name}` | {column.type} |" in text, column.name
