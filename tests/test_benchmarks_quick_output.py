"""``python -m benchmarks --quick`` never overwrites the committed results."""

from __future__ import annotations

from benchmarks.__main__ import main
from benchmarks.config import REPO, BenchConfig


def test_a_quick_run_writes_outside_the_committed_results():
    quick = BenchConfig().quickened()
    assert quick.path("out_dir") != REPO / "benchmarks"
    assert quick.path("out_dir").is_relative_to(REPO / "runs")  # git-ignored


def test_a_quick_run_asked_to_write_over_the_committed_results_refuses(capsys, monkeypatch):
    def no_run(*args):
        raise AssertionError("nothing is measured")

    monkeypatch.setattr("benchmarks.run.run", no_run)  # imported by main() when it runs
    assert main(["--quick", "--out", str(REPO / "benchmarks")]) == 2
    assert "do not overwrite benchmarks/" in capsys.readouterr().err


def test_an_explicit_out_folder_is_kept(tmp_path):
    config = BenchConfig(out_dir=str(tmp_path)).quickened()
    assert config.path("out_dir") == tmp_path
