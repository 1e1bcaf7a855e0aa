"""Estimating acquisition settings from the frames themselves.

Three numbers can be read off the data, without a calibration:

- the *baseline* (camera offset plus the background), in ADU: the median of the
  darkest regions of the frames;
- the *background noise*, in ADU: the robust (MAD) standard deviation of the
  differences of each pixel between the frames in which it lies in the darkest
  regions (between neighbouring pixels when there is one frame), divided by sqrt(2). It
  contains the read noise and the shot noise of the background, so it is an upper bound
  on the read noise;
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
  258.1 now). Its scatter is that of the sample: on the ISBI 2013 high-density stack (64 x
  64 pixels, true FWHM 258.21 nm) 30 random subsets of 20 frames gave a standard deviation
  of 6.4 nm (the 20 frames sampled before read 272.4 nm), of 100 frames 1.9 nm; all 361
  frames give 261.9 nm. Hence :func:`sample_frames` reads frames by a pixel budget
  (:data:`SAMPLE_PIXELS`, 100 frames of 64 x 64): 262.0 nm on ISBI. (Subtracting the
  cross-correlation averaged over all pairs of frames rather than successive ones narrowed
  the scatter little, 1.9 -> 1.7 nm on ISBI at 100 frames, and read the PSF 3 % narrow when
  the sample drifted 200 nm from its first frame to its last.) A FWHM off by x % moves the
  photon counts of :mod:`.photometry` by about x %.

Frames come from any frame source (a :class:`~napari_deepcel0.core.tiff_stack.FrameStack`, a
NumPy or dask array of shape (frames, rows, cols)); :func:`sample_frames` reads a sample
spread evenly over the stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares

from .acquisition import Acquisition, is_real_number, sigma_to_fwhm
from .frames import (WHOLE_SHARE, check_finite, dim_bright_objects, fill_dark_pixels, frame_count, read_frames,
                     replace_isolated_nonfinite, replace_isolated_outliers, robust_sd)
from .progress import counted

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


#: pixels :func:`sample_frames` reads at least (when the stack has them): 100 frames of 64 x
#: 64. The FWHM's scatter is that of the sample's molecules: on ISBI 2013 (64 x 64) its
#: standard deviation over random subsets was 6.4 nm from 20 frames, 1.9 nm from 100
SAMPLE_PIXELS = 100 * 64 * 64
#: frames :func:`sample_frames` reads at least (when the stack has them), however large:
#: successive frames' cross-correlation takes the structure out, pair by pair
MIN_SAMPLE_FRAMES = 20
#: pixels :func:`sample_frames` reads at most (but :data:`FEW_FRAMES` frames), to bound the
#: estimate's memory (about 55 bytes a pixel: under 1 GB) and time (about 0.6 s a million
#: pixels): 16 frames of 1024 x 1024. (20 frames of 2048 x 2048 took 59 s and 7.2 GB; 5, 13 s
#: and 1.2 GB)
MAX_SAMPLE_PIXELS = 2**24


def sample_frame_count(n_frames: int, frame_shape: tuple[int, int], max_frames: int | None = None) -> int:
    """How many frames :func:`sample_frames` reads from a stack of ``n_frames`` frames of
    ``frame_shape`` (rows, cols): enough to hold :data:`SAMPLE_PIXELS` pixels, at least
    :data:`MIN_SAMPLE_FRAMES` and at most :data:`MAX_SAMPLE_PIXELS` pixels (but
    :data:`FEW_FRAMES` frames), no more than ``max_frames`` (when given) or the stack holds.

    64 x 64 pixels: 100 frames; 128 x 128: 25; 256 x 256 to 1024 x 1024: 20 down to 16;
    2048 x 2048: 5.
    """
    pixels = max(int(frame_shape[0]) * int(frame_shape[1]), 1)
    count = max(-(-SAMPLE_PIXELS // pixels), MIN_SAMPLE_FRAMES)
    count = min(count, max(MAX_SAMPLE_PIXELS // pixels, FEW_FRAMES))
    if max_frames is not None:
        if not max_frames >= 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        count = min(count, int(max_frames))
    return max(min(count, int(n_frames)), 0)


def sample_frames(source, max_frames: int | None = None) -> np.ndarray:
    """Frames spread evenly over a frame source (the first and the last among them),
    float32 (n, rows, cols), their isolated NaN or infinite pixels replaced; a frame with
    more is an error that names it.

    How many: :func:`sample_frame_count` (100 frames of 64 x 64 pixels, fewer of larger
    ones, all of a shorter stack), at most ``max_frames`` when given. Frames are read one
    by one, so a lazily read stack costs only them: 100 frames of a 20,000-frame TIFF of
    64 x 64 in about 0.01 s (uncompressed or zlib-compressed, from the disk cache).
    """
    n = frame_count(source)
    if n < 1:
        raise ValueError("the stack has no frames")
    shape = getattr(source, "shape", None)
    frame_shape = tuple(shape[-2:]) if shape is not None else np.shape(source[0])[-2:]
    count = sample_frame_count(n, frame_shape, max_frames)
    indices = np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
    frames, _ = replace_isolated_nonfinite(read_frames(source, indices))
    check_finite(frames, indices + 1, isolated_replaced=True)
    return frames


#: the PSF width (camera pixels) that :func:`estimate_acquisition`'s replacement of hot
#: and dead pixels assumes: the PSF is what is estimated, and a sharp one replaces fewer
SHARP_PSF_SIGMA_PX = 0.5


#: the share of each frame's pixels that :func:`estimate_noise` takes for dark (at least;
#: see :data:`NOISE_FRACTIONS`): the darkest 10 % of 5 x 5 regions of a pair of frames still
#: held molecules at 6 molecules/um^2 (a noise of 7.3 ADU measured for 3.33)
NOISE_DARK_FRACTION = 0.05
#: the shares :func:`estimate_noise` tries in turn until one gives
#: :data:`MIN_NOISE_DIFFERENCES` differences (few frames, or small ones)
NOISE_FRACTIONS = (NOISE_DARK_FRACTION, 0.1, 0.2, 0.5, 1.0)
#: differences that :func:`estimate_noise` wants at least
MIN_NOISE_DIFFERENCES = 100


def _neighbourhood_mean(image: np.ndarray, size: int = 5) -> np.ndarray:
    """Mean of each pixel's ``size`` x ``size`` neighbourhood, the pixel itself left out."""
    image = np.asarray(image, dtype=np.float64)
    area = size * size
    local = ndimage.uniform_filter(image, size, mode="reflect")
    return (local * area - image) / (area - 1) if area > 1 else local


def dark_mask(image: np.ndarray, fraction: float = 0.1, size: int = 5, exclude: np.ndarray | None = None
              ) -> np.ndarray:
    """Pixels whose ``size`` x ``size`` neighbourhood (the pixel itself left out) has a
    mean among the lowest ``fraction``, of those not in ``exclude`` (e.g. a zero-padded
    border, filled before).

    Selecting on the neighbourhood rather than on the pixel keeps the selection from
    favouring pixels whose own noise happens to be low; leaving the pixel out of it keeps
    it from doing so at all: with the pixel in, the baseline read 136 ADU on ISBI 2013,
    whose background pixels (no molecule within 5 pixels) have a median of 139, and 197
    on sparse simulated frames of 200.
    """
    return _lowest(_neighbourhood_mean(image, size), fraction, exclude)


def _lowest(local: np.ndarray, fraction: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """Where ``local`` is among its lowest ``fraction``, of the values not in ``exclude``
    (all of them when it excludes none or all); ``local`` is set to inf where excluded."""
    if exclude is not None and exclude.any() and not exclude.all():
        local[exclude] = np.inf
        return local <= np.quantile(local[~exclude], fraction)
    return local <= np.quantile(local, fraction)


def _centred(differences: np.ndarray, least: int = 10) -> np.ndarray:
    """A frame pair's differences less their median (a background that changes between
    frames, e.g. by bleaching, is no noise), when there are ``least`` of them to take a
    median of."""
    return differences - np.median(differences) if differences.size >= least else differences


def _is_whole(values: np.ndarray) -> bool:
    """Whether (nearly: :data:`~.frames.WHOLE_SHARE`) all ``values`` are whole numbers, as
    a camera's ADU are."""
    return values.size > 0 and np.count_nonzero(values == np.round(values)) >= WHOLE_SHARE * values.size


def _robust_std(values: np.ndarray) -> float:
    """:data:`~.frames.MAD_TO_STD` x the median absolute deviation from the median,
    interpolated for whole numbers (:func:`~.frames.robust_sd`) while that MAD is under
    1000 (above, quantization is negligible: the plain MAD about the plain median, as
    before robust_sd was shared; its own switch, on the lower middle deviation, read 4
    differences of -3000, -500, 500, 3000 ADU as 742 instead of 2595)."""
    values = np.asarray(values, dtype=np.float64)
    centre = float(np.median(values))
    plain = np.abs(values - centre)
    whole = _is_whole(values) and float(np.median(plain)) < 1000.0
    deviations = np.abs(np.round(values) - round(centre)) if whole else plain
    return float(robust_sd(deviations[None], np.array([whole]))[0])


def _stack_and_exclusion(frames: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` as float64 (frames, rows, cols), and the pixels to leave out, one mask
    per frame (none when ``exclude`` is None)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    return frames, np.zeros(frames.shape, bool) if exclude is None else np.broadcast_to(exclude, frames.shape)


def _dark_differences(frames: np.ndarray, ex: np.ndarray, fraction: float, noise: float = 0.0) -> np.ndarray:
    """The differences :func:`estimate_noise` takes, of the pixels dark in their frame:
    the lowest ``fraction`` by :func:`dark_mask`, and with a first estimate of the
    ``noise`` also those whose neighbourhood mean is no more than its noise (``noise /
    sqrt(24)``) above the frame's level. Each pixel's differences between successive
    frames in which it is dark, each frame's level (the median of its lowest ``fraction``,
    a whole number for whole-number frames) taken out first; of one frame, those between
    horizontal neighbours both dark."""
    last = np.full(frames.shape[1:], np.nan)
    differences = []
    for frame, excluded in zip(frames, ex):
        if excluded.all():
            continue
        local = _neighbourhood_mean(frame)
        darkest = _lowest(local, fraction, excluded)  # (local inf where excluded)
        values = frame[darkest]
        level = float(np.median(values))
        level = round(level) if _is_whole(values) else level
        dark = darkest | (local <= level + noise / math.sqrt(24.0)) if noise > 0 else darkest
        if len(frames) == 1:
            return np.diff(frame, axis=-1)[dark[:, 1:] & dark[:, :-1]]
        both = dark & ~np.isnan(last)
        differences.append(frame[both] - level - last[both])
        last[dark] = frame[dark] - level
    return np.concatenate(differences) if differences else np.empty(0)


def estimate_noise(frames: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Robust standard deviation of the background noise, in the frames' unit (ADU).

    Only pixels in the darkest regions of their frame are used, so molecules contribute
    little; the result still contains the shot noise of the background. With two or more
    frames, each pixel's differences between the frames in which it is dark, each
    frame's level taken out (a background that changes between frames, e.g. by
    bleaching, is no noise); with one frame, differences between horizontally
    neighbouring dark pixels. Dark are, first, the lowest :data:`NOISE_DARK_FRACTION` of
    each frame by :func:`dark_mask` (or the next larger share of :data:`NOISE_FRACTIONS`
    when these give fewer than :data:`MIN_NOISE_DIFFERENCES` differences: few or small
    frames); then, with the noise they give, also the pixels whose 5 x 5 neighbourhood
    lies no more than its noise above the frame's level (most of a sparse frame, for
    precision: on 8 frames of 64 x 64 the first pass alone scattered by 5.7 %, both by 1.1
    %). ``exclude`` (frames, rows, cols): pixels not to use (filled dark borders).

    The darkest 10 % of pairs of successive frames, as before, measured the molecules'
    light in dense frames: 7.34 ADU for 3.33 at 6 molecules/um^2 (20 frames of 64 x 64),
    13.6 with molecules of 2,000 photons; 3.38 and 3.42 now (3.40 from 100 frames; 10/um^2:
    4.2). Sparse frames (0.5/um^2) read 3.15 before, 3.34 now; ISBI 2013, whose background
    pixels far from any molecule give 12.6 ADU, 11.53 before and 12.41 now. The
    differences' MAD of whole-number frames is interpolated (:func:`_robust_std`).
    """
    frames, ex = _stack_and_exclusion(frames, exclude)
    differences = np.empty(0)
    for fraction in NOISE_FRACTIONS:
        differences = _dark_differences(frames, ex, fraction)
        if differences.size >= MIN_NOISE_DIFFERENCES:
            break
    if not differences.size and len(frames) > 1:  # frames of a pixel or two
        differences = np.concatenate([_centred((b - a)[~(ea | eb)])
                                      for a, b, ea, eb in zip(frames[:-1], frames[1:], ex[:-1], ex[1:])])
    if not differences.size:
        return math.nan
    noise = _robust_std(differences) / math.sqrt(2.0)
    if noise > 0 and differences.size >= MIN_NOISE_DIFFERENCES:
        noise = _robust_std(_dark_differences(frames, ex, fraction, noise)) / math.sqrt(2.0)
    return noise


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
    frames = np.asarray(frames)
    n, h, w = frames.shape
    shape = (2 * h, 2 * w)
    power = np.zeros((shape[0], shape[1] // 2 + 1))
    previous = None
    for frame in frames:  # one at a time: the spectra of large frames take 32 bytes a pixel
        frame = np.asarray(frame, dtype=np.float64)
        if baseline is not None:
            signal = float((frame - baseline).mean())
            frame = (frame - baseline) / (signal if signal > 0 else 1.0)
        spectrum = np.fft.rfft2(frame - frame.mean(), s=shape)
        power += spectrum.real**2 + spectrum.imag**2
        if previous is not None:
            power -= np.real(previous * np.conj(spectrum)) * (n / (n - 1))
        previous = spectrum
    power /= n
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
    if pixel_size_nm is None:  # (a stack's pixel_size_nm where its file states none: a TypeError before)
        raise ValueError("no pixel size: the stack's file states none; give the camera's pixel size in nm (e.g. 100)")
    if not (is_real_number(pixel_size_nm) and pixel_size_nm > 0 and math.isfinite(pixel_size_nm)):
        raise ValueError(f"pixel size must be a positive number of nm, got {pixel_size_nm!r}")
    if not (is_real_number(sigma_guess_nm) and sigma_guess_nm > 0 and math.isfinite(sigma_guess_nm)):
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
