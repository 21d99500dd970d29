"""The capture process of a ``DeviceSource``: PortAudio runs here, in a child process.

When a device vanishes (a USB microphone unplugged, a JACK server killed), PortAudio's stop,
close and terminate can block for good (or abort the process at exit), and only a separate
process can always be ended. So the caller never starts PortAudio for a stream. This file
runs as a script (``python .../edgeser/capture.py``): it imports neither the edgeser package
nor onnxruntime, only sounddevice and numpy.

``capture.py find DEVICE`` prints, as JSON, the index, name and rate of the input device
DEVICE (index, name or name fragment; empty: the default), or ``{"error": ...}``.
``capture.py list`` prints, as JSON, ``{"devices": [...]}`` (``input_devices``) or
``{"error": ...}``.

``capture.py record NAME RATE FRAMES`` opens the input device named NAME (exact name, as
PortAudio lists it now) at RATE Hz, one float32 channel, FRAMES frames per block, writes one
ready byte to stdout, then one record per block: a header (status byte, 1: input overflow;
frame count, uint32) and the block's raw float32 samples. It exits, without touching
PortAudio again, when its stdin closes (its parent stopped or died) or its stdout breaks.
Failing to open the device, it prints the reason on stderr and exits 1.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from typing import Any

READY = b"R"
OVERFLOW = 1
RATE = 16_000  # the contract's rate (edgeser.contract.SAMPLE_RATE; this file imports nothing)


HEADER = struct.Struct("<BI")  # of each block record: status (OVERFLOW or 0), frames


def main(argv: list[str]) -> None:
    """``find`` or ``record`` (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if argv[0] == "find":
        find(argv[1])
    elif argv[0] == "list":
        list_inputs()
    else:
        record(argv[1], int(argv[2]), int(argv[3]))
    os._exit(0)  # never PortAudio's own clean-up: it may hang on a vanished device


def find(device: str) -> None:
    """Print the input device's index, name and rate as JSON (or why there is none)."""
    try:
        sd = import_sounddevice()
        index = find_input_device(sd, device or None)
        answer: dict[str, object] = {
            "index": index,
            "name": sd.query_devices(index)["name"],
            "rate": input_rate(sd, index),
        }
    except (OSError, LookupError) as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)


def list_inputs() -> None:
    """Print the input devices as JSON (or why there are none to list)."""
    try:
        answer: dict[str, object] = {"devices": input_devices(import_sounddevice())}
    except OSError as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)


def record(name: str, rate: int, frames: int) -> None:
    """Capture until stdin closes (see the module docstring)."""
    out = sys.stdout.fileno()  # written unbuffered: each block goes out whole, at once
    try:
        sd = import_sounddevice()
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
    for device in input_devices(sd):
        if device["name"] == name:
            return int(device["index"])
    raise ValueError(f"no input device named {name!r}")


def import_sounddevice() -> Any:
    """sounddevice; OSError saying what to install when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise OSError(
            f"PortAudio is not available ({exc}); install it, e.g. apt install libportaudio2"
        ) from None
    return sounddevice


def input_devices(sd: Any) -> list[dict[str, Any]]:
    """PortAudio's input devices: index, name, host API, channels, default rate, is_default."""
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


def find_input_device(sd: Any, device: int | str | None) -> int:
    """The index of an input device given by index, exact name or unique name fragment (None:
    the default input); LookupError naming the available inputs when there is no such one."""
    devices = input_devices(sd)
    if not devices:
        raise LookupError("no audio input device found (PortAudio lists none)")
    listing = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
    if device is None:
        chosen = [d for d in devices if d["is_default"]] or devices[:1]
        return int(chosen[0]["index"])
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        if any(d["index"] == device for d in devices):
            return device
        raise LookupError(f"no input device with index {device}; input devices: {listing}")
    exact = [d for d in devices if d["name"] == device]
    partial = [d for d in devices if device.lower() in d["name"].lower()]
    matches = exact or partial
    if len(matches) == 1:
        return int(matches[0]["index"])
    problem = "no" if not matches else "more than one"
    raise LookupError(f"{problem} input device matches {device!r}; input devices: {listing}")


def input_rate(sd: Any, index: int) -> int:
    """16 kHz if the input device takes it (no resampling), else its default rate."""
    try:
        sd.check_input_settings(device=index, channels=1, samplerate=RATE, dtype="float32")
        return RATE
    except sd.PortAudioError:
        return int(sd.query_devices(index)["default_samplerate"])


def _send(out: int, indata: Any, status: Any) -> None:
    """Write one block record (on PortAudio's thread); exit if the parent is gone."""
    header = HEADER.pack(OVERFLOW if status.input_overflow else 0, len(indata))
    try:
        _send_all(out, header + indata.tobytes())
    except OSError:
        os._exit(0)


def _send_all(out: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``out``."""
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]


if __name__ == "__main__":
    main(sys.argv[1:])
