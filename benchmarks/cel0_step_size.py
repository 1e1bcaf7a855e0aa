"""CEL0-IRL1 with our exact FISTA step, 1/||A||^2, against the reference's bound 1/256.

The reference solver (SMLM-CEL0) steps by 1 / (L^2 max|H_hat|)^2 = 1/256 at L = 4; ours
by 1 / ||S_L K||^2 (1/15.64 for the ISBI PSF). With the reference's 200 x 200 caps the
inner solves stop at the cap, so the step decides where a solve ends. This script runs
the same IRL1/FISTA (written out here, as in core/cel0.py, with the step as a parameter)
on a 32 x 32-pixel crop of ISBI frames 1-2 re-rendered as in the Table 1 protocol (15 dB)
and scores both against the pixel-centred ground truth at 50 nm.

    python benchmarks/cel0_step_size.py        # about 15 seconds on one CPU core
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from common import RESULTS, command, machine, require_isbi, write_json

from napari_deepcel0.core.acquisition import Acquisition, sigma_to_fwhm
from napari_deepcel0.core.cel0 import objective, prepare_frames
from napari_deepcel0.core.io import read_localizations
from napari_deepcel0.core.localize import extract_localizations
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.optics import AcquisitionOperator
from napari_deepcel0.core.simulate import fine_grid_maps, forward_model_frames

ACQ = Acquisition(pixel_size_nm=100.0, fwhm_nm=sigma_to_fwhm(110.0), upsampling=4)
CROP_NM = (1600.0, 4800.0)  # 32 camera pixels in x and y


def irl1(y, op, a, lam: float, step: float, outer: int = 200, inner: int = 200, tol: float = 1e-5):
    """IRL1 with FISTA inner solves, frame by frame (core/cel0.py's algorithm, step given)."""
    maps, iterations = [], []
    threshold = math.sqrt(2 * lam) / a
    for frame in y:
        x = torch.zeros(op.fine_shape, dtype=torch.float64)
        n_outer = n_inner = 0
        for _ in range(outer):
            w = torch.where(x < threshold, math.sqrt(2 * lam) * a - a * a * x, 0 * x)
            xi, z, t = x.clone(), x.clone(), 1.0
            for _ in range(inner):
                xn = torch.clamp(z - step * (op.adjoint(op.forward(z) - frame) + w), min=0)
                n_inner += 1
                tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
                z = xn + (t - 1) / tn * (xn - xi)
                change = torch.linalg.norm(xn - xi)
                stop = change < tol * torch.linalg.norm(xi) or change == 0
                xi, t = xn, tn
                if stop:
                    break
            change, old = torch.linalg.norm(xi - x), torch.linalg.norm(x)
            x = xi
            n_outer += 1
            if change < tol * old or change == 0:
                break
        maps.append(x)
        iterations.append((n_outer, n_inner))
    return torch.stack(maps), iterations


def main() -> None:
    torch.set_num_threads(1)
    gt = read_localizations(require_isbi() / "ground_truth.csv")
    lo, hi = CROP_NM
    crop = gt[(gt["frame"] <= 2) & gt["x [nm]"].between(lo, hi - 0.1) & gt["y [nm]"].between(lo, hi - 0.1)].copy()
    crop[["x [nm]", "y [nm]"]] -= lo
    frames = forward_model_frames(fine_grid_maps(crop, ACQ, (128, 128), 2), ACQ, 15.0, seed=0)
    truth = crop.copy()
    for c in ("x [nm]", "y [nm]"):  # one molecule per occupied fine pixel, at its centre (Table 1 protocol)
        truth[c] = (np.floor(truth[c] / ACQ.fine_pixel_nm) + 0.5) * ACQ.fine_pixel_nm
    truth = truth.drop_duplicates(ignore_index=True)
    op = AcquisitionOperator(ACQ, (32, 32), dtype=torch.float64)
    y, _ = prepare_frames(frames, background=None)
    y = torch.as_tensor(y, dtype=torch.float64)
    a = torch.as_tensor(op.column_norms())
    steps = {"ours, 1/||A||^2": 1.0 / op.lipschitz(), "reference, 1/256": 1.0 / 256.0}
    print(f"||A||^2 = {op.lipschitz():.4f}; {len(truth)} molecules (pixel-centred)")
    rows = []
    for lam in (1e-3, 1e-2, 5e-2):
        for name, step in steps.items():
            t0 = time.perf_counter()
            x, iterations = irl1(y, op, a, lam, step)
            s = score(truth, extract_localizations(x, ACQ, 0.0, method="peaks"), 50.0)
            f = [round(float(v), 4) for v in objective(x, y, op, lam, a)]
            rows.append({"lam": lam, "step": name, "iterations (outer, inner)": iterations, "objective": f,
                         "jaccard_50": round(s.jaccard, 2), "tp": s.tp, "fp": s.fp, "fn": s.fn})
            print(f"lambda {lam:g}, step {name:18s}: iterations {iterations}, F {f}, Jaccard at 50 nm "
                  f"{s.jaccard:.1f} % ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_json(RESULTS / "cel0_step_size.json", {"machine": machine(), "command": command(), "rows": rows})


if __name__ == "__main__":
    main()
