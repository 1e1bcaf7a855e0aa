"""Faint and empty frames: each frame scaled by its own range against a range taken as at
least K noise standard deviations (``DeepLocalizer(range_floor=K)``,
``predict.FRAME_RANGE_FLOOR``, ``predict.scale_to_unit_range``).

    python benchmarks/frame_range_floor.py [--floors 0 16 18 20 22 25] [--frames 40] [--table1 60]
        [--out benchmarks/results/frame_range_floor.json]

Scenes of 64 x 64 camera pixels, the ISBI 2013 acquisition, camera noise with 10
background photons per pixel (quantised), seed 3: frames without molecules (every
localization is false), and frames with 1, 3, 20 or 40 molecules placed uniformly, their
photons drawn uniformly from a range. With ``--table1 N`` (needs the ISBI 2013 ground
truth, ../shared/data) also the first N frames of the paper's Table 1 tests 2b, 3b, 4b
(Gaussian noise at 10, 12, 15 dB, ``benchmarks/paper_table1.py``), whose frames span the
fewest noise standard deviations of the data we score on. Prints each frame's range in
noise standard deviations (median) and, for each K, the false molecules a frame of the
empty scene and Jaccard at 50 nm of the others.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import RESULTS, SCENE_NOISE, command, machine, score_row, write_json

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.predict import DeepLocalizer, frame_noise_sd, localize
from napari_deepcel0.core.simulate import render_frames

#: name: (molecules a frame, photons range)
SCENES = {
    "no molecules": (0, (600, 900)),
    "1 molecule of 150-300 ph": (1, (150, 300)),
    "3 molecules of 150-300 ph": (3, (150, 300)),
    "3 molecules of 300-500 ph": (3, (300, 500)),
    "20 molecules of 200-400 ph": (20, (200, 400)),
    "40 molecules of 300-600 ph": (40, (300, 600)),
}


def scene(n_molecules: int, photons, n_frames: int, rng):
    n = n_frames * n_molecules
    gt = pd.DataFrame({"frame": np.repeat(np.arange(1, n_frames + 1), n_molecules),
                       "x [nm]": rng.uniform(500, 5900, n), "y [nm]": rng.uniform(500, 5900, n),
                       "intensity [photon]": rng.uniform(*photons, n)})
    return gt, render_frames(gt, ISBI2013, (64, 64), n_frames, SCENE_NOISE, rng)


def table1_scenes(n_frames: int):
    from common import require_isbi
    from paper_table1 import PAPER_ACQ, TESTS, pixel_centred_truth, render_test

    from napari_deepcel0.core.io import read_localizations

    gt = read_localizations(require_isbi() / "ground_truth.csv")
    gt = gt[gt["frame"] <= n_frames]
    truth = pixel_centred_truth(gt, PAPER_ACQ)
    return {f"Table 1 {name} (first {n_frames} frames)": (truth, render_test(gt, n_frames, TESTS[name], seed=0))
            for name in ("2b", "3b", "4b")}, PAPER_ACQ


def range_in_noise_sd(frames: np.ndarray) -> float:
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    return float(torch.median((x.amax((-2, -1)) - x.amin((-2, -1))) / frame_noise_sd(x)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--floors", type=float, nargs="+", default=[0.0, 16.0, 18.0, 20.0, 22.0, 25.0],
                   help="the K to compare (0: each frame by its own range)")
    p.add_argument("--frames", type=int, default=40, help="frames of each simulated scene")
    p.add_argument("--table1", type=int, default=0, metavar="N",
                   help="also the first N frames of the paper's Table 1 tests 2b-4b (needs the ISBI 2013 data)")
    p.add_argument("--out", default=str(RESULTS / "frame_range_floor.json"))
    args = p.parse_args()

    scenes = {name: (*scene(n, ph, args.frames, np.random.default_rng(3)), None)
              for name, (n, ph) in SCENES.items()}
    if args.table1:
        tests, acq = table1_scenes(args.table1)
        scenes.update({name: (gt, frames, acq) for name, (gt, frames) in tests.items()})
    rows = []
    print(f"{'scene':40s} {'range/sd':>8s}  " + "  ".join(f"K={k:<5g}" for k in args.floors)
          + "   (false molecules a frame if none; else Jaccard at 50 nm, %)")
    for name, (gt, frames, acq) in scenes.items():
        row = {"scene": name, "molecules": len(gt), "frames": len(frames),
               "median_range_in_noise_sd": round(range_in_noise_sd(frames), 2), "floors": {}}
        cells = []
        for k in args.floors:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loc = localize(DeepLocalizer(device="cpu", acquisition=acq, range_floor=k), frames)
            if len(gt):
                s = score(gt, loc, 50.0)
                row["floors"][f"{k:g}"] = score_row(s)
                cells.append(f"{s.jaccard:7.1f}")
            else:
                row["floors"][f"{k:g}"] = {"false_per_frame": round(len(loc) / len(frames), 3)}
                cells.append(f"{len(loc) / len(frames):7.2f}")
        print(f"{name:40s} {row['median_range_in_noise_sd']:8.1f}  " + "  ".join(cells), flush=True)
        rows.append(row)
    write_json(Path(args.out), {"machine": machine(), "command": command(), "frames": args.frames,
                                "floors": args.floors, "scenes": rows})


if __name__ == "__main__":
    main()
