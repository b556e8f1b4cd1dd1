"""Partition ingest on native JSONL: row rules, quarantine reasons, dedupe, late spans, the audit identity."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest.partition import ingest_files, ingest_partition, landing_folder, partition_files
from aiobs_pipeline.quality.rules import split_duplicates
from aiobs_pipeline.schema import AUDIT_COLUMN_NAMES, QUARANTINE_COLUMN_NAMES, SPAN_COLUMN_NAMES

HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)


def span(i: int, **overrides: object) -> dict:
    """A well-formed native LLM span starting inside HOUR."""
    base = {
        "span_id": f"s{i}", "trace_id": f"t{i // 3}", "name": "chat_completion",
        "start_time": f"2026-10-01T05:{i % 60:02d}:00Z", "end_time": f"2026-10-01T05:{i % 60:02d}:01.5Z",
        "model": "gpt-4o-mini", "provider": "openai",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}],
        "response": f"answer {i}",
        "usage": {"prompt_tokens": 20 + i, "completion_tokens": 5, "total_tokens": 25 + i},
        "cost": 0.0001, "metadata": {"user_id": f"u{i % 4}", "feature": "chat", "endpoint": "/v1/chat",
                                     "prompt_version": "v2", "ab_bucket": "B"},
    }
    base.update(overrides)
    return base


def write_hour(root: Path, name: str, lines: list[str], hour: datetime = HOUR, gz: bool = False) -> Path:
    folder = landing_folder(root, hour)
    folder.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def identity_holds(audit: pd.DataFrame) -> bool:
    return bool((audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all())


def test_good_spans_map_to_canonical_columns(tmp_path: Path) -> None:
    write_hour(tmp_path, "a.jsonl", [json.dumps(span(i)) for i in range(6)])
    result = ingest_partition(tmp_path, HOUR)
    assert list(result.spans.columns) == list(SPAN_COLUMN_NAMES)
    assert len(result.spans) == 6 and result.quarantined.empty
    row = result.spans.iloc[1]
    assert row["kind"] == "llm" and row["status"] == "ok"
    assert row["input_tokens"] == 21 and row["output_tokens"] == 5
    assert row["latency_ms"] == pytest.approx(1500.0)
    assert row["user_id"] == "u1" and row["prompt_version"] == "v2"
    assert orjson.loads(row["metadata"]) == {"ab_bucket": "B"}
    assert orjson.loads(row["input_messages"])[1]["content"] == "question 1"
    assert row["source_file"] == "2026/10/01/05/a.jsonl" and row["source_line"] == 2
    assert str(row["start_time"].tz) == "UTC"
    assert result.audit.iloc[0]["source_format"] == "native"
    assert identity_holds(result.audit)


@pytest.mark.parametrize(
    ("line", "reason", "field"),
    [
        ("{not json", "invalid_json", "line 1"),
        (json.dumps(span(1, span_id=None)), "missing_required_field", "span_id"),
        (json.dumps(span(1, start_time=None)), "missing_required_field", "start_time"),
        (json.dumps(span(1, usage={"prompt_tokens": -4, "completion_tokens": 1})), "negative_value", "input_tokens"),
        (json.dumps(span(1, usage={"prompt_tokens": "many"})), "invalid_type", "input_tokens"),
        (json.dumps(span(1, usage={"prompt_tokens": 1.5})), "invalid_type", "input_tokens"),
        (json.dumps(span(1, latency_ms=-1)), "negative_value", "latency_ms"),
        (json.dumps(span(1, latency_ms=10**12)), "absurd_value", "latency_ms"),
        (json.dumps(span(1, end_time="2026-10-01T04:00:00Z")), "end_before_start", "end_time"),
        (json.dumps(span(1, kind="banana")), "invalid_kind", "kind"),
        (json.dumps(span(1, status="meh")), "invalid_status", "status"),
        (json.dumps(span(1, start_time="yesterday-ish")), "invalid_type", "start_time"),
        (json.dumps(span(1, name=["not", "a", "string"])), "invalid_type", "name"),
        (json.dumps("just a string"), "unknown_format", "record 1"),
    ],
)
def test_bad_records_are_quarantined_with_reason_naming_field(
    tmp_path: Path, line: str, reason: str, field: str
) -> None:
    write_hour(tmp_path, "bad.jsonl", [line])
    result = ingest_partition(tmp_path, HOUR)
    assert result.spans.empty
    assert len(result.quarantined) == 1
    row = result.quarantined.iloc[0]
    assert row["reason"] == reason
    assert field in row["detail"]
    assert row["source_file"] == "2026/10/01/05/bad.jsonl"
    assert row["source_line"] == 1
    assert row["raw"] and len(row["raw"]) <= 2100
    assert identity_holds(result.audit)


def test_bad_line_does_not_lose_good_neighbours(tmp_path: Path) -> None:
    lines = [json.dumps(span(0)), "{broken", json.dumps(span(2)), "", json.dumps(span(3, latency_ms=-9))]
    write_hour(tmp_path, "mixed.jsonl", lines)
    result = ingest_partition(tmp_path, HOUR)
    assert sorted(result.spans["span_id"]) == ["s0", "s2"]
    assert sorted(result.quarantined["source_line"].tolist()) == [2, 5]
    audit = result.audit.iloc[0]
    assert (audit["records_read"], audit["spans_found"], audit["spans_written"], audit["spans_quarantined"]) == (
        4, 4, 2, 2)


def test_duplicate_span_id_is_quarantined_not_dropped(tmp_path: Path) -> None:
    write_hour(tmp_path, "a.jsonl", [json.dumps(span(1))])
    write_hour(tmp_path, "b.jsonl", [json.dumps(span(1, response="again")), json.dumps(span(2))])
    result = ingest_partition(tmp_path, HOUR)
    assert sorted(result.spans["span_id"]) == ["s1", "s2"]
    assert result.spans.set_index("span_id").loc["s1", "source_file"].endswith("a.jsonl")
    dup = result.quarantined.iloc[0]
    assert dup["reason"] == "duplicate_span_id" and dup["source_file"].endswith("b.jsonl")
    assert '"again"' in dup["raw"]
    assert identity_holds(result.audit)


def test_late_spans_are_kept_and_counted(tmp_path: Path) -> None:
    write_hour(tmp_path, "a.jsonl", [json.dumps(span(1, start_time="2026-10-01T04:58:00Z",
                                                      end_time="2026-10-01T04:58:02Z")), json.dumps(span(2))])
    result = ingest_partition(tmp_path, HOUR)
    assert len(result.spans) == 2
    assert result.audit.iloc[0]["late_spans"] == 1


def test_gzip_and_truncated_gzip(tmp_path: Path) -> None:
    write_hour(tmp_path, "good.jsonl.gz", [json.dumps(span(i)) for i in range(3)], gz=True)
    folder = landing_folder(tmp_path, HOUR)
    payload = gzip.compress(("\n".join(json.dumps(span(i)) for i in range(10, 400)) + "\n").encode())
    (folder / "cut.jsonl.gz").write_bytes(payload[: len(payload) // 2])
    (folder / "fake.jsonl.gz").write_bytes(b"not gzip at all\n")
    result = ingest_partition(tmp_path, HOUR)
    audit = result.audit.set_index("source_file")
    assert audit.loc["2026/10/01/05/good.jsonl.gz", "spans_written"] == 3
    cut = audit.loc["2026/10/01/05/cut.jsonl.gz"]
    assert cut["spans_written"] > 0 and "damaged" in cut["file_error"]
    reasons = result.quarantined.groupby("source_file")["reason"].apply(set).to_dict()
    assert reasons["2026/10/01/05/cut.jsonl.gz"] == {"corrupt_gzip"}
    assert reasons["2026/10/01/05/fake.jsonl.gz"] == {"unreadable_file"}
    assert result.unreadable_files == ["2026/10/01/05/fake.jsonl.gz"]
    assert identity_holds(result.audit)


def test_wrong_encoding_is_quarantined(tmp_path: Path) -> None:
    folder = landing_folder(tmp_path, HOUR)
    folder.mkdir(parents=True)
    good = json.dumps(span(1)).encode()
    latin1 = json.dumps(span(2, response="café")).encode().replace(b"caf\\u00e9", "café".encode("latin-1"))
    (folder / "enc.jsonl").write_bytes(good + b"\n" + latin1 + b"\n")
    result = ingest_partition(tmp_path, HOUR)
    assert list(result.spans["span_id"]) == ["s1"]
    assert result.quarantined.iloc[0]["reason"] == "invalid_encoding"
    assert "line 2" in result.quarantined.iloc[0]["detail"]


def test_unknown_format_file(tmp_path: Path) -> None:
    write_hour(tmp_path, "weird.jsonl", [json.dumps({"hello": "world"}), json.dumps({"hello": 2})])
    result = ingest_partition(tmp_path, HOUR)
    assert result.spans.empty
    assert set(result.quarantined["reason"]) == {"unknown_format"}
    assert result.audit.iloc[0]["spans_found"] == 2


def test_empty_hour_gives_empty_tables_with_columns(tmp_path: Path) -> None:
    result = ingest_partition(tmp_path, HOUR)
    assert result.spans.empty and list(result.spans.columns) == list(SPAN_COLUMN_NAMES)
    assert list(result.quarantined.columns) == list(QUARANTINE_COLUMN_NAMES)
    assert list(result.audit.columns) == list(AUDIT_COLUMN_NAMES)


def test_partition_files_only_lists_landing_names(tmp_path: Path) -> None:
    write_hour(tmp_path, "a.jsonl", ["{}"])
    write_hour(tmp_path, "b.json.gz", ["{}"], gz=True)
    write_hour(tmp_path, "notes.txt", ["x"])
    write_hour(tmp_path, ".partial.jsonl", ["x"])
    assert [p.name for p in partition_files(tmp_path, HOUR)] == ["a.jsonl", "b.json.gz"]


# Fuzzing: whatever bytes land in a file, every record is either written or quarantined.
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
_fields = st.fixed_dictionaries({}, optional={
    "span_id": st.one_of(st.text(min_size=1, max_size=4), st.integers(0, 5), st.none()),
    "trace_id": st.one_of(st.text(min_size=1, max_size=4), st.none()),
    "name": _values, "start_time": st.one_of(
        st.just("2026-10-01T05:10:00Z"), st.just("2026-10-01T03:00:00+02:00"), _values),
    "end_time": _values, "model": _values, "messages": _values, "response": _values, "usage": _values,
    "latency_ms": _values, "kind": st.one_of(st.sampled_from(["llm", "tool", "LLM", "x"]), _values),
    "status": st.one_of(st.sampled_from(["ok", "error", "ERROR"]), _values), "metadata": _values,
    "documents": _values, "params": _values, "cost": _values,
})
_lines = st.lists(
    st.one_of(
        _fields.map(lambda d: json.dumps({"span_id": "x", "trace_id": "t", **d}).encode()),
        st.binary(max_size=40),
        _fields.map(lambda d: json.dumps(d).encode()),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(_lines, min_size=1, max_size=3))
def test_fuzzed_input_keeps_the_audit_identity(tmp_path_factory: pytest.TempPathFactory,
                                               files: list[list[bytes]]) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    folder = landing_folder(root, HOUR)
    folder.mkdir(parents=True)
    paths = []
    for index, lines in enumerate(files):
        path = folder / f"f{index}.jsonl"
        path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
        paths.append(path)
    result = ingest_files(paths, HOUR, root)
    assert identity_holds(result.audit)
    assert result.audit["spans_written"].sum() == len(result.spans)
    assert result.audit["spans_quarantined"].sum() == len(result.quarantined)
    assert result.spans["span_id"].is_unique
    assert result.quarantined["reason"].notna().all() and result.quarantined["detail"].notna().all()


def test_nul_characters_are_quarantined_because_warehouses_refuse_them(tmp_path: Path) -> None:
    write_hour(tmp_path, "nul.jsonl", [json.dumps(span(1, response="a\u0000b")),
                                       json.dumps(span(2, messages=[{"role": "user", "content": "x\u0000"}])),
                                       json.dumps(span(3))])
    result = ingest_partition(tmp_path, HOUR)
    assert list(result.spans["span_id"]) == ["s3"]
    details = sorted(result.quarantined["detail"])
    assert set(result.quarantined["reason"]) == {"invalid_encoding"}
    assert "nul.jsonl:1: field 'output_text'" in details[0]
    assert "nul.jsonl:2: field 'input_messages'" in details[1]


def test_broken_first_line_does_not_take_the_file_down(tmp_path: Path) -> None:
    write_hour(tmp_path, "a.jsonl", ['{"span_id": "s0", "trace_id": ', json.dumps(span(1)), json.dumps(span(2))])
    result = ingest_partition(tmp_path, HOUR)
    assert sorted(result.spans["span_id"]) == ["s1", "s2"]
    assert result.quarantined["reason"].tolist() == ["invalid_json"]
    assert result.quarantined["source_line"].tolist() == [1]


def test_boolean_numbers_and_unstorable_json_are_quarantined(tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(300):
        deep = {"x": deep}
    write_hour(tmp_path, "a.jsonl", [json.dumps(span(1, params={"temperature": True}))])
    folder = landing_folder(tmp_path, HOUR)
    # orjson reads at most 1024 levels but writes at most 254: such a document parses but cannot be stored.
    (folder / "b.jsonl").write_text(json.dumps(span(2, metadata={"user_id": "u", "deep": deep})) + "\n")
    result = ingest_partition(tmp_path, HOUR, fast_path=False)
    reasons = dict(zip(result.quarantined["source_file"].str[-7:], result.quarantined["detail"], strict=True))
    assert "temperature" in reasons["a.jsonl"]
    assert "metadata" in reasons["b.jsonl"] and "JSON" in reasons["b.jsonl"]
    assert result.spans.empty


def test_integer_too_large_for_the_column_is_quarantined(tmp_path: Path) -> None:
    line = json.dumps(span(1)).replace('"cost": 0.0001', '"cost": 0.0001, "params": {"max_tokens": 12345678901234567890256}')
    write_hour(tmp_path, "big.jsonl", [line, json.dumps(span(2))])
    result = ingest_partition(tmp_path, HOUR)
    assert list(result.spans["span_id"]) == ["s2"]
    assert result.quarantined["reason"].tolist() == ["absurd_value"]
    assert "max_tokens" in result.quarantined["detail"].iloc[0]


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=30),
       buckets=st.integers(min_value=1, max_value=4))
def test_split_duplicates_with_hashes_equals_it_without(ids: list[str], buckets: int) -> None:
    # Few buckets force hash collisions between different ids: a shared hash alone marks no duplicate.
    spans = pd.DataFrame({"span_id": ids, "source_line": range(1, len(ids) + 1)})
    hashes = np.array([hash(i) % buckets for i in ids], dtype=np.uint64)
    kept, dups = split_duplicates(spans, hashes)
    want_kept, want_dups = split_duplicates(spans)
    pd.testing.assert_frame_equal(kept, want_kept)
    pd.testing.assert_frame_equal(dups, want_dups)
    assert kept["span_id"].is_unique and len(kept) + len(dups) == len(ids)


def test_split_duplicates_refuses_hashes_of_another_length() -> None:
    spans = pd.DataFrame({"span_id": ["a", "b"]})
    with pytest.raises(ValueError, match="1 span-id hashes for 2 spans"):
        split_duplicates(spans, np.zeros(1, dtype=np.uint64))
