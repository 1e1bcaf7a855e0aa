"""How much memory this process may use, and refusing a job that cannot fit before it
starts (minutes of work lost, or the kernel's OOM killer ending napari without a word).
No torch here: the command line imports it before any command runs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class NotEnoughMemory(MemoryError):
    """A job refused before it starts, its message saying why and what to change."""


def available_memory_bytes() -> int | None:
    """The memory this process may use, in bytes: the machine's, or a container's limit
    (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) when lower; None where
    neither the system nor psutil says (psutil comes with napari; Windows has no
    ``os.sysconf``)."""
    machine = None
    try:
        machine = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or the names are unknown
        with contextlib.suppress(ImportError, OSError, AttributeError):
            import psutil

            machine = int(psutil.virtual_memory().total)
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(limit_file).read_text().strip())  # "max" (no limit) is no number
            if limit > 0 and (machine is None or limit < machine):
                machine = limit
            break
    return machine


def check_fits_in_memory(need_bytes: float, what: str, advice: str) -> None:
    """:class:`NotEnoughMemory`, with the numbers, for a job that needs more memory than
    this process may use (``what`` "need about ..."; ``advice``: what to change)."""
    have = available_memory_bytes()
    if have and need_bytes > have:
        raise NotEnoughMemory(f"{what} need about {need_bytes / 2**30:,.0f} GiB of memory; this machine (or "
                              f"container) has {have / 2**30:,.0f} GiB: {advice}")
