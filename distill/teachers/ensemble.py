"""Teacher ensembles, as the Wav2Small paper distilled from one: the label of a crop is the mean
of the members' A/D/V, each first mapped by an optional per-teacher affine calibration
(``scale * adv + offset`` per dimension), so that teachers on different scales can be combined.
Category probabilities are the mean of those of the members with a categorical head (which
must all have the same labels in the same order; members without one give A/D/V only).

The ensemble's ``teacher_id`` hashes every member's id and calibration, so a store refuses
labels of another combination; ``members`` is what the store records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeser.errors import ConfigError

from ..config import TeacherCalibration
from .base import Teacher, TeacherOutput
from .loading import TeacherError, category_labels, check_output, load_teacher


class EnsembleTeacher:
    """Mean of calibrated member readings; no embedding (members' embeddings differ)."""

    def __init__(
        self,
        teachers: Sequence[Teacher],
        specs: Sequence[str],
        calibrations: Sequence[TeacherCalibration],
    ):
        if not len(teachers) == len(specs) == len(calibrations) >= 1:
            raise ConfigError("an ensemble needs one spec and one calibration per teacher")
        self.teachers = list(teachers)
        self.scale = np.array([c.scale for c in calibrations], dtype=np.float32)  # [T, 3]
        self.offset = np.array([c.offset for c in calibrations], dtype=np.float32)
        self.members: list[dict[str, Any]] = [
            {"spec": s, "teacher_id": t.teacher_id, "scale": c.scale, "offset": c.offset}
            for s, t, c in zip(specs, teachers, calibrations, strict=True)
        ]
        identity = [{k: m[k] for k in ("teacher_id", "scale", "offset")} for m in self.members]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        self.teacher_id = f"ensemble:{len(self.teachers)}:{digest[:16]}"
        self.category_labels = shared_labels(self.teachers, specs)

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        outputs = [
            check_output(t(waveforms), len(waveforms), t.teacher_id, category_labels(t))
            for t in self.teachers
        ]
        readings = np.stack([o.adv for o in outputs])
        calibrated = readings * self.scale[:, None, :] + self.offset[:, None, :]
        probs = [o.categories for o in outputs if o.categories is not None]
        categories = np.mean(probs, axis=0, dtype=np.float32) if probs else None
        return TeacherOutput(calibrated.mean(axis=0), categories=categories)


def shared_labels(teachers: Sequence[Teacher], specs: Sequence[str]) -> tuple[str, ...]:
    """The category labels of the members that have a categorical head (empty if none has);
    TeacherError when two of them name different labels or order them differently."""
    heads = [(s, category_labels(t)) for s, t in zip(specs, teachers, strict=True)]
    heads = [(s, labels) for s, labels in heads if labels]
    if any(labels != heads[0][1] for _, labels in heads):
        named = "; ".join(f"{s}: {', '.join(labels)}" for s, labels in heads)
        raise TeacherError(
            f"ensemble members disagree on their category labels ({named}); their "
            "probabilities cannot be averaged: use members with the same labels in one order"
        )
    return heads[0][1] if heads else ()


def load_teachers(
    specs: Sequence[str],
    calibrations: Sequence[TeacherCalibration] = (),
    device: str = "auto",
    max_chunk_s: float = 20.0,
) -> Teacher:
    """One teacher as ``load_teacher`` gives it (so its stores stay valid), or an ensemble
    when several are named or a calibration is given; ConfigError unless there is one
    calibration per teacher or none."""
    specs = list(specs)
    if not specs:
        raise ConfigError("label: no teacher given")
    if calibrations and len(calibrations) != len(specs):
        raise ConfigError(
            f"label.calibration: {len(calibrations)} calibration(s) for {len(specs)} "
            "teacher(s); give one per teacher, in the same order, or none"
        )
    if len(specs) == 1 and not calibrations:
        return load_teacher(specs[0], device=device, max_chunk_s=max_chunk_s)
    teachers = [load_teacher(s, device=device, max_chunk_s=max_chunk_s) for s in specs]
    calibrations = list(calibrations) or [TeacherCalibration() for _ in specs]
    return EnsembleTeacher(teachers, specs, calibrations)
