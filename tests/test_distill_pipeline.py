"""distill/ end to end: label -> train -> eval on generated audio with a tiny teacher, resume of
labelling after ``kill -9`` and exact resume of training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from edgeser.distill.cli import main
from edgeser.distill.config import EvalConfig, LabelConfig, TrainConfig
from edgeser.distill.evaluate import run_eval
from edgeser.distill.label import run_label
from edgeser.distill.store import LabelStore, StoreError
from edgeser.distill.student import load_student
from edgeser.distill.train import Distiller, run_train

# A teacher that hears what a student can learn: spectral centroid, envelope modulation depth
# and spectral flatness (tone vs noise). TOY_TEACHER_DELAY slows it down for the kill test.
TOY_TEACHER = """
import os, time
import numpy as np

def teacher(waves):
    time.sleep(float(os.environ.get("TOY_TEACHER_DELAY", "0")))
    out = []
    for w in waves:
        w = w.astype(np.float64)
        power = np.abs(np.fft.rfft(w)) ** 2 + 1e-12
        freqs = np.fft.rfftfreq(len(w), 1 / 16000)
        centroid = (power * freqs).sum() / power.sum()
        flatness = np.exp(np.mean(np.log(power))) / power.mean()
        frames = w[: len(w) // 400 * 400].reshape(-1, 400)
        env = np.sqrt((frames ** 2).mean(1))
        out.append([np.log(centroid / 100) / 4, env.std() / (env.mean() + 1e-9), flatness ** 0.25])
    return np.array(out, dtype=np.float32)

def other_teacher(waves):
    return teacher(waves)[:, ::-1].copy()
"""


def write_corpus(root: Path, speakers: int = 4, files: int = 5, seed: int = 0) -> Path:
    """Harmonic tones of random pitch, amplitude modulation, noise and loudness, one folder per
    'speaker', plus a file that is not audio at all."""
    rng = np.random.default_rng(seed)
    for s in range(speakers):
        folder = root / f"speaker{s}"
        folder.mkdir(parents=True)
        for i in range(files):
            n = int(16000 * rng.uniform(1.0, 1.5))
            t = np.arange(n) / 16000
            f0 = rng.uniform(100, 800)
            tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))
            envelope = 1 + rng.uniform(0, 0.9) * np.sin(2 * np.pi * rng.uniform(2, 8) * t)
            noise = rng.uniform(0, 2) * rng.standard_normal(n)
            x = rng.uniform(0.05, 0.5) * (tone * envelope + noise) / 3
            sf.write(folder / f"clip{i}.wav", x.astype(np.float32), 16000)
    (root / "speaker0" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def toy_teacher(tmp_path, monkeypatch) -> str:
    """Importable module with the toy teacher; returns its ``module:attr`` spec."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "edgeser_toy_teacher.py").write_text(TOY_TEACHER)
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("PYTHONPATH", str(mods))
    return "edgeser_toy_teacher:teacher"


def label_config(corpus: Path, teacher: str, store: Path, **kw) -> LabelConfig:
    return LabelConfig(
        data=[str(corpus)],
        teacher=teacher,
        store=str(store),
        crops_per_file=2,
        min_crop_s=0.5,
        max_crop_s=0.5,
        num_threads=1,
        **kw,
    )


def test_end_to_end_student_learns_to_track_the_teacher(corpus, toy_teacher, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        textwrap.dedent(f"""
        [label]
        data = ["{corpus}"]
        teacher = "{toy_teacher}"
        store = "{tmp_path / "labels"}"
        crops_per_file = 3
        min_crop_s = 0.5
        max_crop_s = 0.5
        num_threads = 1
        [train]
        out = "{tmp_path / "student"}"
        max_steps = 60
        batch_size = 8
        dev_fraction = 0.25
        eval_every = 30
        num_threads = 1
        [eval]
        report = "{tmp_path / "eval.json"}"
        """)
    )
    assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "skipped files: 1" in out  # broken.wav: counted, not fatal
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n_heldout"] == 15  # one of four speakers: 5 files x 3 crops
    assert abs(report["untrained_vs_teacher"]["mean"]) < 0.1
    assert report["student_vs_teacher"]["mean"] > 0.4
    _, meta = load_student(tmp_path / "student" / "student.pt")
    assert meta["teacher_id"] == LabelStore.open(tmp_path / "labels").teacher_id
    assert meta["n_dev"] == 15 and meta["n_train"] == 45


def test_relabel_skips_done_crops_and_refuses_another_teacher(corpus, toy_teacher, tmp_path):
    cfg = label_config(corpus, toy_teacher, tmp_path / "labels")
    first = run_label(cfg, progress=False)
    assert first.labelled == first.planned == 40 and len(first.skipped_files) == 1
    again = run_label(cfg, progress=False)
    assert again.labelled == 0 and again.already_done == 40
    cfg.teacher = "edgeser_toy_teacher:other_teacher"
    with pytest.raises(StoreError, match="holds labels of teacher"):
        run_label(cfg, progress=False)


def test_empty_data_folder_is_a_clear_error(tmp_path, toy_teacher, capsys):
    (tmp_path / "empty").mkdir()
    args = [
        "label",
        "--data",
        str(tmp_path / "empty"),
        "--teacher",
        toy_teacher,
        "--store",
        str(tmp_path / "labels"),
        "--quiet",
    ]
    assert main(args) == 2
    assert "no audio files" in capsys.readouterr().err


def test_kill_9_while_labelling_loses_at_most_the_batch_in_flight(corpus, toy_teacher, tmp_path):
    store_dir = tmp_path / "labels"
    cmd = [
        sys.executable,
        "-m",
        "edgeser.distill.cli",
        "label",
        "--data",
        str(corpus),
        "--teacher",
        toy_teacher,
        "--store",
        str(store_dir),
        "--crops-per-file",
        "2",
        "--min-crop-s",
        "0.5",
        "--max-crop-s",
        "0.5",
        "--batch-size",
        "3",
        "--quiet",
    ]
    env = {**os.environ, "TOY_TEACHER_DELAY": "0.3"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list((store_dir / "chunks").glob("*.npz"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "labelling made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    store = LabelStore.open(store_dir)
    chunks = store.chunk_paths()
    partial = store.read()
    keys = [c.key for c in partial.crops]
    assert len(keys) == len(set(keys)) == 3 * len(chunks)  # whole batches only, no duplicates
    assert 3 <= len(chunks) < 14  # killed mid-run: 40 crops = 14 batches

    report = run_label(label_config(corpus, toy_teacher, store_dir, batch_size=3), progress=False)
    assert report.already_done == len(keys) and report.labelled == 40 - len(keys)
    resumed = store.read()
    assert len(resumed) == 40 == len({c.key for c in resumed.crops})

    clean = run_label(label_config(corpus, toy_teacher, tmp_path / "clean"), progress=False)
    assert clean.labelled == 40
    reference = LabelStore.open(tmp_path / "clean").read()
    by_key = dict(zip([c.key for c in reference.crops], reference.adv, strict=True))
    expected = np.stack([by_key[c.key] for c in resumed.crops])
    np.testing.assert_allclose(resumed.adv, expected, rtol=1e-6)


def test_training_resumes_exactly_where_it_stopped(corpus, toy_teacher, tmp_path, monkeypatch):
    run_label(label_config(corpus, toy_teacher, tmp_path / "labels"), progress=False)

    def train_cfg(out: str) -> TrainConfig:
        return TrainConfig(
            store=str(tmp_path / "labels"),
            out=str(tmp_path / out),
            max_steps=8,
            batch_size=8,
            checkpoint_every=3,
            eval_every=4,
            num_threads=1,
        )

    torch.set_num_threads(1)
    straight = run_train(train_cfg("straight"), progress=False)

    original = Distiller.train_step

    def crash_at_step_7(self, step):
        if step == 7:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Distiller, "train_step", crash_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        run_train(train_cfg("resumed"), progress=False)
    monkeypatch.setattr(Distiller, "train_step", original)
    resumed = run_train(train_cfg("resumed"), progress=False)  # continues at step 6

    assert resumed.steps == straight.steps == 8
    a, _ = load_student(tmp_path / "straight" / "last.pt")
    b, _ = load_student(tmp_path / "resumed" / "last.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_eval_scores_human_labels_per_corpus(corpus, toy_teacher, tmp_path):
    manifest = tmp_path / "manifest.csv"
    emotions = ["anger", "sadness", "happiness", "calm", "neutral"]
    lines = ["path,corpus,speaker,emotion,split"]
    for s in range(4):
        for i in range(5):
            split = "dev" if s == 3 else "train"
            lines.append(f"{corpus}/speaker{s}/clip{i}.wav,toy,toy-{s},{emotions[i]},{split}")
    manifest.write_text("\n".join(lines) + "\n")
    cfg = label_config(manifest, toy_teacher, tmp_path / "labels")
    run_label(cfg, progress=False)
    train = TrainConfig(store=cfg.store, out=str(tmp_path / "s"), max_steps=2, batch_size=8)
    run_train(train, progress=False)
    report = run_eval(EvalConfig(store=cfg.store, checkpoint=str(tmp_path / "s" / "student.pt")))
    assert report.n_heldout == 10  # the manifest's dev speaker: 5 files x 2 crops
    for scores in (report.student_vs_labels["toy"], report.teacher_vs_labels["toy"]):
        assert {"ccc_arousal", "ccc_valence", "auc_arousal", "auc_valence"} <= set(scores)
        assert -1 <= scores["ccc_arousal"] <= 1 and 0 <= scores["auc_arousal"] <= 1
