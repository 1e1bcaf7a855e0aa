"""Super-resolved images from localizations."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .acquisition import is_real_number
from .columns import X_NM, Y_NM
from .outputs import atomic_write

MAX_RENDER_PIXELS = 20000 * 20000


#: render_histogram warns when more than this share of the localizations falls outside
OUTSIDE_WARN_FRACTION = 0.01


def render_shape(field_nm: tuple[float, float], pixel_nm: float) -> tuple[int, int]:
    """(rows, cols) of a rendering of ``field_nm`` (height, width) at ``pixel_nm``;
    ValueError for a pixel size that is not a positive number or an image too large
    to hold (more than 20,000 x 20,000 pixels)."""
    if isinstance(pixel_nm, np.ndarray) and pixel_nm.ndim == 0:  # a 0-d array is a number (as before)
        pixel_nm = pixel_nm.item()
    if not (is_real_number(pixel_nm) and math.isfinite(pixel_nm) and pixel_nm > 0):
        raise ValueError(f"render pixel size must be a positive number of nm, got {pixel_nm!r}")
    try:
        height, width = (float(v) for v in field_nm)
    except (TypeError, ValueError):
        raise ValueError(f"the rendered field must be (height, width) in nm, e.g. acquisition.field_nm(frame_shape) "
                         f"for frames of frame_shape camera pixels, got {field_nm!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in (height, width)):
        raise ValueError(f"the rendered field must be a positive (height, width) in nm, got {tuple(field_nm)}")
    shape = (int(math.ceil(height / pixel_nm)), int(math.ceil(width / pixel_nm)))
    if shape[0] * shape[1] > MAX_RENDER_PIXELS:
        raise ValueError(f"a {shape[0]} x {shape[1]} render is too large; use a larger pixel size")
    return shape


#: the widest render blur, in render pixels: the blur's time grows with its width (SciPy
#: cannot be interrupted meanwhile: Ctrl-C waits), 15.7 s for a 2,048^2 render blurred by
#: its whole width; 64 pixels is 640 nm at the default 10 nm render pixel
MAX_BLUR_PX = 64.0


def check_render_blur(blur_sigma_nm: float | None, field_nm: tuple[float, float],
                      pixel_nm: float | None = None) -> None:
    """ValueError for a render blur (Gaussian sigma, nm) that is not a finite number
    >= 0, wider than the rendered field (height, width in nm), which smears the whole
    field into a flat image, or (given the render pixel ``pixel_nm``) wider than
    :data:`MAX_BLUR_PX` render pixels: such blurs took minutes (a 1e9 nm blur of one
    frame's render ran out of memory) while Ctrl-C could not stop them. None or 0: no
    blur."""
    if blur_sigma_nm is None:
        return
    if not (math.isfinite(blur_sigma_nm) and blur_sigma_nm >= 0):
        raise ValueError(f"render blur must be a number of nm >= 0, got {blur_sigma_nm}")
    widest = max(field_nm)
    if blur_sigma_nm > widest:
        raise ValueError(f"a render blur of sigma {blur_sigma_nm:g} nm is wider than the rendered field "
                         f"({field_nm[0]:g} x {field_nm[1]:g} nm) and would leave a flat image; use at most "
                         f"{widest:g} nm (10-30 nm shows the structure)")
    if pixel_nm is not None and blur_sigma_nm > MAX_BLUR_PX * pixel_nm:
        raise ValueError(f"a render blur of sigma {blur_sigma_nm:g} nm spans {blur_sigma_nm / pixel_nm:.0f} render "
                         f"pixels of {pixel_nm:g} nm, more than the {MAX_BLUR_PX:g} a blur may (its time grows with "
                         f"its width); use a larger render pixel (at least {blur_sigma_nm / MAX_BLUR_PX:.3g} nm) or "
                         "a smaller blur")


def check_positions_table(table) -> None:
    """TypeError for what is no localization table (a DataFrame with ``x [nm]`` and
    ``y [nm]``): frames or an array given where the localizations go."""
    if not isinstance(table, pd.DataFrame) or not {X_NM, Y_NM} <= set(table.columns):
        what = type(table).__name__ if not isinstance(table, pd.DataFrame) else f"a table of {list(table.columns)}"
        raise TypeError(f"a rendering takes a localization table (a DataFrame with {X_NM!r} and {Y_NM!r} columns, "
                        f"as localize() returns), got {what}")


class Renderer:
    """Accumulates localizations into a histogram image, batch by batch.

    Pixel ``(r, c)`` of the image covers ``x in [c, c+1) * pixel_nm`` and
    ``y in [r, r+1) * pixel_nm``, so the image lines up with the camera frame when
    ``field_nm`` is the frame size in nm.

    Parameters
    ----------
    field_nm
        (height, width) of the imaged field in nm.
    pixel_nm
        Size of a rendered pixel in nm (e.g. the fine-grid pixel, 25 nm, or 10 nm).
    """

    def __init__(self, field_nm: tuple[float, float], pixel_nm: float):
        self.pixel_nm = float(pixel_nm)
        self.field_nm = tuple(float(v) for v in field_nm)
        self.counts = np.zeros(render_shape(field_nm, pixel_nm), dtype=np.float32)
        self.added = self.outside = 0  # localizations given / left out, beyond the field

    def add(self, table: pd.DataFrame, weights: np.ndarray | None = None) -> None:
        """Add the localizations of ``table`` (its ``x [nm]`` and ``y [nm]``), each counting
        1, or its value in ``weights`` (one per row, e.g. the photons), to the image;
        those outside the field are counted in :attr:`outside` and left out."""
        check_positions_table(table)
        if len(table) == 0:
            return
        col = np.floor(table[X_NM].to_numpy() / self.pixel_nm).astype(np.int64)
        row = np.floor(table[Y_NM].to_numpy() / self.pixel_nm).astype(np.int64)
        h, w = self.counts.shape
        ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        self.added += len(ok)
        self.outside += int(len(ok) - ok.sum())
        wts = np.ones(ok.sum(), np.float32) if weights is None else np.asarray(weights, np.float32)[ok]
        np.add.at(self.counts, (row[ok], col[ok]), wts)

    def image(self, blur_sigma_nm: float | None = None) -> np.ndarray:
        """The accumulated histogram, optionally blurred by a Gaussian (sigma in nm, at
        most the field's width: :func:`check_render_blur`)."""
        check_render_blur(blur_sigma_nm, self.field_nm, self.pixel_nm)
        if blur_sigma_nm:
            sigma_px = blur_sigma_nm / self.pixel_nm
            # SciPy's kernel reaches 4 sigma; wider than the image it adds time, not detail
            radius = int(min(4.0 * sigma_px + 0.5, max(self.counts.shape)))
            return ndimage.gaussian_filter(self.counts, sigma_px, radius=radius).astype(np.float32)
        return self.counts.copy()


def render_histogram(
    table: pd.DataFrame,
    field_nm: tuple[float, float],
    pixel_nm: float = 10.0,
    blur_sigma_nm: float | None = None,
) -> np.ndarray:
    """Histogram image of all localizations (counts per pixel), see :class:`Renderer`."""
    check_positions_table(table)
    r = Renderer(field_nm, pixel_nm)
    check_render_blur(blur_sigma_nm, r.field_nm, pixel_nm)
    r.add(table)
    if r.outside > OUTSIDE_WARN_FRACTION * r.added:  # a few just past the edge are normal
        warnings.warn(f"{r.outside} of {r.added} localizations lie outside the rendered field of "
                      f"{r.field_nm[0]:g} x {r.field_nm[1]:g} nm (height x width) and are left out; is the field "
                      "in nm, rows first?", stacklevel=2)
    return r.image(blur_sigma_nm)


#: renders saturate at this percentile of their non-empty pixels (a few dense spots would
#: otherwise leave the rest of the structure dark)
DISPLAY_PERCENTILE = 99.5


def display_max(image: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> float:
    """The value a render is shown saturated at: ``percentile`` of its pixels above 0
    (1.0 for an empty render)."""
    shown = np.asarray(image)[np.asarray(image) > 0]
    return float(np.percentile(shown, percentile)) if shown.size else 1.0


def save_render_png(path, image: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> None:
    """Save a rendering (a 2-D image) as an 8-bit PNG (hot colour map, saturating at a
    percentile) at ``path``, whose name must end in ``.png`` (a TIFF that keeps the
    counts and the pixel size: :func:`~.outputs.write_tiff` with ``output="render"``).
    Uses matplotlib's colour map without pyplot, so the caller's plotting backend is left
    alone, and writes 3 bytes a pixel, row blocks at a time: matplotlib's ``imsave`` made
    an RGBA float64 copy, 2.9 GB and a minute for a 1024 x 1024 camera at 10 nm (a review)."""
    from matplotlib import colormaps
    from PIL import Image

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save_render_png takes the path first, then the image: save_render_png('render.png', "
                        f"image); got {type(path).__name__} as the path")
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"{path}: save_render_png writes a PNG, so the name must end in .png; for a TIFF with the "
                         "counts and the pixel size use write_tiff(path, image, pixel_size_nm=..., output='render')")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"a rendering is a 2-D image (rows, cols), got an array of shape {img.shape}")
    top = max(display_max(img, percentile), 1e-12)
    lut = colormaps["hot"](np.arange(256), bytes=True)[:, :3]  # as matplotlib maps [0, 1] onto 256 colours
    rgb = np.empty((*img.shape, 3), np.uint8)
    for start in range(0, img.shape[0], 1024):
        block = img[start : start + 1024]
        rgb[start : start + 1024] = lut[np.clip(block * (256.0 / top), 0, 255).astype(np.uint8)]
    atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1))
