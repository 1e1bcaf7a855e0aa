"""napari readers: SMLM TIFF stacks (lazy Image layers) and localization CSVs (Points).

Both ``get_*_reader`` functions return None for files they cannot read, so napari
can try another reader; they never raise (any failure to open a file means it is not
one of ours). For an existing TIFF file that is no usable stack the stack reader also
shows the reason as a warning (napari itself only says that no reader took the file);
so does the CSV reader for a file whose header names frame, x and y columns.
"""

from __future__ import annotations

import os
import re
import uuid
import weakref
from pathlib import Path

import dask.array as da
import napari
import numpy as np
from napari.utils.notifications import show_info, show_warning

from ..core.acquisition import is_whole_number
from ..core.columns import INTENSITY
from ..core.localization_csv import LocalizationFileError, column_key, read_localizations
from ..core.protocol import protocol_path, read_protocol
from ..core.tiff_stack import FrameStack, StackError
from .layers import (CEL0_COLOR, DEEPCEL0_COLOR, FILE_COLOR, OUTPUT, PROTOCOL, image_transform, points_from_table,
                     points_layer_kwargs, stack_transform, track_localization_layers)
from .state import saved_acquisition


class _FrameBlocks:
    """Array-like view of a :class:`FrameStack` for ``dask.array.from_array`` (which
    indexes with a tuple of slices), and what runs read a stack layer's frames from
    (:func:`frame_source`): its frames only, not the file's pixel size, which the
    widgets have already weighed against the layer's."""

    def __init__(self, stack: FrameStack):
        self.stack = stack
        self.shape = stack.shape
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self.stack[key[0]][(Ellipsis,) + key[1:]]


#: the frames behind the dask arrays :func:`lazy_frames` made, by the arrays' names
_STACKS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def lazy_frames(stack: FrameStack) -> da.Array:
    """A dask array (frames, rows, cols) float32 reading one frame per chunk on demand.

    Reads are serialised by a lock, so the viewer and a background job can share it.
    The array gets a unique name, so that napari's chunk cache never mixes two files.
    """
    name = f"deepcel0-stack-{uuid.uuid4().hex}"
    frames = _STACKS[name] = _FrameBlocks(stack)
    return da.from_array(frames, chunks=(1,) + stack.frame_shape, lock=True, asarray=False,
                         meta=np.empty((0, 0, 0), np.float32), name=name)


def frame_source(data):
    """What a run reads a stack layer's frames from: the frames of the :class:`FrameStack`
    behind ``data`` when this reader made it (reading 16 frames through the dask array
    took 12 ms at 3,000 frames and 99 ms at 100,000, its graph growing with the stack,
    against 0.1 ms from the stack), else ``data`` itself."""
    name = getattr(data, "name", None)
    frames = _STACKS.get(name) if isinstance(name, str) else None
    return data if frames is None or tuple(data.shape) != frames.shape else frames


def contrast_limits(frame: np.ndarray) -> tuple[float, float]:
    """The finite range of ``frame``, widened where it is one value: one NaN or infinite
    pixel (a registered stack's padding) gave limits of (nan, nan) and napari's layer
    controls raised, leaving a layer that could not be removed (review); a constant
    3e38 gave (3e38, 3e38 + 1), which is no range in floats."""
    finite = frame[np.isfinite(frame)].astype(np.float64)
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo) * 1e-6, 1.0))


def stack_layer_data(stack: FrameStack, name: str | None = None) -> tuple:
    """A lazy Image layer-data tuple of a stack, scaled in nm (see :mod:`.layers`).

    Without a pixel size in the file, the acquisition's (as the last session saved
    it) is used and ``metadata["pixel_size_nm"]`` is None. An image this package
    computed (a render or maps written with their kind, :attr:`FrameStack.output`) is
    opened as such: at its own pixel size, marked as an output, so that it is not
    offered as a stack and its pixel size is not taken for the camera's.
    """
    pixel = stack.pixel_size_nm or saved_acquisition().pixel_size_nm
    if not stack.pixel_size_nm and not stack.output:  # the command line says so too; here it was silent (review)
        show_warning(f"{stack.path.name} carries no pixel size: it is shown and analysed at the Acquisition "
                     f"widget's {pixel:g} nm (the last one set); if the camera's pixel differs, set it there")
    kwargs = {
        "name": name or stack.path.stem,
        "contrast_limits": contrast_limits(stack[0]),
        "colormap": "gray",
        "metadata": {"pixel_size_nm": stack.pixel_size_nm, "path": str(stack.path)},
        **stack_transform(pixel),
    }
    data = lazy_frames(stack)
    if stack.output:
        kwargs["metadata"] = {OUTPUT: stack.output, "path": str(stack.path)}
        kwargs["colormap"] = "hot" if stack.output == "render" else "magma"
        kwargs["blending"] = "additive"  # as a run shows it: opaque, it hid the stack and points under it (a review)
        # a render covers every frame (2-D); maps, even of one frame, sit on their frames
        single = len(stack) == 1 and stack.output == "render"
        kwargs.update(image_transform(pixel, None if single else stack.first_frame))
        data = data[0] if single else data
    return (data, kwargs, "image")


def _paths(path) -> list[str] | None:
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [str(p) for p in paths] or None


#: the file names of stacks the reader takes (napari.yaml's filename_patterns say the same)
STACK_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def get_stack_reader(path):
    """Reader for ``*.tif``/``*.tiff`` (and BigTIFF ``*.btf``/``*.tf8``) SMLM stacks, or None when a file is not one
    (RGB, 4-D, not a TIFF, unreadable; the reason is shown as a warning when the
    file exists)."""
    paths = _paths(path)
    if paths is None or not all(p.lower().endswith(STACK_SUFFIXES) for p in paths):
        return None
    stacks = []
    for p in paths:
        try:
            stacks.append(FrameStack(p))
            stacks[-1][0]  # the layer shows it at once: a damaged first frame is refused here, with the reason
        except Exception as exc:  # StackError, OSError, or whatever a broken TIFF raises
            for s in stacks:
                s.close()
            if os.path.exists(p):
                reason = str(exc) if isinstance(exc, StackError) else f"{p}: {exc}"  # StackError names the file
                show_warning(f"DeepCEL0 cannot open this file as an SMLM stack: {reason}")
            return None
    return lambda _path: [stack_layer_data(s) for s in stacks]


#: the colour of a run's localizations by the method its protocol names
RUN_COLORS = {"DeepCEL0": DEEPCEL0_COLOR, "Deep-STORM": DEEPCEL0_COLOR, "CEL0-IRL1": CEL0_COLOR}


def localization_layer_data(table, name: str, protocol: dict | None = None) -> tuple:
    """A Points layer-data tuple of a localization table (see :mod:`.layers`), carrying
    the ``protocol`` of the run that made it, if any (saved again, it goes along). The
    viewers are watched for it (:func:`.layers.track_localization_layers`: its hand edits
    go in the protocol when it is saved; every viewer open, since napari may add it to
    another than the current one); the reader and the samples make their layers here."""
    track_localization_layers(napari.current_viewer())
    coords, features = points_from_table(table)
    metadata = {"source": table.attrs.get("source")}
    if protocol is not None:
        metadata[PROTOCOL] = protocol
    # a saved run reopens in its run's colour, as discs; other files (a ground truth) as magenta rings: both
    # as rings, a run's CSV and its ground truth could not be told apart (a review)
    colour = RUN_COLORS.get(protocol.get("method")) if isinstance(protocol, dict) else None
    kwargs = (points_layer_kwargs(name, features, face_color=colour, metadata=metadata) if colour else
              points_layer_kwargs(name, features, face_color=FILE_COLOR, symbol="ring", metadata=metadata))
    return (coords, kwargs, "points")


def _protocol_beside(path: str, n_rows: int) -> dict | None:
    """The protocol beside the CSV ``path`` (see :func:`~..core.protocol.read_protocol`),
    or None, with a warning when a file there is not one, or counts other than the CSV's
    ``n_rows`` localizations (the protocol of another table)."""
    try:
        protocol = read_protocol(path)
    except ValueError as exc:
        show_warning(f"{exc}; the localizations are opened without it")
        return None
    results = protocol.get("results") if protocol is not None else None
    if isinstance(results, dict):
        count = results.get("localizations_saved", results.get("localizations"))
        if not is_whole_number(count):  # "2" (edited by hand) is no count
            show_warning(f"{protocol_path(path)} gives no number of localizations (its count is {count!r}), so it "
                         f"cannot be told to describe {Path(path).name}; the localizations are opened without it")
            return None
        if count != n_rows:
            show_warning(f"{protocol_path(path)} counts {count} localizations, {Path(path).name} holds {n_rows}: "
                         "it describes another table; the localizations are opened without it")
            return None
    return protocol


def get_localization_reader(path):
    """Reader for ThunderSTORM / ISBI localization CSVs, or None when a file is not one."""
    paths = _paths(path)
    if paths is None or not all(p.lower().endswith(".csv") for p in paths):
        return None
    tables = []
    pixel = saved_acquisition().pixel_size_nm  # for columns in camera pixels, as the Matching widget does
    for p in paths:
        try:
            tables.append((read_localizations(p, pixel_size_nm=pixel), Path(p).stem, p))
        except Exception as exc:  # LocalizationFileError, OSError, or a CSV pandas cannot parse
            if isinstance(exc, LocalizationFileError) and _looks_like_localizations(p):
                show_warning(f"DeepCEL0 cannot open this file as localizations: {exc}")
            elif _napari_points_csv_of_ours(p):  # (refused without a reason: a review)
                show_warning(f"{Path(p).name} looks like napari's own CSV of Points (File > Save with 'napari builtins "
                             "points'), not a localization file: napari's reader opens it (of a localization layer "
                             "of this plugin, axis-0 is the frame - 1 and axis-1, axis-2 are y and x in nm, without "
                             "the run's protocol). Save localizations with Export or File > Save's 'DeepCEL0 "
                             "ThunderSTORM CSV', which ThunderSTORM reads")
            return None

    def layers(_path):
        for table, name, _ in tables:
            converted = table.attrs.get("converted_from_pixels")
            if converted:  # the pixel size was the Acquisition's, not the user's choice: say which
                show_info(f"{name}: {', '.join(converted['columns'])} converted from camera pixels with "
                          f"{converted['pixel_size_nm']:g} nm per pixel (the Acquisition settings); if the "
                          "camera's differ, set them in the Acquisition widget and open the file again")
        return [localization_layer_data(table, name, _protocol_beside(p, len(table))) for table, name, p in tables]

    return layers


def _header(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return f.readline()
    except OSError:
        return ""


def _napari_points_csv_of_ours(path: str) -> bool:
    """True for napari's own CSV of 3-D Points (``index,axis-0,axis-1,axis-2,...``) that
    carry this plugin's localization features (``confidence``, ``intensity [photon]``)."""
    names = [label.strip().strip('"') for label in _header(path).rstrip("\r\n").split(",")]
    return names[:4] == ["index", "axis-0", "axis-1", "axis-2"] and bool({"confidence", INTENSITY} & set(names))


def _looks_like_localizations(path: str) -> bool:
    """True when the header line names frame, x and y columns (in any separator): a
    localization file that could not be read, whose reason is worth showing, unlike
    other tools' CSV files, which napari's own reader may take."""
    names = {column_key(label) for label in re.split(r"[,;\t]", _header(path))}
    return "frame" in names and ({"x", "y"} <= names or {"xnano", "ynano"} <= names)
