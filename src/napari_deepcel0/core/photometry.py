"""Photon counts and positions of localizations, fitted on the camera frames.

DeepCEL0's maps say where the molecules are, not how bright they are (its targets are
unit spikes; ``confidence`` is a 3 x 3 sum of the map). Given the positions, the
camera frame is linear in the brightnesses: with the acquisition's PSF integrated over
each camera pixel (the model the simulations use), each frame is fitted as

    (frame - offset_adu) / gain = sum_k N_k PSF(x_k, y_k) + b(u, v),    N_k >= 0

by bounded least squares, all molecules of a frame (or of a 64 x 64-pixel tile of a
larger frame, see :func:`_tiled`) together: crowded molecules share their light instead
of each counting it twice. The background ``b`` is a plane over the frame or tile,
``b0 + bx u + by v`` (``u``, ``v`` from -1 to 1 across it; :func:`_plane_basis`): with one
constant, uneven illumination (5 -> 15 photons per pixel across a frame) took 12 % of the
light of 600-photon molecules on its dim side and gave 9 % on its bright side; with the
plane both are within 0.5 %, and on flat backgrounds the counts do not change. ``N_k`` is
the molecule's ``intensity [photon]`` and the plane's value under it the ``offset
[photon]`` (background photons per camera pixel), as ThunderSTORM names them. Photons need
the camera's gain (ADU per photon) and offset from the :class:`Acquisition`; the positions
are not changed (unless ``fit_positions``, below). The plane is not bounded and may come
out negative: the offset set is higher than the camera's by that many photons (with
``b >= 0`` the missing light was taken from the molecules: 35 % of it at 25 ADU too high
on an sCMOS-like camera). Molecules the localizer missed leave their light to the
background and to their neighbours, so counts in crowds are biased upwards.

With ``fit_positions`` the positions are fitted too (:func:`fit_positions_frame`): all
molecules of a frame, their photons and the background plane by maximum likelihood under a
Poisson model of the photons (the read noise added as a shifted Poisson), each molecule
kept within half a fine pixel of where the map put it. The map chooses the fine pixel,
the fit the place inside it: on sparse frames that takes 25-30 % off the RMSE of the
map's 25 nm grid (8.5 -> 6.4 nm at 0.5 molecules/um^2); with more room, fits in crowds
become unstable and lose molecules
(docs/benchmarks.md, "Position fit"). The fit also gives each molecule's
``uncertainty [nm]``: the Cramer-Rao bound on its position per axis, as single-molecule
fitters report it; and ``at_box_edge``, 1 where the fit stopped at the edge of its box
(the likelihood's maximum lies beyond, mostly where the map chose the neighbouring fine
pixel: isolated molecules there had an RMS error of 6.0 nm against 3.3 nm at 2,000
photons, 11.2 against 7.6 at 500, for the same uncertainty), 0 elsewhere. On sparse
frames 1-6 % of the fits stop there, in crowds about half (ISBI 2013: 48 %, RMSE 26.7
against 22.3 nm, but dropping them halves the molecules found).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.linalg import LinAlgError, cho_factor, cho_solve, cholesky, solve_triangular
from scipy.optimize import lsq_linear, nnls
from scipy.sparse.linalg import spsolve
from scipy.special import erf
from threadpoolctl import ThreadpoolController

from .acquisition import Acquisition
from .columns import FRAME, INTENSITY, X_NM, Y_NM

BACKGROUND = "offset [photon]"
UNCERTAINTY = "uncertainty [nm]"
#: 1 where the position fit stopped at the edge of the box it is held in (:data:`MAX_SHIFT_FINE_PX`
#: in x or in y from its start), 0 where it stopped inside: a number, as ThunderSTORM's columns
#: are, one word, as its filter formulas need (``at_box_edge == 0``)
AT_BOX_EDGE = "at_box_edge"
#: the PSF window of each molecule reaches this many sigma beyond its pixel
WINDOW_SIGMAS = 4.0
#: systems of up to this many unknowns (molecules + the background plane's 3 for the
#: photometry, 3 x molecules + 3 for the position fit) are solved with dense
#: factorisations, larger ones with sparse or iterative solvers (the dense cost grows
#: with the cube of the number)
EXACT_LIMIT = 1500
#: the position fit moves a molecule by at most this many fine pixels in x and in y
MAX_SHIFT_FINE_PX = 0.5
#: a fit this close (nm) to the edge of its box stopped there (:data:`AT_BOX_EDGE`): the
#: bound holds it exactly at the edge; the fit stops once no molecule moves this far
BOX_EDGE_TOLERANCE_NM = 0.01
#: the background of a frame or tile is a plane, ``b0 + bx u + by v`` (``u``, ``v`` the
#: camera pixel's column and row, from -1 to 1 across the tile), sloped along each axis
#: where the tile spans at least this many camera pixels and constant along a narrower
#: one (the last tiles of a large frame, frames a few pixels high): a few pixels cannot
#: tell a slope from the molecules' light
PLANE_MIN_PX = 16
#: at most this many steps of the position fit per frame
FIT_ITERATIONS = 4
#: the smallest expected photon count (+ read-noise variance) of a pixel in the position
#: fit: keeps the likelihood finite where the model has no light; such pixels carry no
#: information about the parameters
MIN_VARIANCE = 1e-6
#: molecules fitted with fewer photons get no uncertainty (NaN): no position to speak of
MIN_PHOTONS_FOR_UNCERTAINTY = 1.0
#: nor those whose Fisher block (scaled to a unit diagonal) is worse conditioned than this:
#: the frame does not constrain their position (no molecule of ISBI 2013 frames 1-40 with
#: at least a photon is above it)
MAX_FISHER_CONDITION = 1e8
#: frames are fitted in tiles of at most this many camera pixels a side ...
TILE_PX = 64
#: ... each with this many camera pixels around it (molecules there are fitted with the
#: tile's but reported by their own tile)
TILE_MARGIN_PX = 8


def without_uncertainty_text(table, short: bool = False) -> str:
    """What to tell of a table's molecules without an uncertainty (NaN ``uncertainty [nm]``:
    fitted with under :data:`MIN_PHOTONS_FOR_UNCERTAINTY` photon, or with a Fisher block
    worse conditioned than :data:`MAX_FISHER_CONDITION`), or "" when there are none or no
    fit (for the command line's note and, ``short``, the Localize widget's status)."""
    if UNCERTAINTY not in getattr(table, "columns", ()):
        return ""
    n = int(table[UNCERTAINTY].isna().sum())
    if not n:
        return ""
    if short:
        return f"{n} of {len(table)} without an uncertainty (too faint, or unconstrained)"
    # (on ISBI 2013, 3.4 % of the localizations, two thirds of them within 50 nm of a molecule)
    return (f"{n} of {len(table)} molecules have no uncertainty [nm] (NaN): fitted with under "
            f"{MIN_PHOTONS_FOR_UNCERTAINTY:g} photon (noise taken for molecules, or in crowds neighbours that took the "
            "light), or placed where the frame does not constrain a position")


def at_box_edge_text(table, short: bool = False) -> str:
    """What to tell of a table's fits that stopped at the edge of their box
    (:data:`AT_BOX_EDGE` 1), or "" when there are none or no fit (for the command line's
    note and, ``short``, the Localize widget's status)."""
    if AT_BOX_EDGE not in getattr(table, "columns", ()):
        return ""
    n = int((table[AT_BOX_EDGE] == 1).sum())
    if not n:
        return ""
    if short:
        return (f"{n} of {len(table)} position fits ({100 * n / len(table):.0f} %) at their box's edge "
                "(usual in crowds)")
    return (f"{n} of {len(table)} position fits ({100 * n / len(table):.0f} %) stopped at the edge of their box "
            f"({AT_BOX_EDGE} 1): their positions are worse than their uncertainty [nm] says (isolated molecules: "
            "about 1-6 % of fits; in crowds about half, where the column describes rather than filters; "
            "docs/benchmarks.md, Position fit)")


def fit_notes(table, short: bool = False) -> list[str]:
    """What to tell the user of a table's fitted molecules (:func:`without_uncertainty_text`,
    :func:`at_box_edge_text`; none without a fit): the command line's notes; ``short``, the
    Localize widget's status, whose tooltip holds the full notes (15 lines of them read as a
    failure: a first-time user's review)."""
    return [note for note in (without_uncertainty_text(table, short), at_box_edge_text(table, short)) if note]


def _window_half_px(acq: Acquisition) -> int:
    """Camera pixels from a molecule's pixel to the edge of its PSF window."""
    return int(math.ceil(WINDOW_SIGMAS * acq.sigma_nm / acq.pixel_size_nm)) + 1


def _profiles(pos_nm: np.ndarray, acq: Acquisition):
    """Per molecule, the camera pixel indices of its PSF window along one axis, the
    fraction of its light in each, and the derivative of that fraction with respect to
    the molecule's position (per nm). Pixel ``j`` covers ``[j, j + 1) * pixel``."""
    p, s = acq.pixel_size_nm, acq.sigma_nm * math.sqrt(2.0)
    half = _window_half_px(acq)
    index = np.floor(pos_nm / p).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
    lo = (index * p - pos_nm[:, None]) / s
    hi = lo + p / s
    fraction = 0.5 * (erf(hi) - erf(lo))
    derivative = (np.exp(-lo * lo) - np.exp(-hi * hi)) / (s * math.sqrt(math.pi))
    return index, fraction, derivative


def _psf_pieces(x_nm, y_nm, acq: Acquisition, frame_shape: tuple[int, int], derivatives: bool = False):
    """The PSF windows of all molecules as flat arrays: pixel (row-major index), molecule,
    the fraction of the molecule's light in the pixel and, with ``derivatives``, its
    derivatives with respect to the molecule's x and y (per nm). Light falling outside
    the frame is dropped."""
    rows, cols = frame_shape
    r_idx, r_w, r_d = _profiles(np.asarray(y_nm, np.float64), acq)
    c_idx, c_w, c_d = _profiles(np.asarray(x_nm, np.float64), acq)
    n, w = r_idx.shape
    rr = np.broadcast_to(r_idx[:, :, None], (n, w, w))
    cc = np.broadcast_to(c_idx[:, None, :], (n, w, w))
    inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    pixel = (rr * cols + cc)[inside]
    molecule = np.broadcast_to(np.arange(n)[:, None, None], (n, w, w))[inside]
    fraction = (r_w[:, :, None] * c_w[:, None, :])[inside]
    if not derivatives:
        return pixel, molecule, fraction
    d_x = (r_w[:, :, None] * c_d[:, None, :])[inside]
    d_y = (r_d[:, :, None] * c_w[:, None, :])[inside]
    return pixel, molecule, fraction, d_x, d_y


def psf_columns(x_nm: np.ndarray, y_nm: np.ndarray, acq: Acquisition, frame_shape: tuple[int, int]):
    """Sparse matrix (rows * cols, n): column k is the image of one photon from the
    molecule at ``(x_nm[k], y_nm[k])``, the Gaussian PSF integrated over each camera
    pixel (pixel ``(r, c)`` covers ``[c, c + 1) * pixel`` in x and ``[r, r + 1) * pixel``
    in y); light falling outside the frame is lost."""
    pixel, molecule, fraction = _psf_pieces(x_nm, y_nm, acq, frame_shape)
    return sparse.csr_matrix((fraction, (pixel, molecule)), shape=(frame_shape[0] * frame_shape[1], len(x_nm)))


def to_photons(frame_adu: np.ndarray, acq: Acquisition) -> np.ndarray:
    """A camera frame in photons (float64): ``(ADU - offset) / gain``."""
    return (np.asarray(frame_adu, np.float64) - acq.offset_adu) / acq.gain_adu_per_photon


def _plane_basis(frame_shape: tuple[int, int]) -> np.ndarray:
    """(rows * cols, k) columns of the background plane, pixels row-major: 1, then ``u``
    (the pixel's column, from -1 at the frame's first to 1 at its last) where the frame
    spans at least :data:`PLANE_MIN_PX` columns, then ``v`` (the row, likewise) where it
    spans as many rows. Centred, the columns are orthogonal: the constant's coefficient is
    the plane's mean over the frame, the others its rise from the centre to the edges."""
    return _cached_plane_basis(int(frame_shape[0]), int(frame_shape[1]), PLANE_MIN_PX)


def _plane_coordinate(index_px, n_px: int):
    """The plane's ``u`` (or ``v``) of a pixel column (row) index, fractional between
    pixel centres: -1 at the first of ``n_px``, 1 at the last."""
    return index_px / ((n_px - 1) / 2.0) - 1.0


@functools.lru_cache(maxsize=16)
def _cached_plane_basis(rows: int, cols: int, min_px: int) -> np.ndarray:
    r, c = np.divmod(np.arange(rows * cols), cols)
    columns = [np.ones(rows * cols)]
    if cols >= min_px:
        columns.append(_plane_coordinate(c, cols))
    if rows >= min_px:
        columns.append(_plane_coordinate(r, rows))
    basis = np.stack(columns, axis=1)
    basis.flags.writeable = False  # (cached: one per frame shape)
    return basis


def _plane_at(coefficients: np.ndarray, x_nm, y_nm, acq: Acquisition, frame_shape: tuple[int, int]) -> np.ndarray:
    """The background plane of :func:`_plane_basis` with these coefficients at the points
    ``(x_nm, y_nm)`` (nm from the frame's corner; pixel ``(r, c)`` is centred on
    ``(c + 0.5, r + 0.5) * pixel``): the photons per pixel under each molecule."""
    rows, cols = frame_shape
    p = acq.pixel_size_nm
    x, y = np.asarray(x_nm, np.float64), np.asarray(y_nm, np.float64)
    coefficients = np.asarray(coefficients, np.float64)
    out = np.full(np.broadcast(x, y).shape, coefficients[0])
    k = 1
    if cols >= PLANE_MIN_PX:
        out += coefficients[k] * _plane_coordinate(x / p - 0.5, cols)
        k += 1
    if rows >= PLANE_MIN_PX:
        out += coefficients[k] * _plane_coordinate(y / p - 0.5, rows)
    return out


def fit_frame(frame_adu: np.ndarray, x_nm: np.ndarray, y_nm: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, float]:
    """(photons of each molecule, background photons per pixel) of one camera frame;
    the photons are >= 0, the background is a plane (:func:`_plane_basis`), not bounded
    (see the module notes); returned is its mean over the frame (:func:`_fit_frame_plane`
    gives the plane)."""
    photons, coefficients = _fit_frame_plane(frame_adu, x_nm, y_nm, acq)
    return photons, float(coefficients[0])


def _fit_frame_plane(frame_adu: np.ndarray, x_nm: np.ndarray, y_nm: np.ndarray,
                     acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """(photons of each molecule, the background plane's coefficients) of one camera frame,
    by least squares with the photons >= 0 and the plane free (:func:`_plane_basis`;
    :func:`_plane_at` evaluates it)."""
    y = to_photons(frame_adu, acq).ravel()
    psf = psf_columns(x_nm, y_nm, acq, np.shape(frame_adu))
    basis = _plane_basis(np.shape(frame_adu))
    if len(x_nm) < EXACT_LIMIT:
        # the free plane solved out: its coefficients are (B^T (y - psf N)) / |B|^2 (the
        # columns of B orthogonal), so N solves the problem with every column and the data
        # projected off the plane (the Gram matrix built without projecting the columns)
        norms = (basis * basis).sum(axis=0)
        psf_b = np.asarray(psf.T @ basis)  # (n, k)
        data_b = basis.T @ y
        gram = (psf.T @ psf).toarray() - (psf_b / norms) @ psf_b.T
        photons = _nnls_gram(gram, psf.T @ y - psf_b @ (data_b / norms))
        return photons, (data_b - psf_b.T @ photons) / norms
    design = sparse.hstack([psf, sparse.csr_matrix(basis)], format="csr")
    k = basis.shape[1]
    lower = np.r_[np.zeros(len(x_nm)), np.full(k, -np.inf)]
    x = lsq_linear(design, y, bounds=(lower, np.inf), lsq_solver="lsmr", tol=1e-8).x
    return x[:-k], x[-k:]


def _nnls_gram(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """min ||D x - y||, x >= 0, exactly, from ``gram`` = D^T D and ``rhs`` = D^T y, for a
    few hundred columns: the same problem rewritten with the Cholesky factor R of the
    Gram matrix (R^T R), whose size is the number of columns, not of pixels, then
    Lawson-Hanson NNLS. Close localizations make columns nearly equal, where iterative
    solvers crawl (0.4 s against 0.08 s a frame at ISBI 2013 density)."""
    if len(gram) == 0:
        return np.zeros(0)
    ridge = 1e-10 * max(np.trace(gram) / len(gram), 1e-30)  # identical columns stay solvable
    r = cholesky(gram + ridge * np.eye(len(gram)))
    z = solve_triangular(r, rhs, trans="T")
    return nnls(r, z, maxiter=50 * len(gram))[0]


def photometry_frame(frame_adu: np.ndarray, x_nm: np.ndarray, y_nm: np.ndarray,
                     acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """(photons, background photons per pixel under it) of each molecule of one camera
    frame, at the given positions (:func:`fit_frame`: the background a plane, here
    evaluated at each molecule; frames larger than :data:`TILE_PX` pixels tile by tile,
    each with its own plane, see :func:`_tiled`)."""
    def fit_tile(tile, x, y, origin):
        photons, coefficients = _fit_frame_plane(tile, x, y, acq)
        return photons, _plane_at(coefficients, x, y, acq, np.shape(tile))

    photons, background = _tiled(frame_adu, x_nm, y_nm, acq, fit_tile, 2)
    return photons, background


def fit_positions_frame(frame_adu: np.ndarray, x_nm: np.ndarray, y_nm: np.ndarray, acq: Acquisition,
                        max_shift_nm: float | None = None, iterations: int | None = None):
    """Positions, photons and background of one camera frame, fitted together.

    Maximum likelihood, starting from the given positions and the photons of
    :func:`fit_frame`, for the model ``(frame - offset) / gain ~ Poisson(m) + read noise``
    with ``m = sum_k N_k PSF(x_k, y_k) + b`` and ``b`` a plane over the frame or tile
    (:func:`_plane_basis`); the read noise (``read_noise_adu / gain`` photons) enters as a
    shifted Poisson. Levenberg-Marquardt steps on the Fisher information, each kept only
    if it raises the likelihood; ``N >= 0``, ``b`` at every pixel at least the linear fit's
    lowest (where that is negative: an offset set too high, see the module notes), and each
    molecule stays within ``max_shift_nm`` (default: half a fine pixel) of its start in x
    and in y; at most ``iterations`` steps (default :data:`FIT_ITERATIONS`). Frames larger
    than :data:`TILE_PX` pixels are fitted tile by tile (:func:`_tiled`).

    Returns ``(x_nm, y_nm, photons, background, uncertainty_nm, at_box_edge)``, one value
    per molecule (``background``: the plane's photons per pixel at the molecule).
    ``uncertainty_nm`` is the Cramer-Rao bound on the position per axis,
    ``sqrt((var x + var y) / 2)``, of each molecule at the fit as if its neighbours and the
    background were known (as single-molecule fitters report it: about right for isolated
    molecules, too small in crowds), NaN for a molecule fitted with less than one photon
    (a few photons give bounds of thousands of nm: filter on it or on the photons).
    ``at_box_edge`` is 1.0 for a molecule that stopped at the edge of its box in x or in y
    (the likelihood's maximum lies beyond it, mostly where the map chose the neighbouring
    fine pixel: such positions are worse than ``uncertainty_nm`` says), else 0.0; 0.0
    throughout with ``max_shift_nm=0`` (no position fitted).
    """
    limit = acq.fine_pixel_nm * MAX_SHIFT_FINE_PX if max_shift_nm is None else float(max_shift_nm)
    if not (math.isfinite(limit) and limit >= 0):
        raise ValueError(f"max_shift_nm must be a finite number >= 0, got {max_shift_nm}")

    def fit_tile(tile, x, y, origin):
        x, y, photons, background, uncertainty, at_edge = _fit_region(tile, x, y, acq, limit, iterations)
        return x + origin[0], y + origin[1], photons, background, uncertainty, at_edge

    return tuple(_tiled(frame_adu, x_nm, y_nm, acq, fit_tile, 6))


def _tiled(frame_adu: np.ndarray, x_nm, y_nm, acq: Acquisition, fit_tile, n_outputs: int) -> list[np.ndarray]:
    """Per molecule, the ``n_outputs`` values of ``fit_tile(tile_adu, x, y, origin_nm)``
    (positions relative to the tile's corner ``origin_nm`` = (x, y); each output one value
    per molecule or one for the tile). A frame of up to :data:`TILE_PX` pixels a side is
    one tile; a larger one is cut into tiles of that size, each fitted with the pixels of
    a :data:`TILE_MARGIN_PX` margin around it (its own background plane) and every molecule
    whose PSF window reaches them, and each molecule is reported by the tile holding it:
    the cost grows with the area instead of with the cube of the number of molecules.
    Molecules with a NaN position are in no tile: NaN."""
    frame = np.asarray(frame_adu)
    x0, y0 = np.asarray(x_nm, np.float64), np.asarray(y_nm, np.float64)
    rows, cols = frame.shape
    p = acq.pixel_size_nm
    row = np.clip(np.floor(y0 / p), 0, rows - 1)  # camera pixel of each molecule
    col = np.clip(np.floor(x0 / p), 0, cols - 1)
    reach = _window_half_px(acq)
    out = [np.full(len(x0), np.nan) for _ in range(n_outputs)]

    def spans(size):
        return [(lo, min(lo + TILE_PX, size)) for lo in range(0, size, TILE_PX)] if size > TILE_PX else [(0, size)]

    for r_lo, r_hi in spans(rows):
        for c_lo, c_hi in spans(cols):
            core = (row >= r_lo) & (row < r_hi) & (col >= c_lo) & (col < c_hi)
            if not core.any():
                continue
            er_lo, er_hi = max(r_lo - TILE_MARGIN_PX, 0), min(r_hi + TILE_MARGIN_PX, rows)
            ec_lo, ec_hi = max(c_lo - TILE_MARGIN_PX, 0), min(c_hi + TILE_MARGIN_PX, cols)
            member = np.flatnonzero((row >= er_lo - reach) & (row < er_hi + reach) & (col >= ec_lo - reach)
                                    & (col < ec_hi + reach))
            origin = (ec_lo * p, er_lo * p)
            results = fit_tile(frame[er_lo:er_hi, ec_lo:ec_hi], x0[member] - origin[0], y0[member] - origin[1], origin)
            keep = core[member]
            for values, result in zip(out, results):
                values[member[keep]] = np.broadcast_to(result, keep.shape)[keep]
    return out


def _fit_region(frame_adu: np.ndarray, x0: np.ndarray, y0: np.ndarray, acq: Acquisition, limit: float,
                iterations: int | None, chi2: bool = False):
    """:func:`fit_positions_frame` on one frame or tile (positions relative to its corner);
    with ``chi2``, also the fit's reduced Pearson chi^2 (:func:`fit_chi2`)."""
    data = to_photons(frame_adu, acq).ravel()
    shape = np.shape(frame_adu)
    n = len(x0)
    basis = _plane_basis(shape)
    photons, plane = _fit_frame_plane(frame_adu, x0, y0, acq)
    # a background negative somewhere: the offset set is that many photons too high; the
    # likelihood needs the photons above it to be >= 0, so the data are lifted by the
    # plane's lowest value and it is put back
    lift = min(float((basis @ plane).min()), 0.0)
    data, plane = data - lift, plane.copy()
    plane[0] -= lift
    observed = np.maximum(data + _read_variance(acq), 0.0)

    def expected(x, y, amplitude, coefficients):
        return _expected_counts(x, y, amplitude, basis @ coefficients, acq, shape)

    def neg_log_likelihood(m):
        return float(np.sum(m - observed * np.log(m)))

    def fisher_and_gradient(x, y, amplitude, m):
        """J^T W J and J^T W (observed - m), W = 1 / m, J = d m / d(photons, x, y, plane)."""
        return _fisher_information(x, y, amplitude, m, acq, shape, basis, observed - m)

    x, y, amplitude, b = x0.copy(), y0.copy(), photons, plane
    m = expected(x, y, amplitude, b)
    cost = neg_log_likelihood(m)
    damping = 1e-3
    for _ in range(FIT_ITERATIONS if iterations is None else iterations):
        fisher, gradient = fisher_and_gradient(x, y, amplitude, m)
        solve = _damped_solver(fisher)
        for _ in range(12):
            step = solve(gradient, damping)
            if step is not None:
                trial_amplitude = np.maximum(amplitude + step[:n], 0.0)
                trial_x = np.clip(x + step[n:2 * n], x0 - limit, x0 + limit)
                trial_y = np.clip(y + step[2 * n:3 * n], y0 - limit, y0 + limit)
                trial_b = b + step[3 * n:]
                # the plane >= 0 at every pixel: raised where a step took a corner below
                trial_b[0] -= min(float((basis @ trial_b).min()), 0.0)
                trial_m = expected(trial_x, trial_y, trial_amplitude, trial_b)
                trial_cost = neg_log_likelihood(trial_m)
                if trial_cost < cost:
                    break
            damping *= 5.0
        else:
            break  # no step raises the likelihood: converged, or held by the bounds
        moved = max(np.abs(trial_x - x).max(), np.abs(trial_y - y).max())
        x, y, amplitude, b, m, cost = trial_x, trial_y, trial_amplitude, trial_b, trial_m, trial_cost
        damping = max(damping / 3.0, 1e-7)
        if moved < BOX_EDGE_TOLERANCE_NM:  # nm
            break
    uncertainty = _position_bounds(fisher_and_gradient(x, y, amplitude, m)[0], n)
    uncertainty[amplitude < MIN_PHOTONS_FOR_UNCERTAINTY] = np.nan
    edge = limit - min(BOX_EDGE_TOLERANCE_NM, limit / 2.0)
    at_edge = ((limit > 0) & ((np.abs(x - x0) >= edge) | (np.abs(y - y0) >= edge))).astype(np.float64)
    background = _plane_at(b, x, y, acq, shape) + lift  # under each molecule
    if chi2:
        # robust: the median of the squared standardised residuals over its value for a unit
        # normal (0.455): the pixels of a molecule the map missed (or placed where there is
        # none) are a minority and do not count, as they did in the mean (a model trained for
        # a few steps read 100 times noisier)
        chi2_value = float(np.median((observed - m) ** 2 / m) / CHI2_1_MEDIAN)
        return x, y, amplitude, background, uncertainty, at_edge, chi2_value
    return x, y, amplitude, background, uncertainty, at_edge


def _read_variance(acq: Acquisition) -> float:
    """The read noise's variance in photons^2: the shift of the shifted-Poisson model."""
    return (acq.read_noise_adu / acq.gain_adu_per_photon) ** 2


def _expected_counts(x_nm, y_nm, photons, background, acq: Acquisition,
                     frame_shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's expected photons (row-major) plus the read noise's variance, the mean
    of the shifted Poisson model, at least :data:`MIN_VARIANCE`; ``background``: photons
    per pixel, one value or one per pixel (row-major)."""
    pixel, molecule, fraction = _psf_pieces(x_nm, y_nm, acq, frame_shape)
    counts = np.bincount(pixel, fraction * photons[molecule], minlength=frame_shape[0] * frame_shape[1])
    return np.maximum(counts + background + _read_variance(acq), MIN_VARIANCE)


def _fisher_information(x_nm, y_nm, photons, expected, acq: Acquisition, frame_shape: tuple[int, int],
                        basis: np.ndarray, residual: np.ndarray | None = None):
    """``(F, g)``: the Fisher information ``J^T W J`` (square; a dense array up to
    :data:`EXACT_LIMIT` parameters, else a sparse matrix) of the parameters
    (the photons of every molecule, then their x, their y in nm, then the coefficients of
    the background plane, whose columns are ``basis``: :func:`_plane_basis`), ``J`` the
    derivatives of each pixel's expected photons ``expected`` (pixels row-major) and
    ``W = 1 / expected`` the Poisson weight (0 where ``expected`` is clipped at
    :data:`MIN_VARIANCE`: such pixels are flat in the parameters); with ``residual``
    (observed - expected, per pixel) also ``g = J^T W residual``, the gradient of the
    log-likelihood (else None). The plane's columns fill every pixel: their blocks are
    computed apart from the molecules' sparse ones."""
    n, size = len(x_nm), frame_shape[0] * frame_shape[1]
    k = basis.shape[1]
    pixel, molecule, fraction, d_x, d_y = _psf_pieces(x_nm, y_nm, acq, frame_shape, derivatives=True)
    rows = np.concatenate([pixel, pixel, pixel])
    columns = np.concatenate([molecule, molecule + n, molecule + 2 * n])
    values = np.concatenate([fraction, d_x * photons[molecule], d_y * photons[molecule]])
    jacobian = sparse.csr_matrix((values, (rows, columns)), shape=(size, 3 * n))
    weight = np.where(expected > MIN_VARIANCE, 1.0 / expected, 0.0)
    weighted = jacobian.copy()
    weighted.data *= np.repeat(weight, np.diff(jacobian.indptr))
    weighted_basis = basis * weight[:, None]
    molecules = jacobian.T @ weighted
    mixed = np.asarray(jacobian.T @ weighted_basis)  # (3n, k)
    plane = basis.T @ weighted_basis  # (k, k)
    if 3 * n + k <= EXACT_LIMIT:  # dense, as the solver and the bounds take it
        fisher = np.empty((3 * n + k, 3 * n + k))
        fisher[:3 * n, :3 * n] = molecules.toarray()
        fisher[:3 * n, 3 * n:] = mixed
        fisher[3 * n:, :3 * n] = mixed.T
        fisher[3 * n:, 3 * n:] = plane
    else:
        fisher = sparse.bmat([[molecules, sparse.csr_matrix(mixed)],
                              [sparse.csr_matrix(mixed.T), sparse.csr_matrix(plane)]], format="csr")
    if residual is None:
        return fisher, None
    return fisher, np.concatenate([weighted.T @ residual, weighted_basis.T @ residual])


def joint_position_bounds(frame_shape: tuple[int, int], x_nm, y_nm, photons, background: float,
                          acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Cramer-Rao bounds (nm, per axis: ``(sd_x, sd_y)``) on the positions of molecules
    imaged together in one frame, with every position, every photon count and the
    background plane (:func:`_plane_basis`) unknown: the diagonal of the inverse of the
    whole Fisher information of the Poisson model of :func:`fit_positions_frame` (read
    noise as a shifted Poisson), ``photons`` per molecule and a flat ``background`` of
    that many photons per pixel (a plane with no slope). This is the precision
    an unbiased estimator can reach when it knows how many molecules there are; for an
    isolated molecule it is the single-molecule bound (``uncertainty [nm]``), for two
    molecules closer than the PSF it grows without limit as they merge. For analysis
    (a dense inverse: a few hundred molecules at most)."""
    x = np.asarray(x_nm, np.float64)
    y = np.asarray(y_nm, np.float64)
    photons = np.asarray(photons, np.float64)
    if not (len(x) == len(y) == len(photons)):
        raise ValueError(f"x, y and photons differ in length: {len(x)}, {len(y)}, {len(photons)}")
    n = len(x)
    expected = _expected_counts(x, y, photons, background, acq, frame_shape)
    fisher = _fisher_information(x, y, photons, expected, acq, frame_shape, _plane_basis(frame_shape))[0]
    fisher = fisher.toarray() if sparse.issparse(fisher) else fisher
    # scaled to a unit diagonal (photons, nm and photons per pixel differ by orders of
    # magnitude); directions with no information (two molecules on one spot, a molecule
    # with no photons) leave the parameters that move along them without a bound
    scale = np.sqrt(np.diag(fisher))
    known = scale > 0
    eigenvalues, vectors = np.linalg.eigh(fisher[np.ix_(known, known)] / np.outer(scale[known], scale[known]))
    blind = eigenvalues <= 1e-10 * max(eigenvalues.max(initial=0.0), 1e-300)
    variance = np.full(len(fisher), np.inf)
    variance[known] = (vectors[:, ~blind] ** 2 / eigenvalues[~blind]).sum(axis=1) / scale[known] ** 2
    variance[np.flatnonzero(known)[(vectors[:, blind] ** 2).sum(axis=1) > 1e-9]] = np.inf
    return np.sqrt(np.maximum(variance[n:2 * n], 0.0)), np.sqrt(np.maximum(variance[2 * n:3 * n], 0.0))


def _damped_solver(fisher):
    """``solve(gradient, damping)``: the Levenberg-Marquardt step
    ``(F + damping diag(F)) step = gradient`` (``F`` dense or sparse), or None where the
    damped matrix is numerically not positive definite. A molecule fitted with no photons
    has zero position rows; a tiny ridge keeps it still."""
    diagonal = fisher.diagonal()
    ridge = 1e-12 * max(diagonal.max(), 1e-30)
    if sparse.issparse(fisher):
        dense = fisher.toarray() if fisher.shape[0] <= EXACT_LIMIT else None
    else:
        dense = np.asarray(fisher)
    csc = fisher.tocsc() if dense is None else None

    def solve(gradient: np.ndarray, damping: float) -> np.ndarray | None:
        try:
            if dense is not None:
                damped = dense.copy()
                damped[np.diag_indices_from(damped)] += damping * diagonal + ridge
                step = cho_solve(cho_factor(damped), gradient)
            else:
                step = spsolve(csc + sparse.diags(damping * diagonal + ridge, format="csc"), gradient)
        except (LinAlgError, RuntimeError):
            return None
        return step if np.all(np.isfinite(step)) else None

    return solve


def _position_bounds(fisher, n: int) -> np.ndarray:
    """Per molecule ``sqrt((var x + var y) / 2)`` from the inverse of its own block of
    the Fisher information (dense or sparse; parameters ordered photons, x, y, the
    background plane's coefficients): the bound on its position were its neighbours and the background known."""
    index = np.arange(n)[:, None] + np.array([0, n, 2 * n])[None, :]  # (n, 3): photons, x, y
    rows = np.broadcast_to(index[:, :, None], (n, 3, 3))
    columns = np.broadcast_to(index[:, None, :], (n, 3, 3))
    matrix = fisher.tocsr() if sparse.issparse(fisher) else fisher
    blocks = np.asarray(matrix[rows.ravel(), columns.ravel()]).reshape(n, 3, 3)
    out = np.full(n, np.nan)
    diagonal = np.diagonal(blocks, axis1=1, axis2=2)
    informed = np.flatnonzero((diagonal > 0).all(axis=1))
    if len(informed):
        # conditioned on the block scaled to a unit diagonal (photons and positions differ by
        # orders of magnitude): a position the frame does not constrain (a frame one pixel
        # high) gave 0 or 1e13 nm from an inverse of rounding errors
        scale = 1.0 / np.sqrt(diagonal[informed])
        normed = blocks[informed] * scale[:, :, None] * scale[:, None, :]
        good = np.linalg.cond(normed) < MAX_FISHER_CONDITION
        variance = np.linalg.inv(normed[good]) * scale[good][:, :, None] * scale[good][:, None, :]
        vx, vy = variance[:, 1, 1], variance[:, 2, 2]
        positive = (vx > 0) & (vy > 0)
        out[informed[good][positive]] = np.sqrt((vx[positive] + vy[positive]) / 2.0)
    return out


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The thread pools of the loaded BLAS libraries, found once: finding them costs about
    1 ms, as much as the photon counts of a sparse frame (limiting them then 0.02 ms)."""
    return ThreadpoolController()


def _below_offset(median_adu: float, acquisition: Acquisition) -> bool:
    """Whether frames of this median lie clearly (3 read-noise sigmas, at least 3 ADU) below
    the camera offset the photon counts assume."""
    return median_adu < acquisition.offset_adu - 3.0 * max(acquisition.read_noise_adu, 1.0)


def warn_if_below_offset(frames: np.ndarray, acquisition: Acquisition) -> None:
    """Warn when the frames' median lies clearly below the camera offset the photon counts
    assume: frames with the offset already subtracted, or normalised ones, gave plausible
    but wrong photons and uncertainties without a word."""
    median = float(np.median(frames))
    if _below_offset(median, acquisition):
        warnings.warn(f"the frames' median, {median:.4g} ADU, lies below the camera offset of "
                      f"{acquisition.offset_adu:g} ADU that the photon counts assume (the offset subtracted "
                      "already, or frames rescaled?); set the acquisition's offset and gain to those of the data",
                      UserWarning, stacklevel=4)


def warn_if_quieter_than_the_camera_allows(frames: np.ndarray, acquisition: Acquisition) -> None:
    """Warn when the frames' background varies far less than the camera settings predict:
    with the gain and offset set, a background of ``B`` ADU holds ``(B - offset) / gain``
    photons, whose shot noise and the read noise make a noise of at least
    ``sqrt(gain * (B - offset) + read_noise^2)`` ADU. Frames at half that or less have an
    offset set too low (a camera at 400 ADU with the default 100: the position fit's
    uncertainties came out about twice too large, the background in photons 300 too
    high, without a word) or a gain set too high, or were smoothed. The message gives
    the offset that would match. Needs no dark frames: :func:`~.estimate.estimate_noise`
    (frame-to-frame differences, or neighbouring pixels for one frame) and
    :func:`~.estimate.estimate_baseline` on the darkest regions."""
    from .estimate import estimate_baseline, estimate_noise

    noise_adu = estimate_noise(frames)
    baseline_adu = estimate_baseline(frames)
    gain, offset, read_noise = acquisition.gain_adu_per_photon, acquisition.offset_adu, acquisition.read_noise_adu
    expected_adu = math.sqrt(gain * max(baseline_adu - offset, 0.0) + read_noise**2)
    if not (math.isfinite(noise_adu) and expected_adu > 2.0 * noise_adu):
        return
    if read_noise > 2.0 * noise_adu:  # the read noise set alone is more than the frames hold
        warnings.warn(f"the frames' background noise, {noise_adu:.3g} ADU, is less than half the read noise set, "
                      f"{read_noise:g} ADU: set the camera's read noise (the position fit's uncertainties depend on "
                      "it)", UserWarning, stacklevel=4)
        return
    matching_offset = baseline_adu - max(noise_adu**2 - read_noise**2, 0.0) / gain
    warnings.warn(f"the frames' background noise, {noise_adu:.3g} ADU, is less than half the {expected_adu:.3g} ADU "
                  f"that the camera settings predict for their background level of {baseline_adu:.4g} ADU (the shot "
                  f"noise of {(baseline_adu - offset) / gain:.4g} photons at an offset of {offset:g} ADU and a gain "
                  f"of {gain:g} ADU/photon, and {read_noise:g} ADU of read noise): is the camera offset higher (about "
                  f"{matching_offset:.0f} ADU would match) or the gain lower? The photon counts' background and the "
                  "position fit's uncertainties depend on them", UserWarning, stacklevel=4)


#: the median of a chi-squared variable of one degree of freedom (a unit normal squared)
CHI2_1_MEDIAN = 0.454936
#: the position fit's reduced chi^2 above which the frames are noisier than the camera
#: settings say (0.96-0.99 on simulated frames with the right settings, 0.86-0.96 in crowds,
#: where missed molecules leave residuals; ISBI 2013 at the default gain of 1: 3.6)
MAX_FIT_CHI2 = 1.5


def fit_chi2(frame_adu: np.ndarray, x_nm, y_nm, acq: Acquisition) -> float:
    """The reduced Pearson chi^2 of the position fit of one frame's molecules at
    ``(x_nm, y_nm)``, robustly: the median over the pixels of ``(observed - expected)^2 /
    expected`` in the shifted-Poisson model, over its value for unit-variance residuals;
    about 1 when the camera settings (gain, read noise) describe the frames' noise, more
    when the frames are noisier, as with a gain set too low; NaN without a molecule. A
    frame larger than :data:`TILE_PX` pixels: its first tile, with the molecules whose
    light reaches it."""
    frame = np.asarray(frame_adu)[:TILE_PX, :TILE_PX]
    x, y = np.asarray(x_nm, np.float64), np.asarray(y_nm, np.float64)
    reach_nm = (TILE_PX + _window_half_px(acq)) * acq.pixel_size_nm
    near = np.isfinite(x) & np.isfinite(y) & (x < reach_nm) & (y < reach_nm)
    if not near.any():
        return math.nan
    return _fit_region(frame, x[near], y[near], acq, acq.fine_pixel_nm * MAX_SHIFT_FINE_PX, None, chi2=True)[-1]


def warn_if_noisier_than_the_camera_allows(frames_adu: np.ndarray, table: pd.DataFrame, acquisition: Acquisition,
                                           frame_numbers) -> None:
    """Warn when the position fit of the first of ``frames_adu`` (1-based ``frame_numbers``)
    that holds localizations of ``table`` leaves residuals far larger than the camera
    settings predict (:func:`fit_chi2` above :data:`MAX_FIT_CHI2`): the photon counts and
    the uncertainties assume those settings, and on the ISBI 2013 frames at the default
    gain of 1 the uncertainties came out 2.2 times too small without a word (a review;
    :func:`warn_if_quieter_than_the_camera_allows` warns of the other side)."""
    if _below_offset(float(np.median(frames_adu)), acquisition):
        return  # below the offset: warn_if_below_offset says what is wrong, and the residuals mean nothing
    frame_of_row = table[FRAME].to_numpy()
    for frame, number in zip(np.asarray(frames_adu), np.asarray(frame_numbers)):
        rows = frame_of_row == number
        if rows.any():
            chi2 = fit_chi2(frame, table[X_NM].to_numpy()[rows], table[Y_NM].to_numpy()[rows], acquisition)
            break
    else:
        return
    if not chi2 > MAX_FIT_CHI2:
        return
    gain = acquisition.gain_adu_per_photon
    warnings.warn(f"the frames are {chi2:.1f} times noisier than the camera settings predict (the position fit's "
                  f"residuals against a gain of {gain:g} ADU/photon and {acquisition.read_noise_adu:g} ADU of read "
                  f"noise): is the gain higher (about {gain * chi2:.2g} ADU/photon would match), or is the camera an "
                  "EMCCD (its excess noise doubles the variance)? The photon counts and the position fit's "
                  f"uncertainties assume these settings: as set, the uncertainties are about {math.sqrt(chi2):.1f} "
                  "times too small. (Localizations that miss most of the molecules, from a model not made for these "
                  "frames, leave such residuals too)", UserWarning, stacklevel=4)


def check_camera_settings(frames_adu: np.ndarray, acquisition: Acquisition) -> None:
    """Warn of camera settings that cannot be those of these frames (the photon counts and
    the position fit depend on them): :func:`warn_if_below_offset` and
    :func:`warn_if_quieter_than_the_camera_allows`."""
    warn_if_below_offset(frames_adu, acquisition)
    warn_if_quieter_than_the_camera_allows(frames_adu, acquisition)


def add_photometry(frames_adu: np.ndarray, table: pd.DataFrame, acq: Acquisition, frame_numbers,
                   fit_positions: bool = False, max_shift_nm: float | None = None,
                   check_camera: bool = True) -> pd.DataFrame:
    """``table`` with ``intensity [photon]`` and ``offset [photon]`` (the background plane
    under each molecule) fitted on the frames (see the module notes); with
    ``fit_positions`` also ``x [nm]`` and ``y [nm]`` fitted (:func:`fit_positions_frame`),
    ``uncertainty [nm]`` and ``at_box_edge`` (1 where the fit stopped at the edge of its
    box, 0 elsewhere).

    Parameters
    ----------
    frames_adu
        (n, rows, cols) camera frames in ADU.
    table
        Localizations of these frames (``frame``, ``x [nm]``, ``y [nm]``).
    acq
        Pixel size and PSF for the model; gain, offset and read noise for the photons.
    frame_numbers
        1-based frame number of each of ``frames_adu``.
    fit_positions, max_shift_nm
        Fit the positions too, each within ``max_shift_nm`` (default half a fine
        pixel) of its place in ``table``.
    check_camera
        Warn of camera settings that cannot be the frames' (:func:`check_camera_settings`;
        :func:`~.predict.localize_stream` checks its first batch and not each frame).
    """
    frames_adu = np.asarray(frames_adu)
    numbers = np.asarray(frame_numbers)
    if frames_adu.ndim == 2:
        frames_adu = frames_adu[None]
    if numbers.shape != (len(frames_adu),) or (numbers.size and numbers.min() < 1):
        # 0-based numbers fitted each frame's molecules on the next frame, silently
        raise ValueError(f"frame_numbers must give the 1-based number of each of the {len(frames_adu)} frame(s), "
                         f"got {numbers.tolist()[:10]}")
    if check_camera and frames_adu.size:
        check_camera_settings(frames_adu, acq)
    out = table.copy()
    for column in [INTENSITY, BACKGROUND] + ([UNCERTAINTY, AT_BOX_EDGE] if fit_positions else []):
        out[column] = np.nan
    frame_of_row = out[FRAME].to_numpy()
    # one BLAS thread: the fit's matrices (a few hundred columns) gain nothing from more, and
    # BLAS threads competing with other work for the cores slowed it 3 times (two busy
    # processes on 2 cores: 0.62 against 0.20 s a frame at ISBI 2013 density) and more on a
    # shared cluster node, where BLAS starts a thread for every core of the machine
    with _threadpools().limit(limits=1, user_api="blas"):
        for frame_adu, number in zip(frames_adu, np.asarray(frame_numbers, np.int64)):
            rows = np.flatnonzero(frame_of_row == number)
            if len(rows) == 0:
                continue
            x, y = out[X_NM].to_numpy()[rows], out[Y_NM].to_numpy()[rows]
            if fit_positions:
                x, y, photons, background, uncertainty, at_edge = fit_positions_frame(frame_adu, x, y, acq,
                                                                                      max_shift_nm)
                fitted = {X_NM: x, Y_NM: y, INTENSITY: photons, BACKGROUND: background, UNCERTAINTY: uncertainty,
                          AT_BOX_EDGE: at_edge}
            else:
                photons, background = photometry_frame(frame_adu, x, y, acq)
                fitted = {INTENSITY: photons, BACKGROUND: background}
            for column, values in fitted.items():
                out.iloc[rows, out.columns.get_loc(column)] = values
    return out
