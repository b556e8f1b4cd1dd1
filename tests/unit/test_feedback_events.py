"""Feedback events: schema, native/Langfuse/LangSmith reading, every quarantine reason, gzip, dedupe, the audit
identity, late feedback joined to responses across partitions, and a round trip on `aiobs generate` output."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aiobs_pipeline.feedback import (
    FeedbackSettings,
    ingest_feedback_partition,
    join_to_responses,
    satisfaction_scores,
    unknown_responses,
)
from aiobs_pipeline.feedback.events import (
    FEEDBACK_QUARANTINE_REASONS,
    REASONS,
    derive_event_id,
    detect_format,
)
from aiobs_pipeline.generate import IncidentSpec, generate
from aiobs_pipeline.generate import feedback as generator_feedback
from aiobs_pipeline.ingest.partition import ingest_partition, landing_folder
from aiobs_pipeline.schema import (
    FEEDBACK_AUDIT_COLUMN_NAMES,
    FEEDBACK_COLUMN_NAMES,
    FEEDBACK_COLUMNS,
    FEEDBACK_EVENT_TYPES,
    FEEDBACK_SOURCE_FORMATS,
    QUARANTINE_COLUMN_NAMES,
    QUARANTINE_REASONS,
    THUMBS_DOWN_REASONS,
)

HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feedback"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def event(i: int, event_type: str = "thumbs_up", **overrides: object) -> dict:
    """A well-formed native feedback event inside HOUR, in the layout `aiobs generate` writes."""
    base = {
        "event_id": f"e{i}", "span_id": f"s{i}", "trace_id": f"t{i}", "user_id": f"u{i % 3}",
        "session_id": f"sess{i % 2}", "event_type": event_type, "value": None, "reason": None, "comment": None,
        "original_text": None, "edited_text": None, "duration_seconds": None,
        "timestamp": f"2026-10-01T05:{i % 60:02d}:10.000Z", "source": "app",
    }
    base.update(overrides)
    return base


def write(root: Path, name: str, lines: list[str] | list[bytes], hour: datetime = HOUR, gz: bool = False) -> Path:
    folder = landing_folder(root, hour)
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def identity_holds(audit: pd.DataFrame) -> bool:
    return bool((audit["events_found"] == audit["events_written"] + audit["events_quarantined"]).all())


def reasons_by_line(quarantined: pd.DataFrame) -> dict[int, str]:
    return {int(n): r for n, r in zip(quarantined["source_line"], quarantined["reason"], strict=True)}


# ------------------------------------------------------------------------------------------------ schema
def test_schema_columns_types_and_constants() -> None:
    assert FEEDBACK_COLUMN_NAMES[:6] == ("event_id", "span_id", "trace_id", "user_id", "session_id", "event_type")
    required = {c.name for c in FEEDBACK_COLUMNS if c.required}
    assert required == {"event_id", "event_type", "timestamp", "source_format", "source_file", "source_line",
                        "export_hour", "schema_version"}
    assert set(FEEDBACK_EVENT_TYPES) == {"thumbs_up", "thumbs_down", "rating", "hallucination_report",
                                         "regenerated", "edited", "copied", "session_abandoned"}
    assert THUMBS_DOWN_REASONS[-1] == "other" and len(THUMBS_DOWN_REASONS) == 5
    # The generator writes exactly the canonical vocabulary.
    assert generator_feedback.EVENT_TYPES == FEEDBACK_EVENT_TYPES
    assert generator_feedback.THUMBS_DOWN_REASONS == THUMBS_DOWN_REASONS
    # Feedback-specific codes never shadow the shared ones, and every code used is described.
    assert not set(FEEDBACK_QUARANTINE_REASONS) & set(QUARANTINE_REASONS)
    assert all(REASONS.values())
    assert {detect_format({"event_type": "x"}), detect_format({"key": "k", "run_id": "r"}),
            detect_format({"name": "n", "traceId": "t"}),
            detect_format({"name": "n", "value": 1, "data_type": "NUMERIC", "project_id": "p"})} == \
        set(FEEDBACK_SOURCE_FORMATS)
    assert detect_format({"name": "n"}) is None and detect_format([1]) is None


def test_good_events_of_every_type_map_to_canonical_columns(tmp_path: Path) -> None:
    lines = [
        event(1, "thumbs_up"),
        event(2, "thumbs_down", reason="Incorrect information", comment="Wrong numbers."),
        event(3, "rating", value=4),
        event(4, "hallucination_report", comment="The cited source does not exist."),
        event(5, "regenerated"),
        event(6, "edited", original_text="Refunds within 60 days.", edited_text="Refunds within 30 days!"),
        event(7, "copied"),
        event(8, "session_abandoned", duration_seconds=12.5),
    ]
    write(tmp_path, "feedback.jsonl", [json.dumps(e) for e in lines])
    result = ingest_feedback_partition(tmp_path, HOUR)
    assert result.quarantined.empty
    events = result.events
    assert list(events.columns) == list(FEEDBACK_COLUMN_NAMES)
    assert list(events["event_type"]) == [e["event_type"] for e in lines]
    by_type = events.set_index("event_type")
    assert by_type.loc["thumbs_down", "reason"] == "incorrect_information"
    assert by_type.loc["rating", "value"] == 4.0
    # "60" -> "30" and "." -> "!" are two character substitutions.
    assert by_type.loc["edited", "diff_size"] == 2
    assert by_type.loc["session_abandoned", "duration_seconds"] == 12.5
    assert str(events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert events["timestamp"].iloc[0] == pd.Timestamp("2026-10-01T05:01:10Z")
    assert set(events["source_format"]) == {"native"} and set(events["source_file"]) == {"2026/10/01/05/feedback.jsonl"}
    assert list(events["source_line"]) == list(range(1, 9))
    assert (events["export_hour"] == pd.Timestamp(HOUR)).all()
    audit = result.audit
    assert list(audit.columns) == list(FEEDBACK_AUDIT_COLUMN_NAMES)
    assert audit.iloc[0]["events_written"] == 8 and audit.iloc[0]["source_format"] == "native"
    assert identity_holds(audit)


# ------------------------------------------------------------------------------------------------ bad events
BAD_LINES: list[tuple[bytes | str, str]] = [
    ('{"event_id": "x1", "span_id": "s", "event_type": "thumbs_up", "timestamp": "2026-10-01T05:00:00Z"', "invalid_json"),
    (b'{"event_id": "x2", "span_id": "s\xff", "event_type": "copied", "timestamp": "2026-10-01T05:00:00Z"}',
     "invalid_encoding"),
    (json.dumps({"hello": "world"}), "unknown_format"),
    (json.dumps([1, 2, 3]), "invalid_type"),
    (json.dumps(event(5, timestamp=None)), "missing_required_field"),
    (json.dumps(event(6, span_id=None, trace_id="")), "missing_required_field"),
    (json.dumps(event(7, "love_it")), "invalid_event_type"),
    (json.dumps(event(8, "thumbs_down", reason="rude")), "invalid_reason"),
    (json.dumps(event(9, "thumbs_up", reason="not_helpful")), "invalid_reason"),
    (json.dumps(event(10, "rating", value=6)), "invalid_rating"),
    (json.dumps(event(11, "rating")), "invalid_rating"),
    (json.dumps(event(12, "session_abandoned", duration_seconds=-3)), "negative_value"),
    (json.dumps(event(13, "session_abandoned", duration_seconds=45)), "not_a_signal"),
    (json.dumps(event(14, "session_abandoned")), "missing_required_field"),
    (json.dumps(event(15, source="eval")), "not_user_feedback"),
    (json.dumps(event(16, timestamp="yesterday")), "invalid_type"),
    (json.dumps(event(17, value="five")), "invalid_type"),
    (json.dumps(event(18, user_id=["u1"])), "invalid_type"),
    (json.dumps(event(19, comment="a\u0000b")), "invalid_encoding"),
    (json.dumps(event(1)), "duplicate_event_id"),  # same event_id as line 20's twin below (read first)
]


def test_each_bad_event_is_quarantined_with_its_reason_naming_file_line_and_field(tmp_path: Path) -> None:
    lines = [json.dumps(event(1))] + [line for line, _ in BAD_LINES]
    write(tmp_path, "feedback.jsonl", lines)
    result = ingest_feedback_partition(tmp_path, HOUR)
    assert list(result.quarantined.columns) == list(QUARANTINE_COLUMN_NAMES)
    expected = {i: reason for i, (_, reason) in enumerate(BAD_LINES, start=2)}
    assert reasons_by_line(result.quarantined) == expected
    assert list(result.events["event_id"]) == ["e1"]
    assert set(result.quarantined["reason"]) <= set(REASONS)
    for row in result.quarantined.itertuples():
        assert row.detail.startswith(f"2026/10/01/05/feedback.jsonl:{row.source_line}") or \
            row.detail.startswith(f"2026/10/01/05/feedback.jsonl: line {row.source_line}")
        assert row.raw
    detail = result.quarantined.set_index("source_line")["detail"]
    assert "'reason'" in detail[9] and "rude" in detail[9]
    assert "'value'" in detail[11] and "1..5" in detail[11]
    assert "'timestamp'" in detail[6]
    assert "'span_id' (or 'trace_id')" in detail[7]
    assert "'duration_seconds'" in detail[14] and "30" in detail[14]
    assert "already read at 2026/10/01/05/feedback.jsonl:1" in detail[21]
    assert result.quarantined.set_index("source_line").loc[9, "span_id"] == "s8"
    audit = result.audit.iloc[0]
    assert audit["records_read"] == len(lines)
    assert audit["events_found"] == len(lines) and audit["events_quarantined"] == len(BAD_LINES)
    assert json.loads(audit["quarantined_by_reason"])["missing_required_field"] == 3
    assert identity_holds(result.audit)


def test_abandon_threshold_is_a_setting(tmp_path: Path) -> None:
    write(tmp_path, "feedback.jsonl", [json.dumps(event(1, "session_abandoned", duration_seconds=45))])
    strict = ingest_feedback_partition(tmp_path, HOUR)
    relaxed = ingest_feedback_partition(tmp_path, HOUR, FeedbackSettings(abandon_threshold_seconds=60))
    assert list(strict.quarantined["reason"]) == ["not_a_signal"] and strict.events.empty
    assert list(relaxed.events["event_type"]) == ["session_abandoned"] and relaxed.quarantined.empty


def test_dedupe_by_event_id_across_files_and_by_identity_without_ids(tmp_path: Path) -> None:
    no_id = event(3, "copied", event_id=None)
    write(tmp_path, "a.jsonl", [json.dumps(event(1)), json.dumps(event(2)), json.dumps(no_id)])
    write(tmp_path, "b.jsonl", [
        json.dumps(event(2)),  # re-sent: same id
        json.dumps({**no_id, "timestamp": "2026-10-01T07:03:10+02:00"}),  # same instant, other offset
        json.dumps({**no_id, "user_id": "someone-else"}),  # a different user: a different event
    ])
    result = ingest_feedback_partition(tmp_path, HOUR)
    assert len(result.events) == 4
    quarantined = result.quarantined
    assert list(quarantined["reason"]) == ["duplicate_event_id"] * 2
    assert list(quarantined["source_file"]) == ["2026/10/01/05/b.jsonl"] * 2
    assert "already read at 2026/10/01/05/a.jsonl:2" in quarantined["detail"].iloc[0]
    assert "without event_id" in quarantined["detail"].iloc[1]
    derived = result.events[result.events["event_id"].str.startswith("derived-")]
    assert len(derived) == 2
    assert derived["event_id"].iloc[0] == derive_event_id("s3", "t3", "u0", "copied",
                                                          pd.Timestamp("2026-10-01T05:03:10Z"))
    audit = result.audit.set_index("source_file")
    assert audit.loc["2026/10/01/05/b.jsonl", "events_found"] == 3
    assert audit.loc["2026/10/01/05/b.jsonl", "events_written"] == 1
    assert identity_holds(result.audit)


def test_gzip_files_are_read_and_damaged_ones_quarantined(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl.gz", [json.dumps(event(i)) for i in range(1, 4)], gz=True)
    good = gzip.compress(b"".join(json.dumps(event(i)).encode() + b"\n" for i in range(10, 40)))
    folder = landing_folder(tmp_path, HOUR)
    (folder / "b.jsonl.gz").write_bytes(good[: len(good) - 30])  # truncated tail
    (folder / "c.jsonl.gz").write_bytes(b"not gzip at all\n")
    result = ingest_feedback_partition(tmp_path, HOUR)
    audit = result.audit.set_index("source_file")
    assert audit.loc["2026/10/01/05/a.jsonl.gz", "events_written"] == 3
    damaged = audit.loc["2026/10/01/05/b.jsonl.gz"]
    assert damaged["file_error"] and damaged["events_written"] > 0
    assert "corrupt_gzip" in json.loads(damaged["quarantined_by_reason"])
    unreadable = audit.loc["2026/10/01/05/c.jsonl.gz"]
    assert unreadable["records_read"] == 0 and json.loads(unreadable["quarantined_by_reason"]) == {"unreadable_file": 1}
    assert identity_holds(result.audit)


def test_empty_partition_gives_empty_tables(tmp_path: Path) -> None:
    result = ingest_feedback_partition(tmp_path, HOUR)
    assert result.events.empty and result.quarantined.empty and result.audit.empty
    assert list(result.events.columns) == list(FEEDBACK_COLUMN_NAMES)


# ------------------------------------------------------------------------------------------------ external formats
def test_langfuse_scores_page_maps_names_and_values(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "langfuse_scores_page.json", folder / "langfuse-scores.json")
    result = ingest_feedback_partition(tmp_path, HOUR)
    events = result.events.set_index("event_id")
    assert set(events["source_format"]) == {"langfuse"}
    first = events.loc["lf-score-01"]
    assert (first["event_type"], first["span_id"], first["trace_id"], first["session_id"], first["user_id"],
            first["source"], first["value"]) == ("thumbs_up", "lf-obs-1", "lf-trace-1", "lf-session-1", "user-7",
                                                "api", 1.0)
    assert (events.loc["lf-score-02", "event_type"], events.loc["lf-score-02", "reason"]) == ("thumbs_down", "too_verbose")
    assert events.loc["lf-score-03", "event_type"] == "thumbs_down"
    assert (events.loc["lf-score-04", "event_type"], events.loc["lf-score-04", "value"]) == ("rating", 4.0)
    assert (events.loc["lf-score-05", "event_type"], events.loc["lf-score-05", "reason"],
            events.loc["lf-score-05", "source"]) == ("thumbs_down", "incorrect_information", "annotation")
    assert (events.loc["lf-score-08", "event_type"], events.loc["lf-score-08", "edited_text"]) == \
        ("edited", "Refunds are accepted within 30 days.")
    assert (events.loc["lf-score-09", "event_type"], events.loc["lf-score-09", "reason"]) == ("thumbs_down", "not_helpful")
    trace_level = events.loc["lf-score-11"]
    assert trace_level["span_id"] is None and trace_level["trace_id"] == "lf-trace-11"
    q = result.quarantined
    assert sorted(zip(q["trace_id"], q["reason"], strict=True)) == [
        ("lf-trace-10", "invalid_rating"), ("lf-trace-6", "not_user_feedback"), ("lf-trace-7", "unsupported_record")]
    assert (q["source_line"] == 1).all() and q["detail"].str.contains(r"line 1 data\[\d+\]").all()
    assert "'toxicity'" in q.set_index("trace_id").loc["lf-trace-7", "detail"]
    assert identity_holds(result.audit) and result.audit.iloc[0]["events_found"] == 11


def test_langsmith_feedback_maps_keys_scores_and_corrections(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "langsmith_feedback.jsonl", folder / "langsmith-feedback.jsonl")
    result = ingest_feedback_partition(tmp_path, HOUR)
    events = result.events.set_index("source_line")
    assert set(events["source_format"]) == {"langsmith"}
    first = events.loc[1]
    assert (first["event_type"], first["span_id"], first["trace_id"], first["user_id"], first["session_id"]) == (
        "thumbs_up", "7f0a3c2e-2222-4a6b-9d0e-000000000002", "7f0a3c2e-1111-4a6b-9d0e-000000000001", "user-7",
        "conv-42")
    assert (events.loc[2, "event_type"], events.loc[2, "reason"], events.loc[2, "user_id"]) == \
        ("thumbs_down", "not_helpful", "user-9")
    # A naive LangSmith timestamp is UTC.
    assert events.loc[2, "timestamp"] == pd.Timestamp("2026-10-01T05:41:00Z")
    assert (events.loc[4, "event_type"], events.loc[4, "value"]) == ("rating", 2.0)
    assert events.loc[5, "event_type"] == "edited"
    assert json.loads(events.loc[5, "edited_text"]) == {"output": "Refunds are accepted within 30 days."}
    assert (events.loc[6, "event_type"], events.loc[6, "source"]) == ("regenerated", "api")
    assert reasons_by_line(result.quarantined) == {3: "not_user_feedback", 7: "not_a_signal", 8: "unsupported_record",
                                                   9: "missing_required_field"}
    assert identity_holds(result.audit)


def test_score_name_map_setting_maps_custom_names(tmp_path: Path) -> None:
    record = {"id": "lf-x", "traceId": "t", "observationId": "o", "name": "Helpful?", "dataType": "BOOLEAN",
              "value": 1, "stringValue": "True", "source": "API", "timestamp": "2026-10-01T05:00:00Z"}
    write(tmp_path, "scores.jsonl", [json.dumps(record)])
    assert list(ingest_feedback_partition(tmp_path, HOUR).quarantined["reason"]) == ["unsupported_record"]
    mapped = ingest_feedback_partition(tmp_path, HOUR, FeedbackSettings(score_name_map={"helpful?": "thumbs"}))
    assert list(mapped.events["event_type"]) == ["thumbs_up"]
    with pytest.raises(ValueError, match="score_name_map"):
        FeedbackSettings(score_name_map={"x": "love"})


# ------------------------------------------------------------------------------------------------ late feedback
def _native_span(span_id: str, trace_id: str, start: str, kind: str = "llm", **metadata: str) -> dict:
    end = (pd.Timestamp(start) + pd.Timedelta(seconds=2)).isoformat()
    return {"span_id": span_id, "trace_id": trace_id, "name": "chat_completion", "kind": kind,
            "start_time": start, "end_time": end, "model": "gpt-4o-mini",
            "provider": "openai", "status": "ok",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "metadata": {"user_id": "u1", "session_id": "sess-9", "feature": "chat", "prompt_version": "v3",
                         **metadata}}


def test_late_feedback_joins_its_response_across_partitions(tmp_path: Path) -> None:
    landing, feedback = tmp_path / "landing", tmp_path / "feedback"
    response_hour = HOUR - timedelta(hours=3)
    write(landing, "spans.jsonl", [
        json.dumps(_native_span("root", "trace-a", "2026-10-01T02:10:00Z", kind="chain")),
        json.dumps(_native_span("first", "trace-a", "2026-10-01T02:10:05Z")),
        json.dumps(_native_span("answer", "trace-a", "2026-10-01T02:10:20Z")),
    ], hour=response_hour)
    write(landing, "spans.jsonl", [json.dumps(_native_span("other", "trace-b", "2026-10-01T05:01:00Z",
                                                           feature="search"))])
    write(feedback, "feedback.jsonl", [
        json.dumps(event(1, span_id="answer", trace_id=None, user_id=None, session_id=None)),
        json.dumps(event(2, "thumbs_down", span_id=None, trace_id="trace-a")),  # trace-level: the final answer
        json.dumps(event(3, span_id="never-ingested", trace_id="trace-x")),
        json.dumps(event(4, span_id="other", trace_id="trace-b")),
    ])
    result = ingest_feedback_partition(feedback, HOUR)
    assert result.quarantined.empty and result.audit.iloc[0]["late_events"] == 0
    spans = pd.concat([ingest_partition(landing, response_hour).spans, ingest_partition(landing, HOUR).spans])
    joined = join_to_responses(result.events, spans)
    assert len(joined) == 4  # nothing dropped
    by_id = joined.set_index("event_id")
    late = by_id.loc["e1"]
    assert (late["response_span_id"], late["resolved_by"], late["feature"], late["model"], late["prompt_version"]) == \
        ("answer", "span_id", "chat", "gpt-4o-mini", "v3")
    assert late["response_hour"] == pd.Timestamp(response_hour)
    # Answered 02:10:22 (end of the span), rated 05:01:10.
    assert late["feedback_delay_seconds"] == pytest.approx((2 * 60 + 50) * 60 + 48)
    assert (late["trace_id"], late["user_id"], late["session_id"]) == ("trace-a", "u1", "sess-9")  # filled in
    assert (by_id.loc["e2", "response_span_id"], by_id.loc["e2", "resolved_by"]) == ("answer", "trace_id")
    assert by_id.loc["e4", "feature"] == "search" and by_id.loc["e4", "response_hour"] == pd.Timestamp(HOUR)
    unknown = unknown_responses(joined)
    assert list(unknown["event_id"]) == ["e3"] and unknown["feature"].isna().all()
    assert not by_id.loc["e3", "response_found"] and by_id.loc["e3", "resolved_by"] is None
    # Satisfaction per response uses the resolved response: e1 and e2 are both about "answer".
    scores = satisfaction_scores(joined).set_index("span_id")
    assert scores.loc["answer", "events"] == 2 and scores.loc["answer", "vote"] == "thumbs_down"
    assert scores.loc["answer", "response_hour"] == pd.Timestamp(response_hour)


def test_events_outside_their_hour_folder_are_counted_late(tmp_path: Path) -> None:
    write(tmp_path, "feedback.jsonl", [json.dumps(event(1)), json.dumps(event(2, timestamp="2026-10-01T09:00:00Z"))])
    audit = ingest_feedback_partition(tmp_path, HOUR).audit
    assert audit.iloc[0]["late_events"] == 1 and audit.iloc[0]["events_written"] == 2


# ------------------------------------------------------------------------------------------------ round trip
def test_round_trip_on_generator_output(tmp_path: Path) -> None:
    start = datetime(2025, 5, 31, 12, tzinfo=UTC)
    incidents = [IncidentSpec("bad_prompt_version", start, start + timedelta(hours=2)),
                 IncidentSpec("model_change", start + timedelta(hours=1), start + timedelta(hours=2))]
    summary = generate(tmp_path / "landing", start, start + timedelta(hours=2), seed=11, scale=2.0,
                       incidents=incidents, feedback_root=tmp_path / "feedback")
    folders = sorted({p.parent for p in (tmp_path / "feedback").rglob("*.jsonl")})
    hours = [datetime(*map(int, f.relative_to(tmp_path / "feedback").parts), tzinfo=UTC) for f in folders]
    parts = [ingest_feedback_partition(tmp_path / "feedback", hour) for hour in hours]
    events = pd.concat([p.events for p in parts], ignore_index=True)
    assert sum(len(p.quarantined) for p in parts) == 0
    assert len(events) == summary.feedback_events
    assert all(identity_holds(p.audit) and p.audit["late_events"].sum() == 0 for p in parts)

    spans = pd.concat([ingest_partition(tmp_path / "landing", start + timedelta(hours=i)).spans for i in range(2)])
    joined = join_to_responses(events, spans)
    assert joined["response_found"].all() and (joined["resolved_by"] == "span_id").all()
    scores = satisfaction_scores(joined)
    incident_spans = {s for record in summary.incidents for s in record["span_ids"]}
    on_incident = scores[scores["span_id"].isin(incident_spans)]["satisfaction"]
    elsewhere = scores[~scores["span_id"].isin(incident_spans)]["satisfaction"]
    assert len(on_incident) >= 10 and len(elsewhere) >= 10
    assert on_incident.mean() < elsewhere.mean() - 0.1


# ------------------------------------------------------------------------------------------------ docs
def test_feedback_doc_lists_every_column_reason_event_type_and_setting() -> None:
    text = (DOCS / "feedback.md").read_text()
    wanted = [*FEEDBACK_COLUMN_NAMES, *REASONS, *FEEDBACK_EVENT_TYPES, *THUMBS_DOWN_REASONS,
              *FeedbackSettings.model_fields]
    missing = [name for name in wanted if f"`{name}`" not in text]
    assert not missing, f"docs/feedback.md does not mention: {missing}"


def test_a_parquet_file_in_the_feedback_folder_is_one_unknown_format_record(tmp_path: Path) -> None:
    from aiobs_pipeline.feedback.events import ingest_feedback_partition

    folder = tmp_path / "2026/12/07/10"
    folder.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "fixtures/langsmith_bulk/runs_v1.parquet", folder / "runs.parquet")
    result = ingest_feedback_partition(tmp_path, datetime(2026, 12, 7, 10, tzinfo=UTC))
    assert result.events.empty and list(result.quarantined["reason"]) == ["unknown_format"]
    assert "not a feedback export" in result.quarantined["detail"].iloc[0]
    audit = result.audit.iloc[0]
    assert (audit["events_found"], audit["events_quarantined"]) == (1, 1)
