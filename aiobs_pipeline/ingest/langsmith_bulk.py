"""Reader for LangSmith bulk exports: Parquet files of runs, read columnar with pyarrow.

LangSmith's bulk export ("Bulk export trace data") writes the runs of a project to an S3-compatible bucket as
Parquet, one folder per day (`.../resource=runs/year=2026/month=12/day=7/<file>.parquet`), with the fields of
its Run data format: ids and timestamps as columns, `inputs`, `outputs`, `extra` and `events` as JSON text,
`tags` as a list of strings, run-level token counts and costs as numbers. The mapping table is
docs/formats.md ("langsmith_bulk").

Semantics are the LangSmith JSON reader's (`ingest/langsmith.py`), whose helpers this module calls for the
nested JSON values: run_type -> kind, message, document and usage extraction, and the roll-up rule (run-level
`prompt_tokens` / `total_cost` aggregate a run and all its children, so they are the span's own usage only for
`llm` and `embedding` runs; other runs keep them in `metadata.langsmith.aggregate_usage`, and
`costs/pricing.py` never prices a model span twice).

Columnar: the scalar columns (ids, names, kinds, times, status, errors, run-level tokens and costs, tags,
project) are mapped with pyarrow / pandas over whole columns. The JSON columns are parsed per value (orjson,
only non-null values); the per-row work is limited to what those nested values say and to the span's
`metadata` JSON. A bulk export has no patches, so there is no partition-wide post-processing.

Window: a daily file holds runs of 24 export hours. `read_stream(..., window=(start, end))` keeps the runs whose
own `start_time` is in `[start, end)`, skipping whole row groups by their `start_time` statistics, so an hour's
partition reads only the row groups that can hold its runs. Rows keep their 1-based row number in the file
(`source_line`) whatever the window.

Value problems (a missing id or name, a negative count, an end before the start, a non-numeric cost) are left
to the shared row rules; a file that is not Parquet, is truncated, or is Parquet without the run columns is
reported here, naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aiobs_pipeline.ingest import langsmith
from aiobs_pipeline.ingest.base import Reject, parse_time
from aiobs_pipeline.ingest.files import UnreadableFile
from aiobs_pipeline.ingest.messages import dump_json, kind_from_name

FORMAT = "langsmith_bulk"
PARQUET_MAGIC = b"PAR1"
SUFFIXES = (".parquet",)
# A Parquet file is a run export when it has these columns; `export_fields` may leave out any other.
REQUIRED_COLUMNS = ("id", "run_type")
# Run data format fields LangSmith writes as JSON text.
JSON_COLUMNS = ("inputs", "outputs", "extra", "events", "serialized")
TOKEN_DETAIL_COLUMNS = ("prompt_token_details", "completion_token_details")
RUN_TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens")
RUN_COST_COLUMNS = ("total_cost", "prompt_cost", "completion_cost")
USAGE_COLUMNS = ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens", "cache_write_tokens",
                 "reasoning_tokens", "reported_cost_usd")
# Columns of the file this module maps; every other non-empty value goes to metadata.langsmith by its name.
MAPPED_COLUMNS = langsmith.MAPPED_RUN_KEYS
Window = tuple[datetime, datetime]
# extra.metadata keys `langsmith._params` reads: a run whose metadata has none of them has no params there.
PARAM_KEYS = frozenset(k for keys in langsmith.PARAM_COLUMNS.values() for k in keys)


@dataclass
class BulkRead:
    """What came out of one bulk-export file: candidate rows (for the row rules), rejects and counts."""

    rows: pd.DataFrame | None = None
    rejects: list[Reject] = field(default_factory=list)
    # Rows of the file inside the window (all rows without one): the records this read accounts for.
    records_read: int = 0
    rows_in_file: int = 0
    row_groups_read: int = 0
    row_groups_skipped: int = 0
    file_error: str | None = None


def claims(name: str, head: bytes) -> bool:
    """True when this reader must read the file: it starts with the Parquet magic or is named `.parquet`."""
    return head[:4] == PARQUET_MAGIC or name.lower().endswith(SUFFIXES)


def matches(value: Any) -> bool:
    """Parsed JSON records are never bulk exports (those are detected by `claims`, from the file's bytes)."""
    return False


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _open(stream: IO[bytes], name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFile(f"{name}: not a readable Parquet file (truncated or not Parquet): {exc}") from exc


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _may_hold(pf: pq.ParquetFile, group: int, window: Window, keep_undated: bool) -> bool:
    """False only when the row group's start_time statistics prove that none of its rows is in the window."""
    if not pa.types.is_timestamp(pf.schema_arrow.field("start_time").type):
        return True  # text times: their string order is not their time order (offsets, precision)
    meta = pf.metadata.row_group(group)
    for index in range(meta.num_columns):
        column = meta.column(index)
        if column.path_in_schema != "start_time":
            continue
        stats = column.statistics
        if stats is None or not stats.has_min_max:
            return True
        if keep_undated and stats.null_count:
            return True
        try:
            low, high = _utc(stats.min), _utc(stats.max)
        except (TypeError, ValueError, OverflowError):
            return True
        return not (high < _utc(window[0]) or low >= _utc(window[1]))
    return True


def _in_window(table: pa.Table, window: Window, keep_undated: bool) -> np.ndarray:
    start = _timestamps(table.column("start_time")) if "start_time" in table.column_names else \
        pd.Series(pd.NaT, index=range(table.num_rows), dtype="datetime64[ns, UTC]")
    parsed = start if pd.api.types.is_datetime64_any_dtype(start) else pd.to_datetime(
        start, utc=True, errors="coerce", format="ISO8601")
    inside = ((parsed >= _utc(window[0])) & (parsed < _utc(window[1]))).to_numpy(dtype=bool)
    if keep_undated:
        inside |= parsed.isna().to_numpy()
    return inside


def read_stream(stream: IO[bytes], name: str, window: Window | None = None,
                keep_undated: bool = True) -> BulkRead:
    """Read a bulk-export Parquet stream into candidate span rows; only runs starting in `window` if given.

    `keep_undated` says whether rows without a readable start_time belong to this window (they go to the row
    rules, which quarantine them): a caller splitting a daily file into hours passes True for one hour only.
    Raises `UnreadableFile` naming `name` when the stream is not a readable Parquet file.
    """
    pf = _open(stream, name)
    result = BulkRead(rows_in_file=pf.metadata.num_rows)
    columns = pf.schema_arrow.names
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
        result.file_error = (f"Parquet file is not a LangSmith bulk export of runs: no column "
                             f"{', '.join(repr(c) for c in missing)} (columns: {shown})")
        result.rejects.append(Reject("unknown_format", result.file_error))
        return result
    tables: list[pa.Table] = []
    numbers: list[np.ndarray] = []
    offset = 0
    for group in range(pf.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        if window is not None and not _may_hold(pf, group, window, keep_undated):
            result.row_groups_skipped += 1
            offset += size
            continue
        try:
            table = pf.read_row_group(group)
        except (pa.ArrowException, OSError, ValueError) as exc:
            # The rows of earlier row groups are kept; the damaged group is reported with its rows' range.
            detail = f"row group {group} (rows {offset + 1}-{offset + size}) cannot be read: {exc}"
            result.file_error = detail
            result.rejects.append(Reject("unreadable_file", detail, offset + 1, source_format=FORMAT))
            offset += size
            continue
        result.row_groups_read += 1
        line = np.arange(offset + 1, offset + size + 1)
        if window is not None:
            keep = _in_window(table, window, keep_undated)
            table, line = table.filter(pa.array(keep)), line[keep]
        tables.append(table)
        numbers.append(line)
        offset += size
    if tables:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        result.records_read = table.num_rows
        if table.num_rows:
            result.rows = map_runs(table, np.concatenate(numbers))
    return result


def raw_records(stream: IO[bytes], numbers: Iterable[int]) -> dict[int, str]:
    """The rows with these 1-based row numbers as compact JSON text (the quarantine's `raw`), read by row group."""
    wanted = sorted(set(int(n) for n in numbers))
    if not wanted:
        return {}
    pf = pq.ParquetFile(stream)
    out: dict[int, str] = {}
    offset = 0
    for group in range(pf.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        mine = [n for n in wanted if offset < n <= offset + size]
        if mine:
            taken = pf.read_row_group(group).take(pa.array([n - offset - 1 for n in mine]))
            for number, record in zip(mine, taken.to_pylist(), strict=True):
                # Nanosecond times arrive as pandas Timestamps, which orjson does not write: ISO text instead.
                out[number] = dump_json({k: v.isoformat() if hasattr(v, "isoformat") else v
                                         for k, v in record.items() if v is not None})
        offset += size
    return out


# ---------------------------------------------------------------------------------------------------------------
# Column conversions (whole columns)


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage  # the Parquet UUID logical type arrives as an extension over 16 bytes
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _strings(column: pa.ChunkedArray | None, n: int) -> pd.Series:
    """A text column as an object Series (None for null); 16-byte UUIDs spelled 8-4-4-4-12."""
    if column is None:
        return pd.Series([None] * n, dtype=object)
    array = _array(column)
    if pa.types.is_fixed_size_binary(array.type) and array.type.byte_width == 16:
        return _uuid_strings(array)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type) or pa.types.is_nested(array.type):
            # Values the row rules must see as they are (and report as the wrong type).
            return pd.Series(array.to_pylist(), dtype=object)
        array = array.cast(pa.string())
    series = array.to_pandas()
    return series.astype(object).where(series.notna(), None)


def _uuid_strings(array: pa.FixedSizeBinaryArray) -> pd.Series:
    data = array.buffers()[1]
    start = array.offset * 16
    hexed = np.frombuffer(bytes(data)[start:start + 16 * len(array)].hex().encode(), dtype="S32").astype(str)
    spelled = pd.Series(hexed, dtype=object)
    spelled = (spelled.str[:8] + "-" + spelled.str[8:12] + "-" + spelled.str[12:16] + "-" + spelled.str[16:20]
               + "-" + spelled.str[20:])
    return spelled.where(pd.Series(array.is_valid().to_numpy(zero_copy_only=False)), None)


def _timestamps(column: pa.ChunkedArray | None, n: int = 0) -> pd.Series:
    """Timestamps as UTC (naive ones are UTC, as LangSmith's v1 format writes them); text left for the rules."""
    if column is None:
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    array = _array(column)
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
        return array.to_pandas().dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return _strings(column, len(array))


def _parsed_times(series: pd.Series) -> pd.Series:
    """The times of a timestamp-or-text column for durations; unreadable text is NaT (the rules report it)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    text = series.where(series.map(lambda v: isinstance(v, str)), None)
    return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")


def _numbers(column: pa.ChunkedArray | None, n: int) -> pd.Series:
    """A count or cost column: numbers as numbers, numeric text (LangSmith's Decimal costs) as numbers, other
    values as they are, so the row rules report them by field."""
    if column is None:
        return pd.Series([None] * n, dtype=object)
    array = _array(column)
    if pa.types.is_decimal(array.type):
        array = _decimal_floats(array)
    if pa.types.is_integer(array.type):
        return array.to_pandas().astype("Int64")
    if pa.types.is_floating(array.type):
        return array.to_pandas().astype("float64")
    values = _strings(column, n)
    numbers = pd.to_numeric(values.where(values.map(lambda v: isinstance(v, str)), None), errors="coerce")
    out = values.astype(object)
    readable = numbers.notna()
    out[readable] = numbers[readable]
    return out


def _decimal_floats(array: pa.Array) -> pa.Array:
    """Decimals as the nearest floats of their decimal text (a direct cast gives 0.0034000000000000002)."""
    return array.cast(pa.string()).cast(pa.float64())


def _json_values(column: pa.ChunkedArray | None, n: int) -> list[Any]:
    """A JSON column parsed per value (null stays None); a value that is not JSON stays the text it is."""
    if column is None:
        return [None] * n
    array = _array(column)
    if pa.types.is_map(array.type):
        return [None if v is None else dict(v) for v in array.to_pylist()]
    values = array.to_pylist()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return values  # a struct or list column is already parsed
    out: list[Any] = [None] * n
    loads = orjson.loads
    for index, value in enumerate(values):
        if value is None or value == "":
            continue
        try:
            out[index] = loads(value)
        except orjson.JSONDecodeError:
            out[index] = value  # not JSON: kept as the text it is
    return out


def _plain(column: pa.ChunkedArray) -> list[Any]:
    """Values of a column kept in metadata, as JSON can hold them (UUIDs and times as text, decimals as numbers)."""
    array = _array(column)
    if pa.types.is_fixed_size_binary(array.type) and array.type.byte_width == 16:
        return _uuid_strings(array).tolist()
    if pa.types.is_timestamp(array.type):
        stamps = _timestamps(column)
        return [None if pd.isna(v) else v.isoformat() for v in stamps]
    if pa.types.is_decimal(array.type):
        array = _decimal_floats(array)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return _json_values(column, len(array)) if _looks_like_json(array) else array.to_pylist()
    if pa.types.is_map(array.type):
        return [None if v is None else dict(v) for v in array.to_pylist()]
    return array.to_pylist()


def _looks_like_json(array: pa.Array) -> bool:
    """Whether a text column holds JSON objects or lists (LangSmith writes feedback_stats and others as text)."""
    valid = array.drop_null()
    if not len(valid):
        return False
    first = valid[0].as_py().lstrip()[:1]
    return first in ("{", "[")


def _detail_counts(column: pa.ChunkedArray | None, n: int, keys: tuple[str, ...]) -> pd.Series:
    """The first of `keys` in a token-details column (map, struct or JSON text), per row."""
    if column is None:
        return pd.Series([None] * n, dtype=object)
    array = _array(column)
    if pa.types.is_map(array.type):
        import pyarrow.compute as pc

        found = pd.Series([None] * n, dtype=object)
        for key in reversed(keys):
            values = pc.map_lookup(array, pa.scalar(key, array.type.key_type), "first").to_pandas()
            found = _obj(values).where(values.notna(), found)
        return found
    if pa.types.is_struct(array.type):
        found = pd.Series([None] * n, dtype=object)
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        for key in reversed(keys):
            if key in names:
                values = array.field(key).to_pandas()
                found = _obj(values).where(values.notna(), found)
        return found
    values = _json_values(column, n)
    return pd.Series([next((v[k] for k in keys if v.get(k) is not None), None) if isinstance(v, dict) else None
                      for v in values], dtype=object)


# ---------------------------------------------------------------------------------------------------------------
# Runs -> canonical rows


def _first_id(dotted: pd.Series) -> pd.Series:
    return dotted.str.extract(r"^[^.Z]*Z([^.]+)", expand=False)


def _parent_id(dotted: pd.Series) -> pd.Series:
    """The second-to-last run id of a dotted order (the parent of its last run)."""
    return dotted.str.extract(r"(?:^|\.)[^.Z]*Z([^.]+)\.[^.]*$", expand=False)


def _kinds(run_type: pd.Series, name: pd.Series) -> pd.Series:
    """`langsmith.run_kind` over whole columns: the run type's kind; for chain-like types, a rerank name."""
    kind = run_type.map(lambda t: langsmith.KIND_BY_RUN_TYPE.get(t, "chain") if isinstance(t, str) else "chain")
    chain = kind == "chain"
    if chain.any():
        by_name = {n: kind_from_name(n, langsmith.KINDS_BY_NAME) for n in name[chain].dropna().unique()}
        named = name[chain].map(by_name)
        kind[chain] = named.where(named.notna(), "chain")
    return kind.astype(object)


def _ms(start: pd.Series, end: pd.Series) -> pd.Series:
    return (_parsed_times(end) - _parsed_times(start)).dt.total_seconds() * 1000.0


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.map(lambda v: isinstance(v, str) and v == "")


def map_runs(table: pa.Table, numbers: np.ndarray) -> pd.DataFrame:
    """Map a table of runs (Run data format columns) to canonical span rows, with `source_line` = `numbers`."""
    n = table.num_rows
    names = set(table.column_names)

    def col(name: str) -> pa.ChunkedArray | None:
        return table.column(name) if name in names else None

    span_id = _strings(col("id"), n)
    dotted = _strings(col("dotted_order"), n)
    parent = _strings(col("parent_run_id"), n)
    trace = _strings(col("trace_id"), n)
    run_type = _strings(col("run_type"), n)
    name = _strings(col("name"), n)
    dotted_text = dotted.where(dotted.map(lambda v: isinstance(v, str)), None).astype(object)

    rows = pd.DataFrame(index=range(n))
    rows["span_id"] = span_id
    trace = trace.where(~_blank(trace), _first_id(dotted_text))
    # A root run without a trace id or dotted order is its own trace (the JSON reader's rule).
    root = trace.isna() & parent.isna() & dotted_text.isna()
    rows["trace_id"] = _obj(trace.where(~root, span_id))
    rows["parent_span_id"] = _obj(parent.where(~_blank(parent), _parent_id(dotted_text)))
    rows["name"] = name
    kind = _kinds(run_type, name)
    rows["kind"] = kind
    start, end = _timestamps(col("start_time"), n), _timestamps(col("end_time"), n)
    rows["start_time"], rows["end_time"] = start, end
    rows["latency_ms"] = _ms(start, end)
    first_token = _timestamps(col("first_token_time"), n)
    error = _strings(col("error"), n)
    status = _strings(col("status"), n)
    has_error = error.map(bool) & error.notna()
    rows["status"] = np.where(has_error | (status == "error"), "error", "ok")
    rows["error_message"] = error.where(has_error, None)

    # --- run-level usage: the span's own only for leaf runs (llm, embedding); see the module docstring ---
    leaf = run_type.isin(langsmith.LEAF_RUN_TYPES)
    prompt = _numbers(col("prompt_tokens"), n)
    completion = _numbers(col("completion_tokens"), n)
    total = _numbers(col("total_tokens"), n)
    costs = {c: _numbers(col(c), n) for c in RUN_COST_COLUMNS}
    run_level = leaf & (prompt.notna() | completion.notna() | total.notna() | costs["total_cost"].notna())
    summed = pd.to_numeric(prompt, errors="coerce") + pd.to_numeric(completion, errors="coerce")
    usage = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": _obj(total).where(total.notna(), _obj(summed)),
        "cached_input_tokens": _detail_counts(col("prompt_token_details"), n, ("cache_read", "cached_tokens")),
        "cache_write_tokens": _detail_counts(col("prompt_token_details"), n,
                                             ("cache_creation", "cache_write_tokens", "cache_creation_tokens")),
        "reasoning_tokens": _detail_counts(col("completion_token_details"), n, ("reasoning", "reasoning_tokens")),
    }
    leaf_cost = _run_cost(costs).where(leaf, None)
    for column, values in usage.items():
        rows[column] = _obj(values).where(run_level, None)
    rows["reported_cost_usd"] = _obj(leaf_cost).where(run_level, None)

    nested = _nested(table, n, col, run_type, kind, first_token, rows, leaf, leaf_cost, costs, prompt, completion,
                     total)
    rows["time_to_first_token_ms"] = _ms(start, nested.pop("_first_token_time"))
    for column, values in nested.items():
        rows[column] = values
    if "session_name" in names:  # not a documented export field, but the JSON reader's fallback for app
        rows["app"] = rows["app"].where(rows["app"].notna(), _strings(col("session_name"), n))
    rows["source_line"] = numbers
    for column in USAGE_COLUMNS:
        series = rows[column]
        if series.map(lambda v: v is None or isinstance(v, int | float) and not isinstance(v, bool)).all():
            rows[column] = pd.to_numeric(series, errors="coerce")  # a numeric column skips the rules' slow path
    return rows


def _run_cost(costs: dict[str, pd.Series]) -> pd.Series:
    """`total_cost`, else `prompt_cost + completion_cost` (or the one present), as `langsmith._run_cost`."""
    total, prompt, completion = costs["total_cost"], costs["prompt_cost"], costs["completion_cost"]
    p_present, c_present = prompt.notna(), completion.notna()
    all_numbers = (~p_present | prompt.map(_is_number)) & (~c_present | completion.map(_is_number))
    summed = pd.to_numeric(prompt, errors="coerce").fillna(0) + pd.to_numeric(completion, errors="coerce").fillna(0)
    # Where a part is not a number, the first present part is kept for the row rules to report.
    first = _obj(prompt).where(p_present, _obj(completion))
    pair = _obj(summed).where(all_numbers, first).where(p_present | c_present, None)
    return _obj(total).where(total.notna(), pair)


def _obj(series: pd.Series) -> pd.Series:
    """An object Series with None (not NaN, NA or NaT) for missing values, as the row rules expect."""
    out = series.astype(object)
    return out.where(series.notna(), None)


def _stamp(value: Any) -> pd.Timestamp | None:
    try:
        parsed = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        return None  # an unreadable event time gives no first token time, as in the JSON reader
    return None if parsed is None else pd.Timestamp(parsed)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and \
        not pd.isna(value)


def _nested(table: pa.Table, n: int, col: Any, run_type: pd.Series, kind: pd.Series, first_token: pd.Series,
            rows: pd.DataFrame, leaf: pd.Series, leaf_cost: pd.Series, costs: dict[str, pd.Series],
            prompt: pd.Series, completion: pd.Series, total: pd.Series) -> dict[str, Any]:
    """Columns that come from the JSON columns (messages, models, params, app context, nested usage, metadata).

    One pass over the rows: the JSON reader's helpers applied to the parsed `inputs`, `outputs`, `extra` and
    `events` of each run (cheap where they are null), and the span's metadata assembled from them and from the
    other columns' values.
    """
    inputs = _json_values(col("inputs"), n)
    outputs = _json_values(col("outputs"), n)
    extras = _json_values(col("extra"), n)
    events = _json_values(col("events"), n)
    serialized = _json_values(col("serialized"), n)
    tags = _json_values(col("tags"), n)
    project = _strings(col("session_id"), n).tolist()
    run_status = _strings(col("status"), n).tolist()
    dotted = _strings(col("dotted_order"), n).tolist()
    other_names = [c for c in table.column_names if c not in MAPPED_COLUMNS]
    others = {c: _plain(table.column(c)) for c in other_names}
    run_types = run_type.tolist()
    kinds = kind.tolist()
    leaves = leaf.tolist()
    aggregates = {"prompt_tokens": prompt.tolist(), "completion_tokens": completion.tolist(),
                  "total_tokens": total.tolist(), **{c: s.tolist() for c, s in costs.items()}}
    leaf_costs = leaf_cost.tolist()

    out: dict[str, list[Any]] = {c: [None] * n for c in (
        "provider", "request_model", "response_model", "model", "temperature", "top_p", "max_tokens",
        "request_params", "input_messages", "output_text", "output_messages", "documents", *langsmith.METADATA_COLUMNS,
        "metadata")}
    usage_found: dict[int, dict[str, Any]] = {}
    first_times: list[Any] = [None] * n
    no_first_token = first_token.isna().tolist()
    for i in range(n):
        extra = extras[i] if isinstance(extras[i], dict) else {}
        metadata = dict(extra["metadata"]) if isinstance(extra.get("metadata"), dict) else {}
        invocation = extra["invocation_params"] if isinstance(extra.get("invocation_params"), dict) else {}
        rtype, inp, outp = run_types[i], inputs[i], outputs[i]
        llm_inputs = langsmith._call_kwargs(rtype, inp)
        message = langsmith._generation_message(outp) if isinstance(outp, dict) else None
        response_meta = message.get("response_metadata") if isinstance(message, dict) else None
        llm_output = outp.get("llm_output") if isinstance(outp, dict) else None
        request_model = langsmith._lookup(("ls_model_name",), metadata) or langsmith._lookup(
            langsmith.MODEL_KEYS[:2], invocation, llm_inputs)
        response_model = (
            (outp.get("model") if isinstance(outp, dict) and isinstance(outp.get("model"), str) else None)
            or langsmith._lookup(("model_name", "model"), response_meta if isinstance(response_meta, dict) else {},
                                 llm_output if isinstance(llm_output, dict) else {}))
        out["request_model"][i], out["response_model"][i] = request_model, response_model
        out["model"][i] = response_model or request_model
        if llm_inputs or invocation or not PARAM_KEYS.isdisjoint(metadata):
            for column, value in langsmith._params(llm_inputs, invocation, metadata).items():
                out[column][i] = value
        if metadata:
            for column, keys in langsmith.METADATA_COLUMNS.items():
                out[column][i] = langsmith._lookup(keys, metadata)
            if out["prompt_name"][i] is None and metadata.get("lc_hub_repo") is not None:
                owner = metadata.get("lc_hub_owner")
                repo = metadata["lc_hub_repo"]
                out["prompt_name"][i] = f"{owner}/{repo}" if owner and owner != "-" else repo
            version = out["prompt_version"][i]
            if version is not None and not isinstance(version, str):
                out["prompt_version"][i] = langsmith.as_str(version)
        input_messages = langsmith._input_messages(rtype, inp) if inp is not None else None
        out["input_messages"][i] = input_messages
        mapped = langsmith._outputs(outp, kinds[i])
        out["output_messages"][i], out["output_text"][i] = mapped["output_messages"], mapped["output_text"]
        out["documents"][i] = mapped["documents"]
        if outp is not None or metadata:
            found = langsmith._usage({}, outp, metadata, rtype)
            if found is not None:
                if found["reported_cost_usd"] is None and leaves[i]:
                    found["reported_cost_usd"] = leaf_costs[i]
                usage_found[i] = found
        if no_first_token[i] and isinstance(events[i], list):
            first_times[i] = _stamp(langsmith._first_token_time({"events": events[i]}))
        out["metadata"][i] = _metadata(
            i, metadata, extra, tags[i], inp if input_messages is None else None, mapped["rest"], rtype,
            run_status[i], dotted[i], project[i], others, serialized[i], events[i], leaves[i], aggregates)

    result: dict[str, Any] = {c: pd.Series(v, dtype=object) for c, v in out.items()}
    if usage_found:
        # Nested usage (usage_metadata, provider usage) wins over the run-level columns, as in the JSON reader.
        positions = list(usage_found)
        for column in USAGE_COLUMNS:
            values = rows[column].tolist()
            for i in positions:
                values[i] = usage_found[i].get(column)
            rows[column] = pd.Series(values, index=rows.index, dtype=object)
    from_events = pd.to_datetime(pd.Series(first_times, dtype=object), utc=True)
    result["_first_token_time"] = _parsed_times(first_token).where(first_token.notna(), from_events)
    return result


def _metadata(i: int, metadata: dict[str, Any], extra: dict[str, Any], tags: Any, unmapped_inputs: Any,
              unmapped_outputs: Any, run_type: Any, status: Any, dotted: Any, project: Any,
              others: dict[str, list[Any]], serialized: Any, events: Any, leaf: bool,
              aggregates: dict[str, list[Any]]) -> dict[str, Any]:
    """The span's metadata as `langsmith._run_metadata` builds it for a JSON run."""
    rest = {k: v for k, v in metadata.items() if k not in langsmith.MAPPED_METADATA_KEYS}
    kept: dict[str, Any] = {}
    if run_type is not None:
        kept["run_type"] = run_type
    for key, value in (("status", status), ("dotted_order", dotted), ("project_id", project)):
        if value is not None:
            kept[key] = value
    for key, values in others.items():
        value = values[i]
        if value is not None and value != {} and value != []:
            kept[key] = value
    if isinstance(serialized, dict):
        identity = {k: serialized[k] for k in ("name", "id") if serialized.get(k) is not None}
        if identity:
            kept["serialized"] = identity
    for key, value in extra.items():
        if key == "runtime" and isinstance(value, dict):
            kept["runtime"] = value
        elif key not in ("metadata", "invocation_params", "runtime") and value not in (None, {}, []):
            kept[f"extra.{key}"] = value
    if not leaf:
        found = {k: v[i] for k, v in aggregates.items() if v[i] is not None and not pd.isna(v[i])}
        if found:
            kept["aggregate_usage"] = found  # this run plus all of its children
    if isinstance(events, list) and events:
        counts: dict[str, int] = {}
        for event in events:
            label = str(event.get("name")) if isinstance(event, dict) else "None"
            counts[label] = counts.get(label, 0) + 1
        kept["event_counts"] = counts
    if tags:
        rest["tags"] = list(tags)
    if unmapped_inputs not in (None, {}, []):
        rest["inputs"] = unmapped_inputs
    if unmapped_outputs is not None:
        rest["outputs"] = unmapped_outputs
    rest["langsmith"] = kept
    return rest
