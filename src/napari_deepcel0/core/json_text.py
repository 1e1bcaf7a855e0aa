"""JSON as this package writes it (``allow_nan=False``): its numbers are finite.

Python's ``json`` reads ``NaN``, ``Infinity`` and overflowing numbers (``1e999``) as
floats that it then refuses to write: a file edited by hand, or by another tool, loaded
and failed later, at a save far from the file (a fine-tune's first checkpoint said "Out of
range float values are not JSON compliant"). :func:`loads_finite` refuses them when read.
"""

from __future__ import annotations

import json
import math


class NotFiniteError(ValueError):
    """A NaN or infinite number in JSON text (the message names it)."""


def loads_finite(text: str):
    """``json.loads(text)``, refusing NaN, Infinity and numbers beyond float's range with
    :class:`NotFiniteError` (a ``ValueError``, as ``json.JSONDecodeError`` is)."""
    return json.loads(text, parse_constant=_not_finite, parse_float=_finite_float)


def _not_finite(name: str):
    raise NotFiniteError(f"{name}, which is no JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFiniteError(f"{text}, a number beyond the range of floats")
    return value
