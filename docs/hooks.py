"""MkDocs hooks: the committed results files under benchmarks/ become part of the site.

The pages link them as ``../benchmarks/FILE`` (a path that also works when the Markdown is read
in the repository); the site holds a copy of each under ``results/benchmarks/`` and those links
are pointed there, so that ``mkdocs build --strict`` still fails on a link to a missing file.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
RESULTS = (
    "benchmarks/RESULTS.md",
    "benchmarks/latency.png",
    "benchmarks/quality.md",
    "benchmarks/memory_long.md",
    "benchmarks/loco.md",
    "benchmarks/robustness.md",
    "benchmarks/categories.md",
    "benchmarks/categories.png",
    "benchmarks/PI.md",
    "benchmarks/published/RESULTS.md",
    "benchmarks/published/latency.png",
)
SITE_FOLDER = "results"
LINK = re.compile(r"\]\(\.\./(benchmarks/[^)#\s]+)")


def on_files(files: Files, config) -> Files:
    """Add the results files to the site, under ``results/``."""
    for rel in RESULTS:
        files.append(File.generated(config, f"{SITE_FOLDER}/{rel}", abs_src_path=str(REPO / rel)))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    """Point ``../benchmarks/FILE`` links of a top-level page at the site's copy of FILE."""
    if "/" in page.file.src_uri:
        return markdown
    return LINK.sub(
        lambda m: f"]({SITE_FOLDER}/{m.group(1)}" if m.group(1) in RESULTS else m.group(0),
        markdown,
    )
