"""A real PortAudio input stream: a JACK dummy server (48 kHz, so the stream resamples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import voice_like

import edgeser

pytestmark = [pytest.mark.audio_device, pytest.mark.usefixtures("use_backend")]

JACK_RATE = 48_000


def _portaudio_port(direction: str) -> str:
    """The name of this process's PortAudio JACK port for ``direction`` ('in' or 'out')."""
    ports = subprocess.run(["jack_lsp"], capture_output=True, text=True, check=True).stdout
    names = [p for p in ports.split() if p.startswith("PortAudio") and f":{direction}_" in p]
    assert len(names) == 1, ports
    return names[0]


def test_device_stream_delivers_readings_in_real_time(jack_server, tiny_model):
    source = edgeser.DeviceSource("system")
    assert source.sampling_rate == JACK_RATE  # JACK runs at 48 kHz: the stream resamples
    arrivals = []
    began = time.monotonic()
    with edgeser.Stream(tiny_model, source) as stream:
        for reading in stream:
            arrivals.append((time.monotonic() - began, reading))
            if len(arrivals) == 4:
                break
    assert [r.end_s for _, r in arrivals] == pytest.approx([1.0, 1.25, 1.5, 1.75])
    for arrival, reading in arrivals:  # each reading comes when its audio has been heard
        assert reading.end_s - 0.1 <= arrival <= reading.end_s + 1.0
    assert not any(r.voiced for _, r in arrivals)  # the dummy backend captures silence
    stats = stream.stats
    assert stats.blocks > 0 and stats.bad_blocks == 0 and stats.dropped_blocks == 0


def test_voice_played_into_the_device_is_scored(jack_server, tiny_model):
    import sounddevice as sd

    signal = voice_like(6.0, rate=JACK_RATE)
    played = 0

    def play(outdata: np.ndarray, frames: int, when: object, status: object) -> None:
        nonlocal played
        chunk = signal[played : played + frames]
        outdata[:] = 0.0
        outdata[: chunk.size, 0] = chunk
        played += frames

    source = edgeser.DeviceSource("system")
    output = sd.OutputStream(device=source.device, channels=1, samplerate=JACK_RATE, callback=play)
    with output, edgeser.Stream(tiny_model, source) as stream:
        subprocess.run(["jack_connect", _portaudio_port("out"), _portaudio_port("in")], check=True)
        voiced = []
        for reading in stream:
            if reading.voiced:
                voiced.append(reading)
            if len(voiced) == 2 or reading.end_s > 5.0:
                break
    assert len(voiced) == 2, "the played voice never reached the input stream"
    assert all(0.0 < x < 1.0 for r in voiced for x in r.adv)


def test_cli_streams_from_the_device_and_lists_it(jack_server, tiny_model_path):
    env = {**os.environ, "JACK_DEFAULT_SERVER": jack_server}
    listing = subprocess.run(
        [sys.executable, "-m", "edgeser", "devices"], capture_output=True, text=True, env=env
    )
    assert listing.returncode == 0 and "system" in listing.stdout
    run = subprocess.run(
        [sys.executable, "-m", "edgeser", "stream", "--model", str(tiny_model_path),
         "--device", "system", "--duration", "1.25"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["end_s"] for line in lines] == [1.0, 1.25]
    assert "stream stopped: 2 readings (0 voiced)" in run.stderr


def test_listing_devices_never_starts_portaudio_in_this_process(jack_server):
    """``input_devices`` (``edgeser devices``) asks a capture process, as a stream's device
    lookup does: this process never loads PortAudio, whose clean-up can hang at exit once a
    device's audio server is gone."""
    code = (
        "import json, sys; from edgeser.sources import input_devices; "
        "found = input_devices(); "
        "print(json.dumps([[d['name'] for d in found], 'sounddevice' in sys.modules]))"
    )
    env = {**os.environ, "JACK_DEFAULT_SERVER": jack_server}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert run.returncode == 0, run.stderr
    names, loaded = json.loads(run.stdout.splitlines()[-1])
    assert "system" in names
    assert not loaded
