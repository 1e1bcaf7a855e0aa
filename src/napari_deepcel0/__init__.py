"""napari-deepcel0: DeepCEL0 and CEL0-IRL1 localization for high-density SMLM.

The computational core lives in :mod:`napari_deepcel0.core` (numpy/scipy/torch only);
the napari plugin and the ``deepcel0`` command line are thin layers over it.
"""

import re as _re
from pathlib import Path as _Path


def _source_version() -> str:
    """The version installed, else (a checkout run from ``src`` with PYTHONPATH, as on a
    borrowed GPU machine) that of the checkout's ``pyproject.toml``, else "unknown".
    Model files and protocols record it: the bundled model said "unknown" when it was
    trained from a checkout."""
    try:
        from importlib.metadata import version

        return version("napari-deepcel0")
    except Exception:
        pass
    try:
        text = (_Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    if 'name = "napari-deepcel0"' not in text:  # another project's file
        return "unknown"
    found = _re.search(r'^version\s*=\s*"([^"]+)"', text, _re.MULTILINE)
    return found.group(1) if found else "unknown"


__version__ = _source_version()
