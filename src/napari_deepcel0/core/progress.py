"""Progress text shared by training and localization runs (CLI progress bars, widget status lines)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 10 min``: a duration for people."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def time_left_text(remaining_s: float | None) -> str:
    """``", about 12 min left"`` for a progress line; empty when unknown (None) or when less
    than half a second is left (nothing worth saying)."""
    return f", about {format_duration(remaining_s)} left" if remaining_s is not None and remaining_s >= 0.5 else ""
