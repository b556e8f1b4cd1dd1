"""The per-prompt-version scorecard: calls, errors, cost, latency p95, trust, high-risk share, satisfaction and
thumbs-down rate; missing signals stay null instead of becoming 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.evals.scorecard import SCORECARD_COLUMNS, scorecard

DAY = datetime(2026, 10, 5, tzinfo=UTC)


def _priced() -> pd.DataFrame:
    rows = []
    for i in range(20):
        version = "2" if i < 10 else "3"
        rows.append({"span_id": f"s{i}", "kind": "llm", "prompt_name": "answer-with-sources",
                     "prompt_version": version, "start_time": DAY + timedelta(hours=i),
                     "status": "error" if i in (0, 15, 16) else "ok", "latency_ms": float(100 * (i % 10 + 1)),
                     "cost_usd": 0.001 if version == "2" else 0.002, "model": "gpt-4o-mini"})
    rows.append({"span_id": "r0", "kind": "retrieval", "prompt_name": None, "prompt_version": None,
                 "start_time": DAY, "status": "ok", "latency_ms": 5.0, "cost_usd": None, "model": None})
    rows.append({"span_id": "c0", "kind": "llm", "prompt_name": None, "prompt_version": None,
                 "start_time": DAY, "status": "ok", "latency_ms": 5.0, "cost_usd": None, "model": "x"})
    return pd.DataFrame(rows)


def test_scorecard_per_prompt_version() -> None:
    scores = pd.DataFrame({"span_id": [f"s{i}" for i in range(20)],
                           "trust_score": [0.9] * 10 + [0.3] * 8 + [np.nan] * 2,
                           "risk_level": ["low"] * 10 + ["high"] * 6 + ["medium"] * 2 + [None] * 2})
    satisfaction = pd.DataFrame({"span_id": ["s1", "s2", "s11", "s12", "s13"], "satisfaction": [1, 0.75, 0, 0.25, 0.5],
                                 "thumbs_down": [False, False, True, True, False], "day": DAY.replace(tzinfo=None)})
    files = {("answer-with-sources", "2"): Path("evals/prompts/answer-with-sources.v2.toml")}
    card = scorecard(_priced(), scores, satisfaction, files)
    assert list(card.columns) == list(SCORECARD_COLUMNS)
    assert len(card) == 2  # the retrieval span and the LLM call without a prompt are not prompt versions
    v2, v3 = (card.set_index("prompt_version").loc[v] for v in ("2", "3"))
    assert (v2["calls"], v3["calls"]) == (10, 10)
    assert (v2["error_rate"], v3["error_rate"]) == (0.1, 0.2)
    assert v2["cost_per_call_usd"] == pytest.approx(0.001) and v3["total_cost_usd"] == pytest.approx(0.02)
    assert v2["latency_p95_ms"] == pytest.approx(np.quantile([200.0 + 100 * k for k in range(9)], 0.95))
    assert (v2["scored_responses"], v3["scored_responses"]) == (10, 8)
    assert (v2["high_risk_share"], v3["high_risk_share"]) == (0.0, 0.75)
    assert v3["mean_trust_score"] == pytest.approx(0.3)
    assert (v2["responses_with_feedback"], v2["avg_satisfaction"], v2["thumbs_down_rate"]) == (2, 0.875, 0.0)
    assert v3["thumbs_down_rate"] == pytest.approx(2 / 3)
    assert v2["prompt_file"].endswith("answer-with-sources.v2.toml") and v3["prompt_file"] is None
    assert card["day"].iloc[0] == pd.Timestamp("2026-10-05") and v2["models"] == "gpt-4o-mini"


def test_missing_signals_are_null_not_zero() -> None:
    card = scorecard(_priced(), None, pd.DataFrame(columns=["span_id", "satisfaction", "thumbs_down"]))
    assert card["mean_trust_score"].isna().all() and card["thumbs_down_rate"].isna().all()
    assert (card["scored_responses"] == 0).all() and (card["responses_with_feedback"] == 0).all()
    empty = scorecard(_priced().iloc[20:21], None, None)
    assert empty.empty and list(empty.columns) == list(SCORECARD_COLUMNS)
    assert scorecard(pd.DataFrame(), None, None).empty
