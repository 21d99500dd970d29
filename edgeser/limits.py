"""The accepted range of every number a user hands the runtime (flag, TOML key, Python argument).

One table, checked at the boundary, so that an absurd value (a 1e-5 s hop, an infinite or 1e6 s
window, NaN as a VAD threshold, 10,000 threads) fails at once with a ``ConfigError`` naming the
setting, instead of a traceback, a 100 GB allocation or a hang deep inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .contract import MAX_WINDOW_S, MIN_HOP_S
from .errors import ConfigError

MAX_THREADS = 256  # onnxruntime threads; far above any core count edgeser runs on


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
            return f"a whole number from {self.low:g} to {self.high:g}{unit}"
        left = "(" if self.low_open else "["
        return f"in {left}{self.low:g}, {self.high:g}]{unit}"

    def contains(self, value: float) -> bool:
        """Whether ``value`` is a finite number inside the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.low_open else value >= self.low

    def check(self, name: str, value: float) -> None:
        """ConfigError naming ``name`` unless ``value`` is inside the range."""
        if not self.contains(value):
            raise ConfigError(f"{name} must be {self}, got {value!r}")


THREADS = Range(1, MAX_THREADS, integer=True)
WINDOW_S = Range(0, MAX_WINDOW_S, "s", low_open=True)
HOP_S = Range(MIN_HOP_S, MAX_WINDOW_S, "s")
VAD_THRESHOLD_DB = Range(-120.0, 0.0, "dBFS")
SHARE = Range(0.0, 1.0, low_open=True)
SMOOTHING = Range(0.0, 1.0, low_open=True)
BLOCK_S = Range(0.001, 1.0, "s")
MAX_PENDING = Range(1, 100_000, "blocks", integer=True)
DURATION_S = Range(0.0, 1e9, "s", low_open=True)
