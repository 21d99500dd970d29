"""Shared fixtures: a tiny contract-following ONNX model, test audio, and a JACK dummy server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

# Before numpy loads: one BLAS thread. The numpy backend's small matrix products only lose
# from more on this shared machine (a run under load took 15x longer with two).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import soundfile as sf

from edgeser.backends import BACKENDS, ENV_BACKEND
from edgeser.contract import (
    INPUT_NAME,
    LABELS,
    META_CATEGORIES,
    OUTPUT_ADV,
    OUTPUT_CATEGORIES,
    OUTPUT_EMBEDDING,
    ModelInfo,
)

REPO = Path(__file__).resolve().parents[1]
SPEECH_WAV = REPO / "examples" / "speech.wav"
BUNDLED_MODEL = REPO / "edgeser" / "models" / "default.onnx"
CATEGORY_LABELS = ("anger", "happiness", "neutral", "sadness")
TINY_WINDOW_S = 1.0
TINY_HOP_S = 0.25
TINY_EMBEDDING_SIZE = 8

# Fixed weights of the tiny model: three signal statistics -> A/D/V (sigmoid) and an embedding.
TINY_HEAD = np.array([[6.0, 0.5, -2.0], [2.0, 8.0, 1.0], [-1.0, 1.0, 4.0]], dtype=np.float32)
TINY_BIAS = np.array([-1.0, -0.5, 0.2], dtype=np.float32)
TINY_EMBED = np.linspace(-3.0, 3.0, 3 * TINY_EMBEDDING_SIZE, dtype=np.float32).reshape(3, -1)


def tiny_model_info(window_s: float = TINY_WINDOW_S, hop_s: float = TINY_HOP_S) -> ModelInfo:
    """The contract metadata of the tiny test model."""
    return ModelInfo(
        sample_rate=16_000,
        labels=LABELS,
        window_s=window_s,
        hop_s=hop_s,
        model_version="tiny-test-1",
        teacher="none: fixed signal statistics, for tests only",
        card={"purpose": "tests only; responds to loudness, not emotion", "training_data": []},
    )


def build_contract_model(
    path: Path,
    *,
    metadata: dict[str, str] | None = None,
    embedding: bool = True,
    input_name: str = INPUT_NAME,
    adv_size: int = 3,
    output_types: dict[str, int] | None = None,
) -> Path:
    """Write a tiny ONNX model that follows the contract (or breaks it where asked): mean |x|,
    RMS and peak of the signal through a fixed linear head and a sigmoid give ``adv``; a tanh
    of the same statistics gives ``embedding``. ``output_types`` casts outputs by name to
    another TensorProto type. Standard ops only, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    types = {
        OUTPUT_ADV: TensorProto.FLOAT,
        OUTPUT_EMBEDDING: TensorProto.FLOAT,
        **(output_types or {}),
    }

    def output(name: str) -> str:
        """The name the float result of ``name`` is computed under (cast after, if asked)."""
        return name if types[name] == TensorProto.FLOAT else f"{name}_float"

    head = np.resize(TINY_HEAD, (3, adv_size)).astype(np.float32)
    bias = np.resize(TINY_BIAS, adv_size).astype(np.float32)
    nodes = [
        helper.make_node("Abs", [input_name], ["abs"]),
        helper.make_node("ReduceMean", ["abs"], ["mean_abs"], axes=[1], keepdims=1),
        helper.make_node("Mul", [input_name, input_name], ["square"]),
        helper.make_node("ReduceMean", ["square"], ["mean_square"], axes=[1], keepdims=1),
        helper.make_node("Sqrt", ["mean_square"], ["rms"]),
        helper.make_node("ReduceMax", ["abs"], ["peak"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["mean_abs", "rms", "peak"], ["stats"], axis=1),
        helper.make_node("MatMul", ["stats", "head"], ["logits_nobias"]),
        helper.make_node("Add", ["logits_nobias", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [output(OUTPUT_ADV)]),
    ]
    inits = [numpy_helper.from_array(head, "head"), numpy_helper.from_array(bias, "bias")]
    outputs = [helper.make_tensor_value_info(OUTPUT_ADV, types[OUTPUT_ADV], ["batch", adv_size])]
    if embedding:
        nodes += [
            helper.make_node("MatMul", ["stats", "embed"], ["embed_pre"]),
            helper.make_node("Tanh", ["embed_pre"], [output(OUTPUT_EMBEDDING)]),
        ]
        inits.append(numpy_helper.from_array(TINY_EMBED, "embed"))
        outputs.append(
            helper.make_tensor_value_info(
                OUTPUT_EMBEDDING, types[OUTPUT_EMBEDDING], ["batch", TINY_EMBEDDING_SIZE]
            )
        )
    nodes += [
        helper.make_node("Cast", [output(o.name)], [o.name], to=types[o.name])
        for o in outputs
        if output(o.name) != o.name
    ]
    graph = helper.make_graph(
        nodes,
        "edgeser_tiny_test_model",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", "samples"])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = tiny_model_info().to_metadata() if metadata is None else metadata
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def add_category_head(
    model, labels: tuple[str, ...] = CATEGORY_LABELS, seed: int = 0, softmax: bool = True
):
    """``model`` (an onnx ModelProto with an ``embedding`` output, changed in place and
    returned) with a categorical head: ``categories`` = Softmax(embedding @ W + b), W and b
    seeded random (the same for the same seed and embedding size), and ``edgeser.categories``
    naming ``labels``. ``softmax=False`` leaves the logits (a head that breaks the contract).
    A head the model already has is replaced."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    drop_output(graph, OUTPUT_CATEGORIES)
    embedding = next(o for o in graph.output if o.name == OUTPUT_EMBEDDING)
    size = embedding.type.tensor_type.shape.dim[1].dim_value
    rng = np.random.default_rng(seed)
    weight = (3.0 * rng.standard_normal((size, len(labels))) / np.sqrt(size)).astype(np.float32)
    bias = (0.5 * rng.standard_normal(len(labels))).astype(np.float32)
    graph.initializer.extend(
        [numpy_helper.from_array(weight, "category_w"), numpy_helper.from_array(bias, "category_b")]
    )
    logits = OUTPUT_CATEGORIES if not softmax else "category_logits"
    nodes = [
        helper.make_node("MatMul", [OUTPUT_EMBEDDING, "category_w"], ["category_xw"]),
        helper.make_node("Add", ["category_xw", "category_b"], [logits]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", [logits], [OUTPUT_CATEGORIES], axis=-1))
    graph.node.extend(nodes)
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_CATEGORIES, TensorProto.FLOAT, ["batch", len(labels)])
    )
    helper.set_model_props(
        model,
        {**{p.key: p.value for p in model.metadata_props}, META_CATEGORIES: json.dumps(labels)},
    )
    return model


def drop_output(graph, name: str) -> None:
    """Remove output ``name`` from an onnx graph (in place) with the nodes and initializers
    that only it needed."""
    kept = [o for o in graph.output if o.name != name]
    del graph.output[:]
    graph.output.extend(kept)
    needed = {o.name for o in kept}
    nodes = []
    for node in reversed(graph.node):
        if needed & set(node.output):
            nodes.append(node)
            needed |= set(node.input)
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def with_category_head(source: Path, path: Path, **kwargs) -> Path:
    """Write the model at ``source`` with ``add_category_head(**kwargs)`` to ``path``."""
    import onnx

    model = add_category_head(onnx.load(str(source)), **kwargs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def headless_model_path(tmp_path_factory) -> Path:
    """The bundled model without a categorical head (its A/D/V and embedding unchanged): a
    model of the contract before heads existed."""
    import onnx
    from onnx import helper

    model = onnx.load(str(BUNDLED_MODEL))
    drop_output(model.graph, OUTPUT_CATEGORIES)
    props = {p.key: p.value for p in model.metadata_props if p.key != META_CATEGORIES}
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("headless") / "headless.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def categorical_model_path(tmp_path_factory) -> Path:
    """The bundled model with a seeded random categorical head over its embedding (four
    labels); its A/D/V and embedding are the bundled model's."""
    folder = tmp_path_factory.mktemp("categorical")
    return with_category_head(BUNDLED_MODEL, folder / "categorical.onnx")


@pytest.fixture(scope="session")
def contract_model_factory(tmp_path_factory) -> Callable[..., Path]:
    """``factory(name, **kwargs)`` writes a tiny model (see build_contract_model) and returns
    its path; for tests that need a model with other metadata or a broken contract."""
    folder = tmp_path_factory.mktemp("models")

    def factory(name: str, **kwargs) -> Path:
        return build_contract_model(folder / name, **kwargs)

    return factory


@pytest.fixture(scope="session")
def tiny_model_path(contract_model_factory) -> Path:
    """A tiny contract-following ONNX model (1 s window, 0.25 s hop, 8-d embedding)."""
    return contract_model_factory("tiny.onnx")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """Each inference backend in turn: the tests that use it (or ``tiny_model``, or
    ``use_backend``) run once with onnxruntime and once with the numpy backend."""
    return request.param


@pytest.fixture
def use_backend(backend, monkeypatch) -> str:
    """``backend`` as ``$EDGESER_BACKEND``, so that every ``edgeser.load`` of the test (in the
    CLI and in subprocesses too) uses it; modules opt in with ``pytestmark``."""
    monkeypatch.setenv(ENV_BACKEND, backend)
    return backend


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path, backend):
    """The tiny model, loaded once per session and backend on one thread."""
    import edgeser

    return edgeser.load(tiny_model_path, backend=backend)


def voice_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like test signal: a 120-240 Hz gliding tone with harmonics,
    syllable-rate amplitude modulation and a little noise, at about -20 dBFS RMS."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = 120.0 + 60.0 * (1.0 + np.sin(2 * np.pi * 0.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)
    signal = 0.12 * voice * syllables + 0.003 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


@pytest.fixture
def write_wav(tmp_path) -> Callable[..., Path]:
    """``write_wav(name, signal, rate=16000, subtype='PCM_16')`` writes a real audio file."""

    def write(name: str, signal: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16"):
        path = tmp_path / name
        sf.write(str(path), signal, rate, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def jack_server() -> Iterator[str]:
    """A JACK dummy server at 48 kHz (so the device path resamples), started for the session
    under a unique name; yields the name, already set as JACK_DEFAULT_SERVER. Skips when jackd
    or PortAudio is missing or the server does not come up."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd (jackd2) is not installed")
    name = f"edgeser_test_{os.getpid()}"
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    server = subprocess.Popen(
        ["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sd = None
    try:
        if not _wait_for_jack(server):
            pytest.skip("the JACK dummy server did not start")
        sd = _rescan_portaudio()
        if sd is None:
            pytest.skip("PortAudio (libportaudio2) is unavailable")
        yield name
    finally:
        if sd is not None:  # close PortAudio's JACK client while the server still runs
            sd._terminate()
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        if sd is not None:
            sd._initialize()  # PortAudio without the server, for whatever runs next


def _rescan_portaudio() -> ModuleType | None:
    """sounddevice with PortAudio re-initialised (it lists devices once, at start-up), or
    None when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError:
        return None
    sd._terminate()
    sd._initialize()
    return sd


def _wait_for_jack(server: subprocess.Popen, timeout_s: float = 10.0) -> bool:
    """Poll ``jack_lsp`` until the server lists its ports (False if it dies or times out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        probe = subprocess.run(["jack_lsp"], capture_output=True, text=True, env=os.environ)
        if probe.returncode == 0 and "system:capture" in probe.stdout:
            return True
        time.sleep(0.2)
    return False
