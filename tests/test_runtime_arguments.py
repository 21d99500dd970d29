"""What users pass to the Python API is taken as they mean it: a voice gate by name or as
True/False/None (the TOML spellings), numpy numbers wherever Python numbers go; anything else
is a ConfigError at the call, whose message writes numbers as Python does."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import voice_like

import edgeser
from edgeser.config import RuntimeConfig
from edgeser.contract import SAMPLE_RATE

pytestmark = pytest.mark.usefixtures("use_backend")  # each test on both backends


@pytest.fixture(scope="module")
def voice_gap_wav(tmp_path_factory) -> str:
    """3 s of voice, 2 s of quiet noise, 2 s of voice: gates tell voiced from unvoiced."""
    import soundfile as sf

    rng = np.random.default_rng(1)
    quiet = (0.002 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    x = np.concatenate([voice_like(3.0), quiet, voice_like(2.0, seed=4)])
    path = tmp_path_factory.mktemp("gates") / "voice-gap.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    return str(path)


def _rows(score: edgeser.FileScore) -> list[tuple]:
    return [(r.start_s, r.end_s, r.voiced, r.adv) for r in score.windows]


def _stream_rows(model: edgeser.Model, path: str, **kwargs) -> list[tuple]:
    with edgeser.Stream(model, edgeser.FileSource(path), **kwargs) as stream:
        return [(r.start_s, r.end_s, r.voiced, r.adv) for r in stream]


@pytest.mark.parametrize(
    ("spec", "gate"),
    [
        (False, None),
        (None, None),
        (True, edgeser.NoiseFloorVad()),
        ("noise-floor", edgeser.NoiseFloorVad()),
        ("Noise_Floor", edgeser.NoiseFloorVad()),
        ("energy", edgeser.EnergyVad()),
    ],
)
def test_score_file_takes_a_gate_by_name_or_as_true_false_none(
    tiny_model, voice_gap_wav, spec, gate
):
    assert _rows(tiny_model.score_file(voice_gap_wav, vad=spec)) == _rows(
        tiny_model.score_file(voice_gap_wav, vad=gate)
    )


def test_the_gate_forms_differ_where_they_should(tiny_model, voice_gap_wav):
    """(So that the equalities above cannot hold by every form meaning the same thing.)"""
    ungated = tiny_model.score_file(voice_gap_wav, vad=False)
    energy = tiny_model.score_file(voice_gap_wav, vad="energy")
    assert all(r.voiced for r in ungated.windows)
    assert not all(r.voiced for r in energy.windows)


@pytest.mark.parametrize(("spec", "gate"), [("energy", edgeser.EnergyVad()), (False, None)])
def test_stream_takes_a_gate_by_name_or_false(tiny_model, voice_gap_wav, spec, gate):
    assert _stream_rows(tiny_model, voice_gap_wav, vad=spec) == _stream_rows(
        tiny_model, voice_gap_wav, vad=gate
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("loud", "vad must be a gate name (noise-floor, energy), got 'loud'"),
        (0.5, "got 0.5"),
        (np.float32(0.5), "got 0.5"),
        ([], "got []"),
        (edgeser.NoiseFloorVad, "got <class"),  # the class, not a gate
    ],
)
def test_anything_else_as_a_gate_is_a_config_error_at_the_call(
    tiny_model, voice_gap_wav, spec, message
):
    calls = [
        lambda: tiny_model.score_file(voice_gap_wav, vad=spec),
        lambda: tiny_model.scorer(vad=spec),
        lambda: edgeser.Stream(tiny_model, edgeser.FileSource(voice_gap_wav), vad=spec),
    ]
    for call in calls:
        with pytest.raises(edgeser.ConfigError) as caught:
            call()
        assert message in str(caught.value)
        assert "np." not in str(caught.value)


def test_toml_vad_takes_true_false_and_gate_names(tmp_path):
    def gate(text: str):
        path = tmp_path / "c.toml"
        path.write_text(text)
        return RuntimeConfig.from_toml(path).voice_gate()

    assert gate("vad = false\n") is None
    assert gate("vad = true\n") == edgeser.NoiseFloorVad()
    assert gate('vad = "energy"\nvad_min_voiced = 0.2\n') == edgeser.EnergyVad(min_voiced=0.2)
    assert gate('vad = "energy"\nvad_threshold_db = -30\n') == edgeser.EnergyVad(-30.0)
    assert gate('vad = "noise-floor"\n') == edgeser.NoiseFloorVad()
    with pytest.raises(edgeser.ConfigError, match="got 'loud'"):
        gate('vad = "loud"\n')
    with pytest.raises(edgeser.ConfigError, match="cannot go with vad = 'noise-floor'"):
        gate('vad = "noise-floor"\nvad_threshold_db = -30\n')


def test_numpy_numbers_work_wherever_python_numbers_do(
    tiny_model, tiny_model_path, backend, voice_gap_wav
):
    as_python = tiny_model.score_file(voice_gap_wav, window=1.0, hop=0.5)
    as_numpy = tiny_model.score_file(voice_gap_wav, window=np.float64(1.0), hop=np.float32(0.5))
    assert _rows(as_numpy) == _rows(as_python)
    model = edgeser.load(tiny_model_path, threads=np.int64(2), backend=backend)
    assert _rows(model.score_file(voice_gap_wav)) == _rows(tiny_model.score_file(voice_gap_wav))
    clip = voice_like(1.0)
    for rate in (np.int64(SAMPLE_RATE), np.float32(SAMPLE_RATE)):
        assert tiny_model.predict(clip, rate).adv == tiny_model.predict(clip, SAMPLE_RATE).adv
    numpy_kwargs = {
        "smoothing": np.float32(0.5),
        "max_pending": np.int64(8),
        "max_readings": np.int32(4),
    }
    python_kwargs = {"smoothing": 0.5, "max_pending": 8, "max_readings": 4}
    source = edgeser.FileSource(voice_gap_wav, block_s=np.float32(0.05))
    with edgeser.Stream(tiny_model, source, **numpy_kwargs) as stream:
        got = [(r.start_s, r.end_s, r.voiced, r.adv) for r in stream]
    assert got == _stream_rows(tiny_model, voice_gap_wav, **python_kwargs)
    assert edgeser.EnergyVad(np.float32(-40.0), np.float64(0.25)) == edgeser.EnergyVad(-40.0, 0.25)
    assert edgeser.NoiseFloorVad(smooth_frames=np.int64(3)) == edgeser.NoiseFloorVad(
        smooth_frames=3
    )


def test_config_stores_numpy_numbers_as_python_numbers():
    config = RuntimeConfig(threads=np.int64(2), hop_s=np.float32(0.5), window_s=3)
    assert (config.threads, config.hop_s, config.window_s) == (2, 0.5, 3.0)
    assert type(config.threads) is int and type(config.hop_s) is float
    with pytest.raises(edgeser.ConfigError, match=r"threads must be int, got 2\.5$"):
        RuntimeConfig(threads=np.float32(2.5))
    with pytest.raises(edgeser.ConfigError, match=r"must be bool or str, got 1$"):
        RuntimeConfig(vad=np.int64(1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m, f: m.score_file(f, hop=np.float32(1e-5)),
            "hop must be in [0.01, 60] s, got 9.99",
        ),
        (
            lambda m, f: m.score_file(f, window=np.float64("inf")),
            "window must be in (0, 60] s, got inf",
        ),
        (
            lambda m, f: edgeser.Stream(m, edgeser.FileSource(f), max_readings=float("nan")),
            "max_readings must be a whole number from 1 to 1000000 readings, got nan",
        ),
        (
            lambda m, f: edgeser.Stream(m, edgeser.FileSource(f), max_readings=float("inf")),
            "max_readings",
        ),
        (lambda m, f: edgeser.Stream(m, edgeser.FileSource(f), max_readings=2.0), "got 2.0"),
        (
            lambda m, f: edgeser.Stream(m, edgeser.FileSource(f), max_pending=np.float32("nan")),
            "max_pending must be",
        ),
        (
            lambda m, f: edgeser.Stream(m, edgeser.FileSource(f), smoothing=np.inf),
            "smoothing must be in (0, 1], got inf",
        ),
        (lambda m, f: edgeser.FileSource(f, block_s=np.float32("nan")), "block_s must be in"),
        (lambda m, f: edgeser.EnergyVad(threshold_db=np.float32("nan")), "threshold_db must be in"),
        (
            lambda m, f: edgeser.NoiseFloorVad(floor_s=np.inf),
            "floor_s must be in (0, 600] s, got inf",
        ),
        (
            lambda m, f: edgeser.NoiseFloorVad(margin_db="5"),
            "margin_db must be in [0, 120] dB, got '5'",
        ),
        (
            lambda m, f: edgeser.load(m.path, threads=np.float32(2.0)),
            "threads must be a whole number from 1 to 256, got 2.0",
        ),
    ],
)
def test_out_of_range_numbers_are_named_as_python_writes_them(
    tiny_model, voice_gap_wav, call, message
):
    with pytest.raises(edgeser.ConfigError) as caught:
        call(tiny_model, voice_gap_wav)
    assert message in str(caught.value)
    assert "np." not in str(caught.value)


def test_sampling_rate_message_writes_numpy_numbers_as_python(tiny_model):
    with pytest.raises(edgeser.AudioError, match=r"got 44\.099998474121094$"):
        tiny_model.predict(voice_like(1.0), np.float32(44.1))
