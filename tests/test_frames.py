"""Frames cast to float32 for the analysis (core/frames.py, core/tiff_stack.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from napari_deepcel0.core.frames import PrecisionWarning, float32_precision_loss, read_frames
from napari_deepcel0.core.io import read_stack


def _camera_like(n: int = 4) -> np.ndarray:
    """Frames of a 16-bit camera: offset 100 plus a few hundred counts of signal."""
    return 100 + np.random.default_rng(0).poisson(20.0, (n, 16, 16)) * np.arange(1, 17)


@pytest.mark.parametrize("dtype, offset", [(np.int64, -(2**40)), (np.uint64, 2**62), (np.float64, 1e9),
                                           (np.uint32, 2**28)])
def test_a_large_offset_that_float32_rounds_away_warns(tmp_path, dtype, offset):
    """int64 frames minus 2**40 gave 0 localizations and float64 ones plus 1e9 half of
    them, saying only "no molecule was found" (bad-input review)."""
    frames = _camera_like().astype(dtype) + np.asarray(offset).astype(dtype)  # exact: no float on the way
    assert "too coarse for the molecules" in float32_precision_loss(frames)
    with pytest.warns(PrecisionWarning, match=r"frames 1-2: values of about .* subtract the camera's offset"):
        read_frames(frames, np.arange(2))
    path = tmp_path / "offset.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")  # an ImageJ TIFF holds no 64-bit values
    with read_stack(path) as stack, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack[0], stack[1:3]
    said = [w for w in caught if issubclass(w.category, PrecisionWarning)]
    assert len(said) == 1 and "offset.tif, frame 1: values of about" in str(said[0].message)  # once per stack


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32, np.int32, np.uint32, np.int64,
                                   np.float64])
def test_ordinary_frames_do_not_warn(dtype):
    frames = _camera_like().astype(dtype) if dtype != np.uint8 else (_camera_like() % 256).astype(dtype)
    assert float32_precision_loss(frames) == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        read_frames(frames, np.arange(4))
    flat = np.full((2, 8, 8), 2**40, np.int64)  # constant frames: nothing to lose
    nan = np.full((1, 8, 8), np.nan)  # NaN frames: check_finite's to say
    assert float32_precision_loss(flat) == float32_precision_loss(nan) == ""


@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (1024, 1024)])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 5, 16])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 17, 18, 33, 70])
def test_frames_are_read_in_pieces_long_enough_to_tell_a_bead_and_cut_into_the_same_network_batches(n, batch_size,
                                                                                                    shape):
    from napari_deepcel0.core.frames import (PERSISTENCE_MIN_FRAMES, PIECE_FRAMES, PIECE_PIXELS, iter_read_batches,
                                             piece_frames)

    indices = np.arange(100, 100 + n)
    pieces = list(iter_read_batches(indices, batch_size, shape))
    np.testing.assert_array_equal(np.concatenate(pieces), indices)  # each frame once, in order
    size = piece_frames(batch_size, shape)
    assert size % batch_size == 0 and size >= PERSISTENCE_MIN_FRAMES
    # 16 frames (the bead judgement's window) while they fit in PIECE_PIXELS, else fewer, at least 4
    assert size >= min(PIECE_FRAMES, max(PERSISTENCE_MIN_FRAMES, PIECE_PIXELS // (shape[0] * shape[1])))
    assert size < max(PIECE_FRAMES, PERSISTENCE_MIN_FRAMES) + batch_size
    assert all(len(p) == size for p in pieces[:-1])
    assert len(pieces[-1]) >= min(n, PERSISTENCE_MIN_FRAMES) and len(pieces[-1]) < size + PERSISTENCE_MIN_FRAMES
    network = [p[s : s + batch_size] for p in pieces for s in range(0, len(p), batch_size)]
    plain = [indices[s : s + batch_size] for s in range(0, n, batch_size)]
    assert [b.tolist() for b in network] == [b.tolist() for b in plain]


@pytest.mark.parametrize("sd_adu", [0.6, 0.8, 1.3, 1.6, 2.5, 3.33, 5.0])
def test_frame_noise_of_whole_number_frames_is_not_stepped(sd_adu):
    """A camera's whole-number ADU made the median of neighbouring differences move in
    steps of 1: 0.6 ADU read 1.05 (+57 %), 1.3 read 1.05 (-21 %), 2.5 read 2.10; now the
    median is interpolated within its unit interval, and the frames' rounding counted in
    (the noise of the whole numbers is sqrt(sd^2 + 1/12)). The three estimators (numpy,
    torch, the outlier steps' sampled one) agree."""
    import math

    import torch

    from napari_deepcel0.core.frames import _frame_statistics, frame_noise_adu
    from napari_deepcel0.core.predict import frame_noise_sd

    frames = np.round(100.0 + sd_adu * np.random.default_rng(3).standard_normal((6, 64, 64))).astype(np.float32)
    expected = math.sqrt(sd_adu**2 + 1.0 / 12.0)
    noise = frame_noise_adu(frames)
    assert noise.mean() == pytest.approx(expected, rel=0.06 if sd_adu < 0.8 else 0.05)
    np.testing.assert_allclose(frame_noise_sd(torch.from_numpy(frames)).numpy(), noise, rtol=1e-5)
    assert _frame_statistics(frames)[2].mean() == pytest.approx(expected, rel=0.07)
    real = frames + np.float32(0.25)  # (not whole numbers: the plain median, as before)
    np.testing.assert_allclose(frame_noise_sd(torch.from_numpy(real)).numpy(), frame_noise_adu(real), rtol=1e-5)


def test_frame_noise_of_special_frames():
    """Constant frames have no noise; frames under 2 pixels wide none to see; a float frame
    mostly padded with a constant falls back to the mean difference (the median is 0);
    an even number of differences takes the mean of the two middle ones, in numpy and torch."""
    import torch

    from napari_deepcel0.core.frames import frame_noise_adu
    from napari_deepcel0.core.predict import frame_noise_sd

    assert np.all(frame_noise_adu(np.full((2, 8, 8), 7.0, np.float32)) == 0)
    assert np.all(frame_noise_adu(np.ones((2, 8, 1), np.float32)) == 0)
    padded = np.zeros((1, 32, 32), np.float32)
    padded[0, :, :10] = np.random.default_rng(0).normal(0.0, 2.0, (32, 10))
    assert 0 < frame_noise_adu(padded)[0] == pytest.approx(frame_noise_sd(torch.from_numpy(padded)).item(), rel=1e-5)
    even = np.array([[[0.0, 1.5, 1.5, 4.5, 4.5]]], np.float32)  # differences 1.5, 0, 3, 0: median 0.75
    assert frame_noise_adu(even)[0] == pytest.approx(1.4826 / np.sqrt(2.0) * 0.75)
    assert frame_noise_sd(torch.from_numpy(even)).item() == pytest.approx(frame_noise_adu(even)[0], rel=1e-6)


def test_frame_noise_of_float_frames_on_a_background_of_exact_zeros_is_not_read_as_whole_numbers():
    """A float frame whose background is exactly 0 (background subtracted and clipped, a
    noise-free simulation) has over 90 % of its neighbouring differences 0.0, a whole
    number: it was read as a camera's whole numbers, its noise interpolated within unit
    steps, 0.16 for spots of height 2 (0 when no difference reached 0.5), and the range
    floor of 18 noise standard deviations scaled the frame to a third of its range. Its
    differences that are not 0 are not whole numbers: the mean difference reads the noise,
    as before the interpolation, in numpy, torch and the outlier steps alike."""
    import torch

    from napari_deepcel0.core.frames import _frame_statistics, frame_noise_adu
    from napari_deepcel0.core.predict import frame_noise_sd, scale_to_unit_range

    yy, xx = np.mgrid[:48, :48]
    spot = 2.0 * np.exp(-((yy - 20.3) ** 2 + (xx - 25.6) ** 2) / (2 * 1.3**2))
    frames = np.where(spot > 0.02, spot, 0.0)[None].astype(np.float32)
    assert np.mean(np.diff(frames, axis=-1) == 0) > 0.9  # (the case: mostly exact zeros)
    noise = frame_noise_adu(frames)
    assert 0 < noise[0] < 0.02
    assert frame_noise_sd(torch.from_numpy(frames)).item() == pytest.approx(noise[0], rel=1e-5)
    assert 0 < _frame_statistics(frames)[2][0] < 0.05
    assert scale_to_unit_range(torch.from_numpy(frames)).max().item() == pytest.approx(1.0)
    photons = np.round(frames * 10)  # whole numbers on the same zeros: still read as such
    assert frame_noise_adu(photons)[0] > 0.15
