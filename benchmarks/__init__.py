"""Speed and memory benchmarks (`make bench`): each module runs with `python -m benchmarks.<name>`."""
