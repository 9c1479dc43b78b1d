"""`make bench`: every benchmark module measured in one run, printed as one table.

Each module `benchmarks/bench_<area>.py` defines `run(bench: Bench) -> None` and
adds rows with `bench.add(...)`. Ratios compare two timings taken in this same
run (ours vs plain `phe`, federated vs plaintext), never against stored numbers.
"""
