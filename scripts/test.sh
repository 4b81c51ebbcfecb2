#!/usr/bin/env bash
# Set everything up, then run the checks CI runs: ruff, mypy and the whole test suite (real ML-100k included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest -q "$@"
