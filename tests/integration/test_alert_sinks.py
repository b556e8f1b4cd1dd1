"""Alert sinks against a real HTTP receiver on 127.0.0.1: Slack, PagerDuty Events v2 and the signed webhook
payloads, retries on 5xx, permanent failures reported without raising, timeouts, and no secret in logs,
results or echoed payloads."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aiobs_pipeline.alerting.notify import build_messages, deliver, notify
from aiobs_pipeline.alerting.rules import Link, Observation
from aiobs_pipeline.alerting.settings import AlertSettings
from aiobs_pipeline.alerting.sinks import HttpPoster, Redactor, verify_signature
from aiobs_pipeline.alerting.state import AlertStore

SLACK_PATH = "/services/T000/B000/s1ackS3cretT0ken"
INCIDENTS_PATH = "/services/T000/B111/inc1dentS3cret"
WEBHOOK_PATH = "/hooks/aiobs?token=w3bh00kQueryS3cret"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"
WEBHOOK_SECRET = "whsec-hmac-5ecret-value"
SECRETS = ("s1ackS3cretT0ken", "inc1dentS3cret", "w3bh00kQueryS3cret", ROUTING_KEY, WEBHOOK_SECRET)
NOW = pd.Timestamp.now(tz="UTC").floor("h")
LAST_HOUR = NOW - pd.Timedelta(hours=1)


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server recording requests and answering from a per-path script (default 200/202)."""

    url: str
    requests: list[Received] = field(default_factory=list)
    script: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    delay: dict[str, float] = field(default_factory=dict)

    def on(self, path: str, *responses: tuple[int, str]) -> None:
        """Answer the next requests to path with these (status, body) pairs."""
        self.script[path].extend(responses)

    def to(self, path_prefix: str) -> list[Received]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(self.path, {k: v for k, v in self.headers.items()}, body))
            time.sleep(state.delay.get(self.path.split("?")[0], 0.0))
            queue = state.script.get(self.path.split("?")[0])
            status, text = queue.popleft() if queue else (202 if self.path.startswith("/v2/") else 200,
                                                           '{"status":"success"}' if self.path.startswith("/v2/")
                                                           else "ok")
            if text == "ECHO":  # a server that echoes the request back in its error
                text = body.decode()
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def alert_settings(receiver: Receiver, **delivery: object) -> AlertSettings:
    return AlertSettings.model_validate({
        "slack": {"base_url": receiver.url},
        "pagerduty": {"base_url": receiver.url},
        "webhook": {"base_url": receiver.url},
        "delivery": {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "read_timeout_seconds": 1.0,
                     "connect_timeout_seconds": 1.0, **delivery},
        "dagster_ui_url": "http://dagster.local:3000",
    })


ENV = {
    # real-looking hosts: base_url sends them to the receiver, keeping the secret path
    "SLACK_WEBHOOK_URL": f"https://hooks.slack.com{SLACK_PATH}",
    "SLACK_WEBHOOK_URL_INCIDENTS": f"https://hooks.slack.com{INCIDENTS_PATH}",
    "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
    "AIOBS_WEBHOOK_URL": f"https://alerts.example.com{WEBHOOK_PATH}",
    "AIOBS_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def observation(subject: str = "all", status: str = "firing", severity: str | None = "critical",
                rule: str = "error_rate", hour: pd.Timestamp = LAST_HOUR) -> Observation:
    return Observation(
        rule=rule, scope="total" if subject == "all" else "feature", subject=subject, status=status,  # type: ignore[arg-type]
        hour=hour, severity=severity if status == "firing" else None, value=0.12, threshold=0.05,
        summary=f"Error rate 12.0% (24/200 LLM spans) for {subject} <&>",
        details={"llm_spans": 200, "errors": 24},
        links=(Link("partition", "spans 2026", "http://dagster.local:3000/assets/spans"),
               Link("trace", "trace t-1", "aiobs trace show t-1")),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    with AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}") as s:
        yield s


LOG = logging.getLogger("aiobs.test.alerts")


def test_critical_alert_pages_and_posts_to_incidents_then_resolves(receiver: Receiver, store: AlertStore) -> None:
    alerts = alert_settings(receiver)
    report = notify([observation(), observation("chat")], alerts, store, LOG, environ=ENV, run_id="run-1")
    assert report.failed == []
    slack = receiver.to("/services/")
    assert [r.path for r in slack] == [INCIDENTS_PATH], "critical goes to the #incidents webhook, aggregated"
    body = slack[0].json
    assert body["text"].startswith(":red_circle: [CRITICAL] Error rate above threshold: 2 alerts firing")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    section = body["blocks"][1]["text"]["text"]
    assert "Error rate 12.0% (24/200 LLM spans) for chat &lt;&amp;&gt;" in section
    assert "<http://dagster.local:3000/assets/spans|spans 2026>" in section
    assert "runbook" in json.dumps(body["blocks"][2])

    (trigger,) = receiver.to("/v2/enqueue")
    event = trigger.json
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == "aiobs:error_rate"
    assert set(event["payload"]) >= {"summary", "source", "severity", "custom_details", "timestamp"}
    assert event["payload"]["severity"] == "critical" and event["payload"]["source"] == "aiobs"
    assert len(event["payload"]["summary"]) <= 1024
    assert [a["key"] for a in event["payload"]["custom_details"]["alerts"]] == ["error_rate:feature:chat",
                                                                                "error_rate:total:all"]
    assert {"href": "http://dagster.local:3000/assets/spans", "text": "spans 2026"} in event["links"]
    assert event["client_url"] == "http://dagster.local:3000"
    assert store.paged_firing("error_rate") == ["error_rate:feature:chat", "error_rate:total:all"]

    # one subject recovers: Slack says so, PagerDuty stays open while the other is still paged
    later = NOW + pd.Timedelta(hours=2)
    notify([observation("chat", status="ok", hour=NOW)], alerts, store, LOG, environ=ENV, now=later)
    assert len(receiver.to("/v2/enqueue")) == 1
    resolved_post = receiver.to("/services/")[-1].json
    assert resolved_post["text"].startswith(":white_check_mark: [RESOLVED] Error rate above threshold")
    # the last one recovers: PagerDuty resolve with the same dedup_key
    notify([observation(status="ok", hour=NOW)], alerts, store, LOG, environ=ENV, now=later)
    resolve = receiver.to("/v2/enqueue")[-1].json
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "aiobs:error_rate"}
    assert store.paged_firing("error_rate") == []
    webhook_states = [r.json["state"] for r in receiver.to("/hooks/")]
    assert webhook_states == ["firing", "resolved", "resolved"]


def test_severity_routing(receiver: Receiver, store: AlertStore) -> None:
    alerts = alert_settings(receiver)
    notify([observation(rule="latency_p95", severity="warning"),
            observation(rule="cache_hit_rate", severity="info")], alerts, store, LOG, environ=ENV)
    assert [r.path for r in receiver.to("/services/")] == [SLACK_PATH]  # warning -> #ai-monitoring (default)
    assert receiver.to("/v2/") == [], "warnings and info never page"
    assert [r.json["rule"] for r in receiver.to("/hooks/")] == ["latency_p95"]
    events = {(e["rule"], e["sink"]) for e in store.events_for() if e["event"] == "delivery"}
    assert ("cache_hit_rate", "log") in events and ("cache_hit_rate", "slack") not in events


def test_webhook_signature_verifies_and_replays_fail(receiver: Receiver, store: AlertStore) -> None:
    notify([observation()], alert_settings(receiver), store, LOG, environ=ENV)
    (hook,) = receiver.to("/hooks/")
    assert hook.path == WEBHOOK_PATH
    timestamp, sig = hook.headers["X-Aiobs-Timestamp"], hook.headers["X-Aiobs-Signature"]
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature(WEBHOOK_SECRET, timestamp, hook.body, sig)
    assert not verify_signature("wrong-secret", timestamp, hook.body, sig)
    assert not verify_signature(WEBHOOK_SECRET, timestamp, hook.body + b" ", sig), "body is signed"
    assert not verify_signature(WEBHOOK_SECRET, str(int(timestamp) + 1), hook.body, sig), "timestamp is signed"
    assert not verify_signature(WEBHOOK_SECRET, timestamp, hook.body, sig, now=int(timestamp) + 3600), "replay"
    body = hook.json
    assert body["schema"] == "aiobs.alerts/v1" and body["alerts"][0]["key"] == "error_rate:total:all"
    assert hook.headers["X-Aiobs-Delivery"] == body["delivery_id"]


def test_unsigned_webhook_is_refused(receiver: Receiver, store: AlertStore) -> None:
    env = {k: v for k, v in ENV.items() if k != "AIOBS_WEBHOOK_SECRET"}
    report = notify([observation()], alert_settings(receiver), store, LOG, environ=env)
    assert receiver.to("/hooks/") == []
    (result,) = [r for _, r in report.results if r.sink == "webhook"]
    assert result.skipped and "refusing to send an unsigned webhook" in result.detail


def test_retries_on_500_then_succeeds(receiver: Receiver, store: AlertStore) -> None:
    receiver.on(INCIDENTS_PATH, (500, "rollup_error"), (503, "busy"))
    report = notify([observation()], alert_settings(receiver), store, LOG, environ=ENV)
    (slack,) = [r for _, r in report.results if r.sink == "slack"]
    assert (slack.ok, slack.attempts, slack.status_code) == (True, 3, 200)
    assert len(receiver.to(INCIDENTS_PATH)) == 3 and report.failed == []


def test_permanent_failure_is_reported_not_raised(receiver: Receiver, store: AlertStore,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.on(INCIDENTS_PATH, *[(500, "ECHO")] * 3)
    receiver.on("/v2/enqueue", (400, "ECHO"))  # PagerDuty-like 400 echoing the event, routing key included
    report = notify([observation()], alert_settings(receiver, max_attempts=3), store, LOG, environ=ENV)
    failed = {r.sink: r for _, r in report.failed}
    assert set(failed) == {"slack", "pagerduty"}
    assert failed["slack"].attempts == 3 and failed["pagerduty"].attempts == 1, "a 400 is not retried"
    assert "HTTP 400" in failed["pagerduty"].detail and "***" in failed["pagerduty"].detail
    assert store.paged_firing("error_rate") == [], "a failed trigger does not count as paged"
    outcomes = {(e["sink"], e["outcome"]) for e in store.events_for() if e["event"] == "delivery"}
    assert {("slack", "failed"), ("pagerduty", "failed"), ("webhook", "sent"), ("log", "sent")} <= outcomes
    assert_no_secrets(caplog.text, report, store)


def test_timeouts_are_bounded_and_retried(receiver: Receiver, store: AlertStore) -> None:
    receiver.delay[INCIDENTS_PATH] = 0.6
    alerts = alert_settings(receiver, read_timeout_seconds=0.2, max_attempts=2)
    started = time.monotonic()
    messages = build_messages(store.apply([observation()]).notifications, alerts)
    report = deliver(messages, alerts, store, LOG, environ=ENV)
    (slack,) = [r for _, r in report.results if r.sink == "slack"]
    assert not slack.ok and slack.attempts == 2 and "timed out" in slack.detail
    assert time.monotonic() - started < 5


def test_deadline_stops_retrying() -> None:
    poster = HttpPoster(AlertSettings.model_validate({"delivery": {"deadline_seconds": 0.5,
                                                                   "backoff_initial_seconds": 2}}).delivery,
                        Redactor())
    result = poster.post("slack", "http://127.0.0.1:9/unreachable", b"{}", dict)
    assert not result.ok and result.attempts == 1 and "deadline" in result.detail


def test_secrets_never_logged_on_success(receiver: Receiver, store: AlertStore,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 prints request paths at DEBUG
    report = notify([observation(), observation(rule="latency_p95", severity="warning")],
                    alert_settings(receiver), store, LOG, environ=ENV)
    assert report.failed == []
    assert "POST" in caplog.text or "Starting new HTTP connection" in caplog.text, "urllib3 debug lines captured"
    assert_no_secrets(caplog.text, report, store)
    for request in receiver.requests:
        text = request.body.decode()
        leaked = [s for s in SECRETS if s in text and not (s == ROUTING_KEY and request.path == "/v2/enqueue")]
        assert not leaked, f"{request.path} payload echoes {leaked}"


def assert_no_secrets(log_text: str, report: Any, store: AlertStore) -> None:
    texts = [log_text, *(r.detail for _, r in report.results), *(str(e) for e in store.events_for(limit=500))]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret {secret[:6]}... appears in {text[:200]!r}"


def test_redactor_masks_url_paths_and_queries() -> None:
    redact = Redactor([ENV["SLACK_WEBHOOK_URL"], ENV["AIOBS_WEBHOOK_URL"], ROUTING_KEY, None, ""])
    text = f"POST {SLACK_PATH} and {WEBHOOK_PATH} key={ROUTING_KEY}"
    assert redact(text) == "POST *** and ***?*** key=***"  # the whole path of a secret URL is masked
