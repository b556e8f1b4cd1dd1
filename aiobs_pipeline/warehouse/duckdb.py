"""The DuckDB warehouse: dagster-duckdb-pandas' IO manager with a thin type handler and a transactional client.

The stock `DuckDBPandasIOManager` does the Dagster side (table slices, partition filters, config). Two small
subclasses make it hold the warehouse contract shared with PostgreSQL:

* `DuckDBWarehouseTypeHandler` creates tables from explicit DDL (types from `tables.py`, so a partition whose
  nullable column is all null cannot fix the column to a useless type, and an empty frame still creates the
  table), adds columns a later write brings, inserts BY NAME, and casts loads back to the canonical dtypes;
* `TransactionalDuckDbClient` runs the DELETE of the partition and the INSERT of its rows in one transaction
  and pins the session time zone to UTC, because the stock partition filter compares TIMESTAMPTZ columns
  with naive literals that DuckDB reads in the session time zone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from dagster import InputContext, OutputContext
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from aiobs_pipeline.warehouse.migrations import migrate_connection
from aiobs_pipeline.warehouse.tables import (
    LogicalType,
    WarehouseError,
    add_column_sql,
    check_rows_in_partitions,
    create_table_sql,
    frame_types,
    json_columns_of,
    merge_types,
    output_metadata,
    prepare_frame,
    qualified_name,
    quote_ident,
    restore_dtypes,
    select_sql,
    sql_logical_type,
)

_FRAME_VIEW = "__aiobs_frame"


def _use_utc(connection: duckdb.DuckDBPyConnection) -> None:
    try:
        connection.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        # Without the ICU extension DuckDB has no session time zone: TIMESTAMPTZ is then UTC already.
        pass


def table_types(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, LogicalType | None]:
    """Logical type of each column of a DuckDB table, in table order (empty when the table does not exist)."""
    rows = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: sql_logical_type(data_type) for name, data_type in rows}


class DuckDBWarehouseTypeHandler(DuckDBPandasTypeHandler):
    """DuckDBPandasTypeHandler with explicit DDL, column additions, BY NAME inserts and canonical load dtypes."""

    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> Mapping[str, Any] | None:
        """Store the frame's rows in the table (the IO manager deleted the partition's old rows just before)."""
        label = f"{table_slice.schema}.{table_slice.table}"
        types = frame_types(obj, table_slice.table, json_columns_of(context), label)
        if not types:
            context.log.warning(f"{label}: the frame has no columns, so nothing is stored and no table is created")
            context.add_output_metadata(output_metadata(context, obj, "duckdb"))
            return None
        existing = table_types(connection, table_slice.schema, table_slice.table)
        write_types, to_add = merge_types(existing, types, obj, label)
        frame = prepare_frame(obj, write_types, label)
        check_rows_in_partitions(frame, table_slice.partition_dimensions, label)
        if not existing:
            connection.execute(create_table_sql(table_slice.schema, table_slice.table, write_types, "duckdb"))
        else:
            for name, kind in to_add.items():
                context.log.info(f"{label}: adding column {name} ({kind})")
                connection.execute(add_column_sql(table_slice.schema, table_slice.table, name, kind, "duckdb"))
        if len(frame):
            self._insert(connection, table_slice, frame)
        context.add_output_metadata(output_metadata(context, frame, "duckdb"))
        return None

    def _insert(self, connection: Any, table_slice: TableSlice, frame: pd.DataFrame) -> None:
        columns = ", ".join(quote_ident(name) for name in frame.columns)
        connection.register(_FRAME_VIEW, frame)
        try:
            connection.execute(
                f"INSERT INTO {qualified_name(table_slice.schema, table_slice.table)} ({columns}) "
                f"SELECT {columns} FROM {_FRAME_VIEW}"
            )
        finally:
            connection.unregister(_FRAME_VIEW)

    def load_input(self, context: InputContext, table_slice: TableSlice, connection: Any) -> pd.DataFrame:
        """Load the table slice with the same dtypes the PostgreSQL warehouse yields."""
        types = table_types(connection, table_slice.schema, table_slice.table)
        if not types:
            raise WarehouseError(
                f"table {table_slice.schema}.{table_slice.table} does not exist in the DuckDB warehouse "
                f"{context.resource_config.get('database')}; materialise its asset first"
            )
        if table_slice.partition_dimensions and not context.asset_partition_keys:
            statement = DuckDbClient.get_select_statement(table_slice._replace(partition_dimensions=None))
            statement += " WHERE FALSE"
        else:
            statement = DuckDbClient.get_select_statement(table_slice)
        frame = connection.execute(statement).fetchdf()
        return restore_dtypes(
            frame, types, table_slice.table, canonicalise_json=False, schema_order=not table_slice.columns
        )


class TransactionalDuckDbClient(DuckDbClient):
    """DuckDbClient whose connection is one transaction in UTC: a failed write leaves the old partition."""

    @staticmethod
    @contextmanager
    def connect(context: OutputContext | InputContext, table_slice: TableSlice) -> Iterator[Any]:
        """Open the DuckDB file (with the stock retry on lock conflicts) and commit only on success."""
        with DuckDbClient.connect(context, table_slice) as connection:
            _use_utc(connection)
            connection.begin()
            try:
                yield connection
            except BaseException:
                try:
                    connection.rollback()
                finally:
                    # The stock context manager skips its close() when an error passes through it.
                    connection.close()
                raise
            connection.commit()

    @staticmethod
    def ensure_schema_exists(context: OutputContext, table_slice: TableSlice, connection: Any) -> None:
        """Create the schema if missing, then migrate the canonical tables (in this write's transaction)."""
        DuckDbClient.ensure_schema_exists(context, table_slice, connection)
        report = migrate_connection(connection, "duckdb", table_slice.schema,
                                    f"DuckDB file {table_slice.database}")
        for line in report.describe():
            context.log.info(f"warehouse migration: {line}")

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection: Any) -> None:
        """The stock DELETE, skipped when the table does not exist yet.

        The stock client runs the DELETE and ignores the missing-table error, but inside a transaction
        that error aborts the transaction, so look first.
        """
        if table_types(connection, table_slice.schema, table_slice.table):
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class DuckDBWarehouseIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager with the warehouse contract's type handler and a transactional client."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        """The one handler: pandas DataFrames."""
        return [DuckDBWarehouseTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        """Build the DbIOManager, creating the warehouse file's folder first."""
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBWarehouseIOManager",
        )


def check_duckdb_names(path: str, schema: str) -> None:
    """Refuse a DuckDB file named like its schema: DuckDB then reports "ambiguous reference" on every query."""
    if Path(path).stem.lower() == schema.lower():
        raise ValueError(
            f"DuckDB warehouse file {path} is named like its schema {schema!r}; DuckDB then fails with "
            "'ambiguous reference'. Rename the file (e.g. warehouse.duckdb) or the schema"
        )


def duckdb_io_manager(path: str, schema: str) -> DuckDBWarehouseIOManager:
    """The DuckDB warehouse IO manager for a file and schema (asset tables are schema.<asset name>)."""
    check_duckdb_names(path, schema)
    return DuckDBWarehouseIOManager(database=str(path), schema=schema)


def read_duckdb_table(
    path: str,
    schema: str,
    table: str,
    *,
    where: str | Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    order_by: Sequence[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Read a table from a DuckDB warehouse file opened read-only, closed before returning."""
    file = Path(path)
    if not file.is_file():
        raise WarehouseError(f"DuckDB warehouse file {file} does not exist; materialise some assets first")
    try:
        connection = duckdb.connect(str(file), read_only=True)
    except duckdb.Error as error:
        raise WarehouseError(
            f"cannot open DuckDB warehouse {file} read-only ({error}); a run may be writing it, try again"
        ) from None
    try:
        _use_utc(connection)
        types = table_types(connection, schema, table)
        if not types:
            raise WarehouseError(f"table {schema}.{table} does not exist in the DuckDB warehouse {file}")
        statement, params = select_sql(
            schema, table, types, where=where, columns=columns, order_by=order_by, limit=limit, placeholder="?"
        )
        frame = connection.execute(statement, params).fetchdf()
    finally:
        connection.close()
    return restore_dtypes(frame, types, table, canonicalise_json=False, schema_order=not columns)

