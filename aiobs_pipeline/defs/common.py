"""Helpers the asset modules share: the warehouse pool, a run's hours, joining parts, Markdown previews."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

# The Dagster pool of every asset that writes the warehouse (a limit of one serialises DuckDB writers).
WAREHOUSE_POOL = "aiobs_warehouse"
HOUR = timedelta(hours=1)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts from `start` up to, not including, `end` (a run's partition window)."""
    hours, current = [], start
    while current < end:
        hours.append(current)
        current += HOUR
    return hours


def concat_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty parts joined (the first part when all are empty, so the columns survive)."""
    non_empty = [p for p in parts if len(p)]
    if not non_empty:
        return parts[0] if parts else pd.DataFrame()
    return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]


def markdown_preview(frame: pd.DataFrame, limit: int = 20) -> str:
    """The first `limit` rows as a Markdown table for asset metadata, saying how many more the table holds."""
    if frame.empty:
        return "_none_"
    text = frame.head(limit).to_markdown(index=False)
    return text if len(frame) <= limit else f"{text}\n\n_{len(frame) - limit} more rows in the table_"
