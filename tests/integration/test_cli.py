"""The `aiobs` console script, run as a user runs it: inspect, generate, trace show."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import instance_for_test, materialize

from aiobs_pipeline.defs.costs import priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.ingest.partition import landing_folder
from aiobs_pipeline.warehouse import warehouse_io_manager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AIOBS = str(Path(sys.executable).parent / "aiobs")


def aiobs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOBS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_inspect_reports_format_counts_and_quarantine(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    good = {"span_id": "a", "trace_id": "t", "name": "chat", "start_time": "2026-10-01T10:00:00Z",
            "model": "gpt-4o", "messages": [], "response": "hi",
            "usage": {"prompt_tokens": 12, "completion_tokens": 4}, "metadata": {"user_id": "alice"}}
    export.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "span_id": "b", "latency_ms": -1}) + "\n")
    result = aiobs("inspect", str(export))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "format:        native" in out
    assert "LLM calls:     1 (12 input tokens, 4 output tokens)" in out
    assert "alice" in out
    assert "invalid_json: 1" in out and "negative_value: 1" in out
    assert "export.jsonl:3: field 'latency_ms' is -1, below 0" in out


def test_inspect_json_on_real_samples_of_every_format(tmp_path: Path) -> None:
    files = [
        FIXTURES / "otlp" / "pydantic_ai_tools.otlp.jsonl",
        FIXTURES / "openinference" / "openinference_spec_examples.json",
        FIXTURES / "langfuse" / "langgraph-python-2025-08-22.trace.json",
        FIXTURES / "langsmith" / "langsmith_py_wrap_openai_stream.json",
    ]
    result = aiobs("inspect", "--json", *map(str, files))
    assert result.returncode == 0, result.stderr
    summaries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["format"] for s in summaries] == ["otlp", "openinference", "langfuse", "langsmith"]
    for summary in summaries:
        assert {"file", "format", "spans", "spans_by_kind", "llm_spans", "input_tokens", "output_tokens",
                "quarantined", "reasons"} <= set(summary)
        assert summary["spans"] > 0 and summary["llm_spans"] > 0 and summary["input_tokens"] > 0
        assert sum(summary["spans_by_kind"].values()) == summary["spans"]


def test_inspect_exits_non_zero_only_for_unreadable_files(tmp_path: Path) -> None:
    fake = tmp_path / "export.jsonl.gz"
    fake.write_bytes(b"this is not gzip")
    unknown = tmp_path / "other.jsonl"
    unknown.write_text('{"hello": "world"}\n')
    result = aiobs("inspect", "--json", str(unknown), str(fake), str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    by_file = {Path(s["file"]).name: s for s in map(json.loads, result.stdout.splitlines())}
    assert by_file["other.jsonl"]["reasons"] == {"unknown_format": 1}
    assert by_file["export.jsonl.gz"]["readable"] is False
    assert "not gzip" in by_file["export.jsonl.gz"]["error"]
    assert by_file["missing.jsonl"]["error"] == "file does not exist"
    assert aiobs("inspect", str(unknown)).returncode == 0


def embedding_span(span_id: str, usage: dict[str, int]) -> dict[str, object]:
    return {"span_id": span_id, "trace_id": "t-emb", "name": "embed", "kind": "embedding",
            "start_time": "2026-12-07T14:00:00Z", "end_time": "2026-12-07T14:00:00.120Z",
            "model": "text-embedding-3-small", "input": ["refund window"], "usage": usage}


def test_inspect_totals_embedding_tokens_apart_from_llm_tokens(tmp_path: Path) -> None:
    export = tmp_path / "embeddings.jsonl"
    export.write_text(json.dumps(embedding_span("e1", {"prompt_tokens": 8, "total_tokens": 8})) + "\n"
                      + json.dumps(embedding_span("e2", {"total_tokens": 5})) + "\n")  # a total only
    text = aiobs("inspect", str(export))
    assert text.returncode == 0, text.stderr
    assert "LLM calls:     0 (0 input tokens, 0 output tokens)" in text.stdout
    assert "embeddings:    2 (13 input tokens)" in text.stdout
    (summary,) = map(json.loads, aiobs("inspect", "--json", str(export)).stdout.splitlines())
    assert (summary["llm_spans"], summary["input_tokens"]) == (0, 0)
    assert (summary["embedding_spans"], summary["embedding_tokens"]) == (2, 13)
    (mixed,) = map(json.loads, aiobs("inspect", "--json", str(FIXTURES / "langsmith" /
                                                              "langsmith_py_wrap_openai_stream.json")).stdout.splitlines())
    assert (mixed["input_tokens"], mixed["embedding_spans"], mixed["embedding_tokens"]) == (9, 0, 0)


def test_inspect_rows_prints_canonical_spans_and_quarantined_records(tmp_path: Path) -> None:
    from aiobs_pipeline.schema import QUARANTINE_COLUMN_NAMES, SPAN_COLUMN_NAMES  # noqa: PLC0415

    folder = landing_folder(tmp_path, datetime(2026, 12, 7, 14, tzinfo=UTC))
    folder.mkdir(parents=True)
    batch = json.loads((FIXTURES / "langsmith" / "langsmith_js_batch_no_patch_id.json").read_text())
    (folder / "a_post.json").write_text(json.dumps({"post": batch["post"]}))
    (folder / "b_patch.json").write_text(json.dumps({"patch": batch["patch"]}))  # the hour's other file
    (folder / "embeddings.jsonl").write_text(
        json.dumps(embedding_span("e1", {"prompt_tokens": 8, "total_tokens": 8})) + "\n{oops\n"
        + json.dumps({**embedding_span("e2", {"prompt_tokens": 3}), "latency_ms": -4}) + "\n")
    result = aiobs("inspect", "--rows", *sorted(str(f) for f in folder.iterdir()))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(list(row) == list(SPAN_COLUMN_NAMES) for row in rows)
    by_id = {row["span_id"]: row for row in rows}
    assert set(by_id) == {"01a250d2-a719-7000-ba1f-9c2b77d40e51", "01a250d2-a751-7001-91c0-2e8a9b1366f7", "e1"}
    llm = by_id["01a250d2-a751-7001-91c0-2e8a9b1366f7"]
    # The patch in b_patch.json (no id: matched by dotted_order) completed the run posted in a_post.json.
    assert llm["source_file"] == "2026/12/07/14/a_post.json" and llm["source_format"] == "langsmith"
    assert (llm["start_time"], llm["end_time"]) == ("2026-12-07T14:05:12.401002+00:00",
                                                    "2026-12-07T14:05:13.295000+00:00")
    assert llm["export_hour"] == "2026-12-07T14:00:00+00:00"
    assert llm["latency_ms"] == pytest.approx(893.998) and llm["time_to_first_token_ms"] == pytest.approx(611.998)
    assert (llm["input_tokens"], llm["output_tokens"], llm["max_tokens"]) == (31, 13, None)
    assert llm["input_messages"][1] == {"role": "user", "content": "What is the refund window for annual plans?"}
    assert llm["metadata"]["langsmith"]["patch_matched_by"] == "dotted_order"  # nested values as JSON, not text
    assert by_id["e1"]["kind"] == "embedding" and by_id["e1"]["input_tokens"] == 8

    quarantined = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert all(list(q) == list(QUARANTINE_COLUMN_NAMES) for q in quarantined)
    assert [(q["source_file"], q["source_line"], q["reason"]) for q in quarantined] == [
        ("2026/12/07/14/embeddings.jsonl", 2, "invalid_json"), ("2026/12/07/14/embeddings.jsonl", 3, "negative_value")]
    assert quarantined[1]["detail"] == "2026/12/07/14/embeddings.jsonl:3: field 'latency_ms' is -4, below 0"
    assert quarantined[0]["raw"] == "{oops"


def test_inspect_rows_on_bad_files(tmp_path: Path) -> None:
    fake = tmp_path / "export.jsonl.gz"
    fake.write_bytes(b"this is not gzip")
    result = aiobs("inspect", "--rows", str(fake), str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1 and result.stdout == ""
    errors = result.stderr.splitlines()
    assert f"aiobs inspect: {tmp_path / 'missing.jsonl'}: file does not exist" in errors
    (record,) = [json.loads(line) for line in errors if line.startswith("{")]
    assert (record["source_file"], record["reason"]) == ("export.jsonl.gz", "unreadable_file")
    assert "not gzip" in record["detail"]
    both = aiobs("inspect", "--rows", "--json", str(fake))
    assert both.returncode == 2 and "give --rows or --json, not both" in both.stderr


def test_generate_writes_every_format(tmp_path: Path) -> None:
    result = aiobs("generate", "--landing", str(tmp_path / "landing"), "--start", "2026-10-01T10:00:00Z",
                   "--end", "2026-10-01T12:00:00Z", "--scale", "0.3", "--no-incidents")
    assert result.returncode == 0, result.stderr
    names = {p.name.split(".")[0].split("-")[0] for p in (tmp_path / "landing").rglob("*.json*")}
    assert names, "no files written"
    bad = aiobs("generate", "--start", "2026-10-01T12:00:00Z", "--end", "2026-10-01T10:00:00Z")
    assert bad.returncode == 2 and "not after" in bad.stderr


@pytest.fixture(scope="module")
def priced_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with an aiobs.toml and a DuckDB warehouse holding one priced RAG trace."""
    root = tmp_path_factory.mktemp("project")
    hour = datetime(2026, 10, 1, 10, tzinfo=UTC)
    start = hour + timedelta(minutes=5)

    def at(ms: int) -> str:
        return (start + timedelta(milliseconds=ms)).isoformat()

    spans = [
        {"span_id": "root", "trace_id": "abc123", "name": "rag_query", "kind": "chain",
         "start_time": at(0), "end_time": at(2250)},
        {"span_id": "e", "parent_span_id": "root", "trace_id": "abc123", "name": "embedding", "kind": "embedding",
         "start_time": at(0), "end_time": at(50), "model": "text-embedding-3-small", "provider": "openai",
         "usage": {"prompt_tokens": 5000, "completion_tokens": 0}},
        {"span_id": "v", "parent_span_id": "root", "trace_id": "abc123", "name": "vector_search",
         "start_time": at(50), "end_time": at(170)},
        {"span_id": "g", "parent_span_id": "root", "trace_id": "abc123", "name": "llm_generation", "kind": "llm",
         "start_time": at(250), "end_time": at(2250), "model": "gpt-4o", "provider": "openai",
         "messages": [{"role": "user", "content": "q"}], "response": "a",
         "usage": {"prompt_tokens": 10000, "completion_tokens": 3500}},
    ]
    folder = landing_folder(root / "var" / "landing", hour)
    folder.mkdir(parents=True)
    (folder / "trace.jsonl").write_text("\n".join(json.dumps(s) for s in spans) + "\n")
    (root / "aiobs.toml").write_text('[paths]\nlanding_root = "var/landing"\n'
                                     '[warehouse]\nduckdb_path = "var/warehouse.duckdb"\n')
    resources = {"aiobs": AiobsSettings(config_file=str(root / "aiobs.toml")),
                 "warehouse": warehouse_io_manager("duckdb", duckdb_path=str(root / "var" / "warehouse.duckdb"),
                                                   schema="aiobs")}
    with instance_for_test() as instance:
        assert materialize([ingest_export_hours, priced_spans], resources=resources, instance=instance,
                           partition_key=f"{hour:%Y-%m-%d-%H:%M}").success
    return root


def test_trace_show_prints_the_tree_with_totals(priced_warehouse: Path) -> None:
    result = aiobs("trace", "show", "abc123", cwd=priced_warehouse)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Trace: abc123"
    assert any("embedding" in line and "50ms" in line and "$0.0001" in line for line in lines)
    assert any("llm_generation" in line and "2000ms" in line and "$0.06" in line for line in lines)
    assert any(line.lstrip("│ ").startswith("└─") for line in lines)
    # Total latency is the root's wall-clock time; total cost is gpt-4o ($0.025 + $0.035) + embedding.
    assert lines[-1] == "Total: 2250ms, $0.0601"


def test_trace_show_json_and_unknown_ids(priced_warehouse: Path) -> None:
    result = aiobs("trace", "show", "abc123", "--json", cwd=priced_warehouse)
    assert result.returncode == 0, result.stderr
    tree = json.loads(result.stdout)
    assert tree["trace_id"] == "abc123"
    assert tree["total_latency_ms"] == pytest.approx(2250.0)
    assert tree["total_cost_usd"] == pytest.approx(0.0601)
    [root] = tree["children"]
    assert root["name"] == "rag_query"
    assert [c["name"] for c in root["children"]] == ["embedding", "vector_search", "llm_generation"]
    assert root["children"][2]["cost_usd"] == pytest.approx(0.06)
    missing = aiobs("trace", "show", "nope", cwd=priced_warehouse)
    assert missing.returncode == 1 and "trace 'nope' not found" in missing.stderr
