"""Audio in: files and arrays -> float32 mono 16 kHz, with typed errors for anything unusable."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .contract import SAMPLE_RATE
from .errors import AudioError, AudioFileError
from .headers import cut_short, declared_frames
from .levels import no_signal_reason
from .limits import number, shown
from .resample import resample, resample_stream

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
MAX_CHANNELS = 2  # mono or stereo; multichannel arrays are ambiguous and rejected
MIN_RATE, MAX_RATE = 4_000, 768_000  # Hz; the resampler's memory also stays bounded in here
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count when a header leaves it open (FLAC's 0)


def to_mono_float32(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Convert any numeric array ([samples], [samples, channels] or [channels, samples]) to
    float32 mono at 16 kHz. Integer PCM is scaled to -1..1; channels are averaged."""
    sampling_rate = check_rate(sampling_rate)
    x = as_mono_float32(signal)
    if sampling_rate != SAMPLE_RATE:
        x = resample(x, sampling_rate, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def check_rate(sampling_rate: object) -> int:
    """A sampling rate as a positive int (16000, 16000.0, np.int64(16000), np.float32(16000));
    0, negative, 44.1 or "16k" is an AudioError."""
    rate = number(sampling_rate)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if not isinstance(rate, int):
        raise AudioError(f"sampling_rate must be a positive integer, got {shown(sampling_rate)}")
    if rate <= 0:
        raise AudioError(f"sampling_rate must be positive, got {rate}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"sampling rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz: below it no "
            "speech band survives, above it no audio interface records"
        )
    return rate


def as_mono_float32(
    signal: object, channels_last: bool = False, pcm: tuple[float, float] | None = None
) -> np.ndarray:
    """Convert a numeric array to finite float32 mono at its own rate (no resampling).

    2-D input is down-mixed; its channel axis is the shorter one unless ``channels_last``
    says it is axis 1 (the sounddevice block layout, where a block may be shorter than its
    channel count). Integer PCM is scaled by ``pcm`` = (offset, scale) if given, else by
    ``pcm_scale`` of this array."""
    signal = as_array(signal)
    if pcm is None and channels_last and _wider_than_pcm(signal.dtype):
        raise AudioError(
            f"{signal.dtype} blocks: their PCM width cannot be told block by block; "
            "pass int16 or int32 blocks, or float blocks in -1..1"
        )
    if signal.size == 0:
        raise AudioError(f"signal is empty (shape {signal.shape})")
    x = _down_mix(_as_float(signal, pcm), channels_last)
    if not np.isfinite(x).all():
        raise AudioError("signal contains NaN or infinite samples (or values beyond float32)")
    return np.ascontiguousarray(x, dtype=np.float32)


def samples_first(signal: np.ndarray) -> np.ndarray:
    """A 1-D or 2-D array as a view with samples on axis 0 (the channel axis is the shorter
    one, as in ``as_mono_float32``), so that it can be converted block by block."""
    if signal.ndim not in (1, 2):
        _down_mix(signal)  # raises the AudioError that names the shape
    if signal.ndim == 2 and signal.size and signal.shape[1] > signal.shape[0]:
        signal = signal.T
    return signal


def as_array(signal: object) -> np.ndarray:
    """``signal`` as a numpy array (a list of Python ints becomes int64); AudioError if ragged."""
    if isinstance(signal, np.ndarray):
        return signal
    try:
        return np.asarray(signal)
    except Exception as exc:  # ragged lists and the like
        raise AudioError(f"signal is not array-like: {exc}") from None


# Where the container is wider than any PCM format (int64, Python ints), the PCM width is the
# narrowest of these that holds the values: the model's readings do not depend on the gain, so
# this never changes a reading, and values beyond 32 bits are refused.
PCM_WIDTHS = (16, 24, 32)


def pcm_scale(signal: np.ndarray) -> tuple[float, float]:
    """(offset, scale) mapping this integer array's PCM to -1..1: its dtype's range, or for
    int64 the narrowest PCM width in ``PCM_WIDTHS`` that holds its values."""
    if not _wider_than_pcm(signal.dtype):
        info = np.iinfo(signal.dtype)
        offset = 0.0 if signal.dtype.kind == "i" else (int(info.max) + 1) / 2
        return offset, float(max(abs(int(info.min)), int(info.max)))
    if signal.dtype.kind == "u":
        raise AudioError(
            f"signal dtype {signal.dtype} is wider than any PCM format; "
            "pass int16 or int32 PCM, or float samples in -1..1"
        )
    peak = max(abs(int(signal.min())), abs(int(signal.max()))) if signal.size else 0
    for bits in PCM_WIDTHS:
        if peak <= 2 ** (bits - 1):
            return 0.0, float(2 ** (bits - 1))
    raise AudioError(
        f"signal holds integers up to {peak}, beyond 32-bit PCM: pass int16 or int32 PCM "
        "(numpy arrays of that dtype), or float samples in -1..1"
    )


def require_scorable(signal: np.ndarray, min_samples: int) -> None:
    """Refuse 16 kHz mono audio that no model can score: shorter than the minimum, or with no
    signal in the speech band (digital silence, DC only, a click; see ``edgeser.levels``)."""
    require_length(signal.size, min_samples)
    reason = no_signal_reason(signal)
    if reason is not None:
        raise AudioError(reason)


def require_length(n_samples: int, min_samples: int) -> None:
    """Refuse a 16 kHz signal of ``n_samples`` shorter than ``min_samples``, naming both."""
    if n_samples < min_samples:
        raise AudioError(too_short(n_samples, min_samples))


def too_short(n_samples: int, min_samples: int) -> str:
    """The message for a 16 kHz signal of ``n_samples`` shorter than ``min_samples``."""
    return (
        f"signal is {n_samples / SAMPLE_RATE:.3f} s long; at least "
        f"{min_samples / SAMPLE_RATE:.3f} s ({min_samples} samples at {SAMPLE_RATE} Hz) is needed"
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


def _as_float(signal: np.ndarray, pcm: tuple[float, float] | None) -> np.ndarray:
    """Integer PCM -> float32 in -1..1; float -> float32; anything else is an AudioError."""
    if signal.dtype.kind in "iu":
        offset, scale = pcm_scale(signal) if pcm is None else pcm
        return ((signal.astype(np.float64) - offset) / scale).astype(np.float32)
    if signal.dtype.kind == "f":
        return signal.astype(np.float32, copy=False)
    raise AudioError(f"signal dtype {signal.dtype} is not integer PCM or float")


def _wider_than_pcm(dtype: np.dtype) -> bool:
    """Integers of more than 32 bits: a container, not a PCM format."""
    return dtype.kind in "iu" and dtype.itemsize > 4


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
    last block, for a file cut short: fewer frames than its header declares (WAV, RF64, W64,
    AIFF, FLAC, an MP3 with a Xing header), or an Ogg stream without its end."""
    path = as_path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    expected, cut = _declared_length(path)
    try:
        sound = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not readable as audio ({_reason(exc)})") from None
    if sound.samplerate < MIN_RATE:
        sound.close()
        raise AudioFileError(
            f"{path}: the header gives a sample rate of {sound.samplerate} Hz; speech audio "
            f"has at least {MIN_RATE} Hz (a corrupt or hand-made header?)"
        )
    if sound.frames != UNKNOWN_FRAMES:  # libsndfile's count: FLAC's or a Xing header's as is
        expected = max(expected or 0, sound.frames)
    whole = block_s is None and sound.frames != UNKNOWN_FRAMES
    block_frames = -1 if whole else max(1, round((block_s or 1.0) * sound.samplerate))
    return sound.samplerate, _blocks(path, sound, block_frames, expected, cut)


def _declared_length(path: Path) -> tuple[int | None, str | None]:
    """Open the file as the OS sees it (a permission problem is named, a FIFO refused
    without blocking): the frame count its header declares, if any, and why it is cut short
    if its container shows that without a count (``edgeser.headers``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot open ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AudioFileError(f"{path}: not a regular file (a FIFO, device or socket)")
        try:
            return declared_frames(file), cut_short(file)
        except OSError as exc:
            raise AudioFileError(f"{path}: cannot read ({exc.strerror})") from None


def _reason(exc: Exception) -> str:
    """libsndfile's reason for an error, without soundfile's prefix that names the file in
    Python's bytes form (``Error opening b'x.wav': ``); the message names the file already."""
    return getattr(exc, "error_string", None) or str(exc)


def _blocks(
    path: Path, sound: sf.SoundFile, block_frames: int, expected: int | None, cut: str | None
) -> Iterator[np.ndarray]:
    """Yield the blocks of an open file, closing it at the end; decoding errors and a file
    cut short (``expected`` frames not there, or ``cut``: why) are AudioFileErrors, raised
    after what was read."""
    read = 0
    with sound:
        while True:
            try:
                block = sound.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(
                    f"{path}: truncated or corrupt audio ({_reason(exc)})"
                ) from None
            if block.shape[0] == 0:
                break
            read += block.shape[0]
            yield block
            if block_frames < 0:
                break
    rate = sound.samplerate
    if expected is not None and read < expected:
        raise AudioFileError(
            f"{path}: truncated: the header declares {expected} frames "
            f"({expected / rate:.3f} s), the file holds {read} ({read / rate:.3f} s)"
        )
    if cut is not None:
        raise AudioFileError(f"{path}: truncated: {cut}; it holds {read / rate:.3f} s")


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
