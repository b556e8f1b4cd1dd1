"""Alert rules on synthetic tables: each fires once per window, reminds after it, resolves on recovery;
minimum counts keep quiet hours silent; keys are stable; similar alerts aggregate; runbooks exist."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.alerting.notify import build_messages
from aiobs_pipeline.alerting.rules import (
    RULES,
    FrameReader,
    Observation,
    absent_subjects_ok,
    alert_key,
    evaluate_rules,
    expired,
    rule_triggers,
)
from aiobs_pipeline.alerting.settings import AlertSettings
from aiobs_pipeline.alerting.sinks import SlackSink
from aiobs_pipeline.alerting.state import AlertStore

H0 = pd.Timestamp("2026-03-10 12:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
MINUTE = pd.Timedelta(minutes=1)
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"

Builder = Callable[[dict[pd.Timestamp, bool]], dict[str, pd.DataFrame]]


def settings(**overrides: object) -> AlertSettings:
    """Alert settings with single-scope rules so each scenario has one key."""
    base: dict[str, object] = {
        "error_rate": {"scopes": ["total"]}, "latency_p95": {"scopes": ["total"]},
        "satisfaction_low": {"window_hours": 1},
        # The synthetic tables are small: judge them with small minimums.
        "feature_usage_shift": {"min_calls": 50}, "model_distribution_shift": {"min_calls": 50},
        "cache_hit_rate": {"min_input_tokens": 10_000},
    }
    base.update(overrides)
    return AlertSettings.model_validate(base)


# ---------------------------------------------------------------- synthetic tables, one builder per rule


def spans_table(states: dict[pd.Timestamp, bool], *, errors: bool = False, slow: bool = False,
                per_hour: int = 100) -> pd.DataFrame:
    rows = []
    for hour, bad in states.items():
        for i in range(per_hour):
            failed = errors and bad and i < 20
            rows.append({
                "export_hour": hour, "kind": "llm", "status": "error" if failed else "ok",
                "latency_ms": 8000.0 if (slow and bad) else 800.0 + i, "trace_id": f"t-{hour:%d%H}-{i}",
                "span_id": f"s-{hour:%d%H}-{i}", "feature": "chat" if i % 2 else "search", "model": "gpt-4o",
                "error_message": "upstream 503" if failed else None,
            })
        rows.append({"export_hour": hour, "kind": "tool", "status": "error", "latency_ms": 1.0, "trace_id": "x",
                     "span_id": f"tool-{hour:%d%H}", "feature": "chat", "model": None, "error_message": "tool"})
    return pd.DataFrame(rows)


def error_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    return {"spans": spans_table(states, errors=True)}


def latency_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    return {"spans": spans_table(states, slow=True)}


def cost_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    rows = [{"hour": h, "scope": "total", "subject": "all", "spend_usd": 30.0 if bad else 10.0,
             "baseline_usd": 10.0, "ratio": 3.0 if bad else 1.0, "status": "critical" if bad else "ok",
             "calls": 100, "baseline_method": "same_hour_7d", "baseline_points": 7} for h, bad in states.items()]
    return {"cost_anomalies": pd.DataFrame(rows)}


def budget_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    rows = [{"hour": h, "scope": "total", "subject": "all", "spend_usd": 150.0, "budget_usd": 100.0,
             "window": f"hour {h:%Y-%m-%d %H:00} UTC", "first_breach": True, "recommended_action": "page_oncall"}
            for h, bad in states.items() if bad]
    frame = pd.DataFrame(rows, columns=["hour", "scope", "subject", "spend_usd", "budget_usd", "window",
                                        "first_breach", "recommended_action"])
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    return {"budget_breaches": frame}


def _hourly_costs(states: dict[pd.Timestamp, bool], row: Callable[[pd.Timestamp, bool], list[dict]]) -> pd.DataFrame:
    hours = {h - DAY * d: False for h in states for d in range(1, 8)}
    hours.update(states)
    return pd.DataFrame([r for h, bad in hours.items() for r in row(h, bad)])


def cache_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    def row(h: pd.Timestamp, bad: bool) -> list[dict]:
        return [{"hour": h, "feature": "chat", "model": "gpt-4o", "calls": 100, "input_tokens": 100_000,
                 "cached_input_tokens": 5_000 if bad else 50_000}]
    return {"hourly_costs": _hourly_costs(states, row)}


def _mix_builder(column: str) -> Builder:
    def build(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
        def row(h: pd.Timestamp, bad: bool) -> list[dict]:
            a, b = (20, 80) if bad else (80, 20)
            other = "model" if column == "feature" else "feature"
            return [{"hour": h, column: "a", other: "x", "calls": a, "input_tokens": 1, "cached_input_tokens": 0},
                    {"hour": h, column: "b", other: "x", "calls": b, "input_tokens": 1, "cached_input_tokens": 0}]
        return {"hourly_costs": _hourly_costs(states, row)}
    return build


def quality_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    first = min(states)
    history = {first - HOUR * i: False for i in range(1, 7 * 24 + 1)}
    rows = []
    for h, bad in {**history, **states}.items():
        n = 40 if h in states else 5
        rows += [{"export_hour": h, "span_id": f"s{h:%d%H}{i}", "trace_id": f"t{h:%d%H}{i}",
                  "trust_score": 0.6 if bad else 0.9, "risk_level": "medium" if bad else "low"} for i in range(n)]
    return {"hallucination_scores": pd.DataFrame(rows)}


def satisfaction_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    rows = [{"response_hour": h, "span_id": f"s{i}", "satisfaction": 0.4 if bad else 0.85}
            for h, bad in states.items() for i in range(30)]
    return {"satisfaction_scores": pd.DataFrame(rows)}


def week_over_week_builder(states: dict[pd.Timestamp, bool]) -> dict[str, pd.DataFrame]:
    """Last week steady at 0.8; each bad hour adds low scores to this week, a good hour enough high ones."""
    first = min(states)
    rows = [{"response_hour": first - DAY * 10, "satisfaction": 0.8}] * 200
    for h, bad in states.items():
        rows += [{"response_hour": h, "satisfaction": 0.5}] * 200 if bad else [{"response_hour": h, "satisfaction": 1.0}] * 3000
    return {"satisfaction_scores": pd.DataFrame(rows)}


LIFECYCLE: dict[str, Builder] = {
    "error_rate": error_builder,
    "latency_p95": latency_builder,
    "cost_spike": cost_builder,
    "budget_breach": budget_builder,
    "cache_hit_rate": cache_builder,
    "feature_usage_shift": _mix_builder("feature"),
    "model_distribution_shift": _mix_builder("model"),
    "quality_drop": quality_builder,
    "satisfaction_low": satisfaction_builder,
    "week_over_week": week_over_week_builder,
}


def tick(store: AlertStore, reader: FrameReader, rule: str, hours: list[pd.Timestamp], now: pd.Timestamp,
         alerts: AlertSettings):
    """What a sensor tick plus the delivery run do to the state (without the HTTP part)."""
    results = evaluate_rules(reader, {rule: hours}, alerts, now)
    observations = [o for r in results for o in r.observations]
    observations += absent_subjects_ok(results, [r.as_open_alert() for r in store.open_alerts([rule])])
    return store.apply(observations, now=now)


@pytest.mark.parametrize("rule", sorted(LIFECYCLE))
def test_rule_fires_once_per_window_reminds_after_it_and_resolves(rule: str, tmp_path: Path) -> None:
    alerts = settings()
    h1, h2, h3 = H0 + HOUR, H0 + 2 * HOUR, H0 + 3 * HOUR
    reader = FrameReader(LIFECYCLE[rule]({H0: True, h1: True, h2: True, h3: False}))
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    t0 = H0 + HOUR + pd.Timedelta(minutes=10)

    first = tick(store, reader, rule, [H0], t0, alerts)
    assert [(n.kind, n.rule) for n in first.notifications] == [("fired", rule)]
    fired = first.notifications[0]
    assert fired.severity == RULES_SEVERITY[rule]
    assert fired.observation.links, "every alert links to what is behind it"

    assert tick(store, reader, rule, [H0], t0 + pd.Timedelta(minutes=5), alerts).transitions == []
    still = tick(store, reader, rule, [h1], t0 + pd.Timedelta(minutes=30), alerts)
    assert still.notifications == [], "a second notification inside the window"
    reminder = tick(store, reader, rule, [h2], t0 + pd.Timedelta(minutes=65), alerts)
    assert [n.kind for n in reminder.notifications] == ["reminder"]
    resolved = tick(store, reader, rule, [h3], t0 + pd.Timedelta(minutes=130), alerts)
    assert [(n.kind, n.key) for n in resolved.notifications] == [("resolved", fired.key)]
    assert store.open_alerts() == []
    assert tick(store, reader, rule, [h3], t0 + pd.Timedelta(minutes=140), alerts).transitions == []
    store.close()


RULES_SEVERITY = {
    "error_rate": "critical", "latency_p95": "warning", "cost_spike": "critical", "budget_breach": "critical",
    "cache_hit_rate": "info", "feature_usage_shift": "info", "model_distribution_shift": "info",
    "quality_drop": "critical", "satisfaction_low": "warning", "week_over_week": "warning",
}


def test_pipeline_run_failure_fires_once_per_window_and_resolves_on_success(tmp_path: Path) -> None:
    from aiobs_pipeline.alerting.rules import run_failure_observation, run_success_observation

    alerts = settings()
    t0 = H0 + pd.Timedelta(minutes=5)
    with AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}") as store:
        first = store.apply([run_failure_observation(alerts, "hourly_job", "run-1", t0, "boom", "2026-03-10-11:00")],
                            now=t0)
        assert [(n.kind, n.key) for n in first.notifications] == [("fired", "pipeline_run_failure:job:hourly_job")]
        assert first.notifications[0].observation.links[0].target == "dagster run run-1"
        again = store.apply([run_failure_observation(alerts, "hourly_job", "run-2", t0 + 20 * MINUTE, "boom")],
                            now=t0 + 20 * MINUTE)
        assert again.notifications == []
        later = store.apply([run_failure_observation(alerts, "hourly_job", "run-3", t0 + 70 * MINUTE, "boom")],
                            now=t0 + 70 * MINUTE)
        assert [n.kind for n in later.notifications] == ["reminder"]
        ok = store.apply([run_success_observation(alerts, "hourly_job", "run-4", t0 + 80 * MINUTE)],
                         now=t0 + 80 * MINUTE)
        assert [n.kind for n in ok.notifications] == ["resolved"] and store.open_alerts() == []


# ---------------------------------------------------------------- rule specifics


def observations(reader: FrameReader, rule: str, hours: list[pd.Timestamp], alerts: AlertSettings | None = None,
                 now: pd.Timestamp | None = None) -> list[Observation]:
    results = evaluate_rules(reader, {rule: hours}, alerts or settings(), now or H0 + 2 * HOUR)
    return [o for r in results for o in r.observations]


def test_error_rate_counts_llm_spans_only_and_links_failed_traces() -> None:
    obs = observations(FrameReader(error_builder({H0: True})), "error_rate", [H0])
    assert len(obs) == 1
    assert obs[0].value == pytest.approx(0.20)  # 20 errors / 100 LLM spans; the failed tool span is not counted
    assert obs[0].details["top_errors"] == {"upstream 503": 20}
    traces = [link for link in obs[0].links if link.kind == "trace"]
    assert traces and traces[0].target == "aiobs trace show t-1012-0"


def test_error_rate_per_feature_scope() -> None:
    obs = observations(FrameReader(error_builder({H0: True})), "error_rate", [H0],
                       settings(error_rate={"scopes": ["total", "feature"]}))
    assert sorted(o.key for o in obs) == ["error_rate:feature:chat", "error_rate:feature:search",
                                          "error_rate:total:all"]


@pytest.mark.parametrize("rule, builder", [("error_rate", error_builder), ("latency_p95", latency_builder)])
def test_quiet_hour_below_min_count_has_no_verdict(rule: str, builder: Builder) -> None:
    tables = builder({H0: True})
    tables["spans"] = tables["spans"].head(19)  # 19 LLM spans, all bad, min_spans 20
    assert observations(FrameReader(tables), rule, [H0]) == []


def test_latency_p95_threshold() -> None:
    obs = observations(FrameReader(latency_builder({H0: True, H0 + HOUR: False})), "latency_p95",
                       [H0, H0 + HOUR])
    assert [(o.hour, o.status) for o in obs] == [(H0, "firing"), (H0 + HOUR, "ok")]
    assert obs[0].value == pytest.approx(8000.0)


def audit(rows: dict[pd.Timestamp, int | None]) -> pd.DataFrame:
    """ingest_audit: per hour one file with N spans; None = no files at all."""
    return pd.DataFrame([{"export_hour": h, "source_file": f"{h:%H}/native.jsonl", "spans_written": n,
                          "file_error": None} for h, n in rows.items() if n is not None])


def week_of(hour: pd.Timestamp, spans: int) -> dict[pd.Timestamp, int | None]:
    return {hour - DAY * d: spans for d in range(1, 8)}


def test_no_data_fires_for_a_due_hour_without_files_and_resolves_when_late_files_land(tmp_path: Path) -> None:
    alerts = settings()
    rows = {**week_of(H0, 200), H0: None}
    now = H0 + HOUR + pd.Timedelta(minutes=45)
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    first = store.apply(observations(FrameReader({"ingest_audit": audit(rows)}), "no_data", [H0], alerts, now),
                        now=now)
    assert [(n.key, n.severity) for n in first.notifications] == [(f"no_data:hour:{H0:%Y-%m-%dT%H}", "critical")]
    assert "No files landed" in first.notifications[0].observation.summary
    # re-checked on the next clock hour: same hour, same evidence -> nothing new
    again = store.apply(observations(FrameReader({"ingest_audit": audit(rows)}), "no_data", [H0], alerts,
                                     now + HOUR), now=now + HOUR)
    assert again.notifications == [] and again.transitions == []
    rows[H0] = 190  # the late files were ingested
    late = store.apply(observations(FrameReader({"ingest_audit": audit(rows)}), "no_data", [H0], alerts,
                                    now + 2 * HOUR), now=now + 2 * HOUR)
    assert [n.kind for n in late.notifications] == ["resolved"]
    store.close()


def test_no_data_low_volume_is_a_warning_and_not_due_hours_wait() -> None:
    rows = {**week_of(H0, 200), H0: 30}
    reader = FrameReader({"ingest_audit": audit(rows)})
    (obs,) = observations(reader, "no_data", [H0], now=H0 + HOUR + pd.Timedelta(minutes=31))
    assert (obs.status, obs.severity, obs.value) == ("firing", "warning", 30.0)
    assert obs.threshold == pytest.approx(40.0)  # 20% of the median 200
    # 20 minutes after the hour closed it is not due yet (30 min grace)
    result = evaluate_rules(reader, {"no_data": [H0]}, settings(), H0 + HOUR + pd.Timedelta(minutes=20))
    assert result[0].observations == [] and "not judged yet" in result[0].notes[0]


@pytest.mark.parametrize("baseline, days", [(10, 7), (200, 2)])
def test_no_data_needs_a_real_baseline(baseline: int, days: int) -> None:
    """A quiet hour (median below min_expected_spans) or too little history never fires."""
    rows = {H0 - DAY * d: baseline for d in range(1, days + 1)}
    rows[H0] = None
    assert observations(FrameReader({"ingest_audit": audit(rows)}), "no_data", [H0],
                        now=H0 + 3 * HOUR) == []


def test_cost_spike_statuses() -> None:
    frame = pd.DataFrame([
        {"hour": H0, "scope": "user", "subject": "u1", "spend_usd": 47.0, "baseline_usd": 0.5, "ratio": 94.0,
         "status": "critical"},
        {"hour": H0, "scope": "user", "subject": "u2", "spend_usd": 3.0, "baseline_usd": 1.6, "ratio": 1.9,
         "status": "warning"},
        {"hour": H0, "scope": "user", "subject": "u3", "spend_usd": 3.0, "baseline_usd": None, "ratio": None,
         "status": "insufficient_history"},
        {"hour": H0, "scope": "user", "subject": "u4", "spend_usd": 0.2, "baseline_usd": 0.1, "ratio": 2.0,
         "status": "below_min_spend"},
    ])
    obs = {o.subject: o for o in observations(FrameReader({"cost_anomalies": frame}), "cost_spike", [H0])}
    assert set(obs) == {"u1", "u2", "u4"}  # no verdict without history
    assert (obs["u1"].severity, obs["u2"].severity, obs["u4"].status) == ("critical", "warning", "ok")
    assert obs["u1"].summary.startswith("user u1: $47.00") and "94.0x" in obs["u1"].summary
    assert obs["u1"].links[0].label == "user u1"


def test_budget_breach_severity_by_scope() -> None:
    frame = pd.DataFrame([
        {"hour": H0, "scope": "user", "subject": "u1", "spend_usd": 7.2, "budget_usd": 5.0,
         "recommended_action": "rate_limit_user", "window": "day 2026-03-10 (UTC)", "first_breach": True},
        {"hour": H0, "scope": "total", "subject": "all", "spend_usd": 130.0, "budget_usd": 100.0,
         "recommended_action": "page_oncall", "window": "hour", "first_breach": True},
    ])
    obs = {o.scope: o for o in observations(FrameReader({"budget_breaches": frame}), "budget_breach", [H0])}
    assert (obs["user"].severity, obs["total"].severity) == ("warning", "critical")
    assert "rate_limit_user" in obs["user"].summary


def test_distribution_and_cache_rules_need_minimum_volume() -> None:
    quiet = {"hourly_costs": _mix_builder("feature")({H0: True})["hourly_costs"].assign(calls=2)}
    assert observations(FrameReader(quiet), "feature_usage_shift", [H0]) == []
    cache = cache_builder({H0: True})["hourly_costs"].assign(input_tokens=100, cached_input_tokens=5)
    assert observations(FrameReader({"hourly_costs": cache}), "cache_hit_rate", [H0]) == []


def test_feature_shift_reports_the_largest_movers() -> None:
    (obs,) = observations(FrameReader(_mix_builder("feature")({H0: True})), "feature_usage_shift", [H0])
    assert obs.value == pytest.approx(0.6)
    assert obs.details["top_changes"][0]["share_now"] in (pytest.approx(0.2), pytest.approx(0.8))


def test_quality_drop_levels_and_quiet_hours() -> None:
    tables = quality_builder({H0: True})
    (obs,) = observations(FrameReader(tables), "quality_drop", [H0])
    assert obs.severity == "critical" and obs.value == pytest.approx(1 / 3, rel=1e-3)
    mild = tables["hallucination_scores"].copy()
    mild.loc[mild["export_hour"] == H0, "trust_score"] = 0.78  # 13% drop
    (obs,) = observations(FrameReader({"hallucination_scores": mild}), "quality_drop", [H0])
    assert obs.severity == "warning"
    few = mild[(mild["export_hour"] != H0) | (mild.index % 10 == 0)]  # 4 responses in the hour
    assert observations(FrameReader({"hallucination_scores": few}), "quality_drop", [H0]) == []


def test_satisfaction_window_and_minimum() -> None:
    alerts = settings(satisfaction_low={"window_hours": 3})
    rows = [{"response_hour": H0 - HOUR * i, "satisfaction": 0.5} for i in range(3) for _ in range(8)]
    (obs,) = observations(FrameReader({"satisfaction_scores": pd.DataFrame(rows)}), "satisfaction_low", [H0],
                          alerts)
    assert obs.status == "firing" and obs.details["responses_with_feedback"] == 24
    assert observations(FrameReader({"satisfaction_scores": pd.DataFrame(rows[:19])}), "satisfaction_low",
                        [H0], alerts) == []


def test_week_over_week_on_satisfaction() -> None:
    rng = np.random.default_rng(3)
    rows = [{"response_hour": H0 - HOUR * int(i), "satisfaction": 0.8} for i in rng.integers(7 * 24, 14 * 24, 200)]
    rows += [{"response_hour": H0 - HOUR * int(i), "satisfaction": 0.6} for i in rng.integers(0, 7 * 24, 200)]
    frame = pd.DataFrame(rows)
    alerts = settings(week_over_week={"metrics": ["satisfaction"]})
    (obs,) = observations(FrameReader({"satisfaction_scores": frame}), "week_over_week", [H0], alerts)
    assert obs.key == "week_over_week:metric:satisfaction"
    assert obs.status == "firing" and obs.value == pytest.approx(0.25)
    recovered = pd.concat([frame, pd.DataFrame([{"response_hour": H0, "satisfaction": 1.0}] * 400)])
    (obs,) = observations(FrameReader({"satisfaction_scores": recovered}), "week_over_week", [H0], alerts)
    assert obs.status == "ok"


def test_absent_quality_tables_give_notes_not_alerts() -> None:
    results = evaluate_rules(FrameReader({}), {"quality_drop": [H0], "satisfaction_low": [H0],
                                              "week_over_week": [H0]}, settings(), H0 + HOUR)
    assert all(r.skipped and not r.observations for r in results)
    notes = " ".join(n for r in results for n in r.notes)
    assert "hallucination_scores does not exist yet" in notes and "satisfaction_scores does not exist yet" in notes


def test_renamed_score_column_is_reported() -> None:
    frame = quality_builder({H0: True})["hallucination_scores"].rename(columns={"trust_score": "score"})
    (result,) = evaluate_rules(FrameReader({"hallucination_scores": frame}), {"quality_drop": [H0]}, settings(),
                               H0 + HOUR)
    assert result.skipped and "no column(s) trust_score" in result.notes[0]
    alerts = settings(quality_scores={"score_column": "score"})
    assert observations(FrameReader({"hallucination_scores": frame}), "quality_drop", [H0], alerts)


def test_a_broken_rule_does_not_stop_the_others() -> None:
    spans = error_builder({H0: True})["spans"]
    bad_costs = pd.DataFrame({"hour": [H0], "scope": ["total"], "subject": ["all"], "spend_usd": ["lots"],
                              "baseline_usd": [1.0], "ratio": [2.0], "status": ["critical"]})
    results = evaluate_rules(FrameReader({"spans": spans, "cost_anomalies": bad_costs}),
                             {"error_rate": [H0], "cost_spike": [H0]}, settings(), H0 + HOUR)
    by_rule = {r.rule: r for r in results}
    assert by_rule["error_rate"].observations
    assert by_rule["cost_spike"].skipped and "evaluation failed: ValueError" in by_rule["cost_spike"].notes[0]


def test_disabled_rule_is_not_evaluated() -> None:
    (result,) = evaluate_rules(FrameReader(error_builder({H0: True})), {"error_rate": [H0]},
                               settings(error_rate={"enabled": False}), H0 + HOUR)
    assert result.skipped and result.observations == []


def test_expired_and_absent_subjects() -> None:
    from aiobs_pipeline.alerting.rules import OpenAlert

    stale = OpenAlert("error_rate:total:all", "error_rate", "total", "all", H0)
    fresh = OpenAlert("latency_p95:total:all", "latency_p95", "total", "all", H0 + 20 * HOUR)
    run = OpenAlert("pipeline_run_failure:job:hourly_job", "pipeline_run_failure", "job", "hourly_job", H0)
    out = expired([stale, fresh, run], settings(), H0 + 26 * HOUR)
    assert [(o.key, o.status) for o in out] == [("error_rate:total:all", "expired")]
    open_budget = OpenAlert("budget_breach:user:u1", "budget_breach", "user", "u1", H0)
    results = evaluate_rules(FrameReader(budget_builder({H0 + HOUR: True})), {"budget_breach": [H0 + HOUR]},
                             settings(), H0 + 2 * HOUR)
    (ok,) = absent_subjects_ok(results, [open_budget])
    assert (ok.key, ok.status, ok.hour) == ("budget_breach:user:u1", "ok", H0 + HOUR)
    # the subject still listed in the newest judged hour is not resolved
    listed = OpenAlert("budget_breach:total:all", "budget_breach", "total", "all", H0)
    assert absent_subjects_ok(results, [listed]) == []


# ---------------------------------------------------------------- keys, aggregation, catalogue


def test_dedupe_keys_are_stable_and_bounded() -> None:
    assert alert_key("error_rate", "feature", "chat") == "error_rate:feature:chat"
    a = observations(FrameReader(error_builder({H0: True})), "error_rate", [H0])
    b = observations(FrameReader(error_builder({H0: True})), "error_rate", [H0])
    assert [o.key for o in a] == [o.key for o in b] == ["error_rate:total:all"]
    long_subject = "u" * 1000
    key = alert_key("cost_spike", "user", long_subject)
    assert len(key) <= 300 and key == alert_key("cost_spike", "user", long_subject)
    assert key != alert_key("cost_spike", "user", long_subject[:-1] + "v")


def test_observation_round_trips_through_plain_data() -> None:
    (obs,) = observations(FrameReader(error_builder({H0: True})), "error_rate", [H0])
    assert Observation.from_dict(obs.to_dict()) == Observation.from_dict(Observation.from_dict(obs.to_dict())
                                                                          .to_dict())
    assert Observation.from_dict(obs.to_dict()).key == obs.key


def test_similar_alerts_aggregate_into_one_message(tmp_path: Path) -> None:
    frame = pd.DataFrame([{"hour": H0, "scope": "user", "subject": f"u{i}", "spend_usd": 40.0, "baseline_usd": 1.0,
                           "ratio": 40.0, "status": "critical"} for i in range(12)]
                         + [{"hour": H0, "scope": "total", "subject": "all", "spend_usd": 480.0,
                             "baseline_usd": 100.0, "ratio": 4.8, "status": "warning"}])
    alerts = settings()
    with AlertStore(f"sqlite:///{tmp_path / 'a.sqlite'}") as store:
        applied = store.apply(observations(FrameReader({"cost_anomalies": frame}), "cost_spike", [H0], alerts),
                              now=H0 + HOUR)
    messages = build_messages(applied.notifications, alerts, H0 + HOUR)
    assert [(m.rule, m.severity, len(m.items)) for m in messages] == [("cost_spike", "critical", 12),
                                                                       ("cost_spike", "warning", 1)]
    assert messages[0].headline == "[CRITICAL] Cost spike: 12 alerts firing"
    slack = SlackSink(alerts.slack, {}).payload(messages[0], max_items=10)
    section = slack["blocks"][1]["text"]["text"]
    assert section.count("• user u") == 10 and "…and 2 more" in section


def test_catalogue_triggers_and_runbooks() -> None:
    alerts = AlertSettings()
    for rule_id, spec in RULES.items():
        assert isinstance(alerts.rule(rule_id).enabled, bool)
        if spec.evaluate is not None:
            assert rule_triggers(rule_id, alerts), rule_id
        runbook = RUNBOOKS / f"{rule_id}.md"
        assert runbook.is_file(), f"no runbook for {rule_id}"
        text = runbook.read_text()
        for section in ("## What this means", "## Immediate actions", "## Investigation", "## Escalation"):
            assert section in text, f"{runbook.name} lacks {section!r}"
    docs = (RUNBOOKS.parent / "alerts.md").read_text()
    missing = [r for r in RULES if f"`{r}`" not in docs]
    assert not missing, f"docs/alerts.md does not mention {missing}"
    settings_doc = set(re.findall(r"`alerts\.([a-z_]+)", docs))
    assert {"dedupe_window_minutes", "state_url", "routes"} <= settings_doc


def test_settings_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match="quality_drop.warning_drop"):
        AlertSettings.model_validate({"quality_drop": {"warning_drop": 0.3, "critical_drop": 0.2}})
    with pytest.raises(ValueError, match="extra"):
        AlertSettings.model_validate({"error_rate": {"treshold": 0.1}})
    assert timedelta(minutes=AlertSettings().dedupe_window_minutes) == timedelta(hours=1)
