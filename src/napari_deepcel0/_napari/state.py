"""Settings shared by the dock widgets of one viewer.

One :class:`PluginState` per viewer holds the acquisition settings (edited in the
Acquisition widget, used by training, localization and CEL0) and the current model
file (set by training or chosen in the Localize widget). Widgets get it with
:func:`state_for` and listen to its signals.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from napari.utils.notifications import show_info, show_warning
from psygnal import Signal

from ..core.acquisition import Acquisition
from .settings import load_value, save_value

_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class PluginState:
    """Acquisition settings and current model shared by the widgets of a viewer.

    The acquisition persists between sessions. Image layers that carry a pixel size
    from their file (``layer.metadata["pixel_size_nm"]``, set by this plugin's reader)
    update the acquisition's pixel size when they are added.
    """

    acquisition_changed = Signal(object)
    model_changed = Signal(object)

    def __init__(self):
        stored = load_value("acquisition")
        try:
            self._acquisition = Acquisition.from_dict(stored) if isinstance(stored, dict) else Acquisition()
        except (TypeError, ValueError):
            self._acquisition = Acquisition()
        self._model_path: Path | None = None

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
        self.model_changed.emit(path)

    def adopt_pixel_size(self, layer) -> None:
        """Use the pixel size a layer's file declares (no-op when it has none)."""
        pixel = layer.metadata.get("pixel_size_nm") if hasattr(layer, "metadata") else None
        if not pixel or pixel == self._acquisition.pixel_size_nm:
            return
        try:
            self.acquisition = self._acquisition.replace(pixel_size_nm=float(pixel))
        except ValueError as exc:
            show_warning(f"{layer.name}: pixel size {pixel:g} nm from the file was not applied: {exc}")
            return
        show_info(f"Acquisition: pixel size set to {pixel:g} nm from the metadata of {layer.name}")


def state_for(viewer) -> PluginState:
    """The :class:`PluginState` of a viewer (created on first use)."""
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = PluginState()
        for layer in viewer.layers:
            state.adopt_pixel_size(layer)
        viewer.layers.events.inserted.connect(lambda event: state.adopt_pixel_size(event.value))
    return state
