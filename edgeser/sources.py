"""Audio sources for a Stream: a PortAudio input device, an audio file, or any iterable of blocks.

A source pushes raw blocks ([frames] or [frames, channels], any numeric dtype, at its
``sampling_rate``) into a ``BlockSink``. A ``live`` source must never wait: the sink drops and
counts what it cannot take. A non-live source (a file read as fast as it can be scored) waits.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from .audio import check_rate, read_blocks
from .contract import SAMPLE_RATE
from .errors import DeviceError

DEFAULT_BLOCK_S = 0.05


class BlockSink(Protocol):
    """Where a source delivers its audio (a Stream)."""

    def block(self, data: Any) -> None:
        """One block of audio; called on the source's thread."""
        ...

    def overflow(self) -> None:
        """The device lost input because it was not read in time."""
        ...

    def end(self, error: BaseException | None = None) -> None:
        """The source has no more audio (``error``: it broke off)."""
        ...


class AudioSource(Protocol):
    """What a Stream needs of a source."""

    sampling_rate: int
    live: bool

    def start(self, sink: BlockSink) -> None:
        """Begin delivering blocks to ``sink`` (returns at once)."""
        ...

    def stop(self) -> None:
        """Stop delivering blocks; idempotent."""
        ...


class BlockSource:
    """Blocks from any iterable at ``sampling_rate``, delivered on a feeder thread. With
    ``realtime`` each block is delivered when it would have been recorded, and the source is
    live (it never waits for the scorer, which then has to keep up or drop blocks)."""

    def __init__(self, blocks: Iterable[Any], sampling_rate: int, realtime: bool = False) -> None:
        self.sampling_rate = check_rate(sampling_rate)
        self.live = realtime
        self._blocks = blocks
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: BlockSink) -> None:
        """Start the feeder thread."""
        self._thread = threading.Thread(
            target=self._feed, args=(sink,), name="edgeser-source", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop feeding (the thread ends after the block in hand)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _feed(self, sink: BlockSink) -> None:
        """Deliver every block (paced in real time if asked), then tell the sink it ended."""
        start, frames = time.monotonic(), 0
        try:
            for block in self._blocks:
                if self._stopping.is_set():
                    return
                frames += frame_count(block)
                if self.live:
                    self._stopping.wait(
                        max(0.0, start + frames / self.sampling_rate - time.monotonic())
                    )
                sink.block(block)
        except Exception as exc:  # the iterable broke off: end the stream, with the reason
            sink.end(exc)
            return
        sink.end()


class FileSource(BlockSource):
    """An audio file read in blocks, as fast as it can be scored or (``realtime``) at the pace
    of a live recording. Opening raises AudioFileError for a missing or non-audio file."""

    def __init__(
        self, path: str | os.PathLike[str], realtime: bool = False, block_s: float = DEFAULT_BLOCK_S
    ) -> None:
        rate, blocks = read_blocks(path, block_s)
        super().__init__(blocks, rate, realtime)
        self.path = path


class DeviceSource:
    """A PortAudio input device (by index or name; None: the default input), one channel, at
    16 kHz when the device offers it, else at its default rate (44.1/48 kHz; the Stream
    resamples). Raises DeviceError when PortAudio or the device cannot be found."""

    live = True

    def __init__(self, device: int | str | None = None, block_s: float = DEFAULT_BLOCK_S) -> None:
        self._sd = _sounddevice()
        self.device = find_input_device(device)
        self.name = str(self._sd.query_devices(self.device)["name"])
        self.sampling_rate = self._pick_rate()
        self._block_frames = max(1, round(block_s * self.sampling_rate))
        self._stream: Any = None

    def start(self, sink: BlockSink) -> None:
        """Open and start the PortAudio input stream; its callback only copies and hands on."""

        def on_audio(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            if status.input_overflow:
                sink.overflow()
            sink.block(indata.copy())

        try:
            self._stream = self._sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self.sampling_rate,
                blocksize=self._block_frames,
                dtype="float32",
                callback=on_audio,
                finished_callback=sink.end,
            )
            self._stream.start()
        except self._sd.PortAudioError as exc:
            raise DeviceError(f"cannot open input device {self.name!r}: {exc}") from None

    def stop(self) -> None:
        """Stop and close the PortAudio stream."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def _pick_rate(self) -> int:
        """16 kHz if the device takes it (no resampling), else its default rate."""
        try:
            self._sd.check_input_settings(
                device=self.device, channels=1, samplerate=SAMPLE_RATE, dtype="float32"
            )
            return SAMPLE_RATE
        except self._sd.PortAudioError:
            return int(self._sd.query_devices(self.device)["default_samplerate"])


def input_devices() -> list[dict[str, Any]]:
    """PortAudio's input devices: index, name, host API, channels, default rate, is_default."""
    sd = _sounddevice()
    default = sd.default.device[0]
    hostapis = sd.query_hostapis()
    return [
        {
            "index": i,
            "name": d["name"],
            "hostapi": hostapis[d["hostapi"]]["name"],
            "channels": d["max_input_channels"],
            "default_rate": int(d["default_samplerate"]),
            "is_default": i == default,
        }
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


def find_input_device(device: int | str | None) -> int:
    """The index of an input device given by index, exact name or unique name fragment (None:
    the default input); DeviceError naming the available inputs when there is no such one."""
    devices = input_devices()
    if not devices:
        raise DeviceError("no audio input device found (PortAudio lists none)")
    listing = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
    if device is None:
        chosen = [d for d in devices if d["is_default"]] or devices[:1]
        return int(chosen[0]["index"])
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        if any(d["index"] == device for d in devices):
            return device
        raise DeviceError(f"no input device with index {device}; input devices: {listing}")
    exact = [d for d in devices if d["name"] == device]
    partial = [d for d in devices if device.lower() in d["name"].lower()]
    matches = exact or partial
    if len(matches) == 1:
        return int(matches[0]["index"])
    problem = "no" if not matches else "more than one"
    raise DeviceError(f"{problem} input device matches {device!r}; input devices: {listing}")


def _sounddevice() -> ModuleType:
    """sounddevice, imported on first use so that scoring files works without PortAudio."""
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing
        raise DeviceError(
            f"PortAudio is not available ({exc}); install it, e.g. apt install libportaudio2"
        ) from None
    return sounddevice


def frame_count(block: Any) -> int:
    """Frames in a block ([frames] or [frames, channels]); 0 for anything unusable."""
    shape = getattr(block, "shape", ())
    return int(shape[0]) if len(shape) in (1, 2) else 0
