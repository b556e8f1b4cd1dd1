"""Where alert messages go: Slack incoming webhooks, PagerDuty Events API v2, a generic HMAC-signed webhook,
and the log (the Dagster log plus `alert_events` rows, written by notify.py).

Delivery is bounded and never raises: each request has connect and read timeouts, 5xx / 429 / 408 responses,
timeouts and connection errors are retried with exponential backoff and jitter (honouring a capped
Retry-After) up to `max_attempts`, and no retry starts after the run's deadline. Other 4xx fail at once. The
outcome is a `DeliveryResult` the caller records.

Secrets (webhook URLs, the routing key, the signing secret) are read from the environment variables the
settings name, only here, and every text that leaves this module - result details, log lines, including
urllib3's own debug lines, which print request paths - passes through a `Redactor` that masks them.
Payloads never echo a secret except the PagerDuty routing key, which that API requires in the body.

Signature of the generic webhook (verify with `verify_signature`):
    X-Aiobs-Timestamp: <unix seconds>
    X-Aiobs-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
A receiver recomputes it over the raw bytes and rejects timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests

from aiobs_pipeline.alerting.rules import Link
from aiobs_pipeline.alerting.settings import (
    AlertSettings,
    DeliverySettings,
    PagerDutySettings,
    SlackSettings,
    WebhookSettings,
)

logger = logging.getLogger(__name__)
REDACTED = "***"
RETRYABLE_STATUS = frozenset({408, 425, 429})
USER_AGENT = "aiobs-alerts/1"
SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
PD_SUMMARY_LIMIT = 1024
PD_DEDUP_LIMIT = 255


# ----------------------------------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertItem:
    """One alert inside a message."""

    key: str
    scope: str
    subject: str
    event: str
    severity: str
    hour: str
    summary: str
    value: float | None = None
    threshold: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    transient: bool = False
    paged: bool = False
    previous_severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON payloads."""
        return {
            "key": self.key, "scope": self.scope, "subject": self.subject, "event": self.event,
            "severity": self.severity, "previous_severity": self.previous_severity, "hour": self.hour,
            "summary": self.summary, "value": self.value, "threshold": self.threshold,
            "details": dict(self.details), "links": [link.to_dict() for link in self.links],
            "transient": self.transient,
        }


@dataclass
class Message:
    """Similar alerts aggregated into one notification: same rule, severity and state."""

    rule: str
    title: str
    severity: str
    state: Literal["firing", "resolved"]
    items: list[AlertItem]
    runbook: Link
    source: str = "aiobs"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def page_key(self) -> str:
        """PagerDuty dedup_key: one incident per rule, open while any of its alerts is paged."""
        return f"{self.source}:{self.rule}"[:PD_DEDUP_LIMIT]

    @property
    def headline(self) -> str:
        """One line saying what happened."""
        count = len(self.items)
        noun = "alert" if count == 1 else "alerts"
        if self.state == "resolved":
            return f"[RESOLVED] {self.title}: {count} {noun} resolved"
        events = {item.event for item in self.items}
        verb = "escalated" if events == {"escalated"} else "still firing" if events == {"reminder"} else "firing"
        return f"[{self.severity.upper()}] {self.title}: {count} {noun} {verb}"

    def item_line(self, item: AlertItem) -> str:
        """One alert as a line of text (summaries name their subject)."""
        note = ""
        if item.event == "escalated" and item.previous_severity:
            note = f" (escalated from {item.previous_severity})"
        elif item.event == "downgraded" and item.previous_severity:
            note = f" (down from {item.previous_severity})"
        elif item.event == "expired":
            note = " (expired)"
        elif item.transient:
            note = " (fired and recovered)"
        return f"{item.summary}{note}"


# ----------------------------------------------------------------------------------------------------------
# Redaction
# ----------------------------------------------------------------------------------------------------------


class Redactor:
    """Masks secret values (and the secret path / query of secret URLs) in any text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._values: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret; for a URL its path and query are secrets too (Slack's token is the path)."""
        if not secret or len(secret) < 4:
            return
        values = {secret}
        if secret.startswith(("http://", "https://")):
            parts = urlsplit(secret)
            if len(parts.path) > 1:
                values.add(parts.path)
            if parts.query:
                values.add(parts.query)
        self._values = sorted(set(self._values) | values, key=len, reverse=True)

    def __call__(self, text: Any) -> str:
        """The text with every secret replaced by ***."""
        out = str(text)
        for value in self._values:
            out = out.replace(value, REDACTED)
        return out


class _RedactingFilter(logging.Filter):
    """Rewrites records of a logger (urllib3 prints request paths at DEBUG) through a Redactor."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the formatted message; always keep the record."""
        record.msg = self.redactor(record.getMessage())
        record.args = ()
        return True


@contextmanager
def redacted_http_logs(redactor: Redactor) -> Iterator[None]:
    """While sending, scrub secrets from the HTTP libraries' own log records."""
    loggers = [logging.getLogger(name) for name in ("urllib3.connectionpool", "urllib3.util.retry", "requests")]
    filt = _RedactingFilter(redactor)
    for log in loggers:
        log.addFilter(filt)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(filt)


# ----------------------------------------------------------------------------------------------------------
# HTTP with retries
# ----------------------------------------------------------------------------------------------------------


@dataclass
class DeliveryResult:
    """Outcome of one sink for one message; details are already redacted."""

    sink: str
    ok: bool
    attempts: int = 0
    status_code: int | None = None
    detail: str = ""
    skipped: bool = False
    action: str = ""

    @property
    def outcome(self) -> str:
        """sent, failed or skipped."""
        return "skipped" if self.skipped else "sent" if self.ok else "failed"


class HttpPoster:
    """POSTs bytes with bounded timeouts, retries with backoff and jitter, and a deadline."""

    def __init__(self, delivery: DeliverySettings, redactor: Redactor, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.delivery = delivery
        self.redactor = redactor
        self.session = session or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.deadline = clock() + delivery.deadline_seconds

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.delivery
        ceiling = min(cfg.backoff_max_seconds, cfg.backoff_initial_seconds * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.retry_after_max_seconds))
        return delay

    def post(self, sink: str, url: str, body: bytes, headers: Callable[[], dict[str, str]],
             action: str = "") -> DeliveryResult:
        """Send; `headers` is called per attempt (signatures carry a fresh timestamp). Never raises."""
        cfg = self.delivery
        result = DeliveryResult(sink, ok=False, action=action)
        host = urlsplit(url).netloc or "(no host)"
        for attempt in range(1, cfg.max_attempts + 1):
            result.attempts = attempt
            retry_after: float | None = None
            try:
                with redacted_http_logs(self.redactor):
                    response = self.session.post(
                        url, data=body, headers=headers(), allow_redirects=False,
                        timeout=(cfg.connect_timeout_seconds, cfg.read_timeout_seconds))
            except requests.Timeout:
                result.detail = f"timed out talking to {host}"
            except requests.RequestException as error:
                result.detail = f"{type(error).__name__} talking to {host}: {self.redactor(error)[:200]}"
            else:
                result.status_code = response.status_code
                if 200 <= response.status_code < 300:
                    result.ok = True
                    result.detail = f"HTTP {response.status_code} from {host}"
                    return result
                snippet = self.redactor(response.text[:300]).strip()
                result.detail = f"HTTP {response.status_code} from {host}: {snippet}"
                if not (response.status_code >= 500 or response.status_code in RETRYABLE_STATUS):
                    return result
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == cfg.max_attempts:
                break
            delay = self._backoff(attempt, retry_after)
            if self.clock() + delay > self.deadline:
                result.detail += f"; delivery deadline of {cfg.deadline_seconds:.0f} s reached"
                break
            logger.info("alert sink %s: attempt %d failed (%s); retrying in %.2f s", sink, attempt,
                        result.detail, delay)
            self.sleep(delay)
        return result


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _rebase(url: str, base_url: str | None) -> str:
    """Replace scheme, host and port of url with those of base_url (the secret path and query stay)."""
    if not base_url:
        return url
    base, parts = urlsplit(base_url), urlsplit(url)
    prefix = base.path.rstrip("/")
    return urlunsplit((base.scheme, base.netloc, prefix + parts.path, parts.query, ""))


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_mrkdwn(link: Link) -> str:
    label = _slack_escape(link.label)
    return f"<{link.target}|{label}>" if link.is_url else f"{label}: `{_slack_escape(link.target)}`"


# ----------------------------------------------------------------------------------------------------------
# Sinks
# ----------------------------------------------------------------------------------------------------------


class SlackSink:
    """Slack incoming webhooks: one message per aggregated alert group, text fallback plus Block Kit blocks."""

    name = "slack"

    def __init__(self, settings: SlackSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self._default = environ.get(settings.webhook_url_env) or None
        self._by_severity = {sev: environ.get(var) or None for sev, var in settings.severity_webhook_url_envs.items()}

    def secrets(self) -> list[str]:
        """Every configured webhook URL."""
        return [u for u in (self._default, *self._by_severity.values()) if u]

    def url_for(self, severity: str) -> str | None:
        """The webhook of a severity's channel (its own variable, else the default), rebased if configured."""
        url = self._by_severity.get(severity) or self._default  # type: ignore[call-overload]
        return _rebase(url, self.settings.base_url) if url else None

    def unavailable(self, severity: str) -> str | None:
        """Why this sink cannot send a severity, or None."""
        if not self.settings.enabled:
            return "slack disabled in settings"
        if self.url_for(severity) is None:
            specific = self.settings.severity_webhook_url_envs.get(severity)  # type: ignore[call-overload]
            names = " or ".join(n for n in (specific, self.settings.webhook_url_env) if n)
            return f"no Slack webhook configured ({names} not set)"
        return None

    def payload(self, message: Message, max_items: int = 10) -> dict[str, Any]:
        """Incoming-webhook JSON: `text` (notification fallback) and `blocks`."""
        channel = self.settings.channels.get(message.severity, "")  # type: ignore[call-overload]
        emoji = ":white_check_mark:" if message.state == "resolved" else SEVERITY_EMOJI.get(message.severity, "")
        lines = []
        for item in message.items[:max_items]:
            links = ", ".join(_link_mrkdwn(link) for link in item.links[:3])
            lines.append(f"• {_slack_escape(message.item_line(item))}" + (f" ({links})" if links else ""))
        if len(message.items) > max_items:
            lines.append(f"…and {len(message.items) - max_items} more")
        body = "\n".join(lines)
        if len(body) > 2900:
            body = body[:2900] + "…"
        keys = ", ".join(f"`{_slack_escape(i.key)}`" for i in message.items[:max_items])
        return {
            "text": f"{emoji} {message.headline}".strip(),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.headline[:150], "emoji": True}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body or "_no details_"}},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": f"Runbook: {_link_mrkdwn(message.runbook)}"},
                    {"type": "mrkdwn", "text": _slack_escape(f"{message.source} · {channel} · rule {message.rule}")
                     + f" · keys: {keys}"[:1900]},
                ]},
            ],
        }

    def send(self, message: Message, poster: HttpPoster, max_items: int = 10) -> DeliveryResult:
        """Post the message to its severity's webhook."""
        reason = self.unavailable(message.severity)
        if reason:
            return DeliveryResult(self.name, ok=False, skipped=True, detail=reason)
        body = _json_bytes(self.payload(message, max_items))
        return poster.post(self.name, self.url_for(message.severity) or "", body,
                           lambda: {"Content-Type": "application/json", "User-Agent": USER_AGENT}, action="post")


class PagerDutySink:
    """PagerDuty Events API v2: trigger / resolve with a dedup_key per rule."""

    name = "pagerduty"

    def __init__(self, settings: PagerDutySettings, environ: Mapping[str, str], source: str = "aiobs",
                 client_url: str | None = None) -> None:
        self.settings = settings
        self.routing_key = environ.get(settings.routing_key_env) or None
        self.source = source
        self.client_url = client_url

    @property
    def url(self) -> str:
        """The enqueue endpoint."""
        return self.settings.base_url.rstrip("/") + "/" + self.settings.path.lstrip("/")

    def secrets(self) -> list[str]:
        """The routing key."""
        return [self.routing_key] if self.routing_key else []

    def unavailable(self) -> str | None:
        """Why this sink cannot send, or None."""
        if not self.settings.enabled:
            return "pagerduty disabled in settings"
        if not self.routing_key:
            return f"no PagerDuty routing key ({self.settings.routing_key_env} not set)"
        return None

    def trigger_payload(self, message: Message) -> dict[str, Any]:
        """Events v2 trigger: routing_key, event_action, dedup_key, payload{summary, source, severity, ...}, links."""
        first = message.items[0]
        summary = f"[{message.severity.upper()}] {message.title}: {message.item_line(first)}"
        if len(message.items) > 1:
            summary += f" (+{len(message.items) - 1} more)"
        links = [{"href": link.target, "text": link.label}
                 for link in (message.runbook, *(lk for item in message.items[:5] for lk in item.links)) if link.is_url]
        payload: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": message.page_key,
            "payload": {
                "summary": summary[:PD_SUMMARY_LIMIT],
                "source": self.source,
                "severity": message.severity if message.severity in ("critical", "warning", "info") else "error",
                "timestamp": message.created_at.isoformat(),
                "component": message.rule,
                "group": first.scope,
                "class": message.rule,
                "custom_details": {
                    "rule": message.rule, "title": message.title, "runbook": message.runbook.target,
                    "alerts": [item.to_dict() for item in message.items[:50]],
                    "more_alerts": max(0, len(message.items) - 50),
                },
            },
            "links": links[:10],
            "client": self.source,
        }
        if self.client_url:
            payload["client_url"] = self.client_url
        return payload

    def resolve_payload(self, message: Message) -> dict[str, Any]:
        """Events v2 resolve for the rule's dedup_key."""
        return {"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": message.page_key}

    def send(self, message: Message, poster: HttpPoster, action: Literal["trigger", "resolve"]) -> DeliveryResult:
        """Trigger or resolve the rule's incident."""
        reason = self.unavailable()
        if reason:
            return DeliveryResult(self.name, ok=False, skipped=True, detail=reason, action=action)
        payload = self.trigger_payload(message) if action == "trigger" else self.resolve_payload(message)
        return poster.post(self.name, self.url, _json_bytes(payload),
                           lambda: {"Content-Type": "application/json", "User-Agent": USER_AGENT}, action=action)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC-SHA256 of "<timestamp>." + body."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *, tolerance_seconds: int = 300,
                     now: float | None = None) -> bool:
    """What a receiver does: constant-time compare of the signature, and reject stale timestamps (replays)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header or "")


class WebhookSink:
    """A generic JSON webhook, HMAC-SHA256 signed; refuses to send unsigned."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self._url = environ.get(settings.url_env) or None
        self._secret = environ.get(settings.secret_env) or None

    def secrets(self) -> list[str]:
        """URL and signing secret."""
        return [s for s in (self._url, self._secret) if s]

    @property
    def url(self) -> str | None:
        """The target URL, rebased if configured."""
        return _rebase(self._url, self.settings.base_url) if self._url else None

    def unavailable(self) -> str | None:
        """Why this sink cannot send, or None."""
        if not self.settings.enabled:
            return "webhook disabled in settings"
        if not self._url:
            return f"no webhook URL ({self.settings.url_env} not set)"
        if not self._secret:
            return f"{self.settings.secret_env} not set: refusing to send an unsigned webhook"
        return None

    def payload(self, message: Message, delivery_id: str) -> dict[str, Any]:
        """The JSON body."""
        return {
            "schema": "aiobs.alerts/v1", "delivery_id": delivery_id, "sent_at": message.created_at.isoformat(),
            "source": message.source, "rule": message.rule, "title": message.title, "severity": message.severity,
            "state": message.state, "headline": message.headline, "runbook": message.runbook.to_dict(),
            "alerts": [item.to_dict() for item in message.items],
        }

    def send(self, message: Message, poster: HttpPoster) -> DeliveryResult:
        """Post the signed JSON; the delivery id stays the same across retries so receivers can dedupe."""
        reason = self.unavailable()
        if reason:
            return DeliveryResult(self.name, ok=False, skipped=True, detail=reason)
        delivery_id = str(uuid.uuid4())
        body = _json_bytes(self.payload(message, delivery_id))
        secret = self._secret or ""

        def headers() -> dict[str, str]:
            timestamp = str(int(time.time()))
            return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Aiobs-Delivery": delivery_id,
                    self.settings.timestamp_header: timestamp,
                    self.settings.signature_header: signature(secret, timestamp, body)}

        return poster.post(self.name, self.url or "", body, headers, action="post")


@dataclass
class Sinks:
    """The configured sinks and the redactor that knows their secrets."""

    slack: SlackSink
    pagerduty: PagerDutySink
    webhook: WebhookSink
    redactor: Redactor

    @classmethod
    def from_settings(cls, alerts: AlertSettings, environ: Mapping[str, str]) -> Sinks:
        """Read the secrets from the environment (only here)."""
        slack = SlackSink(alerts.slack, environ)
        pagerduty = PagerDutySink(alerts.pagerduty, environ, alerts.source, alerts.dagster_ui_url)
        webhook = WebhookSink(alerts.webhook, environ)
        redactor = Redactor([*slack.secrets(), *pagerduty.secrets(), *webhook.secrets()])
        return cls(slack, pagerduty, webhook, redactor)


class LogSink:
    """The dashboard/log sink: one log line per message (Dagster's log inside a run)."""

    name = "log"

    def __init__(self, log: Any, redactor: Redactor) -> None:
        self.log = log
        self.redactor = redactor

    def send(self, message: Message) -> DeliveryResult:
        """Log the headline and each alert line at a level matching the severity."""
        lines = [message.headline, *(f"  - {message.item_line(i)} [{i.key}]" for i in message.items),
                 f"  runbook: {message.runbook.target}"]
        text = self.redactor("\n".join(lines))
        if message.state == "firing" and message.severity in ("critical", "warning"):
            self.log.warning(text)
        else:
            self.log.info(text)
        return DeliveryResult(self.name, ok=True, attempts=1, detail="logged")
