"""Gaussian PSF and the acquisition operator ``A = S_L K``.

``K`` convolves a fine-grid map with the Gaussian PSF (sampled by integrating the
Gaussian over each fine pixel and normalised to sum 1) with a zero boundary: light
from the map that falls outside the frame is lost, and nothing outside the frame is
assumed. ``S_L`` sums each ``L x L`` block of fine pixels into one camera pixel (the
CEL0 reference's choice), so a unit spike on the fine grid produces a camera image
that sums to about 1: map values are in the same units as the frame (ADU or photons).

Because the PSF is separable, ``A`` is separable too: ``A X = R X C^T`` with two small
matrices ``R`` (M_rows x N_rows) and ``C`` (M_cols x N_cols), where entry ``[m, i]`` is the
fraction of a spike at fine index ``i`` that lands in camera index ``m``. Applying ``A``
and its adjoint is two matrix products, exact (no wrap-around, unlike a circular FFT)
and faster than FFTs on both CPU and GPU. Column norms and the Lipschitz constant of
``A^T A`` follow in closed form from ``R`` and ``C``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import erf

from .acquisition import Acquisition


def integrated_gaussian(centres: np.ndarray, edges: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of a 1D Gaussian falling between consecutive ``edges``.

    Parameters
    ----------
    centres
        Gaussian centres, shape (n,), in the same unit as ``edges`` and ``sigma``.
    edges
        Increasing bin edges, shape (m + 1,).
    sigma
        Standard deviation.

    Returns
    -------
    ndarray, shape (n, m)
        ``out[k, j]`` is the integral of the unit Gaussian centred at ``centres[k]``
        over ``[edges[j], edges[j + 1])``.
    """
    z = (np.asarray(edges, dtype=np.float64)[None, :] - np.asarray(centres, dtype=np.float64)[:, None])
    cdf = 0.5 * erf(z / (math.sqrt(2.0) * sigma))
    return np.diff(cdf, axis=1)


def psf_kernel_1d(acq: Acquisition, radius_fine_px: int | None = None) -> np.ndarray:
    """1D PSF profile on the fine grid, integrated over fine pixels, summing to 1.

    The 2D fine-grid PSF is ``outer(k, k)``. The default radius is
    ``ceil(4 sigma) + 1`` fine pixels, which keeps more than 99.99 % of the mass.
    """
    sigma = acq.sigma_fine_px
    radius = int(math.ceil(4.0 * sigma)) + 1 if radius_fine_px is None else int(radius_fine_px)
    edges = np.arange(-radius, radius + 2) - 0.5
    k = integrated_gaussian(np.zeros(1), edges, sigma)[0]
    return k / k.sum()


def psf_kernel_2d(acq: Acquisition, radius_fine_px: int | None = None) -> np.ndarray:
    """2D fine-grid PSF (``outer`` of :func:`psf_kernel_1d`), summing to 1, centred."""
    k = psf_kernel_1d(acq, radius_fine_px)
    return np.outer(k, k)


def acquisition_matrix_1d(acq: Acquisition, n_camera: int) -> np.ndarray:
    """The 1D factor of ``A = S_L K`` along one axis.

    Returns
    -------
    ndarray, shape (n_camera, n_camera * L)
        ``out[m, i]``: fraction of a unit spike at fine index ``i`` (along this axis)
        that falls into camera index ``m`` after blurring (zero boundary) and
        ``L``-block summation.
    """
    L = acq.upsampling
    n_fine = n_camera * L
    k = psf_kernel_1d(acq)
    radius = (len(k) - 1) // 2
    # Blur matrix K1[j, i] = k[j - i] for fine indices j (receiving) and i (source).
    offsets = np.arange(n_fine)[:, None] - np.arange(n_fine)[None, :]
    blur = np.where(np.abs(offsets) <= radius, k[np.clip(offsets + radius, 0, 2 * radius)], 0.0)
    # Sum blocks of L receiving fine pixels into camera pixels.
    return blur.reshape(n_camera, L, n_fine).sum(axis=1)


class AcquisitionOperator:
    """The forward operator ``A = S_L K`` of one frame geometry, and its adjoint.

    Works on torch tensors of shape ``(..., N_rows, N_cols)`` (fine grid) and
    ``(..., M_rows, M_cols)`` (camera grid), on any device, batched over leading
    axes. NumPy arrays are accepted and returned as NumPy arrays.

    Parameters
    ----------
    acq
        Acquisition settings (pixel size, PSF, L).
    camera_shape
        (rows, cols) of the camera frame, ``M_rows x M_cols``.
    device, dtype
        Where the torch matrices live.
    """

    def __init__(
        self,
        acq: Acquisition,
        camera_shape: tuple[int, int],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        rows, cols = (int(camera_shape[0]), int(camera_shape[1]))
        if rows < 1 or cols < 1:
            raise ValueError(f"camera shape must be positive, got {camera_shape}")
        self.acq = acq
        self.camera_shape = (rows, cols)
        self.fine_shape = acq.fine_shape(self.camera_shape)
        self._r_np = acquisition_matrix_1d(acq, rows)
        self._c_np = acquisition_matrix_1d(acq, cols)
        self.device = torch.device(device)
        self.dtype = dtype
        self.R = torch.as_tensor(self._r_np, dtype=dtype, device=self.device)
        self.C = torch.as_tensor(self._c_np, dtype=dtype, device=self.device)

    # ----------------------------------------------------------- operators
    def _apply(self, x, fn):
        if isinstance(x, np.ndarray):
            out = fn(torch.as_tensor(x, dtype=self.dtype, device=self.device))
            return out.cpu().numpy()
        return fn(x.to(device=self.device, dtype=self.dtype))

    def forward(self, x):
        """``A x``: fine-grid maps (..., N_r, N_c) -> camera frames (..., M_r, M_c)."""
        self._check(x, self.fine_shape, "fine-grid map")
        return self._apply(x, lambda t: self.R @ t @ self.C.T)

    def adjoint(self, y):
        """``A^T y``: camera frames (..., M_r, M_c) -> fine-grid maps (..., N_r, N_c)."""
        self._check(y, self.camera_shape, "camera frame")
        return self._apply(y, lambda t: self.R.T @ t @ self.C)

    __call__ = forward

    @staticmethod
    def _check(x, shape, what):
        if tuple(x.shape[-2:]) != tuple(shape):
            raise ValueError(f"{what} must have trailing shape {tuple(shape)}, got {tuple(x.shape)}")

    # ----------------------------------------------------------- constants
    def column_norms(self) -> np.ndarray:
        """Exact ``||c_i||_2`` for every fine pixel ``i`` (columns of ``A``), shape N_r x N_c.

        Columns near the frame border are shorter (part of the PSF falls outside).
        """
        col_r = np.sqrt((self._r_np**2).sum(axis=0))
        col_c = np.sqrt((self._c_np**2).sum(axis=0))
        return np.outer(col_r, col_c)

    def lipschitz(self) -> float:
        """``||A||_2^2``, the Lipschitz constant of the gradient of ``0.5 ||A x - y||^2``."""
        return float(np.linalg.norm(self._r_np, 2) ** 2 * np.linalg.norm(self._c_np, 2) ** 2)


def phase_column_norms(acq: Acquisition) -> np.ndarray:
    """Column norms of ``A = S_L K`` away from the border, one per sub-pixel phase.

    Returns
    -------
    ndarray, shape (L, L)
        ``out[p, q]`` is ``||c_i||`` for a fine pixel ``i`` at row phase ``p`` and column
        phase ``q`` (``i mod L``) far from the frame border. Tiling it gives the norms of
        any interior region, e.g. a training patch cut from a larger frame.
    """
    L = acq.upsampling
    radius_px = int(math.ceil(6.0 * acq.sigma_px)) + 2
    n_camera = 2 * radius_px + 1
    a1 = acquisition_matrix_1d(acq, n_camera)
    centre = radius_px * L
    col = np.sqrt((a1[:, centre : centre + L] ** 2).sum(axis=0))
    return np.outer(col, col)

