#!/usr/bin/env bash
# Prepared for the next session with a GPU; NOT RUN YET. Two device calls on one H100
# (each under the tool's 600 s limit; about 9 minutes of device time with the start-up):
#   STAGE=train (about 7 min):
#     C. first, alone on the GPU, the speed of orientation averaging: the bundled model on the
#        ISBI stack, plain and with 8 orientations (benchmarks/isbi.py prints frames/s for each);
#     A. long_mix: the bundled recipe (`deepcel0 train --preset bundled`) from scratch for 24
#        epochs instead of 14 (the bundled run's validation loss was still falling at epoch 14);
#     B. more_mix: the same recipe on 1.5 times the data (180,000 patches), 14 epochs (more data,
#        not more epochs, is what moved the ISBI score so far);
#     A and B side by side. Estimated from the bundled run (274 s for 14 epochs of 120,000
#     patches, about 70 s of it simulating, next to two other trainings): about 420 s each.
#     TRAIN_MIN (8) is a safety stop only: a run it cuts never reaches the end of its cosine
#     schedule, so compare cut runs with care (the log says "cancelled").
#   STAGE=score (about 3 min): A, B and the bundled model on the ISBI stack (plain and 8
#     orientations) and on the simulated scenes of benchmarks/in_domain.py; the time of the
#     position fit (on that machine's CPU) next to the network on the GPU.
#   (STAGE=all, the default, runs both, for a dry run or a machine without the 600 s limit.)
#
#   STAGE=train OUT=runs/gpu4 bash benchmarks/gpu_next.sh; then STAGE=score OUT=runs/gpu4 bash benchmarks/gpu_next.sh
#   (device tool: carry [".gpu"], DEEPCEL0_ISBI_DIR=$PWD/.gpu/isbi2013-bundled-tubes-hd, OUT=$OUT/gpu4 for the
#   first call; the second call needs the two models back: carry the OUT folder, e.g. copied to .gpu/gpu4)
#
# A candidate replaces the bundled model only if it is better on ISBI 2013 and no worse on the
# simulated scenes (the rule that chose the bundled model, docs/training.md).
# Dry run on a CPU: PY=.venv/bin/python DEVICE=cpu TRAIN_MIN=0.3 SCALE=0.01 FRAMES=1-4 OUT=/tmp/gpu4dry bash benchmarks/gpu_next.sh
set -u
OUT=${OUT:-runs/gpu4}
STAGE=${STAGE:-all}
TRAIN_MIN=${TRAIN_MIN:-8}
SCALE=${SCALE:-1}        # multiplies the patch and frame counts (a dry run uses a small one)
FRAMES=${FRAMES:-1-361}  # ISBI frames scored
source "$(dirname "$0")/gpu_common.sh"
n() { awk "BEGIN {print int($1 * $SCALE + 0.5)}"; }
echo "== $(date -u +%FT%TZ) stage $STAGE; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
BUNDLED=src/napari_deepcel0/models/deepcel0_isbi2013.safetensors
RECIPE=(--preset bundled "${ISBI[@]}" --device "$DEVICE")
isbi() {  # MODEL LABEL: score MODEL on the ISBI stack, plain and with 8 orientations
  timeout 150 $PY benchmarks/isbi.py --deepcel0 "$1" --frames "$FRAMES" --device "$DEVICE" --orientations 8 \
    --no-figures --out "$OUT/isbi_$2.json" 2>&1 | sed "s/^/[isbi $2] /"
}

if [ "$STAGE" != score ]; then
  isbi "$BUNDLED" bundled  # first and alone: its frames/s are the GPU speed of orientation averaging
  ( train long_mix "${RECIPE[@]}" --patches "$(n 120000)" --sim-frames "$(n 2400)" --epochs 24 --seed 41 \
      --notes "bundled recipe, 24 epochs, benchmarks/gpu_next.sh" ) &
  jobs=($!)
  ( train more_mix "${RECIPE[@]}" --patches "$(n 180000)" --sim-frames "$(n 3600)" --seed 42 \
      --notes "bundled recipe on 180,000 patches, benchmarks/gpu_next.sh" ) &
  jobs+=($!)
  wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
fi
if [ "$STAGE" != train ]; then
  echo "== $(date -u +%FT%TZ) scoring"
  isbi "$OUT/long_mix.safetensors" long_mix
  isbi "$OUT/more_mix.safetensors" more_mix
  timeout 150 $PY benchmarks/in_domain.py "$OUT/long_mix.safetensors" "$OUT/more_mix.safetensors" "$BUNDLED" \
    --orientations 1 8 --out "$OUT/in_domain.json"
  # the position fit runs on the CPU (16 cores there) while the network runs on the GPU
  timeout 150 $PY benchmarks/fit_positions.py --shifts 0.5 --out "$OUT/fit_positions_gpu_machine.json"
fi
echo "== done $(date -u +%FT%TZ)"
