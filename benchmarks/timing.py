"""Latency measurement: time workloads repeatedly and summarise them as percentiles and RTF.

Workloads compared with each other are timed interleaved (a, b, a, b, ...), so that load from
other processes on a shared machine falls on all of them alike. Besides wall time, each call's
CPU time of this process is recorded: on a busy machine it still measures the work done, not
the time spent waiting for a core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One thing to time: ``fn`` handles ``audio_s`` seconds of audio per call."""

    name: str
    fn: Callable[[], object]
    audio_s: float
    params: int | None = None
    macs: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Latency:
    """Per-call latency of one workload: percentiles in ms and the real-time factor.

    ``rtf`` = median compute time / seconds of audio handled per call (below 1 = faster than
    real time); ``cpu_p50_ms`` is the median CPU time of this process per call (all its
    threads); ``macs`` is the multiply-accumulate count per call when it is known.
    """

    name: str
    threads: int
    audio_s: float
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    rtf: float
    cpu_p50_ms: float
    params: int | None = None
    macs: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    workloads: list[Workload], *, threads: int, iterations: int, warmup: int = 1
) -> list[Latency]:
    """Run each workload ``warmup`` times untimed, then ``iterations`` rounds in which every
    workload runs once (interleaved), timed with ``perf_counter``."""
    for w in workloads:
        for _ in range(warmup):
            w.fn()
    wall = np.empty((len(workloads), iterations))
    cpu = np.empty((len(workloads), iterations))
    for i in range(iterations):
        for j, w in enumerate(workloads):
            c0, t0 = time.process_time(), time.perf_counter()
            w.fn()
            wall[j, i], cpu[j, i] = time.perf_counter() - t0, time.process_time() - c0
    return [
        _summary(w, 1000.0 * wall[j], 1000.0 * cpu[j], threads) for j, w in enumerate(workloads)
    ]


def _summary(w: Workload, ms: np.ndarray, cpu_ms: np.ndarray, threads: int) -> Latency:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Latency(
        name=w.name,
        threads=threads,
        audio_s=w.audio_s,
        n=ms.size,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
        rtf=float(p50 / 1000.0 / w.audio_s),
        cpu_p50_ms=float(np.median(cpu_ms)),
        params=w.params,
        macs=w.macs,
        note=w.note,
    )
