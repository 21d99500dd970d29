"""``python -m benchmarks.backends [--iterations N]``: the numpy backend against onnxruntime
on one x86 core: CPU time per 3 s window (bundled int8 model, random-weight fp32 and int8
students) and per 0.25 s hop of the incremental graph, and the readings' largest difference.

The process is pinned to one core, onnxruntime runs one intra-op thread and numpy's BLAS
one thread. Workloads are timed interleaved (``benchmarks.timing``). Writes
``benchmarks/backends.json`` and the "numpy backend" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os

# one BLAS thread: must be set before numpy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import edgeser  # noqa: E402
from edgeser.audio import read_audio  # noqa: E402
from edgeser.contract import SAMPLE_RATE  # noqa: E402

from . import students  # noqa: E402
from .config import REPO  # noqa: E402
from .machine import machine_info  # noqa: E402
from .report import publish_focused, table  # noqa: E402
from .streaming import hop_pusher  # noqa: E402
from .timing import Workload, measure  # noqa: E402

OUT = REPO / "benchmarks"
WINDOW_S, HOP_S = 3.0, 0.25
BACKENDS = ("onnxruntime", "numpy")
HEADER = ["what", "weights", "audio/call", "onnxruntime CPU ms", "numpy CPU ms", "numpy p95 ms",
          "ratio", "max abs A/D/V diff", "max abs embedding diff", "readings"]  # fmt: skip


def pin_to_one_core() -> int:
    """Run this process on one core (the lowest usable); its number."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def window_workloads(name: str, path: Path, audio: np.ndarray) -> tuple[list[Workload], dict]:
    """One 3 s window through each backend, and the largest reading differences between
    them over the speech's windows (0.5 s apart)."""
    models = {b: edgeser.load(path, threads=1, backend=b) for b in BACKENDS}
    window = audio[: round(WINDOW_S * SAMPLE_RATE)]
    workloads = [
        Workload(f"{name}, {b}", lambda m=m: m.score_window(window), WINDOW_S)
        for b, m in models.items()
    ]
    size, step = round(WINDOW_S * SAMPLE_RATE), SAMPLE_RATE // 2
    starts = range(0, audio.size - size + 1, step)
    readings = {b: [m.score_window(audio[s : s + size]) for s in starts] for b, m in models.items()}
    return workloads, _differences(readings, len(starts))


def hop_workloads(stream: students.StreamStudent, audio: np.ndarray) -> tuple[list, dict]:
    """One hop of the incremental graph through each backend, and the readings' largest
    difference over the speech."""
    models = {b: edgeser.load(stream.window_model.path, threads=1, backend=b) for b in BACKENDS}
    workloads = [
        Workload(
            f"incremental hop ({stream.window_model.name}), {b}",
            hop_pusher(m.scorer(WINDOW_S, HOP_S, vad=None), audio, WINDOW_S, HOP_S),
            HOP_S,
        )
        for b, m in models.items()
    ]
    readings = {b: m.scorer(WINDOW_S, HOP_S, vad=None).push(audio) for b, m in models.items()}
    return workloads, _differences(readings, len(readings["numpy"]))


def _differences(readings: dict[str, list], n: int) -> dict[str, Any]:
    a, b = (readings[k] for k in BACKENDS)
    adv = max(float(np.abs(np.subtract(x.adv, y.adv)).max()) for x, y in zip(a, b, strict=True))
    emb = max(
        float(np.abs(x.embedding - y.embedding).max()) for x, y in zip(a, b, strict=True)
    )
    return {"readings": n, "max_abs_adv": adv, "max_abs_embedding": emb}


def run(iterations: int) -> dict[str, Any]:
    """Measure; the results as a dict."""
    core = pin_to_one_core()
    audio = np.resize(read_audio(REPO / "examples" / "speech.wav"), 12 * SAMPLE_RATE)
    with tempfile.TemporaryDirectory(prefix="edgeser-bench-") as tmp:
        files = [
            *students.bundled_students(WINDOW_S),
            *students.random_students(Path(tmp), WINDOW_S, 1.0),
        ]
        stream = students.random_stream_student(Path(tmp), WINDOW_S, HOP_S)
        groups = [(f, *window_workloads(f.name, f.path, audio)) for f in files]
        groups.append((stream.window_model, *hop_workloads(stream, audio)))
        workloads = [w for _, ws, _ in groups for w in ws]
        latencies = {r.name: r for r in measure(workloads, threads=1, iterations=iterations)}
    rows = []
    for student, (fast, slow), parity in groups:
        ort_ms, np_ms = latencies[fast.name].cpu_p50_ms, latencies[slow.name].cpu_p50_ms
        rows.append(
            {
                "what": fast.name.rsplit(", ", 1)[0],
                "weights": student.origin,
                "audio_s": fast.audio_s,
                "onnxruntime_cpu_p50_ms": ort_ms,
                "numpy_cpu_p50_ms": np_ms,
                "numpy_p95_ms": latencies[slow.name].p95_ms,
                "ratio": np_ms / ort_ms,
                **parity,
            }
        )
    return {"machine": machine_info(REPO), "core": core, "iterations": iterations, "rows": rows}


def section(results: dict[str, Any], command: str) -> list[str]:
    """The RESULTS.md section."""
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    rows = [
        [
            r["what"], r["weights"], f"{r['audio_s']:g} s", f"{r['onnxruntime_cpu_p50_ms']:.2f}",
            f"{r['numpy_cpu_p50_ms']:.2f}", f"{r['numpy_p95_ms']:.2f}", f"{r['ratio']:.1f}x",
            f"{r['max_abs_adv']:.1e}", f"{r['max_abs_embedding']:.1e}", r["readings"],
        ]
        for r in results["rows"]
    ]  # fmt: skip
    return [
        "## numpy backend vs onnxruntime (one core)",
        "",
        f"Produced by `{command}` on {m['date_utc']} (commit `{m['git']}`), {m['cpu']}, "
        f"pinned to core {results['core']}, load average {m['load_average_1m']}; {versions}.",
        "onnxruntime on one intra-op thread, numpy with one BLAS thread; median CPU time per "
        f"call over {results['iterations']} interleaved calls. ratio = numpy / onnxruntime. "
        "Largest |numpy - onnxruntime| of A/D/V and of the embedding over the readings of "
        "`examples/speech.wav` (tiled to 12 s; windows 0.5 s apart, or every hop).",
        "",
        *table(HEADER, rows),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.backends", *(argv or sys.argv[1:])])
    results = run(args.iterations)
    publish_focused(OUT, "backends", "numpy-backend", results, command, section(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
