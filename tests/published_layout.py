"""A folder in the exact layout of audeering/wav2small (random weights), and a plain PyTorch
forward of that layout written from its model card's description, independent of edgeser's
modules: the yardstick the importer and the ``wav2small-published`` preset are held to."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

C, MELS, N_FFT, HOP = 13, 26, 64, 32
# What the published config.json holds: identifiers, hardly anything about the architecture.
PUBLISHED_CONFIG = {
    "architectures": ["Wav2Small"],
    "model_type": "wav2vec2",
    "half_mel": 13,
    "n_fft": 64,
    "n_time": 64,
    "hidden": 338,
    "hop": 32,
}


def frontend() -> dict[str, torch.Tensor]:
    """DFT rows (complex exponentials times a periodic Hann window) and librosa's mel matrix."""
    t = np.arange(N_FFT)
    window = librosa.filters.get_window("hann", N_FFT, fftbins=True)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(N_FFT // 2 + 1), t) / N_FFT) * window
    mel = librosa.filters.mel(sr=16000, n_fft=N_FFT, n_mels=MELS, fmin=0.0, fmax=8000).T
    as_tensor = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return {
        "vgg7.spectrogram_extractor.conv_real.weight": as_tensor(dft.real[:, None, :]),
        "vgg7.spectrogram_extractor.conv_imag.weight": as_tensor(dft.imag[:, None, :]),
        "vgg7.logmel_extractor.melW": as_tensor(mel),
        "vgg7.logmel_extractor.amin": torch.tensor([1e-10]),
    }


def logmel(t: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Normalised waveform [B, T] -> [B, 1, frames, 26] dB."""
    x = x - x.mean(1, keepdim=True)
    x = x / torch.sqrt((x * x).mean(1, keepdim=True) + 1e-7)
    x = x[:, None, :]
    re = F.conv1d(x, t["vgg7.spectrogram_extractor.conv_real.weight"], stride=HOP)
    im = F.conv1d(x, t["vgg7.spectrogram_extractor.conv_imag.weight"], stride=HOP)
    power = (re**2 + im**2)[:, None].transpose(2, 3)
    mel = torch.matmul(power, t["vgg7.logmel_extractor.melW"])
    amin = t["vgg7.logmel_extractor.amin"]
    return 10 * torch.log10(torch.where(mel > amin, mel, amin))


def block(t: dict[str, torch.Tensor], i: int, x: torch.Tensor) -> torch.Tensor:
    """Conv2d 3x3 + BatchNorm2d (eval) + ReLU of layer ``l{i}``."""
    p = f"vgg7.l{i}."
    x = F.conv2d(x, t[p + "conv.weight"], padding=1)
    x = F.batch_norm(
        x,
        t[p + "norm.running_mean"],
        t[p + "norm.running_var"],
        t[p + "norm.weight"],
        t[p + "norm.bias"],
        training=False,
        eps=1e-5,
    )
    return torch.relu(x)


def reference_forward(t: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The published forward pass: (adv [B, 3], the 338 features)."""
    h = logmel(t, x)
    for i in range(1, 8):
        h = block(t, i, h)
        if i == 3:
            h = F.max_pool2d(h, 3, stride=2, padding=1)
    lin = F.conv2d(h, t["vgg7.lin.weight"], t["vgg7.lin.bias"])
    sof = F.conv2d(h, t["vgg7.sof.weight"], t["vgg7.sof.bias"])
    z = (lin * sof.softmax(2)).sum(2)
    features = torch.cat([z, torch.bmm(z, z.transpose(1, 2))], 2).reshape(-1, 338)
    return F.linear(features, t["adv.weight"], t["adv.bias"]), features


def random_tensors(seed: int = 0, calibration_s: float = 2.0) -> dict[str, torch.Tensor]:
    """Random weights of the published names and shapes; each BatchNorm's running statistics
    are those of its input on noise (as after training), so every layer stays in range."""
    g = torch.Generator().manual_seed(seed)
    t = frontend()
    probe = torch.randn(4, round(calibration_s * 16000), generator=g)
    probe *= torch.linspace(0.2, 2.0, probe.shape[1])  # a changing level, so pooling has work
    h = logmel(t, probe)
    for i in range(1, 8):
        c_in = 1 if i == 1 else C
        p = f"vgg7.l{i}."
        t[p + "conv.weight"] = torch.randn(C, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        out = F.conv2d(h, t[p + "conv.weight"], padding=1)
        t[p + "norm.running_mean"] = out.mean((0, 2, 3))
        t[p + "norm.running_var"] = out.var((0, 2, 3))
        t[p + "norm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
        t[p + "norm.bias"] = 0.1 * torch.randn(C, generator=g)
        t[p + "norm.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
        h = block(t, i, h)
        if i == 3:
            h = F.max_pool2d(h, 3, stride=2, padding=1)
    for name, scale in (("lin", 0.1), ("sof", 0.3)):
        t[f"vgg7.{name}.weight"] = torch.randn(C, C, 1, 1, generator=g) * scale
        t[f"vgg7.{name}.bias"] = 0.1 * torch.randn(C, generator=g)
    t["adv.weight"] = torch.randn(3, 338, generator=g) * 0.02
    t["adv.bias"] = torch.tensor([0.5, 0.5, 0.5])
    return t


def write_published(folder: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """``model.safetensors`` + ``config.json`` as on the hub."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = random_tensors() if tensors is None else tensors
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(PUBLISHED_CONFIG, indent=2))
    return folder


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a folder in the published layout."""
    return load_file(folder / "model.safetensors")
