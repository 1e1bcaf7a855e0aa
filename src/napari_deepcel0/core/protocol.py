"""The protocol of a localization run: what made a localization table, written beside its
CSV as ``<name>-protocol.json`` (ThunderSTORM writes ``<name>-protocol.txt`` beside its
results for the same reason: a CSV says nothing of the settings that made it).

A protocol is plain JSON (``json.load`` reads it)::

    {"protocol": "napari-deepcel0 localization protocol", "protocol_version": 1,
     "software": "napari-deepcel0 0.1.0", "finished": "2026-11-28T19:20:00+00:00",
     "command": "deepcel0 localize stack.tif --out locs.csv",        # or null (napari)
     "method": "DeepCEL0",                                            # or "CEL0-IRL1"
     "input": {"stack": "/data/stack.tif", "frames": "1-361", "n_frames": 361,
               "frame_shape": [64, 64]},                    # + "frames_asked" when a run stopped early
     "status": "finished",                                  # or "cancelled", "failed", "stopped: widget closed"
     "acquisition": {"pixel_size_nm": 100.0, "fwhm_nm": 258.21, ...},
     "model": {"file": "...", "bundled": true, "sha256": "...", "summary": "..."},  # DeepCEL0 only
     "settings": {"threshold": 8.51, "orientations": 1, ...},
     "results": {"localizations": 66000, "seconds": 20.1}}

Units are those of the names (nm, ADU, photons); frames are 1-based, as in the CSV.
``finished`` is when the run ended (UTC). A table saved from napari has
``results.localizations_saved`` too, which differs from ``localizations`` when points were
added or removed by hand; those edits are counted in ``results.hand_edits``
(``{"added": 2, "removed": 5, "moved": 1}``, only the kinds that happened; the features
of a point added by hand, such as its intensity, are NaN).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from .acquisition import Acquisition
from .json_text import loads_finite
from .outputs import all_or_nothing, atomic_write, write_thunderstorm_csv

PROTOCOL_NAME = "napari-deepcel0 localization protocol"
#: bumped when a field changes meaning or is removed (new fields keep it)
PROTOCOL_VERSION = 1
#: what :func:`protocol_path` puts after the CSV's name, in place of ``.csv``
PROTOCOL_SUFFIX = "-protocol.json"


def protocol_path(csv_path: str | os.PathLike) -> Path:
    """Where the protocol of the CSV ``csv_path`` goes: ``locs.csv`` -> ``locs-protocol.json``."""
    path = Path(csv_path)
    return path.with_name(path.stem + PROTOCOL_SUFFIX)


def frame_ranges_text(numbers) -> str:
    """1-based frame numbers as the selection text that reads them back
    (:func:`~.frames.parse_frame_selection`): ``[1, 2, 3, 7]`` -> ``"1-3,7"``; "" for none."""
    spans: list[str] = []
    values = np.unique(np.asarray(numbers, dtype=np.int64))
    if values.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(values) != 1)
    for first, last in zip(values[np.r_[0, breaks + 1]], values[np.r_[breaks, values.size - 1]]):
        spans.append(f"{first}-{last}" if last > first else f"{first}")
    return ",".join(spans)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (a model file: which weights made the table)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_record(path: str | os.PathLike | None, info, saved: bool = True, sha256: str | None = None) -> dict:
    """What the protocol says of the model file ``path`` (None: the bundled model) whose
    :class:`~.model_io.ModelInfo` is ``info``: the file, whether it is the bundled model,
    the file's SHA-256, and the model's one-line summary (method, head, loss, acquisition,
    training). ``saved=False``: a model in memory that no file holds (trained in the
    script, :meth:`~.model_io.LoadedModel.from_training_result`): no file, no SHA-256.
    ``sha256``: the file's as it was loaded (:attr:`~.model_io.LoadedModel.sha256`; None:
    hashed now)."""
    from .model_io import bundled_model_path

    if not saved:
        return {"file": None, "bundled": False, "sha256": None, "summary": info.summary(with_notes=False)}
    path = Path(path if path is not None else bundled_model_path()).resolve()
    return {
        "file": str(path),
        "bundled": path == bundled_model_path().resolve(),
        "sha256": sha256 if sha256 is not None else file_sha256(path) if path.is_file() else None,
        "summary": info.summary(with_notes=False),
    }


def method_name(info) -> str:
    """The method of a model (its :class:`~.model_io.ModelInfo`), as a protocol names it."""
    return {"deepcel0": "DeepCEL0", "deepstorm": "Deep-STORM"}.get(info.method, info.method)


def network_protocol(info, model_path: str | os.PathLike | None, acquisition: Acquisition, settings: dict,
                     stack: str | os.PathLike | None = None) -> functools.partial:
    """:func:`localization_protocol` for a run of the network ``info`` (a
    :class:`~.model_io.ModelInfo`, from ``model_path``; None: the bundled model) on frames
    of ``acquisition``, waiting for what the run did (frames, frame shape, count, ...): at
    the model's L, as :class:`~.predict.DeepLocalizer` analyses the frames, and with what
    differs from the model's acquisition among the settings."""
    from .predict import acquisition_mismatch

    settings = {**settings, "acquisition_differs_from_model": acquisition_mismatch(info.acquisition, acquisition)}
    return functools.partial(localization_protocol, method_name(info),
                             acquisition.replace(upsampling=info.acquisition.upsampling), settings, stack=stack,
                             model=model_record(model_path, info))


def protocol_of_run(localizer, source, table, *, frames=None, threshold=None, method: str = "peaks",
                    photometry: bool = False, fit_positions: bool = False, fix_outlier_pixels: bool = True,
                    seconds: float | None = None, command: str | None = None) -> dict:
    """The protocol of ``table = localize(localizer, source, frames=..., threshold=...,
    method=..., photometry=..., fit_positions=..., fix_outlier_pixels=...)`` in a script,
    given the same arguments, for :func:`write_localizations` (the command line and napari
    make their own): the method, the model (file and SHA-256, or "not saved" for a model
    trained in the script), the acquisition the frames were analysed with, the frames
    selected, and the settings. ``source`` is what was localized: a stack read from a
    file (its path goes in) or an array. ValueError when ``table`` holds frames outside
    the selection (the protocol of another call)."""
    from .columns import FRAME
    from .frames import _frame_shape, frame_count, parse_frame_selection

    numbers = parse_frame_selection(frames, frame_count(source)) + 1
    outside = np.setdiff1d(np.asarray(table[FRAME]), numbers)
    if outside.size:
        raise ValueError(f"the table holds localizations in frames the selection {frames!r} does not "
                         f"({frame_ranges_text(outside)}): give protocol_of_run the frames= of the localize call")
    used = localizer.default_threshold() if threshold is None else float(threshold)
    settings = {"threshold": used, "threshold_is_default": threshold is None, "read_out": method,
                "photometry": bool(photometry), "fit_positions": bool(fit_positions),  # (the CLI's keys)
                "fix_outlier_pixels": bool(fix_outlier_pixels)}
    loaded = getattr(localizer, "loaded", None)
    if loaded is not None:  # a DeepLocalizer
        method, model = method_name(loaded.info), model_record(loaded.path, loaded.info, saved=loaded.path is not None,
                                                                   sha256=loaded.sha256)
        settings.update(orientations=localizer.orientations, **localizer.scaling, device=str(localizer.device),
                        precision=localizer.precision, batch_size=localizer.batch_size,
                        acquisition_differs_from_model=localizer.mismatch)
    else:  # a Cel0Localizer
        s = localizer.settings
        method, model = "CEL0-IRL1", None
        settings.update({"lambda": s.lam, "max_outer": s.max_outer, "max_inner": s.max_inner, "tol": s.tol,
                         "background": localizer.background, "device": str(localizer.device),
                         "batch_size": localizer.batch_size})
    return localization_protocol(method, localizer.acquisition, settings, numbers, _frame_shape(source), len(table),
                                 stack=getattr(source, "path", None), model=model, seconds=seconds, command=command)


def localization_protocol(method: str, acquisition: Acquisition, settings: dict, frame_numbers,
                          frame_shape: tuple[int, int], n_localizations: int, stack: str | os.PathLike | None = None,
                          model: dict | None = None, seconds: float | None = None,
                          command: str | None = None, frames_asked=None, status: str = "finished") -> dict:
    """The protocol (see the module's docstring) of a run of ``method`` over the 1-based
    ``frame_numbers`` of ``stack`` (a file, or None for data that came from no file).
    ``acquisition`` is the one the frames were analysed with (a model's L, not the one
    asked for). A run that stopped early (``status`` "cancelled", "failed", ...) names the
    frames it was asked for (``frames_asked``) beside those it did, when they differ."""
    from .. import __version__

    numbers = np.asarray(frame_numbers, dtype=np.int64)
    protocol = {
        "protocol": PROTOCOL_NAME,
        "protocol_version": PROTOCOL_VERSION,
        "software": f"napari-deepcel0 {__version__}",
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "method": method,
        "input": {"stack": str(Path(stack).resolve()) if stack is not None else None,
                  "frames": frame_ranges_text(numbers), "n_frames": int(numbers.size),
                  "frame_shape": [int(frame_shape[0]), int(frame_shape[1])]},
        "status": status,
        "acquisition": acquisition.to_dict(),
    }
    if model is not None:
        protocol["model"] = model
    if frames_asked is not None and frame_ranges_text(frames_asked) != protocol["input"]["frames"]:
        protocol["input"]["frames_asked"] = frame_ranges_text(frames_asked)
    protocol["settings"] = settings
    protocol["results"] = {"localizations": int(n_localizations),
                           "seconds": None if seconds is None else round(float(seconds), 3)}
    return protocol


def _plain(value):
    """``value`` with NumPy numbers, paths and tuples made JSON's, and NaN/inf as None
    (JSON has no NaN; Python's ``json`` would write a token other readers refuse)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_protocol(path: str | os.PathLike, protocol: dict) -> Path:
    """Write ``protocol`` as indented JSON to ``path``, atomically (inside
    :func:`~.outputs.all_or_nothing`, with the CSV it describes)."""
    text = json.dumps(_plain(protocol), indent=2, allow_nan=False) + "\n"
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))


def write_localizations(path: str | os.PathLike, table, protocol: dict | None) -> list[Path]:
    """Write ``table`` as a ThunderSTORM CSV at ``path`` and ``protocol`` beside it, both or
    neither (:func:`~.outputs.all_or_nothing`); without a protocol, ours left there by an
    earlier write is removed (:func:`remove_stale_protocol`). The paths written."""
    with all_or_nothing():
        written = [write_thunderstorm_csv(path, table)]
        if protocol is not None:
            written.append(write_protocol(protocol_path(path), protocol))
    if protocol is None:
        remove_stale_protocol(path)
    return written


def remove_stale_protocol(csv_path: str | os.PathLike) -> bool:
    """Remove a protocol of ours beside the CSV ``csv_path`` (True when one went): called
    after the CSV was written by a run without a protocol, so that the protocol of the
    table it replaced does not describe it (and travel on with it when opened). A file
    there that is no protocol of ours stays."""
    try:
        if read_protocol(csv_path) is None:
            return False
    except ValueError:
        return False
    protocol_path(csv_path).unlink(missing_ok=True)
    return True


def read_protocol(csv_path: str | os.PathLike) -> dict | None:
    """The protocol beside the CSV ``csv_path`` (:func:`protocol_path`), None when there is
    none; ValueError naming the file when it is there but not such a protocol (not JSON,
    another tool's, or of a later protocol version)."""
    path = protocol_path(csv_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    try:
        protocol = loads_finite(text)
    except (ValueError, RecursionError) as exc:  # not JSON, a NaN our writer refuses, absurdly nested JSON
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(protocol, dict) or protocol.get("protocol") != PROTOCOL_NAME:
        raise ValueError(f"{path}: not a {PROTOCOL_NAME}")
    version = protocol.get("protocol_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PROTOCOL_VERSION:
        raise ValueError(f"{path}: protocol version {version!r}, this napari-deepcel0 reads 1 to {PROTOCOL_VERSION}")
    return protocol
