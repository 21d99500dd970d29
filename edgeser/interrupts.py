"""How a command is stopped: SIGINT (Ctrl-C) and SIGTERM (a service stopped) raise
``Interrupted`` in the main thread, so that the command unwinds, keeps what it wrote and exits
with the shell's status for the signal (130, 143)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop by a signal (a KeyboardInterrupt, as Ctrl-C is)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def status(self) -> int:
        """The exit status the shell gives a process stopped by this signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread while the block runs, even
    where SIGINT was inherited as ignored (a job started in the background by a script)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """Signal handler: stop the command as Ctrl-C does."""
    raise Interrupted(signum)
