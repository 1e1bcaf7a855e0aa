"""The paper's close-molecule Tests 1a-3a (Sec. 4.2, Fig. 1): line profiles and resolution.

A 512 x 512 fine grid of 25 nm pixels holds two molecules 25 nm (1a) or 75 nm (2a) apart
on column 256, or four on a circle of radius 125 nm (3a); the 128 x 128 camera frame is
rendered through Eq. (2) (sigma 110 nm, L = 4) with white Gaussian noise at --snr dB.
Each method's map is shown in the central region of interest (x10 zoom, as in the
paper's figure), with the line profile along column 256 (GT, NN upsampling, DeepCEL0).

    python benchmarks/close_pairs.py [--deepstorm MODEL] [--snr 20] [--cel0-lams 1e-3 1e-2]

A test counts as *resolved* by a method when it returns exactly as many localizations
within 250 nm of the centre as there are molecules and each molecule has one within half
its nearest-neighbour distance. Writes docs/images/close_pairs_<test>.png and
benchmarks/results/close_pairs.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import IMAGES, RESULTS, command, machine, write_json  # noqa: E402

from napari_deepcel0.core.acquisition import Acquisition, sigma_to_fwhm  # noqa: E402
from napari_deepcel0.core.localize import extract_localizations  # noqa: E402
from napari_deepcel0.core.metrics import match_points  # noqa: E402
from napari_deepcel0.core.model_io import bundled_model_path  # noqa: E402
from napari_deepcel0.core.predict import DeepLocalizer  # noqa: E402
from napari_deepcel0.core.simulate import fine_grid_maps, forward_model_frames, paper_test_scene  # noqa: E402

ACQ = Acquisition(pixel_size_nm=100.0, fwhm_nm=sigma_to_fwhm(110.0), upsampling=4)
CENTRE_PX = 256
HALF_ROI = 16  # fine pixels each side of the centre in the zoomed panels


def resolved(table, truth) -> tuple[bool, int]:
    xy = truth[["x [nm]", "y [nm]"]].to_numpy()
    centre = np.array([CENTRE_PX + 0.5, CENTRE_PX + 0.5]) * ACQ.fine_pixel_nm
    est = table[["x [nm]", "y [nm]"]].to_numpy()
    near = est[np.hypot(*(est - centre).T) < 250.0] if len(est) else est
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    tol = 0.5 * np.min(d[d > 0])
    gi, _ = match_points(xy, near, tol)
    return bool(len(near) == len(xy) and len(gi) == len(xy)), int(len(near))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deepcel0", default=str(bundled_model_path()))
    p.add_argument("--deepstorm")
    p.add_argument("--snr", type=float, default=20.0, help="SNR in dB (Eq. 14) of the rendered frames")
    p.add_argument("--cel0-lams", type=float, nargs="*", default=[1e-3, 1e-2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "close_pairs.json"), help="JSON to write (figures: docs/images)")
    args = p.parse_args()
    deep = {"DeepCEL0": DeepLocalizer(args.deepcel0, acquisition=ACQ, precision="fp32")}
    if args.deepstorm:
        deep["Deep-STORM"] = DeepLocalizer(args.deepstorm, acquisition=ACQ, precision="fp32")
    results = {}
    for test in ("1a", "2a", "3a"):
        truth = paper_test_scene(test)
        gt_map = fine_grid_maps(truth, ACQ, (512, 512), 1)
        frame = forward_model_frames(gt_map, ACQ, args.snr, seed=args.seed)
        panels = {"GT": gt_map[0], "NN x4": np.kron(frame[0], np.ones((4, 4)))}
        res = {}
        for name, model in deep.items():
            maps, scale = model.maps(frame)
            table = extract_localizations(maps, model.acquisition, model.default_threshold(), mass_scale=scale)
            ok, n = resolved(table, truth)
            res[name] = {"resolved": ok, "localizations_near_centre": n}
            panels[name] = maps[0].cpu().numpy()
        if args.cel0_lams:
            from napari_deepcel0.core.cel0 import Cel0Localizer

            for lam in args.cel0_lams:
                cel0 = Cel0Localizer(ACQ, lam=lam, background=None)
                maps, scale = cel0.maps(frame)
                table = extract_localizations(maps, ACQ, 0.0, mass_scale=scale, mass_column="intensity [photon]")
                ok, n = resolved(table, truth)
                res[f"CEL0 lam {lam:g}"] = {"resolved": ok, "localizations_near_centre": n}
                panels[f"CEL0 lam {lam:g}"] = maps[0].cpu().numpy()
        results[test] = res
        print(test, {k: v["resolved"] for k, v in res.items()})

        roi = slice(CENTRE_PX - HALF_ROI, CENTRE_PX + HALF_ROI + 1)
        fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.3 * (len(panels) + 1), 2.8))
        rows = np.arange(roi.start, roi.stop)
        for name in ("GT", "NN x4", "DeepCEL0"):
            prof = panels[name][roi, CENTRE_PX]
            axes[0].plot((rows - CENTRE_PX) * ACQ.fine_pixel_nm, prof / max(prof.max(), 1e-12), label=name)
        axes[0].set(title=f"Test {test}: column 256", xlabel="y - centre [nm]", ylabel="normalised")
        axes[0].legend(fontsize=6)
        for ax, (name, img) in zip(axes[1:], panels.items()):
            crop = img[roi, roi]
            ax.imshow(crop / max(crop.max(), 1e-12), cmap="hot", vmin=0, vmax=1, interpolation="nearest")
            verdict = res.get(name, {}).get("resolved")
            ax.set_title(name + ("" if verdict is None else (" (resolved)" if verdict else " (not resolved)")),
                         fontsize=7)
            ax.axis("off")
        fig.tight_layout()
        out = IMAGES / f"close_pairs_{test}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        print(f"wrote {out}")
    path = write_json(Path(args.out), {"machine": machine(), "command": command(),
                                                     "snr_db": args.snr, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
