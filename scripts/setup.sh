#!/usr/bin/env bash
# Set up collabkit in ./.venv: PyTorch 2.13.0 (CPU wheel) first, so no other package pulls a CUDA build,
# then collabkit itself with its development tools. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_quiet() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip_quiet "torch==2.13.0"
fi
# torch is already satisfied, so the editable install adds only the light dependencies.
pip_quiet -e ".[dev]"
# The page tests drive Debian's chromium (Playwright's own browser download cannot be used here).
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    if ! { $SUDO apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1; }; then
      echo "warning: could not install chromium with apt-get; tests/test_page.py will skip" >&2
    fi
  else
    echo "warning: no apt-get to install chromium; tests/test_page.py will skip" >&2
  fi
fi
.venv/bin/python -c "import torch, collabkit; print(f'collabkit {collabkit.__version__} ready (torch {torch.__version__})')"
