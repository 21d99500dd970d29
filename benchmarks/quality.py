"""Quality of the default model and its relatives on the dev split of each shared corpus.

    python -m benchmarks.quality            (from the repository root)

For the reference teacher (the v2 ensemble: the mean of its members' readings), the fp32
student, the int8 student (through the edgeser runtime), the v1 teacher and v1 bundled model
beside them,
a student trained on the labels without a teacher, a student of the published Wav2Small
architecture distilled the same way (fp32 and int8), and a loudness-only baseline: CCC per labelled
dimension against the label targets (``edgeser.distill.targets``), the arousal AUC (anger,
happiness, fear vs sadness, calm, neutral; baved high vs low) and the valence AUC (happiness vs
anger, sadness, fear, disgust). Writes ``benchmarks/quality.md`` and ``benchmarks/quality.json``.
Models whose files are missing are listed as not available.

The same dev audio band-limited to 8 kHz (telephone band: resampled 16 -> 8 -> 16 kHz) is scored
too, for the models that take raw audio: how far it moves each reading of the same speech, and
the label scores it leaves. ``--narrowband-only`` measures just that part and adds it to the
existing ``OUT.json`` (for when the other models' files are not at hand).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from edgeser.distill.default_bundle import finite_or_null
from edgeser.distill.manifest import ManifestRow
from edgeser.distill.metrics import ccc
from edgeser.distill.reference_train import corpus_rows
from edgeser.distill.student import load_student
from edgeser.distill.targets import DIMENSIONS, row_target, score_against_labels
from edgeser.distill.teachers.reference import load_reference_teacher
from tqdm import tqdm

import edgeser
from edgeser.audio import read_audio

from .machine import machine_info
from .report import sections

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("ravdess", "baved", "turev", "nemo")
FRAME, HOP = 400, 160  # 25 ms frames every 10 ms for the loudness baseline
NARROWBAND_HZ = 8_000  # telephone band
Predictor = Callable[[list[np.ndarray]], np.ndarray]
DEFAULT_FP32, DEFAULT_INT8 = "student fp32 (distilled)", "student int8 (runtime)"
PUBLISHED_FP32 = "published-architecture student fp32 (distilled)"
PUBLISHED_INT8 = "published-architecture student int8 (runtime)"
STREAM_FP32 = "streaming-native student fp32 (distilled)"
STREAM_MARGIN = 0.005  # issue 18: it becomes the default only within this mean CCC of DEFAULT_FP32
REPLACE_MARGIN = 0.01  # issue 18: a new default may lose at most this CCC on any corpus/dimension
CARRIED = " (absent here: scores carried over from the run of "
V2_TEACHERS = [f"distill/weights/reference_teacher_v2-seed{s}.pt" for s in range(3)]
V1_TEACHER, V1_INT8 = "v1 reference teacher", "v1 student int8 (runtime)"


def mean_energy_db(audio: np.ndarray) -> float:
    """Mean over 25 ms frames of the frame energy in dB (the loudness baseline's score)."""
    if len(audio) < FRAME:
        audio = np.pad(audio, (0, FRAME - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[::HOP]
    return float(np.mean(10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)))


def loudness_baseline(train_rows: list[ManifestRow]) -> Predictor:
    """Loudness mapped to each dimension by least squares on the train split's label targets
    (the AUCs do not depend on that map; the CCCs need it to be on the targets' scale)."""
    loud = np.array([mean_energy_db(read_audio(r.audio)) for r in tqdm(train_rows, "loudness")])
    targets, masks = map(np.stack, zip(*(row_target(r) for r in train_rows), strict=True))
    coef = []
    for d in range(3):
        keep = masks[:, d] > 0
        coef.append(np.polyfit(loud[keep], targets[keep, d], 1))

    def predict(audio: list[np.ndarray]) -> np.ndarray:
        x = np.array([mean_energy_db(a) for a in audio])
        return np.stack([np.polyval(c, x) for c in coef], axis=1)

    return predict


def with_random_gain(predictor: Predictor, max_db: float = 12.0, seed: int = 0) -> Predictor:
    """The same predictor on clips played at a random gain (uniform +-``max_db`` dB each), as
    a change of microphone gain or distance would: the models normalise every utterance and
    do not notice; the loudness baseline does."""

    def predict(audio: list[np.ndarray]) -> np.ndarray:
        rng = np.random.default_rng(seed)
        gains = 10 ** (rng.uniform(-max_db, max_db, len(audio)) / 20)
        return predictor([(g * a).astype(np.float32) for g, a in zip(gains, audio, strict=True)])

    return predict


def torch_student(path: Path) -> Predictor:
    """A student checkpoint run in torch (fp32), one clip at a time."""
    model, _ = load_student(path)

    def predict(audio: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([model(torch.from_numpy(a)[None])[0].numpy() for a in audio])

    return predict


def runtime_model(path: Path) -> Predictor:
    """An ONNX model through the edgeser runtime (``Model.predict`` on each whole clip); clips
    shorter than the model's minimum are zero-padded to it."""
    model = edgeser.load(path)
    n_min = model.info.min_samples

    def predict(audio: list[np.ndarray]) -> np.ndarray:
        padded = (np.pad(a, (0, max(0, n_min - len(a)))) for a in audio)
        return np.array([model.predict(a, 16_000).adv for a in padded])

    return predict


ENSEMBLE = " + "  # joins the member files of a teacher ensemble in a model's path


def reference_teacher(path: Path) -> Predictor:
    """A reference teacher, or an ensemble of them (files joined by `` + ``): the mean of
    the members' readings, as the distiller labels with it."""
    members = [load_reference_teacher(Path(p)) for p in str(path).split(ENSEMBLE)]
    return lambda audio: np.mean([t(audio).adv for t in members], axis=0)


def available(path: str) -> bool:
    """Whether a model's file (every member's, for an ensemble) is here."""
    return all(Path(p).is_file() for p in path.split(ENSEMBLE))


def evaluate(predictor: Predictor, dev: dict[str, tuple[list[ManifestRow], list[np.ndarray]]]):
    """Label scores per corpus and their mean CCC over corpora (``score``)."""
    result: dict[str, Any] = {}
    for corpus, (rows, audio) in dev.items():
        result[corpus] = score_against_labels(np.asarray(predictor(audio)), rows)
    result["score"] = float(np.mean([result[c]["ccc_mean"] for c in dev]))
    return result


def band_limited(audio: np.ndarray, rate: int = NARROWBAND_HZ) -> np.ndarray:
    """A 16 kHz clip as it arrives through a ``rate`` Hz channel (a phone line): resampled down
    and back up with soxr's anti-aliasing, so nothing above ``rate / 2`` is left."""
    narrow = soxr.resample(soxr.resample(audio, 16_000, rate), rate, 16_000)
    narrow = narrow[: len(audio)]
    return np.pad(narrow, (0, len(audio) - len(narrow))).astype(np.float32)


def reading_shift(wide: np.ndarray, narrow: np.ndarray) -> dict[str, dict[str, float]]:
    """How band-limiting moves the readings of the same clips, per dimension: the mean of
    wide-band readings, the mean shift (narrow - wide), the mean |shift|, and the CCC between
    the two sets of readings (1: the 8 kHz readings are the wide-band ones)."""
    agreement = ccc(narrow, wide)
    return {
        d: {
            "mean_16k": float(np.mean(wide[:, i])),
            "mean_shift": float(np.mean(narrow[:, i] - wide[:, i])),
            "mean_abs_shift": float(np.mean(np.abs(narrow[:, i] - wide[:, i]))),
            "ccc_8k_vs_16k": float(agreement[i]),
        }
        for i, d in enumerate(DIMENSIONS)
    }


def narrowband(
    predictors: dict[str, Predictor], dev: dict[str, tuple[list[ManifestRow], list[np.ndarray]]]
) -> dict[str, Any]:
    """For each model: label scores on the band-limited dev audio and the reading shift per
    corpus against the same clips at 16 kHz."""
    narrow_dev = {c: (rows, [band_limited(a) for a in audio]) for c, (rows, audio) in dev.items()}
    report: dict[str, Any] = {"rate_hz": NARROWBAND_HZ, "models": {}}
    for name, predictor in predictors.items():
        print(f"scoring {name} at {NARROWBAND_HZ} Hz", flush=True)
        shifts = {
            corpus: reading_shift(
                np.asarray(predictor(dev[corpus][1])), np.asarray(predictor(narrow[1]))
            )
            for corpus, narrow in narrow_dev.items()
        }
        report["models"][name] = {"labels": evaluate(predictor, narrow_dev), "shift": shifts}
    return report


def fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown page: one table per corpus, then how it was made."""
    m = report["machine"]
    lines = [
        "# Quality on the dev split of the shared corpora",
        "",
        f"Produced by `{report['command']}` on {m['date_utc']} ({m['cpu']}, "
        f"{m['cores_logical']} cores, git {m['git']}) in {report['seconds']:.0f} s.",
        "",
        "CCC against the label targets of `edgeser.distill.targets` (Russell & Mehrabian 1977 "
        "values of each category; baved: arousal only), only for labelled dimensions. AUCs do not "
        "depend on that mapping: arousal = anger, happiness, fear vs sadness, calm, neutral "
        "(baved: high vs low level); valence = happiness vs anger, sadness, fear, disgust. "
        "`-` = not defined for that corpus. The dev split is speaker-disjoint from training "
        "(the manifests' `split` column; turev: actor 1984).",
        "",
    ]
    for name, note in report["not_available"].items():
        lines.append(f"- {name}: not available ({note})")
    for corpus in report["corpora"]:
        lines += [
            "",
            f"## {corpus} ({report['dev_clips'][corpus]} dev clips)",
            "",
            "| model | CCC arousal | CCC dominance | CCC valence | AUC arousal | AUC valence |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for model, result in report["results"].items():
            s = result[corpus]
            cells = [fmt(s.get(f"ccc_{d}")) for d in DIMENSIONS]
            cells += [fmt(s["auc_arousal"]), fmt(s["auc_valence"])]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## Mean CCC over labelled dimensions, averaged over corpora", ""]
    lines += ["| model | score |", "| --- | --- |"]
    lines += [f"| {k} | {fmt(v['score'])} |" for k, v in report["results"].items()]
    if "narrowband" in report:
        lines += narrowband_markdown(report["narrowband"], report["corpora"])
    lines += replacement_comparison(report)
    lines += stream_comparison(report)
    lines += published_comparison(report)
    lines += ["", "## Models", ""]
    lines += [f"- {k}: `{v}`" for k, v in report["models"].items()]
    return "\n".join(lines) + "\n"


def narrowband_markdown(nb: dict[str, Any], corpora: list[str]) -> list[str]:
    """The 8 kHz section of the report: reading shifts, then the label scores they leave."""
    khz = nb["rate_hz"] / 1000
    lines = [
        "",
        f"## {khz:g} kHz (telephone-band) input",
        "",
        f"The same dev clips band-limited to {khz:g} kHz (resampled 16 -> {khz:g} -> 16 kHz with "
        f"soxr: nothing above {khz / 2:g} kHz is left), as audio from a phone line or a "
        f"microphone sampled at {khz:g} kHz arrives. Shift = mean over clips of (reading at "
        f"{khz:g} kHz - reading at 16 kHz) of the same clip; |shift| its mean size; CCC 8k vs "
        "16k = agreement of the two sets of readings (1 = the same). Produced by "
        f"`{nb.get('command', 'python -m benchmarks.quality')}`"
        + (f" on {nb['date_utc']}" if "date_utc" in nb else "")
        + ".",
    ]
    lines += shift_comparison(nb, corpora)
    for model, m in nb["models"].items():
        lines += [
            "",
            f"### {model}",
            "",
            "| corpus | dimension | mean at 16 kHz | shift | abs shift | CCC 8k vs 16k |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for corpus in corpora:
            for d, x in m["shift"][corpus].items():
                lines.append(
                    f"| {corpus} | {d} | {x['mean_16k']:.3f} | {x['mean_shift']:+.3f} | "
                    f"{x['mean_abs_shift']:.3f} | {fmt(x['ccc_8k_vs_16k'])} |"
                )
        lines += [
            "",
            f"Label scores at {khz:g} kHz (mean CCC over corpora {fmt(m['labels']['score'])}):",
            "",
            "| corpus | CCC arousal | CCC dominance | CCC valence | AUC arousal | AUC valence |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for corpus in corpora:
            s = m["labels"][corpus]
            cells = [fmt(s.get(f"ccc_{d}")) for d in DIMENSIONS]
            cells += [fmt(s["auc_arousal"]), fmt(s["auc_valence"])]
            lines.append(f"| {corpus} | " + " | ".join(cells) + " |")
    return lines


def mean_shift_size(model: dict[str, Any], corpora: list[str], dim: str) -> float:
    """Mean over corpora of the size of a dimension's mean 8 kHz shift (how far phone audio
    moves the corpus's average reading, whichever way)."""
    return float(np.mean([abs(model["shift"][c][dim]["mean_shift"]) for c in corpora]))


def shift_comparison(nb: dict[str, Any], corpora: list[str]) -> list[str]:
    """The bundled model's 8 kHz shifts beside v1's, per dimension, against the goal of
    halving them (issue 18); nothing when either was not scored."""
    models = nb["models"]
    if DEFAULT_INT8 not in models or V1_INT8 not in models:
        return []
    lines = [
        "",
        "Size of the mean shift per corpus, averaged over the corpora, the bundled model "
        "beside v1 (goal: halved, ratio <= 0.5):",
        "",
        "| dimension | v1 | bundled | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for dim in DIMENSIONS:
        old, new = (mean_shift_size(models[m], corpora, dim) for m in (V1_INT8, DEFAULT_INT8))
        lines.append(f"| {dim} | {old:.3f} | {new:.3f} | {new / old:.2f} |")
    return lines


def carry_over(earlier: dict[str, Any] | None, name: str, path: str) -> tuple | None:
    """(scores, model note) of ``name`` from an earlier report that scored the same file,
    the note saying where the scores come from (the run that measured them, also when the
    earlier report had carried them over itself); None when it has none."""
    if not earlier or name not in earlier["results"]:
        return None
    note = earlier["models"].get(name, "")
    if note.split(CARRIED, 1)[0] != path or list(earlier["corpora"]) != list(CORPORA):
        return None  # another file, or scored on other corpora
    if CARRIED not in note:
        m = earlier["machine"]
        note = f"{path}{CARRIED}{m['date_utc']}, git {m['git']})"
    return nan_for_null(earlier["results"][name]), note


def nan_for_null(value: Any) -> Any:
    """The inverse of ``finite_or_null``: JSON nulls back to NaN."""
    if isinstance(value, dict):
        return {k: nan_for_null(v) for k, v in value.items()}
    return float("nan") if value is None else value


def replacement_comparison(report: dict[str, Any]) -> list[str]:
    """The bundled model beside v1, CCC per corpus and labelled dimension, with the rule for
    replacing a default (issue 18): the mean higher and nothing down by more than
    ``REPLACE_MARGIN``; nothing when either was not scored."""
    results = report["results"]
    if DEFAULT_INT8 not in results or V1_INT8 not in results:
        return []
    old, new = results[V1_INT8], results[DEFAULT_INT8]
    lines = [
        "",
        "## The bundled model vs v1",
        "",
        "Both int8 through the runtime. The rule for replacing the bundled default: a higher "
        f"mean and no corpus or dimension more than {REPLACE_MARGIN} CCC lower (issue 18 sets it "
        "for the teacher recipe's leave-one-corpus-out run, [loco.md](loco.md); here it is "
        "applied to the shipped students on the dev split, where v1 never saw nEMO).",
        "",
        "| corpus | dimension | v1 | bundled | difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    losses = []
    for corpus in report["corpora"]:
        for dim in DIMENSIONS:
            a, b = old[corpus].get(f"ccc_{dim}"), new[corpus].get(f"ccc_{dim}")
            if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
                continue
            lines.append(f"| {corpus} | {dim} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
            if b < a - REPLACE_MARGIN:
                losses.append(f"{corpus} {dim} {b - a:+.3f}")
    a, b = old["score"], new["score"]
    lines.append(f"| mean | | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    if b <= a:
        losses.insert(0, "the mean is not higher")
    lines += [
        "",
        "The bundled model "
        + (f"does not meet the rule: {', '.join(losses)}." if losses else "meets the rule."),
    ]
    return lines


def stream_comparison(report: dict[str, Any]) -> list[str]:
    """The streaming-native student beside the re-scoring one (both fp32, the same labels),
    with the rule that would make it the default: mean CCC within ``STREAM_MARGIN``."""
    results = report["results"]
    if STREAM_FP32 not in results or DEFAULT_FP32 not in results:
        return []
    lines = [
        "",
        "## Streaming-native student vs the re-scoring student",
        "",
        "Both fp32, distilled from the same labels with the same settings; only the "
        "architecture differs (`wav2small-stream`: frame normalisation, 40-sample hop).",
        "",
        "| corpus | re-scoring | streaming-native | difference |",
        "| --- | --- | --- | --- |",
    ]
    for corpus in report["corpora"]:
        a, b = results[DEFAULT_FP32][corpus]["ccc_mean"], results[STREAM_FP32][corpus]["ccc_mean"]
        lines.append(f"| {corpus} | {fmt(a)} | {fmt(b)} | {b - a:+.3f} |")
    a, b = results[DEFAULT_FP32]["score"], results[STREAM_FP32]["score"]
    within = b >= a - STREAM_MARGIN
    lines += [
        f"| mean | {fmt(a)} | {fmt(b)} | {b - a:+.3f} |",
        "",
        f"The streaming-native student is {'within' if within else 'not within'} "
        f"{STREAM_MARGIN} mean CCC of the re-scoring one on the dev split"
        + (
            " (it would also have to be within it on a corpus left out, which needs a LOCO "
            "run of students)."
            if within
            else ", so the bundled model stays the re-scoring one."
        ),
    ]
    return lines


def published_comparison(report: dict[str, Any]) -> list[str]:
    """Markdown lines comparing the published-architecture student with the default, corpus
    by corpus (mean CCC over labelled dimensions and both AUCs), when both were scored."""
    results = report["results"]
    pairs = [
        (f"{kind} (mean CCC)", a, b, "ccc_mean")
        for kind, a, b in (
            ("int8", DEFAULT_INT8, PUBLISHED_INT8),
            ("fp32", DEFAULT_FP32, PUBLISHED_FP32),
        )
        if a in results and b in results
    ]
    if not pairs:
        return []
    lines = [
        "",
        "## Published architecture vs the bundled default",
        "",
        "Both students distilled from the same teacher on the same labels with the same "
        "settings (`configs/default.toml`, `configs/published_student.toml`); only the "
        "architecture differs. Size, MACs and latency: [published/RESULTS.md]"
        "(published/RESULTS.md) (`python -m benchmarks --student ONNX`).",
        "",
        "| corpus | figure | default | published | published - default |",
        "| --- | --- | --- | --- | --- |",
    ]
    worse = []
    for corpus in report["corpora"]:
        for label, a, b, key in pairs:
            da, db = results[a][corpus][key], results[b][corpus][key]
            lines.append(f"| {corpus} | {label} | {fmt(da)} | {fmt(db)} | {db - da:+.3f} |")
            if label.startswith("int8") and db < da:
                worse.append(corpus)
        kind, a, b = pairs[0][0].split()[0], pairs[0][1], pairs[0][2]
        for dim in ("arousal", "valence"):
            da, db = results[a][corpus][f"auc_{dim}"], results[b][corpus][f"auc_{dim}"]
            if np.isfinite(da) and np.isfinite(db):
                lines.append(
                    f"| {corpus} | {kind} (AUC {dim}) | {fmt(da)} | {fmt(db)} | {db - da:+.3f} |"
                )
    verdict = (
        f"has a lower int8 mean CCC than the default on {', '.join(worse)}"
        if worse
        else "is at least as good as the default (int8 mean CCC) on every corpus"
    )
    lines += ["", f"The published-architecture student {verdict}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"))
    p.add_argument("--teacher", nargs="+", default=V2_TEACHERS,
                   help="reference teacher file(s); several: their ensemble")  # fmt: skip
    p.add_argument("--v1-teacher", default="distill/weights/reference_teacher.pt")
    p.add_argument(
        "--v1-int8",
        default="runs/v1/default.onnx",
        help="the v1 bundled model (taken from git by make_default_model.sh)",
    )
    p.add_argument("--student", default="runs/default/student/student.pt")
    p.add_argument("--int8", default="edgeser/models/default.onnx")
    p.add_argument("--no-teacher", default="runs/no_teacher/student/student.pt")
    p.add_argument(
        "--published-student",
        default="runs/published/student/student.pt",
        help="a wav2small-published student distilled the same way (examples/"
        "make_published_student.sh)",
    )
    p.add_argument("--published-int8", default="runs/published/export/published.int8.onnx")
    p.add_argument(
        "--stream-student",
        default="runs/default/stream_student/student.pt",
        help="the streaming-native variant (wav2small-stream) distilled from the same labels",
    )
    p.add_argument(
        "--earlier",
        help="an earlier quality.json: the scores of models whose files are absent here are "
        "carried over from it, and marked so",
    )
    p.add_argument("--out", default="benchmarks/quality", help="writes OUT.md and OUT.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--narrowband-only",
        action="store_true",
        help="measure only the 8 kHz section and add it to the existing OUT.json",
    )
    given = sys.argv[1:] if argv is None else argv  # recorded in the report as run
    args = p.parse_args(given)
    torch.set_num_threads(args.threads)
    started = time.time()
    if not Path(args.corpora, "ravdess").is_dir():
        print(f"{args.corpora}: corpora not found", file=sys.stderr)
        return 2
    dev = {}
    for corpus in CORPORA:
        rows = corpus_rows(args.corpora, [corpus], "dev")
        dev[corpus] = (rows, [read_audio(r.audio) for r in tqdm(rows, f"decode {corpus}")])
    command = shlex.join(["python", "-m", "benchmarks.quality", *given])
    teacher = ENSEMBLE.join(args.teacher)
    raw_audio_models = {
        "reference teacher": (teacher, reference_teacher),
        "student int8 (runtime)": (args.int8, runtime_model),
        V1_INT8: (args.v1_int8, runtime_model),
    }
    if args.narrowband_only:
        report = json.loads(Path(args.out).with_suffix(".json").read_text())
        predictors = {n: f(Path(p)) for n, (p, f) in raw_audio_models.items() if available(p)}
        report["narrowband"] = narrowband(predictors, dev)
        report["narrowband"].update(command=command, date_utc=machine_info(REPO)["date_utc"])
        return write_report(report, Path(args.out))
    loaders: dict[str, tuple[str, Callable[[Path], Predictor]]] = {
        "reference teacher": (teacher, reference_teacher),
        DEFAULT_FP32: (args.student, torch_student),
        DEFAULT_INT8: (args.int8, runtime_model),
        "student fp32 (labels, no teacher)": (args.no_teacher, torch_student),
        STREAM_FP32: (args.stream_student, torch_student),
        PUBLISHED_FP32: (args.published_student, torch_student),
        PUBLISHED_INT8: (args.published_int8, runtime_model),
        V1_TEACHER: (args.v1_teacher, reference_teacher),
        V1_INT8: (args.v1_int8, runtime_model),
    }
    results, models, missing, predictors = {}, {}, {}, {}
    earlier = json.loads(Path(args.earlier).read_text()) if args.earlier else None
    for name, (path, loader) in loaders.items():
        if not available(path):
            if carried := carry_over(earlier, name, path):
                results[name], models[name] = carried
            else:
                missing[name] = f"{path} is absent"
            continue
        print(f"scoring {name} ({path})", flush=True)
        predictors[name] = loader(Path(path))
        results[name], models[name] = evaluate(predictors[name], dev), path
    train_rows = corpus_rows(args.corpora, list(CORPORA), "train")
    loudness = loudness_baseline(train_rows)
    results["loudness baseline"] = evaluate(loudness, dev)
    models["loudness baseline"] = "mean frame energy (dB), linear map fitted on the train split"
    results["loudness baseline, random gain"] = evaluate(with_random_gain(loudness), dev)
    models["loudness baseline, random gain"] = "the same on clips at a random gain (+-12 dB)"
    nb = narrowband({n: predictors[n] for n in raw_audio_models if n in predictors}, dev)
    nb.update(command=command, date_utc=machine_info(REPO)["date_utc"])
    report = {
        "command": command,
        "machine": machine_info(REPO),
        "seconds": time.time() - started,
        "corpora": list(CORPORA),
        "dev_clips": {c: len(rows) for c, (rows, _) in dev.items()},
        "results": results,
        "models": models,
        "not_available": missing,
        "narrowband": nb,
    }
    return write_report(report, Path(args.out))


def write_report(report: dict[str, Any], out: Path) -> int:
    """Write ``OUT.json`` and ``OUT.md`` and print the markdown."""
    text = json.dumps(finite_or_null(report), indent=2, allow_nan=False)
    out.with_suffix(".json").write_text(text + "\n")
    md = out.with_suffix(".md")
    kept = "".join(sections(md.read_text()).values()) if md.exists() else ""  # their own runs
    md.write_text(markdown(report) + kept)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
