"""``edgeser score --plot``: a PNG of A/D/V over time per file (unvoiced stretches shaded, the
aggregate dashed, a band of emotion categories when readings carry them), one per file in a
folder for several files, and a one-line error naming the extra without matplotlib."""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

from edgeser import plot
from edgeser.cli import main
from edgeser.contract import SAMPLE_RATE
from edgeser.readings import FileScore, Reading

pytest.importorskip("matplotlib")
WIDTH, HEIGHT = round(plot.SIZE_IN[0] * plot.DPI), round(plot.SIZE_IN[1] * plot.DPI)
SHADE = 221  # the unvoiced grey (#bbbbbb at alpha 0.5) on white


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels(path: Path) -> np.ndarray:
    """The image as [rows, columns, RGB] bytes."""
    from matplotlib.image import imread

    return (imread(path)[..., :3] * 255).round().astype(np.uint8)


def write(path: Path, seconds_of_silence: float = 0.0) -> Path:
    """Voice, then (if asked) digital silence, then voice again, at 16 kHz."""
    silence = np.zeros(round(seconds_of_silence * SAMPLE_RATE), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate([voice_like(3.0), silence, voice_like(2.5, seed=2)]), SAMPLE_RATE)
    return path


def test_plot_of_one_file_is_a_png_of_the_expected_size(tiny_model_path, tmp_path, capsys):
    audio = write(tmp_path / "talk.wav", seconds_of_silence=3.0)
    out = tmp_path / "talk.png"
    assert main(["score", str(audio), "--model", str(tiny_model_path), "--plot", str(out)]) == 0
    assert png_size(out) == (WIDTH, HEIGHT)
    assert capsys.readouterr().out.count("talk.wav") == 1  # the CSV row is still written
    shaded = np.all(np.abs(pixels(out).astype(int) - SHADE) <= 2, axis=-1).sum()
    plain = tmp_path / "plain.png"
    assert main(["score", str(write(tmp_path / "p.wav")), "--model", str(tiny_model_path),
                 "--plot", str(plain)]) == 0  # fmt: skip
    unshaded = np.all(np.abs(pixels(plain).astype(int) - SHADE) <= 2, axis=-1).sum()
    assert shaded > 20 * max(unshaded, 100), (shaded, unshaded)  # the silent stretch is grey


def test_plot_of_a_folder_writes_one_png_per_file_without_collisions(
    tiny_model_path, tmp_path, capsys
):
    folder = tmp_path / "in"
    for name in ("a/x.wav", "b/x.wav", "b/x.flac", "c.wav"):
        write(folder / name)
    out = tmp_path / "pictures"  # made by the command
    assert main(["score", str(folder), "--model", str(tiny_model_path), "--plot", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a__x.png", "b__x.flac.png", "b__x.wav.png", "c.png"]
    assert all(png_size(out / n) == (WIDTH, HEIGHT) for n in names)
    assert len(capsys.readouterr().out.splitlines()) == 1 + 4


def test_plot_of_several_files_and_of_one_file_into_a_folder(tiny_model_path, tmp_path):
    one, two = write(tmp_path / "one.wav"), write(tmp_path / "two.ogg")
    out = tmp_path / "out"
    assert main(["score", str(one), str(two), "--model", str(tiny_model_path),
                 "--plot", str(out)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["score", str(one), "--model", str(tiny_model_path), "--plot", str(existing)]) == 0
    assert [p.name for p in existing.iterdir()] == ["one.png"]


@pytest.mark.parametrize(
    ("several", "out", "message"),
    [
        (False, "talk.txt", "give a .png file (or a folder)"),
        (False, "absent/talk.png", "no folder"),
        (True, "talks.png", "several files give several pictures; give a folder"),
    ],
)
def test_a_plot_target_that_cannot_be_is_one_line_exit_2(
    tiny_model_path, tmp_path, capsys, monkeypatch, several, out, message
):
    monkeypatch.chdir(tmp_path)
    files = [str(write(tmp_path / "talk.wav"))] + ([str(write(tmp_path / "b.wav"))] * several)
    assert main(["score", *files, "--model", str(tiny_model_path), "--plot", out]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"edgeser: error: --plot {out}: {message}")
    assert captured.out == ""
    assert not list(tmp_path.glob("*.png"))


def test_without_matplotlib_plot_is_one_line_naming_the_extra(
    tiny_model_path, tmp_path, capsys, monkeypatch
):
    audio = write(tmp_path / "talk.wav")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(SystemExit) as exited:
        main(["score", str(audio), "--model", str(tiny_model_path), "--plot", "x.png"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("edgeser: error: needs the [plot] extra (matplotlib not installed)")
    assert "pip install '.[plot]'" in line
    assert captured.out == ""  # nothing was scored


def test_score_without_plot_never_imports_matplotlib(tiny_model_path, tmp_path):
    audio = write(tmp_path / "talk.wav")
    code = (
        "import sys; from edgeser.cli import main; "
        f"rc = main(['score', {str(audio)!r}, '--model', {str(tiny_model_path)!r}]); "
        "print(rc, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 False"


@dataclass(frozen=True)
class CategorisedReading(Reading):
    """A reading as the runtime will give once models have categories."""

    categories: dict[str, float] | None = None
    emotion: str | None = None


def test_categories_are_drawn_as_a_band_of_the_top_category(tiny_model, tmp_path):
    score = tiny_model.score_file(write(tmp_path / "talk.wav"))
    names = ["angry", "happy", "neutral", "sad"]
    windows = [
        CategorisedReading(
            *(r.start_s, r.end_s, *r.adv),
            categories=dict.fromkeys(names, 0.1) | {names[i % 2]: 0.7},
        )
        for i, r in enumerate(score.windows)
    ]
    banded = plot.write_plot(FileScore(score.path, score.duration_s, windows, score.aggregate),
                             tmp_path / "banded.png")  # fmt: skip
    plain = plot.write_plot(score, tmp_path / "plain.png")
    assert png_size(banded) == png_size(plain) == (WIDTH, HEIGHT)
    colours = dict(zip(sorted(names), plot.CATEGORY_COLOURS, strict=False))
    for image, expected in ((banded, True), (plain, False)):
        rgb = pixels(image)
        for name in ("angry", "happy"):  # the two top categories; the others never win
            colour = np.array([int(colours[name][i : i + 2], 16) for i in (1, 3, 5)])
            found = bool(np.all(rgb == colour, axis=-1).sum() > 500)
            assert found is expected, (image.name, name)


def test_emotion_wins_over_categories_and_none_draws_no_band():
    reading = CategorisedReading(0.0, 1.0, 0.5, 0.5, 0.5, categories={"sad": 0.9}, emotion="calm")
    assert plot._top_category(reading) == "calm"
    assert plot._top_category(CategorisedReading(0.0, 1.0, 0.5, 0.5, 0.5)) is None
    assert plot._top_category(Reading(0.0, 1.0, 0.5, 0.5, 0.5)) is None
