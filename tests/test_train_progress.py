"""The training progress bar shows the dev CCC only once there is one."""

from __future__ import annotations

from edgeser.distill.train import progress_fields


def test_no_dev_ccc_before_the_first_evaluation():
    assert progress_fields(0.51234, {}, 11.4) == {"loss": "0.512", "crops_s": "11"}


def test_dev_ccc_once_evaluated():
    fields = progress_fields(0.5, {"mean": 0.4321, "arousal": 0.6}, 11.0)
    assert fields == {"loss": "0.500", "dev_ccc": "0.432", "crops_s": "11"}


def test_an_undefined_dev_ccc_is_left_out_not_shown_as_nan():
    assert "dev_ccc" not in progress_fields(0.5, {"mean": float("nan")}, 11.0)
