"""Helpers shared by the benchmark scripts (not part of the package or the tests)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

from napari_deepcel0.core.simulate import CameraNoise

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
IMAGES = REPO / "docs" / "images"
# the ISBI 2013 high-density stack and its ground truth; DEEPCEL0_ISBI_DIR points elsewhere
ISBI_DIR = Path(os.environ.get("DEEPCEL0_ISBI_DIR", REPO.parent / "shared" / "data" / "isbi2013-bundled-tubes-hd"))
#: the camera of the simulated scenes of frame_scaling, frame_range_floor and outliers: 10
#: background photons a pixel, whole-number ADU
SCENE_NOISE = CameraNoise(background_photons=(10.0, 10.0), quantize=True)


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def command() -> str:
    return " ".join([Path(sys.executable).name, *[a if " " not in a else repr(a) for a in sys.argv]])


def require_isbi() -> Path:
    if not (ISBI_DIR / "frames.tif").is_file():
        sys.exit(f"the ISBI 2013 data is not at {ISBI_DIR}")
    return ISBI_DIR


def write_json(path: Path, data: dict) -> Path:
    from napari_deepcel0.core.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        Path(tmp).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")

    return atomic_write(path, write)


def score_row(score) -> dict:
    d = score.to_dict()
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}
