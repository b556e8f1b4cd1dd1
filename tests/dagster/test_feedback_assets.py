"""Feedback assets through Dagster on generated traces and feedback: ingest, GX check, late feedback,
per-response satisfaction and the daily metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
from dagster import materialize

from aiobs_pipeline.defs.feedback import (
    ingest_feedback_hours,
    satisfaction_metrics_daily,
    satisfaction_scores_daily,
)
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.generate import generate
from tests.dagster.conftest import Project, range_tags

DAY = datetime(2026, 10, 5, tzinfo=UTC)


def test_feedback_to_satisfaction(project: Project, instance) -> None:
    generate(project.landing, DAY, DAY + timedelta(days=2), seed=5, scale=0.3, incidents=[],
             feedback_root=project.feedback)
    hourly = materialize([ingest_export_hours, ingest_feedback_hours], resources=project.resources(),
                         instance=instance,
                         tags=range_tags(f"{DAY:%Y-%m-%d-%H:%M}",
                                         f"{DAY + timedelta(hours=47):%Y-%m-%d-%H:%M}"))
    assert hourly.success
    checks = {c.check_name: c.passed for c in hourly.get_asset_check_evaluations()}
    assert checks == {"spans_valid": True, "feedback_valid": True}
    events = project.read("feedback_events")
    assert len(events) > 50 and project.read("quarantined_feedback").empty
    audit = project.read("feedback_audit")
    assert (audit["events_found"] == audit["events_written"] + audit["events_quarantined"]).all()

    # A thumbs-down given the next morning about an answer of DAY (late feedback) lands in a later hour.
    spans = project.read("spans")
    answer = spans[(spans["kind"] == "llm") & (spans["export_hour"] < DAY + timedelta(days=1))
                   & ~spans["span_id"].isin(events["span_id"])].iloc[0]
    late_hour = DAY + timedelta(days=1, hours=3)
    folder = project.feedback / f"{late_hour:%Y/%m/%d/%H}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "late.jsonl").write_text(json.dumps({
        "event_id": "late-1", "span_id": answer["span_id"], "trace_id": answer["trace_id"],
        "user_id": answer["user_id"], "event_type": "thumbs_down", "reason": "incorrect_information",
        "timestamp": (late_hour + timedelta(minutes=5)).isoformat(), "source": "app"}) + "\n")
    assert materialize([ingest_feedback_hours], resources=project.resources(), instance=instance,
                       partition_key=f"{late_hour:%Y-%m-%d-%H:%M}").success

    daily = materialize([*ingest_export_hours.to_source_assets(), *ingest_feedback_hours.to_source_assets(),
                         satisfaction_scores_daily, satisfaction_metrics_daily],
                        resources=project.resources(), instance=instance, partition_key=f"{DAY:%Y-%m-%d}")
    assert daily.success
    scores = project.read("satisfaction_scores")
    assert len(scores) > 0 and scores["satisfaction"].between(0, 1).all()
    assert (scores["day"] == pd.Timestamp(DAY.date())).all()
    assert set(scores["span_id"]) <= set(spans["span_id"])
    # Feedback read in the next day's hours about this day's answers is counted (late feedback).
    late = scores.set_index("span_id").loc[answer["span_id"]]
    assert bool(late["thumbs_down"]) and late["satisfaction"] == 0.25  # (-1 + 2) / 4
    metrics = project.read("satisfaction_metrics")
    day_rows = metrics[metrics["grain"] == "day"]
    assert len(day_rows) > 0
    assert day_rows["responses_with_feedback"].sum() == len(scores)
    assert set(day_rows["avg_satisfaction_status"]) <= {"met", "missed", "insufficient_data"}
