# Sourced by the benchmarks/gpu_*.sh scripts: the settings and the training and scoring helpers they share.
# Expects OUT (output folder), TRAIN_MIN (minutes per training) and FRAMES (ISBI frames scored) to be set;
# ISBI_TIMEOUT (seconds per scoring, default 150) and SCALE (multiplies the patch and frame counts given
# to n; a dry run uses a small one; default 1) may be. Sets PY, DEVICE, SCALE, n,
# the environment, and sends everything the script prints to "$OUT/session.log" as well.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
n() { awk "BEGIN {print int($1 * $SCALE + 0.5)}"; }  # N: N patches or frames, times SCALE
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
exec > >(tee -a "$OUT/session.log") 2>&1
# the ISBI 2013 acquisition, as every GPU training here uses it
ISBI=(--pixel-size 100 --fwhm 258.21 --upsampling 4)

train() {  # NAME ARGS...: `deepcel0 train --out $OUT/NAME.safetensors ARGS...`, stopped cleanly after
  # TRAIN_MIN minutes (and killed 90 s later if it has not stopped); prints its log without the progress bar
  local name=$1; shift
  timeout -s INT "$(awk "BEGIN {print int($TRAIN_MIN * 60 + 90)}")" $PY -m napari_deepcel0 train \
    --out "$OUT/$name.safetensors" --time-limit "$TRAIN_MIN" "$@" >"/tmp/$name.log" 2>&1
  echo "== $name: exit $?"; grep -v "\[#*-*\]" "/tmp/$name.log"
}

isbi() {  # MODEL LABEL [ARGS...]: score MODEL on the ISBI stack (benchmarks/isbi.py ARGS) into $OUT/isbi_LABEL.json
  local model=$1 label=$2; shift 2
  timeout "${ISBI_TIMEOUT:-150}" $PY benchmarks/isbi.py --deepcel0 "$model" --frames "$FRAMES" --device "$DEVICE" \
    --no-figures --out "$OUT/isbi_$label.json" "$@" 2>&1 | sed "s/^/[isbi $label] /"
}
