"""Categories in distill/: a teacher with a categorical head -> its probabilities in the store
(version 3, verified like A/D/V) -> a student head trained with KL beside the CCC -> eval's
top-class agreement and four-class UAR -> export; stores and teachers without categories as
before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgeser.distill.config import EvalConfig, TrainConfig
from edgeser.distill.data import Crop
from edgeser.distill.evaluate import run_eval
from edgeser.distill.label import run_label
from edgeser.distill.store import DamagedChunkError, LabelStore, StoreError, read_chunk
from edgeser.distill.student import StudentConfig, Wav2Small, load_student, save_student
from edgeser.distill.teachers.base import CATEGORY_LABELS, TeacherOutput
from edgeser.distill.teachers.ensemble import EnsembleTeacher
from edgeser.distill.teachers.loading import TeacherError, check_output
from edgeser.distill.train import progress_fields, run_train
from edgeser.export.categories import META_CATEGORIES, OUTPUT_CATEGORIES
from edgeser.export.config import ExportConfig
from edgeser.export.parity import probe_signals, session
from edgeser.export.pipeline import run_export
from test_distill_pipeline import TOY_TEACHER, label_config, write_corpus

from edgeser.contract import INPUT_NAME
from edgeser.errors import ConfigError
from edgeser.incremental import STREAM_SUFFIX

# The toy teacher's three readings, also turned into four category probabilities.
TOY_CATEGORICAL = (
    TOY_TEACHER
    + """
from edgeser.distill.teachers.base import CATEGORY_LABELS, TeacherOutput

class Categorical:
    teacher_id = "toy-categorical-1"
    category_labels = CATEGORY_LABELS

    def __call__(self, waves):
        adv = teacher(waves)
        logits = 4 * np.concatenate([adv, 0.5 * np.ones((len(adv), 1), np.float32)], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return TeacherOutput(adv, categories=(e / e.sum(axis=1, keepdims=True)).astype(np.float32))

categorical = Categorical()
"""
)
EMOTIONS = ["anger", "sadness", "happy", "calm", "neutral"]  # "happy": an alias; calm: no class


def crops(n: int) -> list[Crop]:
    return [Crop(f"file{i}", 0, 16000, seed=i, path=f"/a/{i}.wav") for i in range(n)]


def probs(n: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).uniform(0.1, 1.0, (n, 4)).astype(np.float32)
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """The toy corpus with an emotion per file; the fourth speaker is the dev split."""
    corpus = write_corpus(tmp_path / "corpus")
    lines = ["path,corpus,speaker,emotion,split"]
    for s in range(4):
        for i, emotion in enumerate(EMOTIONS):
            split = "dev" if s == 3 else "train"
            lines.append(f"{corpus}/speaker{s}/clip{i}.wav,toy,toy-{s},{emotion},{split}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def categorical_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "edgeser_toy_categorical.py").write_text(TOY_CATEGORICAL)
    monkeypatch.syspath_prepend(str(mods))
    return "edgeser_toy_categorical:categorical"


def test_label_train_eval_export_with_a_categorical_teacher(
    manifest: Path, categorical_teacher: str, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    cfg = label_config(manifest, categorical_teacher, tmp_path / "labels")
    run_label(cfg, progress=False)
    store = LabelStore.open(cfg.store)
    assert store.version == 3 and store.category_labels == CATEGORY_LABELS
    labels = store.read()
    assert labels.categories.shape == (len(labels), 4) and labels.categories.dtype == np.float32
    np.testing.assert_allclose(labels.categories.sum(axis=1), 1.0, atol=1e-6)
    assert "categories: anger, happiness, neutral, sadness" in store.health().summary()

    out = tmp_path / "student"
    train = TrainConfig(store=cfg.store, out=str(out), student="wav2small-stream", max_steps=6,
                        batch_size=8, eval_every=3, num_threads=1)  # fmt: skip
    report = run_train(train, progress=False)
    assert 0 <= report.dev_categories["top_class_agreement"] <= 1
    model, meta = load_student(out / "student.pt")
    assert model.config.categories == CATEGORY_LABELS
    assert meta["categories"] == list(CATEGORY_LABELS) and "kl" in meta["dev_categories"]

    evaluated = run_eval(EvalConfig(store=cfg.store, checkpoint=str(out / "student.pt")),
                         progress=False)  # fmt: skip
    assert evaluated.category_labels == list(CATEGORY_LABELS)
    assert set(evaluated.categories_vs_teacher) == {"student", "untrained student"}
    assert "top-class agreement" in evaluated.table()
    # the teacher's UAR against the manifest's emotions, computed here independently
    dev = [i for i, c in enumerate(labels.crops) if c.info["split"] == "dev"]
    truth = {"anger": 0, "happy": 1, "neutral": 2, "sadness": 3}  # happy = happiness
    kept = [i for i in dev if labels.crops[i].info["emotion"] in truth]
    classes = np.array([truth[labels.crops[i].info["emotion"]] for i in kept])
    top = labels.categories[kept].argmax(axis=1)
    expected = np.mean([(top[classes == k] == k).mean() for k in np.unique(classes)])
    assert evaluated.teacher_vs_labels["toy"]["category_uar"] == pytest.approx(expected)
    assert 0 <= evaluated.student_vs_labels["toy"]["category_uar"] <= 1

    (fp32,) = run_export(ExportConfig(checkpoint=out / "student.pt", out=tmp_path / "models"))
    graph = onnx.load(fp32.path)
    assert [o.name for o in graph.graph.output][-1] == OUTPUT_CATEGORIES
    meta_props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta_props[META_CATEGORIES]) == list(CATEGORY_LABELS)
    assert fp32.path.with_suffix(STREAM_SUFFIX).is_file()
    signal = probe_signals(3, 16000)
    got = session(fp32.path).run([OUTPUT_CATEGORIES], {INPUT_NAME: signal})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(signal))[2].numpy(), atol=1e-5)


def test_a_store_of_a_teacher_without_categories_stays_version_2(tmp_path: Path) -> None:
    """Created without labels: version 2 (older edgeser reads it), no probabilities."""
    store = LabelStore.open(tmp_path / "plain", "t:1")
    assert store.version == 2 and "categories" not in store.meta
    labels = store.read()
    assert labels.categories is None and labels.category_labels == ()
    with pytest.raises(StoreError, match="no category labels"):
        store.append(crops(2), np.zeros((2, 3)), categories=probs(2))


def test_categories_false_trains_a_student_without_the_head(
    manifest: Path, categorical_teacher: str, tmp_path: Path
) -> None:
    cfg = label_config(manifest, categorical_teacher, tmp_path / "labels")
    run_label(cfg, progress=False)
    train = TrainConfig(store=cfg.store, out=str(tmp_path / "s"), max_steps=2, batch_size=8,
                        num_threads=1, categories=False)  # fmt: skip
    assert run_train(train, progress=False).dev_categories == {}
    model, _ = load_student(tmp_path / "s" / "student.pt")
    assert model.config.categories == () and model.category_head is None
    with_head = TrainConfig(store=cfg.store, out=str(tmp_path / "s"), max_steps=2, batch_size=8,
                            num_threads=1)  # fmt: skip
    with pytest.raises(ConfigError, match=r"another run .*categories"):
        run_train(with_head, progress=False)  # resume.pt has no head: not resumed into one
    published = TrainConfig(store=cfg.store, out=str(tmp_path / "p"), max_steps=2,
                            student="wav2small-published")  # fmt: skip
    with pytest.raises(ConfigError, match=r"no categorical head.*categories = false"):
        run_train(published, progress=False)


def test_store_checks_category_probabilities_on_write_and_read(tmp_path: Path) -> None:
    store = LabelStore.open(tmp_path, "t:1", categories=CATEGORY_LABELS)
    adv = np.zeros((3, 3), np.float32)
    bad_rows = probs(3) * 1.1
    for wrong, problem in (
        (None, r"need \[3, 4\], got none"),
        (probs(3)[:, :3], r"need float32 \[3, 4\]"),
        (bad_rows, "rows do not sum to 1"),
        (np.array([[1.5, -0.5, 0, 0]] * 3, np.float32), "negative or not finite"),
    ):
        with pytest.raises(StoreError, match=problem):
            store.append(crops(3), adv, categories=wrong)
    path = store.append(crops(3), adv, categories=probs(3))
    np.testing.assert_allclose(store.read().categories, probs(3))

    arrays = read_chunk(path)
    arrays["categories"] = arrays["categories"][:, ::-1].copy()  # same rows, columns swapped
    np.savez(path.with_suffix(""), **arrays)  # np.savez adds .npz back
    with pytest.raises(DamagedChunkError, match="checksum mismatch"):
        store.read()
    del arrays["categories"]
    np.savez(path.with_suffix(""), **arrays)
    with pytest.raises(DamagedChunkError, match=r"missing \['categories'\]"):
        store.read()
    with pytest.raises(StoreError, match=r"category probabilities for .*anger.* gives none"):
        LabelStore.open(tmp_path, "t:1")  # a writer must name the same labels
    LabelStore.open(tmp_path).close()  # a reader need not


def test_a_tampered_chunk_with_a_fresh_checksum_still_fails_the_row_sums(tmp_path: Path) -> None:
    from edgeser.distill.store import CHECKSUM, content_checksum

    store = LabelStore.open(tmp_path, "t:1", categories=CATEGORY_LABELS)
    path = store.append(crops(2), np.zeros((2, 3), np.float32), categories=probs(2))
    arrays = read_chunk(path)
    arrays["categories"] = arrays["categories"] * 2
    arrays[CHECKSUM] = np.array(content_checksum(arrays))
    np.savez(path.with_suffix(""), **arrays)
    with pytest.raises(DamagedChunkError, match="rows do not sum to 1"):
        store.read()


class FixedTeacher:
    """A teacher that returns fixed readings and (if given) category probabilities."""

    def __init__(self, name: str, categories: np.ndarray | None, labels: tuple[str, ...]):
        self.teacher_id, self.category_labels, self.categories = name, labels, categories

    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        return TeacherOutput(np.ones((len(waves), 3), np.float32), categories=self.categories)


def test_ensemble_averages_the_members_probabilities(tmp_path: Path) -> None:
    from edgeser.distill.config import TeacherCalibration

    waves = [np.zeros(16000, np.float32)] * 2
    a, b = probs(2, seed=1), probs(2, seed=2)
    members = [FixedTeacher("a", a, CATEGORY_LABELS), FixedTeacher("b", b, CATEGORY_LABELS),
               FixedTeacher("adv-only", None, ())]  # fmt: skip
    ensemble = EnsembleTeacher(members, ["a", "b", "c"], [TeacherCalibration()] * 3)
    assert ensemble.category_labels == CATEGORY_LABELS
    out = check_output(ensemble(waves), 2, ensemble.teacher_id, ensemble.category_labels)
    np.testing.assert_allclose(out.categories, (a + b) / 2, atol=1e-6)
    other = FixedTeacher("d", a, ("anger", "happiness", "sadness", "neutral"))
    with pytest.raises(TeacherError, match="disagree on their category labels"):
        EnsembleTeacher([members[0], other], ["a", "d"], [TeacherCalibration()] * 2)


def test_teacher_output_checks_name_the_problem() -> None:
    out = TeacherOutput(np.zeros((2, 3), np.float32))
    assert check_output(out, 2, "t").categories is None  # no head: as before
    with pytest.raises(TeacherError, match=r"toy.*need \[2, 4\], got none"):
        check_output(out, 2, "toy", CATEGORY_LABELS)
    out.categories = probs(3)
    with pytest.raises(TeacherError, match=r"need float32 \[2, 4\]"):
        check_output(out, 2, "toy", CATEGORY_LABELS)


def test_checkpoints_from_before_the_head_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    save_student(path, Wav2Small(StudentConfig.preset("wav2small")))
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["categories"]  # as written before issue 19
    torch.save(ckpt, path)
    model, _ = load_student(path)
    assert model.config.categories == () and len(model(torch.zeros(1, 8000))) == 2


def test_progress_shows_the_categories_kl_and_dev_agreement() -> None:
    fields = progress_fields(0.5, {"mean": 0.4}, 11.0, 0.1234, {"top_class_agreement": 0.75})
    assert fields == {"loss": "0.500", "kl": "0.123", "dev_ccc": "0.400", "dev_agree": "0.750",
                      "crops_s": "11"}  # fmt: skip
    assert "kl" not in progress_fields(0.5, {}, 11.0)


def test_ray_workers_carry_the_probabilities_to_the_driver(
    manifest: Path, categorical_teacher: str, tmp_path: Path
) -> None:
    """The Ray path's worker and driver functions, run here without a cluster: a decoded
    batch -> ``TeacherWorker.label`` -> ``commit`` -> the store holds the probabilities."""
    from edgeser.distill.data import CropAudio
    from edgeser.distill.label import LabelReport, plan_label
    from edgeser.distill.ray_label import (
        TeacherWorker,
        WorkerPlan,
        commit,
        decode_batch,
        teacher_identity,
    )

    cfg = label_config(manifest, categorical_teacher, tmp_path / "labels")
    batch = plan_label(cfg)[0].crops[:3]
    teacher_id, labels = teacher_identity(categorical_teacher, cfg.max_chunk_s)
    assert labels == CATEGORY_LABELS
    store = LabelStore.open(cfg.store, teacher_id, categories=labels)
    plan = WorkerPlan(actors=1, cpus_per_actor=1, gpus_per_actor=0, device="cpu", decoders=0)
    worker = TeacherWorker(categorical_teacher, teacher_id, plan, cfg, noise=None)
    decoded = decode_batch("\n".join(c.to_json() for c in batch), CropAudio())
    row = worker.label(*(decoded[k] for k in ("n", "crops", "lengths", "audio", "failed")))
    commit(row, store, set(), LabelReport())
    stored = store.read()
    assert len(stored) == 3 and stored.categories.shape == (3, 4)
    np.testing.assert_allclose(stored.categories.sum(axis=1), 1.0, atol=1e-6)
    store.close()
