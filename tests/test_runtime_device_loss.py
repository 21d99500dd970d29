"""A device that vanishes under a live stream: a JACK dummy server killed with SIGKILL (what a
USB microphone pulled from a Pi looks like to PortAudio), then, for reconnect, restarted."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _wait_for_jack

pytestmark = [pytest.mark.audio_device, pytest.mark.timeout(60)]


class KillableJack:
    """A JACK dummy server at 16 kHz under a name of its own, that a test may kill and restart.
    It is always restarted under the same name and stopped gracefully at the end: JACK frees a
    killed server's registry slot only when a server of that name starts again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": name}
        self.process: subprocess.Popen[bytes] | None = None
        self.clients: list[subprocess.Popen[str]] = []  # the streams started on it

    def start(self) -> None:
        """Start the server and wait until it lists its ports."""
        self.process = subprocess.Popen(
            ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", "16000", "-p", "512"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env,
        )  # fmt: skip
        previous = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name  # for _wait_for_jack's jack_lsp
        try:
            up = _wait_for_jack(self.process)
        finally:
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER")
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous
        if not up:
            self.stop()
            pytest.skip("the JACK dummy server did not start")

    def kill(self) -> None:
        """SIGKILL the server: its clients are left with a dead connection."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """Stop the server gracefully (it unregisters)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def jack() -> Iterator[KillableJack]:
    """A killable JACK server, running; left stopped cleanly (restarted first if killed)."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd (jackd2) is not installed")
    server = KillableJack(f"edgeser_loss_{os.getpid()}")
    server.start()
    yield server
    for process in server.clients:  # a stream that hung (before the fix) must not outlive us
        if process.poll() is None:
            process.kill()
            process.wait()
    if server.process is not None and server.process.poll() is not None:
        server.start()  # reclaims the killed server's slot in JACK's registry
    server.stop()
    for leftover in Path("/dev/shm").glob(f"jack_sem.*_{server.name}_*"):
        leftover.unlink(missing_ok=True)  # semaphores of clients whose server was killed


def _stream(jack: KillableJack, model: str, *flags: str) -> subprocess.Popen[str]:
    """``edgeser stream`` on the server's capture device, JSON lines on stdout."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeser", "stream", "--model", model, "--device", "system",
         "--format", "jsonl", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=jack.env,
    )  # fmt: skip
    jack.clients.append(process)
    return process


def test_killed_server_ends_the_stream_with_a_device_error_and_exit_2(jack, tiny_model_path):
    process = _stream(jack, str(tiny_model_path))
    first = json.loads(process.stdout.readline())
    jack.kill()
    killed = time.monotonic()
    _, err = process.communicate(timeout=30)
    ended_s = time.monotonic() - killed
    assert first["end_s"] == 1.0
    assert process.returncode == 2, err
    assert ended_s < 8.0  # the watchdog fires 2 s after the last block; no hang in PortAudio
    lines = err.strip().splitlines()
    assert lines[-2].startswith("edgeser: stream stopped: ")  # the summary, then the error
    assert lines[-1] == (
        "edgeser: error: input device 'system' stopped delivering audio (nothing for 2 s): "
        "unplugged, or its audio server stopped"
    )
    assert "Traceback" not in err and "Assertion" not in err


def test_ctrl_c_on_a_vanished_device_still_stops_at_once(jack, tiny_model_path):
    process = _stream(jack, str(tiny_model_path))
    json.loads(process.stdout.readline())
    jack.kill()
    time.sleep(0.5)  # the device is gone, the watchdog has not fired yet
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - interrupted < 5.0
    assert process.returncode == 0, err
    assert err.strip().splitlines()[-1].startswith("edgeser: stream stopped: ")


def test_reconnect_resumes_readings_when_the_device_comes_back(jack, tiny_model_path):
    process = _stream(jack, str(tiny_model_path), "--reconnect")
    first = json.loads(process.stdout.readline())
    jack.kill()
    time.sleep(0.5)
    jack.start()  # the same device, back
    times = [first["end_s"]]
    while times[-1] - (times[-2] if len(times) > 1 else 0.0) <= 1.0:  # until the gap
        times.append(json.loads(process.stdout.readline())["end_s"])
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert times[0] == 1.0
    # before the loss a reading every hop (0.25 s); after it, readings resume past a gap of
    # at least the watchdog's 2 s plus a whole new window (1 s)
    assert all(b - a == pytest.approx(0.25) for a, b in itertools.pairwise(times[:-1]))
    assert times[-1] - times[-2] >= 3.0
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("edgeser: stream stopped: ") and summary.endswith(", 1 reconnects")


def test_api_stream_raises_a_device_error_and_stop_returns_at_once(jack, tiny_model, monkeypatch):
    import edgeser

    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack.name)  # the capture process's server
    stream = edgeser.Stream(tiny_model, edgeser.DeviceSource("system"))
    readings = []
    with pytest.raises(edgeser.DeviceError, match="input device 'system' stopped delivering"):
        for reading in stream:
            readings.append(reading)
            if len(readings) == 1:
                jack.kill()
                killed = time.monotonic()
    assert 1.5 < time.monotonic() - killed < 8.0  # the watchdog: 2 s without a block
    began = time.monotonic()
    stream.stop()
    assert time.monotonic() - began < 2.0
    assert stream.stats.reconnects == 0


def test_api_reconnect_counts_the_return_in_stats(jack, tiny_model, monkeypatch):
    import edgeser

    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack.name)
    source = edgeser.DeviceSource("system", reconnect=True, watchdog_s=1.0, retry_s=0.5)
    readings = []
    with edgeser.Stream(tiny_model, source) as stream:
        for reading in stream:
            readings.append(reading)
            if len(readings) == 1:
                jack.kill()
                jack.start()
            if stream.stats.reconnects and reading.end_s > readings[0].end_s + 1.0:
                break
    assert stream.stats.reconnects == 1
    assert stream.error is None


def test_the_capture_script_imports_nothing_of_edgeser_and_shares_its_rate():
    from edgeser import capture
    from edgeser.contract import SAMPLE_RATE

    assert capture.RATE == SAMPLE_RATE
    source = Path(capture.__file__).read_text()  # it runs as a script: no package imports
    assert "from ." not in source and "import edgeser" not in source
