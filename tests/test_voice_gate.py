"""The default voice gate: relative to a tracked noise floor, DC-free, level-independent and
causal, with the same verdicts from score_file, a Stream and predict's long path."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import voice_like

import edgeser
from edgeser.contract import SAMPLE_RATE
from edgeser.levels import FRAME_HOP, FrameLevels, frame_levels_db
from edgeser.vad import EnergyVad, NoiseFloorVad

GAINS_DB = (-40, -30, -20, -10, 0, 10)


def _noise(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    """Unit-RMS white or pink noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    if kind == "pink":
        spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0))
    x = np.fft.irfft(spectrum, n)
    return (x / np.sqrt(np.mean(x * x))).astype(np.float32)


def _scaled(x: np.ndarray, gain_db: float) -> np.ndarray:
    return (x.astype(np.float64) * 10 ** (gain_db / 20)).astype(np.float32)


@pytest.mark.parametrize("gain_db", GAINS_DB)
def test_speech_in_room_noise_is_found_at_any_gain(gain_db):
    speech_in_noise = voice_like(3.0) + 0.01 * _noise("pink", 3.0)  # ~ 20 dB SNR
    assert NoiseFloorVad().is_voiced(_scaled(speech_in_noise, gain_db))


def test_speech_30_db_quieter_is_found_where_the_fixed_gate_loses_it():
    quiet = _scaled(voice_like(3.0) + 0.003 * _noise("white", 3.0), -30)  # about -50 dBFS
    assert NoiseFloorVad().is_voiced(quiet)
    assert not EnergyVad(threshold_db=-45.0).is_voiced(quiet)


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("gain_db", [-60, -30, 0])
def test_steady_noise_of_any_level_is_not_speech(kind, gain_db):
    assert not NoiseFloorVad().is_voiced(_scaled(0.3 * _noise(kind, 3.0), gain_db))


def test_the_floor_is_tracked_across_windows(tiny_model):
    """Steady noise, then speech over it, then the same noise: the noise windows stay unvoiced
    after speech; the speech windows are voiced."""
    noise = 0.02 * _noise("pink", 9.0, seed=4)
    x = noise.copy()
    x[3 * SAMPLE_RATE : 6 * SAMPLE_RATE] += voice_like(3.0)
    readings = tiny_model.scorer(vad=NoiseFloorVad()).push(x)
    voiced = {round(r.start_s, 2): r.voiced for r in readings}
    assert all(voiced[s] for s in (3.0, 3.5, 4.0, 4.5, 5.0))  # tiny model: 1 s windows
    assert not any(voiced[s] for s in (0.0, 1.0, 2.0, 6.0, 7.0, 8.0))


def test_dc_offset_does_not_change_any_verdict():
    quiet, loud = 0.01 * _noise("white", 3.0), voice_like(3.0)
    for x in (quiet, loud):
        for gate in (NoiseFloorVad(), EnergyVad()):
            assert gate.is_voiced(x + 0.5) == gate.is_voiced(x)
    assert not NoiseFloorVad().is_voiced(np.full(3 * SAMPLE_RATE, 0.5, np.float32))
    assert not EnergyVad(threshold_db=-100.0).is_voiced(np.full(3 * SAMPLE_RATE, 0.5, np.float32))


def test_frame_levels_of_windows_in_order_equal_those_of_the_whole_signal():
    x = voice_like(5.0)
    whole = frame_levels_db(x)
    levels = FrameLevels(keep_s=10.0)
    window, hop = 16_000, 4_000
    for start in range(0, x.size - window + 1, hop):
        got, inside = levels.window(start, x[start : start + window])
    np.testing.assert_allclose(got, whole[: got.size])
    assert got.size == whole.size and inside == (window - 320) // FRAME_HOP + 1


def test_score_file_and_stream_agree_on_quiet_speech_in_noise(tiny_model, write_wav):
    x = 1e-4 * _noise("pink", 8.0, seed=2)  # speech at -60 dBFS, 20 dB over the noise
    x[2 * SAMPLE_RATE : 5 * SAMPLE_RATE] += 0.01 * voice_like(3.0)
    path = write_wav("quiet.wav", x, subtype="FLOAT")
    from_file = tiny_model.score_file(path).windows
    rng = np.random.default_rng(3)
    blocks = np.split(x, np.sort(rng.choice(x.size, size=50, replace=False)))
    with edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE)) as stream:
        streamed = list(stream)
    assert [r.voiced for r in streamed] == [r.voiced for r in from_file]
    assert any(r.voiced for r in streamed) and not all(r.voiced for r in streamed)


def test_gate_settings_are_checked():
    for kwargs in ({"margin_db": -1.0}, {"margin_db": float("nan")}, {"floor_s": 0.0}):
        with pytest.raises(ValueError):
            NoiseFloorVad(**kwargs)
    with pytest.raises(ValueError, match="threshold_db"):
        EnergyVad(threshold_db=float("nan"))


def test_a_sustained_vowel_after_room_noise_is_speech_thanks_to_the_tracked_floor(tiny_model):
    """A steady 1 s vowel is speech only against the floor heard before it: on its own its
    level never rises above its own floor, after 3 s of room noise it is 40 dB above it."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    vowel = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8)).astype(np.float32) * 0.1
    noise = 0.001 * _noise("pink", 4.0, seed=5)
    x = noise.copy()
    x[3 * SAMPLE_RATE :] += vowel
    assert not NoiseFloorVad().is_voiced(x[3 * SAMPLE_RATE :])
    readings = tiny_model.scorer(vad=NoiseFloorVad()).push(x)
    assert [round(r.start_s, 2) for r in readings if r.voiced] == [2.25, 2.5, 2.75, 3.0]


def test_a_bad_gate_setting_is_a_config_error_from_the_gate_itself():
    """Python users building a gate get the typed error the CLI and TOML give, not a bare
    ValueError (``RuntimeConfig.voice_gate`` then needs no translation)."""
    bad = [
        lambda: NoiseFloorVad(min_voiced=0.0),
        lambda: NoiseFloorVad(margin_db=-1.0),
        lambda: NoiseFloorVad(floor_s=0.0),
        lambda: NoiseFloorVad(smooth_frames=0),
        lambda: EnergyVad(threshold_db=float("nan")),
        lambda: EnergyVad(min_voiced=1.5),
    ]
    for make in bad:
        with pytest.raises(edgeser.ConfigError):
            make()


def test_the_noise_floor_gate_smooths_the_levels_once_per_verdict(monkeypatch):
    """The per-hop verdict smooths the frame levels once, for both the frames and the floor
    (the hot path of a Stream), and gives the verdict the floor and margin define."""
    levels = frame_levels_db(voice_like(3.0) + 0.001 * _noise("white", 3.0))
    gate = NoiseFloorVad()
    inside = levels.size // 2
    smoothed = gate.smoothed_db(levels)[levels.size - inside :]
    expected = np.count_nonzero(smoothed >= gate.floor_db(levels, inside) + gate.margin_db)
    calls = []
    original = NoiseFloorVad.smoothed_db

    def counted(self, levels_db):
        calls.append(levels_db.size)
        return original(self, levels_db)

    monkeypatch.setattr(NoiseFloorVad, "smoothed_db", counted)
    assert gate.voiced(levels, inside) == (expected >= gate.min_voiced * inside)
    assert calls == [levels.size]
