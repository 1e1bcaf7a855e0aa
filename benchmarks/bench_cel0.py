"""CEL0-IRL1 measurements for docs/cel0.md: background estimate, speed, lambda sweep,
accuracy on the ISBI 2013 stack and the effect of the map reading.

    python benchmarks/bench_cel0.py                      # everything (about 10 min on 2 CPU cores)
    python benchmarks/bench_cel0.py --only background timing
    python benchmarks/bench_cel0.py --only evaluate --lam 0.0117

Sections (each prints a table; all results go to benchmarks/results/cel0.json):

- ``background``: bias of per-frame percentile estimates on simulated frames with a
  known flat background, at several densities (no solving);
- ``noisefree``: three separated spikes at fine-pixel centres, noise-free: which
  pixels the solver keeps for a few lambdas and FISTA caps;
- ``timing``: seconds per 64 x 64 ISBI frame (L = 4) with the default stopping rule,
  for 1 and 2 torch threads and batch sizes 1 and 4, with the iterations used;
- ``sweep``: the paper's lambda sweep (30 values in [1e-3, 1], 8 frames drawn with
  seed 0, Jaccard at 50 nm) scoring the three map readings of the same maps;
- ``evaluate``: frames 1-20 at the sweep's best lambda (or ``--lam``), every reading at
  50/100/150/250 nm, convergence records and the smallest non-zero map values;
- ``inner``: the same frames 1-2 with 200 vs 1000 FISTA iterations per outer one
  (the relative-change rule stops a restarted FISTA early).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import ISBI_DIR, RESULTS, command, machine, require_isbi, score_row, write_json

from napari_deepcel0.core import cel0
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.defaults import TOLERANCES_NM as TOLERANCES
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import evaluate, format_scores
from napari_deepcel0.core.optics import AcquisitionOperator

SECTIONS = ("background", "noisefree", "timing", "sweep", "evaluate", "inner")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_background(results: dict) -> None:
    acq = Acquisition(offset_adu=100.0, read_noise_adu=2.0)
    percentiles = (5, 10, 25, 50)
    print("\nbackground estimate minus truth (ADU), offset 100 + 40 photons, 2000-3000 photons per emitter, "
          "10 frames of 64 x 64:")
    print(f"{'density /um^2':>14}" + "".join(f" {'p' + str(p):>7}" for p in percentiles))
    rows = []
    for density in (0.5, 2.0, 5.5, 9.0):
        frames, _ = sim.simulate_stack(n_frames=10, density_per_um2=density, acq=acq,
                                       photons=sim.PhotonModel(2000.0, 3000.0, 0.15),
                                       noise=sim.CameraNoise(background_photons=(40.0, 40.0), quantize=True), seed=1)
        bias = {p: float(np.mean(np.percentile(frames, p, axis=(1, 2))) - 140.0) for p in percentiles}
        rows.append({"density_per_um2": density, **{f"p{p}": round(b, 2) for p, b in bias.items()}})
        print(f"{density:14.1f}" + "".join(f" {bias[p]:7.1f}" for p in percentiles))
    results["background_bias_adu"] = rows
    if not (ISBI_DIR / "frames.tif").is_file():
        return
    isbi = read_stack(ISBI_DIR / "frames.tif")[0:20]
    auto = cel0.background_levels(isbi, "auto")
    print(f"ISBI frames 1-20, background 'auto': mean {auto.mean():.1f} ADU (range {auto.min():.0f}-{auto.max():.0f})")
    results["background_isbi_auto_adu"] = {"mean": round(float(auto.mean()), 1), "min": float(auto.min()),
                                           "max": float(auto.max())}


def bench_noisefree(results: dict) -> None:
    op = AcquisitionOperator(ISBI2013, (16, 16))
    truth = np.zeros(op.fine_shape, np.float32)
    cells = [(13, 17), (14, 46), (45, 30)]
    for (r, c), v in zip(cells, (1.0, 0.7, 0.85)):
        truth[r, c] = v
    y = op.forward(truth)
    y = y / y.max()
    print("\nnoise-free frame (16 x 16 px), spikes at 3 fine-pixel centres:")
    print(f"{'lam':>6} {'max_inner':>9} {'outer':>5} {'non-zero px':>11} {'exact':>5} {'F':>8} {'F(truth)':>8}")
    rows = []
    for lam in (0.001, 0.01, 0.1):
        f_true = float(cel0.objective(truth / float(op.forward(truth).max()), y, op, lam, op.column_norms())[0])
        for max_inner in (200, 2000):
            x, rec = cel0.solve(y, op, lam, max_inner=max_inner)
            support = {(int(r), int(c)) for r, c in zip(*np.nonzero(x[0].numpy()))}
            row = {"lam": lam, "max_inner": max_inner, "outer": rec[0].outer_iterations, "nonzero": len(support),
                   "exact": support == set(cells), "objective": round(rec[0].objective, 4),
                   "objective_truth": round(f_true, 4)}
            rows.append(row)
            print(f"{lam:6g} {max_inner:9d} {row['outer']:5d} {row['nonzero']:11d} {str(row['exact']):>5} "
                  f"{row['objective']:8.4f} {row['objective_truth']:8.4f}")
    results["noisefree"] = rows


def bench_timing(stack, lam: float, results: dict) -> None:
    frames = stack[0:4]
    rows = []
    print(f"\ntiming, lambda {lam:g}, default stopping (tol 1e-5, <= 200 x 200), ISBI frames 1-4; {load()}")
    print(f"{'threads':>7} {'batch':>5} {'s/frame':>8} {'ms/iter':>8} {'outer (median)':>14} {'inner/frame':>11}")
    threads_before = torch.get_num_threads()
    for threads, batch in ((1, 1), (1, 4), (2, 4)):
        torch.set_num_threads(threads)
        model = cel0.Cel0Localizer(ISBI2013, lam=lam, device="cpu", batch_size=batch)
        records = []
        t0 = time.perf_counter()
        for s in range(0, len(frames), batch):
            model.maps(frames[s:s + batch])
            records += model.last_records
        seconds = time.perf_counter() - t0
        inner = np.array([r.inner_iterations for r in records])
        outer = np.array([r.outer_iterations for r in records])
        row = {"threads": threads, "batch": batch, "s_per_frame": round(seconds / len(frames), 3),
               "ms_per_frame_iteration": round(1e3 * seconds / inner.sum(), 3),
               "outer_median": float(np.median(outer)), "inner_per_frame_mean": float(inner.mean()),
               "converged": int(sum(r.converged for r in records)), "load": load()}
        rows.append(row)
        print(f"{threads:7d} {batch:5d} {row['s_per_frame']:8.2f} {row['ms_per_frame_iteration']:8.3f} "
              f"{row['outer_median']:14.0f} {row['inner_per_frame_mean']:11.0f}")
    torch.set_num_threads(threads_before)
    results["timing"] = {"lam": lam, "frames": "1-4", "rows": rows}


def bench_sweep(stack, gt, args, results: dict) -> float:
    lo, hi = args.lam_range
    print(f"\nlambda sweep: {args.lams} values in [{lo:g}, {hi:g}], {args.sweep_frames} frames (seed {args.seed}), "
          f"<= {args.max_outer} x {args.max_inner} iterations; {load()}")

    def progress(done, total, lam, s):
        print(f"  {done:2d}/{total} lambda {lam:.4g}: Jaccard {s.jaccard:.2f} %", flush=True)

    sweep = cel0.lambda_sweep(stack, gt, ISBI2013, n_lams=args.lams, lam_range=(lo, hi),
                              n_frames=args.sweep_frames, seed=args.seed, max_outer=args.max_outer,
                              max_inner=args.max_inner, device="cpu", progress=progress)
    print(f"frames {sweep.frames.tolist()} in {sweep.seconds:.0f} s")
    print(f"{'lambda':>9}" + "".join(f" {m + ' J%':>13}" for m in cel0.READINGS) + f" {'n est (peaks)':>14}")
    for i, lam in enumerate(sweep.lams):
        s = sweep.scores["peaks"][i]
        print(f"{lam:9.4g}" + "".join(f" {sweep.scores[m][i].jaccard:13.2f}" for m in cel0.READINGS)
              + f" {s.tp + s.fp:14d}")
    for m in cel0.READINGS:
        s = sweep.best_score_for(m)
        print(f"best for {m:10}: lambda {sweep.best_lam_for(m):.4g}, Jaccard {s.jaccard:.2f} %, "
              f"RMSE {s.rmse_nm:.1f} nm")
    key = "sweep" if (lo, hi) == (1e-3, 1.0) else f"sweep_{lo:g}_{hi:g}"
    results[key] = {**sweep.to_dict(), "max_outer": args.max_outer, "max_inner": args.max_inner,
                    "by_method": {m: {"best_lam": sweep.best_lam_for(m), "best": score_row(sweep.best_score_for(m))}
                                  for m in cel0.READINGS}}
    return sweep.best_lam


def bench_evaluate(stack, gt, lam: float, results: dict) -> None:
    numbers = np.arange(1, 21)
    gt20 = gt[gt["frame"].isin(numbers)]
    model = cel0.Cel0Localizer(ISBI2013, lam=lam, device="cpu", batch_size=20)
    t0 = time.perf_counter()
    maps, scale = model.maps(stack[0:20])
    seconds = time.perf_counter() - t0
    rec = model.last_records
    inner = np.array([r.inner_iterations for r in rec])
    outer = np.array([r.outer_iterations for r in rec])
    values = maps[maps > 0]
    cel0_thr = float(np.sqrt(2 * lam) / AcquisitionOperator(ISBI2013, (64, 64)).column_norms().max())
    print(f"\nframes 1-20, lambda {lam:.4g}, default stopping: {seconds:.1f} s ({seconds / 20:.2f} s/frame, batch 20); "
          f"converged {sum(r.converged for r in rec)}/20, outer median {np.median(outer):.0f} (max {outer.max()}), "
          f"inner per frame median {np.median(inner):.0f}; {load()}")
    print(f"non-zero map pixels: {len(values)}, smallest {float(values.min()):.3g}, 1st percentile "
          f"{float(np.quantile(values.numpy(), 0.01)):.3g} (CEL0 threshold sqrt(2 lam)/a = {cel0_thr:.3g})")
    out = {"lam": lam, "frames": "1-20", "seconds": round(seconds, 1), "converged": int(sum(r.converged for r in rec)),
           "outer_median": float(np.median(outer)), "inner_median": float(np.median(inner)),
           "nonzero_min": float(values.min()), "readings": {}}
    for m in cel0.READINGS:
        table = cel0.read_maps(maps, ISBI2013, cel0.DEFAULT_THRESHOLD, m, frames=numbers, mass_scale=scale)
        scores = evaluate(gt20, table, TOLERANCES)
        print(f"\n{m}: {len(table)} localizations for {len(gt20)} molecules")
        print(format_scores(scores))
        out["readings"][m] = {"n": len(table), "scores": [score_row(s) for s in scores]}
    results[f"evaluate_lam_{lam:.4g}"] = out


def bench_inner(stack, gt, lam: float, results: dict) -> None:
    gt2 = gt[gt["frame"] <= 2]
    print(f"\nFISTA iterations per outer iteration, frames 1-2, lambda {lam:.4g}; {load()}")
    print(f"{'max_inner':>9} {'seconds':>8} {'outer':>9} {'objective':>19} {'peaks J50%':>10} {'pixels J50%':>11}")
    rows = []
    for max_inner in (200, 1000):
        model = cel0.Cel0Localizer(ISBI2013, lam=lam, max_inner=max_inner, device="cpu", batch_size=2)
        t0 = time.perf_counter()
        maps, scale = model.maps(stack[0:2])
        seconds = time.perf_counter() - t0
        j = {m: evaluate(gt2, cel0.read_maps(maps, ISBI2013, 0.0, m, frames=[1, 2], mass_scale=scale), (50.0,))[0]
             for m in ("peaks", "pixels")}
        rec = model.last_records
        row = {"max_inner": max_inner, "seconds": round(seconds, 1), "outer": [r.outer_iterations for r in rec],
               "objective": [round(r.objective, 4) for r in rec], "peaks_j50": round(j["peaks"].jaccard, 2),
               "pixels_j50": round(j["pixels"].jaccard, 2)}
        rows.append(row)
        print(f"{max_inner:9d} {seconds:8.1f} {str(row['outer']):>9} {str(row['objective']):>19} "
              f"{row['peaks_j50']:10.2f} {row['pixels_j50']:11.2f}")
    results["inner"] = {"lam": lam, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    p.add_argument("--lam", type=float, help="lambda for timing/evaluate/inner (default: the sweep's best, else "
                                             f"{cel0.DEFAULT_LAM})")
    p.add_argument("--lams", type=int, default=30, help="sweep: number of lambdas (default 30)")
    p.add_argument("--lam-range", type=float, nargs=2, default=(1e-3, 1.0), metavar=("LOW", "HIGH"),
                   help="sweep: lambdas log-spaced in [LOW, HIGH] (default 1e-3 1, the paper's)")
    p.add_argument("--sweep-frames", type=int, default=8, help="sweep: frames (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sweep: frame draw seed (default 0)")
    p.add_argument("--max-outer", type=int, default=200, help="sweep: outer iteration cap (default 200)")
    p.add_argument("--max-inner", type=int, default=200, help="sweep: inner iteration cap (default 200)")
    p.add_argument("--threads", type=int, default=1, help="torch threads outside the timing section (default 1)")
    p.add_argument("--out", default=str(RESULTS / "cel0.json"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    results: dict = {}
    print(machine())
    print(load())
    stack = gt = None
    if set(args.only) - {"background", "noisefree"}:
        data = require_isbi()
        stack = read_stack(data / "frames.tif")
        gt = read_localizations(data / "ground_truth.csv")
    lam = args.lam
    if "background" in args.only:
        bench_background(results)
    if "noisefree" in args.only:
        bench_noisefree(results)
    if "sweep" in args.only:
        best = bench_sweep(stack, gt, args, results)
        lam = lam or best
    lam = lam or cel0.DEFAULT_LAM
    if "timing" in args.only:
        bench_timing(stack, lam, results)
    if "evaluate" in args.only:
        bench_evaluate(stack, gt, lam, results)
    if "inner" in args.only:
        bench_inner(stack, gt, lam, results)
    out = Path(args.out)
    previous = {}
    if out.is_file():
        previous = json.loads(out.read_text()).get("sections", {})
    path = write_json(out, {"machine": machine(), "sections": {**previous, **{
        k: {"command": command(), "result": v} for k, v in results.items()}}})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
