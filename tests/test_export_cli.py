"""edgeser-export settings and refusals: TOML config, clear errors, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from edgeser.distill.student import StudentConfig, Wav2Small, save_student
from edgeser.export.cli import main
from edgeser.export.config import ExportConfig

from edgeser.errors import ConfigError


@pytest.fixture
def untrained(tmp_path: Path) -> Path:
    """A freshly initialised student checkpoint (export works on any weights)."""
    torch.manual_seed(0)
    path = tmp_path / "untrained.pt"
    save_student(path, Wav2Small(StudentConfig.preset("wav2small2")).eval(), teacher_id="none")
    return path


def test_toml_settings_load_with_overrides_and_reject_unknown_or_mistyped_keys(
    tmp_path: Path,
) -> None:
    toml = tmp_path / "export.toml"
    toml.write_text(
        '[export]\ncheckpoint = "s.pt"\nout = "models"\nint8 = true\n'
        'calibration = ["audio", "m.csv"]\nmin_ccc = 0.98\nwindow_s = 2.0\n'
    )
    config = ExportConfig.from_toml(toml, out="elsewhere", hop_s=0.5)
    assert config.checkpoint == Path("s.pt") and config.out == Path("elsewhere")
    assert config.calibration == (Path("audio"), Path("m.csv"))
    assert (config.int8, config.min_ccc, config.window_s, config.hop_s) == (True, 0.98, 2.0, 0.5)
    assert config.stem == "s" and config.opset == 17
    toml.write_text('checkpoint = "s.pt"\nout = "o"\nmin_cc = 0.9\n')
    with pytest.raises(ConfigError, match=r"unknown export setting.*min_cc"):
        ExportConfig.from_toml(toml)
    toml.write_text('checkpoint = "s.pt"\nout = "o"\nint8 = "yes"\n')
    with pytest.raises(ConfigError, match="int8 = 'yes' is not a bool"):
        ExportConfig.from_toml(toml)
    toml.write_text('checkpoint = "s.pt"\nout = "o"\nmin_ccc = 1.5\n')
    with pytest.raises(ConfigError, match="min_ccc must be in"):
        ExportConfig.from_toml(toml)
    toml.write_text('checkpoint = "s.pt"\nout = "o"\nint8 = true\n')
    with pytest.raises(ConfigError, match="needs calibration audio"):
        ExportConfig.from_toml(toml)
    toml.write_text("checkpoint = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ExportConfig.from_toml(toml)
    with pytest.raises(ConfigError, match="no such config file"):
        ExportConfig.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, ckpt: [str(d / "foreign.pt"), "--out", str(d / "o")], "unknown architecture"),
        (lambda d, ckpt: [str(ckpt), "--out", str(d / "o"), "--int8"], "needs calibration audio"),
        (
            lambda d, ckpt: [*(str(ckpt), "--out", str(d / "o")), "--int8", "--calibration", "x"],
            "calibration set: x: no such file, folder or manifest",
        ),
        (lambda d, ckpt: [str(ckpt), "--out", str(d)], "exists; pass --force"),
        (lambda d, ckpt: [], "missing export setting(s): checkpoint"),
        (lambda d, ckpt: [str(ckpt), "--out", str(d / "o"), "--hop", "9"], "hop_s <= window_s"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(
    make_args, message: str, untrained: Path, tmp_path: Path, capsys
) -> None:
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    assert main(make_args(tmp_path, untrained)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1].startswith("edgeser-export: error: ")
    assert message in captured.err
    assert not (tmp_path / "o").exists()


def test_cli_force_writes_into_an_existing_folder_and_prints_the_table(
    untrained: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "models"
    out.mkdir()
    assert main([str(untrained), "--out", str(out), "--force", "--name", "w2s2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "size", "parity"]
    assert [line.split()[0] for line in lines[1:]] == ["w2s2.onnx", "w2s2.json"]
    assert sorted(p.name for p in out.iterdir()) == ["w2s2.json", "w2s2.onnx"]


def test_without_out_the_files_go_under_runs_which_git_ignores(
    untrained: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The README's export command in a clone leaves nothing untracked (it wrote models/)."""
    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    assert main([str(untrained)]) == 0
    written = sorted(p.relative_to(clone).as_posix() for p in clone.rglob("*") if p.is_file())
    folder = "runs/export/untrained"
    assert written == [f"{folder}/untrained.json", f"{folder}/untrained.onnx"]
    repo = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", *written],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ignored.stdout.split() == written, f"not all ignored by {repo}/.gitignore"


def test_console_script_refuses_an_unknown_checkpoint_without_a_traceback(tmp_path: Path) -> None:
    """The installed entry point, in a real subprocess."""
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x00not a checkpoint")
    script = Path(sys.executable).parent / "edgeser-export"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "edgeser.export.cli"]
    done = subprocess.run(
        [*command, str(bogus), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "not a student checkpoint (not a file written by torch.save)" in done.stderr
    assert not (tmp_path / "o").exists()
