#!/usr/bin/env bash
# Prepared for the next session with a GPU; NOT RUN YET. About 8 minutes on one H100.
# The questions left open by the third GPU run (docs/training.md, docs/benchmarks.md):
#   A. long_mix: the bundled recipe (`deepcel0 train --preset bundled`) from scratch for 28 epochs
#      instead of 14 (the bundled run's validation loss was still falling at epoch 14);
#   B. more_mix: the same recipe on twice the data (240,000 patches), 14 epochs (more data, not
#      more epochs, is what moved the ISBI score so far);
#   each then scored on the ISBI stack, plain and with 8 orientations;
#   C. first, alone on the GPU, the speed of orientation averaging: the bundled model on the
#      ISBI stack, plain and with 8 orientations (benchmarks/isbi.py prints frames/s for each);
#   and at the end the simulated scenes of benchmarks/in_domain.py for A, B and the bundled model.
#
#   OUT=runs/gpu4 bash benchmarks/gpu_next.sh
#   (device tool: carry [".gpu"], DEEPCEL0_ISBI_DIR=$PWD/.gpu/isbi2013-bundled-tubes-hd OUT=$OUT/gpu4)
#
# A candidate replaces the bundled model only if it is better on ISBI 2013 and no worse on the
# simulated scenes (the rule that chose the bundled model, docs/training.md).
# Dry run on a CPU: DEVICE=cpu TRAIN_MIN=0.3 SCALE=0.01 FRAMES=1-4 OUT=/tmp/gpu4dry bash benchmarks/gpu_next.sh
set -u
OUT=${OUT:-runs/gpu4}
TRAIN_MIN=${TRAIN_MIN:-6}
SCALE=${SCALE:-1}        # multiplies the patch and frame counts (a dry run uses a small one)
FRAMES=${FRAMES:-1-361}  # ISBI frames scored
source "$(dirname "$0")/gpu_common.sh"
n() { awk "BEGIN {print int($1 * $SCALE + 0.5)}"; }
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
BUNDLED=src/napari_deepcel0/models/deepcel0_isbi2013.safetensors
RECIPE=(--preset bundled "${ISBI[@]}" --device "$DEVICE")
isbi() {  # MODEL LABEL: score MODEL on the ISBI stack, plain and with 8 orientations
  timeout 200 $PY benchmarks/isbi.py --deepcel0 "$1" --frames "$FRAMES" --device "$DEVICE" --orientations 8 \
    --no-figures --out "$OUT/isbi_$2.json" 2>&1 | sed "s/^/[isbi $2] /"
}

isbi "$BUNDLED" bundled  # first and alone: its frames/s are the GPU speed of orientation averaging
( train long_mix "${RECIPE[@]}" --patches "$(n 120000)" --sim-frames "$(n 2400)" --epochs 28 --seed 41 \
    --notes "bundled recipe, 28 epochs, benchmarks/gpu_next.sh"
  isbi "$OUT/long_mix.safetensors" long_mix ) &
jobs=($!)
( train more_mix "${RECIPE[@]}" --patches "$(n 240000)" --sim-frames "$(n 4800)" --seed 42 \
    --notes "bundled recipe on 240,000 patches, benchmarks/gpu_next.sh"
  isbi "$OUT/more_mix.safetensors" more_mix ) &
jobs+=($!)
wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
echo "== $(date -u +%FT%TZ) simulated scenes"
timeout 120 $PY benchmarks/in_domain.py "$OUT/long_mix.safetensors" "$OUT/more_mix.safetensors" "$BUNDLED" \
  --orientations 1 8 --out "$OUT/in_domain.json"
echo "== done $(date -u +%FT%TZ)"
