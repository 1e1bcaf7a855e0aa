"""Positions fitted on the camera frames (``localize(..., fit_positions=True)``) against the map's.

    python benchmarks/fit_positions.py [MODEL] [--frames 30] [--shifts 0.5 1.0] [--orientations 1]
                                       [--iterations 4] [--no-isbi] [--out benchmarks/results/fit_positions.json]
    python benchmarks/fit_positions.py --from-truth [--frames 20]
    python benchmarks/fit_positions.py --large
    python benchmarks/fit_positions.py --filters

Scenes: the simulated scenes of benchmarks/in_domain.py (``--frames`` frames each, seed
5, ISBI 2013 acquisition: gain 1, offset 100 ADU, read noise 1 ADU) and, when present,
all 361 frames of the ISBI 2013 stack. Each scene is localized once (the model's
3 x 3 centre of mass, or the orientation average); the positions are then fitted
(core/photometry.py ``add_photometry(..., fit_positions=True)``, which is what
``localize`` does batch by batch) with each allowed shift (``--shifts``, in fine pixels;
0.5 is the default of the package). Prints and writes, per scene: Jaccard, sensitivity,
precision and RMSE at 50 nm of the map's positions and of each fit, the network's and the
fit's time per frame, and how well ``uncertainty [nm]`` describes the errors (the median
of |error| / uncertainty over x and y of the molecules matched within 50 nm, divided by
0.674, its value for exact Gaussian uncertainties: 1 = calibrated, < 1 = errors smaller
than the bound says).

``--from-truth``: why the fit is held near the map's positions. On the first ``--frames``
ISBI 2013 frames, the fit starts from the true positions (all molecules, none missed),
with no bound and with the half-fine-pixel box; prints the RMSE of the fitted positions
from the truth, grouped by each molecule's distance to its nearest neighbour.

``--large``: frames larger than 64 x 64 camera pixels are fitted in tiles. On 3 simulated
frames of 128 x 128 pixels (uniform 6 per um^2, 1,000-3,000 photons, background 10),
the fit started 8 nm (per axis, Gaussian) off the true positions, tiled and as one
problem: seconds per frame and the error from the truth (RMSE, median, 90th percentile);
and the photon counts alone (``photometry=True``) of one 256 x 256 frame at the same density,
at the true positions, tiled and as one problem.

``--filters``: filtering the fitted localizations of all 361 ISBI 2013 frames (the
default fit) as ThunderSTORM users do. The molecules fitted with under one photon, whose
uncertainty is NaN: how many, how many of them lie within 50 nm of a molecule, and
Jaccard and RMSE at 50 nm with and without them; then Jaccard and RMSE at 50 nm keeping
the best 100, 95, ..., 50 % of the localizations by confidence, by photons and by
uncertainty (NaN last): can a filter bring the RMSE to 20 nm at a Jaccard of 60 %?
(``benchmarks/results/fit_positions_filters.json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import ISBI_DIR, RESULTS, command, machine, score_row, write_json
from in_domain import SCENES

from napari_deepcel0.core import photometry
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import match, score
from napari_deepcel0.core.photometry import UNCERTAINTY, add_photometry, fit_positions_frame
from napari_deepcel0.core.predict import DeepLocalizer, localize


def calibration(gt, table) -> float:
    """median(|error| / uncertainty) / 0.674 over x and y of the matches within 50 nm."""
    pairs = match(gt, table, 50.0)
    if not len(pairs.est_index):
        return float("nan")
    found = table.iloc[pairs.est_index]
    truth = gt.iloc[pairs.gt_index]
    errors = np.concatenate([found["x [nm]"].to_numpy() - truth["x [nm]"].to_numpy(),
                             found["y [nm]"].to_numpy() - truth["y [nm]"].to_numpy()])
    z = np.abs(errors) / np.tile(found[UNCERTAINTY].to_numpy(), 2)
    return float(np.nanmedian(z) / 0.674)


def run_scene(model, frames: np.ndarray, gt, shifts, acq) -> dict:
    numbers = np.arange(1, len(frames) + 1)
    t0 = time.perf_counter()
    table = localize(model, frames)
    network_s = (time.perf_counter() - t0) / len(frames)
    row = {"frames": len(frames), "network_s_per_frame": round(network_s, 4),
           "map": score_row(score(gt, table, 50.0))}
    for shift in shifts:
        t0 = time.perf_counter()
        fitted = add_photometry(frames, table, acq, numbers, fit_positions=True,
                                max_shift_nm=shift * acq.fine_pixel_nm)
        fit_s = (time.perf_counter() - t0) / len(frames)
        row[f"fit, shift {shift:g} fine px"] = {
            **score_row(score(gt, fitted, 50.0)), "fit_s_per_frame": round(fit_s, 4),
            "median_uncertainty_nm": round(float(fitted[UNCERTAINTY].median()), 2),
            "uncertainty_calibration": round(calibration(gt, fitted), 3)}
    return row


def from_truth(n_frames: int) -> None:
    from scipy.spatial import cKDTree

    frames = read_stack(ISBI_DIR / "frames.tif")
    gt = read_localizations(ISBI_DIR / "ground_truth.csv")
    groups = [(0, 50), (50, 100), (100, 200), (200, 400), (400, np.inf)]
    print(f"ISBI 2013 frames 1-{n_frames}, fit started at the true positions: RMSE (nm) from the truth by the "
          "distance to the nearest neighbour")
    print(f"{'bound':<24}" + "".join(f"{f'{lo:g}-{hi:g} nm':>14}" for lo, hi in groups))
    for label, shift in (("none", 1e9), ("half a fine pixel", None)):
        errors, nearest = [], []
        for number in range(1, n_frames + 1):
            truth = gt[gt["frame"] == number]
            xy = truth[["x [nm]", "y [nm]"]].to_numpy()
            x, y, *_ = fit_positions_frame(np.asarray(frames[number - 1]), xy[:, 0], xy[:, 1], ISBI2013, shift)
            errors.append(np.hypot(x - xy[:, 0], y - xy[:, 1]))
            nearest.append(cKDTree(xy).query(xy, k=2)[0][:, 1])
        errors, nearest = np.concatenate(errors), np.concatenate(nearest)
        cells = []
        for lo, hi in groups:
            inside = (nearest >= lo) & (nearest < hi)
            cells.append(f"{np.sqrt(np.mean(errors[inside] ** 2)):8.1f} ({inside.mean():4.0%})")
        print(f"{label:<24}" + "".join(f"{c:>14}" for c in cells))


def large_frames() -> None:
    frames, gt = sim.simulate_stack(n_frames=3, shape=(128, 128), density_per_um2=6.0, structure="uniform",
                                    acq=ISBI2013, photons=sim.PhotonModel(1000, 3000, 0.2),
                                    noise=sim.CameraNoise(background_photons=(10, 10)), seed=1)
    rng = np.random.default_rng(0)
    start = gt.assign(**{"x [nm]": gt["x [nm]"] + rng.normal(0, 8, len(gt)),
                         "y [nm]": gt["y [nm]"] + rng.normal(0, 8, len(gt))})
    print(f"3 frames of 128 x 128 pixels, {len(gt) / 3:.0f} molecules each, fit started 8 nm off the truth:")
    tile = photometry.TILE_PX
    for label, size in ((f"tiles of {tile} pixels", tile), ("one problem", 10**6)):
        photometry.TILE_PX = size
        t0 = time.perf_counter()
        fitted = add_photometry(frames, start, ISBI2013, [1, 2, 3], fit_positions=True)
        seconds = (time.perf_counter() - t0) / 3
        error = np.hypot(fitted["x [nm]"] - gt["x [nm]"], fitted["y [nm]"] - gt["y [nm]"])
        print(f"  {label:22s} {seconds:6.2f} s per frame; error RMSE {np.sqrt(np.mean(error ** 2)):5.2f} nm, "
              f"median {np.median(error):5.2f}, 90th percentile {np.quantile(error, 0.9):5.2f}")
    photometry.TILE_PX = tile
    frames, gt = sim.simulate_stack(n_frames=1, shape=(256, 256), density_per_um2=6.0, structure="uniform",
                                    acq=ISBI2013, photons=sim.PhotonModel(1000, 3000, 0.2),
                                    noise=sim.CameraNoise(background_photons=(10, 10)), seed=1)
    print(f"Photon counts at the true positions, 1 frame of 256 x 256 pixels, {len(gt)} molecules:")
    for label, size in ((f"tiles of {tile} pixels", tile), ("one problem", 10**6)):
        photometry.TILE_PX = size
        t0 = time.perf_counter()
        fitted = add_photometry(frames, gt, ISBI2013, [1])
        ratio = fitted["intensity [photon]"] / gt["intensity [photon]"]
        print(f"  {label:22s} {time.perf_counter() - t0:6.2f} s; fitted / true photons: median {ratio.median():.3f}, "
              f"quartiles {ratio.quantile(0.25):.3f}-{ratio.quantile(0.75):.3f}")
    photometry.TILE_PX = tile


#: shares of the localizations kept by ``--filters``
KEPT_SHARES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)


def filters(model, out: Path) -> None:
    frames = np.asarray(read_stack(ISBI_DIR / "frames.tif")[:])
    gt = read_localizations(ISBI_DIR / "ground_truth.csv")
    fitted = localize(model, frames, fit_positions=True)
    none = fitted[UNCERTAINTY].isna().to_numpy()
    _, true_positive = match(gt, fitted, 50.0).labels()
    # best first: the most confident, the brightest, the smallest uncertainty (NaN last)
    order = {"confidence": np.argsort(-fitted["confidence"].to_numpy(), kind="stable"),
             "photons": np.argsort(-fitted["intensity [photon]"].to_numpy(), kind="stable"),
             "uncertainty": np.argsort(np.nan_to_num(fitted[UNCERTAINTY].to_numpy(), nan=np.inf), kind="stable")}
    kept = {by: {f"{share:g}": score_row(score(gt, fitted.iloc[rank[:int(round(share * len(fitted)))]], 50.0))
                 for share in KEPT_SHARES} for by, rank in order.items()}
    print(f"{'kept':>5} " + " ".join(f"{by + ': J50 / RMSE':>26}" for by in kept))
    for share in KEPT_SHARES:
        print(f"{share:5.2f} " + " ".join(f"{kept[by][f'{share:g}']['jaccard']:16.2f} / {kept[by][f'{share:g}']['rmse_nm']:6.2f}"
                                          for by in kept))
    result = {"localizations": len(fitted), "without_uncertainty": int(none.sum()),
              "share_pct": round(100.0 * float(none.mean()), 2),
              "of_them_within_50_nm_pct": round(100.0 * float(true_positive[none].mean()), 1),
              "all_within_50_nm_pct": round(100.0 * float(true_positive.mean()), 1),
              "with_them": score_row(score(gt, fitted, 50.0)), "without_them": score_row(score(gt, fitted[~none], 50.0)),
              "kept_best_share": kept}
    print({k: v for k, v in result.items() if k != "kept_best_share"})
    write_json(out, {"machine": machine(), "command": command(), **result})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="model file (default: the bundled model)")
    p.add_argument("--frames", type=int, default=30, help="frames per simulated scene (default 30)")
    p.add_argument("--shifts", type=float, nargs="+", default=[0.5, 1.0], help="allowed shifts, fine pixels")
    p.add_argument("--orientations", type=int, default=1, choices=(1, 4, 8))
    p.add_argument("--iterations", type=int, default=photometry.FIT_ITERATIONS, help="fit steps per frame")
    p.add_argument("--no-isbi", action="store_true", help="only the simulated scenes")
    p.add_argument("--from-truth", action="store_true", help="the fit started at the true ISBI positions (see above)")
    p.add_argument("--large", action="store_true", help="tiled and whole fits of 128 x 128 frames (see above)")
    p.add_argument("--filters", action="store_true",
                   help="ISBI localizations filtered by confidence, photons or uncertainty (see above)")
    p.add_argument("--out", default=str(RESULTS / "fit_positions.json"))
    args = p.parse_args()
    photometry.FIT_ITERATIONS = args.iterations  # the default number of steps, read at each call
    if args.from_truth:
        from_truth(args.frames)
        return
    if args.large:
        large_frames()
        return
    acq = ISBI2013
    model = DeepLocalizer(args.model, acquisition=acq, orientations=args.orientations)
    if args.filters:
        filters(model, RESULTS / "fit_positions_filters.json")
        return
    scenes = {}
    for name, kw in SCENES.items():
        frames, gt = sim.simulate_stack(n_frames=args.frames, seed=5, **kw)
        scenes[name] = run_scene(model, frames, gt, args.shifts, acq)
        print(name, scenes[name], flush=True)
    if not args.no_isbi and (ISBI_DIR / "frames.tif").is_file():
        frames = np.asarray(read_stack(ISBI_DIR / "frames.tif")[:])
        gt = read_localizations(ISBI_DIR / "ground_truth.csv")
        scenes["ISBI 2013 (361 frames)"] = run_scene(model, frames, gt, args.shifts, acq)
        print("ISBI", scenes["ISBI 2013 (361 frames)"], flush=True)
    print(f"\n{'scene':<44} {'positions':<22} {'J50':>6} {'RMSE':>6} {'s/frame':>8} {'unc.':>6} {'calib.':>6}")
    for name, row in scenes.items():
        for label, s in row.items():
            if not isinstance(s, dict):
                continue
            seconds = s.get("fit_s_per_frame", row["network_s_per_frame"])
            print(f"{name:<44} {label:<22} {s['jaccard']:6.2f} {s['rmse_nm']:6.2f} {seconds:8.3f} "
                  f"{s.get('median_uncertainty_nm', float('nan')):6.1f} {s.get('uncertainty_calibration', float('nan')):6.2f}")
    write_json(Path(args.out), {"machine": machine(), "command": command(), "model": args.model or "bundled",
                                "orientations": args.orientations, "iterations": args.iterations, "scenes": scenes})


if __name__ == "__main__":
    main()
