"""``python -m benchmarks --pi-report``: times the bundled model on this machine (meant for a
real Raspberry Pi) and prints the lines to paste into an issue: board, core, OS, versions,
latency per window, real-time factor, and the share of one core a stream takes. Needs the
runtime only (no torch), so it runs in the venv the README's Raspberry Pi commands make."""

from __future__ import annotations

import platform
import struct
from importlib import metadata
from pathlib import Path
from typing import Any

import soundfile

import edgeser
from edgeser.contract import SAMPLE_RATE
from edgeser.onnxruntime_build import wheel_tags

from .machine import cpu_model
from .timing import Workload, measure

REPO = Path(__file__).resolve().parent.parent
AUDIO = REPO / "examples" / "speech.wav"
STREAM_HOP_S = 0.25  # the Streaming section's hop, besides the model's own
# ARM's "CPU part" numbers in /proc/cpuinfo, for the cores of Raspberry Pi boards.
ARM_PARTS = {
    "0xb76": "ARM1176",
    "0xc07": "Cortex-A7",
    "0xd03": "Cortex-A53",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
}


def cpuinfo_field(name: str, text: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo's text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def board(cpuinfo: str) -> str:
    """The board's name (a Pi's device tree, else cpuinfo's Model line, else the machine)."""
    tree = Path("/proc/device-tree/model")
    if tree.is_file():
        return tree.read_text(errors="replace").strip("\x00\n ")
    return cpuinfo_field("Model", cpuinfo) or platform.machine()


def core(cpuinfo: str) -> str:
    """The CPU core's name from its ARM part number, else the CPU's model name."""
    part = cpuinfo_field("CPU part", cpuinfo)
    return ARM_PARTS.get(part or "", f"ARM part {part}") if part else cpu_model()


def os_name() -> str:
    """PRETTY_NAME from /etc/os-release, else ``platform``'s system and release."""
    release = Path("/etc/os-release")
    if release.is_file():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return f"{platform.system()} {platform.release()}"


def onnxruntime_build() -> str:
    """onnxruntime's version and whether it is a PyPI wheel or another (distribution) build."""
    dist = metadata.distribution("onnxruntime")
    tags = wheel_tags(dist)
    return f"{dist.version} ({'PyPI wheel ' + tags[0] if tags else 'distribution build'})"


def gather(iterations: int = 100) -> dict[str, Any]:
    """This machine and the bundled model's latency per window, one thread."""
    cpuinfo_path = Path("/proc/cpuinfo")
    cpuinfo = cpuinfo_path.read_text() if cpuinfo_path.is_file() else ""
    model = edgeser.load(threads=1)
    window_s, hop_s = model.window_hop(None, None)
    signal, rate = soundfile.read(AUDIO, dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{AUDIO}: expected {SAMPLE_RATE} Hz, got {rate}")
    window = signal[: round(window_s * SAMPLE_RATE)]
    work = Workload("window", lambda: model.score_window(window), window_s)
    (latency,) = measure([work], threads=1, iterations=iterations, warmup=3)
    return {
        "board": board(cpuinfo),
        "core": core(cpuinfo),
        "os": os_name(),
        "python": f"{platform.python_version()} ({struct.calcsize('P') * 8}-bit)",
        "edgeser": edgeser.__version__,
        "onnxruntime": onnxruntime_build(),
        "numpy": metadata.version("numpy"),
        "model": f"{model.info.model_version} ({model.path.name})",
        "window_s": window_s,
        "hop_s": hop_s,
        "iterations": latency.n,
        "p50_ms": latency.p50_ms,
        "p95_ms": latency.p95_ms,
        "cpu_p50_ms": latency.cpu_p50_ms,
    }


def format_report(r: dict[str, Any]) -> str:
    """The Markdown lines to paste: a two-column table plus the command that made it."""
    p50 = r["p50_ms"] / 1000
    rows = [
        ("board", r["board"]),
        ("core", r["core"]),
        ("OS", r["os"]),
        ("Python", r["python"]),
        ("edgeser", r["edgeser"]),
        ("onnxruntime", r["onnxruntime"]),
        ("numpy", r["numpy"]),
        ("model", r["model"]),
        ("window / hop", f"{r['window_s']:g} s / {r['hop_s']:g} s, 1 thread"),
        (
            "latency per window",
            f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
            f"CPU p50 {r['cpu_p50_ms']:.1f} ms (n = {r['iterations']})",
        ),
        ("RTF per window (p50 / window)", f"{p50 / r['window_s']:.4f}"),
        (f"one stream, hop {r['hop_s']:g} s", f"{100 * p50 / r['hop_s']:.1f} % of one core"),
        (f"one stream, hop {STREAM_HOP_S:g} s", f"{100 * p50 / STREAM_HOP_S:.1f} % of one core"),
    ]
    lines = ["<!-- edgeser pi-report: python -m benchmarks --pi-report -->", "| | |", "| - | - |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)
