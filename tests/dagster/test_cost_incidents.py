"""The cost assets on the generator's eight-day scenario: the infinite-loop user is caught in the hour it
starts, is over its daily budget the same day, and the seven ordinary days raise nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from dagster import materialize

from aiobs_pipeline.defs.costs import budget_breaches, cost_anomalies, hourly_costs, priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from tests.dagster.conftest import Project, range_tags

START = datetime(2026, 9, 22, tzinfo=UTC)
END = START + timedelta(days=8)


@pytest.mark.slow
def test_generated_loop_is_caught_and_ordinary_days_are_quiet(project: Project, instance) -> None:
    generate(project.landing, START, END, seed=7, scale=0.3, formats=("native", "otlp", "langsmith"))
    loop = next(i for i in json.loads((project.landing / "_ground_truth.json").read_text())["incidents"]
                if i["kind"] == "infinite_loop")
    result = materialize(
        [ingest_export_hours, priced_spans, hourly_costs, budget_breaches, cost_anomalies],
        resources=project.resources(), instance=instance,
        tags=range_tags(f"{START:%Y-%m-%d-%H:%M}", f"{END - timedelta(hours=1):%Y-%m-%d-%H:%M}"))
    assert result.success

    loop_start = pd.Timestamp(loop["start"])
    user = loop["params"]["user_id"]
    anomalies = project.read("cost_anomalies")
    alerts = anomalies[anomalies["status"].isin(["warning", "critical"])]
    assert (alerts["hour"] >= END - timedelta(days=1)).all(), "an ordinary day raised a cost alert"
    first = alerts[(alerts["scope"] == "user") & (alerts["subject"] == user)].sort_values("hour").iloc[0]
    assert first["hour"] == loop_start and first["status"] == "critical"

    breaches = project.read("budget_breaches")
    user_breach = breaches[(breaches["scope"] == "user") & breaches["first_breach"]]
    assert user_breach["subject"].tolist() == [user]
    assert user_breach["recommended_action"].tolist() == ["rate_limit_user"]
    assert user_breach["hour"].iloc[0] < pd.Timestamp(loop["end"])
