"""benchmarks/quality.py helpers: the loudness score, the random-gain wrapper, the markdown."""

import numpy as np

from benchmarks.quality import (
    DEFAULT_FP32,
    DEFAULT_INT8,
    STREAM_FP32,
    V1_INT8,
    markdown,
    mean_energy_db,
    replacement_comparison,
    stream_comparison,
    with_random_gain,
)


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


def test_the_published_student_is_compared_with_the_default_corpus_by_corpus():
    def scores(ccc: float, auc: float) -> dict:
        return {"ccc_mean": ccc, "auc_arousal": auc, "auc_valence": float("nan")}

    results = {
        "student int8 (runtime)": {"ravdess": scores(0.40, 0.90), "turev": scores(0.50, 0.8)},
        "published-architecture student int8 (runtime)": {
            "ravdess": scores(0.45, 0.92),
            "turev": scores(0.48, 0.85),
        },
    }
    report = {
        "command": "python -m benchmarks.quality",
        "machine": {"date_utc": "today", "cpu": "cpu", "cores_logical": 2, "git": "abc"},
        "seconds": 1.0,
        "corpora": ["ravdess", "turev"],
        "dev_clips": {"ravdess": 10, "turev": 10},
        "results": {k: {**v, "score": 0.0} for k, v in results.items()},
        "models": {},
        "not_available": {},
    }
    text = markdown(report)
    assert "| ravdess | int8 (mean CCC) | 0.400 | 0.450 | +0.050 |" in text
    assert "| turev | int8 (mean CCC) | 0.500 | 0.480 | -0.020 |" in text
    assert "| ravdess | int8 (AUC arousal) | 0.900 | 0.920 | +0.020 |" in text
    assert "(AUC valence)" not in text  # undefined here: no row
    assert "has a lower int8 mean CCC than the default on turev." in text
    report["results"]["published-architecture student int8 (runtime)"]["turev"]["ccc_mean"] = 0.5
    assert "at least as good as the default (int8 mean CCC) on every corpus" in markdown(report)


def test_the_streaming_native_student_is_set_beside_the_re_scoring_one_with_the_rule():
    report = {
        "corpora": ["ravdess", "nemo"],
        "results": {
            DEFAULT_FP32: {
                "ravdess": {"ccc_mean": 0.40},
                "nemo": {"ccc_mean": 0.30},
                "score": 0.35,
            },
            STREAM_FP32: {
                "ravdess": {"ccc_mean": 0.41},
                "nemo": {"ccc_mean": 0.28},
                "score": 0.345,
            },
        },
    }
    lines = stream_comparison(report)
    assert "| ravdess | 0.400 | 0.410 | +0.010 |" in lines
    assert "| mean | 0.350 | 0.345 | -0.005 |" in lines
    assert "is within 0.005 mean CCC" in lines[-1] and "LOCO run of students" in lines[-1]
    report["results"][STREAM_FP32]["score"] = 0.3449
    assert "not within 0.005" in stream_comparison(report)[-1]
    assert "stays the re-scoring one" in stream_comparison(report)[-1]
    del report["results"][STREAM_FP32]
    assert stream_comparison(report) == []


def test_the_bundled_model_is_set_beside_v1_with_the_replacement_rule():
    def scores(a: float, v: float | None = None) -> dict:
        return {"ccc_arousal": a} | ({} if v is None else {"ccc_valence": v})

    report = {
        "corpora": ["ravdess", "baved"],
        "results": {
            V1_INT8: {"ravdess": scores(0.50, 0.10), "baved": scores(0.60), "score": 0.45},
            DEFAULT_INT8: {"ravdess": scores(0.52, 0.095), "baved": scores(0.70), "score": 0.50},
        },
    }
    lines = replacement_comparison(report)
    assert "| ravdess | valence | 0.100 | 0.095 | -0.005 |" in lines
    assert "| baved | arousal | 0.600 | 0.700 | +0.100 |" in lines
    assert not any("| baved | valence" in line for line in lines)  # not labelled: no row
    assert "| mean | | 0.450 | 0.500 | +0.050 |" in lines
    assert "meets the rule" in lines[-1]
    report["results"][DEFAULT_INT8]["ravdess"]["ccc_valence"] = 0.089
    assert "does not meet the rule: ravdess valence -0.011" in replacement_comparison(report)[-1]
    report["results"][DEFAULT_INT8]["ravdess"]["ccc_valence"] = 0.10
    report["results"][DEFAULT_INT8]["score"] = 0.45
    assert "does not meet the rule: the mean is not higher" in replacement_comparison(report)[-1]
    del report["results"][V1_INT8]
    assert replacement_comparison(report) == []


def test_scores_of_an_absent_file_are_carried_over_only_from_a_run_of_that_file():
    from benchmarks.quality import CORPORA, carry_over

    earlier = {
        "corpora": list(CORPORA),
        "machine": {"date_utc": "2026-11-26 15:28 UTC", "git": "0dbe99c"},
        "models": {"m": "runs/m.pt"},
        "results": {"m": {"ravdess": {"ccc_mean": 0.2, "auc_valence": None}, "score": 0.2}},
    }
    scores, note = carry_over(earlier, "m", "runs/m.pt")
    assert scores["ravdess"]["ccc_mean"] == 0.2 and np.isnan(scores["ravdess"]["auc_valence"])
    expected = "runs/m.pt (absent here: scores carried over from the run of "
    assert note == expected + "2026-11-26 15:28 UTC, git 0dbe99c)"
    assert carry_over(earlier, "m", "runs/other.pt") is None  # another file: not its scores
    assert carry_over(earlier, "n", "runs/m.pt") is None
    assert carry_over(None, "m", "runs/m.pt") is None
    # carried over again from a report that had carried them: the measuring run stays named
    later = {**earlier, "machine": {"date_utc": "2026-12-01", "git": "abc"}, "models": {"m": note}}
    assert carry_over(later, "m", "runs/m.pt")[1] == note
    # scored on other corpora (before nEMO was added): not comparable, so not carried
    three = {**earlier, "corpora": ["ravdess", "baved", "turev"]}
    assert carry_over(three, "m", "runs/m.pt") is None
