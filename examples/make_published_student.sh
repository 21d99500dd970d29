#!/usr/bin/env bash
# Distil a student of the published Wav2Small architecture (preset wav2small-published) exactly
# as the bundled default is made (examples/make_default_model.sh): the same reference teacher,
# train-split manifest and label store (runs/default/store; shared, so labelled once), the same
# training settings; only the student differs. Then its card, int8 export and the quality
# report beside the default. Run from the repository root with the distill and export extras:
#
#   examples/make_published_student.sh        # finished stages are resumed/skipped
#
# Outputs under runs/published/ (git-ignored); seconds per stage in runs/published/timings.tsv.
set -euo pipefail

mkdir -p runs/default runs/published
TIMINGS=runs/published/timings.tsv
# shellcheck source=examples/stages.sh
source "$(dirname "$0")/stages.sh"

test -f runs/default/train.csv || stage manifest python -m edgeser.distill.reference_train \
    configs/reference_teacher.toml --write-manifest train runs/default/train.csv
stage label edgeser-distill label --config configs/default.toml   # the default's labels
stage train edgeser-distill train --config configs/published_student.toml
stage eval edgeser-distill eval --config configs/published_student.toml
stage quality_fp32 python -m benchmarks.quality --corpora "$CORPORA" --int8 none --published-int8 none \
    --out runs/published/quality_fp32
stage card python -m edgeser.distill.default_bundle runs/published/student/student.pt \
    runs/published/published.pt --quality runs/published/quality_fp32.json \
    --student-row "published-architecture student fp32 (distilled)" \
    --reproduce "examples/make_published_student.sh (configs/published_student.toml)"
stage export edgeser-export runs/published/published.pt --out runs/published/export --force \
    --int8 --calibration runs/default/train.csv --check
stage write_back python -m edgeser.distill.wav2small_published runs/published/published.pt \
    runs/published/wav2small-layout
stage quality python -m benchmarks.quality --corpora "$CORPORA" --earlier benchmarks/quality.json
cat "$TIMINGS"
