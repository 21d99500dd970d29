"""The accepted range of every number a user hands the runtime (flag, TOML key, Python argument).

One table, checked at the boundary, so that an absurd value (a 1e-5 s hop, an infinite or 1e6 s
window, NaN as a VAD threshold, 10,000 threads) fails at once with a ``ConfigError`` naming the
setting, instead of a traceback, a 100 GB allocation or a hang deep inside. numpy's numbers
(``np.float32(1.0)``, ``np.int64(2)``) count as the Python numbers they equal: ``number`` turns
them into those, and ``shown`` writes any value for a message as the user would have typed it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .contract import MAX_WINDOW_S, MIN_HOP_S
from .errors import ConfigError

MAX_THREADS = 256  # onnxruntime threads; far above any core count edgeser runs on


def number(value: object) -> int | float | None:
    """``value`` as a Python int (any integral number: int, np.int64) or float (np.float32...),
    or None when it is not a real number; a bool (Python's or numpy's) is not one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def shown(value: object) -> str:
    """``value`` for a message: a number as Python writes it (``1.0``, not ``np.float32(1.0)``),
    anything else by its repr."""
    as_number = number(value)
    return repr(value if as_number is None else as_number)


@dataclass(frozen=True)
class Range:
    """A closed range [low, high] of finite numbers (``low_open``: (low, high]), with its unit."""

    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.integer:
            return f"a whole number from {self.low:.0f} to {self.high:.0f}{unit}"
        left = "(" if self.low_open else "["
        return f"in {left}{self.low:g}, {self.high:g}]{unit}"

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a finite number (a numpy one too) inside the range."""
        value = number(value)
        if value is None or (self.integer and not isinstance(value, int)):
            return False
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.low_open else value >= self.low

    def check(self, name: str, value: object) -> float:
        """``value`` as a Python number (int for an integer range); ConfigError naming ``name``
        unless it is a finite number inside the range."""
        if not self.contains(value):
            raise ConfigError(f"{name} must be {self}, got {shown(value)}")
        as_number = number(value)
        assert as_number is not None  # contains() said so
        return as_number


THREADS = Range(1, MAX_THREADS, integer=True)
WINDOW_S = Range(0, MAX_WINDOW_S, "s", low_open=True)
HOP_S = Range(MIN_HOP_S, MAX_WINDOW_S, "s")
VAD_THRESHOLD_DB = Range(-120.0, 0.0, "dBFS")
SHARE = Range(0.0, 1.0, low_open=True)
MARGIN_DB = Range(0.0, 120.0, "dB")  # the noise-floor gate's margin above the floor
FLOOR_S = Range(0.0, 600.0, "s", low_open=True)  # ... and how far back it tracks the floor
SMOOTH_FRAMES = Range(1, 1000, "frames", integer=True)
SMOOTHING = Range(0.0, 1.0, low_open=True)
BLOCK_S = Range(0.001, 1.0, "s")
MAX_PENDING = Range(1, 100_000, "blocks", integer=True)
MAX_READINGS = Range(1, 1_000_000, "readings", integer=True)
WAIT_S = Range(0.0, 3600.0, "s", low_open=True)  # a device's watchdog and retry periods
DURATION_S = Range(0.0, 1e9, "s", low_open=True)
