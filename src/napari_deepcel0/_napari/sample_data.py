"""Sample data: a simulated high-density tubulin-like stack and the paper's test scenes.

Each sample returns the camera frames (Image, nm scale) and the ground truth (Points),
using the ISBI 2013 acquisition (100 nm pixels, PSF FWHM 258.21 nm).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import simulate as sim
from ..core.acquisition import ISBI2013
from .layers import stack_transform
from .reader import contrast_limits, localization_layer_data


#: the size of the close pairs' ground-truth markers (nm), under their smallest spacing (25 nm)
CLOSE_PAIR_MARKER_NM = 10.0


def _stack_layer(frames: np.ndarray, name: str) -> tuple:
    data = np.clip(np.round(frames), 0, 65535).astype(np.uint16)
    # the first frame's range, as the reader sets it (napari's default, the stack's, drew the tubulin dim: a review)
    kwargs = {"name": name, "colormap": "gray", "metadata": {"pixel_size_nm": ISBI2013.pixel_size_nm},
              "contrast_limits": contrast_limits(data[0]), **stack_transform(ISBI2013.pixel_size_nm)}
    return (data, kwargs, "image")


def tubulin_high_density() -> list[tuple]:
    """50 frames of 64 x 64 camera pixels of emitters on microtubule-like filaments at
    about 5.5 emitters/um^2 (ISBI 2013 high-density conditions), with the ground truth."""
    frames, emitters = sim.simulate_stack(n_frames=50, shape=(64, 64), density_per_um2=5.5, structure="tubes",
                                          acq=ISBI2013, seed=1)
    return [_stack_layer(frames, "simulated tubulin HD"),
            localization_layer_data(emitters, "simulated tubulin HD ground truth")]


def paper_test_scenes() -> list[tuple]:
    """The paper's close-pair Tests 1a, 2a and 3a as frames 1, 2 and 3 of one stack of
    128 x 128 camera pixels: two molecules 25 nm apart, two 75 nm apart, and four on a
    circle of radius 125 nm, each at 2000 photons over 10 background photons/pixel."""
    scenes = []
    for frame, name in enumerate(sim.PAPER_SCENES, start=1):
        scene = sim.paper_test_scene(name)
        scenes.append(scene.assign(**{sim.FRAME: frame, sim.PHOTONS: 2000.0}))
    emitters = pd.concat(scenes, ignore_index=True)
    frames = sim.render_frames(emitters, ISBI2013, (128, 128), len(scenes),
                               sim.CameraNoise(background_photons=(10.0, 10.0), quantize=True), seed=0)
    coords, kwargs, kind = localization_layer_data(emitters, "paper tests 1a-3a ground truth")
    # markers of 10 nm: those of other layers (60 nm) drew the pair 25 nm apart as one blob (a review)
    return [_stack_layer(frames, "paper tests 1a-3a"), (coords, {**kwargs, "size": CLOSE_PAIR_MARKER_NM}, kind)]
