"""Four-class emotion categories of an edgeser model on the dev split: UAR and confusion matrices.

    python -m benchmarks.categories            (from the repository root)

Each dev clip of the corpora with categories (ravdess, turev, nemo; baved has none) is scored
by the runtime (``Model.predict``: the file's probabilities are the mean over its voiced
windows), its top label against the clip's emotion (anger, happiness, neutral, sadness; calm
and the other emotions are not scored, a clip with no voiced window counts as wrong). Writes
``benchmarks/categories.md``, ``.json`` and ``categories.png`` (row-normalised confusion
matrices), with the cross-corpus (LOCO) figures of ``benchmarks/loco.json`` beside.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgeser.distill.default_bundle import finite_or_null
from edgeser.distill.metrics import unweighted_average_recall
from edgeser.distill.readings_head import CALM
from edgeser.distill.reference_train import corpus_rows
from edgeser.distill.targets import category_index
from tqdm import tqdm

import edgeser
from edgeser.audio import read_audio

from .machine import machine_info

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("ravdess", "turev", "nemo")  # baved: arousal levels, no categories
LOCO_RECIPES = ("v1-head", "v1-ens3", "v1-ens2")  # a learnt head, and the readings regression


def confusion(model: edgeser.Model, corpora: str, corpus: str) -> dict[str, Any]:
    """Counts [true label, predicted label or none] over the corpus's scored dev clips."""
    labels = list(model.info.categories)
    rows = [r for r in corpus_rows(corpora, [corpus], "dev")
            if category_index(r, labels, CALM) >= 0]  # fmt: skip
    counts = np.zeros((len(labels), len(labels) + 1), dtype=np.int64)  # last column: unvoiced
    for r in tqdm(rows, desc=corpus, mininterval=10):
        reading = model.predict(read_audio(r.audio), 16_000)
        guess = labels.index(reading.emotion) if reading.emotion else len(labels)
        counts[category_index(r, labels, CALM), guess] += 1
    truth = np.repeat(np.arange(len(labels)), counts.sum(1))
    pred = np.concatenate([np.repeat(np.arange(len(labels) + 1), row) for row in counts])
    return {
        "clips": len(rows),
        "uar": unweighted_average_recall(pred, truth, len(labels)),
        "confusion": counts.tolist(),
    }


def int8_agreement(int8: edgeser.Model, fp32: edgeser.Model, paths: list[Path]) -> dict:
    """The export gate's figures on every window of the dev clips (the model's window and hop,
    no voice gate): share of windows whose top category is the same, largest |p difference|."""
    same, total, largest = 0, 0, 0.0
    for path in tqdm(paths, desc="int8 vs fp32", mininterval=10):
        for a, b in zip(int8.score_file(path, vad=None).windows,
                        fp32.score_file(path, vad=None).windows, strict=True):  # fmt: skip
            same += int(a.emotion == b.emotion)
            total += 1
            largest = max(
                largest, max(abs(a.categories[k] - b.categories[k]) for k in a.categories)
            )
    return {"windows": total, "top_agreement": same / total, "max_abs_diff": largest}


def loco_figures(path: Path) -> dict[str, dict[str, Any]]:
    """UAR on each left-out corpus, of a learnt head and of the A/D/V-readings regression."""
    if not path.is_file():
        return {}
    recipes = json.loads(path.read_text())["recipes"]
    out = {}
    for name in LOCO_RECIPES:
        folds = recipes.get(name, {}).get("folds", {})
        out[name] = {c: {k: f["scores"].get(k) for k in ("uar_head", "uar_readings_lr")}
                     for c, f in folds.items() if f.get("status") == "finished"}  # fmt: skip
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Row-normalised confusion matrices, one panel per corpus."""
    from matplotlib.figure import Figure

    labels = report["labels"]
    fig = Figure(figsize=(4 * len(report["corpora"]), 3.8), layout="constrained")
    for ax, (corpus, r) in zip(fig.subplots(1, len(report["corpora"])),
                               report["corpora"].items(), strict=True):  # fmt: skip
        counts = np.array(r["confusion"], dtype=float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(share):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="k" if v < 0.6 else "w")
        ax.set_xticks(range(len(labels) + 1), [*labels, "unvoiced"], rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(f"{corpus}: UAR {r['uar']:.3f} ({r['clips']} clips)")
        ax.set_xlabel("predicted")
    fig.savefig(path, dpi=90)


def markdown(report: dict[str, Any]) -> str:
    labels = report["labels"]
    m = report["machine"]
    lines = [
        "# Emotion categories: four-class UAR on the dev split",
        "",
        f"Produced by `{report['command']}` on {m['date_utc']} ({m['cpu']}, git {m['git']}) in "
        f"{report['seconds']:.0f} s. Model: `{report['model']}` (labels {', '.join(labels)}). "
        "UAR = mean over the four labels of the share of their clips given that label (chance "
        "0.25; turev has no neutral clip, so its UAR is over three). Calm is not scored.",
        "",
        "| corpus | dev clips | UAR |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c} | {r['clips']} | {r['uar']:.3f} |" for c, r in report["corpora"].items()]
    if gate := report.get("int8_vs_fp32"):
        lines += [
            "",
            f"int8 against its fp32 export (`{gate['fp32']}`) on all {gate['windows']} windows of "
            f"these dev clips: top category the same on {100 * gate['top_agreement']:.1f} % "
            f"(gate: >= 98 %), largest probability difference {gate['max_abs_diff']:.4f} "
            "(gate: <= 0.03).",
        ]
    lines += ["", "![confusion matrices](categories.png)", ""]
    for corpus, r in report["corpora"].items():
        lines += [f"### {corpus}: counts (rows: true, columns: predicted)", "",
                  "| true \\ predicted | " + " | ".join([*labels, "unvoiced"]) + " |",
                  "| --- " * (len(labels) + 2) + "|"]  # fmt: skip
        lines += [f"| {labels[i]} | " + " | ".join(str(v) for v in row) + " |"
                  for i, row in enumerate(r["confusion"]) if sum(row)]  # fmt: skip
        lines.append("")
    loco = report["loco"]
    if loco:
        lines += [
            "## Beside it: on corpora left out of training (LOCO, `loco.md`)",
            "",
            "UAR on each left-out corpus of a categorical head learnt with the teacher "
            "(`v1-head`) and of a logistic regression on the teacher's A/D/V readings (the "
            "bundled head's method; `v1-ens3`/`v1-ens2`: on the ensemble's readings).",
            "",
            "| recipe | figure | " + " | ".join(CORPORA) + " |",
            "| --- " * (len(CORPORA) + 2) + "|",
        ]
        for name, folds in loco.items():
            for key in ("uar_head", "uar_readings_lr"):
                cells = [folds.get(c, {}).get(key) for c in CORPORA]
                if any(v is not None for v in cells):
                    shown = ["-" if v is None else f"{v:.3f}" for v in cells]
                    lines.append(f"| {name} | {key} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    p.add_argument("--model", default="edgeser/models/default.onnx")
    p.add_argument("--out", default="benchmarks/categories", help="writes OUT.md/.json/.png")
    p.add_argument("--fp32", help="the model's fp32 export: int8 vs fp32 categories per window")
    given = sys.argv[1:] if argv is None else argv
    args = p.parse_args(given)
    model = edgeser.load(args.model)
    if not model.info.categories:
        p.error(f"{args.model}: the model has no categorical head")
    started = time.time()
    report = {
        "command": shlex.join(["python", "-m", "benchmarks.categories", *given]),
        "machine": machine_info(REPO),
        "model": args.model,
        "labels": list(model.info.categories),
        "corpora": {c: confusion(model, args.corpora, c) for c in CORPORA},
        "loco": loco_figures(REPO / "benchmarks" / "loco.json"),
    }
    if args.fp32:
        paths = [r.audio for c in CORPORA for r in corpus_rows(args.corpora, [c], "dev")]
        gate = int8_agreement(model, edgeser.load(args.fp32), paths)
        report["int8_vs_fp32"] = {"fp32": args.fp32, **gate}
    report["seconds"] = time.time() - started
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(finite_or_null(report), indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    plot(report, out.with_suffix(".png"))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
