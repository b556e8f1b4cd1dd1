"""The CSV that PostgreSQL's COPY reads: nulls unquoted and empty, every present value quoted, names fit."""

import csv
import io
from datetime import date

import numpy as np
import pandas as pd

from aiobs_pipeline.warehouse.postgres import _index_name, csv_for_copy
from aiobs_pipeline.warehouse.tables import prepare_frame


def test_nulls_are_bare_and_present_values_quoted() -> None:
    types = {"text": "str", "meta": "json", "n": "int", "x": "float", "ok": "bool", "at": "timestamp",
             "day": "date"}
    frame = prepare_frame(pd.DataFrame({
        "text": [None, "", 'say "hi",\nbye'],
        "meta": ['{"a":1}', None, "[]"],
        "n": [1, None, 2**40],
        "x": [np.nan, np.inf, 0.1],
        "ok": [True, None, False],
        "at": pd.to_datetime(["2026-10-01T00:00:00.123456789Z", None, "2026-10-01T01:00:00.000000Z"], utc=True),
        "day": [date(2026, 10, 1), None, date(2026, 10, 2)],
    }), types, "t")

    text = csv_for_copy(frame, types).read().decode()

    lines = text.split("\n", 1)
    # Row 1: null text bare, JSON quoted, NaN as null; sub-microsecond digits already floored by prepare_frame.
    assert lines[0] == ',"{""a"":1}","1",,"true","2026-10-01 00:00:00.123456Z","2026-10-01"'
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["", "", "", "inf", "", "", ""]
    assert '""' in text.splitlines()[1].split(",")[0]  # the empty string is a quoted empty field, not NULL
    assert rows[2][0] == 'say "hi",\nbye' and rows[2][2] == str(2**40) and rows[2][3] == "0.1"


def test_index_names_stay_within_postgres_identifier_limit() -> None:
    assert _index_name("spans", "export_hour") == "spans_export_hour_idx"
    long_a, long_b = _index_name("t" * 60, "a_column"), _index_name("t" * 60, "b_column")
    assert len(long_a.encode()) <= 63 and long_a != long_b
