"""Small widgets shared by the dock widgets: wrapping labels, layer choosers, number
boxes, rows, a line plot, and the question before an output file is replaced."""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMessageBox, QSizePolicy

from .layers import is_output


class _FitHeight(QObject):
    """Keeps a word-wrapped QLabel's minimum height equal to the height its text
    needs at its current width (nested layouts do not do it by themselves)."""

    def eventFilter(self, label, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            fit_height(label)
        return False


def fit_height(qlabel) -> None:
    """Set a word-wrapped QLabel's minimum height to what its text needs."""
    height = qlabel.heightForWidth(max(qlabel.width(), 1))
    if height > 0 and height != qlabel.minimumHeight():
        qlabel.setMinimumHeight(height)


def wrapping_label(**kwargs) -> Label:
    """A magicgui Label whose text wraps over as many lines as it needs."""
    label = Label(**kwargs)
    qlabel = label.native
    qlabel.setWordWrap(True)
    qlabel.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    qlabel._fit_height = _FitHeight(qlabel)
    qlabel.installEventFilter(qlabel._fit_height)
    label.changed.connect(lambda _value: fit_height(qlabel))
    return label


def layer_combo(viewer, layer_type, label: str, keep=None, prefer=None) -> ComboBox:
    """A drop-down of the viewer's layers of one type, or of those for which
    ``keep(layer)`` is true (kept up to date by napari when the widget is docked,
    or by ``reset_choices``); the layers for which ``prefer(layer)`` is true come
    first, so that a new drop-down starts on one of them."""

    def choices(_widget):
        layers = [layer for layer in viewer.layers if isinstance(layer, layer_type) and (keep is None or keep(layer))]
        if prefer is not None:
            layers.sort(key=lambda layer: not prefer(layer))  # stable: napari's order otherwise
        return [(layer.name, layer) for layer in layers]

    return ComboBox(choices=choices, label=label)


def stack_combo(viewer) -> ComboBox:
    """A drop-down of the Image layers that may be stacks to analyse: this plugin's
    own images (renderings, maps) are left out."""
    return layer_combo(viewer, napari.layers.Image, "stack", keep=lambda layer: not is_output(layer))


def float_box(label: str, value: float, minimum: float, maximum: float, decimals: int, step: float) -> FloatSpinBox:
    """A FloatSpinBox showing ``decimals`` decimals (for small numbers like lambda)."""
    box = FloatSpinBox(label=label, step=step)
    box.native.setDecimals(decimals)
    box.min, box.max = minimum, maximum
    box.value = value
    return box


def row(label: str, *widgets) -> Container:
    """Several widgets side by side under one label."""
    box = Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)
    box.margins = (0, 0, 0, 0)
    return box


def select_layer(combo: ComboBox, layer) -> None:
    """Refresh a layer drop-down and select ``layer`` in it."""
    combo.reset_choices()
    combo.value = layer


class LinePlot(Container):
    """A small matplotlib plot of one or more named curves.

    Parameters
    ----------
    xlabel, ylabel
        Axis labels.
    height_px
        Height of the plot in pixels.
    log_x
        Logarithmic x axis.
    """

    def __init__(self, xlabel: str, ylabel: str, height_px: int = 200, log_x: bool = False):
        super().__init__(labels=False)
        self.figure = Figure(figsize=(4, 2.2), dpi=90, layout="constrained")
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(height_px)
        self.native.layout().addWidget(self.canvas)
        self.xlabel, self.ylabel, self.log_x = xlabel, ylabel, log_x
        self.clear()

    def clear(self) -> None:
        """Remove every curve."""
        self.axes.clear()
        self.axes.set_xlabel(self.xlabel)
        self.axes.set_ylabel(self.ylabel)
        if self.log_x:
            self.axes.set_xscale("log")
        self.axes.grid(alpha=0.3)
        self.canvas.draw()

    def plot(self, curves: dict[str, tuple], marker: tuple[float, float] | None = None) -> None:
        """Draw ``{name: (x, y)}`` curves, and an optional highlighted point."""
        self.clear()
        for name, (x, y) in curves.items():
            self.axes.plot(x, y, ".-", label=name)
        if marker is not None:
            self.axes.plot([marker[0]], [marker[1]], "o", mfc="none", mec="red", ms=10)
        if len(curves) > 1:
            self.axes.legend(fontsize="small")
        self.canvas.draw()


def ask_to_replace(parent, path: Path) -> bool:
    """Ask whether to replace an existing file (the default answer is No)."""
    answer = QMessageBox.question(parent, "Replace the file?", f"{path} exists. Replace it?",
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class OverwriteGuard:
    """Whether an output file chosen in a FileEdit may be written: a new file may; an
    existing one when the user agrees (:func:`ask_to_replace`), which is not asked again
    when the FileEdit's own file dialog has just returned that file (Qt's save dialog
    asks "Replace?" itself; a cancelled dialog confirms nothing)."""

    def __init__(self, edit: FileEdit):
        self.edit = edit
        self._dialog_confirmed: Path | None = None
        show = getattr(edit, "_show_file_dialog", None)  # magicgui's dialog function
        if show is None:  # another magicgui: writing asks, as without the dialog
            return

        def show_and_remember(*args, **kwargs):
            result = show(*args, **kwargs)
            chosen = Path(result).expanduser() if isinstance(result, (str, Path)) and str(result) else None
            self._dialog_confirmed = chosen if chosen is not None and chosen.is_file() else None
            return result

        edit._show_file_dialog = show_and_remember

    def allows(self, path: Path) -> bool:
        """True when ``path`` may be written (asks when it exists; see the class notes)."""
        confirmed, self._dialog_confirmed = self._dialog_confirmed == path, None
        return not path.exists() or confirmed or ask_to_replace(self.edit.native, path)
