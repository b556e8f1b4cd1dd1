"""The Dagster layer: thin assets, checks, jobs, schedules and sensors, one module per domain."""
