"""Langfuse blob-storage export reader: enriched and legacy observations in JSON, JSONL and CSV, the legacy
trace join, bad rows, and detection that neither steals other formats' files nor loses its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from aiobs_pipeline.ingest import detect, langfuse, langfuse_blob
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import is_landing_file, iter_records
from aiobs_pipeline.ingest.partition import ingest_files
from aiobs_pipeline.schema import QUARANTINE_REASONS

FIXTURES = Path(__file__).parents[1] / "fixtures"
BLOB = FIXTURES / "langfuse_blob"
WINDOW = "2026-12-07T14-00-00"
HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
TYPES = ("json", "jsonl", "csv")


def ingest(*names: str):
    return ingest_files([BLOB / n for n in names], HOUR, BLOB)


def by_id(spans: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["span_id"]: row for row in spans.to_dict("records")}


def comparable(spans: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows without what differs between file types (file name, record number)."""
    kept = spans.drop(columns=["source_file", "source_line"])
    return kept.astype(object).where(kept.notna(), None).to_dict("records")


# ------------------------------------------------------------------------------------------- enriched


@pytest.mark.parametrize("ext", TYPES)
def test_enriched_observations_map_fields_usage_cost_and_trace_context(ext: str) -> None:
    result = ingest(f"observations_v2/{WINDOW}.{ext}")
    spans = by_id(result.spans)
    assert set(spans) == {"o-2001", "o-2002", "o-2003", "o-2004", "o-2005", "o-2006", "o-2007"}
    gen = spans["o-2002"]
    assert gen["kind"] == "llm" and gen["source_format"] == "langfuse_blob"
    assert gen["trace_id"] == "t-1001" and gen["parent_span_id"] == "o-2001"
    assert gen["user_id"] == "user-42" and gen["session_id"] == "sess-7" and gen["environment"] == "production"
    assert gen["model"] == "gpt-4o-2024-08-06" and gen["temperature"] == 0.2 and gen["max_tokens"] == 512
    # Langfuse's disjoint usage types: cached input tokens are added back into input_tokens.
    assert (gen["input_tokens"], gen["cached_input_tokens"], gen["output_tokens"], gen["total_tokens"]) == \
        (100, 60, 20, 120)
    assert gen["reported_cost_usd"] == pytest.approx(0.00033)
    assert gen["start_time"] == pd.Timestamp("2026-12-07 13:10:00.5", tz="UTC")
    assert gen["latency_ms"] == pytest.approx(2400.0) and gen["time_to_first_token_ms"] == pytest.approx(400.0)
    assert gen["prompt_name"] == "support-prompt" and gen["prompt_version"] == "3" and gen["feature"] == "billing"
    messages = orjson.loads(gen["input_messages"])
    assert messages[1] == {"role": "user", "content": 'Why is my invoice higher?\nLine two, with a comma, and "quotes".'}
    assert gen["output_text"] == "Your plan changed on Dec 1."
    meta = orjson.loads(gen["metadata"])
    assert meta["tags"] == ["prod", "chat"] and meta["release"] == "v1.4.2"
    assert meta["langfuse"]["trace"] == {"name": "support-chat"}
    assert meta["langfuse"]["model_id"] == "cl-gpt4o" and meta["langfuse"]["input_price"] == "0.0000025"
    assert "latency" not in meta["langfuse"] and "time_to_first_token" not in meta["langfuse"]

    assert spans["o-2001"]["parent_span_id"] is None and spans["o-2001"]["kind"] == "chain"  # "" -> root
    assert spans["o-2001"]["app"] == "helpdesk"
    assert spans["o-2003"]["kind"] == "embedding" and spans["o-2003"]["input_tokens"] == 12
    assert spans["o-2004"]["kind"] == "tool"
    assert spans["o-2005"]["latency_ms"] == 0.0  # an EVENT is a point in time
    err = spans["o-2006"]
    assert err["status"] == "error" and err["error_message"] == "Rate limit exceeded"
    assert err["user_id"] is None and err["session_id"] is None and err["environment"] == "staging"
    assert orjson.loads(err["input_messages"]) == [{"role": "user", "content": "Say hi"}]
    retry = spans["o-2007"]
    assert retry["output_text"] == "Grüße 👋"
    # Metadata values are JSON-parsed as Langfuse's API does: OpenTelemetry attributes become readable.
    assert retry["app"] == "drafts-api" and retry["request_model"] == "claude-3-5-sonnet-latest"
    assert retry["response_model"] == retry["model"] == "claude-3-5-sonnet-20241022"
    assert orjson.loads(retry["metadata"])["attempt"] == 2


def test_the_three_file_types_and_gzip_give_the_same_rows() -> None:
    frames = [ingest(f"observations_v2/{WINDOW}.{ext}").spans for ext in (*TYPES, "jsonl.gz")]
    first = comparable(frames[0])
    for other in frames[1:]:
        assert comparable(other) == first


@pytest.mark.parametrize("ext", TYPES)
def test_bad_enriched_rows_are_quarantined_naming_file_record_and_field(ext: str) -> None:
    result = ingest(f"observations_v2/{WINDOW}.{ext}")
    q = result.quarantined.sort_values("source_line")
    offset = 1 if ext == "csv" else 0  # the CSV header is line 1
    expected = [
        (8 + offset, "missing_required_field", "field 'id' is missing or empty"),
        (9 + offset, "missing_required_field", "field 'trace_id' is missing or empty"),
        (10 + offset, "invalid_type", "field 'usage_details' must be a JSON object, got 'oops'"),
        (11 + offset, "invalid_type", "field 'start_time' is not a timestamp: 'yesterday'"),
        (12 + offset, "invalid_type", "field 'total_cost' must be a number, got 'n/a'"),
    ]
    assert [(int(n), r) for n, r in zip(q["source_line"], q["reason"], strict=True)] == \
        [(n, r) for n, r, _ in expected]
    for detail, (_, _, text) in zip(q["detail"], expected, strict=True):
        assert detail.startswith(f"observations_v2/{WINDOW}.{ext}") and text in detail
    assert q["raw"].notna().all() and set(q["reason"]) <= set(QUARANTINE_REASONS)
    audit = result.audit.iloc[0]
    assert audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"] == 12


# ------------------------------------------------------------------------------------------- legacy


@pytest.mark.parametrize("ext", TYPES)
def test_legacy_observations_are_joined_to_their_trace_rows_in_the_hour(ext: str) -> None:
    result = ingest(f"observations/{WINDOW}.{ext}", f"traces/{WINDOW}.{ext}")
    spans = by_id(result.spans)
    assert set(spans) == {"o-4001", "o-4002", "o-4003", "t-3002"}
    gen = spans["o-4002"]
    assert (gen["user_id"], gen["session_id"], gen["environment"]) == ("user-43", "sess-9", "production")
    assert gen["total_tokens"] == 30 and gen["parent_span_id"] == "o-4001"
    assert gen["source_file"] == f"observations/{WINDOW}.{ext}"
    meta = orjson.loads(gen["metadata"])
    assert meta["tags"] == ["prod"] and meta["release"] == "v1.4.2" and meta["app"] == "helpdesk"
    assert meta["langfuse"]["trace"]["name"] == "support-chat" and meta["langfuse"]["trace"]["bookmarked"] is True
    assert "public" not in meta["langfuse"]["trace"]
    # Its trace is in no traces file of the hour: kept, without trace attributes, and said so.
    lone = spans["o-4003"]
    assert lone["user_id"] is None
    assert orjson.loads(lone["metadata"])["langfuse"]["trace_context"] == "no traces/ row of this trace in this export hour"
    # A trace without observations in the hour becomes one chain span, so nothing of it is lost.
    trace = spans["t-3002"]
    assert trace["kind"] == "chain" and trace["name"] == "nightly-check" and trace["trace_id"] == "t-3002"
    assert trace["source_file"] == f"traces/{WINDOW}.{ext}"
    q = result.quarantined
    assert sorted(zip(q["source_file"], q["reason"], strict=True)) == [
        (f"observations/{WINDOW}.{ext}", "missing_required_field"), (f"traces/{WINDOW}.{ext}",
                                                                      "missing_required_field")]
    assert any("field 'type' is missing" in d for d in q["detail"])
    assert any("trace field 'id' is missing" in d for d in q["detail"])
    for row in result.audit.to_dict("records"):
        assert row["spans_found"] == row["spans_written"] + row["spans_quarantined"]


def test_a_legacy_copy_of_an_enriched_observation_is_quarantined_as_duplicate() -> None:
    legacy = {"id": "o-2002", "trace_id": "t-1001", "type": "GENERATION", "start_time": "2026-12-07 13:10:00.500",
              "project_id": "p", "usage_details": {"input": 1, "output": 1, "total": 2}}
    enriched = dict(legacy, user_id="u", session_id="s", trace_name="n")
    rows = [dict(r, _file=f) for r, f in ((next(langfuse_blob.read([RawRecord(1, "", legacy)])), "observations/a"),
                                          (next(langfuse_blob.read([RawRecord(1, "", enriched)])),
                                           "observations_v2/a"))]
    kept, rejects = langfuse_blob.postprocess(rows)
    assert [r["user_id"] for r in kept] == ["u"]
    assert [(r.reason, r.source_file) for r in rejects] == [("duplicate_span_id", "observations/a")]
    assert "observations_v2/a:1" in rejects[0].detail


# ------------------------------------------------------------------------------------------- other records


def test_scores_are_feedback_and_the_manifest_holds_no_span() -> None:
    scores = ingest(f"scores/{WINDOW}.csv")
    assert scores.spans.empty and set(scores.quarantined["reason"]) == {"unsupported_record"}
    assert "feedback_root" in scores.quarantined["detail"].iloc[0]
    manifest = ingest(f"manifests/{WINDOW}.json")
    assert manifest.spans.empty and manifest.quarantined.empty
    audit = manifest.audit.iloc[0]
    assert (audit["source_format"], audit["records_read"], audit["spans_found"]) == ("langfuse_blob", 1, 0)


@pytest.mark.parametrize("value, reason, text", [
    ({"id": "x", "trace_id": "t", "type": "SPAN", "start_time": "2026-12-07 13:00:00", "project_id": "p",
      "public": "maybe"}, "invalid_type", "field 'public' must be true or false"),
    ({"id": "x", "trace_id": "t", "type": "SPAN", "start_time": "2026-12-07 13:00:00", "project_id": "p",
      "tags": "prod"}, "invalid_type", "field 'tags' must be a JSON array"),
    ({"id": "x", "trace_id": "t", "type": "SPAN", "start_time": "2026-12-07 13:00:00", "project_id": "p",
      "cost_details": {"total": "lots"}}, "invalid_type", "field 'cost_details.total' must be a number"),
    ({"id": 5.5, "trace_id": "t", "type": "SPAN", "start_time": "2026-12-07 13:00:00", "project_id": "p"},
     "invalid_type", "field 'id' must be a string"),
    (["not", "an", "object"], "invalid_type", "must be a JSON object"),
    ({"id": "x", "project_id": "p", "something": 1}, "unknown_format", "not a Langfuse blob-export"),
])
def test_value_problems_name_the_blob_field(value: Any, reason: str, text: str) -> None:
    out = list(langfuse_blob.read([RawRecord(7, json.dumps(value), value)]))
    assert len(out) == 1 and isinstance(out[0], Reject)
    assert out[0].reason == reason and text in out[0].detail and out[0].detail.startswith("record 7:")


def test_csv_numbers_booleans_and_quoted_64_bit_integers_are_read() -> None:
    value = {"id": "x", "trace_id": "t", "type": "generation", "start_time": "2026-12-07 13:00:00.000",
             "project_id": "p", "usage_details": {"input": "10", "output": "5", "total": "15"},
             "total_cost": "1.5e-05", "bookmarked": "true", "user_id": "", "trace_name": "n"}
    (row,) = langfuse_blob.read([RawRecord(1, "", value)])
    assert row["kind"] == "llm" and (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (10, 5, 15)
    assert row["reported_cost_usd"] == pytest.approx(1.5e-05) and row["user_id"] is None
    assert row["metadata"]["langfuse"]["trace"] == {"name": "n", "bookmarked": True}


# ------------------------------------------------------------------------------------------- detection


def _first_record(path: Path) -> Any:
    for item in iter_records(path):
        if isinstance(item, RawRecord):
            return item.value
    return None


OTHER_FIXTURES = sorted(p for folder in ("langfuse", "langsmith", "openinference", "otlp")
                        for p in (FIXTURES / folder).rglob("*") if p.is_file() and is_landing_file(p))


@pytest.mark.parametrize("path", OTHER_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_other_formats_files_are_not_taken_for_blob_rows(path: Path) -> None:
    value = _first_record(path)
    assert value is not None and detect.detect_reader(value) is not langfuse_blob


BLOB_FILES = sorted(p for p in BLOB.rglob("*") if p.is_file() and p.suffix not in (".md", ".py")
                    and p.name != "csv_quirks.csv")


@pytest.mark.parametrize("path", BLOB_FILES, ids=lambda p: str(p.relative_to(BLOB)))
def test_blob_files_are_detected_as_blob_rows(path: Path) -> None:
    assert detect.detect_reader(_first_record(path)) is langfuse_blob


def test_langfuse_api_observations_stay_with_the_api_reader() -> None:
    api = {"id": "g1", "traceId": "t1", "type": "GENERATION", "startTime": "2026-10-01T05:00:00Z",
           "projectId": "p"}
    assert detect.detect_reader(api) is langfuse
    assert not langfuse_blob.matches(api)
