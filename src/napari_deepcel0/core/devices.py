"""Choosing the torch device and the numeric precision."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU. ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    device = str(device).lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was requested but no CUDA GPU is available; use 'cpu' or 'auto'")
        chosen = torch.device(device)
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} was requested but this machine has {torch.cuda.device_count()} "
                               "CUDA GPU(s), numbered from 0")
        return chosen
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16
    autocast is several times faster than fp32 for convolutions, and torch's oneDNN says it
    can use it. A torch build without that (private) probe gets fp32, which works
    everywhere, instead of an error at every ``precision="auto"`` run."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if not ("avx512_bf16" in flags or "amx_bf16" in flags):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on GPUs with bf16 and CPUs with native bf16, else ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast context for the network's forward pass (no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

