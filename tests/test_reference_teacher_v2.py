"""Reference teacher, second-recipe levers: the first recipe's config leaves them all off; the
categorical head (masked loss, category mapping, softmax output, labels in the checkpoint);
prosody inputs; class-balanced sampling; old checkpoints and old run configs still load."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeser.distill.manifest import ManifestRow
from edgeser.distill.metrics import masked_cross_entropy, unweighted_average_recall
from edgeser.distill.reference_train import (
    BalancedSampler,
    Clip,
    ReferenceTrainConfig,
    load_config,
    same_config,
    train,
)
from edgeser.distill.targets import category_index
from edgeser.distill.teachers.base import CATEGORY_LABELS
from edgeser.distill.teachers.reference import (
    ReferenceModel,
    load_reference,
    load_reference_teacher,
    save_reference,
)
from test_reference_teacher import TINY, toy_config, waves, write_toy_corpora

from edgeser.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BUNDLED_TEACHER = REPO / "distill" / "weights" / "reference_teacher.pt"
HEADED = dataclasses.replace(TINY, category_labels=list(CATEGORY_LABELS), prosody=True)


def test_the_first_recipe_config_leaves_every_new_lever_off():
    cfg = load_config(REPO / "configs" / "reference_teacher.toml")
    default = ReferenceTrainConfig()
    assert cfg.sampling == ["corpus", "speaker"] and cfg.lr_floor == 0.05
    assert cfg.model.prosody is False and cfg.model.category_labels == []
    a = cfg.augment
    assert (a.p_far, a.p_babble, a.p_mu_law, a.p_codec) == (0.0, 0.0, 0.0, 0.0)
    assert cfg.corpus_names == ["ravdess", "baved", "turev"] == default.corpus_names


def test_the_all_levers_candidate_config_turns_the_levers_on():
    cfg = load_config(REPO / "configs" / "loco" / "all-levers.toml")
    assert "nemo" in cfg.corpus_names and "class" in cfg.sampling
    assert cfg.model.category_labels == list(CATEGORY_LABELS) and cfg.model.prosody
    a = cfg.augment
    assert min(a.p_far, a.p_babble, a.p_mu_law, a.p_codec) > 0
    assert a.gain_db_range == [-40.0, 10.0] and a.babble_snr_db_range == [0.0, 15.0]


def test_bad_lever_values_are_config_errors(tmp_path):
    path = tmp_path / "c.toml"
    for text, message in (
        ('sampling = ["corpus", "room"]\n', "sampling"),
        ('calm = "happy"\n', "calm must be one of neutral, masked"),
        ('[model]\ncategory_labels = ["anger", "joyful"]\n', "category_labels"),
        ("[augment]\np_codec = 2.0\n", r"augment.p_codec must be in \[0, 1\]"),
        ('[augment]\ncodecs = ["aac"]\n', "augment.codecs"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def row(emotion: str = "", level: str = "", corpus: str = "c", speaker: str = "s") -> ManifestRow:
    return ManifestRow(Path("x.wav"), corpus=corpus, speaker=speaker, emotion=emotion,
                       arousal_level=level)  # fmt: skip


def test_categories_map_per_corpus_with_calm_configurable():
    labels = CATEGORY_LABELS
    assert [category_index(row(e), labels, "neutral") for e in labels] == [0, 1, 2, 3]
    assert category_index(row("calm"), labels, "neutral") == labels.index("neutral")
    assert category_index(row("calm"), labels, "masked") == -1
    for other in ("fear", "surprise", "disgust", "boredom"):
        assert category_index(row(other), labels, "neutral") == -1
    assert category_index(row(level="high"), labels, "neutral") == -1  # BAVED: levels only
    assert category_index(row("angry"), labels, "neutral") == 0  # spelling of the table
    with pytest.raises(ValueError, match="calm"):
        category_index(row("calm"), labels, "sometimes")


def test_masked_rows_change_neither_the_categorical_loss_nor_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    target = torch.tensor([0, -1, 3, -1, 2, 1])
    keep = target >= 0
    loss = masked_cross_entropy(logits, target)
    loss.backward()
    kept = logits.detach()[keep].clone().requires_grad_(True)
    alone = torch.nn.functional.cross_entropy(kept, target[keep])
    alone.backward()
    assert loss.item() == pytest.approx(alone.item(), abs=1e-7)
    torch.testing.assert_close(logits.grad[keep], kept.grad)
    assert torch.count_nonzero(logits.grad[~keep]) == 0
    none = masked_cross_entropy(logits, torch.full((6,), -1))
    assert none.item() == 0.0 and none.requires_grad


def test_unweighted_average_recall():
    true = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 3, 2])
    assert unweighted_average_recall(pred, true, 4) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert np.isnan(unweighted_average_recall(pred, np.full(8, -1), 4))


def test_class_balanced_sampling_evens_out_classes():
    rows = [row("anger")] * 90 + [row("sadness")] * 10
    clips = [Clip(r, np.zeros(1), np.zeros(3), np.zeros(3)) for r in rows]
    rng = np.random.default_rng(0)
    by_speaker = BalancedSampler(clips, ["corpus", "speaker"]).draw(rng, 2000)
    by_class = BalancedSampler(clips, ["corpus", "class", "speaker"]).draw(rng, 2000)
    assert np.mean(np.array(by_speaker) >= 90) == pytest.approx(0.1, abs=0.03)
    assert np.mean(np.array(by_class) >= 90) == pytest.approx(0.5, abs=0.04)


def test_teacher_with_the_head_outputs_probabilities_and_checkpoints_its_labels(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "t.pt"
    save_reference(path, ReferenceModel(dataclasses.replace(HEADED)).eval())
    model, _ = load_reference(path)
    assert model.config.category_labels == list(CATEGORY_LABELS) and model.config.prosody
    teacher = load_reference_teacher(path)
    assert teacher.category_labels == CATEGORY_LABELS
    audio = waves(300, 4_000, 16_000, 9_999)
    out = teacher(audio)
    assert out.categories.shape == (4, len(CATEGORY_LABELS))
    np.testing.assert_allclose(out.categories.sum(1), 1.0, atol=1e-5)
    assert (out.categories >= 0).all()
    one_by_one = np.concatenate([teacher([w]).categories for w in audio])
    np.testing.assert_allclose(out.categories, one_by_one, atol=1e-5)  # padding masked


def test_prosody_features_follow_the_pitch():
    model = ReferenceModel(dataclasses.replace(HEADED)).eval()
    t = np.arange(16_000) / 16_000
    for f0 in (110.0, 220.0):
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        power, _ = model.power(torch.tensor(tone, dtype=torch.float32)[None])
        log_f0, voicing, _ = model.prosody_features(power)[0]
        assert 100 * 2 ** float(log_f0.median()) == pytest.approx(f0, rel=0.05)
        assert float(voicing.median()) > 0.5
    noise = torch.from_numpy(waves(16_000)[0])[None]
    assert float(model.prosody_features(model.power(noise)[0])[0, 1].median()) < 0.4


def test_the_bundled_first_teacher_still_loads_without_categories():
    teacher = load_reference_teacher(BUNDLED_TEACHER)
    assert teacher.category_labels == ()
    out = teacher(waves(16_000))
    assert out.categories is None and out.adv.shape == (1, 3)


def test_a_run_resumes_from_a_checkpoint_written_before_the_levers_existed():
    now = dataclasses.asdict(ReferenceTrainConfig())
    default = dataclasses.asdict(ReferenceTrainConfig())
    old = {k: v for k, v in now.items() if k not in ("sampling", "lr_floor")}
    old["model"] = {k: v for k, v in now["model"].items() if k != "category_labels"}
    assert same_config(old, now, default)
    changed = dataclasses.asdict(ReferenceTrainConfig(sampling=["class"]))
    assert not same_config(old, changed, default)
    assert not same_config({**old, "gone": 1}, now, default)


def test_training_with_every_lever_on_a_toy_corpus(tmp_path):
    write_toy_corpora(tmp_path / "corpora")
    cfg = toy_config(tmp_path, "v2")
    cfg.model = dataclasses.replace(HEADED)
    cfg.sampling = ["corpus", "class", "speaker"]
    a = cfg.augment
    a.p_far = a.p_babble = a.p_mu_law = a.p_codec = a.p_band = a.p_telephone = 0.5
    summary = train(cfg.validate())
    best = summary["best"]
    assert 0.0 <= best["cat"]["uar_categories"] <= 1.0  # anger / sadness: categories
    assert "uar_categories" not in best["lvl"]  # arousal levels only: masked
    teacher = load_reference_teacher(summary["weights"])
    assert teacher.category_labels == CATEGORY_LABELS
    np.testing.assert_allclose(teacher(waves(8_000)).categories.sum(1), 1.0, atol=1e-5)
