"""Dagster assets and the job for evals: the eval dataset built from bad answers, the production scorecard per
prompt version, and the prompt regression job (candidate vs baseline). The work lives in
`aiobs_pipeline.evals`; these definitions only load inputs, call it and describe the result.

- `eval_dataset` (daily): a day's answers with negative feedback, hallucination reports, edits or high risk
  become redacted eval cases, merged into the dataset under `paths.datasets_dir/<evals.dataset.name>/`; a new
  version is written only when the cases change. Its table holds one row per candidate case and what merging
  did with it. Feedback up to a day late counts (the next day's feedback hours are read too).
- `prompt_version_scorecard` (daily): calls, errors, cost per call, latency p95, trust score, high-risk share,
  satisfaction and thumbs-down rate per prompt version.
- `prompt_regression_job`: runs a baseline and a candidate prompt version over the dataset through the LLM
  client and records the comparison report as materialisation metadata of `prompt_regression_report`; the
  run fails when the candidate is significantly worse (unless `fail_on_regression` is false). It is an op
  job, not an asset, because it runs on demand with a choice of versions rather than on a cadence.
"""

from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    Config,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    TimeWindowPartitionMapping,
    asset,
    job,
    op,
)
from pydantic import ValidationError

from aiobs_pipeline.defs.common import WAREHOUSE_POOL, markdown_preview
from aiobs_pipeline.defs.jobs import DAILY
from aiobs_pipeline.defs.partitions import daily_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.evals import (
    PromptError,
    build_version,
    compare_versions,
    comparison_markdown,
    eval_settings_of,
    find_candidates,
    load_dataset,
    load_prompt,
    load_prompts,
    outcomes_frame,
    select_cases,
)
from aiobs_pipeline.evals.dataset import DatasetError
from aiobs_pipeline.evals.scorecard import scorecard
from aiobs_pipeline.llm import LLMClient, LLMSettings

GROUP = "evals"
LATE_FEEDBACK_DAYS = 1
LLM_POOL = "aiobs_llm"
REPORT_ASSET = AssetKey("prompt_regression_report")
DAILY_COMMON = dict(
    partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=DAILY,
    io_manager_key="warehouse", metadata={"partition_expr": "day"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
)


def _days(context: AssetExecutionContext) -> list[str]:
    window = context.partition_time_window
    return [f"{day:%Y-%m-%d}" for day in pd.date_range(window.start, window.end, freq="D", inclusive="left")]


@asset(
    name="eval_dataset", **DAILY_COMMON,
    ins={
        "spans": AssetIn(),
        "feedback_events": AssetIn(partition_mapping=TimeWindowPartitionMapping(
            start_offset=0, end_offset=LATE_FEEDBACK_DAYS, allow_nonexistent_upstream_partitions=True)),
        "hallucination_scores": AssetIn(),
    },
    description="Eval cases from the day's bad answers (negative feedback, hallucination reports, edits, high "
                "risk), PII-redacted and deduplicated, merged into a versioned dataset under "
                "paths.datasets_dir (a new version only when the cases change); one row per candidate case.",
)
def eval_dataset(context: AssetExecutionContext, aiobs: AiobsSettings, spans: pd.DataFrame,
                 feedback_events: pd.DataFrame, hallucination_scores: pd.DataFrame) -> Output[pd.DataFrame]:
    """Find the run's days' eval cases and merge them into the dataset."""
    settings = aiobs.get()
    evals = eval_settings_of(settings)
    days = _days(context)
    candidates = find_candidates(spans, feedback_events, hallucination_scores, evals)
    root = settings.resolve(settings.paths.datasets_dir) / evals.dataset.name
    result = build_version(root, candidates, evals.dataset, source_partitions=days)
    frame = outcomes_frame(candidates, result)
    counts = result.manifest.get("counts", {})
    outcomes = frame["outcome"].value_counts().rename_axis("outcome").reset_index(name="cases")
    new = frame[frame["outcome"] == "added"][["case_id", "feature", "prompt_version", "reasons"]]
    context.log.info(f"eval dataset {root}: version {result.version} "
                     f"({'new' if result.created else 'unchanged'}), {len(candidates.cases)} candidates")
    return Output(frame, metadata={
        "dagster/row_count": len(frame),
        "dataset_version": result.version or "(none yet)",
        "new_version_written": result.created,
        "dataset_path": MetadataValue.path(str(result.path or root)),
        "dataset_cases": int(counts.get("cases", 0)),
        "outcomes": MetadataValue.md(markdown_preview(outcomes)),
        "redactions": MetadataValue.json(dict(candidates.redactions)),
        "skipped": MetadataValue.json(dict(candidates.skipped)),
        "new_cases": MetadataValue.md(markdown_preview(new, 15)),
    })


@asset(
    name="prompt_version_scorecard", **DAILY_COMMON,
    ins={"priced_spans": AssetIn(), "hallucination_scores": AssetIn(), "satisfaction_scores": AssetIn()},
    description="Production performance per prompt version and day: calls, error rate, cost per call, "
                "latency p95, mean trust score, high-risk share, satisfaction and thumbs-down rate, with "
                "the version's prompt file when evals/prompts has one.",
)
def prompt_version_scorecard(context: AssetExecutionContext, aiobs: AiobsSettings, priced_spans: pd.DataFrame,
                             hallucination_scores: pd.DataFrame,
                             satisfaction_scores: pd.DataFrame) -> Output[pd.DataFrame]:
    """Summarise each prompt version's production calls, risk and feedback per day."""
    settings = aiobs.get()
    folder = settings.resolve(eval_settings_of(settings).prompts_dir)
    try:
        files = {key: prompt.path for key, prompt in load_prompts(folder).items() if prompt.path is not None}
    except PromptError as exc:
        context.log.warning(f"prompt files not linked: {exc}")
        files = {}
    card = scorecard(priced_spans, hallucination_scores, satisfaction_scores, files)
    shown = card.drop(columns=["day", "models", "prompt_file"])
    return Output(card, metadata={
        "dagster/row_count": len(card),
        "prompt_versions": len(card[["prompt_name", "prompt_version"]].drop_duplicates()),
        "scorecard": MetadataValue.md(markdown_preview(shown.round(4), 20)),
    })


class PromptRegressionConfig(Config):
    """Which prompt versions to compare, on which dataset and endpoint."""

    prompt: str = "answer-with-sources"
    baseline: str
    candidate: str
    dataset: str = ""  # empty: the latest version under paths.datasets_dir/<evals.dataset.name>
    base_url: str = ""  # empty: llm.base_url
    model: str = ""  # empty: each prompt file's model
    prompts_dir: str = ""  # empty: evals.prompts_dir
    judge: bool = False
    all_cases: bool = False
    fail_on_regression: bool = True


@op(pool=LLM_POOL, description="Run baseline and candidate over the eval dataset, compare with bootstrap CIs and "
                                "record the report as materialisation metadata of prompt_regression_report.")
def compare_prompt_versions(context: OpExecutionContext, config: PromptRegressionConfig, aiobs: AiobsSettings):
    """Compare two prompt versions; fail the run when the candidate is significantly worse."""
    settings = aiobs.get()
    evals = eval_settings_of(settings)
    folder = Path(config.prompts_dir) if config.prompts_dir else settings.resolve(evals.prompts_dir)
    dataset_path = (Path(config.dataset) if config.dataset
                    else settings.resolve(settings.paths.datasets_dir) / evals.dataset.name)
    try:
        baseline = load_prompt(folder, config.prompt, config.baseline)
        candidate = load_prompt(folder, config.prompt, config.candidate)
        dataset = load_dataset(dataset_path)
    except (PromptError, DatasetError) as exc:
        raise Failure(description=str(exc)) from None
    cases = select_cases(dataset.cases, config.prompt, config.all_cases)
    if not cases:
        raise Failure(description=f"dataset {dataset.label} has no case of prompt {config.prompt!r}")
    values = settings.llm.model_dump()
    values["cache_dir"] = settings.resolve(settings.llm.cache_dir)
    if config.base_url:
        values["base_url"] = config.base_url
    try:
        llm_settings = LLMSettings(**values)
    except ValidationError as exc:
        raise Failure(description=f"invalid LLM settings (config base_url or [llm]): {exc}") from None
    with LLMClient(llm_settings) as client:
        comparison = compare_versions(baseline, candidate, cases, client, dataset=dataset.label, settings=evals,
                                      hallucination=settings.hallucination, model=config.model or None,
                                      judge=True if config.judge else None)
    report = comparison_markdown(comparison)
    out = settings.resolve(settings.paths.reports_dir) / evals.reports_subdir
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compare-{config.prompt}-v{baseline.version}-vs-v{candidate.version}.md"
    path.write_text(report, encoding="utf-8")
    metrics = pd.DataFrame([{"metric": m.metric, "baseline": m.baseline_mean, "candidate": m.candidate_mean,
                             "delta": m.delta, "ci_low": m.ci_low, "ci_high": m.ci_high, "verdict": m.verdict}
                            for m in comparison.metrics])
    yield AssetMaterialization(asset_key=REPORT_ASSET, description=f"{candidate.label} vs {baseline.label}",
                               metadata={
                                   "status": comparison.status,
                                   "regressed_metrics": MetadataValue.json(comparison.regressed),
                                   "dataset": dataset.label, "cases": len(cases),
                                   "failed_calls_baseline": len(comparison.baseline.failures()),
                                   "failed_calls_candidate": len(comparison.candidate.failures()),
                                   "worse_cases": len(comparison.worse_cases),
                                   "metrics": MetadataValue.md(markdown_preview(metrics)),
                                   "report": MetadataValue.md(report),
                                   "report_path": MetadataValue.path(str(path)),
                               })
    if comparison.status == "error" or (comparison.status == "fail" and config.fail_on_regression):
        raise Failure(description=report.split("\n\n")[1], metadata={"report_path": MetadataValue.path(str(path))})
    yield Output(comparison.status)


@job(name="prompt_regression_job", tags={"aiobs/kind": "eval"},
     description="Compare a candidate prompt version with its baseline on the eval dataset (run config: prompt, "
                 "baseline, candidate); fails when the candidate is significantly worse.")
def prompt_regression_job() -> None:
    """One op: run both versions, compare, record the report."""
    compare_prompt_versions()


defs = Definitions(assets=[eval_dataset, prompt_version_scorecard], jobs=[prompt_regression_job])
