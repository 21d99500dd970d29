"""benchmarks.loco: the LOCO scores against hand-computed values, and a tiny LOCO run on
generated corpora (fold structure, resume without retraining, pending folds in the report)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from edgeser.distill import reference_train
from edgeser.distill.manifest import MANIFEST_COLUMNS, ManifestRow, read_manifest
from edgeser.distill.targets import row_target, valence_class

from benchmarks import loco, loco_ensemble
from benchmarks.loco_metrics import (
    SoftmaxRegression,
    arousal_class,
    class_auc,
    corpus_scores,
    head_predictions,
    readings_baseline,
    uar,
)
from benchmarks.loco_report import markdown, verdict
from edgeser.audio import read_audio

TINY_RECIPE = """steps = 2
batch_size = 4
crop_s = 0.5
eval_every = 2
warmup_steps = 1
[model]
n_mels = 16
channels = [4, 8, 8, 8]
d_model = 16
n_layers = 1
n_heads = 2
ff_dim = 32
dropout = 0.0
"""
# corpus -> (field, labels): two with categories (one without neutral, as turev), one by level.
TOY = {
    "alpha": ("emotion", ["anger", "happiness", "neutral", "sadness"]),
    "beta": ("emotion", ["anger", "happiness", "calm", "sadness"]),
    "gamma": ("arousal_level", ["high", "low"]),
}


def row(emotion: str = "", level: str = "") -> ManifestRow:
    return ManifestRow(audio=Path("x.wav"), emotion=emotion, arousal_level=level)


def test_arousal_classes_of_issue_18_count_surprise_and_boredom():
    classes = [arousal_class(row(e)) for e in ("surprise", "fear", "boredom", "calm", "disgust")]
    assert classes == [True, True, False, False, None]
    assert [arousal_class(row(level=v)) for v in ("high", "neutral", "low")] == [True, None, False]


def test_auc_uar_and_ccc_match_hand_computed_values():
    # negatives 0.1, 0.45; positives 0.4, 0.5; None left out: 3 of the 4 pairs ordered right
    assert class_auc(np.array([0.1, 0.4, 9.0, 0.45, 0.5]), [False, True, None, False, True]) == 0.75
    # class 0: 2 of 2 right, class 1: 1 of 2, class 3: 0 of 1; -1 not scored; 2 not present
    assert uar(np.array([0, 0, 1, 2, 2, 0]), np.array([0, 0, 1, 1, -1, 3])) == pytest.approx(0.5)
    assert np.isnan(uar(np.array([1]), np.array([-1])))
    # arousal targets: anger (0.59 + 1) / 2 = 0.795, sadness 0.365; readings 0.1 above both:
    # CCC = 2 var / (2 var + 0.1^2) with var = 0.215^2
    rows = [row("anger"), row("sadness")]
    adv = np.array([[0.895, 0.5, 0.5], [0.465, 0.5, 0.5]])
    s = corpus_scores(adv, rows)
    var = 0.215**2
    assert s["ccc_arousal"] == pytest.approx(2 * var / (2 * var + 0.01), abs=1e-6)
    assert s["auc_arousal"] == 1.0 and np.isnan(s["auc_valence"])  # no happiness clip
    assert s["four_class_clips"] == 2 and "uar_head" not in s and "uar_readings_lr" not in s


def test_the_readings_baseline_and_a_head_are_scored_on_the_four_classes():
    labels = ["anger", "happiness", "neutral", "sadness"]
    rows = [row(e) for e in labels for _ in range(5)] + [row("calm")]  # calm is not scored
    rng = np.random.default_rng(0)
    adv = np.repeat(np.eye(4)[:, :3], 5, axis=0) + 0.01 * rng.standard_normal((20, 3))
    adv = np.vstack([adv, [[0.5, 0.5, 0.5]]])
    baseline = readings_baseline(adv, rows)
    assert isinstance(baseline, SoftmaxRegression)
    # a head with an extra class first: only the four columns count, in CATEGORY_LABELS order
    head = np.zeros((21, 5))
    head[np.arange(21), [1 + (i // 5) % 4 for i in range(21)]] = 1.0
    head[:, 0] = 2.0  # 'surprise' would win everywhere if it counted
    s = corpus_scores(adv, rows, baseline, head, ["surprise", *labels])
    assert s["uar_readings_lr"] == 1.0 and s["uar_head"] == 1.0
    assert readings_baseline(adv, [row(level="high")] * 21) is None
    with pytest.raises(ValueError, match="lack neutral"):
        head_predictions(head[:, :3], ["anger", "happiness", "sadness"])


def write_toy_corpora(root: Path) -> None:
    """TOY in the shared layout: per corpus two speakers (train, dev), three clips per label,
    each label a tone of its own pitch and loudness."""
    rng = np.random.default_rng(0)
    for corpus, (field, labels) in TOY.items():
        (root / corpus / "audio").mkdir(parents=True)
        rows = []
        for speaker, split in enumerate(("train", "dev")):
            for k, label in enumerate(labels):
                for take in range(3):
                    t = np.arange(int(16_000 * rng.uniform(0.5, 0.9))) / 16_000
                    tone = (0.05 + 0.1 * k) * np.sin(2 * np.pi * (120 + 60 * k) * t)
                    rel = f"audio/{speaker}_{label}_{take}.wav"
                    sf.write(root / corpus / rel, tone.astype(np.float32), 16_000)
                    rec = {"path": rel, "corpus": corpus, "speaker": f"{corpus}-{speaker}",
                           "split": split, field: label}  # fmt: skip
                    rows.append([rec.get(c, "") for c in MANIFEST_COLUMNS])
        with (root / corpus / "manifest.csv").open("w", newline="") as f:
            csv.writer(f).writerows([MANIFEST_COLUMNS, *rows])


@pytest.fixture
def toy(tmp_path):
    write_toy_corpora(tmp_path / "corpora")
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)

    def run(*extra: str) -> int:
        return loco.main(["--recipe", str(tmp_path / "tiny.toml"), "--out",
                          str(tmp_path / "runs" / "v1"), "--corpora", str(tmp_path / "corpora"),
                          "--corpus-names", ",".join(TOY), "--report", str(tmp_path / "loco"),
                          *extra])  # fmt: skip

    return tmp_path, run


def count_training(monkeypatch) -> list[list[str]]:
    """Record the corpora of every reference_train.train call (and still train)."""
    calls, real = [], reference_train.train

    def counted(cfg):
        calls.append(cfg.corpus_names)
        return real(cfg)

    monkeypatch.setattr(reference_train, "train", counted)
    return calls


def test_a_tiny_loco_run_folds_resumes_and_marks_pending_folds(toy, monkeypatch, capsys):
    tmp_path, run = toy
    calls = count_training(monkeypatch)
    assert run("--folds", "alpha") == 0
    assert calls == [["beta", "gamma"]]
    report = json.loads((tmp_path / "loco.json").read_text())["recipes"]["v1"]
    alpha = report["folds"]["alpha"]
    assert alpha["status"] == "finished" and alpha["trained_on"] == ["beta", "gamma"]
    assert alpha["clips"] == 24 and alpha["scores"]["four_class_clips"] == 24  # every clip
    assert alpha["baseline_fit_clips"] == 18  # the dev clips of beta and gamma
    assert report["folds"]["beta"] == {"status": "pending", "step": 0, "of": 2}
    md = (tmp_path / "loco.md").read_text()
    assert "| beta | pending (training step 0 of 2) |" in md
    assert "| **mean** | | pending |" in md and "| alpha | 24 |" in md
    assert "tiny.toml`, 2 steps per fold, seed 0" in md
    assert "1 of 3 folds finished, scored by the code at git " in md

    assert run() == 0  # alpha is not trained again
    assert calls == [["beta", "gamma"], ["alpha", "gamma"], ["alpha", "beta"]]
    report = json.loads((tmp_path / "loco.json").read_text())["recipes"]["v1"]
    assert [f["status"] for f in report["folds"].values()] == ["finished"] * 3
    gamma = report["folds"]["gamma"]["scores"]
    assert "ccc_valence" not in gamma and gamma["four_class_clips"] == 0  # levels only
    assert "uar_readings_lr" in gamma and gamma["uar_readings_lr"] is None  # undefined: null
    mean_line = next(ln for ln in (tmp_path / "loco.md").read_text().splitlines()
                     if ln.startswith("| **mean**"))  # fmt: skip
    mean_row = [cell.strip() for cell in mean_line.strip("|").split("|")]
    aucs = [report["folds"][c]["scores"]["auc_arousal"] for c in TOY]  # all three define it
    assert mean_row[6] == f"{np.mean(aucs):.3f}"  # the AUC A column

    # a fold whose training finished but whose scoring was cut short is scored, not retrained
    (tmp_path / "runs" / "v1" / "beta" / "metrics.json").unlink()
    assert run("--folds", "beta") == 0
    assert len(calls) == 3
    capsys.readouterr()


def test_bad_folds_and_another_recipe_in_the_same_out_are_one_line_errors(toy, capsys):
    tmp_path, run = toy
    assert run("--folds", "delta", "--report-only") == 2
    assert capsys.readouterr().err.strip() == (
        "python -m benchmarks.loco: error: unknown folds delta (corpora: alpha, beta, gamma)"
    )
    assert run("--report-only") == 2
    assert capsys.readouterr().err.endswith("v1: no LOCO run there to report on\n")
    assert run("--folds", "gamma") == 0  # records the run: 2 steps
    assert run("--report-only", "--folds", "beta") == 0  # the report keeps the first command
    assert "--folds beta" not in (tmp_path / "loco.md").read_text()
    assert run("--steps", "3", "--report-only") == 2
    assert "made with another recipe (steps differ); use a new --out" in capsys.readouterr().err


CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


@pytest.mark.corpora
def test_nemo_reads_and_maps_to_targets_and_loco_classes():
    """nEMO (Ogg Opus): six categories, all labelled on A/D/V, every clip in the arousal AUC,
    dev = actors KD0 and SM0, and the audio decodes to 16 kHz float32 like the FLAC corpora."""
    manifest = CORPORA / "nemo" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} absent")
    rows = read_manifest(manifest)
    emotions = {"anger", "fear", "happiness", "neutral", "sadness", "surprise"}
    assert {r.emotion for r in rows} == emotions and len(rows) == 4481
    assert {r.speaker for r in rows if r.split == "dev"} == {"nemo-KD0", "nemo-SM0"}
    assert all(row_target(r)[1].tolist() == [1.0, 1.0, 1.0] for r in rows)
    assert all(arousal_class(r) is not None for r in rows)
    assert sum(valence_class(r) is not None for r in rows) == sum(
        r.emotion in {"happiness", "anger", "sadness", "fear"} for r in rows
    )
    audio, rate = sf.read(rows[0].audio, dtype="float32")
    assert rate == 16_000 and audio.ndim == 1
    np.testing.assert_array_equal(read_audio(rows[0].audio), audio)


def test_later_recipes_are_compared_with_v1_fold_by_fold_and_on_the_mean():
    def fold(ccc: float, auc_v: float | None) -> dict:
        scores = {"ccc_mean": ccc, "auc_valence": auc_v}
        return {"status": "finished", "clips": 3, "selected_step": 1, "selection_dev_score": 0.5,
                "train_seconds": 60.0, "scores": scores}  # fmt: skip

    def entry(folds: dict) -> dict:
        return {"recipe": "r.toml", "command": "c", "out": "o", "steps": 2,
                "steps_overridden": False, "config": {"seed": 0},
                "machine": {"cpu": "cpu", "date_utc": "d"}, "folds": folds}  # fmt: skip

    v1 = entry({"a": fold(0.20, 0.60), "b": fold(0.40, None)})
    v2 = entry({"a": fold(0.25, 0.55), "b": {"status": "pending", "step": 1, "of": 2}})
    md = markdown({"recipes": {"v1": v1, "v2": v2}})
    assert "| v2 | a | - | - | - | +0.050 | - | -0.050 | - | - |" in md
    assert "| v2 | b | pending |" in md and "| v2 | **mean** |" not in md
    v2["folds"]["b"] = fold(0.30, None)
    md = markdown({"recipes": {"v1": v1, "v2": v2}})  # means 0.275 vs 0.300; AUC V a only
    assert "| v2 | **mean** | - | - | - | -0.025 | - | -0.050 | - | - |" in md


def test_the_rule_s_verdict_names_every_corpus_and_dimension_that_loses_too_much():
    def fold(a: float, d: float, mean: float) -> dict:
        return {"status": "finished", "scores": {"ccc_arousal": a, "ccc_dominance": d,
                                                 "ccc_mean": mean}}  # fmt: skip

    base = {"x": fold(0.40, 0.20, 0.30), "y": fold(0.50, 0.30, 0.40)}
    assert verdict({"x": fold(0.42, 0.21, 0.31), "y": fold(0.49, 0.30, 0.395)}, base) == (
        "passes (mean CCC +0.003)"  # y loses 0.005: within the margin
    )
    worse = {"x": fold(0.46, 0.17, 0.33), "y": fold(0.52, 0.27, 0.38)}  # y -0.02, D -0.03
    assert verdict(worse, base) == "fails (mean CCC +0.005; y -0.020; dominance -0.030)"
    assert verdict({"x": fold(0.4, 0.2, 0.3), "y": fold(0.5, 0.3, 0.4)}, base).startswith("fails")
    assert verdict({"x": fold(0.4, 0.2, 0.3), "y": {"status": "pending"}}, base) == "pending"


def test_seed_runs_combine_into_an_ensemble_and_a_seed_mean_without_training(toy, monkeypatch):
    tmp_path, _ = toy
    for seed in ("0", "1"):
        assert loco.main(["--recipe", str(tmp_path / "tiny.toml"), "--corpora",
                          str(tmp_path / "corpora"), "--corpus-names", ",".join(TOY),
                          "--out", str(tmp_path / "runs" / f"s{seed}"), "--seed", seed,
                          "--report", str(tmp_path / "loco")]) == 0  # fmt: skip
    calls = count_training(monkeypatch)
    runs = [str(tmp_path / "runs" / s) for s in ("s0", "s1")]
    common = ["--corpora", str(tmp_path / "corpora"), "--report", str(tmp_path / "loco")]
    assert loco_ensemble.main([*runs, "--name", "v1-ens2", *common]) == 0
    assert loco_ensemble.main([*runs, "--name", "v1-mean", "--mean", *common]) == 0
    assert calls == []  # nothing trained again
    recipes = json.loads((tmp_path / "loco.json").read_text())["recipes"]
    members = [recipes[s]["folds"]["alpha"]["scores"] for s in ("s0", "s1")]
    mean = recipes["v1-mean"]["folds"]["alpha"]["scores"]
    assert mean["auc_arousal"] == pytest.approx(np.mean([m["auc_arousal"] for m in members]))

    # the ensemble is scored on the members' mean readings, clip by clip
    saved = [np.load(tmp_path / "runs" / s / "alpha" / "predictions.npz") for s in ("s0", "s1")]
    rows = [r for split in ("train", "dev") for r in read_manifest(
        tmp_path / "corpora" / "alpha" / "manifest.csv") if r.split == split]  # fmt: skip
    expected = corpus_scores((saved[0]["adv"] + saved[1]["adv"]) / 2, rows)
    ensemble = recipes["v1-ens2"]["folds"]["alpha"]
    assert ensemble["scores"]["ccc_arousal"] == pytest.approx(expected["ccc_arousal"])
    assert ensemble["selected_step"] == "2+2" and ensemble["clips"] == 24
    md = (tmp_path / "loco.md").read_text()
    assert "## v1-ens2: `" in md and "(ensemble of 2 runs)`, 2 steps per fold, seed 0+1" in md


def test_an_ensemble_of_two_recipes_is_refused(toy, capsys):
    tmp_path, _ = toy
    other = tmp_path / "other.toml"
    other.write_text(TINY_RECIPE.replace("batch_size = 4", "batch_size = 2"))
    for out, recipe in (("a", "tiny.toml"), ("b", "other.toml")):
        assert loco.main(["--recipe", str(tmp_path / recipe), "--corpora",
                          str(tmp_path / "corpora"), "--corpus-names", ",".join(TOY),
                          "--out", str(tmp_path / out), "--folds", "gamma", "--report",
                          str(tmp_path / "loco")]) == 0  # fmt: skip
    capsys.readouterr()
    args = [str(tmp_path / "a"), str(tmp_path / "b"), "--name", "e", "--report",
            str(tmp_path / "loco"), "--corpora", str(tmp_path / "corpora")]  # fmt: skip
    assert loco_ensemble.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"not the recipe of {tmp_path / 'a'} (batch_size)")
    assert loco_ensemble.main([str(tmp_path / "a"), "--name", "e"]) == 2
    assert "combine at least two runs" in capsys.readouterr().err
