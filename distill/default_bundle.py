"""Card facts of the bundled default model, written into the student checkpoint before export.

    python -m edgeser.distill.default_bundle STUDENT.pt OUT.pt [--quality benchmarks/quality.json]

The exporter copies ``teacher_id``, ``training_data``, ``licences`` and ``metrics`` from the
checkpoint's meta into the ONNX metadata and the JSON card; the rest lands under ``training``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .student import load_student, save_student

TRAINING_DATA = [
    {
        "name": "RAVDESS (speech, audio only)",
        "citation": "Livingstone SR, Russo FA (2018). The Ryerson Audio-Visual Database of "
        "Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391.",
        "licence": "CC BY-NC-SA 4.0",
        "used": "train split: actors 1-20 (actors 21-24 held out as dev)",
    },
    {
        "name": "BAVED (Basic Arabic Vocal Emotions Dataset)",
        "citation": "BAVED, 7 Arabic words by 60 speakers at three emotion levels",
        "licence": "no licence file; its authors note commercial use is probably not "
        "appropriate: research use only",
        "used": "train split: speakers whose id is not divisible by 7; arousal level only",
    },
    {
        "name": "TurEV-DB (Turkish Emotion Voice Database)",
        "citation": "Canpolat SF, Ormanoglu Z, Zeyrek D (2020). Turkish Emotion Voice "
        "Database (TurEV-DB). SLTU-CCURL 2020, pp. 368-375.",
        "licence": "CC BY-NC-ND 4.0",
        "used": "actors 1157, 1234, 1358, 6783, 7895 (actor 1984 held out as dev)",
    },
    {
        "name": "nEMO (Polish emotional speech)",
        "citation": "Christop I (2024). nEMO: Dataset of Emotional Speech in Polish. "
        "LREC-COLING 2024, pp. 12111-12116.",
        "licence": "CC BY-NC-SA 4.0",
        "used": "train split: 7 actors (KD0 and SM0 held out as dev)",
    },
]
LICENCES = (
    "NON-COMMERCIAL / research use only: trained (through its teachers) on RAVDESS "
    "(CC BY-NC-SA 4.0), TurEV-DB (CC BY-NC-ND 4.0), nEMO (CC BY-NC-SA 4.0) and BAVED "
    "(research only). The code is Apache-2.0; these weights inherit the data's restrictions."
)
TEACHER = (
    "an ensemble of three edgeser reference teachers (distill/teachers/reference.py, ~1.0M "
    "parameters each, log-mel CNN + transformer; seeds 0-2), the label the mean of their "
    "readings, each trained on the same train splits with label targets from Russell & "
    "Mehrabian (1977); see configs/reference_teacher_v2.toml"
)
REPRODUCE = (
    "examples/make_default_model.sh (configs/reference_teacher_v2.toml, configs/default.toml)"
)


STUDENT_ROW = "student fp32 (distilled)"


def card_meta(
    teacher_id: str,
    quality: dict[str, Any] | None,
    student_row: str = STUDENT_ROW,
    reproduce: str = REPRODUCE,
) -> dict[str, Any]:
    """The card facts; ``quality`` (benchmarks/quality.json) supplies the fp32 student's (its
    row ``student_row``) and the teacher's dev scores against the labels."""
    meta: dict[str, Any] = {
        "teacher_id": teacher_id,
        "teacher_description": TEACHER,
        "training_data": TRAINING_DATA,
        "licences": LICENCES,
        "reproduce": reproduce,
        "label_targets": "edgeser.distill.targets (Russell & Mehrabian 1977 via ALMA, 0..1, A/D/V)",
    }
    if quality:
        results = quality["results"]
        meta["metrics"] = {
            "split": "dev split of each corpus (speaker-disjoint), against label targets",
            "produced_by": quality["command"],
            **{k: v for k, v in results.items() if k == student_row or k.startswith("reference")},
        }
    return finite_or_null(meta)


def finite_or_null(value: Any) -> Any:
    """NaN (an AUC a corpus cannot define) -> None, so the card is strict JSON."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_null(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def stamp(
    student: Path,
    out: Path,
    quality_path: Path | None = None,
    student_row: str = STUDENT_ROW,
    reproduce: str = REPRODUCE,
) -> dict[str, Any]:
    """Copy a student checkpoint to ``out`` with the card facts added to its meta."""
    model, meta = load_student(student)
    quality = json.loads(quality_path.read_text()) if quality_path else None
    teacher = str(meta.get("teacher_id", "unknown"))
    meta.update(card_meta(teacher, quality, student_row, reproduce))
    save_student(out, model, **meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="student checkpoint from edgeser-distill")
    parser.add_argument("out", type=Path, help="checkpoint to write, for edgeser-export")
    parser.add_argument("--quality", type=Path, help="benchmarks/quality.json for the metrics")
    parser.add_argument(
        "--student-row", default=STUDENT_ROW, help="the student's row in the quality report"
    )
    parser.add_argument("--reproduce", default=REPRODUCE, help="how to rebuild it (card text)")
    args = parser.parse_args(argv)
    meta = stamp(args.student, args.out, args.quality, args.student_row, args.reproduce)
    print(f"{args.out}: teacher {meta['teacher_id']}, metrics {'metrics' in meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
