"""Satisfaction scoring: the brief's formula with exact values, votes, weights, metrics with targets and
insufficient data, week-over-week change, and the settings' validation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from aiobs_pipeline.feedback import (
    FeedbackSettings,
    satisfaction_metrics,
    satisfaction_scores,
    week_over_week,
)
from aiobs_pipeline.feedback.satisfaction import METRIC_COLUMNS, SCORE_COLUMNS
from aiobs_pipeline.schema import FEEDBACK_COLUMNS, conform


def events(*specs: tuple, start: str = "2026-10-01T05:00:00Z", **columns: object) -> pd.DataFrame:
    """Canonical events from (span_id, event_type[, value]) tuples, one second apart, in the given order."""
    rows = []
    for i, spec in enumerate(specs):
        span_id, event_type, *rest = spec
        rows.append({
            "event_id": f"e{i}", "span_id": span_id, "trace_id": f"t-{span_id}", "user_id": "u1",
            "session_id": "s1", "event_type": event_type, "value": rest[0] if rest else None,
            "timestamp": pd.Timestamp(start) + pd.Timedelta(seconds=i), "source_format": "native",
            "source_file": "f.jsonl", "source_line": i + 1, "export_hour": pd.Timestamp(start).floor("h"),
            "schema_version": 1, **columns,
        })
    return conform(pd.DataFrame(rows), FEEDBACK_COLUMNS)


def score_of(*specs: tuple, settings: FeedbackSettings | None = None) -> float:
    scores = satisfaction_scores(events(*specs), settings)
    assert len(scores) == 1
    return float(scores["satisfaction"].iloc[0])


# ------------------------------------------------------------------------------------------------ formula
@pytest.mark.parametrize(("specs", "expected"), [
    ([("r", "thumbs_up"), ("r", "copied")], (1.0 + 0.5 + 2) / 4),  # 0.875
    ([("r", "thumbs_down"), ("r", "regenerated"), ("r", "session_abandoned")], 0.0),  # -2.2 -> clipped
    ([("r", "rating", 5)], (1.0 + 2) / 4),  # 0.75
    ([("r", "rating", 1)], (-1.0 + 2) / 4),  # 0.25
    ([("r", "rating", 3)], 0.5),
    ([("r", "edited")], (-0.2 + 2) / 4),  # 0.45
    ([("r", "thumbs_up")], 0.75),
    ([("r", "copied")], 0.625),
    ([("r", "session_abandoned")], (-0.7 + 2) / 4),
    ([("r", "regenerated")], 0.375),
    ([("r", "hallucination_report")], 0.5),  # flagged, not scored (weight 0 by default)
    ([("r", "thumbs_up"), ("r", "copied"), ("r", "copied")], 0.875),  # an implicit type counts once
])
def test_formula_exact_values(specs: list[tuple], expected: float) -> None:
    assert score_of(*specs) == pytest.approx(expected)


def test_latest_vote_wins_over_earlier_thumbs_and_ratings() -> None:
    # Up, then down: the user changed their mind; -1 + 0.5 copied.
    assert score_of(("r", "thumbs_up"), ("r", "copied"), ("r", "thumbs_down")) == pytest.approx((-0.5 + 2) / 4)
    # A thumb, then a rating of 4: the rating is the vote ((4 - 3) / 2 = 0.5), not both.
    scores = satisfaction_scores(events(("r", "thumbs_down"), ("r", "rating", 4)))
    row = scores.iloc[0]
    assert (row["vote"], row["rating"], row["thumbs_down"]) == ("rating", 4.0, False)
    assert row["raw_score"] == pytest.approx(0.5) and row["satisfaction"] == pytest.approx(0.625)


def test_per_response_table_flags_and_counts() -> None:
    scores = satisfaction_scores(events(
        ("a", "thumbs_up"), ("b", "hallucination_report"), ("b", "thumbs_down"), ("a", "copied"),
        ("c", "session_abandoned"), ("b", "regenerated")))
    assert list(scores.columns) == list(SCORE_COLUMNS)
    by_span = scores.set_index("span_id")
    assert list(by_span.index) == ["a", "b", "c"]
    assert by_span.loc["a", "events"] == 2 and bool(by_span.loc["a", "thumbs_up"]) and bool(by_span.loc["a", "copied"])
    b = by_span.loc["b"]
    assert bool(b["hallucination_reported"]) and bool(b["thumbs_down"]) and bool(b["regenerated"])
    assert b["first_event_at"] == pd.Timestamp("2026-10-01T05:00:01Z")
    assert b["last_event_at"] == pd.Timestamp("2026-10-01T05:00:05Z")
    assert b["raw_score"] == pytest.approx(-1.5) and b["satisfaction"] == pytest.approx(0.125)
    assert by_span.loc["c", "vote"] is None and math.isnan(by_span.loc["c", "rating"])


def test_trace_level_events_form_one_response_per_trace() -> None:
    frame = events(("x", "thumbs_up"), ("x", "copied"))
    frame["span_id"] = None
    scores = satisfaction_scores(frame)
    assert len(scores) == 1 and scores.iloc[0]["span_id"] is None and scores.iloc[0]["trace_id"] == "t-x"
    assert scores.iloc[0]["satisfaction"] == pytest.approx(0.875)


def test_weights_are_settings() -> None:
    settings = FeedbackSettings(weights={"hallucination_report": -1.0, "copied": 1.0})
    assert score_of(("r", "hallucination_report"), settings=settings) == pytest.approx(0.25)
    assert score_of(("r", "thumbs_up"), ("r", "copied"), settings=settings) == pytest.approx(1.0)  # 3 -> clipped


def test_empty_events_give_an_empty_table() -> None:
    scores = satisfaction_scores(events())
    assert scores.empty and list(scores.columns) == list(SCORE_COLUMNS)


# ------------------------------------------------------------------------------------------------ metrics
def per_response(n_up: int, n_down: int, n_regen: int, feature: str = "chat", hour: str = "2026-10-01T05:00Z"
                 ) -> pd.DataFrame:
    """n_up thumbs-up responses (+copy), n_down thumbs-down responses, n_regen regenerated-only responses."""
    specs = [(f"{feature}-up{i}", "thumbs_up") for i in range(n_up)]
    specs += [(f"{feature}-up{i}", "copied") for i in range(n_up)]
    specs += [(f"{feature}-down{i}", "thumbs_down") for i in range(n_down)]
    specs += [(f"{feature}-regen{i}", "regenerated") for i in range(n_regen)]
    scores = satisfaction_scores(events(*specs, start=hour))
    scores["feature"] = feature
    scores["response_hour"] = pd.Timestamp(hour)
    return scores


def test_metrics_rates_targets_and_statuses() -> None:
    data = pd.concat([per_response(16, 2, 2, "chat"), per_response(10, 6, 4, "search")], ignore_index=True)
    metrics = satisfaction_metrics(data, ["feature"]).set_index("feature")
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    chat, search = metrics.loc["chat"], metrics.loc["search"]
    assert chat["responses_with_feedback"] == 20 and chat["events"] == 36
    assert chat["thumbs_up_rate"] == pytest.approx(0.8) and chat["thumbs_down_rate"] == pytest.approx(0.1)
    assert chat["regeneration_rate"] == pytest.approx(0.1)
    # (16 x 0.875 + 2 x 0.25 + 2 x 0.375) / 20
    assert chat["avg_satisfaction"] == pytest.approx((16 * 0.875 + 2 * 0.25 + 2 * 0.375) / 20)
    assert chat["thumbs_up_rate_status"] == "met" and chat["thumbs_down_rate_status"] == "met"
    # 10% is not below the 10% target: the target is strict.
    assert chat["regeneration_rate_status"] == "missed"
    assert chat["avg_satisfaction_status"] == "met"
    assert search["thumbs_up_rate"] == pytest.approx(0.5) and search["thumbs_up_rate_status"] == "missed"
    assert search["thumbs_down_rate_status"] == "missed" and search["regeneration_rate_status"] == "missed"
    assert search["avg_satisfaction"] == pytest.approx((10 * 0.875 + 6 * 0.25 + 4 * 0.375) / 20)
    assert search["avg_satisfaction_status"] == "missed"


def test_metrics_below_the_minimum_are_insufficient_data() -> None:
    data = per_response(15, 1, 0)
    metrics = satisfaction_metrics(data, ["feature", "response_hour"])
    row = metrics.iloc[0]
    assert row["responses_with_feedback"] == 16 and row["thumbs_up_rate"] == pytest.approx(15 / 16)
    assert {row[f"{m}_status"] for m in ("thumbs_up_rate", "thumbs_down_rate", "regeneration_rate",
                                         "avg_satisfaction")} == {"insufficient_data"}
    judged = satisfaction_metrics(data, ["feature"], FeedbackSettings(min_responses=16)).iloc[0]
    assert judged["thumbs_up_rate_status"] == "met" and judged["avg_satisfaction_status"] == "met"


def test_metrics_overall_null_keys_and_errors() -> None:
    data = per_response(3, 1, 0)
    data.loc[0, "feature"] = None
    overall = satisfaction_metrics(data)
    assert len(overall) == 1 and overall.iloc[0]["responses_with_feedback"] == 4
    grouped = satisfaction_metrics(data, ["feature"]).set_index("feature")
    assert grouped.loc["(none)", "responses_with_feedback"] == 1
    empty = satisfaction_metrics(data.iloc[0:0])
    assert empty.iloc[0]["responses_with_feedback"] == 0 and empty.iloc[0]["avg_satisfaction_status"] == "insufficient_data"
    with pytest.raises(ValueError, match="prompt_version"):
        satisfaction_metrics(data, ["prompt_version"])


def test_week_over_week_change() -> None:
    settings = FeedbackSettings(min_responses=5)
    this_week = satisfaction_metrics(pd.concat([per_response(8, 2, 0, "chat"), per_response(2, 0, 0, "search")]),
                                     ["feature"], settings)
    last_week = satisfaction_metrics(pd.concat([per_response(5, 5, 0, "chat"), per_response(1, 0, 0, "docs")]),
                                     ["feature"], settings)
    wow = week_over_week(this_week, last_week).set_index("feature")
    assert list(wow.index) == ["chat", "docs", "search"]
    chat = wow.loc["chat"]
    assert chat["thumbs_up_rate"] == pytest.approx(0.8) and chat["thumbs_up_rate_last_week"] == pytest.approx(0.5)
    assert chat["thumbs_up_rate_change"] == pytest.approx(0.3)
    assert chat["avg_satisfaction_change"] == pytest.approx(
        (8 * 0.875 + 2 * 0.25) / 10 - (5 * 0.875 + 5 * 0.25) / 10)
    assert chat["responses_with_feedback_change"] == 0 and bool(chat["comparable"])
    assert math.isnan(wow.loc["search", "thumbs_up_rate_change"]) and not wow.loc["search", "comparable"]
    assert math.isnan(wow.loc["docs", "avg_satisfaction"])
    overall = week_over_week(satisfaction_metrics(per_response(8, 2, 0)), satisfaction_metrics(per_response(5, 5, 0)))
    assert len(overall) == 1 and overall.iloc[0]["thumbs_down_rate_change"] == pytest.approx(-0.3)
    assert not overall.iloc[0]["comparable"]  # 10 responses each: below the default minimum of 20


# ------------------------------------------------------------------------------------------------ settings
def test_settings_defaults_follow_the_brief_and_reject_bad_values() -> None:
    settings = FeedbackSettings()
    assert settings.abandon_threshold_seconds == 30 and settings.min_responses == 20
    assert (settings.thumbs_up_rate_target, settings.thumbs_down_rate_target, settings.regeneration_rate_target,
            settings.satisfaction_target) == (0.70, 0.15, 0.10, 0.70)
    w = settings.weights
    assert (w.thumbs_up, w.thumbs_down, w.copied, w.regenerated, w.edited, w.session_abandoned) == \
        (1.0, -1.0, 0.5, -0.5, -0.2, -0.7)
    with pytest.raises(ValidationError, match="abandon_threshold_seconds"):
        FeedbackSettings(abandon_threshold_seconds=0)
    with pytest.raises(ValidationError, match="unknown_setting"):
        FeedbackSettings(unknown_setting=1)
    with pytest.raises(ValidationError, match="thumbs_sideways"):
        FeedbackSettings(weights={"thumbs_sideways": 1})
    assert FeedbackSettings(ignored_sources=[" EVAL ", ""]).ignored_sources == ["eval"]
