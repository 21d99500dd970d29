"""``python -m benchmarks.pi_budget``: the compute one stream of the bundled model needs on each
Raspberry Pi, as the README's table. Needed: multiply-accumulates per second of audio, counted
from the model (``flops.count_macs`` on the Wav2Small its card describes) at its default window
and hop, and at the Streaming section's 0.25 s hop. Share of one core: an ESTIMATE, this host's
measured CPU time per window scaled by peak SIMD multiply-accumulates per second (host core / Pi
core), i.e. assuming a Pi core reaches the same fraction of its peak as this host does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .pi_report import STREAM_HOP_S, gather
from .students import bundled_students

# fp32 multiply-accumulates per cycle per core at peak: x86 with AVX2 + FMA (two 256-bit FMA
# units) for this host; two 128-bit NEON FMA pipes on Cortex-A76, one 128-bit FMA per cycle on
# A72 and A53, 64-bit NEON on A7 (ARM's software optimisation guides).
HOST_MACS_PER_CYCLE = 16


@dataclass(frozen=True)
class PiCore:
    """A Raspberry Pi model's core: name, clock and peak fp32 MACs per cycle."""

    pi: str
    core: str
    clock_ghz: float
    macs_per_cycle: int

    @property
    def peak_gmacs(self) -> float:
        """Peak fp32 multiply-accumulates per second of one core, in G."""
        return self.clock_ghz * self.macs_per_cycle


PI_CORES = (
    PiCore("Pi 5", "Cortex-A76", 2.4, 8),
    PiCore("Pi 4 B (2021 on), 400", "Cortex-A72", 1.8, 4),
    PiCore("Pi 4 B (before 2021)", "Cortex-A72", 1.5, 4),
    PiCore("Pi 3 B+", "Cortex-A53", 1.4, 4),
    PiCore("Pi 3 B", "Cortex-A53", 1.2, 4),
    PiCore("Zero 2 W", "Cortex-A53", 1.0, 4),
    PiCore("Pi 2 B", "Cortex-A7", 0.9, 2),
)


def host_clock_ghz(cpuinfo: str) -> float:
    """This host's clock from /proc/cpuinfo's first ``cpu MHz`` line."""
    for line in cpuinfo.splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":", 1)[1]) / 1000
    raise ValueError("/proc/cpuinfo has no 'cpu MHz' line")


def core_share(host_s_per_window: float, host_peak_gmacs: float, pi: PiCore, hop_s: float) -> float:
    """Estimated share of one Pi core for one stream: the host's time per window, scaled by
    the peak ratio, per hop."""
    return host_s_per_window * host_peak_gmacs / pi.peak_gmacs / hop_s


def budget_table(
    window_macs: int, window_s: float, hop_s: float, host_s: float, host_peak: float
) -> str:
    """The README table: MACs per second of audio and estimated core share per Pi model."""
    need = window_macs / hop_s / 1e6
    need_fast = window_macs / STREAM_HOP_S / 1e6
    head = (
        f"| Pi | core | needed at hop {hop_s:g} s | est. share of one core "
        f"| needed at hop {STREAM_HOP_S:g} s | est. share of one core |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- |"]
    for pi in PI_CORES:
        share = core_share(host_s, host_peak, pi, hop_s)
        share_fast = core_share(host_s, host_peak, pi, STREAM_HOP_S)
        lines.append(
            f"| {pi.pi} | {pi.core} {pi.clock_ghz:g} GHz | {need:.0f} MMAC/s | ~{share:.0%} "
            f"| {need_fast:.0f} MMAC/s | ~{share_fast:.0%} |"
        )
    lines.append("")
    lines.append(
        f"Counted: {window_macs / 1e6:.1f}M MACs per {window_s:g} s window. Estimate basis: "
        f"{host_s * 1e3:.1f} ms CPU time per window (p50, one thread) on this host, peak "
        f"{host_peak:.1f} GMAC/s per core ({HOST_MACS_PER_CYCLE} fp32 MACs/cycle)."
    )
    return "\n".join(lines)


def main() -> int:
    report = gather()
    (bundled,) = bundled_students(report["window_s"])
    host_peak = host_clock_ghz(Path("/proc/cpuinfo").read_text()) * HOST_MACS_PER_CYCLE
    print(
        budget_table(
            bundled.macs or 0,
            report["window_s"],
            report["hop_s"],
            report["cpu_p50_ms"] / 1e3,
            host_peak,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
