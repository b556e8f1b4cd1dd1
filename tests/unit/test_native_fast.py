"""The DuckDB fast path for native JSONL gives exactly the generic path's spans, quarantine and audit.

JSON columns are compared in canonical form (parsed, keys sorted), as the warehouse stores them: DuckDB's JSON
text may order keys or spell numbers differently from orjson's. Everything else must be equal as is.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest import native_fast, partition
from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.files import iter_records
from aiobs_pipeline.ingest.partition import PartitionIngest, _with_raw, ingest_files, landing_folder
from aiobs_pipeline.schema import JSON_SPAN_COLUMNS, SPAN_COLUMN_NAMES
from aiobs_pipeline.warehouse.tables import canonical_json
from benchmarks.synth import write_native_spans

HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fast path on small files, with blocks, Arrow batches and result batches so small that a file
    spans many of each and DuckDB's threads return the rows out of order."""
    monkeypatch.setattr(native_fast, "MIN_BYTES", 0)
    monkeypatch.setattr(native_fast, "BLOCK_BYTES", 700)
    monkeypatch.setattr(native_fast, "BATCH_ROWS", 3)
    monkeypatch.setattr(native_fast, "FETCH_ROWS", 5)


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
        span(45, name="retrieve_docs", model=..., messages=..., response=...,
             documents=[{"doc_id": "d9", "content": "x"}, {"id": None, "text": None, "score": 1, "rank": None}, {}]),
        span(46, kind="  LLM ", status="OK"),
        span(47, params={}, metadata={}, usage={"total_tokens": 3}),
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


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """JSON columns in the warehouse's canonical form (key order and number spelling do not matter)."""
    out = frame.copy()
    for name in JSON_SPAN_COLUMNS:
        out[name] = [None if v is None else canonical_json(v) for v in out[name]]
    return out


def assert_same(fast: PartitionIngest, generic: PartitionIngest) -> None:
    """Spans in the same order (JSON compared canonically); quarantine compared in line order, since the
    generic path lists the per-record reader's rejects after each batch of 10,000 records."""
    assert list(fast.spans.columns) == list(SPAN_COLUMN_NAMES)
    pd.testing.assert_frame_equal(canonical(fast.spans), canonical(generic.spans))
    by_line = ["source_file", "source_line", "reason"]
    pd.testing.assert_frame_equal(fast.quarantined.sort_values(by_line, kind="stable").reset_index(drop=True),
                                  generic.quarantined.sort_values(by_line, kind="stable").reset_index(drop=True))
    pd.testing.assert_frame_equal(fast.audit, generic.audit)
    assert fast.unreadable_files == generic.unreadable_files


def vouched(path: Path) -> list[int]:
    """The lines DuckDB vouched for (the others went through the per-record path)."""
    read = native_fast.try_read(path, path.name)
    assert read is not None
    return [] if read.prevalidated is None else read.prevalidated["source_line"].tolist()


def test_fast_path_equals_generic_path_on_good_and_bad_lines(tmp_path: Path) -> None:
    lines = good_and_bad_lines()
    path = write(tmp_path, "mixed.jsonl", lines, final_newline=False)
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
    assert orjson.loads(spans.loc["s45", "documents"]) == [
        {"doc_id": "d9", "content": "x", "id": "d9", "text": "x", "score": None, "rank": 1},
        {"id": None, "text": None, "score": 1, "rank": None},
        {"id": None, "text": None, "score": None, "rank": 3}]
    assert spans.loc["s11", "status"] == "error" and pd.isna(spans.loc["s12", "latency_ms"])
    assert spans.loc["s20", "cached_input_tokens"] == 12 and spans.loc["s20", "reasoning_tokens"] == 4
    assert spans.loc["s46", "kind"] == "llm" and spans.loc["s46", "status"] == "ok"
    bom_line = next(n for n, line in enumerate(lines, 1) if line.startswith(b"\xef\xbb\xbf"))
    assert spans.loc["s41", "source_line"] == bom_line  # a BOM on the line is dropped, as the generic path does
    # DuckDB vouched for the usual lines itself; the odd ones went through the per-record path.
    line_of = {}
    for number, line in enumerate(lines, 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("span_id"), str):
            line_of.setdefault(value["span_id"], number)
    fast_lines = set(vouched(path))
    for sid in ("s1", "s2", "s10", "s11", "s12", "s13", "s16", "s20", "s25", "s26", "s27", "s32", "s40", "s45", "s46"):
        assert line_of[sid] in fast_lines, sid
    for sid in ("s3", "s7", "s9", "s17", "s19", "s23", "s28", "s29", "s38"):
        assert line_of[sid] not in fast_lines, sid


def test_synthetic_benchmark_spans_are_all_vouched_for_by_duckdb(tmp_path: Path) -> None:
    """The usual shape must not fall back to the per-record path (the benchmark's speed depends on it)."""
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    path = folder / "bench.jsonl"
    write_native_spans(path, 300, HOUR)
    read = native_fast.try_read(path, "bench.jsonl")
    assert read is not None and read.rows is None and not read.rejects
    assert read.prevalidated["source_line"].tolist() == list(range(1, 301))
    assert_same(*both([path], tmp_path))


def test_fast_path_keeps_line_order_and_dedupes_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.jsonl", [json.dumps(span(i)).encode() for i in range(0, 40)])
    second = write(tmp_path, "b.jsonl", good_and_bad_lines())
    fast, generic = both([first, second], tmp_path)
    assert_same(fast, generic)
    duplicates = fast.quarantined[fast.quarantined["reason"] == "duplicate_span_id"]
    assert len(duplicates) > 10 and set(duplicates["source_file"]) == {"2026/10/01/05/b.jsonl"}
    assert fast.spans.set_index("span_id").loc["s1", "source_file"] == "2026/10/01/05/a.jsonl"
    assert fast.spans["source_line"].tolist()[:40] == list(range(1, 41))


def test_dedupe_by_duckdbs_span_id_hashes_equals_the_generic_dedupe(tmp_path: Path, monkeypatch) -> None:
    # Every line is vouched for, so the hour's dedupe compares DuckDB's hashes, then the ids of repeats only.
    first = write(tmp_path, "a.jsonl", [json.dumps(span(i)).encode() for i in (1, 2, 3, 2, 4)])
    second = write(tmp_path, "b.jsonl", [json.dumps(span(i, response=f"again {i}")).encode() for i in (5, 1, 4, 6, 5)])
    read = native_fast.try_read(first, "a.jsonl")
    assert read is not None and read.rows is None and read.span_hashes is not None
    assert len(set(read.span_hashes.tolist())) == 4 and read.span_hashes.dtype == np.uint64
    seen: list[object] = []
    split = partition.split_duplicates

    def spying(spans: pd.DataFrame, span_hashes: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        seen.append(span_hashes)
        return split(spans, span_hashes)

    monkeypatch.setattr(partition, "split_duplicates", spying)
    fast, generic = both([first, second], tmp_path)
    assert seen[0] is not None and len(seen[0]) == 10 and seen[1] is None
    assert_same(fast, generic)
    duplicates = fast.quarantined.sort_values(["source_file", "source_line"])
    assert list(zip(duplicates["source_file"].str[-7:], duplicates["source_line"], strict=True)) == [
        ("a.jsonl", 4), ("b.jsonl", 2), ("b.jsonl", 3), ("b.jsonl", 5)]
    assert set(duplicates["reason"]) == {"duplicate_span_id"}


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


def test_json_duckdb_accepts_but_orjson_refuses_goes_the_generic_way(tmp_path: Path) -> None:
    """Trailing commas, NaN/Infinity, overflowing numbers, lone surrogates and NUL escapes: DuckDB's parser is
    lenient about the first four, the rules quarantine the last; the result must be the generic path's."""
    def line(i: int, old: str, new: str) -> str:
        text = json.dumps(span(i))
        assert old in text
        return text.replace(old, new)

    lines = [
        line(1, '"max_tokens": 256}', '"max_tokens": 256,}'),
        line(2, '"question 2"}]', '"question 2"},]'),
        line(3, '"cost": 0.0003', '"cost": NaN'),
        line(4, '"cost": 0.0004', '"cost": -Infinity'),
        line(5, '"temperature": 0.2', '"temperature": 1e999'),
        line(6, '"messages": [', '"messages": [inf, '),
        line(7, '"question 7"', '"question \\ud800"'),
        line(8, '"question 8"', '"question \\u0000"'),
        line(9, '"question 9"', '"q: NaN, [Infinity, 1e400"'),  # only looks odd: per-record path, still valid
        line(10, '"question 10"', '"question \\ud83d\\ude00"'),
        line(11, '"max_tokens": 256', '"max_tokens": 256, "x": 1' + "0" * 400),
        line(12, '"usage": {', '"usage": {"other": NaN, '),
        json.dumps(span(13)),
    ]
    path = write(tmp_path, "odd.jsonl", [text.encode() for text in lines])
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    assert vouched(path) == [13]
    assert {"s9", "s10", "s13"} <= set(fast.spans["span_id"])


def test_repeated_keys_keep_the_last_value_as_python_does(tmp_path: Path) -> None:
    """DuckDB reads the first of a repeated key, orjson the last: such lines go the generic way, or keep both
    in JSON text whose canonical form keeps the last."""
    good = json.dumps(span(1))
    lines = [
        good[:-1] + ', "span_id": "again"}',
        good.replace('"prompt_tokens": 21', '"prompt_tokens": 21, "prompt_tokens": 22'),
        good.replace('"temperature": 0.2', '"temperature": 0.2, "temperature": 0.3'),
        good.replace('"user_id": "u1"', '"user_id": "u1", "user_id": "u2"'),
        good.replace('"feature": "chat"', '"feature": "chat", "extra": 1, "extra": 2').replace('"s1"', '"s2"'),
        good.replace('"role": "system"', '"role": "system", "role": "developer"').replace('"s1"', '"s3"'),
        json.dumps(span(4, name="vector_search", documents=[{"doc_id": "a", "text": "x"}])).replace(
            '"doc_id": "a"', '"doc_id": "a", "doc_id": "b"'),
        json.dumps(span(5, usage={"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1}})).replace(
            '"cached_tokens": 1', '"cached_tokens": 1, "cached_tokens": 2'),
    ]
    path = write(tmp_path, "dups.jsonl", [line.encode() for line in lines])
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    spans = generic.spans.set_index("span_id")
    assert orjson.loads(spans.loc["s2", "metadata"]) == {"extra": 2}
    assert spans.loc["s5", "cached_input_tokens"] == 2


@pytest.mark.parametrize(("start", "end"), [
    ("2026-10-01T05:00:00Z", "2026-10-01T05:00:01.5Z"),
    ("2026-10-01T05:00:00.123456Z", "2026-10-01T05:00:01.000001+00:00"),
    ("2026-10-01 05:00:00", "2026-10-01T05:00:00.5"),
    ("2026-10-01T07:00:00+02:00", "2026-10-01T01:00:01-04:00"),
    ("2026-10-01T05:00:00.123456789Z", "2026-10-01T05:00:01.5Z"),
    ("2026-10-01Z", "2026-10-02Z"),
    ("20261001T050000Z", "20261001T050001.25Z"),
    ("2026-10-01T24:00:00Z", "2026-10-02T00:00:01Z"),
    ("2026-10-01T05:00:60Z", "2026-10-01T05:01:01Z"),
    ("2026-10-01T05:00:00+24:00", "2026-10-01T05:00:00Z"),
    ("1600-01-01T00:00:00Z", "1600-01-01T00:00:01Z"),
    ("2299-01-01T00:00:00Z", "2299-01-01T00:00:01Z"),
    (" 2026-10-01T05:00:00Z", "2026-10-01T05:00:01Z"),
    (1790830800, 1790830801),
    (1790830800123, 1790830800999),
    (1790830800123456, 1790830800999999),
    (1790830800123456789, 1790830800999999999),
    (1790830800.25, 1790830801.5),
    ("1790830800", "1790830801"),
    (0, 1),
    (True, None),
    ("2026-10-01T05:00:00Z", None),
    ("2026-10-01T05:00:00Z", ""),
])
def test_timestamp_forms_parse_as_the_generic_path_parses_them(tmp_path: Path, start: object, end: object) -> None:
    line = span(1, start_time=start, end_time=end if end is not None else ...)
    path = write(tmp_path, "t.jsonl", [json.dumps(line).encode(), json.dumps(span(2)).encode()])
    assert_same(*both([path], tmp_path))


@pytest.mark.parametrize("overrides", [
    {"trace_id": 123456789012345678},
    {"trace_id": 1234567890123456789},
    {"trace_id": 12.5},
    {"trace_id": "   "},
    {"trace_id": "\u00a0"},
    {"parent_span_id": ""},
    {"parent_span_id": 0},
    {"name": "Embedding call", "model": ..., "messages": ...},
    {"name": "ÉMBED", "model": ...},
    {"name": "reran\u212a"},
    {"name": "tool_call", "model": None},
    {"name": "something", "model": None, "messages": None},
    {"name": "something", "messages": ...},
    {"kind": "\tTool\n"},
    {"kind": "reran\u212a"},
    {"kind": ""},
    {"status": " Error "},
    {"status": None, "error": ""},
    {"error": 1},
    {"params": {"max_tokens": 9007199254740993}},
    {"params": {"max_tokens": 2.0, "top_p": 0}},
    {"params": {"temperature": -0.0}},
    {"params": {"temperature": "0.2"}},
    {"usage": {}},
    {"usage": None},
    {"usage": {"prompt_tokens": 1e2, "completion_tokens": 50000001}},
    {"usage": {"prompt_tokens": 5, "cached_tokens": None, "prompt_tokens_details": {}}},
    {"cost": False},
    {"latency_ms": 0, "time_to_first_token_ms": 86400000.5},
    {"output_messages": []},
    {"output_messages": {"role": "assistant"}},
    {"output_messages": "text"},
    {"response": None},
    {"response": 42},
    {"response": {"content": "in a dict"}},
    {"documents": []},
    {"documents": "one string"},
    {"documents": [None]},
    {"metadata": {"prompt_version": 2}},
    {"metadata": {"user_id": None, "app": "a\u2028b"}},
    {"metadata": []},
    {"name": "x\u0085"},
    # Shortcuts of the SQL: an empty object or a key "" (the key list is "\x01\x01" for both), values tested
    # against a list joined by \x01, and ids whose JSON text is two quotes.
    {"metadata": {"": 1}, "params": {"": None}},
    {"metadata": {"user_id": "u", "": 2}, "params": {"temperature": 0.1, "": []}},
    {"trace_id": '""', "parent_span_id": '"'},
    {"kind": "llm\u0001tool"},
    {"kind": "\u0001llm"},
    {"status": ""},
])
def test_field_edge_cases_match_the_generic_path(tmp_path: Path, overrides: dict) -> None:
    path = write(tmp_path, "e.jsonl", [json.dumps(span(1, **overrides)).encode(), json.dumps(span(2)).encode()])
    assert_same(*both([path], tmp_path))


def test_deep_nesting_is_quarantined_not_crashing(tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    very_deep = "[" * 1100 + "]" * 1100
    lines = [json.dumps(span(1)).encode(), json.dumps(span(2, messages=deep)).encode(),
             json.dumps(span(3, surprise=deep)).encode(), json.dumps(span(4)).encode(),
             json.dumps(span(5)).replace('"messages": [', '"messages": [' + very_deep + ", ").encode()]
    path = write(tmp_path, "deep.jsonl", lines)
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    assert fast.spans["span_id"].tolist() == ["s1", "s4"]
    assert vouched(path) == [1, 4]


def test_crlf_blank_lines_and_invalid_utf8_keep_their_line_numbers(tmp_path: Path) -> None:
    lines = [json.dumps(span(i)).encode() + b"\r" for i in range(20)]
    lines[5] = b""
    lines[6] = b"  \t"
    lines[9] = lines[9].replace(b"question", b"qu\xc3\x28estion")
    lines[12] = b"\r"
    path = write(tmp_path, "crlf.jsonl", lines)
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    assert vouched(path) == [n for n in range(1, 21) if n not in (6, 7, 10, 13)]
    assert fast.audit.iloc[0]["records_read"] == 17


def test_a_duckdb_failure_falls_back_to_the_generic_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "a.jsonl", [json.dumps(span(i)).encode() for i in range(5)])
    monkeypatch.setattr(native_fast, "_queries", lambda layout: ("SELECT no_such_column FROM blk",) * 2)
    assert native_fast.try_read(path, "a.jsonl") is None
    assert_same(*both([path], tmp_path))


def guarded(sql: str) -> bool:
    """Whether the query is the guarded one (for the file's layout, if any)."""
    return "try(from_json(line, " in sql


def _queries_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which of the two queries `_read` runs, in order."""
    run: list[str] = []
    read_with = native_fast._read_with

    def spy(path: Path, source_file: str, sql: str) -> object:
        run.append("guarded" if guarded(sql) else "unguarded")
        return read_with(path, source_file, sql)

    monkeypatch.setattr(native_fast, "_read_with", spy)
    return run


def test_a_file_of_json_lines_is_read_by_the_unguarded_query_alone(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines DuckDB rejects for other reasons than syntax (rules, odd JSON, foreign shapes) need no guard."""
    lines = [line for line in good_and_bad_lines() if line not in (b"{not json", b"x" * 900)]
    lines = [line for line in lines if not line.startswith(b"\xef\xbb\xbf")]
    path = write(tmp_path, "json.jsonl", lines)
    run = _queries_run(monkeypatch)
    fast, generic = both([path], tmp_path)
    assert run == ["unguarded"]
    assert_same(fast, generic)


@pytest.mark.parametrize("broken", [b"{not json", b'{"trace_id": "t", "span_id": "cut', b'{"a": 1} {"b": 2}',
                                    b'{"a": 1}}', b"{\xef\xbb\xbf}"])
def test_a_line_duckdb_cannot_parse_has_the_file_read_again_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    broken: bytes) -> None:
    """The unguarded query stops at such a line; the guarded rerun reads the whole file afresh (nothing read
    by the first query is kept), with the line quarantined as the generic path does."""
    lines = [json.dumps(span(i)).encode() for i in range(60)]
    lines.insert(47, broken)
    path = write(tmp_path, "broken.jsonl", lines)
    run = _queries_run(monkeypatch)
    read = native_fast.try_read(path, path.name)
    assert run == ["unguarded", "guarded"]
    assert read is not None and len(read.prevalidated) == 60 and read.records_read == 61
    assert [reject.number for reject in read.rejects] == [48]
    run.clear()
    fast, generic = both([path], tmp_path)
    assert_same(fast, generic)
    assert fast.quarantined["reason"].tolist() == ["invalid_json"]


@pytest.mark.parametrize(("message", "reruns"), [("Invalid Input Error: Malformed JSON at byte 3", True),
                                                  ("No space left on device", False)])
def test_duckdbs_error_through_the_arrow_stream_also_reruns_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    message: str, reruns: bool) -> None:
    """When the parse error surfaces while Arrow reads DuckDB's result stream, it arrives as an OSError with
    DuckDB's message (seen in about 1 run in 30): that one reruns guarded, any other OSError does not."""
    path = write(tmp_path, "a.jsonl", [json.dumps(span(i)).encode() for i in range(5)])
    read_with = native_fast._read_with
    run: list[bool] = []

    def failing_unguarded(path: Path, source_file: str, sql: str) -> object:
        run.append(guarded(sql))
        if not guarded(sql):
            raise OSError(message)
        return read_with(path, source_file, sql)

    monkeypatch.setattr(native_fast, "_read_with", failing_unguarded)
    read = native_fast.try_read(path, path.name)
    assert run == ([False, True] if reruns else [False])
    assert (read is not None and len(read.prevalidated) == 5) if reruns else read is None


def test_iter_blocks_numbers_physical_lines_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    lines = [b"a" * n for n in (0, 5, 2000, 1, 0, 699, 700, 701)]
    path.write_bytes(b"\n".join(lines))
    seen: list[bytes] = []
    for data, length in native_fast.iter_blocks(path, block_bytes=700):
        offsets = native_fast.line_bounds(data, length)
        seen.extend(bytes(data[a:b]).removesuffix(b"\n") for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    assert seen == lines


def test_iter_blocks_never_refills_a_buffer_arrow_still_holds(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    # Long lines, then short ones: a later fill is shorter than an earlier one in the same buffer.
    lines = [bytes([0xC3, 0xA9]) * 500] * 6 + [b"b" * 10] * 30 + [b"c" * 300] * 3
    path.write_bytes(b"\n".join(lines))
    held, ids, seen = [], [], []
    for number, (data, length) in enumerate(native_fast.iter_blocks(path, block_bytes=700)):
        ids.append(id(data))
        assert not any(data[length:]), "bytes past the block must be zeros (_is_utf8 reads the whole buffer)"
        if number < 2:
            held.append(pa.py_buffer(memoryview(data)[:length]))  # as the Arrow arrays DuckDB reads do
        offsets = native_fast.line_bounds(data, length)
        seen.extend(bytes(data[a:b]).removesuffix(b"\n") for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    assert seen == lines
    # The two held buffers were never handed out again, and keep their bytes.
    assert ids.count(ids[0]) == 1 and ids.count(ids[1]) == 1
    assert bytes(held[0]) == lines[0] + b"\n"


def test_block_buffers_are_reused_when_free_and_zeroed_past_a_shorter_fill() -> None:
    buffers = native_fast._Buffers(16)
    first = buffers.take()
    first[:5] = b"hello"
    buffers.filled(first, 5)
    held = pa.py_buffer(memoryview(first)[:5])
    first_id = id(first)
    del first
    second = buffers.take()
    assert id(second) != first_id  # Arrow still holds the first one
    del held, second
    # Pooled buffers stay alive, so an equal id is the same buffer.
    third = buffers.take()
    assert id(third) == first_id and bytes(third) == b"hello" + bytes(11)
    third[:2] = b"ab"
    buffers.filled(third, 2)
    assert bytes(third) == b"ab" + bytes(14)
    # Viewed buffers are never handed out; no more than KEEP are pooled, and one beyond is still handed out.
    views = [memoryview(buffers.take()) for _ in range(native_fast._Buffers.KEEP + 2)]
    assert len(buffers.pool) == native_fast._Buffers.KEEP and len({id(v.obj) for v in views}) == len(views)
    assert all(len(v) == 16 for v in views)  # the probe that found them viewed left their size alone
    released = views[0].obj
    views[0].release()
    assert buffers.take() is released  # held, but no longer viewed


def test_with_raw_reads_the_raw_lines_as_the_record_reader_gives_them(tmp_path: Path) -> None:
    lines = [b'{"a": 1}', b"\xef\xbb\xbf{\"b\": 2}", b"", b"{bad\r", b"caf\xe9 {", b'{"c": "\xc3\xa9"}\r', b"  x  "]
    for gz in (False, True):
        path = write(tmp_path, "raw.jsonl.gz" if gz else "raw.jsonl", lines, gz=gz)
        wanted = [1, 2, 4, 5, 6, 7, 40]
        quarantined = pd.DataFrame({"source_file": "raw", "source_line": wanted, "detail": "d"})
        expected = {}
        for item in iter_records(path):
            if item.number in wanted:
                expected[item.number] = item.text if isinstance(item, RawRecord) else (item.raw or "")
        raw = _with_raw(quarantined, path)["raw"].tolist()
        assert raw == [Reject("x", "", raw=expected.get(n)).raw for n in wanted]
        assert raw[1] == '{"b": 2}' and raw[2] == "{bad" and raw[-1] is None


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(-1e3, 1e6, allow_nan=False),
                    st.text(max_size=6), st.sampled_from(["", "  ", "ok", "error", "LLM ", "tool", "NaN", "1e999"]))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["role", "content", "text", "id", "doc_id", "x"]), inner, max_size=3), max_leaves=6)
_stamp = st.one_of(_scalar, st.sampled_from(["2026-10-01T05:00:00Z", "2026-10-01T05:00:01.25+00:00",
                                             "2026-10-01 05:00:02", "2026-10-01T05:00:00.1234567Z"]),
                   st.integers(0, 2 * 10**12))
_fields = st.fixed_dictionaries({}, optional={
    "kind": _scalar, "status": _scalar, "latency_ms": _scalar, "cost": _scalar, "error": _scalar,
    "model": _scalar, "response_model": _scalar, "name": _scalar, "parent_span_id": _scalar,
    "start_time": _stamp, "end_time": _stamp,
    "usage": st.one_of(_value, st.fixed_dictionaries({}, optional={
        "prompt_tokens": _scalar, "completion_tokens": _scalar, "cached_tokens": _scalar,
        "prompt_tokens_details": _value})),
    "params": st.one_of(_value, st.dictionaries(st.sampled_from(["temperature", "top_p", "seed"]), _scalar)),
    "metadata": st.one_of(_value, st.dictionaries(st.sampled_from(["user_id", "feature", "extra"]), _value)),
    "messages": _value, "response": _value, "output_messages": _value, "documents": _value, "other": _value,
})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_fields, min_size=1, max_size=12), st.booleans())
def test_fast_path_equals_generic_path_on_random_spans(tmp_path_factory: pytest.TempPathFactory,
                                                       fields: list[dict], compact: bool) -> None:
    """Written by json.dumps (spaces: only params and metadata can match a layout) or compact by orjson (whole
    lines can match the layout the first lines set, which the random ones then mostly break)."""
    dumps = orjson.dumps if compact else lambda value: json.dumps(value).encode()
    root = tmp_path_factory.mktemp("fuzz")
    lines = [dumps(span(0))]
    lines += [dumps({"trace_id": "t", "span_id": f"f{i}", "name": "n", "start_time": "2026-10-01T05:00:00Z", **f})
              for i, f in enumerate(fields)]
    path = write(root, "fuzz.jsonl", lines)
    assert_same(*both([path], root))
    assert_layout_changes_nothing(path)


def assert_layout_changes_nothing(path: Path) -> None:
    """The file read with its layout gives exactly what the query without one gives."""
    with_layout = native_fast._read(path, path.name)
    with mock.patch.object(native_fast, "sniff_layout", return_value=None):
        without = native_fast._read(path, path.name)
    assert with_layout is not None and without is not None
    for name in ("prevalidated", "rows"):
        a, b = getattr(with_layout, name), getattr(without, name)
        assert (a is None) == (b is None), name
        if a is not None:
            pd.testing.assert_frame_equal(a, b)
    assert with_layout.rejects == without.rejects and with_layout.records_read == without.records_read


def compact_lines() -> list[bytes]:
    """good_and_bad_lines written compact (as DuckDB writes JSON), with lines that break the layout the first
    lines set in every way one can: keys reordered, repeated or unknown, a null written where it is left out
    and the other way round, spacing, number spelling, escapes."""
    lines = [orjson.dumps(orjson.loads(line)) if line.startswith(b"{") and _loads(line) else line
             for line in good_and_bad_lines()]
    first = orjson.dumps(span(50))
    reordered = orjson.dumps(dict(reversed(list(span(51).items()))))
    return [first, orjson.dumps(span(52, parent_span_id=None)), *lines, reordered,
            first.replace(b'"s50"', b'"s53"')[:-1] + b',"span_id":"s54"}',
            first.replace(b'"s50"', b'"s55"').replace(b'"name":', b'"team":"x","name":'),
            orjson.dumps(span(56, parent_span_id=None, metadata={"user_id": None, "feature": "chat"})),
            orjson.dumps(span(57, usage={"completion_tokens": 5, "prompt_tokens": 20})),
            orjson.dumps(span(58, params={"max_tokens": 9, "temperature": 0.5, "seed": 1})),
            orjson.dumps(span(59, metadata={"user_id": "u", "user_id2": "v", "App": "a", "app": "b"})),
            orjson.dumps(span(60)).replace(b'"cost":0.006', b'"cost":6e-3'),
            orjson.dumps(span(61)).replace(b"question", b"\\u0071uestion"),
            orjson.dumps(span(62)).replace(b'"temperature":0.2', b'"temperature":0.2,"temperature":0.9'),
            orjson.dumps(span(63)).replace(b'"feature":"chat"', b'"feature":"chat","feature":"x"'),
            orjson.dumps(span(64)).replace(b'"prompt_tokens":84', b'"prompt_tokens":84,"prompt_tokens":1'),
            orjson.dumps(span(65)).replace(b',"model"', b', "model"')]


def _loads(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


@pytest.mark.parametrize("compact", [True, False])
def test_a_layout_never_changes_a_verdict(tmp_path: Path, compact: bool) -> None:
    lines = compact_lines() if compact else good_and_bad_lines()
    path = write(tmp_path, "layout.jsonl", lines)
    assert_same(*both([path], tmp_path))
    assert_layout_changes_nothing(path)
    layout, matched = native_fast.layout_matches(path)
    assert layout is not None and (layout.keys is not None) == compact
    # The layout did its work on the usual lines (whole lines only where compact), and never on the odd ones.
    assert sum(line for line, _, _ in matched.values()) > (10 if compact else -1)
    assert sum(params for _, params, _ in matched.values()) > 10
    assert sum(metadata for _, _, metadata in matched.values()) > 10
    if compact:
        number = {orjson.loads(line).get("span_id"): n for n, line in enumerate(lines, 1) if _loads(line)}
        assert matched[number["s50"]] == (True, True, True)
        # s52 writes a null the layout leaves out; s54 repeats span_id (orjson keeps the last), s55 adds a key.
        for sid in ("s51", "s52", "s54", "s55", "s57", "s60", "s61", "s64", "s65"):
            assert not matched[number[sid]][0], sid
        assert not matched[number["s58"]][1] and not matched[number["s62"]][1]
        assert not matched[number["s59"]][2] and not matched[number["s63"]][2]


def test_sniff_layout_merges_key_orders_and_learns_how_nulls_are_written(tmp_path: Path) -> None:
    lines = [b'{"trace_id":"t","span_id":"a","parent_span_id":null,"name":"n","metadata":{"user_id":"u","team":"x"}}',
             b'{"trace_id":"t","span_id":"b","parent_span_id":"a","name":"n","documents":[],"metadata":{"b":null}}',
             b'{"trace_id":"t","span_id":"c","parent_span_id":null,"name":"n","usage":{"total_tokens":1}}',
             b'{"trace_id":"t","span_id":"d","name":"n","params":{"seed":1,"temperature":0}}']
    path = write(tmp_path, "l.jsonl", lines)
    layout = native_fast.sniff_layout(path)
    assert layout is not None
    # A key first seen in a later line goes right after the key before it there.
    assert layout.keys == (("trace_id", False), ("span_id", False), ("parent_span_id", True), ("name", False),
                           ("params", False), ("usage", False), ("documents", False), ("metadata", False))
    assert layout.usage == (("total_tokens", False),)
    assert layout.params == (("seed", False), ("temperature", False))
    assert layout.metadata == (("b", True), ("user_id", False), ("team", False))
    spaced = write(tmp_path, "s.jsonl", [json.dumps(orjson.loads(line)).encode() for line in lines])
    assert native_fast.sniff_layout(spaced) == native_fast.Layout(None, layout.usage, layout.params, layout.metadata)
    assert native_fast.sniff_layout(write(tmp_path, "x.jsonl", [b"[1]", b"oops", b'"s"'])) is None
    deep = write(tmp_path, "d.jsonl", [b'{"a":' * 300 + b"1" + b"}" * 300, lines[0]])
    assert native_fast.sniff_layout(deep) is not None  # orjson cannot write it back: not compact, no crash


def test_layouts_of_many_or_odd_keys(tmp_path: Path) -> None:
    """Keys that vary from line to line give metadata no layout (a struct of hundreds of fields would cost
    more than it saves); keys with dots, dashes or other characters still read exactly."""
    varying = [orjson.dumps(span(i, metadata={"user_id": "u", f"request-{i}": i})) for i in range(40)]
    layout = native_fast.sniff_layout(write(tmp_path, "v.jsonl", varying))
    assert layout is not None and layout.metadata == () and layout.params
    odd = [orjson.dumps(span(i, metadata={"user_id": "u", "a.b": i, "c-d": [i], "é": 1, "": 2, "x y": None}))
           for i in range(30)]
    path = write(tmp_path, "o.jsonl", odd + varying[:3])
    layout = native_fast.sniff_layout(path)
    assert layout is not None
    keys = [key for key, _ in layout.metadata]
    assert {"user_id", "a.b", "c-d"} <= set(keys) and keys.index("a.b") < keys.index("c-d")
    assert not {"é", "", "x y"} & set(keys)
    assert_same(*both([path], tmp_path))
    assert_layout_changes_nothing(path)


def test_nested_layout_leaves_out_names_differing_only_in_case() -> None:
    layout = native_fast.Layout(None, (), (), (("App", False), ("team", True), ("Team", False), ("user_id", False)))
    fields, kept = native_fast._nested_layout(layout, "metadata", ["user_id", "app"])
    assert fields == ["user_id", "app", "team"]
    assert kept == (("team", True), ("user_id", False))


def test_prevalidated_frame_has_canonical_dtypes(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", [json.dumps(span(i)).encode() for i in range(8)])
    read = native_fast.try_read(path, "d.jsonl")
    assert read is not None and read.rows is None
    frame = read.prevalidated
    assert list(frame.columns) == list(SPAN_COLUMN_NAMES)
    assert frame["start_time"].dtype == "datetime64[ns, UTC]" and frame["input_tokens"].dtype == "Int64"
    assert frame["latency_ms"].dtype == np.float64 and frame["trace_id"].dtype == object
    assert frame["error_message"].tolist() == [None] * 8


def test_merge_in_line_order_equals_concat_then_sort() -> None:
    first = pd.DataFrame({"source_line": pd.array([1, 3, 6, 9], dtype="Int64"), "a": ["w", "x", None, "z"],
                          "t": pd.to_datetime(["2026-10-01", None, "2026-10-02", "2026-10-03"], utc=True),
                          "f": [0.5, np.nan, 1.5, 2.0]})
    second = pd.DataFrame({"source_line": pd.array([2, 10], dtype="Int64"), "a": ["p", "q"],
                           "t": pd.to_datetime(["2026-09-30", None], utc=True), "f": [np.nan, 3.0]})
    expected = pd.concat([first, second], ignore_index=True).sort_values("source_line", ignore_index=True)
    pd.testing.assert_frame_equal(native_fast.merge_in_line_order(first, second), expected)


def test_explain_lines_names_the_checks_a_line_failed(tmp_path: Path) -> None:
    lines = [json.dumps(span(1)).encode(), json.dumps(span(2, team="x")).encode(), b"",
             json.dumps(span(3, usage={"prompt_tokens": -1})).encode(), b" " + json.dumps(span(4)).encode()]
    path = write(tmp_path, "why.jsonl", lines)
    why = native_fast.explain_lines(path)
    assert set(why) == {2, 4, 5}
    assert any(check.startswith("len(ks) = ") for check in why[2])  # an unknown top-level key
    assert any(check.startswith("input_tokens_json IS NULL") for check in why[4])
    assert why[5] == ["kept in Python"]


def _part(lines: list[int]) -> dict[str, np.ndarray]:
    """A converted batch as _to_arrays gives it, for the given line numbers."""
    at = np.asarray(lines, dtype=np.int64)
    return {
        "source_line": at,
        "source_line.isna": np.zeros(len(at), dtype=bool),
        "input_tokens": at * 10,
        "input_tokens.isna": at % 3 == 0,
        "span_id": np.array([f"s{n}" for n in lines], dtype=object),
        "latency_ms": at / 2,
        "start_time": (np.datetime64("2026-10-01T05:00:00", "ns") + at * np.timedelta64(1, "s")),
    }


@pytest.mark.parametrize("estimate", [0, 4, 1000])
def test_in_line_order_places_interleaved_runs_and_squeezes_holes(estimate: int) -> None:
    placed = native_fast._InLineOrder()
    # Interleaved ascending runs as DuckDB's threads return them; lines 4 and 9 left no row.
    for lines in ([5, 6, 7, 1, 2, 3], [10, 11, 8], [12]):
        placed.put(_part(lines), estimate)
    frame = placed.frame()
    assert frame["source_line"].tolist() == [1, 2, 3, 5, 6, 7, 8, 10, 11, 12]
    assert frame["span_id"].tolist() == [f"s{n}" for n in [1, 2, 3, 5, 6, 7, 8, 10, 11, 12]]
    assert str(frame["input_tokens"].dtype) == "Int64" and frame["input_tokens"].isna().tolist() == [
        n % 3 == 0 for n in [1, 2, 3, 5, 6, 7, 8, 10, 11, 12]]
    assert frame["input_tokens"].dropna().tolist() == [10, 20, 50, 70, 80, 100, 110]
    assert frame["latency_ms"].tolist() == [n / 2 for n in [1, 2, 3, 5, 6, 7, 8, 10, 11, 12]]
    assert str(frame["start_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["start_time"].iloc[0] == pd.Timestamp("2026-10-01T05:00:01Z")


def test_in_line_order_dense_rows_and_columns_grown_far_past_them() -> None:
    tight = native_fast._InLineOrder()
    tight.put(_part([3, 4]), 4)
    tight.put(_part([1, 2]), 4)
    frame = tight.frame()
    assert frame["source_line"].tolist() == [1, 2, 3, 4]
    grown = native_fast._InLineOrder()
    grown.put(_part(list(range(1, 11))), 1000)  # a low-balled gzip estimate, grown far past the rows
    frame = grown.frame()
    assert frame["source_line"].tolist() == list(range(1, 11))
    assert frame["span_id"].tolist() == [f"s{n}" for n in range(1, 11)] and len(frame) == 10
    assert native_fast._InLineOrder().frame() is None
