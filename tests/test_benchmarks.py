"""The benchmark code runs end to end in quick mode and writes well-formed results.

No timing assertions: figures depend on the machine. What must hold is the structure: every
workload measured, percentiles ordered, the report and plot written, skips explained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from edgeser.distill.config import ConfigError
from edgeser.distill.student import StudentConfig, build_student, count_parameters

from benchmarks.config import BenchConfig
from benchmarks.report import markdown, update_section
from benchmarks.students import extra_students, timing_info, window_macs, write_onnx
from benchmarks.timing import Workload, measure

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One ``python -m benchmarks --quick`` in a real subprocess, output to a temp folder."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--threads", "2", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out


def test_quick_run_measures_every_workload(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    names = {r["name"] for r in results["latency"]}
    assert {
        "student wav2small fp32",
        "student wav2small int8",
        "teacher wav2vec2",
        "teacher reference",
        "stream per hop, re-scoring (wav2small-stream fp32)",
        "stream per hop, incremental (wav2small-stream fp32)",
    } <= names
    # the default student's path: the bundled model when there is one, else the stand-in
    assert sum(n.startswith("stream per hop, re-scoring (") for n in names) == 2
    assert {r["threads"] for r in results["latency"]} == {1, 2}
    for r in results["latency"]:
        assert r["n"] >= 1
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
        assert r["cpu_p50_ms"] > 0
        assert math.isclose(r["rtf"], r["p50_ms"] / 1000 / r["audio_s"], rel_tol=1e-9)
    ratios = results["ratios"]
    for key in (
        "teacher_wav2vec2_over_student_int8",
        "teacher_reference_over_student_int8",
        "rescoring_over_incremental_per_hop",
        "rescoring_over_incremental_per_hop_cpu",
    ):
        assert ratios[key] > 0, key
    assert results["config"]["quick"] is True


def test_quick_run_counts_streaming_compute(quick_run: tuple[dict, Path]) -> None:
    """Counted, not timed: the incremental hop does a fraction of the window's MACs."""
    results, _ = quick_run
    stream = results["streaming"]
    assert 0 < stream["macs_incremental_per_hop"] < stream["macs_rescoring_per_hop"]
    assert results["ratios"]["rescoring_over_incremental_macs"] == (
        stream["macs_rescoring_per_hop"] / stream["macs_incremental_per_hop"]
    )
    assert stream["state_floats"] > 0


def test_quick_run_measures_memory_sizes_and_throughput(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    memory = results["memory"]
    assert memory["torch_imported"] is False  # the scoring process is runtime-only
    assert 0 < memory["rss_runtime_imported_mib"] <= memory["peak_rss_mib"]
    assert memory["windows"] >= 1
    assert results["cold_start"]["median_s"] > 0
    sizes = {s["what"]: s["bytes"] for s in results["sizes"]}
    int8 = next(v for k, v in sizes.items() if "wav2small int8" in k)
    fp32 = next(v for k, v in sizes.items() if "wav2small fp32" in k)
    assert 0 < int8 < fp32
    units = {(t["what"].split(":")[0], t["unit"]) for t in results["throughput"]}
    assert units >= {("labelling", "audio-h/min"), ("training", "crops/s")}
    assert all(t["value"] > 0 for t in results["throughput"])
    for skip in results["skipped"]:
        assert skip["why"], skip


def test_quick_run_writes_report_and_plot(quick_run: tuple[dict, Path]) -> None:
    results, out = quick_run
    text = (out / "RESULTS.md").read_text()
    assert "python -m benchmarks --quick" in text
    assert results["machine"]["cpu"] in text
    assert "Quick mode" in text and "quality.md" in text
    for r in results["latency"]:
        assert f"| {r['name']} |" in text
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measure_interleaves_workloads_and_orders_percentiles() -> None:
    calls: list[str] = []
    a = Workload("a", lambda: calls.append("a"), audio_s=0.5)
    b = Workload("b", lambda: calls.append("b"), audio_s=1.0, macs=10)
    la, lb = measure([a, b], threads=1, iterations=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert (la.name, la.n, lb.name, lb.macs, lb.audio_s) == ("a", 3, "b", 10, 1.0)
    for lat in (la, lb):
        assert 0 <= lat.p50_ms <= lat.p95_ms <= lat.p99_ms


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text("[bench]\nthreads = 2\nwindow_s = 2\n")
    config = BenchConfig.from_toml(path)
    assert config.threads == 2 and config.window_s == 2.0 and config.thread_counts == [1, 2]
    path.write_text("[bench]\nthread = 2\n")
    with pytest.raises(ConfigError, match="unknown key"):
        BenchConfig.from_toml(path)


def test_markdown_lists_skipped_sections(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    skipped = {**results, "skipped": [{"what": "reference teacher", "why": "not built"}]}
    assert "- reference teacher: not built" in markdown(skipped)


def test_voice_gate_benchmark_cuts_windows_like_score_file_and_keeps_quality_md(
    tmp_path: Path,
) -> None:
    import numpy as np

    from benchmarks import voice_gate

    assert voice_gate.spans(16_000, tail=True) == [(0, 16_000)]  # shorter than a window
    assert voice_gate.spans(56_000, tail=False) == [(0, 48_000)]
    assert voice_gate.spans(56_000, tail=True) == [(0, 48_000), (8_000, 56_000)]
    active = np.zeros(8 * 16_000, bool)
    active[4 * 16_000 : 5 * 16_000] = True
    assert voice_gate.window_labels(active, active) == ["noise", "noise", "speech", "speech",
                                                        "speech", "noise"]  # fmt: skip
    report = tmp_path / "quality.md"
    report.write_text("# Quality\n\nmodel tables\n")
    for run in ("first", "second"):
        update_section(report, voice_gate.SECTION, ["## Voice gate", run])
    text = report.read_text()
    assert text.startswith("# Quality\n\nmodel tables\n") and "second" in text
    assert "first" not in text and text.count("<!-- section: voice-gate -->") == 1


def test_a_trained_student_file_is_described_by_its_card(tmp_path: Path) -> None:
    """``--student ONNX``: parameters and MACs come from the file's model card."""
    model = build_student(StudentConfig.preset("wav2small-published")).eval()
    arch = {"parameters": count_parameters(model), **model.config.to_dict()}
    info = dataclasses.replace(timing_info(3.0, 1.0), card={"architecture": arch})
    path = tmp_path / "published.onnx"
    write_onnx(model, info, path)
    (student,) = extra_students([path], 3.0)
    assert student.name == "published.onnx" and student.params == 10806
    assert student.macs == window_macs(model, 3.0) > 0


def test_the_quality_link_resolves_from_wherever_results_are_written(tmp_path):
    """RESULTS.md written into benchmarks/published/ linked a quality.md beside it that does
    not exist (the strict docs build then fails): the link is relative to the folder."""
    from benchmarks.report import QUALITY_REPORT, quality_link

    for out in (QUALITY_REPORT.parent, QUALITY_REPORT.parent / "published", tmp_path / "x"):
        assert (out / quality_link(out)).resolve() == QUALITY_REPORT
    assert quality_link(QUALITY_REPORT.parent / "published") == "../quality.md"
