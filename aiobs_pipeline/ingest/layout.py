"""How the objects under a landing or feedback root map to export hours (`ingest.landing_layout`).

A layout is a named preset or a pattern relative to the root, in strftime fields:

* `%Y %m %d %H %M %S` (zero-padded) and `%-m %-d %-H %-M %-S` (unpadded, as LangSmith writes month and day);
  `*` matches any text within one part of the key, `**/` any number of folders, `{a,b}` one of the names.
* The pattern names the folder that holds the files (`%Y/%m/%d/%H`: every file directly in it), or, when its
  last part has a `*`, the files themselves (`traces/%Y-%m-%dT%H-%M-%S.*`).
* `end:PATTERN` says the time in the key is the end of the export window, not its start.

Which export hour an object belongs to, so that every record is read exactly once across partitions, in any
backfill order:

* Time is a start, finest field an hour or finer (`%H`, `%M`, `%S`): the hour containing that time. With
  minute folders, an hour's partition reads all its minutes.
* Time is a window end T (Langfuse names each object after the end of its 20-minute, hourly or daily
  window): the hour containing T - 1 microsecond, the last instant the window covers. A window ending on
  the hour (14:00:00) belongs to 13:00; one ending at 14:20:00 to 14:00.
* Finest field a day (LangSmith's bulk export files by day): every hour of that day reads the day's objects
  and keeps only the records whose own start time falls in it (`Window.filter_rows`); the others are other
  hours' (neither written nor quarantined here), and records without a usable start time are quarantined
  once, in the day's first hour (00:00 UTC).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from aiobs_pipeline.ingest.storage import Store, StoreObject

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)

PRESETS: dict[str, str] = {
    # aiobs' own layout (the OTLP file exporter, `aiobs generate`): ROOT/YYYY/MM/DD/HH/<file>.
    "aiobs": "%Y/%m/%d/%H",
    # The OpenTelemetry Collector's awss3 exporter, s3_partition_format default and its hourly variant.
    "collector": "year=%Y/month=%m/day=%d/hour=%H/minute=%M",
    "collector-hourly": "year=%Y/month=%m/day=%d/hour=%H",
    # Langfuse blob-storage export, root = {bucket}/{prefix}{projectId}/: one object per table and window,
    # named after the window's end. Spans come from traces/observations, feedback from scores.
    "langfuse": "end:{observations_v2,observations,traces}/%Y-%m-%dT%H-%M-%S.*",
    "langfuse-scores": "end:scores/%Y-%m-%dT%H-%M-%S.*",
    # LangSmith bulk export: .../resource=runs/year=2026/month=12/day=7/<file>.parquet (unpadded).
    "langsmith-bulk": "**/resource=runs/year=%Y/month=%-m/day=%-d",
}
DEFAULT_LAYOUT = "%Y/%m/%d/%H"

# strftime field -> (component, regex); the component orders fields from coarse to fine.
_FIELDS = {
    "Y": ("year", r"\d{4}"), "m": ("month", r"\d{2}"), "d": ("day", r"\d{2}"), "H": ("hour", r"\d{2}"),
    "M": ("minute", r"\d{2}"), "S": ("second", r"\d{2}"),
    "-m": ("month", r"\d{1,2}"), "-d": ("day", r"\d{1,2}"), "-H": ("hour", r"\d{1,2}"),
    "-M": ("minute", r"\d{1,2}"), "-S": ("second", r"\d{1,2}"),
}
_ORDER = ("year", "month", "day", "hour", "minute", "second")
_TOKEN = re.compile(r"%(-?[A-Za-z%])|\*\*/|\*|\{([^{}/]*)\}")


class LayoutError(ValueError):
    """A landing layout setting that cannot be used; the message names the setting and the problem."""


@dataclass(frozen=True)
class Window:
    """The export hour an object is read for, and whether its records must be filtered by start time."""

    start: datetime
    end: datetime
    # True for day files: keep only records whose start time is in [start, end).
    filter_rows: bool = False
    # True in the one hour that quarantines records of day files without a usable start time.
    keeps_timeless: bool = True

    # A Window is also the (start, end) pair readers filter by (`start, end = window`, `window[0]`).
    def __iter__(self) -> Iterator[datetime]:
        return iter((self.start, self.end))

    def __getitem__(self, index: int) -> datetime:
        return (self.start, self.end)[index]

    def __len__(self) -> int:
        return 2


@dataclass(frozen=True)
class Layout:
    """A compiled landing layout: which keys belong to which export hours."""

    setting: str
    pattern: str
    time_is_end: bool
    names_files: bool
    regex: re.Pattern[str]
    components: tuple[str, ...]

    @property
    def granularity(self) -> str:
        """The finest time component in the pattern (hour, minute, second or day)."""
        return max(self.components, key=_ORDER.index)

    @property
    def daily(self) -> bool:
        """True when objects are filed by day (their records are split into hours by start time)."""
        return _ORDER.index(self.granularity) < _ORDER.index("hour")

    def key_time(self, key: str) -> datetime | None:
        """The time a key names (UTC), or None when the key does not follow the layout."""
        match = self.regex.match(key)
        if match is None:
            return None
        parts: dict[str, int] = {}
        for name, value in match.groupdict().items():
            component = name.rstrip("0123456789")
            if parts.setdefault(component, int(value)) != int(value):
                return None  # the same field twice with different values
        parts = {"month": 1, "day": 1, "hour": 0, "minute": 0, "second": 0, **parts}
        try:
            return datetime(parts["year"], parts["month"], parts["day"], parts["hour"], parts["minute"],
                            parts["second"], tzinfo=UTC)
        except ValueError:
            return None

    def hour_of(self, key: str) -> datetime | None:
        """The export hour (UTC) a key belongs to; for day files the day's first hour; None if unmatched."""
        when = self.key_time(key)
        if when is None:
            return None
        if self.time_is_end:
            when -= MICROSECOND
        if self.daily:
            return when.replace(hour=0, minute=0, second=0, microsecond=0)
        return when.replace(minute=0, second=0, microsecond=0)

    def hours_of(self, key: str) -> list[datetime]:
        """Every export hour that reads a key: one hour, or the 24 hours of a day file."""
        first = self.hour_of(key)
        if first is None:
            return []
        return [first + i * HOUR for i in range(24)] if self.daily else [first]

    def window(self, hour: datetime) -> Window:
        """The window an hour's partition reads, and whether records are filtered to it."""
        hour = _utc_hour(hour)
        return Window(hour, hour + HOUR, filter_rows=self.daily, keeps_timeless=not self.daily or hour.hour == 0)

    def _renders(self, hour: datetime) -> list[tuple[datetime, str]]:
        """(time, finest field) to render the pattern at for the listings of an hour."""
        if self.daily:
            return [(hour, "day")]
        if self.time_is_end:
            # Window ends in (hour, hour + 1h]: within the hour, or exactly on the next one.
            return [(hour, "hour"), (hour + HOUR, "second")]
        return [(hour, "hour")]

    def branch_prefixes(self, hour: datetime) -> list[tuple[tuple[str, ...], str]]:
        """(alternatives chosen, key prefix) pairs: every object of the hour has a key starting with one."""
        hour = _utc_hour(hour)
        return [out for when, finest in self._renders(hour) for out in _render(self.pattern, when, finest)]

    def list_prefixes(self, hour: datetime) -> list[tuple[str, str]]:
        """(folder, name prefix) pairs relative to the root whose listings hold every object of the hour."""
        prefixes: list[tuple[str, str]] = []
        for _, prefix in self.branch_prefixes(hour):
            pair = split_prefix(prefix)
            if pair not in prefixes:
                prefixes.append(pair)
        return prefixes


def _utc_hour(hour: datetime) -> datetime:
    hour = hour.astimezone(UTC) if hour.tzinfo else hour.replace(tzinfo=UTC)
    return hour.replace(minute=0, second=0, microsecond=0)


def split_prefix(prefix: str) -> tuple[str, str]:
    """A key prefix as (folder, start of the names under it): a listing is of a folder, filtered by name."""
    return (prefix[: prefix.rfind("/")], prefix[prefix.rfind("/") + 1:]) if "/" in prefix else ("", prefix)


def _render(pattern: str, when: datetime, finest: str) -> list[tuple[tuple[str, ...], str]]:
    """The pattern rendered for `when` up to the first field finer than `finest` or the first wildcard, one
    (alternatives chosen, text) per combination of the `{a,b}` alternatives before that point."""
    outs: list[tuple[tuple[str, ...], str]] = [((), "")]
    limit = _ORDER.index(finest)
    position = 0
    for match in _TOKEN.finditer(pattern):
        literal = pattern[position:match.start()]
        outs = [(c, o + literal) for c, o in outs]
        position = match.end()
        if match.group(1) is not None:
            name = match.group(1)
            if name == "%":
                outs = [(c, o + "%") for c, o in outs]
                continue
            component = _FIELDS[name][0]
            if _ORDER.index(component) > limit:
                break
            value = getattr(when, component)
            text = f"{value:04d}" if component == "year" else (str(value) if name.startswith("-") else f"{value:02d}")
            outs = [(c, o + text) for c, o in outs]
        elif match.group(2) is not None:
            outs = [((*c, choice), o + choice) for c, o in outs for choice in match.group(2).split(",")]
        else:  # a wildcard: the listing must start before it
            break
    else:
        outs = [(c, o + pattern[position:] + "/") for c, o in outs]  # a folder pattern: list its files
    return outs


@lru_cache(maxsize=64)
def parse_layout(setting: str) -> Layout:
    """Compile a layout setting (a preset name or a pattern); raise LayoutError naming what is wrong."""
    text = (setting or "").strip()
    if not text:
        raise LayoutError("ingest.landing_layout is empty; use a preset "
                          f"({', '.join(sorted(PRESETS))}) or a strftime pattern such as {DEFAULT_LAYOUT}")
    pattern = PRESETS.get(text, text)
    time_is_end = pattern.startswith("end:")
    pattern = pattern.removeprefix("end:").strip("/")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise LayoutError(f"ingest.landing_layout {setting!r}: must be relative to the root")
    regex = ["^"]
    components: list[str] = []
    counts: dict[str, int] = {}
    position = 0
    for match in _TOKEN.finditer(pattern):
        regex.append(re.escape(pattern[position:match.start()]))
        position = match.end()
        token = match.group(0)
        if match.group(1) is not None:
            name = match.group(1)
            if name == "%":
                regex.append("%")
                continue
            if name not in _FIELDS:
                raise LayoutError(f"ingest.landing_layout {setting!r}: %{name} is not supported; use "
                                  + " ".join(f"%{f}" for f in _FIELDS))
            component, field_regex = _FIELDS[name]
            counts[component] = counts.get(component, 0) + 1
            group = component if counts[component] == 1 else f"{component}{counts[component]}"
            regex.append(f"(?P<{group}>{field_regex})")
            components.append(component)
        elif match.group(2) is not None:
            choices = [c for c in match.group(2).split(",") if c]
            if not choices:
                raise LayoutError(f"ingest.landing_layout {setting!r}: empty {{}} alternatives")
            regex.append("(?:" + "|".join(re.escape(c) for c in choices) + ")")
        elif token == "**/":
            regex.append(r"(?:[^/]+/)*")
        else:
            regex.append(r"[^/]*")
    regex.append(re.escape(pattern[position:]))
    last = pattern.rsplit("/", 1)[-1]
    names_files = "*" in last
    if not names_files:
        regex.append(r"/[^/]+")
    regex.append("$")
    missing = [c for c in ("year", "month", "day") if c not in components]
    if missing:
        raise LayoutError(f"ingest.landing_layout {setting!r}: needs at least year, month and day fields "
                          f"(missing {', '.join(missing)}); presets: {', '.join(sorted(PRESETS))}")
    present = [c for c in _ORDER if c in components]
    if present != list(_ORDER[:len(present)]):
        raise LayoutError(f"ingest.landing_layout {setting!r}: time fields must not skip a level "
                          f"(has {', '.join(present)})")
    return Layout(text, pattern, time_is_end, names_files, re.compile("".join(regex)), tuple(components))


# ------------------------------------------------------------------------------------------------ listing


def objects_for_hour(store: Store, layout: Layout, hour: datetime) -> list[StoreObject]:
    """The objects of one export hour under a root, sorted by key (the order records are deduplicated in)."""
    hour = _utc_hour(hour)
    found: dict[str, StoreObject] = {}
    for folder, name_prefix in layout.list_prefixes(hour):
        for obj in store.list(folder, name_prefix):
            if layout.hour_of(obj.key) is not None and hour in layout.hours_of(obj.key):
                found[obj.key] = obj
    return [found[k] for k in sorted(found)]


def objects_by_hour(store: Store, layout: Layout, start: datetime, end: datetime) -> dict[datetime, list[StoreObject]]:
    """The objects of every export hour in [start, end), from one listing per branch of the pattern (one in
    all, unless the pattern has `{a,b}` alternatives): the longest key prefix all the hours share."""
    start, end = _utc_hour(start), _utc_hour(end)
    hours = []
    when = start
    while when < end:
        hours.append(when)
        when += HOUR
    branches: dict[tuple[str, ...], list[str]] = {}
    for hour in hours:
        for choices, prefix in layout.branch_prefixes(hour):
            branches.setdefault(choices, []).append(prefix)
    wanted = set(hours)
    found: dict[datetime, dict[str, StoreObject]] = {}
    for prefixes in branches.values():
        for obj in store.list(*split_prefix(os.path.commonprefix(prefixes))):
            for hour in layout.hours_of(obj.key):
                if hour in wanted:
                    found.setdefault(hour, {})[obj.key] = obj
    return {hour: [objs[k] for k in sorted(objs)] for hour, objs in sorted(found.items())}
