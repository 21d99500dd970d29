"""The one interface every teacher follows, so the labelling pipeline treats them alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class TeacherOutput:
    """Teacher readings for a batch: ``adv`` [B, 3] (arousal, dominance, valence) and an
    optional ``embedding`` [B, D]."""

    adv: np.ndarray
    embedding: np.ndarray | None = None


@runtime_checkable
class Teacher(Protocol):
    """Batch of 16 kHz mono float32 waveforms (any lengths) -> A/D/V.

    ``teacher_id`` names the teacher *and its weights* (e.g. a content hash): the
    pseudo-label store refuses to mix labels from two different ids.
    """

    teacher_id: str

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput: ...
