"""Truncated files in every container libsndfile reads are an AudioFileError naming the file
(never scored as complete from a header count libsndfile clamped), for ``score_file`` and a
``Stream`` of a ``FileSource`` alike; a header walk is bounded by the file's real content."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

import edgeser
from edgeser import headers
from edgeser.audio import read_audio
from edgeser.cli import main
from edgeser.contract import SAMPLE_RATE

# (file name, libsndfile format, subtype): each container whose cut file libsndfile reads as a
# shorter, whole one (or fails to open), and the codecs inside it whose sizes differ
CONTAINERS = [
    ("pcm.wav", "WAV", "PCM_16"),
    ("ima.wav", "WAV", "IMA_ADPCM"),
    ("float.wav", "WAVEX", "FLOAT"),
    ("rf64.wav", "RF64", "PCM_16"),
    ("w64.w64", "W64", "PCM_24"),
    ("pcm.aiff", "AIFF", "PCM_16"),
    ("ima.aifc", "AIFF", "IMA_ADPCM"),
    ("pcm.caf", "CAF", "PCM_16"),
    ("alac.caf", "CAF", "ALAC_16"),
    ("pcm.au", "AU", "PCM_16"),
    ("pcm.nist", "NIST", "PCM_16"),
    ("lossless.flac", "FLAC", "PCM_16"),
    ("vorbis.ogg", "OGG", "VORBIS"),
    ("opus.opus", "OGG", "OPUS"),
    ("layer3.mp3", "MP3", "MPEG_LAYER_III"),
]
SECONDS = 4.0


def _write(folder, name: str, fmt: str, subtype: str):
    """A 4 s voice file in ``fmt``/``subtype``; skips where this libsndfile cannot write it."""
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile does not write {fmt} {subtype}")
    path = folder / name
    sf.write(path, voice_like(SECONDS), SAMPLE_RATE, format=fmt, subtype=subtype)
    return path


def _cut(path, keep: float):
    """A copy of the file's first ``keep`` of its bytes, as a failed download leaves it."""
    data = path.read_bytes()
    cut = path.with_name(f"cut{round(keep * 100)}-{path.name}")
    cut.write_bytes(data[: round(len(data) * keep)])
    return cut


def _refused(model, path) -> None:
    """score_file and a Stream of the file both end with an AudioFileError naming it."""
    with pytest.raises(edgeser.AudioFileError, match=r"truncated|not readable") as scored:
        model.score_file(path)
    assert str(path) in str(scored.value)
    with pytest.raises(edgeser.AudioFileError, match=r"truncated|not readable") as streamed:
        list(edgeser.Stream(model, edgeser.FileSource(path)))
    assert str(path) in str(streamed.value)


@pytest.mark.parametrize(("name", "fmt", "subtype"), CONTAINERS)
def test_a_cut_file_is_refused_and_a_whole_one_scored_in_every_container(
    tiny_model, tmp_path, name, fmt, subtype
):
    path = _write(tmp_path, name, fmt, subtype)
    assert tiny_model.score_file(path).duration_s == pytest.approx(SECONDS, abs=0.06)
    for keep in (0.5, 2 / 3, 0.9):
        _refused(tiny_model, _cut(path, keep))


def test_the_issue_rf64_cut_at_113000_bytes_fails_the_cli(tiny_model_path, tmp_path, capsys):
    path = tmp_path / "t.wav"
    sf.write(path, voice_like(6.0), SAMPLE_RATE, format="RF64")
    half = tmp_path / "half.wav"
    half.write_bytes(path.read_bytes()[:113000])
    assert main(["score", "--model", str(tiny_model_path), str(half)]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") <= 1  # the header row at most: no reading of the cut file
    assert f"{half}: truncated: the header declares 96000 frames (6.000 s)" in err


def test_a_flac_cut_between_frames_is_refused(tiny_model, tmp_path):
    """A cut at a frame boundary decodes cleanly: STREAMINFO's count tells it is short."""
    path = _write(tmp_path, "voice.flac", "FLAC", "PCM_16")
    data = path.read_bytes()
    with sf.SoundFile(path) as sound:
        sound.read(SAMPLE_RATE)  # decode past the first frames, so that their offsets exist
    frames = [
        i
        for i in range(data.index(b"\xff\xf8", 42), len(data) - 1)
        if data[i : i + 2] == b"\xff\xf8"
    ]
    cut = tmp_path / "between.flac"
    cut.write_bytes(data[: frames[len(frames) // 2]])
    _refused(tiny_model, cut)


def test_an_ogg_cut_between_pages_is_refused(tiny_model, tmp_path):
    """Whole pages, but not the last: no page is marked end-of-stream."""
    path = _write(tmp_path, "voice.ogg", "OGG", "VORBIS")
    data = path.read_bytes()
    cut = tmp_path / "between.ogg"
    cut.write_bytes(data[: data.rindex(b"OggS")])
    _refused(tiny_model, cut)


def test_a_flac_without_a_length_is_an_audio_file_error_not_a_value_error(tiny_model, tmp_path):
    """STREAMINFO's total of 0 (a streaming encoder's) leaves the length open: libsndfile
    reports 2**63 - 1 frames, which read_audio tried to allocate (ValueError "array is too
    big"); read in blocks, libsndfile 1.2 then fails at a seek three quarters in."""
    path = _write(tmp_path, "voice.flac", "FLAC", "PCM_16")
    data = bytearray(path.read_bytes())
    packed = int.from_bytes(data[18:26], "big")  # rate, channels, bits, 36-bit total
    data[18:26] = (packed & ~(2**36 - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(edgeser.AudioFileError, match="truncated or corrupt"):
        read_audio(path)
    with pytest.raises(edgeser.AudioFileError, match="truncated or corrupt"):
        tiny_model.score_file(path)


class _CountingReader(io.BufferedReader):
    """A file that counts its reads and gives up (AssertionError) after ``most``."""

    def __init__(self, raw, most: int) -> None:
        super().__init__(raw)
        self.reads, self.most = 0, most

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        assert self.reads <= self.most, f"more than {self.most} reads"
        return super().read(size)


def _wav_header(extra: bytes = b"") -> bytes:
    """RIFF + a 16 kHz mono PCM fmt chunk (+ ``extra``), and no data chunk."""
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    return b"RIFF" + struct.pack("<I", 2**31) + body


@pytest.mark.timeout(60)
def test_a_sparse_2_gb_wav_without_data_is_refused_in_a_few_reads(tiny_model, tmp_path):
    path = tmp_path / "sparse.wav"
    with open(path, "wb") as file:
        file.write(_wav_header())
        file.truncate(2**31)  # 2 GB of zeros that take no disk
    with _CountingReader(io.FileIO(path), most=100) as file:
        assert headers.declared_frames(file) is None
    assert file.reads <= 5
    began = time.monotonic()
    with pytest.raises(edgeser.AudioFileError, match="not readable as audio") as refused:
        tiny_model.score_file(path)
    assert str(path) in str(refused.value)
    assert time.monotonic() - began < 5  # was > 15 min


def test_the_chunk_walk_stops_after_max_chunks(tmp_path):
    """Printable, empty chunks one after another: the walk ends at MAX_CHUNKS."""
    path = tmp_path / "junk.wav"
    path.write_bytes(_wav_header(b"JUNK\0\0\0\0" * (2 * headers.MAX_CHUNKS)))
    with _CountingReader(io.FileIO(path), most=4 * headers.MAX_CHUNKS) as file:
        assert headers.declared_frames(file) is None
    assert file.reads <= headers.MAX_CHUNKS + 5


def test_a_whole_ogg_with_trailing_bytes_is_not_called_cut(tiny_model, tmp_path):
    path = _write(tmp_path, "voice.ogg", "OGG", "OPUS")
    path.write_bytes(path.read_bytes() + np.zeros(100, np.uint8).tobytes())
    assert tiny_model.score_file(path).duration_s == pytest.approx(SECONDS, abs=0.06)
