"""Alert rules: plain functions that read warehouse tables for a set of hours and say, per subject, whether
the rule is firing, ok, or has no verdict (too little data: no observation at all).

A rule never decides whether anyone is notified; it reports `Observation`s (rule, scope, subject, hour,
status, severity, value, threshold, summary, details, links). The alert state (state.py) turns them into
fired / reminder / escalated / resolved transitions, and notify.py into messages. That split keeps each rule a
pure function of its tables, evaluated as often as needed with the same result (idempotent sensor ticks).

Tables are read through a `TableReader` (the warehouse in Dagster, `FrameReader` over DataFrames in tests),
only for the hours at stake and their baseline hours, with the columns the rule needs. A table that does not
exist yet (quality tables land later) makes the rule report a note and no observation, never an alert.

Every rate or mean is judged only above a minimum count, so a quiet hour pages nobody. The rule catalogue
(`RULES`) names each rule's metric, the assets whose materialisation triggers it and its runbook.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from aiobs_pipeline.alerting.settings import SEVERITIES, AlertSettings

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
NONE_LABEL = "(none)"
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"  # Dagster's hourly partition keys
MAX_KEY_LENGTH = 300
ObservationStatus = Literal["firing", "ok", "expired"]


def utc(value: Any) -> pd.Timestamp:
    """A timestamp as UTC-aware (naive values mean UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def utc_series(series: pd.Series) -> pd.Series:
    """A column of timestamps as UTC-aware (warehouses may hand naive UTC back)."""
    converted = pd.to_datetime(series)
    return converted.dt.tz_localize("UTC") if converted.dt.tz is None else converted.dt.tz_convert("UTC")


def severity_rank(severity: str | None) -> int:
    """info < warning < critical; unknown or None ranks lowest."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def alert_key(rule: str, scope: str, subject: str) -> str:
    """The stable dedupe key of an alert: `<rule>:<scope>:<subject>`, hashed when the subject is very long."""
    key = f"{rule}:{scope}:{subject}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:16]
    return f"{rule}:{scope}:{subject[:MAX_KEY_LENGTH - len(rule) - len(scope) - 20]}~{digest}"


@dataclass(frozen=True)
class Link:
    """What an alert points at: a partition, trace, user, run, runbook or folder; target is a URL or a reference."""

    kind: str
    label: str
    target: str

    @property
    def is_url(self) -> bool:
        """True when the target can be opened in a browser."""
        return self.target.startswith(("http://", "https://"))

    def to_dict(self) -> dict[str, str]:
        """Plain-data form (run config, JSON)."""
        return {"kind": self.kind, "label": self.label, "target": self.target}


@dataclass(frozen=True)
class Observation:
    """One verdict of a rule on one subject for one hour (or one event, for run failures)."""

    rule: str
    scope: str
    subject: str
    status: ObservationStatus
    hour: pd.Timestamp
    severity: str | None = None
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[Link, ...] = ()

    @property
    def key(self) -> str:
        """The alert's dedupe key."""
        return alert_key(self.rule, self.scope, self.subject)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (sensor run config)."""
        return {
            "rule": self.rule, "scope": self.scope, "subject": self.subject, "status": self.status,
            "hour": utc(self.hour).isoformat(), "severity": self.severity, "value": _finite(self.value),
            "threshold": _finite(self.threshold), "summary": self.summary, "details": _jsonable(self.details),
            "links": [link.to_dict() for link in self.links],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        """Inverse of to_dict."""
        return cls(
            rule=str(data["rule"]), scope=str(data["scope"]), subject=str(data["subject"]),
            status=data["status"], hour=utc(data["hour"]), severity=data.get("severity"),
            value=data.get("value"), threshold=data.get("threshold"), summary=str(data.get("summary") or ""),
            details=dict(data.get("details") or {}),
            links=tuple(Link(str(x["kind"]), str(x["label"]), str(x["target"])) for x in data.get("links") or ()),
        )


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """Details as plain JSON data (numpy scalars, timestamps and NaN converted)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp | datetime):
        return utc(value).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


# ----------------------------------------------------------------------------------------------------------
# Reading tables
# ----------------------------------------------------------------------------------------------------------


class TableUnavailable(Exception):
    """The warehouse cannot be read right now (e.g. a run holds the DuckDB file); try again next tick."""


class TableReader(Protocol):
    """Read-only access to warehouse tables."""

    def columns(self, table: str) -> list[str] | None:
        """The table's column names, or None when the table does not exist."""
        ...

    def read(self, table: str, columns: Sequence[str], where: Mapping[str, Any]) -> pd.DataFrame:
        """Rows matching equality / IN filters (list values), only the given columns."""
        ...


class FrameReader:
    """A TableReader over in-memory DataFrames (tests, the demo); absent names are absent tables."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]) -> None:
        self.tables = dict(tables)
        self.reads: list[tuple[str, tuple[str, ...]]] = []

    def columns(self, table: str) -> list[str] | None:
        """Column names, None when absent."""
        frame = self.tables.get(table)
        return None if frame is None else [str(c) for c in frame.columns]

    def read(self, table: str, columns: Sequence[str], where: Mapping[str, Any]) -> pd.DataFrame:
        """Filter like the warehouse does (timestamps compared in UTC)."""
        self.reads.append((table, tuple(columns)))
        frame = self.tables[table]
        mask = pd.Series(True, index=frame.index)
        for column, wanted in where.items():
            values = frame[column]
            wanted_list = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            if pd.api.types.is_datetime64_any_dtype(values):
                values = utc_series(values)
                wanted_list = [utc(v) for v in wanted_list]
            mask &= values.isin(wanted_list)
        return frame.loc[mask, list(columns)].reset_index(drop=True)


class MemoReader:
    """Wraps a reader so rules sharing a table and hours read it once per evaluation."""

    def __init__(self, reader: TableReader) -> None:
        self._reader = reader
        self._columns: dict[str, list[str] | None] = {}
        self._frames: dict[tuple[Any, ...], pd.DataFrame] = {}

    def columns(self, table: str) -> list[str] | None:
        """Cached column names."""
        if table not in self._columns:
            self._columns[table] = self._reader.columns(table)
        return self._columns[table]

    def read(self, table: str, columns: Sequence[str], where: Mapping[str, Any]) -> pd.DataFrame:
        """Cached read keyed by table, columns and filters."""
        key = (table, tuple(columns), tuple(sorted((k, _hashable(v)) for k, v in where.items())))
        if key not in self._frames:
            self._frames[key] = self._reader.read(table, columns, where)
        return self._frames[key]


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(sorted(str(v) for v in value))
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# Links
# ----------------------------------------------------------------------------------------------------------


class Links:
    """Builds the links alerts carry, as URLs where settings give a base, else as references to look up."""

    def __init__(self, alerts: AlertSettings) -> None:
        self.alerts = alerts

    def partition(self, asset: str, hour: pd.Timestamp) -> Link:
        """The hourly partition of an asset (Dagster UI when configured)."""
        key = utc(hour).strftime(PARTITION_FORMAT)
        ui = self.alerts.dagster_ui_url
        target = (f"{ui}/assets/{quote(asset)}?view=partitions&partition={quote(key)}" if ui
                  else f"asset {asset}, partition {key}")
        return Link("partition", f"{asset} {key}", target)

    def trace(self, trace_id: str) -> Link:
        """A trace: the tracing UI when configured, else the CLI command that shows it."""
        template = self.alerts.trace_url_template
        target = template.format(trace_id=quote(trace_id)) if template else f"aiobs trace show {trace_id}"
        return Link("trace", f"trace {trace_id}", target)

    def user(self, user_id: str) -> Link:
        """A user: the admin UI when configured."""
        template = self.alerts.user_url_template
        target = template.format(user_id=quote(user_id)) if template else f"user_id {user_id}"
        return Link("user", f"user {user_id}", target)

    def run(self, run_id: str) -> Link:
        """A Dagster run."""
        ui = self.alerts.dagster_ui_url
        return Link("run", f"run {run_id[:8]}", f"{ui}/runs/{run_id}" if ui else f"dagster run {run_id}")

    def runbook(self, rule: str) -> Link:
        """The rule's runbook."""
        base = self.alerts.runbook_base_url
        return Link("runbook", f"runbook {rule}", f"{base}/{rule}.md" if base else f"docs/runbooks/{rule}.md")

    def landing(self, hour: pd.Timestamp) -> Link:
        """The landing folder of an export hour (relative to the landing root)."""
        return Link("folder", "landing folder", f"<landing_root>/{utc(hour):%Y/%m/%d/%H}/")


# ----------------------------------------------------------------------------------------------------------
# Rule machinery
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RuleContext:
    """What a rule evaluation gets: a reader, the hours to judge, the settings, the clock and link builder."""

    reader: TableReader
    hours: list[pd.Timestamp]
    alerts: AlertSettings
    now: pd.Timestamp
    links: Links


@dataclass
class RuleResult:
    """A rule's observations for the hours it judged, with notes on what it could not judge and why."""

    rule: str
    hours: list[pd.Timestamp] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False


@dataclass(frozen=True)
class RuleSpec:
    """One rule of the catalogue."""

    id: str
    title: str
    family: Literal["ingest", "costs", "quality", "pipeline"]
    metric: str
    severities: str
    absent_means_ok: bool
    evaluate: Callable[[RuleContext], RuleResult] | None


def _load(ctx: RuleContext, result: RuleResult, table: str, required: Sequence[str],
          where: Mapping[str, Any], optional: Sequence[str] = ()) -> pd.DataFrame | None:
    """Read a table for a rule, or note why it cannot be (absent table, missing column) and return None."""
    columns = ctx.reader.columns(table)
    if columns is None:
        result.notes.append(f"{result.rule}: table {table} does not exist yet, not evaluated")
        result.skipped = True
        return None
    missing = [c for c in required if c not in columns]
    if missing:
        result.notes.append(f"{result.rule}: table {table} has no column(s) {', '.join(missing)}, not evaluated "
                            f"(check the alerts settings naming its columns)")
        result.skipped = True
        return None
    frame = ctx.reader.read(table, [*required, *(c for c in optional if c in columns)], where)
    for column in where:
        if column in frame.columns and pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame = frame.assign(**{column: utc_series(frame[column])})
    return frame


def _same_hours(hour: pd.Timestamp, days: int) -> list[pd.Timestamp]:
    return [hour - DAY * d for d in range(1, days + 1)]


def _range_hours(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Every hour in [start, end]."""
    return list(pd.date_range(start, end, freq="h"))


def _when(hour: pd.Timestamp) -> str:
    return f"{utc(hour):%Y-%m-%d %H:00} UTC"


def _label(value: Any) -> str:
    return NONE_LABEL if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" \
        else str(value)


def _groups(frame: pd.DataFrame, scope: str) -> Iterable[tuple[str, pd.DataFrame]]:
    if scope == "total":
        yield "all", frame
        return
    labels = frame[scope].map(_label)
    for subject, group in frame.groupby(labels, sort=True):
        yield str(subject), group


def _trace_links(ctx: RuleContext, frame: pd.DataFrame, limit: int = 3) -> list[Link]:
    if "trace_id" not in frame.columns:
        return []
    seen: list[str] = []
    for trace in frame["trace_id"].dropna().astype(str):
        if trace not in seen:
            seen.append(trace)
        if len(seen) >= limit:
            break
    return [ctx.links.trace(t) for t in seen]


def _firing_or_ok(firing: bool) -> ObservationStatus:
    return "firing" if firing else "ok"


# ----------------------------------------------------------------------------------------------------------
# Ingest rules: no_data, error_rate, latency_p95
# ----------------------------------------------------------------------------------------------------------

SPAN_ALERT_COLUMNS = ("export_hour", "status", "latency_ms")
SPAN_OPTIONAL_COLUMNS = ("trace_id", "span_id", "feature", "model", "endpoint", "user_id", "error_message")


def no_data(ctx: RuleContext) -> RuleResult:
    """A due export hour with no files, or far fewer spans than the same hour on previous days."""
    cfg = ctx.alerts.no_data
    result = RuleResult("no_data")
    grace = pd.Timedelta(minutes=cfg.grace_minutes)
    due = [h for h in ctx.hours if h + HOUR + grace <= ctx.now]
    if len(due) < len(ctx.hours):
        result.notes.append(f"no_data: {len(ctx.hours) - len(due)} hour(s) not judged yet (due {cfg.grace_minutes} "
                            "min after the hour closes)")
    if not due:
        return result
    wanted = sorted({*due, *(b for h in due for b in _same_hours(h, cfg.baseline_days))})
    audit = _load(ctx, result, "ingest_audit", ["export_hour", "spans_written"], {"export_hour": wanted},
                  optional=["source_file", "file_error"])
    if audit is None:
        return result
    result.hours = due
    spans = pd.to_numeric(audit["spans_written"], errors="coerce").fillna(0)
    stats = pd.DataFrame({"export_hour": audit["export_hour"], "spans": spans,
                          "error": audit["file_error"].notna() if "file_error" in audit.columns else False})
    per_hour = stats.groupby("export_hour").agg(files=("spans", "size"), spans=("spans", "sum"),
                                               errors=("error", "sum"))
    for hour in due:
        points = [float(per_hour.at[b, "spans"]) for b in _same_hours(hour, cfg.baseline_days) if b in per_hour.index]
        if len(points) < cfg.min_baseline_points:
            continue
        median = float(np.median(points))
        if median < cfg.min_expected_spans:
            continue
        files = int(per_hour.at[hour, "files"]) if hour in per_hour.index else 0
        written = int(per_hour.at[hour, "spans"]) if hour in per_hour.index else 0
        errors = int(per_hour.at[hour, "errors"]) if hour in per_hour.index else 0
        threshold = cfg.min_ratio * median
        firing = written < threshold
        if not firing:
            summary = f"{written} spans from {files} file(s) for export hour {_when(hour)} (usual {median:.0f})"
        elif files == 0:
            summary = f"No files landed for export hour {_when(hour)} (usually ~{median:.0f} spans)"
        else:
            summary = (f"{written} spans from {files} file(s) for export hour {_when(hour)}, under "
                       f"{cfg.min_ratio:.0%} of the usual {median:.0f}")
            if errors:
                summary += f"; {errors} file(s) could not be read in full"
        result.observations.append(Observation(
            rule="no_data", scope="hour", subject=f"{utc(hour):%Y-%m-%dT%H}", status=_firing_or_ok(firing),
            hour=hour, severity=(cfg.no_files_severity if files == 0 else cfg.low_volume_severity) if firing else None,
            value=float(written), threshold=threshold, summary=summary,
            details={"files": files, "spans_written": written, "files_with_errors": errors,
                     "baseline_median_spans": median, "baseline_days_with_data": len(points),
                     "min_ratio": cfg.min_ratio},
            links=(ctx.links.partition("ingest_audit", hour), ctx.links.landing(hour)),
        ))
    return result


def _llm_spans(ctx: RuleContext, result: RuleResult) -> pd.DataFrame | None:
    return _load(ctx, result, "spans", SPAN_ALERT_COLUMNS, {"export_hour": list(ctx.hours), "kind": "llm"},
                 optional=SPAN_OPTIONAL_COLUMNS)


def error_rate(ctx: RuleContext) -> RuleResult:
    """Error LLM spans / LLM spans per export hour and subject, judged with at least min_spans spans."""
    cfg = ctx.alerts.error_rate
    result = RuleResult("error_rate")
    spans = _llm_spans(ctx, result)
    if spans is None:
        return result
    result.hours = list(ctx.hours)
    for scope in cfg.scopes:
        if scope != "total" and scope not in spans.columns:
            result.notes.append(f"error_rate: spans has no column {scope}, scope skipped")
            continue
        for hour in ctx.hours:
            in_hour = spans[spans["export_hour"] == hour]
            for subject, group in _groups(in_hour, scope):
                total = len(group)
                if total < cfg.min_spans:
                    continue
                failed = group[group["status"] == "error"]
                rate = len(failed) / total
                lower = (binomtest(len(failed), total).proportion_ci(cfg.confidence, method="wilson").low
                         if cfg.confidence > 0 else rate)
                firing = rate > cfg.threshold and lower > cfg.threshold
                top: dict[str, int] = {}
                if "error_message" in failed.columns and len(failed):
                    messages = failed["error_message"].fillna("(no message)").astype(str).str.slice(0, 120)
                    top = {str(k): int(v) for k, v in messages.value_counts().head(3).items()}
                where = "all LLM spans" if scope == "total" else f"{scope} {subject}"
                result.observations.append(Observation(
                    rule="error_rate", scope=scope, subject=subject, status=_firing_or_ok(firing), hour=hour,
                    severity=cfg.severity if firing else None, value=rate, threshold=cfg.threshold,
                    summary=f"Error rate {rate:.1%} ({len(failed)}/{total} LLM spans) for {where} in {_when(hour)}",
                    details={"llm_spans": total, "errors": len(failed), "error_rate": rate,
                             "error_rate_lower_bound": lower, "top_errors": top},
                    links=(ctx.links.partition("spans", hour), *_trace_links(ctx, failed)),
                ))
    return result


def latency_p95(ctx: RuleContext) -> RuleResult:
    """p95 latency of LLM spans per export hour and subject, judged with at least min_spans latencies."""
    cfg = ctx.alerts.latency_p95
    result = RuleResult("latency_p95")
    spans = _llm_spans(ctx, result)
    if spans is None:
        return result
    result.hours = list(ctx.hours)
    spans = spans.assign(latency_ms=pd.to_numeric(spans["latency_ms"], errors="coerce"))
    spans = spans[spans["latency_ms"].notna()]
    for scope in cfg.scopes:
        if scope != "total" and scope not in spans.columns:
            result.notes.append(f"latency_p95: spans has no column {scope}, scope skipped")
            continue
        for hour in ctx.hours:
            for subject, group in _groups(spans[spans["export_hour"] == hour], scope):
                if len(group) < cfg.min_spans:
                    continue
                p95 = float(np.percentile(group["latency_ms"].to_numpy(dtype="float64"), 95))
                firing = p95 > cfg.threshold_ms
                slowest = group.sort_values("latency_ms", ascending=False)
                where = "all LLM spans" if scope == "total" else f"{scope} {subject}"
                result.observations.append(Observation(
                    rule="latency_p95", scope=scope, subject=subject, status=_firing_or_ok(firing), hour=hour,
                    severity=cfg.severity if firing else None, value=p95, threshold=cfg.threshold_ms,
                    summary=f"p95 latency {p95 / 1000:.2f} s over {len(group)} LLM spans for {where} in {_when(hour)}",
                    details={"llm_spans": len(group), "p95_ms": p95,
                             "p50_ms": float(np.percentile(group["latency_ms"], 50)),
                             "max_ms": float(group["latency_ms"].max())},
                    links=(ctx.links.partition("spans", hour), *_trace_links(ctx, slowest)),
                ))
    return result


# ----------------------------------------------------------------------------------------------------------
# Cost rules: cost_spike, budget_breach (relayed from the cost assets), cache / feature / model shifts (info)
# ----------------------------------------------------------------------------------------------------------


def cost_spike(ctx: RuleContext) -> RuleResult:
    """Critical and warning verdicts of cost_anomalies; ok and below-minimum rows resolve."""
    cfg = ctx.alerts.cost_spike
    result = RuleResult("cost_spike")
    rows = _load(ctx, result, "cost_anomalies", ["hour", "scope", "subject", "spend_usd", "baseline_usd", "ratio",
                                                 "status"], {"hour": list(ctx.hours)},
                 optional=["calls", "baseline_method", "baseline_points"])
    if rows is None:
        return result
    result.hours = list(ctx.hours)
    for row in rows.itertuples(index=False):
        status = str(row.status)
        if status in cfg.critical_statuses:
            severity: str | None = "critical"
        elif status in cfg.warning_statuses:
            severity = "warning"
        elif status in cfg.ok_statuses:
            severity = None
        else:
            continue  # no verdict (insufficient history)
        spend, baseline, ratio = float(row.spend_usd), _num(row.baseline_usd), _num(row.ratio)
        scope, subject = str(row.scope), str(row.subject)
        what = "total spend" if scope == "total" else f"{scope} {subject}"
        if ratio is not None and baseline is not None:
            summary = f"{what}: ${spend:.2f} in {_when(row.hour)}, {ratio:.1f}x its baseline ${baseline:.2f}"
        else:
            summary = f"{what}: ${spend:.2f} in {_when(row.hour)}"
        links = [ctx.links.partition("cost_anomalies", row.hour), ctx.links.partition("priced_spans", row.hour)]
        if scope == "user":
            links.insert(0, ctx.links.user(subject))
        details = {"spend_usd": spend, "baseline_usd": baseline, "ratio": ratio, "status": status}
        for extra in ("calls", "baseline_method", "baseline_points"):
            if extra in rows.columns:
                details[extra] = getattr(row, extra)
        result.observations.append(Observation(
            rule="cost_spike", scope=scope, subject=subject, status="firing" if severity else "ok",
            hour=utc(row.hour), severity=severity, value=ratio, threshold=None, summary=summary,
            details=_jsonable(details), links=tuple(links),
        ))
    return result


def budget_breach(ctx: RuleContext) -> RuleResult:
    """Rows of budget_breaches: a user over the daily budget (warning), all spend over the hourly one (critical)."""
    cfg = ctx.alerts.budget_breach
    result = RuleResult("budget_breach")
    rows = _load(ctx, result, "budget_breaches", ["hour", "scope", "subject", "spend_usd", "budget_usd"],
                 {"hour": list(ctx.hours)}, optional=["window", "first_breach", "recommended_action",
                                                      "spend_this_hour_usd"])
    if rows is None:
        return result
    result.hours = list(ctx.hours)
    for row in rows.itertuples(index=False):
        scope, subject = str(row.scope), str(row.subject)
        spend, budget = float(row.spend_usd), float(row.budget_usd)
        action = getattr(row, "recommended_action", None)
        window = getattr(row, "window", None)
        what = f"user {subject}" if scope == "user" else "total spend"
        summary = f"{what} spent ${spend:.2f} of a ${budget:.2f} budget"
        summary += f" ({window})" if isinstance(window, str) else ""
        summary += f"; recommended action: {action}" if isinstance(action, str) else ""
        links = [ctx.links.partition("budget_breaches", row.hour)]
        if scope == "user":
            links.insert(0, ctx.links.user(subject))
        details = {"spend_usd": spend, "budget_usd": budget, "recommended_action": action, "window": window}
        if "first_breach" in rows.columns:
            details["first_breach"] = None if pd.isna(row.first_breach) else bool(row.first_breach)
        result.observations.append(Observation(
            rule="budget_breach", scope=scope, subject=subject, status="firing", hour=utc(row.hour),
            severity=cfg.user_severity if scope == "user" else cfg.total_severity, value=spend, threshold=budget,
            summary=summary, details=_jsonable(details), links=tuple(links),
        ))
    return result


def _num(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


HOURLY_COST_COLUMNS = ("hour", "calls", "input_tokens", "cached_input_tokens", "feature", "model")


def _hourly_costs(ctx: RuleContext, result: RuleResult, days: int) -> pd.DataFrame | None:
    wanted = sorted({*ctx.hours, *(b for h in ctx.hours for b in _same_hours(h, days))})
    frame = _load(ctx, result, "hourly_costs", HOURLY_COST_COLUMNS, {"hour": wanted})
    if frame is not None:
        result.hours = list(ctx.hours)
        for column in ("calls", "input_tokens", "cached_input_tokens"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0)
    return frame


def cache_hit_rate(ctx: RuleContext) -> RuleResult:
    """Cached share of input tokens against the same hour of previous days (info)."""
    cfg = ctx.alerts.cache_hit_rate
    result = RuleResult("cache_hit_rate")
    frame = _hourly_costs(ctx, result, cfg.baseline_days)
    if frame is None:
        return result
    per_hour = frame.groupby("hour")[["input_tokens", "cached_input_tokens"]].sum()
    for hour in ctx.hours:
        if hour not in per_hour.index or per_hour.at[hour, "input_tokens"] < cfg.min_input_tokens:
            continue
        base_hours = [b for b in _same_hours(hour, cfg.baseline_days)
                      if b in per_hour.index and per_hour.at[b, "input_tokens"] > 0]
        base = per_hour.loc[base_hours]
        if len(base_hours) < cfg.min_baseline_points or base["input_tokens"].sum() < cfg.min_input_tokens:
            continue
        rate = float(per_hour.at[hour, "cached_input_tokens"] / per_hour.at[hour, "input_tokens"])
        baseline = float(base["cached_input_tokens"].sum() / base["input_tokens"].sum())
        change = rate - baseline
        firing = abs(change) >= cfg.min_change
        result.observations.append(Observation(
            rule="cache_hit_rate", scope="total", subject="all", status=_firing_or_ok(firing), hour=hour,
            severity=cfg.severity if firing else None, value=change, threshold=cfg.min_change,
            summary=f"Prompt-cache hit rate {rate:.0%} in {_when(hour)} against {baseline:.0%} at the same hour "
                    f"of previous days ({change:+.0%})",
            details={"cache_hit_rate": rate, "baseline_rate": baseline, "change": change,
                     "input_tokens": float(per_hour.at[hour, "input_tokens"]), "baseline_hours": len(base_hours)},
            links=(ctx.links.partition("hourly_costs", hour),),
        ))
    return result


def _distribution_shift(ctx: RuleContext, rule: str, column: str) -> RuleResult:
    cfg = getattr(ctx.alerts, rule)
    result = RuleResult(rule)
    frame = _hourly_costs(ctx, result, cfg.baseline_days)
    if frame is None:
        return result
    frame = frame.assign(label=frame[column].map(_label))
    calls = frame.groupby(["hour", "label"])["calls"].sum()
    per_hour = frame.groupby("hour")["calls"].sum()
    for hour in ctx.hours:
        if hour not in per_hour.index or per_hour.at[hour] < cfg.min_calls:
            continue
        base_hours = [b for b in _same_hours(hour, cfg.baseline_days) if b in per_hour.index and per_hour.at[b] > 0]
        if len(base_hours) < cfg.min_baseline_points:
            continue
        base = calls[calls.index.get_level_values("hour").isin(base_hours)].groupby(level="label").sum()
        if base.sum() < cfg.min_calls:
            continue
        now = calls.loc[hour]
        share_now, share_base = (now / now.sum()), (base / base.sum())
        labels = share_now.index.union(share_base.index)
        share_now, share_base = share_now.reindex(labels, fill_value=0.0), share_base.reindex(labels, fill_value=0.0)
        distance = float(0.5 * (share_now - share_base).abs().sum())
        firing = distance >= cfg.min_distance
        movers = (share_now - share_base).abs().sort_values(ascending=False).head(5).index
        top = [{column: str(m), "share_now": float(share_now[m]), "share_baseline": float(share_base[m])}
               for m in movers]
        biggest = top[0] if top else None
        summary = f"{column.capitalize()} mix of billable calls in {_when(hour)} moved {distance:.0%} from the " \
                  "same hour of previous days"
        if biggest:
            summary += (f" (largest: {biggest[column]} {biggest['share_baseline']:.0%} -> "
                        f"{biggest['share_now']:.0%})")
        result.observations.append(Observation(
            rule=rule, scope="total", subject="all", status=_firing_or_ok(firing), hour=hour,
            severity=cfg.severity if firing else None, value=distance, threshold=cfg.min_distance,
            summary=summary, details={"total_variation_distance": distance, "calls": float(per_hour.at[hour]),
                                      "baseline_hours": len(base_hours), "top_changes": top},
            links=(ctx.links.partition("hourly_costs", hour),),
        ))
    return result


def feature_usage_shift(ctx: RuleContext) -> RuleResult:
    """Share of billable calls per feature against the same hour of previous days (info)."""
    return _distribution_shift(ctx, "feature_usage_shift", "feature")


def model_distribution_shift(ctx: RuleContext) -> RuleResult:
    """Share of billable calls per model against the same hour of previous days (info)."""
    return _distribution_shift(ctx, "model_distribution_shift", "model")


# ----------------------------------------------------------------------------------------------------------
# Quality rules: quality_drop, satisfaction_low, week_over_week (their tables may not exist yet)
# ----------------------------------------------------------------------------------------------------------


def _scores(ctx: RuleContext, result: RuleResult, metric: str, first: pd.Timestamp,
            last: pd.Timestamp) -> pd.DataFrame | None:
    """(hour, score) rows of a quality metric for every hour in [first, last], plus link columns if present."""
    table = ctx.alerts.quality_scores if metric == "quality_score" else ctx.alerts.satisfaction_scores
    frame = _load(ctx, result, table.table, [table.hour_column, table.score_column],
                  {table.hour_column: _range_hours(first, last)}, optional=["trace_id", "span_id"])
    if frame is None:
        return None
    out = frame.rename(columns={table.hour_column: "hour", table.score_column: "score"})
    out["hour"] = utc_series(out["hour"]).dt.floor("h")
    out["score"] = pd.to_numeric(out["score"], errors="coerce")
    return out[out["score"].notna()]


def _metric_table(ctx: RuleContext, metric: str) -> str:
    return (ctx.alerts.quality_scores if metric == "quality_score" else ctx.alerts.satisfaction_scores).table


def quality_drop(ctx: RuleContext) -> RuleResult:
    """(baseline - current) / baseline of the mean trust score; baseline = the previous baseline_days days."""
    cfg = ctx.alerts.quality_drop
    result = RuleResult("quality_drop")
    window = DAY * cfg.baseline_days
    scores = _scores(ctx, result, "quality_score", min(ctx.hours) - window, max(ctx.hours))
    if scores is None:
        return result
    result.hours = list(ctx.hours)
    table = _metric_table(ctx, "quality_score")
    for hour in ctx.hours:
        current = scores[scores["hour"] == hour]
        base = scores[(scores["hour"] >= hour - window) & (scores["hour"] < hour)]
        if len(current) < cfg.min_responses or len(base) < cfg.min_baseline_responses:
            continue
        now_mean, base_mean = float(current["score"].mean()), float(base["score"].mean())
        if base_mean <= 0:
            continue
        drop = (base_mean - now_mean) / base_mean
        severity = "critical" if drop > cfg.critical_drop else "warning" if drop > cfg.warning_drop else None
        worst = current.sort_values("score")
        result.observations.append(Observation(
            rule="quality_drop", scope="total", subject="all", status="firing" if severity else "ok", hour=hour,
            severity=severity, value=drop, threshold=cfg.critical_drop if severity == "critical" else cfg.warning_drop,
            summary=f"Quality score {now_mean:.2f} over {len(current)} responses in {_when(hour)}, "
                    f"{drop:+.0%} drop against {base_mean:.2f} over the previous {cfg.baseline_days} days",
            details={"quality_score": now_mean, "baseline_score": base_mean, "drop": drop,
                     "responses": len(current), "baseline_responses": len(base)},
            links=(ctx.links.partition(table, hour), *_trace_links(ctx, worst)),
        ))
    return result


def satisfaction_low(ctx: RuleContext) -> RuleResult:
    """Mean satisfaction of responses with feedback over the trailing window, against the target."""
    cfg = ctx.alerts.satisfaction_low
    result = RuleResult("satisfaction_low")
    window = HOUR * (cfg.window_hours - 1)
    scores = _scores(ctx, result, "satisfaction", min(ctx.hours) - window, max(ctx.hours))
    if scores is None:
        return result
    result.hours = list(ctx.hours)
    table = _metric_table(ctx, "satisfaction")
    for hour in ctx.hours:
        current = scores[(scores["hour"] >= hour - window) & (scores["hour"] <= hour)]
        if len(current) < cfg.min_responses:
            continue
        mean = float(current["score"].mean())
        firing = mean < cfg.target
        result.observations.append(Observation(
            rule="satisfaction_low", scope="total", subject="all", status=_firing_or_ok(firing), hour=hour,
            severity=cfg.severity if firing else None, value=mean, threshold=cfg.target,
            summary=f"User satisfaction {mean:.0%} over {len(current)} responses with feedback in the "
                    f"{cfg.window_hours} h to {_when(hour)} (target {cfg.target:.0%})",
            details={"satisfaction": mean, "responses_with_feedback": len(current), "window_hours": cfg.window_hours},
            links=(ctx.links.partition(table, hour), *_trace_links(ctx, current.sort_values("score"))),
        ))
    return result


def week_over_week(ctx: RuleContext) -> RuleResult:
    """Each configured metric's mean over the 7 days to the hour against the 7 days before."""
    cfg = ctx.alerts.week_over_week
    result = RuleResult("week_over_week")
    week = DAY * 7
    loaded = False
    for metric in cfg.metrics:
        scores = _scores(ctx, result, metric, min(ctx.hours) - 2 * week + HOUR, max(ctx.hours))
        if scores is None:
            continue
        loaded = True
        result.hours = list(ctx.hours)
        for hour in ctx.hours:
            this = scores[(scores["hour"] > hour - week) & (scores["hour"] <= hour)]
            last = scores[(scores["hour"] > hour - 2 * week) & (scores["hour"] <= hour - week)]
            if len(this) < cfg.min_count or len(last) < cfg.min_count:
                continue
            this_mean, last_mean = float(this["score"].mean()), float(last["score"].mean())
            if last_mean <= 0:
                continue
            drop = (last_mean - this_mean) / last_mean
            firing = drop > cfg.max_drop
            name = "quality score" if metric == "quality_score" else "user satisfaction"
            result.observations.append(Observation(
                rule="week_over_week", scope="metric", subject=metric, status=_firing_or_ok(firing), hour=hour,
                severity=cfg.severity if firing else None, value=drop, threshold=cfg.max_drop,
                summary=f"{name.capitalize()} {this_mean:.2f} over the 7 days to {_when(hour)}, {drop:+.0%} drop "
                        f"week over week (from {last_mean:.2f})",
                details={"this_week": this_mean, "last_week": last_mean, "drop": drop,
                         "this_week_count": len(this), "last_week_count": len(last)},
                links=(ctx.links.partition(_metric_table(ctx, metric), hour),),
            ))
    result.skipped = not loaded
    return result


# ----------------------------------------------------------------------------------------------------------
# Pipeline rule: run failures (observations built by the run-status sensors)
# ----------------------------------------------------------------------------------------------------------


def run_failure_observation(alerts: AlertSettings, job: str, run_id: str, at: datetime, message: str,
                            partition: str | None = None) -> Observation:
    """A failed run of a pipeline job as a firing observation keyed by the job."""
    links = Links(alerts)
    where = f" (partition {partition})" if partition else ""
    return Observation(
        rule="pipeline_run_failure", scope="job", subject=job, status="firing", hour=utc(at),
        severity=alerts.pipeline_run_failure.severity, value=None, threshold=None,
        summary=f"Run {run_id[:8]} of {job}{where} failed: {message[:300]}",
        details={"run_id": run_id, "job": job, "partition": partition, "error": message[:1000]},
        links=(links.run(run_id),),
    )


def run_success_observation(alerts: AlertSettings, job: str, run_id: str, at: datetime) -> Observation:
    """A successful run of a job: resolves that job's run-failure alert."""
    return Observation(
        rule="pipeline_run_failure", scope="job", subject=job, status="ok", hour=utc(at),
        summary=f"Run {run_id[:8]} of {job} succeeded", details={"run_id": run_id, "job": job},
        links=(Links(alerts).run(run_id),),
    )


# ----------------------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------------------

RULES: dict[str, RuleSpec] = {spec.id: spec for spec in (
    RuleSpec("no_data", "No data arrived", "ingest",
             "spans written in a due export hour vs the median of the same hour over the previous days "
             "(ingest_audit)", "critical (no files) / warning (few spans)", False, no_data),
    RuleSpec("error_rate", "Error rate above threshold", "ingest",
             "error LLM spans / LLM spans per export hour (spans)", "critical", False, error_rate),
    RuleSpec("latency_p95", "p95 latency above threshold", "ingest",
             "95th percentile of latency_ms of LLM spans per export hour (spans)", "warning", False, latency_p95),
    RuleSpec("cost_spike", "Cost spike", "costs",
             "spend / baseline as judged by cost_anomalies", "critical (>= 3x) / warning (>= 1.5x)", True,
             cost_spike),
    RuleSpec("budget_breach", "Budget exceeded", "costs",
             "spend against the user daily / total hourly budget (budget_breaches)",
             "warning (user) / critical (total)", True, budget_breach),
    RuleSpec("cache_hit_rate", "Prompt-cache hit rate changed", "costs",
             "cached_input_tokens / input_tokens vs the same hour of previous days (hourly_costs)", "info", False,
             cache_hit_rate),
    RuleSpec("feature_usage_shift", "Feature usage shifted", "costs",
             "total variation distance of billable calls per feature vs the same hour of previous days "
             "(hourly_costs)", "info", False, feature_usage_shift),
    RuleSpec("model_distribution_shift", "Model distribution changed", "costs",
             "total variation distance of billable calls per model vs the same hour of previous days "
             "(hourly_costs)", "info", False, model_distribution_shift),
    RuleSpec("quality_drop", "Quality score dropped", "quality",
             "(baseline - current) / baseline of the mean trust score (hallucination_scores)",
             "critical (> 20%) / warning (> 10%)", False, quality_drop),
    RuleSpec("satisfaction_low", "User satisfaction below target", "quality",
             "mean satisfaction over a trailing window (satisfaction_scores)", "warning", False, satisfaction_low),
    RuleSpec("week_over_week", "Metric down week over week", "quality",
             "7-day mean vs the 7 days before, for quality score and satisfaction", "warning", False,
             week_over_week),
    RuleSpec("pipeline_run_failure", "Pipeline run failed", "pipeline",
             "a failed run of any aiobs job (run-failure sensor); resolved by the job's next success",
             "warning", False, None),
)}


def rule_triggers(rule_id: str, alerts: AlertSettings) -> tuple[str, ...]:
    """The assets whose materialisation makes a rule re-evaluate."""
    quality, satisfaction = alerts.quality_scores.table, alerts.satisfaction_scores.table
    return {
        "no_data": ("ingest_audit",), "error_rate": ("spans",), "latency_p95": ("spans",),
        "cost_spike": ("cost_anomalies",), "budget_breach": ("budget_breaches",),
        "cache_hit_rate": ("hourly_costs",), "feature_usage_shift": ("hourly_costs",),
        "model_distribution_shift": ("hourly_costs",), "quality_drop": (quality,),
        "satisfaction_low": (satisfaction,),
        "week_over_week": tuple(quality if m == "quality_score" else satisfaction
                                for m in alerts.week_over_week.metrics),
        "pipeline_run_failure": (),
    }[rule_id]


def evaluate_rules(reader: TableReader, hours_by_rule: Mapping[str, Iterable[pd.Timestamp]],
                   alerts: AlertSettings, now: datetime) -> list[RuleResult]:
    """Evaluate each enabled rule on its hours; one rule's failure becomes a note, never stops the others.

    TableUnavailable propagates: the caller retries the whole evaluation later.
    """
    memo = MemoReader(reader)
    links = Links(alerts)
    results: list[RuleResult] = []
    for rule_id, hours in hours_by_rule.items():
        spec = RULES[rule_id]
        ordered = sorted({utc(h).floor("h") for h in hours})
        if spec.evaluate is None or not ordered:
            continue
        if not alerts.enabled or not alerts.rule(rule_id).enabled:
            results.append(RuleResult(rule_id, notes=[f"{rule_id}: disabled in settings"], skipped=True))
            continue
        context = RuleContext(memo, ordered, alerts, utc(now), links)
        try:
            results.append(spec.evaluate(context))
        except TableUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - one broken rule must not silence every other rule
            results.append(RuleResult(rule_id, notes=[f"{rule_id}: evaluation failed: "
                                                      f"{type(error).__name__}: {error}"], skipped=True))
    return results


@dataclass(frozen=True)
class OpenAlert:
    """What the absence rule needs to know about an open alert."""

    key: str
    rule: str
    scope: str
    subject: str
    last_hour: pd.Timestamp | None


def absent_subjects_ok(results: Iterable[RuleResult], open_alerts: Iterable[OpenAlert]) -> list[Observation]:
    """For rules whose table lists only offenders (budget_breaches, cost_anomalies): an open alert whose subject
    is missing from an hour the rule judged, at or after the alert's last evidence, is ok again."""
    by_rule = {r.rule: r for r in results if r.hours}
    out: list[Observation] = []
    for alert in open_alerts:
        result = by_rule.get(alert.rule)
        if result is None or not RULES[alert.rule].absent_means_ok:
            continue
        later = [h for h in result.hours if alert.last_hour is None or h >= utc(alert.last_hour).floor("h")]
        if not later:
            continue
        latest = max(later)
        if any((o.scope, o.subject, o.hour) == (alert.scope, alert.subject, latest) for o in result.observations):
            continue
        out.append(Observation(
            rule=alert.rule, scope=alert.scope, subject=alert.subject, status="ok", hour=latest,
            summary=f"{alert.scope} {alert.subject} is no longer listed in {_when(latest)}",
        ))
    return out


def expired(open_alerts: Iterable[OpenAlert], alerts: AlertSettings, now: datetime) -> list[Observation]:
    """Open alerts without evidence for expire_after_hours: resolved as expired (their subject went quiet)."""
    limit = utc(now) - pd.Timedelta(hours=alerts.expire_after_hours)
    out = []
    for alert in open_alerts:
        if alert.rule == "pipeline_run_failure" or alert.last_hour is None or utc(alert.last_hour) >= limit:
            continue
        out.append(Observation(
            rule=alert.rule, scope=alert.scope, subject=alert.subject, status="expired", hour=utc(now).floor("h"),
            summary=f"No verdict for {alert.scope} {alert.subject} since {_when(alert.last_hour)}; closed as expired",
        ))
    return out
