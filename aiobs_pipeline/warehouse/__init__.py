"""The warehouse: where asset tables live, behind Dagster's IO-manager boundary.

`warehouse_io_manager` picks the warehouse from settings: a DuckDB file (default) or PostgreSQL. Both hold
the same contract (tested by one suite in tests/integration/test_warehouse_contract.py): a partitioned
asset (`metadata={"partition_expr": "<column>"}`) replaces exactly the partitions a run covers, in one
transaction; tables are created and extended from `schema.py` (canonical tables) or the frame's dtypes; loads
give identical DataFrames (UTC timestamps, nullable Int64, float64, JSON as canonical text).

`read_table` is the CLI's read-only way in: DuckDB allows one writer, so the CLI opens the file read-only
and closes it before returning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from dagster import ConfigurableIOManagerFactory, EnvVar

from aiobs_pipeline.warehouse.duckdb import (
    DuckDBWarehouseIOManager,
    DuckDBWarehouseTypeHandler,
    duckdb_io_manager,
    read_duckdb_table,
)
from aiobs_pipeline.warehouse.migrations import MIGRATIONS, MigrationReport, migrate
from aiobs_pipeline.warehouse.postgres import (
    PostgresPandasIOManager,
    PostgresPandasTypeHandler,
    read_postgres_table,
    redact_url,
)
from aiobs_pipeline.warehouse.tables import CANONICAL_TABLES, WarehouseError

WAREHOUSE_KINDS = ("duckdb", "postgres")

__all__ = [
    "CANONICAL_TABLES",
    "MIGRATIONS",
    "MigrationReport",
    "WAREHOUSE_KINDS",
    "DuckDBWarehouseIOManager",
    "DuckDBWarehouseTypeHandler",
    "PostgresPandasIOManager",
    "PostgresPandasTypeHandler",
    "WarehouseError",
    "duckdb_io_manager",
    "migrate",
    "read_table",
    "redact_url",
    "read_warehouse_table",
    "warehouse_for",
    "warehouse_io_manager",
]

POSTGRES_URL_ENV = "AIOBS_WAREHOUSE__POSTGRES_URL"


def _kind(kind: str) -> str:
    normalised = (kind or "").strip().lower()
    if normalised not in WAREHOUSE_KINDS:
        raise ValueError(f"warehouse.kind {kind!r} is not one of {', '.join(WAREHOUSE_KINDS)}")
    return normalised


def _require_url(postgres_url: str | None) -> str:
    if not postgres_url:
        raise ValueError(
            "warehouse.kind is 'postgres' but no PostgreSQL URL is set (warehouse.postgres_url, e.g. from "
            "AIOBS_WAREHOUSE__POSTGRES_URL)"
        )
    return postgres_url


def warehouse_io_manager(
    kind: str,
    *,
    duckdb_path: str,
    postgres_url: str | EnvVar | None = None,
    schema: str,
) -> ConfigurableIOManagerFactory:
    """The IO manager for asset tables: "duckdb" (file at duckdb_path) or "postgres" (postgres_url).

    Pass the PostgreSQL URL as `EnvVar("...")` where possible: Dagster then shows the variable's name, not
    the password, in the run configuration.
    """
    if _kind(kind) == "duckdb":
        return duckdb_io_manager(duckdb_path, schema)
    return PostgresPandasIOManager(url=_require_url(postgres_url), schema=schema)


def read_table(
    kind: str,
    *,
    duckdb_path: str,
    postgres_url: str | EnvVar | None = None,
    schema: str,
    table: str,
    where: str | Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    order_by: Sequence[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Read a warehouse table read-only, with the same dtypes the IO managers load.

    `where` is either a mapping of equality filters (value None -> IS NULL, a list -> IN), sent as query
    parameters, or a trusted SQL condition used verbatim. Raises WarehouseError naming the file, server or
    table when it cannot be read.
    """
    options: dict[str, Any] = {"where": where, "columns": columns, "order_by": order_by, "limit": limit}
    if _kind(kind) == "duckdb":
        return read_duckdb_table(duckdb_path, schema, table, **options)
    url = postgres_url.get_value() if isinstance(postgres_url, EnvVar) else postgres_url
    return read_postgres_table(_require_url(url), schema, table, **options)


def _settings_url(settings: Any) -> str | EnvVar | None:
    """The PostgreSQL URL as an EnvVar when it came from the environment, so Dagster never shows it."""
    import os  # noqa: PLC0415

    if os.environ.get(POSTGRES_URL_ENV):
        return EnvVar(POSTGRES_URL_ENV)
    secret = settings.warehouse.postgres_url
    return secret.get_secret_value() if secret is not None else None


def warehouse_for(settings: Any) -> ConfigurableIOManagerFactory:
    """The warehouse IO manager the settings select."""
    return warehouse_io_manager(settings.warehouse.kind, duckdb_path=str(settings.duckdb_path),
                                postgres_url=_settings_url(settings), schema=settings.warehouse.schema_name)


def read_warehouse_table(settings: Any, table: str, **options: Any) -> pd.DataFrame:
    """Read a table of the warehouse the settings select (read-only); options as for `read_table`."""
    return read_table(settings.warehouse.kind, duckdb_path=str(settings.duckdb_path),
                      postgres_url=_settings_url(settings), schema=settings.warehouse.schema_name,
                      table=table, **options)
