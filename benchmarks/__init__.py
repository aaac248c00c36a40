"""Side-by-side performance benchmarks; each module runs with `python -m benchmarks.NAME`."""
