"""Cost per hop of the runtime's streaming path: push one hop of audio into a ``Scorer`` (as a
``Stream`` does) and time until the reading of the window it completes is out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeser.contract import SAMPLE_RATE
from edgeser.model import Model
from edgeser.scoring import Scorer, WindowScorer


def hop_pusher(
    scorer: Scorer, audio: np.ndarray, window_s: float, hop_s: float
) -> Callable[[], None]:
    """Prime ``scorer`` with one window of ``audio``; return a function that pushes the next
    hop (cycling through ``audio``) and checks that it completed exactly one window."""
    window, hop = round(window_s * SAMPLE_RATE), round(hop_s * SAMPLE_RATE)
    scorer.push(audio[:window])
    position = [window]

    def push_next_hop() -> None:
        start = position[0] % (audio.size - hop)
        readings = scorer.push(audio[start : start + hop])
        if len(readings) != 1:
            raise RuntimeError(f"one hop gave {len(readings)} readings, expected 1")
        position[0] += hop

    return push_next_hop


def rescoring(model: Model, window_s: float, hop_s: float) -> WindowScorer:
    """A scorer that re-scores the whole window every hop, with no voice gate, whatever
    streaming graph the model ships."""
    return WindowScorer(model.score_window, window_s, hop_s, model.info.min_samples, None)
