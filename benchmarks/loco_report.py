"""``benchmarks/loco.md`` and ``.json``: the LOCO scores of every recipe run, the baseline first.

Each run of ``benchmarks.loco`` replaces its own recipe's section (by name) and keeps the others;
a fold that has not finished is shown as pending, never as a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from edgeser.distill.default_bundle import finite_or_null

BASELINE = "v1"  # listed first: every other recipe is compared with it
SEED_MEAN = "v1-mean"  # v1's scores averaged over seeds (benchmarks.loco_ensemble --mean)
COLUMNS = (
    ("CCC A", "ccc_arousal"),
    ("CCC D", "ccc_dominance"),
    ("CCC V", "ccc_valence"),
    ("CCC mean", "ccc_mean"),
    ("AUC A", "auc_arousal"),
    ("AUC V", "auc_valence"),
    ("UAR head", "uar_head"),
    ("UAR A/D/V LR", "uar_readings_lr"),
)

ABOUT = (
    "For each corpus, the recipe (`edgeser.distill.reference_train`, config overrides only) is "
    "trained on the train splits of the other corpora, selected on their dev splits, and scored "
    "on **every clip** of the left-out corpus. CCC against the label targets of "
    "`edgeser.distill.targets` (labelled dimensions only: baved has arousal only). AUC A: "
    "anger, happiness, fear, surprise vs sadness, neutral, calm, boredom (baved: level high vs "
    "low); AUC V: happiness vs anger, sadness, fear, disgust. UAR: four-class unweighted "
    "average recall (anger, happiness, neutral, sadness; over the classes the corpus has: "
    "turev has no neutral, baved no category) of the teacher's categorical head, and of its "
    "baseline, a logistic regression on the teacher's A/D/V readings fitted on the training "
    "corpora's dev clips. `-` = not defined (or no head); the mean is over the left-out "
    "corpora that define the figure, given only once every fold has finished. A recipe named "
    "`v1-seedN` is v1 trained with another seed (`--seed N`): its difference from v1 is the "
    "seed noise. `v1-mean` is the mean of v1's scores over its seeds, fold by fold "
    "(`benchmarks.loco_ensemble --mean`): the expected score of one v1 teacher, the yardstick "
    "for every other recipe; a recipe named `...-ensN` is an ensemble of N teachers of one "
    "recipe (seeds), scored on the mean of their readings, as the distiller labels with it."
)


def fmt(value: Any) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def fold_mean(folds: dict[str, dict[str, Any]], key: str) -> float | None:
    """Mean of a score over the folds that define it; None while any fold is pending."""
    if any(f["status"] != "finished" for f in folds.values()):
        return None
    values = [f["scores"].get(key) for f in folds.values()]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def recipe_section(name: str, entry: dict[str, Any]) -> list[str]:
    """One recipe's table: a row per left-out corpus, then the mean."""
    m, folds = entry["machine"], entry["folds"]
    steps = f"{entry['steps']} steps per fold"
    if entry["steps_overridden"]:
        steps += " (`--steps`)"
    steps += f", seed {entry['config']['seed']}"
    done = [f for f in folds.values() if f["status"] == "finished"]
    finished = len(done)
    lines = [
        "",
        f"## {name}: `{entry['recipe']}`, {steps}",
        "",
        f"`{entry['command']}`: {finished} of {len(folds)} folds finished, scored by the code "
        f"at git {', '.join(sorted({f.get('git', '?') for f in done})) or '-'} on {m['cpu']} "
        f"(report written {entry.get('written_utc', m['date_utc'])}; files in `{entry['out']}`).",
        "",
        "| left out | clips | " + " | ".join(c for c, _ in COLUMNS) + " | selected step "
        "(dev score) | train min |",
        "| --- " * (len(COLUMNS) + 4) + "|",
    ]
    for corpus, f in folds.items():
        if f["status"] != "finished":
            why = f.get("why") or f"training step {f['step']} of {f['of']}"
            lines.append(f"| {corpus} | pending ({why}) |")
            continue
        s = f["scores"]
        cells = [fmt(s.get(k)) for _, k in COLUMNS]
        lines.append(
            f"| {corpus} | {f['clips']} | " + " | ".join(cells) + f" | {f['selected_step']} "
            f"({f['selection_dev_score']:.3f}) | {f['train_seconds'] / 60:.0f} |"
        )
    means = [fmt(fold_mean(folds, k)) if finished == len(folds) else "pending" for _, k in COLUMNS]
    lines.append("| **mean** | | " + " | ".join(means) + " | | |")
    return lines


def difference(x: float | None, y: float | None) -> str:
    ok = x is not None and y is not None and np.isfinite(x) and np.isfinite(y)
    return f"{x - y:+.3f}" if ok else "-"


RULE_MARGIN = 0.01  # issue 18: no corpus or dimension may lose more than this
DIMENSIONS = ("ccc_arousal", "ccc_dominance", "ccc_valence")


def verdict(folds: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> str:
    """Issue 18's rule on CCC: the mean over left-out corpora must rise, and neither any
    corpus's CCC mean nor any dimension's mean over corpora may fall by more than 0.01."""
    if folds.keys() != base.keys() or fold_mean(folds, "ccc_mean") is None:
        return "pending"
    if fold_mean(base, "ccc_mean") is None:
        return "pending"
    gain = fold_mean(folds, "ccc_mean") - fold_mean(base, "ccc_mean")
    losses = []
    for corpus, f in folds.items():
        drop = f["scores"]["ccc_mean"] - base[corpus]["scores"]["ccc_mean"]
        if drop < -RULE_MARGIN:
            losses.append(f"{corpus} {drop:+.3f}")
    for dim in DIMENSIONS:
        x, y = fold_mean(folds, dim), fold_mean(base, dim)
        if x is not None and y is not None and x - y < -RULE_MARGIN:
            losses.append(f"{dim.removeprefix('ccc_')} {x - y:+.3f}")
    if gain > 0 and not losses:
        return f"passes (mean CCC {gain:+.3f})"
    return f"fails (mean CCC {gain:+.3f}" + "".join(f"; {loss}" for loss in losses) + ")"


def comparison(recipes: dict[str, dict[str, Any]], base_name: str, names: list[str]) -> list[str]:
    """Each of ``names`` minus the baseline ``base_name``, per left-out corpus both have
    finished, the difference of the means once both have every fold, and the rule's verdict."""
    if not names:
        return []
    base = recipes[base_name]["folds"]
    lines = [
        "",
        f"## Against {base_name}",
        "",
        "Recipe minus baseline on the folds both have finished. Issue 18 keeps a change only if "
        "the mean CCC improves and no corpus (its CCC mean) or dimension (its CCC mean over the "
        "corpora) loses more than 0.01: the verdict line.",
        "",
        "| recipe | left out | " + " | ".join(c for c, _ in COLUMNS) + " |",
        "| --- " * (len(COLUMNS) + 2) + "|",
    ]
    verdicts = []
    for name in names:
        folds = recipes[name]["folds"]
        for corpus, f in folds.items():
            b = base.get(corpus, {"status": "absent"})
            if f["status"] != "finished" or b["status"] != "finished":
                lines.append(f"| {name} | {corpus} | pending |")
                continue
            cells = [difference(f["scores"].get(k), b["scores"].get(k)) for _, k in COLUMNS]
            lines.append(f"| {name} | {corpus} | " + " | ".join(cells) + " |")
        if folds.keys() == base.keys():
            cells = [difference(fold_mean(folds, k), fold_mean(base, k)) for _, k in COLUMNS]
            if any(c != "-" for c in cells):
                lines.append(f"| {name} | **mean** | " + " | ".join(cells) + " |")
        verdicts.append(f"- {name}: {verdict(folds, base)}")
    return [*lines, "", *verdicts]


def comparisons(recipes: dict[str, dict[str, Any]]) -> list[str]:
    """Every recipe against v1 (seed 0); and, once the seed mean of v1 is there, every recipe
    that is not a v1 seed against that mean, the yardstick that seed noise does not move."""
    names = [n for n in recipes if n != BASELINE]
    if BASELINE not in recipes:
        return []
    lines = comparison(recipes, BASELINE, [n for n in names if n != SEED_MEAN])
    if SEED_MEAN in recipes:
        others = [n for n in names if n != SEED_MEAN and not n.startswith(f"{BASELINE}-seed")]
        lines += comparison(recipes, SEED_MEAN, others)
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Leave-one-corpus-out (LOCO) evaluation of teacher recipes", "", ABOUT]
    for name, entry in report["recipes"].items():
        lines += recipe_section(name, entry)
    lines += comparisons(report["recipes"])
    return "\n".join(lines) + "\n"


def write_report(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Put ``entry`` in ``PATH.json`` as recipe ``name`` (the baseline first, the others in the
    order they came) and rewrite ``PATH.md`` from it."""
    js, md = path.with_suffix(".json"), path.with_suffix(".md")
    report = json.loads(js.read_text()) if js.is_file() else {"recipes": {}}
    report["recipes"][name] = finite_or_null(entry)
    order = sorted(report["recipes"], key=lambda n: n != BASELINE)  # stable: others keep order
    report = {"about": ABOUT, "recipes": {n: report["recipes"][n] for n in order}}
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, text in ((js, json.dumps(report, indent=2, allow_nan=False) + "\n"),
                         (md, markdown(report))):  # fmt: skip
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
