"""A maintenance connection to the warehouse (DuckDB file or PostgreSQL) for governance work.

Assets reach tables through the IO managers; retention and forgetting instead change rows in place across
many tables (DELETE, UPDATE), so they open one connection here, in one transaction, with the same column
types (`warehouse.tables`) both warehouses share. SQL is written with `?` placeholders; PostgreSQL gets `%s`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aiobs_pipeline.warehouse.tables import (
    LogicalType,
    WarehouseError,
    add_column_sql,
    create_table_sql,
    frame_types,
    prepare_frame,
    qualified_name,
    quote_ident,
    sql_logical_type,
)


@dataclass
class WarehouseSession:
    """One open warehouse connection in a transaction; `dialect` is "duckdb" or "postgres"."""

    connection: Any
    dialect: str
    schema: str
    location: str
    read_only: bool = False

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the rows it changed (DELETE / UPDATE) or -1."""
        if self.dialect == "postgres":
            with self.connection.cursor() as cursor:
                cursor.execute(self._sql(statement), list(params) or None)
                return int(cursor.rowcount)
        result = self.connection.execute(statement, list(params))
        if re.match(r"\s*(DELETE|UPDATE|INSERT)\b", statement, re.IGNORECASE):
            row = result.fetchone()
            return int(row[0]) if row else 0
        return -1

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a SELECT and return its rows."""
        if self.dialect == "postgres":
            with self.connection.cursor() as cursor:
                cursor.execute(self._sql(statement), list(params) or None)
                return list(cursor.fetchall())
        return list(self.connection.execute(statement, list(params)).fetchall())

    def tables(self) -> list[str]:
        """The base tables of the schema, sorted."""
        rows = self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                          "AND table_type = 'BASE TABLE' ORDER BY table_name", [self.schema])
        return [str(r[0]) for r in rows]

    def columns(self, table: str) -> dict[str, LogicalType | None]:
        """Logical type of each column of a table, in table order (empty when it does not exist)."""
        rows = self.query("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                          [self.schema, table])
        return {str(name): sql_logical_type(str(kind)) for name, kind in rows}

    def name(self, table: str) -> str:
        """The quoted schema.table name."""
        return qualified_name(self.schema, table)

    def as_text(self, expression: str) -> str:
        """SQL for an expression (a JSON value, say) as text, in this dialect."""
        return f"CAST({expression} AS VARCHAR)" if self.dialect == "duckdb" else f"({expression})::text"

    def append(self, table: str, frame: pd.DataFrame, json_columns: Sequence[str] = ()) -> int:
        """Insert a frame's rows into a table, creating it or adding columns as the IO managers do."""
        if self.read_only:
            raise WarehouseError(f"{self.location}: opened read-only, cannot append to {table}")
        label = f"{self.schema}.{table}"
        types = frame_types(frame, table, json_columns, label)
        existing = self.columns(table)
        if not existing:
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            self.execute(create_table_sql(self.schema, table, types, self.dialect))  # type: ignore[arg-type]
        else:
            for column, kind in types.items():
                if column not in existing:
                    self.execute(add_column_sql(self.schema, table, column, kind, self.dialect))  # type: ignore[arg-type]
        prepared = prepare_frame(frame, types, label)
        if prepared.empty:
            return 0
        names = ", ".join(quote_ident(c) for c in prepared.columns)
        marks = ", ".join(["?"] * len(prepared.columns))
        statement = f"INSERT INTO {self.name(table)} ({names}) VALUES ({marks})"
        rows = [[_plain(v) for v in row] for row in prepared.itertuples(index=False, name=None)]
        if self.dialect == "postgres":
            with self.connection.cursor() as cursor:
                cursor.executemany(self._sql(statement), rows)
        else:
            self.connection.executemany(statement, rows)
        return len(rows)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _postgres_url(settings: Any) -> str:
    import os  # noqa: PLC0415

    from aiobs_pipeline.warehouse import POSTGRES_URL_ENV  # noqa: PLC0415

    url = os.environ.get(POSTGRES_URL_ENV)
    if not url and settings.warehouse.postgres_url is not None:
        url = settings.warehouse.postgres_url.get_secret_value()
    if not url:
        raise WarehouseError("warehouse.kind is 'postgres' but no PostgreSQL URL is set (warehouse.postgres_url, "
                             f"e.g. from {POSTGRES_URL_ENV})")
    return url


@contextmanager
def open_warehouse(kind: str, *, duckdb_path: str | Path | None = None, postgres_url: str | None = None,
                   schema: str, read_only: bool = False) -> Iterator[WarehouseSession]:
    """Open the warehouse in one transaction: committed when the block succeeds, rolled back otherwise.

    Raises WarehouseError naming the file or server when it cannot be opened (a DuckDB file another process is
    writing, an unreachable PostgreSQL server).
    """
    if kind == "duckdb":
        import duckdb  # noqa: PLC0415

        path = Path(str(duckdb_path))
        if not path.is_file():
            raise WarehouseError(f"DuckDB warehouse file {path} does not exist; materialise some assets first")
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as error:
            raise WarehouseError(f"cannot open DuckDB warehouse {path} ({error}); a Dagster run may be writing "
                                 "it, try again when it has finished") from None
        session = WarehouseSession(connection, "duckdb", schema, str(path), read_only)
        try:
            try:
                connection.execute("SET TimeZone = 'UTC'")
            except duckdb.Error:
                pass  # without ICU TIMESTAMPTZ is UTC already
            if not read_only:
                connection.begin()
            yield session
            if not read_only:
                connection.commit()
        except BaseException:
            if not read_only:
                connection.rollback()
            raise
        finally:
            connection.close()
        return
    if kind != "postgres":
        raise WarehouseError(f"warehouse.kind {kind!r} is not one of duckdb, postgres")
    from aiobs_pipeline.warehouse.postgres import redact_url, transaction  # noqa: PLC0415

    if not postgres_url:
        raise WarehouseError("warehouse.kind is 'postgres' but no PostgreSQL URL is set (warehouse.postgres_url)")
    with transaction(postgres_url) as connection:
        if read_only:
            connection.set_session(readonly=True)
        yield WarehouseSession(connection, "postgres", schema, redact_url(postgres_url), read_only)


@contextmanager
def warehouse_session(settings: Any, read_only: bool = False) -> Iterator[WarehouseSession]:
    """`open_warehouse` for the warehouse the settings select."""
    kind = settings.warehouse.kind
    with open_warehouse(kind, duckdb_path=settings.duckdb_path,
                        postgres_url=_postgres_url(settings) if kind == "postgres" else None,
                        schema=settings.warehouse.schema_name, read_only=read_only) as session:
        yield session
