"""Side-by-side benchmarks (`python -m bench.<name>`); results as JSON + markdown."""
