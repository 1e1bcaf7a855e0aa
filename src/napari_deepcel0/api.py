"""What a script needs, from one module::

    from napari_deepcel0.api import DeepLocalizer, evaluate, localize, read_localizations, read_stack

The names live in :mod:`napari_deepcel0.core`'s modules (their docstrings say more; the
module of each is in the comments below); this module only gathers them, so that a
script or notebook need not know the code map (docs/python.md walks through them).
Importing it imports torch (the localizers and training); the file and scoring modules
alone (:mod:`.core.io`, :mod:`.core.metrics`) do not.
"""

from __future__ import annotations

# settings and units
from .core.acquisition import ISBI2013, Acquisition
# CEL0-IRL1
from .core.cel0 import Cel0Localizer, lambda_sweep
from .core.estimate import estimate_acquisition, sample_frames
# files: stacks, localization tables, images
from .core.localization_csv import LocalizationFileError, read_localizations
from .core.outputs import write_thunderstorm_csv, write_tiff
from .core.tiff_stack import FrameStack, StackError, read_stack
# scoring
from .core.metrics import (FrameCoverageWarning, Score, SmallToleranceWarning, evaluate, format_scores, match, score,
                           scores_table)
# models
from .core.model_io import LoadedModel, ModelFileError, bundled_model_path, load_model, save_training_result
# localizing
from .core.predict import (AcquisitionMismatchWarning, BatchResult, DeepLocalizer, NothingFoundWarning,
                           PixelSizeWarning, localize, localize_stream)
from .core.protocol import protocol_of_run, read_protocol, write_localizations
from .core.render import Renderer, render_histogram, save_render_png
# simulation and training
from .core.simulate import CameraNoise, GaussianSNRNoise, PhotonModel, simulate_stack
from .core.training import TrainingConfig, TrainingResult, train
from .core.training_data import TrainingDataConfig

__all__ = [
    "Acquisition", "ISBI2013",
    "Cel0Localizer", "lambda_sweep",
    "estimate_acquisition", "sample_frames",
    "FrameStack", "LocalizationFileError", "StackError", "read_stack", "read_localizations",
    "write_thunderstorm_csv", "write_tiff",
    "FrameCoverageWarning", "Score", "SmallToleranceWarning", "evaluate", "format_scores", "match", "score",
    "scores_table",
    "LoadedModel", "ModelFileError", "bundled_model_path", "load_model", "save_training_result",
    "AcquisitionMismatchWarning", "BatchResult", "DeepLocalizer", "NothingFoundWarning", "PixelSizeWarning",
    "localize", "localize_stream",
    "protocol_of_run", "read_protocol", "write_localizations",
    "Renderer", "render_histogram", "save_render_png",
    "CameraNoise", "GaussianSNRNoise", "PhotonModel", "simulate_stack",
    "TrainingConfig", "TrainingDataConfig", "TrainingResult", "train",
]
