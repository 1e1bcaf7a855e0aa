"""Outliers in the frames: the bundled DeepCEL0 with and without the outlier fix
(``localize(..., fix_outlier_pixels=True/False)``, ``frames.fix_outliers``: hot and dead
pixels, darker regions such as zero-padded borders, objects far brighter than the
molecules such as fiducial beads).

    python benchmarks/outliers.py [--batch-size 16] [--out benchmarks/results/outliers.json]

Scenes (64 x 64 camera pixels, the ISBI 2013 acquisition, camera noise, 10 background
photons per pixel): a static bead of 20,000 or 100,000 photons near the corner among 3 or
8 molecules of 600-900 photons, among simulated uniform emitters (2 per um^2) and
filaments (6 per um^2), and on ISBI 2013 frames 1-8 (skipped without them), scored away
from the bead; simulated uniform emitters (2 per um^2) with a 4-pixel zero-padded border
on two sides or a dead column, scored 500 nm inside the edges; and scenes without a bead
that must not lose: one molecule of 5,000
photons among five of 700, and 3-15 molecules per frame of exponentially distributed
brightness (mean 1,500 photons), and 5 % of the molecules at 6,000 photons among 600-900
(2 per um^2). Jaccard at 50 nm, and how many frames were changed (an object must stay put
in the frames read together to be dimmed: the run's batches of ``--batch-size`` frames
until 2026-11-29, since then pieces of whole batches of at least 16 frames;
``--batch-size 1`` is how frames of 256 x 256 pixels and more go to the network).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import ISBI_DIR, RESULTS, SCENE_NOISE, command, machine, write_json

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.predict import DeepLocalizer, localize, localize_stream
from napari_deepcel0.core.simulate import render_frames, simulate_stack

BEAD_NM = 6000.0


def bead(n_frames: int, photons: float) -> pd.DataFrame:
    return pd.DataFrame({"frame": np.arange(1, n_frames + 1), "x [nm]": BEAD_NM, "y [nm]": BEAD_NM,
                         "intensity [photon]": photons})


def away_from_bead(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["x [nm]"] < BEAD_NM - 500) | (table["y [nm]"] < BEAD_NM - 500)]


def molecules(rng, n_frames: int, photons_of_frame) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"frame": f + 1, "x [nm]": rng.uniform(500, 5900, len(p)),
                                    "y [nm]": rng.uniform(500, 5900, len(p)), "intensity [photon]": p})
                      for f, p in ((f, np.asarray(photons_of_frame(rng), float)) for f in range(n_frames))],
                     ignore_index=True)


def scenes(rng):
    """(name, frames, ground truth, which localizations to score: "away" from the bead,
    "inner" 500 nm inside the edges, or "all")"""
    for k in (3, 8):
        gt = molecules(rng, 12, lambda r: r.uniform(600, 900, k))
        for photons in (2e4, 1e5):
            frames = render_frames(pd.concat([gt, bead(12, photons)]), ISBI2013, (64, 64), 12, SCENE_NOISE, rng)
            yield f"bead {photons:g} ph + {k} molecules of 600-900 ph", frames, gt, "away"
    for density, structure in ((2.0, "uniform"), (6.0, "tubes")):
        frames, gt = simulate_stack(n_frames=8, shape=(64, 64), density_per_um2=density, structure=structure,
                                    acq=ISBI2013, seed=5)
        for photons in (2e4, 1e5):
            light = render_frames(bead(8, photons), ISBI2013, (64, 64), 8, None, 0)
            yield f"bead {photons:g} ph on {structure} {density:g}/um^2", frames + (light - light.min()), gt, "away"
    if (ISBI_DIR / "frames.tif").is_file():
        from napari_deepcel0.core.io import read_localizations, read_stack

        with read_stack(ISBI_DIR / "frames.tif") as stack:
            frames = stack[:8].astype(np.float32)
        gt = read_localizations(ISBI_DIR / "ground_truth.csv")
        light = render_frames(bead(8, 1e5), ISBI2013, (64, 64), 8, None, 0)
        yield "bead 1e+05 ph on ISBI 2013 frames 1-8", frames + (light - light.min()), gt[gt["frame"] <= 8], "away"
    frames, gt = simulate_stack(n_frames=8, shape=(64, 64), density_per_um2=2.0, structure="uniform", acq=ISBI2013,
                                seed=3)
    inner = gt[gt["x [nm]"].between(500, 5900) & gt["y [nm]"].between(500, 5900)]
    padded, dead = frames.astype(np.float32), frames.astype(np.float32)
    padded[:, :4, :] = padded[:, :, -4:] = 0.0
    dead[:, :, 20] = 0.0
    yield "zero-padded border (4 pixels, two sides), 2/um^2", padded, inner, "inner"
    yield "dead column, 2/um^2", dead, inner, "inner"
    gt = molecules(rng, 12, lambda r: np.r_[5000.0, np.full(5, 700.0)])
    frames = render_frames(gt, ISBI2013, (64, 64), 12, SCENE_NOISE, rng)
    yield "no bead: one molecule of 5,000 ph among five of 700", frames, gt, "all"
    gt = molecules(rng, 300, lambda r: r.exponential(1500.0, r.integers(3, 16)))
    frames = render_frames(gt, ISBI2013, (64, 64), 300, SCENE_NOISE, rng)
    yield "no bead: 3-15 molecules, exponential brightness", frames, gt[gt["intensity [photon]"] > 150], "all"
    gt = molecules(rng, 32, lambda r: np.where(r.random(82) < 0.05, 6000.0, r.uniform(600, 900, 82)))
    yield ("no bead: 5 % of the molecules at 6,000 ph among 600-900, 2/um^2",
           render_frames(gt, ISBI2013, (64, 64), 32, SCENE_NOISE, rng), gt, "all")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=16, help="frames per network pass (large frames: 1)")
    p.add_argument("--out", default=str(RESULTS / "outliers.json"))
    args = p.parse_args()
    model = DeepLocalizer(device="cpu")
    rows = []
    print(f"{'scene':52s} {'fix on':>7s} {'off':>7s}  frames dimmed, pixels replaced")
    picks = {"away": away_from_bead, "all": lambda t: t,
             "inner": lambda t: t[t["x [nm]"].between(500, 5900) & t["y [nm]"].between(500, 5900)]}
    for name, frames, gt, which in scenes(np.random.default_rng(1)):
        pick = picks[which]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batches = list(localize_stream(model, frames, batch_size=args.batch_size))
            on = score(pick(gt), pick(pd.concat([b.table for b in batches])), 50.0).jaccard
            off = score(pick(gt), pick(localize(model, frames, fix_outlier_pixels=False)), 50.0).jaccard
        dimmed, replaced = batches[-1].frames_dimmed, batches[-1].pixels_replaced
        print(f"{name:52s} {on:7.1f} {off:7.1f}  {dimmed}/{len(frames)}, {replaced}", flush=True)
        rows.append({"scene": name, "jaccard_50_fix": round(on, 2), "jaccard_50_off": round(off, 2),
                     "frames_dimmed": dimmed, "pixels_replaced": replaced, "frames": len(frames)})
    write_json(Path(args.out), {"machine": machine(), "command": command(), "batch_size": args.batch_size,
                                "scenes": rows})


if __name__ == "__main__":
    main()
