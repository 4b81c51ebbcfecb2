"""Scale: the bias model on MovieLens-shaped synthetic data from 1M to 100M ratings.

    .venv/bin/python bench/scale.py [--sizes 1e6,5e6,25e6,1e8] [--bs 65536] [--json out.json]

Each size runs in its own process: generate, encode, train one epoch (50 factors, fused step),
and, at the ML-25M shape, top-10 for every user; it reports seconds, ratings per second and peak
memory. Time should grow with the ratings and memory with users + items (plus the ratings).
"""

from __future__ import annotations

import argparse

from _common import print_table, run_job, write_json

JOB = """
import json, sys, time, resource, torch
from collabkit import CollabDataLoaders, collab_learner, set_seed
from collabkit.data.synthetic import synthetic_ratings, synthetic_like
n, bs, recommend = int(float(sys.argv[1])), int(sys.argv[2]), sys.argv[3] == "1"
t = time.perf_counter()
table = synthetic_like("ml-25m") if n == 25_000_095 else synthetic_ratings(n)
gen_s = time.perf_counter() - t
t = time.perf_counter()
dls = CollabDataLoaders.from_df(table, bs=bs, seed=0, valid_pct=0.01)
encode_s = time.perf_counter() - t
n_users, n_items = dls.n_users - 1, dls.n_items - 1
del table
set_seed(0)
learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5), log=None, show_progress=False)
t = time.perf_counter()
learn.fit_one_cycle(1, 1e-2, wd=0.01)
epoch_s = time.perf_counter() - t
out = {"ratings": n, "users": n_users, "items": n_items, "bs": bs, "generate_s": gen_s, "encode_s": encode_s,
       "epoch_s": epoch_s, "ratings_per_s": dls.train.n / epoch_s, "valid_rmse": learn.history[-1]["rmse"]}
if recommend:
    from collabkit.bundle import trained_from_learner
    from collabkit.recommend import Recommender
    rec = Recommender(trained_from_learner(learn))
    users = dls.user_vocab.items[1:]
    t = time.perf_counter()
    rec.recommend_many(users, n=10, unknown="popular")
    out["top10_all_users_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for u in users[:200]:
        rec.recommend(u, n=10, unknown="popular")
    out["top10_one_user_ms"] = (time.perf_counter() - t) / 200 * 1000
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1e6,5e6,25000095,1e8")
    parser.add_argument("--bs", type=int, default=65536)
    parser.add_argument("--no-recommend", action="store_true", help="skip top-10 for every user at 25M")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        n = int(float(size))
        rec = "1" if n == 25_000_095 and not args.no_recommend else "0"
        row = run_job(JOB, str(n), str(args.bs), rec)
        rows.append(row)
        print_table([row], list(row))
    cols = ["ratings", "users", "items", "generate_s", "encode_s", "epoch_s", "ratings_per_s", "peak_mb",
            "valid_rmse", "top10_all_users_s", "top10_one_user_ms"]  # fmt: skip
    print()
    print_table(rows, cols)
    write_json(args.json, {"bench": "scale", "rows": rows})


if __name__ == "__main__":
    main()
