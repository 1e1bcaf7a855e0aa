"""The dock widgets, driven as a user would, on small simulated stacks.

Every run happens in a napari worker thread; the tests wait for it with qtbot.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import warnings

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_deepcel0._napari import controls
from napari_deepcel0._napari.acquisition_widget import AcquisitionWidget
from napari_deepcel0._napari.export_widget import ExportWidget
from napari_deepcel0._napari.layers import OUTPUT, table_from_layer
from napari_deepcel0._napari.localize_widget import LocalizeWidget
from napari_deepcel0._napari.matching_widget import MatchingWidget
from napari_deepcel0._napari.state import PluginState, state_for
from napari_deepcel0._napari.training_widget import TrainingWidget
from napari_deepcel0.core import defaults
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.io import FrameStack, read_localizations, write_thunderstorm_csv, write_tiff
from napari_deepcel0.core.model_io import bundled_model_path, load_model
from napari_deepcel0.core.predict import DeepLocalizer, NothingFoundWarning, localize
from napari_deepcel0.core.progress import format_duration

pytestmark = pytest.mark.qt

RUN_TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def _private_settings(tmp_path):
    """Keep the plugin's QSettings out of the user's configuration."""
    from qtpy.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))


@pytest.fixture
def stack_path(tmp_path):
    """8 frames of 32 x 32 camera pixels at high density, as a TIFF with its pixel size."""
    frames, emitters = sim.simulate_stack(n_frames=8, shape=(32, 32), density_per_um2=4.0, seed=3)
    path = write_tiff(tmp_path / "small.tif", np.clip(frames, 0, 65535).astype(np.uint16), pixel_size_nm=100.0)
    emitters.to_pickle(tmp_path / "gt.pkl")
    return path


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _dock(viewer, widget_class):
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _open(viewer, path):
    [layer] = viewer.open(path, plugin="napari-deepcel0")
    return layer


def _wait(qtbot, job, timeout=RUN_TIMEOUT_MS):
    qtbot.waitUntil(lambda: not job.busy, timeout=timeout)


def _localized(viewer, qtbot, **values):
    """A docked Localize widget after a run: its fields set to ``values`` (device cpu
    unless given), Localize pressed, the run waited for."""
    widget = _dock(viewer, LocalizeWidget)
    for name, value in {"device": "cpu", **values}.items():
        getattr(widget, name).value = value
    widget.run()
    _wait(qtbot, widget.job)
    return widget


def _camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _messages(severity) -> list[str]:
    return [str(n.message) for n in notification_manager.records if n.severity == severity]


def _pause_after_first(generator_function, resume: threading.Event | None = None):
    """Wrap a core generator so that, after its first item, it waits until ``resume``
    (by default the job's cancel event) is set: the test then acts (e.g. presses
    Cancel) between two batches."""

    def paused(*args, cancel=None, **kwargs):
        items = generator_function(*args, cancel=cancel, **kwargs)
        yield next(items)
        (resume or cancel).wait(timeout=60)
        yield from items

    return paused


def _running_in_a_dock(viewer, qtbot, stack_path, floating: bool = False):
    """A Localize widget docked with its dock kept (its close button), floating or not,
    running the stack a frame per batch, after its first frame: ``(widget, dock, worker)``."""
    _open(viewer, stack_path)
    widget = LocalizeWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Localize")
    dock.setFloating(floating)
    widget.device.value, widget.batch_size.value = "cpu", 1
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    return widget, dock, widget.job.worker


def _press_cancel(qtbot, job, ready) -> None:
    """Wait until ``ready()``, then press the job's Cancel button."""
    qtbot.waitUntil(ready, timeout=RUN_TIMEOUT_MS)
    job.cancel_button.native.click()


class _Ticker:
    """Counts QTimer ticks on the GUI thread, to check that the event loop turns."""

    def __init__(self, interval_ms: int = 20):
        self.interval_s = interval_ms / 1000
        self.start = time.perf_counter()
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def stop(self) -> tuple[int, float]:
        """(ticks, longest gap between ticks in seconds). Asserts that the loop ticked
        at least a quarter as often as an idle loop would have (and at least twice):
        how many ticks to expect depends on how long the job ran. The first half second
        is not counted: the test's own steps hold the loop then (a 0.2 s job on a busy
        2-core machine gave 2 ticks where 2.7 were asked)."""
        self.timer.stop()
        elapsed = time.perf_counter() - self.start
        expected = max(2.0, 0.25 * (elapsed - 0.5) / self.interval_s)
        assert len(self.times) >= expected, (len(self.times), elapsed)
        gaps = np.diff(self.times) if len(self.times) > 1 else np.array([np.inf])
        return len(self.times), float(gaps.max())


def _start_and_click_again(run, job) -> _Ticker:
    """Start a job, then click Run again while it runs: the second click is refused
    with a notification and the first job keeps running. Returns a ticker started
    with the job (stop it once the job is done)."""
    run()
    ticker = _Ticker()
    first_worker = job.worker
    run()
    assert job.worker is first_worker
    assert not job.run_button.enabled
    assert any("already running" in m for m in _messages(NotificationSeverity.INFO))
    return ticker


# ============================================================== acquisition
def test_acquisition_is_shared_validated_persistent_and_resettable(viewer):
    widget = _dock(viewer, AcquisitionWidget)
    state = state_for(viewer)
    widget.fwhm.value = 300.0
    assert state.acquisition.fwhm_nm == 300.0
    assert widget.sigma.value.startswith("127.4 nm")
    widget.upsampling.value = 16  # 6.25 nm fine pixels are fine; 100 nm FWHM with L = 1 is not
    widget.upsampling.value = 1
    widget.fwhm.value = 50.0
    assert "not applied" in widget.status.value
    assert state.acquisition.fwhm_nm == 300.0
    widget.fwhm.value = 280.0
    assert PluginState().acquisition == state.acquisition  # remembered for the next session
    widget.reset()
    assert state.acquisition == Acquisition()
    assert widget.fwhm.value == pytest.approx(258.21)


def test_all_panels_stacked_fit_the_window_and_scroll(make_napari_viewer, qtbot):
    """Stacked in one column the six panels need about 2,400 px; napari grew its window
    past a 1080 px screen to fit them (napari#4579). Each panel now scrolls in its dock,
    keeps a few lines and its whole width, and keeps its fields at the top of a tall dock."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    names = ["Acquisition", "Train DeepCEL0", "Localize", "CEL0-IRL1 compare", "Ground-truth matching", "Export"]
    docks = [viewer.window.add_plugin_dock_widget("napari-deepcel0", name)[0] for name in names]
    qtbot.wait(50)
    assert window.height() <= 1000
    line = window.fontMetrics().height()
    for dock in docks:
        scroll = dock.widget()
        assert isinstance(scroll, QScrollArea), dock.name
        panel = scroll.widget()
        assert scroll.height() >= min(5 * line, panel.sizeHint().height()), dock.name  # not squeezed to a line
        assert panel.width() >= panel.minimumSizeHint().width(), dock.name  # nothing cut under the scroll bar
    assert any(dock.widget().verticalScrollBar().maximum() > 0 for dock in docks)  # some scroll: they do not fit
    viewer.window.remove_dock_widget("all")
    dock, panel = viewer.window.add_plugin_dock_widget("napari-deepcel0", "Export")
    qtbot.wait(50)
    assert dock.widget().verticalScrollBar().maximum() == 0  # alone, it fits
    assert panel.points.native.mapTo(dock, panel.points.native.rect().topLeft()).y() < 6 * line  # at the top
    # napari finds the panel behind its scroll area (scripts got the scroll area), and a second click in the
    # Plugins menu gives the open panel; the scroll area takes no keyboard focus (napari's arrow keys step frames)
    assert dock.inner_widget() is panel and viewer.window.add_plugin_dock_widget("napari-deepcel0", "Export")[1] is panel
    assert panel.points.parent is panel and dock.widget().focusPolicy() == Qt.FocusPolicy.NoFocus


def test_pixel_size_comes_from_the_file(viewer, tmp_path):
    state = state_for(viewer)
    _open(viewer, write_tiff(tmp_path / "p160.tif", np.zeros((2, 8, 8), np.uint16), pixel_size_nm=160.0))
    assert state.acquisition.pixel_size_nm == pytest.approx(160.0)


def test_a_pixel_size_metadata_that_is_no_number_is_ignored_with_one_warning(viewer, qtbot, stack_path):
    """Other readers and users may put anything under metadata["pixel_size_nm"]: a string
    raised 'Unknown format code' when the layer was added, a tuple a TypeError from the
    layers' event, and every Localize or Estimate click raised again, doing nothing."""
    state = state_for(viewer)
    with FrameStack(stack_path) as stack:
        frames = np.stack([stack[i] for i in range(2)])
    text = viewer.add_image(frames, name="text", metadata={"pixel_size_nm": "160"})
    pair = viewer.add_image(frames, name="pair", metadata={"pixel_size_nm": (160.0, 160.0)})
    assert state.acquisition.pixel_size_nm == 100.0
    widget = _localized(viewer, qtbot, layer=pair)
    assert "at 100 nm/pixel" in widget.job.status.value and pair.scale[-1] == 100.0
    acquisition = _dock(viewer, AcquisitionWidget)
    acquisition.layer.value = text
    acquisition.estimate()
    _wait(qtbot, acquisition.job)
    assert acquisition.job.error is None and state.acquisition.pixel_size_nm == 100.0
    acquisition.pixel_size.value = 110.0  # a correction goes past them
    assert text.metadata["pixel_size_nm"] == "160"
    warned = [m for m in _messages(NotificationSeverity.WARNING) if "pixel size metadata" in m]
    assert warned == ["text: pixel size metadata '160' is not a number; ignored (the pixel size of the Acquisition "
                      "widget is used)", "pair: pixel size metadata (160.0, 160.0) is not a number; ignored (the "
                      "pixel size of the Acquisition widget is used)"]


def test_a_file_pixel_size_that_is_no_camera_pixel_is_refused_once_and_not_analysed_with(viewer, stack_path):
    """A file declaring 10 nm pixels (a super-resolved image, with a PSF of 26 pixels) is
    not adopted: one warning however often the layer is prepared, and the checks before a
    run (``acquisition_for``) use the acquisition in use, as the run does."""
    state = state_for(viewer)
    with FrameStack(stack_path) as stack:
        frames = np.stack([stack[i] for i in range(2)])
    layer = viewer.add_image(frames, name="render", metadata={"pixel_size_nm": 10.0})
    state.prepare_stack(layer)
    assert state.acquisition.pixel_size_nm == 100.0 and state.acquisition_for(layer) == state.acquisition
    assert layer.scale[-1] == 100.0
    warned = [m for m in _messages(NotificationSeverity.WARNING) if "was not applied" in m]
    assert len(warned) == 1 and warned[0].startswith("render: pixel size 10 nm from the file was not applied")
    other = viewer.add_image(frames, name="p160", metadata={"pixel_size_nm": 160.0})
    assert state.acquisition_for(other).pixel_size_nm == 160.0 and state.acquisition.pixel_size_nm == 160.0


def test_estimate_from_stack(viewer, qtbot, tmp_path):
    acq = Acquisition(fwhm_nm=220.0, offset_adu=100.0, read_noise_adu=2.0)
    frames, _ = sim.simulate_stack(n_frames=8, shape=(64, 64), density_per_um2=0.3, structure="uniform", acq=acq,
                                   photons=sim.PhotonModel(1500.0, 2500.0, 0.1),
                                   noise=sim.CameraNoise(background_photons=(10.0, 10.0)), seed=2)
    _open(viewer, write_tiff(tmp_path / "sparse.tif", frames.astype(np.float32), pixel_size_nm=100.0))
    widget = _dock(viewer, AcquisitionWidget)
    widget.estimate()
    _wait(qtbot, widget.job)
    estimated = state_for(viewer).acquisition
    assert estimated.fwhm_nm == pytest.approx(220.0, rel=0.05)
    assert 100.0 <= estimated.offset_adu <= 115.0
    assert widget.fwhm.value == pytest.approx(estimated.fwhm_nm)
    assert "autocorrelation of 8 frames" in widget.job.status.value
    # which fields it set, from what (a user typing the camera's own values could not tell: a review)
    default = Acquisition()
    assert (f"; set PSF FWHM {default.fwhm_nm:g} -> {estimated.fwhm_nm:g}, camera offset {default.offset_adu:g} -> "
            f"{estimated.offset_adu:g}, read noise {default.read_noise_adu:g} -> {estimated.read_noise_adu:g}") \
        in widget.job.status.value
    # a layer drawn in um at the acquisition's size is at that size (its scale of 0.1 was taken for 0.1 nm)
    widget.layer.value = viewer.add_image(frames[:2], name="in um", scale=(1, 0.1, 0.1), units=("", "um", "um"))
    widget.estimate()
    _wait(qtbot, widget.job)
    assert not any("using the acquisition pixel size" in m and "in um" in m
                   for m in _messages(NotificationSeverity.INFO))
    widget.layer.value = viewer.add_image(frames[:2], name="in pixels")  # napari's default scale of 1: said
    widget.estimate()
    _wait(qtbot, widget.job)
    assert "Estimate: using the acquisition pixel size 100 nm for in pixels" in _messages(NotificationSeverity.INFO)


def test_an_estimate_applies_what_is_valid_and_says_what_is_not(viewer, qtbot):
    """A negative baseline (frames with the offset subtracted) threw the whole estimate
    away, a good FWHM too (review): it is applied with an offset of 0, and the status
    line and a warning say so; an estimate from few frames warns how far off it can be
    (one frame was "1 frames")."""
    acq = Acquisition(fwhm_nm=220.0, offset_adu=100.0, read_noise_adu=2.0)
    frames, _ = sim.simulate_stack(n_frames=6, shape=(64, 64), density_per_um2=0.3, structure="uniform", acq=acq,
                                   photons=sim.PhotonModel(1500.0, 2500.0, 0.1),
                                   noise=sim.CameraNoise(background_photons=(10.0, 10.0)), seed=2)
    widget = _dock(viewer, AcquisitionWidget)
    widget.layer.value = viewer.add_image(frames.astype(np.float32) - 3000, name="neg")
    widget.estimate()
    _wait(qtbot, widget.job)
    estimated = state_for(viewer).acquisition
    assert estimated.offset_adu == 0.0 and estimated.fwhm_nm == pytest.approx(220.0, rel=0.06)
    assert "is below 0 (the offset already subtracted?): offset 0" in widget.job.status.value
    assert widget.job.status.value.startswith("Estimated from 'neg': baseline")  # the layer's name quoted
    assert widget.job.status.value in _messages(NotificationSeverity.WARNING)
    widget.layer.value = viewer.add_image(frames[0].astype(np.float32), name="one")
    widget.estimate()
    _wait(qtbot, widget.job)
    assert "(autocorrelation of 1 frame)" in widget.job.status.value
    assert "from 1 frame the FWHM can be 15-35 % off" in widget.job.status.value


# ================================================================= localize
def test_localize_streams_the_same_points_as_the_core(viewer, qtbot, stack_path):
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 2
    widget.render_blur.value = 0.0
    streamed = []  # frames per result that reached the widget
    show_batch = widget._batch
    widget._batch = lambda result: streamed.append(len(result.frames)) or show_batch(result)
    ticker = _start_and_click_again(widget.run, widget.job)
    _wait(qtbot, widget.job)
    _, longest_gap = ticker.stop()

    points = viewer.layers[f"{layer.name} localizations"]
    render = viewer.layers[f"{layer.name} render"]
    model = DeepLocalizer(None, acquisition=state_for(viewer).acquisition, device="cpu", batch_size=2)
    expected = localize(model, FrameStack(stack_path))
    got = table_from_layer(points)
    assert len(got) == len(expected) > 0
    key = ["frame", "y [nm]", "x [nm]"]
    np.testing.assert_allclose(got.sort_values(key)[key].to_numpy(), expected.sort_values(key)[key].to_numpy(),
                               atol=1e-6)
    assert render.data.sum() == len(expected)
    assert render.scale[-1] == widget.render_pixel.value
    assert points.metadata["frames"].tolist() == list(range(1, 9))
    assert streamed == [2, 2, 2, 2]  # batches of 2 frames
    assert "finished" in widget.job.status.value and "frames/s" in widget.job.status.value
    # the event loop kept turning while the worker ran (the tick count is checked by stop())
    assert longest_gap < 1.5


def _hot_pixel_stack(tmp_path) -> Path:
    frames, _ = sim.simulate_stack(n_frames=3, shape=(32, 32), density_per_um2=2.0, seed=5)
    frames = np.clip(frames, 0, 65535).astype(np.uint16)
    frames[:, 7, 9] = 65535  # a saturated pixel in every frame
    return write_tiff(tmp_path / "hot.tif", frames, pixel_size_nm=100.0)


@pytest.mark.parametrize("fix", [True, False])
def test_localize_replaces_hot_pixels_unless_told_not_to(viewer, qtbot, tmp_path, fix):
    path = _hot_pixel_stack(tmp_path)
    layer = _open(viewer, path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.fix_outlier_pixels.value = fix
    widget.run()
    _wait(qtbot, widget.job)
    assert ("3 hot, dead or NaN pixels replaced" in widget.job.status.value) == fix
    model = DeepLocalizer(None, acquisition=state_for(viewer).acquisition, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NothingFoundWarning)  # (kept, the saturated pixel leaves nothing)
        expected = localize(model, FrameStack(path), fix_outlier_pixels=fix)
    got = table_from_layer(viewer.layers[f"{layer.name} localizations"])
    assert len(got) == len(expected)  # the saturated pixel leaves (almost) nothing when it is kept
    if len(expected):
        key = ["frame", "y [nm]", "x [nm]"]
        np.testing.assert_allclose(got.sort_values(key)[key].to_numpy(), expected.sort_values(key)[key].to_numpy(),
                                   atol=1e-6)


def test_localize_says_it_dimmed_a_bead(viewer, qtbot, tmp_path):
    frames, _ = sim.simulate_stack(n_frames=3, shape=(32, 32), density_per_um2=2.0, seed=5)
    bump = np.exp(-((np.arange(5) - 2.0)[:, None] ** 2 + (np.arange(5) - 2.0) ** 2) / 2.4)
    frames = frames.astype(np.float32)
    frames[:, 25:30, 25:30] += 50000.0 * bump  # a bead, 50 times the molecules
    layer = _open(viewer, write_tiff(tmp_path / "bead.tif", frames.astype(np.uint16), pixel_size_nm=100.0))
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.run()
    _wait(qtbot, widget.job)
    assert "a bright object (bead?) dimmed in 3 frames" in widget.job.status.value
    assert len(table_from_layer(viewer.layers[f"{layer.name} localizations"])) > 20  # the molecules are found


def _quick_cel0_widget(viewer, layer, frames: str):
    """A docked CEL0 widget on ``layer``'s ``frames``, on the CPU with small iteration caps."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    widget = _dock(viewer, Cel0Widget)
    widget.layer.value = layer
    widget.device.value = "cpu"
    widget.max_outer.value = 2
    widget.max_inner.value = 10
    widget.frames.value = frames
    return widget


@pytest.mark.parametrize("fix", [True, False])
def test_cel0_replaces_hot_pixels_unless_told_not_to(viewer, qtbot, tmp_path, fix):
    layer = _open(viewer, _hot_pixel_stack(tmp_path))
    widget = _quick_cel0_widget(viewer, layer, "1-2")
    widget.fix_outlier_pixels.value = fix
    widget.run()
    _wait(qtbot, widget.job)
    assert ("2 hot, dead or NaN pixels replaced" in widget.summary.value) == fix
    for name in (f"{layer.name} CEL0 (lambda {widget.lam.value:g})", f"{layer.name} DeepCEL0 (frames 1-2)"):
        got = table_from_layer(viewer.layers[name])
        assert got["frame"].isin([1, 2]).all()
        # with the hot pixel kept, each frame is scaled by 65,535 ADU: (almost) nothing is found
        assert (len(got) > 10) == fix


def test_a_cel0_comparisons_protocol_counts_noise_frames_and_faint_localizations(viewer, qtbot, tmp_path):
    """The CEL0 widget's protocol records what deepcel0 cel0's does: the frames that showed
    only noise and the faint localizations (its protocol lacked both: a review)."""
    from napari_deepcel0._napari.layers import PROTOCOL
    from napari_deepcel0.core.cel0 import BackgroundOnlyWarning, Cel0Localizer, FaintLocalizationsWarning

    sparse, _ = sim.simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=0.5, structure="uniform", seed=2)
    noise = sim.CameraNoise(background_photons=(10.0, 10.0), quantize=True).apply(
        np.zeros((1, 48, 48)), Acquisition(), np.random.default_rng(0))
    frames = np.clip(np.concatenate([sparse[:1], noise, sparse[1:]]), 0, 65535).astype(np.uint16)
    layer = _open(viewer, write_tiff(tmp_path / "sparse.tif", frames, pixel_size_nm=100.0))
    widget = _quick_cel0_widget(viewer, layer, "1-3")
    widget.run()
    _wait(qtbot, widget.job)
    protocol = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"].metadata[PROTOCOL]
    assert any("are fainter than 3 noise standard deviations" in m for m in _messages(NotificationSeverity.WARNING))
    core = Cel0Localizer(state_for(viewer).acquisition, max_outer=2, max_inner=10, device="cpu")
    with pytest.warns(BackgroundOnlyWarning), pytest.warns(FaintLocalizationsWarning):
        localize(core, FrameStack(tmp_path / "sparse.tif"), frames="1-3")
    assert core.background_only_numbers == [2] and core.faint_count > 0
    assert protocol["settings"]["frames_background_only"] == "2"
    assert protocol["settings"]["localizations_faint"] == core.faint_count


def test_a_cel0_comparison_says_when_cel0_finds_far_more_than_deepcel0(viewer, qtbot, tmp_path):
    """At 2 molecules/um^2 CEL0's default lambda fits the noise (Jaccard 47 %), and no warning
    said so: the faint rule catches only sparser frames. The comparison's counts do."""
    from napari_deepcel0.core.cel0 import EXCESS_OVER_DEEPCEL0

    frames, _ = sim.simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=2.0, structure="uniform", seed=3)
    layer = _open(viewer, write_tiff(tmp_path / "sparse.tif", np.clip(frames, 0, 65535).astype(np.uint16),
                                     pixel_size_nm=100.0))
    widget = _quick_cel0_widget(viewer, layer, "1-2")
    widget.max_outer.value, widget.max_inner.value = defaults.CEL0_MAX_OUTER, defaults.CEL0_MAX_INNER
    widget.run()
    _wait(qtbot, widget.job)
    n_cel0 = len(viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"].data)
    n_deep = len(viewer.layers[f"{layer.name} DeepCEL0 (frames 1-2)"].data)
    assert n_cel0 > EXCESS_OVER_DEEPCEL0 * n_deep > 0
    said = (f"CEL0 found {n_cel0 / n_deep:.1f} times as many localizations as DeepCEL0 on these frames ({n_cel0} "
            f"against {n_deep}")
    assert said in widget.summary.value and "lambda 0.001 (the default, made for dense frames like ISBI 2013's) is likely too small" in \
        widget.summary.value
    assert any(said in m for m in _messages(NotificationSeverity.WARNING))
    widget.lam.value = 0.01  # (its count then comes near DeepCEL0's)
    widget.run()
    _wait(qtbot, widget.job)
    assert "times as many localizations" not in widget.summary.value


def test_a_cel0_comparison_runs_the_deepcel0_model_its_protocol_names(viewer, qtbot, stack_path, tmp_path,
                                                                     monkeypatch, tiny_model_path):
    """Run hashed the model file for the protocol, the job loaded it after the CEL0 part: a
    file rewritten meanwhile (a training saving to it) ran under the old one's SHA-256."""
    from napari_deepcel0._napari import cel0_widget
    from napari_deepcel0._napari.layers import PROTOCOL
    from napari_deepcel0.core.cel0 import Cel0Localizer
    from napari_deepcel0.core.protocol import file_sha256

    resume, entered = threading.Event(), threading.Event()
    real = cel0_widget.localize_stream

    def held_in_cel0(model, *args, **kwargs):
        if isinstance(model, Cel0Localizer):
            entered.set()
            resume.wait(60)
        yield from real(model, *args, **kwargs)

    monkeypatch.setattr(cel0_widget, "localize_stream", held_in_cel0)
    current = tmp_path / "current.safetensors"
    shutil.copy(tiny_model_path, current)
    layer = _open(viewer, stack_path)
    widget = _quick_cel0_widget(viewer, layer, "1-2")
    widget.state.model_path = current
    widget.run()
    qtbot.waitUntil(entered.is_set, timeout=RUN_TIMEOUT_MS)
    shutil.copy(bundled_model_path(), current)  # a training into the current model's file ends now
    resume.set()
    _wait(qtbot, widget.job)
    deep = viewer.layers[f"{layer.name} DeepCEL0 (frames 1-2)"]
    assert deep.metadata[PROTOCOL]["model"]["sha256"] == file_sha256(tiny_model_path) != file_sha256(current)
    with pytest.warns(NothingFoundWarning):  # the tiny model finds nothing here, the bundled one hundreds
        expected = localize(DeepLocalizer(tiny_model_path, acquisition=state_for(viewer).acquisition, device="cpu"),
                            FrameStack(stack_path), frames="1-2")
    assert len(deep.data) == len(expected) == 0


def test_localize_with_orientation_averaging_matches_the_core(viewer, qtbot, stack_path):
    layer = _open(viewer, stack_path)
    _localized(viewer, qtbot, frames="1-2", orientations=4)
    model = DeepLocalizer(None, acquisition=state_for(viewer).acquisition, device="cpu", orientations=4)
    expected = localize(model, FrameStack(stack_path), frames="1-2")
    got = table_from_layer(viewer.layers[f"{layer.name} localizations"])
    key = ["frame", "y [nm]", "x [nm]"]
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.sort_values(key)[key].to_numpy(), expected.sort_values(key)[key].to_numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("option, columns", [("photometry", ["intensity [photon]"]),
                                             ("fit_positions", ["x [nm]", "y [nm]", "intensity [photon]",
                                                                "uncertainty [nm]"])])
def test_localize_with_photon_counts_or_fitted_positions_matches_the_core(viewer, qtbot, stack_path, option,
                                                                         columns):
    layer = _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, frames="1-2", **{option: True})
    acq = state_for(viewer).acquisition
    expected = localize(DeepLocalizer(None, acquisition=acq, device="cpu"), FrameStack(stack_path), frames="1-2",
                        **{option: True})
    got = table_from_layer(viewer.layers[f"{layer.name} localizations"])
    key = ["frame", "y [nm]", "x [nm]"]
    assert len(got) == len(expected) > 0
    for column in columns:
        np.testing.assert_allclose(got.sort_values(key)[column].to_numpy(),
                                   expected.sort_values(key)[column].to_numpy(), rtol=1e-6, atol=1e-6)
    assert got["offset [photon]"].notna().all()
    # the status tells of fits that stopped at their box's edge, as the command line does
    edge = int((expected.get("at_box_edge", pd.Series(dtype=float)) == 1).sum())
    assert (f"{edge} of {len(expected)} position fits" in widget.job.status.value) == (edge > 0)
    # the status line says it briefly, its tooltip in full (15 lines of notes read as a failure: a review)
    if edge:
        assert "usual in crowds" in widget.job.status.value and "docs/benchmarks.md" not in widget.job.status.value
        assert "stopped at the edge of their box" in widget.job.status.tooltip
    assert (edge > 0) == (option == "fit_positions")


def test_a_running_layer_holds_the_frame_on_screen_and_every_localization_reads_from_it(
        viewer, qtbot, stack_path, tmp_path, monkeypatch):
    """napari re-sets a growing Points layer point by point (about 1 s per million points
    on the GUI thread, review): while a run goes on its layer holds only the frame on
    screen, follows the slider, and Matching, Export and the table see every localization."""
    from napari_deepcel0._napari import localize_widget

    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream))
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value, widget.batch_size.value = "cpu", 2  # frames 1-2, then a pause
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 2, timeout=RUN_TIMEOUT_MS)
    run = widget._run.points
    points = run.layer
    so_far = run.table()
    assert set(so_far["frame"]) == {1, 2} and run.count == len(so_far)
    assert round(viewer.dims.point[0]) == 3 and len(points.data) == 0  # napari opened the stack at frame 4
    viewer.dims.set_point(0, 0.0)  # the slider to frame 1
    on_screen = np.round(points.data[:, 0]).astype(int) + 1
    assert set(on_screen) == {1} and len(points.data) == int((so_far["frame"] == 1).sum())
    viewer.dims.set_point(0, 1.0)  # the slider to frame 2
    assert len(points.data) == int((so_far["frame"] == 2).sum()) and set(np.round(points.data[:, 0])) == {1.0}
    assert list(points.features.columns) == ["confidence"]
    viewer.dims.set_point(0, 5.0)  # a frame not done yet
    assert len(points.data) == 0
    pd.testing.assert_frame_equal(table_from_layer(points).reset_index(drop=True), so_far, check_dtype=False)
    export = _dock(viewer, ExportWidget)
    export.points.value = points
    export.csv_path.value = tmp_path / "midrun.csv"
    export.save_csv()
    _wait(qtbot, export.csv_job)
    assert len(read_localizations(tmp_path / "midrun.csv")) == len(so_far) > len(points.data)
    export.image.value = viewer.layers["small render"]  # a TIFF of the run's render says so too (review)
    export.tiff_path.value = tmp_path / "midrun.tif"
    export.save_tiff()
    _wait(qtbot, export.tiff_job)
    assert "its run was still going" in export.tiff_job.status.value
    from napari.plugins.io import save_layers

    save_layers(str(tmp_path / "menu.csv"), [points], plugin="napari-deepcel0")  # napari's File > Save Layers
    assert len(read_localizations(tmp_path / "menu.csv")) == len(so_far)
    from napari.layers._layer_actions import _duplicate_layer

    viewer.dims.set_point(0, 0.0)
    viewer.layers.selection = {points}
    _duplicate_layer(viewer.layers)  # napari's Duplicate Layer: a copy of every localization so far, no run's
    copy = viewer.layers[f"{points.name} copy"]
    assert len(copy.data) == len(so_far) > len(points.data) and copy.metadata["running"] is False
    assert copy.metadata["frames"].tolist() == [1, 2] and points.metadata["running"] is True
    pd.testing.assert_frame_equal(table_from_layer(copy), so_far, check_dtype=False)
    viewer.dims.ndisplay = 3  # the frame axis displayed: everything so far
    assert len(points.data) == len(so_far)
    viewer.dims.ndisplay = 2
    widget.job.cancel_button.native.click()
    _wait(qtbot, widget.job)
    assert points.metadata["running"] is False and len(points.data) == run.count  # every localization, once over
    viewer.dims.set_point(0, 0.0)
    assert len(points.data) == run.count  # the slider no longer changes it


def test_a_running_layer_merges_its_batches_follows_a_rolled_axis_and_is_not_kept_alive(viewer):
    """Per-frame batches piled up a table each (a count summed them per batch: 9.5 ms at
    20,000); rolling the dims displayed the frame axis without a redraw; a run whose
    widget went (napari closed mid-run) stayed registered with all its tables (diff review)."""
    import gc

    from napari_deepcel0._napari import layers

    viewer.add_image(np.zeros((400, 16, 16), np.float32), scale=(1, 100, 100))
    viewer.dims.set_point(0, 0.0)
    run = layers.GrowingPoints(viewer, "run localizations", "yellow")
    for frame in range(1, 301):
        run.add(pd.DataFrame({"frame": [frame] * 2, "x [nm]": [100.0, 200.0], "y [nm]": [300.0, 400.0],
                              "confidence": [1.0, 0.5]}), np.array([frame]))
    assert len(run.tables) <= run.MAX_PIECES + 1 and run.count == 600
    viewer.dims.set_point(0, 99.0)  # frame 100, in the merged part
    assert run.layer.data[:, 0].tolist() == [99.0, 99.0]
    viewer.dims.set_point(0, 299.0)  # frame 300, in a later piece
    assert run.layer.data[:, 0].tolist() == [299.0, 299.0]
    assert len(run.table()) == 600 and run.frames_done().tolist() == list(range(1, 301))
    viewer.dims.roll()  # the frame axis displayed: every localization so far
    assert len(run.layer.data) == 600
    token = run.token
    assert layers._GROWING[token] is run
    del run
    gc.collect()
    assert token not in layers._GROWING


def test_localize_cancel_keeps_what_is_done(viewer, qtbot, stack_path, monkeypatch):
    from napari_deepcel0._napari import localize_widget

    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream))
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 1
    widget.show_maps.value = True
    widget.run()
    _press_cancel(qtbot, widget.job, lambda: widget._run.frames_done == 1)
    _wait(qtbot, widget.job)
    points = viewer.layers[f"{layer.name} localizations"]
    done = points.metadata["frames"]
    assert done.tolist() == [1]
    assert "cancelled: 1/8 frames" in widget.job.status.value
    assert "left" not in widget.job.status.value  # no time-left estimate once the run is over
    from napari_deepcel0._napari.layers import PROTOCOL

    protocol = points.metadata[PROTOCOL]  # says what the run did and that it stopped early
    assert protocol["status"] == "cancelled" and protocol["input"]["frames"] == "1"
    assert protocol["input"]["frames_asked"] == "1-8" and protocol["results"]["localizations"] == len(points.data)
    got = table_from_layer(points)
    assert set(got["frame"]) <= set(done.tolist())
    maps = viewer.layers[f"{layer.name} maps"]
    assert maps.data.shape == (8, 128, 128)
    assert maps.data[: len(done)].max() > 0 and maps.data[len(done):].max() == 0


def test_the_maps_of_frames_after_the_first_sit_on_their_frames(viewer, qtbot, stack_path):
    """A run of frames 3-4 with the fine-grid maps keeps two planes, drawn on frames 3 and 4
    (axis-0 2 and 3), each the core's map of its frame."""
    from napari_deepcel0.core.predict import localize_stream

    layer = _open(viewer, stack_path)
    _localized(viewer, qtbot, frames="3-4", show_maps=True, batch_size=1)
    maps = viewer.layers[f"{layer.name} maps"]
    model = DeepLocalizer(None, acquisition=state_for(viewer).acquisition, device="cpu", batch_size=1)
    expected = np.concatenate([r.maps for r in localize_stream(model, FrameStack(stack_path), frames=[3, 4],
                                                              batch_size=1, keep_maps=True)])
    assert maps.data.shape == expected.shape and maps.data.shape[0] == 2
    assert [maps.data_to_world([k, 0, 0])[0] for k in range(2)] == [2.0, 3.0]
    assert expected[0].max() > 0 and not np.allclose(expected[0], expected[1])  # two frames told apart
    np.testing.assert_allclose(maps.data, expected, rtol=1e-5, atol=1e-6)
    # shown on the maps' own range, not on the (0, 1) the layer started with (its molecules' peaks saturated)
    assert expected.max() > 1.0 and maps.contrast_limits[1] == pytest.approx(float(expected.max()), rel=1e-3)


def test_a_cancel_after_the_last_batch_reports_a_finished_run(viewer, qtbot, stack_path, monkeypatch):
    """Cancel pressed after the last batch said "cancelled: 8/8 frames" (lifecycle review)."""
    from napari_deepcel0._napari import localize_widget

    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream))
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value, widget.batch_size.value = "cpu", 16  # all 8 frames in the first batch
    widget.run()
    _press_cancel(qtbot, widget.job, lambda: widget._run.frames_done == 8)
    _wait(qtbot, widget.job)
    assert widget.job.status.value.startswith("Localization finished: 8/8 frames")


def test_a_localize_run_cancelled_before_its_first_frame_says_so_and_no_more(viewer, qtbot, stack_path):
    """Cancel pressed while the model loads: no frame is read, and the status says the run
    was cancelled with 0 frames done, not that no molecule was found above the threshold
    (the advice of a run that localized frames and found nothing)."""
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.run()
    widget.job.cancel()  # before the worker has loaded the model
    _wait(qtbot, widget.job)
    points = viewer.layers[f"{layer.name} localizations"]
    assert widget._run.frames_done == 0 and len(points.data) == 0 and points.metadata["running"] is False
    assert widget.job.status.value.startswith("Localization cancelled: 0/8 frames")
    assert "no molecule was found" not in widget.job.status.value


def test_localize_error_is_a_notification_and_partial_results_stay(viewer, qtbot, tmp_path):
    frames, _ = sim.simulate_stack(n_frames=4, shape=(32, 32), seed=1)
    frames[2, 5, 5:7] = np.nan  # two side by side (an isolated one is replaced like a dead pixel)
    layer = _open(viewer, write_tiff(tmp_path / "nan.tif", frames.astype(np.float32), pixel_size_nm=100.0))
    widget = _localized(viewer, qtbot, batch_size=1)
    assert "failed" in widget.job.status.value and "frame 3" in widget.job.status.value
    assert any("frame 3" in m for m in _messages(NotificationSeverity.ERROR))
    assert viewer.layers[f"{layer.name} localizations"].metadata["frames"].tolist() == [1, 2]
    assert widget.job.run_button.enabled


def test_out_of_gpu_memory_is_explained(viewer, qtbot, stack_path, monkeypatch):
    import torch

    def no_memory(*_args, **_kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield

    monkeypatch.setattr("napari_deepcel0._napari.localize_widget.localize_stream", no_memory)
    _open(viewer, stack_path)
    widget = _localized(viewer, qtbot)
    assert widget.job.status.value.startswith("Localization failed: out of GPU memory; lower the batch size")
    assert any("out of GPU memory" in m for m in _messages(NotificationSeverity.ERROR))


def test_a_runtime_error_in_a_generator_job_is_reported(qtbot, caplog):
    """superqt's generator worker would swallow it and never finish. Its traceback goes
    to the log: a bug showed as one line, like a user's mistake (a review)."""
    from napari_deepcel0._napari.jobs import JobControls

    def job(cancel=None):
        yield 1
        raise RuntimeError("boom")

    controls = JobControls("Test job", "Run")
    qtbot.addWidget(controls.native)
    yielded = []
    controls.start(job, on_yield=yielded.append)
    _wait(qtbot, controls, timeout=10_000)
    assert yielded == [1]
    assert controls.status.value == "Test job failed: boom"
    assert controls.run_button.enabled
    [record] = [r for r in caplog.records if r.getMessage() == "Test job failed"]
    assert record.exc_info[1] is controls.error and record.exc_info[2] is not None  # with its traceback


def test_a_refusal_is_cleared_when_an_input_changes(viewer, stack_path):
    """"open a stack first" stayed on the CEL0 widget after a stack was opened (a review)."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    widget = _dock(viewer, Cel0Widget)
    widget.run()
    assert "open a stack" in widget.job.status.value
    widget.frames.value = "1-3"  # an input typed: the refusal may no longer hold
    assert widget.job.status.value == ""
    widget.run()
    assert "open a stack" in widget.job.status.value
    _open(viewer, stack_path)  # the stack list takes it: cleared
    assert widget.job.status.value == "" and widget.layer.value is not None


def test_a_file_field_clears_a_refusal_and_a_button_does_not(viewer, tmp_path, monkeypatch):
    """A file field (a name and a Browse button) was not watched, so 'is a folder' stayed
    after a file was chosen; the Load button was, and cleared the refusal it had just
    shown (a review)."""
    from napari_deepcel0._napari import matching_widget

    export = _dock(viewer, ExportWidget)
    export.points.value = viewer.add_points(np.array([[0, 1.0, 1.0]]), name="pts")
    export.csv_path.value = tmp_path  # a folder
    export.save_csv()
    assert "is a folder" in export.csv_job.status.value
    export.csv_path.value = tmp_path / "out.csv"
    assert export.csv_job.status.value == ""
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,localization,table\n1,2,3,4\n")
    monkeypatch.setattr(matching_widget.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bad), "")))
    matching = _dock(viewer, MatchingWidget)
    matching.load_button.changed.emit(True)  # what a click does
    assert matching.job.status.value.startswith("Ground truth:")


def test_localize_reports_bad_inputs(viewer, tmp_path, stack_path):
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    # one line for the model; its (long) training notes go to the tooltip
    # in words: what the model is for; how it was trained (and its notes) in the tooltip
    assert widget.model_info.value == ("bundled DeepCEL0 model for pixel 100 nm, PSF FWHM 258.21 nm (sigma 109.7 nm), "
                                       "L = 4 (25 nm fine pixels)")
    assert "200,000 patches" in widget.model_info.tooltip and "relu head" in widget.model_info.tooltip
    state_for(viewer).acquisition = Acquisition(upsampling=8)  # another L alone: a note, not a warning (a review)
    assert "\nnote: upsampling L: model 4, data settings 8" in widget.model_info.value
    assert "WARNING" not in widget.model_info.value and not widget.model_info.native.styleSheet()
    state_for(viewer).acquisition = Acquisition(fwhm_nm=200.0)
    assert "WARNING" in widget.model_info.value and "PSF FWHM" in widget.model_info.value
    assert widget.model_info.native.styleSheet()
    widget.frames.value = "5-20"
    widget.run()
    assert widget.job.worker is None
    assert any("outside 1..8" in m for m in _messages(NotificationSeverity.ERROR))
    assert "outside 1..8" in widget.job.status.value  # also in the status line
    widget.frames.value = "abc"
    widget.run()
    assert "cannot read frame selection 'abc'" in widget.job.status.value
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    widget.model.value = bad
    assert "not a valid model file" in widget.model_info.value
    # a model whose settings were edited: the panel says so for as long as it is chosen (the warning of it went)
    from conftest import write_edited_model
    from napari_deepcel0.core import model_io

    edited = write_edited_model(bundled_model_path(), tmp_path / "edited.safetensors",
                                lambda d: d.update(spike_value=d["spike_value"] * 10))
    state_for(viewer).acquisition = Acquisition()
    with pytest.warns(model_io.EditedMetadataWarning):
        widget.model.value = edited
    assert widget.model_info.value.endswith("\nWARNING, the model's settings were edited after it was written: it "
                                            "may run with settings its network was not trained for")
    assert widget.model_info.native.styleSheet()
    widget.model.value = None
    assert "edited" not in widget.model_info.value
    widget.model.value = bad
    widget.frames.value = "all"
    widget.run()
    assert widget.job.worker is None
    # a render too large for memory is refused before any layer is touched (it raised
    # out of the Run button after emptying the previous run's localizations)
    widget.model.value = None
    big = viewer.add_image(np.zeros((1, 2100, 2100), np.uint16), name="big")
    widget.layer.value = big
    widget.render_pixel.value = 1.0
    widget.run()
    assert widget.job.worker is None and "render is too large" in widget.job.status.value
    assert "big localizations" not in viewer.layers
    assert list(big.scale) == [1.0, 1.0, 1.0]  # nor is the stack redrawn in nm (diff review)
    # a blur of more than 64 render pixels: its time grows with its width (and it ran on, after the run)
    widget.render_pixel.value, widget.render_blur.value = 15.0, 1000.0
    widget.run()
    assert widget.job.worker is None and "spans 67 render pixels of 15 nm" in widget.job.status.value
    assert "big localizations" not in viewer.layers


@pytest.mark.parametrize("failing", ["a layer", "the maps"])
def test_a_run_without_memory_for_its_layers_is_refused_and_the_last_runs_results_stay(
        viewer, qtbot, stack_path, monkeypatch, failing):
    """A render or maps layer that failed for memory left the run's Points layer emptied
    and marked running, with no run to end it (review); maps that failed left the last
    render blank (diff review)."""
    from napari_deepcel0._napari import localize_widget

    _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, frames="1-2")
    points, render = widget._run.points.layer, widget._run.render.layer
    before, render_before = points.data.copy(), render.data.copy()
    assert len(before) > 0 and render_before.sum() > 0
    if failing == "a layer":
        def out_of_memory(viewer, kind, data, kwargs):
            raise MemoryError

        monkeypatch.setattr(localize_widget, "show_layer", out_of_memory)
    else:
        zeros = np.zeros

        def no_room_for_3d(shape, *args, **kwargs):
            if isinstance(shape, tuple) and len(shape) == 3:
                raise MemoryError
            return zeros(shape, *args, **kwargs)

        widget.show_maps.value = True
        monkeypatch.setattr(localize_widget.np, "zeros", no_room_for_3d)
    widget.run()
    monkeypatch.undo()
    assert widget.job.worker is None and widget.job.run_button.enabled
    assert "not enough memory" in widget.job.status.value
    assert points.metadata["running"] is False and np.array_equal(points.data, before)
    assert np.array_equal(render.data, render_before)


def test_rerun_updates_the_output_layers_that_other_widgets_chose(viewer, qtbot, stack_path):
    """A second run updates its layers in place: Matching and Export keep them chosen
    (they used to fall back to the first layer of the type, the ground truth)."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    stack = _open(viewer, stack_path)
    gt_layer, _ = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    matching, export = _dock(viewer, MatchingWidget), _dock(viewer, ExportWidget)
    widget.device.value = "cpu"
    widget.frames.value = "1"
    widget.show_maps.value = True
    widget.run()
    _wait(qtbot, widget.job)
    points, render = viewer.layers["small localizations"], viewer.layers["small render"]
    matching.ground_truth.value, matching.estimate.value = gt_layer, points
    export.points.value, export.image.value = points, render
    widget.frames.value = "1-2"
    widget.run()
    _wait(qtbot, widget.job)
    assert viewer.layers["small localizations"] is points and viewer.layers["small render"] is render
    assert points.metadata["frames"].tolist() == [1, 2]
    assert matching.estimate.value is points and matching.ground_truth.value is gt_layer
    assert export.points.value is points and export.image.value is render
    # the renderings and maps are no stacks: the stack drop-downs leave them out, Export offers them
    maps = viewer.layers["small maps"]
    for chooser in (widget, _dock(viewer, Cel0Widget), _dock(viewer, AcquisitionWidget)):
        assert list(chooser.layer.choices) == [stack]
    assert {render, maps} <= set(export.image.choices)
    # scoring a layer against itself is refused
    matching.estimate.value = gt_layer
    matching.run()
    assert matching.job.worker is None
    assert "chosen as both the ground truth and the localizations" in matching.job.status.value


def test_widgets_docked_before_a_run_move_to_its_outputs_unless_the_user_chose(viewer, qtbot, stack_path):
    """Export and Matching docked before the first run kept the only layers there were:
    Export saved the ground truth as the localizations and the raw stack as the render,
    Matching refused to score the ground truth against itself. A run's outputs are now
    chosen, but where the user chose a layer, also from the Plugins menu (proxies)."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    stack = _open(viewer, stack_path)
    gt_layer, _ = _gt_layer(viewer, stack_path)
    matching, export, kept = (_dock(viewer, cls) for cls in (MatchingWidget, ExportWidget, ExportWidget))
    _, menu_export = viewer.window.add_plugin_dock_widget("napari-deepcel0", "Export")
    assert export.points.value is gt_layer and export.image.value is stack and matching.estimate.value is gt_layer
    kept.points.value, kept.image.value = gt_layer, stack  # the user's choice: the ground truth and the stack
    widget = _localized(viewer, qtbot, frames="1-2", show_maps=True)
    points, render = viewer.layers["small localizations"], viewer.layers["small render"]
    assert export.points.value is points and export.image.value is render  # the render, not the maps
    assert menu_export.points.value == points and menu_export.image.value == render
    assert matching.estimate.value is points and matching.ground_truth.value is gt_layer
    assert kept.points.value is gt_layer and kept.image.value is stack
    matching.run()
    _wait(qtbot, matching.job)
    assert matching.job.error is None and "small localizations: Jaccard" in matching.job.status.value
    # a CEL0 run's localizations are followed too; a layer the user chose stays
    export.points.value = points
    cel0 = _dock(viewer, Cel0Widget)
    cel0.device.value, cel0.with_deepcel0.value, cel0.frames.value = "cpu", False, "1"
    cel0.max_outer.value, cel0.max_inner.value = 2, 10
    cel0.run()
    _wait(qtbot, cel0.job)
    assert matching.estimate.value is cel0._outputs["CEL0"].layer and export.points.value is points
    # a chosen layer that is deleted no longer holds the drop-down: the next run is chosen
    viewer.layers.remove(gt_layer)
    widget.run()
    _wait(qtbot, widget.job)
    assert kept.points.value is points and kept.image.value is stack


def test_a_run_leaves_the_users_layers_of_its_output_names_alone(viewer, qtbot, stack_path, tmp_path):
    """A run reused any Points or Image layer named like its output: a saved run opened
    again to compare ("small localizations.csv") got the new results and lost its own.
    Only a layer an earlier run made is reused; the others keep their data and the run
    gets numbered layers, which the next run reuses."""
    _open(viewer, stack_path)
    saved = write_thunderstorm_csv(tmp_path / "small localizations.csv", pd.DataFrame(
        {"frame": [1, 2], "x [nm]": [111.0, 222.0], "y [nm]": [333.0, 444.0]}))
    [opened] = viewer.open(str(saved), plugin="napari-deepcel0")
    maps_file = write_tiff(tmp_path / "small maps.tif", np.ones((2, 8, 8), np.float32), pixel_size_nm=12.5,
                           output="maps")
    opened_maps = _open(viewer, maps_file)
    drawn = viewer.add_image(np.full((4, 4), 7.0, np.float32), name="small render")  # the user's own
    assert [opened.name, opened_maps.name, drawn.name] == ["small localizations", "small maps", "small render"]
    widget = _localized(viewer, qtbot, frames="1-2", show_maps=True)
    assert len(opened.data) == 2 and "source" in opened.metadata and "frames" not in opened.metadata
    assert np.all(opened_maps.data[:] == 1.0) and np.all(drawn.data == 7.0)
    points, render, maps = (viewer.layers[f"small {kind} [1]"] for kind in ("localizations", "render", "maps"))
    assert points.metadata["frames"].tolist() == [1, 2] and len(points.data) == widget._run.points.count > 0
    assert render.data.shape != drawn.data.shape and maps.data.shape[0] == 2
    count = len(viewer.layers)
    widget.frames.value = "1"
    widget.run()
    _wait(qtbot, widget.job)
    assert len(viewer.layers) == count  # the run's own numbered layers were reused
    assert viewer.layers["small localizations [1]"] is points and points.metadata["frames"].tolist() == [1]
    assert viewer.layers["small render [1]"] is render and viewer.layers["small maps [1]"] is maps
    assert len(opened.data) == 2 and np.all(drawn.data == 7.0)


def test_localize_and_cel0_use_the_pixel_size_of_the_chosen_stack(viewer, qtbot, tmp_path):
    """The acquisition holds the pixel size of the last file opened; a run on another
    stack takes that stack's pixel size from its file (and does not rescale it)."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    frames, _ = sim.simulate_stack(n_frames=2, shape=(32, 32), density_per_um2=2.0, seed=5)
    frames = np.clip(frames, 0, 65535).astype(np.uint16)
    a = _open(viewer, write_tiff(tmp_path / "a100.tif", frames, pixel_size_nm=100.0))
    b = _open(viewer, write_tiff(tmp_path / "b160.tif", frames, pixel_size_nm=160.0))
    state = state_for(viewer)
    assert state.acquisition.pixel_size_nm == 160.0
    widget = _localized(viewer, qtbot, layer=a)
    assert state.acquisition.pixel_size_nm == 100.0
    assert a.scale[-1] == 100.0 and b.scale[-1] == 160.0
    got = table_from_layer(viewer.layers["a100 localizations"])
    assert len(got) > 0 and got["x [nm]"].max() < 32 * 100.0
    assert "at 100 nm/pixel" in widget.job.status.value

    cel0 = _dock(viewer, Cel0Widget)
    cel0.layer.value = b
    cel0.device.value = "cpu"
    cel0.with_deepcel0.value = False
    cel0.max_outer.value, cel0.max_inner.value = 2, 10
    cel0.frames.value = "1"
    cel0.run()
    _wait(qtbot, cel0.job)
    assert state.acquisition.pixel_size_nm == 160.0
    assert a.scale[-1] == 100.0 and b.scale[-1] == 160.0
    assert "at 160 nm/pixel" in cel0.job.status.value


def test_a_pixel_size_typed_by_hand_corrects_the_file_calibration(viewer, qtbot, tmp_path):
    """A file that declares a wrong pixel size: the value typed in the Acquisition widget
    holds for the next run (the run adopted the file's value again)."""
    frames, _ = sim.simulate_stack(n_frames=1, shape=(32, 32), density_per_um2=2.0, seed=5)
    layer = _open(viewer, write_tiff(tmp_path / "wrong160.tif", np.clip(frames, 0, 65535).astype(np.uint16),
                                     pixel_size_nm=160.0))
    state = state_for(viewer)
    assert state.acquisition.pixel_size_nm == 160.0
    other = _open(viewer, write_tiff(tmp_path / "other160.tif", np.clip(frames, 0, 65535).astype(np.uint16),
                                     pixel_size_nm=160.0))
    acquisition = _dock(viewer, AcquisitionWidget)
    acquisition.layer.value = layer
    acquisition.pixel_size.value = 100.0  # the user's correction, of the chosen stack only
    assert other.metadata["pixel_size_nm"] == 160.0  # it was rewritten too (review)
    assert layer.scale[-1] == 100.0 and other.scale[-1] == 160.0  # redrawn at once (it waited for the next run)
    from qtpy.QtCore import Qt

    box = acquisition.pixel_size.native  # typed: applied once typed in full, not at each key (1, 12, 123)
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "123")
    assert state.acquisition.pixel_size_nm == 100.0 and layer.scale[-1] == 100.0
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert state.acquisition.pixel_size_nm == 123.0 and layer.scale[-1] == 123.0
    acquisition.pixel_size.value = 100.0
    widget = _localized(viewer, qtbot, layer=layer)
    assert state.acquisition.pixel_size_nm == 100.0 and layer.scale[-1] == 100.0
    assert "at 100 nm/pixel" in widget.job.status.value
    # a reset goes back to the defaults without rewriting any stack's calibration (a 160 nm file became 100 nm)
    acquisition.pixel_size.value = 120.0
    acquisition.reset()
    assert layer.metadata["pixel_size_nm"] == 120.0 and other.metadata["pixel_size_nm"] == 160.0
    assert state.acquisition.pixel_size_nm == 100.0
    assert state.prepare_stack(other).pixel_size_nm == 160.0


def test_cel0_comparison_checks_the_current_model_before_the_cel0_run(viewer, stack_path, tmp_path):
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    _open(viewer, stack_path)
    gone = tmp_path / "moved.safetensors"
    state_for(viewer).model_path = gone  # remembered from a session, since moved
    widget = _dock(viewer, Cel0Widget)
    widget.with_deepcel0.value = True
    widget.run()
    assert widget.job.worker is None and "no such model file" in widget.job.status.value


def test_a_stack_without_pixel_size_is_rescaled_in_nm(viewer, qtbot, stack_path):
    """A layer not opened by the plugin (pixel units) is rescaled to the acquisition's
    pixel size, with nm units like the plugin's layers (napari warned of inconsistent units)."""
    with FrameStack(stack_path) as stack:
        layer = viewer.add_image(np.stack([stack[i] for i in range(2)]), name="pasted")
    _localized(viewer, qtbot, layer=layer)
    assert tuple(layer.scale) == (1.0, 100.0, 100.0)
    assert tuple(layer.translate) == (0.0, 50.0, 50.0)  # pixel (r, c) centred at ((r, c) + 0.5) x 100 nm
    assert [str(u) for u in layer.units[1:]] == ["nanometer", "nanometer"]
    # the view follows: it was left on the first 64 nm of the now 6,400 nm wide stack
    world = layer.extent.world[:, 1:]
    np.testing.assert_allclose(_camera(viewer).center[-2:], world.mean(axis=0), atol=0.05 * np.ptp(world[:, 1]))


def test_a_layer_drawn_at_another_nm_pixel_size_is_rescaled_with_a_warning(viewer, qtbot, stack_path):
    """A layer in nm whose scale says 160 nm pixels is most likely calibrated on purpose:
    rescaling it to the acquisition's 100 nm was told by a passing info toast only. Now a
    warning names both sizes; a layer in pixels, or one the plugin displayed itself at the
    previous pixel size, still gets the info."""
    with FrameStack(stack_path) as stack:
        frames = np.stack([stack[i] for i in range(2)])
    layer = viewer.add_image(frames, name="cal160", scale=(1, 160, 160), units=("", "nm", "nm"))
    micrometres = viewer.add_image(frames, name="um", scale=(1, 0.1, 0.1), units=("", "um", "um"))
    state = state_for(viewer)
    widget = _localized(viewer, qtbot, layer=layer)
    assert "at 100 nm/pixel" in widget.job.status.value and layer.scale[-1] == 100.0
    state.prepare_stack(micrometres)  # 0.1 um is the acquisition's 100 nm
    state.edit_acquisition(state.acquisition.replace(pixel_size_nm=110.0))
    state.prepare_stack(layer)  # displayed at 100 nm by the plugin, not by the user
    assert micrometres.scale[-1] == 100.0 and layer.scale[-1] == 110.0
    assert [m for m in _messages(NotificationSeverity.WARNING) if "nm pixels (its scale)" in m] == [
        "cal160 is drawn with 160 nm pixels (its scale), but the acquisition pixel size is 100 nm: it is now "
        "displayed and analysed at 100 nm. If 160 nm is right, set the pixel size in the Acquisition widget and run "
        "again"]
    assert any(m.startswith("cal160 is now displayed in nm at the acquisition pixel size 110 nm")
               for m in _messages(NotificationSeverity.INFO))


def test_a_stack_drawn_rotated_or_with_oblong_pixels_is_redrawn_with_a_warning(viewer, qtbot, stack_path):
    """A stack the user drew rotated (or sheared, or with an affine transform) kept it, so
    the localizations were drawn beside the molecules while an info said the two lined up;
    one drawn with pixels of 120 x 100 nm was redrawn square with an info only (a review).
    Both are now redrawn on the camera's grid with a warning naming what was dropped, and
    localize as the stack drawn plainly does."""
    with FrameStack(stack_path) as stack:
        frames = np.stack([stack[i] for i in range(2)])
    plain = viewer.add_image(frames, name="plain", scale=(1, 100, 100), translate=(0, 50, 50),
                             units=("", "nm", "nm"))
    turned = viewer.add_image(frames, name="turned", scale=(1, 100, 100), units=("", "nm", "nm"), rotate=30,
                              affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    oblong = viewer.add_image(frames, name="oblong", scale=(1, 120, 100), units=("", "nm", "nm"))
    state = state_for(viewer)
    for layer in (plain, turned, oblong):
        _localized(viewer, qtbot, layer=layer)
    warned = _messages(NotificationSeverity.WARNING)
    assert ("turned was drawn rotated and with an affine transform, the localizations are not (they lie on the "
            "camera's pixel grid): it is now drawn without it, so that the two line up") in warned
    assert any(m.startswith("oblong is drawn with pixels of 120 x 100 nm (rows x columns, its scale), but the "
                            "analysis takes square camera pixels of the acquisition's 100 nm") for m in warned)
    assert not any(m.startswith("plain") for m in warned)
    np.testing.assert_allclose(turned.rotate, np.eye(3))
    np.testing.assert_allclose(turned.affine.affine_matrix, np.eye(4))
    for layer in (turned, oblong):
        assert tuple(layer.scale) == tuple(plain.scale) and tuple(layer.translate) == tuple(plain.translate)
        np.testing.assert_allclose(layer.data_to_world((0, 7, 9)), plain.data_to_world((0, 7, 9)))
    key = ["frame", "y [nm]", "x [nm]"]
    expected = table_from_layer(viewer.layers["plain localizations"]).sort_values(key)[key].to_numpy()
    for name in ("turned", "oblong"):
        got = table_from_layer(viewer.layers[f"{name} localizations"]).sort_values(key)[key].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)
    notification_manager.records.clear()
    state.prepare_stack(turned)  # once redrawn, nothing more to say
    assert not _messages(NotificationSeverity.WARNING)


def test_a_layer_in_pixel_units_is_analysed_at_the_acquisitions_size_with_a_warning(viewer, qtbot, stack_path):
    """A stack opened with napari's own reader (or added from a script) has no pixel size:
    it was analysed at the Acquisition's with an info toast only (a 160 nm stack then
    scored 0.6 % Jaccard: a review). The first time, a warning; redrawn after a size is
    typed, the info."""
    with FrameStack(stack_path) as stack:
        frames = np.stack([stack[i] for i in range(2)])
    layer = viewer.add_image(frames, name="builtin")
    state = state_for(viewer)
    state.prepare_stack(layer)
    assert "builtin carries no pixel size: it is now displayed and analysed at the Acquisition widget's 100 nm" in \
        " ".join(_messages(NotificationSeverity.WARNING))
    state.edit_acquisition(state.acquisition.replace(pixel_size_nm=160.0), layer)
    assert layer.scale[-1] == 160.0
    assert sum(m.startswith("builtin carries no pixel size") for m in _messages(NotificationSeverity.WARNING)) == 1
    assert any(m.startswith("builtin is now displayed in nm at the acquisition pixel size 160 nm")
               for m in _messages(NotificationSeverity.INFO))


@pytest.mark.parametrize("translate", [(0.0, 0.0, 0.0), (0.0, 3200.0, 1600.0)])
def test_localizations_land_on_the_molecule_whatever_the_stack_translate(viewer, qtbot, translate):
    """A stack at the right pixel size but another translate (napari's default 0, a
    crop's offset) is moved to the plugin's convention, so the point sits on the spot."""
    acq = Acquisition()
    emitters = pd.DataFrame({"frame": [1, 2], "x [nm]": [1250.0, 1250.0], "y [nm]": [850.0, 850.0],
                             sim.PHOTONS: [3000.0, 3000.0]})
    frames = sim.render_frames(emitters, acq, (24, 24), 2, seed=1)
    layer = viewer.add_image(frames, name="spot", scale=(1, acq.pixel_size_nm, acq.pixel_size_nm),
                             translate=translate)
    camera = _camera(viewer)
    camera.zoom, camera.center = 7.0, (0.0, 900.0, 1200.0)  # the user's view
    _localized(viewer, qtbot, layer=layer)
    assert tuple(layer.translate) == (0.0, 50.0, 50.0)
    assert camera.zoom == 7.0  # kept: moved by a translate, not rescaled (it was reset; review)
    points = viewer.layers["spot localizations"].data
    assert len(points) == 2
    brightest = np.unravel_index(np.argmax(frames[0]), frames[0].shape)  # camera pixel (8, 12)
    drawn_at = np.asarray(layer.data_to_world((0, *brightest)))[1:]  # its centre, where napari draws it
    assert np.abs(points[:, 1:] - drawn_at).max() < 30.0  # on the spot as drawn (the old translate: 50 nm off)
    assert np.abs(points[:, 1:] - [850.0, 1250.0]).max() < 25.0


def test_deleting_an_output_layer_during_a_run_loses_nothing(viewer, qtbot, stack_path, monkeypatch):
    from napari_deepcel0._napari import localize_widget

    resume = threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream",
                        _pause_after_first(localize_widget.localize_stream, resume))
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 1
    widget.frames.value = "1-3"
    widget.render_blur.value = 0.0
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    points, render = viewer.layers["small localizations"], viewer.layers["small render"]
    viewer.layers.remove(points)
    viewer.layers.remove(render)
    resume.set()
    _wait(qtbot, widget.job)
    assert points in viewer.layers and render in viewer.layers
    assert points.metadata["frames"].tolist() == [1, 2, 3]
    assert len(points.data) == widget._run.points.count > 0
    assert render.data.sum() == widget._run.points.count
    assert any("deleted during the run" in m for m in _messages(NotificationSeverity.INFO))


def test_settings_changed_during_a_run_are_said_to_wait_for_the_next(viewer, qtbot, stack_path, monkeypatch):
    """A pixel size typed during a run redrew the stack at once, "so that it lines up with
    the localizations", while the run went on at the old size (widget review)."""
    from napari_deepcel0._napari import localize_widget
    from napari_deepcel0._napari.state import state_for

    resume = threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream",
                        _pause_after_first(localize_widget.localize_stream, resume))
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value, widget.batch_size.value, widget.frames.value = "cpu", 1, "1-2"
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    state = state_for(viewer)
    state.edit_acquisition(state.acquisition.replace(pixel_size_nm=160.0), layer)
    resume.set()
    _wait(qtbot, widget.job)
    assert ("Acquisition: the run(s) going on (Localization) keep the settings they started with: run again "
            "to use the new ones") in _messages(NotificationSeverity.WARNING)
    state.edit_acquisition(state.acquisition.replace(pixel_size_nm=100.0), layer)  # no run going: nothing said
    assert sum("keep the settings they started with" in m for m in _messages(NotificationSeverity.WARNING)) == 1


def test_an_acquisition_edited_during_a_cel0_comparison_or_a_training_is_said_to_wait(viewer, qtbot, stack_path,
                                                                                      tmp_path, monkeypatch):
    """Only runs filling Points layers were named: a CEL0 comparison in its first batch (its
    points then came at the old pixel size on a stack redrawn at the new one), a lambda sweep
    and a training went on without a word; the Training widget showed the new PSF while it
    trained for the old one, then called the model current (a review)."""
    from napari_deepcel0._napari import cel0_widget, training_widget

    held = threading.Event()
    real_stream, real_train = cel0_widget.localize_stream, training_widget._train_job

    def held_stream(*args, **kwargs):
        held.wait(60)
        yield from real_stream(*args, **kwargs)

    def held_training(*args, **kwargs):
        held.wait(60)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(cel0_widget, "localize_stream", held_stream)
    monkeypatch.setattr(training_widget, "_train_job", held_training)
    layer = _open(viewer, stack_path)
    cel0 = _quick_cel0_widget(viewer, layer, "1")
    cel0.with_deepcel0.value = False
    training = _dock(viewer, TrainingWidget)
    training.patches.value, training.sim_frames.value, training.epochs.value = 64, 4, 1
    training.max_steps.value, training.batch_size.value, training.device.value = 2, 4, "cpu"
    training.output.value = tmp_path / "m.safetensors"
    state = state_for(viewer)
    before = state.acquisition
    cel0.run()
    training.run()
    assert cel0.job.busy and training.job.busy
    state.edit_acquisition(before.replace(fwhm_nm=400.0), layer)
    assert ("Acquisition: the run(s) going on (CEL0-IRL1, Training) keep the settings they started with: run "
            "again to use the new ones") in _messages(NotificationSeverity.WARNING)
    assert training.acquisition.value == (f"this training: {before.describe()}; the next: "
                                          f"{state.acquisition.describe()}")
    held.set()
    _wait(qtbot, cel0.job)
    _wait(qtbot, training.job)
    assert load_model(tmp_path / "m.safetensors").info.acquisition.fwhm_nm == before.fwhm_nm
    assert training.job.status.value.endswith(f"is now the current model; it was trained for {before.describe()}, "
                                              f"not for the acquisition set since ({state.acquisition.describe()})")
    assert training.acquisition.value == state.acquisition.describe()  # the run over: the next training's


def test_a_large_render_is_blurred_off_the_gui_thread_and_the_last_one_shows(viewer, qtbot, stack_path,
                                                                               monkeypatch):
    """Before: each redraw blurred the whole render on the GUI thread (a 9,600 x 9,600
    render froze napari for up to 6 s). Here every render takes the threaded path."""
    from napari_deepcel0._napari import localize_widget
    from napari_deepcel0.core.render import Renderer

    monkeypatch.setattr(localize_widget._RenderDisplay, "THREAD_WORK", 0)
    blurred_on = []
    image = Renderer.image
    monkeypatch.setattr(Renderer, "image", lambda self, *a: blurred_on.append(threading.current_thread()) or
                        image(self, *a))
    _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, batch_size=1)
    display = widget._run.render
    qtbot.waitUntil(lambda: not display.busy, timeout=RUN_TIMEOUT_MS)
    render = viewer.layers["small render"]
    expected = widget._run.renderer.image(widget.render_blur.value)
    np.testing.assert_allclose(render.data, expected)  # the final counts, blurred
    assert render.contrast_limits[1] == pytest.approx(np.percentile(expected[expected > 0], 99.5))
    assert any(t is not threading.main_thread() for t in blurred_on[1:])  # [0]: the empty first image


def test_a_render_deleted_once_its_run_has_ended_stays_deleted(viewer, qtbot, stack_path, monkeypatch):
    """The last blur of a large render came after "Localization finished": a render the user
    deleted then came back, "deleted during the run" (a review)."""
    from napari_deepcel0._napari import localize_widget

    monkeypatch.setattr(localize_widget._RenderDisplay, "THREAD_WORK", 0)  # blurred in a thread
    release = threading.Event()
    real = localize_widget._RenderDisplay._display_image
    monkeypatch.setattr(localize_widget._RenderDisplay, "_display_image",
                        lambda self: (release.wait(30), real(self))[1])
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget._run.render.busy  # its last blur still going
    viewer.layers.remove(viewer.layers["small render"])
    first = len(notification_manager.records)
    release.set()
    qtbot.waitUntil(lambda: not widget._run.render.busy, timeout=RUN_TIMEOUT_MS)
    assert "small render" not in viewer.layers and len(notification_manager.records) == first


def test_a_blur_failing_in_its_thread_is_said_and_the_run_goes_on(viewer, qtbot, stack_path, monkeypatch):
    """A blur that failed in its thread (out of memory for a huge render) left the display
    busy for good: the render stopped updating for the rest of the run, without a word
    (a review)."""
    from napari_deepcel0._napari import localize_widget
    from napari_deepcel0.core.render import Renderer

    monkeypatch.setattr(localize_widget._RenderDisplay, "THREAD_WORK", 0)
    image = Renderer.image

    def failing_in_a_thread(self, *args):
        if threading.current_thread() is not threading.main_thread():
            raise MemoryError("no room for the blur")
        return image(self, *args)

    monkeypatch.setattr(Renderer, "image", failing_in_a_thread)
    _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, batch_size=1)
    qtbot.waitUntil(lambda: not widget._run.render.busy, timeout=RUN_TIMEOUT_MS)
    assert "Localization finished" in widget.job.status.value and len(viewer.layers["small localizations"].data)
    assert any(m.startswith("small render is no longer updated: blurring it failed (MemoryError('no room")
               for m in _messages(NotificationSeverity.ERROR))


def test_a_wide_blur_of_a_small_render_runs_off_the_gui_thread(viewer, qtbot, stack_path, monkeypatch):
    """Only renders of more than 4 million pixels were blurred in a thread, whatever the
    blur: 2,000 x 2,000 pixels with a 1,000 nm blur froze napari for 3-6 s. The kernel's
    width now counts: here 640 x 640 pixels with a 320 nm blur (64 render pixels, the most
    a blur may span: a kernel of 513 pixels)."""
    from napari_deepcel0.core.render import Renderer

    blurred_on = []
    image = Renderer.image
    monkeypatch.setattr(Renderer, "image", lambda self, blur=None: (blur and blurred_on.append(
        threading.current_thread())) or image(self, blur))
    _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, frames="1", render_pixel=5.0, render_blur=320.0)
    display = widget._run.render
    qtbot.waitUntil(lambda: not display.busy, timeout=RUN_TIMEOUT_MS)
    assert display.threaded and blurred_on and threading.main_thread() not in blurred_on
    np.testing.assert_allclose(viewer.layers["small render"].data, image(widget._run.renderer, 320.0))
    # the default blur (20 nm) of a render that size, or of 4 million pixels, is quick: on the GUI thread, as before
    assert type(display).work(640 * 640, 20.0 / 5.0) < type(display).work(2000 * 2000, 1.0) <= display.THREAD_WORK


def test_a_late_blur_of_the_previous_run_does_not_cover_the_next_runs_render(viewer, qtbot, stack_path,
                                                                            monkeypatch):
    from napari_deepcel0._napari import localize_widget
    from napari_deepcel0.core.render import Renderer

    monkeypatch.setattr(localize_widget._RenderDisplay, "THREAD_WORK", 0)
    slow, image = set(), Renderer.image

    def slow_image(self, *args):  # the first run's blurs take 2 s, as for a 9,600 x 9,600 render
        if id(self) in slow and threading.current_thread() is not threading.main_thread():
            time.sleep(2.0)
        return image(self, *args)

    monkeypatch.setattr(Renderer, "image", slow_image)
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.frames.value = "1-3"
    widget.run()
    slow.add(id(widget._run.renderer))
    _wait(qtbot, widget.job)
    widget.frames.value = "1"
    widget.run()
    _wait(qtbot, widget.job)
    qtbot.waitUntil(lambda: not widget._run.render.busy, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(2500)  # the first run's last blur ends meanwhile
    np.testing.assert_allclose(viewer.layers["small render"].data,
                               widget._run.renderer.image(widget.render_blur.value))


def test_closing_the_widget_during_a_run_is_quiet(viewer, qtbot, stack_path, monkeypatch):
    """What the job still sends after its widget is gone is dropped (it used to raise
    'wrapped C/C++ object ... has been deleted', which pytest-qt reports as an error
    of the test), and the job is cancelled."""
    from qtpy import sip

    from napari_deepcel0._napari import localize_widget

    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream))
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 1
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(widget.job.worker.finished, timeout=RUN_TIMEOUT_MS):
        sip.delete(widget.native)  # what closing the viewer does to its dock widgets
    qtbot.wait(200)
    assert widget.job.cancelled
    assert widget._run.frames_done == 1  # nothing reached the deleted widget


@pytest.mark.parametrize("panel_closed_first", [False, True])
def test_closing_napari_during_a_run_touches_no_layer(make_napari_viewer, qtbot, stack_path, monkeypatch,
                                                      panel_closed_first):
    """Closing the panel shows what a run got; closing napari must not: refreshing the
    layers of a closed viewer put them back into it and napari's slider raised
    IndexError in the Qt event loop (a review of the first version). A panel closed
    before napari is not destroyed with it: its run did that again (lifecycle review)."""
    from napari_deepcel0._napari import localize_widget

    viewer = make_napari_viewer()
    resume = threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream, resume))
    widget, dock, worker = _running_in_a_dock(viewer, qtbot, stack_path)
    if panel_closed_first:
        dock.title.close_button.click()
    viewer.close()
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        resume.set()
    qtbot.wait(100)
    assert widget.job.destroyed and len(viewer.layers) == 0
    assert not [m for m in _messages(NotificationSeverity.INFO) if "stopped when its widget was closed" in m]
    if panel_closed_first:  # the panel outlives napari's window, holding the viewer
        widget.native.deleteLater()
        qtbot.wait(10)


def test_widgets_from_the_plugins_menu_update_their_layers_in_place(viewer, qtbot, stack_path):
    """Docked from the Plugins menu, a widget gets a proxy of the viewer whose layers are
    proxies: a re-run replaced its output layers (their type's name is the proxy's), so
    Matching and Export silently switched to another layer."""
    layer = _open(viewer, stack_path)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepcel0", "Localize")
    _, export = viewer.window.add_plugin_dock_widget("napari-deepcel0", "Export")
    widget.layer.value = widget.layer.choices[0]
    widget.device.value = "cpu"
    widget.frames.value = "1-2"
    widget.run()
    _wait(qtbot, widget.job)
    points, render = viewer.layers["small localizations"], viewer.layers["small render"]
    export.points.value = points
    widget.run()
    _wait(qtbot, widget.job)
    assert viewer.layers["small localizations"] is points and viewer.layers["small render"] is render
    assert export.points.value is points and [lyr.name for lyr in viewer.layers].count("small render") == 1
    assert layer in viewer.layers


def test_a_running_layer_deleted_under_a_plugins_menu_widget_comes_back_running(viewer, qtbot, stack_path,
                                                                              monkeypatch):
    """The run of a widget from the Plugins menu holds proxies of its layers: its Points,
    deleted and put back, were taken for a duplicate and marked finished, so that every
    redraw drew the whole table and another run could take the layer (diff review). A
    duplicate of its render is no layer of the run."""
    from napari.layers._layer_actions import _duplicate_layer

    from napari_deepcel0._napari import localize_widget
    from napari_deepcel0._napari.layers import filled_by_a_run, growing_run

    resume = threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(localize_widget.localize_stream, resume))
    _open(viewer, stack_path)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepcel0", "Localize")
    widget.layer.value = widget.layer.choices[0]
    widget.device.value, widget.batch_size.value = "cpu", 1
    widget.run()
    qtbot.waitUntil(lambda: widget._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    points, render = viewer.layers["small localizations"], viewer.layers["small render"]
    viewer.layers.remove(points)
    widget._run.refresh()  # a redraw puts it back
    assert points in viewer.layers and points.metadata["running"] is True and growing_run(points) is not None
    viewer.layers.selection = {render}
    _duplicate_layer(viewer.layers)
    assert filled_by_a_run(render) and not filled_by_a_run(viewer.layers["small render copy"])
    resume.set()
    _wait(qtbot, widget.job)
    assert points.metadata["running"] is False and len(points.data) == widget._run.points.count


def test_a_run_of_all_frames_shows_its_first_unless_the_frame_on_screen_comes_soon(viewer):
    """A run of all 361 frames left the slider on frame 181, where napari opened the stack:
    for half the run no localization was on screen (a review)."""
    from napari_deepcel0._napari.layers import FRAMES_SOON, show_first_frame_unless_shown

    viewer.add_image(np.zeros((40, 8, 8), np.float32))
    every = np.arange(1, 41)
    for on_screen, after in ((20, 0), (FRAMES_SOON - 1, FRAMES_SOON - 1), (FRAMES_SOON, 0)):  # 0-based
        viewer.dims.set_point(0, float(on_screen))
        show_first_frame_unless_shown(viewer, every)
        assert viewer.dims.point[0] == after


def test_the_slider_moves_to_the_run_when_it_shows_another_frame(viewer, qtbot, stack_path):
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.layer.value = layer
    widget.device.value = "cpu"
    viewer.dims.set_point(0, 6.0)  # frame 7 on screen
    widget.frames.value = "2-3"
    widget.run()
    _wait(qtbot, widget.job)
    assert viewer.dims.point[0] == 1.0  # frame 2: its points are drawn
    widget.frames.value = "1-3"
    widget.run()  # frame 2 is among these: the slider stays
    _wait(qtbot, widget.job)
    assert viewer.dims.point[0] == 1.0
    # a single image, drawn on every frame of the stack: its localizations are on frame 1 (review)
    widget.layer.value = viewer.add_image(np.asarray(layer.data[2]), name="one frame", scale=layer.scale[1:],
                                          translate=layer.translate[1:])
    widget.frames.value = "all"
    widget.run()
    _wait(qtbot, widget.job)
    assert viewer.dims.point[0] == 0.0
    assert len(viewer.layers["one frame localizations"]._view_data) > 0  # drawn


def test_every_panel_fits_a_dock_column_beside_the_others(viewer):
    """Docked under another panel (a column of about 490 pixels in a 1,500-pixel window),
    the CEL0 panel needed 535 and was cut off on the right, without a scroll bar, its
    buttons and result line clipped (a review)."""
    for name in ("Acquisition", "Localize", "CEL0-IRL1 compare", "Train DeepCEL0", "Ground-truth matching",
                 "Export"):
        _, widget = viewer.window.add_plugin_dock_widget("napari-deepcel0", name)
        assert widget.native.minimumSizeHint().width() <= 470, name


def test_drop_downs_start_on_the_layer_each_field_wants(viewer, stack_path, tmp_path):
    """Matching and the CEL0 sweep started their ground truth on the localizations, Export
    its image on the raw stack: one click from scoring DeepCEL0 against itself."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget
    from napari_deepcel0._napari.layers import GrowingPoints

    layer = _open(viewer, stack_path)
    run = GrowingPoints(viewer, "small localizations", "yellow")  # as a Localize run makes it
    render = viewer.add_image(np.zeros((4, 4), np.float32), name="small render", metadata={OUTPUT: "render"})
    drawn = viewer.add_points(np.zeros((0, 3)), name="drawn")  # a layer of the user's, before the file
    truth = write_thunderstorm_csv(tmp_path / "truth.csv", pd.DataFrame(
        {"frame": [1], "x [nm]": [100.0], "y [nm]": [200.0]}))
    [gt] = viewer.open(str(truth), plugin="napari-deepcel0")
    matching, cel0, export = (_dock(viewer, cls) for cls in (MatchingWidget, Cel0Widget, ExportWidget))
    assert matching.ground_truth.value is gt and cel0.ground_truth.value is gt  # a file's first, then the rest
    assert matching.ground_truth.choices.index(drawn) > matching.ground_truth.choices.index(gt)
    assert matching.estimate.value is run.layer and export.points.value is run.layer
    assert export.image.value is render and layer in export.image.choices
    colour = viewer.add_image(np.zeros((4, 4, 3), np.uint8), name="photo", rgb=True)  # refused at the run
    localize = _dock(viewer, LocalizeWidget)
    assert layer in localize.layer.choices and colour not in localize.layer.choices


def test_a_run_is_the_ground_truth_only_when_the_user_chooses_it(viewer, qtbot, stack_path, tmp_path):
    """With no ground truth open, Matching and the lambda sweep took the first Points
    layer, a Localize run, for it: the sweep then picked lambda by agreement with
    DeepCEL0 and called it a Jaccard index (a review)."""
    layer = _open(viewer, stack_path)
    _localized(viewer, qtbot, frames="1-2")
    run_layer = viewer.layers[f"{layer.name} localizations"]
    matching, cel0 = _dock(viewer, MatchingWidget), _quick_cel0_widget(viewer, layer, "1")
    assert matching.ground_truth.value is None and cel0.ground_truth.value is None
    assert run_layer in cel0.ground_truth.choices  # listed, for a user who means it
    cel0.sweep()
    assert "choose a ground-truth Points layer (open its CSV" in cel0.sweep_job.status.value
    cel0.ground_truth.value = matching.ground_truth.value = run_layer  # the user's choice
    cel0.sweep()
    assert f"{run_layer.name!r} holds the localizations of a run, not a ground truth" in cel0.sweep_job.status.value
    assert not cel0.sweep_job.busy

    truth = write_thunderstorm_csv(tmp_path / "truth.csv", pd.DataFrame(
        {"frame": [1], "x [nm]": [100.0], "y [nm]": [200.0]}))
    [gt] = viewer.open(str(truth), plugin="napari-deepcel0")
    assert cel0.ground_truth.value is run_layer and matching.ground_truth.value is run_layer  # the user's choice
    matching.estimate.value = gt  # two methods compared, say: scored, and said
    matching.run()
    _wait(qtbot, matching.job)
    assert f"the ground truth {run_layer.name!r} is the localizations of a run" in matching.job.status.value
    viewer.layers.remove(run_layer)
    assert cel0.ground_truth.value is gt and matching.ground_truth.value is gt  # the choice left: the file
    matching.ground_truth.value = None  # the empty entry, chosen: it stays through layer events (a review)
    drawn = viewer.add_points(np.zeros((0, 3)), name="drawn")
    assert matching.ground_truth.value is None and cel0.ground_truth.value is gt
    cel0.ground_truth.value = drawn  # no molecules: refused at once (it failed in the worker)
    cel0.sweep()
    assert "the ground truth 'drawn' has no molecules" in cel0.sweep_job.status.value and not cel0.sweep_job.busy


def test_a_cel0_run_cancelled_in_its_first_batch_leaves_no_empty_layer(viewer, qtbot, stack_path):
    """Its empty layer stayed, and was then the lambda sweep's ground truth (a review)."""
    layer = _open(viewer, stack_path)
    widget = _quick_cel0_widget(viewer, layer, "all")
    widget.max_outer.value, widget.max_inner.value = 1000, 1000
    before = list(viewer.layers)
    widget.run()
    _press_cancel(qtbot, widget.job, lambda: "outer iteration" in widget.job.status.value)
    _wait(qtbot, widget.job)
    assert list(viewer.layers) == before
    assert widget.summary.value.startswith("CEL0: no frame finished") and "cancelled" in widget.job.status.value


@pytest.mark.parametrize("floating", [False, True])
def test_closing_the_widgets_panel_cancels_its_run(viewer, qtbot, stack_path, monkeypatch, floating):
    """napari's close button takes the widget out of its dock without destroying it; the
    run went on unseen and a new Localize widget could run beside it into the same layers.
    A floating panel's dock is its own window: closing it was taken for napari's closing,
    and the run's layer stayed empty and running (diff review)."""
    from napari_deepcel0._napari import localize_widget

    resume = threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream",
                        _pause_after_first(localize_widget.localize_stream, resume))
    monkeypatch.setattr(localize_widget._RenderDisplay, "THREAD_WORK", 0)  # blurred in a thread, as large ones
    widget, dock, worker = _running_in_a_dock(viewer, qtbot, stack_path, floating)
    dock.title.close_button.click()
    assert widget.job.cancelled and widget.job.closed
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        resume.set()
    points = viewer.layers["small localizations"]
    assert widget._run.frames_done == 1 and len(points.metadata["frames"]) == 1
    # the layer no longer counts as a running run's (Export said "save again when the run has finished")
    assert points.metadata["running"] is False and len(points.data) == widget._run.points.count
    assert any(m.startswith("Localization stopped when its widget was closed: 1/") for m in
               _messages(NotificationSeverity.INFO))
    # and the render shows them too (its threaded blur was dropped once the panel was closed)
    render, display = viewer.layers["small render"], widget._run.render
    qtbot.waitUntil(lambda: not display.busy, timeout=RUN_TIMEOUT_MS)
    assert display.threaded and render.data.max() > 0
    np.testing.assert_allclose(render.data, display._display_image()[0])


def test_two_runs_at_once_fill_layers_of_their_own(viewer, qtbot, stack_path, monkeypatch):
    """Two Localize panels (or one closed mid-run and opened again) ran into one layer:
    the first run to end showed its table over the other's and marked it finished, and
    Export then saved the wrong run's localizations (lifecycle review)."""
    from napari_deepcel0._napari import localize_widget

    original, resume = localize_widget.localize_stream, threading.Event()
    monkeypatch.setattr(localize_widget, "localize_stream", _pause_after_first(original, resume))
    _open(viewer, stack_path)
    first, second = _dock(viewer, LocalizeWidget), _dock(viewer, LocalizeWidget)
    for widget in (first, second):
        widget.device.value, widget.batch_size.value = "cpu", 1
    first.run()
    qtbot.waitUntil(lambda: first._run.frames_done == 1, timeout=RUN_TIMEOUT_MS)
    monkeypatch.setattr(localize_widget, "localize_stream", original)  # the second run does not pause
    second.frames.value = "1-2"
    second.run()
    _wait(qtbot, second.job)
    points, other = first._run.points.layer, second._run.points.layer
    assert other is not points and other.name == "small localizations [1]"
    assert second._run.render.layer is not first._run.render.layer
    assert points.metadata["running"] is True and other.metadata["running"] is False
    assert set(table_from_layer(other)["frame"]) == {1, 2} and len(other.data) == second._run.points.count
    resume.set()
    _wait(qtbot, first.job)
    assert points.metadata["running"] is False and len(points.data) == first._run.points.count
    assert len(other.data) == second._run.points.count  # the second run's results stay
    second.run()  # no run going: the layers are reused
    _wait(qtbot, second.job)
    assert second._run.points.layer is points and len(viewer.layers) == 5


def test_a_run_failing_after_its_panel_was_closed_says_why(viewer, qtbot, stack_path, monkeypatch):
    """The error of a run whose panel was closed meanwhile was dropped: the user read
    only that it stopped (lifecycle review)."""
    from napari_deepcel0._napari import localize_widget

    original, resume = localize_widget.localize_stream, threading.Event()

    def fails_after_first(*args, cancel=None, **kwargs):
        yield next(original(*args, cancel=cancel, **kwargs))
        resume.wait(timeout=60)
        raise ValueError("the disk went away")

    monkeypatch.setattr(localize_widget, "localize_stream", fails_after_first)
    widget, dock, worker = _running_in_a_dock(viewer, qtbot, stack_path)
    dock.title.close_button.click()
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        resume.set()
    assert "Localization failed: the disk went away" in _messages(NotificationSeverity.ERROR)
    assert viewer.layers["small localizations"].metadata["running"] is False


def test_closing_the_cel0_panel_during_a_run_leaves_its_layers_finished(viewer, qtbot, stack_path, monkeypatch):
    from napari_deepcel0._napari import cel0_widget
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    resume = threading.Event()
    monkeypatch.setattr(cel0_widget, "localize_stream", _pause_after_first(cel0_widget.localize_stream, resume))
    layer = _open(viewer, stack_path)
    widget = Cel0Widget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="CEL0")
    widget.layer.value, widget.device.value, widget.frames.value = layer, "cpu", "1-3"
    widget.max_outer.value, widget.max_inner.value, widget.batch_size.value = 2, 10, 1
    widget.run()
    qtbot.waitUntil(lambda: widget._done_frames["CEL0"] == 1, timeout=RUN_TIMEOUT_MS)
    worker = widget.job.worker
    dock.title.close_button.click()
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        resume.set()
    cel0 = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"]
    assert cel0.metadata["running"] is False and cel0.metadata["frames"].tolist() == [1]
    assert len(cel0.data) == widget._outputs["CEL0"].count
    assert any(m.startswith("CEL0-IRL1 comparison stopped when its widget was closed: CEL0: ")
               and " in 1 frame, DeepCEL0: no frame finished" in m for m in _messages(NotificationSeverity.INFO))
    # its job is over: an acquisition edit now warns of no run going on (the closed panel's job counted as
    # running for good: a review)
    assert not widget.job.busy
    state = state_for(viewer)
    first = len(notification_manager.records)
    state.edit_acquisition(state.acquisition.replace(fwhm_nm=300.0), layer)
    assert not any("keep the settings they started with" in str(n.message)
                   for n in notification_manager.records[first:])


def test_only_the_jobs_own_warnings_carry_its_title(qtbot):
    """While a job runs, the worker catches the warnings of every thread: a warning of
    the GUI thread is not the job's."""
    from napari_deepcel0._napari.jobs import JobControls

    resume = threading.Event()

    def job(cancel=None):
        warnings.warn("from the job", stacklevel=1)
        yield 1
        resume.wait(timeout=10)

    def on_yield(_value):
        warnings.warn("from the GUI thread", stacklevel=1)
        resume.set()

    controls = JobControls("Test job", "Run")
    qtbot.addWidget(controls.native)
    controls.start(job, on_yield=on_yield)
    _wait(qtbot, controls, timeout=10_000)
    messages = _messages(NotificationSeverity.WARNING)
    assert "Test job: from the job" in messages
    assert "from the GUI thread" in messages and "Test job: from the GUI thread" not in messages


def test_a_job_shows_each_warning_once_per_run(qtbot):
    """CEL0 compare runs CEL0 and DeepCEL0 on the same frames, and both warned of the
    same narrow frames: two identical notifications."""
    from napari_deepcel0._napari.jobs import JobControls

    def job(cancel=None):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for method in ("CEL0", "DeepCEL0"):
                warnings.warn("the frames are narrow", stacklevel=1)
                warnings.warn(f"{method} only", stacklevel=1)
                yield method

    controls = JobControls("Test job", "Run")
    qtbot.addWidget(controls.native)
    for run in (1, 2):
        controls.start(job)
        _wait(qtbot, controls, timeout=10_000)
        messages = _messages(NotificationSeverity.WARNING)
        assert messages.count("Test job: the frames are narrow") == run  # once in each run
        assert messages.count("Test job: CEL0 only") == messages.count("Test job: DeepCEL0 only") == run


def test_overlapping_jobs_leave_the_warning_handler_as_it_was(qtbot):
    """superqt's workers save and restore the process-wide warning handler; when jobs
    overlap (A starts, B starts, A ends, B ends) the last restored a finished worker's
    handler, so every later warning went to it."""
    from napari_deepcel0._napari.jobs import JobControls

    original = warnings.showwarning
    end_a, end_b = threading.Event(), threading.Event()

    def job(cancel=None, end=None):
        yield 1
        end.wait(timeout=10)

    a, b = JobControls("A", "Run"), JobControls("B", "Run")
    for job_controls in (a, b):
        qtbot.addWidget(job_controls.native)
    running = []
    a.start(job, end=end_a, on_yield=running.append)
    qtbot.waitUntil(lambda: len(running) == 1, timeout=10_000)  # A is inside its worker, then B
    b.start(job, end=end_b, on_yield=running.append)
    qtbot.waitUntil(lambda: len(running) == 2, timeout=10_000)
    end_a.set()
    _wait(qtbot, a, timeout=10_000)
    end_b.set()
    _wait(qtbot, b, timeout=10_000)
    qtbot.waitUntil(lambda: warnings.showwarning is original, timeout=5_000)


def test_the_greyed_threshold_box_shows_the_automatic_value(viewer, qtbot, stack_path):
    """Ticked again after a manual value was typed, the greyed box kept showing it while
    runs used the automatic one (a review)."""
    from napari_deepcel0.core.model_io import bundled_model_path, read_model_info

    automatic = round(read_model_info(bundled_model_path()).default_threshold, 3)
    widget = _dock(viewer, LocalizeWidget)
    assert widget.auto_threshold.value and widget.threshold.value == pytest.approx(automatic)
    widget.auto_threshold.value = False
    widget.threshold.value = 0.5
    assert widget.threshold.enabled
    widget.auto_threshold.value = True
    assert not widget.threshold.enabled and widget.threshold.value == pytest.approx(automatic)


def test_the_current_model_persists_for_every_widget(viewer, make_napari_viewer, tmp_path):
    """The model chosen in Localize is the current model of the next session too (CEL0
    runs DeepCEL0 with it), not only the text of the Localize field."""
    custom = Path(shutil.copy(bundled_model_path(), tmp_path / "custom.safetensors"))
    widget = _dock(viewer, LocalizeWidget)
    widget.model.value = custom
    assert state_for(viewer).model_path == custom
    later = make_napari_viewer()  # the next session: nothing but the stored settings
    assert state_for(later).model_path == custom
    again = LocalizeWidget(later)
    assert again.model.value == custom and again.model_info.value.startswith("DeepCEL0 model for")
    again.reset()
    assert state_for(later).model_path is None and again.model.value is None
    assert PluginState().model_path is None


def test_localize_settings_persist_and_reset(viewer):
    widget = _dock(viewer, LocalizeWidget)
    widget.batch_size.value = 7
    widget.frames.value = "1-4"
    widget.orientations.value = 8
    again = LocalizeWidget(viewer)
    assert (again.batch_size.value, again.frames.value, again.orientations.value) == (7, "1-4", 8)
    again.settings.reset()
    assert (again.batch_size.value, again.frames.value, again.orientations.value) == (16, "all", 1)
    assert LocalizeWidget(viewer).batch_size.value == 16


def test_export_paths_persist_and_reset(viewer, tmp_path):
    widget = _dock(viewer, ExportWidget)
    widget.csv_path.value = tmp_path / "run1.csv"
    widget.tiff_path.value = tmp_path / "run1.tif"
    again = ExportWidget(viewer)
    assert (again.csv_path.value, again.tiff_path.value) == (tmp_path / "run1.csv", tmp_path / "run1.tif")
    again.settings.reset()
    assert ExportWidget(viewer).csv_path.value.name == "localizations.csv"


def test_export_asks_before_overwriting_and_refuses_a_folder(viewer, qtbot, stack_path, tmp_path, monkeypatch):
    layer, gt = _gt_layer(viewer, stack_path)
    viewer.add_image(np.zeros((4, 4), np.float32), name="render", units="nm")
    widget = _dock(viewer, ExportWidget)
    widget.points.value = layer
    existing = tmp_path / "results.csv"
    existing.write_text("keep me")
    asked, answers = [], [False, True]  # the user's answers to "Replace the file?"
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: asked.append(path) or answers.pop(0))
    widget.csv_path.value = existing
    widget.save_csv()
    assert asked == [existing] and widget.csv_job.worker is None
    assert existing.read_text() == "keep me"
    assert "exists and was kept" in widget.csv_job.status.value
    widget.save_csv()
    _wait(qtbot, widget.csv_job)
    assert len(read_localizations(existing)) == len(gt)
    folder = tmp_path / "exports"
    folder.mkdir()
    for path_box, save, job in ((widget.csv_path, widget.save_csv, widget.csv_job),
                                (widget.tiff_path, widget.save_tiff, widget.tiff_job)):
        path_box.value = folder
        save()
        assert job.worker is None and "is a folder" in job.status.value
        path_box.value = tmp_path / ("\u5206" * 90)  # 270 bytes: pathlib raised "File name too long" from the button
        save()
        assert job.worker is None and job.status.value.endswith("...: File name too long")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("exports")) == ["exports"]
    assert len(asked) == 2


def test_export_does_not_ask_twice_after_the_file_dialog_asked(viewer, qtbot, stack_path, tmp_path, monkeypatch):
    import magicgui.backends._qtpy as qt_backend

    layer, gt = _gt_layer(viewer, stack_path)
    existing = tmp_path / "results.csv"
    existing.write_text("old")
    dialog = {"returns": str(existing)}  # what the user picks in Qt's save dialog (None: Cancel)
    monkeypatch.setattr(qt_backend, "show_file_dialog", lambda *args, **kwargs: dialog["returns"])
    widget = _dock(viewer, ExportWidget)
    widget.points.value = layer
    asked = []
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: asked.append(path) or True)

    def save():
        widget.save_csv()
        _wait(qtbot, widget.csv_job)

    # the field already holds the file (as after a restart) and the user picks it again:
    # the save dialog asked "Replace?" itself
    widget.csv_path.value = existing
    widget.csv_path.choose_btn.changed.emit(True)
    save()
    assert asked == [] and len(read_localizations(existing)) == len(gt)
    save()  # saving again to the same file asks
    assert asked == [existing]
    dialog["returns"] = None  # a cancelled dialog confirms nothing
    widget.csv_path.choose_btn.changed.emit(True)
    save()
    assert asked == [existing, existing]
    other = tmp_path / "other.csv"  # a new file: nothing to ask
    dialog["returns"] = str(other)
    widget.csv_path.choose_btn.changed.emit(True)
    save()
    assert asked == [existing, existing] and other.is_file()


# ================================================================= training
def test_a_training_on_the_cpu_says_roughly_how_long_it_takes_before_its_first_steps(viewer, qtbot, tmp_path):
    """The bundled recipe, pressed on a CPU, sat at "simulating the training set ..." and 0 %
    with no word of its 7 hours (a tooltip said it: a review)."""
    from napari_deepcel0._napari import training_widget
    from napari_deepcel0.core.training import cpu_hours_estimate

    training = _dock(viewer, TrainingWidget)
    training.recipe.value = next(iter(training_widget.RECIPES))  # (the default: the bundled model's)
    training.device.value = "cpu"
    training.output.value = tmp_path / "long.safetensors"
    expected = f"about {format_duration(3600 * cpu_hours_estimate(training.config()))}"
    training.run()
    qtbot.waitUntil(lambda: "simulating" in training.job.status.value, timeout=RUN_TIMEOUT_MS)
    assert f"; on the CPU: 1,120,000 patch steps, {expected} at the 46 patches/s" in training.job.status.value
    assert any(m.startswith("Training on the CPU: 1,120,000 patch steps, about 6 h")
               for m in _messages(NotificationSeverity.WARNING))
    training.job.cancel()
    _wait(qtbot, training.job)
    assert not (tmp_path / "long.safetensors").exists()


def test_training_saves_a_model_that_becomes_current(viewer, qtbot, tmp_path, monkeypatch):
    """Also: "~/..." typed is the home folder (it was refused: "folder ~ does not exist"), and a
    name without an extension gets ".safetensors" (it was refused, while Export adds its own)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    training = _dock(viewer, TrainingWidget)
    localize_widget = _dock(viewer, LocalizeWidget)
    training.patches.value = 64
    training.sim_frames.value = 4
    training.density.value = 8.0
    training.sparse_fraction.value = 0.25
    training.epochs.value = 1
    training.max_steps.value = 2
    training.batch_size.value = 4
    training.device.value = "cpu"
    path = tmp_path / "tiny.safetensors"
    training.output.line_edit.value = "~/tiny"  # typed (FileEdit.value = would expand it)
    ticker = _start_and_click_again(training.run, training.job)
    _wait(qtbot, training.job)
    _, longest_gap = ticker.stop()
    assert path.is_file()
    loaded = load_model(path)
    assert loaded.info.training["max_steps_per_epoch"] == 2
    assert loaded.info.training["data"]["density_per_um2"] == 8.0
    assert loaded.info.training["data"]["sparse_fraction"] == 0.25
    assert state_for(viewer).model_path == path
    assert localize_widget.model.value == path
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["tiny.safetensors"]  # no checkpoint left
    assert f"saved to {path} and is now the current model" in training.job.status.value
    assert training.job.progress.value == training.job.progress.max == 2
    assert "epoch 1" in training.loss.value
    ticks = training.plot.axes.get_xticks()
    assert len(ticks) and np.all(ticks == np.round(ticks))  # epochs: no 1.2, 1.4 ...
    assert longest_gap < 1.5
    # trained again into the same file, the current model's path: Localize showed the old model's details and
    # threshold, and sized its maps by the old L (review)
    assert "on 64 patches" in localize_widget.model_info.tooltip
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: True)
    training.patches.value = 48
    training.run()
    _wait(qtbot, training.job)
    assert load_model(path).info.training["data"]["n_patches"] == 48
    assert "on 48 patches" in localize_widget.model_info.tooltip


def test_training_stops_at_its_time_limit_and_keeps_the_best_model(viewer, qtbot, tmp_path):
    """A time limit (minutes; the command line's --time-limit) for a workstation's
    training: it stops there and saves the best model so far."""
    training = _dock(viewer, TrainingWidget)
    training.patches.value, training.sim_frames.value, training.epochs.value = 64, 4, 500
    training.max_steps.value, training.batch_size.value, training.device.value = 2, 4, "cpu"
    training.time_limit.value = 0.01  # 0.6 s: past once the training set is simulated
    training.output.value = path = tmp_path / "limited.safetensors"
    training.run()
    _wait(qtbot, training.job)
    assert "Training stopped at the time limit; the best model so far (epoch 1, " in training.job.status.value
    assert load_model(path).info.training["cancelled"] is True and state_for(viewer).model_path == path
    assert TrainingWidget(viewer).time_limit.value == 0.01  # remembered, as the other fields


def test_training_keeps_its_checkpoints_beside_an_existing_model_until_it_ends(tmp_path):
    """The best model so far was written over the output file after every improving
    epoch: napari closed or killed mid-run left a good earlier model replaced."""
    from napari_deepcel0._napari.training_widget import _train_job
    from napari_deepcel0.core.training import TrainingConfig
    from napari_deepcel0.core.training_data import TrainingDataConfig

    path = tmp_path / "model.safetensors"
    path.write_bytes(bundled_model_path().read_bytes())
    partial = tmp_path / "model.partial.safetensors"
    seen = []

    def progress(p):
        if getattr(p, "epoch", 0) == 2 and not seen:  # during the second epoch
            seen.append((path.read_bytes() == bundled_model_path().read_bytes(), partial.is_file()))

    config = TrainingConfig(epochs=2, batch_size=4, max_steps_per_epoch=2, device="cpu",
                            data=TrainingDataConfig(n_patches=32, n_frames=4))
    result, written = _train_job(Acquisition(), config, path, progress)
    assert seen == [(True, True)]  # the earlier model untouched, the checkpoint beside it
    assert written == path and load_model(path).info.training["epochs"] == 2 and not partial.exists()


def test_a_stopped_training_epoch_says_where_it_stopped(viewer):
    """Cancelled mid-epoch, its losses (of its first steps) read as a whole epoch's, and
    the status line gave the time of all the epochs still to go (a review)."""
    from napari_deepcel0.core.training import Progress

    training = _dock(viewer, TrainingWidget)
    training._progress(Progress(1, 30, 3, 9, 6.7, 6.0, 0.7, 1e-3, 5.0, 5.0, 91.0, stage="epoch", stopped=True))
    assert training.loss.value.startswith("epoch 1 (stopped at step 3/9): train 6.7")
    assert "left" not in training.job.status.value


def test_training_cancelled_before_a_step_saves_nothing(viewer, qtbot, tmp_path):
    training = _dock(viewer, TrainingWidget)
    training.patches.value = 64
    training.sim_frames.value = 4
    training.device.value = "cpu"
    training.output.value = tmp_path / "never.safetensors"
    training.run()
    training.job.cancel()
    _wait(qtbot, training.job)
    assert not (tmp_path / "never.safetensors").exists()
    assert "no model saved" in training.job.status.value
    assert state_for(viewer).model_path is None


def test_a_stored_nan_is_no_setting(viewer):
    """A hand-edited settings file with lam=NaN showed lambda at its maximum (Qt clamps NaN)."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget
    from napari_deepcel0._napari.settings import load_value, settings_store

    default = Cel0Widget(viewer).lam.value
    store = settings_store()
    for raw in ("NaN", "Infinity", "-Infinity", "1e999"):
        store.setValue("cel0/lam", raw)
        assert load_value("cel0/lam") is None
        assert Cel0Widget(viewer).lam.value == default


def test_training_asks_before_replacing_a_model_file(viewer, qtbot, tmp_path, monkeypatch):
    """Before: the remembered output path made it easy to replace a model (the current
    one, too) without a question."""
    training = _dock(viewer, TrainingWidget)
    training.patches.value, training.sim_frames.value, training.epochs.value = 64, 4, 1
    training.max_steps.value, training.batch_size.value, training.device.value = 1, 4, "cpu"
    existing = tmp_path / "mine.safetensors"
    existing.write_bytes(b"a model worth keeping")
    training.output.value = existing
    asked, answers = [], [False, True]
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: asked.append(path) or answers.pop(0))
    training.run()
    assert asked == [existing] and training.job.worker is None
    assert existing.read_bytes() == b"a model worth keeping" and "exists and was kept" in training.job.status.value
    training.run()
    _wait(qtbot, training.job)
    assert len(asked) == 2 and load_model(existing).info.training["max_steps_per_epoch"] == 1


def test_training_recipe_fills_the_fields_and_persists(viewer):
    from napari_deepcel0._napari.training_widget import RECIPES
    from napari_deepcel0.core.training import TrainingConfig

    training = _dock(viewer, TrainingWidget)
    bundled, paper = list(RECIPES)
    # the default recipe, unchanged: the bundled model's (the paper's schedule made worse models, review)
    assert training.config() == TrainingConfig.bundled()
    training.recipe.value = paper
    assert (training.patches.value, training.epochs.value, training.sparse_fraction.value) == (10000, 100, 0.0)
    training.recipe.value = bundled
    assert (training.patches.value, training.epochs.value, training.batch_size.value) == (200000, 8, 64)
    training.epochs.value = 3  # a field changed after choosing the recipe
    config = training.config()
    assert config == dataclasses.replace(TrainingConfig.bundled(), epochs=3)
    assert config.lr_schedule == "cosine" and config.data.sparse_density == (0.1, 6.0)
    again = TrainingWidget(viewer)  # restored: the recipe and the changed field, in that order
    assert (again.recipe.value, again.epochs.value, again.patches.value) == (bundled, 3, 200000)
    again.settings.reset()
    assert again.recipe.value == bundled and again.config() == TrainingConfig.bundled()


def test_training_keeps_small_lambdas_and_refuses_to_write_the_bundled_model(viewer):
    """The loss lambda field showed 2 decimals: its own minimum, 0.001, became 0.0 and
    Train refused it; a training to the bundled model's file replaced every session's
    default model after "Replace?" (widget review)."""
    from napari_deepcel0.core.model_io import bundled_model_path

    training = _dock(viewer, TrainingWidget)
    # 0, shown as "automatic", is the core's default: 100 (L / 4)^2 for the Acquisition's L
    assert training.lam.value == 0.0 and training.lam.native.text().startswith("automatic")
    assert training.config().lam is None
    for lam in (0.001, 0.004):
        training.lam.value = lam
        assert training.lam.value == pytest.approx(lam) and training.config().lam == pytest.approx(lam)
    before = bundled_model_path().read_bytes()
    training.output.value = bundled_model_path()
    training.run()
    assert training.job.worker is None and "is the model bundled with napari-deepcel0" in training.job.status.value
    assert bundled_model_path().read_bytes() == before


def test_training_that_cannot_fit_in_memory_is_refused_with_the_numbers(viewer, qtbot, tmp_path, monkeypatch):
    """A million patches (about 22 GB) were taken without a word (widget review)."""
    from napari_deepcel0.core import memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**30)
    training = _dock(viewer, TrainingWidget)
    training.output.value = tmp_path / "m.safetensors"
    training.run()
    _wait(qtbot, training.job)
    assert "need about 5 GiB of memory; this machine (or container) has 1 GiB: use fewer patches or frames" in \
        training.job.status.value
    assert not list(tmp_path.glob("m*.safetensors"))


def test_plots_follow_the_napari_theme(viewer):
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    training = _dock(viewer, TrainingWidget)
    for theme in ("dark", "light", "dark"):
        viewer.theme = theme
        colours = get_theme(theme)
        plot = training.plot
        assert to_hex(plot.figure.get_facecolor()) == to_hex(colours.background.as_hex())
        assert to_hex(plot.axes.xaxis.label.get_color()) == to_hex(colours.text.as_hex())
        assert to_hex(plot.axes.get_xgridlines()[0].get_color()) == to_hex(colours.text.as_hex())  # kept the old
        plot.plot({"training": ([1, 2], [3, 2]), "validation": ([1, 2], [4, 3])})  # redrawn: still themed
        assert to_hex(plot.axes.get_facecolor()) == to_hex(colours.background.as_hex())
        assert to_hex(plot.axes.get_legend().get_texts()[0].get_color()) == to_hex(colours.text.as_hex())


def test_warning_and_error_lines_are_readable_in_both_themes(viewer):
    """Fixed orange and red lines had a contrast of 1.4-2.4:1 on the light theme."""
    from napari_deepcel0._napari.controls import STATUS_COLOURS

    widget = _dock(viewer, AcquisitionWidget)
    for theme in ("light", "dark"):
        viewer.theme = theme
        widget.fwhm.value = 258.21
        widget.fwhm.value = 5.0  # below the fine pixel: refused
        assert STATUS_COLOURS[theme]["error"] in widget.status.native.styleSheet()


def test_closing_the_training_panel_says_where_the_model_goes(viewer, qtbot, tmp_path):
    """Closing the panel cancelled the run without a word (review)."""
    training = TrainingWidget(viewer)
    dock = viewer.window.add_dock_widget(training, name="Training")
    training.patches.value, training.sim_frames.value, training.epochs.value = 64, 4, 1
    training.device.value = "cpu"
    training.output.value = tmp_path / "closed.safetensors"
    training.run()
    worker = training.job.worker
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        dock.title.close_button.click()
    assert f"Training stopped when its widget was closed: the best model so far, once a step was trained, is saved " \
           f"to {tmp_path / 'closed.safetensors'}" in _messages(NotificationSeverity.INFO)


def test_training_refuses_a_bad_output(viewer, tmp_path):
    """Also a folder (written as folder.safetensors beside it), an empty name (an error
    about PosixPath('.')) and the checkpoint of an interrupted run in the way (replaced,
    then deleted without a word; review)."""
    training = _dock(viewer, TrainingWidget)
    (tmp_path / "models").mkdir()
    (tmp_path / "old.partial.safetensors").write_bytes(b"the best model of an interrupted run")
    for output, message in ((tmp_path / "model.pt", "must end in .safetensors"),
                            (tmp_path / "models", "models is a folder: choose a file name in it"),
                            ("", "choose the model file to write"),
                            (tmp_path / "old", "old.partial.safetensors exists (the best model of an interrupted "
                                               "run), where this run would keep its checkpoints")):
        training.output.line_edit.value = str(output)
        training.run()
        assert training.job.worker is None
        assert message in training.job.status.value, training.job.status.value
    assert not (tmp_path / "models.safetensors").exists()


def test_training_names_a_relative_output_in_full(viewer, tmp_path, monkeypatch):
    """A relative name is saved in napari's working folder, which a user who started
    napari from a launcher cannot guess: the messages gave the name only."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept.safetensors").write_bytes(b"a model worth keeping")
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: False)
    training = _dock(viewer, TrainingWidget)
    training.output.line_edit.value = "kept.safetensors"  # typed
    training.run()
    assert training.job.status.value == f"Not trained: {tmp_path / 'kept.safetensors'} exists and was kept"
    training.output.line_edit.value = "missing/model.safetensors"
    training.run()
    assert str(tmp_path / "missing") in training.job.status.value and training.job.worker is None


# ================================================================= matching
def _gt_layer(viewer, stack_path):
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    from napari_deepcel0._napari.reader import localization_layer_data

    data, kwargs, _ = localization_layer_data(gt, "ground truth")
    return viewer.add_points(data, **kwargs), gt


def test_matching_says_when_the_tables_cover_different_areas(viewer, qtbot, stack_path):
    """Localizations made at 160 nm for a 100 nm stack (or a ground truth of another
    stack) scored about 1 % with only the usual status line (a review)."""
    from napari_deepcel0._napari.reader import localization_layer_data

    truth, gt = _gt_layer(viewer, stack_path)
    scaled = gt.assign(**{"x [nm]": gt["x [nm]"] * 1.6, "y [nm]": gt["y [nm]"] * 1.6})
    data, kwargs, _ = localization_layer_data(scaled, "at 160 nm")
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = truth, viewer.add_points(data, **kwargs)
    widget.run()
    _wait(qtbot, widget.job)
    assert "scaled by 1/1.6, the localizations would score Jaccard 100.0 %" in widget.job.status.value
    assert any("another pixel size than the ground truth's" in m for m in _messages(NotificationSeverity.WARNING))
    widget.estimate.value = _gt_layer(viewer, stack_path)[0]  # the same area: nothing said
    widget.run()
    _wait(qtbot, widget.job)
    assert "Jaccard 100.0 %" in widget.job.status.value and "scaled by" not in widget.job.status.value


def test_matching_a_copy_of_the_ground_truth_is_perfect(viewer, qtbot, stack_path, tmp_path):
    layer, gt = _gt_layer(viewer, stack_path)
    copy, _ = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value = layer
    widget.estimate.value = copy
    widget.tolerances.value = "25, 50"
    widget.run()
    _wait(qtbot, widget.job)
    table = widget.scores
    assert table["tolerance [nm]"].tolist() == [25.0, 50.0]
    assert (table["Jaccard [%]"] == 100).all() and (table["sensitivity [%]"] == 100).all()
    assert (table["precision [%]"] == 100).all() and (table["RMSE [nm]"] == 0).all()
    assert (table["TP"] == len(gt)).all()
    match_layer = viewer.layers[f"{copy.name} matched"]
    assert set(match_layer.features["match"]) == {"TP"} and len(match_layer.data) == len(gt)
    widget.copy_table()
    assert QApplication.clipboard().text().startswith("tolerance [nm]\tTP")
    widget.save_table(tmp_path / "scores.csv")
    assert pd.read_csv(tmp_path / "scores.csv")["Jaccard [%]"].tolist() == [100.0, 100.0]


def test_matching_a_running_layer_scores_the_frames_of_its_table(viewer, qtbot, tmp_path):
    """Matching read every localization of a running layer but restricted the ground
    truth to the frames of its last redraw: a batch in between scored 50 % for a perfect
    estimate (diff review)."""
    from napari_deepcel0._napari.layers import GrowingPoints

    viewer.add_image(np.zeros((4, 32, 32), np.float32), scale=(1, 100, 100))
    gt = pd.DataFrame({"frame": [1, 1, 2, 2], "x [nm]": [500.0, 1500, 500, 1500], "y [nm]": [500.0, 1500, 500, 1500]})
    [gt_layer] = viewer.open(str(write_thunderstorm_csv(tmp_path / "gt.csv", gt)), plugin="napari-deepcel0")
    run = GrowingPoints(viewer, "run localizations", "yellow")
    estimate = gt.assign(confidence=1.0)
    run.add(estimate[estimate["frame"] == 1], np.array([1]))
    run.refresh()  # a redraw after the first batch
    run.add(estimate[estimate["frame"] == 2], np.array([2]))  # the next batch, before the next redraw
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = gt_layer, run.layer
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value.startswith("run localizations: Jaccard 100.0 % at 50 nm, 4 TP, 0 FP, 0 FN")
    assert "restricted to the 2 frames localized" in widget.job.status.value
    run.finish()


def test_matching_shows_progress_and_can_be_cancelled(viewer, qtbot, stack_path, monkeypatch):
    """A 1M-point match ran about a minute with no progress bar and no Cancel."""
    from napari_deepcel0.core import metrics

    monkeypatch.setattr(metrics, "MATCH_CHUNK_FRAMES", 1)  # progress after every frame of the 8
    layer, gt = _gt_layer(viewer, stack_path)
    copy, _ = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = layer, copy
    widget.tolerances.value = "25, 50"
    seen = []
    widget.job.progress.changed.connect(lambda value: seen.append((value, widget.job.progress.max)))
    widget.run()
    _wait(qtbot, widget.job)
    assert seen[-1] == (16, 16) and len(seen) >= 8  # 8 frames x 2 tolerances
    assert not widget.job.cancel_button.native.isHidden() and widget.scores["TP"].tolist() == [len(gt)] * 2
    before = widget.scores.copy()
    widget.tolerances.value = "10, 20, 30, 40, 50"
    widget.run()
    widget.job.cancel()  # at once: 40 pieces to go
    _wait(qtbot, widget.job)
    assert widget.job.status.value == "Matching cancelled" and widget.scores.equals(before)  # nothing half-done


def test_matching_colours_tp_fp_fn_and_loads_a_csv(viewer, qtbot, stack_path, tmp_path):
    from napari_deepcel0.core.io import write_thunderstorm_csv

    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    csv = write_thunderstorm_csv(tmp_path / "truth.csv", gt)
    widget = _dock(viewer, MatchingWidget)
    gt_layer = widget.load_ground_truth(csv)
    assert widget.ground_truth.value is gt_layer and gt_layer.name == "truth"  # as File > Open names it
    est = gt.iloc[1:].copy()  # one missed molecule ...
    est.loc[est.index[0], "x [nm]"] += 500.0  # ... and one moved far away
    from napari_deepcel0._napari.reader import localization_layer_data

    data, kwargs, _ = localization_layer_data(est, "estimate")
    widget.estimate.value = viewer.add_points(data, **kwargs)
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    match_layer = viewer.layers["estimate matched"]
    counts = match_layer.features["match"].value_counts().to_dict()
    assert counts == {"TP": len(gt) - 2, "FN": 2, "FP": 1}
    # the status line counts what the layer shows, each number under its own name (FP and FN differ here)
    assert f"{counts['TP']} TP, {counts['FP']} FP, {counts['FN']} FN" in widget.job.status.value
    # each point coloured and drawn as its label says (the legend's colours and symbols)
    from matplotlib.colors import to_rgba

    from napari_deepcel0._napari.matching_widget import MATCH_COLORS, MATCH_SYMBOLS

    labels = match_layer.features["match"].to_numpy()
    for kind in ("TP", "FP", "FN"):
        np.testing.assert_allclose(match_layer.face_color[labels == kind], [to_rgba(MATCH_COLORS[kind])] * counts[kind])
        assert {str(s.value) for s in np.asarray(match_layer.symbol)[labels == kind]} == {MATCH_SYMBOLS[kind]}
        # the legend colours the glyph only: the words stay in the theme's text colour (green text on the
        # light theme's grey was unreadable)
        assert f"<span style='color:{MATCH_COLORS[kind]}'>" in widget.legend.value
        assert f"</span> {kind}" in widget.legend.value
    # the TP/FP/FN layer is no localizations or ground truth to score (its FN counted as found: review)
    for combo in (widget.estimate, widget.ground_truth):
        combo.reset_choices()
        assert match_layer not in combo.choices and viewer.layers["estimate"] in combo.choices
    assert widget.load_ground_truth(tmp_path / "missing.csv") is None
    assert any("missing.csv" in m for m in _messages(NotificationSeverity.ERROR))


def test_a_saved_run_opened_again_is_scored_on_its_frames_against_the_ground_truth(viewer, qtbot, stack_path,
                                                                                   tmp_path):
    """In a later session, a run's CSV (frames 1-3, its protocol beside it) and the ground
    truth, both opened as files: Matching took the run for both (and refused to match), the
    run chosen by hand scored 4 % against all the ground truth's frames (63 % in its own
    session), and both were drawn as magenta rings (a review)."""
    from matplotlib.colors import to_rgba

    from napari_deepcel0._napari.cel0_widget import Cel0Widget
    from napari_deepcel0._napari.layers import DEEPCEL0_COLOR, FILE_COLOR
    from napari_deepcel0.core.protocol import localization_protocol, protocol_path, write_protocol

    gt = pd.read_pickle(stack_path.parent / "gt.pkl")[["frame", "x [nm]", "y [nm]"]]
    assert gt["frame"].max() > 3
    run = gt[gt["frame"] <= 3]
    csv = write_thunderstorm_csv(tmp_path / "run.csv", run)
    write_protocol(protocol_path(csv), localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5},
                                                             [1, 2, 3], (32, 32), len(run)))
    locs = _open(viewer, str(csv))
    truth = _open(viewer, str(write_thunderstorm_csv(tmp_path / "truth.csv", gt)))
    np.testing.assert_allclose(locs.face_color[0], to_rgba(DEEPCEL0_COLOR))
    np.testing.assert_allclose(truth.face_color[0], to_rgba(FILE_COLOR))
    assert str(locs.symbol[0].value) == "disc" and str(truth.symbol[0].value) == "ring"
    widget = _dock(viewer, MatchingWidget)
    assert widget.ground_truth.value is truth and widget.estimate.value is locs
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.scores["Jaccard [%]"].tolist() == [100.0] and widget.scores["FN"].tolist() == [0]
    sweep = _dock(viewer, Cel0Widget)
    assert sweep.ground_truth.value is truth  # (the saved run is no ground truth to sweep lambda against)


def test_matching_a_file_of_some_frames_warns_and_scores_the_chosen_frames(viewer, qtbot, stack_path):
    """A CSV localized on frames 1-2, scored against the whole ground truth, counted every
    molecule of the other frames as missed without a word (review); the frames field scores
    the frames it was localized on, and the match layer is named after what it scored."""
    from napari_deepcel0._napari.reader import localization_layer_data

    gt_layer, gt = _gt_layer(viewer, stack_path)
    assert gt["frame"].max() > 3
    data, kwargs, _ = localization_layer_data(gt[gt["frame"] <= 2], "frames 1-2")
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = gt_layer, viewer.add_points(data, **kwargs)
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    missed = int((gt["frame"] > 2).sum())
    assert widget.scores["FN"].tolist() == [missed]
    assert f"the {missed} ground-truth molecules outside count as missed" in widget.job.status.value
    assert "score the localized ones only (frames 1-2 here)" in widget.job.status.value
    assert widget.job.status.value in _messages(NotificationSeverity.WARNING)
    widget.frames.value = "1-2"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.scores["Jaccard [%]"].tolist() == [100.0]
    assert widget.job.status.value.endswith("0 FN (2 frames chosen)")
    assert set(viewer.layers["frames 1-2 matched"].features["match"]) == {"TP"}
    widget.frames.value = "0-2"
    widget.run()
    assert widget.job.worker is None and "frames are 1-based" in widget.job.status.value
    # frames chosen where the ground truth has no molecule: every localization a false positive, said
    widget.ground_truth.value = viewer.add_points(data, **{**kwargs, "name": "truth of frames 1-2"})
    later, later_kwargs, _ = localization_layer_data(gt[gt["frame"].between(3, 4)], "3-4")
    widget.estimate.value = viewer.add_points(later, **later_kwargs)
    widget.frames.value = "3-4"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value.endswith("(2 frames chosen); the ground truth holds no molecule in frames 3-4: all "
                                            f"{int(gt['frame'].between(3, 4).sum())} localizations count as false "
                                            "positives; is it the ground truth of this stack?")
    assert widget.job.status.value in _messages(NotificationSeverity.WARNING)


def test_matching_a_run_scores_the_frames_it_localized_among_those_chosen(viewer, qtbot, stack_path):
    """The ground truth of a run's layer is restricted to the frames the run localized, and
    to those of them in the frames field."""
    stack = _open(viewer, stack_path)
    _localized(viewer, qtbot, layer=stack, frames="2-4")
    run = viewer.layers[f"{stack.name} localizations"]
    gt_layer, gt = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = gt_layer, run
    widget.tolerances.value = "50"
    for frames, note, kept in (("all", "(ground truth restricted to the 3 frames localized)", [2, 3, 4]),
                               ("3-8", "(ground truth restricted to the 2 frames localized of the 6 frames chosen)",
                                [3, 4])):
        widget.frames.value = frames
        widget.run()
        _wait(qtbot, widget.job)
        assert widget.job.status.value.endswith(note)
        table = widget.scores
        assert int(table["TP"][0] + table["FN"][0]) == int(gt["frame"].isin(kept).sum())
        assert int(table["TP"][0] + table["FP"][0]) == int(np.isin(run.data[:, 0] + 1, kept).sum())


def test_matching_says_when_there_is_nothing_to_score_or_no_common_frame(viewer, qtbot):
    """Two empty layers gave "Jaccard nan %"; layers of frames 10-11 and 1-2 gave
    "Jaccard 0.0 %" with no hint; an infinite tolerance failed in the job."""
    from napari_deepcel0._napari.reader import localization_layer_data

    def points(name, frames):
        table = pd.DataFrame({"frame": frames, "x [nm]": [500.0] * len(frames), "y [nm]": [700.0] * len(frames)})
        data, kwargs, _ = localization_layer_data(table, name)
        return viewer.add_points(data, **kwargs)

    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value, widget.estimate.value = points("truth", [10, 11]), points("est", [1, 2])
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value == ("est: Jaccard 0.0 % at 50 nm, 0 TP, 2 FP, 2 FN; the ground truth (frames "
                                       "10-11) and the localizations (frames 1-2) share no frame: choose layers of "
                                       "the same stack")
    assert widget.job.status.value in _messages(NotificationSeverity.WARNING)
    widget.ground_truth.value, widget.estimate.value = points("no truth", []), points("none", [])
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value == "none: nothing to score: no localizations and no ground truth"
    # frames chosen where neither has one: not "no ground truth" alone (it has molecules elsewhere: a review)
    widget.ground_truth.value, widget.estimate.value = points("truth 5", [10, 11]), points("est 5", [1, 2])
    widget.frames.value = "5-8"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value == ("est 5: nothing to score: no localizations and no ground truth in the frames "
                                       "scored (4 frames chosen)")
    widget.frames.value = "all"
    for tolerances in ("inf", "50, 1e309", "nan"):
        widget.tolerances.value = tolerances
        widget.run()
        assert widget.job.worker is None
        assert widget.job.status.value == (f"Matching: tolerances must be positive, finite numbers in nm, got "
                                           f"{tolerances!r}")
    widget.tolerances.value = "50, 0.05"  # (50 nm typed in um scored 0 % without a word)
    widget.run()
    assert widget.job.worker is None
    assert widget.job.status.value == ("Matching: tolerances are distances in nm, at least 1, got 0.05 (in um? "
                                       "0.05 um is 50 nm)")


# =================================================================== export
def test_export_says_when_the_run_of_its_layer_is_still_going(viewer, qtbot, stack_path, tmp_path, monkeypatch):
    """A CSV saved mid-run held the frames done so far (18 of 113 localizations) and the
    message said nothing of it."""
    from napari_deepcel0._napari.layers import GrowingPoints

    run = GrowingPoints(viewer, "stk localizations", "yellow")  # what Localize and CEL0 fill
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    run.add(gt[gt["frame"] == 1], np.array([1]))
    run.refresh()
    widget = _dock(viewer, ExportWidget)
    widget.points.value = run.layer
    widget.csv_path.value = tmp_path / "midrun.csv"
    widget.save_csv()
    _wait(qtbot, widget.csv_job)
    n = int((gt["frame"] == 1).sum())
    assert f"{n} localizations of stk localizations saved to" in widget.csv_job.status.value
    assert "its run was still going, so only the frames done so far are in the file" in widget.csv_job.status.value
    # File > Save with this plugin's writer said nothing of it (a review)
    from napari_deepcel0._napari.writer import write_points

    with pytest.warns(UserWarning, match=r"stk localizations: its run was still going, so only the frames done so "
                                         r"far \(1\) are in saved\.csv, without a protocol: save again when"):
        write_points(str(tmp_path / "saved.csv"), *run.layer.as_layer_data_tuple()[:2])
    assert len(read_localizations(tmp_path / "saved.csv")) == n and not (tmp_path / "saved-protocol.json").exists()
    run.finish()  # the same file again, now complete
    monkeypatch.setattr(controls, "ask_to_replace", lambda parent, path: True)
    widget.save_csv()
    _wait(qtbot, widget.csv_job)
    assert "saved to" in widget.csv_job.status.value and "still going" not in widget.csv_job.status.value
    # a real run marks its layer finished
    _open(viewer, str(stack_path))
    _localized(viewer, qtbot)
    assert viewer.layers["small localizations"].metadata["running"] is False


def test_a_copy_of_a_running_layer_lists_the_frames_of_the_localizations_it_got(viewer, stack_path):
    """A batch arrives between two redraws of a run (their pace: RefreshPacer); a copy of
    the run's layer made then (Duplicate Layer) gets every localization so far, and the
    frames it lists for Matching are theirs, not those of the last redraw (whose frames
    would leave the later batch's localizations scored against no ground truth)."""
    from napari.layers._layer_actions import _duplicate_layer

    from napari_deepcel0._napari.layers import GrowingPoints, localized_frames

    run = GrowingPoints(viewer, "stk localizations", "yellow")  # what Localize and CEL0 fill
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    run.add(gt[gt["frame"] == 1], np.array([1]))
    run.refresh()
    run.add(gt[gt["frame"] == 2], np.array([2]))  # not redrawn yet
    assert run.layer.metadata["frames"].tolist() == [1]
    viewer.layers.selection = {run.layer}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["stk localizations copy"]
    assert len(copy.data) == int(gt["frame"].isin([1, 2]).sum()) > int((gt["frame"] == 1).sum())
    assert localized_frames(copy).tolist() == [1, 2] and copy.metadata["running"] is False
    run.finish()


def test_a_runs_protocol_goes_beside_its_csv_with_the_count_saved(viewer, qtbot, stack_path, tmp_path):
    """A Localize or CEL0 run leaves its protocol (stack, frames, acquisition, method, model,
    settings, count) on its layer; Export and File > Save write it beside the CSV, with the
    count saved (the user may have deleted points since)."""
    import json

    from napari_deepcel0._napari.layers import PROTOCOL
    from napari_deepcel0._napari.writer import write_points

    layer = _open(viewer, stack_path)
    widget = _localized(viewer, qtbot, frames="2-3", auto_threshold=False, threshold=5.0)
    points = viewer.layers[f"{layer.name} localizations"]
    protocol = points.metadata[PROTOCOL]
    assert protocol["method"] == "DeepCEL0" and protocol["model"]["bundled"] is True
    assert protocol["input"] == {"stack": str(Path(stack_path).resolve()), "frames": "2-3", "n_frames": 2,
                                 "frame_shape": list(layer.data.shape[-2:])}
    assert protocol["settings"]["threshold"] == 5.0 and protocol["settings"]["threshold_is_default"] is False
    assert protocol["results"]["localizations"] == len(points.data) > 1
    assert protocol["acquisition"] == widget.state.acquisition.to_dict() and protocol["status"] == "finished"
    assert protocol["settings"]["precision"] in ("bf16", "fp32") and protocol["settings"]["read_out"] == "peaks"
    assert protocol["settings"]["scaling_tile_px"] == 64 and protocol["settings"]["range_floor_sd"] == 18.0
    points.selected_data = {0}
    points.remove_selected()
    export = _dock(viewer, ExportWidget)
    export.points.value = points
    export.csv_path.value = tmp_path / "run.csv"
    export.save_csv()
    _wait(qtbot, export.csv_job)
    saved = json.loads((tmp_path / "run-protocol.json").read_text())
    assert saved["results"]["localizations_saved"] == len(read_localizations(tmp_path / "run.csv")) == len(points.data)
    assert saved["results"]["localizations"] == len(points.data) + 1
    assert "run-protocol.json" in export.csv_job.status.value
    other = viewer.add_points(points.data, name="typed in")  # no run: no protocol
    assert write_points(str(tmp_path / "typed.csv"), *other.as_layer_data_tuple()[:2]) == [str(tmp_path / "typed.csv")]

    cel0 = _quick_cel0_widget(viewer, layer, "1")
    cel0.with_deepcel0.value = True
    cel0.run()
    _wait(qtbot, cel0.job)
    made = {p.metadata[PROTOCOL]["method"]: p.metadata[PROTOCOL] for p in viewer.layers if PROTOCOL in p.metadata
            and p is not points}
    assert set(made) == {"CEL0-IRL1", "DeepCEL0"}
    assert made["CEL0-IRL1"]["settings"]["max_outer"] == 2 and made["CEL0-IRL1"]["input"]["frames"] == "1"
    assert made["DeepCEL0"]["model"]["bundled"] is True and made["DeepCEL0"]["input"]["frames"] == "1"
    assert made["DeepCEL0"]["settings"]["scaling_tile_px"] == 64
    assert made["DeepCEL0"]["settings"]["range_floor_sd"] == 18.0


def test_the_localizers_of_widget_runs_scale_frames_as_their_protocols_record(viewer, qtbot, stack_path,
                                                                              monkeypatch):
    """The Localize and CEL0 widgets build their DeepLocalizer from the scaling settings
    their protocol records (review: both used defaults that agreed by coincidence)."""
    from napari_deepcel0._napari import cel0_widget, localize_widget
    from napari_deepcel0._napari.layers import PROTOCOL

    built = []

    class Recorded(DeepLocalizer):  # the real localizer, its scaling noted
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append((self.scaling_tile_px, self.range_floor))

    other = {"scaling_tile_px": None, "range_floor_sd": None}  # the settings before 2026-11-29
    for module in (localize_widget, cel0_widget):
        monkeypatch.setattr(module, "DeepLocalizer", Recorded)
    monkeypatch.setattr(cel0_widget, "scaling_settings", lambda: dict(other))  # (no control: the defaults)
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.scaling.regions.value = False
    widget.scaling.range_floor.value = 0.0
    _localized(viewer, qtbot, frames="1")
    cel0 = _quick_cel0_widget(viewer, layer, "1")
    cel0.with_deepcel0.value = True
    cel0.run()
    _wait(qtbot, cel0.job)
    assert built == [(None, None), (None, None)]
    recorded = [p.metadata[PROTOCOL]["settings"] for p in viewer.layers
                if PROTOCOL in p.metadata and p.metadata[PROTOCOL]["method"] == "DeepCEL0"]
    assert len(recorded) == 2 and all(r["scaling_tile_px"] is None and r["range_floor_sd"] is None for r in recorded)


def _large_frames_with_empty_ones(tmp_path) -> Path:
    """4 frames of 96 x 96 px (cut into regions): molecules of log-normal brightness in
    frames 1-2, camera noise alone in 3-4."""
    photons = sim.PhotonModel(600.0, 900.0, 0.8)
    frames, _ = sim.simulate_stack(n_frames=2, shape=(96, 96), density_per_um2=0.5, structure="uniform",
                                   photons=photons, seed=8)
    empty, _ = sim.simulate_stack(n_frames=2, shape=(96, 96), density_per_um2=0.0, seed=9)
    stack = np.clip(np.concatenate([frames, empty]), 0, 65535).astype(np.uint16)
    return write_tiff(tmp_path / "large.tif", stack, pixel_size_nm=100.0)


@pytest.mark.parametrize("regions, floor", [(True, 18.0), (False, 0.0), (True, 0.0), (False, 30.0)])
def test_the_localize_widgets_frame_scaling_is_the_cores(viewer, qtbot, tmp_path, regions, floor):
    """The frame scaling row (regions, range floor) localizes as the command line's
    --whole-frame-scaling and --range-floor K do, restarts with the widget, and goes in the
    protocol (the GUI had no such control: a run of the command line could not be
    repeated in it)."""
    from napari_deepcel0._napari.layers import PROTOCOL
    from napari_deepcel0.core.predict import SCALING_TILE_PX

    path = _large_frames_with_empty_ones(tmp_path)
    layer = _open(viewer, path)
    widget = _dock(viewer, LocalizeWidget)
    assert widget.scaling.regions.value is True and widget.scaling.range_floor.value == 18.0  # the defaults
    widget.scaling.regions.value = regions
    widget.scaling.range_floor.value = floor
    _localized(viewer, qtbot)
    tile_px = SCALING_TILE_PX if regions else None
    acq = state_for(viewer).acquisition
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NothingFoundWarning)
        expected = localize(DeepLocalizer(None, acquisition=acq, device="cpu", scaling_tile_px=tile_px,
                                          range_floor=floor or None), FrameStack(path))
        default = localize(DeepLocalizer(None, acquisition=acq, device="cpu"), FrameStack(path))
    points = viewer.layers[f"{layer.name} localizations"]
    got = table_from_layer(points)
    key = ["frame", "y [nm]", "x [nm]"]
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.sort_values(key)[key].to_numpy(), expected.sort_values(key)[key].to_numpy(),
                               atol=1e-6)
    if (regions, floor) != (True, 18.0):  # the control changed what was found, not only what is recorded
        assert len(expected) != len(default) or not np.allclose(expected.sort_values(key)[key].to_numpy(),
                                                                default.sort_values(key)[key].to_numpy())
    settings = points.metadata[PROTOCOL]["settings"]
    assert settings["scaling_tile_px"] == tile_px and settings["range_floor_sd"] == (floor or None)
    reopened = _dock(viewer, LocalizeWidget)  # the settings persist, and Reset puts the defaults back
    assert (reopened.scaling.regions.value, reopened.scaling.range_floor.value) == (regions, floor)
    reopened.reset()
    assert (reopened.scaling.regions.value, reopened.scaling.range_floor.value) == (True, 18.0)


def test_hand_edits_of_localizations_are_marked_and_go_in_the_protocol(viewer, qtbot, stack_path, tmp_path):
    """A point added by hand to localizations got the intensity of the point selected (or
    added) last, and the protocol saved beside the edited table said only what the run
    found: a point added by hand now has NaN features, and the protocol counts the points
    added, removed and moved (again after the file is opened, edited and saved again). A
    run's layer edited while the run fills it is undone at its next frame: a warning."""
    import json

    from napari_deepcel0._napari.layers import HAND_EDITS, GrowingPoints
    from napari_deepcel0._napari.writer import write_points
    from napari_deepcel0.core.protocol import localization_protocol, protocol_path, write_protocol

    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    gt = gt.assign(**{"intensity [photon]": np.arange(1.0, len(gt) + 1)})[["frame", "x [nm]", "y [nm]",
                                                                         "intensity [photon]"]]
    csv = write_thunderstorm_csv(tmp_path / "locs.csv", gt)
    write_protocol(protocol_path(csv), localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5},
                                                             [1, 2], (32, 32), len(gt)))
    points = _open(viewer, str(csv))  # no widget open: the reader watches the layer
    points.selected_data = {3}
    points.add([[0.0, 500.0, 700.0]])
    points.add([[1.0, 900.0, 300.0]])
    assert np.isnan(points.features["intensity [photon]"].to_numpy()[-2:]).all()  # not point 3's, nor the last's
    points.selected_data = {0}
    points.remove_selected()
    points._move({1}, points.data[1] + [0, 50.0, 0])  # what a drag does when the mouse is released
    assert points.metadata[HAND_EDITS] == {"added": 2, "removed": 1, "moved": 1}
    written = write_points(str(tmp_path / "edited.csv"), *points.as_layer_data_tuple()[:2])
    saved = json.loads(protocol_path(written[0]).read_text())
    assert saved["results"]["hand_edits"] == {"added": 2, "removed": 1, "moved": 1}
    assert saved["results"]["localizations_saved"] == len(gt) + 1 == saved["results"]["localizations"] + 1
    back = read_localizations(written[0])
    assert back["intensity [photon]"].isna().sum() == 2 and back["intensity [photon]"].notna().sum() == len(gt) - 1
    again = _open(viewer, written[0])  # opened again and edited: the counts add up
    again.add([[0.0, 100.0, 100.0]])
    write_points(str(tmp_path / "twice.csv"), *again.as_layer_data_tuple()[:2])
    assert json.loads((tmp_path / "twice-protocol.json").read_text())["results"]["hand_edits"] == {
        "added": 3, "removed": 1, "moved": 1}

    run = GrowingPoints(viewer, "stk localizations", "yellow")  # what Localize and CEL0 fill
    run.add(gt[gt["frame"] == 1], np.array([1]))
    viewer.dims.set_point(0, 0.0)  # frame 1 on screen: the run shows its points
    run.refresh()
    notification_manager.records.clear()
    run.layer.selected_data = {0}
    run.layer.remove_selected()  # during the run: undone at the next frame, and said so
    assert any("a run is filling this layer" in m for m in _messages(NotificationSeverity.WARNING))
    run.add(gt[gt["frame"] == 2], np.array([2]))
    run.finish()
    assert len(run.layer.data) == (gt["frame"] <= 2).sum() and HAND_EDITS not in run.layer.metadata  # the run's
    untouched = GrowingPoints(viewer, "stk localizations", "yellow")  # a run not edited: the next run reuses it
    assert untouched.layer is run.layer
    untouched.add(gt[gt["frame"] <= 2], np.array([1, 2]))
    untouched.finish()
    run.layer.selected_data = {0}
    run.layer.remove_selected()  # after the run: counted
    assert run.layer.metadata[HAND_EDITS] == {"removed": 1}
    rerun = GrowingPoints(viewer, "stk localizations", "yellow")  # curated: a new run leaves it alone (it emptied it)
    assert rerun.layer is not run.layer and rerun.layer.name == "stk localizations [1]"
    assert len(run.layer.data) == (gt["frame"] <= 2).sum() - 1 and HAND_EDITS not in rerun.layer.metadata
    rerun.finish()
    from napari.layers._layer_actions import _duplicate_layer

    viewer.layers.selection = {run.layer}
    _duplicate_layer(viewer.layers)  # napari's Duplicate Layer: the copy is watched, with its own counts
    copy = viewer.layers[f"{run.layer.name} copy"]
    copy.add([[0.0, 10.0, 10.0]])
    assert copy.metadata[HAND_EDITS] == {"removed": 1, "added": 1} and run.layer.metadata[HAND_EDITS] == {"removed": 1}
    # a script's setter is counted by what it did (it announces every point as changed), and
    # after a filter the features follow their points (napari kept the first rows': a review)
    copy.data = copy.data.copy()
    keep = np.r_[True, False, np.ones(len(copy.data) - 2, bool)]
    expected = copy.features[keep].reset_index(drop=True)
    copy.data = copy.data[keep]
    pd.testing.assert_frame_equal(copy.features, expected)
    moved = copy.data.copy()
    moved[:2, 2] += 30.0
    copy.data = moved
    before = copy.features.copy()
    assert copy.features.iloc[-2].notna().any()  # (the last: the point added by hand above)
    copy.data = np.vstack([[[1.0, 60.0, 60.0], [1.0, 70.0, 70.0]], copy.data])  # added first: the last keep theirs
    assert copy.features.iloc[:2].isna().all().all()
    pd.testing.assert_frame_equal(copy.features.iloc[2:].reset_index(drop=True), before)
    before = copy.features.copy()
    copy.data = np.vstack([copy.data, [[1.0, 50.0, 50.0]]])  # a point added by a script: NaN features
    assert copy.features.iloc[-1].isna().all()
    pd.testing.assert_frame_equal(copy.features.iloc[:-1], before)
    assert copy.metadata[HAND_EDITS] == {"removed": 2, "added": 4, "moved": 2}
    # another plugin's Points, with the same generic metadata keys: not touched
    other = viewer.add_points([[0, 1, 1]], features={"class": [1]}, metadata={"source": "x", "frames": [1]})
    other.feature_defaults = {"class": 2}
    other.add([[0, 5, 5]])
    assert other.features["class"].tolist() == [1, 2] and HAND_EDITS not in other.metadata


def test_a_cel0_comparison_warns_of_no_hand_edit_nobody_made(viewer, qtbot, stack_path):
    """Every CEL0 comparison warned that points edited by hand would be undone: its first
    points widened the view, napari moved the slider while the run set the layer's data,
    the run showed the frame again from within, and the inner setting_data block ended the
    outer one's (a review). Blocks now nest, and the run shows a frame once at a time."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget
    from napari_deepcel0._napari.layers import HAND_EDITS, setting_data

    layer = _open(viewer, stack_path)
    notification_manager.records.clear()
    widget = _dock(viewer, Cel0Widget)  # its defaults (frames 1-2, automatic batch)
    widget.layer.value, widget.device.value = layer, "cpu"
    widget.max_outer.value, widget.max_inner.value = 2, 10
    widget.run()
    _wait(qtbot, widget.job)
    assert not any("by hand" in m for m in _messages(NotificationSeverity.WARNING))
    runs = [p for p in viewer.layers if p.name.startswith(f"{layer.name} CEL0") or
            p.name.startswith(f"{layer.name} DeepCEL0")]
    assert len(runs) == 2 and all(len(p.data) > 0 and HAND_EDITS not in p.metadata for p in runs)
    points = runs[0]
    with setting_data(points):
        with setting_data(points):
            pass
        points.add([[0.0, 100.0, 100.0]])  # still the plugin's own change
    assert HAND_EDITS not in points.metadata
    points.add([[0.0, 200.0, 200.0]])  # the user's
    assert points.metadata[HAND_EDITS] == {"added": 1}


def test_points_pasted_into_localizations_count_as_added_by_hand(viewer, qtbot, stack_path, tmp_path):
    """napari's copy and paste of points (Ctrl+C, Ctrl+V) announces no change of the data:
    molecules copied to another frame went into the CSV as found there, with their
    intensities, and the protocol did not count them. They are now points added by hand
    (NaN features, counted), once, also while a run fills the layer (a warning)."""
    import json

    from napari_deepcel0._napari.layers import HAND_EDITS, GrowingPoints
    from napari_deepcel0._napari.writer import write_points
    from napari_deepcel0.core.protocol import localization_protocol, protocol_path, write_protocol

    gt = pd.read_pickle(stack_path.parent / "gt.pkl")[["frame", "x [nm]", "y [nm]", "intensity [photon]"]]
    csv = write_thunderstorm_csv(tmp_path / "locs.csv", gt)
    write_protocol(protocol_path(csv), localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5},
                                                             [1, 2], (32, 32), len(gt)))
    points = _open(viewer, str(csv))
    # napari 0.9's paste fails where a dimension is not displayed (its _ThickNDSlice is indexed
    # by an integer): with the frame axis displayed too, it pastes at the points' own coordinates
    viewer.dims.ndisplay = 3
    points.selected_data = {0, 1}
    points._copy_data()
    points._paste_data()
    assert points.metadata[HAND_EDITS] == {"added": 2}
    assert np.isnan(points.features["intensity [photon]"].to_numpy()[-2:]).all()
    assert points.features["intensity [photon]"].notna().sum() == len(gt)
    points.add([[3.0, 500.0, 700.0]])  # counted once, as before
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, 1.0)  # drawn again: nothing new
    assert points.metadata[HAND_EDITS] == {"added": 3}
    written = write_points(str(tmp_path / "pasted.csv"), *points.as_layer_data_tuple()[:2])
    saved = json.loads(protocol_path(written[0]).read_text())
    assert saved["results"]["hand_edits"] == {"added": 3}
    back = read_localizations(written[0])
    assert len(back) == len(gt) + 3 and back["intensity [photon]"].isna().sum() == 3

    run = GrowingPoints(viewer, "stk localizations", "yellow")  # a run's layer: undone at its next frame
    run.add(gt[gt["frame"] == 1], np.array([1]))
    viewer.dims.set_point(0, 0.0)
    run.refresh()
    notification_manager.records.clear()
    viewer.dims.ndisplay = 3
    run.layer.selected_data = {0}
    run.layer._copy_data()
    run.layer._paste_data()
    viewer.dims.ndisplay = 2
    assert any("a run is filling this layer" in m for m in _messages(NotificationSeverity.WARNING))
    run.add(gt[gt["frame"] == 2], np.array([2]))
    run.finish()
    assert len(run.layer.data) == (gt["frame"] <= 2).sum() and HAND_EDITS not in run.layer.metadata


def test_a_localize_run_that_finds_nothing_says_what_to_try(viewer, qtbot, stack_path):
    """0 localizations was all the status said (the command line and the library name the
    threshold)."""
    _open(viewer, stack_path)
    notification_manager.records.clear()
    widget = _localized(viewer, qtbot, frames="1-2", auto_threshold=False, threshold=1e5)
    status = widget.job.status.value
    assert status.startswith("Localization finished: 2/2 frames") and " 0 localizations, " in status
    assert status.endswith("; no molecule was found above the threshold of 1e+05 (map units): lower it (untick "
                           "automatic), or check that the model suits these frames and the Acquisition settings")
    assert status in _messages(NotificationSeverity.WARNING)
    found = _localized(viewer, qtbot, frames="1-2", auto_threshold=True)
    assert "no molecule" not in found.job.status.value


def test_localizations_opened_in_a_viewer_other_than_the_current_one_are_watched(make_napari_viewer, stack_path,
                                                                                tmp_path):
    """The reader watched napari's current viewer only: a CSV opened into another window
    had its points added by hand copy a molecule's intensity again (a review)."""
    from napari_deepcel0._napari.layers import HAND_EDITS

    first, _ = make_napari_viewer(), make_napari_viewer()  # the second is the current one
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")[["frame", "x [nm]", "y [nm]", "intensity [photon]"]]
    [points] = first.open(str(write_thunderstorm_csv(tmp_path / "gt.csv", gt)), plugin="napari-deepcel0")
    points.selected_data = {0}
    points.add([[0.0, 100.0, 100.0]])
    assert np.isnan(points.features["intensity [photon]"].iloc[-1]) and points.metadata[HAND_EDITS] == {"added": 1}
    fresh = make_napari_viewer()  # not watched yet: nothing was read into it
    layers = fresh.open_sample("napari-deepcel0", "paper_scenes")  # a sample's ground truth, no widget open
    truth = [layer for layer in layers if layer.name.endswith("ground truth")][0]
    truth.selected_data = {0}
    truth.add([[0.0, 100.0, 100.0]])  # (it copied the selected molecule's photons: a review)
    assert np.isnan(truth.features["intensity [photon]"].iloc[-1]) and truth.metadata[HAND_EDITS] == {"added": 1}


def test_export_writes_csv_and_tiff(viewer, qtbot, stack_path, tmp_path):
    layer, gt = _gt_layer(viewer, stack_path)
    render = viewer.add_image(np.arange(12, dtype=np.float32).reshape(3, 4), scale=(10.0, 10.0), units="nm",
                              name="render", metadata={OUTPUT: "render"})  # as Localize makes it
    matched = viewer.add_points(layer.data[:3], name="matched", metadata={OUTPUT: "match"})  # as Matching makes it
    widget = _dock(viewer, ExportWidget)
    assert matched not in widget.points.choices  # its FN are ground-truth positions (it was offered: a review)
    widget.points.value = layer
    widget.csv_path.value = tmp_path / "exported"  # the .csv suffix is added
    widget.save_csv()
    _wait(qtbot, widget.csv_job)
    back = read_localizations(tmp_path / "exported.csv")
    np.testing.assert_allclose(back[["frame", "x [nm]", "y [nm]"]].to_numpy(float),
                               gt.sort_values("frame", kind="stable")[["frame", "x [nm]", "y [nm]"]].to_numpy(float))
    widget.image.value = render
    widget.tiff_path.value = tmp_path / "render.tif"
    widget.save_tiff()
    _wait(qtbot, widget.tiff_job)
    with FrameStack(tmp_path / "render.tif") as saved:
        assert saved.pixel_size_nm == pytest.approx(10.0) and saved.output == "render"  # not camera frames
        np.testing.assert_array_equal(saved[0], render.data)
    # napari's usual integer type (int32) is written with its values and pixel size, here calibrated in um
    # (the pixel size was left out for any unit but nm)
    labels_like = viewer.add_image(np.arange(12, dtype=np.int32).reshape(3, 4) - 3, scale=(0.025, 0.025),
                                   units="um", name="i32")
    widget.image.value = labels_like
    widget.tiff_path.value = tmp_path / "i32.tif"
    widget.save_tiff()
    _wait(qtbot, widget.tiff_job)
    assert widget.tiff_job.error is None
    with FrameStack(tmp_path / "i32.tif") as saved:
        assert saved.pixel_size_nm == pytest.approx(25.0) and saved.output is None
        np.testing.assert_array_equal(saved[0], labels_like.data)
    # integers float32 cannot hold are rounded: said (it was silent; widget review)
    widget.image.value = viewer.add_image(np.array([[0, 2**25 + 1]], np.int64), name="i64")
    widget.tiff_path.value = tmp_path / "i64.tif"
    widget.save_tiff()
    _wait(qtbot, widget.tiff_job)
    assert any("written as float32" in m for m in _messages(NotificationSeverity.WARNING))
    # an RGB image is refused (it was written as frames of 3-pixel-wide images)
    widget.image.value = viewer.add_image(np.zeros((5, 6, 3), np.uint8), rgb=True, name="photo")
    widget.tiff_path.value = tmp_path / "photo.tif"
    widget.save_tiff()
    assert "is an RGB image" in widget.tiff_job.status.value and not (tmp_path / "photo.tif").exists()
    # pixels that are not square get no pixel size (x's was written for y too: a review)
    widget.image.value = viewer.add_image(np.ones((4, 4), np.float32), scale=(20.0, 10.0), units="nm", name="oblong")
    widget.tiff_path.value = tmp_path / "oblong.tif"
    widget.save_tiff()
    _wait(qtbot, widget.tiff_job)
    assert "no pixel size: its pixels are 20 x 10 nm, not square" in widget.tiff_job.status.value
    with FrameStack(tmp_path / "oblong.tif") as saved:
        assert saved.pixel_size_nm is None


# ===================================================================== CEL0
def test_cel0_runs_beside_deepcel0_and_sweeps_lambda(viewer, qtbot, stack_path):
    from napari_deepcel0.core import cel0 as cel0_core

    layer = _open(viewer, stack_path)
    gt_layer, gt = _gt_layer(viewer, stack_path)
    widget = _quick_cel0_widget(viewer, layer, "2-3")
    ticker = _start_and_click_again(widget.run, widget.job)
    _wait(qtbot, widget.job)
    _, longest_gap = ticker.stop()
    cel0 = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"]
    deep = viewer.layers[f"{layer.name} DeepCEL0 (frames 2-3)"]
    assert len(cel0.data) > 0 and len(deep.data) > 0
    assert set(table_from_layer(cel0)["frame"]) <= {2, 3}
    assert cel0.metadata["frames"].tolist() == [2, 3] == deep.metadata["frames"].tolist()
    assert "CEL0: " in widget.summary.value and "DeepCEL0: " in widget.summary.value
    assert "times as many localizations" not in widget.summary.value  # (dense frames)
    assert longest_gap < 1.5

    widget.ground_truth.value = gt_layer
    assert widget.plot.axes.get_ylim() == (0.0, 100.0)  # Jaccard in %: not matplotlib's 0-1 (a review)
    # the default range holds the default lambda within (the paper's started at it: a sweep on ISBI 2013 ended
    # at that edge and warned that the optimum may lie beyond: a review)
    assert widget.lam_min.value < cel0_core.DEFAULT_LAM < widget.lam_max.value
    widget.sweep_frames.value = 3
    # a range that does not hold its lambdas is refused before the sweep starts: one lambda swept the lower
    # end alone and called it the best; two of one value failed in the job, an error (a review)
    for (low, high, n), reason in [((0.01, 1.0, 1), "one lambda sweeps the lower end alone: set 'to' equal to "
                                                     "'from', or sweep 2 or more lambdas"),
                                   ((0.5, 0.5, 3), "a lambda range of one value (0.5 to 0.5) holds one lambda, "
                                                   "not 3")]:
        widget.lam_min.value, widget.lam_max.value, widget.n_lams.value = low, high, n
        widget.sweep()
        assert not widget.sweep_job.busy and reason in widget.sweep_job.status.value and not widget._curve
    widget.lam_min.value, widget.lam_max.value = defaults.SWEEP_LAM_RANGE
    widget.n_lams.value = 2
    widget.sweep()
    _wait(qtbot, widget.sweep_job)
    assert widget.use_best_button.enabled
    assert widget.best.value.startswith("lambda ")
    # the frames field (2-3) holds fewer than asked: said (it was silent)
    assert ("; 2 frames of the 3 asked: all those of the selection 'frames (1-based)' within the ground truth's "
            "frames") in widget.best.value
    # of two lambdas the best is at an edge of the range: it may lie beyond (it was copied as an optimum)
    assert "lambda tried: the optimum may lie beyond it" in widget.best.value
    assert f"Lambda sweep: best {widget.best.value}" in _messages(NotificationSeverity.WARNING)
    assert len(widget.plot.axes.lines) == 2  # the curve and the best point
    low, high = widget.plot.axes.get_ylim()  # scaled to the curve again
    curve = widget.plot.axes.lines[0].get_ydata()
    assert low <= min(curve) and max(curve) <= high and (low, high) != (0.0, 100.0)
    widget.use_best()
    assert widget.lam.value == pytest.approx(float(widget.best.value.split()[1].rstrip(":")), rel=1e-3)


def test_a_sweep_against_a_ground_truth_in_other_units_says_so_and_offers_no_best(viewer, qtbot, stack_path):
    """A ground truth outside the stack's field gave "best: lambda 0.001: Jaccard 0.0 %,
    RMSE nan nm" and enabled "Use the best lambda" without the warning deepcel0 cel0
    --sweep gives (widget review)."""
    from napari_deepcel0._napari.reader import localization_layer_data

    layer = _open(viewer, stack_path)
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    data, kwargs, _ = localization_layer_data(gt.assign(**{"x [nm]": gt["x [nm]"] * 100, "y [nm]": gt["y [nm]"] * 100}),
                                              "ground truth in 1/100 nm")
    widget = _quick_cel0_widget(viewer, layer, "2-3")
    widget.ground_truth.value = viewer.add_points(data, **kwargs)
    widget.n_lams.value, widget.sweep_frames.value = 2, 1
    widget.sweep()
    _wait(qtbot, widget.sweep_job)
    warnings_said = _messages(NotificationSeverity.WARNING)
    assert any("ground-truth molecules lie outside the stack's field" in m for m in warnings_said)
    assert widget.best.value.startswith("no lambda found a molecule of the ground truth (Jaccard 0 % at every")
    assert not widget.use_best_button.enabled and widget.sweep_job.status.value.endswith("no best lambda")


def test_cel0_cancel_keeps_finished_batches(viewer, qtbot, stack_path, monkeypatch):
    from napari_deepcel0._napari import cel0_widget

    real_sweep = cel0_widget.lambda_sweep

    def sweep_pausing_after_one_lambda(*args, progress=None, cancel=None, **kwargs):
        def report_then_wait(*report):
            progress(*report)
            cancel.wait(timeout=60)

        return real_sweep(*args, progress=report_then_wait, cancel=cancel, **kwargs)

    monkeypatch.setattr(cel0_widget, "localize_stream", _pause_after_first(cel0_widget.localize_stream))
    monkeypatch.setattr(cel0_widget, "lambda_sweep", sweep_pausing_after_one_lambda)
    layer = _open(viewer, stack_path)
    widget = _quick_cel0_widget(viewer, layer, "all")
    widget.batch_size.value = 1
    widget.run()
    _press_cancel(qtbot, widget.job, lambda: widget._done_frames["CEL0"] == 1)
    _wait(qtbot, widget.job)
    cel0 = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"]
    assert cel0.metadata["frames"].tolist() == [1]
    assert "cancelled" in widget.job.status.value
    # cancelled before DeepCEL0 started: no empty DeepCEL0 layer, and the summary says so
    assert f"{layer.name} DeepCEL0 (frames all)" not in viewer.layers
    assert widget.summary.value.endswith("DeepCEL0: no frame finished")

    widget.ground_truth.value = _gt_layer(viewer, stack_path)[0]
    widget.n_lams.value = 5
    widget.sweep_frames.value = 1
    widget.sweep()
    _press_cancel(qtbot, widget.sweep_job, lambda: len(widget._curve) == 1)
    _wait(qtbot, widget.sweep_job)
    assert widget.sweep_job.status.value == "Lambda sweep cancelled after 1 lambda"
    assert not widget.use_best_button.enabled


def test_the_sweep_grows_its_curve_in_groups_of_lambdas_on_a_gpu(viewer, stack_path, monkeypatch):
    # a GPU sweep solves its lambdas together: in one batch the curve stayed empty until the end
    from napari_deepcel0._napari import cel0_widget

    widget = _quick_cel0_widget(viewer, _open(viewer, stack_path), "1-2")
    widget.n_lams.value = 30
    widget.device.value = "cpu"
    assert widget._lams_per_solve() == 1
    monkeypatch.setattr(cel0_widget, "resolve_device", lambda device: torch.device("cuda", 0))
    assert widget._lams_per_solve() == 6  # 5 updates of the curve
    widget.n_lams.value = 3
    assert widget._lams_per_solve() == 1


def test_redraws_of_a_growing_run_take_a_bounded_share_of_the_time():
    """Redrawing a million points takes about a quarter of a second: redrawn every half
    second, a long run froze napari. The pause after a redraw grows with its cost."""
    from napari_deepcel0._napari.layers import RefreshPacer

    now = [0.0]
    pacer = RefreshPacer(min_interval_s=0.5, max_share=0.1, clock=lambda: now[0])
    assert pacer.due()  # the first batch is shown at once
    with pacer.redrawing():
        now[0] += 0.01  # a cheap redraw: the next one after the minimum interval
    now[0] += 0.4
    assert not pacer.due()
    now[0] += 0.2
    assert pacer.due()
    with pacer.redrawing():
        now[0] += 1.0  # a redraw of a large layer: wait ten times as long
    now[0] += 9.0
    assert not pacer.due()
    now[0] += 1.1
    assert pacer.due()


@pytest.mark.parametrize("kind", ["rgb", "pyramid", "4d"])
@pytest.mark.parametrize("widget_name", ["localize", "cel0", "estimate"])
def test_images_that_are_no_stack_are_refused_by_every_analysis(viewer, widget_name, kind):
    """Before: Estimate read an RGB image as 64 frames of 64 x 3 pixels and replaced the
    camera offset and read noise; Localize and CEL0 read a pyramid's levels as frames."""
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    data = {"rgb": np.full((64, 64, 3), 100, np.uint8),
            "pyramid": [np.full((4, 64, 64), 100.0, np.float32), np.full((4, 32, 32), 100.0, np.float32)],
            "4d": np.full((2, 3, 16, 16), 100.0, np.float32)}[kind]
    layer = viewer.add_image(data, name="not a stack", rgb=kind == "rgb", multiscale=kind == "pyramid")
    widget_class, start, job = {"localize": (LocalizeWidget, "run", "job"), "cel0": (Cel0Widget, "run", "job"),
                                "estimate": (AcquisitionWidget, "estimate", "job")}[widget_name]
    widget = _dock(viewer, widget_class)
    before = state_for(viewer).acquisition
    if kind == "rgb":  # not offered any more (it was listed only to be refused)
        assert layer not in widget.layer.choices
        return
    widget.layer.value = layer
    getattr(widget, start)()
    controls = getattr(widget, job)
    assert controls.worker is None
    expected = "multiscale (pyramid)" if kind == "pyramid" else "not a (frames, rows, cols) stack of gray frames"
    assert expected in controls.status.value
    assert state_for(viewer).acquisition == before
    assert [lyr.name for lyr in viewer.layers] == ["not a stack"]  # no output layer made
