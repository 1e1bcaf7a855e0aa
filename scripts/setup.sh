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

PYTHON=${PYTHON:-python3}
# a minimal Debian/Ubuntu image has no python3, and Debian's python3 makes no venv without python3-venv
if command -v apt-get >/dev/null 2>&1 && [ ! -x .venv/bin/python ]; then
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    APT_PACKAGES="$APT_PACKAGES python3 python3-venv"
  elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    APT_PACKAGES="$APT_PACKAGES python3-venv"
  fi
fi

if command -v apt-get >/dev/null 2>&1; then
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      if ! command -v sudo >/dev/null 2>&1; then
        echo "setup.sh: these system packages are missing and there is neither root nor sudo to install" \
             "them; ask an administrator to run: apt-get install" $missing >&2
        exit 1
      fi
      SUDO="sudo"
    fi
    echo "installing system packages:" $missing
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup.sh: no apt-get here; napari without a screen needs Xvfb and OpenGL/xcb libraries" \
       "(the Debian names are in README.md), a desktop needs none" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "setup.sh: napari-deepcel0 needs Python >= 3.10; $PYTHON is $("$PYTHON" -V 2>&1) (set PYTHON=python3.11, say)" >&2
    exit 1
  }
  "$PYTHON" -m venv .venv || {
    echo "setup.sh: could not make .venv with $PYTHON (on Debian/Ubuntu: apt-get install python3-venv); remove" \
         "the .venv it left and run setup.sh again" >&2
    exit 1
  }
fi
.venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "setup.sh: .venv runs $(.venv/bin/python -V 2>&1); napari-deepcel0 needs Python >= 3.10 (remove .venv)" >&2
  exit 1
}
# a venv without pip (uv venv, venv --without-pip, or one left half-made): add pip, keep the rest
.venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null || {
  echo "setup.sh: .venv has no pip and ensurepip failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
}
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
# (TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU build where PyPI,
# whose Linux wheels are CUDA builds, is the only package source)
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0" \
  ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/python -m pip install -q -e ".[testing]"
echo "napari-deepcel0 is set up in .venv"
