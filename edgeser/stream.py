"""Live scoring: audio blocks -> ring buffer -> a reading every hop, on a worker thread.

The source's thread only hands blocks over. The worker validates each block (a bad one is
counted, logged and skipped), down-mixes, resamples to 16 kHz in streaming fashion, and pushes
the audio into the model's ``Scorer``, which gates each window with the VAD and scores it.
Readings go to the callback if one is given, else to the iterator.

Back-pressure, for a live source (which never waits): when scoring falls behind, so that more
than a hop of newer audio is already queued, the windows due meanwhile are skipped (counted)
and the audio still goes into the buffer: readings stay current and windows stay whole. Only if
the worker stalls until ``max_pending`` blocks are queued are blocks dropped (counted); a gap
(dropped or bad blocks) restarts the buffer at the next block, so no window ever spans one.

Each block is copied as it is handed over (a source may reuse its buffer at once), in pieces of
at most ``MAX_PIECE_S`` seconds: however long a block, the stream holds at most ``max_pending``
pieces of it and scores a piece at a time, so its memory is bounded by the window, not the block.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import limits
from .audio import StreamingResampler, as_mono_float32
from .errors import AudioError, EdgeserError
from .model import DEFAULT_VAD, Model
from .readings import Reading, smoothed
from .sources import AudioSource, DeviceSource, frame_count
from .vad import GateSpec

logger = logging.getLogger(__name__)

_END = object()  # end of the source (in the block queue) or of the readings (in theirs)
MAX_PIECE_S = 1.0  # a longer block is queued (copied) and scored in pieces of this length
_running: weakref.WeakSet[Stream] = weakref.WeakSet()  # started and not yet stopped


@atexit.register
def _stop_running_streams() -> None:
    """At interpreter exit, stop (and join) every stream still running: a worker left inside
    onnxruntime when the interpreter finalizes is killed by ``pthread_exit`` unwinding through
    C++ frames, and the process aborts (``terminate called without an active exception``)."""
    for stream in list(_running):
        stream.stop()


@dataclass
class StreamStats:
    """Counters of a stream; each is written by one thread only."""

    blocks: int = 0  # blocks the source delivered
    dropped_blocks: int = 0  # ... that the worker had no room for (it stalled)
    bad_blocks: int = 0  # ... (or 1 s pieces of longer ones) unusable (NaN, wrong shape): skipped
    overflows: int = 0  # times the device reported lost input
    readings: int = 0  # readings produced
    voiced: int = 0  # ... of which voiced (scored as speech)
    skipped_windows: int = 0  # windows not scored because newer audio was waiting
    callback_errors: int = 0  # exceptions raised by the user's callback (logged)
    dropped_readings: int = 0  # oldest readings dropped because the iterating consumer lagged
    reconnects: int = 0  # times a lost device came back (DeviceSource(reconnect=True))

    def summary(self) -> str:
        """One line for the end of a stream (the rarer counters only when not zero)."""
        rare = {"dropped readings": self.dropped_readings, "reconnects": self.reconnects}
        return (
            f"{self.readings} readings ({self.voiced} voiced), {self.skipped_windows} skipped "
            f"windows, {self.dropped_blocks} dropped blocks, {self.overflows} overflows, "
            f"{self.bad_blocks} bad blocks"
        ) + "".join(f", {count} {name}" for name, count in rare.items() if count)


class Stream:
    """Scores live audio: ``with Stream(model, source) as s: for reading in s: ...``.

    ``source`` is a ``DeviceSource`` (None: the default input device), a ``FileSource`` or a
    ``BlockSource``. ``window``/``hop`` in seconds default to the model's. ``vad`` gates
    windows: a gate, its name ("noise-floor", "energy"), True (the default gate) or False/None
    (score every window). ``smoothing`` is an EMA factor in (0, 1] applied to
    consecutive voiced readings (1 or None: no smoothing). ``max_pending`` blocks wait for the
    worker before a live source's blocks are dropped; at most ``max_readings`` readings of a
    live source wait for a consumer that iterates, the oldest are dropped beyond that.
    """

    def __init__(
        self,
        model: Model,
        source: AudioSource | None = None,
        *,
        window: float | None = None,
        hop: float | None = None,
        vad: GateSpec = DEFAULT_VAD,
        smoothing: float | None = None,
        callback: Callable[[Reading], object] | None = None,
        max_pending: int = 64,
        max_readings: int = 8,
    ) -> None:
        if smoothing is not None:
            smoothing = limits.SMOOTHING.check("smoothing", smoothing)
        max_pending = int(limits.MAX_PENDING.check("max_pending", max_pending))
        max_readings = int(limits.MAX_READINGS.check("max_readings", max_readings))
        self.source = DeviceSource() if source is None else source
        self.stats = StreamStats()
        self.error: BaseException | None = None
        self._scorer = model.scorer(window, hop, vad)
        self._resampler = StreamingResampler(self.source.sampling_rate)
        self._smoothing = smoothing
        self._smoothed: Reading | None = None
        self._callback = callback
        self._blocks: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._readings: queue.Queue[Any] = queue.Queue()  # bounded by hand: see _deliver
        self._max_readings = max_readings
        self._next_frame = 0  # source frame at which the next delivered block starts
        self._arrived = 0  # frames the source delivered (its thread writes it, the worker reads)
        self._piece_frames = max(1, round(MAX_PIECE_S * self.source.sampling_rate))
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="edgeser-stream", daemon=True)
        self._started = False

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Stream:
        """Start the worker, then the source."""
        if not self._started:
            self._started = True
            _running.add(self)
            self._worker.start()
            try:
                self.source.start(self)
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        """Stop the source and the worker (no flush: readings still queued remain)."""
        self._stopping.set()
        _running.discard(self)
        self.source.stop()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)
        self._readings.put(_END)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the source to end and its last reading to be delivered; True if it has."""
        if self._started:
            self._worker.join(timeout)
        return self._started and not self._worker.is_alive()

    def __enter__(self) -> Stream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Reading]:
        """The readings as they come, until the source ends or the stream is stopped; re-raises
        the error that broke the source off, if any. An iterator that started the stream (no
        ``with`` or ``start()`` before) stops it when it ends or is abandoned (``break``)."""
        owner = not self._started
        self.start()
        try:
            while (item := self._next_item()) is not _END:
                yield item
        finally:
            if owner:
                self.stop()
        self._readings.put(_END)  # a second iterator ends too
        if self.error is not None:
            raise self.error

    def _next_item(self) -> Any:
        """The next reading (or _END), waking every 0.1 s so that the main thread handles a
        signal (Ctrl-C) promptly even when another thread received it."""
        while True:
            try:
                return self._readings.get(timeout=0.1)
            except queue.Empty:
                continue

    # -- the source's side (BlockSink): never waits when the source is live ------------------

    def block(self, data: Any) -> None:
        """Queue a copy of one block, in pieces, each with its position in the source and the
        frames delivered up to the block's end (a live source's block is dropped, and counted,
        from the first piece there is no room for)."""
        block = _as_block(data)
        frames = frame_count(block)
        first = self._next_frame
        self._next_frame += frames
        arrived = self._arrived + frames
        self.stats.blocks += 1
        for offset, piece in _copied_pieces(block, self._piece_frames):
            item = (first + offset, piece, arrived)
            if not self.source.live:
                if not self._put_unless_stopping(item):
                    break
                continue
            try:
                self._blocks.put_nowait(item)
            except queue.Full:
                self.stats.dropped_blocks += 1
                break
        self._arrived = arrived

    def overflow(self) -> None:
        """Count input lost by the device."""
        self.stats.overflows += 1

    def end(self, error: BaseException | None = None) -> None:
        """The source ended (with ``error`` if it broke off): flush and finish."""
        if error is not None:
            logger.error("audio source broke off: %s", error)
            self.error = error
        self._put_unless_stopping(_END)

    def reconnected(self, lost_frames: int) -> None:
        """A lost device is back: count it, and leave a gap of the frames not heard, so the
        buffer starts afresh and times go on."""
        self.stats.reconnects += 1
        self._next_frame += lost_frames

    def _put_unless_stopping(self, item: object) -> bool:
        """Wait for room in the block queue; False if the stream was stopped meanwhile."""
        while not self._stopping.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        """Turn queued blocks into readings until the source ends or the stream stops."""
        expected: int | None = 0  # frame the next block must start at to continue the signal
        try:
            while not self._stopping.is_set():
                try:
                    item = self._blocks.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    self._flush()
                    break
                frame, data, arrived = item
                expected = self._process(frame, data, arrived, expected)
        except BaseException as exc:  # the model failed (ModelError), or a bug: end, re-raise
            logger.exception("stream worker failed")
            self.error = exc
        finally:
            self._readings.put(_END)

    def _process(self, frame: int, data: Any, arrived: int, expected: int | None) -> int | None:
        """Score one piece of a block (``arrived``: frames delivered up to the block's end);
        returns the frame the next piece must start at (None: a gap)."""
        try:
            samples = as_mono_float32(data, channels_last=True)
        except EdgeserError as exc:
            self.stats.bad_blocks += 1
            count = self.stats.bad_blocks
            if count & (count - 1) == 0:  # log the 1st, 2nd, 4th, 8th, ...: no flood
                logger.warning("skipped bad audio block (%d so far): %s", count, exc)
            return None
        rate = self.source.sampling_rate
        if frame != expected:  # blocks were dropped or skipped: start the signal afresh
            self._resampler.reset()
            self._scorer.reset(frame / rate)
        resampled = self._resampler.process(samples)
        newer_s = (self._arrived - arrived) / rate  # audio delivered after this block
        if self.source.live and newer_s > self._scorer.hop_s:  # behind: these windows are stale
            self.stats.skipped_windows += self._scorer.skip(resampled)
        else:
            for reading in self._scorer.push(resampled):
                self._deliver(reading)
        return frame + samples.size

    def _flush(self) -> None:
        """At the end of the source: score the not yet covered tail; then, if none of the
        audio could be scored (too short, no signal), end with that AudioError, as
        ``score_file`` and ``predict`` do."""
        for reading in self._scorer.push(self._resampler.flush()) + self._scorer.flush():
            self._deliver(reading)
        reason = self._scorer.unscorable()
        if reason is not None and self.error is None:
            self.error = AudioError(reason)

    def _deliver(self, reading: Reading) -> None:
        """Smooth, count, and hand a reading to the callback or the iterator."""
        if reading.voiced and self._smoothing is not None:
            reading = self._smoothed = smoothed(reading, self._smoothed, self._smoothing)
        self.stats.readings += 1
        self.stats.voiced += reading.voiced
        if self._callback is None:
            if self.source.live and self._readings.qsize() >= self._max_readings:
                with contextlib.suppress(queue.Empty):  # the consumer may just have taken it
                    self._readings.get_nowait()
                    self.stats.dropped_readings += 1
            self._readings.put(reading)
            return
        try:
            self._callback(reading)
        except Exception:  # the user's code must not end the stream
            self.stats.callback_errors += 1
            logger.exception("stream callback failed")


def _as_block(data: Any) -> Any:
    """A block as a numpy array (not copied), or as it came if it is not array-like (ragged),
    for the worker to count as bad."""
    try:
        return np.asarray(data)
    except Exception:
        return data


def _copied_pieces(block: Any, most: int) -> Iterator[tuple[int, Any]]:
    """(frame offset, copy) of consecutive pieces of at most ``most`` frames of a block; one that
    is not a 1-D or 2-D array comes whole, for the worker to refuse."""
    if not isinstance(block, np.ndarray):
        yield 0, block
    elif block.ndim not in (1, 2):
        yield 0, block.copy()
    else:
        for offset in range(0, max(1, len(block)), most):
            yield offset, block[offset : offset + most].copy()
