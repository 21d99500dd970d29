"""Memory and cold start of the runtime, measured in fresh processes (``memory_probe``).

- peak RSS and the memory added by loading the model, in a runtime-only process;
- cold start of ``edgeser score`` on a 3 s file: process start to the first reading on stdout
  (median of several runs), and that process's peak RSS;
- ``python -m benchmarks.memory``: the peak RSS that one ``predict`` or ``score_file`` call
  adds for 1 min and 1 h of audio (and 1 h at the lowest accepted rate), written to
  ``benchmarks/memory_long.md``.
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


LONG_CASES = (
    ("predict", 60.0, 16_000),
    ("predict", 3600.0, 16_000),
    ("score_file", 60.0, 16_000),
    ("score_file", 3600.0, 16_000),
    ("predict", 3600.0, 4_000),  # the lowest rate accepted: upsampled 4-fold
)


def long_inputs(model: Path) -> list[dict[str, Any]]:
    """Peak RSS added by one call on each of ``LONG_CASES``, each in a fresh process."""
    return [probe("long", str(model), call, str(s), str(rate)) for call, s, rate in LONG_CASES]


def long_inputs_markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The memory_long.md report."""
    from .machine import machine_info

    info = machine_info(REPO)
    lines = [
        "# Memory of one call on long audio",
        "",
        f"Produced by `{command}` on {info['date_utc']} ({info['cpu']}, "
        f"{info['cores_usable']} usable cores, git {info['git']}). Each row is a fresh process "
        "with the bundled model loaded and the input already in memory (predict: an int16 "
        "array of the example speech tiled to length; score_file: a 16-bit WAV of it); the "
        "peak RSS (VmHWM) is reset just before the call, so *added* is what the call itself "
        "needs on top. predict scores a clip longer than 4 model windows window by window.",
        "",
        "| call | audio | rate | RSS before | peak during | added by the call | wall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['call']}` | {r['seconds_of_audio'] / 60:g} min | {r['rate']} Hz | "
            f"{r['rss_before_call_mib']} MiB | {r['peak_rss_mib']} MiB | "
            f"{r['call_added_mib']} MiB | {r['wall_s']} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Measure the long-input cases with the bundled model; write memory_long.md and .json."""
    model = REPO / "edgeser" / "models" / "default.onnx"
    rows = long_inputs(model)
    out = REPO / "benchmarks" / "memory_long"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text(long_inputs_markdown(rows, "python -m benchmarks.memory"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
