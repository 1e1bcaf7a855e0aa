"""Time to open a TIFF stack (``FrameStack``, what napari's reader and the CLI do), by the
way the file was written, and to read 16 frames through a napari layer's dask array
against reading them from the stack (what a run does, ``reader.frame_source``).

    python benchmarks/open_stack.py [--frames 2000 4000] [--size 32]

Layouts: tifffile's plain, ImageJ and OME stacks written at once, and one written a frame
at a time (``TiffWriter.write`` in a loop, as ``imwrite(append=True)``: one "shaped"
series per frame). Files are written to a temporary folder first (not timed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from common import RESULTS, command, machine, write_json

from napari_deepcel0.core.frames import read_frames
from napari_deepcel0.core.io import FrameStack


def write(path: Path, layout: str, frames: int, size: int) -> None:
    data = (np.arange(frames)[:, None, None] % 60000 * np.ones((1, size, size))).astype(np.uint16)
    if layout == "frame by frame":
        with tifffile.TiffWriter(path) as writer:
            for frame in data:
                writer.write(frame)
    elif layout == "ImageJ":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    elif layout == "OME":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "TYX"})
    else:
        tifffile.imwrite(path, data, photometric="minisblack")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[2000, 4000])
    p.add_argument("--size", type=int, default=32, help="frame side in pixels")
    p.add_argument("--out", type=Path, default=RESULTS / "open_stack.json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for frames in args.frames:
            for layout in ("plain", "ImageJ", "OME", "frame by frame"):
                path = Path(folder) / f"{layout.replace(' ', '_')}_{frames}.tif"
                write(path, layout, frames, args.size)
                t0 = time.perf_counter()
                stack = FrameStack(path)
                opened = time.perf_counter() - t0
                assert stack.shape == (frames, args.size, args.size) and stack[frames - 1][0, 0] == (frames - 1) % 60000
                rows.append({"frames": frames, "layout": layout, "open_s": opened})
                print(f"{frames:>7,} frames, {layout:<15} open {opened:6.2f} s")
                stack.close()
        # a run's reads: through the layer's dask array, and from the stack
        from napari_deepcel0._napari.reader import frame_source, lazy_frames

        path = Path(folder) / f"plain_{args.frames[-1]}.tif"
        with FrameStack(path) as stack:
            layer_data = lazy_frames(stack)
            indices = np.arange(16)
            for name, source in (("dask array", layer_data), ("stack", frame_source(layer_data))):
                t0 = time.perf_counter()
                for _ in range(10):
                    read_frames(source, indices)
                per_batch = (time.perf_counter() - t0) / 10
                rows.append({"frames": args.frames[-1], "read_16_frames_from": name, "seconds": per_batch})
                print(f"16 frames of a {args.frames[-1]:,}-frame stack read from the {name}: {per_batch * 1e3:.2f} ms")
    write_json(args.out, {"machine": machine(), "command": command(), "frame_side_px": args.size, "rows": rows})


if __name__ == "__main__":
    main()
