"""Dagster layer of alerting: sensors that evaluate the alert rules after their tables materialise, the
run-failure / recovery sensors for the pipeline itself, and the notification job that delivers.

Why plain sensors keyed on materialisation records (not `@multi_asset_sensor` / `@asset_sensor`):
* one sensor watches several tables, some of which (hallucination_scores, satisfaction_scores) may not be
  defined in this code location yet; a plain sensor just finds no records for them, where a multi-asset
  sensor needs every monitored asset in the repository;
* the cursor is one small JSON object - the last consumed materialisation storage id per table plus the
  last clock hour checked - read and advanced in one place, so a tick is cheap to reason about: new
  records -> the hours (partitions) they wrote -> rules evaluated on those hours only;
* re-evaluation is idempotent: rules are pure functions of the tables, the sensor only *reads* the warehouse
  and the alert state, and drops observations that would not change the state (the same `fold` the delivery
  run applies). A repeated tick yields the same run key (content + cursor), which Dagster deduplicates.

Ticks stay short (well inside the 60 s tick timeout): at most `max_records_per_tick` records per table, only
hours within `max_alert_age_hours`, a few column-pruned reads. Slow work - HTTP delivery with retries and
backoff - happens in `alert_notification_job`, launched with the observations in its run config. Writing the
state happens there too, in transactions (two sensors' runs may race).

The no-data rule is also clock driven: when a new hour becomes due (closed + grace), the ingest sensor
re-checks the last `no_data.lookback_hours` due hours even without any materialisation, because a silent
export produces no materialisation at all. Each sensor also closes its family's alerts that had no verdict
for `expire_after_hours`, once per clock hour.
"""


import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    op,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from aiobs_pipeline.alerting.notify import notify
from aiobs_pipeline.alerting.rules import (
    HOUR,
    Observation,
    TableUnavailable,
    absent_subjects_ok,
    alert_key,
    evaluate_rules,
    expired,
    rule_triggers,
    run_failure_observation,
    run_success_observation,
    utc,
)
from aiobs_pipeline.alerting.settings import AlertSettings, alert_settings_of
from aiobs_pipeline.alerting.state import AlertStore, Policy, fold
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.settings import get_settings
from aiobs_pipeline.warehouse import WarehouseError, read_warehouse_table

NOTIFY_JOB = "alert_notification_job"
CURSOR_VERSION = 1
FAMILIES: dict[str, tuple[str, ...]] = {
    "ingest_alerts_sensor": ("no_data", "error_rate", "latency_p95"),
    "cost_alerts_sensor": ("cost_spike", "budget_breach", "cache_hit_rate", "feature_usage_shift",
                           "model_distribution_shift"),
    "quality_alerts_sensor": ("quality_drop", "satisfaction_low", "week_over_week"),
}
# Re-running a delivery run is safe (already-applied evidence changes nothing); effective when run retries are
# enabled in dagster.yaml.
RETRY_TAGS = {"dagster/max_retries": "2"}
HOURLY_KEY_FORMAT = "%Y-%m-%d-%H:%M"
DAILY_KEY_FORMAT = "%Y-%m-%d"


def utcnow() -> datetime:
    """The sensors' clock (one seam, so tests can pin it)."""
    return datetime.now(UTC)


# ----------------------------------------------------------------------------------------------------------
# Reading the warehouse (read-only; DuckDB allows one writer, so sensors never write)
# ----------------------------------------------------------------------------------------------------------


class WarehouseReader:
    """TableReader over the warehouse the settings select; a locked or unreachable warehouse -> TableUnavailable."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def columns(self, table: str) -> list[str] | None:
        """Column names, None when the table (or the DuckDB file) does not exist yet."""
        try:
            return [str(c) for c in read_warehouse_table(self.settings, table, limit=0).columns]
        except WarehouseError as error:
            if "does not exist" in str(error):
                return None
            raise TableUnavailable(str(error)) from None

    def read(self, table: str, columns: Sequence[str], where: Mapping[str, Any]) -> pd.DataFrame:
        """Rows matching the filters, only the given columns."""
        try:
            return read_warehouse_table(self.settings, table, columns=list(columns), where=dict(where))
        except WarehouseError as error:
            raise TableUnavailable(str(error)) from None


# ----------------------------------------------------------------------------------------------------------
# The notification job
# ----------------------------------------------------------------------------------------------------------


class LinkConfig(Config):
    """A link of an alert."""

    kind: str
    label: str
    target: str


class ObservationConfig(Config):
    """One observation, as the sensor hands it to the delivery run."""

    rule: str
    scope: str
    subject: str
    status: str
    hour: str
    severity: str | None = None
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    details_json: str = "{}"
    links: list[LinkConfig] = []

    def to_observation(self) -> Observation:
        """Back to the domain object."""
        return Observation.from_dict({
            "rule": self.rule, "scope": self.scope, "subject": self.subject, "status": self.status,
            "hour": self.hour, "severity": self.severity, "value": self.value, "threshold": self.threshold,
            "summary": self.summary, "details": json.loads(self.details_json or "{}"),
            "links": [link.model_dump() for link in self.links],
        })


class DeliverAlertsConfig(Config):
    """What to apply and deliver: observations from one sensor tick."""

    source: str = ""
    observations: list[ObservationConfig] = []


def observation_config(obs: Observation) -> dict[str, Any]:
    """An observation as run config for deliver_alerts."""
    data = obs.to_dict()
    details = data.pop("details")
    data["details_json"] = json.dumps(details, sort_keys=True, default=str)
    return data


def run_config_for(source: str, observations: Iterable[Observation]) -> dict[str, Any]:
    """Run config of alert_notification_job."""
    return {"ops": {"deliver_alerts": {"config": {
        "source": source, "observations": [observation_config(o) for o in observations]}}}}


@op(out=Out(Nothing),
    description="Apply the observations to the alert state (dedupe, windows, resolve), then deliver the "
                "notifications they call for to Slack / PagerDuty / webhook / log, with bounded retries.")
def deliver_alerts(context: OpExecutionContext, config: DeliverAlertsConfig, aiobs: AiobsSettings):
    """Deliver one sensor tick's alerts; sink failures are reported, never raised."""
    settings = aiobs.get()
    alerts = alert_settings_of(settings)
    observations = [o.to_observation() for o in config.observations]
    with AlertStore.from_settings(settings) as store:
        report = notify(observations, alerts, store, context.log, run_id=context.run_id)
    summary = report.summary()
    for message, result in report.failed:
        context.log.error(f"alert delivery failed: {result.sink} for {message.rule}: {result.detail}")
    yield Output(None, metadata={**summary, "source": config.source or "manual",
                                 "keys": ", ".join(sorted({t.key for t in report.transitions}))[:2000]})


@job(name=NOTIFY_JOB, description="Deliver alert notifications requested by the alert sensors.",
     tags={"aiobs/kind": "alerting"})
def alert_notification_job():
    """One op: apply and deliver."""
    deliver_alerts()


# ----------------------------------------------------------------------------------------------------------
# Materialisation-driven sensors
# ----------------------------------------------------------------------------------------------------------


@dataclass
class AlertCursor:
    """Per table the last consumed materialisation storage id; the last clock hour handled; notes."""

    after: dict[str, int] = field(default_factory=dict)
    clock: str | None = None
    notes: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        """Compact JSON."""
        return json.dumps({"v": CURSOR_VERSION, "after": self.after, "clock": self.clock,
                           "notes": self.notes[:10]}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> "AlertCursor":
        """Parse a cursor; anything unreadable (an older format) starts afresh."""
        try:
            data = json.loads(text or "")
            if data.get("v") != CURSOR_VERSION:
                return cls()
            return cls({str(k): int(v) for k, v in (data.get("after") or {}).items()}, data.get("clock"),
                       list(data.get("notes") or []))
        except (ValueError, TypeError, AttributeError):
            return cls()


def hours_of_partition(partition_key: str | None, now: datetime) -> list[pd.Timestamp]:
    """The hours a materialisation wrote: its hourly partition, the 24 hours of a daily one, else the last day."""
    if partition_key:
        for fmt, span in ((HOURLY_KEY_FORMAT, 1), (DAILY_KEY_FORMAT, 24)):
            try:
                start = pd.Timestamp(datetime.strptime(partition_key, fmt).replace(tzinfo=UTC))
            except ValueError:
                continue
            return [start + HOUR * i for i in range(span)]
    last = utc(now).floor("h")
    return [last - HOUR * i for i in range(24)]


def _new_records(instance: DagsterInstance, asset: str, after: int | None, since: pd.Timestamp,
                 limit: int) -> tuple[list[Any], bool]:
    """Materialisation records of an asset after the cursor (first tick: since the oldest hour we judge)."""
    records_filter = AssetRecordsFilter(
        asset_key=AssetKey(asset), after_storage_id=after,
        after_timestamp=None if after is not None else since.timestamp(),
    )
    result = instance.fetch_materializations(records_filter, limit=limit, ascending=True)
    return list(result.records), bool(result.has_more)


def due_hour(alerts: AlertSettings, now: datetime) -> pd.Timestamp:
    """The newest export hour the no-data rule may judge (closed and past its grace)."""
    return (utc(now) - timedelta(minutes=alerts.no_data.grace_minutes)).floor("h") - HOUR


def changes_only(observations: Iterable[Observation], store: AlertStore, now: datetime,
                 policy: Policy) -> list[Observation]:
    """Observations that would change the alert state (dry run of the delivery run's fold)."""
    by_key: dict[str, list[Observation]] = {}
    for obs in observations:
        by_key.setdefault(obs.key, []).append(obs)
    records = store.get(by_key)
    kept: list[Observation] = []
    for key, group in sorted(by_key.items()):
        if fold(records.get(key), group, now, policy).changed:
            kept.extend(sorted(group, key=lambda o: utc(o.hour)))
    return kept


def evaluate_alert_sensor(context: SensorEvaluationContext, settings: Any, name: str,
                          rule_ids: Sequence[str], now: datetime | None = None) -> SensorResult:
    """One tick of an alert sensor: new materialisations -> rules on their hours -> run requests for changes."""
    alerts = alert_settings_of(settings)
    now = now or utcnow()
    cursor = AlertCursor.loads(context.cursor)
    if not alerts.enabled:
        return SensorResult(skip_reason="alerting is disabled (alerts.enabled = false)", cursor=context.cursor)
    enabled = [r for r in rule_ids if alerts.rule(r).enabled]
    if not enabled:
        return SensorResult(skip_reason=f"every rule of {name} is disabled", cursor=context.cursor)
    oldest = utc(now).floor("h") - timedelta(hours=alerts.max_alert_age_hours)
    triggers = {r: rule_triggers(r, alerts) for r in enabled}
    after = dict(cursor.after)
    hours_by_asset: dict[str, set[pd.Timestamp]] = {}
    backlog = []
    for asset in sorted({a for assets in triggers.values() for a in assets}):
        records, more = _new_records(context.instance, asset, cursor.after.get(asset), oldest,
                                     alerts.max_records_per_tick)
        if more:
            backlog.append(asset)
        for record in records:
            after[asset] = max(after.get(asset, 0), int(record.storage_id))
            hours_by_asset.setdefault(asset, set()).update(hours_of_partition(record.partition_key, now))
    hours_by_rule = {
        rule: sorted({h for a in triggers[rule] for h in hours_by_asset.get(a, ()) if oldest <= h <= utc(now)})
        for rule in enabled
    }
    clock = utc(now).floor("h").isoformat()
    clock_due = cursor.clock != clock
    if clock_due and "no_data" in enabled:
        last_due = due_hour(alerts, now)
        extra = [last_due - HOUR * i for i in range(alerts.no_data.lookback_hours)]
        hours_by_rule["no_data"] = sorted({*hours_by_rule["no_data"], *(h for h in extra if h >= oldest)})
    to_evaluate = {r: h for r, h in hours_by_rule.items() if h}
    new_cursor = AlertCursor(after, clock, [])
    watched = sorted({a for assets in triggers.values() for a in assets})
    never = [a for a in watched if a not in after]
    idle = f"no new materialisations of {', '.join(watched)}"
    if never:
        idle += f" ({', '.join(never)} never materialised yet: their rules wait for them)"
    if not to_evaluate and not clock_due:
        return SensorResult(skip_reason=idle, cursor=new_cursor.dumps())
    try:
        results = evaluate_rules(WarehouseReader(settings), to_evaluate, alerts, now)
    except TableUnavailable as error:
        # The cursor stays put, so the same materialisations are evaluated on the next tick.
        return SensorResult(skip_reason=f"warehouse not readable now, retrying next tick: {error}",
                            cursor=context.cursor)
    notes = [note for result in results for note in result.notes]
    if backlog:
        notes.append(f"more materialisations of {', '.join(backlog)} than one tick reads; continuing next tick")
    observations = [o for result in results for o in result.observations]
    policy = Policy.from_settings(alerts)
    with AlertStore.from_settings(settings) as store:
        open_alerts = [r.as_open_alert() for r in store.open_alerts(enabled)]
        observations += absent_subjects_ok(results, open_alerts)
        if clock_due:
            observations += expired(open_alerts, alerts, now)
        changes = changes_only(observations, store, now, policy)
    for note in notes:
        context.log.info(note)
    new_cursor.notes = notes
    judged = ", ".join(f"{r.rule} ({len(r.hours)} h)" for r in results if r.hours)
    if not changes:
        reason = f"judged {judged}: no alert changes" if judged else f"{idle}; no alert changes"
        if notes:
            reason += "; " + "; ".join(notes)
        return SensorResult(skip_reason=reason[:1500], cursor=new_cursor.dumps())
    requests = run_requests(name, changes, alerts.max_observations_per_run, new_cursor.dumps())
    return SensorResult(run_requests=requests, cursor=new_cursor.dumps())


def run_requests(source: str, observations: Sequence[Observation], chunk: int, salt: str) -> list[RunRequest]:
    """RunRequests of the notification job, chunked; run keys depend on content and cursor (idempotent ticks).

    Observations of one key always travel in the same chunk, so each run folds a key's evidence in order.
    """
    groups: dict[str, list[Observation]] = {}
    for obs in observations:
        groups.setdefault(obs.key, []).append(obs)
    batches: list[list[Observation]] = [[]]
    for group in groups.values():
        if batches[-1] and len(batches[-1]) + len(group) > chunk:
            batches.append([])
        batches[-1].extend(group)
    out = []
    for batch in batches:
        config = run_config_for(source, batch)
        digest = hashlib.sha256((json.dumps(config, sort_keys=True) + salt).encode()).hexdigest()[:24]
        out.append(RunRequest(
            run_key=f"{source}:{digest}", run_config=config, job_name=NOTIFY_JOB,
            tags={**RETRY_TAGS, "aiobs/trigger": source,
                  "aiobs/alert_rules": ",".join(sorted({o.rule for o in batch}))[:200],
                  "aiobs/alerts": str(len({o.key for o in batch}))},
        ))
    return out


def _interval() -> int:
    return alert_settings_of(get_settings()).sensor_interval_seconds


@sensor(name="ingest_alerts_sensor", job=alert_notification_job, minimum_interval_seconds=_interval(),
        description="No data arrived (also clock driven), error rate and p95 latency, after spans / ingest_audit "
                    "materialise.")
def ingest_alerts_sensor(context: SensorEvaluationContext, aiobs: AiobsSettings) -> SensorResult:
    """Evaluate the ingest alert rules."""
    return evaluate_alert_sensor(context, aiobs.get(), "ingest_alerts_sensor", FAMILIES["ingest_alerts_sensor"])


@sensor(name="cost_alerts_sensor", job=alert_notification_job, minimum_interval_seconds=_interval(),
        description="Cost spikes, budget breaches, and cache / feature / model shifts (info), after the cost "
                    "tables materialise.")
def cost_alerts_sensor(context: SensorEvaluationContext, aiobs: AiobsSettings) -> SensorResult:
    """Evaluate the cost alert rules."""
    return evaluate_alert_sensor(context, aiobs.get(), "cost_alerts_sensor", FAMILIES["cost_alerts_sensor"])


@sensor(name="quality_alerts_sensor", job=alert_notification_job, minimum_interval_seconds=_interval(),
        description="Quality drop, satisfaction below target and week-over-week drops, after the quality tables "
                    "materialise (rules whose table does not exist yet are skipped and say so).")
def quality_alerts_sensor(context: SensorEvaluationContext, aiobs: AiobsSettings) -> SensorResult:
    """Evaluate the quality alert rules."""
    return evaluate_alert_sensor(context, aiobs.get(), "quality_alerts_sensor", FAMILIES["quality_alerts_sensor"])


# ----------------------------------------------------------------------------------------------------------
# The pipeline's own runs
# ----------------------------------------------------------------------------------------------------------


def _failure_message(context: RunFailureSensorContext) -> str:
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        while error is not None and error.cause is not None:  # Dagster wraps the user's exception
            error = error.cause
        if error is not None and error.message.strip():
            return f"step {event.step_key}: {error.message.strip().splitlines()[0]}"
    return (context.failure_event.message or "run failed").strip().splitlines()[0]


def _run_end(instance: DagsterInstance, run_id: str) -> datetime:
    """When a run ended (the evidence time of its alert); now if the instance does not know yet."""
    record = instance.get_run_record_by_id(run_id)
    end = getattr(record, "end_time", None) if record is not None else None
    return datetime.fromtimestamp(end, UTC) if end else utcnow()


def failure_request(context: RunFailureSensorContext, settings: Any) -> RunRequest | SkipReason:
    """The notification run for a failed pipeline run (never for the notification job itself: it would loop)."""
    alerts = alert_settings_of(settings)
    run = context.dagster_run
    if run.job_name == NOTIFY_JOB:
        return SkipReason(f"run {run.run_id} of {NOTIFY_JOB} failed; not alerted through itself (see the run)")
    if not alerts.enabled or not alerts.pipeline_run_failure.enabled:
        return SkipReason("pipeline_run_failure alerts are disabled")
    at = _run_end(context.instance, run.run_id)
    obs = run_failure_observation(alerts, run.job_name, run.run_id, at, _failure_message(context),
                                  partition=run.tags.get("dagster/partition"))
    return RunRequest(run_key=f"pipeline_failure:{run.run_id}", run_config=run_config_for("pipeline_failure_sensor",
                      [obs]), job_name=NOTIFY_JOB,
                      tags={**RETRY_TAGS, "aiobs/trigger": "pipeline_failure_sensor", "aiobs/failed_run": run.run_id})


def recovery_request(context: RunStatusSensorContext, settings: Any) -> RunRequest | SkipReason:
    """Resolve a job's run-failure alert when a later run of it succeeds."""
    alerts = alert_settings_of(settings)
    run = context.dagster_run
    if run.job_name == NOTIFY_JOB:
        return SkipReason(f"{NOTIFY_JOB} runs are not tracked")
    key = alert_key("pipeline_run_failure", "job", run.job_name)
    with AlertStore.from_settings(settings) as store:
        record = store.get([key]).get(key)
    if record is None or record.status != "firing":
        return SkipReason(f"no open run-failure alert for {run.job_name}")
    at = _run_end(context.instance, run.run_id)
    obs = run_success_observation(alerts, run.job_name, run.run_id, at)
    return RunRequest(run_key=f"pipeline_recovery:{run.run_id}",
                      run_config=run_config_for("pipeline_recovery_sensor", [obs]), job_name=NOTIFY_JOB,
                      tags={**RETRY_TAGS, "aiobs/trigger": "pipeline_recovery_sensor"})


@run_failure_sensor(name="pipeline_failure_sensor", request_job=alert_notification_job,
                    description="Alerts when a run of the pipeline fails (rule pipeline_run_failure).")
def pipeline_failure_sensor(context: RunFailureSensorContext, aiobs: AiobsSettings):
    """Request a notification run for the failed run."""
    return failure_request(context, aiobs.get())


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="pipeline_recovery_sensor",
                   request_job=alert_notification_job,
                   description="Resolves a job's run-failure alert when a later run of the job succeeds.")
def pipeline_recovery_sensor(context: RunStatusSensorContext, aiobs: AiobsSettings):
    """Request a resolving notification run when a failing job recovers."""
    return recovery_request(context, aiobs.get())


ALERT_SENSORS = [ingest_alerts_sensor, cost_alerts_sensor, quality_alerts_sensor, pipeline_failure_sensor,
                 pipeline_recovery_sensor]

defs = Definitions(jobs=[alert_notification_job], sensors=ALERT_SENSORS)
