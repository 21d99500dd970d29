"""The pseudo-label store: teacher outputs keyed by crop, on disk, append-only, verified, shared.

Layout of a store folder::

    store.json            format, version, the teacher id and, when the teacher has a
                          categorical head, its label names (written once, atomically)
    chunks/<name>.npz     one committed batch: keys, crop descriptions, adv, [embedding],
                          [categories], sha256
    damaged/<name>.npz    chunks that failed verification, moved aside by ``repair`` (kept)
    writers/, claims/     who is writing and which batch each writer labels (``claims.py``)

A chunk is written to a hidden temporary file and renamed into place (``os.replace``), so a
reader sees a whole chunk or none; the set of committed chunks *is* the index. Every chunk is
verified when it is read: a readable zip with exactly the expected members, shapes and dtypes,
finite labels, and (version 2) a SHA-256 of its content, so a truncated, zeroed or bit-flipped
chunk is a ``DamagedChunkError`` naming the file and the fault instead of labels trained on.
Version 1 stores (chunks without a checksum) are read with the same checks less the checksum.
Version 3 stores hold a teacher's category probabilities too: ``categories`` float32 [N, K] in
every chunk, one column per label of ``store.json``'s ``categories``, each row summing to 1.
Stores of teachers without categories stay version 2, so older edgeser versions read them.
A crop committed twice is read back once (the first commit wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeser.errors import EdgeserError

from .data import Crop

STORE_FORMAT = "edgeser.labels"
STORE_VERSION = 2  # 2: every chunk carries a sha256 of its content
CATEGORIES_VERSION = 3  # 3: and the teacher's category probabilities (stores that have them)
READ_VERSIONS = (1, 2, 3)
META_FILE = "store.json"
CHUNK_DIR = "chunks"
DAMAGED_DIR = "damaged"
CHECKSUM = "sha256"
ZIP_MAGIC = b"PK\x03\x04"
REQUIRED = ("keys", "crops", "adv")
CATEGORIES = "categories"
ROW_SUM_TOLERANCE = 1e-3  # |sum of a probability row - 1| beyond this is not a distribution
REPAIR_HINT = "run `edgeser-distill label --repair` to move it aside and label its crops again"


class StoreError(EdgeserError):
    """A store is missing, was made by another teacher, or holds an unreadable chunk."""


class DamagedChunkError(StoreError):
    """A committed chunk fails verification (unreadable, malformed or checksum mismatch)."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: damaged chunk: {problem}; {REPAIR_HINT}")
        self.path, self.problem = path, problem


@dataclass
class Labels:
    """Everything a store holds, one row per crop."""

    crops: list[Crop]
    adv: np.ndarray  # [N, 3] float32, arousal, dominance, valence
    embedding: np.ndarray | None = None  # [N, D] when every chunk has embeddings
    categories: np.ndarray | None = None  # [N, K] teacher probabilities (version 3 stores)
    category_labels: tuple[str, ...] = ()  # the K label names, in column order

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, crops: list[Crop]) -> Labels:
        """The rows of ``crops`` (which must be in this set), in that order."""
        index = {c.key: i for i, c in enumerate(self.crops)}
        rows = np.array([index[c.key] for c in crops], dtype=np.int64)
        emb = self.embedding[rows] if self.embedding is not None else None
        cats = self.categories[rows] if self.categories is not None else None
        return Labels(list(crops), self.adv[rows], emb, cats, self.category_labels)


@dataclass
class StoreHealth:
    """What ``LabelStore.health`` found; ``damaged`` maps chunk file -> what is wrong."""

    root: Path
    version: int
    teacher_id: str
    chunks: int = 0
    crops: int = 0
    duplicates: int = 0  # rows whose crop an earlier chunk already holds (read once)
    unchecksummed: int = 0  # version 1 chunks, verified without a checksum
    damaged: dict[str, str] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)  # temporaries of writers that are gone
    stale_claims: int = 0
    writers: int = 0  # writers running now
    categories: tuple[str, ...] = ()  # the teacher's category labels, if it has them

    def summary(self) -> str:
        lines = [
            f"{self.root}: label store version {self.version}, teacher {self.teacher_id}",
            *([f"categories: {', '.join(self.categories)}"] if self.categories else []),
            f"chunks: {self.chunks} ({len(self.damaged)} damaged, {self.unchecksummed} "
            "without checksum)",
            f"crops: {self.crops} labelled, {self.duplicates} duplicate rows (read once)",
            f"orphans: {len(self.orphans)} temporary files, {self.stale_claims} stale claims; "
            f"running writers: {self.writers}",
        ]
        lines += [f"damaged: {name}: {why}" for name, why in self.damaged.items()]
        if self.damaged:
            lines.append(f"to repair: {REPAIR_HINT.split('`')[1]} with this --store")
        return "\n".join(lines)


class LabelStore:
    """A pseudo-label store folder for one teacher; see the module docstring for the layout.

    Opened with a ``teacher_id`` it is a writer: registered in ``writers/`` for its lifetime
    (so other writers can tell it runs), it cleans the orphans of writers that are gone and can
    claim batches (``claims.BatchClaims``). Opened without, it reads and changes nothing."""

    def __init__(self, root: Path, meta: dict):
        self.root = root
        self.meta = meta
        self.writer = None  # claims.Writer when opened for writing
        self.repaired: list[Path] = []
        self._keys: dict[str, list[str]] = {}  # verified chunk name -> its keys
        self._lock = threading.Lock()  # the decoding thread claims while the main one commits

    @property
    def teacher_id(self) -> str:
        return self.meta["teacher_id"]

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def nan_labels(self) -> bool:
        """Whether NaN marks an unlabelled dimension (label-target stores) instead of damage."""
        return bool(self.meta.get("nan_labels", self.teacher_id.startswith("labels:")))

    @property
    def category_labels(self) -> tuple[str, ...]:
        """The teacher's category labels (column order of every chunk's ``categories``);
        empty for a teacher without a categorical head."""
        return tuple(self.meta.get(CATEGORIES, ()))

    @classmethod
    def open(
        cls,
        root: str | Path,
        teacher_id: str | None = None,
        teacher: str = "",
        members: list[dict] | None = None,
        *,
        categories: tuple[str, ...] = (),
        nan_labels: bool = False,
        repair: bool = False,
    ) -> LabelStore:
        """Open a store. With ``teacher_id`` it is created when absent and must match when
        present (StoreError otherwise), and this process becomes one of its writers (with
        ``repair``, damaged chunks are moved aside first); without, it must already exist.
        ``members``: an ensemble teacher's members (spec, id, calibration), recorded;
        ``categories``: the teacher's category labels (a version 3 store records them)."""
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.exists():
            if teacher_id is None:
                raise StoreError(f"{root}: no label store here (run the label stage first)")
            (root / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
            meta = {
                "format": STORE_FORMAT,
                "version": CATEGORIES_VERSION if categories else STORE_VERSION,
                "teacher_id": teacher_id,
                "teacher": teacher,
                "nan_labels": nan_labels,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            if members:
                meta["members"] = members
            if categories:
                meta[CATEGORIES] = list(categories)
            _create_once(meta_path, json.dumps(meta, indent=2))
        store = cls(root, _read_meta(meta_path))
        if teacher_id is not None:
            store.check_teacher(teacher_id, teacher, tuple(categories))
            store.as_writer()
            if repair:
                store.repaired = store.repair()
        return store

    def as_writer(self):
        """This process's ``claims.Writer`` of the store (registered now if it is not yet)."""
        from .claims import Writer

        if self.writer is None:
            self.writer = Writer.register(self.root)
        return self.writer

    def close(self) -> None:
        """Stop being a writer (also done when the process ends, however it ends)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def check_teacher(
        self, teacher_id: str, teacher: str = "", categories: tuple[str, ...] | None = None
    ) -> None:
        """StoreError unless this store holds labels of ``teacher_id`` (and, when given, of
        the category labels ``categories``)."""
        if self.teacher_id != teacher_id:
            raise StoreError(
                f"{self.root}: this store holds labels of teacher {self.teacher_id} "
                f"({self.meta.get('teacher') or 'unnamed'}), not of {teacher_id} "
                f"({teacher or 'unnamed'}); use another store folder"
            )
        if categories is not None and tuple(categories) != self.category_labels:
            raise StoreError(
                f"{self.root}: this store holds category probabilities for "
                f"{list(self.category_labels) or 'no categories'}, but the teacher gives "
                f"{list(categories) or 'none'}; use another store folder"
            )

    def chunk_paths(self) -> list[Path]:
        """Committed chunks in commit order (temporaries start with a dot and are skipped)."""
        return sorted((self.root / CHUNK_DIR).glob("[!.]*.npz"))

    def done_keys(self) -> set[str]:
        """Keys of every labelled crop; DamagedChunkError on the first chunk that fails
        verification. Chunks verified before are not read again (committed chunks never
        change), so calling this after every batch is cheap."""
        with self._lock:
            keys: set[str] = set()
            for path in self.chunk_paths():
                if path.name not in self._keys:
                    self._keys[path.name] = self.load_chunk(path)["keys"].tolist()
                keys.update(self._keys[path.name])
            return keys

    def __len__(self) -> int:
        return len(self.done_keys())

    def load_chunk(self, path: Path) -> dict[str, np.ndarray]:
        """The verified arrays of one chunk, or DamagedChunkError saying what is wrong."""
        return verify_chunk(
            path, read_chunk(path), self.version, self.nan_labels, len(self.category_labels)
        )

    def append(
        self,
        crops: list[Crop],
        adv: np.ndarray,
        embedding: np.ndarray | None = None,
        categories: np.ndarray | None = None,
    ) -> Path:
        """Commit one batch of labels atomically and return its chunk path; ``categories``
        (probabilities [N, K]) is required in a store with category labels, refused in one
        without."""
        adv = np.asarray(adv, dtype=np.float32)
        if adv.shape != (len(crops), 3):
            raise StoreError(f"labels of shape {adv.shape} for {len(crops)} crops (need [N, 3])")
        if non_finite(adv, self.nan_labels):
            raise StoreError(f"{self.root}: the teacher returned non-finite labels; not stored")
        arrays = {
            "keys": np.array([c.key for c in crops], dtype=str),
            "crops": np.array([c.to_json() for c in crops], dtype=str),
            "adv": adv,
        }
        if embedding is not None:
            with np.errstate(over="ignore"):  # caught just below, with a clearer message
                arrays["embedding"] = np.asarray(embedding, dtype=np.float16)
            if not np.isfinite(arrays["embedding"]).all():
                raise StoreError(
                    f"{self.root}: embedding values that are not finite in float16 (beyond "
                    "+-65504); not stored"
                )
        if problem := category_problem(categories, len(crops), len(self.category_labels)):
            raise StoreError(f"{self.root}: category probabilities not stored: {problem}")
        if categories is not None:
            arrays[CATEGORIES] = np.asarray(categories, dtype=np.float32)
        arrays[CHECKSUM] = np.array(content_checksum(arrays))
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        final = self.root / CHUNK_DIR / name
        tmp = final.with_name(f".{name}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        with self._lock:
            self._keys[name] = arrays["keys"].tolist()
        return final

    def read(self) -> Labels:
        """All labels, each crop once (the first commit wins), in commit order."""
        crops: list[Crop] = []
        advs: list[np.ndarray] = []
        embs: list[np.ndarray | None] = []
        cats: list[np.ndarray] = []
        seen: set[str] = set()
        for path in self.chunk_paths():
            chunk = self.load_chunk(path)
            keys = chunk["keys"].tolist()
            fresh = np.array([k not in seen for k in keys], dtype=bool)
            seen.update(keys)
            crops += parse_crops(path, chunk, fresh)
            advs.append(chunk["adv"][fresh])
            embs.append(chunk["embedding"][fresh] if "embedding" in chunk else None)
            if CATEGORIES in chunk:  # in every chunk of a store with labels (verified)
                cats.append(chunk[CATEGORIES][fresh])
        adv = np.concatenate(advs) if advs else np.zeros((0, 3), np.float32)
        has_emb = bool(embs) and all(e is not None for e in embs)
        emb = np.concatenate(embs).astype(np.float32) if has_emb else None
        labels = self.category_labels
        if not labels:
            return Labels(crops, adv, emb)
        probs = np.concatenate(cats) if cats else np.zeros((0, len(labels)), np.float32)
        return Labels(crops, adv, emb, probs, labels)

    def damaged_chunks(self) -> dict[Path, str]:
        """Every chunk that fails verification, with what is wrong (reads the whole store)."""
        damaged = {}
        for path in self.chunk_paths():
            try:
                parse_crops(path, self.load_chunk(path))
            except DamagedChunkError as exc:
                damaged[path] = exc.problem
        return damaged

    def repair(self) -> list[Path]:
        """Move every damaged chunk to ``damaged/`` (never deleted: the bytes may still be
        worth a look) so its crops count as unlabelled; returns the new paths."""
        moved = []
        for path in self.damaged_chunks():
            target = self.root / DAMAGED_DIR / path.name
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
            moved.append(target)
            with self._lock:
                self._keys.pop(path.name, None)
        return moved

    def health(self) -> StoreHealth:
        """Chunks, crops, damaged chunks, duplicates and orphans; reads, changes nothing."""
        from .claims import find_orphans

        report = StoreHealth(self.root, self.version, self.teacher_id)
        report.categories = self.category_labels
        seen: set[str] = set()
        for path in self.chunk_paths():
            report.chunks += 1
            try:
                chunk = self.load_chunk(path)
                parse_crops(path, chunk)
            except DamagedChunkError as exc:
                report.damaged[path.name] = exc.problem
                continue
            keys = chunk["keys"].tolist()
            report.duplicates += sum(k in seen for k in keys)
            seen.update(keys)
            report.unchecksummed += CHECKSUM not in chunk
        report.crops = len(seen)
        orphans = find_orphans(self.root)
        report.orphans = [str(p.relative_to(self.root)) for p in orphans.temporaries]
        report.stale_claims, report.writers = len(orphans.stale_claims), orphans.live_writers
        return report


def content_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of every member but the checksum: name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == CHECKSUM:
            continue
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def read_chunk(path: Path) -> dict[str, np.ndarray]:
    """Every member of a chunk file, read in full (so the zip's CRCs are checked too)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        if not head:
            raise DamagedChunkError(path, "empty file (0 bytes)")
        if head != ZIP_MAGIC:
            raise DamagedChunkError(path, f"not a zip archive (starts with {head!r})")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except DamagedChunkError:
        raise
    except Exception as exc:  # any failure to parse the bytes means damage
        if not path.exists():
            raise StoreError(f"{path}: chunk vanished while being read (moved aside by another "
                             "writer's --repair?); run again") from None  # fmt: skip
        problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DamagedChunkError(path, f"unreadable zip ({problem})") from None


def verify_chunk(
    path: Path,
    arrays: dict[str, np.ndarray],
    version: int,
    nan_labels: bool = False,
    n_categories: int = 0,
) -> dict[str, np.ndarray]:
    """``arrays`` if they are a well-formed chunk of a store of ``version`` (whose teacher has
    ``n_categories`` category labels), else DamagedChunkError naming the first problem found."""
    required = (*REQUIRED, CATEGORIES) if n_categories else REQUIRED
    missing = [m for m in required if m not in arrays]
    extra = sorted(set(arrays) - {*required, "embedding", CHECKSUM})
    if missing or extra:
        members = f"members {sorted(arrays)}: missing {missing}, unknown {extra}"
        raise DamagedChunkError(path, members)
    keys, crops, adv = arrays["keys"], arrays["crops"], arrays["adv"]
    n = len(keys) if keys.ndim == 1 else -1
    for name, a in (("keys", keys), ("crops", crops)):
        if a.dtype.kind != "U" or a.shape != (n,):
            raise DamagedChunkError(path, f"{name} is {a.dtype} {a.shape}, need [N] strings")
    if adv.dtype != np.float32 or adv.shape != (n, 3):
        raise DamagedChunkError(path, f"adv is {adv.dtype} {adv.shape}, need float32 [{n}, 3]")
    if bad := non_finite(adv, nan_labels):
        raise DamagedChunkError(path, f"{bad} non-finite labels in adv")
    emb = arrays.get("embedding")
    if emb is not None:
        if emb.dtype != np.float16 or emb.ndim != 2 or len(emb) != n:
            raise DamagedChunkError(path, f"embedding is {emb.dtype} {emb.shape}, need [{n}, D]")
        if not np.isfinite(emb).all():
            raise DamagedChunkError(path, "non-finite values in embedding")
    if n_categories and (problem := category_problem(arrays[CATEGORIES], n, n_categories, True)):
        raise DamagedChunkError(path, problem)
    if CHECKSUM in arrays:
        stored = arrays[CHECKSUM]
        if stored.dtype.kind != "U" or stored.shape != ():
            raise DamagedChunkError(path, f"malformed checksum ({stored.dtype}, {stored.shape})")
        if str(stored) != content_checksum(arrays):
            raise DamagedChunkError(path, "checksum mismatch (its content changed on disk)")
    elif version >= 2:
        raise DamagedChunkError(path, f"no {CHECKSUM} member (every version 2 chunk has one)")
    return arrays


def category_problem(probs: np.ndarray | None, n: int, k: int, exact_dtype: bool = False) -> str:
    """What keeps ``probs`` from being [n, k] probabilities (finite, >= 0, rows summing to 1
    within ``ROW_SUM_TOLERANCE``; float32 when ``exact_dtype``), or "" when nothing does;
    with ``k`` 0 there must be none."""
    if probs is None or k == 0:
        if (probs is None) == (k == 0):
            return ""
        return "the store has no category labels" if k == 0 else f"need [{n}, {k}], got none"
    probs = np.asarray(probs)
    if probs.shape != (n, k) or (exact_dtype and probs.dtype != np.float32):
        return f"categories is {probs.dtype} {probs.shape}, need float32 [{n}, {k}]"
    if not np.isfinite(probs).all() or (probs < 0).any():
        return "categories holds values that are negative or not finite"
    worst = float(np.abs(probs.sum(axis=1, dtype=np.float64) - 1.0).max(initial=0.0))
    if worst > ROW_SUM_TOLERANCE:
        return f"categories rows do not sum to 1 (off by up to {worst:.3g})"
    return ""


def non_finite(adv: np.ndarray, nan_labels: bool) -> int:
    """How many labels are infinite, or NaN where NaN does not mean "unlabelled"."""
    return int((np.isinf(adv) if nan_labels else ~np.isfinite(adv)).sum())


def parse_crops(
    path: Path, chunk: dict[str, np.ndarray], rows: np.ndarray | None = None
) -> list[Crop]:
    """The crops of a verified chunk (those of ``rows`` when given); DamagedChunkError when a
    description does not parse or does not match its key."""
    texts, keys = chunk["crops"].tolist(), chunk["keys"].tolist()
    crops = []
    for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
        if rows is not None and not rows[i]:
            continue
        try:
            crop = Crop.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedChunkError(path, f"crop {i} does not parse ({exc})") from None
        if crop.key != key:
            raise DamagedChunkError(path, f"crop {i} does not match its key {key}")
        crops.append(crop)
    return crops


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
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT or "teacher_id" not in meta:
        raise StoreError(f"{path}: not an edgeser label store")
    if meta.get("version") not in READ_VERSIONS:
        raise StoreError(
            f"{path}: store version {meta.get('version')} is not one this edgeser reads "
            f"({', '.join(map(str, READ_VERSIONS))}); upgrade edgeser"
        )
    return meta
