"""Regenerate tests/fixtures/conformance/: `python -m tests.conformance.record [--only NAME ...] [--rebuild]`.

For each fixture (a library and a mode) this builds the library's throwaway virtualenv under
`var/conformance-venvs/<requirements>/` when missing (`requirements/<name>.txt`, then aiobs itself
`--no-deps`, which is all `aiobs_pipeline.otel` needs), starts the local OpenAI-compatible server once on a
free loopback port, resets it before each script (so prompt-cache hits repeat exactly), runs the script in
that virtualenv, and moves what the exporters wrote into `tests/fixtures/conformance/<name>/`: `spans.otlp.jsonl`,
`logs.otlp.jsonl` when the library sent log records, and `manifest.json`. Run it with the worktree's
`.venv/bin/python` from the repository root (`make conformance-fixtures`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiobs_pipeline.llmserver.process import start_llm_server
from tests.conformance.record import common

ROOT = Path(__file__).resolve().parents[3]
RECORD = Path(__file__).resolve().parent
VENVS = ROOT / "var" / "conformance-venvs"
FIXTURES = ROOT / "tests" / "fixtures" / "conformance"


@dataclass(frozen=True)
class Target:
    """One fixture folder: its name, the requirements (= virtualenv) it runs in, its script and mode."""

    name: str
    requirements: str
    script: str
    mode: str = ""
    env: tuple[tuple[str, str], ...] = ()


TARGETS = (
    Target("langfuse-observe", "langfuse", "lib_langfuse", "observe"),
    Target("langfuse-manual", "langfuse", "lib_langfuse", "manual"),
    Target("logfire", "logfire", "lib_logfire", "v2"),
    Target("logfire-v1", "logfire", "lib_logfire", "v1"),
    Target("openllmetry", "openllmetry", "lib_openllmetry", "attributes"),
    Target("openllmetry-events", "openllmetry", "lib_openllmetry", "events"),
    Target("openllmetry-0.33", "openllmetry-old", "lib_openllmetry", "attributes"),
    Target("openlit", "openlit", "lib_openlit"),
    Target("otel-official", "otel-official", "lib_otel_official", "span_only",
           (("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY"))),
    Target("otel-official-events", "otel-official", "lib_otel_official", "event_only",
           (("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY"))),
    Target("otel-official-legacy", "otel-official", "lib_otel_official", "legacy",
           (("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),)),
    Target("openinference", "openinference", "lib_openinference"),
)


def build_venv(requirements: str, rebuild: bool = False) -> Path:
    """The virtualenv for a requirements file, created (python3.11, pip install -r, aiobs --no-deps) if missing."""
    venv = VENVS / requirements
    stamp = venv / ".installed"
    if rebuild and venv.exists():
        shutil.rmtree(venv)
    if stamp.exists():
        return venv
    python = shutil.which("python3.11") or sys.executable
    print(f"==> building {venv} ({requirements}.txt)", flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(RECORD / "requirements" / f"{requirements}.txt")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    stamp.touch()
    return venv


def installed(venv: Path) -> list[str]:
    """`pip freeze` of a virtualenv (without aiobs itself), for the manifest."""
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude-editable"],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and not line.startswith("-e")]


def collect(landing: Path, folder: Path) -> dict[str, int]:
    """Concatenate the exporters' hourly files into the fixture's span and log files; lines per file."""
    counts = {}
    for name, is_logs in ((common.SPANS_FILE, False), (common.LOGS_FILE, True)):
        files = sorted(p for p in landing.rglob("*.jsonl") if ("-logs-" in p.name) == is_logs)
        target = folder / name
        target.unlink(missing_ok=True)
        if not files:
            continue
        data = b"".join(p.read_bytes() for p in files)
        target.write_bytes(data)
        counts[name] = data.count(b"\n")
    return counts


def record(target: Target, base_url: str, venv: Path, out: Path = FIXTURES) -> None:
    """Run one script and write its fixture folder under `out`."""
    folder = out / target.name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"aiobs-record-{target.name}-") as tmp:
        landing = Path(tmp) / "landing"
        manifest = folder / "manifest.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "LANGFUSE_",
                                                                         "TRACELOOP_", "LOGFIRE_"))}
        env.update({"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **dict(target.env)})
        args = [str(venv / "bin" / "python"), "-m", f"tests.conformance.record.{target.script}",
                "--base-url", base_url, "--landing", str(landing), "--manifest", str(manifest),
                "--mode", target.mode]
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{target.name}: {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
        counts = collect(landing, folder)
        if common.SPANS_FILE not in counts:
            raise RuntimeError(f"{target.name}: the script wrote no spans under {landing}:\n{done.stderr[-4000:]}")
    data = json.loads(manifest.read_text())
    data["name"] = target.name
    data["environment"] = dict(target.env)
    data["files"] = {"spans": common.SPANS_FILE,
                     "logs": common.LOGS_FILE if common.LOGS_FILE in counts else None}
    data["installed"] = installed(venv)
    data["regenerate"] = f"python -m tests.conformance.record --only {target.name}"
    manifest.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"{target.name}: {counts} -> {folder}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Build the virtualenvs, start the server, record every (or every --only) target."""
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.record", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="a fixture name or a requirements name (repeatable); default: all of "
                             + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--rebuild", action="store_true", help="recreate the virtualenvs first")
    parser.add_argument("--out", type=Path, default=FIXTURES,
                        help="where the fixture folders go (default tests/fixtures/conformance; another folder "
                             "to compare a fresh recording with the committed one)")
    args = parser.parse_args(argv)
    known = {t.name for t in TARGETS} | {t.requirements for t in TARGETS}
    unknown = [name for name in args.only if name not in known]
    if unknown:
        parser.error(f"unknown --only {unknown}; known: {sorted(known)}")
    targets = [t for t in TARGETS if not args.only or t.name in args.only or t.requirements in args.only]
    venvs = {}
    for target in targets:
        if target.requirements not in venvs:
            venvs[target.requirements] = build_venv(target.requirements, args.rebuild)
    failed = []
    with start_llm_server(**common.SERVER_OPTIONS) as server:
        for target in targets:
            server.reset()
            try:
                record(target, server.base_url, venvs[target.requirements], args.out.resolve())
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                # One library failing must not stop the others; its folder keeps the previous recording.
                print(f"FAILED {target.name}: {error}", file=sys.stderr, flush=True)
                failed.append(target.name)
    if failed:
        print(f"{len(failed)} of {len(targets)} recordings failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
