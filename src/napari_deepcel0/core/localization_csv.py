"""Reading localization and ground-truth CSV files (ThunderSTORM, ISBI 2013) into
tables in nm: :func:`read_localizations`, and the column-label helpers
:func:`column_key` and :func:`is_coordinate_label`."""

from __future__ import annotations

import codecs
import csv
import math
import os
import re
import stat
import warnings
from io import BytesIO, StringIO
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .columns import (
    FRAME,
    INTENSITY,
    LENGTH_TO_NM,
    MAX_FRAME_NUMBER,
    POSITION_RULE,
    X_NM,
    Y_NM,
    unusable_positions,
)

#: bytes of a localization CSV scanned at a time when its lines are counted (:func:`_scan_lines`)
SCAN_CHUNK_BYTES = 1 << 24


class LocalizationFileError(ValueError):
    """A localization/ground-truth CSV that cannot be read (the message names it)."""


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


#: the starts of files users give for a localization CSV by mistake, and what they are
_NOT_CSV = {b"\x1f\x8b": "a gzip-compressed file (decompress it first, e.g. with <(zcat FILE) in the shell)",
            b"II*\0": "a TIFF image (a stack of frames?)", b"MM\0*": "a TIFF image (a stack of frames?)",
            b"II+\0": "a BigTIFF image (a stack of frames?)", b"MM\0+": "a BigTIFF image (a stack of frames?)",
            b"\x89PNG": "a PNG image", b"PK\x03\x04": "a ZIP archive (an Excel workbook? save the sheet as CSV)"}


def _check_utf8(path, data: np.ndarray) -> None:
    """A clear error for a file that is not UTF-8 text, decoded a piece at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for _, piece in _chunks(data):
            decoder.decode(piece.tobytes())
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        kind = _NOT_CSV.get(data[:4].tobytes()) or _NOT_CSV.get(data[:2].tobytes())
        if kind:  # "save the CSV as UTF-8" does not help a user who gave the stack for the CSV
            raise LocalizationFileError(f"{path}: this is {kind}, not a localization CSV (ThunderSTORM or ISBI "
                                        "columns)") from None
        start = data[:2].tobytes()
        if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            what = "UTF-16 text"
        elif data[:4096].tobytes().count(b"\0"):
            what = "binary data, not text"
        else:
            what = "text in another encoding (Latin-1 or a Windows code page?)"
        raise LocalizationFileError(f"{path}: not UTF-8 ({what}: {exc}); save the CSV as UTF-8") from exc


def _header_labels(header: str) -> list[str]:
    """The column labels of a header line, split as pandas splits rows: at commas outside
    double quotes (``"a,b"`` is one label), each stripped of spaces and quotes."""
    fields = next(csv.reader([header]), [])
    return [field.strip().strip('"').strip() for field in fields]


def _ends_inside_quotes(line: str) -> bool:
    """True when a quote opens a field of ``line`` (a quote at the start of a field, as
    pandas reads them) and nothing closes it."""
    inside, field_start, i = False, True, 0
    while i < len(line):
        char = line[i]
        if inside:
            if char == '"' and line[i + 1 : i + 2] == '"':  # "" in a quoted field: a quote
                i += 1
            elif char == '"':
                inside = False
        elif char == '"' and field_start:
            inside = True
        field_start = not inside and char == ","
        i += 1
    return inside


def _has_quotes(data: np.ndarray) -> bool:
    return any(np.any(piece == 34) for _, piece in _chunks(data))


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


#: the columns of lengths: read in nm, as ``<name> [nm]`` (``uncertainty_xy`` as ``uncertainty [nm]``)
_LENGTH_KEYS = ("x", "y", "z", "sigma", "sigma1", "sigma2", "uncertainty", "uncertainty_xy", "uncertainty_z")
#: the columns of an ISBI 2013 ground truth (labels in any case), and the table's columns they give
_ISBI_COLUMNS = {"xnano": X_NM, "ynano": Y_NM, "znano": "z [nm]", "intensity": INTENSITY, "frame": FRAME}


def _is_isbi(labels: list[str]) -> bool:
    """True for the labels of an ISBI 2013 ground truth (``xnano`` and ``ynano``)."""
    return {"xnano", "ynano"} <= {label.lower() for label in labels}


def _target(label: str) -> str | None:
    """The column of :func:`read_localizations`'s table that a ThunderSTORM file's column
    gives: ``<name> [nm]`` for a length in any unit, ``frame`` for a frame column in any
    case, the label itself for any other column; None for the id, which is dropped."""
    key = column_key(label)
    if key == "id":
        return None
    if key in _LENGTH_KEYS:
        return f"{'uncertainty' if key == 'uncertainty_xy' else key} [nm]"
    if key == "frame":
        return FRAME
    return label


def _conflicts(labels: list[str]) -> list[tuple[str, str, str]]:
    """The pairs of columns that give the same column of the table (first label, second
    label, that column): ``x [nm]`` and ``x [um]``, ``frame`` and ``Frame``, ``x [nm]``
    and ``xnano`` (an ISBI column, which would make the file an ISBI file read without
    ``x [nm]``)."""
    isbi = _is_isbi(labels)  # (xnano without ynano is no ISBI file: an extra column)
    sources: dict[str, str] = {}
    found = []
    for label in labels:
        lower = label.lower()
        target = _ISBI_COLUMNS[lower] if isbi and lower in _ISBI_COLUMNS else _target(label)
        if target is None:
            continue
        if target in sources:
            found.append((sources[target], label, target))
        else:
            sources[target] = label
    return found


def read_back_problems(labels) -> list[str]:
    """Why :func:`read_localizations` would not give back a column of each of these
    labels, under the same label, from a ThunderSTORM CSV whose header names them in
    double quotes (after the ``id`` that the writer adds): one line per column that it
    would refuse (two columns giving x, a length in camera pixels or in an unknown unit),
    drop (another id column, or all but the ISBI columns), rename (``sigma [um]`` ->
    ``sigma [nm]``, spaces around a label) or read otherwise. Empty when the file reads
    back as written. The reader's own rules, applied to the header: for writers, so that
    nobody gets a file they cannot read back."""
    labels = [str(label) for label in labels]
    try:
        read = _header_labels(",".join(f'"{label}"' for label in labels))
    except csv.Error as exc:
        return [f"the header line of the labels {labels} cannot be split into column names ({exc})"]
    if len(read) != len(labels):
        return [f"the header line of the labels {labels} is read back as {len(read)} labels, not {len(labels)}"]
    problems = [f"{label!r} is read back as {back!r} (no spaces or quotes around a label)"
                for label, back in zip(labels, read) if back != label]
    problems += [f"{label!r} names more than one column" for label in sorted({x for x in read if read.count(x) > 1})]
    conflicts = _conflicts(list(dict.fromkeys(read)))  # (a label named twice is said above)
    problems += [f"{a!r} and {b!r} both give {target!r}" for a, b, target in conflicts]
    in_conflict = {label for a, b, _ in conflicts for label in (a, b)}
    if _is_isbi(read) and not in_conflict:
        problems.append("'xnano' and 'ynano' make it an ISBI 2013 file, of which only frame, xnano, ynano, znano "
                        "and intensity are read")
    for label in read:
        target = _target(label)
        if label in in_conflict or target == label:
            continue
        if target is None:
            problems.append(f"{label!r} is read as an id column, which is dropped")
            continue
        name, unit = _split_label(label)
        why = ""
        if name.lower() in _LENGTH_KEYS:  # (a frame column's unit the reader ignores)
            if unit is not None and unit.lower() in _PIXEL_UNITS:
                problems.append(f"{label!r} is in camera pixels, which the reader converts to {target!r} only when "
                                "given the pixel size")
                continue
            if unit is not None and _unit_to_nm(unit) is None:
                problems.append(f"{label!r} has a unit the reader does not know")
                continue
            if unit is None:
                why = " (a length without a unit is read as nm)"
            elif unit.lower() != "nm":
                why = f" (converted from {unit})"
        problems.append(f"{label!r} is read back as {target!r}{why}")
    return problems


def read_localizations(path: str | os.PathLike, pixel_size_nm: float | None = None) -> pd.DataFrame:
    """Read a localization or ground-truth CSV into a table in nm, frames 1-based.

    Accepted formats:

    - ThunderSTORM CSV: quoted or unquoted ``name [unit]`` labels; ``x``/``y`` in
      ``nm``, ``um`` or ``px`` (``px`` needs ``pixel_size_nm``); ``uncertainty_xy``
      is read as ``uncertainty [nm]``; ``id`` is dropped. This includes the plain
      ``"frame","x [nm]","y [nm]"`` ground-truth files.
    - ISBI 2013 ground truth: ``Ground-truth,frame,xnano,ynano,znano,intensity``.

    Values in double quotes may hold commas (text as pandas, Excel or R write it). Rows
    whose number of fields differs from the header are skipped with a warning (as
    ThunderSTORM does). Two columns that give the same column (``x [nm]`` and ``x [um]``,
    ``x [nm]`` and ``xnano``) are refused. Other columns are kept: as numbers, or as text
    when they hold text (with a warning when only some values are text).
    """
    if pixel_size_nm is not None and (isinstance(pixel_size_nm, (bool, np.bool_)) or not isinstance(
            pixel_size_nm, (int, float, np.integer, np.floating)) or not (math.isfinite(pixel_size_nm)
                                                                       and pixel_size_nm > 0)):
        # -100 mirrored every coordinate in px, True read as 1 nm
        raise ValueError(f"pixel_size_nm must be a positive number of nm or None, got {pixel_size_nm!r}")
    path = Path(path).expanduser()
    raw, labels = _read_rows(path)
    for first, second, target in _conflicts(labels)[:1]:  # e.g. x [nm] and x [um], or x [nm] and xnano
        raise LocalizationFileError(f"{path}: the columns {first!r} and {second!r} both give {target!r}; keep one "
                                    "of them")
    if _is_isbi(labels):  # ISBI 2013 ground truth
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
    warning. Fields in double quotes may hold commas (and line breaks), as pandas, Excel
    and R write text that holds one."""
    if path.is_dir():
        raise LocalizationFileError(f"{path}: is a folder, not a CSV file")
    if not path.exists():
        raise LocalizationFileError(f"{path}: no such file")
    # a pipe (the shell's <(...), a FIFO) is read whole, as a file is (np.fromfile needs a
    # file); a device (/dev/zero) would be read for ever
    piped = stat.S_ISFIFO(path.stat().st_mode)
    if not (path.is_file() or piped):
        raise LocalizationFileError(f"{path}: is a device or a socket, not a CSV file")
    data = np.frombuffer(path.read_bytes(), np.uint8) if piped else np.fromfile(path, np.uint8)
    if data[:3].tobytes() == codecs.BOM_UTF8:
        data = data[3:]
    _check_utf8(path, data)
    starts, ends, commas = _scan_lines(data)
    header = data[starts[0] : ends[0]].tobytes().decode("utf-8")
    if not header.strip():  # only then can the whole file be blank
        if all(not bytes(piece).strip() for _, piece in _chunks(data)):
            raise LocalizationFileError(f"{path}: empty file (no header line)")
        raise LocalizationFileError(f"{path}: the first line is blank; it should be the header line")
    try:
        labels = _header_labels(header)
    except csv.Error as exc:  # a carriage return inside the line (line breaks of two kinds)
        raise LocalizationFileError(f"{path}: cannot split the header line into column names ({exc}): "
                                    f"{header.strip()[:80]!r}") from None
    if header.lstrip().startswith("#"):  # its rows were then said to end in a comma
        raise LocalizationFileError(f"{path}: the first line, {header.strip()[:60]!r}, is a comment; a ThunderSTORM "
                                    "CSV starts with its header line (remove the comment lines)")
    if len(labels) == 1 and (";" in header or "\t" in header):
        separator = "';'" if ";" in header else "a tab"
        raise LocalizationFileError(f"{path}: the columns are separated by {separator}; a ThunderSTORM CSV "
                                    "separates them by commas (save it as comma-separated CSV)")
    if _ends_inside_quotes(header):
        raise LocalizationFileError(f"{path}: the header line has a double quote that opens a column name and none "
                                    f"that closes it: {header.strip()[:80]!r}")
    if all(_is_number(label) for label in labels if label):
        raise LocalizationFileError(f"{path}: the first line holds numbers, not column names: the file has no header "
                                    "line (add one, e.g. \"frame\",\"x [nm]\",\"y [nm]\")")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LocalizationFileError(f"{path}: the first line names the column(s) {repeated} more than once; it "
                                    "should be the header line (e.g. \"frame\",\"x [nm]\",\"y [nm]\")")
    if len(starts) > 1 and _has_quotes(data[starts[1] :]):  # quoted values: the csv module splits the rows
        source, skip, dropped, rows, first_bad = _quoted_rows(path, data[starts[1] :], len(labels))
    else:  # no quote in a row (ThunderSTORM's files): the commas on the bytes give the fields
        source, skip, dropped, rows, first_bad = _unquoted_rows(path, data, starts, ends, commas, len(labels))
    if source is path and piped:  # pandas to read the file itself: a pipe cannot be read twice, its bytes then
        source = BytesIO(data.tobytes())
    del data, starts, ends, commas  # (pandas's table needs the memory)
    if dropped:
        fields, line = first_bad
        if dropped == rows:  # no data row left: no table to speak of
            raise LocalizationFileError(
                f"{path}: none of its {dropped} row(s) has the header's {len(labels)} fields (the first has "
                f"{fields}; a comma at the end of every row, as some spreadsheets write?)")
        warnings.warn(f"{path}: skipped {dropped} row(s) whose field count differs from the header's {len(labels)} "
                      f"(the first, on line {line}, has {fields})")
    try:
        raw = _read_csv(source, labels, skip)
    except Exception as exc:
        raise LocalizationFileError(f"{path}: cannot parse as CSV ({exc})") from exc
    return raw, labels


def _unquoted_rows(path: Path, data: np.ndarray, starts, ends, commas, n_labels: int):
    """What pandas is to read of a file without quotes in its rows: the file itself
    (``path``, skipping the header) when every row has the header's field count, which
    keeps the memory near its size, else the bytes of the rows that have it (blank lines
    pandas skips); and the number of rows dropped, of non-blank rows, and (field count,
    line number) of the first dropped row."""
    keep = (commas + 1 == n_labels) | (ends == starts)
    keep[0] = False  # the header: pandas is given the labels
    if keep[1:].all():
        return path, 1, 0, 0, None
    dropped = ~keep[1:]
    first = int(np.flatnonzero(dropped)[0]) + 1
    line_bytes = np.diff(np.r_[starts, len(data)])  # each line with its line break
    source = BytesIO(data[np.repeat(keep, line_bytes)].tobytes())
    return source, 0, int(dropped.sum()), int((ends > starts)[1:].sum()), (int(commas[first]) + 1, first + 1)


def _quoted_rows(path: Path, rows_data: np.ndarray, n_labels: int):
    """As :func:`_unquoted_rows`, for a file whose rows (``rows_data``: its bytes after
    the header line) hold double quotes: the rows are split by the csv module (commas and
    line breaks inside quotes are part of a value, as pandas reads them), and when some
    have another field count, those of the header's are written again as CSV for pandas.
    A quote that is not closed, or text after a closing quote, is refused: where the rows
    end would be a guess (an unclosed quote took every row after it into one value)."""
    text = rows_data.tobytes().decode("utf-8")

    def records():
        return csv.reader(StringIO(text, newline=""), strict=True)

    fields: list[int] = []  # each row's field count (0: a blank line)
    count = fields.append
    try:
        for record in records():
            count(len(record))
    except csv.Error as exc:
        reader = records()  # the line the row starts on, for the message
        for _ in range(len(fields)):
            next(reader)
        raise LocalizationFileError(
            f"{path}: line {reader.line_num + 2}: cannot split the row into fields ({exc}): a value in double quotes "
            "must end with a quote followed by a comma or the end of the line (a quote inside it is written twice)"
        ) from None
    counts = np.asarray(fields, np.int64)
    dropped = (counts != n_labels) & (counts > 0)
    if not dropped.any():  # pandas reads the file itself, as it splits rows so too
        return path, 1, 0, 0, None
    first = int(np.flatnonzero(dropped)[0])
    out = StringIO()
    write = csv.writer(out, lineterminator="\n").writerow
    reader = records()
    previous = 0  # the lines read before the row (the header is line 1)
    for i, record in enumerate(reader):
        if i == first:
            first_bad = (len(record), previous + 2)
        if counts[i] == n_labels:
            write(record)
        previous = reader.line_num
    return BytesIO(out.getvalue().encode("utf-8")), 0, int(dropped.sum()), int((counts > 0).sum()), first_bad


def _isbi_columns(path: Path, raw: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The table of an ISBI 2013 ground truth (``frame``, ``xnano``, ``ynano``, ...)."""
    by_key = {}
    for label in labels:  # the first of each (two labels that differ in case only: refused as conflicts)
        by_key.setdefault(label.lower(), label)
    if "frame" not in by_key:
        raise LocalizationFileError(f"{path}: ISBI ground truth without a 'frame' column")
    rename = {by_key[key]: column for key, column in _ISBI_COLUMNS.items() if key in by_key}
    return pd.DataFrame({new: _numeric(path, old, raw[old]) for old, new in rename.items()})


def _thunderstorm_columns(path: Path, raw: pd.DataFrame, labels: list[str],
                          pixel_size_nm: float | None) -> tuple[pd.DataFrame, list[str]]:
    """The table of a ThunderSTORM-style CSV (lengths in nm), and the labels of the
    columns converted from camera pixels."""
    in_pixels = []  # columns converted from camera pixels with pixel_size_nm
    table = pd.DataFrame(index=raw.index)
    unitless = []  # x/y columns read as nm for want of a unit
    for label in labels:  # (no two give the same column: read_localizations checked)
        target = _target(label)
        if target is None:  # the id
            continue
        name, unit = _split_label(label)
        key = name.lower()
        col = raw[label]
        if not label.strip() and pd.isna(col).all():  # rows ending in a comma: no column (it was written back)
            continue
        if key in _LENGTH_KEYS:
            if key in ("x", "y") and unit is None:
                unitless.append(label)
            factor = _length_factor(path, label, unit, pixel_size_nm)
            if unit is not None and unit.lower() in _PIXEL_UNITS:
                in_pixels.append(label)
            values = _numeric(path, label, col) * factor
        elif target == FRAME:
            values = _numeric(path, label, col)
        else:
            values = _numeric(path, label, col, strict=False)
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


def _unit_to_nm(unit: str) -> float | None:
    """nm per ``unit`` of length (``nm``, ``um``, ``µm``, ...; any case), None for a unit
    this reader does not know (camera pixels included: they need a pixel size)."""
    return LENGTH_TO_NM.get(unit, LENGTH_TO_NM.get(unit.lower()))


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
    factor = _unit_to_nm(unit)
    if factor is None:
        raise LocalizationFileError(f"{path}: unknown unit [{unit}] in column {label!r}")
    return factor
