"""Trust score: the brief's weights, renormalisation over present signals, levels, contributions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aiobs_pipeline.hallucination.scoring import combine_signals, risk_level, score_frame, user_report_signal
from aiobs_pipeline.hallucination.settings import HallucinationSettings, RiskSettings


def test_brief_weights_on_the_brief_signals() -> None:
    result = combine_signals({"confidence": 0.9, "citations": 1.0, "user_reports": 0.8})
    assert result.trust_score == pytest.approx(0.3 * 0.9 + 0.4 * 1.0 + 0.3 * 0.8)
    assert result.risk_level == "low"
    assert result.contributions["citations"].share == 0.4
    assert sum(c.contribution for c in result.contributions.values()) == pytest.approx(result.trust_score)


def test_weights_are_renormalised_over_present_signals() -> None:
    result = combine_signals({"confidence": None, "citations": 0.5, "user_reports": float("nan")})
    assert result.trust_score == 0.5 and result.risk_level == "medium"
    assert set(result.contributions) == {"citations"}
    assert result.contributions["citations"].share == 1.0


def test_extra_signals_join_with_their_own_weights() -> None:
    result = combine_signals({"citations": 1.0, "grounding": 0.2, "fact_check": 0.0})
    assert result.trust_score == pytest.approx((0.4 * 1.0 + 0.4 * 0.2 + 0.4 * 0.0) / 1.2, abs=1e-4)
    assert result.risk_level == "high"


def test_no_signal_gets_no_score() -> None:
    assert combine_signals({}).trust_score is None
    result = combine_signals({"confidence": None, "citations": None})
    assert result.trust_score is None and result.risk_level is None and result.contributions == {}


@pytest.mark.parametrize(("trust", "level"), [(0.0, "high"), (0.4999, "high"), (0.5, "medium"),
                                              (0.6999, "medium"), (0.7, "low"), (1.0, "low"), (None, None)])
def test_levels_at_the_boundaries(trust: float | None, level: str | None) -> None:
    assert risk_level(trust) == level


def test_levels_and_weights_are_configurable() -> None:
    strict = RiskSettings(high_risk_below=0.8, medium_risk_below=0.9, weights={"citations": 1.0})
    result = combine_signals({"citations": 0.85, "confidence": 0.1}, strict)
    assert result.trust_score == 0.85 and result.risk_level == "medium"
    assert "confidence" not in result.contributions  # no weight configured for it


def test_bad_signals_are_program_errors_naming_the_signal() -> None:
    with pytest.raises(ValueError, match="unknown hallucination signal 'vibes'"):
        combine_signals({"vibes": 0.5})
    with pytest.raises(ValueError, match="'grounding' must be within 0-1"):
        combine_signals({"grounding": 1.5})


def test_settings_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match="hallucination.risk.weights has unknown signal"):
        RiskSettings(weights={"confidence": 0.3, "gut_feeling": 0.7})
    with pytest.raises(ValueError, match="at least one weight"):
        RiskSettings(weights={"confidence": 0.0})
    with pytest.raises(ValueError, match="high_risk_below"):
        RiskSettings(high_risk_below=0.8, medium_risk_below=0.6)
    with pytest.raises(ValueError, match="extra"):
        HallucinationSettings(grounding={"coverage": 1.0})


def test_user_report_signal() -> None:
    assert user_report_signal(0, 0) is None
    assert user_report_signal(1, 4) == 0.75
    assert user_report_signal(9, 4) == 0.0


def test_score_frame_matches_the_row_function() -> None:
    frame = pd.DataFrame({
        "span_id": ["a", "b", "c", "d"],
        "confidence": [0.9, None, 0.25, None],
        "citations": [1.0, 0.5, np.nan, None],
        "grounding": [0.95, None, 0.3, None],
    })
    scored = score_frame(frame)
    for row, out in zip(frame.to_dict("records"), scored.to_dict("records"), strict=True):
        signals = {k: row[k] for k in ("confidence", "citations", "grounding")}
        expected = combine_signals(signals)
        if expected.trust_score is None:
            assert math.isnan(out["trust_score"]) and out["risk_level"] is None
        else:
            assert out["trust_score"] == pytest.approx(expected.trust_score, abs=1e-4)
            assert out["risk_level"] == expected.risk_level
            for name, contribution in expected.contributions.items():
                assert out[f"contribution_{name}"] == pytest.approx(contribution.contribution, abs=1e-4)
    assert list(scored["signals_used"]) == [3, 1, 2, 0]
    assert list(scored["span_id"]) == ["a", "b", "c", "d"]


def test_score_frame_rejects_out_of_range_values_naming_the_row() -> None:
    with pytest.raises(ValueError, match="'citations'.*row 1"):
        score_frame(pd.DataFrame({"citations": [0.5, 2.0]}))
