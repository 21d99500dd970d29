"""Checks of an exported graph against its source: fp32 vs torch, int8 vs fp32, and latency.

Importable on their own so benchmarks/ can reuse them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from edgeser.distill.metrics import ccc
from edgeser.distill.student import Wav2Small

from edgeser.contract import INPUT_NAME, LABELS, MIN_SAMPLES, SAMPLE_RATE

from .config import ExportError

QUICK_LENGTHS = (MIN_SAMPLES, SAMPLE_RATE + 7)  # every export; --check runs FULL_LENGTHS
FULL_LENGTHS = (
    MIN_SAMPLES,
    MIN_SAMPLES + 1,
    SAMPLE_RATE + 7,
    3 * SAMPLE_RATE,
    10 * SAMPLE_RATE + 13,
    30 * SAMPLE_RATE,
)
BATCH_SIZES = (1, 8)


class ParityError(ExportError):
    """An exported graph strays too far from its source; nothing is written."""


def session(model: onnx.ModelProto | bytes | str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session with ``threads`` intra-op threads, from a graph or a file."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def probe_signals(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    """[batch, samples] float32 signals with speech-like variety: tones, noise, loudness."""
    rng = np.random.default_rng((seed, batch, samples))
    t = np.arange(samples) / SAMPLE_RATE
    f0 = rng.uniform(80, 400, (batch, 1))
    tone = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6, (batch, 1)) * t)
    noise = rng.standard_normal((batch, samples)) * rng.uniform(0.01, 1.0, (batch, 1))
    gain = 10 ** rng.uniform(-2.5, -0.3, (batch, 1))
    return (gain * (envelope * tone + noise) / 2).astype(np.float32)


def fp32_max_abs_diff(
    model: Wav2Small,
    fp32: ort.InferenceSession,
    lengths: Sequence[int] = QUICK_LENGTHS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    scaled: bool = False,
) -> float:
    """Largest |onnxruntime - torch| over both outputs, all lengths and batch sizes; with
    ``scaled``, each output's difference is divided by max(1, its largest |torch| value), so
    an embedding of large magnitude is held to float32's relative precision."""
    worst = 0.0
    model.eval()
    for batch in batch_sizes:
        for samples in lengths:
            signal = probe_signals(batch, samples)
            with torch.no_grad():
                expected = [t.numpy() for t in model(torch.from_numpy(signal))]
            got = fp32.run(None, {INPUT_NAME: signal})
            for g, e in zip(got, expected, strict=True):
                scale = max(1.0, float(np.abs(e).max())) if scaled else 1.0
                worst = max(worst, float(np.abs(g - e).max()) / scale)
    return worst


def adv_per_clip(sess: ort.InferenceSession, clips: Sequence[np.ndarray]) -> np.ndarray:
    """[clips, 3] A/D/V, one clip per run (clips may differ in length)."""
    return np.concatenate([sess.run(None, {INPUT_NAME: c[None, :]})[0] for c in clips])


@dataclass(frozen=True)
class Int8Parity:
    """How closely int8 readings follow fp32 ones on held-out audio, per dimension."""

    ccc: dict[str, float]
    max_abs_diff: float
    fp32_std: dict[str, float]  # how much the fp32 readings vary: CCC is relative to this


def int8_parity(
    fp32: ort.InferenceSession, int8: ort.InferenceSession, clips: Sequence[np.ndarray]
) -> Int8Parity:
    """CCC and largest difference of the int8 readings against the fp32 ones on ``clips``."""
    reference = adv_per_clip(fp32, clips)
    if float(reference.std(axis=0).min()) < 1e-6:
        raise ParityError(
            "fp32 readings do not vary over the held-out crops, so int8 parity cannot be "
            "measured: use more varied calibration audio"
        )
    readings = adv_per_clip(int8, clips)
    return Int8Parity(
        ccc=dict(zip(LABELS, map(float, ccc(readings, reference)), strict=True)),
        max_abs_diff=float(np.abs(readings - reference).max()),
        fp32_std=dict(zip(LABELS, map(float, reference.std(axis=0)), strict=True)),
    )


def window_latency_ms(
    sess: ort.InferenceSession, window_s: float = 3.0, runs: int = 200, warmup: int = 20
) -> float:
    """Median milliseconds to score one window of ``window_s`` seconds (batch 1)."""
    signal = probe_signals(1, int(window_s * SAMPLE_RATE))
    feed = {INPUT_NAME: signal}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)
