"""The backfill benchmark runs end to end at a tiny scale and reports every figure (no timing assertions);
its partition and URL helpers are checked on their own."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from benchmarks.backfill import broker_error, partition_keys, report, split_ranges, with_database
from tests.conftest import _service_unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_partition_keys_follow_the_hourly_partition_format_across_midnight() -> None:
    keys = partition_keys(datetime(2026, 10, 1, 22, tzinfo=UTC), 3)
    assert keys == ["2026-10-01-22:00", "2026-10-01-23:00", "2026-10-02-00:00"]


def test_ranges_cover_every_partition_once_in_order() -> None:
    keys = partition_keys(datetime(2026, 10, 1, tzinfo=UTC), 24)
    assert split_ranges(keys, 12) == [(keys[0], keys[11]), (keys[12], keys[23])]
    assert split_ranges(keys, 5)[-1] == (keys[20], keys[23])
    assert split_ranges(keys[:1], 4) == [(keys[0], keys[0])]
    assert len(split_ranges(keys, 1)) == 24
    with pytest.raises(ValueError, match="at least 1"):
        split_ranges(keys, 0)


def test_with_database_keeps_credentials_host_and_options() -> None:
    url = "postgresql://u:p@db.internal:5433/test?sslmode=require"
    assert with_database(url, "other") == "postgresql://u:p@db.internal:5433/other?sslmode=require"


def test_unreachable_broker_is_reported_without_its_password() -> None:
    problem = broker_error("pyamqp://guest:hunter2@127.0.0.1:1//")
    assert problem is not None and "127.0.0.1:1" in problem and "hunter2" not in problem


@pytest.mark.slow
@pytest.mark.postgres
def test_benchmark_times_all_three_modes_and_leaves_nothing_behind(tmp_path: Path, postgres_url: str) -> None:
    problem = broker_error()
    if problem:
        _service_unavailable(problem)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.backfill", "--spans-per-hour", "40", "--hours", "2",
         "--partitions-per-run", "2", "--workdir", str(tmp_path), "--postgres-url", postgres_url, "--json"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["spans"] == 80 and figures["runs"] == 1
    for mode, runs in (("loop", 2), ("multiprocess", 1), ("celery", 1)):
        m = figures["modes"][mode]
        assert m["seconds"] > 0 and m["spans_per_s"] > 0 and m["speedup_vs_loop"] > 0, mode
        assert m["runs"] == runs, mode  # the loop runs each partition alone; (a) and (b) one 2-hour run
        assert m["rows"]["spans"] == 80 and m["rows"]["priced_spans"] == 80, mode
        assert set(m["steps"]) == {"ingest_export_hours", "priced_spans", "hourly_costs"}, mode
        assert all(step["seconds"] > 0 for step in m["steps"].values()), mode
    assert figures["modes"]["loop"]["speedup_vs_loop"] == 1.0
    text = report(figures)
    for label in ("(c) one process", "(a) multiprocess executor", "(b) Celery, 2 workers", "spans/s",
                  "vs (c)", "identical in every mode", "under 5 minutes on 2 cores", "write outputs"):
        assert label in text
    assert not (tmp_path / "landing").exists()
    connection = psycopg2.connect(postgres_url, connect_timeout=3)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)",
                           [list(figures["schemas"].values())])
            schemas = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [figures["instance_database"]])
            databases = cursor.fetchone()[0]
    finally:
        connection.close()
    assert (schemas, databases) == (0, 0)  # the warehouse schemas and the instance database were dropped
