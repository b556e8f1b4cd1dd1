"""Stakeholder language: figures and their changes as short, true sentences.

The product brief's examples are the model: "Answer accuracy: 97.7%", "95% of responses in under 1.2 seconds",
"Costs increased 40% due to higher usage". Every function here states only what its arguments show: a cause
("due to higher usage") is named only when the numbers passed in support it, a bound ("under 1.2 seconds") is
rounded so the statement stays true, and a share that is neither 0 nor 1 never prints as "0.0%" or "100.0%".
Functions take plain numbers and return text; they never read tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

ARROWS = {"up": "↑", "down": "↓", "flat": "→"}


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _round_half_up(value: float, decimals: int) -> Decimal:
    quantum = Decimal(1).scaleb(-decimals)
    return Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP)


def _trim(value: Decimal) -> str:
    """A rounded number without a zero fraction: 85.0 -> "85", 97.7 -> "97.7"."""
    return str(value.to_integral_value()) if value == value.to_integral_value() else str(value)


def percent(share: float | None, decimals: int = 1) -> str:
    """A 0-1 share as a percentage: 0.977 -> "97.7%", 0.85 -> "85%"; a share strictly between 0 and 1 never
    shows as 0% or 100% (0.9999 -> ">99.9%")."""
    if _missing(share):
        return "n/a"
    shown = _round_half_up(share * 100, decimals)
    smallest = Decimal(1).scaleb(-decimals)
    if 0 < share < 1 and shown >= 100:
        return f">{100 - smallest}%"
    if 0 < share < 1 and shown <= 0:
        return f"<{smallest}%"
    return f"{_trim(shown)}%"


def change_percent(change: float) -> str:
    """The size of a relative change: whole percent from 10% up ("40%"), one decimal below ("2.5%")."""
    size = abs(change) * 100
    decimals = 0 if size >= 10 else 1
    return f"{_trim(_round_half_up(size, decimals))}%"


def points(change_abs: float) -> str:
    """The size of a change of a share in percentage points: 0.13 -> "13 points", 0.012 -> "1.2 points"."""
    size = abs(change_abs) * 100
    decimals = 0 if size >= 10 else 1
    shown = _trim(_round_half_up(size, decimals))
    return f"{shown} point" if shown == "1" else f"{shown} points"


def usd(value: float | None, significant: int = 2) -> str:
    """Dollars as stakeholders read them: "$12,400", "$47.25", "$0.42", "$0.015"; "n/a" when missing.

    From $100 whole dollars, from $1 cents, below $1 `significant` digits (at least cents).
    """
    if _missing(value):
        return "n/a"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size == 0:
        return "$0"
    if size >= 100:
        return f"{sign}${_round_half_up(size, 0):,}"
    if size >= 1:
        return f"{sign}${_round_half_up(size, 2):,}"
    digits = max(2, significant - 1 - math.floor(math.log10(size)))
    text = str(_round_half_up(size, digits))
    while digits > 2 and text.endswith("0"):  # $0.080 -> $0.08, but keep cents
        text, digits = text[:-1], digits - 1
    return f"{sign}${text}"


def count(value: float | None) -> str:
    """A count with thousands separators, rounded half up: 45000 -> "45,000"."""
    if _missing(value):
        return "n/a"
    return f"{int(_round_half_up(value, 0)):,}"


def seconds(ms: float) -> str:
    """Milliseconds as seconds without trailing zeros: 1200 -> "1.2", 1000 -> "1", 850 -> "0.85"."""
    text = f"{Decimal(repr(float(ms))) / 1000:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def latency_bound_ms(percentile_ms: float) -> int:
    """The round bound a latency percentile is strictly under: next 0.1 s below 10 s, next second above.

    1180 -> 1200 and 1200 -> 1300 (a nearest-rank p95 of exactly 1.2 s means 95% took <= 1.2 s, not < 1.2 s).
    """
    step = 100 if percentile_ms < 10_000 else 1000
    return int((math.floor(percentile_ms / step) + 1) * step)


def latency_sentence(bound_ms: float | None, share: float = 0.95) -> str:
    """"95% of responses in under 1.2 seconds" for a bound that share of responses is under."""
    if _missing(bound_ms):
        return f"{percent(share, 0)} response time: not available"
    unit = "second" if seconds(bound_ms) == "1" else "seconds"
    return f"{percent(share, 0)} of responses in under {seconds(bound_ms)} {unit}"


def accuracy_sentence(accuracy: float | None) -> str:
    """"Answer accuracy: 97.7%" (1 - share of high-risk responses)."""
    return f"Answer accuracy: {percent(accuracy)}" if not _missing(accuracy) else "Answer accuracy: not available"


def value_text(value: float | None, unit: str) -> str:
    """A figure in its unit: ratio -> percent, usd -> dollars, ms -> seconds, counts and tokens with separators."""
    if _missing(value):
        return "n/a"
    if unit == "ratio":
        return percent(value)
    if unit == "usd":
        return usd(value)
    if unit == "ms":
        return f"{seconds(float(_round_half_up(value, 0)))} s"
    return count(value)


def change_phrase(row: Mapping[str, object]) -> str:
    """The change column as the dashboards show it: "↑ 13 pts", "↓ 20%", "→ flat", "new" or "n/a"."""
    moved = str(row.get("trend"))
    if moved == "n/a":
        return "n/a"
    if moved == "flat":
        return "→ flat"
    arrow = ARROWS[moved]
    if row.get("unit") == "ratio":
        return f"{arrow} {points(float(row['change_abs'])).replace('points', 'pts').replace('point', 'pt')}"
    change = row.get("change_pct")
    if _missing(change):  # from zero: no meaningful percentage
        return f"{arrow} from 0"
    return f"{arrow} {change_percent(float(change))}"


def target_phrase(target: float, unit: str, direction: str) -> str:
    """A target with its sense: "at least 85%" for higher-is-better, "at most 5%" for lower-is-better."""
    return f"{'at least' if direction == 'higher' else 'at most'} {value_text(target, unit)}"


def target_miss_sentence(label: str, value: float, target: float, unit: str, direction: str) -> str:
    """A missed target: "Quality score is below its 85% target (80%)." or "... is above its 5% limit (6.9%)."."""
    if direction == "higher":
        return f"{label} is below its {value_text(target, unit)} target ({value_text(value, unit)})."
    return f"{label} is above its {value_text(target, unit)} limit ({value_text(value, unit)})."


def status_phrase(status: str, target: float | None, unit: str) -> str:
    """"✓ target 85%" for meeting / exceeding, "✗ target 85%" for below; other statuses in words."""
    if status in ("meeting", "exceeding"):
        return f"✓ {status} target {value_text(target, unit)}"
    if status == "below":
        return f"✗ below target {value_text(target, unit)}"
    if status == "insufficient data":
        return f"too few responses to judge (target {value_text(target, unit)})"
    return ""


def distinct_usd(first: float, second: float) -> tuple[str, str]:
    """Two dollar figures with enough digits to tell them apart ($0.012 and $0.0115, not $0.012 twice)."""
    for significant in (2, 3, 4):
        pair = usd(first, significant), usd(second, significant)
        if pair[0] != pair[1]:
            break
    return pair


def movement_sentence(label: str, unit: str, current: float, previous: float, trend: str,
                      previous_label: str = "the period before") -> str:
    """How a figure moved: "Cost per user decreased 20% (from $0.52 to $0.42)."; shares move in points."""
    now, before = distinct_usd(current, previous) if unit == "usd" else (value_text(current, unit),
                                                                          value_text(previous, unit))
    if trend == "flat" or current == previous:
        return f"{label} held steady at {now} ({before} {previous_label})."
    verb = "increased" if current > previous else "decreased"
    if unit == "ratio":
        size = points(current - previous)
    elif previous == 0:
        return f"{label} {verb} from {before} to {now}."
    else:
        size = change_percent((current - previous) / abs(previous))
    return f"{label} {verb} {size} (from {before} to {now})."


def latency_change_sentence(current_bound_ms: float, previous_bound_ms: float, share: float = 0.95) -> str:
    """Faster or slower: "Responses got faster: 95% of responses in under 1.2 seconds (1.5 seconds the month before)"."""
    if current_bound_ms == previous_bound_ms:
        return f"Response times held steady: {latency_sentence(current_bound_ms, share)}."
    word = "faster" if current_bound_ms < previous_bound_ms else "slower"
    return (f"Responses got {word}: {latency_sentence(current_bound_ms, share)} "
            f"({seconds(previous_bound_ms)} seconds the month before).")


def cost_change_sentence(cost_now: float | None, cost_before: float | None, calls_now: float | None,
                         calls_before: float | None, flat_band: float, subject: str = "Costs",
                         previous_label: str = "the period before") -> str:
    """"Costs increased 40% due to higher usage." naming only the causes the numbers show.

    Cost = calls x cost per call. Higher usage is named when calls moved the same way as cost beyond the flat
    band; higher (or lower) cost per call when cost per call did. Neither beyond the band: no cause is named.
    """
    if _missing(cost_now):
        return f"{subject}: not available."
    if _missing(cost_before):
        return f"{subject} were {usd(cost_now)}; there is no previous period to compare with."
    if cost_before == 0:
        if cost_now == 0:
            return f"{subject} were $0 ($0 {previous_label} too)."
        return f"{subject} rose from $0 to {usd(cost_now)}."
    change = (cost_now - cost_before) / cost_before
    if abs(change) <= flat_band:
        return f"{subject} held steady at {usd(cost_now)} ({usd(cost_before)} {previous_label})."
    rising = change > 0
    causes = []
    if not _missing(calls_now) and not _missing(calls_before) and calls_before > 0:
        calls_change = (calls_now - calls_before) / calls_before
        if abs(calls_change) > flat_band and (calls_change > 0) == rising:
            causes.append(f"{'higher' if rising else 'lower'} usage (requests "
                          f"{'+' if calls_change > 0 else '-'}{change_percent(calls_change)})")
        if calls_now > 0:
            per_call_change = (cost_now / calls_now) / (cost_before / calls_before) - 1
            if abs(per_call_change) > flat_band and (per_call_change > 0) == rising:
                causes.append(f"{'higher' if rising else 'lower'} cost per call "
                              f"({'+' if per_call_change > 0 else '-'}{change_percent(per_call_change)})")
    sentence = f"{subject} {'increased' if rising else 'decreased'} {change_percent(change)}"
    if causes:
        sentence += " due to " + " and ".join(causes)
    return f"{sentence} ({usd(cost_before)} → {usd(cost_now)})."


def users_served_sentence(users: int, satisfaction: float | None, period: str = "this month",
                          too_few: int | None = None) -> str:
    """"Our AI assistant served 45,000 users this month with 85% satisfaction." (satisfaction only if judged)."""
    noun = "user" if users == 1 else "users"
    if _missing(satisfaction):
        # Measured on too few responses is not the same as not measured: Key metrics still show the value.
        why = (f"was measured on only {count(too_few)} {'response' if too_few == 1 else 'responses'}, too few to "
               "state" if too_few else "was not measured")
        return f"Our AI assistant served {count(users)} {noun} {period}; user satisfaction {why}."
    return f"Our AI assistant served {count(users)} {noun} {period} with {percent(satisfaction, 0)} satisfaction."


def success_sentence(error_rate: float | None) -> str:
    """"99.2% of requests answered without an error" (never rounds a rate with errors up to 100%)."""
    if _missing(error_rate):
        return "Requests answered without an error: not available"
    return f"{percent(1 - error_rate)} of requests answered without an error"
