"""distill/ end to end: label -> train -> eval on generated audio with a tiny teacher, resume of
labelling after ``kill -9`` and exact resume of training."""

from __future__ import annotations

import json
import os
import re
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
# and spectral flatness (tone vs noise). TOY_TEACHER_DELAY slows it down for the kill test;
# with TOY_BARRIER=DIR:N the first call waits until N processes have made theirs (so that
# concurrent writers are all labelling before any of them can finish alone).
TOY_TEACHER = """
import os, time
from pathlib import Path
import numpy as np

ARRIVED = []

def barrier():
    folder, n = os.environ["TOY_BARRIER"].rsplit(":", 1)
    (Path(folder) / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(Path(folder).iterdir())) < int(n) and time.monotonic() < deadline:
        time.sleep(0.05)

def teacher(waves):
    if os.environ.get("TOY_BARRIER") and not ARRIVED:
        ARRIVED.append(barrier())
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
    killed = store.health()  # the dead writer's claims: its batches, in flight and prefetched
    assert killed.writers == 0 and 0 <= killed.stale_claims - len(chunks) <= 2
    partial = store.read()
    keys = [c.key for c in partial.crops]
    assert len(keys) == len(set(keys)) == 3 * len(chunks)  # whole batches only, no duplicates
    assert 3 <= len(chunks) < 14  # killed mid-run: 40 crops = 14 batches

    report = run_label(label_config(corpus, toy_teacher, store_dir, batch_size=3), progress=False)
    assert report.already_done == len(keys) and report.labelled == 40 - len(keys)
    resumed = store.read()
    assert len(resumed) == 40 == len({c.key for c in resumed.crops})
    health = store.health()
    assert (health.stale_claims, health.orphans, health.duplicates) == (0, [], 0)

    clean = run_label(label_config(corpus, toy_teacher, tmp_path / "clean"), progress=False)
    assert clean.labelled == 40
    reference = LabelStore.open(tmp_path / "clean").read()
    by_key = dict(zip([c.key for c in reference.crops], reference.adv, strict=True))
    expected = np.stack([by_key[c.key] for c in resumed.crops])
    np.testing.assert_allclose(resumed.adv, expected, rtol=1e-6)


def label_command(corpus: Path, teacher: str, store: Path, *extra: str) -> list[str]:
    """``edgeser-distill label`` in a process of its own, with the small test plan."""
    return [sys.executable, "-m", "edgeser.distill.cli", "label", "--data", str(corpus),
            "--teacher", teacher, "--store", str(store), "--crops-per-file", "2",
            "--min-crop-s", "0.5", "--max-crop-s", "0.5", "--num-threads", "1", *extra]  # fmt: skip


@pytest.mark.parametrize("writers", [2, 3])
def test_concurrent_label_processes_label_each_crop_once(corpus, toy_teacher, tmp_path, writers):
    store = tmp_path / "labels"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "TOY_TEACHER_DELAY": "0.1", "TOY_BARRIER": f"{barrier}:{writers}"}
    cmd = label_command(corpus, toy_teacher, store, "--batch-size", "2", "--quiet")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(writers)]  # fmt: skip
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, outs
    labelled = [int(re.search(r"(\d+) labelled now", out).group(1)) for out, _ in outs]
    assert sum(labelled) == 40 and min(labelled) >= 2, labelled  # shared, nothing twice
    health = LabelStore.open(store).health()
    assert (health.crops, health.duplicates, health.damaged) == (40, 0, {})
    assert health.chunks == 20 and health.writers == 0 and health.stale_claims == 0
    assert not list((store / "claims").glob("*.claim"))  # each writer dropped its claims


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


def test_training_falls_back_to_the_previous_resume_generation(corpus, toy_teacher, tmp_path):
    run_label(label_config(corpus, toy_teacher, tmp_path / "labels"), progress=False)

    def train_cfg(out: str, max_steps: int) -> TrainConfig:
        return TrainConfig(store=str(tmp_path / "labels"), out=str(tmp_path / out),
                           max_steps=max_steps, batch_size=8, checkpoint_every=3, eval_every=4,
                           num_threads=1, warmup_fraction=0.0)  # fmt: skip

    torch.set_num_threads(1)
    run_train(train_cfg("straight", 8), progress=False)
    out = tmp_path / "resumed"
    run_train(train_cfg("resumed", 8), progress=False)
    newest = out / "resume.pt"
    assert torch.load(out / "resume.prev.pt", weights_only=True)["step"] == 6  # two generations
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as a crash or bad disk leaves it
    (out / "student.pt").unlink()
    resumed = run_train(train_cfg("resumed", 8), progress=False)  # from step 6: the same end
    assert resumed.steps == 8
    a, _ = load_student(tmp_path / "straight" / "last.pt")
    b, _ = load_student(out / "last.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)

    for path in (newest, out / "resume.prev.pt"):
        path.write_bytes(b"\0" * 100)
    flags = "--max-steps 8 --batch-size 8 --checkpoint-every 3 --warmup-fraction 0 --quiet"
    assert (
        main(["train", "--store", str(tmp_path / "labels"), "--out", str(out), *flags.split()]) == 2
    )


def test_a_damaged_chunk_stops_every_stage_with_one_line_naming_it(
    corpus, toy_teacher, tmp_path, capsys
):
    store = tmp_path / "labels"
    run_label(label_config(corpus, toy_teacher, store, batch_size=8), progress=False)
    run_train(TrainConfig(store=str(store), out=str(tmp_path / "s"), max_steps=2), progress=False)
    chunk = LabelStore.open(store).chunk_paths()[2]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    label = label_command(corpus, toy_teacher, store, "--quiet")[3:]
    student = str(tmp_path / "s" / "student.pt")
    stages = [label, ["train", "--store", str(store), "--out", str(tmp_path / "t"), "--quiet"],
              ["eval", "--store", str(store), "--checkpoint", student]]  # fmt: skip
    for args in stages:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{chunk}: damaged chunk: unreadable zip" in err and "--repair" in err
    capsys.readouterr()
    assert main(["check", "--store", str(store)]) == 1
    assert f"damaged: {chunk.name}: unreadable zip" in capsys.readouterr().out

    assert main([*label, "--repair"]) == 0
    out = capsys.readouterr().out
    assert "32 already labelled, 8 labelled now" in out and "moved 1 damaged chunks aside" in out
    assert (store / "damaged" / chunk.name).exists()
    assert len(LabelStore.open(store).read()) == 40
    assert main(["check", "--store", str(store)]) == 0
