"""The project's reference teacher: a log-mel CNN + transformer trained on the shared corpora.

It stands in for the wav2vec2 teacher where that model's weights are not available: the same
pipeline distils either into the student. Raw 16 kHz waveform in; per-utterance normalisation
(gain invariance); log-mel (32 ms window, 20 ms hop, 64 bands); four conv blocks that
downsample time 8x (to 160 ms steps); a 2-layer pre-norm transformer; attentive statistics
pooling; an MLP head to (A, D, V). Optional (off in the first recipe): frame prosody (log-F0,
voicing and log-energy contours) joined to the conv features, and a categorical head
(``category_labels``) whose softmax fills ``TeacherOutput.categories``.
Padded batches give the same readings as one-by-one calls: every layer masks the padding.
Saved in fp16 (``save_reference``) so a ~1M-parameter model stays a ~2 MB file.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import AudioError
from ..student import SAMPLE_RATE, mel_filterbank
from .base import TeacherOutput

CHECKPOINT_FORMAT = "edgeser.reference_teacher"
CHECKPOINT_VERSION = 1


@dataclass
class ReferenceConfig:
    """Architecture of the reference teacher."""

    n_fft: int = 512
    hop: int = 320
    n_mels: int = 64
    channels: list[int] = field(default_factory=lambda: [24, 48, 96, 128])
    d_model: int = 192
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.2
    prosody: bool = False  # log-F0, voicing and log-energy contours beside the conv features
    category_labels: list[str] = field(default_factory=list)  # a categorical head; [] = none

    @property
    def time_stride(self) -> int:
        """Frames merged into one encoder step (the first three blocks halve time)."""
        return 2 ** min(3, len(self.channels))

    @property
    def min_samples(self) -> int:
        """Shorter inputs are zero-padded to this, so every encoder step sees audio."""
        return self.n_fft + (self.time_stride - 1) * self.hop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROSODY_FEATURES = 3  # log2(F0 / 100 Hz), voicing (normalised autocorrelation peak), log energy
F0_RANGE_HZ = (60.0, 400.0)


def conv_block(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(pool),
    )


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over valid time steps."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """[B, T, D] with valid [B, T] bool -> [B, 2D]."""
        logits = self.score(h).squeeze(-1).masked_fill(~valid, float("-inf"))
        w = torch.softmax(logits, dim=1).unsqueeze(-1)
        mean = (w * h).sum(1)
        var = (w * (h - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=1)


class ReferenceModel(nn.Module):
    """The teacher network. ``forward(signal, lengths)`` returns (adv [B, 3], embedding [B, E])."""

    def __init__(self, config: ReferenceConfig | None = None):
        super().__init__()
        self.config = config = config or ReferenceConfig()
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        mel = torch.from_numpy(mel_filterbank(config.n_fft, config.n_mels, SAMPLE_RATE))
        self.register_buffer("mel", mel, persistent=False)
        self.input_norm = nn.BatchNorm1d(config.n_mels)
        blocks, c_in, n_freq = [], 1, config.n_mels
        for i, c_out in enumerate(config.channels):
            pool = (2, 2) if i < 3 else (2, 1)
            blocks.append(conv_block(c_in, c_out, pool))
            c_in, n_freq = c_out, n_freq // 2
        self.blocks = nn.ModuleList(blocks)
        extra = PROSODY_FEATURES if config.prosody else 0
        self.project = nn.Linear(c_in * n_freq + extra, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.n_heads,
            config.ff_dim,
            config.dropout,
            batch_first=True,
            norm_first=True,  # pre-norm: trains stably without a long warm-up
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.pool = AttentiveStatsPool(config.d_model)
        self.head = nn.Sequential(
            nn.Linear(2 * config.d_model, config.d_model),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.d_model, 3),
        )
        # Created last, so that a model without them initialises exactly as before they existed.
        if config.prosody:
            self.prosody_norm = nn.BatchNorm1d(PROSODY_FEATURES)
        if config.category_labels:
            self.category_head = nn.Sequential(
                nn.Linear(2 * config.d_model, config.d_model),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.d_model, len(config.category_labels)),
            )

    def power(
        self, signal: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T] waveform (valid up to ``lengths``) -> power spectrogram [B, F, frames] of the
        per-utterance normalised signal, and the number of valid frames [B]."""
        cfg = self.config
        b, t = signal.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=signal.device)
        if t < cfg.min_samples:
            signal = nn.functional.pad(signal, (0, cfg.min_samples - t))
        lengths = lengths.clamp(min=cfg.min_samples)
        valid = (torch.arange(signal.shape[1], device=signal.device) < lengths[:, None]).float()
        n = lengths[:, None].float()
        x = signal * valid
        x = (x - x.sum(1, keepdim=True) / n) * valid
        x = x / torch.sqrt((x * x).sum(1, keepdim=True) / n + 1e-7)
        spec = torch.stft(x, cfg.n_fft, cfg.hop, window=self.window, center=False,
                          return_complex=True)  # fmt: skip
        frames = 1 + (lengths - cfg.n_fft) // cfg.hop
        return spec.real**2 + spec.imag**2, frames

    def log_mel(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram [B, F, frames] -> log-mel [B, n_mels, frames]."""
        return torch.log(torch.matmul(self.mel, power) + 1e-6)

    def prosody_features(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram [B, F, frames] -> [B, 3, frames]: log2(F0 / 100 Hz) and voicing from
        the peak of each frame's autocorrelation (the inverse FFT of its power) between 60 and
        400 Hz, and the frame's log energy."""
        n_fft = self.config.n_fft
        acf = torch.fft.irfft(power, n=n_fft, dim=1)  # [B, n_fft, frames], lag on dim 1
        low = int(SAMPLE_RATE / F0_RANGE_HZ[1])
        high = min(int(SAMPLE_RATE / F0_RANGE_HZ[0]), n_fft // 2 - 1)
        peak, lag = acf[:, low : high + 1].max(dim=1)
        voicing = (peak / acf[:, 0].clamp(min=1e-8)).clamp(0.0, 1.0)
        log_f0 = torch.log2(SAMPLE_RATE / (lag + low).float() / 100.0)
        log_energy = torch.log(power.sum(1) + 1e-6)
        return torch.stack([log_f0, voicing, log_energy], dim=1)

    def encode(
        self, log_mel: torch.Tensor, frames: torch.Tensor, prosody: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel [B, n_mels, frames] with valid frame counts [B] (and, for a model with
        ``prosody``, its ``prosody_features``) -> (adv, embedding)."""
        steps = torch.arange(log_mel.shape[-1], device=log_mel.device)
        h = self.input_norm(log_mel) * (steps < frames[:, None]).unsqueeze(1)
        h = h.unsqueeze(1)  # [B, 1, mels, frames]
        for block in self.blocks:
            h = block(h)
            if block[-1].kernel_size[1] == 2:  # time halved (floor): keep whole pairs only
                frames = frames // 2
            valid = torch.arange(h.shape[-1], device=h.device) < frames[:, None]
            h = h * valid[:, None, None, :]
        h = h.flatten(1, 2)  # [B, channels x bands, steps]
        if self.config.prosody:
            if prosody is None:
                raise ValueError("this reference teacher takes prosody features")
            stride = self.config.time_stride
            p = nn.functional.avg_pool1d(self.prosody_norm(prosody), stride, stride)
            h = torch.cat([h, p[..., : h.shape[-1]] * valid[:, None, :]], dim=1)
        h = self.project(h.transpose(1, 2))  # [B, steps, d_model]
        h = self.encoder(h, src_key_padding_mask=~valid)
        embedding = self.pool(h, valid)
        return self.head(embedding), embedding

    def category_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Embedding [B, E] -> logits [B, K] of ``config.category_labels`` (categorical head)."""
        return self.category_head(embedding)

    def forward(
        self, signal: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        power, frames = self.power(signal, lengths)
        prosody = self.prosody_features(power) if self.config.prosody else None
        return self.encode(self.log_mel(power), frames, prosody)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_reference(path: str | Path, model: ReferenceModel, **meta: Any) -> None:
    """Write the teacher with fp16 weights (atomic: temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": model.config.to_dict(),
            "state_dict": state,
            "meta": meta,
        },
        tmp,
    )
    tmp.replace(path)


def load_reference(path: str | Path) -> tuple[ReferenceModel, dict[str, Any]]:
    """Read a file written by ``save_reference`` (weights back in fp32, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such reference teacher checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable reference teacher checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an edgeser reference teacher checkpoint")
    try:
        model = ReferenceModel(ReferenceConfig(**ckpt["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in ckpt["state_dict"].items()})  # fmt: skip
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{path}: does not match the reference teacher ({exc})") from None
    model.eval()
    return model, dict(ckpt.get("meta", {}))


class ReferenceTeacher:
    """``Teacher`` over a ``ReferenceModel``: batches of any lengths, padded and masked. With a
    categorical head it has ``category_labels`` and fills ``TeacherOutput.categories``."""

    def __init__(self, model: ReferenceModel, teacher_id: str, batch_size: int = 32):
        self.model = model.eval()
        self.teacher_id = teacher_id
        self.batch_size = batch_size
        self.category_labels: tuple[str, ...] = tuple(model.config.category_labels)

    def __call__(self, waveforms: list[np.ndarray]) -> TeacherOutput:
        for i, w in enumerate(waveforms):
            if w.ndim != 1 or w.size == 0:
                raise AudioError(f"waveform {i}: expected non-empty 1-D audio, got {w.shape}")
        adv = np.zeros((len(waveforms), 3), dtype=np.float32)
        emb = np.zeros((len(waveforms), 2 * self.model.config.d_model), dtype=np.float32)
        cats = np.zeros((len(waveforms), len(self.category_labels)), dtype=np.float32)
        order = np.argsort([len(w) for w in waveforms])  # similar lengths share a batch
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            lengths = torch.tensor([len(waveforms[i]) for i in idx])
            batch = torch.zeros(len(idx), int(lengths.max()))
            for row, i in enumerate(idx):
                batch[row, : lengths[row]] = torch.from_numpy(np.asarray(waveforms[i], np.float32))
            with torch.inference_mode():
                a, e = self.model(batch, lengths)
                if self.category_labels:
                    cats[idx] = torch.softmax(self.model.category_logits(e), dim=1).numpy()
            adv[idx], emb[idx] = a.numpy(), e.numpy()
        return TeacherOutput(adv=adv, embedding=emb, categories=cats if cats.size else None)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_reference_teacher(path: str | Path) -> ReferenceTeacher:
    """The ``Teacher`` for ``--teacher reference:PATH``; its id carries the weights' hash."""
    model, _ = load_reference(path)
    return ReferenceTeacher(model, teacher_id=f"reference:{file_sha256(path)[:16]}")
