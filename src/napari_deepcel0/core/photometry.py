"""Photon counts of localizations, fitted on the camera frames.

DeepCEL0's maps say where the molecules are, not how bright they are (its targets are
unit spikes; ``confidence`` is a 3 x 3 sum of the map). Given the positions, the
camera frame is linear in the brightnesses: with the acquisition's PSF integrated over
each camera pixel (the model the simulations use), each frame is fitted as

    (frame - offset_adu) / gain = sum_k N_k PSF(x_k, y_k) + b,    N_k >= 0, b >= 0

by bounded least squares, all molecules of a frame together (crowded molecules share
their light instead of each counting it twice). ``N_k`` is the molecule's
``intensity [photon]`` and ``b`` the frame's ``offset [photon]`` (background photons per
camera pixel, one value per frame), as ThunderSTORM names them. Photons need the
camera's gain (ADU per photon) and offset from the :class:`Acquisition`; the positions
are not changed. Molecules the localizer missed leave their light to the background
and to their neighbours, so counts in crowds are biased upwards.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.linalg import cholesky, solve_triangular
from scipy.optimize import lsq_linear, nnls
from scipy.special import erf

from .acquisition import Acquisition
from .io import FRAME, INTENSITY, X_NM, Y_NM

BACKGROUND = "offset [photon]"
#: the PSF window of each molecule reaches this many sigma beyond its pixel
WINDOW_SIGMAS = 4.0
#: frames with up to this many molecules (+ 1 for the background) are solved exactly,
#: more iteratively (the exact solver's cost grows with the cube of the number)
EXACT_LIMIT = 1500


def psf_columns(x_nm: np.ndarray, y_nm: np.ndarray, acq: Acquisition, frame_shape: tuple[int, int]):
    """Sparse matrix (rows * cols, n): column k is the image of one photon from the
    molecule at ``(x_nm[k], y_nm[k])``, the Gaussian PSF integrated over each camera
    pixel (pixel ``(r, c)`` covers ``[c, c + 1) * pixel`` in x and ``[r, r + 1) * pixel``
    in y); light falling outside the frame is lost."""
    rows, cols = frame_shape
    p, s = acq.pixel_size_nm, acq.sigma_nm * math.sqrt(2.0)
    half = int(math.ceil(WINDOW_SIGMAS * acq.sigma_nm / p)) + 1
    steps = np.arange(-half, half + 1)

    def profile(pos_nm):  # (n, window) pixel indices and the fraction of the light in each
        index = np.floor(pos_nm / p).astype(np.int64)[:, None] + steps[None, :]
        left = index * p - pos_nm[:, None]
        return index, 0.5 * (erf((left + p) / s) - erf(left / s))

    r_idx, r_w = profile(np.asarray(y_nm, np.float64))
    c_idx, c_w = profile(np.asarray(x_nm, np.float64))
    n, w = len(r_idx), len(steps)
    rr = np.broadcast_to(r_idx[:, :, None], (n, w, w))
    cc = np.broadcast_to(c_idx[:, None, :], (n, w, w))
    values = r_w[:, :, None] * c_w[:, None, :]
    k = np.broadcast_to(np.arange(n)[:, None, None], (n, w, w))
    inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    return sparse.csr_matrix((values[inside], (rr[inside] * cols + cc[inside], k[inside])), shape=(rows * cols, n))


def fit_frame(frame_adu: np.ndarray, x_nm: np.ndarray, y_nm: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, float]:
    """(photons of each molecule, background photons per pixel) of one camera frame."""
    photons = (np.asarray(frame_adu, np.float64) - acq.offset_adu) / acq.gain_adu_per_photon
    design = sparse.hstack([psf_columns(x_nm, y_nm, acq, photons.shape),
                            sparse.csr_matrix(np.ones((photons.size, 1)))], format="csr")
    if design.shape[1] <= EXACT_LIMIT:
        x = _nnls_small(design, photons.ravel())
    else:
        x = lsq_linear(design, photons.ravel(), bounds=(0.0, np.inf), lsq_solver="lsmr", tol=1e-8).x
    return x[:-1], float(x[-1])


def _nnls_small(design: sparse.csr_matrix, y: np.ndarray) -> np.ndarray:
    """min ||design x - y||, x >= 0, exactly, for a few hundred columns: the same
    problem rewritten with the Cholesky factor R of design^T design (R^T R), whose
    size is the number of columns, not of pixels, then Lawson-Hanson NNLS. Close
    localizations make columns nearly equal, where iterative solvers crawl (0.4 s
    against 0.08 s a frame at ISBI 2013 density)."""
    gram = (design.T @ design).toarray()
    ridge = 1e-10 * max(np.trace(gram) / len(gram), 1e-30)  # identical columns stay solvable
    r = cholesky(gram + ridge * np.eye(len(gram)))
    z = solve_triangular(r, design.T @ y, trans="T")
    return nnls(r, z, maxiter=50 * len(gram))[0]


def add_photometry(frames_adu: np.ndarray, table: pd.DataFrame, acq: Acquisition, frame_numbers) -> pd.DataFrame:
    """``table`` with ``intensity [photon]`` and ``offset [photon]`` fitted on the
    frames (see the module notes).

    Parameters
    ----------
    frames_adu
        (n, rows, cols) camera frames in ADU.
    table
        Localizations of these frames (``frame``, ``x [nm]``, ``y [nm]``).
    acq
        Pixel size and PSF for the model, gain and offset for the photons.
    frame_numbers
        1-based frame number of each of ``frames_adu``.
    """
    frames_adu = np.asarray(frames_adu)
    out = table.copy()
    out[INTENSITY] = np.nan
    out[BACKGROUND] = np.nan
    frame_of_row = out[FRAME].to_numpy()
    for frame_adu, number in zip(frames_adu, np.asarray(frame_numbers, np.int64)):
        rows = np.flatnonzero(frame_of_row == number)
        if len(rows) == 0:
            continue
        photons, background = fit_frame(frame_adu, out[X_NM].to_numpy()[rows], out[Y_NM].to_numpy()[rows], acq)
        out.iloc[rows, out.columns.get_loc(INTENSITY)] = photons
        out.iloc[rows, out.columns.get_loc(BACKGROUND)] = background
    return out
