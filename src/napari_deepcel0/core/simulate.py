"""Simulated SMLM data: emitters, structures, camera frames, noise and test scenes.

Emitter tables are pandas DataFrames with the ThunderSTORM column names used
everywhere in this package: ``frame`` (1-based), ``x [nm]`` (along columns),
``y [nm]`` (along rows) and ``intensity [photon]`` (photo-electrons collected from
the emitter). Positions follow the pixel-centre convention of
:mod:`napari_deepcel0.core.acquisition`: the frame covers ``[0, cols * pixel)`` in x.

Everything takes a :class:`numpy.random.Generator` (or a seed) and is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .acquisition import Acquisition
from .columns import FRAME, X_NM, Y_NM
from .columns import INTENSITY as PHOTONS
from .optics import AcquisitionOperator, integrated_gaussian


def as_rng(seed_or_rng) -> np.random.Generator:
    """A numpy Generator from a seed, None or an existing Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
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
    """

    low: float = 2000.0
    high: float = 2000.0
    spread: float = 0.1

    def __post_init__(self):
        if not (0 < self.low <= self.high <= MAX_PHOTONS):
            raise ValueError(f"photon range must satisfy 0 < low <= high <= {MAX_PHOTONS:g} photons per molecule, "
                             f"got [{self.low:g}, {self.high:g}]")
        if not (0 <= self.spread < 1):
            raise ValueError(f"photon spread must be in [0, 1), got {self.spread}")

    def frame_levels(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=n_frames))

    def draw(self, rng: np.random.Generator, frame_level: np.ndarray) -> np.ndarray:
        factor = rng.uniform(1.0 - self.spread, 1.0 + self.spread, size=len(frame_level))
        return frame_level * factor


# -------------------------------------------------------------------- emitters
def uniform_emitters(
    n_frames: int,
    field_nm: tuple[float, float],
    density_per_um2: float,
    photons: PhotonModel = PhotonModel(),
    seed=None,
) -> pd.DataFrame:
    """Emitters uniformly distributed over the field.

    Parameters
    ----------
    n_frames
        Number of frames; frames are numbered from 1.
    field_nm
        (height, width) of the field in nm; x in [0, width), y in [0, height).
    density_per_um2
        Mean number of emitters per square micrometre per frame (each frame holds a
        Poisson number of them).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if density_per_um2 < 0:
        raise ValueError(f"density must be >= 0 per um^2, got {density_per_um2}")
    rng = as_rng(seed)
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
    leaves the field. Returns a list of (K, 2) arrays of (x, y) vertices in nm.
    """
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


def emitters_on_filaments(
    filaments: list[np.ndarray],
    n_frames: int,
    field_nm: tuple[float, float],
    density_per_um2: float,
    tube_width_nm: float = 30.0,
    photons: PhotonModel = PhotonModel(),
    seed=None,
) -> pd.DataFrame:
    """Emitters on the filaments, drawn independently in each frame.

    The number per frame is Poisson with mean ``density * field area``; positions are
    uniform along the total filament length, displaced across the filament uniformly
    within ``tube_width_nm``. Emitters that fall outside the field are dropped (and
    redrawn), so the density holds inside the field.
    """
    rng = as_rng(seed)
    height, width = field_nm
    segments = []
    for f in filaments:
        a, b = f[:-1], f[1:]
        segments.append(np.concatenate([a, b], axis=1))
    seg = np.concatenate(segments, axis=0)
    seg_len = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    prob = seg_len / seg_len.sum()
    mean_count = density_per_um2 * height * width / 1e6
    counts = rng.poisson(mean_count, size=n_frames)
    levels_per_frame = photons.frame_levels(rng, n_frames)
    frames, xs, ys, levels = [], [], [], []
    for frame, count in enumerate(counts, start=1):
        got = 0
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
    exactly over every camera pixel (erf), shape (n_frames, rows, cols), float64."""
    rows, cols = shape
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
    """

    background_photons: tuple[float, float] = (0.0, 0.0)
    quantize: bool = False

    def __post_init__(self):
        lo, hi = self.background_photons
        if not (0 <= lo <= hi <= MAX_PHOTONS):  # (NaN fails too)
            raise ValueError(f"background range must satisfy 0 <= low <= high <= {MAX_PHOTONS:g} photons per pixel, "
                             f"got {self.background_photons}")

    def apply(self, photons: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
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
    :data:`SNR_DB_LIMITS`."""

    snr_db: tuple[float, float] = (15.0, 15.0)

    def __post_init__(self):
        check_snr_range(self.snr_db)

    def apply(self, clean: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
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
    """
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
    Gaussian noise at the given SNR (a number or one value per frame, in dB)."""
    rng = as_rng(seed)
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    camera = (maps.shape[-2] // acq.upsampling, maps.shape[-1] // acq.upsampling)
    if acq.fine_shape(camera) != maps.shape[-2:]:
        raise ValueError(f"fine-grid maps {maps.shape[-2:]} are not a multiple of L={acq.upsampling}")
    op = AcquisitionOperator(acq, camera, dtype=torch.float64)
    clean = op.forward(maps)
    snrs = np.broadcast_to(np.asarray(snr_db_per_frame, dtype=float), (maps.shape[0],))
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
    noise: CameraNoise | GaussianSNRNoise = CameraNoise(background_photons=(8.0, 12.0), quantize=True),
    n_filaments: int = 8,
    tube_width_nm: float = 30.0,
    seed=None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """A complete simulated SMLM acquisition: (frames in ADU, ground-truth emitters).

    ``structure`` is ``"tubes"`` (emitters along microtubule-like filaments, the
    default, close to the ISBI 2013 high-density data) or ``"uniform"``.
    """
    acq = acq or Acquisition()
    if int(n_frames) < 1 or min(shape) < 1:
        raise ValueError(f"need at least one frame of at least 1 x 1 pixels, got {n_frames} frames of {shape}")
    if not (math.isfinite(density_per_um2) and density_per_um2 >= 0):
        raise ValueError(f"density must be a number >= 0 emitters/um^2, got {density_per_um2}")
    rng = as_rng(seed)
    field = acq.field_nm(shape)
    if structure == "tubes":
        filaments = make_filaments(field, n_filaments=n_filaments, seed=rng)
        emitters = emitters_on_filaments(filaments, n_frames, field, density_per_um2, tube_width_nm, photons, rng)
    elif structure == "uniform":
        emitters = uniform_emitters(n_frames, field, density_per_um2, photons, rng)
    else:
        raise ValueError(f"structure must be 'tubes' or 'uniform', got {structure!r}")
    frames = render_frames(emitters, acq, shape, n_frames, noise, rng)
    return frames, emitters
