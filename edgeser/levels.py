"""Signal levels: the speech-band level of short frames, whether a window carries any signal,
and the level at which a window is handed to the model.

Everything here is measured DC-free in the speech band (100 Hz - 4 kHz, which telephone audio
keeps too), so a DC offset, mains rumble below 100 Hz or hiss above 4 kHz is never mistaken
for a voice, and every measure scales with the input's gain (a level in dBFS, full scale 1.0).
"""

from __future__ import annotations

import numpy as np

from .contract import SAMPLE_RATE

FRAME = 320  # 20 ms frames ...
FRAME_HOP = 160  # ... every 10 ms, on one grid from the start of the signal
BAND_HZ = (100.0, 4000.0)  # the speech band
SILENCE_DB = -140.0  # a frame below this speech-band level carries no signal (below 24-bit LSB)
MIN_SIGNAL_S = 0.1  # a window carries a reading when this much of it carries signal
MIN_SIGNAL_FRAMES = round(MIN_SIGNAL_S * SAMPLE_RATE / FRAME_HOP)
# The model z-normalises with an epsilon of 1e-7 in the variance, so below about -50 dBFS its
# reading drifts with the level and below -100 dBFS it is a constant; float32 power overflows
# near 1e19. A window outside this RMS range (dBFS) is scaled into it before the model sees it.
MODEL_LEVEL_DB = (-40.0, 100.0)

_WINDOW = np.hanning(FRAME + 1)[:FRAME]  # periodic Hann: a DC component leaks into bin 1 only
_FREQS = np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)
_BAND = (BAND_HZ[0] <= _FREQS) & (BAND_HZ[1] >= _FREQS)
_POWER_SCALE = 2.0 / (FRAME * float(np.sum(_WINDOW**2)))  # -> mean square of in-band content


def frame_levels_db(samples: np.ndarray) -> np.ndarray:
    """Speech-band RMS level (dBFS) of each whole 20 ms frame every 10 ms of 16 kHz audio."""
    if samples.size < FRAME:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::FRAME_HOP]
    frames = frames.astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)  # DC-free
    spectrum = np.fft.rfft(frames * _WINDOW, axis=1)[:, _BAND]
    power = np.sum(spectrum.real**2 + spectrum.imag**2, axis=1) * _POWER_SCALE
    return 10.0 * np.log10(np.maximum(power, 1e-300))


def signal_frames(levels_db: np.ndarray) -> int:
    """How many frames carry any signal at all (above ``SILENCE_DB``)."""
    return int(np.count_nonzero(levels_db > SILENCE_DB))


ALL_ZEROS = "signal is all zeros (digital silence): there is no voice to score"
NO_SIGNAL = (
    f"no stretch of {MIN_SIGNAL_S:g} s carries sound in the speech band (100 Hz - 4 kHz, above "
    f"{SILENCE_DB:g} dBFS): it is silence, a DC offset, a click or numerically negligible; "
    "there is no voice to score"
)


def no_signal_reason(samples: np.ndarray) -> str | None:
    """Why a 16 kHz clip cannot carry a reading (None if it can): digital silence, DC only,
    or less than ``MIN_SIGNAL_S`` of sound in the speech band."""
    if not np.any(samples):
        return ALL_ZEROS
    if signal_frames(frame_levels_db(samples)) < MIN_SIGNAL_FRAMES:
        return NO_SIGNAL
    return None


def at_model_level(samples: np.ndarray) -> np.ndarray:
    """The window itself, or scaled so that its DC-free RMS level lies in ``MODEL_LEVEL_DB``
    (the model's readings do not depend on the gain inside that range)."""
    x = samples.astype(np.float64)
    rms = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    low, high = (10.0 ** (db / 20.0) for db in MODEL_LEVEL_DB)
    if rms == 0.0 or low <= rms <= high:
        return samples
    target = low if rms < low else high
    return (x * (target / rms)).astype(np.float32)


class FrameLevels:
    """Frame levels of a sample stream on one 10 ms grid from its start, computed once per
    frame as windows arrive in order (overlapping or not) and kept for ``keep_s`` seconds."""

    def __init__(self, keep_s: float) -> None:
        self._keep = int(np.ceil(keep_s * SAMPLE_RATE / FRAME_HOP)) + 16  # + smoothing spans
        self.reset()

    def reset(self) -> None:
        """Start a new signal (after a gap)."""
        self._pending = np.zeros(0, dtype=np.float32)  # samples from the next frame's start
        self._consumed = 0  # samples seen since the reset
        self._frames = 0  # frames computed since the reset
        self._levels = np.zeros(0)

    def window(self, start: int, samples: np.ndarray) -> tuple[np.ndarray, int]:
        """Levels of the kept frames up to the end of the window ``samples`` that starts at
        sample ``start``, and how many of the last of them lie inside the window."""
        new = samples[max(0, self._consumed - start) :]
        self._consumed = max(self._consumed, start + samples.size)
        buffer = np.concatenate([self._pending, new])
        levels = frame_levels_db(buffer)
        self._pending = buffer[levels.size * FRAME_HOP :]
        self._frames += levels.size
        self._levels = np.concatenate([self._levels, levels])[-self._keep :]
        first_inside = -(-start // FRAME_HOP)  # the first frame that starts inside the window
        inside = max(0, min(self._frames - first_inside, self._levels.size))
        return self._levels, inside
