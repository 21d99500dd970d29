"""The Raspberry Pi reports: check.sh's PI.md verdict, ``--pi-report``'s lines to paste, and the
README's compute table. Logic only: no QEMU, no timing assertions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.pi import report
from benchmarks.pi_budget import PI_CORES, PiCore, budget_table, core_share, host_clock_ghz
from benchmarks.pi_report import board, core, cpuinfo_field, format_report, gather

REPO = Path(__file__).resolve().parent.parent
SCORE_CSV = "file,start_s,end_s,arousal,dominance,valence\nx.wav,0.000,7.066,0.6580,0.7093,0.7080\n"
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd08

Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_reading_differences_flag_shape_and_gating_mismatches():
    assert report.max_abs_diff([[0.5, 0.6, None]], [[0.5004, 0.6, None]]) == pytest.approx(4e-4)
    assert math.isinf(report.max_abs_diff([[0.5, 0.6, 0.7]], [[0.5, 0.6, None]]))
    assert math.isinf(report.max_abs_diff([[0.5, 0.6, 0.7]], []))


def test_score_output_is_compared_number_by_number():
    x86 = SCORE_CSV
    arm = x86.replace("0.7093", "0.7095")
    assert report.score_diff(arm, x86) == pytest.approx(2e-4)
    assert report.score_diff("", x86) is None
    assert report.score_diff(x86 + "x.wav,0.0,1.0,0.1,0.2,0.3\n", x86) is None


def write_core(results: Path, core_name: str, check: dict, score: str, rc: int) -> None:
    """What check.sh leaves for one core."""
    (results / f"{core_name}.json").write_text(json.dumps(check))
    (results / f"{core_name}.score").write_text(score)
    (results / f"{core_name}.rc").write_text(f"{rc}\n")
    (results / f"{core_name}.err").write_text("")


def run_report(tmp_path: Path, arm: dict, rc: int = 0, refused: bool = True) -> str:
    """PI.md for one arm64 core whose readings are ``arm``, against the x86 run, and the
    broken-wheel step (edgeser ``refused`` the wheel, or died with it)."""
    results = tmp_path / "results"
    results.mkdir(parents=True)
    (results / "ort-1.21.0.onnxruntime.rc").write_text("132\n")
    (results / "ort-1.21.0.edgeser.rc").write_text("1\n" if refused else "132\n")
    error = "edgeser.errors.DependencyError: onnxruntime 1.21.0 from PyPI ..." if refused else ""
    (results / "ort-1.21.0.edgeser.err").write_text(f"Traceback ...\n{error}\n")
    x86 = json.loads(
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks/pi/parity.py"),
                str(REPO / "examples/speech.wav"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    score = SCORE_CSV
    (results / "x86_64.json").write_text(json.dumps(x86))
    (results / "x86_64.score").write_text(score)
    write_core(results, "cortex-a72", arm(x86), score, rc)
    out = tmp_path / "PI.md"
    report.main(
        ["--results", str(results), "--userlands", "arm64:pi-64bit:cortex-a72", "--out", str(out)]
    )
    return out.read_text()


def test_pi_md_says_ok_only_when_every_part_matches(tmp_path):
    text = run_report(tmp_path / "same", lambda x86: x86)
    assert text.rstrip().splitlines()[-1] == "ok"
    assert "`cortex-a72` (Pi 4, 400, CM4)" in text

    def off(x86):
        moved = json.loads(json.dumps(x86))
        moved["stream"][0][1] += 2 * report.TOLERANCE
        return moved

    assert run_report(tmp_path / "off", off).rstrip().splitlines()[-1] == "FAIL"
    assert run_report(tmp_path / "crash", lambda x86: x86, rc=132).rstrip().endswith("FAIL")
    died = run_report(tmp_path / "died", lambda x86: x86, refused=False)
    assert died.rstrip().endswith("FAIL")
    assert "`import onnxruntime` dies with SIGILL (exit 132); `import edgeser` exits 132" in died


def test_pi_md_checks_an_extra_backend_without_edgeser_score(tmp_path):
    results = tmp_path / "results"
    run_report(tmp_path, lambda x86: x86)  # leaves the default backend's files in results
    out = tmp_path / "PI-numpy.md"
    argv = ["--results", str(results), "--userlands", "arm64:pi-64bit:cortex-a72"]
    report.main([*argv, "--backends", "numpy", "--out", str(out)])
    assert out.read_text().rstrip().endswith("FAIL")  # the numpy run left nothing
    x86 = json.loads((results / "x86_64.json").read_text())
    (results / "cortex-a72.numpy.json").write_text(json.dumps({**x86, "backend": "numpy"}))
    (results / "cortex-a72.numpy.rc").write_text("0\n")
    report.main([*argv, "--backends", "numpy", "--out", str(out)])
    text = out.read_text()
    assert "| `cortex-a72` (Pi 4, 400, CM4) | numpy |" in text
    assert text.rstrip().splitlines()[-1] == "ok"


def test_cpuinfo_names_the_board_and_core():
    assert cpuinfo_field("CPU part", PI4_CPUINFO) == "0xd08"
    assert core(PI4_CPUINFO) == "Cortex-A72"
    assert core(PI4_CPUINFO.replace("0xd08", "0xd4b")) == "ARM part 0xd4b"
    if not Path("/proc/device-tree/model").exists():
        assert board(PI4_CPUINFO) == "Raspberry Pi 4 Model B Rev 1.4"


def test_pi_report_measures_and_formats_the_lines_to_paste():
    r = gather(iterations=3)
    assert r["iterations"] == 3 and r["p50_ms"] > 0 and r["window_s"] == 3.0
    text = format_report({**r, "p50_ms": 40.0, "hop_s": 1.0})
    lines = text.splitlines()
    assert lines[0].startswith("<!-- edgeser pi-report")
    assert "| RTF per window (p50 / window) | 0.0133 |" in lines
    assert "| one stream, hop 1 s | 4.0 % of one core |" in lines
    assert "| one stream, hop 0.25 s | 16.0 % of one core |" in lines
    assert all(line.startswith("|") for line in lines[1:])


def test_pi_report_runs_from_the_command_line_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from benchmarks.__main__ import main; sys.exit(main(['--pi-report']))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "| onnxruntime |" in run.stdout


def test_core_share_scales_host_time_by_peak_ratio():
    pi = PiCore("Pi test", "Cortex-A72", 1.5, 4)  # 6 GMAC/s peak
    # 10 ms per window on a 48 GMAC/s host = 80 ms on the Pi; every 0.5 s -> 16 %
    assert core_share(0.010, 48.0, pi, 0.5) == pytest.approx(0.16)
    assert host_clock_ghz("model name\t: x\ncpu MHz\t\t: 2596.122\n") == pytest.approx(2.596122)
    with pytest.raises(ValueError, match="cpu MHz"):
        host_clock_ghz("model name\t: x\n")


def test_budget_table_lists_every_pi_with_needed_macs():
    table = budget_table(232_700_000, 3.0, 1.0, 0.005, 41.5)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(PI_CORES) + 1  # header + one per Pi
    assert "| Pi 5 | Cortex-A76 2.4 GHz | 233 MMAC/s | ~1% | 931 MMAC/s | ~4% |" in table
    assert "232.7M MACs per 3 s window" in table


def test_parity_runs_where_onnxruntime_is_not_installed(monkeypatch):
    """ARMv6 (armel) has no onnxruntime: parity.py reports it absent instead of failing."""
    from importlib import metadata

    from benchmarks.pi import parity

    def absent(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(parity.metadata, "distribution", absent)
    assert parity.onnxruntime_source() is None
    assert report.onnxruntime_build({"versions": {"onnxruntime": None}}) == "absent"
