"""Energy-based voice-activity gate: is there enough loud-enough audio in a window to score?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import SAMPLE_RATE


@dataclass(frozen=True)
class EnergyVad:
    """A window is voiced when at least ``min_voiced`` of its 20 ms frames have an RMS level of
    ``threshold_db`` dBFS or more (full scale = 1.0). Stateless, so a window gets the same
    verdict from a file and from a stream; tune ``threshold_db`` to the microphone's gain."""

    threshold_db: float = -45.0
    min_voiced: float = 0.1
    frame_s: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.min_voiced <= 1.0:
            raise ValueError(f"min_voiced must be in (0, 1], got {self.min_voiced}")
        if self.frame_s <= 0:
            raise ValueError(f"frame_s must be positive, got {self.frame_s}")

    def frame_levels_db(self, window: np.ndarray) -> np.ndarray:
        """RMS level in dBFS of each whole frame of a 16 kHz window (one frame if shorter)."""
        frame = max(1, round(self.frame_s * SAMPLE_RATE))
        n_frames = max(1, window.size // frame)
        frames = window[: n_frames * frame].reshape(n_frames, -1).astype(np.float64)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        return 20.0 * np.log10(np.maximum(rms, 1e-10))

    def is_voiced(self, window: np.ndarray) -> bool:
        """True when the window holds enough speech-level frames to be scored as speech."""
        if window.size == 0:
            return False
        loud = self.frame_levels_db(window) >= self.threshold_db
        return bool(loud.mean() >= self.min_voiced)
