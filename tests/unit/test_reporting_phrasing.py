"""Stakeholder phrasing on exact numbers: formats, rounding that keeps statements true, and causes named only
when the numbers show them."""

from __future__ import annotations

import pytest

from aiobs_pipeline.reporting import phrasing


@pytest.mark.parametrize(("share", "text"), [
    (0.977, "97.7%"), (0.85, "85%"), (0.12345, "12.3%"), (0.9775, "97.8%"), (1.0, "100%"), (0.0, "0%"),
    (0.9999, ">99.9%"), (0.00001, "<0.1%"), (1 - 0.023, "97.7%"), (None, "n/a"), (float("nan"), "n/a"),
])
def test_percent(share: float | None, text: str) -> None:
    assert phrasing.percent(share) == text


@pytest.mark.parametrize(("value", "text"), [
    (12400, "$12,400"), (31000.4, "$31,000"), (47.255, "$47.26"), (1, "$1.00"), (0.42, "$0.42"),
    (0.525, "$0.53"), (0.01449, "$0.014"), (0.0042, "$0.0042"), (0.08, "$0.08"), (0.0995, "$0.10"), (0, "$0"), (-5, "-$5.00"), (None, "n/a"),
])
def test_usd(value: float | None, text: str) -> None:
    assert phrasing.usd(value) == text


def test_counts_changes_and_points() -> None:
    assert phrasing.count(45000) == "45,000" and phrasing.count(1240.5) == "1,241"
    assert phrasing.change_percent(0.4) == "40%" and phrasing.change_percent(-0.2) == "20%"
    assert phrasing.change_percent(0.025) == "2.5%" and phrasing.change_percent(0.03) == "3%"
    assert phrasing.points(0.13) == "13 points" and phrasing.points(-0.012) == "1.2 points"
    assert phrasing.points(0.01) == "1 point"


def test_latency_bound_is_strictly_above_the_percentile() -> None:
    assert phrasing.latency_bound_ms(1180) == 1200
    assert phrasing.latency_bound_ms(1200) == 1300  # 95% took <= 1.2 s, not necessarily < 1.2 s
    assert phrasing.latency_bound_ms(99) == 100
    assert phrasing.latency_bound_ms(12_345) == 13_000
    assert phrasing.seconds(1200) == "1.2" and phrasing.seconds(850) == "0.85" and phrasing.seconds(60000) == "60"


def test_brief_sentences() -> None:
    assert phrasing.accuracy_sentence(1 - 0.023) == "Answer accuracy: 97.7%"
    assert phrasing.latency_sentence(1200) == "95% of responses in under 1.2 seconds"
    assert phrasing.latency_sentence(1000) == "95% of responses in under 1 second"
    assert phrasing.latency_sentence(phrasing.latency_bound_ms(1130)) == "95% of responses in under 1.2 seconds"
    assert phrasing.users_served_sentence(45000, 0.85) == (
        "Our AI assistant served 45,000 users this month with 85% satisfaction.")
    assert phrasing.users_served_sentence(1, None) == (
        "Our AI assistant served 1 user this month; user satisfaction was not measured.")
    assert phrasing.users_served_sentence(12, None, too_few=16) == (
        "Our AI assistant served 12 users this month; user satisfaction was measured on only 16 responses, "
        "too few to state.")
    assert phrasing.success_sentence(0.008) == "99.2% of requests answered without an error"
    assert phrasing.success_sentence(0.0004) == ">99.9% of requests answered without an error"


@pytest.mark.parametrize(("args", "text"), [
    ((1400, 1000, 14000, 10000), "Costs increased 40% due to higher usage (requests +40%) ($1,000 → $1,400)."),
    ((1400, 1000, 10000, 10000), "Costs increased 40% due to higher cost per call (+40%) ($1,000 → $1,400)."),
    # Fewer calls: usage is not a cause of the rise, the price per call is.
    ((1400, 1000, 9000, 10000), "Costs increased 40% due to higher cost per call (+56%) ($1,000 → $1,400)."),
    ((1650, 1000, 11000, 10000),
     "Costs increased 65% due to higher usage (requests +10%) and higher cost per call (+50%) ($1,000 → $1,650)."),
    ((800, 1000, 8000, 10000), "Costs decreased 20% due to lower usage (requests -20%) ($1,000 → $800)."),
    ((1030, 1000, 10100, 10000), "Costs increased 3% ($1,000 → $1,030)."),  # neither cause beyond 2%
    ((1010, 1000, 8000, 10000), "Costs held steady at $1,010 ($1,000 the period before)."),
    ((1400, None, 14000, None), "Costs were $1,400; there is no previous period to compare with."),
    ((5, 0, 10, 0), "Costs rose from $0 to $5.00."),
    ((None, 1000, None, 10), "Costs: not available."),
])
def test_cost_change_names_only_the_causes_the_numbers_show(args: tuple, text: str) -> None:
    assert phrasing.cost_change_sentence(*args, flat_band=0.02) == text


def test_movement_and_change_phrases() -> None:
    assert phrasing.movement_sentence("Cost per user", "usd", 0.42, 0.525, "down") == (
        "Cost per user decreased 20% (from $0.53 to $0.42).")
    assert phrasing.movement_sentence("User satisfaction", "ratio", 0.85, 0.72, "up") == (
        "User satisfaction increased 13 points (from 72% to 85%).")
    assert phrasing.movement_sentence("Cost per request", "usd", 0.0115, 0.012, "down") == (
        "Cost per request decreased 4.2% (from $0.012 to $0.0115).")
    assert phrasing.movement_sentence("Requests", "count", 101, 100, "flat", "last month") == (
        "Requests held steady at 101 (100 last month).")
    assert phrasing.change_phrase({"trend": "up", "unit": "ratio", "change_abs": 0.13}) == "↑ 13 pts"
    assert phrasing.change_phrase({"trend": "down", "unit": "usd", "change_pct": -0.2}) == "↓ 20%"
    assert phrasing.change_phrase({"trend": "up", "unit": "usd", "change_pct": float("nan")}) == "↑ from 0"
    assert phrasing.change_phrase({"trend": "flat"}) == "→ flat"
    assert phrasing.change_phrase({"trend": "n/a"}) == "n/a"
    assert phrasing.latency_change_sentence(1200, 1500) == (
        "Responses got faster: 95% of responses in under 1.2 seconds (1.5 seconds the month before).")


def test_targets() -> None:
    assert phrasing.target_phrase(0.85, "ratio", "higher") == "at least 85%"
    assert phrasing.target_phrase(0.05, "ratio", "lower") == "at most 5%"
    assert phrasing.target_miss_sentence("Quality score", 0.8, 0.85, "ratio", "higher") == (
        "Quality score is below its 85% target (80%).")
    assert phrasing.target_miss_sentence("Error rate", 0.069, 0.05, "ratio", "lower") == (
        "Error rate is above its 5% limit (6.9%).")
    assert phrasing.status_phrase("exceeding", 0.85, "ratio") == "✓ exceeding target 85%"
    assert phrasing.status_phrase("below", 0.85, "ratio") == "✗ below target 85%"
    assert phrasing.value_text(1234.4, "ms") == "1.234 s"
