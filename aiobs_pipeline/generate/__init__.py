"""`aiobs generate`: deterministic, realistic trace exports in all five formats, with injected incidents.

Public entry points: `generate(...)` writes a window of hourly landing files (plus feedback files and
`_ground_truth.json`) and returns a `GenerationSummary`; `demo_window(today)` picks the demo's eight days;
`default_incidents(start, end)` lists the demo incidents; `IncidentSpec` describes one incident.
"""

from aiobs_pipeline.generate.runner import GROUND_TRUTH_FILE, GenerationSummary, generate, hour_folder
from aiobs_pipeline.generate.scenario import (
    INCIDENT_KINDS,
    IncidentSpec,
    default_incidents,
    demo_window,
    incident_day,
)
from aiobs_pipeline.generate.traces import FORMATS

__all__ = [
    "FORMATS",
    "GROUND_TRUTH_FILE",
    "INCIDENT_KINDS",
    "GenerationSummary",
    "IncidentSpec",
    "default_incidents",
    "demo_window",
    "generate",
    "hour_folder",
    "incident_day",
]
