"""Writes benchmarks/PI.md from the results of benchmarks/pi/check.sh: per Pi core, whether the
documented install (docs/raspberry-pi.md) worked, the versions it installed, and how far its
readings are from x86.
The last line is ``ok`` or ``FAIL``. ``python -m benchmarks.pi.report --results DIR ...``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..machine import cpu_model, git_commit

REPO = Path(__file__).resolve().parents[2]
# Largest |ARM - x86| accepted for a reading (A/D/V are about 0..1): onnxruntime's int8
# kernels differ per CPU family (x86, aarch64 and 32-bit ARM each have their own), so the
# readings of an int8 model differ in the last digits; 2e-3 is far below what a reading means.
TOLERANCE = 2e-3
# edgeser score prints 4 decimals, so its numbers may differ by one more rounding step.
PRINTED_TOLERANCE = TOLERANCE + 1e-4
DEFAULT_BACKEND = "default"
PARTS = ("predict", "predict_resampled", "score_file_windows", "score_file_aggregate", "stream")
PI_OF_CORE = {
    "cortex-a53": "Pi 3, Zero 2 W",
    "cortex-a72": "Pi 4, 400, CM4",
    "cortex-a76": "Pi 5, 500, CM5",
    "cortex-a7": "Pi 2",
    "arm1176": "Pi 1, Zero, Zero W",
}
# The Debian release of each arch's userland (check.sh's suite()): trixie, bookworm for armel.
RELEASE_OF_ARCH = {"armel": "bookworm"}


@dataclass
class CoreResult:
    """What one Pi core's run left in the results folder, compared with x86."""

    flavour: str
    arch: str
    core: str
    backend: str  # "default" (load's own choice, as a user gets it) or the backend asked for
    rc: int | None
    check: dict[str, Any] | None
    score_diff: float | None
    part_diffs: dict[str, float]
    error: str
    stderr: list[str]

    @property
    def failure(self) -> str:
        """Why this core failed ("" when it did not): the first check that did not hold."""
        if self.rc != 0 or self.check is None:
            return f"exit {self.rc}: {self.error}"
        score_far = self.score_diff is None or self.score_diff > PRINTED_TOLERANCE
        if self.backend == DEFAULT_BACKEND and score_far:
            return "`edgeser score` printed other numbers than x86"
        far = [p for p in PARTS if self.part_diffs.get(p, math.inf) > TOLERANCE]
        return f"{', '.join(far)} differ from x86 by more than {TOLERANCE:g}" if far else ""

    @property
    def ok(self) -> bool:
        """Ran, printed the x86 score and matched x86 within the tolerance in every part."""
        return not self.failure


def max_abs_diff(a: list[list[float | None]], b: list[list[float | None]]) -> float:
    """Largest |a - b| over two equally shaped reading lists; inf when shapes or gating differ."""
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b, strict=True)):
        return math.inf
    diffs = [0.0]
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if (u is None) != (v is None):
                return math.inf
            if u is not None and v is not None:
                diffs.append(abs(u - v))
    return max(diffs)


def score_numbers(text: str) -> list[float]:
    """The decimal numbers of ``edgeser score``'s csv rows (header and file names skipped)."""
    rows = [line.split(",", 1)[1] for line in text.strip().splitlines()[1:] if "," in line]
    return [float(n) for row in rows for n in re.findall(r"-?\d+\.\d+", row)]


def score_diff(arm: str, x86: str) -> float | None:
    """Largest |ARM - x86| over the printed numbers; None when the outputs do not line up."""
    a, b = score_numbers(arm), score_numbers(x86)
    if not a or len(a) != len(b):
        return None
    return max(abs(u - v) for u, v in zip(a, b, strict=True))


def read_text(path: Path) -> str:
    """A results file's text, or "" when the run did not get that far."""
    return path.read_text() if path.exists() else ""


def load_core(
    results: Path,
    flavour: str,
    arch: str,
    core: str,
    x86: dict[str, Any],
    backend: str = DEFAULT_BACKEND,
) -> CoreResult:
    """The result of one core's run (with one backend), compared part by part with the x86
    reference (load's default there)."""
    stem = core if backend == DEFAULT_BACKEND else f"{core}.{backend}"
    rc_text = read_text(results / f"{stem}.rc").strip()
    check_text = read_text(results / f"{stem}.json").strip()
    check = json.loads(check_text.splitlines()[-1]) if check_text else None
    diffs = {p: max_abs_diff(check[p], x86[p]) for p in PARTS} if check else {}
    err = read_text(results / f"{stem}.err").strip().splitlines()
    return CoreResult(
        flavour=flavour,
        arch=arch,
        core=core,
        backend=backend,
        rc=int(rc_text) if rc_text else None,
        check=check,
        score_diff=score_diff(
            read_text(results / f"{stem}.score"), read_text(results / "x86_64.score")
        ),
        part_diffs=diffs,
        error=err[-1] if err else "",
        stderr=[line for line in err if line.strip()],
    )


@dataclass
class BrokenWheelResult:
    """PyPI's onnxruntime 1.21.0 aarch64 wheel under a Pi 4 core: the exit status of importing
    it, and of importing edgeser (which must refuse it with a DependencyError)."""

    onnxruntime_rc: int | None
    edgeser_rc: int | None
    edgeser_error: str

    @property
    def ok(self) -> bool:
        """edgeser refused the wheel with its DependencyError instead of dying."""
        return self.edgeser_rc == 1 and "DependencyError" in self.edgeser_error

    def line(self) -> str:
        """One paragraph for PI.md."""
        ort = {None: "not run", 0: "imports", 132: "dies with SIGILL (exit 132)"}.get(
            self.onnxruntime_rc, f"exit {self.onnxruntime_rc}"
        )
        return (
            "PyPI's onnxruntime 1.21.0 aarch64 wheel (`pip install . onnxruntime==1.21.0`), "
            f"under `cortex-a72` (Pi 4): `import onnxruntime` {ort}; `import edgeser` exits "
            f"{self.edgeser_rc} with `{self.edgeser_error or 'no error'}`: "
            + ("ok" if self.ok else "FAIL")
        )


def load_broken_wheel(results: Path) -> BrokenWheelResult:
    """What check.sh's broken-wheel step left (None statuses when it did not run)."""
    ort = read_text(results / "ort-1.21.0.onnxruntime.rc").strip()
    rc = read_text(results / "ort-1.21.0.edgeser.rc").strip()
    err = read_text(results / "ort-1.21.0.edgeser.err").strip().splitlines()
    return BrokenWheelResult(
        int(ort) if ort else None, int(rc) if rc else None, err[-1] if err else ""
    )


def userland_cores(specs: list[str]) -> list[tuple[str, str, str]]:
    """(flavour, Debian arch, core) for each ``arch:flavour:core core...`` spec of check.sh."""
    cores = []
    for spec in specs:
        arch, flavour, names = spec.split(":", 2)
        cores.extend((flavour, arch, core) for core in names.split())
    return cores


def _fmt(value: float | None) -> str:
    """A difference for the table: scientific, or "-" when there is none."""
    return "-" if value is None else ("mismatch" if math.isinf(value) else f"{value:.1e}")


def onnxruntime_build(check: dict[str, Any]) -> str:
    """onnxruntime's version and where it came from (PyPI wheel or the distribution)."""
    version = check["versions"].get("onnxruntime") or "absent"
    source = check.get("onnxruntime_source")
    return f"{version} ({source})" if source else version


def render(
    cores: list[CoreResult],
    broken: BrokenWheelResult | None,
    x86: dict[str, Any],
    when: str,
    commit: str,
) -> str:
    """PI.md: what was checked, the per-core table, the broken-wheel check, what it does not
    show, then ok/FAIL."""
    ok = bool(cores) and all(c.ok for c in cores) and (broken is None or broken.ok)
    rows = []
    for c in cores:
        v = c.check["versions"] if c.check else {}
        rows.append(
            "| "
            + " | ".join(
                [
                    c.flavour,
                    f"Debian {RELEASE_OF_ARCH.get(c.arch, 'trixie')} {c.arch}",
                    f"`{c.core}` ({PI_OF_CORE.get(c.core, '?')})",
                    c.backend,
                    c.check["python"] if c.check else "-",
                    v.get("numpy") or "-",
                    onnxruntime_build(c.check) if c.check else "-",
                    v.get("soxr") or "-",
                    v.get("soundfile") or "-",
                    _fmt(c.score_diff),
                    *(_fmt(c.part_diffs.get(p)) for p in PARTS),
                    "ok" if c.ok else f"FAIL: {c.failure}",
                ]
            )
            + " |"
        )
    xv = x86["versions"]
    return "\n".join(
        [
            "# edgeser on Raspberry Pi cores (Debian userlands under QEMU)",
            "",
            f"Command: `sudo benchmarks/pi/check.sh` on {when}, commit {commit}; "
            f"x86 reference on this host ({cpu_model()}, Python {x86['python']}, "
            f"numpy {xv['numpy']}, onnxruntime {xv['onnxruntime']}, soxr {xv['soxr']}).",
            "",
            "What was checked, per row: a Debian trixie userland (bookworm for armel, the "
            "architecture that runs on ARMv6) built by debootstrap for the Pi "
            "OS flavour's architecture, run by qemu-user through binfmt_misc with `QEMU_CPU` set "
            "to the Pi's core (the guest gets that core's instruction set, so code built for a "
            "newer core dies with SIGILL as on the Pi) and a Pi's `/proc/cpuinfo`; this checkout "
            "installed by the documented Raspberry Pi commands for that flavour, run verbatim "
            "(read from docs/raspberry-pi.md; `sudo` lines as root, since setuid cannot take "
            "effect under qemu-user, the others as user `pi`); then, as user `pi`, the documented "
            "`~/edgeser-venv/bin/edgeser score examples/speech.wav` and "
            "`benchmarks/pi/parity.py` (`edgeser.load()` of the bundled int8 model, `predict` "
            "at 16 kHz and at 48 kHz (soxr resampling; numpy's where soxr is absent), `score_file` "
            "windows and aggregate, a "
            "`Stream` fed by a `FileSource`).",
            "",
            f"Columns `score` to `stream`: the largest |Pi - x86| of the readings (A/D/V); "
            f"a row is ok when every one is at most {TOLERANCE:g} ({PRINTED_TOLERANCE:g} for "
            "the 4-decimal `edgeser score` output) and nothing failed. Backend `default` is "
            "what `edgeser.load()` picks, as a user gets it; a row with another backend runs "
            "parity.py with `edgeser.load(backend=...)` (no `edgeser score`) against the same "
            "x86 reference.",
            "",
            "| Pi OS | userland | core | backend | Python | numpy | onnxruntime | soxr "
            "| soundfile | score | predict | predict 48k | windows | aggregate | stream | result |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- | --- |",
            *rows,
            "",
            *[
                f"`{c.core}`: the runs wrote {len(c.stderr)} lines to stderr, e.g. "
                f"`{c.stderr[0][:160]}`"
                + ("" if len({line for line in c.stderr}) > 1 else " (all alike)")
                + "\n"
                for c in cores
                if c.stderr
            ],
            *([broken.line(), ""] if broken else []),
            "What this does not show: speed (emulated instructions say nothing about a Pi's "
            "timing; `python -m benchmarks --pi-report` on real hardware does), live audio "
            "through PortAudio (no sound device in the chroot: `Stream` is fed from a file), "
            "the Pi's real kernel, firmware and memory limits, and Pi OS's own package "
            "archive (Debian's packages stand in for it).",
            "",
            "ok" if ok else "FAIL",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pi.report", description=__doc__)
    parser.add_argument("--results", type=Path, required=True, help="check.sh's results folder")
    parser.add_argument("--userlands", nargs="+", required=True, help="arch:flavour:cores specs")
    parser.add_argument(
        "--backends", nargs="*", default=[], help="backends run besides load's default"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "PI.md")
    args = parser.parse_args(argv)
    x86 = json.loads(read_text(args.results / "x86_64.json"))
    cores = [
        load_core(args.results, flavour, arch, core, x86, backend)
        for flavour, arch, core in userland_cores(args.userlands)
        for backend in [DEFAULT_BACKEND, *args.backends]
    ]
    arm64 = any(arch == "arm64" for _, arch, _ in userland_cores(args.userlands))
    broken = load_broken_wheel(args.results) if arm64 else None
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = render(cores, broken, x86, when, git_commit(REPO))
    args.out.write_text(text)
    return 0 if text.rstrip().endswith("\nok") else 1


if __name__ == "__main__":
    sys.exit(main())
