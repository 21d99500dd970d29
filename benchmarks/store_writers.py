"""Concurrent writers on one label store (issue 13): 1, 2 and 3 ``edgeser-distill label``
processes started together on one plan, timed from the first start to the last exit
(``wall_s``, start-up included) and per writer over its labelling loop
(``label_loop_s_per_writer``, from its first claimed batch to its end).

``python -m benchmarks.store_writers [--crops N] [--batch-size N] [--delay-s S] [--out FILE]``
uses ``sleepy_teacher`` (a fixed per-batch wait standing in for a GPU teacher, so the CPUs stay
free for the writers themselves), checks that every crop is in the store once, and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from edgeser.distill.store import LabelStore

from .config import REPO
from .machine import machine_info

DELAY_ENV = "EDGESER_BENCH_TEACHER_DELAY"
CROPS_PER_FILE = 2


def sleepy_teacher(waves: list[np.ndarray]) -> np.ndarray:
    """A teacher that waits ``$EDGESER_BENCH_TEACHER_DELAY`` seconds per batch, then reads the
    level, the zero-crossing rate and the peak of each crop."""
    time.sleep(float(os.environ.get(DELAY_ENV, "0")))
    rows = [[np.sqrt(np.mean(w**2)), np.mean(np.abs(np.diff(np.sign(w)))) / 2, np.abs(w).max()]
            for w in waves]  # fmt: skip
    return np.clip(np.array(rows, dtype=np.float32), 0, 1)


def write_corpus(folder: Path, crops: int, seed: int = 0) -> Path:
    """Noisy tones, 1.5 s each, enough for ``crops`` crops."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    t = np.arange(24000) / 16000
    for i in range(-(-crops // CROPS_PER_FILE)):
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{i:03d}.wav", x.astype(np.float32), 16000)
    return folder


def run_writers(n: int, corpus: Path, store: Path, batch_size: int, delay_s: float) -> dict:
    """Start ``n`` label processes on ``store`` at once; wall time and who labelled what."""
    cmd = [sys.executable, "-m", "edgeser.distill.cli", "label", "--data", str(corpus),
           "--teacher", "benchmarks.store_writers:sleepy_teacher", "--store", str(store),
           "--crops-per-file", str(CROPS_PER_FILE), "--min-crop-s", "1", "--max-crop-s", "1",
           "--batch-size", str(batch_size), "--num-threads", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, DELAY_ENV: str(delay_s), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]  # fmt: skip
    outs = [p.communicate()[0] for p in procs]
    wall_s = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a label process failed: {outs}")
    health = LabelStore.open(store).health()
    return {
        "writers": n,
        "wall_s": round(wall_s, 2),
        "labelled_per_writer": [int(re.search(r"(\d+) labelled now", o).group(1)) for o in outs],
        "label_loop_s_per_writer": [float(re.search(r"in ([\d.]+) s", o).group(1)) for o in outs],
        "crops_in_store": health.crops,
        "duplicate_rows": health.duplicates,
        "chunks": health.chunks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=120, help="crops to label (default 120)")
    parser.add_argument("--batch-size", type=int, default=4, help="crops per batch (default 4)")
    parser.add_argument("--delay-s", type=float, default=2.0,
                        help="teacher time per batch in seconds (default 2.0)")  # fmt: skip
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "audio", args.crops)
        runs = [run_writers(n, corpus, Path(tmp) / f"store{n}", args.batch_size, args.delay_s)
                for n in (1, 2, 3)]  # fmt: skip
    result: dict[str, Any] = {
        "machine": machine_info(REPO),
        "command": "python -m benchmarks.store_writers " + " ".join(argv or sys.argv[1:]),
        "crops": args.crops,
        "batch_size": args.batch_size,
        "teacher_delay_s_per_batch": args.delay_s,
        "runs": runs,
        "speedup_vs_one": [round(runs[0]["wall_s"] / r["wall_s"], 2) for r in runs],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
