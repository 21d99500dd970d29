"""Labelling throughput on a local Ray cluster against one process (issue 8): the same crops,
the same teacher, the same store format, in audio-hours per minute.

``python -m benchmarks.ray_throughput [--teacher SPEC] [--crops N] [--cpus N] [--out FILE]``
labels the crops twice, with ``label.run_label`` and ``ray_label.run_label_ray`` (a local
cluster of ``--cpus`` CPUs), checks that both stores hold the same readings, and prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgeser.distill.config import LabelConfig
from edgeser.distill.data import Crop, CropAudio
from edgeser.distill.label import LabelReport, plan_label, run_label
from edgeser.distill.ray_label import import_ray, run_label_ray
from edgeser.distill.store import LabelStore

from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE

from .config import REPO
from .machine import machine_info
from .throughput import CROPS_PER_FILE, write_corpus

REFERENCE_TEACHER = f"reference:{REPO / 'distill' / 'weights' / 'reference_teacher.pt'}"
FILE_S = 6.0  # length of each generated file: crops of 1-6 s fit


def figures(report: LabelReport, total_s: float, store: str) -> dict[str, float]:
    """Audio-hours per minute over the whole call, over the labelling loop (for Ray: from
    the pipeline's start, actor start-up included) and between the first and last commit."""
    hours = report.audio_s / 3600
    return {
        "crops": report.labelled,
        "audio_h": round(hours, 4),
        "total_s": round(total_s, 2),
        "label_s": round(report.wall_s, 2),
        "h_per_min_total": round(hours / (total_s / 60), 4),
        "h_per_min": round(report.hours_per_minute, 4),
        "h_per_min_steady": round(steady_rate(LabelStore.open(store)), 4),
    }


def steady_rate(store: LabelStore) -> float:
    """Audio-hours per minute committed after the first chunk, from the chunks' commit times
    (their names start with ``time.time_ns()``): the rate once everything has started."""
    times, hours = [], []
    for path in store.chunk_paths():
        times.append(int(path.name.split("-")[0]) / 1e9)
        with np.load(path) as chunk:
            hours.append(sum(Crop.from_json(t).seconds for t in chunk["crops"]) / 3600)
    return sum(hours[1:]) / ((max(times) - min(times)) / 60) if len(times) > 1 else 0.0


def commit_rate(cfg: LabelConfig, root: Path, batches: int = 200) -> float:
    """Batches per second that the driver commits to a store on ``root``'s disk (one fsync'd
    chunk each): the ceiling of the driver-side writer, whatever the cluster."""
    crops = plan_label(cfg)[0].crops[: cfg.batch_size]
    store = LabelStore.open(root, "commit-rate", teacher="none")
    adv = np.zeros((len(crops), 3), np.float32)
    start = time.perf_counter()
    for _ in range(batches):
        store.append(crops, adv)
    return batches / (time.perf_counter() - start)


def decode_rate(cfg: LabelConfig) -> float:
    """Audio-hours per minute that one core regenerates (decode, augment): the CPU work that
    has to keep pace with a GPU teacher."""
    crop_plan, noise = plan_label(cfg)
    audio = CropAudio(noise)
    start = time.perf_counter()
    for crop in crop_plan.crops:
        audio(crop)
    return crop_plan.seconds / 3600 / ((time.perf_counter() - start) / 60)


def timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def compare(
    workdir: Path,
    teacher: str = REFERENCE_TEACHER,
    crops: int = 400,
    batch_size: int = 16,
    cpus: int | None = None,
    actor_threads: int = 1,
    single_threads: int | None = None,
) -> dict[str, Any]:
    """Label ``crops`` augmented 1-6 s crops of generated audio on one process (torch on
    ``single_threads`` threads, default ``cpus``) and on a local Ray cluster of ``cpus`` CPUs
    (teacher actors of ``actor_threads`` threads, as many as fit)."""
    ray = import_ray()
    cpus = cpus or len(os.sched_getaffinity(0))
    speech = np.resize(read_audio(REPO / "examples" / "speech.wav"), int(FILE_S * SAMPLE_RATE))
    corpus = write_corpus(workdir / "audio", speech, crops)
    cfg = LabelConfig(data=[str(corpus)], teacher=teacher, store=str(workdir / "single"),
                      crops_per_file=CROPS_PER_FILE, batch_size=batch_size, device="cpu",
                      num_threads=single_threads or cpus)  # fmt: skip
    decode = decode_rate(cfg)
    commits = commit_rate(cfg, workdir / "commit")
    single, single_s = timed(run_label, cfg, False)
    ray_cfg = dataclasses.replace(
        cfg, store=str(workdir / "ray"), ray="local", num_threads=actor_threads
    )
    _, init_s = timed(lambda: ray.init(num_cpus=cpus, include_dashboard=False))
    try:
        on_ray, ray_s = timed(run_label_ray, ray_cfg, False)
    finally:
        ray.shutdown()
    a_store = LabelStore.open(cfg.store)
    a, b = a_store.read(), LabelStore.open(ray_cfg.store).read()
    return {
        "machine": machine_info(REPO),
        "teacher": teacher,
        "teacher_id": a_store.teacher_id,
        "batch_size": batch_size,
        "single_process": {
            **figures(single, single_s, cfg.store),
            "torch_threads": cfg.num_threads,
        },
        "ray_local": {
            **figures(on_ray, ray_s, ray_cfg.store),
            "cpus": cpus,
            "actor_threads": actor_threads,
            "cluster_start_s": round(init_s, 1),
        },
        "decode_h_per_min_one_core": round(decode, 3),
        "driver_commits_per_s": round(commits, 1),
        "max_abs_diff": float(np.abs(a.subset(b.crops).adv - b.adv).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ray_throughput", description=__doc__
    )
    parser.add_argument("--teacher", default=REFERENCE_TEACHER, help="teacher spec")
    parser.add_argument("--crops", type=int, default=400, help="crops to label (4 per file)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--cpus",
        type=int,
        help="CPUs of the Ray cluster and torch threads of the one process (default: all)",
    )
    parser.add_argument("--actor-threads", type=int, default=1, help="torch threads per actor")
    parser.add_argument("--single-threads", type=int, help="torch threads of the one process")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeser-ray-bench-") as tmp:
        result = compare(
            Path(tmp),
            args.teacher,
            args.crops,
            args.batch_size,
            args.cpus,
            args.actor_threads,
            args.single_threads,
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
