"""The operators of the numpy backend (``edgeser.numpy_backend``): each takes its inputs (None
for an absent optional one), its attributes and the opset, and returns its outputs.

Arithmetic follows onnxruntime's CPU provider where it matters for parity:
- ``QuantizeLinear``: ``x / scale`` in float32, rounded half to even, plus the zero point,
  saturated to the integer type; ``DequantizeLinear``: ``(x - zero_point) * scale``.
- ``QDQConv`` (a 2-D ``DequantizeLinear -> Conv -> QuantizeLinear`` group, which onnxruntime
  fuses into ``QLinearConv``): exact integer accumulation plus the int32 bias, then
  ``acc * (x_scale * w_scale / y_scale)`` in float32, rounded half to even, saturated.
- Before a quantiser, float ``Conv`` and ``MatMul`` sum in onnxruntime's SGEMM order
  (``mlas_matmul``), ``Log`` is Eigen's, ``BatchNormalization`` uses onnxruntime's order of
  operations, so values land on the same side of an int8 rounding boundary.
- Convolutions are im2col + one matrix product (BLAS), not loops over pixels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .onnx_reader import DTYPES

EXACT = "__edgeser_exact__"  # set on float Conv/MatMul nodes whose rounding a Q node sees
EXACT_BUDGET = 8_000_000  # largest K x outputs per clip summed in onnxruntime's order (~5 ms)
SGEMM_STRIDE_K = 128  # onnxruntime's SGEMM sums K in blocks of this many
EIGEN_PACKET = 4  # floats per SIMD packet of onnxruntime's Eigen (SSE)
Arrays = list[Any]  # inputs of an op: arrays, or None for an absent optional input
OpFunction = Callable[[Arrays, dict[str, Any], int], list[np.ndarray]]


# -- operators ----------------------------------------------------------------------------------


def _axes(inputs: Arrays, attrs: dict[str, Any], index: int) -> tuple[int, ...] | None:
    """Reduction/unsqueeze axes from the attribute (older opsets) or the input at ``index``."""
    if "axes" in attrs:
        return tuple(int(a) for a in attrs["axes"])
    if len(inputs) > index and inputs[index] is not None and inputs[index].size:
        return tuple(int(a) for a in inputs[index].ravel())
    return None


def _reduce(function: Callable[..., np.ndarray]) -> OpFunction:
    """ReduceMean/Max/Sum: axes by attribute or input, ``keepdims`` (default 1),
    ``noop_with_empty_axes`` (default 0: no axes reduces all)."""

    def run(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        x = inputs[0]
        axes = _axes(inputs, attrs, 1)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            return [x]
        keep = bool(attrs.get("keepdims", 1))
        return [np.asarray(function(x, axis=axes, keepdims=keep)).astype(x.dtype, copy=False)]

    return run


def _elementwise(function: Callable[..., np.ndarray]) -> OpFunction:
    """An op that maps its inputs through a numpy function, keeping the first input's dtype."""

    def run(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        out = function(*inputs)
        return [np.asarray(out).astype(inputs[0].dtype, copy=False)]

    return run


def _pow(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, exponent = inputs
    if exponent.size == 1 and float(exponent.ravel()[0]) == 2.0:
        return [np.square(x)]
    return [np.power(x, exponent.astype(x.dtype)).astype(x.dtype, copy=False)]


def _div(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    a, b = inputs
    if a.dtype.kind in "iu":  # onnxruntime's integer division truncates toward zero
        return [(np.trunc(a / b)).astype(a.dtype)]
    return [(a / b).astype(a.dtype, copy=False)]


def _cast(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [inputs[0].astype(DTYPES[int(attrs["to"])])]


def _shape(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    dims = inputs[0].shape
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    return [np.array(dims[start:end], dtype=np.int64)]


def _reshape(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, shape = inputs[0], [int(d) for d in inputs[1]]
    if not attrs.get("allowzero", 0):  # 0 copies the input's dimension
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def _flatten(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = int(attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(math.prod(x.shape[:axis]), -1)]


def _unsqueeze(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _axes(inputs, attrs, 1) or ()
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = np.expand_dims(x, axis)
    return [x]


def _squeeze(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    axes = _axes(inputs, attrs, 1)
    return [np.squeeze(inputs[0], axis=axes)]


def _concat(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [np.concatenate([x for x in inputs if x is not None], axis=int(attrs["axis"]))]


def _slice(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, starts, ends = inputs[0], inputs[1], inputs[2]
    axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[int(axis)] = slice(int(start), int(end), int(step))  # numpy clamps like ONNX
    return [x[tuple(index)]]


def _gather(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [np.take(inputs[0], inputs[1], axis=int(attrs.get("axis", 0)))]


def _transpose(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    perm = attrs.get("perm")
    return [np.transpose(inputs[0], None if perm is None else tuple(perm))]


def _softmax(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, axis = inputs[0], int(attrs.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [(e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)]


def _gemm(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = a @ b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * np.float32(alpha)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + (inputs[2] if beta == 1.0 else np.float32(beta) * inputs[2])
    return [y.astype(a.dtype, copy=False)]


def _batch_norm(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, scale, bias, mean, var = inputs[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    # onnxruntime's order of operations: x * (scale / sqrt(var + eps)) + (B - mean * that)
    factor = scale * (np.float32(1) / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5))))
    offset = bias - mean * factor
    return [(x * factor.reshape(shape) + offset.reshape(shape)).astype(x.dtype)]


def _quant_shape(param: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A scale or zero point broadcastable against ``x``: scalar, or per ``axis``."""
    if param.size == 1:
        return param.reshape(())
    shape = [1] * x.ndim
    shape[axis % x.ndim] = param.size
    return param.reshape(shape)


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1):
    """onnxruntime's QuantizeLinear: round(x / scale) half to even, + zero point, saturated."""
    dtype = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    low, high = _int_range(dtype)
    scaled = x / _quant_shape(scale, x, axis).astype(np.float32)
    zp = 0 if zero_point is None else _quant_shape(zero_point, x, axis).astype(np.float32)
    return np.clip(np.rint(scaled) + zp, low, high).astype(dtype)


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1):
    """onnxruntime's DequantizeLinear: (x - zero point) * scale in float32."""
    shifted = x.astype(np.int32)
    if zero_point is not None:
        shifted = shifted - _quant_shape(zero_point, x, axis).astype(np.int32)
    return shifted.astype(np.float32) * _quant_shape(scale, x, axis).astype(np.float32)


def _quantize_op(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    zp = inputs[2] if len(inputs) > 2 else None
    return [quantize(inputs[0], inputs[1], zp, int(attrs.get("axis", 1)))]


def _dequantize_op(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    zp = inputs[2] if len(inputs) > 2 else None
    return [dequantize(inputs[0], inputs[1], zp, int(attrs.get("axis", 1)))]


@dataclass(frozen=True)
class ConvShape:
    """A convolution's geometry: strides, dilations and (begin..., end...) pads per axis."""

    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    group: int

    @classmethod
    def of(cls, attrs: dict[str, Any], spatial: int) -> ConvShape:
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if auto_pad not in (b"NOTSET", b"VALID"):
            raise ValueError(f"auto_pad={auto_pad.decode()} is not supported")
        return cls(
            tuple(attrs.get("strides", [1] * spatial)),
            tuple(attrs.get("dilations", [1] * spatial)),
            tuple(attrs.get("pads", [0] * 2 * spatial)),
            int(attrs.get("group", 1)),
        )


def _out_size(size: Sequence[int], kernel: Sequence[int], geometry: ConvShape) -> tuple:
    """The spatial output size of a convolution or pool over an (already padded) input."""
    out = tuple(
        (n - (k - 1) * d - 1) // s + 1
        for n, k, d, s in zip(size, kernel, geometry.dilations, geometry.strides, strict=True)
    )
    if min(out) < 1:
        raise ValueError(f"input {tuple(size)} (padded) is smaller than the kernel {kernel}")
    return out


def _tap_slices(kernel: Sequence[int], geometry: ConvShape, out: Sequence[int]):
    """Per kernel tap, the strided slices of the input that tap sees at every output."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, geometry.dilations, geometry.strides, out, strict=True)
        )


def im2col(x: np.ndarray, kernel: Sequence[int], geometry: ConvShape) -> tuple[np.ndarray, tuple]:
    """The receptive fields of a [N, C, *spatial] input (zero padded) as a
    [C * taps, N * positions] matrix, and the output's spatial size. Built by one strided
    slice copy per kernel tap, so rows are copied whole, never pixel by pixel."""
    spatial = x.ndim - 2
    pads = geometry.pads
    if any(pads):
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
        x = np.pad(x, widths)
    n, c = x.shape[:2]
    out = _out_size(x.shape[2:], kernel, geometry)
    cols = np.empty((c, *kernel, n, *out), dtype=x.dtype)
    channels_first = x.transpose(1, 0, *range(2, 2 + spatial))
    taps = itertools.product(*(range(k) for k in kernel))
    for tap, index in zip(taps, _tap_slices(kernel, geometry, out), strict=True):
        cols[(slice(None), *tap)] = channels_first[(slice(None), slice(None), *index)]
    return cols.reshape(c * math.prod(kernel), n * math.prod(out)), out


def conv(x: np.ndarray, w: np.ndarray, geometry: ConvShape, product=np.matmul) -> np.ndarray:
    """A convolution without bias: [N, C, *spatial] * [O, C / group, *kernel] -> [N, O, *out],
    as im2col and one matrix ``product`` per group."""
    n, group = x.shape[0], geometry.group
    if n > 1 and product is not np.matmul:  # one item at a time: the budget is per clip
        return np.concatenate([conv(x[i : i + 1], w, geometry, product) for i in range(n)])
    per_in, per_out = x.shape[1] // group, w.shape[0] // group
    outs = []
    for g in range(group):
        wg = w[g * per_out : (g + 1) * per_out]
        cols, out = im2col(x[:, g * per_in : (g + 1) * per_in], wg.shape[2:], geometry)
        outs.append(product(wg.reshape(per_out, -1), cols).reshape(per_out, n, *out))
    y = outs[0] if group == 1 else np.concatenate(outs, axis=0)
    return np.ascontiguousarray(np.moveaxis(y, 1, 0))


def _bias_shape(y: np.ndarray) -> tuple[int, ...]:
    return (1, -1) + (1,) * (y.ndim - 2)


def mlas_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b`` summed the way onnxruntime's x86 SGEMM kernels sum: K in blocks of
    128, each summed from zero with one fused multiply-add per k, in order, then added to the
    result; bitwise onnxruntime's. It costs K numpy passes, so it is used only where rounding
    matters (before a QuantizeLinear) and the product is small; elsewhere BLAS is within
    float rounding."""
    work = a.shape[-2] * a.shape[-1] * b.shape[-1]  # per matrix of a batch
    if a.dtype != np.float32 or b.dtype != np.float32 or work > EXACT_BUDGET:
        return np.matmul(a, b)
    shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    result = None
    wide = np.empty(shape, dtype=np.float64)
    for start in range(0, a.shape[-1], SGEMM_STRIDE_K):
        acc = np.zeros(shape, dtype=np.float32)
        for k in range(start, min(start + SGEMM_STRIDE_K, a.shape[-1])):
            # float32 x float32 is exact in float64: one rounding per step, as an FMA
            np.multiply(a[..., :, k, None], b[..., None, k, :], out=wide, dtype=np.float64)
            wide += acc
            acc[...] = wide
        result = acc if result is None else result + acc
    return result


def _conv_op(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    product = mlas_matmul if attrs.get(EXACT) else np.matmul
    y = conv(x, w.astype(x.dtype, copy=False), ConvShape.of(attrs, x.ndim - 2), product)
    if len(inputs) > 2 and inputs[2] is not None:
        y += inputs[2].reshape(_bias_shape(y)).astype(y.dtype)
    return [y]


def qlinear_conv(
    x_q: np.ndarray,
    x_scale: np.ndarray,
    x_zp: np.ndarray,
    w_q: np.ndarray,
    w_scale: np.ndarray,
    w_zp: np.ndarray | None,
    bias_q: np.ndarray | None,
    y_scale: np.ndarray,
    y_zp: np.ndarray,
    geometry: ConvShape,
) -> np.ndarray:
    """onnxruntime's QLinearConv on integer tensors: exact integer accumulation (+ int32
    bias), requantised with the float32 multiplier ``x_scale * w_scale / y_scale``."""
    x_int = x_q.astype(np.float32) - np.float32(x_zp.reshape(()))
    w_int = w_q.astype(np.float32)
    if w_zp is not None:
        w_int -= _quant_shape(w_zp, w_q, 0).astype(np.float32)
    taps = math.prod(w_q.shape[1:])
    # float32 products and sums of integers are exact below 2**24; else use float64
    bound = 255.0 * float(np.abs(w_int).max(initial=0)) * taps
    bound += 0.0 if bias_q is None else float(np.abs(bias_q).max(initial=0))
    work = np.float32 if bound < 2**24 else np.float64
    acc = conv(x_int.astype(work, copy=False), w_int.astype(work), geometry)
    if bias_q is not None:
        acc += bias_q.reshape(_bias_shape(acc)).astype(work)
    multiplier = np.float32(x_scale.reshape(())) * w_scale.astype(np.float32)
    multiplier = (multiplier / np.float32(y_scale.reshape(()))).astype(np.float32)
    multiplier = multiplier.reshape(_bias_shape(acc) if multiplier.size > 1 else ())
    scaled = acc.astype(np.float32, copy=False)  # onnxruntime: float(int32 accumulator)
    scaled *= multiplier
    np.rint(scaled, out=scaled)
    scaled += np.float32(y_zp.reshape(()))
    low, high = _int_range(y_zp.dtype)
    return np.clip(scaled, low, high, out=scaled).astype(y_zp.dtype)


def _max_pool(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    spatial = x.ndim - 2
    if attrs.get("ceil_mode", 0) or attrs.get("storage_order", 0):
        raise ValueError("MaxPool with ceil_mode or storage_order is not supported")
    kernel = tuple(attrs["kernel_shape"])
    geometry = ConvShape.of({**attrs, "group": 1}, spatial)
    pads = geometry.pads
    if any(pads):
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
        x = np.pad(x, widths, constant_values=-np.inf)
    out = _out_size(x.shape[2:], kernel, geometry)
    result = None
    for index in _tap_slices(kernel, geometry, out):
        view = x[(slice(None), slice(None), *index)]
        result = view.copy() if result is None else np.maximum(result, view, out=result)
    return [result]


def _matmul(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    product = mlas_matmul if attrs.get(EXACT) else np.matmul
    return [product(inputs[0], inputs[1])]


def eigen_log(v: np.ndarray) -> np.ndarray:
    """float32 natural log computed as onnxruntime's Eigen computes it: packets of 4 with
    frexp, a rational approximation of log(1 + x) on [sqrt(0.5) - 1, sqrt(2) - 1] and separate
    multiply and add, the rest by the scalar log. Bitwise equal on x86 but for the rare last
    bit of a scalar tail value; numpy's own log differs in the last bit for ~1/6 of inputs."""
    f32 = np.float32
    x, e = np.frexp(v)
    x, e = x.astype(f32), e.astype(f32)
    low = x < f32(0.707106781186547524)
    e -= low.astype(f32)
    x = (x - f32(1)) + np.where(low, x, f32(0))
    p = np.full_like(x, f32(0.18256296349849254))
    for c in (1.0000000190281063, 1.0000000190281136):
        p = p * x + f32(c)
    q = np.full_like(x, f32(0.049616247954120038))
    for c in (0.59923249590823520, 1.4999999999999927, 1.0):
        q = q * x + f32(c)
    y = e * f32(0.693147180559945309) + (x * p) / q
    # log(0) = -inf, log(inf) = inf, log(< 0) and log(NaN) = NaN
    y = np.where(v == 0, f32(-np.inf), y)
    y = np.where(np.isposinf(v), f32(np.inf), y)
    y = np.where((v < 0) | np.isnan(v), f32(np.nan), y).astype(f32)
    tail = v.size % EIGEN_PACKET  # Eigen leaves these to the C library's scalar logf
    if tail:
        flat = y.reshape(-1)
        with np.errstate(all="ignore"):
            flat[-tail:] = np.log(v.reshape(-1)[-tail:].astype(np.float64)).astype(f32)
    return y


def _log(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    return [eigen_log(x) if x.dtype == np.float32 else np.log(x)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _variadic(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFunction:
    def run(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        out = inputs[0]
        for x in inputs[1:]:
            out = function(out, x)
        return [out]

    return run


OPS: dict[str, OpFunction] = {
    "Abs": _elementwise(np.abs),
    "Add": _elementwise(np.add),
    "BatchNormalization": _batch_norm,
    "Cast": _cast,
    "Concat": _concat,
    "Conv": _conv_op,
    "DequantizeLinear": _dequantize_op,
    "Div": _div,
    "Exp": _elementwise(np.exp),
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "Identity": lambda inputs, attrs, opset: [inputs[0]],
    "Log": _log,
    "MatMul": _matmul,
    "Max": _variadic(np.maximum),
    "MaxPool": _max_pool,
    "Min": _variadic(np.minimum),
    "Mul": _elementwise(np.multiply),
    "Neg": _elementwise(np.negative),
    "Pow": _pow,
    "QuantizeLinear": _quantize_op,
    "ReduceMax": _reduce(np.max),
    "ReduceMean": _reduce(np.mean),
    "ReduceSum": _reduce(np.sum),
    "Relu": _elementwise(lambda x: np.maximum(x, 0)),
    "Reshape": _reshape,
    "Shape": _shape,
    "Sigmoid": _elementwise(_sigmoid),
    "Slice": _slice,
    "Softmax": _softmax,
    "Sqrt": _elementwise(np.sqrt),
    "Squeeze": _squeeze,
    "Sub": _elementwise(np.subtract),
    "Tanh": _elementwise(np.tanh),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}


def _qdq_conv_op(inputs: Arrays, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias_q, y_scale, y_zp = inputs
    geometry = ConvShape.of(attrs, x_q.ndim - 2)
    return [qlinear_conv(x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias_q, y_scale, y_zp, geometry)]


FUSED_OPS = {"QDQConv": _qdq_conv_op}
