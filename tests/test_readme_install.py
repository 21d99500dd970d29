"""Every install line of the README and the docs works as written: the package is not on an
index, so each one installs from a clone, a git URL or a wheel, and the wheel holds what the
runtime needs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version

INSTALL_PAGE = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
DOCS = "\n".join(
    p.read_text(encoding="utf-8") for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
)
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"
NOT_ON_AN_INDEX = "`pip install edgeser` finds nothing"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BUILD_REQUIRES = {
    Requirement(line).name: Requirement(line).specifier
    for line in PYPROJECT["build-system"]["requires"]
}
RUNTIME_REQUIREMENTS = {
    re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0]
    for requirement in PYPROJECT["project"]["dependencies"]
}


def _pip_install_arguments() -> list[str]:
    """What each ``pip install`` of the README and the docs installs (options left out)."""
    found = []
    for command in re.findall(r"pip install ([^`\n&#]+)", DOCS.replace(NOT_ON_AN_INDEX, "")):
        words = shlex.split(command.replace(CPU_INDEX, ""))
        found += [word for word in words if not word.startswith("-")]
    return found


def test_the_docs_say_plainly_the_package_is_not_on_an_index():
    assert "not on a package index yet" in INSTALL_PAGE and NOT_ON_AN_INDEX in INSTALL_PAGE


def test_a_bare_torch_is_only_ever_installed_from_the_cpu_index():
    for command in re.findall(r"pip install ([^`\n&#]+)", DOCS):
        if "torch" in shlex.split(command):
            assert CPU_INDEX in command, command


def test_no_install_line_asks_an_index_for_edgeser():
    arguments = _pip_install_arguments()
    assert "." in arguments and "git+URL" in arguments  # clone and git URL forms are there
    for argument in arguments:
        if argument.startswith("edgeser") and not argument.endswith(".whl"):
            assert " @ git+" in argument or ".whl[" in argument, argument
        else:  # a clone, a URL, a wheel, or one of our own requirements (from PyPI)
            assert (
                argument.startswith((".", "'.", "git+", "torch==", "build"))
                or ".whl" in (argument)
                or argument in RUNTIME_REQUIREMENTS
                or argument == "torch"  # from PyTorch's CPU index: the test below
            ), argument


def _source_tree(tmp_path: Path) -> Path:
    """What a build of the clone reads (pyproject, README, LICENSE, the three packages),
    copied to ``tmp_path/src`` so that the build leaves nothing in the clone."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for name in ("edgeser", "distill", "export"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    return source


@pytest.mark.slow
def test_python_m_build_prints_no_warning(tmp_path):
    """`python -m build` (sdist, then the wheel from it) as a user runs it: no deprecation of
    the license table, no data folder missing from ``packages``, no other warning."""
    floor = BUILD_REQUIRES["setuptools"]
    if Version(metadata.version("setuptools")) not in floor:
        pytest.skip(f"setuptools {metadata.version('setuptools')} here; the build needs {floor}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a user's
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-o", str(tmp_path / "dist"),
         str(_source_tree(tmp_path))],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-2000:]
    warnings = [line for line in output.splitlines() if "warn" in line.lower()]
    assert not warnings, "\n".join(warnings)
    (wheel,) = (tmp_path / "dist").glob("edgeser-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgeser-0.1.0.dist-info/licenses/LICENSE" in names
    (sdist,) = (tmp_path / "dist").glob("edgeser-*.tar.gz")
    with tarfile.open(sdist) as archive:
        assert "edgeser-0.1.0/distill/weights/reference_teacher.pt" in archive.getnames()


@pytest.mark.slow
def test_the_wheel_the_readme_builds_holds_the_model_teacher_and_commands(tmp_path):
    source = _source_tree(tmp_path)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeser-*-py3-none-any.whl")
    assert f"dist/{wheel.name}" in INSTALL_PAGE
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for member in (
        "edgeser/models/default.onnx",
        "edgeser/models/default.json",
        "edgeser/distill/weights/reference_teacher.pt",
        "edgeser/distill/cli.py",
        "edgeser/export/cli.py",
    ):
        assert member in names, member
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = archive.read(entry_points).decode()
    for command in ("edgeser =", "edgeser-distill =", "edgeser-export ="):
        assert command in text
