"""Teacher ensembles, as the Wav2Small paper distilled from one: the label of a crop is the mean
of the members' A/D/V, each first mapped by an optional per-teacher affine calibration
(``scale * adv + offset`` per dimension), so that teachers on different scales can be combined.

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
from .loading import check_output, load_teacher


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

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        readings = [
            check_output(t(waveforms), len(waveforms), t.teacher_id).adv for t in self.teachers
        ]
        calibrated = np.stack(readings) * self.scale[:, None, :] + self.offset[:, None, :]
        return TeacherOutput(calibrated.mean(axis=0))


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
