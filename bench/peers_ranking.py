"""Top-10 ranking beside LensKit and implicit on ML-100k u1, every list scored by collabkit's metrics.

    bash bench/setup_peers.sh lenskit implicit && \\
        .venv/bin/python bench/peers_ranking.py --json bench/results/peers_ranking.json

Each peer model trains on u1.base in a fresh process of its own library's environment
(bench/.venvs/lenskit, bench/.venvs/implicit) and writes, for every u1.test user with training
ratings, its top 10 among the candidates (items with training ratings that the user did not rate
in training), with the seconds around its fit call. collabkit's models (ease, easeknn, ials,
popular) train the same way, in fresh processes of the project's environment, with
`collabkit.workflows.train` on the same split. This process scores every list with
collabkit.ranking's functions and the protocol of `collabkit evaluate --ranking`: relevant = a
held-out rating >= 4; users with no relevant held-out item are left out of the means (456 on u1);
coverage is over all ranked users' lists. A check: collabkit's `ease` scored through this list
path must equal `evaluate_ranking`'s NDCG@10 (to 1e-9).

Settings: LensKit ImplicitMFScorer (50 features, weight 40; and 64 features, weight 1, 15 epochs),
ItemKNNScorer and UserKNNScorer (k 20, feedback="implicit"), PopScorer, EASEScorer (regularization
500, collabkit's EASE l2; LensKit's default is 1); implicit.cpu ALS (64 factors, reg 0.05, 15
iterations, ratings as confidence), BPR (its defaults), item cosine (K 20), with
OPENBLAS_NUM_THREADS=1 as implicit asks (its BPR trains in parallel threads, so it varies a little
from run to run even with a seed). `fit ÷ collabkit easeknn` is a row's fit seconds over
collabkit easeknn's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
K = 10
COLLABKIT_MODELS = ("ease", "easeknn", "ials", "popular")
BASELINE = ("collabkit", "easeknn")  # the fit-time ratio's denominator

# -- the peer jobs: argv = spec.json result.json; they read SPEC["dir"]/u1.base and u1.test --------

PREAMBLE = """
import json, sys, time
import numpy as np
with open(sys.argv[1]) as f:
    SPEC = json.load(f)
base = np.loadtxt(SPEC["dir"] + "/u1.base", dtype=np.int64, delimiter="\\t")
test = np.loadtxt(SPEC["dir"] + "/u1.test", dtype=np.int64, delimiter="\\t")
TRAINED = set(base[:, 0].tolist())
USERS = [int(u) for u in np.unique(test[:, 0]) if int(u) in TRAINED]  # test users with training rows

def finish(fit_s, tops, version):
    with open(sys.argv[2], "w") as f:
        json.dump({"fit_s": fit_s, "users": USERS, "top": tops, "version": version}, f)
"""

LENSKIT_JOB = (
    PREAMBLE
    + """
import pandas as pd
import lenskit
from lenskit import recommend
from lenskit.als import ImplicitMFScorer
from lenskit.basic import PopScorer
from lenskit.data import from_interactions_df
from lenskit.knn import EASEScorer, ItemKNNScorer, UserKNNScorer
from lenskit.pipeline import topn_pipeline
from lenskit.training import TrainingOptions

s = SPEC["settings"]
scorer = {"implicitmf": ImplicitMFScorer, "itemknn": ItemKNNScorer, "userknn": UserKNNScorer,
          "popular": PopScorer, "ease": EASEScorer}[SPEC["model"]](**s)
df = pd.DataFrame(base[:, :3], columns=["user_id", "item_id", "rating"])
data = from_interactions_df(df)
pipe = topn_pipeline(scorer, n=SPEC["k"])  # its candidates: training items the user has not rated
t = time.perf_counter()
pipe.train(data, TrainingOptions(rng=42))  # a fixed seed for ImplicitMF's initialisation
fit_s = time.perf_counter() - t
tops = [[int(i) for i in recommend(pipe, u, n=SPEC["k"]).ids()] for u in USERS]
finish(fit_s, tops, lenskit.__version__)
"""
)

IMPLICIT_JOB = (
    PREAMBLE
    + """
import implicit
from scipy.sparse import csr_matrix
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import CosineRecommender  # a CPU model only

users, u_idx = np.unique(base[:, 0], return_inverse=True)
items, i_idx = np.unique(base[:, 1], return_inverse=True)  # columns = training items only
s = dict(SPEC["settings"])
values = base[:, 2].astype(np.float32) if s.pop("confidence", False) else np.ones(len(base), np.float32)
user_items = csr_matrix((values, (u_idx, i_idx)), shape=(len(users), len(items)))
model = {"als": AlternatingLeastSquares, "bpr": BayesianPersonalizedRanking,
         "cosine": CosineRecommender}[SPEC["model"]](**s)
t = time.perf_counter()
model.fit(user_items, show_progress=False)
fit_s = time.perf_counter() - t
rows = np.searchsorted(users, USERS)
ids, scores = model.recommend(rows, user_items[rows], N=SPEC["k"], filter_already_liked_items=True)
tops = [[int(items[i]) for i, sc in zip(r_ids, r_sc) if i >= 0 and np.isfinite(sc)]
        for r_ids, r_sc in zip(ids, scores)]
finish(fit_s, tops, implicit.__version__)
"""
)

# collabkit's own models, in a fresh process of the project's environment like every peer
COLLABKIT_JOB = (
    PREAMBLE
    + """
import tempfile
import collabkit
from collabkit import load_model
from collabkit.data.splits import SplitSpec
from collabkit.ranking import evaluate_ranking
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, train

table = collabkit.load_movielens("ml-100k", progress=False)
test_rows = table.iloc[collabkit.ml100k_split(table, "u1")[1]]
with tempfile.TemporaryDirectory() as out:
    res = train(table, TrainConfig(model=SPEC["model"], split=SplitSpec("u1")), out=out, log=None)
    trained = load_model(out)
    ev = evaluate_ranking(trained, test_rows, k=SPEC["k"])
    top = Recommender(trained).recommend_many(USERS, SPEC["k"])
tops = [[int(i) for i in row if i is not None] for row in top.items]
with open(sys.argv[2], "w") as f:
    json.dump({"fit_s": res.fit_seconds, "users": USERS, "top": tops, "version": collabkit.__version__,
               "evaluate_ranking": ev}, f)
"""
)

SCRIPTS = {"lenskit": LENSKIT_JOB, "implicit": IMPLICIT_JOB, "collabkit": COLLABKIT_JOB}

# (library, model shown, job's model, settings)
PEERS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("lenskit", "Popular (PopScorer)", "popular", {}),
    ("lenskit", "ImplicitMF 50 f, weight 40", "implicitmf", {"embedding_size": 50, "weight": 40.0}),
    (
        "lenskit",
        "ImplicitMF 64 f, weight 1, 15 ep",
        "implicitmf",
        {"embedding_size": 64, "weight": 1.0, "epochs": 15},
    ),
    ("lenskit", "item kNN k 20 implicit", "itemknn", {"max_nbrs": 20, "feedback": "implicit"}),
    ("lenskit", "user kNN k 20 implicit", "userknn", {"max_nbrs": 20, "feedback": "implicit"}),
    ("lenskit", "EASE reg 500", "ease", {"regularization": 500.0}),
    (
        "implicit",
        "ALS 64 f, reg 0.05, 15 it, ratings",
        "als",
        {"factors": 64, "regularization": 0.05, "iterations": 15, "confidence": True, "random_state": 0},
    ),
    ("implicit", "BPR defaults", "bpr", {"random_state": 0}),
    ("implicit", "item cosine K 20", "cosine", {"K": 20}),
]


def run_peer(library: str, model: str, settings: dict[str, Any], work: Path, tag: str) -> dict[str, Any]:
    """Run one peer job in a fresh process of `library`'s environment; its lists or an error."""
    python = Path(sys.executable) if library == "collabkit" else VENVS / library / "bin" / "python"
    if not python.exists():
        return {"error": f"no environment {python.parent.parent} (bash bench/setup_peers.sh {library})"}
    script = work / f"job_{library}.py"
    script.write_text(SCRIPTS[library])
    spec, out, log = (work / f"{tag}.{ext}" for ext in ("spec.json", "out.json", "log"))
    spec.write_text(json.dumps({"dir": str(work), "model": model, "settings": settings, "k": K}))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    out.unlink(missing_ok=True)
    try:
        with open(log, "wb") as f:
            done = subprocess.run(
                [str(python), str(script), str(spec), str(out)], stdout=f, stderr=subprocess.STDOUT,
                env=env, cwd=work, check=False, timeout=1800,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 1800 s"}
    if done.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()
        return {"error": f"exit {done.returncode}: {tail[-1] if tail else ''}", "log_tail": tail[-30:]}
    result = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - start
    return result


# -- scoring: collabkit's functions on lists of raw item ids ----------------------------------


class Truth:
    """u1's training and held-out rows, as the scoring of a list needs them."""

    def __init__(self, base: pd.DataFrame, test: pd.DataFrame, threshold: float = 4.0) -> None:
        self.candidates = set(base["item"].unique().tolist())
        self.seen = base.groupby("user")["item"].apply(set).to_dict()
        warm = test[test["user"].isin(self.seen.keys())]
        self.users = np.unique(warm["user"].to_numpy())  # ranked users
        rel = warm[warm["rating"] >= threshold].drop_duplicates(["user", "item"])
        sets = rel.groupby("user")["item"].apply(np.asarray)
        self.relevant = [sets.get(u, np.zeros(0, np.int64)) for u in self.users]
        self.n_relevant = np.array([len(r) for r in self.relevant], dtype=np.int64)

    def score(self, users: list[int], top: list[list[int]]) -> dict[str, Any]:
        from collabkit.ranking import (
            average_precision_at_k,
            catalogue_coverage,
            hits_matrix,
            ndcg_at_k,
            precision_at_k,
            recall_at_k,
        )

        by_user = dict(zip(users, top, strict=True))
        missing = [int(u) for u in self.users if int(u) not in by_user]
        rec = np.full((len(self.users), K), -1, dtype=np.int64)
        bad = short = 0
        for row, u in enumerate(self.users):
            items = list(by_user.get(int(u), []))[:K]
            seen = self.seen[u]
            ok = [i for i in dict.fromkeys(items) if i in self.candidates and i not in seen]
            bad += len(items) - len(ok)  # seen, non-candidate or repeated items are dropped
            short += len(ok) < K
            rec[row, : len(ok)] = ok
        hits = hits_matrix(rec, self.relevant)
        counted = self.n_relevant > 0

        def mean(v: np.ndarray) -> float:
            return float(np.mean(v[counted]))

        return {
            "ndcg": mean(ndcg_at_k(hits, self.n_relevant)),
            "precision": mean(precision_at_k(hits)),
            "recall": mean(recall_at_k(hits, self.n_relevant)),
            "map": mean(average_precision_at_k(hits, self.n_relevant)),
            "coverage": catalogue_coverage(rec, len(self.candidates)),
            "users_counted": int(counted.sum()),
            "users_missing": len(missing),
            "dropped_items": bad,
            "short_lists": short,
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="PATH", help="write the rows (and every list's checks) here")
    parser.add_argument("--workdir", help="keep u1.base/u1.test, job scripts and logs here")
    args = parser.parse_args()

    import collabkit

    table = collabkit.load_movielens("ml-100k", progress=False)
    base_rows, test_rows = collabkit.ml100k_split(table, "u1")
    cols = ["user", "item", "rating", "timestamp"]
    base = table.iloc[base_rows][cols].astype({"rating": "int64"})
    test = table.iloc[test_rows][cols].astype({"rating": "int64"})
    truth = Truth(base, test)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="collabkit-peers-ranking-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        for part, rows in (("base", base), ("test", test)):  # GroupLens's u1.base / u1.test layout
            rows.to_csv(work / f"u1.{part}", sep="\t", header=False, index=False)
        for model in COLLABKIT_MODELS:
            r = run_peer("collabkit", model, {}, work, f"collabkit-{model}")
            results.append({"library": "collabkit", "model": model, "settings": "defaults", **r})
            report(results[-1], truth)
        for n, (library, shown, model, settings) in enumerate(PEERS):
            r = run_peer(library, model, settings, work, f"{n}-{library}-{model}")
            results.append({"library": library, "model": shown, "settings": settings, **r})
            report(results[-1], truth)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    # the check: collabkit's ease through the list path equals evaluate_ranking
    ease = next(r for r in results if r["library"] == "collabkit" and r["model"] == "ease")
    own, listed = ease["evaluate_ranking"]["metrics"][f"ndcg@{K}"], ease["scores"]["ndcg"]
    counted = ease["evaluate_ranking"]["users"]["counted"]
    print(
        f"\ncheck: collabkit ease NDCG@{K} via evaluate_ranking {own:.12f}, via the peer-list path "
        f"{listed:.12f} (|diff| {abs(own - listed):.1e}); users counted {counted} / "
        f"{ease['scores']['users_counted']}"
    )
    assert abs(own - listed) <= 1e-9, (own, listed)
    assert counted == ease["scores"]["users_counted"], counted

    base_fit = next(r["fit_s"] for r in results if (r["library"], r["model"]) == BASELINE)
    rows = []
    for r in results:
        row: dict[str, Any] = {"library": r["library"], "model": r["model"]}
        if "error" in r:
            row["NDCG@10"] = f"not run: {r['error']}"
        else:
            s = r["scores"]
            row.update(
                {
                    "NDCG@10": f"{s['ndcg']:.4f}",
                    "P@10": f"{s['precision']:.4f}",
                    "R@10": f"{s['recall']:.4f}",
                    "MAP@10": f"{s['map']:.4f}",
                    "coverage@10": f"{s['coverage']:.3f}",
                    "fit s": f"{r['fit_s']:.3f}",
                    "fit ÷ collabkit easeknn": f"{r['fit_s'] / base_fit:.2f}x",
                }
            )
        rows.append(row)
    print()
    columns = ["library", "model", "NDCG@10", "P@10", "R@10", "MAP@10", "coverage@10", "fit s"]
    print_table(rows, [*columns, "fit ÷ collabkit easeknn"])
    versions = {r["library"]: r.get("version") for r in results if r.get("version")}
    print(
        f"\nML-100k u1, top {K}; relevant = held-out rating >= 4; {ease['scores']['users_counted']} users "
        f"counted, {len(truth.candidates)} candidate items. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f". {os.cpu_count()} cores; fit s is the fit call alone (collabkit: train's fit_seconds);\n"
        "LensKit's user kNN and PopScorer, implicit's cosine and collabkit's popular do little at fit time:\n"
        "user kNN defers its neighbour search to scoring."
    )
    odd = [
        r for r in results if "scores" in r and (r["scores"]["dropped_items"] or r["scores"]["users_missing"])
    ]
    for r in odd:
        s = r["scores"]
        print(
            f"note: {r['library']} {r['model']}: {s['dropped_items']} items dropped (seen, repeated or "
            f"not candidates), {s['users_missing']} users without a list"
        )
    write_json(
        args.json,
        {
            "bench": "peers_ranking",
            "split": "ml-100k u1",
            "k": K,
            "check": {"ease_ndcg_evaluate_ranking": own, "ease_ndcg_lists": listed},
            "versions": versions,
            "rows": rows,
            "results": [
                {k: v for k, v in r.items() if k not in ("top", "users", "log_tail")} for r in results
            ],
        },
    )
    return 0


def report(r: dict[str, Any], truth: Truth) -> None:
    """Score `r`'s lists in place and print one progress line."""
    if "error" in r:
        print(f"  {r['library']:9} {r['model']:36} not run: {r['error']}", flush=True)
        for line in r.get("log_tail", [])[-10:]:
            print(f"      {line}", file=sys.stderr)
        return
    r["scores"] = truth.score(r["users"], r["top"])
    print(
        f"  {r['library']:9} {r['model']:36} fit {r['fit_s']:7.2f} s  NDCG@{K} {r['scores']['ndcg']:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
