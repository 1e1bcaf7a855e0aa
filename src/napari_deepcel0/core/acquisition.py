"""Acquisition settings: the camera, the PSF and the fine localization grid.

Units are part of every name: ``*_nm`` in nanometres, ``*_px`` in camera pixels,
``*_fine_px`` in fine-grid pixels (camera pixel / ``upsampling``), ``*_adu`` in
camera counts and ``*_photons`` in photo-electrons.

Pixel-centre convention (ISBI 2013, ThunderSTORM): camera pixel ``j`` spans
``[j, j + 1) * pixel_size_nm`` and is centred at ``(j + 0.5) * pixel_size_nm``; fine
pixel ``k`` is centred at ``(k + 0.5) * fine_pixel_nm``. ``x`` runs along columns,
``y`` along rows.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np

#: FWHM of a Gaussian divided by its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def fwhm_to_sigma(fwhm: float) -> float:
    """Standard deviation of a Gaussian of the given FWHM (same unit)."""
    return fwhm / FWHM_PER_SIGMA


def sigma_to_fwhm(sigma: float) -> float:
    """FWHM of a Gaussian of the given standard deviation (same unit)."""
    return sigma * FWHM_PER_SIGMA


def is_whole_number(value) -> bool:
    """An int (NumPy's too), not a bool or a float: the check for counts given to the
    core (frames, patches, epochs, batch sizes)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real_number(value) -> bool:
    """A real number (an int or a float, NumPy's too), not a bool: the check for the
    numbers given to the core, before their range is (a string or a tuple failed with a
    TypeError from inside a comparison)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def fwhm_from_optics(wavelength_nm: float, numerical_aperture: float) -> float:
    """Approximate lateral PSF FWHM (nm) of a widefield microscope.

    Uses the common Gaussian approximation of the Airy disk,
    ``FWHM ~= 0.51 * wavelength / NA`` (e.g. 680 nm emission at NA 1.49 gives 233 nm).
    """
    if wavelength_nm <= 0 or numerical_aperture <= 0:
        raise ValueError("wavelength and numerical aperture must be positive")
    return 0.51 * wavelength_nm / numerical_aperture


class AcquisitionError(ValueError):
    """An :class:`Acquisition` setting out of range; ``fields`` names the settings the
    check involves (one, or several for a check of one against another, e.g. the PSF
    FWHM against the fine-grid pixel), so that a front end can name its own flags or
    boxes for them (``deepcel0 localize --offset -5`` said nothing of ``--offset``)."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = tuple(fields)


@dataclass(frozen=True)
class Acquisition:
    """Validated description of how the frames were acquired.

    Parameters
    ----------
    pixel_size_nm
        Camera pixel size projected on the sample, in nm (ISBI 2013: 100).
    fwhm_nm
        Full width at half maximum of the Gaussian PSF, in nm (ISBI 2013: 258.21).
    upsampling
        Integer factor L between the camera grid and the fine localization grid.
    offset_adu
        Camera baseline added to every pixel, in ADU.
    gain_adu_per_photon
        Camera gain: ADU per detected photo-electron.
    read_noise_adu
        Standard deviation of the Gaussian read noise, in ADU.
    """

    pixel_size_nm: float = 100.0
    fwhm_nm: float = 258.21
    upsampling: int = 4
    offset_adu: float = 100.0
    gain_adu_per_photon: float = 1.0
    read_noise_adu: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not is_real_number(value):
                raise TypeError(f"Acquisition.{f.name} must be a number, got {value!r}")
            value = float(value)  # NumPy numbers too (e.g. np.float32 read from an array)
            object.__setattr__(self, f.name, value)
            if not math.isfinite(value):
                raise AcquisitionError(f"Acquisition.{f.name} must be finite, got {value!r}", f.name)
        if self.pixel_size_nm <= 0:
            raise AcquisitionError(f"camera pixel size must be positive, got {self.pixel_size_nm:g} nm",
                                   "pixel_size_nm")
        if self.fwhm_nm <= 0:
            raise AcquisitionError(f"PSF FWHM must be positive, got {self.fwhm_nm:g} nm", "fwhm_nm")
        if int(self.upsampling) != self.upsampling or self.upsampling < 1:
            raise AcquisitionError(f"upsampling factor L must be an integer >= 1, got {self.upsampling:g}",
                                   "upsampling")
        object.__setattr__(self, "upsampling", int(self.upsampling))
        if self.upsampling > 16:
            raise AcquisitionError(f"upsampling factor L = {self.upsampling} is unreasonably large (max 16)",
                                   "upsampling")
        if self.fwhm_nm < self.fine_pixel_nm:
            raise AcquisitionError(
                f"PSF FWHM ({self.fwhm_nm:g} nm) is smaller than a fine-grid pixel "
                f"({self.fine_pixel_nm:g} nm = {self.pixel_size_nm:g} nm / L={self.upsampling}): "
                "the PSF would be undersampled; check the units (nm) or lower L",
                "fwhm_nm", "pixel_size_nm", "upsampling",
            )
        if self.fwhm_nm > 20 * self.pixel_size_nm:
            raise AcquisitionError(
                f"PSF FWHM ({self.fwhm_nm:g} nm) is more than 20 camera pixels "
                f"({self.pixel_size_nm:g} nm each): check the units (nm, not um or px)",
                "fwhm_nm", "pixel_size_nm",
            )
        if self.gain_adu_per_photon <= 0:
            raise AcquisitionError(f"camera gain must be positive, got {self.gain_adu_per_photon:g} ADU/photon",
                                   "gain_adu_per_photon")
        if self.read_noise_adu < 0:
            raise AcquisitionError(f"read noise must be >= 0 ADU, got {self.read_noise_adu:g}", "read_noise_adu")
        if self.offset_adu < 0:
            raise AcquisitionError(f"camera offset must be >= 0 ADU, got {self.offset_adu:g}", "offset_adu")

    # ----------------------------------------------------------------- derived
    @property
    def sigma_nm(self) -> float:
        """PSF standard deviation in nm (FWHM / 2.3548)."""
        return fwhm_to_sigma(self.fwhm_nm)

    @property
    def fine_pixel_nm(self) -> float:
        """Size of one fine-grid pixel in nm."""
        return self.pixel_size_nm / self.upsampling

    @property
    def sigma_px(self) -> float:
        """PSF standard deviation in camera pixels."""
        return self.sigma_nm / self.pixel_size_nm

    @property
    def sigma_fine_px(self) -> float:
        """PSF standard deviation in fine-grid pixels."""
        return self.sigma_nm / self.fine_pixel_nm

    def fine_shape(self, camera_shape: tuple[int, int]) -> tuple[int, int]:
        """Fine-grid shape (rows, cols) of a camera frame of ``camera_shape``."""
        return (int(camera_shape[0]) * self.upsampling, int(camera_shape[1]) * self.upsampling)

    def field_nm(self, camera_shape: tuple[int, int]) -> tuple[float, float]:
        """(height, width) in nm of a camera frame of ``camera_shape`` (rows, cols)."""
        return (int(camera_shape[0]) * self.pixel_size_nm, int(camera_shape[1]) * self.pixel_size_nm)

    # ------------------------------------------------------------ conversions
    def camera_px_to_nm(self, index):
        """Centre, in nm, of camera pixel ``index`` (0-based; works on arrays)."""
        return (index + 0.5) * self.pixel_size_nm

    def fine_px_to_nm(self, index):
        """Centre, in nm, of fine-grid pixel ``index`` (0-based, may be fractional)."""
        return (index + 0.5) * self.fine_pixel_nm

    def nm_to_fine_px(self, coord_nm):
        """Fine-grid pixel coordinate (0-based, fractional) of a position in nm."""
        return coord_nm / self.fine_pixel_nm - 0.5

    def fine_px_index(self, coord_nm):
        """Index (0-based, integer; may be outside the grid) of the fine-grid pixel
        that holds a position in nm: pixel ``k`` covers ``[k, k + 1) * fine_pixel_nm``."""
        return np.floor(np.asarray(coord_nm) / self.fine_pixel_nm).astype(np.int64)

    # ----------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        """The settings as a plain dict (JSON-ready; :meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Acquisition":
        """The settings of a :meth:`to_dict` dict (validated); ValueError for keys it does not know."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown acquisition settings: {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "Acquisition":
        """A copy with ``changes`` (``acq.replace(pixel_size_nm=160)``), validated again."""
        return Acquisition(**{**self.to_dict(), **changes})

    def describe(self) -> str:
        """One line for people: pixel size, PSF FWHM and sigma, L and the fine pixel."""
        return (
            f"pixel {self.pixel_size_nm:g} nm, PSF FWHM {self.fwhm_nm:g} nm "
            f"(sigma {self.sigma_nm:.1f} nm), L = {self.upsampling} "
            f"({self.fine_pixel_nm:g} nm fine pixels)"
        )


#: The ISBI 2013 high-density tubulin benchmark, as used in the DeepCEL0 paper.
ISBI2013 = Acquisition(pixel_size_nm=100.0, fwhm_nm=258.21, upsampling=4, offset_adu=100.0)
