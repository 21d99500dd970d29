"""Audio sources and crops: folders or manifests -> crop descriptions -> regenerated waveforms.

A ``Crop`` is fully described by (file content hash, offset, length, augmentation, seed);
its ``key`` hashes exactly those, so a crop can be regenerated anywhere and its label found
again in the store even after the files move. Lengths sit on a grid (``crop_step_s``) so the
trainer can batch crops of equal length without padding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from edgeser.audio import find_audio_files, read_audio
from edgeser.contract import MIN_SAMPLES, SAMPLE_RATE
from edgeser.errors import AudioFileError, EdgeserError

from .augment import AugmentSpec, NoiseBank, apply_augment, sample_augment, source_span
from .config import LabelConfig
from .manifest import ManifestRow, is_manifest, read_manifest

HELDOUT_SPLITS = frozenset({"dev", "valid", "validation", "val", "test"})
INFO_FIELDS = ("corpus", "language", "speaker", "gender", "emotion", "intensity",
               "arousal_level", "split")  # fmt: skip


class DataError(EdgeserError, ValueError):
    """No usable audio, or a file no longer matches the crops planned from it."""


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (first 20 hex digits): the file's identity in crop keys."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


def find_sources(paths: list[str]) -> list[ManifestRow]:
    """Audio files from manifests (CSV), folders (walked recursively) and single files.

    Manifest rows keep their own ``speaker`` and ``split`` columns.

    Files from a folder get the folder's name as ``corpus`` and their sub-folder as
    ``speaker``, which is what the held-out split groups by when there is no ``split`` column.
    """
    rows: list[ManifestRow] = []
    for p in map(Path, paths):
        if is_manifest(p):
            try:
                manifest = read_manifest(p)
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"{p}: unusable manifest ({exc})") from None
            rows += manifest
        elif p.is_dir():
            files = find_audio_files([p])
            if not files:
                raise DataError(f"{p}: no audio files (wav, flac, mp3, ogg) in this folder")
            for f in files:
                rel = f.parent.relative_to(p).as_posix()
                rows.append(ManifestRow(audio=f.resolve(), corpus=p.name, speaker=rel))
        elif p.is_file():
            rows.append(ManifestRow(audio=p.resolve(), corpus=p.parent.name))
        else:
            raise DataError(f"{p}: no such file, folder or manifest")
    if not rows:
        raise DataError(f"no audio found in {', '.join(map(str, paths)) or '(no data given)'}")
    return rows


def load_noise_bank(dirs: list[str]) -> NoiseBank:
    """Index the noise folders by content hash (empty bank when none are given)."""
    files = find_audio_files(dirs) if dirs else []
    if dirs and not files:
        raise DataError(f"noise folder(s) {', '.join(dirs)} hold no audio files")
    return NoiseBank({content_hash(f): f for f in files})


@dataclass(frozen=True)
class Crop:
    """One training example: where it comes from, how it is degraded, and facts about it."""

    file_hash: str
    offset: int
    length: int
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    seed: int = 0
    path: str = ""  # location hint, not part of the identity
    info: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """Hash of the identity: file hash, offset, length, augmentation and seed."""
        ident = [self.file_hash, self.offset, self.length, self.augment.identity(), self.seed]
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def seconds(self) -> float:
        return self.length / SAMPLE_RATE

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Crop:
        d = json.loads(text)
        return cls(**{**d, "augment": AugmentSpec.from_dict(d["augment"])})


@dataclass
class CropPlan:
    """Planned crops, and the files that were skipped with the reason."""

    crops: list[Crop]
    skipped: list[tuple[str, str]]
    n_files: int

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.crops)


def plan_crops(
    sources: list[ManifestRow], cfg: LabelConfig, noise: NoiseBank | None = None
) -> CropPlan:
    """Draw ``crops_per_file`` crops per readable file, deterministically from the seed and
    the file's content. Unreadable or too-short files are skipped and listed, not fatal."""
    crops: dict[str, Crop] = {}
    skipped: list[tuple[str, str]] = []
    step = max(1, round(cfg.crop_step_s * SAMPLE_RATE))
    grid = np.arange(
        int(np.ceil(cfg.min_crop_s * SAMPLE_RATE / step)) * step,
        int(cfg.max_crop_s * SAMPLE_RATE) + 1,
        step,
    )
    if len(grid) == 0:
        grid = np.array([step * max(1, round(cfg.min_crop_s * SAMPLE_RATE / step))])
    for row in sources:
        try:
            info = sf.info(str(row.audio))
            digest = content_hash(row.audio)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            skipped.append((str(row.audio), f"unreadable: {exc}"))
            continue
        n = int(info.frames * SAMPLE_RATE // max(info.samplerate, 1))
        if n < max(MIN_SAMPLES, step):
            skipped.append((str(row.audio), f"too short ({n / SAMPLE_RATE:.2f} s)"))
            continue
        meta = {k: getattr(row, k) for k in INFO_FIELDS if getattr(row, k)}
        rng = np.random.default_rng([cfg.seed, int(digest[:15], 16)])
        for i in range(cfg.crops_per_file):
            spec = AugmentSpec() if i < cfg.clean_crops else sample_augment(rng, cfg.augment, noise)
            length = int(rng.choice(grid))
            if source_span(length, spec) > n:  # the file is shorter: take as much as fits
                length = int(n / spec.speed) // step * step
                if length < step:
                    spec = dataclasses.replace(spec, speed=1.0)
                    length = n // step * step
            span = source_span(length, spec)
            offset = int(rng.integers(0, n - span + 1))
            seed = int(rng.integers(2**31))
            crop = Crop(digest, offset, length, spec, seed, str(row.audio), meta)
            crops.setdefault(crop.key, crop)
    return CropPlan(list(crops.values()), skipped, len(sources))


class CropAudio:
    """Regenerate crop waveforms from their descriptions; decoded files are cached in memory
    (least recently used first out beyond ``cache_mb``) and checked against their hash."""

    def __init__(self, noise: NoiseBank | None = None, cache_mb: int = 2048):
        self.noise = noise or NoiseBank()
        self.cache_bytes = cache_mb * (1 << 20)
        self._files: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = 0

    def file(self, crop: Crop) -> np.ndarray:
        """The decoded source file of ``crop`` (AudioFileError if unreadable, DataError if its
        content changed since the crop was planned)."""
        audio = self._files.get(crop.file_hash)
        if audio is not None:
            self._files.move_to_end(crop.file_hash)
            return audio
        try:
            digest = content_hash(crop.path)
        except OSError as exc:
            raise AudioFileError(f"{crop.path}: not readable ({exc})") from None
        if digest != crop.file_hash:
            raise DataError(f"{crop.path}: content changed since its crops were planned")
        audio = read_audio(crop.path)
        self._files[crop.file_hash] = audio
        self._size += audio.nbytes
        while self._size > self.cache_bytes and len(self._files) > 1:
            _, old = self._files.popitem(last=False)
            self._size -= old.nbytes
        return audio

    def __call__(self, crop: Crop) -> np.ndarray:
        audio = self.file(crop)
        span = source_span(crop.length, crop.augment)
        segment = audio[crop.offset : crop.offset + span]
        return apply_augment(segment, crop.length, crop.augment, crop.seed, self.noise)


def split_crops(crops: list[Crop], dev_fraction: float) -> tuple[list[Crop], list[Crop]]:
    """(train, held-out). The manifest's ``split`` decides where given (dev/valid/test are held
    out); other crops are split by whole speakers (sub-folders), the ``dev_fraction`` of them
    with the lowest stable hash, so no speaker is on both sides. With a single speaker, whole
    files are held out instead."""
    unsplit = [c for c in crops if not c.info.get("split")]
    by_speaker = len({_speaker(c) for c in unsplit}) >= 2

    def unit(c: Crop) -> str:
        return _speaker(c) if by_speaker else c.file_hash

    units = sorted({unit(c) for c in unsplit}, key=_unit_hash)
    n_dev = max(1, round(dev_fraction * len(units))) if dev_fraction > 0 and len(units) > 1 else 0
    dev_units = set(units[:n_dev])

    def heldout(c: Crop) -> bool:
        return _given_heldout(c) if c.info.get("split") else unit(c) in dev_units

    return [c for c in crops if not heldout(c)], [c for c in crops if heldout(c)]


def _speaker(crop: Crop) -> str:
    return f"{crop.info.get('corpus', '')}/{crop.info.get('speaker', '')}"


def _given_heldout(crop: Crop) -> bool:
    return crop.info.get("split", "").lower() in HELDOUT_SPLITS


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for a string."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / float(1 << 48)
