"""Photon counts fitted at DeepCEL0's positions (core/photometry.py), against simulated truth.

    python benchmarks/photometry.py [--frames 20]

Uniform emitters (1,000-3,000 photons, 10 background photons per pixel, gain 2.5
ADU/photon, offset 100 ADU, read noise 2 ADU) at three densities, with the ISBI 2013
acquisition. For each: the fit at the true positions (the method's own error), then at
the bundled DeepCEL0's positions (matched within 50 nm): the median and the quartiles of
fitted / true photons, the background found, and the fit's time per frame (CPU).

Then uneven illumination: the same emitters at 0.5 and 2 per um^2 under a background
that rises from 5 to 15 photons per pixel along x, at the true positions and at
DeepCEL0's, photometry alone and with the position fit: the median fitted / true photons
of the molecules in the dim third of the frame (x < 21 pixels) and in the bright third
(x > 43), and the median |error| of ``offset [photon]`` against the background under
each molecule. Writes benchmarks/results/photometry.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import RESULTS, command, machine, write_json

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import match
from napari_deepcel0.core.photometry import BACKGROUND, add_photometry
from napari_deepcel0.core.simulate import CameraNoise, expected_photons
from napari_deepcel0.core.predict import DeepLocalizer, localize

ACQ = ISBI2013.replace(gain_adu_per_photon=2.5, offset_adu=100.0, read_noise_adu=2.0)
PHOTONS = "intensity [photon]"


def summary(fitted, truth) -> dict:
    ratio = fitted / truth
    return {"n": int(len(ratio)), "median_ratio": round(float(np.median(ratio)), 4),
            "q25_ratio": round(float(np.quantile(ratio, 0.25)), 4), "q75_ratio": round(float(np.quantile(ratio, 0.75)), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS / "photometry.json"), help="JSON to write")
    args = p.parse_args()
    numbers = np.arange(1, args.frames + 1)
    model = DeepLocalizer(None, acquisition=ACQ)
    results = {}
    print(f"{'density /um2':>12} {'positions':>10} {'matches':>8} {'median':>7} {'quartiles':>13} "
          f"{'background':>10} {'s/frame':>8}")
    for density in (0.5, 2.0, 5.5):
        frames, truth = sim.simulate_stack(n_frames=args.frames, shape=(64, 64), density_per_um2=density,
                                           structure="uniform", acq=ACQ, photons=sim.PhotonModel(1000, 3000, 0.2),
                                           noise=sim.CameraNoise(background_photons=(10, 10)), seed=7)
        rows = {}
        t0 = time.perf_counter()
        exact = add_photometry(frames, truth, ACQ, numbers)
        rows["true positions"] = {**summary(exact[PHOTONS].to_numpy(), truth[PHOTONS].to_numpy()),
                                  "background": round(float(exact[BACKGROUND].median()), 3),
                                  "seconds_per_frame": round((time.perf_counter() - t0) / args.frames, 4)}
        table = localize(model, frames)
        t0 = time.perf_counter()
        fitted = add_photometry(frames, table, ACQ, numbers)
        seconds = (time.perf_counter() - t0) / args.frames
        m = match(truth, fitted, 50.0)
        rows["DeepCEL0 positions"] = {**summary(fitted[PHOTONS].to_numpy()[m.est_index],
                                                truth[PHOTONS].to_numpy()[m.gt_index]),
                                      "background": round(float(fitted[BACKGROUND].median()), 3),
                                      "seconds_per_frame": round(seconds, 4)}
        for name, r in rows.items():
            print(f"{density:12g} {name.split()[0]:>10} {r['n']:8d} {r['median_ratio']:7.3f} "
                  f"{r['q25_ratio']:6.3f}-{r['q75_ratio']:.3f} {r['background']:10.2f} {r['seconds_per_frame']:8.3f}")
        results[f"{density:g}"] = rows
    ramp = uneven_illumination(model, args.frames, numbers)
    out = write_json(Path(args.out), {
        "machine": machine(), "command": command(),
        "scene": "uniform emitters, 1000-3000 photons, background 10 photons/px, gain 2.5, offset 100 ADU, "
                 f"read noise 2 ADU, {args.frames} frames of 64 x 64, ISBI 2013 acquisition, seed 7",
        "densities_per_um2": results,
        "ramp_scene": "the same emitters, background rising linearly from 5 to 15 photons/px along x (seed 7)",
        "ramp_densities_per_um2": ramp})
    print(f"wrote {out}")


def uneven_illumination(model, n_frames: int, numbers) -> dict:
    """Photon counts under a background ramp (5 -> 15 photons per pixel along x)."""
    print("background 5 -> 15 photons/px along x: median fitted / true photons, dim third | bright third; "
          "median |offset error|")
    results = {}
    for density in (0.5, 2.0):
        _, truth = sim.simulate_stack(n_frames=n_frames, shape=(64, 64), density_per_um2=density,
                                      structure="uniform", acq=ACQ, photons=sim.PhotonModel(1000, 3000, 0.2),
                                      noise=None, seed=7)
        ramp = np.broadcast_to(np.linspace(5.0, 15.0, 64), (n_frames, 64, 64))
        rng = np.random.default_rng(7)
        frames = CameraNoise(quantize=True).apply(expected_photons(truth, ACQ, (64, 64), n_frames) + ramp, ACQ, rng)
        table = localize(model, frames)
        rows = {}
        starts = (("true positions", truth[["frame", "x [nm]", "y [nm]"]]), ("DeepCEL0 positions", table))
        for name, positions in starts:
            for fit in (False, True):
                fitted = add_photometry(frames, positions, ACQ, numbers, fit_positions=fit)
                m = match(truth, fitted, 50.0)
                x_px = truth["x [nm]"].to_numpy()[m.gt_index] / ACQ.pixel_size_nm
                ratio = fitted[PHOTONS].to_numpy()[m.est_index] / truth[PHOTONS].to_numpy()[m.gt_index]
                under = 5.0 + 10.0 * (x_px - 0.5) / 63.0
                offset_error = np.abs(fitted[BACKGROUND].to_numpy()[m.est_index] - under)
                key = f"{name}{', fit positions' if fit else ''}"
                rows[key] = {"n": int(len(ratio)),
                             "dim_third_median_ratio": round(float(np.median(ratio[x_px < 21])), 4),
                             "bright_third_median_ratio": round(float(np.median(ratio[x_px > 43])), 4),
                             "median_abs_offset_error": round(float(np.median(offset_error)), 3)}
                r = rows[key]
                print(f"{density:12g} {key:>34} {r['n']:6d} {r['dim_third_median_ratio']:7.3f} | "
                      f"{r['bright_third_median_ratio']:.3f} {r['median_abs_offset_error']:7.2f}")
        results[f"{density:g}"] = rows
    return results


if __name__ == "__main__":
    main()
