"""Alert sensors through Dagster: tables written into a temporary warehouse by real materialisations, sensors
ticked with their real context builders, the notification job executed in process against a local HTTP
receiver, and the alert state checked after each step."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from dagster import (
    AssetsDefinition,
    BackfillPolicy,
    DagsterInstance,
    RunRequest,
    asset,
    build_run_status_sensor_context,
    build_sensor_context,
    job,
    materialize,
    op,
)

from aiobs_pipeline.alerting.settings import AlertSettings
from aiobs_pipeline.alerting.state import AlertStore
from aiobs_pipeline.defs import alerting as alert_defs
from aiobs_pipeline.defs.alerting import (
    AlertCursor,
    alert_notification_job,
    cost_alerts_sensor,
    ingest_alerts_sensor,
    pipeline_failure_sensor,
    pipeline_recovery_sensor,
    quality_alerts_sensor,
)
from aiobs_pipeline.defs.partitions import hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.schema import AUDIT_COLUMNS, SPAN_COLUMNS, conform
from aiobs_pipeline.settings import Settings
from tests.dagster.conftest import Project, range_tags

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
NOW = pd.Timestamp.now(tz="UTC").floor("min")
H = NOW.floor("h") - 2 * HOUR  # the bad hour: closed and due
KEY_FORMAT = "%Y-%m-%d-%H:%M"
ROUTING_KEY = "R0UT1NG-dagster-test-key"


class SettingsWithAlerts(Settings):
    """The project settings with the alerts section the lead adds to aiobs_pipeline/settings.py."""

    alerts: AlertSettings = AlertSettings()


class AiobsWithAlerts(AiobsSettings):
    """AiobsSettings whose settings carry an alerts section given as JSON."""

    alerts_json: str = "{}"

    def get(self) -> Settings:
        base = super().get()
        return SettingsWithAlerts.model_construct(
            **{**dict(base), "alerts": AlertSettings.model_validate_json(self.alerts_json)})


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def receiver() -> Iterator[dict[str, Any]]:
    """A local HTTP receiver recording (path, json body)."""
    seen: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, json.loads(body)))
            self.send_response(202 if self.path.startswith("/v2/") else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen}
    server.shutdown()
    server.server_close()


@pytest.fixture
def duckdb_project(tmp_path: Path) -> Project:
    """A DuckDB-only project, for tests whose subject is sensor logic rather than the warehouse."""
    return Project(tmp_path, "duckdb", str(tmp_path / "warehouse.duckdb"), None, "aiobs")


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sensors see the test's clock, so a test crossing an hour boundary behaves the same."""
    monkeypatch.setattr(alert_defs, "utcnow", lambda: NOW.to_pydatetime())


def aiobs_for(project: Project, monkeypatch: pytest.MonkeyPatch, receiver: dict[str, Any] | None = None,
              **alerts: Any) -> AiobsWithAlerts:
    """Settings file pointing at the project's warehouse; alert sinks pointing at the receiver."""
    lines = ["[warehouse]", f'kind = "{project.kind}"', f'schema_name = "{project.schema}"',
             f'duckdb_path = "{project.duckdb_path}"']
    (project.root / "aiobs.toml").write_text("\n".join(lines) + "\n")
    if project.postgres_url:
        monkeypatch.setenv("AIOBS_WAREHOUSE__POSTGRES_URL", project.postgres_url)
    for name in ("SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL_INCIDENTS", "SLACK_WEBHOOK_URL_AI_MONITORING",
                 "PAGERDUTY_ROUTING_KEY", "AIOBS_WEBHOOK_URL", "AIOBS_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config: dict[str, Any] = {"max_alert_age_hours": 6, "error_rate": {"scopes": ["total"]},
                              "latency_p95": {"scopes": ["total"]}, **alerts}
    if receiver:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T1/B1/monitoring")
        monkeypatch.setenv("SLACK_WEBHOOK_URL_INCIDENTS", "https://hooks.slack.com/services/T1/B2/incidents")
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        config.update({"slack": {"base_url": receiver["url"]}, "pagerduty": {"base_url": receiver["url"]},
                       "delivery": {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02}})
    return AiobsWithAlerts(config_file=str(project.root / "aiobs.toml"), alerts_json=json.dumps(config))


def table_asset(name: str, partition_expr: str, frames: dict[pd.Timestamp, pd.DataFrame],
                empty: pd.DataFrame) -> AssetsDefinition:
    """A stand-in for a real asset: writes the given frames for the hours of the run, through the warehouse."""

    @asset(name=name, partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(),
           io_manager_key="warehouse", metadata={"partition_expr": partition_expr})
    def _table(context) -> pd.DataFrame:
        window = context.partition_time_window
        hours = pd.date_range(window.start, window.end - HOUR, freq="h", tz="UTC")
        parts = [frames[h] for h in hours if h in frames]
        return pd.concat(parts, ignore_index=True) if parts else empty

    return _table


def materialize_range(assets: list[AssetsDefinition], project: Project, instance: DagsterInstance,
                      first: pd.Timestamp, last: pd.Timestamp) -> None:
    result = materialize(assets, resources={"warehouse": project.resources()["warehouse"]}, instance=instance,
                         tags=range_tags(f"{first:{KEY_FORMAT}}", f"{last:{KEY_FORMAT}}"))
    assert result.success


def span_rows(hour: pd.Timestamp, n: int, errors: int = 0) -> pd.DataFrame:
    rows = [{"trace_id": f"t-{hour:%d%H}-{i}", "span_id": f"s-{hour:%d%H}-{i}", "name": "chat", "kind": "llm",
             "start_time": hour + pd.Timedelta(seconds=i), "status": "error" if i < errors else "ok",
             "error_message": "upstream 503" if i < errors else None, "latency_ms": 400.0 + i,
             "feature": "chat", "model": "gpt-4o", "source_format": "native", "source_file": "native.jsonl",
             "source_line": i + 1, "export_hour": hour, "schema_version": 1} for i in range(n)]
    return conform(pd.DataFrame(rows), SPAN_COLUMNS)


def audit_rows(hour: pd.Timestamp, spans: int) -> pd.DataFrame:
    return conform(pd.DataFrame([{
        "export_hour": hour, "source_file": f"{hour:%Y/%m/%d/%H}/native.jsonl", "source_format": "native",
        "records_read": spans, "spans_found": spans, "spans_written": spans, "spans_quarantined": 0,
        "quarantined_by_reason": "{}", "late_spans": 0, "file_error": None, "schema_version": 1}]), AUDIT_COLUMNS)


def ingest_assets(traffic: dict[pd.Timestamp, tuple[int, int]]) -> list[AssetsDefinition]:
    """spans + ingest_audit stand-ins for {hour: (spans, errors)}."""
    return [
        table_asset("spans", "export_hour", {h: span_rows(h, n, e) for h, (n, e) in traffic.items()},
                    conform(pd.DataFrame(), SPAN_COLUMNS)),
        table_asset("ingest_audit", "export_hour", {h: audit_rows(h, n) for h, (n, _) in traffic.items()},
                    conform(pd.DataFrame(), AUDIT_COLUMNS)),
    ]


def observations_of(request: RunRequest) -> dict[str, dict[str, Any]]:
    config = request.run_config["ops"]["deliver_alerts"]["config"]
    return {f"{o['rule']}:{o['scope']}:{o['subject']}": o for o in config["observations"]}


def tick(sensor_def: Any, instance: DagsterInstance, aiobs: AiobsSettings, cursor: str | None = None):
    return sensor_def.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor, resources={"aiobs": aiobs}))


def deliver(request: RunRequest, instance: DagsterInstance, aiobs: AiobsSettings) -> None:
    result = alert_notification_job.execute_in_process(run_config=request.run_config, instance=instance,
                                                       resources={"aiobs": aiobs})
    assert result.success


def store_of(project: Project) -> AlertStore:
    return AlertStore(f"sqlite:///{project.root / 'var' / 'alerts.sqlite'}")


# ---------------------------------------------------------------- tests


def test_ingest_sensor_pages_for_errors_and_silent_export_then_resolves(
        project: Project, instance: DagsterInstance, receiver: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # a two-day baseline keeps the range (and Dagster's event log writes) small; rules use 7 by default
    aiobs = aiobs_for(project, monkeypatch, receiver, no_data={"baseline_days": 2, "min_baseline_points": 2})
    traffic = {h - DAY * d: (40, 0) for d in range(1, 3) for h in (H, H - HOUR)}
    traffic[H] = (40, 10)  # 25% errors; H - 1 h has no files at all (the silent export)
    materialize_range(ingest_assets(traffic), project, instance, H - DAY * 2 - HOUR, H)

    first = tick(ingest_alerts_sensor, instance, aiobs)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.job_name == "alert_notification_job" and request.tags["aiobs/trigger"] == "ingest_alerts_sensor"
    observed = observations_of(request)
    silent = f"no_data:hour:{H - HOUR:%Y-%m-%dT%H}"
    assert set(observed) == {"error_rate:total:all", silent}
    assert (observed["error_rate:total:all"]["status"], observed["error_rate:total:all"]["severity"]) == (
        "firing", "critical")
    assert observed["error_rate:total:all"]["value"] == pytest.approx(0.25)
    assert (observed[silent]["status"], observed[silent]["severity"]) == ("firing", "critical")
    cursor = AlertCursor.loads(first.cursor)
    assert set(cursor.after) == {"spans", "ingest_audit"} and cursor.clock == NOW.floor("h").isoformat()

    # nothing new: nothing requested, and the same tick re-run gives the same run key (Dagster dedupes it)
    second = tick(ingest_alerts_sensor, instance, aiobs, first.cursor)
    assert not second.run_requests and "no new materialisations" in second.skip_message
    assert tick(ingest_alerts_sensor, instance, aiobs).run_requests[0].run_key == request.run_key

    deliver(request, instance, aiobs)
    paths = [path for path, _ in receiver["seen"]]
    assert paths.count("/services/T1/B2/incidents") == 2  # error rate and no data: two rules, two messages
    triggers = [body for path, body in receiver["seen"] if path == "/v2/enqueue"]
    assert sorted(t["dedup_key"] for t in triggers) == ["aiobs:error_rate", "aiobs:no_data"]
    with store_of(project) as store:
        firing = {r.key: r for r in store.open_alerts()}
        assert set(firing) == {"error_rate:total:all", silent}
        assert all(r.notifications == 1 and r.paged for r in firing.values())
        assert any(link["kind"] == "trace" for link in firing["error_rate:total:all"].links)

    # the next hour is healthy: the error-rate alert resolves, PagerDuty's incident for it too
    recovered = NOW.floor("h") - HOUR
    materialize_range(ingest_assets({recovered: (40, 0)}), project, instance, recovered, recovered)
    third = tick(ingest_alerts_sensor, instance, aiobs, first.cursor)
    (resolve_request,) = third.run_requests
    assert {k: o["status"] for k, o in observations_of(resolve_request).items()} == {"error_rate:total:all": "ok"}
    deliver(resolve_request, instance, aiobs)
    resolves = [body for path, body in receiver["seen"] if path == "/v2/enqueue" and body["event_action"] == "resolve"]
    assert [r["dedup_key"] for r in resolves] == ["aiobs:error_rate"]
    with store_of(project) as store:
        assert [r.key for r in store.open_alerts()] == [silent]
        sinks = {(e["key"], e["sink"], e["outcome"]) for e in store.events_for(limit=200) if e["event"] == "delivery"}
        assert ("error_rate:total:all", "slack", "sent") in sinks and ("error_rate:total:all", "log", "sent") in sinks
    assert not tick(ingest_alerts_sensor, instance, aiobs, third.cursor).run_requests


def cost_assets(anomalies: dict[pd.Timestamp, list[dict]], breaches: dict[pd.Timestamp, list[dict]]):
    anomaly_columns = {"hour": "datetime64[ns, UTC]", "scope": "object", "subject": "object", "spend_usd": "float64",
                       "calls": "int64", "baseline_usd": "float64", "baseline_method": "object",
                       "baseline_points": "int64", "ratio": "float64", "status": "object"}
    breach_columns = {"hour": "datetime64[ns, UTC]", "scope": "object", "subject": "object", "spend_usd": "float64",
                      "budget_usd": "float64", "window": "object", "first_breach": "bool",
                      "recommended_action": "object"}

    def frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=list(columns)).astype(columns)

    return [
        table_asset("cost_anomalies", "hour", {h: frame(r, anomaly_columns) for h, r in anomalies.items()},
                    frame([], anomaly_columns)),
        table_asset("budget_breaches", "hour", {h: frame(r, breach_columns) for h, r in breaches.items()},
                    frame([], breach_columns)),
    ]


def test_cost_sensor_relays_spikes_and_budgets_and_resolves_absent_subjects(
        duckdb_project: Project, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    aiobs = aiobs_for(duckdb_project, monkeypatch)  # no sink configured: the log sink only
    spike = {"hour": H, "scope": "user", "subject": "u1", "spend_usd": 47.0, "calls": 900, "baseline_usd": 0.5,
             "baseline_method": "same_hour_7d", "baseline_points": 7, "ratio": 94.0, "status": "critical"}
    breach = {"hour": H, "scope": "user", "subject": "u1", "spend_usd": 52.0, "budget_usd": 5.0,
              "window": "day (UTC)", "first_breach": True, "recommended_action": "rate_limit_user"}
    materialize_range(cost_assets({H: [spike]}, {H: [breach]}), duckdb_project, instance, H, H)
    first = tick(cost_alerts_sensor, instance, aiobs)
    (request,) = first.run_requests
    observed = observations_of(request)
    assert {k: (o["status"], o["severity"]) for k, o in observed.items()} == {
        "cost_spike:user:u1": ("firing", "critical"), "budget_breach:user:u1": ("firing", "warning")}
    assert "rate_limit_user" in observed["budget_breach:user:u1"]["summary"]
    deliver(request, instance, aiobs)

    later = H + HOUR
    calm = dict(spike, hour=later, spend_usd=0.4, ratio=0.8, status="ok")
    materialize_range(cost_assets({later: [calm]}, {}), duckdb_project, instance, later, later)
    second = tick(cost_alerts_sensor, instance, aiobs, first.cursor)
    (resolve,) = second.run_requests
    assert {k: o["status"] for k, o in observations_of(resolve).items()} == {
        "cost_spike:user:u1": "ok", "budget_breach:user:u1": "ok"}
    deliver(resolve, instance, aiobs)
    with store_of(duckdb_project) as store:
        assert store.open_alerts() == []
        assert {(e["sink"], e["outcome"]) for e in store.events_for() if e["event"] == "delivery"} == {
            ("log", "sent"), ("slack", "skipped"), ("webhook", "skipped"), ("pagerduty", "skipped")}


def test_quality_sensor_judges_present_tables_and_notes_absent_ones(
        duckdb_project: Project, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    aiobs = aiobs_for(duckdb_project, monkeypatch, quality_drop={"baseline_days": 1, "min_baseline_responses": 60})
    idle = tick(quality_alerts_sensor, instance, aiobs)
    assert not idle.run_requests
    assert "hallucination_scores, satisfaction_scores never materialised yet" in idle.skip_message
    frames = {}
    for i in range(24 + 1):
        hour = H - HOUR * i
        n, score = (40, 0.55) if hour == H else (3, 0.9)
        frames[hour] = pd.DataFrame({"export_hour": [hour] * n, "span_id": [f"s{i}-{j}" for j in range(n)],
                                     "trace_id": [f"t{i}-{j}" for j in range(n)], "trust_score": [score] * n,
                                     "risk_level": ["medium" if score < 0.7 else "low"] * n})
    empty = frames[H].iloc[0:0]
    materialize_range([table_asset("hallucination_scores", "export_hour", frames, empty)], duckdb_project, instance,
                      H - HOUR * 24, H)
    result = tick(quality_alerts_sensor, instance, aiobs)
    (request,) = result.run_requests
    observed = observations_of(request)
    assert list(observed) == ["quality_drop:total:all"]
    assert observed["quality_drop:total:all"]["severity"] == "critical"
    notes = " ".join(AlertCursor.loads(result.cursor).notes)
    assert "satisfaction_scores does not exist yet" in notes


def test_locked_warehouse_skips_without_losing_the_materialisations(
        duckdb_project: Project, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    aiobs = aiobs_for(duckdb_project, monkeypatch)
    materialize_range(ingest_assets({H: (40, 10)}), duckdb_project, instance, H, H)
    writer = duckdb.connect(duckdb_project.duckdb_path)  # a run holding the file for writing
    try:
        busy = tick(ingest_alerts_sensor, instance, aiobs, None)
    finally:
        writer.close()
    assert not busy.run_requests and "warehouse not readable now" in busy.skip_message
    assert busy.cursor is None, "the cursor must not move past unevaluated materialisations"
    (request,) = tick(ingest_alerts_sensor, instance, aiobs, busy.cursor).run_requests
    assert "error_rate:total:all" in observations_of(request)


@op(config_schema={"fail": bool})
def flaky(context) -> None:
    if context.op_config["fail"]:
        raise RuntimeError("export bucket unreachable")


@job
def flaky_job() -> None:
    flaky()


def test_run_failure_sensor_alerts_and_the_next_success_resolves(
        duckdb_project: Project, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    aiobs = aiobs_for(duckdb_project, monkeypatch)
    failed = flaky_job.execute_in_process(run_config={"ops": {"flaky": {"config": {"fail": True}}}},
                                          instance=instance, raise_on_error=False)
    context = build_run_status_sensor_context(
        sensor_name="pipeline_failure_sensor", dagster_event=failed.get_run_failure_event(),
        dagster_instance=instance, dagster_run=failed.dagster_run, resources={"aiobs": aiobs})
    request = pipeline_failure_sensor(context.for_run_failure())
    assert isinstance(request, RunRequest) and request.run_key == f"pipeline_failure:{failed.run_id}"
    (obs,) = observations_of(request).values()
    assert obs["subject"] == "flaky_job" and "export bucket unreachable" in obs["summary"]
    deliver(request, instance, aiobs)
    with store_of(duckdb_project) as store:
        assert [r.key for r in store.open_alerts()] == ["pipeline_run_failure:job:flaky_job"]

    ok = flaky_job.execute_in_process(run_config={"ops": {"flaky": {"config": {"fail": False}}}}, instance=instance)
    success = build_run_status_sensor_context(
        sensor_name="pipeline_recovery_sensor", dagster_event=ok.get_run_success_event(),
        dagster_instance=instance, dagster_run=ok.dagster_run, resources={"aiobs": aiobs})
    resolve = pipeline_recovery_sensor(success)
    assert isinstance(resolve, RunRequest)
    deliver(resolve, instance, aiobs)
    with store_of(duckdb_project) as store:
        assert store.open_alerts() == []
    # nothing open any more: the next success requests nothing
    assert not isinstance(pipeline_recovery_sensor(success), RunRequest)

    # a failing notification job is never alerted through itself
    broken = alert_notification_job.execute_in_process(
        run_config={"ops": {"deliver_alerts": {"config": {"observations": [{
            "rule": "error_rate", "scope": "total", "subject": "all", "status": "firing", "hour": "not a time"}]}}}},
        instance=instance, resources={"aiobs": aiobs}, raise_on_error=False)
    assert not broken.success
    loop = build_run_status_sensor_context(
        sensor_name="pipeline_failure_sensor", dagster_event=broken.get_run_failure_event(),
        dagster_instance=instance, dagster_run=broken.dagster_run, resources={"aiobs": aiobs})
    assert not isinstance(pipeline_failure_sensor(loop.for_run_failure()), RunRequest)


def test_alerting_definitions_merge_into_the_code_location() -> None:
    from dagster import Definitions

    from aiobs_pipeline.definitions import DOMAINS, build_resources
    from aiobs_pipeline.settings import get_settings

    merged = Definitions.merge(*DOMAINS, alert_defs.defs, Definitions(resources=build_resources(get_settings())))
    Definitions.validate_loadable(merged)
    repo = merged.get_repository_def()
    assert {s.name for s in repo.sensor_defs} >= {"ingest_alerts_sensor", "cost_alerts_sensor",
                                                  "quality_alerts_sensor", "pipeline_failure_sensor",
                                                  "pipeline_recovery_sensor", "landing_sensor"}
    assert [node.name for node in repo.get_job("alert_notification_job").graph.nodes] == ["deliver_alerts"]


def test_cursor_and_partition_helpers() -> None:
    assert AlertCursor.loads("not json") == AlertCursor() == AlertCursor.loads(None)
    cursor = AlertCursor({"spans": 12}, "2026-03-10T12:00:00+00:00", ["a note"])
    assert AlertCursor.loads(cursor.dumps()) == cursor
    now = pd.Timestamp("2026-03-10 12:34", tz="UTC")
    assert alert_defs.hours_of_partition("2026-03-10-05:00", now) == [pd.Timestamp("2026-03-10 05:00", tz="UTC")]
    day = alert_defs.hours_of_partition("2026-03-09", now)
    assert len(day) == 24 and day[0] == pd.Timestamp("2026-03-09 00:00", tz="UTC")
    assert alert_defs.hours_of_partition(None, now)[0] == pd.Timestamp("2026-03-10 12:00", tz="UTC")
    assert alert_defs.due_hour(AlertSettings(), now) == pd.Timestamp("2026-03-10 11:00", tz="UTC")
