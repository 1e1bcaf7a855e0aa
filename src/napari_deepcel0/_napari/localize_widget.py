"""Dock widget 3: localize a stack with a DeepCEL0 model, streaming the results."""

from __future__ import annotations

import math
import threading
import time

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info, show_warning

from ..core.devices import DEVICES, resolve_device, resolve_precision
from ..core.model_io import ModelFileError, bundled_model_path, read_model_info, settings_edited
from ..core.frames import parse_frame_selection
from ..core.photometry import fit_notes
from ..core.defaults import FRAME_RANGE_FLOOR
from ..core.predict import (SCALING_TILE_PX, BatchResult, DeepLocalizer, acquisition_mismatch,
                            localize_stream, localizer_scaling, psf_differs, scaling_settings)
from ..core.progress import counted, rate_text
from ..core.protocol import method_name, network_protocol
from ..core.render import Renderer, check_render_blur, display_max, render_shape
from .controls import (DockPanel, outlier_pixels_checkbox, replaced_pixels_text, row, stack_combo, status_style,
                       wrapping_label)
from .jobs import JobControls, ProgressRelay, gpu_memory_hint
from .layers import (DEEPCEL0_COLOR, OUTPUT, PROTOCOL, RUN_TOKEN, GrowingPoints, RefreshPacer, filled_by_a_run,
                     image_transform, keep_in_viewer, show_first_frame_unless_shown, show_layer, stack_frame_count)
from .reader import frame_source
from .settings import PersistentValues
from .state import state_for

#: largest fine-grid map stack kept for display (bytes)
MAX_MAPS_BYTES = 2 * 1024**3


#: the orientation averaging choices (label, number of orientations)
ORIENTATION_CHOICES = [("off", 1), ("4 flips (4x the time)", 4), ("8 flips and turns (8x the time)", 8)]


def _localize_job(model_path, acquisition, source, frames, threshold, device, batch_size, orientations, keep_maps,
                  photometry, fit_positions, fix_outlier_pixels, scaling: dict, cancel=None):
    """Load the model, then yield a :class:`BatchResult` per batch. ``scaling``: how the
    frames are scaled, as the run's protocol records it (:func:`scaling_settings`)."""
    with gpu_memory_hint():
        model = DeepLocalizer(model_path, acquisition=acquisition, device=device, batch_size=batch_size,
                              orientations=orientations, **localizer_scaling(scaling))  # model_path None: bundled
        yield from localize_stream(model, source, frames=frames, threshold=threshold, batch_size=batch_size,
                                   keep_maps=keep_maps, cancel=cancel, photometry=photometry,
                                   fit_positions=fit_positions, fix_outlier_pixels=fix_outlier_pixels)


class FrameScalingControls:
    """How frames are scaled to [0, 1] for the network, as ``deepcel0 localize``'s
    ``--whole-frame-scaling`` and ``--range-floor K`` set it
    (:func:`~napari_deepcel0.core.predict.scale_to_unit_range`): by regions of large
    frames or whole frames, and the floor under a frame's range, in noise standard
    deviations (0: off). :meth:`settings` is what a run's protocol records."""

    def __init__(self):
        self.regions = CheckBox(
            text=f"by regions of {SCALING_TILE_PX} px", value=True,
            tooltip=f"cut a frame side of 96 pixels or more into regions of about {SCALING_TILE_PX} pixels, each "
                    "scaled by its own minimum and maximum, so that one bright molecule does not make faint ones "
                    "far from it look fainter; untick to scale each frame by its own minimum and maximum whatever "
                    "its size (smaller frames are scaled whole either way)")
        self.range_floor = FloatSpinBox(
            min=0.0, max=1000.0, step=1.0, value=FRAME_RANGE_FLOOR,
            tooltip=f"range floor: scale a frame as if its range were at least this many of its noise standard "
                    f"deviations (default {FRAME_RANGE_FLOOR:g}), so that the noise of a frame without molecules "
                    "is not stretched into false molecules; 0: each frame by its own range however faint")
        self.range_floor.native.setPrefix("floor ")
        self.range_floor.native.setSuffix(" sd")

    def widgets(self) -> list:
        return [self.regions, self.range_floor]

    def settings(self) -> dict:
        """The run's scaling as its protocol records it (:func:`scaling_settings`)."""
        return scaling_settings(SCALING_TILE_PX if self.regions.value else None, self.range_floor.value)


class LocalizeWidget(DockPanel):
    """Localize the frames of an image layer with DeepCEL0 (bundled or chosen model).

    Localizations stream into a Points layer and a super-resolved rendering (and
    optionally per-frame fine-grid maps) while the run goes on; Cancel keeps what
    is done.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.layer = stack_combo(napari_viewer)
        self.model = FileEdit(label="model (empty: bundled)", mode="r", filter="*.safetensors", nullable=True)
        self.bundled_button = PushButton(text="Use the bundled model")
        self.model_info = wrapping_label(label="model")
        self.auto_threshold = CheckBox(
            text="automatic threshold (a tenth of a molecule's peak)", value=True,
            tooltip="the model's default: 0.1 x the value its maps give one molecule (8.5 for the bundled model)")
        self.threshold = FloatSpinBox(
            label="threshold (map units)", min=0.0, max=1e9, step=0.5, value=8.5, enabled=False,
            tooltip="in the model's map units, not a fraction: one molecule peaks near the model's spike value "
                    "(85 for the bundled model); higher finds fewer, surer molecules")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=16)
        self.orientations = ComboBox(
            label="orientation averaging", choices=ORIENTATION_CHOICES, value=1,
            tooltip="also run the network on the frame's flips (and quarter turns) and take each molecule's "
                    "sub-pixel position from the average map: finer positions in crowds (RMSE 24.6 -> 24.1 nm on "
                    "ISBI 2013; worse on sparse frames), "
                    "4 or 8 times slower; detection stays that of the plain map")
        self.frames = LineEdit(label="frames (1-based)", value="all")
        self.render_pixel = FloatSpinBox(label="render pixel (nm)", min=1.0, max=1000.0, value=10.0)
        # 20 nm: at 10 nm the render drew the 25 nm fine grid as beads along filaments, positions favouring
        # the fine pixels' centres (a review); about the localizations' precision (RMSE 20-25 nm) too
        self.render_blur = FloatSpinBox(
            label="render blur sigma (nm)", min=0.0, max=1000.0, value=20.0,
            tooltip="sigma of the Gaussian that draws each localization in the render; below about 15 nm the "
                    "25 nm grid of the network's output shows as beads along the structures")
        self.show_maps = CheckBox(text="show fine-grid maps", value=False)
        self.photometry = CheckBox(
            text="photon counts (fit on the frames)", value=False,
            tooltip="also fit each molecule's photons and the frame's background on the camera frame, at the found "
                    "positions (features intensity [photon] and offset [photon]); uses the Acquisition's camera "
                    "gain and offset")
        self.fit_positions = CheckBox(
            text="fit positions on the frames", value=False,
            tooltip="also fit each molecule's position on the camera frame, by maximum likelihood within half a "
                    "fine pixel of the map's: finer positions on sparse and moderately dense frames (RMSE 8.5 -> "
                    "6.4 nm at 0.5 molecules per um^2, none on ISBI 2013), slower; adds the photon "
                    "counts and uncertainty [nm]; uses the Acquisition's camera gain, offset and read noise")
        self.fix_outlier_pixels = outlier_pixels_checkbox()
        self.scaling = FrameScalingControls()
        self.job = JobControls("Localization", "Localize")
        self.state.watch_job(self.job)  # (the acquisition edited during its run: said)
        self.reset_button = PushButton(text="Reset settings")
        self.extend([self.layer, self.model, self.bundled_button, self.model_info, self.auto_threshold,
                     self.threshold, self.device, self.batch_size, self.orientations, self.frames, self.render_pixel,
                     self.render_blur, self.show_maps, self.photometry, self.fit_positions, self.fix_outlier_pixels,
                     row("frame scaling", *self.scaling.widgets()), self.job,
                     self.reset_button])
        # the model is the viewer's current model, which the state keeps between sessions
        self.settings = PersistentValues("localize", {
            "auto_threshold": self.auto_threshold, "threshold": self.threshold,
            "device": self.device, "batch_size": self.batch_size, "orientations": self.orientations,
            "frames": self.frames,
            "render_pixel": self.render_pixel, "render_blur": self.render_blur, "show_maps": self.show_maps,
            "photometry": self.photometry, "fit_positions": self.fit_positions,
            "fix_outlier_pixels": self.fix_outlier_pixels, "scale_by_regions": self.scaling.regions,
            "range_floor": self.scaling.range_floor})
        self.model.value = self.state.model_path
        self._info = None
        self._run = None
        self._describe_model()
        self.threshold.enabled = not self.auto_threshold.value
        self.auto_threshold.changed.connect(self._auto_threshold_chosen)
        self.model.changed.connect(self._model_chosen)
        self.bundled_button.changed.connect(lambda *_: setattr(self.model, "value", None))
        self.state.model_changed.connect(self._state_model_changed)
        self.state.acquisition_changed.connect(self._describe_model)
        self.job.run_button.changed.connect(self.run)
        self.job.clear_refusal_on_change(self)
        self.reset_button.changed.connect(self.reset)

    def reset(self, *_) -> None:
        """Default settings and the bundled model."""
        self.settings.reset()
        self.model.value = None

    # --------------------------------------------------------------- model
    def _model_chosen(self, *_) -> None:
        self.state.model_path = self.model.value
        self._describe_model()

    def _state_model_changed(self, path) -> None:
        if self.model.value != path:
            self.model.value = path
        else:  # the same file, written again (a training into the current model's file)
            self._describe_model()

    def _auto_threshold_chosen(self, auto: bool) -> None:
        """The threshold box, greyed, shows the automatic value runs use (it kept a value
        typed before, until the next run: a review)."""
        self.threshold.enabled = not auto
        if auto:
            self._show_automatic_threshold()

    def _show_automatic_threshold(self) -> None:
        if self._info is not None:
            with self.threshold.changed.blocked():
                self.threshold.value = round(self._info.default_threshold, 3)

    def _describe_model(self) -> None:
        path = self.model.value
        try:
            info = read_model_info(bundled_model_path() if path is None else path)
        except ModelFileError as exc:
            self._info = None
            self.model_info.value = str(exc)
            self.model_info.tooltip = None
            self.model_info.native.setStyleSheet(status_style(self.viewer, "error"))
            return
        self._info = info
        # what it is for on the line, in words; how it was trained and its notes (long) in the tooltip (the line
        # read "deepcel0 (relu head, cel0 loss, lambda 100); ... best val loss 1.918": a first-time user's review)
        text = f"{'bundled ' if path is None else ''}{method_name(info)} model for {info.acquisition.describe()}"
        self.model_info.tooltip = info.summary()
        mismatch = acquisition_mismatch(info.acquisition, self.state.acquisition)
        psf = psf_differs(mismatch)  # (another L alone changes nothing: a note)
        if mismatch:
            text += ("\nWARNING, the model does not match the Acquisition settings: " if psf else "\nnote: ") + \
                "; ".join(mismatch)
        edited = path is not None and settings_edited(path)  # (the notification of it goes; this stays)
        if edited:
            text += ("\nWARNING, the model's settings were edited after it was written: it may run with settings "
                     "its network was not trained for")
        self.model_info.value = text
        self.model_info.native.setStyleSheet(status_style(self.viewer, "warning") if psf or edited else "")
        if self.auto_threshold.value:
            self._show_automatic_threshold()

    # ----------------------------------------------------------------- run
    def run(self, *_) -> None:
        """Check the inputs, prepare the output layers and start the run."""
        if not self.job.idle():
            return
        layer = self.layer.value
        self._describe_model()  # the file may have been written again since it was chosen (its L too)
        try:
            n_frames = stack_frame_count(layer)
            if self._info is None:
                raise ValueError(self.model_info.value)
            resolve_device(self.device.value)
            selection = parse_frame_selection(self.frames.value, n_frames) + 1
        except (ValueError, RuntimeError) as exc:
            self.job.refuse(f"Localize: {exc}")
            return
        rows, cols = layer.data.shape[-2:]
        try:  # before any layer changes (the stack's scale too): a refused run leaves every layer as it was
            field_nm = self.state.acquisition_for(layer).field_nm((rows, cols))
            render_shape(field_nm, self.render_pixel.value)
            check_render_blur(self.render_blur.value, field_nm, self.render_pixel.value)
        except ValueError as exc:
            self.job.refuse(f"Localize: {exc}")
            return
        maps_shape = (int(selection[-1] - selection[0] + 1), rows * self._info.acquisition.upsampling,
                      cols * self._info.acquisition.upsampling)
        if self.show_maps.value and np.prod(maps_shape) * 4 > MAX_MAPS_BYTES:
            self.job.refuse(f"Localize: the fine-grid maps of {counted(maps_shape[0], 'frame')} would need "
                            f"{np.prod(maps_shape) * 4 / 1024**3:.1f} GB; select fewer frames or untick the maps")
            return
        acq = self.state.prepare_stack(layer)
        fine_nm = acq.pixel_size_nm / self._info.acquisition.upsampling
        if self._run is not None:  # its render may still be blurring: it must not show over this run's
            self._run.render.retire()
        try:
            self._run = _Run(self.viewer, layer, acq, selection, (rows, cols), fine_nm, self.render_pixel.value,
                             self.render_blur.value, maps_shape if self.show_maps.value else None,
                             self.job.while_alive)
        except MemoryError:
            self._run = None
            self.job.refuse("Localize: not enough memory for the render and maps of this run; use a larger render "
                            "pixel, untick the fine-grid maps or select fewer frames")
            return
        self.state.outputs_shown.emit(self._run.layers())  # Matching and Export move to them
        threshold = None if self.auto_threshold.value else self.threshold.value
        device = resolve_device(self.device.value)
        scaling = self.scaling.settings()
        settings = {"threshold": self._info.default_threshold if threshold is None else threshold,
                    "threshold_is_default": threshold is None, "read_out": "peaks",
                    "orientations": self.orientations.value, **scaling,
                    "photometry": self.photometry.value,
                    "fit_positions": self.fit_positions.value, "fix_outlier_pixels": self.fix_outlier_pixels.value,
                    "device": str(device), "precision": resolve_precision("auto", device),
                    "batch_size": self.batch_size.value}
        self._run.protocol = network_protocol(self._info, self.model.value, acq, settings,
                                              stack=layer.metadata.get("path"))
        self._run.threshold = settings["threshold"]
        show_first_frame_unless_shown(self.viewer, selection)
        self.job.status.tooltip = None  # (the last run's notes on its fits)
        self.job.start(_localize_job, self.model.value, acq, frame_source(layer.data), selection, threshold,
                       self.device.value, self.batch_size.value, self.orientations.value, self.show_maps.value,
                       self.photometry.value, self.fit_positions.value, self.fix_outlier_pixels.value, scaling,
                       on_yield=self._batch, on_finish=self._finished, on_closed=self._closed_while_running)

    def _batch(self, result: BatchResult) -> None:
        self._run.add(result)
        self.job.report(result.done, result.total, f"Localization: {self._run.describe()}")

    def _finished(self) -> None:
        """Show everything done, also after an error or a cancel."""
        cut_short = self.job.cancelled and self._run.frames_done < self._run.total  # (Cancel after the last batch)
        summary = self._run.end("failed" if self.job.error is not None else "cancelled" if cut_short else "finished")
        if self.job.error is None:
            text = f"Localization {'cancelled' if cut_short else 'finished'}: {summary}"
            if self._run.points.count == 0 and self._run.frames_done > 0:  # (the CLI and the library say so too)
                text += (f"; no molecule was found above the threshold of {self._run.threshold:.4g} (map units): "
                         "lower it (untick automatic), or check that the model suits these frames and the "
                         "Acquisition settings")
                show_warning(text)
            else:
                show_info(text)
            self.job.status.value = text
            self.job.status.tooltip = self._run.fit_details()

    def _closed_while_running(self) -> None:
        """The widget was closed during the run, which cancelled it: the layers show what
        arrived before, and the localizations no longer count as a running run's (Export
        said "save again when the run has finished" for good)."""
        show_info(f"Localization stopped when its widget was closed: {self._run.end('stopped: widget closed')}")


class _Run:
    """The output layers of one localization run, growing batch by batch."""

    def __init__(self, viewer, layer, acq, selection, frame_shape, fine_nm, render_pixel, render_blur, maps_shape,
                 while_alive):
        self.viewer = viewer
        self.pixel_nm = acq.pixel_size_nm
        self.frame_shape = frame_shape
        self.selection = selection
        self.started = time.perf_counter()
        self.threshold = math.nan  # the run's threshold in map units (set as it starts)
        #: ``localization_protocol`` with the run's settings, waiting for what the run did (network_protocol)
        self.protocol = None
        self.renderer = Renderer(acq.field_nm(frame_shape), render_pixel)
        self.total = len(selection)
        self.frames_done = 0
        self.frames_per_second = 0.0
        self.time_left = ""  # ", about N min left" while running
        self.pixels_replaced = 0  # isolated hot/dead pixels replaced before localizing
        self.frames_dimmed = 0  # frames whose bright objects were dimmed before localizing
        self.first_frame = int(selection[0])
        # every array first: one that fails for memory leaves the last run's layers as they are
        maps = np.zeros(maps_shape, np.float32) if maps_shape is not None else None
        render = show_layer(viewer, "image", self.renderer.image(), {
            "name": f"{layer.name} render", "colormap": "hot", "blending": "additive", "metadata": {OUTPUT: "render"},
            **image_transform(render_pixel)})
        self.render = _RenderDisplay(viewer, self.renderer, render_blur, render, while_alive)
        self.maps = None
        if maps is not None:
            # contrast limits given: napari scanning the zeros for them took 0.4 s of the GUI thread
            # for 20 frames of 256 x 256 pixels (they are set from the maps at each refresh)
            self.maps = show_layer(viewer, "image", maps, {
                "name": f"{layer.name} maps", "colormap": "magma", "blending": "additive",
                "contrast_limits": (0.0, 1.0), "metadata": {OUTPUT: "maps"},
                **image_transform(fine_nm, self.first_frame)})
        # the points last: a layer marked running before a render or maps that failed (out
        # of memory) stayed "running" for Export and File > Save without a run to end it
        self.points = GrowingPoints(viewer, f"{layer.name} localizations", DEEPCEL0_COLOR)
        for output in self.layers()[1:]:  # the render and maps are this run's until it ends
            self.points.own(output)
        self.render.token = self.points.token
        self.pacer = RefreshPacer()

    def layers(self) -> list:
        """The output layers, the main one first: the localizations, the render, the maps."""
        return [self.points.layer, self.render.layer] + ([self.maps] if self.maps is not None else [])

    def end(self, status: str) -> str:
        """Show everything the run got, mark it over (``status``: finished, cancelled, failed
        or its widget closed; its protocol says so) and say what it got, with the notes on
        its fits (molecules without an uncertainty, fits stopped at their box's edge)."""
        self.time_left = ""  # the run is over, whatever the last batch estimated
        self.refresh()
        self.points.finish()
        if self.protocol is not None:  # the frames done: all of them, or those before a cancel or an error
            self.points.layer.metadata[PROTOCOL] = self.protocol(
                self.points.frames_done(), self.frame_shape, self.points.count,
                seconds=time.perf_counter() - self.started, frames_asked=self.selection, status=status)
        return "; ".join([self.describe(), *fit_notes(self.points.table(), short=True)])

    def fit_details(self) -> str | None:
        """The full notes on the run's fits (the status line holds the short ones)."""
        return "\n\n".join(fit_notes(self.points.table())) or None

    def describe(self) -> str:
        replaced = replaced_pixels_text(self.pixels_replaced, self.frames_dimmed)
        return (f"{self.frames_done}/{self.total} frames at {self.pixel_nm:g} nm/pixel, "
                f"{counted(self.points.count, 'localization')}, {rate_text(self.frames_per_second)}{self.time_left}"
                f"{'; ' + replaced if replaced else ''}")

    def add(self, result: BatchResult) -> None:
        self.points.add(result.table, result.frames)
        self.frames_done = result.done
        self.pixels_replaced = result.pixels_replaced
        self.frames_dimmed = result.frames_dimmed
        self.frames_per_second = result.frames_per_second
        self.time_left = result.time_left()
        self.renderer.add(result.table)
        if self.maps is not None and result.maps is not None:
            self.maps.data[result.frames - self.first_frame] = result.maps
        if self.pacer.due():
            self.refresh()

    def refresh(self) -> None:
        """Show everything accumulated so far."""
        with self.pacer.redrawing():
            self.points.refresh()
            self.render.refresh()
            if self.maps is not None:
                keep_in_viewer(self.viewer, self.maps)
                self.maps.refresh()
                self.maps.reset_contrast_limits()


class _RenderDisplay:
    """The render layer of a run: the accumulated counts, blurred, with a contrast limit.

    Blurring a large render, or with a wide blur, takes seconds (a 9,600 x 9,600 render at
    4 nm: 2.5 s; 2,000 x 2,000 at 10 nm with a 1,000 nm blur: 3.4 s), so a render whose
    :meth:`work` exceeds :data:`THREAD_WORK` is blurred in a thread (SciPy releases the
    GIL) and shown on the GUI thread when ready, one blur at a time; a refresh asked for
    meanwhile runs when it ends, so the last one always shows (until :meth:`retire`: a
    new run's display takes over the layer).
    """

    #: the :meth:`work` above which the blur runs in a thread: about 0.1 s on one core, a
    #: 4-million-pixel render blurred by one render pixel (3 million by two: the default 20 nm
    #: blur of 10 nm pixels)
    THREAD_WORK = 100_000_000

    @staticmethod
    def work(pixels: int, blur_px: float) -> float:
        """The cost of showing a render of ``pixels`` blurred by a Gaussian of ``blur_px``
        render pixels: pixels x (16 + the kernel's width; SciPy's kernel reaches 4 sigma).
        About 0.7 ns per pixel and kernel tap, and 12 ns per pixel to copy and show it."""
        width = 2 * int(4.0 * blur_px + 0.5) + 1 if blur_px > 0 else 1
        return float(pixels) * (16 + width)

    def __init__(self, viewer, renderer: Renderer, blur_nm: float, layer, while_alive):
        self.viewer, self.renderer, self.blur_nm, self.layer = viewer, renderer, blur_nm, layer
        self.threaded = self.work(renderer.counts.size, blur_nm / renderer.pixel_nm) > self.THREAD_WORK
        self.busy = False  # a blur is running in its thread
        self._again = False
        self._retired = False
        self.token = None  # its run's (RUN_TOKEN): a late blur is not shown in a layer another run took since
        self._ready = ProgressRelay()  # carries the thread's result to the GUI thread
        # shown also after the panel was closed (its run's last refresh), not once napari is
        self._ready.report.connect(while_alive(self._show))

    def retire(self) -> None:
        """Show nothing more (a blur still running is dropped when it ends)."""
        self._retired = True

    def refresh(self) -> None:
        if self._retired:
            return
        if not self.threaded:
            self._show(self._display_image())
        elif self.busy:
            self._again = True
        else:
            self.busy = True
            threading.Thread(target=self._blur_in_thread, daemon=True).start()

    def _blur_in_thread(self) -> None:
        try:
            result = self._display_image()
        except Exception as exc:  # out of memory, say: said on the GUI thread (busy stayed True, and the
            result = exc  # render stopped updating for the rest of the run without a word: a review)
        self._ready.emit(result)

    def _display_image(self) -> tuple[np.ndarray, float]:
        image = self.renderer.image(self.blur_nm or None)
        return image, display_max(image)

    def _show(self, result: "tuple[np.ndarray, float] | Exception") -> None:
        if self._retired or self.layer.metadata.get(RUN_TOKEN) != self.token:  # (a failure too: another run's
            self.busy = False  # layer now, which its failure would have named: a review)
            return
        if self.layer not in self.viewer.layers and not filled_by_a_run(self.layer):
            self.busy = self._again = False  # deleted once its run had ended (the last blur of a large render
            return  # came later and put it back, saying it was deleted "during the run": a review)
        if isinstance(result, Exception):
            self.busy = False
            self.retire()  # the next blur would fail alike: the render stays as it was, the run goes on
            show_error(f"{self.layer.name} is no longer updated: blurring it failed ({result!r}); the "
                       "localizations go on. Use a larger render pixel or a smaller blur")
            return
        image, top = result
        keep_in_viewer(self.viewer, self.layer)
        self.layer.data = image
        self.layer.contrast_limits = (0.0, max(top, 1e-6))
        if self.threaded:
            self.busy = False
            if self._again:
                self._again = False
                self.refresh()
