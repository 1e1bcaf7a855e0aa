"""napari-deepcel0: DeepCEL0 and CEL0-IRL1 localization for high-density SMLM.

The computational core lives in :mod:`napari_deepcel0.core` (numpy/scipy/torch only);
the napari plugin and the ``deepcel0`` command line are thin layers over it.
"""

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-deepcel0")
except Exception:  # pragma: no cover - not installed
    __version__ = "0.0.0"
