"""Files that are not what they seem: truncated WAV/AIFF, FIFOs, unreadable folders and files,
names that are not UTF-8, and contents whose old messages misled (empty stereo, L = -R, 1 Hz)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

import edgeser
from edgeser.cli import main
from edgeser.contract import SAMPLE_RATE


def _cut_in_half(path):
    """Keep the header and the first half of the file's bytes, as a failed copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("name", "subtype"), [("cut.wav", "PCM_16"), ("cut24.wav", "PCM_24"), ("cut.aiff", "PCM_16")]
)
def test_a_file_cut_in_half_is_truncated_not_short(tiny_model, write_wav, name, subtype):
    path = _cut_in_half(write_wav(name, voice_like(4.0), subtype=subtype))
    with pytest.raises(edgeser.AudioFileError, match=r"truncated: the header declares 64000 "):
        tiny_model.score_file(path)
    with pytest.raises(edgeser.AudioFileError, match="truncated"):
        edgeser.audio.read_audio(path)


def test_a_complete_wav_is_not_called_truncated(tiny_model, write_wav):
    for subtype in ("PCM_16", "PCM_24", "FLOAT", "ULAW"):
        path = write_wav(f"whole-{subtype}.wav", voice_like(1.3), subtype=subtype)
        assert tiny_model.score_file(path).duration_s == pytest.approx(1.3)


def test_stream_of_a_truncated_wav_delivers_what_was_read_then_the_error(tiny_model, write_wav):
    path = _cut_in_half(write_wav("cut.wav", voice_like(4.0)))
    readings = []
    with pytest.raises(edgeser.AudioFileError, match="truncated"):
        for reading in edgeser.Stream(tiny_model, edgeser.FileSource(path)):
            readings.append(reading)
    assert readings and readings[-1].end_s == pytest.approx(2.0, abs=0.01)


def test_cli_reports_truncated_wavs_with_exit_1(tiny_model_path, write_wav, capsys):
    path = _cut_in_half(write_wav("cut.wav", voice_like(4.0)))
    assert main(["score", "--model", str(tiny_model_path), str(path)]) == 1
    assert "truncated: the header declares 64000 frames (4.000 s)" in capsys.readouterr().err
    args = ["stream", "--model", str(tiny_model_path), "--from-file", str(path)]
    assert main(args) == 1  # as `score`: the file could not be scored whole
    out, err = capsys.readouterr()
    assert out.count("\n") > 0 and "truncated" in err.splitlines()[-1]


@pytest.mark.timeout(30)
def test_a_fifo_named_wav_is_refused_without_hanging(tiny_model_path, tmp_path, capsys):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    done = []
    worker = threading.Thread(
        target=lambda: done.append(main(["score", "--model", str(tiny_model_path), str(fifo)])),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # release the reader that hangs (before the fix) on the FIFO
        with open(fifo, "wb"):
            pass
        pytest.fail("scoring a FIFO hung")
    assert done == [1]
    assert "not a regular file" in capsys.readouterr().err


def test_an_unreadable_sub_folder_is_reported_with_exit_1(
    tiny_model_path, tmp_path, monkeypatch, capsys
):
    sf.write(tmp_path / "a.wav", voice_like(1.5), SAMPLE_RATE)
    locked = tmp_path / "locked"
    locked.mkdir()
    sf.write(locked / "b.wav", voice_like(1.5), SAMPLE_RATE)
    locked.chmod(0)
    scandir = os.scandir

    def denying_scandir(path="."):  # root reads any folder: deny it as the kernel would
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return scandir(path)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "scandir", denying_scandir)
    try:
        code = main(["score", "--model", str(tiny_model_path), str(tmp_path)])
    finally:
        locked.chmod(0o755)
    out, err = capsys.readouterr()
    assert code == 1
    assert [r["file"] for r in csv.DictReader(io.StringIO(out))] == [str(tmp_path / "a.wav")]
    assert err == f"edgeser: {locked}: cannot read folder (Permission denied)\n"


def test_a_permission_denied_file_says_so(tiny_model_path, write_wav, monkeypatch, capsys):
    path = write_wav("secret.wav", voice_like(1.5))
    path.chmod(0)
    real_open = os.open

    def denying_open(file, flags, *args, **kwargs):  # root opens anything: deny as the kernel
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, flags, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", denying_open)
    try:
        code = main(["score", "--model", str(tiny_model_path), str(path)])
    finally:
        path.chmod(0o644)
    assert code == 1
    assert capsys.readouterr().err == f"edgeser: {path}: cannot open (Permission denied)\n"


NON_UTF8 = b"caf\xe9 \xff.wav"  # Latin-1 bytes: not valid UTF-8


@pytest.mark.parametrize(
    ("locale", "io_encoding"),
    [("C", None), ("C.UTF-8", None), ("POSIX", None), ("C.UTF-8", "utf-8:strict")],
    ids=["C", "C.UTF-8", "POSIX", "strict-utf-8-stdout"],  # the last: as en_US.UTF-8 has it
)
def test_a_non_utf8_file_name_is_scored_and_printed_byte_for_byte(
    tiny_model, tiny_model_path, tmp_path, locale, io_encoding
):
    name = os.fsencode(tmp_path) + b"/" + NON_UTF8
    sf.write(name, voice_like(1.5), SAMPLE_RATE)
    env = {**os.environ, "LC_ALL": locale, "LANG": locale}
    env.pop("PYTHONIOENCODING", None)
    if io_encoding:
        env["PYTHONIOENCODING"] = io_encoding
    for target in (name, os.fsencode(tmp_path)):  # the file itself, and its folder walked
        run = subprocess.run(
            [sys.executable, "-m", "edgeser", "score", "--model", str(tiny_model_path),
             os.fsdecode(target)],
            capture_output=True, env=env, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stderr == b""
        row = run.stdout.splitlines()[1]
        assert row.startswith(name + b",0.000,1.500,")
    aggregate = tiny_model.score_file(name).aggregate  # the API takes bytes paths too
    assert row.endswith(",".join(f"{x:.4f}" for x in aggregate.adv).encode())


def test_messages_for_empty_stereo_cancelling_channels_and_a_1_hz_header(tiny_model, write_wav):
    with pytest.raises(edgeser.AudioError, match=r"signal is empty \(shape \(0, 2\)\)"):
        tiny_model.predict(np.zeros((0, 2), np.float32), SAMPLE_RATE)
    voice = voice_like(2.0)
    inverted = np.stack([voice, -voice], axis=1)
    with pytest.raises(edgeser.AudioError, match=r"channels cancel out .* L = -R"):
        tiny_model.predict(inverted, SAMPLE_RATE)
    with pytest.raises(edgeser.AudioFileError, match=r"channels cancel out"):
        tiny_model.score_file(write_wav("inverted.wav", inverted, subtype="FLOAT"))
    silent = write_wav("silent-stereo.wav", np.zeros((SAMPLE_RATE, 2), np.float32))
    with pytest.raises(edgeser.AudioFileError) as silence:  # digital silence, not cancelling
        tiny_model.score_file(silent)
    assert "cancel" not in str(silence.value)
    with pytest.raises(edgeser.AudioFileError, match=r"sample rate of 1 Hz"):
        tiny_model.score_file(write_wav("one-hz.wav", voice, rate=1))
