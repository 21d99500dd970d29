"""``edgeser-distill`` and ``edgeser-export``: one-line errors, help in words, and a clear
answer on a runtime-only install that lacks their extras."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from edgeser.distill import cli as distill_cli
from edgeser.distill.config import (
    AugmentConfig,
    EvalConfig,
    LabelConfig,
    TrainConfig,
    load_run_config,
)
from edgeser.export import cli as export_cli

from edgeser.errors import ConfigError

# Run a command's main() in a fresh Python where the workstation packages cannot be imported,
# as after `pip install .` (the runtime alone).
WITHOUT_EXTRAS = """
import sys
for name in ("torch", "transformers", "safetensors", "onnx", "onnxscript", "onnx_ir", "tqdm",
             "yaml"):
    sys.modules[name] = None
from edgeser.{module}.cli import main
sys.exit(main(["--help"]))
"""


@pytest.mark.parametrize(("module", "extra"), [("distill", "distill"), ("export", "export")])
def test_a_runtime_only_install_says_which_extra_to_install(module, extra):
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"edgeser-{module}: error: needs the [{extra}] extra (torch")
    assert f"pip install '.[{extra}]'" in run.stderr


def _one_line_exit_2(call, capsys, prog: str) -> str:
    with pytest.raises(SystemExit) as caught:
        call()
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: ") and "usage:" not in err
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "many"], "argument --epochs: expected a whole number, got 'many'"),
        (["label", "--min-crop-s", "1s"], "argument --min-crop-s: expected a number, got '1s'"),
        (["distil"], "invalid choice: 'distil'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_distill_argument_errors_are_one_line(args, message, capsys):
    err = _one_line_exit_2(lambda: distill_cli.main(args), capsys, "edgeser-distill")
    assert message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.pt", "--min-ccc", "high"], "argument --min-ccc: expected a number, got 'high'"),
        (["x.pt", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_export_argument_errors_are_one_line(args, message, capsys):
    err = _one_line_exit_2(lambda: export_cli.main(args), capsys, "edgeser-export")
    assert message in err


@pytest.mark.parametrize("cls", [LabelConfig, AugmentConfig, TrainConfig, EvalConfig])
def test_every_distill_setting_has_a_sentence(cls):
    for f in dataclasses.fields(cls):
        if f.name != "augment":  # the nested table; its own fields are checked
            assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help"


def test_distill_help_gives_sentence_unit_default_and_toml_key(capsys):
    with pytest.raises(SystemExit):
        distill_cli.main(["label", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--min-crop-s MIN_CROP_S shortest crop, s; default 1.0 (TOML: [label] min_crop_s)" \
        in text
    assert "gain drawn from [low, high], dB; default -12.0 6.0" in text
    assert "TOML: [label] augment.gain_db_range" in text
    assert "--store-embeddings, --no-store-embeddings also store the teacher's embeddings; " \
        "default false" in text


@pytest.mark.parametrize("content", [b"not a checkpoint\n", bytes(range(256)) * 8])
def test_exporting_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(content)
    assert export_cli.main([str(bogus), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert f"{bogus}: not a student checkpoint (not a file written by torch.save)" in err
    assert "weights_only" not in err


def test_distill_numbers_from_toml_must_be_finite_and_probabilities_in_range(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[train]\nlr = nan\n")
    with pytest.raises(ConfigError, match=r"train\.lr: expected a finite number, got nan"):
        load_run_config(config)
    config.write_text('[label]\ndata = ["x"]\nteacher = "t"\nstore = "s"\n[label.augment]\n'
                      "p_noise = 1.5\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"label.augment.p_noise must be in \[0, 1\], got 1.5"):
        load_run_config(config).label.validate()
