#!/usr/bin/env bash
# The peers that bench/peers.py times collabkit against, each in a virtual environment of its own
# under bench/.venvs/, so that none of them touches the project's .venv or its torch:
#   fastai    torch 2.13.0 (CPU wheel) first, then the light dependencies that `fastai.collab` imports,
#             then fastai itself with --no-deps: no torchvision (collaborative filtering never imports
#             it) and no spaCy.
#   surprise  scikit-surprise 1.1.5 (a wheel; it runs on NumPy 2).
#   lenskit   torch 2.13.0 first, then LensKit 2025.8.1 (biased ALS is lenskit.als.BiasedMFScorer);
#             it wants pandas 2, which is why it lives apart from fastai (pandas 3 there).
#   implicit  implicit's binary wheel (ALS, BPR, item kNN), with NumPy and SciPy: no torch at all;
#             bench/peers_ranking.py uses its implicit.cpu models only, so it never tries CUDA.
#   myfm      myFM 0.4.0's binary wheel (Bayesian factorization machines by Gibbs sampling), with
#             NumPy, SciPy and pandas: no torch; bench/accuracy.py runs four of its feature sets.
# Build only some of them by naming them: `bash bench/setup_peers.sh lenskit implicit` (what
# bench/peers_ranking.py needs); with no argument, all of them.
# Every install is constrained to torch==2.13.0, so nothing can pull a CUDA build. Safe to run again:
# an environment is built only if it lacks its ready mark (written when its check passes).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENVS=.venvs
TORCH=torch==2.13.0
FASTAI_DEPS=(
  fastcore==2.2.41 fasttransform==0.0.5 fastprogress==1.1.6 fastdownload==0.0.8 plum-dispatch==2.9.0
  numpy==2.4.6 pandas==3.1.1 matplotlib==3.11.2 scikit-learn==1.9.1 scipy==1.17.1 pillow==13.0.0
  pyyaml==6.0.4 requests==2.34.2 packaging==26.4 cloudpickle==3.1.3
)

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "LensKit 2025.8 needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1). Set PYTHON=python3.11." >&2
  exit 1
fi
ALL_ENVS=(fastai surprise lenskit implicit myfm)
WANT=("$@")
[ ${#WANT[@]} -gt 0 ] || WANT=("${ALL_ENVS[@]}")
for name in "${WANT[@]}"; do
  case " ${ALL_ENVS[*]} " in
  *" $name "*) ;;
  *)
    echo "unknown environment '$name'; known: ${ALL_ENVS[*]}" >&2
    exit 2
    ;;
  esac
done
wanted() { case " ${WANT[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac }

mkdir -p "$VENVS"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "$TORCH" >"$CONSTRAINTS"

pip_in() { # pip_in VENV ARGS...: install into one environment; on failure show pip's output and stop
  local venv=$1 out
  shift
  if ! out=$("$VENVS/$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "$@" 2>&1); then
    echo "$out" | grep -v "^WARNING: Location" >&2
    echo "pip install $* into $VENVS/$venv failed" >&2
    exit 1
  fi
}

start() { # start NAME: 1 (skip) if NAME is ready, else make sure the environment exists
  if [ -f "$VENVS/$1/.ready" ]; then
    echo "$1: ready ($(cat "$VENVS/$1/.ready"))"
    return 1
  fi
  echo "$1: installing into bench/$VENVS/$1"
  [ -x "$VENVS/$1/bin/python" ] || "$PY" -m venv "$VENVS/$1"
}

finish() { # finish NAME CHECK: run the check script, which prints the versions; mark ready
  local versions
  versions=$("$VENVS/$1/bin/python" -c "$2" 2>/dev/null) || {
    "$VENVS/$1/bin/python" -c "$2" >&2 || true
    echo "$1: the check failed" >&2
    exit 1
  }
  echo "$versions" >"$VENVS/$1/.ready"
  echo "$1: ready ($versions)"
}

if wanted fastai && start fastai; then
  pip_in fastai "$TORCH"
  pip_in fastai "${FASTAI_DEPS[@]}"
  pip_in fastai --no-deps fastai==2.8.12
  finish fastai '
import sys, torch, fastai
from fastai.collab import collab_learner
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert "torchvision" not in sys.modules, "fastai.collab imported torchvision"
print(f"fastai {fastai.__version__}, torch {torch.__version__}")'
fi

if wanted surprise && start surprise; then
  pip_in surprise scikit-surprise==1.1.5 numpy==2.4.6
  finish surprise '
import numpy, surprise
from surprise import SVD, SVDpp
print(f"scikit-surprise {surprise.__version__}, numpy {numpy.__version__}")'
fi

if wanted lenskit && start lenskit; then
  pip_in lenskit "$TORCH"
  pip_in lenskit lenskit==2025.8.1
  finish lenskit '
import pandas, torch, lenskit
from lenskit.als import BiasedMFScorer
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"lenskit {lenskit.__version__}, torch {torch.__version__}, pandas {pandas.__version__}")'
fi

if wanted implicit && start implicit; then
  pip_in implicit implicit==0.7.3
  finish implicit '
import sys, numpy, scipy, implicit
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import CosineRecommender
assert "torch" not in sys.modules
print(f"implicit {implicit.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}")'
fi

if wanted myfm && start myfm; then
  pip_in myfm --only-binary myfm myfm==0.4.0 numpy==2.4.6 scipy==1.17.1 pandas==3.1.1
  finish myfm '
import sys, numpy, scipy, pandas, myfm
from myfm import MyFMRegressor, RelationBlock
assert "torch" not in sys.modules
print(f"myfm {myfm.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}, pandas {pandas.__version__}")'
fi
