"""Model files: safetensors weights with JSON metadata in the same file.

A model file is data, never code: the weights are a safetensors file and everything
else (architecture, head, acquisition, normalisation, target scale, loss, training
configuration and history, package version) is a JSON document stored in the
safetensors header under the key ``"napari_deepcel0"``. Loading validates the header,
the metadata and every tensor name and shape before building the network; nothing is
unpickled. Model files written by this version carry a SHA-256 of the weights (key
``"napari_deepcel0_weights_sha256"``), checked on loading: safetensors itself has no
checksum, so a flipped byte in the weights would load unnoticed (files written before
it, which have none, load as before). They also carry a SHA-256 of the metadata's settings
(key ``"napari_deepcel0_metadata_sha256"``; all but the free-text ``notes``): a file whose
acquisition, normalisation or target scale was edited warns (:class:`EditedMetadataWarning`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .acquisition import Acquisition
from .json_text import NotFiniteError, loads_finite
from .outputs import atomic_write
from .network import ARCHITECTURE, HEADS, LocalizationNet

FORMAT = "napari-deepcel0-model"
FORMAT_VERSION = 1
METADATA_KEY = "napari_deepcel0"
WEIGHTS_SHA256_KEY = "napari_deepcel0_weights_sha256"
#: SHA-256 of the metadata's settings (all but its free-text ``notes``; :func:`metadata_sha256`)
METADATA_SHA256_KEY = "napari_deepcel0_metadata_sha256"
BUNDLED_MODEL = "deepcel0_isbi2013.safetensors"
#: method -> (head, loss) of the models this package trains
METHODS = {"deepcel0": ("relu", "cel0"), "deepstorm": ("linear", "l1")}
#: acquisition settings a model file must state (the network is trained for them)
MODEL_ACQUISITION_FIELDS = ("pixel_size_nm", "fwhm_nm", "upsampling")
#: the longest chain of fine-tunings read from a file
MAX_STAGES = 100


#: the default detection threshold as a fraction of a model's spike value (the reference's 0.1)
THRESHOLD_FRACTION = 0.1


class ModelFileError(ValueError):
    """A model file that cannot be used (the message names the file and the reason)."""


class EditedMetadataWarning(UserWarning):
    """A model file's settings (acquisition, normalisation, target scale, method) were
    changed after it was written: the network may be used with settings it was not
    trained for. The weights are checked apart (a mismatch there is an error)."""


@dataclass
class ModelInfo:
    """Everything about a trained model except its weights."""

    head: str
    acquisition: Acquisition
    norm_mean: float
    norm_std: float
    target_scale: float
    spike_value: float
    method: str = "deepcel0"
    loss: str = "cel0"
    lam: float = 100.0
    training: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    package_version: str = ""
    created: str = ""
    architecture: str = ARCHITECTURE
    format_version: int = FORMAT_VERSION
    notes: str = ""

    def to_json(self) -> str:
        """The metadata as the JSON text a model file holds."""
        d = dict(self.__dict__)
        d["acquisition"] = self.acquisition.to_dict()
        d["format"] = FORMAT
        return json.dumps(d, allow_nan=False, default=_json_default)

    @property
    def default_threshold(self) -> float:
        """The detection threshold in map units when none is given:
        :data:`THRESHOLD_FRACTION` of the map value of one isolated molecule (the
        reference's rule)."""
        return THRESHOLD_FRACTION * self.spike_value

    def stages(self) -> list[dict]:
        """The training stages behind this model, oldest first: each a dict with
        ``training`` (config and run facts) and ``history`` (per-epoch records). A
        model trained from scratch has one stage; each fine-tune adds one."""
        stages = [{"training": self.training, "history": self.history}]
        while base := stages[0]["training"].get("base_model"):
            stages.insert(0, {"training": base.get("training", {}), "history": base.get("history", [])})
        return stages

    def summary(self, with_notes: bool = True) -> str:
        """One line about the model: method, acquisition, training; then its notes."""
        t = self.training
        epochs = len(self.history)
        best = min((h.get("val_loss", float("inf")) for h in self.history), default=None)
        data = t.get("data", {})
        earlier = self.stages()[:-1]
        tuned = (f" (fine-tuned from a model trained {sum(len(s['history']) for s in earlier)} epoch(s) in "
                 f"{len(earlier)} stage(s))" if earlier else "")
        return (
            f"{self.method} ({self.head} head, {self.loss} loss, lambda {self.lam:g}); "
            f"{self.acquisition.describe()}; trained {epochs} epoch(s) on {data.get('n_patches', '?')} patches"
            + tuned
            + (f", best val loss {best:.4g}" if best is not None and best != float("inf") else "")
            + (f"; {self.notes}" if self.notes and with_notes else "")
        )


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in model metadata")


def _package_version() -> str:
    from .. import __version__

    return __version__


def save_model(path: str | os.PathLike, model: LocalizationNet, info: ModelInfo) -> Path:
    """Write weights and metadata to ``path`` (a ``.safetensors`` file), atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"model files must end in .safetensors, got {path.name}")
    if model.head != info.head:
        raise ValueError(f"network head {model.head!r} differs from metadata head {info.head!r}")
    info.package_version = info.package_version or _package_version()
    info.created = info.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    tensors = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    bad = first_nonfinite(tensors)
    if bad is not None:  # load_model refuses such a file: it is not written
        raise ValueError(f"cannot save {path.name}: the network's {bad} holds NaN or infinite values")
    text = info.to_json()
    meta = {METADATA_KEY: text, WEIGHTS_SHA256_KEY: _weights_sha256(tensors),
            METADATA_SHA256_KEY: metadata_sha256(json.loads(text))}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def first_nonfinite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` (name -> tensor) that
    holds a NaN or an infinite value, or None: such weights are not saved, and training
    stops on them."""
    return next((k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def metadata_sha256(d: dict) -> str:
    """SHA-256 of a model file's metadata (as read from its JSON) without its free-text
    ``notes``, which may be edited: keys sorted, so that the JSON's spacing and order do
    not count."""
    settings = {k: v for k, v in d.items() if k != "notes"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _weights_sha256(tensors: dict) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def save_training_result(path, result, notes: str = "") -> Path:
    """Save a :class:`~napari_deepcel0.core.training.TrainingResult`."""
    return save_model(path, result.model, training_result_info(result, notes))


def training_result_info(result, notes: str = "") -> ModelInfo:
    """The :class:`ModelInfo` of a :class:`~napari_deepcel0.core.training.TrainingResult`:
    what its model file's metadata says (:func:`save_training_result`)."""
    training = {**result.config.to_dict(), "device_used": result.device, "precision_used": result.precision,
                "seconds": result.seconds, "best_epoch": result.best_epoch, "cancelled": result.cancelled}
    if result.base_info is not None:
        base = result.base_info
        training["base_model"] = {"training": base.training, "history": base.history, "created": base.created}
        if result.base_settings_edited:  # (its new checksum hid it)
            training["base_model"]["settings_edited"] = True
    return ModelInfo(
        head=result.config.head,
        acquisition=result.acquisition,
        norm_mean=result.norm_mean,
        norm_std=result.norm_std,
        target_scale=result.target_scale,
        spike_value=result.spike_value,
        method=result.config.method,
        loss=result.config.loss,
        lam=result.config.lam,
        training=training,
        history=result.history,
        notes=notes,
    )


def checkpoint_path(path) -> Path:
    """Where a run that will write ``path`` keeps its best model so far:
    ``name.partial.safetensors`` beside it. A run that dies leaves it there, clearly
    named, and ``path`` (maybe a good model of an earlier run) untouched."""
    path = Path(path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(stem + ".partial.safetensors")


def check_training_output(path) -> None:
    """ValueError when a training run may not write ``path``: it is the bundled model
    (replaced after "Replace?", it was every later session's default model), or its
    checkpoint (:func:`checkpoint_path`) exists: the best model of an interrupted run,
    which a new run would replace at its first epoch and delete at its end without a
    word, or a folder in the way."""
    if Path(path).resolve() == bundled_model_path().resolve():
        raise ValueError(f"{path} is the model bundled with napari-deepcel0 (every session's default): write the "
                         "new model elsewhere")
    checkpoint = checkpoint_path(path)
    if checkpoint.exists():
        what = "a folder" if checkpoint.is_dir() else "the best model of an interrupted run"
        raise ValueError(f"{checkpoint} exists ({what}), where this run would keep its checkpoints: rename it to "
                         "keep it, or delete it")


def save_checkpoint(path, best, notes: str = "") -> Path:
    """Save the best model so far of a run that will write ``path`` to :func:`checkpoint_path`."""
    note = "checkpoint of a training run that had not finished: its best epoch so far"
    return save_training_result(checkpoint_path(path), best, notes=f"{notes} ({note})" if notes else note)


def save_final(path, result, notes: str = "") -> Path:
    """Save the result of a finished (or cleanly stopped) run to ``path`` and remove its
    checkpoint (:func:`save_checkpoint`)."""
    written = save_training_result(path, result, notes=notes)
    checkpoint_path(path).unlink(missing_ok=True)
    return written


def _fail(path, why: str):
    raise ModelFileError(f"{path}: {why}")


def _settings_checksums(meta: dict, d: dict) -> tuple[str | None, str | None]:
    """The settings' checksum a file holds and the one of its settings as they are (both
    None for files written before 2026-11-29, which have none)."""
    checksum = meta.get(METADATA_SHA256_KEY)
    return checksum, (metadata_sha256(d) if checksum is not None else None)


def settings_edited(path: str | os.PathLike) -> bool:
    """True when a model file's settings were edited after it was written (their checksum
    differs; :class:`EditedMetadataWarning`), for panels that say so for as long as the
    file is chosen. A file that cannot be read is :func:`read_model_info`'s to report."""
    try:
        meta, d = _read_metadata(Path(path))
    except ModelFileError:
        return False
    if not isinstance(d, dict):  # (no model description: read_model_info says so)
        return False
    checksum, actual = _settings_checksums(meta, d)
    return checksum != actual


#: the edited files already warned of (:class:`EditedMetadataWarning`): (path, stored and actual checksums)
_EDITS_WARNED: set[tuple[str, str, str]] = set()


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read and validate a model file's metadata without loading the weights."""
    path = Path(path)
    meta, d = _read_metadata(path)
    info = _info_from_dict(path, d)
    checksum, actual = _settings_checksums(meta, d)
    edit = (str(path.resolve()), checksum, actual)
    if checksum != actual and edit not in _EDITS_WARNED:
        # once per file and edit: a CEL0 comparison read its model three times, a fine-tune twice (a review)
        _EDITS_WARNED.add(edit)
        warnings.warn(f"{path}: the model's settings were edited after it was written (their checksum differs): the "
                      "network may now be used with an acquisition, normalisation or target scale it was not "
                      "trained for; use the file as its training wrote it, or train again", EditedMetadataWarning,
                      stacklevel=2)
    return info


def _read_metadata(path: Path) -> tuple[dict, dict]:
    """A model file's safetensors metadata and its napari-deepcel0 JSON, parsed (not yet
    validated: :func:`_info_from_dict`); a :class:`ModelFileError` says what is wrong."""
    if path.is_dir():
        _fail(path, "is a folder, not a model file")
    if not path.exists():
        _fail(path, "no such model file")
    if not path.is_file():  # (a pipe was "no such model file")
        _fail(path, "is a pipe or a device, not a file: save the model to a file first (it is read in pieces)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        _fail(path, f"not a valid model file (expected a napari-deepcel0 .safetensors file; the file is corrupt, "
                    f"truncated or from another tool: {exc})")
    if METADATA_KEY not in meta:
        _fail(path, "a safetensors file without napari-deepcel0 metadata (made by another tool?)")
    try:
        d = loads_finite(meta[METADATA_KEY])
    except NotFiniteError as exc:  # (a NaN in the history loaded, then failed a fine-tune at its first checkpoint)
        _fail(path, f"metadata holds {exc} (models are written without NaN or infinite numbers)")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit integer; absurdly nested JSON
        _fail(path, f"corrupt metadata ({type(exc).__name__}: {exc})")
    return meta, d


def _info_from_dict(path, d: dict) -> ModelInfo:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        _fail(path, "metadata is not a napari-deepcel0 model description")
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _fail(path, f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        _fail(path, f"model format version {version} is newer than this napari-deepcel0 supports "
                    f"({FORMAT_VERSION}); update the package")
    if d.get("architecture") != ARCHITECTURE:
        _fail(path, f"unknown network architecture {d.get('architecture')!r} (expected {ARCHITECTURE!r})")
    if d.get("head") not in HEADS:
        _fail(path, f"unknown head {d.get('head')!r}")
    method = d.get("method", "deepcel0")
    if not isinstance(method, str) or METHODS.get(method) != (d["head"], d.get("loss", "cel0")):
        _fail(path, f"method {d.get('method')!r}, head {d['head']!r} and loss {d.get('loss')!r} do not belong "
                    f"together (known: {METHODS})")
    missing = [k for k in MODEL_ACQUISITION_FIELDS if not isinstance(d.get("acquisition"), dict)
               or k not in d["acquisition"]]
    if missing:  # defaults would silently stand in for the model's PSF or pixel size
        _fail(path, f"the acquisition in the metadata lacks {missing}")
    try:
        acq = Acquisition.from_dict(d["acquisition"])
        numbers = {k: d[k] for k in ("norm_mean", "norm_std", "target_scale", "spike_value", "lam")}
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: a 400-digit integer
        _fail(path, f"incomplete or invalid metadata ({exc})")
    not_numbers = [k for k, v in numbers.items() if not _is_float(v)]  # "0.1" and true read as numbers
    if not_numbers:
        _fail(path, "metadata holds no number where one belongs: " + ", ".join(f"{k}={numbers[k]!r}"
                                                                             for k in not_numbers))
    numbers = {k: float(v) for k, v in numbers.items()}
    if not all(math.isfinite(v) for v in numbers.values()):
        _fail(path, "metadata holds a NaN or infinite number ("
                    + ", ".join(k for k, v in numbers.items() if not math.isfinite(v)) + ")")
    if not numbers["norm_std"] > 0 or not numbers["target_scale"] > 0 or not numbers["spike_value"] > 0:
        _fail(path, "invalid normalisation or target scale in metadata")
    if not (0.0 <= numbers["norm_mean"] <= 1.0 and NORM_STD_RANGE[0] <= numbers["norm_std"] <= NORM_STD_RANGE[1]):
        # a std of 1e-300 loaded and made every map NaN: 0 localizations without a word (review)
        _fail(path, f"invalid normalisation in metadata (mean {numbers['norm_mean']:g}, std {numbers['norm_std']:g}): "
                    "frames scaled to [0, 1] have a mean in [0, 1] and a std of at most 0.5")
    if not numbers["lam"] > 0:
        _fail(path, f"invalid lambda {numbers['lam']:g} in metadata")
    if "notes" in d and not isinstance(d["notes"], str):
        _fail(path, f"metadata field 'notes' should be a str, not {type(d['notes']).__name__}")
    _check_stage(path, d, "")
    known = set(ModelInfo.__dataclass_fields__)
    kwargs = {k: v for k, v in d.items() if k in known}
    kwargs.update(numbers)
    kwargs["acquisition"] = acq
    return ModelInfo(**kwargs)


#: the standard deviations a model's input standardisation may hold: frames are scaled to
#: [0, 1] before it (whose values have a std of at most 0.5); trained models hold about 0.18
NORM_STD_RANGE = (1e-4, 0.5)


def _is_float(value) -> bool:
    """A JSON number that is a float64 (a 400-digit integer is not: it overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _check_stage(path, stage: dict, where: str) -> None:
    """The ``training`` (a dict) and ``history`` (one dict per epoch, numbers where
    :meth:`ModelInfo.summary` reads them) of a model and of each model it was
    fine-tuned from (``training.base_model``)."""
    for _ in range(MAX_STAGES):
        training, history = stage.get("training", {}), stage.get("history", [])
        for key, value, kind in (("training", training, dict), ("history", history, list)):
            if not isinstance(value, kind):
                _fail(path, f"metadata field '{where}{key}' should be a {kind.__name__}, not {type(value).__name__}")
        for record in history:
            if not isinstance(record, dict) or not all(
                    _is_float(record.get(k, 0.0)) for k in ("epoch", "loss", "val_loss")):
                _fail(path, f"metadata field '{where}history' should hold one record of numbers per epoch")
        for key in ("data", "base_model"):
            if key in training and not isinstance(training[key], dict):
                _fail(path, f"metadata field '{where}training.{key}' should be a dict")
        if "base_model" not in training:
            return
        stage, where = training["base_model"], f"{where}training.base_model."
    _fail(path, f"metadata holds more than {MAX_STAGES} fine-tuning stages")


@dataclass
class LoadedModel:
    """A network with its metadata: from a model file (:func:`load_model`; ``path``), or a
    training result not saved (:meth:`from_training_result`; ``path`` None)."""

    network: LocalizationNet
    info: ModelInfo
    path: Path | None = None
    #: the SHA-256 of the file's bytes when it was loaded (a protocol names the weights
    #: that made its table, whatever replaced the file since)
    sha256: str | None = None

    @classmethod
    def from_training_result(cls, result, notes: str = "") -> "LoadedModel":
        """The model of a :class:`~napari_deepcel0.core.training.TrainingResult`, as if it had
        been saved and loaded (its network is the result's own, not a copy; ``info.created``
        stays empty: it is when a file was written)."""
        info = training_result_info(result, notes)
        info.package_version = _package_version()
        return cls(result.model, info, None)


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load and validate a model file; the network is returned in eval mode on the CPU."""
    from .protocol import file_sha256

    path = Path(path).expanduser()
    info = read_model_info(path)
    sha256 = file_sha256(path)  # as it is loaded: a file replaced during a long run was hashed at its end
    net = LocalizationNet(info.head)
    expected = net.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            checksum = (f.metadata() or {}).get(WEIGHTS_SHA256_KEY)
            keys = set(f.keys())
            if keys != set(expected):
                missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
                _fail(path, f"weights do not match the network (missing {missing[:3]}, unexpected {extra[:3]})")
            state = {}
            for k in expected:
                t = f.get_tensor(k)
                if tuple(t.shape) != tuple(expected[k].shape):
                    _fail(path, f"tensor {k} has shape {tuple(t.shape)}, expected {tuple(expected[k].shape)}")
                if t.dtype != expected[k].dtype:  # bool or int weights were cast silently (files without a checksum)
                    _fail(path, f"tensor {k} is {t.dtype}, expected {expected[k].dtype}")
                if t.is_floating_point() and not torch.isfinite(t).all():
                    _fail(path, f"tensor {k} holds NaN or infinite values")
                state[k] = t
    except (SafetensorError, OSError, RuntimeError) as exc:
        _fail(path, f"cannot read the weights (corrupt or truncated file: {exc})")
    if checksum is not None and checksum != _weights_sha256(state):
        _fail(path, "the weights do not match their checksum: the file is corrupt")
    net.load_state_dict(state)
    net.eval()
    return LoadedModel(net, info, path, sha256)


def bundled_model_path() -> Path:
    """Path of the default model shipped with the package."""
    return Path(str(resources.files("napari_deepcel0") / "models" / BUNDLED_MODEL))


def load_bundled_model() -> LoadedModel:
    """The model shipped with the package (:func:`bundled_model_path`), loaded."""
    path = bundled_model_path()
    if not path.is_file():
        raise ModelFileError(f"{path}: the bundled model is missing from this installation")
    return load_model(path)
