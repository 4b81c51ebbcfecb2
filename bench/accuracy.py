"""The rating leaderboard: every rating family, the baselines and the peers, on the same rows.

    .venv/bin/python bench/accuracy.py --quick                  # u1 only, no peers (a few minutes)
    .venv/bin/python bench/accuracy.py --json bench/results/accuracy.json --markdown bench/results/accuracy.md
    .venv/bin/python bench/accuracy.py --sections ml100k --folds u1 --peers myfm --myfm-iter 64

Sections (`--sections`, default all three):
- ml100k: GroupLens's u1..u5 splits of ML-100k (`--folds` picks some); mean ± std over the folds.
- chapter: fastbook chapter 8's random 20% split of ML-100k (seed 42, the rows fastai's
  RandomSplitter holds out).
- latest: ml-latest-small (../shared/data/ml-latest-small, `--latest DIR`) by 5 random folds
  (kfold, seed 42); skipped, with the reason, where the folder is absent.

Rows: every registered family whose `score_kind` is "rating" (so a family added later appears
with no edit here), each trained with its defaults by `collabkit.workflows.cross_validate`: the
code path of `collabkit crossval --data ml-100k --folds u1,u2,u3,u4,u5 --model NAME`, which
reproduces the row. Nothing is tuned on test rows. Beside them the two baselines (biases only,
training mean), the peers (`--peers`), each run in its own environment under bench/.venvs by
bench/peers.py's job machinery: Surprise's SVD, SVD++ and KNNBaseline, LensKit's biased ALS and
myFM's Bayesian FM with four feature sets (`MYFM_FEATURES`), and the published figures, labelled
with their source. `fit s` is seconds around the fit alone, mean per fold. A measured model at
least 100 times slower to fit than the fastest measured model whose RMSE is at most 0.002 worse is
labelled in the `cost` column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peers  # noqa: E402
from bench._common import print_table, write_json  # noqa: E402

SECTIONS = ("ml100k", "chapter", "latest")
ALL_FOLDS = peers.ALL_FOLDS
LATEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
NEAR_RMSE = 0.002  # a model this much worse (or better) counts as "as good" for the cost label
COSTLY = 100.0  # ... and one at least this many times slower to fit than it is labelled
PEERS = ("surprise", "lenskit", "myfm")
MYFM_ITER = 512  # Gibbs iterations, as myFM's MovieLens example and Rendle et al. 2019
MYFM_RANK = 10

# the command that reproduces a section's collabkit rows (NAME: the family)
COMMANDS = {
    "ml100k": "collabkit crossval --data ml-100k --folds {folds} --model NAME",
    "chapter": "collabkit crossval --data ml-100k --folds random --model NAME",
    "latest": (
        "collabkit crossval --data {path}/ratings.csv --user-col userId --item-col movieId "
        "--timestamp-col timestamp --folds kfold --k 5 --model NAME"
    ),
}

# The papers and pages the published figures come from, by key.
SOURCES = {
    "gcmc": "van den Berg, Kipf, Welling 2017, Graph Convolutional Matrix Completion",
    "igmc": "Zhang, Chen 2020 (ICLR), Inductive Matrix Completion Based on Graph Neural Networks",
    "graphrec": "Rashed, Grabocka, Schmidt-Thieme 2019 (RecSys), attribute-aware co-embeddings",
    "glocalk": "Han et al. 2021 (CIKM), GLocal-K: Global and Local Kernels for Recommender Systems",
    "ghrs": "Darban, Valipour 2022 (Expert Systems with Applications), GHRS",
    "fastbook": "fastbook chapter 8 (Howard, Gugger 2020): valid MSE 0.851",
}
# (section, model, protocol, RMSE, MAE or None, source key). Published: not measured in this run.
# Surprise, LensKit and myFM are not here: they are measured in the run, on the same rows.
PUBLISHED: list[tuple[str, str, str, float, float | None, str]] = [
    ("ml100k", "GC-MC", "u1", 0.905, None, "gcmc"),
    ("ml100k", "IGMC", "u1", 0.904, None, "igmc"),
    ("ml100k", "GraphRec", "u1", 0.904, None, "graphrec"),
    ("ml100k", "GLocal-K", "u1", 0.8889, None, "glocalk"),
    ("ml100k", "GHRS (with demographics)", "u1", 0.887, None, "ghrs"),
    ("chapter", "fastai collab_learner", "random 20%", math.sqrt(0.851), None, "fastbook"),
]

# myFM's feature sets: which blocks join the user and item one-hots (Rendle, Zhang, Koren 2019)
MYFM_FEATURES = {
    "mf": "myFM Bayesian MF rank 10",
    "svdpp": "myFM + implicit user feedback (SVD++)",
    "implicit": "myFM + implicit user and item feedback (no day)",
    "flipped": "myFM + implicit item feedback + day (timeSVD++ flipped)",
}
SURPRISE_ALGOS = {"svd": "Surprise SVD", "svdpp": "Surprise SVD++", "knn": "Surprise KNNBaseline"}

# One job per feature set; argv = spec.json result.json (bench/peers.py's PREAMBLE reads them).
# Every feature is built from the fold's training rows only: the one-hots' columns, the implicit
# sets, the days; a test user, item or day not among them gets an all-zero block.
MYFM_JOB = (
    peers.PREAMBLE
    + """
import numpy as np
import pandas as pd
import scipy.sparse as sps
import myfm
from myfm import RelationBlock

features = SPEC["features"]
use_iu = features in ("svdpp", "implicit", "flipped")  # implicit user feedback: the items a user rated
use_ii = features in ("implicit", "flipped")  # implicit item feedback: the users who rated an item
use_day = features == "flipped"  # the day of the rating, one-hot

def onehot(index, n):  # index -1: unknown, an empty row
    rows, keep = np.arange(len(index)), index >= 0
    data = np.ones(int(keep.sum()))
    return sps.csr_matrix((data, (rows[keep], index[keep])), shape=(len(index), n))

def implicit(owner, other, n_owner, n_other):  # (n_owner + 1, n_other): row-normalised; last row empty
    m = sps.csr_matrix((np.ones(len(owner)), (owner, other)), shape=(n_owner + 1, n_other))
    counts = np.asarray(m.sum(axis=1)).ravel()
    return (sps.diags(1.0 / np.sqrt(np.maximum(counts, 1.0))) @ m).tocsr()

cols = ["user", "item", "rating", "timestamp"]
folds = []
for fold in SPEC["folds"]:
    base = pd.read_csv(f"{SPEC['dir']}/{fold}.base", sep="\\t", names=cols)
    test = pd.read_csv(f"{SPEC['dir']}/{fold}.test", sep="\\t", names=cols)
    users, items = pd.Index(np.unique(base.user)), pd.Index(np.unique(base.item))
    nu, ni = len(users), len(items)
    bu, bi = users.get_indexer(base.user), items.get_indexer(base.item)
    user_items = implicit(bu, bi, nu, ni)
    item_users = implicit(bi, bu, ni, nu)
    day0 = int(base.timestamp.min()) // 86400
    days = pd.Index(np.unique(base.timestamp // 86400 - day0))

    def blocks(df):
        uu, umap = np.unique(df.user, return_inverse=True)
        ui = users.get_indexer(uu)
        ublock = [onehot(ui, nu)] + ([user_items[np.where(ui >= 0, ui, nu)]] if use_iu else [])
        it, imap = np.unique(df.item, return_inverse=True)
        ii = items.get_indexer(it)
        iblock = [onehot(ii, ni)] + ([item_users[np.where(ii >= 0, ii, ni)]] if use_ii else [])
        rel = [RelationBlock(umap, sps.hstack(ublock, format="csr")),
               RelationBlock(imap, sps.hstack(iblock, format="csr"))]
        x = onehot(days.get_indexer(df.timestamp // 86400 - day0), len(days)) if use_day else None
        return x, rel

    # the feature groups, in column order: day, user, the user's items, item, the item's users
    shapes = [len(days)] if use_day else []
    shapes += [nu] + ([ni] if use_iu else []) + [ni] + ([nu] if use_ii else [])
    x_train, rel_train = blocks(base)
    x_test, rel_test = blocks(test)
    if x_train is None:  # no plain features: an empty (rows, 0) matrix
        x_train, x_test = sps.csr_matrix((len(base), 0)), sps.csr_matrix((len(test), 0))
    fm = myfm.MyFMRegressor(rank=SPEC["rank"], random_seed=42)
    t = time.perf_counter()
    fm.fit(x_train, base.rating.to_numpy(dtype=float), X_rel=rel_train, group_shapes=shapes,
           n_iter=SPEC["n_iter"], n_kept_samples=SPEC["n_iter"])
    fit_s = time.perf_counter() - t
    pred = fm.predict(x_test, rel_test)
    err = pred - test.rating.to_numpy(dtype=float)
    mse = float(np.mean(err ** 2))
    folds.append({"fold": fold, "fit_s": fit_s, "rmse": mse ** 0.5, "mse": mse,
                  "mae": float(np.mean(np.abs(err))), "n": len(test)})
finish({"folds": folds, "version": myfm.__version__})
"""
)


@dataclass
class Section:
    """A table and the splits every model of a section is trained and scored on."""

    name: str
    title: str
    table: pd.DataFrame
    splits: list[Any]  # SplitSpec
    command: str  # reproduces a collabkit row (NAME: the family)
    peers: bool = True  # run the peers on its folds (their jobs read tab files of each fold)


@dataclass
class Board:
    """The leaderboard: rows per section, sections skipped with the reason, settings."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def rating_families() -> list[str]:
    """Every registered family that predicts ratings, in registration order."""
    from collabkit.models import family, model_names

    return [n for n in model_names() if family(n).score_kind == "rating"]


def build_sections(
    names: Sequence[str], folds: Sequence[str], latest: Path = LATEST,
    load_ml100k: Callable[[], pd.DataFrame] | None = None,
) -> tuple[list[Section], dict[str, str]]:  # fmt: skip
    """The sections asked for, read as `collabkit crossval` reads them; those that cannot run, with why."""
    from collabkit.data import load_ratings
    from collabkit.data.splits import SplitSpec

    sections: list[Section] = []
    skipped: dict[str, str] = {}
    ml100k: pd.DataFrame | None = None
    for name in names:
        if name in ("ml100k", "chapter"):
            if ml100k is None:
                ml100k = (load_ml100k or (lambda: load_ratings("ml-100k", progress=False)))()
            if name == "ml100k":
                if not folds:
                    skipped[name] = "no folds asked for (--folds is empty)"
                    continue
                title = f"ML-100k {','.join(folds)}" + (" (mean ± std over folds)" if len(folds) > 1 else "")
                splits = [SplitSpec(kind=f) for f in folds]
                command = COMMANDS[name].format(folds=",".join(folds))
                sections.append(Section(name, title, ml100k, splits, command))
            else:
                title = "ML-100k, the chapter's random 20% split (seed 42)"
                sections.append(Section(name, title, ml100k, [SplitSpec("random", 0.2, 42)], COMMANDS[name]))
        elif name == "latest":
            path = latest / "ratings.csv"
            if not path.exists():
                skipped[name] = f"{path} is not here (ml-latest-small lives in ../shared/data)"
                continue
            table = load_ratings(path, user="userId", item="movieId", rating="rating", timestamp="timestamp",
                                 progress=False)  # fmt: skip
            splits = [SplitSpec(kind="kfold", fold=i, k=5, seed=42) for i in range(5)]
            title = "ml-latest-small, 5 random folds (kfold, seed 42; mean ± std)"
            command = COMMANDS[name].format(path=latest)
            sections.append(Section(name, title, table, splits, command))
        else:
            raise ValueError(f"unknown section {name!r}; expected one of: {', '.join(SECTIONS)}")
    return sections, skipped


# -- measuring -----------------------------------------------------------------------------------


def family_folds(
    section: Section, model: str, settings: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """`model` with its defaults (or `settings` over them) on each split, by `cross_validate` (what
    `collabkit crossval ... -o KEY=VALUE` runs)."""
    from collabkit.workflows import TrainConfig, TrainResult, cross_validate

    fit: list[float] = []

    def on_fold(res: TrainResult) -> None:
        fit.append(res.fit_seconds)

    cv = cross_validate(
        section.table, TrainConfig(model=model, split=section.splits[0], settings=dict(settings or {})),
        section.splits,
        data_name=section.name, on_fold=on_fold,
    )  # fmt: skip
    return [
        {"fold": f["fold"], "rmse": f["rmse"], "mae": f["mae"], "fit_s": s, "n": f["n"]}
        for f, s in zip(cv.folds, fit, strict=True)
    ]


def baseline_folds(section: Section) -> dict[str, list[dict[str, Any]]]:
    """The training mean and the biases-only model on each split (`collabkit.baselines`), timed."""
    from collabkit.baselines import fit_biases, rating_baselines
    from collabkit.data.splits import make_split

    out: dict[str, list[dict[str, Any]]] = {"biases": [], "global_mean": []}
    table = section.table
    for split in section.splits:
        train_rows, test_rows = make_split(table, split)
        train, test = table.iloc[train_rows], table.iloc[test_rows]
        users, items = pd.Index(train["user"].unique()), pd.Index(train["item"].unique())

        def encode(rows: pd.DataFrame, users: pd.Index = users, items: pd.Index = items) -> np.ndarray:
            # index 0: an id with no training rating (its bias is 0), as collabkit's vocab does
            return np.stack([users.get_indexer(rows["user"]) + 1, items.get_indexer(rows["item"]) + 1], 1)

        tx, vx = encode(train), encode(test)
        ty, vy = train["rating"].to_numpy(np.float64), test["rating"].to_numpy(np.float64)
        start = time.perf_counter()
        float(ty.mean())
        mean_s = time.perf_counter() - start
        start = time.perf_counter()
        fit_biases(tx[:, 0], tx[:, 1], ty, len(users) + 1, len(items) + 1)
        biases_s = time.perf_counter() - start
        base = rating_baselines(tx, ty, vx, vy, len(users) + 1, len(items) + 1)
        for key, seconds in (("biases", biases_s), ("global_mean", mean_s)):
            out[key].append({"fold": split.describe(), **base[key], "fit_s": seconds, "n": len(test)})
    return out


def write_fold_files(section: Section, work: Path) -> list[str]:
    """Each split's training and test rows as `{name}.base` / `{name}.test` (tab-separated, as
    GroupLens's u1.base), which the peer jobs read; returns the names."""
    from collabkit.data.splits import make_split

    names = []
    cols = ["user", "item", "rating", "timestamp"]
    for split in section.splits:
        # one file pair per split: u1..u5 by name, k-fold by its fold, the random split by section
        name = {"random": section.name, "kfold": f"fold{split.fold}"}.get(split.kind, split.kind)
        for part, rows in zip(("base", "test"), make_split(section.table, split), strict=True):
            out = section.table.iloc[rows][cols]
            if (out["rating"] % 1 == 0).all():  # whole stars written as GroupLens writes them
                out = out.astype({"rating": "int64"})
            out.to_csv(work / f"{name}.{part}", sep="\t", header=False, index=False)
        names.append(name)
    return names


def peer_jobs(
    section: Section, names: list[str], work: Path, wanted: Sequence[str], n_iter: int
) -> list[Any]:
    """bench/peers.py's jobs (one process per model, every fold in it) for this section's files."""
    ratings = section.table["rating"]
    folds = {"dir": str(work), "folds": names, "rating_scale": [float(ratings.min()), float(ratings.max())]}
    jobs = []
    for library in wanted:
        if library == "surprise":
            for algo, model in SURPRISE_ALGOS.items():
                jobs.append(
                    peers.Job(section.name, algo, library, model, library, {**folds, "algo": algo}, None)
                )
        elif library == "lenskit":
            spec = {**folds, "algo": "als"}
            jobs.append(peers.Job(section.name, "als", library, "LensKit biased ALS", library, spec, None))
        elif library == "myfm":
            for features, model in MYFM_FEATURES.items():
                spec = {**folds, "features": features, "n_iter": n_iter, "rank": MYFM_RANK}
                label = model if n_iter == MYFM_ITER else f"{model} ({n_iter} iterations)"
                jobs.append(peers.Job(section.name, features, library, label, "myfm", spec, None))
    return jobs


def run_peers(
    section: Section, wanted: Sequence[str], n_iter: int, log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The peers' rows for this section (each job in its library's environment), and notes."""
    notes: list[str] = []
    missing = [lib for lib in wanted if not peers.python_for(lib).exists()]
    for lib in missing:
        notes.append(f"{lib}: no environment in {peers.VENVS / lib}; run: bash bench/setup_peers.sh {lib}")
    wanted = [lib for lib in wanted if lib not in missing]
    if not wanted:
        return [], notes
    rows = []
    work = Path(tempfile.mkdtemp(prefix="collabkit-accuracy-"))
    try:
        names = write_fold_files(section, work)
        scripts = {**peers.SCRIPTS, "myfm": MYFM_JOB}
        for job in peer_jobs(section, names, work, wanted, n_iter):
            r = peers.run_one(
                job, work, f"{section.name}-{job.library}-{job.kind}", dict(os.environ), scripts
            )
            if "error" in r:
                notes.append(f"{job.model} failed ({r['error']}): {r['log_tail'][-600:]}")
                log(f"  {section.name}: {job.model} FAILED ({r['error']})")
                continue
            row = summarise(
                job.model, job.library, r["folds"], f"measured in this run ({job.library} {r['version']})"
            )
            rows.append(row)
            log(f"  {section.name}: {job.model}: RMSE {row['rmse']:.4f}, fit {row['fit_s']:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, notes


def summarise(model: str, library: str, folds: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """One table row from per-fold figures: RMSE and MAE mean and std (ddof 1), fit seconds' mean."""

    def spread(key: str) -> tuple[float, float]:
        vals = [float(f[key]) for f in folds]
        return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

    (rmse, rmse_std), (mae, mae_std) = spread("rmse"), spread("mae")
    return {
        "model": model, "library": library, "kind": "measured", "protocol": f"{len(folds)} fold(s)",
        "rmse": rmse, "rmse_std": rmse_std, "mae": mae, "mae_std": mae_std,
        "fit_s": statistics.fmean(float(f["fit_s"]) for f in folds), "source": source, "folds": folds,
    }  # fmt: skip


def label_costs(rows: list[dict[str, Any]]) -> None:
    """`cost` on a measured row at least COSTLY times slower to fit than the fastest measured row
    whose RMSE is at most NEAR_RMSE worse than its own (a better one counts too)."""
    measured = [r for r in rows if r["kind"] == "measured" and math.isfinite(r["rmse"])]
    for r in measured:
        near = [s for s in measured if s is not r and s["rmse"] <= r["rmse"] + NEAR_RMSE and s["fit_s"] > 0]
        if not near:
            continue
        fastest = min(near, key=lambda s: s["fit_s"])
        times = r["fit_s"] / fastest["fit_s"]
        if times >= COSTLY:
            gain = fastest["rmse"] - r["rmse"]
            r["cost"] = f"{times:,.0f}x the fit time of {fastest['model']} for {gain:+.4f} RMSE"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`bayesmf:drift=true;time_bins=20` -> ("bayesmf", {"drift": True, "time_bins": 20})."""
    model, _, rest = text.partition(":")
    settings: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--variant {text!r}: each setting must be KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    if not settings:
        raise ValueError(f"--variant {text!r} names no setting; give NAME:KEY=VALUE[;KEY=VALUE]")
    return model.strip(), settings


def variant_name(model: str, settings: dict[str, Any]) -> str:
    """A row's name: the family and the `-o` options that reproduce it."""
    options = " ".join(
        f"-o {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()
    )
    return f"collabkit {model} {options}".rstrip()


def measure(
    sections: list[Section], models: Sequence[str] | None = None, peer_libs: Sequence[str] = (),
    myfm_iter: int = MYFM_ITER, log: Callable[[str], None] = print,
    variants: Sequence[tuple[str, dict[str, Any]]] = (),
) -> Board:  # fmt: skip
    """Every section's rows: the families (default: every rating family) at their defaults, each
    variant (a family with `-o` settings), baselines, peers, published."""
    families = list(models) if models is not None else rating_families()
    runs = [(m, {}) for m in families] + list(variants)
    board = Board(settings={"models": families, "variants": [variant_name(m, s) for m, s in variants],
                            "peers": list(peer_libs), "myfm_iter": myfm_iter,
                            "near_rmse": NEAR_RMSE, "costly": COSTLY})  # fmt: skip
    for section in sections:
        rows: list[dict[str, Any]] = []
        for model, settings in runs:
            start = time.perf_counter()
            folds = family_folds(section, model, settings)
            name = variant_name(model, settings)
            rows.append(summarise(name, "collabkit", folds, "measured in this run"))
            took = time.perf_counter() - start
            shown = name.removeprefix("collabkit ")
            log(f"  {section.name}: {shown}: RMSE {rows[-1]['rmse']:.4f} ({took:.0f} s)")
        base = baseline_folds(section)
        rows.append(summarise("biases only (baseline)", "collabkit", base["biases"], "measured in this run"))
        rows.append(
            summarise("training mean (baseline)", "collabkit", base["global_mean"], "measured in this run")
        )
        notes: list[str] = []
        if peer_libs and section.peers:
            peer_rows, notes = run_peers(section, peer_libs, myfm_iter, log)
            rows += peer_rows
        elif peer_libs:
            notes.append("peers not run for this section")
        label_costs(rows)
        rows.sort(key=lambda r: r["rmse"])
        for sec, model, protocol, rmse, mae, source in PUBLISHED:
            if sec == section.name:
                rows.append({"model": model, "library": "", "kind": "published", "protocol": protocol,
                             "rmse": rmse, "mae": mae, "fit_s": None,
                             "source": f"published: {SOURCES[source]}"})  # fmt: skip
        board.rows[section.name] = rows
        board.titles[section.name] = section.title
        board.commands[section.name] = section.command
        if notes:
            board.skipped[f"{section.name} peers"] = "; ".join(notes)
    return board


# -- reporting -----------------------------------------------------------------------------------


def cells(row: dict[str, Any]) -> dict[str, str]:
    """A row as the table shows it: `mean ± std` where several folds, fit seconds, source, cost."""

    def fig(key: str) -> str:
        v = row.get(key)
        if v is None:
            return "—"
        std = row.get(f"{key}_std")
        return f"{v:.4f} ± {std:.4f}" if std else f"{v:.4f}"

    fit = row.get("fit_s")
    return {
        "model": row["model"],
        "RMSE": fig("rmse"),
        "MAE": fig("mae"),
        "fit s": "—" if fit is None else (f"{fit:.3g}" if fit < 1 else f"{fit:.1f}"),
        "protocol": row["protocol"],
        "source": row["source"],
        "cost": row.get("cost", ""),
    }


COLUMNS = ["model", "RMSE", "MAE", "fit s", "protocol", "source", "cost"]


def to_markdown(board: Board) -> str:
    """The leaderboard as Markdown: one table per section, its command, and what was skipped."""
    out = ["# Rating leaderboard", ""]
    out.append(
        "Measured rows: this run, on this machine (fit s: seconds around the fit alone, mean per fold). "
        "Published rows: the paper's own figure, not measured here. Every collabkit row is reproduced "
        "by the command under its section's title (`collabkit.workflows.cross_validate`, the family's "
        f"defaults, nothing tuned on test rows). cost: at least {COSTLY:.0f}x the fit time of the "
        f"fastest measured model whose RMSE is at most {NEAR_RMSE} worse."
    )
    for name, rows in board.rows.items():
        out += ["", f"## {board.titles[name]}", "", f"`{board.commands[name]}`", ""]
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        for r in rows:
            c = cells(r)
            out.append("| " + " | ".join(c[k].replace("|", "/") for k in COLUMNS) + " |")
    if board.skipped:
        out += ["", "## Not run", ""]
        out += [f"- {name}: {why}" for name, why in board.skipped.items()]
    return "\n".join(out) + "\n"


def show(board: Board) -> None:
    for name, rows in board.rows.items():
        print(f"\n{board.titles[name]}\n  reproduce a collabkit row: {board.commands[name]}")
        print_table([cells(r) for r in rows], COLUMNS)
    for name, why in board.skipped.items():
        print(f"\n{name} skipped: {why}")


def write_outputs(board: Board, json_path: str | None, markdown_path: str | None) -> None:
    write_json(
        json_path,
        {"bench": "accuracy", "settings": board.settings, "sections": {
            name: {"title": board.titles[name], "command": board.commands[name], "rows": rows}
            for name, rows in board.rows.items()}, "skipped": board.skipped},
    )  # fmt: skip
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(to_markdown(board))
        print(f"wrote {markdown_path}")


def split_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        help="comma-separated families (default: every rating family registered; none: peers only)",
    )
    ap.add_argument("--folds", default=",".join(ALL_FOLDS), help="ML-100k splits (default u1..u5)")
    ap.add_argument(
        "--sections", help=f"comma-separated, of {', '.join(SECTIONS)} (default: all; --quick: ml100k)"
    )
    ap.add_argument(
        "--peers", default=",".join(PEERS), help=f"of {', '.join(PEERS)} (default: all; '' for none)"
    )
    ap.add_argument(
        "--myfm-iter", type=int, default=MYFM_ITER, help=f"myFM's Gibbs iterations (default {MYFM_ITER})"
    )
    ap.add_argument(
        "--variant", action="append", default=[], metavar="NAME:KEY=VALUE[;KEY=VALUE]",
        help="also a family with settings over its defaults, e.g. bayesmf:drift=true (repeat); its row "
        "is what `collabkit crossval ... --model NAME -o KEY=VALUE` gives",
    )  # fmt: skip
    ap.add_argument("--latest", type=Path, default=LATEST, help="the ml-latest-small folder")
    ap.add_argument("--quick", action="store_true", help="u1 only, ML-100k's section only, no peers")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--markdown", metavar="PATH")
    args = ap.parse_args(argv)  # fmt: skip
    folds = ["u1"] if args.quick else split_list(args.folds)
    names = (
        split_list(args.sections)
        if args.sections is not None
        else (["ml100k"] if args.quick else list(SECTIONS))
    )
    peer_libs = [] if args.quick else split_list(args.peers)
    models = ([] if args.models == "none" else split_list(args.models)) if args.models else None
    from collabkit.models import check_model_name

    bad = [f for f in folds if f not in ALL_FOLDS] + [n for n in names if n not in SECTIONS]
    bad += [p for p in peer_libs if p not in PEERS]
    try:
        variants = [parse_variant(v) for v in args.variant]
    except ValueError as e:
        ap.error(str(e))
    for m in [*(models or []), *(v[0] for v in variants)]:
        check_model_name(m)
    if bad or args.myfm_iter < 1:
        ap.error(
            f"unknown fold, section or peer {bad} (folds: {', '.join(ALL_FOLDS)}; sections: "
            f"{', '.join(SECTIONS)}; peers: {', '.join(PEERS)}); --myfm-iter must be at least 1"
        )
    load_start = os.getloadavg()[0]
    sections, skipped = build_sections(names, folds, args.latest)
    board = measure(sections, models, peer_libs, args.myfm_iter, variants=variants)
    board.skipped = {**skipped, **board.skipped}
    board.settings.update(folds=folds, sections=names, quick=args.quick,
                          load_average={"start": load_start, "end": os.getloadavg()[0]})  # fmt: skip
    show(board)
    write_outputs(board, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
