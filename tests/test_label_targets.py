"""No-teacher baseline store: the label stage's crops with label targets (NaN = unlabelled)."""

import csv

import numpy as np
import soundfile as sf
from edgeser.distill.config import LabelConfig, TrainConfig
from edgeser.distill.label_targets import labels_teacher_id, run_label_targets
from edgeser.distill.store import LabelStore
from edgeser.distill.targets import category_adv
from edgeser.distill.train import run_train


def test_label_store_holds_each_crops_target_and_masks_unlabelled_dimensions(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("a.wav", "anger", ""), ("b.wav", "", "low")]
    for name, _, _ in rows:
        sf.write(tmp_path / name, (0.1 * rng.standard_normal(24_000)).astype(np.float32), 16_000)
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "corpus", "speaker", "emotion", "arousal_level"])
        w.writerows([[n, "toy", f"s{i}", e, a] for i, (n, e, a) in enumerate(rows)])
    cfg = LabelConfig(data=[str(manifest)], store=str(tmp_path / "store"), crops_per_file=3)

    assert run_label_targets(cfg, progress=False) == 6
    assert run_label_targets(cfg, progress=False) == 0  # resumable: nothing left to do
    store = LabelStore.open(tmp_path / "store")
    assert store.teacher_id == labels_teacher_id()
    labels = store.read()
    for crop, adv in zip(labels.crops, labels.adv, strict=True):
        if crop.info.get("emotion") == "anger":
            np.testing.assert_allclose(adv, category_adv("anger"))
        else:
            assert adv[0] < 0.5 and np.isnan(adv[1:]).all()


def test_a_student_trains_on_a_store_with_unlabelled_dimensions(tmp_path):
    rng = np.random.default_rng(1)
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "corpus", "speaker", "emotion", "arousal_level"])
        labels = [("anger", ""), ("sadness", ""), ("", "low"), ("", "high"), ("calm", "")]
        for i, (emotion, level) in enumerate(labels):
            audio = (0.1 * rng.standard_normal(16_000)).astype(np.float32)
            sf.write(tmp_path / f"{i}.wav", audio, 16_000)
            w.writerow([f"{i}.wav", "toy", f"s{i % 3}", emotion, level])
    store = str(tmp_path / "store")
    run_label_targets(LabelConfig(data=[str(manifest)], store=store, crops_per_file=4,
                                  min_crop_s=0.5, max_crop_s=0.5), progress=False)  # fmt: skip
    report = run_train(TrainConfig(store=store, out=str(tmp_path / "student"), max_steps=3,
                                   batch_size=6, eval_every=3, dev_fraction=0.34,
                                   student="wav2small2"), progress=False)  # fmt: skip
    assert report.steps == 3
    assert all(np.isfinite(v) for v in report.dev_ccc.values())
