"""The capture process of a ``DeviceSource``: PortAudio runs here, in a child process.

When a device vanishes (a USB microphone unplugged, a JACK server killed), PortAudio's stop,
close and terminate can block for good (or abort the process at exit), and only a separate
process can always be ended. So the caller never starts PortAudio for a stream:

``python -m edgeser.capture find DEVICE`` prints, as JSON, the index, name and rate of the
input device DEVICE (index, name or name fragment; empty: the default), or ``{"error": ...}``.

``python -m edgeser.capture record NAME RATE FRAMES`` opens the input device named NAME
(exact name, as PortAudio lists it now) at RATE Hz, one float32 channel, FRAMES frames per
block, writes one ready byte to stdout, then one record per block: a status byte (1: input
overflow) and the block's raw samples. It exits, without touching PortAudio again, when its
stdin closes (its parent stopped or died) or its stdout breaks. Failing to open the device,
it prints the reason on stderr and exits 1.
"""

from __future__ import annotations

import json
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
    """``find`` or ``record`` (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if argv[0] == "find":
        find(argv[1])
    else:
        record(argv[1], int(argv[2]), int(argv[3]))
    os._exit(0)  # never PortAudio's own clean-up: it may hang on a vanished device


def find(device: str) -> None:
    """Print the input device's index, name and rate as JSON (or the DeviceError)."""
    from .errors import DeviceError
    from .sources import device_rate, find_input_device, input_devices

    try:
        index = find_input_device(device or None)
        name = next(d["name"] for d in input_devices() if d["index"] == index)
        answer: dict[str, object] = {"index": index, "name": name, "rate": device_rate(index)}
    except DeviceError as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)


def record(name: str, rate: int, frames: int) -> None:
    """Capture until stdin closes (see the module docstring)."""
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
