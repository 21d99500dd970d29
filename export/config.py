"""Export settings: one typed dataclass, from CLI flags or a TOML file (unknown keys rejected)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeser import limits
from edgeser.config import read_toml
from edgeser.contract import MIN_SECONDS
from edgeser.errors import ConfigError, EdgeserError

# Where the files go without --out: beside the other long jobs' output in runs/, so that an
# export from a clone leaves nothing untracked in it.
DEFAULT_OUT = Path("runs") / "export"


class ExportError(EdgeserError):
    """Export cannot go on: bad checkpoint, calibration audio or output folder, or a file
    that fails its checks. (Bad settings are a ``ConfigError``.)"""


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``edgeser-export`` needs: where from, where to, and how strict to be."""

    checkpoint: Path
    out: Path | None = None  # None: DEFAULT_OUT / <stem>, under runs/ (which git ignores)
    name: str = ""  # file stem of the outputs; empty: the checkpoint's stem
    int8: bool = False
    calibration: tuple[Path, ...] = ()  # folders, audio files or manifest CSVs
    check: bool = False  # full fp32 parity sweep (min length..30 s) and latency per window
    force: bool = False  # write into an existing output folder
    min_ccc: float = 0.99  # refuse an int8 file whose CCC against fp32 is below this
    # With a categorical head, also refuse an int8 file whose most probable label is fp32's
    # on fewer than this share of the held-out crops, or whose probabilities stray further.
    min_category_agreement: float = 0.98
    max_category_diff: float = 0.03  # largest |int8 - fp32| probability, any crop and label
    max_abs_diff: float = 1e-4  # refuse an fp32 file further than this from torch
    opset: int = 17
    window_s: float = 3.0
    hop_s: float = 1.0
    model_version: str = ""  # empty: the checkpoint's meta, else <stem>-<sha256 prefix>
    calibration_crops: int = 64
    heldout_crops: int = 32
    crop_s: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Coerce paths and check ranges so a bad value fails here, by name."""
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        out = DEFAULT_OUT / self.stem if self.out is None else Path(self.out)
        object.__setattr__(self, "out", out)
        sources = self.calibration
        sources = [sources] if isinstance(sources, (str, Path)) else sources
        object.__setattr__(self, "calibration", tuple(Path(p) for p in sources))
        if not 0.0 < self.min_ccc <= 1.0:
            raise ConfigError(f"min_ccc must be in (0, 1], got {self.min_ccc}")
        if not 0.0 < self.min_category_agreement <= 1.0:
            raise ConfigError(
                f"min_category_agreement must be in (0, 1], got {self.min_category_agreement}"
            )
        if not 0.0 < self.max_category_diff <= 1.0:
            raise ConfigError(f"max_category_diff must be in (0, 1], got {self.max_category_diff}")
        if self.max_abs_diff <= 0:
            raise ConfigError(f"max_abs_diff must be positive, got {self.max_abs_diff}")
        if self.opset < 17:
            raise ConfigError(f"opset must be 17 or later, got {self.opset}")
        limits.WINDOW_S.check("window_s", self.window_s)
        limits.HOP_S.check("hop_s", self.hop_s)
        if self.window_s < MIN_SECONDS or self.hop_s > self.window_s:
            raise ConfigError(
                f"need {MIN_SECONDS} s <= window_s and hop_s <= window_s, "
                f"got {self.window_s} / {self.hop_s}"
            )
        if self.calibration_crops < 1 or self.heldout_crops < 2:
            raise ConfigError("need calibration_crops >= 1 and heldout_crops >= 2")
        if self.crop_s <= 0:
            raise ConfigError(f"crop_s must be positive, got {self.crop_s}")
        if self.int8 and not self.calibration:
            raise ConfigError("int8 export needs calibration audio (--calibration DATA)")

    @property
    def stem(self) -> str:
        """File stem of the outputs."""
        return self.name or self.checkpoint.stem

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExportConfig:
        """Build from plain values (TOML or CLI); unknown, mistyped or missing keys are a
        ConfigError naming the key."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ConfigError(
                f"unknown export setting(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(types))})"
            )
        if "checkpoint" not in values:
            raise ConfigError("missing export setting(s): checkpoint")
        for key, value in values.items():
            if not _fits(value, types[key]):
                raise ConfigError(f"export setting {key} = {value!r} is not a {types[key]}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> ExportConfig:
        """Read settings from a TOML file (top level or an ``[export]`` table); ``overrides``
        (e.g. CLI flags) win over the file."""
        data = read_toml(Path(path))
        section = data.get("export", data)
        return cls.from_dict({**section, **overrides})


def _fits(value: Any, annotation: str) -> bool:
    """Whether a TOML/CLI value suits a field annotated ``annotation`` (a string, as the
    module uses postponed annotations)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation in ("str", "Path", "Path | None"):
        return isinstance(value, (str, Path))
    if annotation == "tuple[Path, ...]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value)
    raise TypeError(f"no check for annotation {annotation!r}")
