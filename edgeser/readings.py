"""Readings: what the runtime hands out, one per scored clip or window, and their aggregate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .contract import LABELS
from .errors import ModelError

NAN = float("nan")


@dataclass(frozen=True)
class Reading:
    """Arousal, dominance and valence (about 0..1) of the audio from ``start_s`` to ``end_s``.

    ``voiced`` is False for audio the voice-activity gate found no speech in; such a reading is
    not scored and its A/D/V are NaN. ``embedding`` is the model's pooled vector when it has one.
    """

    start_s: float
    end_s: float
    arousal: float
    dominance: float
    valence: float
    voiced: bool = True
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def adv(self) -> tuple[float, float, float]:
        """The three dimensions in contract order (arousal, dominance, valence)."""
        return (self.arousal, self.dominance, self.valence)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no embedding; NaN becomes None)."""
        row: dict[str, Any] = {"start_s": round(self.start_s, 6), "end_s": round(self.end_s, 6)}
        for name, value in zip(LABELS, self.adv, strict=True):
            row[name] = None if math.isnan(value) else value
        row["voiced"] = self.voiced
        return row

    @classmethod
    def unvoiced(cls, start_s: float, end_s: float) -> Reading:
        """The reading of a window the gate found no speech in."""
        return cls(start_s, end_s, NAN, NAN, NAN, voiced=False)


def scored(
    source: str, start_s: float, end_s: float, adv: np.ndarray, embedding: np.ndarray | None
) -> Reading:
    """The voiced reading of a window from a graph's outputs (``adv`` [3], ``embedding``);
    ModelError naming the graph ``source`` and the window if any of them is NaN or inf."""
    if not (np.isfinite(adv).all() and (embedding is None or np.isfinite(embedding).all())):
        raise ModelError(
            f"{source} gave NaN or infinite output for the window {start_s:.3f}-{end_s:.3f} s"
        )
    return Reading(start_s, end_s, *map(float, adv), voiced=True, embedding=embedding)


@dataclass(frozen=True)
class FileScore:
    """The scores of one file: a reading per window and the whole-file aggregate."""

    path: Path
    duration_s: float
    windows: list[Reading]
    aggregate: Reading


def aggregate(readings: Sequence[Reading], start_s: float, end_s: float) -> Reading:
    """The mean of the voiced readings (A/D/V and embedding) over ``start_s..end_s``.

    Windows all have the same length, so a plain mean weighs every stretch of speech alike; the
    mean of a single reading is that reading exactly. No voiced reading -> an unvoiced aggregate.
    """
    voiced = [r for r in readings if r.voiced]
    if not voiced:
        return Reading.unvoiced(start_s, end_s)
    adv = np.mean([r.adv for r in voiced], axis=0, dtype=np.float64)
    embeddings = [r.embedding for r in voiced if r.embedding is not None]
    embedding = np.mean(embeddings, axis=0).astype(np.float32) if embeddings else None
    return Reading(start_s, end_s, *map(float, adv), voiced=True, embedding=embedding)
