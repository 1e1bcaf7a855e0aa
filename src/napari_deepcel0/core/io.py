"""Reading SMLM TIFF stacks lazily, and reading/writing localization tables.

Localization tables are pandas DataFrames with ThunderSTORM column names:
``frame`` (1-based), ``x [nm]``, ``y [nm]`` and optional further columns
(``intensity [photon]``, ``sigma [nm]``, ``uncertainty [nm]``, ``confidence``, ...).

This module gathers the public names of the modules that hold the code, for scripts
(``from napari_deepcel0.core.io import read_stack, write_thunderstorm_csv``); the package
itself imports from those modules:

- :mod:`.columns` column names (``FRAME``, ``X_NM``, ``Y_NM``, ``INTENSITY``,
  ``THUNDERSTORM_COLUMNS``), the limits on frames and positions (``MAX_FRAME_NUMBER``,
  ``MAX_COORDINATE_NM``, :func:`unusable_positions`, ``POSITION_RULE``) and the ImageJ
  *Info* that marks the TIFFs this package computes (``OUTPUT_INFO_PREFIX``,
  ``FIRST_FRAME_INFO``)
- :mod:`.tiff_stack` reading TIFF stacks: :class:`FrameStack`, :func:`read_stack` (the
  pixel size from the metadata), :class:`StackError`, :class:`ChannelsWarning` (``MOST_CHANNELS``),
  :class:`PixelShapeWarning`
- :mod:`.outputs` writing files all or nothing: :func:`check_output_path`,
  :func:`check_writable_folder`, :func:`output_folder`, :func:`atomic_write`,
  :func:`all_or_nothing`, :func:`write_tiff` (:func:`imagej_pixels`),
  :func:`write_thunderstorm_csv`
- :mod:`.localization_csv` reading localization CSVs: :func:`read_localizations`,
  :class:`LocalizationFileError`, :func:`column_key`, :func:`is_coordinate_label`

Settings such as ``outputs.CSV_CHUNK_ROWS`` live (and are monkeypatched) in their modules.
"""

from .columns import (
    FIRST_FRAME_INFO,
    FRAME,
    INTENSITY,
    MAX_COORDINATE_NM,
    MAX_FRAME_NUMBER,
    OUTPUT_INFO_PREFIX,
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
    check_writable_folder,
    imagej_pixels,
    output_folder,
    write_thunderstorm_csv,
    write_tiff,
)
from .tiff_stack import (
    MOST_CHANNELS,
    ChannelsWarning,
    FrameStack,
    PixelShapeWarning,
    StackError,
    read_stack,
)

__all__ = [
    # columns
    "FIRST_FRAME_INFO",
    "FRAME",
    "INTENSITY",
    "MAX_COORDINATE_NM",
    "MAX_FRAME_NUMBER",
    "OUTPUT_INFO_PREFIX",
    "POSITION_RULE",
    "THUNDERSTORM_COLUMNS",
    "X_NM",
    "Y_NM",
    "unusable_positions",
    # tiff_stack
    "MOST_CHANNELS",
    "ChannelsWarning",
    "FrameStack",
    "PixelShapeWarning",
    "StackError",
    "read_stack",
    # outputs
    "check_writable_folder",
    "imagej_pixels",
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
