"""The numpy polyphase resampler (used when soxr is not importable): exact streaming,
soxr's output lengths and timing, a flat passband and a stopband at the new Nyquist."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from conftest import voice_like

from edgeser.audio import StreamingResampler, to_mono_float32
from edgeser.errors import ConfigError
from edgeser.resample import ENV_RESAMPLER, PolyphaseResampler, resample, resolve_method


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [48_000, 44_100, 22_050, 8_000])
def test_blocks_of_any_size_give_the_one_shot_samples(rate):
    x = voice_like(1.3, rate)
    whole = resample(x, rate, 16_000, "numpy")
    stream = PolyphaseResampler(rate, 16_000)
    blocks = np.array_split(x, [1, 2, 500, 513, 4000, 4001, 9000])
    pieces = [stream.process(b) for b in blocks] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000, 8_000])
@pytest.mark.parametrize("n", [1, 999, 48_000, 70_001])
def test_output_length_is_soxrs(rate, n):
    x = np.ones(n, np.float32) * 0.1
    assert resample(x, rate, 16_000, "numpy").size == soxr.resample(x, rate, 16_000).size


@pytest.mark.parametrize("rate", [48_000, 44_100, 8_000])
def test_passband_is_flat_and_in_time_with_soxr(rate):
    x = tone(1_000.0, rate)
    ours, theirs = resample(x, rate, 16_000, "numpy"), soxr.resample(x, rate, 16_000, "HQ")
    inner = slice(800, -800)  # away from the edges
    np.testing.assert_allclose(np.abs(ours[inner]).max(), 0.5, rtol=2e-3)
    assert np.abs(ours[inner] - theirs[inner]).max() < 1e-3  # same time: no delay, no drift


def test_stopband_above_the_new_nyquist():
    """48 kHz -> 16 kHz: a 9 kHz tone would alias to 7 kHz; it is attenuated by >= 70 dB."""
    out = resample(tone(9_000.0, 48_000), 48_000, 16_000, "numpy")[800:-800]
    assert 20 * np.log10(np.abs(out).max() / 0.5) < -70


def test_speech_like_audio_matches_soxr_closely():
    x = voice_like(3.0, 48_000)
    ours, theirs = resample(x, 48_000, 16_000, "numpy"), soxr.resample(x, 48_000, 16_000, "HQ")
    error_db = 10 * np.log10(np.mean((ours - theirs) ** 2) / np.mean(theirs**2))
    assert error_db < -60


def test_runtime_uses_the_selected_resampler(monkeypatch):
    x = voice_like(1.0, 48_000)
    monkeypatch.setenv(ENV_RESAMPLER, "numpy")
    np.testing.assert_array_equal(to_mono_float32(x, 48_000), resample(x, 48_000, 16_000, "numpy"))
    stream = StreamingResampler(48_000)
    streamed = np.concatenate([stream.process(x[:777]), stream.process(x[777:]), stream.flush()])
    np.testing.assert_array_equal(streamed, resample(x, 48_000, 16_000, "numpy"))
    monkeypatch.setenv(ENV_RESAMPLER, "soxr")
    expected = soxr.resample(x, 48_000, 16_000, "HQ")
    np.testing.assert_array_equal(to_mono_float32(x, 48_000), expected)
    monkeypatch.setenv(ENV_RESAMPLER, "auto")
    assert resolve_method() == "soxr"
    monkeypatch.setenv(ENV_RESAMPLER, "scipy")
    with pytest.raises(ConfigError, match="resampler must be soxr, numpy or auto"):
        to_mono_float32(x, 48_000)


def test_the_filter_of_a_rate_pair_is_designed_once_and_shared_read_only(monkeypatch):
    """A resampler per file (``score_file``) or per gap (a Stream's reset) reuses the low-pass
    of its rate pair (a 65k-tap Kaiser design at 44.1 kHz) instead of designing it again;
    the shared filter cannot be changed through one of them, and both still resample alike."""
    monkeypatch.setenv(ENV_RESAMPLER, "numpy")
    a, b = PolyphaseResampler(44_100, 16_000), PolyphaseResampler(44_100, 16_000)
    assert a._filters is b._filters
    assert not a._filters.flags.writeable
    first, second = StreamingResampler(44_100), StreamingResampler(44_100)
    second.reset()
    assert first._stream._filters is second._stream._filters is a._filters
    x = voice_like(0.5, 44_100)
    np.testing.assert_array_equal(
        np.concatenate([a.process(x), a.flush()]), np.concatenate([b.process(x), b.flush()])
    )
