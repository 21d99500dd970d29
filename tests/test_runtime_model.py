"""edgeser.load, Model.predict and Model.score_file on a real onnxruntime session."""

from __future__ import annotations

import math
import subprocess
import time
import tracemalloc

import numpy as np
import pytest
from conftest import TINY_BIAS, TINY_EMBEDDING_SIZE, TINY_HEAD, tiny_model_info, voice_like

import edgeser
from edgeser.audio import read_audio
from edgeser.contract import META_LABELS, META_MODEL_CARD, MIN_SAMPLES, SAMPLE_RATE
from edgeser.model import DEFAULT_MODEL

pytestmark = pytest.mark.usefixtures("use_backend")  # each test on both backends

# -- loading and the contract -------------------------------------------------------------------


def test_load_reads_contract_metadata(tiny_model):
    assert tiny_model.info == tiny_model_info()
    assert tiny_model.embedding_size == TINY_EMBEDDING_SIZE
    assert set(tiny_model.signature) == {"signal", "adv", "embedding"}


def test_load_without_path_says_no_default_model_is_bundled(monkeypatch, tmp_path):
    monkeypatch.setattr("edgeser.model.DEFAULT_MODEL", tmp_path / "default.onnx")
    with pytest.raises(edgeser.ModelError, match=r"no default model is bundled.*edgeser\.load"):
        edgeser.load()


def test_load_without_path_uses_the_bundled_model(monkeypatch, tiny_model_path):
    monkeypatch.setattr("edgeser.model.DEFAULT_MODEL", tiny_model_path)
    assert edgeser.load().path == tiny_model_path


def test_missing_model_file(tmp_path):
    with pytest.raises(edgeser.ModelError, match="no such model file"):
        edgeser.load(tmp_path / "absent.onnx")


def test_non_onnx_model_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("this is not a protobuf")
    with pytest.raises(edgeser.ModelError, match="not a loadable ONNX model"):
        edgeser.load(path)


def _metadata_without(key: str) -> dict[str, str]:
    meta = tiny_model_info().to_metadata()
    del meta[key]
    return meta


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metadata": {}}, "metadata lacks"),
        ({"metadata": _metadata_without(META_MODEL_CARD)}, "edgeser.model_card"),
        (
            {"metadata": {**tiny_model_info().to_metadata(), META_LABELS: "valence,arousal"}},
            "labels",
        ),
        ({"input_name": "audio"}, "one input 'signal'"),
        ({"adv_size": 4}, "4 values, not 3"),
    ],
    ids=["no-metadata", "no-card", "wrong-labels", "wrong-input", "adv-size"],
)
def test_model_lacking_the_contract(contract_model_factory, request, kwargs, message):
    path = contract_model_factory(f"broken-{request.node.callspec.id}.onnx", **kwargs)
    with pytest.raises(edgeser.ModelError, match=message):
        edgeser.load(path)


@pytest.mark.parametrize(
    ("output", "elem_type", "type_name"),
    [("adv", 7, "int64"), ("adv", 11, "double"), ("embedding", 7, "int64"), ("adv", 10, "float16")],
)
def test_model_with_a_non_float32_output_is_refused(
    contract_model_factory, backend, output, elem_type, type_name
):
    path = contract_model_factory(f"{output}-{type_name}.onnx", output_types={output: elem_type})
    with pytest.raises(edgeser.ModelError, match=rf"output '{output}' is tensor\({type_name}\)"):
        edgeser.load(path, backend=backend)


def _refused_at_once(path, backend) -> str:
    """The ModelError's message of loading ``path``, asserting that it came within 0.5 s and
    without reading the file into memory (Python's allocations stay under 8 MB)."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(edgeser.ModelError, match="not a loadable ONNX model") as caught:
            edgeser.load(path, backend=backend)
        elapsed = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MB allocated"
    return str(caught.value)


@pytest.mark.parametrize(("size", "message"), [("2G", "2 GiB"), ("1G", "field number 0")])
def test_a_sparse_file_of_zeros_is_refused_at_once(tmp_path, backend, size, message):
    path = tmp_path / "zeros.onnx"
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    assert message in _refused_at_once(path, backend)


@pytest.mark.parametrize("share", [0.5, 0.999, 0.0001])
def test_a_cut_off_download_of_the_real_model_is_refused_at_once(tmp_path, backend, share):
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: max(1, round(share * len(data)))])
    assert "cut short" in _refused_at_once(path, backend)


def test_trailing_zeros_after_a_real_model_are_refused(tmp_path, backend):
    path = tmp_path / "padded.onnx"
    path.write_bytes(DEFAULT_MODEL.read_bytes() + bytes(1 << 20))
    assert "field number 0" in _refused_at_once(path, backend)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_thread_count(tiny_model_path, threads):
    with pytest.raises(edgeser.ConfigError, match="threads"):
        edgeser.load(tiny_model_path, threads=threads)


def test_two_threads_give_the_same_readings(tiny_model, tiny_model_path):
    x = voice_like(1.5)
    two = edgeser.load(tiny_model_path, threads=2)
    assert two.predict(x, SAMPLE_RATE).adv == pytest.approx(tiny_model.predict(x, SAMPLE_RATE).adv)


# -- predict ------------------------------------------------------------------------------------


def _statistics_reading(x: np.ndarray) -> np.ndarray:
    """What the tiny model computes, in numpy: an independent check of the ONNX path."""
    x = x.astype(np.float64)
    stats = np.array([np.abs(x).mean(), np.sqrt((x**2).mean()), np.abs(x).max()])
    return 1.0 / (1.0 + np.exp(-(stats @ TINY_HEAD + TINY_BIAS)))


def test_predict_gives_adv_and_embedding_in_one_call(tiny_model):
    x = voice_like(2.0)
    reading = tiny_model.predict(x, SAMPLE_RATE)
    assert reading.adv == pytest.approx(tuple(_statistics_reading(x)), abs=1e-5)
    assert reading.embedding.shape == (TINY_EMBEDDING_SIZE,)
    assert (reading.start_s, reading.end_s, reading.voiced) == (0.0, 2.0, True)


def test_predict_without_embedding_output(contract_model_factory):
    model = edgeser.load(contract_model_factory("no-embedding.onnx", embedding=False))
    assert model.embedding_size is None
    assert model.predict(voice_like(1.0), SAMPLE_RATE).embedding is None


def test_predict_converts_int16_stereo_and_48k(tiny_model):
    x = voice_like(2.0)
    reference = tiny_model.predict(x, SAMPLE_RATE).adv
    pcm = np.round(x * 32767).astype(np.int16)
    assert tiny_model.predict(pcm, SAMPLE_RATE).adv == pytest.approx(reference, abs=1e-4)
    stereo = np.stack([x, x], axis=1)
    assert tiny_model.predict(stereo, SAMPLE_RATE).adv == pytest.approx(reference, abs=1e-6)
    assert tiny_model.predict(stereo.T, SAMPLE_RATE).adv == pytest.approx(reference, abs=1e-6)
    at_48k = voice_like(2.0, rate=48_000)
    assert tiny_model.predict(at_48k, 48_000).adv == pytest.approx(reference, abs=0.01)


@pytest.mark.parametrize(
    ("signal", "rate", "message"),
    [
        (np.zeros(0, np.float32), SAMPLE_RATE, "empty"),
        (voice_like(0.1), SAMPLE_RATE, r"0\.100 s long; at least 0\.250 s"),
        (np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, "all zeros"),
        (np.r_[voice_like(1.0), np.nan].astype(np.float32), SAMPLE_RATE, "NaN or infinite"),
        (np.r_[voice_like(1.0), np.inf].astype(np.float32), SAMPLE_RATE, "NaN or infinite"),
        (voice_like(1.0).astype(np.complex64), SAMPLE_RATE, "dtype complex64"),
        (np.ones(SAMPLE_RATE, dtype=bool), SAMPLE_RATE, "dtype bool"),
        (np.array(["a", "b"]), SAMPLE_RATE, "dtype <U1"),
        (voice_like(1.0), 0, "must be positive"),
        (voice_like(1.0), -16000, "must be positive"),
        (voice_like(1.0), 44_100.5, "positive integer"),
        (np.tile(voice_like(1.0)[:, None], (1, 8)), SAMPLE_RATE, "8 channels"),
        (np.zeros((2, 3, 4), np.float32), SAMPLE_RATE, "1-D or 2-D"),
    ],
    ids=[
        "empty",
        "too-short",
        "all-zero",
        "nan",
        "inf",
        "complex",
        "bool",
        "str",
        "rate-0",
        "rate-negative",
        "rate-fraction",
        "8-channel",
        "3-d",
    ],
)
def test_predict_rejects_bad_audio_with_audio_error(tiny_model, signal, rate, message):
    with pytest.raises(edgeser.AudioError, match=message):
        tiny_model.predict(signal, rate)


def test_predict_accepts_exactly_the_minimum_length(tiny_model):
    assert tiny_model.predict(voice_like(1.0)[:MIN_SAMPLES], SAMPLE_RATE).voiced


# -- score_file ---------------------------------------------------------------------------------


def test_score_file_windows_cover_the_file_and_match_predict(tiny_model, write_wav):
    path = write_wav("voice.wav", voice_like(2.6), subtype="FLOAT")
    audio = read_audio(path)
    result = tiny_model.score_file(path)  # the model's 1 s window, 0.25 s hop
    starts = [round(r.start_s, 4) for r in result.windows]
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.6]  # last: aligned to the end
    assert result.windows[-1].end_s == pytest.approx(2.6)
    for reading in result.windows:
        first = round(reading.start_s * SAMPLE_RATE)
        clip = audio[first : first + SAMPLE_RATE]
        assert reading.adv == tiny_model.predict(clip, SAMPLE_RATE).adv
    assert result.duration_s == pytest.approx(2.6)


def test_score_file_window_and_hop_arguments(tiny_model, write_wav):
    path = write_wav("voice.wav", voice_like(3.0))
    result = tiny_model.score_file(path, window=2.0, hop=0.5)
    assert [(r.start_s, r.end_s) for r in result.windows] == [(0.0, 2.0), (0.5, 2.5), (1.0, 3.0)]
    with pytest.raises(edgeser.ConfigError, match="shorter than the model's minimum"):
        tiny_model.score_file(path, window=0.1)
    with pytest.raises(edgeser.ConfigError, match="hop"):
        tiny_model.score_file(path, window=1.0, hop=1.5)


def test_file_shorter_than_a_window_is_one_window_equal_to_predict(tiny_model, write_wav):
    x = voice_like(0.6)
    path = write_wav("short.wav", x, subtype="FLOAT")
    result = tiny_model.score_file(path)
    assert len(result.windows) == 1
    assert (result.windows[0].start_s, result.windows[0].end_s) == (0.0, 0.6)
    assert result.aggregate.adv == tiny_model.predict(x, SAMPLE_RATE).adv
    np.testing.assert_array_equal(
        result.aggregate.embedding, tiny_model.predict(x, SAMPLE_RATE).embedding
    )


def test_aggregate_is_the_mean_of_voiced_windows(tiny_model, write_wav):
    silence = np.zeros(2 * SAMPLE_RATE, np.float32)
    path = write_wav("gap.wav", np.concatenate([voice_like(2.0), silence, voice_like(2.0, seed=1)]))
    result = tiny_model.score_file(path)
    voiced = [r for r in result.windows if r.voiced]
    unvoiced = [r for r in result.windows if not r.voiced]
    assert voiced and unvoiced
    assert all(math.isnan(r.arousal) for r in unvoiced)
    assert all(r.start_s >= 1.9 and r.end_s <= 4.1 for r in unvoiced)  # inside the silence
    expected = np.mean([r.adv for r in voiced], axis=0)
    assert result.aggregate.adv == pytest.approx(tuple(expected))
    assert (result.aggregate.start_s, result.aggregate.end_s) == (0.0, 6.0)


def test_quiet_file_is_voiced_by_the_default_gate_not_by_a_fixed_threshold(tiny_model, write_wav):
    path = write_wav("quiet.wav", voice_like(2.0) * 0.001, subtype="FLOAT")  # about -80 dBFS
    assert tiny_model.score_file(path).aggregate.voiced  # level-independent default gate
    fixed = tiny_model.score_file(path, vad=edgeser.EnergyVad(threshold_db=-45.0))
    assert not fixed.aggregate.voiced and math.isnan(fixed.aggregate.valence)
    assert tiny_model.score_file(path, vad=None).aggregate.voiced
    loud_enough = edgeser.EnergyVad(threshold_db=-90.0)
    assert tiny_model.score_file(path, vad=loud_enough).aggregate.voiced


def test_score_file_resamples_44k_stereo(tiny_model, write_wav):
    x = voice_like(2.0, rate=44_100)
    path = write_wav("stereo.wav", np.stack([x, x], axis=1), rate=44_100, subtype="FLOAT")
    result = tiny_model.score_file(path)
    assert result.duration_s == pytest.approx(2.0, abs=1e-3)
    resampled_whole = read_audio(path)  # one-shot resampling; score_file resamples block-wise
    assert (
        result.windows[0].adv == tiny_model.predict(resampled_whole[:SAMPLE_RATE], SAMPLE_RATE).adv
    )
    assert result.windows[0].adv == pytest.approx(
        tiny_model.predict(x[:44_100], 44_100).adv, abs=1e-4
    )


def test_bad_files_raise_audio_file_error(tiny_model, write_wav, tmp_path):
    cases = {
        "missing": tmp_path / "absent.wav",
        "folder": tmp_path,
        "not audio": tmp_path / "notes.wav",
        "empty file": tmp_path / "empty.wav",
        "zero frames": write_wav("zero-frames.wav", np.zeros(0, np.float32)),
        "too short": write_wav("short.wav", voice_like(0.1)),
        "all zeros": write_wav("zeros.wav", np.zeros(SAMPLE_RATE, np.float32)),
        "8 channels": write_wav("eight.wav", np.tile(voice_like(1.0)[:, None], (1, 8))),
        "truncated flac": tmp_path / "truncated.flac",
        "header only": tmp_path / "header.wav",
    }
    (tmp_path / "notes.wav").write_text("not audio at all\n" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    flac = write_wav("whole.flac", voice_like(3.0)).read_bytes()
    (tmp_path / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (tmp_path / "header.wav").write_bytes(write_wav("whole.wav", voice_like(1.0)).read_bytes()[:30])
    messages = {}
    for name, path in cases.items():
        with pytest.raises(edgeser.AudioFileError) as caught:
            tiny_model.score_file(path)
        messages[name] = str(caught.value)
        assert str(path) in messages[name], name
    assert "no such file" in messages["missing"]
    assert "no voice to score" in messages["all zeros"]
    assert "at least 0.250 s" in messages["too short"]
    assert "8 channels" in messages["8 channels"]
    assert "truncated or corrupt" in messages["truncated flac"]


def test_reading_to_dict_is_json_ready(tiny_model, write_wav):
    path = write_wav("gap.wav", np.r_[voice_like(1.0), np.zeros(SAMPLE_RATE, np.float32)])
    windows = tiny_model.score_file(path).windows
    assert windows[0].to_dict()["voiced"] is True
    assert windows[-1].to_dict() == {
        "start_s": 1.0,
        "end_s": 2.0,
        "arousal": None,
        "dominance": None,
        "valence": None,
        "voiced": False,
    }
