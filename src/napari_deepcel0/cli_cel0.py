"""The ``deepcel0 cel0`` subcommand: CEL0-IRL1 localization of a stack, or the
paper's lambda sweep against ground truth.

``add_parser(subparsers)`` registers the subcommand (``func=cmd_cel0``); ``cmd_cel0(args)``
returns the exit status and raises ValueError/OSError/RuntimeError for input errors,
which :func:`napari_deepcel0.cli.main` reports as one line with exit status 2. The
shared helpers (progress bar, acquisition options, outputs) are imported from
:mod:`napari_deepcel0.cli` inside the functions, so either module may import the other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

# torch-free (.core.cel0 would load torch for every deepcel0 command, --help included)
from .core.defaults import CEL0_LAM as DEFAULT_LAM
from .core.defaults import CEL0_MAX_INNER, CEL0_MAX_OUTER, CEL0_TOL
from .core.defaults import CEL0_METHOD as DEFAULT_METHOD
from .core.defaults import CEL0_READINGS as READINGS
from .core.defaults import CEL0_THRESHOLD as DEFAULT_THRESHOLD
from .core.defaults import READ_METHODS as METHODS
from .core.defaults import SWEEP_FRAMES, SWEEP_LAM_RANGE, SWEEP_LAMS, SWEEP_TOL_NM


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``cel0`` on an ``argparse`` subparsers object; returns its parser."""
    from .cli import (_add_acquisition_args, _outlier_pixels_arg, add_render_args, non_negative_float, positive_float,
                      positive_int, seed, tolerance_nm)

    p = subparsers.add_parser(
        "cel0", help="localize a TIFF stack with CEL0-IRL1 sparse deconvolution (or sweep lambda)",
        description="CEL0-IRL1 (the DeepCEL0 paper's model-based baseline): subtract each frame's background, "
                    "divide it by its maximum, solve min 0.5||S_L K x - y||^2 + Phi_CEL0(x), x >= 0, and read "
                    "molecules off the fine-grid map. With --out, write a ThunderSTORM CSV; with --sweep GT.csv, "
                    "score a range of lambdas on a few frames (Jaccard at 50 nm) and print the best.")
    p.add_argument("stack", metavar="STACK.tif", help="TIFF stack of camera frames (ADU)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="LOCS.csv", help="localize and write a ThunderSTORM CSV here")
    mode.add_argument("--sweep", metavar="GT.csv",
                      help="instead of localizing, sweep lambda against this ground truth (ThunderSTORM/ISBI CSV)")
    p.add_argument("--lam", type=float, default=DEFAULT_LAM,
                   help=f"CEL0 lambda on max-normalised frames, > 0 (default {DEFAULT_LAM:g}; ignored by --sweep)")
    p.add_argument("--frames", metavar="SEL",
                   help="1-based frame selection, e.g. 1-20 or 1,5,10-20 (default all; --sweep draws from it)")
    p.add_argument("--max-outer", type=positive_int, default=CEL0_MAX_OUTER, metavar="N",
                   help=f"IRL1 (outer) iteration cap (default {CEL0_MAX_OUTER})")
    p.add_argument("--max-inner", type=positive_int, default=CEL0_MAX_INNER, metavar="N",
                   help=f"FISTA (inner) iteration cap per outer iteration (default {CEL0_MAX_INNER})")
    # --rel-tol: a relative tolerance, not the matching tolerance in nm that --tol is for evaluate and localize
    # (--tol still works; a review found the two easy to mix up)
    p.add_argument("--rel-tol", "--tol", dest="tol", type=float, default=CEL0_TOL, metavar="T",
                   help=f"solver tolerance, relative: stop a loop when ||x_k - x_k-1|| / ||x_k-1|| < T (default "
                        f"{CEL0_TOL:g}; also --tol, its older name); the matching tolerance of --sweep is --match-tol "
                        "(nm)")
    p.add_argument("--background", default="auto", metavar="auto|none|ADU",
                   help="per-frame background to subtract: auto (25th percentile of the frame), none, "
                        "or a level in ADU (default auto)")
    p.add_argument("--threshold", type=non_negative_float, metavar="T",
                   help=f"detection threshold on the normalised map (default {DEFAULT_THRESHOLD:g}: every "
                        "positive value)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="map -> molecules: peaks (3x3 maxima + centre of mass, default) or components "
                        "(connected pixels merged)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="frames solved together (default 4 on CPU, 512 on CUDA)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    p.add_argument("--gain", type=positive_float, metavar="ADU/PHOTON",
                   help="camera gain, to report intensities in photons (default 1)")
    add_render_args(p, " (with --out)")
    g = p.add_argument_group("lambda sweep (with --sweep)")
    g.add_argument("--lams", type=positive_int, default=SWEEP_LAMS, metavar="K",
                   help=f"number of lambdas (default {SWEEP_LAMS})")
    g.add_argument("--lam-range", type=positive_float, nargs=2, default=SWEEP_LAM_RANGE, metavar=("LOW", "HIGH"),
                   help="lambdas are log-spaced in [LOW, HIGH] (default {:g} {:g})".format(*SWEEP_LAM_RANGE))
    g.add_argument("--sweep-frames", type=positive_int, default=SWEEP_FRAMES, metavar="N",
                   help=f"frames drawn at random from --frames (default {SWEEP_FRAMES})")
    g.add_argument("--seed", type=seed, default=0, help="random seed for the frame draw (default 0)")
    g.add_argument("--match-tol", type=tolerance_nm, default=SWEEP_TOL_NM, metavar="NM",
                   help=f"matching tolerance for the Jaccard index (default {SWEEP_TOL_NM:g} nm)")
    g.add_argument("--json", action="store_true", help="print the sweep as one JSON object")
    _outlier_pixels_arg(p)
    _add_acquisition_args(p, stack=True)
    p.set_defaults(func=cmd_cel0)
    return p


#: the options of --sweep alone and their defaults (``dest``: flag, default): given with
#: --out they were ignored without a word (``--json`` printed no JSON)
_SWEEP_OPTIONS = {"lams": ("--lams", SWEEP_LAMS), "lam_range": ("--lam-range", SWEEP_LAM_RANGE),
                  "sweep_frames": ("--sweep-frames", SWEEP_FRAMES), "seed": ("--seed", 0),
                  "match_tol": ("--match-tol", SWEEP_TOL_NM), "json": ("--json", False)}


def _sweep_options_given(args) -> list[str]:
    """The flags of :data:`_SWEEP_OPTIONS` set to other than their defaults."""
    def value(v):
        return tuple(v) if isinstance(v, list) else v
    return [flag for dest, (flag, default) in _SWEEP_OPTIONS.items() if value(getattr(args, dest)) != value(default)]


def cmd_cel0(args) -> int:
    """Run ``deepcel0 cel0`` with parsed ``args``; returns the exit status."""
    from .cli import _open_stack_and_acq, check_outputs
    from .core.acquisition import Acquisition

    if args.sweep and args.render:  # it was ignored: no rendering, no word
        raise ValueError("--render goes with --out; a --sweep writes no localizations to render")
    if args.out and (given := _sweep_options_given(args)):
        raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --sweep; --out localizes "
                         f"with one lambda (--lam)")
    stack, acq = _open_stack_and_acq(args, Acquisition(), base_is_models=False)
    if args.sweep:
        return _sweep(args, stack, acq)
    check_outputs(args, stack, acq)
    return _localize(args, stack, acq)


def _localize(args, stack, acq) -> int:
    from .cli import StreamProgress, _run_stream, _write_outputs, data_text, note_if_nothing_found, run_protocol
    from .core.cel0 import Cel0Localizer

    progress = StreamProgress(args, stack, "cel0")

    def solver_progress(p):
        progress.within_batch(progress.done + p.total - p.active,
                              f"batch: outer iteration {p.outer}, {p.active} frame(s) iterating")

    model = Cel0Localizer(acq, lam=args.lam, max_outer=args.max_outer, max_inner=args.max_inner, tol=args.tol,
                          background=args.background, device=args.device, batch_size=args.batch_size,
                          progress=solver_progress)
    print(f"CEL0-IRL1: lambda {model.settings.lam:g}, up to {args.max_outer} x {args.max_inner} iterations, "
          f"tol {args.tol:g}, background {model.background}; {acq.describe()}; {model.device}", file=sys.stderr)
    print(f"data: {data_text(stack, acq)}", file=sys.stderr)
    if model.settings.lam == DEFAULT_LAM:  # it suits dense frames only (docs/cel0.md, "Sparse frames")
        print(f"note: lambda {DEFAULT_LAM:g} is the best of ISBI 2013's high density (about 5.5 molecules/um^2); "
              "sparser frames need a larger one (0.5/um^2: Jaccard 7.7 % at 50 nm, 48 % at 0.01): choose it with "
              "--sweep GT on frames of your data", file=sys.stderr)
    records = []

    def on_batch(result):
        records.extend(model.last_records)

    t0 = time.perf_counter()
    table = _run_stream(model, stack, args, progress, on_batch=on_batch, batch_size=model.batch_size)
    seconds = time.perf_counter() - t0
    outer = np.array([r.outer_iterations for r in records])
    inner = np.array([r.inner_iterations for r in records])
    n_conv = sum(r.converged for r in records)
    print(f"converged: {n_conv}/{len(records)} frames; outer iterations median {np.median(outer):.0f} "
          f"(max {outer.max()}), inner iterations per frame median {np.median(inner):.0f} (max {inner.max()})",
          file=sys.stderr)
    note_background_only(model.background_only_numbers, len(records), table)
    s = model.settings
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    note_if_nothing_found(table, threshold, "the normalised map")
    settings = {"lambda": s.lam, "max_outer": s.max_outer, "max_inner": s.max_inner, "tol": s.tol,
                "background": model.background, "threshold": threshold, "threshold_is_default": args.threshold is None,
                "read_out": args.method,
                "device": str(model.device), "batch_size": model.batch_size, "frames_converged": int(n_conv),
                **model.protocol_counts()}
    _write_outputs(args, table, stack, acq, run_protocol(args, stack, acq, table, "CEL0-IRL1", settings, seconds))
    return 0


def note_background_only(numbers: list[int], total: int, table) -> None:
    """Say, once the run has ended, which of the ``total`` frames showed nothing brighter
    than their noise (1-based ``numbers``; core.cel0's BackgroundOnlyWarning said so at the
    first) and how many of the table's localizations are theirs: noise, not molecules."""
    if not numbers:
        return
    from .core.columns import FRAME

    noise = int(table[FRAME].isin(numbers).sum())
    print(f"note: {len(numbers)} of {total} frame{'' if total == 1 else 's'} ({_ranges(numbers)}) showed only "
          f"background and noise; their {noise} localization{'' if noise == 1 else 's'} fit the noise (CEL0 scales "
          "each frame to its maximum): leave those frames out (--frames) or drop their rows", file=sys.stderr)


def _ranges(numbers: list[int], most: int = 4) -> str:
    """Sorted frame numbers as ``"frames 3-5, 9"`` (the first ``most`` ranges, then "...")."""
    from .core.protocol import frame_ranges_text

    spans = frame_ranges_text(numbers).split(",")
    more = ", ..." if len(spans) > most else ""
    return ("frame " if len(numbers) == 1 else "frames ") + ", ".join(spans[:most]) + more


def _sweep(args, stack, acq) -> int:
    from .cli import ProgressBar, _read_ground_truth
    from .core.cel0 import lambda_sweep

    gt = _read_ground_truth(args, acq, stack.frame_shape, path=args.sweep)
    bar = ProgressBar(args.lams, "lambda sweep")

    def progress(done, total, lam, s):
        bar.update(done, f"lambda {lam:.3g}: Jaccard {s.jaccard:.1f} %", force=True)

    result = lambda_sweep(stack, gt, acq, frames=args.frames, n_lams=args.lams, lam_range=tuple(args.lam_range),
                          n_frames=args.sweep_frames, seed=args.seed, tol_nm=args.match_tol, method=args.method,
                          threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                          max_outer=args.max_outer, max_inner=args.max_inner, tol=args.tol,
                          background=args.background, device=args.device, progress=progress,
                          fix_outlier_pixels=not args.keep_outlier_pixels)
    bar.close()
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"frames {', '.join(str(f) for f in result.frames)}; Jaccard at {result.tol_nm:g} nm "
          f"({result.method}; other readings for comparison); {result.seconds:.0f} s")
    others = [m for m in READINGS if m != result.method]
    print(f"  {'lambda':>9} {'Jaccard%':>8} {'sens%':>6} {'prec%':>6} {'RMSE nm':>7} {'TP':>5} {'FP':>5} {'FN':>5}"
          + "".join(f" {m + '%':>11}" for m in others))
    for i, lam in enumerate(result.lams):
        s = result.scores[result.method][i]
        mark = "*" if i == result.best_index() else " "
        print(f"{mark} {lam:9.4g} {s.jaccard:8.2f} {s.sensitivity:6.2f} {s.precision:6.2f} {s.rmse_nm:7.2f} "
              f"{s.tp:5d} {s.fp:5d} {s.fn:5d}" + "".join(f" {result.scores[m][i].jaccard:11.2f}" for m in others))
    best = result.best_score
    print(f"best lambda: {result.best_lam:.4g} (Jaccard {best.jaccard:.2f} % at {result.tol_nm:g} nm, "
          f"RMSE {best.rmse_nm:.1f} nm)" + (f"; {result.edge_note} (--lam-range)" if result.edge_note else ""))
    return 0
