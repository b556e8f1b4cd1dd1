"""The docs stay true to the code: every canonical column and quarantine reason is documented."""

from __future__ import annotations

from pathlib import Path

from aiobs_pipeline.schema import QUARANTINE_REASONS, SPAN_COLUMNS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_formats_doc_lists_every_column_and_reason() -> None:
    text = (DOCS / "formats.md").read_text()
    missing = [c.name for c in SPAN_COLUMNS if f"`{c.name}`" not in text]
    missing += [r for r in QUARANTINE_REASONS if f"`{r}`" not in text]
    assert not missing, f"docs/formats.md does not mention: {missing}"
