"""Readings: what the runtime hands out, one per scored clip or window, and their aggregate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .contract import CATEGORY_TOLERANCE, LABELS, OUTPUT_CATEGORIES
from .errors import ModelError

NAN = float("nan")


@dataclass(frozen=True)
class Reading:
    """Arousal, dominance and valence (about 0..1) of the audio from ``start_s`` to ``end_s``.

    ``voiced`` is False for audio the voice-activity gate found no speech in; such a reading is
    not scored and its A/D/V are NaN. ``embedding`` is the model's pooled vector when it has one.
    ``categories`` maps each emotion category of a model with a categorical head to its
    probability, in the model's label order (None: no head, or unvoiced).
    """

    start_s: float
    end_s: float
    arousal: float
    dominance: float
    valence: float
    voiced: bool = True
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    categories: dict[str, float] | None = field(default=None, hash=False)

    @property
    def adv(self) -> tuple[float, float, float]:
        """The three dimensions in contract order (arousal, dominance, valence)."""
        return (self.arousal, self.dominance, self.valence)

    @property
    def emotion(self) -> str | None:
        """The most probable category (the first of a tie); None without ``categories``."""
        if self.categories is None:
            return None
        return max(self.categories, key=self.categories.__getitem__)

    def to_dict(self, categories: bool | None = None) -> dict[str, Any]:
        """A JSON-ready dict (no embedding; NaN becomes None), with ``emotion`` and
        ``categories`` when asked (None: when this reading has categories), null if it has none,
        so that every row of a model with a categorical head has both keys."""
        row: dict[str, Any] = {"start_s": round(self.start_s, 6), "end_s": round(self.end_s, 6)}
        for name, value in zip(LABELS, self.adv, strict=True):
            row[name] = None if math.isnan(value) else value
        row["voiced"] = self.voiced
        if categories or (categories is None and self.categories is not None):
            row["emotion"] = self.emotion
            row[OUTPUT_CATEGORIES] = self.categories
        return row

    @classmethod
    def unvoiced(cls, start_s: float, end_s: float) -> Reading:
        """The reading of a window the gate found no speech in."""
        return cls(start_s, end_s, NAN, NAN, NAN, voiced=False)


def _window(start_s: float, end_s: float) -> str:
    """A window named in a message (formatted only when one is raised: scored is per hop)."""
    return f"the window {start_s:.3f}-{end_s:.3f} s"


def scored(
    source: str,
    start_s: float,
    end_s: float,
    adv: np.ndarray,
    embedding: np.ndarray | None,
    probabilities: np.ndarray | None = None,
    labels: tuple[str, ...] = (),
) -> Reading:
    """The voiced reading of a window from a graph's outputs (``adv`` [3], ``embedding``, and
    the ``probabilities`` [K] of the categories ``labels``); ModelError naming the graph
    ``source`` and the window if any of them is NaN or inf, or the probabilities are not."""
    outputs = [o for o in (adv, embedding, probabilities) if o is not None]
    if not all(np.isfinite(o).all() for o in outputs):
        raise ModelError(f"{source} gave NaN or infinite output for {_window(start_s, end_s)}")
    categories = None
    if probabilities is not None:
        if probabilities.shape != (len(labels),):
            raise ModelError(
                f"{source} gave {probabilities.size} {OUTPUT_CATEGORIES} for "
                f"{_window(start_s, end_s)}, "
                f"not one per label of {list(labels)}"
            )
        problem = not_probabilities(probabilities)
        if problem is not None:
            raise ModelError(
                f"{source} gave {OUTPUT_CATEGORIES} for {_window(start_s, end_s)} that {problem}"
            )
        categories = dict(zip(labels, map(float, probabilities), strict=True))
    return Reading(
        start_s, end_s, *map(float, adv), voiced=True, embedding=embedding, categories=categories
    )


def not_probabilities(row: np.ndarray) -> str | None:
    """Why a finite ``categories`` row is not a probability distribution (a value outside
    [0, 1] or a sum other than 1, within ``CATEGORY_TOLERANCE``), or None when it is."""
    low, high, total = float(row.min()), float(row.max()), float(row.sum(dtype=np.float64))
    if low < -CATEGORY_TOLERANCE or high > 1 + CATEGORY_TOLERANCE:
        return f"are not probabilities: values from {low:.4g} to {high:.4g}, not in [0, 1]"
    if abs(total - 1.0) > CATEGORY_TOLERANCE:
        return f"are not probabilities: they sum to {total:.4g}, not 1"
    return None


@dataclass(frozen=True)
class FileScore:
    """The scores of one file: a reading per window and the whole-file aggregate."""

    path: Path
    duration_s: float
    windows: list[Reading]
    aggregate: Reading


def aggregate(readings: Sequence[Reading], start_s: float, end_s: float) -> Reading:
    """The mean of the voiced readings (A/D/V, embedding and category probabilities, whose
    ``emotion`` is then the most probable category of the mean) over ``start_s..end_s``.

    Windows all have the same length, so a plain mean weighs every stretch of speech alike; the
    mean of a single reading is that reading exactly. No voiced reading -> an unvoiced aggregate.
    """
    voiced = [r for r in readings if r.voiced]
    if not voiced:
        return Reading.unvoiced(start_s, end_s)
    adv = np.mean([r.adv for r in voiced], axis=0, dtype=np.float64)
    embeddings = [r.embedding for r in voiced if r.embedding is not None]
    embedding = np.mean(embeddings, axis=0).astype(np.float32) if embeddings else None
    return Reading(
        start_s,
        end_s,
        *map(float, adv),
        voiced=True,
        embedding=embedding,
        categories=_mean_categories([r.categories for r in voiced]),
    )


def _mean_categories(rows: list[dict[str, float] | None]) -> dict[str, float] | None:
    """The mean probability of each category over the rows (None when they have none)."""
    present = [row for row in rows if row is not None]
    if not present:
        return None
    mean = np.mean([list(row.values()) for row in present], axis=0, dtype=np.float64)
    return dict(zip(present[0], map(float, mean), strict=True))


def smoothed(reading: Reading, previous: Reading | None, factor: float) -> Reading:
    """``reading`` after an exponential moving average with ``factor`` in (0, 1] (the new
    reading's weight) over the ``previous`` smoothed one (None: the first): A/D/V, and the
    category probabilities, which stay a distribution. For voiced readings."""
    if previous is None:
        return reading
    adv = [
        factor * new + (1 - factor) * old
        for new, old in zip(reading.adv, previous.adv, strict=True)
    ]
    categories = reading.categories
    if categories is not None and previous.categories is not None:
        categories = {
            name: factor * p + (1 - factor) * previous.categories[name]
            for name, p in categories.items()
        }
    return replace(reading, arousal=adv[0], dominance=adv[1], valence=adv[2], categories=categories)
