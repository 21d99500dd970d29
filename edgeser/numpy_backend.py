"""A numpy-only inference backend for the graphs ``edgeser-export`` writes, for devices where
onnxruntime cannot be installed (ARMv6, 32-bit Raspberry Pi OS bookworm, Pyodide).

``NumpySession`` reads the file with ``edgeser.onnx_reader`` (pure Python) and runs the graph
node by node with the operators of ``edgeser.numpy_ops``. It offers the part of onnxruntime's
``InferenceSession`` interface the runtime uses (``get_inputs``, ``get_outputs``,
``get_modelmeta``, ``run``), so ``Model`` and ``IncrementalGraph`` do not care which backend
they hold. At load it fuses QDQ convolutions as onnxruntime does, flags the float products a
quantiser depends on (see ``numpy_ops``), and evaluates constant sub-graphs (weight
dequantisation, for example) once. Only the operators in ``numpy_ops.OPS`` are supported
(standard domain, opset 13 or later); any other graph is refused with a ModelError naming
its unsupported operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .numpy_ops import EXACT, FUSED_OPS, OPS, Arrays, ConvShape
from .onnx_reader import DTYPES, Node, Tensor, read_model_file

MIN_OPSET = 13


@dataclass
class Step:
    """One node to run: its function, input and output names, attributes."""

    run: Callable[[Arrays], list[np.ndarray]]
    inputs: list[str]
    outputs: list[str]
    release: list[str]  # intermediate tensors no later step needs


class ModelMeta:
    """onnxruntime's ``ModelMetadata`` subset: ``custom_metadata_map``."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.custom_metadata_map = dict(metadata)


class NumpySession:
    """An ONNX graph run by numpy, with onnxruntime's session interface (see module doc)."""

    backend = "numpy"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            model = read_model_file(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        opset = model.opsets.get("", model.opsets.get("ai.onnx", 0))
        if opset < MIN_OPSET:
            raise ModelError(
                f"{path}: opset {opset}; the numpy backend runs opset {MIN_OPSET} or later"
            )
        graph = model.graph
        unsupported = sorted(
            {f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
             for n in graph.nodes if n.domain not in ("", "ai.onnx") or n.op_type not in OPS}
        )  # fmt: skip
        if unsupported:
            raise ModelError(
                f"{path}: the numpy backend does not support the operator(s) "
                f"{', '.join(unsupported)}; use backend='onnxruntime'"
            )
        self.path = path
        self._inputs = graph.inputs
        self._outputs = graph.outputs
        self._meta = ModelMeta(model.metadata)
        try:
            self._constants, self._steps = _compile(graph.nodes, graph.initializers, graph, opset)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ModelError(f"{path}: the numpy backend cannot run this graph ({exc})") from None

    def get_inputs(self) -> list[Tensor]:
        return list(self._inputs)

    def get_outputs(self) -> list[Tensor]:
        return list(self._outputs)

    def get_modelmeta(self) -> ModelMeta:
        return self._meta

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list:
        """The named outputs (None: all) for the given inputs, like onnxruntime's ``run``."""
        missing = [t.name for t in self._inputs if t.name not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {missing}")
        values: dict[str, Any] = {**self._constants}
        for tensor in self._inputs:
            value = np.asarray(feeds[tensor.name])
            want = DTYPES.get(tensor.elem_type)
            if want is not None and value.dtype != want:
                raise ValueError(f"input {tensor.name!r} is {value.dtype}, expected {want}")
            values[tensor.name] = value
        names = [t.name for t in self._outputs] if output_names is None else list(output_names)
        with np.errstate(all="ignore"):  # inf/NaN propagate as in onnxruntime
            for step in self._steps:
                results = step.run([values[i] if i else None for i in step.inputs])
                values.update(zip(step.outputs, results, strict=False))
                for name in step.release:
                    values.pop(name, None)
        return [np.asarray(values[n]) for n in names]


def _compile(
    nodes: list[Node], initializers: dict[str, np.ndarray], graph: Any, opset: int
) -> tuple[dict[str, np.ndarray], list[Step]]:
    """Constants (initializers plus constant sub-graphs folded) and the steps to run per call."""
    kept = {t.name for t in graph.outputs}
    nodes = _fuse_qdq_convs(nodes, initializers, kept)
    nodes = _live(nodes, kept)
    _mark_before_quantize(nodes)
    constants = dict(initializers)
    pending: list[tuple[Node, Callable[[Arrays], list[np.ndarray]]]] = []
    known = set(constants) | {t.name for t in graph.inputs}
    for node in nodes:
        run = _bind(node, opset)
        for name in node.inputs:
            if name and name not in known:
                raise ValueError(f"{node.op_type} {node.name!r} reads {name!r} before it is made")
        known.update(node.outputs)
        if all(not name or name in constants for name in node.inputs):
            with np.errstate(all="ignore"):
                results = run([constants[i] if i else None for i in node.inputs])
            constants.update(zip(node.outputs, results, strict=False))
        else:
            pending.append((node, run))
    last_use: dict[str, int] = {}
    for index, (node, _) in enumerate(pending):
        for name in node.inputs:
            last_use[name] = index
    steps = []
    for index, (node, run) in enumerate(pending):
        release = [
            n for n in node.inputs
            if n and last_use.get(n) == index and n not in constants and n not in kept
        ]  # fmt: skip
        steps.append(Step(run, node.inputs, node.outputs, release))
    needed = {n for node, _ in pending for n in node.inputs} | kept
    return {k: v for k, v in constants.items() if k in needed}, steps


def _bind(node: Node, opset: int) -> Callable[[Arrays], list[np.ndarray]]:
    """The node's op with its attributes bound; geometry errors surface at load."""
    function, attrs = {**OPS, **FUSED_OPS}[node.op_type], node.attributes
    if node.op_type in ("Conv", "MaxPool"):
        ConvShape.of({**attrs, "group": attrs.get("group", 1)}, 1)  # refuses auto_pad at load
    return lambda inputs: function(inputs, attrs, opset)


def _mark_before_quantize(nodes: list[Node]) -> None:
    """Flag the Conv and MatMul nodes a QuantizeLinear depends on: their float rounding can
    move a value across a rounding boundary of the int8 grid, so they sum in onnxruntime's
    order (``mlas_matmul``)."""
    producer = {o: n for n in nodes for o in n.outputs}
    stack = [n for n in nodes if n.op_type == "QuantizeLinear"]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Conv", "MatMul"):
            node.attributes[EXACT] = True
        stack.extend(producer[i] for i in node.inputs if i in producer)


def _live(nodes: list[Node], kept: set[str]) -> list[Node]:
    """The nodes that contribute to the graph outputs, in order."""
    needed, live = set(kept), []
    for node in reversed(nodes):
        if any(o in needed for o in node.outputs):
            live.append(node)
            needed.update(i for i in node.inputs if i)
    return live[::-1]


def _fuse_qdq_convs(nodes: list[Node], initializers: dict[str, np.ndarray], kept: set[str]):
    """Replace each 2-D DequantizeLinear -> Conv -> QuantizeLinear group (activation and
    int8 weight dequantised, one Q consumer) by a fused integer convolution node, as
    onnxruntime's QDQ transformer does (it makes them QLinearConv)."""
    producer = {o: n for n in nodes for o in n.outputs}
    consumers: dict[str, list[Node]] = {}
    for node in nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, Node | None] = {}
    for node in nodes:
        group = _qdq_conv_group(node, producer, consumers, initializers, kept)
        if group is None:
            continue
        dq_x, dq_w, dq_b, q = group
        fused = Node(
            "QDQConv",
            "",
            [dq_x.inputs[0], dq_x.inputs[1], dq_x.inputs[2], dq_w.inputs[0], dq_w.inputs[1],
             dq_w.inputs[2] if len(dq_w.inputs) > 2 else "", dq_b.inputs[0] if dq_b else "",
             q.inputs[1], q.inputs[2]],
            list(q.outputs),
            dict(node.attributes),
            node.name,
        )  # fmt: skip
        replaced[id(node)] = fused
        replaced[id(q)] = None
    return [replaced.get(id(n), n) for n in nodes if replaced.get(id(n), n) is not None]


def _qdq_conv_group(
    node: Node,
    producer: dict[str, Node],
    consumers: dict[str, list[Node]],
    initializers: dict[str, np.ndarray],
    kept: set[str],
) -> tuple[Node, Node, Node | None, Node] | None:
    """(DQ of x, DQ of w, DQ of the bias or None, Q) when ``node`` is a fusable QDQ Conv:
    2-D, int8/uint8 weights, int32 bias, scalar activation scales, one Q consumer."""
    if node.op_type != "Conv" or len(node.inputs) < 2 or node.outputs[0] in kept:
        return None
    dq_x, dq_w = producer.get(node.inputs[0]), producer.get(node.inputs[1])
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    dq_b = producer.get(node.inputs[2]) if has_bias else None
    users = consumers.get(node.outputs[0], [])
    q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
    if q is None or not _is_dq(dq_x) or not _is_dq(dq_w) or (has_bias and not _is_dq(dq_b)):
        return None
    w = initializers.get(dq_w.inputs[0])
    if w is None or w.ndim != 4 or w.dtype not in (np.int8, np.uint8):
        return None
    if dq_b is not None and initializers.get(dq_b.inputs[0], np.zeros(0)).dtype != np.int32:
        return None
    params = [*dq_x.inputs[1:3], *q.inputs[1:3]]
    if len(params) != 4 or any(initializers.get(p, np.zeros(2)).size != 1 for p in params):
        return None
    if initializers[q.inputs[2]].dtype != initializers[dq_x.inputs[2]].dtype:
        return None
    return dq_x, dq_w, dq_b, q


def _is_dq(node: Node | None) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"
