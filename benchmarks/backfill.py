"""A 24-hour backfill through ingest and costs on PostgreSQL: multiprocess executor, Celery workers, one loop.

Run: python -m benchmarks.backfill [--spans-per-hour 100000] [--hours 24] [--workers 2] [--json]

Writes `--hours` export hours of `--spans-per-hour` synthetic native spans each (benchmarks/synth.py), creates
a fresh PostgreSQL database for the Dagster instance (dagster-postgres storage) and a fresh warehouse schema
per mode, then times the job `ingest_costs_job` (spans, quarantined_spans, ingest_audit, priced_spans,
hourly_costs) over every hour, three ways, in this order:
  (c) loop:         one process runs the partitions one after another (one in-process run each);
  (a) multiprocess: the hours split into ranges of `--partitions-per-run`, each range one run (as
                    `BackfillPolicy.multi_run` would split it), `--workers` runs at a time, each step in its
                    own process (Dagster's multiprocess executor);
  (b) celery:       the same ranges and runs on the Celery executor, steps executed by `--workers` Celery
                    worker processes (`dagster-celery worker start`, broker from AIOBS_EXECUTION__CELERY_BROKER
                    or RabbitMQ on 127.0.0.1), started before the timing starts.
Each mode's time is wall clock from launching its first run to the end of its last, process start-up included.
It prints seconds, spans/s, the speed-up over (c), where the step time went (loading inputs from PostgreSQL,
computing, writing outputs), and whether the target (the backfill in under 5 minutes on 2 cores) is met.
Everything created (landing files, database, schemas) is removed afterwards unless --keep.

The helpers (`BackfillEnv`, `celery_workers`, `run_ranges`, `run_loop`) are what
tests/integration/test_celery_backfill.py runs too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiobs_pipeline.execution import BACKEND_ENV, BROKER_ENV, DEFAULT_BACKEND, DEFAULT_BROKER, QUEUE_ENV
from aiobs_pipeline.warehouse.postgres import drop_schema, transaction
from aiobs_pipeline.warehouse.tables import qualified_name

ROOT = Path(__file__).resolve().parents[1]
JOB = "ingest_costs_job"
FIRST_HOUR = datetime(2026, 10, 1, 0, tzinfo=UTC)
TARGET_SECONDS = 300.0
FULL_SIZE = 100_000
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "AIOBS_TEST_POSTGRES_URL"
INSTANCE_URL_ENV = "AIOBS_BENCH_DAGSTER_PG_URL"
WORKER_CONFIG = ROOT / "deploy" / "dagster.celery.yaml"
MODE_TAG = "aiobs/bench-mode"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Bytes per synthetic span on disk, with headroom, for the free-disk check.
BYTES_PER_SPAN = 2300


def partition_keys(first: datetime, hours: int) -> list[str]:
    """Hourly partition keys (the format of `hourly_partitions`) of `hours` hours from `first`."""
    return [f"{first + timedelta(hours=i):%Y-%m-%d-%H:%M}" for i in range(hours)]


def split_ranges(keys: Sequence[str], per_run: int) -> list[tuple[str, str]]:
    """Consecutive (first, last) key ranges of at most `per_run` partitions each."""
    if per_run < 1:
        raise ValueError(f"partitions per run must be at least 1, got {per_run}")
    return [(keys[i], keys[min(i + per_run, len(keys)) - 1]) for i in range(0, len(keys), per_run)]


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@contextlib.contextmanager
def temporary_database(server_url: str, prefix: str = "aiobs_dagster") -> Iterator[str]:
    """Create a fresh database on the server of `server_url`, yield its URL, drop it afterwards."""
    import psycopg2  # noqa: PLC0415

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = psycopg2.connect(server_url, connect_timeout=5)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server_url, name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()


def write_instance_config(dagster_home: Path) -> Path:
    """A dagster.yaml with run, event and schedule storage on PostgreSQL (URL from INSTANCE_URL_ENV)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    # The URL stays in the environment, not in this file, as deploy/dagster.postgres.yaml does it.
    path.write_text(
        "telemetry:\n  enabled: false\n"
        f"storage:\n  postgres:\n    postgres_url:\n      env: {INSTANCE_URL_ENV}\n",
        encoding="utf-8",
    )
    return path


def _psycopg2_scheme(url: str) -> str:
    """SQLAlchemy 2.1 picks psycopg 3 for postgresql://; dagster-postgres ships psycopg2."""
    scheme, rest = url.split("://", 1)
    return url if "+" in scheme else f"postgresql+psycopg2://{rest}"


def broker_error(url: str | None = None) -> str | None:
    """Why the Celery broker cannot be reached (None when it can); the URL's password is never shown."""
    from kombu import Connection  # noqa: PLC0415

    url = url or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as error:  # noqa: BLE001 - any failure to connect means the broker is unusable
        return f"Celery broker {url.rsplit('@', 1)[-1]} is not reachable ({type(error).__name__}: {error})"
    return None


@dataclass
class BackfillEnv:
    """Where one backfill runs: Dagster instance home and database, landing files and warehouse schema."""

    dagster_home: Path
    instance_url: str
    landing_root: Path
    warehouse_url: str
    schema: str
    extra: dict[str, str] = field(default_factory=dict)
    # A queue of its own: another backfill (or test run) on the same broker must not take these steps.
    queue: str = field(default_factory=lambda: f"aiobs-bench-{uuid.uuid4().hex[:10]}")

    def env(self, executor: str) -> dict[str, str]:
        """Environment of every process of the backfill (run processes and Celery workers alike)."""
        venv_bin = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "DAGSTER_HOME": str(self.dagster_home),
            INSTANCE_URL_ENV: _psycopg2_scheme(self.instance_url),
            "AIOBS_WAREHOUSE__KIND": "postgres",
            "AIOBS_WAREHOUSE__POSTGRES_URL": self.warehouse_url,
            "AIOBS_WAREHOUSE__SCHEMA_NAME": self.schema,
            "AIOBS_PATHS__LANDING_ROOT": str(self.landing_root),
            "AIOBS_EXECUTION__EXECUTOR": executor,
            # Workers read deploy/dagster.celery.yaml, which takes both URLs from the environment.
            BROKER_ENV: os.environ.get(BROKER_ENV) or DEFAULT_BROKER,
            BACKEND_ENV: os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND,
            QUEUE_ENV: self.queue,
            "GX_ANALYTICS_ENABLED": "false",
            "DAGSTER_DISABLE_TELEMETRY": "true",
            **self.extra,
        }


@contextlib.contextmanager
def celery_workers(backfill: BackfillEnv, count: int, log_dir: Path, timeout: float = 120.0) -> Iterator[list[int]]:
    """Start `count` Celery worker processes (one task at a time each), wait until they are ready, yield their
    process ids; terminate them (and their pool children) on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = backfill.env("celery")
    dagster_celery = str(Path(sys.executable).parent / "dagster-celery")
    workers: list[tuple[subprocess.Popen, Path]] = []
    errors = []
    try:
        deadline = time.monotonic() + timeout
        for number in range(1, count + 1):
            log = log_dir / f"worker-{number}.log"
            # -i imports the code location when the worker starts, not when its first step arrives.
            args = [dagster_celery, "worker", "start", "-A", "dagster_celery.app", "-y", str(WORKER_CONFIG),
                    "-n", f"aiobs-{number}-{uuid.uuid4().hex[:6]}", "-q", backfill.queue,
                    "-i", "aiobs_pipeline.definitions",
                    "-l", "INFO", "--", "--concurrency=1", f"--logfile={log}"]
            # A session of its own, so the worker and its pool child are ended together by group id.
            errors.append(open(log.with_suffix(".err"), "wb"))  # noqa: SIM115 - closed in finally
            process = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=errors[-1])
            workers.append((process, log))
            if number == 1:
                # The first worker creates the instance's tables on a fresh database; workers started beside
                # it raced it there (both ran CREATE TABLE alembic_version, and one exited).
                _wait_ready(process, log, deadline, timeout)
        for process, log in workers[1:]:
            _wait_ready(process, log, deadline, timeout)
        yield [process.pid for process, _ in workers]
    finally:
        for process, _ in workers:
            _end_group(process)
        for handle in errors:
            handle.close()


def _wait_ready(process: subprocess.Popen, log: Path, deadline: float, timeout: float) -> None:
    """Wait until a Celery worker's log says it is ready; raise naming its logs if it exits or times out."""
    while not (log.is_file() and " ready." in log.read_text(errors="replace")):
        if process.poll() is not None:
            raise RuntimeError(f"Celery worker exited with code {process.returncode}; see {log} and "
                               f"{log.with_suffix('.err')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Celery worker not ready after {timeout:.0f} s; see {log}")
        time.sleep(0.25)


def _end_group(process: subprocess.Popen) -> None:
    """Terminate the process group this helper started (warm shutdown first, then kill)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _launch(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.backfill", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(processes: list[subprocess.Popen], what: str) -> None:
    failures = []
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            failures.append(err.strip()[-4000:])
    if failures:
        raise RuntimeError(f"{what} failed:\n" + "\n---\n".join(failures))


def run_ranges(backfill: BackfillEnv, executor: str, ranges: Sequence[tuple[str, str]], concurrent_runs: int,
               mode: str | None = None) -> float:
    """Run one Dagster run per partition range on `executor`, `concurrent_runs` at a time (each launcher
    process takes every n-th range); return the wall-clock seconds until the last run ended."""
    env = backfill.env(executor)
    lanes = [ranges[i::concurrent_runs] for i in range(min(concurrent_runs, len(ranges)))]
    started = time.perf_counter()
    processes = [_launch(["--child", "runs", "--mode", mode or executor,
                          *[f"{first}/{last}" for first, last in lane]], env) for lane in lanes]
    _collect(processes, f"the {executor} backfill")
    return time.perf_counter() - started


def run_loop(backfill: BackfillEnv, keys: Sequence[str], mode: str = "loop") -> float:
    """Run the partitions one after another in one process (one in-process run each); return the seconds."""
    started = time.perf_counter()
    _collect([_launch(["--child", "loop", "--mode", mode, *keys], backfill.env("in_process"))], "the loop")
    return time.perf_counter() - started


def _child_runs(mode: str, items: list[str]) -> None:
    """Launcher process: execute one run per range through the instance on the job's configured executor."""
    from dagster import DagsterInstance, execute_job  # noqa: PLC0415
    from dagster._core.definitions.reconstruct import ReconstructableRepository  # noqa: PLC0415

    # The same pointer workspace.yaml uses, so Celery workers and step processes load the same code.
    job = ReconstructableRepository.for_module("aiobs_pipeline.definitions", "defs",
                                               working_directory=str(ROOT)).get_reconstructable_job(JOB)
    with DagsterInstance.get() as instance:
        for item in items:
            first, last = item.split("/")
            result = execute_job(job, instance, tags={RANGE_START: first, RANGE_END: last, MODE_TAG: mode})
            if not result.success:
                raise SystemExit(f"run {result.run_id} over {first}..{last} failed: "
                                 f"{_failure(instance, result.run_id)}")


def _child_loop(mode: str, keys: list[str]) -> None:
    """Loop process: one in-process run per partition, in order, in this one process."""
    from dagster import DagsterInstance  # noqa: PLC0415

    from aiobs_pipeline.definitions import defs  # noqa: PLC0415

    job = defs.resolve_job_def(JOB)
    with DagsterInstance.get() as instance:
        for key in keys:
            result = job.execute_in_process(partition_key=key, instance=instance, tags={MODE_TAG: mode},
                                            raise_on_error=False)
            if not result.success:
                raise SystemExit(f"run {result.run_id} of {key} failed: {_failure(instance, result.run_id)}")


def _failure(instance: Any, run_id: str) -> str:
    """The first step failure's message of a run, for the error report."""
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE", "PIPELINE_FAILURE"):
            return f"{event.step_key or 'run'}: {event.message}"
    return "no failure event recorded"


def step_breakdown(instance: Any, mode: str) -> dict[str, Any]:
    """Where the time of a mode's runs went, from the instance's event log: per step, seconds in total,
    loading inputs (PostgreSQL reads), writing outputs (IO manager) and the rest (compute)."""
    from dagster import DagsterRunStatus, RunsFilter  # noqa: PLC0415

    runs = instance.get_runs(RunsFilter(tags={MODE_TAG: mode}))
    steps: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    run_seconds = 0.0
    for run in runs:
        if run.status != DagsterRunStatus.SUCCESS:
            raise RuntimeError(f"run {run.run_id} of mode {mode} ended {run.status.value}")
        times: dict[str, dict[str, Any]] = defaultdict(lambda: {"outputs": {}, "loaded": None})
        run_start = run_end = None
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None:
                continue
            kind, at = event.event_type_value, record.timestamp
            # The event log still stores run events under their old PIPELINE_* names.
            if kind in ("RUN_START", "PIPELINE_START"):
                run_start = at
            elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
                run_end = at
            if event.step_key is None:
                continue
            step = times[event.step_key]
            if kind == "STEP_START":
                step["start"] = at
            elif kind == "LOADED_INPUT":
                step["loaded"] = at
            elif kind == "STEP_OUTPUT":
                step["outputs"][event.event_specific_data.step_output_handle.output_name] = at
            elif kind == "HANDLED_OUTPUT":
                name = event.event_specific_data.output_name
                step["write"] = step.get("write", 0.0) + at - step["outputs"].get(name, at)
            elif kind == "STEP_SUCCESS":
                step["end"] = at
        if run_start is not None and run_end is not None:
            run_seconds += run_end - run_start
        for key, step in times.items():
            if "start" not in step or "end" not in step:
                continue
            name = key.split("[")[0]
            total = step["end"] - step["start"]
            load = (step["loaded"] - step["start"]) if step["loaded"] else 0.0
            write = step.get("write", 0.0)
            steps[name]["seconds"] += total
            steps[name]["load_seconds"] += load
            steps[name]["write_seconds"] += write
            steps[name]["compute_seconds"] += max(total - load - write, 0.0)
    return {"runs": len(runs), "run_seconds": round(run_seconds, 2),
            "steps": {name: {k: round(v, 2) for k, v in values.items()} for name, values in sorted(steps.items())}}


def _load() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def _write_hour(args: tuple[Path, int, datetime, int]) -> int:
    from aiobs_pipeline.ingest.partition import landing_folder  # noqa: PLC0415
    from benchmarks.synth import write_native_spans  # noqa: PLC0415

    root, spans, hour, seed = args
    folder = landing_folder(root, hour)
    folder.mkdir(parents=True, exist_ok=True)
    return write_native_spans(folder / "spans.jsonl", spans, hour, seed=seed)


def write_landing(root: Path, hours: int, spans_per_hour: int, processes: int = 2) -> int:
    """Write `hours` export hours of synthetic native spans from FIRST_HOUR; return the bytes written."""
    jobs = [(root, spans_per_hour, FIRST_HOUR + timedelta(hours=i), 7 + i) for i in range(hours)]
    with ProcessPoolExecutor(max_workers=max(1, processes)) as pool:
        return sum(pool.map(_write_hour, jobs))


def count_rows(url: str, schema: str, tables: Sequence[str]) -> dict[str, int]:
    """Row counts of warehouse tables (0 for a table that was never written)."""
    counts = {}
    with transaction(url, connect_timeout=5) as connection, connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT to_regclass(%s)", [qualified_name(schema, table)])
            if cursor.fetchone()[0] is None:
                counts[table] = 0
                continue
            cursor.execute(f"SELECT count(*) FROM {qualified_name(schema, table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def benchmark(spans_per_hour: int, hours: int, workers: int, partitions_per_run: int, workdir: Path,
              server_url: str, keep: bool = False) -> dict[str, Any]:
    """Generate the hours, time the three modes and return the figures."""
    from dagster import DagsterInstance  # noqa: PLC0415

    keys = partition_keys(FIRST_HOUR, hours)
    ranges = split_ranges(keys, partitions_per_run)
    landing = workdir / "landing"
    free = shutil.disk_usage(workdir).free
    if free < spans_per_hour * hours * BYTES_PER_SPAN:
        raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, the benchmark needs about "
                         f"{spans_per_hour * hours * BYTES_PER_SPAN / 1e9:.1f} GB; pass --workdir or fewer spans")
    problem = broker_error()
    if problem:
        raise SystemExit(f"{problem}; start RabbitMQ or set {BROKER_ENV}")
    started = time.perf_counter()
    size = write_landing(landing, hours, spans_per_hour, processes=workers)
    figures: dict[str, Any] = {
        "spans_per_hour": spans_per_hour, "hours": hours, "spans": spans_per_hour * hours, "file_bytes": size,
        "generate_seconds": round(time.perf_counter() - started, 2), "workers": workers,
        "partitions_per_run": partitions_per_run, "runs": len(ranges), "cores": os.cpu_count(),
        "target_seconds": TARGET_SECONDS, "modes": {},
    }
    tables = ("spans", "quarantined_spans", "ingest_audit", "priced_spans", "hourly_costs")
    with temporary_database(server_url) as instance_url:
        home = workdir / "dagster_home"
        write_instance_config(home)
        schemas = {mode: f"aiobs_bench_{mode}_{uuid.uuid4().hex[:8]}" for mode in ("loop", "multiprocess", "celery")}
        figures["schemas"] = schemas
        figures["instance_database"] = urlsplit(instance_url).path.lstrip("/")
        envs = {mode: BackfillEnv(home, instance_url, landing, server_url, schema)
                for mode, schema in schemas.items()}
        try:
            # Other work on the machine slows every mode; the load average before each one is reported.
            load = {"loop": _load()}
            seconds = {"loop": run_loop(envs["loop"], keys)}
            load["multiprocess"] = _load()
            seconds["multiprocess"] = run_ranges(envs["multiprocess"], "multiprocess", ranges, workers)
            with celery_workers(envs["celery"], workers, workdir / "celery-logs"):
                load["celery"] = _load()
                seconds["celery"] = run_ranges(envs["celery"], "celery", ranges, workers)
            os.environ[INSTANCE_URL_ENV] = _psycopg2_scheme(instance_url)
            with DagsterInstance.from_config(str(home)) as instance:
                for mode, value in seconds.items():
                    rows = count_rows(server_url, schemas[mode], tables)
                    figures["modes"][mode] = {
                        "seconds": round(value, 2), "spans_per_s": round(figures["spans"] / value, 1),
                        "speedup_vs_loop": round(seconds["loop"] / value, 2), "target_met": value < TARGET_SECONDS,
                        "load_before": load[mode], "rows": rows, **step_breakdown(instance, mode),
                    }
        finally:
            if not keep:
                for schema in schemas.values():
                    drop_schema(server_url, schema)
    return figures


def report(figures: dict[str, Any]) -> str:
    """The figures as the lines `make bench` prints."""
    labels = {"loop": "(c) one process, partition loop", "multiprocess": "(a) multiprocess executor",
              "celery": f"(b) Celery, {figures['workers']} workers"}
    lines = [
        f"aiobs backfill benchmark: {figures['hours']} hourly partitions x {figures['spans_per_hour']:,} native "
        f"spans = {figures['spans']:,} spans, {figures['file_bytes'] / 1e9:.2f} GB (written in "
        f"{figures['generate_seconds']:.1f} s); job {JOB} on PostgreSQL; {figures['cores']} cores; "
        f"(a) and (b): {figures['runs']} runs of {figures['partitions_per_run']} partitions, "
        f"{figures['workers']} at a time",
    ]
    for mode in ("loop", "multiprocess", "celery"):
        m = figures["modes"][mode]
        lines.append(f"  {labels[mode]:<34} {m['seconds']:8.1f} s {m['spans_per_s']:>9,.0f} spans/s   "
                     f"x{m['speedup_vs_loop']:.2f} vs (c)   {m['runs']} runs   load before {m['load_before']:.1f}")
        for step, s in m["steps"].items():
            lines.append(f"      {step:<22} {s['seconds']:7.1f} s step time: load inputs {s['load_seconds']:6.1f} s, "
                         f"compute {s['compute_seconds']:6.1f} s, write outputs {s['write_seconds']:6.1f} s")
    rows = {mode: figures["modes"][mode]["rows"] for mode in figures["modes"]}
    same = len({json.dumps(r, sort_keys=True) for r in rows.values()}) == 1
    lines.append(f"  rows per table {'identical in every mode' if same else 'DIFFER between modes'}: "
                 + ", ".join(f"{t} {n:,}" for t, n in rows["loop"].items()))
    best = min(("multiprocess", "celery"), key=lambda k: figures["modes"][k]["seconds"])
    best_s = figures["modes"][best]["seconds"]
    lines.append(f"  target: the {figures['hours']}-partition backfill in under {figures['target_seconds'] / 60:.0f} "
                 f"minutes on 2 cores: {'met' if best_s < figures['target_seconds'] else 'NOT met'} "
                 f"(best: {best}, {best_s:.1f} s)"
                 + ("" if figures["spans_per_hour"] >= FULL_SIZE else
                    f"; the target is set for {FULL_SIZE:,} spans/hour, this run had {figures['spans_per_hour']:,}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: run the benchmark (or, internally, one of its run processes)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spans-per-hour", type=int, default=100_000, help="spans per export hour (100,000)")
    parser.add_argument("--hours", type=int, default=24, help="hourly partitions to backfill (24)")
    parser.add_argument("--workers", type=int, default=2,
                        help="Celery workers, and runs at a time on both executors (2)")
    # 4 hours of 100,000 spans make a step of about 1.5 GB of DataFrames; 12 (hours / workers) would be
    # fewer runs but two steps of ~5 GB each at once.
    parser.add_argument("--partitions-per-run", type=int, default=4, help="partitions per run on (a) and (b) (4)")
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL),
                        help=f"PostgreSQL server (a database it may create databases on); env {POSTGRES_ENV}")
    parser.add_argument("--workdir", type=Path, help="folder for landing files and logs (default: temporary)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep landing files and warehouse schemas")
    parser.add_argument("--child", choices=("runs", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("items", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "runs":
        _child_runs(args.mode, args.items)
        return
    if args.child == "loop":
        _child_loop(args.mode, args.items)
        return
    for name in ("spans_per_hour", "hours", "workers", "partitions_per_run"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="aiobs-backfill-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        figures = benchmark(args.spans_per_hour, args.hours, args.workers, args.partitions_per_run, workdir, args.postgres_url,
                            keep=args.keep)
    finally:
        if not args.keep:
            shutil.rmtree(workdir if temporary else workdir / "landing", ignore_errors=True)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    main()
