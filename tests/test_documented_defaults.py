"""The window/hop defaults: the streaming docs, the example config and the bundled model agree."""

from __future__ import annotations

import re

from conftest import REPO

import edgeser

STREAMING_PAGE = " ".join((REPO / "docs" / "streaming.md").read_text(encoding="utf-8").split())


def test_example_config_shows_the_bundled_models_window_and_hop():
    text = (REPO / "configs" / "runtime.toml").read_text()
    info = edgeser.load().info
    assert float(re.search(r"# window_s = ([\d.]+)", text).group(1)) == info.window_s
    assert float(re.search(r"# hop_s = ([\d.]+)", text).group(1)) == info.hop_s


def test_the_docs_state_the_bundled_models_window_and_hop_as_the_default():
    info = edgeser.load().info
    assert f"a {info.window_s:g} s window every {info.hop_s:g} s" in STREAMING_PAGE
    assert f"every hop ({info.hop_s:g} s by default" in STREAMING_PAGE

