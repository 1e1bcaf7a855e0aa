"""Training DeepCEL0 (ReLU head, CEL0 loss) or Deep-STORM (linear head, L1 loss).

Adam, ReduceLROnPlateau on the validation loss (or cosine annealing), best-validation
checkpoint kept. A ``progress`` callback receives a :class:`Progress` when the losses
are read (every step on the CPU, every 50 on a GPU: :func:`steps_between_loss_reads`)
and after every epoch; a ``cancel`` callable (or ``threading.Event``) stops training cleanly after
the current step and the best model so far is returned (cancelled before the first step,
or while the training set is simulated, :func:`train` raises
:class:`~.cancel.Cancelled`: nothing was trained); ``time_limit_s`` stops it the same way
once so many seconds have passed. A NaN/inf loss stops training with
:class:`TrainingDivergedError` and nothing is returned (checkpoints already handed to
``on_best`` stay where the caller saved them).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from .acquisition import Acquisition, is_real_number, is_whole_number
from .cancel import Cancelled, is_cancelled
from .devices import autocast, resolve_device, resolve_precision
from .losses import LocalizationLoss
from .memory import check_fits_in_memory
from .model_io import THRESHOLD_FRACTION, first_nonfinite, load_model, settings_edited
from .network import LocalizationNet, upsample_nearest
from .optics import phase_column_norms
from .progress import time_left_text
from .training_data import (DEEPSTORM_TARGET_SCALE, TrainingDataConfig, TrainingSet, make_training_set,
                            training_set_bytes, type_phrase)

#: the CEL0 column norms: from the acquisition operator S_L K (paper) or the
#: reference notebook's constant ||g||_2 (0.2823)
COLUMN_NORM_MODES = ("operator", "notebook")
LR_SCHEDULES = ("plateau", "cosine")


def steps_between_loss_reads(device: torch.device) -> int:
    """Training steps between reads of the loss (progress reports and NaN checks).

    Reading a loss waits for the device; on a GPU, reading it every 50 steps lets the
    CPU queue work ahead. On the CPU a read costs nothing."""
    return 1 if device.type == "cpu" else 50


#: a run cancelled in its first epoch validates on at most this many patches: its
#: weights are the only candidate, so the pass decides nothing and only records a loss
#: (the whole validation set took 25-43 s on a 2-core CPU after Cancel or a SIGTERM)
CANCELLED_VAL_PATCHES = 256

#: what a model's ``training`` metadata records of its run besides the config
#: (:func:`~.model_io.save_training_result`)
RUN_FACTS = ("device_used", "precision_used", "seconds", "best_epoch", "cancelled", "stopped_at_time_limit",
             "base_model")

#: the largest lambda and learning rate taken (the float32 tensors they go into)
FLOAT32_MAX = float(np.finfo(np.float32).max)


class WeakMapsWarning(UserWarning):
    """A trained model's maps stay under its own default threshold on the validation
    patches: it will find few molecules or none."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. ``str(exc)`` is ``exc.message`` followed by
    ``exc.api_hint``, advice in the Python API's terms (``precision='fp32'``) that a
    front end without such a setting leaves out by using ``exc.message`` (the napari
    widget edited the text instead, which a rewording would have broken silently)."""

    def __init__(self, message: str, api_hint: str = ""):
        super().__init__(message + api_hint)
        self.message, self.api_hint = message, api_hint


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one training run (the schedule's defaults are the paper's; the
    data's, :class:`TrainingDataConfig`, are broader: ``TrainingDataConfig.paper()`` is the
    paper's). :meth:`bundled` is the bundled model's recipe.

    The defaults (the paper's 100 epochs over 7,000 training patches) take hours on a CPU:
    see :func:`train` for the times and a smoke-test config.

    Attributes
    ----------
    method : str
        ``"deepcel0"`` (ReLU head, blurred-L2 + CEL0 loss) or ``"deepstorm"`` (linear
        head, blurred-L2 + L1 loss).
    lam : float or None
        The CEL0 loss weight lambda of the training loss (DeepCEL0 only; the paper: 100 at
        L = 4). None (the default): :func:`default_training_lam` of the acquisition's L,
        100 (L / 4)^2, or a fine-tune's base model's lambda. The loss is
        ``mean((g * f - t)^2) + mean(phi_CEL0(f; lam, a))`` over the fine pixels of the
        network's output ``f``, whose spikes are ``data.target_scale`` high (85.1). It is
        on another scale than :class:`~.cel0.Cel0Localizer`'s ``lam`` (default 1e-3),
        which weighs the CEL0 penalty of an optimisation on max-normalised camera frames:
        the two are not interchangeable.
    column_norms : str
        The CEL0 penalty's column norms ``a_i`` (DeepCEL0 only): ``"operator"`` (the
        paper's: those of the acquisition operator ``S_L K``, one per fine-pixel phase)
        or ``"notebook"`` (the reference notebook's constant ``||g||_2`` = 0.2823).
    epochs : int
        Passes over the training patches (the paper: 100).
    batch_size : int
        Patches per training step (the paper: 16).
    lr : float
        Adam's initial learning rate (1e-3).
    val_fraction : float
        Fraction of ``data.n_patches`` held out for validation, in (0, 1), cut from
        simulated frames of their own (so, with few frames, only about this fraction).
        The best validation epoch is the model returned.
    plateau_factor : float
        The ``"plateau"`` schedule multiplies the learning rate by this, in (0, 1), when
        the validation loss has not improved for ``plateau_patience`` epochs.
    plateau_patience : int
        Epochs without improvement before the ``"plateau"`` schedule lowers the rate.
    min_lr : float
        The lowest learning rate of either schedule (5e-5); a ``lr`` below it is its own
        floor.
    lr_schedule : str
        ``"plateau"`` (the paper's ReduceLROnPlateau on the validation loss) or
        ``"cosine"`` (cosine annealing from ``lr`` to ``min_lr`` over the epochs; short
        budgets).
    seed : int
        Seeds the initial weights, the validation split and the order of the batches
        (the simulation's seed is ``data.seed``).
    device : str
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    precision : str
        ``"auto"`` (bf16 autocast on GPUs with bf16 and CPUs that compute it natively,
        else fp32), ``"fp32"`` or ``"bf16"``.
    max_steps_per_epoch : int or None
        Quick runs: at most this many training steps per epoch, and as many validation
        batches (of ``max(batch_size, 64)`` patches); None trains on every patch.
    init_from : str or None
        A model file to fine-tune instead of starting from random weights: of the same
        method, trained for this acquisition (pixel size and FWHM within 2 %, the same
        L). The fine-tune keeps the base model's input standardisation and target
        scale.
    data : TrainingDataConfig
        How the training set is simulated; when :func:`train` is given a
        ``training_set``, that set is used instead.
    """

    method: str = "deepcel0"  # or "deepstorm"
    lam: float | None = None  # None: default_training_lam(L), or a fine-tune's base model's
    column_norms: str = "operator"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    val_fraction: float = 0.3
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    min_lr: float = 5e-5
    lr_schedule: str = "plateau"  # or "cosine": anneal to min_lr over the epochs (short budgets)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    max_steps_per_epoch: int | None = None  # quick runs: caps the steps and the validation batches
    init_from: str | None = None  # a model file to fine-tune instead of starting from random weights
    data: TrainingDataConfig = field(default_factory=TrainingDataConfig)

    def __post_init__(self):
        if not isinstance(self.data, TrainingDataConfig):  # (a dict failed later: no attribute 'n_patches')
            raise TypeError(f"data must be a TrainingDataConfig: TrainingConfig(data=TrainingDataConfig(...)), "
                            f"got {type_phrase(self.data)}")
        if self.method not in ("deepcel0", "deepstorm"):
            raise ValueError(f"method must be 'deepcel0' or 'deepstorm', got {self.method!r}")
        if self.column_norms not in COLUMN_NORM_MODES:
            raise ValueError(f"column_norms must be one of {COLUMN_NORM_MODES}, got {self.column_norms!r}")
        if self.lam is not None and not (is_real_number(self.lam) and 0 < self.lam <= FLOAT32_MAX):
            # (beyond float32 the loss overflowed after the whole simulation)
            raise ValueError(f"lambda must be a positive number up to {FLOAT32_MAX:.3g} or None, got {self.lam!r}")
        if self.init_from is not None:  # a Path was kept and failed to go into the model's metadata
            object.__setattr__(self, "init_from", str(self.init_from))
        for name in ("epochs", "batch_size", "plateau_patience"):
            if not is_whole_number(getattr(self, name)):
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number, got {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be >= 1")
        if self.plateau_patience < 0:
            raise ValueError(f"plateau patience must be >= 0, got {self.plateau_patience}")
        if self.max_steps_per_epoch is not None and not (is_whole_number(self.max_steps_per_epoch)
                                                         and self.max_steps_per_epoch >= 1):
            raise ValueError(f"max steps per epoch must be a whole number >= 1 or None (all), "
                             f"got {self.max_steps_per_epoch!r}")
        if not (0 < self.val_fraction < 1):
            raise ValueError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        n_val = max(1, int(round(self.val_fraction * self.data.n_patches)))
        if self.data.n_patches - n_val < 1:
            raise ValueError(f"{self.data.n_patches} patches are too few for a {self.val_fraction:.0%} "
                             "validation split")
        if not (0 < self.lr <= FLOAT32_MAX):
            raise ValueError(f"learning rate must be a positive number up to {FLOAT32_MAX:.3g}, got {self.lr}")
        if not (self.min_lr >= 0 and math.isfinite(self.min_lr)):  # above lr it is lr (see train)
            raise ValueError(f"the smallest learning rate must be a finite number >= 0, got {self.min_lr}")
        if not (0 < self.plateau_factor < 1):
            raise ValueError(f"plateau factor must be in (0, 1), got {self.plateau_factor}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    @classmethod
    def bundled(cls, data: TrainingDataConfig | None = None, **overrides) -> "TrainingConfig":
        """The bundled model's recipe (docs/training.md): its data (``TrainingDataConfig.bundled()``
        unless ``data`` is given) for 8 epochs, batch 64, lr 1e-3 annealed (cosine) to 2e-5.
        About 4 minutes on one H100 (235 s measured); 7 hours or more on a 2-core CPU."""
        base = dict(epochs=8, batch_size=64, lr=1e-3, min_lr=2e-5, lr_schedule="cosine")
        return cls(data=data if data is not None else TrainingDataConfig.bundled(), **{**base, **overrides})

    @property
    def head(self) -> str:
        return "relu" if self.method == "deepcel0" else "linear"

    @property
    def loss(self) -> str:
        return "cel0" if self.method == "deepcel0" else "l1"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        """The config of :meth:`to_dict`, or of a model's ``training`` metadata, whose
        facts of the run (:data:`RUN_FACTS`) are left out: a model's recipe trains again
        with ``train(acq, TrainingConfig.from_dict(info.training))``."""
        d = {key: value for key, value in d.items() if key not in RUN_FACTS}
        d["data"] = TrainingDataConfig.from_dict(d.get("data", {}))
        return cls(**d)


@dataclass
class Progress:
    """What the progress callback receives."""

    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based within the epoch
    steps: int
    loss: float
    fidelity: float
    sparsity: float
    lr: float
    val_loss: float | None = None  # set at the end of an epoch
    best_val_loss: float | None = None
    elapsed_s: float = 0.0
    # "data" (simulating the training set), "start" (the first step begins: a stop from
    # now on keeps a model), "train" (after steps), "epoch", or "time_limit" (once, when
    # train's time_limit_s stops the run, before its next step: losses NaN, ``step`` the
    # steps trained in this epoch; an epoch 1 cut short is then reported as a stopped
    # "epoch", a later one is not, as after a cancel)
    stage: str = "train"
    # linear estimate from the steps so far (None before the first, and once stopping)
    remaining_s: float | None = None
    # an "epoch" cut short by a cancel: only ``step`` of its ``steps`` were trained (its
    # losses are of those steps; it was reported as a whole epoch)
    stopped: bool = False

    def time_left(self) -> str:
        """``", about 12 min left"`` for a progress line; empty when unknown, when nothing
        is left, or once training is stopping."""
        return time_left_text(self.remaining_s)


@dataclass
class TrainingResult:
    """What :func:`train` returns (and ``on_best`` receives); save it with
    :func:`~.model_io.save_training_result` and localize with the file.

    ``model`` is the network with the best validation loss (``best_epoch``, 1-based) in
    evaluation mode; ``norm_mean``/``norm_std`` standardise its inputs, ``target_scale``
    is ``s`` and ``spike_value`` a molecule's expected output; ``history`` has one dict
    per validated epoch (``loss``, ``fidelity``, ``sparsity``, ``val_loss``, ``lr``,
    ``steps``, ``seconds``, ``val_patches``); ``device``/``precision`` are those used;
    ``seconds`` counts from the call of :func:`train`, simulation included.
    ``cancelled``: the run stopped before its epochs were done (a cancel, or the time
    limit); ``stopped_at_time_limit``: it was ``train``'s ``time_limit_s`` that stopped it
    (a model file records ``cancelled`` only).
    """

    model: LocalizationNet
    acquisition: Acquisition
    config: TrainingConfig
    norm_mean: float
    norm_std: float
    target_scale: float
    spike_value: float
    history: list[dict]
    best_epoch: int
    cancelled: bool
    device: str
    precision: str
    seconds: float
    base_info: object = None  # ModelInfo of the model fine-tuned from, if any
    stopped_at_time_limit: bool = False
    base_settings_edited: bool = False  # the base file's settings were edited (model_io.settings_edited)


#: the training loss's lambda at L = 4, the paper's (:func:`default_training_lam`)
TRAINING_LAM_AT_L4 = 100.0


def default_training_lam(upsampling: int) -> float:
    """The training loss's default lambda at upsampling ``L``: ``100 (L / 4)^2``. The
    targets' spikes are about 21 L high (the automatic target scale), so the fidelity of
    a molecule weighs with L^2 while its CEL0 cost stays lambda: at 100 the loss of the
    true maps was 0.17 of an empty map's at L = 4, 0.62 at L = 2 and 1.42 at L = 1 (an
    empty map scored better); with lambda 25 and 6.25, 0.17 and 0.15 again. A run at 160 nm,
    FWHM 300 nm, L = 2 (1,500 patches, 5 epochs) died at lambda 100 in its third epoch and
    learnt at 25 (docs/training.md)."""
    return TRAINING_LAM_AT_L4 * (float(upsampling) / 4.0) ** 2


def loss_for(config: TrainingConfig, acq: Acquisition) -> LocalizationLoss:
    """The loss module of a training configuration (lambda None: :func:`default_training_lam`)."""
    if config.loss == "cel0":
        norms = phase_column_norms(acq) if config.column_norms == "operator" else _notebook_norm()
        lam = default_training_lam(acq.upsampling) if config.lam is None else config.lam
        return LocalizationLoss("cel0", lam, norms, fidelity_gain=1.0)
    return LocalizationLoss("l1", 1.0, 1.0, fidelity_gain=2.0)


def _notebook_norm() -> float:
    from .losses import gaussian_kernel_2d

    return float(np.sqrt((gaussian_kernel_2d() ** 2).sum()))


def restandardise(inputs, old: tuple[float, float], new: tuple[float, float]):
    """Inputs standardised with ``old`` (mean, std) as if standardised with ``new``."""
    return (inputs * old[1] + (old[0] - new[0])) / new[1]


def validation_split(training_set: TrainingSet, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) patch indices, about ``fraction`` of the patches for
    validation, cut from simulated frames that no training patch comes from (patches of
    one frame overlap and share its noise: a random split validated on what it trained
    on), whole frames in random order until the fraction is reached; a random split of
    the patches when their frames are unknown or fewer than two."""
    n = len(training_set)
    n_val = max(1, int(round(fraction * n)))
    if n - n_val < 1:
        raise ValueError(f"{n} patches are too few for a {fraction:.0%} validation split")
    source = training_set.source_frames
    if source is None or len(source) != n or len(np.unique(source)) < 2:
        order = rng.permutation(n)
        return order[:n_val], order[n_val:]
    frames, counts = np.unique(source, return_counts=True)
    order = rng.permutation(len(frames))
    # the number of whole frames whose patches come closest to the fraction, at least one
    # frame each way (with few frames, the fraction is only approximate)
    taken = min(int(np.argmin(np.abs(np.cumsum(counts[order]) - n_val))) + 1, len(frames) - 1)
    is_val = np.isin(source, frames[order[:taken]])
    return np.flatnonzero(is_val), np.flatnonzero(~is_val)


def _other_acquisition(base: Acquisition, acq: Acquisition, rel_tol: float = 0.02) -> list[str]:
    """How ``acq`` differs from a base model's, for a fine-tune: pixel size and FWHM
    (each within ``rel_tol``) and L; a fine-tune for another acquisition is a new model."""
    out = []
    for name, a, b, unit in (("pixel size", base.pixel_size_nm, acq.pixel_size_nm, " nm"),
                             ("PSF FWHM", base.fwhm_nm, acq.fwhm_nm, " nm"),
                             ("upsampling L", base.upsampling, acq.upsampling, "")):
        if abs(a - b) > rel_tol * a:
            out.append(f"{name}: model {a:g}{unit}, data {b:g}{unit}")
    return out


def _base_model(config: TrainingConfig, acq: Acquisition):
    """The model to fine-tune (``config.init_from``, loaded) after checking that it has
    the method's head and was trained for ``acq``; None to start from random weights."""
    if not config.init_from:
        return None
    base = load_model(config.init_from)
    if base.info.head != config.head:
        raise ValueError(f"cannot fine-tune {config.init_from}: it is a {base.info.method} model "
                         f"({base.info.head} head), not {config.method}")
    mismatch = _other_acquisition(base.info.acquisition, acq)
    if mismatch:
        raise ValueError(f"cannot fine-tune {config.init_from} for another acquisition: " + "; ".join(mismatch))
    return base


def _scheduler(opt: torch.optim.Optimizer, config: TrainingConfig):
    """The learning-rate schedule: ReduceLROnPlateau (the paper's) or cosine annealing,
    both down to ``min_lr``."""
    min_lr = min(config.min_lr, config.lr)  # a fine-tune at a low lr does not climb to the default floor
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=config.plateau_factor, patience=config.plateau_patience, min_lr=min_lr
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=min_lr)


def _target_scale(config: TrainingConfig, training_set: TrainingSet, base) -> float:
    """The target scale s: DeepCEL0 takes the reference notebook's automatic s (85.1 at
    L = 4) from the training set; Deep-STORM its own code's 100, unless a scale was
    chosen; a fine-tune keeps its base's (its head was trained for it; Deep-STORM models
    before 2026-11-28: 85.1)."""
    if config.data.target_scale is not None:
        return training_set.target_scale
    if base is not None:
        return base.info.target_scale
    return DEEPSTORM_TARGET_SCALE if config.method == "deepstorm" else training_set.target_scale


class _TrainingRun:
    """One run of :func:`train`: its set-up, and its steps as methods over the state they
    share (they were closures over some twenty names of ``train``, one of which read the
    epoch of its loop). The order of the set-up is the order of the seeded draws."""

    def __init__(self, acq: Acquisition, config: TrainingConfig, progress: Callable[[Progress], None] | None,
                 cancel, training_set: TrainingSet | None, on_best: Callable[[TrainingResult], None] | None,
                 time_limit_s: float | None = None):
        self.t0_s = time.perf_counter()
        self.acq, self.config, self.progress, self.cancel, self.on_best = acq, config, progress, cancel, on_best
        self.time_limit_s = time_limit_s
        self.stopped_at_time_limit = False
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        base = _base_model(config, acq)  # checked before the (long) simulation of the training set
        if config.lam is None:  # recorded as used: the model's recipe trains again with it
            config = dataclasses.replace(config, lam=base.info.lam if base is not None
                                         else default_training_lam(acq.upsampling))
            self.config = config
        if training_set is None:
            data = config.data
            check_fits_in_memory(training_set_bytes(acq, data), f"{data.n_patches:,} training patches from "
                                 f"{data.n_frames:,} simulated frames", "use fewer patches or frames")
            if progress:
                progress(Progress(0, config.epochs, 0, 0, math.nan, math.nan, math.nan, config.lr, stage="data"))
            training_set = make_training_set(acq, config.data, cancel=cancel)
        self.val_idx, self.train_idx = validation_split(training_set, config.val_fraction, self.rng)

        self.model = LocalizationNet(config.head)
        self.base_info, self.base_settings_edited = None, False
        if base is not None:
            self.model.load_state_dict(base.network.state_dict())
            self.base_info = base.info
            self.base_settings_edited = settings_edited(config.init_from)  # as loaded (its file may change)
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last)
        self.criterion = loss_for(config, acq).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sched = _scheduler(self.opt, config)
        # the whole training set lives on the device (tens of MB): no copy per step
        self.inputs = torch.from_numpy(training_set.inputs).to(self.device)
        self.norm_mean, self.norm_std = training_set.mean, training_set.std
        if base is not None:  # the base's weights expect its standardisation, not the fine-tune set's
            self.norm_mean, self.norm_std = base.info.norm_mean, base.info.norm_std
            self.inputs = restandardise(self.inputs, (training_set.mean, training_set.std),
                                        (self.norm_mean, self.norm_std))
        self.spikes = torch.from_numpy(training_set.spikes).to(self.device)
        # reading a loss waits for the GPU: see steps_between_loss_reads
        self.sync_every = steps_between_loss_reads(self.device)
        self.scale = _target_scale(config, training_set, base)
        self.spike_value = self.scale / (2.0 if config.loss == "l1" else 1.0)

        self.val_batch = max(config.batch_size, 64)
        # a quick run's cap on the steps caps the validation batches too: one step took 43 s
        # with the whole validation set (3,000 patches) on a 2-core CPU
        n_val = len(self.val_idx)
        self.n_val_used = n_val if not config.max_steps_per_epoch else min(
            n_val, config.max_steps_per_epoch * self.val_batch)
        self.steps = math.ceil(len(self.train_idx) / config.batch_size)
        if config.max_steps_per_epoch:
            self.steps = min(self.steps, config.max_steps_per_epoch)
        self.history: list[dict] = []
        self.best_state, self.best_val, self.best_epoch = None, math.inf, 0
        self.cancelled = False
        self.model.train()
        self.t_train_s = time.perf_counter()

    def batch(self, idx):
        """The upsampled inputs and the blurred, scaled targets of some patches."""
        idx = torch.as_tensor(idx, device=self.device)
        x = upsample_nearest(self.inputs[idx], self.acq.upsampling).contiguous(memory_format=torch.channels_last)
        t = self.spikes[idx].to(dtype=torch.float32)[:, None] * self.scale
        blur = self.criterion.blur
        t = torch.nn.functional.conv2d(t, blur / blur.sum(), padding=blur.shape[-1] // 2)
        return x, t

    def validate(self, n_patches: int) -> tuple[float, float]:
        """The mean loss of the first ``n_patches`` validation patches, and the largest
        value the network's maps take on them (map units)."""
        self.model.eval()
        total, count, peak = 0.0, 0, -math.inf
        with torch.no_grad():
            for s in range(0, n_patches, self.val_batch):
                idx = self.val_idx[s : min(s + self.val_batch, n_patches)]
                x, t = self.batch(idx)
                with autocast(self.device, self.precision):
                    pred = self.model(x)
                loss, _ = self.criterion(pred, t)
                total += float(loss) * len(idx)
                count += len(idx)
                peak = max(peak, float(pred.max()))
        self.model.train()
        return total / count, peak

    def snapshot(self, net: LocalizationNet) -> TrainingResult:
        """``net`` (put in evaluation mode) with the run so far."""
        net.eval()
        return TrainingResult(
            model=net.to(memory_format=torch.contiguous_format),
            acquisition=self.acq,
            config=self.config,
            norm_mean=self.norm_mean,
            norm_std=self.norm_std,
            target_scale=self.scale,
            spike_value=self.spike_value,
            history=list(self.history),
            best_epoch=self.best_epoch,
            cancelled=self.cancelled,
            device=str(self.device),
            precision=self.precision,
            seconds=time.perf_counter() - self.t0_s,
            base_info=self.base_info,
            stopped_at_time_limit=self.stopped_at_time_limit,
            base_settings_edited=self.base_settings_edited,
        )

    def read_losses(self, pending: list, sums: np.ndarray, epoch: int) -> np.ndarray:
        """Read the pending (loss, fidelity, sparsity) of some steps, stop on NaN/inf,
        add them to ``sums``; returns the last step's."""
        values = torch.stack(pending).double().cpu().numpy()
        pending.clear()
        _check(float(values[:, 0].sum()), "training", epoch)
        sums += values.sum(axis=0)
        return values[-1]

    def remaining_s(self, epoch: int, step: int) -> float | None:
        """Seconds left, from the mean time of a step so far, and at most what the time
        limit leaves; None once stopping: the run ends after this step (after Ctrl-C, the
        time of all the epochs was shown)."""
        if self.cancelled or is_cancelled(self.cancel):
            return None
        so_far = (epoch - 1) * self.steps + step
        now = time.perf_counter()
        left = (now - self.t_train_s) / so_far * (self.config.epochs * self.steps - so_far)
        if self.time_limit_s is not None:
            left = min(left, max(0.0, self.time_limit_s - (now - self.t0_s)))
        return left

    def past_time_limit(self, epoch: int, step: int) -> bool:
        """Whether the time limit has passed, checked before every step but the run's
        first: a run whose simulation outlasted the limit still trains one step and keeps
        a model (as the ``--time-limit`` of ``deepcel0 train`` did), rather than raising
        :class:`~.cancel.Cancelled`."""
        return (self.time_limit_s is not None and (epoch, step) != (1, 1)
                and time.perf_counter() - self.t0_s > self.time_limit_s)

    def stop_at_time_limit(self, epoch: int, done: int):
        """Stop as a cancel does (``cancelled``), recording why, and report it."""
        self.cancelled = self.stopped_at_time_limit = True
        if self.progress:
            self.progress(Progress(epoch, self.config.epochs, done, self.steps, math.nan, math.nan, math.nan,
                                   self.opt.param_groups[0]["lr"], elapsed_s=time.perf_counter() - self.t0_s,
                                   stage="time_limit"))

    def run_epoch(self, epoch: int) -> tuple[np.ndarray, int]:
        """Train the steps of an epoch until done, cancelled or past the time limit
        (``self.cancelled``); returns the summed (loss, fidelity, sparsity) of the steps
        taken and their number."""
        config, steps = self.config, self.steps
        perm = torch.as_tensor(self.train_idx[self.rng.permutation(len(self.train_idx))], device=self.device)
        sums = np.zeros(3)  # loss, fidelity, sparsity of the steps read so far
        pending = []  # losses of the steps not yet read back from the device
        done = 0
        for step in range(1, steps + 1):
            if is_cancelled(self.cancel):
                self.cancelled = True
                break
            if self.past_time_limit(epoch, step):
                self.stop_at_time_limit(epoch, done)
                break
            if epoch == 1 and step == 1 and self.progress:  # (the next report may be 50 steps on, on a GPU)
                self.progress(Progress(epoch, config.epochs, 0, steps, math.nan, math.nan, math.nan,
                                       self.opt.param_groups[0]["lr"], elapsed_s=time.perf_counter() - self.t0_s,
                                       stage="start"))
            idx = perm[(step - 1) * config.batch_size : step * config.batch_size]
            x, t = self.batch(idx)
            with autocast(self.device, self.precision):
                pred = self.model(x)
            loss, parts = self.criterion(pred, t)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            # the step is taken before its loss is checked; a NaN/inf still stops training
            # before anything is saved (the best state is from an earlier validation)
            self.opt.step()
            pending.append(torch.stack((loss.detach(), parts["fidelity"], parts["sparsity"])))
            done += 1
            if len(pending) == self.sync_every or step == steps:
                last = self.read_losses(pending, sums, epoch)
                if self.progress:
                    self.progress(
                        Progress(epoch, config.epochs, step, steps, *last.tolist(),
                                 self.opt.param_groups[0]["lr"], elapsed_s=time.perf_counter() - self.t0_s,
                                 remaining_s=self.remaining_s(epoch, step))
                    )
        if pending:  # cancelled between two reads
            self.read_losses(pending, sums, epoch)
        return sums, done

    def end_epoch(self, epoch: int, sums: np.ndarray, done: int):
        """Validate, record the epoch, keep (and offer ``on_best``) an improvement, report
        the epoch, and step the learning-rate schedule unless the run was cancelled."""
        config = self.config
        # a cancelled run gets here in its first epoch only (no best yet): see CANCELLED_VAL_PATCHES
        n_validated = min(self.n_val_used, CANCELLED_VAL_PATCHES) if self.cancelled else self.n_val_used
        val, peak = self.validate(n_validated)
        _check(val, "validation", epoch)
        _check_weights(self.model, epoch)
        if self.config.head == "relu" and peak <= 0.0:
            raise TrainingDivergedError(
                f"the network's maps are 0 on every validation patch at epoch {epoch}: its ReLU output died (a unit "
                "that is 0 everywhere gets no gradient, so it cannot recover), and a model of it finds nothing; "
                "training stopped and this epoch was not saved. Try a lower learning rate or lambda, or denser "
                "training data")
        lr = self.opt.param_groups[0]["lr"]
        mean = (sums / max(done, 1)).tolist()
        self.history.append(
            {"epoch": epoch, "loss": mean[0], "fidelity": mean[1], "sparsity": mean[2], "val_loss": val, "lr": lr,
             "steps": done, "seconds": time.perf_counter() - self.t0_s, "val_patches": n_validated,
             "val_peak": peak}
        )
        if val < self.best_val:
            self.best_val, self.best_epoch = val, epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
            if self.on_best is not None and done > 0:  # nothing trained yet: nothing worth saving
                checkpoint = LocalizationNet(config.head)
                checkpoint.load_state_dict(self.best_state)
                self.on_best(self.snapshot(checkpoint.cpu()))
        if self.progress:
            self.progress(
                Progress(epoch, config.epochs, done, self.steps, mean[0], mean[1], mean[2], lr, val, self.best_val,
                         time.perf_counter() - self.t0_s, stage="epoch",
                         remaining_s=self.remaining_s(epoch, self.steps), stopped=self.cancelled)
            )
        if self.cancelled:
            return
        if config.lr_schedule == "plateau":
            self.sched.step(val)
        else:
            self.sched.step()

    def best_model(self) -> TrainingResult:
        """The result: the network with the best validation loss; a
        :class:`WeakMapsWarning` when its maps stay under its own default threshold on
        the validation patches (it would find few molecules or none)."""
        self.model.load_state_dict(self.best_state)
        peak = next(h["val_peak"] for h in self.history if h["epoch"] == self.best_epoch)
        threshold = THRESHOLD_FRACTION * self.spike_value
        if peak < threshold:
            warnings.warn(f"the model's maps peak at {peak:.3g} on the validation patches, under its default "
                          f"threshold of {threshold:.3g} (map units; a tenth of a molecule's {self.spike_value:.3g}): "
                          "it will find few molecules or none with it. Train longer, or with a lower learning "
                          "rate or lambda", WeakMapsWarning, stacklevel=3)
        return self.snapshot(self.model)


def _check_weights(model: torch.nn.Module, epoch: int) -> None:
    """Stop training when a weight or a normalisation statistic became NaN or infinite:
    the loss can stay finite (a dead ReLU output passes nothing on), and the file saved
    was refused by its own loader (a review: a learning rate of 1e8)."""
    name = first_nonfinite(model.state_dict())
    if name is not None:
        raise TrainingDivergedError(
            f"the network's {name} became NaN or infinite at epoch {epoch}; training stopped and this epoch was "
            "not saved. Try a lower learning rate", api_hint=", or precision='fp32'")


def _check(value: float, where: str, epoch: int):
    """Stop training on a NaN/inf ``where`` ("training" or "validation") loss."""
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"the {where} loss became {value} at epoch {epoch}; training stopped and this epoch was not saved. "
            "Try a lower learning rate or lambda", api_hint=", or precision='fp32'"
        )


#: training patches per second on a 2-core CPU in bf16 (docs/benchmarks.md "Speed",
#: ``benchmarks/speed.py``; 24 in fp32): for the rough estimate a run on a CPU starts with
CPU_PATCHES_PER_S = 46.0


def patch_steps(config: TrainingConfig) -> int:
    """The training patches a run of ``config`` steps through (its training share of the
    patches, or ``max_steps_per_epoch`` batches, per epoch; validation not counted)."""
    per_epoch = int(config.data.n_patches * (1.0 - config.val_fraction))
    if config.max_steps_per_epoch:
        per_epoch = min(per_epoch, config.max_steps_per_epoch * config.batch_size)
    return per_epoch * config.epochs


def cpu_hours_estimate(config: TrainingConfig) -> float:
    """Hours a run of ``config`` takes at :data:`CPU_PATCHES_PER_S` (the simulation and the
    validation on top): the bundled recipe's 1.1 million patch steps, about 7 hours."""
    return patch_steps(config) / CPU_PATCHES_PER_S / 3600.0


def train(
    acq: Acquisition,
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[Progress], None] | None = None,
    cancel=None,
    training_set: TrainingSet | None = None,
    on_best: Callable[[TrainingResult], None] | None = None,
    *,
    time_limit_s: float | None = None,
) -> TrainingResult:
    """Simulate a training set (unless given) and train a network.

    Parameters
    ----------
    acq
        The :class:`~.acquisition.Acquisition` to train for (pixel size, PSF FWHM, L and
        the camera of the simulation); first: ``train(Acquisition(...), TrainingConfig(...))``.
    config
        The :class:`TrainingConfig` (its ``data``: the :class:`TrainingDataConfig`).
    progress
        Called with a :class:`Progress` as the training set is simulated (``stage``
        ``"data"``), as the first step begins (``"start"``), when the losses are read
        (``"train"``: every step on the CPU, every 50 on a GPU), after every epoch
        (``"epoch"``) and when the time limit stops the run (``"time_limit"``). None (the
        default) prints nothing: a long run is silent until it returns.
    cancel
        A callable or ``threading.Event``; once set, training stops after the current
        step and returns the best model so far (the partial epoch is neither validated
        nor kept, unless it is the first).
    training_set
        A :class:`~.training_data.TrainingSet` to train on instead of simulating
        ``config.data``.
    on_best
        Receives a :class:`TrainingResult` (with a copy of the network) after every epoch
        that improves the validation loss, so that a caller can save a checkpoint that
        survives the process being killed.
    time_limit_s
        Seconds, counted from this call (the simulation of the training set included),
        after which training stops as after a cancel: the best model so far is returned,
        with ``cancelled`` and ``stopped_at_time_limit`` set. It is checked before every
        training step but the first (the simulation always finishes and one step is
        always trained, so a limit never leaves nothing to return); a step, and the
        validation of a first epoch cut short, may end past it. None (default): no limit.

    Returns
    -------
    TrainingResult
        The network with the best validation loss so far (also when cancelled or
        stopped at the time limit); save it with :func:`~.model_io.save_training_result`.

    Raises
    ------
    TypeError
        ``acq`` is not an Acquisition or ``config`` not a TrainingConfig.
    ValueError
        ``time_limit_s`` is not a positive finite number or None; the training set
        cannot be simulated as configured.
    ~.cancel.Cancelled
        Cancelled before the first training step (while the training set is simulated,
        too): there is nothing trained to return.
    TrainingDivergedError
        The loss became NaN or infinite (nothing is returned; checkpoints already handed
        to ``on_best`` stay where the caller saved them).

    Notes
    -----
    **How long it takes.** The defaults are the paper's schedule, 100 epochs over the
    7,000 training patches of 10,000: 700,000 patch steps. docs/benchmarks.md ("Speed",
    ``benchmarks/speed.py``) measured 46 patches/s on a 2-core CPU in bf16 (24 in fp32)
    and 2,661 on one H200 in bf16, so the defaults take about 4 hours on such a CPU (8 in
    fp32; the validation of each epoch comes on top) and a few minutes on a GPU
    (docs/training.md: the paper's schedule ran 91 of its 100 epochs in 5 minutes on an
    H100 it shared with a second run). :meth:`TrainingConfig.bundled` takes about 4
    minutes on an H100 and 7 hours or more on a 2-core CPU (docs/training.md). Give a long
    run a ``time_limit_s`` and a ``progress`` callback.

    Examples
    --------
    A smoke test of the API: about 20 s on one core of a 2-core AMD EPYC (measured with
    ``OMP_NUM_THREADS=1``, bf16, 2 s of it the simulation); the model runs but is not
    trained enough to localize well (the names from ``napari_deepcel0.api``)::

        config = TrainingConfig(epochs=2, device="cpu",
                                data=TrainingDataConfig(n_frames=10, n_patches=200))
        result = train(Acquisition(pixel_size_nm=100, fwhm_nm=258.21), config,
                       progress=lambda p: print(p.stage, p.epoch, p.step, p.loss),
                       time_limit_s=60)

    Save it with :func:`~.model_io.save_training_result` and localize with the file
    (docs/training.md, "From Python").
    """
    _check_train_arguments(acq, config, training_set, time_limit_s)
    run = _TrainingRun(acq, config, progress, cancel, training_set, on_best, time_limit_s)
    for epoch in range(1, config.epochs + 1):
        sums, done = run.run_epoch(epoch)
        if run.cancelled and run.best_state is not None:  # the partial epoch is neither validated nor kept
            break
        if run.cancelled and done == 0:  # before the first step: the weights are the starting ones
            raise Cancelled("training was cancelled before its first step; nothing was trained")
        run.end_epoch(epoch, sums, done)
        if run.cancelled:
            break
    return run.best_model()


def _check_train_arguments(acq, config, training_set, time_limit_s) -> None:
    """TypeError for arguments of the wrong kind (``train(TrainingConfig())`` failed deep
    inside with "'TrainingConfig' object has no attribute 'upsampling'"), ValueError for a
    time limit that is not a positive finite number of seconds."""
    if not isinstance(acq, Acquisition):
        raise TypeError("train takes the acquisition first: train(Acquisition(...), TrainingConfig(...)), "
                        f"got {type_phrase(acq)}")
    if not isinstance(config, TrainingConfig):
        hint = " (data settings go in TrainingConfig(data=TrainingDataConfig(...)))" if isinstance(
            config, TrainingDataConfig) else ""
        raise TypeError(f"train takes a TrainingConfig second: train(Acquisition(...), TrainingConfig(...)){hint}, "
                        f"got {type_phrase(config)}")
    if training_set is not None and not isinstance(training_set, TrainingSet):
        raise TypeError(f"training_set must be a TrainingSet (make_training_set) or None, got "
                        f"{type_phrase(training_set)}")
    if time_limit_s is not None and not (is_real_number(time_limit_s) and math.isfinite(time_limit_s)
                                         and time_limit_s > 0):
        raise ValueError(f"time_limit_s must be a positive finite number of seconds or None (no limit), "
                         f"got {time_limit_s!r}")
