"""The scores of one left-out corpus in the leave-one-corpus-out run (``benchmarks.loco``).

CCC per labelled dimension against the label targets (``edgeser.distill.targets``); the arousal
AUC with the classes of issue 18 (anger, happiness, fear, surprise vs sadness, neutral, calm,
boredom; baved by level, high vs low); the valence AUC (happiness vs anger, sadness, fear,
disgust); and the four-class UAR (anger, happiness, neutral, sadness) of a categorical head and
of its baseline, a logistic regression on the model's A/D/V readings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from edgeser.distill.manifest import ManifestRow
from edgeser.distill.metrics import roc_auc
from edgeser.distill.readings_head import SoftmaxRegression
from edgeser.distill.targets import (
    HIGH_AROUSAL,
    LOW_AROUSAL,
    score_against_labels,
    valence_class,
)
from edgeser.distill.teachers.base import CATEGORY_LABELS

# Issue 18 widens the dev-split classes of ``targets`` with surprise (R&M arousal +0.67) and
# boredom (-0.62), so that nemo's surprise clips count too.
LOCO_HIGH_AROUSAL = HIGH_AROUSAL | {"surprise"}
LOCO_LOW_AROUSAL = LOW_AROUSAL | {"boredom"}


def arousal_class(row: ManifestRow) -> bool | None:
    """True for a high-arousal clip, False for a low one, None for neither (not in the AUC)."""
    if row.emotion:
        if row.emotion in LOCO_HIGH_AROUSAL:
            return True
        return False if row.emotion in LOCO_LOW_AROUSAL else None
    return {"high": True, "low": False}.get(row.arousal_level)


def class_auc(scores: np.ndarray, classes: Sequence[bool | None]) -> float:
    """ROC AUC of ``scores`` for the clips whose class is True vs False (None left out)."""
    keep = np.array([c is not None for c in classes], dtype=bool)
    positive = np.array([bool(c) for c in classes], dtype=bool)
    return roc_auc(np.asarray(scores)[keep], positive[keep])


def category_index(rows: Sequence[ManifestRow], labels: Sequence[str] = CATEGORY_LABELS):
    """Index of each row's emotion in ``labels``, -1 where it is none of them."""
    position = {name: i for i, name in enumerate(labels)}
    return np.array([position.get(r.emotion, -1) for r in rows], dtype=np.int64)


def uar(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``truth`` (entries < 0 are not
    scored); NaN when no entry is scored."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    present = sorted(set(truth[truth >= 0].tolist()))
    if not present:
        return float("nan")
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in present]))


def readings_baseline(adv: np.ndarray, rows: Sequence[ManifestRow]) -> SoftmaxRegression | None:
    """The four-class logistic regression on A/D/V readings of labelled clips; None when the
    clips have no four-class label at all (so no baseline can be fitted)."""
    y = category_index(rows)
    if not (y >= 0).any():
        return None
    return SoftmaxRegression(len(CATEGORY_LABELS)).fit(np.asarray(adv)[y >= 0], y[y >= 0])


def head_predictions(categories: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The most probable of the four classes (indices into ``CATEGORY_LABELS``) from a head's
    probabilities over ``labels`` (which may hold more classes than the four)."""
    missing = [c for c in CATEGORY_LABELS if c not in labels]
    if missing:
        raise ValueError(f"the teacher's categories lack {', '.join(missing)}")
    columns = [list(labels).index(c) for c in CATEGORY_LABELS]
    return np.asarray(categories)[:, columns].argmax(1)


def corpus_scores(
    adv: np.ndarray,
    rows: Sequence[ManifestRow],
    baseline: SoftmaxRegression | None = None,
    categories: np.ndarray | None = None,
    labels: Sequence[str] = (),
) -> dict[str, float]:
    """Every LOCO figure of one corpus from readings ``adv`` [N, 3] (and a head's
    ``categories`` [N, K] over ``labels``): ccc_*, auc_arousal, auc_valence, uar_readings_lr
    (with ``baseline``) and uar_head (with ``categories``); NaN where a figure is undefined."""
    adv = np.asarray(adv)
    scores = {k: v for k, v in score_against_labels(adv, list(rows)).items() if "ccc" in k}
    scores["auc_arousal"] = class_auc(adv[:, 0], [arousal_class(r) for r in rows])
    scores["auc_valence"] = class_auc(adv[:, 2], [valence_class(r) for r in rows])
    truth = category_index(rows)
    scores["four_class_clips"] = int((truth >= 0).sum())
    if baseline is not None:
        scores["uar_readings_lr"] = uar(baseline.predict_proba(adv).argmax(1), truth)
    if categories is not None:
        scores["uar_head"] = uar(head_predictions(categories, labels), truth)
    return scores
