"""Crop augmentation: gain, coloured or recorded noise at an SNR, band-limiting, speed, reverb,
far field, babble, telephone mu-law and lossy codecs (the signal work is ``degrade``'s).

An ``AugmentSpec`` is drawn once per crop when crops are planned and stored with it; applying
it with the crop's seed regenerates exactly the same signal, so teacher and student hear the
same audio and nothing needs to be saved but the description (babble also needs the same
``SpeechBank``). numpy, soxr and soundfile only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE

from . import degrade
from .config import AugmentConfig, ConfigError


@dataclass(frozen=True)
class AugmentSpec:
    """The effects applied to one crop; the defaults mean 'no effect'."""

    speed: float = 1.0
    rt60_s: float = 0.0
    drr_db: float = 0.0
    snr_db: float | None = None
    noise_color: float = 0.0
    noise_file: str = ""  # content hash of a recorded noise file; "" = synthetic noise
    noise_path: str = ""  # where that file was found: a location hint, not part of the identity
    lowpass_hz: float = 0.0
    telephone: bool = False
    mu_law: bool = False  # the telephone channel's 8-bit mu-law companding
    babble_snr_db: float | None = None
    babble_talkers: int = 0  # other speakers' clips mixed into the babble
    codec: str = ""  # a degrade.CODECS name; "" = none
    codec_level: float = 0.0  # its compression level, 0..1
    gain_db: float = 0.0

    def to_dict(self) -> dict:
        """The non-default fields (a clean crop is ``{}``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    def identity(self) -> dict:
        """What defines the signal: ``to_dict`` without location hints."""
        d = self.to_dict()
        d.pop("noise_path", None)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> AugmentSpec:
        return cls(**data)


class NoiseBank:
    """Recorded noise files by content hash, decoded on first use and kept in memory."""

    def __init__(self, files: dict[str, Path] | None = None):
        self.files = dict(files or {})
        self._decoded: dict[str, np.ndarray] = {}

    def load(self, digest: str, path_hint: str = "") -> np.ndarray:
        if digest not in self._decoded:
            path = self.files.get(digest) or Path(path_hint)
            self._decoded[digest] = read_audio(path)
        return self._decoded[digest]


class SpeechBank:
    """Speech clips with their speakers, from which babble of other talkers is drawn."""

    def __init__(self, clips: list[np.ndarray], speakers: list[str]):
        if len(clips) != len(speakers):
            raise ValueError("SpeechBank: one speaker per clip")
        self.clips, self.speakers = clips, speakers

    def talkers(self, n: int, rng: np.random.Generator, speaker: str = "") -> list[np.ndarray]:
        """``n`` clips drawn at random (with replacement) from speakers other than ``speaker``."""
        others = [i for i, s in enumerate(self.speakers) if s != speaker]
        if not others:
            raise ConfigError(f"babble: the speech bank has no speaker other than {speaker!r}")
        return [self.clips[others[int(rng.integers(len(others)))]] for _ in range(n)]


def sample_augment(
    rng: np.random.Generator,
    cfg: AugmentConfig,
    noise: NoiseBank | None = None,
    speech: SpeechBank | None = None,
) -> AugmentSpec:
    """Draw one crop's effects from the configured probabilities and ranges. The effects added
    after the first recipe (far field, babble, mu-law, codec) draw nothing while their
    probability is 0, so older configs draw exactly the same specs."""
    if not cfg.enabled:
        return AugmentSpec()

    def draw(p: float, lo_hi: list[float]) -> float | None:
        return round(float(rng.uniform(*lo_hi)), 3) if rng.random() < p else None

    spec: dict = {}
    if (speed := draw(cfg.p_speed, cfg.speed_range)) is not None:
        spec["speed"] = speed
    if (rt60 := draw(cfg.p_reverb, cfg.rt60_s_range)) is not None:
        spec.update(rt60_s=rt60, drr_db=round(float(rng.uniform(*cfg.drr_db_range)), 3))
    if (snr := draw(cfg.p_noise, cfg.snr_db_range)) is not None:
        spec["snr_db"] = snr
        if noise is not None and noise.files and rng.random() < cfg.p_noise_file:
            digest = sorted(noise.files)[int(rng.integers(len(noise.files)))]
            spec.update(noise_file=digest, noise_path=str(noise.files[digest]))
        else:
            spec["noise_color"] = round(float(rng.uniform(*cfg.noise_color_range)), 3)
    if cfg.p_far and rng.random() < cfg.p_far:  # reverberant and noisy together
        spec.update(rt60_s=round(float(rng.uniform(*cfg.rt60_s_range)), 3),
                    drr_db=round(float(rng.uniform(*cfg.far_drr_db_range)), 3),
                    snr_db=round(float(rng.uniform(*cfg.snr_db_range)), 3),
                    noise_color=degrade.PINK, noise_file="", noise_path="")  # fmt: skip
    if cfg.p_babble and (snr := draw(cfg.p_babble, cfg.babble_snr_db_range)) is not None:
        if speech is None:
            raise ConfigError("p_babble > 0 needs a SpeechBank of other speakers' clips")
        low, high = cfg.babble_talkers_range
        spec.update(babble_snr_db=snr, babble_talkers=int(rng.integers(low, high + 1)))
    if rng.random() < cfg.p_band:
        if rng.random() < cfg.p_telephone:
            spec["telephone"] = True
            if cfg.p_mu_law and rng.random() < cfg.p_mu_law:
                spec["mu_law"] = True
        else:
            spec["lowpass_hz"] = round(float(rng.uniform(*cfg.lowpass_hz_range)), 1)
    if cfg.p_codec and rng.random() < cfg.p_codec:
        spec["codec"] = cfg.codecs[int(rng.integers(len(cfg.codecs)))]
        spec["codec_level"] = round(float(rng.uniform(*cfg.codec_level_range)), 3)
    if (gain := draw(cfg.p_gain, cfg.gain_db_range)) is not None:
        spec["gain_db"] = gain
    return AugmentSpec(**spec)


def source_span(length: int, spec: AugmentSpec) -> int:
    """Samples of source audio that one crop of ``length`` samples consumes at its speed."""
    return round(length * spec.speed)


def apply_augment(
    segment: np.ndarray,
    length: int,
    spec: AugmentSpec,
    seed: int,
    noise: NoiseBank | None = None,
    speech: SpeechBank | None = None,
    speaker: str = "",
) -> np.ndarray:
    """Turn ``source_span`` samples of source audio into the ``length``-sample augmented crop
    (babble from ``speech``, of speakers other than ``speaker``)."""
    rng = np.random.default_rng(seed)
    x = segment.astype(np.float64)
    if spec.speed != 1.0:  # played faster or slower: tempo and pitch change together
        x = soxr.resample(x, SAMPLE_RATE * spec.speed, SAMPLE_RATE, quality="HQ")
    x = degrade.fit_length(x, length)
    if spec.rt60_s > 0:
        x = degrade.reverberate(x, spec.rt60_s, spec.drr_db, rng)
    if spec.snr_db is not None:
        x = x + degrade.scaled_to_snr(x, _noise(len(x), spec, rng, noise), spec.snr_db)
    if spec.babble_snr_db is not None:
        if speech is None:
            raise ConfigError("a babble augmentation needs the SpeechBank it was drawn for")
        talkers = speech.talkers(spec.babble_talkers, rng, speaker)
        x = degrade.babble(x, talkers, spec.babble_snr_db, rng)
    if spec.telephone:
        x = degrade.telephone(x, companding=spec.mu_law)
    elif spec.lowpass_hz > 0:
        x = degrade.band_limit(x, 0.0, spec.lowpass_hz)
    if spec.codec:
        x = degrade.codec(x, spec.codec, spec.codec_level)
    if spec.gain_db:
        x = degrade.gain(x, spec.gain_db)
    return x.astype(np.float32)


def _noise(n: int, spec: AugmentSpec, rng: np.random.Generator, bank: NoiseBank | None):
    """Recorded noise (random offset, looped) or 1/f^color noise, ``n`` samples."""
    if spec.noise_file:
        source = (bank or NoiseBank()).load(spec.noise_file, spec.noise_path).astype(np.float64)
        return degrade.looped(source, int(rng.integers(len(source))), n)
    return degrade.colored_noise(n, spec.noise_color, rng)
