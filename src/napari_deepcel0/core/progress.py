"""Progress text shared by training and localization runs (CLI progress bars, widget status lines)."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` and a noun, plural unless ``n`` is 1: "1 frame", "3 frames"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


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


def rate_text(frames_per_second: float) -> str:
    """``"12.3 frames/s"``, ``"1,376 frames/s"``, or below one frame a second
    ``"25.3 s/frame"`` (large frames on a CPU, CEL0: "0.0 frames/s" said nothing)."""
    if 0 < frames_per_second < 1:
        return f"{1 / frames_per_second:.3g} s/frame"
    return f"{frames_per_second:,.{1 if frames_per_second < 100 else 0}f} frames/s"
