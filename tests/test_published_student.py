"""The ``wav2small-published`` preset: the pipeline trains it, exports and quantises it, and a
checkpoint goes back to the published layout, where the plain PyTorch forward of that layout
(and edgeser's importer) reads it back to the same readings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from edgeser.distill.cli import main as distill_main
from edgeser.distill.student import StudentConfig, Wav2Small, build_student, load_student
from edgeser.distill.student import save_student as save_checkpoint
from edgeser.distill.wav2small_published import PublishedWav2Small, load_published
from edgeser.distill.wav2small_published import main as write_back
from edgeser.export.config import ExportConfig
from edgeser.export.parity import probe_signals
from edgeser.export.pipeline import run_export
from published_layout import frontend, random_tensors, read_tensors, reference_forward
from test_distill_pipeline import TOY_TEACHER, write_corpus

import edgeser
from edgeser.contract import SAMPLE_RATE


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """label -> train -> eval of the preset on generated audio with the toy teacher."""
    root = tmp_path_factory.mktemp("published-run")
    corpus = write_corpus(root / "corpus")
    (root / "edgeser_toy_published.py").write_text(TOY_TEACHER)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.syspath_prepend(str(root))
    config = root / "run.toml"
    config.write_text(
        textwrap.dedent(f"""
        [label]
        data = ["{corpus}"]
        teacher = "edgeser_toy_published:teacher"
        store = "{root / "labels"}"
        crops_per_file = 3
        min_crop_s = 0.5
        max_crop_s = 0.5
        num_threads = 1
        [train]
        out = "{root / "student"}"
        student = "wav2small-published"
        max_steps = 60
        batch_size = 8
        lr = 1e-2
        dev_fraction = 0.25
        eval_every = 30
        num_threads = 1
        [eval]
        report = "{root / "eval.json"}"
        """)
    )
    try:
        assert distill_main(["run", str(config), "--quiet"]) == 0
    finally:
        monkeypatch.undo()
    return {"root": root, "corpus": corpus, "checkpoint": root / "student" / "student.pt"}


def test_the_preset_is_the_published_architecture_and_ours_stays_another_preset() -> None:
    published = build_student(StudentConfig.preset("wav2small-published"))
    assert isinstance(published, PublishedWav2Small)
    assert isinstance(build_student(StudentConfig.preset("wav2small")), Wav2Small)
    assert set(published.state_dict()) == set(random_tensors())  # the published names


def test_a_fresh_student_computes_the_frozen_front_end_with_librosa() -> None:
    """Periodic Hann DFT rows and librosa's Slaney mel filterbank, as the published model."""
    model = build_student(StudentConfig.preset("wav2small-published"))
    state = model.state_dict()
    for name, expected in frontend().items():
        torch.testing.assert_close(state[name], expected, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in model.vgg7.spectrogram_extractor.parameters())


def test_the_pipeline_trains_the_preset(trained: dict[str, Path]) -> None:
    report = json.loads((trained["root"] / "eval.json").read_text())
    assert report["student_vs_teacher"]["mean"] > report["untrained_vs_teacher"]["mean"] + 0.2
    model, meta = load_student(trained["checkpoint"])
    assert isinstance(model, PublishedWav2Small)
    assert meta["train_config"]["student"] == "wav2small-published"


def test_the_trained_preset_exports_and_quantises(trained: dict[str, Path], tmp_path) -> None:
    settings = {"calibration_crops": 16, "heldout_crops": 12, "crop_s": 1.0, "min_ccc": 0.98}
    files = run_export(
        ExportConfig(
            trained["checkpoint"], tmp_path, force=True, int8=True,
            calibration=(trained["corpus"],), **settings,
        )
    )  # fmt: skip
    assert [f.path.name for f in files] == ["student.onnx", "student.int8.onnx"]
    for f in files:
        model = edgeser.load(f.path)
        assert model.info.card["architecture"]["variant"] == "published"
        assert model.predict(probe_signals(1, SAMPLE_RATE)[0], SAMPLE_RATE).embedding.shape == (
            338,
        )
    assert files[0].parity["max_abs_diff_vs_torch"] < 1e-5
    assert not list(tmp_path.glob("*.stream.onnx"))


def test_a_checkpoint_round_trips_through_the_published_layout(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "my-wav2small"
    command = [sys.executable, "-m", "edgeser.distill.wav2small_published"]
    run = subprocess.run(
        [*command, str(trained["checkpoint"]), str(folder)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    student, meta = load_student(trained["checkpoint"])
    tensors = read_tensors(folder)
    assert set(tensors) == set(student.state_dict())
    x = torch.from_numpy(probe_signals(4, 3 * SAMPLE_RATE))
    with torch.no_grad():
        ours, theirs = student(x), reference_forward(tensors, x)
        back, config = load_published(folder)
        again = back(x)
    for a, b, c in zip(ours, theirs, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert torch.equal(a, c)  # bit for bit: the layout holds every weight
    assert config["model_type"] == "wav2vec2"
    assert config["edgeser"]["teacher_id"] == meta["teacher_id"]
    exported = run_export(ExportConfig(folder, tmp_path / "out"))
    card = edgeser.load(exported[0].path).info.card
    assert card["imported"]["written_by_edgeser"] is True
    assert card["teacher"] == meta["teacher_id"]


def test_writing_back_another_architecture_is_refused_in_one_line(tmp_path, capsys) -> None:
    checkpoint = tmp_path / "ours.pt"
    save_checkpoint(checkpoint, Wav2Small(StudentConfig.preset("wav2small")), teacher_id="t")
    with pytest.raises(SystemExit) as exit_info:
        write_back([str(checkpoint), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "is a wav2small student, not wav2small-published" in err
    assert not (tmp_path / "out").exists()
