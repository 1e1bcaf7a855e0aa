import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.losses import LocalizationLoss
from napari_deepcel0.core.optics import (
    AcquisitionOperator,
    integrated_gaussian,
    phase_column_norms,
    psf_kernel_1d,
    psf_kernel_2d,
)

SMALL = Acquisition(pixel_size_nm=100, fwhm_nm=180, upsampling=3)


def _dense_matrix(op):
    n = op.fine_shape[0] * op.fine_shape[1]
    eye = np.eye(n).reshape((n,) + op.fine_shape)
    return op.forward(eye).reshape(n, -1).T  # (camera pixels, fine pixels)


def test_psf_is_normalised_and_symmetric():
    k = psf_kernel_1d(ISBI2013)
    assert k.sum() == pytest.approx(1.0)
    assert np.allclose(k, k[::-1])
    k2 = psf_kernel_2d(ISBI2013)
    assert k2.sum() == pytest.approx(1.0)
    # second moment matches sigma (integration over fine pixels adds 1/12 px^2)
    r = np.arange(len(k)) - len(k) // 2
    assert np.sqrt((k * r**2).sum() - 1 / 12) == pytest.approx(ISBI2013.sigma_fine_px, rel=1e-3)


def test_integrated_gaussian_sums_to_one_over_wide_bins():
    out = integrated_gaussian(np.array([0.3, 5.0]), np.arange(-20, 30, 1.0), 1.7)
    assert np.allclose(out.sum(axis=1), 1.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adjoint_identity(rng, dtype):
    op = AcquisitionOperator(ISBI2013, (16, 20), dtype=dtype)
    x = rng.random((3,) + op.fine_shape)
    y = rng.random((3,) + op.camera_shape)
    lhs = np.sum(op.forward(x).astype(np.float64) * y)
    rhs = np.sum(x * op.adjoint(y).astype(np.float64))
    assert abs(lhs - rhs) / abs(lhs) < 1e-6


def test_operator_equals_blur_then_block_sum(rng):
    op = AcquisitionOperator(SMALL, (5, 7), dtype=torch.float64)
    x = rng.random(op.fine_shape)
    blurred = convolve2d(x, psf_kernel_2d(SMALL), mode="same")  # zero boundary
    expected = blurred.reshape(5, 3, 7, 3).sum(axis=(1, 3))
    assert np.allclose(op.forward(x), expected, atol=1e-12)


def test_column_norms_match_brute_force():
    op = AcquisitionOperator(SMALL, (5, 6), dtype=torch.float64)
    dense = _dense_matrix(op)
    brute = np.linalg.norm(dense, axis=0).reshape(op.fine_shape)
    assert np.allclose(op.column_norms(), brute, atol=1e-12)
    assert op.lipschitz() == pytest.approx(np.linalg.norm(dense, 2) ** 2, rel=1e-10)


def test_phase_norms_equal_interior_columns():
    op = AcquisitionOperator(ISBI2013, (24, 24), dtype=torch.float64)
    norms = op.column_norms()
    phase = phase_column_norms(ISBI2013)
    interior = norms[40:44, 48:52]  # rows/cols far from the border, phase 0..3
    assert np.allclose(interior, phase, rtol=1e-9)
    assert phase.mean() == pytest.approx(0.2487, abs=1e-3)
    assert norms[0, 0] < phase[0, 0]  # border columns lose part of the PSF
    # what the CEL0 loss uses: the phase norms tiled from a camera-pixel corner, equal
    # to the operator's interior columns at the same phase
    tiled = LocalizationLoss(column_norms=phase).norms_for((8, 6)).numpy()
    assert np.allclose(tiled, norms[40:48, 48:54], rtol=1e-6)


def test_numpy_and_torch_inputs_and_shape_errors():
    op = AcquisitionOperator(SMALL, (8, 8))
    x = np.zeros(op.fine_shape, np.float32)
    x[12, 12] = 1
    y_np = op.forward(x)
    y_t = op.forward(torch.from_numpy(x))
    assert isinstance(y_np, np.ndarray) and isinstance(y_t, torch.Tensor)
    assert np.allclose(y_np, y_t.numpy())
    assert y_np.sum() == pytest.approx(1.0, abs=1e-3)  # flux is conserved (spike away from border)
    with pytest.raises(ValueError, match="trailing shape"):
        op.forward(np.zeros((8, 8)))


def test_the_operator_renders_a_spike_as_the_simulator_renders_a_molecule():
    """CEL0 inverts A = S_L K; the frames it is scored on come from the simulator's exact
    pixel integrals. A spike at fine pixel (r, c) is a molecule at that pixel's centre,
    ((c + 0.5) p / L, (r + 0.5) p / L) nm: both must give the same camera frame (the two
    forward models were compared by no test: a mutation review)."""
    import pandas as pd

    from napari_deepcel0.core.simulate import expected_photons

    acq = ISBI2013.replace(fwhm_nm=300.0)
    L, px = acq.upsampling, acq.pixel_size_nm
    op = AcquisitionOperator(acq, (16, 20), dtype=torch.float64)
    for r, c in [(30, 41), (5, 70), (33, 2), (63, 79)]:  # inside, and at the frame's edges
        spike = np.zeros(op.fine_shape)
        spike[r, c] = 1000.0
        molecule = pd.DataFrame({"frame": [1], "x [nm]": [(c + 0.5) * px / L], "y [nm]": [(r + 0.5) * px / L],
                                 "intensity [photon]": [1000.0]})
        np.testing.assert_allclose(op.forward(spike), expected_photons(molecule, acq, (16, 20), 1)[0], atol=0.01)
