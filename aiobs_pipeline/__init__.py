"""aiobs: observability and evaluation pipeline for LLM applications, on Dagster."""

__version__ = "0.1.0"
