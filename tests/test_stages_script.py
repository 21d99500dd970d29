"""examples/stages.sh, the stage runner of the make_*.sh recipes: a stage that succeeded is
recorded and skipped on a rerun; a failed one is not recorded, so a rerun runs it again."""

import subprocess
from pathlib import Path

from conftest import REPO


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "corpora" / "ravdess").mkdir(parents=True, exist_ok=True)
    script = (
        f"set -euo pipefail; TIMINGS={tmp_path}/timings.tsv; CORPORA={tmp_path}/corpora; "
        f"NICE=; source {REPO}/examples/stages.sh; cd {tmp_path}; {body}"
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_a_finished_stage_is_skipped_and_a_failed_one_runs_again(tmp_path):
    assert _run(tmp_path, "stage one touch first; stage one touch second").returncode == 0
    assert (tmp_path / "first").exists() and not (tmp_path / "second").exists()
    failed = _run(tmp_path, "stage two false")
    assert failed.returncode != 0
    assert _run(tmp_path, "stage one touch third; stage two touch fourth").returncode == 0
    assert not (tmp_path / "third").exists() and (tmp_path / "fourth").exists()
    rows = [line.split("\t") for line in (tmp_path / "timings.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == ["one", "two"] and all(len(r) == 3 for r in rows)


def test_without_the_corpora_the_recipe_stops_at_once(tmp_path):
    script = f"CORPORA={tmp_path}/none; source {REPO}/examples/stages.sh; echo reached"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode == 2 and "no corpora at" in done.stderr and "reached" not in done.stdout
