#!/usr/bin/env bash
# Regenerate the bundled default model v2 (edgeser/models/default.onnx + default.json) on CPU
# from the shared corpora, then its quality report (benchmarks/quality.md). Run from the
# repository root with the distill and export extras installed:
#
#   examples/make_default_model.sh            # every stage; a finished one is skipped
#
# Stages: three reference teachers (configs/reference_teacher_v2.toml, seeds 0-2) -> train-split
# manifest -> label with their ensemble -> train -> eval -> the streaming-native student ->
# quality of the fp32 student -> categorical head on the readings -> card -> int8 export ->
# no-teacher baseline (label targets + train) -> quality report. Intermediate files go to runs/
# (git-ignored); nothing from the corpora is written into the package. Seconds per stage are
# appended to runs/default/timings.tsv; a stage recorded there is skipped on a rerun.
set -euo pipefail

mkdir -p runs/default runs/v1
TIMINGS=runs/default/timings.tsv
# shellcheck source=examples/stages.sh
source "$(dirname "$0")/stages.sh"

for seed in 0 1 2; do
    # The members are committed: reuse them unless a run of this member was started and not
    # finished (then it resumes). Delete distill/weights/reference_teacher_v2-seedN.pt to retrain.
    run=runs/reference_teacher_v2-seed$seed
    if [ -f "distill/weights/reference_teacher_v2-seed$seed.pt" ] \
        && { [ -f "$run/summary.json" ] || [ ! -f "$run/last.pt" ]; }; then
        echo "== teacher_seed$seed: distill/weights/reference_teacher_v2-seed$seed.pt is there" >&2
        continue
    fi
    stage "teacher_seed$seed" python -m edgeser.distill.reference_train \
        configs/reference_teacher_v2.toml --seed "$seed"
done
stage manifest python -m edgeser.distill.reference_train configs/reference_teacher_v2.toml \
    --write-manifest train runs/default/train.csv
stage label edgeser-distill label --config configs/default.toml --num-threads 2
stage train edgeser-distill train --config configs/default.toml
stage eval edgeser-distill eval --config configs/default.toml
# The streaming-native variant from the same labels: the report sets it beside the default.
stage stream_train edgeser-distill train --config configs/default.toml \
    --student wav2small-stream --out runs/default/stream_student
# v1, the model this one replaced, is scored beside it: its file from the last v1 commit.
[ -f runs/v1/default.onnx ] || git show a756e26:edgeser/models/default.onnx >runs/v1/default.onnx
stage quality_fp32 python -m benchmarks.quality --int8 none --out runs/default/quality_fp32
stage head python -m edgeser.distill.readings_head runs/default/student/student.pt \
    runs/default/student_head.pt --data runs/default/train.csv
stage card python -m edgeser.distill.default_bundle runs/default/student_head.pt \
    runs/default/default.pt --quality runs/default/quality_fp32.json
stage export edgeser-export runs/default/default.pt --out runs/default/export --force \
    --int8 --calibration runs/default/train.csv --check
cp runs/default/export/default.int8.onnx edgeser/models/default.onnx
cp runs/default/export/default.int8.json edgeser/models/default.json
# The baseline the report sets beside the student: the same student trained on the label
# targets without a teacher.
stage no_teacher_label python -m edgeser.distill.label_targets configs/default.toml \
    --store runs/no_teacher/store
stage no_teacher_train edgeser-distill train --config configs/default.toml \
    --store runs/no_teacher/store --out runs/no_teacher/student
stage quality python -m benchmarks.quality
cat "$TIMINGS"
