"""The Dagster layer: thin assets, checks, jobs, schedules and sensors, one module per domain."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfill policies and tolerant time-window mappings are beta in Dagster 1.13 but are exactly
# what partitioned warehouse tables need; their warnings would drown the demo's and the UI's logs.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
