"""The student models under test: the bundled default (when present) and timing stand-ins.

Timing depends on the architecture, not the weights, so when no trained student is at hand
the benchmark exports a randomly initialised Wav2Small (fp32 and static-int8 QDQ) to time it.
Those files live in a temporary folder, are labelled "random weights" in every result, and are
never presented as a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from edgeser.distill.student import StudentConfig, Wav2Small, build_student, count_parameters
from edgeser.export.onnx_export import export_onnx, set_metadata
from edgeser.export.parity import probe_signals
from edgeser.export.quantize import quantize_int8
from edgeser.export.streaming import StreamingStep, export_streaming

from edgeser.contract import LABELS, SAMPLE_RATE, ModelInfo, parse_metadata

from .flops import count_macs

BUNDLED = Path(__file__).resolve().parent.parent / "edgeser" / "models" / "default.onnx"
RANDOM = "random weights (timing only)"


def timing_info(window_s: float, hop_s: float) -> ModelInfo:
    """Contract metadata for a stand-in file, saying that its weights are random."""
    return ModelInfo(
        sample_rate=16_000,
        labels=LABELS,
        window_s=window_s,
        hop_s=hop_s,
        model_version="random-timing-only",
        teacher="none (random weights, for timing only)",
        card={"purpose": "benchmark timing only; random weights, not a model"},
    )


@dataclass(frozen=True)
class StudentFile:
    """One student ONNX file to time, what it is, and its compute per 3 s window."""

    name: str
    path: Path
    params: int | None
    macs: int | None
    origin: str


def window_macs(model: Wav2Small, seconds: float) -> int:
    """Multiply-accumulates of one window through ``model``."""
    return count_macs(lambda: model(torch.zeros(1, round(seconds * SAMPLE_RATE))))


def bundled_students(window_s: float) -> list[StudentFile]:
    """The bundled default model, when this install has one."""
    if not BUNDLED.is_file():
        return []
    return [card_student("bundled default (int8)", BUNDLED, window_s, "bundled default model")]


def card_student(name: str, path: Path, window_s: float, origin: str) -> StudentFile:
    """A trained student ONNX file; its architecture, parameter count and compute per
    ``window_s`` come from its model card."""
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    arch = dict(parse_metadata(meta).card.get("architecture", {}))
    params = arch.pop("parameters", None)
    fields = {k: v for k, v in arch.items() if k in StudentConfig.__dataclass_fields__}
    student = build_student(StudentConfig(**fields), fresh=False).eval() if fields else None
    macs = window_macs(student, window_s) if student is not None else None
    return StudentFile(name, path, params, macs, origin)


def extra_students(paths: list[Path], window_s: float) -> list[StudentFile]:
    """Trained student files given on the command line (``--student``), named by file."""
    return [card_student(p.name, p, window_s, f"trained weights ({p})") for p in paths]


def random_students(workdir: Path, window_s: float, hop_s: float) -> list[StudentFile]:
    """A randomly initialised Wav2Small exported as fp32 and int8 ONNX (timing stand-ins)."""
    preset = "wav2small"
    model = random_student(preset)
    params, macs = count_parameters(model), window_macs(model, window_s)
    fp32 = workdir / f"{preset}-random.onnx"
    int8 = workdir / f"{preset}-random.int8.onnx"
    write_onnx(model, timing_info(window_s, hop_s), fp32, int8)
    return [
        StudentFile(f"{preset} fp32", fp32, params, macs, RANDOM),
        StudentFile(f"{preset} int8", int8, params, macs, RANDOM),
    ]


@dataclass(frozen=True)
class StreamStudent:
    """A streamable student: its window model file and incremental graph beside it, with the
    compute of re-scoring a window and of one incremental hop."""

    window_model: StudentFile
    graph: Path
    hop_macs: int


def random_stream_student(workdir: Path, window_s: float, hop_s: float) -> StreamStudent:
    """``wav2small-stream`` with random weights: fp32 window model + ``.stream.onnx``."""
    preset = "wav2small-stream"
    model = random_student(preset)
    path = workdir / f"{preset}-random.onnx"
    info = timing_info(window_s, hop_s)
    write_onnx(model, info, path)
    graph = export_streaming(model, info, path)
    step = StreamingStep(model, round(window_s * SAMPLE_RATE))
    state = step.initial_state()
    chunk = torch.zeros(1, round(hop_s * SAMPLE_RATE))
    hop_macs = count_macs(lambda: step(chunk, *state))
    window = StudentFile(
        f"{preset} fp32", path, count_parameters(model), window_macs(model, window_s), RANDOM
    )
    return StreamStudent(window, graph, hop_macs)


def random_student(preset: str) -> Wav2Small:
    """A seeded random student (BatchNorm statistics randomised too, so that no layer is an
    identity a runtime could shortcut)."""
    torch.manual_seed(0)
    model = Wav2Small(StudentConfig.preset(preset)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def write_onnx(model: Wav2Small, info: ModelInfo, fp32: Path, int8: Path | None = None) -> None:
    """Export with ``edgeser.export`` (the same graph, clean-up and int8 recipe as a real
    model), with ``info`` as its contract metadata."""
    graph = export_onnx(model)
    set_metadata(graph, info.to_metadata())
    onnx.save(graph, fp32)
    if int8 is not None:
        crops = list(probe_signals(8, round(info.window_s * SAMPLE_RATE)))
        onnx.save(quantize_int8(graph, crops), int8)
