"""benchmarks/quality.py helpers: the loudness score, the random-gain wrapper, the markdown."""

import numpy as np

from benchmarks.quality import markdown, mean_energy_db, with_random_gain


def test_loudness_is_mean_frame_energy_in_db():
    rng = np.random.default_rng(0)
    quiet = (0.01 * rng.standard_normal(16_000)).astype(np.float32)
    assert abs(mean_energy_db(quiet) - (-40.0)) < 0.5  # 0.01 RMS = -40 dB
    assert abs(mean_energy_db(10 * quiet) - mean_energy_db(quiet) - 20.0) < 1e-4
    assert np.isfinite(mean_energy_db(quiet[:100]))  # shorter than one frame: padded


def test_random_gain_changes_loudness_and_is_reproducible():
    audio = [np.full(4_000, 0.1, np.float32) for _ in range(8)]

    def loudness(batch):
        return np.array([[mean_energy_db(a)] * 3 for a in batch])

    shifted = with_random_gain(loudness)(audio)
    assert np.ptp(shifted[:, 0]) > 1.0  # the clips now differ in level
    np.testing.assert_array_equal(shifted, with_random_gain(loudness)(audio))


def test_markdown_has_one_table_per_corpus_and_dashes_for_undefined_figures():
    scores = {"ccc_arousal": 0.5, "ccc_mean": 0.5, "auc_arousal": 0.9, "auc_valence": float("nan")}
    report = {
        "command": "python -m benchmarks.quality",
        "machine": {"date_utc": "today", "cpu": "cpu", "cores_logical": 2, "git": "abc"},
        "seconds": 1.0,
        "corpora": ["baved"],
        "dev_clips": {"baved": 10},
        "results": {"model a": {"baved": scores, "score": 0.5}},
        "models": {"model a": "a.onnx"},
        "not_available": {"model b": "b.pt is absent"},
    }
    text = markdown(report)
    assert "## baved (10 dev clips)" in text
    assert "| model a | 0.500 | - | - | 0.900 | - |" in text
    assert "model b: not available (b.pt is absent)" in text
