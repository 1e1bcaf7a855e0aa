"""CEL0-IRL1 sparse deconvolution: the model-based baseline of the DeepCEL0 paper.

For a camera frame ``y`` (background removed, divided by its maximum) the solver
looks for a non-negative fine-grid map ``x`` minimising (paper Eq. 7)::

    F(x) = 0.5 ||A x - y||^2 + Phi_CEL0(x),   x >= 0,   A = S_L K,
    Phi_CEL0(x) = sum_i lam - (a_i^2 / 2) (|x_i| - sqrt(2 lam) / a_i)^2 1{|x_i| < sqrt(2 lam) / a_i}

with ``a_i`` the exact column norms of ``A``
(:meth:`~napari_deepcel0.core.optics.AcquisitionOperator.column_norms`, shorter at the
frame border). ``Phi_CEL0`` is concave in ``|x_i|``, so its tangent at the current
iterate majorises it; iteratively reweighted l1 (IRL1, Ochs et al. 2015, as in
Gazagnes et al. 2017) minimises the majoriser::

    w_i = sqrt(2 lam) a_i - a_i^2 |x_i|   if |x_i| < sqrt(2 lam) / a_i,   else 0
    x  <- argmin_{x >= 0} 0.5 ||A x - y||^2 + sum_i w_i x_i        (FISTA, step 1 / ||A||^2)

and so never increases ``F`` (up to the accuracy of the inner solve). FISTA restarts
(``t = 1``, extrapolation from the current ``x``) at every outer iteration. Both loops
stop on the relative change ``||x_k - x_{k-1}|| / ||x_{k-1}|| < tol`` (a change from
0 to 0 counts as converged), per frame.

Frames are solved in batches; a frame that has converged (inner or outer loop)
leaves the active batch, so it costs no further work. ``A`` is applied as two small
matrix products (exact zero boundary), on CPU or CUDA.

Real frames carry a camera offset and a background that a sparse non-negative ``x``
cannot explain (it would cover the frame in small spikes), so a per-frame
background is subtracted first; see :func:`background_levels`.

Units: maps are in the units of the max-normalised frame; a molecule of ``P``
photons shows as map values summing to about ``P * gain / max``, and
:meth:`Cel0Localizer.maps` returns the per-frame factor ``max / gain`` that turns map
sums back into photons.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from .acquisition import Acquisition, is_whole_number
from .cancel import Cancelled, is_cancelled
from .defaults import (
    CEL0_LAM,
    CEL0_MAX_INNER,
    CEL0_MAX_OUTER,
    CEL0_METHOD,
    CEL0_READINGS,
    CEL0_THRESHOLD,
    CEL0_TOL,
    SWEEP_FRAMES,
    SWEEP_LAM_RANGE,
    SWEEP_LAMS,
    SWEEP_TOL_NM,
)
from .devices import resolve_device
from .frames import (
    FrameSourceError,
    check_finite,
    frame_count,
    frame_noise_adu,
    parse_frame_selection,
    read_fixed_frames,
    warn_bright_objects,
)
from .columns import INTENSITY
from .localize import FRAME, X_NM, Y_NM, extract_localizations
from .losses import cel0_penalty, cel0_threshold
from .metrics import Score, check_table, check_tolerance, frame_span, score, warn_if_small_tolerance
from .optics import AcquisitionOperator
from .progress import counted
from .protocol import frame_ranges_text

#: The mass column of CEL0 tables: the molecule's photons.
MASS_COLUMN = INTENSITY
#: Percentile of a frame's pixels taken as its background by ``background="auto"``.
AUTO_BACKGROUND_PERCENTILE = 25.0
# (lambda, readings, threshold, iteration caps: in .defaults, documented there)
DEFAULT_LAM = CEL0_LAM
READINGS = CEL0_READINGS
DEFAULT_METHOD = CEL0_METHOD
DEFAULT_THRESHOLD = CEL0_THRESHOLD


class Cel0Cancelled(Cancelled):
    """The solve was cancelled; ``x`` and ``records`` hold the iterates so far
    (frames that had not converged have ``converged = False``). A
    :class:`~.cancel.Cancelled`, not a ``RuntimeError``, so that handlers of errors do
    not report a cancel as a failure."""

    def __init__(self, x: torch.Tensor, records: list["FrameRecord"]):
        done = sum(r.converged for r in records)
        super().__init__(f"CEL0 solve cancelled ({done} of {len(records)} frames of the batch had converged)")
        self.x = x
        self.records = records


# ================================================================ settings
@dataclass(frozen=True)
class SolverSettings:
    """Validated settings of one IRL1 solve.

    Parameters
    ----------
    lam
        CEL0 weight ``lambda`` > 0, relative to the scale of ``y`` (for frames divided
        by their maximum, as here and in the reference: about 1e-3 to 1).
    max_outer, max_inner
        Iteration caps of the IRL1 (reweighting) loop and of each FISTA solve.
    tol
        Relative-change tolerance of both loops.
    """

    lam: float = DEFAULT_LAM
    max_outer: int = CEL0_MAX_OUTER
    max_inner: int = CEL0_MAX_INNER
    tol: float = CEL0_TOL

    def __post_init__(self):
        lam = self.lam
        if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)):
            raise ValueError(f"lambda must be a number, got {lam!r}")
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"lambda must be a finite number > 0, got {lam}")
        object.__setattr__(self, "lam", float(lam))
        for name in ("max_outer", "max_inner"):
            object.__setattr__(self, name, _count(getattr(self, name), name))
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tolerance must be a finite number > 0, got {self.tol}")
        object.__setattr__(self, "tol", float(self.tol))


def _count(value, what: str) -> int:
    """``value`` as an int after checking that it is a whole number >= 1 (not a bool or
    a float: :func:`~.acquisition.is_whole_number`), else ValueError naming ``what``."""
    if not (is_whole_number(value) and value >= 1):
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def parse_background(value) -> str | float | None:
    """Check a background setting: ``"auto"``, ``None`` (or ``"none"``) or a level in
    ADU (a number or a numeric string, finite and >= 0)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"background must be 'auto', 'none' or a level in ADU, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"background must be 'auto', None or a level in ADU, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"background level must be a finite number >= 0 ADU, got {value}")
    return float(value)


@dataclass(frozen=True)
class FrameRecord:
    """Convergence record of one frame.

    ``outer_iterations``: IRL1 iterations run; ``inner_iterations``: FISTA iterations
    summed over them; ``converged``: the outer loop met the tolerance (False when it
    hit ``max_outer`` or was cancelled); ``objective``: final ``F(x)`` on the
    normalised frame (dimensionless).
    """

    outer_iterations: int
    inner_iterations: int
    converged: bool
    objective: float

    def to_dict(self) -> dict:
        """The record as a plain dict."""
        return asdict(self)


@dataclass(frozen=True)
class SolveProgress:
    """What a solve's progress callback receives after each outer iteration."""

    outer: int  # outer iterations run so far by the frames still active
    active: int  # frames still iterating
    total: int  # frames in the batch
    objective: np.ndarray  # F(x) of every frame of the batch at its current iterate


# ================================================================ solver
def _as_batch(y, op: AcquisitionOperator) -> torch.Tensor:
    t = torch.as_tensor(y)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or tuple(t.shape[-2:]) != op.camera_shape:
        raise ValueError(f"frames must be (frames, {op.camera_shape[0]}, {op.camera_shape[1]}), got {tuple(t.shape)}")
    bad = ~torch.isfinite(t).flatten(1).all(dim=1)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise FrameSourceError(f"frame {first + 1} of the batch contains NaN or infinite values")
    return t.to(device=op.device, dtype=op.dtype)


def fista_iterations_between_reads(device: torch.device) -> int:
    """FISTA iterations between reads of which frames have converged (a read waits for
    the device: free on a CPU, a stall of the GPU's queue on a GPU)."""
    return 1 if device.type == "cpu" else 25


def _converged(change: torch.Tensor, old: torch.Tensor, tol: float) -> torch.Tensor:
    """Per frame: ``||change|| < tol ||old||``, or no change at all (0 -> 0)."""
    size = torch.linalg.vector_norm(change, dim=(-2, -1))
    return (size < tol * torch.linalg.vector_norm(old, dim=(-2, -1))) | (size == 0)


def objective(x, y, op: AcquisitionOperator, lam: float, norms) -> np.ndarray:
    """``F(x) = 0.5 ||A x - y||^2 + Phi_CEL0(x)`` per frame, float64.

    Parameters
    ----------
    x
        Fine-grid maps (n, N_r, N_c) or (N_r, N_c).
    y
        Camera frames (n, M_r, M_c) or (M_r, M_c), in the units ``lam`` refers to.
    op
        The acquisition operator of the frame geometry.
    lam
        CEL0 weight (> 0), or one per frame.
    norms
        Column norms ``a_i`` of ``A``, (N_r, N_c) (``op.column_norms()``).

    Returns
    -------
    ndarray (n,) of objective values.
    """
    x = torch.as_tensor(x, device=op.device, dtype=op.dtype)
    x = x[None] if x.ndim == 2 else x
    y = torch.as_tensor(y, device=op.device, dtype=op.dtype)
    y = y[None] if y.ndim == 2 else y
    if np.ndim(lam):  # one lambda per frame
        if np.shape(lam) != (len(x),):
            raise ValueError(f"one lambda per frame: {len(x)} frames, got {np.shape(lam)} lambdas")
        lam = torch.as_tensor(np.asarray(lam, np.float64), device=op.device)[:, None, None]
    else:
        lam = float(lam)
    resid = (op.forward(x) - y).double()
    a = torch.as_tensor(norms, device=op.device, dtype=torch.float64)
    penalty = cel0_penalty(x.double(), lam, a)
    return (0.5 * resid.square().sum(dim=(-2, -1)) + penalty.sum(dim=(-2, -1))).cpu().numpy()


def _prox_grad_step(op: AcquisitionOperator, gamma: float):
    """``(z, b) -> max(z - gamma A^T A z + b, 0)`` for batches (n, N_r, N_c).

    ``A^T A z = R^T R z C^T C``: the two large products run as single 2-D GEMMs over
    the whole batch, and the last one also adds ``z + b`` (one pass fewer)."""
    R, C = op.R, op.C
    c_t = C.T.contiguous()
    g_r_t = (gamma * R.T).contiguous()
    n_r, n_c = op.fine_shape

    def step(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = len(z)
        camera = R @ (z.reshape(n * n_r, n_c) @ c_t).reshape(n, n_r, -1)  # A z
        back = (g_r_t @ camera).reshape(n * n_r, -1)  # gamma R^T (A z), before C
        out = torch.addmm((z + b).reshape(n * n_r, n_c), back, C, alpha=-1.0)
        return out.clamp_min_(0.0).reshape(n, n_r, n_c)

    return step


def _fista(x0, b, step, settings, cancel):
    """``argmin_{x >= 0} 0.5 ||A x - y||^2 + w . x`` from ``x0`` for a batch, with
    ``b = gamma (A^T y - w)``. Returns the solutions, the iterations each frame used
    and whether ``cancel`` was set.

    A frame stops at the iteration its change falls below ``tol``: from then on it is
    frozen by a mask, and frozen frames leave the batch whenever the mask is read
    (every iteration on a CPU; every few on a GPU, where reading it waits for the
    device). The results are the same either way."""
    out = x0.clone()
    iters = torch.zeros(len(x0), dtype=torch.int64, device=x0.device)
    idx = torch.arange(len(x0), device=x0.device)  # rows of the batch still in it
    running = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
    stopped_at = torch.zeros(len(x0), dtype=torch.int64, device=x0.device)
    read_every = fista_iterations_between_reads(x0.device)
    x, z, t, j = x0, x0, 1.0, 0

    def finish():
        out[idx] = x
        iters[idx] = torch.where(running, j, stopped_at)

    while j < settings.max_inner:
        if is_cancelled(cancel):
            finish()
            return out, iters.cpu(), True
        j += 1
        x_new = step(z, b)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        change = x_new - x
        z_new = torch.add(x_new, change, alpha=(t - 1.0) / t_new)
        done = _converged(change, x, settings.tol)
        if read_every > 1:  # (else every frame in the batch is still running)
            done &= running
            keep = running[:, None, None]
            x_new, z_new = torch.where(keep, x_new, x), torch.where(keep, z_new, z)
        x, z, t = x_new, z_new, t_new
        stopped_at = torch.where(done, j, stopped_at)
        running = running & ~done
        if j % read_every == 0 and not bool(running.all()):
            frozen = ~running
            out[idx[frozen]] = x[frozen]
            iters[idx[frozen]] = stopped_at[frozen]
            idx, x, z, b, stopped_at = idx[running], x[running], z[running], b[running], stopped_at[running]
            running = running[running]
            if len(idx) == 0:
                return out, iters.cpu(), False
    finish()
    return out, iters.cpu(), False


def _solver_settings(lam, n: int, max_outer, max_inner, tol) -> tuple[SolverSettings, float | np.ndarray]:
    """The validated settings of a solve of ``n`` frames (the iteration caps and tolerance,
    the same for all frames) and its lambda: a float, or an (n,) array of one per frame,
    each checked as :class:`SolverSettings` checks one."""
    per_frame = np.ndim(lam) > 0
    if per_frame and np.shape(lam) != (n,):
        raise ValueError(f"one lambda per frame: {n} frames, got {np.shape(lam)} lambdas")
    frame_settings = [SolverSettings(lam=value, max_outer=max_outer, max_inner=max_inner, tol=tol)
                      for value in (lam if per_frame else [lam])]
    return frame_settings[0], (np.array([s.lam for s in frame_settings]) if per_frame else frame_settings[0].lam)


class _Problem:
    """The CEL0 problem of one batch: its frames ``y``, lambda and column norms ``a``; the
    IRL1 weights and the objective of any of its frames (``rows``, indices into the batch).

    ``lam`` is a float, or an (n,) float64 array of one lambda per frame. They take two paths:
    one lambda's threshold map ``sqrt(2 lam) / a`` is computed once, by
    :func:`~.losses.cel0_threshold` (torch computes a float over a tensor as the float times
    the reciprocal), one per frame's at every outer iteration from (n, 1, 1) roots (a
    division). The two maps differ in the last bit: one path for both could change
    results."""

    def __init__(self, y: torch.Tensor, lam: float | np.ndarray, op: AcquisitionOperator):
        self.y, self.lam, self.op = y, lam, op
        self.norms = torch.as_tensor(op.column_norms(), device=op.device, dtype=op.dtype)
        self.per_frame = np.ndim(lam) > 0
        if self.per_frame:
            self._roots = torch.as_tensor(np.sqrt(2.0 * lam), device=op.device, dtype=op.dtype)[:, None, None]
        else:
            self._below, self._at_zero = cel0_threshold(lam, self.norms), math.sqrt(2.0 * lam) * self.norms

    def weights(self, rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The IRL1 weights ``w_i`` at the iterates ``x`` of ``rows``: the slope of the penalty
        in ``|x_i|`` below the threshold ``sqrt(2 lam) / a_i``, 0 beyond it."""
        if self.per_frame:
            root = self._roots[rows]
            below, at_zero = root / self.norms, root * self.norms
        else:
            below, at_zero = self._below, self._at_zero
        # the penalty's slope in |x| (x >= 0 here), not losses.cel0_penalty_grad, its derivative in x:
        # the same for x > 0, but at 0 that one's sign(x) gives 0, while the l1 majoriser needs the slope
        # at 0+, sqrt(2 lam) a: a zero weight would leave the zero pixels unpenalised
        return torch.where(x < below, at_zero - self.norms.square() * x, torch.zeros_like(x))

    def objective(self, rows: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        """:func:`objective` of the maps ``x`` of ``rows``."""
        lam = self.lam[rows.cpu().numpy()] if self.per_frame else self.lam
        return objective(x, self.y[rows], self.op, lam, self.norms)


def _records(outer: np.ndarray, inner: np.ndarray, converged: np.ndarray, final: np.ndarray) -> list[FrameRecord]:
    """One :class:`FrameRecord` per frame from the solve's per-frame tallies."""
    return [FrameRecord(int(o), int(i), bool(c), float(f)) for o, i, c, f in zip(outer, inner, converged, final)]


def solve(
    y,
    op: AcquisitionOperator,
    lam,
    max_outer: int = CEL0_MAX_OUTER,
    max_inner: int = CEL0_MAX_INNER,
    tol: float = CEL0_TOL,
    progress: Callable[[SolveProgress], None] | None = None,
    cancel=None,
) -> tuple[torch.Tensor, list[FrameRecord]]:
    """CEL0-IRL1 on a batch of frames, as given (no background removal or scaling).

    Each frame stops on its own (relative change < ``tol`` or ``max_outer``); frames
    that stop leave the batch, and so do frames whose FISTA loop has converged.

    Parameters
    ----------
    y
        Camera frames (n, M_r, M_c) or (M_r, M_c), tensor or array, finite. ``lam`` is
        relative to their scale: the reference divides each frame by its maximum
        (see :func:`prepare_frames`).
    op
        Acquisition operator of the frame geometry; its device and dtype are used.
    lam, max_outer, max_inner, tol
        See :class:`SolverSettings` (validated here). ``lam`` may also be one value per
        frame (a lambda sweep solves all its values in one batch).
    progress
        Called with a :class:`SolveProgress` after every outer iteration.
    cancel
        A callable or ``threading.Event``, polled every inner iteration; when it is
        set the solve stops and raises :class:`Cel0Cancelled` carrying the iterates.

    Returns
    -------
    x : tensor (n, N_r, N_c) >= 0 on ``op.device``
    records : one :class:`FrameRecord` per frame
    """
    y = _as_batch(y, op)
    n = len(y)
    if n == 0:
        raise ValueError("no frames to solve")
    settings, lam = _solver_settings(lam, n, max_outer, max_inner, tol)
    problem = _Problem(y, lam, op)
    gamma = 1.0 / op.lipschitz()
    step = _prox_grad_step(op, gamma)
    aty = op.adjoint(y)

    result = torch.zeros((n,) + op.fine_shape, device=op.device, dtype=op.dtype)
    outer = np.zeros(n, np.int64)
    inner = np.zeros(n, np.int64)
    converged = np.zeros(n, bool)
    final = np.zeros(n)  # objective of the frames that have stopped
    active = torch.arange(n, device=op.device)
    x = result.clone()
    for k in range(1, settings.max_outer + 1):
        weights = problem.weights(active, x)
        x_new, used, cancelled = _fista(x, gamma * (aty[active] - weights), step, settings, cancel)
        cpu_active = active.cpu().numpy()
        inner[cpu_active] += used.numpy()
        if cancelled:
            result[active] = x_new
            final[cpu_active] = problem.objective(active, x_new)
            raise Cel0Cancelled(result, _records(outer, inner, converged, final))
        outer[cpu_active] = k
        done = _converged(x_new - x, x, settings.tol)
        if bool(done.any()):
            result[active[done]] = x_new[done]
            stopped = cpu_active[done.cpu().numpy()]
            converged[stopped] = True
            final[stopped] = problem.objective(active[done], x_new[done])
            active, x = active[~done], x_new[~done]
        else:
            x = x_new
        if progress:
            current = final.copy()
            current[active.cpu().numpy()] = problem.objective(active, x)
            progress(SolveProgress(k, len(active), n, current))
        if len(active) == 0:
            break
    result[active] = x
    final[active.cpu().numpy()] = problem.objective(active, x)
    return result, _records(outer, inner, converged, final)


# ===================================================== frames -> normalised y
def background_levels(frames: np.ndarray, background="auto") -> np.ndarray:
    """Per-frame background to subtract, in the frames' units (ADU), shape (n,).

    ``"auto"``: the 25th percentile of the frame's pixels
    (:data:`AUTO_BACKGROUND_PERCENTILE`). On frames simulated with a known flat
    background (offset + 40 photons, read noise 2 ADU) it is within -4..+1 ADU of the
    truth from 0.5 to 9 emitters/um^2, where the median is 1..15 ADU too high (dense
    frames have few molecule-free pixels) and the 5th percentile 8..10 ADU too low
    (it follows the noise); docs/cel0.md gives the numbers. A number: that level for
    every frame. ``None``: nothing is subtracted.
    """
    background = parse_background(background)
    frames = np.asarray(frames)
    frames = frames[None] if frames.ndim == 2 else frames
    if background is None:
        return np.zeros(len(frames))
    if background == "auto":
        return np.percentile(frames, AUTO_BACKGROUND_PERCENTILE, axis=(-2, -1)).astype(np.float64)
    return np.full(len(frames), background)


class BackgroundWarning(UserWarning):
    """A background level at or above every pixel of a frame: nothing left to localize."""


class BackgroundOnlyWarning(UserWarning):
    """Frames show nothing brighter than their noise: CEL0 localizes the noise on them."""


#: a frame whose brightest spot stands less than this many noise standard deviations above
#: its 25th percentile, both smoothed over the PSF, shows no molecule
#: (:func:`background_only_frames`). Measured with :func:`background_only_scores` (Gaussian
#: PSF of 258 nm FWHM on 100 nm pixels): of 50,000 frames of background and noise alone
#: (white Gaussian noise; camera frames of 0.5-100 background photons a pixel, gain 1-2,
#: read noise 0.5-5 ADU; 16 x 16 to 256 x 256 pixels) 96.0 % (256 x 256) to 99.1 %
#: (16 x 16) score below 9 (medians 4-5.5; a few reach 13-18, in frames of a few photons a
#: pixel, whose noise is no Gaussian's); of 7,665 frames holding 1 to 410 molecules at the
#: paper's lowest SNR, 10 dB (its Eq. 14: white Gaussian noise; uniform and filament
#: scenes, 0.05-10 molecules/um^2, 16 x 16 to 128 x 128 pixels) none does: the lowest
#: scores are 9.5 (16 x 16), 14.4 (32 x 32), 19.2 (64 x 64) and 22.2 (128 x 128); the
#: 361 ISBI 2013 frames score 112 to 268
BACKGROUND_ONLY_SIGMAS = 9.0


def background_only_scores(frames: np.ndarray, psf_sigma_px: float) -> np.ndarray:
    """How far each frame's brightest spot stands above its background, in noise standard
    deviations, (n,) float64 (inf for a frame whose noise reads as zero: a constant
    frame, which this cannot judge).

    The frames (n, rows, cols) or (rows, cols), in ADU, are smoothed with the PSF (a
    Gaussian of ``psf_sigma_px`` camera pixels: the matched filter of a molecule); the
    score is (maximum - 25th percentile) of the smoothed frame over the smoothed noise's
    standard deviation, the frame's noise standard deviation (from the median absolute
    difference of neighbouring pixels, robust to molecules: :func:`~.frames.frame_noise_adu`)
    times the filter's norm. The 25th percentile is CEL0's
    own background (:data:`AUTO_BACKGROUND_PERCENTILE`): the median of dense frames lies
    among the molecules."""
    f = np.asarray(frames, dtype=np.float32)
    f = f[None] if f.ndim == 2 else f
    n = len(f)
    if f.shape[-1] < 2:
        return np.full(n, np.inf)
    noise = frame_noise_adu(f)
    smooth = ndimage.gaussian_filter(f, (0.0, psf_sigma_px, psf_sigma_px), mode="nearest").reshape(n, -1)
    half = int(4.0 * psf_sigma_px + 0.5) + 1
    impulse = np.zeros((2 * half + 1, 2 * half + 1))
    impulse[half, half] = 1.0
    filter_norm = float(np.sqrt(np.square(ndimage.gaussian_filter(impulse, psf_sigma_px, mode="constant")).sum()))
    height = smooth.max(axis=1).astype(np.float64) - np.percentile(smooth, AUTO_BACKGROUND_PERCENTILE, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise > 0, height / (noise * filter_norm), np.inf)


class FaintLocalizationsWarning(UserWarning):
    """Many of CEL0's localizations are fainter than the frames' noise lets a molecule be
    told from it: lambda is too small for these frames (:func:`faint_localizations`)."""


#: a localization of fewer photons than this many standard deviations of a molecule's photon
#: count measured on the frame's noise is faint (:func:`faint_localizations`)
FAINT_SIGMAS = 3.0
#: CEL0 warns (:class:`FaintLocalizationsWarning`) of the frames of which more than this
#: share of at least :data:`FAINT_MIN_COUNT` localizations are faint. At lambda 1e-3
#: (``python benchmarks/cel0_faint.py``; uniform molecules, 6 frames of 48 x 48 pixels,
#: ISBI 2013's camera) it flags 5-6 of 6 frames at 0.1 and 0.5 molecules/um^2 (Jaccard at
#: 50 nm 1-8 %; 48 % at lambda 0.01 for 0.5/um^2), 3 of 6 at 0.5/um^2 of 2,000-3,000
#: photons (13 %; 90 % at 0.01), none at 2/um^2 (47 %; 90 %), 6-10/um^2, on ISBI 2013 or on
#: the paper's tests 2b and 4b (faint shares 0.32 and 0.15 at lambda 1e-3)
FAINT_SHARE = 0.4
FAINT_MIN_COUNT = 10


def faint_localizations(frames: np.ndarray, table: pd.DataFrame, acq: Acquisition, numbers=None) -> np.ndarray:
    """(rows,) bool: the localizations of ``table`` (CEL0's, ``intensity [photon]``) whose
    photons are fewer than :data:`FAINT_SIGMAS` standard deviations of a molecule's photon
    count that the noise of its frame allows: ``noise / gain * sqrt(4 pi) * sigma_px``
    photons, the standard deviation of a matched filter's estimate of a Gaussian spot's
    photons on white noise (frame noise by :func:`~.frames.frame_noise_adu`; molecules make it read
    high on dense frames, where so few localizations are faint). ``numbers``: the 1-based
    frame numbers of ``frames`` (default 1..n), which the table's frames refer to."""
    f = np.asarray(frames, dtype=np.float32)
    f = f[None] if f.ndim == 2 else f
    numbers = np.arange(1, len(f) + 1) if numbers is None else np.asarray(numbers, np.int64)
    if not len(table):
        return np.zeros(0, bool)
    sd_photons = frame_noise_adu(f) / acq.gain_adu_per_photon * math.sqrt(4.0 * math.pi) * acq.sigma_px
    order, rows = np.argsort(numbers), table[FRAME].to_numpy()  # each row's frame among ``frames``
    at = order[np.minimum(np.searchsorted(numbers[order], rows), len(numbers) - 1)]
    if not np.array_equal(numbers[at], rows):
        raise ValueError("the table holds frames that are not among the frames' numbers")
    return table[MASS_COLUMN].to_numpy(np.float64) < FAINT_SIGMAS * sd_photons[at]


def faint_frames(table: pd.DataFrame, faint: np.ndarray, quiet=()) -> tuple[np.ndarray, int, int]:
    """The 1-based frames of ``table`` of which more than :data:`FAINT_SHARE` of at least
    :data:`FAINT_MIN_COUNT` localizations are ``faint`` (:func:`faint_localizations`),
    those in ``quiet`` (frames that show only noise) left out; with how many
    localizations these frames hold and how many of them are faint."""
    per_frame = pd.DataFrame({FRAME: table[FRAME].to_numpy(), "faint": faint}).groupby(FRAME)["faint"]
    counts, faints = per_frame.size(), per_frame.sum()
    flagged = counts.index[(counts >= FAINT_MIN_COUNT) & (faints > FAINT_SHARE * counts) & ~counts.index.isin(quiet)]
    return flagged.to_numpy(), int(counts[flagged].sum()), int(faints[flagged].sum())


#: CEL0 finding more than this many times DeepCEL0's localizations on the same frames is a
#: sign that its lambda fits their noise (:func:`excess_over_deepcel0_message`). Measured with
#: ``python benchmarks/cel0_faint.py`` (the bundled model): at lambda 1e-3, 11.2x at 0.5
#: molecules/um^2 and 1.8x at 2/um^2 (Jaccard at 50 nm 8 and 47 %; 48 and 90 % at 0.01,
#: where 1.9x and 0.95x), 0.8-0.95x at 6-10/um^2 and on ISBI 2013, 1.26x on the paper's
#: 10 dB test 2b (31 %; 32 % at its best lambda)
EXCESS_OVER_DEEPCEL0 = 1.5
#: ... counted only when DeepCEL0 found at least this many (a few molecules say little)
EXCESS_MIN_COUNT = 10


def excess_over_deepcel0_message(n_cel0: int, n_deepcel0: int, n_frames: int, lam: float) -> str:
    """A note when CEL0 (at ``lam``) found more than :data:`EXCESS_OVER_DEEPCEL0` times the
    localizations DeepCEL0 found on the same ``n_frames`` frames (and DeepCEL0 at least
    :data:`EXCESS_MIN_COUNT`), else "". On sparse frames, CEL0 at a lambda made for dense
    ones fits their noise, which :class:`FaintLocalizationsWarning` catches only on the
    sparsest (not at 2 molecules/um^2, where this does)."""
    if n_deepcel0 < EXCESS_MIN_COUNT or n_cel0 <= EXCESS_OVER_DEEPCEL0 * n_deepcel0:
        return ""
    per = "" if n_frames <= 1 else f" ({n_cel0 / n_frames:.1f} and {n_deepcel0 / n_frames:.1f} a frame)"
    default = " (the default, made for dense frames like ISBI 2013's)" if lam == DEFAULT_LAM else ""
    return (f"CEL0 found {n_cel0 / n_deepcel0:.1f} times as many localizations as DeepCEL0 on these frames "
            f"({n_cel0} against {n_deepcel0}{per}): if DeepCEL0's model suits these frames, lambda {lam:g}{default} "
            "is likely too small for them, and many of CEL0's localizations are noise; choose lambda with the sweep "
            "against a ground truth")


def background_only_frames(frames: np.ndarray, psf_sigma_px: float) -> np.ndarray:
    """(n,) bool: the frames that show nothing brighter than their noise
    (:func:`background_only_scores` below :data:`BACKGROUND_ONLY_SIGMAS`). CEL0 divides
    each frame by its maximum, as the reference does, so on such a frame it fits the
    noise: about 400 localizations a 64 x 64 frame at the defaults (60 a 24 x 24 one), none
    a molecule."""
    return background_only_scores(frames, psf_sigma_px) < BACKGROUND_ONLY_SIGMAS


def warn_background_only(count: int, total: int) -> None:
    """The :class:`BackgroundOnlyWarning` for ``count`` frames of a batch of ``total``
    that :func:`background_only_frames` finds (once per run: the caller says when)."""
    warnings.warn(f"frames show nothing brighter than their noise ({count} of the {total} of this batch: the "
                  f"brightest spot, smoothed over the PSF, less than {BACKGROUND_ONLY_SIGMAS:g} noise standard "
                  "deviations above the background): CEL0 divides each frame by its maximum and so localizes the noise "
                  "of such frames, tens to hundreds of localizations a frame that are no molecules (about 400 on 64 x "
                  "64 pixels); leave these frames out, or drop their localizations. Shown once a run",
                  BackgroundOnlyWarning, stacklevel=3)


def prepare_frames(frames: np.ndarray, background="auto") -> tuple[np.ndarray, np.ndarray]:
    """Subtract each frame's background and divide by its maximum (the reference's
    scaling, which ``lam`` refers to).

    Parameters
    ----------
    frames
        (n, rows, cols) or (rows, cols), in ADU; must be finite (a frame that is not is
        named by its place, 1..n: callers with stack numbers check first).
    background
        See :func:`background_levels`.

    Returns
    -------
    y : float32 (n, rows, cols), maximum 1 (or all 0 when nothing is above the
        background, e.g. an all-zero or constant frame)
    scale : float64 (n,), the maxima in ADU (0 for such empty frames)
    """
    frames = np.asarray(frames, dtype=np.float32)
    frames = frames[None] if frames.ndim == 2 else frames
    check_finite(frames, np.arange(1, len(frames) + 1))
    y = frames - background_levels(frames, background).astype(np.float32)[:, None, None]
    peak = y.max(axis=(-2, -1)).astype(np.float64)
    level = parse_background(background)
    if isinstance(level, float) and ((peak <= 0) & (frames.max(axis=(-2, -1)) > frames.min(axis=(-2, -1)))).any():
        warnings.warn(f"the background level {level:g} ADU is at or above every pixel of some frames: nothing is "
                      "left to localize in them; use 'auto', or a level below the frames' pixels (the camera "
                      "offset)", BackgroundWarning, stacklevel=2)
    scale = np.where(peak > 0, peak, 0.0)
    safe = np.where(peak > 0, peak, 1.0).astype(np.float32)[:, None, None]
    y = np.where(scale[:, None, None] > 0, y / safe, 0.0).astype(np.float32)
    return y, scale


# ================================================================ MapModel
#: fine-grid pixels solved at once (each copy of the iterate is 4 bytes per pixel, and
#: FISTA holds about ten): 512 frames of 64 x 64 camera pixels at L = 4
FINE_PIXELS_PER_SOLVE = 512 * 256 * 256


def _default_batch_size(device: torch.device) -> int:
    # CPU: the matrix products already use every core, batching only amortises
    # Python overhead, and smaller batches give a livelier progress bar.
    # GPU: a FISTA iteration costs about the same for 1 or 500 frames (kernel launches
    # dominate), so the whole ISBI stack (361 frames) runs as one batch.
    return 512 if device.type == "cuda" else 4


class Cel0Localizer:
    """CEL0-IRL1 as a :class:`~napari_deepcel0.core.predict.MapModel`, so that
    :func:`~napari_deepcel0.core.predict.localize` and
    :func:`~napari_deepcel0.core.predict.localize_stream` run it unchanged.

    Parameters
    ----------
    acquisition
        Pixel size, PSF and ``L`` of the data; ``gain_adu_per_photon`` converts map
        sums to photons.
    lam, max_outer, max_inner, tol
        Solver settings (:class:`SolverSettings`); ``lam`` refers to max-normalised frames.
    background
        ``"auto"``, ``None`` or a level in ADU (:func:`background_levels`).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    batch_size
        Frames solved together (default: 4 on CPU, 512 on CUDA).
    progress, cancel
        Passed to every :func:`solve`; cancelling raises :class:`Cel0Cancelled`
        from :meth:`maps` (batches already yielded by ``localize_stream`` stay valid).

    Attributes
    ----------
    last_records : list of :class:`FrameRecord` of the last :meth:`maps` call.
    last_background_only : (n,) bool array of the last :meth:`maps` call: the frames that
        show nothing brighter than their noise (:func:`background_only_frames`), on which
        CEL0 localizes the noise; the first call that finds any warns
        (:class:`BackgroundOnlyWarning`), once for the localizer's life (a run).
    background_only_count : how many such frames all its :meth:`maps` calls found.
    background_only_numbers : the 1-based numbers of those frames, in the runs of
        :func:`~napari_deepcel0.core.predict.localize_stream` (which numbers the frames).
    faint_count, localization_count : localizations of its runs fainter than their frames'
        noise lets a molecule be (:func:`faint_localizations`), of how many; the first batch
        in which they are more than :data:`FAINT_SHARE` warns
        (:class:`FaintLocalizationsWarning`), once for the localizer's life.
    """

    mass_column = MASS_COLUMN

    @property
    def mass_radius_px(self) -> float:
        """See :func:`mass_radius_for`."""
        return mass_radius_for(self.acquisition)

    def __init__(
        self,
        acquisition: Acquisition,
        lam: float = DEFAULT_LAM,
        max_outer: int = CEL0_MAX_OUTER,
        max_inner: int = CEL0_MAX_INNER,
        tol: float = CEL0_TOL,
        background="auto",
        device="auto",
        batch_size: int | None = None,
        progress: Callable[[SolveProgress], None] | None = None,
        cancel=None,
    ):
        if not isinstance(acquisition, Acquisition):
            raise TypeError(f"Cel0Localizer needs the data's Acquisition (pixel size, PSF), got {acquisition!r}")
        self.acquisition = acquisition
        self.settings = SolverSettings(lam=lam, max_outer=max_outer, max_inner=max_inner, tol=tol)
        self.background = parse_background(background)
        self.device = resolve_device(device)
        if batch_size is not None and not (is_whole_number(batch_size) and batch_size >= 1):
            raise ValueError(f"batch size must be a whole number >= 1, got {batch_size!r}")
        self.batch_size = _default_batch_size(self.device) if batch_size is None else int(batch_size)
        self.progress, self.cancel = progress, cancel
        self.last_records: list[FrameRecord] = []
        self.last_background_only = np.zeros(0, bool)
        self.background_only_count = 0
        self.background_only_numbers: list[int] = []
        self.faint_count = self.localization_count = 0
        self._faint_warned = False
        self._ops: dict[tuple[int, int], AcquisitionOperator] = {}

    def operator(self, camera_shape: tuple[int, int]) -> AcquisitionOperator:
        """The (cached) acquisition operator for frames of ``camera_shape``."""
        key = (int(camera_shape[0]), int(camera_shape[1]))
        if key not in self._ops:
            self._ops[key] = AcquisitionOperator(self.acquisition, key, device=self.device)
        return self._ops[key]

    def default_threshold(self) -> float:
        """:data:`DEFAULT_THRESHOLD`: every positive map value, as in the reference."""
        return DEFAULT_THRESHOLD

    def protocol_counts(self) -> dict:
        """What a run's protocol records of its checks so far (``deepcel0 cel0``'s and the
        CEL0 widget's): the frames that showed only noise and the faint localizations."""
        return {"frames_background_only": frame_ranges_text(self.background_only_numbers),
                "localizations_faint": self.faint_count}

    def check_localizations(self, frames: np.ndarray, table: pd.DataFrame, numbers) -> None:
        """Count the faint localizations of a batch (``frames`` in ADU, their 1-based
        ``numbers``; ``table`` read from their maps; called by
        :func:`~napari_deepcel0.core.predict.localize_stream` before any fit on the frames),
        note which of its frames showed only noise (:attr:`background_only_numbers`),
        and warn, once a run, of the frames of which more than :data:`FAINT_SHARE` of at
        least :data:`FAINT_MIN_COUNT` localizations are faint: judged frame by frame, so that
        the batch size (4 frames on a CPU, 512 on a GPU) does not decide. Frames that show
        only noise are not judged: :class:`BackgroundOnlyWarning` says what their
        localizations are (they are counted)."""
        numbers = np.asarray(numbers, np.int64)
        quiet = numbers[self.last_background_only] if len(self.last_background_only) == len(numbers) else []
        self.background_only_numbers.extend(int(n) for n in quiet)
        faint = faint_localizations(frames, table, self.acquisition, numbers)
        self.faint_count += int(faint.sum())
        self.localization_count += len(faint)
        if self._faint_warned or not len(faint):
            return
        flagged, n, k = faint_frames(table, faint, quiet)
        if not len(flagged):
            return
        self._faint_warned = True
        warnings.warn(
            f"{k} of the {n} localizations of {counted(len(flagged), 'frame')} ({frame_ranges_text(flagged)}) are "
            f"fainter than {FAINT_SIGMAS:g} noise standard deviations of a molecule's photon count on them: most "
            "are likely noise. " + (
                f"lambda {DEFAULT_LAM:g}, the default, suits dense frames like ISBI 2013's and fits the noise of "
                "sparser or noisier ones" if self.settings.lam == DEFAULT_LAM else
                f"lambda {self.settings.lam:g} is too small for these frames") +
            ": choose lambda with a sweep against a ground truth (the CEL0 widget's sweep, deepcel0 cel0 --sweep), or "
            "keep the brighter localizations (intensity [photon]). Shown once a run",
            FaintLocalizationsWarning, stacklevel=3)

    def maps(self, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Fine-grid CEL0 maps (n, L rows, L cols) >= 0 on the device, and the
        per-frame factor ``max / gain`` turning map sums into photons."""
        y, scale = prepare_frames(frames, self.background)
        quiet = background_only_frames(frames, self.acquisition.sigma_px)
        if quiet.any() and not self.background_only_count:
            warn_background_only(int(quiet.sum()), len(quiet))
        self.last_background_only, self.background_only_count = quiet, self.background_only_count + int(quiet.sum())
        s = self.settings
        op = self.operator(y.shape[-2:])
        # large frames are solved a few at a time, whatever the batch size, to bound memory
        per_solve = max(1, FINE_PIXELS_PER_SOLVE // (op.fine_shape[0] * op.fine_shape[1]))
        maps, self.last_records = [], []
        for start in range(0, len(y), per_solve):
            x, records = solve(y[start : start + per_solve], op, s.lam, s.max_outer, s.max_inner, s.tol,
                               progress=self.progress, cancel=self.cancel)
            maps.append(x)
            self.last_records += records
        return (maps[0] if len(maps) == 1 else torch.cat(maps)), scale / self.acquisition.gain_adu_per_photon


# ============================================================ localizations
def pixel_localizations(maps, acq: Acquisition, threshold: float = 0.0, frames=None, mass_scale=1.0,
                        mass_column: str = MASS_COLUMN) -> pd.DataFrame:
    """The reference's reading: every map pixel above ``threshold`` is a molecule at
    that pixel's centre, with mass = its value x ``mass_scale``.

    Parameters as :func:`~napari_deepcel0.core.localize.extract_localizations`
    (``frames``: 1-based numbers of the batch, default 1..n).
    """
    t = torch.as_tensor(maps)
    t = t[None] if t.ndim == 2 else t
    b, r, c = (v.cpu().numpy() for v in torch.nonzero(t > threshold, as_tuple=True))
    numbers = np.arange(1, len(t) + 1) if frames is None else np.asarray(frames, np.int64)
    scale = np.broadcast_to(np.asarray(mass_scale, np.float64), numbers.shape)
    return pd.DataFrame({FRAME: numbers[b], X_NM: acq.fine_px_to_nm(c), Y_NM: acq.fine_px_to_nm(r),
                         mass_column: t[t > threshold].cpu().double().numpy() * scale[b]})


#: a CEL0 maximum's mass ("peaks") gathers the map values nearest to it within this many
#: PSF standard deviations: its map spreads a molecule over more than 3 x 3 fine pixels at
#: L = 4 (the 3 x 3 sums read 67-97 % of the photons of isolated molecules)
MASS_RADIUS_SIGMAS = 1.5


def read_maps(maps, acq: Acquisition, threshold: float, method: str, frames=None, mass_scale=1.0,
              gather_mass: bool = True) -> pd.DataFrame:
    """Localizations of CEL0 maps with one of :data:`READINGS`; ``gather_mass`` False
    keeps the 3 x 3 sums as the peaks' masses (for a score, which reads positions only:
    gathering took 1.9 s against 0.7 s per lambda of a sweep on 1024 x 1024 fine pixels)."""
    if method == "pixels":
        return pixel_localizations(maps, acq, threshold, frames=frames, mass_scale=mass_scale)
    if method not in READINGS:
        raise ValueError(f"method must be one of {READINGS}, got {method!r}")
    radius = mass_radius_for(acq) if method == "peaks" and gather_mass else None
    return extract_localizations(maps, acq, threshold, method=method, mass_scale=mass_scale, mass_column=MASS_COLUMN,
                                 frames=frames, mass_radius_px=radius)


def mass_radius_for(acq: Acquisition) -> float:
    """Fine pixels around a maximum of a CEL0 map whose values make its mass
    (:data:`MASS_RADIUS_SIGMAS` PSF standard deviations)."""
    return MASS_RADIUS_SIGMAS * acq.sigma_fine_px


# ============================================================ lambda sweep
SCORE_FIELDS = tuple(f.name for f in fields(Score))


@dataclass
class LambdaSweep:
    """Result of :func:`lambda_sweep`: per lambda, one
    :class:`~napari_deepcel0.core.metrics.Score` for each map reading of
    :data:`READINGS` (the same maps read three ways); ``method`` is the reading
    that chooses the best lambda."""

    lams: np.ndarray
    scores: dict[str, list[Score]]
    method: str
    frames: np.ndarray  # 1-based frame numbers used
    tol_nm: float
    seconds: float

    def best_index(self, method: str | None = None) -> int:
        """Index of the largest Jaccard of ``method`` (default: the sweep's); the
        smallest lambda among ties."""
        return int(np.nanargmax([s.jaccard for s in self.scores[method or self.method]]))

    @property
    def best_lam(self) -> float:
        """The lambda of the largest Jaccard (the sweep's reading)."""
        return self.best_lam_for(self.method)

    @property
    def best_score(self) -> Score:
        """The score of :attr:`best_lam` (read with :attr:`method`)."""
        return self.best_score_for(self.method)

    @property
    def edge_note(self) -> str:
        """"" when the best lambda lies inside the range tried, else what to do: at the
        smallest or largest of several lambdas, strictly better than its neighbour, the
        best may lie beyond the range (a plateau or a flat curve, e.g. all 0 for a ground
        truth of another stack, says nothing of where the optimum is)."""
        i = self.best_index()
        if len(self.lams) < 2 or 0 < i < len(self.lams) - 1:
            return ""
        jaccard = [s.jaccard for s in self.scores[self.method]]
        if not jaccard[i] > jaccard[1 if i == 0 else -2]:
            return ""
        side, way = ("smallest", "lower") if i == 0 else ("largest", "higher")
        return f"the best is the {side} lambda tried: the optimum may lie beyond it; sweep a range reaching {way}"

    def best_lam_for(self, method: str) -> float:
        """The lambda of the highest Jaccard index when the maps are read with ``method``."""
        return float(self.lams[self.best_index(method)])

    def best_score_for(self, method: str) -> Score:
        """The score of :meth:`best_lam_for` ``method``."""
        return self.scores[method][self.best_index(method)]

    def curve(self, method: str | None = None) -> pd.DataFrame:
        """One row per lambda: ``lam`` and every score field of ``method``."""
        rows = [{"lam": float(lam), **asdict(s)} for lam, s in zip(self.lams, self.scores[method or self.method])]
        return pd.DataFrame(rows, columns=("lam",) + SCORE_FIELDS)

    def to_dict(self) -> dict:
        """Plain dict for JSON (NaN -> None): the curve of ``method`` with, per
        lambda, the Jaccard of every reading; and the best lambda of each reading."""
        curve = []
        for i, lam in enumerate(self.lams):
            entry = {"lam": float(lam), **self.scores[self.method][i].to_dict()}
            entry["jaccard_by_method"] = {m: self.scores[m][i].to_dict()["jaccard"] for m in self.scores}
            curve.append(entry)
        return {
            "frames": [int(f) for f in self.frames],
            "tol_nm": self.tol_nm,
            "method": self.method,
            "seconds": self.seconds,
            "best_lam": self.best_lam,
            "best_jaccard": self.best_score.jaccard,
            "best_lam_by_method": {m: self.best_lam_for(m) for m in self.scores},
            "edge_note": self.edge_note,
            "curve": curve,
        }


def sweep_lambdas(lams, lam_range: tuple[float, float], n_lams: int) -> np.ndarray:
    """The sweep's lambdas, ascending and distinct (ties go to the smallest): ``lams``, or
    ``n_lams`` values log-spaced in ``lam_range`` (one: its lower end); ValueError for a
    range of one value and several lambdas."""
    if lams is None:
        lo, hi = lam_range
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"lambda range must satisfy 0 < low <= high < inf, got {lam_range}")
        n_lams = _count(n_lams, "the number of lambdas")
        if lo == hi and n_lams > 1:  # (its rows came n_lams times)
            raise ValueError(f"a lambda range of one value ({lo:g} to {hi:g}) holds one lambda, not {n_lams}")
        lams = np.geomspace(lo, hi, n_lams)
    lams = np.unique(np.asarray(lams, dtype=np.float64).ravel())
    if lams.size == 0:
        raise ValueError("the sweep needs at least one lambda")
    return lams


def _draw_frames(source, frames, n_frames: int, seed: int, ground_truth_frames: np.ndarray) -> np.ndarray:
    """``n_frames`` 0-based frame indices (all of them when fewer) drawn without
    replacement from the 1-based selection ``frames`` of ``source``, sorted, among the
    frames from the first to the last of ``ground_truth_frames`` (1-based): a ground
    truth of part of the stack scored every detection of the other frames as false
    (Jaccard 41 % for 67 %, lifecycle review), with a warning when that leaves frames out."""
    pool = parse_frame_selection(frames, frame_count(source))
    n_frames = _count(n_frames, "the number of sweep frames")
    if len(ground_truth_frames) == 0:
        raise ValueError("the ground truth has no molecules")
    first, last = int(np.min(ground_truth_frames)), int(np.max(ground_truth_frames))
    covered = pool[(pool + 1 >= first) & (pool + 1 <= last)]
    if len(covered) < len(pool):
        span = frame_span(first, last)
        if len(covered) == 0:
            raise ValueError(f"the ground truth holds {span} only, none of the frames chosen for the sweep")
        warnings.warn(f"the ground truth holds {span} only: the sweep draws its frames among those ({len(covered)} "
                      f"of the {len(pool)} chosen), since its detections in other frames would all count as false",
                      UserWarning, stacklevel=3)
    return np.sort(np.random.default_rng(seed).choice(covered, size=min(n_frames, len(covered)), replace=False))


def lambda_sweep(
    source,
    ground_truth: pd.DataFrame,
    acquisition: Acquisition,
    frames=None,
    lams=None,
    n_lams: int = SWEEP_LAMS,
    lam_range: tuple[float, float] = SWEEP_LAM_RANGE,
    n_frames: int = SWEEP_FRAMES,
    seed: int = 0,
    tol_nm: float = SWEEP_TOL_NM,
    method: str = DEFAULT_METHOD,
    threshold: float = DEFAULT_THRESHOLD,
    max_outer: int = CEL0_MAX_OUTER,
    max_inner: int = CEL0_MAX_INNER,
    tol: float = CEL0_TOL,
    background="auto",
    device="auto",
    progress: Callable[[int, int, float, Score], None] | None = None,
    cancel=None,
    distance: str = "euclidean",
    fix_outlier_pixels: bool = True,
    lams_per_solve: int | None = None,
) -> LambdaSweep:
    """Pick lambda as the paper does: Jaccard at ``tol_nm`` against ground truth for
    ``n_lams`` values log-spaced in ``lam_range`` on ``n_frames`` random frames.

    Parameters
    ----------
    source
        Frame source (FrameStack, array (frames, rows, cols), ...), in ADU.
    ground_truth
        Table with ``frame`` (1-based, numbered as ``source``), ``x [nm]``, ``y [nm]``.
    acquisition
        Pixel size, PSF, L and gain of the data.
    frames
        1-based selection to draw the frames from (default: all).
    lams
        Explicit lambda values; otherwise ``n_lams`` log-spaced values in ``lam_range``.
    n_frames, seed
        How many frames to draw (without replacement) and the random seed.
    tol_nm, method, threshold
        Matching tolerance (nm), the map reading that picks the best lambda (all of
        :data:`READINGS` are scored), detection threshold (normalised map units).
    max_outer, max_inner, tol, background, device
        As :class:`Cel0Localizer`; the frames are loaded and normalised once and each
        lambda is one batched solve over all of them.
    progress
        Called as ``progress(done, total, lam, score)`` after each lambda.
    cancel
        Callable or ``threading.Event``; raises :class:`Cel0Cancelled` when set.
    distance
        How ``tol_nm`` is measured (see :func:`~napari_deepcel0.core.metrics.match_points`).
    fix_outlier_pixels
        Replace hot and dead pixels and dim objects far brighter than the molecules
        first, as :func:`~.predict.localize` does (:func:`~.frames.fix_outliers`), so
        that lambda is chosen on the input it will be used on.
    lams_per_solve
        At most this many lambdas solved together, as one batch of their copies of the
        frames, and never more than fit in :data:`FINE_PIXELS_PER_SOLVE` (default: one at
        a time on a CPU, where a batch costs what its frames cost; on a GPU as many as
        fit, since a batch of 8 frames keeps it waiting on its launches: the paper's 30
        values on 8 frames of 64 x 64 pixels in one batch instead of 30). ``progress``
        is called when a batch is done.

    Returns
    -------
    :class:`LambdaSweep`
    """
    check_table(ground_truth, "ground truth")
    check_tolerance(tol_nm)
    warn_if_small_tolerance(tol_nm)
    lams = sweep_lambdas(lams, lam_range, n_lams)
    for lam in lams:
        SolverSettings(lam=float(lam), max_outer=max_outer, max_inner=max_inner, tol=tol)
    if method not in READINGS:
        raise ValueError(f"method must be one of {READINGS}, got {method!r}")
    if lams_per_solve is not None:
        lams_per_solve = _count(lams_per_solve, "lams_per_solve")
    chosen = _draw_frames(source, frames, n_frames, seed, ground_truth[FRAME].to_numpy())
    numbers = chosen + 1
    gt = ground_truth[ground_truth[FRAME].isin(numbers)]
    if len(gt) == 0:
        raise ValueError(f"the ground truth has no molecules in the sweep frames {numbers.tolist()}")
    # checked here, where a bad frame is named by its stack number (prepare_frames would number them 1..n)
    block, _, changed, ratios = read_fixed_frames(source, chosen, acquisition.sigma_px if fix_outlier_pixels else None)
    if len(changed):
        warn_bright_objects(numbers[changed], ratios)
    y, _ = prepare_frames(block, background)  # (each frame's scale makes masses in photons: a score reads none)
    op = AcquisitionOperator(acquisition, y.shape[-2:], device=resolve_device(device))
    y_t = torch.as_tensor(y, device=op.device)
    fit = max(1, FINE_PIXELS_PER_SOLVE // (len(numbers) * op.fine_shape[0] * op.fine_shape[1]))
    if lams_per_solve is None:
        lams_per_solve = 1 if op.device.type == "cpu" else fit
    lams_per_solve = min(lams_per_solve, fit)
    t0 = time.perf_counter()
    scores: dict[str, list[Score]] = {m: [] for m in READINGS}
    for start in range(0, len(lams), lams_per_solve):
        group = lams[start : start + lams_per_solve]
        x, _ = solve(y_t.repeat(len(group), 1, 1), op, np.repeat(group, len(numbers)), max_outer, max_inner, tol,
                     cancel=cancel)
        for i, lam in enumerate(group):
            maps = x[i * len(numbers) : (i + 1) * len(numbers)]
            for m in READINGS:
                table = read_maps(maps, acquisition, threshold, m, frames=numbers, gather_mass=False)
                scores[m].append(score(gt, table, tol_nm, distance=distance, warn_small=False))
            if progress:
                progress(start + i + 1, len(lams), float(lam), scores[method][-1])
    return LambdaSweep(lams, scores, method, numbers, float(tol_nm), time.perf_counter() - t0)
