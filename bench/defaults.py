"""Do the default settings fit the table? The default `train` beside the recipe it replaced, the
chapter's recipe, the biases-only baseline and the training mean, on the same split of each table.

    .venv/bin/python bench/defaults.py [--model dotbias] [--json out.json]

Tables:
- ml-latest-small: GroupLens's current small release (half stars, 100,836 ratings), read from
  ../shared/data/ml-latest-small when it is there (skipped, with the reason, when not);
- books-1-10: 6,780 ratings on a 1..10 scale (synthetic, MovieLens-shaped, stars doubled and
  jittered), the shape of the newcomer's book table;
- long-tail: 30,000 ratings over 8,000 users and 6,000 items (synthetic): most users and items have
  one or two ratings;
- ml-100k (random 20%, seed 42) and ml-100k u1: the table the recipes were tuned on, which the
  default must not do worse on (read from the cache or GroupLens; skipped when neither is there).

Each row: held-out RMSE of `before` (the fast recipe without keep_best: the default until issue
17), of the default, of `--recipe chapter`, of the biases-only baseline (as `train` prints it), of
the same baseline scored as the model is (`biases_same`: a held-out pair whose user or item has no
training ratings gets the training mean, as the scorer gives every model), and of the mean; `best`
is the epoch the held-aside training rows chose (0: the biases-only start); "beats" says whether
the default beats the biases-only baseline as `train` prints it, "beats_same" as scored alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"


def tables() -> dict[str, tuple[pd.DataFrame, Any] | str]:
    from collabkit.data import load_movielens, load_ratings
    from collabkit.data.splits import SplitSpec
    from collabkit.data.synthetic import synthetic_ratings

    out: dict[str, tuple[pd.DataFrame, Any] | str] = {}
    if SHARED.is_file():
        small = load_ratings(str(SHARED), user="userId", item="movieId", progress=False)
        out["ml-latest-small"] = (small, SplitSpec())
    else:
        out["ml-latest-small"] = f"skipped: {SHARED} is not here (a fresh clone has no ../shared)"
    rng = np.random.default_rng(0)
    books = synthetic_ratings(6_780, n_users=700, n_items=900, seed=1)
    books["rating"] = np.clip(books["rating"] * 2 - rng.integers(0, 2, len(books)), 1, 10).astype("float32")
    out["books-1-10"] = (books, SplitSpec())
    out["long-tail"] = (synthetic_ratings(30_000, n_users=8_000, n_items=6_000, seed=2), SplitSpec())
    try:
        ml = load_movielens("ml-100k", progress=False)
        out["ml-100k"] = (ml, SplitSpec())
        out["ml-100k u1"] = (ml, SplitSpec(kind="u1"))
    except Exception as e:  # noqa: BLE001 - offline with no cache: say so and go on
        out["ml-100k"] = f"skipped: {e}"
    return out


def biases_same(table: pd.DataFrame, split: Any) -> float:
    """RMSE of the biases-only baseline with the scorer's rule: the mean for an untrained user or item."""
    from collabkit.baselines import fit_biases
    from collabkit.data.splits import make_split

    train_rows, valid_rows = make_split(table, split)
    tr, va = table.iloc[train_rows], table.iloc[valid_rows]
    users = {u: k for k, u in enumerate(tr["user"].unique())}
    items = {i: k for k, i in enumerate(tr["item"].unique())}
    b = fit_biases(tr["user"].map(users).to_numpy(), tr["item"].map(items).to_numpy(),
                   tr["rating"].to_numpy(), len(users), len(items))  # fmt: skip
    u = va["user"].map(users).fillna(-1).astype(int).to_numpy()
    i = va["item"].map(items).fillna(-1).astype(int).to_numpy()
    pred = np.where((u >= 0) & (i >= 0), b.predict(u, i), b.mean)
    return float(np.sqrt(np.mean((pred - va["rating"].to_numpy()) ** 2)))


def run(model: str) -> list[dict[str, Any]]:
    from collabkit.models import family
    from collabkit.workflows import TrainConfig, train

    fam = family(model)
    before = fam.recipes["fast"].model_copy(update={"keep_best": False})
    fam.recipes = {**fam.recipes, "before": before}  # this process only: the recipe it replaced
    rows = []
    for name, entry in tables().items():
        if isinstance(entry, str):
            rows.append({"table": name, "note": entry})
            continue
        table, split = entry
        row: dict[str, Any] = {"table": name, "rows": len(table),
                               "scale": f"{table['rating'].min():g}..{table['rating'].max():g}"}  # fmt: skip
        for label, recipe in (("before", "before"), ("default", None), ("chapter", "chapter")):
            start = time.perf_counter()
            cfg = TrainConfig(model=model, recipe=recipe, split=split)
            res = train(table, cfg, data_name=name, log=None)
            row[label] = res.valid["rmse"]
            row[f"{label}_s"] = time.perf_counter() - start
            if label == "default":
                row["best"] = None if res.best is None else res.best["best_epoch"]
                row["biases"] = res.valid["baselines"]["biases"]["rmse"]
                row["mean"] = res.valid["baselines"]["global_mean"]["rmse"]
        row["biases_same"] = biases_same(table, split)
        row["beats"] = row["default"] < row["biases"]
        row["beats_same"] = row["default"] < row["biases_same"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dotbias")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = run(args.model)
    cols = ["table", "rows", "scale", "before", "default", "best", "chapter", "biases", "biases_same", "mean",
            "beats", "beats_same", "before_s", "default_s", "chapter_s"]  # fmt: skip
    rmse = ("before", "default", "chapter", "biases", "biases_same", "mean")
    shown = [{k: f"{v:.4f}" if k in rmse else v for k, v in r.items()} for r in rows if "note" not in r]
    print_table(shown, cols)  # RMSE to 4 places: the default and biases_same can differ in the 4th
    for r in rows:
        if "note" in r:
            print(f"{r['table']}: {r['note']}")
    write_json(args.json, {"bench": "defaults", "model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
