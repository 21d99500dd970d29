"""Reference teacher: model shapes, padding-invariant batching, fp16 checkpoints, teacher id,
and its training loop (on a toy corpus written here, and on the real corpora when present)."""

import csv
import dataclasses
from pathlib import Path

import edgeser.distill.reference_train as reference_train
import numpy as np
import pytest
import soundfile as sf
import torch
from edgeser.distill.config import ConfigError
from edgeser.distill.reference_train import ReferenceTrainConfig, load_config, train
from edgeser.distill.teachers.base import Teacher
from edgeser.distill.teachers.reference import (
    ReferenceConfig,
    ReferenceModel,
    load_reference,
    load_reference_teacher,
    save_reference,
)

from edgeser.errors import AudioError

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
TINY = ReferenceConfig(n_mels=16, channels=[4, 8, 8, 8], d_model=16, n_layers=1, n_heads=2,
                       ff_dim=32, dropout=0.0)  # fmt: skip


def tiny_model(seed: int = 0) -> ReferenceModel:
    torch.manual_seed(seed)
    return ReferenceModel(dataclasses.replace(TINY)).eval()


def waves(*lengths: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_default_model_is_much_larger_than_the_student():
    n = sum(p.numel() for p in ReferenceModel().parameters())
    assert 1_000_000 <= n <= 10_000_000  # the student has ~72K


def test_padded_batch_equals_one_by_one_and_gain_does_not_matter(tmp_path):
    path = tmp_path / "teacher.pt"
    save_reference(path, tiny_model())
    teacher = load_reference_teacher(path)
    assert isinstance(teacher, Teacher)
    audio = waves(300, 2_000, 16_000, 24_000, 7_777)
    out = teacher(audio)
    assert out.adv.shape == (5, 3) and out.embedding.shape == (5, 2 * TINY.d_model)
    one_by_one = np.concatenate([teacher([w]).adv for w in audio])
    np.testing.assert_allclose(out.adv, one_by_one, atol=1e-5)
    louder = teacher([w * 8.0 for w in audio]).adv
    np.testing.assert_allclose(out.adv, louder, atol=1e-4)


def test_checkpoint_round_trip_is_fp16_and_the_id_follows_the_weights(tmp_path):
    model = tiny_model()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_reference(a, model, note="x")
    save_reference(b, tiny_model(seed=1))
    loaded, meta = load_reference(a)
    assert meta == {"note": "x"}
    x = torch.from_numpy(np.stack(waves(8_000, 8_000)))
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x)[0], model(x)[0], atol=2e-2)  # fp16 weights
    assert all(
        v.dtype == torch.float16
        for v in torch.load(a, weights_only=True)["state_dict"].values()
        if v.is_floating_point()
    )
    id_a, id_b = load_reference_teacher(a).teacher_id, load_reference_teacher(b).teacher_id
    assert id_a.startswith("reference:") and id_a != id_b
    assert load_reference_teacher(a).teacher_id == id_a


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_reference_teacher(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="reference teacher"):
        load_reference_teacher(junk)
    torch.save({"format": "edgeser.student"}, tmp_path / "student.pt")
    with pytest.raises(ValueError, match="not an edgeser reference teacher"):
        load_reference_teacher(tmp_path / "student.pt")
    save_reference(tmp_path / "t.pt", tiny_model())
    with pytest.raises(AudioError, match="waveform 1"):
        load_reference_teacher(tmp_path / "t.pt")([np.zeros(100, np.float32), np.zeros(0)])


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("steps = 10\n[model]\nwidth = 3\n")
    with pytest.raises(ConfigError, match="width"):
        load_config(path)
    path.write_text("stepz = 10\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_config(path)


def write_toy_corpora(root: Path) -> None:
    """Two small corpora in the shared layout: categories with louder 'anger' and quieter
    'sadness', and arousal levels; dev speakers held out."""
    rng = np.random.default_rng(0)
    for corpus, labels in (("cat", ["anger", "sadness"]), ("lvl", ["high", "low"])):
        rows = []
        for speaker in range(4):
            for k in range(3):
                label = labels[k % 2]
                pitch = 250.0 if label in ("anger", "high") else 120.0
                t = np.arange(int(16_000 * rng.uniform(0.6, 1.5))) / 16_000
                audio = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(len(t))
                rel = f"audio/{speaker}_{k}.wav"
                (root / corpus / "audio").mkdir(parents=True, exist_ok=True)
                sf.write(root / corpus / rel, audio.astype(np.float32), 16_000)
                emotion, level = (label, "") if corpus == "cat" else ("", label)
                rows.append([rel, corpus, "en", f"{corpus}-{speaker}", "", emotion, "", level,
                             "dev" if speaker == 3 else "train", f"{t[-1]:.3f}"])  # fmt: skip
        with (root / corpus / "manifest.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "corpus", "language", "speaker", "gender", "emotion",
                        "intensity", "arousal_level", "split", "duration_s"])  # fmt: skip
            w.writerows(rows)


def toy_config(tmp_path: Path, out: str) -> ReferenceTrainConfig:
    return ReferenceTrainConfig(
        corpora=str(tmp_path / "corpora"), corpus_names=["cat", "lvl"],
        out_dir=str(tmp_path / out), weights=str(tmp_path / out / "teacher.pt"),
        steps=4, batch_size=4, crop_s=1.0, warmup_steps=1, eval_every=2, num_threads=1,
        model=dataclasses.replace(TINY),
    )  # fmt: skip


def test_training_saves_the_best_teacher_and_resumes_after_a_crash(tmp_path, monkeypatch):
    write_toy_corpora(tmp_path / "corpora")
    full = train(toy_config(tmp_path, "full"))
    assert full["best"]["step"] in (2, 4) and set(full["best"]) >= {"cat", "lvl", "score"}
    teacher = load_reference_teacher(full["weights"])
    assert teacher(waves(16_000)).adv.shape == (1, 3)

    calls = {"n": 0}
    real_make_batch = reference_train.make_batch

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_make_batch(*args, **kwargs)

    monkeypatch.setattr(reference_train, "make_batch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, "crashed"))
    monkeypatch.setattr(reference_train, "make_batch", real_make_batch)
    resumed = train(toy_config(tmp_path, "crashed"))
    last = torch.load(tmp_path / "crashed" / "last.pt", weights_only=False)
    assert [h["step"] for h in last["state"]["history"]] == [2, 4]
    assert resumed["best"]["score"] == pytest.approx(full["best"]["score"], abs=1e-5)
    uninterrupted = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    for name, value in uninterrupted.items():
        torch.testing.assert_close(last["model"][name], value, atol=1e-5, rtol=1e-4)


@pytest.mark.corpora
def test_training_runs_on_the_shared_corpora(tmp_path):
    if not CORPORA.is_dir():
        pytest.skip("../shared/corpora is absent")
    cfg = ReferenceTrainConfig(
        corpora=str(CORPORA), out_dir=str(tmp_path / "run"), weights=str(tmp_path / "t.pt"),
        steps=2, batch_size=4, eval_every=2, num_threads=1, max_clips_per_corpus=6,
        model=dataclasses.replace(TINY),
    )  # fmt: skip
    summary = train(cfg)
    assert set(summary["best"]) >= {"ravdess", "baved", "turev"}
    assert np.isfinite(summary["best"]["score"])
    assert "ccc_valence" not in summary["best"]["baved"]  # arousal-only corpus


def test_a_seed_from_the_command_line_names_its_own_run_folder_and_weights():
    cfg = ReferenceTrainConfig(out_dir="runs/teacher/", weights="distill/weights/teacher.pt")
    member = reference_train.with_seed(cfg, 2)
    assert (member.seed, member.out_dir, member.weights) == (
        2, "runs/teacher-seed2", "distill/weights/teacher-seed2.pt"
    )
    assert reference_train.with_seed(cfg, 0).weights != cfg.weights  # never the config's own file
