"""`make demo` / `aiobs demo`: generate eight days of exports, materialise the pipeline on the embedded
default (SQLite Dagster instance, DuckDB warehouse), evaluate the sensors and say where to look.

Runs cover a day of hourly partitions each (single-run backfills), through the real jobs of the code
location, so the runs show up in the Dagster UI opened on the same instance afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The demo prints its own progress; Dagster's per-event console log would bury it (the UI keeps it all).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def prepare_dagster_home(workdir: Path) -> Path:
    """Point DAGSTER_HOME at workdir/.dagster_home holding (a link to) the repo's dagster.yaml."""
    home = workdir / ".dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not target.exists():
        try:
            target.symlink_to(source)
        except OSError:
            shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


def evaluate_sensors(defs: object, instance: object, since: datetime) -> list[str]:
    """Evaluate every sensor of the code location once with its real context builder; describe the result."""
    from dagster import RunStatusSensorDefinition, build_sensor_context  # noqa: PLC0415

    from aiobs_pipeline.defs.resources import AiobsSettings  # noqa: PLC0415

    # The landing sensor normally looks back a few hours; widen it to cover the demo's past month.
    hours = int((datetime.now(UTC) - since).total_seconds() // 3600) + 2
    os.environ["AIOBS_INGEST__SENSOR_LOOKBACK_HOURS"] = str(min(hours, 24 * 90))
    lines = []
    for sensor_def in defs.sensors:
        if isinstance(sensor_def, RunStatusSensorDefinition):
            lines.append(f"{sensor_def.name}: watches run outcomes (runs under the daemon, `dagster dev`)")
            continue
        context = build_sensor_context(instance=instance, resources={"aiobs": AiobsSettings()},
                                       definitions=defs)
        result = sensor_def.evaluate_tick(context)
        if not result.run_requests:
            lines.append(f"{sensor_def.name}: skipped ({result.skip_message})")
            continue
        lines.append(f"{sensor_def.name}: {len(result.run_requests)} run requests "
                     f"(e.g. run key {result.run_requests[0].run_key})")
        if sensor_def.job_name != "alert_notification_job":
            continue  # the demo already materialised what the landing sensor asks for
        job = defs.resolve_job_def(sensor_def.job_name)
        for request in result.run_requests:
            run = job.execute_in_process(instance=instance, run_config=request.run_config, raise_on_error=False,
                                         tags={**request.tags, "aiobs/trigger": "demo"})
            lines.append(f"  {job.name} run {run.run_id[:8]}: {'ok' if run.success else 'FAILED'}")
    os.environ.pop("AIOBS_INGEST__SENSOR_LOOKBACK_HOURS", None)
    return lines


def findings(settings: object) -> list[str]:
    """What the pipeline found in the demo data, read back from the warehouse tables."""
    from aiobs_pipeline.warehouse import read_warehouse_table  # noqa: PLC0415

    lines = []
    anomalies = read_warehouse_table(settings, "cost_anomalies", where={"status": ["warning", "critical"]},
                                     order_by=["hour"])
    for row in anomalies.itertuples():
        lines.append(f"cost {row.status}: {row.scope} {row.subject} spent ${row.spend_usd:.2f} in the hour "
                     f"{row.hour:%Y-%m-%d %H:00} ({row.ratio:.1f}x its baseline)")
    breaches = read_warehouse_table(settings, "budget_breaches", where={"first_breach": True}, order_by=["hour"])
    for row in breaches.itertuples():
        lines.append(f"budget: {row.scope} {row.subject} at ${row.spend_usd:.2f} of ${row.budget_usd:.2f} "
                     f"({row.window}) at {row.hour:%Y-%m-%d %H:00} -> {row.recommended_action}")
    flagged = read_warehouse_table(settings, "flagged_responses")
    if len(flagged):
        by = flagged.groupby(["feature", "prompt_version"], dropna=False).size().sort_values(ascending=False)
        for (feature, version), count in by.head(5).items():
            lines.append(f"hallucination risk: {count} high-risk answers of feature {feature}, "
                         f"prompt version {version} (see flagged_responses)")
    summary = read_warehouse_table(settings, "cost_summary", order_by=["day"])
    if len(summary):
        last = summary.iloc[-1]
        lines.append(f"month to date ${last['month_to_date_usd']:.2f}, projected month ${last['projected_month_usd']:.2f}")
    return lines or ["no cost anomalies or budget breaches"]


def run_demo(workdir: Path, days: int = 8, scale: float = 1.0, seed: int = 7) -> int:
    """Run the whole demo; return the process exit status."""
    started = time.monotonic()
    workdir = workdir.resolve()
    os.chdir(workdir)
    home = prepare_dagster_home(workdir)

    from aiobs_pipeline.generate import demo_window, generate  # noqa: PLC0415
    from aiobs_pipeline.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    landing, feedback = settings.landing_root, settings.feedback_root
    if not isinstance(landing, Path) or not isinstance(feedback, Path):
        # The demo deletes and regenerates its roots: never a bucket.
        raise SystemExit("aiobs demo writes its exports to local folders; paths.landing_root and "
                         f"paths.feedback_root are object-store URLs ({landing}, {feedback}): unset them")
    start, end = demo_window(datetime.now(UTC).date())
    start = end - timedelta(days=days) if days != 8 else start

    t = _step(f"generating {days} days of exports ({start:%Y-%m-%d} .. {end:%Y-%m-%d}) into {landing}")
    for folder in (landing, feedback):
        if folder.exists():
            shutil.rmtree(folder)
    summary = generate(landing, start, end, seed=seed, scale=scale, feedback_root=feedback)
    print(f"    {summary.describe() if hasattr(summary, 'describe') else summary}")
    print(f"    done in {time.monotonic() - t:.1f}s", flush=True)

    t = _step("starting the local OpenAI-compatible server for the LLM checks")
    from aiobs_pipeline.llmserver.process import start_llm_server  # noqa: PLC0415

    server = start_llm_server(seed=seed)
    corpus = write_trusted_corpus(settings.resolve(Path("var/trusted_corpus")))
    # The demo's own settings: the local server, not a paid API; the knowledge base as the trusted corpus.
    # A small per-hour call budget spends the re-queries on the riskiest answers only, as in production.
    os.environ.update({"AIOBS_LLM__BASE_URL": server.base_url,
                       "AIOBS_HALLUCINATION__FACT_CHECK__CORPUS_DIR": str(corpus),
                       "AIOBS_HALLUCINATION__CONSISTENCY__MAX_CALLS_PER_HOUR": "15",
                       "AIOBS_HALLUCINATION__FACT_CHECK__MAX_CALLS_PER_HOUR": "15"})
    print(f"    {server.base_url} (stopped when the demo ends); trusted corpus {corpus}", flush=True)
    try:
        return _run_pipeline(settings, home, start, end, started)
    finally:
        server.stop()


def write_trusted_corpus(folder: Path) -> Path:
    """Write the generator's knowledge base as the fact checker's trusted corpus (one Markdown file each)."""
    from aiobs_pipeline.generate.scenario import KNOWLEDGE_BASE  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    for doc in KNOWLEDGE_BASE:
        (folder / f"{doc.doc_id}.md").write_text(f"# {doc.title}\n\n{doc.text}\n")
    return folder


def _run_pipeline(settings: object, home: Path, start: datetime, end: datetime, started: float) -> int:
    """Materialise every day, evaluate the sensors and print what was found."""
    from dagster import DagsterInstance  # noqa: PLC0415

    from aiobs_pipeline.definitions import defs  # noqa: PLC0415 - loads settings and the warehouse

    instance = DagsterInstance.get()
    hourly_job = defs.resolve_job_def("hourly_job")
    daily_job = defs.resolve_job_def("daily_job")
    failures = 0
    # Hourly runs for every day first, then the daily runs: a day's satisfaction counts feedback that
    # arrives up to a day after its answers, so it needs the next day's feedback hours ingested.
    days = [start + timedelta(days=n) for n in range(int((end - start) / timedelta(days=1)))]
    runs = [(hourly_job, f"{d:%Y-%m-%d-%H:%M}", f"{d + timedelta(hours=23):%Y-%m-%d-%H:%M}") for d in days]
    runs += [(daily_job, f"{d:%Y-%m-%d}", f"{d:%Y-%m-%d}") for d in days]
    months = sorted({f"{d:%Y-%m-01}" for d in days if (d + timedelta(days=1)).month != d.month or d == days[-1]})
    monthly_job = defs.resolve_job_def("monthly_job")
    runs += [(monthly_job, month, month) for month in months]
    for job, first, last in runs:
        t = _step(f"{job.name} for {first} .. {last}")
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET,
            tags={"dagster/asset_partition_range_start": first,
                  "dagster/asset_partition_range_end": last, "aiobs/trigger": "demo"},
        )
        failures += 0 if result.success else 1
        print(f"    {'ok' if result.success else 'FAILED'}: run {result.run_id[:8]} in "
              f"{time.monotonic() - t:.1f}s", flush=True)

    t = _step("evaluating sensors on the result")
    for line in evaluate_sensors(defs, instance, start):
        print(f"    {line}")

    _step("results")
    from aiobs_pipeline.warehouse import read_warehouse_table  # noqa: PLC0415

    for table in ("spans", "quarantined_spans", "ingest_audit", "feedback_events", "satisfaction_scores"):
        frame = read_warehouse_table(settings, table)
        print(f"    {table}: {len(frame)} rows")
    quarantine = read_warehouse_table(settings, "quarantined_spans")
    if len(quarantine):
        for reason, count in quarantine["reason"].value_counts().items():
            print(f"      quarantined {reason}: {count}")
    for line in findings(settings):
        print(f"    {line}")
    print("    alerts: .venv/bin/aiobs alerts list   (state in var/alerts.sqlite; runbooks in docs/runbooks/)")
    print(f"    reports: {settings.resolve(settings.paths.reports_dir)} (dashboards/*.html, monthly/*.md|html)")
    print(f"    warehouse: {settings.duckdb_path}")
    print(f"    landing files: {settings.landing_root}")
    print(f"    Dagster instance: {home}")
    print()
    print("Open the Dagster UI on these results with:")
    print(f"    DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml")
    print(f"demo finished in {time.monotonic() - started:.0f}s" + (f" with {failures} failed runs" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_demo(Path.cwd()))
