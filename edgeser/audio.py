"""Audio in: files and arrays -> float32 mono 16 kHz, with typed errors for anything unusable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .contract import SAMPLE_RATE
from .errors import AudioError, AudioFileError
from .resample import resample, resample_stream

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
MAX_CHANNELS = 2  # mono or stereo; multichannel arrays are ambiguous and rejected


def to_mono_float32(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Convert any numeric array ([samples], [samples, channels] or [channels, samples]) to
    float32 mono at 16 kHz. Integer PCM is scaled to -1..1; channels are averaged."""
    sampling_rate = check_rate(sampling_rate)
    x = as_mono_float32(signal)
    if sampling_rate != SAMPLE_RATE:
        x = resample(x, sampling_rate, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def check_rate(sampling_rate: object) -> int:
    """A sampling rate as a positive int; 0, negative, 44.1 or "16k" is an AudioError."""
    if isinstance(sampling_rate, float) and sampling_rate.is_integer():
        sampling_rate = int(sampling_rate)
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        raise AudioError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    if sampling_rate <= 0:
        raise AudioError(f"sampling_rate must be positive, got {sampling_rate}")
    return int(sampling_rate)


def as_mono_float32(signal: object, channels_last: bool = False) -> np.ndarray:
    """Convert a numeric array to finite float32 mono at its own rate (no resampling).

    2-D input is down-mixed; its channel axis is the shorter one unless ``channels_last``
    says it is axis 1 (the sounddevice block layout, where a block may be shorter than its
    channel count)."""
    if not isinstance(signal, np.ndarray):
        try:
            signal = np.asarray(signal)
        except Exception as exc:  # ragged lists and the like
            raise AudioError(f"signal is not array-like: {exc}") from None
    x = _down_mix(_as_float(signal), channels_last)
    if x.size == 0:
        raise AudioError("signal is empty")
    if not np.isfinite(x).all():
        raise AudioError("signal contains NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32)


ALL_ZEROS = "signal is all zeros (digital silence): there is no voice to score"


def require_scorable(signal: np.ndarray, min_samples: int) -> None:
    """Refuse 16 kHz mono audio that no model can score: shorter than the minimum, or all zeros."""
    require_length(signal.size, min_samples)
    if not np.any(signal):
        raise AudioError(ALL_ZEROS)


def require_length(n_samples: int, min_samples: int) -> None:
    """Refuse a 16 kHz signal of ``n_samples`` shorter than ``min_samples``, naming both."""
    if n_samples < min_samples:
        raise AudioError(
            f"signal is {n_samples / SAMPLE_RATE:.3f} s long; at least "
            f"{min_samples / SAMPLE_RATE:.3f} s ({min_samples} samples at {SAMPLE_RATE} Hz) "
            "is needed"
        )


class StreamingResampler:
    """Resamples consecutive blocks of mono float32 audio to 16 kHz as if they were one signal
    (soxr's stream, or the numpy fallback's, gives the same samples as a one-shot resample);
    a pass-through at 16 kHz."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self.reset()

    def reset(self) -> None:
        """Start a new signal (after a gap)."""
        self._stream = None if self.rate == SAMPLE_RATE else resample_stream(self.rate, SAMPLE_RATE)

    def process(self, x: np.ndarray) -> np.ndarray:
        """The 16 kHz samples this block yields (some may come with the next block)."""
        return x if self._stream is None else self._stream.process(x)

    def flush(self) -> np.ndarray:
        """The last samples, at the end of the signal."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.flush()


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


def _down_mix(x: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """[samples] stays; [samples, ch] or [ch, samples] (the shorter axis is channels, or axis 1
    when ``channels_last``) -> mean over channels."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"signal must be 1-D or 2-D (samples, channels), got shape {x.shape}")
    channel_axis = 1 if channels_last or x.shape[1] <= x.shape[0] else 0
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
    rate, blocks = read_blocks(path, block_s=None)
    chunks = list(blocks)
    if not chunks:
        raise AudioFileError(f"{path}: contains no samples (empty or truncated)")
    try:
        return to_mono_float32(np.concatenate(chunks), rate)
    except AudioError as exc:
        raise AudioFileError(f"{path}: {exc}") from None


def read_blocks(path: str | Path, block_s: float | None = 1.0) -> tuple[int, Iterator[np.ndarray]]:
    """Open an audio file for reading in blocks of ``block_s`` seconds (None: one block).

    Returns the file's sample rate and an iterator of float32 [frames, channels] blocks, so a
    long file is never held in memory whole. Opening raises AudioFileError at once for a
    missing, unreadable or non-audio file; a decoding error mid-file (a truncated FLAC, say)
    raises AudioFileError from the iterator."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    try:
        sound = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not readable as audio ({exc})") from None
    block_frames = -1 if block_s is None else max(1, round(block_s * sound.samplerate))
    return sound.samplerate, _blocks(path, sound, block_frames)


def _blocks(path: Path, sound: sf.SoundFile, block_frames: int) -> Iterator[np.ndarray]:
    """Yield the blocks of an open file, closing it at the end; decoding errors are typed."""
    with sound:
        while True:
            try:
                block = sound.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(f"{path}: truncated or corrupt audio ({exc})") from None
            if block.shape[0] == 0:
                return
            yield block
            if block_frames < 0:
                return


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
