"""Dock widget 6: save localizations as ThunderSTORM CSV and images as TIFF."""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import FileEdit
from napari.utils.notifications import show_info, show_warning

from ..core.outputs import write_tiff
from ..core.progress import counted
from ..core.protocol import write_localizations
from .controls import DockPanel, OverwriteGuard, layer_combo, localizations_combo
from .jobs import JobControls
from .layers import (OUTPUT, filled_by_a_run, growing_run, is_localization_result, is_output, layer_scale_nm,
                     non_square_pixels)
from .settings import PersistentValues
from .writer import write_points


def _with_suffix(path: Path, suffixes: tuple[str, ...]) -> Path:
    return path if path.suffix.lower() in suffixes else path.with_name(path.name + suffixes[0])


def _write_csv_job(path: Path, data, attributes: dict, cancel=None) -> str:
    """The CSV, and the protocol of the layer's run beside it when it has one."""
    return " and its protocol ".join(write_points(str(path), data, attributes))


def _write_run_csv_job(path: Path, tables: list, cancel=None) -> str:
    """The localizations so far of a run still filling its layer (its batches' tables);
    the run has no protocol yet, and one left there by an earlier save would describe it."""
    return str(write_localizations(path, pd.concat(tables, ignore_index=True), None)[0])


def _write_tiff_job(path: Path, data, pixel_size_nm: float | None, output: str | None, first_frame: int | None,
                    cancel=None) -> str:
    return str(write_tiff(path, np.asarray(data), pixel_size_nm=pixel_size_nm, output=output,
                          first_frame=first_frame))


def _first_frame(layer) -> int | None:
    """The 1-based camera frame of the first plane of this plugin's 3-D outputs (maps),
    from the layer's frame offset; None for 2-D images and for other layers."""
    if not is_output(layer) or layer.ndim != 3:
        return None
    return int(round(float(layer.translate[0]))) + 1


class ExportWidget(DockPanel):
    """Save a Points layer as a ThunderSTORM CSV (through the plugin's writer) and an
    image layer (e.g. the rendering) as a TIFF with its pixel size in nm."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        # not the Matching widget's TP/FP/FN layer: its FN are ground-truth positions (it was offered: a review)
        self.points = localizations_combo(napari_viewer, "localizations", prefer=is_localization_result)
        self.csv_path = FileEdit(label="CSV file", mode="w", filter="*.csv", value=Path.home() / "localizations.csv")
        self.csv_job = JobControls("CSV export", "Save localizations (CSV)", cancellable=False, show_progress=False)
        self.image = layer_combo(napari_viewer, napari.layers.Image, "image", prefer=is_output)  # renders first
        self.tiff_path = FileEdit(label="TIFF file", mode="w", filter="*.tif", value=Path.home() / "render.tif")
        self.tiff_job = JobControls("TIFF export", "Save image (TIFF)", cancellable=False, show_progress=False)
        self.extend([self.points, self.csv_path, self.csv_job, self.image, self.tiff_path, self.tiff_job])
        # the output files of the last session are offered again (users export to one folder)
        self.settings = PersistentValues("export", {"csv_path": self.csv_path, "tiff_path": self.tiff_path})
        self.csv_job.run_button.changed.connect(self.save_csv)
        self.csv_job.clear_refusal_on_change(self)
        self.tiff_job.clear_refusal_on_change(self)
        self.tiff_job.run_button.changed.connect(self.save_tiff)
        self.csv_guard, self.tiff_guard = OverwriteGuard(self.csv_path), OverwriteGuard(self.tiff_path)

    def save_csv(self, *_) -> None:
        """Write the chosen Points layer to the CSV file (in a worker thread)."""
        layer = self.points.value
        if layer is None:
            self.csv_job.refuse("Export: choose a Points layer")
            return
        path = self._output_file(self.csv_job, self.csv_guard, (".csv",))
        if path is None:
            return
        run = growing_run(layer)  # a run still adding to it: the frames done so far, from the run's tables
        if run is not None:
            count, args = run.count, (_write_run_csv_job, path, list(run.tables))
        else:
            data, attributes, _ = layer.as_layer_data_tuple()
            count, args = len(data), (_write_csv_job, path, data, attributes)
        self.csv_job.start(*args, on_return=lambda p: self._saved(
            self.csv_job, f"{counted(count, 'localization')} of {layer.name} saved to {p}", run is not None))

    def save_tiff(self, *_) -> None:
        """Write the chosen image layer to the TIFF file (in a worker thread)."""
        layer = self.image.value
        if layer is None:
            self.tiff_job.refuse("Export: choose an image layer")
            return
        if layer.rgb:
            self.tiff_job.refuse(f"Export: {layer.name} is an RGB image; the TIFF export writes single-channel "
                                 "images and stacks")
            return
        path = self._output_file(self.tiff_job, self.tiff_guard, (".tif", ".tiff"))
        if path is None:
            return
        # a pyramid: its full-resolution level, the one the layer's scale describes
        data, level = (layer.data[0], ", its full-resolution level") if layer.multiscale else (layer.data, "")
        running = filled_by_a_run(layer)
        if running:  # a snapshot: the run writes its maps into the layer's array in place
            try:
                data = np.array(data)
            except MemoryError:
                self.tiff_job.refuse(f"Export: not enough memory to copy {layer.name} while its run fills it; save "
                                     "it when the run has finished")
                return
        pixel = layer_scale_nm(layer)  # any length unit (an image calibrated in um too)
        calibration = f"{pixel:g} nm pixels" if pixel else "no pixel size: the layer is not calibrated in a length unit"
        oblong = non_square_pixels(layer)
        if oblong is not None:  # a TIFF's pixel size is one number here: x's was written for y too (a review)
            pixel, calibration = None, f"no pixel size: its pixels are {oblong[0]:g} x {oblong[1]:g} nm, not square"
        self.tiff_job.start(_write_tiff_job, path, data, pixel,
                            layer.metadata.get(OUTPUT) if is_output(layer) else None, _first_frame(layer),
                            on_return=lambda p: self._saved(self.tiff_job, f"{layer.name}{level} saved to {p} "
                                                            f"({calibration})", running))

    @staticmethod
    def _output_file(job: JobControls, guard: OverwriteGuard, suffixes: tuple[str, ...]) -> Path | None:
        """The file to write: the guarded field's, with an extension added when it has
        none; None when it is a folder (an empty field is the current folder), which is
        reported, or when the file exists and the user keeps it (see
        :class:`~.controls.OverwriteGuard`). ``~`` is the home folder; a relative name is
        taken from the current folder and reported in full."""
        chosen = Path(guard.edit.value).expanduser().absolute()  # the message says where it went
        try:
            if chosen.is_dir():
                job.refuse(f"Export: {chosen} is a folder: choose a file name")
                return None
            path = _with_suffix(chosen, suffixes)
            if not guard.allows(path):
                job.status.value = f"Not saved: {path} exists and was kept"
                return None
        except OSError as exc:  # a name too long (Errno 36) raised from the button, a traceback in napari
            shown = chosen.name if len(chosen.name) <= 60 else chosen.name[:57] + "..."
            job.refuse(f"Export: {shown}: {exc.strerror or exc}")
            return None
        return path

    @staticmethod
    def _saved(job: JobControls, text: str, partial: bool = False) -> None:
        if partial:
            text += ("; its run was still going, so only the frames done so far are in the file: save again when "
                     "the run has finished")
        job.status.value = text
        (show_warning if partial else show_info)(text)
