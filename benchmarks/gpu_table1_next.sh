#!/usr/bin/env bash
# One device call (about 8 minutes on one H100 or H200), the next step for issue #6 (DeepCEL0 below
# the paper's Table 1 row at 50 nm on 1b-3b). Every protocol model so far was fine-tuned from the
# bundled model, which learned real cameras' noise; the paper trains from scratch on its noise model.
# Side by side:
#   A. scratch: the Table 1 protocol data (2,250 photons, no background, white Gaussian noise at
#      10-20 dB, half the frames along filaments, 11 emitters/um^2 in the others) from scratch, 120,000
#      patches from 2,400 frames, 8 epochs, batch 64, lr 1e-3 to 2e-5 (cosine: the bundled recipe's);
#   B. longer: the best protocol model (runs/deepcel0_protocol_gpu.safetensors) fine-tuned on 160,000
#      fresh patches of the same data, 3 epochs, lr 5e-5 to 5e-6 (cosine);
#   (1.44 million patch steps together: about 4 minutes at the 6,000 patches/s of the bundled model's
#   H100 run, docs/training.md; each training stops at TRAIN_MIN, each Table 1 at 120 s, so the call
#   ends within 8 minutes, under the device's 10 per call)
# then Table 1 (benchmarks/paper_table1.py, all frames, no CEL0) on A, B and the model B starts from,
# plain and with 8 orientations. TRAIN_MIN is a safety stop only (a run it cuts never reaches the end
# of its cosine schedule; the log then says "cancelled").
#
#   prepare here: mkdir -p .gpu && cp -r ../shared/data/isbi2013-bundled-tubes-hd .gpu/ (the device
#   machine has no ../shared; .gpu is git-ignored and travels with carry; 3 MB)
#   device tool: carry [".gpu"], command
#   DEEPCEL0_ISBI_DIR=$PWD/.gpu/isbi2013-bundled-tubes-hd OUT=$OUT bash benchmarks/gpu_table1_next.sh
#
# MODELS (default .gpu) holds deepcel0_protocol_gpu.safetensors (a copy of runs/; without it, as on a
# new checkout, where runs/ is empty, only A runs, to be compared with the protocol model's record,
# benchmarks/results/paper_table1_protocol_gpu.json). Writes to OUT:
# scratch.safetensors, longer.safetensors, paper_table1_{scratch,longer,start}.json, session.log.
# A model is kept (docs/benchmarks.md, "A model trained for this test") when it beats
# paper_table1_start.json at 50 nm on 1b-3b without losing 4b.
# Dry run on a CPU: PY=.venv/bin/python DEVICE=cpu TRAIN_MIN=0.3 SCALE=0.002 FRAMES=1-3 \
#   MODELS=runs OUT=/tmp/gpu7dry bash benchmarks/gpu_table1_next.sh
set -u
OUT=${OUT:-runs/gpu7}
TRAIN_MIN=${TRAIN_MIN:-5}
MODELS=${MODELS:-.gpu}
FRAMES=${FRAMES:-1-361}  # Table 1 frames scored
source "$(dirname "$0")/gpu_common.sh"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
START=$MODELS/deepcel0_protocol_gpu.safetensors
PROTOCOL_DATA=(--structure-fraction 0.5 --density 11 --snr-fraction 1.0 --snr 10 20 --photons 2250 2250
               --background 0 0 --fwhm-jitter 0 --batch-size 64 --lr-schedule cosine)

table1() {  # MODEL LABEL: Table 1 on MODEL, plain and with 8 orientations, into $OUT/paper_table1_LABEL.json
  timeout 120 $PY benchmarks/paper_table1.py --deepcel0 "$1" --no-cel0 --orientations 8 --frames "$FRAMES" \
    --device "$DEVICE" --out "$OUT/paper_table1_$2.json" 2>&1 | sed "s/^/[table1 $2] /"
}

( train scratch "${ISBI[@]}" --device "$DEVICE" "${PROTOCOL_DATA[@]}" --patches "$(n 120000)" \
    --sim-frames "$(n 2400)" --epochs 8 --lr 1e-3 --min-lr 2e-5 --seed 71 \
    --notes "Table 1 protocol model from scratch, benchmarks/gpu_table1_next.sh"
  table1 "$OUT/scratch.safetensors" scratch ) &
jobs=($!)
if [ -f "$START" ]; then
  ( train longer "${ISBI[@]}" --device "$DEVICE" "${PROTOCOL_DATA[@]}" --init-from "$START" \
      --patches "$(n 160000)" --sim-frames "$(n 3200)" --epochs 3 --lr 5e-5 --min-lr 5e-6 --seed 72 \
      --notes "Table 1 protocol model, a second GPU fine-tune on fresh patches, benchmarks/gpu_table1_next.sh"
    table1 "$OUT/longer.safetensors" longer ) &
  jobs+=($!)
  ( table1 "$START" start ) &
  jobs+=($!)
else  # runs/ is git-ignored: a new checkout has no protocol model to start B from
  echo "note: $START is missing: B and the start's Table 1 are skipped; compare scratch with the protocol" \
       "model's record, benchmarks/results/paper_table1_protocol_gpu.json"
fi
wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
echo "== done $(date -u +%FT%TZ)"
