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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .contract import SAMPLE_RATE
from .errors import ConfigError
from .levels import FRAME_HOP, SILENCE_DB, frame_levels_db


class VoiceGate(Protocol):
    """What a scorer asks of a voice-activity gate."""

    history_s: float  # seconds of audio before a window that the gate looks at

    def voiced(self, levels_db: np.ndarray, inside: int) -> bool:
        """Whether a window is speech, from the frame levels up to its end (``history_s``
        before it, where heard), the last ``inside`` of which lie in the window."""
        ...


def _check_share(min_voiced: float) -> None:
    """``min_voiced`` must be a share of frames in (0, 1]."""
    if not 0.0 < min_voiced <= 1.0:
        raise ConfigError(f"min_voiced must be in (0, 1], got {min_voiced}")


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
        _check_share(self.min_voiced)
        if not np.isfinite(self.margin_db) or self.margin_db < 0:
            raise ConfigError(f"margin_db must be a finite number >= 0, got {self.margin_db}")
        if not np.isfinite(self.floor_s) or self.floor_s <= 0:
            raise ConfigError(f"floor_s must be positive, got {self.floor_s}")
        if self.smooth_frames < 1:
            raise ConfigError(f"smooth_frames must be at least 1, got {self.smooth_frames}")

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
        _check_share(self.min_voiced)
        if not np.isfinite(self.threshold_db):
            raise ConfigError(f"threshold_db must be a finite number, got {self.threshold_db}")

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
