#!/usr/bin/env bash
# The second GPU run (after benchmarks/gpu_session.sh), about 5 minutes:
#   1. the CEL0 tests on the GPU and CEL0 on all 361 ISBI frames with the GPU batching
#      (one batch of 361 frames; the H100 target is < 10 s), next to the bundled DeepCEL0;
#   2. does more simulated data help? The paper schedule overfits (validation loss rises
#      after epoch ~40-90), so two runs with 6x the patches (60,000 from 1,200 frames),
#      batch 64, cosine schedule, side by side, each stopped after TRAIN_MIN minutes:
#      a fine-tune of stage 2 (BASE, the model bundled when this ran: it became stage 3,
#      docs/training.md), and a model trained from scratch.
#
#   OUT=runs/gpu2 bash benchmarks/gpu_more_data.sh
#
# Needs what benchmarks/gpu_session.sh needs. Scores of the two models on the ISBI stack:
# python benchmarks/isbi.py --deepcel0 MODEL --no-figures (any device).
set -u
OUT=${OUT:-runs/gpu2}
TRAIN_MIN=${TRAIN_MIN:-4}
source "$(dirname "$0")/gpu_common.sh"
BASE=${BASE:-runs/deepcel0_isbi2013_ft.safetensors}  # stage 2; carry it to the GPU machine

echo "== $(date -u +%FT%TZ) CEL0 tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_cel0.py 2>&1 | tail -4
echo "== ISBI 2013: the bundled DeepCEL0 and CEL0 (lambda 1e-3) on all 361 frames"
timeout 120 $PY benchmarks/isbi.py --cel0-lam 1e-3 --device "$DEVICE" --no-figures --out "$OUT/isbi_cel0_gpu.json"

BIG=("${ISBI[@]}" --device "$DEVICE" --patches 60000 --sim-frames 1200 --batch-size 64 --lr-schedule cosine)
train deepcel0_ft_big "${BIG[@]}" --init-from "$BASE" --epochs 12 --lr 3e-4 --seed 2 \
  --notes "fine-tune of stage 2 on 60,000 patches, benchmarks/gpu_more_data.sh" &
jobs=($!)
train deepcel0_big "${BIG[@]}" --epochs 15 --seed 3 --notes "60,000 patches from scratch, benchmarks/gpu_more_data.sh" &
jobs+=($!)
wait "${jobs[@]}"
echo "== done $(date -u +%FT%TZ)"
