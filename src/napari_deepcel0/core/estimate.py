"""Estimating acquisition settings from the frames themselves.

Three numbers can be read off the data, without a calibration:

- the *baseline* (camera offset plus the background), in ADU: the median of the
  darkest regions of the frames;
- the *background noise*, in ADU: the robust (MAD) standard deviation of differences
  between frames (or between neighbouring pixels when there is one frame) in the
  darkest regions, divided by sqrt(2). It contains the read noise and the shot noise of
  the background, so it is an upper bound on the read noise;
- the *PSF width*, from the width of the frames' autocorrelation. Each molecule
  contributes the autocorrelation of the pixel-integrated PSF, a near-Gaussian of
  variance ``2 sigma^2 + 1/6`` px^2 per axis; pairs of molecules of the same frame
  contribute the structure's correlation, which pairs from two different frames
  (blinking makes them independent draws of the same structure) contribute equally,
  so it is removed by subtracting the cross-correlation of frames ``t`` and ``t + 1``.
  White noise only adds a spike at zero lag, which the fit skips. Unlike fits of
  isolated spots, this does not depend on the density. Each frame is divided by its mean
  signal first (:func:`excess_autocorrelation`): frames of very different brightness read
  it wide otherwise (270.9 nm for 258.21 on 100 frames of molecules of 300-3,000 photons;
  258.1 now). From the 20 frames :func:`sample_frames` takes it scatters: on 12 simulated
  stacks of 64 x 64 frames at 6 molecules/um^2 along filaments from -3.6 to +6.9 %,
  median +1.4 %; on the ISBI 2013 high-density stack it gives 272 nm from those 20 frames
  and 262 nm from all 361, for the true 258 nm (2026-11-29, with a review's
  measurements). A FWHM off by x % moves the photon counts of :mod:`.photometry` by about
  x %.

Frames come from any frame source (a :class:`~napari_deepcel0.core.tiff_stack.FrameStack`, a
NumPy or dask array of shape (frames, rows, cols)); a few frames spread evenly over the
stack are enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares

from .acquisition import Acquisition, sigma_to_fwhm
from .frames import (check_finite, dim_bright_objects, fill_dark_pixels, frame_count, read_frames,
                     replace_isolated_nonfinite, replace_isolated_outliers)
from .progress import counted

#: 1.4826 x MAD is the standard deviation of a normal distribution
MAD_TO_STD = 1.4826
#: variance (px^2, per axis) that pixel integration adds to an autocorrelation:
#: that of the triangle function, the autocorrelation of a 1-pixel box
PIXEL_VARIANCE = 1.0 / 6.0
#: narrowest PSF standard deviation that can be measured, in camera pixels
MIN_SIGMA_PX = 0.3


@dataclass(frozen=True)
class AcquisitionEstimate:
    """Settings estimated from frames.

    Attributes
    ----------
    fwhm_nm
        PSF FWHM in nm; NaN when the frames show no PSF-shaped signal above the noise.
    baseline_adu
        Camera offset plus the lowest background level, in ADU (an upper bound on
        the offset).
    noise_adu
        Standard deviation of the background noise, in ADU (an upper bound on the
        read noise).
    n_frames
        Number of frames used.
    """

    fwhm_nm: float
    baseline_adu: float
    noise_adu: float
    n_frames: int

    def applied_to(self, acq: Acquisition) -> tuple[Acquisition, list[str]]:
        """``acq`` with each estimated value that is valid (offset, read noise, and the
        FWHM when one was found), and what to say of the rest: a value out of range is
        left out alone (one threw all away, a good FWHM too); a baseline below 0 (frames
        with the offset already subtracted) becomes an offset of 0; a FWHM from fewer
        than :data:`FEW_FRAMES` frames is said to be rough."""
        problems = []
        baseline = round(self.baseline_adu, 1)
        if baseline < 0:
            problems.append(f"the baseline {baseline:g} ADU is below 0 (the offset already subtracted?): offset 0")
            baseline = 0.0
        changes = {"offset_adu": baseline, "read_noise_adu": round(self.noise_adu, 2)}
        found = math.isfinite(self.fwhm_nm)
        if found:
            changes["fwhm_nm"] = round(self.fwhm_nm, 1)
        for field, value in changes.items():
            try:
                acq = acq.replace(**{field: value})
            except ValueError as exc:
                problems.append(f"{field} not applied: {exc}")
        if not found:
            problems.append("PSF FWHM unchanged: no PSF-shaped signal above the noise")
        elif self.n_frames < FEW_FRAMES:
            problems.append(f"from {counted(self.n_frames, 'frame')} the FWHM can be 15-35 % off (a stack of "
                            f"{FEW_FRAMES} or more frames gives it within about 6 %)")
        return acq, problems


#: an estimate from fewer frames warns: 1-3 frames gave FWHMs 15-35 % off on simulated
#: stacks, the structure's correlation not averaged out (5 or more: within about 6 %)
FEW_FRAMES = 5


def sample_frames(source, max_frames: int = 20) -> np.ndarray:
    """Up to ``max_frames`` frames spread evenly over a frame source, float32 (n, rows, cols),
    their isolated NaN or infinite pixels replaced; a frame with more is an error that
    names it."""
    n = frame_count(source)
    if n < 1:
        raise ValueError("the stack has no frames")
    indices = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(np.int64))
    frames, _ = replace_isolated_nonfinite(read_frames(source, indices))
    check_finite(frames, indices + 1, isolated_replaced=True)
    return frames


#: the PSF width (camera pixels) that :func:`estimate_acquisition`'s replacement of hot
#: and dead pixels assumes: the PSF is what is estimated, and a sharp one replaces fewer
SHARP_PSF_SIGMA_PX = 0.5


def dark_mask(image: np.ndarray, fraction: float = 0.1, size: int = 5, exclude: np.ndarray | None = None
              ) -> np.ndarray:
    """Pixels whose ``size`` x ``size`` local mean is among the lowest ``fraction``, of
    those not in ``exclude`` (e.g. a zero-padded border, filled before).

    Selecting on the local mean rather than on the pixel itself keeps the selection
    from favouring pixels whose own noise happens to be low.
    """
    local = ndimage.uniform_filter(np.asarray(image, dtype=np.float64), size, mode="reflect")
    if exclude is not None and exclude.any() and not exclude.all():
        local[exclude] = np.inf
        return local <= np.quantile(local[~exclude], fraction)
    return local <= np.quantile(local, fraction)


def _centred(differences: np.ndarray, least: int = 10) -> np.ndarray:
    """A frame pair's differences less their median (a background that changes between
    frames, e.g. by bleaching, is no noise), when there are ``least`` of them to take a
    median of."""
    return differences - np.median(differences) if differences.size >= least else differences


def _robust_std(values: np.ndarray) -> float:
    return float(MAD_TO_STD * np.median(np.abs(values - np.median(values))))


def _stack_and_exclusion(frames: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` as float64 (frames, rows, cols), and the pixels to leave out, one mask
    per frame (none when ``exclude`` is None)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    return frames, np.zeros(frames.shape, bool) if exclude is None else np.broadcast_to(exclude, frames.shape)


def estimate_noise(frames: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Robust standard deviation of the background noise, in the frames' unit (ADU).

    With two or more frames, uses differences between successive frames (each pair's
    median taken out); with one frame, differences between horizontally neighbouring
    pixels. Only the darkest
    regions (see :func:`dark_mask`) are used, so molecules contribute little; the
    result still contains the shot noise of the background. ``exclude`` (frames, rows,
    cols): pixels not to use (filled dark borders).
    """
    frames, ex = _stack_and_exclusion(frames, exclude)
    if len(frames) > 1:
        diffs = [_centred((b - a)[dark_mask(a + b, exclude=ea | eb)])
                 for a, b, ea, eb in zip(frames[:-1], frames[1:], ex[:-1], ex[1:])]
    else:
        diffs = [np.diff(frames[0], axis=-1)[dark_mask(frames[0], exclude=ex[0])[:, 1:] & ~ex[0][:, :-1]]]
    return _robust_std(np.concatenate(diffs)) / math.sqrt(2.0)


def estimate_baseline(frames: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """The background level of the darkest regions (camera offset + background), in ADU:
    the median of the pixels selected by :func:`dark_mask` in every frame (but those
    in ``exclude``)."""
    frames, ex = _stack_and_exclusion(frames, exclude)
    return float(np.median(np.concatenate([f[dark_mask(f, exclude=e)] for f, e in zip(frames, ex)])))


def excess_autocorrelation(frames: np.ndarray, half_px: int, baseline: float | None = None) -> np.ndarray:
    """Mean autocorrelation of the frames minus the mean cross-correlation of
    successive frames, per pixel pair, for lags ``-half_px..half_px`` (rows, cols).

    With one frame, the plain autocorrelation. With the frames' ``baseline`` (ADU), each
    frame less it is first divided by its mean signal: the structure's correlation weighs
    with the square of a frame's brightness in the autocorrelation and with the product
    of two frames' in the cross-correlation, so that frames of different brightness left
    part of it in and read the PSF wide (+15 % for molecules of 300-3,000 photons per
    frame; 258.7 nm with the division, a review). Each frame's mean is removed; the
    correlations are computed with zero padding (no wrap-around) and divided by the
    number of pixel pairs at each lag.
    """
    frames = np.asarray(frames, dtype=np.float64)
    _, h, w = frames.shape
    if baseline is not None:
        signal = (frames - baseline).mean(axis=(-2, -1), keepdims=True)
        frames = (frames - baseline) / np.where(signal > 0, signal, 1.0)
    shape = (2 * h, 2 * w)
    spectra = np.fft.rfft2(frames - frames.mean(axis=(-2, -1), keepdims=True), s=shape)
    power = (np.abs(spectra) ** 2).mean(axis=0)
    if len(frames) > 1:
        power = power - np.real(spectra[:-1] * np.conj(spectra[1:])).mean(axis=0)
    pairs = np.fft.irfft2(np.abs(np.fft.rfft2(np.ones((h, w)), s=shape)) ** 2, s=shape)
    corr = np.fft.fftshift(np.fft.irfft2(power, s=shape) / np.maximum(np.round(pairs), 1.0))
    return corr[h - half_px : h + half_px + 1, w - half_px : w + half_px + 1]


def fit_autocorrelation_sigma(corr: np.ndarray, sigma_guess_px: float, min_snr: float = 5.0) -> float:
    """PSF standard deviation (camera px) from an excess autocorrelation.

    Fits ``a exp(-|d|^2 / (2 s^2)) + c`` to every lag but zero (where the noise
    adds a spike) and returns ``sqrt((s^2 - 1/6) / 2)``; NaN when the fitted excess
    at a 1-pixel lag is not ``min_snr`` times the scatter of the outer lags, when the
    width hits a bound (:data:`MIN_SIGMA_PX`, the lag range) or the fit fails.
    """
    half = corr.shape[0] // 2
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1]
    r2 = (dx**2 + dy**2).astype(np.float64)
    keep = r2 > 0
    outer = r2 >= (0.75 * half) ** 2
    scatter = float(np.std(corr[outer])) if outer.any() else 0.0
    if not np.ptp(corr[keep]) > 0:  # flat (e.g. constant frames): no PSF to see, nothing to fit
        return math.nan
    s2_guess = 2.0 * sigma_guess_px**2 + PIXEL_VARIANCE

    def residual(p):
        a, s2, c = p
        return (a * np.exp(-r2 / (2.0 * s2)) + c - corr)[keep]

    s2_min = 2.0 * MIN_SIGMA_PX**2 + PIXEL_VARIANCE
    start = [max(float(corr[keep].max() - np.median(corr[outer])), 1e-12), max(s2_guess, 1.01 * s2_min),
             float(np.median(corr[outer]))]
    try:
        fit = least_squares(residual, start, bounds=([0.0, s2_min, -np.inf], [np.inf, half**2, np.inf]))
    except (ValueError, np.linalg.LinAlgError):
        return math.nan
    a, s2, _ = fit.x
    at_one_px = a * math.exp(-1.0 / (2.0 * s2))
    if not fit.success or not at_one_px > min_snr * scatter or not 1.01 * s2_min < s2 < 0.99 * half**2:
        return math.nan
    return math.sqrt((s2 - PIXEL_VARIANCE) / 2.0)


def estimate_acquisition(
    frames: np.ndarray, pixel_size_nm: float, sigma_guess_nm: float = 110.0
) -> AcquisitionEstimate:
    """Estimate PSF FWHM, baseline and noise from camera frames.

    Parameters
    ----------
    frames
        (frames, rows, cols) or (rows, cols) camera frames in ADU; frames far apart
        in time (e.g. from :func:`sample_frames`) are best. With one frame the
        structure's correlation is not removed and the FWHM is overestimated.
    pixel_size_nm
        Camera pixel size in nm (to report the FWHM in nm).
    sigma_guess_nm
        Starting PSF standard deviation in nm; the autocorrelation is fitted over
        lags up to ``max(6, ceil(5 sigma))`` pixels.

    Isolated hot and dead pixels (and NaN or infinite ones) are replaced first, darker
    regions (a zero-padded border) filled and left out of the baseline and noise, and
    objects far brighter than the molecules (a fiducial bead) dimmed, as before localizing
    (one hot pixel per frame moved the FWHM of sparse simulated frames by 17 %; a bead,
    by -40 %; a zero border gave an offset and a noise of 0).
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (frames, rows, cols), got shape {frames.shape}")
    frames, _ = replace_isolated_nonfinite(frames)
    if not np.isfinite(frames).all():
        raise ValueError("the frames contain NaN or infinite values beside each other (isolated ones are replaced "
                         "like dead pixels)")
    if not (pixel_size_nm > 0 and math.isfinite(pixel_size_nm)):
        raise ValueError(f"pixel size must be a positive number of nm, got {pixel_size_nm}")
    if not (sigma_guess_nm > 0 and math.isfinite(sigma_guess_nm)):
        raise ValueError(f"the starting PSF sigma must be a positive number of nm, got {sigma_guess_nm}")
    if min(frames.shape[1:]) < 1:
        raise ValueError(f"the frames have no pixels (shape {frames.shape})")
    sigma_guess_px = sigma_guess_nm / pixel_size_nm
    frames = replace_isolated_outliers(frames.astype(np.float32), SHARP_PSF_SIGMA_PX)[0]
    # a zero-padded border or a dead column read as an offset and a noise of 0; a fiducial
    # bead's light took the autocorrelation (FWHM 40 % low): filled and dimmed, as before localizing
    filled = fill_dark_pixels(frames)[0]
    dark = filled != frames
    frames = dim_bright_objects(filled, sigma_guess_px)[0].astype(np.float64)
    noise = estimate_noise(frames, exclude=dark)
    baseline = estimate_baseline(frames, exclude=dark)
    half = min(max(6, int(math.ceil(5.0 * sigma_guess_px))), (min(frames.shape[1:]) - 1) // 2)
    sigma_px = math.nan  # frames under 3 pixels a side have no lag to fit a width to
    if half >= 1:
        sigma_px = fit_autocorrelation_sigma(excess_autocorrelation(frames, half, baseline), sigma_guess_px)
    return AcquisitionEstimate(sigma_to_fwhm(sigma_px) * pixel_size_nm, baseline, noise, len(frames))
