"""collabkit beside its peers on ML-100k: fit seconds, process seconds, peak memory, accuracy.

    bash bench/setup_peers.sh                      # once: fastai, Surprise, LensKit in bench/.venvs/
    .venv/bin/python bench/peers.py [--seeds 3] [--json out.json] [--quick] [--folds u1,u2]

Two sections:
- chapter: fastbook chapter 8's code on fastai's random 20% split (seed 42), run by fastai and by
  collabkit with only the imports changed: the bias model (`collab_learner`), the deep model
  (`use_nn=True, layers=[100, 50]`), the chapter's own `DotProductBias` through `Learner`, and
  collabkit's fast recipe. Valid MSE, as fastai reports it.
- u1..u5: GroupLens's canonical ML-100k splits; Surprise's `SVD` and `SVDpp` (defaults),
  optionally `KNNBaseline`, LensKit's biased ALS (defaults), and collabkit's bias model with the
  chapter's settings and with its fast recipe. Test RMSE, mean over folds.

Every job runs in a fresh process of its library's own virtual environment, so no peer touches the
project's torch and no job warms another's caches. `fit s` is timed inside the job around the fit
call alone; `process s` is the job's whole process (start, imports, reading the data, fit, scoring);
`peak MB` is the process's peak resident memory (`wait4`'s ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script or imported as bench.peers

from bench._common import print_table, write_json  # noqa: E402

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
LIBRARIES = ("fastai", "collabkit", "surprise", "lenskit")
ALL_FOLDS = ("u1", "u2", "u3", "u4", "u5")
CHAPTER = {"n_factors": 50, "bs": 64, "epochs": 5, "lr": 5e-3, "wd": 0.1}  # fastbook chapter 8
PLACEHOLDER_FAST = {"bs": 2048, "epochs": 10, "lr": 3e-2, "wd": 0.1}  # where the family has no fast recipe

# -- the jobs, as scripts each library's python runs: argv = spec.json result.json ----------------

PREAMBLE = """
import json, resource, sys, time
T0 = time.perf_counter()
with open(sys.argv[1]) as f:
    SPEC = json.load(f)

def finish(result):
    result["child_s"] = time.perf_counter() - T0
    result["child_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
"""

# The chapter's own module; both libraries run this very text, each with its own imports.
DOT_PRODUCT_BIAS = """
class DotProductBias(Module):
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
"""

# The chapter's code, shared by fastai and collabkit. The split is always seed 42 (fastai's
# RandomSplitter; collabkit draws the same rows); `seed` seeds initialisation and shuffling.
CHAPTER_JOB = """
import pandas as pd

ratings = pd.read_csv(SPEC["ratings"])
seed, s = SPEC["seed"], SPEC["settings"]
set_seed(seed)
dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=s["bs"], seed=42, **SHUFFLE(seed))
if SPEC["model"] == "module":
    n_users, n_movies = len(dls.classes["user"]), len(dls.classes["title"])
    learn = Learner(dls, DotProductBias(n_users, n_movies, s["n_factors"]), loss_func=MSELossFlat())
elif SPEC["model"] == "nn":
    learn = collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[100, 50])
else:
    learn = collab_learner(dls, n_factors=s["n_factors"], y_range=(0, 5.5))
with quiet(learn):
    t = time.perf_counter()
    learn.fit_one_cycle(s["epochs"], s["lr"], wd=s["wd"])
    fit_s = time.perf_counter() - t
    mse = valid_mse(learn)
finish({"fit_s": fit_s, "mse": mse, "rmse": mse ** 0.5, "version": VERSION, "torch": torch.__version__})
"""

FASTAI_JOB = (
    PREAMBLE
    + """
import torch
import fastai
from fastai.basics import *  # Module, set_seed: the chapter has them from fastbook's star import
from fastai.collab import *

VERSION = fastai.__version__

def SHUFFLE(seed):  # fastai shuffles with the global generator, which set_seed seeds
    return {}

def quiet(learn):  # no progress bar: its drawing is not what we time
    return learn.no_bar()

def valid_mse(learn):
    return float(learn.validate()[0])
"""
    + DOT_PRODUCT_BIAS
    + CHAPTER_JOB
)

COLLABKIT_CHAPTER_JOB = (
    PREAMBLE
    + """
import contextlib
import torch
import collabkit
from collabkit import (CollabDataLoaders, Embedding, Learner, Module, MSELossFlat, collab_learner,
                       set_seed, sigmoid_range)

VERSION = collabkit.__version__

def SHUFFLE(seed):  # collabkit's loader has its own generator, seeded apart from the split
    return {"shuffle_seed": seed}

def quiet(learn):  # no progress bar, as for fastai
    learn.show_progress = False
    return contextlib.nullcontext()

def valid_mse(learn):
    return float(learn.validate()["valid_loss"])
"""
    + DOT_PRODUCT_BIAS
    + CHAPTER_JOB
)

COLLABKIT_FOLDS_JOB = (
    PREAMBLE
    + """
import pandas as pd
import torch
import collabkit
from collabkit.data.splits import SplitSpec
from collabkit.workflows import TrainConfig, train

table = pd.read_csv(SPEC["ratings"])  # u.data's row order, which u1..u5 are cut from
folds = []
for fold in SPEC["folds"]:
    config = TrainConfig(
        model="dotbias", split=SplitSpec(fold), settings={"y_range": (0.0, 5.5)}, **SPEC["settings"]
    )
    r = train(table, config, data_name="ml-100k", log=None)
    folds.append({"fold": fold, "fit_s": r.fit_seconds, "rmse": r.valid["rmse"],
                  "mse": r.valid["mse"], "n": r.n_valid})
finish({"folds": folds, "version": collabkit.__version__, "torch": torch.__version__})
"""
)

SURPRISE_JOB = (
    PREAMBLE
    + """
import surprise
from surprise import SVD, Dataset, KNNBaseline, Reader, SVDpp, accuracy
from surprise.model_selection import PredefinedKFold

def make(algo):
    if algo == "svd":
        return SVD(random_state=0)
    if algo == "svdpp":
        return SVDpp(random_state=0)
    # item-based Pearson-baseline similarity, the neighbourhood setting Surprise's docs recommend
    return KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False)

scale = tuple(SPEC.get("rating_scale", (1, 5)))  # the table's lowest and highest rating
reader = Reader(line_format="user item rating timestamp", sep="\\t", rating_scale=scale)
folds = []
for fold in SPEC["folds"]:
    data = Dataset.load_from_folds([(f"{SPEC['dir']}/{fold}.base", f"{SPEC['dir']}/{fold}.test")], reader)
    trainset, testset = next(PredefinedKFold().split(data))
    algo = make(SPEC["algo"])
    t = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - t
    predictions = algo.test(testset)
    rmse = accuracy.rmse(predictions, verbose=False)
    mae = accuracy.mae(predictions, verbose=False)
    folds.append({"fold": fold, "fit_s": fit_s, "rmse": rmse, "mse": rmse ** 2, "mae": mae,
                  "n": len(testset)})
finish({"folds": folds, "version": surprise.__version__})
"""
)

LENSKIT_JOB = (
    PREAMBLE
    + """
import numpy as np
import pandas as pd
import lenskit
from lenskit.als import BiasedMFScorer
from lenskit.batch import predict
from lenskit.data import ItemListCollection, from_interactions_df
from lenskit.pipeline import predict_pipeline

cols = ["user_id", "item_id", "rating", "timestamp"]
folds = []
for fold in SPEC["folds"]:
    base = pd.read_csv(f"{SPEC['dir']}/{fold}.base", sep="\\t", names=cols)
    test = pd.read_csv(f"{SPEC['dir']}/{fold}.test", sep="\\t", names=cols)
    data = from_interactions_df(base[cols[:3]])
    # LensKit's rating pipeline: the ALS scorer, with its bias model for what ALS cannot score
    pipe = predict_pipeline(BiasedMFScorer(), fallback=True)
    t = time.perf_counter()
    pipe.train(data)
    fit_s = time.perf_counter() - t
    queries = ItemListCollection.from_df(test[cols[:3]], ["user_id"])
    scored = predict(pipe, queries, n_jobs=1).to_df()  # n_jobs=1: no worker pool to start
    err = scored["score"].to_numpy() - scored["rating"].to_numpy()
    mse = float(np.mean(err ** 2))
    mae = float(np.mean(np.abs(err)))
    folds.append({"fold": fold, "fit_s": fit_s, "rmse": mse ** 0.5, "mse": mse, "mae": mae,
                  "n": int(len(scored)), "unscored": int(np.isnan(err).sum()) + len(test) - len(scored)})
finish({"folds": folds, "version": lenskit.__version__})
"""
)


# The data as the jobs read it, and collabkit's fast recipe; run in a child so that this process
# stays small: a child's peak memory starts from its parent's, as Linux carries it over fork + exec.
PREP_JOB = (
    PREAMBLE
    + """
import collabkit
from collabkit.models import family

table = collabkit.load_movielens("ml-100k", progress=False)
work = SPEC["dir"]
table[["user", "item", "rating", "timestamp", "title"]].to_csv(f"{work}/ratings.csv", index=False)
cols = ["user", "item", "rating", "timestamp"]
for fold in SPEC["folds"]:  # GroupLens's u{i}.base / u{i}.test, tab-separated
    for part, rows in zip(("base", "test"), collabkit.ml100k_split(table, fold)):
        out = table.iloc[rows][cols].astype({"rating": "int64"})
        out.to_csv(f"{work}/{fold}.{part}", sep="\\t", header=False, index=False)
recipe = getattr(family("dotbias"), "recipes", {}).get("fast")  # the family's own, as `train` uses it
fast = None if recipe is None else {k: getattr(recipe, k) for k in ("bs", "epochs", "lr", "wd")}
source = None if recipe is None else "family('dotbias').recipes['fast']"
finish({"fast": fast, "fast_source": source, "source": table.attrs.get("source")})
"""
)

# -- what to run -----------------------------------------------------------------------------


@dataclass
class Job:
    """One row of the table: a library's model in a section, run once per seed (or once over folds)."""

    section: str  # "chapter" or "u1..u5"
    kind: str  # row key within the section: dotbias, nn, module, fast, svd, svdpp, knn, als
    library: str
    model: str  # what the table shows
    script: str
    spec: dict[str, Any]
    same: str | None  # the collabkit row (kind) this row's fit time is divided by; None: none
    runs: list[dict[str, Any]] = field(default_factory=list)


def fast_settings(args: argparse.Namespace, prep: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """collabkit's fast recipe for the bias model (where its family has one), with the command's overrides."""
    source = prep["fast_source"] or "a placeholder (the family has no fast recipe)"
    fast = {"n_factors": 50, **(prep["fast"] or PLACEHOLDER_FAST)}
    for key, value in (("bs", args.fast_bs), ("epochs", args.fast_epochs), ("lr", args.fast_lr)):
        if value is not None:
            fast[key], source = value, source + " + command line"
    return fast, source


def fmt_settings(s: dict[str, Any]) -> str:
    return f"bs {s['bs']}, {s['epochs']} ep, lr {s['lr']:g}"


def make_jobs(args: argparse.Namespace, work: Path, fast: dict[str, Any]) -> list[Job]:
    chapter = dict(CHAPTER, epochs=1) if args.quick else dict(CHAPTER)
    if args.quick:
        fast = dict(fast, epochs=1)
    ratings = str(work / "ratings.csv")
    jobs: list[Job] = []

    def chapter_job(kind: str, library: str, model: str, settings: dict[str, Any]) -> None:
        script = "fastai" if library == "fastai" else "collabkit_chapter"
        spec = {"ratings": ratings, "model": kind if kind != "fast" else "dotbias", "settings": settings}
        jobs.append(Job("chapter", kind, library, model, script, spec, None if kind == "fast" else kind))

    for kind, model in (
        ("dotbias", "collab_learner bias"),
        ("nn", "collab_learner use_nn"),
        ("module", "own DotProductBias"),
    ):
        for library in ("fastai", "collabkit"):
            chapter_job(kind, library, model, chapter)
    chapter_job("fast", "collabkit", f"bias, fast ({fmt_settings(fast)})", fast)

    section = "u1..u5" if list(args.folds) == list(ALL_FOLDS) else ",".join(args.folds)
    folds = {"dir": str(work), "folds": list(args.folds)}
    peers = [("svd", "surprise", "SVD"), ("svdpp", "surprise", "SVDpp")]
    if args.knn:
        peers.append(("knn", "surprise", "KNNBaseline"))
    peers.append(("als", "lenskit", "biased ALS (BiasedMFScorer)"))
    for kind, library, model in peers:
        jobs.append(Job(section, kind, library, model, library, {**folds, "algo": kind}, "dotbias"))
    for kind, model, settings in (
        ("dotbias", f"bias, chapter ({fmt_settings(chapter)})", chapter),
        ("fast", f"bias, fast ({fmt_settings(fast)})", fast),
    ):
        spec = {
            **folds,
            "ratings": ratings,
            "settings": {k: settings[k] for k in ("bs", "epochs", "lr", "wd")},
        }
        jobs.append(Job(section, kind, "collabkit", model, "collabkit_folds", spec, "dotbias"))
    return [j for j in jobs if j.library in args.libs]


SCRIPTS = {
    "fastai": FASTAI_JOB,
    "collabkit_chapter": COLLABKIT_CHAPTER_JOB,
    "collabkit_folds": COLLABKIT_FOLDS_JOB,
    "prep": PREP_JOB,
    "surprise": SURPRISE_JOB,
    "lenskit": LENSKIT_JOB,
}


def python_for(library: str) -> Path:
    """The interpreter of `library`'s environment: the project's for collabkit, bench/.venvs/ for peers."""
    return Path(sys.executable) if library == "collabkit" else VENVS / library / "bin" / "python"


# -- running ---------------------------------------------------------------------------------


def run_one(
    job: Job, work: Path, tag: str, env: dict[str, str], scripts: dict[str, str] = SCRIPTS
) -> dict[str, Any]:
    """Run `job` once in a fresh process; its own numbers plus process seconds and peak MB.

    `scripts` maps `job.script` to the job's text (another benchmark adds its own jobs there)."""
    spec_path, out_path, log_path = (work / f"{tag}.{ext}" for ext in ("spec.json", "out.json", "log"))
    spec_path.write_text(json.dumps(job.spec))
    script = work / f"job_{job.script}.py"
    if not script.exists():
        script.write_text(scripts[job.script])
    argv = [str(python_for(job.library)), str(script), str(spec_path), str(out_path)]
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        process_s = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        return {"error": f"exit {proc.returncode}", "log_tail": tail, "process_s": process_s}
    result = json.loads(out_path.read_text())
    result.update(process_s=process_s, peak_mb=peak_mb)
    if "folds" in result:
        fs = result["folds"]
        result.update(
            fit_s=statistics.fmean(f["fit_s"] for f in fs),
            rmse=statistics.fmean(f["rmse"] for f in fs),
            mse=statistics.fmean(f["mse"] for f in fs),
        )
    return result


def summarize(job: Job) -> dict[str, Any]:
    ok = [r for r in job.runs if "error" not in r]
    row: dict[str, Any] = {"section": job.section, "library": job.library, "model": job.model}
    if not ok:
        row["fit s"] = "failed"
        return row

    def med(key: str) -> float:
        return statistics.median(r[key] for r in ok)

    n, unit = (len(ok), "seed") if job.section == "chapter" else (len(ok[0]["folds"]), "fold")
    row.update(
        {
            "runs": f"{n} {unit}{'s' * (n > 1)}",
            "fit s": med("fit_s"),
            "process s": med("process_s"),
            "peak MB": med("peak_mb"),
            "MSE": med("mse"),
            "RMSE": med("rmse"),
            "version": ok[0].get("version"),
        }
    )
    return row


DIGITS = {"fit s": 2, "process s": 1, "peak MB": 0, "MSE": 4, "RMSE": 4}


def display(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its numbers rounded for the table (the JSON keeps them whole)."""
    return {k: f"{v:.{DIGITS[k]}f}" if k in DIGITS and isinstance(v, float) else v for k, v in row.items()}


def ratio(jobs: list[Job], rows: list[dict[str, Any]]) -> None:
    """fit(row) / fit(collabkit's same-settings row) and / fit(collabkit's fast row), per section."""
    fit = {(j.section, j.kind, j.library): r.get("fit s") for j, r in zip(jobs, rows, strict=True)}
    for j, r in zip(jobs, rows, strict=True):
        for col, kind in (("÷ck same", j.same), ("÷ck fast", "fast")):
            base = fit.get((j.section, kind, "collabkit")) if kind else None
            own = r.get("fit s")
            is_self = j.library == "collabkit" and kind == j.kind
            # the fast recipe is the bias model's: the deep model and the own module have no fast row
            other_model = j.section == "chapter" and kind == "fast" and j.kind != "dotbias"
            if (
                isinstance(base, float)
                and isinstance(own, float)
                and base > 0
                and not (is_self or other_model)
            ):
                r[col] = f"{own / base:.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="PATH", help="write every run's raw numbers here")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, u1 only, 1 epoch")
    parser.add_argument("--folds", default=",".join(ALL_FOLDS), help="ML-100k splits (default u1..u5)")
    parser.add_argument("--seeds", type=int, default=3, help="chapter runs per job, seeds 42, 43, ...")
    parser.add_argument("--knn", action="store_true", help="also Surprise's KNNBaseline (slow)")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="libraries to run (default: all)")
    parser.add_argument("--fast-bs", type=int, help="override the fast recipe's batch size")
    parser.add_argument("--fast-epochs", type=int, help="override the fast recipe's epochs")
    parser.add_argument("--fast-lr", type=float, help="override the fast recipe's peak learning rate")
    parser.add_argument("--threads", type=int, help="OMP/MKL/LensKit threads in every job (default: theirs)")
    parser.add_argument("--workdir", help="keep data, job scripts and logs here (default: a temp folder)")
    args = parser.parse_args()
    args.folds = ["u1"] if args.quick else [f.strip() for f in args.folds.split(",") if f.strip()]
    args.seeds = 1 if args.quick else args.seeds
    args.libs = [lib.strip() for lib in args.libs.split(",")]
    bad = [f for f in args.folds if f not in ALL_FOLDS] + [lib for lib in args.libs if lib not in LIBRARIES]
    if bad or args.seeds < 1:
        parser.error(
            f"unknown fold or library {bad} (folds: {', '.join(ALL_FOLDS)}; libs: {', '.join(LIBRARIES)})"
        )
    missing = [lib for lib in args.libs if not python_for(lib).exists()]
    if missing:
        print(
            f"no environment for {', '.join(missing)} in {VENVS}; run: bash bench/setup_peers.sh",
            file=sys.stderr,
        )
        args.libs = [lib for lib in args.libs if lib not in missing]

    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LK_NUM_THREADS"):
            env[var] = str(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="collabkit-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    try:
        prep = run_one(
            Job("data", "prep", "collabkit", "", "prep", {"dir": str(work), "folds": args.folds}, None),
            work,
            "prep",
            env,
        )
        if "error" in prep:
            print(
                f"could not write ML-100k for the jobs ({prep['error']}):\n{prep['log_tail']}",
                file=sys.stderr,
            )
            return 1
        fast, fast_source = fast_settings(args, prep)
        jobs = make_jobs(args, work, fast)
        # seed by seed, libraries side by side, so a change in the machine's load hits both alike
        for seed in range(42, 42 + args.seeds):
            for job in (j for j in jobs if j.section == "chapter"):
                job.spec["seed"] = seed
                job.runs.append(run_one(job, work, f"{job.section}-{job.kind}-{job.library}-{seed}", env))
                report_progress(job)
        for job in (j for j in jobs if j.section != "chapter"):
            job.runs.append(run_one(job, work, f"folds-{job.kind}-{job.library}", env))
            report_progress(job)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]

    rows = [summarize(j) for j in jobs]
    ratio(jobs, rows)
    print()
    columns = ["section", "library", "model", "runs", "fit s", "process s", "peak MB", "MSE", "RMSE"]
    print_table([display(r) for r in rows], [*columns, "÷ck same", "÷ck fast"])
    print()
    print(
        "fit s: median over seeds (chapter), mean per fold (u1..u5); process s, peak MB: one process per\n"
        "seed (chapter) or for all folds; MSE/RMSE: valid (chapter, median) or test (folds, mean).\n"
        "÷ck same: fit s over collabkit's row with the same settings (for u1..u5 peers: its chapter\n"
        "settings); ÷ck fast: over collabkit's fast row. Fast recipe from " + fast_source + ".\n"
        f"load average {load_start:.1f} at start, {load_end:.1f} at end, on {os.cpu_count()} cores: "
        "numbers are noisy when it exceeds the cores."
    )
    failed = [j for j in jobs if any("error" in r for r in j.runs)]
    for j in failed:
        err = next(r for r in j.runs if "error" in r)
        print(
            f"\n{j.library} {j.kind} ({j.section}) failed, {err['error']}:\n{err['log_tail']}",
            file=sys.stderr,
        )
    write_json(
        args.json,
        {
            "bench": "peers",
            "settings": {
                "chapter": CHAPTER,
                "fast": fast,
                "fast_source": fast_source,
                "quick": args.quick,
                "seeds": args.seeds,
                "folds": args.folds,
                "threads": args.threads,
            },
            "load_average": {"start": load_start, "end": load_end},
            "rows": rows,
            "jobs": [{k: v for k, v in vars(j).items() if k != "script"} for j in jobs],
        },
    )
    return 1 if failed else 0


def report_progress(job: Job) -> None:
    r = job.runs[-1]
    if "error" in r:
        print(f"  {job.section:8} {job.library:9} {job.kind:8} FAILED ({r['error']})", flush=True)
        return
    score = f"RMSE {r['rmse']:.4f}" if "folds" in r else f"MSE {r['mse']:.4f}"
    print(
        f"  {job.section:8} {job.library:9} {job.kind:8} fit {r['fit_s']:7.2f} s  "
        f"process {r['process_s']:7.2f} s  peak {r['peak_mb']:6.0f} MB  {score}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
