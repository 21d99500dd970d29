"""Typed configuration of the distillation stages, one dataclass per stage, loaded from TOML.

``[label]``, ``[train]`` and ``[eval]`` sections (``[label.augment]`` nested) map onto
``LabelConfig``, ``TrainConfig`` and ``EvalConfig``; ``RunConfig`` holds all three. Unknown
keys, wrong types and missing required values are a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeser.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class AugmentConfig:
    """How crops are degraded before the teacher (and later the student) hears them.

    Each ``p_*`` is the probability that a crop gets that effect; ``*_range`` values are
    [low, high] drawn uniformly per crop.
    """

    enabled: bool = True
    p_gain: float = 0.5
    gain_db_range: list[float] = field(default_factory=lambda: [-12.0, 6.0])
    p_noise: float = 0.4
    snr_db_range: list[float] = field(default_factory=lambda: [5.0, 30.0])
    noise_color_range: list[float] = field(default_factory=lambda: [0.0, 2.0])
    noise_dirs: list[str] = field(default_factory=list)
    p_noise_file: float = 0.5
    p_band: float = 0.2
    lowpass_hz_range: list[float] = field(default_factory=lambda: [2500.0, 6000.0])
    p_telephone: float = 0.5
    p_speed: float = 0.3
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    p_reverb: float = 0.3
    rt60_s_range: list[float] = field(default_factory=lambda: [0.2, 0.8])
    drr_db_range: list[float] = field(default_factory=lambda: [0.0, 15.0])


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

    data: list[str] = field(default_factory=list)
    teacher: str | list[str] = ""
    store: str = ""
    calibration: list[TeacherCalibration] = field(default_factory=list)
    crops_per_file: int = 4
    min_crop_s: float = 1.0
    max_crop_s: float = 6.0
    crop_step_s: float = 0.25
    clean_crops: int = 1
    seed: int = 0
    batch_size: int = 16
    device: str = "auto"
    max_chunk_s: float = 20.0
    store_embeddings: bool = False
    num_threads: int = 0
    ray: str = ""  # "": this machine; auto, local or HOST:PORT: a Ray cluster (ray_label.py)
    ray_actors: int = 0  # teacher actors on Ray; 0: as many as the cluster holds
    ray_num_gpus: float = 1.0  # GPUs per teacher actor on Ray (CPU actors when none)
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
        for name in ("gain_db_range", "snr_db_range", "noise_color_range", "lowpass_hz_range",
                     "speed_range", "rt60_s_range", "drr_db_range"):  # fmt: skip
            pair = getattr(self.augment, name)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ConfigError(f"label.augment.{name} must be [low, high], got {pair}")


@dataclass
class TrainConfig:
    """Train stage: fit a student to the pseudo-labels of one store."""

    store: str = ""
    out: str = ""
    student: str = "wav2small"
    epochs: int = 20
    max_steps: int = 0
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.03
    mse_weight: float = 0.0
    clip_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 200
    dev_fraction: float = 0.1
    device: str = "cpu"
    num_threads: int = 0
    resume: bool = True
    cache_mb: int = 4096

    def validate(self) -> None:
        _require(self, "train", "store", "out")
        _positive(self, "train", "epochs", "batch_size", "lr", "checkpoint_every", "eval_every")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError("train.dev_fraction must be in [0, 1)")


@dataclass
class EvalConfig:
    """Eval stage: CCC of a student against its teacher (and human labels) on the held-out
    crops; the split is the one recorded in the checkpoint by ``train``."""

    store: str = ""
    checkpoint: str = ""
    batch_size: int = 32
    report: str = ""
    num_threads: int = 0

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
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _type_name(hint: Any) -> str:
    """``str or list[str]`` for a union hint."""
    return " or ".join(getattr(a, "__name__", str(a)) if typing.get_origin(a) is None else str(a)
                       for a in typing.get_args(hint))  # fmt: skip


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_run_config(path: str | Path) -> RunConfig:
    """A whole-pipeline config: ``[label]``, ``[train]``, ``[eval]`` tables, nothing else."""
    return from_dict(RunConfig, read_toml(path), "").fill_defaults()
