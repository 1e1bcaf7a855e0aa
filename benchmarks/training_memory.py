"""Peak memory of simulating a training set (``make_training_set``) against the estimate
that ``train()`` checks before it starts (``training_data.training_set_bytes``), for the
bundled recipe's data at a few sizes, each in a fresh process (peak RSS grows only).

    python benchmarks/training_memory.py [--sizes 10000:200 40000:200 10000:800]

The estimate is meant to refuse a set that cannot fit (a million patches need about
24 GB) before it is simulated, not to be exact.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import RESULTS, command, machine, write_json

CHILD = """
import dataclasses, resource, sys
from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.training import TrainingConfig
from napari_deepcel0.core.training_data import make_training_set, training_set_bytes
cfg = dataclasses.replace(TrainingConfig.bundled().data, n_patches=int(sys.argv[1]), n_frames=int(sys.argv[2]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
make_training_set(Acquisition(), cfg)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, training_set_bytes(Acquisition(), cfg))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["10000:200", "40000:200", "10000:800"], metavar="PATCHES:FRAMES")
    p.add_argument("--out", default=str(RESULTS / "training_memory.json"))
    args = p.parse_args()
    rows = []
    print(f"{'patches':>8} {'frames':>7} {'measured MB':>12} {'estimated MB':>13}")
    for size in args.sizes:
        patches, frames = (int(v) for v in size.split(":"))
        out = subprocess.run([sys.executable, "-c", CHILD, str(patches), str(frames)], capture_output=True, text=True,
                             check=True).stdout.split()
        measured, estimated = float(out[0]) / 2**20, float(out[1]) / 2**20
        rows.append({"patches": patches, "frames": frames, "measured_mb": round(measured), "estimated_mb": round(estimated)})
        print(f"{patches:>8} {frames:>7} {measured:>12.0f} {estimated:>13.0f}")
    write_json(Path(args.out), {"machine": machine(), "command": command(), "rows": rows})


if __name__ == "__main__":
    main()
