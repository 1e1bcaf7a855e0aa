"""From fine-grid maps to a table of localizations (shared by DeepCEL0 and CEL0).

A *map* is a non-negative image on the fine grid (``L`` times finer than the camera)
where each molecule shows as a spike or a small compact blob. Two ways to turn maps
into molecules:

``"peaks"`` (default)
    Local maxima in a 3 x 3 neighbourhood above ``threshold``; a plateau of equal
    values gives one maximum (ties are broken in raster order; a plateau curved like
    a U, which maps hardly hold, gives one per arm). Each maximum is refined to
    sub-pixel precision by the centre of mass of its 3 x 3 neighbourhood; its *mass*
    is the sum of that neighbourhood (or, with ``mass_radius_px``, of the map values
    nearest to it within that radius: CEL0's maps spread a molecule wider). Two
    molecules one fine pixel apart merge, two pixels apart stay separate. The centre of mass may be taken on a second map
    (``refine_maps``, e.g. the average over the frame's flips and rotations, see
    :class:`~napari_deepcel0.core.predict.DeepLocalizer`), while detection and mass
    stay those of ``maps``. ``subpixel="parabola"`` instead places each maximum at
    the vertex of a parabola through it and its two neighbours, along the row and
    along the column, of a map that may be negative (DeepCEL0's output before its
    ReLU): 70 % of a DeepCEL0 map's maxima are lone spikes, which the centre of mass
    leaves on the pixel centre, while the output before the ReLU still says where in
    the pixel the molecule is (docs/benchmarks.md, the read-out).
``"components"``
    8-connected components of ``map > threshold``, each one molecule at its
    intensity-weighted centroid; mass = the component sum. Suits very sparse maps
    (CEL0) but merges touching molecules.

Coordinates follow the pixel-centre convention: fine pixel ``(r, c)`` is centred at
``x = (c + 0.5) * fine_pixel_nm``, ``y = (r + 0.5) * fine_pixel_nm``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from .acquisition import Acquisition
from .defaults import READ_METHODS
from .columns import FRAME, X_NM, Y_NM

METHODS = READ_METHODS

# neighbours that a maximum must strictly exceed (before it in raster order) or equal
_BEFORE = ((-1, -1), (-1, 0), (-1, 1), (0, -1))
_AFTER = ((0, 1), (1, -1), (1, 0), (1, 1))


def _as_tensor(maps) -> torch.Tensor:
    t = torch.as_tensor(maps)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"maps must be (rows, cols) or (frames, rows, cols), got shape {tuple(t.shape)}")
    return t.float()


def local_maxima(maps, threshold: float) -> torch.Tensor:
    """Boolean mask of 3 x 3 local maxima strictly above ``threshold``.

    A pixel must exceed its four neighbours that come earlier in raster order and be
    >= the four later ones, so a convex plateau of equal values marks one pixel (a
    U-shaped one, one per arm).
    """
    t = _as_tensor(maps)
    _, h, w = t.shape
    p = F.pad(t[:, None], (1, 1, 1, 1), value=float("-inf"))[:, 0]
    mask = t > threshold
    for dr, dc in _BEFORE:
        mask &= t > p[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
    for dr, dc in _AFTER:
        mask &= t >= p[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
    return mask


#: ways to place a maximum within its fine pixel (:func:`find_peaks`)
SUBPIXEL = ("com", "parabola")


def find_peaks(maps, threshold: float, refine: bool = True, refine_maps=None,
               subpixel: str = "com", mass_radius_px: float | None = None) -> dict[str, np.ndarray]:
    """Local maxima of a batch of maps, with 3 x 3 centre-of-mass refinement.

    Parameters
    ----------
    maps
        Tensor or array (frames, rows, cols) or (rows, cols); negative values are
        treated as 0 for the refinement.
    threshold
        A maximum must exceed this value (map units).
    refine
        Refine positions by the 3 x 3 centre of mass; else use pixel centres.
    refine_maps
        Refine on these maps (same shape as ``maps``) instead of on ``maps``;
        detection, ``peak`` and ``mass`` still come from ``maps``. Ignored when
        ``refine`` is False.
    subpixel
        ``"com"``: the 3 x 3 centre of mass (negative values count as 0);
        ``"parabola"``: the vertex of the parabola through the maximum and its two
        neighbours, along the row and along the column, at most half a pixel away
        (none where the three values do not curve down, or at the map's edge).
    mass_radius_px
        None: a maximum's mass is its 3 x 3 sum (a map whose molecules are spikes,
        DeepCEL0's). Else the sum of the positive map values nearer to it than to any
        other maximum of its frame and at most this many fine pixels away (a map that
        spreads a molecule over more pixels, CEL0's at L = 4, whose 3 x 3 sums held
        67-97 % of a molecule's light).

    Returns
    -------
    dict with ``index`` (position of the frame in the batch), ``row``, ``col``
    (fractional, fine pixels, 0-based), ``peak`` (map value at the maximum) and
    ``mass``.
    """
    if subpixel not in SUBPIXEL:
        raise ValueError(f"subpixel must be one of {SUBPIXEL}, got {subpixel!r}")
    t = _as_tensor(maps)
    b, r, c = _maxima_indices(t, threshold)
    other = None
    if refine and refine_maps is not None:
        other = _as_tensor(refine_maps).to(t.device)
        if other.shape != t.shape:
            raise ValueError(f"refine_maps has shape {tuple(other.shape)}, the maps {tuple(t.shape)}")
    if mass_radius_px is None:
        mass = _window_sums(t, b, r, c, 1)[0]
    else:
        mass = torch.as_tensor(_nearest_peak_masses(t.clamp_min(0).cpu().numpy(),
                                                    *(v.cpu().numpy() for v in (b, r, c)), mass_radius_px))
    row = r.to(t.dtype)
    col = c.to(t.dtype)
    if refine and subpixel == "parabola":
        row, col = _parabola_vertices(t if other is None else other, b, r, c)
    elif refine:
        weight, d_row, d_col = _window_sums(t if other is None else other, b, r, c, 3)
        safe = torch.where(weight > 0, weight, torch.ones_like(weight))
        row = row + torch.where(weight > 0, d_row / safe, torch.zeros_like(weight))
        col = col + torch.where(weight > 0, d_col / safe, torch.zeros_like(weight))
    return {
        "index": b.cpu().numpy().astype(np.int64),
        "row": row.cpu().double().numpy(),
        "col": col.cpu().double().numpy(),
        "peak": t[b, r, c].cpu().double().numpy(),
        "mass": mass.cpu().double().numpy(),
    }


def _neighbour(t: torch.Tensor, b, r, c, dr: int, dc: int, outside: float) -> torch.Tensor:
    """``t[b, r + dr, c + dc]``, ``outside`` where that lies beyond the map."""
    h, w = t.shape[-2:]
    rr, cc = r + dr, c + dc
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    values = t[b, rr.clamp(0, h - 1), cc.clamp(0, w - 1)]
    return torch.where(inside, values, torch.full_like(values, outside))


def _maxima_indices(t: torch.Tensor, threshold: float):
    """``torch.nonzero(local_maxima(t, threshold), as_tuple=True)``, comparing only the
    pixels above ``threshold`` (a few hundred of a 256 x 256 map) with their neighbours:
    the same pixels in the same order, without 17 passes over the whole maps."""
    b, r, c = torch.nonzero(t > threshold, as_tuple=True)
    centre = t[b, r, c]
    keep = torch.ones_like(centre, dtype=torch.bool)
    for dr, dc in _BEFORE:
        keep &= centre > _neighbour(t, b, r, c, dr, dc, -math.inf)
    for dr, dc in _AFTER:
        keep &= centre >= _neighbour(t, b, r, c, dr, dc, -math.inf)
    return b[keep], r[keep], c[keep]


def _window_sums(values: torch.Tensor, b, r, c, channels: int) -> tuple[torch.Tensor, ...]:
    """At the pixels ``(b, r, c)`` of ``values`` clamped at 0: the 3 x 3 sum, and with
    ``channels`` 3 the sums weighted by the row and by the column offset, as the 3 x 3
    convolution of zero-padded maps gave them (same float32 operations, in its order:
    the taps in raster order, each weight times value added to the running sum)."""
    sums = [torch.zeros(len(b), dtype=values.dtype, device=values.device) for _ in range(channels)]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            x = _neighbour(values, b, r, c, dr, dc, 0.0).clamp_min(0)
            for k, weight in enumerate((1.0, float(dr), float(dc))[:channels]):
                sums[k] = sums[k] + weight * x
    return tuple(sums)


def _nearest_peak_masses(maps: np.ndarray, b: np.ndarray, r: np.ndarray, c: np.ndarray,
                         radius_px: float) -> np.ndarray:
    """For the maxima at ``(b, r, c)`` of the non-negative ``maps``: the sum of the map
    values whose nearest maximum of the same frame each one is, within ``radius_px``."""
    masses = np.zeros(len(b))
    for frame in np.unique(b):
        mine = np.flatnonzero(b == frame)
        owner = np.zeros(maps.shape[1:], np.int64)
        owner[r[mine], c[mine]] = np.arange(1, len(mine) + 1)
        distance, (near_r, near_c) = ndimage.distance_transform_edt(owner == 0, return_indices=True)
        owner = np.where(distance <= radius_px, owner[near_r, near_c], 0)
        masses[mine] = ndimage.sum_labels(maps[frame], owner, np.arange(1, len(mine) + 1))
    return masses


def _parabola_vertices(values: torch.Tensor, b, r, c) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional (row, col) of the maxima at ``(b, r, c)``: the vertex of the parabola
    through each maximum and its neighbours along the column (row offset) and along the
    row (column offset) of ``values``, clipped to half a pixel; no offset where the
    three values do not curve down or a neighbour lies outside the map."""
    def v(dr, dc):
        return _neighbour(values, b, r, c, dr, dc, math.nan).to(torch.float64)

    centre = v(0, 0)

    def offset(before, after):
        curvature = before - 2.0 * centre + after
        peaked = curvature < 0  # False for NaN (the edge)
        step = 0.5 * (before - after) / torch.where(peaked, curvature, -torch.ones_like(curvature))
        return torch.where(peaked, step, torch.zeros_like(step)).clamp(-0.5, 0.5)

    dtype = values.dtype
    return (r.to(dtype) + offset(v(-1, 0), v(1, 0)).to(dtype),
            c.to(dtype) + offset(v(0, -1), v(0, 1)).to(dtype))


def find_components(maps, threshold: float) -> dict[str, np.ndarray]:
    """8-connected components of ``maps > threshold`` with weighted centroids.

    Same return keys as :func:`find_peaks`.
    """
    arr = _as_tensor(maps).cpu().numpy()
    structure = np.ones((3, 3), bool)
    out = {k: [] for k in ("index", "row", "col", "peak", "mass")}
    for i, m in enumerate(arr):
        labels, n = ndimage.label(m > threshold, structure=structure)
        if n == 0:
            continue
        ids = np.arange(1, n + 1)
        w = np.clip(m, 0, None)
        mass = ndimage.sum_labels(w, labels, ids)
        rows, cols = np.indices(m.shape)
        safe = np.where(mass > 0, mass, 1.0)
        out["row"].append(ndimage.sum_labels(w * rows, labels, ids) / safe)
        out["col"].append(ndimage.sum_labels(w * cols, labels, ids) / safe)
        out["peak"].append(ndimage.maximum(m, labels, ids))
        out["mass"].append(mass)
        out["index"].append(np.full(n, i))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}


def extract_localizations(
    maps,
    acq: Acquisition,
    threshold: float,
    first_frame: int = 1,
    method: str = "peaks",
    mass_scale=1.0,
    mass_column: str = "confidence",
    frames=None,
    refine_maps=None,
    subpixel: str = "com",
    mass_radius_px: float | None = None,
) -> pd.DataFrame:
    """Localizations of a batch of fine-grid maps as a ThunderSTORM-style table.

    Parameters
    ----------
    maps
        (frames, rows, cols) fine-grid maps (tensor or array).
    acq
        Gives the fine pixel size for the conversion to nm.
    threshold
        Detection threshold in map units.
    first_frame
        1-based frame number of ``maps[0]``; frame ``i`` of the batch is
        ``first_frame + i`` unless ``frames`` gives the numbers explicitly.
    method
        ``"peaks"`` or ``"components"`` (see module docstring).
    mass_scale, mass_column
        The table gets a column ``mass_column`` = mass * ``mass_scale`` (a number or
        one value per frame of the batch); e.g. ``confidence`` = 3 x 3 sum / s for
        DeepCEL0, ``intensity [photon]`` for CEL0.
    refine_maps, subpixel, mass_radius_px
        Maps to refine the positions on, how, and the pixels whose map values make a
        maximum's mass (``"peaks"`` only; see :func:`find_peaks`).

    Returns
    -------
    DataFrame with ``frame`` (1-based), ``x [nm]``, ``y [nm]``, ``mass_column``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (refine_maps is not None or subpixel != "com" or mass_radius_px is not None) and method != "peaks":
        raise ValueError(f"refine_maps, subpixel and mass_radius_px only work with method 'peaks', not {method!r}")
    if method == "peaks":
        found = find_peaks(maps, threshold, refine_maps=refine_maps, subpixel=subpixel, mass_radius_px=mass_radius_px)
    else:
        found = find_components(maps, threshold)
    idx = found["index"].astype(np.int64)
    frame_numbers = (
        np.asarray(frames, dtype=np.int64) if frames is not None else first_frame + np.arange(_n_frames(maps))
    )
    scale = np.broadcast_to(np.asarray(mass_scale, dtype=np.float64), frame_numbers.shape)
    return pd.DataFrame(
        {
            FRAME: frame_numbers[idx] if len(idx) else np.zeros(0, np.int64),
            X_NM: acq.fine_px_to_nm(found["col"]),
            Y_NM: acq.fine_px_to_nm(found["row"]),
            mass_column: found["mass"] * (scale[idx] if len(idx) else 1.0),
        }
    )


def _n_frames(maps) -> int:
    return 1 if len(maps.shape) == 2 else int(maps.shape[0])
