"""The model card: where a model comes from (teacher, data, licences), how good and how
exported it is. Embedded in the ONNX metadata and written as JSON beside the model.

Read from the checkpoint's free-form meta (``save_student(path, model, **meta)``):
``teacher_id`` (or ``teacher``), ``training_data`` (list of names or {name, licence, ...}),
``licences``, ``metrics`` and ``model_version``; any other keys go under ``training``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnx
import onnx_ir
import onnxruntime
import torch
from edgeser.distill.student import Wav2Small, count_parameters

import edgeser

NOT_RECORDED = "not recorded in the checkpoint"
CARD_KEYS = ("teacher_id", "teacher", "training_data", "licences", "metrics", "model_version")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def teacher_of(meta: dict[str, Any]) -> str:
    """The teacher id the checkpoint was distilled from."""
    return str(meta.get("teacher_id") or meta.get("teacher") or "unknown")


def checkpoint_card(
    model: Wav2Small,
    meta: dict[str, Any],
    checkpoint: Path,
    checkpoint_sha256: str,
    model_version: str,
) -> dict[str, Any]:
    """The part of the card shared by every file exported from one checkpoint."""
    training = {k: v for k, v in meta.items() if k not in CARD_KEYS}
    return _json_safe(
        {
            "model_version": model_version,
            "architecture": {
                "family": "Wav2Small",
                "parameters": count_parameters(model),
                **model.config.to_dict(),
            },
            "teacher": teacher_of(meta),
            "training_data": meta.get("training_data", NOT_RECORDED),
            "licences": meta.get("licences", NOT_RECORDED),
            "metrics": meta.get("metrics", NOT_RECORDED),
            "training": training,
            "checkpoint": {"file": checkpoint.name, "sha256": checkpoint_sha256},
            "edgeser_version": edgeser.__version__,
            "tools": {
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnx_ir": onnx_ir.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        }
    )


def write_card(card: dict[str, Any], path: Path) -> None:
    """Write the card as indented, key-sorted JSON."""
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _json_safe(value: Any) -> Any:
    """Plain JSON types only: anything else (paths, numpy scalars...) becomes a string."""
    return json.loads(json.dumps(value, default=str))
