"""Cost domain: pricing (genai-prices + overrides), hourly/daily aggregates, budgets, spikes, trace trees.

Plain functions over pandas DataFrames of the canonical span schema; no Dagster imports here.
"""

from aiobs_pipeline.costs.aggregate import daily_costs, hourly_costs, to_markdown
from aiobs_pipeline.costs.anomalies import alerts, cost_anomalies
from aiobs_pipeline.costs.budgets import budget_breaches, user_spend_before
from aiobs_pipeline.costs.pricing import price_spans, pricing_summary
from aiobs_pipeline.costs.settings import CostSettings, PerCallPrice, PriceOverride
from aiobs_pipeline.costs.summary import cost_summary
from aiobs_pipeline.costs.trace_tree import TraceNode, build_tree, render_tree, tree_to_dict

__all__ = [
    "CostSettings", "PerCallPrice", "PriceOverride", "TraceNode", "alerts", "budget_breaches", "build_tree",
    "cost_anomalies", "cost_summary", "daily_costs", "hourly_costs", "price_spans", "pricing_summary",
    "render_tree", "to_markdown", "tree_to_dict", "user_spend_before",
]
