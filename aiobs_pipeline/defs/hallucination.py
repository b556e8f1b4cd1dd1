"""Dagster assets for hallucination detection: the no-LLM detectors per export hour, the trust score that
combines them with user reports, and the high-risk answers for human review. The work lives in
`aiobs_pipeline.hallucination`; LLM spans without their own documents get their trace's retrieved ones.

User reports arrive as feedback, often later than the answer: an hour's `hallucination_scores` reads the
feedback of that hour and of the next 24 (USER_REPORT_HOURS), so re-materialising it after late feedback
(a backfill, or the next day's run of this hour) re-scores the affected responses.
"""

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)

from aiobs_pipeline.defs.common import WAREHOUSE_POOL, markdown_preview
from aiobs_pipeline.defs.jobs import HOURLY
from aiobs_pipeline.defs.partitions import hourly_partitions
from aiobs_pipeline.defs.resources import AiobsSettings
from aiobs_pipeline.hallucination import (
    citation_checks as check_citations_frame,
)
from aiobs_pipeline.hallucination import (
    confidence_scores as score_confidence_frame,
)
from aiobs_pipeline.hallucination import (
    grounding_checks as check_grounding_frame,
)
from aiobs_pipeline.hallucination import (
    score_frame,
    with_trace_documents,
)
from aiobs_pipeline.hallucination.consistency import CONSISTENCY_COLUMNS, check_consistency, result_frame
from aiobs_pipeline.hallucination.factcheck import FACT_CHECK_COLUMNS, TrustedCorpus, fact_check
from aiobs_pipeline.llm import LLMClient, spans_from_results
from aiobs_pipeline.schema import SPAN_COLUMNS, empty_frame

LLM_POOL = "aiobs_llm"

GROUP = "hallucination"
USER_REPORT_HOURS = 24
NEGATIVE_REPORTS = ("hallucination_report",)
COMMON = dict(
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, tags=HOURLY,
    io_manager_key="warehouse", metadata={"partition_expr": "export_hour"}, kinds={"pandas"}, pool=WAREHOUSE_POOL,
)


def _responses(spans: pd.DataFrame) -> pd.DataFrame:
    return with_trace_documents(spans)


def _summary(frame: pd.DataFrame, column: str) -> dict[str, object]:
    scored = frame[column].dropna()
    return {"dagster/row_count": len(frame), "scored": len(scored),
            f"mean_{column}": float(scored.mean()) if len(scored) else None}


@asset(**COMMON, description="Self-reported confidence of each LLM answer (stated level, percentage or "
                             "hedging) as 0-1; 'none' when the answer states nothing.")
def confidence_scores(aiobs: AiobsSettings, spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Parse the stated confidence of each answer."""
    out = score_confidence_frame(_responses(spans), aiobs.get().hallucination.confidence)
    return Output(out, metadata=_summary(out, "confidence_score"))


@asset(**COMMON, description="Citations in each answer ([doc], [1], [^1], (Source: ...), URLs) checked "
                             "against the documents its trace retrieved; invalid ones listed.")
def citation_checks(aiobs: AiobsSettings, spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Check every citation against the retrieved documents."""
    out = check_citations_frame(_responses(spans), aiobs.get().hallucination.citations)
    bad = out[out["citation_score"] < 1]
    return Output(out, metadata={**_summary(out, "citation_score"),
                                 "answers_with_invalid_citations": len(bad)})


@asset(**COMMON, description="Support of each answer sentence in the retrieved context (rapidfuzz + "
                             "numbers and names), a response score and the unsupported sentences.")
def grounding_checks(aiobs: AiobsSettings, spans: pd.DataFrame) -> Output[pd.DataFrame]:
    """Score each answer's grounding in its context."""
    out = check_grounding_frame(_responses(spans), aiobs.get().hallucination.grounding)
    return Output(out, metadata=_summary(out, "grounding_score"))


def _priority(spans: pd.DataFrame, confidence: pd.DataFrame, citations: pd.DataFrame,
              grounding: pd.DataFrame, settings: object) -> pd.DataFrame:
    """LLM answers with a preliminary trust score from the no-LLM signals, so the riskiest are re-checked first."""
    frame = _responses(spans)
    signals = (confidence[["span_id", "confidence_score"]].rename(columns={"confidence_score": "confidence"})
               .merge(citations[["span_id", "citation_score"]].rename(columns={"citation_score": "citations"}),
                      on="span_id", how="outer")
               .merge(grounding[["span_id", "grounding_score"]].rename(columns={"grounding_score": "grounding"}),
                      on="span_id", how="outer"))
    scored = score_frame(signals, settings)[["span_id", "trust_score"]]
    return frame.merge(scored, on="span_id", how="left")


@multi_asset(
    outs={
        "consistency_checks": AssetOut(
            description="SelfCheckGPT-style re-queries of the riskiest answers (within a per-hour call budget): "
                        "agreement of N re-samples per sentence and per answer; failed calls say why.",
            io_manager_key="warehouse", metadata={"partition_expr": "export_hour"}, kinds={"pandas"}, tags=HOURLY),
        "fact_checks": AssetOut(
            description="Factual claims checked against the trusted corpus (BM25 evidence, LLM judge): "
                        "supported / refuted / not covered per claim, with the judge's explanation.",
            io_manager_key="warehouse", metadata={"partition_expr": "export_hour"}, kinds={"pandas"}, tags=HOURLY),
        "llm_check_spans": AssetOut(
            description="Our own LLM calls made by the checks, as canonical spans (feature aiobs-checks), so "
                        "their tokens and cost are counted like any other.",
            io_manager_key="warehouse", metadata={"partition_expr": "export_hour"}, kinds={"pandas"}, tags=HOURLY),
    },
    partitions_def=hourly_partitions, backfill_policy=BackfillPolicy.single_run(), group_name=GROUP,
    pool=LLM_POOL,
)
def llm_checks(context: AssetExecutionContext, aiobs: AiobsSettings, spans: pd.DataFrame,
               confidence_scores: pd.DataFrame, citation_checks: pd.DataFrame, grounding_checks: pd.DataFrame):
    """Run the consistency and fact checks for each hour of the run through the LLM client."""
    settings = aiobs.get()
    hs = settings.hallucination
    llm_settings = settings.llm.model_copy(update={"cache_dir": settings.resolve(settings.llm.cache_dir)})
    client = LLMClient(llm_settings)
    candidates = _priority(spans, confidence_scores, citation_checks, grounding_checks, hs.risk)
    consistency_frames, fact_frames, results = [], [], []
    corpus = None
    if hs.fact_check.corpus_dir is not None:
        fact_settings = hs.fact_check.model_copy(update={
            "corpus_dir": settings.resolve(hs.fact_check.corpus_dir),
            "index_cache_dir": settings.resolve(hs.fact_check.index_cache_dir or "var/factcheck_index")})
        corpus = TrustedCorpus.from_settings(fact_settings)
    else:
        context.log.info("fact checks are off: set hallucination.fact_check.corpus_dir to a folder of "
                         "trusted documents")
    for hour, group in candidates.groupby("export_hour", sort=True):
        checked = check_consistency(group, client, hs.consistency)
        consistency_frames.append(checked.frame)
        results.extend(checked.results)
        if corpus is not None:
            judged = fact_check(group, client, corpus, fact_settings)
            fact_frames.append(judged.frame)
            results.extend(judged.results)
        context.log.info(f"{hour:%Y-%m-%d %H}:00 consistency {len(checked.frame)} answers"
                         + (f", fact checks {len(fact_frames[-1])}" if corpus is not None else ""))
    consistency = (pd.concat(consistency_frames, ignore_index=True) if consistency_frames
                   else result_frame([], CONSISTENCY_COLUMNS))
    facts = pd.concat(fact_frames, ignore_index=True) if fact_frames else result_frame([], FACT_CHECK_COLUMNS)
    window = context.partition_time_window
    # A call is filed under the export hour of the answer it checked, so re-running an hour replaces it.
    own = spans_from_results(results, llm_settings, export_hour=window.start) if results else empty_frame(SPAN_COLUMNS)
    failed = int((consistency["status"] == "failed").sum()) + int((facts["status"] == "failed").sum())
    yield Output(consistency, output_name="consistency_checks", metadata={
        "dagster/row_count": len(consistency),
        "by_status": MetadataValue.json(consistency["status"].value_counts().to_dict()),
    })
    yield Output(facts, output_name="fact_checks", metadata={
        "dagster/row_count": len(facts), "enabled": corpus is not None,
        "by_status": MetadataValue.json(facts["status"].value_counts().to_dict()) if len(facts) else {},
    })
    yield Output(own, output_name="llm_check_spans", metadata={
        "dagster/row_count": len(own), "calls": len(results), "failed_checks": failed,
        "input_tokens": int(own["input_tokens"].fillna(0).sum()) if len(own) else 0,
    })


def user_reports(feedback: pd.DataFrame) -> pd.DataFrame:
    """Per response: 0 when a user reported it as wrong, 1 when users only gave positive feedback."""
    if feedback is None or feedback.empty:
        return pd.DataFrame({"span_id": pd.Series(dtype=object), "user_reports": pd.Series(dtype=float)})
    events = feedback[feedback["span_id"].notna()]
    negative = events["event_type"].isin(NEGATIVE_REPORTS) | (
        (events["event_type"] == "thumbs_down") & (events["reason"] == "incorrect_information"))
    positive = events["event_type"].isin(("thumbs_up", "copied")) | (
        (events["event_type"] == "rating") & (pd.to_numeric(events["value"], errors="coerce") >= 4))
    flags = pd.DataFrame({"span_id": events["span_id"], "negative": negative, "positive": positive})
    per = flags.groupby("span_id").agg(negative=("negative", "any"), positive=("positive", "any")).reset_index()
    per["user_reports"] = np.where(per["negative"], 0.0, np.where(per["positive"], 1.0, np.nan))
    return per[["span_id", "user_reports"]]


@asset(
    **{**COMMON, "description": "Trust score per LLM answer (0-1, higher = safer) from confidence, citations, "
                                "grounding and user reports (weights renormalised over the signals present), "
                                "with the risk level: high < 0.5 <= medium < 0.7 <= low."},
    ins={"feedback_events": AssetIn(partition_mapping=TimeWindowPartitionMapping(
        start_offset=0, end_offset=USER_REPORT_HOURS, allow_nonexistent_upstream_partitions=True))},
)
def hallucination_scores(aiobs: AiobsSettings, confidence_scores: pd.DataFrame, citation_checks: pd.DataFrame,
                         grounding_checks: pd.DataFrame, consistency_checks: pd.DataFrame,
                         fact_checks: pd.DataFrame, feedback_events: pd.DataFrame) -> Output[pd.DataFrame]:
    """Combine the detector signals and user reports into the trust score."""
    keys = ["export_hour", "trace_id", "span_id"]
    frame = confidence_scores[[*keys, "confidence_score"]].rename(columns={"confidence_score": "confidence"})
    frame = frame.merge(citation_checks[["span_id", "citation_score"]].rename(
        columns={"citation_score": "citations"}), on="span_id", how="left")
    frame = frame.merge(grounding_checks[["span_id", "grounding_score"]].rename(
        columns={"grounding_score": "grounding"}), on="span_id", how="left")
    for table, signal in ((consistency_checks, "consistency"), (fact_checks, "fact_check")):
        if len(table):
            scored_rows = table[table["status"] == "scored"][["span_id", "score"]].rename(columns={"score": signal})
            frame = frame.merge(scored_rows, on="span_id", how="left")
    frame = frame.merge(user_reports(feedback_events), on="span_id", how="left")
    scored = score_frame(frame, aiobs.get().hallucination.risk)
    levels = scored["risk_level"].value_counts().rename_axis("risk_level").reset_index(name="answers")
    return Output(scored, metadata={
        "dagster/row_count": len(scored), "risk_levels": MetadataValue.md(markdown_preview(levels)),
        "mean_trust_score": float(scored["trust_score"].mean()) if scored["trust_score"].notna().any() else None,
    })


@asset(**COMMON, description="High-risk answers for human review, with the answer, its context and every "
                             "signal's evidence (invalid citations, unsupported sentences, stated confidence, "
                             "user reports).")
def flagged_responses(spans: pd.DataFrame, hallucination_scores: pd.DataFrame, citation_checks: pd.DataFrame,
                      grounding_checks: pd.DataFrame, confidence_scores: pd.DataFrame) -> Output[pd.DataFrame]:
    """Collect the evidence of every high-risk answer."""
    high = hallucination_scores[hallucination_scores["risk_level"] == "high"]
    answers = spans[["span_id", "user_id", "feature", "model", "prompt_name", "prompt_version", "output_text"]]
    flagged = (high.merge(answers, on="span_id", how="left")
               .merge(citation_checks[["span_id", "invalid_citations"]], on="span_id", how="left")
               .merge(grounding_checks[["span_id", "unsupported_sentences"]], on="span_id", how="left")
               .merge(confidence_scores[["span_id", "confidence_label", "confidence_evidence"]],
                      on="span_id", how="left"))
    by = flagged.groupby(["feature", "prompt_version"], dropna=False).size().rename("flagged").reset_index()
    return Output(flagged.reset_index(drop=True), metadata={
        "dagster/row_count": len(flagged), "by_feature_and_prompt": MetadataValue.md(markdown_preview(by)),
        "preview": MetadataValue.md(markdown_preview(flagged[["span_id", "trust_score", "feature", "prompt_version",
                                                       "invalid_citations"]], 10)),
    })


defs = Definitions(assets=[confidence_scores, citation_checks, grounding_checks, llm_checks,
                           hallucination_scores, flagged_responses])
