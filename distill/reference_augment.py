"""Spectral training augmentation of the reference teacher (batched torch, per-item random).

Waveform effects (gain, noise, band-limiting, speed, reverb) come from ``augment`` (the
distillation crops' own); these two act on the teacher's spectrogram: a random spectral tilt
(microphone and channel colouring) and SpecAugment-style time and frequency masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .student import SAMPLE_RATE


@dataclass
class SpectralAugmentConfig:
    """Probability and range of the tilt; number and maximum width of the masks (0: none)."""

    p_tilt: float = 0.5
    tilt_db_per_octave_range: list[float] = field(default_factory=lambda: [-3.0, 3.0])
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bands: int = 12


def tilt_spectrum(
    power: torch.Tensor, cfg: SpectralAugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """Multiply chosen items of a power spectrogram [B, F, frames] by a gain that rises or falls
    a random number of dB per octave around 1 kHz."""
    b, n_bins = power.shape[0], power.shape[1]
    octaves = torch.log2(torch.linspace(0, SAMPLE_RATE / 2, n_bins).clamp(min=50.0) / 1000.0)
    lo, hi = cfg.tilt_db_per_octave_range
    slope = lo + (hi - lo) * torch.rand(b, generator=gen)
    slope = slope * (torch.rand(b, generator=gen) < cfg.p_tilt)
    return power * (10 ** (slope[:, None] * octaves[None, :] / 10))[:, :, None]


def mask_spectrogram(
    log_mel: torch.Tensor, frames: torch.Tensor, cfg: SpectralAugmentConfig, gen: torch.Generator
) -> torch.Tensor:
    """SpecAugment: set random time spans and mel bands of [B, mels, frames] to each item's
    mean over its valid frames."""
    b, n_mels, n_frames = log_mel.shape
    steps, bands = torch.arange(n_frames), torch.arange(n_mels)
    valid = (steps < frames[:, None]).float()[:, None, :]
    mean = (log_mel * valid).sum((1, 2), keepdim=True) / (valid.sum(2, keepdim=True) * n_mels)
    mean = mean.expand_as(log_mel)
    out = log_mel
    for _ in range(cfg.time_masks):
        width = (torch.rand(b, generator=gen) * (cfg.time_mask_frames + 1)).long()
        start = (torch.rand(b, generator=gen) * (frames - width).clamp(min=1)).long()
        hit = (steps >= start[:, None]) & (steps < (start + width)[:, None])
        out = torch.where(hit[:, None, :], mean, out)
    for _ in range(cfg.freq_masks):
        width = (torch.rand(b, generator=gen) * (cfg.freq_mask_bands + 1)).long()
        start = (torch.rand(b, generator=gen) * (n_mels - width)).long()
        hit = (bands >= start[:, None]) & (bands < (start + width)[:, None])
        out = torch.where(hit[:, :, None], mean, out)
    return out
