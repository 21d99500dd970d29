"""Window scoring: cut 16 kHz audio into windows every hop and turn each into a Reading.

``Scorer`` is the small interface a ``Stream`` and ``Model.score_file`` drive; ``WindowScorer``
re-scores the whole window at every hop. A model with an incremental (streaming-native) graph
can provide its own ``Scorer`` instead, and both callers keep working unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from .audio import too_short
from .contract import SAMPLE_RATE
from .levels import MIN_SIGNAL_FRAMES, NO_SIGNAL, FrameLevels, signal_frames
from .readings import Reading
from .vad import GateSpec, as_voice_gate

ScoreWindow = Callable[[np.ndarray, float], Reading]


class Scorer(Protocol):
    """Turns pushed 16 kHz mono float32 samples into readings, one per completed window."""

    hop_s: float  # a reading comes every hop_s seconds of audio

    def push(self, samples: np.ndarray) -> list[Reading]:
        """Add samples; return the readings of the windows they complete."""
        ...

    def skip(self, samples: np.ndarray) -> int:
        """Add samples without scoring the windows they complete (a stream that fell behind);
        return how many were skipped."""
        ...

    def flush(self) -> list[Reading]:
        """At the end of the audio: the reading of the not yet covered tail, if any."""
        ...

    def reset(self, start_s: float = 0.0) -> None:
        """Forget all audio (after a gap); the next sample is at ``start_s`` seconds."""
        ...

    def unscorable(self) -> str | None:
        """At the end of the audio: why none of it could be scored, or None."""
        ...


class SlidingWindows:
    """Cuts a sample stream into windows of ``window`` samples ending every ``hop`` samples
    (at window, window + hop, ...), in a preallocated buffer that is compacted, not regrown."""

    def __init__(self, window: int, hop: int) -> None:
        if not 0 < hop <= window:
            raise ValueError(f"window {window} / hop {hop} samples are not 0 < hop <= window")
        self.window, self.hop = window, hop
        self._buf = np.zeros(2 * (window + hop), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all samples."""
        self._fill = 0  # valid samples at the start of _buf
        self.total = 0  # samples pushed since the reset
        self._next_end = self.window  # where (in samples since the reset) the next window ends

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; return (start sample, window copy) for each window they complete."""
        done: list[tuple[int, np.ndarray]] = []
        for i in range(0, samples.size, self.hop):  # a chunk <= hop completes <= 1 window
            window = self._append(samples[i : i + self.hop])
            if window is not None:
                done.append(window)
        return done

    def flush(self) -> tuple[int, np.ndarray] | None:
        """The window over the tail no window has reached yet: all samples when no window was
        complete (shorter than a window), else the last ``window`` samples; None if covered."""
        if self.total == 0:
            return None
        if self._next_end == self.window:  # no full window yet, and so never compacted
            return 0, self._buf[: self._fill].copy()
        if self._next_end - self.hop >= self.total:
            return None
        return self.total - self.window, self._buf[self._fill - self.window : self._fill].copy()

    def _append(self, chunk: np.ndarray) -> tuple[int, np.ndarray] | None:
        """Append at most ``hop`` samples and cut the window they complete, if any."""
        n = chunk.size
        if self._fill + n > self._buf.size:  # keep the last window: all the next one can need
            keep = min(self._fill, self.window)
            self._buf[:keep] = self._buf[self._fill - keep : self._fill]
            self._fill = keep
        self._buf[self._fill : self._fill + n] = chunk
        self._fill += n
        self.total += n
        if self.total < self._next_end:
            return None
        end = self._fill - (self.total - self._next_end)
        start_sample = self._next_end - self.window
        self._next_end += self.hop
        return start_sample, self._buf[end - self.window : end].copy()


class WindowScorer:
    """The default Scorer: every hop, gate the last window and score it whole. A window that
    carries no signal (digital silence, DC only: see ``edgeser.levels``) is never scored, with
    or without a voice gate."""

    def __init__(
        self,
        score_window: ScoreWindow,
        window_s: float,
        hop_s: float,
        min_samples: int,
        vad: GateSpec = None,
    ) -> None:
        vad = as_voice_gate(vad)  # a name, True/False: see edgeser.vad; ConfigError if no gate
        self._score_window = score_window
        self._windows = SlidingWindows(round(window_s * SAMPLE_RATE), round(hop_s * SAMPLE_RATE))
        self._levels = FrameLevels(window_s + (vad.history_s if vad is not None else 0.0))
        self.hop_s = hop_s
        self._min_samples = min_samples
        self._vad = vad
        self._start_s = 0.0
        self.heard_samples = 0  # samples pushed or skipped since creation (resets included)
        self.heard_signal = False  # whether any window so far carried signal

    def push(self, samples: np.ndarray) -> list[Reading]:
        """Add samples; return the readings of the windows they complete."""
        self.heard_samples += samples.size
        return [self._read(start, window) for start, window in self._windows.push(samples)]

    def skip(self, samples: np.ndarray) -> int:
        """Add samples; count, but do not score, the windows they complete (the gate still
        hears them, so its noise floor stays that of the audio)."""
        self.heard_samples += samples.size
        windows = self._windows.push(samples)
        for start, window in windows:
            self._levels.window(start, window)
        return len(windows)

    def flush(self) -> list[Reading]:
        """The reading of the uncovered tail (if at least the model's minimum length)."""
        tail = self._windows.flush()
        if tail is None or tail[1].size < self._min_samples:
            return []
        return [self._read(*tail)]

    def reset(self, start_s: float = 0.0) -> None:
        """Forget all audio; the next sample is at ``start_s`` seconds."""
        self._windows.reset()
        self._levels.reset()
        self._start_s = start_s

    def unscorable(self) -> str | None:
        """At the end of the audio: why none of it could be scored (too short, or no window
        carried signal), or None."""
        if self.heard_samples < self._min_samples:
            return too_short(self.heard_samples, self._min_samples)
        if not self.heard_signal:
            return NO_SIGNAL
        return None

    def _gate(self, start: int, window: np.ndarray) -> bool:
        """Whether the window is to be scored: it carries signal and the gate hears speech."""
        levels, inside = self._levels.window(start, window)
        if signal_frames(levels[levels.size - inside :]) < MIN_SIGNAL_FRAMES:
            return False
        self.heard_signal = True
        return self._vad is None or self._vad.voiced(levels, inside)

    def _read(self, start: int, window: np.ndarray) -> Reading:
        """One window -> its reading (unvoiced and unscored when the gate finds no speech)."""
        start_s = self._start_s + start / SAMPLE_RATE
        if not self._gate(start, window):
            return Reading.unvoiced(start_s, start_s + window.size / SAMPLE_RATE)
        return self._score_window(window, start_s)
