"""User feedback events for generated responses: light normal feedback, and waves on degraded answers.

Owns the feedback event layout (written to FEEDBACK_ROOT/YYYY/MM/DD/HH/feedback.jsonl by the runner, in the
hour folder of each event's own timestamp, which may be hours after the response) and how users react:
mostly thumbs up and copies on ordinary answers; thumbs down, regenerations and hallucination reports on
answers an incident degraded; a retry after a failed call. It must not read or write trace files.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

from aiobs_pipeline.generate.scenario import derive_seed
from aiobs_pipeline.generate.traces import FEEDBACK_SHARE, NS, Trace
from aiobs_pipeline.generate.writers import iso_z_ms

EVENT_TYPES = ("thumbs_up", "thumbs_down", "rating", "hallucination_report", "regenerated", "edited", "copied",
               "session_abandoned")
THUMBS_DOWN_REASONS = ("incorrect_information", "not_helpful", "too_verbose", "misunderstood_question", "other")
NEGATIVE_TYPES = frozenset({"thumbs_down", "hallucination_report", "regenerated", "session_abandoned"})
DEGRADED_FEEDBACK_SHARE = 0.7
FAILED_RETRY_SHARE = 0.3
DOWN_COMMENTS = {
    "incorrect_information": ("That's not what the docs say.", "Wrong numbers.", "This is incorrect."),
    "not_helpful": ("Didn't answer my question.", "Too generic."),
    "too_verbose": ("Way too long.",),
    "misunderstood_question": ("I asked about something else.",),
    "other": ("",),
}
HALLUCINATION_COMMENTS = {
    "bad_prompt_version": ("The cited source does not exist.", "It cites an article I can't find.",
                           "Citation points to a document that wasn't in the results."),
    "model_change": ("The refund period it states is wrong.", "It made up the limits.",
                     "These numbers contradict the help center."),
}


def _event(rng: random.Random, trace: Trace, at_ns: int, event_type: str, **fields: Any) -> dict[str, Any]:
    response = trace.response
    assert response is not None
    event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "span_id": response.span_id,
        "trace_id": trace.trace_id,
        "user_id": trace.user_id,
        "session_id": trace.session_id,
        "event_type": event_type,
        "value": None,
        "reason": None,
        "comment": None,
        "original_text": None,
        "edited_text": None,
        "duration_seconds": None,
        "timestamp": iso_z_ms(at_ns),
        "source": "app",
    }
    event.update(fields)
    return event


def _delay_ns(rng: random.Random) -> int:
    """Seconds to minutes after the answer for most events; some come hours later."""
    if rng.random() < 0.12:
        seconds = rng.uniform(1800, 6 * 3600)
    else:
        seconds = min(rng.lognormvariate(3.0, 1.0), 1800.0)
    return int(seconds * NS)


def _edit(text: str, rng: random.Random) -> str:
    body = text.split("\nConfidence:")[0]
    return rng.choice((f"{body} Thanks for reaching out!", body.replace("[", "(").replace("]", ")"),
                       body.split(". ")[0].rstrip(".") + "."))


def events_for_trace(trace: Trace, rng: random.Random) -> list[dict[str, Any]]:
    """Feedback events on one trace's answer (none for most answers, none for automated loop calls)."""
    response = trace.response
    if response is None or trace.incident == "infinite_loop":
        return []
    t = response.end_ns + _delay_ns(rng)
    if response.status == "error":
        return [_event(rng, trace, t, "regenerated")] if rng.random() < FAILED_RETRY_SHARE else []
    answer = trace.answer or ""
    if trace.degraded:
        if rng.random() >= DEGRADED_FEEDBACK_SHARE:
            return []
        positive = rng.random() < 0.12
    else:
        if rng.random() >= FEEDBACK_SHARE:
            return []
        positive = rng.random() < 0.92
    events: list[dict[str, Any]] = []
    if positive:
        choice = rng.choices(("thumbs_up", "copied", "rating"), weights=(0.72, 0.2, 0.08))[0]
        if choice == "rating":
            events.append(_event(rng, trace, t, "rating", value=rng.choice((4, 5, 5))))
        else:
            events.append(_event(rng, trace, t, choice))
            if choice == "thumbs_up" and rng.random() < 0.7:
                events.append(_event(rng, trace, t + int(rng.uniform(1, 20) * NS), "copied"))
        return events
    if trace.degraded:
        kind = rng.choices(("thumbs_down", "regenerated", "hallucination_report"), weights=(0.5, 0.3, 0.2))[0]
        if kind == "thumbs_down":
            reason = rng.choices(THUMBS_DOWN_REASONS, weights=(0.7, 0.15, 0.0, 0.1, 0.05))[0]
            events.append(_event(rng, trace, t, "thumbs_down", reason=reason,
                                 comment=rng.choice(DOWN_COMMENTS[reason]) or None))
        else:
            events.append(_event(rng, trace, t, kind))
        if kind != "hallucination_report" and rng.random() < 0.25:
            kind = "hallucination_report"
            t += int(rng.uniform(5, 120) * NS)
        if kind == "hallucination_report":
            events.append(_event(rng, trace, t, "hallucination_report",
                                 comment=rng.choice(HALLUCINATION_COMMENTS[trace.degraded])))
        return events
    kind = rng.choices(("thumbs_down", "regenerated", "edited", "rating", "session_abandoned"),
                       weights=(0.45, 0.25, 0.15, 0.08, 0.07))[0]
    if kind == "thumbs_down":
        reason = rng.choices(THUMBS_DOWN_REASONS, weights=(0.35, 0.3, 0.15, 0.15, 0.05))[0]
        events.append(_event(rng, trace, t, "thumbs_down", reason=reason,
                             comment=rng.choice(DOWN_COMMENTS[reason]) if rng.random() < 0.4 else None))
    elif kind == "edited":
        events.append(_event(rng, trace, t, "edited", original_text=answer, edited_text=_edit(answer, rng)))
    elif kind == "rating":
        events.append(_event(rng, trace, t, "rating", value=rng.choice((1, 2, 2, 3))))
    elif kind == "session_abandoned":
        events.append(_event(rng, trace, response.end_ns + int(rng.uniform(5, 28) * NS), "session_abandoned",
                             duration_seconds=round(rng.uniform(5, 28), 1)))
    else:
        events.append(_event(rng, trace, t, "regenerated"))
    return events


def feedback_for_hour(seed: int, hour: datetime, traces: list[Trace]) -> list[dict[str, Any]]:
    """All feedback events on the answers of one export hour (their timestamps may fall in later hours)."""
    rng = random.Random(derive_seed(seed, "feedback", hour.isoformat()))
    events: list[dict[str, Any]] = []
    for trace in traces:
        events.extend(events_for_trace(trace, rng))
    return events
