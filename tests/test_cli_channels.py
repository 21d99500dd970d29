"""The command line's output channels, as a shell leaves them: stdout carries only the output and
stderr only our one-line messages, whatever happens to either (a reader that leaves, a full
disk, a descriptor closed with ``>&-``), whatever native libraries print, and however the
command is stopped (SIGINT, SIGTERM). Every test runs the real command in a fresh process."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SPEECH_WAV, tiny_model_info, voice_like

from edgeser.contract import INPUT_NAME, OUTPUT_ADV, SAMPLE_RATE

HEADER = "file,start_s,end_s,arousal,dominance,valence"
NO_SPACE = "edgeser: error: cannot write to standard output (No space left on device)"


def _run(args, *, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close=(), env=None, **kw):
    """``python -m edgeser ARGS`` in a fresh process; ``close``: descriptors the shell closed."""
    return subprocess.run(
        [sys.executable, "-m", "edgeser", *map(str, args)],
        stdout=stdout,
        stderr=stderr,
        text=True,
        timeout=120,
        preexec_fn=(lambda: [os.close(fd) for fd in close]) if close else None,
        env=env,
        **kw,
    )


def _reader_gone() -> int:
    """The write end of a pipe whose reader has already left (every write: EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    return write


def _lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.fixture
def many(tmp_path) -> Path:
    """A folder of 4 voice files and, sorted between them, 30 that are not audio: each of
    these is one message on stderr."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(4):
        sf.write(folder / f"{i:02d}a.wav", voice_like(1.5, seed=i), SAMPLE_RATE)
        for j in range(i * 10, i * 10 + (10 if i < 3 else 0)):
            (folder / f"{i:02d}b{j:02d}.wav").write_text("not audio")
    return folder


@pytest.fixture
def truncated(tmp_path) -> Path:
    """A WAV cut to a third of what its header declares."""
    path = tmp_path / "cut.wav"
    sf.write(path, voice_like(3.0), SAMPLE_RATE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


# -- item 3: a reader that leaves ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "table"])
def test_stderr_reader_leaving_cuts_neither_stdout_nor_the_exit_code(
    tiny_model_path, many, fmt
):  # `edgeser score many/ 2>&1 >out.csv | head -1`
    gone = _reader_gone()
    try:
        run = _run(["score", "--model", tiny_model_path, "--format", fmt, many], stderr=gone)
    finally:
        os.close(gone)
    assert run.returncode == 1  # 30 files could not be scored
    header = 0 if fmt == "jsonl" else 1
    assert len(_lines(run.stdout)) == header + 4  # every voice file's row


def test_stderr_reader_leaving_a_stream_keeps_its_readings_and_exit_code(
    tiny_model_path, truncated
):
    gone = _reader_gone()
    try:
        run = _run(["stream", "--model", tiny_model_path, "--from-file", truncated], stderr=gone)
    finally:
        os.close(gone)
    assert run.returncode == 1
    assert len(_lines(run.stdout)) >= 1 and all(json.loads(x) for x in _lines(run.stdout))


@pytest.mark.parametrize(
    "args",
    [
        ["score", "--format", "csv"],
        ["score", "--format", "jsonl", "--per-window"],
        ["score", "--format", "table"],
        ["stream", "--format", "jsonl", "--from-file"],
        ["info"],
    ],
    ids=["csv", "jsonl", "table", "stream", "info"],
)
def test_stdout_reader_leaving_ends_quietly_with_the_sigpipe_status(tiny_model_path, many, args):
    if args == ["info"]:
        target = [tiny_model_path]
    else:
        target = [many / "00a.wav" if "stream" in args else many, "--model", tiny_model_path]
    gone = _reader_gone()
    try:
        run = _run([*args, *target], stdout=gone)
    finally:
        os.close(gone)
    assert run.returncode == 128 + signal.SIGPIPE, run.stderr  # as `yes | head -1` ends
    assert "Traceback" not in run.stderr and "error" not in run.stderr
    assert "Exception ignored" not in run.stderr and "BrokenPipe" not in run.stderr


# -- item 8: a full disk, closed descriptors ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["score", "--format", "csv"],
        ["score", "--format", "jsonl"],
        ["score", "--format", "table"],
        ["stream", "--format", "jsonl", "--from-file"],
        ["stream", "--format", "bars", "--from-file"],
        ["info"],
    ],
    ids=["csv", "jsonl", "table", "stream-jsonl", "stream-bars", "info"],
)
def test_full_disk_is_one_line_and_exit_2(args):
    with open("/dev/full", "w") as full:
        run = _run([*args, SPEECH_WAV] if args != ["info"] else args, stdout=full)
    assert run.returncode == 2
    errors = [line for line in _lines(run.stderr) if "error" in line]
    assert errors == [NO_SPACE], run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr


@pytest.mark.parametrize("prog", ["export", "distill"])
def test_full_disk_is_one_line_for_the_workstation_commands(prog):
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [sys.executable, "-m", f"edgeser.{prog}.cli", "--help"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert run.returncode == 2
    assert _lines(run.stderr) == [NO_SPACE.replace("edgeser:", f"edgeser-{prog}:")]


@pytest.mark.parametrize(
    "args",
    [["score", SPEECH_WAV], ["stream", "--from-file", SPEECH_WAV], ["info"]],
    ids=["score", "stream", "info"],
)
def test_closed_stdout_is_one_line_and_exit_2(args):  # `edgeser ... >&-`
    run = _run(args, stdout=None, close=(1,))
    assert run.returncode == 2
    assert _lines(run.stderr)[-1:] == [
        "edgeser: error: cannot write to standard output (it was closed when the command started)"
    ]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "status", "first"),
    [
        (["score", SPEECH_WAV], 0, HEADER),
        (["stream", "--from-file", SPEECH_WAV], 0, '{"start_s": 0.0'),
        (["info"], 0, "model:"),
        (["score", "--format", "jsonl", "missing.wav", SPEECH_WAV], 1, '{"file": '),
    ],
    ids=["score", "stream", "info", "score-a-failure"],
)
def test_closed_stderr_loads_the_bundled_model_and_works(args, status, first):  # `2>&-`
    run = _run(args, stderr=None, close=(2,))
    assert run.returncode == status
    assert run.stdout.startswith(first), run.stdout
    assert "not a loadable ONNX model" not in run.stdout


# -- item 4: empty paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["score", ""],
        ["score", str(SPEECH_WAV), ""],
        ["score", "--model", "", str(SPEECH_WAV)],
        ["score", "--config", "", str(SPEECH_WAV)],
        ["stream", "--from-file", ""],
        ["stream", "--model", "", "--from-file", str(SPEECH_WAV)],
        ["info", ""],
    ],
)
def test_an_empty_path_is_a_usage_error(args, tmp_path):
    run = _run(args, cwd=tmp_path)  # not: the current folder, walked
    assert run.returncode == 2 and run.stdout == ""
    assert len(_lines(run.stderr)) == 1, run.stderr
    assert run.stderr.startswith("edgeser: error: argument ")
    assert run.stderr.endswith(": an empty path names no file or folder\n")


@pytest.mark.parametrize(
    ("prog", "args"),
    [
        ("export", ["", "--out", "x"]),
        ("export", ["model.pt", "--out", ""]),
        ("export", ["--config", ""]),
        ("distill", ["run", ""]),
        ("distill", ["check", "--store", ""]),
    ],
)
def test_an_empty_path_is_a_usage_error_for_the_workstation_commands(prog, args, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", f"edgeser.{prog}.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert len(_lines(run.stderr)) == 1 and "an empty path names no file" in run.stderr


# -- item 6: one exit code for one unreadable file, one message for one error -----------------


@pytest.mark.parametrize("content", [b"not audio", b""], ids=["text", "empty"])
def test_score_and_stream_give_the_same_exit_code_for_an_unreadable_file(
    tiny_model_path, tmp_path, content
):
    path = tmp_path / "text.wav"
    path.write_bytes(content)
    scored = _run(["score", "--model", tiny_model_path, path])
    streamed = _run(["stream", "--model", tiny_model_path, "--from-file", path])
    assert scored.returncode == streamed.returncode == 1
    message = _lines(scored.stderr)
    assert len(message) == 1 and _lines(streamed.stderr) == message


def test_a_truncated_file_is_reported_once_by_stream(tiny_model_path, truncated):
    run = _run(["stream", "--model", tiny_model_path, "--from-file", truncated])
    assert run.returncode == 1
    assert sum("truncated" in line for line in _lines(run.stderr)) == 1, run.stderr


# -- item 7: undecodable config ----------------------------------------------------------------

UNDECODABLE = {
    "latin-1": b"# Gr\xf6\xdfe\nthreads = 1\n",
    "binary": bytes(range(256)) * 4,
    "utf-16": "threads = 1\n".encode("utf-16"),
}


@pytest.mark.parametrize("content", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_an_undecodable_config_is_one_line_naming_the_file(tmp_path, content):
    config = tmp_path / "settings.toml"
    config.write_bytes(content)
    run = _run(["score", "--config", config, SPEECH_WAV])
    assert run.returncode == 2 and run.stdout == ""
    assert len(_lines(run.stderr)) == 1, run.stderr
    assert run.stderr.startswith(f"edgeser: error: {config}: not valid TOML")


@pytest.mark.parametrize("prog", ["export", "distill"])
def test_an_undecodable_config_is_one_line_for_the_workstation_commands(tmp_path, prog):
    config = tmp_path / "settings.toml"
    config.write_bytes(UNDECODABLE["latin-1"])
    args = ["--config", config] if prog == "export" else ["run", config]
    run = subprocess.run(
        [sys.executable, "-m", f"edgeser.{prog}.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert _lines(run.stderr) == [
        f"edgeser-{prog}: error: {config}: not valid TOML (not UTF-8 text: byte 0xf6 at offset 4)"
    ]


# -- item 9: signals during score --------------------------------------------------------------


def _ignore_sigint() -> None:
    """preexec_fn: start with SIGINT ignored, as a script's background job is."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("sig", "preexec", "fmt"),
    [
        (signal.SIGINT, None, "csv"),
        (signal.SIGINT, _ignore_sigint, "jsonl"),
        (signal.SIGTERM, None, "table"),
    ],
    ids=["sigint", "sigint-inherited-ignored", "sigterm"],
)
def test_a_signal_ends_score_cleanly_with_whole_rows(tiny_model_path, tmp_path, sig, preexec, fmt):
    for i in range(40):
        sf.write(tmp_path / f"{i:02d}.wav", voice_like(8.0, seed=i), SAMPLE_RATE)
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeser", "score", "--model", str(tiny_model_path),
         "--format", fmt, "--per-window", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec,
    )  # fmt: skip
    try:
        head = [process.stdout.readline(), process.stdout.readline()]
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + sig
    assert _lines(err) == [f"edgeser: interrupted ({signal.Signals(sig).name})"]
    rows = _lines("".join(head) + out)
    assert len(rows) < 1 + 40 * 29  # stopped, not scored to the end
    if fmt == "csv":
        assert all(len(r) == 6 for r in csv.reader(io.StringIO("\n".join(rows))))
    elif fmt == "jsonl":
        assert all(set(json.loads(r)) >= {"file", "valence"} for r in rows)
    else:
        assert len({len(r) for r in rows}) == 1  # every row whole, as wide as the header


# -- item 10: a model failing mid-stream --------------------------------------------------------


@pytest.fixture(scope="module")
def fails_after_load(tmp_path_factory) -> Path:
    """A contract model that runs on the load-time test tone (the minimum input) and fails on
    anything longer: its graph reshapes the input to exactly that many samples."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = tiny_model_info()
    shape = numpy_helper.from_array(np.array([1, info.min_samples], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Reshape", [INPUT_NAME, "shape"], ["fixed"]),
        helper.make_node("ReduceMean", ["fixed"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["mean", "mean", "mean"], ["three"], axis=1),
        helper.make_node("Sigmoid", ["three"], [OUTPUT_ADV]),
    ]
    graph = helper.make_graph(
        nodes,
        "fails_after_load",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info(OUTPUT_ADV, TensorProto.FLOAT, ["batch", 3])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, info.to_metadata())
    path = tmp_path_factory.mktemp("failing") / "fails.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("command", ["stream", "score"])
def test_a_model_failing_mid_stream_is_one_line_and_a_traceback_only_at_v(
    fails_after_load, command
):
    args = ["--from-file", SPEECH_WAV] if command == "stream" else [SPEECH_WAV]
    run = _run([command, "--model", fails_after_load, *args])
    assert run.returncode == 2
    errors = [line for line in _lines(run.stderr) if not line.startswith("edgeser: stream ")]
    assert len(errors) == 1 and errors[0].startswith("edgeser: error: fails.onnx failed on ")
    assert "Traceback" not in run.stderr and "[E:onnxruntime" not in run.stderr
    verbose = _run([command, "-v", "--model", fails_after_load, *args])
    assert verbose.returncode == 2
    assert ("Traceback" in verbose.stderr) == (command == "stream")  # the worker's log record


# -- item 17: native libraries' noise ------------------------------------------------------------


@pytest.fixture(scope="module")
def malformed_model(tmp_path_factory) -> Path:
    """An ONNX file that parses but whose initializer is short: onnxruntime logs a coloured
    ``[E:onnxruntime...]`` line on fd 2 before it raises."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3], b"\0" * 12, raw=True)
    w.raw_data = b"\0" * 5
    graph = helper.make_graph(
        [helper.make_node("Add", [INPUT_NAME, "w"], [OUTPUT_ADV])],
        "short_initializer",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info(OUTPUT_ADV, TensorProto.FLOAT, [1, 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("malformed") / "short.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("command", ["score", "stream", "info"])
def test_onnxruntime_noise_stays_off_our_channels_and_its_reason_is_in_our_line(
    malformed_model, command
):
    args = {"score": [SPEECH_WAV], "stream": ["--from-file", SPEECH_WAV], "info": []}[command]
    model = [malformed_model] if command == "info" else ["--model", malformed_model]
    run = _run([command, *model, *args])
    assert run.returncode == 2
    assert run.stdout == ""  # no "EP Error" banner among our rows
    assert _lines(run.stderr) == [_lines(run.stderr)[0]], run.stderr
    assert run.stderr.startswith("edgeser: error: ") and "raw_data size (5 bytes)" in run.stderr
    assert "\x1b[" not in run.stderr and "[E:onnxruntime" not in run.stderr
    verbose = _run([command, "-v", *model, *args])
    assert "[E:onnxruntime" in verbose.stderr  # asked for: native output passes


@pytest.fixture(scope="module")
def valid_mp3(tmp_path_factory) -> Path:
    """The example speech as MP3 (libsndfile's encoder), which mpg123 decodes with warnings."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path_factory.mktemp("mp3") / "speech.mp3"
    x, rate = sf.read(SPEECH_WAV)
    sf.write(path, x, rate, format="MP3")
    return path


@pytest.mark.parametrize("command", ["score", "stream"])
def test_mpg123_warnings_for_a_valid_mp3_stay_off_stderr(valid_mp3, command):
    args = [valid_mp3] if command == "score" else ["--from-file", valid_mp3]
    run = _run([command, *args])
    assert run.returncode == 0
    assert "layer3.c" not in run.stderr and "mpg123" not in run.stderr, run.stderr
    assert "layer3.c" not in run.stdout


# -- item 18: the path as typed, wide characters, a notice once --------------------------------


def test_messages_name_the_file_as_typed_not_in_bytes_form(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    run = _run(["score", "text.wav"], cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == "edgeser: text.wav: not readable as audio (Format not recognised.)\n"


def _cells(text: str) -> int:
    """Terminal columns of ``text`` (wide characters: 2)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_table_aligns_rows_with_wide_characters(tiny_model_path, tmp_path):
    names = ["声音样本.wav", "a.wav", "ｆｕｌｌ.wav"]
    for i, name in enumerate(names):
        sf.write(tmp_path / name, voice_like(1.5, seed=i), SAMPLE_RATE)
    run = _run(["score", "--model", tiny_model_path, "--format", "table", *names], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = _lines(run.stdout)
    assert len(rows) == 4
    assert len({_cells(row) for row in rows}) == 1, rows  # every column ends where it should


BLOCKED = "import sys; sys.modules['onnxruntime'] = None; from edgeser.cli import main; "


def test_the_numpy_backend_notice_shows_once_per_install_and_at_v(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("EDGESER_BACKEND", None)
    notice = "using the numpy backend"

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        code = BLOCKED + f"sys.exit(main(['info', *{list(flags)!r}]))"
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
        )

    first, second, verbose = run(), run(), run("-v")
    assert [r.returncode for r in (first, second, verbose)] == [0, 0, 0]
    assert notice in first.stderr and len(_lines(first.stderr)) == 1
    assert second.stderr == ""
    assert notice in verbose.stderr
    assert any((tmp_path / "cache" / "edgeser").iterdir())


def test_devices_messages_name_the_command():
    run = _run(["devices"])
    assert run.returncode == 0
    assert all(line.startswith("edgeser: ") for line in _lines(run.stderr)), run.stderr
