"""Jaccard against noise level on the paper's Table 1 protocol (how noise-limited are we?).

    python benchmarks/snr_sweep.py [--deepcel0 MODEL ...] [--frames 1-40] \
        [--snrs 10 12 15 18 21 25 30] [--cel0-snrs 10 12 15 20 25] [--cel0-frames 1-12]

The frames are those of `paper_table1.py` (ISBI 2013 ground truth re-rendered through
Eq. (2), sigma 110 nm, white Gaussian noise at an SNR in dB by the paper's Eq. (14)), at
more noise levels than the paper's 10, 12 and 15 dB. For each level: DeepCEL0 (each
model given) and CEL0 (lambda picked per level as the paper does, from a shorter sweep)
at 50/100/150 nm. Set beside the paper's rows, it shows at which SNR our methods reach
the paper's numbers. Also prints how far apart two readings of "SNR" are on these frames:
Eq. (14)'s (mean square of the clean frame over the noise variance) and the common
"mean signal over noise standard deviation". Writes benchmarks/results/snr_sweep.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import RESULTS, command, machine, require_isbi, write_json
from paper_table1 import FRAME_SHAPE, PAPER, PAPER_ACQ, pixel_centred_truth, render_test, row

from napari_deepcel0.core.metrics import MATCHING_RULE, NETWORK_READ_OUT
from napari_deepcel0.core.io import read_localizations
from napari_deepcel0.core.model_io import bundled_model_path
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.predict import DeepLocalizer, localize
from napari_deepcel0.core.simulate import fine_grid_maps, forward_model_frames

PAPER_SNR = {"2b": 10.0, "3b": 12.0, "4b": 15.0}


def mean_vs_norm_db(gt) -> float:
    """10 log10(mean(clean)^2 / mean(clean^2)), averaged over the clean frames: how much
    lower the noise is when an SNR is read as mean signal / noise std instead of Eq. (14)."""
    n_frames = int(gt["frame"].max())
    clean = forward_model_frames(fine_grid_maps(gt, PAPER_ACQ, PAPER_ACQ.fine_shape(FRAME_SHAPE), n_frames),
                                 PAPER_ACQ, np.inf).astype(np.float64)
    return float(np.mean(10 * np.log10(clean.mean(axis=(1, 2)) ** 2 / (clean**2).mean(axis=(1, 2)))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deepcel0", nargs="+", default=[str(bundled_model_path())], help="model file(s)")
    p.add_argument("--frames", default="1-40", help="frames for DeepCEL0")
    p.add_argument("--snrs", type=float, nargs="+", default=[10, 12, 15, 18, 21, 25, 30])
    p.add_argument("--cel0-snrs", type=float, nargs="*", default=[10, 12, 15, 20, 25])
    p.add_argument("--cel0-frames", default="1-12")
    p.add_argument("--cel0-lams", type=int, default=8, help="lambdas in each sweep, log-spaced in [1e-3, 1]")
    p.add_argument("--sweep-frames", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "snr_sweep.json"))
    args = p.parse_args()

    gt_raw = read_localizations(require_isbi() / "ground_truth.csv")
    n_total = int(gt_raw["frame"].max())
    offset_db = mean_vs_norm_db(gt_raw)
    truth = pixel_centred_truth(gt_raw, PAPER_ACQ)
    deep_numbers = parse_frame_selection(args.frames, n_total) + 1
    cel0_numbers = parse_frame_selection(args.cel0_frames, n_total) + 1
    n_render = int(max(deep_numbers.max(), cel0_numbers.max()))
    gt_raw = gt_raw[gt_raw["frame"] <= n_render]
    truth = truth[truth["frame"] <= n_render]
    models = {Path(m).stem: DeepLocalizer(m, acquisition=PAPER_ACQ, device=args.device) for m in args.deepcel0}

    results: dict = {}
    for snr in sorted(set(args.snrs) | set(args.cel0_snrs)):
        t0 = time.perf_counter()
        frames = render_test(gt_raw, n_render, (snr, snr), seed=args.seed)
        res = results.setdefault(f"{snr:g}", {})
        if snr in args.snrs:
            for name, model in models.items():
                res[name] = row(truth, localize(model, frames, frames=deep_numbers.tolist()), deep_numbers)
        if snr in args.cel0_snrs:
            from napari_deepcel0.core.cel0 import Cel0Localizer, lambda_sweep

            sweep = lambda_sweep(frames, truth, PAPER_ACQ, frames=cel0_numbers.tolist(), background=None,
                                 n_lams=args.cel0_lams, n_frames=args.sweep_frames, device=args.device)
            cel0 = Cel0Localizer(PAPER_ACQ, lam=sweep.best_lam, background=None, device=args.device)
            res["CEL0"] = row(truth, localize(cel0, frames, frames=cel0_numbers.tolist()), cel0_numbers,
                              sweep.best_lam)
        print(f"SNR {snr:g} dB done in {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"\n{'SNR dB':>6} {'method':28} {'J50':>6} {'J100':>6} {'J150':>6} {'sens50':>6} {'RMSE':>5}")
    for snr, res in results.items():
        for name, r in res.items():
            print(f"{snr:>6} {name:28} {r['jaccard_50']:6.2f} {r['jaccard_100']:6.2f} {r['jaccard_150']:6.2f} "
                  f"{r['sensitivity_50']:6.2f} {r['rmse_nm'] or float('nan'):5.1f}")
    print("\npaper (Table 1):")
    for test, snr in PAPER_SNR.items():
        for name in ("DeepCEL0", "CEL0 best"):
            v = PAPER[test][name]
            print(f"{snr:>6g} {name:28} {v[0]:6.2f} {v[1]:6.2f} {v[2]:6.2f} {v[3]:6.2f}")
    print(f"\nmean^2 / mean square of the clean frames: {offset_db:.2f} dB (an SNR read as mean signal over "
          f"noise std puts the noise {-offset_db:.1f} dB below Eq. (14)'s at the same number)")
    out = write_json(Path(args.out), {
        "machine": machine(), "command": command(),
        "protocol": "paper_table1.py's frames (Eq. (2), sigma 110 nm, white Gaussian noise at the given SNR, "
                    "Eq. (14)); one molecule per occupied fine pixel",
        "deep_frames": args.frames, "cel0_frames": args.cel0_frames,
        "matching": MATCHING_RULE,
        "read_out": NETWORK_READ_OUT,
        "cel0_sweep": {"lams": args.cel0_lams, "range": [1e-3, 1.0], "frames": args.sweep_frames},
        "snr_db": results,
        "mean_squared_over_mean_square_db": round(offset_db, 3),
        "paper": {f"{snr:g}": {name: dict(zip(("jaccard_50", "jaccard_100", "jaccard_150", "sensitivity_50"),
                                              PAPER[test][name][:4])) for name in ("DeepCEL0", "CEL0 best")}
                  for test, snr in PAPER_SNR.items()},
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
