"""Student -> incremental ONNX graph (``<stem>.stream.onnx``): per hop, new audio + state in,
readings + state out, equal to re-scoring the whole window (contract in
``edgeser.incremental``).

Only students with ``normalization="frame"`` can be made incremental: their conv input at a
frame depends on that frame's samples only. Per hop the graph computes the spectrogram of the
new frames only, and runs the conv stack (in one pass) on two short stretches: the window's
first ``2 * margin`` pooled frames (whose outputs feel the left zero padding) and its last
``new + 2 * margin`` (the new frames, the right padding, and the context they need). All other
pooled frames' attention logits and values come from the state. Attention pooling, loudness
features and the head(s) are recomputed over the window (cheap); a student with a categorical
head gives its ``categories`` output after ``embedding``, as the window graph does.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import onnx
import onnxscript.optimizer
import torch
from edgeser.distill.student import Wav2Small
from torch import nn

from edgeser.contract import SAMPLE_RATE, ModelInfo
from edgeser.incremental import (
    CHUNK_NAME,
    META_CHUNK_MULTIPLE,
    META_EDGE_MARGIN,
    META_MAX_CHUNK,
    META_MODEL_SHA256,
    META_WINDOW,
    NEW_STATE_NAMES,
    STATE_NAMES,
    STREAM_SUFFIX,
)

from .categories import category_metadata
from .config import ExportError
from .onnx_export import output_names, set_metadata


class StreamingStep(nn.Module):
    """One hop of ``student`` over a fixed window of ``window`` samples."""

    def __init__(self, student: Wav2Small, window: int) -> None:
        super().__init__()
        cfg = student.config
        if cfg.normalization != "frame":
            raise ExportError(
                "only students with normalization='frame' (preset wav2small-stream) can be "
                f"exported incrementally; this one uses {cfg.normalization!r}"
            )
        self.student = student.eval()
        self.frames = (window - cfg.n_fft) // cfg.hop + 1
        self.pooled = self.frames // 2
        self.tail = window - cfg.hop * self.frames  # heard samples of the next frame
        self.margin = cfg.edge_margin
        self.chunk_multiple = 2 * cfg.hop  # whole pooled frames per hop
        max_pooled = self.pooled - 2 * self.margin  # the interior from the state may be empty
        self.max_chunk = max_pooled * self.chunk_multiple
        if window % cfg.hop or self.tail % cfg.hop:  # frames of every hop on one grid
            raise ExportError(f"window {window} does not fit the STFT (hop {cfg.hop})")
        if max_pooled < 1:
            raise ExportError(f"window {window} is too short for an incremental graph")

    def forward(
        self,
        chunk: torch.Tensor,
        tail: torch.Tensor,
        features: torch.Tensor,
        energy: torch.Tensor,
        logits: torch.Tensor,
        values: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One hop: (adv, embedding, [categories,] new tail, features, energy, logits, values)."""
        s, m, p = self.student, self.margin, self.pooled
        audio = torch.cat([tail, chunk], dim=1)
        new_features, new_energy = s.features(audio)  # the chunk's frames only
        n = new_features.shape[-1]
        features = torch.cat([features[..., n:], new_features], dim=-1)
        energy = torch.cat([energy[:, n:], new_energy], dim=1)
        new = n // 2  # pooled frames
        # One conv pass over the window's first 2m pooled frames and its last new + 2m, side by
        # side: each kept output is at least m pooled frames from the seam, so it cannot tell
        # the seam from the zero padding it would see if the two ran separately.
        left = features[..., : 4 * m]
        right = features[..., 2 * (p - new - 2 * m) :]
        edge_logits, edge_values = s.attention(s.frame_map(torch.cat([left, right], dim=-1)))
        logits = torch.cat(
            [edge_logits[..., :m], logits[..., m + new : p - m], edge_logits[..., 3 * m :]], dim=-1
        )
        values = torch.cat(
            [edge_values[..., :m], values[..., m + new : p - m], edge_values[..., 3 * m :]], dim=-1
        )
        readings = s.with_categories(*s.readout(logits, values, energy))
        return *readings, audio[:, -self.tail :], features, energy, logits, values

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero state of the right shapes (a stream preceded by silence); the shapes come from
        one pass over a zero window."""
        s = self.student
        dummy = torch.zeros(batch, self.frames * s.config.hop + self.tail)
        features, energy = s.features(dummy)
        logits, values = s.attention(s.frame_map(features))
        return tuple(
            torch.zeros_like(t)
            for t in (dummy[:, : self.tail], features, energy, logits[..., : self.pooled], values)
        )


def export_streaming(
    student: Wav2Small, info: ModelInfo, model_path: Path, opset: int = 17
) -> Path:
    """Write ``<model_path stem>.stream.onnx`` for the window model at ``model_path`` (which
    must exist: the graph records its SHA-256) with the contract metadata of ``info``."""
    window = round(info.window_s * SAMPLE_RATE)
    step = StreamingStep(student, window)
    chunk = torch.zeros(1, 3 * step.chunk_multiple)  # any allowed length: the axis is dynamic
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy exporter and tracer notes on dynamic slicing
        torch.onnx.export(
            step,
            (chunk, *step.initial_state()),
            buffer,
            input_names=[CHUNK_NAME, *STATE_NAMES],
            output_names=[*output_names(student), *NEW_STATE_NAMES],
            dynamic_axes={CHUNK_NAME: {1: "samples"}},
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            dynamo=False,
        )
    graph = onnxscript.optimizer.optimize(onnx.load_from_string(buffer.getvalue()))
    onnx.checker.check_model(graph, full_check=True)
    set_metadata(
        graph,
        {
            **info.to_metadata(),
            **category_metadata(student.config.categories),
            META_WINDOW: str(window),
            META_CHUNK_MULTIPLE: str(step.chunk_multiple),
            META_MAX_CHUNK: str(step.max_chunk),
            META_EDGE_MARGIN: str(step.margin),
            META_MODEL_SHA256: hashlib.sha256(model_path.read_bytes()).hexdigest(),
        },
    )
    out = model_path.with_suffix(STREAM_SUFFIX)
    onnx.save(graph, out)
    return out
