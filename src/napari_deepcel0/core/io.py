"""Reading SMLM TIFF stacks lazily, and reading/writing localization tables.

Localization tables are pandas DataFrames with ThunderSTORM column names:
``frame`` (1-based), ``x [nm]``, ``y [nm]`` and optional further columns
(``intensity [photon]``, ``sigma [nm]``, ``uncertainty [nm]``, ``confidence``, ...).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import tifffile

FRAME, X_NM, Y_NM = "frame", "x [nm]", "y [nm]"

#: ThunderSTORM's column order; columns a table has are written in this order,
#: followed by any other columns.
THUNDERSTORM_COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "sigma [nm]",
    "intensity [photon]",
    "offset [photon]",
    "bkgstd [photon]",
    "uncertainty [nm]",
)

_LENGTH_TO_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "micron": 1e3, "microns": 1e3, "mm": 1e6, "m": 1e9}


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
    pixel_size_nm : float or None, from ImageJ or OME metadata when present
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise StackError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise StackError(f"{self.path}: is a folder, not a TIFF file")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises several types for junk
            raise StackError(f"{self.path}: not a readable TIFF file ({exc})") from exc
        try:
            self._open_series()
        except Exception:
            self._tif.close()
            raise

    def _open_series(self) -> None:
        if not self._tif.series:
            raise StackError(f"{self.path}: the TIFF file holds no image data")
        series = self._tif.series[0]
        shape, axes = tuple(series.shape), series.axes
        self.dtype = np.dtype(series.dtype)
        if "S" in axes and shape[axes.index("S")] > 1:
            raise StackError(
                f"{self.path}: RGB/multi-sample image of shape {shape} (axes {axes}); "
                "an SMLM stack must be single-channel grayscale frames"
            )
        if self.dtype.kind not in "uif" or self.dtype.itemsize > 8:
            raise StackError(f"{self.path}: unsupported pixel type {self.dtype} (need integer or float)")
        kept = [(n, a) for n, a in zip(shape, axes) if n != 1 or a in "YX"]
        if len(kept) < 2 or kept[-1][1] != "X" or kept[-2][1] != "Y":
            raise StackError(f"{self.path}: cannot find the image rows and columns in shape {shape} (axes {axes})")
        if len(kept) > 3:
            raise StackError(
                f"{self.path}: {len(kept)}-D image of shape {shape} (axes {axes}); expected a 2D frame "
                "or a 3D stack of frames (frames, rows, cols); split channels/z first"
            )
        rows, cols = kept[-2][0], kept[-1][0]
        n_frames = kept[0][0] if len(kept) == 3 else 1
        if n_frames == 0 or rows == 0 or cols == 0:
            raise StackError(f"{self.path}: empty image of shape {shape}")
        self.shape = (int(n_frames), int(rows), int(cols))
        self._memmap = None
        self._pages = None
        try:
            mm = tifffile.memmap(self.path, series=0, mode="r")
            self._memmap = mm.reshape(self.shape)
        except Exception:
            pages = [p for p in series.pages if p is not None]
            if len(pages) == n_frames and all(tuple(p.shape) == (rows, cols) for p in pages[:1]):
                self._pages = pages
            else:  # unusual layout: fall back to reading it whole
                self._memmap = np.asarray(series.asarray()).reshape(self.shape)
        self.pixel_size_nm = _pixel_size_nm(self._tif)

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1:]

    @property
    def ndim(self) -> int:
        return 3

    def _read(self, index: int) -> np.ndarray:
        if self._memmap is not None:
            return np.asarray(self._memmap[index])
        return self._pages[index].asarray()

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"frame index {key} out of range for {n} frames")
            return self._read(i).astype(np.float32, copy=False)
        if isinstance(key, slice):
            idx = range(*key.indices(n))
        else:
            idx = [int(k) for k in np.asarray(key).ravel()]
        out = np.empty((len(idx),) + self.frame_shape, dtype=np.float32)
        for j, i in enumerate(idx):
            out[j] = self._read(i)
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        self._memmap = None
        self._pages = None
        self._tif.close()

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


def _pixel_size_nm(tif: tifffile.TiffFile) -> float | None:
    """Pixel size from ImageJ or OME metadata, in nm, or None."""
    try:
        if tif.is_ome and tif.ome_metadata:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("}Pixels") or el.tag == "Pixels":
                    size = el.get("PhysicalSizeX")
                    if size is not None:
                        unit = el.get("PhysicalSizeXUnit", "µm")
                        return _plausible(float(size) * _LENGTH_TO_NM.get(unit, math.nan))
        if tif.is_imagej and tif.imagej_metadata is not None:
            unit = str(tif.imagej_metadata.get("unit", "")).strip()
            unit = unit.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\u" in unit else unit
            tag = tif.pages[0].tags.get("XResolution")
            if tag is not None and unit in _LENGTH_TO_NM:
                num, den = tag.value
                if num > 0:
                    return _plausible(den / num * _LENGTH_TO_NM[unit])
    except Exception:  # metadata is a hint; never fail reading frames because of it
        return None
    return None


def _plausible(size_nm: float) -> float | None:
    return float(size_nm) if math.isfinite(size_nm) and 1.0 <= size_nm <= 1e5 else None


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None = None) -> Path:
    """Write an image or stack as an ImageJ TIFF (atomically), with the pixel size."""
    path = Path(path)
    data = np.asarray(data)
    kwargs = {}
    if pixel_size_nm:
        kwargs = dict(resolution=(1e3 / pixel_size_nm, 1e3 / pixel_size_nm), metadata={"unit": "um"})
    if data.dtype == np.float64:
        data = data.astype(np.float32)

    def write(tmp):
        tifffile.imwrite(tmp, data, imagej=data.dtype != np.int64, **kwargs)

    return atomic_write(path, write)


# ======================================================================== CSV
def atomic_write(path: Path, write) -> Path:
    """Run ``write(tmp_path)`` then move the temp file over ``path``; on any error
    the temp file is removed and an existing ``path`` is left untouched."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _format_column(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy()
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str)
    if arr.dtype.kind == "f":
        out = np.char.mod("%.10g", arr.astype(np.float64))
        out[np.isnan(arr)] = "NaN"
        out[np.isposinf(arr)] = "Infinity"
        out[np.isneginf(arr)] = "-Infinity"
        return out
    return arr.astype(str)


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
            if len(out):
                cols = [_format_column(out[c]) for c in ordered]
                lines = cols[0].astype(object)
                for col in cols[1:]:
                    lines = lines + "," + col.astype(object)
                fh.write("\n".join(lines.tolist()))
                fh.write("\n")

    return atomic_write(Path(path), write)


_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<unit>[^\[\]]*)\])?\s*$")


def _split_label(label: str) -> tuple[str, str | None]:
    m = _UNIT_RE.match(label.strip().strip('"').strip())
    return m.group("name").strip(), (m.group("unit").strip() if m.group("unit") else None)


def read_localizations(path: str | os.PathLike, pixel_size_nm: float | None = None) -> pd.DataFrame:
    """Read a localization or ground-truth CSV into a table in nm, frames 1-based.

    Accepted formats:

    - ThunderSTORM CSV: quoted or unquoted ``name [unit]`` labels; ``x``/``y`` in
      ``nm``, ``um`` or ``px`` (``px`` needs ``pixel_size_nm``); ``uncertainty_xy``
      is read as ``uncertainty [nm]``; ``id`` is dropped. This includes the plain
      ``"frame","x [nm]","y [nm]"`` ground-truth files.
    - ISBI 2013 ground truth: ``Ground-truth,frame,xnano,ynano,znano,intensity``.

    Rows whose number of fields differs from the header are skipped with a warning
    (as ThunderSTORM does).
    """
    path = Path(path)
    if not path.is_file():
        raise LocalizationFileError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except UnicodeDecodeError as exc:
        raise LocalizationFileError(f"{path}: not a text CSV file ({exc})") from exc
    labels = [h.strip().strip('"').strip() for h in header.strip().split(",")]
    if not header.strip():
        raise LocalizationFileError(f"{path}: empty file (no header line)")

    bad_lines = []
    try:
        raw = pd.read_csv(
            path,
            header=0,
            names=labels,
            skiprows=1,
            encoding="utf-8-sig",
            on_bad_lines=lambda line: bad_lines.append(line) or None,
            engine="python",
            na_values=["NaN", "nan", "Infinity", "-Infinity"],
            keep_default_na=True,
        ) if labels else None
    except Exception as exc:
        raise LocalizationFileError(f"{path}: cannot parse as CSV ({exc})") from exc
    if bad_lines:
        warnings.warn(f"{path}: skipped {len(bad_lines)} row(s) whose field count differs from the header")

    lower = [lab.lower() for lab in labels]
    if "xnano" in lower and "ynano" in lower:  # ISBI 2013 ground truth
        rename = {labels[lower.index("xnano")]: X_NM, labels[lower.index("ynano")]: Y_NM}
        if "znano" in lower:
            rename[labels[lower.index("znano")]] = "z [nm]"
        if "intensity" in lower:
            rename[labels[lower.index("intensity")]] = "intensity [photon]"
        frame_label = next((lab for lab in labels if lab.lower() == "frame"), None)
        if frame_label is None:
            raise LocalizationFileError(f"{path}: ISBI ground truth without a 'frame' column")
        rename[frame_label] = FRAME
        table = raw.rename(columns=rename)[[c for c in rename.values()]]
    else:
        table = pd.DataFrame(index=raw.index)
        for label in labels:
            name, unit = _split_label(label)
            key = name.lower()
            col = raw[label]
            if key == "id":
                continue
            if key in ("x", "y", "z", "sigma", "sigma1", "sigma2", "uncertainty", "uncertainty_xy", "uncertainty_z"):
                factor = _length_factor(path, label, unit, pixel_size_nm)
                out_name = {"uncertainty_xy": "uncertainty"}.get(key, key)
                table[f"{out_name} [nm]"] = pd.to_numeric(col, errors="coerce") * factor
            elif key == "frame":
                table[FRAME] = col
            else:
                table[label] = col
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in table.columns]
    if missing:
        raise LocalizationFileError(
            f"{path}: missing column(s) {missing}; found {labels}. Expected a ThunderSTORM CSV "
            '(at least "frame","x [nm]","y [nm]") or an ISBI ground-truth file'
        )
    for c in (FRAME, X_NM, Y_NM):
        values = pd.to_numeric(table[c], errors="coerce")
        bad = values.isna() & table[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise LocalizationFileError(f"{path}: non-numeric value {table[c][bad].iloc[0]!r} in column {c!r} (line {row})")
        table[c] = values
    coords = table[[FRAME, X_NM, Y_NM]]
    if coords.isna().any().any():
        raise LocalizationFileError(f"{path}: empty or NaN frame/x/y values in {int(coords.isna().any(axis=1).sum())} row(s)")
    frames = table[FRAME].to_numpy()
    if len(frames) and np.any(frames != np.round(frames)):
        raise LocalizationFileError(f"{path}: frame numbers must be integers")
    if len(frames) and frames.min() < 1:
        raise LocalizationFileError(
            f"{path}: frame numbers must be 1-based (found {int(frames.min())}); "
            "ThunderSTORM and ISBI files count frames from 1"
        )
    table[FRAME] = frames.astype(np.int64)
    table = table.sort_values(FRAME, kind="stable").reset_index(drop=True)
    table.attrs["source"] = str(path)
    return table


def _length_factor(path, label, unit, pixel_size_nm) -> float:
    if unit is None or unit.lower() in ("nm",):
        return 1.0
    u = unit.lower()
    if u in ("px", "pixel", "pixels"):
        if not pixel_size_nm:
            raise LocalizationFileError(
                f"{path}: column {label!r} is in camera pixels; give the pixel size (nm) to convert it"
            )
        return float(pixel_size_nm)
    if unit in _LENGTH_TO_NM or u in _LENGTH_TO_NM:
        return _LENGTH_TO_NM.get(unit, _LENGTH_TO_NM.get(u))
    raise LocalizationFileError(f"{path}: unknown unit [{unit}] in column {label!r}")
