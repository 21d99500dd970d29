"""benchmarks/quality.py's 8 kHz part: the band limit, the reading shift and its report."""

import json

import numpy as np
from conftest import REPO

from benchmarks.quality import (
    DEFAULT_INT8,
    V1_INT8,
    band_limited,
    markdown,
    narrowband,
    reading_shift,
    shift_comparison,
)
from edgeser.cli import main


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x[1600:-1600].astype(np.float64) ** 2)))


def test_band_limit_removes_everything_above_4_khz_and_keeps_the_speech_band():
    low, high = _tone(1000), _tone(6000)
    assert band_limited(low).shape == low.shape and band_limited(low).dtype == np.float32
    assert abs(_rms(band_limited(low)) / _rms(low) - 1) < 0.01
    assert _rms(band_limited(high)) < 1e-3 * _rms(high)


def test_reading_shift_per_dimension():
    wide = np.array([[0.8, 0.5, 0.6], [0.6, 0.5, 0.4]])
    narrow = wide + np.array([-0.2, 0.0, 0.3])
    shift = reading_shift(wide, narrow)
    assert shift["arousal"]["mean_16k"] == 0.7
    assert np.isclose(shift["arousal"]["mean_shift"], -0.2)
    assert np.isclose(shift["valence"]["mean_abs_shift"], 0.3)
    assert shift["dominance"]["mean_shift"] == 0.0


def test_narrowband_scores_band_limited_audio_and_is_reported(monkeypatch):
    rows = ["r1", "r2", "r3"]
    audio = [_tone(300), _tone(5000), _tone(7000)]

    def share_above_4k(batch):  # a "model" that reads how much of the clip is above 4 kHz
        out = [_rms(a) - _rms(band_limited(a)) for a in batch]
        return np.array([[x, 0.5, 1 - x] for x in out])

    monkeypatch.setattr(
        "benchmarks.quality.score_against_labels",
        lambda pred, rows: {"ccc_mean": 0.1, "auc_arousal": 0.5, "auc_valence": 0.5},
    )
    nb = narrowband({"m": share_above_4k}, {"ravdess": (rows, audio)})
    shift = nb["models"]["m"]["shift"]["ravdess"]
    assert shift["arousal"]["mean_shift"] < -0.1  # the 5 and 7 kHz tones lost their energy
    assert shift["valence"]["mean_shift"] > 0.1
    report = {
        "command": "c",
        "machine": {"date_utc": "today", "cpu": "cpu", "cores_logical": 2, "git": "abc"},
        "seconds": 1.0,
        "corpora": ["ravdess"],
        "dev_clips": {"ravdess": 3},
        "results": {},
        "models": {},
        "not_available": {},
        "narrowband": nb,
    }
    text = markdown(report)
    assert "## 8 kHz (telephone-band) input" in text
    assert f"| ravdess | arousal | {shift['arousal']['mean_16k']:.3f} | " in text


def test_the_bundled_models_8_khz_shift_is_set_beside_v1s():
    def model(shift: float) -> dict:
        per_dim = {d: {"mean_shift": shift} for d in ("arousal", "dominance", "valence")}
        return {
            "shift": {"ravdess": per_dim, "nemo": per_dim | {"valence": {"mean_shift": -shift}}}
        }

    nb = {"models": {DEFAULT_INT8: model(0.05), V1_INT8: model(0.2)}}
    lines = shift_comparison(nb, ["ravdess", "nemo"])
    assert "| arousal | 0.200 | 0.050 | 0.25 |" in lines
    assert "| valence | 0.200 | 0.050 | 0.25 |" in lines  # sizes: the sign does not cancel
    assert shift_comparison({"models": {DEFAULT_INT8: model(0.05)}}, ["ravdess"]) == []


def test_docs_and_info_state_the_measured_8_khz_effect(tiny_model_path, capsys):
    measured = json.loads((REPO / "benchmarks" / "quality.json").read_text())["narrowband"]
    int8 = measured["models"]["student int8 (runtime)"]
    readme = " ".join((REPO / "docs" / "models.md").read_text(encoding="utf-8").split())
    assert f"to **{int8['labels']['score']:.3f}**" in readme
    for dim in ("arousal", "dominance", "valence"):
        shifts = [corpus[dim]["mean_shift"] for corpus in int8["shift"].values()]
        low, high = sorted([max(shifts, key=abs), min(shifts, key=abs)], key=abs)
        assert f"{dim} {low:+.2f} to {high:+.2f}" in readme
    assert main(["info", str(tiny_model_path)]) == 0
    assert "8 kHz (telephone) audio" in capsys.readouterr().out
