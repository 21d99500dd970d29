"""What ``edgeser-export PATH`` exports: a student checkpoint, or a model in the published
audeering/wav2small layout (a folder with ``model.safetensors`` + ``config.json``, or a hub id
downloaded with ``huggingface_hub`` as transformers does).

A folder is recognised by its weights' names and shapes, not by ``config.json`` (whose
``model_type`` says "wav2vec2"); the frozen DFT and mel matrices are taken from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeser.distill.wav2small_published import CONFIG_FILE, WEIGHTS_FILE, load_published
from torch import nn

from .config import ExportError
from .onnx_export import load_checkpoint

HUB_ID = "audeering/wav2small"
PUBLISHED_LICENCE = "CC BY-NC-SA 4.0"
# Parity of an imported model against a plain PyTorch forward of the published layout: each
# output to 1e-5 of max(1, its largest magnitude): absolute for A/D/V (about 0..1), relative
# for the embedding (whose z z^T half can be large: float32's relative precision).
IMPORT_MAX_DIFF = 1e-5
SCALED_MEASURE = "|onnx - torch| / max(1, largest |torch|), per output"
NO_STREAMING = (
    "none: the model normalises the whole input (mean and variance), so every frame depends "
    "on the whole window and an incremental graph cannot equal re-scoring exactly"
)
# Card facts of the weights audeering published, as their model card states them.
PUBLISHED_META: dict[str, Any] = {
    "teacher_id": f"{HUB_ID} (distilled by its authors from the Wav2Small paper's teacher "
    "ensemble, per its model card)",
    "training_data": [
        {
            "name": "MSP-Podcast",
            "licence": "academic licence of the MSP-Podcast corpus",
            "used": f"by the authors of {HUB_ID}, per its model card",
        }
    ],
    "licences": f"{PUBLISHED_LICENCE} (the licence of the {HUB_ID} weights): non-commercial, "
    "share-alike; models derived from these weights inherit it",
    "metrics": f"not measured by edgeser; see the {HUB_ID} model card and the Wav2Small paper "
    "(Kounadis-Bastian et al., 2024, arXiv:2408.13920)",
}
CHECKPOINT_SUFFIXES = (".pt", ".pth")  # a missing file of these is a typo, not a hub id
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ExportSource:
    """A model to export, its card facts, the file whose SHA-256 the card records, and (for
    an imported model) where it came from."""

    model: nn.Module
    meta: dict[str, Any]
    weights: Path
    imported: dict[str, Any] | None = None


def load_source(path: Path) -> ExportSource:
    """A student checkpoint file, a folder in the published layout, or a hub id; ExportError
    in one line for anything else."""
    if path.is_file():
        model, meta = load_checkpoint(path)
        return ExportSource(model, meta, path)
    if path.is_dir():
        return import_folder(path, str(path))
    if _HUB_ID.match(str(path)) and path.suffix not in CHECKPOINT_SUFFIXES:
        return import_folder(download(str(path)), str(path))
    raise ExportError(
        f"{path}: no such checkpoint file, folder or hub id (expected a student checkpoint "
        f"(.pt), a folder with {WEIGHTS_FILE} + {CONFIG_FILE}, or a hub id such as {HUB_ID})"
    )


def import_folder(folder: Path, source: str) -> ExportSource:
    """The model of a folder in the published layout, with its provenance."""
    from .card import sha256_file

    try:
        model, config = load_published(folder)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    meta = config.get("edgeser") if isinstance(config.get("edgeser"), dict) else PUBLISHED_META
    weights = folder / WEIGHTS_FILE
    imported = {
        "source": source,
        "layout": f"{HUB_ID} ({WEIGHTS_FILE} + {CONFIG_FILE})",
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "config": {k: v for k, v in config.items() if k != "edgeser"},
        "written_by_edgeser": meta is not PUBLISHED_META,
        "licence": PUBLISHED_LICENCE if meta is PUBLISHED_META else meta.get("licences"),
        "streaming_graph": NO_STREAMING,
    }
    return ExportSource(model, dict(meta), weights, imported)


def download(hub_id: str) -> Path:
    """The two files of ``hub_id`` from the Hugging Face hub (cached as transformers does)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ExportError(f"{hub_id}: downloading needs huggingface_hub (pip install "
                          "huggingface_hub), or pass a local folder") from None  # fmt: skip
    try:
        return Path(snapshot_download(hub_id, allow_patterns=[WEIGHTS_FILE, CONFIG_FILE]))
    except Exception as exc:  # network, authentication, unknown repository: one line
        reason = " ".join(str(exc).split())
        raise ExportError(f"{hub_id}: cannot download from the hub ({reason})") from None
