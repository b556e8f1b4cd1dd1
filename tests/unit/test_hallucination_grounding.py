"""Grounding detector and the shared text helpers: sentence support in the retrieved context."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline.hallucination.grounding import (
    GROUNDING_COLUMNS,
    build_context,
    causal_conflict,
    check_grounding,
    claim_sentences,
    comparison_conflict,
    grounding_checks,
    negation_conflict,
    score_grounding,
    with_trace_documents,
)
from aiobs_pipeline.hallucination.settings import GroundingSettings
from aiobs_pipeline.hallucination.text import (
    entity_tokens,
    last_user_text,
    numbers,
    same_root_name,
    split_sentences,
    stem,
)

DOCUMENTS = json.dumps([
    {"id": "kb-0101", "rank": 1, "score": 0.91,
     "text": "Refunds are accepted within 30 days of purchase. Refunds are paid to the original payment "
             "method within 5 business days. Gift cards cannot be refunded."},
    {"id": "kb-0102", "rank": 2, "score": 0.84,
     "text": "Standard shipping takes 5 business days within Germany and Austria. Express shipping is "
             "handled by DHL and arrives the next day."},
])
MESSAGES = json.dumps([
    {"role": "system", "content": "Answer from the sources and cite them as [doc_id]."},
    {"role": "user", "content": "How long do I have to return my Acme Blender?"},
])


def test_grounded_answer_scores_high() -> None:
    answer = ("You can return it within 30 days of purchase [kb-0101]. The refund is paid to the original "
              "payment method within 5 business days [kb-0101].\nConfidence: high")
    result = check_grounding(answer, DOCUMENTS, MESSAGES)
    assert result.score is not None and result.score > 0.9
    assert result.unsupported == ()
    assert len(result.sentences) == 2  # the confidence line is not a claim


def test_wrong_number_and_invented_entity_are_named() -> None:
    answer = ("Refunds are accepted within 90 days of purchase. Express shipping is handled by FedEx "
              "Logistics and arrives the next day.")
    result = check_grounding(answer, DOCUMENTS)
    first, second = result.sentences
    assert first.unsupported_numbers == ("90",)
    assert second.unsupported_entities == ("FedEx", "Logistics")
    grounded = check_grounding("Refunds are accepted within 30 days of purchase.", DOCUMENTS)
    assert first.score < grounded.score


def test_unsupported_sentence_is_listed() -> None:
    answer = ("Standard shipping takes 5 business days. Our founder Maria Keller opened the first store in "
              "Lisbon in 1987 after winning a lottery.")
    result = check_grounding(answer, DOCUMENTS)
    assert result.unsupported == ("Our founder Maria Keller opened the first store in Lisbon in 1987 after "
                                  "winning a lottery.",)
    assert result.sentences[0].score > 0.9


def test_words_of_the_question_are_not_counted_as_invented() -> None:
    answer = "You can return the Acme Blender within 30 days of purchase."
    with_question = check_grounding(answer, DOCUMENTS, MESSAGES).sentences[0]
    without = check_grounding(answer, DOCUMENTS).sentences[0]
    assert with_question.unsupported_entities == ()
    assert set(without.unsupported_entities) == {"Acme", "Blender"}
    assert with_question.score > without.score
    off = GroundingSettings(messages_count_as_said=False)
    assert check_grounding(answer, DOCUMENTS, MESSAGES, off).sentences[0].unsupported_entities != ()


def test_spelling_variants_and_inflections_count_as_found() -> None:
    docs = [{"text": "Snoop Dogg starred in Turbo. The healing process of the wound is slow."}]
    result = check_grounding("Snoop Dog was starring in Turbo and the wound heals slowly.", docs)
    assert result.sentences[0].unsupported_words == ()


def test_glued_scraped_context_is_read() -> None:
    docs = [{"text": "Iron Man is starring Robert Downey Jr.Robert Downey Jr. starred in ZodiacZodiac is "
                     "starring Jake Gyllenhaal"}]
    assert check_grounding("Jake Gyllenhaal starred in Zodiac.", docs).sentences[0].unsupported_entities == ()


@pytest.mark.parametrize("documents", [None, "", "[]", [], [{"id": "a", "text": ""}], [{"id": "a"}]])
def test_no_context_gives_no_score(documents: object) -> None:
    result = check_grounding("Refunds are accepted within 30 days.", documents)
    assert result.score is None and result.note == "no retrieved context"


def test_unreadable_documents_give_no_score_and_a_note() -> None:
    result = check_grounding("Refunds are accepted within 30 days.", "{not json")
    assert result.score is None and result.note.startswith("documents unreadable")


@pytest.mark.parametrize(("answer", "note"), [
    (None, "empty response"), ("", "empty response"), ("Okay, sure!", "no checkable claim"),
])
def test_empty_answer_or_no_claim(answer: str | None, note: str) -> None:
    result = check_grounding(answer, DOCUMENTS)
    assert result.score is None and result.note == note


def test_non_english_text_does_not_crash() -> None:
    docs = [{"text": "退款在购买后30天内受理。标准配送需要5个工作日。"}]
    same = check_grounding("退款在购买后30天内受理。", docs)
    other = check_grounding("退款在购买后90天内受理。", docs)
    assert same.score is not None and other.score is not None
    assert same.score > other.score
    assert other.sentences[0].unsupported_numbers == ("90",)


def test_min_aggregate_is_the_weakest_sentence() -> None:
    answer = "Standard shipping takes 5 business days. Shipping to Mars costs 900 Zorkmids."
    mean = check_grounding(answer, DOCUMENTS)
    weakest = check_grounding(answer, DOCUMENTS, settings=GroundingSettings(aggregate="min"))
    assert weakest.score == min(s.score for s in mean.sentences) < mean.score


def test_alignment_weight_zero_uses_coverage_only() -> None:
    coverage_only = GroundingSettings(alignment_weight=0.0, entity_penalty=0, number_penalty=0)
    result = check_grounding("Gift cards cannot be refunded.", DOCUMENTS, settings=coverage_only)
    assert result.score == 1.0


def test_a_context_is_reusable_across_answers() -> None:
    context = build_context(DOCUMENTS)
    assert context is not None
    good = score_grounding("Gift cards cannot be refunded.", context)
    bad = score_grounding("Gift cards can be exchanged for Bitcoin at Kraken.", context)
    assert good.score > bad.score


def test_settings_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        GroundingSettings(aggregate="median")
    with pytest.raises(ValueError, match="coverage_weight"):
        GroundingSettings(coverage_weight=0, alignment_weight=0)


def test_claim_sentences_drop_markers_and_confidence() -> None:
    assert claim_sentences("Refunds take 30 days [kb-0101].\nConfidence: high") == ["Refunds take 30 days."]


@pytest.mark.parametrize(("text", "expected"), [
    ("Mr. Smith met Dr. J. K. Rowling at 3.30 p.m. on Jan. 5. It was fun! Was it?",
     ["Mr. Smith met Dr. J. K. Rowling at 3.30 p.m. on Jan. 5.", "It was fun!", "Was it?"]),
    ("See Fig. 2 for details. The answer is No. This is the U.S. Army.",
     ["See Fig. 2 for details.", "The answer is No.", "This is the U.S. Army."]),
    ("published in the 19th century.First for Women is a magazine.",
     ["published in the 19th century.", "First for Women is a magazine."]),
    ("- first item\n- Second item. With two sentences.\n1. Numbered",
     ["first item", "Second item.", "With two sentences.", "Numbered"]),
    ('He said "Yes." She left.', ['He said "Yes."', "She left."]),
    ("我喜欢猫。你呢？", ["我喜欢猫。", "你呢?"]),
    ("", []),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_numbers_entities_and_stems() -> None:
    assert numbers("At least 2,466 people, 22% and three of 3.50") == {"2466", "22", "3", "3.5"}
    assert numbers("the one who came first") == set()
    assert numbers("the one who came first", lenient=True) == {"1"}
    assert entity_tokens("Snow Crash is similar to Zodiac.") == ["Snow", "Crash", "Zodiac"]
    assert entity_tokens("Absolutely. However, I liked it.") == []
    assert stem("Healing") == stem("heal") and stem("Ward's") == "ward"
    # Irregular inflections and silent e meet their base form.
    assert stem("said") == stem("says") == stem("say") and stem("told") == stem("tells")
    assert stem("made") == stem("makes") == stem("making") and stem("name") == stem("names")
    assert stem("children") == stem("child") and stem("died") == stem("death")
    assert stem("found") != stem("find")  # "found" is also "to establish": not folded


def test_place_and_demonym_match() -> None:
    assert same_root_name("chilean", "chile") and same_root_name("italy", "italian")
    assert same_root_name("iraqi", "iraq") and same_root_name("chinese", "china")
    assert not same_root_name("susan", "sus") and not same_root_name("french", "france")
    docs = [{"text": "Officials in Chile said the volcano erupted twice. Two towns were evacuated."}]
    result = check_grounding("Chilean officials said 2 towns were evacuated.", docs)
    assert result.sentences[0].unsupported_words == () and result.sentences[0].unsupported_numbers == ()


def test_last_user_text() -> None:
    assert last_user_text(MESSAGES) == "How long do I have to return my Acme Blender?"
    assert last_user_text([{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                           {"role": "assistant", "content": "Hello"}]) == "Hi"
    assert last_user_text("plain question") == "plain question"
    assert last_user_text(None) == "" and last_user_text([{"role": "system", "content": "x"}]) == ""


KNOWLEDGE = [{"text": "Arthur's Magazine (1844-1846) was an American literary periodical published in "
                      "Philadelphia. First for Women is a woman's magazine published by Bauer Media Group, "
                      "founded in 1989 in the USA."}]


def _context(question: str, docs: list[dict[str, str]] = KNOWLEDGE):  # noqa: ANN202
    return build_context(docs, [{"role": "user", "content": question}])


def test_comparison_answer_against_the_contexts_years() -> None:
    context = _context("Which magazine was started first, Arthur's Magazine or First for Women?")
    wrong = comparison_conflict("First for Women was started first.", context)
    assert wrong is not None and "1989" in wrong and "1844" in wrong
    assert comparison_conflict("Arthur's Magazine", context) is None
    assert comparison_conflict("Arthur's Magazine was started before First for Women.", context) is None
    assert comparison_conflict("First for Women was started after Arthur's Magazine.", context) is None
    assert comparison_conflict("Arthur's Magazine was started later.", context) is not None  # flipped pick
    later = _context("Which magazine is newer, Arthur's Magazine or First for Women?")
    assert comparison_conflict("Arthur's Magazine is newer.", later) is not None
    scored = score_grounding("First for Women was started first.", context)
    assert scored.sentences[0].conflicts == (wrong,) and scored.score is not None and scored.score <= 0.5


def test_comparison_without_years_or_options_gives_no_verdict() -> None:
    no_years = [{"text": "Arthur's Magazine was a periodical. First for Women is a magazine."}]
    question = "Which magazine was started first, Arthur's Magazine or First for Women?"
    assert comparison_conflict("First for Women was started first.", _context(question, no_years)) is None
    assert comparison_conflict("Both were started in 1844.", _context(question)) is None  # picks neither
    assert comparison_conflict("First for Women.", _context("Is Arthur's Magazine a periodical?")) is None
    assert comparison_conflict("First for Women.", build_context(KNOWLEDGE)) is None  # no question at all
    deaths = [{"text": "Dikran Kelekian (1868-1951) was a collector. Anna Der-Vartanian (1920 - 2011) was "
                       "a sailor."}]
    died = _context("Who died first, Dikran Kelekian or Anna Der-Vartanian?", deaths)
    assert comparison_conflict("Anna Der-Vartanian died first.", died) is not None
    assert comparison_conflict("Dikran Kelekian died first.", died) is None


def test_negation_the_context_never_states_is_a_conflict() -> None:
    context = _context("Which band's song was used as the theme?",
                       [{"text": "Stricken is a song by the band Disturbed. It was the theme of the event, "
                                 "which took place on January 8, 2006, at the Pepsi Arena in Albany, New York "
                                 "and starred talent from the Raw brand of the promotion. Gift cards cannot be "
                                 "refunded."}])
    assert negation_conflict("The song was not from Disturbed.", context) is not None
    assert negation_conflict("The song was from Disturbed.", context) is None
    assert negation_conflict("Gift cards can't be refunded.", context) is None  # the context denies it too
    assert negation_conflict("I'm not sure which band it was.", context) is None  # a hedge, not a claim
    assert negation_conflict("The documents do not mention the band's name.", context) is None
    result = score_grounding("The song was not from Disturbed.", context)
    assert result.sentences[0].conflicts and result.score is not None and result.score < 0.8
    off = GroundingSettings(negation_penalty=0)
    assert score_grounding("The song was not from Disturbed.", context, off).sentences[0].conflicts == ()


def test_causal_link_the_context_never_states_is_a_conflict() -> None:
    docs = [{"text": "The plant closed in May. Two hundred workers lost their jobs. Sales fell in April."}]
    context = build_context(docs)
    assert causal_conflict("The plant closed due to falling sales.", context) is not None
    assert causal_conflict("The plant closed in May.", context) is None
    stated = build_context([{"text": "The plant closed in May because sales fell."}])
    assert causal_conflict("The plant closed because sales fell.", stated) is None
    plain = score_grounding("The plant closed in May.", context).score
    linked = score_grounding("The plant closed in May, leading to job losses.", context)
    assert linked.score is not None and plain is not None and linked.score < plain
    assert "causal 'leading to' not stated in the context" in linked.sentences[0].conflicts


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_answer_never_raises(answer: str) -> None:
    result = check_grounding(answer, DOCUMENTS, MESSAGES)
    assert result.score is None or 0 <= result.score <= 1


def _trace_frame() -> pd.DataFrame:
    t0 = pd.Timestamp("2025-03-01T10:00:00Z")
    docs = json.dumps([{"id": "kb-0101", "text": "Refunds are accepted within 30 days of purchase.", "rank": 1}])
    reranked = json.dumps([{"id": "kb-0102", "text": "Standard shipping takes 5 business days.", "rank": 1}])
    rows = [
        ("t1", "r1", "retrieval", t0, t0 + pd.Timedelta(milliseconds=80), docs, None),
        ("t1", "r2", "rerank", t0 + pd.Timedelta(milliseconds=90), t0 + pd.Timedelta(milliseconds=150), reranked,
         None),
        ("t1", "l1", "llm", t0 + pd.Timedelta(milliseconds=160), t0 + pd.Timedelta(seconds=2), None,
         "Standard shipping takes 5 business days [kb-0102]."),
        ("t2", "l2", "llm", t0, t0 + pd.Timedelta(seconds=1), None, "Hello there, how can I help?"),
        ("t3", "l3", "llm", t0, t0 + pd.Timedelta(seconds=1), docs, "Refunds take 90 days [kb-0101]."),
        ("t4", "r4", "retrieval", t0 + pd.Timedelta(seconds=5), t0 + pd.Timedelta(seconds=6), docs, None),
        ("t4", "l4", "llm", t0, t0 + pd.Timedelta(seconds=1), None, "Refunds take 30 days."),
    ]
    return pd.DataFrame(rows, columns=["trace_id", "span_id", "kind", "start_time", "end_time", "documents",
                                       "output_text"])


def test_llm_spans_get_the_documents_of_their_trace() -> None:
    llm = with_trace_documents(_trace_frame())
    assert list(llm["span_id"]) == ["l1", "l2", "l3", "l4"]
    assert list(llm["documents_span_id"]) == ["r2", None, None, None]  # latest finished retriever only
    assert "kb-0102" in llm.loc[0, "documents"]
    assert llm.loc[1, "documents"] is None and llm.loc[3, "documents"] is None  # t4's retrieval came later


def test_grounding_checks_frame() -> None:
    checks = grounding_checks(with_trace_documents(_trace_frame()))
    assert list(checks.columns) == ["trace_id", "span_id", *GROUNDING_COLUMNS]
    assert checks.loc[0, "grounding_score"] > 0.9
    assert np.isnan(checks.loc[1, "grounding_score"]) and checks.loc[1, "grounding_note"] == "no retrieved context"
    evidence = json.loads(checks.loc[2, "grounding_evidence"])
    assert evidence[0]["unsupported_numbers"] == ["90"]
    assert evidence[0]["conflicts"] == []
