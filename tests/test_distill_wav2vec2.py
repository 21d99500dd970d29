"""The wav2vec2 A/D/V teacher: a tiny random model with the published checkpoint's exact config
keys and weight layout, saved to disk and loaded through the user's path (``load_teacher``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgeser.distill.teachers.loading import TeacherError, load_teacher
from edgeser.distill.teachers.wav2vec2 import Wav2Vec2ForSpeechClassification, Wav2Vec2Teacher
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

LABEL_ORDER = {0: "arousal", 1: "dominance", 2: "valence"}


def tiny_config(id2label: dict[int, str] = LABEL_ORDER) -> Wav2Vec2Config:
    """The keys of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim, tiny sizes."""
    return Wav2Vec2Config(
        architectures=["Wav2Vec2ForSpeechClassification"],
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        final_dropout=0.1,
        pooling_mode="mean",
        problem_type="regression",
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )


def save_tiny(folder, id2label: dict[int, str] = LABEL_ORDER, seed: int = 0):
    torch.manual_seed(seed)
    model = Wav2Vec2ForSpeechClassification(tiny_config(id2label))
    with torch.no_grad():  # spread the head so that outputs differ visibly between inputs
        model.classifier.out_proj.weight.mul_(20.0)
    model.save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w2v2")
    return folder, save_tiny(folder)


@pytest.fixture(scope="module")
def teacher(saved) -> Wav2Vec2Teacher:
    torch.set_num_threads(1)
    return load_teacher(str(saved[0]), device="cpu")


def signals(*seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in seconds:
        t = np.arange(int(s * 16000)) / 16000
        x = np.sin(2 * np.pi * rng.uniform(100, 500) * t) + 0.3 * rng.standard_normal(len(t))
        out.append((rng.uniform(0.05, 0.8) * x + rng.uniform(-0.1, 0.1)).astype(np.float32))
    return out


def test_saved_layout_matches_the_published_checkpoint(saved):
    folder, model = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2ForSpeechClassification"]
    assert config["model_type"] == "wav2vec2"
    assert config["id2label"] == {"0": "arousal", "1": "dominance", "2": "valence"}
    for key, value in [
        ("feat_extract_norm", "layer"),
        ("do_stable_layer_norm", True),
        ("pooling_mode", "mean"),
        ("problem_type", "regression"),
    ]:
        assert config[key] == value
    names = set(model.state_dict())
    assert {"classifier.dense.weight", "classifier.out_proj.weight"} <= names
    assert all(n.startswith(("wav2vec2.", "classifier.")) for n in names)
    assert model.classifier.out_proj.weight.shape == (3, 32)
    assert model.classifier.dense.weight.shape == (32, 32)


def test_matches_processor_normalisation_and_head_on_time_mean(saved, teacher):
    _, model = saved
    (x,) = signals(1.3)
    processor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    values = processor(x, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        hidden = model.wav2vec2(values).last_hidden_state
        expected = model.classifier(hidden.mean(1)).numpy()
    out = teacher([x])
    assert out.adv.shape == (1, 3) and out.embedding.shape == (1, 32)
    np.testing.assert_allclose(out.adv, expected, atol=1e-5)
    # normalised per utterance: gain and DC offset change nothing
    np.testing.assert_allclose(teacher([3.0 * x + 0.2]).adv, out.adv, atol=1e-4)


def test_label_order_follows_id2label(tmp_path, saved, teacher):
    (x,) = signals(1.0)
    shuffled = {0: "valence", 1: "arousal", 2: "dominance"}
    save_tiny(tmp_path, shuffled)  # same weights (seed), columns now mean V, A, D
    reordered = load_teacher(str(tmp_path), device="cpu")
    np.testing.assert_allclose(reordered([x]).adv, teacher([x]).adv[:, [1, 2, 0]], atol=1e-5)


def test_padded_batch_equals_one_by_one(teacher):
    xs = signals(0.6, 1.7, 1.1, 2.3, seed=1)
    batch = teacher(xs)
    single = np.concatenate([teacher([x]).adv for x in xs])
    assert batch.adv.shape == (4, 3)
    assert np.ptp(single, axis=0).min() > 1e-3  # the inputs really differ
    np.testing.assert_allclose(batch.adv, single, atol=1e-4)


def test_long_audio_is_pooled_over_equal_chunks(saved):
    _, model = saved
    (x,) = signals(3.0, seed=2)
    chunked = Wav2Vec2Teacher(model, device="cpu", max_chunk_s=1.0)
    assert chunked.chunks(len(x)) == [(0, 16000), (16000, 32000), (32000, 48000)]
    z = torch.from_numpy((x - x.mean()) / np.sqrt(x.var() + 1e-7))
    with torch.no_grad():
        parts = [model.frame_sums(z[a:b][None]) for a, b in chunked.chunks(len(x))]
        pooled = sum(s for s, _ in parts) / sum(c for _, c in parts)
        expected = model.classifier(pooled).numpy()
    np.testing.assert_allclose(chunked([x]).adv, expected, atol=1e-5)
    whole = Wav2Vec2Teacher(model, device="cpu", max_chunk_s=20.0)([x]).adv
    np.testing.assert_allclose(chunked([x]).adv, whole, atol=0.05)  # close to unchunked


def test_teacher_id_hashes_the_weights(tmp_path, teacher):
    save_tiny(tmp_path, seed=1)
    other = load_teacher(str(tmp_path), device="cpu")
    assert other.teacher_id.startswith("wav2vec2:") and other.teacher_id != teacher.teacher_id


def test_checkpoint_without_the_head_is_refused(tmp_path):
    torch.manual_seed(0)
    from transformers import Wav2Vec2Model

    Wav2Vec2Model(tiny_config()).save_pretrained(tmp_path)  # backbone only, unprefixed
    with pytest.raises(TeacherError, match="lacks weights"):
        load_teacher(str(tmp_path), device="cpu")


def test_published_pytorch_model_bin_format_loads_identically(tmp_path, saved, teacher):
    """The hub checkpoint is a pytorch_model.bin with the old weight-norm names."""
    folder, model = saved
    legacy = {
        name.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): tensor.clone()
        for name, tensor in model.state_dict().items()
    }
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in legacy
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    old = load_teacher(str(tmp_path), device="cpu")
    xs = signals(1.2, 0.8, seed=3)
    np.testing.assert_allclose(old(xs).adv, teacher(xs).adv, atol=1e-6)
    assert old.teacher_id == teacher.teacher_id
