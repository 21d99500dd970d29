"""Read corpus ``manifest.csv`` files (the format of ``../shared/corpora/*/manifest.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

MANIFEST_COLUMNS = (
    "path", "corpus", "language", "speaker", "gender", "emotion",
    "intensity", "arousal_level", "split", "duration_s",
)  # fmt: skip


@dataclass(frozen=True)
class ManifestRow:
    """One clip of a corpus; ``audio`` is the absolute path, empty strings mean 'not given'."""

    audio: Path
    corpus: str = ""
    language: str = ""
    speaker: str = ""
    gender: str = ""
    emotion: str = ""
    intensity: str = ""
    arousal_level: str = ""
    split: str = ""
    duration_s: float = 0.0


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of one manifest; ``path`` entries are resolved against the manifest's folder.
    Only ``path`` is required; the other columns default to empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{path}: a manifest needs a 'path' column")
        rows = []
        for rec in reader:
            extra = {k: (rec.get(k) or "").strip() for k in MANIFEST_COLUMNS[1:-1]}
            duration = rec.get("duration_s") or "0"
            rows.append(
                ManifestRow(
                    audio=(path.parent / rec["path"]).resolve(),
                    duration_s=float(duration),
                    **extra,
                )
            )
    return rows


def is_manifest(path: str | Path) -> bool:
    """A CSV file is taken as a manifest; anything else as audio or a folder of audio."""
    return Path(path).suffix.lower() == ".csv"
