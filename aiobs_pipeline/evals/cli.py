"""`aiobs eval run | compare | export`: prompt-version evals from the command line, and the CI gate.

`add_parser(subparsers)` registers the `eval` command on the `aiobs` parser; `python -m aiobs_pipeline.evals.cli
eval ...` runs the same commands without the console script. Exit codes:

    0  run finished / candidate not significantly worse / version exported
    1  compare: the candidate is significantly worse than the baseline on a gated metric (fails CI)
    2  usage or configuration error (unknown prompt version, missing dataset, bad setting); nothing ran
    3  no answer at all: every call of the run (compare: of the baseline) failed, so nothing was evaluated
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_REGRESSED, EXIT_USAGE, EXIT_NO_ANSWERS = 0, 1, 2, 3


class _UsageError(Exception):
    """A problem with the arguments, settings, prompt files or dataset; nothing was run."""


def _settings(args: argparse.Namespace) -> Any:
    from aiobs_pipeline.settings import SettingsError, load_settings  # noqa: PLC0415 - keep --help fast

    try:
        return load_settings(args.config)
    except SettingsError as exc:
        raise _UsageError(str(exc)) from None


def _eval_settings(settings: Any) -> Any:
    from aiobs_pipeline.evals.settings import eval_settings_of  # noqa: PLC0415

    return eval_settings_of(settings)


def _client(settings: Any, args: argparse.Namespace) -> Any:
    from pydantic import ValidationError  # noqa: PLC0415

    from aiobs_pipeline.llm import LLMClient, LLMSettings  # noqa: PLC0415

    values = settings.llm.model_dump()
    values["cache_dir"] = settings.resolve(settings.llm.cache_dir)
    if args.base_url:
        values["base_url"] = args.base_url
    if args.no_cache:
        values["cache_enabled"] = False
    try:
        return LLMClient(LLMSettings(**values))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _UsageError(f"invalid LLM settings (--base-url or [llm]): {problems}") from None


def _prompt(settings: Any, args: argparse.Namespace, version: str) -> Any:
    from aiobs_pipeline.evals.prompts import PromptError, load_prompt  # noqa: PLC0415

    folder = Path(args.prompts_dir) if args.prompts_dir else settings.resolve(_eval_settings(settings).prompts_dir)
    try:
        return load_prompt(folder, args.prompt, version)
    except PromptError as exc:
        raise _UsageError(str(exc)) from None


def _cases(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    from aiobs_pipeline.evals.dataset import DatasetError, load_dataset  # noqa: PLC0415
    from aiobs_pipeline.evals.runner import select_cases  # noqa: PLC0415

    try:
        dataset = load_dataset(Path(args.dataset))
    except DatasetError as exc:
        raise _UsageError(str(exc)) from None
    cases = select_cases(dataset.cases, args.prompt, args.all_cases)
    if not cases:
        names = sorted({(c.get("tags") or {}).get("prompt_name") or "(none)" for c in dataset.cases})
        raise _UsageError(f"dataset {dataset.label} has no case of prompt {args.prompt!r} ({len(dataset.cases)} cases; "
                          f"prompts: {', '.join(names) or 'none'}); pass --all-cases to run every case")
    return dataset, cases


def _output_dir(settings: Any) -> Path:
    return settings.resolve(settings.paths.reports_dir) / _eval_settings(settings).reports_subdir


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _run(settings: Any, args: argparse.Namespace, client: Any, prompt: Any, dataset: Any,
         cases: list[dict[str, Any]]) -> Any:
    from aiobs_pipeline.evals.runner import run_eval  # noqa: PLC0415

    evals = _eval_settings(settings)
    return run_eval(prompt, cases, client, dataset=dataset.label, model=args.model or None, settings=evals.run,
                    hallucination=settings.hallucination, judge=True if args.judge else None)


def cmd_run(args: argparse.Namespace) -> int:
    """`aiobs eval run`: run one prompt version over a dataset, score every output, write the results."""
    from aiobs_pipeline.evals.runner import run_markdown, write_run  # noqa: PLC0415

    settings = _settings(args)
    prompt = _prompt(settings, args, args.version)
    dataset, cases = _cases(args)
    with _client(settings, args) as client:
        run = _run(settings, args, client, prompt, dataset, cases)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else _output_dir(settings) / f"run-{_slug(prompt.name)}-v{_slug(prompt.version)}-{stamp}"
    results, summary = write_run(run, out)
    print(run_markdown(run))
    print(f"results: {results}\nsummary: {summary}")
    if run.cases and not any(c.ok for c in run.cases):
        print(f"aiobs eval run: every call failed ({run.failures()[0].error}); nothing was evaluated", file=sys.stderr)
        return EXIT_NO_ANSWERS
    return EXIT_OK


def _tolerances(values: Sequence[str]) -> dict[str, float]:
    from aiobs_pipeline.evals.settings import METRICS  # noqa: PLC0415

    out = {}
    for value in values:
        metric, sep, number = value.partition("=")
        if not sep or metric not in METRICS:
            raise _UsageError(f"--tolerance {value!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        try:
            out[metric] = float(number)
        except ValueError:
            raise _UsageError(f"--tolerance {value!r}: {number!r} is not a number") from None
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    """`aiobs eval compare`: run baseline and candidate, report deltas with CIs; exit 1 when worse."""
    from pydantic import ValidationError  # noqa: PLC0415

    from aiobs_pipeline.evals.compare import compare_versions, comparison_markdown  # noqa: PLC0415

    settings = _settings(args)
    compare_settings = _eval_settings(settings).compare
    updates: dict[str, Any] = {}
    if args.tolerance:
        updates["tolerances"] = {**compare_settings.tolerances, **_tolerances(args.tolerance)}
    if args.confidence is not None:
        updates["confidence_level"] = args.confidence
    if updates:
        try:
            compare_settings = type(compare_settings)(**{**compare_settings.model_dump(), **updates})
        except ValidationError as exc:
            raise _UsageError("; ".join(e["msg"] for e in exc.errors())) from None
    baseline_prompt = _prompt(settings, args, args.baseline)
    candidate_prompt = _prompt(settings, args, args.candidate)
    dataset, cases = _cases(args)
    with _client(settings, args) as client:
        comparison = compare_versions(baseline_prompt, candidate_prompt, cases, client, dataset=dataset.label,
                                      settings=_eval_settings(settings), compare_settings=compare_settings,
                                      hallucination=settings.hallucination, model=args.model or None,
                                      judge=True if args.judge else None)
    baseline, candidate = comparison.baseline, comparison.candidate
    report = comparison_markdown(comparison)
    name = f"compare-{_slug(args.prompt)}-v{_slug(baseline.version)}-vs-v{_slug(candidate.version)}.md"
    path = Path(args.report) if args.report else _output_dir(settings) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report, encoding="utf-8")
    print(report)
    print(f"report: {path}")
    if comparison.status == "error":
        return EXIT_NO_ANSWERS
    return EXIT_REGRESSED if comparison.status == "fail" else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """`aiobs eval export`: copy a dataset version into the repository's evals/datasets/ for review."""
    from aiobs_pipeline.evals.dataset import DatasetError, export_version  # noqa: PLC0415

    settings = _settings(args)
    evals = _eval_settings(settings)
    root = settings.resolve(settings.paths.datasets_dir) / (args.name or evals.dataset.name)
    target_root = Path(args.to) if args.to else settings.resolve(evals.export_dir)
    try:
        target, status = export_version(root, args.version, target_root, force=args.force)
    except DatasetError as exc:
        raise _UsageError(str(exc)) from None
    print(f"{status}: {root / target.name} -> {target}")
    return EXIT_OK


def _common(p: argparse.ArgumentParser, llm: bool = True) -> None:
    p.add_argument("--config", default=None, help="settings file (default: $AIOBS_CONFIG or ./aiobs.toml)")
    if not llm:
        return
    p.add_argument("--prompt", required=True, help="prompt name, e.g. answer-with-sources")
    p.add_argument("--dataset", required=True,
                   help="dataset version folder (evals/datasets/<name>/v0001), dataset folder (its latest "
                        "version) or cases JSONL file")
    p.add_argument("--prompts-dir", default=None, help="prompt files folder (default: setting evals.prompts_dir)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible base URL (default: setting llm.base_url)")
    p.add_argument("--model", default=None, help="model for every call (default: the prompt file's model)")
    p.add_argument("--judge", action="store_true", help="also score each answer with an LLM judge")
    p.add_argument("--all-cases", action="store_true", help="run every case, not only the prompt's own")
    p.add_argument("--no-cache", action="store_true", help="bypass the LLM response cache")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `eval run|compare|export` on an argparse subparsers object; returns the `eval` parser."""
    parser = subparsers.add_parser("eval", help="eval datasets and prompt-version regression tests",
                                   description="Run prompt versions over eval datasets, compare them, export "
                                               "dataset versions for review.")
    sub = parser.add_subparsers(dest="eval_command", required=True)

    p = sub.add_parser("run", help="run one prompt version over a dataset and score every output")
    _common(p)
    p.add_argument("--version", required=True, help="prompt version, e.g. 2")
    p.add_argument("--out", default=None, help="folder for results.jsonl and summary.md "
                                               "(default: <reports_dir>/evals/run-...)")
    p.set_defaults(func=_guarded(cmd_run))

    p = sub.add_parser("compare", help="compare a candidate prompt version with a baseline; exit 1 when worse")
    _common(p)
    p.add_argument("--baseline", required=True, help="baseline prompt version")
    p.add_argument("--candidate", required=True, help="candidate prompt version")
    p.add_argument("--report", default=None, help="Markdown report path (default: <reports_dir>/evals/compare-...)")
    p.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE",
                   help="override a metric's tolerance (repeatable)")
    p.add_argument("--confidence", type=float, default=None, help="confidence level of the intervals (default 0.95)")
    p.set_defaults(func=_guarded(cmd_compare))

    p = sub.add_parser("export", help="copy a dataset version into evals/datasets/ for review and commit")
    _common(p, llm=False)
    p.add_argument("version", help="version to export (v0003) or 'latest'")
    p.add_argument("--name", default=None, help="dataset name (default: setting evals.dataset.name)")
    p.add_argument("--to", default=None, help="target folder (default: setting evals.export_dir)")
    p.add_argument("--force", action="store_true", help="replace an existing, different copy")
    p.set_defaults(func=_guarded(cmd_export))
    return parser


def _guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _UsageError as exc:
            print(f"aiobs eval {args.eval_command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    run.__doc__ = command.__doc__
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m aiobs_pipeline.evals.cli eval ...`: the eval commands without the console script."""
    parser = argparse.ArgumentParser(prog="aiobs", description="aiobs eval commands")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
