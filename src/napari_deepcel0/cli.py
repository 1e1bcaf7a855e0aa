"""The ``deepcel0`` command line: simulate, train, localize, cel0, evaluate, demo.

Conventions shared by every subcommand: lengths in nm, frames 1-based (``--frames
1-20``), localizations read and written as ThunderSTORM CSV, outputs written
atomically (a failed or interrupted run leaves no half-written file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cli_cel0 import add_parser as add_cel0_parser
from .core.acquisition import Acquisition
from .core.defaults import FRAME_RANGE_FLOOR, MAX_DENSITY_PER_UM2, READ_METHODS
from .core.defaults import TOLERANCES_NM as DEFAULT_TOLERANCES_NM
from .core.memory import NotEnoughMemory, check_fits_in_memory
from .core.progress import counted, rate_text

#: the default tolerances as --help writes them
TOLERANCES_TEXT = " ".join(f"{t:g}" for t in DEFAULT_TOLERANCES_NM)

EXIT_ERROR = 2
#: errors reported as one line, without Python's traceback unless ``--debug`` is given
#: (every input error of the package is a ValueError subclass; OSError for files;
#: RuntimeError for devices); numpy, pandas and torch raise these types for bugs too
USER_ERRORS = (ValueError, OSError, RuntimeError)


# ============================================================== helpers
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (0, negative, nan, inf are refused at once)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def tolerance_nm(text: str) -> float:
    """argparse type: a matching tolerance in nm, at least 1 (``0.05``, 50 nm typed in um,
    scored 0 % without a word)."""
    from .core.metrics import small_tolerance_message

    try:
        value = positive_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a distance in nm, got {text!r}") from None
    small = small_tolerance_message(value)
    if small:
        raise argparse.ArgumentTypeError(small)
    return value


def tolerances_nm(text: str) -> float:
    """argparse type of an option of several tolerances: :func:`tolerance_nm`, which names
    a file given after them (argparse's trap: they take every word that follows)."""
    try:
        return tolerance_nm(text)
    except argparse.ArgumentTypeError as exc:
        if re.search(r"[/\\]|\.[A-Za-z]\w*$", text):
            raise argparse.ArgumentTypeError(f"{exc} (a file? name it before the tolerances: they take every word "
                                             "after them)") from None
        raise


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def emitter_density(text: str) -> float:
    """argparse type: emitters per um^2, a number from 0 to :data:`MAX_DENSITY_PER_UM2`."""
    value = non_negative_float(text)
    if value > MAX_DENSITY_PER_UM2:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_DENSITY_PER_UM2:g} emitters per um^2 (one per 100 x "
                                         f"100 nm), got {text}")
    return value


def positive_emitter_density(text: str) -> float:
    """argparse type: :func:`emitter_density` above 0 (the demo scores its localizations)."""
    value = emitter_density(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def seed(text: str) -> int:
    """argparse type: a random seed, a whole number >= 0 (numpy's message named no flag)."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 4294967295, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


class ProgressBar:
    """A one-line progress bar on stderr (a line per update when not a terminal)."""

    def __init__(self, total: int, label: str, stream=None, every_s: float = 0.5):
        self.total, self.label = max(int(total), 1), label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every_s = every_s if self.tty else 10.0
        self._last = 0.0

    def update(self, done: int, info: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s and done < self.total:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = f"{self.label} [{bar}] {done}/{self.total} {info}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


#: the acquisition flags and the :class:`Acquisition` setting each one sets
ACQUISITION_FLAGS = (("pixel_size", "pixel_size_nm"), ("fwhm", "fwhm_nm"), ("upsampling", "upsampling"),
                     ("offset", "offset_adu"), ("gain", "gain_adu_per_photon"), ("read_noise", "read_noise_adu"))


def _acquisition(args, defaults: Acquisition | None = None, stack_pixel_nm: float | None = None) -> Acquisition:
    """``defaults`` (else :class:`Acquisition`'s) with the stack's pixel size and the flags
    given. A setting out of range is refused naming the flags that set it (``--offset:
    camera offset must be >= 0 ADU, got -5``); the message named none, so a user of
    ``--offset -5`` read of a camera offset among six flags and a model's or file's settings."""
    from .core.acquisition import AcquisitionError

    base = defaults or Acquisition()
    changes, flags = {}, {}
    if stack_pixel_nm is not None:
        changes["pixel_size_nm"] = stack_pixel_nm
    for arg, key in ACQUISITION_FLAGS:
        value = getattr(args, arg, None)
        if value is not None:
            changes[key], flags[key] = value, "--" + arg.replace("_", "-")
    try:
        return base.replace(**changes)
    except AcquisitionError as exc:
        named = [flag for key, flag in flags.items() if key in exc.fields]
        if not named:  # from the model's, the file's or the defaults alone
            raise
        raise AcquisitionError(f"{', '.join(named)}: {exc}", *exc.fields) from None


def _orientations_arg(p) -> None:
    p.add_argument("--orientations", type=int, choices=(1, 4, 8), default=1,
                   help="average the maps of the frame's 4 flips or 8 flips and turns for the sub-pixel "
                        "positions in crowds (4 or 8 times slower; ISBI 2013: RMSE 24.6 -> 24.1 nm; worse on "
                        "sparse frames; default 1: off)")


def _averaging_text(orientations: int) -> str:
    """For the log lines of localize and demo: how positions are refined."""
    return f", positions averaged over {orientations} orientations" if orientations > 1 else ""


def _add_acquisition_args(p, with_camera: bool = False, model: bool = False, stack: bool = False,
                          pixel_help: str | None = None, fine_tune: bool = False, with_fwhm: bool = True) -> None:
    """The acquisition flags; their help names the defaults: the model's settings when
    ``model`` (localize), else :class:`Acquisition`'s (after the ``--init-from`` model's
    when ``fine_tune``), and for the pixel size the stack's metadata first when the
    command reads a stack. ``with_fwhm`` False leaves out --fwhm, for a command that does
    not use the PSF (evaluate listed it, and it changed no score)."""
    d = Acquisition()

    def default(value: float, unit: str) -> str:
        if model:
            return "(default: the model's)"
        if fine_tune:
            return f"(default: the --init-from model's, else {value:g}{unit})"
        return f"(default {value:g}{unit})"

    pixel = ("(default: the stack's ImageJ/OME metadata, else " + ("the model's)" if model else f"{d.pixel_size_nm:g})")
             if stack else default(d.pixel_size_nm, ""))
    g = p.add_argument_group("acquisition")
    g.add_argument("--pixel-size", type=positive_float, metavar="NM",
                   help=pixel_help or f"camera pixel size in nm {pixel}")
    if with_fwhm:
        g.add_argument("--fwhm", type=positive_float, metavar="NM",
                       help=f"PSF FWHM in nm (sigma = FWHM / 2.3548) {default(d.fwhm_nm, '')}")
    g.add_argument("--upsampling", type=positive_int, metavar="L",
                   help=f"fine-grid upsampling factor L {default(d.upsampling, '')}")
    if with_camera:
        g.add_argument("--offset", type=finite_float, metavar="ADU",
                       help=f"camera offset (ADU) {default(d.offset_adu, '')}")
        g.add_argument("--gain", type=positive_float, metavar="ADU/PHOTON",
                       help=f"camera gain {default(d.gain_adu_per_photon, '')}")
        g.add_argument("--read-noise", type=non_negative_float, metavar="ADU",
                       help=f"read noise std (ADU) {default(d.read_noise_adu, '')}")


def _outlier_pixels_arg(p) -> None:
    p.add_argument("--keep-outlier-pixels", action="store_true",
                   help="do not replace hot and dead pixels (isolated ones, zero-padded borders), nor dim objects "
                        "far brighter than the molecules (fiducial beads), before localizing (done by default: one "
                        "such pixel or object spoils its frame's min/max scaling)")


def _device_args(p) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 where the hardware computes it natively, else fp32")


def _print_scores(scores, as_json: bool) -> None:
    from .core.metrics import format_scores

    if as_json:
        for s in scores:  # every field of the Score, but a specificity that was not computed
            print(json.dumps({k: v for k, v in s.to_dict().items() if k != "specificity" or v is not None}))
    else:
        print(format_scores(scores))


# ============================================================ simulate
def _camera_counts(frames: np.ndarray) -> np.ndarray:
    """Simulated ADU as a 16-bit camera records them (clipped to 0..65535), with a warning
    naming how many pixels the clipping changed: the ground truth then no longer
    describes those pixels (a high --offset or --gain saturates the camera)."""
    low, high = int((frames < 0).sum()), int((frames > 65535).sum())
    if low or high:
        share = 100.0 * (low + high) / frames.size
        warnings.warn(f"{low + high} pixel(s) ({share:.3g} %) fell outside a 16-bit camera's 0..65535 ADU "
                      f"({high} above, {low} below) and were clipped; lower --offset, --gain or --photons")
    return np.clip(frames, 0, 65535).astype(np.uint16)


#: what ``deepcel0 simulate`` writes in its folder: the stack, its ground truth, its acquisition
SIMULATE_FILES = ("frames.tif", "ground_truth.csv", "acquisition.json")


def cmd_simulate(args) -> int:
    from .core import simulate as sim
    from .core.outputs import all_or_nothing, atomic_write, output_folder, write_thunderstorm_csv, write_tiff

    acq = _acquisition(args)
    noise = (  # checked first: a bad range left an empty --out folder behind
        sim.GaussianSNRNoise((args.snr, args.snr)) if args.snr is not None
        else sim.CameraNoise(background_photons=tuple(args.background), quantize=True)
    )
    photons = sim.PhotonModel(args.photons[0], args.photons[1], 0.15)
    check_fits_in_memory(sim.simulation_bytes(args.frames, (args.size, args.size), args.density, acq),
                         f"{args.frames} frame(s) of {args.size} x {args.size} pixels at "
                         f"{args.density:g} emitters/um^2",
                         "use fewer or smaller frames (--frames, --size) or a lower --density")
    # the library's NoEmittersWarning names Python's arguments: said below in the command's terms
    # (main's catch_warnings ends the filter with the command)
    warnings.filterwarnings("ignore", category=sim.NoEmittersWarning)
    # before the simulation: a wrong --out fails at once
    with output_folder(args.out, files=SIMULATE_FILES) as out:
        frames, emitters = sim.simulate_stack(
            n_frames=args.frames, shape=(args.size, args.size), density_per_um2=args.density,
            structure=args.structure, acq=acq, photons=photons, noise=noise, seed=args.seed,
        )
        data = frames if args.snr is not None else _camera_counts(frames)
        text = json.dumps(acq.to_dict(), indent=2) + "\n"
        stack_file, truth_file, acquisition_file = (out / name for name in SIMULATE_FILES)
        with all_or_nothing():  # a stack, its ground truth and its acquisition, or none of them
            write_tiff(stack_file, data, pixel_size_nm=acq.pixel_size_nm)
            write_thunderstorm_csv(truth_file, emitters)
            atomic_write(acquisition_file, lambda tmp: Path(tmp).write_text(text))
    dtype = frames.dtype if args.snr is not None else "uint16"
    print(f"wrote {stack_file} ({args.frames} frames of {args.size}x{args.size}, {dtype})")
    print(f"wrote {truth_file} ({len(emitters)} emitters, {len(emitters) / args.frames:.1f} per frame)")
    expected = sim.expected_emitters(args.density, acq.field_nm((args.size, args.size)), args.frames)
    if len(emitters) == 0 and 0 < expected < 1:  # (the library's NoEmittersWarning's rule)
        print(f"note: --density {args.density:g} per um^2 expects {expected:.2g} molecules in all on {args.frames} "
              f"frame(s) of {args.size} x {args.size} pixels of {acq.pixel_size_nm:g} nm: none was placed; --density "
              "is per square micrometre (raise it, or --size or --frames)", file=sys.stderr)
    return 0


# ============================================================ evaluate
def cmd_evaluate(args) -> int:
    from .core.localization_csv import read_localizations
    from .core.metrics import evaluate

    est = read_localizations(args.locs, pixel_size_nm=args.pixel_size)
    gt = read_localizations(args.gt, pixel_size_nm=args.pixel_size)
    grid = None
    if args.frame_shape:
        from .core.metrics import outside_field_message

        acq = _acquisition(args)
        grid = (acq.fine_pixel_nm, acq.fine_shape(tuple(args.frame_shape)))
        outside = outside_field_message(gt, acq.field_nm(tuple(args.frame_shape)))
        if outside:  # spec% counts only the fine pixels of --frame-shape (83 % for 2 x 2 on 32 x 32 frames)
            warnings.warn(f"--frame-shape {args.frame_shape[0]} {args.frame_shape[1]} (rows, columns) at "
                          f"{acq.pixel_size_nm:g} nm: {outside}")
    if args.frames:
        _warn_of_frames_past_the_files(gt, est, args.frames)
    # without --frames, evaluate() warns when the localizations cover fewer frames than the ground truth
    scores = evaluate(gt, est, args.tol, grid=grid, frames=args.frames or None, progress=_scoring_progress(gt, est))
    _print_scores(scores, args.json)
    return 0


#: tables of more rows than this (both together) show the scoring's progress: 2 million
#: against 2 million took about a minute without a word (a review)
EVALUATE_PROGRESS_ROWS = 200_000


def _scoring_progress(gt, est):
    """A progress callback for :func:`~.core.metrics.evaluate` on large tables (on stderr),
    else None."""
    if len(gt) + len(est) <= EVALUATE_PROGRESS_ROWS:
        return None
    bar = None

    def progress(done: int, total: int, tol_nm: float) -> None:
        nonlocal bar
        bar = bar or ProgressBar(total, f"scoring {len(est):,} localizations against {len(gt):,} molecules")
        bar.update(done, f"at {tol_nm:g} nm" if done < total else "done", force=True)
        if done == total:
            bar.close()

    return progress


def _warn_of_frames_past_the_files(gt, est, selection: str) -> None:
    """Warn when ``--frames`` selects frames past the last one of both tables: evaluate
    scores them as frames where nothing was found (only spec% counts them), so --frames
    1-50 on files of 20 frames went without a word, where localize refuses frames past
    its stack. A warning, not an error: a table cannot tell the frames that were never
    localized from those localized where nothing was found."""
    from .core.metrics import frames_past_the_tables

    if len(gt) + len(est) == 0:  # evaluate says there is nothing to score
        return
    last, past = frames_past_the_tables(gt, est, selection)
    if past:
        listed = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in past)
        warnings.warn(f"--frames {selection} goes past the last frame of either file ({last}): the frames selected "
                      f"after it ({listed}) are scored as frames where nothing was found (only spec% counts them); "
                      "if they were not localized, select the frames that were")


# =============================================================== train
def _training_config(args, base=None):
    """The TrainingConfig of the command line; a fine-tune (``base``: the --init-from
    model's ModelInfo) keeps the base's CEL0 loss lambda and column norms unless the flags
    say otherwise (a lambda-50 model was fine-tuned at the default 100 without a word)."""
    from .core.training import TrainingConfig
    from .core.training_data import TrainingDataConfig

    data_over = {}
    for arg, key in (("patches", "n_patches"), ("sim_frames", "n_frames"), ("density", "density_per_um2"),
                     ("snr_fraction", "snr_fraction"), ("fwhm_jitter", "fwhm_jitter"), ("seed", "seed"),
                     ("structure_fraction", "structure_fraction"), ("sparse_fraction", "sparse_fraction")):
        value = getattr(args, arg)
        if value is not None:
            data_over[key] = value
    for arg, key in (("photons", "photons"), ("background", "background_photons"), ("snr", "snr_db"),
                     ("sparse_density", "sparse_density")):
        value = getattr(args, arg)
        if value is not None:
            data_over[key] = tuple(value)
    presets = {"default": TrainingDataConfig, "paper": TrainingDataConfig.paper, "bundled": TrainingDataConfig.bundled}
    data = presets[args.preset](**data_over)
    lam, column_norms, method = args.lam, args.column_norms, args.method
    if base is not None:
        lam = base.lam if lam is None else lam
        column_norms = base.training.get("column_norms") if column_norms is None else column_norms
        method = base.method if method is None else method  # (a Deep-STORM base needed --method deepstorm)
    # the base model's path in full: the recipe stored in the new model trains again from anywhere
    init_from = str(Path(args.init_from).expanduser().resolve()) if args.init_from else None
    over = {k: v for k, v in dict(
        method=method, lam=lam, column_norms=column_norms, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, lr_schedule=args.lr_schedule,
        seed=args.seed, device=args.device, precision=args.precision, max_steps_per_epoch=args.max_steps_per_epoch,
        min_lr=args.min_lr, init_from=init_from,
    ).items() if v is not None}
    if args.preset == "bundled":  # the bundled model's schedule too, unless a flag says otherwise
        config = TrainingConfig.bundled(data=data, **over)
    else:
        config = TrainingConfig(data=data, **over)
    if args.min_lr is not None and config.min_lr > config.lr:  # it would be lowered to --lr without a word
        raise ValueError(f"--min-lr {config.min_lr:g} is above the learning rate {config.lr:g} (--lr)")
    return config


def cmd_train(args) -> int:
    from .core.cancel import Cancelled
    from .core.outputs import check_output_path
    from .core.model_io import check_training_output, checkpoint_path, read_model_info, save_checkpoint, save_final
    from .core.training import TrainingDivergedError, train

    out = Path(args.out)
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ValueError(f"--time-limit must be a positive number of minutes, got {args.time_limit:g}")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {out.name}")
    check_output_path(out)
    check_distinct_files(args, inputs=("init_from",), outputs=("out",))
    if args.init_from and Path(args.init_from).resolve() == checkpoint_path(out).resolve():
        raise ValueError(f"--init-from {args.init_from} is where this run keeps its checkpoints; copy it first")
    check_training_output(out)
    # a fine-tune simulates the base model's camera unless told otherwise (the package's
    # defaults would have changed its noise without a word, or refused another pixel size)
    base = read_model_info(args.init_from) if args.init_from else None
    acq = _acquisition(args, defaults=base.acquisition if base else None)
    config = _training_config(args, base)
    print(f"training {config.method} for {acq.describe()}", file=sys.stderr)
    print(f"  {config.data.n_patches} patches of {config.data.patch_size} px from {config.data.n_frames} simulated "
          f"frames; {counted(config.epochs, 'epoch')}, batch {config.batch_size}, lr {config.lr:g} "
          f"({config.lr_schedule})",
          file=sys.stderr)
    bar = {"bar": None}
    run = {"trained": False}  # a step done (a stop then keeps a model)
    # train() stops at the limit; minutes beyond float range in seconds (inf) are no limit
    seconds = None if args.time_limit is None else 60.0 * args.time_limit
    time_limit_s = seconds if seconds is not None and math.isfinite(seconds) else None

    def progress(p):
        if p.stage == "time_limit":  # reported once, as train() stops
            print(f"\nthe time limit of {args.time_limit:g} min is reached: stopping and keeping the best "
                  "model so far", file=sys.stderr, flush=True)
            return
        run["trained"] |= p.stage != "data"
        if p.stage == "data":
            print("  simulating the training set ...", file=sys.stderr)
            return
        if p.stage == "start":
            return
        if bar["bar"] is None or p.stage == "epoch":
            if p.stage == "epoch":
                if bar["bar"]:
                    bar["bar"].close()
                    bar["bar"] = None
                # a stopped epoch's losses are of its first steps only (it read as a whole epoch)
                stopped = f" (stopped at step {p.step}/{p.steps})" if p.stopped else ""
                print(f"epoch {p.epoch}/{p.epochs}{stopped}: loss {p.loss:.4f} (fidelity {p.fidelity:.4f}, "
                      f"sparsity {p.sparsity:.4f}), val {p.val_loss:.4f}, best {p.best_val_loss:.4f}, "
                      f"lr {p.lr:.2g}, {p.elapsed_s:.0f} s{p.time_left()}", file=sys.stderr, flush=True)
                return
            bar["bar"] = ProgressBar(p.steps, f"epoch {p.epoch}/{p.epochs}")
        bar["bar"].update(p.step, f"loss {p.loss:.4f}{p.time_left()}")

    saved = []

    def checkpoint(best):
        # the best model so far is on disk after every improving epoch (the write is
        # atomic), so a killed run still leaves a usable model behind: beside --out, which
        # may hold a good model of an earlier run until this one ends
        saved.append(save_checkpoint(out, best, notes=args.notes or ""))

    def stopping() -> str:  # what a first Ctrl-C does now
        return ("stopping after the current step and keeping the best model so far" if run["trained"] else
                "stopping before the first training step: no model will be saved")

    with stop_on_first_interrupt(stopping) as stop:
        try:
            result = train(acq, config, progress=progress, cancel=stop, on_best=checkpoint, time_limit_s=time_limit_s)
        except Cancelled:  # stopped while simulating the training set or before the first step
            print("stopped before the first training step: no model was saved", file=sys.stderr)
            return 128 + int(stop.signum or signal.SIGINT)
        except TrainingDivergedError as exc:
            if saved:  # the best epoch before it diverged (not a file an earlier run left)
                raise TrainingDivergedError(f"{exc}; the best model before that is in {checkpoint_path(out)}") from None
            raise
    path = save_final(out, result, notes=args.notes or "")
    stopped = ("" if not result.cancelled else ", stopped at the time limit" if result.stopped_at_time_limit
               else ", stopped early")
    print(f"wrote {path} (best epoch {result.best_epoch}, {result.seconds:.0f} s on {result.device}, "
          f"{result.precision}{stopped})")
    # stopped by a signal: saved, but not the run asked for (a scheduler's time limit is no success)
    return 128 + int(stop.signum) if stop.signum else 0


@contextlib.contextmanager
def stop_on_first_interrupt(stopping: Callable[[], str]):
    """A ``threading.Event`` set by the first Ctrl-C or SIGTERM (the job then stops
    cleanly and keeps what it has; ``stopping()`` says what happens now); a second one
    interrupts at once."""
    stop = threading.Event()
    stop.signum = None  # the signal that set it

    def handler(signum, frame):
        if stop.is_set():
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        stop.signum = signum
        stop.set()
        print(f"\n{stopping()}; a second Ctrl-C (or SIGTERM) stops at once (a checkpoint already written stays)",
              file=sys.stderr, flush=True)

    with _signal_handlers(handler, signal.SIGINT, signal.SIGTERM):
        yield stop


class Terminated(KeyboardInterrupt):
    """SIGTERM (how batch schedulers stop a job), raised like Ctrl-C so that the same
    clean-up runs: no half-written output, no temporary file left behind."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _signal_handlers(handler, *signums):
    """``handler`` for the signals while the block runs (nothing outside the main
    thread, where Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# ============================================================ localize
def _open_stack_and_acq(args, base: Acquisition, base_is_models: bool = True):
    """The stack and its acquisition: ``base`` (the model's, or with ``base_is_models``
    False CEL0's defaults) with the stack's pixel size and the command-line settings."""
    from .core.frames import frame_ranges
    from .core.tiff_stack import read_stack

    stack = read_stack(args.stack)
    if getattr(args, "opened", None) is not None:  # closed when the command ends (it was left to the collector)
        args.opened.callback(stack.close)
    try:
        frame_ranges(args.frames, len(stack))  # a typo in --frames, said before the model's and the data's lines
        return stack, _stack_acquisition(args, stack, base, base_is_models)
    except BaseException:  # a refused setting left the file open (a ResourceWarning, a handle held till exit)
        stack.close()
        raise


def _stack_acquisition(args, stack, base: Acquisition, base_is_models: bool) -> Acquisition:
    """:func:`_open_stack_and_acq`'s acquisition for the open ``stack``, with its notes."""
    from .core.frames import check_camera_frames
    from .core.predict import PixelSizeWarning

    default_label = "model's" if base_is_models else "default"
    check_camera_frames(stack)  # now: its pixel size, no camera's, failed the PSF check with a puzzling message
    if args.pixel_size is None and stack.pixel_size_nm is None:
        print(f"note: {args.stack} carries no usable pixel size; using the {default_label} {base.pixel_size_nm:g} nm "
              "(set --pixel-size)", file=sys.stderr)
    elif args.pixel_size is not None and stack.pixel_size_nm is not None and args.pixel_size != stack.pixel_size_nm:
        print(f"note: {args.stack} states {stack.pixel_size_nm:g} nm pixels; using --pixel-size {args.pixel_size:g} nm",
              file=sys.stderr)
    from_file = args.pixel_size is None and stack.pixel_size_nm is not None
    if from_file and base_is_models and abs(stack.pixel_size_nm - base.pixel_size_nm) > \
            0.02 * base.pixel_size_nm:  # (CEL0's default of 100 nm is no model's: any size is as likely)
        # a wrong calibration (ImageJ's 1 um placeholder) otherwise showed only as a PSF
        # mismatch or coordinates 10 times too large
        print(f"note: {args.stack} states {stack.pixel_size_nm:g} nm pixels in its metadata (the {default_label}: "
              f"{base.pixel_size_nm:g} nm); using them: if that is wrong, set --pixel-size", file=sys.stderr)
    # the library's PixelSizeWarning says the same to Python users, in their terms (main's
    # catch_warnings ends the filter with the command)
    warnings.filterwarnings("ignore", category=PixelSizeWarning)
    try:
        return _acquisition(args, base, stack_pixel_nm=stack.pixel_size_nm)
    except ValueError as exc:
        if from_file and _valid(lambda: _acquisition(args, base)):  # the file's pixel size is what fails
            raise ValueError(f"{exc} (the pixel size, {stack.pixel_size_nm:g} nm, is the one {args.stack} states in "
                             "its metadata: if that is wrong, set --pixel-size)") from None
        raise


def data_text(stack, acq: Acquisition) -> str:
    """The stack for the log's ``data:`` line, with the pixel size used and, when it
    differs, the file's (the stack's repr gave the file's, also when --pixel-size or the
    model's replaced it)."""
    pixel = f"pixel {acq.pixel_size_nm:g} nm"
    if stack.pixel_size_nm != acq.pixel_size_nm:
        pixel += f" (file: {'none' if stack.pixel_size_nm is None else f'{stack.pixel_size_nm:g} nm'})"
    n, rows, cols = stack.shape
    return f"{stack.path}, {n} frames of {rows}x{cols} {stack.dtype}, {pixel}"


def _valid(make) -> bool:
    try:
        make()
    except ValueError:
        return False
    return True


RENDER_SUFFIXES = (".png", ".tif", ".tiff")
#: the Gaussian blur (sigma in nm) of a PNG rendering by default: the positions favour the
#: centres of the fine pixels (25 nm at 100 nm camera pixels and L = 4), and a blur of one
#: 10 nm render pixel drew filaments as rows of beads 25 nm apart; 20 nm hides that grid
PNG_RENDER_BLUR_NM = 20.0


def add_render_args(p, what: str = "") -> None:
    """--render, --render-pixel and --render-blur (localize and cel0); ``what`` ends the
    help of --render."""
    p.add_argument("--render", metavar="PNG_OR_TIF", help=f"also write a super-resolved rendering{what}")
    p.add_argument("--render-pixel", type=positive_float, default=10.0, metavar="NM",
                   help="rendering pixel (default 10 nm)")
    p.add_argument("--render-blur", type=non_negative_float, metavar="NM",
                   help=f"sigma of the rendering's Gaussian blur in nm (default: {PNG_RENDER_BLUR_NM:g} for a PNG, "
                        "which hides the fine grid the positions favour (25 nm at 100 nm camera pixels); none for "
                        "a TIFF, whose pixels then count localizations; 0: none)")


def render_blur_nm(args) -> float | None:
    """The blur (sigma, nm) of ``--render``: ``--render-blur``, by default
    :data:`PNG_RENDER_BLUR_NM` for a PNG and none for a TIFF."""
    png = Path(args.render).suffix.lower() == ".png"
    return PNG_RENDER_BLUR_NM if args.render_blur is None and png else args.render_blur


def check_outputs(args, stack, acq) -> None:
    """Refuse, before any work, the outputs that could only fail at the end: ``--out``
    (or its protocol beside it) or ``--render`` in a missing folder or naming a folder, an ``--out`` that is no
    ``.csv`` file, a render that is neither PNG nor TIFF, too large for the stack's
    field at ``--render-pixel`` or blurred wider than that field, and an output that is
    the stack, the ground truth, the model or the other output."""
    from .core.outputs import check_output_path
    from .core.protocol import protocol_path
    from .core.render import check_render_blur, render_shape

    check_output_path(args.out)
    if Path(args.out).suffix.lower() != ".csv":  # a slip (--out other.tif, --out locs.png) replaced that file
        raise ValueError(f"--out must end in .csv (a ThunderSTORM CSV is written), got {Path(args.out).name}")
    check_output_path(protocol_path(args.out))
    if args.render:
        if Path(args.render).suffix.lower() not in RENDER_SUFFIXES:
            raise ValueError(f"--render must end in .png or .tif, got {Path(args.render).name}")
        check_output_path(args.render)
        render_shape(acq.field_nm(stack.frame_shape), args.render_pixel)
        check_render_blur(render_blur_nm(args), acq.field_nm(stack.frame_shape), args.render_pixel)
    check_distinct_files(args, inputs=("stack", "gt", "model"), outputs=("out", "render"))
    for name in ("stack", "gt", "model"):
        if getattr(args, name, None) and _same_file(protocol_path(args.out), Path(getattr(args, name))):
            raise ValueError(f"{_option(name)} is {protocol_path(args.out).name}, where the protocol of --out goes; "
                             "writing it would replace that file")


def check_distinct_files(args, inputs, outputs) -> None:
    """ValueError when an output argument names the file of an input argument or of
    another output (``deepcel0 localize a.tif --out a.tif`` would replace the stack)."""
    present = [(name, Path(value)) for name in (*outputs, *inputs) if (value := getattr(args, name, None))]
    for name, path in present:
        for other, other_path in present:
            if name in outputs and other != name and _same_file(path, other_path):
                raise ValueError(f"{_option(name)} and {_option(other)} are the same file ({path}); "
                                 f"writing {_option(name)} would replace it")


def _option(name: str) -> str:
    return "STACK" if name == "stack" else "--" + name.replace("_", "-")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _write_outputs(args, table, stack, acq, protocol: dict) -> None:
    """Write the CSV and its protocol (both or neither), then the render, if asked for."""
    from .core.outputs import write_tiff
    from .core.protocol import protocol_path, write_localizations
    from .core.render import render_histogram, save_render_png

    write_localizations(args.out, table, protocol)
    print(f"wrote {args.out} ({len(table)} localizations) and its protocol {protocol_path(args.out).name}")
    if args.render:
        render = Path(args.render)
        png = render.suffix.lower() == ".png"
        blur = render_blur_nm(args)
        image = render_histogram(table, acq.field_nm(stack.frame_shape), args.render_pixel, blur_sigma_nm=blur)
        if png:
            save_render_png(render, image)
        else:
            write_tiff(render, image, pixel_size_nm=args.render_pixel, output="render")
        blurred = f", Gaussian blur of sigma {blur:g} nm" if blur else ""
        print(f"wrote {render} ({image.shape[1]}x{image.shape[0]} px of {args.render_pixel:g} nm{blurred})")


class StreamProgress:
    """The progress bar of a localization run over the selected frames of a stack;
    :meth:`close` notes the pixels it replaced. Its :meth:`batch` is the run's progress
    callback; :meth:`within_batch` moves it during a slow batch (CEL0's iterations)."""

    def __init__(self, args, stack, label: str):
        from .core.frames import parse_frame_selection

        self.bar = ProgressBar(len(parse_frame_selection(args.frames, len(stack))), label)
        self.done = self.replaced = self.dimmed = 0  # frames of the finished batches, and their fixes

    def batch(self, r) -> None:
        self.done, self.replaced, self.dimmed = r.done, r.pixels_replaced, r.frames_dimmed
        self.bar.update(r.done, f"{rate_text(r.frames_per_second)}{r.time_left()}", force=r.done == r.total)

    def within_batch(self, done: int, info: str) -> None:
        self.bar.update(done, info)

    def close(self) -> None:
        self.bar.close()
        note_replaced_pixels(self.replaced, self.dimmed)


def _run_stream(model, stack, args, progress: StreamProgress, on_batch=None, **options):
    """Localize the selected frames of ``stack`` with ``model`` (the command's settings:
    frames, threshold, method, outlier pixels; ``options`` for the rest), with the
    progress bar; ``on_batch(result)`` after each batch."""
    from .core.predict import NothingFoundWarning, localize

    # note_if_nothing_found says it in the command's terms (main's catch_warnings ends the filter)
    warnings.filterwarnings("ignore", category=NothingFoundWarning)

    def batch_done(result):
        progress.batch(result)
        if on_batch is not None:
            on_batch(result)

    table = localize(model, stack, frames=args.frames, threshold=args.threshold, method=args.method,
                     progress=batch_done, fix_outlier_pixels=not args.keep_outlier_pixels, **options)
    progress.close()
    return table


def note_replaced_pixels(n: int, dimmed: int = 0) -> None:
    """Say, once a run has ended, how many hot, dead or NaN pixels were replaced and in how
    many frames bright objects were dimmed (if any)."""
    if n:
        print(f"note: replaced {n} hot, dead or NaN pixel{'' if n == 1 else 's'} (isolated ones by the mean of their "
              "neighbours, darker regions such as zero-padded borders by the frame's median; "
              "--keep-outlier-pixels keeps them)", file=sys.stderr)
    if dimmed:
        print(f"note: dimmed an object far brighter than the molecules (a bead?) in {dimmed} frame"
              f"{'' if dimmed == 1 else 's'} (--keep-outlier-pixels keeps the frames as they are)", file=sys.stderr)


def _read_ground_truth(args, acq, frame_shape, path=None):
    """The ground truth ``--gt`` (or ``path``; None without one), read before the work so
    that a wrong file fails at once, and a warning when it lies outside the stack's field
    (of ``frame_shape`` camera pixels; coordinates in other units scored 0 % without a word)."""
    path = path or getattr(args, "gt", None)
    if not path:
        return None
    from .core.localization_csv import read_localizations
    from .core.metrics import outside_field_message

    gt = read_localizations(path, pixel_size_nm=acq.pixel_size_nm)
    outside = outside_field_message(gt, acq.field_nm(frame_shape))
    if outside:
        print(f"warning: {path}: {outside}", file=sys.stderr)
    return gt


def run_protocol(args, stack, acq, table, method: str, settings: dict, seconds: float, model=None) -> dict:
    """The protocol (:mod:`.core.protocol`) of a ``localize`` or ``cel0`` run on ``stack``."""
    from .core.frames import parse_frame_selection
    from .core.protocol import localization_protocol

    settings = {**settings, "fix_outlier_pixels": not args.keep_outlier_pixels}
    return localization_protocol(method, acq, settings, parse_frame_selection(args.frames, len(stack)) + 1,
                                 stack.frame_shape, len(table), stack=getattr(stack, "path", None), model=model,
                                 seconds=seconds, command=getattr(args, "command_line", None))


def _scores(args, table, gt, stack) -> list | None:
    """The scores of ``table`` against the ground truth ``gt`` (None without one) at
    ``--tol``, on the localized frames."""
    if gt is None:
        return None
    from .core.frames import frame_ranges
    from .core.metrics import evaluate

    # the localized frames of both tables, as ranges of the stack's frames ("all" and "3-" end at its last)
    selection = ",".join(f"{lo}-{hi}" for lo, hi in frame_ranges(args.frames, len(stack)))
    return evaluate(gt, table, args.tol, frames=selection)


def note_if_nothing_found(table, threshold: float, units: str) -> None:
    """Say so when a run found no molecule (an empty CSV is written all the same)."""
    if len(table) == 0:
        print(f"note: no molecule was found above the threshold of {threshold:.4g} ({units})", file=sys.stderr)


def cmd_localize(args) -> int:
    from .core.model_io import load_bundled_model, load_model
    from .core.photometry import fit_notes
    from .core.predict import SCALING_TILE_PX, DeepLocalizer, psf_differs
    from .core.protocol import method_name, model_record

    loaded = load_model(args.model) if args.model else load_bundled_model()
    stack, acq = _open_stack_and_acq(args, loaded.info.acquisition)
    check_outputs(args, stack, acq)
    gt = _read_ground_truth(args, acq, stack.frame_shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = DeepLocalizer(loaded, acquisition=acq, device=args.device, precision=args.precision,
                              batch_size=args.batch_size, orientations=args.orientations,
                              scaling_tile_px=None if args.whole_frame_scaling else SCALING_TILE_PX,
                              range_floor=args.range_floor)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if psf_differs(model.mismatch):  # the warning said what, not what to do
        info = loaded.info  # (its method and L, where train's defaults differ)
        method = "" if info.method == "deepcel0" else f" --method {info.method}"
        upsampling = "" if info.acquisition.upsampling == Acquisition().upsampling else \
            f" --upsampling {info.acquisition.upsampling}"
        print(f"note: if these settings are right, a model trained for them localizes better: deepcel0 train --out "
              f"MODEL.safetensors --pixel-size {acq.pixel_size_nm:g} --fwhm {acq.fwhm_nm:g}{upsampling}{method} "
              "(docs/training.md)", file=sys.stderr)
    print(f"model: {loaded.path.name}: {loaded.info.summary(with_notes=False)}", file=sys.stderr)
    print(f"data: {data_text(stack, acq)}; {model.device}, {model.precision}{_averaging_text(model.orientations)}",
          file=sys.stderr)
    spike = loaded.info.spike_value
    threshold = model.default_threshold() if args.threshold is None else args.threshold
    print(f"threshold: {threshold:.4g} in map units ({threshold / spike:.3g} x the model's spike value {spike:.4g}"
          f"{'; --threshold sets it' if args.threshold is None else ''})", file=sys.stderr)
    if args.photometry or args.fit_positions:
        what = "position fit" if args.fit_positions else "photometry"
        print(f"{what}: camera gain {acq.gain_adu_per_photon:g} ADU/photon, offset {acq.offset_adu:g} ADU, "
              f"read noise {acq.read_noise_adu:g} ADU (--gain, --offset, --read-noise)", file=sys.stderr)
    t0 = time.perf_counter()
    table = _run_stream(model, stack, args, StreamProgress(args, stack, "localize"), batch_size=args.batch_size,
                        photometry=args.photometry, fit_positions=args.fit_positions)
    seconds = time.perf_counter() - t0
    note_if_nothing_found(table, threshold, "map units")
    for note in fit_notes(table):
        print(f"note: {note}", file=sys.stderr)
    settings = {"threshold": threshold, "threshold_is_default": args.threshold is None,
                "read_out": args.method, "orientations": model.orientations,
                **model.scaling, "photometry": bool(args.photometry),
                "fit_positions": bool(args.fit_positions), "device": str(model.device), "precision": model.precision,
                "batch_size": model.batch_size, "acquisition_differs_from_model": model.mismatch}
    # the acquisition the frames were analysed with: the model's L, whatever --upsampling asked for
    protocol = run_protocol(args, stack, model.acquisition, table, method_name(loaded.info), settings, seconds,
                            model=model_record(loaded.path, loaded.info, sha256=loaded.sha256))
    _write_outputs(args, table, stack, acq, protocol)  # first: a scoring that fails loses no localization
    scores = _scores(args, table, gt, stack)
    if scores is not None:  # the protocol then says how the table scored against its ground truth
        from .core.protocol import protocol_path, write_protocol

        protocol["results"]["ground_truth"] = str(Path(args.gt).resolve())
        protocol["results"]["scores"] = [s.to_dict() for s in scores]
        write_protocol(protocol_path(args.out), protocol)
        _print_scores(scores, False)
    return 0


# ================================================================ demo
#: what ``deepcel0 demo`` writes in its folder: the stack, its ground truth, the localizations, the render
DEMO_FILES = ("demo_frames.tif", "demo_ground_truth.csv", "demo_localizations.csv", "demo_render.png",
              "demo_localizations-protocol.json")
#: the demo's frames, (rows, columns) in camera pixels
DEMO_FRAME_SHAPE = (64, 64)


def cmd_demo(args) -> int:
    from .core import simulate as sim
    from .core.outputs import all_or_nothing, output_folder, write_thunderstorm_csv, write_tiff
    from .core.metrics import evaluate
    from .core.model_io import load_bundled_model
    from .core.predict import DeepLocalizer, localize
    from .core.protocol import localization_protocol, method_name, model_record, write_protocol
    from .core.render import render_histogram, save_render_png

    loaded = load_bundled_model()
    acq = loaded.info.acquisition
    check_fits_in_memory(sim.simulation_bytes(args.frames, DEMO_FRAME_SHAPE, args.density, acq),
                         f"{args.frames} frame(s) of {DEMO_FRAME_SHAPE[0]} x {DEMO_FRAME_SHAPE[1]} pixels at "
                         f"{args.density:g} emitters/um^2", "use fewer frames (--frames) or a lower --density")
    with output_folder(args.out, files=DEMO_FILES) as out:  # removed again if the run fails
        print(f"simulating {args.frames} high-density frames of microtubule-like filaments "
              f"({args.density:g} emitters/um^2, {acq.describe()}) ...")
        frames, gt = sim.simulate_stack(n_frames=args.frames, shape=DEMO_FRAME_SHAPE, density_per_um2=args.density,
                                        structure="tubes", acq=acq, seed=args.seed)
        model = DeepLocalizer(loaded, device=args.device, precision=args.precision, orientations=args.orientations)
        print(f"localizing with the bundled model ({loaded.info.summary(with_notes=False)}) on {model.device} "
              f"({model.precision}{_averaging_text(model.orientations)}) ...")
        t0 = time.perf_counter()
        table = localize(model, frames)
        seconds = time.perf_counter() - t0
        field = acq.field_nm(DEMO_FRAME_SHAPE)
        png = out / DEMO_FILES[3]
        settings = {"threshold": model.default_threshold(), "threshold_is_default": True,
                    "orientations": model.orientations, **model.scaling,
                    "device": str(model.device), "precision": model.precision}
        protocol = localization_protocol(method_name(loaded.info), acq, settings, np.arange(1, args.frames + 1),
                                         DEMO_FRAME_SHAPE, len(table), stack=out / DEMO_FILES[0],
                                         model=model_record(loaded.path, loaded.info, sha256=loaded.sha256),
                                         seconds=seconds, command=args.command_line)
        with all_or_nothing():  # the files of one run, or none
            stack_path = write_tiff(out / DEMO_FILES[0], _camera_counts(frames), pixel_size_nm=acq.pixel_size_nm)
            write_thunderstorm_csv(out / DEMO_FILES[1], gt)
            csv = write_thunderstorm_csv(out / DEMO_FILES[2], table)
            save_render_png(png, render_histogram(table, field, 10.0, blur_sigma_nm=PNG_RENDER_BLUR_NM))
            write_protocol(out / DEMO_FILES[4], protocol)
    scores = evaluate(gt, table, DEFAULT_TOLERANCES_NM)
    print(f"{len(table)} localizations in {seconds:.1f} s ({args.frames / seconds:.1f} frames/s)")
    _print_scores(scores, False)
    s50 = scores[0]
    print(f"Jaccard at 50 nm: {s50.jaccard:.1f} %, RMSE {s50.rmse_nm:.1f} nm")
    print(f"wrote {stack_path}, {out / DEMO_FILES[1]}, {csv} (and its protocol), {png}")
    return 0


# ================================================================ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepcel0",
        description="DeepCEL0 and CEL0-IRL1 localization of high-density SMLM data (napari-deepcel0).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"napari-deepcel0 {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print Python's traceback before the one-line message (before the "
                             "command: deepcel0 --debug localize ...); for a bug report, or a message that makes "
                             "no sense for the input")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_simulate_parser(sub)
    _add_evaluate_parser(sub)
    _add_train_parser(sub)
    _add_localize_parser(sub)
    _add_demo_parser(sub)
    add_cel0_parser(sub)
    for command in sub.choices.values():  # also after the command (deepcel0 localize ... --debug): it was refused
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, print Python's traceback before the one-line message")
    return parser


def _add_simulate_parser(sub) -> None:
    p = sub.add_parser("simulate", help="simulate an SMLM TIFF stack and its ground-truth CSV",
                       description="Simulate a TIFF stack (frames.tif, its pixel size in the ImageJ metadata), "
                                   "a ground-truth ThunderSTORM CSV (ground_truth.csv) and acquisition.json (the "
                                   "acquisition simulated, for the record: localize reads only the pixel size, "
                                   "from the TIFF; give it the other settings, e.g. --fwhm, again).")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--frames", type=positive_int, default=100, metavar="N", help="number of frames (default 100)")
    p.add_argument("--size", type=positive_int, default=64, metavar="PX",
                   help="frame size in camera pixels (default 64)")
    p.add_argument("--density", type=emitter_density, default=6.0, metavar="D",
                   help=f"emitters per um^2 per frame (default 6; 0: background only; at most {MAX_DENSITY_PER_UM2:g})")
    p.add_argument("--structure", choices=("tubes", "uniform"), default="tubes",
                   help="emitters along filaments (tubes, default) or uniform")
    p.add_argument("--photons", type=positive_float, nargs=2, default=(600.0, 900.0), metavar=("LOW", "HIGH"),
                   help="per-frame mean photons per emitter, drawn log-uniformly (default 600 900)")
    p.add_argument("--background", type=non_negative_float, nargs=2, default=(8.0, 12.0), metavar=("LOW", "HIGH"),
                   help="background photons per pixel (default 8 12)")
    p.add_argument("--snr", type=finite_float, metavar="DB",
                   help="instead of the camera model, add Gaussian noise at this SNR (paper Eq. 14), float frames")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    _add_acquisition_args(p, with_camera=True)
    p.set_defaults(func=cmd_simulate)


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score localizations against ground truth",
                       description="Match localizations to ground truth frame by frame (optimal one-to-one "
                                   "assignment within each tolerance) and print Jaccard, sensitivity, precision, "
                                   "RMSE and efficiency.")
    p.add_argument("locs", metavar="LOCS.csv", help="localizations (ThunderSTORM CSV)")
    p.add_argument("--gt", required=True, metavar="GT.csv", help="ground truth (ThunderSTORM or ISBI CSV)")
    p.add_argument("--tol", type=tolerances_nm, nargs="+", default=list(DEFAULT_TOLERANCES_NM), metavar="NM",
                   help=f"tolerances in nm (default {TOLERANCES_TEXT})")
    p.add_argument("--frames", metavar="SEL",
                   help="score only these frames of both files (1-based, e.g. 1-100), e.g. after localize --frames")
    p.add_argument("--json", action="store_true", help="one JSON object per tolerance (percentages in %%)")
    p.add_argument("--frame-shape", type=positive_int, nargs=2, metavar=("ROWS", "COLS"),
                   help="camera frame shape, to report specificity on the fine grid (column spec%%)")
    _add_acquisition_args(p, pixel_help=f"camera pixel size in nm: required for columns in camera pixels (x [px]); "
                                        f"with --frame-shape, sets the fine grid (there default "
                                        f"{Acquisition().pixel_size_nm:g})", with_fwhm=False)
    p.set_defaults(func=cmd_evaluate)


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a DeepCEL0 (or Deep-STORM) model on simulated data",
                       description="Simulate a training set for the acquisition and train a network; writes a "
                                   ".safetensors model file (weights + JSON metadata).")
    p.add_argument("--out", required=True, metavar="MODEL.safetensors", help="output model file")
    p.add_argument("--method", choices=("deepcel0", "deepstorm"), default=None,
                   help="deepcel0 (ReLU output, CEL0 loss; default) or deepstorm (linear output, L1 loss); a "
                        "fine-tune (--init-from) takes its base model's")
    p.add_argument("--preset", choices=("default", "paper", "bundled"), default="default",
                   help="default (broad training data, robust to real data, with the paper's schedule), paper "
                        "(the paper's Sec. 3.3 data) or bundled (the bundled model's data and schedule: 200,000 "
                        "patches, 8 epochs, batch 64, cosine; about 4 min on an H100); other flags override it")
    p.add_argument("--epochs", type=int, help="epochs (default 100)")
    p.add_argument("--batch-size", type=int, help="batch size (default 16)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=("plateau", "cosine"),
                   help="plateau (the paper's ReduceLROnPlateau; default) or cosine (short budgets)")
    p.add_argument("--min-lr", type=float, help="lowest learning rate of either schedule (default 5e-5, at most --lr)")
    p.add_argument("--init-from", metavar="MODEL.safetensors",
                   help="fine-tune this model (same method and acquisition) instead of starting from scratch")
    p.add_argument("--lam", type=float, help="CEL0 loss lambda (default 100 (L / 4)^2: 100 at L = 4, 25 at L = 2; "
                                             "with --init-from the base model's)")
    p.add_argument("--column-norms", choices=("operator", "notebook"),
                   help="CEL0 a_i from S_L K (operator, default) or the notebook's ||g|| (with --init-from: the "
                        "base model's)")
    p.add_argument("--val-fraction", type=float, help="validation fraction (default 0.3)")
    p.add_argument("--patches", type=int, help="training patches (default 10000)")
    p.add_argument("--sim-frames", type=int, help="simulated frames the patches are cut from (default 200)")
    p.add_argument("--density", type=positive_emitter_density, help="emitters per um^2 (default 6)")
    p.add_argument("--photons", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="photons per emitter and frame, drawn log-uniformly per frame (default 400 5000)")
    p.add_argument("--background", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="background photons per pixel and frame (default 0 40)")
    p.add_argument("--snr-fraction", type=float,
                   help="fraction of frames with white Gaussian noise at an SNR instead of camera noise (default 0.3)")
    p.add_argument("--snr", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="SNR range in dB for those frames (default 8 20)")
    p.add_argument("--fwhm-jitter", type=float, help="relative PSF width jitter per frame (default 0.05)")
    p.add_argument("--structure-fraction", type=float,
                   help="fraction of frames with emitters along random filaments instead of uniform (default 0.5)")
    p.add_argument("--sparse-fraction", type=float,
                   help="fraction of the patches cut from extra sparse frames, with no minimum number of "
                        "emitters, so that the network learns not to report noise on sparse data (default 0)")
    p.add_argument("--sparse-density", type=positive_emitter_density, nargs=2, metavar=("LOW", "HIGH"),
                   help="emitters per um^2 of the sparse frames, drawn log-uniformly per frame (default 0.1 2)")
    p.add_argument("--max-steps-per-epoch", type=positive_int,
                   help="cap the steps per epoch, and the validation batches (of 64 patches or the batch size) to as "
                        "many (quick runs)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop cleanly after this many minutes (counted from the start, data simulation "
                        "included, checked at each training step: the simulation itself always finishes) and keep "
                        "the best model so far; the model file records that training was stopped early")
    p.add_argument("--seed", type=seed, help="random seed (default 0)")
    p.add_argument("--notes", help="free text stored in the model metadata")
    _add_acquisition_args(p, with_camera=True, fine_tune=True)
    _device_args(p)
    p.set_defaults(func=cmd_train)


def _add_localize_parser(sub) -> None:
    p = sub.add_parser("localize", help="localize a TIFF stack with a DeepCEL0 model",
                       description="Localize every frame of a TIFF stack (streamed, any length) and write a "
                                   "ThunderSTORM CSV.")
    p.add_argument("stack", metavar="STACK.tif")
    p.add_argument("--out", required=True, metavar="LOCS.csv", help="output ThunderSTORM CSV")
    p.add_argument("--model", metavar="MODEL.safetensors", help="model file (default: the bundled model)")
    p.add_argument("--threshold", type=non_negative_float, metavar="T",
                   help="detection threshold in the model's map units, not a fraction (default 0.1 x the model's "
                        "spike value, 8.5 for the bundled model; printed at the start of each run): higher finds "
                        "fewer, surer molecules")
    p.add_argument("--frames", metavar="SEL", help="1-based frame selection, e.g. 1-100 or 1,5,10-20; open ranges: "
                   "-20 (frames 1-20), 100- (from frame 100 on)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="frames of 64 x 64 pixels per network pass (default 16); larger frames go in proportionally "
                        "fewer, at least 1")
    p.add_argument("--method", choices=READ_METHODS, default=READ_METHODS[0],
                   help="how molecules are read off the network's fine-grid map: peaks (local maxima over 3 x 3 "
                        "fine pixels, placed to sub-pixel precision; default) or components (connected pixels "
                        "above the threshold, each one molecule at their weighted centroid: merges touching "
                        "molecules)")
    _orientations_arg(p)
    p.add_argument("--whole-frame-scaling", action="store_true",
                   help="scale each frame to [0, 1] by its own minimum and maximum whatever its size (by default "
                        "a frame side of 96 pixels or more is cut into regions of about 64 pixels, each scaled by "
                        "its own, so that one bright molecule does not make faint ones far from it look fainter)")
    p.add_argument("--range-floor", type=non_negative_float, default=FRAME_RANGE_FLOOR, metavar="K",
                   help=f"scale a frame as if its range were at least K of its noise standard deviations (default "
                        f"{FRAME_RANGE_FLOOR:g}), so that the noise of frames without molecules is not stretched "
                        f"into false molecules; 0: each frame by its own range however faint (before 2026-11-29)")
    p.add_argument("--photometry", action="store_true",
                   help="also fit each molecule's photons on the camera frame (columns intensity [photon] and "
                        "offset [photon]; needs the camera's --gain and --offset, ADU)")
    p.add_argument("--fit-positions", action="store_true",
                   help="also fit each molecule's position on the camera frame (maximum likelihood, within half a "
                        "fine pixel of the map's): finer positions on sparse and moderately dense frames; on a "
                        "2-core CPU about 0.015 s more per sparse 64 x 64 frame, 0.15-0.35 s per crowded one (more "
                        "for larger frames, in proportion to their area); adds the "
                        "photometry columns, uncertainty [nm] and at_box_edge (1 where the fit stopped at the edge of its box: "
                        "worse than its uncertainty says; set --gain, --offset and --read-noise)")
    add_render_args(p)
    p.add_argument("--gt", metavar="GT.csv", help="ground truth: print scores after localizing")
    p.add_argument("--tol", type=tolerances_nm, nargs="+", default=list(DEFAULT_TOLERANCES_NM), metavar="NM",
                   help=f"with --gt: matching tolerances (default {TOLERANCES_TEXT})")
    _outlier_pixels_arg(p)
    _add_acquisition_args(p, with_camera=True, model=True, stack=True)
    _device_args(p)
    p.set_defaults(func=cmd_localize)


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="simulate a stack, localize it with the bundled model and score it",
                       description="Simulate a high-density tubulin-like stack, localize it with the bundled "
                                   "model, write CSV + PNG and print Jaccard/RMSE against the ground truth.")
    p.add_argument("--out", default="deepcel0-demo", metavar="DIR", help="output folder (default ./deepcel0-demo)")
    p.add_argument("--frames", type=positive_int, default=50, help="frames to simulate (default 50)")
    p.add_argument("--density", type=positive_emitter_density, default=5.5,
                   help=f"emitters per um^2 (default 5.5, as ISBI 2013; at most {MAX_DENSITY_PER_UM2:g})")
    p.add_argument("--seed", type=seed, default=1, help="random seed of the simulation (default 1)")
    _orientations_arg(p)
    _device_args(p)
    p.set_defaults(func=cmd_demo)


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the command line: ``deepcel0 CMD: warning: ...``, without
    Python's file, line and source code (the message names what it is about)."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"deepcel0 {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def main(argv=None) -> int:
    if sys.stderr is None:  # started with 2>&-: the progress bar failed, and notes went to stdout (print's None)
        sys.stderr = open(os.devnull, "w")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["deepcel0", *(sys.argv[1:] if argv is None else [str(a) for a in argv])])
    args.opened = contextlib.ExitStack()  # files a command opens (its stack), closed when it ends
    try:
        with args.opened, _signal_handlers(_raise_terminated, signal.SIGTERM), warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except NotEnoughMemory as exc:  # refused before the work, with its advice
        return _error(args, exc, str(exc))
    except MemoryError as exc:  # a size the user asked for (frames, --size, --density, --batch-size)
        said = f" ({exc})" if str(exc) else ""  # numpy's "Unable to allocate ..." says nothing of our flags
        if args.command == "evaluate":  # it has no frames or density to lower
            advice = ("the tables hold too many molecules within the tolerance of each other in one frame to match; "
                      "use a smaller --tol, or check that both files are localizations in nm")
        else:
            batch = " or a smaller --batch-size" if hasattr(args, "batch_size") else ""
            advice = f"use fewer or smaller frames or a lower density{batch}"
        return _error(args, exc, f"not enough memory for what was asked{said}; {advice}")
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): nothing more to say
        with contextlib.suppress(OSError, ValueError):  # so that Python's flush at exit stays quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except USER_ERRORS as exc:
        message = str(exc)
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
            message = f"out of GPU memory; lower --batch-size or use --device cpu ({message})"
        return _error(args, exc, message)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"deepcel0 {args.command}: {what}; no output was written for the unfinished step", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


def _error(args, exc: BaseException, message: str) -> int:
    """Report an error as one line; with ``--debug``, Python's traceback first (the line
    alone showed a bug, e.g. numpy's broadcast error, as if it were the input's, with no
    trace of where it arose)."""
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"deepcel0 {args.command}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run() -> None:
    """The ``deepcel0`` program: :func:`main`, and after Ctrl-C (exit status 130) death by
    SIGINT, as Python itself and other Unix tools do, so that a shell loop over files
    (``for f in *.tif; do deepcel0 localize ...; done``) stops too: an exit status of 130
    only ended the current file and the loop went on with the next."""
    code = main()
    if code == 130 and os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
