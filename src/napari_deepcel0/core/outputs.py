"""Writing output files: atomically (:func:`atomic_write`, :func:`all_or_nothing`), after
checking where they go (:func:`check_output_path`, :func:`output_folder`); ImageJ TIFFs
(:func:`write_tiff`) and ThunderSTORM CSVs (:func:`write_thunderstorm_csv`)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .acquisition import is_whole_number
from .columns import (
    FIRST_FRAME_INFO,
    FRAME,
    MAX_FRAME_NUMBER,
    OUTPUT_INFO_PREFIX,
    POSITION_RULE,
    THUNDERSTORM_COLUMNS,
    X_NM,
    Y_NM,
    unusable_positions,
)
from .localization_csv import read_back_problems

# The process's umask, read once at import (reading it means setting it, which would
# briefly affect files that other threads create): atomic_write gives its files the
# permissions a plain open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)

#: rows formatted at a time when writing a CSV (the text of all rows at once took 8.7 GB
#: for 10 million localizations)
CSV_CHUNK_ROWS = 100_000


# ======================================================================= TIFF
def imagej_pixels(data: np.ndarray) -> np.ndarray:
    """``data`` in a pixel type ImageJ TIFFs hold (uint8, uint16, int16, float32), with
    the same values: booleans as uint8; other integers as uint16 when their range fits
    it, else int16 when that fits, else float32 (exact up to 2^24: beyond, a warning says
    that values are rounded; ImageJ TIFFs hold no 32-bit integers); floats as float32."""
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
        if max(-lo, hi) > 2**24:  # (rounded without a word: an int64 image exported, review)
            warnings.warn(f"integer values up to {max(-lo, hi):,} are written as float32, which holds integers exactly "
                          f"up to 2^24 = {2**24:,} only: larger ones are rounded (ImageJ TIFFs hold no 32-bit "
                          "integers)", UserWarning, stacklevel=3)
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
    metadata = {"axes": "YX"}
    if data.ndim == 3:
        # ImageJ's full TZCYXS order: given "TYX", tifffile takes a last axis of size 1
        # (one-column frames) for samples and writes one page, which no reader takes for
        # frames (the file announces n frames and holds one); the same bytes otherwise
        data = data.reshape(data.shape[0], 1, 1, *data.shape[1:], 1)
        metadata["axes"] = "TZCYXS"
    if output:
        metadata["Info"] = OUTPUT_INFO_PREFIX + output
        if first_frame is not None:
            metadata["Info"] += f"\n{FIRST_FRAME_INFO}: {int(first_frame)}"
    kwargs = {}
    if pixel_size_nm:
        kwargs = dict(resolution=(1e3 / pixel_size_nm, 1e3 / pixel_size_nm))
        metadata["unit"] = "um"

    def write(tmp):
        try:
            tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)
        except OSError as exc:
            raise _short_write_error(exc, tmp) from exc

    return atomic_write(path, write)


#: NumPy's error for a write that stopped short (``tofile``, which tifffile writes
#: with), without an errno: "655360 requested and 22352 written"
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def _short_write_error(exc: OSError, tmp) -> OSError:
    """``exc`` as the error it stands for when it is NumPy's short write: no space left on
    the device when its free space is less than what was left to write (a full disk
    said only "10240 requested and 3912 written"), else a file written in part (a
    quota or a file-size limit); any other error as it is."""
    match = _SHORT_WRITE.fullmatch(str(exc)) if exc.errno is None else None
    if match is None:
        return exc
    requested, written = (int(n) for n in match.groups())
    detail = f"only {written:,} of {requested:,} bytes could be written"
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(tmp))).free
    except OSError:
        free = None
    if free is not None and free < requested - written:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({detail})")
    return OSError(f"the file could not be written whole ({detail}; a full quota or a file-size limit?)")


# ================================================================ output files
def check_output_path(path) -> Path:
    """``path`` as a Path, after checking that it can be written: FileNotFoundError
    when its folder does not exist, IsADirectoryError when it is a folder,
    PermissionError when the folder cannot be written in (:func:`check_writable_folder`),
    OSError when it is a pipe, a device or a socket (an atomic write would replace it).
    A symbolic link is checked as the file it points to, which :func:`atomic_write`
    writes (the link may dangle, into a folder that can be written in).
    Call it before a long job so that a typo fails at once, not after the work."""
    path = Path(path)
    target = _link_target(path)
    shown = str(path) if target == path else f"{path} (a link to {target})"
    if target.is_dir():
        raise IsADirectoryError(f"{shown} is a folder; give a file name")
    if target.exists() and not target.is_file():  # replaced by a file: a FIFO, /dev/null, even /dev/full as root
        raise OSError(f"{shown} is a pipe, a device or a socket, not a file; give a file name")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{shown}: folder {target.parent} does not exist")
    check_writable_folder(target.parent)
    return path


def _link_target(path: Path) -> Path:
    """The file that writing ``path`` writes: ``path`` itself, or the file a symbolic
    link points to (through any chain of links), which need not exist."""
    if not path.is_symlink():
        return path
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before Python 3.13)
        raise OSError(f"{path}: cannot follow the symbolic link ({exc})") from None


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
    path = check_output_path(_link_target(Path(path)))
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
    values are unquoted with a ``.`` decimal point, with 10 significant digits (``%.10g``:
    positions to better than 1e-5 nm, but a table read back is not bit-identical:
    compare with a tolerance); NaN and infinities are written as ``NaN``/``Infinity``.
    ``id`` is regenerated (1..n). Frames must be 1-based integers (written exactly).
    A table that :func:`.read_localizations` would not read back as it is (two columns
    giving x or frame, ``xnano`` beside ``x [nm]``, a length in camera pixels, ...; see
    :func:`.localization_csv.read_back_problems`) is refused, naming the columns, before
    anything is written.
    """
    if not isinstance(table, pd.DataFrame) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("write_thunderstorm_csv takes the path, then the table (a DataFrame): "
                        f"write_thunderstorm_csv('locs.csv', table); got {type(path).__name__} and "
                        f"{type(table).__name__}")
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in table.columns]
    if missing:
        raise ValueError(f"cannot write {path}: the table lacks column(s) {missing} (has {list(table.columns)})")
    for c in table.columns:
        if any(ch in str(c) for ch in '",\n\r'):
            raise ValueError(f"cannot write {path}: column name {c!r} contains a quote, comma or line break")
    # the reader's own rules on the header: a file it would refuse, or read with other columns, is not written
    problems = read_back_problems([c for c in table.columns if c != "id"])
    if problems:
        raise ValueError(f"cannot write {path}: read back, the file would not give this table: "
                         f"{'; '.join(problems)} (rename or drop these columns of the table)")
    frames = table[FRAME].to_numpy()
    wrong = (frames < 1) | (frames != np.round(frames))
    if wrong.any():  # (NaN too: it equals no number)
        raise ValueError(f"cannot write {path}: frames must be 1-based integers ({int(wrong.sum())} row(s) are not, "
                         f"the first {frames[wrong][0]:g})")
    if len(frames) and frames.max() > MAX_FRAME_NUMBER:  # as read_localizations; int64 wrapped them negative
        raise ValueError(f"cannot write {path}: frame numbers must be at most {MAX_FRAME_NUMBER} (max "
                         f"{frames.max():g})")
    bad = unusable_positions(table[[X_NM, Y_NM]].to_numpy(np.float64))
    if bad.any():  # read_localizations refuses them: a file nobody could read back
        raise ValueError(f"cannot write {path}: {int(bad.sum())} row(s) have an x or y that is not {POSITION_RULE}")
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
