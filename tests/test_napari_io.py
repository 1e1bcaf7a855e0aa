"""The plugin's manifest, readers, writer and sample data."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
from napari.utils.notifications import NotificationSeverity, notification_manager

from conftest import REPO, checkout_only

import napari_deepcel0
from napari_deepcel0._napari.layers import POINT_SIZE_NM, table_from_points
from napari_deepcel0._napari.reader import get_localization_reader, get_stack_reader
from napari_deepcel0._napari.sample_data import paper_test_scenes, tubulin_high_density
from napari_deepcel0._napari.writer import write_points
from napari_deepcel0.core.io import read_localizations, write_thunderstorm_csv, write_tiff

pytestmark = pytest.mark.qt

MANIFEST = Path(napari_deepcel0.__file__).parent / "napari.yaml"


@pytest.fixture(autouse=True)
def _private_settings(tmp_path, monkeypatch):
    """Keep the plugin's QSettings out of the user's configuration."""
    from qtpy.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))


def _table(n_frames: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = np.repeat(np.arange(1, n_frames + 1), 4)
    return pd.DataFrame({
        "frame": frames,
        "x [nm]": rng.uniform(0, 3200, len(frames)),
        "y [nm]": rng.uniform(0, 3200, len(frames)),
        "intensity [photon]": rng.uniform(500, 900, len(frames)),
    })


# ------------------------------------------------------------------ manifest
@checkout_only
def test_the_wheel_holds_the_model_the_manifest_and_the_entry_points(tmp_path):
    """What an installation from a wheel needs and the editable checkout hides: the
    bundled model and napari.yaml as package data, napari's manifest entry point and the
    deepcel0 command (a package-data rule lost would leave a plugin without its model)."""
    import shutil
    import zipfile

    setuptools = pytest.importorskip("setuptools")  # built without isolation: the venv's (torch brings it)
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"building needs setuptools >= 77 (pyproject.toml), this one is {setuptools.__version__}")
    source = tmp_path / "source"  # a copy: the build's build/ folder must not stay in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(REPO / name, source / name)
    (source / "src/napari_deepcel0/models/my_training.safetensors").write_bytes(b"stray")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    [wheel] = tmp_path.glob("napari_deepcel0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        model = archive.read("napari_deepcel0/models/deepcel0_isbi2013.safetensors")
    assert {"napari_deepcel0/napari.yaml", "napari_deepcel0/api.py", "napari_deepcel0/core/network.py"} <= names
    assert model == (REPO / "src/napari_deepcel0/models/deepcel0_isbi2013.safetensors").read_bytes()
    assert "napari-deepcel0 = napari_deepcel0:napari.yaml" in entry_points
    assert "deepcel0 = napari_deepcel0.cli:run" in entry_points
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)
    # only the bundled model: a stray file in models/ (a training's output) must not ship
    assert [n for n in names if n.startswith("napari_deepcel0/models/")] == \
        ["napari_deepcel0/models/deepcel0_isbi2013.safetensors"]


def test_manifest_is_valid_and_every_command_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-deepcel0"
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id
    assert len(manifest.contributions.widgets) == 6
    assert {s.key for s in manifest.contributions.sample_data} == {"tubulin_hd", "paper_scenes"}
    from napari_deepcel0._napari.reader import STACK_SUFFIXES

    stack_reader = next(r for r in manifest.contributions.readers if r.command.endswith("get_stack_reader"))
    assert sorted(stack_reader.filename_patterns) == sorted(f"*{suffix}" for suffix in STACK_SUFFIXES)


def test_npe2_validates_the_installed_plugin_with_imports():
    """What napari itself checks: the installed distribution's manifest (entry point
    ``napari.manifest``) is found, valid, and every python_name imports."""
    import subprocess
    import sys

    npe2 = Path(sys.executable).with_name("npe2")
    command = [str(npe2)] if npe2.exists() else [sys.executable, "-m", "npe2"]
    out = subprocess.run([*command, "validate", "napari-deepcel0", "--imports"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr).lower()


@checkout_only
def test_top_level_manifest_is_a_relative_link_to_the_package_manifest():
    """The checkout's napari.yaml points at the package's; compared by content with the
    imported package's too, which is another copy when the package is installed (tox)."""
    link = REPO / "napari.yaml"
    assert link.is_symlink()
    assert not Path(link.readlink()).is_absolute()
    assert link.resolve() == (REPO / "src" / "napari_deepcel0" / "napari.yaml").resolve()
    assert link.read_bytes() == MANIFEST.read_bytes()


# ------------------------------------------------------------------- readers
def test_opening_files_and_the_writer_do_not_import_torch():
    """Dropping a stack on napari ran this plugin's reader, whose module pulled in torch
    (1.6 s on a 2-core machine) for an empty table; reading and writing files need none."""
    code = "import sys, napari_deepcel0._napari.reader, napari_deepcel0._napari.writer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_stack_reader_gives_a_lazy_image_in_nm(tmp_path):
    frames = np.random.default_rng(1).integers(100, 400, size=(5, 12, 16)).astype(np.uint16)
    path = write_tiff(tmp_path / "stack.tif", frames, pixel_size_nm=160.0)
    reader = get_stack_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image"
    assert isinstance(data, da.Array)
    assert data.shape == (5, 12, 16)
    assert data.chunks[0] == (1, 1, 1, 1, 1)
    np.testing.assert_array_equal(np.asarray(data[2]), frames[2])
    np.testing.assert_array_equal(np.asarray(data[1:3, 4:6, 5]), frames[1:3, 4:6, 5])
    assert kwargs["scale"] == (1.0, 160.0, 160.0)
    assert kwargs["translate"] == (0.0, 80.0, 80.0)
    assert kwargs["metadata"]["pixel_size_nm"] == pytest.approx(160.0)


def test_stack_without_pixel_size_uses_the_acquisitions(tmp_path):
    from napari_deepcel0._napari.settings import save_value
    from napari_deepcel0.core.acquisition import Acquisition

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16))
    first = len(notification_manager.records)
    [(_, kwargs, _)] = get_stack_reader(str(path))(str(path))
    assert kwargs["scale"] == (1.0, 100.0, 100.0)  # the default acquisition
    assert kwargs["metadata"]["pixel_size_nm"] is None
    # said, as the command line says it (it was silent: a 160 nm stack then scored 0.6 %, a review)
    assert [str(n.message) for n in notification_manager.records[first:] if n.severity == "warning"] == [
        "plain.tif carries no pixel size: it is shown and analysed at the Acquisition widget's 100 nm (the last "
        "one set); if the camera's pixel differs, set it there"]
    # with 160 nm set (and saved) in the Acquisition widget, the stack is drawn where a CSV
    # of the same data puts its points (it was drawn at 100 nm until a run rescaled it)
    save_value("acquisition", Acquisition(pixel_size_nm=160.0).to_dict())
    [(_, kwargs, _)] = get_stack_reader(str(path))(str(path))
    assert kwargs["scale"] == (1.0, 160.0, 160.0) and kwargs["translate"] == (0.0, 80.0, 80.0)


def test_a_written_render_opens_as_a_render_and_leaves_the_acquisition_alone(make_napari_viewer, tmp_path):
    """Opening an exported 20 nm render set the acquisition's pixel size to 20 nm (and
    saved it), so the next run analysed the camera stack at 20 nm."""
    from napari_deepcel0._napari.controls import stack_combo
    from napari_deepcel0._napari.layers import OUTPUT
    from napari_deepcel0._napari.state import state_for

    viewer = make_napari_viewer()
    before = state_for(viewer).acquisition
    path = write_tiff(tmp_path / "render.tif", np.arange(30.0).reshape(5, 6), pixel_size_nm=20.0, output="render")
    [layer] = viewer.open(str(path), plugin="napari-deepcel0")
    assert layer.metadata[OUTPUT] == "render" and layer.ndim == 2
    assert layer.blending == "additive"  # as a run shows it (opaque, it hid every layer under it: a review)
    assert tuple(layer.scale) == (20.0, 20.0) and tuple(layer.translate) == (10.0, 10.0)
    np.testing.assert_array_equal(np.asarray(layer.data), np.arange(30.0).reshape(5, 6))
    assert state_for(viewer).acquisition == before
    assert layer not in stack_combo(viewer).choices


@pytest.mark.parametrize("first", ["one nan", "inf and -inf", "all inf", "constant 3e38"])
def test_a_stack_whose_first_frame_holds_nan_or_inf_opens(make_napari_viewer, tmp_path, first):
    """One NaN pixel in frame 1 (a registered stack's padding) gave contrast limits of
    (nan, nan): napari's layer controls raised and left a layer that could not be removed
    (review)."""
    frames = np.random.default_rng(0).uniform(100, 200, (3, 8, 8)).astype(np.float32)
    if first == "one nan":
        frames[0, 0, 0] = np.nan
    elif first == "inf and -inf":
        frames[0, 0, :2] = (np.inf, -np.inf)
    else:
        frames[0] = np.inf if first == "all inf" else 3e38
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(write_tiff(tmp_path / "s.tif", frames, pixel_size_nm=100.0)), plugin="napari-deepcel0")
    lo, hi = layer.contrast_limits
    assert np.isfinite([lo, hi]).all() and lo < hi
    if first == "one nan":
        assert (lo, hi) == (pytest.approx(np.nanmin(frames[0])), pytest.approx(np.nanmax(frames[0])))
    viewer.layers.remove(layer)
    assert len(viewer.layers) == 0


def test_csv_reader_converts_pixels_and_says_why_it_declines_a_localization_file(tmp_path):
    px = tmp_path / "px.csv"
    px.write_text('"frame","x [px]","y [px]"\n1,2.5,3.5\n')
    first = len(notification_manager.records)
    [(coords, _, _)] = get_localization_reader(str(px))(str(px))  # with the acquisition's 100 nm pixels
    np.testing.assert_allclose(coords, [[0.0, 350.0, 250.0]])
    said = [str(n.message) for n in notification_manager.records[first:]]
    assert said == ["px: x [px], y [px] converted from camera pixels with 100 nm per pixel (the Acquisition "
                    "settings); if the camera's differ, set them in the Acquisition widget and open the file again"]
    nm = tmp_path / "nm.csv"
    nm.write_text('"frame","x [nm]","y [nm]"\n1,2.5,3.5\n')
    first = len(notification_manager.records)
    get_localization_reader(str(nm))(str(nm))
    assert len(notification_manager.records) == first  # nothing to say
    semicolons = tmp_path / "excel.csv"
    semicolons.write_text('"frame";"x [nm]";"y [nm]"\n1;2;3\n')
    first = len(notification_manager.records)
    assert get_localization_reader(str(semicolons)) is None
    warnings = [str(n.message) for n in notification_manager.records[first:]]
    assert len(warnings) == 1 and "separated by ';'" in warnings[0]  # napari only said "refused the file"


def test_csv_reader_says_why_it_declines_naparis_own_csv_of_a_localization_layer(tmp_path):
    """File > Save's default for a Points layer is napari's own CSV (axis-0, axis-1, axis-2):
    this reader refused it with napari's "refused the file" alone (a review)."""
    import napari
    from napari_builtins.io import napari_write_points

    from napari_deepcel0._napari.reader import localization_layer_data

    data, kwargs, _ = localization_layer_data(_table(), "run")
    path = tmp_path / "napari_own.csv"
    napari_write_points(str(path), *napari.layers.Points(data, **kwargs).as_layer_data_tuple()[:2])
    assert path.read_text().splitlines()[0].startswith("index,axis-0,axis-1,axis-2,")
    first = len(notification_manager.records)
    assert get_localization_reader(str(path)) is None  # (napari's reader opens it)
    said = [str(n.message) for n in notification_manager.records[first:]]
    assert len(said) == 1 and said[0].startswith("napari_own.csv looks like napari's own CSV of Points")
    other = tmp_path / "other_points.csv"  # another plugin's or a user's points: not ours to explain
    other.write_text("index,axis-0,axis-1\n0,1.0,2.0\n")
    first = len(notification_manager.records)
    assert get_localization_reader(str(other)) is None and len(notification_manager.records) == first


def test_stack_reader_declines_what_it_cannot_read_and_says_why(tmp_path):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    good = write_tiff(tmp_path / "good.tif", np.zeros((2, 8, 8), np.uint16))
    first = len(notification_manager.records)
    assert get_stack_reader(str(rgb)) is None
    assert get_stack_reader(str(junk)) is None
    assert get_stack_reader(str(tmp_path / "missing.tif")) is None
    assert get_stack_reader(str(tmp_path / "table.csv")) is None
    assert get_stack_reader([str(good), str(rgb)]) is None
    assert get_stack_reader([str(good), str(good)]) is not None
    # the first frame's data damaged (overwritten): refused on opening, not with a traceback
    # when the layer is made
    compressed = tmp_path / "z.tif"
    tifffile.imwrite(compressed, np.ones((2, 32, 32), np.uint16), imagej=True, compression="zlib",
                     metadata={"axes": "TYX"})
    with tifffile.TiffFile(compressed) as tif:
        start, size = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    raw = bytearray(compressed.read_bytes())
    raw[start:start + size] = b"\xff" * size
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(bytes(raw))
    assert get_stack_reader(str(damaged)) is None
    # napari only says that no reader took the file: the reason is shown as a warning
    # for each existing TIFF (nothing for a missing file or a file of another type)
    warnings = [str(n.message) for n in notification_manager.records[first:]
                if n.severity == NotificationSeverity.WARNING]
    assert len(warnings) == 4
    assert f"{rgb}: RGB/multi-sample image" in warnings[0] and "single-channel" in warnings[0]
    assert f"{junk}: not a readable TIFF file" in warnings[1]
    assert "rgb.tif: RGB" in warnings[2]
    assert f"{damaged}: frame 1 cannot be read" in warnings[3] and "damaged or truncated" in warnings[3]


def test_csv_reader_gives_points_that_follow_the_frames(tmp_path):
    table = _table()
    path = write_thunderstorm_csv(tmp_path / "locs.csv", table)
    [(coords, kwargs, kind)] = get_localization_reader(str(path))(str(path))
    assert kind == "points"
    expected = np.column_stack([table["frame"] - 1, table["y [nm]"], table["x [nm]"]])
    np.testing.assert_allclose(coords, expected)
    np.testing.assert_allclose(kwargs["features"]["intensity [photon]"], table["intensity [photon]"])
    assert kwargs["size"] == POINT_SIZE_NM


def test_csv_reader_declines_other_csv_files(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    first = len(notification_manager.records)
    assert get_localization_reader(str(other)) is None
    assert get_localization_reader(str(binary)) is None
    assert get_localization_reader(str(tmp_path / "missing.csv")) is None
    assert get_localization_reader(str(tmp_path / "stack.tif")) is None
    # a table with a frame column but no x and y (a per-frame drift or intensity trace) is no localization file
    per_frame = tmp_path / "trace.csv"
    per_frame.write_text("frame,intensity\n1,2\n")
    assert get_localization_reader(str(per_frame)) is None
    assert len(notification_manager.records) == first  # other tools' files: left to them, quietly


def test_points_and_image_share_pixel_centres(make_napari_viewer, tmp_path):
    """A molecule at the centre of camera pixel (r, c) of frame f is drawn exactly on
    that pixel of the image (both in nm)."""
    pixel = 160.0
    stack = write_tiff(tmp_path / "s.tif", np.zeros((3, 10, 10), np.uint16), pixel_size_nm=pixel)
    r, c, f = 4, 7, 2
    table = pd.DataFrame({"frame": [f], "x [nm]": [(c + 0.5) * pixel], "y [nm]": [(r + 0.5) * pixel]})
    csv = write_thunderstorm_csv(tmp_path / "one.csv", table)
    viewer = make_napari_viewer()
    [image] = viewer.open(stack, plugin="napari-deepcel0")
    [points] = viewer.open(csv, plugin="napari-deepcel0")
    np.testing.assert_allclose(image.data_to_world([f - 1, r, c]), points.data_to_world(points.data[0]))


# -------------------------------------------------------------------- writer
def test_writer_round_trips_through_the_reader(tmp_path):
    table = _table()
    [(coords, kwargs, _)] = get_localization_reader(str(write_thunderstorm_csv(tmp_path / "in.csv", table)))(None)
    out = tmp_path / "out.csv"
    assert write_points(str(out), coords, {"features": kwargs["features"], "scale": (1, 1, 1),
                                           "translate": (0, 0, 0)}) == [str(out)]
    assert out.read_text().splitlines()[0] == '"id","frame","x [nm]","y [nm]","intensity [photon]"'
    back = read_localizations(out)
    pd.testing.assert_frame_equal(back[["frame", "x [nm]", "y [nm]", "intensity [photon]"]], table,
                                  check_dtype=False)


def test_a_csv_opened_with_its_protocol_keeps_it_when_saved_again(tmp_path):
    """Opening locs.csv takes locs-protocol.json along, so that a copy saved elsewhere
    (after deleting points, say) still says what made it; a file there that is no protocol
    is named in a warning and the localizations open without it."""
    import json

    from napari_deepcel0._napari.layers import FILE_COLOR, PROTOCOL
    from napari_deepcel0._napari.reader import RUN_COLORS
    from napari_deepcel0.core.acquisition import Acquisition
    from napari_deepcel0.core.protocol import localization_protocol, protocol_path, write_protocol

    csv = write_thunderstorm_csv(tmp_path / "locs.csv", _table())
    protocol = localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5}, [1, 2, 3], (8, 8), len(_table()))
    write_protocol(protocol_path(csv), protocol)
    [(coords, kwargs, _)] = get_localization_reader(str(csv))(None)
    assert kwargs["metadata"][PROTOCOL] == json.loads(json.dumps(protocol))
    # a saved run reopens as discs in its method's colour, not as a ground truth's rings
    assert (kwargs["face_color"], kwargs["symbol"]) == (RUN_COLORS["DeepCEL0"], "disc") != (FILE_COLOR, "ring")
    out = tmp_path / "fewer.csv"
    written = write_points(str(out), coords[1:], {"features": kwargs["features"].iloc[1:], "scale": (1, 1, 1),
                                                  "translate": (0, 0, 0), "metadata": kwargs["metadata"]})
    assert written == [str(out), str(tmp_path / "fewer-protocol.json")]
    again = json.loads((tmp_path / "fewer-protocol.json").read_text())
    assert again["results"] == {**protocol["results"], "localizations_saved": len(_table()) - 1}
    assert again["settings"] == {"threshold": 8.5} and again["input"]["frames"] == "1-3"
    # saved again without a protocol (a layer typed in), the old one beside it goes: it described another table
    assert write_points(str(out), coords[:1], {"features": kwargs["features"].iloc[:1], "scale": (1, 1, 1),
                                               "translate": (0, 0, 0)}) == [str(out)]
    assert not (tmp_path / "fewer-protocol.json").exists()
    # a protocol counting other than the CSV (written by hand, or by another program beside it) is not taken
    write_protocol(protocol_path(out), protocol)
    notification_manager.records.clear()
    [(_, kwargs_out, _)] = get_localization_reader(str(out))(None)
    assert PROTOCOL not in kwargs_out["metadata"]
    assert any("describes another table" in str(n.message) for n in notification_manager.records)
    assert (kwargs_out["face_color"], kwargs_out["symbol"]) == (FILE_COLOR, "ring")  # without it: a file's rings
    # a protocol whose results are not a dict does not stop the localizations being saved
    broken = {**protocol, "results": None}
    assert write_points(str(out), coords, {"features": kwargs["features"], "scale": (1, 1, 1),
                                           "translate": (0, 0, 0), "metadata": {PROTOCOL: broken}})[0] == str(out)
    assert json.loads(protocol_path(out).read_text())["results"] == {"localizations_saved": len(coords)}
    # a count typed as text ("2" for 2 rows) was told to count "2" localizations where the file holds 2
    write_protocol(protocol_path(out), {**protocol, "results": {"localizations": str(len(coords))}})
    notification_manager.records.clear()
    [(_, kwargs_out, _)] = get_localization_reader(str(out))(None)
    assert PROTOCOL not in kwargs_out["metadata"]
    assert any(f"gives no number of localizations (its count is '{len(coords)}')" in str(n.message)
               for n in notification_manager.records)
    protocol_path(csv).write_text("{broken")
    notification_manager.records.clear()
    [(_, kwargs, _)] = get_localization_reader(str(csv))(None)
    assert PROTOCOL not in kwargs["metadata"]
    assert any("locs-protocol.json: not JSON" in str(n.message) for n in notification_manager.records
               if n.severity == NotificationSeverity.WARNING)


def test_features_named_like_coordinates_are_not_written(tmp_path):
    # a feature "x" was written beside "x [nm]"; the file then read back with the feature as x
    coords = np.array([[0.0, 200.0, 100.0]])
    features = pd.DataFrame({"x": [7.0], "Frame": [3.0], "y [px]": [1.0], "photons": [50.0]})
    out = tmp_path / "f.csv"
    write_points(str(out), coords, {"features": features, "scale": (1, 1, 1), "translate": (0, 0, 0)})
    back = read_localizations(out)
    assert back[["frame", "x [nm]", "y [nm]", "photons"]].values.tolist() == [[1, 100.0, 200.0, 50.0]]


def test_features_the_csv_would_not_give_back_are_left_out_with_a_warning(tmp_path):
    """A layer with a feature 'sigma' (another plugin's, in pixels) was refused whole once
    the CSV writer refused tables it would not read back as written (diff review): the
    localizations are written, such features left out and named."""
    coords = np.array([[0.0, 200.0, 100.0], [1.0, 300.0, 400.0]])
    features = pd.DataFrame({"sigma": [1.5, 2.0], "sigma [px]": [1.0, 1.0], "xnano": [3.0, 4.0],
                             "ynano": [5.0, 6.0], "track_id": [1, 2]})
    out = tmp_path / "f.csv"
    with pytest.warns(UserWarning, match=r"blobs: the feature\(s\) 'sigma', 'sigma \[px\]', 'ynano' were left out "
                                         r"of f.csv.*'sigma' is read back as 'sigma \[nm\]'"):
        write_points(str(out), coords, {"name": "blobs", "features": features, "scale": (1, 1, 1),
                                        "translate": (0, 0, 0)})
    back = read_localizations(out)  # xnano alone is an extra column; with ynano it made an ISBI file
    assert back.columns.tolist() == ["frame", "x [nm]", "y [nm]", "xnano", "track_id"]
    assert back[["x [nm]", "track_id"]].values.tolist() == [[100.0, 1], [400.0, 2]]


def test_the_matching_layer_is_not_written_as_localizations(tmp_path):
    """Its TP, FP and FN (ground-truth positions) were saved together as 'localizations',
    without their labels (a review)."""
    from napari_deepcel0._napari.layers import OUTPUT

    out = tmp_path / "matched.csv"
    with pytest.raises(ValueError, match="'run matched' holds the Matching widget's labels"):
        write_points(str(out), np.array([[0.0, 200.0, 100.0]]), {
            "name": "'run matched'", "metadata": {OUTPUT: "match"}, "features": pd.DataFrame({"match": ["FN"]}),
            "scale": (1, 1, 1), "translate": (0, 0, 0)})
    assert not out.exists()


def test_writer_maps_layer_coordinates_to_nm(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_points(np.array([[0.0, 2.0, 3.0], [1.0, 5.0, 1.0]]), scale=(1, 100, 100),
                              translate=(0, 50, 50))
    [path] = layer.save(str(tmp_path / "drawn.csv"), plugin="napari-deepcel0")
    back = read_localizations(path)
    assert back["frame"].tolist() == [1, 2]
    np.testing.assert_allclose(back["y [nm]"], [250.0, 550.0])
    np.testing.assert_allclose(back["x [nm]"], [350.0, 150.0])


def test_two_dimensional_points_go_to_frame_one():
    table = table_from_points(np.array([[10.0, 20.0]]))
    assert table["frame"].tolist() == [1]
    assert table[["x [nm]", "y [nm]"]].to_numpy().tolist() == [[20.0, 10.0]]


# --------------------------------------------------------------- sample data
@pytest.mark.parametrize("sample, n_frames, shape", [(tubulin_high_density, 50, (64, 64)),
                                                      (paper_test_scenes, 3, (128, 128))])
def test_sample_data_has_frames_and_ground_truth(sample, n_frames, shape):
    [(frames, image_kwargs, image_kind), (coords, points_kwargs, points_kind)] = sample()
    assert (image_kind, points_kind) == ("image", "points")
    assert frames.shape == (n_frames,) + shape
    assert image_kwargs["scale"] == (1.0, 100.0, 100.0)
    # the first frame's range, as the reader (the stack's, napari's default, drew the tubulin dim: a review)
    assert image_kwargs["contrast_limits"] == (frames[0].min(), frames[0].max())
    assert set(np.unique(coords[:, 0])) <= set(range(n_frames))
    assert coords[:, 1:].min() >= 0 and coords[:, 1:].max() < 100.0 * shape[0]


def test_paper_scenes_are_the_close_pairs():
    [_, (coords, kwargs, _)] = paper_test_scenes()
    assert kwargs["size"] < 25.0  # markers smaller than the closest pair's spacing (60 nm drew one blob: a review)
    by_frame = [coords[coords[:, 0] == f, 1:] for f in range(3)]
    assert [len(p) for p in by_frame] == [2, 2, 4]
    assert np.linalg.norm(by_frame[0][0] - by_frame[0][1]) == pytest.approx(25.0)
    assert np.linalg.norm(by_frame[1][0] - by_frame[1][1]) == pytest.approx(75.0)
    centre = by_frame[2].mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(by_frame[2] - centre, axis=1), 125.0)


def test_fine_grid_maps_line_up_with_the_localizations():
    """Fine pixel (r, c) of the maps of 1-based frame f is drawn at the layer's world
    point (f - 1, fine_px_to_nm(r), fine_px_to_nm(c)), where a spike there is localized."""
    from napari_deepcel0._napari.layers import image_transform
    from napari_deepcel0.core.acquisition import Acquisition

    acq = Acquisition(pixel_size_nm=100.0, upsampling=4)
    t = image_transform(acq.fine_pixel_nm, first_frame=5)
    index = np.array([0.0, 3.0, 7.0])  # data coordinates (frame in batch, row, col)
    world = index * np.asarray(t["scale"]) + np.asarray(t["translate"])
    assert world[0] == 4.0  # frame 5 -> points axis value frame - 1
    np.testing.assert_allclose(world[1:], acq.fine_px_to_nm(index[1:]))


# ------------------------------------------------------------------ export widget: what goes into the TIFF
def _export_tiff(viewer, qtbot, layer, path):
    from napari_deepcel0._napari.export_widget import ExportWidget

    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = layer
    widget.tiff_path.value = path
    widget.save_tiff()
    qtbot.waitUntil(lambda: not widget.tiff_job.busy, timeout=20000)
    return widget.tiff_job.status.value


@pytest.mark.parametrize("n_frames", [3, 1])
def test_exported_maps_reopen_on_their_frames(make_napari_viewer, qtbot, tmp_path, n_frames):
    """Maps of frames 4-6 came back on frames 1-3, and the maps of one frame on every frame."""
    from napari_deepcel0._napari.layers import OUTPUT, image_transform

    viewer = make_napari_viewer()
    maps = np.random.default_rng(0).random((n_frames, 8, 12)).astype(np.float32)
    layer = viewer.add_image(maps, name="stk maps", metadata={OUTPUT: "maps"}, **image_transform(25.0, 4))
    status = _export_tiff(viewer, qtbot, layer, tmp_path / "maps.tif")
    assert "saved to" in status and "25 nm pixels" in status
    [back] = viewer.open(str(tmp_path / "maps.tif"), plugin="napari-deepcel0")
    assert back.ndim == 3 and tuple(back.translate) == tuple(layer.translate) == (3.0, 12.5, 12.5)
    np.testing.assert_array_equal(np.asarray(back.data), maps)


def test_tiff_export_of_a_pyramid_writes_its_full_resolution_level(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    full = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    layer = viewer.add_image([full, full[:, ::2, ::2]], multiscale=True, name="pyr", scale=(1, 100, 100),
                             units=("", "nm", "nm"))
    status = _export_tiff(viewer, qtbot, layer, tmp_path / "pyr.tif")
    assert "full-resolution level" in status and "100 nm pixels" in status
    written = tifffile.imread(tmp_path / "pyr.tif")
    np.testing.assert_array_equal(written, full)


def test_an_image_not_calibrated_in_nm_is_written_without_a_pixel_size(make_napari_viewer, qtbot, tmp_path):
    """napari's default scale of 1 was written as a 1 nm pixel."""
    from napari_deepcel0.core.io import read_stack

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((2, 8, 8), np.float32), name="plain")
    status = _export_tiff(viewer, qtbot, layer, tmp_path / "plain.tif")
    assert "no pixel size" in status and "1 nm" not in status
    assert read_stack(tmp_path / "plain.tif").pixel_size_nm is None


def test_export_paths_expand_the_home_folder_and_are_reported_in_full(make_napari_viewer, qtbot, tmp_path,
                                                                      monkeypatch):
    """A typed ``~/...`` failed ("folder ~ does not exist") and a relative name was
    reported without the folder it went to."""
    from qtpy.QtWidgets import QLineEdit

    from napari_deepcel0._napari.export_widget import ExportWidget

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    viewer = make_napari_viewer()
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.points.value = viewer.add_points(np.array([[0, 100, 100.0]]), name="p")
    for typed, written in (("~/sub/home.csv", tmp_path / "sub" / "home.csv"), ("relative", tmp_path / "relative.csv")):
        widget.csv_path.native.findChild(QLineEdit).setText(typed)  # as typed in the field
        widget.save_csv()
        qtbot.waitUntil(lambda: not widget.csv_job.busy, timeout=20000)
        assert written.is_file() and f"saved to {written}" in widget.csv_job.status.value


def test_runs_read_a_stack_layer_from_its_file_not_through_dask(tmp_path):
    """Reading 16 frames through the layer's dask array took 12 ms at 3,000 frames and
    99 ms at 100,000 (its graph grows with the stack; review): runs read the stack's
    frames directly, the same values, and without the file's pixel size, which the
    widgets have weighed against the layer's already."""
    from napari_deepcel0._napari.reader import frame_source
    from napari_deepcel0.core.frames import frame_count, read_frames

    data = np.arange(5 * 8 * 6, dtype=np.uint16).reshape(5, 8, 6)
    path = write_tiff(tmp_path / "s.tif", data, pixel_size_nm=160.0)
    [(layer_data, _, _)] = get_stack_reader(str(path))(str(path))
    frames = frame_source(layer_data)
    assert not isinstance(frames, da.Array) and frames.shape == (5, 8, 6) and frame_count(frames) == 5
    assert not hasattr(frames, "pixel_size_nm")
    for indices in (np.arange(5), np.array([1, 3])):
        np.testing.assert_array_equal(read_frames(frames, indices), np.asarray(layer_data[indices]))
    part = layer_data[1:3]  # any other array (here a slice of it) is read as it is
    assert frame_source(part) is part
