"""Shared fixtures. Tests generate their own data; the ISBI 2013 benchmark in
../shared/data is used only by tests that skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: the ISBI 2013 stack beside the checkout, or where DEEPCEL0_ISBI_DIR says (as the benchmarks)
SHARED_DATA = Path(os.environ.get("DEEPCEL0_ISBI_DIR") or REPO.parent / "shared" / "data" / "isbi2013-bundled-tubes-hd")
#: tests of the repository's own files (CI script, setup script, the top-level manifest
#: link), which a source distribution does not carry
checkout_only = pytest.mark.skipif(not (REPO / ".ci" / "run").exists(), reason="needs the git checkout")

torch.set_num_threads(min(2, torch.get_num_threads()))


def loc_table(frames, xs, ys) -> pd.DataFrame:
    """A localization table (frame, x [nm], y [nm]) from lists; a plain function, to import
    (``from conftest import loc_table``), as the matching and CSV tests build many."""
    return pd.DataFrame({"frame": frames, "x [nm]": np.asarray(xs, float), "y [nm]": np.asarray(ys, float)})


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The ISBI 2013 high-density stack and ground truth; skips when absent."""
    if not (SHARED_DATA / "frames.tif").is_file() or not (SHARED_DATA / "ground_truth.csv").is_file():
        pytest.skip(f"ISBI 2013 data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A real DeepCEL0 model trained for a few steps on a tiny simulated set."""
    from napari_deepcel0.core.acquisition import Acquisition
    from napari_deepcel0.core.model_io import save_training_result
    from napari_deepcel0.core.training import TrainingConfig, train
    from napari_deepcel0.core.training_data import TrainingDataConfig

    config = TrainingConfig(
        epochs=1, max_steps_per_epoch=2, batch_size=4, device="cpu", precision="fp32",
        data=TrainingDataConfig(n_patches=32, n_frames=4, frame_size=32, patch_size=16),
    )
    result = train(Acquisition(), config)
    return save_training_result(tmp_path_factory.mktemp("model") / "tiny.safetensors", result)


def write_edited_model(source, out, edit, indent=None):
    """A copy at ``out`` of the model file ``source`` whose metadata JSON ``edit(d)``
    changed in place, the checksums kept as the file was written (a hand edit); ``indent``
    spaces the JSON otherwise. Returns ``out``."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from napari_deepcel0.core.model_io import METADATA_KEY

    with safe_open(str(source), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    d = json.loads(meta[METADATA_KEY])
    edit(d)
    save_file(tensors, str(out), metadata={**meta, METADATA_KEY: json.dumps(d, indent=indent)})
    return out
