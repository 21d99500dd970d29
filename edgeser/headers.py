"""What a file's header declares of its length, to tell a truncated file from a short one.

libsndfile clamps a header's length to what the file holds, so a WAV cut in half reads as a
shorter, intact file. Reading the header ourselves tells the two apart, for the RIFF family
(WAV, WAVEX, RF64/BW64, Sony Wave64), AIFF/AIFC, Sun AU and NIST SPHERE. An Ogg stream (Vorbis,
Opus) declares no length, but its last page is marked end-of-stream: a file whose last whole
page is not was cut.
(Where libsndfile reports a header's count as is, FLAC's STREAMINFO or an MP3's Xing header,
``edgeser.audio`` compares it with what was read.)

The walk over chunks is bounded by the file's content: it stops at the end of the file, after
``MAX_CHUNKS`` chunks, and at a chunk id that is not printable ASCII (as libsndfile does), so a
sparse 2 GB file of zeros after its header takes one read, not 270 million.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# WAV format tags whose data chunk is frames * block_align bytes: PCM, IEEE float, A-law,
# mu-law, and WAVE_FORMAT_EXTENSIBLE (whose sub-format is one of these in practice)
_FRAMED_WAV_FORMATS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}  # written by streaming encoders that could not seek back
MAX_CHUNKS = 4096  # far more than any real header has; a walk never goes further
_IMA4_FRAMES_PER_PACKET = 64  # an AIFC 'ima4' COMM chunk counts packets, not frames
_OGG_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, ..., segments
_OGG_MAX_PAGE = _OGG_PAGE_HEADER.size + 255 + 255 * 255
_OGG_END_OF_STREAM = 0x04


@dataclass(frozen=True)
class _Layout:
    """How a chunked container frames its chunks."""

    id_size: int  # bytes of the chunk id (the first four are its printable name)
    size_format: str  # struct format of the size field
    size_counts_header: bool  # whether the size includes the id and size fields
    align: int  # chunks start at multiples of this from the first


_RIFF = _Layout(4, "<I", False, 2)
_RIFX = _Layout(4, ">I", False, 2)  # also AIFF/AIFC
_W64 = _Layout(16, "<Q", True, 8)
_W64_HEADER = 40  # riff GUID, 64-bit size, wave GUID
# AU encodings whose data is frames * channels * this many bytes (mu-law, PCM, float, A-law)
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
_NIST_HEADER = b"NIST_1A\n"


def declared_frames(file: BinaryIO) -> int | None:
    """The frames the header of an open WAV/RF64/W64/AIFF/AU/NIST file declares; None when it
    declares none (another format, a streamed WAV with an open-ended size, a compressed WAV
    without a ``fact`` chunk)."""
    end = _size(file)
    head = file.read(_W64_HEADER)
    kind, form = head[:4], head[8:12]
    if kind in (b".snd", b"dns.") and len(head) >= 24:
        return _au_frames(head, ">" if kind == b".snd" else "<")
    if head.startswith(_NIST_HEADER):
        return _nist_frames(file)
    if kind == b"riff" and head[24:28] == b"wave" and len(head) == _W64_HEADER:
        return _wav_frames(file, _W64, end)
    file.seek(12)  # the RIFF and IFF families: chunks follow the 12-byte header
    if kind in (b"RIFF", b"RF64", b"BW64") and form == b"WAVE":
        return _wav_frames(file, _RIFF, end)
    if kind == b"RIFX" and form == b"WAVE":
        return _wav_frames(file, _RIFX, end)
    if kind == b"FORM" and form in (b"AIFF", b"AIFC"):
        return _aiff_frames(file, end)
    return None


def cut_short(file: BinaryIO) -> str | None:
    """Why an open file whose container declares no length is cut short (an Ogg stream whose
    last whole page does not end the stream); None if it is whole or not such a container."""
    end = _size(file)
    if file.read(4) != b"OggS":
        return None
    file.seek(max(0, end - 2 * _OGG_MAX_PAGE))
    tail = file.read()
    last = _last_ogg_page_type(tail)
    if last is None or last & _OGG_END_OF_STREAM:
        return None
    return "the Ogg stream has no end (its last whole page is not marked end-of-stream)"


def _size(file: BinaryIO) -> int:
    """The file's size in bytes, leaving it at its start."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    return size


def _chunks(file: BinaryIO, layout: _Layout, end: int) -> Iterator[tuple[bytes, int]]:
    """(name, data size) of each chunk from the current position, the file at its data; ends at
    the end of the file, after ``MAX_CHUNKS``, or at a chunk whose name is not printable."""
    header_size = layout.id_size + struct.calcsize(layout.size_format)
    for _ in range(MAX_CHUNKS):
        start = file.tell()
        header = file.read(header_size)
        if len(header) < header_size or not all(0x20 <= c < 0x7F for c in header[:4]):
            return
        size = struct.unpack(layout.size_format, header[layout.id_size :])[0]
        if layout.size_counts_header:
            size -= header_size
        if size < 0:
            return
        yield header[:4], size
        following = start + header_size + size
        following += -following % layout.align  # chunks are padded to the alignment
        if following + header_size > end:
            return
        file.seek(following)


def _wav_frames(file: BinaryIO, layout: _Layout, end: int) -> int | None:
    """Frames of a RIFF-family WAV: data chunk bytes / block align (needs the fmt chunk first);
    RF64's data size is in its ds64 chunk; a compressed format's frames are in its fact chunk."""
    block_align = framed = data_size64 = fact = None
    order = layout.size_format[0]
    for chunk_id, size in _chunks(file, layout, end):
        if chunk_id == b"fmt ":
            fmt = file.read(min(size, 16))
            if len(fmt) < 14:
                return None
            tag, _, _, _, block_align = struct.unpack(order + "HHIIH", fmt[:14])
            framed = tag in _FRAMED_WAV_FORMATS and block_align > 0
        elif chunk_id == b"ds64":
            data_size64 = _field(file, size, "<QQ", 1)  # after the 64-bit RIFF size
        elif chunk_id == b"fact" and layout is not _W64:
            fact = _field(file, size, order + "I", 0)
        elif chunk_id == b"data":
            if not framed or block_align is None:
                return fact or None
            if size == 0xFFFFFFFF and data_size64:
                size = data_size64
            if size in _UNKNOWN_SIZES:
                return None
            return size // block_align
    return None


def _field(file: BinaryIO, size: int, layout: str, index: int) -> int | None:
    """Field ``index`` of the struct ``layout`` that starts a chunk of ``size`` bytes; None if
    the chunk (or the file) is shorter."""
    wanted = struct.calcsize(layout)
    data = file.read(min(size, wanted))
    return struct.unpack(layout, data)[index] if len(data) == wanted else None


def _aiff_frames(file: BinaryIO, end: int) -> int | None:
    """Frames of an AIFF/AIFC: numSampleFrames of its COMM chunk (packets of 64 frames for
    AIFC 'ima4')."""
    for chunk_id, size in _chunks(file, _RIFX, end):
        if chunk_id == b"COMM":
            comm = file.read(min(size, 22))  # channels, frames, bits, rate, AIFC compression
            if len(comm) < 6:
                return None
            frames = struct.unpack(">hI", comm[:6])[1]
            ima4 = comm[18:22] == b"ima4"
            return frames * _IMA4_FRAMES_PER_PACKET if ima4 else frames
    return None


def _au_frames(head: bytes, order: str) -> int | None:
    """Frames of a Sun/NeXT AU file: data size / (sample bytes * channels), for the encodings
    stored sample by sample; None for an open-ended size (0xFFFFFFFF) or an ADPCM encoding."""
    _, size, encoding, _, channels = struct.unpack(order + "5I", head[4:24])
    sample_bytes = _AU_SAMPLE_BYTES.get(encoding)
    if sample_bytes is None or channels == 0 or size == 0xFFFFFFFF:
        return None
    return size // (sample_bytes * channels)


def _nist_frames(file: BinaryIO) -> int | None:
    """Frames of a NIST SPHERE file: the ``sample_count -i N`` of its text header."""
    file.seek(0)
    header = file.read(1024).split(b"end_head")[0]
    for line in header.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[:2] == [b"sample_count", b"-i"] and fields[2].isdigit():
            return int(fields[2])
    return None


def _last_ogg_page_type(tail: bytes) -> int | None:
    """The header type flags of the last whole Ogg page in ``tail`` (the file's last bytes),
    found from the end; None if it holds no whole page."""
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:
        header = tail[at : at + _OGG_PAGE_HEADER.size]
        if len(header) == _OGG_PAGE_HEADER.size:
            _, version, flags, *_, segments = _OGG_PAGE_HEADER.unpack(header)
            table = tail[at + len(header) : at + len(header) + segments]
            page_end = at + len(header) + segments + sum(table)
            if version == 0 and len(table) == segments and page_end <= len(tail):
                return flags
    return None
