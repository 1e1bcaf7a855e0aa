import codecs
import errno
import os
import re
import shutil
import warnings

from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import loc_table
from napari_deepcel0.core import io, outputs


def _table(n=5):
    return pd.DataFrame({
        "frame": np.arange(1, n + 1),
        "x [nm]": np.linspace(10, 500, n),
        "y [nm]": np.linspace(20, 900, n),
        "intensity [photon]": np.linspace(100, 200, n),
        "confidence": np.linspace(0.5, 1.5, n),
    })


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_read_stack_dtypes(tmp_path, dtype):
    data = (np.arange(3 * 5 * 7) % 200).reshape(3, 5, 7).astype(dtype)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    with io.read_stack(tmp_path / "s.tif") as stack:
        assert stack.shape == (3, 5, 7) and len(stack) == 3
        assert stack[1].dtype == np.float32
        assert np.array_equal(stack[1], data[1].astype(np.float32))
        assert np.array_equal(stack[0:2], data[0:2].astype(np.float32))
        assert np.array_equal(stack[[2, 0]], data[[2, 0]].astype(np.float32))


def test_single_frame_and_compressed_stack(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", np.ones((8, 9), np.uint16))
    with io.read_stack(tmp_path / "one.tif") as one:
        assert one.shape == (1, 8, 9)
    data = np.random.default_rng(0).integers(0, 1000, (4, 6, 6)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib", photometric="minisblack")
    with io.read_stack(tmp_path / "z.tif") as stack:
        assert stack._memmap is None  # compressed: read page by page, not memory-mapped
        assert np.array_equal(stack[3], data[3])


def test_stack_is_memory_mapped_not_loaded(tmp_path):
    data = np.zeros((50, 64, 64), np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", data, imagej=True)
    with io.read_stack(tmp_path / "big.tif") as stack:
        assert isinstance(stack._memmap, np.memmap)


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (np.zeros((4, 4, 3), np.uint8), dict(photometric="rgb"), "RGB"),
        (np.zeros((3, 8, 8), np.uint16), {}, "photometric='minisblack'"),  # 3 frames, stored as RGB by tifffile
        (np.zeros((2, 3, 4, 5), np.uint16), dict(metadata={"axes": "TZYX"}), "4-D"),
    ],
)
def test_rejects_rgb_and_4d(tmp_path, data, kwargs, message):
    p = tmp_path / "bad.tif"
    tifffile.imwrite(p, data, **kwargs)
    with pytest.raises(io.StackError, match=message) as err:
        io.read_stack(p)
    assert "bad.tif" in str(err.value)


def test_rejects_junk_and_missing(tmp_path):
    p = tmp_path / "junk.tif"
    p.write_bytes(b"not a tiff at all")
    with pytest.raises(io.StackError, match="junk.tif"):
        io.read_stack(p)
    with pytest.raises(io.StackError, match="no such file"):
        io.read_stack(tmp_path / "missing.tif")
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(io.StackError, match="empty.tif"):
        io.read_stack(empty)


def test_pixel_size_from_imagej_and_ome(tmp_path):
    data = np.zeros((2, 8, 8), np.uint16)
    io.write_tiff(tmp_path / "ij.tif", data, pixel_size_nm=107.0)
    tifffile.imwrite(tmp_path / "ome.ome.tif", data, metadata={"axes": "TYX", "PhysicalSizeX": 0.16,
                                                                "PhysicalSizeXUnit": "µm"})
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "a.ome.tif", data, metadata={"axes": "TYX", "PhysicalSizeX": 1300,  # (Å: "nan nm")
                                                             "PhysicalSizeXUnit": "\u00c5"})
    for name, expected in (("ij.tif", pytest.approx(107.0)), ("ome.ome.tif", pytest.approx(160.0)),
                           ("plain.tif", None), ("a.ome.tif", pytest.approx(130.0))):
        with io.read_stack(tmp_path / name) as stack:
            assert stack.pixel_size_nm == expected


@pytest.mark.parametrize("unit, size, expected_nm", [
    ("km", 1e-10, 100.0), ("Mm", 1.6e-13, 160.0), ("dm", 1.07e-6, 107.0), ("\u212b", 1000, 100.0),
    ("thou", 0.004, 101.6), ("mm", 1e-4, 100.0),
    ("km", 1e-6, None), ("in", 1 / 72, None), ("ym", 1e12, None),  # 1 mm, 1/72 inch, 1e-3 nm: no camera pixels
])
def test_every_ome_length_unit_is_read(tmp_path, unit, size, expected_nm):
    """OME's UnitsLength allows any SI-prefixed metre and a few inch-based units; a size in
    km was ignored as "a unit this reader does not know" (bad-input review): it is read,
    or refused as no camera pixel with the size in nm."""
    path = tmp_path / "units.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), metadata={
        "axes": "TYX", "PhysicalSizeX": size, "PhysicalSizeXUnit": unit, "PhysicalSizeY": size,
        "PhysicalSizeYUnit": unit})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with io.read_stack(path) as stack:
            assert stack.pixel_size_nm == (None if expected_nm is None else pytest.approx(expected_nm))
    said = [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]  # (other tests')
    assert not any("does not know" in m for m in said)
    assert len(said) == (expected_nm is None)
    if expected_nm is None:
        assert "which is no camera pixel in the sample (1-100,000 nm" in said[0]


@pytest.mark.parametrize("unit", ["pixel", "reference frame"])
def test_ome_uncalibrated_units_give_no_pixel_size_and_no_warning(tmp_path, unit):
    """OME's UnitsLength has two units that are no length: "pixel" and "reference frame"
    (the latter was warned as a unit this reader does not know)."""
    path = tmp_path / "uncalibrated.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), metadata={
        "axes": "TYX", "PhysicalSizeX": 1, "PhysicalSizeXUnit": unit, "PhysicalSizeY": 1, "PhysicalSizeYUnit": unit})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with io.read_stack(path) as stack:
            assert stack.pixel_size_nm is None and stack.shape == (2, 8, 8)


def test_a_pixel_size_no_camera_has_is_ignored_with_a_warning_naming_it(tmp_path):
    """1 mm or 0 nm pixels in the metadata were dropped in silence: "carries no pixel
    size" hid a unit mistake (bad-input review)."""
    data = np.zeros((2, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "mm.tif", data, imagej=True, resolution=(1e-3, 1e-3),
                     metadata={"unit": "um", "axes": "TYX"})
    tifffile.imwrite(tmp_path / "zero.ome.tif", data, metadata={"axes": "TYX", "PhysicalSizeX": 0, "PhysicalSizeY": 0})
    for name, stated in (("mm.tif", "1e\\+06"), ("zero.ome.tif", "0")):
        with pytest.warns(UserWarning, match=f"{name}: its metadata states a pixel size of {stated} nm, which is no "
                                             "camera pixel") as caught:
            with io.read_stack(tmp_path / name) as stack:
                assert stack.pixel_size_nm is None
        assert len([w for w in caught if "metadata states" in str(w.message)]) == 1


def test_non_square_pixels_warn_that_the_width_is_used(tmp_path):
    """Pixels of 100 x 120 nm in the metadata were read as 100 nm square without a word
    (y positions 17 % off)."""
    data = np.zeros((2, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.1, 1 / 0.12),
                     metadata={"unit": "um", "axes": "TYX"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", data, metadata={
        "axes": "TYX", "PhysicalSizeX": 0.1, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 120, "PhysicalSizeYUnit": "nm"})
    tifffile.imwrite(tmp_path / "tags.tif", data, photometric="minisblack", resolution=(1 / 0.1, 1 / 0.12),
                     resolutionunit="MICROMETER")
    for name in ("ij.tif", "ome.ome.tif", "tags.tif"):
        with pytest.warns(io.PixelShapeWarning, match=r"100 nm wide and 120 nm high; square pixels are assumed, "
                                                       r"100 nm \(the width\)"):
            with io.read_stack(tmp_path / name) as stack:
                assert stack.pixel_size_nm == pytest.approx(100.0)
    io.write_tiff(tmp_path / "square.tif", data, pixel_size_nm=107.0)
    # an OME width alone is square pixels, whatever the resolution tags say (diff review)
    tifffile.imwrite(tmp_path / "width.ome.tif", data, resolution=(1 / 0.1, 1 / 0.12), resolutionunit="MICROMETER",
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.1, "PhysicalSizeXUnit": "µm"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.read_stack(tmp_path / "square.tif").close()
        with io.read_stack(tmp_path / "width.ome.tif") as stack:
            assert stack.pixel_size_nm == pytest.approx(100.0)


def test_thunderstorm_csv_exact_header_and_round_trip(tmp_path):
    t = _table()
    path = io.write_thunderstorm_csv(tmp_path / "locs.csv", t)
    lines = path.read_text().splitlines()
    assert lines[0] == '"id","frame","x [nm]","y [nm]","intensity [photon]","confidence"'
    assert lines[1].startswith("1,1,10,20,")
    back = io.read_localizations(path)
    assert list(back.columns[:3]) == ["frame", "x [nm]", "y [nm]"]
    assert np.allclose(back[["x [nm]", "y [nm]", "intensity [photon]", "confidence"]], t[["x [nm]", "y [nm]", "intensity [photon]", "confidence"]])
    assert (back["frame"] == t["frame"]).all()
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)


def test_csv_positions_keep_ten_significant_digits(tmp_path):
    """Positions far from the origin keep sub-nm digits: written to 6 significant digits,
    123456.789 nm came back as 123457 nm (mutation testing: only the demo's test saw it)."""
    t = pd.DataFrame({"frame": [1, 2], "x [nm]": [123456.789, 0.000123456789], "y [nm]": [98765.4321, 5.0]})
    back = io.read_localizations(io.write_thunderstorm_csv(tmp_path / "p.csv", t))
    np.testing.assert_allclose(back[["x [nm]", "y [nm]"]].to_numpy(), t[["x [nm]", "y [nm]"]].to_numpy(), rtol=1e-9)


def test_csv_special_values_and_bad_frames(tmp_path):
    t = _table(3)
    t["uncertainty [nm]"] = [np.nan, np.inf, 1.0]
    text = io.write_thunderstorm_csv(tmp_path / "a.csv", t).read_text()
    assert "NaN" in text and "Infinity" in text
    t.loc[0, "frame"] = 0
    with pytest.raises(ValueError, match="1-based"):
        io.write_thunderstorm_csv(tmp_path / "b.csv", t)
    assert not (tmp_path / "b.csv").exists()
    t["frame"] = t["frame"].astype(np.float64)
    t.loc[0, "frame"] = 1e20  # int64 wrapped it to -9223372036854775808, which the reader refused (review)
    with pytest.raises(ValueError, match="frame numbers must be at most"):
        io.write_thunderstorm_csv(tmp_path / "b.csv", t)
    assert not (tmp_path / "b.csv").exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def boom(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]

    def disk_full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the error names the file asked for ("[Errno 28] No space left on device" named none: review)
    with pytest.raises(OSError, match=r"cannot write .*out\.csv: No space left on device") as caught:
        io.atomic_write(target, disk_full)
    assert caught.value.errno == errno.ENOSPC and target.read_text() == "old\n"

    def no_errno(tmp):
        raise OSError("the device went away")

    with pytest.raises(OSError) as caught:
        io.atomic_write(target, no_errno)
    assert str(caught.value).startswith("cannot write ") and str(caught.value).endswith("out.csv: the device went away")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_read_thunderstorm_px_units_and_uncertainty_xy(tmp_path):
    p = tmp_path / "ts.csv"
    p.write_text('"id","frame","x [px]","y [px]","sigma [px]","uncertainty_xy [nm]"\n1,1,1.5,2.0,1.1,7.5\n2,3,0.5,0.5,1.0,8\n')
    with pytest.raises(io.LocalizationFileError, match="pixel size"):
        io.read_localizations(p)
    t = io.read_localizations(p, pixel_size_nm=100)
    assert t["x [nm]"].tolist() == [150.0, 50.0] and t["y [nm]"].tolist() == [200.0, 50.0]
    for bad in (-100.0, 0, True, float("nan"), float("inf"), "100"):  # -100 mirrored, True was 1 nm (review)
        with pytest.raises(ValueError, match="pixel_size_nm must be a positive number of nm or None"):
            io.read_localizations(p, pixel_size_nm=bad)
    assert t["sigma [nm]"].tolist() == pytest.approx([110.0, 100.0])
    assert t["uncertainty [nm]"].tolist() == [7.5, 8.0]
    assert "id" not in t.columns


def test_read_isbi_2013_format_and_plain_gt(tmp_path):
    p = tmp_path / "isbi.csv"
    p.write_text("Ground-truth,frame,xnano,ynano,znano,intensity\n1,1,777.3,3753.6,0,1500\n2,2,807.4,3694.2,0,1600\n")
    t = io.read_localizations(p)
    assert t["frame"].tolist() == [1, 2] and t["x [nm]"].tolist() == [777.3, 807.4]
    assert t["intensity [photon]"].tolist() == [1500, 1600]
    q = tmp_path / "plain.csv"
    q.write_text('"frame","x [nm]","y [nm]"\n1,777.32214,3753.63916\n')
    assert io.read_localizations(q)["y [nm]"].iloc[0] == pytest.approx(3753.63916)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ('\n"frame","x [nm]","y [nm]"\n1,1,2\n', "first line is blank"),
        ('"a","b"\n1,2\n', "missing column"),
        ('"frame","x [nm]","y [nm]"\n0,1,2\n', "1-based"),
        ('"frame","x [nm]","y [nm]"\n1,abc,2\n', "non-numeric"),
        ('"frame","x [nm]","y [nm]"\nTrue,1,2\n', "non-numeric value 'True' in column 'frame'"),  # was np.True_
        ('"frame","x [furlong]","y [nm]"\n1,1,2\n', "unknown unit"),
        ('"frame";"x [nm]";"y [nm]"\n1;1;2\n', "separated by ';'"),
        ('frame\tx [nm]\ty [nm]\n1\t1\t2\n', "separated by a tab"),
        ("1,1,100,200\n1,1,150,250\n", "holds numbers, not column names: the file has no header"),
        ("1,2,100,200\n1,1,150,250\n", "holds numbers, not column names"),  # no repeated label either
        ('# exported by X\n"frame","x [nm]","y [nm]"\n1,1,2\n', "first line, '# exported by X', is a comment"),
        ('"frame","x [nm]","y [nm]","x [um]"\n1,100,200,5\n', "both give 'x [nm]'"),  # x was silently 5000
        ('"frame","x","y [nm]","x [nm]"\n1,1,2,7\n', "both give 'x [nm]'"),
        ('"frame","x [nm]","y [nm]"\n1,100,100\n1e20,200,200\n', "frame number 1e+20 is too large"),
        ('"frame","x [px]","y [px]"\n1,1,2\n', "--pixel-size"),
    ],
)
def test_bad_csv_messages(tmp_path, text, message):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(io.LocalizationFileError, match=re.escape(message)):
        io.read_localizations(p)


def test_rows_with_wrong_field_count_are_skipped_with_warning(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text('"frame","x [nm]","y [nm]"\n1,1,2\n2,3\n3,4,5\n')
    with pytest.warns(UserWarning, match="skipped 1 row"):
        t = io.read_localizations(p)
    assert t["frame"].tolist() == [1, 3]


def test_a_file_whose_every_row_has_the_wrong_field_count_is_refused(tmp_path):
    # a comma at the end of every row: all rows were skipped and the empty table scored (Jaccard 0, exit 0)
    p = tmp_path / "trailing.csv"
    p.write_text('"frame","x [nm]","y [nm]"\n1,1,2,\n\n2,3,4,\n')
    with pytest.raises(io.LocalizationFileError, match=r"none of its 2 row\(s\) has the header's 3 fields \(the first "
                                                       r"has 4; a comma at the end of every row"):
        io.read_localizations(p)
    p.write_text('"frame","x [nm]","y [nm]"\n')
    assert len(io.read_localizations(p)) == 0  # no rows at all is an empty table, as before


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize("chunk", [5, 1 << 24])  # a scan piece shorter than a line, or the whole file
def test_line_ends_bom_and_scan_pieces(tmp_path, monkeypatch, newline, bom, chunk):
    # the lines are counted on the bytes, a piece at a time: every line end, a BOM and lines
    # cut by the pieces give the rows that str.splitlines gave before
    monkeypatch.setattr("napari_deepcel0.core.localization_csv.SCAN_CHUNK_BYTES", chunk)
    rows = ['"frame","x [nm]","y [nm]"', "1,1.5,2", "", "2,3", "3,4,5", "4,6,7,8", "5,9,10"]
    p = tmp_path / "lines.csv"
    p.write_bytes(bom + newline.join(rows).encode())
    with pytest.warns(UserWarning, match="skipped 2 row"):
        t = io.read_localizations(p)
    assert t["frame"].tolist() == [1, 3, 5] and t["x [nm]"].tolist() == [1.5, 4.0, 9.0]
    p.write_bytes(bom + (newline.join(rows[:2] + rows[4:5] + rows[6:]) + newline).encode())
    t = io.read_localizations(p)  # every row right: pandas reads the file itself
    assert t["frame"].tolist() == [1, 3, 5] and t["y [nm]"].tolist() == [2.0, 5.0, 10.0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_pipes_are_read_as_csvs_and_refused_as_stacks_models_and_outputs(tmp_path):
    """The shell's ``<(...)`` or a FIFO was "no such file", and an --out that was a FIFO
    (or a link to /dev/null, or to /dev/full as root) was replaced by a file (bad-input review)."""
    import threading

    from napari_deepcel0.core.model_io import ModelFileError, read_model_info

    table = loc_table([1, 2], [10.0, 20.0], [30.0, 40.0])
    ours = (io.write_thunderstorm_csv(tmp_path / "l.csv", table)).read_bytes()
    quoted = b'"frame","x [nm]","y [nm]"\n"1","10.0","30.0"\n"2","20.0","40.0"\n'  # (as pandas writes text)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for text in (ours, quoted):  # (the quoted rows were read from a second opening of the pipe: none, or a hang)
        writer = threading.Thread(target=lambda: fifo.write_bytes(text))
        writer.start()
        read = io.read_localizations(fifo)
        writer.join()
        assert read[["frame", "x [nm]", "y [nm]"]].values.tolist() == [[1, 10.0, 30.0], [2, 20.0, 40.0]]
    if os.path.exists("/dev/zero"):  # read for ever, once pipes were read
        with pytest.raises(io.LocalizationFileError, match="/dev/zero: is a device or a socket, not a CSV file"):
            io.read_localizations("/dev/zero")
    with pytest.raises(io.StackError, match="pipe: is a pipe or a device, not a file: save the stack to a file"):
        io.read_stack(fifo)
    with pytest.raises(ModelFileError, match="is a pipe or a device, not a file: save the model to a file first"):
        read_model_info(fifo)
    (tmp_path / "link.csv").symlink_to(fifo)
    for out, shown in ((fifo, str(fifo)), (tmp_path / "link.csv", f"{tmp_path / 'link.csv'} (a link to {fifo})")):
        with pytest.raises(OSError, match=re.escape(f"{shown} is a pipe, a device or a socket, not a file")):
            outputs.check_output_path(out)  # (as the CLI checks --out before the work)
        with pytest.raises(OSError, match=re.escape(f"{fifo} is a pipe, a device or a socket, not a file")):
            io.write_thunderstorm_csv(out, table)
    assert fifo.is_fifo() and (tmp_path / "link.csv").is_symlink()


def test_text_that_is_not_utf8_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("napari_deepcel0.core.localization_csv.SCAN_CHUNK_BYTES", 8)  # "é" cut in two by the pieces stays one character
    p = tmp_path / "latin.csv"
    p.write_bytes('"frame","x [nm]","y [nm]","note é"\n1,1,2,é\n'.encode())
    assert io.read_localizations(p)["note é"].tolist() == ["é"]
    p.write_bytes('"frame","x [nm]","y [nm]","note é"\n1,1,2,é\n'.encode("latin-1"))
    with pytest.raises(io.LocalizationFileError, match=r"not UTF-8 \(text in another encoding \(Latin-1.*save the "
                                                       "CSV as UTF-8"):
        io.read_localizations(p)
    p.write_bytes('"frame","x [nm]","y [nm]"\n1,1,2\n'.encode("utf-16"))  # "not a text file" before
    with pytest.raises(io.LocalizationFileError, match=r"not UTF-8 \(UTF-16 text"):
        io.read_localizations(p)
    with pytest.raises(io.LocalizationFileError, match="is a folder, not a CSV file"):  # "no such file" before
        io.read_localizations(tmp_path)


def test_a_tiff_or_a_workbook_given_for_a_csv_is_named(tmp_path):
    """A stack given to ``evaluate`` for its CSV was "not UTF-8 ...; save the CSV as UTF-8"
    (docs review)."""
    import zipfile

    stack = io.write_tiff(tmp_path / "frames.tif", np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8))
    with pytest.raises(io.LocalizationFileError, match=r"frames.tif: this is a TIFF image \(a stack of frames\?\), "
                                                       "not a localization CSV"):
        io.read_localizations(stack)
    with zipfile.ZipFile(tmp_path / "locs.xlsx", "w") as book:
        book.writestr("xl/worksheets/sheet1.xml", bytes(range(256)) * 8)
    with pytest.raises(io.LocalizationFileError, match=r"a ZIP archive \(an Excel workbook\? save the sheet as CSV"):
        io.read_localizations(tmp_path / "locs.xlsx")
    import gzip

    (tmp_path / "locs.csv.gz").write_bytes(gzip.compress(bytes(range(256)) * 64))
    with pytest.raises(io.LocalizationFileError, match=r"this is a gzip-compressed file \(decompress it first"):
        io.read_localizations(tmp_path / "locs.csv.gz")


def test_an_empty_stack_and_float64_values_beyond_float32_say_what_they_are(tmp_path):
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((0, 32, 32), np.uint16), photometric="minisblack")
    with pytest.raises(io.StackError, match="empty image"):  # "cannot find the image rows and columns" before
        io.read_stack(tmp_path / "none.tif")
    huge = np.full((2, 8, 8), 1e300)
    huge[0] = 5.0
    tifffile.imwrite(tmp_path / "huge.tif", huge, photometric="minisblack")
    with io.read_stack(tmp_path / "huge.tif") as stack:
        assert stack[0][0, 0] == 5.0
        with pytest.raises(io.StackError, match="frame 2 holds values beyond the float32 range"):  # "infinite" before
            stack[0:2]


def test_the_writer_refuses_positions_the_reader_would_refuse(tmp_path):
    table = _table()
    table.loc[2, "x [nm]"] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) have an x or y that is not a finite number"):
        io.write_thunderstorm_csv(tmp_path / "t.csv", table)
    table.loc[2, "x [nm]"] = -2e9
    with pytest.raises(ValueError, match=r"1 row\(s\) have an x or y that is not a finite number of nm within"):
        io.write_thunderstorm_csv(tmp_path / "t.csv", table)
    assert not (tmp_path / "t.csv").exists()


def test_a_plain_multipage_tiff_cut_short_is_refused_not_read_as_one_frame(tmp_path, capfd):
    data = (np.arange(40 * 32 * 32) % 3000).reshape(40, 32, 32).astype(np.uint16)
    p = tmp_path / "pages.tif"
    tifffile.imwrite(p, data, photometric="minisblack", metadata=None)  # no frame count in the file
    cut = _cut(p, 0.9)
    with pytest.raises(io.StackError, match="the file ends inside its list of frames.*truncated or damaged"):
        io.read_stack(cut)
    assert "invalid page offset" not in capfd.readouterr().err  # tifffile's log stays off the terminal


def test_shared_ground_truth_loads(isbi_dir):
    gt = io.read_localizations(isbi_dir / "ground_truth.csv")
    assert len(gt) == 81178 and gt["frame"].min() == 1 and gt["frame"].max() == 361
    with io.read_stack(isbi_dir / "frames.tif") as stack:
        assert stack.shape == (361, 64, 64) and stack.pixel_size_nm == pytest.approx(100.0)


def test_infinite_coordinates_are_refused_with_the_row(tmp_path):
    p = tmp_path / "inf.csv"
    p.write_text('"frame","x [nm]","y [nm]"\n1,10,20\n2,-Infinity,30\n')
    with pytest.raises(io.LocalizationFileError, match="infinite or out-of-range frame/x/y values in 1 row.*data row 2"):
        io.read_localizations(p)
    # absurd but finite: the matching's distances overflowed with SciPy's message, naming no file (review)
    p.write_text('"frame","x [nm]","y [nm]"\n1,10,20\n1,1e160,30\n')
    with pytest.raises(io.LocalizationFileError, match=r"in 1 row\(s\), the first in data row 2 \(frame 1, x 1e\+160"):
        io.read_localizations(p)


def test_text_that_would_break_the_csv_is_refused_and_nothing_written(tmp_path):
    t = _table(2).assign(label=["a,b", "c"])
    with pytest.raises(ValueError, match="column 'label' holds text with a quote, comma"):
        io.write_thunderstorm_csv(tmp_path / "t.csv", t)
    assert list(tmp_path.iterdir()) == []
    # plain text columns still round-trip
    io.write_thunderstorm_csv(tmp_path / "ok.csv", t.assign(label=["ab", "c"]))
    assert "ab" in (tmp_path / "ok.csv").read_text()


def test_a_file_of_several_series_is_refused_naming_them(tmp_path):
    p = tmp_path / "two.tif"
    with tifffile.TiffWriter(p) as tw:  # a preview image, then the stack
        tw.write(np.zeros((8, 8), np.uint8))
        tw.write(np.zeros((5, 32, 32), np.uint16), photometric="minisblack")
    with pytest.raises(io.StackError, match=r"2 image series \(\(8, 8\).*\(5, 32, 32\)"):
        io.read_stack(p)


def test_a_stack_written_frame_by_frame_is_one_stack(tmp_path):
    data = np.arange(5 * 8 * 10, dtype=np.uint16).reshape(5, 8, 10)
    p = tmp_path / "appended.tif"
    for frame in data:  # tifffile writes one "shaped" series per call
        tifffile.imwrite(p, frame, append=True)
    with tifffile.TiffFile(p) as tif:
        assert len(tif.series) == 5
    with io.read_stack(p) as stack:
        assert stack.shape == (5, 8, 10)
        assert np.array_equal(np.asarray(stack[0:5]), data)
    # without listing tifffile's series of such a file, which compares each with every other (quadratic:
    # 4,000 frames took 4 s, 8,000 frames 35 s to open; review)
    with mock.patch.object(tifffile.TiffFile, "_series_shaped", side_effect=AssertionError("shaped series listed")):
        with io.read_stack(p) as stack:
            assert stack.shape == (5, 8, 10)


@pytest.mark.parametrize("kwargs", [dict(byteorder=">"), dict(bigtiff=True), dict(ome=True, metadata={"axes": "TYX"})])
def test_uncompressed_stacks_are_memory_mapped_with_their_values(tmp_path, kwargs):
    data = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8) * 7
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack", **kwargs)
    with io.read_stack(tmp_path / "s.tif") as stack:
        assert stack._memmap is not None and np.array_equal(stack[:], data)


def test_a_stack_written_in_batches_is_one_stack_and_images_of_other_sizes_are_named(tmp_path):
    data = np.arange(15 * 8 * 10, dtype=np.uint16).reshape(15, 8, 10)
    p = tmp_path / "batches.tif"
    for batch in np.split(data, 3):  # a writer saving frames as they come, as Fiji opens it: 15 frames
        tifffile.imwrite(p, batch, append=True)
    with io.read_stack(p) as stack:
        assert np.array_equal(stack[:], data)
    mixed = tmp_path / "mixed.tif"
    for frame in (data[0], data[1], data[2, :6]):
        tifffile.imwrite(mixed, frame, append=True)
    with pytest.raises(io.StackError, match=r"holds frames of different sizes or types .*\(6, 10\)"):
        io.read_stack(mixed)


def _ome_xml(uuids: list[str], names: list[str], frames_per_file: int, frames: int, shape) -> list[str]:
    """The OME-XML of each file of a multi-file acquisition (Micro-Manager/Bio-Formats style)."""
    planes = "".join(f'<TiffData FirstT="{t}" IFD="{t % frames_per_file}" PlaneCount="1"><UUID '
                     f'FileName="{names[t // frames_per_file]}">{uuids[t // frames_per_file]}</UUID></TiffData>'
                     for t in range(frames))
    return [f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
            f'UUID="{uuid}"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
            f'SizeX="{shape[1]}" SizeY="{shape[0]}" SizeC="1" SizeZ="1" SizeT="{frames}" PhysicalSizeX="0.16" '
            f'PhysicalSizeY="0.16"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>{planes}</Pixels></Image></OME>'
            for uuid in uuids]


def test_a_multi_file_ome_acquisition_reads_whole_and_a_missing_file_is_named(tmp_path):
    """A companion file not copied with the first one was read as frames of zeros without a
    word; the frames of the companion files warned "reading array from closed file" once each."""
    import uuid

    data = np.random.default_rng(3).integers(100, 900, (6, 8, 10)).astype(np.uint16)
    names = ["acq_MMStack_Pos0.ome.tif", "acq_MMStack_Pos0_1.ome.tif"]
    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in names]
    for k, (name, xml) in enumerate(zip(names, _ome_xml(uuids, names, 3, 6, (8, 10)))):
        with tifffile.TiffWriter(tmp_path / name) as tw:
            for i in range(3):
                tw.write(data[3 * k + i], description=xml.encode() if i == 0 else None, metadata=None,
                         contiguous=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with io.read_stack(tmp_path / names[0]) as stack:
            assert stack.shape == (6, 8, 10) and stack.pixel_size_nm == pytest.approx(160.0)
            assert np.array_equal(stack[:], data)
    (tmp_path / names[1]).unlink()
    with pytest.raises(io.StackError, match=r"3 of the 6 frames .* missing \(frames 4-6\): the companion "
                                            r"file\(s\) acq_MMStack_Pos0_1\.ome\.tif"):
        io.read_stack(tmp_path / names[0])


def test_an_ome_file_listing_more_planes_than_it_holds_is_refused(tmp_path):
    data = np.ones((4, 8, 10), np.uint16)
    xml = _ome_xml(["urn:uuid:0"], ["cut.ome.tif"], 10, 10, (8, 10))[0]
    with tifffile.TiffWriter(tmp_path / "cut.ome.tif") as tw:
        for i, frame in enumerate(data):
            tw.write(frame, description=xml.encode() if i == 0 else None, metadata=None, contiguous=False)
    with pytest.raises(io.StackError, match=r"6 of the 10 frames .* \(frames 5-10\): the file holds fewer planes"):
        io.read_stack(tmp_path / "cut.ome.tif")


def test_a_compression_without_its_codec_is_refused_when_opened_without_blaming_the_file(tmp_path, monkeypatch):
    data = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "lzw.tif", data, compression="lzw", photometric="minisblack")

    def no_codec(self, *args, **kwargs):  # what tifffile raises without imagecodecs
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    with pytest.raises(io.StackError, match=r"frame 1 cannot be decoded .* needs the imagecodecs package"):
        io.read_stack(tmp_path / "lzw.tif")


def test_a_dark_frame_beside_a_stack_is_not_taken_for_its_first_frame(tmp_path):
    p = tmp_path / "dark_plus.tif"
    tifffile.imwrite(p, np.full((8, 10), 3, np.uint16))
    tifffile.imwrite(p, np.zeros((5, 8, 10), np.uint16), append=True, photometric="minisblack")
    with pytest.raises(io.StackError, match=r"2 image series \(\(8, 10\) \(YX\), \(5, 8, 10\)"):
        io.read_stack(p)


def test_a_few_channels_read_as_frames_warn_and_lzw_stacks_read(tmp_path):
    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    tifffile.imwrite(tmp_path / "cyx.tif", data, imagej=True, metadata={"axes": "CYX"})
    with pytest.warns(io.ChannelsWarning, match="calls its 2 planes channels .*Split Channels"):
        with io.read_stack(tmp_path / "cyx.tif") as stack:
            assert stack.shape == (2, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # ImageJ's Z is often time; tifffile.imwrite(imagej=True) calls the planes of any 3-D array channels
        tifffile.imwrite(tmp_path / "zyx.tif", data, imagej=True, metadata={"axes": "ZYX"})
        tifffile.imwrite(tmp_path / "many.tif", np.zeros((5, 8, 8), np.uint16), imagej=True)
        for name, frames in (("zyx.tif", 2), ("many.tif", 5)):
            with io.read_stack(tmp_path / name) as stack:
                assert stack.shape == (frames, 8, 8)
    tifffile.imwrite(tmp_path / "lzw.tif", data, compression="lzw", photometric="minisblack")  # needs imagecodecs
    with io.read_stack(tmp_path / "lzw.tif") as stack:
        assert np.array_equal(stack[:], data)


def test_stacks_are_written_as_time_frames_for_fiji(tmp_path):
    p = io.write_tiff(tmp_path / "s.tif", np.zeros((4, 6, 7), np.uint16), pixel_size_nm=160)
    with tifffile.TiffFile(p) as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 4
        assert "channels" not in tif.imagej_metadata
    with io.read_stack(p) as stack:  # (left open, the file's ResourceWarning surfaced in another test)
        assert stack.shape == (4, 6, 7) and stack.pixel_size_nm == pytest.approx(160)


def _cut(path, fraction):
    raw = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(raw[:int(len(raw) * fraction)])
    return cut


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_truncated_stack_is_refused_not_opened_with_fewer_frames(tmp_path, compression):
    # an interrupted copy: tifffile alone opened the uncompressed one as a 1-frame stack
    data = (np.arange(6 * 32 * 32) % 3000).reshape(6, 32, 32).astype(np.uint16)
    p = tmp_path / "six.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "TYX"}, compression=compression)
    cut = _cut(p, 0.6)
    with pytest.raises(io.StackError, match=r"cut_six\.tif: the file announces 6 frames.*truncated or damaged"):
        io.read_stack(cut)


def test_an_ome_stack_cut_in_its_page_list_is_a_stack_error_naming_the_file(tmp_path):
    """tifffile lists an OME file's pages when asked for its series: a cut there raised
    tifffile's own "corrupted IFD structure", naming no file (bad-input review)."""
    data = np.random.default_rng(0).poisson(110, (6, 32, 32)).astype(np.uint16)
    p = tmp_path / "ome.ome.tif"
    tifffile.imwrite(p, data, ome=True, metadata={"axes": "TYX"})
    with pytest.raises(io.StackError, match=r"cut_ome\.ome\.tif: not a readable TIFF file \(.*truncated or damaged"):
        io.read_stack(_cut(p, 0.95))


def test_a_damaged_frame_names_the_file_and_the_frame(tmp_path):
    data = np.random.default_rng(1).integers(0, 3000, (6, 32, 32)).astype(np.uint16)
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "TYX"}, compression="zlib")
    with tifffile.TiffFile(p) as tif:
        last = tif.pages[-1]
        end_of_data = last.dataoffsets[0] + last.databytecounts[0] // 2  # cut inside the last frame's data
    cut = tmp_path / "cut.tif"
    cut.write_bytes(p.read_bytes()[:end_of_data])
    with io.read_stack(cut) as stack:
        assert stack.shape == (6, 32, 32) and np.array_equal(stack[0:5], data[:5])  # the good frames read
        with pytest.raises(io.StackError, match=r"cut\.tif: frame 6 cannot be read .*damaged or truncated"):
            stack[5]


def test_the_first_frame_of_written_maps_is_read_back(tmp_path):
    maps = np.zeros((3, 8, 8), np.float32)
    p = io.write_tiff(tmp_path / "maps.tif", maps, pixel_size_nm=25.0, output="maps", first_frame=4)
    with io.read_stack(p) as stack:
        assert (stack.output, stack.first_frame, stack.pixel_size_nm) == ("maps", 4, pytest.approx(25.0))
    with io.read_stack(io.write_tiff(tmp_path / "r.tif", maps[0], pixel_size_nm=10.0, output="render")) as render:
        assert (render.output, render.first_frame) == ("render", 1)
    with io.read_stack(io.write_tiff(tmp_path / "f.tif", maps)) as frames:
        assert (frames.output, frames.first_frame) == (None, 1)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="first_frame"):
            io.write_tiff(tmp_path / "bad.tif", maps, output="maps", first_frame=bad)
    with pytest.raises(ValueError, match="needs output"):
        io.write_tiff(tmp_path / "bad.tif", maps, first_frame=2)
    assert not (tmp_path / "bad.tif").exists()


def test_all_or_nothing_replaces_the_files_only_when_every_write_succeeded(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")

    def fail(tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with io.all_or_nothing():
            io.atomic_write(a, lambda tmp: Path(tmp).write_text("new a"))
            assert a.read_text() == "old a"  # not yet
            io.atomic_write(b, fail)
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary files
    with io.all_or_nothing():
        io.atomic_write(a, lambda tmp: Path(tmp).write_text("new a"))
        io.atomic_write(b, lambda tmp: Path(tmp).write_text("new b"))
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    with pytest.raises(RuntimeError, match="do not nest"):
        with io.all_or_nothing(), io.all_or_nothing():
            pass
    io.atomic_write(a, lambda tmp: Path(tmp).write_text("plain"))  # outside a block: at once
    assert a.read_text() == "plain"


def test_writing_through_a_symbolic_link_updates_its_target(tmp_path):
    # the link was replaced by a regular file and its target kept the old content
    target = tmp_path / "results" / "locs.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    io.write_thunderstorm_csv(link, _table())
    assert link.is_symlink() and len(io.read_localizations(target)) == 5


def test_output_path_errors_name_the_target(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        io.write_thunderstorm_csv(tmp_path, _table(1))
    with pytest.raises(FileNotFoundError, match="folder .*nope does not exist"):
        io.write_thunderstorm_csv(tmp_path / "nope" / "a.csv", _table(1))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OSError, match=f"cannot write {locked / 'a.csv'}"):
            io.write_thunderstorm_csv(locked / "a.csv", _table(1))


@pytest.mark.parametrize("dtype", [bool, np.int8, np.int32, np.uint32, np.int64, np.uint64, np.float16, np.float64])
def test_any_numeric_image_is_written_with_its_values_and_pixel_size(tmp_path, dtype):
    # before: int8/int32/uint32/bool/float16 failed ("ImageJ format does not support..."),
    # int64 lost the pixel size
    data = (np.arange(2 * 3 * 4).reshape(2, 3, 4) % 2 if dtype is bool else np.arange(2 * 3 * 4).reshape(2, 3, 4) - 5)
    data = np.abs(data).astype(dtype) if np.dtype(dtype).kind in "ub" else data.astype(dtype)
    with io.read_stack(io.write_tiff(tmp_path / "a.tif", data, pixel_size_nm=25)) as stack:
        assert stack.pixel_size_nm == pytest.approx(25)
        assert np.array_equal(np.asarray(stack[0:2], dtype=np.float64), data.astype(np.float64))
    big = np.array([[0, 70000]], np.int64)  # beyond 16 bits: float32, still exact
    with io.read_stack(io.write_tiff(tmp_path / "b.tif", big)) as stack:
        assert np.array_equal(stack[0], big)


def test_written_files_get_the_usual_permissions_whatever_the_writer(tmp_path):
    expected = 0o666 & ~outputs._UMASK

    def recreate(tmp):  # as safetensors' save_file does: the mkstemp file is replaced
        os.unlink(tmp)
        with open(tmp, "w") as fh:
            fh.write("x")
        os.chmod(tmp, 0o600)

    assert io.atomic_write(tmp_path / "a.bin", recreate).stat().st_mode & 0o777 == expected
    assert io.write_thunderstorm_csv(tmp_path / "b.csv", _table(2)).stat().st_mode & 0o777 == expected


def test_nan_spelled_as_numpy_writes_it_is_a_number_without_warnings(tmp_path):
    # pandas read 'nan' as text in its chunk and warned of "mixed types" for a big file
    import warnings

    rows = ["1,10.5,20.5,100.0"] * 600_000
    rows[-5] = "1,10.5,20.5,nan"
    path = tmp_path / "nan.csv"
    path.write_text('"frame","x [nm]","y [nm]","sigma [nm]"\n' + "\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = io.read_localizations(path)
    assert table["sigma [nm]"].dtype == np.float64 and table["sigma [nm]"].isna().sum() == 1


def test_csv_writer_keeps_every_row_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "CSV_CHUNK_ROWS", 3)  # 10 rows: chunks of 3, 3, 3, 1
    n = 10
    t = loc_table(np.arange(1, n + 1), np.arange(n) * 10.0 + 0.25, np.arange(n) * 7.0 + 0.5)
    path = io.write_thunderstorm_csv(tmp_path / "a.csv", t)
    lines = path.read_text().splitlines()
    assert len(lines) == n + 1
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, n + 1))
    back = io.read_localizations(path)
    np.testing.assert_array_equal(back[["frame", "x [nm]", "y [nm]"]].to_numpy(), t.to_numpy())


def test_rows_ending_in_a_comma_add_no_column(tmp_path):
    """A file whose rows end in a comma (some tools write one) was read with an empty column
    named '', which the writer wrote back as a "" column (a review)."""
    p = tmp_path / "trailing.csv"
    p.write_text('"frame","x [nm]","y [nm]","intensity [photon]",\n1,10,20,300,\n2,30,40,500,\n')
    t = io.read_localizations(p)
    assert list(t.columns) == ["frame", "x [nm]", "y [nm]", "intensity [photon]"]
    assert t["intensity [photon]"].tolist() == [300.0, 500.0]
    back = io.write_thunderstorm_csv(tmp_path / "back.csv", t).read_text().splitlines()
    assert back[0] == '"id","frame","x [nm]","y [nm]","intensity [photon]"'


def test_fractional_frame_numbers_are_refused_by_reader_and_writer(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text('"frame","x [nm]","y [nm]"\n1,10,20\n1.5,30,40\n')
    with pytest.raises(io.LocalizationFileError, match="frame numbers must be integers"):
        io.read_localizations(p)
    t = loc_table(np.array([1.0, 2.5]), [10.0, 20.0], [30.0, 40.0])
    with pytest.raises(ValueError, match=r"1-based integers \(1 row\(s\) are not, the first 2.5\)"):
        io.write_thunderstorm_csv(tmp_path / "w.csv", t)  # (it quoted the smallest frame, 1)
    assert not (tmp_path / "w.csv").exists()


def test_frame_stack_indexing_follows_numpy_and_a_closed_stack_says_so(tmp_path):
    """A boolean mask gave frames 1,0,1,0,0 (each True read as index 1); a closed stack
    and an index past the end were reported as a damaged file."""
    frames = np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6)
    io.write_tiff(tmp_path / "s.tif", frames)
    with io.read_stack(tmp_path / "s.tif") as stack:
        mask = np.array([True, False, True, False, False])
        np.testing.assert_array_equal(stack[mask], frames[mask])
        np.testing.assert_array_equal(stack[[-1, 0]], frames[[-1, 0]])
        for bad in ([0, 7], np.array([True, False]), [1.0], (0, slice(0, 2))):
            with pytest.raises(IndexError):
                stack[bad]
        stack.close()
        with pytest.raises(ValueError, match="the stack was closed; open it again"):
            stack[0]


def test_paths_with_a_tilde_are_the_home_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    io.write_tiff(tmp_path / "s.tif", np.zeros((2, 4, 4), np.uint16))
    io.write_thunderstorm_csv(tmp_path / "l.csv", _table(2))
    with io.read_stack("~/s.tif") as stack:
        assert len(stack) == 2
    assert len(io.read_localizations("~/l.csv")) == 2


@pytest.mark.parametrize("resolution, unit, expected", [
    (1 / 0.16, "MICROMETER", 160.0),  # tifffile's micrometre unit
    (1e4 / 0.1075, "CENTIMETER", 107.5),  # the TIFF standard's unit
    (300, "INCH", None),  # an image editor's 300 dpi is no camera pixel (84.7 um)
])
def test_pixel_size_from_the_standard_resolution_tags(tmp_path, resolution, unit, expected):
    """Without ImageJ/OME metadata the resolution tags were ignored, and a 160 nm stack
    was localized at the model's 100 nm."""
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), resolution=(resolution, resolution), resolutionunit=unit)
    with io.read_stack(path) as stack:
        assert stack.pixel_size_nm == (pytest.approx(expected) if expected else None)


def test_resolution_tags_stating_no_camera_pixel_warn_as_imagej_and_ome_do(tmp_path):
    """1 cm pixels in the resolution tags were dropped in silence, while ImageJ and OME
    warned (code-health review); an editor's dpi is no statement about the sample."""
    data = np.zeros((2, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1, 1), resolutionunit="CENTIMETER")
    with pytest.warns(UserWarning, match=r"cm.tif: its metadata states a pixel size of 1e\+07 nm, which is no camera "
                                         r"pixel in the sample \(10-2,000 nm; a value in the wrong unit\?\)") as caught:
        with io.read_stack(tmp_path / "cm.tif") as stack:
            assert stack.pixel_size_nm is None
    assert len([w for w in caught if "metadata states" in str(w.message)]) == 1
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(300, 300), resolutionunit="INCH")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with io.read_stack(tmp_path / "dpi.tif") as stack:
            assert stack.pixel_size_nm is None


@pytest.mark.parametrize("name, kwargs", [
    ("m.tif", dict(imagej=True, resolution=(1, 1), metadata={"unit": "m", "axes": "TYX"})),
    ("m.ome.tif", dict(metadata={"axes": "TYX", "PhysicalSizeX": 1, "PhysicalSizeXUnit": "m"})),
    ("cm.tif", dict(resolution=(1, 1), resolutionunit="CENTIMETER")),
])
def test_a_pixel_size_warning_made_an_error_is_raised_not_read_as_no_pixel_size(tmp_path, name, kwargs):
    """With warnings as errors, 1 m pixels read as "no pixel size" and raised nothing: the
    reader's broad except swallowed the warning it had just raised (code-health review)."""
    tifffile.imwrite(tmp_path / name, np.zeros((2, 8, 8), np.uint16), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match=f"{name}: its metadata states a pixel size of 1e\\+0[79] nm"):
            io.read_stack(tmp_path / name)


def test_ome_xml_that_cannot_be_parsed_leaves_the_resolution_tags_to_give_the_pixel_size(tmp_path):
    """A broken OME-XML description gave "no pixel size" (the broad except around every
    source) although the resolution tags stated 160 nm."""
    path = tmp_path / "broken.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), description='<OME><Pixels PhysicalSizeX="1"></OME>',
                     metadata=None, resolution=(1 / 0.16, 1 / 0.16), resolutionunit="MICROMETER",
                     photometric="minisblack")
    with io.read_stack(path) as stack:
        assert stack.pixel_size_nm == pytest.approx(160.0)


def test_text_in_a_column_the_analysis_does_not_use_keeps_the_file(tmp_path):
    """A note typed into one row of an extra column refused the whole file."""
    path = tmp_path / "noted.csv"
    path.write_text('"frame","x [nm]","y [nm]","note"\n1,10,20,3\n2,30,40,re-check\n')
    with pytest.warns(UserWarning, match=r"text value 're-check' in column 'note' \(data row 2\): the column is "
                                         r"kept as text"):
        table = io.read_localizations(path)
    assert table["x [nm]"].tolist() == [10.0, 30.0] and table["note"].tolist() == ["3", "re-check"]
    with pytest.warns(UserWarning, match="kept as text"):  # and it is written and read back so
        back = io.read_localizations(io.write_thunderstorm_csv(tmp_path / "again.csv", table))
    assert back["note"].tolist() == ["3", "re-check"]
    path.write_text('"frame","x [nm]","y [nm]"\n1,10,20\n2,30,x\n')  # in a column it uses: refused, as before
    with pytest.raises(io.LocalizationFileError, match="non-numeric value 'x' in column 'y \\[nm\\]' \\(data row 2\\)"):
        io.read_localizations(path)


def test_coordinates_without_a_unit_are_read_as_nm_with_a_warning(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("frame,x,y\n1,1.5,2.5\n")
    with pytest.warns(UserWarning, match=r"'x', 'y' carry no unit; read as nm"):
        table = io.read_localizations(path)
    assert table["x [nm]"].tolist() == [1.5]


def test_frame_stack_keys_numpy_would_read_otherwise_are_refused_or_follow_numpy(tmp_path):
    frames = np.arange(3 * 4 * 6, dtype=np.uint16).reshape(3, 4, 6)
    with io.read_stack(io.write_tiff(tmp_path / "s.tif", frames)) as stack:
        assert stack[[]].shape == (0, 4, 6)  # as NumPy
        np.testing.assert_array_equal(stack[np.array(2)], frames[2])  # a 0-d index is one frame
        np.testing.assert_array_equal(stack[np.int64(-1)], frames[-1])
        for bad in ((0, 1), True, np.True_):  # stack[0, 1] read frames 0 and 1, not row 1 of frame 0
            with pytest.raises(IndexError):
                stack[bad]


def test_a_frame_stack_pickles_as_its_path(tmp_path):
    import pickle

    frames = np.arange(2 * 4 * 6, dtype=np.uint16).reshape(2, 4, 6)
    with io.read_stack(io.write_tiff(tmp_path / "s.tif", frames, pixel_size_nm=80.0)) as stack:
        with pickle.loads(pickle.dumps(stack)) as again:  # as multiprocessing and dask workers receive it
            assert again.pixel_size_nm == pytest.approx(80.0) and np.array_equal(again[:], frames)


def test_threads_reading_a_compressed_stack_at_once_get_their_frames(tmp_path):
    """The viewer and a run read the same stack at once; a compressed one is read page by
    page through one file handle (seek, then read)."""
    import sys
    import threading

    rng = np.random.default_rng(0)
    data = rng.integers(0, 60000, (40, 128, 128)).astype(np.uint16)  # noise: pages of some size
    data[:, 0, 0] = np.arange(40)
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib", photometric="minisblack")
    wrong = []  # without a lock: dozens of wrong frames and of StackErrors (a page read from another's offset)
    with io.read_stack(tmp_path / "z.tif") as stack:
        assert stack._memmap is None

        def read(order):
            for _ in range(10):
                for i in order.tolist():
                    try:
                        if stack[i][0, 0] != i:
                            wrong.append(i)
                    except io.StackError:
                        wrong.append(i)

        orders = (np.arange(40), np.arange(40)[::-1], rng.permutation(40))
        threads = [threading.Thread(target=read, args=(order,)) for order in orders]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # threads switch often, between a seek and its read too
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
    assert wrong == []


def test_fijis_micron_unit_gives_the_pixel_size(tmp_path):
    """Fiji writes the ImageJ unit as "micron", which no test wrote: a stack of 160 nm
    pixels read without one is localized at the model's 100 nm (mutation review)."""
    p = tmp_path / "fiji.tif"
    tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint16), imagej=True, resolution=(1 / 0.16, 1 / 0.16),
                     metadata={"axes": "TYX", "unit": "micron"})
    with io.read_stack(p) as stack:
        assert stack.pixel_size_nm == pytest.approx(160.0)


def test_localizations_read_back_sorted_by_frame(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('"frame","x [nm]","y [nm]"\n3,1,1\n1,2,2\n2,3,3\n')
    table = io.read_localizations(p)
    assert table["frame"].tolist() == [1, 2, 3] and table["x [nm]"].tolist() == [2.0, 3.0, 1.0]


def test_an_integer_image_reaching_65536_keeps_its_top_value(tmp_path):
    """Written as uint16 up to 65,535 only: 65,536 would come back as 0 (mutation review)."""
    io.write_tiff(tmp_path / "a.tif", np.array([[0, 65536]], np.int32))
    with io.read_stack(tmp_path / "a.tif") as stack:
        assert stack[0].tolist() == [[0.0, 65536.0]]


def test_an_output_folder_that_cannot_be_made_leaves_no_parent_it_made(tmp_path, monkeypatch):
    """The parents made before mkdir failed stayed behind (a review); a folder that was
    there stays, and a run that fails in the block removes the empty folders it made."""
    from pathlib import Path

    real_mkdir = Path.mkdir

    def failing_at_the_leaf(self, *args, **kwargs):
        if self.name == "leaf":
            real_mkdir(self.parent, parents=True, exist_ok=True)  # its parents first, as mkdir -p does
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", failing_at_the_leaf)
    with pytest.raises(OSError, match="cannot make folder .*leaf \\(No space left on device\\)"):
        with io.output_folder(tmp_path / "new" / "sub" / "leaf"):
            pass
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Path, "mkdir", real_mkdir)
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with io.output_folder(tmp_path / "kept" / "a" / "b"):
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("chunk", [7, 1 << 24])  # scan pieces shorter than a line, or the whole file
def test_quoted_values_may_hold_commas_as_pandas_excel_and_r_write_them(tmp_path, monkeypatch, chunk):
    """A text value with a comma, quoted as pandas, Excel and R write it, lost its row with
    the warning "field count differs from the header" (the commas were counted on the
    bytes); a quoted label "a,b" was refused as "a comma at the end of every row?"."""
    monkeypatch.setattr("napari_deepcel0.core.localization_csv.SCAN_CHUNK_BYTES", chunk)
    p = tmp_path / "pandas.csv"
    pd.DataFrame({"frame": [1, 1, 2], "x [nm]": [10.0, 20, 30], "y [nm]": [1.0, 2, 3],
                  "note": ["ok", "bead, maybe", "ok"]}).to_csv(p, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = io.read_localizations(p)
    assert table["x [nm]"].tolist() == [10.0, 20.0, 30.0] and table["note"].tolist() == ["ok", "bead, maybe", "ok"]
    # R quotes every text value and label; a quote in a value is written twice; a value may span lines
    p.write_bytes(b'"frame","x [nm]","y [nm]","a,b","note"\r\n1,10,1,5,"say ""hi"", then"\r\n2,20,2,6,"two\r\nlines"\r\n')
    table = io.read_localizations(p)
    assert list(table.columns) == ["frame", "x [nm]", "y [nm]", "a,b", "note"]
    assert table["note"].tolist() == ['say "hi", then', "two\r\nlines"] and table["a,b"].tolist() == [5.0, 6.0]
    # a row of another field count in such a file is still skipped with a warning naming its line, and a
    # quoted comma at the end of every row is still refused
    p.write_text('frame,x [nm],y [nm],note\n1,10,1,"a, b"\n2,20\n3,30,3,c\n')
    with pytest.warns(UserWarning, match=r"skipped 1 row\(s\) whose field count differs from the header's 4 \(the "
                                         r"first, on line 3, has 2\)"):
        table = io.read_localizations(p)
    assert table["frame"].tolist() == [1, 3] and table["note"].tolist() == ["a, b", "c"]
    p.write_text('frame,x [nm],y [nm]\n1,10,"1",\n2,20,"2",\n')
    with pytest.raises(io.LocalizationFileError, match=r"none of its 2 row\(s\) has the header's 3 fields"):
        io.read_localizations(p)


@pytest.mark.parametrize("text, message", [
    ('frame,x [nm],y [nm],note\n1,10,1,"oops\n2,20,2,ok\n3,30,3,ok\n', r"line 2: cannot split the row into fields "
                                                                       r"\(unexpected end of data\)"),
    ('frame,x [nm],y [nm],note\n1,10,1,ok\n2,20,2,"a"b\n', r"line 3: cannot split the row into fields \(',' expected"),
    ('"frame,x [nm],y [nm]\n1,10,1\n', "the header line has a double quote that opens a column name and none that "
                                       "closes it"),
    ('frame,x [nm]\r,y [nm]\n1,10,1\n', "cannot split the header line into column names"),  # line breaks of 2 kinds
])
def test_a_quote_that_is_not_closed_is_refused_not_read_as_one_long_value(tmp_path, text, message):
    """An unclosed quote would take every row after it into one value (a row or the whole
    file lost): where the rows end would be a guess."""
    p = tmp_path / "unclosed.csv"
    p.write_text(text)
    with pytest.raises(io.LocalizationFileError, match=message):
        io.read_localizations(p)


@pytest.mark.parametrize("labels", ["frame,x [nm],y [nm],xnano,ynano", "frame,xnano,ynano,x [nm]",
                                    "frame,x [nm],y [nm],xnano"])
def test_x_in_nm_beside_isbi_columns_is_refused(tmp_path, labels):
    """x [nm] beside xnano/ynano read the file as ISBI ground truth: x came from xnano, and
    x [nm] and every other column were dropped without a word. xnano without ynano makes
    no ISBI file: it is an extra column (it was refused as giving x, which it does not)."""
    p = tmp_path / "both.csv"
    p.write_text(labels + "\n" + "\n".join(",".join([str(k + 1)] + [str(10 * (k + 1) + j) for j in range(
        labels.count(","))]) for k in range(3)) + "\n")
    if "ynano" not in labels:
        assert io.read_localizations(p)[["x [nm]", "xnano"]].values.tolist() == [[10, 12], [20, 22], [30, 32]]
        return
    with pytest.raises(io.LocalizationFileError, match=r"the columns '(x \[nm\]|xnano)' and '(xnano|x \[nm\])' both "
                                                       r"give 'x \[nm\]'; keep one of them"):
        io.read_localizations(p)


@pytest.mark.parametrize("extra, message", [
    ({"x [um]": [0.01, 0.02, 0.03]}, r"'x \[nm\]' and 'x \[um\]' both give 'x \[nm\]'"),
    ({"x": [1.0, 2, 3]}, r"'x \[nm\]' and 'x' both give 'x \[nm\]'"),
    ({"Frame": [1, 1, 1]}, r"'frame' and 'Frame' both give 'frame'"),
    ({"sigma [px]": [1.0, 1, 1]}, r"'sigma \[px\]' is in camera pixels, which the reader converts to 'sigma \[nm\]' "
                                  r"only when given the pixel size"),
    ({"xnano": [1.0, 2, 3], "ynano": [1.0, 2, 3]}, r"'x \[nm\]' and 'xnano' both give 'x \[nm\]'; 'y \[nm\]' and "
                                                   r"'ynano' both give 'y \[nm\]'"),
    ({"ID": [7, 8, 9]}, r"'ID' is read as an id column, which is dropped"),
    ({"sigma [um]": [0.1, 0.1, 0.1]}, r"'sigma \[um\]' is read back as 'sigma \[nm\]' \(converted from um\)"),
    ({"sigma": [1.0, 1, 1]}, r"'sigma' is read back as 'sigma \[nm\]' \(a length without a unit is read as nm\)"),
    ({"z [furlong]": [1.0, 1, 1]}, r"'z \[furlong\]' has a unit the reader does not know"),
    ({" note": [1.0, 1, 1]}, r"' note' is read back as 'note'"),
])
def test_the_writer_refuses_columns_the_reader_would_refuse_or_read_otherwise(tmp_path, extra, message):
    """The writer wrote files that read_localizations then refused (two columns giving x
    or frame, sigma in pixels) or read otherwise (xnano beside x [nm]: an ISBI file)."""
    table = _table(3).assign(**extra)
    with pytest.raises(ValueError, match=f"cannot write .*t.csv: read back, the file would not give this table: "
                                         f"{message}"):
        io.write_thunderstorm_csv(tmp_path / "t.csv", table)
    assert list(tmp_path.iterdir()) == []


def test_the_columns_this_package_writes_read_back_as_written(tmp_path):
    table = _table(3).assign(**{"offset [photon]": 1.0, "uncertainty [nm]": 5.0, "sigma [nm]": 120.0,
                                "bkgstd [photon]": 2.0, "z [nm]": 0.0, "id": [9, 8, 7], "": 3.0})
    back = io.read_localizations(io.write_thunderstorm_csv(tmp_path / "t.csv", table))
    assert sorted(back.columns) == sorted(c for c in table.columns if c != "id")
    twice = pd.concat([_table(3), _table(3)[["frame"]]], axis=1)  # numpy's "operands could not be broadcast" before
    with pytest.raises(ValueError, match="'frame' names more than one column"):
        io.write_thunderstorm_csv(tmp_path / "twice.csv", twice)
    with pytest.raises(ValueError, match="contains a quote, comma or line break"):  # read back as two lines elsewhere
        io.write_thunderstorm_csv(tmp_path / "cr.csv", _table(3).assign(**{"a\rb": 1.0}))


def test_an_output_behind_a_symbolic_link_is_checked_where_the_link_points(tmp_path, monkeypatch):
    """The link's own folder was checked while atomic_write writes the file it points to:
    a link into a missing folder failed only after the whole run."""
    missing = tmp_path / "latest.csv"
    missing.symlink_to(tmp_path / "nowhere" / "x.csv")
    with pytest.raises(FileNotFoundError, match=r"latest\.csv \(a link to .*nowhere/x\.csv\): folder .*nowhere does "
                                                r"not exist"):
        outputs.check_output_path(missing)
    (tmp_path / "results").mkdir()
    dangling = tmp_path / "next.csv"  # a link to a file to be made, in a folder that is there: fine
    dangling.symlink_to(tmp_path / "results" / "x.csv")
    checked = []
    real = outputs.check_writable_folder
    monkeypatch.setattr(outputs, "check_writable_folder", lambda folder: checked.append(folder) or real(folder))
    assert outputs.check_output_path(dangling) == dangling and checked == [tmp_path / "results"]
    io.write_thunderstorm_csv(dangling, _table(2))
    assert dangling.is_symlink() and len(io.read_localizations(tmp_path / "results" / "x.csv")) == 2
    folder = tmp_path / "folder.csv"
    folder.symlink_to(tmp_path / "results")
    with pytest.raises(IsADirectoryError, match=r"folder\.csv \(a link to .*results\) is a folder"):
        outputs.check_output_path(folder)
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(OSError, match=r"a\.csv: cannot follow the symbolic link"):
        outputs.check_output_path(tmp_path / "a.csv")


def test_a_tiff_cut_short_by_a_full_disk_says_no_space_is_left(tmp_path, monkeypatch):
    """NumPy's short write, which tifffile passes on, read "cannot write frames.tif: 655360
    requested and 22352 written" on a full disk (the CSV said "No space left on device")."""
    target = tmp_path / "frames.tif"
    target.write_bytes(b"old")

    def short_write(self, data, *args):  # as numpy's tofile on a full disk
        self._fh.write(b"\0" * 100)
        raise OSError(f"{data.nbytes} requested and 100 written")

    monkeypatch.setattr(tifffile.FileHandle, "write_array", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: mock.Mock(free=0))
    with pytest.raises(OSError, match=r"cannot write .*frames\.tif: No space left on device \(only 100 of 8,192 bytes "
                                      r"could be written\)") as caught:
        io.write_tiff(target, np.zeros((2, 32, 64), np.uint16))
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["frames.tif"]
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: mock.Mock(free=10**12))  # room left: no guess
    with pytest.raises(OSError, match=r"could not be written whole \(only 100 of 8,192 bytes could be written; a "
                                      r"full quota or a file-size limit\?\)"):
        io.write_tiff(target, np.zeros((2, 32, 64), np.uint16))
    assert target.read_bytes() == b"old"
