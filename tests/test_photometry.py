import numpy as np
import pandas as pd
import pytest

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.photometry import BACKGROUND, add_photometry, psf_columns
from napari_deepcel0.core.predict import localize

ACQ = ISBI2013.replace(gain_adu_per_photon=2.5, offset_adu=100.0, read_noise_adu=2.0)


def _stack(density, seed=4, n=4):
    return sim.simulate_stack(n_frames=n, shape=(48, 48), density_per_um2=density, structure="uniform", acq=ACQ,
                              photons=sim.PhotonModel(1000, 3000, 0.2),
                              noise=sim.CameraNoise(background_photons=(10, 10)), seed=seed)


def test_psf_columns_hold_one_photon_each_and_follow_the_pixel_convention():
    # a molecule at the centre of camera pixel (r=5, c=7) of a 100 nm camera
    a = psf_columns(np.array([750.0]), np.array([550.0]), ACQ, (16, 16)).toarray()[:, 0].reshape(16, 16)
    assert a.sum() == pytest.approx(1.0, abs=1e-4)  # the window holds all of the PSF
    assert np.unravel_index(a.argmax(), a.shape) == (5, 7)  # x = column, y = row
    assert a[5, 6] == pytest.approx(a[5, 8]) and a[4, 7] == pytest.approx(a[6, 7])
    # at a corner of the frame most of the light is lost, not wrapped around
    corner = psf_columns(np.array([0.0]), np.array([0.0]), ACQ, (16, 16)).toarray()
    assert corner.sum() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("density, background_tol", [(0.3, 0.3), (5.5, 1.0)])  # isolated; ISBI 2013-like crowds
def test_photons_and_background_are_recovered_at_the_true_positions(density, background_tol):
    frames, gt = _stack(density)
    fitted = add_photometry(frames, gt, ACQ, np.arange(1, 5))
    ratio = fitted["intensity [photon]"] / gt["intensity [photon]"]
    assert abs(ratio.median() - 1.0) < 0.02 and ratio.quantile(0.9) < 1.15
    # 10 photons per pixel; in crowds the background shares the light with 140 molecules a frame
    assert fitted[BACKGROUND].to_numpy() == pytest.approx(10.0, abs=background_tol)
    assert fitted[["frame", "x [nm]", "y [nm]"]].equals(gt[["frame", "x [nm]", "y [nm]"]])  # positions kept


def test_the_gain_sets_the_scale():
    frames, gt = _stack(0.3)
    wrong_gain = add_photometry(frames, gt, ACQ.replace(gain_adu_per_photon=5.0), np.arange(1, 5))
    assert (wrong_gain["intensity [photon]"] / gt["intensity [photon]"]).median() == pytest.approx(0.5, abs=0.02)


def test_frames_without_localizations_and_empty_tables():
    frames, gt = _stack(0.3)
    some = gt[gt["frame"] != 2]
    fitted = add_photometry(frames, some, ACQ, np.arange(1, 5))
    assert len(fitted) == len(some) and fitted["intensity [photon]"].notna().all()
    empty = add_photometry(frames, gt.iloc[:0], ACQ, np.arange(1, 5))
    assert len(empty) == 0 and {"intensity [photon]", BACKGROUND} <= set(empty.columns)


def test_streaming_localization_adds_photons(tiny_model_path):
    from napari_deepcel0.core.predict import DeepLocalizer

    frames, _ = _stack(1.0, n=3)
    model = DeepLocalizer(tiny_model_path, acquisition=ACQ, device="cpu", precision="fp32", batch_size=2)
    table = localize(model, frames, threshold=0.0, photometry=True)
    assert len(table) and table["intensity [photon]"].notna().all() and (table["intensity [photon]"] >= 0).all()
    assert "confidence" in table.columns
    plain = localize(model, frames, threshold=0.0)
    pd.testing.assert_frame_equal(plain, table[plain.columns])  # the same localizations


def test_a_localizer_that_reports_photons_itself_is_refused():
    from napari_deepcel0.core.cel0 import Cel0Localizer

    frames, _ = _stack(0.3, n=1)
    with pytest.raises(ValueError, match="already reports 'intensity \\[photon\\]'"):
        localize(Cel0Localizer(ACQ, max_outer=2, max_inner=2), frames, photometry=True)


def test_the_iterative_solver_for_crowded_large_frames_agrees_with_the_exact_one(monkeypatch):
    from napari_deepcel0.core import photometry

    frames, gt = _stack(5.5, n=1)
    exact = add_photometry(frames, gt, ACQ, [1])
    monkeypatch.setattr(photometry, "EXACT_LIMIT", 10)  # as for a frame with more than 1,500 molecules
    iterative = add_photometry(frames, gt, ACQ, [1])
    np.testing.assert_allclose(iterative["intensity [photon]"], exact["intensity [photon]"], rtol=0.02, atol=5.0)


def test_a_run_cancelled_before_its_first_batch_still_has_the_photon_columns(tiny_model_path):
    from napari_deepcel0.core.predict import DeepLocalizer

    frames, _ = _stack(0.3, n=1)
    model = DeepLocalizer(tiny_model_path, acquisition=ACQ, device="cpu", precision="fp32")
    table = localize(model, frames, photometry=True, cancel=lambda: True)
    assert len(table) == 0 and {"intensity [photon]", BACKGROUND, "confidence"} <= set(table.columns)
