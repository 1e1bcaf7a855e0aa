import math

import numpy as np
import pandas as pd
import pytest

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.columns import INTENSITY
from napari_deepcel0.core.optics import AcquisitionOperator


def test_uniform_density_and_reproducibility():
    field = (6400.0, 6400.0)
    a = sim.uniform_emitters(50, field, 6.0, seed=3)
    b = sim.uniform_emitters(50, field, 6.0, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) / 50 == pytest.approx(6.0 * 40.96, rel=0.05)
    assert a["x [nm]"].between(0, 6400).all() and a["y [nm]"].between(0, 6400).all()
    assert set(a["frame"]) <= set(range(1, 51))
    assert not sim.uniform_emitters(50, field, 6.0, seed=4).equals(a)


def test_filaments_make_emitters_near_the_curves():
    field = (6400.0, 6400.0)
    fil = sim.make_filaments(field, n_filaments=3, seed=1)
    assert len(fil) == 3 and all(f.shape[1] == 2 and len(f) > 50 for f in fil)
    em = sim.emitters_on_filaments(fil, 5, field, 5.0, tube_width_nm=30, seed=2)
    assert len(em) / 5 == pytest.approx(5.0 * 40.96, rel=0.2)
    pts = np.concatenate(fil)
    d = np.min(np.hypot(em["x [nm]"].to_numpy()[:, None] - pts[None, :, 0],
                        em["y [nm]"].to_numpy()[:, None] - pts[None, :, 1]), axis=1)
    assert d.max() < 15 + 10  # half the tube width plus the vertex spacing


def test_expected_photons_integrates_psf_over_pixels():
    acq = ISBI2013
    em = pd.DataFrame({"frame": [1], "x [nm]": [1650.0], "y [nm]": [1250.0], "intensity [photon]": [1000.0]})
    img = sim.expected_photons(em, acq, (32, 32), 1)[0]
    assert img.sum() == pytest.approx(1000.0, rel=1e-6)
    # centre of mass at the emitter, in the pixel-centre convention
    rows, cols = np.indices(img.shape)
    assert ((cols + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(1650.0, abs=1e-6)
    assert ((rows + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(1250.0, abs=1e-6)
    assert np.unravel_index(img.argmax(), img.shape) == (12, 16)


def test_expected_photons_in_chunks_of_emitters_equals_all_at_once(monkeypatch):
    """The profiles of a whole frame's emitters at once took 8.7 GB for 1024 x 1024 frames
    at 20 emitters/um^2; in chunks (here of 3 emitters), the same frames."""
    em = sim.uniform_emitters(2, ISBI2013.field_nm((24, 20)), 40.0, seed=3)
    whole = sim.expected_photons(em, ISBI2013, (24, 20), 2)
    monkeypatch.setattr(sim, "_PROFILE_VALUES", 3 * (24 + 20))
    assert len(em) > 20
    np.testing.assert_allclose(sim.expected_photons(em, ISBI2013, (24, 20), 2), whole, rtol=1e-12, atol=1e-9)


def test_simulation_memory_estimate_grows_with_frames_size_and_density():
    small = sim.simulation_bytes(10, (64, 64), 6.0, ISBI2013)
    assert sim.simulation_bytes(20, (64, 64), 6.0, ISBI2013) > small
    assert sim.simulation_bytes(10, (128, 64), 6.0, ISBI2013) > small
    assert sim.simulation_bytes(10, (64, 64), 60.0, ISBI2013) > small
    # at least the float64 photons of the whole stack
    assert sim.simulation_bytes(100, (4096, 4096), 6.0, ISBI2013) > 100 * 4096 * 4096 * 8


def test_camera_noise_statistics():
    acq = Acquisition(offset_adu=100, gain_adu_per_photon=2.0, read_noise_adu=3.0)
    photons = np.full((200, 16, 16), 50.0)
    out = sim.CameraNoise(background_photons=(10.0, 10.0)).apply(photons, acq, np.random.default_rng(0))
    assert out.mean() == pytest.approx(100 + 2 * 60, rel=0.01)
    assert out.var() == pytest.approx(4 * 60 + 9, rel=0.05)


def test_snr_outside_the_noise_models_limits_is_refused_up_front():
    # 10 ** (1e6 / 10) overflowed (a traceback from the CLI), -1e6 divided by zero
    from napari_deepcel0.core.training_data import TrainingDataConfig

    for bad in ((1e6, 1e6), (-1e6, 10.0), (12.0, 10.0), (10.0, math.nan)):
        with pytest.raises(ValueError, match="SNR range must"):
            sim.GaussianSNRNoise(bad)
        with pytest.raises(ValueError, match="SNR range must"):
            TrainingDataConfig(snr_db=bad)
    sim.GaussianSNRNoise(sim.SNR_DB_LIMITS)  # the limits themselves are fine


def test_gaussian_noise_reaches_target_snr():
    em = sim.uniform_emitters(20, (3200.0, 3200.0), 6.0, seed=0)
    clean = sim.render_frames(em, ISBI2013, (32, 32), 20, noise=None)
    noisy = sim.render_frames(em, ISBI2013, (32, 32), 20, noise=sim.GaussianSNRNoise((12.0, 12.0)), seed=1)
    snrs = [sim.snr_db(c, n) for c, n in zip(clean, noisy)]
    assert np.mean(snrs) == pytest.approx(12.0, abs=0.3)


def test_fine_grid_maps_and_forward_model():
    acq = ISBI2013
    em = pd.DataFrame({"frame": [1, 1, 2], "x [nm]": [12.0, 30.0, 399.0], "y [nm]": [0.0, 80.0, 399.0]})
    maps = sim.fine_grid_maps(em, acq, (16, 16), 2)
    assert maps[0, 0, 0] == 1 and maps[0, 3, 1] == 1 and maps[1, 15, 15] == 1 and maps.sum() == 3
    y = sim.forward_model_frames(maps, acq, np.inf)
    op = AcquisitionOperator(acq, (4, 4))
    assert np.allclose(y, op.forward(maps), atol=1e-5)
    noisy = sim.forward_model_frames(maps, acq, 10.0, seed=0)
    assert noisy.shape == (2, 4, 4) and not np.allclose(noisy, y)


@pytest.mark.parametrize("name, dist", [("1a", 25.0), ("2a", 75.0)])
def test_paper_close_pairs(name, dist):
    em = sim.paper_test_scene(name)
    assert len(em) == 2
    assert np.hypot(*(em[["x [nm]", "y [nm]"]].to_numpy()[0] - em[["x [nm]", "y [nm]"]].to_numpy()[1])) == pytest.approx(dist)
    assert (em["x [nm]"] == 256.5 * 25).all()  # on column 256


def test_paper_circle_scene():
    em = sim.paper_test_scene("3a")
    centre = np.array([256.5 * 25, 256.5 * 25])
    r = np.hypot(em["x [nm]"] - centre[0], em["y [nm]"] - centre[1])
    assert len(em) == 4 and np.allclose(r, 125.0)
    with pytest.raises(ValueError, match="unknown paper scene"):
        sim.paper_test_scene("4a")


def test_simulate_stack_is_seeded():
    f1, e1 = sim.simulate_stack(n_frames=3, shape=(24, 24), seed=5)
    f2, e2 = sim.simulate_stack(n_frames=3, shape=(24, 24), seed=5)
    assert np.array_equal(f1, f2) and e1.equals(e2)
    assert f1.shape == (3, 24, 24) and f1.min() >= 0
    with pytest.raises(ValueError, match="structure"):
        sim.simulate_stack(n_frames=1, structure="spiral")


@pytest.mark.parametrize("kw", [dict(n_frames=0), dict(shape=(0, 8)), dict(density_per_um2=-1.0),
                                dict(density_per_um2=math.nan)])
def test_simulate_stack_refuses_impossible_settings(kw):
    with pytest.raises(ValueError):
        sim.simulate_stack(**{"n_frames": 2, "shape": (8, 8), **kw})


# ---- found missing by mutation testing (a second round, 2026-11-28): each fails on the bug it names
def test_uniform_emitters_fill_a_field_that_is_not_square():
    """S2 (simulate.py:103, x drawn over the height and y over the width): on a field of
    1000 (rows) x 5000 (columns) nm, x must reach past 1000 and y stay below it."""
    from napari_deepcel0.core.simulate import uniform_emitters

    em = uniform_emitters(5, (1000.0, 5000.0), 10.0, seed=0)
    assert em["x [nm]"].max() > 2500 and em["y [nm]"].max() < 1000


def test_the_tube_width_spreads_emitters_across_the_filament():
    """S13 (simulate.py:189, the tube offset along the filament instead of across it): on
    a straight horizontal filament, a 60 nm tube spreads y by 60 / sqrt(12) = 17 nm."""
    from napari_deepcel0.core.simulate import emitters_on_filaments

    line = np.column_stack([np.linspace(0, 3200, 321), np.full(321, 1600.0)])
    em = emitters_on_filaments([line], 20, (3200.0, 3200.0), 20.0, tube_width_nm=60.0, seed=1)
    assert len(em) > 1000
    assert em["y [nm]"].std() == pytest.approx(60 / math.sqrt(12), rel=0.1)


_ONE = pd.DataFrame({"frame": [1], "x [nm]": [850.0], "y [nm]": [750.0], INTENSITY: [1000.0]})


def test_rendered_frames_are_in_adu_with_and_without_noise():
    """S9 (simulate.py:341, noise-free frames without the gain) and S16 (simulate.py:343,
    Gaussian-SNR frames without the gain): render_frames promises ADU (gain x photons)
    whatever the noise; every test used a gain of 1."""
    from napari_deepcel0.core.simulate import GaussianSNRNoise, render_frames

    acq = Acquisition(gain_adu_per_photon=2.5)
    clean = render_frames(_ONE, acq, (16, 16), 1, noise=None)
    assert clean.sum() == pytest.approx(2500.0, rel=1e-3)
    noisy = render_frames(_ONE, acq, (16, 16), 1, noise=GaussianSNRNoise((100.0, 100.0)), seed=0)
    np.testing.assert_allclose(noisy, clean, rtol=0, atol=0.05 * clean.std())
    assert noisy.sum() == pytest.approx(2500.0, rel=1e-3)


def test_fine_grid_maps_of_frames_that_are_not_square():
    """S11 (simulate.py:370, rows checked against the columns' bound and back): on an
    8 x 32 fine grid an emitter in column 24 was dropped as outside."""
    from napari_deepcel0.core.simulate import fine_grid_maps

    maps = fine_grid_maps(_ONE.assign(**{"x [nm]": 612.5, "y [nm]": 62.5}), ISBI2013, (8, 32), 1)
    assert maps[0, 2, 24] == 1 and maps.sum() == 1
