"""LangSmith bulk export (Parquet): field mapping, JSON-reader parity, roll-ups, the window, bad files and rows."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiobs_pipeline.costs.pricing import price_spans
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.ingest import detect, langsmith, langsmith_bulk
from aiobs_pipeline.ingest.base import RawRecord
from aiobs_pipeline.ingest.files import UnreadableFile, is_landing_file, open_binary
from aiobs_pipeline.ingest.partition import ingest_files, read_file
from aiobs_pipeline.quality.rules import apply_row_rules
from aiobs_pipeline.schema import SCHEMA_VERSION, SPAN_COLUMN_NAMES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "langsmith_bulk"
DAY = datetime(2026, 12, 7, tzinfo=UTC)
HOUR14 = DAY.replace(hour=14)
ROOT, RETRIEVER, LLM = (f"a1000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))
OUTER, INNER = (f"b2000000-0000-4000-8000-00000000000{i}" for i in (1, 2))
TOOL, EMBEDDING = (f"c3000000-0000-4000-8000-00000000000{i}" for i in (1, 2))


def read(name: str, window: tuple[datetime, datetime] | None = None, **kwargs: object) -> langsmith_bulk.BulkRead:
    with open_binary(FIXTURES / name) as stream:
        return langsmith_bulk.read_stream(stream, name, window, **kwargs)


def checked(name: str = "runs_v1.parquet") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid, quarantined) rows of a fixture after the shared row rules."""
    rows = read(name).rows
    rows["source_file"], rows["source_format"] = name, langsmith_bulk.FORMAT
    rows["export_hour"], rows["schema_version"] = pd.Timestamp(HOUR14), SCHEMA_VERSION
    result = apply_row_rules(rows)
    return result.valid.set_index("span_id", drop=False), result.quarantined


def stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_the_rag_trace_maps_every_field() -> None:
    valid, _ = checked()
    root, retriever, llm = valid.loc[ROOT], valid.loc[RETRIEVER], valid.loc[LLM]

    assert (root["trace_id"], root["parent_span_id"], root["name"], root["kind"]) == (ROOT, None, "support_agent",
                                                                                      "chain")
    assert root["start_time"] == stamp("2026-12-07T09:15:00") and root["latency_ms"] == 2400.0
    assert (root["user_id"], root["session_id"], root["environment"], root["app"], root["feature"]) == (
        "user-42", "conv-7", "production", "helpdesk", "support_chat")
    assert root["output_text"] == "Refunds are accepted within 30 days."
    # A chain's run-level tokens and cost cover its children: kept aside, not the span's own usage.
    assert pd.isna(root["input_tokens"]) and pd.isna(root["reported_cost_usd"])
    meta = json.loads(root["metadata"])
    assert meta["langsmith"]["aggregate_usage"] == {"prompt_tokens": 1200, "completion_tokens": 40,
                                                    "total_tokens": 1240, "total_cost": 0.0034,
                                                    "prompt_cost": 0.003, "completion_cost": 0.0004}
    assert meta["tier"] == "gold" and meta["tags"] == ["prod", "rag"]
    assert meta["inputs"] == {"question": "What is the refund window?"}
    assert meta["langsmith"]["project_id"] == "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"
    assert meta["langsmith"]["tenant_id"] == "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    assert meta["langsmith"]["runtime"]["sdk"] == "langsmith-py"
    assert meta["langsmith"]["feedback_stats"] == {"correctness": {"n": 1, "avg": 1.0}}
    assert meta["langsmith"]["event_counts"] == {"start": 1, "end": 1}
    assert (meta["langsmith"]["run_type"], meta["langsmith"]["status"], meta["langsmith"]["is_root"]) == (
        "chain", "success", True)

    assert (retriever["kind"], retriever["parent_span_id"], retriever["trace_id"]) == ("retrieval", ROOT, ROOT)
    docs = json.loads(retriever["documents"])
    assert [(d["id"], d["score"], d["text"]) for d in docs] == [
        ("doc-1", 0.91, "Refunds within 30 days of purchase."), ("doc-2", 0.42, "Shipping takes 5 days.")]

    assert (llm["kind"], llm["provider"], llm["request_model"], llm["response_model"], llm["model"]) == (
        "llm", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18")
    assert (llm["temperature"], llm["max_tokens"]) == (0.2, 256)
    assert json.loads(llm["request_params"]) == {"stream": False, "seed": 7}
    assert json.loads(llm["input_messages"]) == [{"role": "system", "content": "Answer from the context."},
                                                 {"role": "user", "content": "What is the refund window?"}]
    assert json.loads(llm["output_messages"])[0]["content"] == "Refunds are accepted within 30 days."
    # usage_metadata of the generation's message wins; the run-level cost of a leaf run is its own.
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"], llm["cached_input_tokens"],
            llm["reasoning_tokens"], llm["reported_cost_usd"]) == (1200, 40, 1240, 1024, 0, 0.0034)
    assert llm["latency_ms"] == 2070.0 and pd.isna(llm["time_to_first_token_ms"])
    assert json.loads(llm["metadata"])["ls_model_type"] == "chat"


def test_streamed_error_and_embedding_runs() -> None:
    valid, _ = checked()
    inner, tool, embedding = valid.loc[INNER], valid.loc[TOOL], valid.loc[EMBEDDING]
    # first_token_time (400 ms after the trace's start) minus the run's own start (5 ms)
    assert inner["time_to_first_token_ms"] == 395.0 and inner["latency_ms"] == 1485.0
    assert (inner["input_tokens"], inner["output_tokens"], inner["cached_input_tokens"],
            inner["reasoning_tokens"], inner["reported_cost_usd"]) == (300, 120, 256, 64, 0.000117)
    assert (inner["request_model"], inner["response_model"], inner["output_text"]) == (
        "gpt-4o", "gpt-4o-2024-08-06", "short")
    assert json.loads(inner["request_params"]) == {"stream": True, "stream_options": {"include_usage": True}}
    assert json.loads(inner["metadata"])["langsmith"]["event_counts"] == {"new_token": 5}
    assert (inner["user_id"], inner["session_id"]) == ("user-7", "s-99")

    assert (tool["kind"], tool["status"]) == ("tool", "error")
    assert tool["error_message"].startswith("KeyError: 'A-1'")
    assert (embedding["kind"], embedding["input_tokens"], embedding["output_tokens"],
            embedding["reported_cost_usd"], embedding["model"]) == ("embedding", 3, 0, 6e-08,
                                                                  "text-embedding-3-small")


def test_time_to_first_token_falls_back_to_the_first_new_token_event() -> None:
    table = pq.read_table(FIXTURES / "runs_v1.parquet").slice(4, 1)
    table = table.set_column(table.schema.get_field_index("first_token_time"), "first_token_time",
                             pa.nulls(1, pa.timestamp("ns")))
    rows = langsmith_bulk.map_runs(table, [5])
    assert rows["time_to_first_token_ms"].iloc[0] == 405.0  # the earliest new_token event, 410 ms - 5 ms


def test_v1_and_v2_beta_spellings_give_the_same_spans() -> None:
    v1, q1 = checked("runs_v1.parquet")
    v2, q2 = checked("runs_v2_beta.parquet")
    columns = [c for c in SPAN_COLUMN_NAMES if c != "source_file"]
    pd.testing.assert_frame_equal(v1[columns], v2.loc[v1.index, columns])
    # v2 has decimal costs, so its bad-cost row has no cost to reject: it is a valid span there.
    assert sorted(q1["reason"]) == ["end_before_start", "invalid_type", "missing_required_field", "negative_value"]
    assert sorted(q2["reason"]) == ["end_before_start", "missing_required_field", "negative_value"]


def _as_json_runs(path: Path) -> list[RawRecord]:
    """The fixture's rows as the runs LangSmith's API returns (JSON fields parsed, times as ISO text)."""
    records = []
    for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
        run = {}
        for key, value in row.items():
            if key in ("inputs", "outputs", "extra", "events", "feedback_stats") and value is not None:
                value = json.loads(value)
            elif key.endswith("_token_details") and value is not None:
                value = dict(value)
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            run[key] = value
        records.append(RawRecord(number, json.dumps(run), run))
    return records


def test_same_spans_as_the_json_reader_reads_from_the_same_runs() -> None:
    bulk, _ = checked("runs_v1.parquet")
    # The JSON reader rejects the run without an id itself; every other run becomes a row.
    rows = [r for r in langsmith.read(_as_json_runs(FIXTURES / "runs_v1.parquet")) if isinstance(r, dict)]
    frame = pd.DataFrame(rows)
    frame["source_file"], frame["source_format"] = "runs_v1.parquet", "langsmith"
    frame["export_hour"], frame["schema_version"] = pd.Timestamp(HOUR14), SCHEMA_VERSION
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
    json_valid = apply_row_rules(frame).valid.set_index("span_id", drop=False)
    assert sorted(json_valid.index) == sorted(bulk.index)
    json_valid = json_valid.loc[bulk.index]
    for column in SPAN_COLUMN_NAMES:
        if column in ("metadata", "source_format"):
            continue
        pd.testing.assert_series_equal(bulk[column], json_valid[column], check_names=False, obj=column)
    for span_id in bulk.index:
        ours, theirs = json.loads(bulk.at[span_id, "metadata"]), json.loads(json_valid.at[span_id, "metadata"])
        theirs["langsmith"].pop("where")  # where the run sat in a JSON record: a Parquet row has its row number
        aggregates = theirs["langsmith"].get("aggregate_usage")
        if aggregates:  # the JSON reader keeps LangSmith's Decimal text; Parquet gives numbers
            theirs["langsmith"]["aggregate_usage"] = {k: float(v) if isinstance(v, str) else v
                                                      for k, v in aggregates.items()}
        assert ours == theirs, span_id


def test_a_wrapped_llm_run_and_its_child_are_priced_once() -> None:
    valid, _ = checked()
    priced = price_spans(valid.reset_index(drop=True), CostSettings()).set_index("span_id")
    assert priced.at[OUTER, "cost_status"] == "rollup" and not priced.at[OUTER, "billable"]
    assert priced.at[INNER, "billable"] and priced.at[INNER, "cost_status"] == "priced"
    assert priced.at[ROOT, "cost_status"] == "not_billable"
    # Both model spans carry the call's tokens, but only one of them is summed.
    billable_inputs = priced.loc[priced["billable"] & (priced["trace_id"] == OUTER), "input_tokens"]
    assert billable_inputs.sum() == 300


def test_window_keeps_the_runs_that_start_in_it_and_skips_row_groups() -> None:
    result = read("runs_v1.parquet", (DAY.replace(hour=10), DAY.replace(hour=11)))
    assert list(result.rows["span_id"]) == [OUTER, INNER]
    assert list(result.rows["source_line"]) == [4, 5]  # row numbers of the file, not of the window
    assert (result.records_read, result.rows_in_file, result.row_groups_read, result.row_groups_skipped) == (
        2, 11, 1, 2)
    # A window inside a row group's time range filters within it.
    inside = read("runs_v1.parquet", (DAY.replace(hour=9, minute=15, second=0, microsecond=5000),
                                      DAY.replace(hour=10)))
    assert list(inside.rows["span_id"]) == [RETRIEVER, LLM]
    empty = read("runs_v1.parquet", (DAY.replace(hour=3), DAY.replace(hour=4)))
    assert empty.rows is None and empty.row_groups_read == 0 and empty.row_groups_skipped == 3


def test_rows_without_a_start_time_belong_to_one_window_only(tmp_path: Path) -> None:
    table = pq.read_table(FIXTURES / "runs_v1.parquet").slice(5, 2)
    index = table.schema.get_field_index("start_time")
    starts = table.column("start_time").to_pylist()
    table = table.set_column(index, "start_time", pa.array([None, starts[1]], pa.timestamp("ns")))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    window = (HOUR14, HOUR14.replace(hour=15))
    buffer.seek(0)
    kept = langsmith_bulk.read_stream(buffer, "undated.parquet", window, keep_undated=True)
    buffer.seek(0)
    dropped = langsmith_bulk.read_stream(buffer, "undated.parquet", window, keep_undated=False)
    assert list(kept.rows["source_line"]) == [1, 2] and list(dropped.rows["source_line"]) == [2]
    folder = tmp_path / "2026/12/07/14"
    folder.mkdir(parents=True)
    (folder / "undated.parquet").write_bytes(buffer.getvalue())
    first = ingest_files([folder / "undated.parquet"], HOUR14, tmp_path, window=window, keep_undated=True)
    other = ingest_files([folder / "undated.parquet"], HOUR14, tmp_path, window=window, keep_undated=False)
    assert list(first.quarantined["reason"]) == ["missing_required_field"] and other.quarantined.empty
    assert len(first.spans) == len(other.spans) == 1


@pytest.mark.parametrize("name", ["truncated.parquet", "not_parquet.parquet"])
def test_a_file_that_is_not_readable_parquet_raises_naming_it(name: str) -> None:
    with pytest.raises(UnreadableFile, match=rf"^{name}: not a readable Parquet file"):
        read(name)


@pytest.mark.parametrize("name", ["truncated.parquet", "not_parquet.parquet"])
def test_an_unreadable_parquet_landing_file_becomes_a_reject(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    result = read_file(path, name)
    assert result.rows is None and result.source_format is None and result.records_read == 0
    assert [r.reason for r in result.rejects] == ["unreadable_file"]
    assert "not a readable Parquet file" in result.rejects[0].detail and name in result.file_error


def test_parquet_without_run_columns_is_an_unknown_format_naming_its_columns() -> None:
    result = read("wrong_schema.parquet")
    assert result.rows is None and [r.reason for r in result.rejects] == ["unknown_format"]
    assert "no column 'id', 'run_type' (columns: trace_id, score)" in result.rejects[0].detail


def test_an_empty_export_has_no_rows_and_no_rejects() -> None:
    result = read("empty.parquet")
    assert result.rows is None and result.rejects == [] and result.records_read == 0


def test_bad_rows_are_quarantined_with_file_row_and_raw_record(tmp_path: Path) -> None:
    folder = tmp_path / "2026" / "12" / "07" / "14"
    folder.mkdir(parents=True)
    for name in ("runs_v1.parquet", "empty.parquet", "wrong_schema.parquet", "not_parquet.parquet"):
        shutil.copy(FIXTURES / name, folder / name)
    result = ingest_files(sorted(folder.iterdir()), HOUR14, tmp_path,
                          window=(HOUR14, HOUR14.replace(hour=15)))
    quarantine = result.quarantined.set_index(["source_file", "source_line"])
    runs = "2026/12/07/14/runs_v1.parquet"
    assert quarantine.loc[(runs, 8), "reason"] == "missing_required_field"
    assert quarantine.loc[(runs, 8), "detail"] == f"{runs}:8: required field 'span_id' is missing or empty"
    assert quarantine.loc[(runs, 9), "detail"] == f"{runs}:9: field 'input_tokens' is -5, below 0"
    assert quarantine.loc[(runs, 10), "reason"] == "end_before_start"
    assert quarantine.loc[(runs, 11), "detail"] == f"{runs}:11: field 'reported_cost_usd' must be a number, got 'n/a'"
    raw = json.loads(quarantine.loc[(runs, 11), "raw"])
    assert raw["name"] == "bad_bad_cost" and raw["total_cost"] == "n/a"
    assert raw["start_time"] == "2026-12-07T14:30:02.300000"
    assert sorted(result.spans["span_id"]) == [TOOL, EMBEDDING]
    assert set(result.spans["source_format"]) == {"langsmith_bulk"}
    audit = result.audit.set_index("source_file")
    assert (audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]).all()
    assert audit.loc[runs, ["records_read", "spans_written", "spans_quarantined", "late_spans"]].tolist() == [
        6, 2, 4, 0]
    assert audit.loc["2026/12/07/14/wrong_schema.parquet", "quarantined_by_reason"] == '{"unknown_format":1}'
    assert audit.loc["2026/12/07/14/not_parquet.parquet", "quarantined_by_reason"] == '{"unreadable_file":1}'
    assert pd.isna(audit.loc["2026/12/07/14/not_parquet.parquet", "source_format"])
    assert audit.loc["2026/12/07/14/empty.parquet", "spans_found"] == 0
    assert result.unreadable_files == ["2026/12/07/14/not_parquet.parquet", "2026/12/07/14/wrong_schema.parquet"]


def test_other_column_spellings_uuid_bytes_and_text_times() -> None:
    import uuid

    run_id = uuid.UUID(LLM)
    table = pa.table({
        "id": pa.array([run_id.bytes, None], pa.binary(16)),
        "run_type": ["llm", "reranker_step"], "name": ["ChatOpenAI", "rerank_docs"],
        "start_time": ["2026-12-07T14:00:00Z", "2026-12-07T14:00:01+00:00"],
        "end_time": ["2026-12-07T14:00:01.5Z", None],
        "total_cost": pa.array([0.5, None], pa.float64()),
        "prompt_tokens": pa.array([10, None], pa.int32()),
    })
    rows = langsmith_bulk.map_runs(table, [1, 2])
    assert rows["span_id"].tolist() == [LLM, None]
    assert rows["trace_id"].iloc[0] == LLM  # a root run without trace id or dotted order is its own trace
    assert rows["kind"].tolist() == ["llm", "rerank"]  # an unknown run type lets the name say rerank
    assert rows["latency_ms"].iloc[0] == 1500.0 and pd.isna(rows["latency_ms"].iloc[1])
    assert (rows["input_tokens"].iloc[0], rows["reported_cost_usd"].iloc[0]) == (10, 0.5)
    assert pd.isna(rows["total_tokens"].iloc[0])  # as the JSON reader: a total only from both counts


def test_detection_by_magic_or_name() -> None:
    assert detect.detect_file_reader("runs.parquet", b"") is langsmith_bulk
    assert detect.detect_file_reader("export.bin", b"PAR1") is langsmith_bulk
    assert detect.detect_file_reader("spans.jsonl", b'{"tr') is None
    assert detect.reader_for("langsmith_bulk") is langsmith_bulk
    assert is_landing_file(Path("2026/12/07/14/part-0.parquet")) and not is_landing_file(Path(".part.parquet"))
    assert not langsmith_bulk.matches({"id": "x", "run_type": "llm"})  # JSON runs stay the JSON reader's


def test_text_start_times_are_filtered_but_never_pruned_by_their_string_order() -> None:
    table = pq.read_table(FIXTURES / "runs_v1.parquet").slice(3, 4)  # hours 10 and 14
    index = table.schema.get_field_index("start_time")
    # 10:05+05:00 is 05:05 UTC, and sorts after "2026-12-07T05" as text
    texts = ["2026-12-07T10:05:00+05:00", "2026-12-07T10:05:00.005Z", "2026-12-07T14:30:00Z", "not a time"]
    table = table.set_column(index, "start_time", pa.array(texts))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=2)
    buffer.seek(0)
    result = langsmith_bulk.read_stream(buffer, "text.parquet", (DAY.replace(hour=5), DAY.replace(hour=6)),
                                        keep_undated=False)
    assert result.row_groups_skipped == 0 and list(result.rows["source_line"]) == [1]


def test_a_row_group_that_cannot_be_decoded_is_reported_and_the_others_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pq.ParquetFile.read_row_group

    def broken(self: pq.ParquetFile, group: int, *args: object, **kwargs: object) -> pa.Table:
        if group == 1:
            raise OSError("Corrupt snappy compressed data.")
        return original(self, group, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", broken)
    result = read("runs_v1.parquet")
    assert list(result.rows["source_line"]) == [1, 2, 3, 6, 7, 8, 9, 10, 11]
    assert [(r.reason, r.number) for r in result.rejects] == [("unreadable_file", 4)]
    assert result.rejects[0].detail == "row group 1 (rows 4-5) cannot be read: Corrupt snappy compressed data."
    assert result.file_error == result.rejects[0].detail
