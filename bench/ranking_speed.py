"""Fit seconds of collabkit's `ials` and `bpr` beside implicit's ALS and BPR, in one run.

    bash bench/setup_peers.sh implicit && \\
        .venv/bin/python bench/ranking_speed.py [--sizes u1,1e6,5e6] [--models ials,bpr] \\
            [--threads default,1] [--repeat 1] [--also OLD/src] [--json bench/results/ranking_speed.json]

Data, the same cells for both libraries: `u1` is ML-100k u1's training rows (943 users, 1650 items
rated, 80,000 ratings); a number is `collabkit.data.synthetic.synthetic_ratings(n)` (MovieLens-shaped,
ML-25M's ratio of users and items to ratings, seed 0; 1e6: 14,542 users x 8,336 items; 5e6:
48,587 x 22,481), as bench/scale.py draws them.

Settings, the same problem in both libraries:
  ials vs implicit.cpu ALS: 64 factors, 15 iterations, reg 30, confidence 1 + 0.5 * rating
      (collabkit's defaults: alpha 0.5, values rating; implicit gets 1 + 0.5 * rating as its matrix
      with alpha 1, since implicit's confidence is alpha times the stored value), conjugate gradient
      with 3 steps in both (implicit's default `use_cg`, `cg_steps=3`).
  bpr vs implicit.cpu BPR: 64 factors, 20 epochs (implicit: iterations 20), lr 0.01, reg 0.01,
      binary interactions; the rest at each library's defaults (collabkit's batch, implicit's
      negatives checked against the user's items).
Timed: the fit call alone (collabkit `fit_direct(x, y)` on index tensors, as `collabkit train`
runs it; implicit `fit(user_items)` on a CSR matrix), in a fresh process per job, jobs one at a
time and interleaved by size. Threads: implicit with OPENBLAS_NUM_THREADS=1 (as it asks) and its
own default threads (num_threads=0: all cores); collabkit with torch's default threads and with
one (`--threads`); bpr runs its SGD in one thread per torch thread (hogwild, as implicit does), so
its "1" row is one thread throughout. `--repeat N` runs everything N times and keeps each row's
fastest fit. `--also PATH` times a second collabkit source tree beside (rows "collabkit@PATH"), e.g.
the commit before a change: `git archive HEAD~1 src | tar -x -C /tmp/old` then `--also /tmp/old/src`.
Timings mean little on a busy machine: the load average at start and end is printed and saved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import PEAK_MB

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

BENCH = Path(__file__).resolve().parent
IMPLICIT = BENCH / ".venvs" / "implicit" / "bin" / "python"
FACTORS, ALS_ITERATIONS, ALS_REG, ALS_ALPHA = 64, 15, 30.0, 0.5
BPR_EPOCHS, BPR_LR, BPR_REG = 20, 0.01, 0.01

SETTINGS = {  # the job's settings by model, as JSON in its argv
    "ials": {"n_factors": FACTORS, "iterations": ALS_ITERATIONS, "reg": ALS_REG, "alpha": ALS_ALPHA},
    "bpr": {"n_factors": FACTORS, "epochs": BPR_EPOCHS, "lr": BPR_LR, "reg": BPR_REG},
}

# argv: data.npz model settings.json threads (0: torch's default); prints one JSON line
COLLABKIT_JOB = """
import json, sys, time
import numpy as np, torch
from collabkit.models import build_model
from collabkit.models.base import ModelConfig
path, model, settings, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
d = np.load(path)
x = torch.from_numpy(np.stack([d["user"], d["item"]], 1)).long()
y = torch.from_numpy(d["rating"])
torch.manual_seed(0)
net = build_model(ModelConfig(model, int(d["n_users"]), int(d["n_items"]), **settings))
t = time.perf_counter()
net.fit_direct(x, y)
fit_s = time.perf_counter() - t
print(json.dumps({"fit_s": fit_s, "threads": torch.get_num_threads(), "version": torch.__version__}))
"""

# argv: data.npz model settings.json (collabkit's names, mapped to implicit's); prints one JSON line
IMPLICIT_JOB = (
    PEAK_MB
    + """
import json, os, sys, time
import numpy as np
import implicit
from scipy.sparse import csr_matrix
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
path, model, s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
d = np.load(path)
shape = (int(d["n_users"]), int(d["n_items"]))
if model == "ials":  # implicit's confidence is alpha times the stored value: store 1 + alpha * rating
    values = (1.0 + s["alpha"] * d["rating"]).astype(np.float32)
    fit = AlternatingLeastSquares(factors=s["n_factors"], regularization=s["reg"], alpha=1.0,
                                  iterations=s["iterations"], random_state=0)
else:
    values = np.ones(len(d["user"]), np.float32)
    fit = BayesianPersonalizedRanking(factors=s["n_factors"], learning_rate=s["lr"],
                                      regularization=s["reg"], iterations=s["epochs"], random_state=0)
user_items = csr_matrix((values, (d["user"], d["item"])), shape=shape)
t = time.perf_counter()
fit.fit(user_items, show_progress=False)
out = {"fit_s": time.perf_counter() - t, "threads": os.cpu_count(), "version": implicit.__version__}
if sys.argv[4:] == ["top10"]:  # bench/scale.py: top-10 for every user (rated items left out), peak memory
    t = time.perf_counter()
    for start in range(0, shape[0], 4096):
        users = np.arange(start, min(start + 4096, shape[0]))
        fit.recommend(users, user_items[users], N=10, filter_already_liked_items=True)
    out["top10_all_s"] = time.perf_counter() - t
    out["peak_mb"] = peak_mb()
print(json.dumps(out))
"""
)

PEER_NAME = {"ials": "ALS", "bpr": "BPR"}


def make_data(size: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Write the cells of `size` (u1, or a number of synthetic ratings) to an .npz; its shape."""
    import pandas as pd

    import collabkit
    from collabkit.data.synthetic import synthetic_ratings

    if size == "u1":
        table = collabkit.load_movielens("ml-100k", progress=False)
        table = table.iloc[collabkit.ml100k_split(table, "u1")[0]]
    else:
        table = synthetic_ratings(int(float(size)))
    user = pd.factorize(table["user"])[0]
    item = pd.factorize(table["item"])[0]
    info = {"size": size, "users": int(user.max()) + 1, "items": int(item.max()) + 1, "ratings": len(table)}
    path = folder / f"data-{size}.npz"
    np.savez(
        path, user=user.astype(np.int64), item=item.astype(np.int64),
        rating=table["rating"].to_numpy(np.float32), n_users=np.int64(user.max() + 1),
        n_items=np.int64(item.max() + 1),
    )  # fmt: skip
    return path, info


def run(python: Path, code: str, *argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One job in a fresh process: its JSON line, or an error."""
    try:
        done = subprocess.run(
            [str(python), "-c", code, *argv], capture_output=True, text=True, timeout=3600, check=False,
            env=env, cwd=BENCH.parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 3600 s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()
        return {"error": f"exit {done.returncode}: {tail[-1] if tail else ''}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="u1,1e6,5e6", help="u1 and/or numbers of synthetic ratings")
    parser.add_argument("--models", default="ials,bpr")
    parser.add_argument(
        "--threads", default="default,1",
        help="collabkit's rows: torch's default threads, a number, or passive (default threads with "
        "OMP_WAIT_POLICY=PASSIVE)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="run everything N times, keep the fastest")
    parser.add_argument(
        "--also", metavar="PATH", help="another collabkit source tree (its src/) to time beside"
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    threads = [t.strip() for t in args.threads.split(",") if t.strip()]
    if not IMPLICIT.exists():
        print(f"no {IMPLICIT}: run `bash bench/setup_peers.sh implicit` first", file=sys.stderr)
        return 1
    load_start = os.getloadavg()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    best: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    infos = {}
    with tempfile.TemporaryDirectory(prefix="collabkit-ranking-speed-") as tmp:
        data = {}
        for size in sizes:
            data[size], infos[size] = make_data(size, Path(tmp))
        for rep in range(args.repeat):
            for size in sizes:
                for model in models:
                    spec = json.dumps(SETTINGS[model])
                    peer = run(IMPLICIT, IMPLICIT_JOB, str(data[size]), model, spec, env=env)
                    jobs: list[tuple[str, str, dict[str, Any]]] = [("implicit", "default", peer)]
                    for tree in [None, args.also] if args.also else [None]:
                        for t in threads:
                            job_env = dict(os.environ)
                            if t == "passive":
                                job_env["OMP_WAIT_POLICY"] = "PASSIVE"
                            if tree is not None:
                                job_env["PYTHONPATH"] = str(Path(tree).resolve())
                            n = "1" if t == "1" else "0" if t in ("default", "passive") else t
                            r = run(
                                Path(sys.executable),
                                COLLABKIT_JOB,
                                str(data[size]),
                                model,
                                spec,
                                n,
                                env=job_env,
                            )
                            jobs.append(("collabkit" if tree is None else f"collabkit@{tree}", t, r))
                    for library, t_name, r in jobs:
                        key = (size, model, library, t_name)
                        line = f"{r['fit_s']:8.2f} s" if "fit_s" in r else r["error"]
                        print(f"  [{rep + 1}/{args.repeat}] {size:>5} {model:4} {library} threads "
                              f"{t_name:7} {line}", flush=True)  # fmt: skip
                        if key not in best or r.get("fit_s", np.inf) < best[key].get("fit_s", np.inf):
                            best[key] = r
    load_end = os.getloadavg()

    rows = []
    for (size, model, library, t_name), r in best.items():
        shown = f"{r.get('threads', '')}{' (OMP passive)' if t_name == 'passive' else ''}"
        peer = best.get((size, model, "implicit", "default"), {})
        info = infos[size]
        row: dict[str, Any] = {
            "data": size, "users": info["users"], "items": info["items"], "ratings": info["ratings"],
            "model": f"{library} {model}" if library != "implicit" else f"implicit {PEER_NAME[model]}",
            "threads": shown if library != "implicit" else f"{r.get('threads', '')} (OpenBLAS 1)",
        }  # fmt: skip
        if "fit_s" in r:
            row["fit s"] = round(r["fit_s"], 3)
            if "fit_s" in peer:
                row["÷ implicit"] = f"{r['fit_s'] / peer['fit_s']:.2f}x"
        else:
            row["fit s"] = f"not run: {r['error']}"
        rows.append(row)
    print()
    print_table(rows, ["data", "users", "items", "ratings", "model", "threads", "fit s", "÷ implicit"])
    print(
        f"\n{os.cpu_count()} cores; load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end. "
        f"÷ implicit: the row's fit seconds over implicit's same model on the same data (below 1: faster); "
        f"best of {args.repeat}."
    )
    write_json(
        args.json,
        {"bench": "ranking_speed", "load_start": load_start, "load_end": load_end, "repeat": args.repeat,
         "rows": rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
