"""From observations to delivered notifications: apply them to the alert state, aggregate what must be told
into messages, route each message by severity and deliver it, recording every outcome.

Routing (settings `alerts.routes`, the product brief's defaults): critical -> PagerDuty + Slack #incidents
(+ webhook); warning -> Slack #ai-monitoring (+ webhook); info -> the log only. The log sink (Dagster log +
`alert_events`) receives everything.

Aggregation: the notifications of one delivery run are grouped by (rule, state, severity) into one message
listing every alert of the group ("Cost spike: 3 alerts firing"), so a hundred users over budget make one
Slack post, not a hundred. PagerDuty gets one incident per rule (dedup_key `<source>:<rule>`): each critical
group re-triggers it (PagerDuty deduplicates), and it is resolved when the last paged alert of the rule
resolves or drops below critical.

Nothing here raises because a sink failed: failures are retried inside the sink, then recorded
(`alert_events`, log) and counted in the report. Only a broken state store stops a run - without it, dedupe
cannot be guaranteed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from aiobs_pipeline.alerting.rules import RULES, Links, Observation, severity_rank
from aiobs_pipeline.alerting.settings import AlertSettings
from aiobs_pipeline.alerting.sinks import AlertItem, DeliveryResult, HttpPoster, LogSink, Message, Sinks
from aiobs_pipeline.alerting.state import AlertStore, Transition

logger = logging.getLogger(__name__)


def item_of(transition: Transition) -> AlertItem:
    """A transition as an item of a message."""
    obs = transition.observation
    return AlertItem(
        key=transition.key, scope=obs.scope, subject=obs.subject, event=transition.kind,
        severity=transition.severity, hour=obs.hour.isoformat(), summary=obs.summary, value=obs.value,
        threshold=obs.threshold, details=dict(obs.details), links=obs.links, transient=transition.transient,
        paged=transition.paged, previous_severity=transition.previous_severity,
    )


def build_messages(notifications: Iterable[Transition], alerts: AlertSettings,
                   now: datetime | None = None) -> list[Message]:
    """Group notifications by (rule, firing/resolved, severity): most severe first, firing before resolved."""
    now = now or datetime.now(UTC)
    links = Links(alerts)
    groups: dict[tuple[str, str, str], list[Transition]] = {}
    for t in notifications:
        state = "resolved" if t.kind in ("resolved", "expired") else "firing"
        groups.setdefault((t.rule, state, t.severity), []).append(t)
    messages = []
    for (rule, state, severity), members in groups.items():
        spec = RULES.get(rule)
        messages.append(Message(
            rule=rule, title=spec.title if spec else rule, severity=severity, state=state,  # type: ignore[arg-type]
            items=[item_of(t) for t in sorted(members, key=lambda t: t.key)], runbook=links.runbook(rule),
            source=alerts.source, created_at=now,
        ))
    messages.sort(key=lambda m: (m.state != "firing", -severity_rank(m.severity), m.rule))
    return messages


@dataclass
class DeliveryReport:
    """What a delivery run did."""

    transitions: list[Transition] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    results: list[tuple[Message, DeliveryResult]] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[Message, DeliveryResult]]:
        """Deliveries that failed after their retries."""
        return [(m, r) for m, r in self.results if r.outcome == "failed"]

    def summary(self) -> dict[str, Any]:
        """Counts for run metadata and logs."""
        by_outcome: dict[str, int] = {}
        for _, result in self.results:
            name = f"{result.sink}_{result.outcome}"
            by_outcome[name] = by_outcome.get(name, 0) + 1
        return {
            "transitions": len(self.transitions),
            "notifications": sum(len(m.items) for m in self.messages),
            "messages": len(self.messages),
            "suppressed": sum(1 for t in self.transitions if not t.notify),
            "failed_deliveries": len(self.failed),
            **by_outcome,
        }


def deliver(messages: list[Message], alerts: AlertSettings, store: AlertStore, log: Any, *,
            run_id: str | None = None, environ: Mapping[str, str] | None = None,
            session: requests.Session | None = None, sleep: Callable[[float], None] | None = None) -> DeliveryReport:
    """Route and send each message; record every outcome in alert_events. Never raises for a sink."""
    sinks = Sinks.from_settings(alerts, os.environ if environ is None else environ)
    poster_options: dict[str, Any] = {"session": session}
    if sleep is not None:
        poster_options["sleep"] = sleep
    poster = HttpPoster(alerts.delivery, sinks.redactor, **poster_options)
    log_sink = LogSink(log, sinks.redactor)
    report = DeliveryReport(messages=messages)
    max_items = alerts.delivery.max_items_per_message
    try:
        for message in messages:
            routes = set(alerts.routes.get(message.severity, []))  # type: ignore[call-overload]
            outcomes = [log_sink.send(message)]
            if "pagerduty" in routes or any(i.paged for i in message.items):
                outcomes.extend(_pagerduty(message, routes, sinks, poster, store))
            if "slack" in routes:
                outcomes.append(sinks.slack.send(message, poster, max_items))
            if "webhook" in routes:
                outcomes.append(sinks.webhook.send(message, poster))
            for result in outcomes:
                report.results.append((message, result))
                _log_outcome(log, message, result)
            _record(store, message, outcomes, run_id)
    finally:
        poster.close()
    return report


def _pagerduty(message: Message, routes: set[str], sinks: Sinks, poster: HttpPoster,
               store: AlertStore) -> list[DeliveryResult]:
    """Trigger the rule's incident for critical firing groups; resolve it when nothing paged stays firing."""
    outcomes: list[DeliveryResult] = []
    if message.state == "firing" and message.severity == "critical" and "pagerduty" in routes:
        result = sinks.pagerduty.send(message, poster, "trigger")
        if result.ok:
            store.mark_paged([i.key for i in message.items], True)
        outcomes.append(result)
    unpaged = [i.key for i in message.items
               if i.paged and (message.state == "resolved" or severity_rank(i.severity) < severity_rank("critical"))]
    if unpaged:
        store.mark_paged(unpaged, False)
        if not store.paged_firing(message.rule):
            outcomes.append(sinks.pagerduty.send(message, poster, "resolve"))
    return outcomes


def _log_outcome(log: Any, message: Message, result: DeliveryResult) -> None:
    if result.sink == "log":
        return
    action = f" {result.action}" if result.action else ""
    if result.outcome == "failed":
        log.warning(f"alert sink {result.sink}{action} failed for {message.rule} after {result.attempts} "
                    f"attempt(s): {result.detail}")
    elif result.outcome == "skipped":
        log.info(f"alert sink {result.sink}{action} skipped for {message.rule}: {result.detail}")
    else:
        log.info(f"alert sink {result.sink}{action} delivered {message.rule} ({len(message.items)} alert(s)) "
                 f"after {result.attempts} attempt(s)")


def _record(store: AlertStore, message: Message, outcomes: list[DeliveryResult], run_id: str | None) -> None:
    now = datetime.now(UTC)
    store.record_events(
        {"at": now, "run_id": run_id, "key": item.key, "rule": message.rule, "severity": message.severity,
         "event": "delivery", "sink": result.sink, "outcome": result.outcome,
         "detail": (f"{result.action}: " if result.action else "") + result.detail[:1000]}
        for result in outcomes for item in message.items
    )


def notify(observations: Iterable[Observation], alerts: AlertSettings, store: AlertStore, log: Any, *,
           run_id: str | None = None, now: datetime | None = None, environ: Mapping[str, str] | None = None,
           session: requests.Session | None = None, sleep: Callable[[float], None] | None = None) -> DeliveryReport:
    """Apply observations to the state store, then build and deliver the notifications they call for."""
    applied = store.apply(observations, now=now, run_id=run_id)
    for t in applied.transitions:
        if not t.notify:
            log.info(f"alert {t.key} {t.kind} ({t.severity}) not notified: {t.reason}")
    messages = build_messages(applied.notifications, alerts, now)
    report = deliver(messages, alerts, store, log, run_id=run_id, environ=environ, session=session, sleep=sleep)
    report.transitions = applied.transitions
    return report
