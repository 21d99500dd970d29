"""Label -> A/D/V target mapping: published values, scaling, order, intensity, masks, splits."""

from pathlib import Path

import numpy as np
import pytest
from edgeser.distill.data import find_sources
from edgeser.distill.manifest import ManifestRow, read_manifest
from edgeser.distill.targets import (
    arousal_class,
    category_adv,
    row_target,
    valence_class,
)

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def row(**fields) -> ManifestRow:
    return ManifestRow(audio=Path(fields.pop("name", "/x/a.flac")), **fields)


def test_anger_is_the_published_value_rescaled_and_in_adv_order():
    # Russell & Mehrabian: anger = (valence -0.51, arousal 0.59, dominance 0.25)
    np.testing.assert_allclose(category_adv("anger"), [0.795, 0.625, 0.245], atol=1e-6)


def test_neutral_is_the_centre_and_calm_uses_relaxed():
    np.testing.assert_allclose(category_adv("neutral"), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(category_adv("calm"), [0.27, 0.53, 0.84], atol=1e-6)
    np.testing.assert_allclose(category_adv("relaxed"), category_adv("calm"))


def test_strong_intensity_lies_further_from_neutral_than_normal():
    for emotion in ("anger", "sadness", "happiness", "fear", "calm"):
        strong = np.abs(category_adv(emotion, "strong") - 0.5)
        normal = np.abs(category_adv(emotion, "normal") - 0.5)
        assert np.all(strong >= normal) and np.any(strong > normal), emotion


def test_high_arousal_emotions_rank_above_low_ones_in_arousal_and_happiness_tops_valence():
    arousal = {e: category_adv(e)[0] for e in ("anger", "happiness", "fear", "sadness", "calm")}
    assert min(arousal["anger"], arousal["happiness"], arousal["fear"]) > max(
        arousal["sadness"], arousal["calm"], 0.5
    )
    valence = {e: category_adv(e)[2] for e in ("happiness", "anger", "sadness", "fear", "disgust")}
    assert max(valence, key=valence.get) == "happiness"


def test_unknown_labels_are_clear_errors():
    with pytest.raises(ValueError, match="contempt"):
        category_adv("contempt")
    with pytest.raises(ValueError, match="intensity"):
        category_adv("anger", "extreme")
    with pytest.raises(ValueError, match="arousal level"):
        row_target(row(arousal_level="very high"))


def test_row_masks_category_all_baved_arousal_only_unlabelled_none():
    target, mask = row_target(row(emotion="sadness", intensity="strong"))
    np.testing.assert_array_equal(mask, [1, 1, 1])
    np.testing.assert_allclose(target, category_adv("sadness", "strong"))

    low, mask = row_target(row(arousal_level="low"))
    high, _ = row_target(row(arousal_level="high"))
    np.testing.assert_array_equal(mask, [1, 0, 0])
    assert low[0] < 0.5 < high[0]

    _, mask = row_target(row())
    np.testing.assert_array_equal(mask, [0, 0, 0])


def test_auc_classes():
    assert arousal_class(row(emotion="fear")) is True
    assert arousal_class(row(emotion="neutral")) is False
    assert arousal_class(row(emotion="surprise")) is None
    assert arousal_class(row(arousal_level="high")) is True
    assert arousal_class(row(arousal_level="neutral")) is None
    assert valence_class(row(emotion="happiness")) is True
    assert valence_class(row(emotion="disgust")) is False
    assert valence_class(row(emotion="calm")) is None


@pytest.mark.corpora
@pytest.mark.parametrize("corpus", ["ravdess", "baved", "turev"])
def test_shared_manifests_are_speaker_disjoint_and_used_as_given(corpus):
    """The manifests' speaker and split columns are trusted as they are (turev: actor 1984 dev)."""
    manifest = CORPORA / corpus / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"{manifest} absent")
    rows = read_manifest(manifest)
    by_split = {s: {r.speaker for r in rows if r.split == s} for s in ("train", "dev")}
    assert by_split["train"] and by_split["dev"]
    assert not by_split["train"] & by_split["dev"]
    if corpus == "turev":
        assert by_split["dev"] == {"turev-1984"}
    found = find_sources([str(manifest)])
    assert [(r.speaker, r.split) for r in found] == [(r.speaker, r.split) for r in rows]
