"""Does averaging several DeepCEL0 models help? The paper's Table 1 protocol (tests 1b-4b,
``paper_table1.py``), each ensemble's networks' outputs averaged before the ReLU (in the
first model's map units) and read out as one model's are (parabola, its threshold).

    python benchmarks/ensemble.py runs/a.safetensors runs/a.safetensors+runs/b.safetensors \
        [--frames 1-120] [--out benchmarks/results/ensemble.json]

Each positional argument is one ensemble: model files joined by ``+`` (a single file is
that model alone, the reference). Prints Jaccard at 50 / 100 / 150 nm and RMSE per test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import RESULTS, command, machine, require_isbi, write_json
from paper_table1 import PAPER_ACQ, TESTS, pixel_centred_truth, render_test, row

from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.io import read_localizations
from napari_deepcel0.core.predict import DeepLocalizer, localize


class AveragedModels:
    """A :class:`~napari_deepcel0.core.predict.MapModel` whose outputs are the mean of
    several models' outputs before their ReLU, each scaled to the first one's spike value."""

    mass_column = "confidence"

    def __init__(self, paths: list[str], device: str):
        self.members = [DeepLocalizer(p, acquisition=PAPER_ACQ, device=device) for p in paths]
        self.acquisition = self.members[0].acquisition

    def default_threshold(self) -> float:
        return self.members[0].default_threshold()

    def _outputs(self, frames: np.ndarray):
        spike = self.members[0].info.spike_value
        outputs = [m.network_outputs(m.normalise(frames)) * (spike / m.info.spike_value) for m in self.members]
        return sum(outputs) / len(outputs)

    def maps(self, frames: np.ndarray):
        return self._outputs(frames).clamp_min(0), self.members[0]._mass_scale(len(frames))

    def read_out(self, frames: np.ndarray):
        outputs = self._outputs(frames)
        return outputs.clamp_min(0), self.members[0]._mass_scale(len(frames)), outputs, "parabola"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ensembles", nargs="+", help="model files joined by '+' (one file: that model alone)")
    p.add_argument("--frames", default="1-120")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=2021, help="as paper_table1.py's (the same frames)")
    p.add_argument("--out", type=Path, default=RESULTS / "ensemble.json")
    args = p.parse_args()

    gt_raw = read_localizations(require_isbi() / "ground_truth.csv")
    n_total = int(gt_raw["frame"].max())
    gt = pixel_centred_truth(gt_raw, PAPER_ACQ)
    numbers = parse_frame_selection(args.frames, n_total) + 1
    models = {name: AveragedModels(name.split("+"), args.device) for name in args.ensembles}
    results: dict = {name: {} for name in models}
    for i, test in enumerate(sorted(TESTS, key=lambda t: t != "4b")):  # paper_table1.py's order and seeds
        frames = render_test(gt_raw, n_total, TESTS[test], args.seed + 10 * i)
        for name, model in models.items():
            results[name][test] = row(gt, localize(model, frames, frames=numbers.tolist()), numbers)
    print("Jaccard at 50 / 100 / 150 nm, RMSE (nm); frames", args.frames)
    for name, tests in results.items():
        print(name)
        for test in TESTS:
            r = tests[test]
            print(f"  {test}: {r['jaccard_50']:.1f} / {r['jaccard_100']:.1f} / {r['jaccard_150']:.1f}, "
                  f"{r['rmse_nm']:.1f} nm")
    write_json(args.out, {"machine": machine(), "command": command(), "frames": args.frames, "ensembles": results})


if __name__ == "__main__":
    main()
