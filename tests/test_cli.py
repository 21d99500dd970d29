"""The ``edgeser`` command: its csv format (a stable interface), errors, stream and info."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import SPEECH_WAV, voice_like

import edgeser
from edgeser.cli import main
from edgeser.contract import SAMPLE_RATE

pytestmark = pytest.mark.usefixtures("use_backend")  # each test on both backends

HEADER = "file,start_s,end_s,arousal,dominance,valence"


def _edgeser(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the command in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "edgeser", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def audio_folder(tmp_path):
    """A folder with two voice files (one nested, one 44.1 kHz stereo) and a non-audio file."""
    import soundfile as sf

    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "b.wav", voice_like(2.3), SAMPLE_RATE)
    x = voice_like(1.4, rate=44_100, seed=2)
    sf.write(tmp_path / "sub" / "a.flac", np.stack([x, x], axis=1), 44_100)
    (tmp_path / "sub" / "readme.txt").write_text("not audio")
    return tmp_path


def test_csv_is_exactly_one_aggregate_row_per_file(tiny_model, tiny_model_path, audio_folder):
    run = _edgeser("score", "--model", str(tiny_model_path), str(audio_folder))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == HEADER
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    files = [str(audio_folder / "b.wav"), str(audio_folder / "sub" / "a.flac")]
    assert [row["file"] for row in rows] == files  # walked, sorted, as found
    for row, path in zip(rows, files, strict=True):
        aggregate = tiny_model.score_file(path).aggregate
        assert row["start_s"] == "0.000"
        assert row["end_s"] == f"{aggregate.end_s:.3f}"
        assert [row[k] for k in ("arousal", "dominance", "valence")] == [
            f"{x:.4f}" for x in aggregate.adv
        ]
    assert run.stderr == ""


def test_csv_per_window_rows(tiny_model, tiny_model_path, capsys):
    assert main(["score", "--model", str(tiny_model_path), "--per-window", str(SPEECH_WAV)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.reader(io.StringIO(out)))
    windows = tiny_model.score_file(SPEECH_WAV).windows
    assert rows[0] == HEADER.split(",")
    assert len(rows) == 1 + len(windows)
    np.testing.assert_allclose(
        [(float(r[1]), float(r[2])) for r in rows[1:]],
        [(w.start_s, w.end_s) for w in windows],
        atol=5e-4,
    )
    assert {r[0] for r in rows[1:]} == {str(SPEECH_WAV)}


def test_window_hop_and_no_vad_flags(tiny_model_path, write_wav, capsys):
    path = write_wav("gap.wav", np.r_[voice_like(1.0), np.zeros(2 * SAMPLE_RATE, np.float32)])
    args = ["score", "--model", str(tiny_model_path), "--per-window", str(path)]
    assert main([*args, "--window", "1.5", "--hop", "0.5"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]
    assert [r[1] for r in rows] == ["0.000", "0.500", "1.000", "1.500"]
    assert rows[-1][3:] == ["", "", ""]  # silence: not scored, empty values
    assert main([*args, "--window", "1.5", "--hop", "0.5", "--no-vad"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]
    assert all(r[3] for r in rows[:2])  # every window with signal is scored...
    assert all(r[3:] == ["", "", ""] for r in rows[2:])  # ...digital silence never is


def test_bad_file_is_reported_and_the_others_still_scored(tiny_model_path, audio_folder, capsys):
    broken = audio_folder / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    missing = audio_folder / "missing.wav"
    code = main(["score", "--model", str(tiny_model_path), str(audio_folder), str(missing)])
    out, err = capsys.readouterr()
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["file"] for r in rows] == [
        str(audio_folder / "b.wav"),
        str(audio_folder / "sub" / "a.flac"),
    ]
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"edgeser: {broken}: not readable as audio")
    assert lines[1] == f"edgeser: {missing}: no such file"


def test_jsonl_and_table_formats(tiny_model, tiny_model_path, capsys):
    assert (
        main(["score", "--model", str(tiny_model_path), "--format", "jsonl", str(SPEECH_WAV)]) == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    aggregate = tiny_model.score_file(SPEECH_WAV).aggregate
    assert row == {"file": str(SPEECH_WAV), **aggregate.to_dict()}
    assert (
        main(["score", "--model", str(tiny_model_path), "--format", "table", str(SPEECH_WAV)]) == 0
    )
    header, body = capsys.readouterr().out.splitlines()
    assert header.split() == HEADER.split(",")
    assert body.split() == [str(SPEECH_WAV), "0.000", f"{aggregate.end_s:.3f}"] + [
        f"{x:.4f}" for x in aggregate.adv
    ]


def test_stream_from_file_prints_json_lines_and_a_summary(tiny_model, tiny_model_path, capsys):
    args = ["stream", "--model", str(tiny_model_path), "--from-file", str(SPEECH_WAV)]
    assert main(args) == 0  # stdout is not a terminal here: JSON lines
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    windows = tiny_model.score_file(SPEECH_WAV).windows
    assert lines == [w.to_dict() for w in windows]
    assert err.strip() == (
        f"edgeser: stream stopped: {len(windows)} readings ({len(windows)} voiced), "
        "0 skipped windows, 0 dropped blocks, 0 overflows, 0 bad blocks"
    )


def test_stream_bars_format(tiny_model_path, capsys):
    args = ["stream", "--model", str(tiny_model_path), "--from-file", str(SPEECH_WAV)]
    assert main([*args, "--format", "bars", "--duration", "1.5"]) == 0
    out = capsys.readouterr().out
    frames = out.split("\r")[1:]
    assert len(frames) == 3 and out.endswith("\n")
    assert frames[0].startswith("    1.00s  A ") and " D " in frames[0] and " V " in frames[0]


def _ignore_sigint() -> None:
    """preexec_fn: start the child with SIGINT ignored, as a script's background job is."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("sig", "preexec"),
    [(signal.SIGINT, None), (signal.SIGINT, _ignore_sigint), (signal.SIGTERM, None)],
    ids=["sigint", "sigint-inherited-ignored", "sigterm"],
)
def test_ctrl_c_stops_a_live_stream_cleanly_with_a_summary(
    tiny_model_path, write_wav, sig, preexec
):
    # The flaky case (issue 11): run in a background job of a script, the child inherits
    # SIGINT ignored and played its file to the end. The stream now handles the signal itself.
    path = write_wav("long.wav", voice_like(30.0))
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeser", "stream", "--model", str(tiny_model_path),
         "--from-file", str(path), "--realtime"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec,
    )  # fmt: skip
    try:
        first = json.loads(process.stdout.readline())
        process.send_signal(sig)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert first["end_s"] == 1.0
    assert process.returncode == 0
    assert "Traceback" not in err
    assert err.strip().startswith("edgeser: stream stopped: ")
    assert len(out.splitlines()) < 10  # stopped, not played to the end


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", str(SPEECH_WAV)], "no default model is bundled"),
        (["score", "--model", str(SPEECH_WAV), str(SPEECH_WAV)], "not a loadable ONNX model"),
        (["info", "missing.onnx"], "missing.onnx: no such model file"),
        (["stream", "--device", "no such microphone 42"], "input device|PortAudio"),
        (["stream", "--realtime"], "--realtime paces --from-file"),
        (["stream", "--from-file", str(SPEECH_WAV), "--reconnect"], "--reconnect is for a device"),
    ],
    ids=[
        "no-default",
        "not-onnx",
        "info-missing",
        "unknown-device",
        "realtime-alone",
        "reconnect-file",
    ],
)
def test_errors_are_one_line_with_exit_code_2(args, message, tiny_model_path, monkeypatch, capsys):
    monkeypatch.setattr("edgeser.model.DEFAULT_MODEL", tiny_model_path.parent / "absent.onnx")
    if args[0] == "stream" and "--device" in args:
        args = [*args, "--model", str(tiny_model_path)]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("edgeser: error: ")
    assert re.search(message, err)


def test_unknown_device_in_a_fresh_process_is_one_line(tiny_model_path):
    run = _edgeser("stream", "--model", str(tiny_model_path), "--device", "no such microphone")
    assert run.returncode == 2
    assert run.stderr.startswith("edgeser: error: ") and "Traceback" not in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--window", "0.1"], "shorter than the model's minimum"), (["--hop", "2"], "hop 2.0 s")],
)
def test_bad_window_or_hop_is_an_error_before_any_output(tiny_model_path, flags, message, capsys):
    assert main(["score", "--model", str(tiny_model_path), *flags, str(SPEECH_WAV)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_info_prints_contract_and_model_card(tiny_model_path, capsys):
    assert main(["info", str(tiny_model_path)]) == 0
    out = capsys.readouterr().out
    assert "version:       tiny-test-1" in out
    assert "window / hop:  1 s / 0.25 s" in out
    assert "signal: tensor(float) ['batch', 'samples']" in out
    assert "adv: tensor(float) ['batch', 3]" in out
    card = json.loads(out.split("model card:\n", 1)[1])
    assert card == edgeser.load(tiny_model_path).info.card


def test_config_file_is_applied_and_flags_override_it(tiny_model_path, tmp_path, capsys):
    config = tmp_path / "runtime.toml"
    config.write_text(f'model = "{tiny_model_path}"\nwindow_s = 2.0\nhop_s = 1.0\n')
    assert main(["score", "--config", str(config), "--per-window", str(SPEECH_WAV)]) == 0
    starts = [r[1] for r in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert starts == ["0.000", "1.000", "2.000", "3.000", "4.000", "5.000", "5.066"]
    args = ["score", "--config", str(config), "--window", "3", "--per-window", str(SPEECH_WAV)]
    assert main(args) == 0
    starts = [r[1] for r in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert starts == ["0.000", "1.000", "2.000", "3.000", "4.000", "4.066"]
    config.write_text("threads = 1\nwindw_s = 2.0\n")
    assert main(["score", "--config", str(config), str(SPEECH_WAV)]) == 2
    assert "unknown key(s) windw_s" in capsys.readouterr().err
    config.write_text('threads = "two"\n')
    assert main(["score", "--config", str(config), str(SPEECH_WAV)]) == 2
    assert "threads must be int, got 'two'" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("edgeser") is None, reason="the console script is not on PATH")
def test_console_script_entry_point(tiny_model_path):
    run = subprocess.run(
        ["edgeser", "score", "--model", str(tiny_model_path), str(SPEECH_WAV)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == HEADER
