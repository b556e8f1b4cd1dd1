"""Table layout shared by both warehouses: logical column types, DDL, frame preparation and load dtypes.

DuckDB and PostgreSQL must hand back identical DataFrames for the same asset, so everything that decides a
column's type or a value's stored form lives here, once:

* a column's logical type comes from `schema.py` for the canonical tables (`CANONICAL_TABLES`), otherwise
  from its pandas dtype; object columns named like a schema JSON column, or listed in the asset metadata
  `json_columns`, hold JSON;
* before writing, a frame is cast to the pandas dtype of each logical type, JSON text is validated and put
  in canonical form (compact, keys sorted: PostgreSQL's JSONB reorders keys, so only a canonical form reads
  back the same from both), and timestamps are cut to microseconds (what both databases store);
* after loading, columns are cast back from the database type, so an empty result or a partition of nulls
  has the same dtypes as a full one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal, cast

import orjson
import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema, TimeWindow
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import TablePartitionDimension

from aiobs_pipeline.schema import (
    AUDIT_COLUMNS,
    FEEDBACK_AUDIT_COLUMNS,
    FEEDBACK_COLUMNS,
    QUARANTINE_COLUMNS,
    SPAN_TABLE_COLUMNS,
    Column,
)

LogicalType = Literal["str", "int", "float", "timestamp", "json", "bool", "date", "naive_timestamp"]
Dialect = Literal["duckdb", "postgres"]

# Tables whose column types come from schema.py rather than from the frame's dtypes.
CANONICAL_TABLES: dict[str, tuple[Column, ...]] = {
    "spans": SPAN_TABLE_COLUMNS,
    "quarantined_spans": QUARANTINE_COLUMNS,
    "ingest_audit": AUDIT_COLUMNS,
    "feedback_events": FEEDBACK_COLUMNS,
    "quarantined_feedback": QUARANTINE_COLUMNS,
    "feedback_audit": FEEDBACK_AUDIT_COLUMNS,
}

# Any object column with one of these names holds JSON text, in whatever table it appears (priced_spans, ...).
JSON_COLUMN_NAMES: frozenset[str] = frozenset(
    c.name for columns in CANONICAL_TABLES.values() for c in columns if c.type == "json"
)

PANDAS_DTYPES: dict[LogicalType, str] = {
    "str": "object",
    "json": "object",
    "int": "Int64",
    "float": "float64",
    "timestamp": "datetime64[ns, UTC]",
    "naive_timestamp": "datetime64[ns]",
    "bool": "boolean",
    "date": "object",
}

SQL_TYPES: dict[Dialect, dict[LogicalType, str]] = {
    "duckdb": {
        "str": "VARCHAR",
        "json": "JSON",
        "int": "BIGINT",
        "float": "DOUBLE",
        "timestamp": "TIMESTAMPTZ",
        "naive_timestamp": "TIMESTAMP",
        "bool": "BOOLEAN",
        "date": "DATE",
    },
    "postgres": {
        "str": "text",
        "json": "jsonb",
        "int": "bigint",
        "float": "double precision",
        "timestamp": "timestamptz",
        "naive_timestamp": "timestamp",
        "bool": "boolean",
        "date": "date",
    },
}

# information_schema.columns.data_type (either database, lower-cased) -> logical type.
_SQL_TO_LOGICAL: dict[str, LogicalType] = {
    "varchar": "str",
    "text": "str",
    "character varying": "str",
    "character": "str",
    "json": "json",
    "jsonb": "json",
    "bigint": "int",
    "integer": "int",
    "smallint": "int",
    "tinyint": "int",
    "hugeint": "int",
    "ubigint": "int",
    "uinteger": "int",
    "usmallint": "int",
    "utinyint": "int",
    "double": "float",
    "double precision": "float",
    "float": "float",
    "real": "float",
    "numeric": "float",
    "decimal": "float",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "naive_timestamp",
    "timestamp": "naive_timestamp",
    "boolean": "bool",
    "date": "date",
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An escaped NUL (\u0000) not itself preceded by an escaping backslash: JSONB cannot hold it.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class WarehouseError(Exception):
    """A table could not be written or read; the message names the table, column, row or setting at fault."""


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (works for DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, table: str) -> str:
    """The quoted schema.table name."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def partition_column_sql(partition_expr: str) -> str:
    """A partition_expr as SQL: a plain column name is quoted, anything else is used as the expression it is."""
    return quote_ident(partition_expr) if _IDENTIFIER.match(partition_expr) else partition_expr


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def partition_where_sql(dimensions: Sequence[TablePartitionDimension] | None) -> str | None:
    """The WHERE condition selecting the partitions of a table slice (PostgreSQL; None when unpartitioned).

    Time windows compare with ISO-8601 literals carrying their UTC offset, so the result does not depend
    on the session time zone; a dimension with no partitions selects nothing.
    """
    if not dimensions:
        return None
    parts = []
    for dimension in dimensions:
        column = partition_column_sql(dimension.partition_expr)
        if isinstance(dimension.partitions, TimeWindow):
            start, end = dimension.partitions
            parts.append(
                f"{column} >= {_sql_literal(start.isoformat())} AND {column} < {_sql_literal(end.isoformat())}"
            )
        elif not dimension.partitions:
            parts.append("FALSE")
        else:
            keys = ", ".join(_sql_literal(str(key)) for key in dimension.partitions)
            parts.append(f"{column} IN ({keys})")
    return " AND ".join(f"({part})" for part in parts)


def sql_logical_type(data_type: str) -> LogicalType | None:
    """The logical type of a database column type as information_schema reports it (None if unknown)."""
    base = data_type.strip().lower()
    if base in _SQL_TO_LOGICAL:
        return _SQL_TO_LOGICAL[base]
    base = base.split("(", 1)[0].strip()
    return _SQL_TO_LOGICAL.get(base)


def create_table_sql(schema: str, table: str, types: Mapping[str, LogicalType], dialect: Dialect) -> str:
    """CREATE TABLE IF NOT EXISTS for the given columns (all nullable: nulls are the schema's business)."""
    columns = ",\n  ".join(f"{quote_ident(name)} {SQL_TYPES[dialect][kind]}" for name, kind in types.items())
    return f"CREATE TABLE IF NOT EXISTS {qualified_name(schema, table)} (\n  {columns}\n)"


def add_column_sql(schema: str, table: str, column: str, kind: LogicalType, dialect: Dialect) -> str:
    """ALTER TABLE ... ADD COLUMN for a column a later write brought (nullable, so old rows read as null)."""
    return (
        f"ALTER TABLE {qualified_name(schema, table)} "
        f"ADD COLUMN {quote_ident(column)} {SQL_TYPES[dialect][kind]}"
    )


def _infer_object_type(series: pd.Series, label: str) -> LogicalType:
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("string", "empty"):
        return "str"
    if kind == "boolean":
        return "bool"
    if kind == "integer":
        return "int"
    if kind in ("floating", "mixed-integer-float", "decimal"):
        return "float"
    if kind == "date":
        return "date"
    if kind in ("datetime", "datetime64"):
        values = series.dropna()
        aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None)
        return "timestamp" if bool(aware.all()) else "naive_timestamp"
    raise WarehouseError(
        f"{label}: cannot store values of kind {kind!r} (e.g. {series.dropna().iloc[0]!r}); "
        "store nested values as JSON text and give the column one type"
    )


def infer_logical_type(series: pd.Series, label: str) -> LogicalType:
    """The logical type a column of this dtype is stored as; `label` names the column in errors."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return infer_logical_type(series.astype(object), label)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "naive_timestamp"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return _infer_object_type(series, label)
    raise WarehouseError(f"{label}: pandas dtype {dtype} cannot be stored in the warehouse")


def frame_types(
    frame: pd.DataFrame, table: str, json_columns: Iterable[str] = (), label: str | None = None
) -> dict[str, LogicalType]:
    """Logical type of every column of a frame about to be written to `table`.

    Canonical tables take their types from schema.py; other columns from their dtype, with object columns
    that are schema JSON columns or listed in `json_columns` (asset metadata) stored as JSON.
    """
    label = label or table
    names = list(frame.columns)
    bad_names = [n for n in names if not isinstance(n, str) or not n]
    if bad_names:
        raise WarehouseError(f"{label}: column names must be non-empty strings, got {bad_names!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WarehouseError(f"{label}: duplicate column names {duplicates!r}")
    canonical = {c.name: c for c in CANONICAL_TABLES.get(table, ())}
    json_names = set(json_columns)
    types: dict[str, LogicalType] = {}
    for name in names:
        series = frame[name]
        if name in canonical:
            types[name] = cast(LogicalType, canonical[name].type)
        elif name in json_names:
            types[name] = "json"
        else:
            kind = infer_logical_type(series, f"{label}.{name}")
            types[name] = "json" if kind == "str" and name in JSON_COLUMN_NAMES else kind
    return types


_COMPATIBLE: set[tuple[LogicalType, LogicalType]] = {
    # (type in the table, type of the frame) pairs that are stored without changing the table.
    ("str", "json"),
    ("json", "str"),
    ("float", "int"),
}


def merge_types(
    existing: Mapping[str, LogicalType | None],
    new: Mapping[str, LogicalType],
    frame: pd.DataFrame,
    label: str,
) -> tuple[dict[str, LogicalType], dict[str, LogicalType]]:
    """Reconcile a frame's column types with an existing table.

    Returns (types to prepare the frame with, columns to add). An existing column keeps its type; a frame
    column that is entirely null fits any type (a partition without values must not break the table).
    """
    write_types: dict[str, LogicalType] = {}
    to_add: dict[str, LogicalType] = {}
    for name, kind in new.items():
        if name not in existing:
            write_types[name] = kind
            to_add[name] = kind
            continue
        stored = existing[name]
        if stored is None:
            raise WarehouseError(f"{label}.{name}: the table column has a type this warehouse layer cannot write")
        if stored == kind or (stored, kind) in _COMPATIBLE or bool(frame[name].isna().all()):
            write_types[name] = stored
            continue
        raise WarehouseError(
            f"{label}.{name}: the table stores {stored} but this write holds {kind} values "
            f"(dtype {frame[name].dtype}); cast the column in the asset or migrate the table"
        )
    return write_types, to_add


def canonical_json(text: str) -> str:
    """JSON text in canonical form: compact, object keys sorted, non-ASCII kept as is."""
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS).decode("utf-8")


def _first_bad(series: pd.Series, bad: pd.Series) -> tuple[int, Any]:
    position = int(bad.to_numpy().nonzero()[0][0])
    return position, series.iloc[position]


def _snippet(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _prepare_text(series: pd.Series, label: str, is_json: bool) -> pd.Series:
    values = series.astype(object)
    present = values.notna()
    not_str = present & ~values.map(lambda v: isinstance(v, str))
    if not_str.any():
        row, value = _first_bad(values, not_str)
        raise WarehouseError(
            f"{label}, row {row}: expected text, got {type(value).__name__} {_snippet(value)}"
        )
    with_nul = present & values.map(lambda v: isinstance(v, str) and "\x00" in v)
    if with_nul.any():
        row, value = _first_bad(values, with_nul)
        raise WarehouseError(
            f"{label}, row {row}: text holds a NUL character, which PostgreSQL cannot store "
            f"(replace it before writing): {_snippet(value)}"
        )
    out = values.where(present, None)
    if not is_json:
        return out
    canonical: list[str | None] = []
    for row, value in enumerate(out.tolist()):
        if value is None:
            canonical.append(None)
            continue
        try:
            text = canonical_json(value)
        except orjson.JSONDecodeError as error:
            raise WarehouseError(f"{label}, row {row}: not valid JSON ({error}): {_snippet(value)}") from None
        if "\\u0000" in text and _JSON_NUL.search(text):
            raise WarehouseError(
                f"{label}, row {row}: JSON holds \\u0000, which PostgreSQL JSONB cannot store: {_snippet(value)}"
            )
        canonical.append(text)
    return pd.Series(canonical, index=series.index, dtype=object)


def _prepare_column(series: pd.Series, kind: LogicalType, label: str) -> pd.Series:
    try:
        if kind in ("str", "json"):
            return _prepare_text(series, label, is_json=kind == "json")
        if kind == "int":
            if series.dtype == object:
                series = pd.to_numeric(series, errors="raise")
            return series.astype("Int64")
        if kind == "float":
            if series.dtype == object:
                series = pd.to_numeric(series, errors="raise")
            return series.astype("float64")
        if kind == "timestamp":
            return pd.to_datetime(series, utc=True, errors="raise").dt.floor("us").astype(PANDAS_DTYPES[kind])
        if kind == "naive_timestamp":
            converted = pd.to_datetime(series, errors="raise")
            if isinstance(converted.dtype, pd.DatetimeTZDtype):
                raise WarehouseError(f"{label}: the table stores timestamps without time zone")
            return converted.dt.floor("us").astype(PANDAS_DTYPES[kind])
        if kind == "bool":
            return series.astype("boolean")
        if kind == "date":
            converted = pd.to_datetime(series, errors="raise")
            return pd.Series(
                [None if pd.isna(v) else v.date() for v in converted], index=series.index, dtype=object
            )
    except WarehouseError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        raise WarehouseError(f"{label}: values do not fit the column type {kind} ({error})") from None
    raise WarehouseError(f"{label}: unknown column type {kind}")


def prepare_frame(frame: pd.DataFrame, types: Mapping[str, LogicalType], label: str) -> pd.DataFrame:
    """The frame as it is stored: each column cast to its logical type's dtype, JSON canonical, index dropped."""
    return pd.DataFrame(
        {name: _prepare_column(frame[name], kind, f"{label}.{name}") for name, kind in types.items()},
        index=frame.index,
    ).reset_index(drop=True)


def check_rows_in_partitions(
    frame: pd.DataFrame, dimensions: Sequence[TablePartitionDimension] | None, label: str
) -> None:
    """Refuse rows outside the partitions being written: the next write of theirs would not replace them."""
    for dimension in dimensions or ():
        column = dimension.partition_expr
        if column not in frame.columns or frame.empty:
            continue
        values = frame[column]
        if isinstance(dimension.partitions, TimeWindow):
            start, end = dimension.partitions
            if isinstance(values.dtype, pd.DatetimeTZDtype):
                lower, upper = pd.Timestamp(start), pd.Timestamp(end)
            elif pd.api.types.is_datetime64_dtype(values.dtype):
                lower, upper = pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None)
            else:
                continue
            outside = values.isna() | (values < lower) | (values >= upper)
            where = f"the partition window [{start.isoformat()}, {end.isoformat()})"
        else:
            keys = {str(key) for key in dimension.partitions}
            outside = values.isna() | ~values.astype(str).isin(keys)
            where = f"the partitions {sorted(keys)!r}"
        if outside.any():
            row, value = _first_bad(values, outside)
            raise WarehouseError(
                f"{label}: {int(outside.sum())} row(s) have {column} outside {where} being written "
                f"(first: row {row}, {column}={value}); a later write of this partition would not replace them"
            )


def _text_or_none(series: pd.Series) -> pd.Series:
    values = series.astype(object)
    return values.where(values.notna(), None)


def restore_dtypes(
    frame: pd.DataFrame,
    types: Mapping[str, LogicalType | None],
    table: str,
    canonicalise_json: bool,
    schema_order: bool = True,
) -> pd.DataFrame:
    """Cast a loaded frame to the pandas dtypes of its columns' database types (same for both warehouses).

    With `schema_order`, columns of canonical tables come back in schema order, others after them in table
    order (a table extended over time may hold them in another order); otherwise the frame's order is kept.
    """
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        series = frame[name]
        kind = types.get(name)
        if kind in ("str", "json"):
            series = _text_or_none(series)
            if kind == "json" and canonicalise_json:
                series = series.map(lambda v: None if v is None else canonical_json(v)).astype(object)
        elif kind == "int":
            series = series.astype("Int64") if series.dtype != object else pd.to_numeric(series).astype("Int64")
        elif kind == "float":
            series = pd.to_numeric(series).astype("float64")
        elif kind == "timestamp":
            series = pd.to_datetime(series, utc=True).astype(PANDAS_DTYPES["timestamp"])
        elif kind == "naive_timestamp":
            series = pd.to_datetime(series).astype(PANDAS_DTYPES["naive_timestamp"])
        elif kind == "bool":
            series = series.astype("boolean")
        elif kind == "date":
            series = pd.Series(
                [None if pd.isna(v) else (v.date() if isinstance(v, datetime) else v) for v in series],
                index=series.index,
                dtype=object,
            )
        out[name] = series
    restored = pd.DataFrame(out, index=frame.index, columns=list(frame.columns))
    order = [c.name for c in CANONICAL_TABLES.get(table, ()) if c.name in restored.columns]
    if order and schema_order:
        restored = restored[order + [c for c in restored.columns if c not in order]]
    return restored.reset_index(drop=True)


def where_from_mapping(
    filters: Mapping[str, Any], placeholder: str
) -> tuple[str, list[Any]]:
    """An AND of equality filters (None -> IS NULL, list/tuple/set -> IN) with driver placeholders."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in filters.items():
        ref = quote_ident(column)
        if value is None:
            clauses.append(f"{ref} IS NULL")
        elif isinstance(value, list | tuple | set | frozenset):
            values = [_param(v) for v in value]
            if not values:
                clauses.append("FALSE")
            else:
                clauses.append(f"{ref} IN ({', '.join([placeholder] * len(values))})")
                params.extend(values)
        else:
            clauses.append(f"{ref} = {placeholder}")
            params.append(_param(value))
    return " AND ".join(clauses) if clauses else "TRUE", params


def _param(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, date | datetime | str | int | float | bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def select_sql(
    schema: str,
    table: str,
    types: Mapping[str, LogicalType | None],
    *,
    columns: Sequence[str] | None = None,
    condition: str | None = None,
    where: str | Mapping[str, Any] | None = None,
    order_by: Sequence[str] | None = None,
    limit: int | None = None,
    placeholder: str = "?",
    json_as_text: bool = False,
) -> tuple[str, list[Any]]:
    """A SELECT over a table whose column types are known, and its parameters.

    `condition` is trusted SQL (partition filters); `where` is a mapping of equality filters turned into
    parameters, or a trusted SQL string used verbatim. `json_as_text` reads JSON columns as their text.
    """
    unknown = [c for c in [*(columns or ()), *(order_by or ())] if c not in types]
    if isinstance(where, Mapping):
        unknown += [c for c in where if c not in types]
    if unknown:
        raise WarehouseError(f"table {schema}.{table} has no column(s) {sorted(set(unknown))!r}")
    names = list(columns) if columns else list(types)
    selected = ", ".join(
        f"{quote_ident(c)}::text AS {quote_ident(c)}" if json_as_text and types[c] == "json" else quote_ident(c)
        for c in names
    )
    conditions = [condition] if condition else []
    params: list[Any] = []
    if isinstance(where, Mapping):
        clause, params = where_from_mapping(where, placeholder)
        conditions.append(clause)
    elif where:
        conditions.append(where)
    statement = f"SELECT {selected} FROM {qualified_name(schema, table)}"
    if conditions:
        statement += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    if order_by:
        statement += " ORDER BY " + ", ".join(quote_ident(c) for c in order_by)
    if limit is not None:
        statement += f" LIMIT {int(limit)}"
    return statement, params


def output_metadata(context: OutputContext, frame: pd.DataFrame, storage_kind: str) -> dict[str, Any]:
    """Row count and column schema of a write, as the dagster-duckdb-pandas handler reports them.

    A range run writes several partitions at once, so any partitioned write reports partition_row_count.
    """
    counts = (
        TableMetadataSet(partition_row_count=len(frame), storage_kind=storage_kind)
        if context.has_asset_partitions
        else TableMetadataSet(row_count=len(frame), storage_kind=storage_kind)
    )
    schema = TableSchema(columns=[TableColumn(name=str(n), type=str(t)) for n, t in frame.dtypes.items()])
    return {**counts, "dataframe_columns": MetadataValue.table_schema(schema)}


def json_columns_of(context: OutputContext) -> list[str]:
    """Columns the asset's metadata `json_columns` declares as JSON text."""
    declared = (context.definition_metadata or {}).get("json_columns") or []
    if isinstance(declared, str):
        declared = [declared]
    return [str(name) for name in declared]
