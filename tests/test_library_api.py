"""The library as a script uses it: mistakes a script makes (a tolerance in um, a slice of
a stack, arguments swapped, a path where a table or frames go, a model for other data)
get a warning or an error that names the fix, instead of a silent wrong answer or a
traceback from deep inside numpy (a review of the Python API, /tmp/review17)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.cel0 import lambda_sweep
from napari_deepcel0.core.io import write_thunderstorm_csv
from napari_deepcel0.core.metrics import (FrameCoverageWarning, SmallToleranceWarning, evaluate, match, score,
                                          scores_table)
from napari_deepcel0.core.model_io import load_model, save_training_result
from napari_deepcel0.core.predict import (AcquisitionMismatchWarning, DeepLocalizer, NothingFoundWarning, localize)
from napari_deepcel0.core.render import render_histogram, save_render_png


@pytest.fixture(scope="module")
def scene():
    frames, gt = sim.simulate_stack(n_frames=6, shape=(32, 32), density_per_um2=2.0, seed=4)
    return frames.astype(np.float32), gt


@pytest.fixture(scope="module")
def table(scene):
    frames, _ = scene
    return localize(DeepLocalizer(device="cpu"), frames)


def test_a_tolerance_in_um_warns_instead_of_scoring_zero_silently(scene, table):
    _, gt = scene
    with pytest.warns(SmallToleranceWarning, match=r"a tolerance of 0.05 nm .* \(in um\? 0.05 um is 50 nm\)"):
        scores = evaluate(gt, table, 0.05)
    assert scores[0].tp == 0  # scored as given: a warning, not a refusal
    frame = scores_table(evaluate(gt, table, [50.0, 100.0]))
    assert frame["tol_nm"].tolist() == [50.0, 100.0] and frame["jaccard"].is_monotonic_increasing
    assert frame.loc[0, "tp"] == score(gt, table, 50.0).tp and scores_table([]).columns.tolist()[0] == "tol_nm"
    with pytest.warns(SmallToleranceWarning):
        match(gt, table, 0.05)  # the guide's match() next to evaluate (it said nothing: a review)
    with pytest.warns(SmallToleranceWarning) as caught:
        score(gt, table, 0.0001)
    assert "(in nm?)" in str(caught[0].message) and caught[0].filename == __file__  # the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(gt, table, [1.0, 50.0])  # 1 nm and more: no warning
    with pytest.warns(SmallToleranceWarning), pytest.raises(ValueError):  # warned before any solve
        lambda_sweep(scene[0], gt, Acquisition(), tol_nm=0.05, lams=[1e-3], max_outer=0)


def test_scoring_the_frames_of_a_slice_of_the_stack_names_the_renumbering(scene):
    frames, gt = scene
    model = DeepLocalizer(device="cpu")
    part = localize(model, frames[3:6])  # numbered 1-3, not 4-6
    assert part["frame"].max() <= 3
    message = r"numbered from frame 4, not 1, the localizations score \d+\.\d % at 50 nm instead of 0\.0 %: .* a slice"
    with pytest.warns(FrameCoverageWarning, match=message):
        assert evaluate(gt, part, 50.0, frames="4-6")[0].tp == 0
    overlap = localize(model, frames[2:6])  # frames 3-6 numbered 1-4, scored over 3-6: 0.8 % for 77 % (a review)
    with pytest.warns(FrameCoverageWarning, match=r"numbered from frame 3, not 1"):
        evaluate(gt, overlap, 50.0, frames="3-6")
    sparse = part[part["frame"] == 2]  # a slice of sparse frames: localizations in one of its 3 frames (a review)
    with pytest.warns(FrameCoverageWarning, match=r"numbered from frame 4, not 1"):
        evaluate(gt, sparse, 50.0, frames="4-6")
    right = localize(model, frames, frames="4-6")  # the stack's numbers kept
    legit = localize(model, frames, frames="1-2")  # localizations of other frames than those scored
    whole = localize(model, frames)
    dark_end = whole[whole["frame"] <= 3]  # a whole stack whose last frames found nothing (a review)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrameCoverageWarning)
        assert evaluate(gt, right, 50.0, frames="4-6")[0].jaccard > 30
        assert evaluate(gt, pd.concat([legit, right]), 50.0, frames="5")[0].jaccard > 30
        evaluate(gt, whole, 50.0, frames="2-3")
        evaluate(gt[gt["frame"] <= 3], dark_end, 50.0, frames="2-4")


def test_a_path_or_an_array_where_a_table_goes_is_named(scene, table, tmp_path):
    _, gt = scene
    csv = write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    with pytest.raises(TypeError, match=r"the ground truth must be a table .* got PosixPath: read the file with "
                                        r"read_localizations\("):
        evaluate(csv, table, 50.0)
    with pytest.raises(TypeError, match="the estimate must be a table .* got ndarray$"):
        score(gt, table.to_numpy(), 50.0)
    with pytest.raises(TypeError, match="positional argument"):  # tolerances go in one list, grid is keyword-only
        evaluate(gt, table, 50.0, 100.0)
    with pytest.raises(ValueError, match=r"grid must be \(fine pixel in nm, \(rows, cols\)\)"):
        evaluate(gt, table, 50.0, grid=25.0)
    with pytest.raises(TypeError, match=r"the ground truth must be a table"):  # frames and ground truth swapped
        lambda_sweep(gt, scene[0], Acquisition())
    with pytest.raises(TypeError, match=r"write_thunderstorm_csv takes the path, then the table"):
        write_thunderstorm_csv(table, tmp_path / "swapped.csv")
    assert not (tmp_path / "swapped.csv").exists()


def test_localize_names_swapped_arguments_and_paths(scene, tmp_path):
    frames, _ = scene
    model = DeepLocalizer(device="cpu")
    with pytest.raises(TypeError, match=r"the localizer comes first, then the frames: .* got ndarray"):
        localize(frames, model)
    with pytest.raises(TypeError, match=r"got the path '.*frames.tif': open it with read_stack\("):
        localize(model, str(tmp_path / "frames.tif"))
    with pytest.raises(TypeError, match="open it with read_stack"):
        localize(model, tmp_path / "frames.tif")


def test_a_run_that_finds_nothing_warns_with_its_threshold(scene):
    frames, _ = scene
    model = DeepLocalizer(device="cpu")
    with pytest.warns(NothingFoundWarning, match=r"no molecule was found in 2 frames above the threshold of 1e\+06 "
                                                 r"\(in the maps' units; the localizer's default is 8\.\d+\)"):
        empty = localize(model, frames, frames="1-2", threshold=1e6)
    assert len(empty) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingFoundWarning)
        batches = []  # cancelled after its first batch, before the second (a cancel before any batch
        localize(model, frames, threshold=1e6, batch_size=2,  # returns before the check: a review)
                 progress=batches.append, cancel=lambda: len(batches) > 0)
        assert len(batches) == 1


def test_a_model_for_other_data_warns_with_its_own_class_and_can_be_made_an_error(tiny_model_path):
    other = Acquisition(pixel_size_nm=160, fwhm_nm=300)
    with pytest.warns(AcquisitionMismatchWarning, match=r"PSF FWHM: model 2.58 camera pixels .* finds fewer and "
                                                        r"places them worse"):
        DeepLocalizer(tiny_model_path, acquisition=other, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AcquisitionMismatchWarning)
        with pytest.raises(AcquisitionMismatchWarning):
            DeepLocalizer(tiny_model_path, acquisition=other, device="cpu")


def test_a_model_just_trained_localizes_without_a_file(tmp_path, scene):
    """DeepLocalizer(train(...)) was a TypeError: the model had to be saved and loaded."""
    from napari_deepcel0.core.training import TrainingConfig, train
    from napari_deepcel0.core.training_data import TrainingDataConfig

    result = train(Acquisition(), TrainingConfig(
        epochs=1, max_steps_per_epoch=2, batch_size=4, device="cpu", precision="fp32",
        data=TrainingDataConfig(n_patches=16, n_frames=2, frame_size=32, patch_size=16)))
    in_memory = DeepLocalizer(result, device="cpu", precision="fp32")
    saved = DeepLocalizer(load_model(save_training_result(tmp_path / "m.safetensors", result)), device="cpu",
                          precision="fp32")
    assert in_memory.info.created == "" and saved.info.created  # (the time its file was written)
    in_memory.info.created = saved.info.created
    assert in_memory.info.to_json() == saved.info.to_json()
    frames = scene[0][:2]
    np.testing.assert_array_equal(in_memory.maps(frames)[0].numpy(), saved.maps(frames)[0].numpy())


def test_render_and_png_refuse_what_they_cannot_write(table, tmp_path, scene):
    field = Acquisition().field_nm((32, 32))
    with pytest.raises(ValueError, match=r"\.png; for a TIFF .* write_tiff\(path, image, pixel_size_nm=..., "
                                         r"output='render'\)"):
        save_render_png(tmp_path / "render.tif", render_histogram(table, field))
    assert not (tmp_path / "render.tif").exists()
    with pytest.raises(TypeError, match="takes the path first, then the image"):
        save_render_png(np.zeros((4, 4)), tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"a rendering is a 2-D image \(rows, cols\), got .* \(2, 4, 4\)"):
        save_render_png(tmp_path / "r.png", np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="a rendering takes a localization table .* got ndarray"):
        render_histogram(scene[0], field)  # the frames given for the localizations
    with pytest.raises(ValueError, match=r"the rendered field must be \(height, width\) in nm, e.g. "
                                         r"acquisition.field_nm\(frame_shape\)"):
        render_histogram(table, (6, 32, 32))  # frames.shape given for the field
    with pytest.warns(UserWarning, match="lie outside the rendered field") as caught:
        render_histogram(table, (100.0, 100.0))
    assert caught[0].filename == __file__
    wide = pd.DataFrame({"x [nm]": [10.0], "y [nm]": [10.0]})
    assert render_histogram(wide, field, 10.0).sum() == 1
    assert render_histogram(wide, field, np.array(10.0)).sum() == 1  # a 0-d array is a number (refused: a review)


def test_the_protocol_names_the_weights_that_were_loaded_not_the_file_replaced_since(scene, tmp_path, monkeypatch):
    """The model file was hashed when the protocol was written, after the run: a file
    replaced meanwhile (a training into it, in another terminal) gave the protocol the new
    file's SHA-256 beside the old weights' summary (a review)."""
    import hashlib
    import shutil

    from napari_deepcel0 import cli
    from napari_deepcel0.core import predict
    from napari_deepcel0.core.io import write_tiff
    from napari_deepcel0.core.model_io import bundled_model_path
    from napari_deepcel0.core.protocol import protocol_of_run, read_protocol

    frames, _ = scene
    mine = shutil.copy(bundled_model_path(), tmp_path / "mine.safetensors")
    loaded_sha = hashlib.sha256(mine.read_bytes()).hexdigest()
    model = DeepLocalizer(mine, device="cpu")
    assert model.loaded.sha256 == loaded_sha
    table = localize(model, frames, frames="1")
    mine.write_bytes(mine.read_bytes() + b" ")  # replaced during the run
    assert protocol_of_run(model, frames, table, frames="1")["model"]["sha256"] == loaded_sha
    # the command line: hashed as the model is loaded, whatever happens to the file during the run
    stack = write_tiff(tmp_path / "s.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    shutil.copy(bundled_model_path(), mine)
    real_localize = predict.localize

    def replacing(*args, **kwargs):
        mine.write_bytes(b"replaced")  # once the model is loaded, before any frame
        return real_localize(*args, **kwargs)

    monkeypatch.setattr(predict, "localize", replacing)
    assert cli.main(["localize", str(stack), "--out", str(tmp_path / "l.csv"), "--model", str(mine),
                     "--frames", "1", "--device", "cpu"]) == 0
    assert read_protocol(tmp_path / "l.csv")["model"]["sha256"] == loaded_sha


def test_a_script_run_gets_its_protocol_and_a_model_not_saved_is_not_the_bundled_one(scene, tmp_path):
    """A script had to assemble a protocol from localization_protocol and model_record,
    and the record of a model trained in the script (no file) named the bundled model's
    file and SHA-256 with bundled: true (Python guide review)."""
    from napari_deepcel0.core.cel0 import Cel0Localizer
    from napari_deepcel0.core.io import read_localizations, read_stack, write_tiff
    from napari_deepcel0.core.model_io import bundled_model_path
    from napari_deepcel0.core.protocol import protocol_of_run, read_protocol, write_localizations

    frames, _ = scene
    path = write_tiff(tmp_path / "s.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    with read_stack(path) as stack:
        model = DeepLocalizer(device="cpu")
        table = localize(model, stack, frames="2-4")
        protocol = protocol_of_run(model, stack, table, frames="2-4", seconds=1.5)
    write_localizations(tmp_path / "locs.csv", table, protocol)
    back = read_protocol(tmp_path / "locs.csv")
    assert back["method"] == "DeepCEL0" and back["model"]["bundled"] is True and len(back["model"]["sha256"]) == 64
    assert back["input"] == {"stack": str(path.resolve()), "frames": "2-4", "n_frames": 3, "frame_shape": [32, 32]}
    assert back["settings"]["threshold"] == model.default_threshold() and back["settings"]["threshold_is_default"]
    assert back["settings"]["scaling_tile_px"] == 64 and back["settings"]["range_floor_sd"] == 18.0
    assert back["results"] == {"localizations": len(read_localizations(tmp_path / "locs.csv")), "seconds": 1.5}
    unsaved = DeepLocalizer(load_model(bundled_model_path()), device="cpu")
    unsaved.loaded.path = None  # as LoadedModel.from_training_result leaves it
    record = protocol_of_run(unsaved, frames, table)["model"]
    assert record["file"] is None and record["bundled"] is False and record["sha256"] is None
    cel0 = Cel0Localizer(Acquisition(), lam=2e-3)
    p = protocol_of_run(cel0, frames, localize(cel0, frames, frames="1"), frames="1", threshold=0.1)
    assert p["method"] == "CEL0-IRL1" and p["settings"]["lambda"] == 2e-3 and p["input"]["stack"] is None
    assert p["settings"]["threshold"] == 0.1 and not p["settings"]["threshold_is_default"] and "model" not in p
    fitted = protocol_of_run(model, frames, table, frames="2-4", fit_positions=True, fix_outlier_pixels=False)
    assert {k: fitted["settings"][k] for k in ("read_out", "photometry", "fit_positions", "fix_outlier_pixels")} == {
        "read_out": "peaks", "photometry": False, "fit_positions": True, "fix_outlier_pixels": False}
    with pytest.raises(TypeError):  # keyword-only: an old positional seconds= went to another setting (a review)
        protocol_of_run(model, frames, table, "2-4", None, 12.5)
    with pytest.raises(ValueError, match=r"frames the selection '3' does not \(2,4\): give protocol_of_run the "
                                         r"frames= of the localize call"):
        protocol_of_run(model, frames, table, frames="3")


def test_the_api_modules_all_lists_every_name_it_gathers():
    """A01 (api.py, a name such as ``scores_table`` left out of ``__all__``): ``from
    napari_deepcel0.api import *`` then lacked a name that docs/python.md uses, and
    nothing said so (found missing by mutation testing, 2026-11-29). The same for
    core.io, the module of the file names (I01)."""
    from napari_deepcel0 import api
    from napari_deepcel0.core import io

    for module in (api, io):
        gathered = {name for name, value in vars(module).items()
                    if not name.startswith("_") and not isinstance(value, type(api)) and name != "annotations"}
        assert sorted(module.__all__) == sorted(gathered), module.__name__
