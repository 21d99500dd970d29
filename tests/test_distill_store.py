"""The pseudo-label store: atomic chunks, one teacher per store, reads that never duplicate,
every damaged chunk detected, claims shared by concurrent writers. (The kill -9 test of a
labelling process and the concurrent ``label`` processes are in test_distill_pipeline.py.)"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgeser.distill.claims import BatchClaims, batch_id
from edgeser.distill.data import Crop
from edgeser.distill.store import DAMAGED_DIR, LabelStore, StoreError, read_chunk


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
    with pytest.raises(StoreError, match=r"bad.npz: damaged chunk: not a zip archive"):
        store.read()
    with pytest.raises(StoreError, match=r"gone\.npz: chunk vanished while being read"):
        read_chunk(tmp_path / "gone.npz")  # listed, then moved aside by another writer
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "store.json").write_text('{"format": "something else"}')
    with pytest.raises(StoreError, match="not an edgeser label store"):
        LabelStore.open(tmp_path / "x")


def one_chunk_store(tmp_path: Path, **kw) -> tuple[LabelStore, Path]:
    store = LabelStore.open(tmp_path / "s", "t", **kw)
    store.append(crops(2), adv(2))
    return store, store.append(crops(3, start=2), adv(3, start=2), embedding=np.ones((3, 4)))


def rewrite(path: Path, change) -> None:
    """Rewrite a chunk's members through ``change(members)`` (a malformed but valid zip)."""
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    change(members)
    with path.open("wb") as f:
        np.savez(f, **members)


def flip_a_bit_of_adv(path: Path) -> None:
    """One flipped bit in the label values (as a bad disk block would leave it)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("adv.npy")
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    npy = info.header_offset + 30 + name_len + extra_len  # the member's bytes: .npy header, data
    data[npy + info.file_size - 5] ^= 0x04
    path.write_bytes(bytes(data))


def set_member(name, value):
    return lambda m: m.__setitem__(name, value)


DAMAGE = {
    "cut in half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                    "unreadable zip"),
    "tail zeroed": (lambda p: p.write_bytes(p.read_bytes()[:-200] + bytes(200)),
                    "unreadable zip"),
    "zero bytes": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "bit flip": (flip_a_bit_of_adv, "CRC"),
    "no keys": (lambda p: rewrite(p, lambda m: m.pop("keys")), r"missing \['keys'\]"),
    "unknown member": (lambda p: rewrite(p, set_member("extra", np.ones(2))), "unknown"),
    "labels [N, 2]": (lambda p: rewrite(p, set_member("adv", adv(3)[:, :2])),
                      r"adv is float32 \(3, 2\)"),
    "float64 labels": (lambda p: rewrite(p, set_member("adv", adv(3).astype(np.float64))),
                       "adv is float64"),
    "NaN label": (lambda p: rewrite(p, set_member("adv", np.full((3, 3), np.nan, np.float32))),
                  "9 non-finite labels"),
    "content changed": (lambda p: rewrite(p, set_member("adv", adv(3) + 1)), "checksum mismatch"),
    "key and crop disagree": (lambda p: rewrite(p, set_member("keys", np.array(["a", "b", "c"]))),
                              "checksum mismatch"),
    "no checksum": (lambda p: rewrite(p, lambda m: m.pop("sha256")), "no sha256 member"),
    "embedding of 2 rows": (lambda p: rewrite(p, set_member("embedding", np.ones((2, 4), "f2"))),
                            r"embedding is float16 \(2, 4\)"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_damaged_chunk_is_a_store_error_naming_file_and_fault(tmp_path, damage):
    store, chunk = one_chunk_store(tmp_path)
    hurt, problem = DAMAGE[damage]
    hurt(chunk)
    pattern = f"{chunk.name}: damaged chunk: .*{problem}.*label --repair"
    for read in ("read", "done_keys", "__len__"):
        with pytest.raises(StoreError, match=pattern):
            getattr(LabelStore.open(tmp_path / "s"), read)()
    health = LabelStore.open(tmp_path / "s").health()
    assert list(health.damaged) == [chunk.name] and health.crops == 2 and health.chunks == 2

    moved = LabelStore.open(tmp_path / "s", "t", repair=True).repaired
    assert moved == [tmp_path / "s" / DAMAGED_DIR / chunk.name] and moved[0].exists()
    assert store.done_keys() == {c.key for c in crops(2)}  # its crops are to label again
    assert LabelStore.open(tmp_path / "s").done_keys() == store.done_keys()
    assert LabelStore.open(tmp_path / "s").health().damaged == {}


def test_the_keys_of_a_version_1_chunk_must_match_its_crops(tmp_path):
    _, chunk = one_chunk_store(tmp_path)
    rewrite(chunk, lambda m: (m.pop("sha256"), m.__setitem__("keys", np.array(["a", "b", "c"]))))
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(StoreError, match=f"{chunk.name}: damaged chunk: crop 0 does not match"):
        LabelStore.open(tmp_path / "s").read()


def test_a_version_1_store_is_read_and_extended(tmp_path):
    root = tmp_path / "v1"
    (root / "chunks").mkdir(parents=True)
    meta = {"format": "edgeser.labels", "version": 1, "teacher_id": "t", "teacher": ""}
    (root / "store.json").write_text(json.dumps(meta))
    arrays = {"keys": np.array([c.key for c in crops(2)]),
              "crops": np.array([c.to_json() for c in crops(2)]), "adv": adv(2)}  # fmt: skip
    np.savez(root / "chunks" / "00000000000000000001-1-old.npz", **arrays)
    store = LabelStore.open(root, "t")
    assert store.version == 1 and len(store) == 2
    store.append(crops(2, start=2), adv(2, start=2))  # new chunks carry a checksum
    labels = LabelStore.open(root).read()
    np.testing.assert_array_equal(labels.adv, adv(4))
    health = LabelStore.open(root).health()
    assert (health.version, health.chunks, health.unchecksummed, health.crops) == (1, 2, 1, 4)


def test_non_finite_labels_are_refused_unless_the_store_marks_unlabelled_dimensions(tmp_path):
    store = LabelStore.open(tmp_path / "teacher", "t")
    with pytest.raises(StoreError, match="non-finite labels; not stored"):
        store.append(crops(1), np.array([[0.5, np.nan, 0.5]]))
    targets = LabelStore.open(tmp_path / "targets", "labels:x", nan_labels=True)
    targets.append(crops(1), np.array([[0.5, np.nan, 0.5]]))
    assert np.isnan(LabelStore.open(tmp_path / "targets").read().adv[0, 1])
    with pytest.raises(StoreError, match="non-finite"):
        targets.append(crops(1), np.array([[0.5, np.inf, 0.5]]))
    with pytest.raises(StoreError, match="not finite in float16"):
        store.append(crops(1), adv(1), embedding=np.full((1, 4), 1e6))
    assert store.chunk_paths() == []


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_health_reports_duplicates_damage_and_orphans_and_changes_nothing(tmp_path):
    store, chunk = one_chunk_store(tmp_path)
    store.append(crops(2, start=1), adv(2))  # crops 1 and 2 again
    store.close()
    chunk.write_bytes(b"")
    orphan = tmp_path / "s" / "chunks" / ".00000000000000000001-1-dead.npz.tmp"
    orphan.write_bytes(b"half a chu")
    before = listing(tmp_path / "s")
    health = LabelStore.open(tmp_path / "s").health()
    assert listing(tmp_path / "s") == before
    assert (health.chunks, health.crops, health.duplicates) == (3, 3, 1)
    assert list(health.damaged) == [chunk.name] and health.orphans == [f"chunks/{orphan.name}"]
    assert "1 damaged" in health.summary() and "1 duplicate rows" in health.summary()


def test_orphans_older_than_the_running_writers_are_removed_when_a_writer_opens(tmp_path):
    store, _ = one_chunk_store(tmp_path)
    chunks = tmp_path / "s" / "chunks"
    old = chunks / ".00000000000000000001-1-dead.npz.tmp"
    old.write_bytes(b"from a writer killed long ago")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    recent = chunks / ".00000000000000000002-2-busy.npz.tmp"
    recent.write_bytes(b"maybe the running writer's")  # newer than `store`, which still runs
    LabelStore.open(tmp_path / "s")  # a reader changes nothing
    assert old.exists()
    LabelStore.open(tmp_path / "s", "t")
    assert not old.exists() and recent.exists()
    store.close()  # no writer runs any more: every temporary is an orphan
    LabelStore.open(tmp_path / "s", "t")
    assert not recent.exists() and len(store.read()) == 5


def test_writers_share_a_plan_and_never_take_the_same_batch(tmp_path):
    batches = [crops(2, start=2 * i) for i in range(5)]
    a = BatchClaims(LabelStore.open(tmp_path, "t"), batches)
    b = BatchClaims(LabelStore.open(tmp_path, "t"), batches)
    first, second = a.take(1), b.take(1)
    assert first == [batches[0]] and second == [batches[1]]
    a.store.append(first[0], adv(2))
    a.finish(first[0])
    rest = b.take(0)
    assert rest == batches[2:]  # all that is left: batch 0 is done, batch 1 is b's already
    for batch in [second[0], *rest]:
        b.store.append(batch, adv(2))
        b.finish(batch)
    assert a.take(1) == []  # nothing left for a: every batch was labelled once
    assert len(LabelStore.open(tmp_path).read()) == 10


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
from edgeser.distill.claims import Writer
writer = Writer.register(Path(sys.argv[1]))
for batch in sys.argv[2:]:
    assert writer.claim(batch) == "mine"
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_mid_claim_loses_only_its_batch(tmp_path):
    batches = [crops(2, start=2 * i) for i in range(3)]
    LabelStore.open(tmp_path, "t").close()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER_SCRIPT), str(tmp_path),
                             batch_id(batches[1])], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "claimed"
    claims = BatchClaims(LabelStore.open(tmp_path, "t"), batches)
    assert claims.take(0) == [batches[0], batches[2]]  # batch 1 belongs to a running writer
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert claims.take(0) == [batches[1]]  # taken over at once: the kernel dropped its lock
    assert LabelStore.open(tmp_path).health().writers == 1
