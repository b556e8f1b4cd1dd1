"""Row rules derived from `schema.py`, applied to every reader's output, vectorised over a partition.

Owns the quarantine decision for well-formed records: required fields, types, non-negative and plausible
numbers, end >= start, allowed kinds and statuses, and duplicate span ids. Each failing row gets exactly one
reason (the first rule it breaks, in the order below) and a detail that names the field and the value.
It must not drop rows: every input row comes out either valid or quarantined.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import orjson
import pandas as pd

from aiobs_pipeline.ingest.base import parse_time
from aiobs_pipeline.schema import (
    ABSURD_LIMITS,
    KINDS,
    SPAN_COLUMNS,
    STATUSES,
    Column,
    conform,
)

# Columns whose values a reader fills from the file itself, not the record; they are never missing.
_CONTEXT_COLUMNS = {"source_format", "source_file", "export_hour", "schema_version"}


@dataclass
class RuleResult:
    """Valid rows (conformed to the canonical dtypes) and quarantined rows with reason and detail."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _all_strings(series: pd.Series) -> bool:
    """True when every non-null value is a str (one C scan instead of a Python call per value)."""
    return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def _is_blank(series: pd.Series) -> pd.Series:
    blank = series.isna()
    if series.dtype == object:
        # A comprehension, not Series.map: a third of the cost per value.
        blank |= np.array([isinstance(v, str) and not v.strip() for v in series.to_numpy()], dtype=bool)
    return blank


def _numeric(series: pd.Series, column: Column) -> tuple[pd.Series, pd.Series]:
    """Return (numbers, invalid_type mask) for a numeric column; bools and strings count as wrong types."""
    if series.dtype == bool:
        # A column of booleans only (e.g. temperature: true on every line) is still the wrong type.
        numbers = pd.Series(np.nan, index=series.index)
        bad = pd.Series(True, index=series.index)
    elif series.dtype != object:
        numbers = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = pd.Series(False, index=series.index)
    else:
        is_bad_type = series.map(lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, int | float)))
        numbers = pd.to_numeric(series.where(~is_bad_type, None), errors="coerce").astype("float64")
        bad = is_bad_type
    if column.type == "int":
        bad = bad | (numbers.notna() & np.isfinite(numbers) & (numbers != np.floor(numbers)))
    bad = bad | (numbers.notna() & ~np.isfinite(numbers))
    return numbers, bad


def _timestamps(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return (UTC timestamps, invalid_type mask); accepts ISO-8601 strings, datetimes and epoch numbers."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = pd.to_datetime(series, utc=True)
        return parsed, pd.Series(False, index=series.index)
    parsed = pd.to_datetime(series.where(series.map(lambda v: isinstance(v, str)), None), utc=True,
                            format="ISO8601", errors="coerce")
    leftover = series.notna() & parsed.isna()
    if leftover.any():
        def parse_one(value: object) -> pd.Timestamp | None:
            try:
                return pd.Timestamp(parse_time(value))
            except (ValueError, TypeError, OverflowError):
                return None

        fixed = series[leftover].map(parse_one)
        parsed = parsed.astype("object")
        parsed[leftover] = fixed
        parsed = pd.to_datetime(parsed, utc=True, errors="coerce")
    bad = series.notna() & parsed.isna()
    return parsed, bad


def apply_row_rules(rows: pd.DataFrame, json_encoded: bool = False) -> RuleResult:
    """Split candidate span rows into valid (canonical dtypes) and quarantined (reason, detail) rows.

    `rows` holds the canonical columns as the reader produced them (object dtype, possibly wrong types).
    JSON columns hold Python values, or JSON text when `json_encoded` is True.
    """
    frame = rows.copy()
    for column in SPAN_COLUMNS:
        if column.name not in frame.columns:
            frame[column.name] = None
    index = frame.index
    reason = pd.Series(None, index=index, dtype="object")
    detail = pd.Series(None, index=index, dtype="object")

    def flag(mask: pd.Series, code: str, message: Callable[[pd.Index], pd.Series] | str) -> None:
        """Mark rows that broke no earlier rule; the message is built only for those rows."""
        fresh = mask & reason.isna()
        if not fresh.any():
            return
        reason[fresh] = code
        detail[fresh] = message(fresh[fresh].index) if callable(message) else message

    # Required fields first: a row without an id is not worth type-checking.
    for column in SPAN_COLUMNS:
        if column.required and column.name not in _CONTEXT_COLUMNS:
            flag(_is_blank(frame[column.name]), "missing_required_field",
                 f"required field '{column.name}' is missing or empty")

    converted: dict[str, pd.Series] = {}
    for column in SPAN_COLUMNS:
        series = frame[column.name]
        if column.type == "str":
            if series.dtype == object and _all_strings(series):
                continue
            wrong = series.notna() & ~series.map(lambda v: isinstance(v, str))
            flag(wrong, "invalid_type", lambda rows, s=series, n=column.name: s[rows].map(
                lambda v: f"field '{n}' must be a string, got {type(v).__name__} {_short(v)}"))
        elif column.type in ("int", "float"):
            numbers, wrong = _numeric(series, column)
            flag(wrong, "invalid_type", lambda rows, s=series, n=column.name, t=column.type: s[rows].map(
                lambda v: f"field '{n}' must be {'an integer' if t == 'int' else 'a number'}, got {_short(v)}"))
            converted[column.name] = numbers
        elif column.type == "timestamp" and column.name not in _CONTEXT_COLUMNS:
            stamps, wrong = _timestamps(series)
            flag(wrong, "invalid_type", lambda rows, s=series, n=column.name: s[rows].map(
                lambda v: f"field '{n}' is not a timestamp: {_short(v)}"))
            converted[column.name] = stamps

    # Before the ranges: a negative latency derived from swapped times is reported as the real cause.
    start, end = converted["start_time"], converted["end_time"]
    flag(end.notna() & start.notna() & (end < start), "end_before_start",
         lambda rows: pd.Series([f"end_time {e} is before start_time {s}"
                                 for s, e in zip(start[rows], end[rows], strict=True)], index=rows))

    for column in SPAN_COLUMNS:
        if column.type not in ("int", "float") or column.name in _CONTEXT_COLUMNS:
            continue
        numbers = converted[column.name]
        if column.minimum is not None:
            flag(numbers < column.minimum, "negative_value" if column.minimum == 0 else "invalid_type",
                 lambda rows, x=numbers, n=column.name, m=column.minimum: x[rows].map(
                     lambda v: f"field '{n}' is {v:g}, below {m:g}"))
        limit = ABSURD_LIMITS.get(column.name)
        if limit is not None:
            flag(numbers > limit, "absurd_value", lambda rows, x=numbers, n=column.name, lim=limit: x[rows].map(
                lambda v: f"field '{n}' is {v:g}, above the plausible limit {lim:g}"))

    kind = _normalised(frame["kind"])
    flag(kind.notna() & ~kind.isin(KINDS), "invalid_kind",
         lambda rows: kind[rows].map(lambda v: f"field 'kind' is {_short(v)}; allowed: {', '.join(KINDS)}"))
    status = _normalised(frame["status"])
    flag(status.notna() & ~status.isin(STATUSES), "invalid_status",
         lambda rows: status[rows].map(lambda v: f"field 'status' is {_short(v)}; allowed: {', '.join(STATUSES)}"))

    # JSON is encoded before the NUL check so that a NUL nested anywhere in messages is found.
    if not json_encoded:
        for column in SPAN_COLUMNS:
            if column.type == "json":
                encoded = frame[column.name].map(_to_json)
                unencodable = encoded.map(lambda v: v is _UNENCODABLE)
                flag(unencodable, "invalid_type", f"field '{column.name}' cannot be stored as JSON "
                                                  "(nested deeper than 254 levels or not JSON data)")
                frame[column.name] = encoded.where(~unencodable, None)
    # PostgreSQL cannot store NUL characters; both warehouses refuse them, so such rows are quarantined.
    for column in SPAN_COLUMNS:
        if column.type not in ("str", "json") or column.name in _CONTEXT_COLUMNS:
            continue
        series = frame[column.name]
        needle = "\\u0000" if column.type == "json" else "\x00"
        if series.dtype == object and _all_strings(series) and not any(
                map(operator.contains, series.dropna().to_numpy(), repeat(needle))):
            continue  # a C-level loop over the column instead of one Python call per value
        nul = series.map(lambda v, n=needle: isinstance(v, str) and n in v)
        flag(nul, "invalid_encoding", f"field '{column.name}' contains a NUL character")

    bad = reason.notna()
    quarantined = frame.loc[bad, ["source_file", "source_line", "source_format", "trace_id", "span_id"]].copy()
    quarantined["reason"] = reason[bad]
    quarantined["detail"] = detail[bad]
    for col in ("trace_id", "span_id"):
        quarantined[col] = quarantined[col].map(lambda v: v if isinstance(v, str) else None)

    good = frame.loc[~bad].copy()
    good["kind"] = kind[~bad]
    good["status"] = status[~bad]
    for name, series in converted.items():
        good[name] = series[~bad]
    return RuleResult(conform(good, SPAN_COLUMNS), quarantined.reset_index(drop=True))


def _normalised(series: pd.Series) -> pd.Series:
    """Strip and lower-case string values, once per distinct value (kinds and statuses repeat a lot)."""
    if series.dtype == object and _all_strings(series):
        codes, uniques = pd.factorize(series)
        lowered = np.array([v.strip().lower() for v in uniques] + [None], dtype=object)
        return pd.Series(lowered[codes], index=series.index)
    return series.map(lambda v: v.strip().lower() if isinstance(v, str) else v)


_UNENCODABLE = object()


def _to_json(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return _UNENCODABLE


def split_duplicates(spans: pd.DataFrame, span_hashes: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first span of each span id (file, then line order); return (kept, duplicates).

    `span_hashes`, a 64-bit hash of each row's span id (the native fast path has DuckDB compute them), narrows
    the comparison of ids to the rows whose hash repeats: equal ids hash alike, so no other row can repeat an
    id, and comparing 64-bit integers is about a tenth of hashing a million Python strings."""
    if span_hashes is None:
        dup = spans.duplicated(subset=["span_id"], keep="first").to_numpy()
    else:
        if len(span_hashes) != len(spans):
            raise ValueError(f"{len(span_hashes)} span-id hashes for {len(spans)} spans")
        dup = np.zeros(len(spans), dtype=bool)
        maybe = pd.Series(span_hashes, copy=False).duplicated(keep=False).to_numpy()
        if maybe.any():
            # Among these rows, in order, the first of each id is kept, exactly as over all rows.
            ids = pd.Series(spans["span_id"].to_numpy()[maybe], copy=False)
            dup[maybe] = ids.duplicated(keep="first").to_numpy()
    if not dup.any():
        return spans, spans.iloc[0:0]
    return spans.loc[~dup].reset_index(drop=True), spans.loc[dup].reset_index(drop=True)
