"""Student checkpoint -> clean fp32 ONNX graph that follows ``edgeser.contract``.

The TorchScript exporter (``dynamo=False``) is used on purpose: on torch 2.13 it exports this
model in ~0.2 s (the dynamo exporter takes ~10 s and adds per-value metadata), gives dynamic
batch and time axes from ``dynamic_axes``, folds constants, and folds every eval-mode
BatchNorm that follows a Conv into the Conv. Clean-up is three onnx_ir passes (Identity
elimination, Constant nodes to initializers, dead-node removal), not the onnxscript optimizer:
its no-op rules treat ``x + c`` with ``|c| <= 1e-8`` as ``x``, which silently removed the
1e-10 log-mel floor of frame-normalised students (log(0) = -inf on digital silence).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import torch
from edgeser.distill.student import Wav2Small, load_student
from onnx_ir.passes.common import (
    IdentityEliminationPass,
    LiftConstantsToInitializersPass,
    RemoveUnusedNodesPass,
)

from edgeser.contract import INPUT_NAME, MIN_SAMPLES, OUTPUT_ADV, OUTPUT_EMBEDDING

from .categories import OUTPUT_CATEGORIES
from .config import ExportError

STANDARD_DOMAINS = ("", "ai.onnx")


def load_checkpoint(path: Path) -> tuple[Wav2Small, dict[str, Any]]:
    """The student and its metadata, in eval mode; ExportError for anything else."""
    if not path.is_file():
        raise ExportError(f"{path}: no such checkpoint file")
    try:
        return load_student(path)
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def output_names(model: Wav2Small) -> list[str]:
    """The graph outputs of ``model``: adv, embedding and, with a categorical head, categories."""
    return [OUTPUT_ADV, OUTPUT_EMBEDDING] + ([OUTPUT_CATEGORIES] if model.config.categories else [])


def export_onnx(model: Wav2Small, opset: int = 17) -> onnx.ModelProto:
    """Trace the student into an optimised, checked fp32 graph (no metadata yet)."""
    model.eval()
    outputs = output_names(model)
    example = torch.randn(1, MIN_SAMPLES, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # torch >= 2.9 warns that the TorchScript exporter is legacy; it is chosen on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"}}
            | {name: {0: "batch"} for name in outputs},
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            dynamo=False,
        )
    graph = clean_graph(onnx.load_from_string(buffer.getvalue()))
    precise_frontend_means(graph)
    check_graph(graph, outputs)
    return graph


def clean_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Identity nodes, turn Constant nodes into initializers, remove dead nodes."""
    passes = ir.passes.Sequential(
        IdentityEliminationPass(),
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        RemoveUnusedNodesPass(),
    )
    return ir.serde.serialize_model(passes(ir.serde.deserialize_model(model)).model)


def frontend_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes before the first 2-D Conv: normalisation, DFT and log-mel."""
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv" and weights.get(node.input[1]) == 4:
            return names
        names.append(node.name)
    raise ExportError("graph has no 2-D Conv: not a Wav2Small student")


def precise_frontend_means(model: onnx.ModelProto) -> None:
    """Compute the front-end's ReduceMeans in float64. onnxruntime sums float32 with less
    care than torch: over 30 s (480k samples) the waveform mean erred by ~4e-5, which the
    log-mel of quiet bands amplified to ~3e-5 in the outputs; in float64 the outputs stay
    within ~1e-6 of torch at any length, for the cost of casting the waveform."""
    front = set(frontend_nodes(model))
    nodes = []
    for node in model.graph.node:
        if node.name not in front or node.op_type != "ReduceMean":
            nodes.append(node)
            continue
        source, result = node.input[0], node.output[0]
        node.input[0], node.output[0] = f"{node.name}/in_f64", f"{node.name}/out_f64"
        nodes += [
            onnx.helper.make_node(
                "Cast", [source], [node.input[0]], f"{node.name}/to_f64", to=onnx.TensorProto.DOUBLE
            ),
            node,
            onnx.helper.make_node(
                "Cast", [node.output[0]], [result], f"{node.name}/to_f32", to=onnx.TensorProto.FLOAT
            ),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def check_graph(
    model: onnx.ModelProto, expected: Sequence[str] = (OUTPUT_ADV, OUTPUT_EMBEDDING)
) -> None:
    """Raise ExportError unless the graph passes onnx.checker, uses only standard ops, has
    no BatchNormalization left behind a Conv, and has the contract's dynamic input and the
    ``expected`` outputs."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph fails onnx.checker: {exc}") from None
    odd = sorted({n.domain for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    if odd:
        raise ExportError(f"exported graph uses non-standard op domains: {', '.join(odd)}")
    conv_outputs = {o for n in model.graph.node if n.op_type == "Conv" for o in n.output}
    unfolded = [
        n.name
        for n in model.graph.node
        if n.op_type == "BatchNormalization" and n.input[0] in conv_outputs
    ]
    if unfolded:
        raise ExportError(f"Conv+BatchNorm not folded at: {', '.join(unfolded)}")
    inputs = [(i.name, _dims(i)) for i in model.graph.input]
    if inputs != [(INPUT_NAME, ["batch", "samples"])]:
        raise ExportError(f"graph input is {inputs}, not {INPUT_NAME} [batch, samples]")
    outputs = [o.name for o in model.graph.output]
    if outputs != list(expected):
        raise ExportError(f"graph outputs are {outputs}, not {list(expected)}")


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    """Symbolic names (or sizes) of a graph value's dimensions."""
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into ``metadata_props``, replacing entries with the same keys."""
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
