"""Compute per call, counted rather than timed: multiply-accumulates of a torch forward pass
(convolutions and matrix products, via ``torch.utils.flop_counter``), so ratios do not depend
on the load of a shared machine."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(fn: Callable[[], object]) -> int:
    """Multiply-accumulates of the conv and matmul ops ``fn`` runs (flops / 2). Modules that
    ``fn`` runs under ``torch.inference_mode`` need ``requires_grad_(False)`` first (the
    counter's module tracker cannot hook parameters that require grad there)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2
