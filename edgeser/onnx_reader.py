"""A pure-Python reader of the ONNX ``ModelProto`` subset edgeser's models use: no ``onnx``
package and no protobuf C extension, so the numpy backend runs wherever numpy does.

It decodes the protobuf wire format (varints, fixed32/64, length-delimited fields) of
onnx.proto3 for: the opsets, the metadata_props, the graph's nodes (with their attributes),
initializers (``raw_data`` or the typed ``*_data`` fields, packed or not), and the inputs and
outputs with their element types and shapes. Anything else is skipped; what the backend cannot
represent (external tensor data, sparse initializers, subgraph attributes) is a ``ValueError``
naming it, which the backend turns into a ``ModelError``.

``read_model_file`` first walks the file's top-level fields with seeks (``check_model_file``),
so that what is no protobuf message (a file of zeros: field number 0) or one cut short (a
half-finished download: a field running past the end) is refused after a few reads, before
the file is read into memory.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# TensorProto.DataType -> numpy dtype (those a numpy backend can hold)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}
TYPE_NAMES = {
    1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64",
}  # fmt: skip
_INT32_FIELD_TYPES = (2, 3, 4, 5, 6, 9, 10)  # stored in int32_data (float16 as its bits)
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_FIXED_SIZES = {_FIXED64: 8, _FIXED32: 4}
MAX_MODEL_BYTES = 2**31 - 1  # protobuf's limit on one message: a larger file is no ONNX model
MAX_TOP_LEVEL_FIELDS = 10_000  # a ModelProto has a few dozen (metadata, opsets, functions)


@dataclass
class Tensor:
    """A graph input or output: name, element type (TensorProto code) and dims (int or name)."""

    name: str
    elem_type: int
    shape: list[int | str | None]

    @property
    def type(self) -> str:
        """onnxruntime's spelling of the type, e.g. ``tensor(float)``."""
        return f"tensor({TYPE_NAMES.get(self.elem_type, str(self.elem_type))})"


@dataclass
class Node:
    """One graph node: operator, domain, inputs/outputs by name (``""`` = absent) and attributes."""

    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    name: str = ""


@dataclass
class Graph:
    """The main graph: topologically sorted nodes, constant tensors, inputs and outputs."""

    nodes: list[Node] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)


@dataclass
class ModelProto:
    """What edgeser needs of an ONNX file: IR version, opsets, metadata and the graph."""

    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    graph: Graph = field(default_factory=Graph)


def read_model_file(path: str | os.PathLike[str]) -> ModelProto:
    """Decode an ONNX file (``read_model``) once ``check_model_file`` has found it whole."""
    check_model_file(path)
    with open(path, "rb") as f:
        return read_model(f.read())


def check_model_file(path: str | os.PathLike[str]) -> None:
    """ValueError naming the byte where the file stops being a protobuf message: its top-level
    fields must have valid keys and tile the file exactly. Reads a few bytes per field and
    seeks over the rest, so a 2 GB file of zeros or a cut-off download costs milliseconds."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError("the file is empty")
        if size > MAX_MODEL_BYTES:
            raise ValueError(f"{size} bytes is more than one protobuf message can hold (2 GiB)")
        pos = fields = 0
        while pos < size:
            fields += 1
            if fields > MAX_TOP_LEVEL_FIELDS:
                raise ValueError(f"more than {MAX_TOP_LEVEL_FIELDS} top-level fields")
            f.seek(pos)
            head = memoryview(f.read(20))  # a key and a length: two varints of <= 10 bytes
            try:
                key, at = _varint(head, 0)
                _check_key(key)
                wire = key & 7
                if wire == _BYTES:
                    length, at = _varint(head, at)
                elif wire == _VARINT:
                    _, at = _varint(head, at)
                    length = 0
                else:
                    length = _FIXED_SIZES[wire]
            except IndexError as exc:
                if pos + len(head) < size:  # the varint itself is malformed
                    raise ValueError(f"byte {pos}: {exc}") from None
                raise ValueError(f"the file is cut short in the field at byte {pos}") from None
            except ValueError as exc:
                raise ValueError(f"byte {pos}: {exc}") from None
            pos += at + length
            if pos > size:
                raise ValueError(
                    f"the file is cut short: field {key >> 3} at byte {pos - at - length} "
                    f"runs to byte {pos}, the file ends at {size} (an unfinished download?)"
                )


def _check_key(key: int) -> None:
    """ValueError unless a field's ``key`` has a field number and a wire type that proto3
    messages use (a run of zero bytes reads as field number 0)."""
    number, wire = key >> 3, key & 7
    if number == 0:
        raise ValueError("field number 0: not a protobuf message (zeros?)")
    if wire not in (_VARINT, _FIXED64, _BYTES, _FIXED32):
        raise ValueError(f"wire type {wire} (field {number}) is not a proto3 field")


def read_model(data: bytes) -> ModelProto:
    """Decode an ONNX file's bytes; ValueError when they are not a readable ModelProto."""
    try:
        model = _model(memoryview(data))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a valid ONNX protobuf ({type(exc).__name__}: {exc})") from None
    if model.ir_version <= 0 or not model.graph.outputs:
        raise ValueError("not an ONNX model (no IR version or no graph outputs)")
    return model


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of a message: int for varint/fixed, bytes view
    for length-delimited fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        _check_key(key)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise IndexError("length-delimited field runs past the end")
            value, pos = buf[pos : pos + size], pos + size
        else:
            size = _FIXED_SIZES[wire]
            if pos + size > end:
                raise IndexError("fixed-size field runs past the end")
            value, pos = bytes(buf[pos : pos + size]), pos + size
        yield number, wire, value


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned varint at ``pos``: (value, next position)."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    """A varint's int64 reading (negative numbers are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8")


def _packed_varints(wire: int, value: Any) -> list[int]:
    """A repeated integer field's values, packed (one bytes value) or not (one varint)."""
    if wire == _VARINT:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _fixed_array(value: Any, fmt: str) -> np.ndarray:
    """A repeated float/double field's values: a packed run, or one unpacked value."""
    return np.frombuffer(bytes(value), dtype=np.dtype(fmt))


def _model(buf: memoryview) -> ModelProto:
    model = ModelProto()
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _VARINT:
            model.ir_version = value
        elif number == 7 and wire == _BYTES:
            model.graph = _graph(value)
        elif number == 8 and wire == _BYTES:
            domain, version = "", 0
            for n, w, v in _fields(value):
                if n == 1 and w == _BYTES:
                    domain = _text(v)
                elif n == 2 and w == _VARINT:
                    version = _signed(v)
            model.opsets[domain] = version
        elif number == 14 and wire == _BYTES:
            entry = {n: _text(v) for n, w, v in _fields(value) if w == _BYTES}
            model.metadata[entry.get(1, "")] = entry.get(2, "")
    return model


def _graph(buf: memoryview) -> Graph:
    graph = Graph()
    for number, wire, value in _fields(buf):
        if wire != _BYTES:
            continue
        if number == 1:
            graph.nodes.append(_node(value))
        elif number == 5:
            name, array = _tensor(value)
            graph.initializers[name] = array
        elif number == 11:
            graph.inputs.append(_value_info(value))
        elif number == 12:
            graph.outputs.append(_value_info(value))
        elif number == 15:
            raise ValueError("sparse initializers are not supported")
    # Initializers may also be listed as graph inputs (IR < 4); they are not feeds.
    graph.inputs = [t for t in graph.inputs if t.name not in graph.initializers]
    return graph


def _node(buf: memoryview) -> Node:
    node = Node("", "", [], [], {})
    for number, wire, value in _fields(buf):
        if wire != _BYTES:
            continue
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 3:
            node.name = _text(value)
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5:
            name, attr = _attribute(value)
            node.attributes[name] = attr
        elif number == 7:
            node.domain = _text(value)
    return node


def _attribute(buf: memoryview) -> tuple[str, Any]:
    """(name, value): a float, int, bytes, tensor, or a list of floats/ints/bytes."""
    name, kind = "", 0
    scalars: dict[int, Any] = {}
    floats: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 20:
            kind = value
        elif number == 2:
            scalars[2] = struct.unpack("<f", value)[0]
        elif number == 3:
            scalars[3] = _signed(value)
        elif number == 4:
            scalars[4] = bytes(value)
        elif number == 5:
            scalars[5] = _tensor(value)[1]
        elif number == 7:
            floats += _fixed_array(value, "<f4").tolist()
        elif number == 8:
            ints += _packed_varints(wire, value)
        elif number == 9:
            strings.append(bytes(value))
        elif number in (6, 10, 11, 22, 23):
            raise ValueError(f"attribute {name or '?'}: graph or sparse attributes unsupported")
    # AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7, STRINGS 8
    by_kind = {1: scalars.get(2, 0.0), 2: scalars.get(3, 0), 3: scalars.get(4, b""),
               4: scalars.get(5), 6: floats, 7: ints, 8: strings}  # fmt: skip
    if kind in by_kind:
        return name, by_kind[kind]
    if kind:
        raise ValueError(f"attribute {name!r} has unsupported type {kind}")
    # No type field (pre-IR-3 writers): whichever value is present.
    present = [v for v in (floats, ints, strings) if v]
    return name, next(iter(scalars.values()), present[0] if present else None)


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    """(name, array) of a TensorProto; raw_data or the typed field matching its type."""
    dims: list[int] = []
    name, data_type, raw = "", 0, None
    typed: dict[int, list[Any]] = {}
    for number, wire, value in _fields(buf):
        if number == 1:
            dims += _packed_varints(wire, value)
        elif number == 2:
            data_type = value
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = bytes(value)
        elif number == 4:
            typed.setdefault(4, []).append(_fixed_array(value, "<f4"))
        elif number == 10:
            typed.setdefault(10, []).append(_fixed_array(value, "<f8"))
        elif number in (5, 7, 11):  # int64 even where numpy's default int is 32-bit
            typed.setdefault(number, []).append(
                np.array(_packed_varints(wire, value), dtype=np.int64)
            )
        elif number == 14 and value == 1:
            raise ValueError(f"tensor {name or '?'}: external data is not supported")
        elif number == 6:
            raise ValueError(f"tensor {name or '?'}: string tensors are not supported")
    if data_type not in DTYPES:
        raise ValueError(f"tensor {name!r}: data type {data_type} is not supported")
    dtype = DTYPES[data_type]
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        field_number = (
            4 if data_type == 1 else 10 if data_type == 11 else 7 if data_type == 7
            else 11 if data_type in (12, 13) else 5 if data_type in _INT32_FIELD_TYPES else 0
        )  # fmt: skip
        parts = typed.get(field_number, [])
        values = np.concatenate(parts) if parts else np.zeros(0)
        if data_type == 10:  # float16 values travel as their 16-bit patterns
            array = values.astype(np.uint16).view(np.float16)
        elif data_type in (12, 13):
            array = values.astype(np.int64).astype(np.uint64).astype(dtype)
        else:
            array = values.astype(dtype)
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise ValueError(f"tensor {name!r}: {array.size} values for shape {dims}")
    return name, array.reshape(dims)


def _value_info(buf: memoryview) -> Tensor:
    """A ValueInfoProto of tensor type: name, element type and dims."""
    tensor = Tensor("", 0, [])
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _BYTES:
            tensor.name = _text(value)
        elif number == 2 and wire == _BYTES:
            for n, w, v in _fields(value):  # TypeProto
                if n == 1 and w == _BYTES:  # tensor_type
                    for n2, w2, v2 in _fields(v):
                        if n2 == 1 and w2 == _VARINT:
                            tensor.elem_type = v2
                        elif n2 == 2 and w2 == _BYTES:
                            tensor.shape = [_dim(d) for n3, _, d in _fields(v2) if n3 == 1]
    return tensor


def _dim(buf: memoryview) -> int | str | None:
    """A TensorShapeProto.Dimension: its value, its parameter name, or None when unknown."""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _VARINT:
            return _signed(value)
        if number == 2 and wire == _BYTES:
            return _text(value)
    return None
