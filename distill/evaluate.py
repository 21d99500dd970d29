"""Eval stage: CCC of a student against its teacher on held-out crops, and, per corpus,
CCC and AUCs against human labels where the manifest has them (``targets``). A student with a
categorical head is also scored on how often its most probable label is the teacher's, and,
per corpus, on the four-class UAR against the manifest's emotions."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeser.contract import LABELS

from .config import EvalConfig
from .data import Crop, CropAudio, split_crops
from .manifest import ManifestRow
from .metrics import ccc
from .store import LabelStore, StoreError
from .student import Wav2Small, build_student, load_student
from .targets import category_uar, score_against_labels
from .teachers.loading import set_torch_threads


def equal_length_batches(crops: list[Crop], batch_size: int) -> list[list[int]]:
    """Indices of ``crops`` grouped by exact length, in batches of at most ``batch_size``."""
    by_length: dict[int, list[int]] = {}
    for i, c in enumerate(crops):
        by_length.setdefault(c.length, []).append(i)
    return [
        idx[s : s + batch_size]
        for _, idx in sorted(by_length.items())
        for s in range(0, len(idx), batch_size)
    ]


@torch.inference_mode()
def predict(
    model: Wav2Small,
    waves: list[np.ndarray],
    crops: list[Crop],
    batch_size: int,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Student A/D/V [N, 3] and category probabilities [N, K] (None without a categorical
    head) for already-regenerated crop waveforms (equal lengths batched)."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(crops), 3), dtype=np.float32)
    k = len(model.config.categories)
    probs = np.zeros((len(crops), k), dtype=np.float32) if k else None
    for idx in equal_length_batches(crops, batch_size):
        x = torch.from_numpy(np.stack([waves[i] for i in idx])).to(device)
        outputs = model(x)
        out[idx] = outputs[0].float().cpu().numpy()
        if probs is not None:
            probs[idx] = outputs[2].float().cpu().numpy()
    model.train(was_training)
    return out, probs


def category_agreement(probs: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """How a student's category probabilities [N, K] follow the teacher's: the share of rows
    whose most probable label is the teacher's, and the mean KL divergence KL(teacher||student)."""
    p = np.clip(teacher.astype(np.float64), 1e-12, 1.0)
    q = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    kl = (teacher * (np.log(p) - np.log(q))).sum(axis=1)
    return {
        "top_class_agreement": float((probs.argmax(axis=1) == teacher.argmax(axis=1)).mean()),
        "kl": float(kl.mean()),
    }


def ccc_by_label(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """CCC per dimension (over the rows where ``target`` is not NaN) and their mean."""
    ok = np.isfinite(target)
    values = np.array([ccc(pred[ok[:, d], d], target[ok[:, d], d]) for d in range(3)])
    result = {name: float(v) for name, v in zip(LABELS, values, strict=True)}
    result["mean"] = float(np.mean(values))
    return result


@dataclass
class EvalReport:
    """CCC per dimension of the student vs the teacher, and vs human-label targets."""

    n_heldout: int
    student_vs_teacher: dict[str, float]
    untrained_vs_teacher: dict[str, float]
    student_vs_labels: dict[str, dict[str, float]] = field(default_factory=dict)
    teacher_vs_labels: dict[str, dict[str, float]] = field(default_factory=dict)
    # With a categorical head: its labels, and the student's (and an untrained one's)
    # ``category_agreement`` with the teacher; per-corpus UARs are in the *_vs_labels scores.
    category_labels: list[str] = field(default_factory=list)
    categories_vs_teacher: dict[str, dict[str, float]] = field(default_factory=dict)

    def table(self) -> str:
        """The report as aligned text: CCC vs the teacher, then per-corpus label scores."""
        lines = [f"{'CCC vs teacher (' + str(self.n_heldout) + ' held-out crops)':<40}"
                 + "".join(f"{n:>10}" for n in (*LABELS, "mean"))]  # fmt: skip
        for name, values in (("student", self.student_vs_teacher),
                             ("untrained student", self.untrained_vs_teacher)):  # fmt: skip
            lines.append(f"{name:<40}" + "".join(f"{v:>10.3f}" for v in values.values()))
        if self.category_labels:
            lines.append(f"categories ({', '.join(self.category_labels)}) vs teacher: "
                         + "; ".join(f"{who} top-class agreement {v['top_class_agreement']:.3f}, "
                                     f"KL {v['kl']:.3f}"
                                     for who, v in self.categories_vs_teacher.items()))  # fmt: skip
        for who, by_corpus in (("student", self.student_vs_labels),
                               ("teacher", self.teacher_vs_labels)):  # fmt: skip
            for corpus, scores in by_corpus.items():
                text = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                lines.append(f"{who} vs labels, {corpus}: {text}")
        return "\n".join(lines)


def scores_by_corpus(
    pred: np.ndarray,
    crops: list[Crop],
    probs: np.ndarray | None = None,
    labels: tuple[str, ...] = (),
) -> dict[str, dict[str, float]]:
    """Per corpus: CCC against the human-label targets and the label AUCs (``targets``), for
    the crops whose manifest row has an emotion or arousal label; with category
    probabilities [N, K] also ``category_uar``, the UAR over the rows whose emotion is one of
    ``labels`` (NaN when none is)."""
    rows = [ManifestRow(audio=Path(c.path), **c.info) for c in crops]
    labelled = [i for i, r in enumerate(rows) if r.emotion or r.arousal_level]
    corpora = sorted({rows[i].corpus for i in labelled})
    result = {}
    for corpus in corpora:
        idx = [i for i in labelled if rows[i].corpus == corpus]
        result[corpus] = score_against_labels(pred[idx], [rows[i] for i in idx])
        if probs is not None:
            result[corpus]["category_uar"] = category_uar(
                probs[idx], [rows[i] for i in idx], labels
            )
    return result


def run_eval(cfg: EvalConfig, progress: bool = True) -> EvalReport:
    """Score the checkpoint on the held-out crops of the store it was trained from."""
    cfg.validate()
    set_torch_threads(cfg.num_threads)
    model, meta = load_student(cfg.checkpoint)
    store = LabelStore.open(cfg.store)
    if meta.get("teacher_id") and meta["teacher_id"] != store.teacher_id:
        raise StoreError(
            f"{cfg.checkpoint} was distilled from {meta['teacher_id']}, "
            f"but {cfg.store} holds labels of {store.teacher_id}"
        )
    labels = store.read()
    _, dev = split_crops(labels.crops, float(meta.get("dev_fraction", 0.1)))
    if not dev:
        raise StoreError(f"{cfg.store}: no held-out crops to evaluate on")
    dev_labels = labels.subset(dev)
    audio = CropAudio()
    waves = [audio(c) for c in dev]
    pred, probs = predict(model, waves, dev, cfg.batch_size)
    torch.manual_seed(0)
    untrained, untrained_probs = predict(build_student(model.config), waves, dev, cfg.batch_size)
    report = EvalReport(
        len(dev),
        ccc_by_label(pred, dev_labels.adv),
        ccc_by_label(untrained, dev_labels.adv),
    )
    labels, teacher_probs = model.config.categories, None
    if probs is not None:
        teacher_probs = dev_labels.categories
        if labels != dev_labels.category_labels:
            raise StoreError(
                f"{cfg.checkpoint} has categories {list(labels)}, but {cfg.store} holds "
                f"probabilities for {list(dev_labels.category_labels) or 'none'}"
            )
        report.category_labels = list(labels)
        report.categories_vs_teacher = {
            "student": category_agreement(probs, teacher_probs),
            "untrained student": category_agreement(untrained_probs, teacher_probs),
        }
    report.student_vs_labels = scores_by_corpus(pred, dev, probs, labels)
    report.teacher_vs_labels = scores_by_corpus(dev_labels.adv, dev, teacher_probs, labels)
    if cfg.report:
        Path(cfg.report).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.report).write_text(json.dumps(asdict(report), indent=2))
    if progress:
        print(report.table(), file=sys.stderr)
    return report
