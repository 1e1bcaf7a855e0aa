"""Placing the network's maxima within their fine pixel: the read-out and its alternatives.

70 % of the bundled DeepCEL0's maxima are lone spikes: the ReLU zeroes their 3 x 3
neighbours, so the 3 x 3 centre of mass (our read-out until 2026-11-28) leaves them on
the fine pixel's centre. The output before the ReLU still holds (negative) values around each spike.
This script detects the maxima as usual (3 x 3 local maxima of the ReLU map above the
default threshold) and places them four ways: the centre of mass on the map (the read-out
until 2026-11-28), the centre of mass on the pre-ReLU 3 x 3 minus its
minimum, a parabola through the pre-ReLU values along the row and along the column of
the maximum (our read-out since), and a least-squares 2-D quadratic on the pre-ReLU 3 x 3 (vertex clipped to
half a fine pixel). It scores them on ISBI 2013 frames (against the real ground truth)
and on the same frames re-rendered as in the Table 1 protocol (tests 4b and 2b, against
the pixel-centred truth), with the strict matching rule.

    python benchmarks/pre_relu_refinement.py [--frames 60]     # about 20 seconds on 2 CPU cores
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from common import RESULTS, command, machine, require_isbi, write_json
from paper_table1 import PAPER_ACQ, TESTS, pixel_centred_truth, render_test

from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.localize import find_peaks, local_maxima
from napari_deepcel0.core.metrics import MATCHING_RULE, score
from napari_deepcel0.core.predict import DeepLocalizer

OFFSETS = np.array([-1.0, 0.0, 1.0])


def centre_of_mass(w: np.ndarray, r: np.ndarray, c: np.ndarray):
    total = w.sum((1, 2))
    safe = np.where(total > 0, total, 1.0)
    return r + w.sum(2) @ OFFSETS / safe, c + w.sum(1) @ OFFSETS / safe


def quadratic_2d(v: np.ndarray, r: np.ndarray, c: np.ndarray):
    yy, xx = np.mgrid[-1:2, -1:2].reshape(2, -1)
    design = np.stack([np.ones(9), xx, yy, xx * xx, yy * yy, xx * yy], 1)
    _, bx, by, cxx, cyy, cxy = np.linalg.lstsq(design, v.reshape(-1, 9).T, rcond=None)[0]
    det = 4 * cxx * cyy - cxy**2
    peaked = (det > 0) & (cxx < 0)
    safe = np.where(peaked, det, 1.0)
    dx = np.where(peaked, (cxy * by - 2 * cyy * bx) / safe, 0.0)
    dy = np.where(peaked, (cxy * bx - 2 * cxx * by) / safe, 0.0)
    return r + np.clip(dy, -0.5, 0.5), c + np.clip(dx, -0.5, 0.5)


def score_readouts(frames: np.ndarray, gt: pd.DataFrame, acq: Acquisition) -> dict:
    model = DeepLocalizer(acquisition=acq, device="cpu")
    maps, _, pre, _ = model.read_out(frames)  # the package's read-out: the output before the ReLU
    threshold = model.default_threshold()
    b, r, c = (t.numpy() for t in torch.nonzero(local_maxima(maps, threshold), as_tuple=True))

    def around(values: torch.Tensor) -> np.ndarray:
        padded = torch.nn.functional.pad(values, (1, 1, 1, 1)).numpy()
        return np.stack([padded[b, r + 1 + dr, c + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)],
                        1).reshape(-1, 3, 3)

    pre3, map3 = around(pre), around(maps)
    lone = float((map3.reshape(-1, 9)[:, [0, 1, 2, 3, 5, 6, 7, 8]] <= 0).all(1).mean())

    def package(**kwargs):  # find_peaks finds the same maxima, in the same order
        found = find_peaks(maps, threshold, **kwargs)
        return found["row"], found["col"]

    readouts = {"centre of mass on the map (until 2026-11-28)": package(),
                "centre of mass on the pre-ReLU 3x3 minus its minimum":
                    centre_of_mass(pre3 - pre3.min((1, 2), keepdims=True), r, c),
                "parabola on the pre-ReLU row and column (ours)": package(refine_maps=pre, subpixel="parabola"),
                "2-D quadratic on the pre-ReLU 3x3": quadratic_2d(pre3, r, c)}
    fine = acq.fine_pixel_nm
    out = {"lone_spikes": round(lone, 3)}
    for name, (rows, cols) in readouts.items():
        table = pd.DataFrame({"frame": b + 1, "x [nm]": (cols + 0.5) * fine, "y [nm]": (rows + 0.5) * fine})
        s50, s100 = score(gt, table, 50.0), score(gt, table, 100.0)
        out[name] = {"jaccard_50": round(s50.jaccard, 2), "jaccard_100": round(s100.jaccard, 2),
                     "rmse_nm": round(s50.rmse_nm, 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60, help="the first N frames (default 60)")
    args = p.parse_args()
    data = require_isbi()
    n = args.frames
    gt_raw = read_localizations(data / "ground_truth.csv")
    with read_stack(data / "frames.tif") as stack:
        isbi = stack[0:n]
    pixel_truth = pixel_centred_truth(gt_raw, PAPER_ACQ)
    results = {"ISBI 2013": score_readouts(isbi, gt_raw[gt_raw["frame"] <= n], ISBI2013)}
    for i, test in ((0, "4b"), (2, "2b")):  # the seeds paper_table1.py gives these tests
        frames = render_test(gt_raw, int(gt_raw["frame"].max()), TESTS[test], 2021 + 10 * i)[:n]
        results[f"Table 1 {test}"] = score_readouts(frames, pixel_truth[pixel_truth["frame"] <= n], PAPER_ACQ)
    for data_name, rows in results.items():
        print(f"{data_name} (frames 1-{n}; lone spikes {rows['lone_spikes']:.0%})")
        for name, r in rows.items():
            if name != "lone_spikes":
                print(f"  {name:55s} J50 {r['jaccard_50']:6.2f}  J100 {r['jaccard_100']:6.2f}  RMSE {r['rmse_nm']:.2f} nm")
    write_json(RESULTS / "pre_relu_refinement.json", {"machine": machine(), "command": command(), "frames": n,
                                                        "matching": MATCHING_RULE,
                                                        "results": results})


if __name__ == "__main__":
    main()
