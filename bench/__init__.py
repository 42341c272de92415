"""The benchmark harness: `bench/run.sh` measures the pipeline beside its ceilings and writes
docs/benchmarks.md (see that file for the figures and the exact commands)."""
