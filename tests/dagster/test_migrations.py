"""The pipeline on a warehouse of the previous schema version: tests/fixtures/warehouse_v1.duckdb (the demo
warehouse the version-1 code wrote, see tests/fixtures/SOURCES.md) as a DuckDB file, and the same tables built
in a fresh PostgreSQL schema. The IO managers migrate it before their first write; the data stays intact and
ingest and pricing then write onto the migrated tables."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psycopg2
import pytest
from dagster import materialize

from aiobs_pipeline.defs.costs import priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from aiobs_pipeline.schema import SCHEMA_VERSION
from aiobs_pipeline.warehouse import read_table
from aiobs_pipeline.warehouse.duckdb import table_types
from aiobs_pipeline.warehouse.migrations import VERSION_TABLE, VERSIONED_TABLES
from aiobs_pipeline.warehouse.postgres import copy_rows
from aiobs_pipeline.warehouse.tables import create_table_sql, prepare_frame, quote_ident
from tests.dagster.conftest import Project

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "warehouse_v1.duckdb"
DAY = datetime(2026, 10, 31, tzinfo=UTC)  # the day the fixture's demo covered (seed 7, scale 0.1)
HOUR = DAY + timedelta(hours=12)  # the hour with the generator's injected bad records


def fixture_tables() -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(FIXTURE), read_only=True) as connection:
        names = [n for (n,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'aiobs'").fetchall()]
    return {name: read_table("duckdb", duckdb_path=str(FIXTURE), schema="aiobs", table=name) for name in names}


def build_postgres_v1(url: str, schema: str) -> None:
    """The fixture's tables, with their version-1 columns and types, in a fresh PostgreSQL schema."""
    with duckdb.connect(str(FIXTURE), read_only=True) as source:
        layouts = {name: table_types(source, "aiobs", name) for name in fixture_tables()}
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            for table, types in layouts.items():
                cursor.execute(create_table_sql(schema, table, types, "postgres"))
                frame = prepare_frame(read_table("duckdb", duckdb_path=str(FIXTURE), schema="aiobs", table=table),
                                      types, table)
                if frame.empty:
                    continue
                copy_rows(cursor, schema, table, frame, types)
    finally:
        connection.close()


@pytest.mark.slow
def test_pipeline_migrates_and_writes_onto_the_v1_demo_warehouse(project: Project, instance,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if project.kind == "duckdb":
        shutil.copyfile(FIXTURE, project.duckdb_path)
    else:
        build_postgres_v1(project.postgres_url, project.schema)
    before = fixture_tables()
    for table, frame in before.items():  # the v1 copy reads back as the fixture does
        pd.testing.assert_frame_equal(project.read(table), frame, obj=table)

    # The same landing files the demo ingested for that day (the generator is deterministic).
    generate(project.landing, DAY, DAY + timedelta(days=1), seed=7, scale=0.1, inject_bad_records=True)
    monkeypatch.setenv("AIOBS_INGEST__MASK_PII", "true")
    result = materialize([ingest_export_hours, priced_spans], resources=project.resources(), instance=instance,
                         partition_key=f"{HOUR:%Y-%m-%d-%H:%M}")
    assert result.success

    versions = project.read(VERSION_TABLE).set_index("table_name")["schema_version"]
    assert versions.to_dict() == dict.fromkeys(VERSIONED_TABLES, SCHEMA_VERSION)

    # Every row outside the re-ingested hour is as it was; the new columns are null there, except version 3's
    # audit counts of log records, 0 there (no log files were read then).
    for table in ("spans", "quarantined_spans", "ingest_audit", "priced_spans", "feedback_events"):
        old, new = before[table], project.read(table)
        keep_old = old[old["export_hour"] != pd.Timestamp(HOUR)].reset_index(drop=True)
        keep_new = new[new["export_hour"] != pd.Timestamp(HOUR)].reset_index(drop=True)
        added = [c for c in new.columns if c not in old.columns]
        assert all((keep_new[c] == 0).all() if c in ("events_joined", "records_ignored") else keep_new[c].isna().all()
                   for c in added), table
        pd.testing.assert_frame_equal(keep_new[list(old.columns)], keep_old, obj=table)

    # The re-ingested hour: the same spans and quarantined records, now written at version 2 with masking.
    spans = project.read("spans")
    old_hour = before["spans"][before["spans"]["export_hour"] == pd.Timestamp(HOUR)]
    new_hour = spans[spans["export_hour"] == pd.Timestamp(HOUR)]
    assert sorted(new_hour["span_id"]) == sorted(old_hour["span_id"]) and len(new_hour) > 0
    assert set(new_hour["schema_version"]) == {SCHEMA_VERSION} and new_hour["pii_masked"].notna().all()
    quarantine = project.read("quarantined_spans")
    assert sorted(quarantine["reason"]) == sorted(before["quarantined_spans"]["reason"])
    assert quarantine["pii_masked"].notna().all()
    audit = project.read("ingest_audit")
    assert audit.loc[audit["export_hour"] == pd.Timestamp(HOUR), "pii_masked"].notna().all()
    priced = project.read("priced_spans")
    assert (priced["export_hour"] == pd.Timestamp(HOUR)).sum() == len(new_hour)
    assert len(priced) == len(before["priced_spans"])
    # Tables the run did not touch are still there, unchanged.
    pd.testing.assert_frame_equal(project.read("hallucination_scores"), before["hallucination_scores"])
