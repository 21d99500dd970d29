"""Leave-one-corpus-out (LOCO) evaluation of a teacher recipe: the selection rule of issue 18.

    python -m benchmarks.loco --recipe configs/reference_teacher.toml --out runs/loco/v1

For each corpus, the recipe (``edgeser.distill.reference_train``, config overrides only) is
trained on the train splits of the other corpora and selected on their dev splits, then scored
on every clip of the left-out corpus (``benchmarks.loco_metrics``). Resumable: a killed fold's
training resumes, finished folds (``OUT/CORPUS/metrics.json``) are skipped, and the report
(``benchmarks/loco.md`` and ``.json``, one section per recipe name) is rewritten at the start
and after every fold, unfinished folds marked pending. ``--report-only`` rewrites it from OUT.
The v1 recipe (600 steps per fold, one thread) takes 21-60 min for the four folds on the shared
2-core machine, depending on its load; a rerun with the same seed reproduces every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeser.distill import reference_train
from edgeser.distill.default_bundle import finite_or_null
from edgeser.distill.manifest import ManifestRow
from edgeser.distill.reference_train import ReferenceTrainConfig, corpus_rows, load_config
from edgeser.distill.teachers.base import TeacherOutput
from edgeser.distill.teachers.reference import load_reference_teacher
from tqdm import tqdm

from edgeser.audio import read_audio
from edgeser.cli_args import USAGE_ERROR, OneLineParser, whole_number
from edgeser.errors import ConfigError

from .loco_metrics import corpus_scores, readings_baseline
from .loco_report import write_report
from .machine import machine_info

PROG = "python -m benchmarks.loco"
REPO = Path(__file__).resolve().parents[1]
CORPORA = ("ravdess", "baved", "turev", "nemo")
CHUNK = 256  # clips scored per progress step


def fold_config(
    recipe: ReferenceTrainConfig, held_out: str, corpora: list[str], out: Path
) -> ReferenceTrainConfig:
    """The recipe trained on every corpus but ``held_out``, its files under ``out/held_out``."""
    fold = out / held_out
    return dataclasses.replace(
        recipe,
        corpus_names=[c for c in corpora if c != held_out],
        out_dir=str(fold / "train"),
        weights=str(fold / "teacher.pt"),
    )


def decode(rows: list[ManifestRow], what: str) -> list[np.ndarray]:
    """The audio of ``rows``, with a progress bar."""
    return [read_audio(r.audio) for r in tqdm(rows, desc=f"decode {what}", mininterval=10)]


def score_clips(teacher: Any, audio: list[np.ndarray], what: str) -> TeacherOutput:
    """The teacher's readings (and categories, when it has a head) of every clip."""
    parts = [
        teacher(audio[i : i + CHUNK])
        for i in tqdm(range(0, len(audio), CHUNK), desc=f"score {what}", mininterval=10)
    ]
    cats = [p.categories for p in parts]
    return TeacherOutput(
        adv=np.concatenate([p.adv for p in parts]),
        categories=None if any(c is None for c in cats) else np.concatenate(cats),
    )


def run_fold(cfg: ReferenceTrainConfig, held_out: str, git: str) -> dict[str, Any]:
    """Train (or resume) the fold that leaves ``held_out`` out and score it; the scores (and
    ``git``, the commit of the code that ran) are written to ``metrics.json`` beside the fold's
    teacher, and read back if already there."""
    fold = Path(cfg.weights).parent
    done = fold / "metrics.json"
    if done.is_file():
        print(f"fold {held_out}: finished earlier ({done})", flush=True)
        return json.loads(done.read_text())
    print(f"fold {held_out}: training on {', '.join(cfg.corpus_names)}", flush=True)
    if not (Path(cfg.out_dir) / "summary.json").is_file():
        reference_train.train(cfg)
    summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
    started = time.time()
    teacher = load_reference_teacher(cfg.weights)
    labels = tuple(getattr(teacher, "category_labels", ()))
    # The readings baseline learns on the training corpora's dev clips: held out from the
    # teacher's training, so their readings are as a new corpus's readings would be.
    fit_rows = corpus_rows(cfg.corpora, cfg.corpus_names, "dev")
    fit_adv = score_clips(teacher, decode(fit_rows, "baseline fit (dev)"), "baseline fit").adv
    baseline = readings_baseline(fit_adv, fit_rows)
    rows = corpus_rows(cfg.corpora, [held_out], "train") + corpus_rows(
        cfg.corpora, [held_out], "dev"
    )
    out = score_clips(teacher, decode(rows, held_out), held_out)
    categories = out.categories if labels else None
    scores = corpus_scores(out.adv, rows, baseline, categories, labels)
    # Every reading is kept (the fit clips' too), so runs of other seeds can be scored as an
    # ensemble later without training again (``benchmarks.loco_ensemble``).
    np.savez_compressed(
        fold / "predictions.npz",
        adv=out.adv,
        paths=np.array([str(r.audio) for r in rows]),
        fit_adv=fit_adv,
        fit_paths=np.array([str(r.audio) for r in fit_rows]),
        **({"categories": categories, "labels": np.array(labels)} if labels else {}),
    )
    metrics = {
        "held_out": held_out,
        "trained_on": cfg.corpus_names,
        "clips": len(rows),
        "scores": scores,
        "selected_step": summary["best"]["step"],
        "selection_dev_score": summary["best"]["score"],
        "train_seconds": summary["train_seconds"],
        "eval_seconds": time.time() - started,
        "category_labels": list(labels),
        "baseline_fit_clips": len(fit_rows),
        "finished_utc": utc_now(),
        "git": git,
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(finite_or_null(metrics), indent=2, allow_nan=False) + "\n")
    tmp.replace(done)
    print(f"fold {held_out}: {json.dumps(finite_or_null(scores))}", flush=True)
    return metrics


def code_commit(repo: Path, report: list[Path]) -> str:
    """HEAD's short hash, ``+dirty`` if the tree has changes other than the report files this
    run rewrites itself (the commit of the code that scores the folds)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    excluded = [f":(exclude){p.resolve()}" for p in report]
    changes = subprocess.run(["git", "status", "--porcelain", "--", ".", *excluded], cwd=repo,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    return f"{head}+dirty" if head and changes else head or "unknown"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fold_state(cfg: ReferenceTrainConfig) -> dict[str, Any]:
    """A fold's metrics if it has finished, else ``pending`` with the training step reached."""
    done = Path(cfg.weights).parent / "metrics.json"
    if done.is_file():
        return {"status": "finished", **json.loads(done.read_text())}
    step, last = 0, Path(cfg.out_dir) / "last.pt"
    if last.is_file():
        step = torch.load(last, map_location="cpu", weights_only=False)["state"]["step"]
    return {"status": "pending", "step": step, "of": cfg.steps}


def check_run(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Record what this run is in ``OUT/run.json`` and return the record there (its command is
    the first one); refuse an OUT made by another recipe.
    Settings that only one side knows (a key added to the recipe's code since) are not compared:
    a fold that is still training is checked in full by ``reference_train``."""
    path = out / "run.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        changed = [k for k in earlier["config"].keys() & run["config"].keys()
                   if earlier["config"][k] != run["config"][k]]  # fmt: skip
        if changed or earlier["corpora"] != run["corpora"]:
            why = ", ".join(sorted(changed)) or "corpora"
            raise ConfigError(f"{path}: made with another recipe ({why} differ); use a new --out")
        return {**earlier, "name": run["name"]}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2) + "\n")
    return run


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True, type=Path, help="reference_train TOML")
    p.add_argument("--out", required=True, type=Path, help="folder of the folds' runs")
    p.add_argument("--name", help="the recipe's name in the report (default: OUT's name)")
    p.add_argument("--steps", type=whole_number(), help="training steps of every fold")
    p.add_argument("--seed", type=whole_number(),
                   help="training seed (default: the recipe's); a v1 run with another seed "
                   "measures how far the seed alone moves the scores")  # fmt: skip
    p.add_argument("--folds", help="comma-separated left-out corpora to run (default: all)")
    p.add_argument("--corpora", help="corpora folder (default: the recipe's)")
    p.add_argument("--corpus-names", default=",".join(CORPORA), help="the LOCO corpora")
    p.add_argument("--threads", type=whole_number(), help="torch threads (default: recipe's)")
    p.add_argument("--report", type=Path, default=REPO / "benchmarks" / "loco",
                   help="writes REPORT.md and REPORT.json (default benchmarks/loco)")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="only rewrite the report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = parse_args(given)
    try:
        recipe = load_config(args.recipe)
    except (OSError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"{PROG}: error: {args.recipe}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    overrides: dict[str, Any] = {"corpora": str(Path(args.corpora or recipe.corpora).resolve())}
    if args.steps:
        overrides["steps"] = args.steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.threads:
        overrides["num_threads"] = args.threads
    recipe = dataclasses.replace(recipe, **overrides)
    corpora = [c for c in args.corpus_names.split(",") if c]
    folds = args.folds.split(",") if args.folds else corpora
    unknown = [f for f in folds if f not in corpora]
    missing = [c for c in corpora if not (Path(recipe.corpora) / c / "manifest.csv").is_file()]
    if unknown or missing or len(corpora) < 2:
        problem = (f"unknown folds {', '.join(unknown)} (corpora: {', '.join(corpora)})"
                   if unknown else f"no manifest for {', '.join(missing)} under {recipe.corpora}"
                   if missing else "LOCO needs at least two corpora")  # fmt: skip
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return USAGE_ERROR
    out = args.out.resolve()
    name = args.name or out.name
    config = dataclasses.asdict(dataclasses.replace(recipe, corpora=""))  # not where they lie
    for key in ("corpus_names", "out_dir", "weights", "num_threads"):
        config.pop(key)
    run = {"name": name, "recipe": str(args.recipe), "corpora": corpora, "config": config,
           "steps": recipe.steps, "steps_overridden": bool(args.steps),
           "command": shlex.join(["python", "-m", "benchmarks.loco", *given])}  # fmt: skip
    if args.report_only and not (out / "run.json").is_file():
        print(f"{PROG}: error: {out}: no LOCO run there to report on", file=sys.stderr)
        return USAGE_ERROR
    try:
        run = check_run(out, run)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    configs = {c: fold_config(recipe, c, corpora, out) for c in corpora}

    machine = machine_info(REPO)
    git = code_commit(REPO, [args.report.with_suffix(s) for s in (".md", ".json")])

    def report() -> None:
        entry = {**run, "out": str(out), "machine": machine, "written_utc": utc_now()}
        entry["folds"] = {c: fold_state(cfg) for c, cfg in configs.items()}
        write_report(args.report, name, entry)

    report()
    if args.report_only:
        return 0
    torch.set_num_threads(recipe.num_threads)
    for i, held_out in enumerate(folds, 1):
        print(f"=== LOCO {name}: fold {i} of {len(folds)} (left out: {held_out})", flush=True)
        run_fold(configs[held_out], held_out, git)
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
