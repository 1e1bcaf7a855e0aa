"""The bundled model on the real ISBI 2013 high-density stack (skipped without ../shared).

A regression guard, not the benchmark: docs/benchmarks.md has the full-stack numbers
(all 361 frames) and the command that measured them. The floors here sit well below
what the bundled model measures on these frames, and far above what a broken model,
a shifted coordinate convention or a wrong normalisation would score.
"""

import numpy as np
import pytest

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.io import read_localizations, read_stack
from napari_deepcel0.core.metrics import evaluate
from napari_deepcel0.core.predict import DeepLocalizer, localize

FRAMES = "1-12"


@pytest.fixture(scope="module")
def isbi_scores(isbi_dir):
    with read_stack(isbi_dir / "frames.tif") as stack:
        gt = read_localizations(isbi_dir / "ground_truth.csv")
        table = localize(DeepLocalizer(acquisition=ISBI2013, device="cpu"), stack, frames=FRAMES)
        gt = gt[gt["frame"] <= 12]
        return table, gt, dict(zip((50, 100, 250), evaluate(gt, table, (50.0, 100.0, 250.0), n_frames=12)))


def test_bundled_model_localizes_the_isbi_stack(isbi_scores):
    table, gt, scores = isbi_scores
    assert set(np.unique(table["frame"])) == set(range(1, 13))
    assert scores[50].jaccard > 45.0, scores[50]
    assert scores[250].jaccard > 55.0, scores[250]
    assert scores[50].rmse_nm < 30.0, scores[50]


def test_no_systematic_offset_against_isbi_truth(isbi_scores):
    """The pixel-centre convention: matched localizations are not shifted by half a
    camera pixel (50 nm) or a fine pixel (25 nm) in x or y."""
    _, _, scores = isbi_scores
    s = scores[100]
    assert abs(s.bias_x_nm) < 10.0 and abs(s.bias_y_nm) < 10.0, s


def test_orientation_averaging_places_isbi_molecules_better(isbi_dir, isbi_scores):
    """Averaging 8 orientations keeps the detections and lowers the RMSE (about 1 nm on
    the whole stack, docs/benchmarks.md); a wrong inverse transform would raise it."""
    table, gt, scores = isbi_scores
    with read_stack(isbi_dir / "frames.tif") as stack:
        model = DeepLocalizer(acquisition=ISBI2013, device="cpu", orientations=8)
        averaged = localize(model, stack, frames=FRAMES)
        assert len(averaged) == len(table)
        s50 = evaluate(gt, averaged, (50.0,), n_frames=12)[0]
        assert s50.rmse_nm < scores[50].rmse_nm - 0.3, (s50, scores[50])
        assert s50.jaccard > scores[50].jaccard - 0.5, (s50, scores[50])


def test_no_isbi_frame_holds_an_outlier(isbi_dir):
    """The outlier steps leave real crowded frames alone: no hot or dead pixel replaced, no
    dark region filled, no frame dimmed as if it held a bead, in any of the 361 frames."""
    from napari_deepcel0.core.frames import fix_outliers

    frames = read_stack(isbi_dir / "frames.tif")[:].astype(np.float32)
    fixed, replaced, dimmed, _ = fix_outliers(frames, ISBI2013.sigma_px)
    assert not replaced.any() and len(dimmed) == 0 and np.array_equal(fixed, frames)
