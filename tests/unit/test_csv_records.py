"""CSV landing files: rows as records, JSON cells, line numbers across quoted newlines, BOM, bad rows, gzip."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest.base import RawRecord, Reject
from aiobs_pipeline.ingest.csv_records import cell_value, is_csv_name, iter_csv_records
from aiobs_pipeline.ingest.files import is_landing_file, iter_records

QUIRKS = Path(__file__).parents[1] / "fixtures" / "langfuse_blob" / "csv_quirks.csv"


def records(data: bytes) -> list[RawRecord | Reject]:
    return list(iter_csv_records(io.BytesIO(data), "test.csv"))


def test_rows_become_dicts_keyed_by_the_header_with_empty_cells_null() -> None:
    out = records(b'"a","b","c"\n"1","","x y"\n')
    assert len(out) == 1 and isinstance(out[0], RawRecord)
    assert out[0].value == {"a": "1", "b": None, "c": "x y"}
    assert out[0].number == 2
    assert out[0].text == '"1","","x y"'


def test_json_object_and_array_cells_are_parsed_other_text_is_kept() -> None:
    out = records(b'"m","t","n","s"\n"{""input"":100,""output"":2}","[""a"",""b""]","12","[INST] hi"\n')
    assert out[0].value == {"m": {"input": 100, "output": 2}, "t": ["a", "b"], "n": "12", "s": "[INST] hi"}
    assert cell_value("") is None and cell_value("{not json") == "{not json" and cell_value(" [1]") == [1]


def test_line_numbers_count_quoted_newlines() -> None:
    data = b'"id","text"\n"1","one\ntwo\nthree"\n"2","four"\n\n"3","five\r\nsix"\n'
    out = records(data)
    assert [(r.number, r.value["id"]) for r in out] == [(2, "1"), (5, "2"), (7, "3")]
    assert out[0].value["text"] == "one\ntwo\nthree"
    assert out[2].value["text"] == "five\r\nsix"


def test_bom_crlf_and_unquoted_fields() -> None:
    out = records(b'\xef\xbb\xbf"id",name\r\n1,plain\r\n')
    assert out[0].value == {"id": "1", "name": "plain"}


def test_bad_rows_are_rejected_one_by_one_naming_line_and_column() -> None:
    out = list(iter_csv_records(QUIRKS.open("rb"), str(QUIRKS)))
    good = [r for r in out if isinstance(r, RawRecord)]
    bad = [r for r in out if isinstance(r, Reject)]
    assert [r.value["id"] for r in good] == ["o-6001", "o-6005", "o-6006"]
    assert [r.number for r in good] == [2, 6, 8]
    assert good[1].value["name"] == "multi\r\nline name"
    assert good[2].value["name"] is None
    assert [(r.reason, r.number) for r in bad] == [("invalid_csv", 3), ("invalid_csv", 4), ("invalid_encoding", 5)]
    assert "7 fields, but the header (line 1) has 8" in bad[0].detail
    assert "broken CSV quoting" in bad[1].detail and bad[1].raw.endswith('"bro"ken"')
    assert "column 'name' is not valid UTF-8" in bad[2].detail and "\ufffd" in bad[2].raw


def test_unterminated_quote_at_the_end_is_one_reject() -> None:
    out = records(b'"id","text"\n"1","ok"\n"2","never closed\nstill open\n')
    assert isinstance(out[0], RawRecord)
    assert [(r.reason, r.number) for r in out[1:]] == [("invalid_csv", 3)]


@pytest.mark.parametrize("header", [b'"id","id"\n', b'"id",""\n', b'"i\xffd"\n'])
def test_a_bad_header_rejects_the_file_once(header: bytes) -> None:
    out = records(header + b'"1","2"\n')
    assert len(out) == 1 and out[0].reason == "invalid_csv" and "header" in out[0].detail


def test_empty_and_header_only_files_have_no_records() -> None:
    assert records(b"") == []
    assert records(b'"id","name"\n') == []


def test_landing_suffixes_and_gzip(tmp_path: Path) -> None:
    assert is_csv_name("x.CSV") and is_csv_name("a/b.csv.gz") and not is_csv_name("x.csv.tmp")
    assert is_landing_file(Path("2026-12-07T14-00-00.csv")) and is_landing_file(Path("t.csv.gz"))
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b'"id"\n"1"\n"2"\n'))
    assert [r.value for r in iter_records(path)] == [{"id": "1"}, {"id": "2"}]


def test_a_truncated_gzip_keeps_the_rows_before_the_damage(tmp_path: Path) -> None:
    body = b'"id","text"\n' + b"".join(b'"%d","%s"\n' % (i, b"x" * 50) for i in range(5000))
    path = tmp_path / "rows.csv.gz"
    packed = gzip.compress(body)
    path.write_bytes(packed[: len(packed) // 2])
    out = list(iter_records(path))
    assert isinstance(out[-1], Reject) and out[-1].reason == "corrupt_gzip"
    good = [r for r in out if isinstance(r, RawRecord)]
    assert 0 < len(good) < 5000
    assert [r.value["id"] for r in good] == [str(i) for i in range(len(good))]


CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@given(st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=8), st.booleans())
@settings(max_examples=150, deadline=None)
def test_any_text_written_by_a_csv_writer_reads_back_with_its_start_line(rows: list[list[str]], crlf: bool) -> None:
    def written(row: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n" if crlf else "\n").writerow(row)
        return buffer.getvalue()

    texts = [written(row) for row in rows]
    out = records((written(["a", "b", "c"]) + "".join(texts)).encode("utf-8"))
    assert all(isinstance(r, RawRecord) for r in out) and len(out) == len(rows)
    line = 2  # the header is line 1
    for record, row, text in zip(out, rows, texts, strict=True):
        assert [record.value[k] for k in "abc"] == [cell_value(cell) for cell in row]
        assert record.number == line
        line += len(re.findall(r"\r\n|\r|\n", text))  # the line breaks a text stream sees
