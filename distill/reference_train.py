"""Train the reference teacher on the train split of the shared corpora; select it on dev.

    python -m edgeser.distill.reference_train configs/reference_teacher.toml

Masked CCC loss on label targets (``targets``), corpus- then speaker-balanced sampling,
waveform augmentation (``augment``) plus spectral tilt and SpecAugment (``reference_augment``),
AdamW with warm-up and cosine decay. Levers of the second recipe, each off by default so that the
first recipe's configs train exactly as before: class-balanced sampling (``sampling``), far-field,
babble, mu-law and codec augmentation (``[augment]``), prosody inputs and a categorical head
(``[model]``) trained jointly with a per-clip masked cross-entropy. Every ``eval_every`` steps
it scores the dev split (mean over corpora of the CCC over labelled dimensions; arousal and
valence AUCs, and the categorical head's UAR, logged) and saves a resumable checkpoint; the
best model so far is written (fp16) to ``weights``. Re-running the same command resumes where a
killed run stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edgeser.audio import read_audio

from .augment import SpeechBank, apply_augment, sample_augment, source_span
from .config import AugmentConfig, ConfigError, from_dict, read_toml
from .manifest import MANIFEST_COLUMNS, ManifestRow, read_manifest
from .metrics import ccc_loss, masked_cross_entropy, unweighted_average_recall
from .reference_augment import SpectralAugmentConfig, mask_spectrogram, tilt_spectrum
from .student import SAMPLE_RATE
from .targets import CALM_CHOICES, VAD_TABLE, category_index, row_target, score_against_labels
from .teachers.reference import (
    ReferenceConfig,
    ReferenceModel,
    ReferenceTeacher,
    count_parameters,
    save_reference,
)


@dataclass
class ReferenceTrainConfig:
    """Everything that defines a reference-teacher training run (paths relative to the CWD)."""

    corpora: str = "../shared/corpora"
    corpus_names: list[str] = field(default_factory=lambda: ["ravdess", "baved", "turev"])
    out_dir: str = "runs/reference_teacher"
    weights: str = "distill/weights/reference_teacher.pt"
    steps: int = 600
    batch_size: int = 32
    crop_s: float = 2.0
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 40
    lr_floor: float = 0.05  # the cosine decays to this fraction of lr
    grad_clip: float = 5.0
    mse_weight: float = 1.0  # adds the masked mean squared error to the CCC loss (stabilises it)
    # Sampling levels, drawn uniformly one after the other, then a clip: "corpus", "class" (the
    # manifest's emotion or arousal level) and "speaker", in any order.
    sampling: list[str] = field(default_factory=lambda: ["corpus", "speaker"])
    category_weight: float = 1.0  # weight of the categorical head's loss (model.category_labels)
    calm: str = "neutral"  # what calm clips are to the categorical head: "neutral" or "masked"
    eval_every: int = 100
    seed: int = 0
    num_threads: int = 1
    max_clips_per_corpus: int = 0  # 0 = all; a small number makes a quick smoke run
    model: ReferenceConfig = field(default_factory=ReferenceConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    spectral: SpectralAugmentConfig = field(default_factory=SpectralAugmentConfig)

    def validate(self) -> ReferenceTrainConfig:
        for name in ("steps", "batch_size", "crop_s", "lr", "eval_every", "num_threads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.corpus_names:
            raise ConfigError("corpus_names is empty")
        levels = self.sampling
        if not levels or len(set(levels)) < len(levels) or not set(levels) <= set(SAMPLING_KEYS):
            raise ConfigError(f"sampling {self.sampling}: distinct levels of {list(SAMPLING_KEYS)}")
        if self.calm not in CALM_CHOICES:
            raise ConfigError(f"calm must be one of {', '.join(CALM_CHOICES)}, got {self.calm!r}")
        labels = self.model.category_labels
        if len(set(labels)) < len(labels) or set(labels) - set(VAD_TABLE) or len(labels) == 1:
            known = ", ".join(sorted(VAD_TABLE))
            raise ConfigError(f"model.category_labels {labels}: 2 or more distinct of {known}")
        self.augment.validate("augment")
        return self


def load_config(path: str | Path) -> ReferenceTrainConfig:
    """Read a TOML file into a ``ReferenceTrainConfig`` (unknown keys are a ConfigError)."""
    return from_dict(ReferenceTrainConfig, read_toml(path), "").validate()


@dataclass
class Clip:
    """A decoded labelled clip held in memory for training or evaluation; ``category`` indexes
    ``model.category_labels`` (-1: none, or the model has no categorical head)."""

    row: ManifestRow
    audio: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    category: int = -1


def corpus_rows(corpora: str | Path, names: list[str], split: str) -> list[ManifestRow]:
    """Manifest rows of one split (the manifest's ``split`` column) of the named corpora."""
    rows = []
    for name in names:
        manifest = Path(corpora) / name / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: corpus {name!r} not found under {corpora}")
        rows += [r for r in read_manifest(manifest) if r.split == split]
    return rows


def write_split_manifest(cfg: ReferenceTrainConfig, split: str, path: str | Path) -> int:
    """Write the rows of one split as a manifest for ``edgeser-distill label``: absolute paths,
    the manifest's speaker and an empty ``split`` column, so that the distiller
    holds out whole speakers of this split for its own checkpoint selection. Returns the rows."""
    rows = corpus_rows(cfg.corpora, cfg.corpus_names, split)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for r in rows:
            fields = {**vars(r), "path": str(r.audio), "split": ""}
            writer.writerow([fields[c] for c in MANIFEST_COLUMNS])
    return len(rows)


def load_clips(cfg: ReferenceTrainConfig, split: str) -> list[Clip]:
    """Decode every clip of a split (``max_clips_per_corpus`` per corpus if set)."""
    rows = corpus_rows(cfg.corpora, cfg.corpus_names, split)
    if cfg.max_clips_per_corpus:
        per_corpus: dict[str, list[ManifestRow]] = defaultdict(list)
        for r in rows:
            per_corpus[r.corpus].append(r)
        rng = np.random.default_rng(cfg.seed)
        rows = [
            group[i]
            for group in per_corpus.values()
            for i in sorted(rng.permutation(len(group))[: cfg.max_clips_per_corpus])
        ]
    clips = []
    for r in tqdm(rows, desc=f"decode {split}", unit="clip", mininterval=5):
        target, mask = row_target(r)
        category = category_index(r, cfg.model.category_labels, cfg.calm)
        clips.append(Clip(r, read_audio(r.audio), target, mask, category))
    return clips


SAMPLING_KEYS = {
    "corpus": lambda row: row.corpus,
    "class": lambda row: row.emotion or row.arousal_level,
    "speaker": lambda row: row.speaker,
}


class BalancedSampler:
    """Draws clip indices level by level (by default a corpus uniformly, then one of its
    speakers), then one clip, so that neither big corpora, nor talkative speakers, nor (with
    "class") frequent classes dominate. The first level's groups are in name order, the others
    in manifest order."""

    def __init__(self, clips: list[Clip], levels: list[str] | None = None):
        self.levels = list(levels or ["corpus", "speaker"])
        self.tree = _nest([(c.row, i) for i, c in enumerate(clips)], self.levels, top=True)

    def draw(self, rng: np.random.Generator, n: int) -> list[int]:
        picks = []
        for _ in range(n):
            node = self.tree
            for _level in self.levels:
                node = node[int(rng.integers(len(node)))]
            picks.append(node[int(rng.integers(len(node)))])
        return picks


def _nest(items: list[tuple[ManifestRow, int]], levels: list[str], top: bool = False) -> list:
    """Clip indices grouped by each level's key in turn, as nested lists."""
    if not levels:
        return [i for _, i in items]
    groups: dict[str, list[tuple[ManifestRow, int]]] = defaultdict(list)
    for row, i in items:
        groups[SAMPLING_KEYS[levels[0]](row)].append((row, i))
    keys = sorted(groups) if top else list(groups)
    return [_nest(groups[k], levels[1:]) for k in keys]


def make_batch(
    clips: list[Clip],
    picks: list[int],
    cfg: ReferenceTrainConfig,
    rng: np.random.Generator,
    speech: SpeechBank | None = None,
) -> tuple[torch.Tensor, ...]:
    """Augmented random crops (zero-padded to the longest; babble from ``speech``) with lengths,
    targets, masks and category indices (-1: none)."""
    crop = int(cfg.crop_s * SAMPLE_RATE)
    waves = []
    for i in picks:
        audio = clips[i].audio
        length = min(crop, len(audio))
        spec = sample_augment(rng, cfg.augment, speech=speech)
        span = min(source_span(length, spec), len(audio))
        start = int(rng.integers(len(audio) - span + 1))
        seed = int(rng.integers(2**31))
        segment = audio[start : start + span]
        waves.append(apply_augment(segment, length, spec, seed, speech=speech,
                                   speaker=clips[i].row.speaker))  # fmt: skip
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        batch[row, : len(w)] = torch.from_numpy(w)
    target = torch.from_numpy(np.stack([clips[i].target for i in picks]))
    mask = torch.from_numpy(np.stack([clips[i].mask for i in picks]))
    category = torch.tensor([clips[i].category for i in picks], dtype=torch.long)
    return batch, lengths, target, mask, category


def evaluate(model: ReferenceModel, clips: list[Clip]) -> dict[str, Any]:
    """Label scores per corpus of full-length dev clips, and ``score``: the mean over corpora
    of each corpus's mean CCC over its labelled dimensions (the model-selection criterion)."""
    was_training = model.training
    out = ReferenceTeacher(model, "dev")([c.audio for c in clips])
    model.train(was_training)
    by_corpus: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        by_corpus[c.row.corpus].append(i)
    result: dict[str, Any] = {
        corpus: score_against_labels(out.adv[idx], [clips[i].row for i in idx])
        for corpus, idx in sorted(by_corpus.items())
    }
    if out.categories is not None:  # four-class UAR where a corpus has categories
        for corpus, idx in by_corpus.items():
            true = np.array([clips[i].category for i in idx])
            if (true >= 0).any():
                pred = out.categories[idx].argmax(1)
                result[corpus]["uar_categories"] = unweighted_average_recall(
                    pred, true, out.categories.shape[1]
                )
    result["score"] = float(np.mean([result[c]["ccc_mean"] for c in by_corpus]))
    return result


def learning_rate(cfg: ReferenceTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``lr_floor`` of ``lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * cosine)


def train_step(
    model: ReferenceModel,
    batch: tuple[torch.Tensor, ...],
    cfg: ReferenceTrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Forward with spectral augmentation; returns the masked CCC (+ MSE) loss, plus the
    categorical head's masked cross-entropy where the model has one."""
    signal, lengths, target, mask, category = batch
    power, frames = model.power(signal, lengths)
    power = tilt_spectrum(power, cfg.spectral, gen)
    prosody = model.prosody_features(power) if model.config.prosody else None
    log_mel = mask_spectrogram(model.log_mel(power), frames, cfg.spectral, gen)
    adv, embedding = model.encode(log_mel, frames, prosody)
    loss = ccc_loss(adv, target, mask)
    if cfg.mse_weight:
        loss = loss + cfg.mse_weight * (mask * (adv - target) ** 2).sum() / mask.sum().clamp(min=1)
    if model.config.category_labels:
        logits = model.category_logits(embedding)
        loss = loss + cfg.category_weight * masked_cross_entropy(logits, category)
    return loss


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: ReferenceTrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the best dev result and timings."""
    torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_dict = asdict(cfg)
    torch.manual_seed(cfg.seed)
    model = ReferenceModel(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state: dict[str, Any] = {"step": 0, "best": None, "history": [], "seconds": 0.0}
    last = out / "last.pt"
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        if not same_config(ckpt["config"], config_dict, asdict(ReferenceTrainConfig())):
            raise ConfigError(f"{last} was made with another config; use it or a new out_dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        print(f"resuming at step {state['step']} of {cfg.steps}")
    print(f"reference teacher: {count_parameters(model):,} parameters")

    t0 = time.time()
    train_clips, dev_clips = load_clips(cfg, "train"), load_clips(cfg, "dev")
    print(f"{len(train_clips)} train clips, {len(dev_clips)} dev clips ({time.time() - t0:.0f} s)")
    sampler = BalancedSampler(train_clips, cfg.sampling)
    speech = SpeechBank([c.audio for c in train_clips], [c.row.speaker for c in train_clips])
    model.train()
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps,
               desc="train", unit="step", mininterval=10)  # fmt: skip
    started = time.time() - state["seconds"]
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        torch.manual_seed(cfg.seed + step)  # dropout
        batch = make_batch(train_clips, sampler.draw(rng, cfg.batch_size), cfg, rng, speech)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss = train_step(model, batch, cfg, gen)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            result = evaluate(model, dev_clips)
            result.update(step=step + 1, loss=float(loss.item()))
            state["history"].append(result)
            print(_summary_line(result), flush=True)
            if state["best"] is None or result["score"] > state["best"]["score"]:
                state["best"] = result
                save_reference(cfg.weights, model, step=step + 1, dev=result,
                               trained_on=_trained_on(cfg), recipe=config_dict)  # fmt: skip
            state["step"] = step + 1
            state["seconds"] = time.time() - started
            _save_atomic({"config": config_dict, "model": model.state_dict(),
                          "optimizer": optimizer.state_dict(), "state": state}, last)  # fmt: skip
    summary = {"best": state["best"], "train_seconds": state["seconds"],
               "parameters": count_parameters(model), "weights": cfg.weights}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def same_config(saved: dict[str, Any], now: dict[str, Any], default: dict[str, Any]) -> bool:
    """Whether a checkpoint's config is ``now``'s, a key it lacks (added to the recipe after
    it was written) counting as equal when ``now`` holds that key's default."""
    for key, value in now.items():
        if key not in saved:
            if value != default.get(key):
                return False
        elif isinstance(value, dict) and isinstance(saved[key], dict):
            if not same_config(saved[key], value, default.get(key, {})):
                return False
        elif saved[key] != value:
            return False
    return set(saved) <= set(now)


def _trained_on(cfg: ReferenceTrainConfig) -> str:
    return f"train split (distill.targets.split_of) of {', '.join(cfg.corpus_names)}"


def _summary_line(result: dict[str, Any]) -> str:
    parts = [f"step {result['step']}: loss {result['loss']:.3f} dev score {result['score']:.3f}"]
    for corpus, s in result.items():
        if isinstance(s, dict):
            parts.append(
                f"{corpus} ccc {s['ccc_mean']:.3f} aucA {s['auc_arousal']:.3f} "
                f"aucV {s['auc_valence']:.3f}"
            )
    return " | ".join(parts)


def with_seed(cfg: ReferenceTrainConfig, seed: int) -> ReferenceTrainConfig:
    """``cfg`` with another seed, its run folder and weights named for it (``-seedN``), so that
    the members of an ensemble never share a checkpoint."""
    weights = Path(cfg.weights)
    return replace(
        cfg,
        seed=seed,
        out_dir=f"{cfg.out_dir.rstrip('/')}-seed{seed}",
        weights=str(weights.with_name(f"{weights.stem}-seed{seed}{weights.suffix}")),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="TOML config (see configs/reference_teacher.toml)")
    parser.add_argument(
        "--write-manifest",
        nargs=2,
        metavar=("SPLIT", "CSV"),
        help="only write the manifest of one split (train or dev) and exit",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="train one member of a teacher ensemble: this seed, written to OUT_DIR-seedN and "
        "WEIGHTS-seedN.pt (the config's own paths stay for its own seed)",
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if args.seed is not None:
        cfg = with_seed(cfg, args.seed)
    if args.write_manifest:
        split, path = args.write_manifest
        n = write_split_manifest(cfg, split, path)
        print(f"{path}: {n} {split} clips")
        return 0
    summary = train(cfg)
    print(json.dumps(summary["best"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
