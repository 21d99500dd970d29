"""fp32 graph -> int8 QDQ graph, statically calibrated on real audio crops.

Choices, each measured on a trained student (see notes/export.md):
- Only Conv nodes are quantised, and not the front-end's DFT Conv: int8 on the power
  spectrogram (dynamic range ~1e9) or on the attention softmax (weights ~1/frames) wrecks
  the output, while the 3x3 stack and the 1x1 attention convs (>97 % of the weights) quantise
  with CCC 0.995-0.9999 against fp32. Quantising more ops (Gemm, Mul, ReduceSum) only lowers it.
- The first 3x3 Conv stays float too: it reads the normalised log-mel, and quantising its
  input cost more than all the other convs together (v2 bundled model, held-out crops: CCC
  against fp32 D 0.9991 -> 0.99995, V 0.9991 -> 0.9999 when float; its categories' top label
  the same on 97.5 -> 98.2 % of dev windows), for ~2 % of the MACs and 117 weights.
- ``reduce_range`` (7-bit weights): onnxruntime's x86 int8 Conv without VNNI multiplies with
  VPMADDUBSW, whose int16 pair sums saturate with full 8-bit weights; that dropped CCC to
  ~0.7 where the same file run unfused gave 0.997+. 7-bit weights cannot saturate.
- No ``quant_pre_process``: the graph is already optimised; it changed nothing but took ~10 s.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from edgeser.distill.data import HELDOUT_SPLITS, DataError, find_sources
from edgeser.distill.manifest import ManifestRow
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edgeser.audio import read_audio
from edgeser.contract import INPUT_NAME, MIN_SAMPLES, SAMPLE_RATE
from edgeser.errors import AudioError

from .config import ExportError
from .onnx_export import frontend_nodes

QUANTIZED_OPS = ("Conv",)

QUANTIZATION_SETTINGS = {
    "method": "static",
    "format": "QDQ",
    "activations": "int8",
    "weights": "int8 (7-bit range), per channel",
    "calibration": "MinMax",
    "quantized_ops": list(QUANTIZED_OPS),
    "float_parts": (
        "front-end (normalisation, DFT, log-mel), first 3x3 conv, attention softmax and "
        "pooling, head"
    ),
}


@dataclass(frozen=True)
class CalibrationAudio:
    """Crops for calibration and, from other files, held-out crops for the parity check."""

    calibration: list[np.ndarray]
    heldout: list[np.ndarray]
    files: int
    skipped: int


class CropReader(CalibrationDataReader):
    """Feeds crops to the calibrator one at a time, as [1, samples] batches."""

    def __init__(self, crops: Sequence[np.ndarray]):
        self._crops = iter(crops)

    def get_next(self) -> dict[str, np.ndarray] | None:
        crop = next(self._crops, None)
        return None if crop is None else {INPUT_NAME: crop[None, :].astype(np.float32)}


def load_calibration_audio(
    sources: Sequence[Path],
    *,
    calibration_crops: int,
    heldout_crops: int,
    crop_s: float,
    seed: int,
) -> CalibrationAudio:
    """Random crops from folders, audio files or manifests (found as distill/ finds them).
    Held-out crops come from other files than calibration crops: a manifest's dev/test rows
    when it has both kinds, else a random share of the files. Unusable files are skipped and
    counted."""
    try:
        rows = find_sources([str(s) for s in sources])
    except DataError as exc:
        raise ExportError(f"calibration set: {exc}") from None
    if len(rows) < 2:
        raise ExportError(
            f"calibration set has {len(rows)} audio file(s); need at least 2 "
            "(some for calibration, others held out for the parity check)"
        )
    rng = np.random.default_rng(seed)
    share = heldout_crops / (heldout_crops + calibration_crops)
    heldout_files, calibration_files = _split_files(rows, share, rng)
    heldout, skipped_h = _crops(heldout_files, heldout_crops, crop_s, rng)
    calibration, skipped_c = _crops(calibration_files, calibration_crops, crop_s, rng)
    if not calibration or len(heldout) < 2:
        raise ExportError(
            f"calibration set gave {len(calibration)} calibration and {len(heldout)} held-out "
            f"crops (need >= 1 and >= 2): are the files readable and >= {MIN_SAMPLES} samples?"
        )
    return CalibrationAudio(calibration, heldout, len(rows), skipped_h + skipped_c)


def _split_files(
    rows: Sequence[ManifestRow], share: float, rng: np.random.Generator
) -> tuple[list[Path], list[Path]]:
    """(held-out, calibration) files in random order: the manifest's dev/test rows against the
    rest when it marks both, else ``share`` of all files against the rest."""
    files = [rows[i] for i in rng.permutation(len(rows))]
    given = [r.audio for r in files if r.split.lower() in HELDOUT_SPLITS]
    rest = [r.audio for r in files if r.split.lower() not in HELDOUT_SPLITS]
    if given and rest:
        return given, rest
    n_held = min(len(files) - 1, max(1, round(len(files) * share)))
    return [r.audio for r in files[:n_held]], [r.audio for r in files[n_held:]]


def _crops(
    files: Sequence[Path], wanted: int, crop_s: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], int]:
    """Up to ``wanted`` crops, an equal share from each file in order; (crops, files skipped)."""
    per_file = math.ceil(wanted / len(files))
    size = int(crop_s * SAMPLE_RATE)
    crops: list[np.ndarray] = []
    skipped = 0
    for path in files:
        if len(crops) >= wanted:
            break
        try:
            audio = read_audio(path)
        except AudioError:
            skipped += 1
            continue
        if audio.size < MIN_SAMPLES:
            skipped += 1
            continue
        for _ in range(min(per_file, wanted - len(crops))):
            start = int(rng.integers(0, max(1, audio.size - size + 1)))
            crops.append(audio[start : start + size])
    return crops, skipped


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes the quantiser leaves in float: the front-end and the first 2-D Conv after it."""
    front = frontend_nodes(model)
    return [*front, model.graph.node[len(front)].name]  # front ends at that Conv


def quantize_int8(fp32: onnx.ModelProto, crops: Sequence[np.ndarray]) -> onnx.ModelProto:
    """Static S8S8 QDQ quantisation of ``fp32``, calibrated on ``crops``, with compact names."""
    with tempfile.TemporaryDirectory(prefix="edgeser-int8-") as tmp:
        # A file, not the proto: quantize_static moves a proto's weights to external data.
        source, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fp32, source)
        with _root_logging_quiet():
            quantize_static(
                source,
                out,
                CropReader(crops),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_exclude=float_nodes(fp32),
                calibrate_method=CalibrationMethod.MinMax,
            )
        int8 = onnx.load(out)
    compact_names(int8)
    onnx.checker.check_model(int8, full_check=True)
    return int8


@contextmanager
def _root_logging_quiet() -> Iterator[None]:
    """Silence the quantiser's root-logger advice to run pre-processing (see module doc)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def compact_names(model: onnx.ModelProto) -> None:
    """Rename nodes and intermediate tensors to short ids and drop value_info: the ~130
    generated Q/DQ names would otherwise be a quarter of the int8 file."""
    graph = model.graph
    kept = {v.name for v in graph.input} | {v.name for v in graph.output}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in kept:
            return name
        return short.setdefault(name, f"t{len(short)}")

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    del graph.value_info[:]
