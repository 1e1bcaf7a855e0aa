"""Models on simulated stacks: sparse and dense uniform emitters, and emitters crowded along filaments.

    python benchmarks/in_domain.py MODEL [MODEL ...] [--orientations 1 8]

Each scene is 30 frames of 64 x 64 camera pixels from ``core.simulate.simulate_stack``
(seed 5) with the ISBI 2013 acquisition. Prints Jaccard/sensitivity/precision/RMSE at
50 nm per model and scene and writes benchmarks/results/in_domain.json. This is the
measurement behind docs/training.md's "uniform emitters are not enough for filaments" and
its sparse-frame tables (stages 6 and 7). ``--orientations`` scores each model once per
value (test-time orientation averaging, see ``DeepLocalizer``); rows other than 1 are
named "MODEL (N orientations)".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, command, machine, score_row, write_json

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.predict import DeepLocalizer, localize


def uniform_camera_scene(density_per_um2: float, photons: float, background_photons: float) -> dict:
    """Uniform emitters (photons +-20 % each) through the camera model with a fixed background."""
    return dict(structure="uniform", density_per_um2=density_per_um2, photons=sim.PhotonModel(photons, photons, 0.2),
                noise=sim.CameraNoise((background_photons, background_photons)))


SCENES = {
    "uniform 0.5/um2, 2000 ph, background 10 ph": uniform_camera_scene(0.5, 2000, 10),
    "uniform 2/um2, 2000 ph, background 10 ph": uniform_camera_scene(2.0, 2000, 10),
    "uniform 6/um2, 2000 ph, background 10 ph": uniform_camera_scene(6.0, 2000, 10),
    "uniform 6/um2, 700 ph, background 9 ph": uniform_camera_scene(6.0, 700, 9),
    "uniform 6/um2, SNR 15 dB": dict(structure="uniform", density_per_um2=6.0, noise=sim.GaussianSNRNoise((15, 15))),
    "tubes 5.5/um2 (simulate's other defaults)": dict(structure="tubes", density_per_um2=5.5),
}
N_FRAMES = 30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--orientations", type=int, nargs="+", default=[1], choices=(1, 4, 8),
                   help="orientation averaging, one run per value (default 1: none)")
    p.add_argument("--out", default=str(RESULTS / "in_domain.json"))
    args = p.parse_args()
    stacks = {name: sim.simulate_stack(n_frames=N_FRAMES, seed=5, **kw) for name, kw in SCENES.items()}
    results = {}
    for path in args.models:
        for orientations in args.orientations:
            model = DeepLocalizer(path, acquisition=ISBI2013, orientations=orientations)
            label = Path(path).name + ("" if orientations == 1 else f" ({orientations} orientations)")
            rows = results.setdefault(label, {})
            for name, (frames, gt) in stacks.items():
                s = score(gt, localize(model, frames), 50.0)
                rows[name] = {**score_row(s), "locs_per_frame": round((s.tp + s.fp) / N_FRAMES, 1),
                              "gt_per_frame": round(len(gt) / N_FRAMES, 1)}
                print(f"{label:48s} {name:40s} J50 {s.jaccard:5.1f}  sens {s.sensitivity:5.1f}  "
                      f"prec {s.precision:5.1f}  RMSE {s.rmse_nm:5.1f} nm", flush=True)
    out = write_json(Path(args.out), {"machine": machine(), "command": command(), "n_frames": N_FRAMES,
                                      "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
