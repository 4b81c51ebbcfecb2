"""Scale: the bias model, and with `--ranking` every ranking family, on MovieLens-shaped data.

    .venv/bin/python bench/scale.py [--sizes 1e6,5e6,25e6,1e8] [--bs 65536] [--updates auto,dense,lazy]
                                    [--json out.json]
    .venv/bin/python bench/scale.py --ranking [--sizes 1e6,5e6] [--models ease,itemknn,...] [--json out.json]

Each size is generated once and written as Parquet; a fresh process per job reads it (as a user's
file), encodes it, trains one epoch (50 factors, fused step) and, at the ML-25M shape, gives top-10
for every user; it reports seconds, ratings per second and peak memory. Time should grow with the
ratings and memory with users + items (plus the ratings).
`--step-us` times steps alone instead (up to 800 batches of `--bs` on one thread, the updates
interleaved chunk by chunk; median microseconds a step): where the lazy update pays off, e.g.
`--sizes 1e5,1e6,5e6 --bs 64 --updates dense,lazy --step-us`.
`--updates` runs the epoch once per AdamW update of the fused step (`FusedDotTrainer.default_update`:
auto, dense or lazy), each in its own process. `peak_mb` is the job's peak resident memory (reading
and encoding the data included, generating it not); `fit_peak_mb` the peak from just before the fit to the
end of the epoch (the kernel's high-water mark reset through /proc/self/clear_refs).

`--ranking`: the same synthetic cells (`synthetic_ratings(n)`, seed 0; 25000095 is
`synthetic_like("ml-25m")`) for every ranking family at its default settings, each in a fresh
process: fit seconds (`fit_direct` on every rating), top-10 for every user (seen items left out,
every trained item a candidate: min_count 1) and the process's peak resident memory. At 1M it also
scores NDCG@10 on a per-user random 20% split (relevant: held-out rating >= 4; the model refitted on
the other 80%), so speed never costs accuracy unseen. implicit's ALS and BPR (bench/ranking_speed.py's
jobs and settings: 64 factors, 15 sweeps / 20 epochs; `--peers als,bpr`, '' for none) run beside them
in their own environment (`bash bench/setup_peers.sh implicit`), with their own top-10 for every user
(rated items left out, 4,096 users a call) and peak memory, and give the fit-time ratio; where that
environment is missing their rows say so. `ease` gets `-o max_items=20000` where its items do not fit
(its own refusal names the figure). Above 1M ratings (`--sample-above`), user kNN's top-10
(userknn, easeknn: a user x user similarity row per user, about half an hour for everyone at the
ML-25M shape) is timed on a seeded sample of 2,000 users (`--top10-sample`) and scaled to all of
them; `top10_users` names the sample. Each row is printed, and written to `--json`, as soon as it
is measured, so a long run keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import PEAK_MB, print_table, run_job, write_json

JOB = (
    PEAK_MB
    + """
import json, sys, time, torch
import pandas as pd
from collabkit import CollabDataLoaders, collab_learner, set_seed
path, bs, recommend, update = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
from collabkit.train.fused import FusedDotTrainer
FusedDotTrainer.default_update = update

t = time.perf_counter()
table = pd.read_parquet(path)  # a user's ratings file, as the bench wrote it
read_s = time.perf_counter() - t
n = len(table)
t = time.perf_counter()
dls = CollabDataLoaders.from_df(table, bs=bs, seed=0, valid_pct=0.01)
encode_s = time.perf_counter() - t
n_users, n_items = dls.n_users - 1, dls.n_items - 1
del table
set_seed(0)
learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5), log=None, show_progress=False)
peak_before = peak_mb()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident memory (VmHWM) to what is resident now
    reset = True
except OSError:
    reset = False
t = time.perf_counter()
learn.fit_one_cycle(1, 1e-2, wd=0.01)
epoch_s = time.perf_counter() - t
out = {"ratings": n, "users": n_users, "items": n_items, "bs": bs, "update": update, "read_s": read_s,
       "encode_s": encode_s, "epoch_s": epoch_s, "ratings_per_s": dls.train.n / epoch_s,
       "valid_rmse": learn.history[-1]["rmse"], "before_fit_peak_mb": peak_before}
if reset:
    out["fit_peak_mb"] = peak_mb()
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
out["peak_mb"] = max(peak_before, peak_mb())  # the whole process (the reset lowered VmHWM)
print(json.dumps(out))
"""
)


STEP_JOB = """
import json, statistics, sys, time, copy, torch
from collabkit import CollabDataLoaders, collab_learner, set_seed
from collabkit.data.synthetic import synthetic_ratings
from collabkit.train.fused import FusedDotTrainer
torch.set_num_threads(1)  # one thread for both updates
n, bs, updates = int(float(sys.argv[1])), int(sys.argv[2]), sys.argv[3].split(",")
dls = CollabDataLoaders.from_df(synthetic_ratings(n), bs=bs, seed=0, valid_pct=0.01)
it = iter(dls.train)
batches = [next(it) for _ in range(min(800, len(dls.train)))]
set_seed(0)
model = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5), log=None, show_progress=False).model
sched = ([5e-3] * len(batches), [0.9] * len(batches))
trainers = {u: FusedDotTrainer(copy.deepcopy(model), *sched, 0.1, update=u) for u in updates}
times = {u: [] for u in updates}
chunk = max(1, len(batches) // 8)
for i in range(0, len(batches), chunk):  # the updates in turn, chunk by chunk: load hits both alike
    for u in updates:
        t = time.perf_counter()
        for x, y in batches[i : i + chunk]:
            trainers[u].step(x, y)
        times[u].append((time.perf_counter() - t) / len(batches[i : i + chunk]) * 1e6)
out = {"ratings": n, "rows": dls.n_users + dls.n_items, "bs": bs}
for u in updates:
    out[u + "_us_per_step"] = statistics.median(times[u])
print(json.dumps(out))
"""


RANK_JOB = (
    PEAK_MB
    + """
import json, sys, time
import numpy as np, torch
from collabkit.bundle import TrainedModel
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError
from collabkit.models import build_model
from collabkit.models.base import ModelConfig
from collabkit.recommend import Recommender
path, model, settings, ndcg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
sample = int(sys.argv[5])  # top-10 for this many users (seeded), scaled to all; 0: every user
d = np.load(path)
n_users, n_items = int(d["n_users"]), int(d["n_items"])
x = torch.from_numpy(np.stack([d["user"], d["item"]], 1)).long() + 1  # index 0 is #na#
y = torch.from_numpy(d["rating"])
users, items = Vocab(range(n_users), name="user"), Vocab(range(n_items))
def fit(x, y):
    torch.manual_seed(0)
    config = ModelConfig(model, n_users + 1, n_items + 1, **settings)
    net = build_model(config)
    t = time.perf_counter()
    net.fit_direct(x, y)
    return TrainedModel(net, config, users, items, x, y), time.perf_counter() - t
out = {}
try:
    trained, out["fit_s"] = fit(x, y)
except CollabkitError as e:
    print(json.dumps({"error": str(e)[:300]})); sys.exit(0)
rec = Recommender(trained)
asked = list(range(n_users))
if 0 < sample < n_users:
    asked = sorted(np.random.default_rng(0).choice(n_users, sample, replace=False).tolist())
    out["top10_users"] = sample
t = time.perf_counter()
rec.recommend_many(asked, n=10, min_count=1, unknown="popular")
out["top10_all_s"] = (time.perf_counter() - t) * n_users / len(asked)
out["peak_mb"] = peak_mb()
if ndcg:
    import pandas as pd
    from collabkit.ranking import evaluate_ranking
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.2
    part, _ = fit(x[~torch.from_numpy(test)], y[~torch.from_numpy(test)])
    held = pd.DataFrame({"user": d["user"][test], "item": d["item"][test], "rating": d["rating"][test]})
    res = evaluate_ranking(part, held, k=10, min_count=1)
    out["ndcg@10"] = res["metrics"]["ndcg@10"]
print(json.dumps(out))
"""
)

RANKING_FAMILIES = ("popular", "ials", "bpr", "ease", "itemknn", "userknn", "easeknn")
EASE_CAP = 20_000  # most-rated items ease keeps where items x items would not fit
# top-10 for everyone costs user kNN a user x user similarity row per user (at the ML-25M shape,
# 3e11 co-occurrences, about half an hour): above 1M ratings it is timed on a seeded sample of users
# and scaled to all of them (the `top10_users` column says so)
SAMPLED_TOP10 = ("userknn", "easeknn")


def positive(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def write_table(n: int, folder: Path) -> tuple[Path, float]:
    """The synthetic table of `n` ratings (25000095: the ML-25M shape) as a Parquet file, and the
    seconds it took to generate: the jobs read it as a user's file, generation outside their memory."""
    import time

    from collabkit.data.synthetic import synthetic_like, synthetic_ratings

    t = time.perf_counter()
    table = synthetic_like("ml-25m") if n == 25_000_095 else synthetic_ratings(n)
    generate_s = time.perf_counter() - t
    path = folder / f"ratings-{n}.parquet"
    table.to_parquet(path, index=False)
    return path, generate_s


def ranking(args: argparse.Namespace) -> list[dict]:
    """Every ranking family (and implicit's ALS and BPR) at each size: see the module docstring."""
    from ranking_speed import IMPLICIT, IMPLICIT_JOB, SETTINGS, make_data, run

    rows: list[dict] = []

    def add(row: dict) -> None:  # printed and written as it comes: a long run keeps what it measured
        rows.append(row)
        print_table([row], list(row))
        write_json(args.json, {"bench": "scale --ranking", "rows": rows})

    peers = {"als": "ials", "bpr": "bpr"}
    with tempfile.TemporaryDirectory(prefix="collabkit-scale-") as tmp:
        for size in args.sizes.split(","):
            data, info = make_data(size, Path(tmp))
            peer_s: dict[str, float] = {}
            for peer in filter(None, args.peers.split(",")):
                name, label = peers[peer], "implicit " + peer.upper()
                if not IMPLICIT.exists():
                    add({**info, "model": label, "error": "run bash bench/setup_peers.sh implicit"})
                    continue
                env = {"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
                res = run(
                    IMPLICIT, IMPLICIT_JOB, str(data), name, json.dumps(SETTINGS[name]), "top10", env=env
                )
                peer_s[name] = res.get("fit_s", float("nan"))
                add({**info, "model": label, **res})
            for name in args.models.split(","):
                settings = dict(SETTINGS.get(name, {}))
                if name in ("ease", "easeknn") and info["items"] > EASE_CAP:
                    settings["max_items"] = EASE_CAP
                ndcg = "1" if float(size) <= 1e6 else "0"
                sampled = name in SAMPLED_TOP10 and float(size) > args.sample_above
                sample = args.top10_sample if sampled else 0
                res = run(
                    Path(sys.executable), RANK_JOB, str(data), name, json.dumps(settings), ndcg, str(sample)
                )
                row = {**info, "model": name, **res}
                if name in peer_s and "fit_s" in res:
                    row["fit_vs_implicit"] = round(res["fit_s"] / peer_s[name], 2)
                add(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1e6,5e6,25000095,1e8")
    parser.add_argument("--bs", type=int, default=65536)
    parser.add_argument("--updates", default="auto", help="the fused step's AdamW updates: auto,dense,lazy")
    parser.add_argument(
        "--step-us", action="store_true", help="time single steps of each update instead (try --bs 64)"
    )
    parser.add_argument("--no-recommend", action="store_true", help="skip top-10 for every user at 25M")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--ranking", action="store_true", help="the ranking families (and implicit) instead")
    parser.add_argument(
        "--models", default=",".join(RANKING_FAMILIES), help="ranking families, with --ranking"
    )
    parser.add_argument(
        "--sample-above", type=float, default=1e6, help="ratings above which user kNN's top-10 is sampled"
    )
    parser.add_argument("--top10-sample", type=positive, default=2000, help="users in that sample")
    parser.add_argument(
        "--peers", default="als,bpr", help="implicit's models beside them, with --ranking ('' for none)"
    )
    args = parser.parse_args()
    for size in args.sizes.split(","):
        try:
            if float(size) < 1:
                raise ValueError
        except ValueError:
            parser.error(f"--sizes: {size!r} is not a number of ratings (e.g. 1e6,5e6,25000095)")
    unknown = sorted(set(filter(None, args.peers.split(","))) - {"als", "bpr"})
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; implicit's are als and bpr ('' for none)")
    if args.ranking:
        if args.sizes == parser.get_default("sizes"):
            args.sizes = "1e6,5e6"
        rows = ranking(args)
        cols = ["size", "users", "items", "ratings", "model", "fit_s", "fit_vs_implicit", "top10_all_s",
                "top10_users", "peak_mb", "ndcg@10", "error"]  # fmt: skip
        print()
        print_table(rows, cols)
        return
    if args.step_us:
        rows = [run_job(STEP_JOB, size, str(args.bs), args.updates) for size in args.sizes.split(",")]
        print_table(rows, list(rows[0]))
        write_json(args.json, {"bench": "scale --step-us", "rows": rows})
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="collabkit-scale-") as tmp:
        for size in args.sizes.split(","):
            n = int(float(size))
            path, generate_s = write_table(n, Path(tmp))
            for i, update in enumerate(args.updates.split(",")):  # top-10 once per size, with the first
                rec = "1" if n == 25_000_095 and not args.no_recommend and i == 0 else "0"
                row = {**run_job(JOB, str(path), str(args.bs), rec, update), "generate_s": generate_s}
                rows.append(row)
                print_table([row], list(row))
    cols = ["ratings", "users", "items", "update", "generate_s", "read_s", "encode_s", "epoch_s",
            "ratings_per_s", "peak_mb", "before_fit_peak_mb", "fit_peak_mb", "valid_rmse",
            "top10_all_users_s", "top10_one_user_ms"]  # fmt: skip
    print()
    print_table(rows, cols)
    write_json(args.json, {"bench": "scale", "rows": rows})


if __name__ == "__main__":
    main()
