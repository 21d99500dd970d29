"""distill.readings_head: the softmax regression on a student's own A/D/V, folded into its
categorical head, computes what the regression computes, in torch and in the exported graph."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from edgeser.distill.manifest import MANIFEST_COLUMNS, read_manifest
from edgeser.distill.readings_head import SoftmaxRegression, clip_readings, fit_head
from edgeser.distill.student import StudentConfig, Wav2Small, load_student, save_student
from edgeser.export.categories import OUTPUT_CATEGORIES
from edgeser.export.config import ExportConfig
from edgeser.export.parity import probe_signals, session
from edgeser.export.pipeline import run_export

from edgeser.contract import INPUT_NAME, SAMPLE_RATE

LABELS = ("anger", "happiness", "neutral", "sadness")


def test_the_folded_affine_map_gives_the_regression_s_logits():
    rng = np.random.default_rng(0)
    x = rng.normal([0.5, 0.4, 0.6], [0.1, 0.05, 0.2], size=(200, 3))
    y = (x[:, 0] > 0.5).astype(int) + 2 * (x[:, 2] > 0.6)
    regression = SoftmaxRegression(4).fit(x, y)
    weight, bias = regression.affine()
    logits = x @ weight.T + bias
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), regression.predict_proba(x), atol=1e-9)


@pytest.fixture
def toy(tmp_path):
    """A random-weights wav2small student and a manifest of tones, four per label plus calm
    (left out: calm is not neutral here) and an unlabelled clip."""
    torch.manual_seed(0)
    student = tmp_path / "student.pt"
    save_student(student, Wav2Small(StudentConfig.preset("wav2small")).eval(), teacher_id="toy")
    rows = []
    for k, emotion in enumerate([*LABELS, "calm", ""]):
        for take in range(4):
            t = np.arange(int(SAMPLE_RATE * (0.6 + 0.1 * take))) / SAMPLE_RATE
            tone = (0.05 + 0.08 * k) * np.sin(2 * np.pi * (110 + 70 * k + 9 * take) * t)
            sf.write(tmp_path / f"{k}_{take}.wav", tone.astype(np.float32), SAMPLE_RATE)
            rows.append({"path": f"{k}_{take}.wav", "emotion": emotion, "speaker": "s"})
    with (tmp_path / "train.csv").open("w", newline="") as f:
        csv.writer(f).writerows([MANIFEST_COLUMNS, *[[r.get(c, "") for c in MANIFEST_COLUMNS]
                                                     for r in rows]])  # fmt: skip
    return tmp_path, student, read_manifest(tmp_path / "train.csv")


def test_the_head_is_the_regression_and_leaves_the_readings_alone(toy):
    tmp_path, student, rows = toy
    fitted = fit_head(student, rows, tmp_path / "headed.pt")
    assert fitted["clips"] == dict.fromkeys(LABELS, 4)  # calm and the unlabelled clip left out
    model, meta = load_student(tmp_path / "headed.pt")
    assert model.config.categories == LABELS and model.config.category_input == "readings"
    assert meta["categories_fit"] == fitted and meta["teacher_id"] == "toy"

    original, _ = load_student(student)
    labelled = [r for r in rows if r.emotion in LABELS]
    adv = clip_readings(original, labelled)
    y = np.repeat(np.arange(4), 4)
    expected = SoftmaxRegression(4).fit(adv, y).predict_proba(adv)
    with torch.inference_mode():
        for r, p in zip(labelled, expected, strict=True):
            signal = torch.from_numpy(sf.read(r.audio, dtype="float32")[0])[None]
            out = model(signal)
            np.testing.assert_allclose(out[0].numpy(), original(signal)[0].numpy(), atol=1e-6)
            np.testing.assert_allclose(out[2][0].numpy(), p, atol=1e-4)  # float32 head


def test_the_exported_graph_computes_the_head(toy):
    tmp_path, student, rows = toy
    fit_head(student, rows, tmp_path / "headed.pt")
    model, _ = load_student(tmp_path / "headed.pt")
    [fp32] = run_export(ExportConfig(checkpoint=tmp_path / "headed.pt", out=tmp_path / "x"))
    signal = probe_signals(3, 2 * SAMPLE_RATE)
    got = session(fp32.path).run([OUTPUT_CATEGORIES], {INPUT_NAME: signal})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(signal))[2].numpy(), atol=1e-5)


def test_data_without_every_label_is_refused(toy):
    tmp_path, student, rows = toy
    with pytest.raises(ValueError, match="lacks clips of some of anger, happiness"):
        fit_head(student, [r for r in rows if r.emotion != "sadness"], tmp_path / "x.pt")
