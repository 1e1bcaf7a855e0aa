"""Localization tables <-> napari layers, with nanometres as world units.

One convention for every layer this plugin makes or reads:

- a camera stack (frames, rows, cols) gets ``scale = (1, p, p)`` and
  ``translate = (0, p/2, p/2)`` for a pixel size ``p`` nm, so camera pixel ``(r, c)``
  is drawn centred at ``y = (r + 0.5) p``, ``x = (c + 0.5) p`` nm: the pixel-centre
  convention of :mod:`napari_deepcel0.core.acquisition`;
- localizations are Points at ``(frame - 1, y [nm], x [nm])`` (scale 1): the first axis
  is the 0-based frame, so points follow the frame slider of the stack;
- a rendered image (or fine-grid map) with ``q`` nm pixels gets ``scale = (q, q)`` and
  ``translate = (q/2, q/2)`` (its pixel ``(r, c)`` covers ``[r, r+1) q`` in y).
"""

from __future__ import annotations

import collections
import contextlib
import re
import time
import uuid
import weakref

import napari
import numpy as np
import pandas as pd
from napari.utils.notifications import show_info, show_warning

from ..core.columns import FRAME, X_NM, Y_NM, empty_table
from ..core.frames import parse_frame_selection
from ..core.localization_csv import is_coordinate_label, read_back_problems

#: diameter of a localization marker, in nm
POINT_SIZE_NM = 60.0
#: marker colours: DeepCEL0 and CEL0 localizations, and tables read from files
#: (e.g. ground truth, drawn as rings)
DEEPCEL0_COLOR, CEL0_COLOR, FILE_COLOR = "#ffcc00", "#00e5ff", "#ff40ff"
STACK_AXES = ("frame", "y", "x")
STACK_UNITS = ("", "nm", "nm")
#: layer kinds :func:`show_layer` makes
LAYER_TYPES = {"image": napari.layers.Image, "points": napari.layers.Points}
#: metadata key that marks the layers this plugin computes, with their kind ("render",
#: "maps", "match"; see :func:`is_output`)
OUTPUT = "napari_deepcel0_output"
#: metadata key that marks the Points of localizations this plugin makes and reads (their
#: hand edits are counted: :func:`track_hand_edits`)
LOCALIZATIONS = "napari_deepcel0_localizations"
#: metadata key of a localization layer's protocol (:mod:`napari_deepcel0.core.protocol`): set
#: when its run ends, written beside its CSV by :func:`.writer.write_points`
PROTOCOL = "napari_deepcel0_protocol"


def stack_transform(pixel_size_nm: float) -> dict:
    """``scale``/``translate``/``units``/``axis_labels`` of a (frames, rows, cols) stack in nm."""
    p = float(pixel_size_nm)
    return {"scale": (1.0, p, p), "translate": (0.0, p / 2, p / 2), "units": STACK_UNITS,
            "axis_labels": STACK_AXES}


def image_transform(pixel_nm: float, first_frame: int | None = None) -> dict:
    """Transform of a super-resolved image (2D), or of fine-grid maps starting at
    1-based frame ``first_frame`` (3D) when it is given."""
    q = float(pixel_nm)
    if first_frame is None:
        return {"scale": (q, q), "translate": (q / 2, q / 2), "units": STACK_UNITS[1:], "axis_labels": STACK_AXES[1:]}
    return {"scale": (1.0, q, q), "translate": (float(first_frame - 1), q / 2, q / 2), "units": STACK_UNITS,
            "axis_labels": STACK_AXES}


def layer_scale_nm(layer, axis: int = -1) -> float | None:
    """The pixel size (nm) that a layer's scale declares along ``axis`` (the last, x, by
    default; -2 for y) in a length unit (nm, um, ...); None in pixel units (napari's
    default: a scale of 1 is no pixel size)."""
    try:
        return float((layer.scale[axis] * layer.units[axis]).to("nm").magnitude)
    except (TypeError, AttributeError, IndexError):  # pixel units (pint's DimensionalityError); no units
        return None


def non_square_pixels(layer) -> tuple[float, float] | None:
    """(y, x) pixel size in nm when a layer's scale declares pixels that are not square
    (e.g. 120 x 100 nm), else None (square, in pixel units, or one axis only)."""
    y, x = layer_scale_nm(layer, -2), layer_scale_nm(layer, -1)
    if y is None or x is None or abs(y - x) <= 1e-6 * max(abs(x), abs(y)):
        return None
    return y, x


def stack_frame_count(layer) -> int:
    """Number of frames of an Image layer to analyse: a (frames, rows, cols) stack or one
    (rows, cols) frame of gray values; ValueError naming the layer for anything else
    (RGB, more dimensions, a multiscale pyramid, whose first axis is its levels), and
    for no layer (None: nothing chosen)."""
    if layer is None:
        raise ValueError("open a stack (an Image layer) first")
    if layer.rgb or layer.ndim not in (2, 3):
        raise ValueError(f"{layer.name} is not a (frames, rows, cols) stack of gray frames")
    if layer.multiscale:
        raise ValueError(f"{layer.name} is a multiscale (pyramid) image; open the stack itself")
    return 1 if layer.ndim == 2 else layer.data.shape[0]


def points_from_table(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Points coordinates ``(frame - 1, y, x)`` (n, 3) and the other columns as features."""
    coords = np.column_stack(
        [table[FRAME].to_numpy(np.float64) - 1.0, table[Y_NM].to_numpy(np.float64), table[X_NM].to_numpy(np.float64)]
    ) if len(table) else np.zeros((0, 3))
    features = table.drop(columns=[FRAME, X_NM, Y_NM]).reset_index(drop=True)
    return coords, features


def points_layer_kwargs(name: str, features: pd.DataFrame, face_color=DEEPCEL0_COLOR, symbol="disc",
                        metadata: dict | None = None) -> dict:
    """Keyword arguments of a localization Points layer (sizes in nm)."""
    return {
        "name": name,
        "features": features,
        "size": POINT_SIZE_NM,
        "face_color": face_color,
        "border_width": 0,
        "symbol": symbol,
        "out_of_slice_display": False,
        "units": STACK_UNITS,
        "axis_labels": STACK_AXES,
        # (the Matching widget's TP/FP/FN labels are no localizations)
        "metadata": {**({} if (metadata or {}).get(OUTPUT) else {LOCALIZATIONS: True}), **(metadata or {})},
    }


def table_from_points(data, features=None, scale=None, translate=None) -> pd.DataFrame:
    """A localization table (frames 1-based, nm) from Points layer data.

    ``data`` are layer coordinates; with ``scale``/``translate`` they are mapped to
    world coordinates (nm) first. 3D points are ``(frame - 1, y, x)``; 2D points
    ``(y, x)`` are put in frame 1. Numeric feature columns become extra columns, but for
    those named like a coordinate (``"x"``, ``"frame"``), which would read back as a
    second one, and those a ThunderSTORM CSV would not give back as they are (``sigma``
    read as ``sigma [nm]``, ``sigma [px]``, ``xnano``: the CSV writer refuses such
    tables), which are named with the reason in ``table.attrs["left_out"]``.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] not in (2, 3):
        raise ValueError(f"points must be 2D (y, x) or 3D (frame, y, x), got shape {data.shape}")
    ndim = data.shape[1]
    scale = np.ones(ndim) if scale is None else np.asarray(scale, dtype=np.float64)[-ndim:]
    translate = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=np.float64)[-ndim:]
    world = data * scale + translate
    frames = np.round(world[:, 0]).astype(np.int64) + 1 if ndim == 3 else np.ones(len(world), np.int64)
    table = pd.DataFrame({FRAME: frames, X_NM: world[:, -1], Y_NM: world[:, -2]})
    left_out = {}
    if features is not None and len(features) == len(table):
        for column in features.columns:
            values = features[column]
            # a feature named like a coordinate ("x", "Y [px]") would read back as a second x column
            if is_coordinate_label(column) or not pd.api.types.is_numeric_dtype(values):
                continue
            problems = read_back_problems([*table.columns, str(column)])  # (xnano with ynano: an ISBI file)
            if problems:  # e.g. a feature "sigma" of another plugin, in pixels: read back as "sigma [nm]"
                left_out[str(column)] = problems[0]
            else:
                table[str(column)] = values.to_numpy()
    table.attrs["left_out"] = left_out
    return table


def localized_frames(layer) -> np.ndarray | None:
    """The 1-based frames that the run of a localization layer has processed (those of
    :func:`table_from_layer`'s table), also of a CSV opened with its run's protocol (its
    ``input.frames``: a saved run of frames 1-20 scored 4 % against a ground truth of 361
    frames in a later session, 63 % in its own: a review), or None for a layer that no
    run made."""
    run = growing_run(layer)
    if run is not None:
        return run.frames_done()
    if "frames" in layer.metadata:
        return layer.metadata["frames"]
    protocol = layer.metadata.get(PROTOCOL)
    frames = protocol.get("input", {}).get("frames") if isinstance(protocol, dict) else None
    return protocol_frames(frames) if isinstance(frames, str) else None


def protocol_frames(text: str) -> np.ndarray | None:
    """The 1-based frame numbers of a protocol's ``"1-20,30"`` (None when it is none)."""
    ends = [int(n) for n in re.findall(r"\d+", text)]
    if not ends or not re.fullmatch(r"\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*", text):
        return None
    return parse_frame_selection(text, max(ends)) + 1


def table_from_layer(layer) -> pd.DataFrame:
    """The localization table of a Points layer (see :func:`table_from_points`); of a
    layer that a run is filling, every localization so far (see :class:`GrowingPoints`)."""
    run = growing_run(layer)
    if run is not None:
        return run.table()
    return table_from_points(layer.data, layer.features, layer.scale, layer.translate)


def show_layer(viewer, kind: str, data, kwargs: dict):
    """Show ``data`` in a layer named ``kwargs["name"]``.

    A layer that an earlier run made for the same output (see :func:`is_run_output`),
    named so or numbered by napari (``"name [1]"``), is updated in place (data and every
    keyword but the name), so that it stays the same object and the drop-downs that
    chose it keep it; it is replaced when its kind or dimension differs. Any other layer
    of that name (one the user made, or read from a file, e.g. an earlier run saved and
    opened again) is left as it is: the new layer gets a numbered name.
    """
    name = kwargs["name"]
    ndim = np.shape(data)[1] if kind == "points" else np.ndim(data)
    metadata = kwargs.get("metadata") or {}
    earlier = [layer for layer in viewer.layers
               if _same_or_numbered(layer.name, name) and is_run_output(layer, metadata)]
    earlier.sort(key=lambda layer: layer.name != name)  # the one named so first
    layer = earlier[0] if earlier else None
    # isinstance, not the type's name: a widget docked from napari's Plugins menu gets a
    # proxy of the viewer, whose layers are proxies too (their type's name is the proxy's)
    if layer is None or not isinstance(layer, LAYER_TYPES[kind]) or layer.ndim != ndim:
        if layer is not None:
            viewer.layers.remove(layer)
        return getattr(viewer, f"add_{kind}")(data, **kwargs)  # napari numbers a name in use
    with setting_data(layer):
        layer.data = data
    for key, value in kwargs.items():
        if key != "name":  # "name" when a user's layer holds it: napari would number it again
            setattr(layer, key, value)
    return layer


def _same_or_numbered(name: str, wanted: str) -> bool:
    """True for ``wanted`` and the names napari numbers it to (``"wanted [2]"``)."""
    return name == wanted or re.fullmatch(re.escape(wanted) + r" \[\d+\]", name) is not None


def frame_on_screen(viewer) -> int | None:
    """The 1-based frame the viewer shows on the frame axis of this plugin's Points
    (frame, y, x), or None when there is none or it is displayed (a 3-D view)."""
    dims = viewer.dims
    axis = dims.ndim - 3  # the points' frame axis among the viewer's
    if axis < 0 or axis in dims.displayed:
        return None
    return int(round(dims.point[axis])) + 1


#: a run shows its first frame unless the frame on screen is among its first this many
#: (a first batch of 16 on a CPU)
FRAMES_SOON = 16


def show_first_frame_unless_shown(viewer, frames) -> None:
    """Move the frame slider to the first of ``frames`` (1-based) when the frame on
    screen is not among their first :data:`FRAMES_SOON`: otherwise a run of frames 1-40 on
    a stack opened at frame 180 shows no localization (Points are drawn on their own frame
    only), and a run of all 361 frames none for half its time (a review). A single 2-D
    image is drawn on every frame of the other stacks, its localizations on frame 1 only.
    A 3-D view, which shows every frame, is left alone."""
    on_screen = frame_on_screen(viewer)
    if on_screen is not None and on_screen not in set(np.asarray(frames)[:FRAMES_SOON].tolist()):
        viewer.dims.set_point(viewer.dims.ndim - 3, float(frames[0] - 1))


def keep_in_viewer(viewer, layer) -> None:
    """Add ``layer`` back to the viewer when it was deleted while a run writes to it,
    so that no result is lost."""
    if layer not in viewer.layers:
        viewer.layers.append(layer)
        show_info(f"{layer.name} was deleted during the run: it is back, with every result so far")


def is_read_from_file(layer) -> bool:
    """True for layers this plugin's readers made: Points read from a localization file
    (a ground truth, usually; ``metadata["source"]``) and images read from a TIFF
    (``metadata["path"]``)."""
    return "source" in layer.metadata or "path" in layer.metadata


def is_localization_run(layer) -> bool:
    """True for the Points of a Localize or CEL0 run (:class:`GrowingPoints`)."""
    return "frames" in layer.metadata


def is_localization_result(layer) -> bool:
    """True for the localizations of a run: this session's (:func:`is_localization_run`) or
    those of a CSV opened with its run's protocol beside it (a saved run, no ground truth:
    opened in a later session, Matching took it for both, and the sweep would have)."""
    return is_localization_run(layer) or isinstance(layer.metadata.get(PROTOCOL), dict)


def is_output(layer) -> bool:
    """True for the layers this plugin computes: images (renderings, maps), which are no
    stacks to analyse, and the matching layer."""
    return bool(layer.metadata.get(OUTPUT))


def is_run_output(layer, metadata: dict) -> bool:
    """True when ``layer`` was made by a run of this plugin for the output that a layer
    with ``metadata`` shows, so that a new run may show its result there: the Points of a
    localization run (``"frames"``) or an output of the same kind (``metadata[OUTPUT]``),
    and not read from a file (a saved result opened again is the user's), nor edited by
    hand (:data:`HAND_EDITS`: curated, it is the user's too), nor filled by a run still
    going (:func:`filled_by_a_run`: two runs at once, from two widgets or one whose panel
    was closed, shared one layer, and the first to end showed its table over the other's
    and marked it finished)."""
    if is_read_from_file(layer) or filled_by_a_run(layer) or layer.metadata.get(HAND_EDITS):
        return False  # (a layer curated by hand is the user's: a new run emptied it without a word)
    if metadata.get(OUTPUT):
        return layer.metadata.get(OUTPUT) == metadata[OUTPUT]
    return "frames" in metadata and is_localization_run(layer)


#: metadata key of a localization layer's edits by hand since it was made or opened:
#: ``{"added": n, "removed": n, "moved": n}`` (see :func:`track_hand_edits`), which the
#: writer puts in the protocol beside the CSV
HAND_EDITS = "napari_deepcel0_hand_edits"
#: the layers whose hand edits are counted (weakly: a deleted layer goes)
_TRACKED: "weakref.WeakSet" = weakref.WeakSet()
#: ids of the layers whose data this plugin is setting now (no hand edit; :func:`setting_data`),
#: with the number of :func:`setting_data` blocks open for each
_SETTING: "collections.Counter[int]" = collections.Counter()
#: per layer (weakly), what it held when napari announced a change (``adding``,
#: ``removing``, ``changing``): its number of points, and for a change its coordinates and
#: features, so that the change is counted by what it did (a script's ``layer.data = ...``
#: announces every point) and the features follow their points
_BEFORE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: per layer (weakly), its number of points after the last change of its data announced
#: (:func:`_count_pasted`)
_COUNT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def setting_data(layer):
    """Wrap this plugin's own changes of a tracked layer's data (a run showing its table),
    which :func:`track_hand_edits` must not count as edits by hand. Blocks may nest (napari
    moves the slider while a run's first points widen the view, and the run shows the
    frame again from within): the layer's id stays until the outermost block ends (the
    inner one took it out, and the rest of the outer change counted as a hand edit, with a
    false warning on every CEL0 comparison: a review)."""
    key = id(getattr(layer, "__wrapped__", layer))
    _SETTING[key] += 1
    try:
        yield
    finally:
        _SETTING[key] -= 1
        if not _SETTING[key]:
            del _SETTING[key]


def track_hand_edits(layer) -> None:
    """Watch the Points ``layer`` of localizations for points added, removed and moved by
    hand (napari's Points tools, or a script setting ``layer.data``), once per layer.

    A point added by hand gets NaN for its numeric features: napari copies them from the
    point selected or added last, so that the CSV gave it another molecule's intensity and
    uncertainty. The edits are counted in ``metadata[HAND_EDITS]`` by what they did (the
    points added, removed, and moved, a point moved twice counting twice; napari's paste of
    copied points announces no change of the data: it is caught when the layer is next
    drawn, :func:`_count_pasted`), and the writer puts them in
    the protocol: the table is then no longer only what the run found. Edits of a layer
    that a run is filling are undone when it shows the next frame (the run keeps its own
    table): a warning says so, once per run.
    """
    layer = getattr(layer, "__wrapped__", layer)  # a proxy's layer (a widget of the Plugins menu): counted once
    if layer in _TRACKED or not isinstance(layer, LAYER_TYPES["points"]):
        return
    _TRACKED.add(layer)
    layer_ref = weakref.ref(layer)  # the layer's own event must not keep it alive
    _COUNT[layer] = len(layer.data)
    layer.events.data.connect(lambda event: _data_changed(layer_ref(), event))
    layer.events.set_data.connect(lambda event: _count_pasted(layer_ref()))


def is_localization_layer(layer) -> bool:
    """True for the Points of localizations this plugin made or read (a run's, a CSV's, or a
    copy of one: ``metadata[LOCALIZATIONS]``), not another plugin's layer, nor the
    Matching widget's."""
    return bool(layer.metadata.get(LOCALIZATIONS)) and not is_output(layer)


def _viewers_of(viewer) -> list:
    """``viewer`` and every other napari viewer open (napari keeps them in
    ``Viewer._instances``): a file may be opened into a viewer other than the current one."""
    others = list(getattr(napari.Viewer, "_instances", ()))
    return [viewer, *others] if viewer is not None else others


#: the viewers whose localization layers :func:`track_localization_layers` watches
_WATCHED_VIEWERS: "weakref.WeakSet" = weakref.WeakSet()


def track_localization_layers(viewer=None) -> None:
    """Count the hand edits (:func:`track_hand_edits`) of the localizations in ``viewer``
    and in every other viewer open, and of those added to them from now on (read from a
    file, a run's, or a copy of a run's: Duplicate Layer). Called by the reader and by the
    widgets' shared state; each viewer is watched once."""
    for one in _viewers_of(viewer):
        one = getattr(one, "__wrapped__", one)
        if one in _WATCHED_VIEWERS:
            continue
        _WATCHED_VIEWERS.add(one)
        for layer in one.layers:
            if is_localization_layer(layer):
                track_hand_edits(layer)
        one.layers.events.inserted.connect(
            lambda event: track_hand_edits(event.value) if is_localization_layer(event.value) else None)


def _data_changed(layer, event) -> None:
    if layer is None:
        return
    _count_hand_edit(layer, event)
    if not str(getattr(event, "action", "")).endswith("ing"):  # (adding, removing, changing: not yet)
        _COUNT[layer] = len(layer.data)


def _count_pasted(layer) -> None:
    """Count the points that napari appended without announcing a change of the data (its
    paste of copied points, Ctrl+V), when the layer is drawn next (``set_data``), as points
    added by hand: NaN features (napari pastes those of the points copied, so that a
    molecule copied to another frame went into the CSV as found there, with its
    intensity) and counted in the protocol."""
    if layer is None or id(layer) in _SETTING or layer in _BEFORE:  # (a change announced is under way)
        return
    now, known = len(layer.data), _COUNT.get(layer)
    _COUNT[layer] = now
    if known is not None and now > known:
        _record_hand_edits(layer, {"added": now - known}, clear_added=True)


def _count_hand_edit(layer, event) -> None:
    if id(layer) in _SETTING:
        return
    action = str(getattr(event, "action", ""))
    if action in ("adding", "removing", "changing"):  # what the layer holds before the change
        changing = action == "changing"
        _BEFORE[layer] = (len(layer.data), np.array(layer.data) if changing else None,
                          layer.features.copy() if changing else None)
        return
    before_count, before_data, before_features = _BEFORE.pop(layer, (None, None, None))
    if action not in ("added", "removed", "changed"):
        return
    followed = (action == "changed" and before_data is not None and len(layer.data) != before_count
                and growing_run(layer) is None)
    if followed:  # (its new points got NaN features there)
        counts = _features_follow_points(layer, before_data, before_features)
    else:
        counts = _edit_counts(layer, action, len(getattr(event, "data_indices", ()) or ()), before_count,
                              before_data)
    _record_hand_edits(layer, counts, clear_added=not followed)  # napari's add: the new points are the last


def _record_hand_edits(layer, counts: dict[str, int], clear_added: bool) -> None:
    """Add ``counts`` (points added, removed, moved) to the layer's :data:`HAND_EDITS`,
    and give the last ``counts["added"]`` points NaN features when ``clear_added``; on a
    layer a run is filling, a warning instead (once a run)."""
    if not any(counts.values()):
        return
    run = growing_run(layer)
    if run is not None:
        if not run.hand_edit_warned:
            run.hand_edit_warned = True
            show_warning(f"{layer.name}: a run is filling this layer; points added, removed or moved by hand are "
                         "undone when it shows the next frame (the run keeps its own table): edit them once the "
                         "run has ended")
        return
    if counts.get("added") and clear_added:
        _clear_features_of_last(layer, counts["added"])
    total = dict(layer.metadata.get(HAND_EDITS) or {})
    for kind, n in counts.items():
        if n:
            total[kind] = total.get(kind, 0) + n
    layer.metadata[HAND_EDITS] = total


def _edit_counts(layer, action: str, indices: int, before_count: int | None,
                 before_data: np.ndarray | None) -> dict[str, int]:
    """The points an edit added, removed or moved: from the number of points before and
    after it, and for a change the coordinates that differ (napari's ``data`` setter
    announces every point as changed, and a filter ``layer.data = layer.data[keep]`` as a
    change); from the event's indices when napari announced nothing before (a drag)."""
    now = len(layer.data)
    if before_count is None:
        return {{"added": "added", "removed": "removed", "changed": "moved"}[action]: indices}
    if now != before_count:
        return {"added": max(0, now - before_count), "removed": max(0, before_count - now)}
    if action == "changed" and before_data is not None and before_data.shape == np.shape(layer.data):
        return {"moved": int(np.any(before_data != np.asarray(layer.data), axis=1).sum())}
    return {"moved": indices} if action == "changed" else {}


def _features_follow_points(layer, before_data: np.ndarray, before_features: pd.DataFrame) -> dict[str, int]:
    """After a script set ``layer.data`` to another number of points (a filter,
    ``layer.data = layer.data[keep]``), give each point the features of the point it was
    (the one at the same coordinates; napari keeps the first rows' features, so a filter
    gave the points kept other molecules' intensities), NaN to new points, and count the
    points added and removed."""
    now = np.asarray(layer.data)
    matched = _same_rows(before_data, now)
    features = before_features.reset_index(drop=True).reindex(matched)  # -1: a row of NaN
    layer.features = features.reset_index(drop=True)
    kept = int((matched >= 0).sum())
    return {"added": len(now) - kept, "removed": len(before_data) - kept}


def _same_rows(before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """For each row of ``now``, the index of a row of ``before`` with the same values (each
    used once, in order), or -1."""
    if before.ndim != 2 or now.ndim != 2 or before.shape[1] != now.shape[1]:
        return np.full(len(now), -1)
    columns = list(range(now.shape[1]))

    def keyed(rows):  # the values and which of their repeats a row is
        table = pd.DataFrame(rows, columns=columns)
        table["repeat"] = table.groupby(columns).cumcount()
        return table

    old = keyed(before)
    old["row"] = np.arange(len(before))
    merged = keyed(now).merge(old, on=[*columns, "repeat"], how="left")
    return merged["row"].fillna(-1).astype(np.int64).to_numpy()


def _clear_features_of_last(layer, rows: int) -> None:
    """NaN for the numeric features of the last ``rows`` points (added by hand)."""
    features = layer.features  # napari's own table: changed in place
    new = features.index[-rows:]
    for column in features.columns:
        if pd.api.types.is_numeric_dtype(features[column]) and not pd.api.types.is_bool_dtype(features[column]):
            if not pd.api.types.is_float_dtype(features[column]):
                features[column] = features[column].astype(np.float64)
            features.loc[new, column] = np.nan


class RefreshPacer:
    """When to redraw the layers a run grows: at most every ``min_interval_s``, and
    rarely enough that redrawing takes at most ``max_share`` of the time: a large
    render's blur or a stack of fine-grid maps can take a good part of a second, and
    shown every half second they would freeze napari; this way the pause after each
    redraw grows with its cost. (The localizations cost little while a run goes on:
    :class:`GrowingPoints` shows the frame on screen only.)
    """

    def __init__(self, min_interval_s: float = 0.5, max_share: float = 0.1, clock=time.monotonic):
        self.min_interval_s, self.max_share, self.clock = min_interval_s, max_share, clock
        self._next = -float("inf")

    def due(self) -> bool:
        return self.clock() >= self._next

    @contextlib.contextmanager
    def redrawing(self):
        """Wrap a redraw: its duration sets the earliest time of the next one."""
        start = self.clock()
        yield
        end = self.clock()
        self._next = end + max(self.min_interval_s, (end - start) / self.max_share)


#: metadata key of a layer that a run is filling: the token under which its
#: :class:`GrowingPoints` is found (:func:`growing_run`, :func:`filled_by_a_run`)
RUN_TOKEN = "napari_deepcel0_run"
#: the runs filling a Points layer now, by their token (weakly: a run whose widget is gone,
#: napari closed during it, is no longer found and takes its tables with it)
_GROWING: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def filled_by_a_run(layer) -> bool:
    """True while a run fills ``layer`` (its Points, or a render or maps layer that the
    run tagged with its :data:`RUN_TOKEN`)."""
    return layer.metadata.get(RUN_TOKEN) in _GROWING


def growing_run(layer=None, metadata: dict | None = None) -> "GrowingPoints | None":
    """The :class:`GrowingPoints` filling ``layer`` (or the layer of this ``metadata``, as
    napari gives writers) while its run goes on (the layer then shows only the frame on
    screen; :meth:`GrowingPoints.table` has them all), else None."""
    metadata = layer.metadata if layer is not None else (metadata or {})
    return _GROWING.get(metadata.get(RUN_TOKEN)) if metadata.get("running") else None


class GrowingPoints:
    """A Points layer of localizations that grows as batches of a run arrive.

    While the run goes on the layer holds only the localizations of the frame on screen
    (following the frame slider), which is all that napari draws of it: napari re-sets a
    Points layer point by point when it grows (1.2-1.6 s per million points on the GUI
    thread, ``benchmarks/points_refresh.py``), so a run of a million localizations froze
    napari at every refresh. The whole table goes into the layer once, when
    :meth:`finish` ends the run; until then
    :meth:`table` (found by :func:`growing_run`, which :func:`table_from_layer` and the
    Export widget use) holds every localization so far. With the frame axis displayed (a
    3D view) every localization so far is shown.

    ``metadata["frames"]`` lists the 1-based frames processed by the last redraw (those of
    :meth:`table`, while the run goes on: :func:`localized_frames`), so that a
    ground-truth comparison can be restricted to them; ``metadata["running"]`` is True
    until :meth:`finish` (so that an export can say the table is not complete yet).

    The layer of the same name from an earlier run is reused, never a layer the user made
    or opened (see :func:`show_layer`), and the layer is added back if it is deleted
    during the run.

    Parameters
    ----------
    viewer
        The napari viewer.
    name
        Layer name.
    face_color
        Marker colour.
    mass_column
        The localizer's mass column (for the empty table's features).
    """

    #: batches kept apart at most (then merged into one table): a run of per-frame results
    #: (large frames, photometry) otherwise piles up a table per frame
    MAX_PIECES = 256

    def __init__(self, viewer, name: str, face_color: str, mass_column: str = "confidence"):
        self.viewer = viewer
        self.tables: list[pd.DataFrame] = [empty_table(mass_column)]
        self.frames: list[np.ndarray] = []
        self._count = 0
        self._table_of_frame: dict[int, int] = {}  # 1-based frame -> index in tables of the piece holding it
        coords, features = points_from_table(self.tables[0])
        self.token = uuid.uuid4().hex
        self.layer = show_layer(viewer, "points", coords, points_layer_kwargs(
            name, features, face_color=face_color, metadata={"frames": np.zeros(0, np.int64), "running": True}))
        self.layer.metadata.update({"running": True, RUN_TOKEN: self.token})  # also on a layer reused
        self.layer.metadata.pop(HAND_EDITS, None)  # of the table an earlier run showed in it
        self.hand_edit_warned = False
        track_hand_edits(self.layer)
        self._owned = [self.layer]  # the run's layers (its render and maps too: own())
        _GROWING[self.token] = self
        self._shown_frame: int | None = None
        self._showing = False  # in refresh, showing a frame (the slider's moves wait)
        for event in self._SLIDER_EVENTS:
            getattr(viewer.dims.events, event).connect(self._follow_slider)
        viewer.layers.events.inserted.connect(self._fill_copy)

    #: the viewer's dims events that may change the frame on screen or display the frame axis
    _SLIDER_EVENTS = ("current_step", "ndisplay", "order")

    @property
    def count(self) -> int:
        """Localizations received so far."""
        return self._count

    def add(self, table: pd.DataFrame, frames: np.ndarray) -> None:
        """Keep a batch's localizations (shown at the next :meth:`refresh`)."""
        frames = np.asarray(frames, dtype=np.int64)
        self.tables.append(table)
        self.frames.append(frames)
        self._count += len(table)
        self._table_of_frame.update(dict.fromkeys(frames.tolist(), len(self.tables) - 1))
        if len(self.tables) > self.MAX_PIECES:
            self._merge()

    def _merge(self) -> None:
        self.tables = [pd.concat(self.tables, ignore_index=True)]
        self.frames = [np.concatenate(self.frames)] if self.frames else []
        self._table_of_frame = dict.fromkeys(self._table_of_frame, 0)

    def table(self) -> pd.DataFrame:
        """Every localization received so far."""
        if len(self.tables) > 1:
            self._merge()
        return self.tables[0]

    def frames_done(self) -> np.ndarray:
        """The 1-based frames processed so far (those of :meth:`table`)."""
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int64)

    def _show(self, table: pd.DataFrame) -> None:
        coords, features = points_from_table(table)
        keep_in_viewer(self.viewer, self.layer)
        with setting_data(self.layer):
            self.layer.data = coords
        self.layer.features = features

    def _follow_slider(self, *_) -> None:
        # not for a layer out of the viewer: napari closing removes every layer, which moves the slider;
        # nor while showing a frame (the first points may widen the view, which moves the slider:
        # refresh looks again once they are shown)
        if (not self._showing and self.layer.metadata.get("running") and self.layer in self.viewer.layers
                and frame_on_screen(self.viewer) != self._shown_frame):
            self.refresh()

    def own(self, layer) -> None:
        """Mark ``layer`` (the run's render or maps) as the run's until it ends
        (:func:`filled_by_a_run`)."""
        layer.metadata[RUN_TOKEN] = self.token
        self._owned.append(layer)

    def _fill_copy(self, event) -> None:
        """A copy of one of the run's layers added to the viewer during the run (Duplicate
        Layer) is no layer of the run; a copy of its Points gets every localization so
        far: it held the frame on screen only, with the run's list of frames, so that once
        the run ended Matching scored the other frames' molecules as missed. (The run's
        own layers, put back after a deletion, are left alone: napari gives them as the
        layers, the run may hold proxies of them, from a widget of the Plugins menu.)"""
        copy = event.value
        if (copy.metadata.get(RUN_TOKEN) != self.token
                or any(copy is getattr(layer, "__wrapped__", layer) for layer in self._owned)):
            return
        # a dict of its own: napari's copy may share the original's metadata dict
        metadata = {k: v for k, v in copy.metadata.items() if k != RUN_TOKEN}
        if isinstance(copy, LAYER_TYPES["points"]):
            coords, features = points_from_table(self.table())
            with setting_data(copy):
                copy.data = coords
            copy.features = features
            metadata.update({"running": False, "frames": self.frames_done()})
        copy.metadata = metadata

    def refresh(self) -> None:
        """Show the localizations received so far: those of the frame on screen while the
        run goes on, every one once it has finished."""
        for _ in range(2):  # again if showing the frame moved the slider to another
            frame = frame_on_screen(self.viewer) if self.layer.metadata.get("running") else None
            self._showing = True
            try:
                if frame is None:
                    self._show(self.table())
                else:
                    batch = self.tables[self._table_of_frame.get(frame, 0)]
                    self._show(batch[batch[FRAME].to_numpy() == frame])
            finally:
                self._showing = False
            self._shown_frame = frame
            if frame is None or frame_on_screen(self.viewer) == frame:
                break
        self.layer.metadata["frames"] = self.frames_done()

    def finish(self) -> None:
        """Mark the run over (finished, cancelled or failed) and show every localization."""
        for event in self._SLIDER_EVENTS:
            getattr(self.viewer.dims.events, event).disconnect(self._follow_slider)
        self.viewer.layers.events.inserted.disconnect(self._fill_copy)
        _GROWING.pop(self.token, None)
        self.layer.metadata["running"] = False
        self.layer.metadata.pop(RUN_TOKEN, None)
        self.refresh()
