"""Audio sources for a Stream: a PortAudio input device, an audio file, or any iterable of blocks.

A source pushes raw blocks ([frames] or [frames, channels], any numeric dtype, at its
``sampling_rate``) into a ``BlockSink``. A ``live`` source must never wait: the sink drops and
counts what it cannot take. A non-live source (a file read as fast as it can be scored) waits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from . import capture, limits
from .audio import check_rate, read_blocks
from .capture import HEADER, OVERFLOW, READY
from .errors import AudioError, DeviceError

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_S = 0.05
OPEN_TIMEOUT_S = 10.0  # for the capture process to open the device (a Pi imports slowly)
# The capture process runs capture.py as a script, without importing the edgeser package
# (onnxruntime and all): it needs only sounddevice and numpy.
_CAPTURE = (
    sys.executable,
    "-c",
    "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')",
    capture.__file__,
)


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

    def reconnected(self, lost_frames: int) -> None:
        """A lost device is back; about ``lost_frames`` frames were not heard meanwhile."""
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
        """Deliver every block (paced in real time if asked), then tell the sink it ended;
        however the iterable ends (even by SystemExit or KeyboardInterrupt), the sink hears."""
        start, frames = time.monotonic(), 0
        error: BaseException | None = None
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
        except BaseException as exc:  # the iterable broke off: end the stream, with the reason
            error = exc
        finally:
            sink.end(error)


class FileSource(BlockSource):
    """An audio file read in blocks, as fast as it can be scored or (``realtime``) at the pace
    of a live recording. Opening raises AudioFileError for a missing or non-audio file."""

    def __init__(
        self,
        path: str | bytes | os.PathLike[Any],
        realtime: bool = False,
        block_s: float = DEFAULT_BLOCK_S,
    ) -> None:
        block_s = limits.BLOCK_S.check("block_s", block_s)
        rate, blocks = read_blocks(path, block_s)
        super().__init__(blocks, rate, realtime)
        self.path = path


class DeviceSource:
    """A PortAudio input device (by index or name; None: the default input), one channel, at
    16 kHz when the device offers it, else at its default rate (44.1/48 kHz; the Stream
    resamples). Raises DeviceError when PortAudio or the device cannot be found.

    PortAudio records in a child process (``edgeser.capture``), so that a device that vanishes
    can never hang the caller. When no block has come for ``watchdog_s`` seconds the device is
    taken as gone: the stream ends with a DeviceError naming it, or, with ``reconnect``, the
    device is reopened by name every ``retry_s`` seconds until it is back (the stream counts
    each return in ``stats.reconnects``; the audio meanwhile is a gap)."""

    live = True

    def __init__(
        self,
        device: int | str | None = None,
        block_s: float = DEFAULT_BLOCK_S,
        *,
        reconnect: bool = False,
        watchdog_s: float = 2.0,
        retry_s: float = 1.0,
    ) -> None:
        watchdog_s = limits.WAIT_S.check("watchdog_s", watchdog_s)
        retry_s = limits.WAIT_S.check("retry_s", retry_s)
        block_s = limits.BLOCK_S.check("block_s", block_s)
        self.device, self.name, rate = _find_in_child(device)
        try:
            self.sampling_rate = check_rate(rate)
        except AudioError as exc:
            raise DeviceError(f"input device {self.name!r} records at {rate} Hz: {exc}") from None
        self.reconnect = reconnect
        self.watchdog_s, self.retry_s = watchdog_s, retry_s
        self._block_frames = max(1, round(block_s * self.sampling_rate))
        self._child: subprocess.Popen[bytes] | None = None  # the capture process
        self._lock = threading.Lock()  # guards _child, which the relay replaces on reconnect
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: BlockSink) -> None:
        """Start the capture process (DeviceError if it cannot open the device), then the
        thread that hands its blocks to ``sink`` and watches that they keep coming."""
        self._child = self._open()
        self._thread = threading.Thread(
            target=self._relay, args=(sink, self._child), name="edgeser-device", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the capture process and the relay thread; returns within about a second
        whatever the device or PortAudio does."""
        self._stopping.set()
        with self._lock:
            child = self._child
        if child is not None:
            _end_process(child)  # the relay sees its pipe end and finishes
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    def _open(self) -> subprocess.Popen[bytes]:
        """A capture process that has opened the device; DeviceError with its reason if not."""
        child = subprocess.Popen(
            [*_CAPTURE, "record", self.name, str(self.sampling_rate), str(self._block_frames)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        ready = _read_exactly(child.stdout.fileno(), 1, OPEN_TIMEOUT_S)
        if ready == READY:
            child.stderr.close()  # later PortAudio chatter goes nowhere
            return child
        _end_process(child)
        child.stdout.close()
        reason = child.stderr.read().decode(errors="replace").strip().splitlines()
        child.stderr.close()
        detail = reason[-1] if reason else f"no answer within {OPEN_TIMEOUT_S:g} s"
        raise DeviceError(f"cannot open input device {self.name!r}: {detail}")

    def _relay(self, sink: BlockSink, child: subprocess.Popen[bytes] | None) -> None:
        """Hand blocks over until stopped; when they stop coming, reconnect or end with a
        DeviceError naming the device."""
        error: BaseException | None = None
        try:
            while child is not None and child.stdout is not None:
                try:
                    record = _read_record(child.stdout.fileno(), self.watchdog_s)
                    silent_s = self.watchdog_s  # if there is no record
                except EOFError:  # the capture process died
                    record, silent_s = None, 0.0
                if self._stopping.is_set():
                    break
                if record is not None:
                    status, samples = record
                    if status == OVERFLOW:
                        sink.overflow()
                    sink.block(samples)
                    continue
                lost_since = time.monotonic() - silent_s
                _end_process(child)
                child.stdout.close()
                if not self.reconnect:
                    silence = f" (nothing for {silent_s:g} s)" if silent_s else ""
                    error = DeviceError(
                        f"input device {self.name!r} stopped delivering audio{silence}: "
                        "unplugged, or its audio server stopped"
                    )
                    break
                logger.warning("input device %r is gone; reconnecting", self.name)
                child = self._reopen()
                if child is not None:
                    sink.reconnected(round((time.monotonic() - lost_since) * self.sampling_rate))
                    logger.warning("input device %r is back", self.name)
        except BaseException as exc:  # a bug in the sink: end the stream with it
            error = exc
        finally:
            if child is not None and child.stdout is not None:
                _end_process(child)
                child.stdout.close()
            sink.end(error)

    def _reopen(self) -> subprocess.Popen[bytes] | None:
        """Reopen the device every ``retry_s`` seconds until it opens (None: stop() came)."""
        while not self._stopping.wait(self.retry_s):
            try:
                child = self._open()
            except DeviceError as exc:
                logger.debug("%s", exc)
                continue
            with self._lock:
                self._child = child
            if self._stopping.is_set():  # stop() came while it opened: it did not see it
                _end_process(child)
            return child
        return None


def _end_process(child: subprocess.Popen[bytes]) -> None:
    """Close a capture process's stdin (it exits at once) and kill it if it does not."""
    if child.stdin is not None:
        with contextlib.suppress(OSError):
            child.stdin.close()
    try:
        child.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _find_in_child(device: int | str | None) -> tuple[int, str, int]:
    """(index, name, rate) of an input device, looked up by a short-lived capture process, so
    that this process never starts PortAudio (whose clean-up at exit hangs or crashes once a
    device's audio server is gone); DeviceError naming the problem otherwise."""
    answer = _ask_child("find", "" if device is None else str(device))
    if "index" not in answer:
        raise DeviceError("cannot list input devices: PortAudio failed")
    return int(answer["index"]), str(answer["name"]), int(answer["rate"])


def _ask_child(*command: str) -> dict[str, Any]:
    """The JSON answer of a short-lived capture process to ``command`` (``find``, ``list``);
    DeviceError with its reason when it has none, gives an error or does not answer."""
    try:
        found = subprocess.run(
            [*_CAPTURE, *command], capture_output=True, text=True, timeout=OPEN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise DeviceError(f"PortAudio listed no devices within {OPEN_TIMEOUT_S:g} s") from None
    try:
        answer = json.loads((found.stdout.strip().splitlines() or ["{}"])[-1])
    except json.JSONDecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if not answer or "error" in answer:
        reason = (found.stderr.strip().splitlines() or ["PortAudio failed"])[-1]
        raise DeviceError(answer.get("error") or f"cannot list input devices: {reason}")
    return answer


def _read_record(fd: int, timeout_s: float) -> tuple[int, np.ndarray] | None:
    """(status, [frames, 1] float32 samples) of the capture process's next block; None when
    its pipe stays silent for ``timeout_s`` seconds (the watchdog); EOFError at its end."""
    header = _read_exactly(fd, HEADER.size, timeout_s)
    if header is None:
        return None
    if len(header) < HEADER.size:
        raise EOFError
    status, frames = HEADER.unpack(header)
    payload = _read_exactly(fd, 4 * frames, timeout_s)
    if payload is None:
        return None
    if len(payload) < 4 * frames:
        raise EOFError
    return status, np.frombuffer(payload, np.float32)[:, None]


def _read_exactly(fd: int, size: int, timeout_s: float) -> bytes | None:
    """``size`` bytes from a pipe, fewer at its end; None if the pipe stays silent for
    ``timeout_s`` seconds (the watchdog)."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return None
        chunk = os.read(fd, size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def input_devices() -> list[dict[str, Any]]:
    """PortAudio's input devices: index, name, host API, channels, default rate, is_default;
    listed by a short-lived capture process, as a device is looked up (``_find_in_child``)."""
    return list(_ask_child("list")["devices"])


def frame_count(block: Any) -> int:
    """Frames in a block ([frames] or [frames, channels]); 0 for anything unusable."""
    shape = getattr(block, "shape", ())
    return int(shape[0]) if len(shape) in (1, 2) else 0
