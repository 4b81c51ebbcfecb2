"""The chapter's run on ML-100k in collabkit: fused and autograd steps, callbacks, own module, deep model,
fast recipe.

    .venv/bin/python bench/speed.py [--seeds 3] [--jobs bias-fused-dense,bias-fused-lazy] [--json out.json]

`bias-fused` takes the fused step's own choice of update ("auto": dense at this table's size);
`bias-fused-dense` and `bias-fused-lazy` force each AdamW update (`FusedDotTrainer.default_update`).
Beside each fused job, `max_abs_vs_dense` is the largest difference of any weight from
`bias-fused-dense`'s with the same seed (ends of 6,250 steps: trajectories that differ in rounding
alone drift apart too; `bias-autograd`'s row gives that floor).

Each job runs in a fresh process (import to exit is `process_s`), with the chapter's code:
`CollabDataLoaders.from_df(ratings, item_name="title", bs=64, seed=42)`, one-cycle, wd 0.1, on
fastai's random 20% split. fastai itself is timed beside collabkit by bench/peers.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import print_table, run_job, write_json

JOB = """
import json, sys, time, resource
t0 = time.perf_counter()
import torch
from torch import nn
from collabkit import (CollabDataLoaders, Embedding, Learner, Module, MSELossFlat, collab_learner,
                       load_movielens, set_seed, sigmoid_range)

class DotProductBias(Module):  # the chapter's own model, imports changed
    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.user_bias = Embedding(n_users, 1)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.movie_bias = Embedding(n_movies, 1)
        self.y_range = y_range
    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1, keepdim=True)
        res += self.user_bias(x[:, 0]) + self.movie_bias(x[:, 1])
        return sigmoid_range(res, *self.y_range)

job, seed, weights = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from collabkit.train.fused import FusedDotTrainer
if job in ("bias-fused-dense", "bias-fused-lazy"):
    FusedDotTrainer.default_update = job.rsplit("-", 1)[1]
bs, epochs, lr, wd = (768, 6, 5e-3, 0.1) if job == "fast-recipe" else (64, 5, 5e-3, 0.1)
ratings = load_movielens("ml-100k", progress=False)[["user", "item", "rating", "title"]]
dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=bs, seed=42, shuffle_seed=seed)
set_seed(seed)
if job == "own-module":
    learn = Learner(dls, DotProductBias(dls.n_users, dls.n_items, 50), loss_func=MSELossFlat(), log=None)
elif job == "deep-nn":
    learn = collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[100, 50], log=None)
else:
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), log=None, fused=job != "bias-autograd")
from collabkit.train.callbacks import Callback, EarlyStoppingCallback

class EveryBatch(Callback):  # a callback that asks for every batch, doing nothing with it
    def after_batch(self):
        pass

cbs = {"bias-fused-earlystop": [EarlyStoppingCallback(patience=10)],
       "bias-fused-after-batch": [EveryBatch()]}.get(job, [])
t = time.perf_counter()
learn.fit_one_cycle(epochs, lr, wd=wd, cbs=cbs)
fit = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if weights:
    torch.save(learn.model.state_dict(), weights)
print(json.dumps({"fit_s": fit, "valid_mse": learn.history[-1]["valid_loss"], "peak_mb": peak,
                  "steps": epochs * len(dls.train), "import_to_exit_s": time.perf_counter() - t0}))
"""

JOBS = [
    "bias-fused",
    "bias-fused-dense",  # AdamW over every row every step, as fastai
    "bias-fused-lazy",  # AdamW on the batch's rows, the others brought up to date in closed form
    "bias-fused-earlystop",  # early stopping (never triggered): acts at epoch ends only
    "bias-fused-after-batch",  # a callback called after every batch
    "bias-autograd",
    "own-module",
    "deep-nn",
    "fast-recipe",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--json")
    args = parser.parse_args()
    cols = ["job", "fit_s", "us_per_step", "process_s", "peak_mb", "valid_mse", "max_abs_vs_dense"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="collabkit-speed-") as tmp:
        saved = Path(tmp)
        jobs = args.jobs.split(",")
        runs: dict[str, list[dict]] = {job: [] for job in jobs}
        for s in range(args.seeds):  # seed by seed, every job in turn: load on the machine hits all alike
            for job in jobs:
                keep = job.startswith("bias-")  # the dot model's weights, to compare with the dense update
                runs[job].append(run_job(JOB, job, str(42 + s), str(saved / f"{job}-{s}.pt") if keep else ""))
                print(job, 42 + s, json.dumps(runs[job][-1]), flush=True)
        for job in jobs:
            med = {k: statistics.median(r[k] for r in runs[job]) for k in runs[job][0]}
            us = med["fit_s"] / med["steps"] * 1e6
            rows.append({"job": job, **med, "us_per_step": us, "runs": runs[job]})
        for row in rows:
            diffs = [_max_abs(saved / f"{row['job']}-{s}.pt", saved / f"bias-fused-dense-{s}.pt")
                     for s in range(args.seeds)]  # fmt: skip
            if all(d is not None for d in diffs):
                row["max_abs_vs_dense"] = f"{max(d for d in diffs if d is not None):.1e}"
    print()
    print(f"median of {args.seeds} seeds; ML-100k, random 20% split (seed 42), 50 factors")
    print_table(rows, cols)
    write_json(args.json, {"bench": "speed", "rows": rows})


def _max_abs(path: Path, dense: Path) -> float | None:
    """The largest difference of any weight between two saved runs (None where one is missing)."""
    if not (path.exists() and dense.exists()):
        return None
    import torch

    a, b = torch.load(path), torch.load(dense)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


if __name__ == "__main__":
    main()
