"""Retention as plain functions: cutoffs, partition bounds, warehouse rows (DuckDB file), landing folders,
alert history, the retention_log and the settings' validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from pydantic import ValidationError

from aiobs_pipeline.alerting.rules import Observation
from aiobs_pipeline.alerting.state import AlertStore
from aiobs_pipeline.governance.retention import (
    cutoff_for,
    delete_old_landing,
    enforce_retention,
    hour_folders,
    markdown,
    null_old_content,
    partition_bound,
    record_retention,
)
from aiobs_pipeline.governance.settings import GovernanceSettings
from aiobs_pipeline.governance.store import open_warehouse
from aiobs_pipeline.settings import load_settings

NOW = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)


def _warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    hours = pd.to_datetime(["2026-01-01T05:00Z", "2026-05-10T00:00Z", "2026-06-14T23:00Z"], utc=True)
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        session.append("spans", pd.DataFrame({
            "trace_id": ["t1", "t2", "t3"], "span_id": ["s1", "s2", "s3"], "name": ["a", "b", "c"],
            "kind": ["llm"] * 3, "start_time": hours, "status": ["ok"] * 3, "output_text": ["x", "y", "z"],
            "input_messages": ['[{"role":"user","content":"hi"}]'] * 3, "input_tokens": [1, 2, 3],
            "source_format": ["native"] * 3, "source_file": ["f"] * 3, "source_line": [1, 2, 3],
            "export_hour": hours, "schema_version": [1] * 3}))
        session.append("satisfaction_scores", pd.DataFrame({
            "day": pd.to_datetime(["2026-01-01", "2026-05-10", "2026-05-11"]), "span_id": ["s1", "s2", "s3"],
            "satisfaction": [0.1, 0.2, 0.3]}))
        session.append("daily_costs", pd.DataFrame({"day": pd.to_datetime(["2020-01-01"]), "cost_usd": [1.0]}))
        session.append("mystery", pd.DataFrame({"export_hour": hours, "x": [1, 2, 3]}))
    return path


def _settings(tmp_path: Path, **governance: object):
    return load_settings(None, base_dir=tmp_path, paths={"landing_root": tmp_path / "landing",
                                                         "feedback_root": tmp_path / "feedback"},
                         warehouse={"duckdb_path": tmp_path / "warehouse.duckdb"},
                         alerts={"state_path": tmp_path / "alerts.sqlite"}, governance=governance)


def test_cutoff_and_partition_bounds() -> None:
    cutoff = cutoff_for(NOW, 10)
    assert cutoff == datetime(2026, 6, 5, 12, tzinfo=UTC)
    assert cutoff_for(NOW, None) is None
    assert partition_bound(cutoff, "hour") == cutoff
    assert partition_bound(cutoff, "day") == datetime(2026, 6, 5, tzinfo=UTC)
    assert partition_bound(cutoff, "month") == datetime(2026, 6, 1, tzinfo=UTC)
    naive = cutoff_for(datetime(2026, 6, 15, 12), 1)
    assert naive is not None and naive.tzinfo is UTC


def test_default_periods_keep_the_demo_window() -> None:
    defaults = GovernanceSettings()
    periods = [defaults.landing_days, defaults.spans_days, defaults.span_content_days, defaults.quarantine_days,
               defaults.feedback_days, defaults.feedback_landing_days, defaults.llm_check_spans_days,
               defaults.alert_history_days]
    # The demo data is at most 39 days old (8 days at the end of the previous month) when the demo runs.
    assert min(p for p in periods if p is not None) > 39
    assert defaults.aggregates_days is None


def test_forever_is_written_as_a_word(tmp_path: Path) -> None:
    config = tmp_path / "aiobs.toml"
    config.write_text('[governance]\nlanding_days = "forever"\nspans_days = "never"\nspan_content_days = 30\n')
    settings = load_settings(config)
    assert settings.governance.landing_days is None and settings.governance.spans_days is None
    assert settings.governance.span_content_days == 30


@pytest.mark.parametrize(("values", "message"), [
    ({"span_content_days": 500, "spans_days": 400}, "must not exceed governance.spans_days"),
    ({"landing_days": 0}, "greater than or equal to 1"),
    ({"retention_schedule": "daily"}, "five-field cron"),
    ({"landing_dayz": 3}, "Extra inputs are not permitted"),
])
def test_settings_reject_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GovernanceSettings(**values)


def test_enforce_retention_on_warehouse_rows(tmp_path: Path) -> None:
    path = _warehouse(tmp_path)
    settings = _settings(tmp_path, span_content_days=30, spans_days=100, feedback_days=35, landing_days=None,
                         feedback_landing_days=None, alert_history_days=None)
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        dry = enforce_retention(settings, session, NOW, dry_run=True)
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        assert len(session.query('SELECT * FROM "aiobs"."spans"')) == 3  # the dry run changed nothing
        records = enforce_retention(settings, session, NOW)
        record_retention(session, records, NOW, "run-1")
    assert [(r.target, r.action, r.rows) for r in dry] == [(r.target, r.action, r.rows) for r in records]
    by = {(r.target, r.action): r for r in records}
    assert by[("spans", "null_content")].rows == 2  # January and May rows lose their content
    assert by[("spans", "delete_rows")].rows == 1  # January is older than 100 days
    # Days end at midnight: 2026-05-10 is more than 35 days before the cutoff day, 2026-05-11 is not.
    assert by[("satisfaction_scores", "delete_rows")].rows == 2
    assert ("daily_costs", "delete_rows") not in by  # aggregates_days None: kept forever
    assert not any(r.target == "mystery" for r in records)  # tables without a rule are left alone
    with duckdb.connect(str(path), read_only=True) as connection:
        rows = connection.execute('SELECT span_id, output_text, input_messages, input_tokens FROM aiobs.spans '
                                  'ORDER BY span_id').fetchall()
        log = connection.execute("SELECT run_id, target, action, rows FROM aiobs.retention_log").fetchall()
        kept = connection.execute("SELECT day FROM aiobs.satisfaction_scores").fetchall()
    assert rows == [("s2", None, None, 2), ("s3", "z", '[{"content":"hi","role":"user"}]', 3)]
    assert ("run-1", "spans", "delete_rows", 1) in log and len(log) == len(records)
    assert [k[0].date().isoformat() for k in kept] == ["2026-05-11"]
    assert "| spans | delete_rows | spans_days |" in markdown(records)


def _retire_documents(session) -> list[tuple[str, object]]:
    hours = pd.to_datetime(["2026-01-01T05:00Z", "2026-01-01T05:00Z", "2026-01-01T05:00Z", "2026-06-14T23:00Z"],
                           utc=True)
    documents = ['[{"id":"d1","text":"secret","score":0.9,"rank":1,"title":"t"},{"id":"d2","text":"x"}]',
                 '{"not":"a list"}', None, '[{"id":"d3","text":"recent","score":0.5,"rank":1}]']
    session.append("spans", pd.DataFrame({
        "trace_id": ["t"] * 4, "span_id": ["s1", "s2", "s3", "s4"], "name": ["search"] * 4,
        "kind": ["retrieval"] * 4, "start_time": hours, "status": ["ok"] * 4, "documents": documents,
        "source_format": ["native"] * 4, "source_file": ["f"] * 4, "source_line": [1, 2, 3, 4],
        "export_hour": hours, "schema_version": [1] * 4}))
    cutoff = datetime(2026, 5, 1, tzinfo=UTC)
    dry = null_old_content(session, "spans", cutoff, dry_run=True)
    first = null_old_content(session, "spans", cutoff)
    again = null_old_content(session, "spans", cutoff)
    assert dry is not None and first is not None and again is not None
    assert (dry.rows, first.rows, again.rows) == (2, 2, 0)  # s3 holds nothing; a second run finds nothing left
    assert "documents reduced to id, score, rank" in first.detail
    text = "CAST(documents AS VARCHAR)" if session.dialect == "duckdb" else "documents::text"
    rows = session.query(f"SELECT span_id, {text} FROM {session.name('spans')} ORDER BY span_id")
    return [(span, json.loads(value) if value is not None else None) for span, value in rows]


def test_content_retention_keeps_document_ids_and_scores(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        assert _retire_documents(session) == EXPECTED_DOCUMENTS


def test_content_retention_keeps_document_ids_and_scores_on_postgres(postgres_url: str,
                                                                      postgres_schema: str) -> None:
    with open_warehouse("postgres", postgres_url=postgres_url, schema=postgres_schema) as session:
        assert _retire_documents(session) == EXPECTED_DOCUMENTS


EXPECTED_DOCUMENTS = [
    ("s1", [{"id": "d1", "score": 0.9, "rank": 1}, {"id": "d2", "score": None, "rank": None}]),
    ("s2", None), ("s3", None),
    ("s4", [{"id": "d3", "text": "recent", "score": 0.5, "rank": 1}]),
]


def test_landing_folders_by_hour(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    for hour in ("2026/06/01/23", "2026/06/02/00", "2026/06/14/10"):
        folder = root / hour
        folder.mkdir(parents=True)
        (folder / "native.jsonl").write_bytes(b"{}\n" * 10)
    (root / "2026" / "02" / "30" / "01").mkdir(parents=True)  # not a real hour: never ours to delete
    (root / "notes").mkdir()
    assert [h.isoformat() for h, _ in hour_folders(root)] == [
        "2026-06-01T23:00:00+00:00", "2026-06-02T00:00:00+00:00", "2026-06-14T10:00:00+00:00"]
    cutoff = datetime(2026, 6, 2, 0, tzinfo=UTC)
    dry = delete_old_landing(root, "landing_days", cutoff, dry_run=True)
    assert dry.files == 1 and (root / "2026/06/01/23").exists()
    record = delete_old_landing(root, "landing_days", cutoff)
    assert (record.files, record.bytes) == (1, 30)
    assert not (root / "2026/06/01").exists() and (root / "2026/06/02/00").exists()
    assert (root / "2026/02/30/01").exists() and (root / "notes").exists()
    assert delete_old_landing(tmp_path / "missing", "landing_days", cutoff).files == 0


def test_alert_history_is_pruned(tmp_path: Path) -> None:
    path = _warehouse(tmp_path)
    settings = _settings(tmp_path, alert_history_days=30, spans_days=None, span_content_days=None,
                         feedback_days=None, landing_days=None, feedback_landing_days=None, quarantine_days=None)
    old, recent = NOW - timedelta(days=60), NOW - timedelta(days=1)
    with AlertStore.from_settings(settings) as store:
        for key_subject, hour, status in (("u1", old, "firing"), ("u1", old + timedelta(hours=1), "ok"),
                                          ("u2", recent, "firing")):
            store.apply([Observation(rule="budget", scope="user", subject=key_subject, status=status,
                                     severity="warning", hour=hour, value=6.0, threshold=5.0, summary="s")],
                        now=hour)
    with open_warehouse("duckdb", duckdb_path=path, schema="aiobs") as session:
        records = enforce_retention(settings, session, NOW)
    alert = next(r for r in records if r.action == "delete_alert_history")
    assert alert.rows >= 2
    with AlertStore.from_settings(settings) as store:
        left = {a.key for a in store.list_alerts()}
    assert left == {"budget:user:u2"}
