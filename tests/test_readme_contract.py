"""The documented model contract (docs/models.md) names exactly the metadata keys the contract
defines."""

from __future__ import annotations

import re

from conftest import REPO

from edgeser.contract import OPTIONAL_METADATA, REQUIRED_METADATA

MODELS_PAGE = (REPO / "docs" / "models.md").read_text(encoding="utf-8")


def _bullet(start: str) -> str:
    """The list item of the models page that starts with ``start`` (up to the next item)."""
    begin = MODELS_PAGE.index(start)
    return MODELS_PAGE[begin : MODELS_PAGE.index("\n- ", begin)]


def test_the_metadata_list_is_the_contracts_with_optional_keys_marked():
    bullet = _bullet("- `metadata_props`:")
    keys = re.findall(r"`(edgeser\.[a-z_]+)`", bullet)
    assert set(keys) == set(REQUIRED_METADATA) | set(OPTIONAL_METADATA)
    for key in OPTIONAL_METADATA:
        assert f"`{key}` (optional" in bullet


def test_the_input_minimum_names_what_python_offers(tiny_model):
    bullet = _bullet("- Input `signal`:")
    assert "`model.info.min_samples`" in bullet
    assert isinstance(tiny_model.info.min_samples, int)
    assert re.search(r"at\s+least\s+`edgeser\.", bullet) is None  # not a Python name
