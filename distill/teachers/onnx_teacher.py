"""An ONNX teacher: a bare ``.onnx`` with a [batch, 3] output, or an audonnx folder.

The audonnx layout (used by the published ONNX export of the audeering wav2vec2 model) is a
folder with ``model.yaml`` naming the ``.onnx`` file (``path``) and the labels of each output
(``labels: {logits: [arousal, dominance, valence]}``). The output used is the one named in
``OUTPUT_NAMES``, else the only one of width 3; an output named ``hidden_states`` or
``embedding`` becomes the embedding. Input is normalised per utterance (a no-op for models
that normalise internally). Waveforms of equal length are batched; others run one by one,
because zero padding would change what a model without an attention mask sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeser.contract import LABELS

from ..data import content_hash
from .base import TeacherOutput
from .loading import TeacherError, normalize, resolve_device

OUTPUT_NAMES = ("logits", "adv")
EMBEDDING_NAMES = ("hidden_states", "embedding")


def read_audonnx_yaml(folder: Path) -> tuple[Path, dict[str, list[str]]]:
    """(model file, labels per output) from an audonnx ``model.yaml``."""
    import yaml

    try:
        doc = yaml.safe_load((folder / "model.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TeacherError(f"{folder}/model.yaml: unreadable ({exc})") from None
    if isinstance(doc, dict) and len(doc) == 1 and str(next(iter(doc))).startswith("$"):
        doc = next(iter(doc.values()))  # the audobject wrapper key, e.g. $audonnx...Model==0.3
    if not isinstance(doc, dict) or "path" not in doc:
        raise TeacherError(f"{folder}/model.yaml: no 'path' of the ONNX file")
    if doc.get("transform"):
        raise TeacherError(f"{folder}/model.yaml: models with a feature transform are unsupported")
    labels = {
        str(k): [str(x) for x in v]
        for k, v in (doc.get("labels") or {}).items()
        if isinstance(v, list)
    }
    return folder / str(doc["path"]), labels


class OnnxTeacher:
    """onnxruntime inference of an A/D/V model; ``teacher_id`` hashes the ``.onnx`` file."""

    def __init__(self, path: str | Path, device: str = "auto", normalize_input: bool = True):
        path = Path(path)
        labels: dict[str, list[str]] = {}
        if path.is_dir():
            path, labels = read_audonnx_yaml(path)
        if not path.is_file():
            raise TeacherError(f"{path}: no such ONNX file")
        providers = ["CPUExecutionProvider"]
        if resolve_device(device).startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise TeacherError(f"{path}: not loadable by onnxruntime ({exc})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_rank = len(inp.shape)
        self.batched = not isinstance(inp.shape[0], int) or inp.shape[0] != 1
        self.output, self.embedding = _pick_outputs(self.session, path)
        self.order = _order(labels.get(self.output), path)
        self.normalize_input = normalize_input
        self.teacher_id = f"onnx:{content_hash(path)[:16]}"

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        adv: list[np.ndarray | None] = [None] * len(waveforms)
        emb: list[np.ndarray | None] = [None] * len(waveforms)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waveforms):
            groups.setdefault(len(w) if self.batched else -1 - i, []).append(i)
        outputs = [self.output] + ([self.embedding] if self.embedding else [])
        for members in groups.values():
            batch = np.stack([waveforms[i] for i in members]).astype(np.float32)
            if self.normalize_input:
                batch = np.stack([normalize(x) for x in batch])
            if self.input_rank == 3:
                batch = batch[:, None, :]
            result = self.session.run(outputs, {self.input_name: batch})
            for row, i in enumerate(members):
                adv[i] = np.asarray(result[0]).reshape(len(members), -1)[row, self.order]
                if self.embedding:
                    emb[i] = np.asarray(result[1]).reshape(len(members), -1)[row]
        return TeacherOutput(
            np.stack(adv).astype(np.float32),
            np.stack(emb).astype(np.float32) if self.embedding else None,
        )


def _pick_outputs(session: ort.InferenceSession, path: Path) -> tuple[str, str | None]:
    outs = session.get_outputs()
    names = [o.name for o in outs]
    named = [n for n in OUTPUT_NAMES if n in names]
    three = [o.name for o in outs if o.shape and o.shape[-1] == 3]
    if named:
        output = named[0]
    elif len(three) == 1:
        output = three[0]
    else:
        raise TeacherError(f"{path}: no output named {'/'.join(OUTPUT_NAMES)} or of width 3")
    embedding = next((n for n in EMBEDDING_NAMES if n in names and n != output), None)
    return output, embedding


def _order(labels: list[str] | None, path: Path) -> list[int]:
    """Columns giving arousal, dominance, valence (the file's order is assumed A, D, V)."""
    if not labels:
        return [0, 1, 2]
    lower = [x.lower() for x in labels]
    if sorted(lower) != sorted(LABELS):
        raise TeacherError(f"{path}: output labels {labels} are not {', '.join(LABELS)}")
    return [lower.index(x) for x in LABELS]
