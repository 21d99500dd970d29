"""Human labels -> A/D/V training targets (0..1, order A, D, V) with a mask of labelled dimensions.

Categories map to the pleasure/arousal/dominance ratings of emotion terms published by
Russell & Mehrabian (1977), "Evidence for a three-factor theory of emotions", Journal of Research
in Personality 11(3), 273-294 (the table of 151 terms, -1..1), the values that Gebhard's ALMA
(2005, "ALMA - A Layered Model of Affect", AAMAS) uses for its emotions. Values are given here as
(valence, arousal, dominance) = (pleasure, arousal, dominance), then rescaled to 0..1 with
(x + 1) / 2 and reordered to (arousal, dominance, valence).
"""

from __future__ import annotations

import numpy as np

from .manifest import ManifestRow
from .metrics import ccc, roc_auc, unweighted_average_recall

# (valence, arousal, dominance) in -1..1; Russell & Mehrabian (1977) as tabulated in ALMA (2005).
VAD_TABLE: dict[str, tuple[float, float, float]] = {
    "anger": (-0.51, 0.59, 0.25),
    "disgust": (-0.60, 0.35, 0.11),
    # The R&M entry "terrified"; their "fearful" is (-0.64, 0.60, -0.43).
    "fear": (-0.62, 0.82, -0.43),
    "happiness": (0.81, 0.51, 0.46),  # R&M "happy"
    "sadness": (-0.63, -0.27, -0.33),  # R&M "sad"
    "surprise": (0.40, 0.67, -0.13),  # R&M "surprised"
    "boredom": (-0.65, -0.62, -0.33),  # R&M "bored"
    "neutral": (0.0, 0.0, 0.0),
    # R&M (1977) has no "calm"; its "relaxed" entry is P +0.68, A -0.46, D +0.06 (the same table
    # that gives the "happy", "bored", "angry", "sad", "disgusted" and "surprised" values above).
    "calm": (0.68, -0.46, 0.06),
}
VAD_ALIASES = {"joy": "happiness", "happy": "happiness", "angry": "anger", "sad": "sadness",
               "fearful": "fear", "relaxed": "calm", "surprised": "surprise", "bored": "boredom",
               "disgusted": "disgust"}  # fmt: skip

# Arousal (-1..1) of BAVED's levels: 0 "tired or exhausted" -> R&M "fatigued" (A -0.57);
# 1 neutral -> 0; 2 "strong positive or negative emotion (happy, joy, sad, angry)" -> the mean
# arousal of "angry" and "happy" above ((0.59 + 0.51) / 2 = 0.55).
AROUSAL_LEVELS: dict[str, float] = {"low": -0.57, "neutral": 0.0, "high": 0.55}

# How far from neutral each acted intensity lies, as a fraction of the table's offset: the table
# rates the full emotion term, RAVDESS "strong" is taken as that, "normal" as three quarters of it.
# Corpora that give no intensity use the table as published.
INTENSITY_SCALE: dict[str, float] = {"": 1.0, "strong": 1.0, "normal": 0.75}

DIMENSIONS = ("arousal", "dominance", "valence")
AROUSAL_ONLY = np.array([1.0, 0.0, 0.0], dtype=np.float32)
ALL_DIMENSIONS = np.ones(3, dtype=np.float32)
NO_DIMENSIONS = np.zeros(3, dtype=np.float32)

# What a "calm" clip counts as for a categorical head: "neutral", or "masked" (left out).
CALM_CHOICES = ("neutral", "masked")


def canonical_emotion(emotion: str) -> str:
    """A manifest's emotion name in the table's spelling ("angry" -> "anger")."""
    name = emotion.strip().lower()
    return VAD_ALIASES.get(name, name)


def category_index(row: ManifestRow, labels: tuple[str, ...] | list[str], calm: str) -> int:
    """Index of a row's emotion in ``labels``, or -1 (masked: no category, as for BAVED's arousal
    levels, or one outside ``labels`` such as fear); ``calm`` is "neutral" or "masked"."""
    if calm not in CALM_CHOICES:
        raise ValueError(f"calm must be one of {', '.join(CALM_CHOICES)}, got {calm!r}")
    name = canonical_emotion(row.emotion) if row.emotion else ""
    if name == "calm":
        name = "neutral" if calm == "neutral" else ""
    return list(labels).index(name) if name in labels else -1


def category_adv(emotion: str, intensity: str = "") -> np.ndarray:
    """A/D/V target (0..1) of an emotion category at an acted intensity; ValueError if unknown."""
    name = canonical_emotion(emotion)
    if name not in VAD_TABLE:
        known = ", ".join(sorted(VAD_TABLE))
        raise ValueError(f"no A/D/V value for emotion {emotion!r} (known: {known})")
    if intensity not in INTENSITY_SCALE:
        raise ValueError(f"unknown intensity {intensity!r} (normal, strong or empty)")
    valence, arousal, dominance = (INTENSITY_SCALE[intensity] * v for v in VAD_TABLE[name])
    return np.array([(arousal + 1) / 2, (dominance + 1) / 2, (valence + 1) / 2], dtype=np.float32)


def arousal_level_adv(level: str) -> np.ndarray:
    """A/D/V target of a BAVED arousal level: arousal set, dominance and valence at neutral."""
    if level not in AROUSAL_LEVELS:
        raise ValueError(f"unknown arousal level {level!r} (low, neutral, high)")
    return np.array([(AROUSAL_LEVELS[level] + 1) / 2, 0.5, 0.5], dtype=np.float32)


def row_target(row: ManifestRow) -> tuple[np.ndarray, np.ndarray]:
    """(target [3], mask [3]) of a manifest row in A, D, V order; mask 1 = labelled dimension.

    A category labels all three dimensions; an arousal level only arousal; no label, none."""
    if row.emotion:
        return category_adv(row.emotion, row.intensity), ALL_DIMENSIONS.copy()
    if row.arousal_level:
        return arousal_level_adv(row.arousal_level), AROUSAL_ONLY.copy()
    return np.full(3, 0.5, dtype=np.float32), NO_DIMENSIONS.copy()


# Classes for AUCs that do not depend on the A/D/V table (issue 6).
HIGH_AROUSAL = frozenset({"anger", "happiness", "fear"})
LOW_AROUSAL = frozenset({"sadness", "calm", "neutral"})
POSITIVE_VALENCE = frozenset({"happiness"})
NEGATIVE_VALENCE = frozenset({"anger", "sadness", "fear", "disgust"})


def arousal_class(row: ManifestRow) -> bool | None:
    """True for high-arousal clips, False for low, None for neither (excluded from the AUC)."""
    if row.emotion:
        return (
            True if row.emotion in HIGH_AROUSAL else False if row.emotion in LOW_AROUSAL else None
        )
    return {"high": True, "low": False}.get(row.arousal_level)


def valence_class(row: ManifestRow) -> bool | None:
    """True for positive clips (happiness), False for negative ones, None otherwise."""
    if row.emotion in POSITIVE_VALENCE:
        return True
    return False if row.emotion in NEGATIVE_VALENCE else None


def score_against_labels(pred: np.ndarray, rows: list[ManifestRow]) -> dict[str, float]:
    """CCC per labelled dimension (``ccc_arousal``...), ``ccc_mean`` over them, and the arousal
    and valence AUCs (``auc_arousal``, ``auc_valence``; NaN where a class is missing) of
    predictions [N, 3] for ``rows`` of one corpus."""
    targets, masks = zip(*(row_target(r) for r in rows), strict=True)
    target, mask = np.stack(targets), np.stack(masks)
    scores: dict[str, float] = {}
    for d, name in enumerate(DIMENSIONS):
        labelled = mask[:, d] > 0
        if labelled.sum() >= 2:
            scores[f"ccc_{name}"] = float(ccc(pred[labelled, d], target[labelled, d]))
    cccs = [v for k, v in scores.items() if k.startswith("ccc_")]
    scores["ccc_mean"] = float(np.mean(cccs)) if cccs else float("nan")
    for name, d, classes in (("arousal", 0, arousal_class), ("valence", 2, valence_class)):
        labels = [classes(r) for r in rows]
        keep = np.array([c is not None for c in labels], dtype=bool)
        positive = np.array([bool(c) for c in labels], dtype=bool)
        scores[f"auc_{name}"] = roc_auc(pred[keep, d], positive[keep])
    return scores


def category_uar(
    probs: np.ndarray, rows: list[ManifestRow], labels: tuple[str, ...], calm: str = "masked"
) -> float:
    """Unweighted average recall of the most probable label against the rows' emotions, over
    the rows whose emotion is one of ``labels`` (``category_index``; NaN when none is)."""
    truth = np.array([category_index(r, labels, calm) for r in rows], dtype=np.int64)
    return unweighted_average_recall(np.asarray(probs).argmax(axis=1), truth, len(labels))
