"""Conformance of aiobs's readers with what real instrumentation libraries write (fixtures in
tests/fixtures/conformance/, recorded by tests/conformance/record/)."""
