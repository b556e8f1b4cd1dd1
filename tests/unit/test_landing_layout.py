"""ingest/layout.py: presets and patterns, which export hour each key belongs to, and the listings that find
an hour's objects (memory:// roots)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobs_pipeline.ingest.layout import (
    HOUR,
    PRESETS,
    LayoutError,
    objects_by_hour,
    objects_for_hour,
    parse_layout,
)
from aiobs_pipeline.ingest.storage import open_root

H13 = datetime(2026, 12, 7, 13, tzinfo=UTC)


@pytest.fixture
def bucket() -> Iterator[str]:
    name = f"lay-{uuid.uuid4().hex[:10]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


def put(bucket: str, *keys: str) -> None:
    for key in keys:
        fsspec.filesystem("memory").pipe(f"/{bucket}/{key}", b"{}\n")


@pytest.mark.parametrize(("layout", "key", "hour"), [
    ("%Y/%m/%d/%H", "2026/12/07/13/app.jsonl", H13),
    ("aiobs", "2026/12/07/13/app.jsonl", H13),
    ("collector", "year=2026/month=12/day=07/hour=13/minute=59/traces_1.json", H13),
    ("collector", "year=2026/month=12/day=07/hour=13/minute=00/logs_2.json.gz", H13),
    ("collector-hourly", "year=2026/month=12/day=07/hour=13/traces_1.json", H13),
    ("year=%Y/month=%m/day=%d/hour=%H", "year=2026/month=12/day=07/hour=13/x.json", H13),
    # Langfuse: named after the window's end; a window ending on the hour belongs to the hour before.
    ("langfuse", "observations_v2/2026-12-07T14-00-00.jsonl", H13),
    ("langfuse", "traces/2026-12-07T13-20-00.json", H13),
    ("langfuse", "observations/2026-12-07T13-00-01.csv", H13),
    ("langfuse", "observations/2026-12-07T13-00-00.csv", H13 - HOUR),
    ("langfuse-scores", "scores/2026-12-08T00-00-00.jsonl", datetime(2026, 12, 7, 23, tzinfo=UTC)),
    # LangSmith bulk export: by day, month and day unpadded; the day's first hour stands for the day.
    ("langsmith-bulk", "exp/export_id=1/tenant_id=2/session_id=3/resource=runs/year=2026/month=12/day=7/"
                       "0.parquet", datetime(2026, 12, 7, tzinfo=UTC)),
    ("langsmith-bulk", "resource=runs/year=2026/month=3/day=17/a.parquet", datetime(2026, 3, 17, tzinfo=UTC)),
])
def test_keys_map_to_their_export_hour(layout: str, key: str, hour: datetime) -> None:
    assert parse_layout(layout).hour_of(key) == hour


@pytest.mark.parametrize(("layout", "key"), [
    ("aiobs", "2026/12/07/13/sub/app.jsonl"),  # deeper than the hour folder
    ("aiobs", "2026/12/07/app.jsonl"),
    ("aiobs", "2026/02/30/13/app.jsonl"),  # no such day
    ("collector", "year=2026/month=12/day=07/hour=13/x.json"),  # no minute folder
    ("langfuse", "scores/2026-12-07T13-20-00.jsonl"),  # scores are feedback, not spans
    ("langfuse", "traces/2026-12-07T13-20.jsonl"),
    ("langsmith-bulk", "resource=runs/year=2026/month=012/day=7/a.parquet"),
])
def test_keys_outside_the_layout_belong_to_no_hour(layout: str, key: str) -> None:
    assert parse_layout(layout).hour_of(key) is None


def test_day_files_are_read_by_every_hour_of_their_day() -> None:
    layout = parse_layout("langsmith-bulk")
    hours = layout.hours_of("resource=runs/year=2026/month=12/day=7/a.parquet")
    assert hours == [datetime(2026, 12, 7, h, tzinfo=UTC) for h in range(24)]
    assert layout.daily and not parse_layout("collector").daily
    first, other = layout.window(hours[0]), layout.window(hours[5])
    assert first.filter_rows and first.keeps_timeless
    assert other.filter_rows and not other.keeps_timeless
    assert (other.start, other.end) == (hours[5], hours[6])
    hourly = parse_layout("aiobs").window(H13)
    assert not hourly.filter_rows and hourly.keeps_timeless


@pytest.mark.parametrize(("setting", "message"), [
    ("", "is empty"),
    ("%Y/%m/%H", "missing day"),
    ("%Y/%m/%d/%M", "must not skip a level"),
    ("%Y/%m/%d/%j", "%j is not supported"),
    ("../%Y/%m/%d", "relative to the root"),
    ("%Y/{}/%m/%d", "empty {} alternatives"),
])
def test_bad_layouts_are_refused_with_the_setting_named(setting: str, message: str) -> None:
    with pytest.raises(LayoutError, match="ingest.landing_layout") as caught:
        parse_layout(setting)
    assert message in str(caught.value)


def test_every_preset_compiles() -> None:
    for name in PRESETS:
        assert parse_layout(name).setting == name


def test_an_hour_reads_all_its_minute_folders_and_nothing_else(bucket: str) -> None:
    put(bucket,
        "year=2026/month=12/day=07/hour=13/minute=00/a.json",
        "year=2026/month=12/day=07/hour=13/minute=37/b.json",
        "year=2026/month=12/day=07/hour=12/minute=59/c.json",
        "year=2026/month=12/day=07/hour=14/minute=00/d.json")
    keys = [o.key for o in objects_for_hour(open_root(f"memory://{bucket}"), parse_layout("collector"), H13)]
    assert keys == ["year=2026/month=12/day=07/hour=13/minute=00/a.json",
                    "year=2026/month=12/day=07/hour=13/minute=37/b.json"]


def test_langfuse_windows_on_and_off_the_hour(bucket: str) -> None:
    put(bucket,
        "traces/2026-12-07T13-00-00.jsonl",   # 12:40-13:00 -> 12:00
        "traces/2026-12-07T13-20-00.jsonl",   # -> 13:00
        "traces/2026-12-07T13-40-00.jsonl",   # -> 13:00
        "observations_v2/2026-12-07T14-00-00.jsonl",  # -> 13:00
        "observations_v2/2026-12-07T14-20-00.jsonl",  # -> 14:00
        "scores/2026-12-07T13-20-00.jsonl")   # feedback, not spans
    store = open_root(f"memory://{bucket}")
    keys = [o.key for o in objects_for_hour(store, parse_layout("langfuse"), H13)]
    assert keys == ["observations_v2/2026-12-07T14-00-00.jsonl", "traces/2026-12-07T13-20-00.jsonl",
                    "traces/2026-12-07T13-40-00.jsonl"]
    assert [o.key for o in objects_for_hour(store, parse_layout("langfuse-scores"), H13)] == [
        "scores/2026-12-07T13-20-00.jsonl"]


def test_unpadded_day_files(bucket: str) -> None:
    put(bucket, "e/resource=runs/year=2026/month=12/day=7/a.parquet",
        "e/resource=runs/year=2026/month=12/day=17/b.parquet")
    store, layout = open_root(f"memory://{bucket}"), parse_layout("langsmith-bulk")
    assert [o.name for o in objects_for_hour(store, layout, datetime(2026, 12, 7, 5, tzinfo=UTC))] == ["a.parquet"]
    assert [o.name for o in objects_for_hour(store, layout, datetime(2026, 12, 17, 23, tzinfo=UTC))] == [
        "b.parquet"]


def test_objects_by_hour_matches_objects_for_hour(bucket: str) -> None:
    put(bucket, *(f"2026/12/{d:02d}/{h:02d}/f.jsonl" for d in (6, 7) for h in (0, 11, 23)))
    store, layout = open_root(f"memory://{bucket}"), parse_layout("aiobs")
    start, end = datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, 12, tzinfo=UTC)
    grouped = objects_by_hour(store, layout, start, end)
    assert sorted(grouped) == [datetime(2026, 12, 6, h, tzinfo=UTC) for h in (0, 11, 23)] + [
        datetime(2026, 12, 7, h, tzinfo=UTC) for h in (0, 11)]
    for hour, objects in grouped.items():
        assert objects == objects_for_hour(store, layout, hour)


# A window end anywhere in two days, to the second; window lengths Langfuse offers.
ENDS = st.datetimes(min_value=datetime(2026, 12, 6, 0, 0, 1), max_value=datetime(2026, 12, 8, 0, 0, 0),
                    timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=60, deadline=None)
@given(ends=st.lists(ENDS, min_size=1, max_size=25, unique=True))
def test_every_langfuse_object_is_read_by_exactly_one_hour(ends: list[datetime]) -> None:
    name = f"prop-{uuid.uuid4().hex[:10]}"
    memory = fsspec.filesystem("memory")
    keys = {f"traces/{end:%Y-%m-%dT%H-%M-%S}.jsonl": end for end in ends}
    for key in keys:
        memory.pipe(f"/{name}/{key}", b"{}\n")
    try:
        store, layout = open_root(f"memory://{name}"), parse_layout("langfuse")
        seen: dict[str, list[datetime]] = {}
        hour = datetime(2026, 12, 5, 23, tzinfo=UTC)
        while hour < datetime(2026, 12, 8, 1, tzinfo=UTC):
            for obj in objects_for_hour(store, layout, hour):
                seen.setdefault(obj.key, []).append(hour)
            hour += HOUR
        assert set(seen) == set(keys)
        for key, hours in seen.items():
            assert len(hours) == 1
            # The hour holds the window's last instant: end - 1 us is in [hour, hour + 1h).
            assert hours[0] <= keys[key] - timedelta(microseconds=1) < hours[0] + HOUR
        # One listing over the range gives the same assignment (the sensor's view).
        grouped = objects_by_hour(store, layout, datetime(2026, 12, 5, 23, tzinfo=UTC),
                                  datetime(2026, 12, 8, 1, tzinfo=UTC))
        assert {o.key: [h] for h, objs in grouped.items() for o in objs} == seen
    finally:
        memory.rm(f"/{name}", recursive=True)


@pytest.mark.parametrize(("layout", "expected"), [
    ("aiobs", [("2026/12", "0")]),
    ("collector", [("year=2026/month=12", "day=0")]),
    ("langfuse", [("observations_v2", "2026-12-0"), ("observations", "2026-12-0"), ("traces", "2026-12-0")]),
    ("langsmith-bulk", [("", "")]),
])
def test_a_range_is_listed_once_per_branch_with_the_prefix_its_hours_share(bucket: str, layout: str,
                                                                          expected: list, monkeypatch) -> None:
    from aiobs_pipeline.ingest import storage

    calls = []
    monkeypatch.setattr(storage.Store, "list", lambda self, prefix="", name_prefix="": calls.append(
        (prefix, name_prefix)) or [])
    objects_by_hour(open_root(f"memory://{bucket}"), parse_layout(layout), datetime(2026, 12, 5, 10, tzinfo=UTC),
                    datetime(2026, 12, 8, 10, tzinfo=UTC))
    assert calls == expected


def test_a_window_is_also_its_start_end_pair() -> None:
    window = parse_layout("langsmith-bulk").window(H13)
    start, end = window
    assert (start, end) == (window[0], window[1]) == (H13, H13 + HOUR) and len(window) == 2
