"""Agreement, ranking and class metrics: CCC (loss and score), ROC AUC, masked cross-entropy and
unweighted average recall, with optional masks."""

from __future__ import annotations

import numpy as np
import torch


def ccc_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - mean concordance correlation over the columns of [N, D] tensors.

    ``mask`` [N, D] (1 = labelled) restricts each column to its labelled rows; a column with
    fewer than two labelled rows is left out of the mean.
    """
    if mask is None:
        mask = torch.ones_like(target)
    mask = mask.to(pred.dtype)
    n = mask.sum(dim=0)
    valid = n >= 2
    n = n.clamp(min=1)
    mp = (pred * mask).sum(0) / n
    mt = (target * mask).sum(0) / n
    dp, dt = (pred - mp) * mask, (target - mt) * mask
    vp, vt = (dp * dp).sum(0) / n, (dt * dt).sum(0) / n
    cov = (dp * dt).sum(0) / n
    ccc = 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return 1.0 - ccc[valid].mean()


def ccc(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Concordance correlation per column of [N, D] arrays (or a scalar for 1-D arrays)."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    mp, mt = p.mean(0), t.mean(0)
    cov = ((p - mp) * (t - mt)).mean(0)
    return 2 * cov / (p.var(0) + t.var(0) + (mp - mt) ** 2 + 1e-12)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN if one class."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits [N, K] over the rows whose class index ``target`` [N] is
    >= 0 (-1 = unlabelled: such rows change neither the loss nor its gradient); 0 if none."""
    labelled = target >= 0
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits[labelled], target[labelled])


def unweighted_average_recall(pred: np.ndarray, true: np.ndarray, classes: int) -> float:
    """Mean over the classes present in ``true`` of the share of their rows predicted as
    themselves (UAR; chance = 1 / classes present); rows with ``true`` < 0 are left out."""
    pred, true = np.asarray(pred), np.asarray(true)
    keep = true >= 0
    recalls = [
        float(np.mean(pred[keep & (true == k)] == k)) for k in range(classes) if (true == k).any()
    ]
    return float(np.mean(recalls)) if recalls else float("nan")
