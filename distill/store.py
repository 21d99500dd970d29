"""The pseudo-label store: teacher outputs keyed by crop, on disk, append-only, crash-safe.

Layout of a store folder::

    store.json            format, version and the teacher id (written once, atomically)
    chunks/<name>.npz     one committed batch: keys, crop descriptions, adv, [embedding]

A chunk is written to a hidden temporary file and renamed into place (``os.replace``), so a
reader sees a whole chunk or none; the set of committed chunks *is* the index. Killing a
writer loses at most the batch it was writing, and half-written temporaries are ignored.
Chunk names are unique per writer (time, pid, random), so several processes (or Ray workers)
may append at once; a crop labelled twice is read back once.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeser.errors import EdgeserError

from .data import Crop

STORE_FORMAT = "edgeser.labels"
STORE_VERSION = 1
META_FILE = "store.json"
CHUNK_DIR = "chunks"


class StoreError(EdgeserError):
    """A store is missing, was made by another teacher, or holds an unreadable chunk."""


@dataclass
class Labels:
    """Everything a store holds, one row per crop."""

    crops: list[Crop]
    adv: np.ndarray  # [N, 3] float32, arousal, dominance, valence
    embedding: np.ndarray | None = None  # [N, D] when every chunk has embeddings

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, crops: list[Crop]) -> Labels:
        """The rows of ``crops`` (which must be in this set), in that order."""
        index = {c.key: i for i, c in enumerate(self.crops)}
        rows = np.array([index[c.key] for c in crops], dtype=np.int64)
        emb = self.embedding[rows] if self.embedding is not None else None
        return Labels(list(crops), self.adv[rows], emb)


class LabelStore:
    """A pseudo-label store folder for one teacher; see the module docstring for the layout."""

    def __init__(self, root: Path, meta: dict):
        self.root = root
        self.meta = meta

    @property
    def teacher_id(self) -> str:
        return self.meta["teacher_id"]

    @classmethod
    def open(
        cls,
        root: str | Path,
        teacher_id: str | None = None,
        teacher: str = "",
        members: list[dict] | None = None,
    ) -> LabelStore:
        """Open a store. With ``teacher_id`` it is created when absent and must match when
        present (StoreError otherwise); without, it must already exist (for reading).
        ``members``: an ensemble teacher's members (spec, id, calibration), recorded."""
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.exists():
            if teacher_id is None:
                raise StoreError(f"{root}: no label store here (run the label stage first)")
            (root / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
            meta = {
                "format": STORE_FORMAT,
                "version": STORE_VERSION,
                "teacher_id": teacher_id,
                "teacher": teacher,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            if members:
                meta["members"] = members
            _create_once(meta_path, json.dumps(meta, indent=2))
        store = cls(root, _read_meta(meta_path))
        if teacher_id is not None:
            store.check_teacher(teacher_id, teacher)
        return store

    def check_teacher(self, teacher_id: str, teacher: str = "") -> None:
        """StoreError unless this store holds labels of ``teacher_id``."""
        if self.teacher_id != teacher_id:
            raise StoreError(
                f"{self.root}: this store holds labels of teacher {self.teacher_id} "
                f"({self.meta.get('teacher') or 'unnamed'}), not of {teacher_id} "
                f"({teacher or 'unnamed'}); use another store folder"
            )

    def chunk_paths(self) -> list[Path]:
        """Committed chunks in commit order (temporaries start with a dot and are skipped)."""
        return sorted((self.root / CHUNK_DIR).glob("[!.]*.npz"))

    def done_keys(self) -> set[str]:
        """Keys of every labelled crop."""
        keys: set[str] = set()
        for path in self.chunk_paths():
            with _open_chunk(path) as chunk:
                keys.update(chunk["keys"].tolist())
        return keys

    def __len__(self) -> int:
        return len(self.done_keys())

    def append(
        self, crops: list[Crop], adv: np.ndarray, embedding: np.ndarray | None = None
    ) -> Path:
        """Commit one batch of labels atomically and return its chunk path."""
        adv = np.asarray(adv, dtype=np.float32)
        if adv.shape != (len(crops), 3):
            raise StoreError(f"labels of shape {adv.shape} for {len(crops)} crops (need [N, 3])")
        arrays = {
            "keys": np.array([c.key for c in crops], dtype=str),
            "crops": np.array([c.to_json() for c in crops], dtype=str),
            "adv": adv,
        }
        if embedding is not None:
            arrays["embedding"] = np.asarray(embedding, dtype=np.float16)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        final = self.root / CHUNK_DIR / name
        tmp = final.with_name(f".{name}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def read(self) -> Labels:
        """All labels, each crop once (the first commit wins), in commit order."""
        crops: list[Crop] = []
        advs: list[np.ndarray] = []
        embs: list[np.ndarray | None] = []
        seen: set[str] = set()
        for path in self.chunk_paths():
            with _open_chunk(path) as chunk:
                keys = chunk["keys"].tolist()
                fresh = np.array([k not in seen for k in keys], dtype=bool)
                seen.update(keys)
                texts = chunk["crops"].tolist()
                crops += [Crop.from_json(t) for t, f in zip(texts, fresh, strict=True) if f]
                advs.append(chunk["adv"][fresh])
                embs.append(chunk["embedding"][fresh] if "embedding" in chunk.files else None)
        adv = np.concatenate(advs) if advs else np.zeros((0, 3), np.float32)
        has_emb = bool(embs) and all(e is not None for e in embs)
        emb = np.concatenate(embs).astype(np.float32) if has_emb else None
        return Labels(crops, adv, emb)


def _create_once(path: Path, text: str) -> None:
    """Write ``path`` atomically unless it exists (a racing creator may win; both are fine)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable store metadata ({exc})") from None
    if meta.get("format") != STORE_FORMAT or "teacher_id" not in meta:
        raise StoreError(f"{path}: not an edgeser label store")
    if meta.get("version") != STORE_VERSION:
        raise StoreError(f"{path}: store version {meta.get('version')} is not {STORE_VERSION}")
    return meta


def _open_chunk(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{path}: unreadable chunk ({exc}); delete it to relabel its crops"
        ) from None
