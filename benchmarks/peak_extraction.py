"""Peak extraction alone (``localize.find_peaks``, the default parabola read-out) on the
bundled model's maps of the first 16 ISBI 2013 frames: ms a frame, best of 20 (printed).

    python benchmarks/peak_extraction.py

Run it on two codes with ``PYTHONPATH=<their src>`` to compare (docs/benchmarks.md, Speed).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from common import machine, require_isbi

from napari_deepcel0.core.io import read_stack
from napari_deepcel0.core.localize import find_peaks
from napari_deepcel0.core.predict import DeepLocalizer


def main() -> None:
    warnings.simplefilter("ignore")
    with read_stack(require_isbi() / "frames.tif") as stack:
        frames = np.asarray(stack[0:16], np.float32)
    localizer = DeepLocalizer(None, device="cpu")
    maps, _ = localizer.maps(frames)
    threshold = localizer.default_threshold()
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        find_peaks(maps, threshold, subpixel="parabola")
        best = min(best, time.perf_counter() - start)
    print(f"{machine()}\nfind_peaks on 16 maps of 256 x 256: {1000 * best / 16:.2f} ms a frame (best of 20)")


if __name__ == "__main__":
    main()
