"""The windowing ring buffer and the energy VAD, the parts every scoring path shares."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import voice_like

from edgeser.contract import SAMPLE_RATE
from edgeser.levels import frame_levels_db
from edgeser.scoring import SlidingWindows
from edgeser.vad import EnergyVad, NoiseFloorVad


def _windows_by_slicing(x: np.ndarray, window: int, hop: int) -> list[tuple[int, np.ndarray]]:
    """The windows score_file promises, cut from the whole signal at once."""
    if x.size < window:
        return [(0, x)]
    starts = list(range(0, x.size - window + 1, hop))
    if starts[-1] + window < x.size:
        starts.append(x.size - window)
    return [(s, x[s : s + window]) for s in starts]


@pytest.mark.parametrize(("window", "hop"), [(100, 25), (100, 100), (64, 7), (50, 49)])
@pytest.mark.parametrize("n_samples", [30, 99, 100, 101, 555, 1000])
def test_windows_from_any_block_sizes_equal_slicing_the_whole(window, hop, n_samples):
    rng = np.random.default_rng(n_samples + window + hop)
    x = rng.standard_normal(n_samples).astype(np.float32)
    cuts = np.sort(rng.choice(np.arange(1, n_samples), size=min(12, n_samples - 1), replace=False))
    windows = SlidingWindows(window, hop)
    got = [w for block in np.split(x, cuts) for w in windows.push(block)]
    tail = windows.flush()
    got += [tail] if tail is not None else []
    expected = _windows_by_slicing(x, window, hop)
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_windows_in_one_push_and_reset():
    x = np.arange(1000, dtype=np.float32)
    windows = SlidingWindows(300, 100)
    first = windows.push(x)
    assert [s for s, _ in first] == list(range(0, 701, 100))
    windows.reset()
    again = windows.push(x[:299])
    assert again == [] and windows.flush()[1].size == 299
    windows.reset()
    assert windows.flush() is None


def test_windows_are_copies_not_views_of_the_buffer():
    windows = SlidingWindows(4, 2)
    (_, first), *_ = windows.push(np.ones(4, np.float32))
    windows.push(np.full(40, 7.0, np.float32))
    np.testing.assert_array_equal(first, np.ones(4))


def test_bad_window_and_hop():
    with pytest.raises(ValueError, match="hop"):
        SlidingWindows(10, 11)
    with pytest.raises(ValueError, match="hop"):
        SlidingWindows(10, 0)


def test_vad_tells_voice_from_silence_and_noise_floor():
    vad = EnergyVad()
    voice = voice_like(1.0)
    assert vad.is_voiced(voice)
    assert not vad.is_voiced(np.zeros(SAMPLE_RATE, np.float32))
    floor = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-3
    assert not vad.is_voiced(floor)  # -60 dBFS room noise
    assert EnergyVad(threshold_db=-70.0).is_voiced(floor)
    assert not vad.is_voiced(np.zeros(0, np.float32))


def test_vad_needs_a_share_of_speech_frames():
    voice, silence = voice_like(0.05), np.zeros(SAMPLE_RATE - 800, np.float32)
    clip = np.concatenate([voice, silence])  # 5% of the frames carry voice
    assert not EnergyVad(min_voiced=0.1).is_voiced(clip)
    assert EnergyVad(min_voiced=0.04).is_voiced(clip)


def test_vad_levels_are_speech_band_dbfs():
    tone = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    levels = frame_levels_db(tone)
    assert levels.shape == (99,)  # 20 ms frames every 10 ms
    np.testing.assert_allclose(levels, 20 * np.log10(1 / np.sqrt(2)), atol=0.05)  # -3.01 dBFS


@pytest.mark.parametrize("kwargs", [{"min_voiced": 0.0}, {"min_voiced": 1.5}])
def test_vad_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        EnergyVad(**kwargs)
    with pytest.raises(ValueError):
        NoiseFloorVad(**kwargs)
