"""Signal degradations of 16 kHz speech: rooms, noise, babble, telephone, codecs, gain.

One implementation for both uses: training-time augmentation (``augment.apply_augment``
composes them from an ``AugmentSpec``) and the robustness evaluation
(``benchmarks.robustness``). Every function is deterministic given its parameters and, where it
draws noise, the ``numpy`` generator it is handed. numpy, soxr and soundfile only.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from edgeser.contract import SAMPLE_RATE
from edgeser.errors import ConfigError

TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000
FILTER_ORDER = 4  # Butterworth magnitude response, applied zero-phase in the FFT domain
MU = 255  # G.711 mu-law
MU_LAW_STEPS = 127  # 8-bit code: sign and 7 bits of magnitude (G.711 has a +0 and a -0)
PINK = 1.0  # exponent of 1/f^x noise power that makes pink noise
# Lossy codecs libsndfile encodes and decodes in memory: name -> (format, subtype).
CODECS: dict[str, tuple[str, str]] = {
    "opus": ("OGG", "OPUS"),
    "vorbis": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``length`` samples."""
    if len(x) >= length:
        return x[:length]
    return np.pad(x, (0, length - len(x)))


def rms(x: np.ndarray) -> float:
    """Root mean square (0 for an empty signal)."""
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def synthetic_rir(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path plus an exponentially decaying
    noise tail (60 dB down after ``rt60`` seconds) whose energy is ``drr_db`` below the direct
    path's."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[0] = 0.0
    tail *= np.sqrt(1.0 / (np.sum(tail * tail) * 10.0 ** (drr_db / 10.0) + 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with ``synthetic_rir`` (the first ``len(x)`` samples); RMS kept."""
    rir = synthetic_rir(rt60, drr_db, rng)
    size = len(x) + len(rir) - 1
    nfft = 1 << (size - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
    return y * (rms(x) / (rms(y) + 1e-12))


def colored_noise(n: int, color: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise whose power falls as 1/f^``color`` (0 white, 1 pink, 2 brown)."""
    white = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    shape = np.zeros_like(freqs)
    shape[1:] = freqs[1:] ** (-color / 2.0)
    return np.fft.irfft(white * shape, n)


def scaled_to_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``x`` lies ``snr_db`` above it (RMS over the whole signal)."""
    return noise * (rms(x) / (rms(noise) + 1e-12) / 10.0 ** (snr_db / 20.0))


def looped(source: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``source`` from ``start`` on, wrapping round to its beginning."""
    reps = -(-(start + length) // len(source))
    return np.tile(source, reps)[start : start + length]


def pink_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus pink noise at ``snr_db``."""
    return x + scaled_to_snr(x, colored_noise(len(x), PINK, rng), snr_db)


def babble(
    x: np.ndarray, talkers: list[np.ndarray], snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """``x`` plus the other ``talkers``' speech (each from a random offset, looped, at equal
    level), their sum at ``snr_db`` below ``x``."""
    if not talkers:
        raise ConfigError("babble needs at least one other talker's speech")
    mix = np.zeros(len(x))
    for t in talkers:
        part = looped(np.asarray(t, np.float64), int(rng.integers(len(t))), len(x))
        mix += part / (rms(part) + 1e-12)
    return x + scaled_to_snr(x, mix, snr_db)


def far_field(
    x: np.ndarray, rt60: float, drr_db: float, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """A distant talker: reverberation at a low direct-to-reverberant ratio, then pink noise."""
    return pink_noise(reverberate(x, rt60, drr_db, rng), snr_db, rng)


def band_limit(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``low_hz`` 0 = low-pass) in the FFT domain."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    gain = 1.0 / np.sqrt(1.0 + (freqs / high_hz) ** (2 * FILTER_ORDER))
    if low_hz > 0:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1.0 + (low_hz / freqs) ** (2 * FILTER_ORDER))
    return np.fft.irfft(spectrum * gain, len(x))


def mu_law(x: np.ndarray) -> np.ndarray:
    """G.711-style mu-law round trip: clip to [-1, 1], compand, quantise to 8 bits, expand."""
    y = np.sign(x) * np.log1p(MU * np.minimum(np.abs(x), 1.0)) / np.log1p(MU)
    y = np.round(y * MU_LAW_STEPS) / MU_LAW_STEPS
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU


def telephone(x: np.ndarray, companding: bool = False) -> np.ndarray:
    """A narrow-band channel: 300-3400 Hz and 8 kHz sampling (nothing above 4 kHz), with the
    8-bit mu-law of a G.711 line when ``companding``."""
    narrow = soxr.resample(band_limit(x, *TELEPHONE_BAND_HZ), SAMPLE_RATE, TELEPHONE_RATE)
    if companding:
        narrow = mu_law(narrow)
    return fit_length(soxr.resample(narrow, TELEPHONE_RATE, SAMPLE_RATE), len(x))


# The highest compression level libsndfile takes for MP3 (1.0 is refused; 0.999 is the
# smallest file it writes).
MP3_MAX_LEVEL = 0.999


def codec(x: np.ndarray, name: str, level: float = 0.5) -> np.ndarray:
    """Encode with a lossy codec (``CODECS``) in memory and decode again; ``level`` is
    libsndfile's compression level, 0 (best quality) to 1 (smallest file)."""
    if name not in CODECS:
        raise ConfigError(f"unknown codec {name!r} (known: {', '.join(CODECS)})")
    if not 0.0 <= level <= 1.0:
        raise ConfigError(f"codec compression level must be in [0, 1], got {level}")
    fmt, subtype = CODECS[name]
    if subtype == "MPEG_LAYER_III":  # libsndfile refuses MP3 at exactly 1.0 ("Error set ...")
        level = min(level, MP3_MAX_LEVEL)
    buffer = io.BytesIO()
    clipped = np.clip(x, -1.0, 1.0).astype(np.float32)
    sf.write(buffer, clipped, SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float64")
    return fit_length(decoded, len(x))


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` played ``db`` decibels louder (negative: quieter)."""
    return x * 10.0 ** (db / 20.0)


def pcm16(x: np.ndarray) -> np.ndarray:
    """As a 16-bit file or sound card holds it: clipped to [-1, 1], quantised to 1/32767."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0) / 32767.0
