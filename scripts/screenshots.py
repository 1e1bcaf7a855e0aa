"""Screenshots of the napari-deepcel0 widgets in use, for docs/plugin.md.

Run from the repository root (napari needs OpenGL; xvfb-run provides a display)::

    xvfb-run -a .venv/bin/python scripts/screenshots.py

It simulates a high-density stack and its ground truth, opens both through the
plugin's readers, drives each dock widget as a user would (on the CPU, with small
budgets) and saves ``viewer.screenshot(canvas_only=False)`` PNGs into docs/images/.
The plugin's persistent settings go to a temporary folder, not the user's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QSettings

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
WINDOW = (1500, 1000)
DOCK_WIDTH = 500
#: frame shown in the screenshots (0-based)
SHOWN_FRAME = 7


def wait(app, job, timeout_s: float = 600.0) -> None:
    """Let the event loop run until the widget's job has finished."""
    start = time.monotonic()
    while job.busy:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{job.title} did not finish in {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # let the last layer updates draw
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dc0-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(workdir / "settings"))

    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtCore import Qt

    from napari_deepcel0._napari.acquisition_widget import AcquisitionWidget
    from napari_deepcel0._napari.cel0_widget import Cel0Widget
    from napari_deepcel0._napari.export_widget import ExportWidget
    from napari_deepcel0._napari.localize_widget import LocalizeWidget
    from napari_deepcel0._napari.matching_widget import MatchingWidget
    from napari_deepcel0._napari.training_widget import TrainingWidget
    from napari_deepcel0.core import simulate as sim
    from napari_deepcel0.core.acquisition import ISBI2013
    from napari_deepcel0.core.io import write_thunderstorm_csv, write_tiff

    IMAGES.mkdir(parents=True, exist_ok=True)
    frames, truth = sim.simulate_stack(n_frames=40, shape=(64, 64), density_per_um2=5.5, acq=ISBI2013, seed=1)
    stack_path = write_tiff(workdir / "tubulin_hd.tif", np.clip(frames, 0, 65535).astype(np.uint16),
                            pixel_size_nm=ISBI2013.pixel_size_nm)
    truth_path = write_thunderstorm_csv(workdir / "tubulin_hd_truth.csv", truth)

    viewer = napari.Viewer(title="napari-deepcel0")
    viewer.window.resize(*WINDOW)
    app = napari.qt.get_qapp()
    [stack] = viewer.open(stack_path, plugin="napari-deepcel0")
    [gt] = viewer.open(truth_path, plugin="napari-deepcel0")
    gt.visible = False
    viewer.dims.set_current_step(0, SHOWN_FRAME)
    viewer.reset_view()

    def shoot(name: str, dock, selected) -> None:
        """Save a screenshot (without the notification pop-ups), then close the dock."""
        viewer.layers.selection.active = selected
        for popup in viewer.window._qt_window.findChildren(NapariQtNotification):
            popup.hide()
        viewer.reset_view()
        for _ in range(30):
            app.processEvents()
            time.sleep(0.01)
        viewer.screenshot(str(IMAGES / name), canvas_only=False)
        viewer.window.remove_dock_widget(dock)
        print(f"wrote {IMAGES / name}")

    def dock(widget_class, name: str):
        widget = widget_class(viewer)
        dock_widget = viewer.window.add_dock_widget(widget, name=name, area="right")
        viewer.window._qt_window.resizeDocks([dock_widget], [DOCK_WIDTH], Qt.Orientation.Horizontal)
        return widget, dock_widget

    # 1. Acquisition: estimate PSF width, offset and noise from the stack
    acquisition, acquisition_dock = dock(AcquisitionWidget, "Acquisition")
    acquisition.layer.value = stack
    acquisition.estimate()
    wait(app, acquisition.job)
    shoot("acquisition.png", acquisition_dock, stack)
    acquisition.reset()  # localize with the ISBI settings the bundled model was trained for

    # 2. Localize: stream the whole stack through the bundled model
    localize, localize_dock = dock(LocalizeWidget, "Localize")
    localize.layer.value = stack
    localize.device.value = "cpu"
    localize.run()
    wait(app, localize.job)
    viewer.layers[f"{stack.name} render"].opacity = 0.8
    shoot("localize.png", localize_dock, viewer.layers[f"{stack.name} localizations"])

    # 3. Ground-truth matching of the DeepCEL0 localizations
    matching, matching_dock = dock(MatchingWidget, "Ground-truth matching")
    matching.ground_truth.value = gt
    matching.estimate.value = viewer.layers[f"{stack.name} localizations"]
    matching.run()
    wait(app, matching.job)
    viewer.layers[f"{stack.name} render"].visible = False
    viewer.layers[f"{stack.name} localizations"].visible = False
    shoot("matching.png", matching_dock, viewer.layers[f"{stack.name} localizations matched"])
    viewer.layers.remove(viewer.layers[f"{stack.name} localizations matched"])
    viewer.layers[f"{stack.name} localizations"].visible = True

    # 4. A small lambda sweep on two random frames, then CEL0-IRL1 beside DeepCEL0 on
    #    the frame shown and the next (small iteration caps: CEL0 is slow on a CPU)
    cel0, cel0_dock = dock(Cel0Widget, "CEL0-IRL1 compare")
    cel0.layer.value = stack
    cel0.device.value = "cpu"
    cel0.max_outer.value = 15
    cel0.max_inner.value = 40
    cel0.ground_truth.value = gt
    cel0.frames.value = "all"
    cel0.lam_min.value, cel0.lam_max.value = 1e-4, 0.3
    cel0.n_lams.value = 6
    cel0.sweep_frames.value = 2
    cel0.sweep()
    wait(app, cel0.sweep_job)
    cel0.frames.value = f"{SHOWN_FRAME + 1}-{SHOWN_FRAME + 2}"
    cel0.run()
    wait(app, cel0.job)
    viewer.layers[f"{stack.name} localizations"].visible = False
    gt.visible = True
    shoot("cel0.png", cel0_dock, viewer.layers[f"{stack.name} CEL0 (lambda {cel0.lam.value:g})"])

    # 5. Train DeepCEL0: a short CPU run (a real model needs a GPU and the default budget)
    for layer in viewer.layers:
        layer.visible = layer is stack
    training, training_dock = dock(TrainingWidget, "Train DeepCEL0")
    training.patches.value = 320
    training.sim_frames.value = 20
    training.epochs.value = 4
    training.max_steps.value = 10
    training.device.value = "cpu"
    training.output.value = workdir / "quick-model.safetensors"
    training.run()
    wait(app, training.job)
    shoot("training.png", training_dock, stack)

    # 6. Export the localizations and the rendering
    for layer in viewer.layers:
        layer.visible = layer.name in (stack.name, f"{stack.name} render")
    export, export_dock = dock(ExportWidget, "Export")
    export.points.value = viewer.layers[f"{stack.name} localizations"]
    export.csv_path.value = workdir / "tubulin_hd_localizations.csv"
    export.save_csv()
    wait(app, export.csv_job)
    export.image.value = viewer.layers[f"{stack.name} render"]
    export.tiff_path.value = workdir / "tubulin_hd_render.tif"
    export.save_tiff()
    wait(app, export.tiff_job)
    shoot("export.png", export_dock, viewer.layers[f"{stack.name} render"])
    viewer.close()


if __name__ == "__main__":
    main()
