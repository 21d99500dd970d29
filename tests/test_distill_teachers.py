"""Teacher resolution: ONNX files and audonnx folders (real onnxruntime sessions of models
exported here), ``module:attr`` callables, and the errors for specs that are not teachers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from edgeser.distill.teachers.base import TeacherOutput
from edgeser.distill.teachers.loading import TeacherError, check_output, load_teacher
from torch import nn


class Stats(nn.Module):
    """[B, T] waveform -> logits [B, 3] and hidden_states [B, 4] from simple statistics."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, signal: torch.Tensor):
        diff = signal[:, 1:] - signal[:, :-1]
        feats = torch.stack(
            [signal.abs().mean(1), diff.abs().mean(1), signal.max(1).values, signal.mean(1)], 1
        )
        hidden = torch.tanh(self.proj(feats))
        return self.head(hidden), hidden


def export(path, batch_axis: bool = True):
    axes = {"signal": {1: "time"}, "logits": {}, "hidden_states": {}}
    if batch_axis:
        axes = {
            "signal": {0: "batch", 1: "time"},
            "logits": {0: "batch"},
            "hidden_states": {0: "batch"},
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Stats().eval(),
            (torch.randn(1, 16000),),
            str(path),
            dynamo=False,
            input_names=["signal"],
            output_names=["logits", "hidden_states"],
            dynamic_axes=axes,
        )
    return path


def expected(xs: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [
                Stats()(torch.from_numpy((x - x.mean()) / np.sqrt(x.var() + 1e-7))[None])[0].numpy()
                for x in xs
            ]
        )


def waves(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (rng.uniform(0.1, 1) * rng.standard_normal(n)).astype(np.float32)
        for n in (8000, 12000, 8000)
    ]


def test_bare_onnx_file(tmp_path):
    teacher = load_teacher(str(export(tmp_path / "teacher.onnx")), device="cpu")
    out = teacher(waves())
    assert teacher.teacher_id.startswith("onnx:")
    np.testing.assert_allclose(out.adv, expected(waves()), atol=1e-5)
    assert out.embedding.shape == (3, 4)


def test_audonnx_folder_with_label_order_and_fixed_batch(tmp_path):
    export(tmp_path / "model.onnx", batch_axis=False)
    (tmp_path / "model.yaml").write_text(
        "$audonnx.core.model.Model==0.3.3:\n  path: model.onnx\n  labels:\n"
        "    hidden_states: null\n    logits:\n    - valence\n    - arousal\n    - dominance\n"
        "  transform: null\n"
    )
    teacher = load_teacher(str(tmp_path), device="cpu")
    assert not teacher.batched
    np.testing.assert_allclose(teacher(waves()).adv, expected(waves())[:, [1, 2, 0]], atol=1e-5)


def test_module_attr_callable_and_teacher_objects(tmp_path, monkeypatch):
    (tmp_path / "edgeser_test_teachers.py").write_text(
        "import numpy as np\n"
        "def loudness(waves):\n    return [[float(np.abs(w).mean())] * 3 for w in waves]\n"
        "class Fixed:\n    teacher_id = 'fixed:1'\n"
        "    def __call__(self, waves):\n        return np.zeros((len(waves), 3))\n"
        "fixed = Fixed()\nnot_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    wrapped = load_teacher("edgeser_test_teachers:loudness")
    assert wrapped.teacher_id.startswith("callable:edgeser_test_teachers:loudness:")
    out = check_output(wrapped(waves()), 3, wrapped.teacher_id)
    np.testing.assert_allclose(out.adv[:, 0], [np.abs(w).mean() for w in waves()], rtol=1e-6)
    assert load_teacher("edgeser_test_teachers:fixed").teacher_id == "fixed:1"
    with pytest.raises(TeacherError, match="neither a Teacher nor callable"):
        load_teacher("edgeser_test_teachers:not_callable")
    with pytest.raises(TeacherError, match="has no 'missing'"):
        load_teacher("edgeser_test_teachers:missing")
    with pytest.raises(TeacherError, match="cannot import"):
        load_teacher("edgeser_no_such_module:teacher")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("does/not/exist", "not found"),
        ("reference:/no/such/reference.pt", "no such file"),
        ("/no/such/teacher.onnx", "no such ONNX file"),
    ],
)
def test_unknown_teacher_specs_are_clear_errors(spec, message):
    with pytest.raises(TeacherError, match=message):
        load_teacher(spec)


def test_folder_that_is_no_teacher_and_broken_onnx(tmp_path):
    with pytest.raises(TeacherError, match="not a teacher"):
        load_teacher(str(tmp_path))
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(TeacherError, match="not loadable"):
        load_teacher(str(tmp_path / "broken.onnx"))


def test_wrong_teacher_outputs_are_caught():
    with pytest.raises(TeacherError, match="shape"):
        check_output(TeacherOutput(np.zeros((2, 2))), 2, "t")
    with pytest.raises(TeacherError, match="NaN"):
        check_output(TeacherOutput(np.full((2, 3), np.nan)), 2, "t")
