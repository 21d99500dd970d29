"""Train stage: fit a Wav2Small student to a store's pseudo-labels with a CCC loss (plus, when
the store holds the teacher's category probabilities, a KL divergence from them that trains the
student's categorical head).

AdamW with linear warm-up and a cosine decay; batches hold crops of one length (the student
normalises per utterance, so no padding is needed or wanted); everything is seeded. Every
``checkpoint_every`` steps ``resume.pt`` (model, optimizer, scheduler, RNG, step) is replaced
atomically and the one it replaces is kept as ``resume.prev.pt``, so a killed run continues
where it stopped, and from the generation before when the newest is damaged (training is a pure
function of the seed and the step, so either way the result is the same); ``last.pt``,
``best.pt`` (best dev CCC) and finally ``student.pt`` are ``save_student`` checkpoints that
``load_student`` reads.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeser.errors import EdgeserError

from .config import ConfigError, TrainConfig
from .data import Crop, CropAudio, split_crops
from .evaluate import category_agreement, ccc_by_label, predict
from .metrics import ccc_loss
from .store import Labels, LabelStore, StoreError
from .student import StudentConfig, build_student, count_parameters, save_student
from .teachers.loading import resolve_device, set_torch_threads

RESUME_FILE = "resume.pt"
PREVIOUS_FILE = "resume.prev.pt"  # the generation before, for when the newest is damaged
RESUME_KEYS = ("model", "optimizer", "scheduler", "step", "best", "dev_ccc", "torch_rng",
               "teacher_id", "student", "total")  # fmt: skip


class CheckpointError(EdgeserError):
    """No resume state can be read (every generation is damaged)."""


@dataclass
class TrainReport:
    """Outcome of a training run."""

    checkpoint: str
    steps: int
    n_train: int
    n_dev: int
    dev_ccc: dict[str, float]
    crops_per_s: float
    dev_categories: dict[str, float] = field(default_factory=dict)


def length_batches(crops: list[Crop], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of shuffled batches, each of crops of a single length. A leftover batch of
    one crop is dropped (its CCC is undefined); the shuffle varies who is left over."""
    by_length: dict[int, list[int]] = {}
    for i, c in enumerate(crops):
        by_length.setdefault(c.length, []).append(i)
    batches = []
    for length in sorted(by_length):
        idx = rng.permutation(by_length[length]).tolist()
        batches += [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    return [batches[i] for i in rng.permutation(len(batches))]


def warmup_cosine(total: int, warmup: int):
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Distiller:
    """The state of one training run: data, model, optimiser, schedule and step."""

    def __init__(self, cfg: TrainConfig, labels: Labels, teacher_id: str):
        self.cfg = cfg
        self.teacher_id = teacher_id
        self.device = resolve_device(cfg.device)
        train, dev = split_crops(labels.crops, cfg.dev_fraction)
        if len(train) < 2:
            raise StoreError(f"{cfg.store}: {len(train)} training crops; label more audio")
        self.train, self.dev = labels.subset(train), labels.subset(dev)
        self.audio = CropAudio(cache_mb=cfg.cache_mb)
        torch.manual_seed(cfg.seed)
        self.categories = labels.category_labels if cfg.categories else ()
        student = replace(StudentConfig.preset(cfg.student), categories=self.categories)
        try:
            self.model = build_student(student).to(self.device)
        except ValueError as exc:  # e.g. an architecture without a categorical head
            raise ConfigError(
                f"train.student {cfg.student}: {exc} (or set categories = false)"
            ) from None
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        rng = np.random.default_rng(cfg.seed)
        self.per_epoch = len(length_batches(self.train.crops, cfg.batch_size, rng))
        if self.per_epoch == 0:
            raise StoreError(f"{cfg.store}: no two training crops share a length; label more")
        self.total = cfg.max_steps or cfg.epochs * self.per_epoch
        warmup = int(cfg.warmup_fraction * self.total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total, warmup)
        )
        self.step = 0
        self.best = -math.inf
        self.dev_ccc: dict[str, float] = {}
        self.dev_categories: dict[str, float] = {}  # agreement with the teacher's top class
        self._epoch: tuple[int, list[list[int]]] = (-1, [])
        self._dev_waves: list[np.ndarray] | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def batch(self, step: int) -> list[int]:
        """The crops of ``step``: a pure function of the seed and the step, so resume is exact."""
        epoch, index = divmod(step, self.per_epoch)
        if self._epoch[0] != epoch:
            rng = np.random.default_rng([self.cfg.seed, epoch])
            self._epoch = (epoch, length_batches(self.train.crops, self.cfg.batch_size, rng))
        return self._epoch[1][index]

    def train_step(self, step: int) -> tuple[float, float]:
        """One optimiser step; (loss, KL divergence of the categories: NaN without a head)."""
        idx = self.batch(step)
        x = torch.from_numpy(np.stack([self.audio(self.train.crops[i]) for i in idx]))
        y = torch.from_numpy(self.train.adv[idx])
        pred, embedding, *_ = self.model(x.to(self.device))
        y = y.to(self.device)
        known = torch.isfinite(y)  # label-target stores leave unlabelled dimensions NaN
        y = torch.nan_to_num(y)
        loss = ccc_loss(pred, y, known)
        if self.cfg.mse_weight:
            loss = loss + self.cfg.mse_weight * ((pred - y) ** 2)[known].mean()
        kl = torch.tensor(math.nan)
        if self.categories:
            target = torch.from_numpy(self.train.categories[idx]).to(self.device)
            log_probs = self.model.category_log_probs(embedding)
            kl = torch.nn.functional.kl_div(log_probs, target, reduction="batchmean")
            loss = loss + self.cfg.category_weight * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), kl.item()

    def evaluate(self) -> tuple[dict[str, float], dict[str, float]]:
        """CCC per dimension against the teacher on the held-out crops, and the categorical
        head's agreement with the teacher there ({} without held-out crops or a head)."""
        if len(self.dev) < 2:
            return {}, {}
        if self._dev_waves is None:
            self._dev_waves = [self.audio(c) for c in self.dev.crops]
        pred, probs = predict(self.model, self._dev_waves, self.dev.crops, 64, self.device)
        agreement = {} if probs is None else category_agreement(probs, self.dev.categories)
        return ccc_by_label(pred, self.dev.adv), agreement

    def meta(self) -> dict:
        return {
            "teacher_id": self.teacher_id,
            "store": str(self.cfg.store),
            "dev_fraction": self.cfg.dev_fraction,
            "step": self.step,
            "dev_ccc": self.dev_ccc,
            "dev_categories": self.dev_categories,
            "categories": list(self.categories),
            "n_train": len(self.train),
            "n_dev": len(self.dev),
            "train_config": asdict(self.cfg),
        }

    def save(self) -> None:
        """Write ``last.pt`` and then, atomically, the resume state."""
        save_student(self.out / "last.pt", self.model, **self.meta())
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best": self.best,
            "dev_ccc": self.dev_ccc,
            "dev_categories": self.dev_categories,
            "categories": list(self.categories),
            "torch_rng": torch.get_rng_state(),
            "teacher_id": self.teacher_id,
            "student": self.cfg.student,
            "total": self.total,
        }
        tmp = self.out / (RESUME_FILE + ".tmp")
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        newest = self.out / RESUME_FILE
        if newest.exists():
            newest.replace(self.out / PREVIOUS_FILE)
        tmp.replace(newest)

    def load_resume_state(self) -> tuple[Path, dict] | None:
        """The newest readable resume generation (a damaged one is reported and skipped), None
        when there is none; CheckpointError when every one there is damaged."""
        damaged = []
        for path in (self.out / RESUME_FILE, self.out / PREVIOUS_FILE):
            if not path.exists():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)  # RNG on CPU
                missing = [k for k in RESUME_KEYS if k not in state]
                if missing:
                    raise KeyError(f"no {', '.join(missing)}")
            except Exception as exc:  # any failure to unpickle the bytes means damage
                damaged.append(f"{path} ({type(exc).__name__}: {str(exc)[:200]})")
                print(f"edgeser-distill: warning: {damaged[-1]} is damaged; trying the "
                      "generation before", file=sys.stderr)  # fmt: skip
                continue
            return path, state
        if damaged:
            raise CheckpointError(
                f"cannot resume: every resume generation is damaged: {'; '.join(damaged)}; "
                "set resume = false (--no-resume) to start over"
            )
        return None

    def resume(self) -> bool:
        """Load the newest good resume state if any; ConfigError if it is another run's."""
        found = self.load_resume_state()
        if found is None:
            return False
        path, state = found
        categories = list(state.get("categories", []))  # resume states before issue 19: none
        theirs = (state["teacher_id"], state["student"], state["total"], categories)
        ours = (self.teacher_id, self.cfg.student, self.total, list(self.categories))
        if theirs != ours:
            raise ConfigError(
                f"{path} is from another run (teacher, student, steps, categories = {theirs}, "
                f"now {ours}); set resume = false or use another output folder"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best, self.dev_ccc = state["step"], state["best"], state["dev_ccc"]
        self.dev_categories = dict(state.get("dev_categories", {}))
        return True

    def maybe_keep_best(self) -> None:
        score = self.dev_ccc.get("mean", -math.inf)
        if score > self.best:
            self.best = score
            save_student(self.out / "best.pt", self.model, **self.meta())


def progress_fields(
    loss: float,
    dev_ccc: dict[str, float],
    crops_s: float,
    kl: float = math.nan,
    dev_categories: dict[str, float] | None = None,
) -> dict[str, str]:
    """The progress bar's figures; ``dev_ccc`` only once a dev evaluation has given one, the
    categories' KL divergence and dev top-class agreement only for a student with the head."""
    fields = {"loss": f"{loss:.3f}"}
    if math.isfinite(kl):
        fields["kl"] = f"{kl:.3f}"
    if math.isfinite(dev_ccc.get("mean", math.nan)):
        fields["dev_ccc"] = f"{dev_ccc['mean']:.3f}"
    agreement = (dev_categories or {}).get("top_class_agreement", math.nan)
    if math.isfinite(agreement):
        fields["dev_agree"] = f"{agreement:.3f}"
    fields["crops_s"] = f"{crops_s:.0f}"
    return fields


def run_train(cfg: TrainConfig, progress: bool = True) -> TrainReport:
    """Train (or resume) a student on the labels in ``cfg.store``; writes ``out/student.pt``."""
    cfg.validate()
    set_torch_threads(cfg.num_threads)
    store = LabelStore.open(cfg.store)
    labels = store.read()
    if len(labels) == 0:
        raise StoreError(f"{cfg.store}: the store is empty (run the label stage first)")
    run = Distiller(cfg, labels, store.teacher_id)
    run.out.mkdir(parents=True, exist_ok=True)
    resumed = cfg.resume and run.resume()
    if not resumed:
        (run.out / "best.pt").unlink(missing_ok=True)  # from an earlier run
    if progress:
        n = count_parameters(run.model)
        head = f"categorical head ({', '.join(run.categories)})" if run.categories else "A/D/V"
        print(
            f"{cfg.student}: {n} parameters, {head}; {len(run.train)} train / {len(run.dev)} "
            f"held-out crops; {run.total} steps{f', resuming at {run.step}' if resumed else ''}",
            file=sys.stderr,
        )
    run.model.train()
    seen, busy, loss_avg, kl_avg = 0, 0.0, None, math.nan
    with tqdm(total=run.total, initial=run.step, desc="train", disable=not progress) as bar:
        while run.step < run.total:
            tick = time.perf_counter()
            loss, kl = run.train_step(run.step)
            busy += time.perf_counter() - tick
            seen += len(run.batch(run.step))
            run.step += 1
            loss_avg = loss if loss_avg is None else 0.9 * loss_avg + 0.1 * loss
            kl_avg = kl if not math.isfinite(kl_avg) else 0.9 * kl_avg + 0.1 * kl
            if run.step % cfg.eval_every == 0 or run.step == run.total:
                run.dev_ccc, run.dev_categories = run.evaluate()
                run.maybe_keep_best()
            if run.step % cfg.checkpoint_every == 0 or run.step == run.total:
                run.save()
            bar.update(1)
            speed = seen / max(busy, 1e-9)
            bar.set_postfix(
                progress_fields(loss_avg, run.dev_ccc, speed, kl_avg, run.dev_categories)
            )
    final = run.out / "student.pt"
    best = run.out / "best.pt"
    shutil.copyfile(best if best.exists() else run.out / "last.pt", final.with_suffix(".tmp"))
    final.with_suffix(".tmp").replace(final)
    return TrainReport(str(final), run.step, len(run.train), len(run.dev), run.dev_ccc,
                       seen / max(busy, 1e-9), run.dev_categories)  # fmt: skip
