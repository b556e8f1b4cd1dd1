"""Cost assets through Dagster on a week of ordinary traffic plus a user stuck in a loop."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import materialize

from aiobs_pipeline.defs.costs import (
    budget_breaches,
    cost_anomalies,
    cost_summary,
    daily_costs,
    hourly_costs,
    priced_spans,
)
from aiobs_pipeline.defs.ingest import ingest_export_hours
from aiobs_pipeline.ingest.partition import landing_folder
from tests.dagster.conftest import Project, range_tags

FIRST_DAY = datetime(2026, 10, 1, tzinfo=UTC)
LOOP_DAY = FIRST_DAY + timedelta(days=7)
HOUR_OF_DAY = 10
HOURLY_ASSETS = [ingest_export_hours, priced_spans, hourly_costs, budget_breaches, cost_anomalies]


def call(hour: datetime, user: str, i: int, model: str = "gpt-4o") -> dict:
    start = hour + timedelta(seconds=i)
    return {
        "span_id": f"{user}-{hour:%d%H}-{i}", "trace_id": f"{user}-{hour:%d%H}-{i}", "name": "chat",
        "kind": "llm", "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat(),
        "provider": "openai", "model": model, "messages": [{"role": "user", "content": "hi"}], "response": "hello",
        "usage": {"prompt_tokens": 2000, "completion_tokens": 1000, "total_tokens": 3000},
        "metadata": {"user_id": user, "feature": "chat", "endpoint": "/v1/chat"},
    }


def land_week(project: Project) -> None:
    for day in range(8):
        hour = FIRST_DAY + timedelta(days=day, hours=HOUR_OF_DAY)
        rows = [call(hour, user, i) for user in ("u1", "u2", "u3") for i in range(18 + (day * 7 + hash(user)) % 5)]
        if day == 7:
            rows += [call(hour, "u1", 1000 + i) for i in range(500)]  # the runaway loop
            rows.append(call(hour, "u2", 9999, model="acme-finetune-7b"))  # nobody prices this model
        folder = landing_folder(project.landing, hour)
        folder.mkdir(parents=True)
        (folder / "native.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.slow
def test_loop_user_is_critical_and_over_budget_while_ordinary_days_are_quiet(project: Project, instance) -> None:
    land_week(project)
    first = FIRST_DAY + timedelta(hours=HOUR_OF_DAY)
    last = LOOP_DAY + timedelta(hours=HOUR_OF_DAY)
    result = materialize(HOURLY_ASSETS, resources=project.resources(), instance=instance,
                         tags=range_tags(f"{first:%Y-%m-%d-%H:%M}", f"{last:%Y-%m-%d-%H:%M}"))
    assert result.success

    priced = project.read("priced_spans")
    assert priced.loc[priced["model"] == "acme-finetune-7b", "cost_status"].tolist() == ["unpriced_model"]
    assert priced.loc[priced["model"] == "acme-finetune-7b", "cost_usd"].isna().all()
    gpt = priced[priced["model"] == "gpt-4o"]
    assert (gpt["cost_status"] == "priced").all() and (gpt["price_source"] == "genai-prices").all()
    # 2000 input + 1000 output tokens of gpt-4o at 2.5 / 10 USD per million tokens.
    assert gpt["cost_usd"].iloc[0] == pytest.approx(0.015)

    anomalies = project.read("cost_anomalies")
    flagged = anomalies[anomalies["status"].isin(["warning", "critical"])]
    assert sorted(zip(flagged["scope"], flagged["subject"], flagged["status"], strict=True)) == [
        ("feature", "chat", "critical"), ("total", "all", "critical"), ("user", "u1", "critical")]
    assert (flagged["hour"] == last).all(), "the ordinary days raised a cost alert"

    breaches = project.read("budget_breaches")
    user_breaches = breaches[breaches["scope"] == "user"]
    assert user_breaches["subject"].tolist() == ["u1"]
    assert user_breaches["recommended_action"].tolist() == ["rate_limit_user"]

    daily = materialize([*hourly_costs.to_source_assets(), daily_costs, cost_summary],
                        resources=project.resources(), instance=instance,
                        tags=range_tags(f"{FIRST_DAY:%Y-%m-%d}", f"{LOOP_DAY:%Y-%m-%d}"))
    assert daily.success
    days = project.read("daily_costs").groupby("day")["cost_usd"].sum()
    assert len(days) == 8 and days.iloc[-1] > 5 * days.iloc[0]
    summary = project.read("cost_summary").sort_values("day")
    assert summary["month_to_date_usd"].iloc[-1] == pytest.approx(days.sum())
    assert summary["projected_month_usd"].iloc[-1] >= summary["month_to_date_usd"].iloc[-1]
