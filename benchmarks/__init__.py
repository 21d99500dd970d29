"""edgeser benchmarks: latency, memory, sizes and throughput, measured in one reproducible run.

Run from the repository root: ``python -m benchmarks [--quick] [--threads N]``.
"""
