"""Names, units and rules that the localization tables and files of this package share.

Localization tables are pandas DataFrames with ThunderSTORM column names:
``frame`` (1-based), ``x [nm]``, ``y [nm]`` and optional further columns
(``intensity [photon]``, ``sigma [nm]``, ``uncertainty [nm]``, ``confidence``, ...).

Also here: the limits on frame numbers and positions that the CSV reader
(:mod:`.localization_csv`), the writers (:mod:`.outputs`) and matching apply, the
length units both readers convert, and the ImageJ *Info* that marks the TIFFs this
package computes (written by :mod:`.outputs`, read back by :mod:`.tiff_stack`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FRAME, X_NM, Y_NM = "frame", "x [nm]", "y [nm]"
INTENSITY = "intensity [photon]"

#: ThunderSTORM's column order; columns a table has are written in this order,
#: followed by any other columns.
THUNDERSTORM_COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "sigma [nm]",
    INTENSITY,
    "offset [photon]",
    "bkgstd [photon]",
    "uncertainty [nm]",
)

#: ImageJ *Info* of the TIFFs of computed images (renders, maps), followed by their kind
OUTPUT_INFO_PREFIX = "napari-deepcel0 output: "
#: ... and, on a line of its own, the 1-based camera frame of the first plane (maps)
FIRST_FRAME_INFO = "first frame"
#: frame numbers above this are refused (a float64 CSV value is no exact integer beyond it)
MAX_FRAME_NUMBER = 2**53
#: x and y beyond this many nm (a metre) are refused as positions: no field of view is that
#: large, and beyond 1e154 nm the matching's distances overflowed with SciPy's message
MAX_COORDINATE_NM = 1e9


def unusable_positions(xy: np.ndarray) -> np.ndarray:
    """The rows of ``xy`` (n, 2; nm) whose x or y is no finite number within
    +-:data:`MAX_COORDINATE_NM`: refused by the CSV reader and writer and by matching."""
    xy = np.asarray(xy, dtype=np.float64)
    return ~(np.isfinite(xy) & (np.abs(xy) <= MAX_COORDINATE_NM)).all(axis=1)


POSITION_RULE = f"a finite number of nm within +-{MAX_COORDINATE_NM:.0e}"
#: the SI prefixes and their powers of ten (OME's UnitsLength has metres with each: Ym ... ym)
_SI_PREFIXES = {"Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1, "": 0,
                "d": -1, "c": -2, "m": -3, "\u00b5": -6, "n": -9, "p": -12, "f": -15, "a": -18, "z": -21, "y": -24}
#: nm per inch; OME's other non-metric lengths are whole fractions or multiples of it
_INCH_NM = 25.4e6
#: length units of pixel sizes and CSV column labels, in nm (both readers convert with it): the
#: metre with every SI prefix, the other names of the micrometre and the angstrom, and the rest
#: of OME's UnitsLength (thou, line, point, inch, foot, yard, mile; astronomical unit, light
#: year, parsec), so that a size in km reads as one, or is refused as implausible, rather than
#: warned of as a unit not known here
LENGTH_TO_NM = {
    **{prefix + "m": float(f"1e{power + 9}") for prefix, power in _SI_PREFIXES.items()},
    "um": 1e3, "\u03bcm": 1e3, "micron": 1e3, "microns": 1e3,  # micrometres (Greek mu; Fiji's words)
    "\u00c5": 0.1, "\u212b": 0.1,  # angstrom: the letter (OME's) and the angstrom sign
    "thou": _INCH_NM / 1000, "li": _INCH_NM / 12, "pt": _INCH_NM / 72, "in": _INCH_NM, "ft": 12 * _INCH_NM,
    "yd": 36 * _INCH_NM, "mi": 63360 * _INCH_NM,
    "ua": 1.495978707e20, "ly": 9.4607304725808e24, "pc": 3.0856775814913673e25,
}


def empty_table(mass_column: str = "confidence") -> pd.DataFrame:
    """An empty localization table with the standard columns."""
    return pd.DataFrame(
        {FRAME: np.zeros(0, np.int64), X_NM: np.zeros(0), Y_NM: np.zeros(0), mass_column: np.zeros(0)}
    )
