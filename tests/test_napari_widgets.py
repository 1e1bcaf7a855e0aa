"""The dock widgets, driven as a user would, on small simulated stacks.

Every run happens in a napari worker thread; the tests wait for it with qtbot.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_deepcel0._napari.acquisition_widget import AcquisitionWidget
from napari_deepcel0._napari.export_widget import ExportWidget
from napari_deepcel0._napari.layers import table_from_layer
from napari_deepcel0._napari.localize_widget import LocalizeWidget
from napari_deepcel0._napari.matching_widget import MatchingWidget
from napari_deepcel0._napari.state import PluginState, state_for
from napari_deepcel0._napari.training_widget import TrainingWidget
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.io import FrameStack, read_localizations, write_tiff
from napari_deepcel0.core.model_io import load_model
from napari_deepcel0.core.predict import DeepLocalizer, localize

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


def _messages(severity) -> list[str]:
    return [str(n.message) for n in notification_manager.records if n.severity == severity]


def _pause_after_first(generator_function):
    """Wrap a core generator so that, after its first item, it waits until the job's
    cancel event is set: the test then presses Cancel between two batches."""

    def paused(*args, cancel=None, **kwargs):
        items = generator_function(*args, cancel=cancel, **kwargs)
        yield next(items)
        cancel.wait(timeout=60)
        yield from items

    return paused


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
        how many ticks to expect depends on how long the job ran."""
        self.timer.stop()
        elapsed = time.perf_counter() - self.start
        assert len(self.times) >= max(2, 0.25 * elapsed / self.interval_s), (len(self.times), elapsed)
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


def test_pixel_size_comes_from_the_file(viewer, tmp_path):
    state = state_for(viewer)
    _open(viewer, write_tiff(tmp_path / "p160.tif", np.zeros((2, 8, 8), np.uint16), pixel_size_nm=160.0))
    assert state.acquisition.pixel_size_nm == pytest.approx(160.0)


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


# ================================================================= localize
def test_localize_streams_the_same_points_as_the_core(viewer, qtbot, stack_path):
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 2
    widget.render_blur.value = 0.0
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
    assert len(widget._run.points.frames) == 4  # batches of 2 frames
    assert "finished" in widget.job.status.value and "frames/s" in widget.job.status.value
    # the event loop kept turning while the worker ran (the tick count is checked by stop())
    assert longest_gap < 1.5


def test_localize_with_orientation_averaging_matches_the_core(viewer, qtbot, stack_path):
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.frames.value = "1-2"
    widget.orientations.value = 4
    widget.run()
    _wait(qtbot, widget.job)
    model = DeepLocalizer(None, acquisition=state_for(viewer).acquisition, device="cpu", orientations=4)
    expected = localize(model, FrameStack(stack_path), frames="1-2")
    got = table_from_layer(viewer.layers[f"{layer.name} localizations"])
    key = ["frame", "y [nm]", "x [nm]"]
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.sort_values(key)[key].to_numpy(), expected.sort_values(key)[key].to_numpy(),
                               atol=1e-6)


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
    got = table_from_layer(points)
    assert set(got["frame"]) <= set(done.tolist())
    maps = viewer.layers[f"{layer.name} maps"]
    assert maps.data.shape == (8, 128, 128)
    assert maps.data[: len(done)].max() > 0 and maps.data[len(done):].max() == 0


def test_localize_error_is_a_notification_and_partial_results_stay(viewer, qtbot, tmp_path):
    frames, _ = sim.simulate_stack(n_frames=4, shape=(32, 32), seed=1)
    frames[2, 5, 5] = np.nan
    layer = _open(viewer, write_tiff(tmp_path / "nan.tif", frames.astype(np.float32), pixel_size_nm=100.0))
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.batch_size.value = 1
    widget.run()
    _wait(qtbot, widget.job)
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
    widget = _dock(viewer, LocalizeWidget)
    widget.device.value = "cpu"
    widget.run()
    _wait(qtbot, widget.job)
    assert widget.job.status.value.startswith("Localization failed: out of GPU memory; lower the batch size")
    assert any("out of GPU memory" in m for m in _messages(NotificationSeverity.ERROR))


def test_a_runtime_error_in_a_generator_job_is_reported(qtbot):
    """superqt's generator worker would swallow it and never finish."""
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


def test_localize_reports_bad_inputs(viewer, tmp_path, stack_path):
    _open(viewer, stack_path)
    widget = _dock(viewer, LocalizeWidget)
    state_for(viewer).acquisition = Acquisition(fwhm_nm=200.0)
    assert "WARNING" in widget.model_info.value and "PSF FWHM" in widget.model_info.value
    widget.frames.value = "5-20"
    widget.run()
    assert widget.job.worker is None
    assert any("outside 1..8" in m for m in _messages(NotificationSeverity.ERROR))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    widget.model.value = bad
    assert "not a valid model file" in widget.model_info.value
    widget.frames.value = "all"
    widget.run()
    assert widget.job.worker is None


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


# ================================================================= training
def test_training_saves_a_model_that_becomes_current(viewer, qtbot, tmp_path):
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
    training.output.value = path
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
    assert "now the current model" in training.job.status.value
    assert training.job.progress.value == training.job.progress.max == 2
    assert "epoch 1" in training.loss.value
    assert longest_gap < 1.5


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


def test_training_recipe_fills_the_fields_and_persists(viewer):
    from napari_deepcel0._napari.training_widget import RECIPES
    from napari_deepcel0.core.training import TrainingConfig

    training = _dock(viewer, TrainingWidget)
    paper, bundled = list(RECIPES)
    assert training.config() == TrainingConfig()  # the default recipe, unchanged: the paper's schedule
    training.recipe.value = bundled
    assert (training.patches.value, training.epochs.value, training.batch_size.value) == (120000, 14, 64)
    training.epochs.value = 3  # a field changed after choosing the recipe
    config = training.config()
    assert config == dataclasses.replace(TrainingConfig.bundled(), epochs=3)
    assert config.lr_schedule == "cosine" and config.data.sparse_density == (0.1, 6.0)
    again = TrainingWidget(viewer)  # restored: the recipe and the changed field, in that order
    assert (again.recipe.value, again.epochs.value, again.patches.value) == (bundled, 3, 120000)
    again.settings.reset()
    assert again.recipe.value == paper and again.config() == TrainingConfig()


def test_training_refuses_a_bad_output(viewer, tmp_path):
    training = _dock(viewer, TrainingWidget)
    training.output.value = tmp_path / "model.pt"
    training.run()
    assert training.job.worker is None
    assert any(".safetensors" in m for m in _messages(NotificationSeverity.ERROR))


# ================================================================= matching
def _gt_layer(viewer, stack_path):
    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    from napari_deepcel0._napari.reader import localization_layer_data

    data, kwargs, _ = localization_layer_data(gt, "ground truth")
    return viewer.add_points(data, **kwargs), gt


def test_matching_ground_truth_against_itself_is_perfect(viewer, qtbot, stack_path, tmp_path):
    layer, gt = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, MatchingWidget)
    widget.ground_truth.value = layer
    widget.estimate.value = layer
    widget.tolerances.value = "25, 50"
    widget.run()
    _wait(qtbot, widget.job)
    table = widget.scores
    assert table["tolerance [nm]"].tolist() == [25.0, 50.0]
    assert (table["Jaccard [%]"] == 100).all() and (table["sensitivity [%]"] == 100).all()
    assert (table["precision [%]"] == 100).all() and (table["RMSE [nm]"] == 0).all()
    assert (table["TP"] == len(gt)).all()
    match_layer = viewer.layers["match @ 25 nm"]
    assert set(match_layer.features["match"]) == {"TP"} and len(match_layer.data) == len(gt)
    widget.copy_table()
    assert QApplication.clipboard().text().startswith("tolerance [nm]\tTP")
    widget.save_table(tmp_path / "scores.csv")
    assert pd.read_csv(tmp_path / "scores.csv")["Jaccard [%]"].tolist() == [100.0, 100.0]


def test_matching_colours_tp_fp_fn_and_loads_a_csv(viewer, qtbot, stack_path, tmp_path):
    from napari_deepcel0.core.io import write_thunderstorm_csv

    gt = pd.read_pickle(stack_path.parent / "gt.pkl")
    csv = write_thunderstorm_csv(tmp_path / "truth.csv", gt)
    widget = _dock(viewer, MatchingWidget)
    gt_layer = widget.load_ground_truth(csv)
    assert widget.ground_truth.value is gt_layer
    est = gt.iloc[1:].copy()  # one missed molecule ...
    est.loc[est.index[0], "x [nm]"] += 500.0  # ... and one moved far away
    from napari_deepcel0._napari.reader import localization_layer_data

    data, kwargs, _ = localization_layer_data(est, "estimate")
    widget.estimate.value = viewer.add_points(data, **kwargs)
    widget.tolerances.value = "50"
    widget.run()
    _wait(qtbot, widget.job)
    counts = viewer.layers["match @ 50 nm"].features["match"].value_counts().to_dict()
    assert counts == {"TP": len(gt) - 2, "FN": 2, "FP": 1}
    assert widget.load_ground_truth(tmp_path / "missing.csv") is None
    assert any("missing.csv" in m for m in _messages(NotificationSeverity.ERROR))


# =================================================================== export
def test_export_writes_csv_and_tiff(viewer, qtbot, stack_path, tmp_path):
    layer, gt = _gt_layer(viewer, stack_path)
    render = viewer.add_image(np.arange(12, dtype=np.float32).reshape(3, 4), scale=(10.0, 10.0), name="render")
    widget = _dock(viewer, ExportWidget)
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
        assert saved.pixel_size_nm == pytest.approx(10.0)
        np.testing.assert_array_equal(saved[0], render.data)


# ===================================================================== CEL0
def test_cel0_runs_beside_deepcel0_and_sweeps_lambda(viewer, qtbot, stack_path):
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    layer = _open(viewer, stack_path)
    gt_layer, gt = _gt_layer(viewer, stack_path)
    widget = _dock(viewer, Cel0Widget)
    widget.layer.value = layer
    widget.device.value = "cpu"
    widget.max_outer.value = 2
    widget.max_inner.value = 10
    widget.frames.value = "2-3"
    ticker = _start_and_click_again(widget.run, widget.job)
    _wait(qtbot, widget.job)
    _, longest_gap = ticker.stop()
    cel0 = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"]
    deep = viewer.layers[f"{layer.name} DeepCEL0 (frames 2-3)"]
    assert len(cel0.data) > 0 and len(deep.data) > 0
    assert set(table_from_layer(cel0)["frame"]) <= {2, 3}
    assert cel0.metadata["frames"].tolist() == [2, 3] == deep.metadata["frames"].tolist()
    assert "CEL0: " in widget.summary.value and "DeepCEL0: " in widget.summary.value
    assert longest_gap < 1.5

    widget.ground_truth.value = gt_layer
    widget.n_lams.value = 2
    widget.sweep_frames.value = 2
    widget.sweep()
    _wait(qtbot, widget.sweep_job)
    assert widget.use_best_button.enabled
    assert widget.best.value.startswith("lambda ")
    assert len(widget.plot.axes.lines) == 2  # the curve and the best point
    widget.use_best()
    assert widget.lam.value == pytest.approx(float(widget.best.value.split()[1].rstrip(":")), rel=1e-3)


def test_cel0_cancel_keeps_finished_batches(viewer, qtbot, stack_path, monkeypatch):
    from napari_deepcel0._napari import cel0_widget
    from napari_deepcel0._napari.cel0_widget import Cel0Widget

    real_sweep = cel0_widget.lambda_sweep

    def sweep_pausing_after_one_lambda(*args, progress=None, cancel=None, **kwargs):
        def report_then_wait(*report):
            progress(*report)
            cancel.wait(timeout=60)

        return real_sweep(*args, progress=report_then_wait, cancel=cancel, **kwargs)

    monkeypatch.setattr(cel0_widget, "localize_stream", _pause_after_first(cel0_widget.localize_stream))
    monkeypatch.setattr(cel0_widget, "lambda_sweep", sweep_pausing_after_one_lambda)
    layer = _open(viewer, stack_path)
    widget = _dock(viewer, Cel0Widget)
    widget.layer.value = layer
    widget.device.value = "cpu"
    widget.batch_size.value = 1
    widget.max_outer.value = 2
    widget.max_inner.value = 10
    widget.frames.value = "all"
    widget.run()
    _press_cancel(qtbot, widget.job, lambda: widget._done_frames["CEL0"] == 1)
    _wait(qtbot, widget.job)
    cel0 = viewer.layers[f"{layer.name} CEL0 (lambda {widget.lam.value:g})"]
    assert cel0.metadata["frames"].tolist() == [1]
    assert "cancelled" in widget.job.status.value
    assert len(viewer.layers[f"{layer.name} DeepCEL0 (frames all)"].data) == 0

    widget.ground_truth.value = _gt_layer(viewer, stack_path)[0]
    widget.n_lams.value = 5
    widget.sweep_frames.value = 1
    widget.sweep()
    _press_cancel(qtbot, widget.sweep_job, lambda: len(widget._curve) == 1)
    _wait(qtbot, widget.sweep_job)
    assert widget.sweep_job.status.value == "Lambda sweep cancelled after 1 lambdas"
    assert not widget.use_best_button.enabled
