"""Confidence detector: stated labels and percentages, hedging, silence as its own value, any language."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline.hallucination.confidence import (
    CONFIDENCE_COLUMNS,
    confidence_scores,
    remove_confidence_statements,
    score_confidence,
)
from aiobs_pipeline.hallucination.settings import ConfidenceSettings


@pytest.mark.parametrize(("text", "score", "label"), [
    ("Refunds are accepted within 30 days [kb-0101].\nConfidence: high", 0.9, "high"),
    ("The SDK retries twice.\n**Confidence:** Medium", 0.6, "medium"),
    ("It is probably the EU region.\nConfidence level - LOW", 0.25, "low"),
    ("I answer this with very low confidence: the limit is 10 MB.", 0.1, "very low"),
    ("Answer: 42 (confidence: very high)", 0.95, "very high"),
])
def test_stated_labels(text: str, score: float, label: str) -> None:
    result = score_confidence(text)
    assert (result.score, result.source, result.label) == (score, "stated_label", label)


@pytest.mark.parametrize(("text", "score"), [
    ("The outage started at 14:05 UTC.\nConfidence: 85%", 0.85),
    ("I am 70% confident that the invoice was paid.", 0.7),
    ("confidence score: 0.4", 0.4),
    ("Confidence: 8/10", 0.8),
    ("Confidence: 92 percent", 0.92),
])
def test_stated_percentages(text: str, score: float) -> None:
    result = score_confidence(text)
    assert result.source == "stated_percent"
    assert result.score == pytest.approx(score)


def test_last_statement_wins_and_hedges_are_kept_as_evidence() -> None:
    result = score_confidence("I think it might be version 2.\nConfidence: high\n\nUpdate - Confidence: low")
    assert result.label == "low" and result.score == 0.25
    assert "i think" in result.evidence


def test_out_of_range_percentage_is_not_a_statement() -> None:
    result = score_confidence("The answer is Paris. Confidence: 150%")
    assert result.score is None and result.source == "none"


def test_hedging_lowers_the_score_strong_more_than_mild() -> None:
    mild = score_confidence("I think the refund window is 30 days.")
    strong = score_confidence("I'm not sure, but the refund window is 30 days.")
    both = score_confidence("I'm not entirely sure, but I think it might be 30 days.")
    assert mild.source == strong.source == both.source == "hedging"
    assert 0 < both.score < strong.score < mild.score < ConfidenceSettings().hedge_base
    assert "i'm not entirely sure" in both.evidence


def test_curly_apostrophes_and_case_are_read() -> None:
    assert score_confidence("I’M NOT SURE this is right.").source == "hedging"


def test_no_statement_is_its_own_value_not_medium() -> None:
    result = score_confidence("Python 3.11 was released in October 2022.")
    assert result.score is None and result.source == "none" and result.label is None


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_empty_response(text: str | None) -> None:
    result = score_confidence(text)
    assert result.score is None and result.source == "none" and result.note == "empty response"


@pytest.mark.parametrize("text", [
    "我认为答案可能是巴黎，但我不确定。",
    "Я не уверен, но, возможно, это Париж.",
    "Je pense que c'est peut-être Paris, mais je ne suis pas sûr.",
    "たぶん東京です。",
])
def test_non_english_text_gets_no_score_without_crashing(text: str) -> None:
    result = score_confidence(text)
    assert result.score is None and result.source == "none"
    assert result.note and "English" in result.note


def test_non_english_answer_with_an_english_statement_is_read() -> None:
    assert score_confidence("答案是巴黎。\nConfidence: high").score == 0.9


def test_code_and_advice_are_not_hedges() -> None:
    assert score_confidence("Set it like this:\n```python\nmaybe = might_fail()\n```").source == "none"
    assert score_confidence("You might want to restart the worker after the upgrade.").source == "none"
    assert score_confidence("Caching could be used to cut the cost of repeated prompts.").source == "none"
    assert score_confidence("The error could be a timeout on the proxy.").source == "hedging"


def test_settings_change_labels_and_hedges() -> None:
    custom = ConfidenceSettings(label_scores={"High": 0.8, "Low": 0.1}, extra_mild_hedges=["kind of"])
    assert score_confidence("Confidence: HIGH", custom).score == 0.8
    assert score_confidence("It is kind of slow on Mondays.", custom).evidence == ("kind of",)


def test_settings_reject_scores_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="label_scores"):
        ConfidenceSettings(label_scores={"high": 1.5})


def test_statement_lines_are_removed_for_grounding() -> None:
    text = "Refunds take 5 days [kb-1].\n**Confidence:** high\nConfidence intervals are wide. (confidence: 80%)"
    cleaned = remove_confidence_statements(text)
    assert "high" not in cleaned and "80%" not in cleaned
    assert "Refunds take 5 days" in cleaned and "Confidence intervals are wide." in cleaned


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_score_in_range_or_none(text: str) -> None:
    result = score_confidence(text)
    assert result.score is None or 0 <= result.score <= 1
    assert (result.score is None) == (result.source == "none")


def test_confidence_scores_frame() -> None:
    spans = pd.DataFrame({"export_hour": pd.Timestamp("2025-03-01T10:00:00Z"), "trace_id": ["t1", "t2", "t3"],
                          "span_id": ["a", "b", "c"],
                          "output_text": ["X.\nConfidence: high", "I think it is Y.", float("nan")]})
    scores = confidence_scores(spans)
    assert list(scores.columns) == ["export_hour", "trace_id", "span_id", *CONFIDENCE_COLUMNS]
    assert list(scores["confidence_source"]) == ["stated_label", "hedging", "none"]
    assert scores.loc[0, "confidence_score"] == 0.9 and pd.isna(scores.loc[2, "confidence_score"])
    assert json.loads(scores.loc[1, "confidence_evidence"]) == ["i think"]
