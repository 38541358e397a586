"""Speed and memory of the three residual rules (issue #8); see benchmarks/README.md."""
