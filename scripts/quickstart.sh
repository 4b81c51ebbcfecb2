#!/usr/bin/env bash
# Set everything up, then the chapter's main job on MovieLens 100k: train the bias model (epoch table),
# then show the five lowest and highest item biases by title and the movies nearest to Star Wars (1977).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/collabkit train --data ml-100k --model dotbias --factors 50 --epochs 5 --lr 5e-3 --wd 0.1 \
  --bs 64 --y-range 0 5.5 --valid-pct 0.2 --seed 42 --out runs/dotbias
.venv/bin/collabkit interpret runs/dotbias -n 5 --item "Star Wars (1977)" --min-count 20  # films with 20+ ratings
