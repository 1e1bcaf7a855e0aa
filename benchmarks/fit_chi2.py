"""The position fit's robust reduced chi^2 (``photometry.fit_chi2``), with the camera
settings right and with the gain set too low: what the noise warning of a run with
photometry or the position fit rests on (threshold ``photometry.MAX_FIT_CHI2``).

    python benchmarks/fit_chi2.py

Simulated frames (64 x 64, 0.5 and 6 molecules/um^2) of a camera at 4 ADU/photon, offset
100, read noise 3 ADU, fitted from the true positions with the gain set to 4 and to 1; the
first 3 ISBI 2013 frames at gain 1 (the default) and 4 (the gain that matches their noise).
Prints the values per frame.
"""

from __future__ import annotations

import numpy as np
from common import require_isbi

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.photometry import fit_chi2


def per_frame(frames, truth, acq, n=3) -> list[float]:
    return [round(fit_chi2(frames[i], truth[truth["frame"] == i + 1]["x [nm]"],
                           truth[truth["frame"] == i + 1]["y [nm]"], acq), 2) for i in range(n)]


def main() -> None:
    camera = Acquisition(gain_adu_per_photon=4.0, offset_adu=100.0, read_noise_adu=3.0)
    for density in (0.5, 6.0):
        frames, truth = sim.simulate_stack(n_frames=3, shape=(64, 64), density_per_um2=density, acq=camera, seed=2)
        for gain in (4.0, 1.0):
            print(f"simulated, {density:g}/um^2, camera at 4 ADU/photon, gain set to {gain:g}: chi^2",
                  per_frame(frames, truth, camera.replace(gain_adu_per_photon=gain)))
    isbi = require_isbi()
    with read_stack(isbi / "frames.tif") as stack:
        frames = np.asarray(stack[0:3])
    truth = read_localizations(isbi / "ground_truth.csv")
    for gain in (1.0, 4.0):
        print(f"ISBI 2013 frames 1-3, gain set to {gain:g}: chi^2",
              per_frame(frames, truth, ISBI2013.replace(gain_adu_per_photon=gain)))


if __name__ == "__main__":
    main()
