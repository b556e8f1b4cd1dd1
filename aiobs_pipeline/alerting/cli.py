"""`aiobs alerts list|ack|silence`: look at and manage the persisted alert state from the command line.

`add_parser(subparsers)` registers the `alerts` command on the CLI's argparse subparsers; every handler
returns an exit code (0 ok, 1 nothing matched, 2 bad input or unreachable store) and prints errors to stderr.
The state store is the one the settings name (alerts.state_url, else var/alerts.sqlite under base_dir).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*$")


def parse_duration(text: str) -> timedelta:
    """'90m', '2h', '1d', '1h30m' -> timedelta; raises ValueError naming the text."""
    match = DURATION_RE.match(text or "")
    if not match or not any(match.groups()):
        raise ValueError(f"duration {text!r} is not like 30m, 2h, 1d or 1h30m")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if duration <= timedelta(0):
        raise ValueError(f"duration {text!r} must be positive")
    return duration


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _open_store(args: argparse.Namespace) -> Any:
    """The state store of the settings, or None after printing why not."""
    from aiobs_pipeline.alerting.state import AlertStore  # noqa: PLC0415 - keep `aiobs --help` fast
    from aiobs_pipeline.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        return AlertStore.from_settings(load_settings(args.config))
    except (SettingsError, ValueError, RuntimeError) as error:
        print(f"aiobs alerts: {error}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - a database driver error of any kind: say which and stop
        print(f"aiobs alerts: cannot open the alert state store: {type(error).__name__}: {error}", file=sys.stderr)
    return None


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _record_dict(record: Any) -> dict[str, Any]:
    data = {name: getattr(record, name) for name in record.__dataclass_fields__}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}


def cmd_list(args: argparse.Namespace) -> int:
    """`aiobs alerts list`: open alerts (or all / resolved), active silences, or one key's history."""
    store = _open_store(args)
    if store is None:
        return 2
    with store:
        if args.events:
            events = store.events_for(args.events, limit=args.limit)
            if args.json:
                print(json.dumps(events, default=str, indent=2))
            else:
                for e in events:
                    sink = f" {e['sink']}" if e["sink"] else ""
                    print(f"{_when(e['at'])}  {e['event']:<10}{sink:<11} {e['outcome']:<10} {e['detail'] or ''}")
            return 0 if events else 1
        status = None if args.status == "all" else args.status
        records = store.list_alerts(status=status, rule=args.rule, limit=args.limit)
        silences = store.active_silences()
    if args.json:
        print(json.dumps({"alerts": [_record_dict(r) for r in records],
                          "silences": [{"id": s.id, "pattern": s.pattern, "until": s.until.isoformat(),
                                        "reason": s.reason, "by": s.created_by} for s in silences]},
                         default=str, indent=2))
        return 0
    if not records:
        print(f"no {'' if status is None else status + ' '}alerts")
    else:
        print(f"{'STATUS':<9} {'SEVERITY':<9} {'SINCE':<17} {'EVIDENCE':<17} {'ACK':<4} KEY / SUMMARY")
        for r in records:
            ack = "yes" if r.acked_at else ""
            print(f"{r.status:<9} {r.severity:<9} {_when(r.first_fired_at):<17} {_when(r.last_hour):<17} "
                  f"{ack:<4} {r.key}")
            print(f"{'':<59} {r.summary}")
            links = [lk.get("target") for lk in r.links[:3]]
            if links:
                print(f"{'':<59} -> " + "; ".join(str(x) for x in links))
    if silences:
        print("\nactive silences:")
        for s in silences:
            print(f"  #{s.id} {s.pattern} until {_when(s.until)} by {s.created_by or '?'}"
                  + (f": {s.reason}" if s.reason else ""))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    """`aiobs alerts ack KEY`: acknowledge firing alerts (a glob matches several): no reminders until resolved."""
    store = _open_store(args)
    if store is None:
        return 2
    with store:
        keys = store.ack(args.key, by=args.by, note=args.note)
    if not keys:
        print(f"aiobs alerts ack: no firing alert matches {args.key!r} (see `aiobs alerts list`)", file=sys.stderr)
        return 1
    for key in keys:
        print(f"acknowledged {key}")
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    """`aiobs alerts silence PATTERN --for 2h`: mute matching keys; `--list`, `--remove ID` manage silences."""
    if not args.list and args.remove is None and (not args.pattern or not args.duration):
        print("aiobs alerts silence: give PATTERN and --for DURATION, or --list, or --remove ID", file=sys.stderr)
        return 2
    duration = None
    if args.pattern and not args.list and args.remove is None:
        try:
            duration = parse_duration(args.duration)
        except ValueError as error:
            print(f"aiobs alerts silence: {error}", file=sys.stderr)
            return 2
    store = _open_store(args)
    if store is None:
        return 2
    with store:
        if args.list:
            silences = store.active_silences()
            for s in silences:
                print(f"#{s.id} {s.pattern} until {_when(s.until)} by {s.created_by or '?'}"
                      + (f": {s.reason}" if s.reason else ""))
            if not silences:
                print("no active silences")
            return 0
        if args.remove is not None:
            if store.unsilence(args.remove):
                print(f"silence #{args.remove} ended")
                return 0
            print(f"aiobs alerts silence: no active silence #{args.remove}", file=sys.stderr)
            return 1
        until = datetime.now(UTC) + (duration or timedelta(0))
        silence = store.silence(args.pattern, until, by=args.by, reason=args.reason)
    print(f"silenced {silence.pattern} until {_when(silence.until)} (#{silence.id}); resolutions are still sent")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `alerts list|ack|silence` on the CLI's subparsers; returns the `alerts` parser."""
    parser = subparsers.add_parser("alerts", help="list, acknowledge and silence alerts")
    sub = parser.add_subparsers(dest="alerts_command", required=True)

    def common(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
        p.add_argument("--config", default=None, help="settings file (default: $AIOBS_CONFIG or ./aiobs.toml)")
        p.set_defaults(func=func)

    p = sub.add_parser("list", help="firing alerts (newest evidence, links, ack) and active silences")
    p.add_argument("--status", choices=["firing", "resolved", "all"], default="firing")
    p.add_argument("--rule", default=None, help="only this rule, e.g. error_rate")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--events", metavar="KEY", default=None, help="the event history of one alert key")
    p.add_argument("--json", action="store_true")
    common(p, cmd_list)

    p = sub.add_parser("ack", help="acknowledge firing alerts: no reminders until they resolve or escalate")
    p.add_argument("key", help="alert key, or a glob such as 'cost_spike:user:*'")
    p.add_argument("--note", default=None)
    p.add_argument("--by", default=_whoami())
    common(p, cmd_ack)

    p = sub.add_parser("silence", help="mute alerts matching a glob for a while")
    p.add_argument("pattern", nargs="?", help="alert key glob, e.g. 'no_data:*' or 'error_rate:feature:chat'")
    p.add_argument("--for", dest="duration", default=None, help="how long: 30m, 2h, 1d, 1h30m")
    p.add_argument("--reason", default=None)
    p.add_argument("--by", default=_whoami())
    p.add_argument("--list", action="store_true", help="list active silences")
    p.add_argument("--remove", type=int, default=None, metavar="ID", help="end a silence now")
    common(p, cmd_silence)
    return parser
