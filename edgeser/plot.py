"""Pictures of a file's readings (``edgeser score FILE --plot OUT.png``): arousal, dominance and
valence over time, one line each, with the windows the voice gate found no speech in shaded,
the file's aggregate as dashed lines, and, when readings carry emotion categories, the top
category of each window as a coloured band above.

matplotlib is the optional ``plot`` extra: it is imported here, and only when a picture is
drawn. The figures are drawn with matplotlib's object interface on its Agg canvas (PNG), so
no pyplot state or GUI backend is touched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from .contract import LABELS
from .errors import ConfigError
from .readings import FileScore, Reading

EXTRA = "plot"
MODULES = ("matplotlib",)
SUFFIX = ".png"
SIZE_IN, DPI = (10.0, 4.8), 100  # 1000 x 480 pixels
COLOURS = {"arousal": "#d62728", "dominance": "#1f77b4", "valence": "#2ca02c"}
UNVOICED_COLOUR = "#bbbbbb"
CATEGORY_COLOURS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def image_paths(out: str | os.PathLike[str], files: Sequence[Path], folder: bool) -> list[Path]:
    """Where the picture of each of ``files`` goes: ``out`` itself for one file (unless it is
    a folder), else one PNG per file in the folder ``out`` (``folder``: several files or a
    folder were asked for), named after the file. ConfigError when ``out`` cannot be that."""
    out = Path(out)
    if not folder and len(files) == 1 and not out.is_dir():
        if out.suffix.lower() != SUFFIX:
            raise ConfigError(f"--plot {out}: give a {SUFFIX} file (or a folder) for the picture")
        if not out.parent.is_dir():
            raise ConfigError(f"--plot {out}: no folder {out.parent} to write it into")
        return [out]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--plot {out}: several files give several pictures; give a folder")
    if out.suffix.lower() == SUFFIX:
        raise ConfigError(f"--plot {out}: several files give several pictures; give a folder")
    return [out / name for name in image_names(files)]


def image_names(files: Sequence[Path]) -> list[str]:
    """One distinct PNG name per file: its path below the files' common folder, without the
    audio suffix (``a/x.wav`` -> ``a__x.png``); with it where two would clash (``x.wav``,
    ``x.flac``); numbered where the same file is listed twice."""
    resolved = [f.resolve() for f in files]
    common = Path(os.path.commonpath([f.parent for f in resolved])) if resolved else Path()
    relative = [f.relative_to(common) for f in resolved]
    names = ["__".join(r.with_suffix("").parts) for r in relative]
    clashing = {n for n in names if names.count(n) > 1}
    pairs = zip(names, relative, strict=True)
    names = ["__".join(r.parts) if n in clashing else n for n, r in pairs]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}.{seen[name]}")
    return [f"{name}{SUFFIX}" for name in unique]


def write_plot(score: FileScore, out: Path) -> Path:
    """Draw ``score`` (see the module doc) into the PNG ``out``; OSError if it cannot be
    written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    windows = score.windows
    categories = [_top_category(r) for r in windows]
    has_band = any(c is not None for c in categories)
    figure = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    if has_band:
        band, axes = figure.subplots(2, 1, sharex=True, height_ratios=[1, 9])
        _draw_band(band, windows, categories)
    else:
        axes = figure.subplots()
    _draw_readings(axes, score)
    name = score.path.name
    figure.suptitle(f"{name}: arousal, dominance, valence ({score.duration_s:.1f} s)")
    figure.savefig(out, format="png")
    return out


def _slots(windows: Sequence[Reading], end_s: float) -> list[tuple[float, float]]:
    """Each window's own stretch of time, for shading: from halfway to its neighbour's centre
    to halfway to the next one's (windows overlap, their centres do not); the first from 0 and
    the last to ``end_s``."""
    centres = [(r.start_s + r.end_s) / 2 for r in windows]
    edges = [0.0, *((a + b) / 2 for a, b in pairwise(centres)), end_s]
    return list(pairwise(edges))


def _draw_readings(axes: Any, score: FileScore) -> None:
    """The three lines (window centres; NaN breaks a line where no speech was found), the
    unvoiced stretches shaded, the aggregate dashed, axes labelled."""
    windows, end_s = score.windows, max(score.duration_s, 1e-3)
    centres = [(r.start_s + r.end_s) / 2 for r in windows]
    shaded = False
    for (start, stop), reading in zip(_slots(windows, end_s), windows, strict=True):
        if not reading.voiced:
            axes.axvspan(start, stop, color=UNVOICED_COLOUR, alpha=0.5, lw=0,
                         label=None if shaded else "no speech (not scored)")  # fmt: skip
            shaded = True
    marker = "o" if len(windows) <= 60 else None
    for index, label in enumerate(LABELS):
        values = [r.adv[index] for r in windows]
        axes.plot(centres, values, color=COLOURS[label], lw=1.8, marker=marker, ms=3.5,
                  label=label)  # fmt: skip
        mean = score.aggregate.adv[index]
        if score.aggregate.voiced:
            axes.axhline(mean, color=COLOURS[label], lw=1.1, ls="--", alpha=0.9,
                         label=f"{label}, whole file: {mean:.2f}")  # fmt: skip
    axes.set_xlim(0.0, end_s)
    values = [v for r in windows if r.voiced for v in r.adv]  # "about 0..1": show any beyond
    axes.set_ylim(min(0.0, *values) - (0.02 if min(values, default=0) < 0 else 0),
                  max(1.0, *values) + (0.02 if max(values, default=1) > 1 else 0))  # fmt: skip
    window_s = max(r.end_s - r.start_s for r in windows)
    axes.set_xlabel(f"time (s): each point is a {window_s:g} s window, drawn at its centre")
    axes.set_ylabel("score (0 to 1)")
    axes.grid(True, color="#e5e5e5", lw=0.8)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)


def _top_category(reading: Reading) -> str | None:
    """The reading's emotion category: its ``emotion``, else the likeliest of its
    ``categories``; None when it has neither (readings of models without categories)."""
    emotion = getattr(reading, "emotion", None)
    if emotion:
        return str(emotion)
    categories = getattr(reading, "categories", None)
    if not categories:
        return None
    return str(max(categories, key=categories.get))


def _draw_band(axes: Any, windows: Sequence[Reading], categories: list[str | None]) -> None:
    """The top category of each window as a coloured stretch, with a legend of the names."""
    from matplotlib.patches import Patch

    names = sorted({c for c in categories if c is not None})
    colour = {n: CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)] for i, n in enumerate(names)}
    end_s = max(r.end_s for r in windows)
    for (start, stop), category in zip(_slots(windows, end_s), categories, strict=True):
        if category is not None:
            axes.axvspan(start, stop, color=colour[category], lw=0)
    axes.set_yticks([])
    axes.set_ylabel("emotion", rotation=0, ha="right", va="center", fontsize=9)
    axes.tick_params(axis="x", labelbottom=False)
    handles = [Patch(color=colour[n], label=n) for n in names]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.4), frameon=False,
                fontsize=9, ncols=2)  # fmt: skip
