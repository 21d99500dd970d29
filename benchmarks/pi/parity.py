"""The runtime on one machine, as JSON: versions, and the readings of ``load`` / ``predict`` /
``score_file`` / a ``Stream`` fed from a file. Runs with the runtime only (no repository
import), so it runs the same on x86 and inside an ARM userland: ``python parity.py AUDIO
[BACKEND]`` (BACKEND: passed to ``edgeser.load(backend=...)``; default: load's own choice)."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from typing import Any

import numpy as np
import soundfile

import edgeser
from edgeser.onnxruntime_build import wheel_tags

PACKAGES = ("edgeser", "numpy", "onnxruntime", "soxr", "soundfile", "sounddevice", "cffi")


def versions() -> dict[str, str | None]:
    """Installed version of each runtime package (None when absent)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def onnxruntime_source() -> str | None:
    """Where onnxruntime came from: a PyPI wheel, a Debian package, or another build; None
    where it is not installed (ARMv6: the numpy backend runs)."""
    try:
        dist = metadata.distribution("onnxruntime")
    except metadata.PackageNotFoundError:
        return None
    if any("manylinux" in tag for tag in wheel_tags(dist)):
        return "PyPI wheel"
    if "/usr/lib/python3/dist-packages" in str(dist.locate_file("")):
        return "Debian package"
    return "local build"


def adv_rows(readings: list[edgeser.Reading]) -> list[list[float | None]]:
    """Arousal, dominance, valence of each reading (None for an unvoiced one)."""
    return [[None if np.isnan(v) else float(v) for v in r.adv] for r in readings]


def check(audio: str, backend: str | None = None) -> dict[str, Any]:
    """Every runtime entry point on ``audio``: the readings to compare across machines."""
    model = edgeser.load() if backend is None else edgeser.load(backend=backend)
    signal, rate = soundfile.read(audio, dtype="float32")
    doubled = np.repeat(signal, 3)  # 3x the rate: predict must resample (soxr) to 16 kHz
    with edgeser.Stream(model, edgeser.FileSource(audio)) as stream:
        streamed = list(stream)
    return {
        "backend": backend or "default",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": versions(),
        "onnxruntime_source": onnxruntime_source(),
        "predict": adv_rows([model.predict(signal, rate)]),
        "predict_resampled": adv_rows([model.predict(doubled, rate * 3)]),
        "score_file_windows": adv_rows(model.score_file(audio).windows),
        "score_file_aggregate": adv_rows([model.score_file(audio).aggregate]),
        "stream": adv_rows(streamed),
    }


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
