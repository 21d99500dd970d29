#!/usr/bin/env bash
# Regenerate the bundled default model (edgeser/models/default.onnx + default.json) on CPU from
# the shared corpora, then its quality report (benchmarks/quality.md). Run from the repository
# root with the distill and export extras installed:
#
#   examples/make_default_model.sh            # every stage; a stage that finished is resumed/skipped
#
# Stages: reference teacher -> train-split manifest -> label -> train -> eval -> no-teacher
# baseline (label targets + train) -> quality of the fp32 student -> card -> int8 export ->
# quality report. Intermediate files go to runs/ (git-ignored); nothing from the corpora is
# written into the package. Seconds per stage are appended to runs/default/timings.tsv.
set -euo pipefail

mkdir -p runs/default
TIMINGS=runs/default/timings.tsv
# shellcheck source=examples/stages.sh
source "$(dirname "$0")/stages.sh"

stage teacher python -m edgeser.distill.reference_train configs/reference_teacher.toml
stage manifest python -m edgeser.distill.reference_train configs/reference_teacher.toml \
    --write-manifest train runs/default/train.csv
stage label edgeser-distill label --config configs/default.toml
stage train edgeser-distill train --config configs/default.toml
stage eval edgeser-distill eval --config configs/default.toml
stage no_teacher_label python -m edgeser.distill.label_targets configs/default.toml \
    --store runs/no_teacher/store
stage no_teacher_train edgeser-distill train --config configs/default.toml \
    --store runs/no_teacher/store --out runs/no_teacher/student
stage quality_fp32 python -m benchmarks.quality --int8 none --out runs/default/quality_fp32
stage card python -m edgeser.distill.default_bundle runs/default/student/student.pt \
    runs/default/default.pt --quality runs/default/quality_fp32.json
stage export edgeser-export runs/default/default.pt --out runs/default/export --force \
    --int8 --calibration runs/default/train.csv --check
cp runs/default/export/default.int8.onnx edgeser/models/default.onnx
cp runs/default/export/default.int8.json edgeser/models/default.json
stage quality python -m benchmarks.quality
cat "$TIMINGS"
