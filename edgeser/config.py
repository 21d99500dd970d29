"""Runtime settings: one typed dataclass, loadable from TOML, overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

from . import limits
from .errors import ConfigError
from .vad import DEFAULT_GATE, EnergyVad, VoiceGate, gate_class

SCORE_FORMATS = ("csv", "jsonl", "table")
STREAM_FORMATS = ("auto", "bars", "jsonl")


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings of ``edgeser score`` and ``edgeser stream`` (None: the model's or the default).

    Both commands accept every key and check it the same way (type, then range or choice);
    a key one command does not use is ignored by it (``smoothing`` by ``score``).
    """

    model: str | None = None  # ONNX file; None: the bundled default model
    threads: int = 1  # onnxruntime intra-op threads (1 suits a Raspberry Pi)
    window_s: float | None = None  # None: the model's recommended window
    hop_s: float | None = None  # None: the model's recommended hop
    vad: bool | str = True  # gate windows for speech (False: score every window that carries
    # signal); or the gate by name: "noise-floor" (True's) or "energy" (EnergyVad, -45 dBFS)
    vad_threshold_db: float | None = None  # None: the level-independent NoiseFloorVad; a number:
    # the fixed EnergyVad, counting frames of at least this speech-band level (dBFS) as speech
    vad_min_voiced: float | None = None  # share of speech frames for a voiced window (None:
    # the gate's default: 0.05 for the noise-floor gate, 0.1 for a fixed threshold)
    score_format: str = "csv"  # score only: csv, jsonl or table
    per_window: bool = False  # score only: one row per window instead of per file
    categories: bool = False  # score only: csv/table columns of a categorical head's output
    smoothing: float | None = None  # stream only: EMA factor in (0, 1]
    device: int | str | None = None  # stream only: input device index or name; None: the default
    reconnect: bool = False  # stream only: reopen a lost device when it is back (else: an error)
    stream_format: str = "auto"  # stream only: auto (bars on a terminal, else jsonl), bars, jsonl
    duration_s: float | None = None  # stream only: stop after this many seconds; None: never
    block_s: float = 0.05  # stream only: audio block length
    max_pending: int = 64  # stream only: blocks queued for the worker before dropping

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _checked_type(f.name, getattr(self, f.name), hints[f.name])
            if f.name in LIMITS and value is not None:
                value = LIMITS[f.name].check(f.name, value)
            object.__setattr__(self, f.name, value)  # numpy numbers stored as Python's
        named = gate_class(self.vad) if isinstance(self.vad, str) else None  # or ConfigError
        if named is not None and named is not EnergyVad and self.vad_threshold_db is not None:
            raise ConfigError(
                f"vad_threshold_db is the energy gate's threshold; it cannot go with "
                f"vad = {self.vad!r}"
            )
        for name, choices in (("score_format", SCORE_FORMATS), ("stream_format", STREAM_FORMATS)):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> RuntimeConfig:
        """Read settings from a TOML file of top-level keys; an unknown key is a ConfigError."""
        data = read_toml(path)
        return cls().updated(data, source=str(path))

    def updated(self, values: dict[str, Any], source: str = "settings") -> RuntimeConfig:
        """A copy with ``values`` set (None values are skipped: "not given on the command line")."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        try:
            return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def voice_gate(self) -> VoiceGate | None:
        """The voice-activity gate these settings ask for (None: no gating)."""
        if not self.vad:
            return None
        share = {} if self.vad_min_voiced is None else {"min_voiced": self.vad_min_voiced}
        if self.vad_threshold_db is not None:
            return EnergyVad(threshold_db=self.vad_threshold_db, **share)
        return gate_class(self.vad if isinstance(self.vad, str) else DEFAULT_GATE)(**share)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tables of a TOML file (for ``edgeser``, ``edgeser-distill`` and ``edgeser-export``);
    a file that is missing, unreadable, not UTF-8 text or not valid TOML is a ConfigError
    naming it, in one line."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("TOML needs Python 3.11+ or `pip install tomli`") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text: a Latin-1 file, a binary one
        raise ConfigError(
            f"{path}: not valid TOML (not UTF-8 text: byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


# The accepted range of each numeric setting (the flags use the same ranges).
LIMITS: dict[str, limits.Range] = {
    "threads": limits.THREADS,
    "window_s": limits.WINDOW_S,
    "hop_s": limits.HOP_S,
    "vad_threshold_db": limits.VAD_THRESHOLD_DB,
    "vad_min_voiced": limits.SHARE,
    "smoothing": limits.SMOOTHING,
    "duration_s": limits.DURATION_S,
    "block_s": limits.BLOCK_S,
    "max_pending": limits.MAX_PENDING,
}


def _checked_type(name: str, value: object, hint: Any) -> object:
    """``value`` if it fits ``hint``, a number as the Python int or float it equals (an int
    or np.int64 passes for a float, np.float32 for a float; a bool passes for nothing but a
    bool); else a ConfigError."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    as_number = limits.number(value)
    for kind in allowed:
        if kind is type(None) and value is None:
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(as_number, int):
            return as_number
        if kind is float and as_number is not None:
            return float(as_number)
        if kind is str and isinstance(value, str):
            return value
    expected = " or ".join("None" if k is type(None) else k.__name__ for k in allowed)
    raise ConfigError(f"{name} must be {expected}, got {limits.shown(value)}")
