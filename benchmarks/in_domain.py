"""Models on simulated stacks: sparse and dense uniform emitters, and emitters crowded along filaments.

    python benchmarks/in_domain.py MODEL [MODEL ...]

Each scene is 30 frames of 64 x 64 camera pixels from ``core.simulate.simulate_stack``
(seed 5) with the ISBI 2013 acquisition. Prints Jaccard/sensitivity/precision/RMSE at
50 nm per model and scene and writes benchmarks/results/in_domain.json. This is the
measurement behind docs/training.md's "uniform emitters are not enough for filaments" and
its sparse-frame tables (stages 6 and 7).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, command, machine, score_row, write_json

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.predict import DeepLocalizer, localize

SCENES = {
    "uniform 0.5/um2, 2000 ph, read noise 10": dict(
        structure="uniform", density_per_um2=0.5, photons=sim.PhotonModel(2000, 2000, 0.2),
        noise=sim.CameraNoise((10, 10))),
    "uniform 2/um2, 2000 ph, read noise 10": dict(
        structure="uniform", density_per_um2=2.0, photons=sim.PhotonModel(2000, 2000, 0.2),
        noise=sim.CameraNoise((10, 10))),
    "uniform 6/um2, 2000 ph, read noise 10": dict(
        structure="uniform", density_per_um2=6.0, photons=sim.PhotonModel(2000, 2000, 0.2),
        noise=sim.CameraNoise((10, 10))),
    "uniform 6/um2, 700 ph, read noise 9": dict(
        structure="uniform", density_per_um2=6.0, photons=sim.PhotonModel(700, 700, 0.2),
        noise=sim.CameraNoise((9, 9))),
    "uniform 6/um2, SNR 15 dB": dict(structure="uniform", density_per_um2=6.0, noise=sim.GaussianSNRNoise((15, 15))),
    "tubes 5.5/um2 (simulate defaults)": dict(structure="tubes", density_per_um2=5.5),
}
N_FRAMES = 30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--out", default=str(RESULTS / "in_domain.json"))
    args = p.parse_args()
    stacks = {name: sim.simulate_stack(n_frames=N_FRAMES, seed=5, **kw) for name, kw in SCENES.items()}
    results = {}
    for path in args.models:
        model = DeepLocalizer(path, acquisition=ISBI2013)
        rows = results.setdefault(Path(path).name, {})
        for name, (frames, gt) in stacks.items():
            s = score(gt, localize(model, frames), 50.0)
            rows[name] = {**score_row(s), "locs_per_frame": round((s.tp + s.fp) / N_FRAMES, 1),
                          "gt_per_frame": round(len(gt) / N_FRAMES, 1)}
            print(f"{Path(path).name:40s} {name:40s} J50 {s.jaccard:5.1f}  sens {s.sensitivity:5.1f}  "
                  f"prec {s.precision:5.1f}  RMSE {s.rmse_nm:5.1f} nm", flush=True)
    out = write_json(Path(args.out), {"machine": machine(), "command": command(), "n_frames": N_FRAMES,
                                      "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
