"""The numpy backend: the pure-Python ONNX reader, onnxruntime's arithmetic, refusal of graphs
it cannot run, and parity with onnxruntime on the bundled model and the test models."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SPEECH_WAV, voice_like
from onnx import TensorProto, helper, numpy_helper

import edgeser
from edgeser.audio import read_audio
from edgeser.errors import ModelError
from edgeser.model import DEFAULT_MODEL
from edgeser.numpy_backend import NumpySession
from edgeser.onnx_reader import read_model

PARITY = 1e-4  # the bound on |numpy - onnxruntime| of the readings
# The int8 model's attention convs are float sums in another order than onnxruntime's, so an
# attention value can land one int8 step away (measured: embedding max 1.1e-4 over 81 clips;
# readings 2.5e-6): the embedding gets a looser bound.
EMBEDDING_PARITY = 5e-4


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def save(tmp_path: Path, nodes, inputs, outputs, initializers=(), opset=17, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def windows(signal: np.ndarray, size: int = 48_000, hop: int = 8_000) -> list[np.ndarray]:
    return [signal[s : s + size] for s in range(0, signal.size - size + 1, hop)]


# -- the reader ----------------------------------------------------------------------------------


def test_reader_decodes_raw_and_typed_initializers_metadata_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "raw_f32": rng.standard_normal((2, 3)).astype(np.float32),
        "raw_i8": np.array([-128, -1, 0, 5, 127], dtype=np.int8),
        "raw_i64": np.array([-(2**40), -1, 3], dtype=np.int64),
        "scalar": np.array(0.25, dtype=np.float32),
    }
    inits = [numpy_helper.from_array(a, n) for n, a in arrays.items()]
    typed = {  # the typed *_data fields, as quantisers write zero points and scales
        "typed_f32": helper.make_tensor("typed_f32", TensorProto.FLOAT, [3], [1.5, -2.0, 3.25]),
        "typed_i8": helper.make_tensor("typed_i8", TensorProto.INT8, [3], [-128, -3, 127]),
        "typed_u8": helper.make_tensor("typed_u8", TensorProto.UINT8, [2], [0, 255]),
        "typed_i32": helper.make_tensor("typed_i32", TensorProto.INT32, [2], [-(2**31), 7]),
        "typed_i64": helper.make_tensor("typed_i64", TensorProto.INT64, [2], [-(2**62), 9]),
        "typed_f64": helper.make_tensor("typed_f64", TensorProto.DOUBLE, [1], [1e-300]),
    }
    inits += typed.values()
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"edgeser.a": "1", "ключ": "значение"})
    parsed = read_model(model.SerializeToString())
    assert parsed.ir_version == model.ir_version and parsed.opsets == {"": 17}
    assert parsed.metadata == {"edgeser.a": "1", "ключ": "значение"}
    assert [(t.name, t.type, t.shape) for t in parsed.graph.inputs] == [
        ("x", "tensor(float)", ["batch", 7])
    ]
    expected = {**arrays, **{n: numpy_helper.to_array(t) for n, t in typed.items()}}
    assert set(parsed.graph.initializers) == set(expected)
    for name, array in expected.items():
        got = parsed.graph.initializers[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        np.testing.assert_array_equal(got, array, err_msg=name)


def test_reader_decodes_node_attributes(tmp_path):
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, -1, 1, 1], group=1,
        auto_pad="NOTSET", alpha=0.5,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph)
    parsed = read_model(model.SerializeToString()).graph.nodes[0]
    assert (parsed.op_type, parsed.inputs, parsed.outputs) == ("Conv", ["x", "w"], ["y"])
    assert parsed.attributes == {
        "kernel_shape": [3, 3], "pads": [1, -1, 1, 1], "group": 1, "auto_pad": b"NOTSET",
        "alpha": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize("data", [b"", b"this is not a protobuf", b"\x08\x96\x01\x3a\xff"])
def test_reader_refuses_what_is_not_onnx(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        NumpySession(path)


def test_reader_refuses_zeros_inside_a_field_at_once():
    """A graph field of 20 MB of zeros: the first nested key is field number 0 (the reader
    had walked all of them, 10 million empty varint fields)."""
    size = 20 << 20
    length = bytes([(size >> s & 0x7F) | (0x80 if size >> s + 7 else 0) for s in range(0, 28, 7)])
    data = b"\x08\x08" + b"\x3a" + length + bytes(size)
    began = time.perf_counter()
    with pytest.raises(ValueError, match="field number 0"):
        read_model(data)
    assert time.perf_counter() - began < 0.5


# -- operators and arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "onnx_type"), [(np.int8, TensorProto.INT8), (np.uint8, TensorProto.UINT8)]
)
def test_quantize_rounds_half_to_even_and_saturates_like_onnxruntime(tmp_path, dtype, onnx_type):
    zero_point = np.array(3 if dtype == np.int8 else 128, dtype=dtype)
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "scale"),
        numpy_helper.from_array(zero_point, "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"]),
    ]
    path = save(
        tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("q", onnx_type, [None]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], inits,
    )  # fmt: skip
    halves = np.arange(-10.5, 10.5, 0.5) * 0.5  # x / scale on every .0 and .5
    x = np.concatenate([halves, [-1e9, -70.1, 70.2, 1e9, 0.2499999, 0.2500001]]).astype(np.float32)
    expected = ort_session(path).run(None, {"x": x})
    got = NumpySession(path).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].dtype == dtype


def test_per_channel_dequantize_and_operators_match_onnxruntime(tmp_path):
    """A graph of the standard ops the exported models use, against onnxruntime."""
    rng = np.random.default_rng(1)
    w = rng.integers(-64, 64, (4, 2, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(rng.uniform(0.01, 0.05, 4).astype(np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array([0, 1], np.int64), "starts"),
        numpy_helper.from_array(np.array([2, 9], np.int64), "ends"),
        numpy_helper.from_array(np.array([1, 3], np.int64), "slice_axes"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 0, 1, 2],
                         strides=[1, 2], dilations=[2, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[1, 2]),
        helper.make_node("Slice", ["p", "starts", "ends", "slice_axes"], ["s"]),
        helper.make_node("Softmax", ["s"], ["sm"], axis=1),
        helper.make_node("ReduceSum", ["sm", "axes"], ["rs"], keepdims=0),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("ReduceMax", ["f"], ["fm"], axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["f"], ["fa"], axes=[1], keepdims=1),
        helper.make_node("Max", ["fm", "fa"], ["mx"]),
        helper.make_node("Pow", ["mx", "fa"], ["pw"]),
    ]  # fmt: skip
    outputs = ["c", "p", "rs", "pw"]
    path = save(
        tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 11, 16])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * 4) for o in outputs],
        inits,
    )  # fmt: skip
    x = {"x": rng.standard_normal((2, 2, 11, 16)).astype(np.float32)}
    expected = ort_session(path).run(outputs, x)
    for a, b in zip(NumpySession(path).run(outputs, x), expected, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_softmax_over_the_last_axis_matches_onnxruntime_for_large_logits(tmp_path):
    """A categorical head's Softmax: rows of logits up to +-80 (exp overflows float32 without
    the max subtraction) give onnxruntime's probabilities, each row summing to 1."""
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1)]
    path = save(
        tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 4])],
    )  # fmt: skip
    x = {"x": np.array([[80, -80, 0, 1], [0.1, 0.2, 0.3, 0.4], [-80, -80, -80, -79]], np.float32)}
    [got], [expected] = NumpySession(path).run(None, x), ort_session(path).run(None, x)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-7, rtol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


X86 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="bitwise agreement is with onnxruntime's x86 kernels",
)


@X86
def test_log_is_bitwise_onnxruntimes(tmp_path):
    path = save(
        tmp_path, [helper.make_node("Log", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )  # fmt: skip
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [np.logspace(-38, 38, 20_000), rng.uniform(0, 3, 20_000), [0.0, 1.0, np.inf, -1.0]]
    ).astype(np.float32)
    expected = ort_session(path).run(None, {"x": x})[0]
    got = NumpySession(path).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)  # NaN == NaN here


@X86
def test_products_before_a_quantiser_are_bitwise_onnxruntimes(tmp_path):
    """A MatMul and a Conv feeding a QuantizeLinear sum in onnxruntime's order: equal bits,
    so no value lands on the other side of an int8 rounding boundary."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.standard_normal((26, 33)).astype(np.float32), "m"),
        numpy_helper.from_array(rng.standard_normal((8, 26, 5)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("MatMul", ["m", "x"], ["p"]),
        helper.make_node("Conv", ["p", "w"], ["c"], kernel_shape=[5], strides=[2]),
        helper.make_node("QuantizeLinear", ["c", "scale", "zp"], ["q"]),
    ]
    path = save(
        tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 33, 700])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 26, 700]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 8, 348]),
         helper.make_tensor_value_info("q", TensorProto.INT8, [1, 8, 348])], inits,
    )  # fmt: skip
    x = {"x": rng.standard_normal((1, 33, 700)).astype(np.float32)}
    for a, b in zip(NumpySession(path).run(None, x), ort_session(path).run(None, x), strict=True):
        np.testing.assert_array_equal(a, b)


@X86
def test_bundled_models_front_end_quantises_to_onnxruntimes_integers(tmp_path):
    """The float front-end of the bundled int8 model (DFT, mel, log, BatchNorm) up to its
    first QuantizeLinear gives onnxruntime's bits, and so its integers, on every window."""
    model = onnx.load(DEFAULT_MODEL)
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    model.graph.output.extend(
        [
            helper.make_tensor_value_info(first_q.input[0], TensorProto.FLOAT, None),
            helper.make_tensor_value_info(first_q.output[0], TensorProto.INT8, None),
        ]
    )
    path = tmp_path / "front.onnx"
    onnx.save(model, str(path))
    fast, ours = ort_session(path), NumpySession(path)
    for window in windows(read_audio(SPEECH_WAV), hop=4_000):
        feed = {"signal": window[None]}
        for a, b in zip(ours.run(None, feed)[-2:], fast.run(None, feed)[-2:], strict=True):
            np.testing.assert_array_equal(a, b)


def test_unsupported_operators_are_named_in_a_model_error(tmp_path):
    nodes = [
        helper.make_node("Erf", ["x"], ["e"]),
        helper.make_node("Relu", ["e"], ["r"]),
        helper.make_node("HardSwish", ["r"], ["y"]),
    ]
    path = save(
        tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )  # fmt: skip
    with pytest.raises(ModelError, match=r"does not support the operator\(s\) Erf, HardSwish"):
        NumpySession(path)
    with pytest.raises(ModelError, match="Erf, HardSwish"):
        edgeser.load(path, backend="numpy")


def test_custom_domain_operators_are_refused(tmp_path):
    nodes = [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"com\.microsoft\.Gelu"):
        NumpySession(path)


# -- parity with onnxruntime on real models ------------------------------------------------------


def test_bundled_int8_model_matches_onnxruntime():
    """The bundled int8 QDQ model on the example speech (3 s windows, 0.5 s apart, plus a
    batch of two and a minimum-length clip): every output within 1e-4 of onnxruntime."""
    speech = read_audio(SPEECH_WAV)
    fast, ours = ort_session(DEFAULT_MODEL), NumpySession(DEFAULT_MODEL)
    clips = [w[None] for w in windows(speech)]
    clips += [np.stack(windows(speech)[:2]), speech[None, :4000], voice_like(2.0)[None]]
    for clip in clips:
        expected = fast.run(None, {"signal": clip})
        got = ours.run(None, {"signal": clip})
        bounds = (PARITY, EMBEDDING_PARITY, PARITY)  # adv, embedding, category probabilities
        assert len(got) == len(expected) == len(bounds)
        for a, b, bound in zip(got, expected, bounds, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, atol=bound, rtol=0)


def test_load_with_the_numpy_backend_scores_like_onnxruntime():
    numpy_model = edgeser.load(backend="numpy")
    ort_model = edgeser.load(backend="onnxruntime")
    assert (numpy_model.backend, ort_model.backend) == ("numpy", "onnxruntime")
    assert numpy_model.signature == ort_model.signature
    assert numpy_model.info == ort_model.info
    a, b = numpy_model.score_file(SPEECH_WAV), ort_model.score_file(SPEECH_WAV)
    assert len(a.windows) == len(b.windows) > 1
    for x, y in zip([*a.windows, a.aggregate], [*b.windows, b.aggregate], strict=True):
        np.testing.assert_allclose(x.adv, y.adv, atol=PARITY, rtol=0)


def test_unknown_backend_is_a_config_error(tiny_model_path, monkeypatch):
    with pytest.raises(edgeser.ConfigError, match="backend must be one of"):
        edgeser.load(tiny_model_path, backend="tflite")
    monkeypatch.setenv("EDGESER_BACKEND", "NUMPY")
    assert edgeser.load(tiny_model_path).backend == "numpy"
    monkeypatch.setenv("EDGESER_BACKEND", "auto")
    assert edgeser.load(tiny_model_path).backend == "onnxruntime"
