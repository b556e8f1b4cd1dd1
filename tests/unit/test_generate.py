"""Tests for `aiobs generate`: determinism, landing layout, ground truth, incident windows, feedback, and a
round trip through the real readers (`ingest_partition`)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from aiobs_pipeline.generate import (
    FORMATS,
    GROUND_TRUTH_FILE,
    IncidentSpec,
    default_incidents,
    demo_window,
    generate,
)
from aiobs_pipeline.generate.feedback import EVENT_TYPES, THUMBS_DOWN_REASONS
from aiobs_pipeline.generate.scenario import LOOP_USER, MODELS, build_users
from aiobs_pipeline.generate.traces import BASELINE_ERROR_CAP, build_hour
from aiobs_pipeline.ingest.files import is_landing_file
from aiobs_pipeline.ingest.partition import ingest_partition

START = datetime(2025, 5, 31, 12, tzinfo=UTC)
END = START + timedelta(hours=3)
SCALE = 0.5
LOOP_CALLS = 60
# One incident per hour boundary, so each test can tell inside from outside the window.
INCIDENTS = [
    IncidentSpec("infinite_loop", START, START + timedelta(hours=1), {"calls_per_hour": LOOP_CALLS}),
    IncidentSpec("error_burst", START + timedelta(hours=1), START + timedelta(hours=2)),
    IncidentSpec("bad_prompt_version", START + timedelta(hours=1), END),
    IncidentSpec("model_change", START + timedelta(hours=2), END),
]
FEEDBACK_FIELDS = ("event_id", "span_id", "trace_id", "user_id", "session_id", "event_type", "value", "reason",
                   "comment", "original_text", "edited_text", "duration_seconds", "timestamp", "source")


def _run(root: Path, **kwargs):
    options = {"seed": 7, "scale": SCALE, "incidents": INCIDENTS, "inject_bad_records": True}
    options.update(kwargs)
    return generate(root / "landing", START, END, feedback_root=root / "feedback", **options)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    return root, _run(root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hours() -> list[datetime]:
    return [START + timedelta(hours=i) for i in range(3)]


def _built(hour: datetime, incidents=INCIDENTS):
    return build_hour(7, hour, SCALE, build_users(7), list(incidents), FORMATS)


def test_price_table_matches_genai_prices():
    providers = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "google": "google"}
    for model in MODELS.values():
        cached = 0 if model.embedding else 4_096
        ours = model.cost(10_000, 2_000, cached)
        if model.provider not in providers:
            assert ours is None, f"{model.name}: an unpriced self-hosted model must have no cost"
            continue
        usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=cached)
        price = calc_price(usage, model_ref=model.response_model, provider_id=providers[model.provider])
        assert ours == pytest.approx(float(price.total_price), rel=1e-6), model.name


def test_demo_window_is_the_last_eight_days_of_the_previous_month():
    assert demo_window(date(2025, 6, 15)) == (datetime(2025, 5, 24, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC))
    start, end = demo_window(datetime(2026, 1, 1, 3, tzinfo=UTC))
    assert (start, end) == (datetime(2025, 12, 24, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    incidents = default_incidents(start, end)
    assert {i.kind for i in incidents} == {"infinite_loop", "error_burst", "bad_prompt_version", "model_change"}
    for spec in incidents:
        assert spec.start >= end - timedelta(days=1) and spec.end <= end, "seven ordinary days stay clean"


def test_same_arguments_give_identical_bytes_even_in_parallel(generated, tmp_path):
    root, _ = generated
    _run(tmp_path, workers=2)
    first, second = _files(root), _files(tmp_path)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)


def test_another_seed_gives_other_data(generated, tmp_path):
    root, _ = generated
    _run(tmp_path, seed=8)
    first, second = _files(root / "landing"), _files(tmp_path / "landing")
    assert first.get(GROUND_TRUTH_FILE) != second.get(GROUND_TRUTH_FILE)


def test_files_sit_in_their_hour_folders_in_all_formats_some_gzipped(generated):
    root, summary = generated
    landing = root / "landing"
    hour_dirs = {landing / f"{h:%Y/%m/%d/%H}" for h in _hours()}
    files = [p for p in landing.rglob("*") if p.is_file() and p.name != GROUND_TRUTH_FILE]
    assert files and {p.parent for p in files} == hour_dirs
    assert all(is_landing_file(p) for p in files)
    assert {p.name.split("-")[0] for p in files} >= set(FORMATS)
    zipped = [p for p in files if p.name.endswith(".gz")]
    assert len({p.name.split("-")[0] for p in zipped}) >= 2, "several formats are gzipped in some hours"
    assert all(gzip.decompress(p.read_bytes()) for p in zipped)
    assert all(count > 0 for count in summary.spans_by_format.values())
    assert sorted(summary.files_written) == sorted(files + list((root / "feedback").rglob("feedback.jsonl")))


def test_spans_start_inside_their_export_hour_except_a_few_late_ones():
    late = 0
    total = 0
    for hour in _hours():
        built = _built(hour)
        for trace in built.traces:
            for span in trace.spans:
                total += 1
                offset = span.start_ns / 1e9 - hour.timestamp()
                assert -300 < offset < 3600, "late spans are at most a few minutes early"
                late += offset < 0
        assert built.late_spans == sum(1 for t in built.traces for s in t.spans if s.start_ns / 1e9 < hour.timestamp())
    assert late < total * 0.05


def test_ground_truth_records_every_incident_window(generated):
    root, summary = generated
    path = root / "landing" / GROUND_TRUTH_FILE
    assert summary.ground_truth_path == path
    truth = json.loads(path.read_text())
    assert truth["window"] == {"start": "2025-05-31T12:00:00Z", "end": "2025-05-31T15:00:00Z"}
    by_kind = {r["kind"]: r for r in truth["incidents"]}
    assert set(by_kind) == {s.kind for s in INCIDENTS}
    for spec in INCIDENTS:
        record = by_kind[spec.kind]
        assert (record["start"], record["end"]) == (f"{spec.start:%Y-%m-%dT%H:%M:%SZ}", f"{spec.end:%Y-%m-%dT%H:%M:%SZ}")
        assert record["span_ids"], f"{spec.kind} affected no response"
    loop = by_kind["infinite_loop"]["stats"]
    assert loop["user_id"] == LOOP_USER and loop["calls"] == LOOP_CALLS and loop["spend_usd"] > 0
    burst = by_kind["error_burst"]["stats"]
    assert 0.18 <= burst["error_rate"] <= 0.32
    assert by_kind["bad_prompt_version"]["stats"]["invalid_citations"] >= len(by_kind["bad_prompt_version"]["span_ids"])
    assert by_kind["model_change"]["stats"]["model_after"] == "gemini-1.5-flash-8b"
    assert {b["expected_reason"] for b in truth["bad_records"]} >= {"invalid_json", "duplicate_span_id"}
    landing_text = b"".join(gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
                            for p in (root / "landing").rglob("*-*") if p.is_file())
    for record in truth["incidents"]:
        assert all(span_id.encode() in landing_text for span_id in record["span_ids"])


def test_incidents_happen_inside_their_windows_only():
    loop_hour, burst_hour, last_hour = _hours()
    for hour in _hours():
        traces = _built(hour).traces
        llm = [(t, s) for t in traces for s in t.spans if s.kind == "llm"]
        loop_calls = sum(1 for t, _ in llm if t.user_id == LOOP_USER and t.incident == "infinite_loop")
        assert loop_calls == (LOOP_CALLS if hour == loop_hour else 0)
        error_share = sum(s.status == "error" for _, s in llm) / len(llm)
        if hour == burst_hour:
            assert 0.15 <= error_share <= 0.35
        else:
            assert error_share <= BASELINE_ERROR_CAP
        search = [t for t in traces if t.feature == "search"]
        support = [t for t in traces if t.feature == "support"]
        assert search and support
        if hour == loop_hour:
            assert {t.prompt_version for t in search} == {"2"} and not any(t.degraded for t in search)
        else:
            assert {t.prompt_version for t in search} == {"3"}
            for t in search:
                if t.response.status == "ok":
                    assert set(t.citations) - set(t.retrieved_ids), "v3 answers cite ids that were not retrieved"
        models = {t.response.model.name for t in support}
        assert models == ({"gemini-1.5-flash-8b"} if hour == last_hour else {"claude-3-5-sonnet-20241022"})
        for t in support:
            if t.response.status == "ok" and hour != last_hour:
                assert set(t.citations) <= set(t.retrieved_ids)
            elif t.response.status == "ok":
                assert t.degraded == "model_change" and "Confidence: high" not in t.answer


def test_ordinary_traffic_is_the_same_with_or_without_incidents():
    for hour in _hours():
        clean = _built(hour, incidents=[]).traces
        with_incidents = [t for t in _built(hour).traces if t.incident != "infinite_loop"]
        assert [(t.trace_id, t.user_id, t.feature) for t in clean] == \
            [(t.trace_id, t.user_id, t.feature) for t in with_incidents]


def test_grounded_answers_reuse_retrieved_sentences():
    traces = [t for t in _built(START, incidents=[]).traces if t.feature in ("search", "support")]
    assert traces
    for trace in traces:
        if trace.response.status != "ok":
            continue
        reranked = trace.spans[3].documents
        sentences = {s for d in reranked for s in d.text.split(". ")}
        first = trace.answer.split(" [")[0].removeprefix("In short: ").removeprefix(
            "Here is what the documentation says: ")
        assert any(first.rstrip(".") in s or s.rstrip(".") in first for s in sentences)


def test_feedback_files_hold_valid_events_in_their_own_hour(generated):
    root, summary = generated
    files = sorted((root / "feedback").rglob("*"))
    events_files = [p for p in files if p.is_file()]
    assert events_files and all(p.name == "feedback.jsonl" for p in events_files)
    events = []
    for path in events_files:
        folder_hour = datetime.strptime("/".join(path.parent.parts[-4:]), "%Y/%m/%d/%H").replace(tzinfo=UTC)
        for line in path.read_text().splitlines():
            event = json.loads(line)
            assert tuple(event) == FEEDBACK_FIELDS
            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            assert folder_hour <= stamp < folder_hour + timedelta(hours=1)
            assert event["event_type"] in EVENT_TYPES and event["source"] == "app"
            if event["event_type"] == "thumbs_down":
                assert event["reason"] in THUMBS_DOWN_REASONS
            if event["event_type"] == "rating":
                assert event["value"] in (1, 2, 3, 4, 5)
            if event["event_type"] == "edited":
                assert event["original_text"] and event["edited_text"]
            if event["event_type"] == "session_abandoned":
                assert 0 < event["duration_seconds"] < 30
            events.append(event)
    assert len(events) == summary.feedback_events
    responses = {t.response.span_id for h in _hours() for t in _built(h).traces if t.response is not None}
    assert {e["span_id"] for e in events} <= responses
    truth = json.loads((root / "landing" / GROUND_TRUTH_FILE).read_text())
    for record in truth["incidents"]:
        if record["kind"] in ("bad_prompt_version", "model_change"):
            wave = record["feedback_wave"]
            assert wave["negative_events"] > 0.5 * len(record["span_ids"])
    degraded = {s for r in truth["incidents"] if r["kind"] in ("bad_prompt_version", "model_change")
                for s in r["span_ids"]}
    ordinary = Counter(e["event_type"] for e in events if e["span_id"] not in degraded)
    assert ordinary["thumbs_up"] > 3 * ordinary["thumbs_down"]


def test_round_trip_through_the_readers_quarantines_only_the_injected_records(generated):
    root, summary = generated
    landing = root / "landing"
    truth = json.loads((landing / GROUND_TRUTH_FILE).read_text())
    expected = {(b["file"], b["line"], b["expected_reason"]) for b in truth["bad_records"]}
    assert expected
    quarantined, written, late = set(), Counter(), 0
    for hour in _hours():
        result = ingest_partition(landing, hour)
        assert result.unreadable_files == []
        for row in result.quarantined.itertuples():
            quarantined.add((row.source_file, int(row.source_line), row.reason))
        written.update(result.spans["source_format"])
        late += int(result.audit["late_spans"].sum())
        assert (result.audit["spans_found"] == result.audit["spans_written"] + result.audit["spans_quarantined"]).all()
    assert quarantined == expected
    assert dict(written) == summary.spans_by_format
    assert late == summary.late_spans


def test_streamed_calls_carry_time_to_first_token_through_every_reader(generated):
    """Streamed LLM calls write a time to first token in each format's own way; every reader gets it back."""
    root, _ = generated
    truth = json.loads((root / "landing" / GROUND_TRUTH_FILE).read_text())
    built = {span.span_id: span for hour in _hours() for trace in _built(hour).traces for span in trace.spans
             if span.kind == "llm"}
    assert truth["totals"]["streamed_llm_spans"] == sum(span.stream for span in built.values())
    # The runaway loop replays one non-streamed request: ordinary traffic sets the streamed share.
    loop = {span.span_id for hour in _hours() for trace in _built(hour).traces if trace.incident == "infinite_loop"
            for span in trace.spans}
    seen, streamed_by_format, calls_by_format = 0, Counter(), Counter()
    for hour in _hours():
        spans = ingest_partition(root / "landing", hour).spans
        for row in spans[spans["kind"] == "llm"].itertuples():
            span = built.get(row.span_id)
            if span is None:  # a span id the reader spells differently would hide a lost TTFT
                pytest.fail(f"{row.source_format} span {row.span_id} is not one the generator built")
            seen += 1
            calls_by_format[row.source_format] += row.span_id not in loop
            if span.ttft_ms is None:
                assert row.time_to_first_token_ms != row.time_to_first_token_ms, (row.source_format, row.span_id)
                continue
            streamed_by_format[row.source_format] += 1
            assert span.stream and span.status == "ok"
            # Langfuse writes completionStartTime in milliseconds: within 1 ms of the built value.
            assert row.time_to_first_token_ms == pytest.approx(span.ttft_ms, abs=1.0), row.source_format
            # The latency covers the whole stream, well past the first token.
            assert row.latency_ms > row.time_to_first_token_ms
            assert row.latency_ms == pytest.approx(span.latency_ms, abs=1.0)
    assert seen == len(built)
    for fmt in FORMATS:
        share = streamed_by_format[fmt] / calls_by_format[fmt]
        assert 0.25 <= share <= 0.75, (fmt, streamed_by_format[fmt], calls_by_format[fmt])
    # Determinism: the same seed streams the same calls.
    again = {span.span_id: (span.stream, span.ttft_ms) for trace in _built(START).traces for span in trace.spans}
    assert all(again[k] == (v.stream, v.ttft_ms) for k, v in built.items() if k in again)


def test_langsmith_js_sdk_patches_without_id_complete_their_runs(generated):
    """About a third of LangSmith traces come from the JS SDK, whose patches carry no id (only dotted_order)."""
    root, _ = generated
    landing = root / "landing"
    no_id: dict[str, str] = {}
    for path in sorted(landing.rglob("langsmith-*.jsonl*")):
        text = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        for line in text.splitlines():
            for patch in json.loads(line)["patch"]:
                if "id" not in patch:
                    no_id[patch["dotted_order"].rsplit("Z", 1)[-1]] = path.name
    assert any(name.startswith("langsmith-patches-") for name in no_id.values())  # also in the separate file
    ids, total = set(no_id), 0
    for hour in _hours():
        result = ingest_partition(landing, hour)
        assert not (result.quarantined["source_format"] == "langsmith").any()
        spans = result.spans[result.spans["span_id"].isin(ids)]
        total += len(spans)
        assert spans["end_time"].notna().all()
        assert all(json.loads(m)["langsmith"]["patch_matched_by"] == "dotted_order" for m in spans["metadata"])
    assert total == len(ids) > 0


def test_invalid_arguments_are_rejected_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="unknown incident kind"):
        IncidentSpec("meteor", START, END)
    with pytest.raises(ValueError, match="timezone-aware"):
        IncidentSpec("error_burst", START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="not after start"):
        IncidentSpec("error_burst", END, START)
    with pytest.raises(ValueError, match="at least one hour after start"):
        generate(tmp_path, END, START)
    with pytest.raises(ValueError, match="known formats"):
        generate(tmp_path, START, END, formats=["native", "csv"])
    with pytest.raises(ValueError, match="scale must be positive"):
        generate(tmp_path, START, END, scale=0)


def test_round_trip_keeps_otlp_requests_longer_than_64_kib(tmp_path, monkeypatch):
    # The Collector writes one request per line and a busy service sends large batches: a line of hundreds
    # of kilobytes is normal OTLP/JSON and must still be read as JSON Lines, not as one broken document.
    from aiobs_pipeline.generate import writers

    monkeypatch.setattr(writers, "OTLP_TRACES_PER_REQUEST", 40)
    hour = START + timedelta(hours=2)
    summary = generate(tmp_path, hour, hour + timedelta(hours=1), scale=1.0, incidents=[], formats=["otlp"])
    (path,) = [p for p in summary.files_written]
    text = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    assert len(text.split(b"\n", 1)[0]) > 64 * 1024
    result = ingest_partition(tmp_path, hour)
    assert list(result.quarantined["detail"]) == []
    assert len(result.spans) == summary.total_spans
