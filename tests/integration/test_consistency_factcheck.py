"""The LLM-backed hallucination detectors (consistency re-sampling, fact check with a judge) against the local
LLM server running as a real process, plus the pure scoring helpers they are built on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aiobs_pipeline.hallucination.consistency import (
    CONSISTENCY_COLUMNS,
    ConsistencySettings,
    chat_messages,
    check_consistency,
    lexical_similarity,
    score_samples,
)
from aiobs_pipeline.hallucination.factcheck import (
    FACT_CHECK_COLUMNS,
    FactCheckSettings,
    TrustedCorpus,
    fact_check,
)
from aiobs_pipeline.llm import LLMClient, LLMResult, spans_from_results
from aiobs_pipeline.quality.rules import apply_row_rules
from tests.integration.llm_fixtures import LLMServer, llm_server, llm_server_factory, local_llm_settings

__all__ = ["llm_server", "llm_server_factory"]  # fixtures used by name below

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "trusted_corpus" / "documents"
HOUR = pd.Timestamp("2024-05-01 10:00", tz="UTC")
KNOWN = "When was the Eiffel Tower completed?"
SPECULATIVE = "Speculate about the history of the Zorblat Company."


def span(span_id: str, output_text: str | None, prompt: str | None = KNOWN, *, hour: pd.Timestamp = HOUR,
         **extra: Any) -> dict[str, Any]:
    """A canonical-looking LLM span row with the fields the detectors read."""
    messages = None if prompt is None else json.dumps([{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": prompt}])
    row = {"trace_id": f"trace-{span_id}", "span_id": span_id, "kind": "llm", "status": "ok",
           "start_time": hour + pd.Timedelta(minutes=len(span_id)), "input_messages": messages,
           "output_text": output_text, "export_hour": hour}
    row.update(extra)
    return row


def answer(client: LLMClient, prompt: str) -> str:
    """The 'production' answer to a prompt: one sample the checks did not draw themselves."""
    result = client.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
                         temperature=0.7, seed=4242)
    assert result.ok and result.text
    return result.text


def by_span(frame: pd.DataFrame) -> dict[str, Mapping[str, Any]]:
    return {row["span_id"]: row for row in frame.to_dict("records")}


def assert_accounted(frame: pd.DataFrame, results: Sequence[LLMResult]) -> None:
    """Every row has a status; only scored rows have a score; every call is in exactly one row."""
    for row in frame.to_dict("records"):
        if row["status"] == "scored":
            assert 0 <= row["score"] <= 1 and row["reason"] is None
        else:
            assert math.isnan(row["score"]) and row["reason"], row
    linked = [s for ids in frame["llm_span_ids"] for s in json.loads(ids)]
    assert sorted(linked) == sorted(r.call_id[:16] for r in results)
    assert int(frame["calls"].sum()) == len(results)


# --- consistency: scoring helpers (no server) --------------------------------------------------------------


def test_scoring_helpers() -> None:
    same = "The Eiffel Tower was completed in 1889. It is 330 metres tall."
    assert score_samples(same, [same, same]).score == 1.0
    other = "The Eiffel Tower was completed in 1925. It is 120 metres tall."
    assert score_samples(same, [other, other]).score < 0.75
    assert lexical_similarity("Maria Lindqvist founded it in 1902.", "Hiro Tanaka founded it in 1955.") < \
        lexical_similarity("Maria Lindqvist founded it in 1902.", "In 1902 it was founded by Maria Lindqvist.")
    assert score_samples("", [same]).score is None
    assert score_samples(same, ["", "  "]).note == "no usable sample"
    messages, why = chat_messages(json.dumps([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"},
    ]))
    assert why is None and messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert chat_messages(None) == (None, "the span has no input_messages")
    assert chat_messages("[{") [1].startswith("input_messages is not valid JSON")
    assert chat_messages('{"a": 1}') == (None, "input_messages is a JSON dict, not a list of messages")
    assert chat_messages('[{"role": "system", "content": "x"}]') == (None, "input_messages has no user message "
                                                                           "with text")
    with pytest.raises(ValueError, match="min_samples"):
        ConsistencySettings(samples=2, min_samples=3)


# --- consistency against the server ------------------------------------------------------------------------


def test_known_fact_scores_high_and_speculation_low(llm_server: LLMServer, tmp_path: Path) -> None:
    settings = local_llm_settings(llm_server, tmp_path / "cache")
    client = LLMClient(settings)
    spans = pd.DataFrame([span("known", answer(client, KNOWN), KNOWN),
                          span("spec", answer(client, SPECULATIVE), SPECULATIVE)])
    frame, results = check_consistency(spans, client)
    assert list(frame.columns) == list(CONSISTENCY_COLUMNS)
    rows = by_span(frame)
    known, spec = rows["known"], rows["spec"]
    assert known["status"] == spec["status"] == "scored"
    assert known["score"] >= 0.95
    assert spec["score"] <= 0.6
    for row in (known, spec):
        assert row["samples_requested"] == row["samples_used"] == 3
        assert row["calls"] == 2 and row["cache_hits"] == 0  # one chat call with n=3, one embedding call
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert row["export_hour"] == HOUR and row["trace_id"] == f"trace-{row['span_id']}"
    evidence = json.loads(spec["evidence"])
    assert evidence["similarity"] == "rapidfuzz+embedding" and len(evidence["samples"]) == 3
    assert len(set(evidence["samples"])) == 3  # the samples differ: n > 1 at temperature 1
    sentence = evidence["sentences"][0]
    assert len(sentence["per_sample"]) == len(sentence["lexical"]) == len(sentence["embedding"]) == 3
    assert all(s["score"] == 1.0 for s in json.loads(known["evidence"])["sentences"])
    assert_accounted(frame, results)
    # Our own calls become canonical spans (costed like any other) that pass the row rules.
    recorded = spans_from_results(results, settings)
    checked = apply_row_rules(recorded, json_encoded=True)
    assert checked.quarantined.empty and len(recorded) == 4
    assert sorted(recorded["kind"]) == ["embedding", "embedding", "llm", "llm"]
    chat_span = recorded[recorded["kind"] == "llm"].iloc[0]
    assert json.loads(chat_span["request_params"])["n"] == 3
    assert json.loads(chat_span["metadata"])["tags"]["check"] == "consistency"
    assert chat_span["prompt_name"] == "aiobs.consistency.resample"

    # A re-run is answered from the response cache: same scores, nothing paid again.
    again, _ = check_consistency(spans, client)
    assert again["score"].tolist() == frame["score"].tolist() and again["cache_hits"].tolist() == [2, 2]

    # One request per seed, rapidfuzz only: the same separation.
    seeds, seed_results = check_consistency(spans, client, ConsistencySettings(sampling="seeds",
                                                                               use_embeddings="never"))
    rows = by_span(seeds)
    assert rows["known"]["score"] >= 0.95 and rows["spec"]["score"] <= 0.6
    assert rows["spec"]["calls"] == 3 and json.loads(rows["spec"]["evidence"])["similarity"] == "rapidfuzz"
    assert [r.request["seed"] for r in seed_results[:3]] == [0, 1, 2]


def test_a_third_of_calls_failing_still_ends_scored_or_failed(llm_server_factory: Any, tmp_path: Path) -> None:
    good = LLMClient(local_llm_settings(llm_server_factory(seed=0), tmp_path / "originals"))
    prompts = [KNOWN, SPECULATIVE, "How tall is Mount Everest?", "Guess the founding year of Blorvik Labs.",
               "Who created Python?", "Tell me about the Quoridan Institute.", "When did Apollo 11 land?",
               "Predict the population of Marrowfield in 2050."]
    spans = pd.DataFrame([span(f"s{i}", answer(good, p), p) for i, p in enumerate(prompts)])
    flaky = llm_server_factory(seed=0, error_rate=0.33)
    # One attempt per call and one call at a time, so the server's fault plan decides which calls fail.
    client = LLMClient(local_llm_settings(flaky, tmp_path / "cache", max_attempts=1, max_concurrency=1))
    frame, results = check_consistency(spans, client)
    assert len(frame) == len(prompts)
    assert set(frame["status"]) == {"scored", "failed"}
    assert_accounted(frame, results)
    failed_calls = [r for r in results if not r.ok]
    assert failed_calls and all(r.error is not None and r.error.reason in ("rate_limited", "server_error")
                                for r in failed_calls)
    for row in frame.to_dict("records"):
        if row["status"] == "failed":
            assert row["reason"].startswith("the sampling call failed: ") and row["samples_used"] == 0
        else:
            assert row["samples_used"] == 3

    # One request per seed: a response survives a failed sample while min_samples (2) samples come back.
    seeds, seed_results = check_consistency(spans, client, ConsistencySettings(sampling="seeds", seed=100))
    assert set(seeds["status"]) <= {"scored", "failed"}
    assert_accounted(seeds, seed_results)
    for row in seeds.to_dict("records"):
        if row["status"] == "failed":
            assert "samples usable (min_samples 2)" in row["reason"] and "calls failed" in row["reason"]
        else:
            assert row["samples_used"] >= 2
    # A response whose embedding call failed is still scored, on rapidfuzz alone, and says so.
    notes = [json.loads(e).get("embedding_note") for e, s in zip(frame["evidence"], frame["status"], strict=True)
             if s == "scored"]
    embed_failures = [r for r in results if r.endpoint == "embeddings" and not r.ok]
    assert sum(1 for n in notes if n and n.startswith("embedding call failed")) == len(embed_failures)

    corpus = TrustedCorpus.load(CORPUS)
    facts = pd.DataFrame([span(f"f{i}", text) for i, text in enumerate([
        "The Eiffel Tower was completed in 1889. It is 330 metres tall.",
        "Mount Everest is 8849 metres high. Tenzing Norgay and Edmund Hillary reached the summit in 1953.",
        "Apollo 11 landed on 20 July 1969. Neil Armstrong walked on the Moon.",
        "The REST API allows 600 requests per minute per API key on the Team plan.",
        "Annual plans include a 15% discount over monthly billing. Invoices are generated each month.",
        "The Great Wall of China was built during the Ming dynasty.",
    ])])
    checked, judge_results = fact_check(facts, client, corpus)
    assert set(checked["status"]) <= {"scored", "failed"} and "failed" in set(checked["status"])
    assert_accounted(checked, judge_results)
    for row in checked.to_dict("records"):
        claims = json.loads(row["evidence"])
        failed = [c for c in claims if c["status"] == "failed"]
        assert row["claims_failed"] == len(failed)
        assert all(c["error"].startswith(("rate_limited", "server_error")) for c in failed)
        if row["status"] == "failed":
            assert row["reason"].startswith("all ") and "judge call failed" in row["reason"]


def test_the_budget_limits_calls_riskiest_first(llm_server: LLMServer, tmp_path: Path) -> None:
    client = LLMClient(local_llm_settings(llm_server, tmp_path / "cache"))
    text = answer(client, KNOWN)
    later = HOUR + pd.Timedelta(hours=1)
    spans = pd.DataFrame([
        span("a-safe", text, trust_score=0.9),
        span("a-risky", text, trust_score=0.2),
        span("a-unscored", text, trust_score=None),
        span("a-medium", text, trust_score=0.5),
        span("b-only", text, hour=later, trust_score=0.95),
        span("tool-call", "42", kind="tool"),
        span("errored", "partial answer", status="error"),
    ])
    settings = ConsistencySettings(max_calls_per_hour=5)  # 2 calls per response: 2 responses per hour fit
    frame, results = check_consistency(spans, client, settings)
    statuses = dict(zip(frame["span_id"], frame["status"], strict=True))
    assert statuses == {"a-safe": "skipped_budget", "a-risky": "scored", "a-unscored": "skipped_budget",
                        "a-medium": "scored", "b-only": "scored"}
    assert list(frame["span_id"]) == ["a-safe", "a-risky", "a-unscored", "a-medium", "b-only"]  # spans order
    per_hour = frame.groupby("export_hour")["calls"].sum().to_dict()
    assert per_hour == {HOUR: 4, later: 2} and len(results) == 6
    skipped = by_span(frame)["a-safe"]
    assert skipped["calls"] == 0 and skipped["reason"] == "max_calls_per_hour 5 reached (2 calls per response)"
    assert_accounted(frame, results)

    safest_first = ConsistencySettings(max_calls_per_hour=2, priority_ascending=False, use_embeddings="never")
    frame, _ = check_consistency(spans, client, safest_first)
    assert frame.loc[frame["status"] == "scored", "span_id"].tolist() == ["a-safe", "a-medium", "b-only"]
    nothing = ConsistencySettings(max_calls_per_hour=0)
    frame, results = check_consistency(spans, client, nothing)
    assert set(frame["status"]) == {"skipped_budget"} and results == []


def test_responses_that_cannot_be_checked_say_why(llm_server: LLMServer, tmp_path: Path) -> None:
    client = LLMClient(local_llm_settings(llm_server, tmp_path / "cache"))
    spans = pd.DataFrame([
        span("no-messages", "The Eiffel Tower was completed in 1889.", None),
        span("bad-json", "The Eiffel Tower was completed in 1889.", input_messages="[{not json"),
        span("tool-only", "The answer is 42.", input_messages=json.dumps([{"role": "tool", "content": "42"}])),
        span("nothing-said", "...", KNOWN),
    ])
    frame, results = check_consistency(spans, client)
    assert results == []
    rows = by_span(frame)
    assert rows["no-messages"]["status"] == "skipped_no_messages"
    assert rows["bad-json"]["reason"].startswith("input_messages is not valid JSON")
    assert rows["tool-only"]["reason"] == "input_messages has no user message with text"
    assert rows["nothing-said"]["status"] == "skipped_no_sentences"
    assert_accounted(frame, results)
    frame, _ = check_consistency(spans, client, ConsistencySettings(sample_rate=0.0))
    assert set(frame["status"]) == {"skipped_sample"}
    with pytest.raises(ValueError, match="lacks the column.*output_text"):
        check_consistency(pd.DataFrame({"span_id": ["x"]}), client)


class NoEmbeddingsClient(LLMClient):
    """The real client against an endpoint that answers embeddings with 404 (forced by the server's header)."""

    def embed(self, texts: Any, **kwargs: Any) -> LLMResult:
        return super().embed(texts, extra_headers={"X-Aiobs-Fault": "404"}, **kwargs)


def test_without_embeddings_one_probe_then_rapidfuzz_only(llm_server: LLMServer, tmp_path: Path) -> None:
    client = NoEmbeddingsClient(local_llm_settings(llm_server, tmp_path / "cache"))
    spans = pd.DataFrame([span("k", answer(client, KNOWN), KNOWN), span("s", answer(client, SPECULATIVE),
                                                                        SPECULATIVE)])
    frame, results = check_consistency(spans, client)
    assert list(frame["status"]) == ["scored", "scored"]
    assert [r.endpoint for r in results] == ["chat.completions", "embeddings", "chat.completions"]
    for evidence in frame["evidence"]:
        parsed = json.loads(evidence)
        assert parsed["similarity"] == "rapidfuzz"
        assert parsed["embedding_note"].startswith("embeddings unavailable (client_error: HTTP 404")
    rows = by_span(frame)
    assert rows["k"]["score"] >= 0.95 and rows["s"]["score"] <= 0.6
    assert_accounted(frame, results)


# --- fact check against the server -------------------------------------------------------------------------


def test_fact_check_supports_refutes_and_does_not_cover(llm_server: LLMServer, tmp_path: Path) -> None:
    client = LLMClient(local_llm_settings(llm_server, tmp_path / "cache"))
    corpus = TrustedCorpus.load(CORPUS, tmp_path / "index")
    spans = pd.DataFrame([
        span("true", "The Eiffel Tower was completed in 1889. It is 330 metres tall."),
        span("wrong-year", "The Eiffel Tower was completed in 1925."),
        span("mixed", "The REST API allows 600 requests per minute on the Team plan. "
                      "Enterprise plans can raise the limit to 9,000 requests per minute."),
        span("unrelated", "Saturn has 146 known moons. Its rings are mostly water ice."),
        span("judge-nei", "The Eiffel Tower has a restaurant."),
        span("chatty", "Sure, happy to help! Let me know if you have other questions."),
    ])
    frame, results = fact_check(spans, client, corpus)
    assert list(frame.columns) == list(FACT_CHECK_COLUMNS)
    rows = by_span(frame)

    assert rows["true"]["status"] == "scored" and rows["true"]["score"] == 1.0
    assert (rows["true"]["supported"], rows["true"]["claims_total"], rows["true"]["calls"]) == (2, 2, 2)
    claim = json.loads(rows["true"]["evidence"])[0]
    assert claim["verdict"] == "supported" and claim["status"] == "judged" and "1889" in claim["explanation"]
    assert claim["passages"][0]["id"] == "landmarks.md#1" and claim["kinds"] == ["number", "entity", "assertion"]

    assert rows["wrong-year"]["score"] == 0.0 and rows["wrong-year"]["refuted"] == 1
    refuted = json.loads(rows["wrong-year"]["evidence"])[0]
    assert refuted["verdict"] == "refuted" and "1925" in refuted["explanation"]

    # one supported, one refuted: 1 / (1 + refuted_weight 2)
    assert (rows["mixed"]["supported"], rows["mixed"]["refuted"]) == (1, 1)
    assert rows["mixed"]["score"] == pytest.approx(1 / 3, abs=1e-4)

    # claims the corpus says nothing about: no judge call, no score
    unrelated = rows["unrelated"]
    assert unrelated["status"] == "not_covered" and unrelated["calls"] == 0 and unrelated["not_covered"] == 2
    assert {c["status"] for c in json.loads(unrelated["evidence"])} == {"no_evidence"}

    # evidence found, but the judge says it does not settle the claim
    nei = rows["judge-nei"]
    assert nei["status"] == "not_covered" and nei["calls"] == 1
    assert json.loads(nei["evidence"])[0]["verdict"] == "not_enough_info"
    assert json.loads(nei["evidence"])[0]["status"] == "judged"

    assert rows["chatty"]["status"] == "skipped_no_claims" and rows["chatty"]["calls"] == 0
    assert_accounted(frame, results)
    recorded = spans_from_results(results, client.settings)
    assert len(recorded) == len(results) == 6 and set(recorded["prompt_name"]) == {"aiobs.factcheck.judge"}

    # Counting claims the corpus does not cover lowers the score instead of being ignored.
    strict = FactCheckSettings(not_covered_weight=1.0, index_cache_dir=tmp_path / "index")
    frame, _ = fact_check(spans, client, CORPUS, strict)
    assert by_span(frame)["unrelated"]["status"] == "scored" and by_span(frame)["unrelated"]["score"] == 0.0


class InstructionIgnoringClient(LLMClient):
    """The real client, but the judge's instructions are dropped, so the server answers in prose."""

    def chat(self, messages: Any, **kwargs: Any) -> LLMResult:
        return super().chat([m for m in messages if m["role"] != "system"], **kwargs)


def test_unparseable_judge_answers_fail_with_the_raw_text(llm_server: LLMServer, tmp_path: Path) -> None:
    client = InstructionIgnoringClient(local_llm_settings(llm_server, tmp_path / "cache"))
    spans = pd.DataFrame([span("x", "The Eiffel Tower was completed in 1889.")])
    frame, results = fact_check(spans, client, CORPUS, FactCheckSettings(index_cache_dir=None))
    row = by_span(frame)["x"]
    assert row["status"] == "failed" and math.isnan(row["score"]) and row["claims_failed"] == 1
    assert row["reason"].startswith("all 1 judge call(s) failed; first: judge answer unparseable: 'The Eiffel")
    claim = json.loads(row["evidence"])[0]
    assert claim["status"] == "unparseable" and claim["raw"] == results[0].text and claim["verdict"] is None


def test_fact_check_budget(llm_server: LLMServer, tmp_path: Path) -> None:
    client = LLMClient(local_llm_settings(llm_server, tmp_path / "cache"))
    two_claims = "The Eiffel Tower was completed in 1889. It is 330 metres tall."
    spans = pd.DataFrame([
        span("first", two_claims, trust_score=0.1),
        span("second", two_claims, trust_score=0.2),
        span("no-evidence", "Saturn has 146 known moons.", trust_score=0.3),
        span("one-claim", "Mount Everest is 8849 metres high.", trust_score=0.4),
    ])
    frame, results = fact_check(spans, client, CORPUS, FactCheckSettings(max_calls_per_hour=3,
                                                                         index_cache_dir=None))
    statuses = dict(zip(frame["span_id"], frame["status"], strict=True))
    # riskiest first; a response fits whole or not at all; one that needs no call still gets checked
    assert statuses == {"first": "scored", "second": "skipped_budget", "no-evidence": "not_covered",
                        "one-claim": "scored"}
    assert len(results) == 3
    assert by_span(frame)["second"]["reason"] == "max_calls_per_hour 3 reached (this response needs 2)"
    assert by_span(frame)["second"]["claims_total"] == 2
    assert_accounted(frame, results)
