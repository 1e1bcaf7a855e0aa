"""Small widgets shared by the dock widgets: wrapping labels, layer choosers, number
boxes, rows, a line plot, and the question before an output file is replaced; and
counted nouns for their messages."""

from __future__ import annotations

import contextlib
from pathlib import Path

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from napari.utils.theme import get_theme
from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QMessageBox, QScrollArea, QSizePolicy

from ..core.progress import counted
from .layers import is_localization_result, is_output, is_read_from_file
from .state import state_for


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


class _PanelScroll(QScrollArea):
    """A vertical scroll area that asks for its panel's whole height (QScrollArea asks
    for at most 24 text lines) and shrinks to no less than :attr:`MIN_LINES` lines of text
    (napari squeezes the docks above a new one to their minimum), and never to less than
    the panel's width beside the scroll bar (the bar covered the fields' right edge)."""

    MIN_LINES = 8

    def sizeHint(self):
        return self.widget().sizeHint().grownBy(self.contentsMargins()).expandedTo(super().sizeHint())

    def minimumSizeHint(self):
        width = self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(width, min(self.sizeHint().height(), self.MIN_LINES * self.fontMetrics().height()))


class DockPanel(Container):
    """The top container of a dock widget, inside a vertical scroll area: stacked, the
    panels need about 2,400 px of height and napari grew its window past the screen to
    fit them (napari#4579); now each dock can be shorter than its panel and scrolls.

    napari docks a magicgui widget's ``.native``, so ``.native`` here is the scroll area
    that holds the panel's own widget (magicgui's own ``scrollable=True`` docks the inner
    widget in napari, and its scroll area asks for at most 24 lines). The scroll area
    becomes the root of magicgui's backend, as in magicgui's scrollable mode: ``show``,
    ``parent`` and napari's ``dock.inner_widget()`` / ``viewer.window.dock_widgets`` find
    the panel through it. It takes no keyboard focus (napari's arrow keys stopped stepping
    frames after a click on a panel). A trailing stretch keeps the fields at the top of a
    dock taller than the panel (napari adds one only to widgets it lays out itself)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        inner = super().native
        inner.layout().addStretch()
        scroll = _PanelScroll()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        scroll.setWidget(inner)
        scroll._magic_widget = self
        self._widget._qwidget = self._widget._scroll = scroll  # what magicgui's scrollable=True sets

    @property
    def native(self):
        return self.root_native_widget


#: :attr:`LayerChooser._picked` before the user chose anything
_NOT_CHOSEN = object()


class LayerChooser(ComboBox):
    """A drop-down of layers that follows the runs: when a run shows its output layers
    (:attr:`~.state.PluginState.outputs_shown`), it moves to the first of them that it
    prefers, unless the user chose another layer, which stays chosen while it is in the
    viewer. A choice is the user's when the value is set otherwise than by a refresh of
    the choices (napari's, when layers come and go) or by following a run.

    Parameters
    ----------
    viewer
        The napari viewer.
    choices
        The choices callable (see :func:`layer_combo`).
    label
        The field's label.
    prefer
        The layers to follow; None: follow no run.
    """

    def __init__(self, viewer, choices, label: str, prefer=None, only_preferred: bool = False):
        self._prefer = prefer
        self._only_preferred = only_preferred
        self._picked = _NOT_CHOSEN  # the layer the user chose (None: the empty entry of an only_preferred list)
        self._by_program = False
        super().__init__(choices=choices, label=label, nullable=only_preferred)
        self._fall_back()
        self.changed.connect(self._chosen)  # a choice in the list
        self.native.activated.connect(lambda index: self._chosen(self.native.itemData(index)))  # also the same one
        if prefer is not None:
            state_for(viewer).outputs_shown.connect(self.follow)  # weakly: ends with the widget

    @contextlib.contextmanager
    def _programmatic(self):
        self._by_program = True
        try:
            yield
        finally:
            self._by_program = False

    @property
    def value(self):
        return ComboBox.value.fget(self)

    @value.setter
    def value(self, value) -> None:  # set in code (a test, or a widget for its user): the user's choice
        ComboBox.value.fset(self, value)
        self._chosen(value)

    def reset_choices(self, *args) -> None:
        with self._programmatic():  # a choice that left the viewer falls back to the first: not the user's
            super().reset_choices(*args)
        self._fall_back()

    def _fall_back(self) -> None:
        """With ``only_preferred``: unless the user chose it, the value is the first layer
        this drop-down prefers, or none (a ground truth is no layer's stand-in)."""
        if not self._only_preferred or self._user_choice():
            return
        if self.value is not None and self._prefer(self.value):
            return
        with self._programmatic():
            self.value = next((layer for layer in self.choices if layer is not None and self._prefer(layer)), None)

    def _user_choice(self) -> bool:
        """True when the value is the user's choice (also the empty entry, which a layer
        event then filled again: a review)."""
        return self._picked is not _NOT_CHOSEN and self.value == self._picked

    def _chosen(self, value) -> None:
        if not self._by_program:
            self._picked = value

    def follow(self, layers) -> None:
        """Move to the first of a run's output ``layers`` that this drop-down prefers,
        unless the user's own choice is the value."""
        try:
            self.reset_choices()  # the new layers are choices even before napari says so
        except RuntimeError:  # its Qt widget is gone (the viewer was closed); nothing else is caught
            return
        choices = self.choices
        target = next((layer for layer in layers if layer in choices and self._prefer(layer)), None)
        if target is None or self.value == target or self._user_choice():
            return
        with self._programmatic():
            self.value = target


def layer_combo(viewer, layer_type, label: str, keep=None, prefer=None, only_preferred: bool = False,
                order=None) -> LayerChooser:
    """A drop-down of the viewer's layers of one type, or of those for which
    ``keep(layer)`` is true (kept up to date by napari when the widget is docked,
    or by ``reset_choices``); the layers for which ``prefer(layer)`` is true come
    first (then by ``order(layer)``, a sort key, if given), so that a new drop-down
    starts on one of them, and a run that shows such a layer makes the drop-down move
    to it unless the user chose another layer (see :class:`LayerChooser`). With
    ``only_preferred`` the other layers are listed for the user to choose but never
    chosen by the drop-down itself: it is then empty until a preferred layer comes."""

    def choices(_widget):
        layers = [layer for layer in viewer.layers if isinstance(layer, layer_type) and (keep is None or keep(layer))]
        if order is not None:
            layers.sort(key=order)
        if prefer is not None:
            layers.sort(key=lambda layer: not prefer(layer))  # stable: napari's order otherwise
        return [(layer.name, layer) for layer in layers]

    return LayerChooser(viewer, choices, label, prefer=prefer, only_preferred=only_preferred)


def stack_combo(viewer) -> ComboBox:
    """A drop-down of the Image layers that may be stacks to analyse: this plugin's
    own images (renderings, maps) and colour (RGB) images are left out."""
    # RGB images were listed only to be refused at the run
    return layer_combo(viewer, napari.layers.Image, "stack", keep=lambda layer: not (is_output(layer) or layer.rgb))


def _scorable(layer) -> bool:
    """A Points layer that may be localizations or a ground truth to score: not the
    Matching widget's TP/FP/FN layer (scored, its FN markers, which sit on the ground
    truth, counted as found)."""
    return not is_output(layer)


def localizations_combo(viewer, label: str, prefer=None) -> LayerChooser:
    """A drop-down of the Points layers that may be localizations or a ground truth to
    score (:func:`_scorable`)."""
    return layer_combo(viewer, napari.layers.Points, label, keep=_scorable, prefer=prefer)


def ground_truth_combo(viewer, label: str) -> LayerChooser:
    """A drop-down of the Points layers that may be a ground truth: layers read from a
    file first, then other Points layers; the localizations of runs (this session's, and
    CSVs opened with their run's protocol) are listed last and only ever chosen by the user
    (the lambda sweep scored CEL0 against DeepCEL0's run, the first Points layer, and
    called it a Jaccard index; a saved run opened again was taken for both the ground
    truth and the localizations: reviews). Empty until a layer that is not a run's is in
    the viewer."""
    return layer_combo(viewer, napari.layers.Points, label, keep=_scorable,
                       prefer=lambda layer: not is_localization_result(layer), only_preferred=True,
                       order=lambda layer: not is_read_from_file(layer))


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


def outlier_pixels_checkbox() -> CheckBox:
    """The option to replace hot and dead pixels and dim bright objects before localizing
    (on by default; :func:`~napari_deepcel0.core.frames.fix_outliers`)."""
    return CheckBox(
        text="fix hot/dead pixels and bright objects", value=True,
        tooltip="replace a pixel far brighter or darker than all 8 of its neighbours (a hot, saturated or dead "
                "camera pixel) by their mean, set pixels far below the background (a zero-padded border, a dead "
                "column) to the frame's median, and dim an object more than 5 times as bright as the frame's "
                "molecules (a fiducial bead) to the brightest molecule's level, before localizing: each frame is "
                "scaled by its minimum and maximum, so one such pixel or object spoilt its whole frame; untick to "
                "localize the frames exactly as they are")


def replaced_pixels_text(n: int, dimmed: int = 0) -> str:
    """How many hot, dead or NaN pixels a run replaced and in how many frames it
    dimmed bright objects, for a status line ("" for none)."""
    parts = [f"{counted(n, 'hot, dead or NaN pixel')} replaced"] if n else []
    if dimmed:
        parts.append(f"a bright object (bead?) dimmed in {counted(dimmed, 'frame')}")
    return "; ".join(parts)


#: text colours of error and warning lines, readable on dark and on light backgrounds
STATUS_COLOURS = {"dark": {"error": "#ff6060", "warning": "#ffb040"},
                  "light": {"error": "#b00020", "warning": "#8a5a00"}}


def status_style(viewer, kind: str) -> str:
    """A style sheet colouring a label's text as an ``"error"`` or ``"warning"`` in
    ``viewer``'s theme (the light theme needs darker colours than the dark one: orange
    on light grey had a contrast of 1.4:1)."""
    try:
        background = get_theme(viewer.theme).background.as_rgb_tuple()
    except (KeyError, ValueError, AttributeError):
        background = (0, 0, 0)
    light = sum(background[:3]) / 3 > 127
    return f"color: {STATUS_COLOURS['light' if light else 'dark'][kind]}"


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
    integer_x
        Ticks on whole numbers of x only (epochs: 1.2, 1.4 ... read as fractions of one).
    empty_y
        The y range shown before any curve (a percentage's 0-100, not matplotlib's 0-1).
    """

    def __init__(self, xlabel: str, ylabel: str, height_px: int = 200, log_x: bool = False,
                 integer_x: bool = False, empty_y: tuple[float, float] | None = None):
        super().__init__(labels=False)
        self.figure = Figure(figsize=(4, 2.2), dpi=90, layout="constrained")
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(height_px)
        self.native.layout().addWidget(self.canvas)
        self.xlabel, self.ylabel, self.log_x, self.integer_x = xlabel, ylabel, log_x, integer_x
        self.empty_y = empty_y
        self.background, self.text_colour = "white", "black"  # matplotlib's; follow_theme changes them
        self.clear()

    def follow_theme(self, viewer) -> None:
        """Draw in the colours of ``viewer``'s napari theme, now and whenever it changes
        (a white plot in the dark theme glares)."""
        def apply(event=None):
            try:
                theme = get_theme(viewer.theme)
            except (KeyError, ValueError):  # a theme napari no longer knows: keep the colours
                return
            self.background, self.text_colour = theme.background.as_hex(), theme.text.as_hex()
            self._style()
            self.canvas.draw_idle()

        viewer.events.theme.connect(apply)
        apply()

    def _style(self) -> None:
        self.figure.set_facecolor(self.background)
        self.axes.set_facecolor(self.background)
        self.axes.tick_params(colors=self.text_colour, which="both")
        for line in self.axes.get_xgridlines() + self.axes.get_ygridlines():  # (clear() sets them too)
            line.set_color(self.text_colour)
        self.axes.xaxis.label.set_color(self.text_colour)
        self.axes.yaxis.label.set_color(self.text_colour)
        for spine in self.axes.spines.values():
            spine.set_color(self.text_colour)
        legend = self.axes.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(self.background)
            for text in legend.get_texts():
                text.set_color(self.text_colour)

    def clear(self) -> None:
        """Remove every curve."""
        self.axes.clear()
        self.axes.set_xlabel(self.xlabel)
        self.axes.set_ylabel(self.ylabel)
        if self.log_x:
            self.axes.set_xscale("log")
        if self.integer_x:
            self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.axes.grid(alpha=0.3, color=self.text_colour)
        if self.empty_y is not None:  # (a Jaccard [%] axis of 0-1 before the first curve: a review)
            self.axes.set_ylim(*self.empty_y)
        self._style()
        self.canvas.draw_idle()

    def plot(self, curves: dict[str, tuple], marker: tuple[float, float] | None = None) -> None:
        """Draw ``{name: (x, y)}`` curves, and an optional highlighted point."""
        self.clear()
        self.axes.set_autoscaley_on(True)  # (the empty plot's range is no curve's)
        for name, (x, y) in curves.items():
            self.axes.plot(x, y, ".-", label=name)
        if marker is not None:
            self.axes.plot([marker[0]], [marker[1]], "o", mfc="none", mec="red", ms=10)
        if self.integer_x and not self.log_x:  # at least two units wide, or no whole number but one
            low, high = self.axes.get_xlim()
            if high - low < 2:
                self.axes.set_xlim((low + high) / 2 - 1, (low + high) / 2 + 1)
        if len(curves) > 1:
            self.axes.legend(fontsize="small")
            self._style()
        self.canvas.draw_idle()


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
