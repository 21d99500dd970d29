"""PyPI's onnxruntime 1.21.0 aarch64 wheel is refused at import, a distribution's 1.21.0 is not,
and the requirements let a distribution's build in."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from edgeser.distill.config import read_toml
from packaging.requirements import Requirement

from edgeser.errors import DependencyError
from edgeser.onnxruntime_build import is_broken_wheel, refuse_broken_onnxruntime, wheel_tags

REPO = Path(__file__).resolve().parent.parent
PYPI_AARCH64 = "cp313-cp313-manylinux_2_27_aarch64.manylinux_2_28_aarch64"


def fake_onnxruntime(site: Path, version: str, tag: str | None) -> Path:
    """An onnxruntime dist-info in ``site`` (metadata only), with a WHEEL file if ``tag``."""
    info = site / f"onnxruntime-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: onnxruntime\nVersion: {version}")
    if tag is not None:
        (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
    return info


@pytest.mark.parametrize(
    ("version", "tags", "broken"),
    [
        ("1.21.0", [PYPI_AARCH64], True),
        ("1.21.0", ["cp311-cp311-manylinux2014_aarch64"], True),
        ("1.21.0", ["cp313-cp313-linux_aarch64"], False),  # built locally or by a distribution
        ("1.21.0", [], False),  # a distribution's build without a WHEEL file
        ("1.21", [], False),  # Debian trixie's python3-onnxruntime (egg-info)
        ("1.21.0", ["cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64"], False),
        ("1.21.1", [PYPI_AARCH64], False),
        ("1.22.0", [PYPI_AARCH64], False),
    ],
)
def test_only_pypis_1_21_0_aarch64_wheel_is_broken(version, tags, broken):
    assert is_broken_wheel(version, tags) is broken


def test_wheel_tags_are_read_from_the_installed_metadata(tmp_path):
    info = fake_onnxruntime(tmp_path, "1.21.0", PYPI_AARCH64)
    assert wheel_tags(metadata.PathDistribution(info)) == [PYPI_AARCH64]
    debian = fake_onnxruntime(tmp_path / "debian", "1.21.0", None)
    assert wheel_tags(metadata.PathDistribution(debian)) == []


def test_the_installed_onnxruntime_passes():
    refuse_broken_onnxruntime()  # this machine's onnxruntime is not the broken wheel


def run_import(site: Path) -> subprocess.CompletedProcess[str]:
    """``import edgeser`` in a fresh interpreter that finds ``site``'s metadata first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    code = "import edgeser; print(repr(edgeser.load()))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_import_refuses_the_broken_wheel_with_what_to_do(tmp_path):
    fake_onnxruntime(tmp_path, "1.21.0", PYPI_AARCH64)
    run = run_import(tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeser.errors.DependencyError: onnxruntime 1.21.0 from PyPI")
    assert "pip install 'onnxruntime>=1.17,!=1.21.0'" in last
    assert issubclass(DependencyError, ImportError)


def debian_onnxruntime(site: Path) -> None:
    """Metadata as Debian trixie's python3-onnxruntime 1.21.0+dfsg installs it: an egg-info
    directory, version "1.21", no WHEEL file."""
    info = site / "onnxruntime-1.21.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.2\nName: onnxruntime\nVersion: 1.21\n")


def test_import_accepts_a_distributions_1_21_0(tmp_path):
    debian_onnxruntime(tmp_path)
    run = run_import(tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Model(")


def test_requirements_accept_a_distributions_1_21_0():
    project = read_toml(REPO / "pyproject.toml")["project"]
    (spec,) = [
        Requirement(r) for r in project["dependencies"] if Requirement(r).name == "onnxruntime"
    ]
    assert spec.specifier.contains("1.21.0")
    assert spec.specifier.contains("1.21")  # Debian's python3-onnxruntime says "1.21"
    assert not spec.specifier.contains("1.16.3")


NOISY_SESSION = """
import os, sys
import onnxruntime
real = onnxruntime.InferenceSession

def debian_like(*args, **kwargs):  # what Debian's build writes while it makes a first session
    for op in ("Abs", "Add"):
        line = f"Schema error: Trying to register schema with name {op} (domain:  version: 1)"
        os.write(2, f"{line} from file x.cc line 1, but it is already registered\\n\\n".encode())
    os.write(2, b"a real warning\\n")
    return real(*args, **kwargs)

onnxruntime.InferenceSession = debian_like
import edgeser
print(repr(edgeser.load()))
"""


def test_loading_drops_debians_schema_noise_and_keeps_other_stderr():
    run = subprocess.run(
        [sys.executable, "-c", NOISY_SESSION], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Model(")
    assert run.stderr == "a real warning\n"


def test_without_noise_stderr_passes_unchanged():
    code = (
        "import os\n"
        "from edgeser.onnxruntime_build import without_schema_noise\n"
        "with without_schema_noise():\n"
        "    os.write(2, b'first\\n\\nsecond\\n')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == "first\n\nsecond\n"
