"""A small demo instance and a `dagster dev` process on it, for the browser test of the Dagster UI.

`aiobs demo` covers whole days (24 hourly partitions at least, over two minutes on 2 cores), so this builds the
same kind of instance from the functions the demo calls, over a few hours: landing and feedback files from the
generator, the demo's local LLM server and trusted corpus, and the code location's real jobs run on the
instance (hourly, daily, monthly), so the UI opened on it shows runs, checks and report metadata.

Run as a script (in its own process, because it changes the working directory and the environment):
`python tests/integration/dagster_ui_instance.py --workdir DIR --hours 6 --materialise 3`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
MANIFEST = "ui_instance.json"


def demo_hours(hours: int, today: datetime | None = None) -> list[datetime]:
    """The first `hours` export hours of the last day of the demo window (the day the demo's incidents are on)."""
    from aiobs_pipeline.generate import demo_window  # noqa: PLC0415

    _, end = demo_window((today or datetime.now(UTC)).date())
    first = end - timedelta(days=1)
    return [first + timedelta(hours=n) for n in range(hours)]


def build(workdir: Path, hours: int, materialise: int, scale: float, seed: int) -> dict[str, list[str]]:
    """Generate `hours` export hours into workdir/var and run the demo's jobs over the first `materialise`.

    Writes workdir/ui_instance.json: the hourly partition keys generated and those materialised.
    """
    if not 1 <= materialise <= hours <= 24:
        raise ValueError(f"need 1 <= materialise ({materialise}) <= hours ({hours}) <= 24")
    workdir = workdir.resolve()
    os.chdir(workdir)  # settings resolve var/ against the working directory, as `dagster dev` will
    from aiobs_pipeline.demo import QUIET, prepare_dagster_home, write_trusted_corpus  # noqa: PLC0415
    from aiobs_pipeline.generate import generate  # noqa: PLC0415
    from aiobs_pipeline.llmserver.process import start_llm_server  # noqa: PLC0415
    from aiobs_pipeline.settings import get_settings  # noqa: PLC0415

    prepare_dagster_home(workdir)
    settings = get_settings()
    window = demo_hours(hours)
    generate(settings.landing_root, window[0], window[-1] + timedelta(hours=1), seed=seed, scale=scale,
             feedback_root=settings.feedback_root)
    server = start_llm_server(seed=seed)
    corpus = write_trusted_corpus(settings.resolve(Path("var/trusted_corpus")))
    # The demo's LLM settings (aiobs_pipeline/demo.py): the local server and a small call budget per hour.
    os.environ.update({"AIOBS_LLM__BASE_URL": server.base_url,
                       "AIOBS_HALLUCINATION__FACT_CHECK__CORPUS_DIR": str(corpus),
                       "AIOBS_HALLUCINATION__CONSISTENCY__MAX_CALLS_PER_HOUR": "5",
                       "AIOBS_HALLUCINATION__FACT_CHECK__MAX_CALLS_PER_HOUR": "5"})
    try:
        from dagster import DagsterInstance  # noqa: PLC0415

        from aiobs_pipeline.definitions import defs  # noqa: PLC0415

        instance = DagsterInstance.get()
        day, last = window[0], window[materialise - 1]
        runs = [("hourly_job", f"{day:{PARTITION_FORMAT}}", f"{last:{PARTITION_FORMAT}}"),
                ("daily_job", f"{day:%Y-%m-%d}", f"{day:%Y-%m-%d}"),
                ("monthly_job", f"{day:%Y-%m-01}", f"{day:%Y-%m-01}")]
        for job_name, first_key, last_key in runs:
            started = time.monotonic()
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET,
                tags={"dagster/asset_partition_range_start": first_key,
                      "dagster/asset_partition_range_end": last_key, "aiobs/trigger": "ui-test"})
            print(f"{job_name} {first_key}..{last_key}: {'ok' if result.success else 'FAILED'} "
                  f"in {time.monotonic() - started:.1f}s", flush=True)
            if not result.success:
                raise RuntimeError(f"{job_name} for {first_key}..{last_key} failed (run {result.run_id})")
    finally:
        server.stop()
    manifest = {"generated": [f"{hour:{PARTITION_FORMAT}}" for hour in window],
                "materialised": [f"{hour:{PARTITION_FORMAT}}" for hour in window[:materialise]]}
    (workdir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_with_marker(marker: str) -> list[int]:
    """Ids of live processes whose environment holds AIOBS_UI_TEST_MARKER=marker (any descendant inherits it)."""
    needle = f"AIOBS_UI_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or a kernel thread
    return found


@dataclass
class DagsterDev:
    """A `dagster dev` process group (webserver, daemon, code server, run workers) on one instance."""

    workdir: Path
    port: int
    marker: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The webserver's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of the combined webserver/daemon log, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until_up(self, timeout_s: float) -> None:
        """Wait until the webserver answers its health check and the code location has loaded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev did not answer on {self.url} within {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> list[int]:
        """Stop the whole process group (SIGTERM, then SIGKILL); return ids of processes still left after."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        deadline = time.monotonic() + timeout_s
        # Children (daemon, code server, run workers) exit on their own once dagster dev has told them to.
        while processes_with_marker(self.marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = processes_with_marker(self.marker)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stopped = left
        return left


def start_dagster_dev(workdir: Path, workspace: Path, marker: str, log_path: Path) -> DagsterDev:
    """Start `dagster dev` on workdir's instance in its own process group, from workdir so settings use its var/."""
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str((workdir / ".dagster_home").resolve()),
           "AIOBS_UI_TEST_MARKER": marker, "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "true"}
    env.pop("AIOBS_CONFIG", None)  # settings come from the working directory (no aiobs.toml there: defaults)
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(workspace),
               "-h", "127.0.0.1", "-p", str(port)]
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    return DagsterDev(workdir=workdir, port=port, marker=marker, process=process, log_path=log_path)


def main(argv: list[str] | None = None) -> int:
    """Build the instance (script entry point)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--hours", type=int, default=6, help="export hours to generate")
    parser.add_argument("--materialise", type=int, default=3, help="of which the first N are materialised")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    build(args.workdir, args.hours, args.materialise, args.scale, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
