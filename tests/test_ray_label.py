"""Labelling on Ray (distill/ray_label.py): same labels and keys as the single-machine path, in
the same store, resumable across a ``kill -9`` of the driver and across the two paths.

One local 2-CPU Ray cluster serves the whole module (Ray starts slowly on small machines);
the kill test drives it from a second process, as ``edgeser-distill label --ray ADDRESS`` would.
"""

from __future__ import annotations

import dataclasses
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
from edgeser.distill.claims import batch_id
from edgeser.distill.cli import main
from edgeser.distill.config import ConfigError, LabelConfig
from edgeser.distill.label import label_batches, label_crops, plan_label, run_label
from edgeser.distill.ray_label import WorkerPlan, label_crops_ray, plan_workers, run_label_ray
from edgeser.distill.store import LabelStore, StoreError
from edgeser.distill.teachers.loading import TeacherError, load_teacher

# Per-waveform features through a fixed head: batch-independent, so both paths must agree
# to the last bit. ``slow`` is the same teacher (same id) taking 0.25 s per batch;
# ``two_columns`` is a broken teacher.
TEACHER_MODULE = """
import time

import numpy as np

from edgeser.distill.teachers.base import TeacherOutput

HEAD = np.array([[1.5, -0.4, 0.3], [0.2, 2.0, -1.0], [-0.7, 0.5, 3.0]])


class ToyTeacher:
    teacher_id = "ray-toy-teacher-1"

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s

    def __call__(self, waves):
        time.sleep(self.delay_s)
        feats = np.array([
            [np.log(np.sqrt(np.mean(w.astype(np.float64) ** 2)) + 1e-6) / 5,
             np.mean(np.abs(np.diff(np.sign(w)))), np.abs(np.diff(w)).mean() * 20]
            for w in waves
        ])
        adv = 1 / (1 + np.exp(-feats @ HEAD))
        return TeacherOutput(adv.astype(np.float32), feats.astype(np.float32))


fast = ToyTeacher()
slow = ToyTeacher(delay_s=0.25)


def two_columns(waves):
    return fast(waves).adv[:, :2]
"""
BATCH = 2


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory) -> Path:
    """A folder holding the ``ray_toy_teacher`` module, importable here and on Ray workers."""
    folder = tmp_path_factory.mktemp("mods")
    (folder / "ray_toy_teacher.py").write_text(textwrap.dedent(TEACHER_MODULE))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("ray_toy_teacher", None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """16 voiced or noisy clips of 1.2-2.5 s and one file that is not audio."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(8)
    for i in range(16):
        t = np.arange(int(16000 * rng.uniform(1.2, 2.5))) / 16000
        tone = np.sin(2 * np.pi * rng.uniform(100, 600) * t) * (1 + np.sin(2 * np.pi * 4 * t))
        x = rng.uniform(0.05, 0.4) * (tone + rng.uniform(0, 1.5) * rng.standard_normal(t.size))
        sf.write(root / f"clip{i:02d}.wav", (x / 3).astype(np.float32), 16000)
    (root / "broken.wav").write_bytes(b"RIFF but not a wave file")
    return root


def label_config(corpus: Path, store: Path, teacher: str = "ray_toy_teacher:fast", **kw):
    """3 augmented crops of 0.5-1.5 s per file: 48 crops in 24 batches."""
    return LabelConfig(data=[str(corpus)], teacher=teacher, store=str(store), crops_per_file=3,
                       min_crop_s=0.5, max_crop_s=1.5, batch_size=BATCH, store_embeddings=True,
                       **kw)  # fmt: skip


@pytest.fixture(scope="module")
def reference(corpus, teacher_path, tmp_path_factory) -> LabelStore:
    """The single-machine path's store: what the Ray path must reproduce."""
    store = tmp_path_factory.mktemp("single") / "labels"
    run_label(label_config(corpus, store), progress=False)
    return LabelStore.open(store)


@pytest.fixture(scope="module")
def ray_cluster(teacher_path) -> str:
    """A local 2-CPU Ray cluster for the module; yields its address for other drivers."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(teacher_path)}})  # fmt: skip
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def chunk_keys(store: LabelStore) -> list[str]:
    """Every key of every committed chunk, duplicates included."""
    keys: list[str] = []
    for path in store.chunk_paths():
        with np.load(path) as chunk:
            keys += chunk["keys"].tolist()
    return keys


def assert_same_labels(store: LabelStore, reference: LabelStore) -> None:
    """Same keys, each once, and the same readings and embeddings as the reference."""
    ours, ref = store.read(), reference.read()
    keys = chunk_keys(store)
    assert len(keys) == len(set(keys)) == len(ref)
    assert set(keys) == {c.key for c in ref.crops}
    ref = ref.subset(ours.crops)
    np.testing.assert_allclose(ours.adv, ref.adv, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.embedding, ref.embedding, rtol=0, atol=1e-3)


@pytest.mark.ray
def test_ray_path_reproduces_the_single_machine_labels(ray_cluster, corpus, reference, tmp_path):
    cfg = label_config(corpus, tmp_path / "labels", ray="auto")
    report = run_label_ray(cfg, progress=False)

    assert report.planned == report.labelled == len(reference) == 48
    assert [Path(f).name for f, _ in report.skipped_files] == ["broken.wav"]
    store = LabelStore.open(cfg.store)
    assert store.teacher_id == reference.teacher_id
    assert len(store.chunk_paths()) == 48 // BATCH  # one chunk per batch, as on one machine
    assert_same_labels(store, reference)
    # Either path resumes the other's store: nothing is left to do.
    again = run_label(dataclasses.replace(cfg, ray=""), progress=False)
    assert (again.already_done, again.labelled) == (48, 0)


@pytest.mark.ray
def test_driver_killed_mid_run_resumes_on_either_path(
    ray_cluster, teacher_path, corpus, reference, tmp_path
):
    store_dir = tmp_path / "labels"
    cfg = label_config(corpus, store_dir)
    argv = [sys.executable, "-m", "edgeser.distill.cli", "label", "--ray", ray_cluster,
            "--teacher", "ray_toy_teacher:slow", "--data", str(corpus), "--store", str(store_dir),
            "--crops-per-file", "3", "--min-crop-s", "0.5", "--max-crop-s", "1.5",
            "--batch-size", str(BATCH), "--store-embeddings", "--quiet"]  # fmt: skip
    # Ray puts the driver's working directory on its workers' path: the teacher module is there.
    proc = subprocess.Popen(argv, cwd=teacher_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = store_dir / "chunks"
    deadline = time.monotonic() + 180
    while len(list(chunks.glob("[!.]*.npz"))) < 2:
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "the Ray run committed nothing in 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = LabelStore.open(store_dir)
    killed_at = len(chunk_keys(store))
    assert 0 < killed_at < 48  # stopped half-way
    # Switch paths twice: one machine takes half the crops, Ray (with its decoding pool,
    # the shape GPU clusters use) finishes the rest.
    crop_plan, noise = plan_label(cfg)
    teacher = load_teacher(cfg.teacher)
    single = label_crops(crop_plan.crops[:24], teacher, store, BATCH, embeddings=True,
                         progress=False)  # fmt: skip
    assert single.already_done + single.labelled == 24
    done = len(chunk_keys(store))
    assert done >= 24
    workers = WorkerPlan(actors=1, cpus_per_actor=1, gpus_per_actor=0, device="cpu", decoders=1)
    rest = label_crops_ray(crop_plan.crops, cfg.teacher, store, cfg, workers, noise, False)
    assert (rest.already_done, rest.labelled) == (done, 48 - done)
    assert_same_labels(store, reference)


# A writer that claims one batch and holds it until the others have labelled everything else.
HOLDER = """
import sys, time
from pathlib import Path
from edgeser.distill.claims import Writer
from edgeser.distill.store import LabelStore, StoreError

def done(root):
    try:
        return len(LabelStore.open(root).done_keys())
    except StoreError:  # the damaged chunk, until the driver moves it aside
        return 0

root, batch, rest = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
writer = Writer.register(root)
assert writer.claim(batch) == "mine"
print("claimed", flush=True)
deadline = time.monotonic() + 300
while done(root) < rest and time.monotonic() < deadline:
    time.sleep(0.1)
print(time.time_ns(), flush=True)
"""  # then it ends without labelling its batch: the claim is stale


@pytest.mark.ray
def test_ray_path_checks_chunks_repairs_and_shares_with_other_writers(
    ray_cluster, teacher_path, corpus, reference, tmp_path
):
    cfg = label_config(corpus, tmp_path / "labels", ray="auto")
    crop_plan, _ = plan_label(cfg)
    store = LabelStore.open(cfg.store, reference.teacher_id)
    label_crops(crop_plan.crops[:8], load_teacher(cfg.teacher), store, BATCH, embeddings=True,
                progress=False)  # fmt: skip
    store.close()
    damaged = store.chunk_paths()[1]
    damaged.write_bytes(b"")
    with pytest.raises(StoreError, match=f"{damaged.name}: damaged chunk: empty file"):
        run_label_ray(cfg, progress=False)

    first = {c.key for c in crop_plan.crops[:8]}
    held = [b for b in label_batches(crop_plan.crops, BATCH) if not first & {c.key for c in b}][-1]
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), cfg.store,
                               batch_id(held), str(48 - len(held))], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "claimed"
    report = run_label_ray(dataclasses.replace(cfg, repair=True), progress=False)
    assert holder.wait(timeout=60) == 0  # it saw all but its batch done, then ended
    ended_ns = int(holder.stdout.read())
    holder.stdout.close()
    held_keys = {c.key for c in held}
    [chunk] = [p for p in LabelStore.open(cfg.store).chunk_paths()
               if held_keys & set(np.load(p)["keys"].tolist())]  # fmt: skip
    assert int(chunk.name.split("-")[0]) > ended_ns  # labelled once its holder was gone
    assert report.repaired == [str(Path(cfg.store) / "damaged" / damaged.name)]
    assert (report.already_done, report.labelled) == (6, 42)  # its batch taken over at the end
    assert_same_labels(LabelStore.open(cfg.store), reference)


@pytest.mark.ray
@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ("ray_toy_teacher:absent", "has no 'absent'"),  # fails in the driver's check task
        ("ray_toy_teacher:two_columns", r"returned shape \(2, 2\) for 2 inputs"),  # in actors
    ],
    ids=["cannot-load", "wrong-shape"],
)
def test_teacher_errors_on_workers_reach_the_driver_as_they_are(
    ray_cluster, corpus, tmp_path, teacher, message
):
    cfg = label_config(corpus, tmp_path / "labels", teacher=teacher, ray="auto")
    with pytest.raises(TeacherError, match=message):
        run_label_ray(cfg, progress=False)


def test_missing_ray_is_a_clear_error(monkeypatch, corpus, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    argv = ["label", "--ray", "auto", "--data", str(corpus), "--teacher", "m:t",
            "--store", str(tmp_path / "labels")]  # fmt: skip
    assert main(argv) == 2
    assert "pip install 'edgeser[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "labels").exists()


def test_worker_plan_uses_gpus_only_when_present_and_allowed():
    cfg = LabelConfig(data=["x"], teacher="t", store="s")
    gpus = {"CPU": 32.0, "GPU": 4.0}
    assert plan_workers(cfg, gpus) == WorkerPlan(4, 1.0, 1.0, "cuda", 28)
    cfg.ray_num_gpus = 0.5  # two actors share each GPU
    assert plan_workers(cfg, gpus).actors == 8
    cfg.device = "cpu"
    assert plan_workers(cfg, gpus) == WorkerPlan(32, 1.0, 0.0, "cpu", 0)
    cfg.device, cfg.num_threads = "auto", 4
    assert plan_workers(cfg, {"CPU": 16.0}) == WorkerPlan(4, 4.0, 0.0, "cpu", 0)
    cfg.ray_actors = 3
    assert plan_workers(cfg, {"CPU": 16.0}).actors == 3
    cfg.device = "cuda"
    with pytest.raises(ConfigError, match="0 GPU"):
        plan_workers(cfg, {"CPU": 16.0})


def test_single_machine_path_never_imports_ray(corpus, teacher_path, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from edgeser.distill.cli import main
        assert main(["label", "--data", {str(corpus)!r}, "--teacher", "ray_toy_teacher:fast",
                     "--store", {str(tmp_path / "labels")!r}, "--quiet"]) == 0
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        assert not loaded, loaded
    """)
    env = {**os.environ, "PYTHONPATH": str(teacher_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
