"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing page
or a docstring target that does not exist fails the build, and so this test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

SOURCES = ("mkdocs.yml", "docs", "edgeser", "benchmarks")


def _build(root, site):
    """``mkdocs build --strict`` of the tree at ``root`` into ``site``."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _needs_mkdocs():
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the site needs the [docs] extra")


def test_the_site_builds_strictly_with_the_api_reference_and_results(tmp_path):
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("edgeser.load", "edgeser.Model", "edgeser.Stream", "edgeser.AudioError"):
        assert f'id="{name}"' in reference, name
    assert "Score one clip (no voice gating)" in reference  # predict's docstring
    assert (tmp_path / "site" / "results" / "benchmarks" / "RESULTS" / "index.html").is_file()


@pytest.mark.parametrize(
    ("page", "added"),
    [("index.md", "[gone](no-such-page.md)"), ("reference.md", "::: edgeser.no_such_name")],
)
def test_a_broken_link_or_reference_fails_the_build(tmp_path, page, added):
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, tmp_path / name)
    with (tmp_path / "docs" / page).open("a") as f:
        f.write(f"\n{added}\n")
    done = _build(tmp_path, tmp_path / "site")
    assert done.returncode != 0
