"""ThunderSTORM CSV: time and peak memory to write and read a large localization file.

    python benchmarks/csv_io.py [--rows 1000000 10000000]

For each size, a table of uniformly spread localizations (frame, x, y, intensity,
uncertainty; 100 per frame) is written with ``core.io.write_thunderstorm_csv`` and read
back with ``core.io.read_localizations``, each in a fresh process so that the peak
memory (RSS) is that step's. Writes benchmarks/results/csv_io.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS, command, machine, write_json


def child(step: str, path: str, rows: int) -> None:
    from napari_deepcel0.core.io import read_localizations, write_thunderstorm_csv

    start = time.perf_counter()
    if step == "write":
        rng = np.random.default_rng(0)
        table = pd.DataFrame({"frame": np.arange(rows) // 100 + 1, "x [nm]": rng.uniform(0, 6400, rows),
                              "y [nm]": rng.uniform(0, 6400, rows), "intensity [photon]": rng.uniform(500, 3000, rows),
                              "uncertainty [nm]": rng.uniform(3, 30, rows)})
        start = time.perf_counter()  # the table's making is not the writer's time
        write_thunderstorm_csv(path, table)
    else:
        table = read_localizations(path)
        assert len(table) == rows
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--out", default=str(RESULTS / "csv_io.json"), help="JSON to write")
    p.add_argument("--child", nargs=3, metavar=("STEP", "PATH", "ROWS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"locs_{rows}.csv"
            row = {"rows": rows}
            for step in ("write", "read"):
                out = subprocess.run([sys.executable, __file__, "--child", step, str(path), str(rows)],
                                     capture_output=True, text=True, check=True)
                row[step] = json.loads(out.stdout.strip().splitlines()[-1])
            row["megabytes"] = round(path.stat().st_size / 1e6, 1)
            results.append(row)
            print(f"{rows:>11,} rows ({row['megabytes']} MB): write {row['write']['seconds']} s "
                  f"(peak {row['write']['peak_rss_mb']} MB), read {row['read']['seconds']} s "
                  f"(peak {row['read']['peak_rss_mb']} MB)", flush=True)
    path = write_json(Path(args.out), {"machine": machine(), "command": command(), "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
