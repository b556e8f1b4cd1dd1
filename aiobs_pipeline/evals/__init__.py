"""Evals: eval datasets from bad production answers, prompt versions as files, runs, comparisons (docs/evals.md).

No Dagster imports here (DESIGN.md, layers); `aiobs_pipeline/defs/evals.py` and the `aiobs eval` commands
(`aiobs_pipeline/evals/cli.py`) call these functions. Names are imported lazily (PEP 562) so that
`aiobs eval --help` and the CLI's argument errors do not pay for scipy and the detectors.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Comparison", "MetricComparison", "bootstrap_interval", "compare_runs", "compare_versions",
                     "comparison_markdown"), "compare"),
    **dict.fromkeys(("BuildResult", "Candidates", "Dataset", "DatasetError", "build_version", "export_version",
                     "find_candidates", "latest_version", "list_versions", "load_dataset", "merge_cases",
                     "outcomes_frame"), "dataset"),
    **dict.fromkeys(("PromptError", "PromptVersion", "load_prompt", "load_prompts"), "prompts"),
    "Redactor": "redact",
    **dict.fromkeys(("CaseResult", "RunResult", "run_eval", "score_output", "select_cases", "write_run"), "runner"),
    **dict.fromkeys(("METRICS", "EvalSettings", "eval_settings_of"), "settings"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
