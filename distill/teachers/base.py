"""The one interface every teacher follows, so the labelling pipeline treats them alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# The emotion categories every corpus here (and most in the wild) shares, in this order.
CATEGORY_LABELS: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")


@dataclass
class TeacherOutput:
    """Teacher readings for a batch: ``adv`` [B, 3] (arousal, dominance, valence), an optional
    ``embedding`` [B, D] and optional ``categories`` [B, K]: probabilities (rows sum to 1) in the
    order of the teacher's ``category_labels``."""

    adv: np.ndarray
    embedding: np.ndarray | None = None
    categories: np.ndarray | None = None


@runtime_checkable
class Teacher(Protocol):
    """Batch of 16 kHz mono float32 waveforms (any lengths) -> A/D/V.

    ``teacher_id`` names the teacher *and its weights* (e.g. a content hash): the
    pseudo-label store refuses to mix labels from two different ids. A teacher with a
    categorical head also has ``category_labels`` (tuple of names) and fills
    ``TeacherOutput.categories``; read it with ``getattr(teacher, "category_labels", ())``.
    """

    teacher_id: str

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput: ...
