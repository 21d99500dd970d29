"""Label stage: run a teacher over crops and commit its readings to the store, batch by batch.

``label_crops`` is the reusable core (crop list, teacher, store, batch size): it skips crops the
store already holds, so a rerun after a crash continues where the last commit left off, and it
claims each batch before labelling it (``claims.py``), so several processes on one store share
the work. ``run_label`` plans the crops from a ``LabelConfig`` first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from edgeser.errors import AudioError

from .augment import NoiseBank
from .claims import BatchClaims
from .config import LabelConfig
from .data import Crop, CropAudio, CropPlan, DataError, find_sources, load_noise_bank, plan_crops
from .store import LabelStore
from .teachers.base import Teacher
from .teachers.ensemble import load_teachers
from .teachers.loading import category_labels, check_output, set_torch_threads

DECODE_WINDOW = 64  # batches whose crops are taken in file order, then sorted by length


@dataclass
class LabelReport:
    """What one labelling run did."""

    planned: int = 0
    already_done: int = 0
    labelled: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # file -> why its crops were skipped
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    by_others: int = 0  # crops other writers of the store labelled meanwhile
    repaired: list[str] = field(default_factory=list)  # damaged chunks moved aside first

    @property
    def hours_per_minute(self) -> float:
        """Audio hours labelled per wall-clock minute."""
        return (self.audio_s / 3600) / (self.wall_s / 60) if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"crops: {self.planned} planned, {self.already_done} already labelled, "
            f"{self.labelled} labelled now ({self.audio_s / 3600:.3f} h of audio in "
            f"{self.wall_s:.1f} s: {self.hours_per_minute:.3f} audio-hours/minute)"
        ]
        if self.by_others:
            lines.append(f"{self.by_others} crops labelled meanwhile by other writers")
        if self.repaired:
            lines.append(
                f"moved {len(self.repaired)} damaged chunks aside (their crops were labelled "
                f"again): {', '.join(self.repaired)}"
            )
        if self.skipped_files or self.failed:
            lines.append(
                f"skipped files: {len(self.skipped_files) + len(self.failed)} "
                "(unreadable or too short; first: "
                f"{(self.skipped_files + list(self.failed.items()))[0]})"
            )
        return "\n".join(lines)

    def count_others(self, crops: list[Crop], store: LabelStore) -> None:
        """Count the crops of ``crops`` that other writers committed during this run."""
        done = store.done_keys()
        self.by_others = sum(c.key in done for c in crops) - self.already_done - self.labelled


def label_batches(crops: list[Crop], batch_size: int) -> Iterator[list[Crop]]:
    """Batches of similar length (less padding) drawn from windows of consecutive crops (so a
    source file is decoded once while its crops are near)."""
    window = batch_size * DECODE_WINDOW
    for start in range(0, len(crops), window):
        part = sorted(crops[start : start + window], key=lambda c: (-c.length, c.key))
        for b in range(0, len(part), batch_size):
            yield part[b : b + batch_size]


def regenerate(
    batch: list[Crop], audio: CropAudio
) -> tuple[list[Crop], list[np.ndarray], dict[str, str]]:
    """The crops of a batch that could be regenerated, their waveforms, and why others not."""
    ready, waves, failed = [], [], {}
    for crop in batch:
        try:
            waves.append(audio(crop))
            ready.append(crop)
        except (AudioError, DataError) as exc:
            failed[crop.path] = str(exc)
    return ready, waves, failed


def prefetched(
    batches: Iterator[list[Crop]], audio: CropAudio
) -> Iterator[tuple[list[Crop], list[Crop], list[np.ndarray], dict[str, str]]]:
    """(batch, *regenerate(batch)) with the next batch drawn and decoded in a background
    thread while the caller works on this one (at most two batches in memory; drawing a batch
    may wait for other writers, which must not keep this one from committing its own)."""

    def pull() -> tuple | None:
        batch = next(batches, None)
        return None if batch is None else (batch, *regenerate(batch, audio))

    with ThreadPoolExecutor(max_workers=1) as decoder:
        future = decoder.submit(pull)
        while (item := future.result()) is not None:
            future = decoder.submit(pull)
            yield item


def label_crops(
    crops: list[Crop],
    teacher: Teacher,
    store: LabelStore,
    batch_size: int,
    audio: CropAudio | None = None,
    embeddings: bool = False,
    progress: bool = True,
) -> LabelReport:
    """Label the crops the store lacks, committing one chunk per batch (with the teacher's
    category probabilities when it has a categorical head); batches other writers of the
    store hold are left to them (and taken over if they die)."""
    labels = category_labels(teacher)
    store.check_teacher(teacher.teacher_id, categories=labels)
    audio = audio or CropAudio()
    done = store.done_keys()
    report = LabelReport(planned=len(crops), already_done=sum(c.key in done for c in crops))
    claims = BatchClaims(store, label_batches(crops, batch_size))
    batches = prefetched(claims.batches(), audio)
    start = time.perf_counter()
    total = report.planned - report.already_done
    try:
        with tqdm(total=total, unit="crop", desc="label", disable=not progress) as bar:
            for batch, ready, waves, failed in batches:
                report.failed.update(failed)
                if ready:
                    out = check_output(teacher(waves), len(ready), teacher.teacher_id, labels)
                    emb = out.embedding if embeddings else None
                    store.append(ready, out.adv, emb, out.categories)
                    report.labelled += len(ready)
                    report.audio_s += sum(c.seconds for c in ready)
                claims.finish(batch)
                report.wall_s = time.perf_counter() - start
                bar.update(len(batch))
                bar.set_postfix(h_per_min=f"{report.hours_per_minute:.3f}",
                                failed=len(report.failed))  # fmt: skip
    finally:
        batches.close()
        claims.release()  # on an error: what this run held is free for others at once
    report.count_others(crops, store)
    return report


def plan_label(cfg: LabelConfig) -> tuple[CropPlan, NoiseBank]:
    """The crops of ``cfg.data`` and the noise bank; DataError when no file is usable."""
    noise = load_noise_bank(cfg.augment.noise_dirs)
    plan = plan_crops(find_sources(cfg.data), cfg, noise)
    if not plan.crops:
        raise DataError(
            f"none of the {plan.n_files} files in {', '.join(cfg.data)} is usable audio "
            f"(first problem: {plan.skipped[0] if plan.skipped else 'none'})"
        )
    return plan, noise


def run_label(cfg: LabelConfig, progress: bool = True) -> LabelReport:
    """Plan the crops of ``cfg.data``, load the teacher, and label into ``cfg.store`` (on the
    Ray cluster ``cfg.ray`` when set)."""
    cfg.validate()
    if cfg.ray:
        from .ray_label import run_label_ray

        return run_label_ray(cfg, progress)
    set_torch_threads(cfg.num_threads)
    plan, noise = plan_label(cfg)
    teacher = load_teachers(cfg.teachers, cfg.calibration, cfg.device, cfg.max_chunk_s)
    members = getattr(teacher, "members", None)  # an ensemble's, recorded in the store
    store = LabelStore.open(
        cfg.store,
        teacher.teacher_id,
        teacher=" + ".join(cfg.teachers),
        members=members,
        categories=category_labels(teacher),
        repair=cfg.repair,
    )
    if progress:
        print(
            f"{plan.n_files} files, {len(plan.crops)} crops ({plan.seconds / 3600:.2f} h), "
            f"{len(plan.skipped)} files skipped; teacher {teacher.teacher_id}",
            file=sys.stderr,
        )
    try:
        report = label_crops(plan.crops, teacher, store, cfg.batch_size, CropAudio(noise),
                             cfg.store_embeddings, progress)  # fmt: skip
    finally:
        store.close()
    report.skipped_files, report.repaired = plan.skipped, [str(p) for p in store.repaired]
    return report
