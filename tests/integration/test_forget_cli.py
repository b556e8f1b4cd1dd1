"""`aiobs forget --user ID` as a user runs it: a small pipeline (ingest, feedback, costs) on generated exports in
every format, then the user is forgotten; no trace of them remains in the warehouse or the landing files,
other users are untouched, and re-ingesting the landing files does not bring the user back."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import instance_for_test, materialize

from aiobs_pipeline.defs.costs import hourly_costs, priced_spans
from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.generate import generate
from aiobs_pipeline.warehouse import duckdb_io_manager, read_table
from tests.dagster.conftest import range_tags

AIOBS = str(Path(sys.executable).parent / "aiobs")
START = datetime(2026, 9, 14, 10, tzinfo=UTC)
HOURS = 4


def aiobs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOBS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _tables(db: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute("SELECT table_name, column_name FROM information_schema.columns "
                                  "WHERE table_schema = 'aiobs'").fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def _run_pipeline(root: Path, config: Path, instance) -> None:
    resources = {"aiobs": AiobsSettings(config_file=str(config)),
                 "warehouse": duckdb_io_manager(str(root / "var" / "warehouse.duckdb"), "aiobs")}
    last = START + timedelta(hours=HOURS - 1)
    result = materialize([ingest_export_hours, ingest_feedback_hours, priced_spans, hourly_costs],
                         resources=resources, instance=instance,
                         tags=range_tags(f"{START:%Y-%m-%d-%H:%M}", f"{last:%Y-%m-%d-%H:%M}"))
    assert result.success


def _read(root: Path, table: str):
    return read_table("duckdb", duckdb_path=str(root / "var" / "warehouse.duckdb"), schema="aiobs", table=table)


@pytest.mark.slow
def test_forget_removes_every_trace_of_the_user(tmp_path: Path) -> None:
    with instance_for_test() as instance:
        _forget_scenario(tmp_path, instance)


def _forget_scenario(tmp_path: Path, instance) -> None:
    config = tmp_path / "aiobs.toml"
    config.write_text('[paths]\nlanding_root = "var/landing"\nfeedback_root = "var/feedback"\n'
                      'reports_dir = "var/reports"\ndatasets_dir = "var/datasets"\n'
                      '[warehouse]\nduckdb_path = "var/warehouse.duckdb"\n')
    landing, feedback = tmp_path / "var" / "landing", tmp_path / "var" / "feedback"
    generate(landing, START, START + timedelta(hours=HOURS), seed=11, scale=0.3, incidents=[],
             feedback_root=feedback, inject_bad_records=True)
    _run_pipeline(tmp_path, config, instance)

    spans = _read(tmp_path, "spans")
    events = _read(tmp_path, "feedback_events")
    # The user with feedback and spans in the most formats, so every reader's files are rewritten.
    formats = spans.groupby("user_id")["source_format"].nunique()
    with_feedback = set(events["user_id"].dropna())
    user = max((u for u in formats.index if u in with_feedback), key=lambda u: (formats[u], u))
    assert formats[user] >= 3
    # The injected bad line that is not JSON at all must survive byte for byte.
    bad_file = next(landing.rglob("zz-injected-bad-records-*.jsonl"))
    bad_line = next(line for line in bad_file.read_bytes().split(b"\n") if b"chat_comp" in line and
                    not line.rstrip().endswith(b"}"))
    others_before = Counter(spans.loc[spans["user_id"] != user, "user_id"].dropna())
    user_traces = set(spans.loc[spans["user_id"] == user, "trace_id"])

    dry = aiobs("forget", "--user", user, "--dry-run", "--config", str(config), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and len(_read(tmp_path, "spans")) == len(spans)

    result = aiobs("forget", "--user", user, "--config", str(config), cwd=tmp_path)
    print(result.stdout)  # shown with -s: what a user sees
    assert result.returncode == 0, result.stderr
    assert "forgotten" in result.stdout

    # Warehouse: no row of any table holds the user id or one of their traces.
    db = tmp_path / "var" / "warehouse.duckdb"
    with duckdb.connect(str(db), read_only=True) as connection:
        for table, columns in _tables(db).items():
            if table == "forget_audit":
                continue
            text = " || ' ' || ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '')" for c in columns)
            hits = connection.execute(f"SELECT count(*) FROM aiobs.\"{table}\" WHERE strpos({text}, ?) > 0",
                                      [user]).fetchone()[0]
            assert hits == 0, f"{table} still mentions {user}"
    after = _read(tmp_path, "spans")
    assert not set(after["trace_id"]) & user_traces
    assert Counter(after["user_id"].dropna()) == others_before

    # Landing and feedback files: no byte of the user id left; the unreadable line is still there.
    for path in [*landing.rglob("*"), *feedback.rglob("*")]:
        if path.is_file():
            assert user.encode() not in _bytes(path), f"{path} still holds {user}"
    assert bad_line in bad_file.read_bytes()

    # Audit: the table and the JSON file list what was removed, without the user id.
    audit = _read(tmp_path, "forget_audit")
    assert set(audit["store"]) >= {"warehouse", "landing", "feedback_landing"}
    assert not audit.astype(str).apply(lambda c: c.str.contains(user, regex=False)).any().any()
    files = list((tmp_path / "var" / "reports" / "governance").glob("forget-*.json"))
    assert len(files) == 1 and user not in files[0].read_text()
    data = json.loads(files[0].read_text())
    assert data["removed"] > 0 and any(i["location"].startswith("spans") for i in data["items"])

    # Re-ingesting every hour from the rewritten files does not bring the user back.
    _run_pipeline(tmp_path, config, instance)
    again = _read(tmp_path, "spans")
    assert user not in set(again["user_id"].dropna())
    assert Counter(again["user_id"].dropna()) == others_before
    assert user not in set(_read(tmp_path, "feedback_events")["user_id"].dropna())

    # Forgetting again finds nothing.
    unknown = aiobs("forget", "--user", user, "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 0 and "nothing found" in unknown.stdout


def test_forget_unreachable_warehouse_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "aiobs.toml"
    config.write_text('[warehouse]\nkind = "postgres"\n')
    env_url = "postgresql://nobody@127.0.0.1:1/none"
    result = subprocess.run([AIOBS, "forget", "--user", "u1", "--config", str(config)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "AIOBS_WAREHOUSE__POSTGRES_URL": env_url})
    assert result.returncode != 0
    assert "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/none" in result.stderr


def test_forget_missing_duckdb_file_fails_clearly(tmp_path: Path) -> None:
    result = aiobs("forget", "--user", "u1", cwd=tmp_path)
    assert result.returncode == 2
    assert "warehouse.duckdb does not exist" in result.stderr
