"""Resampling to the model rate: soxr when it imports, else a numpy polyphase filter, so the
runtime needs nothing compiled but numpy. ``$EDGESER_RESAMPLER`` (soxr, numpy, auto) or the
``method`` argument selects one.

The numpy resampler is a rational-ratio polyphase FIR: a Kaiser-windowed sinc low-pass,
linear phase (no delay: output sample n is at input time n * rate_in / rate_out), passband
flat to 91.3 % of the lower Nyquist frequency and stopband from 100 % with 100 dB attenuation
(soxr HQ's band edges, so the two differ little even in the transition band).
It streams: blocks of any size give exactly the samples of a one-shot call.
(``benchmarks/resample.py`` measures it against soxr on speech.)
"""

from __future__ import annotations

import functools
import math
import os
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ConfigError

SOXR, NUMPY = "soxr", "numpy"
ENV_RESAMPLER = "EDGESER_RESAMPLER"
PASSBAND = 0.913  # share of the lower Nyquist frequency passed flat (soxr HQ's)
ATTENUATION_DB = 100.0


class Resampler(Protocol):
    """A streaming resampler: ``process`` blocks, then ``flush`` the last samples."""

    def process(self, x: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


def resolve_method(method: str | None = None) -> str:
    """``method``, else ``$EDGESER_RESAMPLER``, else soxr if it imports and numpy if not."""
    name = (method if method is not None else os.environ.get(ENV_RESAMPLER, "")).strip().lower()
    if name in ("", "auto"):
        try:
            import soxr  # noqa: F401
        except ImportError:
            return NUMPY
        return SOXR
    if name not in (SOXR, NUMPY):
        raise ConfigError(f"resampler must be soxr, numpy or auto, got {name!r}")
    return name


def resample(x: np.ndarray, rate_in: int, rate_out: int, method: str | None = None) -> np.ndarray:
    """Resample a whole mono float32 signal."""
    if resolve_method(method) == SOXR:
        import soxr

        return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32)
    stream = PolyphaseResampler(rate_in, rate_out)
    return np.concatenate([stream.process(x), stream.flush()])


def resample_stream(rate_in: int, rate_out: int, method: str | None = None) -> Resampler:
    """A streaming resampler of mono float32 blocks."""
    if resolve_method(method) == SOXR:
        return SoxrStream(rate_in, rate_out)
    return PolyphaseResampler(rate_in, rate_out)


class SoxrStream:
    """soxr's HQ stream behind the ``Resampler`` interface."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        import soxr

        self._soxr = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")

    def process(self, x: np.ndarray) -> np.ndarray:
        return self._soxr.resample_chunk(x)

    def flush(self) -> np.ndarray:
        return self._soxr.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


class PolyphaseResampler:
    """Streaming rational resampler by ``rate_out / rate_in`` (module doc): output sample n
    is sum_j h[r + up * j] * x[i - j] with i, r the quotient and remainder of
    (n * down + delay) / up."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        self._filters, self._delay = _polyphase_filters(rate_in, rate_out, self.up)
        self.taps = self._filters.shape[1]
        # buffer of input samples from index ``_base`` on; the signal is preceded by zeros
        self._buffer = np.zeros(self.taps, dtype=np.float64)
        self._base = -self.taps
        self._received = 0
        self._done = 0  # output samples delivered

    def process(self, x: np.ndarray) -> np.ndarray:
        """The output samples this block completes."""
        x = np.asarray(x, dtype=np.float64).ravel()
        self._buffer = np.concatenate([self._buffer, x])
        self._received += x.size
        # output n is complete when its newest input (n * down + delay) // up has arrived
        ready = -(-(self._received * self.up - self._delay) // self.down)
        return self._emit(max(ready, self._done))

    def flush(self) -> np.ndarray:
        """The remaining samples: samples in * up / down, rounded half up, in all (as soxr)."""
        total = (2 * self._received * self.up + self.down) // (2 * self.down)
        self._buffer = np.concatenate([self._buffer, np.zeros(self.taps + self.down + 1)])
        return self._emit(max(total, self._done))

    def _emit(self, end: int) -> np.ndarray:
        """Output samples ``_done`` .. ``end`` - 1, then forget inputs no later one needs."""
        out = np.zeros(end - self._done, dtype=np.float32)
        if out.size:
            windows = sliding_window_view(self._buffer, self.taps)  # windows[s] = x[s+base ...]
            for p in range(min(self.up, out.size)):
                t = (self._done + p) * self.down + self._delay
                first = t // self.up - self.taps + 1 - self._base
                count = len(range(p, out.size, self.up))
                rows = windows[first : first + self.down * (count - 1) + 1 : self.down]
                out[p :: self.up] = rows @ self._filters[t % self.up]
        self._done = end
        oldest = (end * self.down + self._delay) // self.up - self.taps + 1
        if oldest > self._base:
            self._buffer = self._buffer[oldest - self._base :]
            self._base = oldest
        return out


@functools.lru_cache(maxsize=8)
def _polyphase_filters(rate_in: int, rate_out: int, up: int) -> tuple[np.ndarray, int]:
    """The low-pass split into ``up`` phases, each reversed for a dot product with x[i-J+1..i]
    ([up, J]), and its delay in upsampled samples; designed once per rate pair (a resampler
    is made per file and per stream gap) and shared, read-only."""
    rate_up = rate_in * up
    nyquist = min(rate_in, rate_out) / 2
    width = (1 - PASSBAND) * nyquist
    cutoff = (1 + PASSBAND) / 2 * nyquist
    length = math.ceil((ATTENUATION_DB - 8) / (2.285 * 2 * math.pi * width / rate_up))
    length = length + 1 - length % 2  # odd: the centre tap sits on a sample
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    k = np.arange(length) - (length - 1) / 2
    h = 2 * cutoff / rate_up * np.sinc(2 * cutoff / rate_up * k) * np.kaiser(length, beta) * up
    taps = -(-length // up)
    padded = np.zeros(taps * up)
    padded[:length] = h
    phases = padded.reshape(taps, up).T  # phases[r, j] = h[r + up * j]
    filters = np.ascontiguousarray(phases[:, ::-1])
    filters.flags.writeable = False
    return filters, (length - 1) // 2
