"""Typed configuration of the distillation stages, one dataclass per stage, loaded from TOML.

``[label]``, ``[train]`` and ``[eval]`` sections (``[label.augment]`` nested) map onto
``LabelConfig``, ``TrainConfig`` and ``EvalConfig``; ``RunConfig`` holds all three. Unknown
keys, wrong types and missing required values are a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeser.config import read_toml
from edgeser.errors import ConfigError

from .degrade import CODECS


def option(default: Any, sentence: str, unit: str = "") -> Any:
    """A config field with its help sentence and unit (read by the CLI's ``--help``); a list
    default is copied for each instance."""
    metadata = {"help": sentence, "unit": unit}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class AugmentConfig:
    """How crops are degraded before the teacher (and later the student) hears them.

    Each ``p_*`` is the probability that a crop gets that effect; ``*_range`` values are
    [low, high] drawn uniformly per crop.
    """

    enabled: bool = option(True, "degrade the crops at all (off: every crop is clean)")
    p_gain: float = option(0.5, "probability of a random gain", "0..1")
    gain_db_range: list[float] = option([-12.0, 6.0], "gain drawn from [low, high]", "dB")
    p_noise: float = option(0.4, "probability of added noise", "0..1")
    snr_db_range: list[float] = option([5.0, 30.0], "signal-to-noise ratio drawn from", "dB")
    noise_color_range: list[float] = option(
        [0.0, 2.0], "exponent of synthetic 1/f^x noise drawn from (0 white, 2 brown)"
    )
    noise_dirs: list[str] = option([], "folders of noise recordings to mix in")
    p_noise_file: float = option(0.5, "share of the noise taken from noise_dirs files", "0..1")
    p_band: float = option(0.2, "probability of a band limit (telephone or low-pass)", "0..1")
    lowpass_hz_range: list[float] = option([2500.0, 6000.0], "low-pass cut-off drawn from", "Hz")
    p_telephone: float = option(0.5, "share of band limits that are telephone band", "0..1")
    p_speed: float = option(0.3, "probability of a speed change", "0..1")
    speed_range: list[float] = option([0.9, 1.1], "speed factor drawn from", "x")
    p_reverb: float = option(0.3, "probability of synthetic reverberation", "0..1")
    rt60_s_range: list[float] = option([0.2, 0.8], "reverberation time RT60 drawn from", "s")
    drr_db_range: list[float] = option([0.0, 15.0], "direct-to-reverberant ratio drawn from", "dB")
    p_far: float = option(
        0.0, "probability of a far talker: reverberation (rt60_s_range) plus pink noise "
        "(snr_db_range) at a low direct-to-reverberant ratio", "0..1")  # fmt: skip
    far_drr_db_range: list[float] = option(
        [-6.0, 0.0], "direct-to-reverberant ratio of a far talker drawn from", "dB"
    )
    p_babble: float = option(
        0.0, "probability of babble: other speakers' speech mixed in (the reference teacher's "
        "recipe only, which has those clips at hand)", "0..1")  # fmt: skip
    babble_snr_db_range: list[float] = option([0.0, 15.0], "babble SNR drawn from", "dB")
    babble_talkers_range: list[int] = option([3, 8], "other speakers' clips in the babble")
    p_mu_law: float = option(0.0, "share of telephone-band crops with 8-bit mu-law", "0..1")
    p_codec: float = option(0.0, "probability of a lossy codec round trip", "0..1")
    codecs: list[str] = option(["opus", "vorbis", "mp3"], "codecs drawn from (edgeser.distill."
                               "degrade.CODECS)")  # fmt: skip
    codec_level_range: list[float] = option(
        [0.3, 1.0], "codec compression level drawn from (0 best quality, 1 smallest)"
    )

    def validate(self, where: str) -> None:
        """Probabilities in [0, 1], every ``*_range`` a [low, high] pair, known codecs."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}.{f.name} must be in [0, 1], got {value}")
            if f.name.endswith("_range") and (len(value) != 2 or value[0] > value[1]):
                raise ConfigError(f"{where}.{f.name} must be [low, high], got {value}")
        if not self.codecs or set(self.codecs) - set(CODECS):
            raise ConfigError(f"{where}.codecs: {self.codecs} (known: {', '.join(CODECS)})")


@dataclass
class TeacherCalibration:
    """Affine map of one ensemble member's readings, ``scale * adv + offset`` per dimension
    (arousal, dominance, valence), applied before the members are averaged."""

    scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    @classmethod
    def parse(cls, text: str) -> TeacherCalibration:
        """The command line's form ``SA,SD,SV:OA,OD,OV`` (scales, then offsets)."""
        try:
            scale, offset = ([float(v) for v in part.split(",")] for part in text.split(":"))
        except ValueError:
            raise ConfigError(f"calibration {text!r}: expected SA,SD,SV:OA,OD,OV") from None
        return cls(scale, offset)

    def validate(self, where: str) -> None:
        if len(self.scale) != 3 or len(self.offset) != 3:
            raise ConfigError(f"{where}: scale and offset need 3 values each (A, D, V)")


@dataclass
class LabelConfig:
    """Label stage: which audio, which teacher(s), where the pseudo-labels go. Several
    teachers (a list) form an ensemble: the label is the mean of their readings, each mapped
    by its ``calibration`` (one per teacher, in order; none: as they are)."""

    data: list[str] = option([], "audio folders and manifest CSVs to label (required)")
    teacher: str | list[str] = option(
        "",
        "hub id, local folder, .onnx, reference[:PATH] or module:attr (required); repeat the "
        "flag (or give a TOML list) for an ensemble, whose label is the members' mean",
    )
    store: str = option("", "folder of the label store, created or resumed (required)")
    calibration: list[TeacherCalibration] = option(
        [],
        "per-teacher affine map SA,SD,SV:OA,OD,OV (scales, then offsets) applied before the "
        "ensemble mean; repeat once per teacher, in order (none: readings as they are)",
    )
    crops_per_file: int = option(4, "crops cut from each file")
    min_crop_s: float = option(1.0, "shortest crop", "s")
    max_crop_s: float = option(6.0, "longest crop", "s")
    crop_step_s: float = option(0.25, "crop lengths and starts lie on this grid", "s")
    clean_crops: int = option(1, "crops per file left without augmentation")
    seed: int = option(0, "seed of the crop plan and the augmentations")
    batch_size: int = option(16, "crops per teacher batch (and per committed store chunk)")
    device: str = option("auto", "where the teacher runs: auto, cpu, cuda or cuda:N")
    max_chunk_s: float = option(20.0, "longest teacher input (longer: equal chunks)", "s")
    store_embeddings: bool = option(False, "also store the teacher's embeddings")
    repair: bool = option(
        False,
        "move damaged chunks of the store aside to its damaged/ folder (never deleted) before "
        "labelling, so that their crops are labelled again (off: a damaged chunk stops the run "
        "with an error naming it)",
    )
    num_threads: int = option(0, "torch CPU threads (0: torch's default)")
    ray: str = option("", "Ray cluster: auto, local or HOST:PORT (empty: this machine only)")
    ray_actors: int = option(0, "teacher actors on Ray (0: as many as the cluster holds)")
    ray_num_gpus: float = option(1.0, "GPUs per teacher actor on Ray (CPU actors when none)")
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def teachers(self) -> list[str]:
        """The teacher spec(s) as a list."""
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)

    def validate(self) -> None:
        _require(self, "label", "data", "teacher", "store")
        for i, c in enumerate(self.calibration):
            c.validate(f"label.calibration[{i}]")
        _positive(self, "label", "crops_per_file", "batch_size", "crop_step_s", "max_chunk_s")
        if not 0 < self.min_crop_s <= self.max_crop_s:
            raise ConfigError("label: need 0 < min_crop_s <= max_crop_s")
        if self.clean_crops < 0:
            raise ConfigError("label.clean_crops must be >= 0")
        self.augment.validate("label.augment")
        if self.augment.p_babble:
            raise ConfigError(
                "label.augment.p_babble: babble is drawn only in the reference teacher's recipe "
                "so far (it needs other speakers' clips)"
            )


@dataclass
class TrainConfig:
    """Train stage: fit a student to the pseudo-labels of one store."""

    store: str = option("", "label store written by `label` (required)")
    out: str = option("", "output folder of student.pt and resume.pt (required)")
    student: str = option("wav2small", "student architecture (preset name)")
    epochs: int = option(20, "passes over the training crops")
    max_steps: int = option(0, "stop after this many optimiser steps (0: no limit)", "steps")
    batch_size: int = option(32, "crops per optimiser step")
    lr: float = option(3e-3, "peak learning rate of AdamW")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_fraction: float = option(0.03, "share of the steps spent warming up", "0..1")
    mse_weight: float = option(0.0, "weight of the MSE term added to the 1 - CCC loss")
    categories: bool = option(
        True,
        "give the student a categorical head and distil the teacher's category probabilities "
        "when the store holds them (off, or a store without them: A/D/V only)",
    )
    category_weight: float = option(
        1.0, "weight of the KL divergence from the teacher's category probabilities"
    )
    clip_grad_norm: float = option(1.0, "largest gradient norm (clipped beyond)")
    seed: int = option(0, "seed of initialisation, batching and the dev split")
    checkpoint_every: int = option(200, "steps between saves of out/resume.pt", "steps")
    eval_every: int = option(200, "steps between dev CCC checks (best kept)", "steps")
    dev_fraction: float = option(0.1, "share of speakers held out when no split column", "0..1")
    device: str = option("cpu", "where training runs: cpu, cuda or cuda:N")
    num_threads: int = option(0, "torch CPU threads (0: torch's default)")
    resume: bool = option(True, "continue from out/resume.pt when it exists")
    cache_mb: int = option(4096, "decoded audio kept in memory", "MB")

    def validate(self) -> None:
        _require(self, "train", "store", "out")
        _positive(self, "train", "epochs", "batch_size", "lr", "checkpoint_every", "eval_every")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError("train.dev_fraction must be in [0, 1)")
        if self.category_weight < 0:
            raise ConfigError(f"train.category_weight must be >= 0, got {self.category_weight}")


@dataclass
class EvalConfig:
    """Eval stage: CCC of a student against its teacher (and human labels) on the held-out
    crops; the split is the one recorded in the checkpoint by ``train``."""

    store: str = option("", "label store the student was trained on (required)")
    checkpoint: str = option("", "student checkpoint to evaluate (required)")
    batch_size: int = option(32, "crops per forward pass")
    report: str = option("", "also write the report as JSON to this file")
    num_threads: int = option(0, "torch CPU threads (0: torch's default)")

    def validate(self) -> None:
        _require(self, "eval", "store", "checkpoint")
        _positive(self, "eval", "batch_size")


@dataclass
class RunConfig:
    """All stages; ``train.store`` and ``eval.store`` default to ``label.store``, and
    ``eval.checkpoint`` to the student that ``train`` writes."""

    label: LabelConfig = field(default_factory=LabelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def fill_defaults(self) -> RunConfig:
        """Chain the stages: later stages read what earlier ones wrote unless told otherwise."""
        self.train.store = self.train.store or self.label.store
        self.eval.store = self.eval.store or self.train.store
        if not self.eval.checkpoint and self.train.out:
            self.eval.checkpoint = str(Path(self.train.out) / "student.pt")
        return self


def _require(cfg: Any, section: str, *names: str) -> None:
    missing = [n for n in names if not getattr(cfg, n)]
    if missing:
        raise ConfigError(f"{section}: missing required option(s) {', '.join(missing)}")


def _positive(cfg: Any, section: str, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) <= 0:
            raise ConfigError(f"{section}.{n} must be > 0, got {getattr(cfg, n)}")


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and wrong types."""
    where = where or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
        )
    prefix = "" if where == "config" else f"{where}."
    values = {k: coerce(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**values)


def coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a field's type hint (int widens to float); nested tables recurse."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):  # the first member type that fits
        for member in typing.get_args(hint):
            try:
                return coerce(member, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _type_name(hint: Any) -> str:
    """``str or list[str]`` for a union hint."""
    return " or ".join(getattr(a, "__name__", str(a)) if typing.get_origin(a) is None else str(a)
                       for a in typing.get_args(hint))  # fmt: skip


def load_run_config(path: str | Path) -> RunConfig:
    """A whole-pipeline config: ``[label]``, ``[train]``, ``[eval]`` tables, nothing else."""
    return from_dict(RunConfig, read_toml(path), "").fill_defaults()
