"""Fixtures for Dagster-level tests: a temporary project (landing folder, settings, warehouse) and an
instance. The `warehouse` fixture runs each test once on DuckDB and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import DagsterInstance, instance_for_test

from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.warehouse import read_table, warehouse_io_manager


@dataclass
class Project:
    """A throwaway aiobs project: where files land and which warehouse the assets write."""

    root: Path
    kind: str
    duckdb_path: str
    postgres_url: str | None
    schema: str

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    def resources(self) -> dict[str, Any]:
        """Resources for materialize() / execute_in_process()."""
        return {
            "aiobs": AiobsSettings(landing_root=str(self.landing), feedback_root=str(self.feedback),
                                   reports_dir=str(self.root / "reports")),
            "warehouse": warehouse_io_manager(self.kind, duckdb_path=self.duckdb_path,
                                              postgres_url=self.postgres_url, schema=self.schema),
        }

    def read(self, table: str, **options: Any) -> pd.DataFrame:
        """Read a table back from the project's warehouse."""
        return read_table(self.kind, duckdb_path=self.duckdb_path, postgres_url=self.postgres_url,
                          schema=self.schema, table=table, **options)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """A project on each warehouse; the PostgreSQL one uses a fresh schema, dropped afterwards."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        schema = request.getfixturevalue("postgres_schema")
        yield Project(tmp_path, "postgres", str(tmp_path / "unused.duckdb"), url, schema)
    else:
        yield Project(tmp_path, "duckdb", str(tmp_path / "warehouse.duckdb"), None, "aiobs")


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """An ephemeral Dagster instance with its own temporary storage."""
    with instance_for_test() as inst:
        yield inst


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags for a single-run backfill over a partition range."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
