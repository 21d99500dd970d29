"""Teacher ensembles: ``--teacher`` repeated (or a TOML list), the stored label is the mean of
the members' A/D/V after each one's affine calibration, and the store records the members."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from edgeser.distill.cli import main
from edgeser.distill.config import LabelConfig, TeacherCalibration, load_run_config
from edgeser.distill.data import CropAudio
from edgeser.distill.label import run_label
from edgeser.distill.store import LabelStore, StoreError
from edgeser.distill.teachers.ensemble import load_teachers
from edgeser.distill.teachers.loading import load_teacher
from test_distill_pipeline import write_corpus

from edgeser.errors import ConfigError

# Two tiny teachers that agree up to scale: "wide" reads 10x "narrow" + 5.
TINY_TEACHERS = """
import numpy as np

def narrow(waves):
    return np.array([[np.abs(w).mean(), w.std(), np.abs(np.diff(w)).mean()] for w in waves],
                    dtype=np.float32)

def wide(waves):
    return 10 * narrow(waves) + 5
"""
CALIBRATIONS = [TeacherCalibration(), TeacherCalibration([0.1] * 3, [-0.5] * 3)]


@pytest.fixture
def teachers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    (tmp_path / "edgeser_tiny_teachers.py").write_text(TINY_TEACHERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "edgeser_tiny_teachers:narrow", "edgeser_tiny_teachers:wide"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", speakers=2, files=3)


def config(corpus: Path, store: Path, teacher, calibration=()) -> LabelConfig:
    return LabelConfig(
        data=[str(corpus)], teacher=teacher, store=str(store), calibration=list(calibration),
        crops_per_file=2, min_crop_s=0.5, max_crop_s=0.5, num_threads=1,
    )  # fmt: skip


def test_the_label_is_the_mean_of_the_calibrated_members(corpus, teachers, tmp_path) -> None:
    store_dir = tmp_path / "labels"
    run_label(config(corpus, store_dir, list(teachers), CALIBRATIONS), progress=False)
    labels = LabelStore.open(store_dir).read()
    narrow, wide = (load_teacher(t) for t in teachers)
    waves = [CropAudio()(c) for c in labels.crops]
    a, b = narrow(waves).adv, wide(waves).adv
    expected = (a + (0.1 * b - 0.5)) / 2
    np.testing.assert_allclose(labels.adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(labels.adv, a, rtol=1e-4, atol=1e-5)  # calibrated: same scale
    assert not np.allclose((a + b) / 2, a, atol=1e-2)  # uncalibrated they would not be


def test_the_store_records_the_members_and_refuses_another_combination(
    corpus, teachers, tmp_path
) -> None:
    store_dir = tmp_path / "labels"
    run_label(config(corpus, store_dir, list(teachers), CALIBRATIONS), progress=False)
    meta = json.loads((store_dir / "store.json").read_text())
    assert meta["teacher"] == " + ".join(teachers)
    assert [m["spec"] for m in meta["members"]] == list(teachers)
    assert meta["members"][1]["scale"] == [0.1] * 3 and meta["members"][1]["offset"] == [-0.5] * 3
    assert meta["members"][0]["teacher_id"] == load_teacher(teachers[0]).teacher_id
    assert meta["teacher_id"].startswith("ensemble:2:")
    with pytest.raises(StoreError, match="holds labels of teacher ensemble:2:"):
        run_label(config(corpus, store_dir, list(teachers)), progress=False)  # no calibration


def test_one_teacher_stays_the_teacher_it_always_was(teachers) -> None:
    """Stores labelled by a single teacher before ensembles existed keep matching."""
    assert load_teachers([teachers[0]]).teacher_id == load_teacher(teachers[0]).teacher_id
    calibrated = load_teachers([teachers[0]], [TeacherCalibration([2.0] * 3, [0.0] * 3)])
    assert calibrated.teacher_id != load_teacher(teachers[0]).teacher_id


def test_repeated_teacher_flags_and_a_toml_list_give_the_same_ensemble(
    corpus, teachers, tmp_path, capsys
) -> None:
    by_flags = tmp_path / "flags"
    args = ["label", "--quiet", "--data", str(corpus), "--store", str(by_flags)]
    args += ["--teacher", teachers[0], "--teacher", teachers[1]]
    args += ["--calibration", "1,1,1:0,0,0", "--calibration", "0.1,0.1,0.1:-0.5,-0.5,-0.5"]
    args += ["--crops-per-file", "1", "--min-crop-s", "0.5", "--max-crop-s", "0.5"]
    assert main(args) == 0
    toml = tmp_path / "run.toml"
    toml.write_text(
        textwrap.dedent(f"""
        [label]
        data = ["{corpus}"]
        teacher = ["{teachers[0]}", "{teachers[1]}"]
        store = "{tmp_path / "toml"}"
        crops_per_file = 1
        min_crop_s = 0.5
        max_crop_s = 0.5

        [[label.calibration]]

        [[label.calibration]]
        scale = [0.1, 0.1, 0.1]
        offset = [-0.5, -0.5, -0.5]
        """)
    )
    assert load_run_config(toml).label.teachers == list(teachers)
    assert main(["label", "--quiet", "--config", str(toml)]) == 0
    a, b = LabelStore.open(by_flags), LabelStore.open(tmp_path / "toml")
    assert a.teacher_id == b.teacher_id
    np.testing.assert_array_equal(a.read().adv, b.read().adv)


def test_a_calibration_per_teacher_or_none(corpus, teachers, tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match=re.escape("1 calibration(s) for 2 teacher(s)")):
        load_teachers(list(teachers), CALIBRATIONS[:1])
    args = ["label", "--data", str(corpus), "--store", str(tmp_path / "s")]
    args += ["--teacher", teachers[0], "--teacher", teachers[1], "--calibration", "1,1,1:0,0,0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeser-distill: error: label.calibration: 1 calibration(s)")
    assert err.count("\n") == 1
    with pytest.raises(ConfigError, match="3 values each"):
        config(corpus, tmp_path, list(teachers), [TeacherCalibration([1.0], [0.0])]).validate()
