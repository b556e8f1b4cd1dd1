"""Alerting: rules over warehouse tables, persisted alert state (dedupe, windows, resolve, ack, silence),
sinks (Slack, PagerDuty Events v2, signed webhook, log) and the notification flow that ties them together.

No Dagster imports here: the sensors and the notification job live in `aiobs_pipeline/defs/alerting.py`.
"""

from aiobs_pipeline.alerting.notify import DeliveryReport, build_messages, deliver, notify
from aiobs_pipeline.alerting.rules import (
    RULES,
    FrameReader,
    Link,
    Observation,
    RuleResult,
    TableReader,
    TableUnavailable,
    alert_key,
    evaluate_rules,
    rule_triggers,
)
from aiobs_pipeline.alerting.settings import AlertSettings, alert_settings_of, state_url_of
from aiobs_pipeline.alerting.state import AlertRecord, AlertStore, Policy, Transition, fold, step

__all__ = [
    "RULES",
    "AlertRecord",
    "AlertSettings",
    "AlertStore",
    "DeliveryReport",
    "FrameReader",
    "Link",
    "Observation",
    "Policy",
    "RuleResult",
    "TableReader",
    "TableUnavailable",
    "Transition",
    "alert_key",
    "alert_settings_of",
    "build_messages",
    "deliver",
    "evaluate_rules",
    "fold",
    "notify",
    "rule_triggers",
    "state_url_of",
    "step",
]
