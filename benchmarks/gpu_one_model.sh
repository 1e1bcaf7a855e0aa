#!/usr/bin/env bash
# The third GPU run, about 8 minutes on one H100: one model for crowded and moderately dense
# frames, and the Table 1 protocol at full size. Side by side on the one GPU:
#   A. scratch_mix: DeepCEL0 from scratch on 120,000 patches (half of the frames crowded along
#      filaments, uniform frames at 11 / um^2, 25 % of the patches from sparse frames at
#      0.1-6 / um^2), 14 epochs, batch 64, cosine; then scored on the ISBI stack;
#   B. ft_mix: the bundled model fine-tuned on 100,000 patches of the same mixture, 4 epochs;
#      then scored on the ISBI stack;
#   C. protocol_ft: the model trained for the paper's Table 1 protocol
#      (runs/deepcel0_paper_protocol2.safetensors, see docs/benchmarks.md) fine-tuned on
#      100,000 patches of its data (Gaussian noise at 10-20 dB), 4 epochs; then Table 1;
#   D. meanwhile, Table 1 with CEL0 on all 361 frames, lambda from a 15-value sweep on 8 frames
#      (the paper's 30 values did not finish in the 7 minutes next to the trainings; the
#      15-value run, alone on the GPU, takes 4.5 minutes), for the bundled DeepCEL0 and the GPU
#      Deep-STORM baseline;
#   and at the end the simulated scenes of benchmarks/in_domain.py for A, B and the bundled model.
#
#   MODELS=.gpu OUT=runs/gpu3 bash benchmarks/gpu_one_model.sh
#
# MODELS holds deepcel0_paper_protocol2.safetensors and deepstorm_gpu.safetensors (copies of
# runs/ and runs/gpu/), and DEEPCEL0_ISBI_DIR the ISBI 2013 data. Writes 8 files to OUT: the
# three models, four JSON and session.log. Model A is the bundled model (docs/training.md).
# Dry run on a CPU: DEVICE=cpu TRAIN_MIN=0.3 SCALE=0.01 FRAMES=1-4 SWEEP_LAMS=2 SWEEP_FRAMES=1 MODELS=.gpu OUT=/tmp/gpu3dry bash benchmarks/gpu_one_model.sh
set -u
OUT=${OUT:-runs/gpu3}
TRAIN_MIN=${TRAIN_MIN:-5.5}
MODELS=${MODELS:-.gpu}
FRAMES=${FRAMES:-1-361}  # ISBI / Table 1 frames scored
SWEEP_LAMS=${SWEEP_LAMS:-15} SWEEP_FRAMES=${SWEEP_FRAMES:-8}  # the CEL0 lambda sweep (paper: 30 values, 8 frames)
source "$(dirname "$0")/gpu_common.sh"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
BUNDLED=src/napari_deepcel0/models/deepcel0_isbi2013.safetensors
COMMON=("${ISBI[@]}" --device "$DEVICE" --batch-size 64 --lr-schedule cosine --structure-fraction 0.5 --density 11)
MIX=(--sparse-fraction 0.25 --sparse-density 0.1 6)
PROTOCOL=(--snr-fraction 1.0 --snr 10 20 --photons 2250 2250 --background 0 0 --fwhm-jitter 0)

( train scratch_mix "${COMMON[@]}" "${MIX[@]}" --patches "$(n 120000)" --sim-frames "$(n 2400)" --epochs 14 \
    --lr 1e-3 --min-lr 2e-5 --seed 31 --notes "from scratch, mixed densities, benchmarks/gpu_one_model.sh"
  isbi "$OUT/scratch_mix.safetensors" scratch_mix ) &
jobs=($!)
( train ft_mix "${COMMON[@]}" "${MIX[@]}" --init-from "$BUNDLED" --patches "$(n 100000)" --sim-frames "$(n 2000)" \
    --epochs 4 --lr 1e-4 --min-lr 1e-5 --seed 32 --notes "fine-tune of the bundled model, mixed densities, benchmarks/gpu_one_model.sh"
  isbi "$OUT/ft_mix.safetensors" ft_mix ) &
jobs+=($!)
( train protocol_ft "${COMMON[@]}" "${PROTOCOL[@]}" --init-from "$MODELS/deepcel0_paper_protocol2.safetensors" \
    --patches "$(n 100000)" --sim-frames "$(n 2000)" --epochs 4 --lr 1e-4 --min-lr 1e-5 --seed 33 \
    --notes "Table 1 protocol fine-tune (Gaussian noise 10-20 dB), benchmarks/gpu_one_model.sh"
  timeout 200 $PY benchmarks/paper_table1.py --deepcel0 "$OUT/protocol_ft.safetensors" --no-cel0 --frames "$FRAMES" \
    --device "$DEVICE" --out "$OUT/paper_table1_protocol_ft.json" 2>&1 | sed "s/^/[table1 protocol_ft] /" ) &
jobs+=($!)
( timeout 420 $PY benchmarks/paper_table1.py --deepstorm "$MODELS/deepstorm_gpu.safetensors" --frames "$FRAMES" \
    --cel0-lams "$SWEEP_LAMS" --sweep-frames "$SWEEP_FRAMES" --device "$DEVICE" --out "$OUT/paper_table1_cel0_full.json" 2>&1 \
    | sed "s/^/[table1 full] /" ) &
jobs+=($!)
wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
echo "== $(date -u +%FT%TZ) simulated scenes"
timeout 100 $PY benchmarks/in_domain.py "$OUT/scratch_mix.safetensors" "$OUT/ft_mix.safetensors" "$BUNDLED" \
  --out /tmp/in_domain_gpu3.json
echo "== done $(date -u +%FT%TZ)"
