"""The command lines' output channels: standard output carries only the command's output and
standard error only its messages, whatever the shell did to them (closed with ``>&-``, a full
disk, a pipe whose reader left) and whatever native libraries print to file descriptors 1 and 2
(onnxruntime's log lines, mpg123's decoder warnings)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .errors import EdgeserError

# The status of a command whose output reader left (`edgeser ... | head -1`): as if killed by
# SIGPIPE, what the shell reports for `yes | head -1` (128 + the signal number).
READER_LEFT_STATUS = 128 + signal.SIGPIPE
STANDARD_FDS = (0, 1, 2)


class OutputError(EdgeserError):
    """Standard output cannot take the command's output (closed, a full disk, an I/O error)."""


class ReaderLeft(Exception):
    """The reader of standard output closed its end of the pipe: stop quietly, not an error."""


class Channel:
    """A text stream whose write errors go to ``on_error`` (which may raise) instead of
    surfacing wherever the write happened; after an error its file descriptor is pointed at
    /dev/null, so that what is still buffered drains without a second error at exit."""

    def __init__(self, stream: TextIO, on_error: Callable[[OSError], None]) -> None:
        self._stream = stream
        self._on_error = on_error

    def write(self, text: str) -> int:
        """Write ``text`` (its length, also when it was lost)."""
        return self._guarded(lambda: self._stream.write(text)) or len(text)

    def flush(self) -> None:
        """Flush the stream."""
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _guarded(self, call: Callable[[], Any]) -> Any:
        """``call()``; an OSError discards the stream's output and goes to ``on_error``."""
        try:
            return call()
        except OSError as exc:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                _point_at_devnull(self._stream.fileno())
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()  # what was buffered now goes to /dev/null
            self._on_error(exc)
            return None


def _stdout_failed(exc: OSError) -> None:
    """Standard output broke: the reader left (quiet) or it cannot be written (one line)."""
    if isinstance(exc, BrokenPipeError):
        raise ReaderLeft from None
    raise OutputError(f"cannot write to standard output ({exc.strerror or exc})") from None


def _stderr_failed(exc: OSError) -> None:
    """Standard error broke (its reader left): messages are lost, the exit status still tells."""


class _Closed(io.TextIOBase):
    """Where a descriptor closed at the start (``>&-``) leaves Python's stream: writing fails."""

    def write(self, text: str) -> int:
        """Refuse: the shell closed this channel."""
        raise OSError(errno.EBADF, "it was closed when the command started")


@contextlib.contextmanager
def command_channels(quiet_native: bool = True) -> Iterator[None]:
    """For the duration of a command: ``sys.stdout`` and ``sys.stderr`` as Channels, a closed
    descriptor 0, 1 or 2 reopened on /dev/null (so no file the command opens takes its number,
    and native code cannot write into it), and with ``quiet_native`` what native libraries
    write to descriptors 1 and 2 sent to /dev/null while Python's streams keep their targets."""
    closed = _reserve_standard_fds()
    saved = sys.stdout, sys.stderr
    out = _Closed() if 1 in closed or saved[0] is None else saved[0]
    err = _text_on(2) if 2 in closed or saved[1] is None else saved[1]
    moved: list[tuple[int, int, TextIO]] = []
    if quiet_native:
        out, err = (_moved_off(s, fd, moved) for s, fd in ((out, 1), (err, 2)))
    sys.stdout = Channel(out, _stdout_failed)  # type: ignore[assignment]
    sys.stderr = Channel(err, _stderr_failed)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(EdgeserError, ReaderLeft):
                stream.flush()
        sys.stdout, sys.stderr = saved
        for fd, real, stream in moved:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
            os.dup2(real, fd)
            os.close(real)


def run_command(prog: str, body: Callable[[], int], quiet_native: bool = False) -> int:
    """``body()`` within ``command_channels``, its output flushed: standard output that cannot
    be written is one line ``PROG: error: ...`` and exit 2, a reader that left exit 141."""
    with command_channels(quiet_native):
        try:
            status = body()
            sys.stdout.flush()
            return status
        except OutputError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except ReaderLeft:  # `... | head`: the reader left; not an error
            return READER_LEFT_STATUS


def _reserve_standard_fds() -> set[int]:
    """Reopen each closed standard descriptor on /dev/null; the set of those that were."""
    closed = set()
    for fd in STANDARD_FDS:
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.add(fd)
    return closed


def _text_on(fd: int) -> TextIO:
    """A text stream on descriptor ``fd`` (for a stream Python left as None)."""
    return open(fd, "w", errors="surrogateescape", closefd=False)


def _moved_off(stream: TextIO, fd: int, moved: list[tuple[int, int, TextIO]]) -> TextIO:
    """``stream`` moved to a copy of descriptor ``fd``, which then points at /dev/null for
    native writers; recorded in ``moved`` to be undone. Unchanged when ``stream`` is not on
    ``fd`` (pytest's capture, a StringIO)."""
    try:
        if stream.fileno() != fd:
            return stream
        stream.flush()
    except (OSError, ValueError, AttributeError):
        return stream
    real = os.dup(fd)
    _point_at_devnull(fd)
    copy = open(  # noqa: SIM115 (closed by hand: the descriptor is restored afterwards)
        real, "w", encoding=stream.encoding, errors=stream.errors, closefd=False
    )
    moved.append((fd, real, copy))
    return copy


def _point_at_devnull(fd: int) -> None:
    """Make descriptor ``fd`` write to /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
