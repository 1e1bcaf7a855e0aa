"""Simulated training sets for DeepCEL0 / Deep-STORM (paper Sec. 3.3).

Frames of ``frame_size`` camera pixels are simulated with uniformly placed emitters,
then ``n_patches`` patches of ``patch_size`` camera pixels holding at least
``min_emitters`` emitters are cut from them. Each input patch is scaled to [0, 1] by its
own min/max and then standardised with the mean/std over all training patches (the
two numbers are stored with the model and reused at inference). Targets are spikes on
the fine grid (one count per emitter, in the fine pixel holding it), multiplied by the
target scale ``s``; training blurs them by ``g`` (the loss compares the blurred
prediction with the blurred target).

Differences from the paper's single setting, all configurable: frames are drawn with
a range of brightness, background and PSF width (robustness to real data), a fraction
of frames uses the paper's Gaussian-noise-at-SNR model, more frames are simulated
(200 instead of 20) so that 10,000 patches overlap less, and ``structure_fraction`` of
the frames place their emitters along random filaments (worm-like chains, tubes of
random width) instead of uniformly: labelled structures such as microtubules crowd
molecules along lines far beyond the field-average density, and a network trained on
uniform emitters alone merges them (see docs/training.md). ``sparse_fraction`` of the
patches come from extra frames at a low density (``sparse_density``), with no minimum
number of emitters: a network that has only seen crowded patches reports noise as
molecules on sparse frames. ``TrainingDataConfig.paper()`` gives the paper's setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .acquisition import Acquisition, is_real_number, is_whole_number
from .cancel import Cancelled, is_cancelled
from .defaults import MAX_DENSITY_PER_UM2
from .simulate import (
    FRAME,
    X_NM,
    Y_NM,
    CameraNoise,
    GaussianSNRNoise,
    PhotonModel,
    as_rng,
    check_snr_range,
    emitters_on_filaments,
    fine_grid_maps,
    make_filaments,
    render_frames,
    uniform_emitters,
)


#: Deep-STORM's target scale (Nehme et al. 2018's code: spikes of 100 before the blur)
DEEPSTORM_TARGET_SCALE = 100.0


def default_target_scale(upsampling: int, max_emitters: int = 7) -> float:
    """The reference notebook's automatic target scale ``s`` (85.1 at L = 4).

    ``s = 100 / sqrt(min(n, 7) * 64 / (L^2 * 20.28))``; each emitter's spike in the
    target (and ideally in the prediction) has value ``s``.
    """
    return 100.0 / math.sqrt(min(max(max_emitters, 1), 7) * 64.0 / (upsampling**2 * 20.28))


#: the fields of :class:`TrainingDataConfig` that take a (low, high) range, one value drawn per frame
RANGE_FIELDS = ("photons", "background_photons", "snr_db", "structure_density", "tube_width_nm", "sparse_density")
#: its fields that take one number (the whole numbers are checked on their own)
_NUMBER_FIELDS = ("n_frames", "frame_size", "density_per_um2", "n_patches", "patch_size", "min_emitters",
                  "photon_spread", "fwhm_jitter", "snr_fraction", "structure_fraction", "sparse_fraction")


def type_phrase(obj) -> str:
    """``"a TrainingConfig"``, ``"an int"`` or ``"None"``: what a TypeError says it got."""
    if obj is None:
        return "None"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _check_number(name: str, value) -> None:
    """ValueError unless ``value`` is one number (a range given to a one-number field failed
    with a TypeError from a comparison)."""
    if not is_real_number(value):
        raise ValueError(f"{name} takes one number, got {value!r}")


def _range_pair(name: str, value) -> tuple[float, float]:
    """``value`` as a (low, high) pair of floats, or a ValueError naming the field and the
    form it takes; the limits of each range are checked by the caller."""
    if is_real_number(value):
        text = repr(value.item() if hasattr(value, "item") else value)  # 3.0, not np.float64(3.0)
        raise ValueError(f"{name} takes a (low, high) range, got the single number {text}: "
                         f"{name}=({text}, {text}) for a fixed value")
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_real_number(v) for v in pair):
        raise ValueError(f"{name} takes a (low, high) range of two numbers (low == high for a fixed value), "
                         f"got {value!r}")
    return float(pair[0]), float(pair[1])


@dataclass(frozen=True)
class TrainingDataConfig:
    """How to simulate a training set. Camera settings come from the Acquisition.

    The camera (pixel size, PSF FWHM, L, gain, offset, read noise) is the
    :class:`~.acquisition.Acquisition` given to :func:`make_training_set` (or
    :func:`~.training.train`); this config says what the simulated frames hold. Each
    range is a ``(low, high)`` pair, one value drawn per frame; a fixed value is
    ``(v, v)``, e.g. ``photons=(2000, 2000)``. :meth:`paper` is the paper's setting,
    :meth:`bundled` the bundled model's.

    Attributes
    ----------
    n_frames : int
        Simulated frames the patches are cut from (the sparse patches come from frames
        of their own, see ``sparse_fraction``). More frames make the patches overlap
        less: 200 frames for 10,000 patches (the paper: 20).
    frame_size : int
        Side of each simulated square frame, in camera pixels (64: 6.4 um at 100 nm
        pixels).
    density_per_um2 : float
        Emitters per um^2 of the uniform frames (mean of a Poisson count per frame,
        positions uniform); the filament frames use ``structure_density`` and the sparse
        frames ``sparse_density``. At most 100.
    n_patches : int
        Patches in the training set, validation included (``TrainingConfig.val_fraction``
        of them are held out), sparse patches included.
    patch_size : int
        Side of each square patch, in camera pixels, 4 to ``frame_size`` (the network
        sees ``patch_size * L`` fine pixels).
    min_emitters : int
        Every patch cut from the ``n_frames`` frames holds at least this many emitters
        (those whose position lies in the patch; the sparse patches have no minimum).
        It also sets the automatic target scale: :func:`default_target_scale` of
        ``min(min_emitters, 7)`` (the paper: 7).
    photons : (float, float)
        Photons per molecule per frame: the photo-electrons each emitter gives in a
        frame, over its whole PSF. Each frame draws a level log-uniformly in
        ``[low, high]``; each emitter gets that level times a factor of ``photon_spread``.
        In the Gaussian-noise frames (``snr_fraction``) only the emitters' relative
        brightness matters. ``0 < low <= high``.
    photon_spread : float
        Spread of the per-emitter factor, a fraction: uniform in
        ``[1 - photon_spread, 1 + photon_spread]`` (0.2: +-20 %), in [0, 1).
    background_photons : (float, float)
        Background photons per camera pixel per frame of the camera-noise frames: each
        frame draws one level uniformly in ``[low, high]``, added to every pixel before
        the Poisson noise; then the Acquisition's gain, offset and read noise make ADU.
        ``0 <= low <= high``.
    fwhm_jitter : float
        Relative jitter of the PSF width, a fraction (not nm): each frame is rendered
        with a FWHM of ``acq.fwhm_nm`` times a factor uniform in
        ``[1 - fwhm_jitter, 1 + fwhm_jitter]`` (0.05: +-5 %), in [0, 0.5).
    snr_fraction : float
        Fraction of the frames (each frame independently, the sparse ones too) rendered
        with white Gaussian noise at an SNR (``snr_db``; no background, offset or
        Poisson noise: the paper's model) instead of the camera model; in [0, 1].
    snr_db : (float, float)
        SNR of those frames in dB, the paper's Eq. 14 ``10 log10(||clean||^2 /
        ||noise||^2)`` over the frame; each frame draws its SNR uniformly; within
        -50 to 100 dB.
    structure_fraction : float
        Fraction of the ``n_frames`` frames (each independently) whose emitters lie along
        random filaments (3-12 worm-like chains per frame, persistence length 1-6 um)
        instead of uniformly; in [0, 1].
    structure_density : (float, float)
        Emitters per um^2 of the whole frame in the filament frames (a Poisson count of
        mean density times the frame's area, so that along a filament the local density
        is many times higher); each frame draws its density uniformly. ``0 < low``, at
        most 100.
    tube_width_nm : (float, float)
        Full width in nm of the tube around each filament within which its emitters are
        spread uniformly across it; each filament frame draws one width uniformly
        (0: on the line). ``0 <= low <= high``.
    sparse_fraction : float
        Fraction of the ``n_patches`` cut from extra sparse frames
        (``max(1, round(n_frames * sparse_fraction))`` of them, uniform emitters) with no
        minimum of emitters, empty patches included; in [0, 1); 0 (the default)
        simulates none.
    sparse_density : (float, float)
        Emitters per um^2 of the sparse frames; each draws its density log-uniformly.
        ``0 < low``, at most 100.
    target_scale : float or None
        ``s``, the value of each emitter's spike in the training target before the blur:
        what the network learns to output per molecule (no unit). None (default):
        automatic, :func:`default_target_scale` for DeepCEL0 (85.1 at L = 4 with
        ``min_emitters >= 7``), 100 for Deep-STORM, the base model's for a fine-tune.
    seed : int
        Seed of the simulation: emitters, noise and which patches are cut
        (``TrainingConfig.seed`` seeds the weights, the validation split and the batch
        order; ``deepcel0 train --seed`` sets both).
    """

    n_frames: int = 200
    frame_size: int = 64
    density_per_um2: float = 6.0
    n_patches: int = 10000
    patch_size: int = 26
    min_emitters: int = 7
    photons: tuple[float, float] = (400.0, 5000.0)
    photon_spread: float = 0.2
    background_photons: tuple[float, float] = (0.0, 40.0)
    fwhm_jitter: float = 0.05
    snr_fraction: float = 0.3
    snr_db: tuple[float, float] = (8.0, 20.0)
    structure_fraction: float = 0.5
    structure_density: tuple[float, float] = (2.0, 8.0)
    tube_width_nm: tuple[float, float] = (0.0, 60.0)
    sparse_fraction: float = 0.0
    sparse_density: tuple[float, float] = (0.1, 2.0)
    target_scale: float | None = None
    seed: int = 0

    def __post_init__(self):
        for name in _NUMBER_FIELDS:  # before any comparison, which failed with a TypeError
            _check_number(name, getattr(self, name))
        for name in RANGE_FIELDS:  # photons=2000 failed with "cannot unpack non-iterable int object"
            object.__setattr__(self, name, _range_pair(name, getattr(self, name)))
        if self.n_frames < 1 or self.n_patches < 2:
            raise ValueError("need at least 1 frame and 2 patches")
        if self.patch_size < 4 or self.patch_size > self.frame_size:
            raise ValueError(f"patch size must be in [4, frame size {self.frame_size}], got {self.patch_size}")
        if not (0 <= self.snr_fraction <= 1):
            raise ValueError(f"snr_fraction must be in [0, 1], got {self.snr_fraction}")
        if not (0 <= self.structure_fraction <= 1):
            raise ValueError(f"structure_fraction must be in [0, 1], got {self.structure_fraction}")
        if not (0 <= self.sparse_fraction < 1):
            raise ValueError(f"sparse_fraction must be in [0, 1), got {self.sparse_fraction}")
        for name, lowest, strict in (("photons", 0.0, True), ("background_photons", 0.0, False),
                                     ("structure_density", 0.0, True), ("tube_width_nm", 0.0, False),
                                     ("sparse_density", 0.0, True)):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high
                    and (low > lowest if strict else low >= lowest)):
                bound = f"{lowest:g} {'<' if strict else '<='} "
                raise ValueError(f"{name.replace('_', ' ')} range must satisfy {bound}low <= high (finite), "
                                 f"got {tuple(getattr(self, name))}")
        check_snr_range(self.snr_db)  # the noise model's limits, checked before any simulation
        PhotonModel(*self.photons, self.photon_spread)  # (their highest photon counts too)
        CameraNoise(tuple(self.background_photons))
        for name in ("density_per_um2", "structure_density", "sparse_density"):
            if np.max(getattr(self, name)) > MAX_DENSITY_PER_UM2:
                raise ValueError(f"{name.replace('_', ' ').replace(' per um2', '')} must be at most "
                                 f"{MAX_DENSITY_PER_UM2:g} emitters per um^2 (one per 100 x 100 nm), got "
                                 f"{getattr(self, name)}")
        if not (0 <= self.fwhm_jitter < 0.5):
            raise ValueError(f"fwhm_jitter must be in [0, 0.5), got {self.fwhm_jitter}")
        if not (self.density_per_um2 > 0 and math.isfinite(self.density_per_um2)):
            raise ValueError(f"density must be a positive finite number, got {self.density_per_um2}")
        for name in ("n_frames", "n_patches", "frame_size", "patch_size", "min_emitters"):
            if not is_whole_number(getattr(self, name)):
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number, got {getattr(self, name)!r}")
        if self.min_emitters < 0:
            raise ValueError(f"min_emitters must be >= 0, got {self.min_emitters}")
        if self.target_scale is not None and not (is_real_number(self.target_scale) and self.target_scale > 0
                                                  and math.isfinite(self.target_scale)):
            raise ValueError(f"target_scale must be a positive finite number or None (automatic), "
                             f"got {self.target_scale!r}")

    @classmethod
    def paper(cls, **overrides) -> "TrainingDataConfig":
        """The paper's Sec. 3.3 setting: 20 frames, fixed PSF, Gaussian noise at ~15 dB."""
        base = dict(
            n_frames=20,
            photons=(2250.0, 2250.0),
            photon_spread=0.11,
            background_photons=(0.0, 0.0),
            fwhm_jitter=0.0,
            snr_fraction=1.0,
            snr_db=(14.0, 16.0),
            structure_fraction=0.0,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def bundled(cls, **overrides) -> "TrainingDataConfig":
        """The bundled model's data (docs/training.md): 200,000 patches from 4,000 frames, half
        of them along filaments, uniform frames at 11 emitters/um^2, and 25 % of the patches
        from sparse frames at 0.1-6 emitters/um^2."""
        base = dict(
            n_frames=4000,
            n_patches=200000,
            density_per_um2=11.0,
            structure_fraction=0.5,
            sparse_fraction=0.25,
            sparse_density=(0.1, 6.0),
        )
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingDataConfig":
        return cls(**d)


@dataclass
class TrainingSet:
    """Patches ready for training.

    ``inputs``: (n, P, P) float32, camera resolution, normalised and standardised;
    ``spikes``: (n, P*L, P*L) uint8 emitter counts on the fine grid;
    ``mean``/``std``: the standardisation constants; ``target_scale``: ``s``;
    ``source_frames``: (n,) the simulated frame each patch was cut from (None: unknown),
    so that the validation patches can come from frames that no training patch saw.
    """

    inputs: np.ndarray
    spikes: np.ndarray
    mean: float
    std: float
    target_scale: float
    config: TrainingDataConfig = field(default_factory=TrainingDataConfig)
    source_frames: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def minmax_scale(frames: np.ndarray) -> np.ndarray:
    """Scale each frame (last two axes) to [0, 1] by its own min and max.

    A constant frame becomes all zeros (never NaN).
    """
    frames = np.asarray(frames, dtype=np.float32)
    lo = frames.min(axis=(-2, -1), keepdims=True)
    hi = frames.max(axis=(-2, -1), keepdims=True)
    span = hi - lo
    return np.where(span > 0, (frames - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def _structured_emitters(cfg: TrainingDataConfig, field_nm, frame_numbers, photons, rng,
                         cancel=None) -> pd.DataFrame:
    """Emitters along random filaments, one new structure per frame (at least one frame),
    with the frame's density and tube width drawn from the configured ranges; raises
    :class:`~.cancel.Cancelled` as soon as ``cancel`` is set (8 s a thousand frames: a
    Cancel waited 50 s for the bundled recipe's filaments, review)."""
    tables = []
    for frame in frame_numbers:
        if is_cancelled(cancel):
            raise Cancelled("cancelled while simulating the training set")
        filaments = make_filaments(field_nm, n_filaments=int(rng.integers(3, 13)),
                                   persistence_nm=float(rng.uniform(1000.0, 6000.0)), seed=rng)
        em = emitters_on_filaments(filaments, 1, field_nm, rng.uniform(*cfg.structure_density),
                                   tube_width_nm=rng.uniform(*cfg.tube_width_nm), photons=photons, seed=rng,
                                   warn_if_none=False)  # (one frame, a small field: an empty one may be chance)
        tables.append(em.assign(**{FRAME: frame}))
    return pd.concat(tables, ignore_index=True)


def _field_nm(acq: Acquisition, cfg: TrainingDataConfig) -> tuple[float, float]:
    return acq.field_nm((cfg.frame_size, cfg.frame_size))


def _simulate_frames(acq: Acquisition, cfg: TrainingDataConfig, rng: np.random.Generator, cancel=None):
    field_nm = _field_nm(acq, cfg)
    photons = PhotonModel(cfg.photons[0], cfg.photons[1], cfg.photon_spread)
    emitters = uniform_emitters(cfg.n_frames, field_nm, cfg.density_per_um2, photons, rng)
    structured = np.flatnonzero(rng.uniform(size=cfg.n_frames) < cfg.structure_fraction) + 1
    if len(structured):
        emitters = pd.concat(
            [emitters[~emitters[FRAME].isin(structured)],
             _structured_emitters(cfg, field_nm, structured, photons, rng, cancel)], ignore_index=True
        ).sort_values(FRAME, kind="stable").reset_index(drop=True)
    return _render(acq, cfg, emitters, cfg.n_frames, rng, cancel), emitters


def _simulate_sparse_frames(acq: Acquisition, cfg: TrainingDataConfig, n_frames: int, rng: np.random.Generator,
                            cancel=None):
    """Uniform emitters, each frame at its own density drawn log-uniformly in ``sparse_density``."""
    photons = PhotonModel(cfg.photons[0], cfg.photons[1], cfg.photon_spread)
    densities = np.exp(rng.uniform(*np.log(cfg.sparse_density), size=n_frames))
    # (one frame at a time, at densities where an empty frame is no mistake: no warning)
    emitters = pd.concat([uniform_emitters(1, _field_nm(acq, cfg), d, photons, rng, warn_if_none=False)
                          .assign(**{FRAME: f + 1}) for f, d in enumerate(densities)], ignore_index=True)
    return _render(acq, cfg, emitters, n_frames, rng, cancel), emitters


def _render(acq: Acquisition, cfg: TrainingDataConfig, emitters: pd.DataFrame, n_frames: int,
            rng: np.random.Generator, cancel=None) -> np.ndarray:
    """Frames of the emitters, each with its own PSF width and noise model; raises
    :class:`~.cancel.Cancelled` as soon as ``cancel`` is set."""
    shape = (cfg.frame_size, cfg.frame_size)
    frames = np.empty((n_frames,) + shape, dtype=np.float32)
    use_snr = rng.uniform(size=n_frames) < cfg.snr_fraction
    by_frame = dict(tuple(emitters.groupby(FRAME)))
    for f in range(n_frames):
        if is_cancelled(cancel):
            raise Cancelled("cancelled while simulating the training set")
        em = by_frame.get(f + 1, emitters.iloc[:0]).assign(**{FRAME: 1})
        jitter = rng.uniform(1.0 - cfg.fwhm_jitter, 1.0 + cfg.fwhm_jitter)
        frame_acq = acq.replace(fwhm_nm=acq.fwhm_nm * jitter)
        noise = (
            GaussianSNRNoise(cfg.snr_db)
            if use_snr[f]
            else CameraNoise(background_photons=cfg.background_photons)
        )
        frames[f] = render_frames(em, frame_acq, shape, 1, noise, rng)[0]
    return frames


def _patch_origins(acq: Acquisition, cfg: TrainingDataConfig, emitters: pd.DataFrame, n_frames: int,
                   min_emitters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, row, col) of every patch origin whose patch holds >= ``min_emitters`` emitters."""
    P, px = cfg.patch_size, acq.pixel_size_nm
    frame_of = emitters[FRAME].to_numpy() - 1
    x_px = emitters[X_NM].to_numpy() / px
    y_px = emitters[Y_NM].to_numpy() / px
    # emitter counts per candidate patch origin, via a per-frame 2D cumulative sum
    counts = np.zeros((n_frames, cfg.frame_size, cfg.frame_size), np.int32)
    np.add.at(counts, (frame_of, np.clip(y_px.astype(int), 0, cfg.frame_size - 1), np.clip(x_px.astype(int), 0, cfg.frame_size - 1)), 1)
    csum = np.pad(counts.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    n_origin = cfg.frame_size - P + 1
    per_patch = csum[:, P:, P:] - csum[:, :-P, P:] - csum[:, P:, :-P] + csum[:, :-P, :-P]
    return np.nonzero(per_patch[:, :n_origin, :n_origin] >= min_emitters)


def _cut_patches(acq: Acquisition, cfg: TrainingDataConfig, frames: np.ndarray, emitters: pd.DataFrame,
                 origins, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` patches drawn from ``origins``, each at most once while there are enough:
    min/max-scaled inputs, fine-grid emitter counts, and the frame of each."""
    L, P = acq.upsampling, cfg.patch_size
    fine = fine_grid_maps(emitters, acq, acq.fine_shape(frames.shape[1:]), len(frames)).astype(np.uint8)
    # with replacement, the paper's 10,000 patches from 20 frames held 20 % duplicates
    pick = rng.choice(len(origins[0]), size=n, replace=n > len(origins[0]))
    f_idx, r_idx, c_idx = (o[pick] for o in origins)
    win = np.arange(P)
    inputs = frames[f_idx[:, None, None], r_idx[:, None, None] + win[None, :, None], c_idx[:, None, None] + win[None, None, :]]
    wf = np.arange(P * L)
    spikes = fine[
        f_idx[:, None, None], (r_idx * L)[:, None, None] + wf[None, :, None], (c_idx * L)[:, None, None] + wf[None, None, :]
    ]
    return minmax_scale(inputs), spikes, f_idx


def training_set_bytes(acq: Acquisition, cfg: TrainingDataConfig) -> float:
    """About how many bytes :func:`make_training_set` holds at its peak: 40 MB, and per
    patch its float32 input and uint8 fine-grid spikes, 1.9 times (the copies made on the
    way), and per simulated frame its float32 pixels and a byte per fine pixel (within 7 %
    of the peaks measured by ``benchmarks/training_memory.py`` for the bundled recipe's
    26-pixel patches, 64-pixel frames, L = 4; the widget took a million patches, 24 GB,
    without a word)."""
    P, F, L = cfg.patch_size, cfg.frame_size, acq.upsampling
    n_frames = cfg.n_frames + (_sparse_frame_count(cfg) if _sparse_patch_count(cfg) else 0)
    return (40e6 + float(cfg.n_patches) * 1.9 * (P * P * 4 + (P * L) ** 2)
            + float(n_frames) * (F * F * 4 + (F * L) ** 2))


def _sparse_patch_count(cfg: TrainingDataConfig) -> int:
    """The patches cut from extra sparse frames (``sparse_fraction`` of them)."""
    return int(round(cfg.n_patches * cfg.sparse_fraction))


def _sparse_frame_count(cfg: TrainingDataConfig) -> int:
    """The extra sparse frames simulated for :func:`_sparse_patch_count` patches."""
    return max(1, int(round(cfg.n_frames * cfg.sparse_fraction)))


def make_training_set(acq: Acquisition, cfg: TrainingDataConfig = TrainingDataConfig(), cancel=None) -> TrainingSet:
    """Simulate frames and cut the training patches (seeded, reproducible); raises
    :class:`~.cancel.Cancelled` when ``cancel`` is set during the simulation, and a
    TypeError when called with anything but an Acquisition and a TrainingDataConfig."""
    if not isinstance(acq, Acquisition):
        raise TypeError("make_training_set takes the acquisition first: make_training_set(Acquisition(...), "
                        f"TrainingDataConfig(...)), got {type_phrase(acq)}")
    if not isinstance(cfg, TrainingDataConfig):
        hint = " (a TrainingConfig's: make_training_set(acq, config.data))" if isinstance(
            getattr(cfg, "data", None), TrainingDataConfig) else ""
        raise TypeError(f"make_training_set takes a TrainingDataConfig second{hint}, got {type_phrase(cfg)}")
    rng = as_rng(cfg.seed)
    P = cfg.patch_size
    n_sparse = _sparse_patch_count(cfg)
    frames, emitters = _simulate_frames(acq, cfg, rng, cancel)
    origins = _patch_origins(acq, cfg, emitters, cfg.n_frames, cfg.min_emitters)
    if len(origins[0]) == 0:
        area_um2 = (P * acq.pixel_size_nm / 1000.0) ** 2
        raise ValueError(
            f"no {P}x{P}-pixel training patch ({area_um2:.2g} um^2 at {acq.pixel_size_nm:g} nm pixels) holds "
            f"{cfg.min_emitters} emitters at {cfg.density_per_um2:g} emitters/um^2 (about "
            f"{cfg.density_per_um2 * area_um2:.1f} expected); raise the density (--density, the widget's emitters "
            f"per um^2) to {cfg.min_emitters / area_um2:.0f}/um^2 or more, or lower min_emitters (Python: "
            "TrainingDataConfig)"
        )
    inputs, spikes, source = _cut_patches(acq, cfg, frames, emitters, origins, cfg.n_patches - n_sparse, rng)
    if n_sparse:
        n_frames = _sparse_frame_count(cfg)
        frames, emitters = _simulate_sparse_frames(acq, cfg, n_frames, rng, cancel)
        origins = _patch_origins(acq, cfg, emitters, n_frames, 0)
        sparse_inputs, sparse_spikes, sparse_source = _cut_patches(acq, cfg, frames, emitters, origins, n_sparse, rng)
        inputs = np.concatenate([inputs, sparse_inputs])
        spikes = np.concatenate([spikes, sparse_spikes])
        source = np.concatenate([source, cfg.n_frames + sparse_source])  # frames of their own
    L = acq.upsampling
    mean, std = float(inputs.mean()), float(inputs.std())
    if not std > 0:  # (its fallback std of 1 made a model that loading refuses: a std is at most 0.5 on [0, 1])
        raise ValueError("every training patch is the same constant image (no emitters and no noise?): there is "
                         "nothing to train on")
    scale = default_target_scale(L, cfg.min_emitters) if cfg.target_scale is None else cfg.target_scale
    return TrainingSet(((inputs - mean) / std).astype(np.float32), spikes, mean, std, float(scale), cfg,
                       source.astype(np.int64))
