"""Reading SMLM TIFF stacks lazily, and reading/writing localization tables.

Localization tables are pandas DataFrames with ThunderSTORM column names:
``frame`` (1-based), ``x [nm]``, ``y [nm]`` and optional further columns
(``intensity [photon]``, ``sigma [nm]``, ``uncertainty [nm]``, ``confidence``, ...).

This module gathers the names of the modules that hold the code, for the imports
``from napari_deepcel0.core.io import ...``:

- :mod:`.columns` column names (``FRAME``, ``X_NM``, ``Y_NM``, ``INTENSITY``,
  ``THUNDERSTORM_COLUMNS``), the limits on frames and positions (``MAX_FRAME_NUMBER``,
  ``MAX_COORDINATE_NM``, :func:`unusable_positions`, ``POSITION_RULE``), length units,
  and the ImageJ *Info* marking computed TIFFs (``OUTPUT_INFO_PREFIX``, ``FIRST_FRAME_INFO``)
- :mod:`.tiff_stack` reading TIFF stacks: :class:`FrameStack`, :func:`read_stack`, the
  pixel size from the metadata, :class:`StackError`, :class:`ChannelsWarning`,
  :class:`PixelShapeWarning`
- :mod:`.outputs` writing files: :func:`check_output_path`, :func:`check_writable_folder`,
  :func:`output_folder`, :func:`atomic_write`, :func:`all_or_nothing` (and the umask,
  ``_UMASK``), :func:`imagej_pixels`, :func:`write_tiff`, :func:`write_thunderstorm_csv`
  (``CSV_CHUNK_ROWS``)
- :mod:`.localization_csv` reading localization CSVs: :func:`read_localizations`,
  :class:`LocalizationFileError`, :func:`column_key`, :func:`is_coordinate_label`
  (``SCAN_CHUNK_BYTES``, ``NAN_WORDS``)

The names here are the same objects; a setting such as ``SCAN_CHUNK_BYTES`` changes (or
is monkeypatched) in the module that holds it, not here.
"""

from .columns import (
    FRAME,
    INTENSITY,
    MAX_COORDINATE_NM,
    POSITION_RULE,
    THUNDERSTORM_COLUMNS,
    X_NM,
    Y_NM,
    unusable_positions,
)
from .localization_csv import (
    LocalizationFileError,
    column_key,
    is_coordinate_label,
    read_localizations,
)
from .outputs import (
    all_or_nothing,
    atomic_write,
    check_output_path,
    output_folder,
    write_thunderstorm_csv,
    write_tiff,
)
from .tiff_stack import (
    ChannelsWarning,
    FrameStack,
    PixelShapeWarning,
    StackError,
    read_stack,
)

__all__ = [
    # columns
    "FRAME",
    "INTENSITY",
    "MAX_COORDINATE_NM",
    "POSITION_RULE",
    "THUNDERSTORM_COLUMNS",
    "X_NM",
    "Y_NM",
    "unusable_positions",
    # tiff_stack
    "ChannelsWarning",
    "FrameStack",
    "PixelShapeWarning",
    "StackError",
    "read_stack",
    # outputs
    "all_or_nothing",
    "atomic_write",
    "check_output_path",
    "output_folder",
    "write_thunderstorm_csv",
    "write_tiff",
    # localization_csv
    "LocalizationFileError",
    "column_key",
    "is_coordinate_label",
    "read_localizations",
]
