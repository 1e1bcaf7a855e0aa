#!/usr/bin/env bash
# Everything that needs a GPU, in one run that fits a short lease (about 9 minutes):
#   1. the paper's full training schedule (100 epochs, batch 16, 10,000 patches) for DeepCEL0
#      and, with the same budget, for Deep-STORM, side by side on the one GPU, each stopped
#      cleanly after TRAIN_MIN minutes if it has not finished (the model file says so);
#   2. the core tests on the GPU (the CUDA tests skip on CPU-only machines), meanwhile;
#   3. speed on the GPU: benchmarks/speed.py --device "$DEVICE" (fp32, bf16, training, CEL0, scaling);
#   4. the original ISBI stack on the GPU, CEL0 on all 361 frames (the H100 target: < 10 s).
#
#   OUT=runs/gpu bash benchmarks/gpu_session.sh
#
# Needs torch with CUDA, numpy, scipy, pandas, tifffile, safetensors, matplotlib and pytest
# (napari is not needed: only the core runs) and the ISBI 2013 data in
# ../shared/data/isbi2013-bundled-tubes-hd or $DEEPCEL0_ISBI_DIR.
# Writes at most 8 files to OUT: the two models, the speed and ISBI JSON, and session.log.
set -u
OUT=${OUT:-runs/gpu}
TRAIN_MIN=${TRAIN_MIN:-5}  # DEVICE=cpu TRAIN_MIN=0.2 CEL0_FRAMES=1-2: a quick dry run of the script
CEL0_FRAMES=${CEL0_FRAMES:-1-361}
source "$(dirname "$0")/gpu_common.sh"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"

train deepcel0_gpu "${ISBI[@]}" --device "$DEVICE" --seed 0 --notes "paper schedule (100 epochs, batch 16) on one H100, bf16, benchmarks/gpu_session.sh" &
jobs=($!)
train deepstorm_gpu "${ISBI[@]}" --device "$DEVICE" --seed 0 --method deepstorm --notes "Deep-STORM baseline, same budget as deepcel0_gpu" &
jobs+=($!)
echo "== core tests on the GPU"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_predict.py tests/test_cel0.py tests/test_training.py \
  tests/test_network_losses.py 2>&1 | tail -8
wait "${jobs[@]}"  # (a bare wait would also wait for the tee above, forever)

echo "== speed"
timeout 130 $PY benchmarks/speed.py --device "$DEVICE" --scaling 100 1000 10000 && cp "benchmarks/results/speed_$DEVICE.json" "$OUT/"

echo "== ISBI 2013 on the GPU (CEL0 on all 361 frames)"
ds=(); [[ -f $OUT/deepstorm_gpu.safetensors ]] && ds=(--deepstorm "$OUT/deepstorm_gpu.safetensors")
timeout 120 $PY benchmarks/isbi.py --deepcel0 "$OUT/deepcel0_gpu.safetensors" "${ds[@]}" --cel0-lam 1e-3 \
  --cel0-frames "$CEL0_FRAMES" --device "$DEVICE" --compare-fp32 --no-figures --out "$OUT/isbi_gpu.json"
echo "== done $(date -u +%FT%TZ)"
