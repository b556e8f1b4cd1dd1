"""Reporting assets through Dagster: two days of traffic across a month boundary, cost assets, then the
dashboards (first without, then with the optional quality tables) and the monthly report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from dagster import asset, materialize

from aiobs_pipeline.defs.costs import cost_summary, daily_costs, hourly_costs, priced_spans
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.defs.reporting import business_dashboard, monthly_report, technical_dashboard
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project, range_tags

SEPT_30 = datetime(2026, 9, 30, 10, tzinfo=UTC)
OCT_1 = SEPT_30 + timedelta(days=1)
CALLS = {SEPT_30: 20, OCT_1: 30}


def call(hour: datetime, i: int) -> dict:
    """One chat call: latency 100 ms x (i + 1), every 10th an error, half streamed, two models and endpoints."""
    start = hour + timedelta(seconds=i)
    span = {
        "span_id": f"s-{hour:%d}-{i}", "trace_id": f"t-{hour:%d}-{i}", "name": "chat", "kind": "llm",
        "start_time": start.isoformat(), "end_time": (start + timedelta(milliseconds=100 * (i + 1))).isoformat(),
        "latency_ms": 100.0 * (i + 1), "provider": "openai", "model": "gpt-4o" if i % 2 == 0 else "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}], "response": "hello",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
                  "cached_tokens": 500 if i % 4 == 0 else 0},
        "metadata": {"user_id": f"u{i % 4}", "session_id": f"{hour:%d}-conv-{i // 2}", "feature": "support",
                     "endpoint": "/v1/chat" if i < 10 else "/v1/search", "prompt_version": f"v{1 + i % 2}"},
    }
    if i % 10 == 0:
        span["status"], span["error"] = "error", "rate limited"
    if i % 2:
        span["time_to_first_token_ms"] = 50.0 * i
    return span


def land(project: Project) -> None:
    for hour, n in CALLS.items():
        folder = landing_folder(project.landing, hour)
        folder.mkdir(parents=True)
        (folder / "native.jsonl").write_text("\n".join(json.dumps(call(hour, i)) for i in range(n)) + "\n")


def use_project_warehouse(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the settings at the project's warehouse, so the assets' optional reads see the same tables."""
    monkeypatch.setenv("AIOBS_WAREHOUSE__KIND", project.kind)
    monkeypatch.setenv("AIOBS_WAREHOUSE__DUCKDB_PATH", project.duckdb_path)
    monkeypatch.setenv("AIOBS_WAREHOUSE__SCHEMA_NAME", project.schema)
    if project.postgres_url:
        monkeypatch.setenv("AIOBS_WAREHOUSE__POSTGRES_URL", project.postgres_url)


@asset(io_manager_key="warehouse", name="hallucination_scores")
def fake_hallucination_scores() -> pd.DataFrame:
    """Trust scores for the 30 responses of 1 October: 0.9 for 27 of them, 0.3 (high risk) for 3."""
    trust = np.where(np.arange(30) % 10 == 5, 0.3, 0.9)
    return pd.DataFrame({"export_hour": pd.Timestamp(OCT_1), "span_id": [f"s-01-{i}" for i in range(30)],
                         "trust_score": trust, "risk_level": np.where(trust < 0.5, "high", "low")})


def day_rows(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[pd.to_datetime(frame["day"]) == pd.Timestamp(day)]


def overall(frame: pd.DataFrame, metric: str) -> pd.Series:
    rows = frame[(frame["metric"] == metric) & (frame["dimension"] == "all")]
    assert len(rows) == 1, f"{metric}: {len(rows)} overall rows"
    return rows.iloc[0]


@pytest.mark.slow
def test_dashboards_and_monthly_report(project: Project, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    land(project)
    use_project_warehouse(project, monkeypatch)
    resources = project.resources()
    hours = range_tags(f"{SEPT_30:%Y-%m-%d-%H:%M}", f"{OCT_1:%Y-%m-%d-%H:%M}")
    assert materialize([ingest_export_hours, priced_spans, hourly_costs], resources=resources, instance=instance,
                       tags=hours).success
    days = range_tags("2026-09-30", "2026-10-01")
    assert materialize([*hourly_costs.to_source_assets(), daily_costs, cost_summary], resources=resources,
                       instance=instance, tags=days).success

    # Both days before the quality tables exist: their figures are not available, not zero.
    sources = [*priced_spans.to_source_assets(), *daily_costs.to_source_assets(), *cost_summary.to_source_assets()]
    result = materialize([*sources, technical_dashboard, business_dashboard], resources=resources,
                         instance=instance, tags=days)
    assert result.success
    tech = day_rows(project.read("technical_dashboard"), "2026-10-01")
    assert overall(tech, "calls")["value"] == 30
    assert overall(tech, "error_rate")["value"] == pytest.approx(3 / 30)
    assert overall(tech, "latency_p95_ms")["value"] == 2900.0  # nearest rank: the 29th of 100..3000 ms
    assert overall(tech, "ttft_p50_ms")["value"] == 750.0 and overall(tech, "ttft_p50_ms")["sample_size"] == 15
    assert overall(tech, "cached_input_share")["value"] == pytest.approx(8 * 500 / 30_000)
    assert np.isnan(overall(tech, "quality_score")["value"])
    assert overall(tech, "quality_score")["note"] == "hallucination_scores has not been materialised"
    by_model = tech[(tech["dimension"] == "model") & (tech["metric"] == "calls")]
    assert dict(zip(by_model["dimension_value"], by_model["value"], strict=True)) == {"gpt-4o": 15, "gpt-4o-mini": 15}

    biz = project.read("business_dashboard")
    first, second = day_rows(biz, "2026-09-30"), day_rows(biz, "2026-10-01")
    assert overall(first, "calls")["trend"] == "n/a"  # 29 September was never computed
    calls = overall(second, "calls")
    assert (calls["value"], calls["previous_value"], calls["trend"]) == (30, 20, "up")
    assert calls["change_pct"] == pytest.approx(0.5)
    cost = overall(second, "cost_usd")["value"]
    assert cost == pytest.approx(day_rows(project.read("daily_costs"), "2026-10-01")["cost_usd"].sum())
    assert overall(second, "cost_per_user_usd")["value"] == pytest.approx(cost / 4)
    assert overall(second, "conversations")["value"] == 15  # two calls per session, each with an ok call
    assert overall(second, "tickets_deflected")["value"] == pytest.approx(1.5)
    assert "10%" in overall(second, "tickets_deflected")["note"]
    assert overall(second, "quality_score")["target_status"] == "n/a"

    reports = project.root / "reports"
    for name in ("technical-2026-09-30", "technical-2026-10-01", "business-2026-09-30", "business-2026-10-01"):
        page = (reports / "dashboards" / f"{name}.html").read_text()
        assert "<svg" in page and "<script" not in page and len(page) < 300_000

    # The quality table appears: 1 October is recomputed with it.
    assert materialize([fake_hallucination_scores], resources=resources, instance=instance).success
    assert materialize([*sources, technical_dashboard, business_dashboard], resources=resources,
                       instance=instance, tags=range_tags("2026-10-01", "2026-10-01")).success
    biz = project.read("business_dashboard")
    assert len(day_rows(biz, "2026-09-30")) == len(first), "re-materialising 1 October touched 30 September"
    second = day_rows(biz, "2026-10-01")
    quality = overall(second, "quality_score")
    assert quality["value"] == pytest.approx((27 * 0.9 + 3 * 0.3) / 30) and quality["sample_size"] == 30
    assert quality["target_status"] == "below"  # 0.84 < 0.85
    assert overall(second, "answer_accuracy")["value"] == pytest.approx(0.9)
    assert overall(second, "user_satisfaction")["note"] == "satisfaction_scores has not been materialised"

    monthly = materialize([*business_dashboard.to_source_assets(), *technical_dashboard.to_source_assets(),
                           *daily_costs.to_source_assets(), monthly_report], resources=resources,
                          instance=instance, partition_key="2026-10-01")
    assert monthly.success
    rows = project.read("monthly_report")
    assert set(pd.to_datetime(rows["month"])) == {pd.Timestamp("2026-10-01")}
    users = rows[rows["metric"] == "users_served"].iloc[0]
    assert (users["value"], users["previous_value"]) == (4, 4)
    accuracy = rows[rows["metric"] == "answer_accuracy"].iloc[0]
    assert accuracy["sentence"].startswith("Answer accuracy: 90%")
    text = (reports / "monthly" / "2026-10.md").read_text()
    assert text.startswith("# AI System Performance - October 2026")
    # Same price per call both days: usage alone explains the rise.
    assert re.search(r"Costs increased \d+% due to higher usage \(requests \+50%\) \(\$", text)
    assert "User satisfaction is not measured" in text
    assert "<svg" in (reports / "monthly" / "2026-10.html").read_text()
    shown = monthly.asset_materializations_for_node("monthly_report")[0].metadata["report"]
    assert shown.value == text
