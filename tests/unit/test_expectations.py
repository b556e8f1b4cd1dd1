"""The GX spans suite: derived from schema.py, passes canonical data, names each kind of violation.

A validation costs ~0.3 s (GX builds a metric graph per expectation), so the violations share one frame in
which each bad row breaks exactly one expectation; the span ids in the results prove the attribution.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline import schema
from aiobs_pipeline.quality.expectations import (
    DEFAULT_LLM_NULL_RATE_LIMITS,
    SpanValidation,
    build_span_suite,
    validate_spans,
)

HOUR = pd.Timestamp("2024-05-01T10:00:00Z")
NEXT_HOUR = HOUR + pd.Timedelta(hours=1)


def span(number: int, **overrides: object) -> dict:
    """A valid canonical llm span starting `number` minutes into the hour; overrides replace or add fields."""
    start = HOUR + pd.Timedelta(minutes=number)
    row = {
        "trace_id": "trace-1",
        "span_id": f"s{number}",
        "parent_span_id": None if number == 1 else "s1",
        "name": "chat",
        "kind": "llm",
        "start_time": start,
        "end_time": start + pd.Timedelta(seconds=2),
        "latency_ms": 2000.0,
        "status": "ok",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "input_messages": '[{"role": "user", "content": "hi"}]',
        "output_text": "hello",
        "source_format": "native",
        "source_file": "2024/05/01/10/app.jsonl",
        "source_line": number,
        "export_hour": HOUR,
        "schema_version": schema.SCHEMA_VERSION,
    }
    row.update(overrides)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return schema.conform(pd.DataFrame(list(rows)), schema.SPAN_COLUMNS)


def valid_rows() -> list[dict]:
    return [span(1), span(2), span(3)]


def failing(result: SpanValidation) -> set[tuple[str, tuple[str, ...]]]:
    return {(r.expectation_type, tuple(r.columns)) for r in result.failures}


def markdown_line(result: SpanValidation, mark: str, description: str, column: str) -> str:
    lines = [line for line in result.to_markdown().splitlines()
             if line.startswith(f"| {mark} | {description}") and f"| {column} |" in line]
    assert len(lines) == 1, result.to_markdown()
    return lines[0]


@pytest.fixture(scope="module")
def valid_result() -> SpanValidation:
    # Mixed kinds, a span without end time, and the same span id in a second export hour: all canonical.
    rows = valid_rows() + [
        span(4, kind="retrieval", model=None, input_tokens=None, output_tokens=None, total_tokens=None,
             end_time=None, latency_ms=None),
        span(5, kind="tool", status="error", error_message="timeout", model=None, input_tokens=None,
             output_tokens=None, total_tokens=None),
        span(1, export_hour=NEXT_HOUR, source_file="2024/05/01/11/app.jsonl", start_time=NEXT_HOUR,
             end_time=NEXT_HOUR, source_format="otlp"),
    ]
    return validate_spans(frame(*rows), expected_row_count=len(rows))


# Each bad row breaks exactly one expectation: (row, failing expectation, markdown description,
# markdown column cell, fragments of the markdown "observed" cell).
VIOLATIONS = {
    "duplicate_span_id": (
        span(4, span_id="s1"),
        ("expect_compound_columns_to_be_unique", ("export_hour", "span_id")),
        "unique per export hour", "`export_hour`, `span_id`",
        ["2 of 10 rows duplicated", "span_id='s1'; span_id 's1'"]),
    "null_required_field": (
        span(5, name=None),
        ("expect_column_values_to_not_be_null", ("name",)),
        "not null (required)", "`name`", ["1 of 10 rows null (10.0%); span_id 's5'"]),
    "negative_tokens": (
        span(6, output_tokens=-5),
        ("expect_column_values_to_be_between", ("output_tokens",)),
        "between 0 and 50,000,000", "`output_tokens`", ["1 of 10 rows unexpected", "e.g. -5; span_id 's6'"]),
    "absurd_latency": (
        span(7, latency_ms=1e12),
        ("expect_column_values_to_be_between", ("latency_ms",)),
        "between 0 and 86,400,000", "`latency_ms`", ["e.g. 1000000000000.0; span_id 's7'"]),
    "kind_not_allowed": (
        span(8, kind="agent"),
        ("expect_column_values_to_be_in_set", ("kind",)),
        "one of llm, embedding, retrieval, rerank, tool, chain", "`kind`", ["e.g. 'agent'; span_id 's8'"]),
    "status_not_allowed": (
        # A pipe or newline in a value must not break the markdown table.
        span(9, status="o|k\nnow"),
        ("expect_column_values_to_be_in_set", ("status",)),
        "one of ok, error", "`status`", ["e.g. 'o\\|k\\nnow'; span_id 's9'"]),
    "end_before_start": (
        span(10, end_time=HOUR + pd.Timedelta(minutes=9)),
        ("expect_column_pair_values_a_to_be_greater_than_b", ("end_time", "start_time")),
        "end_time ≥ start_time (where both are set)", "`end_time`, `start_time`",
        ["e.g. end_time='2024-05-01T10:09:00+00:00', start_time='2024-05-01T10:10:00+00:00'; span_id 's10'"]),
    "row_count_mismatch": (
        None,
        ("expect_table_row_count_to_equal", ()),
        "row count = 11 (audit rows written)", "(table)", ["| 10 rows |"]),
}


@pytest.fixture(scope="module")
def violations_result() -> SpanValidation:
    rows = valid_rows() + [row for row, *_ in VIOLATIONS.values() if row is not None]
    assert len(rows) == 10
    return validate_spans(frame(*rows), expected_row_count=11)


def test_suite_is_derived_from_schema() -> None:
    suite = build_span_suite()
    by_type: dict[str, list] = {}
    for e in suite.expectations:
        by_type.setdefault(e.expectation_type, []).append(e)

    assert [e.column for e in by_type["expect_column_to_exist"]] == list(schema.SPAN_COLUMN_NAMES)
    required = [e.column for e in by_type["expect_column_values_to_not_be_null"] if e.row_condition is None]
    assert required == list(schema.REQUIRED_SPAN_COLUMNS)
    [unique] = by_type["expect_compound_columns_to_be_unique"]
    assert list(unique.column_list) == ["export_hour", "span_id"]

    bounds = {e.column: (e.min_value, e.max_value) for e in by_type["expect_column_values_to_be_between"]}
    for column in schema.SPAN_COLUMNS:
        limit = schema.ABSURD_LIMITS.get(column.name)
        if column.type in ("int", "float") and (column.minimum is not None or limit is not None):
            assert bounds.pop(column.name) == (column.minimum, limit)
    assert not bounds

    sets = {e.column: tuple(e.value_set) for e in by_type["expect_column_values_to_be_in_set"]}
    assert sets == {"kind": schema.KINDS, "status": schema.STATUSES, "source_format": schema.SOURCE_FORMATS}
    [pair] = by_type["expect_column_pair_values_a_to_be_greater_than_b"]
    assert (pair.column_A, pair.column_B, pair.or_equal) == ("end_time", "start_time", True)
    assert pair.ignore_row_if == "either_value_is_missing"

    llm_limits = {e.column: e.mostly for e in by_type["expect_column_values_to_not_be_null"]
                  if e.row_condition is not None}
    assert llm_limits == pytest.approx({c: 1 - v for c, v in DEFAULT_LLM_NULL_RATE_LIMITS.items()})
    assert "expect_table_row_count_to_equal" not in by_type

    [count] = [e for e in build_span_suite(expected_row_count=7).expectations
               if e.expectation_type == "expect_table_row_count_to_equal"]
    assert count.value == 7


def test_valid_frame_passes(valid_result: SpanValidation) -> None:
    assert valid_result.success, valid_result.to_markdown()
    assert valid_result.failed == 0
    assert valid_result.severity is None
    evaluated = len(build_span_suite(expected_row_count=6).expectations)
    assert valid_result.evaluated == evaluated
    assert valid_result.row_count == 6
    assert valid_result.to_markdown().startswith(f"**✅ All {evaluated} expectations passed on 6 rows.**")


def test_violations_fail_exactly_their_expectations(violations_result: SpanValidation) -> None:
    assert not violations_result.success
    assert violations_result.severity == "ERROR"
    assert failing(violations_result) == {expectation for _, expectation, *_ in VIOLATIONS.values()}
    assert violations_result.failed == len(VIOLATIONS)


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_each_violation_has_a_readable_markdown_line(violations_result: SpanValidation, name: str) -> None:
    row, (expectation_type, columns), description, column_cell, fragments = VIOLATIONS[name]
    line = markdown_line(violations_result, "❌", description, column_cell)
    for fragment in fragments:
        assert fragment in line, line
    [outcome] = [r for r in violations_result.failures
                 if (r.expectation_type, tuple(r.columns)) == (expectation_type, columns)]
    assert outcome.unexpected_span_ids == ([row["span_id"]] if row is not None else [])


def test_llm_null_rate_is_a_warning_and_configurable() -> None:
    rows = valid_rows() + [span(4, model=None)]
    result = validate_spans(frame(*rows))
    assert failing(result) == {("expect_column_values_to_not_be_null", ("model",))}
    assert result.severity == "WARN"
    line = markdown_line(result, "⚠️", "set on ≥ 99% of llm spans", "`model`")
    assert "1 of 4 rows null (25.0%); span_id 's4'" in line

    # Non-llm spans without a model do not count against the limit.
    assert validate_spans(frame(*valid_rows(), span(4, kind="tool", model=None))).success
    assert validate_spans(frame(*rows), null_rate_limits={"model": 0.5}).success
    relaxed = validate_spans(frame(*rows), null_rate_limits={})
    assert relaxed.success
    assert relaxed.evaluated == result.evaluated - len(DEFAULT_LLM_NULL_RATE_LIMITS)


@pytest.mark.parametrize(("limits", "message"), [
    ({"modle": 0.1}, "'modle' is not a canonical span column"),
    ({"span_id": 0.1}, "'span_id' is required"),
    ({"model": 1.5}, "limit for 'model' must be a share between 0 and 1"),
])
def test_bad_null_rate_limits_are_named(limits: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_span_suite(null_rate_limits=limits)


def test_expected_row_count_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="expected_row_count"):
        build_span_suite(expected_row_count=-1)
    with pytest.raises(ValueError, match="expected_row_count"):
        build_span_suite(expected_row_count=2.5)  # type: ignore[arg-type]
    # Audit totals arrive as numpy integers.
    [count] = [e for e in build_span_suite(expected_row_count=np.int64(3)).expectations
               if e.expectation_type == "expect_table_row_count_to_equal"]
    assert type(count.value) is int


def test_empty_partition_passes_unless_rows_were_expected() -> None:
    empty = schema.empty_frame(schema.SPAN_COLUMNS)
    result = validate_spans(empty, expected_row_count=0)
    assert result.success, result.to_markdown()
    assert result.row_count == 0
    assert result.to_markdown().startswith(f"**✅ All {result.evaluated} expectations passed on 0 rows.**")

    missing = validate_spans(empty, expected_row_count=np.int64(3))
    assert failing(missing) == {("expect_table_row_count_to_equal", ())}
    assert "| 0 rows |" in markdown_line(missing, "❌", "row count = 3", "(table)")
    assert missing.to_metadata()["expected_row_count"] == 3


def test_frame_without_canonical_columns_fails_without_crashing() -> None:
    result = validate_spans(pd.DataFrame({"span_id": ["a"], "surprise": [1]}))
    assert not result.success
    missing = {r.columns[0] for r in result.failures if r.expectation_type == "expect_column_to_exist"}
    assert missing == set(schema.SPAN_COLUMN_NAMES) - {"span_id"}
    assert "| ❌ | column exists | `trace_id` | missing |" in result.to_markdown()
    assert any(r.exception for r in result.failures)
    json.dumps(result.to_metadata(), allow_nan=False)


def test_markdown_shape(violations_result: SpanValidation) -> None:
    lines = violations_result.to_markdown().splitlines()
    assert lines[0] == f"**❌ {len(VIOLATIONS)} of {violations_result.evaluated} expectations failed on 10 rows.**"
    assert lines[1] == ""
    assert lines[2:4] == ["| | expectation | column | observed |", "|---|---|---|---|"]
    table = lines[4:]
    assert len(table) == violations_result.evaluated
    # Every row has exactly four cells, whatever the values held (escaped pipes do not count).
    assert all(line.replace("\\|", "").count("|") == 5 for line in table)
    # Failures first, then passes.
    marks = [line.split(" | ")[0] for line in table]
    assert marks == ["| ❌"] * len(VIOLATIONS) + ["| ✅"] * (len(table) - len(VIOLATIONS))


def test_metadata_is_plain_json(violations_result: SpanValidation, valid_result: SpanValidation) -> None:
    meta = violations_result.to_metadata()
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta
    assert {k: meta[k] for k in ("success", "severity", "failed", "row_count", "expected_row_count")} \
        == {"success": False, "severity": "ERROR", "failed": len(VIOLATIONS), "row_count": 10,
            "expected_row_count": 11}
    assert meta["evaluated"] == len(meta["results"]) == len(build_span_suite(expected_row_count=11).expectations)
    assert "expect_column_values_to_be_between(output_tokens)" in meta["failed_expectations"]
    assert "expect_table_row_count_to_equal()" in meta["failed_expectations"]

    [tokens] = [r for r in meta["results"] if not r["success"] and r["columns"] == ["output_tokens"]]
    assert tokens["unexpected_values"] == [-5]
    assert tokens["unexpected_span_ids"] == ["s6"]
    assert (tokens["unexpected_count"], tokens["element_count"]) == (1, 10)
    assert tokens["severity"] == "ERROR"
    [pair] = [r for r in meta["results"] if r["columns"] == ["end_time", "start_time"]]
    assert pair["unexpected_values"] == [["2024-05-01T10:09:00+00:00", "2024-05-01T10:10:00+00:00"]]
    [count] = [r for r in meta["results"] if r["expectation_type"] == "expect_table_row_count_to_equal"]
    assert count["observed_value"] == 10

    assert json.loads(json.dumps(valid_result.to_metadata(), allow_nan=False))["success"] is True
