"""``--teacher reference`` (no path) is the reference teacher bundled with the package."""

from __future__ import annotations

from pathlib import Path

import edgeser.distill
import numpy as np
import pytest
from edgeser.distill.teachers.loading import REFERENCE_WEIGHTS, load_teacher
from edgeser.distill.teachers.reference import load_reference_teacher


def test_the_bundled_reference_teacher_is_installed_with_the_package():
    package = Path(edgeser.distill.__file__).resolve().parent
    assert package / "weights" / "reference_teacher.pt" == REFERENCE_WEIGHTS
    assert REFERENCE_WEIGHTS.is_file()


@pytest.mark.parametrize("spec", ["reference", "reference:"])
def test_reference_without_a_path_is_the_bundled_teacher(spec):
    teacher = load_teacher(spec)
    bundled = load_reference_teacher(REFERENCE_WEIGHTS)
    assert teacher.teacher_id == bundled.teacher_id
    clip = [np.sin(np.linspace(0, 400, 16_000)).astype(np.float32)]
    np.testing.assert_array_equal(teacher(clip).adv, bundled(clip).adv)
