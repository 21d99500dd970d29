"""Streaming-native scoring: a model's incremental graph updates the window at every hop
instead of re-scoring it whole (the silero-vad pattern: new audio + state in, readings +
state out).

The graph lives beside the window model as ``<stem>.stream.onnx`` (``edgeser.export.streaming``
writes it for students with frame normalisation). Its contract:

- Inputs: ``chunk`` [B, n] float32 16 kHz, n a multiple of ``edgeser.stream.chunk_multiple``
  samples and at most ``edgeser.stream.max_chunk``; and the state tensors ``STATE_NAMES``.
- Outputs: ``adv`` [B, 3] and ``embedding`` [B, D] of the window that ends with this chunk
  (the last ``edgeser.stream.window_samples`` samples), then ``new_<name>`` for each state;
  and ``categories`` [B, K] if and only if the window model has a categorical head (see
  ``edgeser.contract``; an ``edgeser.categories`` key, if the graph has one, names the same).
- State: ``tail`` (the samples of the next spectrogram frame already heard), ``features`` and
  ``energy`` (the window's per-frame conv input and log energy), ``logits`` and ``values``
  (per pooled frame attention inputs). Its sizes are the graph's static input dimensions
  (about 0.9 MB per stream for a 3 s window). It is a pure function of the last window of
  audio: nothing accumulates, so nothing drifts, however long the stream.
- Start and reset: the state starts as zeros, as if the stream had been preceded by silence;
  readings equal window re-scoring from the first full window on. Reset (a new utterance after
  a gap) = zeros again.
- Padding: conv outputs within ``edgeser.stream.edge_margin`` pooled frames of either window
  edge feel the window's zero padding; the graph recomputes exactly those and caches the rest.
- ``edgeser.stream.model_sha256`` names the window model file the graph belongs to; a graph
  beside another model is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Session
from .contract import (
    MAX_WINDOW_S,
    META_CATEGORIES,
    OUTPUT_ADV,
    OUTPUT_CATEGORIES,
    OUTPUT_EMBEDDING,
    SAMPLE_RATE,
    check_categories_output,
    check_float32_outputs,
    parse_categories,
)
from .errors import ModelError
from .levels import at_model_level
from .readings import Reading, scored
from .scoring import ScoreWindow, WindowScorer
from .vad import GateSpec

STREAM_SUFFIX = ".stream.onnx"
CHUNK_NAME = "chunk"
STATE_NAMES = ("tail", "features", "energy", "logits", "values")
NEW_STATE_NAMES = tuple(f"new_{name}" for name in STATE_NAMES)
META_WINDOW = "edgeser.stream.window_samples"
META_CHUNK_MULTIPLE = "edgeser.stream.chunk_multiple"
META_MAX_CHUNK = "edgeser.stream.max_chunk"
META_EDGE_MARGIN = "edgeser.stream.edge_margin"
META_MODEL_SHA256 = "edgeser.stream.model_sha256"


@dataclass(frozen=True)
class StreamSpec:
    """What an incremental graph accepts: its window, chunk granularity and largest chunk."""

    window: int
    chunk_multiple: int
    max_chunk: int
    edge_margin: int
    model_sha256: str

    @classmethod
    def parse(cls, meta: dict[str, str]) -> StreamSpec:
        """From ``metadata_props``; ValueError naming what is missing or malformed."""
        keys = (META_WINDOW, META_CHUNK_MULTIPLE, META_MAX_CHUNK, META_EDGE_MARGIN)
        missing = [k for k in (*keys, META_MODEL_SHA256) if k not in meta]
        if missing:
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        try:
            window, multiple, max_chunk, margin = (int(meta[k]) for k in keys)
        except ValueError as exc:
            raise ValueError(f"malformed streaming metadata: {exc}") from None
        if not 0 < window <= MAX_WINDOW_S * SAMPLE_RATE:
            largest = round(MAX_WINDOW_S * SAMPLE_RATE)
            raise ValueError(f"{META_WINDOW} {window} is not in [1, {largest}]")
        if not 0 < multiple <= max_chunk < window or max_chunk % multiple or window % multiple:
            raise ValueError(f"chunks {multiple}..{max_chunk} samples do not fit window {window}")
        if not 0 <= margin < window:
            raise ValueError(f"{META_EDGE_MARGIN} {margin} is not in [0, window {window})")
        return cls(window, multiple, max_chunk, margin, meta[META_MODEL_SHA256])

    def supports(self, window_s: float, hop_s: float) -> bool:
        """Whether windows of ``window_s`` every ``hop_s`` can be scored incrementally."""
        window, hop = round(window_s * SAMPLE_RATE), round(hop_s * SAMPLE_RATE)
        fits = 0 < hop <= self.max_chunk and hop % self.chunk_multiple == 0
        return fits and window == self.window

    def chunks(self, n: int) -> list[int]:
        """Split ``n`` new samples (a multiple of ``chunk_multiple``) into allowed chunks."""
        full, rest = divmod(n, self.max_chunk)
        return ([rest] if rest else []) + [self.max_chunk] * full


Heads = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # adv, embedding, categories


class IncrementalGraph:
    """An incremental graph in an onnxruntime or numpy session, with its spec and state shapes,
    and the category labels of its window model (``()``: no categorical head)."""

    def __init__(
        self, session: Session, path: Path, spec: StreamSpec, categories: tuple[str, ...] = ()
    ) -> None:
        self.session = session
        self.path = path
        self.spec = spec
        self.categories = categories
        inputs = {i.name: i for i in session.get_inputs()}
        expected = {CHUNK_NAME, *STATE_NAMES}
        if set(inputs) != expected:
            raise ModelError(f"{path}: inputs are {sorted(inputs)}, expected {sorted(expected)}")
        self.state_shapes = {name: list(inputs[name].shape[1:]) for name in STATE_NAMES}
        if not all(isinstance(d, int) for s in self.state_shapes.values() for d in s):
            raise ModelError(f"{path}: state tensors need static sizes, got {self.state_shapes}")
        self._check_categories()
        self._heads = [OUTPUT_ADV, OUTPUT_EMBEDDING, *([OUTPUT_CATEGORIES] if categories else [])]
        self._outputs = [*self._heads, *NEW_STATE_NAMES]
        try:
            check_float32_outputs(session.get_outputs(), self._outputs)
        except ValueError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def _check_categories(self) -> None:
        """ModelError unless the graph has a ``categories`` output iff its window model has a
        categorical head, of the same labels."""
        head = next((o for o in self.session.get_outputs() if o.name == OUTPUT_CATEGORIES), None)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            check_categories_output(
                self.categories, None if head is None else (head.type, list(head.shape))
            )
            declared = parse_categories(meta.get(META_CATEGORIES))
        except ValueError as exc:
            raise ModelError(f"{self.path}: unlike its window model's head: {exc}") from None
        if META_CATEGORIES in meta and declared != self.categories:
            raise ModelError(
                f"{self.path}: {META_CATEGORIES} {list(declared)} are not its window model's "
                f"{list(self.categories)}"
            )

    @classmethod
    def beside(
        cls,
        model_path: Path,
        open_session: Callable[[Path], Session],
        categories: tuple[str, ...] = (),
    ) -> IncrementalGraph | None:
        """The graph at ``<stem>.stream.onnx`` beside ``model_path`` (whose categorical head
        has the labels ``categories``), or None if there is none. ModelError when it exists but
        is broken or belongs to another model file."""
        path = model_path.with_suffix(STREAM_SUFFIX)
        if not path.is_file():
            return None
        session = open_session(path)
        try:
            spec = StreamSpec.parse(session.get_modelmeta().custom_metadata_map)
        except ValueError as exc:
            raise ModelError(f"{path}: not an edgeser streaming graph: {exc}") from None
        if spec.model_sha256 != hashlib.sha256(model_path.read_bytes()).hexdigest():
            raise ModelError(f"{path}: belongs to another model than {model_path.name}")
        return cls(session, path, spec, categories)

    @property
    def state_floats(self) -> int:
        """Floats of state per stream."""
        return sum(int(np.prod(s)) for s in self.state_shapes.values())

    def initial_state(self) -> dict[str, np.ndarray]:
        """The state of a stream preceded by silence (all zeros), batch 1."""
        return {n: np.zeros([1, *s], dtype=np.float32) for n, s in self.state_shapes.items()}

    def step(
        self, chunk: np.ndarray, state: dict[str, np.ndarray]
    ) -> tuple[Heads, dict[str, np.ndarray]]:
        """Advance by one chunk [n]: ((adv [3], embedding [D], categories [K] or None),
        new state)."""
        feeds = {CHUNK_NAME: chunk[np.newaxis, :].astype(np.float32, copy=False), **state}
        try:
            outputs = self.session.run(self._outputs, feeds)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"{self.path.name} failed on a {chunk.size}-sample chunk: {exc}"
            ) from None
        n = len(self._heads)
        adv, embedding, *probabilities = (row[0] for row in outputs[:n])
        new_state = dict(zip(STATE_NAMES, outputs[n:], strict=True))
        return (adv, embedding, probabilities[0] if probabilities else None), new_state


class IncrementalScorer(WindowScorer):
    """A ``Scorer`` that advances an incremental graph by each hop instead of re-scoring the
    window: the same windows, VAD gating and readings as ``WindowScorer``, and, like it, no
    model run for an unvoiced window. The tail window at ``flush`` (off the hop grid) is
    re-scored whole with ``score_window``."""

    def __init__(
        self,
        graph: IncrementalGraph,
        score_window: ScoreWindow,
        window_s: float,
        hop_s: float,
        min_samples: int,
        vad: GateSpec = None,
    ) -> None:
        if not graph.spec.supports(window_s, hop_s):
            raise ValueError(
                f"{graph.path.name} cannot score {window_s} s windows every {hop_s} s "
                f"(window {graph.spec.window} samples, hops multiple of "
                f"{graph.spec.chunk_multiple} up to {graph.spec.max_chunk})"
            )
        self._graph = graph
        super().__init__(score_window, window_s, hop_s, min_samples, vad)
        self.reset()

    def push(self, samples: np.ndarray) -> list[Reading]:
        """Add samples; advance the graph and return the readings of completed windows."""
        self.heard_samples += samples.size
        return [self._advance(start, window) for start, window in self._windows.push(samples)]

    def reset(self, start_s: float = 0.0) -> None:
        """Forget all audio: zero state, as at the start of a stream."""
        super().reset(start_s)
        self._state = self._graph.initial_state()
        self._heard = 0  # samples fed to the graph since the reset

    def _advance(self, start: int, window: np.ndarray) -> Reading:
        """The reading of ``window``: unvoiced, or re-scored whole when outside the model's
        level range, without running the graph (as re-scoring runs no model for an unvoiced
        window); else from the graph, brought up to the window's end (``_catch_up``)."""
        start_s = self._start_s + start / SAMPLE_RATE
        end_s = start_s + window.size / SAMPLE_RATE
        if not self._gate(start, window):
            return Reading.unvoiced(start_s, end_s)
        if at_model_level(window) is not window:  # outside the level range: re-score it scaled
            return self._score_window(window, start_s)
        heads = self._catch_up(start, window)
        return scored(self._graph.path.name, start_s, end_s, *heads, self._graph.categories)

    def _catch_up(self, start: int, window: np.ndarray) -> Heads:
        """Feed the samples of ``window`` the graph has not heard: (adv, embedding,
        categories). When more than a window is new (windows skipped, or not scored by the
        graph), the state is a function of the last window only, so starting afresh from zeros
        with this window is exact."""
        new = start + window.size - self._heard
        if new > window.size:
            self._state = self._graph.initial_state()
            new = window.size
        offset = window.size - new
        for size in self._graph.spec.chunks(new):
            heads, self._state = self._graph.step(window[offset : offset + size], self._state)
            offset += size
        self._heard = start + window.size
        return heads
