#!/usr/bin/env bash
# Rerun every CPU benchmark and regenerate docs/results.md (see docs/benchmarks.md).
#
#   bash benchmarks/run_all.sh [DEEPSTORM_MODEL]
#
# DEEPSTORM_MODEL (default runs/deepstorm_isbi2013_cpu.safetensors, trained 8 epochs on the CPU
# with the command in docs/benchmarks.md) is the Deep-STORM of the ISBI, Table 1 and close-pair
# runs; without that file they leave Deep-STORM out, with a note.
#
# The GPU numbers come from benchmarks/gpu_session.sh, gpu_more_data.sh, gpu_one_model.sh and gpu_next.sh
# (run on a GPU machine; they also train the models named below, the bundled one included).
# runs/gpu3/bundled_before_2026-11-27b.safetensors is the model bundled until 2026-11-27:
#   git show 89feab5:src/napari_deepcel0/models/deepcel0_isbi2013.safetensors > runs/gpu3/bundled_before_2026-11-27b.safetensors
#
# Needs ../shared/data/isbi2013-bundled-tubes-hd and the venv of scripts/setup.sh.
# CEL0 on the original stack uses lambda = 1e-3, the best of benchmarks/bench_cel0.py's
# paper-style sweep (benchmarks/results/cel0.json). On a CPU the CEL0 parts run on frame
# subsets (the flags below say which); on a GPU pass CEL0_FRAMES=1-361 SWEEP_LAMS=30 to
# run the paper's full protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEEPSTORM=${1:-runs/deepstorm_isbi2013_cpu.safetensors}
CEL0_FRAMES=${CEL0_FRAMES:-1-20}
SWEEP_LAMS=${SWEEP_LAMS:-12}
ds=()
if [[ -f $DEEPSTORM ]]; then
  ds=(--deepstorm "$DEEPSTORM")
else
  echo "note: no $DEEPSTORM: the runs leave Deep-STORM out (train it with the command in docs/benchmarks.md)" >&2
fi

$PY benchmarks/isbi.py "${ds[@]}" --cel0-lam 1e-3 --cel0-frames "$CEL0_FRAMES" --compare-fp32 --orientations 8
$PY benchmarks/paper_table1.py "${ds[@]}" --cel0-frames "$CEL0_FRAMES" --cel0-lams "$SWEEP_LAMS" --sweep-frames 4 \
    --orientations 8
$PY benchmarks/paper_table1.py --cel0-frames "$CEL0_FRAMES" --cel0-lams "$SWEEP_LAMS" --sweep-frames 4 \
    --distance chebyshev --out benchmarks/results/paper_table1_chebyshev.json
$PY benchmarks/bench_cel0.py
$PY benchmarks/cel0_step_size.py
$PY benchmarks/cel0_faint.py
$PY benchmarks/large_tables.py
$PY benchmarks/peak_extraction.py
$PY benchmarks/close_pairs.py "${ds[@]}"
# the model trained for the Table 1 protocol (its training commands are in docs/benchmarks.md)
PROTOCOL=${PROTOCOL:-runs/deepcel0_protocol_cpu.safetensors}
protocol=()
if [[ -f $PROTOCOL ]]; then
  protocol=("$PROTOCOL")
  $PY benchmarks/paper_table1.py --deepcel0 "$PROTOCOL" --no-cel0 --orientations 8 \
      --out benchmarks/results/paper_table1_paper_protocol.json
  $PY benchmarks/paper_table1.py --deepcel0 "$PROTOCOL" --no-cel0 --orientations 8 --distance chebyshev \
      --out benchmarks/results/paper_table1_paper_protocol_chebyshev.json
fi
$PY benchmarks/snr_sweep.py --deepcel0 src/napari_deepcel0/models/deepcel0_isbi2013.safetensors "${protocol[@]}"
$PY benchmarks/snr_sweep.py --deepcel0 src/napari_deepcel0/models/deepcel0_isbi2013.safetensors "${protocol[@]}" \
    --snrs 15.57 17.57 20.57 --cel0-snrs 15.57 17.57 20.57 --out benchmarks/results/snr_sweep_mean_snr.json
in_domain=()
for m in runs/deepcel0_isbi2013_ft runs/deepcel0_ft_big runs/deepcel0_stage4_dense \
    runs/deepcel0_stage5_denser runs/gpu/deepcel0_gpu runs/deepcel0_stage6_sparse runs/deepcel0_stage7_mixed \
    runs/gpu3/ft_mix runs/gpu3/bundled_before_2026-11-27b src/napari_deepcel0/models/deepcel0_isbi2013; do
  [[ -f $m.safetensors ]] && in_domain+=("$m.safetensors")
done
$PY benchmarks/in_domain.py "${in_domain[@]}"
$PY benchmarks/in_domain.py src/napari_deepcel0/models/deepcel0_isbi2013.safetensors --orientations 1 8 \
    --out benchmarks/results/in_domain_orientations.json
# the error analyses quoted in docs/benchmarks.md (printed tables, no JSON)
$PY benchmarks/readout.py
$PY benchmarks/readout.py --averaging
$PY benchmarks/readout.py --fit-positions
$PY benchmarks/isbi_bound.py
$PY benchmarks/photometry.py
$PY benchmarks/outliers.py
$PY benchmarks/frame_scaling.py --side 128 --frames 12 --out benchmarks/results/frame_scaling_128.json
$PY benchmarks/frame_scaling.py
$PY benchmarks/frame_scaling.py --side 512 --frames 3 --out benchmarks/results/frame_scaling_512.json
$PY benchmarks/pixel_locking.py
$PY benchmarks/fit_positions.py
$PY benchmarks/fit_positions.py --iterations 10 --shifts 0.5 --out benchmarks/results/fit_positions_10_iterations.json
$PY benchmarks/fit_positions.py --orientations 8 --shifts 0.5 --out benchmarks/results/fit_positions_8_orientations.json
$PY benchmarks/speed.py --scaling 100 1000 10000
$PY benchmarks/csv_io.py --rows 1000000 10000000
$PY benchmarks/training_curve.py src/napari_deepcel0/models/deepcel0_isbi2013.safetensors
# budget-matched DeepCEL0 vs Deep-STORM (both 8 epochs; the training commands are in docs/benchmarks.md)
MATCHED=${MATCHED:-runs/deepcel0_8ep_cpu.safetensors}
MATCHED_DS=${MATCHED_DS:-runs/deepstorm_8ep_cpu.safetensors}
if [[ -f $MATCHED && -f $MATCHED_DS ]]; then
  $PY benchmarks/isbi.py --deepcel0 "$MATCHED" --deepstorm "$MATCHED_DS" --no-figures \
      --out benchmarks/results/isbi_budget_matched.json
  $PY benchmarks/paper_table1.py --deepcel0 "$MATCHED" --deepstorm "$MATCHED_DS" --no-cel0 \
      --out benchmarks/results/paper_table1_budget_matched.json
fi
# the paper-schedule pair trained on the GPU by benchmarks/gpu_session.sh
if [[ -f runs/gpu/deepcel0_gpu.safetensors && -f $DEEPSTORM ]]; then
  $PY benchmarks/paper_table1.py --deepcel0 runs/gpu/deepcel0_gpu.safetensors --deepstorm "$DEEPSTORM" --no-cel0 \
      --out benchmarks/results/paper_table1_gpu.json
fi
$PY benchmarks/make_results_page.py
