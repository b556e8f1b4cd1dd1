"""Schema versions of the warehouse's canonical tables, and the migrations that upgrade older ones.

`schema.SCHEMA_VERSION` is the canonical layout's version. The warehouse stores it twice: in every row's
`schema_version` column (the version the row was written with; migrations do not rewrite it) and per table
in the table `aiobs_schema` (table_name, schema_version, updated_at, migration), which says which migrations
a table has been through. A canonical table without a row there was written before versions were recorded:
it is at version 1.

`MIGRATIONS` is the ordered list of steps from version N to N+1. Both IO managers run `migrate_connection`
before every write (in `ensure_schema_exists`, inside the write's own transaction, so a failed migration
leaves the warehouse as it was); `migrate(settings)` does the same without Dagster. A warehouse whose tables
are at a newer version than this code knows is refused with a clear error: old code must not write there.

Tables that are not canonical (priced_spans, reports, ...) are rebuilt from the canonical ones and get new
columns from the IO managers, which add any column a write brings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiobs_pipeline.schema import SCHEMA_VERSION
from aiobs_pipeline.warehouse.tables import (
    CANONICAL_TABLES,
    SQL_TYPES,
    Dialect,
    LogicalType,
    WarehouseError,
    qualified_name,
    quote_ident,
    sql_logical_type,
)

VERSION_TABLE = "aiobs_schema"
FIRST_VERSION = 1
VERSIONED_TABLES: tuple[str, ...] = tuple(CANONICAL_TABLES)


@dataclass(frozen=True)
class AddColumn:
    """ALTER TABLE ... ADD COLUMN, with an optional default (SQL literal) and backfill of existing rows.

    `default` applies to rows written later without the column and, in both databases, to the existing rows
    when the column is added; `backfill` is an SQL expression over the row's other columns, set where the
    new column is still null. Adding a column that already exists (a write brought it) keeps it as it is.
    """

    table: str
    column: str
    type: LogicalType
    default: str | None = None
    backfill: str | None = None

    def statements(self, schema: str, dialect: Dialect, exists: bool) -> list[str]:
        """The SQL this step runs on a table whose column does (`exists`) or does not exist yet."""
        target = qualified_name(schema, self.table)
        out = []
        if not exists:
            default = f" DEFAULT {self.default}" if self.default is not None else ""
            out.append(f"ALTER TABLE {target} ADD COLUMN {quote_ident(self.column)} "
                       f"{SQL_TYPES[dialect][self.type]}{default}")
        if self.backfill is not None:
            out.append(f"UPDATE {target} SET {quote_ident(self.column)} = {self.backfill} "
                       f"WHERE {quote_ident(self.column)} IS NULL")
        return out


@dataclass(frozen=True)
class Migration:
    """The steps from schema version `version - 1` to `version`."""

    version: int
    description: str
    steps: tuple[AddColumn, ...] = ()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "PII masking at ingest: how many values were masked, per span, quarantined record and file", (
        # Null on older rows: masking did not exist, which is what null (masking off) says.
        AddColumn("spans", "pii_masked", "int"),
        AddColumn("quarantined_spans", "pii_masked", "int"),
        AddColumn("quarantined_feedback", "pii_masked", "int"),
        AddColumn("ingest_audit", "pii_masked", "int"),
        AddColumn("ingest_audit", "pii_masked_by_pattern", "json"),
    )),
    Migration(3, "OTLP/JSON log files: GenAI events joined into spans and plain log records ignored, per file", (
        # 0 on older rows is true: log files were not read (they were quarantined as unknown_format).
        AddColumn("ingest_audit", "events_joined", "int", default="0"),
        AddColumn("ingest_audit", "records_ignored", "int", default="0"),
    )),
)


def check_migrations(migrations: Sequence[Migration], target: int) -> None:
    """Refuse a migration list that does not lead step by step from version 1 to `target`."""
    versions = [m.version for m in migrations]
    if versions != list(range(FIRST_VERSION + 1, target + 1)):
        raise WarehouseError(f"migrations go to versions {versions}, but schema version {target} needs exactly "
                             f"{list(range(FIRST_VERSION + 1, target + 1))}")


@dataclass
class MigrationReport:
    """What one run of the migrations did: per table, (from version, to version, descriptions applied)."""

    where: str
    target: int
    upgraded: dict[str, tuple[int, int, list[str]]] = field(default_factory=dict)
    recorded: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per upgraded or newly recorded table."""
        lines = [f"{table}: schema version {old} -> {new} ({'; '.join(done) or 'no changes to the table'})"
                 for table, (old, new, done) in self.upgraded.items()]
        lines += [f"{table}: recorded at schema version {self.target}" for table in self.recorded]
        return lines


class _Connection:
    """The few operations migrations need, on a DuckDB connection or a psycopg2 connection."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        if self.dialect == "duckdb":
            result = self.connection.execute(statement, list(params))
            return result.fetchall() if result.description else []
        with self.connection.cursor() as cursor:
            cursor.execute(statement.replace("?", "%s"), tuple(params) or None)
            return cursor.fetchall() if cursor.description else []

    def columns(self, schema: str, table: str) -> dict[str, LogicalType | None]:
        rows = self.run(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", (schema, table))
        return {name: sql_logical_type(kind) for name, kind in rows}

    def lock(self, schema: str) -> None:
        if self.dialect == "postgres":
            # Held to the end of the transaction: concurrent writers migrate one after the other.
            self.run("SELECT pg_advisory_xact_lock(hashtext(?))", (f"aiobs migrations {schema}",))


def _recorded(db: _Connection, schema: str) -> dict[str, int] | None:
    """Versions recorded per table, or None when the version table does not exist yet."""
    if not db.columns(schema, VERSION_TABLE):
        return None
    return {name: int(version) for name, version in
            db.run(f"SELECT table_name, schema_version FROM {qualified_name(schema, VERSION_TABLE)}")}


def _refuse_newer(recorded: dict[str, int], target: int, where: str, schema: str) -> None:
    newer = {table: version for table, version in recorded.items() if version > target}
    if newer:
        tables = ", ".join(f"{schema}.{t} (version {v})" for t, v in sorted(newer.items()))
        raise WarehouseError(
            f"the warehouse {where} holds tables at a newer schema version than this aiobs code knows "
            f"(schema version {target}): {tables}. Upgrade aiobs before writing to it, or point the warehouse "
            "settings at another database; older code must not write tables it does not understand"
        )


def migrate_connection(
    connection: Any,
    dialect: Dialect,
    schema: str,
    where: str,
    migrations: Sequence[Migration] = MIGRATIONS,
    target: int = SCHEMA_VERSION,
) -> MigrationReport:
    """Bring the canonical tables of `schema` to version `target` on an open connection (caller commits).

    Runs inside the caller's transaction; `where` names the warehouse in messages. Tables that do not exist
    yet are recorded at `target` (the code creates them in its own layout). Returns what was done.
    """
    check_migrations(migrations, target)
    db = _Connection(connection, dialect)
    report = MigrationReport(where, target)
    recorded = _recorded(db, schema)
    if recorded is not None:
        _refuse_newer(recorded, target, where, schema)
        if all(recorded.get(table) == target for table in VERSIONED_TABLES):
            return report  # the common case: one small query per write
    db.lock(schema)
    db.run(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    db.run(f"CREATE TABLE IF NOT EXISTS {qualified_name(schema, VERSION_TABLE)} ("
           f"table_name {SQL_TYPES[dialect]['str']} PRIMARY KEY, schema_version {SQL_TYPES[dialect]['int']} NOT NULL, "
           f"updated_at {SQL_TYPES[dialect]['timestamp']} NOT NULL, migration {SQL_TYPES[dialect]['str']})")
    recorded = _recorded(db, schema) or {}
    _refuse_newer(recorded, target, where, schema)
    now = datetime.now(UTC)
    for table in VERSIONED_TABLES:
        if recorded.get(table) == target:
            continue
        columns = db.columns(schema, table)
        if not columns:
            _record(db, schema, table, target, now, "created by this code version")
            report.recorded.append(table)
            continue
        current = recorded.get(table, FIRST_VERSION)
        done = []
        for migration in migrations:
            if migration.version <= current or migration.version > target:
                continue
            for step in (s for s in migration.steps if s.table == table):
                for statement in step.statements(schema, dialect, exists=step.column in columns):
                    db.run(statement)
                columns[step.column] = step.type
            done.append(f"v{migration.version}: {migration.description}")
        _record(db, schema, table, target, now, "; ".join(done) or None)
        report.upgraded[table] = (current, target, done)
    return report


def _record(db: _Connection, schema: str, table: str, version: int, now: datetime, note: str | None) -> None:
    db.run(
        f"INSERT INTO {qualified_name(schema, VERSION_TABLE)} (table_name, schema_version, updated_at, migration) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (table_name) DO UPDATE SET schema_version = excluded.schema_version, "
        "updated_at = excluded.updated_at, migration = excluded.migration",
        (table, version, now, note),
    )


def table_versions(connection: Any, dialect: Dialect, schema: str) -> dict[str, int]:
    """The recorded schema version of each canonical table (unrecorded existing tables count as version 1)."""
    db = _Connection(connection, dialect)
    recorded = _recorded(db, schema) or {}
    return {table: recorded.get(table, FIRST_VERSION) for table in VERSIONED_TABLES
            if table in recorded or db.columns(schema, table)}


def migrate_duckdb(path: str, schema: str, **options: Any) -> MigrationReport:
    """Migrate a DuckDB warehouse file in one transaction (the file is created if missing)."""
    import duckdb  # noqa: PLC0415

    from aiobs_pipeline.warehouse.duckdb import check_duckdb_names  # noqa: PLC0415 - duckdb.py imports us

    check_duckdb_names(path, schema)
    try:
        connection = duckdb.connect(str(path))
    except duckdb.Error as error:
        raise WarehouseError(f"cannot open DuckDB warehouse {path} for writing ({error}); is a run writing it?") \
            from None
    try:
        connection.begin()
        try:
            report = migrate_connection(connection, "duckdb", schema, f"DuckDB file {path}", **options)
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.close()
    return report


def migrate_postgres(url: str, schema: str, **options: Any) -> MigrationReport:
    """Migrate the canonical tables of a PostgreSQL schema in one transaction."""
    from aiobs_pipeline.warehouse.postgres import redact_url, transaction  # noqa: PLC0415

    with transaction(url) as connection:
        return migrate_connection(connection, "postgres", schema,
                                  f"PostgreSQL {redact_url(url)} schema {schema}", **options)


def migrate(settings: Any) -> MigrationReport:
    """Bring the warehouse the settings select to this code's schema version (what the IO managers do
    before each write), e.g. before pointing BI tools at an upgraded warehouse."""
    if settings.warehouse.kind == "duckdb":
        return migrate_duckdb(str(settings.duckdb_path), settings.warehouse.schema_name)
    secret = settings.warehouse.postgres_url
    if secret is None:
        raise WarehouseError("warehouse.kind is 'postgres' but no PostgreSQL URL is set "
                             "(warehouse.postgres_url, e.g. from AIOBS_WAREHOUSE__POSTGRES_URL)")
    return migrate_postgres(secret.get_secret_value(), settings.warehouse.schema_name)
