"""Recording the conformance fixtures: `python -m tests.conformance.record [--only NAME ...]`."""
