#!/usr/bin/env bash
# Set up napari-deepcel0 on a fresh machine: system libraries for headless Qt/OpenGL
# (Debian/Ubuntu, when run as root or with sudo), a virtual environment in .venv,
# PyTorch 2.13.0 from pip's package sources and the package with its test dependencies.
#
#   bash scripts/setup.sh            # then: .venv/bin/deepcel0 demo
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
#                                    # the CPU build where PyPI (CUDA builds, GBs) is the source
#
# For a CUDA GPU, install the matching torch build into .venv first
# (https://pytorch.org/get-started/locally/); this script keeps an installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
libxcb-cursor0 libdbus-1-3 libfontconfig1"

if command -v apt-get >/dev/null 2>&1; then
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing system packages: $missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
# (TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU build where PyPI,
# whose Linux wheels are CUDA builds, is the only package source)
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0" \
  ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/python -m pip install -q -e ".[testing]"
echo "napari-deepcel0 is set up in .venv"
