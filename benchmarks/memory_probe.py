"""Child processes of the memory benchmark; each prints one JSON object (MiB, seconds).

- ``python -m benchmarks.memory_probe load MODEL AUDIO``: RSS before and after loading a model
  and the peak while scoring a file, in a process that imports only the runtime (as one on a
  Raspberry Pi would).
- ``python -m benchmarks.memory_probe long MODEL CALL SECONDS RATE``: the peak RSS that one
  ``predict`` (int16 array) or ``score_file`` (16-bit WAV) call on SECONDS of speech at RATE Hz
  adds to the process, the input already in memory (or on disk).
- ``python -m benchmarks.memory_probe first-row COMMAND...``: runs COMMAND, times its start to
  its second stdout line (the first reading after a CSV header) and reports its peak RSS. This
  launcher is a small process: Linux counts the RSS a child inherits at fork in its peak, so
  the benchmark itself (with torch loaded) must not be the parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def status_mib(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def load_and_score(model_path: str, audio_path: str) -> dict:
    """Measure one load-and-score cycle of the runtime in this process."""
    import edgeser.model

    before = status_mib("VmRSS")
    model = edgeser.model.load(model_path, threads=1)
    after = status_mib("VmRSS")
    scores = model.score_file(audio_path)
    return {
        "rss_runtime_imported_mib": round(before, 1),
        "rss_model_loaded_mib": round(after, 1),
        "model_load_added_mib": round(after - before, 1),
        "peak_rss_mib": round(status_mib("VmHWM"), 1),
        "windows": len(scores.windows),
        "torch_imported": "torch" in sys.modules,
    }


def long_input(model_path: str, call: str, seconds: str, rate: str) -> dict:
    """Peak RSS added by one predict/score_file call on ``seconds`` of tiled example speech."""
    import numpy as np
    import soundfile as sf

    import edgeser.model
    from edgeser.audio import read_audio

    model = edgeser.model.load(model_path, threads=1)
    sr = int(rate)
    speech = read_audio(Path(__file__).resolve().parents[1] / "examples" / "speech.wav")
    n = max(1, round(float(seconds) * sr))
    pcm = np.resize(np.round(speech * 32767).astype(np.int16), n)  # rate only relabels it
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.wav"
        if call == "score_file":
            sf.write(str(path), pcm, sr, subtype="PCM_16")
            del pcm
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the RSS now
        before = status_mib("VmRSS")
        t0 = time.perf_counter()
        result = model.predict(pcm, sr) if call == "predict" else model.score_file(path).aggregate
        elapsed = time.perf_counter() - t0
        peak = status_mib("VmHWM")
    return {
        "call": call,
        "seconds_of_audio": float(seconds),
        "rate": sr,
        "rss_before_call_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "call_added_mib": round(peak - before, 1),
        "wall_s": round(elapsed, 1),
        "voiced": result.voiced,
    }


def first_row(argv: list[str]) -> dict:
    """Seconds from spawning ``argv`` to its second stdout line, and its peak RSS."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # the CSV header
        first = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode or not first.strip():
            err.seek(0)
            last = (err.read().decode().strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"`{' '.join(argv[:2])} ...` failed: {last}")
    return {"seconds": elapsed, "peak_rss_mib": usage.ru_maxrss / 1024}


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "load":
        result = load_and_score(*args)
    elif mode == "long":
        result = long_input(*args)
    else:
        result = first_row(args)
    print(json.dumps(result))
