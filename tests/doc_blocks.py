"""The fenced code blocks of the README and of docs/, and how the docs test runs them.

A ``python`` or ``bash`` block runs unless the line(s) of HTML comments right above its fence
hold ``<!-- not-run: REASON -->``. Each block runs on its own, in a folder that holds a copy of
the repository's ``examples/`` and ``configs/``; the bash blocks of one page share that folder,
in page order, so a later block can use what an earlier one wrote. ``pip`` is a stand-in that
installs nothing (the test environment is the installed one; ``.ci/run`` runs the test command
and ``test_readme_install.py`` checks every install line).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = ("python", "bash")
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not-run:(.*?)-->")
COPIED = ("examples", "configs")
PIP_STAND_IN = """#!/bin/sh
# The docs test's pip: the environment is already installed; `pip install` changes nothing.
[ "$1" = install ] || { echo "pip stand-in: only 'pip install' is expected in docs" >&2; exit 1; }
echo "(pip install $*: not run by the docs test)"
"""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its code and why it is not run."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the reason given by <!-- not-run: ... -->, if any

    @property
    def where(self) -> str:
        """``docs/page.md:LINE``, as a test id and in failure messages."""
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the docs test runs it."""
        return self.language in RUNNABLE and self.not_run is None


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, fence.group(1), code, _reason(lines, i)))
        i = end + 1
    return found


def _reason(lines: list[str], fence: int) -> str | None:
    """The not-run reason among the comment lines right above line ``fence``."""
    above = fence - 1
    while above >= 0 and lines[above].lstrip().startswith("<!--"):
        marker = NOT_RUN.search(lines[above])
        if marker:
            return marker.group(1).strip()
        above -= 1
    return None


def prepare_folder(folder: Path) -> dict[str, str]:
    """Fill ``folder`` with copies of the example files and configs; the blocks' environment."""
    for name in COPIED:
        shutil.copytree(REPO / name, folder / name)
    bin_dir = folder / ".docs-bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text(PIP_STAND_IN)
    (bin_dir / "pip").chmod(0o755)
    scripts = Path(sys.executable).parent  # edgeser, edgeser-distill, ... of this environment
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{scripts}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)  # the blocks see the installed package, as a reader would
    return env


def run_block(block: Block, folder: Path, env: dict[str, str], timeout: float = 180):
    """Run one block in ``folder``: Python in a fresh interpreter, bash with -euo pipefail."""
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
    )
