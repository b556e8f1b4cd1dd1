"""Langfuse blob-export scores (`scores/`) as feedback events, in JSON, JSONL and CSV, mapped as API scores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from aiobs_pipeline.feedback import FeedbackSettings
from aiobs_pipeline.feedback.events import _map, detect_format, ingest_feedback_files, map_langfuse
from aiobs_pipeline.ingest import langfuse_blob
from aiobs_pipeline.ingest.base import RawRecord
from aiobs_pipeline.ingest.files import iter_records

FIXTURES = Path(__file__).parents[1] / "fixtures"
BLOB = FIXTURES / "langfuse_blob"
HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
TYPES = ("json", "jsonl", "csv")


def ingest(ext: str):
    return ingest_feedback_files([BLOB / f"scores/2026-12-07T14-00-00.{ext}"], HOUR, BLOB)


@pytest.mark.parametrize("ext", TYPES)
def test_boolean_numeric_and_categorical_scores_become_events(ext: str) -> None:
    result = ingest(ext)
    events = {row["event_id"]: row for row in result.events.to_dict("records")}
    assert set(events) == {"s-5001", "s-5002", "s-5003", "s-5004", "s-5011"}
    up = events["s-5001"]
    assert (up["event_type"], up["span_id"], up["trace_id"], up["source"], up["source_format"]) == \
        ("thumbs_up", "o-2002", "t-1001", "api", "langfuse_blob")
    assert up["timestamp"] == pd.Timestamp("2026-12-07 13:12:00", tz="UTC")
    down = events["s-5002"]
    assert down["event_type"] == "thumbs_down" and down["span_id"] is None and down["trace_id"] == "t-1002"
    assert down["comment"] == "Wrong invoice total,\nagain"  # a quoted newline and comma in the CSV cell
    rating = events["s-5003"]
    assert (rating["event_type"], rating["value"], rating["source"]) == ("rating", 4.0, "annotation")
    assert events["s-5004"]["event_type"] == "thumbs_down"  # CATEGORICAL: string_value "down" is the signal
    # No timestamp: the score's created_at is used, as for API scores.
    assert events["s-5011"]["timestamp"] == pd.Timestamp("2026-12-07 13:12:00.5", tz="UTC")


@pytest.mark.parametrize("ext", TYPES)
def test_bad_and_non_user_scores_are_quarantined_naming_file_line_and_field(ext: str) -> None:
    result = ingest(ext)
    # CSV: the header is line 1 and the comment of the second score spans two lines.
    offset = 2 if ext == "csv" else 0
    got = {int(n): (r, d) for n, r, d in zip(result.quarantined["source_line"], result.quarantined["reason"],
                                                result.quarantined["detail"], strict=True)}
    expected = {
        5: ("not_user_feedback", "source 'EVAL' is an automated evaluator"),
        6: ("unsupported_record", "score name 'reviewer-note' is not mapped"),
        7: ("missing_required_field", "score name is missing"),
        8: ("invalid_type", "field 'value' must be a number, got 'abc'"),
        9: ("invalid_type", "field 'timestamp' is not a timestamp"),
        11: ("missing_required_field", "'span_id' (or 'trace_id') is missing"),
    }
    assert {n - offset: r for n, (r, _) in got.items()} == {n: r for n, (r, _) in expected.items()}
    for number, (_, text) in expected.items():
        detail = got[number + offset][1]
        assert detail.startswith(f"scores/2026-12-07T14-00-00.{ext}: line {number + offset}") and text in detail
    audit = result.audit.iloc[0]
    assert audit["source_format"] == "langfuse_blob"
    assert audit["events_found"] == audit["events_written"] + audit["events_quarantined"] == 11


def test_the_three_file_types_give_the_same_events() -> None:
    frames = [ingest(ext).events.drop(columns=["source_file", "source_line"]) for ext in TYPES]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(other, frames[0])


def test_a_blob_score_maps_exactly_like_the_same_api_score() -> None:
    settings = FeedbackSettings()
    blob = {"id": "s1", "timestamp": "2026-12-07 13:12:00.000", "project_id": "p", "trace_id": "t1",
            "observation_id": "o1", "session_id": "", "name": "rating", "value": "3", "source": "API",
            "comment": "", "data_type": "NUMERIC", "string_value": ""}
    api = {"id": "s1", "timestamp": "2026-12-07 13:12:00.000", "traceId": "t1", "observationId": "o1",
           "name": "rating", "value": 3, "source": "API", "dataType": "NUMERIC"}
    assert _map(blob, "langfuse_blob", settings) == map_langfuse(api, settings)


def test_text_scores_are_read_from_their_text() -> None:
    settings = FeedbackSettings(score_name_map={"reviewer_verdict": "thumbs"})
    row = {"id": "s1", "timestamp": "2026-12-07 13:12:00.000", "project_id": "p", "trace_id": "t1",
           "name": "reviewer-verdict", "value": 0, "data_type": "TEXT", "string_value": "good"}
    assert _map(row, "langfuse_blob", settings)["event_type"] == "thumbs_up"


def test_detection_keeps_formats_apart() -> None:
    for path in (BLOB / "scores").iterdir():
        first = next(r for r in iter_records(path) if isinstance(r, RawRecord))
        assert detect_format(first.value) == "langfuse_blob"
    for path in (FIXTURES / "feedback").iterdir():
        if path.suffix in (".json", ".jsonl"):
            first = next(r for r in iter_records(path) if isinstance(r, RawRecord))
            values = first.value.get("data", [first.value]) if isinstance(first.value, dict) else [first.value]
            assert detect_format(values[0]) != "langfuse_blob"
    # A blob observation or trace row is not a score.
    observation = next(r for r in iter_records(BLOB / "observations_v2" / "2026-12-07T14-00-00.csv"))
    assert detect_format(observation.value) is None and not langfuse_blob.is_score(observation.value)
