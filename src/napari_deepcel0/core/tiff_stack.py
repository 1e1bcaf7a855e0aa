"""Reading SMLM TIFF stacks lazily: :class:`FrameStack` and :func:`read_stack`, the
pixel size from the file's metadata, and the errors and warnings about the file."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from .columns import FIRST_FRAME_INFO, LENGTH_TO_NM, OUTPUT_INFO_PREFIX
from .frames import PrecisionWarning, float32_precision_loss

#: mapped frames are read with os.pread where there is one (not Windows, which refuses to
#: cut short a mapped file): see FrameStack._pread
_HAS_PREAD = hasattr(os, "pread")

#: a file whose only axis besides rows and columns is channels (ImageJ/OME "C") with at
#: most this many planes warns that they are read as frames (:class:`ChannelsWarning`)
MOST_CHANNELS = 4


class ChannelsWarning(UserWarning):
    """A TIFF file calls its few planes channels; they are read as frames."""


class PixelShapeWarning(UserWarning):
    """A TIFF file's metadata gives pixels of different width and height; the width is used."""


class StackError(ValueError):
    """A TIFF file that cannot be used as an SMLM stack (the message names it)."""


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
    (ImageJ's frame count) is refused when opened, and a memory-mapped file cut short
    while open (saved over, rewritten in place by a copy or sync) when frames are next
    read (see :meth:`_check_on_disk`). Threads may read frames at once (the viewer and
    a run).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()  # page reads seek and read one file handle: one thread at a time
        if not self.path.exists():
            raise StackError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise StackError(f"{self.path}: is a folder, not a TIFF file (for a folder of one-frame TIFFs, make "
                             "them one stack first, e.g. Fiji's File > Import > Image Sequence, then save as TIFF)")
        if not self.path.is_file():  # (tifffile's error named a /proc path "No such file or directory")
            raise StackError(f"{self.path}: is a pipe or a device, not a file: save the stack to a file first (its "
                             "frames are read in any order)")
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
            squeezed = [s for s in self._tif.series if _series_axes(s) != s.axes]
            if squeezed:  # pages of frames one column wide, whose axes tifffile squeezed: not read as frames
                raise StackError(f"{self.path}: the file was written a piece at a time (tifffile's append) with "
                                 f"frames of {squeezed[0].shape[-2]} x {squeezed[0].shape[-1]} pixels, one column "
                                 "wide, whose pages tifffile stores without their frame axes; write all the "
                                 "frames at once (tifffile.imwrite(path, frames))")
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
        shape, axes = tuple(series.shape), _series_axes(series)
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
        self._precision_said = False  # float32_precision_loss warned of this stack
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
        self._mapped_end = None  # the end of the memory-mapped frames in the file, in bytes
        try:
            self._memmap = _memmap(self._tif, series).reshape(self.shape)
            self._mapped_end = int(series.dataoffset) + self._memmap.nbytes
            # for _pread: where frame 0 starts, and each frame's bytes and type in the file
            self._data_offset, self._frame_dtype = int(series.dataoffset), self._memmap.dtype
            self._frame_nbytes = rows * cols * self._frame_dtype.itemsize
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
        """(rows, cols) of a frame, in camera pixels."""
        return self.shape[1:]

    @property
    def ndim(self) -> int:
        """3: (frames, rows, cols), as an array of the stack would have."""
        return 3

    def _check_open(self) -> None:
        if self._closed:  # not "damaged": the memory map and pages are gone after close()
            raise ValueError(f"{self.path}: the stack was closed; open it again with read_stack")

    def _check_on_disk(self, first: int) -> None:
        """Before frames are read (``first``: the first asked, 0-based, for the message):
        the stack is open and, when memory-mapped, its file still holds every frame.

        A memory-mapped file cut short while open (Fiji saving over it, ``rsync
        --inplace``, a sync client) is refused here: a file shorter than the frames
        mapped is no longer the stack opened (a rewrite starts from the beginning), so
        every read is refused, not only those past the end. One ``fstat`` of the open
        (mapped) file per read call, about 1 us. A file cut short during a read gives
        :meth:`_pread` a short read (touching a mapped page past the file's end killed
        the process with SIGBUS, napari and all its layers with it; Windows refuses to
        cut short a mapped file). A file replaced by a new one (a rename,
        ``os.replace``) leaves the old one open and read, and a file that grew reads as
        before; one rewritten in place to its old size or more is not noticed. Pages
        read without a map raise their own error when cut short (:meth:`_read`)."""
        self._check_open()
        if self._mapped_end is None:
            return
        try:
            size = os.fstat(self._tif.filehandle.fileno()).st_size
        except (OSError, AssertionError) as exc:  # closed by another thread meanwhile (its file handle gone)
            self._check_open()
            raise StackError(f"{self.path}: frame {first + 1} cannot be read ({exc or 'its file was closed'})") from exc
        if size < self._mapped_end:
            raise StackError(f"{self.path}: frame {first + 1} cannot be read: the file changed on disk while it "
                             f"was open and is now {size:,} bytes, shorter than the stack of {len(self)} frames "
                             f"it held ({self._mapped_end:,} bytes): it was saved over or is being rewritten (a "
                             "copy or a sync?); open it again once it is written")

    def _pread(self, index: int) -> np.ndarray:
        """Frame ``index`` of a mapped stack read with ``os.pread`` from the open file, not
        through the map: a file cut short while it is read then gives a short read, which
        is refused, where a mapped page past its end killed the process with SIGBUS (a
        batch read after :meth:`_check_on_disk`, while Fiji rewrote the file)."""
        nbytes = self._frame_nbytes
        offset = self._data_offset + index * nbytes
        try:
            data = os.pread(self._tif.filehandle.fileno(), nbytes, offset)
        except AssertionError as exc:  # tifffile's closed file handle: closed by another thread meanwhile
            self._check_open()
            raise StackError(f"{self.path}: frame {index + 1} cannot be read (its file was closed)") from exc
        if len(data) < nbytes:
            raise StackError(f"{self.path}: frame {index + 1} cannot be read: the file changed on disk while it was "
                             f"open and now ends before it: it was saved over or is being rewritten (a copy or a "
                             "sync?); open it again once it is written")
        return np.frombuffer(data, self._frame_dtype).reshape(self.frame_shape)

    def _read(self, index: int) -> np.ndarray:
        self._check_open()
        if self._mapped_end is not None and _HAS_PREAD:
            return self._pread(index)  # (its errors are its own: said, not "damaged")
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
            index = self._frame_index(int(key))
            self._check_on_disk(index)
            return self._float32(index)
        if isinstance(key, slice):
            idx = range(*key.indices(n))
        else:
            idx = self._frame_indices(key)
        if len(idx):  # every read of frames comes here (iteration, read_frames, napari's chunks): checked once
            self._check_on_disk(idx[0])
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
        that says so (the cast made it infinite, then reported as an infinite pixel). A
        memory-mapped frame is returned as a writable array of its own: :meth:`_pread`'s
        bytes are read-only, and without ``os.pread`` (Windows) the frame is a view of
        the map, which would read the file whenever used."""
        frame = self._read(index)
        if not self._precision_said:
            coarse = float32_precision_loss(frame)
            if coarse:  # once per stack: its frames share the offset
                self._precision_said = True
                warnings.warn(f"{self.path.name}, frame {index + 1}: {coarse}", PrecisionWarning, stacklevel=3)
        if frame.dtype.kind == "f" and frame.dtype.itemsize > 4:
            biggest = float(np.max(np.abs(frame), initial=0.0, where=np.isfinite(frame)))
            if biggest > float(np.finfo(np.float32).max):  # a float32 scalar would cast biggest (numpy 2)
                raise StackError(f"{self.path}: frame {index + 1} holds values beyond the float32 range (up to "
                                 f"{biggest:.3g}); rescale the stack")
        return frame.astype(np.float32, copy=self._mapped_end is not None)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        """Release the file (and its companions); reading a frame after it is an error.
        ``with read_stack(path) as stack:`` closes it at the end of the block."""
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
    when no unit is given); None for a width alone (the height asked), the uncalibrated
    units of OME's UnitsLength ("pixel", "reference frame") or a number that is none; a
    unit not known here warns."""
    size = pixels.get(f"PhysicalSize{axis}")
    if size is None:
        return None
    unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
    if unit not in LENGTH_TO_NM:
        if unit not in ("pixel", "reference frame"):
            _ignored_size(tif, axis, f"the pixel size in {unit!r}, a unit this reader does not know")
        return None
    try:
        size_nm = float(size) * LENGTH_TO_NM[unit]
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
    if unit not in LENGTH_TO_NM or not num > 0:
        return None
    return _plausible(den / num * LENGTH_TO_NM[unit], tif, axis)


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


def _series_axes(series) -> str:
    """The series' axes, ending in rows and columns (``YX``) for a series tifffile wrote
    from an array whose last axes are 1 long (frames of one column:
    ``imwrite(np.zeros((8, 1, 1)))``): its writer squeezes them out of the pages (one page
    of 8 x 1) and its reader names the array's axes from the pages (``YQX``), so 8 frames
    of 1 x 1 read as one frame of 8 x 1. The file's description keeps the array's shape
    (no axes given) and its pixels in the array's order: rows and columns are its last two
    axes, as ``imwrite`` takes them."""
    axes = series.axes
    if (series.kind.lower() == "shaped" and len(axes) > 2 and axes[-2:] != "YX"
            and sorted(axes) == sorted("Q" * (len(axes) - 2) + "YX")):
        return "Q" * (len(axes) - 2) + "YX"
    return axes


def _memmap(tif: tifffile.TiffFile, series) -> np.ndarray:
    """The series' pixels memory-mapped from the open file, when they lie uncompressed in
    one block (as ``tifffile.memmap``, which opens and parses the file again). The file
    handle's own file is mapped, not the one its path names now: the one whose size
    :meth:`FrameStack._check_on_disk` checks (a file replaced since has another)."""
    if series.dataoffset is None:
        raise ValueError("the frames do not lie in one uncompressed block")
    dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
    return tif.filehandle.memmap_array(dtype, tuple(series.shape), series.dataoffset, mode="r")


def _frame_by_frame(series, shaped: bool) -> bool:
    """True when every series is one 2-D image of the same shape and type, or, in a file
    tifffile wrote (``shaped``), every series a stack of such images (frames written in
    batches, as Fiji reads them: one stack). A 2-D image beside stacks (a dark or
    preview frame) is not a frame of them."""
    first = series[0]
    dims = {len(s.shape) for s in series}
    if dims != {2} and not (shaped and dims == {3}):
        return False
    return all(_series_axes(s)[-2:] == "YX" and s.shape[-2:] == first.shape[-2:] and s.dtype == first.dtype
               for s in series)


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
