import re

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.io import INTENSITY
from napari_deepcel0.core.photometry import (
    AT_BOX_EDGE,
    BACKGROUND,
    UNCERTAINTY,
    add_photometry,
    fit_positions_frame,
    joint_position_bounds,
    psf_columns,
)
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


# isolated molecules; ISBI 2013-like crowds
@pytest.mark.parametrize("density, median_tol, background_tol", [(0.3, 0.2, 0.4), (5.5, 0.5, 2.5)])
def test_photons_and_background_are_recovered_at_the_true_positions(density, median_tol, background_tol):
    frames, gt = _stack(density)
    fitted = add_photometry(frames, gt, ACQ, np.arange(1, 5))
    ratio = fitted["intensity [photon]"] / gt["intensity [photon]"]
    assert abs(ratio.median() - 1.0) < 0.02 and ratio.quantile(0.9) < 1.15
    # 10 photons per pixel under each molecule (a plane per frame); in crowds the background shares
    # the light with 140 molecules a frame, and the plane's slopes are least sure at the frame's edges
    error = np.abs(fitted[BACKGROUND].to_numpy() - 10.0)
    assert np.median(error) < median_tol and error.max() < background_tol
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


@pytest.mark.filterwarnings("ignore:the frames are .* times noisier")  # the tiny model's localizations miss
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
    for option in ("photometry", "fit_positions"):
        with pytest.raises(ValueError, match="already reports 'intensity \\[photon\\]'"):
            localize(Cel0Localizer(ACQ, max_outer=2, max_inner=2), frames, **{option: True})


@pytest.mark.parametrize("fit", [False, True])
def test_an_offset_set_too_high_leaves_the_photons_right(fit, monkeypatch):
    """The background was held >= 0, so once the offset error passed the background the
    missing light came out of the molecules (photons 0.34x at 25 ADU too high here)."""
    from napari_deepcel0.core import photometry

    frames, gt = _stack(0.3)  # 10 photons of background per pixel, gain 2.5 ADU/photon
    too_high = ACQ.replace(offset_adu=ACQ.offset_adu + 75.0)  # 30 photons: 20 above the background
    with pytest.warns(UserWarning, match="lies below the camera offset of 175 ADU"):  # and it is said
        fitted = add_photometry(frames, gt, too_high, np.arange(1, 5), fit_positions=fit)
    assert (fitted["intensity [photon]"] / gt["intensity [photon]"]).median() == pytest.approx(1.0, abs=0.03)
    assert fitted[BACKGROUND].to_numpy() == pytest.approx(-20.0, abs=1.5)  # says the offset is 20 photons high
    monkeypatch.setattr(photometry, "EXACT_LIMIT", 1)  # the iterative solver too
    iterative = add_photometry(frames, gt, too_high, np.arange(1, 5), check_camera=False)
    assert (iterative["intensity [photon]"] / gt["intensity [photon]"]).median() == pytest.approx(1.0, abs=0.03)


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


# ------------------------------------------------------------------ the position fit
def _noise_free_frame(emitters, shape=(32, 32), background=10.0):
    """ADU of one frame without noise: the fit's own model."""
    photons = sim.expected_photons(emitters, ACQ, shape, 1)[0] + background
    return photons * ACQ.gain_adu_per_photon + ACQ.offset_adu


def _emitters(xy_nm, photons):
    xy = np.asarray(xy_nm, float)
    return pd.DataFrame({"frame": 1, "x [nm]": xy[:, 0], "y [nm]": xy[:, 1], "intensity [photon]": photons})


def test_the_position_fit_finds_exact_positions_on_a_noise_free_frame():
    # two molecules 150 nm apart (their light overlaps) and one at the frame's edge
    truth = _emitters([[1210.0, 1330.0], [1350.0, 1385.0], [60.0, 2000.0]], [2000.0, 1500.0, 2500.0])
    frame = _noise_free_frame(truth)
    start = truth.assign(**{"x [nm]": truth["x [nm]"] + [8.0, -6.0, 5.0], "y [nm]": truth["y [nm]"] + [-7.0, 9.0, 4.0]})
    x, y, photons, background, uncertainty, at_edge = fit_positions_frame(frame, start["x [nm]"], start["y [nm]"],
                                                                          ACQ, iterations=30)
    np.testing.assert_allclose(x, truth["x [nm]"], atol=0.05)
    np.testing.assert_allclose(y, truth["y [nm]"], atol=0.05)
    np.testing.assert_allclose(photons, truth["intensity [photon]"], rtol=1e-3)
    assert background == pytest.approx(10.0, abs=0.01) and not at_edge.any()
    # the closer pair and the molecule cut by the edge are less certain than in isolation
    alone = fit_positions_frame(_noise_free_frame(truth.iloc[:1]), truth["x [nm]"][:1], truth["y [nm]"][:1], ACQ)[4]
    assert np.all(uncertainty > 0) and uncertainty[0] > alone[0] and uncertainty[2] > alone[0]


def test_the_position_fit_stays_within_half_a_fine_pixel_of_its_start():
    truth = _emitters([[1600.0, 1600.0]], [3000.0])
    frame = _noise_free_frame(truth)
    x, y, *_ = fit_positions_frame(frame, np.array([1640.0]), np.array([1570.0]), ACQ)  # 40 nm and 30 nm off
    half = ACQ.fine_pixel_nm / 2
    assert x[0] == pytest.approx(1640.0 - half) and y[0] == pytest.approx(1570.0 + half)  # moved to the bounds
    x, y, *_ = fit_positions_frame(frame, np.array([1640.0]), np.array([1570.0]), ACQ, max_shift_nm=0.0)
    assert (x[0], y[0]) == (1640.0, 1570.0)
    with pytest.raises(ValueError, match="max_shift_nm"):
        fit_positions_frame(frame, np.array([1640.0]), np.array([1570.0]), ACQ, max_shift_nm=-1.0)


def test_a_molecule_without_light_keeps_its_place_and_gets_no_uncertainty():
    truth = _emitters([[1000.0, 1000.0]], [2000.0])
    x, y, photons, _, uncertainty, _ = fit_positions_frame(_noise_free_frame(truth), np.array([1000.0, 2500.0]),
                                                        np.array([1000.0, 2500.0]), ACQ)
    assert photons[1] == pytest.approx(0.0, abs=1.0) and (x[1], y[1]) == (2500.0, 2500.0)
    assert np.isfinite(uncertainty[0]) and np.isnan(uncertainty[1])


def test_the_uncertainty_matches_the_errors_of_isolated_molecules():
    frames, gt = _stack(0.3, seed=7, n=8)
    fitted = add_photometry(frames, gt, ACQ, np.arange(1, 9), fit_positions=True)
    errors = np.concatenate([fitted["x [nm]"] - gt["x [nm]"], fitted["y [nm]"] - gt["y [nm]"]])
    z = errors / np.tile(fitted[UNCERTAINTY].to_numpy(), 2)
    # for a Gaussian error of unit spread the median |z| is 0.674
    assert 0.7 < np.median(np.abs(z)) / 0.674 < 1.3
    assert 1.0 < fitted[UNCERTAINTY].median() < 10.0  # nm, 1,000-3,000 photons


def test_the_joint_bound_of_an_isolated_molecule_is_the_single_molecule_bound():
    photons, background = 3000.0, 10.0  # photons; photons per pixel
    sd_x, sd_y = joint_position_bounds((32, 32), [2430.0], [2270.0], [photons], background, ACQ)
    # Mortensen et al. 2010, maximum likelihood on a pixelated Gaussian PSF, with the
    # read noise's variance (2 ADU / 2.5 ADU per photon, squared) counted as background
    b = background + (ACQ.read_noise_adu / ACQ.gain_adu_per_photon) ** 2
    s2 = ACQ.sigma_nm ** 2 + ACQ.pixel_size_nm ** 2 / 12
    tau = 2 * np.pi * s2 * b / (photons * ACQ.pixel_size_nm ** 2)
    mortensen = np.sqrt(s2 / photons * (1 + 4 * tau + np.sqrt(2 * tau / (1 + 4 * tau))))
    assert sd_x[0] == pytest.approx(mortensen, rel=0.03) and sd_y[0] == pytest.approx(sd_x[0], rel=1e-3)
    # the fit's uncertainty (the background taken as known) at the same point: the same bound
    frame = _noise_free_frame(_emitters([[2430.0, 2270.0]], [photons]), background=background)
    uncertainty = fit_positions_frame(frame, np.array([2430.0]), np.array([2270.0]), ACQ)[4]
    assert uncertainty[0] == pytest.approx(sd_x[0], rel=0.02)


def test_the_joint_bound_grows_as_two_molecules_merge():
    def bound(separation_nm):
        sd_x, _ = joint_position_bounds((48, 48), [2000.0, 2000.0 + separation_nm], [2400.0, 2400.0],
                                        [2000.0, 2000.0], 10.0, ACQ)
        return sd_x

    alone = joint_position_bounds((48, 48), [2000.0], [2400.0], [2000.0], 10.0, ACQ)[0][0]
    along_the_pair = [bound(d)[0] for d in (1000.0, 200.0, 100.0, 50.0)]
    assert along_the_pair[0] == pytest.approx(alone, rel=0.01)  # 9 sigma apart: independent
    assert np.all(np.diff(along_the_pair) > 0) and along_the_pair[-1] > 10 * alone
    assert np.all(np.isinf(bound(0.0)))  # one spot: which is which is not in the data


def test_the_joint_bound_of_a_molecule_without_photons_is_infinite():
    sd_x, sd_y = joint_position_bounds((48, 48), [1000.0, 3000.0], [1000.0, 3000.0], [2000.0, 0.0], 10.0, ACQ)
    assert np.isfinite(sd_x[0]) and np.isfinite(sd_y[0]) and np.isinf(sd_x[1]) and np.isinf(sd_y[1])
    with pytest.raises(ValueError, match="differ in length"):
        joint_position_bounds((48, 48), [1000.0], [1000.0, 2000.0], [2000.0], 10.0, ACQ)


def test_fitted_positions_beat_the_map_on_sparse_frames_with_the_bundled_model():
    from napari_deepcel0.core.metrics import score
    from napari_deepcel0.core.predict import DeepLocalizer

    frames, gt = _stack(0.5, seed=11, n=6)
    model = DeepLocalizer(None, acquisition=ACQ, device="cpu")
    plain = score(gt, localize(model, frames), 50.0)
    fitted_table = localize(model, frames, fit_positions=True)
    fitted = score(gt, fitted_table, 50.0)
    assert fitted.rmse_nm < plain.rmse_nm - 2.0  # the map's 25 nm grid shows
    assert fitted.jaccard >= plain.jaccard - 1.0 and len(fitted_table) == plain.tp + plain.fp
    assert {INTENSITY, BACKGROUND, UNCERTAINTY, AT_BOX_EDGE} <= set(fitted_table.columns)
    assert set(fitted_table[AT_BOX_EDGE]) <= {0.0, 1.0} and fitted_table[AT_BOX_EDGE].mean() < 0.2


def test_the_sparse_solver_for_large_frames_agrees_with_the_dense_one(monkeypatch):
    from napari_deepcel0.core import photometry

    frames, gt = _stack(2.0, seed=3, n=1)
    start = gt.assign(**{"x [nm]": gt["x [nm]"] + 6.0, "y [nm]": gt["y [nm]"] - 6.0})
    dense = add_photometry(frames, start, ACQ, [1], fit_positions=True)
    monkeypatch.setattr(photometry, "EXACT_LIMIT", 10)  # as for a frame with more than 500 molecules
    # (the starting photons then come from the iterative solver too)
    large = add_photometry(frames, start, ACQ, [1], fit_positions=True)
    np.testing.assert_allclose(large[["x [nm]", "y [nm]"]], dense[["x [nm]", "y [nm]"]], atol=0.5)
    np.testing.assert_allclose(large[UNCERTAINTY], dense[UNCERTAINTY], rtol=0.02)


def test_fit_positions_on_frames_without_localizations_and_when_cancelled(tiny_model_path):
    from napari_deepcel0.core.predict import DeepLocalizer

    frames, gt = _stack(0.3)
    some = gt[gt["frame"] != 2]
    fitted = add_photometry(frames, some, ACQ, np.arange(1, 5), fit_positions=True)
    assert len(fitted) == len(some) and fitted[UNCERTAINTY].notna().all()
    model = DeepLocalizer(tiny_model_path, acquisition=ACQ, device="cpu", precision="fp32")
    table = localize(model, frames, fit_positions=True, cancel=lambda: True)
    assert len(table) == 0 and {INTENSITY, BACKGROUND, UNCERTAINTY, AT_BOX_EDGE, "confidence"} <= set(table.columns)


def test_large_frames_are_fitted_in_tiles_with_the_same_result(monkeypatch):
    from napari_deepcel0.core import photometry

    frames, gt = sim.simulate_stack(n_frames=1, shape=(100, 90), density_per_um2=2.0, structure="uniform", acq=ACQ,
                                    photons=sim.PhotonModel(1000, 3000, 0.2),
                                    noise=sim.CameraNoise(background_photons=(10, 10)), seed=2)
    start = gt.assign(**{"x [nm]": gt["x [nm]"] + 7.0, "y [nm]": gt["y [nm]"] - 5.0})
    monkeypatch.setattr(photometry, "FIT_ITERATIONS", 30)  # both converged, whatever their paths
    tiled = add_photometry(frames, start, ACQ, [1], fit_positions=True)  # 4 tiles of at most 64 x 64 pixels
    monkeypatch.setattr(photometry, "TILE_PX", 1000)
    whole = add_photometry(frames, start, ACQ, [1], fit_positions=True)
    shift = np.hypot(tiled["x [nm]"] - whole["x [nm]"], tiled["y [nm]"] - whole["y [nm]"]).to_numpy()
    # each tile fits its own background: sub-nanometre differences, far below the precision
    # (~5 nm), except for close pairs, whose fits are that sensitive
    xy = gt[["x [nm]", "y [nm]"]].to_numpy()
    alone = cKDTree(xy).query(xy, k=2)[0][:, 1] > 300.0
    assert len(gt) > 150 and alone.sum() > 50 and np.median(shift) < 0.5 and shift[alone].max() < 1.0

    def rmse(t):
        return np.sqrt(np.mean((t["x [nm]"] - gt["x [nm]"]) ** 2 + (t["y [nm]"] - gt["y [nm]"]) ** 2))

    assert rmse(tiled) == pytest.approx(rmse(whole), rel=0.05)
    ratio = (tiled[INTENSITY] / whole[INTENSITY]).to_numpy()
    assert np.median(np.abs(ratio - 1)) < 0.01 and np.abs(ratio[alone] - 1).max() < 0.02
    assert tiled[BACKGROUND].to_numpy() == pytest.approx(10.0, abs=0.5)  # one value per tile
    assert tiled[UNCERTAINTY].notna().all()


def test_photometry_of_large_frames_in_tiles_agrees_with_one_problem(monkeypatch):
    from napari_deepcel0.core import photometry

    frames, gt = sim.simulate_stack(n_frames=1, shape=(100, 90), density_per_um2=5.5, structure="uniform", acq=ACQ,
                                    photons=sim.PhotonModel(1000, 3000, 0.2),
                                    noise=sim.CameraNoise(background_photons=(10, 10)), seed=2)
    tiled = add_photometry(frames, gt, ACQ, [1])
    monkeypatch.setattr(photometry, "TILE_PX", 1000)
    whole = add_photometry(frames, gt, ACQ, [1])
    difference = np.abs(tiled[INTENSITY] - whole[INTENSITY]).to_numpy() / np.maximum(whole[INTENSITY], 100.0)
    assert len(gt) > 400 and np.median(difference) < 0.005
    assert (tiled[INTENSITY] / gt[INTENSITY]).median() == pytest.approx(1.0, abs=0.02)
    assert tiled[BACKGROUND].to_numpy() == pytest.approx(10.0, abs=1.0)  # each tile's plane under its molecules


def test_the_position_fit_keeps_a_low_background_right():
    # EMCCD-like: almost no background and no read noise, where a floor on the variance
    # once pushed the background to 0 and the photons up
    acq = ACQ.replace(gain_adu_per_photon=1.0, read_noise_adu=0.0)
    frames, gt = sim.simulate_stack(n_frames=4, shape=(48, 48), density_per_um2=0.5, structure="uniform", acq=acq,
                                    photons=sim.PhotonModel(2000, 2000, 0.0),
                                    noise=sim.CameraNoise(background_photons=(0.3, 0.3)), seed=3)
    fitted = add_photometry(frames, gt[["frame", "x [nm]", "y [nm]"]], acq, np.arange(1, 5), fit_positions=True)
    plain = add_photometry(frames, gt[["frame", "x [nm]", "y [nm]"]], acq, np.arange(1, 5))
    background = fitted[BACKGROUND].to_numpy()  # under each molecule: the plane's slopes add a little noise
    assert np.median(background) == pytest.approx(0.3, abs=0.02) and background == pytest.approx(0.3, abs=0.1)
    assert fitted[INTENSITY].median() == pytest.approx(plain[INTENSITY].median(), rel=0.005)


def _ramp_stack(n_frames=8, photons=600.0, seed=1):
    """Isolated molecules on a 5 x 5 grid of 64 x 64-pixel frames, under a background that
    rises from 5 to 15 photons per pixel along x (uneven illumination), and the background
    under each molecule."""
    rng = np.random.default_rng(seed)
    grid = [4, 16, 28, 40, 52]
    truth = pd.DataFrame([(f, (x + rng.uniform()) * 100.0, (y + rng.uniform()) * 100.0, photons)
                          for f in range(1, n_frames + 1) for y in grid for x in grid],
                         columns=["frame", "x [nm]", "y [nm]", INTENSITY])
    ramp = np.broadcast_to(np.linspace(5.0, 15.0, 64), (n_frames, 64, 64))
    light = rng.poisson(sim.expected_photons(truth, ACQ, (64, 64), n_frames) + ramp)
    frames = np.round(light * ACQ.gain_adu_per_photon + ACQ.offset_adu + rng.normal(0, ACQ.read_noise_adu, light.shape))
    under = 5.0 + 10.0 * (truth["x [nm]"].to_numpy() / 100.0 - 0.5) / 63.0
    return frames, truth, under


@pytest.mark.parametrize("fit", [False, True])
def test_a_background_ramp_leaves_the_photon_counts_unbiased(fit):
    """One constant background per frame under uneven illumination (5 -> 15 photons per
    pixel across the frame) took 12 % of the light of 600-photon molecules on the dim side
    and gave 9 % on the bright side (17 % and 13 % with the position fit; a review): the
    background is now a plane, and ``offset [photon]`` its value under each molecule."""
    frames, truth, under = _ramp_stack()
    fitted = add_photometry(frames, truth[["frame", "x [nm]", "y [nm]"]], ACQ, np.arange(1, 9), fit_positions=fit)
    ratio = (fitted[INTENSITY] / truth[INTENSITY]).to_numpy()
    x = truth["x [nm]"].to_numpy()
    dim, bright = x < 1500.0, x > 5000.0
    assert ratio[dim].mean() == pytest.approx(1.0, abs=0.03) and ratio[bright].mean() == pytest.approx(1.0, abs=0.03)
    assert np.abs(fitted[BACKGROUND].to_numpy() - under).max() < 1.0  # was 4.4 photons off on the dim side


@pytest.mark.parametrize("fit", [False, True])
def test_the_background_plane_changes_little_on_a_flat_background(fit, monkeypatch):
    """On a flat background the plane's slopes come out near 0: photons and positions as
    with one constant per frame (the model before, which ``PLANE_MIN_PX`` above the frame's
    size restores)."""
    from napari_deepcel0.core import photometry

    frames, gt = _stack(2.0, seed=5, n=3)
    rng = np.random.default_rng(0)
    start = gt.assign(**{"x [nm]": gt["x [nm]"] + rng.uniform(-8, 8, len(gt)),
                         "y [nm]": gt["y [nm]"] + rng.uniform(-8, 8, len(gt))})
    plane = add_photometry(frames, start, ACQ, np.arange(1, 4), fit_positions=fit)
    monkeypatch.setattr(photometry, "PLANE_MIN_PX", 10**6)  # no slope along either axis
    constant = add_photometry(frames, start, ACQ, np.arange(1, 4), fit_positions=fit)
    ratio = (plane[INTENSITY] / constant[INTENSITY]).to_numpy()
    assert len(gt) > 100 and np.median(np.abs(ratio - 1.0)) < 0.005
    assert (plane[INTENSITY] / gt[INTENSITY]).median() == pytest.approx(1.0, abs=0.02)
    shift = np.hypot(plane["x [nm]"] - constant["x [nm]"], plane["y [nm]"] - constant["y [nm]"]).to_numpy()
    assert np.median(shift) < 0.2
    difference = (plane[BACKGROUND] - constant[BACKGROUND]).to_numpy()  # the plane under each molecule
    assert abs(difference.mean()) < 0.1 and np.abs(difference).max() < 1.0


def test_a_fit_that_stops_at_the_edge_of_its_box_is_marked():
    """Fits held by their box (the map chose the neighbouring fine pixel) were not told
    apart: RMS 6.0 against 3.3 nm at 2,000 photons, with the same uncertainty (a review)."""
    truth = _emitters([[1210.0, 1330.0], [2000.0, 2100.0]], [2000.0, 2000.0])
    frame = _noise_free_frame(truth)
    fine = ACQ.fine_pixel_nm
    start_x = truth["x [nm]"].to_numpy() + [fine, 0.0]  # the first a whole fine pixel off, the second at the truth
    start_y = truth["y [nm]"].to_numpy()
    x, y, photons, _, uncertainty, at_edge = fit_positions_frame(frame, start_x, start_y, ACQ)
    assert at_edge.tolist() == [1.0, 0.0]
    assert x[0] == pytest.approx(start_x[0] - fine / 2) and x[1] == pytest.approx(truth["x [nm]"][1], abs=0.1)
    assert np.isfinite(uncertainty).all()  # the bound is kept: the flag says it is too small there
    fitted = add_photometry(frame[None], truth.assign(**{"x [nm]": start_x})[["frame", "x [nm]", "y [nm]"]], ACQ,
                            [1], fit_positions=True, check_camera=False)
    assert fitted[AT_BOX_EDGE].tolist() == [1.0, 0.0]  # a 0/1 column, as ThunderSTORM's are numbers
    assert fit_positions_frame(frame, start_x, start_y, ACQ, max_shift_nm=0.0)[5].tolist() == [0.0, 0.0]
    assert add_photometry(frame[None], truth, ACQ, [1], check_camera=False).columns.isin([AT_BOX_EDGE]).sum() == 0


def test_the_fit_streams_and_cancels_frame_by_frame(monkeypatch):
    from napari_deepcel0.core import photometry
    from napari_deepcel0.core.predict import DeepLocalizer, localize_stream

    frames, _ = _stack(1.0, n=4)
    model = DeepLocalizer(None, acquisition=ACQ, device="cpu", batch_size=2)  # the bundled model
    whole = localize(model, frames, fit_positions=True)
    results = list(localize_stream(model, frames, fit_positions=True, keep_maps=True))
    assert [list(r.frames) for r in results] == [[1], [2], [3], [4]] and [r.done for r in results] == [1, 2, 3, 4]
    assert all(set(r.table["frame"]) <= {r.frames[0]} and r.maps.shape[0] == 1 for r in results)
    fitted_frames = []
    real_fit = photometry.fit_positions_frame
    monkeypatch.setattr(photometry, "fit_positions_frame",
                        lambda *args, **kwargs: fitted_frames.append(1) or real_fit(*args, **kwargs))
    # Cancel is pressed while frame 3, the second batch's first, is being fitted
    table = localize(model, frames, fit_positions=True, cancel=lambda: len(fitted_frames) >= 3)
    assert len(fitted_frames) == 3 and set(table["frame"]) == {1, 2, 3}  # frame 4 was not fitted
    pd.testing.assert_frame_equal(table, whole[whole["frame"] <= 3].reset_index(drop=True))
    # Cancel pressed while the network maps the second batch: none of its frames is fitted
    fitted_frames.clear()
    network_passes = []
    real_read_out = model.read_out  # the network pass of a batch
    monkeypatch.setattr(model, "read_out", lambda block: network_passes.append(1) or real_read_out(block))
    table = localize(model, frames, fit_positions=True, cancel=lambda: len(network_passes) >= 2)
    assert len(fitted_frames) == 2 and set(table["frame"]) == {1, 2}


def test_the_read_noise_counts_in_photons_read_noise_adu_over_gain():
    """The same photons recorded at gain 2.5 with 2 ADU of read noise or at gain 1 with
    0.8 ADU (both 0.8 photons) are the same measurement: same fit, same uncertainty."""
    truth = _emitters([[1210.0, 1330.0], [2000.0, 1500.0]], [400.0, 800.0])
    photons = sim.expected_photons(truth, ACQ, (32, 32), 1)[0] + 3.0
    other = ACQ.replace(gain_adu_per_photon=1.0, read_noise_adu=0.8)
    results = [fit_positions_frame(photons * acq.gain_adu_per_photon + acq.offset_adu, truth["x [nm]"],
                                   truth["y [nm]"], acq) for acq in (ACQ, other)]
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("fit", [False, True])
def test_the_fit_runs_on_one_blas_thread_and_gives_the_others_back(fit, monkeypatch):
    # BLAS threads competing for the cores with other work made the fit 3 times slower
    from threadpoolctl import threadpool_info, threadpool_limits

    import napari_deepcel0.core.photometry as photometry

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []
    name = "fit_positions_frame" if fit else "photometry_frame"
    real = getattr(photometry, name)

    def recording(*args, **kwargs):  # the real fit, with the BLAS threads it ran on noted
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(photometry, name, recording)
    frames, gt = _stack(2.0, n=2)
    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        before = blas_threads()
        fitted = add_photometry(frames, gt, ACQ, np.arange(1, 3), fit_positions=fit)
        assert blas_threads() == before
    assert seen and all(threads and set(threads) == {1} for threads in seen)
    assert fitted["intensity [photon]"].notna().all()


def test_frame_numbers_must_be_one_based_and_one_per_frame():
    """0-based numbers fitted each frame's molecules on the next frame, silently."""
    table = pd.DataFrame({"frame": [1], "x [nm]": [500.0], "y [nm]": [500.0]})
    frames = np.full((2, 10, 10), 100.0)
    for numbers in ([0, 1], [1], [1, 2, 3]):
        with pytest.raises(ValueError, match="1-based number of each"):
            add_photometry(frames, table, ISBI2013, numbers)
    assert len(add_photometry(frames, table, ISBI2013, [1, 2], check_camera=False)) == 1  # (blank frames)


def test_photometry_on_frames_below_the_camera_offset_warns(tiny_model_path):
    """Offset-subtracted or rescaled frames gave plausible but wrong photon counts."""
    import warnings

    from napari_deepcel0.core.predict import DeepLocalizer

    frames, _ = sim.simulate_stack(n_frames=1, shape=(24, 24), density_per_um2=1.0, seed=4)
    # the bundled model: the tiny one's localizations miss the molecules, whose residuals then
    # read as frames noisier than the camera settings
    model = DeepLocalizer(device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="below the camera offset of 100 ADU"):
        localize(model, frames - 100.0, threshold=0.0, photometry=True)
    with pytest.warns(UserWarning, match="ADU would match"):  # a camera at 400 ADU, the offset left at 100
        localize(model, frames + 300.0, threshold=0.0, photometry=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        localize(model, frames, threshold=0.0, photometry=True)
    # add_photometry called directly checks too (the checks were the stream's only: a review)
    table = localize(model, frames, threshold=0.0)
    with pytest.warns(UserWarning, match="below the camera offset of 100 ADU"):
        add_photometry(frames - 100.0, table, Acquisition(), [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        add_photometry(frames - 100.0, table, Acquisition(), [1], check_camera=False)


@pytest.mark.parametrize("n_frames", [1, 4])
def test_frames_quieter_than_the_camera_settings_allow_warn_with_the_matching_offset(n_frames):
    """A camera at 400 ADU analysed with the default offset of 100: the background held
    300 photons more and the uncertainties came out about twice too large, silently."""
    import warnings

    from napari_deepcel0.core.photometry import warn_if_quieter_than_the_camera_allows

    acq = Acquisition(read_noise_adu=2.0)
    noise = sim.CameraNoise(background_photons=(10.0, 10.0), quantize=True)
    frames, _ = sim.simulate_stack(n_frames=n_frames, shape=(48, 48), density_per_um2=1.0, acq=acq, noise=noise,
                                   seed=3)
    with pytest.warns(UserWarning, match="ADU would match") as caught:
        warn_if_quieter_than_the_camera_allows(frames + 300.0, acq)
    [message] = [str(w.message) for w in caught]
    assert 385 <= float(re.search(r"about (\d+) ADU would match", message).group(1)) <= 415  # the camera's 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_quieter_than_the_camera_allows(frames + 300.0, acq.replace(offset_adu=400.0))
        warn_if_quieter_than_the_camera_allows(frames, acq)
    with pytest.warns(UserWarning, match="less than half the read noise set, 20 ADU: set the camera's read noise"):
        warn_if_quieter_than_the_camera_allows(frames, acq.replace(read_noise_adu=20.0))  # (no offset advice)


def test_the_fit_uses_the_psf_the_simulations_render():
    """photometry's per-pixel PSF fractions and the simulator's (optics.integrated_gaussian)
    are written apart; a change to one alone would bias every photon count silently."""
    from napari_deepcel0.core.optics import integrated_gaussian
    from napari_deepcel0.core.photometry import _profiles

    positions = np.array([12.0, 437.5, 1049.9, 2000.0])
    index, fraction, _ = _profiles(positions, ISBI2013)
    p = ISBI2013.pixel_size_nm
    for i, x in enumerate(positions):
        edges = np.append(index[i], index[i, -1] + 1) * p
        np.testing.assert_allclose(fraction[i], integrated_gaussian(np.array([x]), edges, ISBI2013.sigma_nm)[0],
                                   atol=1e-7)


def test_molecules_without_an_uncertainty_are_counted_for_the_user():
    import pandas as pd

    from napari_deepcel0.core.photometry import without_uncertainty_text

    table = pd.DataFrame({"x [nm]": [1.0, 2.0, 3.0], "uncertainty [nm]": [5.0, np.nan, np.nan]})
    assert without_uncertainty_text(table).startswith("2 of 3 molecules have no uncertainty [nm] (NaN): fitted "
                                                      "with under 1 photon")
    assert without_uncertainty_text(table, short=True) == "2 of 3 without an uncertainty (too faint, or unconstrained)"
    assert without_uncertainty_text(table.iloc[:1]) == ""
    assert without_uncertainty_text(table.drop(columns="uncertainty [nm]")) == ""  # no fit: nothing to say


def test_fits_at_the_edge_of_their_box_are_counted_for_the_user():
    import pandas as pd

    from napari_deepcel0.core.photometry import AT_BOX_EDGE, at_box_edge_text

    table = pd.DataFrame({"x [nm]": [1.0, 2.0, 3.0, 4.0], AT_BOX_EDGE: [1.0, 0.0, np.nan, 1.0]})
    assert at_box_edge_text(table).startswith("2 of 4 position fits (50 %) stopped at the edge of their box")
    assert at_box_edge_text(table, short=True) == "2 of 4 position fits (50 %) at their box's edge (usual in crowds)"
    assert at_box_edge_text(table.iloc[1:3]) == "" and at_box_edge_text(table.drop(columns=AT_BOX_EDGE)) == ""


@pytest.mark.filterwarnings("ignore:the frames are .* noisier than the camera settings predict")  # a 1-px band
def test_a_position_the_frame_does_not_constrain_gets_no_uncertainty():
    """On frames one pixel high the y position is unconstrained: the inverse of a singular
    Fisher block gave uncertainties of exactly 0 or 1e13 nm (review); now NaN, while the
    uncertainties of molecules on ordinary frames stay finite and near the CRB."""
    from napari_deepcel0.core.predict import DeepLocalizer

    frames, gt = _stack(6.0, n=3)
    model = DeepLocalizer(acquisition=ACQ, device="cpu")
    with pytest.warns(UserWarning, match="narrower than a molecule's light"):
        band = localize(model, frames[:, 24:25, :], fit_positions=True)  # one camera pixel high
    assert len(band) > 10 and band[UNCERTAINTY].isna().all()
    normal = add_photometry(frames[:1], gt[gt["frame"] == 1], ACQ, [1], fit_positions=True)[UNCERTAINTY]
    assert normal.isna().mean() < 0.1 and 1.0 < normal.median() < 20.0  # (NaN: under a photon in the crowd)


def test_the_read_variance_is_the_read_noise_in_photons_squared():
    """Left unsquared, the fit's likelihood and uncertainties were wrong for every camera
    whose read noise is not 1 photon; the tests compared cameras of equal read noise."""
    from napari_deepcel0.core.photometry import _expected_counts

    acq = Acquisition(read_noise_adu=3.0, gain_adu_per_photon=1.5)
    assert np.allclose(_expected_counts(np.zeros(0), np.zeros(0), np.zeros(0), 0.0, acq, (4, 4)), 4.0)


def _two_molecules(photons=(1500.0, 900.0)):
    truth = pd.DataFrame({"frame": 1, "x [nm]": [1210.0, 2000.0], "y [nm]": [1330.0, 1500.0],
                          "intensity [photon]": list(photons)})
    return truth, sim.expected_photons(truth, ISBI2013, (32, 32), 1)[0] + 3.0 + ISBI2013.offset_adu


def test_the_position_fit_moves_molecules_with_an_offset_set_too_high():
    """Without lifting the negative background, an offset set 25 ADU too high left every
    molecule where it started (5 nm off) with uncertainties half the right size; the
    test of that case checked the photons only (mutation review)."""
    from napari_deepcel0.core.photometry import fit_positions_frame

    truth, frame = _two_molecules()
    high = ISBI2013.replace(offset_adu=ISBI2013.offset_adu + 25.0)
    x, y, photons, *_ = fit_positions_frame(frame, truth["x [nm]"].to_numpy() + 5, truth["y [nm]"].to_numpy() - 5,
                                              high)
    np.testing.assert_allclose(x, truth["x [nm]"], atol=0.5)
    np.testing.assert_allclose(y, truth["y [nm]"], atol=0.5)
    np.testing.assert_allclose(photons, truth["intensity [photon]"], rtol=0.01)


def test_molecules_below_the_photon_floor_get_no_uncertainty(monkeypatch):
    from napari_deepcel0.core import photometry

    truth, frame = _two_molecules((5000.0, 300.0))
    monkeypatch.setattr(photometry, "MIN_PHOTONS_FOR_UNCERTAINTY", 1000.0)
    uncertainty = photometry.fit_positions_frame(frame, truth["x [nm]"].to_numpy(), truth["y [nm]"].to_numpy(),
                                                 ISBI2013)[4]
    assert np.isfinite(uncertainty[0]) and np.isnan(uncertainty[1])


def test_frames_noisier_than_the_camera_settings_warn_with_the_gain_that_would_match():
    """The settings check warned only of frames quieter than predicted: on ISBI 2013 at the
    default gain of 1 the position fit's uncertainties came out 2.2 times too small without
    a word (a review). The fit's reduced chi^2 tells: about 1 with the right settings."""
    import warnings

    from napari_deepcel0.core.photometry import MAX_FIT_CHI2, fit_chi2, warn_if_noisier_than_the_camera_allows
    from napari_deepcel0.core.predict import DeepLocalizer

    camera = Acquisition(gain_adu_per_photon=4.0, offset_adu=100.0, read_noise_adu=3.0)
    frames, gt = sim.simulate_stack(n_frames=2, shape=(64, 64), density_per_um2=1.0, acq=camera, seed=2)
    first = gt[gt["frame"] == 1]
    right = fit_chi2(frames[0], first["x [nm]"], first["y [nm]"], camera)
    wrong = fit_chi2(frames[0], first["x [nm]"], first["y [nm]"], camera.replace(gain_adu_per_photon=1.0))
    assert 0.8 < right < 1.2 and wrong > 2 * MAX_FIT_CHI2
    assert np.isnan(fit_chi2(frames[0], [], [], camera))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_noisier_than_the_camera_allows(frames, gt, camera, [1, 2])
    low_gain = camera.replace(gain_adu_per_photon=1.0)
    with pytest.warns(UserWarning, match=r"the frames are \d\.\d times noisier than the camera settings predict .*"
                                         r"about \d\.\d ADU/photon would match.* about 1\.\d times too small"):
        warn_if_noisier_than_the_camera_allows(frames, gt, low_gain, [1, 2])
    model = DeepLocalizer(acquisition=low_gain, device="cpu")  # a run says it once, at its first batch
    with pytest.warns(UserWarning, match="times noisier than the camera settings") as caught:
        localize(model, frames, fit_positions=True)
    assert sum("times noisier" in str(w.message) for w in caught) == 1
