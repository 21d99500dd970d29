"""Distillation throughput through the real pipeline (``edgeser.distill``): teacher labelling
(decode, augment, teacher, store commit) in audio-hours per minute, and student training steps
in crops per second; on CPU and, when torch sees one, on a GPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from edgeser.distill.config import LabelConfig, TrainConfig
from edgeser.distill.data import CropAudio, find_sources, plan_crops
from edgeser.distill.label import label_crops
from edgeser.distill.store import LabelStore
from edgeser.distill.teachers.base import Teacher
from edgeser.distill.train import run_train

from edgeser.contract import SAMPLE_RATE

CROP_S = 3.0  # one crop length, so that every training batch is full
CROPS_PER_FILE = 4


@dataclass(frozen=True)
class Throughput:
    """One throughput figure: ``value`` in ``unit`` for ``what`` on ``device``."""

    what: str
    device: str
    value: float
    unit: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def devices() -> list[str]:
    """CPU, plus CUDA when available."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def write_corpus(folder: Path, audio: np.ndarray, crops: int, seed: int = 0) -> Path:
    """Enough distinct files of ``audio`` (a little seeded noise each, so no two files share a
    content hash) for ``crops`` crops of ``CROP_S`` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(-(-crops // CROPS_PER_FILE)):
        x = audio + 1e-3 * rng.standard_normal(audio.size).astype(np.float32)
        sf.write(folder / f"file{i:03d}.wav", x, SAMPLE_RATE, subtype="PCM_16")
    return folder


def labelling(
    name: str, teacher: Teacher, corpus: Path, store: Path, batch_size: int, device: str
) -> Throughput:
    """Label every crop of ``corpus`` into a fresh store at ``store``: audio-hours/minute."""
    cfg = LabelConfig(
        data=[str(corpus)],
        teacher=name,
        store=str(store),
        crops_per_file=CROPS_PER_FILE,
        min_crop_s=CROP_S,
        max_crop_s=CROP_S,
        batch_size=batch_size,
        device=device,
    )
    plan = plan_crops(find_sources(cfg.data), cfg)
    labels = LabelStore.open(cfg.store, teacher.teacher_id, teacher=name)
    report = label_crops(plan.crops, teacher, labels, batch_size, CropAudio(), progress=False)
    return Throughput(
        what=f"labelling: {name}",
        device=device,
        value=report.hours_per_minute,
        unit="audio-h/min",
        detail=f"{report.labelled} augmented {CROP_S:g} s crops, batch {batch_size}, "
        f"{torch.get_num_threads()} threads",
    )


def training(
    store: Path, out: Path, preset: str, steps: int, batch: int, device: str
) -> Throughput:
    """``steps`` training steps of ``preset`` on the labels in ``store``: crops per second."""
    cfg = TrainConfig(
        store=str(store),
        out=str(out),
        student=preset,
        max_steps=steps,
        batch_size=batch,
        dev_fraction=0.0,
        checkpoint_every=steps,
        eval_every=steps,
        device=device,
        resume=False,
    )
    report = run_train(cfg, progress=False)
    return Throughput(
        what=f"training: {preset}",
        device=device,
        value=report.crops_per_s,
        unit="crops/s",
        detail=f"batch {batch} x {CROP_S:g} s crops, {report.steps} steps, "
        f"{torch.get_num_threads()} threads",
    )
