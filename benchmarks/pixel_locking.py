"""Where inside a fine pixel the localizations fall (pixel locking), and what it draws.

The network's map is a grid of 25 nm pixels (100 nm camera pixels, L = 4); positions
read off it favour the centres of those pixels. This script simulates the demo's
tubulin-like frames (`deepcel0 demo`: 50 frames of 64 x 64 pixels at 5.5 emitters per
um^2, seed 1), localizes them with the bundled model plainly, with the position fit and
with 8 orientations, and prints for each (and for the ground truth) the histogram of
x and y modulo the fine pixel in 10 bins and the ratio of the fullest bin to the
emptiest (1 for positions spread evenly). Renders of such positions at 10 nm pixels show
the grid as beads along filaments at a 10 nm blur and not at 20 nm (judged by eye on the
demo's PNG). Writes benchmarks/results/pixel_locking.json.

    python benchmarks/pixel_locking.py [--frames 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, write_json

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.model_io import load_bundled_model
from napari_deepcel0.core.predict import DeepLocalizer, localize

BINS = 10


def locking(table: pd.DataFrame, fine_nm: float) -> dict:
    """Histogram of the positions modulo the fine pixel (x and y together), and the
    ratio of its fullest bin to its emptiest."""
    within = np.concatenate([np.mod(table[c].to_numpy(), fine_nm) for c in ("x [nm]", "y [nm]")])
    counts, _ = np.histogram(within, bins=BINS, range=(0.0, fine_nm))
    return {"histogram": counts.tolist(), "max_over_min": round(float(counts.max() / max(counts.min(), 1)), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--out", default=str(RESULTS / "pixel_locking.json"))
    args = p.parse_args()

    loaded = load_bundled_model()
    acq = loaded.info.acquisition
    frames, gt = sim.simulate_stack(n_frames=args.frames, shape=(64, 64), density_per_um2=5.5, structure="tubes",
                                    acq=acq, seed=1)
    rows = {"ground truth": (gt, 0.0)}
    for name, kwargs, orientations in (("map (parabola read-out)", {}, 1),
                                       ("fit positions", {"fit_positions": True}, 1),
                                       ("8 orientations", {}, 8)):
        model = DeepLocalizer(loaded, device="cpu", orientations=orientations)
        t0 = time.perf_counter()
        rows[name] = (localize(model, frames, **kwargs), time.perf_counter() - t0)
    results = {}
    print(f"{'':26} {'histogram of positions within a 25 nm fine pixel':56} max/min")
    for name, (table, seconds) in rows.items():
        r = locking(table, acq.fine_pixel_nm)
        r.update(n=len(table), seconds=round(seconds, 1))
        results[name] = r
        print(f"{name:26} {str(r['histogram']):56} {r['max_over_min']:6.1f}")
    out = write_json(Path(args.out), {
        "machine": machine(), "command": command(),
        "data": f"deepcel0 demo's frames: {args.frames} frames of 64 x 64, tubes at 5.5 emitters/um^2, seed 1",
        "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
