"""Detector-quality benchmarks on public data sets (read from a path given on the command line)."""
