"""Frame sources: counting, reading and selecting frames of a stack, for every method
(DeepCEL0, CEL0, the PSF estimate) and the command line; free of torch.

A *frame source* is a :class:`~napari_deepcel0.core.tiff_stack.FrameStack` (lazy TIFF), a
NumPy or dask array of shape (frames, rows, cols) or (rows, cols), or anything with
``len`` and slicing. Selections are 1-based (``"1-20"``, ``"1,5,10-"``); indices into
a source are 0-based.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from typing import Iterator

import numpy as np
from scipy import ndimage

from .acquisition import is_whole_number


class FrameSourceError(ValueError):
    """Frames that cannot be processed (empty, wrong shape, NaN, ...)."""


class PrecisionWarning(UserWarning):
    """Frames whose values float32, the type frames are analysed in, cannot hold in the
    detail they vary by (a large offset): see :func:`float32_precision_loss`."""


#: a frame whose range of values spans fewer float32 steps than this warns (PrecisionWarning)
FLOAT32_MIN_STEPS = 1000


def float32_precision_loss(frames: np.ndarray) -> str:
    """What to say when ``frames`` ((rows, cols) or (n, rows, cols), any numeric type),
    cast to float32, keep fewer than :data:`FLOAT32_MIN_STEPS` steps across the range of
    values of one of them: int64 frames minus 2**40 lost every molecule (0 localizations,
    only "no molecule was found"), float64 frames plus 1e9 half of them (review). "" when
    they keep enough, and at once for the types float32 holds exactly (8- and 16-bit
    integers, float32, which are almost all camera files)."""
    frames = np.asarray(frames)
    if frames.dtype.itemsize <= 2 or frames.dtype == np.float32 or frames.size == 0 or frames.ndim < 2:
        return ""
    block = frames.reshape((-1,) + frames.shape[-2:])
    if block.dtype.kind == "f":
        finite = np.isfinite(block)
        lo = np.min(block, axis=(1, 2), initial=np.inf, where=finite)
        hi = np.max(block, axis=(1, 2), initial=-np.inf, where=finite)
        spread = hi - lo
    else:  # in Python integers: exact, whatever the offset
        lo, hi = block.min(axis=(1, 2)), block.max(axis=(1, 2))
        spread = np.array([float(int(b) - int(a)) for a, b in zip(lo, hi)])
    biggest = np.maximum(np.abs(lo.astype(np.float64)), np.abs(hi.astype(np.float64)))
    with np.errstate(invalid="ignore", over="ignore"):
        step = np.spacing(biggest.astype(np.float32)).astype(np.float64)
        steps = spread / step
    worst = np.flatnonzero(np.isfinite(steps) & (spread > 0) & (steps < FLOAT32_MIN_STEPS))
    if len(worst) == 0:
        return ""
    k = int(worst[np.argmin(steps[worst])])
    return (f"values of about {biggest[k]:.2g} vary by only {spread[k]:.3g} within a frame: as float32, the type of "
            f"the analysis, they keep steps of {step[k]:.2g} ({steps[k]:.0f} across the frame), too coarse for the "
            f"molecules; subtract the camera's offset (or the stack's minimum) from the {frames.dtype} frames first")


# ------------------------------------------------------------------ frames
def frame_count(source) -> int:
    """How many frames ``source`` holds: 1 for a single (rows, cols) frame, the first axis
    of a (frames, rows, cols) array or stack."""
    shape = getattr(source, "shape", None)
    if shape is not None and len(shape) == 2:
        return 1
    if shape is not None and len(shape) != 3:
        raise FrameSourceError(f"frames must be (rows, cols) or (frames, rows, cols), got shape {tuple(shape)}")
    if shape is not None and min(shape[-2:]) < 1:
        raise FrameSourceError(f"the frames have no pixels (shape {tuple(shape)})")
    return len(source)


def check_camera_frames(source) -> None:
    """FrameSourceError for an image this package computed (a render or fine-grid maps
    opened as a :class:`~.io.FrameStack`, whose ``output`` says so): its pixels are no
    camera's, and its pixel size is no camera pixel."""
    if getattr(source, "output", None):
        raise FrameSourceError(f"{getattr(source, 'path', 'the stack')} is a {source.output} image written by "
                               "napari-deepcel0, not camera frames")


def read_frames(source, indices: np.ndarray) -> np.ndarray:
    """Frames at 0-based ``indices`` as a float32 (n, rows, cols) array."""
    shape = getattr(source, "shape", None)
    lo, hi = int(indices[0]), int(indices[-1]) + 1
    if shape is not None and len(shape) == 2:  # one frame
        block = np.asarray(source)[None].repeat(len(indices), 0)
    else:  # the source's own errors stay its own (a damaged page, a closed file)
        read = source[lo:hi] if hi - lo == len(indices) else [np.asarray(source[int(i)]) for i in indices]
        if isinstance(read, (list, tuple)):  # a list's slice, or frames read one at a time
            sizes = list(dict.fromkeys(np.shape(frame) for frame in read))  # in the frames' order
            if len(sizes) > 1:  # numpy's "inhomogeneous shape" error
                raise FrameSourceError(f"frames {lo + 1}-{hi} have different sizes "
                                       f"({', '.join(map(str, sizes))}); the frames of a stack all have one")
        block = np.asarray(read)
    if block.ndim != 3:  # e.g. one frame given as a list of lists: its rows taken for frames
        raise FrameSourceError(f"frames must be (rows, cols) images: frames {lo + 1}-{hi} read as an array of shape "
                               f"{block.shape}; give a (frames, rows, cols) or (rows, cols) array")
    if block.dtype.kind not in "uif":  # bool, complex, text: no camera counts
        raise FrameSourceError(f"frames must hold integer or float numbers, got {block.dtype}")
    coarse = float32_precision_loss(block)
    if coarse:
        warnings.warn(f"frames {lo + 1}-{hi}: {coarse}", PrecisionWarning, stacklevel=2)
    if block.dtype.kind == "f" and block.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            beyond = np.abs(block).max(axis=(-2, -1)) > np.finfo(np.float32).max  # NaN: left to check_finite
        if beyond.any():
            raise FrameSourceError(f"frame {int(indices[np.flatnonzero(beyond)[0]]) + 1} holds values beyond "
                                   f"the float32 range (up to {np.abs(block).max():.3g}); rescale the stack")
    return block.astype(np.float32, copy=False)


def parse_frame_selection(spec, n_frames: int) -> np.ndarray:
    """0-based frame indices from a 1-based selection.

    ``spec`` is None, ``""`` or ``"all"`` (all frames), a string like ``"1-20"``,
    ``"5"`` or ``"1-10,15,30-"`` (ranges inclusive; ``"-20"`` is 1-20 and ``"30-"`` from
    30 to the last frame), one 1-based number, or an iterable
    of them. Each range is checked before it is expanded (:func:`frame_ranges`).
    """
    return np.concatenate([np.arange(first - 1, last) for first, last in frame_ranges(spec, n_frames)])


def frame_ranges(spec, n_frames: int) -> list[tuple[int, int]]:
    """The 1-based frame selection ``spec`` (see :func:`parse_frame_selection`) as
    sorted, disjoint, inclusive ranges ``(first, last)`` within ``1..n_frames``,
    without expanding them (a typo like '1-10000000000' costs nothing)."""
    if n_frames < 1:
        raise FrameSourceError("the stack has no frames")
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return [(1, int(n_frames))]
    if is_whole_number(spec):
        spec = [spec]  # one frame number
    if isinstance(spec, str):
        bounds = []
        for part in spec.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d*)(?:(-)(\d*))?", part)
            if not m or (not m.group(1) and not m.group(3)):
                raise ValueError(f"cannot read frame selection {spec!r}; use e.g. '1-20' or '1,5,10-12'")
            first = int(m.group(1)) if m.group(1) else 1
            bounds.append((first, (int(m.group(3)) if m.group(3) else n_frames) if m.group(2) else first))
    else:
        try:
            bounds = [(v, v) for v in (_whole_frame_number(spec, v) for v in spec)]
        except TypeError:  # True, 1.5, a slice: nothing to iterate
            raise ValueError(_unreadable_selection(spec)) from None
    for first, last in bounds:
        if last < first:
            raise ValueError(f"frame selection {spec!r}: the range {first}-{last} runs backwards")
        if first < 1 or last > n_frames:
            raise ValueError(f"frame selection {spec!r} is outside 1..{n_frames} (frames are 1-based)")
    if not bounds:
        raise ValueError(f"frame selection {spec!r} is empty")
    merged = []
    for first, last in sorted(bounds):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _unreadable_selection(spec) -> str:
    return f"cannot read frame selection {spec!r}; use e.g. '1-20', '1,5,10-12', a frame number or a list of them"


def _whole_frame_number(spec, value) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):  # ["1-3"]: text in a list
        raise ValueError(_unreadable_selection(spec)) from None
    if isinstance(value, (bool, np.bool_)) or not number.is_integer():
        raise ValueError(f"frame selection {spec!r} must hold whole frame numbers, got {value!r}")
    return int(value)


#: frames read and fixed together (:func:`iter_read_batches`), the window in which a bead
#: must stay put (:func:`dim_bright_objects`): as in a batch of 64 x 64 frames, so that
#: the judgement does not change with the frame size or the batch size, as long as
#: they fit in :data:`PIECE_PIXELS` (at least :data:`PERSISTENCE_MIN_FRAMES` frames)
PIECE_FRAMES = 16
#: camera pixels a piece holds at most while it has more than PERSISTENCE_MIN_FRAMES
#: frames: 16 frames of 512 x 512 (16 MB in float32; the outlier steps hold about 7
#: times that meanwhile)
PIECE_PIXELS = 16 * 512 * 512


def piece_frames(batch_size: int, frame_shape: tuple[int, int]) -> int:
    """Frames in a piece of :func:`iter_read_batches` (the last may hold more): the
    fewest whole batches of ``batch_size`` that make :data:`PIECE_FRAMES` frames of
    ``frame_shape``, or as many as fit in :data:`PIECE_PIXELS`, but at least
    :data:`PERSISTENCE_MIN_FRAMES`."""
    pixels = max(int(frame_shape[0]) * int(frame_shape[1]), 1)
    wanted = max(PERSISTENCE_MIN_FRAMES, min(PIECE_FRAMES, PIECE_PIXELS // pixels))
    return int(batch_size) * -(-wanted // int(batch_size))


def iter_read_batches(indices: np.ndarray, batch_size: int, frame_shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """``indices`` in consecutive pieces read and fixed together (:func:`read_fixed_frames`)
    before they go to the network in batches of ``batch_size``: pieces of
    :func:`piece_frames` frames, and a last piece shorter than
    :data:`PERSISTENCE_MIN_FRAMES` joins the one before, so that
    :func:`dim_bright_objects` tells a bead, which stays put, from a bright molecule,
    which blinks, over as many frames whatever the batch size (frames of 256 x 256 pixels
    and more go to the network one at a time) and at the end of a selection. Cut into batches of
    ``batch_size``, the pieces give the network the batches that cutting the whole
    selection would. Each frame is read once."""
    size = piece_frames(batch_size, frame_shape)
    starts = list(range(0, len(indices), size))
    if len(starts) > 1 and len(indices) - starts[-1] < PERSISTENCE_MIN_FRAMES:
        starts.pop()
    for a, b in zip(starts, starts[1:] + [len(indices)]):
        yield indices[a:b]


#: a batch size counts frames of this many camera pixels (ISBI 2013's 64 x 64): larger
#: frames go in proportionally fewer at a time (:func:`frames_per_batch`)
BATCH_FRAME_PIXELS = 64 * 64


def frames_per_batch(batch_size: int, frame_shape: tuple[int, int]) -> int:
    """Frames per network pass for a batch size of ``batch_size`` frames of 64 x 64 pixels:
    ``batch_size`` for frames up to that size, proportionally fewer for larger ones (at
    least 1), so that the memory of a pass does not grow with the frame size (the network
    holds about 300 MB per 256 x 256 frame on the CPU: 16 of them took 5 GB)."""
    pixels = max(int(frame_shape[0]) * int(frame_shape[1]), 1)
    return max(1, min(batch_size, batch_size * BATCH_FRAME_PIXELS // pixels))


def _frame_shape(source) -> tuple[int, int]:
    shape = getattr(source, "shape", None)
    frame = tuple(shape[-2:]) if shape is not None else np.shape(source[0])
    if len(frame) != 2:  # e.g. one frame given as a list of lists: its rows taken for frames
        raise FrameSourceError(f"frames must be (rows, cols) images: the first one has shape {frame}; give a "
                               "(frames, rows, cols) or (rows, cols) array")
    return frame


def check_finite(frames: np.ndarray, frame_numbers: np.ndarray, isolated_replaced: bool = False) -> None:
    """Raise :class:`FrameSourceError` naming the first of the 1-based ``frame_numbers``
    whose frame holds NaN or infinite values; ``isolated_replaced``: isolated ones were
    replaced before (:func:`replace_isolated_nonfinite`), the message says so."""
    bad = ~np.isfinite(frames).all(axis=(-2, -1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        count = int((~np.isfinite(frames[first])).sum())
        raise FrameSourceError(
            f"frame {int(frame_numbers[first])} contains {count} NaN or infinite "
            + ("value" if count == 1 else "values")
            + (" beside each other (isolated ones are replaced like dead pixels)" if isolated_replaced else "")
            + " (camera frames hold finite numbers: replace them, e.g. by the frame's median, or crop them away)")


def replace_isolated_nonfinite(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """``frames`` (n, rows, cols) with each NaN or infinite pixel whose 8 neighbours are
    finite replaced by their mean (as a dead pixel is; neighbours inside the frame only),
    and how many were replaced. Groups of them are left for :func:`check_finite` to
    report: a NaN border or region is not a camera's pixel error."""
    bad = ~np.isfinite(frames)
    if not bad.any() or frames.ndim != 3:
        return frames, 0
    isolated = bad & ~ndimage.binary_dilation(bad, structure=_NEIGHBOURS, border_value=0)
    frame, row, col = np.nonzero(isolated)
    if not len(frame):
        return frames, 0
    f = np.array(frames, dtype=np.result_type(frames.dtype, np.float32), copy=True)  # float64 stays float64
    _set_to_neighbour_mean(f, frame, row, col)  # (a 1 x 1 frame has none: stays NaN, for check_finite)
    return f, int(np.isfinite(f[frame, row, col]).sum())


def _set_to_neighbour_mean(f: np.ndarray, frame: np.ndarray, row: np.ndarray, col: np.ndarray) -> None:
    """Set the pixels ``f[frame, row, col]`` (in place) to the mean of their 8 neighbours
    inside the frame; NaN where they have none."""
    padded = np.pad(f, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    around = np.stack([padded[frame, row + 1 + dr, col + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc])
    with warnings.catch_warnings():  # "mean of empty slice" for a pixel without neighbours
        warnings.simplefilter("ignore", RuntimeWarning)
        f[frame, row, col] = np.nanmean(around, axis=0)


#: an isolated pixel is replaced when it stands this many noise standard deviations
#: (plus :data:`OUTLIER_RANGE_FRACTION` of the frame's robust range) beyond all of its 8
#: neighbours
OUTLIER_NOISE_SIGMAS = 6.0
OUTLIER_RANGE_FRACTION = 0.05
#: and, for a bright pixel, when its brightest neighbour holds less than this fraction of
#: what a molecule's peak neighbour holds at least (:func:`_psf_neighbour_ratio`)
OUTLIER_PSF_FRACTION = 0.25
#: the frame statistics (median, 99th percentile, noise) come from about this many pixels
STATISTICS_PIXELS = 1024
#: 1.4826 x MAD is the standard deviation of a normal distribution (the noise of a frame
#: from the median absolute difference of neighbouring pixels: ``MAD_TO_STD / sqrt(2)``,
#: :func:`frame_noise_adu` and :func:`robust_sd`)
MAD_TO_STD = 1.4826
#: the 8 neighbours of a pixel, in a frame of a stack
_NEIGHBOURS = np.ones((1, 3, 3), bool)
_NEIGHBOURS[0, 1, 1] = False


def _psf_neighbour_ratio(psf_sigma_px: float) -> float:
    """The smallest brightness that the brightest neighbour of a molecule's peak pixel can
    have, as a fraction of the peak's (both above the background): a molecule centred on
    a pixel, its light integrated over the pixels of a Gaussian PSF."""
    from math import erf, sqrt

    def cdf(t: float) -> float:
        return 0.5 * (1.0 + erf(t / (psf_sigma_px * sqrt(2.0))))

    return (cdf(1.5) - cdf(0.5)) / (cdf(0.5) - cdf(-0.5))


def replace_isolated_outliers(frames: np.ndarray, psf_sigma_px: float, stats=None) -> tuple[np.ndarray, int]:
    """``frames`` (n, rows, cols) float32 with isolated hot and dead pixels replaced by the
    mean of their 8 neighbours, and how many were replaced.

    The networks and CEL0 scale each frame (the networks: each region of about 64 x 64
    pixels of a larger frame) by its minimum and maximum, so one hot pixel
    (a saturated or cosmic-ray pixel) or dead one (0 ADU) spoilt its whole frame: on
    simulated 48 x 48 frames one pixel at 65,535 ADU left no localization and one at 0 gave
    5 times too many. A pixel is replaced when it stands out from all 8 neighbours by
    :data:`OUTLIER_NOISE_SIGMAS` noise standard deviations (from the differences of
    neighbouring pixels) plus :data:`OUTLIER_RANGE_FRACTION` of the frame's robust range
    (99th percentile minus median), and, for a bright one, when its brightest neighbour is
    less than :data:`OUTLIER_PSF_FRACTION` as bright (above the median) as a molecule's
    peak neighbour can be for a PSF of ``psf_sigma_px`` camera pixels: a molecule covers
    several pixels, an outlier one; a dark one when it is also that far below the frame's
    median. Only neighbours inside the frame count. Clean frames are left as they are (the test suite checks the bundled model's
    ISBI 2013 scores). ``stats``: the frames' :func:`_frame_statistics`, when the
    caller has them."""
    f = np.array(frames, dtype=np.float32, copy=True)
    if f.ndim != 3 or min(f.shape[-2:]) < 3:
        return f, 0
    median, high, noise = (v[:, None, None] for v in (_frame_statistics(f) if stats is None else stats))
    margin = OUTLIER_NOISE_SIGMAS * noise + OUTLIER_RANGE_FRACTION * (high - median)
    # the neighbours inside the frame only (a reflected edge made the dim side of a molecule
    # cut by the edge look like a dead pixel)
    nb_max = ndimage.maximum_filter(f, footprint=_NEIGHBOURS, mode="constant", cval=-np.inf)
    nb_min = ndimage.minimum_filter(f, footprint=_NEIGHBOURS, mode="constant", cval=np.inf)
    ratio = OUTLIER_PSF_FRACTION * _psf_neighbour_ratio(psf_sigma_px)
    hot = (f - nb_max > margin) & (nb_max - median < ratio * (f - median))
    dead = (nb_min - f > margin) & (median - f > margin)  # below the background too: a pixel
    # between molecules, or at the edge beside one, can be dimmer than all its neighbours
    frame, row, col = np.nonzero(hot | dead)
    if len(frame):
        _set_to_neighbour_mean(f, frame, row, col)
    return f, len(frame)


def fill_dark_pixels(frames: np.ndarray, stats=None) -> tuple[np.ndarray, int]:
    """``frames`` (n, rows, cols) float32 with their dark regions filled, and how many
    pixels were filled.

    A zero-padded border (registration, drift correction) or a dead column sets the
    frame's minimum far below the background, and the frame is scaled by its minimum: a
    4-pixel zero border left 11 % Jaccard on simulated frames where 89 % was found without
    it (86 % filled), a dead column 13 % (84 % filled). A frame is filled when its minimum
    lies more than :data:`OUTLIER_NOISE_SIGMAS` noise standard deviations below its median
    and at least half a row or column of pixels holds exactly that value (a fill, not a
    noisy pixel or a dim side of uneven illumination); then the pixels of that value, and
    those beside them as far below the median (the ramp that interpolation leaves at the
    edge of a fill), are set to the median. Frames whose noise reads as zero (constant
    ones) are left alone. Isolated dark pixels are better replaced by
    their neighbours first (:func:`replace_isolated_outliers`). ``stats``: the frames'
    :func:`_frame_statistics`, when the caller has them."""
    f = np.array(frames, dtype=np.float32, copy=True)
    if f.ndim != 3 or min(f.shape[-2:]) < 3:  # as the other steps (one column had no noise estimate)
        return f, 0
    median, _, noise = _frame_statistics(f) if stats is None else stats
    floor = median - OUTLIER_NOISE_SIGMAS * noise
    lowest = f.min(axis=(1, 2))
    at_lowest = f == lowest[:, None, None]
    filled = (noise > 0) & (lowest < floor) & (at_lowest.sum(axis=(1, 2)) >= min(f.shape[-2:]) // 2)
    fill = filled[:, None, None] & at_lowest
    # and the pixels beside it that are as dark (the ramp that interpolation leaves)
    dark = fill | (ndimage.binary_dilation(fill, structure=np.ones((1, 3, 3), bool)) & (f < floor[:, None, None]))
    f[dark] = np.broadcast_to(median[:, None, None], f.shape)[dark]
    return f, int(dark.sum())


def read_fixed_frames(source, indices: np.ndarray, psf_sigma_px: float | None = None,
                      read_lock=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames at 0-based ``indices`` of ``source``, read (holding ``read_lock``, if any),
    checked to be finite (a bad one named by its 1-based number in ``source``) and, when
    ``psf_sigma_px`` (the PSF sigma in camera pixels) is given, with their outliers fixed,
    isolated NaN or infinite pixels first (:func:`replace_isolated_nonfinite`):
    ``(frames, pixels replaced in each frame, frames dimmed, their ratios)`` as
    :func:`fix_outliers` returns them, the NaN ones among the pixels replaced."""
    with read_lock or contextlib.nullcontext():
        block = read_frames(source, indices)
    if psf_sigma_px is None:
        check_finite(block, np.asarray(indices) + 1)
        return block, np.zeros(len(block), np.int64), np.zeros(0, np.int64), np.zeros(0)
    nonfinite = np.count_nonzero(~np.isfinite(block), axis=(-2, -1)) if block.ndim == 3 else np.zeros(0, np.int64)
    block, _ = replace_isolated_nonfinite(block)
    check_finite(block, np.asarray(indices) + 1, isolated_replaced=True)  # (so every one counted was replaced)
    block, replaced, dimmed, ratios = fix_outliers(block, psf_sigma_px)
    return block, replaced + nonfinite, dimmed, ratios


def read_fixed_piece(source, indices: np.ndarray, batch_size: int, psf_sigma_px: float | None = None,
                     read_lock=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              Exception | None]:
    """A piece of :func:`iter_read_batches` read and fixed together
    (:func:`read_fixed_frames`): ``(indices, *read_fixed_frames(...), None)``. When that
    raises (a frame that is not finite, a read that fails), the piece's batches of
    ``batch_size`` frames are read one by one to find the first that fails, and the
    frames before it come back, fixed together again (read twice: only on this path),
    with its error, for the caller to raise once it has localized them: a bad frame
    loses none of the frames before it. When every batch reads on its own (the piece
    was too large for the memory), they come back fixed batch by batch, without error."""
    try:
        return (indices, *read_fixed_frames(source, indices, psf_sigma_px, read_lock), None)
    except Exception as piece_error:
        error: Exception | None = piece_error
    parts = []
    for start in range(0, len(indices), batch_size):
        try:
            parts.append(read_fixed_frames(source, indices[start : start + batch_size], psf_sigma_px, read_lock))
        except Exception as batch_error:
            error = batch_error  # (the failing batch's own error names its frame)
            break
    else:
        error = None
    good = indices[: sum(len(p[0]) for p in parts)]
    if not len(good):
        return good, np.zeros((0, 0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), error
    if error is not None:
        try:  # the frames before the bad one together again, for the bead judgement
            return (good, *read_fixed_frames(source, good, psf_sigma_px, read_lock), error)
        except Exception:
            pass
    offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    return (good, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] + o for p, o in zip(parts, offsets)]), np.concatenate([p[3] for p in parts]), error)


def fix_outliers(frames: np.ndarray, psf_sigma_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The outlier steps before localizing, in order: isolated hot and dead pixels
    (:func:`replace_isolated_outliers`), darker regions (:func:`fill_dark_pixels`), bright
    objects (:func:`dim_bright_objects`). Returns the frames, the pixels replaced in each
    frame, and the 0-based indices of the frames whose bright objects were dimmed with
    their ratios. The frame statistics are computed once, again only after a step changed
    pixels (computed by each step, they cost a sixth of the time: 0.56 against 0.47 ms a
    frame)."""
    f = np.array(frames, dtype=np.float32, copy=True)
    if f.ndim != 3 or min(f.shape[-2:]) < 3:  # each step leaves such frames alone
        return f, np.zeros(len(f) if f.ndim == 3 else 0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    given, stats = f, _frame_statistics(f)
    f, isolated = replace_isolated_outliers(f, psf_sigma_px, stats)  # (each step returns a new array)
    if isolated:
        stats = _frame_statistics(f)
    f, dark = fill_dark_pixels(f, stats)
    if dark:
        stats = _frame_statistics(f)
    # (a pixel replaced by its neighbours' mean or the median is far from what it was)
    replaced = (np.count_nonzero(f != given, axis=(1, 2)) if isolated + dark else np.zeros(len(f), np.int64))
    f, dimmed, ratios = dim_bright_objects(f, psf_sigma_px, stats)
    return f, replaced, dimmed, ratios


#: an object is dimmed when it is more than this many times as bright (above the frame's
#: median) as the frame's bright molecules (the 75th percentile of its other peaks): beads
#: that hid the molecules around them reached 6.6 to 1,000 (a bead of 100,000 photons on the
#: ISBI 2013 frames reads 6.6: at 10 it was left, and that frame's Jaccard fell from 63.2 to
#: 45.4 %). Real molecules 5-10 times as bright as the rest (multi-labelled, aggregates,
#: a cluster) pass it too, and dimmed with their neighbours, 5 % of the molecules at 6,000
#: photons among 600-900 cost 2-6 points of Jaccard: they are told from beads by blinking
#: (:data:`PERSISTENCE_SHARE`)
BRIGHT_OBJECT_RATIO = 5.0
#: peaks a frame needs (above :data:`OUTLIER_NOISE_SIGMAS` noise) before its brightest
#: can be judged against the others
BRIGHT_OBJECT_MIN_PEAKS = 3
#: the light of a dimmed object is scaled down in a square around its peak reaching this
#: many PSF sigmas and one pixel more (13 x 13 pixels for the ISBI PSF: its corners 7.7
#: sigmas away), the molecules in it with it
BRIGHT_OBJECT_RADIUS_SIGMAS = 4.0
#: frames a batch needs before an object must stay put to be taken for a bead
#: (:func:`dim_bright_objects`); fewer, and every object above the bound is dimmed. Frames
#: are read and fixed in pieces of at least this many (:data:`PIECE_FRAMES`,
#: :func:`iter_read_batches`)
PERSISTENCE_MIN_FRAMES = 4
#: share of a batch's frames in which an object above the bound must be bright (at least
#: half the bound) within a pixel of the same place to be taken for a bead: a fiducial
#: bead stays put in every frame, a molecule blinks
PERSISTENCE_SHARE = 0.5


class BrightObjectWarning(UserWarning):
    """Frames held an object far brighter than their molecules, dimmed before localizing."""


def warn_bright_objects(frame_numbers: np.ndarray, ratios: np.ndarray) -> None:
    """The warning of :func:`dim_bright_objects` for the 1-based ``frame_numbers`` it
    changed (once per run: the caller says when)."""
    warnings.warn(f"frame {int(frame_numbers[0])}"
                  + (f" (and {len(frame_numbers) - 1} more in this batch)" if len(frame_numbers) > 1 else "")
                  + f": an object {float(ratios[0]):.0f} times as bright as the frame's molecules (a fiducial bead? a "
                  "bright spot?) was dimmed to the brightest molecule's level before localizing: each frame is "
                  "scaled by its maximum, and such an object hid the molecules around it. Its own localizations are "
                  "not molecules: crop or mask it away, or filter them out. Shown once a run; turning the outlier "
                  "fix off leaves the frames as they are", BrightObjectWarning, stacklevel=3)


def dim_bright_objects(frames: np.ndarray, psf_sigma_px: float,
                       stats=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frames`` (n, rows, cols) float32 with objects far brighter than the frame's
    molecules dimmed, the 0-based indices of the frames changed, and for each of them how
    many times its brightest object outshone the molecules.

    The networks and CEL0 scale each frame (the networks: each region of about 64 x 64
    pixels of a larger frame) by its minimum and maximum, as in training, where
    the brightest thing in a patch is a molecule. One fiducial bead 20,000 photons bright
    among molecules of 600-900 photons left 36 % Jaccard away from it instead of 87 %, at
    100,000 photons none. Peaks are the maxima of the frame smoothed over 3 x 3 pixels
    within 5 x 5, higher than :data:`OUTLIER_NOISE_SIGMAS` noise standard deviations
    above the median (peaks of one value, as on a saturated plateau, count once); a frame
    whose noise reads as zero (a constant one) is left alone. When the
    brightest of at least :data:`BRIGHT_OBJECT_MIN_PEAKS` is more than
    :data:`BRIGHT_OBJECT_RATIO` times the 75th percentile of the others, each peak above
    that bound has its light above the median scaled down, in a square reaching
    :data:`BRIGHT_OBJECT_RADIUS_SIGMAS` PSF sigmas (``psf_sigma_px`` camera pixels) and a
    pixel from it, to the brightest peak under the bound: it keeps a molecule's shape (a clipped, flat top
    gave a very bright real molecule three localizations), and the brightest molecule
    sets the frame's scale again. In a batch of at least :data:`PERSISTENCE_MIN_FRAMES`
    frames, only an object that stays put is dimmed: bright (half the bound) within a
    pixel of the same place in at least :data:`PERSISTENCE_SHARE` of the frames, as a
    fiducial bead is; a molecule 5-10 times as bright as the rest (multi-labelled, an
    aggregate) blinks and is left alone, with its neighbours (dimmed, they cost 2-6 points
    of Jaccard, ``benchmarks/outliers.py``). Fewer frames cannot tell them apart: there
    every object above the bound is dimmed (localizing reads frames in pieces of at least
    16, 4-15 of very large frames, :func:`iter_read_batches`: only selections of 1-3
    frames are not judged). Clean frames are left as they are. ``stats``: the frames'
    :func:`_frame_statistics`, when the caller has them."""
    f = np.array(frames, dtype=np.float32, copy=True)
    changed, ratios = [], []
    if f.ndim != 3 or min(f.shape[-2:]) < 3:
        return f, np.zeros(0, np.int64), np.zeros(0)
    median, _, noise = _frame_statistics(f) if stats is None else stats
    smooth = ndimage.uniform_filter(f, size=(1, 3, 3), mode="nearest")
    local_max = ndimage.maximum_filter1d(ndimage.maximum_filter1d(smooth, 5, axis=1, mode="nearest"), 5, axis=2,
                                         mode="nearest")
    above = f - median[:, None, None]
    frame, row, col = np.nonzero((smooth == local_max) & (above > OUTLIER_NOISE_SIGMAS * noise[:, None, None]))
    heights = above[frame, row, col]
    starts = np.searchsorted(frame, np.arange(len(f) + 1))
    w = int(np.ceil(BRIGHT_OBJECT_RADIUS_SIGMAS * psf_sigma_px)) + 1
    # the brightest smoothed value within a pixel, above each frame's median: where an object stays put
    near = ndimage.maximum_filter(smooth, size=(1, 3, 3), mode="nearest") - median[:, None, None]
    judge_persistence = len(f) >= PERSISTENCE_MIN_FRAMES
    for i in np.flatnonzero((np.diff(starts) >= BRIGHT_OBJECT_MIN_PEAKS) & (noise > 0)):
        peaks = slice(starts[i], starts[i + 1])
        h = np.unique(heights[peaks])[::-1]  # descending; a plateau once
        if len(h) < BRIGHT_OBJECT_MIN_PEAKS:
            continue
        reference = h[1:][int(0.25 * (len(h) - 2))]  # the others' 75th percentile
        bound = BRIGHT_OBJECT_RATIO * reference
        if h[0] <= bound:
            continue
        level = h[h <= bound][0]  # the brightest molecule
        brightest_first = np.argsort(-heights[peaks], kind="stable")
        ratio = None
        for r, c in zip(row[peaks][brightest_first], col[peaks][brightest_first]):
            peak = f[i, r, c] - median[i]  # as dimmed so far (a molecule on the object's flank, a plateau)
            if peak <= bound or (judge_persistence and np.mean(near[:, r, c] > 0.5 * bound) < PERSISTENCE_SHARE):
                continue  # a molecule, however bright: it blinks, a bead stays put
            window = f[i, max(r - w, 0):r + w + 1, max(c - w, 0):c + w + 1]
            lit = window > median[i]
            window[lit] = median[i] + (window[lit] - median[i]) * (level / peak)
            ratio = ratio or peak / reference
        if ratio:
            changed.append(i)
            ratios.append(ratio)
    return f, np.asarray(changed, np.int64), np.asarray(ratios)


def _frame_statistics(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of ``f`` (n, rows, cols): the median, the 99th percentile and the noise
    standard deviation (:func:`frame_noise_adu`'s, from the differences of neighbouring
    pixels in every other row), each from about :data:`STATISTICS_PIXELS` to twice as many
    values (all 2,016 differences of a 64 x 64 frame): half the time of whole-frame
    medians, which capped a GPU's rate at 3,400 frames/s."""
    n = len(f)
    flat = f.reshape(n, -1)
    sample = flat[:, :: max(1, flat.shape[1] // STATISTICS_PIXELS)]
    k50, k99 = (sample.shape[1] - 1) // 2, int(0.99 * (sample.shape[1] - 1))
    ordered = np.partition(sample, (k50, k99), axis=1)
    diffs = np.abs(np.diff(f[:, ::2], axis=-1)).reshape(n, -1)
    diffs = diffs[:, :: max(1, diffs.shape[1] // STATISTICS_PIXELS)]
    return ordered[:, k50], ordered[:, k99], _noise_from_differences(diffs)


def frame_noise_adu(frames: np.ndarray) -> np.ndarray:
    """Each frame's noise standard deviation (n,), in the frames' unit (ADU for a
    camera's), from the absolute differences of horizontally neighbouring pixels
    (molecules, a minority of the pixels, hardly count): ``MAD_TO_STD / sqrt(2)`` times
    their median, interpolated for whole-number frames (:func:`robust_sd`); 0 for frames
    under 2 pixels wide and for constant ones."""
    f = np.asarray(frames, dtype=np.float32)
    f = f[None] if f.ndim == 2 else f
    if f.shape[-1] < 2:
        return np.zeros(len(f))
    return _noise_from_differences(np.abs(np.diff(f, axis=-1)).reshape(len(f), -1))


def _noise_from_differences(abs_diffs: np.ndarray) -> np.ndarray:
    """The noise standard deviation (n,) of the frames whose absolute differences of
    neighbouring pixels are the rows of ``abs_diffs`` (n, m): :func:`robust_sd` of them
    (the differences centred on 0) over sqrt(2), interpolated where :data:`WHOLE_SHARE` of
    a row and at least half of its differences that are not 0 are whole numbers (a float
    frame on a background of exact zeros, clipped or noise-free, has over 90 % of its
    differences 0.0 but no whole one besides: read in unit steps, its noise was 0.16 for
    spots of height 2, and the range floor scaled it to a third of its range). Where
    more than half of a non-whole row is 0 (frames padded with a constant, that
    background of zeros), from its mean instead: ``E|d| = 2 sd / sqrt(pi)``
    for differences d ~ N(0, 2 sd^2)."""
    d = np.asarray(abs_diffs)
    rounded = np.round(d)
    is_whole = d == rounded
    whole = ((np.count_nonzero(is_whole, axis=1) >= WHOLE_SHARE * d.shape[1])
             # (and most of those that are not 0: a float frame on a background of exact zeros is no camera's)
             & (2 * np.count_nonzero(is_whole & (d != 0), axis=1) >= np.count_nonzero(d, axis=1)))
    noise = robust_sd(np.where(whole[:, None], rounded, d), whole) / math.sqrt(2.0)
    flat = (noise == 0) & ~whole
    noise[flat] = d[flat].mean(axis=1, dtype=np.float64) * (math.sqrt(math.pi) / 2.0) if d.shape[1] else 0.0
    return noise


#: a set of values counts as whole numbers, as a camera's ADU are, when this share of them
#: is (hot pixels replaced by a mean of neighbours are not: one in 8 frames of 64 x 64 took
#: 3 % of the differences of neighbouring pixels off the whole numbers)
WHOLE_SHARE = 0.9


def robust_sd(deviations: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Per row of ``deviations`` (n, m; absolute deviations from a centre): the standard
    deviation of a normal distribution of that median absolute deviation,
    :data:`MAD_TO_STD` x the median.

    Deviations of whole-number values (a camera's ADU; rows where ``whole`` (n,) is True,
    whose deviations must be whole numbers) are whole numbers, whose median moves in steps
    of 1: a noise of 3.33 ADU read 3.15 or 3.67, one of 1.3 ADU read 1.05 (and 0.6 ADU
    read 1.05, 0.45 read 0). For them each value is taken as spread evenly over its unit
    interval (the median interpolated within it) and the variance that spread adds, 1/12,
    taken out again; above a median of 1000 the steps do not matter and the plain median
    is used. The result is then the standard deviation of the whole numbers themselves
    (their rounding's 1/12 included), within 5 % from 0.8 ADU up and 6 % at 0.6."""
    d = np.asarray(deviations)
    whole = np.asarray(whole, bool)
    sd = np.zeros(len(d))
    if not d.size:
        return sd
    sd[~whole] = MAD_TO_STD * np.median(d[~whole].astype(np.float64), axis=1)
    rows = np.flatnonzero(whole)
    if not len(rows):
        return sd
    w = d if len(rows) == len(d) else d[rows]
    m = w.shape[1]
    j = np.partition(w, (m - 1) // 2, axis=1)[:, (m - 1) // 2]  # the first value at or past the middle
    half = 0.5 * m
    below = np.count_nonzero(w < j[:, None], axis=1).astype(np.float64)
    count = np.count_nonzero(w == j[:, None], axis=1).astype(np.float64)
    # the interval [0, 1/2] (the folded [-1/2, 1/2]) for j == 0, else [j - 1/2, j + 1/2]
    mad = np.where(j == 0, 0.5 * half / count, j - 0.5 + (half - below) / count)
    mad[(j == 0) & (count == m)] = 0.0  # all equal: no noise to see
    sd[rows] = np.sqrt(np.maximum((MAD_TO_STD * mad) ** 2 - 1.0 / 12.0, 0.0))
    large = j >= 1000.0
    sd[rows[large]] = MAD_TO_STD * np.median(w[large].astype(np.float64), axis=1)
    return sd
