"""Alert state: persistence across store instances, windows, escalation, silence and ack semantics, stale
and old evidence, transient incidents, racing writers, and the CLI over the same store."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from aiobs_pipeline.alerting.cli import add_parser, parse_duration
from aiobs_pipeline.alerting.rules import Observation
from aiobs_pipeline.alerting.settings import AlertSettings, state_url_of
from aiobs_pipeline.alerting.state import AlertStore, Policy, fold, normalise_url
from aiobs_pipeline.settings import load_settings

H0 = pd.Timestamp("2026-03-10 12:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)
MIN = pd.Timedelta(minutes=1)
KEY = "error_rate:total:all"


def obs(hour: pd.Timestamp, status: str = "firing", severity: str | None = "critical", value: float = 0.2,
        subject: str = "all", rule: str = "error_rate") -> Observation:
    return Observation(rule=rule, scope="total", subject=subject, status=status, hour=hour,  # type: ignore[arg-type]
                       severity=severity if status == "firing" else None, value=value, threshold=0.05,
                       summary=f"error rate {value:.0%} at {hour:%H}h")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'alerts.sqlite'}"


def kinds(result) -> list[tuple[str, bool]]:
    return [(t.kind, t.notify) for t in result.transitions]


def test_state_survives_a_new_store_instance(url: str) -> None:
    with AlertStore(url) as store:
        first = store.apply([obs(H0)], now=H0 + HOUR)
        assert [n.kind for n in first.notifications] == ["fired"]
        store.ack(KEY, by="alice", note="looking", now=H0 + HOUR + MIN)
    with AlertStore(url) as again:  # a restart: same file, fresh engine
        record = again.get([KEY])[KEY]
        assert (record.status, record.severity, record.acked_by, record.notifications) == ("firing", "critical",
                                                                                           "alice", 1)
        assert record.last_notified_at == (H0 + HOUR).to_pydatetime()
        assert record.last_hour == H0.to_pydatetime()
        assert again.apply([obs(H0)], now=H0 + HOUR + 2 * MIN).transitions == []
        history = [e["event"] for e in again.events_for(KEY)]
        assert history == ["acked", "fired"]


def test_escalation_notifies_at_once_and_downgrade_waits_for_the_window(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0, severity="warning")], now=H0 + HOUR)
        up = store.apply([obs(H0 + HOUR, severity="critical")], now=H0 + HOUR + 10 * MIN)
        assert [(n.kind, n.severity, n.previous_severity) for n in up.notifications] == [
            ("escalated", "critical", "warning")]
        down = store.apply([obs(H0 + 2 * HOUR, severity="warning")], now=H0 + HOUR + 20 * MIN)
        assert kinds(down) == [("downgraded", False)]
        assert store.get([KEY])[KEY].severity == "warning"


def test_acknowledged_alert_gets_no_reminders_but_escalations_and_resolution(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0, severity="warning")], now=H0 + HOUR)
        assert store.ack("error_rate:*", by="bob", now=H0 + HOUR) == [KEY]
        assert store.ack("nothing:*", by="bob") == []
        reminder = store.apply([obs(H0 + 2 * HOUR, severity="warning")], now=H0 + 3 * HOUR)
        assert kinds(reminder) == [("reminder", False)] and "acknowledged by bob" in reminder.transitions[0].reason
        up = store.apply([obs(H0 + 3 * HOUR, severity="critical")], now=H0 + 4 * HOUR)
        assert [n.kind for n in up.notifications] == ["escalated"]
        done = store.apply([obs(H0 + 4 * HOUR, status="ok")], now=H0 + 5 * HOUR)
        assert [n.kind for n in done.notifications] == ["resolved"]
        assert store.get([KEY])[KEY].acked_at is None, "resolution clears the acknowledgement"


def test_silence_mutes_new_noise_until_it_ends_but_not_the_all_clear(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0, subject="other")], now=H0 + HOUR)  # notified before the silence
        silence = store.silence("error_rate:total:*", until=H0 + 3 * HOUR, by="carol", reason="deploy",
                                now=H0 + HOUR)
        assert [s.id for s in store.active_silences(H0 + 2 * HOUR)] == [silence.id]
        muted = store.apply([obs(H0 + HOUR)], now=H0 + HOUR + MIN)
        assert kinds(muted) == [("fired", False)] and muted.transitions[0].reason == "silenced"
        resolved_other = store.apply([obs(H0 + HOUR, status="ok", subject="other")], now=H0 + 2 * HOUR)
        assert [n.kind for n in resolved_other.notifications] == ["resolved"]
        after = store.apply([obs(H0 + 3 * HOUR)], now=H0 + 3 * HOUR + MIN)  # silence over, still firing
        assert [(n.kind, n.key) for n in after.notifications] == [("fired", KEY)]
        with pytest.raises(ValueError, match="not in the future"):
            store.silence("x", until=H0, by="carol", now=H0 + HOUR)


def test_unsilence_and_never_notified_resolution_is_quiet(url: str) -> None:
    with AlertStore(url) as store:
        silence = store.silence("*", until=H0 + 10 * HOUR, by="dan", now=H0)
        store.apply([obs(H0)], now=H0 + HOUR)
        quiet = store.apply([obs(H0 + HOUR, status="ok")], now=H0 + 2 * HOUR)
        assert kinds(quiet) == [("resolved", False)] and quiet.transitions[0].reason == "never notified"
        assert store.unsilence(silence.id, now=H0 + 2 * HOUR) and not store.unsilence(silence.id)
        assert store.active_silences(H0 + 3 * HOUR) == []


def test_stale_evidence_is_ignored_and_old_evidence_never_notifies(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0 + 5 * HOUR)], now=H0 + 6 * HOUR)
        store.apply([obs(H0 + 6 * HOUR, status="ok")], now=H0 + 7 * HOUR)
        backfill = store.apply([obs(H0), obs(H0 + HOUR, status="ok")], now=H0 + 8 * HOUR)
        assert backfill.transitions == [], "a backfill of earlier hours reopened the alert"
        old = store.apply([obs(H0 - 100 * HOUR, subject="old")], now=H0)
        assert kinds(old) == [("fired", False)] and "older than max_alert_age_hours" in old.transitions[0].reason


def test_flapping_within_the_window_is_damped(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0)], now=H0 + HOUR)
        store.apply([obs(H0 + HOUR, status="ok")], now=H0 + HOUR + 10 * MIN)
        again = store.apply([obs(H0 + 2 * HOUR)], now=H0 + HOUR + 20 * MIN)
        assert kinds(again) == [("fired", False)] and "dedupe window" in again.transitions[0].reason
        later = store.apply([obs(H0 + 3 * HOUR)], now=H0 + 2 * HOUR + 30 * MIN)
        assert [n.kind for n in later.notifications] == ["fired"], "told once the window passed"


def test_fired_and_recovered_in_one_batch_is_one_transient_notification() -> None:
    result = fold(None, [obs(H0 + HOUR, status="ok"), obs(H0)], H0 + 2 * HOUR, Policy())
    assert [t.kind for t in result.transitions] == ["fired", "resolved"]
    note = result.notification
    assert note is not None and (note.kind, note.transient, note.severity, note.paged) == ("resolved", True,
                                                                                          "critical", False)
    assert result.record is not None and result.record.status == "resolved"


def test_expired_alert_is_closed_with_its_reason(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0)], now=H0 + HOUR)
        gone = Observation("error_rate", "total", "all", "expired", H0 + 30 * HOUR, summary="no verdict")
        result = store.apply([gone], now=H0 + 30 * HOUR)
        assert [n.kind for n in result.notifications] == ["expired"]
        assert store.get([KEY])[KEY].resolution == "expired"


def test_racing_writers_notify_exactly_once(url: str) -> None:
    AlertStore(url).close()  # create the tables first, as the first sensor tick does
    notified: list[str] = []
    barrier = threading.Barrier(4)
    lock = threading.Lock()

    def worker() -> None:
        with AlertStore(url) as store:
            barrier.wait()
            result = store.apply([obs(H0)], now=H0 + HOUR)
            with lock:
                notified.extend(n.key for n in result.notifications)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert notified == [KEY]
    with AlertStore(url) as store:
        record = store.get([KEY])[KEY]
        assert record.notifications == 1 and record.version == 1


def test_paged_bookkeeping(url: str) -> None:
    with AlertStore(url) as store:
        store.apply([obs(H0, subject="a"), obs(H0, subject="b")], now=H0 + HOUR)
        store.mark_paged(["error_rate:total:a", "error_rate:total:b"], True)
        assert store.paged_firing("error_rate") == ["error_rate:total:a", "error_rate:total:b"]
        result = store.apply([obs(H0 + HOUR, status="ok", subject="a")], now=H0 + 2 * HOUR)
        assert result.notifications[0].paged


def test_state_url_defaults_to_a_sqlite_file_under_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "aiobs.toml").write_text("")
    settings = load_settings(tmp_path / "aiobs.toml")
    assert state_url_of(settings) == f"sqlite:///{tmp_path / 'var' / 'alerts.sqlite'}"
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert normalise_url("postgres://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    alerts = AlertSettings.model_validate({"state_url": "postgresql://u:pw-5up3r@h/db"})
    assert "pw-5up3r" not in repr(alerts)
    with pytest.raises(ValueError, match="PostgreSQL only"):
        AlertStore(f"sqlite:///{tmp_path / 'x.sqlite'}", schema="alerts")


@pytest.mark.postgres
def test_state_survives_on_postgresql(postgres_url: str, postgres_schema: str) -> None:
    with AlertStore(postgres_url, schema=postgres_schema) as store:
        assert [n.kind for n in store.apply([obs(H0)], now=H0 + HOUR).notifications] == ["fired"]
    with AlertStore(postgres_url, schema=postgres_schema) as store:
        assert store.get([KEY])[KEY].last_notified_at == (H0 + HOUR).to_pydatetime()
        assert store.apply([obs(H0 + HOUR)], now=H0 + HOUR + 5 * MIN).notifications == []
        assert [n.kind for n in store.apply([obs(H0 + 2 * HOUR, status="ok")], now=H0 + 3 * HOUR)
                .notifications] == ["resolved"]


# ---------------------------------------------------------------- the CLI over the same store


def cli(tmp_path: Path, *argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="aiobs")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--config", str(tmp_path / "aiobs.toml")])
    return args.func(args)


def test_cli_list_ack_silence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "aiobs.toml").write_text("")
    now = pd.Timestamp.now(tz="UTC").floor("h")
    with AlertStore(f"sqlite:///{tmp_path / 'var' / 'alerts.sqlite'}") as store:
        store.apply([obs(now - HOUR), obs(now - HOUR, subject="chat", severity="warning")], now=now)
    assert cli(tmp_path, "alerts", "list") == 0
    out = capsys.readouterr().out
    assert "error_rate:total:all" in out and "error_rate:total:chat" in out and "critical" in out
    assert cli(tmp_path, "alerts", "ack", "error_rate:total:chat", "--by", "eve", "--note", "known") == 0
    assert "acknowledged error_rate:total:chat" in capsys.readouterr().out
    assert cli(tmp_path, "alerts", "ack", "missing:*") == 1
    assert cli(tmp_path, "alerts", "silence", "error_rate:*", "--for", "2h", "--reason", "deploy", "--by", "eve") == 0
    assert "silenced error_rate:*" in capsys.readouterr().out
    assert cli(tmp_path, "alerts", "list", "--json") == 0
    listed = __import__("json").loads(capsys.readouterr().out)
    assert {a["key"]: a["acked_by"] for a in listed["alerts"]} == {"error_rate:total:all": None,
                                                                    "error_rate:total:chat": "eve"}
    assert [s["pattern"] for s in listed["silences"]] == ["error_rate:*"]
    assert cli(tmp_path, "alerts", "silence", "--list") == 0 and "#1 error_rate:*" in capsys.readouterr().out
    assert cli(tmp_path, "alerts", "silence", "--remove", "1") == 0
    assert cli(tmp_path, "alerts", "silence", "x", "--for", "soon") == 2
    assert "not like 30m" in capsys.readouterr().err
    assert cli(tmp_path, "alerts", "list", "--events", "error_rate:total:chat") == 0
    assert "acked" in capsys.readouterr().out
    assert parse_duration("1h30m") == timedelta(minutes=90) and parse_duration("2d") == timedelta(days=2)
