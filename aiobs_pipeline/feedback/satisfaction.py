"""Satisfaction: a 0-1 score per response from its feedback events, and the satisfaction metrics per group.

Owns the product brief's formula and the metric definitions docs/feedback.md repeats:
    raw = vote + 0.5 copied - 0.5 regenerated - 0.2 edited - 0.7 abandoned (+ hallucination_report weight)
    satisfaction = clip((raw + 2) / 4, 0, 1)
where the vote is the response's latest thumbs up (+1), thumbs down (-1) or rating r ((r - 3) / 2), and each
implicit event type counts once per response. Weights are settings. It must not read files or spans:
`events.join_to_responses` attaches response attributes first when metrics are wanted per feature or hour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from aiobs_pipeline.feedback.events import JOIN_COLUMNS, RESPONSE_ATTRIBUTES
from aiobs_pipeline.feedback.settings import FeedbackSettings
from aiobs_pipeline.schema import FEEDBACK_EVENT_TYPES

NONE_LABEL = "(none)"  # the same label the cost tables give a null group key
VOTE_TYPES: tuple[str, ...] = ("thumbs_up", "thumbs_down", "rating")
IMPLICIT_TYPES: tuple[str, ...] = ("copied", "regenerated", "edited", "session_abandoned", "hallucination_report")
RATING_NEUTRAL, RATING_HALF_RANGE = 3.0, 2.0
SCORE_OFFSET, SCORE_RANGE = 2.0, 4.0
# Carried from joined events onto each response (first non-null value).
CARRIED_COLUMNS: tuple[str, ...] = (*RESPONSE_ATTRIBUTES, "response_start_time", "response_hour", "response_found")

SCORE_COLUMNS: dict[str, str] = {
    "span_id": "object", "trace_id": "object", "user_id": "object", "session_id": "object",
    "events": "int64", "first_event_at": "datetime64[ns, UTC]", "last_event_at": "datetime64[ns, UTC]",
    "vote": "object", "rating": "float64", "thumbs_up": "bool", "thumbs_down": "bool", "copied": "bool",
    "regenerated": "bool", "edited": "bool", "session_abandoned": "bool", "hallucination_reported": "bool",
    "raw_score": "float64", "satisfaction": "float64",
}

# metric -> (count column it is computed from, target setting, "above" or "below" the target is met)
RATE_METRICS: dict[str, tuple[str, str, str]] = {
    "thumbs_up_rate": ("thumbs_up_responses", "thumbs_up_rate_target", "above"),
    "thumbs_down_rate": ("thumbs_down_responses", "thumbs_down_rate_target", "below"),
    "regeneration_rate": ("regenerated_responses", "regeneration_rate_target", "below"),
}
JUDGED_METRICS: tuple[str, ...] = (*RATE_METRICS, "avg_satisfaction")
COUNT_COLUMNS: tuple[str, ...] = ("responses_with_feedback", "events", "thumbs_up_responses",
                                  "thumbs_down_responses", "regenerated_responses", "hallucination_reports")
METRIC_COLUMNS: tuple[str, ...] = (*COUNT_COLUMNS, *JUDGED_METRICS, "hallucination_report_rate",
                                   *(f"{m}_status" for m in JUDGED_METRICS))
STATUSES: tuple[str, ...] = ("met", "missed", "insufficient_data")
WOW_METRICS: tuple[str, ...] = ("responses_with_feedback", *JUDGED_METRICS)


def _empty_scores(extra: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SCORE_COLUMNS.items()})
    for column in extra:
        frame[column] = pd.Series(dtype="object")
    return frame


def satisfaction_scores(events: pd.DataFrame, settings: FeedbackSettings | None = None) -> pd.DataFrame:
    """One row per response with feedback: event flags, the vote, raw score and satisfaction (0-1).

    The response is `response_span_id` when the events went through `join_to_responses` and it was found,
    else the event's `span_id`; trace-level events without either form one response per trace.
    """
    settings = settings or FeedbackSettings()
    carried = [c for c in CARRIED_COLUMNS if c in events.columns]
    if events.empty:
        return _empty_scores(carried)
    e = events.reset_index(drop=True).copy()
    span = e["span_id"]
    if "response_span_id" in e.columns:
        span = e["response_span_id"].where(e["response_span_id"].notna(), span)
    e["_span"] = span.where(span.notna(), None)
    e["_key"] = np.where(e["_span"].notna(), "span:" + e["_span"].astype(str), "trace:" + e["trace_id"].astype(str))
    e["timestamp"] = pd.to_datetime(e["timestamp"], utc=True)
    e = e.sort_values(["timestamp", "event_id"], kind="stable")

    grouped = e.groupby("_key", sort=True)
    out = pd.DataFrame(index=grouped.size().index)
    out["span_id"] = grouped["_span"].first()
    for column in ("trace_id", "user_id", "session_id", *carried):
        out[column] = grouped[column].first()
    out["events"] = grouped.size().astype("int64")
    out["first_event_at"] = grouped["timestamp"].min()
    out["last_event_at"] = grouped["timestamp"].max()

    votes = e[e["event_type"].isin(VOTE_TYPES)].groupby("_key").tail(1).set_index("_key")
    out["vote"] = votes["event_type"].reindex(out.index)
    ratings = e[e["event_type"] == "rating"].groupby("_key")["value"].last()
    out["rating"] = ratings.reindex(out.index).astype("float64")
    pairs = e[["_key", "event_type"]].drop_duplicates()
    present = pd.DataFrame({kind: out.index.isin(pairs.loc[pairs["event_type"] == kind, "_key"])
                            for kind in FEEDBACK_EVENT_TYPES}, index=out.index)
    out["thumbs_up"] = out["vote"] == "thumbs_up"
    out["thumbs_down"] = out["vote"] == "thumbs_down"
    for kind in ("copied", "regenerated", "edited", "session_abandoned"):
        out[kind] = present[kind]
    out["hallucination_reported"] = present["hallucination_report"]

    w = settings.weights
    vote_rating = (votes["value"].reindex(out.index) - RATING_NEUTRAL) / RATING_HALF_RANGE
    vote_score = np.select(
        [out["vote"] == "thumbs_up", out["vote"] == "thumbs_down", out["vote"] == "rating"],
        [w.thumbs_up, w.thumbs_down, vote_rating], default=0.0)
    implicit = sum(present[kind].astype(float) * getattr(w, kind) for kind in IMPLICIT_TYPES)
    out["raw_score"] = (vote_score + implicit).astype("float64")
    out["satisfaction"] = ((out["raw_score"] + SCORE_OFFSET) / SCORE_RANGE).clip(0.0, 1.0)
    out["vote"] = out["vote"].astype(object).where(out["vote"].notna(), None)
    ordered = [*SCORE_COLUMNS, *carried]
    return out.reset_index(drop=True)[ordered]


def _status(value: pd.Series, target: float, direction: str, judged: pd.Series) -> pd.Series:
    met = value > target if direction == "above" else value < target
    status = np.where(met, "met", "missed")
    return pd.Series(np.where(judged & value.notna(), status, "insufficient_data"), index=value.index, dtype=object)


def satisfaction_metrics(per_response: pd.DataFrame, group_by: Sequence[str] = (),
                         settings: FeedbackSettings | None = None) -> pd.DataFrame:
    """Satisfaction metrics per group (e.g. response_hour, feature, model, prompt_version) with target status.

    Rates divide responses by responses with any feedback; a group is judged only with at least
    `settings.min_responses` responses with feedback, else every status is "insufficient_data".
    """
    settings = settings or FeedbackSettings()
    keys = list(group_by)
    missing = [k for k in keys if k not in per_response.columns]
    if missing:
        raise ValueError(f"satisfaction_metrics: group_by columns {missing} are not in the per-response table "
                         f"(columns: {', '.join(per_response.columns)}); join events to responses first "
                         f"for {', '.join(c for c in JOIN_COLUMNS if c in missing) or 'them'}")
    frame = per_response.copy()
    for key in keys:
        if frame[key].dtype == object:
            frame[key] = frame[key].where(frame[key].notna() & (frame[key].astype(str).str.strip() != ""),
                                          NONE_LABEL)
    frame["_one"] = 1
    aggregations = {
        "responses_with_feedback": ("_one", "sum"),
        "events": ("events", "sum"),
        "thumbs_up_responses": ("thumbs_up", "sum"),
        "thumbs_down_responses": ("thumbs_down", "sum"),
        "regenerated_responses": ("regenerated", "sum"),
        "hallucination_reports": ("hallucination_reported", "sum"),
        "avg_satisfaction": ("satisfaction", "mean"),
    }
    if keys:
        out = frame.groupby(keys, dropna=False, sort=True).agg(**aggregations).reset_index()
    else:
        row = {name: frame[col].agg(how) if len(frame) else (np.nan if how == "mean" else 0)
               for name, (col, how) in aggregations.items()}
        out = pd.DataFrame([row])
    for column in COUNT_COLUMNS:
        out[column] = out[column].astype("int64")
    denominator = out["responses_with_feedback"].where(out["responses_with_feedback"] > 0)
    for metric, (count, _, _) in RATE_METRICS.items():
        out[metric] = out[count] / denominator
    out["hallucination_report_rate"] = out["hallucination_reports"] / denominator
    out["avg_satisfaction"] = out["avg_satisfaction"].astype("float64")
    judged = out["responses_with_feedback"] >= settings.min_responses
    for metric, (_, target, direction) in RATE_METRICS.items():
        out[f"{metric}_status"] = _status(out[metric], getattr(settings, target), direction, judged)
    out["avg_satisfaction_status"] = _status(out["avg_satisfaction"], settings.satisfaction_target, "above", judged)
    return out[[*keys, *METRIC_COLUMNS]]


def week_over_week(metrics_this_week: pd.DataFrame, metrics_last_week: pd.DataFrame,
                   keys: Sequence[str] | None = None) -> pd.DataFrame:
    """This week's metrics next to last week's, with the change (this - last) per metric and group.

    Groups present in one week only get null changes; `comparable` is True when both weeks were judged
    (neither had insufficient data). Rate changes are fractions: x100 gives percentage points.
    """
    if keys is None:
        keys = [c for c in metrics_this_week.columns if c in metrics_last_week.columns and c not in METRIC_COLUMNS]
    keys = list(keys)
    wanted = [*keys, *WOW_METRICS, "avg_satisfaction_status"]
    this = metrics_this_week[wanted]
    last = metrics_last_week[wanted]
    if keys:
        merged = this.merge(last, on=keys, how="outer", suffixes=("", "_last_week"), sort=True)
    else:
        merged = this.merge(last, how="cross", suffixes=("", "_last_week"))
    out = merged[keys].copy()
    for metric in WOW_METRICS:
        out[metric] = merged[metric]
        out[f"{metric}_last_week"] = merged[f"{metric}_last_week"]
        out[f"{metric}_change"] = (merged[metric].astype("float64") - merged[f"{metric}_last_week"].astype("float64"))
    judged_now = merged["avg_satisfaction_status"].isin(("met", "missed"))
    judged_before = merged["avg_satisfaction_status_last_week"].isin(("met", "missed"))
    out["comparable"] = judged_now & judged_before
    return out.reset_index(drop=True)
