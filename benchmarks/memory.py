"""Memory and cold start of the runtime, measured in fresh processes (``memory_probe``).

- peak RSS and the memory added by loading the model, in a runtime-only process;
- cold start of ``edgeser score`` on a 3 s file: process start to the first reading on stdout
  (median of several runs), and that process's peak RSS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def probe(*args: str) -> dict[str, Any]:
    """Run ``memory_probe`` with ``args`` in a fresh interpreter; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_probe", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def edgeser_command() -> str | None:
    """The ``edgeser`` console script of this interpreter's install (not a PATH shim that
    would add its own start-up time), or None when there is none."""
    beside = Path(sys.executable).with_name("edgeser")
    return str(beside) if beside.is_file() else shutil.which("edgeser")


def load_and_score(model: Path, audio: Path) -> dict[str, Any]:
    """RSS after importing the runtime, added by loading ``model``, peak scoring ``audio``."""
    return probe("load", str(model), str(audio))


def cold_start(model: Path, audio: Path, runs: int) -> dict[str, Any]:
    """``edgeser score AUDIO --model MODEL --format csv``, spawn to first data row: median
    over ``runs`` fresh processes, with their median peak RSS."""
    script = edgeser_command()
    if script is None:
        raise RuntimeError("no `edgeser` console script in this environment")
    argv = [script, "score", str(audio), "--model", str(model), "--format", "csv"]
    results = [probe("first-row", *argv) for _ in range(runs)]
    seconds = [r["seconds"] for r in results]
    return {
        "command": f"edgeser score {audio.name} --model {model.name} --format csv",
        "runs": runs,
        "median_s": round(float(np.median(seconds)), 3),
        "min_s": round(float(np.min(seconds)), 3),
        "peak_rss_mib": round(float(np.median([r["peak_rss_mib"] for r in results])), 1),
    }
