"""Large tables: scoring many localizations, a frame selection of many ranges, and a PNG
of a large render (docs/benchmarks.md, "Large tables").

    python benchmarks/large_tables.py [--out benchmarks/results/large_tables.json]

- ``evaluate``: 1,000 frames of 200 uniform molecules on 64 x 64 camera pixels (200,000)
  against 90 % of them moved by 20 nm (sd, per axis), at 50/100/150/250 nm;
- ``select_frames``: 2 million rows over 20,000 frames, the odd frames (10,000 ranges)
  and frames 1-1000, with the peak memory traced (tracemalloc);
- ``save_render_png``: a 10,240 x 10,240 render (a 1,024-pixel camera at 10 nm) with 2
  million non-zero pixels, and the process's peak resident memory after it.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, write_json

from napari_deepcel0.core.metrics import evaluate, select_frames
from napari_deepcel0.core.render import save_render_png


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - t0, 2)


def scoring() -> dict:
    rng = np.random.default_rng(0)
    frames = np.repeat(np.arange(1, 1001), 200)
    gt = pd.DataFrame({"frame": frames, "x [nm]": rng.random(frames.size) * 6400,
                       "y [nm]": rng.random(frames.size) * 6400})
    est = gt.copy()
    est[["x [nm]", "y [nm]"]] += rng.normal(0.0, 20.0, (len(est), 2))
    est = est.sample(frac=0.9, random_state=1).sort_values("frame", kind="stable")
    scores, seconds = timed(lambda: evaluate(gt, est, (50.0, 100.0, 150.0, 250.0)))
    return {"ground_truth": len(gt), "localizations": len(est), "seconds": seconds,
            "jaccard": [round(s.jaccard, 3) for s in scores]}


def selections() -> dict:
    rng = np.random.default_rng(0)
    n = 2_000_000
    table = pd.DataFrame({"frame": rng.integers(1, 20_001, n), "x [nm]": rng.random(n), "y [nm]": rng.random(n)})
    out = {}
    for name, selection in (("odd frames (10,000 ranges)", ",".join(map(str, range(1, 20_001, 2)))),
                            ("1-1000", "1-1000")):
        tracemalloc.start()
        (rows, _, n_frames), seconds = timed(lambda: select_frames(table, table.iloc[:0], selection))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[name] = {"rows": len(rows), "frames": n_frames, "seconds": seconds, "peak_mb": round(peak / 1e6)}
    return out


def png() -> dict:
    rng = np.random.default_rng(0)
    image = np.zeros((10_240, 10_240), np.float32)
    image.ravel()[rng.integers(0, image.size, 2_000_000)] = rng.random(2_000_000) * 5
    with tempfile.TemporaryDirectory() as folder:
        _, seconds = timed(lambda: save_render_png(Path(folder) / "render.png", image))
    return {"shape": list(image.shape), "seconds": seconds,
            "peak_rss_gb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "large_tables.json")
    args = parser.parse_args()
    result = {"machine": machine(), "command": command(), "evaluate": scoring(), "select_frames": selections(),
              "save_render_png": png()}
    for key in ("evaluate", "select_frames", "save_render_png"):
        print(key, result[key])
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
