"""Resolve a teacher spec (hub id, folder, .onnx, ``reference:PATH``, ``module:attr``)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import numpy as np

from edgeser.errors import EdgeserError

from ..data import content_hash
from ..store import category_problem
from .base import Teacher, TeacherOutput

# The project's reference teacher, installed with the package (edgeser/distill/weights/).
REFERENCE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "reference_teacher.pt"
TEACHER_SPECS = (
    "a local wav2vec2 folder (config.json + weights), a hub id such as "
    "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim, a .onnx file, an audonnx folder "
    "(model.yaml + .onnx), reference (the bundled reference teacher) or reference:PATH, "
    "or module:attr"
)


class TeacherError(EdgeserError):
    """A teacher cannot be found or loaded, or returned something that is not [batch, 3]."""


class CallableTeacher:
    """Wraps a plain function ``list[np.ndarray] -> [B, 3]`` (or ``TeacherOutput``)."""

    def __init__(self, fn, teacher_id: str):
        self.fn = fn
        self.teacher_id = teacher_id

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        out = self.fn(waveforms)
        return out if isinstance(out, TeacherOutput) else TeacherOutput(np.asarray(out))


def load_teacher(spec: str, device: str = "auto", max_chunk_s: float = 20.0) -> Teacher:
    """Load the teacher ``spec`` names; TeacherError with the accepted forms if it cannot."""
    path = Path(spec)
    if spec == "reference" or spec.startswith("reference:"):
        return _reference_teacher(spec.removeprefix("reference").removeprefix(":"))
    if path.suffix.lower() == ".onnx" or (path.is_dir() and (path / "model.yaml").is_file()):
        from .onnx_teacher import OnnxTeacher

        return OnnxTeacher(path, device=device)
    if path.is_dir() and (path / "config.json").is_file():
        from .wav2vec2 import Wav2Vec2Teacher

        return Wav2Vec2Teacher.load(spec, device=device, max_chunk_s=max_chunk_s)
    if path.exists():
        raise TeacherError(f"teacher {spec!r}: not a teacher; expected {TEACHER_SPECS}")
    if ":" in spec:
        return _callable_teacher(spec)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        from .wav2vec2 import Wav2Vec2Teacher

        return Wav2Vec2Teacher.load(spec, device=device, max_chunk_s=max_chunk_s)
    raise TeacherError(f"teacher {spec!r} not found; expected {TEACHER_SPECS}")


def _reference_teacher(path: str) -> Teacher:
    """``reference:PATH``; no PATH: the bundled weights (``REFERENCE_WEIGHTS``)."""
    path = path or str(REFERENCE_WEIGHTS)
    try:
        from .reference import load_reference_teacher
    except ImportError as exc:
        raise TeacherError(f"the reference teacher is not available ({exc})") from None
    if not Path(path).exists():
        raise TeacherError(f"reference teacher {path!r}: no such file or folder")
    return load_reference_teacher(path)


def _callable_teacher(spec: str) -> Teacher:
    """``module:attr``: a Teacher object as is, or a function wrapped with an id that hashes
    the module's source file (so editing the teacher makes old stores refuse it)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except ImportError as exc:
        raise TeacherError(f"teacher {spec!r}: cannot import {module_name!r} ({exc})") from None
    except AttributeError:
        raise TeacherError(f"teacher {spec!r}: module {module_name!r} has no {attr!r}") from None
    if isinstance(obj, Teacher):
        return obj
    if not callable(obj):
        raise TeacherError(f"teacher {spec!r}: {attr!r} is neither a Teacher nor callable")
    source = inspect.getsourcefile(module)
    digest = content_hash(source) if source else "unhashed"
    return CallableTeacher(obj, f"callable:{spec}:{digest}")


def category_labels(teacher: Teacher) -> tuple[str, ...]:
    """The labels of a teacher's categorical head (empty without one)."""
    return tuple(getattr(teacher, "category_labels", ()) or ())


def check_output(
    out: TeacherOutput, n: int, teacher_id: str, labels: tuple[str, ...] = ()
) -> TeacherOutput:
    """Make sure a teacher returned finite [n, 3] readings (and a matching embedding), and
    with ``labels`` [n, len(labels)] category probabilities (rows renormalised to sum to 1)."""
    adv = np.asarray(out.adv, dtype=np.float32)
    if adv.shape != (n, 3):
        raise TeacherError(f"teacher {teacher_id} returned shape {adv.shape} for {n} inputs")
    if not np.isfinite(adv).all():
        raise TeacherError(f"teacher {teacher_id} returned NaN or infinite readings")
    emb = out.embedding
    if emb is not None:
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise TeacherError(f"teacher {teacher_id}: embedding shape {emb.shape} for {n} inputs")
    return TeacherOutput(adv, emb, checked_categories(out.categories, n, teacher_id, labels))


def checked_categories(
    probs: np.ndarray | None, n: int, teacher_id: str, labels: tuple[str, ...]
) -> np.ndarray | None:
    """A teacher's category probabilities as float32 rows that sum to 1, None without labels;
    TeacherError when they are missing, misshapen, negative, not finite or not normalised."""
    if not labels:
        return None
    problem = category_problem(probs, n, len(labels))
    if problem:
        raise TeacherError(f"teacher {teacher_id} ({', '.join(labels)}): {problem}")
    probs = np.asarray(probs, dtype=np.float32)
    return probs / probs.sum(axis=1, keepdims=True)


def normalize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per utterance, exactly as the wav2vec2 processor does it."""
    x = np.asarray(x, dtype=np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_torch_threads(n: int) -> None:
    """Limit torch's intra-op threads (0 keeps torch's default)."""
    if n > 0:
        import torch

        torch.set_num_threads(n)
