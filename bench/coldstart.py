"""How strongly a new user's fold-in should lean on the average user, measured on ranking quality.

Simulation: a share of ML-100k's users is held out of training entirely. For each held-out user,
`--profile` of their ratings (their earliest, as a sign-up flow would collect them) are folded into
the trained model; the rest are their test. For each fold-in strength the table gives NDCG@10 and
precision@10 of the top 10 among unseen items (relevant: test rating >= 4), the RMSE of the
folded-in predictions on the test ratings, and how many of ten recommendations two opposite new
users share (one loves children's animation and hates Tarantino; the other loves sci-fi action and
hates Austen).

    .venv/bin/python bench/coldstart.py [--model dotbias] [--json bench/results/coldstart.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

KIDS = {"Toy Story (1995)": 5, "Aladdin (1992)": 5, "Lion King, The (1994)": 5,
        "Pulp Fiction (1994)": 1, "Reservoir Dogs (1992)": 1}  # fmt: skip
ACTION = {"Star Wars (1977)": 5, "Alien (1979)": 5, "Terminator, The (1984)": 5,
          "Sense and Sensibility (1995)": 1, "Emma (1996)": 1}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dotbias")
    ap.add_argument("--held-out", type=float, default=0.2, help="share of users held out of training")
    ap.add_argument("--profile", type=int, default=5, help="ratings each new user gives")
    ap.add_argument("--strengths", default="0.01,0.1,0.3,1,3,10,30")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()

    import collabkit
    from collabkit.data.splits import SplitSpec
    from collabkit.ranking import ndcg_at_k, precision_at_k
    from collabkit.recommend import Recommender
    from collabkit.workflows import TrainConfig, train

    table = collabkit.load_movielens("ml-100k", progress=False)
    rng = np.random.default_rng(args.seed)
    users = table["user"].unique()
    new_users = set(rng.choice(users, int(len(users) * args.held_out), replace=False).tolist())
    is_new = table["user"].isin(new_users).to_numpy()
    import tempfile

    from collabkit.persist import load_model

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(model=args.model, split=SplitSpec("random", 0.0))
        train(table[~is_new].reset_index(drop=True), config, out=Path(tmp) / "m", log=None)
        rec = Recommender(load_model(Path(tmp) / "m"))
    print(f"trained {args.model} on {int((~is_new).sum()):,} ratings of {len(users) - len(new_users)} users "
          f"in {time.perf_counter() - t:.1f} s; {len(new_users)} new users")  # fmt: skip
    trained_items = set(rec.items[i] for i in np.flatnonzero(rec.item_counts.numpy() > 0))
    new_rows = table[is_new].sort_values(["user", "timestamp"], kind="stable")
    cases = []
    for _, g in new_rows.groupby("user"):
        g = g[g["item"].isin(trained_items)]
        if len(g) <= args.profile:
            continue
        profile = dict(zip(g["item"].iloc[: args.profile], g["rating"].iloc[: args.profile], strict=True))
        test = g.iloc[args.profile :]
        cases.append((profile, test["item"].tolist(), test["rating"].to_numpy(dtype=float)))
    rows = []
    for s in (float(x) for x in args.strengths.split(",")):
        ndcg, prec, sq, n_sq = [], [], 0.0, 0
        for profile, items, ratings in cases:
            new = rec.fold_in(profile, strength=s)
            top = rec.recommend_for_ratings(new, 10)
            relevant = {i for i, r in zip(items, ratings, strict=True) if r >= 4}
            if relevant:
                hits = np.array([[i in relevant for i in top.items] + [False] * (10 - len(top))])
                ndcg.append(float(ndcg_at_k(hits, np.array([len(relevant)]))[0]))
                prec.append(float(precision_at_k(hits)[0]))
            if rec.model.score_kind == "rating":
                pred = rec.predict_new(new, items)
                sq += float(((pred - ratings) ** 2).sum())
                n_sq += len(items)
        a = set(rec.recommend_for_ratings(KIDS, 10, strength=s).items)
        b = set(rec.recommend_for_ratings(ACTION, 10, strength=s).items)
        rows.append({"strength": s, "ndcg@10": float(np.mean(ndcg)), "precision@10": float(np.mean(prec)),
                     "rmse": (sq / n_sq) ** 0.5 if n_sq else None, "shared_of_10": len(a & b),
                     "users": len(ndcg)})  # fmt: skip
    print_table(rows, ["strength", "ndcg@10", "precision@10", "rmse", "shared_of_10", "users"])
    write_json(args.json, {"model": args.model, "profile": args.profile, "rows": rows})


if __name__ == "__main__":
    main()
