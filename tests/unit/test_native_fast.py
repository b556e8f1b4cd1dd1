"""The native JSONL fast path gives exactly the generic path's spans, quarantine and audit."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import native_fast
from aiobs_pipeline.ingest.partition import PartitionIngest, ingest_files, landing_folder

HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fast path on small files, with chunks small enough that lines straddle chunk boundaries."""
    monkeypatch.setattr(native_fast, "MIN_BYTES", 0)
    monkeypatch.setattr(native_fast, "CHUNK_BYTES", 700)


def span(i: int, **overrides: object) -> dict:
    """A well-formed native LLM span starting inside HOUR."""
    base = {
        "trace_id": f"t{i // 3}", "span_id": f"s{i}", "name": "chat_completion",
        "start_time": f"2026-10-01T05:{i % 60:02d}:00.{i % 1000:03d}Z",
        "end_time": f"2026-10-01T05:{i % 60:02d}:01.5Z", "model": "gpt-4o-mini", "provider": "openai",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}],
        "response": f"answer {i} – naïve café",
        "usage": {"prompt_tokens": 20 + i, "completion_tokens": 5, "total_tokens": 25 + i},
        "cost": 0.0001 * i, "params": {"temperature": 0.2, "max_tokens": 256},
        "metadata": {"user_id": f"u{i % 4}", "feature": "chat", "endpoint": "/v1/chat", "prompt_version": "v2"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def good_and_bad_lines() -> list[bytes]:
    """Every kind of line the brief lists, among well-formed ones."""
    bad_utf8 = json.dumps(span(900)).encode().replace(b"answer", b"answ\xff\xfer")
    lines: list[bytes | dict | str] = [
        span(1),
        span(2, latency_ms=812.5, time_to_first_token_ms=120),
        "{not json",
        bad_utf8,
        span(3, usage={"prompt_tokens": "many", "completion_tokens": 1}),
        span(4, latency_ms=-5),
        span(5, span_id=...),
        span(6, span_id=""),
        span(7, team="search", tags=["a", "b"]),  # unknown top-level keys land in metadata
        span(8, metadata={"user_id": "u9", "ab": {"bucket": "B", "weights": [0.1, 0.9]}, "deep": {"x": {"y": 1}}}),
        span(9, name="vector_search", model=..., messages=..., response=..., usage=...,
             documents=[{"doc_id": "d1", "content": "Paris is in France.", "score": 0.9},
                        {"id": "d2", "text": "Lyon", "rank": 7, "source": "wiki"}, "a bare string doc", 42]),
        span(10, status="error", error="Rate limit exceeded"),
        span(11, error="Timeout"),  # no status: defaults to error
        span(12, end_time=...),
        "",
        "   ",
        span(13, kind="tool", name="lookup"),
        span(14, kind="banana"),
        span(15, status="meh"),
        span(16, trace_id=12345, parent_span_id=678),
        span(17, usage="lots"),
        span(18, params=["temperature", 1]),
        span(19, metadata="not a map"),
        span(20, usage={"prompt_tokens": 30, "completion_tokens": 9,
                        "prompt_tokens_details": {"cached_tokens": 12},
                        "completion_tokens_details": {"reasoning_tokens": 4}}),
        span(21, usage={"prompt_tokens": 30, "prompt_tokens_details": None, "completion_tokens_details": "x"}),
        span(22, usage={"prompt_tokens": True, "completion_tokens": 2.5}),
        span(23, response=[{"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]),
        span(24, output_messages=[{"role": "assistant", "content": None,
                                   "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}]),
        span(25, response_model="gpt-4o-mini-2024-07-18", model=""),
        span(26, start_time=1790830800123, end_time=1790830801000),
        span(27, start_time="2026-10-01 05:01:02", end_time="2026-10-01T05:01:03+00:00"),
        span(28, start_time="2026-02-30T05:00:00Z"),
        span(29, start_time="yesterday-ish"),
        span(30, end_time="2026-10-01T04:00:00Z"),
        span(31, latency_ms="fast"),
        span(32, params={"temperature": 0.7, "top_p": 0.9, "seed": 7, "stop": ["\n"]}),
        span(33, usage={"prompt_tokens": -4, "completion_tokens": 1}),
        span(34, cost=10**7),
        span(1, response="a duplicate of span 1"),
        [1, 2, 3],
        '"just a string"',
        span(35, name=["not", "a", "string"]),
        span(36, usage={"prompt_tokens": 18446744073709551615}),
        span(37, name="embedding", model="text-embedding-3-small", messages=..., response=...),
        span(38, start_time="2026-10-01T05:02:03.123456789Z", end_time="2026-10-01T05:02:04.5+02:00"),
        span(39, messages="a prompt as a plain string", metadata=None, params=None, usage=None),
        span(40, documents={"not": "a list"}),
        b"\xef\xbb\xbf" + json.dumps(span(41)).encode(),
        json.dumps(span(42)).encode() + b"\r",
        "x" * 900,
        span(43, response="é" * 800),
        span(44, metadata={"user_id": 7, "session_id": ["s"], "feature": None}),
    ]
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str) and not line.startswith('"'):
            out.append(line.encode())
        else:
            out.append(json.dumps(line, ensure_ascii=bool(len(out) % 2)).encode())
    return out


def write(root: Path, name: str, lines: list[bytes], gz: bool = False, final_newline: bool = True) -> Path:
    folder = landing_folder(root, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def both(paths: list[Path], root: Path) -> tuple[PartitionIngest, PartitionIngest]:
    return ingest_files(paths, HOUR, root, fast_path=True), ingest_files(paths, HOUR, root, fast_path=False)


def assert_same(fast: PartitionIngest, generic: PartitionIngest) -> None:
    """Spans in the same order; quarantine compared in line order, since the generic path lists the
    per-record reader's rejects after each batch of 10,000 records rather than at their line."""
    pd.testing.assert_frame_equal(fast.spans, generic.spans)
    by_line = ["source_file", "source_line", "reason"]
    pd.testing.assert_frame_equal(fast.quarantined.sort_values(by_line, kind="stable").reset_index(drop=True),
                                  generic.quarantined.sort_values(by_line, kind="stable").reset_index(drop=True))
    pd.testing.assert_frame_equal(fast.audit, generic.audit)
    assert fast.unreadable_files == generic.unreadable_files


def test_fast_path_equals_generic_path_on_good_and_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.jsonl", good_and_bad_lines(), final_newline=False)
    assert native_fast.try_read(path, "mixed.jsonl") is not None
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    reasons = set(generic.quarantined["reason"])
    assert {"invalid_json", "invalid_encoding", "invalid_type", "negative_value", "missing_required_field",
            "invalid_kind", "invalid_status", "end_before_start", "absurd_value", "duplicate_span_id"} <= reasons
    spans = fast.spans.set_index("span_id")
    assert orjson.loads(spans.loc["s7", "metadata"]) == {"team": "search", "tags": ["a", "b"]}
    assert orjson.loads(spans.loc["s9", "documents"])[0] == {"doc_id": "d1", "content": "Paris is in France.",
                                                               "score": 0.9, "id": "d1", "text": "Paris is in France.",
                                                               "rank": 1}
    assert spans.loc["s11", "status"] == "error" and pd.isna(spans.loc["s12", "latency_ms"])
    assert spans.loc["s20", "cached_input_tokens"] == 12 and spans.loc["s20", "reasoning_tokens"] == 4
    bom_line = next(n for n, line in enumerate(good_and_bad_lines(), 1) if line.startswith(b"\xef\xbb\xbf"))
    assert spans.loc["s41", "source_line"] == bom_line  # a BOM on the line is dropped, as the generic path does


def test_fast_path_keeps_line_order_and_dedupes_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.jsonl", [json.dumps(span(i)).encode() for i in range(0, 40)])
    second = write(tmp_path, "b.jsonl", good_and_bad_lines())
    fast, generic = both([first, second], tmp_path)
    assert_same(fast, generic)
    duplicates = fast.quarantined[fast.quarantined["reason"] == "duplicate_span_id"]
    assert len(duplicates) > 10 and set(duplicates["source_file"]) == {"2026/10/01/05/b.jsonl"}
    assert fast.spans.set_index("span_id").loc["s1", "source_file"] == "2026/10/01/05/a.jsonl"


def test_fast_path_reads_gzip_and_leaves_damaged_gzip_to_the_generic_path(tmp_path: Path) -> None:
    good = write(tmp_path, "good.jsonl.gz", good_and_bad_lines(), gz=True)
    assert native_fast.try_read(good, "good.jsonl.gz") is not None
    payload = gzip.compress(b"\n".join(json.dumps(span(i)).encode() for i in range(100, 400)) + b"\n")
    cut = landing_folder(tmp_path, HOUR) / "cut.jsonl.gz"
    cut.write_bytes(payload[: len(payload) // 2])
    assert native_fast.try_read(cut, "cut.jsonl.gz") is None
    fast, generic = both([good, cut], tmp_path)
    assert_same(fast, generic)
    assert "damaged" in fast.audit.set_index("source_file").loc["2026/10/01/05/cut.jsonl.gz", "file_error"]


def test_fast_path_declines_small_foreign_and_document_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    native_file = write(tmp_path, "n.jsonl", [json.dumps(span(i)).encode() for i in range(5)])
    otlp_like = write(tmp_path, "o.jsonl", [b'{"resourceSpans": []}'])
    document = write(tmp_path, "d.json", [json.dumps([span(1), span(2)]).encode()])
    late_native = write(tmp_path, "late.jsonl", [b"not json", b"", json.dumps(span(3)).encode()])
    assert native_fast.try_read(otlp_like, "o.jsonl") is None
    assert native_fast.try_read(document, "d.json") is None
    assert native_fast.try_read(late_native, "late.jsonl") is not None
    monkeypatch.setattr(native_fast, "MIN_BYTES", 10 * 1024 * 1024)
    assert native_fast.try_read(native_file, "n.jsonl") is None


def test_unencodable_nesting_is_rejected_not_crashing(tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    lines = [json.dumps(span(1)).encode(), json.dumps(span(2, messages=deep)).encode(),
             json.dumps(span(3, surprise=deep)).encode(), json.dumps(span(4)).encode()]
    path = write(tmp_path, "deep.jsonl", lines)
    read = native_fast.try_read(path, "deep.jsonl")
    assert read is not None and read.rows["span_id"].tolist() == ["s1", "s4"]
    assert [(r.reason, r.number) for r in read.rejects] == [("invalid_json", 2), ("invalid_json", 3)]
    assert "field 'input_messages'" in read.rejects[0].detail and "field 'metadata'" in read.rejects[1].detail
    assert read.records_read == 4


def test_iter_chunks_numbers_physical_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    lines = [b"a" * n for n in (0, 5, 2000, 1, 0, 699, 700, 701)]
    path.write_bytes(b"\n".join(lines))
    seen: list[tuple[int, bytes]] = []
    for first, pieces in native_fast.iter_chunks(path, chunk_bytes=700):
        seen.extend(enumerate(pieces, start=first))
    assert seen == list(enumerate(lines, start=1))


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(-1e3, 1e6, allow_nan=False),
                    st.text(max_size=6), st.sampled_from(["", "  ", "ok", "error", "llm", "tool"]))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["role", "content", "text", "id", "x"]), inner, max_size=3), max_leaves=6)
_fields = st.fixed_dictionaries({}, optional={
    "kind": _scalar, "status": _scalar, "latency_ms": _scalar, "cost": _scalar, "error": _scalar,
    "model": _scalar, "response_model": _scalar, "name": _scalar, "parent_span_id": _scalar,
    "start_time": st.one_of(_scalar, st.sampled_from(["2026-10-01T05:00:00Z", "2026-10-01T05:00:01.25+00:00"])),
    "end_time": st.one_of(_scalar, st.just("2026-10-01T05:00:02Z")),
    "usage": st.one_of(_value, st.fixed_dictionaries({}, optional={
        "prompt_tokens": _scalar, "completion_tokens": _scalar, "prompt_tokens_details": _value})),
    "params": st.one_of(_value, st.dictionaries(st.sampled_from(["temperature", "top_p", "seed"]), _scalar)),
    "metadata": st.one_of(_value, st.dictionaries(st.sampled_from(["user_id", "feature", "extra"]), _value)),
    "messages": _value, "response": _value, "output_messages": _value, "documents": _value, "other": _value,
})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_fields, min_size=1, max_size=12))
def test_fast_path_equals_generic_path_on_random_spans(tmp_path_factory: pytest.TempPathFactory,
                                                       fields: list[dict]) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    lines = [json.dumps(span(0)).encode()]
    lines += [json.dumps({"trace_id": "t", "span_id": f"f{i}", **f}).encode() for i, f in enumerate(fields)]
    path = write(root, "fuzz.jsonl", lines)
    assert_same(*both([path], root))


@pytest.mark.parametrize(("start", "end"), [
    ("2026-10-01T05:00:00Z", "2026-10-01T05:00:01.5Z"),
    ("2026-10-01T05:00:00.123456789Z", "2026-10-01T05:00:01.5Z"),
    ("2026-10-01Z", "2026-10-02Z"),
    ("20261001T050000Z", "20261001T050001.25Z"),
    ("2026-10-01T05:00:00+01:00Z", "2026-10-01T05:00:00Z"),
    ("2026-10-01T24:00:00Z", "2026-10-01T05:00:00Z"),
    ("2026-10-01 05:00:00Z", "2026-10-01T05:00:00.000001Z"),
    ("1Z", "2Z"),
    (" 2026-10-01T05:00:00Z", "2026-10-01T05:00:01+02:00"),
    (1790830800, "2026-10-01T05:00:01Z"),
    ("2026-10-01T05:00:00Z", None),
])
def test_latency_shortcut_matches_parse_time(start: object, end: object) -> None:
    from aiobs_pipeline.ingest.base import latency_between, parse_time

    try:
        expected = latency_between(parse_time(start), parse_time(end))
    except (ValueError, TypeError, OverflowError):
        expected = None
    assert native_fast._latency(start, end) == expected
