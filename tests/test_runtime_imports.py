"""The runtime stays light: importing, scoring and streaming pull in no workstation library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SPEECH_WAV

FORBIDDEN = ("torch", "librosa", "transformers", "scipy", "numba", "onnx", "ray", "tqdm")

SCRIPT = """
import json, sys
import edgeser
from edgeser.cli import main

model = edgeser.load(sys.argv[1])
model.score_file(sys.argv[2])
with edgeser.Stream(model, edgeser.FileSource(sys.argv[2])) as stream:
    readings = list(stream)
main(["score", "--model", sys.argv[1], "--per-window", sys.argv[2]])
main(["stream", "--model", sys.argv[1], "--from-file", sys.argv[2], "--format", "jsonl"])
roots = {name.split(".")[0] for name in sys.modules}
print(json.dumps({"readings": len(readings), "roots": sorted(roots)}))
"""


def test_import_score_and_stream_load_no_heavy_library(tiny_model_path):
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_path), str(SPEECH_WAV)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["readings"] > 0
    assert "onnxruntime" in report["roots"]  # soxr loads when a file needs resampling
    assert sorted(set(FORBIDDEN) & set(report["roots"])) == []


# The same, on a device without onnxruntime and soxr: importing either fails.
BLOCKED_SCRIPT = """
import sys
sys.modules["onnxruntime"] = None  # `import onnxruntime` now raises ImportError
sys.modules["soxr"] = None
import json, logging
import numpy as np
logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
import edgeser
from edgeser.cli import main

model = edgeser.load()
again = edgeser.load(sys.argv[1])  # the choice is announced once, not per model
reading = model.predict(np.sin(np.arange(48_000) / 7.0).astype(np.float32) * 0.1, 48_000)
windows = model.score_file(sys.argv[2]).windows
with edgeser.Stream(model, edgeser.BlockSource(np.array_split(np.repeat(
        edgeser.audio.read_audio(sys.argv[2]), 3), 40), 48_000)) as stream:
    readings = list(stream)
main(["score", "--model", sys.argv[1], sys.argv[2]])
try:
    edgeser.load(sys.argv[1], backend="onnxruntime")
    refused = ""
except edgeser.ConfigError as exc:
    refused = str(exc)
roots = {name.split(".")[0] for name in sys.modules if sys.modules[name] is not None}
print(json.dumps({"backends": [model.backend, again.backend], "adv": reading.adv,
                  "refused": refused, "windows": len(windows), "readings": len(readings),
                  "roots": sorted(roots)}))
"""


def test_without_onnxruntime_and_soxr_the_numpy_backend_and_resampler_take_over(
    tiny_model_path, tmp_path
):
    """onnxruntime and soxr not importable: load picks the numpy backend with one log line,
    48 kHz audio is resampled in numpy, and nothing compiled beyond numpy (and soundfile's
    libsndfile) is imported: no onnxruntime, onnx, protobuf or soxr."""
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED_SCRIPT, str(tiny_model_path), str(SPEECH_WAV)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "EDGESER_BACKEND"},
             "XDG_CACHE_HOME": str(tmp_path)},  # a fresh install: the notice is due
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["backends"] == ["numpy", "numpy"]
    assert all(0.0 < v < 1.0 for v in report["adv"])
    assert report["windows"] > 1 and report["readings"] > 1
    assert report["refused"].startswith("backend 'onnxruntime' is not importable")
    heavy = {"onnxruntime", "onnx", "google", "soxr", *FORBIDDEN}
    assert sorted(heavy & set(report["roots"])) == []
    logged = [line for line in run.stderr.splitlines() if line.startswith("LOG ")]
    assert logged == [
        "LOG onnxruntime is not importable (import of onnxruntime halted; None in sys.modules); "
        "using the numpy backend"
    ]
