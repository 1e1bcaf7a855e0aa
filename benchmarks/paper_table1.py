"""The paper's Table 1 protocol on the ISBI 2013 ground truth (tests 1b-4b).

The ISBI ground truth is placed on the L = 4 fine grid (25 nm pixels, 256 x 256 per
frame) and re-rendered through the paper's Eq. (2), Y = S_L K X + eta, with a Gaussian
PSF of sigma 110 nm (FWHM 259.03 nm) and white Gaussian noise at SNR 10 dB (2b), 12 dB
(3b), 15 dB (4b); for 1b each frame draws its SNR uniformly in [10, 15] dB (the paper
leaves 1b unspecified). Each emitter adds 1 to its fine pixel (two emitters in one pixel
give twice the light). The ground truth is then one molecule per occupied fine pixel,
at the pixel's centre: the paper's ground truth is a stack of 256 x 256 maps with "217
fluorophores per frame on average", which is exactly the 78,402 occupied pixels of the
81,178 ISBI emitters over 361 frames (2,776 emitters share a pixel with another; no
localization method can report two molecules in one pixel).

    python benchmarks/paper_table1.py --deepstorm runs/deepstorm_isbi2013_cpu.safetensors \
        [--frames 1-361] [--cel0-frames 1-40] [--device auto]

CEL0 takes its lambda from the paper's sweep (30 values in [1e-3, 1], 8 random frames,
best Jaccard at 50 nm) for each test ("CEL0 best") and also runs with the lambda best for
4b ("CEL0 lam(4b)"). Prints our numbers beside the paper's and writes
benchmarks/results/paper_table1.json.

The paper matches molecules "when the distance between their localizations is lower
than" 2, 4, 6 fine pixels without saying which distance; we use the Euclidean one.
``--distance chebyshev`` scores with a square window, max(|dx|, |dy|) < tolerance,
instead (a sensitivity analysis; docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, require_isbi, write_json

from napari_deepcel0.core.acquisition import Acquisition, sigma_to_fwhm
from napari_deepcel0.core.defaults import FRAME_RANGE_FLOOR
from napari_deepcel0.core.io import read_localizations
from napari_deepcel0.core.metrics import MATCHING_RULE, NETWORK_READ_OUT, evaluate
from napari_deepcel0.core.model_io import bundled_model_path
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.predict import DeepLocalizer, localize
from napari_deepcel0.core.simulate import fine_grid_maps, forward_model_frames, gaussian_noise_std_for_snr

PAPER_ACQ = Acquisition(pixel_size_nm=100.0, fwhm_nm=sigma_to_fwhm(110.0), upsampling=4)
TESTS = {"1b": (10.0, 15.0), "2b": (10.0, 10.0), "3b": (12.0, 12.0), "4b": (15.0, 15.0)}
FRAME_SHAPE = (64, 64)

# paper Table 1 (method-notes section 6): Jaccard 50/100/150, sensitivity 50, specificity 50
PAPER = {
    "1b": {"CEL0 best": (41.64, 49.46, 51.65, 56.22, 99.88), "CEL0 lam(4b)": (35.94, 43.93, 46.70, 67.74, 99.71),
           "Deep-STORM": (0.38, 0.38, 0.38, 100.0, 13.17), "DeepCEL0": (58.96, 68.94, 71.55, 70.89, 99.95)},
    "2b": {"CEL0 best": (42.29, 50.21, 51.48, 49.08, 99.95), "CEL0 lam(4b)": (17.13, 28.64, 33.16, 51.15, 99.34),
           "Deep-STORM": (0.38, 0.38, 0.38, 100.0, 13.34), "DeepCEL0": (54.83, 68.49, 71.37, 65.44, 99.94)},
    "3b": {"CEL0 best": (62.17, 63.60, 64.32, 65.90, 99.98), "CEL0 lam(4b)": (48.19, 50.46, 51.38, 73.73, 99.82),
           "Deep-STORM": (0.38, 0.38, 0.38, 100.0, 13.53), "DeepCEL0": (61.13, 69.66, 71.55, 69.59, 99.95)},
    "4b": {"CEL0 best": (68.27, 70.33, 71.02, 78.34, 99.95), "CEL0 lam(4b)": (68.27, 70.33, 71.02, 78.34, 99.95),
           "Deep-STORM": (0.38, 0.38, 0.38, 100.0, 12.65), "DeepCEL0": (61.48, 69.80, 72.33, 70.12, 99.96)},
}


def pixel_centred_truth(gt: pd.DataFrame, acq: Acquisition) -> pd.DataFrame:
    """One molecule per occupied fine pixel, at the pixel's centre (the paper's ground
    truth maps; see the module docstring)."""
    out = gt[["frame", "x [nm]", "y [nm]"]].copy()
    for c in ("x [nm]", "y [nm]"):
        out[c] = (np.floor(out[c] / acq.fine_pixel_nm) + 0.5) * acq.fine_pixel_nm
    return out.drop_duplicates(ignore_index=True)


def render_test(gt: pd.DataFrame, n_frames: int, snr_range, seed: int) -> np.ndarray:
    maps = fine_grid_maps(gt, PAPER_ACQ, PAPER_ACQ.fine_shape(FRAME_SHAPE), n_frames)
    snrs = np.random.default_rng(seed).uniform(*snr_range, size=n_frames)
    return forward_model_frames(maps, PAPER_ACQ, snrs, seed=seed + 1)


#: photons per molecule when the frames are scaled for the position fit (the fine-tune's)
FIT_PHOTONS = 2250.0


def fit_acquisition(gt: pd.DataFrame, n_frames: int, snr_range) -> Acquisition:
    """The acquisition the position fit needs on frames scaled by :data:`FIT_PHOTONS`: gain
    1, offset 0 and the test's noise (its middle SNR) as the read noise; Eq. (2) has no
    photon noise, which the fit's likelihood adds on top (small beside this noise)."""
    maps = fine_grid_maps(gt, PAPER_ACQ, PAPER_ACQ.fine_shape(FRAME_SHAPE), n_frames)
    clean = forward_model_frames(maps, PAPER_ACQ, np.inf)
    snr = float(np.mean(snr_range))
    std = float(np.median([gaussian_noise_std_for_snr(frame, snr) for frame in clean])) * FIT_PHOTONS
    return PAPER_ACQ.replace(offset_adu=0.0, gain_adu_per_photon=1.0, read_noise_adu=std)


def row(gt, table, numbers, lam=None, distance="euclidean") -> dict:
    grid = (PAPER_ACQ.fine_pixel_nm, PAPER_ACQ.fine_shape(FRAME_SHAPE))
    gt = gt[gt["frame"].isin(numbers)]
    s50, s100, s150 = evaluate(gt, table, (50.0, 100.0, 150.0), grid=grid, n_frames=len(numbers), distance=distance)
    out = {"jaccard_50": s50.jaccard, "jaccard_100": s100.jaccard, "jaccard_150": s150.jaccard,
           "sensitivity_50": s50.sensitivity, "specificity_50": s50.specificity,
           "rmse_nm": s50.rmse_nm if np.isfinite(s50.rmse_nm) else None,
           "efficiency": s50.efficiency, "n_frames": int(len(numbers))}
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
    if lam is not None:
        out["lam"] = float(lam)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deepcel0", default=str(bundled_model_path()))
    p.add_argument("--deepstorm", help="Deep-STORM model file")
    p.add_argument("--frames", default=None, help="frames for DeepCEL0/Deep-STORM (default all 361)")
    p.add_argument("--cel0-frames", default=None, help="frames for CEL0 (default: as --frames)")
    p.add_argument("--no-cel0", action="store_true")
    p.add_argument("--cel0-max-iter", type=int, default=200, help="outer and inner iteration cap for CEL0")
    p.add_argument("--cel0-lams", type=int, default=30, help="lambdas in the sweep (paper: 30 in [1e-3, 1])")
    p.add_argument("--sweep-frames", type=int, default=8, help="random frames the sweep scores (paper: 8)")
    p.add_argument("--orientations", type=int, choices=(4, 8),
                   help="also score DeepCEL0 with orientation averaging (4 or 8 orientations)")
    p.add_argument("--fit-positions", action="store_true",
                   help="also a DeepCEL0 row with the positions fitted on the frames (fit_positions=True): the "
                        "frames scaled to 2,250 photons a molecule, gain 1, offset 0, the test's noise as read noise")
    p.add_argument("--threshold", type=float,
                   help="detection threshold of the networks, in their map units (default: the model's, 0.1 x s)")
    p.add_argument("--tests", nargs="+", default=list(TESTS))
    p.add_argument("--range-floor", type=float, default=FRAME_RANGE_FLOOR, metavar="K",
                   help=f"the networks scale a frame as if its range were at least K noise standard deviations "
                        f"(default {FRAME_RANGE_FLOOR:g}; 0: its own range, as before 2026-11-29)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--distance", choices=("euclidean", "chebyshev"), default="euclidean",
                   help="how the tolerance is measured (the paper does not say): euclidean (default) or "
                        "chebyshev, max(|dx|, |dy|), a square window; the CEL0 sweep uses it too")
    p.add_argument("--out", default=str(RESULTS / "paper_table1.json"))
    args = p.parse_args()

    data = require_isbi()
    gt_raw = read_localizations(data / "ground_truth.csv")
    n_total = int(gt_raw["frame"].max())
    gt = pixel_centred_truth(gt_raw, PAPER_ACQ)  # what is scored; frames are rendered from gt_raw
    deep_numbers = parse_frame_selection(args.frames, n_total) + 1
    cel0_numbers = parse_frame_selection(args.cel0_frames or args.frames, n_total) + 1
    scaling = {"range_floor": args.range_floor}
    models = {"DeepCEL0": DeepLocalizer(args.deepcel0, acquisition=PAPER_ACQ, device=args.device, **scaling)}
    if args.orientations:
        models[f"DeepCEL0 ({args.orientations} orientations)"] = DeepLocalizer(
            args.deepcel0, acquisition=PAPER_ACQ, device=args.device, orientations=args.orientations, **scaling)
    if args.deepstorm:
        models["Deep-STORM"] = DeepLocalizer(args.deepstorm, acquisition=PAPER_ACQ, device=args.device, **scaling)

    results: dict = {}
    lam_4b = None
    for i, test in enumerate(sorted(args.tests, key=lambda t: t != "4b")):  # 4b first: its lambda is reused
        t0 = time.perf_counter()
        frames = render_test(gt_raw, n_total, TESTS[test], args.seed + 10 * i)
        res = results.setdefault(test, {})
        for name, model in models.items():
            table = localize(model, frames, frames=deep_numbers.tolist(), threshold=args.threshold)
            res[name] = row(gt, table, deep_numbers, distance=args.distance)
        if args.fit_positions:  # DeepLocalizer normalises each frame by its min and max: the scale changes no map
            fitted = DeepLocalizer(args.deepcel0, acquisition=fit_acquisition(gt_raw, n_total, TESTS[test]),
                                   device=args.device, **scaling)
            table = localize(fitted, frames * FIT_PHOTONS, frames=deep_numbers.tolist(), threshold=args.threshold,
                             fit_positions=True)
            res["DeepCEL0 (fit positions)"] = row(gt, table, deep_numbers, distance=args.distance)
        if not args.no_cel0:
            from napari_deepcel0.core.cel0 import Cel0Localizer, lambda_sweep

            it = args.cel0_max_iter
            sweep = lambda_sweep(frames, gt, PAPER_ACQ, frames=cel0_numbers.tolist(), background=None,
                                 n_lams=args.cel0_lams, n_frames=args.sweep_frames, max_outer=it, max_inner=it,
                                 device=args.device, distance=args.distance)
            best = sweep.best_lam
            if test == "4b":
                lam_4b = best
            for label, lam in (("CEL0 best", best), ("CEL0 lam(4b)", lam_4b)):
                if lam is None:
                    continue
                cel0 = Cel0Localizer(PAPER_ACQ, lam=lam, background=None, max_outer=it, max_inner=it,
                                     device=args.device)
                res[label] = row(gt, localize(cel0, frames, frames=cel0_numbers.tolist()), cel0_numbers, lam,
                                 args.distance)
        print(f"test {test} done in {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"\ntolerances measured as {args.distance} distances")
    print(f"{'test':4} {'method':26} {'J50':>6} {'J100':>6} {'J150':>6} {'sens50':>6} {'spec50':>6} "
          f"{'RMSE':>6} {'eff':>6} | paper J50/J100/J150 sens spec")
    for test in TESTS:
        for name, r in results.get(test, {}).items():
            paper = PAPER[test].get(name.split(" (")[0])  # "DeepCEL0 (8 orientations)" -> "DeepCEL0"
            ptxt = "/".join(f"{v:.2f}" for v in paper[:3]) + f" {paper[3]:.2f} {paper[4]:.2f}" if paper else ""
            rmse = r["rmse_nm"] if r["rmse_nm"] is not None else float("nan")
            print(f"{test:4} {name:26} {r['jaccard_50']:6.2f} {r['jaccard_100']:6.2f} {r['jaccard_150']:6.2f} "
                  f"{r['sensitivity_50']:6.2f} {r['specificity_50']:6.2f} {rmse:6.2f} {r['efficiency']:6.2f} | {ptxt}")
    out = write_json(Path(args.out), {
        "machine": machine(), "command": command(),
        "protocol": "ISBI 2013 GT on the L=4 grid, Eq. (2) with sigma 110 nm, Gaussian noise at SNR 10/12/15 dB; "
                    "1b: per-frame SNR uniform in [10, 15] dB; scored against one molecule per occupied fine "
                    "pixel, at its centre (78,402 molecules, 217 per frame as in the paper)",
        "distance": args.distance,
        "matching": MATCHING_RULE,
        "read_out": NETWORK_READ_OUT,
        "cel0_sweep": None if args.no_cel0 else {"lams": args.cel0_lams, "range": [1e-3, 1.0],
                                                 "frames": args.sweep_frames},
        "network_threshold": args.threshold if args.threshold is not None else "model default (0.1 s)",
        "network_range_floor_sd": args.range_floor or None,
        "fit_positions": ({"photons_per_molecule": FIT_PHOTONS, "gain": 1.0, "offset": 0.0,
                           "read_noise": "the test's noise std at its middle SNR"} if args.fit_positions else None),
        "deep_frames": args.frames or f"1-{n_total}", "cel0_frames": args.cel0_frames or args.frames or f"1-{n_total}",
        "tests": results,
        "paper": {t: {m: dict(zip(("jaccard_50", "jaccard_100", "jaccard_150", "sensitivity_50", "specificity_50"), v))
                      for m, v in PAPER[t].items()} for t in PAPER},
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
