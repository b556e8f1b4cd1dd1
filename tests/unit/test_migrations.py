"""Warehouse schema versions and migrations (aiobs_pipeline/warehouse/migrations.py) on DuckDB, starting from
tests/fixtures/warehouse_v1.duckdb: the demo warehouse written by the code before schema version 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from aiobs_pipeline.schema import SCHEMA_VERSION
from aiobs_pipeline.settings import load_settings
from aiobs_pipeline.warehouse import WarehouseError, migrate, read_table
from aiobs_pipeline.warehouse.migrations import (
    MIGRATIONS,
    VERSION_TABLE,
    VERSIONED_TABLES,
    AddColumn,
    Migration,
    check_migrations,
    migrate_duckdb,
    table_versions,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "warehouse_v1.duckdb"
SCHEMA = "aiobs"
V2_COLUMNS = {"spans": ["pii_masked"], "quarantined_spans": ["pii_masked"], "quarantined_feedback": ["pii_masked"],
              "ingest_audit": ["pii_masked", "pii_masked_by_pattern"]}
# Version 3 (OTLP/JSON log files): counts that are 0 on older rows, which read no log files.
V3_COLUMNS = {"ingest_audit": ["events_joined", "records_ignored"]}


def tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return [name for (name,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1", [SCHEMA]).fetchall()]


def read(path: Path, table: str) -> pd.DataFrame:
    return read_table("duckdb", duckdb_path=str(path), schema=SCHEMA, table=table)


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A writable copy of the version-1 demo warehouse."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(FIXTURE, path)
    return path


def test_the_fixture_is_a_version_1_warehouse() -> None:
    names = tables(FIXTURE)
    assert VERSION_TABLE not in names and set(VERSIONED_TABLES) <= set(names)
    spans = read(FIXTURE, "spans")
    assert len(spans) > 1000 and set(spans["schema_version"]) == {1} and "pii_masked" not in spans
    assert len(read(FIXTURE, "quarantined_spans")) == 8  # the generator's injected bad records


def test_migrations_lead_from_version_1_to_the_code_version() -> None:
    check_migrations(MIGRATIONS, SCHEMA_VERSION)
    with pytest.raises(WarehouseError, match="needs exactly"):
        check_migrations(MIGRATIONS, SCHEMA_VERSION + 1)


def test_migrating_the_v1_warehouse_keeps_every_row_and_adds_the_later_columns(v1: Path) -> None:
    before = {table: read(FIXTURE, table) for table in tables(FIXTURE)}
    report = migrate_duckdb(str(v1), SCHEMA)

    assert set(report.upgraded) == set(VERSIONED_TABLES) and not report.recorded
    assert all(old == 1 and new == SCHEMA_VERSION for old, new, _ in report.upgraded.values())
    assert report.upgraded["feedback_events"][2] == [f"v{m.version}: {m.description}" for m in MIGRATIONS]
    with duckdb.connect(str(v1), read_only=True) as connection:
        assert table_versions(connection, "duckdb", SCHEMA) == dict.fromkeys(VERSIONED_TABLES, SCHEMA_VERSION)
    for table, frame in before.items():
        after = read(v1, table)
        added = V2_COLUMNS.get(table, []) + V3_COLUMNS.get(table, [])
        assert list(after.columns) == list(frame.columns) + added, table
        for column in V2_COLUMNS.get(table, []):
            assert after[column].isna().all(), (table, column)
        for column in V3_COLUMNS.get(table, []):
            assert (after[column] == 0).all(), (table, column)
        pd.testing.assert_frame_equal(after[list(frame.columns)], frame, obj=table)
    assert set(read(v1, "spans")["schema_version"]) == {1}  # rows keep the version they were written with


def test_migrating_twice_changes_nothing(v1: Path) -> None:
    migrate_duckdb(str(v1), SCHEMA)
    with duckdb.connect(str(v1), read_only=True) as connection:
        stamped = connection.execute(f"SELECT * FROM {SCHEMA}.{VERSION_TABLE} ORDER BY 1").fetchall()
    report = migrate_duckdb(str(v1), SCHEMA)
    assert not report.upgraded and not report.recorded and report.describe() == []
    with duckdb.connect(str(v1), read_only=True) as connection:
        assert connection.execute(f"SELECT * FROM {SCHEMA}.{VERSION_TABLE} ORDER BY 1").fetchall() == stamped


def test_a_new_warehouse_records_the_code_version(tmp_path: Path) -> None:
    report = migrate_duckdb(str(tmp_path / "fresh.duckdb"), SCHEMA)
    assert sorted(report.recorded) == sorted(VERSIONED_TABLES) and not report.upgraded
    assert read(tmp_path / "fresh.duckdb", VERSION_TABLE)["schema_version"].tolist() == [SCHEMA_VERSION] * len(
        VERSIONED_TABLES)


def test_a_warehouse_newer_than_the_code_is_refused(v1: Path) -> None:
    migrate_duckdb(str(v1), SCHEMA)
    with duckdb.connect(str(v1)) as connection:
        connection.execute(f"UPDATE {SCHEMA}.{VERSION_TABLE} SET schema_version = 99 WHERE table_name = 'spans'")
    with pytest.raises(WarehouseError, match=r"aiobs\.spans \(version 99\).*Upgrade aiobs"):
        migrate_duckdb(str(v1), SCHEMA)


def test_defaults_and_backfills_apply_in_one_transaction(v1: Path) -> None:
    nxt = SCHEMA_VERSION + 1
    later = (*MIGRATIONS, Migration(nxt, "example", (
        AddColumn("ingest_audit", "files_checked", "int", default="1"),
        AddColumn("ingest_audit", "spans_kept", "int", backfill='"spans_written" - 0'),
    )))
    report = migrate_duckdb(str(v1), SCHEMA, migrations=later, target=nxt)
    assert report.upgraded["ingest_audit"] == (
        1, nxt, [f"v{m.version}: {m.description}" for m in MIGRATIONS] + [f"v{nxt}: example"])
    audit = read(v1, "ingest_audit")
    assert (audit["files_checked"] == 1).all() and (audit["spans_kept"] == audit["spans_written"]).all()

    broken = (*later, Migration(nxt + 1, "broken", (AddColumn("spans", "x", "int", backfill="no_such_column"),)))
    with pytest.raises(duckdb.Error):
        migrate_duckdb(str(v1), SCHEMA, migrations=broken, target=nxt + 1)
    with duckdb.connect(str(v1), read_only=True) as connection:
        assert table_versions(connection, "duckdb", SCHEMA)["spans"] == nxt  # rolled back as a whole
        columns = [c for (c,) in connection.execute("SELECT column_name FROM information_schema.columns "
                                                    "WHERE table_name = 'spans'").fetchall()]
    assert "x" not in columns


def test_migrate_from_settings(v1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_WAREHOUSE__DUCKDB_PATH", str(v1))
    report = migrate(load_settings())
    assert report.upgraded["spans"][:2] == (1, SCHEMA_VERSION)
    assert any(line.startswith(f"spans: schema version 1 -> {SCHEMA_VERSION}") for line in report.describe())
    monkeypatch.setenv("AIOBS_WAREHOUSE__KIND", "postgres")
    with pytest.raises(WarehouseError, match="no PostgreSQL URL"):
        migrate(load_settings())
