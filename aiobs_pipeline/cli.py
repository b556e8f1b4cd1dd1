"""The `aiobs` command line: inspect exports, generate data, forget a user, run the demo.

Every command calls the same domain functions the Dagster assets call; nothing is re-implemented here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

LAYOUT_RE = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")


def _export_hour_for(path: Path) -> datetime:
    """The export hour a file belongs to by the landing layout, else the current hour."""
    match = LAYOUT_RE.search(path.resolve().as_posix())
    if match:
        year, month, day, hour = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, tzinfo=UTC)
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _open_url(url: str) -> tuple[Any, Any, str | None]:
    """(store object, store, error) for an object-store URL (s3://bucket/key, gs://, az://, memory://)."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    from aiobs_pipeline.ingest.storage import StorageError, Store, redact_text  # noqa: PLC0415

    parts = urlsplit(url)
    try:
        store = Store(f"{parts.scheme}://{parts.netloc}")
        return store.object(parts.path.lstrip("/")), store, None
    except FileNotFoundError:
        return None, None, "object does not exist"
    except (StorageError, ValueError, IsADirectoryError, ImportError) as exc:
        return None, None, redact_text(str(exc))


def inspect_file(path: Path | str) -> dict[str, Any]:
    """Read one export file (a path, or an object-store URL) exactly as the pipeline would and summarise it."""
    from aiobs_pipeline.ingest.partition import ingest_files  # noqa: PLC0415 - keep `--help` fast
    from aiobs_pipeline.ingest.storage import StorageError, is_url, redact_text  # noqa: PLC0415

    source: Any = path
    if isinstance(path, str) and is_url(path):
        source, root, error = _open_url(path)
        path = redact_text(path)
        hour = _export_hour_for(Path("/" + source.key)) if source is not None else None
    else:
        path, error = Path(path), None if Path(path).exists() else "file does not exist"
        source, root, hour = path, path.parent, _export_hour_for(path)
    if error is not None:
        return {"file": str(path), "format": None, "readable": False, "error": error,
                "spans": 0, "spans_by_kind": {}, "llm_spans": 0, "input_tokens": 0, "output_tokens": 0,
                "quarantined": 0, "reasons": {}}
    try:
        result = ingest_files([source], hour, root)
    except StorageError as exc:
        return {"file": str(path), "format": None, "readable": False, "error": redact_text(str(exc)),
                "spans": 0, "spans_by_kind": {}, "llm_spans": 0, "input_tokens": 0, "output_tokens": 0,
                "quarantined": 0, "reasons": {}}
    spans, quarantined, audit = result.spans, result.quarantined, result.audit
    llm = spans[spans["kind"] == "llm"]
    file_error = audit["file_error"].iloc[0] if len(audit) else None
    summary: dict[str, Any] = {
        "file": str(path),
        "format": audit["source_format"].iloc[0] if len(audit) else None,
        "readable": not result.unreadable_files,
        "error": file_error if isinstance(file_error, str) else None,
        "records_read": int(audit["records_read"].sum()),
        "spans": len(spans),
        "spans_by_kind": {str(k): int(v) for k, v in spans["kind"].value_counts().sort_index().items()},
        "llm_spans": len(llm),
        "input_tokens": int(llm["input_tokens"].fillna(0).sum()),
        "output_tokens": int(llm["output_tokens"].fillna(0).sum()),
        "start": spans["start_time"].min().isoformat() if len(spans) else None,
        "end": spans["start_time"].max().isoformat() if len(spans) else None,
        "users": sorted(str(u) for u in spans["user_id"].dropna().unique()),
        "models": sorted(str(m) for m in spans["model"].dropna().unique()),
        "quarantined": len(quarantined),
        "reasons": {str(k): int(v) for k, v in quarantined["reason"].value_counts().sort_index().items()},
        "quarantined_rows": [
            {"line": None if pd.isna(r.source_line) else int(r.source_line), "reason": r.reason, "detail": r.detail}
            for r in quarantined.head(20).itertuples()
        ],
    }
    return summary


def _print_inspection(summary: dict[str, Any]) -> None:
    print(f"{summary['file']}")
    if summary.get("error") and not summary["readable"]:
        print(f"  cannot read: {summary['error']}")
        return
    print(f"  format:        {summary['format'] or 'unknown'}")
    print(f"  records read:  {summary.get('records_read', 0)}")
    kinds = ", ".join(f"{k} {v}" for k, v in summary["spans_by_kind"].items()) or "none"
    print(f"  spans:         {summary['spans']} ({kinds})")
    print(f"  LLM calls:     {summary['llm_spans']} ({summary['input_tokens']} input tokens, "
          f"{summary['output_tokens']} output tokens)")
    if summary["start"]:
        print(f"  time range:    {summary['start']} .. {summary['end']}")
    users = summary["users"]
    print(f"  users:         {len(users)}" + (f" ({', '.join(users[:10])}{', ...' if len(users) > 10 else ''})"
                                              if users else ""))
    if summary["models"]:
        print(f"  models:        {', '.join(summary['models'])}")
    print(f"  quarantined:   {summary['quarantined']}")
    for reason, count in summary["reasons"].items():
        print(f"    {reason}: {count}")
    for row in summary["quarantined_rows"][:10]:
        print(f"    - {row['detail']}")
    if summary.get("error"):
        print(f"  warning: {summary['error']}")


def cmd_inspect(args: argparse.Namespace) -> int:
    """`aiobs inspect`: per file, what the pipeline would make of it; exit 1 if a file is unreadable."""
    status = 0
    for name in args.files:
        if name.lower().startswith("file://"):
            from urllib.parse import unquote, urlsplit  # noqa: PLC0415

            name = unquote(urlsplit(name).path)
        summary = inspect_file(name if "://" in name else Path(name))
        if not summary["readable"]:
            status = 1
        if args.json:
            if not args.verbose:
                summary.pop("quarantined_rows", None)
            print(json.dumps(summary, default=str))
        else:
            _print_inspection(summary)
    return status


def _parse_when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_generate(args: argparse.Namespace) -> int:
    """`aiobs generate`: write realistic exports in every format for a time range."""
    from aiobs_pipeline.generate import demo_window, generate  # noqa: PLC0415

    if args.start and args.end:
        start, end = _parse_when(args.start), _parse_when(args.end)
    elif args.start or args.end:
        print("aiobs generate: give both --start and --end, or neither for the demo window", file=sys.stderr)
        return 2
    else:
        start, end = demo_window(datetime.now(UTC).date())
    if end <= start:
        print(f"aiobs generate: --end {end} is not after --start {start}", file=sys.stderr)
        return 2
    summary = generate(Path(args.landing), start, end, seed=args.seed, scale=args.scale,
                       feedback_root=Path(args.feedback) if args.feedback else None,
                       incidents=[] if args.no_incidents else None,
                       inject_bad_records=args.inject_bad_records)
    print(summary.describe() if hasattr(summary, "describe") else summary)
    return 0


def cmd_trace_show(args: argparse.Namespace) -> int:
    """`aiobs trace show`: print a trace's span tree with latency and cost, from the warehouse."""
    from aiobs_pipeline.costs import build_tree, render_tree, tree_to_dict  # noqa: PLC0415
    from aiobs_pipeline.settings import SettingsError, load_settings  # noqa: PLC0415
    from aiobs_pipeline.warehouse import WarehouseError, read_warehouse_table  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
        spans = read_warehouse_table(settings, "priced_spans", where={"trace_id": args.trace_id},
                                     order_by=["start_time"])
    except (SettingsError, WarehouseError, ValueError) as exc:
        print(f"aiobs trace show: {exc}", file=sys.stderr)
        return 2
    if spans.empty:
        print(f"aiobs trace show: trace {args.trace_id!r} not found in priced_spans "
              f"({settings.warehouse.kind} warehouse{'' if settings.warehouse.kind != 'duckdb' else ' ' + str(settings.duckdb_path)}); "
              "has its export hour been materialised?", file=sys.stderr)
        return 1
    tree = build_tree(spans)
    print(json.dumps(tree_to_dict(tree), default=str, indent=2) if args.json else render_tree(tree))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`aiobs demo`: generate the demo data, materialise everything, evaluate the sensors, print where to look."""
    from aiobs_pipeline.demo import run_demo  # noqa: PLC0415

    return run_demo(workdir=Path(args.workdir), days=args.days, scale=args.scale, seed=args.seed)


def _print_forget(report: Any, audit: Path | None) -> None:
    verb = "would remove" if report.dry_run else "removed"
    for item in report.items:
        if item.action in ("left_in_place", "mentions_left", "unreadable_kept", "versions_kept"):
            continue
        detail = f" ({item.detail})" if item.detail else ""
        print(f"  {item.store:<17} {item.location:<60} {verb} {item.count} {item.unit} [{item.action}]{detail}")
    for item in report.items:
        if item.action in ("left_in_place", "mentions_left", "unreadable_kept", "versions_kept"):
            print(f"  {item.store:<17} {item.location:<60} NOT removed: {item.detail}")
    if audit is not None:
        print(f"audit: {audit} and table forget_audit (request {report.request_id})")


def cmd_forget(args: argparse.Namespace) -> int:
    """`aiobs forget --user ID`: delete a user's data everywhere and write an audit record."""
    from aiobs_pipeline.governance.forget import ForgetError, forget_user  # noqa: PLC0415
    from aiobs_pipeline.settings import SettingsError, load_settings  # noqa: PLC0415
    from aiobs_pipeline.warehouse import WarehouseError  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
        report, audit = forget_user(settings, args.user, dry_run=args.dry_run)
    except (SettingsError, WarehouseError, ForgetError, OSError) as exc:
        print(f"aiobs forget: {exc}", file=sys.stderr)
        return 2
    if not report.removed:
        print(f"aiobs forget: nothing found for user {args.user!r} in the {report.warehouse} warehouse, the "
              "landing and feedback files, the eval datasets or the alert store")
        _print_forget(report, audit)
        return 0
    head = "dry run, nothing deleted" if args.dry_run else "forgotten"
    print(f"aiobs forget: user {args.user!r} {head}: {report.removed} rows, records and cases")
    _print_forget(report, audit)
    if report.left_behind:
        print(f"aiobs forget: {len(report.left_behind)} places still hold traces of the user (listed above)",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every `aiobs` command."""
    parser = argparse.ArgumentParser(prog="aiobs", description="Observability for LLM applications, on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="read export files as the pipeline would and summarise them")
    p.add_argument("files", nargs="+", metavar="FILE", help="a path, or an object URL (s3://bucket/key, gs://, az://)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--verbose", action="store_true", help="with --json, include quarantined rows")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("generate", help="write realistic trace exports in all formats")
    p.add_argument("--landing", default="var/landing", help="landing root (default var/landing)")
    p.add_argument("--feedback", default=None, help="feedback landing root (default: no feedback files)")
    p.add_argument("--start", help="UTC start, ISO-8601 (default: the demo window)")
    p.add_argument("--end", help="UTC end, ISO-8601")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0, help="volume multiplier (1.0 = light traffic)")
    p.add_argument("--no-incidents", action="store_true", help="ordinary traffic only")
    p.add_argument("--inject-bad-records", action="store_true",
                   help="also write malformed records (listed in _ground_truth.json) to exercise quarantine")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("trace", help="look at one trace")
    trace_sub = p.add_subparsers(dest="trace_command", required=True)
    p = trace_sub.add_parser("show", help="print a trace's span tree with latency and cost")
    p.add_argument("trace_id")
    p.add_argument("--json", action="store_true", help="the tree as JSON")
    p.add_argument("--config", default=None, help="settings file (default: $AIOBS_CONFIG or ./aiobs.toml)")
    p.set_defaults(func=cmd_trace_show)

    from aiobs_pipeline.llmserver import add_arguments, run_from_args  # noqa: PLC0415 - stdlib only

    p = sub.add_parser("llm-server", help="run the local OpenAI-compatible server (tests and the demo)")
    add_arguments(p)
    p.set_defaults(func=run_from_args)

    from aiobs_pipeline.alerting.cli import add_parser as add_alerts_parser  # noqa: PLC0415

    add_alerts_parser(sub)
    from aiobs_pipeline.evals.cli import add_parser as add_eval_parser  # noqa: PLC0415

    add_eval_parser(sub)

    p = sub.add_parser("forget", help="delete one user's data from the warehouse, landing files, eval datasets "
                                      "and alert state, with an audit record")
    p.add_argument("--user", required=True, help="the user id as spans carry it (user_id)")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed, change nothing")
    p.add_argument("--config", default=None, help="settings file (default: $AIOBS_CONFIG or ./aiobs.toml)")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("demo", help="generate demo data and materialise the whole pipeline on it")
    p.add_argument("--workdir", default=".", help="project folder holding var/ and .dagster_home/")
    p.add_argument("--days", type=int, default=8)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aiobs` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
