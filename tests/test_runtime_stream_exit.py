"""A Stream left running at interpreter exit (abandoned ``for`` loop, no ``stop()``) never aborts
the process: before the fix, its worker, still inside onnxruntime when the interpreter shut down,
was killed by ``pthread_exit`` unwinding C++ frames: ``terminate called without an active
exception``, exit 134 (20 of 24 runs on a loaded machine)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from edgeser.contract import SAMPLE_RATE

RUNS = 6  # at once: the load keeps each worker busy inside onnxruntime at exit

ABANDONED_LOOP = """
import sys, edgeser
model = edgeser.load(backend="onnxruntime")
for i, reading in enumerate(edgeser.Stream(model, edgeser.FileSource(sys.argv[1]), vad=None)):
    if i == 2:
        break
"""

NEVER_STOPPED = """
import sys, threading, edgeser
model = edgeser.load(backend="onnxruntime")
scoring = threading.Event()
stream = edgeser.Stream(model, edgeser.FileSource(sys.argv[1]), vad=None,
                        callback=lambda reading: scoring.set())
stream.start()
assert scoring.wait(30)
"""


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> str:
    """Two minutes of voice: far more than a process scores before it exits."""
    path = tmp_path_factory.mktemp("exit") / "long.wav"
    sf.write(path, np.tile(voice_like(10.0), 12), SAMPLE_RATE)
    return str(path)


@pytest.mark.parametrize("script", [ABANDONED_LOOP, NEVER_STOPPED], ids=["break", "no-stop"])
@pytest.mark.timeout(120)
def test_a_stream_running_at_exit_never_aborts_the_process(script, long_file):
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, long_file],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RUNS)
    ]
    ends = [(run.wait(timeout=100), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    assert [rc for rc, _ in ends] == [0] * RUNS, [err for rc, err in ends if rc]
    assert not any(err.strip() for _, err in ends)
