"""Crop augmentation: gain, coloured or recorded noise at an SNR, band-limiting, speed, reverb.

An ``AugmentSpec`` is drawn once per crop when crops are planned and stored with it; applying
it with the crop's seed regenerates exactly the same signal, so teacher and student hear the
same audio and nothing needs to be saved but the description. numpy and soxr only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE

from .config import AugmentConfig

TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000
FILTER_ORDER = 4  # Butterworth magnitude response, applied zero-phase in the FFT domain


@dataclass(frozen=True)
class AugmentSpec:
    """The effects applied to one crop; the defaults mean 'no effect'."""

    speed: float = 1.0
    rt60_s: float = 0.0
    drr_db: float = 0.0
    snr_db: float | None = None
    noise_color: float = 0.0
    noise_file: str = ""  # content hash of a recorded noise file; "" = synthetic noise
    noise_path: str = ""  # where that file was found: a location hint, not part of the identity
    lowpass_hz: float = 0.0
    telephone: bool = False
    gain_db: float = 0.0

    def to_dict(self) -> dict:
        """The non-default fields (a clean crop is ``{}``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    def identity(self) -> dict:
        """What defines the signal: ``to_dict`` without location hints."""
        d = self.to_dict()
        d.pop("noise_path", None)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> AugmentSpec:
        return cls(**data)


class NoiseBank:
    """Recorded noise files by content hash, decoded on first use and kept in memory."""

    def __init__(self, files: dict[str, Path] | None = None):
        self.files = dict(files or {})
        self._decoded: dict[str, np.ndarray] = {}

    def load(self, digest: str, path_hint: str = "") -> np.ndarray:
        if digest not in self._decoded:
            path = self.files.get(digest) or Path(path_hint)
            self._decoded[digest] = read_audio(path)
        return self._decoded[digest]


def sample_augment(
    rng: np.random.Generator, cfg: AugmentConfig, noise: NoiseBank | None = None
) -> AugmentSpec:
    """Draw one crop's effects from the configured probabilities and ranges."""
    if not cfg.enabled:
        return AugmentSpec()

    def draw(p: float, lo_hi: list[float]) -> float | None:
        return round(float(rng.uniform(*lo_hi)), 3) if rng.random() < p else None

    spec: dict = {}
    if (speed := draw(cfg.p_speed, cfg.speed_range)) is not None:
        spec["speed"] = speed
    if (rt60 := draw(cfg.p_reverb, cfg.rt60_s_range)) is not None:
        spec.update(rt60_s=rt60, drr_db=round(float(rng.uniform(*cfg.drr_db_range)), 3))
    if (snr := draw(cfg.p_noise, cfg.snr_db_range)) is not None:
        spec["snr_db"] = snr
        if noise is not None and noise.files and rng.random() < cfg.p_noise_file:
            digest = sorted(noise.files)[int(rng.integers(len(noise.files)))]
            spec.update(noise_file=digest, noise_path=str(noise.files[digest]))
        else:
            spec["noise_color"] = round(float(rng.uniform(*cfg.noise_color_range)), 3)
    if rng.random() < cfg.p_band:
        if rng.random() < cfg.p_telephone:
            spec["telephone"] = True
        else:
            spec["lowpass_hz"] = round(float(rng.uniform(*cfg.lowpass_hz_range)), 1)
    if (gain := draw(cfg.p_gain, cfg.gain_db_range)) is not None:
        spec["gain_db"] = gain
    return AugmentSpec(**spec)


def source_span(length: int, spec: AugmentSpec) -> int:
    """Samples of source audio that one crop of ``length`` samples consumes at its speed."""
    return round(length * spec.speed)


def apply_augment(
    segment: np.ndarray, length: int, spec: AugmentSpec, seed: int, noise: NoiseBank | None = None
) -> np.ndarray:
    """Turn ``source_span`` samples of source audio into the ``length``-sample augmented crop."""
    rng = np.random.default_rng(seed)
    x = segment.astype(np.float64)
    if spec.speed != 1.0:  # played faster or slower: tempo and pitch change together
        x = soxr.resample(x, SAMPLE_RATE * spec.speed, SAMPLE_RATE, quality="HQ")
    x = _fit_length(x, length)
    if spec.rt60_s > 0:
        x = _reverberate(x, spec.rt60_s, spec.drr_db, rng)
    if spec.snr_db is not None:
        x = x + _noise_at_snr(x, spec, rng, noise)
    if spec.telephone:
        x = _telephone(x)
    elif spec.lowpass_hz > 0:
        x = _band_limit(x, 0.0, spec.lowpass_hz)
    if spec.gain_db:
        x = x * 10.0 ** (spec.gain_db / 20.0)
    return x.astype(np.float32)


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``length`` samples."""
    if len(x) >= length:
        return x[:length]
    return np.pad(x, (0, length - len(x)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def _reverberate(x: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room: a direct path plus an exponentially decaying noise tail
    (60 dB down after ``rt60`` seconds) at the given direct-to-reverberant ratio; RMS kept."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[0] = 0.0
    tail *= np.sqrt(1.0 / (np.sum(tail * tail) * 10.0 ** (drr_db / 10.0) + 1e-12))
    tail[0] = 1.0
    size = len(x) + n - 1
    nfft = 1 << (size - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(tail, nfft), nfft)[: len(x)]
    return y * (_rms(x) / (_rms(y) + 1e-12))


def _noise_at_snr(
    x: np.ndarray, spec: AugmentSpec, rng: np.random.Generator, noise: NoiseBank | None
) -> np.ndarray:
    """Recorded noise (random offset, looped) or 1/f^color noise, scaled to ``spec.snr_db``."""
    if spec.noise_file:
        source = (noise or NoiseBank()).load(spec.noise_file, spec.noise_path).astype(np.float64)
        start = int(rng.integers(len(source)))
        reps = -(-(start + len(x)) // len(source))
        n = np.tile(source, reps)[start : start + len(x)]
    else:
        white = np.fft.rfft(rng.standard_normal(len(x)))
        freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
        shape = np.zeros_like(freqs)
        shape[1:] = freqs[1:] ** (-spec.noise_color / 2.0)
        n = np.fft.irfft(white * shape, len(x))
    return n * (_rms(x) / (_rms(n) + 1e-12) / 10.0 ** (spec.snr_db / 20.0))


def _telephone(x: np.ndarray) -> np.ndarray:
    """A narrow-band channel: 300-3400 Hz, and through 8 kHz sampling (nothing above 4 kHz)."""
    narrow = soxr.resample(_band_limit(x, *TELEPHONE_BAND_HZ), SAMPLE_RATE, TELEPHONE_RATE)
    return _fit_length(soxr.resample(narrow, TELEPHONE_RATE, SAMPLE_RATE), len(x))


def _band_limit(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``low_hz`` 0 = low-pass) in the FFT domain."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    gain = 1.0 / np.sqrt(1.0 + (freqs / high_hz) ** (2 * FILTER_ORDER))
    if low_hz > 0:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1.0 + (low_hz / freqs) ** (2 * FILTER_ORDER))
    return np.fft.irfft(spectrum * gain, len(x))
