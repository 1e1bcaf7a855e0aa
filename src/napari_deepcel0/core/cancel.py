"""Cooperative cancellation for long computations (training, inference, CEL0)."""

from __future__ import annotations


class Cancelled(Exception):
    """A computation was cancelled before it had anything to return."""


def is_cancelled(cancel) -> bool:
    """True when ``cancel`` (None, a ``threading.Event`` or a callable) says stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return cancel.is_set()
    return bool(cancel())
