"""The audeering wav2vec2 A/D/V teacher (``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``).

Checkpoint layout (which loading matches exactly): a ``Wav2Vec2Model`` backbone under
``wav2vec2.*`` and a regression head ``classifier.dense`` (H->H) -> tanh ->
``classifier.out_proj`` (H->3) on the time-mean of the last hidden state. Input is normalised
per utterance to zero mean and unit variance. Batches are zero-padded with an attention mask
(the layer-norm feature encoder makes that equal to one-by-one scoring); audio longer than
``max_chunk_s`` is cut into equal chunks whose frame sums are pooled into one mean.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model, Wav2Vec2PreTrainedModel

from edgeser.contract import LABELS, SAMPLE_RATE

from .base import TeacherOutput
from .loading import TeacherError, normalize, resolve_device


class RegressionHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj, as in the published checkpoint."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))


class Wav2Vec2ForSpeechClassification(Wav2Vec2PreTrainedModel):
    """Backbone + regression head; the class name matches the checkpoint's ``architectures``."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()

    def frame_sums(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over valid frames of the last hidden state [B, H], and the frame counts [B]."""
        hidden = self.wav2vec2(input_values, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            frames = torch.ones(hidden.shape[:2], device=hidden.device)
        else:
            frames = self.wav2vec2._get_feature_vector_attention_mask(
                hidden.shape[1], attention_mask
            ).to(hidden.dtype)
        return (hidden * frames.unsqueeze(-1)).sum(1).float(), frames.sum(1).float()

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(head outputs in the checkpoint's label order, pooled hidden state)."""
        sums, counts = self.frame_sums(input_values, attention_mask)
        pooled = sums / counts.unsqueeze(-1)
        return self.classifier(pooled), pooled


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over parameter names and values: the weights' identity in the teacher id."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def label_order(config: Wav2Vec2Config) -> list[int]:
    """Output columns that give arousal, dominance, valence, from the config's ``id2label``."""
    names = {str(v).lower(): int(k) for k, v in config.id2label.items()}
    if set(names) != set(LABELS):
        raise TeacherError(f"id2label {config.id2label} does not name {', '.join(LABELS)}")
    return [names[label] for label in LABELS]


class Wav2Vec2Teacher:
    """Batched, chunked inference of a ``Wav2Vec2ForSpeechClassification`` (bf16 on GPU)."""

    def __init__(
        self, model: Wav2Vec2ForSpeechClassification, device: str = "auto", max_chunk_s: float = 20
    ):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.order = label_order(model.config)
        self.max_chunk = int(max_chunk_s * SAMPLE_RATE)
        self.teacher_id = f"wav2vec2:{weights_hash(model)}"

    @classmethod
    def load(cls, spec: str, device: str = "auto", max_chunk_s: float = 20) -> Wav2Vec2Teacher:
        """From a local folder (never touching the network) or a hub id (downloaded as usual)."""
        local = Path(spec).is_dir()
        try:
            config = Wav2Vec2Config.from_pretrained(spec, local_files_only=local)
            model, info = Wav2Vec2ForSpeechClassification.from_pretrained(
                spec, config=config, local_files_only=local, output_loading_info=True
            )
        except (OSError, ValueError) as exc:
            where = "from folder" if local else "by hub id (and no such folder)"
            raise TeacherError(f"cannot load wav2vec2 teacher {where} {spec!r}: {exc}") from None
        missing = [k for k in info["missing_keys"] if "masked_spec_embed" not in k]
        if missing:
            raise TeacherError(f"{spec}: checkpoint lacks weights {', '.join(sorted(missing))}")
        return cls(model, device=device, max_chunk_s=max_chunk_s)

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """(start, end) of equal chunks no longer than ``max_chunk`` covering ``n`` samples."""
        parts = max(1, -(-n // self.max_chunk))
        bounds = np.linspace(0, n, parts + 1).round().astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        pieces: list[tuple[int, np.ndarray]] = []  # (utterance index, chunk)
        for i, w in enumerate(waveforms):
            x = normalize(w)
            pieces += [(i, x[a:b]) for a, b in self.chunks(len(x))]
        hidden = self.model.config.hidden_size
        sums = torch.zeros(len(waveforms), hidden)
        counts = torch.zeros(len(waveforms))
        order = sorted(range(len(pieces)), key=lambda j: -len(pieces[j][1]))
        step = max(1, len(waveforms))
        with torch.inference_mode(), self._autocast():
            for s in range(0, len(order), step):
                group = [pieces[j] for j in order[s : s + step]]
                values, mask = _pad([x for _, x in group], self.device)
                batch_sums, batch_counts = self.model.frame_sums(values, mask)
                owners = torch.tensor([i for i, _ in group])
                sums.index_add_(0, owners, batch_sums.cpu())
                counts.index_add_(0, owners, batch_counts.cpu())
            pooled = sums / counts.clamp(min=1).unsqueeze(-1)
            out = self.model.classifier(pooled.to(self.device)).float().cpu()
        return TeacherOutput(out[:, self.order].numpy(), pooled.numpy())

    def _autocast(self):
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


def _pad(xs: list[np.ndarray], device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero-pad to the longest; the attention mask is None when all lengths are equal."""
    n = max(len(x) for x in xs)
    values = np.zeros((len(xs), n), dtype=np.float32)
    mask = np.zeros((len(xs), n), dtype=np.int64)
    for row, x in enumerate(xs):
        values[row, : len(x)] = x
        mask[row, : len(x)] = 1
    attention = torch.from_numpy(mask).to(device) if mask.min() == 0 else None
    return torch.from_numpy(values).to(device), attention
