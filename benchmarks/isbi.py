"""All methods on the original ISBI 2013 high-density stack, scored against its ground truth.

    python benchmarks/isbi.py                                   # bundled DeepCEL0 only
    python benchmarks/isbi.py --deepstorm runs/deepstorm.safetensors --cel0 --frames 1-361

Prints a table per method (Jaccard at 50/100/150/250 nm, sensitivity, precision, RMSE,
efficiency, end-to-end frames/s) and writes benchmarks/results/isbi_original.json.
The same peak extraction (3 x 3 local maxima + centre of mass) is used for every map.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import IMAGES, RESULTS, command, machine, require_isbi, score_row, write_json

from napari_deepcel0.core.defaults import TOLERANCES_NM as TOLERANCES
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import NETWORK_READ_OUT, evaluate, format_scores
from napari_deepcel0.core.model_io import bundled_model_path
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.predict import DeepLocalizer, localize



def figures(tables: dict, gt_all, stack, frames) -> None:
    """Renderings of the whole stack per method (like the paper's Fig. 3) and Jaccard
    against tolerance. ``tables`` maps a name to (table, frame selection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from napari_deepcel0.core.render import render_histogram

    field = (stack.shape[1] * ISBI2013.pixel_size_nm, stack.shape[2] * ISBI2013.pixel_size_nm)
    numbers = parse_frame_selection(frames, len(stack))
    panels = {"widefield (sum of frames)": stack[numbers].sum(axis=0),
              "ground truth": render_histogram(select(gt_all, frames, len(stack)), field, 10.0)}
    labels = {name: name if sel == frames else f"{name} (frames {sel})" for name, (_, sel) in tables.items()}
    for name, (t, _) in tables.items():
        panels[labels[name]] = render_histogram(t, field, 10.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    for ax, (name, img) in zip(axes, panels.items()):
        img = ndimage.gaussian_filter(img, 1.0) if img.shape[0] > stack.shape[1] else img
        top = np.percentile(img[img > 0], 99.5) if np.any(img > 0) else 1
        ax.imshow(np.clip(img / top, 0, 1), cmap="hot", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(IMAGES / "isbi_renderings.png", dpi=100)
    plt.close(fig)
    tols = np.arange(10.0, 260.0, 10.0)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (t, sel) in tables.items():
        ax.plot(tols, [s.jaccard for s in evaluate(select(gt_all, sel, len(stack)), t, tols)], label=labels[name])
    ax.set(xlabel="tolerance [nm]", ylabel="Jaccard [%]", title="ISBI 2013 HD stack", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "isbi_jaccard_vs_tolerance.png", dpi=110)
    plt.close(fig)
    print(f"wrote {IMAGES / 'isbi_renderings.png'} and {IMAGES / 'isbi_jaccard_vs_tolerance.png'}")


def select(table, frames, n_total: int):
    """The rows of a localization table in a 1-based frame selection."""
    return table[table["frame"].isin(parse_frame_selection(frames, n_total) + 1)]


def record(results, name, gt_all, table, frames, n_total: int, title=None, **extra):
    """Score ``table`` against the ground truth of the same frames, print the table and
    store it in ``results[name]`` (with ``extra``)."""
    scores = evaluate(select(gt_all, frames, n_total), select(table, frames, n_total), TOLERANCES)
    print("\n" + (title or f"{name}:"))
    print(format_scores(scores))
    results[name] = {"frames": frames or f"1-{n_total}", **extra, "scores": [score_row(s) for s in scores]}


def run(name, model, stack, gt_all, frames, results, method="peaks"):
    """Localize the frames with ``model``, timed end to end, and record the scores."""
    t0 = time.perf_counter()
    table = localize(model, stack, frames=frames, method=method)
    seconds = time.perf_counter() - t0
    n = len(parse_frame_selection(frames, len(stack)))
    record(results, name, gt_all, table, frames, len(stack),
           title=f"{name}: {len(table)} localizations, {n} frames in {seconds:.1f} s ({n / seconds:.1f} frames/s)",
           frames_per_s=round(n / seconds, 2), n_localizations=len(table))
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deepcel0", default=str(bundled_model_path()), help="DeepCEL0 model (default: bundled)")
    p.add_argument("--deepstorm", help="Deep-STORM model file (optional)")
    p.add_argument("--cel0", action="store_true", help="also run CEL0-IRL1 (lambda from a sweep on 8 frames)")
    p.add_argument("--cel0-lam", type=float, help="CEL0 lambda (skip the sweep)")
    p.add_argument("--frames", default=None, help="1-based frame selection (default: all 361)")
    p.add_argument("--cel0-frames", default=None,
                   help="frames for CEL0 (default: as --frames); DeepCEL0 is also scored on them")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--compare-fp32", action="store_true",
                   help="also run DeepCEL0 in fp32 when --precision picks bf16 (the accuracy cost of bf16)")
    p.add_argument("--orientations", type=int, choices=(4, 8),
                   help="also run DeepCEL0 with orientation averaging (4 or 8 orientations)")
    p.add_argument("--out", default=str(RESULTS / "isbi_original.json"))
    p.add_argument("--no-figures", action="store_true", help="do not (over)write the figures in docs/images")
    args = p.parse_args()

    data = require_isbi()
    stack = read_stack(data / "frames.tif")
    gt_all = read_localizations(data / "ground_truth.csv")
    n_total = len(stack)
    results: dict = {}

    deep = DeepLocalizer(args.deepcel0, acquisition=ISBI2013, device=args.device, precision=args.precision)
    table = run("DeepCEL0", deep, stack, gt_all, args.frames, results)
    tables = {"DeepCEL0": (table, args.frames)}
    # the reference notebook's coordinates (x = col * p / L): no half-pixel shift
    shifted = table.copy()
    shifted[["x [nm]", "y [nm]"]] -= ISBI2013.fine_pixel_nm / 2
    record(results, "DeepCEL0 (no half-pixel shift)", gt_all, shifted, args.frames, n_total,
           title="DeepCEL0 without the half-pixel shift (reference notebook convention):")

    if args.compare_fp32 and deep.precision != "fp32":
        fp32 = DeepLocalizer(args.deepcel0, acquisition=ISBI2013, device=args.device, precision="fp32")
        run("DeepCEL0 (fp32)", fp32, stack, gt_all, args.frames, results)
        results["DeepCEL0"]["precision"] = deep.precision

    if args.orientations:
        averaged = DeepLocalizer(args.deepcel0, acquisition=ISBI2013, device=args.device, precision=args.precision,
                                 orientations=args.orientations)
        run(f"DeepCEL0 ({args.orientations} orientations)", averaged, stack, gt_all, args.frames, results)

    if args.deepstorm:
        ds = DeepLocalizer(args.deepstorm, acquisition=ISBI2013, device=args.device, precision=args.precision)
        tables["Deep-STORM"] = (run("Deep-STORM", ds, stack, gt_all, args.frames, results), args.frames)

    if args.cel0 or args.cel0_lam:
        cel0_frames = args.cel0_frames or args.frames
        from napari_deepcel0.core.cel0 import Cel0Localizer, lambda_sweep

        lam = args.cel0_lam
        if lam is None:
            t0 = time.perf_counter()
            sweep = lambda_sweep(stack, gt_all, ISBI2013, frames=cel0_frames, device=args.device)
            lam = sweep.best_lam
            print(f"\nCEL0 lambda sweep on frames {sweep.frames.tolist()}: best lambda {lam:.4g} "
                  f"(Jaccard@50 {sweep.best_score.jaccard:.2f} %) in {time.perf_counter() - t0:.0f} s")
            results["CEL0 sweep"] = sweep.to_dict()
        cel0 = Cel0Localizer(ISBI2013, lam=lam, device=args.device)
        tables["CEL0"] = (run(f"CEL0 (lambda {lam:.3g})", cel0, stack, gt_all, cel0_frames, results), cel0_frames)
        if cel0_frames != args.frames:  # the same frames for a like-for-like comparison
            for name in ("DeepCEL0", "Deep-STORM"):
                if name in tables:
                    record(results, f"{name} (frames {cel0_frames})", gt_all, tables[name][0], cel0_frames, n_total,
                           title=f"{name} on CEL0's frames {cel0_frames}:")

    if not args.no_figures:
        figures(tables, gt_all, stack, args.frames)

    out = write_json(
        Path(args.out),
        {"machine": machine(), "command": command(), "frames": args.frames or f"1-{n_total}",
         "read_out": NETWORK_READ_OUT, "results": results},
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
