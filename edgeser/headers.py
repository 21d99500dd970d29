"""The frame count a WAV or AIFF header declares, to tell a truncated file from a short one.

libsndfile clamps a header's length to what the file holds, so a WAV cut in half reads as a
shorter, intact file. Reading the header ourselves tells the two apart.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

# WAV format tags whose data chunk is frames * block_align bytes: PCM, IEEE float, A-law,
# mu-law, and WAVE_FORMAT_EXTENSIBLE (whose sub-format is one of these in practice)
_FRAMED_WAV_FORMATS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}  # written by streaming encoders that could not seek back


def declared_frames(file: BinaryIO) -> int | None:
    """The frames the header of an open WAV/AIFF file declares; None when it declares none
    (another format, RF64, a streamed WAV with an open-ended size, a compressed WAV)."""
    head = file.read(12)
    if len(head) < 12:
        return None
    kind, form = head[:4], head[8:12]
    if kind in (b"RIFF", b"RIFX") and form == b"WAVE":
        return _wav_frames(file, "<" if kind == b"RIFF" else ">")
    if kind == b"FORM" and form in (b"AIFF", b"AIFC"):
        return _aiff_frames(file)
    return None


def _chunks(file: BinaryIO, order: str) -> Iterator[tuple[bytes, int]]:
    """(id, data size) of each chunk from the current position, the file at its data."""
    while True:
        header = file.read(8)
        if len(header) < 8:
            return
        chunk_id, size = header[:4], struct.unpack(order + "I", header[4:])[0]
        start = file.tell()
        yield chunk_id, size
        file.seek(start + size + (size & 1))  # chunks are padded to an even length


def _wav_frames(file: BinaryIO, order: str) -> int | None:
    """Frames of a WAV: data chunk bytes / block align (needs the fmt chunk first)."""
    block_align = None
    for chunk_id, size in _chunks(file, order):
        if chunk_id == b"fmt ":
            fmt = file.read(min(size, 16))
            if len(fmt) < 14:
                return None
            tag, _, _, _, block_align = struct.unpack(order + "HHIIH", fmt[:14])
            if tag not in _FRAMED_WAV_FORMATS or block_align == 0:
                return None
        elif chunk_id == b"data":
            if block_align is None or size in _UNKNOWN_SIZES:
                return None
            return size // block_align
    return None


def _aiff_frames(file: BinaryIO) -> int | None:
    """Frames of an AIFF/AIFC: numSampleFrames of its COMM chunk."""
    for chunk_id, size in _chunks(file, ">"):
        if chunk_id == b"COMM" and size >= 6:
            return struct.unpack(">hI", file.read(6))[1]
    return None
