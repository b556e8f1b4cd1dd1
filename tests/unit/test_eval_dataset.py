"""Eval dataset building: which answers become cases, redaction before writing, near-duplicate merging, and
versioning (same content -> no new version; changed -> a new version with a manifest that adds up)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aiobs_pipeline.evals.dataset import (
    CASES_FILE,
    MANIFEST_FILE,
    DatasetError,
    build_version,
    case_id_for,
    export_version,
    find_candidates,
    list_versions,
    load_dataset,
    outcomes_frame,
)
from aiobs_pipeline.evals.settings import DatasetSettings, EvalSettings
from aiobs_pipeline.schema import FEEDBACK_COLUMNS, SPAN_COLUMNS, conform

HOUR = datetime(2026, 10, 5, 9, tzinfo=UTC)
DOCS = [{"id": "kb-0101", "text": "Invoices are generated on the first business day of each month.", "rank": 1},
        {"id": "kb-0102", "text": "Annual plans include a 15% discount.", "rank": 2}]


def _trace(n: int, question: str, answer: str, feature: str = "search", version: str = "3") -> list[dict]:
    """A RAG trace: a rerank span holding the documents, then the LLM call (span id `llm-<n>`)."""
    start = HOUR + timedelta(minutes=n)
    common = {"trace_id": f"trace-{n}", "status": "ok", "source_format": "native", "source_file": "x.jsonl",
              "source_line": n + 1, "export_hour": HOUR, "schema_version": 1, "user_id": f"user-{n}"}
    rerank = {**common, "span_id": f"rr-{n}", "name": "reranking", "kind": "rerank", "start_time": start,
              "end_time": start + timedelta(milliseconds=80), "documents": json.dumps(DOCS)}
    messages = [{"role": "system", "content": "Answer from the sources."}, {"role": "user", "content": question}]
    llm = {**common, "span_id": f"llm-{n}", "name": "llm_generation", "kind": "llm",
           "start_time": start + timedelta(milliseconds=100), "end_time": start + timedelta(seconds=2),
           "input_messages": json.dumps(messages), "output_text": answer, "feature": feature,
           "prompt_name": "answer-with-sources", "prompt_version": version, "model": "gpt-4o-mini"}
    return [rerank, llm]


def _spans(*traces: list[dict]) -> pd.DataFrame:
    return conform(pd.DataFrame([row for trace in traces for row in trace]), SPAN_COLUMNS)


def _event(n: int, event_type: str, minutes: int = 5, **fields) -> dict:
    return {"event_id": f"ev-{n}-{event_type}-{minutes}", "span_id": f"llm-{n}", "trace_id": f"trace-{n}",
            "event_type": event_type, "timestamp": HOUR + timedelta(minutes=n + minutes), "source_format": "native",
            "source_file": "feedback.jsonl", "source_line": 1, "export_hour": HOUR, "schema_version": 1, **fields}


def _feedback(*events: dict) -> pd.DataFrame:
    return conform(pd.DataFrame(list(events)), FEEDBACK_COLUMNS)


def _scores(*rows: tuple[int, float, str]) -> pd.DataFrame:
    return pd.DataFrame([{"span_id": f"llm-{n}", "trust_score": t, "risk_level": r} for n, t, r in rows])


def test_each_trigger_makes_a_case_with_its_reason() -> None:
    spans = _spans(_trace(1, "When are invoices generated?", "On the 15th [kb-0999]."),
                   _trace(2, "Do annual plans get a discount?", "Yes, 30%."),
                   _trace(3, "How long does a refund take?", "30 days."),
                   _trace(4, "Can I pay by bank transfer?", "Always."),
                   _trace(5, "Which plans include SSO?", "All of them."),
                   _trace(6, "How much does the Team plan cost?", "12 USD per seat."))
    feedback = _feedback(
        _event(1, "thumbs_down", reason="incorrect_information", comment="Wrong date."),
        _event(2, "rating", value=2.0),
        _event(3, "hallucination_report", comment="Made up."),
        _event(4, "edited", original_text="Always.", edited_text="Only for invoices above 1,000 USD."),
        _event(6, "thumbs_up"), _event(6, "rating", minutes=6, value=4.0))
    found = find_candidates(spans, feedback, _scores((5, 0.31, "high"), (6, 0.9, "low")))
    by_span = {c["source"]["span_id"]: c for c in found.cases}
    assert set(by_span) == {"llm-1", "llm-2", "llm-3", "llm-4", "llm-5"}  # llm-6 got only praise
    assert by_span["llm-1"]["reasons"] == ["thumbs_down:incorrect_information"]
    assert by_span["llm-1"]["comments"] == ["Wrong date."]
    assert by_span["llm-2"]["reasons"] == ["low_rating:2"]
    assert by_span["llm-3"]["reasons"] == ["hallucination_report"]
    assert by_span["llm-4"]["reasons"] == ["edited"]
    assert by_span["llm-4"]["correction"] == "Only for invoices above 1,000 USD."
    assert by_span["llm-5"]["reasons"] == ["high_hallucination_risk"] and by_span["llm-5"]["trust_score"] == 0.31
    case = by_span["llm-1"]
    assert case["case_id"] == case_id_for("llm-1")
    assert case["question"] == "When are invoices generated?" and case["bad_output"] == "On the 15th [kb-0999]."
    assert [d["id"] for d in case["context"]] == ["kb-0101", "kb-0102"]  # from the trace's rerank span
    assert case["tags"] == {"feature": "search", "prompt_name": "answer-with-sources", "prompt_version": "3",
                            "model": "gpt-4o-mini"}
    assert case["input_messages"][-1] == {"role": "user", "content": "When are invoices generated?"}
    assert case["reference"] is None and case["source"]["day"] == "2026-10-05"


def test_triggers_are_settings() -> None:
    spans = _spans(_trace(1, "When are invoices generated?", "x"), _trace(2, "Do annual plans get a discount?", "y"))
    feedback = _feedback(_event(1, "edited", edited_text="z"), _event(2, "rating", value=2.0))
    settings = EvalSettings(dataset=DatasetSettings(edits=False, low_rating_at_most=1))
    assert find_candidates(spans, feedback, None, settings).cases == []


def test_pii_is_redacted_before_anything_is_written(tmp_path: Path) -> None:
    spans = _spans(_trace(1, "I'm jane@corp.com, phone (415) 555-2671: when is my invoice?",
                          "Card 4111 1111 1111 1111 is charged on the 1st."))
    feedback = _feedback(_event(1, "thumbs_down", comment="mail me at jane@corp.com"),
                         _event(1, "edited", minutes=7, edited_text="Call +44 20 7946 0958 instead."))
    found = find_candidates(spans, feedback, None)
    assert found.redactions == {"EMAIL": 3, "PHONE": 3, "CARD": 1}  # the question also sits in input_messages
    result = build_version(tmp_path / "bad-answers", found, DatasetSettings(), ["2026-10-05"])
    written = (result.path / CASES_FILE).read_text() + (result.path / MANIFEST_FILE).read_text()
    for secret in ("jane@corp.com", "555-2671", "4111", "7946"):
        assert secret not in written
    case = json.loads((result.path / CASES_FILE).read_text())
    assert case["question"] == "I'm <EMAIL>, phone <PHONE>: when is my invoice?"
    assert case["correction"] == "Call <PHONE> instead." and case["comments"] == ["mail me at <EMAIL>"]
    assert result.manifest["build"]["redactions"] == {"CARD": 1, "EMAIL": 3, "PHONE": 3}


def test_near_duplicate_questions_of_a_feature_become_one_case(tmp_path: Path) -> None:
    spans = _spans(_trace(1, "When are invoices generated?", "a"),
                   _trace(2, "when are the invoices generated ?", "b"),
                   _trace(3, "When are invoices generated?", "c", feature="support"),
                   _trace(4, "How do I export my data?", "d"))
    feedback = _feedback(*(_event(n, "hallucination_report") for n in (1, 2, 3, 4)))
    found = find_candidates(spans, feedback, None)
    result = build_version(tmp_path / "ds", found, DatasetSettings(), ["2026-10-05"])
    outcomes = {o["case_id"]: o for o in result.outcomes}
    assert outcomes[case_id_for("llm-2")] == {"case_id": case_id_for("llm-2"), "outcome": "duplicate",
                                              "duplicate_of": case_id_for("llm-1")}
    assert result.manifest["counts"]["cases"] == 3  # the support question is another feature's case
    assert result.manifest["build"]["duplicate"] == 1 and result.manifest["build"]["added"] == 3
    table = outcomes_frame(found, result)
    assert list(table["outcome"]) == ["added", "duplicate", "added", "added"]
    assert (table["dataset_version"] == "v0001").all() and str(table["day"].iloc[0].date()) == "2026-10-05"


def test_versions_only_when_content_changes(tmp_path: Path) -> None:
    root = tmp_path / "bad-answers"
    day1 = _spans(_trace(1, "When are invoices generated?", "a"), _trace(2, "Do annual plans get a discount?", "b"))
    first = find_candidates(day1, _feedback(_event(1, "thumbs_down"), _event(2, "hallucination_report")), None)
    v1 = build_version(root, first, DatasetSettings(), ["2026-10-05"])
    assert (v1.version, v1.created) == ("v0001", True)

    again = build_version(root, first, DatasetSettings(), ["2026-10-05"])
    assert (again.version, again.created) == ("v0001", False)
    assert {o["outcome"] for o in again.outcomes} == {"unchanged"}
    assert list_versions(root) == ["v0001"]

    # A new bad answer the next day: a new version holding both days' cases.
    day2 = _spans(_trace(7, "Can we export to S3?", "c"))
    v2 = build_version(root, find_candidates(day2, _feedback(_event(7, "thumbs_down")), None), DatasetSettings(),
                       ["2026-10-06"])
    assert (v2.version, v2.created) == ("v0002", True)
    manifest = json.loads((root / "v0002" / MANIFEST_FILE).read_text())
    assert manifest["previous_version"] == "v0001"
    assert manifest["source_partitions"] == ["2026-10-05", "2026-10-06"]
    assert manifest["build"]["partitions"] == ["2026-10-06"]
    assert manifest["counts"]["cases"] == 3 == len((root / "v0002" / CASES_FILE).read_text().splitlines())
    assert manifest["counts"]["by_reason"] == {"hallucination_report": 1, "thumbs_down": 2}
    assert manifest["counts"]["by_prompt"] == {"answer-with-sources@3": 3}
    assert (root / "v0001" / CASES_FILE).read_text().count("\n") == 2  # published versions never change

    # Late feedback on a known answer updates its case: a new version again.
    late = find_candidates(day1, _feedback(_event(1, "edited", minutes=90, edited_text="On the 1st.")), None)
    v3 = build_version(root, late, DatasetSettings(), ["2026-10-05"])
    assert (v3.version, v3.created, v3.outcomes[0]["outcome"]) == ("v0003", True, "updated")
    case = next(c for c in load_dataset(root).cases if c["case_id"] == case_id_for("llm-1"))
    assert case["reasons"] == ["edited", "thumbs_down"] and case["correction"] == "On the 1st."
    assert load_dataset(root).version == "v0003"


def test_nothing_flagged_writes_nothing(tmp_path: Path) -> None:
    result = build_version(tmp_path / "ds", find_candidates(_spans(_trace(1, "q?", "a")), None, None),
                           DatasetSettings())
    assert (result.version, result.created, result.outcomes) == (None, False, [])
    assert list_versions(tmp_path / "ds") == []


def test_load_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"case_id": "a", "question": "q"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"cases.jsonl, line 2: not valid JSON"):
        load_dataset(path)
    path.write_text('{"case_id": "a"}\n')
    with pytest.raises(DatasetError, match=r"line 1: field 'question' is missing"):
        load_dataset(path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_export_copies_and_protects_reviewed_copies(tmp_path: Path) -> None:
    root = tmp_path / "var" / "bad-answers"
    spans = _spans(_trace(1, "When are invoices generated?", "a"))
    build_version(root, find_candidates(spans, _feedback(_event(1, "thumbs_down")), None), DatasetSettings())
    repo = tmp_path / "repo" / "evals" / "datasets"
    target, status = export_version(root, "latest", repo)
    assert (target, status) == (repo / "bad-answers" / "v0001", "copied")
    assert export_version(root, "v0001", repo)[1] == "unchanged"
    (target / CASES_FILE).write_text("{}\n")
    with pytest.raises(DatasetError, match="--force"):
        export_version(root, "v0001", repo)
    assert export_version(root, "v0001", repo, force=True)[1] == "replaced"
    with pytest.raises(DatasetError, match=r"no version 'v0009' \(versions: v0001\)"):
        export_version(root, "v0009", repo)
