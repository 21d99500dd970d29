"""The capture process of a ``DeviceSource``: ``python -m edgeser.capture NAME RATE FRAMES``.

PortAudio runs here, in a child process, and not in the caller's: when a device vanishes
(a USB microphone unplugged, a JACK server killed), PortAudio's stop, close and terminate can
block for good, and only a separate process can always be ended. The child opens the input
device named NAME (exact name, as PortAudio lists it now) at RATE Hz, one float32 channel,
FRAMES frames per block, writes one ready byte to stdout, then one record per block: a status
byte (1: input overflow) and the block's raw samples. It exits, without touching PortAudio
again, when its stdin closes (its parent stopped or died) or its stdout breaks. Failing to
open the device, it prints the reason on stderr and exits 1.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

READY = b"R"
OVERFLOW = 1


def record_size(frames: int) -> int:
    """Bytes of one block record: the status byte and ``frames`` float32 samples."""
    return 1 + 4 * frames


def main(argv: list[str]) -> None:
    """Capture until stdin closes (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    name, rate, frames = argv[0], int(argv[1]), int(argv[2])
    out = sys.stdout.fileno()  # written unbuffered: each block goes out whole, at once
    try:
        import sounddevice as sd

        stream = sd.InputStream(
            device=_input_index(sd, name),
            channels=1,
            samplerate=rate,
            blocksize=frames,
            dtype="float32",
            callback=lambda indata, n, when, status: _send(out, indata, status),
        )
        stream.start()
    except Exception as exc:  # no PortAudio, no such device (yet), cannot open it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    _send_all(out, READY)
    sys.stdin.buffer.read()  # until the parent closes the pipe (or dies)
    os._exit(0)  # never PortAudio's own clean-up: it may hang on a vanished device


def _input_index(sd: Any, name: str) -> int:
    """The index of the input device called ``name`` (ValueError if there is none)."""
    for index, device in enumerate(sd.query_devices()):
        if device["name"] == name and device["max_input_channels"] > 0:
            return index
    raise ValueError(f"no input device named {name!r}")


def _send(out: int, indata: Any, status: Any) -> None:
    """Write one block record (on PortAudio's thread); exit if the parent is gone."""
    flag = bytes([OVERFLOW if status.input_overflow else 0])
    try:
        _send_all(out, flag + indata.tobytes())
    except OSError:
        os._exit(0)


def _send_all(out: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``out``."""
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]


if __name__ == "__main__":
    main(sys.argv[1:])
