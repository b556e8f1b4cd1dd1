"""Alert state: one row per alert key that survives restarts, the event history, and silences.

Tables (SQLAlchemy Core; a SQLite file by default, PostgreSQL in production; created on first use):
* `alert_state` - per dedupe key: firing or resolved, severity, newest evidence hour, value, summary, links,
  when and at which severity it was last notified, whether PagerDuty was paged, acknowledgement;
* `alert_events` - every transition (fired, reminder, escalated, downgraded, resolved, expired; notified or
  suppressed and why), every delivery attempt's outcome per sink, acks and silences: the log/UI record;
* `alert_silences` - glob patterns over keys (`cost_spike:user:*`) muted until a time.

How an observation changes an alert (`step`, a pure function, so the same rules serve the sensor's dry run
and the delivery run's transaction):
* firing, alert new or resolved -> fired; notified unless silenced, the evidence is older than
  max_alert_age_hours, or the key was notified within the dedupe window (flapping);
* firing, alert firing: higher severity -> escalated (notified even when acknowledged); lower -> downgraded;
  same -> a reminder only with newer evidence, after the window, and when not acknowledged;
* ok / expired, alert firing -> resolved; notified when the alert had been notified (silences mute new noise,
  never the all-clear);
* evidence older than the alert's newest evidence is ignored (a backfill of last week never reopens today).

Concurrency: two runs may apply observations for the same key at once. Each key is updated in its own
transaction with optimistic locking (`version` column; insert races surface as integrity errors): the loser
re-reads and re-applies, so a notification is claimed exactly once.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from aiobs_pipeline.alerting.rules import Observation, OpenAlert, severity_rank, utc
from aiobs_pipeline.alerting.settings import AlertSettings

TransitionKind = Literal["fired", "reminder", "escalated", "downgraded", "resolved", "expired"]
MAX_CONFLICT_RETRIES = 8


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamps are stored as plain datetimes
        value = value.to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Timestamps stored in UTC and read back UTC-aware on every database (SQLite keeps no time zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Normalise to UTC; SQLite gets naive UTC."""
        value = _aware(value)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Always UTC-aware."""
        return _aware(value)


def _tables(schema: str | None) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table]:
    metadata = sa.MetaData(schema=schema)
    state = sa.Table(
        "alert_state", metadata,
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("first_fired_at", UTCDateTime),
        sa.Column("last_hour", UTCDateTime),
        sa.Column("last_value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("summary", sa.Text, nullable=False, default=""),
        sa.Column("details", sa.Text, nullable=False, default="{}"),
        sa.Column("links", sa.Text, nullable=False, default="[]"),
        sa.Column("last_notified_at", UTCDateTime),
        sa.Column("notified_severity", sa.String(16)),
        sa.Column("notified_hour", UTCDateTime),
        sa.Column("notifications", sa.Integer, nullable=False, default=0),
        sa.Column("paged", sa.Boolean, nullable=False, default=False),
        sa.Column("acked_at", UTCDateTime),
        sa.Column("acked_by", sa.String(200)),
        sa.Column("ack_note", sa.Text),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("resolution", sa.String(32)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Index("ix_alert_state_rule_status", "rule", "status"),
    )
    events = sa.Table(
        "alert_events", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("severity", sa.String(16)),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("sink", sa.String(32)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Index("ix_alert_events_key", "key"),
        sa.Index("ix_alert_events_at", "at"),
    )
    silences = sa.Table(
        "alert_silences", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pattern", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("until", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_by", sa.String(200)),
    )
    return metadata, state, events, silences


@dataclass
class AlertRecord:
    """The persisted state of one alert key."""

    key: str
    rule: str
    scope: str
    subject: str
    status: Literal["firing", "resolved"]
    severity: str
    first_fired_at: datetime | None = None
    last_hour: datetime | None = None
    last_value: float | None = None
    threshold: float | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    last_notified_at: datetime | None = None
    notified_severity: str | None = None
    notified_hour: datetime | None = None
    notifications: int = 0
    paged: bool = False
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    updated_at: datetime | None = None
    version: int = 0

    @property
    def notified_this_incident(self) -> bool:
        """Whether anyone was told about the current (or last) incident of this key."""
        return (self.last_notified_at is not None and self.first_fired_at is not None
                and self.last_notified_at >= self.first_fired_at)

    def as_open_alert(self) -> OpenAlert:
        """The view rules.py needs."""
        return OpenAlert(self.key, self.rule, self.scope, self.subject,
                         None if self.last_hour is None else utc(self.last_hour))


@dataclass
class Transition:
    """A change of an alert worth recording; `notify` says whether people are told, `reason` why (not)."""

    key: str
    rule: str
    kind: TransitionKind
    severity: str
    previous_severity: str | None
    notify: bool
    reason: str
    observation: Observation
    paged: bool = False
    transient: bool = False
    first_fired_at: datetime | None = None


@dataclass(frozen=True)
class Policy:
    """The fatigue controls step() applies."""

    window: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(hours=48)

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> Policy:
        """From alert settings."""
        return cls(timedelta(minutes=alerts.dedupe_window_minutes), timedelta(hours=alerts.max_alert_age_hours))


def _observed(record: AlertRecord, obs: Observation) -> AlertRecord:
    """The record carrying the observation's evidence."""
    return replace(
        record, last_hour=utc(obs.hour).to_pydatetime(), last_value=obs.value, threshold=obs.threshold,
        summary=obs.summary, details=dict(obs.details), links=[link.to_dict() for link in obs.links],
    )


def _notified(record: AlertRecord, obs: Observation, now: datetime, severity: str) -> AlertRecord:
    return replace(record, last_notified_at=now, notified_severity=severity,
                   notified_hour=utc(obs.hour).to_pydatetime(), notifications=record.notifications + 1)


def step(record: AlertRecord | None, obs: Observation, now: datetime, policy: Policy,
         silenced: bool = False) -> tuple[AlertRecord | None, Transition | None, bool]:
    """Apply one observation to an alert: (new record or None when absent, transition or None, changed)."""
    now = _aware(now) or _now()
    hour = utc(obs.hour).to_pydatetime()
    newest = _aware(record.last_hour) if record is not None else None
    if obs.status == "firing":
        severity = obs.severity or "warning"
        too_old = now - hour > policy.max_age
        if record is None or record.status == "resolved":
            if newest is not None and hour < newest:
                return record, None, False
            base = record or AlertRecord(obs.key, obs.rule, obs.scope, obs.subject, "firing", severity)
            new = _observed(replace(base, status="firing", severity=severity, first_fired_at=now, paged=False,
                                    acked_at=None, acked_by=None, ack_note=None, resolved_at=None,
                                    resolution=None), obs)
            last = _aware(base.last_notified_at)
            if silenced:
                notify, reason = False, "silenced"
            elif too_old:
                notify, reason = False, "evidence older than max_alert_age_hours"
            elif last is not None and now - last < policy.window:
                notify, reason = False, "key notified within the dedupe window (flapping)"
            else:
                notify, reason = True, "new alert"
            if notify:
                new = _notified(new, obs, now, severity)
            return new, Transition(obs.key, obs.rule, "fired", severity, None, notify, reason, obs,
                                   first_fired_at=now), True
        # the alert is firing
        if newest is not None and hour < newest:
            return record, None, False
        new = _observed(replace(record, severity=severity), obs)
        same = (newest is not None and hour == newest and severity == record.severity
                and obs.value == record.last_value and obs.summary == record.summary)
        if same:
            return record, None, False
        rank_new, rank_old = severity_rank(severity), severity_rank(record.severity)
        last = _aware(record.last_notified_at)
        window_passed = last is None or now - last >= policy.window
        told = record.notified_this_incident
        notified_hour = _aware(record.notified_hour)
        kind: TransitionKind | None
        if rank_new > rank_old:
            kind = "escalated"
            notify, reason = (False, "silenced") if silenced else (True, "severity raised")
        elif rank_new < rank_old:
            kind = "downgraded"
            notify, reason = _quiet_check(record, silenced, window_passed, "severity lowered")
        elif not told:
            kind = "fired"
            notify, reason = _quiet_check(record, silenced, window_passed, "firing and not yet notified")
        elif (newest is None or hour > newest) and (notified_hour is None or hour > notified_hour) \
                and window_passed:
            kind = "reminder"
            notify, reason = _quiet_check(record, silenced, window_passed, "still firing")
        else:
            kind, notify, reason = None, False, ""
        if kind is None:
            return new, None, True
        if notify and too_old:
            notify, reason = False, "evidence older than max_alert_age_hours"
        if notify:
            new = _notified(new, obs, now, severity)
        return new, Transition(obs.key, obs.rule, kind, severity, record.severity, notify, reason, obs,
                               paged=record.paged, first_fired_at=_aware(record.first_fired_at)), True
    # ok or expired
    if record is None or record.status == "resolved":
        return record, None, False
    if obs.status == "ok" and newest is not None and hour < newest:
        return record, None, False
    kind = "expired" if obs.status == "expired" else "resolved"
    told = record.notified_this_incident
    new = replace(record, status="resolved", resolved_at=now, resolution="expired" if kind == "expired" else "recovered",
                  acked_at=None, acked_by=None, ack_note=None, summary=obs.summary or record.summary,
                  last_hour=max(hour, newest) if newest is not None else hour,
                  last_value=obs.value if obs.value is not None else record.last_value)
    severity = record.notified_severity or record.severity
    if told:
        new = _notified(new, obs, now, severity)
    reason = "metric recovered" if kind == "resolved" else "no verdict for expire_after_hours"
    return new, Transition(obs.key, obs.rule, kind, severity, record.severity, told,
                           reason if told else "never notified", obs, paged=record.paged,
                           first_fired_at=_aware(record.first_fired_at)), True


def _quiet_check(record: AlertRecord, silenced: bool, window_passed: bool, why: str) -> tuple[bool, str]:
    if silenced:
        return False, "silenced"
    if record.acked_at is not None:
        return False, f"acknowledged by {record.acked_by or 'someone'}"
    if not window_passed:
        return False, "notified within the dedupe window"
    return True, why


@dataclass
class FoldResult:
    """What a batch of observations did to one key."""

    record: AlertRecord | None
    changed: bool
    transitions: list[Transition]
    notification: Transition | None


def fold(record: AlertRecord | None, observations: Sequence[Observation], now: datetime, policy: Policy,
         silenced: bool = False) -> FoldResult:
    """Apply a key's observations in evidence order and collapse what to tell people into one notification.

    A key that fired and recovered within the batch gets one 'resolved' notification marked transient (it
    happened and is over), at the severity it fired with, and no page.
    """
    changed = False
    transitions: list[Transition] = []
    current = record
    for obs in sorted(observations, key=lambda o: (utc(o.hour), o.status != "firing")):
        current, transition, did_change = step(current, obs, now, policy, silenced)
        changed = changed or did_change
        if transition is not None:
            transitions.append(transition)
    told = [t for t in transitions if t.notify]
    if not told:
        return FoldResult(current, changed, transitions, None)
    last = told[-1]
    firing_before = [t for t in told[:-1] if t.kind not in ("resolved", "expired")]
    if last.kind in ("resolved", "expired") and firing_before:
        note = replace(last, transient=True, severity=firing_before[-1].severity, paged=False)
    elif told[0].kind == "fired" and last is not told[0]:
        note = replace(last, kind="fired", previous_severity=None)
    else:
        note = last
    return FoldResult(current, changed, transitions, note)


def _record_from_row(row: sa.Row) -> AlertRecord:
    data = dict(row._mapping)
    data["details"] = json.loads(data.get("details") or "{}")
    data["links"] = json.loads(data.get("links") or "[]")
    data["paged"] = bool(data.get("paged"))
    return AlertRecord(**data)


def _row_from_record(record: AlertRecord) -> dict[str, Any]:
    data = {name: getattr(record, name) for name in record.__dataclass_fields__}
    data["details"] = json.dumps(record.details, default=str, sort_keys=True)
    data["links"] = json.dumps(record.links, sort_keys=True)
    if data["last_value"] is not None and not math.isfinite(data["last_value"]):
        data["last_value"] = None
    if data["threshold"] is not None and not math.isfinite(data["threshold"]):
        data["threshold"] = None
    return data


@dataclass(frozen=True)
class Silence:
    """A muted key pattern."""

    id: int
    pattern: str
    created_at: datetime
    until: datetime
    reason: str | None
    created_by: str | None

    def matches(self, key: str) -> bool:
        """Glob match on the alert key."""
        return fnmatch.fnmatchcase(key, self.pattern)


@dataclass
class ApplyResult:
    """Transitions a batch caused, and the notifications (one per key at most) to deliver."""

    transitions: list[Transition]
    notifications: list[Transition]


class _Conflict(Exception):
    """Another writer changed the key between our read and our write."""


def normalise_url(url: str) -> str:
    """SQLAlchemy URL with a driver we ship: PostgreSQL through psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def redacted_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class AlertStore:
    """The alert state store. Use as a context manager; every public method is one or more transactions."""

    def __init__(self, url: str, schema: str | None = None, policy: Policy | None = None) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if schema:
                raise ValueError("alerts.state_schema applies to PostgreSQL only; unset it for a SQLite state file")
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(self.url, poolclass=NullPool, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        self.schema = schema
        self.policy = policy or Policy()
        self.metadata, self.state, self.events, self.silences_table = _tables(schema)
        self._create()

    @classmethod
    def from_settings(cls, settings: object) -> AlertStore:
        """The store the project settings name (alerts.state_url, else the SQLite file under base_dir)."""
        from aiobs_pipeline.alerting.settings import alert_settings_of, state_url_of  # noqa: PLC0415

        alerts = alert_settings_of(settings)
        return cls(state_url_of(settings), alerts.state_schema, Policy.from_settings(alerts))

    def _create(self) -> None:
        """Create schema and tables on first use; a concurrent creator winning the race is fine."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if self.schema and self.dialect == "postgresql":
                        conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
                    self.metadata.create_all(conn, checkfirst=True)
                return
            except (OperationalError, ProgrammingError, IntegrityError) as error:
                if attempt == 1:
                    raise RuntimeError(f"cannot create the alert state tables at {redacted_url(self.url)}: "
                                       f"{error.orig}") from None

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads
    def get(self, keys: Iterable[str]) -> dict[str, AlertRecord]:
        """Records of the given keys (absent keys are missing)."""
        wanted = sorted(set(keys))
        out: dict[str, AlertRecord] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(sa.select(self.state).where(self.state.c.key.in_(wanted[start:start + 500])))
                out.update({row.key: _record_from_row(row) for row in rows})
        return out

    def open_alerts(self, rules: Iterable[str] | None = None) -> list[AlertRecord]:
        """Firing alerts, optionally of some rules only."""
        query = sa.select(self.state).where(self.state.c.status == "firing")
        if rules is not None:
            query = query.where(self.state.c.rule.in_(list(rules)))
        with self.engine.connect() as conn:
            return [_record_from_row(row) for row in conn.execute(query.order_by(self.state.c.key))]

    def list_alerts(self, status: str | None = None, rule: str | None = None, limit: int = 200) -> list[AlertRecord]:
        """Alerts for the CLI: firing first, then by severity and most recent change."""
        query = sa.select(self.state)
        if status:
            query = query.where(self.state.c.status == status)
        if rule:
            query = query.where(self.state.c.rule == rule)
        with self.engine.connect() as conn:
            rows = [_record_from_row(row) for row in conn.execute(query)]
        rows.sort(key=lambda r: (r.status != "firing", -severity_rank(r.severity),
                                 -(r.updated_at or datetime.min.replace(tzinfo=UTC)).timestamp()))
        return rows[:limit]

    def paged_firing(self, rule: str) -> list[str]:
        """Keys of a rule that are firing and paged: PagerDuty's incident for the rule stays open while any."""
        query = sa.select(self.state.c.key).where(self.state.c.rule == rule, self.state.c.status == "firing",
                                                  self.state.c.paged.is_(True))
        with self.engine.connect() as conn:
            return [row.key for row in conn.execute(query)]

    def events_for(self, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recent alert_events rows, newest first."""
        query = sa.select(self.events).order_by(self.events.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(self.events.c.key == key)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def active_silences(self, now: datetime | None = None) -> list[Silence]:
        """Silences in force at `now`."""
        now = _aware(now) or _now()
        query = sa.select(self.silences_table).where(self.silences_table.c.until > now)
        with self.engine.connect() as conn:
            return [Silence(**dict(row._mapping)) for row in conn.execute(query.order_by(self.silences_table.c.id))]

    # --- writes
    def apply(self, observations: Iterable[Observation], now: datetime | None = None,
              run_id: str | None = None) -> ApplyResult:
        """Apply observations, each key in its own transaction; returns what changed and what to notify."""
        now = _aware(now) or _now()
        by_key: dict[str, list[Observation]] = {}
        for obs in observations:
            by_key.setdefault(obs.key, []).append(obs)
        silences = self.active_silences(now)
        transitions: list[Transition] = []
        notifications: list[Transition] = []
        for key in sorted(by_key):
            silenced = any(s.matches(key) for s in silences)
            result = self._apply_key(key, by_key[key], now, run_id, silenced)
            transitions.extend(result.transitions)
            if result.notification is not None:
                notifications.append(result.notification)
        return ApplyResult(transitions, notifications)

    def _apply_key(self, key: str, observations: list[Observation], now: datetime, run_id: str | None,
                   silenced: bool) -> FoldResult:
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(self.state).where(self.state.c.key == key)).first()
                    record = _record_from_row(row) if row is not None else None
                    result = fold(record, observations, now, self.policy, silenced)
                    if not result.changed or result.record is None:
                        return result
                    new = replace(result.record, updated_at=now, version=(record.version if record else 0) + 1)
                    if record is None:
                        conn.execute(sa.insert(self.state).values(**_row_from_record(new)))
                    else:
                        done = conn.execute(sa.update(self.state).where(
                            self.state.c.key == key, self.state.c.version == record.version,
                        ).values(**_row_from_record(new)))
                        if done.rowcount != 1:
                            raise _Conflict
                    for t in result.transitions:
                        conn.execute(sa.insert(self.events).values(
                            at=now, run_id=run_id, key=key, rule=t.rule, severity=t.severity, event=t.kind,
                            sink=None, outcome="notify" if t.notify else "suppressed", detail=t.reason))
                    return FoldResult(new, True, result.transitions, result.notification)
            except (_Conflict, IntegrityError):
                continue
            except OperationalError as error:
                if "locked" not in str(error).lower():
                    raise
        raise RuntimeError(f"alert {key}: gave up after {MAX_CONFLICT_RETRIES} concurrent updates")

    def mark_paged(self, keys: Iterable[str], paged: bool) -> None:
        """Remember whether PagerDuty holds an incident for these keys."""
        keys = list(keys)
        if not keys:
            return
        with self.engine.begin() as conn:
            conn.execute(sa.update(self.state).where(self.state.c.key.in_(keys)).values(
                paged=paged, version=self.state.c.version + 1))

    def record_events(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append alert_events rows (at, run_id, key, rule, severity, event, sink, outcome, detail)."""
        rows = list(rows)
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.events), rows)

    def ack(self, pattern: str, by: str, note: str | None = None, now: datetime | None = None) -> list[str]:
        """Acknowledge firing alerts whose key matches the glob: no reminders until they resolve or escalate."""
        now = _aware(now) or _now()
        keys = [r.key for r in self.open_alerts() if fnmatch.fnmatchcase(r.key, pattern)]
        with self.engine.begin() as conn:
            for key in keys:
                conn.execute(sa.update(self.state).where(self.state.c.key == key).values(
                    acked_at=now, acked_by=by, ack_note=note, updated_at=now, version=self.state.c.version + 1))
                conn.execute(sa.insert(self.events).values(at=now, key=key, event="acked", outcome="ok",
                                                           detail=f"by {by}" + (f": {note}" if note else "")))
        return keys

    def silence(self, pattern: str, until: datetime, by: str, reason: str | None = None,
                now: datetime | None = None) -> Silence:
        """Mute keys matching the glob until a time (resolutions are still delivered)."""
        now = _aware(now) or _now()
        until = _aware(until) or now
        if until <= now:
            raise ValueError(f"silence end {until.isoformat()} is not in the future")
        if not pattern.strip():
            raise ValueError("silence pattern must not be empty (use '*' to mute everything)")
        with self.engine.begin() as conn:
            result = conn.execute(sa.insert(self.silences_table).values(
                pattern=pattern, created_at=now, until=until, reason=reason, created_by=by))
            silence_id = int(result.inserted_primary_key[0])
            conn.execute(sa.insert(self.events).values(
                at=now, key=pattern, event="silenced", outcome="ok",
                detail=f"by {by} until {until.isoformat()}" + (f": {reason}" if reason else "")))
        return Silence(silence_id, pattern, now, until, reason, by)

    def unsilence(self, silence_id: int, now: datetime | None = None) -> bool:
        """End a silence now; False when no active silence has that id."""
        now = _aware(now) or _now()
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(self.silences_table).where(
                self.silences_table.c.id == silence_id, self.silences_table.c.until > now).values(until=now))
            return done.rowcount == 1

    @contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        """A raw connection (tests, maintenance)."""
        with self.engine.connect() as conn:
            yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the sensor read while a delivery run writes; busy_timeout waits for the writer's lock."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
