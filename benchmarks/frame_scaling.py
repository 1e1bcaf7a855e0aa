"""Large frames: each frame scaled by its own minimum and maximum against scaled region by
region (``DeepLocalizer(scaling_tile_px=None)`` against the default 64,
``predict.scale_to_unit_range``).

    python benchmarks/frame_scaling.py [--side 256] [--frames 6] [--noise-floor K] [--out benchmarks/results/frame_scaling.json]

Scenes of ``side`` x ``side`` camera pixels (the ISBI 2013 acquisition, camera noise, 10
background photons per pixel, seed 11): uniform emitters at 1-6 per um^2 whose brightness is
even (800 photons; 600-900), log-normal (800 photons times exp(N(0, sigma))), shaped by a
Gaussian illumination (1,500 photons in the centre, a quarter of that in the corners), or
both; sparse frames (6-33 molecules a frame); a "cell" (molecules only within a disk of 0.3
side around the centre, the camera empty around it), where the localizations outside the
disk count the noise reported as molecules; and a bead of 100,000 photons near a corner
with the outlier fix off (scored 5 um away from it). Jaccard at 50 nm, sensitivity, precision, in %.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, SCENE_NOISE, command, machine, score_row, write_json

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core import predict
from napari_deepcel0.core.predict import DeepLocalizer, localize
from napari_deepcel0.core.simulate import render_frames, uniform_emitters

#: name: (emitters per um^2, log-normal sigma of the brightness, Gaussian illumination, cell, even photons, bead)
SCENES = {
    "sparse: 0.01/um^2": (0.01, 0.0, False, False, (600, 900)),
    "sparse: 0.02/um^2, log-normal sigma 0.8": (0.02, 0.8, False, False, None),
    "sparse: 0.05/um^2": (0.05, 0.0, False, False, (600, 900)),
    "even 800 ph, 1/um^2": (1.0, 0.0, False, False, (800, 800)),
    "log-normal sigma 0.8, 1/um^2": (1.0, 0.8, False, False, None),
    "log-normal sigma 0.5, 2/um^2": (2.0, 0.5, False, False, None),
    "even 600-900 ph, 4/um^2": (4.0, 0.0, False, False, (600, 900)),
    "log-normal sigma 0.6, 4/um^2": (4.0, 0.6, False, False, None),
    "Gaussian illumination, 2/um^2": (2.0, 0.0, True, False, None),
    "Gaussian illumination, log-normal sigma 0.6, 2/um^2": (2.0, 0.6, True, False, None),
    "cell, even 800 ph, 6/um^2": (6.0, 0.0, False, True, (800, 800)),
    "cell, log-normal sigma 0.6, 6/um^2": (6.0, 0.6, False, True, None),
    "bead of 100,000 ph, outlier fix off, 2/um^2": (2.0, 0.0, False, False, (600, 900), True),
}


def scene(spec, side: int, n_frames: int, rng):
    density, sigma, beam, cell, even, bead = (*spec, False)[:6]
    field = side * ISBI2013.pixel_size_nm
    em = uniform_emitters(n_frames, (field, field), density, seed=rng, warn_if_none=False)
    r2 = (em["x [nm]"] - field / 2) ** 2 + (em["y [nm]"] - field / 2) ** 2
    if cell:
        em, r2 = em[r2 < (0.3 * field) ** 2].reset_index(drop=True), r2[r2 < (0.3 * field) ** 2].to_numpy()
    photons = rng.uniform(*even, len(em)) if even else np.full(len(em), 1500.0 if beam else 800.0)
    if beam:
        photons = photons * np.exp(-np.asarray(r2) / (2 * (0.43 * field) ** 2))
    em["intensity [photon]"] = photons * np.exp(rng.normal(0.0, sigma, len(em)))
    frames = render_frames(em, ISBI2013, (side, side), n_frames, SCENE_NOISE, rng)
    if bead:  # near a corner, in every frame; scored 5 um away from it
        light = render_frames(pd.DataFrame({"frame": np.arange(1, n_frames + 1), "x [nm]": 3000.0, "y [nm]": 3000.0,
                                            "intensity [photon]": 1e5}), ISBI2013, (side, side), n_frames, None, 0)
        frames = frames + (light - light.min())
        em = em[(em["x [nm]"] > 8000) | (em["y [nm]"] > 8000)].reset_index(drop=True)
    return em, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=256, help="frame side in camera pixels")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--noise-floor", type=float, metavar="K",
                   help=f"a region's least range in noise standard deviations of its frame (default "
                        f"predict.SCALING_NOISE_FLOOR, {predict.SCALING_NOISE_FLOOR:g}; 0: none)")
    p.add_argument("--out", default=str(RESULTS / "frame_scaling.json"))
    args = p.parse_args()
    if args.noise_floor is not None:
        predict.SCALING_NOISE_FLOOR = args.noise_floor
    models = {"whole frame": DeepLocalizer(device="cpu", scaling_tile_px=None), "regions": DeepLocalizer(device="cpu")}
    rows = []
    print(f"{'scene':52s} {'molecules':>9s}  J50 whole -> regions (sensitivity, precision; outside the cell)")
    for name, spec in SCENES.items():
        gt, frames = scene(spec, args.side, args.frames, np.random.default_rng(11))
        row = {"scene": name, "molecules": len(gt)}
        for label, model in models.items():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loc = localize(model, frames, fix_outlier_pixels=len(spec) < 6)
            if len(spec) == 6:
                loc = loc[(loc["x [nm]"] > 8000) | (loc["y [nm]"] > 8000)]
            s = score(gt, loc, 50.0)
            half = args.side * ISBI2013.pixel_size_nm / 2
            outside = int((((loc["x [nm]"] - half) ** 2 + (loc["y [nm]"] - half) ** 2) > (0.66 * half) ** 2).sum())
            row[label] = {**score_row(s), "outside_cell": outside if spec[3] else None,
                          "seconds": round(time.perf_counter() - t0, 1)}
        w, r = row["whole frame"], row["regions"]
        cell = f"; {w['outside_cell']} -> {r['outside_cell']}" if spec[3] else ""
        def pct(v):
            return "  n/a" if v is None else f"{v:5.1f}"  # (precision of no localizations)

        print(f"{name:52s} {len(gt):9d}  {pct(w['jaccard'])} -> {pct(r['jaccard'])}  ({pct(w['sensitivity'])}, "
              f"{pct(w['precision'])} -> {pct(r['sensitivity'])}, {pct(r['precision'])}{cell})", flush=True)
        rows.append(row)
    write_json(Path(args.out), {"machine": machine(), "command": command(), "side_px": args.side,
                                "frames": args.frames, "noise_floor": predict.SCALING_NOISE_FLOOR,
                                "range_floor": predict.FRAME_RANGE_FLOOR,
                                "scenes": rows})


if __name__ == "__main__":
    main()
