"""napari-deepcel0: DeepCEL0 and CEL0-IRL1 localization for high-density SMLM.

The computational core lives in :mod:`napari_deepcel0.core` (numpy/scipy/torch only);
the napari plugin and the ``deepcel0`` command line are thin layers over it.
"""

import re as _re
from pathlib import Path as _Path


def _source_version() -> str:
    """The version of the code imported: that of the checkout's ``pyproject.toml`` when it
    is run from one (an editable install, or ``src`` on PYTHONPATH, as on a borrowed GPU
    machine, where the bundled model recorded "unknown"), else the installed package's,
    else "unknown". Model files and protocols record it. (The checkout comes first: an
    installed copy of another version named the code of a checkout beside it; an installed
    copy is never named by a pyproject.toml above it, only a ``src`` folder's is read.)"""
    package = _Path(__file__).resolve().parent
    text = ""
    if package.parent.name == "src":  # a checkout's src layout, not a --target or vendored copy
        try:  # (whose folder's parent may hold the pyproject.toml of another version, or project)
            text = (package.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            pass
    found = _re.search(r'^version\s*=\s*"([^"]+)"', text, _re.MULTILINE)
    if found and 'name = "napari-deepcel0"' in text:  # (not another project's file)
        return found.group(1)
    try:
        from importlib.metadata import version

        return version("napari-deepcel0")
    except Exception:
        return "unknown"


__version__ = _source_version()
