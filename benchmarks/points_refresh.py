"""How long the GUI thread stops when a run's Points layer is refreshed, as the run grows
(:class:`napari_deepcel0._napari.layers.GrowingPoints`): while the run goes on the layer
holds the frame on screen only; the whole table goes in once, when the run ends.

    xvfb-run -a python benchmarks/points_refresh.py [--localizations 1000000] [--per-frame 330]

Feeds batches of 16 frames of ``--per-frame`` random localizations into a GrowingPoints
layer of a hidden napari viewer, refreshes after each of a few batches as a run does, and
prints the refresh time against the localizations so far; then the time of
``finish()``. For comparison, the time of setting the whole table into the layer at the
same sizes (what every refresh did before). Needs a display (Xvfb).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, write_json

import napari
from napari_deepcel0._napari.layers import GrowingPoints, points_from_table


def batch(rng, first_frame: int, frames: int, per_frame: int) -> tuple[pd.DataFrame, np.ndarray]:
    numbers = np.arange(first_frame, first_frame + frames)
    n = frames * per_frame
    return pd.DataFrame({"frame": np.repeat(numbers, per_frame), "x [nm]": rng.uniform(0, 6400, n),
                         "y [nm]": rng.uniform(0, 6400, n), "confidence": rng.uniform(0, 1, n)}), numbers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--localizations", type=int, default=1_000_000)
    p.add_argument("--per-frame", type=int, default=330, help="localizations per frame (ISBI 2013-like: about 200)")
    p.add_argument("--out", type=Path, default=RESULTS / "points_refresh.json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    viewer = napari.Viewer(show=False)
    viewer.add_image(np.zeros((3, 64, 64), np.float32), scale=(1, 100, 100))  # a stack: the frame slider
    run = GrowingPoints(viewer, "run", "yellow")
    whole = viewer.add_points(np.zeros((0, 3)), name="whole table")  # the previous behaviour, for comparison
    frames_per_batch, frame, rows = 16, 1, []
    checkpoints = sorted({int(args.localizations * f) for f in (0.1, 0.25, 0.5, 1.0)})
    while run.count < args.localizations:
        table, numbers = batch(rng, frame, frames_per_batch, args.per_frame)
        run.add(table, numbers)
        frame += frames_per_batch
        if checkpoints and run.count >= checkpoints[0]:
            checkpoints.pop(0)
            t0 = time.perf_counter()
            run.refresh()
            during = time.perf_counter() - t0
            coords, features = points_from_table(run.table())
            t0 = time.perf_counter()
            whole.data, whole.features = coords, features
            full = time.perf_counter() - t0
            rows.append({"localizations": run.count, "refresh_during_run_s": during, "whole_table_set_s": full})
            print(f"{run.count:>10,} localizations: refresh during the run {during * 1e3:7.1f} ms; "
                  f"the whole table set into a layer {full * 1e3:7.1f} ms")
    t0 = time.perf_counter()
    run.finish()
    finish = time.perf_counter() - t0
    print(f"finish (the whole table, once): {finish:.2f} s for {run.count:,} localizations")
    write_json(args.out, {"machine": machine(), "command": command(), "per_frame": args.per_frame,
                          "refreshes": rows, "finish_s": finish, "localizations": run.count})
    viewer.close()


if __name__ == "__main__":
    main()
