"""The warehouse contract: one suite, run through Dagster against DuckDB and PostgreSQL.

Both warehouses must give back exactly what was written, with the canonical dtypes (UTC timestamps, nullable
Int64, float64, JSON as canonical text), replace exactly the partitions a run covers (also for single-run
backfills over a range), cope with empty and all-null partitions and new columns, keep text intact through
COPY, and leave the previous data in place when a write fails.
"""

# No `from __future__ import annotations`: Dagster reads the assets' context and resource annotations.
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pandas as pd
import psycopg2
import pytest
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    EnvVar,
    ExecuteInProcessResult,
    HourlyPartitionsDefinition,
    ResourceParam,
    asset,
    materialize,
)
from pandas.testing import assert_frame_equal

from aiobs_pipeline.schema import SPAN_COLUMN_NAMES, SPAN_COLUMNS, conform, empty_frame
from aiobs_pipeline.warehouse import (
    DuckDBWarehouseTypeHandler,
    PostgresPandasTypeHandler,
    WarehouseError,
    read_table,
    warehouse_io_manager,
)

HOURS = HourlyPartitionsDefinition(start_date="2024-05-01-00:00", end_date="2024-05-01-06:00", timezone="UTC")
HOUR = [pd.Timestamp("2024-05-01T00:00:00Z") + pd.Timedelta(hours=i) for i in range(6)]
SINGLE_RUN = BackfillPolicy.single_run()


def key(hour: int) -> str:
    """Partition key of hour N of the test day."""
    return f"2024-05-01-{hour:02d}:00"


class Source:
    """What the test assets return, set by each test: table name -> function(hours) -> DataFrame."""

    def __init__(self, **builders: Callable[[list[pd.Timestamp]], pd.DataFrame]) -> None:
        self.builders = builders
        self.loaded: dict[str, pd.DataFrame] = {}

    def frame(self, table: str, hours: list[pd.Timestamp]) -> pd.DataFrame:
        """The frame an asset returns for these partition hours."""
        return self.builders[table](hours)


def _run_hours(context: AssetExecutionContext) -> list[pd.Timestamp]:
    window = context.partition_time_window
    return list(pd.date_range(window.start, window.end, freq="h", inclusive="left"))


@asset(partitions_def=HOURS, metadata={"partition_expr": "export_hour"}, backfill_policy=SINGLE_RUN)
def spans(context: AssetExecutionContext, source: ResourceParam[Source]) -> pd.DataFrame:
    """Canonical spans of the run's hours."""
    return source.frame("spans", _run_hours(context))


@asset(partitions_def=HOURS, metadata={"partition_expr": "export_hour"}, backfill_policy=SINGLE_RUN)
def spans_seen(spans: pd.DataFrame, source: ResourceParam[Source]) -> None:
    """Downstream asset: records the spans it was given (the run's partition range)."""
    source.loaded["spans_seen"] = spans


@asset
def span_totals(spans: pd.DataFrame, source: ResourceParam[Source]) -> None:
    """Unpartitioned downstream asset: records every span partition it was given."""
    source.loaded["span_totals"] = spans


@asset(
    partitions_def=HOURS,
    metadata={"partition_expr": "hour", "json_columns": ["breakdown"]},
    backfill_policy=SINGLE_RUN,
)
def hourly_costs(context: AssetExecutionContext, source: ResourceParam[Source]) -> pd.DataFrame:
    """A non-canonical partitioned table: types from dtypes, one JSON column declared in metadata."""
    return source.frame("hourly_costs", _run_hours(context))


@asset(metadata={"json_columns": ["details"]})
def cost_report(source: ResourceParam[Source]) -> pd.DataFrame:
    """An unpartitioned table, replaced as a whole on every write."""
    return source.frame("cost_report", [])


ASSETS = [spans, spans_seen, span_totals, hourly_costs, cost_report]


def as_json(value: Any) -> str:
    """JSON text in the canonical form the warehouse stores (compact, keys sorted)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def span_frame(hours: Sequence[pd.Timestamp], variant: str = "a", per_hour: int = 2, **columns: Any) -> pd.DataFrame:
    """Canonical spans for the given hours; keyword arguments set a column to a value or a list of values."""
    rows = []
    for hour in hours:
        for i in range(per_hour):
            start = hour + pd.Timedelta(minutes=i, microseconds=123_456 + i)
            rows.append({
                "trace_id": f"trace-{variant}-{hour:%H}",
                "span_id": f"{variant}-{hour:%H}-{i}",
                "parent_span_id": None if i == 0 else f"{variant}-{hour:%H}-0",
                "name": "chat gpt-4o",
                "kind": "llm",
                "start_time": start,
                "end_time": start + pd.Timedelta(milliseconds=1500) if i % 2 == 0 else None,
                "latency_ms": 1500.25 if i % 2 == 0 else None,
                "status": "error" if i == 2 else "ok",
                "error_message": "rate limited" if i == 2 else None,
                "provider": "openai",
                "model": "gpt-4o-2024-08-06",
                "temperature": 0.7,
                "max_tokens": None if i % 2 else 256,
                "request_params": as_json({"seed": 7, "stop": ["\n"]}) if i == 0 else None,
                "input_messages": as_json([{"content": f"question {i} ({variant})", "role": "user"}]),
                "output_text": f"answer {i} ({variant})",
                "input_tokens": 100 + i,
                "output_tokens": 20 * i,
                "total_tokens": 120 + 21 * i,
                "cached_input_tokens": 2**40 if i == 1 else None,
                "reported_cost_usd": 0.000123 * (i + 1),
                "user_id": f"user-{i}",
                "metadata": as_json({"hour": hour.hour, "variant": variant}),
                "source_format": "native",
                "source_file": f"{hour:%Y/%m/%d/%H}/export.jsonl",
                "source_line": i + 1,
                "export_hour": hour,
                "schema_version": 1,
            })
    if not rows:
        return empty_frame(SPAN_COLUMNS)
    frame = pd.DataFrame(rows, columns=list(SPAN_COLUMN_NAMES))
    for name, value in columns.items():
        frame[name] = value
    return conform(frame, SPAN_COLUMNS)


def cost_frame(hours: Sequence[pd.Timestamp], calls: bool = True, discount: bool = False) -> pd.DataFrame:
    """A non-canonical table: tz timestamps, text, nullable ints, floats with NaN/inf, booleans, JSON."""
    rows = []
    for hour in hours:
        for model, cost in (("gpt-4o", 1.25), ("claude-3-5-sonnet", np.nan), ("o1", np.inf)):
            rows.append({
                "hour": hour,
                "model": model,
                "calls": (3 if model != "o1" else None) if calls else None,
                "cost_usd": cost,
                "over_budget": model == "o1",
                "breakdown": as_json({"input": 1.0, "output": 0.25}) if model == "gpt-4o" else None,
                "note": None,
            })
    frame = pd.DataFrame(rows, columns=["hour", "model", "calls", "cost_usd", "over_budget", "breakdown", "note"])
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True).astype("datetime64[ns, UTC]")
    frame["calls"] = frame["calls"].astype("Int64")
    frame["cost_usd"] = frame["cost_usd"].astype("float64")
    frame["over_budget"] = frame["over_budget"].astype("boolean")
    frame["note"] = frame["note"].astype(object)
    if discount:
        frame["discount_usd"] = 0.5
    return frame


def report_frame(rows: int, label: str) -> pd.DataFrame:
    """Rows of the unpartitioned report table (also dates and naive timestamps, which spans lack)."""
    return pd.DataFrame({
        "rank": pd.array(range(1, rows + 1), dtype="Int64"),
        "label": [f"{label} {i}" for i in range(rows)],
        "share": [1 / (i + 1) for i in range(rows)],
        "details": [as_json({"label": label, "n": i}) for i in range(rows)],
        "day": [date(2024, 5, 1 + i) if i else None for i in range(rows)],
        "local_time": pd.Series([pd.Timestamp(2024, 5, 1, 12, i, 30, 5) for i in range(rows)], dtype="datetime64[ns]"),
    })


def by_span(frame: pd.DataFrame) -> pd.DataFrame:
    """Spans in a stable order for comparison."""
    return frame.sort_values(["export_hour", "span_id"]).reset_index(drop=True)


def by_hour_model(frame: pd.DataFrame) -> pd.DataFrame:
    """hourly_costs rows in a stable order for comparison."""
    return frame.sort_values(["hour", "model"]).reset_index(drop=True)


@dataclass
class Warehouse:
    """One warehouse under test: how to build its IO manager, run assets and read tables back."""

    kind: str
    settings: dict[str, Any]
    runs: list[ExecuteInProcessResult] = field(default_factory=list)

    def io_manager(self) -> Any:
        """A fresh IO manager, as the Definitions would build it."""
        return warehouse_io_manager(self.kind, **self.settings)

    def run(
        self,
        selection: Sequence[str],
        source: Source,
        *,
        hour: int | None = None,
        hours: tuple[int, int] | None = None,
        succeed: bool = True,
    ) -> ExecuteInProcessResult:
        """Materialise the selected assets for one partition, a partition range (one run) or unpartitioned."""
        tags = {}
        if hours is not None:
            tags = {
                "dagster/asset_partition_range_start": key(hours[0]),
                "dagster/asset_partition_range_end": key(hours[1]),
            }
        result = materialize(
            ASSETS,
            selection=list(selection),
            resources={"io_manager": self.io_manager(), "source": source},
            partition_key=key(hour) if hour is not None else None,
            tags=tags,
            raise_on_error=False,
        )
        assert result.success is succeed, failure_text(result) or f"the run was expected to fail: {selection}"
        return result

    def read(self, table: str, **options: Any) -> pd.DataFrame:
        """Read a table with the CLI's read-only helper."""
        return read_table(self.kind, **self.settings, table=table, **options)


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every step failure of a run, with causes, as one string."""
    return "\n".join(event.step_failure_data.error.to_string() for event in result.get_step_failure_events())


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """The warehouse under test: a DuckDB file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "duckdb":
        settings = {"duckdb_path": str(tmp_path / "warehouse.duckdb"), "postgres_url": None, "schema": "aiobs"}
    else:
        settings = {
            "duckdb_path": str(tmp_path / "unused.duckdb"),
            "postgres_url": request.getfixturevalue("postgres_url"),
            "schema": request.getfixturevalue("postgres_schema"),
        }
    return Warehouse(request.param, settings)


def test_spans_round_trip_with_canonical_dtypes(warehouse: Warehouse) -> None:
    written = span_frame(HOUR[0:2], per_hour=3)
    source = Source(spans=lambda hours: span_frame(hours, per_hour=3))
    warehouse.run(["spans", "spans_seen"], source, hours=(0, 1))

    loaded = source.loaded["spans_seen"]
    assert list(loaded.columns) == list(SPAN_COLUMN_NAMES)
    assert loaded.dtypes.equals(empty_frame(SPAN_COLUMNS).dtypes)
    assert_frame_equal(by_span(loaded), by_span(written))
    assert str(loaded["export_hour"].dt.tz) == "UTC"
    assert loaded["max_tokens"].isna().sum() == 2 and loaded["cached_input_tokens"].max() == 2**40
    assert isinstance(loaded["input_messages"].iloc[0], str)
    assert_frame_equal(by_span(warehouse.read("spans")), by_span(written))


def test_non_canonical_table_round_trip(warehouse: Warehouse) -> None:
    source = Source(hourly_costs=cost_frame)
    warehouse.run(["hourly_costs"], source, hours=(0, 1))

    loaded = by_hour_model(warehouse.read("hourly_costs"))
    assert_frame_equal(loaded, by_hour_model(cost_frame(HOUR[0:2])))
    assert loaded["cost_usd"].isna().sum() == 2 and np.isinf(loaded["cost_usd"]).sum() == 2
    assert loaded["note"].tolist() == [None] * 6


def test_rematerialising_a_partition_is_idempotent(warehouse: Warehouse) -> None:
    source = Source(spans=span_frame)
    warehouse.run(["spans"], source, hour=2)
    warehouse.run(["spans"], source, hour=2)

    stored = warehouse.read("spans")
    assert len(stored) == 2 and stored["span_id"].is_unique
    assert_frame_equal(by_span(stored), by_span(span_frame([HOUR[2]])))


def test_range_run_replaces_exactly_its_partitions(warehouse: Warehouse) -> None:
    warehouse.run(["spans"], Source(spans=lambda hours: span_frame(hours, "a", 2)), hours=(0, 3))
    source = Source(spans=lambda hours: span_frame(hours, "b", 3))
    warehouse.run(["spans", "spans_seen"], source, hours=(1, 2))

    stored = warehouse.read("spans")
    expected = pd.concat([span_frame([HOUR[0], HOUR[3]], "a", 2), span_frame(HOUR[1:3], "b", 3)])
    assert_frame_equal(by_span(stored), by_span(expected))
    # The downstream range run loaded exactly its two partitions.
    assert_frame_equal(by_span(source.loaded["spans_seen"]), by_span(span_frame(HOUR[1:3], "b", 3)))

    warehouse.run(["span_totals"], source)
    assert_frame_equal(by_span(source.loaded["span_totals"]), by_span(expected))


def test_empty_partitions(warehouse: Warehouse) -> None:
    empty = Source(spans=lambda hours: span_frame(hours, per_hour=0))
    # The very first write is empty: the table must still exist, with its columns.
    warehouse.run(["spans", "spans_seen"], empty, hour=0)
    stored = warehouse.read("spans")
    assert len(stored) == 0 and stored.dtypes.equals(empty_frame(SPAN_COLUMNS).dtypes)
    assert empty.loaded["spans_seen"].dtypes.equals(empty_frame(SPAN_COLUMNS).dtypes)

    warehouse.run(["spans"], Source(spans=span_frame), hours=(1, 2))
    warehouse.run(["spans"], empty, hour=1)
    assert_frame_equal(by_span(warehouse.read("spans")), by_span(span_frame([HOUR[2]])))


TRICKY_TEXT = [
    'quotes "double" and \'single\', commas, and a "quoted, field"',
    "line one\nline two\r\nline three\ttabbed",
    "backslashes \\ \\\\ \\N \\n \\.",
    "a lone end-of-copy marker on its own line:\n\\.\nafter it",
    "unicode: héllo wörld — 中文 русский 😀 \u2028 \u00a0",
    "",
    "   leading and trailing spaces   ",
    "'; DROP TABLE spans; --",
    r"\N",
]


def test_text_and_json_survive_the_round_trip(warehouse: Warehouse) -> None:
    messages = [
        as_json([{"content": text, "role": "user"}, {"content": "ok", "role": "assistant"}]) for text in TRICKY_TEXT
    ]
    def tricky(hours: list[pd.Timestamp]) -> pd.DataFrame:
        return span_frame(
            hours, per_hour=len(TRICKY_TEXT), output_text=TRICKY_TEXT, input_messages=messages,
            user_id=[None, "", *TRICKY_TEXT[2:]],
            metadata='{ "z": 1,\n "a": [1.0, 2.50, 1e20], "é": "\\u00e9\\ud83d\\ude00" }',
        )

    warehouse.run(["spans"], Source(spans=tricky), hour=4)

    stored = by_span(warehouse.read("spans"))
    expected = by_span(tricky([HOUR[4]]))
    # JSON is stored in canonical form: compact, keys sorted, escapes decoded.
    expected["metadata"] = '{"a":[1.0,2.5,1e+20],"z":1,"é":"é😀"}'
    assert_frame_equal(stored, expected)
    assert stored["user_id"].iloc[0] is None and stored["user_id"].iloc[1] == ""


def test_all_null_partition_does_not_fix_column_types(warehouse: Warehouse) -> None:
    optional = [c.name for c in SPAN_COLUMNS if not c.required]
    def nulls(hours: list[pd.Timestamp]) -> pd.DataFrame:
        return span_frame(hours, **dict.fromkeys(optional))

    warehouse.run(["spans"], Source(spans=nulls), hour=0)
    warehouse.run(["spans"], Source(spans=span_frame), hour=1)
    warehouse.run(["hourly_costs"], Source(hourly_costs=lambda hours: cost_frame(hours, calls=False)), hour=0)
    warehouse.run(["hourly_costs"], Source(hourly_costs=cost_frame), hour=1)

    expected = pd.concat([nulls([HOUR[0]]), span_frame([HOUR[1]])])
    assert_frame_equal(by_span(warehouse.read("spans")), by_span(expected))
    costs = pd.concat([cost_frame([HOUR[0]], calls=False), cost_frame([HOUR[1]])])
    assert_frame_equal(by_hour_model(warehouse.read("hourly_costs")), by_hour_model(costs))


def test_a_new_column_is_added_to_the_table(warehouse: Warehouse) -> None:
    warehouse.run(["hourly_costs"], Source(hourly_costs=cost_frame), hour=0)
    warehouse.run(["hourly_costs"], Source(hourly_costs=lambda hours: cost_frame(hours, discount=True)), hour=1)

    stored = by_hour_model(warehouse.read("hourly_costs"))
    assert list(stored.columns)[-1] == "discount_usd" and stored["discount_usd"].dtype == "float64"
    assert stored["discount_usd"].isna().tolist() == [True] * 3 + [False] * 3


def test_a_changed_column_type_is_refused_and_nothing_changes(warehouse: Warehouse) -> None:
    warehouse.run(["hourly_costs"], Source(hourly_costs=cost_frame), hour=0)
    def text_calls(hours: list[pd.Timestamp]) -> pd.DataFrame:
        return cost_frame(hours).assign(calls=["three", "four", None])

    result = warehouse.run(["hourly_costs"], Source(hourly_costs=text_calls), hour=0, succeed=False)
    assert "hourly_costs.calls: the table stores int but this write holds str" in failure_text(result)
    assert_frame_equal(by_hour_model(warehouse.read("hourly_costs")), by_hour_model(cost_frame([HOUR[0]])))


def test_unpartitioned_asset_replaces_the_whole_table(warehouse: Warehouse) -> None:
    warehouse.run(["cost_report"], Source(cost_report=lambda _: report_frame(3, "first")))
    warehouse.run(["cost_report"], Source(cost_report=lambda _: report_frame(2, "second")))

    assert_frame_equal(warehouse.read("cost_report", order_by=["rank"]), report_frame(2, "second"))


def _fail_after_first_row(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    handler = DuckDBWarehouseTypeHandler if kind == "duckdb" else PostgresPandasTypeHandler
    original = handler._insert

    def insert_one_row_then_fail(self: Any, connection: Any, table_slice: Any, frame: pd.DataFrame, *rest: Any):
        original(self, connection, table_slice, frame.iloc[:1], *rest)
        raise RuntimeError("simulated crash in the middle of the write")

    monkeypatch.setattr(handler, "_insert", insert_one_row_then_fail)


def test_a_failed_write_leaves_the_previous_data(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse.run(["spans"], Source(spans=span_frame), hours=(2, 3))
    warehouse.run(["cost_report"], Source(cost_report=lambda _: report_frame(3, "first")))

    with monkeypatch.context() as patch:
        _fail_after_first_row(patch, warehouse.kind)
        crashed = warehouse.run(["spans"], Source(spans=lambda h: span_frame(h, "b")), hour=2, succeed=False)
        assert "simulated crash" in failure_text(crashed)
        warehouse.run(["cost_report"], Source(cost_report=lambda _: report_frame(1, "x")), succeed=False)

    assert_frame_equal(by_span(warehouse.read("spans")), by_span(span_frame(HOUR[2:4])))
    assert_frame_equal(warehouse.read("cost_report", order_by=["rank"]), report_frame(3, "first"))

    invalid = Source(spans=lambda hours: span_frame(hours, "b", metadata=['{"ok": true}', "{not json"]))
    result = warehouse.run(["spans"], invalid, hour=2, succeed=False)
    assert "spans.metadata, row 1: not valid JSON" in failure_text(result)
    assert_frame_equal(by_span(warehouse.read("spans")), by_span(span_frame(HOUR[2:4])))


def test_rows_outside_the_partition_are_refused(warehouse: Warehouse) -> None:
    warehouse.run(["spans"], Source(spans=span_frame), hour=2)
    stray = Source(spans=lambda hours: span_frame(hours, "b", export_hour=[HOUR[2], HOUR[3]]))

    result = warehouse.run(["spans"], stray, hour=2, succeed=False)
    assert "1 row(s) have export_hour outside the partition window" in failure_text(result)
    assert_frame_equal(by_span(warehouse.read("spans")), by_span(span_frame([HOUR[2]])))


def test_text_with_nul_is_refused_by_both_warehouses(warehouse: Warehouse) -> None:
    nul = Source(spans=lambda hours: span_frame(hours, output_text=["fine", "bad \x00 byte"]))
    result = warehouse.run(["spans"], nul, hour=0, succeed=False)
    assert "spans.output_text, row 1: text holds a NUL character" in failure_text(result)


def test_read_table_filters_columns_and_errors(warehouse: Warehouse) -> None:
    warehouse.run(["spans"], Source(spans=lambda hours: span_frame(hours, per_hour=3)), hours=(0, 1))

    picked = warehouse.read(
        "spans", where={"span_id": ["a-00-1", "a-01-2"], "status": "ok"}, columns=["span_id", "export_hour"]
    )
    assert picked.to_dict("list") == {"span_id": ["a-00-1"], "export_hour": [HOUR[0]]}
    roots = warehouse.read("spans", where={"parent_span_id": None}, order_by=["export_hour"])
    assert roots["span_id"].tolist() == ["a-00-0", "a-01-0"]
    assert len(warehouse.read("spans", where="input_tokens > 100", limit=3)) == 3
    assert len(warehouse.read("spans", where={"export_hour": HOUR[1]})) == 3
    with pytest.raises(WarehouseError, match="has no column"):
        warehouse.read("spans", where={"no_such_column": 1})
    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.read("no_such_table")


EXPECTED_SQL_TYPES = {
    "duckdb": {
        "trace_id": "VARCHAR", "start_time": "TIMESTAMP WITH TIME ZONE", "latency_ms": "DOUBLE",
        "max_tokens": "BIGINT", "input_messages": "JSON", "metadata": "JSON",
        "breakdown": "JSON", "over_budget": "BOOLEAN", "note": "VARCHAR",
    },
    "postgres": {
        "trace_id": "text", "start_time": "timestamp with time zone", "latency_ms": "double precision",
        "max_tokens": "bigint", "input_messages": "jsonb", "metadata": "jsonb",
        "breakdown": "jsonb", "over_budget": "boolean", "note": "text",
    },
}


def _sql_types(warehouse: Warehouse, table: str) -> dict[str, str]:
    query = (
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{warehouse.settings['schema']}' AND table_name = '{table}'"
    )
    if warehouse.kind == "duckdb":
        with duckdb.connect(warehouse.settings["duckdb_path"], read_only=True) as connection:
            return dict(connection.execute(query).fetchall())
    with psycopg2.connect(warehouse.settings["postgres_url"]) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        rows = dict(cursor.fetchall())
    connection.close()
    return rows


def test_column_types_follow_the_schema(warehouse: Warehouse) -> None:
    warehouse.run(["spans"], Source(spans=span_frame), hour=0)
    warehouse.run(["hourly_costs"], Source(hourly_costs=cost_frame), hour=0)

    types = {**_sql_types(warehouse, "spans"), **_sql_types(warehouse, "hourly_costs")}
    assert {name: types[name] for name in EXPECTED_SQL_TYPES[warehouse.kind]} == EXPECTED_SQL_TYPES[warehouse.kind]


@pytest.mark.postgres
def test_postgres_url_from_envvar(postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOBS_TEST_WAREHOUSE_URL", postgres_url)
    io_manager = warehouse_io_manager(
        "postgres", duckdb_path="unused.duckdb", postgres_url=EnvVar("AIOBS_TEST_WAREHOUSE_URL"),
        schema=postgres_schema,
    )
    result = materialize(
        ASSETS, selection=["spans"], partition_key=key(0),
        resources={"io_manager": io_manager, "source": Source(spans=span_frame)},
    )
    assert result.success
    stored = read_table(
        "postgres", duckdb_path="unused.duckdb", postgres_url=EnvVar("AIOBS_TEST_WAREHOUSE_URL"),
        schema=postgres_schema, table="spans",
    )
    assert len(stored) == 2


def test_postgres_errors_never_show_the_password() -> None:
    with pytest.raises(WarehouseError) as error:
        read_table(
            "postgres", duckdb_path="unused.duckdb", postgres_url="postgresql://aiobs:s3cr3t-pw@127.0.0.1:1/x",
            schema="aiobs", table="spans",
        )
    assert "s3cr3t-pw" not in str(error.value) and "aiobs:***@127.0.0.1:1" in str(error.value)


def test_duckdb_reader_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    settings = {"duckdb_path": str(path), "schema": "aiobs"}
    with pytest.raises(WarehouseError, match="does not exist"):
        read_table("duckdb", **settings, table="spans")
    assert not path.exists(), "a read must never create the warehouse file"

    warehouse = Warehouse("duckdb", settings)
    warehouse.run(["spans"], Source(spans=span_frame), hour=0)
    assert len(warehouse.read("spans")) == 2
    # The reader closed its connection: a writer can open the file again.
    warehouse.run(["spans"], Source(spans=span_frame), hour=1)

    # While another process writes, the reader fails with a clear message instead of waiting or locking.
    writer = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        with pytest.raises(WarehouseError, match="a run may be writing it"):
            read_table("duckdb", **settings, table="spans")
    finally:
        writer.communicate("", timeout=30)


def test_warehouse_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ambiguous reference"):
        warehouse_io_manager("duckdb", duckdb_path=str(tmp_path / "aiobs.duckdb"), schema="aiobs")
    with pytest.raises(ValueError, match="not one of duckdb, postgres"):
        warehouse_io_manager("sqlite", duckdb_path=str(tmp_path / "w.duckdb"), schema="aiobs")
    with pytest.raises(ValueError, match="no PostgreSQL URL"):
        warehouse_io_manager("postgres", duckdb_path=str(tmp_path / "w.duckdb"), postgres_url=None, schema="aiobs")


@pytest.mark.postgres
def test_postgres_tables_are_indexed_on_their_partition_column(postgres_url: str, postgres_schema: str,
                                                               tmp_path: Path) -> None:
    """Replacing or loading one hour must not scan every hour: the partition column carries an index."""
    warehouse = Warehouse("postgres", {"duckdb_path": str(tmp_path / "unused.duckdb"), "postgres_url": postgres_url,
                                       "schema": postgres_schema})
    source = Source(spans=span_frame, hourly_costs=cost_frame)
    warehouse.run(["spans", "hourly_costs"], source, hour=0)
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        # A table from an earlier version, without the index, gets it on its next write.
        cursor.execute(f'DROP INDEX "{postgres_schema}".hourly_costs_hour_idx')
    warehouse.run(["spans", "hourly_costs"], source, hour=1)
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s "
                       "AND tablename <> 'aiobs_schema' ORDER BY tablename", (postgres_schema,))
        indexes = cursor.fetchall()
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(f'EXPLAIN SELECT * FROM "{postgres_schema}".spans WHERE export_hour >= %s',
                       (HOUR[1].to_pydatetime(),))
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert [table for table, _ in indexes] == ["hourly_costs", "spans"], indexes
    assert indexes[0][1].endswith("(hour)") and indexes[1][1].endswith("(export_hour)")
    assert "spans_export_hour_idx" in plan
