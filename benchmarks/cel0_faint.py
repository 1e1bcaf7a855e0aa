"""CEL0 on frames of other densities than ISBI 2013's: the share of its localizations that
are fainter than the frames' noise lets a molecule be (``cel0.faint_localizations``, the
rule behind ``FaintLocalizationsWarning``) beside Jaccard, at the default lambda and at
0.01, and CEL0's count over the bundled DeepCEL0's on the same frames (the rule behind the
CEL0 widget's ``excess_over_deepcel0_message``); and how CEL0 splits isolated molecules of
ISBI 2013's brightness (docs/cel0.md).

    python benchmarks/cel0_faint.py [--out benchmarks/results/cel0_faint.json]

``faint_share``: of all localizations; ``frames_flagged``: the frames the warning's rule flags
(frame by frame). Scenes: uniform molecules on 6 frames of 48 x 48 pixels, ISBI 2013's camera (10
background photons a pixel; one scene of 2,000-3,000 photons on 40), seed 2; the first 10
frames of ISBI 2013 and of the paper's tests 2b and 4b (Table 1 protocol, seed 0) when
../shared holds them. Isolated molecules: 4 a frame at fixed places, 16 frames of 32 x 32,
Poisson noise on 10 or 40 background photons. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import ISBI_DIR, RESULTS, command, machine, write_json

from napari_deepcel0.core import cel0
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.predict import DeepLocalizer, localize

LAMS = (cel0.DEFAULT_LAM, 0.01)
#: name: (molecules per um^2, photons, background photons a pixel)
SCENES = {
    "0.1/um^2": (0.1, (600.0, 900.0), 10.0),
    "0.5/um^2": (0.5, (600.0, 900.0), 10.0),
    "0.5/um^2, 2,000-3,000 ph on 40": (0.5, (2000.0, 3000.0), 40.0),
    "2/um^2": (2.0, (600.0, 900.0), 10.0),
    "6/um^2": (6.0, (600.0, 900.0), 10.0),
    "10/um^2": (10.0, (600.0, 900.0), 10.0),
}


def deepcel0_per_frame(frames) -> float:
    """The bundled DeepCEL0's localizations a frame (its own acquisition: ISBI 2013's)."""
    return len(localize(DeepLocalizer(None, device="cpu"), frames)) / len(frames)


def row(frames, truth, acq, lam, deep_per_frame: float, background="auto") -> dict:
    model = cel0.Cel0Localizer(acq, lam=lam, background=background, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = localize(model, frames)
    s = score(truth, table, 50.0)
    # the warning's rule, frame by frame (cel0.Cel0Localizer.check_localizations), frames that show only noise
    # not judged
    quiet = np.flatnonzero(cel0.background_only_frames(frames, acq.sigma_px)) + 1
    flagged, _, _ = cel0.faint_frames(table, cel0.faint_localizations(frames, table, acq), quiet)
    return {"lam": lam, "per_frame": round(len(table) / len(frames), 1), "true_per_frame":
            round(len(truth) / len(frames), 1), "faint_share": round(model.faint_count / max(len(table), 1), 3),
            "frames_flagged": f"{len(flagged)}/{len(frames)}",
            "deepcel0_per_frame": round(deep_per_frame, 1),
            "count_over_deepcel0": round(len(table) / len(frames) / deep_per_frame, 2),
            "warned": any(w.category is cel0.FaintLocalizationsWarning for w in caught),
            "jaccard_50": round(s.jaccard, 1), "precision_50": round(s.precision, 1)}


def scenes() -> dict:
    out = {}
    for name, (density, photons, background) in SCENES.items():
        frames, truth = sim.simulate_stack(n_frames=6, shape=(48, 48), density_per_um2=density, structure="uniform",
                                           acq=ISBI2013, photons=sim.PhotonModel(*photons, 0.15 if photons[0] < 1000
                                                                                  else 0.0),
                                           noise=sim.CameraNoise(background_photons=(background, background),
                                                                 quantize=True), seed=2)
        deep = deepcel0_per_frame(frames)
        out[name] = [row(frames, truth, ISBI2013, lam, deep) for lam in LAMS]
    if (ISBI_DIR / "frames.tif").is_file():
        with read_stack(ISBI_DIR / "frames.tif") as stack:
            frames = np.asarray(stack[0:10], np.float32)
        gt = read_localizations(ISBI_DIR / "ground_truth.csv")
        gt = gt[gt["frame"] <= 10]
        deep = deepcel0_per_frame(frames)
        out["ISBI 2013 frames 1-10"] = [row(frames, gt, ISBI2013, lam, deep) for lam in LAMS]
        from paper_table1 import PAPER_ACQ, TESTS, pixel_centred_truth, render_test

        truth = pixel_centred_truth(gt, PAPER_ACQ)
        for test, best in (("2b", 0.0123), ("4b", 0.0035)):  # their best lambdas (paper_table1.json)
            frames = render_test(gt, 10, TESTS[test], seed=0)
            deep = deepcel0_per_frame(frames)
            out[f"Table 1 {test}, frames 1-10"] = [row(frames, truth, PAPER_ACQ, lam, deep, background=None)
                                                   for lam in (cel0.DEFAULT_LAM, best)]
    return out


def isolated() -> dict:
    """Per brightness and lambda: the brightest localization within 100 nm of each molecule
    and all of them, over its photons, and how many there are (medians over 16 frames)."""
    from scipy.special import erf

    sigma = ISBI2013.sigma_px
    places = [(8.3, 8.6), (24.55, 8.1), (8.9, 24.5), (24.2, 24.7)]  # (x, y) camera px

    def spot(x0, y0, photons):
        edges = np.arange(33.0)
        ex = np.diff(0.5 * erf((edges - x0) / (np.sqrt(2) * sigma)))
        ey = np.diff(0.5 * erf((edges - y0) / (np.sqrt(2) * sigma)))
        return photons * np.outer(ey, ex)

    out = {}
    for photons, background in ((700.0, 10.0), (2500.0, 40.0)):
        rng = np.random.default_rng(2)
        expected = background + sum(spot(x, y, photons) for x, y in places)
        frames = np.array([rng.poisson(expected) + 100.0 for _ in range(16)], np.float32)
        acq = ISBI2013.replace(offset_adu=100.0, gain_adu_per_photon=1.0)
        for lam in LAMS:
            table = localize(cel0.Cel0Localizer(acq, lam=lam, device="cpu"), frames)
            brightest, near_sum, count = [], [], []
            for x, y in places:
                near = table[np.hypot(table["x [nm]"] - x * 100, table["y [nm]"] - y * 100) < 100]
                per_frame = near.groupby("frame")["intensity [photon]"]
                brightest.append(per_frame.max().median() / photons)
                near_sum.append(per_frame.sum().median() / photons)
                count.append(len(near) / len(frames))
            out[f"{photons:g} ph on {background:g}, lambda {lam:g}"] = {
                "brightest_share": round(float(np.mean(brightest)), 3), "sum_share": round(float(np.mean(near_sum)), 3),
                "within_100_nm": round(float(np.mean(count)), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "cel0_faint.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # (the counts are in the table)
    result = {"machine": machine(), "command": command(), "scenes": scenes(), "isolated": isolated()}
    print(f"{'scene':34} {'lambda':>7} {'locs/fr':>8} {'true/fr':>8} {'faint':>6} {'flagged':>8} {'warns':>6} "
          f"{'J50 %':>6} {'deep/fr':>8} {'ratio':>6}")
    for name, rows in result["scenes"].items():
        for r in rows:
            print(f"{name:34} {r['lam']:7.4g} {r['per_frame']:8.1f} {r['true_per_frame']:8.1f} "
                  f"{r['faint_share']:6.2f} {r['frames_flagged']:>8} {str(r['warned']):>6} {r['jaccard_50']:6.1f} "
                  f"{r['deepcel0_per_frame']:8.1f} {r['count_over_deepcel0']:6.2f}")
    print(pd.DataFrame(result["isolated"]).T.to_string())
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
