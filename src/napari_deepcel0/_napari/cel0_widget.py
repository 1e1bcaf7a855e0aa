"""Dock widget 4: CEL0-IRL1 beside DeepCEL0 on a few frames, and the lambda sweep."""

from __future__ import annotations

import math

import napari
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning

from ..core.cel0 import (
    DEFAULT_LAM,
    MASS_COLUMN,
    Cel0Cancelled,
    Cel0Localizer,
    SolveProgress,
    excess_over_deepcel0_message,
    lambda_sweep,
    parse_background,
    sweep_lambdas,
)
from ..core.defaults import (CEL0_MAX_INNER, CEL0_MAX_OUTER, CEL0_THRESHOLD, CEL0_TOL, SWEEP_FRAMES, SWEEP_LAM_RANGE,
                             SWEEP_LAMS, SWEEP_TOL_NM)
from ..core.devices import DEVICES, resolve_device, resolve_precision
from ..core.model_io import bundled_model_path, read_model_info
from ..core.frames import parse_frame_selection
from ..core.metrics import outside_field_message
from ..core.predict import DeepLocalizer, localize_stream, localizer_scaling, scaling_settings
from ..core.progress import counted
from ..core.protocol import localization_protocol, network_protocol
from .controls import (DockPanel, LinePlot, float_box, ground_truth_combo, outlier_pixels_checkbox,
                       replaced_pixels_text, row, stack_combo, wrapping_label)
from .jobs import JobControls, ProgressRelay, gpu_memory_hint
from .layers import (CEL0_COLOR, DEEPCEL0_COLOR, PROTOCOL, GrowingPoints, RefreshPacer, is_localization_result,
                     show_first_frame_unless_shown, stack_frame_count, table_from_layer)
from .reader import frame_source
from .settings import PersistentValues
from .state import state_for

CEL0, DEEPCEL0 = "CEL0", "DeepCEL0"
#: the sweep's range: the paper's [1e-3, 1] (``deepcel0 cel0 --sweep``'s) reaching a decade lower, so that it
#: holds the default lambda, 1e-3, within: on ISBI 2013 the paper's range ended at its lower edge and warned
#: that the optimum may lie beyond (a first-time user's review)
WIDGET_SWEEP_LAM_RANGE = (SWEEP_LAM_RANGE[0] / 10.0, SWEEP_LAM_RANGE[1])
#: times the sweep's curve grows on a GPU, where its lambdas are solved in groups
SWEEP_UPDATES = 5


def _compare_job(acq, source, frames, solver: dict, device: str, model_path, with_deepcel0: bool, progress,
                 fix_outlier_pixels: bool, scaling: dict, cancel=None):
    """Yield ``(method, BatchResult, checks)``: CEL0-IRL1 on the frames, then DeepCEL0, its
    frames scaled as ``scaling`` says (:func:`scaling_settings`, as the run's protocol
    records it). CEL0's ``checks`` are its protocol's counts so far
    (:meth:`~.cel0.Cel0Localizer.protocol_counts`); DeepCEL0's are empty."""
    with gpu_memory_hint():
        cel0 = Cel0Localizer(acq, device=device, progress=progress, cancel=cancel, **solver)
        # loaded now, as Run hashed it for the protocol: loaded after the CEL0 part (minutes), a file
        # rewritten meanwhile (a training saving to it) ran under the old one's SHA-256 (a review)
        deep = DeepLocalizer(model_path, acquisition=acq, device=device,  # None: the bundled model
                             **localizer_scaling(scaling)) if with_deepcel0 else None
        try:
            for result in localize_stream(cel0, source, frames=frames, cancel=cancel,
                                          fix_outlier_pixels=fix_outlier_pixels):
                yield CEL0, result, cel0.protocol_counts()
        except Cel0Cancelled:
            return
        if deep is not None and not cancel.is_set():
            for result in localize_stream(deep, source, frames=frames, cancel=cancel,
                                          fix_outlier_pixels=fix_outlier_pixels):
                yield DEEPCEL0, result, {}


def _sweep_job(source, ground_truth, acq, progress, cancel=None, **settings):
    """The lambda sweep, or None when it was cancelled."""
    with gpu_memory_hint():
        try:
            return lambda_sweep(source, ground_truth, acq, progress=progress, cancel=cancel, **settings)
        except Cel0Cancelled:
            return None


class Cel0Widget(DockPanel):
    """Run CEL0-IRL1 on chosen frames and show its localizations beside DeepCEL0's;
    sweep lambda against a ground-truth layer (Jaccard vs lambda)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.layer = stack_combo(napari_viewer)
        self.lam = float_box("lambda", DEFAULT_LAM, 1e-6, 100.0, decimals=6, step=0.01)
        self.lam.tooltip = ("CEL0-IRL1's regularisation weight, on frames scaled to a maximum of 1 (higher: fewer, "
                            "surer molecules); the sweep below finds one. Not the training loss's lambda")
        self.max_outer = SpinBox(min=1, max=100_000, value=CEL0_MAX_OUTER, tooltip="IRL1 (reweighting) iterations")
        self.max_inner = SpinBox(min=1, max=100_000, value=CEL0_MAX_INNER, tooltip="FISTA iterations per reweighting")
        self.background = LineEdit(label="background (ADU | auto | none)", value="auto")
        self.frames = LineEdit(label="frames (1-based)", value="1-2")
        self.device = ComboBox(choices=list(DEVICES), value="auto")
        self.batch_size = SpinBox(min=0, max=4096, value=0, tooltip="frames solved together (0: automatic)")
        self.with_deepcel0 = CheckBox(text="also run DeepCEL0 on these frames", value=True,
                                      tooltip="with the current model and its automatic threshold")
        self.fix_outlier_pixels = outlier_pixels_checkbox()  # for the comparison and the sweep
        self.job = JobControls("CEL0-IRL1", "Run CEL0-IRL1")
        self.state.watch_job(self.job)  # (the acquisition edited during its run: said)
        self.summary = wrapping_label(label="result")
        self.ground_truth = ground_truth_combo(napari_viewer, "sweep: ground truth")
        self.lam_min = float_box("", WIDGET_SWEEP_LAM_RANGE[0], 1e-6, 100.0, decimals=6, step=1e-4)
        self.lam_max = float_box("", WIDGET_SWEEP_LAM_RANGE[1], 1e-6, 100.0, decimals=6, step=0.1)
        self.n_lams = SpinBox(min=1, max=200, value=12,  # fewer than the paper's 30: a first look in napari
                              tooltip=f"lambda values, log-spaced (the paper: {SWEEP_LAMS})")
        self.sweep_frames = SpinBox(min=1, max=10_000, value=SWEEP_FRAMES,
                                    tooltip="frames drawn at random from the selection of 'frames (1-based)' "
                                            "above (all of them when it holds fewer)")
        self.tolerance = FloatSpinBox(label="sweep: tolerance (nm)", min=1.0, max=10_000.0, value=SWEEP_TOL_NM)
        self.sweep_job = JobControls("Lambda sweep", "Sweep lambda")
        self.state.watch_job(self.sweep_job)  # (the acquisition edited during its run: said)
        self.plot = LinePlot("lambda", "Jaccard [%]", log_x=True, height_px=170, empty_y=(0.0, 100.0))
        self.plot.follow_theme(napari_viewer)
        self.best = wrapping_label(label="best")
        self.use_best_button = PushButton(text="Use the best lambda", enabled=False)
        self.reset_button = PushButton(text="Reset settings")
        self.extend([self.layer, self.lam, row("iterations (outer, inner)", self.max_outer, self.max_inner),
                     self.background, self.frames, row("device, batch (0: auto)", self.device, self.batch_size),
                     self.with_deepcel0, self.fix_outlier_pixels, self.job, self.summary, self.ground_truth,
                     row("sweep: lambda from, to", self.lam_min, self.lam_max),
                     row("sweep: lambdas, frames", self.n_lams, self.sweep_frames), self.tolerance, self.sweep_job,
                     self.plot, self.best, self.use_best_button, self.reset_button])
        self.settings = PersistentValues("cel0", {
            "lam": self.lam, "max_outer": self.max_outer, "max_inner": self.max_inner,
            "background": self.background, "frames": self.frames, "device": self.device,
            "batch_size": self.batch_size, "with_deepcel0": self.with_deepcel0,
            "fix_outlier_pixels": self.fix_outlier_pixels, "n_lams": self.n_lams,
            "lam_min": self.lam_min, "lam_max": self.lam_max, "sweep_frames": self.sweep_frames,
            "tolerance": self.tolerance})
        self.relay = ProgressRelay()
        self.relay.report.connect(self.job.while_open(self._solver_progress))
        self.sweep_relay = ProgressRelay()
        self.sweep_relay.report.connect(self.sweep_job.while_open(self._sweep_progress))
        self._outputs: dict[str, GrowingPoints] = {}
        self._curve: list[tuple[float, float]] = []
        self._best_lam: float | None = None
        self.job.run_button.changed.connect(self.run)
        self.job.clear_refusal_on_change(self)
        self.sweep_job.clear_refusal_on_change(self)
        self.sweep_job.run_button.changed.connect(self.sweep)
        self.use_best_button.changed.connect(self.use_best)
        self.reset_button.changed.connect(self.settings.reset)

    def _inputs(self):
        """(layer, 1-based frame numbers, background) after checking them."""
        layer = self.layer.value
        n_frames = stack_frame_count(layer)
        resolve_device(self.device.value)
        return layer, parse_frame_selection(self.frames.value, n_frames) + 1, parse_background(self.background.value)

    # ------------------------------------------------------------ compare
    def run(self, *_) -> None:
        """CEL0-IRL1 (then DeepCEL0) on the chosen frames, in a worker thread."""
        if not self.job.idle():
            return
        try:
            layer, frames, background = self._inputs()
            if self.with_deepcel0.value and self.state.model_path is not None:
                read_model_info(self.state.model_path)  # a missing model fails now, not after the CEL0 run
        except (ValueError, RuntimeError) as exc:
            self.job.refuse(f"CEL0-IRL1: {exc}")
            return
        acq = self.state.prepare_stack(layer)
        self._solver_lam = self.lam.value
        solver = {"lam": self.lam.value, "max_outer": self.max_outer.value, "max_inner": self.max_inner.value,
                  "background": background, "batch_size": self.batch_size.value or None}
        self._methods = [CEL0, DEEPCEL0] if self.with_deepcel0.value else [CEL0]
        self._layer_names = {CEL0: f"{layer.name} CEL0 (lambda {self.lam.value:g})",
                             DEEPCEL0: f"{layer.name} DeepCEL0 (frames {self.frames.value})"}
        # each layer comes with its method's first frames: a run cancelled before them leaves no empty one
        # (an empty CEL0 layer was then the lambda sweep's ground truth: a review)
        self._outputs = {}
        self._total = len(frames) * len(self._methods)
        self._pixel_nm = acq.pixel_size_nm
        self._pacer = RefreshPacer()
        self._done_frames = {method: 0 for method in self._methods}
        self._cel0_checks = {}  # (set with CEL0's first batch, which makes its layer and so its protocol)
        self._seconds = {method: 0.0 for method in self._methods}
        self._pixels_replaced = 0  # in CEL0's frames (DeepCEL0 localizes the same frames)
        self._frames_dimmed = 0
        self.summary.value = ""
        scaling = scaling_settings()
        self._protocols = self._protocol_makers(layer, acq, solver, scaling)
        self._frames = frames
        self._frame_shape = tuple(layer.data.shape[-2:])
        show_first_frame_unless_shown(self.viewer, frames)
        self.job.start(_compare_job, acq, frame_source(layer.data), frames, solver, self.device.value,
                       self.state.model_path, self.with_deepcel0.value, self.relay.emit, self.fix_outlier_pixels.value,
                       scaling, on_yield=self._batch, on_finish=self._finished, on_closed=self._closed_while_running)

    def _protocol_makers(self, layer, acq, solver: dict, scaling: dict) -> dict:
        """Per method, ``localization_protocol`` with the run's settings (DeepCEL0's frames
        scaled as ``scaling`` says), waiting for what the run did (see :meth:`_show_all`)."""
        common = {"fix_outlier_pixels": self.fix_outlier_pixels.value,
                  "device": str(resolve_device(self.device.value))}
        stack = layer.metadata.get("path")
        cel0 = {"lambda": solver["lam"], "max_outer": solver["max_outer"], "max_inner": solver["max_inner"],
                "tol": CEL0_TOL, "background": solver["background"], "threshold": CEL0_THRESHOLD,
                "threshold_is_default": True, "read_out": "peaks", **common}
        def cel0_protocol(*args, **kwargs):  # with the counts the run made (_batch)
            return localization_protocol("CEL0-IRL1", acq, {**cel0, **self._cel0_checks}, *args, stack=stack,
                                         **kwargs)

        makers = {CEL0: cel0_protocol}
        if DEEPCEL0 in self._methods:
            info = read_model_info(self.state.model_path or bundled_model_path())
            device = resolve_device(self.device.value)
            deep = {"threshold": info.default_threshold, "threshold_is_default": True, "read_out": "peaks",
                    "orientations": 1, **scaling,
                    "precision": resolve_precision("auto", device), **common}
            makers[DEEPCEL0] = network_protocol(info, self.state.model_path, acq, deep, stack=stack)
        return makers

    def _solver_progress(self, p: SolveProgress) -> None:
        done = sum(self._done_frames.values())
        self.job.report(done, self._total, f"CEL0-IRL1: outer iteration {p.outer}, {p.active} of {p.total} frames "
                                           f"of the batch still iterating")

    def _batch(self, value) -> None:
        method, result, checks = value
        if method not in self._outputs:
            self._outputs[method] = (
                GrowingPoints(self.viewer, self._layer_names[method], CEL0_COLOR, mass_column=MASS_COLUMN)
                if method == CEL0 else GrowingPoints(self.viewer, self._layer_names[method], DEEPCEL0_COLOR))
            if method == CEL0:
                self.state.outputs_shown.emit([self._outputs[method].layer])
        output = self._outputs[method]
        output.add(result.table, result.frames)
        if self._pacer.due():
            self._refresh()
        self._done_frames[method] = result.done
        self._seconds[method] = result.elapsed_s
        if method == CEL0:
            self._cel0_checks = checks
            self._pixels_replaced = result.pixels_replaced
            self._frames_dimmed = result.frames_dimmed
        self.job.report(sum(self._done_frames.values()), self._total,
                        f"{method}: {result.done}/{result.total} frames, {counted(output.count, 'localization')}")

    def _refresh(self) -> None:
        with self._pacer.redrawing():
            for output in self._outputs.values():
                output.refresh()

    def _show_all(self, status: str) -> None:
        """Show everything done, also after an error or a cancel, and put each method's
        protocol on its layer (``status``: finished, cancelled, failed or widget closed)."""
        self._refresh()
        for method, output in self._outputs.items():
            output.finish()
            output.layer.metadata[PROTOCOL] = self._protocols[method](
                output.frames_done(), self._frame_shape, output.count, seconds=self._seconds[method],
                frames_asked=self._frames, status=status if self._done_frames[method] < len(self._frames)
                or status == "failed" else "finished")

    def _closed_while_running(self) -> None:
        """The widget was closed during the comparison, which cancelled it: its layers
        show what arrived and no longer count as running."""
        self._show_all("stopped: widget closed")
        show_info("CEL0-IRL1 comparison stopped when its widget was closed: " + ", ".join(
            self._method_summary(method, with_time=False) for method in self._methods))

    def _method_summary(self, method: str, with_time: bool = True) -> str:
        if method not in self._outputs:
            return f"{method}: no frame finished"
        seconds = f" ({self._seconds[method]:.1f} s)" if with_time else ""
        return (f"{method}: {counted(self._outputs[method].count, 'localization')} in "
                f"{counted(self._done_frames[method], 'frame')}{seconds}")

    def _excess_message(self) -> str:
        """:func:`excess_over_deepcel0_message` when both methods localized all the frames."""
        if any(self._done_frames.get(method) != len(self._frames) or method not in self._outputs
               for method in (CEL0, DEEPCEL0)):
            return ""
        return excess_over_deepcel0_message(self._outputs[CEL0].count, self._outputs[DEEPCEL0].count,
                                            len(self._frames), self._solver_lam)

    def _finished(self) -> None:
        self._show_all("failed" if self.job.error is not None else "cancelled" if self.job.cancelled else "finished")
        parts = [self._method_summary(method) for method in self._methods]
        if self._pixels_replaced or self._frames_dimmed:
            parts.append(replaced_pixels_text(self._pixels_replaced, self._frames_dimmed))
        excess = self._excess_message()
        if excess:
            parts.append(excess)
        self.summary.value = "; ".join(parts)
        if excess:
            show_warning(f"CEL0-IRL1 comparison: {excess}")
        if self.job.error is None:
            cut_short = self.job.cancelled and sum(self._done_frames.values()) < self._total
            self.job.status.value = (f"CEL0-IRL1 {'cancelled' if cut_short else 'finished'} "
                                     f"(at {self._pixel_nm:g} nm/pixel)")
            show_info(f"CEL0-IRL1 comparison: {self.summary.value}")

    # -------------------------------------------------------------- sweep
    def sweep(self, *_) -> None:
        """Jaccard vs lambda against the ground-truth layer, in a worker thread."""
        if not self.sweep_job.idle():
            return
        try:
            layer, frames, background = self._inputs()
            truth = self.ground_truth.value
            if truth is None:
                raise ValueError("choose a ground-truth Points layer (open its CSV with File > Open, or Load in "
                                 "the Matching widget)")
            if is_localization_result(truth):  # lambda would be chosen to agree with another method's answers
                raise ValueError(f"{truth.name!r} holds the localizations of a run, not a ground truth: open the "
                                 "ground truth's CSV (File > Open, or Load in the Matching widget)")
            if self.lam_min.value > self.lam_max.value:
                raise ValueError("the smallest lambda is larger than the largest")
            if self.n_lams.value == 1 and self.lam_min.value < self.lam_max.value:  # (it swept 'from' alone)
                raise ValueError("one lambda sweeps the lower end alone: set 'to' equal to 'from', or sweep 2 or "
                                 "more lambdas")
            sweep_lambdas(None, (self.lam_min.value, self.lam_max.value), self.n_lams.value)  # (in the job before)
            ground_truth = table_from_layer(truth)
            if len(ground_truth) == 0:  # (it failed in the worker, after the frames were read)
                raise ValueError(f"the ground truth {truth.name!r} has no molecules")
            lams_per_solve = self._lams_per_solve()  # (a GPU asked for and not there: refused here)
        except (ValueError, RuntimeError) as exc:
            self.sweep_job.refuse(f"Lambda sweep: {exc}")
            return
        acq = self.state.prepare_stack(layer)
        outside = outside_field_message(ground_truth, acq.field_nm(tuple(layer.data.shape[-2:])))
        if outside:  # (deepcel0 cel0 --sweep warned; here the sweep scored 0 % and offered a "best" lambda)
            show_warning(f"Lambda sweep: the ground truth {truth.name!r}: {outside}")
        self._curve = []
        self._best_lam = None
        self._sweep_frames_asked = self.sweep_frames.value
        self.use_best_button.enabled = False
        self.plot.clear()
        self.best.value = ""
        self.sweep_job.start(
            _sweep_job, frame_source(layer.data), ground_truth, acq, self.sweep_relay.emit,
            frames=frames, n_lams=self.n_lams.value, lam_range=(self.lam_min.value, self.lam_max.value),
            n_frames=self.sweep_frames.value, tol_nm=self.tolerance.value, max_outer=self.max_outer.value,
            max_inner=self.max_inner.value, background=background, device=self.device.value,
            fix_outlier_pixels=self.fix_outlier_pixels.value, lams_per_solve=lams_per_solve,
            on_return=self._swept)

    def _lams_per_solve(self) -> int:
        """On a GPU the sweep solves its lambdas together (fastest all at once); here in
        :data:`SWEEP_UPDATES` groups, so that the curve grows as it runs and Cancel says
        how far it got. On a CPU one at a time, as the library does."""
        if resolve_device(self.device.value).type == "cpu":
            return 1
        return max(1, math.ceil(self.n_lams.value / SWEEP_UPDATES))

    def _sweep_progress(self, value) -> None:
        done, total, lam, score = value
        self._curve.append((lam, score.jaccard))
        lams, jaccards = zip(*self._curve)
        self.plot.plot({f"Jaccard at {self.tolerance.value:g} nm": (lams, jaccards)})
        self.sweep_job.report(done, total, f"Lambda sweep: {done}/{total}, lambda {lam:.4g}: "
                                           f"Jaccard {score.jaccard:.1f} %")

    def _swept(self, sweep) -> None:
        if sweep is None:
            self.sweep_job.status.value = f"Lambda sweep cancelled after {counted(len(self._curve), 'lambda')}"
            show_info(self.sweep_job.status.value)
            return
        best = sweep.best_score
        curve = sweep.curve()
        found = best.tp > 0  # a "best" lambda of a curve at 0 % everywhere was offered to Use
        self.plot.plot({f"Jaccard at {sweep.tol_nm:g} nm": (curve["lam"], curve["jaccard"])},
                       marker=(sweep.best_lam, best.jaccard) if found else None)
        if not found:
            self.best.value = ("no lambda found a molecule of the ground truth (Jaccard 0 % at every lambda): is "
                               "the ground truth of this stack, in nm?")
            self.sweep_job.status.value = "Lambda sweep finished: no best lambda"
            show_warning(f"Lambda sweep: {self.best.value}")
            return
        self._best_lam = sweep.best_lam
        self.best.value = (f"lambda {self._best_lam:.4g}: Jaccard {best.jaccard:.1f} %, RMSE {best.rmse_nm:.1f} nm "
                           f"on frame{'s' if len(sweep.frames) != 1 else ''} {', '.join(str(f) for f in sweep.frames)} "
                           f"({sweep.seconds:.0f} s)")
        self.use_best_button.enabled = True
        if len(sweep.frames) < self._sweep_frames_asked:  # the frames field caps it (it was silent: a review)
            self.best.value += (f"; {counted(len(sweep.frames), 'frame')} of the {self._sweep_frames_asked} asked: "
                                "all those of the selection 'frames (1-based)' within the ground truth's frames")
        if sweep.edge_note:
            self.best.value += f"; {sweep.edge_note} (sweep: lambda from, to)"
        self.sweep_job.status.value = "Lambda sweep finished"
        (show_warning if sweep.edge_note else show_info)(f"Lambda sweep: best {self.best.value}")

    def use_best(self, *_) -> None:
        """Put the best lambda of the last sweep into the lambda field."""
        if self._best_lam is not None:
            self.lam.value = self._best_lam
