"""The alert sensors on the generator's eight-day scenario: the incident day's loop, budget breach and
error burst page, and the seven ordinary days raise nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import build_sensor_context, instance_for_test, materialize

from aiobs_pipeline.defs import alerting as alert_defs
from aiobs_pipeline.defs.costs import budget_breaches, cost_anomalies, hourly_costs, priced_spans
from aiobs_pipeline.defs.feedback import ingest_feedback_hours
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.generate import generate
from aiobs_pipeline.warehouse import warehouse_io_manager
from tests.dagster.conftest import range_tags

START = datetime(2026, 9, 22, tzinfo=UTC)
END = START + timedelta(days=8)
INCIDENT_DAY = END - timedelta(days=1)


@pytest.mark.slow
def test_incidents_page_and_ordinary_days_are_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landing, feedback = tmp_path / "landing", tmp_path / "feedback"
    generate(landing, START, END, seed=7, scale=1.0, feedback_root=feedback,
             formats=("native", "otlp", "langfuse"))
    truth = {i["kind"]: i for i in json.loads((landing / "_ground_truth.json").read_text())["incidents"]}
    duckdb_path = tmp_path / "warehouse.duckdb"
    config = tmp_path / "aiobs.toml"
    config.write_text(f'[paths]\nlanding_root = "{landing}"\nfeedback_root = "{feedback}"\n'
                      f'[warehouse]\nduckdb_path = "{duckdb_path}"\n'
                      # The scenario is replayed after the fact: evidence of any age may notify.
                      '[alerts]\nmax_alert_age_hours = 1000\n')
    for name in ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "AIOBS_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(alert_defs, "utcnow", lambda: END + timedelta(minutes=45))
    aiobs = AiobsSettings(config_file=str(config))
    resources = {"aiobs": aiobs,
                 "warehouse": warehouse_io_manager("duckdb", duckdb_path=str(duckdb_path), schema="aiobs")}

    with instance_for_test() as instance:
        assert materialize(
            [ingest_export_hours, ingest_feedback_hours, priced_spans, hourly_costs, budget_breaches,
             cost_anomalies], resources=resources, instance=instance,
            tags=range_tags(f"{START:%Y-%m-%d-%H:%M}", f"{END - timedelta(hours=1):%Y-%m-%d-%H:%M}")).success
        firing = []
        for sensor_def in (alert_defs.ingest_alerts_sensor, alert_defs.cost_alerts_sensor):
            result = sensor_def.evaluate_tick(build_sensor_context(instance=instance, resources={"aiobs": aiobs}))
            for request in result.run_requests:
                for obs in request.run_config["ops"]["deliver_alerts"]["config"]["observations"]:
                    if obs["status"] == "firing":
                        firing.append(obs)

    early = [o for o in firing if pd.Timestamp(o["hour"]) < INCIDENT_DAY]
    assert not early, f"ordinary days raised alerts: {[(o['rule'], o['subject'], o['hour']) for o in early]}"
    keys = {(o["rule"], o["subject"]) for o in firing if o["severity"] in ("critical", "warning")}
    loop_user = truth["infinite_loop"]["params"]["user_id"]
    assert ("cost_spike", loop_user) in keys
    assert ("budget_breach", loop_user) in keys
    burst = pd.Timestamp(truth["error_burst"]["start"])
    assert any(o["rule"] == "error_rate" and pd.Timestamp(o["hour"]) == burst for o in firing)
