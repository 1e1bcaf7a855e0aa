"""Dock widget 5: score localizations against a ground truth, colour TP / FP / FN."""

from __future__ import annotations

import math
from pathlib import Path

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import Container, Label, LineEdit, PushButton
from matplotlib.colors import to_rgba
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QFileDialog

from ..core.columns import FRAME, X_NM, Y_NM
from ..core.localization_csv import LocalizationFileError, read_localizations
from ..core.outputs import atomic_write
from ..core.cancel import is_cancelled
from ..core.metrics import (DEFAULT_TOLERANCES_NM, extent_mismatch_message, iter_match, score, scoring_inputs,
                            small_tolerance_message)
from ..core.progress import counted
from .controls import DockPanel, ground_truth_combo, localizations_combo, select_layer, wrapping_label
from .jobs import JobControls
from .layers import (OUTPUT, is_localization_result, localized_frames, points_from_table,
                     points_layer_kwargs, show_layer, table_from_layer)
from .reader import localization_layer_data
from .settings import PersistentValues
from .state import state_for

#: face colours of the matching layer
MATCH_COLORS = {"TP": "#40e040", "FP": "#ff4040", "FN": "#40a0ff"}
MATCH_SYMBOLS = {"TP": "disc", "FP": "x", "FN": "ring"}
TABLE_COLUMNS = {
    "tol_nm": "tolerance [nm]", "tp": "TP", "fp": "FP", "fn": "FN", "jaccard": "Jaccard [%]",
    "sensitivity": "sensitivity [%]", "precision": "precision [%]", "rmse_nm": "RMSE [nm]",
    "efficiency": "efficiency [%]",
}


def match_layer_name(scored: str) -> str:
    """The name of the TP / FP / FN layer of the localization layer ``scored``."""
    return f"{scored} matched"


def parse_tolerances(text: str) -> list[float]:
    """Tolerances in nm from text like ``"50, 100 150"`` (positive, finite numbers)."""
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"cannot read tolerances {text!r}; write numbers in nm, e.g. '50, 100, 150'") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError(f"tolerances must be positive, finite numbers in nm, got {text!r}")
    small = next(filter(None, map(small_tolerance_message, values)), "")
    if small:  # (0.05, 50 nm typed in um, scored 0 % without a word)
        raise ValueError(small)
    return values


def _match_job(gt: pd.DataFrame, est: pd.DataFrame, tolerances: list[float], cancel=None):
    """Yield ``(done, total, text)`` while matching at each tolerance (a 1M-point table
    takes about half a minute a tolerance); return ``(scores, gt_found, est_true,
    mismatch)`` (the labels at the first tolerance; what to say of a poor score of tables
    covering different areas, or ""), or None when cancelled."""
    matchings = []
    for i, tol in enumerate(tolerances):
        for done, total, matching in iter_match(gt, est, tol):
            if is_cancelled(cancel):
                return None
            yield (i * total + done, len(tolerances) * total,
                   f"Matching: {tol:g} nm ({i + 1} of {len(tolerances)}), {done} of {counted(total, 'frame')}")
        matchings.append(matching)
    scores = [score(gt, est, tol, matching=m) for tol, m in zip(tolerances, matchings)]
    gt_found, est_true = matchings[0].labels()
    if is_cancelled(cancel):  # (the check of a poor score matches again: a second on a million molecules)
        return None
    mismatch = extent_mismatch_message(gt, est, scores[0])
    return scores, gt_found, est_true, mismatch


def scores_table(scores) -> pd.DataFrame:
    """The scores as a table, one row per tolerance (what Copy and Save write)."""
    rows = [{label: getattr(s, key) for key, label in TABLE_COLUMNS.items()} for s in scores]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS.values())).round(2)


def scores_html(table: pd.DataFrame) -> str:
    """The scores for reading, as an HTML table: one column per tolerance."""
    if len(table) == 0:
        return "<i>no scores yet</i>"
    counts = [TABLE_COLUMNS[k] for k in ("tp", "fp", "fn")]
    head = "".join(f"<th align='right'>&nbsp;{tol:g} nm</th>" for tol in table[TABLE_COLUMNS["tol_nm"]])
    rows = []
    for name in list(TABLE_COLUMNS.values())[1:]:
        cells = "".join(
            f"<td align='right'>{'-' if pd.isna(v) else f'{v:.0f}' if name in counts else f'{v:.2f}'}</td>"
            for v in table[name])
        rows.append(f"<tr><td>{name}</td>{cells}</tr>")
    return f"<table cellspacing='0' cellpadding='2'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


class MatchingWidget(DockPanel):
    """Match an estimate layer to a ground-truth layer frame by frame and report
    Jaccard, sensitivity, precision, RMSE and efficiency per tolerance."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.ground_truth = ground_truth_combo(napari_viewer, "ground truth")
        self.load_button = PushButton(text="Load ground-truth CSV ...")
        self.estimate = localizations_combo(napari_viewer, "localizations", prefer=is_localization_result)
        self.tolerances = LineEdit(label="tolerances (nm)", value=", ".join(f"{t:g}" for t in DEFAULT_TOLERANCES_NM))
        self.frames = LineEdit(label="frames (1-based)", value="all",
                               tooltip="score these frames only (e.g. those a saved CSV was localized on)")
        self.job = JobControls("Matching", "Match")
        self.table = Label(value=scores_html(scores_table([])))
        self.table.tooltip = ("efficiency: the SMLM challenge's 100 - sqrt((100 - Jaccard)^2 + (RMSE / 1 nm)^2), "
                              "below 0 for poor scores (not clipped, so that they still rank)")
        self.legend = wrapping_label(value="")
        for label in (self.table, self.legend):
            label.native.setTextFormat(Qt.TextFormat.RichText)
        self.copy_button = PushButton(text="Copy table")
        self.save_button = PushButton(text="Save table ...")
        buttons = Container(widgets=[self.copy_button, self.save_button], layout="horizontal", labels=False)
        self.extend([self.ground_truth, self.load_button, self.estimate, self.tolerances, self.frames, self.job,
                     self.table,
                     self.legend, buttons])
        self.settings = PersistentValues("matching", {"tolerances": self.tolerances})
        self.scores = scores_table([])
        self.load_button.changed.connect(self._ask_ground_truth)
        self.job.run_button.changed.connect(self.run)
        self.job.clear_refusal_on_change(self)
        self.copy_button.changed.connect(self.copy_table)
        self.save_button.changed.connect(self._ask_save_table)

    # ------------------------------------------------------------ inputs
    def _ask_ground_truth(self, *_) -> None:
        path, _ = QFileDialog.getOpenFileName(self.native, "Ground-truth CSV", "", "CSV files (*.csv)")
        if path:
            self.load_ground_truth(path)

    def load_ground_truth(self, path) -> napari.layers.Points | None:
        """Read a ThunderSTORM / ISBI CSV into a Points layer and choose it as ground truth."""
        try:
            table = read_localizations(path, pixel_size_nm=self.state.acquisition.pixel_size_nm)
        except (LocalizationFileError, OSError) as exc:
            self.job.refuse(f"Ground truth: {exc}")
            return None
        data, kwargs, _ = localization_layer_data(table, Path(path).stem)  # named as File > Open names it
        layer = self.viewer.add_points(data, **kwargs)
        select_layer(self.ground_truth, layer)
        return layer

    # --------------------------------------------------------------- run
    def run(self, *_) -> None:
        """Match in a worker thread; the table and the TP/FP/FN layer follow."""
        if not self.job.idle():
            return
        gt_layer, est_layer = self.ground_truth.value, self.estimate.value
        try:
            if gt_layer is None or est_layer is None:
                raise ValueError("choose a ground-truth layer and a localization layer (Points)")
            if gt_layer is est_layer:
                raise ValueError(f"{gt_layer.name} is chosen as both the ground truth and the localizations; "
                                 "choose the localization layer to score")
            tolerances = parse_tolerances(self.tolerances.value)
            # the frames a run of this session localized restrict the ground truth (metrics.scoring_inputs)
            inputs = scoring_inputs(table_from_layer(gt_layer), table_from_layer(est_layer), self.frames.value,
                                    localized_frames(est_layer))
        except ValueError as exc:
            self.job.refuse(f"Matching: {exc}")
            return
        gt, est, note, hint = inputs.gt, inputs.est, inputs.note, inputs.hint
        if is_localization_result(gt_layer):  # chosen by the user (two methods compared): said, not refused
            hint += f"; the ground truth {gt_layer.name!r} is the localizations of a run, not a ground truth"
        self.job.start(_match_job, gt, est, tolerances, on_yield=lambda progress: self.job.report(*progress),
                       on_return=lambda value: self._show(value, gt, est, tolerances[0], est_layer.name, note, hint))

    def _show(self, value, gt, est, tol, name, note, hint) -> None:
        if value is None:  # cancelled: the table and the layer of the last match stay
            self.job.status.value = "Matching cancelled"
            show_info(self.job.status.value)
            return
        scores, gt_found, est_true, mismatch = value
        hint += f"; {mismatch}" if mismatch else ""
        self.scores = scores_table(scores)
        self.table.value = scores_html(self.scores)
        first = scores[0]
        if first.tp + first.fp + first.fn == 0:
            where = " in the frames scored" if note else ""  # (frames chosen or localized: the ground truth has some)
            self.job.status.value = (f"{name}: nothing to score: no localizations and no ground truth{where}"
                                     f"{note}{hint}")
        else:
            self.job.status.value = (f"{name}: Jaccard {first.jaccard:.1f} % at {tol:g} nm, "
                                     f"{first.tp} TP, {first.fp} FP, {first.fn} FN{note}{hint}")
        parts = [est[est_true].assign(match="TP"), est[~est_true].assign(match="FP"), gt[~gt_found].assign(match="FN")]
        table = pd.concat(parts, ignore_index=True)[[FRAME, X_NM, Y_NM, "match"]]
        coords, features = points_from_table(table)
        labels = features["match"].to_numpy()
        layer_name = match_layer_name(name)  # one per scored layer, whatever the tolerance
        kwargs = points_layer_kwargs(layer_name, features, metadata={OUTPUT: "match"})
        if len(coords):  # arrays indexed by label: lists of 1M colour names took napari seconds to parse
            kinds = list(MATCH_COLORS)
            codes = pd.Categorical(labels, categories=kinds).codes
            kwargs.update(face_color=np.array([to_rgba(MATCH_COLORS[k]) for k in kinds])[codes],
                          symbol=np.array([MATCH_SYMBOLS[k] for k in kinds])[codes])
        show_layer(self.viewer, "points", coords, kwargs)
        self.legend.value = f"{layer_name} (at {tol:g} nm): " + ", ".join(
            # only the glyphs in the layer's colours: green words on the light theme's grey were unreadable
            f"<span style='color:{MATCH_COLORS[kind]}'>{glyph}</span> {kind}"
            for kind, glyph in (("TP", "&#9679;"), ("FP", "&#10005;"), ("FN", "&#9675;")))
        (show_warning if hint else show_info)(self.job.status.value)

    # ------------------------------------------------------------- table
    def table_text(self, sep: str = "\t") -> str:
        """The current table as text (tab-separated by default)."""
        return self.scores.to_csv(sep=sep, index=False)

    def copy_table(self, *_) -> None:
        """Copy the table to the clipboard (tab-separated, pastes into spreadsheets)."""
        QApplication.clipboard().setText(self.table_text())
        show_info("Matching table copied to the clipboard")

    def _ask_save_table(self, *_) -> None:
        path, _ = QFileDialog.getSaveFileName(self.native, "Save matching table", "matching.csv", "CSV (*.csv)")
        if path:
            self.save_table(path)

    def save_table(self, path) -> None:
        """Write the table as a CSV file."""
        text = self.table_text(sep=",")
        try:
            atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))
        except OSError as exc:
            show_error(f"Matching: cannot save the table: {exc}")
            return
        show_info(f"Matching table saved to {path}")
