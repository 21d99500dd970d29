"""Voice-activity gates: does a window hold enough speech to be scored?

A gate looks at the speech-band level of the window's 20 ms frames (every 10 ms, DC-free, see
``edgeser.levels``), and at those of the ``history_s`` seconds before it. The scorer keeps that
history per stream, so a window gets the same verdict from ``score_file``, a ``Stream`` and
``predict`` on the same audio, whatever the block sizes.

- ``NoiseFloorVad`` (the default) is level-independent: a frame counts as speech when its
  50 ms-smoothed level rises ``margin_db`` above the noise floor, tracked as the minimum of that
  smoothed level over the last ``floor_s`` seconds (minimum statistics, Martin 2001: speech
  pauses every few syllables and lets the floor show, noise does not rise above it). Steady
  noise of any level stays near its floor; speech 30 dB quieter is found all the same. Babble
  (other voices) is speech to it: it cannot tell a foreground voice from background talkers.
- ``EnergyVad`` is the fixed gate: a frame counts when its level reaches ``threshold_db`` dBFS.

Wherever a gate is taken (``score_file``, ``scorer``, ``Stream``, the TOML key ``vad``), it may
be given as a gate object, by name (``"noise-floor"``, ``"energy"``: default settings), as True
(the default gate) or as False / None (no gate): ``as_voice_gate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import inf
from typing import Protocol

import numpy as np

from .contract import SAMPLE_RATE
from .errors import ConfigError
from .levels import FRAME_HOP, SILENCE_DB, frame_levels_db
from .limits import (
    FLOOR_S,
    MARGIN_DB,
    SHARE,
    SMOOTH_FRAMES,
    VAD_THRESHOLD_DB,
    Range,
    number,
    shown,
)


class VoiceGate(Protocol):
    """What a scorer asks of a voice-activity gate."""

    history_s: float  # seconds of audio before a window that the gate looks at

    def voiced(self, levels_db: np.ndarray, inside: int) -> bool:
        """Whether a window is speech, from the frame levels up to its end (``history_s``
        before it, where heard), the last ``inside`` of which lie in the window."""
        ...


def _check_settings(gate: object, ranges: dict[str, Range]) -> None:
    """Check a frozen gate's numeric settings against ``ranges`` (ConfigError naming the
    first one outside), and store each as the Python number it equals."""
    for name, allowed in ranges.items():
        object.__setattr__(gate, name, allowed.check(name, getattr(gate, name)))


def _enough(speech: np.ndarray, inside: int, min_voiced: float) -> bool:
    """True when at least ``min_voiced`` of the window's ``inside`` frames are speech."""
    return inside > 0 and int(np.count_nonzero(speech)) >= min_voiced * inside


@dataclass(frozen=True)
class NoiseFloorVad:
    """A window is voiced when at least ``min_voiced`` of its frames have a 50 ms-smoothed
    level ``margin_db`` or more above the noise floor: the lowest smoothed level of the last
    ``floor_s`` seconds (digital silence aside). Independent of the input level."""

    margin_db: float = 5.0  # above the +-2 dB spread of smoothed steady noise about its floor
    min_voiced: float = 0.05  # 150 ms of a 3 s window: about one stressed syllable
    floor_s: float = 3.0
    smooth_frames: int = 5  # 50 ms

    def __post_init__(self) -> None:
        _check_settings(
            self,
            {"min_voiced": SHARE, "margin_db": MARGIN_DB, "floor_s": FLOOR_S,
             "smooth_frames": SMOOTH_FRAMES},
        )  # fmt: skip

    @property
    def history_s(self) -> float:
        """The floor looks back ``floor_s`` seconds from each frame."""
        return self.floor_s

    def smoothed_db(self, levels_db: np.ndarray) -> np.ndarray:
        """Each frame's level averaged (in power) with the ``smooth_frames - 1`` before it."""
        k = self.smooth_frames
        power = 10.0 ** (levels_db / 10.0)
        smoothed = np.convolve(power, np.ones(k) / k, mode="full")[: power.size]
        return 10.0 * np.log10(np.maximum(smoothed, 1e-300))

    def floor_db(self, levels_db: np.ndarray, inside: int) -> np.ndarray:
        """The tracked noise floor at each of the last ``inside`` frames (inf: none yet):
        the minimum smoothed level over ``floor_s`` up to the frame, over whole spans of
        frames that carry signal."""
        return self._floor_db(levels_db, self.smoothed_db(levels_db), inside)

    def _floor_db(self, levels_db: np.ndarray, smoothed_db: np.ndarray, inside: int) -> np.ndarray:
        """``floor_db`` from the levels and their ``smoothed_db``, computed once by the caller."""
        n, k = levels_db.size, self.smooth_frames
        silent = np.convolve(levels_db <= SILENCE_DB, np.ones(k), mode="full")[:n] > 0
        silent[: k - 1] = True  # spans reaching before the heard audio are not whole
        smoothed = np.where(silent, np.inf, smoothed_db)
        span = max(1, round(self.floor_s * SAMPLE_RATE / FRAME_HOP))
        padded = np.concatenate([np.full(span - 1, np.inf), smoothed])
        windows = np.lib.stride_tricks.sliding_window_view(padded, span)[n - inside :]
        return windows.min(axis=1) if inside else np.zeros(0)

    def voiced(self, levels_db: np.ndarray, inside: int) -> bool:
        """Whether enough of the window's frames rise ``margin_db`` above the tracked floor."""
        first = levels_db.size - inside
        smoothed = self.smoothed_db(levels_db)  # once: for the frames and for their floor
        floor = self._floor_db(levels_db, smoothed, inside)
        speech = (levels_db[first:] > SILENCE_DB) & (smoothed[first:] >= floor + self.margin_db)
        return _enough(speech, inside, self.min_voiced)

    def is_voiced(self, window: np.ndarray) -> bool:
        """The verdict on a 16 kHz window heard on its own (no audio before it)."""
        levels = frame_levels_db(window)
        return self.voiced(levels, levels.size)


@dataclass(frozen=True)
class EnergyVad:
    """A window is voiced when at least ``min_voiced`` of its frames have a speech-band level
    of ``threshold_db`` dBFS or more (full scale = 1.0). Depends on the microphone's gain:
    tune ``threshold_db`` to it, or use the default ``NoiseFloorVad``."""

    threshold_db: float = -45.0
    min_voiced: float = 0.1

    def __post_init__(self) -> None:
        _check_settings(self, {"min_voiced": SHARE, "threshold_db": VAD_THRESHOLD_DB})

    @property
    def history_s(self) -> float:
        """A fixed threshold needs no audio before the window."""
        return 0.0

    def voiced(self, levels_db: np.ndarray, inside: int) -> bool:
        """Whether enough of the window's frames reach ``threshold_db``."""
        frames = levels_db[levels_db.size - inside :]
        speech = (frames > SILENCE_DB) & (frames >= self.threshold_db)
        return _enough(speech, inside, self.min_voiced)

    def is_voiced(self, window: np.ndarray) -> bool:
        """The verdict on a 16 kHz window."""
        levels = frame_levels_db(window)
        return self.voiced(levels, levels.size)


GATES: dict[str, type[NoiseFloorVad] | type[EnergyVad]] = {
    "noise-floor": NoiseFloorVad,
    "energy": EnergyVad,
}
DEFAULT_GATE = "noise-floor"
# What a caller may pass as a gate (see the module doc).
GateSpec = VoiceGate | str | bool | None


def gate_class(name: str) -> type[NoiseFloorVad] | type[EnergyVad]:
    """The gate called ``name`` (case and ``_``/``-`` aside); ConfigError listing the names."""
    key = name.strip().lower().replace("_", "-")
    if key not in GATES:
        raise ConfigError(
            f"vad must be a gate name ({', '.join(GATES)}), got {name!r}; "
            "False or None for no gate"
        )
    return GATES[key]


def as_voice_gate(vad: object) -> VoiceGate | None:
    """The gate ``vad`` asks for (see the module doc): None for no gate; ConfigError, at the
    call, for anything that is no gate (a number, a list, an object without ``voiced``)."""
    if vad is None or vad is False:
        return None
    if vad is True:
        return GATES[DEFAULT_GATE]()
    if isinstance(vad, str):
        return gate_class(vad)()
    history_s = number(getattr(vad, "history_s", None))
    if callable(getattr(vad, "voiced", None)) and history_s is not None and 0 <= history_s < inf:
        return vad  # type: ignore[return-value]  # it has what a scorer asks of a gate
    raise ConfigError(
        f"vad must be a voice gate (NoiseFloorVad(), EnergyVad(), or an object with voiced() "
        f"and history_s), a gate name ({', '.join(GATES)}), True, False or None; "
        f"got {shown(vad)}"
    )
