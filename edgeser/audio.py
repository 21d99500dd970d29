"""Audio in: files and arrays -> float32 mono 16 kHz, with typed errors for anything unusable."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .contract import SAMPLE_RATE
from .errors import AudioError, AudioFileError
from .headers import declared_frames

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
MAX_CHANNELS = 2  # mono or stereo; multichannel arrays are ambiguous and rejected
MIN_FILE_RATE = 4000  # below any speech recording's rate: a header saying less is wrong


def to_mono_float32(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Convert any numeric array ([samples], [samples, channels] or [channels, samples]) to
    float32 mono at 16 kHz. Integer PCM is scaled to -1..1; channels are averaged."""
    sampling_rate = check_rate(sampling_rate)
    x = as_mono_float32(signal)
    if sampling_rate != SAMPLE_RATE:
        x = soxr.resample(x, sampling_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
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
    if signal.size == 0:
        raise AudioError(f"signal is empty (shape {signal.shape})")
    x = _down_mix(_as_float(signal), channels_last)
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
    (soxr's stream gives the same samples as a one-shot resample); a pass-through at 16 kHz."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self.reset()

    def reset(self) -> None:
        """Start a new signal (after a gap)."""
        self._soxr = (
            None
            if self.rate == SAMPLE_RATE
            else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def process(self, x: np.ndarray) -> np.ndarray:
        """The 16 kHz samples this block yields (some may come with the next block)."""
        return x if self._soxr is None else self._soxr.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """The last samples, at the end of the signal."""
        if self._soxr is None:
            return np.zeros(0, dtype=np.float32)
        return self._soxr.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


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
    mixed = x.mean(axis=channel_axis, dtype=np.float32)
    if not mixed.any() and x.any():
        raise AudioError(
            "the channels cancel out when averaged to mono (one is the other inverted, L = -R); "
            "pass one channel, e.g. signal[:, 0]"
        )
    return mixed


def read_audio(path: str | bytes | os.PathLike[str]) -> np.ndarray:
    """Read an audio file as float32 mono 16 kHz. Raises AudioFileError for a missing,
    unreadable, truncated or non-audio file, AudioError for unusable content."""
    path = as_path(path)
    rate, blocks = read_blocks(path, block_s=None)
    chunks = list(blocks)
    if not chunks:
        raise AudioFileError(f"{path}: contains no samples (empty or truncated)")
    try:
        return to_mono_float32(np.concatenate(chunks), rate)
    except AudioError as exc:
        raise AudioFileError(f"{path}: {exc}") from None


def as_path(path: str | bytes | os.PathLike[Any]) -> Path:
    """A path given as str, bytes or path object (POSIX names are bytes: one that is not
    UTF-8 is kept, byte for byte, in the str's surrogate escapes)."""
    return Path(os.fsdecode(path))


def read_blocks(
    path: str | bytes | os.PathLike[Any], block_s: float | None = 1.0
) -> tuple[int, Iterator[np.ndarray]]:
    """Open an audio file for reading in blocks of ``block_s`` seconds (None: one block).

    Returns the file's sample rate and an iterator of float32 [frames, channels] blocks, so a
    long file is never held in memory whole. Opening raises AudioFileError at once for a
    missing, unreadable, non-regular (a FIFO) or non-audio file, or an implausible rate; the
    iterator raises it for a decoding error mid-file (a truncated FLAC, say) and, after the
    last block, for a WAV/AIFF with fewer frames than its header declares."""
    path = as_path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    expected = _declared_frames(path)
    try:
        sound = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not readable as audio ({exc})") from None
    if sound.samplerate < MIN_FILE_RATE:
        sound.close()
        raise AudioFileError(
            f"{path}: the header gives a sample rate of {sound.samplerate} Hz; speech audio "
            f"has at least {MIN_FILE_RATE} Hz (a corrupt or hand-made header?)"
        )
    block_frames = -1 if block_s is None else max(1, round(block_s * sound.samplerate))
    return sound.samplerate, _blocks(path, sound, block_frames, expected)


def _declared_frames(path: Path) -> int | None:
    """Open the file as the OS sees it (a permission problem is named, a FIFO refused
    without blocking) and return the frame count its header declares, if any."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot open ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AudioFileError(f"{path}: not a regular file (a FIFO, device or socket)")
        try:
            return declared_frames(file)
        except OSError as exc:
            raise AudioFileError(f"{path}: cannot read ({exc.strerror})") from None


def _blocks(
    path: Path, sound: sf.SoundFile, block_frames: int, expected: int | None
) -> Iterator[np.ndarray]:
    """Yield the blocks of an open file, closing it at the end; decoding errors and a file
    shorter than its header declares are AudioFileErrors (raised after what was read)."""
    read = 0
    with sound:
        while True:
            try:
                block = sound.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(f"{path}: truncated or corrupt audio ({exc})") from None
            if block.shape[0] == 0:
                break
            read += block.shape[0]
            yield block
            if block_frames < 0:
                break
    if expected is not None and read < expected:
        rate = sound.samplerate
        raise AudioFileError(
            f"{path}: truncated: the header declares {expected} frames "
            f"({expected / rate:.3f} s), the file holds {read} ({read / rate:.3f} s)"
        )


def find_audio_files(
    paths: list[str | Path], on_error: Callable[[AudioFileError], None] | None = None
) -> list[Path]:
    """Expand files and folders (walked recursively, sorted) into audio file paths. A folder
    that cannot be read is an AudioFileError, raised or, with ``on_error``, handed to it."""
    found: list[Path] = []
    for p in map(as_path, paths):
        if p.is_dir():
            found.extend(sorted(_audio_files_under(p, on_error)))
        else:
            found.append(p)
    return found


def _audio_files_under(
    folder: Path, on_error: Callable[[AudioFileError], None] | None
) -> Iterator[Path]:
    """The audio files under a folder, walked recursively; unreadable sub-folders reported."""

    def failed(exc: OSError) -> None:
        error = AudioFileError(f"{exc.filename}: cannot read folder ({exc.strerror})")
        if on_error is None:
            raise error
        on_error(error)

    for root, _, names in os.walk(folder, onerror=failed):
        for name in names:
            file = Path(root, name)
            if file.suffix.lower() in AUDIO_SUFFIXES and file.is_file():
                yield file
