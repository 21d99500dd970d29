"""Streaming-native inference: the incremental graph gives the readings of window re-scoring.

A seeded random ``wav2small-stream`` student (BatchNorm statistics randomised too, so no layer
is an identity) is exported twice: the window model and its ``.stream.onnx``. Both run in real
sessions of each backend (onnxruntime, numpy) through the runtime's scorers, on generated
speech-like audio.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import CATEGORY_LABELS, add_category_head
from edgeser.distill.student import Wav2Small
from edgeser.export.config import ExportError
from edgeser.export.onnx_export import export_onnx, set_metadata
from edgeser.export.streaming import StreamingStep, export_streaming

from benchmarks import students
from edgeser.backends import BACKENDS
from edgeser.contract import LABELS, SAMPLE_RATE, ModelInfo
from edgeser.errors import ModelError
from edgeser.incremental import (
    META_MODEL_SHA256,
    STREAM_SUFFIX,
    IncrementalGraph,
    IncrementalScorer,
)
from edgeser.model import Model, _open_session, load
from edgeser.scoring import WindowScorer
from edgeser.vad import EnergyVad

WINDOW_S = 3.0
TOLERANCE = 1e-3  # the bound; fp32 agreement is ~1e-6


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test (the machine is shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_student(preset: str = "wav2small-stream") -> Wav2Small:
    """A seeded random student, streamable by default (BatchNorm statistics randomised too)."""
    return students.random_student(preset)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonic voice with a syllable envelope, loudness changes and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * (0.3 + 0.7 * (t % 5 < 3.5))
    return (0.2 * voice * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def exported_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The window model of a random streamable student, with its ``.stream.onnx`` beside it."""
    folder = tmp_path_factory.mktemp("stream")
    student = random_student()
    info = ModelInfo(16_000, LABELS, WINDOW_S, 0.25, "stream-test", "none (random)", {})
    graph = export_onnx(student)
    set_metadata(graph, info.to_metadata())
    onnx.save(graph, folder / "student.onnx")
    export_streaming(student, info, folder / "student.onnx")
    return folder / "student.onnx"


@pytest.fixture(scope="module")
def exported(exported_path: Path, backend: str) -> tuple[Model, IncrementalGraph]:
    """The window model and its incremental graph, loaded as the runtime loads them."""
    model = load(exported_path, backend=backend)
    incremental = IncrementalGraph.beside(model.path, lambda p: _open_session(p, 1, backend))
    assert incremental is not None
    return model, incremental


def scorers(model: Model, graph: IncrementalGraph, hop_s: float, vad: EnergyVad | None = None):
    """(re-scoring, incremental) scorers of the same windows. Re-scoring is built directly:
    ``model.scorer`` would hand out the incremental one, as the model has the graph beside it."""
    rescoring = WindowScorer(model.score_window, WINDOW_S, hop_s, model.info.min_samples, vad)
    assert isinstance(model.scorer(WINDOW_S, hop_s, vad=vad), IncrementalScorer)
    incremental = IncrementalScorer(
        graph, model.score_window, WINDOW_S, hop_s, model.info.min_samples, vad
    )
    return rescoring, incremental


def assert_same_readings(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    spans = [[(r.start_s, r.end_s, r.voiced) for r in readings] for readings in (a, b)]
    assert spans[0] == spans[1]
    voiced = [i for i, r in enumerate(a) if r.voiced]
    adv_a = np.array([a[i].adv for i in voiced])
    adv_b = np.array([b[i].adv for i in voiced])
    assert np.isfinite(adv_a).all() and np.isfinite(adv_b).all()
    np.testing.assert_allclose(adv_b, adv_a, atol=TOLERANCE, rtol=0)
    emb_a = np.array([a[i].embedding for i in voiced])
    emb_b = np.array([b[i].embedding for i in voiced])
    np.testing.assert_allclose(emb_b, emb_a, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("hop_s", [0.1, 0.25, 0.4, 1.0])
def test_incremental_equals_rescoring_across_hops(exported, hop_s: float) -> None:
    model, graph = exported
    audio = speech_like(9.0)
    rescoring, incremental = scorers(model, graph, hop_s)
    # pushed in odd block sizes, as a sound card delivers them
    blocks = np.array_split(audio, 37)
    a = [r for block in blocks for r in rescoring.push(block)] + rescoring.flush()
    b = [r for block in blocks for r in incremental.push(block)] + incremental.flush()
    assert_same_readings(a, b)


def test_no_drift_after_a_long_run(exported) -> None:
    """Two minutes of hops (the state turns over 40 times): the last windows still equal
    scoring them afresh. (The state is a function of the last window only: nothing sums up.)"""
    model, graph = exported
    audio = speech_like(120.0, seed=3)
    _, incremental = scorers(model, graph, 0.25)
    readings = incremental.push(audio)
    assert len(readings) == (audio.size - 48_000) // 4_000 + 1
    for reading in readings[-3:]:
        start = round(reading.start_s * SAMPLE_RATE)
        fresh = model.score_window(audio[start : start + 48_000])
        np.testing.assert_allclose(reading.adv, fresh.adv, atol=TOLERANCE, rtol=0)


def test_reset_and_voice_gate_match_rescoring(exported) -> None:
    """Speech, a reset after a gap (new utterance at 20 s), silence windows gated alike."""
    model, graph = exported
    vad = EnergyVad()
    first, second = speech_like(5.0, seed=1), speech_like(8.0, seed=2)
    second[: 4 * SAMPLE_RATE] = 0.0  # starts with silence: unvoiced windows
    results = []
    for scorer in scorers(model, graph, 0.25, vad):
        out = scorer.push(first)
        scorer.reset(start_s=20.0)
        out += scorer.push(second) + scorer.flush()
        results.append(out)
    assert_same_readings(*results)
    assert any(not r.voiced for r in results[1]) and any(r.voiced for r in results[1])
    assert min(r.start_s for r in results[1] if r.start_s >= 20.0) == 20.0


def test_stream_with_the_incremental_scorer_gives_the_same_readings(exported, monkeypatch) -> None:
    """The runtime hook in effect (``Model.scorer`` hands out the incremental scorer): a real
    ``Stream`` over 48 kHz blocks gives the readings of the re-scoring ``Stream``."""
    import edgeser

    model, graph = exported
    audio_48k = np.repeat(speech_like(6.0, seed=5), 3)  # 48 kHz, resampled by the Stream
    blocks = np.array_split(audio_48k, 50)
    results = []
    for incremental in (False, True):
        if incremental:
            monkeypatch.setattr(
                model,
                "scorer",
                lambda window, hop, vad: IncrementalScorer(
                    graph, model.score_window, window, hop, model.info.min_samples, vad
                ),
            )
        with edgeser.Stream(
            model, edgeser.BlockSource(blocks, 48_000), window=WINDOW_S, hop=0.25
        ) as stream:
            results.append(list(stream))
    assert isinstance(model.scorer(WINDOW_S, 0.25, None), IncrementalScorer)
    assert_same_readings(*results)


def test_skipped_windows_resume_exactly(exported) -> None:
    """A live stream that fell behind skips windows; the next ones are still exact."""
    model, graph = exported
    audio = speech_like(12.0, seed=4)
    head, skipped, rest = np.split(audio, [4 * SAMPLE_RATE, 7 * SAMPLE_RATE])
    results = []
    for scorer in scorers(model, graph, 0.25):
        out = scorer.push(head)
        assert scorer.skip(skipped) == 12
        results.append(out + scorer.push(rest))
    assert_same_readings(*results)


def fed_to_the_graph(readings: list, window: int) -> int:
    """Samples the graph hears when it runs only for the voiced windows of ``readings`` (hop
    grid): what is new since the last of them, at most a whole window (afresh from zeros)."""
    heard = fed = 0
    for r in readings:
        end = round(r.end_s * SAMPLE_RATE)
        if r.voiced:
            fed += min(end - heard, window)
            heard = end
    return fed


@pytest.mark.parametrize("hop_s", [0.25, 1.0])
def test_the_graph_runs_only_for_the_windows_it_scores(exported, monkeypatch, hop_s) -> None:
    """Unvoiced windows (a live microphone's usual quiet) cost no graph step, as they cost no
    model run when re-scoring; the voiced windows after them are still exact: the graph
    catches up on what it has not heard, or starts afresh from zeros after a whole window."""
    model, graph = exported
    quiet = 0.001 * np.random.default_rng(8).standard_normal(8 * SAMPLE_RATE)  # -60 dBFS
    short_gap, long_gap = quiet[: 4 * SAMPLE_RATE], quiet  # shorter / longer than a window
    speech = [speech_like(seconds, seed) for seed, seconds in enumerate((3.0, 3.0, 4.0))]
    audio = np.concatenate([speech[0], short_gap, speech[1], long_gap, speech[2]])
    audio = audio.astype(np.float32)
    steps: list[int] = []
    step = graph.step

    def counted(chunk: np.ndarray, state: dict) -> tuple:
        steps.append(chunk.size)
        return step(chunk, state)

    monkeypatch.setattr(graph, "step", counted)
    rescoring, incremental = scorers(model, graph, hop_s, EnergyVad())
    a = rescoring.push(audio)
    b = incremental.push(audio)
    assert_same_readings(a, b)
    assert any(not r.voiced for r in b) and b[-1].voiced
    assert sum(steps) == fed_to_the_graph(b, round(WINDOW_S * SAMPLE_RATE)) < audio.size


def test_nan_from_the_graph_is_a_model_error_naming_it_and_the_window(exported, monkeypatch):
    model, graph = exported
    step = graph.step

    def broken(chunk: np.ndarray, state: dict) -> tuple:
        (adv, embedding, categories), new_state = step(chunk, state)
        return (np.full_like(adv, np.nan), embedding, categories), new_state

    monkeypatch.setattr(graph, "step", broken)
    _, incremental = scorers(model, graph, 0.25)
    with pytest.raises(ModelError, match=r"student\.stream\.onnx gave NaN .* 0\.000-3\.000 s"):
        incremental.push(speech_like(3.0))


def test_incremental_step_matches_window_in_torch(one_thread: None) -> None:
    """The exported module itself, before ONNX: exact to float rounding."""
    student = random_student()
    step = StreamingStep(student, 48_000)
    audio = torch.from_numpy(speech_like(4.0))[None]
    state = step.initial_state()
    with torch.no_grad():
        for k in range(1, 16):
            adv, embedding, *state = step(audio[:, (k - 1) * 4_000 : k * 4_000], *state)
            if k * 4_000 >= 48_000:
                ref_adv, ref_embedding = student(audio[:, k * 4_000 - 48_000 : k * 4_000])
                torch.testing.assert_close(adv, ref_adv, atol=1e-5, rtol=0)
                torch.testing.assert_close(embedding, ref_embedding, atol=1e-5, rtol=0)


def test_edge_margin_is_the_reach_of_the_zero_padding(one_thread: None) -> None:
    """Pooled frames within ``edge_margin`` of an input edge change with what lies beyond it;
    the next ones do not: the margin the incremental graph recomputes is exactly enough."""
    student = random_student()
    margin = student.config.edge_margin
    features = torch.randn(1, 1, 26, 200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cut = student.frame_map(features[..., 40:])  # starts 20 pooled frames in
        whole = student.frame_map(features)[..., 20:]
    differs = (cut - whole).abs().amax(dim=1)[0] > 0
    assert differs[:margin].all() and not differs[margin:-margin].any()


def test_frame_normalisation_is_gain_invariant(one_thread: None) -> None:
    """18 dB apart, same readings: what per-utterance normalisation gave the default student
    (down to the log-mel floor, ~70 dB below full scale)."""
    student = random_student()
    x = torch.from_numpy(speech_like(3.0))[None]
    with torch.no_grad():
        quiet, loud = student(x * 0.5)[0], student(x * 4.0)[0]
    torch.testing.assert_close(quiet, loud, atol=1e-4, rtol=0)


def test_default_student_cannot_be_made_incremental() -> None:
    with pytest.raises(ExportError, match="normalization='frame'"):
        StreamingStep(random_student("wav2small"), 48_000)


def test_graph_refuses_other_models_and_unsupported_windows(exported, backend, tmp_path) -> None:
    model, graph = exported
    assert graph.spec.supports(3.0, 0.25) and graph.spec.supports(3.0, 0.1)
    assert not graph.spec.supports(2.0, 0.25)  # another window
    assert not graph.spec.supports(3.0, 0.2501)  # hop off the 5 ms grid
    with pytest.raises(ValueError, match="cannot score"):
        IncrementalScorer(graph, model.score_window, 3.0, 0.2501, model.info.min_samples)
    other = tmp_path / "other.onnx"
    other.write_bytes(model.path.read_bytes() + b"\0")
    (tmp_path / "other.stream.onnx").write_bytes(graph.path.read_bytes())
    with pytest.raises(ModelError, match="another model"):
        IncrementalGraph.beside(other, lambda p: _open_session(p, 1, backend))
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(model.path.read_bytes())
    assert IncrementalGraph.beside(lonely, lambda p: _open_session(p, 1, backend)) is None


def test_graph_with_a_non_float32_output_is_refused(exported, backend, tmp_path) -> None:
    _, graph = exported
    proto = onnx.load(graph.path)
    adv = next(o for o in proto.graph.output if o.name == "adv")
    for node in proto.graph.node:
        node.output[:] = ["adv_float" if name == "adv" else name for name in node.output]
    proto.graph.node.append(
        onnx.helper.make_node("Cast", ["adv_float"], ["adv"], to=onnx.TensorProto.INT64)
    )
    adv.type.tensor_type.elem_type = onnx.TensorProto.INT64
    path = tmp_path / "int.stream.onnx"
    onnx.save(proto, path)
    with pytest.raises(ModelError, match=r"output 'adv' is tensor\(int64\)"):
        IncrementalGraph(_open_session(path, 1, backend), path, graph.spec)


def test_export_writes_the_streaming_graph_and_load_uses_it(tmp_path: Path) -> None:
    """edgeser-export of a streamable student writes ``.stream.onnx`` beside the model, and
    ``edgeser.load`` (either backend) hands Streams the incremental scorer, with the readings
    of re-scoring; the numpy backend's readings equal onnxruntime's."""
    from edgeser.distill.student import save_student
    from edgeser.export.config import ExportConfig
    from edgeser.export.pipeline import run_export

    checkpoint = tmp_path / "stream.pt"
    save_student(checkpoint, random_student())
    [exported] = run_export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "out"), print)
    assert exported.path.with_suffix(".stream.onnx").is_file()
    audio = np.random.default_rng(0).normal(0, 0.1, 5 * SAMPLE_RATE).astype(np.float32)
    readings = {}
    for backend in BACKENDS:
        model = load(exported.path, backend=backend)
        scorer = model.scorer(3.0, 0.25, vad=None)
        assert isinstance(scorer, IncrementalScorer)
        rescored = WindowScorer(model.score_window, 3.0, 0.25, model.info.min_samples, None)
        fast, slow = scorer.push(audio), rescored.push(audio)
        assert len(fast) == len(slow) == 9
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a.adv, b.adv, atol=1e-3)
        readings[backend] = np.array([r.adv for r in fast + slow])
    np.testing.assert_allclose(readings["numpy"], readings["onnxruntime"], atol=1e-4, rtol=0)


def test_the_benchmarks_rescoring_workload_never_runs_the_streaming_graph(exported) -> None:
    """``benchmarks.streaming.rescoring`` re-scores windows even beside a streaming graph,
    which ``Model.scorer`` would use (the per-hop benchmark compares the two)."""
    from benchmarks.streaming import rescoring

    model, _ = exported
    assert isinstance(model.scorer(3.0, 0.25, vad=None), IncrementalScorer)
    scorer = rescoring(model, 3.0, 0.25)
    assert not isinstance(scorer, IncrementalScorer)
    audio = speech_like(4.0)
    assert_same_readings(scorer.push(audio), model.scorer(3.0, 0.25, vad=None).push(audio))


def rebind(model: Path) -> None:
    """Bind the streaming graph beside ``model`` to it (its ``model_sha256``)."""
    graph = onnx.load(model.with_suffix(STREAM_SUFFIX))
    set_metadata(graph, {META_MODEL_SHA256: hashlib.sha256(model.read_bytes()).hexdigest()})
    onnx.save(graph, model.with_suffix(STREAM_SUFFIX))


def write_with_head(
    window_model: Path, out: Path, stream_labels: tuple[str, ...] | None = CATEGORY_LABELS
) -> Path:
    """The window model at ``window_model`` and its streaming graph, both with the same
    seeded categorical head over their embedding (the graph's declaring ``stream_labels``;
    None: the graph without the head), written as ``out`` and its ``.stream.onnx``."""
    onnx.save(add_category_head(onnx.load(window_model)), out)
    graph = onnx.load(window_model.with_suffix(STREAM_SUFFIX))
    if stream_labels is not None:
        graph = add_category_head(graph, stream_labels)
    onnx.save(graph, out.with_suffix(STREAM_SUFFIX))
    rebind(out)
    return out


def test_the_incremental_graph_carries_the_categorical_head(exported_path, backend, tmp_path):
    """A model whose streaming graph has the head: incremental readings have the
    categories of re-scoring."""
    model = load(write_with_head(exported_path, tmp_path / "head.onnx"), backend=backend)
    assert model.incremental is not None and model.incremental.categories == CATEGORY_LABELS
    rescoring, incremental = scorers(model, model.incremental, 0.25)
    audio = speech_like(6.0)
    a, b = rescoring.push(audio), incremental.push(audio)
    assert_same_readings(a, b)
    assert all(list(r.categories) == list(CATEGORY_LABELS) for r in a + b)
    np.testing.assert_allclose(
        [list(r.categories.values()) for r in b],
        [list(r.categories.values()) for r in a],
        atol=TOLERANCE,
        rtol=0,
    )
    assert [r.emotion for r in b] == [r.emotion for r in a]


@pytest.mark.parametrize(
    ("model_head", "stream_labels", "message"),
    [
        (True, None, "unlike its window model's head: .* no output 'categories'"),
        (True, ("a", "b", "c", "d"), r"edgeser\.categories \['a', 'b', 'c', 'd'\] are not"),
        (False, CATEGORY_LABELS, "unlike its window model's head: output 'categories' has no"),
    ],
)
def test_a_streaming_graph_must_match_the_models_head(
    exported_path, backend, tmp_path, model_head, stream_labels, message
):
    path = write_with_head(exported_path, tmp_path / "m.onnx", stream_labels)
    if not model_head:  # the window model as exported beside the graph with the head
        path.write_bytes(exported_path.read_bytes())
        rebind(path)
    with pytest.raises(ModelError, match=rf"m\.stream\.onnx: {message}"):
        load(path, backend=backend)
