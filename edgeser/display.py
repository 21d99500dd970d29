"""How readings are written: csv / jsonl / table rows for files, live bars or JSON lines for
streams. The csv layout is a stable interface that scripts rely on."""

from __future__ import annotations

import csv
import json
import math
import unicodedata
from typing import Protocol, TextIO

from .contract import LABELS
from .readings import Reading

CSV_HEADER = ("file", "start_s", "end_s", *LABELS)
BAR_WIDTH = 12  # three bars and a time fit in 80 columns


class RowWriter(Protocol):
    """Writes one row per (file, reading)."""

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        ...


def _value(x: float) -> str:
    """A dimension's value as text: 4 decimals, empty when unscored (NaN)."""
    return "" if math.isnan(x) else f"{x:.4f}"


class CsvRows:
    """``file,start_s,end_s,arousal,dominance,valence``; times to the millisecond, values to 4
    decimals, empty values for a window or file without speech."""

    def __init__(self, out: TextIO) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(CSV_HEADER)

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        times = (f"{reading.start_s:.3f}", f"{reading.end_s:.3f}")
        self._csv.writerow((file, *times, *map(_value, reading.adv)))


class JsonRows:
    """One JSON object per line: file, start_s, end_s, A, D, V (null when unscored), voiced."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        self._out.write(json.dumps({"file": file, **reading.to_dict()}) + "\n")


def cells(text: str) -> int:
    """The terminal columns ``text`` takes: 2 for a wide (CJK) character, 0 for a combining
    mark, 1 for any other."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def padded(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns (``cells``)."""
    return text + " " * max(width - cells(text), 0)


class TableRows:
    """An aligned, human-readable table (file column as wide as the widest name, in terminal
    columns: wide CJK characters count twice)."""

    def __init__(self, out: TextIO, files: list[str]) -> None:
        self._out = out
        self._width = max(map(cells, [*files, "file"]))
        header = f"{padded('file', self._width)}  {'start_s':>8}  {'end_s':>8}"
        self._out.write(header + "".join(f"  {name:>9}" for name in LABELS) + "\n")

    def write(self, file: str, reading: Reading) -> None:
        """Write one row ('-' for unscored values)."""
        row = f"{padded(file, self._width)}  {reading.start_s:8.3f}  {reading.end_s:8.3f}"
        values = "".join(f"  {_value(x) or '-':>9}" for x in reading.adv)
        self._out.write(row + values + "\n")


UNICODE_CELLS = ("█", "░")
ASCII_CELLS = ("#", "-")


def bar(value: float, cells: tuple[str, str] = UNICODE_CELLS, width: int = BAR_WIDTH) -> str:
    """A value in 0..1 as a bar of ``width`` cells (clamped)."""
    filled = round(min(max(value, 0.0), 1.0) * width)
    return cells[0] * filled + cells[1] * (width - filled)


def bars_line(reading: Reading, cells: tuple[str, str] = UNICODE_CELLS) -> str:
    """One compact line: time, then a bar and value per dimension (or 'no speech')."""
    head = f"{reading.end_s:8.2f}s "
    if not reading.voiced:
        return head + "  (no speech)"
    dims = zip(LABELS, reading.adv, strict=True)
    return head + "".join(f" {name[0].upper()} {bar(x, cells)} {x:.2f}" for name, x in dims)


class LiveBars:
    """The live terminal display: the latest reading redrawn in place on one line (ASCII bars
    where the terminal's encoding has no block characters)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._dirty = False
        try:
            "".join(UNICODE_CELLS).encode(out.encoding or "ascii")
            self._cells = UNICODE_CELLS
        except (UnicodeEncodeError, LookupError):
            self._cells = ASCII_CELLS

    def show(self, reading: Reading) -> None:
        """Redraw the line with this reading."""
        self._out.write("\r" + bars_line(reading, self._cells) + "\x1b[K")
        self._out.flush()
        self._dirty = True

    def close(self) -> None:
        """End the line so that what follows starts on a fresh one."""
        if self._dirty:
            self._out.write("\n")
            self._out.flush()


class JsonLines:
    """One JSON object per reading and line, flushed at once (for pipes)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def show(self, reading: Reading) -> None:
        """Write the reading."""
        self._out.write(json.dumps(reading.to_dict()) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Nothing to finish."""
