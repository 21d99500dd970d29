"""RESULTS.md sections kept by focused benchmarks (``python -m benchmarks.backends`` ...):
replaced in place by their module, kept by a full run."""

from __future__ import annotations

from benchmarks import report


def test_update_section_appends_then_replaces_in_place(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\nbody\n")
    report.update_section(path, "numpy-backend", ["## numpy", "", "first"])
    report.update_section(path, "resampler", ["## resampler", "", "r1"])
    report.update_section(path, "numpy-backend", ["## numpy", "", "second"])
    text = path.read_text()
    assert text.startswith("# results\n\nbody\n")
    assert "first" not in text and text.count("## numpy") == 1
    assert text.index("second") < text.index("r1")  # replaced where it was
    assert set(report.sections(text)) == {"numpy-backend", "resampler"}


def test_a_full_run_keeps_thesections(tmp_path, monkeypatch):
    path = tmp_path / "RESULTS.md"
    path.write_text("# old full run\n")
    report.update_section(path, "resampler", ["## resampler", "", "kept"])
    monkeypatch.setattr(report, "markdown", lambda results, quality: "# new full run\n")
    monkeypatch.setattr(report, "plot_latency", lambda results, p: None)
    report.write_all({"any": 1}, tmp_path)
    text = path.read_text()
    assert text.startswith("# new full run\n") and "old" not in text
    assert "kept" in text and text.count("<!-- section: resampler -->") == 1


def test_a_focused_benchmark_publishes_its_json_and_its_section(tmp_path, capsys):
    import json

    (tmp_path / "RESULTS.md").write_text("# results\n")
    lines = ["## resampler", "", "figures"]
    report.publish_focused(tmp_path, "resampler", "resampler", {"x": 1}, "python -m b", lines)
    written = json.loads((tmp_path / "resampler.json").read_text())
    assert written == {"x": 1, "command": "python -m b"}
    assert report.sections((tmp_path / "RESULTS.md").read_text()).keys() == {"resampler"}
    assert capsys.readouterr().out.strip() == "\n".join(lines)
