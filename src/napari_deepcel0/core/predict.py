"""Streaming inference: frames in, fine-grid maps and localizations out, batch by batch.

Frames come from any *frame source* (:mod:`.frames`, where the helpers to count, read and
select frames live). Only one batch is in memory at a time, so stacks of any length stream in
constant memory.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import pandas as pd
import torch

from .acquisition import Acquisition, is_real_number, is_whole_number
from .cancel import is_cancelled
from .defaults import FRAME_RANGE_FLOOR
from .devices import autocast, resolve_device, resolve_precision
from .frames import (
    MAD_TO_STD,
    PIECE_PIXELS,
    WHOLE_SHARE,
    FrameSourceError,
    check_camera_frames,
    _frame_shape,
    frame_count,
    frames_per_batch,
    iter_read_batches,
    parse_frame_selection,
    piece_frames,
    read_fixed_piece,
    warn_bright_objects,
)
from .columns import FRAME, INTENSITY, empty_table
from .localize import extract_localizations
from .model_io import LoadedModel, load_bundled_model, load_model
from .network import upsample_nearest
from .photometry import add_photometry, check_camera_settings, warn_if_noisier_than_the_camera_allows
from .progress import counted, time_left_text


# ------------------------------------------------------------------ models
class MapModel(Protocol):
    """Anything that turns camera frames into non-negative fine-grid maps."""

    acquisition: Acquisition
    mass_column: str

    def default_threshold(self) -> float:
        """The threshold, in the maps' units, that the read-out uses when none is given."""
        ...

    def maps(self, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(maps (n, N_r, N_c) tensor, per-frame mass scale)."""
        ...

    # Optional: ``read_out(frames) -> (maps, mass scale, refine_maps, subpixel)``: the
    # maps and how to place their maxima within a pixel (see :meth:`DeepLocalizer.read_out`);
    # without it, the 3 x 3 centre of mass on the maps. Optional: ``mass_radius_px``, the
    # fine pixels around a maximum whose map values make its mass (see
    # :func:`~.localize.find_peaks`); without it, the 3 x 3 sum. Optional:
    # ``check_localizations(frames, table, numbers)``, called with each batch's frames and
    # localizations before any fit on the frames (CEL0 warns of localizations fainter than
    # the noise: :meth:`~.cel0.Cel0Localizer.check_localizations`).


#: relative PSF FWHM difference between a model and the data that is not worth a warning:
#: the training frames vary the FWHM by +-5 % (``TrainingDataConfig.fwhm_jitter``), and
#: the Acquisition widget's estimate reads ISBI 2013's 1.5 % wide (262 against 258 nm;
#: 6 % from the 20 frames it sampled before 2026-11-29)
FWHM_REL_TOL = 0.10


#: how :func:`acquisition_mismatch` names a PSF width that differs (:func:`psf_differs`)
PSF_MISMATCH = "PSF FWHM"


def acquisition_mismatch(model_acq: Acquisition, acq: Acquisition, fwhm_rel_tol: float = FWHM_REL_TOL) -> list[str]:
    """Human-readable differences between a model's acquisition and the data's that
    change what the network sees: the PSF's FWHM in camera pixels more than
    ``fwhm_rel_tol`` apart (the network sees pixels; a pixel size that differs on its
    own does not matter, since coordinates use the data's), and the upsampling."""
    out = []
    model_px, data_px = model_acq.fwhm_nm / model_acq.pixel_size_nm, acq.fwhm_nm / acq.pixel_size_nm
    if abs(model_px - data_px) > fwhm_rel_tol * model_px:
        out.append(f"{PSF_MISMATCH}: model {model_px:.2f} camera pixels ({model_acq.fwhm_nm:g} nm at "
                   f"{model_acq.pixel_size_nm:g} nm), data {data_px:.2f} ({acq.fwhm_nm:g} nm at "
                   f"{acq.pixel_size_nm:g} nm)")
    if model_acq.upsampling != acq.upsampling:
        out.append(f"upsampling L: model {model_acq.upsampling}, data settings {acq.upsampling} (the model's L is "
                   "used: its fine grid, nothing else changes)")
    return out


# Test-time orientation averaging: the symmetries of the square pixel grid (and of an
# isotropic PSF) as (transpose first?, quarter turns); 4 = the flips, 8 = all.
ORIENTATIONS = {
    1: ((False, 0),),
    4: ((False, 0), (False, 2), (True, 1), (True, 3)),
    8: tuple((t, k) for t in (False, True) for k in range(4)),
}


def psf_differs(mismatch: list[str]) -> bool:
    """Whether the differences of :func:`acquisition_mismatch` include the PSF's width,
    which costs detections and precision (another L alone changes nothing but the grid)."""
    return any(m.startswith(PSF_MISMATCH) for m in mismatch)


def orient(x: torch.Tensor, transpose: bool, turns: int) -> torch.Tensor:
    """Images (..., rows, cols) transposed (if ``transpose``), then turned by ``turns``
    quarter turns; :func:`unorient` undoes it."""
    x = x.transpose(-1, -2) if transpose else x
    return torch.rot90(x, turns, dims=(-2, -1))


def unorient(x: torch.Tensor, transpose: bool, turns: int) -> torch.Tensor:
    """The inverse of :func:`orient` with the same arguments."""
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.transpose(-1, -2) if transpose else x


#: side in camera pixels of the regions whose own minimum and maximum scale a larger frame
#: (:func:`scale_to_unit_range`): the frames the models were checked on (ISBI 2013, the
#: paper's tests, the training frames) are 64 x 64
SCALING_TILE_PX = 64

#: a region's range is at least this many of its frame's noise standard deviations (and at
#: most the frame's range; :func:`scale_to_unit_range`): about twice the peak of a molecule
#: of 800 photons over 10 background photons, so a region without one is not stretched
#: until its noise looks like molecules. Chosen on 256 x 256 frames between 50 and 100
#: (``benchmarks/frame_scaling.py --noise-floor K``): at 50 log-normal sparse frames lost
#: points to noise peaks, at 100 crowded frames of even brightness lost 6
SCALING_NOISE_FLOOR = 70.0


def frame_noise_sd(x: torch.Tensor) -> torch.Tensor:
    """:func:`~.frames.frame_noise_adu` of frames (n, rows, cols) on their device (n,):
    the same estimate in torch, for frames already on a GPU (``tests/test_predict.py``
    checks that the two agree)."""
    d = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(-2).float()
    if d.shape[-1] == 0:
        return torch.zeros(x.shape[:-2], dtype=x.dtype, device=x.device)
    m = d.shape[-1]
    is_whole = d == d.round()
    whole = (is_whole.sum(-1) >= WHOLE_SHARE * m) & (2 * (is_whole & (d != 0)).sum(-1) >= (d != 0).sum(-1))
    d = torch.where(whole[..., None], d.round(), d)
    lower = d.median(dim=-1).values  # the value at (m - 1) // 2
    median = 0.5 * (lower - (-d).median(dim=-1).values)  # (numpy's: the mean of the two middle values)
    half = 0.5 * m
    below = (d < lower[..., None]).sum(-1).float()
    count = (d == lower[..., None]).sum(-1).float()
    mad = torch.where(lower == 0, 0.5 * half / count, lower - 0.5 + (half - below) / count)
    mad = torch.where((lower == 0) & (count == m), torch.zeros_like(mad), mad)
    interpolated = ((MAD_TO_STD * mad) ** 2 - 1.0 / 12.0).clamp(min=0.0).sqrt()
    sd = torch.where(whole & (lower < 1000.0), interpolated, MAD_TO_STD * median)
    sd = sd / math.sqrt(2.0)
    flat = (sd == 0) & ~whole
    # E|d| = 2 sigma / sqrt(pi) for d ~ N(0, 2 sigma^2)
    return torch.where(flat, d.mean(dim=-1) * (math.sqrt(math.pi) / 2.0), sd).to(x.dtype)


def scale_to_unit_range(x: torch.Tensor, tile_px: int | None = SCALING_TILE_PX,
                        range_floor: float | None = FRAME_RANGE_FLOOR) -> torch.Tensor:
    """Camera frames (n, rows, cols) scaled by their minimum and maximum, to [0, 1] (a
    region's scale, below, may lift a bright pixel between regions a little above 1); a
    constant frame or region becomes 0.

    A frame's range is taken as at least ``range_floor`` of its noise standard deviations
    (:func:`frame_noise_sd`; :data:`FRAME_RANGE_FLOOR`; None or 0: its own range however
    faint, as before 2026-11-29), so a frame holding no molecule keeps its noise faint
    instead of stretching it until it looks like molecules.

    A frame of under 96 pixels a side (and any frame with ``tile_px`` None) is scaled by
    its own minimum and range, as the models were trained and checked. A side of 96
    pixels or more is cut into ``side / tile_px`` regions, rounded half up (2 for 96-159
    pixels, 3 for 160-223, 4 for 224-287, ...), and each pixel is scaled by its region's
    minimum and range, interpolated bilinearly between the regions' centres (no steps); a
    region's range is at least :data:`SCALING_NOISE_FLOOR` noise standard deviations of
    its frame and at most its frame's range, so that a region without a molecule (the
    camera around a cell, sparse frames) is not stretched until its noise looks like
    molecules, and noisy frames fall back to whole-frame scaling. Scaled by its own
    maximum, a large frame's brightest molecule made the rest look faint: on 256 x 256
    frames with log-normal molecule brightness (sigma 0.8) Jaccard at 50 nm went 75.7 ->
    83.6 % (``python benchmarks/frame_scaling.py``, docs/benchmarks.md)."""
    rows, cols = x.shape[-2:]
    n_r, n_c = ((1, 1) if tile_px is None else
                (max(1, int(rows / tile_px + 0.5)), max(1, int(cols / tile_px + 0.5))))
    lo = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - lo
    regions = (n_r, n_c) != (1, 1)
    noise_sd = frame_noise_sd(x)[..., None, None] if regions or range_floor else None
    if range_floor:
        span = torch.maximum(span, range_floor * noise_sd)
    if regions:
        grid = x[:, None]
        tile_hi = torch.nn.functional.adaptive_max_pool2d(grid, (n_r, n_c))
        tile_lo = -torch.nn.functional.adaptive_max_pool2d(-grid, (n_r, n_c))
        floor = torch.minimum(SCALING_NOISE_FLOOR * noise_sd[:, None], span[:, None])
        tile_span = torch.maximum(tile_hi - tile_lo, floor)

        def spread(t):
            return torch.nn.functional.interpolate(t, size=(rows, cols), mode="bilinear", align_corners=False)[:, 0]

        lo, span = spread(tile_lo), spread(tile_span)
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(x))


def scaling_settings(tile_px: int | None = SCALING_TILE_PX, range_floor: float | None = FRAME_RANGE_FLOOR) -> dict:
    """How frames are scaled for the network (:func:`scale_to_unit_range`), as a run's
    protocol records it: ``scaling_tile_px`` and ``range_floor_sd`` (None: off)."""
    return {"scaling_tile_px": None if tile_px is None else int(tile_px),
            "range_floor_sd": float(range_floor) if range_floor else None}


def localizer_scaling(settings: dict) -> dict:
    """The :class:`DeepLocalizer` arguments of :func:`scaling_settings`' ``settings`` (a
    protocol's), so that a run is built from what its protocol records."""
    return {"scaling_tile_px": settings["scaling_tile_px"], "range_floor": settings["range_floor_sd"]}


#: fine-grid pixels that go through the network at once on a CPU (2 frames of 64 x 64
#: camera pixels at L = 4), whatever the batch size: a pass's activations (4 MB a 256 x
#: 256 map of 32 bf16 channels) then stay in the processor's caches instead of streaming
#: from memory, and the elementwise layers (BatchNorm, ReLU, pooling, upsampling) stop
#: waiting on it. The maps are the same (each frame's own computation, in the same
#: order); on a 2-core EPYC (32 MB L3), with the encoder's pooling before its ReLU, end to
#: end 20.1 -> 29.3 frames/s (docs/benchmarks.md, Speed; benchmarks/results/cpu_network_passes.json)
CPU_PASS_FINE_PIXELS = 2 * 256 * 256


class AcquisitionMismatchWarning(UserWarning):
    """The data's acquisition (PSF width in camera pixels, upsampling) is not the one the
    model was trained for (:func:`acquisition_mismatch`)."""


#: what :class:`AcquisitionMismatchWarning` adds to the differences it names
MISMATCH_CONSEQUENCE = (" (the network sees molecules of another width than it was trained on: it finds fewer and "
                        "places them worse; a model trained for these settings localizes better)")


class DeepLocalizer:
    """A trained DeepCEL0 / Deep-STORM network, ready to map frames.

    Parameters
    ----------
    model
        A model file path, a :class:`LoadedModel`, a
        :class:`~napari_deepcel0.core.training.TrainingResult` (a model just trained,
        not saved), or None for the bundled model.
    acquisition
        The data's acquisition (pixel size used for coordinates; camera gain, offset and
        read noise for ``photometry``/``fit_positions``). Defaults to the model's: frames
        given as an array carry no pixel size, so their coordinates are computed with
        it (a :class:`~.tiff_stack.FrameStack` whose file states another one warns,
        :class:`PixelSizeWarning`). A PSF FWHM in camera pixels more than
        :data:`FWHM_REL_TOL` from the model's warns, naming both values
        (:class:`AcquisitionMismatchWarning`, :func:`acquisition_mismatch`; make it an
        error with ``warnings.simplefilter("error", AcquisitionMismatchWarning)``).
    pixel_size_nm
        The data's camera pixel size in nm, replacing the acquisition's (e.g. a
        stack's ``pixel_size_nm``, read from its metadata); None keeps it.
    device, precision
        See :mod:`napari_deepcel0.core.devices`. ``precision="auto"`` uses bf16 where
        the hardware computes it natively.
    batch_size
        Frames of 64 x 64 camera pixels per network pass; larger frames go in
        proportionally fewer (:func:`frames_per_batch`).
    orientations
        1 (default), 4 or 8: also run the network on the frame's flips (4) or flips
        and quarter turns (8), and take the sub-pixel position of each molecule from
        the average of the maps turned back (:meth:`read_out`). Detection and
        confidence stay those of the plain map. Costs 4 or 8 times the network time;
        on the ISBI 2013 stack 8 gave +0.4 point of Jaccard and -0.5 nm RMSE over
        the parabola read-out
        (``benchmarks/isbi.py --orientations 8``, docs/benchmarks.md). With 1, each
        maximum is placed by a parabola through the network's output before its ReLU
        (:meth:`read_out`).
    scaling_tile_px
        A frame side of 1.5 times this many camera pixels or more is cut into regions
        about this long, each scaled to [0, 1] by its own minimum and maximum
        (:func:`scale_to_unit_range`); None scales each frame by its own minimum and
        maximum whatever its size (before 2026-11-29, the only way).
    range_floor
        A frame's range is taken as at least this many of its noise standard deviations
        (:data:`FRAME_RANGE_FLOOR`, :func:`scale_to_unit_range`), so that empty and
        near-empty frames do not have their noise stretched into molecules; None or 0
        scales each frame by its own range however faint (before 2026-11-29).
    """

    mass_column = "confidence"

    def __init__(self, model=None, acquisition: Acquisition | None = None, device="auto", precision="auto",
                 batch_size: int = 16, orientations: int = 1, pixel_size_nm: float | None = None,
                 scaling_tile_px: int | None = SCALING_TILE_PX, range_floor: float | None = FRAME_RANGE_FLOOR):
        from .training import TrainingResult  # (training imports this module's neighbours: here, not at the top)

        if model is None:
            model = load_bundled_model()
        elif isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        elif isinstance(model, TrainingResult):  # a model just trained, not saved
            model = LoadedModel.from_training_result(model)
        elif not isinstance(model, LoadedModel):
            bare = ("; a network alone lacks the normalisation and acquisition it was trained with: give the "
                    "TrainingResult that train returned") if isinstance(model, torch.nn.Module) else ""
            raise TypeError(f"DeepLocalizer takes a model file path, a LoadedModel (load_model), a TrainingResult "
                            f"(train) or None (the bundled model), got {type(model).__name__}{bare}")
        self.loaded: LoadedModel = model
        self.info = model.info
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if not (is_whole_number(batch_size) and batch_size >= 1):
            raise ValueError(f"batch size must be a whole number >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if isinstance(orientations, bool) or orientations not in ORIENTATIONS:
            raise ValueError(f"orientations must be one of {sorted(ORIENTATIONS)}, got {orientations!r}")
        self.orientations = int(orientations)
        if scaling_tile_px is not None and not (is_whole_number(scaling_tile_px) and scaling_tile_px >= MIN_FRAME_SIDE_PX):
            raise ValueError(f"scaling_tile_px must be None (scale each frame as a whole) or a whole number of camera "
                             f"pixels >= {MIN_FRAME_SIDE_PX}, got {scaling_tile_px!r}")
        self.scaling_tile_px = None if scaling_tile_px is None else int(scaling_tile_px)
        if range_floor is not None and not (is_real_number(range_floor) and 0 <= range_floor < math.inf):
            raise ValueError(f"range_floor must be None (off) or a number of noise standard deviations >= 0, "
                             f"got {range_floor!r}")
        self.range_floor = float(range_floor) if range_floor else None
        # a copy: Module.to moves in place, and a second localizer of the same LoadedModel on
        # another device would have moved the first one's network under it. In fp32 on a CPU
        # its BatchNorms are folded into the convolutions: the same maps to float rounding,
        # 10-14 % more frames/s. Not in bf16, where the folded weights round otherwise (ISBI
        # 2013: 63.56 % for 63.60 %, 22 fewer pairs of 59,000): the numbers measured stay; nor
        # on a GPU, whose fp32 convolutions round to TF32 and where it was not measured.
        fold = self.precision == "fp32" and self.device.type == "cpu"
        network = model.network.fused() if fold else copy.deepcopy(model.network)
        self.network = network.to(self.device).to(memory_format=torch.channels_last).eval()
        model_acq = self.info.acquisition
        if acquisition is None:
            acquisition = model_acq
        if pixel_size_nm is not None:
            acquisition = acquisition.replace(pixel_size_nm=float(pixel_size_nm))
        self.mismatch = acquisition_mismatch(model_acq, acquisition)
        if self.mismatch:
            warnings.warn("model and data acquisition differ: " + "; ".join(self.mismatch)
                          + (MISMATCH_CONSEQUENCE if psf_differs(self.mismatch) else ""), AcquisitionMismatchWarning,
                          stacklevel=2)
        # coordinates use the data's pixel size on the model's fine grid
        self.acquisition = acquisition.replace(upsampling=model_acq.upsampling)

    def default_threshold(self) -> float:
        """The model's default threshold (:attr:`~.model_io.ModelInfo.default_threshold`)."""
        return self.info.default_threshold

    @property
    def scaling(self) -> dict:
        """How this localizer scales frames, as protocols record it (:func:`scaling_settings`)."""
        return scaling_settings(self.scaling_tile_px, self.range_floor)

    def normalise(self, frames: np.ndarray) -> torch.Tensor:
        """Min/max to [0, 1] per frame, or per region of a large frame
        (:func:`scale_to_unit_range` with :attr:`scaling_tile_px` and :attr:`range_floor`),
        then the training standardisation; returns (n, rows, cols) float32 on the device."""
        x = torch.as_tensor(np.ascontiguousarray(frames, dtype=np.float32), device=self.device)
        return ((scale_to_unit_range(x, self.scaling_tile_px, self.range_floor) - self.info.norm_mean)
                / self.info.norm_std)

    @torch.no_grad()
    def network_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output for camera frames (n, rows, cols) already normalised
        (:meth:`normalise`), before the ReLU of a DeepCEL0 head: (n, L rows, L cols),
        float32. On a CPU the frames go through the network a few at a time
        (:data:`CPU_PASS_FINE_PIXELS`): the same maps, faster."""
        x = upsample_nearest(x, self.info.acquisition.upsampling).contiguous(memory_format=torch.channels_last)
        step = len(x)
        if self.device.type == "cpu":
            step = max(1, CPU_PASS_FINE_PIXELS // max(1, x.shape[-2] * x.shape[-1]))
        with autocast(self.device, self.precision):
            parts = [self.network(x[i : i + step], linear=True) for i in range(0, len(x), step)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.float()[:, 0]

    def network_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Maps of camera frames (n, rows, cols) already normalised (:meth:`normalise`):
        (n, L rows, L cols), float32, >= 0."""
        return self.network_outputs(x).clamp_min_(0)

    def maps(self, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Fine-grid maps (n, L rows, L cols), float32, >= 0, and the per-frame
        mass scale ``1 / spike_value`` that turns a 3 x 3 sum into a confidence."""
        return self.network_maps(self.normalise(frames)), self._mass_scale(len(frames))

    def _mass_scale(self, n_frames: int) -> np.ndarray:
        return np.full(n_frames, 1.0 / self.info.spike_value)

    def read_out(self, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, str]:
        """What :func:`localize_stream` reads molecules from: the maps and mass scale of
        :meth:`maps`, the maps to place the maxima on, and how
        (:func:`~napari_deepcel0.core.localize.find_peaks`'s ``subpixel``). With
        orientation averaging, the 3 x 3 centre of mass on the average map; without,
        the parabola through the output before the ReLU, from the same network pass:
        70 % of the maxima are lone spikes that the centre of mass left on the pixel
        centre (ISBI 2013 frames 1-60: RMSE 24.86 -> 24.48 nm, Jaccard 63.17 ->
        63.52 %; ``benchmarks/pre_relu_refinement.py``)."""
        x = self.normalise(frames)
        outputs = self.network_outputs(x)
        maps = outputs.clamp_min(0)
        scale = self._mass_scale(len(frames))
        if self.orientations > 1:
            return maps, scale, self._orientation_mean(x, maps), "com"
        return maps, scale, outputs, "parabola"

    def _orientation_mean(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        total = maps.clone()
        for transpose, turns in ORIENTATIONS[self.orientations][1:]:
            total += unorient(self.network_maps(orient(x, transpose, turns)), transpose, turns)
        return total / self.orientations


# ---------------------------------------------------------------- pipeline
@dataclass
class BatchResult:
    """One finished batch of a streaming run."""

    frames: np.ndarray  # 1-based frame numbers of this batch
    table: pd.DataFrame  # localizations of these frames
    maps: np.ndarray | None  # fine-grid maps when requested
    done: int  # frames finished so far
    total: int  # frames to process
    elapsed_s: float
    pixels_replaced: int = 0  # isolated hot/dead pixels replaced so far (fix_outlier_pixels)
    frames_dimmed: int = 0  # frames whose bright objects (beads) were dimmed so far (fix_outlier_pixels)

    @property
    def frames_per_second(self) -> float:
        """Frames done per second of the run so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else math.inf

    @property
    def remaining_s(self) -> float | None:
        """Seconds left at the speed so far (None before any time has passed)."""
        if self.done < 1 or self.elapsed_s <= 0:
            return None
        return (self.total - self.done) * self.elapsed_s / self.done

    def time_left(self) -> str:
        """``", about 12 min left"`` for a progress line; empty when unknown or finished."""
        return time_left_text(self.remaining_s)


class NothingFoundWarning(UserWarning):
    """A localization run found no molecule in any frame (:func:`localize`)."""


class PixelSizeWarning(UserWarning):
    """The frames' file states another camera pixel size than the one used."""


#: frames narrower than this (in camera pixels) hold no whole molecule: most likely an
#: array with its frames on the last axis, read as many narrow frames
MIN_FRAME_SIDE_PX = 8


def warn_if_pixel_size_differs(source, acquisition: Acquisition, rel_tol: float = 0.02) -> None:
    """Warn when ``source`` states a camera pixel size (a :class:`FrameStack` from a file
    with ImageJ/OME metadata) more than ``rel_tol`` from the one coordinates are computed
    with: without it a 160 nm stack localized with the bundled model's 100 nm came out
    shrunk by 100/160 without a word."""
    stated = getattr(source, "pixel_size_nm", None)
    used = acquisition.pixel_size_nm
    if stated is None or abs(stated - used) <= rel_tol * stated:
        return
    name = getattr(source, "path", "the stack")
    warnings.warn(f"{name} states {stated:g} nm camera pixels, but the coordinates are computed with "
                  f"{used:g} nm (the localizer's acquisition); to use the file's, make the localizer with "
                  f"pixel_size_nm={stated:g} (DeepLocalizer) or an Acquisition of that pixel size",
                  PixelSizeWarning, stacklevel=3)


#: threads that prepare frames ahead of the model in :func:`prepared_pieces` (one fewer
#: than the CPU's cores, at most 4): the outlier steps spend most of their time outside
#: Python's lock: two threads fixed frames 1.5 to 2.6 times as fast as one on a 2-core
#: machine (``python benchmarks/speed.py --outlier-threads``)
PREFETCH_WORKERS = max(1, min(4, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count() or 2) - 1))


def _runs_on_gpu(model) -> bool:
    """Whether ``model`` says it runs on another device than the CPU (a ``device``
    attribute, as DeepLocalizer and Cel0Localizer have; anything else: no)."""
    device = getattr(model, "device", None)
    return isinstance(device, torch.device) and device.type != "cpu"


def read_ahead_pieces(batch_size: int, frame_shape: tuple[int, int]) -> int:
    """Pieces (:func:`~.frames.piece_frames`) that :func:`prepared_pieces` reads ahead on a
    GPU: one for each prefetch thread and one more, while they hold no more pixels than
    :data:`PREFETCH_WORKERS` + 1 pieces of :data:`~.frames.PIECE_PIXELS`; at least two
    (frames of 2048 x 2048 pixels: two pieces of 4 frames, 0.9 GB in the outlier steps)."""
    piece_pixels = piece_frames(batch_size, frame_shape) * int(frame_shape[0]) * int(frame_shape[1])
    return max(2, min(PREFETCH_WORKERS + 1, (PREFETCH_WORKERS + 1) * PIECE_PIXELS // piece_pixels))


def prepared_pieces(source, pieces: Iterator[np.ndarray], batch_size: int, sigma_px: float | None, prefetch: bool,
                    ahead: int, cancel=None) -> Iterator[tuple]:
    """``read_fixed_piece(...)`` for each piece of 0-based frame indices
    (:func:`~.frames.iter_read_batches`), in order: ``(indices, frames, pixels replaced in
    each frame, frames dimmed, their ratios, error)``, read, checked and with their
    outliers fixed when ``sigma_px`` is given (:func:`~.frames.read_fixed_piece`: a piece
    cut short by a bad frame comes with the error to raise once its frames are
    localized); stops when ``cancel()`` becomes true.

    With ``prefetch``, :data:`PREFETCH_WORKERS` background threads prepare the next
    ``ahead`` pieces (:func:`read_ahead_pieces`), so that reading and the
    outlier steps (0.4-0.7 ms a 64 x 64 frame on one CPU core) overlap the model's work on
    the GPU instead of adding to it: on an H200, 10,000 frames ran at 1,376 frames/s
    without it, 3,116 with 4 threads and 3,469 without the outlier steps. These threads
    read ``source`` one at a time (a TIFF file handle is not to be shared; reads by other
    code meanwhile are the caller's to keep apart), and they have stopped when the
    iteration ends, also when it ends early. A piece that was read ahead is dropped, not
    yielded, when ``cancel()`` became true while it was waited for."""
    if not prefetch:
        for idx in pieces:
            if is_cancelled(cancel):
                return
            yield read_fixed_piece(source, idx, batch_size, sigma_px)
        return
    if is_cancelled(cancel):
        return
    read_lock = threading.Lock()
    with ThreadPoolExecutor(PREFETCH_WORKERS, thread_name_prefix="deepcel0-prefetch") as pool:

        def submit(idx):
            return pool.submit(read_fixed_piece, source, idx, batch_size, sigma_px, read_lock)

        pending = deque(submit(idx) for _, idx in zip(range(ahead), pieces))
        try:
            while pending and not is_cancelled(cancel):
                piece = pending.popleft().result()
                if is_cancelled(cancel):  # pressed while this piece was waited for
                    return
                following = next(pieces, None)
                if following is not None:
                    pending.append(submit(following))
                yield piece
        finally:  # the pieces not started are dropped; leaving the pool waits for the one being read
            for future in pending:
                future.cancel()


def localize_stream(
    model: MapModel,
    source,
    frames=None,
    threshold: float | None = None,
    batch_size: int | None = None,
    method: str = "peaks",
    keep_maps: bool = False,
    cancel: Callable[[], bool] | threading.Event | None = None,
    photometry: bool = False,
    fit_positions: bool = False,
    fix_outlier_pixels: bool = True,
    prefetch: bool | None = None,
) -> Iterator[BatchResult]:
    """Localize frames batch by batch, yielding a :class:`BatchResult` per batch.

    Stops early (after the current batch; with ``photometry`` or ``fit_positions``, which
    yield one result per frame, after the current frame) when ``cancel()`` becomes true;
    what was yielded stays valid. ``source`` is an array ((frames, rows, cols) or one
    (rows, cols) frame, in ADU) or a stack read from a file (:func:`~.tiff_stack.read_stack`);
    an array carries no pixel size: the coordinates use the localizer's. ``frames`` is a
    1-based selection of ``source``'s frames (``"1-20,30"``, a number, or a list of
    numbers: ``(1, 3)`` is frames 1 and 3; see :func:`parse_frame_selection`); the
    tables keep those numbers, so select frames here rather than slicing an array
    (``stack[100:110]`` is numbered from 1). ``threshold`` is in the maps' units, not a
    fraction (None: ``model.default_threshold()``, 8.5 for the bundled model; see
    docs/user-guide.md). ``photometry`` adds ``intensity [photon]`` and
    ``offset [photon]`` fitted on the camera frames at the found positions
    (:mod:`~napari_deepcel0.core.photometry`; it needs the acquisition's gain and offset).
    ``fit_positions`` fits the positions too, each within half a fine pixel of the
    map's, by maximum likelihood on the camera frames, and adds ``uncertainty [nm]``
    (with the photometry columns: it is the same fit). ``fix_outlier_pixels`` first
    replaces hot and dead pixels, fills zero-padded borders and dims objects far
    brighter than the molecules, such as fiducial beads (:func:`~.frames.fix_outliers`;
    one such pixel or object spoilt its whole frame), with a
    :class:`~.frames.BrightObjectWarning` at the first frame dimmed. ``prefetch``: read
    the frames and fix their outliers for the next batches in background threads while
    the model works on this one (default: when the model runs on a GPU, where the CPU's
    share of the work otherwise bounds the rate; see :func:`prepared_pieces`).
    """
    photometry = photometry or fit_positions  # (the position fit fits the photons too)
    indices, frame_shape, threshold, batch_size = _checked_stream_inputs(
        model, source, frames, threshold, batch_size, method, photometry)
    warn_if_pixel_size_differs(source, model.acquisition)
    if prefetch is None:
        prefetch = _runs_on_gpu(model)
    per_pass = frames_per_batch(batch_size, frame_shape)
    # read and fixed in pieces of at least 16 frames (4 to 15 of frames over 512 x 512; a bead
    # is told from a bright molecule by staying put), to the network in batches of per_pass
    pieces = iter_read_batches(indices, per_pass, frame_shape)
    ahead = read_ahead_pieces(per_pass, frame_shape)
    sigma_px = model.acquisition.sigma_px if fix_outlier_pixels else None
    mass_radius_px = getattr(model, "mass_radius_px", None) if method == "peaks" else None
    t0 = time.perf_counter()
    done = replaced = dimmed = 0
    # closed explicitly: a stream left early (closed, or an error below) stops the prefetch
    # thread then, not whenever the garbage collector gets to the generator
    with contextlib.closing(prepared_pieces(source, pieces, per_pass, sigma_px, prefetch, ahead, cancel)) as prepared:
        for piece, frames_read, replaced_in, changed, ratios, error in prepared:
            for start in range(0, len(piece), per_pass):
                if start and is_cancelled(cancel):
                    return
                idx, block = piece[start : start + per_pass], frames_read[start : start + per_pass]
                numbers = idx + 1
                # the fixes of this batch's frames (the piece's were judged together)
                replaced += int(replaced_in[start : start + per_pass].sum())
                here = (changed >= start) & (changed < start + per_pass)
                if here.any() and not dimmed:
                    warn_bright_objects(piece[changed[here]] + 1, ratios[here])
                dimmed += int(here.sum())
                if hasattr(model, "read_out") and method == "peaks":
                    maps, mass_scale, refine_maps, subpixel = model.read_out(block)
                else:
                    (maps, mass_scale), refine_maps, subpixel = model.maps(block), None, "com"
                table = extract_localizations(maps, model.acquisition, threshold, method=method,
                                              mass_scale=mass_scale, mass_column=model.mass_column, frames=numbers,
                                              refine_maps=refine_maps, subpixel=subpixel,
                                              mass_radius_px=mass_radius_px)
                if hasattr(model, "check_localizations"):  # (CEL0: localizations fainter than the noise)
                    model.check_localizations(block, table, numbers)
                maps_out = maps.cpu().numpy() if keep_maps else None
                if not photometry:
                    done += len(idx)
                    yield BatchResult(numbers, table, maps_out, done, len(indices), time.perf_counter() - t0,
                                      replaced, dimmed)
                    continue
                if done == 0:  # on the first batch (several frames: a better noise estimate than one frame's)
                    check_camera_settings(block, model.acquisition)
                    warn_if_noisier_than_the_camera_allows(block, table, model.acquisition, numbers)
                # the fit on the frames can take seconds a frame: results, progress and Cancel per frame
                for part, i in _fitted_frame_by_frame(block, numbers, table, model.acquisition, fit_positions,
                                                      cancel):
                    done += 1
                    yield BatchResult(numbers[i : i + 1], part, None if maps_out is None else maps_out[i : i + 1],
                                      done, len(indices), time.perf_counter() - t0, replaced, dimmed)
                if is_cancelled(cancel):
                    return
            if error is not None:  # a bad frame: raised after the frames before it were localized
                raise error


def _checked_stream_inputs(model: MapModel, source, frames, threshold, batch_size, method: str,
                           photometry: bool) -> tuple[np.ndarray, tuple[int, int], float, int]:
    """The checks of :func:`localize_stream` before any frame is read: ``(0-based frame
    indices, (rows, cols) of a frame, threshold, batch size)``, the defaults filled in;
    ValueError (FrameSourceError for an empty stack) for what cannot run, a warning for
    what runs but is likely a mistake."""
    if not (hasattr(model, "maps") and hasattr(model, "acquisition")):
        raise TypeError(f"the localizer comes first, then the frames: localize(DeepLocalizer(...), frames); got "
                        f"{type(model).__name__} as the localizer")
    if isinstance(source, (str, bytes, os.PathLike)):
        raise TypeError(f"the frames must be an array or a stack read from a file, got the path {str(source)!r}: "
                        f"open it with read_stack({str(source)!r})")
    n = frame_count(source)
    if n == 0:
        raise FrameSourceError("the stack is empty (0 frames)")
    indices = parse_frame_selection(frames, n)
    check_camera_frames(source)
    rows, cols = _frame_shape(source)
    if min(rows, cols) < MIN_FRAME_SIDE_PX:
        warnings.warn(f"frames of {rows} x {cols} pixels are narrower than a molecule's light ({MIN_FRAME_SIDE_PX} "
                      "pixels); if the frames are on the array's last axis (MATLAB, h5py), put them first (in Python: "
                      "np.moveaxis(frames, -1, 0))", UserWarning, stacklevel=4)
    threshold = model.default_threshold() if threshold is None else float(threshold)
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    if getattr(model, "orientations", 1) > 1 and method != "peaks":
        raise ValueError(f"orientation averaging refines peaks; it does not work with method {method!r}")
    if photometry and model.mass_column == INTENSITY:
        raise ValueError(f"this localizer already reports {INTENSITY!r}; photometry and the position fit are for "
                         "map-based localizers")
    if batch_size is None:
        batch_size = getattr(model, "batch_size", 16)
    if not (is_whole_number(batch_size) and batch_size >= 1):
        raise ValueError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    return indices, (rows, cols), threshold, int(batch_size)


def _fitted_frame_by_frame(block: np.ndarray, numbers: np.ndarray, table: pd.DataFrame, acquisition: Acquisition,
                           fit_positions: bool, cancel) -> Iterator[tuple[pd.DataFrame, int]]:
    """``(table of frame i with photometry (and fitted positions), i)`` for each frame of
    a batch, until ``cancel()`` (also pressed during the batch's network pass)."""
    frame_of_row = table[FRAME].to_numpy()
    for i, number in enumerate(numbers):
        if is_cancelled(cancel):
            return
        part = add_photometry(block[i : i + 1], table[frame_of_row == number].reset_index(drop=True),
                              acquisition, [number], fit_positions=fit_positions, check_camera=False)
        yield part, i


def localize(model: MapModel, source, frames=None, threshold=None, batch_size=None, method="peaks",
             progress: Callable[[BatchResult], None] | None = None, cancel=None, photometry: bool = False,
             fit_positions: bool = False, fix_outlier_pixels: bool = True,
             prefetch: bool | None = None) -> pd.DataFrame:
    """Localize a whole selection and return one table (see :func:`localize_stream`),
    sorted by frame; a :class:`NothingFoundWarning` when a run that was not cancelled
    found no molecule at all."""
    tables = []
    for result in localize_stream(model, source, frames, threshold, batch_size, method, cancel=cancel,
                                  photometry=photometry, fit_positions=fit_positions,
                                  fix_outlier_pixels=fix_outlier_pixels, prefetch=prefetch):
        tables.append(result.table)
        if progress:
            progress(result)
    if tables and not is_cancelled(cancel) and sum(len(t) for t in tables) == 0:
        used = model.default_threshold() if threshold is None else float(threshold)
        high = ", a threshold too high" if used > 0 else ""  # (CEL0's default is 0: every maximum)
        warnings.warn(f"no molecule was found in {counted(result.done, 'frame')} above the threshold of {used:.4g} "
                      f"(in the maps' units; the localizer's default is {model.default_threshold():.4g}): frames "
                      f"without molecules{high}, or a localizer not made for frames like these (a model trained for "
                      "other data, a CEL0 lambda too large)?", NothingFoundWarning, stacklevel=2)
    if not tables:  # cancelled before the first batch
        empty = empty_table(model.mass_column)
        if photometry or fit_positions:
            return add_photometry(np.zeros((0, 1, 1)), empty, model.acquisition, [], fit_positions=fit_positions)
        return empty
    out = pd.concat(tables, ignore_index=True)
    return out.sort_values(FRAME, kind="stable").reset_index(drop=True)
