"""Audio in: files and arrays -> float32 mono 16 kHz, with typed errors for anything unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .contract import SAMPLE_RATE
from .errors import AudioError, AudioFileError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
MAX_CHANNELS = 2  # mono or stereo; multichannel arrays are ambiguous and rejected


def to_mono_float32(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Convert any numeric array ([samples], [samples, channels] or [channels, samples]) to
    float32 mono at 16 kHz. Integer PCM is scaled to -1..1; channels are averaged."""
    if not isinstance(signal, np.ndarray):
        try:
            signal = np.asarray(signal)
        except Exception as exc:  # ragged lists and the like
            raise AudioError(f"signal is not array-like: {exc}") from None
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        if isinstance(sampling_rate, float) and sampling_rate.is_integer():
            sampling_rate = int(sampling_rate)
        else:
            raise AudioError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    if sampling_rate <= 0:
        raise AudioError(f"sampling_rate must be positive, got {sampling_rate}")
    x = _as_float(signal)
    x = _down_mix(x)
    if x.size == 0:
        raise AudioError("signal is empty")
    if not np.isfinite(x).all():
        raise AudioError("signal contains NaN or infinite samples")
    if sampling_rate != SAMPLE_RATE:
        x = soxr.resample(x, sampling_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_float(signal: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in -1..1; float -> float32; anything else is an AudioError."""
    if signal.dtype.kind in "iu":
        info = np.iinfo(signal.dtype)
        scale = max(abs(int(info.min)), int(info.max))
        offset = 0.0 if signal.dtype.kind == "i" else (int(info.max) + 1) / 2
        return ((signal.astype(np.float64) - offset) / scale).astype(np.float32)
    if signal.dtype.kind == "f":
        return signal.astype(np.float32, copy=False)
    raise AudioError(f"signal dtype {signal.dtype} is not integer PCM or float")


def _down_mix(x: np.ndarray) -> np.ndarray:
    """[samples] stays; [samples, ch] or [ch, samples] (the shorter axis is channels) -> mean."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"signal must be 1-D or 2-D (samples, channels), got shape {x.shape}")
    channel_axis = 1 if x.shape[1] <= x.shape[0] else 0
    channels = x.shape[channel_axis]
    if channels > MAX_CHANNELS:
        raise AudioError(
            f"signal has {channels} channels; mono or stereo expected (down-mix it first)"
        )
    return x.mean(axis=channel_axis, dtype=np.float32)


def read_audio(path: str | Path) -> np.ndarray:
    """Read an audio file as float32 mono 16 kHz. Raises AudioFileError for a missing,
    unreadable, truncated or non-audio file, AudioError for unusable content."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not readable as audio ({exc})") from None
    if data.size == 0:
        raise AudioFileError(f"{path}: contains no samples (empty or truncated)")
    try:
        return to_mono_float32(data, int(rate))
    except AudioError as exc:
        raise AudioFileError(f"{path}: {exc}") from None


def find_audio_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (walked recursively, sorted) into audio file paths."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(
                sorted(
                    f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file()
                )
            )
        else:
            found.append(p)
    return found
