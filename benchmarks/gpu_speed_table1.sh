#!/usr/bin/env bash
# One device call (about 7 minutes on one H100 or H200), the GPU checks of 2026-11-28:
#   1. alone on the GPU: benchmarks/speed.py (bare network, end to end, training, CEL0, and the
#      scaling check 100 / 1,000 / 10,000 frames, for 10,000 also without the outlier steps and
#      without reading ahead: what the CPU's outlier steps cost a GPU run, and what prefetching
#      them in background threads wins back), then its large-frames check;
#   2. side by side:
#      A. the CUDA tests of the network, CEL0, training and streaming inference;
#      B. Table 1 (benchmarks/paper_table1.py) on all 361 frames with CEL0's lambda chosen as the
#         paper does, from 30 values on 8 frames (one batched solve on the GPU), next to the
#         bundled DeepCEL0 and the Deep-STORM of benchmarks.md (8 CPU epochs);
#      C. protocol_gpu: the Table 1 protocol model (runs/deepcel0_protocol_cpu.safetensors, 24,000
#         patches on the CPU) fine-tuned on 150,000 fresh patches of the paper's noise model, then
#         Table 1 on it, plain and with 8 orientations.
#
#   device tool: carry [".gpu"], command
#   DEEPCEL0_ISBI_DIR=$PWD/.gpu/isbi2013-bundled-tubes-hd OUT=$OUT bash benchmarks/gpu_speed_table1.sh
#
# MODELS (default .gpu) holds deepstorm_isbi2013_cpu.safetensors and deepcel0_protocol_cpu.safetensors
# (copies of runs/). Writes to OUT: speed_cuda.json, paper_table1_cel0_gpu.json,
# paper_table1_protocol_gpu.json, protocol_gpu.safetensors, cuda_tests.log, session.log.
# Dry run on a CPU: PY=.venv/bin/python DEVICE=cpu TRAIN_MIN=0.3 SCALE=0.005 FRAMES=1-3 SWEEP_LAMS=2 \
#   SCALING="20 40" OUT=/tmp/gpudry bash benchmarks/gpu_speed_table1.sh
set -u
OUT=${OUT:-runs/gpu6}
TRAIN_MIN=${TRAIN_MIN:-4}
MODELS=${MODELS:-.gpu}
FRAMES=${FRAMES:-1-361}                  # Table 1 frames scored
SWEEP_LAMS=${SWEEP_LAMS:-30}             # the paper's sweep: 30 values on 8 frames
SCALING=${SCALING:-100 1000 10000}
source "$(dirname "$0")/gpu_common.sh"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
BUNDLED=src/napari_deepcel0/models/deepcel0_isbi2013.safetensors

echo "== $(date -u +%FT%TZ) speed, alone on the GPU"
# shellcheck disable=SC2086
timeout 240 $PY benchmarks/speed.py --device "$DEVICE" --scaling $SCALING --out "$OUT/speed_cuda.json"
timeout 60 $PY benchmarks/speed.py --device "$DEVICE" --large-frames

echo "== $(date -u +%FT%TZ) side by side: CUDA tests, Table 1 with CEL0, the protocol model"
( timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_predict.py tests/test_cel0.py tests/test_training.py \
    tests/test_network_losses.py >"$OUT/cuda_tests.log" 2>&1
  echo "== CUDA tests: exit $?"; tail -4 "$OUT/cuda_tests.log" ) &
jobs=($!)
( timeout 360 $PY benchmarks/paper_table1.py --deepcel0 "$BUNDLED" --deepstorm "$MODELS/deepstorm_isbi2013_cpu.safetensors" \
    --frames "$FRAMES" --cel0-lams "$SWEEP_LAMS" --sweep-frames 8 --device "$DEVICE" \
    --out "$OUT/paper_table1_cel0_gpu.json" 2>&1 | sed "s/^/[table1 cel0] /" ) &
jobs+=($!)
( train protocol_gpu "${ISBI[@]}" --device "$DEVICE" --init-from "$MODELS/deepcel0_protocol_cpu.safetensors" \
    --patches "$(n 150000)" --sim-frames "$(n 3000)" --structure-fraction 0.5 --density 11 --epochs 4 --batch-size 64 \
    --lr 1e-4 --lr-schedule cosine --min-lr 1e-5 --snr-fraction 1.0 --snr 10 20 --photons 2250 2250 \
    --background 0 0 --fwhm-jitter 0 --seed 44 --notes "Table 1 protocol model, GPU fine-tune, benchmarks/gpu_speed_table1.sh"
  timeout 150 $PY benchmarks/paper_table1.py --deepcel0 "$OUT/protocol_gpu.safetensors" --no-cel0 --orientations 8 \
    --frames "$FRAMES" --device "$DEVICE" --out "$OUT/paper_table1_protocol_gpu.json" 2>&1 | sed "s/^/[table1 protocol] /" ) &
jobs+=($!)
wait "${jobs[@]}"  # (a bare wait would also wait for the tee of gpu_common.sh, forever)
echo "== done $(date -u +%FT%TZ)"
