"""Citation detector: every syntax, checked against the span's retrieved documents."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline.hallucination.citations import (
    CITATION_COLUMNS,
    check_citations,
    citation_checks,
    normalise_url,
    remove_citations,
)
from aiobs_pipeline.hallucination.settings import CitationSettings

DOCUMENTS = json.dumps([
    {"id": "kb-0101", "score": 0.91, "rank": 1, "text": "Refunds are accepted within 30 days of purchase.",
     "metadata": {"title": "Refund policy", "url": "https://help.acme.com/refunds/"}},
    {"id": "kb-0102", "score": 0.84, "rank": 2, "text": "Standard shipping takes 5 business days.",
     "metadata": {"title": "Shipping times", "file_name": "shipping.pdf"}},
    {"id": "kb-0307", "score": 0.52, "rank": 3, "text": "Enterprise plans include SSO."},
])


def test_generated_style_answer_with_a_fabricated_id() -> None:
    answer = ("Refunds are accepted within 30 days [kb-0101]. Shipping takes 5 business days [kb-0102] "
              "and express shipping 1 day [kb-0199].\nConfidence: high")
    result = check_citations(answer, DOCUMENTS)
    assert result.score == pytest.approx(2 / 3, abs=1e-4)
    assert result.invalid == ("kb-0199",)
    assert [c.document_id for c in result.citations] == ["kb-0101", "kb-0102", None]


def test_numbered_citations_are_ranks() -> None:
    result = check_citations("Refunds take 30 days [1]; shipping 5 days [2, 4]. See also [1-3].", DOCUMENTS)
    assert {c.target: c.valid for c in result.citations} == {"1": True, "2": True, "4": False, "3": True}
    assert result.invalid == ("4",)


def test_numbered_citation_uses_position_when_documents_have_no_rank() -> None:
    docs = [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}]
    assert check_citations("As noted [2].", docs).score == 1.0
    assert check_citations("As noted [3].", docs).invalid == ("3",)


def test_footnotes_with_and_without_definitions() -> None:
    answer = "Refunds take 30 days[^1] and SSO is included[^2].\n\n[^1]: https://help.acme.com/refunds"
    result = check_citations(answer, DOCUMENTS)
    assert [(c.kind, c.valid) for c in result.citations] == [("footnote", True), ("footnote", True)]
    assert check_citations("Claim[^9].", DOCUMENTS).invalid == ("9",)


def test_source_asides_match_ids_and_titles() -> None:
    assert check_citations("Refunds take 30 days (Source: Refund Policy).", DOCUMENTS).score == 1.0
    assert check_citations("Refunds take 30 days (source: kb-0101).", DOCUMENTS).score == 1.0
    result = check_citations("Refunds take 30 days.\nSources: kb-0101; Pricing FAQ", DOCUMENTS)
    assert result.invalid == ("Pricing FAQ",) and result.score == 0.5


def test_cjk_brackets_in_openai_file_search_style() -> None:
    result = check_citations("Shipping takes 5 days【4:0†shipping.pdf】 and SSO【3†source】.", DOCUMENTS)
    assert [(c.target, c.valid) for c in result.citations] == [("shipping.pdf", True), ("3", True)]
    assert check_citations("答案在这里【kb-0999】。", DOCUMENTS).invalid == ("kb-0999",)


def test_urls_are_matched_after_normalisation() -> None:
    answer = ("Details: [the policy](http://www.help.acme.com/refunds) and "
              "https://help.acme.com/refunds/. Not this: https://example.org/made-up.")
    result = check_citations(answer, DOCUMENTS)
    assert result.score == 0.5
    assert result.invalid == ("https://example.org/made-up",)
    assert normalise_url("HTTPS://WWW.Help.acme.com/refunds/#top") == "help.acme.com/refunds"


def test_no_citations_is_its_own_value() -> None:
    result = check_citations("Refunds are accepted within 30 days.", DOCUMENTS)
    assert result.score is None and result.citations == () and result.note == "no citations"


@pytest.mark.parametrize("documents", [None, "[]", [], ""])
def test_citations_without_documents_are_all_invalid(documents: object) -> None:
    result = check_citations("Refunds take 30 days [kb-0101] [2].", documents)
    assert result.score == 0.0
    assert result.invalid == ("kb-0101", "2")


def test_documents_as_python_list_and_bare_strings() -> None:
    assert check_citations("See [2].", ["first text", "second text"]).score == 1.0
    assert check_citations("See [kb-0101].", json.loads(DOCUMENTS)).score == 1.0


@pytest.mark.parametrize("documents", ['{"id": ', '"just a string"', "42", '[1, 2]'])
def test_unreadable_documents_give_no_score_and_a_note(documents: str) -> None:
    result = check_citations("See [kb-0101].", documents)
    assert result.score is None and result.note.startswith("documents unreadable")


def test_editorial_brackets_checkboxes_and_code_are_not_citations() -> None:
    text = ("He said it was [sic] fine in [Paris].\n- [ ] todo\n- [x] done\n"
            "```python\nvalue = items[0] + cache[kb-0999]\n```")
    assert check_citations(text, DOCUMENTS).score is None


def test_a_bracketed_word_that_names_a_document_is_a_citation() -> None:
    docs = [{"id": "handbook", "text": "Holidays: 25 days."}]
    assert check_citations("You get 25 days [handbook].", docs).score == 1.0


def test_repeated_citations_count_once() -> None:
    result = check_citations("A [kb-0101]. B [kb-0101]. C [kb-0555]. D [kb-0555].", DOCUMENTS)
    assert len(result.citations) == 2 and result.score == 0.5


def test_case_insensitive_id_match() -> None:
    assert check_citations("See [KB-0101].", DOCUMENTS).score == 1.0


def test_custom_id_pattern_setting() -> None:
    strict = CitationSettings(id_pattern=r"kb-\d{4}")
    result = check_citations("See [kb-0101] and [v1.2].", DOCUMENTS, strict)
    assert [c.target for c in result.citations] == ["kb-0101"]
    with pytest.raises(ValueError, match="id_pattern"):
        CitationSettings(id_pattern="[unclosed")


def test_remove_citations_keeps_the_words() -> None:
    text = "Refunds [kb-0101] take 30 days [1, 2] [sic] 【3†a.pdf】 (Source: Refund policy) see [docs](https://x.io)."
    cleaned = remove_citations(text)
    assert "kb-0101" not in cleaned and "【" not in cleaned and "Source" not in cleaned
    assert "[sic]" in cleaned and "docs" in cleaned and "30 days" in cleaned


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]()^【】†:;,-/ ab1kx.hps")), max_size=120))
def test_any_text_never_raises(text: str) -> None:
    result = check_citations(text, DOCUMENTS)
    assert result.score is None or 0 <= result.score <= 1
    assert len(result.invalid) == sum(1 for c in result.citations if not c.valid)


def test_citation_checks_frame() -> None:
    spans = pd.DataFrame({
        "trace_id": ["t1", "t2", "t3"], "span_id": ["a", "b", "c"],
        "output_text": ["Refunds take 30 days [kb-0101] [kb-0999].", "No sources here.", None],
        "documents": [DOCUMENTS, DOCUMENTS, None],
    })
    checks = citation_checks(spans)
    assert list(checks.columns) == ["trace_id", "span_id", *CITATION_COLUMNS]
    assert checks.loc[0, "citation_score"] == 0.5 and json.loads(checks.loc[0, "invalid_citations"]) == ["kb-0999"]
    assert list(checks["citations"]) == [2, 0, 0] and list(checks["valid_citations"]) == [1, 0, 0]
    assert pd.isna(checks.loc[1, "citation_score"]) and checks.loc[1, "citation_note"] == "no citations"
