"""The distribution's requirement ranges: bounded where a new major can break us, and admitting
the versions this suite runs with."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
PROJECT = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _extra_requirements() -> list[tuple[str, Requirement]]:
    return [(extra, Requirement(line)) for extra, lines in EXTRAS.items() for line in lines]


@pytest.mark.parametrize(("extra", "req"), _extra_requirements(), ids=str)
def test_every_extra_requirement_has_a_lower_and_an_upper_bound(extra, req):
    operators = {spec.operator for spec in req.specifier}
    assert operators & {">=", ">", "~=", "=="}, f"[{extra}] {req} has no lower bound"
    assert operators & {"<", "<=", "~=", "=="}, f"[{extra}] {req} has no upper bound"


@pytest.mark.parametrize(
    "req",
    [Requirement(line) for line in PROJECT["dependencies"]]
    + [req for _, req in _extra_requirements()],
    ids=str,
)
def test_the_installed_version_is_inside_the_range(req):
    if req.marker is not None and not req.marker.evaluate():
        pytest.skip(f"{req} does not apply to this Python")
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{req.name} is not installed here")
    assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} vs {req}"
