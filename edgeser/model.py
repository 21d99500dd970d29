"""Load an edgeser ONNX model (checked against the contract) and score clips and files with it."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import limits
from .audio import (
    StreamingResampler,
    as_array,
    as_mono_float32,
    as_path,
    check_rate,
    pcm_scale,
    read_blocks,
    require_scorable,
    samples_first,
    to_mono_float32,
)
from .backends import ONNXRUNTIME, Session, resolve_backend
from .contract import (
    FLOAT32_TYPE,
    INPUT_NAME,
    OUTPUT_ADV,
    OUTPUT_CATEGORIES,
    OUTPUT_EMBEDDING,
    SAMPLE_RATE,
    ModelInfo,
    check_categories_output,
    check_float32_outputs,
    parse_metadata,
)
from .errors import AudioError, AudioFileError, ConfigError, ModelError
from .incremental import IncrementalGraph, IncrementalScorer
from .levels import at_model_level
from .numpy_backend import NumpySession
from .onnx_reader import check_model_file
from .onnxruntime_build import without_schema_noise
from .readings import FileScore, Reading, aggregate, not_probabilities, scored
from .scoring import Scorer, WindowScorer
from .vad import GateSpec, NoiseFloorVad

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.onnx"
DEFAULT_VAD = NoiseFloorVad()
# ``predict`` scores a clip of up to this many model windows whole; a longer one window by
# window (its memory then does not grow with the clip), like ``score_file`` without a gate.
WHOLE_CLIP_WINDOWS = 4


class Model:
    """An edgeser model in an onnxruntime CPU session (or a numpy one, ``backend``):
    ``predict`` a clip, ``score_file`` a file, or hand its ``scorer`` to a ``Stream``.
    Build it with ``edgeser.load``."""

    def __init__(self, session: Session, path: Path, info: ModelInfo) -> None:
        self._session = session
        self.backend: str = getattr(session, "backend", ONNXRUNTIME)
        self.path = path
        self.info = info
        # The streaming-native graph beside the model file, if it ships one (``load`` sets it).
        self.incremental: IncrementalGraph | None = None
        outputs = {o.name: o for o in session.get_outputs()}
        self.embedding_size: int | None = None
        self._output_names = [OUTPUT_ADV]
        if OUTPUT_EMBEDDING in outputs:
            self._output_names.append(OUTPUT_EMBEDDING)
            size = outputs[OUTPUT_EMBEDDING].shape[1]
            self.embedding_size = size if isinstance(size, int) else None
        if OUTPUT_CATEGORIES in outputs:
            self._output_names.append(OUTPUT_CATEGORIES)

    @property
    def categories(self) -> tuple[str, ...]:
        """The labels of the model's categorical head, in output order; () without one."""
        return self.info.categories

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, version={self.info.model_version!r})"

    @property
    def signature(self) -> dict[str, str]:
        """The graph's inputs and outputs as ``name: type shape``, for ``edgeser info``."""
        nodes = [*self._session.get_inputs(), *self._session.get_outputs()]
        return {n.name: f"{n.type} {list(n.shape)}" for n in nodes}

    def predict(self, signal: np.ndarray, sampling_rate: int) -> Reading:
        """Score one clip (no voice gating): A/D/V, and the embedding and the category
        probabilities if the model has them.
        Any rate, int or float PCM, mono or stereo. A clip of up to ``WHOLE_CLIP_WINDOWS``
        model windows is scored whole; a longer one window by window (the model's window and
        hop), aggregated like ``score_file(..., vad=None)``. Raises AudioError for audio that
        is empty, shorter than the model's minimum, non-finite, of a bad dtype, or that
        carries no signal (digital silence, DC only: see ``edgeser.levels``)."""
        rate = check_rate(sampling_rate)
        x = samples_first(as_array(signal))
        if x.shape[0] <= WHOLE_CLIP_WINDOWS * self.info.window_s * rate:
            clip = to_mono_float32(x, rate)
            require_scorable(clip, self.info.min_samples)
            return self.score_window(clip)
        pcm = pcm_scale(x) if x.dtype.kind in "iu" else None
        blocks = (x[i : i + rate] for i in range(0, x.shape[0], rate))  # 1 s blocks
        windows, n_samples = self._score_blocks(self.scorer(vad=None), rate, blocks, pcm)
        return aggregate(windows, 0.0, n_samples / SAMPLE_RATE)

    def score_file(
        self,
        path: str | os.PathLike[str],
        window: float | None = None,
        hop: float | None = None,
        vad: GateSpec = DEFAULT_VAD,
    ) -> FileScore:
        """Score a file window by window (window/hop in seconds; default: the model's).

        Windows end at window, window + hop, ...; a last window aligned to the end of the file
        covers any tail, and a file shorter than one window is one window (scored exactly like
        ``predict`` on it). The file is read in blocks, so its length does not cost memory.
        The aggregate is the mean over voiced windows (see ``readings.aggregate``). ``vad``: a
        gate, its name ("noise-floor", "energy"), True (the default gate) or False/None (none);
        anything else is a ConfigError. A file too short to score, or without any window that
        carries signal, is an AudioFileError.
        """
        path = as_path(path)
        scorer = self.scorer(window, hop, vad)
        rate, blocks = read_blocks(path)
        try:
            windows, n_samples = self._score_blocks(scorer, rate, blocks)
        except AudioFileError:
            raise
        except AudioError as exc:
            raise AudioFileError(f"{path}: {exc}") from None
        duration = n_samples / SAMPLE_RATE
        return FileScore(path, duration, windows, aggregate(windows, 0.0, duration))

    def _score_blocks(
        self,
        scorer: Scorer,
        rate: int,
        blocks: Iterable[np.ndarray],
        pcm: tuple[float, float] | None = None,
    ) -> tuple[list[Reading], int]:
        """Push blocks ([frames] or [frames, channels] at ``rate``) through the resampler
        into ``scorer``: the readings and the number of 16 kHz samples. AudioError when the
        audio as a whole cannot be scored (``Scorer.unscorable``)."""
        resampler = StreamingResampler(rate)
        windows: list[Reading] = []
        n_samples = 0
        for block in blocks:
            x = resampler.process(as_mono_float32(block, channels_last=True, pcm=pcm))
            n_samples += x.size
            windows += scorer.push(x)
        tail = resampler.flush()
        n_samples += tail.size
        windows += scorer.push(tail) + scorer.flush()
        reason = scorer.unscorable()
        if reason is not None:
            raise AudioError(reason)
        return windows, n_samples

    def scorer(
        self,
        window: float | None = None,
        hop: float | None = None,
        vad: GateSpec = DEFAULT_VAD,
    ) -> Scorer:
        """A fresh window scorer (window/hop in seconds; default: the model's), for a Stream:
        incremental when the model ships a streaming graph that supports window and hop,
        else re-scoring each window."""
        window, hop = self.window_hop(window, hop)
        if self.incremental is not None and self.incremental.spec.supports(window, hop):
            return IncrementalScorer(
                self.incremental, self.score_window, window, hop, self.info.min_samples, vad
            )
        return WindowScorer(self.score_window, window, hop, self.info.min_samples, vad)

    def window_hop(self, window: float | None, hop: float | None) -> tuple[float, float]:
        """Window and hop in seconds (None: the model's), checked: ConfigError if either is not
        a finite number in its range (``edgeser.limits``), the window is shorter than the
        model's minimum input or the hop is longer than the window."""
        window = self.info.window_s if window is None else window
        hop = self.info.hop_s if hop is None else hop
        window = float(limits.WINDOW_S.check("window", window))
        hop = float(limits.HOP_S.check("hop", hop))
        if window * SAMPLE_RATE < self.info.min_samples:
            raise ConfigError(
                f"window {window} s is shorter than the model's minimum "
                f"{self.info.min_samples / SAMPLE_RATE} s"
            )
        if not 0 < hop <= window:
            raise ConfigError(f"hop {hop} s must be > 0 and <= the window ({window} s)")
        return window, hop

    def _self_test(self) -> None:
        """Score a short tone once, so that a graph that cannot run or gives the wrong output
        shapes fails at load time with a ModelError rather than mid-stream."""
        n = self.info.min_samples
        tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
        outputs = self._run(tone)
        if not all(np.isfinite(o).all() for o in outputs.values()):
            raise ModelError(f"{self.path}: the graph gives NaN or infinite output on a test tone")
        adv, embedding = outputs[OUTPUT_ADV], outputs.get(OUTPUT_EMBEDDING)
        if adv.shape != (1, 3):
            raise ModelError(f"{self.path}: {OUTPUT_ADV!r} came out {adv.shape}, not (1, 3)")
        if embedding is not None and (embedding.ndim != 2 or embedding.shape[0] != 1):
            raise ModelError(f"{self.path}: {OUTPUT_EMBEDDING!r} came out {embedding.shape}")
        probabilities = outputs.get(OUTPUT_CATEGORIES)
        if probabilities is None:
            return
        if probabilities.shape != (1, len(self.categories)):
            raise ModelError(
                f"{self.path}: {OUTPUT_CATEGORIES!r} came out {probabilities.shape}, not "
                f"(1, {len(self.categories)}) for the categories {list(self.categories)}"
            )
        problem = not_probabilities(probabilities[0])
        if problem is not None:
            raise ModelError(f"{self.path}: {OUTPUT_CATEGORIES!r} on a test tone {problem}")

    def _run(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for one window by name; onnxruntime failures become a
        ModelError."""
        batch = np.ascontiguousarray(samples, dtype=np.float32)[np.newaxis, :]
        try:
            outputs = self._session.run(self._output_names, {INPUT_NAME: batch})
            return dict(zip(self._output_names, outputs, strict=True))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"{self.path.name} failed on {samples.size} samples: {_first_line(exc)}"
            ) from None

    def score_window(self, samples: np.ndarray, start_s: float = 0.0) -> Reading:
        """Run the model on one 16 kHz mono float32 window, brought into the model's level
        range (``levels.at_model_level``); ModelError if the graph gives NaN or inf, or
        category probabilities that are not (``readings.scored``)."""
        outputs = self._run(at_model_level(samples))
        end_s = start_s + samples.size / SAMPLE_RATE
        rows = [outputs.get(name) for name in (OUTPUT_EMBEDDING, OUTPUT_CATEGORIES)]
        embedding, probabilities = (None if row is None else row[0] for row in rows)
        return scored(
            self.path.name,
            start_s,
            end_s,
            outputs[OUTPUT_ADV][0],
            embedding,
            probabilities,
            self.categories,
        )


def load(
    path: str | os.PathLike[str] | None = None, threads: int = 1, backend: str | None = None
) -> Model:
    """Load an edgeser ONNX model (default: the bundled one) for scoring on ``threads`` CPU
    threads (1 suits a Raspberry Pi). ``backend``: "onnxruntime", "numpy" (numpy only, no
    compiled dependency; ``threads`` is then numpy's BLAS's business), or None for
    ``$EDGESER_BACKEND`` or else onnxruntime if it imports, numpy if not (see
    ``edgeser.backends``). Raises ModelError for a missing file, a file that is not ONNX, or
    a model that does not follow the contract in ``edgeser.contract``."""
    threads = int(limits.THREADS.check("threads", threads))
    backend = resolve_backend(backend)
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise ModelError(
                "no default model is bundled with this edgeser install "
                f"({DEFAULT_MODEL} is absent); pass a model file: "
                "edgeser.load('model.onnx'), or --model model.onnx on the command line"
            )
        path = DEFAULT_MODEL
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    session = _open_session(path, threads, backend)
    info = _check_contract(session, path)
    model = Model(session, path, info)
    model._self_test()
    model.incremental = IncrementalGraph.beside(
        path, lambda p: _open_session(p, threads, backend), info.categories
    )
    return model


def _open_session(path: Path, threads: int, backend: str = ONNXRUNTIME) -> Session:
    """A numpy session, or a quiet onnxruntime CPU session with ``threads`` intra-op threads
    that do not spin between hops."""
    if backend != ONNXRUNTIME:
        return NumpySession(path)
    try:  # as the numpy backend does: a file of zeros or a cut-off download is refused at once
        check_model_file(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings on the console
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:  # no fallback: it prints an "EP Error" banner to stdout and retries the same provider
        with without_schema_noise(), contextlib.redirect_stdout(io.StringIO()):
            return ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
                enable_fallback=0,
            )
    except Exception as exc:  # onnxruntime's load errors share no useful base class
        raise ModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None


def _check_contract(session: Session, path: Path) -> ModelInfo:
    """The model's contract metadata, after checking its inputs and outputs against it."""
    try:
        info = parse_metadata(session.get_modelmeta().custom_metadata_map)
    except ValueError as exc:
        raise ModelError(f"{path}: not an edgeser model: {exc}") from None
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelError(
            f"{path}: inputs are {[i.name for i in inputs]}; the contract wants one input "
            f"{INPUT_NAME!r} [batch, samples] float32"
        )
    if inputs[0].type != FLOAT32_TYPE or len(inputs[0].shape) != 2:
        raise ModelError(
            f"{path}: input {INPUT_NAME!r} is {inputs[0].type} {inputs[0].shape}, "
            "not float32 [batch, samples]"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    if OUTPUT_ADV not in outputs:
        raise ModelError(f"{path}: no output {OUTPUT_ADV!r}; outputs are {sorted(outputs)}")
    for name in (OUTPUT_ADV, OUTPUT_EMBEDDING):
        if name in outputs and len(outputs[name].shape) != 2:
            raise ModelError(f"{path}: output {name!r} has shape {outputs[name].shape}, not 2-D")
    try:
        check_float32_outputs(outputs.values(), (OUTPUT_ADV, OUTPUT_EMBEDDING))
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None
    adv_size = outputs[OUTPUT_ADV].shape[1]
    if isinstance(adv_size, int) and adv_size != 3:
        raise ModelError(f"{path}: output {OUTPUT_ADV!r} has {adv_size} values, not 3 (A, D, V)")
    head = outputs.get(OUTPUT_CATEGORIES)
    try:
        check_categories_output(
            info.categories, None if head is None else (head.type, list(head.shape))
        )
    except ValueError as exc:
        raise ModelError(f"{path}: not an edgeser model: {exc}") from None
    return info


def _first_line(exc: Exception) -> str:
    """The first non-empty line of an exception's message (onnxruntime's run to pages)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
