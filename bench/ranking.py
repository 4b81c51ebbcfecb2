"""Top-10 quality of the ranking models (and the bias model for reference) on MovieLens.

The protocol is `collabkit evaluate MODEL --ranking --min-count 1` (src/collabkit/ranking.py):
relevant items are a user's held-out ratings >= 4; candidates are EVERY item with training ratings
that the user did not rate (min_count=1, passed explicitly: `evaluate_ranking` defaults to
MIN_COUNT, the items `recommend` serves; LensKit and implicit rank every trained item, and so do
the figures here and in the README); users with no relevant held-out item are left out (456 users
on ML-100k u1). Beside NDCG, precision, recall and MAP at 10 and catalogue coverage, two
popularity-bias measures: the mean training count of the recommended items (`pop@10`, lower is
less popularity-bound) and the intra-list diversity (`ild@10`: 1 - mean cosine between the items
of a list, on their training interaction columns).

    .venv/bin/python bench/ranking.py                           # ML-100k u1
    .venv/bin/python bench/ranking.py --folds u1,u2,u3,u4,u5    # mean ± std over the five splits
    .venv/bin/python bench/ranking.py --latest                  # + ml-latest-small, 5 folds (if present)
    .venv/bin/python bench/ranking.py --tune                    # choose the settings on u1 (see below)
    .venv/bin/python bench/ranking.py --tune --folds u1,u2,u3,u4,u5   # tuned per fold, then tested
    .venv/bin/python bench/ranking.py --json out.json

`--tune` chooses each family's options on a validation part carved from a fold's TRAINING rows
(a random 20% of its u*.base, seed 0; its u*.test is never read while choosing) and prints the
grid. With one fold (u1, the default) it only prints the choice: those values are the families'
defaults, written into the Settings by hand. With several folds it tunes on each fold's own
training rows, then trains the chosen settings on the whole of that fold's u*.base and reports its
u*.test NDCG@10 and the mean ± std: settings chosen on u1.base are never reported on u2..u5 (u1.base
is the union of u2..u5's test parts). Run it single-threaded on a shared machine
(OMP_NUM_THREADS=1): EASE's solve is much slower when its threads compete for cores.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

# what is run: the options --tune chose on u1's training rows ({}: the family's defaults). The
# thresholds are not the families' defaults: min_rating is on the table's rating scale, and one
# above every rating (an implicit-feedback table of 1s) would leave nothing to learn from.
SETTINGS: dict[str, dict[str, Any]] = {
    "popular": {},
    "itemknn": {"k": 800, "values": "rating", "min_rating": 3.0},
    "userknn": {"k": 50, "values": "rating", "min_rating": 3.0},
    "ials": {},  # its defaults are the tuned reg 30, alpha 0.5, values rating
    "ease": {"l2": 250, "min_rating": 4.0, "dropout": 0.1},
    "easeknn": {"l2": 250, "min_rating": 4.0, "k": 50, "weight": 0.25},
    "bpr": {},  # its defaults: reg 0.01 (tuned), epochs 20, lr 0.05, bs 4096, 64 factors
    "dotbias": {},  # the fast recipe, for reference: a rating model ranked by predicted stars
}

MIN_COUNT = 1  # every trained item is a candidate, as LensKit and implicit rank (see the docstring)
THRESHOLDS = [None, 3.0, 4.0]  # min_rating: every rating counts, or only those at or above

# Each family's search: a list of stages, each a grid; a later stage starts from the earlier
# stages' best (a coordinate search, to keep a fold's tuning to minutes). Round 1 (before
# min_rating): ease dropout 0, 0.1, 0.25 and itemknn/userknn shrink 0, 10 chose 0. Round 2 added
# min_rating and values; its best sat at the edge for itemknn's k (400) and easeknn's weight (0.25),
# so round 3, below, extends those, and checks EASE's dropout again at the chosen threshold. Round
# 3 on u1: itemknn k 800 (0.2403 against k 400's 0.2396: a plateau, not extended further),
# easeknn weight 0.25 again (0.1 ranks lower), ease dropout 0.1 (0.2728 against 0.2726 at 0).
GRIDS: dict[str, list[dict[str, list[Any]]]] = {
    "ease": [
        {
            "l2": [100, 250, 500, 1000],
            "values": ["binary", "rating"],
            "min_rating": THRESHOLDS,
            "dropout": [0.0],
        },
        {"dropout": [0.0, 0.1, 0.25]},
    ],
    "easeknn": [
        {"l2": [100, 250, 500, 1000], "min_rating": THRESHOLDS, "k": [30], "weight": [0.5]},
        {"k": [30, 50, 100], "weight": [0.1, 0.25, 0.5, 1.0]},
    ],
    "itemknn": [{"k": [100, 200, 400, 800], "values": ["binary", "rating"], "min_rating": THRESHOLDS}],
    "userknn": [{"k": [20, 50, 100], "values": ["binary", "rating"], "min_rating": THRESHOLDS}],
    "ials": [
        {"reg": [30.0, 100.0], "min_rating": THRESHOLDS, "alpha": [0.5], "values": ["rating"]},
        {"alpha": [0.25, 0.5, 1.0]},
    ],
    "bpr": [{"reg": [0.003, 0.01, 0.03], "epochs": [20]}],
}
TUNED = ["ease", "easeknn", "itemknn", "userknn"]  # --tune's default families (ials, bpr: --models)

COLUMNS = ["model", "data", "ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10",
           "pop@10", "ild@10", "users", "fit_s", "rank_s"]  # fmt: skip
LATEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"


def run_one(
    table: pd.DataFrame, split: Any, model: str, options: dict[str, Any], *, bias: bool = True
) -> dict[str, Any]:
    """Train `model` on `split` of `table`, then its ranking figures on the held-out rows (every
    trained item a candidate); `bias=False` skips the popularity measures (tuning needs NDCG only)."""
    from collabkit.recommend import Recommender
    from collabkit.workflows import TrainConfig, evaluate_saved, train

    with tempfile.TemporaryDirectory() as out:
        res = train(table, TrainConfig(model=model, split=split, settings=options), out=out, log=None)
        ev = evaluate_saved(out, table, ranking_k=10, min_count=MIN_COUNT)
        ranking = ev.ranking or {}
        extra = popularity_bias(Recommender.load(out)) if bias else {}
    return {
        **ranking.get("metrics", {}),
        **extra,
        "users": ranking["users"]["counted"],
        "fit_s": res.fit_seconds,
        "settings": res.settings,
    }


def popularity_bias(rec: Any) -> dict[str, float]:
    """Mean training count of recommended items and intra-list diversity over every trained user's
    top 10, and the seconds that ranking took (`rank_s`: userknn finds its neighbours here)."""
    import torch

    trained = torch.nonzero(rec.user_counts > 0).squeeze(1).numpy()
    start = time.perf_counter()
    top = rec.recommend_many([rec.users[int(u)] for u in trained], 10, min_count=MIN_COUNT)
    rank_s = time.perf_counter() - start
    idx = top.item_idx  # (n_users, 10)
    counts = rec.item_counts.numpy().astype(np.float64)
    pop = float(counts[idx[idx >= 0]].mean())
    x = rec.trained.train_x.numpy()
    cols = np.zeros((len(rec.items), len(rec.users)), dtype=np.float32)  # item interaction columns
    cols[x[:, 1], x[:, 0]] = 1.0
    unit = cols / np.maximum(np.linalg.norm(cols, axis=1, keepdims=True), 1e-12)
    vecs = unit[np.where(idx >= 0, idx, 0)]  # (n_users, 10, n_users)
    sims = np.einsum("bik,bjk->bij", vecs, vecs)  # (n_users, 10, 10)
    k = idx.shape[1]
    off = (sims.sum((1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return {"pop@10": pop, "ild@10": float(1.0 - off.mean()), "rank_s": rank_s}


def tune(table: pd.DataFrame, fold: str, models: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Each family's grid on a random 20% (seed 0) of `fold`'s training rows; its test rows unread.

    Returns every grid point's row and each family's chosen options (the best validation NDCG@10;
    a tie keeps the earlier point)."""
    from collabkit.data.splits import SplitSpec, make_split

    train_rows, _ = make_split(table, SplitSpec(kind=fold))
    base = table.iloc[train_rows].reset_index(drop=True)
    valid = SplitSpec(kind="random", valid_pct=0.2, seed=0)
    rows: list[dict[str, Any]] = []
    chosen: dict[str, dict[str, Any]] = {}
    for model in models:
        best: dict[str, Any] | None = None
        for grid in GRIDS.get(model, []):
            start = {} if best is None else best["options"]
            for values in itertools.product(*grid.values()):
                options = {**start, **dict(zip(grid, values, strict=True))}
                if best is not None and options == best["options"]:
                    continue  # the earlier stage's best, already scored
                r = {"fold": fold, "model": model, "options": options,
                     **run_one(base, valid, model, options, bias=False)}  # fmt: skip
                print(
                    f"  {fold} {model} {options}: ndcg@10 {r['ndcg@10']:.4f} (fit {r['fit_s']:.1f} s)",
                    flush=True,
                )
                rows.append(r)
                if best is None or r["ndcg@10"] > best["ndcg@10"]:
                    best = r
        if best is not None:
            chosen[model] = best["options"]
            print(
                f"{fold} {model}: best on validation {best['options']} ndcg@10 {best['ndcg@10']:.4f}",
                flush=True,
            )
    return rows, chosen


def tune_per_fold(table: pd.DataFrame, folds: list[str], models: list[str]) -> dict[str, Any]:
    """Per fold: tune on its training rows (`tune`), then train the choice on all of them and test.

    Returns the grid rows, each fold's choice and test figures, and per family the test NDCG@10's
    mean and std over the folds."""
    grid_rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for fold in folds:
        from collabkit.data.splits import SplitSpec

        rows, chosen = tune(table, fold, models)
        grid_rows += rows
        for model, options in chosen.items():
            r = run_one(table, SplitSpec(kind=fold), model, options)
            runs.append({"fold": fold, "model": model, "options": options, **r})
            print(f"{fold} {model} {options}: TEST ndcg@10 {r['ndcg@10']:.4f}", flush=True)
    summary = []
    for model in models:
        per = [r for r in runs if r["model"] == model]
        if per:
            summary.append(summarise(model, "ml-100k " + ",".join(r["fold"] for r in per), per))
    print("\nEach fold's test, with the settings chosen on that fold's own training rows:")
    for r in runs:
        print(f"  {r['fold']}  {r['model']:8s} ndcg@10 {r['ndcg@10']:.4f}  {r['options']}")
    print()
    print_table([shown(r) for r in summary], COLUMNS)
    return {"tune": grid_rows, "runs": runs, "rows": summary}


def summarise(model: str, data: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: each figure's mean (± std over folds, in `<name>_std`)."""
    row: dict[str, Any] = {"model": model, "data": data}
    for key in COLUMNS[2:]:
        vals = np.array([r[key] for r in runs], dtype=np.float64)
        row[key] = float(vals.mean())
        if len(vals) > 1:
            row[f"{key}_std"] = float(vals.std(ddof=1))
    return row


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A table row for printing: the ranking figures as `mean±std` where there are several folds."""
    out = dict(row)
    for key in COLUMNS[2:7]:
        if f"{key}_std" in row:
            out[key] = f"{row[key]:.3f}±{row[f'{key}_std']:.3f}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        help=f"comma-separated families (default: {', '.join(SETTINGS)}; --tune: {', '.join(TUNED)})",
    )
    ap.add_argument("--folds", default="u1", help="ML-100k splits, e.g. u1,u2,u3,u4,u5")
    ap.add_argument("--latest", action="store_true", help="also ml-latest-small, 5 random folds")
    ap.add_argument("--tune", action="store_true", help="choose options on each fold's training rows instead")
    ap.add_argument("--json")
    args = ap.parse_args()

    import collabkit
    from collabkit.data.splits import SplitSpec

    models = [m.strip() for m in (args.models or ",".join(SETTINGS)).split(",") if m.strip()]
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]  # --folds "": ML-100k skipped
    table = collabkit.load_movielens("ml-100k", progress=False)
    print(f"ranking at 10 among every trained item the user has not rated (min_count={MIN_COUNT})")
    if args.tune:
        start = time.perf_counter()
        families = [m for m in (models if args.models else TUNED) if m in GRIDS]
        if len(folds) == 1:
            rows, chosen = tune(table, folds[0], families)
            out: dict[str, Any] = {"tune": rows, "chosen": chosen}
        else:
            out = tune_per_fold(table, folds, families)
        write_json(args.json, {**out, "min_count": MIN_COUNT, "seconds": time.perf_counter() - start})
        return

    datasets: list[tuple[str, pd.DataFrame, list[Any]]] = (
        [("ml-100k " + ",".join(folds), table, [SplitSpec(kind=f) for f in folds])] if folds else []
    )
    if args.latest and LATEST.exists():
        latest = collabkit.read_ratings(LATEST, user="userId", item="movieId", rating="rating")
        datasets.append(
            (
                "ml-latest-small 5-fold",
                latest,
                [SplitSpec(kind="kfold", fold=f, k=5, seed=42) for f in range(5)],
            )
        )
    elif args.latest:
        print(f"{LATEST} is not here: ml-latest-small skipped")
    rows, runs = [], []
    for data, frame, splits in datasets:
        for model in models:
            per = []
            for split in splits:
                r = run_one(frame, split, model, SETTINGS.get(model, {}))
                per.append(r)
                runs.append({"model": model, "data": data, "split": split.describe(), **r})
            rows.append(summarise(model, data, per))
            print(f"  {model} on {data}: ndcg@10 {rows[-1]['ndcg@10']:.4f}", flush=True)
    print()
    print_table([shown(r) for r in rows], COLUMNS)
    paired = paired_with(runs, "ease")
    if paired:
        print("\nNDCG@10 minus ease's on the same split (the folds' own spread cancels):")
        for (data, model), diffs in paired.items():
            print(f"  {data}  {model:8s} " + " ".join(f"{d:+.4f}" for d in diffs))
    write_json(args.json, {"settings": SETTINGS, "rows": rows, "runs": runs})


def paired_with(runs: list[dict[str, Any]], base: str) -> dict[tuple[str, str], list[float]]:
    """Per (data, model): its NDCG@10 minus `base`'s on each split both ran on."""
    ref = {(r["data"], r["split"]): r["ndcg@10"] for r in runs if r["model"] == base}
    out: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        key = (r["data"], r["split"])
        if r["model"] != base and key in ref:
            out.setdefault((r["data"], r["model"]), []).append(r["ndcg@10"] - ref[key])
    return out


if __name__ == "__main__":
    main()
