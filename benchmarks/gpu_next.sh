#!/usr/bin/env bash
# One device call on one H100 (under the tool's 600 s limit; about 8 minutes with the start-up):
#   C. first, alone on the GPU, the bundled model on the ISBI stack, plain and with 8
#      orientations (benchmarks/isbi.py prints frames/s for each: the GPU speed of orientation
#      averaging);
#   A. more_data: the bundled recipe (`deepcel0 train --preset bundled`) from scratch on 200,000
#      patches from 4,000 frames (the bundled run: 120,000 from 2,400) for 8 epochs, about as many
#      patch steps as the bundled run's 14 (more data, not more epochs, is what moved the ISBI
#      score so far, and the bundled run's validation loss sat 0.14 above its training loss);
#   B. fresh_ft: the bundled model fine-tuned on 200,000 fresh patches of the same recipe (another
#      seed) for 3 epochs, lr 1e-4 to 1e-5 (cosine);
#      A and B side by side; TRAIN_MIN is a safety stop only (a run it cuts never reaches the end
#      of its cosine schedule; the log then says "cancelled");
#   then A, B and the bundled model on the ISBI stack (plain and 8 orientations) and on the
#   simulated scenes of benchmarks/in_domain.py.
#
#   device tool: carry [".gpu"], command
#   DEEPCEL0_ISBI_DIR=$PWD/.gpu/isbi2013-bundled-tubes-hd OUT=$OUT/gpu4 bash benchmarks/gpu_next.sh
#
# A candidate replaces the bundled model only if it is better on ISBI 2013 and no worse on the
# simulated scenes (the rule that chose the bundled model, docs/training.md).
# Dry run on a CPU: PY=.venv/bin/python DEVICE=cpu TRAIN_MIN=0.5 SCALE=0.005 FRAMES=1-4 OUT=/tmp/gpu4dry bash benchmarks/gpu_next.sh
set -u
OUT=${OUT:-runs/gpu4}
TRAIN_MIN=${TRAIN_MIN:-6.5}
FRAMES=${FRAMES:-1-361}  # ISBI frames scored
source "$(dirname "$0")/gpu_common.sh"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
BUNDLED=src/napari_deepcel0/models/deepcel0_isbi2013.safetensors
RECIPE=(--preset bundled "${ISBI[@]}" --device "$DEVICE" --patches "$(n 200000)" --sim-frames "$(n 4000)")
ISBI_TIMEOUT=100

isbi "$BUNDLED" bundled --orientations 8  # first and alone: its frames/s are the GPU speed of orientation averaging
( train more_data "${RECIPE[@]}" --epochs 8 --seed 41 \
    --notes "bundled recipe on 200,000 patches, 8 epochs, benchmarks/gpu_next.sh" ) &
jobs=($!)
( train fresh_ft "${RECIPE[@]}" --init-from "$BUNDLED" --epochs 3 --lr 1e-4 --min-lr 1e-5 --seed 42 \
    --notes "bundled model fine-tuned on 200,000 fresh patches, benchmarks/gpu_next.sh" ) &
jobs+=($!)
wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
echo "== $(date -u +%FT%TZ) scoring"
isbi "$OUT/more_data.safetensors" more_data --orientations 8
isbi "$OUT/fresh_ft.safetensors" fresh_ft --orientations 8
timeout 120 $PY benchmarks/in_domain.py "$OUT/more_data.safetensors" "$OUT/fresh_ft.safetensors" "$BUNDLED" \
  --orientations 1 8 --out "$OUT/in_domain.json"
echo "== done $(date -u +%FT%TZ)"
