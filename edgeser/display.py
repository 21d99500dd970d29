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
EMOTION = "emotion"  # the column of the most probable category (score --categories)
BAR_WIDTH = 12  # three bars and a time fit in 80 columns
BAR_WIDTH_WITH_EMOTION = 8  # ... and with the top category and its probability


class RowWriter(Protocol):
    """Writes one row per (file, reading)."""

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        ...


def _value(x: float) -> str:
    """A dimension's value as text: 4 decimals, empty when unscored (NaN)."""
    return "" if math.isnan(x) else f"{x:.4f}"


def _category_values(reading: Reading, categories: tuple[str, ...]) -> list[str]:
    """The most probable of ``categories`` and each one's probability as text (4 decimals),
    all empty for a reading without them (no speech)."""
    if not categories:
        return []
    if reading.categories is None:
        return [""] * (1 + len(categories))
    probabilities = (reading.categories[name] for name in categories)
    return [reading.emotion or "", *map(_value, probabilities)]


class CsvRows:
    """``file,start_s,end_s,arousal,dominance,valence``, then with ``categories`` (their labels)
    ``emotion`` and a probability column per label; times to the millisecond, values to 4
    decimals, empty values for a window or file without speech."""

    def __init__(self, out: TextIO, categories: tuple[str, ...] = ()) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._categories = categories
        self._csv.writerow((*CSV_HEADER, *([EMOTION] if categories else []), *categories))

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        times = (f"{reading.start_s:.3f}", f"{reading.end_s:.3f}")
        values = (*map(_value, reading.adv), *_category_values(reading, self._categories))
        self._csv.writerow((file, *times, *values))


class JsonRows:
    """One JSON object per line: file, start_s, end_s, A, D, V (null when unscored), voiced,
    and with ``categories`` (a model with a categorical head) emotion and categories."""

    def __init__(self, out: TextIO, categories: bool | None = None) -> None:
        self._out = out
        self._categories = categories

    def write(self, file: str, reading: Reading) -> None:
        """Write one row."""
        row = {"file": file, **reading.to_dict(self._categories)}
        self._out.write(json.dumps(row) + "\n")


def columns_of(text: str) -> int:
    """The terminal columns ``text`` takes: 2 for a wide (CJK) character, 0 for a combining
    mark, 1 for any other."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def padded(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns (``columns_of``)."""
    return text + " " * max(width - columns_of(text), 0)


class TableRows:
    """An aligned, human-readable table (file column as wide as the widest name, in terminal
    columns: wide CJK characters count twice), with ``categories`` (their labels) an emotion
    column and a probability column per label."""

    def __init__(self, out: TextIO, files: list[str], categories: tuple[str, ...] = ()) -> None:
        self._out = out
        self._width = max(map(columns_of, [*files, "file"]))
        self._categories = categories
        names = (*LABELS, *([EMOTION] if categories else []), *categories)
        self._columns = [max(9, len(name)) for name in names]
        header = f"{padded('file', self._width)}  {'start_s':>8}  {'end_s':>8}"
        cells = "".join(f"  {n:>{w}}" for n, w in zip(names, self._columns, strict=True))
        self._out.write(header + cells + "\n")

    def write(self, file: str, reading: Reading) -> None:
        """Write one row ('-' for unscored values)."""
        row = f"{padded(file, self._width)}  {reading.start_s:8.3f}  {reading.end_s:8.3f}"
        values = [*map(_value, reading.adv), *_category_values(reading, self._categories)]
        cells = (f"  {v or '-':>{w}}" for v, w in zip(values, self._columns, strict=True))
        self._out.write(row + "".join(cells) + "\n")


UNICODE_CELLS = ("█", "░")
ASCII_CELLS = ("#", "-")


def bar(value: float, cells: tuple[str, str] = UNICODE_CELLS, width: int = BAR_WIDTH) -> str:
    """A value in 0..1 as a bar of ``width`` cells (clamped)."""
    filled = round(min(max(value, 0.0), 1.0) * width)
    return cells[0] * filled + cells[1] * (width - filled)


def bars_line(reading: Reading, cells: tuple[str, str] = UNICODE_CELLS) -> str:
    """One compact line: time, then a bar and value per dimension, then the most probable
    category and its probability if the reading has categories (or 'no speech')."""
    head = f"{reading.end_s:8.2f}s "
    if not reading.voiced:
        return head + "  (no speech)"
    emotion = reading.emotion
    width = BAR_WIDTH if emotion is None else BAR_WIDTH_WITH_EMOTION
    dims = zip(LABELS, reading.adv, strict=True)
    line = head + "".join(f" {n[0].upper()} {bar(x, cells, width)} {x:.2f}" for n, x in dims)
    if emotion is None or reading.categories is None:
        return line
    return f"{line}  {emotion} {reading.categories[emotion]:.2f}"


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
    """One JSON object per reading and line, flushed at once (for pipes); with ``categories``
    (a model with a categorical head) emotion and categories in every line."""

    def __init__(self, out: TextIO, categories: bool | None = None) -> None:
        self._out = out
        self._categories = categories

    def show(self, reading: Reading) -> None:
        """Write the reading."""
        self._out.write(json.dumps(reading.to_dict(self._categories)) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Nothing to finish."""
