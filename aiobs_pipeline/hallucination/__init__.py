"""Hallucination detection without an LLM: stated confidence, citation validity, grounding, trust score.

Each detector is a pure function over one span's canonical fields (output_text, documents JSON text,
input_messages JSON text) returning a small frozen result, with a frame version per detector table;
`scoring` turns the signals into a trust score and risk level. No Dagster imports here (DESIGN.md, layers).
"""

from aiobs_pipeline.hallucination.citations import (
    CITATION_COLUMNS,
    CitationResult,
    check_citations,
    citation_checks,
)
from aiobs_pipeline.hallucination.confidence import (
    CONFIDENCE_COLUMNS,
    ConfidenceResult,
    confidence_scores,
    score_confidence,
)
from aiobs_pipeline.hallucination.grounding import (
    GROUNDING_COLUMNS,
    GroundingResult,
    build_context,
    check_grounding,
    grounding_checks,
    score_grounding,
    with_trace_documents,
)
from aiobs_pipeline.hallucination.scoring import (
    SCORE_COLUMNS,
    RiskResult,
    combine_signals,
    risk_level,
    score_frame,
    user_report_signal,
)
from aiobs_pipeline.hallucination.settings import SIGNALS, HallucinationSettings

__all__ = [
    "CITATION_COLUMNS",
    "CONFIDENCE_COLUMNS",
    "GROUNDING_COLUMNS",
    "SCORE_COLUMNS",
    "SIGNALS",
    "CitationResult",
    "ConfidenceResult",
    "GroundingResult",
    "HallucinationSettings",
    "RiskResult",
    "build_context",
    "check_citations",
    "check_grounding",
    "citation_checks",
    "combine_signals",
    "confidence_scores",
    "grounding_checks",
    "risk_level",
    "score_confidence",
    "score_frame",
    "score_grounding",
    "user_report_signal",
    "with_trace_documents",
]
