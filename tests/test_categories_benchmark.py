"""benchmarks.categories: UAR and confusion counts of a model with a readings head, per corpus,
from the runtime's file readings (calm and other emotions left out)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from edgeser.distill.readings_head import fit_head
from edgeser.distill.reference_train import corpus_rows
from edgeser.distill.student import StudentConfig, Wav2Small, save_student
from edgeser.export.config import ExportConfig
from edgeser.export.pipeline import run_export
from test_loco import write_toy_corpora

from benchmarks import categories


def test_counts_and_uar_per_corpus_from_the_runtime(tmp_path):
    write_toy_corpora(tmp_path / "toy")
    root = tmp_path / "corpora"
    root.mkdir()
    shutil.copytree(tmp_path / "toy" / "alpha", root / "nemo")
    shutil.move(tmp_path / "toy" / "alpha", root / "ravdess")
    shutil.move(tmp_path / "toy" / "beta", root / "turev")  # calm instead of neutral
    torch.manual_seed(0)
    save_student(tmp_path / "s.pt", Wav2Small(StudentConfig.preset("wav2small")).eval())
    fit_head(tmp_path / "s.pt", corpus_rows(str(root), ["ravdess"], "train"), tmp_path / "h.pt")
    [model] = run_export(ExportConfig(checkpoint=tmp_path / "h.pt", out=tmp_path / "m"))

    out = tmp_path / "report"
    argv = ["--corpora", str(root), "--model", str(model.path), "--out", str(out),
            "--fp32", str(model.path)]  # fmt: skip
    assert categories.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["labels"] == ["anger", "happiness", "neutral", "sadness"]
    assert {c: r["clips"] for c, r in report["corpora"].items()} == {
        "ravdess": 12, "turev": 9, "nemo": 12  # dev clips: 3 per label; turev's calm not scored
    }
    for r in report["corpora"].values():
        counts = np.array(r["confusion"])
        assert counts.sum() == r["clips"]
        present = counts.sum(1) > 0
        recall = np.diag(counts[:, :4])[present] / counts.sum(1)[present]
        assert r["uar"] == np.mean(recall)
    assert report["corpora"]["turev"]["confusion"][2] == [0, 0, 0, 0, 0]  # no neutral clip
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| turev | 9 |" in out.with_suffix(".md").read_text()
    gate = report["int8_vs_fp32"]  # a model against itself: every window, all the same
    assert gate["windows"] >= 12 + 12 + 12 and gate["top_agreement"] == 1.0
    assert gate["max_abs_diff"] == 0.0
    assert "top category the same on 100.0 %" in out.with_suffix(".md").read_text()
