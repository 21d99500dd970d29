"""The published Wav2Small ("Wav2Small 2.0", ``audeering/wav2small`` on the Hugging Face hub).

The architecture of the model card's code, with its module names, so that the published
``model.safetensors`` loads with ``load_state_dict`` as it is and ``state_dict()`` writes it
back (``vgg7.l1.conv.weight`` ... ``adv.bias``):

raw 16 kHz -> zero mean, divide by sqrt(variance + 1e-7) -> two frozen Conv1d (real and
imaginary DFT rows times a 64-sample periodic Hann window, 33 bins, stride 32, no padding):
re^2 + im^2 -> [B, 1, frames, 33] x melW [33, 26] (librosa's Slaney filterbank) ->
10 log10(max(x, 1e-10)) -> 7 x (Conv2d 3x3 no bias, BatchNorm2d, ReLU), 13 channels, a
MaxPool2d(3, stride 2, padding 1) after the third -> ``lin`` x softmax over time of ``sof``
(1x1 Conv2d each), summed over time: z [B, 13, 13] -> concat(z, z z^T) on the last axis,
flattened: 338 features -> Linear(338, 3): arousal, dominance, valence.

Also the ``wav2small-published`` student preset (``edgeser.distill.student.build_student``)
and the write-back of such a student to the published layout (``save_published``)::

    python -m edgeser.distill.wav2small_published STUDENT.pt OUT_FOLDER
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .student import SAMPLE_RATE, StudentConfig, load_student

PRESET = "wav2small-published"
CONFIG = StudentConfig.preset(PRESET)
HALF_MEL = CONFIG.n_mels // 2
FEATURES = 2 * CONFIG.channels * HALF_MEL  # 338
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
AMIN = 1e-10
OPTIONAL = ("num_batches_tracked",)  # BatchNorm counters: unused in eval, not required


class Spectrogram(nn.Module):
    """Power spectrogram from two frozen Conv1d layers holding the windowed DFT rows."""

    def __init__(self) -> None:
        super().__init__()
        bins, n_fft = CONFIG.n_fft // 2 + 1, CONFIG.n_fft
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=CONFIG.hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=CONFIG.hop, bias=False)
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, 33, frames]."""
        x = x.unsqueeze(1)
        return self.conv_real(x) ** 2 + self.conv_imag(x) ** 2


class LogmelFilterBank(nn.Module):
    """Mel projection on the frequency axis of a [B, 1, frames, 33] grid, then decibels."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("melW", torch.zeros(CONFIG.n_fft // 2 + 1, CONFIG.n_mels))
        self.register_buffer("amin", torch.tensor([AMIN]))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """[B, 33, frames] -> [B, 1, frames, 26] in dB."""
        mel = torch.matmul(power.unsqueeze(1).transpose(2, 3), self.melW)
        return 10.0 * torch.log10(torch.maximum(mel, self.amin))


class Conv(nn.Module):
    """Conv2d 3x3 (padding 1, no bias) + BatchNorm2d + ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class Vgg7(nn.Module):
    """Front-end, seven conv blocks and attention pooling: waveform -> 338 features."""

    def __init__(self) -> None:
        super().__init__()
        c = CONFIG.channels
        for i in range(1, CONFIG.n_conv + 1):
            self.add_module(f"l{i}", Conv(1 if i == 1 else c, c))
        self.maxpool_A = nn.MaxPool2d(3, stride=2, padding=1)
        self.lin = nn.Conv2d(c, c, 1)
        self.sof = nn.Conv2d(c, c, 1)
        self.spectrogram_extractor = Spectrogram()
        self.logmel_extractor = LogmelFilterBank()

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform -> [B, 338]."""
        x = signal - signal.mean(dim=1, keepdim=True)
        x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-7)
        x = self.logmel_extractor(self.spectrogram_extractor(x))
        for i in range(1, CONFIG.n_conv + 1):
            x = getattr(self, f"l{i}")(x)
            if i == CONFIG.pool_after:
                x = self.maxpool_A(x)
        z = (self.lin(x) * torch.softmax(self.sof(x), dim=2)).sum(dim=2)  # [B, 13, 13]
        return torch.cat([z, torch.matmul(z, z.transpose(1, 2))], dim=2).flatten(1)


class PublishedWav2Small(nn.Module):
    """The published model; ``forward`` returns (adv [B, 3], embedding [B, 338]) as every
    edgeser student does. Built with zero front-end weights: load a state dict, or call
    ``init_frontend`` for a fresh student."""

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        if config is not None and config != CONFIG:
            raise ValueError(f"the published Wav2Small has one architecture, not {config}")
        self.config = CONFIG
        self.vgg7 = Vgg7()
        self.adv = nn.Linear(FEATURES, 3)

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.vgg7(signal)
        return self.adv(features), features

    def init_frontend(self) -> PublishedWav2Small:
        """Fill the frozen DFT and mel matrices as the published model computes them."""
        real, imag, mel = frontend_matrices()
        v = self.vgg7
        with torch.no_grad():
            v.spectrogram_extractor.conv_real.weight.copy_(torch.from_numpy(real))
            v.spectrogram_extractor.conv_imag.weight.copy_(torch.from_numpy(imag))
            v.logmel_extractor.melW.copy_(torch.from_numpy(mel))
        return self


def frontend_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real and imaginary DFT rows times a periodic Hann window [33, 1, 64], and librosa's
    default (Slaney scale and area normalisation) mel filterbank transposed [33, 26]."""
    import librosa  # the library the published model takes its filterbank from

    n = CONFIG.n_fft
    t = np.arange(n)
    window = 0.5 - 0.5 * np.cos(2 * math.pi * t / n)  # = scipy/librosa hann, fftbins=True
    angle = 2 * math.pi * np.outer(np.arange(n // 2 + 1), t) / n
    real = (np.cos(angle) * window)[:, None, :].astype(np.float32)
    imag = (-np.sin(angle) * window)[:, None, :].astype(np.float32)
    with warnings.catch_warnings():  # "Empty filters detected": one band is, as published
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=n, n_mels=CONFIG.n_mels, fmin=0.0, fmax=SAMPLE_RATE // 2
        )
    return real, imag, np.ascontiguousarray(mel.T, dtype=np.float32)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor name of the published state dict and its shape."""
    return {k: tuple(v.shape) for k, v in PublishedWav2Small().state_dict().items()}


def check_layout(tensors: dict[str, Any], where: str) -> None:
    """ValueError in one line naming the missing or misshapen tensors of ``where``."""
    shapes = expected_shapes()
    missing = [k for k in shapes if k not in tensors and not k.endswith(OPTIONAL)]
    wrong = [
        f"{k} {list(tensors[k].shape)} (expected {list(s)})"
        for k, s in shapes.items()
        if k in tensors and tuple(tensors[k].shape) != s
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} of {len(shapes)} tensors: {', '.join(missing)}")
    if wrong:
        problems.append(f"misshapen: {'; '.join(wrong)}")
    if problems:
        raise ValueError(f"{where}: not the published Wav2Small layout: {'; '.join(problems)}")


def load_published(folder: str | Path) -> tuple[PublishedWav2Small, dict[str, Any]]:
    """The model in a folder of the published layout (eval mode) and its ``config.json``;
    ValueError in one line when a file is missing, unreadable, or not that layout."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    absent = [p.name for p in (weights, config_path) if not p.is_file()]
    if absent:
        raise ValueError(f"{folder}: no {' and no '.join(absent)} (the published Wav2Small layout)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    check_layout(tensors, str(weights))
    model = PublishedWav2Small()
    state = model.state_dict()
    state.update({k: v.to(state[k].dtype) for k, v in tensors.items() if k in state})
    model.load_state_dict(state)
    return model.eval(), config


def published_config(meta: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` in the published form (identifiers and sizes), plus the edgeser card
    facts of the student under ``edgeser``."""
    return {
        "architectures": ["Wav2Small"],
        "model_type": "wav2vec2",
        "half_mel": HALF_MEL,
        "n_fft": CONFIG.n_fft,
        "n_time": CONFIG.n_fft,
        "hop": CONFIG.hop,
        "hidden": FEATURES,
        "edgeser": meta,
    }


def save_published(model: PublishedWav2Small, folder: str | Path, **meta: Any) -> Path:
    """Write ``model.safetensors`` + ``config.json`` of the published layout into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    text = json.dumps(published_config(meta), indent=2, sort_keys=True, default=str)
    (folder / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    """Write a ``wav2small-published`` student checkpoint in the published layout."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", type=Path, help="student checkpoint (.pt) of that preset")
    parser.add_argument("out", type=Path, help="folder to write model.safetensors and config.json")
    args = parser.parse_args(argv)
    try:
        model, meta = load_student(args.checkpoint)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if model.config.variant != CONFIG.variant:  # (not isinstance: under -m this is __main__)
        parser.exit(2, f"{parser.prog}: error: {args.checkpoint} is a {model.config.variant} "
                       f"student, not {PRESET}\n")  # fmt: skip
    save_published(model, args.out, **meta)
    print(f"{args.out}: {WEIGHTS_FILE}, {CONFIG_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
