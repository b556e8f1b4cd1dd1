"""Fact-check building blocks without a model: claim extraction, judge-answer parsing, the BM25 corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiobs_pipeline.hallucination.factcheck import (
    FactCheckSettings,
    TrustedCorpus,
    extract_claims,
    judge_messages,
    parse_verdict,
    tokenize,
)

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "trusted_corpus" / "documents"


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


# --- claims ------------------------------------------------------------------------------------------------


def test_claims_are_numbers_names_and_assertions() -> None:
    claims = extract_claims(
        "The Eiffel Tower was completed in 1889. Gustave Eiffel's company designed it. "
        "Invoices are available under the billing settings. Python uses indentation."
    )
    assert [c.text for c in claims] == [
        "The Eiffel Tower was completed in 1889.",
        "Gustave Eiffel's company designed it.",
        "Invoices are available under the billing settings.",
    ]
    assert claims[0].kinds == ("number", "entity", "assertion")
    assert claims[1].kinds == ("entity",)
    assert claims[2].kinds == ("assertion",)
    assert [c.sentence for c in claims] == [0, 1, 2]


def test_questions_hedges_chat_and_fragments_are_not_claims() -> None:
    text = (
        "Did you know the tower is 330 metres tall? I think it was finished in 1889. "
        "It might be the tallest tower in Paris. Sure, happy to help! Let me know if Paris is on your list. "
        "Thanks! Paris, 1889."
    )
    assert extract_claims(text) == []


def test_citations_urls_and_confidence_lines_are_removed() -> None:
    claims = extract_claims(
        "Mount Everest is 8849 metres high [kb-0101] (Source: Survey of Nepal).\n"
        "See https://example.org/everest for more.\nConfidence: high"
    )
    assert [c.text for c in claims] == ["Mount Everest is 8849 metres high."]


def test_claims_on_empty_and_odd_input() -> None:
    assert extract_claims(None) == []
    assert extract_claims("") == []
    assert extract_claims("```python\nx = 1\n```") == []
    assert [c.text for c in extract_claims("- Apollo 11 landed in 1969.\n- It carried three astronauts.")] == [
        "Apollo 11 landed in 1969.", "It carried three astronauts."]


def test_discourse_openers_do_not_hide_a_claim() -> None:
    assert [c.text for c in extract_claims("In summary, the tower is 330 metres tall. Here is why: it has antennas.")] \
        == ["In summary, the tower is 330 metres tall.", "Here is why: it has antennas."]


def test_min_claim_words() -> None:
    assert extract_claims("Paris is big.", min_words=3)
    assert extract_claims("Paris is big.", min_words=4) == []


# --- judge answers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "verdict", "explanation"), [
    ('{"verdict": "SUPPORTS", "explanation": "It says 1889."}', "supported", "It says 1889."),
    ('```json\n{"label": "refuted", "reason": "1889, not 1925"}\n```', "refuted", "1889, not 1925"),
    ('Here is my answer: {"verdict": "NOT_ENOUGH_INFO"}', "not_enough_info", ""),
    ("REFUTES\nThe evidence says 1889.", "refuted", "The evidence says 1889."),
    ("Supported by the evidence.\nThe first passage states it.", "supported", "The first passage states it."),
    ("Not enough information\nNothing about restaurants.", "not_enough_info", "Nothing about restaurants."),
    ("The passage dates it to 1889.\nVerdict: refuted - wrong year", "refuted", "The passage dates it to 1889."),
    ("Final verdict: The claim is supported", "supported", ""),
    ("Looking at the passages, the answer is NOT_ENOUGH_INFO because they never mention it.",
     "not_enough_info", "Looking at the passages, the answer is NOT_ENOUGH_INFO because they never mention it."),
    ("false\nThe tower was completed in 1889.", "refuted", "The tower was completed in 1889."),
    ('{"verdict": "SUPPORTS", "expla', "supported", ""),  # cut by max_tokens
])
def test_parse_verdict_reads_json_and_plain_answers(raw: str, verdict: str, explanation: str) -> None:
    parsed = parse_verdict(raw)
    assert parsed is not None
    assert (parsed.verdict, parsed.explanation) == (verdict, explanation)


@pytest.mark.parametrize("raw", [
    None, "", "   ", "I cannot decide.", "The evidence does not support the claim.", "Not supported.",
    "It SUPPORTS part of it but REFUTES the date.", '{"verdict": "maybe"}',
])
def test_parse_verdict_refuses_missing_or_ambiguous_answers(raw: str | None) -> None:
    assert parse_verdict(raw) is None


def test_judge_messages_carry_the_claim_and_evidence(corpus_copy: Path) -> None:
    corpus = TrustedCorpus.load(corpus_copy)
    evidence = corpus.search("The Eiffel Tower was completed in 1889.", k=2)
    messages = judge_messages("The Eiffel Tower was completed in 1889.", evidence, max_chars=200)
    system, user = messages
    assert all(label in system["content"] for label in ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO", "JSON"))
    assert user["content"].startswith("Claim: The Eiffel Tower was completed in 1889.\nEvidence:\n- Eiffel Tower:")
    assert len(user["content"]) < 200 + 80  # the evidence is cut to max_chars


# --- corpus and BM25 retrieval -----------------------------------------------------------------------------


def test_tokenize_stems_drops_stopwords_and_normalises_numbers() -> None:
    assert tokenize("The towers were completed in 1,889 and are 330.0 metres tall") == [
        "tower", "complet", "metr", "tall", "1889", "330"]


def test_corpus_reads_markdown_text_and_jsonl(corpus_copy: Path) -> None:
    corpus = TrustedCorpus.load(corpus_copy)
    ids = {p.id for p in corpus.passages}
    assert {"landmarks.md#1", "landmarks.md#2", "space.txt#1", "help_center/articles.jsonl#kb-api-2",
            "help_center/articles.jsonl#kb-sso-1"} <= ids
    eiffel = next(p for p in corpus.passages if p.id == "landmarks.md#2")
    assert eiffel.title == "Eiffel Tower" and eiffel.evidence_text.startswith("Eiffel Tower: The tower is 330")
    assert corpus.problems == [] and corpus.built and corpus.index_dir is None


def test_search_ranks_the_passage_stating_the_fact_first(corpus_copy: Path) -> None:
    corpus = TrustedCorpus.load(corpus_copy)
    hits = corpus.search("When was the Eiffel Tower completed?", k=3)
    assert hits[0].passage.id == "landmarks.md#1"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert corpus.search("How many requests per minute does the Team plan allow?")[0].passage.id == \
        "help_center/articles.jsonl#kb-api-1"
    assert corpus.search("Who walked on the Moon?")[0].passage.id == "space.txt#1"
    assert corpus.search("quantum chromodynamics gauge theory") == []  # no word of the corpus
    # One shared word ('moon') is a BM25 hit, but not evidence once a share of the claim's tokens is required.
    assert corpus.search("Saturn has 146 known moons.", min_overlap=0.34) == []
    assert corpus.search("Saturn has 146 known moons.")[0].passage.id == "space.txt#1"
    assert corpus.search("", k=3) == [] and corpus.search("the of and", k=3) == []


def test_index_cache_is_reused_while_files_are_unchanged(corpus_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "index-cache"
    first = TrustedCorpus.load(corpus_copy, cache)
    assert first.built and first.index_dir is not None and (first.index_dir / "passages.json").is_file()
    second = TrustedCorpus.load(corpus_copy, cache)
    assert not second.built
    assert second.fingerprint == first.fingerprint and second.index_dir == first.index_dir
    assert second.passages == first.passages
    query = "Mount Everest summit height in metres"
    assert [(h.passage.id, h.score) for h in second.search(query)] == \
        [(h.passage.id, h.score) for h in first.search(query)]


def test_index_is_rebuilt_when_a_file_changes(corpus_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "index-cache"
    first = TrustedCorpus.load(corpus_copy, cache)
    assert first.search("Eiffel Tower completed", k=1)[0].passage.text.count("1889") == 1
    landmarks = corpus_copy / "landmarks.md"
    landmarks.write_text(landmarks.read_text().replace("completed in 1889", "completed in 1890"))
    changed = TrustedCorpus.load(corpus_copy, cache)
    assert changed.built and changed.fingerprint != first.fingerprint
    assert "1890" in changed.search("Eiffel Tower completed", k=1)[0].passage.text
    assert first.index_dir is not None and not first.index_dir.exists()  # the stale index was dropped
    assert not TrustedCorpus.load(corpus_copy, cache).built
    (corpus_copy / "extra.txt").write_text("The Louvre is a museum in Paris.\n")
    added = TrustedCorpus.load(corpus_copy, cache)
    assert added.built and added.search("Louvre museum")[0].passage.source == "extra.txt"


def test_an_unreadable_cached_index_is_rebuilt(corpus_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "index-cache"
    first = TrustedCorpus.load(corpus_copy, cache)
    assert first.index_dir is not None
    (first.index_dir / "passages.json").write_text("{not json")
    again = TrustedCorpus.load(corpus_copy, cache)
    assert again.built and again.search("Apollo 11 Moon landing")[0].passage.id == "space.txt#1"
    assert not TrustedCorpus.load(corpus_copy, cache).built


def test_bad_files_and_lines_become_problems_not_crashes(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "facts.jsonl").write_text(
        '{"id": "a", "text": "The Amazon River is about 6400 kilometres long."}\n'
        "not json\n"
        '["a", "list"]\n'
        '{"id": "b", "title": "no text"}\n'
        '"A bare string line about photosynthesis in chloroplasts."\n'
    )
    (folder / "latin1.txt").write_bytes("Caf\xe9 au lait is popular in France.".encode("latin-1"))
    (folder / ".hidden.md").write_text("Secret facts are never indexed.")
    (folder / "notes.csv").write_text("ignored,file\n")
    corpus = TrustedCorpus.load(folder)
    assert [p.describe() for p in corpus.problems] == [
        "facts.jsonl:2: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        "facts.jsonl:3: a JSON list, not an object",
        "facts.jsonl:4: no text, content or body string field",
        "latin1.txt: not UTF-8 text (invalid continuation byte at byte 3)",
    ]
    assert [p.id for p in corpus.passages] == ["facts.jsonl#a", "facts.jsonl#5"]
    assert corpus.search("photosynthesis chloroplasts")[0].passage.id == "facts.jsonl#5"
    assert corpus.search("secret facts") == []


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    corpus = TrustedCorpus.load(empty, tmp_path / "cache")
    assert corpus.passages == [] and corpus.search("anything at all") == []
    with pytest.raises(ValueError, match="corpus_dir .*missing.* is not a folder"):
        TrustedCorpus.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="corpus_dir is not set"):
        TrustedCorpus.from_settings(FactCheckSettings())


def test_from_settings_uses_the_cache_and_passage_size(corpus_copy: Path, tmp_path: Path) -> None:
    settings = FactCheckSettings(corpus_dir=corpus_copy, index_cache_dir=tmp_path / "c", passage_sentences=1)
    corpus = TrustedCorpus.from_settings(settings)
    assert corpus.index_dir is not None and corpus.index_dir.is_relative_to(tmp_path / "c")
    # one sentence per passage: the Eiffel paragraph of three sentences becomes three passages
    assert [p.text for p in corpus.passages if p.source == "landmarks.md"][:3] == [
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
        "It was completed in 1889 for the Exposition Universelle.",
        "It was designed by the engineering company of Gustave Eiffel.",
    ]
    with pytest.raises(ValueError, match="extra"):
        FactCheckSettings(unknown_key=1)
