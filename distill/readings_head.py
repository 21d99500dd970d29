"""A categorical head on a student's own A/D/V readings, fitted after distillation.

    python -m edgeser.distill.readings_head STUDENT.pt OUT.pt --data runs/default/train.csv

Leave-one-corpus-out runs (``benchmarks/loco.md``) found that no head learnt from the
teacher's embedding ranks anger / happiness / neutral / sadness on an unseen corpus better than
a logistic regression on the A/D/V readings, so the bundled model's head *is* that regression:
a class-balanced softmax regression on the student's readings of the labelled training clips,
folded into the student's ``category_head`` (``category_input="readings"``) so that the ONNX
graph computes it and every runtime path (incremental, numpy backend, int8) carries it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edgeser.audio import read_audio

from .manifest import ManifestRow, read_manifest
from .metrics import unweighted_average_recall
from .student import build_student, load_student, save_student
from .targets import category_index
from .teachers.base import CATEGORY_LABELS

CALM = "masked"  # calm is not neutral (RAVDESS and TurEV-DB act it apart): left out, as in LOCO


class SoftmaxRegression:
    """Multinomial logistic regression in numpy (standardised inputs, class-balanced weights,
    L2 on the weights, full-batch gradient descent)."""

    def __init__(self, n_classes: int, l2: float = 1e-3, steps: int = 2000, lr: float = 0.5):
        self.n_classes, self.l2, self.steps, self.lr = n_classes, l2, steps, lr

    def fit(self, x: np.ndarray, y: np.ndarray) -> SoftmaxRegression:
        """Fit on features [N, F] and class indices [N] (0..n_classes-1)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.int64)
        if len(x) == 0:
            raise ValueError("no training examples for the logistic regression")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-9
        z = self._design(x)
        counts = np.bincount(y, minlength=self.n_classes)
        weight = (len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)))[y]
        onehot = np.eye(self.n_classes)[y]
        self.w = np.zeros((z.shape[1], self.n_classes))
        for _ in range(self.steps):
            grad = z.T @ (weight[:, None] * (self._softmax(z @ self.w) - onehot)) / weight.sum()
            self.w -= self.lr * (grad + self.l2 * np.vstack([np.zeros(self.n_classes), self.w[1:]]))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [N, n_classes]."""
        return self._softmax(self._design(np.asarray(x, np.float64)) @ self.w)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight [n_classes, F], bias [n_classes]) of the same logits on raw features, the
        standardisation folded in: what a ``torch.nn.Linear`` needs to compute them."""
        w = self.w[1:] / self.std[:, None]
        return w.T, self.w[0] - self.mean @ w

    def _design(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(x), 1)), (x - self.mean) / self.std])

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def clip_readings(model: torch.nn.Module, rows: Sequence[ManifestRow]) -> np.ndarray:
    """The student's A/D/V [N, 3] of each whole clip (fp32, one clip at a time)."""
    out = []
    with torch.inference_mode():
        for r in tqdm(rows, desc="readings", mininterval=10):
            out.append(model(torch.from_numpy(read_audio(r.audio))[None])[0][0].numpy())
    return np.array(out, dtype=np.float64)


def fit_head(
    student: Path, rows: Sequence[ManifestRow], out: Path, labels: Sequence[str] = CATEGORY_LABELS
) -> dict[str, Any]:
    """Fit the readings head on the labelled ``rows`` and write ``student`` with it to ``out``;
    returns what was fitted (clips per label, UAR on those clips), also kept in the meta."""
    model, meta = load_student(student)
    labels = tuple(labels)
    y = np.array([category_index(r, labels, CALM) for r in rows])
    kept = [r for r, c in zip(rows, y, strict=True) if c >= 0]
    if len({int(c) for c in y if c >= 0}) < len(labels):
        raise ValueError(f"the data lacks clips of some of {', '.join(labels)}")
    adv = clip_readings(model, kept)
    y = y[y >= 0]
    regression = SoftmaxRegression(len(labels)).fit(adv, y)
    config = replace(model.config, categories=labels, category_input="readings")
    headed = build_student(config, fresh=False)
    headed.load_state_dict(model.state_dict(), strict=False)  # all but the new head
    weight, bias = regression.affine()
    with torch.no_grad():
        headed.category_head.weight.copy_(torch.from_numpy(weight).float())
        headed.category_head.bias.copy_(torch.from_numpy(bias).float())
    fitted = {
        "method": "class-balanced softmax regression on the student's A/D/V of whole clips "
        f"(calm {CALM}); edgeser.distill.readings_head",
        "clips": {name: int((y == i).sum()) for i, name in enumerate(labels)},
        "train_uar": unweighted_average_recall(
            regression.predict_proba(adv).argmax(1), y, len(labels)
        ),
    }
    save_student(out, headed.eval(), **{**meta, "categories_fit": fitted})
    return fitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="student checkpoint (edgeser-distill train)")
    parser.add_argument("out", type=Path, help="checkpoint to write, with the head")
    parser.add_argument("--data", type=Path, required=True, help="manifest of labelled clips")
    args = parser.parse_args(argv)
    fitted = fit_head(args.student, read_manifest(args.data), args.out)
    print(json.dumps(fitted, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
