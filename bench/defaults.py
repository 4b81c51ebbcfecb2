"""Do the default settings fit tables that are not ML-100k? The default `train` against the
biases-only baseline and the chapter's recipe, on the same random 20% split of each table.

    .venv/bin/python bench/defaults.py [--model dotbias] [--json out.json]

Tables (none of them ML-100k):
- ml-latest-small: GroupLens's current small release (half stars, 100,836 ratings), read from
  ../shared/data/ml-latest-small when it is there (skipped, with the reason, when not);
- books-1-10: 6,780 ratings on a 1..10 scale (synthetic, MovieLens-shaped, stars doubled and
  jittered), the shape of the newcomer's book table;
- long-tail: 30,000 ratings over 8,000 users and 6,000 items (synthetic): most users and items have
  one or two ratings.

Each row: the held-out RMSE of the default (`collabkit train`'s fast recipe), of `--recipe
chapter`, of the biases-only baseline and of the training mean, with fit seconds; "beats" says
whether the default beats the biases-only baseline.
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


def tables() -> dict[str, pd.DataFrame | str]:
    from collabkit.data import load_ratings
    from collabkit.data.synthetic import synthetic_ratings

    out: dict[str, pd.DataFrame | str] = {}
    if SHARED.is_file():
        out["ml-latest-small"] = load_ratings(str(SHARED), user="userId", item="movieId", progress=False)
    else:
        out["ml-latest-small"] = f"skipped: {SHARED} is not here (a fresh clone has no ../shared)"
    rng = np.random.default_rng(0)
    books = synthetic_ratings(6_780, n_users=700, n_items=900, seed=1)
    books["rating"] = np.clip(books["rating"] * 2 - rng.integers(0, 2, len(books)), 1, 10).astype("float32")
    out["books-1-10"] = books
    out["long-tail"] = synthetic_ratings(30_000, n_users=8_000, n_items=6_000, seed=2)
    return out


def run(model: str) -> list[dict[str, Any]]:
    from collabkit.workflows import TrainConfig, train

    rows = []
    for name, table in tables().items():
        if isinstance(table, str):
            rows.append({"table": name, "note": table})
            continue
        row: dict[str, Any] = {"table": name, "rows": len(table),
                               "scale": f"{table['rating'].min():g}..{table['rating'].max():g}"}  # fmt: skip
        for label, recipe in (("default", None), ("chapter", "chapter")):
            start = time.perf_counter()
            res = train(table, TrainConfig(model=model, recipe=recipe), data_name=name, log=None)
            row[f"{label}_rmse"] = res.valid["rmse"]
            row[f"{label}_s"] = time.perf_counter() - start
            if label == "default":
                row["settings"] = ", ".join(f"{k} {res.settings[k]}" for k in ("bs", "epochs", "lr", "wd"))
                row["biases_rmse"] = res.valid["baselines"]["biases"]["rmse"]
                row["mean_rmse"] = res.valid["baselines"]["global_mean"]["rmse"]
        row["beats"] = row["default_rmse"] < row["biases_rmse"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dotbias")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = run(args.model)
    cols = ["table", "rows", "scale", "default_rmse", "chapter_rmse", "biases_rmse", "mean_rmse", "beats",
            "default_s", "chapter_s", "settings"]  # fmt: skip
    print_table([r for r in rows if "note" not in r], cols)
    for r in rows:
        if "note" in r:
            print(f"{r['table']}: {r['note']}")
    write_json(args.json, {"bench": "defaults", "model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
