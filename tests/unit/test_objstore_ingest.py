"""The hourly ingest, feedback ingest, forget, retention and `aiobs inspect` on object-store roots
(fsspec's memory://), compared with the same files in a local folder."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline import cli
from aiobs_pipeline.feedback.events import ingest_feedback_partition
from aiobs_pipeline.governance.forget import UserKeys, collect_landing_keys, forget_in_landing
from aiobs_pipeline.governance.retention import delete_old_objects
from aiobs_pipeline.ingest import native_fast
from aiobs_pipeline.ingest.base import Reject
from aiobs_pipeline.ingest.layout import parse_layout
from aiobs_pipeline.ingest.partition import FileRead, ingest_partition, keep_window, partition_files
from aiobs_pipeline.ingest.storage import RetryPolicy, StorageError, Store, StoreObject

HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)
DAY = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture
def bucket() -> Iterator[str]:
    name = f"ing-{uuid.uuid4().hex[:10]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


def span(start: datetime, i: int, user: str | None = None, **extra: object) -> str:
    record = {
        "span_id": f"s{i}", "trace_id": f"t{i // 2}", "name": "chat_completion",
        "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat(),
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}], "response": f"a{i}",
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        "metadata": {"user_id": user or f"u{i % 3}", "feature": "chat"}, **extra,
    }
    return json.dumps(record)


def land(bucket: str, local: Path | None, key: str, data: bytes) -> None:
    fsspec.filesystem("memory").pipe(f"/{bucket}/root/{key}", data)
    if local is not None:
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)


def hour_files(bucket: str, local: Path | None, big: bool = False) -> None:
    count = 3000 if big else 20
    lines = [span(HOUR + timedelta(seconds=i), i) for i in range(count)]
    land(bucket, local, "2026/12/07/13/a.jsonl", ("\n".join(lines[: count // 2]) + "\n").encode())
    land(bucket, local, "2026/12/07/13/b.jsonl",
         gzip.compress(("\n".join(lines[count // 2:]) + "\n{not json\n" + lines[0] + "\n").encode()))
    land(bucket, local, "2026/12/07/13/notes.txt", b"not a landing file")
    land(bucket, local, "2026/12/07/14/c.jsonl", (span(HOUR + timedelta(hours=1), 99_999) + "\n").encode())


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True).astype(str)


@pytest.mark.parametrize("fast", [False, True])
def test_an_object_store_hour_gives_the_same_tables_as_the_local_folder(bucket: str, tmp_path: Path,
                                                                        monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(native_fast, "MIN_BYTES", 0 if fast else 10**12)
    hour_files(bucket, tmp_path, big=fast)
    remote = ingest_partition(f"memory://{bucket}/root", HOUR)
    local = ingest_partition(tmp_path, HOUR)
    # Every span once: the repeated first line is a duplicate, the broken line invalid JSON.
    assert len(remote.spans) == (3000 if fast else 20)
    [first, _] = partition_files(f"memory://{bucket}/root", HOUR)
    # The DuckDB fast path reads the object's stream in blocks (None: it left the file to the generic path).
    assert (native_fast.try_read(first, first.key) is not None) is fast
    for name in ("spans", "quarantined", "audit"):
        assert comparable(getattr(remote, name)).equals(comparable(getattr(local, name))), name
    assert sorted(remote.audit["source_file"]) == ["2026/12/07/13/a.jsonl", "2026/12/07/13/b.jsonl"]
    assert set(remote.quarantined["reason"]) == {"invalid_json", "duplicate_span_id"}
    assert (remote.audit["spans_found"] == remote.audit["spans_written"] + remote.audit["spans_quarantined"]).all()


def test_partition_files_are_objects_remotely_and_paths_locally(bucket: str, tmp_path: Path) -> None:
    hour_files(bucket, tmp_path)
    remote = partition_files(f"memory://{bucket}/root", HOUR)
    assert all(isinstance(o, StoreObject) for o in remote)
    assert [o.key for o in remote] == ["2026/12/07/13/a.jsonl", "2026/12/07/13/b.jsonl"]
    assert partition_files(tmp_path, HOUR) == [tmp_path / "2026/12/07/13/a.jsonl", tmp_path / "2026/12/07/13/b.jsonl"]


def test_collector_minute_folders_are_one_hour(bucket: str) -> None:
    for minute in (0, 30, 59):
        key = f"year=2026/month=12/day=07/hour=13/minute={minute:02d}/traces_{minute}.json"
        land(bucket, None, key, (span(HOUR + timedelta(minutes=minute), minute) + "\n").encode())
    result = ingest_partition(f"memory://{bucket}/root", HOUR, layout="collector")
    assert sorted(result.spans["span_id"]) == ["s0", "s30", "s59"]
    assert result.audit["source_file"].str.startswith("year=2026/month=12/day=07/hour=13/minute=").all()


def test_day_files_give_every_span_to_exactly_one_hour(bucket: str) -> None:
    """LangSmith-style day files: each hour keeps its own rows; bad and timeless records count once, at 00:00."""
    layout = "resource=runs/year=%Y/month=%-m/day=%-d"
    lines = [span(DAY + timedelta(minutes=37 * i), i) for i in range(40)]  # 0:00 .. 24:03: one is the next day's
    lines.append('{"broken json')
    lines.append(span(DAY, 500).replace(f'"start_time": "{DAY.isoformat()}", ', ""))  # no start time
    land(bucket, None, "resource=runs/year=2026/month=12/day=7/part-0.jsonl", ("\n".join(lines) + "\n").encode())
    written: list[str] = []
    quarantined: list[tuple[int, str]] = []
    for h in range(24):
        result = ingest_partition(f"memory://{bucket}/root", DAY + timedelta(hours=h), layout=layout)
        assert (result.spans["start_time"] >= DAY + timedelta(hours=h)).all()
        assert (result.spans["start_time"] < DAY + timedelta(hours=h + 1)).all()
        assert int(result.audit["late_spans"].sum()) == 0
        audit = result.audit.iloc[0]
        assert audit["spans_found"] == audit["spans_written"] + audit["spans_quarantined"]
        written += list(result.spans["span_id"])
        quarantined += [(h, r) for r in result.quarantined["reason"]]
    in_day = [f"s{i}" for i in range(40) if DAY + timedelta(minutes=37 * i) < DAY + timedelta(days=1)]
    assert sorted(written) == sorted(in_day) and len(written) == len(set(written))
    assert sorted(quarantined) == [(0, "invalid_json"), (0, "missing_required_field")]


def test_a_store_that_keeps_failing_fails_the_partition_naming_the_key(bucket: str) -> None:
    hour_files(bucket, None)

    class Broken:
        def __init__(self) -> None:
            self.inner = fsspec.filesystem("memory")

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

        def cat_file(self, *args: object, **kwargs: object) -> bytes:
            raise ConnectionResetError("Connection reset by peer")

    store = Store(f"memory://{bucket}/root", retry=RetryPolicy(3, 0, 0), filesystem=Broken())
    with pytest.raises(StorageError, match=rf"memory://{bucket}/root/2026/12/07/13/a.jsonl: read bytes .*"
                                           "failed after 3 attempts: ConnectionResetError"):
        ingest_partition(store, HOUR)


def test_feedback_from_an_object_store(bucket: str) -> None:
    events = [{"event_id": f"e{i}", "span_id": f"s{i}", "trace_id": "t", "user_id": "u1", "session_id": "x",
               "event_type": "thumbs_up", "timestamp": f"2026-12-07T13:{i:02d}:00Z", "source": "app"}
              for i in range(5)]
    land(bucket, None, "2026/12/07/13/fb.jsonl.gz",
         gzip.compress(b"\n".join(orjson.dumps(e) for e in events) + b"\n"))
    result = ingest_feedback_partition(f"memory://{bucket}/root", HOUR)
    assert list(result.events["event_id"]) == [f"e{i}" for i in range(5)]
    assert list(result.audit["source_file"]) == ["2026/12/07/13/fb.jsonl.gz"]


def test_forget_rewrites_and_deletes_objects(bucket: str) -> None:
    mixed = [span(HOUR + timedelta(seconds=i), i, user="alice" if i % 2 else "bob") for i in range(6)]
    land(bucket, None, "2026/12/07/13/mixed.jsonl", ("\n".join(mixed) + "\n").encode())
    land(bucket, None, "2026/12/07/13/alice.jsonl",
         (span(HOUR, 100, user="alice") + "\n").encode())
    root = f"memory://{bucket}/root"
    keys = UserKeys("alice")
    collect_landing_keys([root], keys)
    assert keys.spans == {"s1", "s3", "s5", "s100"}
    dry = forget_in_landing(root, keys, dry_run=True)
    assert {i.action for i in dry} == {"rewrote_file", "deleted_file"}
    assert len(Store(root).list()) == 2  # a dry run changes nothing
    items = forget_in_landing(root, keys, dry_run=False)
    assert sorted((i.location, i.action) for i in items) == [("2026/12/07/13/alice.jsonl", "deleted_file"),
                                                              ("2026/12/07/13/mixed.jsonl", "rewrote_file")]
    [left] = Store(root).list()
    data = fsspec.filesystem("memory").cat_file(f"/{bucket}/root/{left.key}")
    assert b"alice" not in data and data.count(b"bob") == 3
    assert ingest_partition(root, HOUR).spans["user_id"].tolist() == ["bob"] * 3


def test_retention_deletes_old_objects_by_layout(bucket: str) -> None:
    for key in ("traces/2026-12-07T13-00-00.jsonl", "traces/2026-12-07T14-00-00.jsonl",
                "traces/2026-12-07T14-20-00.jsonl", "traces/README.md"):
        land(bucket, None, key, b"{}\n")
    root = f"memory://{bucket}/root"
    cutoff = datetime(2026, 12, 7, 14, tzinfo=UTC)  # hours 12:00 and 13:00 have ended
    dry = delete_old_objects(root, parse_layout("langfuse"), "landing_days", cutoff, dry_run=True)
    assert (dry.files, dry.action) == (2, "delete_objects")
    assert len(Store(root).list()) == 4
    record = delete_old_objects(root, "langfuse", "landing_days", cutoff)
    assert record.files == 2 and record.target == root
    assert [o.key for o in Store(root).list()] == ["traces/2026-12-07T14-20-00.jsonl", "traces/README.md"]


def test_inspect_reads_an_object_url(bucket: str, capsys) -> None:
    hour_files(bucket, None)
    assert cli.main(["inspect", f"memory://{bucket}/root/2026/12/07/13/b.jsonl", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "native" and summary["spans"] == 11 and summary["reasons"] == {"invalid_json": 1}
    assert cli.main(["inspect", f"memory://{bucket}/root/missing.jsonl", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "object does not exist"


def test_forget_says_what_it_cannot_remove_in_a_bucket(bucket: str) -> None:
    from aiobs_pipeline.governance.forget import ForgetItem, object_versions_note

    items = [ForgetItem("landing", "a.jsonl", "rewrote_file", 2, "records"),
             ForgetItem("landing", "b.jsonl", "deleted_file", 1, "records")]
    [note] = object_versions_note(items, [("landing", f"memory://{bucket}/root"), ("feedback_landing", Path("/x"))])
    assert (note.action, note.count, note.location) == ("versions_kept", 2, f"memory://{bucket}/root")
    assert "lifecycle" in note.detail
    assert object_versions_note(items, [("landing", Path("/local"))]) == []

STARTS = st.one_of(st.none(), st.just("not a time"),
                   st.datetimes(min_value=datetime(2026, 12, 6, 23), max_value=datetime(2026, 12, 8, 1),
                                timezones=st.just(UTC)),
                   st.integers(0, 25).map(lambda h: DAY - timedelta(hours=1) + timedelta(hours=h)))


@settings(max_examples=80, deadline=None)
@given(starts=st.lists(STARTS, min_size=1, max_size=40), rejects=st.integers(0, 3))
def test_day_file_rows_and_rejects_are_kept_by_exactly_one_hour(starts: list, rejects: int) -> None:
    layout = parse_layout("langsmith-bulk")
    kept: dict[int, list[int]] = {}
    kept_rejects = 0
    for h in range(24):
        read = FileRead(path=Path("x"), source_file="x", rows=pd.DataFrame({
            "row": range(len(starts)),
            "start_time": [s.isoformat() if isinstance(s, datetime) else s for s in starts]}),
            rejects=[Reject("invalid_json", "bad")] * rejects)
        keep_window(read, layout.window(DAY + timedelta(hours=h)))
        for row in ([] if read.rows is None else read.rows["row"]):
            kept.setdefault(int(row), []).append(h)
        kept_rejects += len(read.rejects)
    assert kept_rejects == rejects  # once, in the day's first hour
    for i, start in enumerate(starts):
        if not isinstance(start, datetime):
            assert kept.get(i) == [0]  # no usable start time: quarantined by the row rules, once
        elif DAY <= start < DAY + timedelta(days=1):
            assert kept.get(i) == [int((start - DAY) / timedelta(hours=1))]
        else:
            assert i not in kept  # another day's row: not this file's business today


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_langsmith_bulk_day_file_in_a_bucket_is_split_into_hours_once(bucket: str) -> None:
    data = (FIXTURES / "langsmith_bulk" / "runs_v1.parquet").read_bytes()
    land(bucket, None, "export_id=e1/tenant_id=t/session_id=s/resource=runs/year=2026/month=12/day=7/runs_v1.parquet",
         data)
    whole = ingest_files_of(FIXTURES / "langsmith_bulk" / "runs_v1.parquet")
    written: list[str] = []
    quarantined: list[str] = []
    for h in range(24):
        result = ingest_partition(f"memory://{bucket}/root", DAY + timedelta(hours=h), layout="langsmith-bulk")
        assert (result.spans["start_time"].dt.floor("h") == DAY + timedelta(hours=h)).all()
        assert (result.audit["spans_found"] == result.audit["spans_written"] + result.audit["spans_quarantined"]).all()
        written += list(result.spans["span_id"])
        quarantined += list(result.quarantined["reason"])
    assert sorted(written) == sorted(whole.spans["span_id"]) and len(written) == len(set(written))
    assert sorted(quarantined) == sorted(whole.quarantined["reason"])


def test_an_unreadable_day_file_is_reported_only_in_the_hour_that_quarantines_it(bucket: str) -> None:
    day = "resource=runs/year=2026/month=12/day=7"
    land(bucket, None, f"{day}/part-00001.parquet", (FIXTURES / "langsmith_bulk" / "not_parquet.parquet").read_bytes())
    root = f"memory://{bucket}/root"
    first = ingest_partition(root, DAY, layout="langsmith-bulk")
    assert list(first.quarantined["reason"]) == ["unreadable_file"]
    assert first.unreadable_files == [f"{day}/part-00001.parquet"]
    later = ingest_partition(root, DAY + timedelta(hours=9), layout="langsmith-bulk")
    # No unreadable_file record in this hour, so nothing to report as unreadable here (the audit row keeps
    # the file's error); before, every hour of the day logged "could not be read at all; see quarantined_spans".
    assert later.quarantined.empty and later.unreadable_files == []
    assert later.audit.set_index("source_file").loc[f"{day}/part-00001.parquet", "file_error"]


def test_langfuse_blob_files_in_a_bucket_belong_to_the_hour_before_their_window_end(bucket: str) -> None:
    for key in ("observations_v2/2026-12-07T14-00-00.jsonl", "scores/2026-12-07T14-00-00.jsonl",
                "manifests/2026-12-07T14-00-00.json"):
        land(bucket, None, key, (FIXTURES / "langfuse_blob" / key).read_bytes())
    root = f"memory://{bucket}/root"
    hour13 = ingest_partition(root, HOUR, layout="langfuse")
    assert list(hour13.audit["source_file"]) == ["observations_v2/2026-12-07T14-00-00.jsonl"]
    whole = ingest_files_of(FIXTURES / "langfuse_blob" / "observations_v2" / "2026-12-07T14-00-00.jsonl")
    assert sorted(hour13.spans["span_id"]) == sorted(whole.spans["span_id"]) and len(hour13.spans)
    assert ingest_partition(root, HOUR + timedelta(hours=1), layout="langfuse").audit.empty
    scores = ingest_feedback_partition(root, HOUR, layout="langfuse-scores")
    assert list(scores.audit["source_file"]) == ["scores/2026-12-07T14-00-00.jsonl"] and len(scores.events)


def ingest_files_of(path: Path):
    from aiobs_pipeline.ingest.partition import ingest_files

    return ingest_files([path], DAY, path.parent)
