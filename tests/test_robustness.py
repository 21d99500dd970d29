"""benchmarks.robustness: the degraded dev audio is the same for every model and every run, and
the command writes A-AUC and V-AUC per condition per model (tiny models, a toy corpus)."""

import json
import shutil

import numpy as np
import pytest
import torch
from edgeser.distill import degrade
from edgeser.distill.augment import SpeechBank
from edgeser.distill.teachers.reference import ReferenceModel, save_reference
from test_reference_teacher import TINY, write_toy_corpora

from benchmarks import robustness


@pytest.fixture
def toy_corpora(tmp_path):
    """The toy corpora under two of the benchmark's corpus names."""
    write_toy_corpora(tmp_path / "toy")
    root = tmp_path / "corpora"
    root.mkdir()
    shutil.move(tmp_path / "toy" / "cat", root / "ravdess")
    shutil.move(tmp_path / "toy" / "lvl", root / "baved")
    return root


def test_degraded_audio_is_fixed_per_clip_and_condition(toy_corpora):
    dev = robustness.load_dev(str(toy_corpora), ["ravdess", "baved"], 0)
    rows = [r for rs, _ in dev.values() for r in rs]
    speech = SpeechBank([a for _, audio in dev.values() for a in audio], [r.speaker for r in rows])
    first = robustness.degraded("babble 5 dB", dev, speech)
    again = robustness.degraded("babble 5 dB", dev, speech)
    for corpus, (_, audio) in first.items():
        for a, b in zip(audio, again[corpus][1], strict=True):
            np.testing.assert_array_equal(a, b)
    clean = robustness.degraded("clean", dev, speech)
    original = dev["ravdess"][1][0]
    np.testing.assert_allclose(clean["ravdess"][1][0], degrade.pcm16(original), atol=1e-7)
    reverb = robustness.degraded("reverb RT60 0.7 s", dev, speech)
    assert not np.allclose(reverb["ravdess"][1][0], clean["ravdess"][1][0], atol=1e-3)
    assert len({robustness.clip_seed(c, rows[0]) for c in robustness.CONDITIONS}) == len(
        robustness.CONDITIONS
    )


def test_the_command_writes_aucs_per_condition_and_model(toy_corpora, tmp_path, tiny_model_path):
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_reference(teacher, ReferenceModel(TINY).eval())
    out = tmp_path / "report"
    corpora = ["--corpora", str(toy_corpora), "--corpus", "ravdess", "--corpus", "baved"]
    models = ["--teacher", str(teacher), "--student", str(tiny_model_path), "--teacher",
              f"pair={teacher} + {teacher}", "--student", f"v1={tiny_model_path}"]  # fmt: skip
    quality = tmp_path / "quality.md"
    quality.write_text("# Quality\n\nits own tables\n")
    argv = [*corpora, *models, "--out", str(out), "--quality", str(quality)]
    assert robustness.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    names = {"student tiny.onnx", "reference teacher teacher.pt", "pair", "v1"}
    assert set(report["results"]) == names
    # an ensemble of one teacher twice reads as that teacher; a named model as its file
    assert report["results"]["pair"] == report["results"]["reference teacher teacher.pt"]
    assert report["results"]["v1"] == report["results"]["student tiny.onnx"]
    for by_condition in report["results"].values():
        assert list(by_condition) == list(robustness.CONDITIONS)
        for scores in by_condition.values():
            assert 0.0 <= scores["baved"]["auc_arousal"] <= 1.0
            assert scores["baved"]["auc_valence"] is None  # arousal levels only
    text = out.with_suffix(".md").read_text()
    assert "python -m benchmarks.robustness --corpora" in text and "| far |" in text
    page = quality.read_text()  # the side-by-side section, the page's own text kept
    assert page.startswith("# Quality\n\nits own tables\n")
    section = page.split("<!-- section: robustness -->", 1)[1]
    assert "| condition | student tiny.onnx | v1 | reference teacher teacher.pt | pair |" in section
    assert section.count("goal (every condition within 0.03 arousal AUC of clean)") == 4


def test_students_alone_are_scored_without_the_default_teacher(
    toy_corpora, tmp_path, tiny_model_path
):
    out = tmp_path / "report"
    argv = ["--corpora", str(toy_corpora), "--corpus", "baved", "--condition", "clean",
            "--student", f"v2={tiny_model_path}", "--out", str(out), "--quality", ""]  # fmt: skip
    assert robustness.main(argv) == 0
    assert list(json.loads(out.with_suffix(".json").read_text())["results"]) == ["v2"]


def test_the_summary_names_the_conditions_that_miss_the_goal():
    def scores(a: float) -> dict:
        return {"mean": {"auc_arousal": a, "auc_valence": 0.6}}

    report = {
        "command": "python -m benchmarks.robustness",
        "machine": {"date_utc": "today"},
        "conditions_note": "as made",
        "results": {
            "v1": {"clean": scores(0.90), "far": scores(0.86), "telephone": scores(0.80)},
            "v2": {"clean": scores(0.90), "far": scores(0.875), "telephone": scores(0.871)},
        },
    }
    lines = robustness.summary_lines(report, "benchmarks/robustness.md")
    assert "| far | 0.860 / 0.600 (Δ A -0.040) | 0.875 / 0.600 (Δ A -0.025) |" in lines
    assert lines[-2].startswith("- v1:") and lines[-2].endswith("misses it under far, telephone.")
    assert lines[-1].startswith("- v2:") and lines[-1].endswith("meets it everywhere.")


def test_missing_corpora_or_models_are_one_line_usage_errors(tmp_path, toy_corpora, capsys):
    for argv, message in (
        (["--corpora", str(tmp_path), "--corpus", "nemo"], "no manifest for nemo"),
        (["--corpora", str(toy_corpora), "--corpus", "baved", "--teacher", "gone.pt"],
         "gone.pt: no such model file"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            robustness.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "error: " in err and message in err and "Traceback" not in err
