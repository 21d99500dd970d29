"""Every code example of the README and of docs/ runs as written on the bundled example audio,
or says why it is not run (see ``doc_blocks``)."""

from __future__ import annotations

import pytest
from doc_blocks import PAGES, REPO, prepare_folder, read_blocks, run_block

# Pages whose examples need the workstation extras (torch) and take more than a few seconds.
SLOW_PAGES = {"docs/distillation.md"}


def _page_param(page):
    rel = page.relative_to(REPO).as_posix()
    marks = [pytest.mark.slow] if rel in SLOW_PAGES else []
    return pytest.param(page, id=rel, marks=marks)


RUN_PAGES = [_page_param(p) for p in PAGES if any(b.runs for b in read_blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_examples_of_the_page_run(page, tmp_path):
    if "edgeser-distill" in page.read_text():
        pytest.importorskip("torch", reason="the distillation examples need the [distill] extra")
    env = prepare_folder(tmp_path)
    for block in (b for b in read_blocks(page) if b.runs):
        done = run_block(block, tmp_path, env)
        assert done.returncode == 0, (
            f"{block.where}: the {block.language} block failed (exit {done.returncode}); mark it "
            f"<!-- not-run: REASON --> if it cannot run here\n{done.stdout[-1500:]}\n"
            f"{done.stderr[-3000:]}"
        )


def test_the_runtime_examples_are_run_not_skipped():
    """The Python API and `edgeser score` examples are among the blocks that run."""
    running = [b for p in PAGES for b in read_blocks(p) if b.runs]
    python_pages = {b.path.name for b in running if b.language == "python"}
    assert {"README.md", "getting-started.md", "python-api.md", "streaming.md"} <= python_pages
    assert any("edgeser score" in b.code for b in running if b.path.name == "command-line.md")
    assert any("edgeser score" in b.code for b in running if b.path.name == "README.md")


def test_every_not_run_block_gives_a_reason():
    for page in PAGES:
        for block in read_blocks(page):
            assert block.not_run != "", f"{block.where}: <!-- not-run: --> without a reason"


def test_a_marker_skips_its_block_and_an_unmarked_failing_block_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not-run: needs a microphone -->\n```python\nraise SystemExit(3)\n```\n\n"
        "Text.\n\n```python\nraise SystemExit(3)\n```\n\n"
        "```bash\nedgeser score examples/speech.wav\n```\n"
        "\n```\nplain output, not code\n```\n"
    )
    marked, unmarked, shell, output = read_blocks(page)
    assert (marked.not_run, marked.runs) == ("needs a microphone", False)
    assert unmarked.runs and unmarked.line == 8 and not output.runs
    folder = tmp_path / "run"
    folder.mkdir()
    env = prepare_folder(folder)
    assert run_block(unmarked, folder, env).returncode == 3
    scored = run_block(shell, folder, env)
    assert scored.returncode == 0, scored.stderr
    header = "file,start_s,end_s,arousal,dominance,valence\n"
    assert scored.stdout.startswith(f"{header}examples/speech.wav,")
