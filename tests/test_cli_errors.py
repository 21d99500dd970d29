"""Every command-line error of the three commands is one line in words, exit code 2; every
number from a flag or a TOML file is range-checked, naming the flag or the file and key."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import SPEECH_WAV

from edgeser.cli import main


def _one_line_error(capsys, prog: str = "edgeser") -> str:
    """The single stderr line of a failed command (nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: "), err
    assert "usage:" not in err and "Traceback" not in err
    return err


def _exit_code(call) -> int:
    """The exit code of ``call()``, whether it returns it or argparse raises SystemExit."""
    try:
        return call()
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "--threads", "two", "x.wav"], "argument --threads: expected a whole number"),
        (["score", "--bogus", "x.wav"], "unrecognized arguments: --bogus"),
        (["score"], "the following arguments are required: PATH"),
        (["score", "--format", "xml", "x.wav"], "invalid choice: 'xml'"),
        ([], "the following arguments are required: COMMAND"),
        (["stream", "--smoothing", "soft"], "argument --smoothing: expected a number, got 'soft'"),
    ],
)
def test_argument_errors_are_one_line_in_words(args, message, capsys):
    assert _exit_code(lambda: main(args)) == 2
    err = _one_line_error(capsys)
    assert message in err
    assert "_positive" not in err and "invalid int value" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hop", "0.00001"], "argument --hop: must be in [0.01, 60] s, got 0.00001"),
        (["--window", "inf", "--hop", "inf"], "argument --window: expected a finite number"),
        (["--window", "1e6"], "argument --window: must be in (0, 60] s, got 1e6"),
        (["--vad-threshold", "nan"], "argument --vad-threshold: expected a finite number"),
        (["--vad-threshold", "20"], "argument --vad-threshold: must be in [-120, 0] dBFS"),
        (["--threads", "10000"], "argument --threads: must be a whole number from 1 to 256"),
        (["--threads", "0"], "argument --threads: must be a whole number from 1 to 256"),
    ],
)
def test_out_of_range_flags_are_refused_before_anything_runs(flags, message, capsys):
    assert _exit_code(lambda: main(["score", *flags, str(SPEECH_WAV)])) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--smoothing", "3"], "argument --smoothing: must be in (0, 1], got 3"),
        (["--duration", "inf"], "argument --duration: expected a finite number"),
        (["--duration", "0"], "argument --duration: must be in (0, 1e+09] s"),
    ],
)
def test_out_of_range_stream_flags_are_refused(flags, message, capsys):
    assert _exit_code(lambda: main(["stream", "--from-file", str(SPEECH_WAV), *flags])) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("smoothing = 3\n", "smoothing must be in (0, 1], got 3"),
        ("hop_s = 0.00001\n", "hop_s must be in [0.01, 60] s, got 1e-05"),
        ("window_s = inf\n", "window_s must be in (0, 60] s, got inf"),
        ("vad_threshold_db = nan\n", "vad_threshold_db must be in [-120, 0] dBFS, got nan"),
        ("threads = 10000\n", "threads must be a whole number from 1 to 256, got 10000"),
        ("max_pending = 0\n", "max_pending must be a whole number from 1 to 100000 blocks"),
        ('score_format = "xml"\n', "score_format must be one of csv, jsonl, table, got 'xml'"),
        ('stream_format = "table"\n', "stream_format must be one of auto, bars, jsonl"),
        ("per_window = 1\n", "per_window must be bool, got 1"),
    ],
)
@pytest.mark.parametrize("command", ["score", "stream"])
def test_a_config_file_is_checked_the_same_way_by_every_command(
    tiny_model_path, tmp_path, capsys, command, text, message
):
    config = tmp_path / "bad.toml"
    config.write_text(f'model = "{tiny_model_path}"\n{text}')
    target = [str(SPEECH_WAV)] if command == "score" else ["--from-file", str(SPEECH_WAV)]
    assert main([command, "--config", str(config), *target]) == 2
    assert f"edgeser: error: {config}: {message}" in _one_line_error(capsys)


def test_output_settings_are_config_keys(tiny_model_path, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'model = "{tiny_model_path}"\nscore_format = "jsonl"\nper_window = true\n')
    assert main(["score", "--config", str(config), str(SPEECH_WAV)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and all(line.startswith("{") for line in lines)
    assert main(["score", "--config", str(config), "--format", "csv", str(SPEECH_WAV)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][0] == "file" and len(rows) == len(lines) + 1  # flags win, per_window kept
