"""``.ci/run``: the README's test command, in a fresh virtual environment outside the clone.

The script runs with stand-ins for ``apt-get`` and ``python3`` on PATH: ``python3 -m venv DIR``
makes a DIR whose ``pip``, ``ruff`` and ``python`` only log how they were called, so the test
sees which environment each step of the test command used, without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_PYTHON3 = """#!/bin/bash
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin"
    echo "$*" >> "$CI_LOG"
    printf 'export PATH="%s/bin:$PATH"\\n' "$3" > "$3/bin/activate"
    for tool in pip ruff python; do
        printf '#!/bin/bash\\necho "$0 $*" >> "$CI_LOG"\\n' > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
    exit 0
fi
echo "system-python3 $*" >> "$CI_LOG"
"""


@pytest.fixture
def ci_log(tmp_path) -> list[str]:
    """Run ``.ci/run`` from a copy of the clone with the stand-ins; the calls it logged."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", clone / ".ci" / "run")
    shutil.copy(REPO / "README.md", clone / "README.md")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "python3").write_text(FAKE_PYTHON3)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CI_LOG": str(log),
        "TMPDIR": str(tmp_path),
    }
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["bash", str(clone / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_ci_makes_a_new_venv_outside_the_clone(ci_log, tmp_path):
    venv_calls = [c for c in ci_log if c.startswith("-m venv ")]
    assert len(venv_calls) == 1, ci_log
    venv = Path(venv_calls[0].split()[2])
    assert not venv.is_relative_to(tmp_path / "clone")
    assert "--system-site-packages" not in venv_calls[0]


def test_ci_runs_the_readme_test_command_inside_the_venv_torch_first(ci_log):
    venv = Path(next(c for c in ci_log if c.startswith("-m venv ")).split()[2])
    steps = [c for c in ci_log if not c.startswith("-m venv ")]
    assert steps[0] == f"{venv}/bin/pip install torch==2.13.0"
    assert steps[1] == f'{venv}/bin/pip install -e .[distill,export,ray,dev,docs]'
    assert steps[2] == f"{venv}/bin/ruff check ."
    assert steps[3] == f"{venv}/bin/python -m pytest"
    assert not any(s.startswith("system-python3") for s in steps), steps
