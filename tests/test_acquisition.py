import math

import numpy as np
import pytest

from napari_deepcel0.core.acquisition import (
    ISBI2013,
    Acquisition,
    fwhm_from_optics,
    fwhm_to_sigma,
    sigma_to_fwhm,
)


def test_fwhm_sigma_round_trip():
    assert fwhm_to_sigma(2.3548200450309493) == pytest.approx(1.0)
    for fwhm in (100.0, 258.21, 351.8):
        assert sigma_to_fwhm(fwhm_to_sigma(fwhm)) == pytest.approx(fwhm, rel=1e-12)
    assert ISBI2013.sigma_nm == pytest.approx(109.65, abs=0.01)
    assert ISBI2013.sigma_fine_px == pytest.approx(4.386, abs=1e-3)


def test_derived_units():
    acq = Acquisition(pixel_size_nm=160, fwhm_nm=300, upsampling=8)
    assert acq.fine_pixel_nm == 20
    assert acq.sigma_px == pytest.approx(acq.sigma_nm / 160)
    assert acq.fine_shape((10, 12)) == (80, 96)


def test_pixel_centre_convention_round_trip():
    acq = ISBI2013
    # camera pixel j is centred at (j + 0.5) * 100 nm; its 4 fine pixels are centred
    # symmetrically around that point
    assert acq.camera_px_to_nm(0) == 50.0
    fine = acq.fine_px_to_nm(np.arange(4))
    assert fine.mean() == pytest.approx(acq.camera_px_to_nm(0))
    x = np.array([0.0, 12.5, 37.0, 6399.9])
    assert np.allclose(acq.fine_px_to_nm(acq.nm_to_fine_px(x)), x)
    # the pixel holding a position: pixel k covers [25 k, 25 (k + 1)) nm, its centre maps back to k
    assert acq.fine_px_index(np.array([0.0, 24.999, 25.0, -0.1])).tolist() == [0, 0, 1, -1]
    assert acq.fine_px_index(acq.fine_px_to_nm(np.arange(256))).tolist() == list(range(256))
    assert acq.field_nm((64, 32)) == (6400.0, 3200.0)  # (height, width): rows, cols


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pixel_size_nm=0), "pixel size must be positive"),
        (dict(pixel_size_nm=-100), "pixel size must be positive"),
        (dict(fwhm_nm=0), "FWHM must be positive"),
        (dict(upsampling=0), "integer >= 1"),
        (dict(upsampling=2.5), "integer >= 1"),
        (dict(fwhm_nm=20, upsampling=4), "smaller than a fine-grid pixel"),
        (dict(fwhm_nm=0.258), "smaller than a fine-grid pixel"),
        (dict(fwhm_nm=5000), "more than 20 camera pixels"),
        (dict(gain_adu_per_photon=0), "gain must be positive"),
        (dict(read_noise_adu=-1), "read noise"),
        (dict(pixel_size_nm=math.nan), "finite"),
        (dict(pixel_size_nm="100"), "must be a number"),
    ],
)
def test_validation_messages(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Acquisition(**kwargs)


def test_dict_round_trip_and_unknown_keys():
    acq = Acquisition(pixel_size_nm=107, fwhm_nm=250, upsampling=5, offset_adu=90, gain_adu_per_photon=2.2)
    assert Acquisition.from_dict(acq.to_dict()) == acq
    with pytest.raises(ValueError, match="unknown"):
        Acquisition.from_dict({**acq.to_dict(), "wavelength": 600})


def test_fwhm_from_optics():
    assert fwhm_from_optics(680, 1.49) == pytest.approx(232.8, abs=0.1)
    with pytest.raises(ValueError):
        fwhm_from_optics(680, 0)


def test_numpy_numbers_are_accepted_as_plain_numbers():
    # values read from arrays or tables (np.float32, np.int64, np.uint16) raised a TypeError
    acq = Acquisition(pixel_size_nm=np.float32(100), upsampling=np.int64(4), offset_adu=np.uint16(100))
    assert acq == Acquisition()
    assert type(acq.pixel_size_nm) is float and type(acq.upsampling) is int
    with pytest.raises(TypeError, match="must be a number"):
        Acquisition(pixel_size_nm=np.bool_(True))


def test_the_bounds_accept_their_edges():
    Acquisition(pixel_size_nm=160.0, fwhm_nm=150.0)  # a FWHM under a camera pixel, over a fine one
    Acquisition(pixel_size_nm=50.0, fwhm_nm=900.0)  # 18 camera pixels
    Acquisition(pixel_size_nm=160.0, fwhm_nm=250.0, upsampling=16)


@pytest.mark.parametrize(
    "kwargs, fields",
    [
        (dict(offset_adu=-5), ("offset_adu",)),
        (dict(read_noise_adu=-1), ("read_noise_adu",)),
        (dict(upsampling=17), ("upsampling",)),
        (dict(fwhm_nm=20, upsampling=4), ("fwhm_nm", "pixel_size_nm", "upsampling")),
        (dict(fwhm_nm=5000), ("fwhm_nm", "pixel_size_nm")),
    ],
)
def test_a_setting_out_of_range_names_the_settings_it_involves(kwargs, fields):
    """The command line names its flags from these (``--offset -5`` named none)."""
    from napari_deepcel0.core.acquisition import AcquisitionError

    with pytest.raises(AcquisitionError) as error:
        Acquisition(**kwargs)
    assert error.value.fields == fields and isinstance(error.value, ValueError)
    if "offset_adu" in kwargs:
        assert str(error.value) == "camera offset must be >= 0 ADU, got -5"
