"""The PostgreSQL warehouse: a pandas IO manager on Dagster's DbIOManager / DbTypeHandler / DbClient framework.

No maintained pandas IO manager for PostgreSQL exists, so this follows dagster-duckdb's layout:

* `PostgresClient` opens one connection per load or store, in one transaction (committed on success,
  rolled back otherwise), in UTC. Before the partition's DELETE it takes a transaction-level advisory lock on
  the table, so two runs writing the same table cannot interleave their DELETE and INSERT (which would
  leave duplicates) and cannot race on CREATE TABLE / ALTER TABLE.
* `PostgresPandasTypeHandler` creates the table on first write (text, bigint, double precision,
  timestamptz, jsonb, ... from `tables.py`) with an index on each partition column, adds columns a later
  write brings, and loads rows with COPY FROM STDIN, the CSV written by Arrow (pure-Python CSV building
  took longer than PostgreSQL's own COPY of the rows). Loads cast back to the same dtypes the DuckDB
  warehouse yields; JSONB comes back as canonical JSON text.

Writing a partition (or a range of them) is DELETE + COPY in one transaction; an unpartitioned asset is
DELETE of all rows + COPY, so readers (BI tools) see the old table until the new one is committed.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
from dagster import ConfigurableIOManagerFactory, InputContext, OutputContext
from dagster._core.storage.db_io_manager import DbClient, DbIOManager, DbTypeHandler, TableSlice
from pydantic import Field

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
    partition_where_sql,
    prepare_frame,
    qualified_name,
    quote_ident,
    restore_dtypes,
    select_sql,
    sql_logical_type,
)

# user:password@ in a URL (up to the last @ before the path, so an unencoded @ in a password is covered too),
# and password=... in a key/value DSN or a URL query.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^/\s]*@")
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The connection URL or DSN with its password replaced by ***, for messages and logs."""
    return _DSN_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def connect(url: str, connect_timeout: int = 10) -> psycopg2.extensions.connection:
    """Open a PostgreSQL connection in UTC; failures name the server, never the password."""
    try:
        connection = psycopg2.connect(url, connect_timeout=connect_timeout, application_name="aiobs")
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WarehouseError(f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}") from None
    connection.set_client_encoding("UTF8")
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    # Committed at once so the setting holds for the session and the caller starts a fresh transaction.
    connection.commit()
    return connection


@contextmanager
def transaction(url: str, connect_timeout: int = 10) -> Iterator[psycopg2.extensions.connection]:
    """A connection whose transaction commits when the block succeeds, rolls back otherwise, and is closed."""
    connection = connect(url, connect_timeout)
    try:
        yield connection
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def drop_schema(url: str, schema: str) -> None:
    """Drop a warehouse schema with all its tables (benchmarks and tests clean up with it)."""
    with transaction(url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")


def database_name(url: str) -> str:
    """The database a connection URL names (for the table's fully qualified name)."""
    try:
        return psycopg2.extensions.parse_dsn(url).get("dbname") or "postgres"
    except psycopg2.Error:
        raise WarehouseError(f"invalid PostgreSQL connection URL {redact_url(url)}") from None


def table_types(cursor: Any, schema: str, table: str) -> dict[str, LogicalType | None]:
    """Logical type of each column of a PostgreSQL table, in table order (empty when it does not exist)."""
    cursor.execute(
        "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    )
    return {name: sql_logical_type(data_type) for name, data_type in cursor.fetchall()}


def _lock(cursor: Any, key: str) -> None:
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))


class PostgresClient(DbClient):
    """DbClient for PostgreSQL: one connection and transaction per store or load."""

    def __init__(self, url: str, connect_timeout: int = 10) -> None:
        self._url = url
        self._connect_timeout = connect_timeout

    @contextmanager
    def connect(self, context: OutputContext | InputContext, table_slice: TableSlice) -> Iterator[Any]:
        """Yield a connection whose transaction commits when the block succeeds and rolls back otherwise."""
        with transaction(self._url, self._connect_timeout) as connection:
            yield connection

    @staticmethod
    def ensure_schema_exists(context: OutputContext, table_slice: TableSlice, connection: Any) -> None:
        """Create the schema if missing (under an advisory lock: concurrent CREATE SCHEMA can collide), then
        migrate its canonical tables to this code's schema version."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (table_slice.schema,))
            if cursor.fetchone() is None:
                _lock(cursor, f"aiobs schema {table_slice.schema}")
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(table_slice.schema)}")
        # In this write's transaction: a failed migration rolls back with the write.
        report = migrate_connection(connection, "postgres", table_slice.schema,
                                    f"PostgreSQL database {table_slice.database} schema {table_slice.schema}")
        for line in report.describe():
            context.log.info(f"warehouse migration: {line}")

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection: Any) -> None:
        """Lock the table for this transaction, then delete the rows of the partitions being written."""
        with connection.cursor() as cursor:
            _lock(cursor, f"aiobs table {table_slice.schema}.{table_slice.table}")
            cursor.execute(
                "SELECT to_regclass(%s)", (qualified_name(table_slice.schema, table_slice.table),)
            )
            if cursor.fetchone()[0] is None:
                return
            statement = f"DELETE FROM {qualified_name(table_slice.schema, table_slice.table)}"
            condition = partition_where_sql(table_slice.partition_dimensions)
            cursor.execute(statement + (f" WHERE {condition}" if condition else ""))

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        """The SELECT a load of this table slice runs (shown as the materialisation's Query metadata)."""
        columns = ", ".join(quote_ident(c) for c in table_slice.columns) if table_slice.columns else "*"
        statement = f"SELECT {columns} FROM {qualified_name(table_slice.schema, table_slice.table)}"
        condition = partition_where_sql(table_slice.partition_dimensions)
        return statement + (f" WHERE {condition}" if condition else "")


# Arrow types of the logical types, for COPY's CSV; prepare_frame has already cast each column to its dtype.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(), "json": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"), "naive_timestamp": pa.timestamp("us"), "date": pa.date32(),
}
# Every present value quoted and nulls left empty: PostgreSQL's CSV COPY reads only an unquoted empty field as
# NULL, so an empty string stays an empty string.
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="all_valid", batch_size=8192)


def csv_for_copy(frame: pd.DataFrame, types: Mapping[str, LogicalType]) -> io.BytesIO:
    """A prepared frame as CSV for `COPY ... FROM STDIN WITH (FORMAT csv)`, written by Arrow's C++ writer."""
    arrays = [pa.array(frame[name], type=_ARROW_TYPES[types[name]], from_pandas=True) for name in frame.columns]
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(frame.columns)), buffer, _CSV_OPTIONS)
    buffer.seek(0)
    return buffer


def copy_rows(cursor: Any, schema: str, table: str, frame: pd.DataFrame, types: Mapping[str, LogicalType]) -> None:
    """Append a prepared frame's rows to an existing table with COPY FROM STDIN."""
    names = ", ".join(quote_ident(name) for name in frame.columns)
    cursor.copy_expert(f"COPY {qualified_name(schema, table)} ({names}) FROM STDIN WITH (FORMAT csv)",
                       csv_for_copy(frame, types), size=1 << 20)


def _index_name(table: str, column: str) -> str:
    # PostgreSQL truncates identifiers at 63 bytes; a hash keeps two long names from colliding.
    name = f"{table}_{column}_idx"
    if len(name.encode()) <= 63:
        return name
    return f"{name.encode()[:50].decode(errors='ignore')}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def ensure_partition_indexes(cursor: Any, schema: str, table: str, columns: Sequence[str]) -> list[str]:
    """Index the partition columns, so replacing or loading a partition reads only its rows; return new ones."""
    created = []
    for column in columns:
        index = _index_name(table, column)
        cursor.execute("SELECT to_regclass(%s)", (qualified_name(schema, index),))
        if cursor.fetchone()[0] is None:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {quote_ident(index)} ON "
                           f"{qualified_name(schema, table)} ({quote_ident(column)})")
            created.append(index)
    return created


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores pandas DataFrames in PostgreSQL tables with COPY and loads them with the canonical dtypes."""

    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> Mapping[str, Any] | None:
        """Create or extend the table and COPY the frame's rows (the client deleted the old ones just before)."""
        label = f"{table_slice.schema}.{table_slice.table}"
        types = frame_types(obj, table_slice.table, json_columns_of(context), label)
        if not types:
            context.log.warning(f"{label}: the frame has no columns, so nothing is stored and no table is created")
            return output_metadata(context, obj, "postgres")
        with connection.cursor() as cursor:
            existing = table_types(cursor, table_slice.schema, table_slice.table)
            write_types, to_add = merge_types(existing, types, obj, label)
            frame = prepare_frame(obj, write_types, label)
            check_rows_in_partitions(frame, table_slice.partition_dimensions, label)
            if not existing:
                cursor.execute(create_table_sql(table_slice.schema, table_slice.table, write_types, "postgres"))
            else:
                for name, kind in to_add.items():
                    context.log.info(f"{label}: adding column {name} ({kind})")
                    cursor.execute(add_column_sql(table_slice.schema, table_slice.table, name, kind, "postgres"))
            partition_columns = [d.partition_expr for d in table_slice.partition_dimensions or ()
                                 if d.partition_expr in write_types]
            for index in ensure_partition_indexes(cursor, table_slice.schema, table_slice.table, partition_columns):
                context.log.info(f"{label}: created index {index}")
        if len(frame):
            self._insert(connection, table_slice, frame, write_types)
        return output_metadata(context, frame, "postgres")

    def _insert(
        self, connection: Any, table_slice: TableSlice, frame: pd.DataFrame, types: Mapping[str, LogicalType]
    ) -> None:
        with connection.cursor() as cursor:
            copy_rows(cursor, table_slice.schema, table_slice.table, frame, types)

    def load_input(self, context: InputContext, table_slice: TableSlice, connection: Any) -> pd.DataFrame:
        """Load the table slice with the same dtypes the DuckDB warehouse yields."""
        with connection.cursor() as cursor:
            types = table_types(cursor, table_slice.schema, table_slice.table)
            if not types:
                raise WarehouseError(
                    f"table {table_slice.schema}.{table_slice.table} does not exist in the PostgreSQL "
                    "warehouse; materialise its asset first"
                )
            condition = partition_where_sql(table_slice.partition_dimensions)
            if table_slice.partition_dimensions and not context.asset_partition_keys:
                condition = "FALSE"
            statement, _ = select_sql(
                table_slice.schema, table_slice.table, types,
                columns=table_slice.columns, condition=condition, json_as_text=True,
            )
            return _fetch_frame(cursor, statement, None, types, table_slice.table, not table_slice.columns)

    @property
    def supported_types(self) -> Sequence[type[object]]:
        """pandas DataFrames only."""
        return [pd.DataFrame]


def _fetch_frame(
    cursor: Any,
    statement: str,
    params: Sequence[Any] | None,
    types: Mapping[str, LogicalType | None],
    table: str,
    schema_order: bool,
) -> pd.DataFrame:
    cursor.execute(statement, params)
    names = [column.name for column in cursor.description]
    frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names, coerce_float=False)
    if frame.empty:
        frame = pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    return restore_dtypes(frame, types, table, canonicalise_json=True, schema_order=schema_order)


class PostgresPandasIOManager(ConfigurableIOManagerFactory):
    """Stores pandas DataFrames as PostgreSQL tables, one per asset, in a schema; loads them back.

    Partitioned assets need `metadata={"partition_expr": "<column>"}`; a run covering a range of partitions
    replaces exactly those partitions. Object columns holding JSON text become jsonb when they are schema
    JSON columns or listed in the asset metadata `json_columns`. Give `url` as `EnvVar(...)` in production
    so the password stays out of the run configuration.
    """

    url: str = Field(description="postgresql://user:password@host:port/database (use an EnvVar).")
    schema_: str = Field(default="public", alias="schema", description="Schema the asset tables live in.")
    connect_timeout: int = Field(default=10, description="Seconds to wait for a connection.")

    def create_io_manager(self, context: Any) -> DbIOManager:
        """Build the DbIOManager over a PostgresClient."""
        return DbIOManager(
            type_handlers=[PostgresPandasTypeHandler()],
            db_client=PostgresClient(self.url, self.connect_timeout),
            database=database_name(self.url),
            schema=self.schema_,
            io_manager_name="PostgresPandasIOManager",
            default_load_type=pd.DataFrame,
        )


def read_postgres_table(
    url: str,
    schema: str,
    table: str,
    *,
    where: str | Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    order_by: Sequence[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Read a table from the PostgreSQL warehouse in a read-only transaction."""
    connection = connect(url)
    try:
        connection.set_session(readonly=True)
        with connection.cursor() as cursor:
            types = table_types(cursor, schema, table)
            if not types:
                raise WarehouseError(f"table {schema}.{table} does not exist in the PostgreSQL warehouse")
            statement, params = select_sql(
                schema, table, types, where=where, columns=columns, order_by=order_by, limit=limit,
                placeholder="%s", json_as_text=True,
            )
            return _fetch_frame(cursor, statement, params or None, types, table, not columns)
    finally:
        connection.close()
