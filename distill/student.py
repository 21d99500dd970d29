"""Wav2Small students (Kounadis-Bastian et al., 2024): raw 16 kHz waveform in, A/D/V out.

waveform -> per-utterance normalisation -> frozen DFT-as-Conv1d power spectrogram (Hann,
n_fft 64, hop 32: 500 frames/s) -> 26 log-mel bands (0-8 kHz) -> 3x3 conv/BN/ReLU stack with
13 channels and one stride-2 max-pool -> attention pooling over time -> linear head (A, D, V).
Only standard ONNX ops; every Conv is followed by a BatchNorm that export folds away.

``normalization="frame"`` (preset ``wav2small-stream``) is a streamable variant: instead of
z-normalising the whole input, it removes each frame's DC (folded into the DFT kernel) and gain
(its mean log-mel, the log energy) before the convolutions, and appends two gain-invariant
loudness features of the input (from those per-frame energies) after pooling. Every frame's
conv input then depends on that frame's samples only, which is what lets a streaming graph
(``edgeser.export.streaming``) cache per-frame work across hops exactly.

With ``categories`` (label names, e.g. the teacher's anger/happiness/neutral/sadness) a second
linear head on the same pooled vector gives one logit per label; ``forward`` then returns their
softmax as a third output (probabilities, rows sum to 1), distilled from the teacher's. With
``category_input="readings"`` the head reads the A/D/V readings instead (fitted, not distilled).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of a Wav2Small student; ``variant`` picks the pooling head."""

    variant: Literal["wav2small", "wav2small2", "published"] = "wav2small"
    n_fft: int = 64
    hop: int = 32
    n_mels: int = 26
    channels: int = 13
    n_conv: int = 10
    pool_after: int = 2  # the stride-2 max-pool follows this many conv layers
    # "utterance": z-normalise the waveform over the whole input (the published Wav2Small);
    # "frame": per-frame DC and gain removal, loudness features after pooling (streamable).
    normalization: Literal["utterance", "frame"] = "utterance"
    # Names of a categorical head's labels, in logit order; empty: no categorical head.
    categories: tuple[str, ...] = ()
    # What the head reads: "embedding" (the pooled vector, distilled from the teacher's
    # probabilities) or "readings" (the model's own A/D/V: a softmax regression fitted after
    # training, ``edgeser.distill.readings_head``, the head that LOCO found transfers best).
    category_input: Literal["embedding", "readings"] = "embedding"

    def __post_init__(self) -> None:
        """Labels as a tuple (a checkpoint or card may bring a list); ValueError when they
        are not at least two distinct, non-empty names."""
        labels = tuple(self.categories)
        object.__setattr__(self, "categories", labels)
        if labels and (
            len(labels) < 2
            or len(set(labels)) != len(labels)
            or not all(isinstance(n, str) and n for n in labels)
        ):
            raise ValueError(f"categories need two or more distinct names, got {list(labels)}")
        if self.category_input not in ("embedding", "readings"):
            raise ValueError(f"category_input must be embedding or readings: {self.category_input}")

    @classmethod
    def preset(cls, name: str) -> StudentConfig:
        """``wav2small`` (~72K parameters), ``wav2small2`` (~17K, our Wav2Small 2.0-like
        variant), ``wav2small-published`` (the published audeering/wav2small architecture
        exactly, ~11K, ``edgeser.distill.wav2small_published``) or ``wav2small-stream``
        (wav2small with frame normalisation and a 40-sample STFT hop, so that a 0.25 s hop
        is a whole number of pooled frames for streaming)."""
        if name == "wav2small":
            return cls(variant="wav2small", n_conv=10)
        if name == "wav2small2":
            return cls(variant="wav2small2", n_conv=11)
        if name == "wav2small-stream":
            return cls(variant="wav2small", n_conv=10, hop=40, normalization="frame")
        if name == "wav2small-published":
            return cls(variant="published", n_conv=7, pool_after=3)
        raise ValueError(
            f"unknown student preset {name!r} "
            "(wav2small, wav2small2, wav2small-published, wav2small-stream)"
        )

    @property
    def edge_margin(self) -> int:
        """Pooled frames at each end of the input whose conv outputs feel the zero padding:
        half the pre-pool layers (rounded up) plus one per post-pool layer."""
        return -(-self.pool_after // 2) + (self.n_conv - self.pool_after)

    def to_dict(self) -> dict:
        return asdict(self)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-style triangular mel filters [n_mels, n_fft//2 + 1] from 0 to Nyquist (HTK mel)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    n_bins = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_bins)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fb = np.zeros((n_mels, n_bins), dtype=np.float64)
    for m in range(n_mels):
        lo, mid, hi = mel_points[m : m + 3]
        rising = (fft_freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - fft_freqs) / max(hi - mid, 1e-9)
        fb[m] = np.maximum(0.0, np.minimum(rising, falling))
        if fb[m].sum() == 0:  # narrower than one FFT bin: take the nearest bin
            fb[m, int(np.argmin(np.abs(fft_freqs - mid)))] = 1.0
    fb /= fb.sum(axis=1, keepdims=True)
    return fb.astype(np.float32)


class LogMel(nn.Module):
    """Frozen DFT-as-Conv1d power spectrogram followed by a log-mel projection."""

    def __init__(
        self, n_fft: int, hop: int, n_mels: int, floor: float = 1e-6, frame_dc: bool = False
    ):
        """``floor`` is added to the mel power before the log; ``frame_dc`` removes each
        frame's mean before its DFT (folded into the kernel: window-independent DC removal)."""
        super().__init__()
        n_bins = n_fft // 2 + 1
        t = np.arange(n_fft)
        window = 0.5 - 0.5 * np.cos(2 * math.pi * t / n_fft)  # periodic Hann
        k = np.arange(n_bins)[:, None]
        real = np.cos(2 * math.pi * k * t / n_fft) * window
        imag = -np.sin(2 * math.pi * k * t / n_fft) * window
        dft = np.concatenate([real, imag])[:, None, :]  # [2*bins, 1, n_fft]
        if frame_dc:  # DFT(w * (x - mean x)) = (w e_k - mean_t(w e_k)) . x
            dft = dft - dft.mean(axis=-1, keepdims=True)
        self.register_buffer("dft", torch.from_numpy(dft.astype(np.float32)))
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(n_fft, n_mels)))
        self.hop = hop
        self.n_bins = n_bins
        self.floor = floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] normalised waveform -> [B, 1, n_mels, frames] log-mel."""
        spec = nn.functional.conv1d(x.unsqueeze(1), self.dft, stride=self.hop)
        power = spec[:, : self.n_bins] ** 2 + spec[:, self.n_bins :] ** 2
        mel = torch.matmul(self.mel, power)
        return torch.log(mel + self.floor).unsqueeze(1)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


# Log-mel floor of frame normalisation: ~70 dB below a full-scale tone, so quiet speech stays
# well above it. Not smaller: ONNX optimisers fold "x + c" into x when |c| <= 1e-8 (onnxscript's
# add-zero rule), which would leave log(0) = -inf on digital silence.
FRAME_FLOOR = 1e-7
LOUDNESS_RANGE = math.log(1e8)  # frame energies are clamped to 80 dB below the loudest
LOUDNESS_SCALE = 0.1  # brings the loudness features (natural-log units) to about unit range


class Wav2Small(nn.Module):
    """The student. ``forward`` returns (adv [B, 3], embedding [B, D]).

    The forward pass is four steps, also used one by one by the streaming graph:
    ``features`` -> ``frame_map`` -> ``attention`` -> ``readout``.
    """

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config = config or StudentConfig()
        c = config.channels
        frame = config.normalization == "frame"
        if config.normalization not in ("utterance", "frame"):
            raise ValueError(f"unknown normalization {config.normalization!r} (utterance, frame)")
        self.logmel = LogMel(
            config.n_fft,
            config.hop,
            config.n_mels,
            floor=FRAME_FLOOR if frame else 1e-6,
            frame_dc=frame,
        )
        self.input_norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = [conv_block(1, c)]
        layers += [conv_block(c, c) for _ in range(config.n_conv - 1)]
        layers.insert(config.pool_after, nn.MaxPool2d(2))
        self.convs = nn.Sequential(*layers)
        self.dim = c * (config.n_mels // 2)
        if config.variant == "wav2small":
            self.attn_logits = nn.Conv1d(self.dim, self.dim, 1)
            self.attn_values = nn.Conv1d(self.dim, self.dim, 1)
            head_in = self.dim
        else:
            self.attn_logits = nn.Conv1d(self.dim, 1, 1)
            self.attn_values = None
            head_in = 2 * self.dim
        head_in += 2 if frame else 0
        self.head = nn.Linear(head_in, 3)
        k = len(config.categories)
        reads = 3 if config.category_input == "readings" else head_in
        self.category_head = nn.Linear(reads, k) if k else None

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(adv [B, 3], embedding [B, D]) and, with a categorical head, probabilities [B, K]."""
        features, energy = self.features(signal)
        logits, values = self.attention(self.frame_map(features))
        return self.with_categories(*self.readout(logits, values, energy))

    def with_categories(
        self, adv: torch.Tensor, embedding: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``(adv, embedding)``, followed by the category probabilities when there is a head."""
        if self.category_head is None:
            return adv, embedding
        reads = adv if self.config.category_input == "readings" else embedding
        return adv, embedding, torch.softmax(self.category_head(reads), dim=-1)

    def category_log_probs(self, embedding: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, K] of the categorical head (for a stable training loss)."""
        if self.category_head is None or self.config.category_input != "embedding":
            raise ValueError("this student has no categorical head on its embedding to train")
        return torch.log_softmax(self.category_head(embedding), dim=-1)

    def features(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, T] waveform -> conv input [B, 1, n_mels, frames], and with frame normalisation
        the per-frame log energies [B, frames] (None for utterance normalisation)."""
        if self.config.normalization == "utterance":
            x = signal - signal.mean(dim=1, keepdim=True)
            x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-7)
            return self.input_norm(self.logmel(x)), None
        logmel = self.logmel(signal)
        energy = logmel.mean(dim=2, keepdim=True)  # [B, 1, 1, frames]
        return self.input_norm(logmel - energy), energy.flatten(1)

    def frame_map(self, features: torch.Tensor) -> torch.Tensor:
        """Conv input [B, 1, n_mels, frames] -> pooled frame vectors [B, D, frames // 2]."""
        return self.convs(features).flatten(1, 2)

    def attention(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pooled frame: attention logits and the values they weight."""
        values = self.attn_values(h) if self.attn_values is not None else h
        return self.attn_logits(h), values

    def readout(
        self, logits: torch.Tensor, values: torch.Tensor, energy: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax-pool the values over time, add the variant's extras, apply the head."""
        pooled = (torch.softmax(logits, dim=-1) * values).sum(dim=-1)  # [B, D]
        if self.attn_values is None:  # Wav2Small 2.0: pooled vector and its Gram matrix
            c = self.config.channels
            m = pooled.view(-1, c, self.dim // c)
            gram = torch.matmul(m, m.transpose(1, 2)) / m.shape[-1]
            pooled = torch.cat([pooled, gram.flatten(1)], dim=1)
        if energy is not None:
            pooled = torch.cat([pooled, loudness_features(energy)], dim=1)
        return self.head(pooled), pooled


def loudness_features(energy: torch.Tensor) -> torch.Tensor:
    """Per-frame log energies [B, frames] -> [B, 2] gain-invariant loudness of the input: mean
    minus max and standard deviation, after clamping to ``LOUDNESS_RANGE`` below the max."""
    top = energy.max(dim=1, keepdim=True).values
    e = torch.maximum(energy, top - LOUDNESS_RANGE)
    mean = e.mean(dim=1, keepdim=True)
    std = torch.sqrt(((e - mean) ** 2).mean(dim=1, keepdim=True))
    return torch.cat([mean - top, std], dim=1) * LOUDNESS_SCALE


def build_student(config: StudentConfig, fresh: bool = True) -> nn.Module:
    """A student of ``config``'s architecture: ``Wav2Small``, or for the ``published``
    variant ``PublishedWav2Small``, whose frozen front-end is computed (with librosa) only
    when ``fresh`` (a state dict about to be loaded brings its own)."""
    if config.variant != "published":
        return Wav2Small(config)
    if config.categories:
        raise ValueError(
            "the wav2small-published architecture has no categorical head (the published "
            "layout holds A/D/V only); use wav2small or wav2small-stream"
        )
    from .wav2small_published import PublishedWav2Small

    model = PublishedWav2Small(config)
    return model.init_frontend() if fresh else model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the frozen DFT and mel matrices are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


CHECKPOINT_FORMAT = "edgeser.student"
CHECKPOINT_VERSION = 1


def save_student(path: str | Path, model: nn.Module, **meta: Any) -> None:
    """Write a student checkpoint: architecture, weights and free-form metadata (teacher id,
    training config, metrics...). Written to a temporary file and renamed, so it is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "meta": meta,
        },
        tmp,
    )
    tmp.replace(path)


def load_student(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Read a checkpoint written by ``save_student``; ValueError if it is not one."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception:  # torch's own text runs to a page; say what it means in one line
        reason = (
            "it holds objects other than tensors and plain data"
            if zipfile.is_zipfile(path)
            else "not a file written by torch.save"
        )
        raise ValueError(
            f"{path}: not a student checkpoint ({reason}); `edgeser-distill train` writes them"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an edgeser student checkpoint (unknown architecture)")
    try:
        config = StudentConfig(**ckpt["config"])
        model = build_student(config, fresh=False)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{path}: checkpoint does not match the Wav2Small architecture ({exc})"
        ) from None
    model.eval()
    return model, dict(ckpt.get("meta", {}))
