"""Combine finished LOCO runs of one recipe (other seeds) without training again.

    python -m benchmarks.loco_ensemble --name v1-ens2 /work/runs/loco/v1 /work/runs/loco/v1-seed1
    python -m benchmarks.loco_ensemble --mean --name v1-mean /work/runs/loco/v1 ...

Default: an **ensemble** of the runs' teachers, scored as the distiller's ensemble labels them
(the mean of the members' readings and category probabilities; the A/D/V-readings baseline is
refitted on the mean readings). ``--mean``: the mean of the members' *scores*, fold by fold:
the expected LOCO of one teacher of the recipe, a fairer yardstick than any single seed (seed
noise measured here reaches 0.09 CCC on one corpus). Both go into ``benchmarks/loco`` as one
more recipe section; a fold is scored only once every member has finished it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from edgeser.distill.reference_train import corpus_rows

from edgeser.cli_args import USAGE_ERROR, OneLineParser
from edgeser.errors import ConfigError

from .loco import REPO, code_commit, utc_now
from .loco_metrics import corpus_scores, readings_baseline
from .loco_report import write_report
from .machine import machine_info

PROG = "python -m benchmarks.loco_ensemble"


def load_member(run: Path) -> dict[str, Any]:
    """A finished or partial LOCO run: its ``run.json`` and the metrics of its finished folds."""
    if not (run / "run.json").is_file():
        raise ConfigError(f"{run}: no LOCO run there (no run.json)")
    info = json.loads((run / "run.json").read_text())
    done = {c: json.loads((run / c / "metrics.json").read_text())
            for c in info["corpora"] if (run / c / "metrics.json").is_file()}  # fmt: skip
    return {"path": run, "info": info, "folds": done}


def same_recipe(members: list[dict[str, Any]]) -> None:
    """Refuse members that differ in anything but the seed (or in their corpora)."""
    first = members[0]["info"]
    for m in members[1:]:
        info = m["info"]
        differ = sorted(k for k in first["config"].keys() & info["config"].keys()
                        if k != "seed" and first["config"][k] != info["config"][k])  # fmt: skip
        if differ or info["corpora"] != first["corpora"]:
            why = ", ".join(differ) or "corpora"
            raise ConfigError(f"{m['path']}: not the recipe of {members[0]['path']} ({why})")


def mean_readings(members: list[dict[str, Any]], corpus: str, key: str) -> np.ndarray | None:
    """The members' mean of ``key`` in their fold predictions, checked clip by clip; None
    when a member lacks it (an older run, or a teacher without a head)."""
    values, paths = [], None
    for m in members:
        with np.load(m["path"] / corpus / "predictions.npz") as saved:
            if key not in saved:
                return None
            clip_key = "fit_paths" if key == "fit_adv" else "paths"
            if paths is not None and not np.array_equal(paths, saved[clip_key]):
                raise ConfigError(f"{m['path']}/{corpus}: scored other clips than the others")
            paths = saved[clip_key]
            values.append(saved[key])
    return np.mean(values, axis=0)


def ensemble_fold(members: list[dict[str, Any]], corpus: str, corpora: Path) -> dict[str, Any]:
    """Scores of the members' mean readings on one left-out corpus."""
    first = members[0]["folds"][corpus]
    rows = corpus_rows(str(corpora), [corpus], "train") + corpus_rows(str(corpora), [corpus], "dev")
    adv = mean_readings(members, corpus, "adv")
    fit_adv = mean_readings(members, corpus, "fit_adv")
    if fit_adv is None:
        raise ConfigError(f"{members[0]['path']}/{corpus}: made before fit readings were kept")
    baseline = readings_baseline(fit_adv, corpus_rows(str(corpora), first["trained_on"], "dev"))
    labels = first["category_labels"]
    categories = mean_readings(members, corpus, "categories") if labels else None
    return {"scores": corpus_scores(adv, rows, baseline, categories, labels), "clips": len(rows)}


def mean_fold(members: list[dict[str, Any]], corpus: str) -> dict[str, Any]:
    """The members' mean of every score on one left-out corpus (NaN where any lacks it)."""
    scores = [m["folds"][corpus]["scores"] for m in members]
    keys = set().union(*scores)
    mean = {k: float(np.mean([s.get(k) if s.get(k) is not None else np.nan for s in scores]))
            for k in sorted(keys)}  # fmt: skip
    return {"scores": mean, "clips": members[0]["folds"][corpus]["clips"]}


def combine(members: list[dict[str, Any]], corpus: str, corpora: Path, mean: bool):
    """The combined fold, or ``pending`` while a member has not finished it."""
    if any(corpus not in m["folds"] for m in members):
        return {"status": "pending", "why": "a member has not finished this fold"}
    fold = mean_fold(members, corpus) if mean else ensemble_fold(members, corpus, corpora)
    parts = [m["folds"][corpus] for m in members]
    return {
        "status": "finished",
        **fold,
        "selected_step": "+".join(str(p["selected_step"]) for p in parts),
        "selection_dev_score": float(np.mean([p["selection_dev_score"] for p in parts])),
        "train_seconds": float(sum(p["train_seconds"] for p in parts)),
        "git": ", ".join(sorted({p["git"] for p in parts})),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="LOCO run folders (benchmarks.loco --out)")
    p.add_argument("--name", required=True, help="the combination's name in the report")
    p.add_argument("--mean", action="store_true", help="mean of the scores, not an ensemble")
    p.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora",
                   help="corpora folder (default: ../shared/corpora)")  # fmt: skip
    p.add_argument("--report", type=Path, default=REPO / "benchmarks" / "loco",
                   help="writes REPORT.md and REPORT.json (default benchmarks/loco)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = parse_args(given)
    if len(args.runs) < 2:
        print(f"{PROG}: error: combine at least two runs", file=sys.stderr)
        return USAGE_ERROR
    try:
        members = [load_member(r.resolve()) for r in args.runs]
        same_recipe(members)
        first = members[0]["info"]
        folds = {c: combine(members, c, args.corpora.resolve(), args.mean)
                 for c in first["corpora"]}  # fmt: skip
    except (ConfigError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    seeds = "+".join(str(m["info"]["config"]["seed"]) for m in members)
    kind = "mean of the scores" if args.mean else "ensemble"
    entry = {
        "name": args.name,
        "recipe": f"{first['recipe']} ({kind} of {len(members)} runs)",
        "corpora": first["corpora"],
        "config": {**first["config"], "seed": seeds},
        "steps": first["steps"],
        "steps_overridden": first["steps_overridden"],
        "command": shlex.join(["python", "-m", "benchmarks.loco_ensemble", *given]),
        "members": [str(m["path"]) for m in members],
        "out": ", ".join(str(m["path"]) for m in members),
        "machine": machine_info(REPO),
        "written_utc": utc_now(),
        "folds": folds,
        "scored_by": code_commit(REPO, [args.report.with_suffix(s) for s in (".md", ".json")]),
    }
    write_report(args.report, args.name, entry)
    print(json.dumps({c: f.get("scores") for c, f in folds.items()}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
