"""Dock widget 1: the acquisition settings shared by the other widgets."""

from __future__ import annotations

import math

import napari
from magicgui.widgets import FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning

from ..core.acquisition import Acquisition
from ..core.estimate import estimate_acquisition, sample_frames
from ..core.progress import counted
from .controls import DockPanel, float_box, stack_combo, status_style, wrapping_label
from .jobs import JobControls
from .layers import layer_scale_nm, stack_frame_count
from .reader import frame_source
from .state import state_for

_FIELDS = {  # widget name -> Acquisition field
    "pixel_size": "pixel_size_nm",
    "fwhm": "fwhm_nm",
    "upsampling": "upsampling",
    "offset": "offset_adu",
    "gain": "gain_adu_per_photon",
    "read_noise": "read_noise_adu",
}


def _estimate_job(frames_source, pixel_size_nm: float, sigma_guess_nm: float, cancel=None):
    frames = sample_frames(frames_source)  # a pixel budget: 100 frames of 64 x 64, fewer of larger ones
    return estimate_acquisition(frames, pixel_size_nm, sigma_guess_nm=sigma_guess_nm)


class AcquisitionWidget(DockPanel):
    """Pixel size, PSF, upsampling L and camera settings, shared by every widget of
    the viewer and remembered between sessions; estimates from an image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.pixel_size = FloatSpinBox(label="pixel size (nm)", min=1.0, max=100000.0, step=1.0,
                                       tooltip="a camera pixel in the sample plane (the sensor's pixel divided by the "
                                               "magnification), in nm")
        self.fwhm = FloatSpinBox(label="PSF FWHM (nm)", min=1.0, max=100000.0, step=1.0,
                                 tooltip="full width at half maximum of a molecule's image, in nm (about 0.51 x "
                                         "emission wavelength / NA; Estimate from stack measures it)")
        self.sigma = Label(label="PSF sigma")
        self.upsampling = SpinBox(label="upsampling L", min=1, max=16,
                                  tooltip="fine-grid pixels per camera pixel along each axis (the model's: 4)")
        self.offset = FloatSpinBox(label="camera offset (ADU)", min=0.0, max=1e6, step=1.0,
                                   tooltip="the counts a dark pixel reads, in ADU (for photon counts and the "
                                           "position fit)")
        self.gain = float_box("gain (ADU/photon)", 1.0, 0.0001, 1e4, decimals=4, step=0.1)
        self.gain.tooltip = "counts per detected photon (EMCCD: with the EM gain; sCMOS: often 0.2-2)"
        self.read_noise = FloatSpinBox(label="read noise (ADU)", min=0.0, max=1e6, step=0.1,
                                       tooltip="the camera's read noise, in ADU rms")
        self.status = wrapping_label(label="")
        self.layer = stack_combo(napari_viewer)
        self.job = JobControls("Estimate", "Estimate from stack", cancellable=False, show_progress=False)
        self.reset_button = PushButton(text="Reset to defaults")
        self.extend([self.pixel_size, self.fwhm, self.sigma, self.upsampling, self.offset, self.gain,
                     self.read_noise, self.status, self.layer, self.job, self.reset_button])
        self._show(self.state.acquisition)
        for name in _FIELDS:
            # a value applies when typed in full (Enter, or another field or widget clicked), not at
            # each key: typing 160 set a pixel size of 1 and 16 first, rescaling the stack each time
            getattr(self, name).native.setKeyboardTracking(False)
            getattr(self, name).changed.connect(self._edited)
        self.state.acquisition_changed.connect(self._show)
        self.job.run_button.changed.connect(self.estimate)
        self.job.clear_refusal_on_change(self)
        self.reset_button.changed.connect(self.reset)

    # ------------------------------------------------------------ settings
    def _show(self, acq: Acquisition) -> None:
        """Display ``acq`` without echoing the changes back to the state."""
        for name, field in _FIELDS.items():
            widget = getattr(self, name)
            with widget.changed.blocked():
                widget.value = getattr(acq, field)
        self._describe(acq)

    def _describe(self, acq: Acquisition) -> None:
        self.sigma.value = (f"{acq.sigma_nm:.1f} nm = {acq.sigma_px:.2f} camera px "
                            f"= {acq.sigma_fine_px:.2f} fine px")
        self.status.value = f"in use: {acq.describe()}"
        self.status.native.setStyleSheet("")

    def _edited(self, *_) -> None:
        values = {field: getattr(self, name).value for name, field in _FIELDS.items()}
        try:
            acq = Acquisition(**values)
        except (TypeError, ValueError) as exc:
            self.status.value = f"not applied: {exc}"
            self.status.native.setStyleSheet(status_style(self.viewer, "error"))
            return
        self.state.edit_acquisition(acq, self.layer.value)
        self._describe(acq)

    def reset(self, *_) -> None:
        """Back to the defaults (the ISBI 2013 acquisition); the stacks keep the pixel
        sizes of their files (a stack's is taken again when it is analysed)."""
        self.state.acquisition = Acquisition()
        self._show(self.state.acquisition)

    # ------------------------------------------------------------ estimate
    def estimate(self, *_) -> None:
        """Estimate PSF width, offset and noise from the chosen image layer (in a thread)."""
        if not self.job.idle():
            return
        layer = self.layer.value
        try:
            stack_frame_count(layer)  # no layer, RGB images, pyramids: refused, not read as frames
        except ValueError as exc:
            self.job.refuse(f"Estimate: {exc}")
            return
        self.state.adopt_pixel_size(layer)
        pixel = self.state.acquisition.pixel_size_nm
        shown_nm = layer_scale_nm(layer)  # None in pixel units: a scale of 1 is no 1 nm pixel
        if shown_nm is None or abs(shown_nm - pixel) > 1e-6 * pixel:
            show_info(f"Estimate: using the acquisition pixel size {pixel:g} nm for {layer.name}")
        self.job.start(_estimate_job, frame_source(layer.data), pixel, self.state.acquisition.sigma_nm,
                       on_return=lambda est: self._apply_estimate(est, layer.name))

    def _apply_estimate(self, est, name: str) -> None:
        """Apply the estimate (each valid value: :meth:`AcquisitionEstimate.applied_to`)
        and say what was estimated and, in a warning, what was not applied or is rough."""
        before = self.state.acquisition
        self.state.acquisition, problems = est.applied_to(before)
        text = (f"Estimated from {name!r}: baseline {est.baseline_adu:.1f} ADU, background noise "
                f"{est.noise_adu:.2f} ADU (offset and read noise include the background)")
        if math.isfinite(est.fwhm_nm):
            text += f", PSF FWHM {est.fwhm_nm:.1f} nm (autocorrelation of {counted(est.n_frames, 'frame')})"
        changed = [f"{label} {getattr(before, field):g} -> {getattr(self.state.acquisition, field):g}"
                   for label, field in (("PSF FWHM", "fwhm_nm"), ("camera offset", "offset_adu"),
                                        ("read noise", "read_noise_adu"))
                   if getattr(before, field) != getattr(self.state.acquisition, field)]
        if changed:  # (which fields it set went unsaid: a user typing the camera's own values could not tell)
            text += f"; set {', '.join(changed)}"
        if problems:
            text += "; " + "; ".join(problems)
        (show_warning if problems else show_info)(text)
        self.job.status.value = text
