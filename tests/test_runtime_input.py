"""Input that used to give a silent wrong reading: integer PCM in wide containers, DC, tiny or
huge signals, a model that outputs NaN; long clips in bounded memory; and one rule for silent
and too-short input in every entry point."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SPEECH_WAV, voice_like

import edgeser
from edgeser.audio import read_audio
from edgeser.cli import main
from edgeser.contract import INPUT_NAME, OUTPUT_ADV, SAMPLE_RATE


@pytest.fixture(scope="module")
def bundled() -> edgeser.Model:
    """The bundled default model: gain-invariant, unlike the tiny test model."""
    return edgeser.load()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3 s of the bundled example speech, float32 16 kHz."""
    return read_audio(SPEECH_WAV)[: 3 * SAMPLE_RATE]


# -- item 4: integer PCM in a wider container ----------------------------------------------------


def test_int16_values_in_a_list_or_int64_array_read_as_int16(bundled, speech):
    pcm = np.round(speech * 32767).astype(np.int16)
    expected = bundled.predict(pcm, SAMPLE_RATE).adv
    assert bundled.predict(pcm.tolist(), SAMPLE_RATE).adv == pytest.approx(expected, abs=1e-6)
    assert bundled.predict(pcm.astype(np.int64), SAMPLE_RATE).adv == pytest.approx(
        expected, abs=1e-6
    )
    assert expected == pytest.approx(bundled.predict(speech, SAMPLE_RATE).adv, abs=0.01)


def test_int24_and_int32_values_in_int64_are_scaled_by_their_width(bundled, speech):
    expected = bundled.predict(speech, SAMPLE_RATE).adv
    for bits in (24, 32):
        wide = np.round(speech / np.abs(speech).max() * (2 ** (bits - 1) - 1)).astype(np.int64)
        assert bundled.predict(wide, SAMPLE_RATE).adv == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    "signal",
    [np.full(SAMPLE_RATE, 2**40, np.int64), np.ones(SAMPLE_RATE, np.uint64), [2**40] * SAMPLE_RATE],
    ids=["int64-beyond-32-bit", "uint64", "python-ints-beyond-32-bit"],
)
def test_integers_no_pcm_width_holds_are_refused_saying_how_to_pass_them(tiny_model, signal):
    with pytest.raises(edgeser.AudioError, match="pass int16 or int32"):
        tiny_model.predict(signal, SAMPLE_RATE)


def test_int64_blocks_in_a_stream_are_bad_blocks_not_guessed(tiny_model):
    blocks = [np.round(voice_like(0.5, seed=i) * 32767).astype(np.int64) for i in range(4)]
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE))
    with stream, pytest.raises(edgeser.AudioError, match="at least"):  # nothing was scorable
        list(stream)
    assert stream.stats.bad_blocks == 4


# -- item 5 and issue 11 item 11: input without signal, tiny and huge signals ------------------


def _click(n: int = 3 * SAMPLE_RATE) -> np.ndarray:
    x = np.zeros(n, np.float32)
    x[n // 2] = 0.5
    return x


@pytest.mark.parametrize(
    "signal",
    [
        np.full(3 * SAMPLE_RATE, 0.3, np.float32),
        np.full(3 * SAMPLE_RATE, -0.01, np.float32),
        _click(),
        voice_like(3.0) * 1e-9,
        np.zeros(3 * SAMPLE_RATE, np.float32),
    ],
    ids=["dc", "small-dc", "one-sample", "below-1e-8", "zeros"],
)
def test_predict_refuses_audio_without_signal_in_the_speech_band(bundled, signal):
    with pytest.raises(edgeser.AudioError, match="no voice to score"):
        bundled.predict(signal, SAMPLE_RATE)


@pytest.mark.parametrize("scale", [1e-6, 1e-4, 1e-3, 1e3, 1e15, 1e25])
def test_readings_do_not_depend_on_the_level_of_the_signal(bundled, speech, scale):
    expected = bundled.predict(speech, SAMPLE_RATE).adv
    scaled = (speech.astype(np.float64) * scale).astype(np.float32)
    assert bundled.predict(scaled, SAMPLE_RATE).adv == pytest.approx(expected, abs=0.01)


def test_dc_offset_does_not_change_the_reading(bundled, speech):
    expected = bundled.predict(speech, SAMPLE_RATE).adv
    assert bundled.predict(speech + 0.2, SAMPLE_RATE).adv == pytest.approx(expected, abs=0.01)


def test_windows_without_signal_are_never_scored_even_without_the_vad(tiny_model, write_wav):
    voice = voice_like(2.0)
    path = write_wav("voice-dc.wav", np.r_[voice, np.full(3 * SAMPLE_RATE, 0.25, np.float32)])
    for vad in (None, edgeser.NoiseFloorVad()):
        result = tiny_model.score_file(path, vad=vad)
        tail = [w for w in result.windows if w.start_s >= 2.0]
        assert tail and not any(w.voiced for w in tail)
        voiced = [w for w in result.windows if w.voiced]
        assert all(0.0 <= v <= 1.0 for w in voiced for v in w.adv)
        assert result.aggregate.adv == pytest.approx(tuple(np.mean([w.adv for w in voiced], 0)))


# -- item 7: a model whose graph outputs NaN ----------------------------------------------------


def _nan_model(path, below_peak: float | None):
    """A contract model whose adv is sqrt(c - peak): NaN for every input (c = -1) or for
    windows whose peak exceeds ``below_peak``."""
    import onnx
    from conftest import tiny_model_info
    from onnx import TensorProto, helper, numpy_helper

    c = -1.0 if below_peak is None else below_peak
    nodes = [
        helper.make_node("Abs", [INPUT_NAME], ["abs"]),
        helper.make_node("ReduceMax", ["abs"], ["peak"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["c", "peak"], ["rest"]),
        helper.make_node("Sqrt", ["rest"], ["root"]),
        helper.make_node("Tile", ["root", "three"], [OUTPUT_ADV]),
    ]
    inits = [
        numpy_helper.from_array(np.array([[c]], np.float32), "c"),
        numpy_helper.from_array(np.array([1, 3], np.int64), "three"),
    ]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info(OUTPUT_ADV, TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, tiny_model_info().to_metadata())
    onnx.save(model, str(path))
    return path


def test_a_model_that_outputs_nan_is_refused_at_load(tmp_path):
    with pytest.raises(edgeser.ModelError, match="NaN or infinite output"):
        edgeser.load(_nan_model(tmp_path / "nan.onnx", None))


def test_nan_output_on_a_window_is_a_model_error(tmp_path, write_wav):
    model = edgeser.load(_nan_model(tmp_path / "loud-nan.onnx", 0.3))  # self-test tone: 0.1
    with pytest.raises(edgeser.ModelError, match=r"NaN or infinite output for the window"):
        model.predict(voice_like(1.0) * 4, SAMPLE_RATE)
    with pytest.raises(edgeser.ModelError, match="NaN"):
        model.score_file(write_wav("loud.wav", voice_like(2.0) * 4, subtype="FLOAT"))


# -- item 9: long clips in bounded memory ---------------------------------------------------------


def test_long_predict_scores_window_by_window_like_score_file(tiny_model, write_wav):
    gap = np.zeros(2 * SAMPLE_RATE, np.float32)
    x = np.concatenate([voice_like(3.0), gap, voice_like(4.0, seed=2)])
    sizes: list[int] = []
    run = tiny_model._run
    tiny_model._run = lambda samples: sizes.append(samples.size) or run(samples)
    try:
        reading = tiny_model.predict(x, SAMPLE_RATE)  # 9 s: more than 4 windows of 1 s
    finally:
        del tiny_model._run
    assert max(sizes) == SAMPLE_RATE  # never more than one window at a time
    expected = tiny_model.score_file(write_wav("long.wav", x, subtype="FLOAT"), vad=None)
    assert reading.adv == pytest.approx(expected.aggregate.adv, abs=1e-6)
    assert (reading.start_s, reading.end_s) == pytest.approx((0.0, 9.0))
    pcm = np.round(np.stack([x, x], axis=0) * 32767).astype(np.int16)  # [channels, samples]
    assert tiny_model.predict(pcm, SAMPLE_RATE).adv == pytest.approx(reading.adv, abs=1e-3)


def test_a_clip_of_up_to_four_windows_is_still_scored_whole(tiny_model):
    x = voice_like(4.0)
    sizes: list[int] = []
    run = tiny_model._run
    tiny_model._run = lambda samples: sizes.append(samples.size) or run(samples)
    try:
        tiny_model.predict(x, SAMPLE_RATE)
    finally:
        del tiny_model._run
    assert sizes == [x.size]


def test_a_low_rate_is_resampled_block_by_block(tiny_model):
    sizes: list[int] = []
    run = tiny_model._run
    tiny_model._run = lambda samples: sizes.append(samples.size) or run(samples)
    try:
        tiny_model.predict(voice_like(8.0, rate=4000), 4000)
    finally:
        del tiny_model._run
    assert max(sizes) == SAMPLE_RATE


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        (np.float32(0.5), "1-D or 2-D"),
        (np.zeros((3, 40 * SAMPLE_RATE), np.float32), "3 channels"),
        (np.zeros((2, 2, 40 * SAMPLE_RATE), np.float32), "1-D or 2-D"),
    ],
)
def test_long_and_odd_shapes_get_the_same_errors(tiny_model, signal, message):
    with pytest.raises(edgeser.AudioError, match=message):
        tiny_model.predict(signal, SAMPLE_RATE)


@pytest.mark.parametrize("rate", [1, 100, 3999, 768_001])
def test_rates_no_audio_interface_records_are_refused_at_once(tiny_model, rate):
    with pytest.raises(edgeser.AudioError, match=rf"{rate} Hz is outside 4000..768000 Hz"):
        tiny_model.predict(np.ones(4000, np.float32), rate)


# -- issue 11 item 10: one rule for silent and too-short input ----------------------------------


@pytest.mark.parametrize(
    ("name", "signal", "message"),
    [
        ("silent.wav", np.zeros(2 * SAMPLE_RATE, np.float32), "no voice to score"),
        ("dc.wav", np.full(2 * SAMPLE_RATE, 0.25, np.float32), "no voice to score"),
        ("short.wav", voice_like(0.1), "at least 0.250 s"),
    ],
)
def test_silent_and_too_short_input_is_an_error_in_every_entry_point(
    tiny_model, tiny_model_path, write_wav, capsys, name, signal, message
):
    path = write_wav(name, signal)
    with pytest.raises(edgeser.AudioError, match=message):
        tiny_model.predict(read_audio(path), SAMPLE_RATE)
    with pytest.raises(edgeser.AudioFileError, match=message):
        tiny_model.score_file(path)
    with edgeser.Stream(tiny_model, edgeser.FileSource(path)) as stream:
        readings = []
        with pytest.raises(edgeser.AudioError, match=message):
            readings.extend(stream)
    assert not any(r.voiced for r in readings)
    model = ["--model", str(tiny_model_path)]
    assert main(["score", *model, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == [] and message.split()[0] in err and str(path) in err
    assert main(["stream", *model, "--from-file", str(path)]) == 1
    out, err = capsys.readouterr()
    assert all(not json.loads(line)["voiced"] for line in out.splitlines())
    assert err.splitlines()[-1].startswith(f"edgeser: {path}: ") and message.split()[0] in err


def test_audio_with_signal_but_no_speech_is_unvoiced_not_an_error(tiny_model, write_wav):
    hiss = np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.01
    path = write_wav("hiss.wav", hiss, subtype="FLOAT")
    result = tiny_model.score_file(path)
    assert not result.aggregate.voiced and math.isnan(result.aggregate.arousal)
    with edgeser.Stream(tiny_model, edgeser.FileSource(path)) as stream:
        assert [r.voiced for r in stream] == [w.voiced for w in result.windows]
    assert stream.error is None
