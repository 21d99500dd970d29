"""The runtime stays light: importing, scoring and streaming pull in no workstation library."""

from __future__ import annotations

import json
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
    assert "onnxruntime" in report["roots"] and "soxr" in report["roots"]
    assert sorted(set(FORBIDDEN) & set(report["roots"])) == []
