"""How low can the RMSE go on ISBI 2013 at a given Jaccard? Ideal merging estimators at the Cramer-Rao bound.

    python benchmarks/isbi_bound.py [--frames 1-60] [--merge-nm 0 50 75 100 125 150]
                                    [--max-sd 50 30 20] [--seeds 3] [--out benchmarks/results/isbi_bound.json]

A family of ideal estimators, each better informed than any real one: it knows the
ground truth, merges the molecules of each frame that are closer than D nm (groups
linked by single linkage, D = ``--merge-nm``; 0: no merging) into one emitter at the
group's centroid with the group's photons, and localizes every such emitter as well
as an unbiased estimator can: with a Gaussian error of the Cramer-Rao bound
(:func:`napari_deepcel0.core.photometry.joint_position_bounds`: all emitters of the
frame together, positions, photons and background unknown, the stated Gaussian PSF,
Poisson photons plus the read noise of the ISBI 2013 acquisition). The photons and the
background are those fitted on the real frames at the centroids. Variants keep only
the emitters whose bound (per axis) is under ``--max-sd`` nm: an estimator that knows
its precision and reports only what it can place. Each variant is drawn ``--seeds``
times and scored like our localizations (Jaccard at 50 nm, RMSE of the matches);
the exact centroids (no error at all) and the bundled DeepCEL0 on the same frames are
printed beside them.

The bound assumes the stated PSF and camera: the ISBI 2013 frames may be noisier
(an EMCCD's excess noise would widen every bound by sqrt(2)), so these estimators are,
if anything, better than the data allow. A biased estimator (a prior on where
molecules are) can beat the bound; the network is such an estimator.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, require_isbi, write_json
from readout import group_centroids

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.photometry import fit_frame, joint_position_bounds
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.predict import DeepLocalizer, localize


def ideal_emitters(frames: np.ndarray, numbers: np.ndarray, gt: pd.DataFrame, merge_nm: float) -> pd.DataFrame:
    """One row per merged emitter: frame, centroid (nm), photons and its bound per axis (nm)."""
    parts = []
    for frame, number in zip(frames, numbers):
        xy = gt.loc[gt["frame"] == number, ["x [nm]", "y [nm]"]].to_numpy(np.float64)
        centroids = group_centroids(xy, merge_nm)
        photons, background = fit_frame(frame, centroids[:, 0], centroids[:, 1], ISBI2013)
        sd_x, sd_y = joint_position_bounds(frame.shape, centroids[:, 0], centroids[:, 1], photons,
                                           max(background, 0.0), ISBI2013)
        parts.append(pd.DataFrame({"frame": number, "x [nm]": centroids[:, 0], "y [nm]": centroids[:, 1],
                                   "photons": photons, "sd_x": sd_x, "sd_y": sd_y}))
    return pd.concat(parts, ignore_index=True)


def drawn(emitters: pd.DataFrame, max_sd_nm: float, seed: int) -> pd.DataFrame:
    """The emitters whose bound is under ``max_sd_nm``, each moved by a Gaussian error of its bound."""
    bound = np.sqrt((emitters["sd_x"] ** 2 + emitters["sd_y"] ** 2) / 2)
    kept = emitters if math.isinf(max_sd_nm) else emitters[bound < max_sd_nm]
    rng = np.random.default_rng(seed)
    out = kept[["frame", "x [nm]", "y [nm]"]].copy()
    for axis, sd in (("x [nm]", "sd_x"), ("y [nm]", "sd_y")):
        spread = np.minimum(kept[sd].to_numpy(), 1e6)  # an unbounded emitter lands anywhere: far from all
        out[axis] = out[axis].to_numpy() + rng.normal(size=len(kept)) * spread
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", default="1-60", help="1-based ISBI frames (default 1-60)")
    p.add_argument("--merge-nm", type=float, nargs="+", default=[0, 50, 75, 100, 125, 150])
    p.add_argument("--max-sd", type=float, nargs="+", default=[50, 30, 20],
                   help="also with only the emitters whose bound per axis is under these (nm)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "isbi_bound.json"))
    args = p.parse_args()

    data = require_isbi()
    stack = read_stack(data / "frames.tif")
    numbers = parse_frame_selection(args.frames, len(stack)) + 1
    frames = np.asarray(stack[numbers - 1], dtype=np.float64)
    gt = read_localizations(data / "ground_truth.csv")
    gt = gt[gt["frame"].isin(numbers)].reset_index(drop=True)

    ours = score(gt, localize(DeepLocalizer(None, acquisition=ISBI2013), frames.astype(np.float32)), 50.0)
    print(f"ISBI 2013 frames {args.frames} ({len(gt)} molecules); bundled DeepCEL0: "
          f"J50 {ours.jaccard:.2f} %, RMSE {ours.rmse_nm:.2f} nm")
    print(f"{'D nm':>6} {'kept':>14} {'per frame':>9} {'J50 %':>7} {'RMSE nm':>8}")
    rows = []
    for merge_nm in args.merge_nm:
        emitters = ideal_emitters(frames, numbers, gt, merge_nm)
        exact = score(gt, emitters, 50.0)
        variants = [("exact centroids", None), ("all, at the bound", math.inf)]
        variants += [(f"bound < {s:g} nm", s) for s in args.max_sd]
        for label, max_sd in variants:
            if max_sd is None:
                j, r, n = [exact.jaccard], [exact.rmse_nm], len(emitters)
            else:
                draws = [drawn(emitters, max_sd, seed) for seed in range(args.seeds)]
                scores = [score(gt, d, 50.0) for d in draws]
                j, r, n = [s.jaccard for s in scores], [s.rmse_nm for s in scores], len(draws[0])
            row = {"merge_nm": merge_nm, "variant": label, "max_sd_nm": max_sd, "emitters": n,
                   "per_frame": round(n / len(numbers), 1), "jaccard_50": round(float(np.mean(j)), 2),
                   "jaccard_50_spread": round(float(np.ptp(j)), 2), "rmse_nm": round(float(np.mean(r)), 2),
                   "rmse_nm_spread": round(float(np.ptp(r)), 2)}
            rows.append(row)
            print(f"{merge_nm:6.0f} {label:>18} {row['per_frame']:9.1f} {row['jaccard_50']:7.2f} {row['rmse_nm']:8.2f}",
                  flush=True)
    out = {"machine": machine(), "command": command(), "frames": args.frames, "molecules": len(gt),
           "seeds": args.seeds, "bundled_deepcel0": {"jaccard_50": round(ours.jaccard, 2),
                                                     "rmse_nm": round(ours.rmse_nm, 2)},
           "rows": [{**r, "max_sd_nm": None if r["max_sd_nm"] in (None, math.inf) else r["max_sd_nm"],
                     "all_at_bound": r["max_sd_nm"] == math.inf} for r in rows]}
    print("wrote", write_json(Path(args.out), out))


if __name__ == "__main__":
    main()
