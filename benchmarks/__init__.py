"""Speed and memory of the three residual rules; see benchmarks/README.md."""
