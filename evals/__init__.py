"""What ML engineers edit and review: prompt versions, eval datasets and detector-quality benchmarks."""
