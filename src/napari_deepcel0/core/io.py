"""Reading SMLM TIFF stacks lazily, and reading/writing localization tables.

Localization tables are pandas DataFrames with ThunderSTORM column names:
``frame`` (1-based), ``x [nm]``, ``y [nm]`` and optional further columns
(``intensity [photon]``, ``sigma [nm]``, ``uncertainty [nm]``, ``confidence``, ...).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import warnings
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import tifffile

from .acquisition import is_whole_number

FRAME, X_NM, Y_NM = "frame", "x [nm]", "y [nm]"
INTENSITY = "intensity [photon]"

# The process's umask, read once at import (reading it means setting it, which would
# briefly affect files that other threads create): atomic_write gives its files the
# permissions a plain open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)

#: ThunderSTORM's column order; columns a table has are written in this order,
#: followed by any other columns.
THUNDERSTORM_COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "sigma [nm]",
    INTENSITY,
    "offset [photon]",
    "bkgstd [photon]",
    "uncertainty [nm]",
)

#: ImageJ *Info* of the TIFFs of computed images (renders, maps), followed by their kind
OUTPUT_INFO_PREFIX = "napari-deepcel0 output: "
#: ... and, on a line of its own, the 1-based camera frame of the first plane (maps)
FIRST_FRAME_INFO = "first frame"
#: rows formatted at a time when writing a CSV (the text of all rows at once took 8.7 GB
#: for 10 million localizations)
CSV_CHUNK_ROWS = 100_000
#: bytes of a localization CSV scanned at a time when its lines are counted (:func:`_scan_lines`)
SCAN_CHUNK_BYTES = 1 << 24
#: frame numbers above this are refused (a float64 CSV value is no exact integer beyond it)
MAX_FRAME_NUMBER = 2**53
#: x and y beyond this many nm (a metre) are refused as positions: no field of view is that
#: large, and beyond 1e154 nm the matching's distances overflowed with SciPy's message
MAX_COORDINATE_NM = 1e9


def unusable_positions(xy: np.ndarray) -> np.ndarray:
    """The rows of ``xy`` (n, 2; nm) whose x or y is no finite number within
    +-:data:`MAX_COORDINATE_NM`: refused by the CSV reader and writer and by matching."""
    xy = np.asarray(xy, dtype=np.float64)
    return ~(np.isfinite(xy) & (np.abs(xy) <= MAX_COORDINATE_NM)).all(axis=1)


POSITION_RULE = f"a finite number of nm within +-{MAX_COORDINATE_NM:.0e}"
_LENGTH_TO_NM = {"pm": 1e-3, "\u00c5": 0.1, "nm": 1.0, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "micron": 1e3,
                 "microns": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9}


#: a file whose only axis besides rows and columns is channels (ImageJ/OME "C") with at
#: most this many planes warns that they are read as frames (:class:`ChannelsWarning`)
MOST_CHANNELS = 4


class ChannelsWarning(UserWarning):
    """A TIFF file calls its few planes channels; they are read as frames."""


class PixelShapeWarning(UserWarning):
    """A TIFF file's metadata gives pixels of different width and height; the width is used."""


class StackError(ValueError):
    """A TIFF file that cannot be used as an SMLM stack (the message names it)."""


class LocalizationFileError(ValueError):
    """A localization/ground-truth CSV that cannot be read (the message names it)."""


# ======================================================================= TIFF
class FrameStack:
    """A TIFF stack of camera frames, read lazily.

    Frames are memory-mapped when the file stores them uncompressed and contiguous,
    otherwise read page by page, so a stack larger than memory can be streamed.
    Indexing returns float32 arrays: ``stack[i]`` is one (rows, cols) frame,
    ``stack[a:b]`` is (n, rows, cols).

    Attributes
    ----------
    shape : (n_frames, rows, cols)
    dtype : the dtype stored in the file
    pixel_size_nm : float or None, from ImageJ or OME metadata when present, else from
        the TIFF resolution tags (see :func:`_pixel_size_nm`)
    output : str or None, the kind of image this package computed (e.g. ``"render"``)
        when it wrote the file with :func:`write_tiff`'s ``output``; None for frames
    first_frame : int, the 1-based camera frame of the file's first plane when
        :func:`write_tiff` recorded it (fine-grid maps of frames 4-6: 4); else 1

    A frame that cannot be read (a damaged or truncated file) raises :class:`StackError`
    naming the file and the frame; a file that announces more frames than it holds
    (ImageJ's frame count) is refused when opened. Threads may read frames at once (the
    viewer and a run).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()  # page reads seek and read one file handle: one thread at a time
        if not self.path.exists():
            raise StackError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise StackError(f"{self.path}: is a folder, not a TIFF file (for a folder of one-frame TIFFs, make "
                             "them one stack first, e.g. Fiji's File > Import > Image Sequence, then save as TIFF)")
        with _tifffile_log() as log:  # tifffile logs what it finds broken (to stderr unless caught)
            try:
                self._tif = tifffile.TiffFile(self.path)
            except Exception as exc:  # tifffile raises several types for junk
                raise StackError(f"{self.path}: not a readable TIFF file ({exc})") from exc
            try:
                self._open_series(log)
                broken = [m for m in log if "invalid page offset" in m]
                if broken:  # the chain of pages ends inside the file: the frames after it are cut off
                    raise StackError(f"{self.path}: the file ends inside its list of frames ({broken[0]}; "
                                     f"{len(self)} frame(s) found): it is truncated or damaged (an interrupted "
                                     "copy or a full disk?); copy or save it again")
            except Exception as exc:
                for companion in getattr(self, "_companions", []):
                    companion.close()
                self._tif.close()
                if isinstance(exc, tifffile.TiffFileError):  # its pages listed lazily: a cut found only now
                    raise StackError(f"{self.path}: not a readable TIFF file ({exc}): it is truncated or damaged "
                                     "(an interrupted copy or a full disk?); copy or save it again") from exc
                raise

    def _check_no_planes_missing(self, pages: list, log: list[str]) -> None:
        """Refuse an OME series whose metadata lists planes (``pages``: the series' page
        list, None where one is missing) that tifffile cannot find: a companion file of a
        multi-file acquisition (Micro-Manager, Bio-Formats: ``name_1.ome.tif``, ...) not
        copied with the first, or an acquisition cut short. tifffile reads them as frames
        of zeros, which localize to nothing."""
        missing = [i for i, page in enumerate(pages) if page is None]
        if not missing:
            return
        files = sorted({m for line in log for m in re.findall(r"failed to read '([^']+)'", line)})
        reason = (f"the companion file(s) {', '.join(files)} of this multi-file acquisition are not in "
                  f"{self.path.parent} (copy them beside it)" if files else
                  "the file holds fewer planes than its metadata lists (an acquisition cut short, or a "
                  "truncated copy?)")
        raise StackError(f"{self.path}: {len(missing)} of the {len(pages)} frames its OME metadata lists "
                         f"are missing (frames {_spans(np.asarray(missing) + 1)}): {reason}; tifffile would read "
                         "them as blank frames")

    def _open_series(self, log: list[str]) -> None:
        series = self._the_series()
        # an OME series lists its planes, in this file and in companion files (None where
        # one is missing); other kinds may list only their first page: the rest are read
        # when asked for (listing them all took 4 s for 50,000 frames)
        ome_pages = list(getattr(series, "_pages", None) or []) if series.kind.lower() == "ome" else []
        self._check_no_planes_missing(ome_pages, log)
        self.dtype = np.dtype(series.dtype)
        self.shape = self._frame_layout(series)
        self._open_frames(series, ome_pages)
        self._read_metadata()

    def _the_series(self):
        """The file's one image series, read as one stack when tifffile wrote it a frame
        or a batch at a time; StackError for a file without one, or with several."""
        one_by_one = _written_frame_by_frame(self._tif)
        if one_by_one:  # known from two pages: listing tifffile's series of such a file took minutes
            self._tif.close()
            self._tif = tifffile.TiffFile(self.path, is_shaped=False)
        if not self._tif.series:
            raise StackError(f"{self.path}: the TIFF file holds no image data")
        if len(self._tif.series) > 1 and _frame_by_frame(self._tif.series, self._tif.is_shaped):
            # written one frame or batch at a time (tifffile's imwrite(append=True), TiffWriter
            # loops): one "shaped" series per write; read the pages as one stack, as Fiji does
            self._tif.close()
            self._tif = tifffile.TiffFile(self.path, is_shaped=False)
        if len(self._tif.series) > 1:  # e.g. a preview + the stack, or OME multi-position files
            shapes = ", ".join(f"{tuple(s.shape)} ({s.axes})" for s in self._tif.series[:6])
            if len({(tuple(s.shape[-2:]), s.dtype) for s in self._tif.series}) > 1 and (one_by_one or all(
                    len(s.shape) == 2 for s in self._tif.series)):
                raise StackError(f"{self.path}: the TIFF file holds frames of different sizes or types ({shapes}); "
                                 "the frames of an SMLM stack all have one size")
            raise StackError(f"{self.path}: the TIFF file holds {len(self._tif.series)} image series ({shapes}); "
                             "save the stack to analyse as a file of its own")
        return self._tif.series[0]

    def _frame_layout(self, series) -> tuple[int, int, int]:
        """(frames, rows, cols) of the series, after checking that it is a stack of gray
        frames (one frame, or frames along one axis besides rows and columns)."""
        shape, axes = tuple(series.shape), series.axes
        if "S" in axes and shape[axes.index("S")] > 1:
            raise StackError(
                f"{self.path}: RGB/multi-sample image of shape {shape} (axes {axes}); "
                "an SMLM stack must be single-channel grayscale frames (tifffile.imwrite stores 3 or 4 frames "
                "as RGB by default: if these are frames, write them with photometric='minisblack')"
            )
        if self.dtype.kind not in "uif" or self.dtype.itemsize > 8:
            raise StackError(f"{self.path}: unsupported pixel type {self.dtype} (need integer or float)")
        if 0 in shape:
            raise StackError(f"{self.path}: empty image of shape {shape} (no frames or no pixels)")
        kept = [(n, a) for n, a in zip(shape, axes) if n != 1 or a in "YX"]
        if len(kept) < 2 or kept[-1][1] != "X" or kept[-2][1] != "Y":
            raise StackError(f"{self.path}: cannot find the image rows and columns in shape {shape} (axes {axes})")
        if len(kept) == 3 and kept[0][1] == "C" and kept[0][0] <= MOST_CHANNELS:
            # tifffile.imwrite(imagej=True) calls the planes of any 3-D array channels, so a
            # stack of frames can be CYX; a few channels are more likely colours
            warnings.warn(f"{self.path} calls its {kept[0][0]} planes channels (axes {axes}); they are read as "
                          "frames: if they are colour channels, split them first (Fiji: Image > Color > Split "
                          "Channels) and save the one to localize", ChannelsWarning, stacklevel=4)
        if len(kept) > 3:
            raise StackError(
                f"{self.path}: {len(kept)}-D image of shape {shape} (axes {axes}); expected a 2D frame "
                "or a 3D stack of frames (frames, rows, cols); split channels/z first"
            )
        rows, cols = kept[-2][0], kept[-1][0]
        n_frames = kept[0][0] if len(kept) == 3 else 1
        announced = _announced_frames(self._tif)
        if announced is not None and announced > n_frames:
            raise StackError(f"{self.path}: the file announces {announced} frames but holds {n_frames} readable "
                             "one(s): it is truncated or damaged (an interrupted copy or a full disk?); "
                             "copy or save it again")
        return int(n_frames), int(rows), int(cols)

    def _open_frames(self, series, ome_pages: list) -> None:
        """Memory-map the frames, or keep their pages to read one at a time (or, for an
        unusual layout, read them whole); a compression this installation cannot decode
        is refused now."""
        n_frames, rows, cols = self.shape
        self._closed = False
        # the other files of a multi-file OME series, kept open while the stack is: tifffile
        # closes them after reading the metadata and warned "reading array from closed file"
        # for every frame read from them (tens of thousands of lines for a long acquisition)
        self._companions = list({id(p.parent): p.parent for p in ome_pages
                                 if p is not None and p.parent is not self._tif}.values())
        for companion in self._companions:
            if companion.filehandle.closed:
                companion.filehandle.open()
        self._memmap = None
        self._pages = None
        try:
            self._memmap = _memmap(self._tif, series).reshape(self.shape)
        except Exception:
            pages = [p for p in series.pages if p is not None]
            if len(pages) == n_frames and all(tuple(p.shape) == (rows, cols) for p in pages[:1]):
                self._pages = pages
            else:  # unusual layout: fall back to reading it whole
                try:
                    self._memmap = np.asarray(series.asarray()).reshape(self.shape)
                except Exception as exc:
                    raise StackError(f"{self.path}: the file announces {n_frames} frames of {rows} x {cols} pixels "
                                     f"but they cannot be read ({exc}): it is truncated or damaged (an interrupted "
                                     "copy or a full disk?); copy or save it again") from exc
        try:  # a compression this installation cannot decode is refused now, not mid-run
            self._read(0)
        except StackError as exc:
            if _missing_codec(exc.__cause__):
                raise
            # a damaged first frame: the others may read (the error comes when frame 1 is read)

    def _read_metadata(self) -> None:
        """The pixel size (a warning for non-square pixels) and, for an image this package
        wrote, its kind and first frame."""
        self.pixel_size_nm = _pixel_size_nm(self._tif)
        height_nm = _pixel_size_nm(self._tif, "Y")
        if self.pixel_size_nm and height_nm and not math.isclose(height_nm, self.pixel_size_nm, rel_tol=1e-3):
            warnings.warn(f"{self.path}: its metadata gives pixels {self.pixel_size_nm:.4g} nm wide and "
                          f"{height_nm:.4g} nm high; square pixels are assumed, {self.pixel_size_nm:.4g} nm (the "
                          "width): y positions are off by the ratio unless the height is a metadata error "
                          "(resample the stack to square pixels otherwise)", PixelShapeWarning, stacklevel=4)
        info = str((self._tif.imagej_metadata or {}).get("Info", "")) if self._tif.is_imagej else ""
        self.output, self.first_frame = _output_info(info)

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1:]

    @property
    def ndim(self) -> int:
        return 3

    def _check_open(self) -> None:
        if self._closed:  # not "damaged": the memory map and pages are gone after close()
            raise ValueError(f"{self.path}: the stack was closed; open it again with read_stack")

    def _read(self, index: int) -> np.ndarray:
        self._check_open()
        try:
            if self._memmap is not None:
                return np.asarray(self._memmap[index])
            with self._lock:
                return self._pages[index].asarray()
        except Exception as exc:  # zlib, tifffile, OSError...: whatever a damaged page raises
            if _missing_codec(exc):  # not the file's fault
                raise StackError(f"{self.path}: frame {index + 1} cannot be decoded ({exc}): its compression needs "
                                 "the imagecodecs package (pip install imagecodecs), or save the stack uncompressed"
                                 ) from exc
            raise StackError(f"{self.path}: frame {index + 1} cannot be read ({exc}); the file is damaged or "
                             "truncated") from exc

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            return self._float32(self._frame_index(int(key)))
        if isinstance(key, slice):
            idx = range(*key.indices(n))
        else:
            idx = self._frame_indices(key)
        out = np.empty((len(idx),) + self.frame_shape, dtype=np.float32)
        for j, i in enumerate(idx):
            out[j] = self._float32(i)
        return out

    def _frame_indices(self, key) -> list[int]:
        """0-based frame indices from a list/array key: whole numbers (negative from the
        end) or a boolean mask of one entry per frame, as NumPy takes them."""
        n = len(self)
        if isinstance(key, tuple):  # stack[0, 1] read frames 0 and 1, not row 1 of frame 0
            raise IndexError("a FrameStack takes frames only (an index, a slice, a list or a boolean mask); crop "
                             "the frames after reading them, e.g. stack[a:b][:, r0:r1, c0:c1]")
        keys = np.asarray(key)
        if keys.size == 0 and keys.dtype.kind in "fiub":  # stack[[]]: no frames, as NumPy gives
            return []
        if keys.dtype == bool:
            if keys.shape != (n,):
                raise IndexError(f"a boolean frame mask needs one entry per frame ({n}), got shape {keys.shape}")
            return np.flatnonzero(keys).tolist()
        if keys.dtype.kind not in "iu" or keys.ndim > 1:
            raise IndexError(f"a FrameStack takes a frame index, a slice, a list of frame indices or a boolean "
                             f"mask, got {key!r}; crop frames after reading them, e.g. stack[a:b][:, r0:r1, c0:c1]")
        return [self._frame_index(k) for k in keys.ravel().tolist()]

    def _frame_index(self, key: int) -> int:
        """The 0-based frame index ``key`` (negative: from the end), checked."""
        n = len(self)
        i = key + n if key < 0 else key
        if not 0 <= i < n:
            raise IndexError(f"frame index {key} out of range for {n} frames")
        return i

    def _float32(self, index: int) -> np.ndarray:
        """Frame ``index`` as float32; a float64 value beyond float32's range is an error
        that says so (the cast made it infinite, then reported as an infinite pixel)."""
        frame = self._read(index)
        if frame.dtype.kind == "f" and frame.dtype.itemsize > 4:
            biggest = float(np.max(np.abs(frame), initial=0.0, where=np.isfinite(frame)))
            if biggest > float(np.finfo(np.float32).max):  # a float32 scalar would cast biggest (numpy 2)
                raise StackError(f"{self.path}: frame {index + 1} holds values beyond the float32 range (up to "
                                 f"{biggest:.3g}); rescale the stack")
        return frame.astype(np.float32, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        self._closed = True
        self._memmap = None
        self._pages = None
        for companion in self._companions:
            companion.close()
        self._tif.close()

    def __getstate__(self) -> dict:
        """Pickled as its path (multiprocessing, joblib and dask workers reopen the file):
        an open file handle cannot be pickled."""
        self._check_open()
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __enter__(self) -> "FrameStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        px = f", pixel {self.pixel_size_nm:g} nm" if self.pixel_size_nm else ""
        return f"FrameStack({str(self.path)!r}, {self.shape[0]} frames of {self.shape[1]}x{self.shape[2]} {self.dtype}{px})"


def read_stack(path: str | os.PathLike) -> FrameStack:
    """Open a TIFF stack lazily (see :class:`FrameStack`)."""
    return FrameStack(path)


#: nm per unit of the TIFF ResolutionUnit tag (tifffile's codes 4 and 5 included); inches
#: are left out: 72 or 300 dpi is what image editors write, not a camera's pixel
_RESOLUTION_UNIT_NM = {3: 1e7, 4: 1e6, 5: 1e3}


def _pixel_size_nm(tif: tifffile.TiffFile, axis: str = "X") -> float | None:
    """Pixel width (``axis`` "X") or height ("Y") from OME or ImageJ metadata, else from
    the standard resolution tags, in nm; or None. Each source catches only its own
    format's errors (the size is a hint: reading the frames never fails because of it),
    and the warnings for an implausible size are raised outside them: an ``except
    Exception`` around it all turned them, under warnings-as-errors, into "no pixel size"."""
    pixels = _ome_pixels(tif, axis)
    if pixels is not None:
        return _ome_pixel_size(pixels, tif, axis)
    if tif.is_imagej:  # its resolution tags hold pixels per ImageJ unit, or per pixel without one
        return _imagej_pixel_size(tif, axis)
    return _resolution_tag_pixel_size(tif, axis)


def _ome_pixels(tif: tifffile.TiffFile, axis: str) -> dict[str, str] | None:
    """The attributes of the OME ``Pixels`` element stating the pixel size along ``axis``
    (the height's too when it states the width alone: square pixels, not the resolution
    tags' height); None without one, or when the OME-XML cannot be parsed."""
    if not (tif.is_ome and tif.ome_metadata):
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("}Pixels") or el.tag == "Pixels":
            if el.get(f"PhysicalSize{axis}") is not None or el.get("PhysicalSizeX") is not None:
                return el.attrib
    return None


def _ome_pixel_size(pixels: dict[str, str], tif: tifffile.TiffFile, axis: str) -> float | None:
    """The pixel size the OME ``Pixels`` attributes state along ``axis``, in nm (micrometres
    when no unit is given); None for a width alone (the height asked), "pixel" units (no
    calibration) or a number that is none; a unit not known here warns."""
    size = pixels.get(f"PhysicalSize{axis}")
    if size is None:
        return None
    unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
    if unit not in _LENGTH_TO_NM:
        if unit != "pixel":
            _ignored_size(tif, axis, f"the pixel size in {unit!r}, a unit this reader does not know")
        return None
    try:
        size_nm = float(size) * _LENGTH_TO_NM[unit]
    except ValueError:
        return None
    return _plausible(size_nm, tif, axis)


def _imagej_pixel_size(tif: tifffile.TiffFile, axis: str) -> float | None:
    """ImageJ's pixel size: the resolution tag (pixels per unit) in the metadata's length
    unit (Fiji's "micron", or "\\u00B5m" as ImageJ escapes it), in nm; None without one."""
    tag = tif.pages[0].tags.get(f"{axis}Resolution")
    if tif.imagej_metadata is None or tag is None:
        return None
    try:
        unit = str(tif.imagej_metadata.get("unit", "")).strip()
        unit = unit.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\u" in unit else unit
        num, den = tag.value
    except (ValueError, TypeError):  # (a bad escape is a UnicodeDecodeError)
        return None
    if unit not in _LENGTH_TO_NM or not num > 0:
        return None
    return _plausible(den / num * _LENGTH_TO_NM[unit], tif, axis)


def _resolution_tag_pixel_size(tif: tifffile.TiffFile, axis: str) -> float | None:
    """The standard resolution tags' pixel size in nm, when in cm, mm or um and 10-2,000 nm
    (a camera pixel in the sample): any program writes these tags, a camera's maybe with
    the sensor's pixel (6.5 um), which the microscopy formats' 1-100,000 nm would take."""
    tags = tif.pages[0].tags
    unit, resolution = tags.get("ResolutionUnit"), tags.get(f"{axis}Resolution")
    if unit is None or resolution is None:
        return None
    try:
        nm_per_unit = _RESOLUTION_UNIT_NM.get(int(unit.value))
        num, den = resolution.value
    except (ValueError, TypeError):
        return None
    if nm_per_unit is None or not num > 0:
        return None
    return _plausible(den / num * nm_per_unit, tif, axis, lowest=10.0, highest=2000.0)


def _plausible(size_nm: float, tif: tifffile.TiffFile, axis: str, lowest: float = 1.0,
               highest: float = 1e5) -> float | None:
    """``size_nm`` when it can be a camera pixel in the sample (``lowest``-``highest`` nm);
    else None, with a warning (once, for the width) that the metadata's value is ignored:
    "carries no pixel size" hid a unit mistake (a size in nm written as um) from the user."""
    if math.isfinite(size_nm) and lowest <= size_nm <= highest:
        return float(size_nm)
    _ignored_size(tif, axis, f"a pixel size of {size_nm:g} nm, which is no camera pixel in the sample "
                             f"({lowest:,g}-{highest:,g} nm; a value in the wrong unit?)")
    return None


def _ignored_size(tif: tifffile.TiffFile, axis: str, stated: str) -> None:
    """Warn that the metadata's pixel size (``stated``) is ignored: once, for the width."""
    if axis == "X":
        warnings.warn(f"{tif.filename}: its metadata states {stated}: ignored", UserWarning, stacklevel=3)


def _missing_codec(exc: BaseException | None) -> bool:
    """True for tifffile's error when a compression needs a codec that is not installed."""
    return isinstance(exc, ImportError) or "imagecodecs" in str(exc)


def _spans(numbers: np.ndarray, most: int = 4) -> str:
    """Sorted whole numbers as ranges: ``"4-6, 9"`` (the first ``most`` ranges, then "...")."""
    breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
    parts = [f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in np.split(numbers, breaks)]
    return ", ".join(parts[:most]) + (", ..." if len(parts) > most else "")


def _written_frame_by_frame(tif: tifffile.TiffFile) -> bool:
    """True for a file tifffile wrote one 2-D frame at a time (``imwrite(append=True)``,
    a ``TiffWriter.write`` loop), told by its first two pages, each describing a frame of
    the same shape: listing its series, one a frame, compares each with every other
    (4,000 frames: 4 s; 8,000: 35 s on the GUI thread), while read without the shaped
    descriptions its pages are one series at once."""
    if not tif.is_shaped:
        return False
    try:
        shapes = [json.loads(tif.pages[i].shaped_description or "{}").get("shape") for i in (0, 1)]
    except (IndexError, ValueError, AttributeError):  # one page, or a description that is no JSON
        return False
    return shapes[0] == shapes[1] and isinstance(shapes[0], list) and len(shapes[0]) == 2


def _memmap(tif: tifffile.TiffFile, series) -> np.ndarray:
    """The series' pixels memory-mapped from the open file, when they lie uncompressed in
    one block (as ``tifffile.memmap``, which opens and parses the file again)."""
    if series.dataoffset is None:
        raise ValueError("the frames do not lie in one uncompressed block")
    dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
    return np.memmap(tif.filehandle.path, dtype=dtype, mode="r", offset=series.dataoffset, shape=tuple(series.shape))


def _frame_by_frame(series, shaped: bool) -> bool:
    """True when every series is one 2-D image of the same shape and type, or, in a file
    tifffile wrote (``shaped``), every series a stack of such images (frames written in
    batches, as Fiji reads them: one stack). A 2-D image beside stacks (a dark or
    preview frame) is not a frame of them."""
    first = series[0]
    dims = {len(s.shape) for s in series}
    if dims != {2} and not (shaped and dims == {3}):
        return False
    return all(s.axes[-2:] == "YX" and s.shape[-2:] == first.shape[-2:] and s.dtype == first.dtype for s in series)


@contextlib.contextmanager
def _tifffile_log():
    """The messages tifffile logs inside the block, as a list (kept from stderr: the
    reasons that matter are raised as :class:`StackError`)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("tifffile"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _announced_frames(tif: tifffile.TiffFile) -> int | None:
    """The number of planes an ImageJ TIFF says it holds (its ``images``), or None."""
    try:
        images = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
        return int(images) if images is not None else None
    except (TypeError, ValueError):
        return None


def _output_info(info: str) -> tuple[str | None, int]:
    """(kind, first frame) from the ImageJ *Info* that :func:`write_tiff` writes:
    ``"napari-deepcel0 output: maps"``, optionally followed by a line ``"first frame: 4"``."""
    if not info.startswith(OUTPUT_INFO_PREFIX):
        return None, 1
    lines = info[len(OUTPUT_INFO_PREFIX):].splitlines()
    first = 1
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip() == FIRST_FRAME_INFO and value.strip().isdigit() and int(value) >= 1:
            first = int(value)
    return (lines[0].strip() if lines else "") or None, first


def imagej_pixels(data: np.ndarray) -> np.ndarray:
    """``data`` in a pixel type ImageJ TIFFs hold (uint8, uint16, int16, float32), with
    the same values: booleans as uint8; other integers as uint16 when their range fits
    it, else int16 when that fits, else float32 (exact up to 2^24); floats as float32."""
    kind = data.dtype.kind
    if kind == "b":
        return data.astype(np.uint8)
    if kind in "ui":
        if data.dtype in (np.uint8, np.uint16, np.int16):
            return data
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if 0 <= lo and hi <= 65535:
            return data.astype(np.uint16)
        if -32768 <= lo and hi <= 32767:
            return data.astype(np.int16)
        return data.astype(np.float32)
    if kind == "f":
        return data.astype(np.float32, copy=False)
    raise ValueError(f"cannot write pixels of type {data.dtype} to a TIFF (need numbers)")


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None = None,
               output: str | None = None, first_frame: int | None = None) -> Path:
    """Write an image or a stack of frames as an ImageJ TIFF (atomically), with the
    pixel size; a 3-D array is marked as time frames (``TYX``), so that Fiji opens it
    as a time series, not as channels. ``output`` (e.g. ``"render"``) marks an image
    this package computed, not camera frames (ImageJ's *Info*, read back as
    :attr:`FrameStack.output`): its pixel size is no camera's. ``first_frame`` (with
    ``output``): the 1-based camera frame of the first plane, e.g. of fine-grid maps
    (read back as :attr:`FrameStack.first_frame`)."""
    path = Path(path)
    data = imagej_pixels(np.asarray(data))
    if data.ndim not in (2, 3):
        raise ValueError(f"cannot write {path}: expected an image or a stack of frames, got shape {data.shape}")
    if first_frame is not None and not (output and is_whole_number(first_frame) and first_frame >= 1):
        raise ValueError(f"first_frame must be a whole number >= 1 and needs output, got {first_frame!r}")
    metadata = {"axes": "TYX" if data.ndim == 3 else "YX"}
    if output:
        metadata["Info"] = OUTPUT_INFO_PREFIX + output
        if first_frame is not None:
            metadata["Info"] += f"\n{FIRST_FRAME_INFO}: {int(first_frame)}"
    kwargs = {}
    if pixel_size_nm:
        kwargs = dict(resolution=(1e3 / pixel_size_nm, 1e3 / pixel_size_nm))
        metadata["unit"] = "um"

    def write(tmp):
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)

    return atomic_write(path, write)


# ================================================================ output files
def check_output_path(path) -> Path:
    """``path`` as a Path, after checking that it can be written: FileNotFoundError
    when its folder does not exist, IsADirectoryError when it is a folder,
    PermissionError when the folder cannot be written in (:func:`check_writable_folder`).
    Call it before a long job so that a typo fails at once, not after the work."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    check_writable_folder(path.parent)
    return path


def check_writable_folder(folder: Path) -> None:
    """PermissionError when no file can be made in ``folder`` (permissions, a read-only
    file system): found by making and removing a small temporary file, which is what
    the writing will need (permission bits alone do not say it)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepcel0-write-test-", dir=folder)
    except OSError as exc:
        raise PermissionError(f"cannot write in folder {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def output_folder(path, files: tuple[str, ...] = ()):
    """``path`` as an existing folder that can be written to, for the block: made when
    missing, with a clear error when it is a file or cannot be written in, or when one of
    the ``files`` to be written there is a folder (:func:`check_output_path`), before any
    work. The folders it made are removed again when the block fails and leaves them
    empty (a run refused for memory or interrupted left an empty folder behind)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder")
    made = [folder for folder in (path, *path.parents) if not folder.exists()]  # deepest first

    def remove_made() -> None:
        for folder in made:
            if not folder.exists():  # (mkdir stopped before it)
                continue
            try:
                folder.rmdir()
            except OSError:  # not empty: it and the folders above it stay
                break

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the parents made before the failure went too (they stayed: a review)
        remove_made()
        raise OSError(f"cannot make folder {path} ({exc.strerror or exc})") from None
    try:
        check_writable_folder(path)
        for name in files:
            check_output_path(path / name)
        yield path
    except BaseException:
        remove_made()
        raise


def atomic_write(path: Path, write) -> Path:
    """Run ``write(tmp_path)`` then move the temp file over ``path``; on any error
    the temp file is removed and an existing ``path`` is left untouched. Inside
    :func:`all_or_nothing` the move waits for the end of the block. A ``path`` that is a
    symbolic link writes the file it points to (the link stays a link)."""
    if Path(path).is_symlink():
        path = Path(path).resolve()
    path = check_output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600, and some writers (safetensors) recreate the file:
        # give it the permissions a plain open() would, after the writing
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        pending = getattr(_transaction, "pending", None)
        if pending is not None:
            pending.append((tmp, path))
            return path
        _replace(tmp, path)
    except OSError as exc:  # a full disk said "[Errno 28] No space left on device", naming no file
        _remove(tmp)
        if str(path) in str(exc):
            raise
        if exc.errno is None:  # ("[Errno None]" otherwise)
            raise OSError(f"cannot write {path}: {exc}") from exc
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(tmp)
        raise
    return path


def _replace(tmp: str, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


_transaction = threading.local()


@contextlib.contextmanager
def all_or_nothing():
    """Files written with :func:`atomic_write` (so :func:`write_tiff`,
    :func:`write_thunderstorm_csv`, ...) inside the block replace their targets only
    when the whole block succeeds, one after the other at its end; on an error (or
    Ctrl-C) none of them does, and the existing files stay as they were. For outputs
    that belong together, such as a simulated stack and its ground truth."""
    if getattr(_transaction, "pending", None) is not None:
        raise RuntimeError("all_or_nothing blocks do not nest")
    _transaction.pending = pending = []
    try:
        yield
        while pending:
            tmp, path = pending.pop(0)
            try:
                _replace(tmp, path)
            except BaseException:
                _remove(tmp)
                raise
    finally:
        _transaction.pending = None
        for tmp, _ in pending:
            _remove(tmp)


# ======================================================================== CSV
def _format_column(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy()
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str).astype(object)
    if arr.dtype.kind == "f":  # str.format over a list: 3 times faster than np.char.mod, the same text
        out = np.array(list(map("{:.10g}".format, arr.astype(np.float64).tolist())), dtype=object)
        out[np.isnan(arr)] = "NaN"
        out[np.isposinf(arr)] = "Infinity"
        out[np.isneginf(arr)] = "-Infinity"
        return out
    out = arr.astype(str).astype(object)
    if any(any(ch in v for ch in '",\n\r') for v in out):
        raise ValueError(f"column {values.name!r} holds text with a quote, comma or line break, which a "
                         "ThunderSTORM CSV cannot hold (its values are unquoted)")
    return out


def write_thunderstorm_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write localizations as a ThunderSTORM CSV, atomically.

    The header has every label in double quotes (``"id","frame","x [nm]",...``);
    values are unquoted with a ``.`` decimal point; NaN and infinities are written as
    ``NaN``/``Infinity``. ``id`` is regenerated (1..n). Frames must be 1-based integers.
    """
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in table.columns]
    if missing:
        raise ValueError(f"cannot write {path}: the table lacks column(s) {missing} (has {list(table.columns)})")
    frames = table[FRAME].to_numpy()
    if len(frames) and (np.any(frames < 1) or np.any(frames != np.round(frames))):
        raise ValueError(f"cannot write {path}: frames must be 1-based integers (min {frames.min()})")
    if len(frames) and frames.max() > MAX_FRAME_NUMBER:  # as read_localizations; int64 wrapped them negative
        raise ValueError(f"cannot write {path}: frame numbers must be at most {MAX_FRAME_NUMBER} (max "
                         f"{frames.max():g})")
    bad = unusable_positions(table[[X_NM, Y_NM]].to_numpy(np.float64))
    if bad.any():  # read_localizations refuses them: a file nobody could read back
        raise ValueError(f"cannot write {path}: {int(bad.sum())} row(s) have an x or y that is not {POSITION_RULE}")
    for c in table.columns:
        if any(ch in str(c) for ch in '",\n'):
            raise ValueError(f"cannot write {path}: column name {c!r} contains a quote, comma or newline")
    out = table.drop(columns=["id"], errors="ignore").copy()
    out[FRAME] = out[FRAME].astype(np.int64)
    out.insert(0, "id", np.arange(1, len(out) + 1, dtype=np.int64))
    ordered = [c for c in THUNDERSTORM_COLUMNS if c in out.columns]
    ordered += [c for c in out.columns if c not in ordered]
    out = out[ordered]

    def write(tmp):
        with open(tmp, "w", newline="\n", encoding="utf-8") as fh:
            fh.write(",".join(f'"{c}"' for c in ordered) + "\n")
            for start in range(0, len(out), CSV_CHUNK_ROWS):  # memory: one chunk's text at a time
                part = out.iloc[start : start + CSV_CHUNK_ROWS]
                try:
                    cols = [_format_column(part[c]) for c in ordered]
                except ValueError as exc:  # the partial file is removed by atomic_write
                    raise ValueError(f"cannot write {path}: {exc}") from None
                lines = cols[0]
                for col in cols[1:]:
                    lines = lines + "," + col
                fh.write("\n".join(lines.tolist()))
                fh.write("\n")

    return atomic_write(Path(path), write)


_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<unit>[^\[\]]*)\])?\s*$")


def _read_csv(source, labels: list[str], skip: int) -> pd.DataFrame:
    """The rows of a localization CSV (a path or a binary file object, UTF-8): numbers
    parsed (fast), other columns text. NaN's spellings (ThunderSTORM's ``NaN``, NumPy's
    ``nan``) are numbers: a word pandas read as text far down a numeric column made it warn
    of "mixed types"."""
    return pd.read_csv(source, header=None, names=labels, skiprows=skip, keep_default_na=False,
                       na_values=NAN_WORDS, skip_blank_lines=True, encoding="utf-8-sig")


def _chunks(data: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, view) of ``data`` in pieces of :data:`SCAN_CHUNK_BYTES`: the scans below
    make arrays of a piece's size, not of the file's."""
    for start in range(0, len(data), SCAN_CHUNK_BYTES):
        yield start, data[start : start + SCAN_CHUNK_BYTES]


def _scan_lines(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The lines of a CSV file's bytes (``uint8``), as ``str.splitlines`` gives them for
    ``\n``, ``\r\n`` or ``\r`` line ends: each line's start and end offsets (the end
    without the line break) and its number of commas. Counted on the bytes, a piece at a
    time: a Python string per line took about 7 times the file's size for 10 million rows."""
    newline = 13 if not any(np.any(piece == 10) for _, piece in _chunks(data)) else 10  # "\r" alone: old Macs
    breaks = np.concatenate([np.zeros(0, np.int64)] + [np.flatnonzero(piece == newline) + start
                                                       for start, piece in _chunks(data)])
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(data)]
    if len(data) and starts[-1] == len(data):  # a final line break ends the last line, it starts none
        starts, ends = starts[:-1], ends[:-1]
    if newline == 10:  # "\r\n": the "\r" is part of the line break
        ends = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 13))
    commas = np.zeros(len(starts), np.int64)
    for start, piece in _chunks(data):
        line = np.searchsorted(starts, np.flatnonzero(piece == 44) + start, side="right") - 1
        if len(line):
            commas[line[0] : line[-1] + 1] += np.bincount(line - line[0])
    return starts, ends, commas


def _check_utf8(path, data: np.ndarray) -> None:
    """A clear error for a file that is not UTF-8 text, decoded a piece at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for _, piece in _chunks(data):
            decoder.decode(piece.tobytes())
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        start = data[:2].tobytes()
        if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            what = "UTF-16 text"
        elif data[:4096].tobytes().count(b"\0"):
            what = "binary data, not text"
        else:
            what = "text in another encoding (Latin-1 or a Windows code page?)"
        raise LocalizationFileError(f"{path}: not UTF-8 ({what}: {exc}); save the CSV as UTF-8") from exc


def _split_label(label: str) -> tuple[str, str | None]:
    m = _UNIT_RE.match(label.strip().strip('"').strip())
    return m.group("name").strip(), (m.group("unit").strip() if m.group("unit") else None)


def column_key(label: str) -> str:
    """A column label's name without its unit and quotes, in lower case
    (``'"X [px]"'`` -> ``"x"``)."""
    return _split_label(str(label))[0].lower()


def is_coordinate_label(label: str) -> bool:
    """True for a column label that names an id, frame, x or y column in any unit
    (``"x"``, ``"X [px]"``, ...): a localization file holds one of each."""
    return column_key(label) in ("id", "frame", "x", "y")


def read_localizations(path: str | os.PathLike, pixel_size_nm: float | None = None) -> pd.DataFrame:
    """Read a localization or ground-truth CSV into a table in nm, frames 1-based.

    Accepted formats:

    - ThunderSTORM CSV: quoted or unquoted ``name [unit]`` labels; ``x``/``y`` in
      ``nm``, ``um`` or ``px`` (``px`` needs ``pixel_size_nm``); ``uncertainty_xy``
      is read as ``uncertainty [nm]``; ``id`` is dropped. This includes the plain
      ``"frame","x [nm]","y [nm]"`` ground-truth files.
    - ISBI 2013 ground truth: ``Ground-truth,frame,xnano,ynano,znano,intensity``.

    Rows whose number of fields differs from the header are skipped with a warning
    (as ThunderSTORM does). Other columns are kept: as numbers, or as text when they
    hold text (with a warning when only some values are text).
    """
    if pixel_size_nm is not None and (isinstance(pixel_size_nm, (bool, np.bool_)) or not isinstance(
            pixel_size_nm, (int, float, np.integer, np.floating)) or not (math.isfinite(pixel_size_nm)
                                                                       and pixel_size_nm > 0)):
        # -100 mirrored every coordinate in px, True read as 1 nm
        raise ValueError(f"pixel_size_nm must be a positive number of nm or None, got {pixel_size_nm!r}")
    path = Path(path).expanduser()
    raw, labels = _read_rows(path)
    if {"xnano", "ynano"} <= {label.lower() for label in labels}:  # ISBI 2013 ground truth
        table, in_pixels = _isbi_columns(path, raw, labels), []
    else:
        table, in_pixels = _thunderstorm_columns(path, raw, labels, pixel_size_nm)
    table = _checked_positions(path, table, labels)
    table.attrs["source"] = str(path)
    if in_pixels:  # the pixel size used, for a reader that chose it for the user (napari's)
        table.attrs["converted_from_pixels"] = {"columns": in_pixels, "pixel_size_nm": float(pixel_size_nm)}
    return table


def _read_rows(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The rows of a CSV file as text or numbers, and its column labels, after checking
    the file and its header line; rows of another field count are skipped with a
    warning."""
    if path.is_dir():
        raise LocalizationFileError(f"{path}: is a folder, not a CSV file")
    if not path.is_file():
        raise LocalizationFileError(f"{path}: no such file")
    data = np.fromfile(path, np.uint8)
    if data[:3].tobytes() == codecs.BOM_UTF8:
        data = data[3:]
    _check_utf8(path, data)
    starts, ends, commas = _scan_lines(data)
    header = data[starts[0] : ends[0]].tobytes().decode("utf-8")
    if not header.strip():  # only then can the whole file be blank
        if all(not bytes(piece).strip() for _, piece in _chunks(data)):
            raise LocalizationFileError(f"{path}: empty file (no header line)")
        raise LocalizationFileError(f"{path}: the first line is blank; it should be the header line")
    labels = [h.strip().strip('"').strip() for h in header.split(",")]
    if header.lstrip().startswith("#"):  # its rows were then said to end in a comma
        raise LocalizationFileError(f"{path}: the first line, {header.strip()[:60]!r}, is a comment; a ThunderSTORM "
                                    "CSV starts with its header line (remove the comment lines)")
    if len(labels) == 1 and (";" in header or "\t" in header):
        separator = "';'" if ";" in header else "a tab"
        raise LocalizationFileError(f"{path}: the columns are separated by {separator}; a ThunderSTORM CSV "
                                    "separates them by commas (save it as comma-separated CSV)")
    if all(_is_number(label) for label in labels if label):
        raise LocalizationFileError(f"{path}: the first line holds numbers, not column names: the file has no header "
                                    "line (add one, e.g. \"frame\",\"x [nm]\",\"y [nm]\")")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LocalizationFileError(f"{path}: the first line names the column(s) {repeated} more than once; it "
                                    "should be the header line (e.g. \"frame\",\"x [nm]\",\"y [nm]\")")
    # a row whose field count differs from the header's is dropped (blank lines pandas skips);
    # when every row is right pandas reads the file itself, which keeps the memory near its size
    keep = (commas + 1 == len(labels)) | (ends == starts)
    keep[0] = False  # the header: pandas is given the labels
    source, skip = path, 1
    if not keep[1:].all():
        dropped = ~keep[1:]
        if dropped.sum() == (ends > starts)[1:].sum():  # no data row left: no table to speak of
            first = int(np.flatnonzero(dropped)[0]) + 1
            raise LocalizationFileError(
                f"{path}: none of its {int(dropped.sum())} row(s) has the header's {len(labels)} fields (the first has "
                f"{int(commas[first]) + 1}; a comma at the end of every row, as some spreadsheets write?)")
        warnings.warn(f"{path}: skipped {int(dropped.sum())} row(s) whose field count differs from the header")
        line_bytes = np.diff(np.r_[starts, len(data)])  # each line with its line break
        source, skip = BytesIO(data[np.repeat(keep, line_bytes)].tobytes()), 0
    del data, starts, ends, commas, keep
    try:
        raw = _read_csv(source, labels, skip)
    except Exception as exc:
        raise LocalizationFileError(f"{path}: cannot parse as CSV ({exc})") from exc
    return raw, labels


def _isbi_columns(path: Path, raw: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The table of an ISBI 2013 ground truth (``frame``, ``xnano``, ``ynano``, ...)."""
    lower = [lab.lower() for lab in labels]
    rename = {labels[lower.index("xnano")]: X_NM, labels[lower.index("ynano")]: Y_NM}
    if "znano" in lower:
        rename[labels[lower.index("znano")]] = "z [nm]"
    if "intensity" in lower:
        rename[labels[lower.index("intensity")]] = INTENSITY
    frame_label = next((lab for lab in labels if lab.lower() == "frame"), None)
    if frame_label is None:
        raise LocalizationFileError(f"{path}: ISBI ground truth without a 'frame' column")
    rename[frame_label] = FRAME
    return pd.DataFrame({new: _numeric(path, old, raw[old]) for old, new in rename.items()})


def _thunderstorm_columns(path: Path, raw: pd.DataFrame, labels: list[str],
                          pixel_size_nm: float | None) -> tuple[pd.DataFrame, list[str]]:
    """The table of a ThunderSTORM-style CSV (lengths in nm), and the labels of the
    columns converted from camera pixels."""
    in_pixels = []  # columns converted from camera pixels with pixel_size_nm
    table = pd.DataFrame(index=raw.index)
    sources = {}  # column of the table -> label of the file's column it came from
    unitless = []  # x/y columns read as nm for want of a unit
    for label in labels:
        name, unit = _split_label(label)
        key = name.lower()
        col = raw[label]
        if key == "id":
            continue
        if key in ("x", "y", "z", "sigma", "sigma1", "sigma2", "uncertainty", "uncertainty_xy", "uncertainty_z"):
            if key in ("x", "y") and unit is None:
                unitless.append(label)
            factor = _length_factor(path, label, unit, pixel_size_nm)
            if unit is not None and unit.lower() in _PIXEL_UNITS:
                in_pixels.append(label)
            target = f"{'uncertainty' if key == 'uncertainty_xy' else key} [nm]"
            values = _numeric(path, label, col) * factor
        elif key == "frame":
            target, values = FRAME, _numeric(path, label, col)
        else:
            target, values = label, _numeric(path, label, col, strict=False)
        if target in sources:
            raise LocalizationFileError(f"{path}: the columns {sources[target]!r} and {label!r} both give "
                                        f"{target!r}; keep one of them")
        sources[target] = label
        table[target] = values
    if unitless:  # ThunderSTORM always writes a unit; other tools often write pixels
        warnings.warn(f"{path}: the column(s) {', '.join(map(repr, unitless))} carry no unit; read as nm (name "
                      "them 'x [px]', 'y [px]' and give the pixel size if they are camera pixels)")
    return table, in_pixels


def _checked_positions(path: Path, table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """``table`` sorted by frame, after checking that it has frames (whole numbers >= 1)
    and finite x and y."""
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in table.columns]
    if missing:
        raise LocalizationFileError(
            f"{path}: missing column(s) {missing}; found {labels}. Expected a ThunderSTORM CSV "
            '(at least "frame","x [nm]","y [nm]") or an ISBI ground-truth file'
        )
    coords = table[[FRAME, X_NM, Y_NM]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(coords[:, 0]) | unusable_positions(coords[:, 1:])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise LocalizationFileError(
            f"{path}: empty, NaN, infinite or out-of-range frame/x/y values in {int(bad.sum())} row(s), the first "
            f"in data row {first + 1} (frame {coords[first, 0]:g}, x {coords[first, 1]:g}, y {coords[first, 2]:g}; "
            f"x and y must each be {POSITION_RULE})"
        )
    frames = table[FRAME].to_numpy()
    if len(frames) and np.any(frames != np.round(frames)):
        raise LocalizationFileError(f"{path}: frame numbers must be integers")
    if len(frames) and frames.min() < 1:
        raise LocalizationFileError(
            f"{path}: frame numbers must be 1-based (found {int(frames.min())}); "
            "ThunderSTORM and ISBI files count frames from 1"
        )
    if len(frames) and frames.max() > MAX_FRAME_NUMBER:
        raise LocalizationFileError(f"{path}: frame number {frames.max():.6g} is too large")
    table[FRAME] = frames.astype(np.int64)
    return table.sort_values(FRAME, kind="stable").reset_index(drop=True)


_NUMBER_WORDS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf", "": "nan"}
#: the values read as NaN in localization files
NAN_WORDS = ["", "NaN", "nan", "NAN", "-nan", "-NaN"]


def _numeric(path, label: str, col: pd.Series, strict: bool = True) -> pd.Series:
    """Column of strings -> floats (ThunderSTORM's NaN/Infinity words accepted).

    A non-numeric value is an error naming the file, column and line; with
    ``strict=False`` (a column the analysis does not use) a column holding text is
    kept as text, with a warning naming the first text value when others are numbers
    (a note typed into one row refused the whole file).
    """
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):  # parsed by read_csv
        return col.astype(np.float64)
    words = col.fillna("nan").astype(str).str.strip().replace(_NUMBER_WORDS)
    values = pd.to_numeric(words, errors="coerce")
    bad = values.isna() & (words != "nan")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        where = f"'{col[bad].iloc[0]}' in column {label!r} (data row {row})"
        if strict:
            raise LocalizationFileError(f"{path}: non-numeric value {where}")
        if not bad.all():
            warnings.warn(f"{path}: text value {where}: the column is kept as text", UserWarning, stacklevel=4)
        return col
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_PIXEL_UNITS = ("px", "pixel", "pixels")


def _length_factor(path, label, unit, pixel_size_nm) -> float:
    if unit is None or unit.lower() in ("nm",):
        return 1.0
    u = unit.lower()
    if u in _PIXEL_UNITS:
        if not pixel_size_nm:
            raise LocalizationFileError(
                f"{path}: column {label!r} is in camera pixels; give the pixel size in nm (--pixel-size on "
                "the command line) to convert it"
            )
        return float(pixel_size_nm)
    if unit in _LENGTH_TO_NM or u in _LENGTH_TO_NM:
        return _LENGTH_TO_NM.get(unit, _LENGTH_TO_NM.get(u))
    raise LocalizationFileError(f"{path}: unknown unit [{unit}] in column {label!r}")
