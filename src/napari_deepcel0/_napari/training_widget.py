"""Dock widget 2: train a DeepCEL0 model on data simulated for the acquisition."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import napari
from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning

from ..core.cancel import Cancelled
from ..core.devices import DEVICES, resolve_device
from ..core.outputs import check_output_path
from ..core.model_io import check_training_output, checkpoint_path, save_checkpoint, save_final
from ..core.progress import format_duration
from ..core.training import (CPU_PATCHES_PER_S, Progress, TrainingConfig, TrainingDivergedError, cpu_hours_estimate,
                              patch_steps, train)
from .controls import DockPanel, LinePlot, OverwriteGuard, float_box, wrapping_label
from .jobs import JobControls, ProgressRelay, gpu_memory_hint
from .settings import PersistentValues
from .state import state_for


def _train_job(acq, config: TrainingConfig, path: Path, progress, time_limit_s: float | None = None, cancel=None):
    """Train, then save the best model (also when cancelled after at least one step).
    The best model so far is also saved after every improving epoch, beside ``path``
    (:func:`~napari_deepcel0.core.model_io.save_checkpoint`), so that it survives napari
    being closed or killed mid-run while an existing model at ``path`` stays as it was.
    ``time_limit_s``: stop then, keeping the best model so far (:func:`train`)."""

    def checkpoint(best):
        save_checkpoint(path, best, notes="trained in napari")

    with gpu_memory_hint():
        try:
            result = train(acq, config, progress=progress, cancel=cancel, on_best=checkpoint, time_limit_s=time_limit_s)
        except Cancelled:  # before the first step (or while simulating the training set)
            return None, None
        except TrainingDivergedError as exc:  # the checkpoint holds the best epoch before it, if any
            kept = checkpoint_path(path)
            # the message without its precision='fp32' advice: the widget has no precision setting
            raise TrainingDivergedError(exc.message + (
                f"; the best model before that is in {kept}" if kept.exists() else "")) from None
    return result, save_final(path, result, notes="trained in napari")


#: the recipes the widget offers (label -> TrainingConfig factory), the first the default; a
#: recipe fills the fields below it and sets what they do not show (learning-rate schedule,
#: sparse densities). The bundled model's first: the paper's schedule, in about as long on a
#: CPU, reached 46 % Jaccard on ISBI 2013 for its 63.6 % and reports noise as molecules on
#: sparse frames (no sparse patches)
RECIPES = {
    "the bundled model's": TrainingConfig.bundled,
    "the paper's schedule": TrainingConfig,
}


class TrainingWidget(DockPanel):
    """Simulate a training set for the current acquisition and train DeepCEL0 on it,
    with live progress; the trained model becomes the current model."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.recipe = ComboBox(
            label="recipe", choices=list(RECIPES), value=next(iter(RECIPES)),
            tooltip="fills the fields below (change them after). The bundled model's: 200,000 patches with 25 % "
                    "sparse ones, 8 epochs, batch 64, cosine learning rate; the best model we know how to train "
                    "(about 4 min on an H100; 7 hours or more on a CPU). The paper's schedule: 10,000 patches, "
                    "100 epochs, batch 16, no sparse patches (about 5 min on an H100, 4-8 hours on a CPU; "
                    "46 % Jaccard on ISBI 2013 where the bundled model's scored 63.6 %)")
        # the fields a recipe fills start empty: _apply_recipe below gives them the first recipe's values
        self.patches = SpinBox(label="training patches", min=8, max=1_000_000, step=1000)
        self.sim_frames = SpinBox(label="simulated frames", min=1, max=100_000)
        self.density = FloatSpinBox(label="emitters per um^2", min=0.1, max=50.0, step=0.5,
                                    tooltip="density of the uniform simulated frames; about your data's")
        self.sparse_fraction = FloatSpinBox(
            label="sparse patches (fraction)", min=0.0, max=0.9, step=0.05,
            tooltip="share of the patches cut from sparse frames (0.1-2 emitters/um^2; 0.1-6 in the bundled "
                    "model's recipe) with no minimum number of emitters; 0.2 keeps a model from reporting noise "
                    "as molecules on sparse frames")
        self.epochs = SpinBox(label="epochs", min=1, max=10_000)
        self.max_steps = SpinBox(label="max steps/epoch (0: all)", min=0, max=1_000_000, value=0,
                                 tooltip="quick trials: at most this many steps per epoch, and as many validation "
                                         "batches")
        self.lam = float_box("CEL0 loss lambda", 0.0, 0.0, 1e6, decimals=3, step=10.0)
        self.lam.native.setSpecialValueText("automatic: 100 (L/4)^2")  # shown at 0
        self.lam.tooltip = ("weight of the CEL0 penalty in the training loss, in units of the target maps (the "
                            "paper: 100 at L = 4); 0: automatic, 100 (L / 4)^2 for the Acquisition's L (at 100 a "
                            "first run at L = 2 died, its maps 0 everywhere), or the model fine-tuned's; not the "
                            "CEL0-IRL1 solver's lambda of the CEL0 widget")
        self.batch_size = SpinBox(label="batch size", min=1, max=4096)
        self.time_limit = float_box("time limit (min, 0: none)", 0.0, 0.0, 1e5, decimals=2, step=10.0)
        self.time_limit.tooltip = ("stop after so many minutes (the simulation of the training set included) and "
                                   "keep the best model so far; 0: train every epoch")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.output = FileEdit(label="save model to", mode="w", filter="*.safetensors",
                               value=Path.home() / "deepcel0-model.safetensors")
        self.acquisition = wrapping_label(label="acquisition")
        self.job = JobControls("Training", "Train")
        self.state.watch_job(self.job)  # (the acquisition edited during its run: said)
        self.loss = wrapping_label(label="loss")
        self.plot = LinePlot("epoch", "loss", integer_x=True)
        self.plot.follow_theme(napari_viewer)
        self.reset_button = PushButton(text="Reset settings")
        self.extend([self.recipe, self.patches, self.sim_frames, self.density, self.sparse_fraction, self.epochs,
                     self.max_steps, self.lam, self.batch_size, self.time_limit,
                     self.device, self.output, self.acquisition, self.job, self.loss, self.plot,
                     self.reset_button])
        self._apply_recipe(self.recipe.value)  # before the settings take these values as their defaults
        self.settings = PersistentValues("training", {
            "recipe": self.recipe, "patches": self.patches, "sim_frames": self.sim_frames, "density": self.density,
            "sparse_fraction": self.sparse_fraction, "epochs": self.epochs,
            "max_steps": self.max_steps, "lam": self.lam, "batch_size": self.batch_size,
            "time_limit": self.time_limit, "device": self.device, "output": self.output})
        self.output_guard = OverwriteGuard(self.output)
        self.relay = ProgressRelay()
        self.relay.report.connect(self.job.while_open(self._progress))
        self._history: list[Progress] = []
        self._run_limit_min = 0.0  # the time limit of the run going on (minutes)
        self._run_acquisition = None  # the acquisition of the run going on
        self._cpu_note = ""  # the time a run on the CPU takes, roughly (said while its training set is made)
        self._describe_acquisition(self.state.acquisition)
        self.state.acquisition_changed.connect(self._describe_acquisition)
        self.job.run_button.changed.connect(self.run)
        self.job.clear_refusal_on_change(self)
        self.reset_button.changed.connect(self.settings.reset)
        self.recipe.changed.connect(self._apply_recipe)  # after the restore: keep the stored field values

    def _apply_recipe(self, name: str) -> None:
        """Fill the fields with the values of a recipe."""
        recipe = RECIPES[name]()
        self.patches.value, self.sim_frames.value = recipe.data.n_patches, recipe.data.n_frames
        self.density.value, self.sparse_fraction.value = recipe.data.density_per_um2, recipe.data.sparse_fraction
        self.epochs.value, self.batch_size.value, self.lam.value = recipe.epochs, recipe.batch_size, recipe.lam or 0.0

    def _describe_acquisition(self, acq) -> None:
        """The acquisition the next training takes; during a run, the run's, and the new
        one when it differs (the line followed the Acquisition widget while the run
        trained for the settings it started with: a review)."""
        run = self._run_acquisition
        self.acquisition.value = (acq.describe() if run is None or run == acq else
                                  f"this training: {run.describe()}; the next: {acq.describe()}")

    def config(self) -> TrainingConfig:
        """The training configuration the widget describes (validated): the recipe, with the
        values of the fields."""
        recipe = RECIPES[self.recipe.value]()
        data = dataclasses.replace(recipe.data, n_patches=self.patches.value, n_frames=self.sim_frames.value,
                                   density_per_um2=self.density.value, sparse_fraction=self.sparse_fraction.value)
        return dataclasses.replace(recipe, lam=self.lam.value or None, epochs=self.epochs.value,
                                   batch_size=self.batch_size.value, device=self.device.value,
                                   max_steps_per_epoch=self.max_steps.value or None, data=data)

    def run(self, *_) -> None:
        """Start training in a worker thread."""
        if not self.job.idle():
            return
        path = self.output.value
        try:
            config = self.config()
            resolve_device(config.device)
            if path is None or not str(path).strip() or path.name in ("", "."):
                raise ValueError("choose the model file to write (.safetensors)")
            # ~ is the home folder; a relative name is in napari's working folder, which the
            # messages (and the current model, remembered between sessions) name in full
            path = Path(os.path.abspath(path.expanduser()))
            if path.is_dir():  # "models" became models.safetensors beside the folder
                raise ValueError(f"{path} is a folder: choose a file name in it")
            if not path.suffix:  # as Export adds the extension of what it writes
                path = path.with_suffix(".safetensors")
            if path.suffix != ".safetensors":
                raise ValueError(f"the model file must end in .safetensors, got {path}")
            check_output_path(path)
            check_training_output(path)
        except (ValueError, RuntimeError, OSError) as exc:
            self.job.refuse(f"Training: {exc}")
            return
        if not self.output_guard.allows(path):  # the checkpoints would replace it from the first epoch on
            self.job.status.value = f"Not trained: {path} exists and was kept"
            return
        self._history = []
        self.plot.clear()
        self.loss.value = ""
        self._run_limit_min = self.time_limit.value
        self._run_acquisition = self.state.acquisition
        self._cpu_note = ""
        if resolve_device(config.device).type == "cpu":  # no time left is known until the first steps are done
            hours = cpu_hours_estimate(config)
            estimate = (f"{patch_steps(config):,} patch steps, about {format_duration(3600 * hours)} at the "
                        f"{CPU_PATCHES_PER_S:g} patches/s of 2 CPU cores (a GPU takes minutes)")
            self._cpu_note = f"; on the CPU: {estimate}"
            if hours >= 1.0:  # (a tooltip said so; pressed with the defaults, 0 % for the first minutes: a review)
                show_warning(f"Training on the CPU: {estimate}; the time left shows after the first steps")
        self.job.start(_train_job, self.state.acquisition, config, path, self.relay.emit,
                       60.0 * self._run_limit_min or None, on_return=self._done, on_finish=self._run_ended,
                       on_closed=lambda: show_info(f"Training stopped when its widget was closed: the best model so "
                                                   f"far, once a step was trained, is saved to {path}"))

    def _progress(self, p: Progress) -> None:
        if p.stage == "data":
            self.job.report(0, 1, f"Training: simulating the training set ...{self._cpu_note}")
            return
        if p.stage == "time_limit":  # (the limit the run started with: the box may have changed since)
            self.job.status.value = (f"Training: the time limit of {self._run_limit_min:g} min is reached: "
                                     "stopping and keeping the best model so far")
            return
        total = p.epochs * max(p.steps, 1)
        done = (p.epoch - 1) * p.steps + p.step
        self.job.report(done, total, f"Training: epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}, "
                                     f"{p.elapsed_s:.0f} s{p.time_left()}")
        if p.stage == "epoch":
            self._history.append(p)
            stopped = f" (stopped at step {p.step}/{p.steps})" if p.stopped else ""  # its losses: of those steps
            self.loss.value = (f"epoch {p.epoch}{stopped}: train {p.loss:.4g}, validation {p.val_loss:.4g} "
                               f"(best {p.best_val_loss:.4g})")
            epochs = [h.epoch for h in self._history]
            self.plot.plot({"train": (epochs, [h.loss for h in self._history]),
                            "validation": (epochs, [h.val_loss for h in self._history])})
        elif math.isfinite(p.loss):
            self.loss.value = f"step loss {p.loss:.4g}"

    def _run_ended(self) -> None:
        self._run_acquisition = None
        self._describe_acquisition(self.state.acquisition)

    def _done(self, value) -> None:
        result, path = value
        if path is None:
            show_warning("Training cancelled before the first step: no model was saved")
            self.job.status.value = "Training cancelled: no model saved"
            return
        self.state.model_written(path)
        how = ("stopped at the time limit; the best model so far" if result.stopped_at_time_limit
               else "cancelled; the best model so far" if result.cancelled else "finished; the best model")
        text = (f"Training {how} (epoch {result.best_epoch}, {result.seconds:.0f} s on {result.device}) "
                f"was saved to {path} and is now the current model")
        trained_for = self._run_acquisition
        if trained_for != self.state.acquisition:  # edited during the run
            text += (f"; it was trained for {trained_for.describe()}, not for the acquisition set since "
                     f"({self.state.acquisition.describe()})")
        self.job.status.value = text
        (show_info if trained_for == self.state.acquisition else show_warning)(text)
