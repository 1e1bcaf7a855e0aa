"""How a DeepCEL0 model's maps are read: threshold, refinement, where the RMSE comes from, bias.

    python benchmarks/readout.py [MODEL] [--frames 1-60] [--thresholds 2 4 6 8.51 12 17] [--fit-positions]

1. On the ISBI 2013 stack (the given frames; the maps are computed once): Jaccard,
   sensitivity and precision at 50 nm for each detection threshold (map units; the
   model's default is 0.1 x its spike value), and at the default threshold with and
   without the 3 x 3 centre-of-mass refinement, and the share of maxima that are lone
   spikes (nothing else in their 3 x 3 neighbourhood, so the refinement cannot move them).
2. On the same frames, where the RMSE comes from: the molecules grouped by the distance
   to their nearest neighbour in the same frame, with the share found within 50 nm and
   the RMSE of those matches (default threshold, with the refinement), split into the
   error along the line to the neighbour (its mean: a pull toward it; also with the
   neighbour found and missed) and across it (``--fit-positions``: also with the
   positions fitted on the frames); and, for scale,
   what an ideal method that cannot separate molecules closer than D nm would score: one
   exact localization at the centroid of each group of molecules linked by distances
   under D (no false positives, no other error), exactly and at the centre of the
   fine pixel holding it (the answer of a method without sub-pixel refinement).
3. On the paper's Table 1 protocol, test 4b (30 frames): the mean offset in x and y of
   each ground-truth molecule from its nearest localization within 50 nm (a localization
   bias would show here).
4. ``--averaging``: on the ISBI frames, ways of averaging maps for the positions
   (detection always on the plain map): the 4 flips, the 8 flips and quarter turns (what
   ``DeepLocalizer(orientations=...)`` does), the 4 pooling phases (the frame shifted by
   one camera pixel in y, x or both: the network is shift-equivariant only in steps of 8
   fine pixels), the 8 orientations x 2 phases; and, for comparison, detecting on the
   8-orientation average too.

Prints tables; the numbers back docs/benchmarks.md's remarks on the read-out.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from common import require_isbi
from paper_table1 import PAPER_ACQ, pixel_centred_truth, render_test
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.localize import find_peaks
from napari_deepcel0.core.metrics import match, score
from napari_deepcel0.core.photometry import add_photometry
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.predict import (
    ORIENTATIONS,
    DeepLocalizer,
    localize,
    orient,
    unorient,
)


def peaks_table(found: dict, numbers: np.ndarray) -> pd.DataFrame:
    """A :func:`find_peaks` result as a localization table (frames numbered by ``numbers``)."""
    px = ISBI2013.fine_pixel_nm
    return pd.DataFrame({"frame": numbers[found["index"]], "x [nm]": (found["col"] + 0.5) * px,
                         "y [nm]": (found["row"] + 0.5) * px})


def isbi_selection(model_path, frames: str):
    """The ISBI stack, the 1-based numbers of the selected frames, their ground truth and the model."""
    data = require_isbi()
    stack = read_stack(data / "frames.tif")
    numbers = parse_frame_selection(frames, len(stack)) + 1
    gt = read_localizations(data / "ground_truth.csv")
    return stack, numbers, gt[gt["frame"].isin(numbers)], DeepLocalizer(model_path, acquisition=ISBI2013)


def threshold_sweep(model_path, frames: str, thresholds, fit_positions: bool = False) -> None:
    stack, numbers, gt, model = isbi_selection(model_path, frames)
    maps = torch.cat([model.maps(np.asarray(stack[numbers[s : s + 16] - 1]))[0].float().cpu()
                      for s in range(0, len(numbers), 16)])
    default = model.default_threshold()
    rows = [(t, True) for t in thresholds] + [(default, False)]
    print(f"ISBI frames {frames}: threshold, refinement -> Jaccard / sensitivity / precision at 50 nm, "
          "RMSE, localizations per frame")
    for threshold, refine in rows:
        s = score(gt, peaks_table(find_peaks(maps, threshold, refine=refine), numbers), 50.0)
        print(f"  {threshold:6.2f} {'3x3 CoM' if refine else 'pixel centres':13s} J50 {s.jaccard:5.2f}  "
              f"sens {s.sensitivity:5.1f}  prec {s.precision:5.1f}  RMSE {s.rmse_nm:5.2f} nm  "
              f"{(s.tp + s.fp) / len(numbers):6.1f} per frame")
    found = find_peaks(maps, default)
    print(f"  {100 * np.mean(found['mass'] <= found['peak']):.1f} % of the maxima are lone spikes")
    table = peaks_table(found, numbers)
    rmse_by_crowding(gt, table)
    if fit_positions:
        print("The same, the positions fitted on the frames (fit_positions=True):")
        rmse_by_crowding(gt, add_photometry(np.asarray(stack[numbers - 1]), table, ISBI2013, numbers,
                                            fit_positions=True))
    merging_oracle(gt)


def rmse_by_crowding(gt: pd.DataFrame, table: pd.DataFrame, edges_nm=(0, 100, 200, 300, 500, np.inf)) -> None:
    gt_xy = gt[["x [nm]", "y [nm]"]].to_numpy()
    nearest = np.full(len(gt), np.inf)
    toward = np.zeros((len(gt), 2))  # unit vector to the nearest neighbour
    neighbour = np.arange(len(gt))  # row of the nearest neighbour
    frame = gt["frame"].to_numpy()
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        if len(rows) > 1:
            d, i = cKDTree(gt_xy[rows]).query(gt_xy[rows], k=2)
            nearest[rows] = d[:, 1]
            toward[rows] = (gt_xy[rows[i[:, 1]]] - gt_xy[rows]) / np.maximum(d[:, 1:], 1e-9)
            neighbour[rows] = rows[i[:, 1]]
    m = match(gt, table, 50.0)
    offset = table[["x [nm]", "y [nm]"]].to_numpy()[m.est_index] - gt_xy[m.gt_index]
    err = np.hypot(*offset.T)
    along = np.sum(offset * toward[m.gt_index], axis=1)  # > 0: pulled toward the neighbour
    across = offset[:, 0] * toward[m.gt_index, 1] - offset[:, 1] * toward[m.gt_index, 0]
    near_matched = nearest[m.gt_index]
    found = np.zeros(len(gt), bool)
    found[m.gt_index] = True
    neighbour_found = found[neighbour[m.gt_index]]
    print("Where the RMSE comes from: molecules by the distance to their nearest neighbour in the frame; the error "
          "along the line to that neighbour (mean: > 0 toward it) and across it")
    for lo, hi in zip(edges_nm[:-1], edges_nm[1:]):
        n = int(np.sum((nearest >= lo) & (nearest < hi)))
        sel = (near_matched >= lo) & (near_matched < hi)
        if n == 0:
            continue
        rmse = np.sqrt(np.mean(err[sel] ** 2)) if sel.any() else float("nan")
        print(f"  {lo:4.0f}-{hi:<4.0f} nm: {100 * n / len(gt):5.1f} % of the molecules, {100 * sel.sum() / n:5.1f} % "
              f"found within 50 nm, RMSE {rmse:5.1f} nm; along: mean {along[sel].mean():+5.1f}, "
              f"RMS {np.sqrt(np.mean(along[sel] ** 2)):5.1f} nm; across: RMS {np.sqrt(np.mean(across[sel] ** 2)):5.1f} nm")
        pulls = [f"{along[sel & (neighbour_found == k)].mean():+5.1f} nm ({np.sum(sel & (neighbour_found == k))})"
                 if np.any(sel & (neighbour_found == k)) else "n/a" for k in (True, False)]
        print(f"{'':15s}mean along with the neighbour found {pulls[0]}, missed {pulls[1]}")


def group_centroids(xy_nm: np.ndarray, merge_nm: float) -> np.ndarray:
    """(groups, 2): the centroid of each group of points linked by distances under
    ``merge_nm`` (single linkage; 0: every point its own group)."""
    if merge_nm <= 0 or len(xy_nm) == 0:
        return np.asarray(xy_nm, np.float64).reshape(-1, 2)
    links = cKDTree(xy_nm).sparse_distance_matrix(cKDTree(xy_nm), merge_nm, output_type="coo_matrix")
    n, label = connected_components(links, directed=False)
    return np.stack([np.bincount(label, xy_nm[:, k], n) / np.bincount(label, None, n) for k in (0, 1)], 1)


def merging_oracle(gt: pd.DataFrame, merge_nm=(25, 50, 75, 100)) -> None:
    print("An ideal method that merges molecules closer than D nm (one exact localization per group):")
    for d in merge_nm:
        parts = []
        for f, g in gt.groupby("frame"):
            centroids = group_centroids(g[["x [nm]", "y [nm]"]].to_numpy(), d)
            parts.append(pd.DataFrame({"frame": f, "x [nm]": centroids[:, 0], "y [nm]": centroids[:, 1]}))
        table = pd.concat(parts, ignore_index=True)
        s = score(gt, table, 50.0)
        on_grid = table.copy()  # the same, reported at the centre of its 25 nm pixel
        px = ISBI2013.fine_pixel_nm
        on_grid[["x [nm]", "y [nm]"]] = (np.floor(on_grid[["x [nm]", "y [nm]"]] / px) + 0.5) * px
        s_grid = score(gt, on_grid, 50.0)
        print(f"  D = {d:3d} nm: {len(table) / gt['frame'].nunique():5.1f} per frame, J50 {s.jaccard:5.2f}, "
              f"RMSE {s.rmse_nm:5.2f} nm; on the fine grid: J50 {s_grid.jaccard:5.2f}, RMSE {s_grid.rmse_nm:5.2f} nm")


def offset_check(model_path, n_frames: int = 30) -> None:
    gt = read_localizations(require_isbi() / "ground_truth.csv")
    gt = gt[gt["frame"] <= n_frames]
    frames = render_test(gt, n_frames, (15.0, 15.0), seed=3)
    truth = pixel_centred_truth(gt, PAPER_ACQ)
    table = localize(DeepLocalizer(model_path, acquisition=PAPER_ACQ), frames)
    offsets = []
    for f in range(1, n_frames + 1):
        true_xy = truth[truth["frame"] == f][["x [nm]", "y [nm]"]].to_numpy()
        found_xy = table[table["frame"] == f][["x [nm]", "y [nm]"]].to_numpy()
        if len(found_xy) == 0:
            continue
        d, i = cKDTree(found_xy).query(true_xy, distance_upper_bound=50.0)
        ok = np.isfinite(d)
        offsets.append(found_xy[i[ok]] - true_xy[ok])
    dxy = np.concatenate(offsets)
    print(f"Table 1 test 4b, frames 1-{n_frames}: {len(dxy)} molecules with a localization within 50 nm; "
          f"mean offset x {dxy[:, 0].mean():+.2f} nm, y {dxy[:, 1].mean():+.2f} nm; "
          f"median distance {np.median(np.hypot(*dxy.T)):.1f} nm")


def averaging_variants(model_path, frames: str) -> None:
    stack, numbers, gt, model = isbi_selection(model_path, frames)
    L = model.info.acquisition.upsampling

    def member_maps(x, orientation, phase):  # maps of one orientation and pooling phase, turned back
        (transpose, turns), (dy, dx) = orientation, phase
        y = orient(x, transpose, turns)
        if dy or dx:  # shift by one camera pixel (replicated edge), crop the output back
            y = torch.nn.functional.pad(y[:, None], (dx, 0, dy, 0), mode="replicate")[:, 0]
        return unorient(model.network_maps(y)[:, dy * L :, dx * L :], transpose, turns)

    phases = ((0, 0), (0, 1), (1, 0), (1, 1))
    variants = {
        "plain (3 x 3 centre of mass)": [((False, 0), (0, 0))],
        "4 flips": [(o, (0, 0)) for o in ORIENTATIONS[4]],
        "8 flips and turns": [(o, (0, 0)) for o in ORIENTATIONS[8]],
        "4 pooling phases": [((False, 0), ph) for ph in phases],
        "8 orientations x 2 phases": [(o, ph) for o in ORIENTATIONS[8] for ph in ((0, 0), (1, 1))],
    }
    found = {name: [] for name in [*variants, "detection on the 8-orientation average too"]}
    threshold = model.default_threshold()
    for s in range(0, len(numbers), 16):
        block = numbers[s : s + 16]
        x = model.normalise(np.asarray(stack[block - 1]))
        cache = {}  # the variants share members: each is computed once per block
        for o, ph in {m for members in variants.values() for m in members}:
            cache[o, ph] = member_maps(x, o, ph)
        plain = cache[(False, 0), (0, 0)]
        for name, members in variants.items():
            mean = sum(cache[m] for m in members) / len(members)
            found[name].append(peaks_table(find_peaks(plain, threshold, refine_maps=mean), block))
            if name == "8 flips and turns":
                found["detection on the 8-orientation average too"].append(
                    peaks_table(find_peaks(mean, threshold), block))
    print(f"Averaged maps for the positions, ISBI frames {frames} (network passes per frame in brackets):")
    for name, parts in found.items():
        passes = len(variants.get(name, variants["8 flips and turns"]))
        sc = score(gt, pd.concat(parts, ignore_index=True), 50.0)
        print(f"  {name:45s} ({passes:2d}) J50 {sc.jaccard:5.2f}  RMSE {sc.rmse_nm:5.2f} nm  "
              f"{(sc.tp + sc.fp) / len(numbers):6.1f} per frame")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default=None, help="model file (default: bundled)")
    p.add_argument("--frames", default="1-60")
    p.add_argument("--thresholds", type=float, nargs="+", default=[2, 4, 6, 8.51, 12, 17])
    p.add_argument("--averaging", action="store_true", help="only section 4: averaged maps for the positions")
    p.add_argument("--fit-positions", action="store_true", help="section 2 also with the positions fitted")
    args = p.parse_args()
    if args.averaging:
        averaging_variants(args.model, args.frames)
        return
    threshold_sweep(args.model, args.frames, args.thresholds, args.fit_positions)
    offset_check(args.model)


if __name__ == "__main__":
    main()
