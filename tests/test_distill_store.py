"""The pseudo-label store: atomic chunks, one teacher per store, reads that never duplicate.
(The kill -9 test of a labelling process is in test_distill_pipeline.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from edgeser.distill.data import Crop
from edgeser.distill.store import LabelStore, StoreError


def crops(n: int, start: int = 0) -> list[Crop]:
    return [Crop(f"file{i}", 0, 16000, seed=i, path=f"/a/{i}.wav") for i in range(start, start + n)]


def adv(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start * 3, (start + n) * 3, dtype=np.float32).reshape(n, 3)


def test_append_and_read_back(tmp_path):
    store = LabelStore.open(tmp_path / "s", "teacher:1", teacher="tiny")
    store.append(crops(3), adv(3), embedding=np.ones((3, 4)))
    store.append(crops(2, start=3), adv(2, start=3), embedding=np.zeros((2, 4)))
    labels = LabelStore.open(tmp_path / "s").read()
    assert [c.key for c in labels.crops] == [c.key for c in crops(5)]
    assert labels.crops[0].path == "/a/0.wav"
    np.testing.assert_array_equal(labels.adv, adv(5))
    assert labels.embedding.shape == (5, 4) and labels.embedding[:3].min() == 1
    assert store.done_keys() == {c.key for c in crops(5)} and len(store) == 5
    sub = labels.subset([labels.crops[4], labels.crops[1]])
    np.testing.assert_array_equal(sub.adv, adv(5)[[4, 1]])


def test_a_crop_committed_twice_is_read_once(tmp_path):
    store = LabelStore.open(tmp_path, "t")
    store.append(crops(3), adv(3))
    store.append(crops(2, start=2), adv(2, start=10))  # crop 2 again (e.g. two Ray workers)
    labels = store.read()
    assert len(labels) == 4 and len({c.key for c in labels.crops}) == 4
    np.testing.assert_array_equal(labels.adv[2], adv(3)[2])  # the first commit wins
    assert labels.embedding is None


def test_unfinished_temporaries_are_ignored(tmp_path):
    store = LabelStore.open(tmp_path, "t")
    store.append(crops(2), adv(2))
    (tmp_path / "chunks" / ".00000000000000000001-1-dead.npz.tmp").write_bytes(b"half a chu")
    assert len(store.read()) == 2 and len(store.chunk_paths()) == 1


def test_one_teacher_per_store(tmp_path):
    LabelStore.open(tmp_path, "wav2vec2:aaaa", teacher="big")
    LabelStore.open(tmp_path, "wav2vec2:aaaa")  # same teacher: fine
    with pytest.raises(StoreError, match=r"holds labels of teacher wav2vec2:aaaa \(big\)"):
        LabelStore.open(tmp_path, "onnx:bbbb", teacher="other")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(StoreError, match="no label store here"):
        LabelStore.open(tmp_path / "none")
    store = LabelStore.open(tmp_path / "s", "t")
    with pytest.raises(StoreError, match=r"shape \(2, 2\)"):
        store.append(crops(2), np.zeros((2, 2)))
    (tmp_path / "s" / "chunks" / "00000000000000000009-1-bad.npz").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="unreadable chunk"):
        store.read()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "store.json").write_text('{"format": "something else"}')
    with pytest.raises(StoreError, match="not an edgeser label store"):
        LabelStore.open(tmp_path / "x")
