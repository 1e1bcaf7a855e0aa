"""The simulation API as a script uses it: inputs checked at the entry of the public
functions with one-line errors that name the argument, its unit and the expected form;
a warning when molecules were asked for and none could be placed; docstrings that say
the units; and seeded outputs unchanged for valid inputs (review of the Python API: each
case below passed silently or failed deep in NumPy before)."""

import inspect
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.defaults import MAX_DENSITY_PER_UM2


def _no_warnings(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return func(*args, **kwargs)


# ---- molecules asked for, none placed: warn, pointing at the caller
def test_a_density_per_nm2_by_mistake_warns_that_no_emitter_was_placed():
    with pytest.warns(sim.NoEmittersWarning) as record:
        frames, emitters = sim.simulate_stack(2, (64, 64), 6e-6, seed=0)
    assert len(emitters) == 0 and frames.shape == (2, 64, 64)
    text = str(record[0].message)
    assert "simulate_stack placed no emitters" in text and "0.000492 expected" in text and "per um^2" in text
    assert record[0].filename == __file__  # the stacklevel points at the script's line
    assert len(record) == 1  # once, not once more from the functions it calls


def test_a_field_in_pixels_by_mistake_warns_that_no_emitter_was_placed():
    with pytest.warns(sim.NoEmittersWarning, match=r"uniform_emitters placed no emitters: 0\.0492 expected.*in nm"
                      ) as record:
        assert len(sim.uniform_emitters(2, (64, 64), 6, seed=1)) == 0  # (unseeded, 1 in 20 runs placed one)
    assert record[0].filename == __file__
    filaments = sim.make_filaments((64, 64), n_filaments=2, seed=1)
    with pytest.warns(sim.NoEmittersWarning, match="emitters_on_filaments placed no emitters") as record:
        assert len(sim.emitters_on_filaments(filaments, 2, (64, 64), 6, seed=1)) == 0
    assert record[0].filename == __file__


def test_no_warning_when_no_molecule_was_asked_for_or_an_empty_frame_is_chance():
    assert len(_no_warnings(sim.simulate_stack, 2, (16, 16), 0.0, seed=0)[1]) == 0  # background only
    # 1.5 emitters expected: an empty table is chance (22 %), as in the training set's sparse
    # frames, one call each, and must not warn
    empty = [s for s in range(40) if len(sim.uniform_emitters(1, (1000.0, 1500.0), 1.0, seed=s)) == 0]
    assert empty
    _no_warnings(sim.uniform_emitters, 1, (1000.0, 1500.0), 1.0, seed=empty[0])


# ---- densities above the package's cap
@pytest.mark.parametrize("call", [
    lambda d: sim.simulate_stack(2, (16, 16), d),
    lambda d: sim.simulate_stack(2, (16, 16), d, structure="uniform"),
    lambda d: sim.uniform_emitters(2, (1600.0, 1600.0), d),
    lambda d: sim.emitters_on_filaments(sim.make_filaments((1600.0, 1600.0), seed=0), 2, (1600.0, 1600.0), d),
])
def test_a_density_above_the_cap_is_refused(call):
    with pytest.raises(ValueError, match=r"density_per_um2 must be at most 100 emitters per um\^2 per frame.*got 600"):
        call(600)
    call(MAX_DENSITY_PER_UM2)  # the cap itself is fine


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "6", None, True])
def test_a_density_that_is_no_number_of_emitters_per_um2_is_refused(bad):
    with pytest.raises(ValueError, match=r"density_per_um2 must be a number of emitters per um\^2 per frame"):
        sim.uniform_emitters(1, (1600.0, 1600.0), bad)


# ---- shapes, counts, seeds
@pytest.mark.parametrize("shape, hint", [(64, r"; for a square frame pass \(64, 64\)"), ((64,), ""), ((64, 64, 2), ""),
                                         ((64.0, 64.0), ""), ((0, 8), ""), ("64", ""), (None, "")])
def test_a_shape_that_is_no_pair_of_camera_pixels_is_refused(shape, hint):
    with pytest.raises(ValueError, match=r"shape must be a \(rows, cols\) pair of whole numbers >= 1 of camera pixels, "
                                         rf"got .*{hint}"):
        sim.simulate_stack(n_frames=1, shape=shape)
    with pytest.raises(ValueError, match=r"shape must be a \(rows, cols\) pair"):
        sim.render_frames(sim.paper_test_scene("1a"), ISBI2013, shape, 1)


@pytest.mark.parametrize("n_frames, message", [(2.0, r"got 2\.0 \(a float; pass 2\)"), (0, "got 0"), (1.5, "got 1.5"),
                                               ("2", "got '2'"), (True, "got True")])
def test_n_frames_must_be_a_whole_number_of_frames(n_frames, message):
    with pytest.raises(ValueError, match=rf"n_frames must be a whole number of frames >= 1, {message}"):
        sim.simulate_stack(n_frames=n_frames, shape=(8, 8))
    with pytest.raises(ValueError, match="n_frames must be a whole number of frames"):
        sim.uniform_emitters(n_frames, (800.0, 800.0), 6.0)


def test_numpy_integers_are_whole_numbers_and_give_the_same_stack():
    a = sim.simulate_stack(n_frames=np.int64(2), shape=np.array([12, 10]), n_filaments=np.int32(3), seed=np.uint8(4))
    b = sim.simulate_stack(n_frames=2, shape=(12, 10), n_filaments=3, seed=4)
    assert np.array_equal(a[0], b[0]) and a[1].equals(b[1])


@pytest.mark.parametrize("seed", [-1, 1.5, 2.0, "1", True, [1, -2], [], [1.5]])
def test_a_seed_must_be_none_a_whole_number_from_0_or_a_generator(seed):
    with pytest.raises(ValueError, match=r"seed must be None, a whole number >= 0 \(or a sequence of them\) or a "
                                         r"numpy.random.Generator, got"):
        sim.simulate_stack(n_frames=1, shape=(8, 8), seed=seed)
    with pytest.raises(ValueError, match="seed must be None"):
        sim.as_rng(seed)


def test_a_sequence_of_seeds_is_taken_as_numpy_takes_it():
    """seed=[run, trial], which NumPy takes, was refused once seeds were checked (a review)."""
    a = sim.simulate_stack(n_frames=1, shape=(8, 8), seed=[3, 7])
    assert np.array_equal(a[0], sim.simulate_stack(n_frames=1, shape=(8, 8), seed=np.random.default_rng([3, 7]))[0])


def test_a_generator_is_shared_and_none_draws_fresh():
    rng = np.random.default_rng(3)
    assert sim.as_rng(rng) is rng
    first = sim.simulate_stack(n_frames=1, shape=(8, 8), seed=rng)[0]
    assert not np.array_equal(sim.simulate_stack(n_frames=1, shape=(8, 8), seed=rng)[0], first)  # the stream went on
    assert sim.simulate_stack(n_frames=1, shape=(8, 8), seed=None)[0].shape == (1, 8, 8)


# ---- objects of the wrong kind
def test_photons_given_as_a_range_is_refused_with_the_model_to_pass():
    with pytest.raises(TypeError, match=r"photons must be a PhotonModel, got \(600, 900\); pass PhotonModel\(600, 900\)"):
        sim.simulate_stack(photons=(600, 900))
    with pytest.raises(TypeError, match="photons must be a PhotonModel"):
        sim.uniform_emitters(1, (800.0, 800.0), 6.0, photons=2000.0)
    with pytest.raises(TypeError, match="PhotonModel.low must be a number, got '600'"):
        sim.PhotonModel("600", 900)


@pytest.mark.parametrize("noise", ["camera", (8.0, 12.0), sim.PhotonModel()])
def test_a_noise_that_is_no_noise_model_is_refused(noise):
    with pytest.raises(TypeError, match=r"noise must be CameraNoise\(background_photons=\(low, high\)\), "
                                        r"GaussianSNRNoise\(snr_db=\(low, high\)\) or None"):
        sim.simulate_stack(n_frames=1, shape=(8, 8), noise=noise)
    with pytest.raises(TypeError, match="noise must be CameraNoise"):
        sim.render_frames(sim.paper_test_scene("1a"), ISBI2013, (8, 8), 1, noise)


def test_no_noise_still_gives_noise_free_frames_in_adu():
    frames, emitters = sim.simulate_stack(n_frames=2, shape=(16, 16), noise=None, seed=2)
    expected = sim.expected_photons(emitters, ISBI2013, (16, 16), 2) * ISBI2013.gain_adu_per_photon
    np.testing.assert_allclose(frames, expected, rtol=1e-6, atol=1e-3)


def test_other_settings_of_the_wrong_kind_or_unit_are_refused_up_front():
    with pytest.raises(TypeError, match=r"acq must be an Acquisition or None \(ISBI 2013\)"):
        sim.simulate_stack(n_frames=1, shape=(8, 8), acq={"pixel_size_nm": 100})
    with pytest.raises(ValueError, match="n_filaments must be a whole number of filaments >= 1"):
        sim.simulate_stack(n_frames=1, shape=(8, 8), n_filaments=0)
    with pytest.raises(ValueError, match="tube_width_nm must be a finite number of nm >= 0"):
        sim.simulate_stack(n_frames=1, shape=(8, 8), tube_width_nm=-30.0)
    with pytest.raises(ValueError, match=r"field_nm must be a \(height, width\) pair of positive numbers of nm"):
        sim.uniform_emitters(1, 6400.0, 6.0)
    with pytest.raises(ValueError, match="persistence_nm must be a finite number of nm > 0"):
        sim.make_filaments((800.0, 800.0), persistence_nm=0.0)
    with pytest.raises(ValueError, match=r"background_photons must be a \(low, high\) pair of photons per pixel"):
        sim.CameraNoise(10.0)
    with pytest.raises(TypeError, match="emitters must be a pandas DataFrame"):
        sim.render_frames(np.zeros((3, 3)), ISBI2013, (8, 8), 1)
    with pytest.raises(ValueError, match=r"emitters lacks the column\(s\) 'x \[nm\]'"):
        sim.expected_photons(pd.DataFrame({"frame": [1], "y [nm]": [5.0]}), ISBI2013, (8, 8), 1)
    maps = np.zeros((2, 16, 16))
    with pytest.raises(ValueError, match=r"snr_db_per_frame must be one SNR in dB or one per frame \(2\)"):
        sim.forward_model_frames(maps, ISBI2013, [10.0, 12.0, 14.0])
    with pytest.raises(ValueError, match="snr_db_per_frame must be SNRs in dB"):
        sim.forward_model_frames(maps, ISBI2013, math.nan)


def test_filaments_that_miss_the_field_are_refused_instead_of_drawing_forever():
    away = [np.array([[5000.0, 5000.0], [6000.0, 6000.0]])]
    with pytest.raises(ValueError, match="fell inside the field.*the filaments must cross the field, in nm"):
        sim.emitters_on_filaments(away, 1, (640.0, 640.0), 6.0, seed=0)
    with pytest.raises(ValueError, match=r"filaments must be a non-empty list of \(K, 2\) arrays.*got an empty list"):
        sim.emitters_on_filaments([], 1, (640.0, 640.0), 6.0)
    with pytest.raises(ValueError, match=r"got one \(K, 2\) array: pass \[filament\]"):
        sim.emitters_on_filaments(away[0], 1, (640.0, 640.0), 6.0)


# ---- documentation
PUBLIC = [sim.simulate_stack, sim.uniform_emitters, sim.emitters_on_filaments, sim.make_filaments, sim.render_frames,
          sim.forward_model_frames, sim.expected_photons, sim.as_rng, sim.PhotonModel, sim.PhotonModel.draw,
          sim.PhotonModel.frame_levels, sim.CameraNoise, sim.CameraNoise.apply, sim.GaussianSNRNoise,
          sim.GaussianSNRNoise.apply]


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__qualname__)
def test_the_public_functions_document_their_parameters(func):
    doc = inspect.getdoc(func)
    assert "Parameters\n----------" in doc
    params = [p for p in inspect.signature(func).parameters if p not in ("self",)]
    for name in params:
        assert name in doc, f"{func.__qualname__} does not document {name}"


def test_simulate_stack_says_the_units_the_acquisition_and_the_ground_truths_columns():
    doc = inspect.getdoc(sim.simulate_stack)
    for text in ("Returns\n-------", "(rows, cols) of a frame in camera pixels", "per square micrometre",
                 "None: ISBI 2013's", "in ADU", "``frame`` (1-based int)", "``x [nm]`` (along columns)",
                 "``y [nm]`` (along rows)", "``intensity [photon]``", "PhotonModel(low, high)"):
        assert text in doc, text
    assert sim.simulate_stack(n_frames=1, shape=(8, 8), seed=1)[1].columns.tolist() == \
        ["frame", "x [nm]", "y [nm]", "intensity [photon]"]


def test_no_acquisition_means_isbi_2013():
    a = sim.simulate_stack(n_frames=2, shape=(12, 12), seed=3)
    b = sim.simulate_stack(n_frames=2, shape=(12, 12), acq=ISBI2013, seed=3)
    assert np.array_equal(a[0], b[0]) and a[1].equals(b[1])


# ---- seeded outputs of valid inputs: the values before the checks were added
def test_seeded_outputs_of_valid_inputs_are_unchanged():
    frames, emitters = _no_warnings(sim.simulate_stack, n_frames=3, shape=(24, 20), seed=0)
    assert len(emitters) == 76
    np.testing.assert_allclose(emitters.iloc[0], [1.0, 217.291817810446, 1744.9479236499253, 658.8096980867582],
                               rtol=1e-12)
    np.testing.assert_allclose(emitters.iloc[-1], [3.0, 742.0148747678875, 2101.2068983152244, 682.3145190797042],
                               rtol=1e-12)
    assert frames.astype(np.float64).sum() == pytest.approx(210772.0, abs=4) and frames[1, 5, 7] == 116.0

    frames, emitters = _no_warnings(sim.simulate_stack, n_frames=2, shape=(16, 16), structure="uniform",
                                    noise=sim.GaussianSNRNoise((10.0, 20.0)), photons=sim.PhotonModel(400, 800, 0.2),
                                    seed=7)
    assert len(emitters) == 32
    np.testing.assert_allclose(emitters.iloc[0], [1.0, 8.424487304919559, 1328.0763676827928, 732.5543470179813],
                               rtol=1e-12)
    assert frames.astype(np.float64).sum() == pytest.approx(15856.046158850193, rel=1e-5)

    emitters = _no_warnings(sim.uniform_emitters, 4, (1600.0, 3200.0), 6.0, seed=4)
    assert len(emitters) == 160
    np.testing.assert_allclose(emitters.iloc[2], [1.0, 2887.088255091163, 1012.4019483761217, 2167.458769970853],
                               rtol=1e-12)
    filaments = _no_warnings(sim.make_filaments, (3200.0, 3200.0), n_filaments=2, seed=1)
    assert [len(f) for f in filaments] == [370, 271]
    np.testing.assert_allclose(filaments[0][5], [2729.236430764408, 3156.1172258401793], rtol=1e-12)
    emitters = _no_warnings(sim.emitters_on_filaments, filaments, 2, (3200.0, 3200.0), 5.0, tube_width_nm=20.0, seed=2)
    assert len(emitters) == 105
    np.testing.assert_allclose(emitters.iloc[1], [1.0, 2574.9952402156223, 2897.231444665604, 1966.5421897631936],
                               rtol=1e-12)


def test_the_sample_data_and_the_clis_settings_still_simulate_without_a_warning():
    # napari's sample (sample_data.tubulin_high_density) and `deepcel0 simulate`'s defaults
    frames, emitters = _no_warnings(sim.simulate_stack, n_frames=2, shape=(64, 64), density_per_um2=5.5,
                                    structure="tubes", acq=ISBI2013, seed=1)
    assert frames.shape == (2, 64, 64) and len(emitters) > 200
    _no_warnings(sim.simulate_stack, n_frames=2, shape=(24, 24), density_per_um2=6.0, structure="uniform",
                 acq=Acquisition(pixel_size_nm=160.0, fwhm_nm=300.0), photons=sim.PhotonModel(600.0, 900.0, 0.15),
                 noise=sim.CameraNoise(background_photons=(8.0, 12.0), quantize=True), seed=0)


def test_a_training_set_with_frames_expected_empty_does_not_warn_frame_by_frame():
    """Sparse frames at 0.01-0.05 per um^2 on 16 x 16 pixels expect 0.03-0.13 molecules
    each: empty frames are the point there, not a unit mistake (one warning per frame)."""
    from napari_deepcel0.core.training_data import TrainingDataConfig, make_training_set

    cfg = TrainingDataConfig(n_frames=4, frame_size=16, patch_size=8, n_patches=8, min_emitters=0,
                             sparse_fraction=0.5, sparse_density=(0.01, 0.05), density_per_um2=6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sim.NoEmittersWarning)
        make_training_set(Acquisition(), cfg)
