"""Settings shared by the dock widgets of one viewer.

One :class:`PluginState` per viewer holds the acquisition settings (edited in the
Acquisition widget, used by training, localization and CEL0) and the current model
file (set by training or chosen in the Localize widget, used by Localize and CEL0);
both persist between sessions. It also tells the layer drop-downs which output layers
a run shows (:attr:`PluginState.outputs_shown`). Widgets get it with :func:`state_for`
and listen to its signals.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from napari.utils.notifications import show_info, show_warning
from psygnal import Signal

from ..core.acquisition import Acquisition, is_real_number
from .layers import layer_scale_nm, non_square_pixels, stack_transform, track_localization_layers
from .settings import load_value, save_value

_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class PluginState:
    """Acquisition settings and current model shared by the widgets of a viewer.

    Both persist between sessions. Image layers that carry a pixel size from their
    file (``layer.metadata["pixel_size_nm"]``, set by this plugin's reader) update the
    acquisition's pixel size when they are added, and again when a widget analyses
    them (:meth:`prepare_stack`).
    """

    acquisition_changed = Signal(object)
    model_changed = Signal(object)
    #: emitted by a run with the output layers it shows (the main one first): the layer
    #: drop-downs that prefer such layers move to them (see :class:`~.controls.LayerChooser`)
    outputs_shown = Signal(object)

    def __init__(self, viewer=None):
        self._viewer = weakref.ref(viewer) if viewer is not None else (lambda: None)
        self._acquisition = saved_acquisition()
        stored = load_value("model")
        self._model_path = Path(stored) if isinstance(stored, str) and stored else None
        self._ignored_pixel_sizes: set[tuple[str, str]] = set()  # (layer, metadata) already warned about
        self._acquisition_jobs: list[weakref.ref] = []  # JobControls of the runs that take the acquisition

    def watch_job(self, job) -> None:
        """Count ``job`` (a widget's :class:`~.jobs.JobControls`) among the runs that start
        with the acquisition: while it runs, a change of the acquisition says that it keeps
        the settings it started with."""
        self._acquisition_jobs.append(weakref.ref(job))

    def _running_jobs(self) -> list[str]:
        jobs = (ref() for ref in self._acquisition_jobs)
        return [job.title for job in jobs if job is not None and job.busy and not job.closed]  # (closed: cancelled)

    @property
    def acquisition(self) -> Acquisition:
        """The current (validated) acquisition settings."""
        return self._acquisition

    @acquisition.setter
    def acquisition(self, acq: Acquisition) -> None:
        if acq == self._acquisition:
            return
        self._acquisition = acq
        save_value("acquisition", acq.to_dict())
        self.acquisition_changed.emit(acq)

    @property
    def model_path(self) -> Path | None:
        """The current model file; None means the bundled model."""
        return self._model_path

    @model_path.setter
    def model_path(self, path: Path | None) -> None:
        path = Path(path) if path else None
        if path == self._model_path:
            return
        self._model_path = path
        save_value("model", path)
        self.model_changed.emit(path)

    def model_written(self, path: Path) -> None:
        """A model file was (re)written: it becomes the current model, and the widgets hear
        of it also when it already was (its contents changed, maybe its L)."""
        if Path(path) == self._model_path:
            self.model_changed.emit(self._model_path)
        else:
            self.model_path = path

    def edit_acquisition(self, acq: Acquisition, layer=None) -> None:
        """Settings typed by the user for the stack ``layer`` (the Acquisition widget's).
        A new pixel size is a correction of that stack when its file carried the old one:
        its ``metadata["pixel_size_nm"]`` takes the new value, so that analysing it
        (:meth:`prepare_stack`) keeps it. Other stacks keep their files' sizes (a size
        typed for one stack rewrote every stack of the old size, a reset too). That stack,
        displayed at the old size, is redrawn at the new one at once (it was at its next
        run: until then the scale bar and a ground truth overlaid were off by the ratio)."""
        old = self._acquisition.pixel_size_nm
        if layer is not None and acq.pixel_size_nm != old:
            try:
                declared = declared_pixel_size(layer)
            except TypeError:
                declared = None
            if declared == old:
                layer.metadata["pixel_size_nm"] = acq.pixel_size_nm
        changed = acq != self._acquisition
        self.acquisition = acq
        if (layer is not None and acq.pixel_size_nm != old and getattr(layer, "ndim", 0) >= 2
                and np.allclose(layer.scale[-2:], old, rtol=1e-6, atol=0.0)):
            self.prepare_stack(layer)
        # (the runs filling Points layers were named, a CEL0 comparison before its first batch, a lambda
        # sweep and a training were not: a review)
        running = self._running_jobs() if changed else []
        if running:  # the stack was redrawn at once, "lined up", while the run went on as it began
            show_warning(f"Acquisition: the run(s) going on ({', '.join(running)}) keep the settings they started "
                         "with: run again to use the new ones")

    def _declared_acquisition(self, layer) -> tuple[Acquisition | None, str]:
        """The current acquisition at the pixel size ``layer``'s file declares, and what
        is wrong with that size: ``(None, "")`` when the file declares none or the same
        size, ``(None, why)`` when its size is no number or no camera pixel size."""
        try:
            pixel = declared_pixel_size(layer)
        except TypeError as exc:
            return None, str(exc)
        if pixel is None or pixel == self._acquisition.pixel_size_nm:
            return None, ""
        try:
            return self._acquisition.replace(pixel_size_nm=pixel), ""
        except ValueError as exc:
            return None, (f"{layer.name}: pixel size {pixel:g} nm from the file was not applied (is it a "
                          f"super-resolved image rather than camera frames?): {exc}")

    def adopt_pixel_size(self, layer) -> None:
        """Use the pixel size a layer's file declares (no-op when it has none; a warning,
        once per layer and value, when it is not a number or not a camera pixel size)."""
        acq, problem = self._declared_acquisition(layer)
        if problem:
            key = (layer.name, repr(layer.metadata.get("pixel_size_nm")))
            if key not in self._ignored_pixel_sizes:
                self._ignored_pixel_sizes.add(key)
                show_warning(problem)
        elif acq is not None:
            self.acquisition = acq
            show_info(f"Acquisition: pixel size set to {acq.pixel_size_nm:g} nm from the metadata of {layer.name}")

    def acquisition_for(self, layer) -> Acquisition:
        """The acquisition :meth:`prepare_stack` would analyse ``layer`` with, changing
        nothing (the pixel size its file declares when that is valid, else the current)."""
        return self._declared_acquisition(layer)[0] or self._acquisition

    def prepare_stack(self, layer) -> Acquisition:
        """The acquisition to analyse an image layer with.

        The pixel size of the layer's file is adopted first (the acquisition may hold
        that of another file); a layer displayed otherwise than the localizations
        are (another pixel size because its file had none, napari's default translate
        of 0, which draws each pixel half a pixel too far up and left, a crop's offset,
        another frame axis) then gets :func:`~.layers.stack_transform`, so that the
        localizations land on the molecules.
        """
        self.adopt_pixel_size(layer)
        pixel = self._acquisition.pixel_size_nm
        wanted = stack_transform(pixel)
        scale, translate = (np.asarray(wanted[key][-layer.ndim:], np.float64) for key in ("scale", "translate"))
        dropped = _drop_rotation(layer)
        if dropped:
            show_warning(f"{layer.name} was drawn {dropped}, the localizations are not (they lie on the camera's "
                         f"pixel grid): it is now drawn without it, so that the two line up")
        if not (np.allclose(layer.scale, scale, rtol=1e-6, atol=0.0)
                and np.allclose(layer.translate, translate, rtol=0.0, atol=1e-6 * pixel)):
            declared = _calibration_nm(layer)
            oblong = non_square_pixels(layer) if declared is not None else None
            rescaled = not np.allclose(layer.scale, scale, rtol=1e-6, atol=0.0)
            assumed = (declared is None and rescaled and "pixel_size_nm" not in layer.metadata
                       and _SHOWN_AT not in layer.metadata)  # in pixel units, and not drawn by us before
            for key, value in wanted.items():
                setattr(layer, key, value[-layer.ndim:])
            layer.metadata[_SHOWN_AT] = pixel
            viewer = self._viewer()
            if rescaled and viewer is not None:  # the camera stays where the old scale put it: on an empty
                viewer.reset_view()  # corner (a translate of half a pixel keeps the user's view)
            if oblong is not None:
                show_warning(f"{layer.name} is drawn with pixels of {oblong[0]:g} x {oblong[1]:g} nm (rows x columns, "
                             f"its scale), but the analysis takes square camera pixels of the acquisition's "
                             f"{pixel:g} nm: it is now displayed and analysed at {pixel:g} x {pixel:g} nm. Localize "
                             f"frames of square pixels (set their size in the Acquisition widget)")
            elif declared is not None and abs(declared - pixel) > 1e-6 * pixel:
                show_warning(f"{layer.name} is drawn with {declared:g} nm pixels (its scale), but the acquisition "
                             f"pixel size is {pixel:g} nm: it is now displayed and analysed at {pixel:g} nm. If "
                             f"{declared:g} nm is right, set the pixel size in the Acquisition widget and run again")
            elif assumed:
                # opened by another reader (napari's own) or added from a script, in pixel units: the size is
                # assumed, which was said as an info only (a 160 nm stack scored 0.6 % at 100 nm: a review)
                show_warning(f"{layer.name} carries no pixel size: it is now displayed and analysed at the "
                             f"Acquisition widget's {pixel:g} nm; if the camera's pixel differs, set it there and "
                             "run again (this plugin's reader takes the size from the TIFF's metadata)")
            else:
                show_info(f"{layer.name} is now displayed in nm at the acquisition pixel size {pixel:g} nm, its "
                          f"first pixel centred at ({pixel / 2:g}, {pixel / 2:g}) nm, so that it lines up with the "
                          f"localizations")
        return self._acquisition


def _drop_rotation(layer) -> str:
    """Take a layer's rotation, shear and affine transform off (identity), and say which it
    had ("rotated", "sheared", "with an affine transform"; "" for none): the localizations
    lie on the camera's pixel grid, and a stack drawn rotated was drawn beside them, while
    a message said the two lined up (a review)."""
    n = layer.ndim
    had = {"rotated": not np.allclose(layer.rotate, np.eye(n)),
           "sheared": not np.allclose(layer.shear, 0.0),
           "with an affine transform": not np.allclose(layer.affine.affine_matrix, np.eye(n + 1))}
    if had["rotated"]:
        layer.rotate = np.eye(n)
    if had["sheared"]:
        layer.shear = np.zeros_like(np.asarray(layer.shear))
    if had["with an affine transform"]:
        layer.affine = np.eye(n + 1)
    return " and ".join(name for name, yes in had.items() if yes)


#: metadata key: the pixel size (nm) :meth:`PluginState.prepare_stack` displayed a layer at
_SHOWN_AT = "napari_deepcel0_shown_at_nm"


def _calibration_nm(layer) -> float | None:
    """The pixel size (nm) that an image layer's scale declares: its last-axis scale in
    a length unit (nm, um, ...), when neither this plugin's reader (a file without a
    pixel size is shown at the acquisition's) nor :meth:`PluginState.prepare_stack` set
    it; None in pixel units (napari's default)."""
    if "pixel_size_nm" in layer.metadata:  # the reader's (or a calibration taken from the metadata first)
        return None
    declared = layer_scale_nm(layer)
    if declared is None:
        return None
    shown_at = layer.metadata.get(_SHOWN_AT)
    return None if shown_at is not None and abs(declared - shown_at) <= 1e-6 * shown_at else declared


def declared_pixel_size(layer) -> float | None:
    """The camera pixel size (nm) that ``layer.metadata["pixel_size_nm"]`` declares (set
    by this plugin's reader from the file; other readers and users may set it too), or
    None when it declares none (no such key, None or 0). TypeError, with a message that
    names the layer, when it is no number (a string, a tuple: it is then ignored)."""
    pixel = layer.metadata.get("pixel_size_nm") if hasattr(layer, "metadata") else None
    if pixel is None:
        return None
    if not is_real_number(pixel):
        raise TypeError(f"{layer.name}: pixel size metadata {pixel!r} is not a number; ignored (the pixel size of "
                        "the Acquisition widget is used)")
    return float(pixel) or None


def saved_acquisition() -> Acquisition:
    """The acquisition settings saved by the last session (the defaults when none or
    unreadable)."""
    stored = load_value("acquisition")
    try:
        return Acquisition.from_dict(stored) if isinstance(stored, dict) else Acquisition()
    except (TypeError, ValueError):
        return Acquisition()


def state_for(viewer) -> PluginState:
    """The :class:`PluginState` of a viewer (created on first use)."""
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = PluginState(viewer)
        for layer in viewer.layers:
            state.adopt_pixel_size(layer)
        viewer.layers.events.inserted.connect(lambda event: state.adopt_pixel_size(event.value))
        track_localization_layers(viewer)
    return state
