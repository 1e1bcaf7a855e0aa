"""Simulated SMLM data: emitters, structures, camera frames, noise and test scenes.

Emitter tables are pandas DataFrames with the ThunderSTORM column names used
everywhere in this package: ``frame`` (1-based), ``x [nm]`` (along columns),
``y [nm]`` (along rows) and ``intensity [photon]`` (photo-electrons collected from
the emitter). Positions follow the pixel-centre convention of
:mod:`napari_deepcel0.core.acquisition`: the frame covers ``[0, cols * pixel)`` in x.

Units: fields of view are ``(height, width)`` in nm, frame shapes ``(rows, cols)`` in
camera pixels, densities in emitters per um^2 (square micrometre) per frame, photons
per molecule per frame, and frames come out in ADU (camera counts).

Everything takes a :class:`numpy.random.Generator` (or a seed) and is reproducible.
The public functions check their inputs first and raise a one-line ``ValueError`` (a
number, shape, field or seed out of range or of the wrong form: ``shape=64``,
``n_frames="3"``) or ``TypeError`` (an object of the wrong class where a
:class:`PhotonModel`, a noise model, an :class:`~.acquisition.Acquisition` or a table is
expected) that names the argument, its unit and the expected form. A simulation asked for molecules that
places none because fewer than one was expected (a density per nm^2, or a field in
pixels, by mistake) warns with :class:`NoEmittersWarning`.

Example (the names are in this module and in ``napari_deepcel0.api``)::

    frames, truth = simulate_stack(n_frames=50, shape=(64, 64), density_per_um2=5.5,
                                   photons=PhotonModel(600, 900, 0.15),
                                   noise=CameraNoise(background_photons=(8, 12), quantize=True), seed=1)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .acquisition import Acquisition, is_real_number, is_whole_number
from .columns import FRAME, X_NM, Y_NM
from .columns import INTENSITY as PHOTONS
from .defaults import MAX_DENSITY_PER_UM2
from .optics import AcquisitionOperator, integrated_gaussian


class NoEmittersWarning(UserWarning):
    """A simulation asked for molecules (a density above 0) placed none, and fewer than
    one was expected: most likely a density per nm^2 or a field in pixels by mistake."""


# ------------------------------------------------------------------ checks
def _check_count(value, name: str, unit: str, lowest: int = 1) -> int:
    """``value`` as an int; ValueError unless it is a whole number >= ``lowest``."""
    if not is_whole_number(value) or value < lowest:
        hint = ""
        if is_real_number(value) and math.isfinite(value) and float(value).is_integer() and value >= lowest:
            hint = f" (a {type(value).__name__}; pass {int(value)})"
        raise ValueError(f"{name} must be a whole number of {unit} >= {lowest}, got {value!r}{hint}")
    return int(value)


def _check_shape(shape, name: str = "shape") -> tuple[int, int]:
    """``shape`` as (rows, cols) ints; ValueError unless it is a pair of whole numbers >= 1."""
    try:
        rows, cols = shape
    except (TypeError, ValueError):
        rows = cols = None
    if isinstance(shape, str) or not (is_whole_number(rows) and is_whole_number(cols) and rows >= 1 and cols >= 1):
        hint = f"; for a square frame pass ({shape}, {shape})" if is_whole_number(shape) and shape >= 1 else ""
        raise ValueError(f"{name} must be a (rows, cols) pair of whole numbers >= 1 of camera pixels, "
                         f"got {shape!r}{hint}")
    return int(rows), int(cols)


def _check_field(field_nm, name: str = "field_nm") -> None:
    """ValueError unless ``field_nm`` is a (height, width) pair of positive finite nm."""
    try:
        height, width = field_nm
    except (TypeError, ValueError):
        height = width = None
    if isinstance(field_nm, str) or not all(is_real_number(v) and math.isfinite(v) and v > 0 for v in (height, width)):
        raise ValueError(f"{name} must be a (height, width) pair of positive numbers of nm, got {field_nm!r}")


def _check_density(density, name: str = "density_per_um2"):
    """``density`` (a 0-d array as its number); ValueError unless it is a number from 0
    to :data:`~.defaults.MAX_DENSITY_PER_UM2` emitters per um^2."""
    if isinstance(density, np.ndarray) and density.ndim == 0:
        density = density.item()
    if not (is_real_number(density) and math.isfinite(density) and density >= 0):
        raise ValueError(f"{name} must be a number of emitters per um^2 per frame, from 0 to "
                         f"{MAX_DENSITY_PER_UM2:g}, got {density!r}")
    if density > MAX_DENSITY_PER_UM2:
        raise ValueError(f"{name} must be at most {MAX_DENSITY_PER_UM2:g} emitters per um^2 per frame (one per "
                         f"100 x 100 nm, beyond what any method resolves), got {density:g}")
    return density


def _check_length(value, name: str, positive: bool) -> None:
    """ValueError unless ``value`` is a finite number of nm, > 0 (``positive``) or >= 0."""
    if not (is_real_number(value) and math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be a finite number of nm {'> 0' if positive else '>= 0'}, got {value!r}")


def _check_photons(photons) -> None:
    """TypeError unless ``photons`` is a :class:`PhotonModel`."""
    if isinstance(photons, PhotonModel):
        return
    hint = ""
    if isinstance(photons, (tuple, list)) and len(photons) == 2:
        # not taken as PhotonModel(low, high): which spread? (PhotonModel's 0.1, or
        # simulate_stack's default 0.15, or TrainingDataConfig's separate photon_spread)
        hint = (f"; pass PhotonModel({photons[0]!r}, {photons[1]!r}) (photons per molecule per frame, "
                f"log-uniform in [low, high]), with spread= to set the spread (default 0.1)")
    raise TypeError(f"photons must be a PhotonModel, got {photons!r}{hint}")


def _check_noise(noise, allow_none: bool = True) -> None:
    """TypeError unless ``noise`` is a :class:`CameraNoise`, a :class:`GaussianSNRNoise`
    (or None, when ``allow_none``)."""
    if isinstance(noise, (CameraNoise, GaussianSNRNoise)) or (allow_none and noise is None):
        return
    raise TypeError(f"noise must be CameraNoise(background_photons=(low, high)), GaussianSNRNoise(snr_db=(low, high))"
                    f"{' or None (noise-free)' if allow_none else ''}, got {noise!r}")


def _check_acquisition(acq, allow_none: bool = False) -> None:
    if isinstance(acq, Acquisition) or (allow_none and acq is None):
        return
    raise TypeError(f"acq must be an Acquisition{' or None (ISBI 2013)' if allow_none else ''}, got {acq!r}")


def _check_emitters(emitters) -> None:
    """TypeError/ValueError unless ``emitters`` is a table with frame, x [nm] and y [nm]."""
    if not isinstance(emitters, pd.DataFrame):
        raise TypeError(f"emitters must be a pandas DataFrame with the columns {FRAME!r}, {X_NM!r} and {Y_NM!r}, "
                        f"got a {type(emitters).__name__}")
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in emitters.columns]
    if missing:
        raise ValueError(f"emitters lacks the column(s) {', '.join(map(repr, missing))}: it needs {FRAME!r} "
                         f"(1-based), {X_NM!r} and {Y_NM!r} (nm), got {list(emitters.columns)}")


def expected_emitters(density_per_um2: float, field_nm, n_frames: int) -> float:
    """The mean number of emitters of ``n_frames`` frames of a field of ``field_nm``
    (height, width in nm) at ``density_per_um2``: what a simulation that placed none was
    asked for (:class:`NoEmittersWarning` below one)."""
    height, width = field_nm
    return density_per_um2 * height * width / 1e6 * n_frames


def _warn_if_none_placed(emitters: pd.DataFrame, density_per_um2: float, field_nm, n_frames: int, caller: str,
                         stacklevel: int) -> None:
    """A :class:`NoEmittersWarning` when molecules were asked for, none was placed and
    fewer than one was expected. An empty table from an expected count of one or more
    is chance, and does not warn (the training set's sparse frames, one call each,
    would: 0.1 emitters/um^2 on 64 x 64 pixels leaves 1.7 % of them empty).
    ``stacklevel`` counts from this function (3: the caller of ``caller``)."""
    if len(emitters) or not density_per_um2 > 0:
        return
    height, width = field_nm
    area_um2 = height * width / 1e6
    expected = expected_emitters(density_per_um2, field_nm, n_frames)
    if expected >= 1:
        return
    warnings.warn(
        f"{caller} placed no emitters: {expected:.3g} expected in all ({density_per_um2:g} emitters per um^2 x "
        f"{area_um2:.3g} um^2 x {n_frames} frame(s)); density_per_um2 is per square micrometre "
        f"(1 per um^2 = 1e-6 per nm^2) and the field is in nm (height, width)",
        NoEmittersWarning, stacklevel=stacklevel,
    )


def as_rng(seed_or_rng) -> np.random.Generator:
    """A numpy Generator from a seed, None or an existing Generator.

    Parameters
    ----------
    seed_or_rng
        None (fresh entropy from the OS: not reproducible), a whole number >= 0 (NumPy's
        integers too), a sequence of such numbers (``[run, trial]``, as NumPy takes), a
        :class:`numpy.random.Generator` (returned as it is, so that several calls share
        one stream), or a :class:`numpy.random.SeedSequence` or
        :class:`numpy.random.BitGenerator`.

    Raises
    ------
    ValueError
        For anything else, a negative seed, a float or a bool among them.
    """
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    def whole(v) -> bool:
        return is_whole_number(v) and v >= 0

    sequence = (isinstance(seed_or_rng, (list, tuple)) or (isinstance(seed_or_rng, np.ndarray) and seed_or_rng.ndim == 1)
                ) and len(seed_or_rng) > 0 and all(whole(v) for v in seed_or_rng)
    if not (seed_or_rng is None or isinstance(seed_or_rng, (np.random.SeedSequence, np.random.BitGenerator))
            or whole(seed_or_rng) or sequence):
        raise ValueError(f"seed must be None, a whole number >= 0 (or a sequence of them) or a numpy.random.Generator, "
                         f"got {seed_or_rng!r}")
    return np.random.default_rng(seed_or_rng)


def _emitter_table(frames, x_nm, y_nm, photons) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            FRAME: np.asarray(frames, dtype=np.int64),
            X_NM: np.asarray(x_nm, dtype=np.float64),
            Y_NM: np.asarray(y_nm, dtype=np.float64),
            PHOTONS: np.asarray(photons, dtype=np.float64),
        }
    )
    return table.sort_values([FRAME], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------- photons
#: the most photons a molecule, or the background of a pixel, may give in a simulation:
#: a million times a bright dye, far below NumPy's largest Poisson mean (about 9e18),
#: which failed with "lam value too large", naming no setting
MAX_PHOTONS = 1e12


@dataclass(frozen=True)
class PhotonModel:
    """Per-emitter photon counts: a per-frame level, log-uniform in ``[low, high]``,
    times a per-emitter factor uniform in ``[1 - spread, 1 + spread]``.

    With ``low == high`` every frame has the same mean brightness.

    Parameters
    ----------
    low, high
        Range of the frame's mean brightness, in photons (photo-electrons) collected
        from one molecule in one frame: ``0 < low <= high <=`` :data:`MAX_PHOTONS`.
    spread
        Relative spread of the molecules of one frame around its level, in ``[0, 1)``
        (0.1: each molecule within +-10 % of the level).
    """

    low: float = 2000.0
    high: float = 2000.0
    spread: float = 0.1

    def __post_init__(self):
        for name in ("low", "high", "spread"):
            if not is_real_number(getattr(self, name)):
                raise TypeError(f"PhotonModel.{name} must be a number, got {getattr(self, name)!r}")
        if not (0 < self.low <= self.high <= MAX_PHOTONS):
            raise ValueError(f"photon range must satisfy 0 < low <= high <= {MAX_PHOTONS:g} photons per molecule, "
                             f"got [{self.low:g}, {self.high:g}]")
        if not (0 <= self.spread < 1):
            raise ValueError(f"photon spread must be in [0, 1), got {self.spread}")

    def frame_levels(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        """The mean brightness of each frame, log-uniform in ``[low, high]``.

        Parameters
        ----------
        rng
            The generator to draw from (``n_frames`` uniform numbers).
        n_frames
            How many frames.

        Returns
        -------
        numpy.ndarray
            Shape (n_frames,), float64, photons per molecule.
        """
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=n_frames))

    def draw(self, rng: np.random.Generator, frame_level: np.ndarray) -> np.ndarray:
        """Each molecule's photons: its frame's level times a factor uniform in
        ``[1 - spread, 1 + spread]``.

        Parameters
        ----------
        rng
            The generator to draw from (one uniform number per molecule).
        frame_level
            Shape (n,): the level (photons) of each molecule's frame, e.g.
            ``np.repeat(model.frame_levels(rng, n_frames), counts_per_frame)``.

        Returns
        -------
        numpy.ndarray
            Shape (n,), float64, photons per molecule.
        """
        factor = rng.uniform(1.0 - self.spread, 1.0 + self.spread, size=len(frame_level))
        return frame_level * factor


# -------------------------------------------------------------------- emitters
def uniform_emitters(
    n_frames: int,
    field_nm: tuple[float, float],
    density_per_um2: float,
    photons: PhotonModel = PhotonModel(),
    seed=None,
    *,
    warn_if_none: bool = True,
) -> pd.DataFrame:
    """Emitters uniformly distributed over the field, drawn independently in each frame.

    Parameters
    ----------
    n_frames
        Number of frames, a whole number >= 1; frames are numbered from 1.
    field_nm
        (height, width) of the field in nm (not camera pixels: ``Acquisition.field_nm``
        converts a frame shape); x in [0, width), y in [0, height).
    density_per_um2
        Mean number of emitters per square micrometre (um^2, not nm^2) per frame, from
        0 to :data:`~.defaults.MAX_DENSITY_PER_UM2`; each frame holds a Poisson number of
        them, of mean ``density_per_um2 * height * width / 1e6``.
    photons
        The :class:`PhotonModel` of the emitters' brightness.
    seed
        None, a whole number >= 0 or a :class:`numpy.random.Generator` (see :func:`as_rng`).

    Returns
    -------
    pandas.DataFrame
        One row per emitter, sorted by frame: ``frame`` (1-based int), ``x [nm]``,
        ``y [nm]`` and ``intensity [photon]`` (photons collected from the emitter).

    Warns
    -----
    NoEmittersWarning
        When ``density_per_um2 > 0`` placed none and fewer than one was expected
        (``warn_if_none=False``: not, for callers drawing frame by frame at densities
        where an empty frame is expected, such as a training set's sparse frames).
    """
    n_frames = _check_count(n_frames, "n_frames", "frames")
    _check_field(field_nm)
    density_per_um2 = _check_density(density_per_um2)
    _check_photons(photons)
    rng = as_rng(seed)
    emitters = _uniform_emitters(n_frames, field_nm, density_per_um2, photons, rng)
    if warn_if_none:
        _warn_if_none_placed(emitters, density_per_um2, field_nm, n_frames, "uniform_emitters", stacklevel=3)
    return emitters


def _uniform_emitters(n_frames: int, field_nm, density_per_um2: float, photons: PhotonModel,
                      rng: np.random.Generator) -> pd.DataFrame:
    height, width = field_nm
    mean_count = density_per_um2 * height * width / 1e6
    counts = rng.poisson(mean_count, size=n_frames)
    frames = np.repeat(np.arange(1, n_frames + 1), counts)
    n = int(counts.sum())
    x = rng.uniform(0.0, width, size=n)
    y = rng.uniform(0.0, height, size=n)
    levels = np.repeat(photons.frame_levels(rng, n_frames), counts)
    return _emitter_table(frames, x, y, photons.draw(rng, levels))


def make_filaments(
    field_nm: tuple[float, float],
    n_filaments: int = 8,
    persistence_nm: float = 4000.0,
    step_nm: float = 10.0,
    seed=None,
) -> list[np.ndarray]:
    """Smooth curvilinear filaments (microtubule-like) crossing the field.

    Each filament is a worm-like chain: it starts on the border, heads inwards and
    turns by small random angles (persistence length ``persistence_nm``) until it
    leaves the field.

    Parameters
    ----------
    field_nm
        (height, width) of the field in nm.
    n_filaments
        How many filaments, a whole number >= 0.
    persistence_nm
        Persistence length in nm (> 0): the longer, the straighter (microtubules: mm;
        4000 nm gives visible bends over a few um).
    step_nm
        Distance between consecutive vertices in nm (> 0).
    seed
        None, a whole number >= 0 or a :class:`numpy.random.Generator` (see :func:`as_rng`).

    Returns
    -------
    list of numpy.ndarray
        One (K, 2) float64 array of (x, y) vertices in nm per filament; the last vertex
        may lie up to ``step_nm`` outside the field.
    """
    _check_field(field_nm)
    n_filaments = _check_count(n_filaments, "n_filaments", "filaments", lowest=0)
    _check_length(persistence_nm, "persistence_nm", positive=True)
    _check_length(step_nm, "step_nm", positive=True)
    rng = as_rng(seed)
    height, width = field_nm
    filaments = []
    turn_std = math.sqrt(step_nm / persistence_nm)
    max_steps = int(4 * (height + width) / step_nm)
    for _ in range(n_filaments):
        side = rng.integers(4)
        t = rng.uniform(0.1, 0.9)
        start, angle = {
            0: ((t * width, 0.0), math.pi / 2),
            1: ((t * width, height), -math.pi / 2),
            2: ((0.0, t * height), 0.0),
            3: ((width, t * height), math.pi),
        }[int(side)]
        angle += rng.uniform(-math.pi / 4, math.pi / 4)
        curvature = rng.normal(0.0, 0.3 / persistence_nm)  # a gentle overall bend
        point = np.array(start, dtype=float)
        vertices = [point.copy()]
        for _ in range(max_steps):
            angle += curvature * step_nm + rng.normal(0.0, turn_std)
            point = point + step_nm * np.array([math.cos(angle), math.sin(angle)])
            vertices.append(point.copy())
            if not (-step_nm <= point[0] <= width + step_nm and -step_nm <= point[1] <= height + step_nm):
                break
        filaments.append(np.asarray(vertices))
    return filaments


#: :func:`emitters_on_filaments` gives up after this many positions in a row drawn along
#: the filaments fell outside the field (filaments elsewhere, or in other units, had it
#: draw forever)
_MAX_MISSES = 100_000


def _check_filaments(filaments) -> list[np.ndarray]:
    """The filaments as float arrays; ValueError unless a non-empty list of (K, 2) arrays
    of finite (x, y) vertices in nm."""
    form = "a non-empty list of (K, 2) arrays of finite (x, y) vertices in nm (as make_filaments returns)"
    if isinstance(filaments, np.ndarray) and filaments.ndim == 2:
        raise ValueError(f"filaments must be {form}, got one (K, 2) array: pass [filament]")
    try:
        arrays = [np.asarray(f, dtype=float) for f in filaments]
    except (TypeError, ValueError):
        raise ValueError(f"filaments must be {form}, got {type(filaments).__name__} {filaments!r:.80}") from None
    if not arrays:
        raise ValueError(f"filaments must be {form}, got an empty list")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != 2 or len(a) < 1 or not np.isfinite(a).all():
            raise ValueError(f"filaments must be {form}; filament {i} has shape {a.shape}"
                             f"{'' if np.isfinite(a).all() else ' and non-finite vertices'}")
    return arrays


def emitters_on_filaments(
    filaments: list[np.ndarray],
    n_frames: int,
    field_nm: tuple[float, float],
    density_per_um2: float,
    tube_width_nm: float = 30.0,
    photons: PhotonModel = PhotonModel(),
    seed=None,
    *,
    warn_if_none: bool = True,
) -> pd.DataFrame:
    """Emitters on the filaments, drawn independently in each frame.

    The number per frame is Poisson with mean ``density * field area``; positions are
    uniform along the total filament length, displaced across the filament uniformly
    within ``tube_width_nm``. Emitters that fall outside the field are dropped (and
    redrawn), so the density holds inside the field.

    Parameters
    ----------
    filaments
        A non-empty list of (K, 2) arrays of (x, y) vertices in nm, as
        :func:`make_filaments` returns; some part of them must lie in the field.
    n_frames
        Number of frames, a whole number >= 1; frames are numbered from 1.
    field_nm
        (height, width) of the field in nm; x in [0, width), y in [0, height).
    density_per_um2
        Mean number of emitters per square micrometre (um^2, not nm^2) of the whole
        field per frame, from 0 to :data:`~.defaults.MAX_DENSITY_PER_UM2`.
    tube_width_nm
        Width in nm (>= 0) of the band around each filament over which emitters spread
        uniformly (0: on the line).
    photons
        The :class:`PhotonModel` of the emitters' brightness.
    seed
        None, a whole number >= 0 or a :class:`numpy.random.Generator` (see :func:`as_rng`).

    Returns
    -------
    pandas.DataFrame
        As :func:`uniform_emitters`: ``frame`` (1-based), ``x [nm]``, ``y [nm]``,
        ``intensity [photon]``, sorted by frame.

    Warns
    -----
    NoEmittersWarning
        When ``density_per_um2 > 0`` placed none and fewer than one was expected
        (``warn_if_none=False``: not, for callers drawing frame by frame at densities
        where an empty frame is expected, such as a training set's sparse frames).
    """
    filaments = _check_filaments(filaments)
    n_frames = _check_count(n_frames, "n_frames", "frames")
    _check_field(field_nm)
    density_per_um2 = _check_density(density_per_um2)
    _check_length(tube_width_nm, "tube_width_nm", positive=False)
    _check_photons(photons)
    rng = as_rng(seed)
    emitters = _emitters_on_filaments(filaments, n_frames, field_nm, density_per_um2, tube_width_nm, photons, rng)
    if warn_if_none:
        _warn_if_none_placed(emitters, density_per_um2, field_nm, n_frames, "emitters_on_filaments", stacklevel=3)
    return emitters


def _emitters_on_filaments(filaments: list[np.ndarray], n_frames: int, field_nm, density_per_um2: float,
                           tube_width_nm: float, photons: PhotonModel, rng: np.random.Generator) -> pd.DataFrame:
    height, width = field_nm
    segments = []
    for f in filaments:
        a, b = f[:-1], f[1:]
        segments.append(np.concatenate([a, b], axis=1))
    seg = np.concatenate(segments, axis=0)
    seg_len = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    mean_count = density_per_um2 * height * width / 1e6
    if mean_count > 0 and not seg_len.sum() > 0:
        raise ValueError("the filaments have no length (each needs two distinct vertices) to place emitters on")
    with np.errstate(invalid="ignore", divide="ignore"):  # (no length: no emitter is drawn)
        prob = seg_len / seg_len.sum()
    counts = rng.poisson(mean_count, size=n_frames)
    levels_per_frame = photons.frame_levels(rng, n_frames)
    frames, xs, ys, levels = [], [], [], []
    for frame, count in enumerate(counts, start=1):
        got = 0
        misses = 0
        while got < count:
            k = (count - got) * 2 + 8
            idx = rng.choice(len(seg), size=k, p=prob)
            t = rng.uniform(size=k)
            x0, y0, x1, y1 = seg[idx].T
            dx, dy = x1 - x0, y1 - y0
            norm = np.maximum(np.hypot(dx, dy), 1e-12)
            across = rng.uniform(-0.5, 0.5, size=k) * tube_width_nm
            x = x0 + t * dx - dy / norm * across
            y = y0 + t * dy + dx / norm * across
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            x, y = x[inside][: count - got], y[inside][: count - got]
            xs.append(x)
            ys.append(y)
            frames.append(np.full(len(x), frame))
            levels.append(np.full(len(x), levels_per_frame[frame - 1]))
            got += len(x)
            misses = 0 if len(x) else misses + k
            if misses >= _MAX_MISSES:
                raise ValueError(f"none of {misses:,} positions drawn along the filaments fell inside the field "
                                 f"(height, width) = ({height:g}, {width:g}) nm: the filaments must cross the "
                                 "field, in nm (make_filaments(field_nm) draws such filaments)")
    level = np.concatenate(levels) if levels else np.zeros(0)
    return _emitter_table(
        np.concatenate(frames) if frames else np.zeros(0, int),
        np.concatenate(xs) if xs else np.zeros(0),
        np.concatenate(ys) if ys else np.zeros(0),
        photons.draw(rng, level),
    )


# ---------------------------------------------------------------------- frames
#: the PSF profile values (emitters x (rows + cols)) that :func:`expected_photons` holds at once
_PROFILE_VALUES = 2**21


def expected_photons(
    emitters: pd.DataFrame, acq: Acquisition, shape: tuple[int, int], n_frames: int
) -> np.ndarray:
    """Noise-free photons per camera pixel: each emitter's Gaussian PSF integrated
    exactly over every camera pixel (erf), shape (n_frames, rows, cols), float64.

    Parameters
    ----------
    emitters
        Table with ``frame`` (1-based, within 1..n_frames), ``x [nm]``, ``y [nm]`` and
        optionally ``intensity [photon]`` (photons per emitter; 1 each without it).
    acq
        The :class:`~.acquisition.Acquisition`: its pixel size (nm) and PSF FWHM.
    shape
        (rows, cols) of a frame in camera pixels.
    n_frames
        Number of frames, a whole number >= 1.
    """
    _check_emitters(emitters)
    _check_acquisition(acq)
    rows, cols = _check_shape(shape)
    n_frames = _check_count(n_frames, "n_frames", "frames")
    sigma_px = acq.sigma_px
    out = np.zeros((n_frames, rows, cols))
    if len(emitters) == 0:
        return out
    frame = emitters[FRAME].to_numpy()
    if frame.min() < 1 or frame.max() > n_frames:
        raise ValueError(f"emitter frames must lie in 1..{n_frames}, got {frame.min()}..{frame.max()}")
    x_px = emitters[X_NM].to_numpy() / acq.pixel_size_nm
    y_px = emitters[Y_NM].to_numpy() / acq.pixel_size_nm
    photons = emitters[PHOTONS].to_numpy() if PHOTONS in emitters else np.ones(len(emitters))
    col_edges = np.arange(cols + 1, dtype=float)
    row_edges = np.arange(rows + 1, dtype=float)
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(1, n_frames + 2))
    # emitters in chunks: the (emitters x pixels) profiles of a whole 1024 x 1024 frame at
    # 20 emitters/um^2 took 8.7 GB
    chunk = max(1, _PROFILE_VALUES // (rows + cols))
    for f in range(n_frames):
        in_frame = order[bounds[f] : bounds[f + 1]]
        for start in range(0, len(in_frame), chunk):
            sel = in_frame[start : start + chunk]
            ex = integrated_gaussian(x_px[sel], col_edges, sigma_px)
            ey = integrated_gaussian(y_px[sel], row_edges, sigma_px)
            out[f] += (ey * photons[sel, None]).T @ ex
    return out


#: the SNRs (dB) the Gaussian noise model takes: noise 10^5 times the signal's power to
#: 10^-10 of it (beyond, 10^(SNR/10) overflows or the noise vanishes below float precision)
SNR_DB_LIMITS = (-50.0, 100.0)


def check_snr_range(snr_db) -> None:
    """ValueError unless ``snr_db`` is a (low, high) pair of finite numbers in
    :data:`SNR_DB_LIMITS` with low <= high."""
    lo_limit, hi_limit = SNR_DB_LIMITS
    try:
        lo, hi = (float(v) for v in snr_db)
    except (TypeError, ValueError):
        raise ValueError(f"SNR range must be a pair of numbers (dB), got {snr_db!r}") from None
    if not (lo_limit <= lo <= hi <= hi_limit):
        raise ValueError(f"SNR range must satisfy {lo_limit:g} <= low <= high <= {hi_limit:g} dB, got ({lo:g}, {hi:g})")


def gaussian_noise_std_for_snr(clean: np.ndarray, snr_db: float) -> float:
    """Std of white Gaussian noise giving ``snr_db`` on ``clean`` (paper Eq. 14)."""
    clean = np.asarray(clean, dtype=np.float64)
    power = float(np.sum(clean**2)) / clean.size
    return math.sqrt(power / 10.0 ** (snr_db / 10.0))


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Paper Eq. (14): ``10 log10(||clean||^2 / ||clean - noisy||^2)``."""
    clean = np.asarray(clean, dtype=np.float64)
    err = float(np.sum((clean - np.asarray(noisy, dtype=np.float64)) ** 2))
    return math.inf if err == 0 else 10.0 * math.log10(float(np.sum(clean**2)) / err)


@dataclass(frozen=True)
class CameraNoise:
    """Photon shot noise, background, read noise, gain and offset (EMCCD/sCMOS-like).

    ``background_photons`` is a (low, high) range; each frame draws its own level.
    Output in ADU: ``gain * Poisson(signal + background) + offset + N(0, read_noise)``,
    clipped at 0 (and rounded when ``quantize``).

    Parameters
    ----------
    background_photons
        (low, high) range of the background in photons per camera pixel per frame,
        ``0 <= low <= high <=`` :data:`MAX_PHOTONS`; each frame draws a level uniformly in it.
    quantize
        Round the ADU to whole counts, as a camera does.
    """

    background_photons: tuple[float, float] = (0.0, 0.0)
    quantize: bool = False

    def __post_init__(self):
        try:
            lo, hi = self.background_photons
        except (TypeError, ValueError):
            raise ValueError(f"background_photons must be a (low, high) pair of photons per pixel, "
                             f"got {self.background_photons!r}") from None
        if not (is_real_number(lo) and is_real_number(hi) and 0 <= lo <= hi <= MAX_PHOTONS):  # (NaN fails too)
            raise ValueError(f"background range must satisfy 0 <= low <= high <= {MAX_PHOTONS:g} photons per pixel, "
                             f"got {self.background_photons}")

    def apply(self, photons: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
        """Noisy frames in ADU from noise-free ones in photons.

        Parameters
        ----------
        photons
            Shape (n_frames, rows, cols): expected photons per camera pixel (e.g.
            :func:`expected_photons`), without background.
        acq
            Its ``gain_adu_per_photon``, ``offset_adu`` and ``read_noise_adu`` are used.
        rng
            The generator to draw the background levels and the noise from.

        Returns
        -------
        numpy.ndarray
            Same shape, float64, in ADU, >= 0.
        """
        lo, hi = self.background_photons
        n_frames = photons.shape[0]
        bg = rng.uniform(lo, hi, size=(n_frames, 1, 1))
        counts = rng.poisson(photons + bg).astype(np.float64)
        adu = acq.gain_adu_per_photon * counts + acq.offset_adu
        if acq.read_noise_adu > 0:
            adu += rng.normal(0.0, acq.read_noise_adu, size=adu.shape)
        adu = np.clip(adu, 0.0, None)
        return np.round(adu) if self.quantize else adu


@dataclass(frozen=True)
class GaussianSNRNoise:
    """Additive white Gaussian noise at a target SNR per frame (paper Eq. 14), no
    offset or background. Each frame draws its SNR uniformly in ``snr_db``, within
    :data:`SNR_DB_LIMITS`.

    Parameters
    ----------
    snr_db
        (low, high) range of the SNR in dB, ``SNR_DB_LIMITS[0] <= low <= high <= SNR_DB_LIMITS[1]``.
    """

    snr_db: tuple[float, float] = (15.0, 15.0)

    def __post_init__(self):
        check_snr_range(self.snr_db)

    def apply(self, clean: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
        """Noisy frames from noise-free ones, each at an SNR drawn in ``snr_db``.

        Parameters
        ----------
        clean
            Shape (n_frames, rows, cols): the noise-free frames, in any unit (those of
            :func:`render_frames` are in ADU: photons times the gain, without offset).
        acq
            Unused (the same signature as :meth:`CameraNoise.apply`).
        rng
            The generator to draw the SNRs and the noise from.

        Returns
        -------
        numpy.ndarray
            Same shape and unit, float64 (values may be negative).
        """
        lo, hi = self.snr_db
        out = np.empty_like(clean, dtype=np.float64)
        for f in range(clean.shape[0]):
            std = gaussian_noise_std_for_snr(clean[f], rng.uniform(lo, hi))
            out[f] = clean[f] + rng.normal(0.0, std, size=clean[f].shape)
        return out


def render_frames(
    emitters: pd.DataFrame,
    acq: Acquisition,
    shape: tuple[int, int],
    n_frames: int,
    noise: CameraNoise | GaussianSNRNoise | None = CameraNoise(),
    seed=None,
) -> np.ndarray:
    """Camera frames of the emitters, shape (n_frames, rows, cols), float32.

    With ``noise=None`` the noise-free expected signal in photons is returned
    (scaled by the gain, without offset).

    Parameters
    ----------
    emitters
        Table with ``frame`` (1-based, within 1..n_frames), ``x [nm]``, ``y [nm]`` and
        ``intensity [photon]`` (photons per emitter; 1 each without it).
    acq
        The :class:`~.acquisition.Acquisition`: pixel size (nm), PSF FWHM (nm), and the
        camera's gain, offset and read noise (ADU).
    shape
        (rows, cols) of a frame in camera pixels.
    n_frames
        Number of frames, a whole number >= 1.
    noise
        :class:`CameraNoise` (the default: shot noise, no background, offset and read
        noise of ``acq``), :class:`GaussianSNRNoise` (white noise at an SNR on
        ``gain * photons``, no offset), or None (noise-free ``gain * photons``).
    seed
        None, a whole number >= 0 or a :class:`numpy.random.Generator` (see :func:`as_rng`).

    Returns
    -------
    numpy.ndarray
        Shape (n_frames, rows, cols), float32, in ADU.
    """
    _check_emitters(emitters)
    _check_acquisition(acq)
    shape = _check_shape(shape)
    n_frames = _check_count(n_frames, "n_frames", "frames")
    _check_noise(noise)
    rng = as_rng(seed)
    clean = expected_photons(emitters, acq, shape, n_frames)
    if noise is None:
        return (clean * acq.gain_adu_per_photon).astype(np.float32)
    if isinstance(noise, GaussianSNRNoise):
        clean = clean * acq.gain_adu_per_photon
    return noise.apply(clean, acq, rng).astype(np.float32)


def fine_grid_positions(emitters: pd.DataFrame, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) fine-grid pixel indices holding each emitter (may be out of range)."""
    return acq.fine_px_index(emitters[Y_NM].to_numpy()), acq.fine_px_index(emitters[X_NM].to_numpy())


def fine_grid_maps(
    emitters: pd.DataFrame,
    acq: Acquisition,
    fine_shape: tuple[int, int],
    n_frames: int,
    weights: str | None = None,
) -> np.ndarray:
    """Ground-truth maps on the fine grid, shape (n_frames, N_rows, N_cols), float32.

    Each emitter adds 1 (or its ``weights`` column, e.g. ``intensity [photon]``) to
    the fine pixel that contains it; emitters outside the grid are ignored.
    ``fine_shape`` is in fine pixels (``acq.fine_shape(camera_shape)``: the camera
    shape times L), and emitters outside frames 1..n_frames are ignored too.
    """
    out = np.zeros((n_frames,) + tuple(fine_shape), dtype=np.float32)
    if len(emitters) == 0:
        return out
    row, col = fine_grid_positions(emitters, acq)
    frame = emitters[FRAME].to_numpy() - 1
    w = emitters[weights].to_numpy() if weights else np.ones(len(emitters))
    ok = (row >= 0) & (row < fine_shape[0]) & (col >= 0) & (col < fine_shape[1]) & (frame >= 0) & (frame < n_frames)
    np.add.at(out, (frame[ok], row[ok], col[ok]), w[ok])
    return out


def forward_model_frames(
    maps: np.ndarray, acq: Acquisition, snr_db_per_frame, seed=None
) -> np.ndarray:
    """Frames ``Y = S_L K X + eta`` from fine-grid maps (paper Eq. 2), with white
    Gaussian noise at the given SNR (a number or one value per frame, in dB).

    Parameters
    ----------
    maps
        Fine-grid maps X, shape (N_rows, N_cols) or (n_frames, N_rows, N_cols), in
        photons per fine pixel (e.g. :func:`fine_grid_maps`); N_rows and N_cols must be
        multiples of ``acq.upsampling``.
    acq
        The :class:`~.acquisition.Acquisition`: its PSF (K) and upsampling L (S_L).
    snr_db_per_frame
        The SNR in dB (paper Eq. 14): one number for all frames, or one per frame;
        ``numpy.inf`` for a noise-free frame.
    seed
        None, a whole number >= 0 or a :class:`numpy.random.Generator` (see :func:`as_rng`).

    Returns
    -------
    numpy.ndarray
        Shape (n_frames, N_rows / L, N_cols / L), float32, camera pixels, in the unit of
        ``maps`` (a 2-D map gives one frame).
    """
    _check_acquisition(acq)
    rng = as_rng(seed)
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"maps must be one fine-grid map (N_rows, N_cols) or a stack (n_frames, N_rows, N_cols), "
                         f"got shape {maps.shape}")
    camera = (maps.shape[-2] // acq.upsampling, maps.shape[-1] // acq.upsampling)
    if acq.fine_shape(camera) != maps.shape[-2:]:
        raise ValueError(f"fine-grid maps {maps.shape[-2:]} are not a multiple of L={acq.upsampling}")
    try:
        snrs = np.broadcast_to(np.asarray(snr_db_per_frame, dtype=float), (maps.shape[0],))
    except (TypeError, ValueError):
        raise ValueError(f"snr_db_per_frame must be one SNR in dB or one per frame ({maps.shape[0]}), "
                         f"got {snr_db_per_frame!r}") from None
    if np.isnan(snrs).any() or (snrs == -np.inf).any():
        raise ValueError(f"snr_db_per_frame must be SNRs in dB (numbers, or inf for no noise), "
                         f"got {snr_db_per_frame!r}")
    op = AcquisitionOperator(acq, camera, dtype=torch.float64)
    clean = op.forward(maps)
    out = np.empty_like(clean)
    for f in range(clean.shape[0]):
        if np.isinf(snrs[f]):
            out[f] = clean[f]
        else:
            out[f] = clean[f] + rng.normal(0.0, gaussian_noise_std_for_snr(clean[f], snrs[f]), clean[f].shape)
    return out.astype(np.float32)


# ------------------------------------------------------------ paper test scenes
PAPER_SCENES = ("1a", "2a", "3a")


def paper_test_scene(name: str) -> pd.DataFrame:
    """Emitters of the paper's synthetic Tests 1a-3a (Sec. 4.2), one frame.

    A 512 x 512 fine grid of 25 nm pixels (128 x 128 camera pixels at 100 nm, L = 4).
    Emitters sit at fine-pixel centres, 0-based indices:

    - ``1a``: two molecules on column 256, rows 256 and 257 (25 nm apart);
    - ``2a``: two molecules on column 256, rows 255 and 258 (75 nm apart);
    - ``3a``: four molecules on a circle of radius 125 nm (5 fine pixels) around
      (256, 256): two on column 256 (rows 251, 261) and two on row 256 (cols 251, 261).
    """
    cells = {
        "1a": [(256, 256), (257, 256)],
        "2a": [(255, 256), (258, 256)],
        "3a": [(251, 256), (261, 256), (256, 251), (256, 261)],
    }
    if name not in cells:
        raise ValueError(f"unknown paper scene {name!r}; choose one of {PAPER_SCENES}")
    rows, cols = np.array(cells[name]).T
    scale = 25.0  # the paper defines the scenes on its 25 nm grid
    return _emitter_table(
        np.ones(len(rows)), (cols + 0.5) * scale, (rows + 0.5) * scale, np.full(len(rows), 1.0)
    )


#: peak memory of :func:`simulate_stack` per camera pixel of the stack (float64 expected
#: photons, the noise, float32 frames) and per emitter (its table row), in bytes, beside
#: the PSF profiles of one chunk of emitters; measured with tracemalloc, rounded up
SIMULATION_BYTES_PER_PIXEL = 36
SIMULATION_BYTES_PER_EMITTER = 200


def simulation_bytes(n_frames: int, shape: tuple[int, int], density_per_um2: float, acq: Acquisition) -> float:
    """About how many bytes :func:`simulate_stack` holds at its peak for these sizes (to
    refuse a stack that cannot fit before minutes of work)."""
    rows, cols = shape
    area_um2 = rows * cols * (acq.pixel_size_nm / 1000.0) ** 2
    emitters = density_per_um2 * area_um2 * n_frames
    profiles = 6 * 8 * _PROFILE_VALUES  # a chunk's float64 profiles and the erf's temporaries
    return (float(n_frames) * rows * cols * SIMULATION_BYTES_PER_PIXEL + emitters * SIMULATION_BYTES_PER_EMITTER
            + profiles)


def simulate_stack(
    n_frames: int = 100,
    shape: tuple[int, int] = (64, 64),
    density_per_um2: float = 6.0,
    structure: str = "tubes",
    acq: Acquisition | None = None,
    photons: PhotonModel = PhotonModel(600.0, 900.0, 0.15),
    noise: CameraNoise | GaussianSNRNoise | None = CameraNoise(background_photons=(8.0, 12.0), quantize=True),
    n_filaments: int = 8,
    tube_width_nm: float = 30.0,
    seed=None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """A complete simulated SMLM acquisition: (frames in ADU, ground-truth emitters).

    ``structure`` is ``"tubes"`` (emitters along microtubule-like filaments, the
    default, close to the ISBI 2013 high-density data) or ``"uniform"``.

    Parameters
    ----------
    n_frames
        Number of frames, a whole number >= 1 (NumPy integers too; not 2.0).
    shape
        (rows, cols) of a frame in camera pixels, whole numbers >= 1; the field of view
        is ``rows * pixel_size_nm`` by ``cols * pixel_size_nm`` nm.
    density_per_um2
        Mean number of emitters per square micrometre (um^2, not nm^2 or pixel) per
        frame, from 0 (background only) to :data:`~.defaults.MAX_DENSITY_PER_UM2`; each
        frame holds a Poisson number of them (ISBI 2013 high density: about 5.5).
    structure
        ``"tubes"``: emitters along ``n_filaments`` filaments of :func:`make_filaments`,
        one structure for the whole stack, its emitters redrawn in each frame;
        ``"uniform"``: emitters anywhere in the field.
    acq
        The :class:`~.acquisition.Acquisition` simulated (pixel size, PSF, upsampling,
        camera gain, offset and read noise); None: ISBI 2013's (``acquisition.ISBI2013``:
        100 nm pixels, FWHM 258.21 nm, L = 4, offset 100 ADU, gain 1, read noise 1 ADU).
    photons
        The :class:`PhotonModel` of the molecules' brightness in photons per molecule
        per frame (default: frame levels log-uniform in [600, 900], +-15 % per molecule).
        Not a (low, high) tuple: pass ``PhotonModel(low, high)``.
    noise
        :class:`CameraNoise` (default: background 8-12 photons per pixel, shot noise,
        ``acq``'s read noise, gain and offset, rounded to whole ADU),
        :class:`GaussianSNRNoise` (white noise at an SNR in dB on ``gain * photons``,
        no offset or background), or None (noise-free ``gain * photons``).
    n_filaments
        Filaments of a ``"tubes"`` structure, a whole number >= 1.
    tube_width_nm
        Width in nm (>= 0) of the band around each filament that its emitters spread
        over (``"tubes"`` only).
    seed
        None (not reproducible), a whole number >= 0, or a
        :class:`numpy.random.Generator` to draw from; the same seed and settings give the
        same stack.

    Returns
    -------
    frames : numpy.ndarray
        Shape (n_frames, rows, cols), float32, in ADU (camera counts; >= 0 and whole
        numbers with the default noise).
    emitters : pandas.DataFrame
        The ground truth, one row per emitter, sorted by frame: ``frame`` (1-based int),
        ``x [nm]`` (along columns), ``y [nm]`` (along rows), in the pixel-centre
        convention (the frame covers ``[0, cols * pixel_size_nm)`` in x), and
        ``intensity [photon]`` (photons collected from the emitter in that frame).

    Raises
    ------
    ValueError
        For a value out of range (a count, a shape, a density above the cap, a seed).
    TypeError
        For an ``acq``, ``photons`` or ``noise`` of the wrong kind.

    Warns
    -----
    NoEmittersWarning
        When ``density_per_um2 > 0`` placed no emitter and fewer than one was expected
        (a density per nm^2 by mistake, say).
    """
    n_frames = _check_count(n_frames, "n_frames", "frames")
    shape = _check_shape(shape)
    density_per_um2 = _check_density(density_per_um2)
    if structure not in ("tubes", "uniform"):
        raise ValueError(f"structure must be 'tubes' or 'uniform', got {structure!r}")
    _check_acquisition(acq, allow_none=True)
    _check_photons(photons)
    _check_noise(noise)
    if structure == "tubes":
        n_filaments = _check_count(n_filaments, "n_filaments", "filaments")
        _check_length(tube_width_nm, "tube_width_nm", positive=False)
    acq = Acquisition() if acq is None else acq
    rng = as_rng(seed)
    field = acq.field_nm(shape)
    if structure == "tubes":
        filaments = make_filaments(field, n_filaments=n_filaments, seed=rng)
        emitters = _emitters_on_filaments(filaments, n_frames, field, density_per_um2, tube_width_nm, photons, rng)
    else:
        emitters = _uniform_emitters(n_frames, field, density_per_um2, photons, rng)
    _warn_if_none_placed(emitters, density_per_um2, field, n_frames, "simulate_stack", stacklevel=3)
    frames = render_frames(emitters, acq, shape, n_frames, noise, rng)
    return frames, emitters
