"""The cross-entropy rating classifier beside the regression models, on the same splits.

    .venv/bin/python bench/classifier.py                              # u1 and the chapter's split
    .venv/bin/python bench/classifier.py --plot bench/results/reliability.png --json out.json

Each model is trained with its defaults by `collabkit.workflows.train` (what `collabkit train
--data ml-100k --split u1 --model NAME` runs) on ML-100k u1 and on the chapter's random 20% split
(seed 42), and scored on the held-out pairs whose user and item both have training ratings (the
same rows for every model; the few others, which the library answers with its biases-only
fallback, are counted in `left out`). Columns:

- `accuracy`: the share of ratings whose level is predicted exactly: the classifier's most likely
  level; for a regression model, the level nearest its prediction (`collabkit.evaluate.nearest_level`).
- `RMSE`: of the classifier's expected rating (the mean of its distribution over the levels), of
  the regression model's prediction.
- `RMSE level`: of the level counted by `accuracy` (the classifier's argmax, the regression
  model's nearest level): what a model that must answer a whole star loses.
- `ECE`: the classifier's expected calibration error: the probability it gives its top level
  against how often that level is right, |accuracy - confidence| averaged over `--bins`
  equal-width bins of confidence, weighted by their counts. `--plot` draws the reliability
  diagram (and the count of predictions per bin) for every split.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402

MODELS = ("classifier", "dotbias", "nn")
SPLITS = ("u1", "chapter")
BINS = 10
COLUMNS = ["split", "model", "accuracy", "RMSE", "RMSE level", "ECE", "confidence", "n", "left out", "fit s"]


# -- the metrics: plain functions of arrays -------------------------------------------------------


def nearest_levels(ratings: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the level nearest each rating (`collabkit.evaluate.nearest_level`, on arrays)."""
    import torch

    from collabkit.evaluate import nearest_level

    return nearest_level(torch.as_tensor(ratings, dtype=torch.float64), torch.as_tensor(levels)).numpy()


def accuracy(pred_level: np.ndarray, true_level: np.ndarray) -> float:
    """The share of predicted level indices equal to the true ones."""
    return float(np.mean(np.asarray(pred_level) == np.asarray(true_level)))


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(y, np.float64)) ** 2)))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width bin of confidence in [0, 1]: its edges, count, mean confidence, accuracy.

    A confidence of exactly 1 falls in the last bin; an empty bin has NaN confidence and accuracy."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append(
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "n": n,
                "confidence": float(confidence[mask].mean()) if n else float("nan"),
                "accuracy": float(correct[mask].mean()) if n else float("nan"),
            }
        )
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Sum over bins of (count / total) * |accuracy - mean confidence| (Guo et al. 2017)."""
    table = reliability(confidence, correct, bins)
    total = sum(b["n"] for b in table)
    return float(sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["n"]))


def classifier_metrics(
    probs: np.ndarray, levels: np.ndarray, y: np.ndarray, bins: int = BINS
) -> dict[str, Any]:
    """The classifier's figures from its (N, L) probabilities over `levels` and the true ratings."""
    probs, levels = np.asarray(probs, np.float64), np.asarray(levels, np.float64)
    top = probs.argmax(axis=1)
    truth = nearest_levels(y, levels)
    correct = top == truth
    confidence = probs.max(axis=1)
    return {
        "accuracy": accuracy(top, truth),
        "RMSE": rmse(probs @ levels, y),
        "RMSE level": rmse(levels[top], y),
        "ECE": expected_calibration_error(confidence, correct, bins),
        "confidence": float(confidence.mean()),
        "reliability": reliability(confidence, correct, bins),
    }


def regression_metrics(pred: np.ndarray, levels: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """A regression model's figures: its prediction, and the level nearest it."""
    levels = np.asarray(levels, np.float64)
    near = nearest_levels(pred, levels)
    return {
        "accuracy": accuracy(near, nearest_levels(y, levels)),
        "RMSE": rmse(pred, y),
        "RMSE level": rmse(levels[near], y),
    }


# -- training and scoring -------------------------------------------------------------------------


@dataclass
class Scored:
    """One model on one split: its figures, and the held-out rows they are on."""

    split: str
    model: str
    metrics: dict[str, Any]
    n: int
    left_out: int
    fit_s: float


def split_spec(name: str) -> Any:
    from collabkit.data.splits import SplitSpec

    return SplitSpec("random", 0.2, 42) if name == "chapter" else SplitSpec(kind=name)


def score(table: pd.DataFrame, split_name: str, model: str, bins: int = BINS) -> Scored:
    """Train `model` with its defaults on the split, then its figures on the held-out pairs it knows."""
    import torch

    from collabkit.data.splits import make_split
    from collabkit.data.vocab import encode_pairs
    from collabkit.models import predict_ratings
    from collabkit.persist import load_model
    from collabkit.workflows import TrainConfig, train

    split = split_spec(split_name)
    with tempfile.TemporaryDirectory(prefix="collabkit-classifier-") as out:
        res = train(table, TrainConfig(model=model, split=split), out=Path(out) / "model", log=None)
        trained = load_model(Path(out) / "model")
    train_rows, test_rows = make_split(table, split)
    rows = table.iloc[test_rows]
    x = encode_pairs(trained.users, trained.items, rows["user"], rows["item"])
    tx = trained.train_x.numpy()
    user_n = np.bincount(tx[:, 0], minlength=len(trained.users))
    item_n = np.bincount(tx[:, 1], minlength=len(trained.items))
    known = (user_n[x[:, 0]] > 0) & (item_n[x[:, 1]] > 0)  # both with training ratings
    y = rows["rating"].to_numpy(np.float64)[known]
    net = trained.model.eval()
    with torch.no_grad():
        xk = torch.from_numpy(x[known])
        if hasattr(net, "levels"):  # a distribution over the levels
            probs = net.output_to_preds(net(xk)).numpy()
            metrics = classifier_metrics(probs, net.levels.numpy(), y, bins)
        else:
            pred = predict_ratings(net, xk).numpy()
            levels = np.unique(table["rating"].to_numpy(np.float64)[train_rows])  # the classifier's classes
            metrics = regression_metrics(pred, levels, y)
    return Scored(split_name, model, metrics, int(known.sum()), int((~known).sum()), res.fit_seconds)


# -- the plot -------------------------------------------------------------------------------------


def plot(results: list[Scored], path: str) -> None:
    """The classifier's reliability diagram per split (accuracy against confidence, the diagonal
    being perfect calibration) over the count of its predictions per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in results if "reliability" in r.metrics]
    fig, axes = plt.subplots(
        2, len(mine), figsize=(5.2 * len(mine), 6.4), squeeze=False, gridspec_kw={"height_ratios": [3, 1]}
    )
    for col, r in enumerate(mine):
        table = r.metrics["reliability"]
        mids = np.array([(b["lo"] + b["hi"]) / 2 for b in table])
        width = table[0]["hi"] - table[0]["lo"]
        acc = np.array([b["accuracy"] for b in table])
        conf = np.array([b["confidence"] for b in table])
        ax = axes[0, col]
        ax.bar(mids, np.nan_to_num(acc), width=width * 0.9, color="#4C72B0", label="accuracy in the bin")
        ax.plot([0, 1], [0, 1], "--", color="0.4", label="perfect calibration")
        ax.plot(conf, acc, "o", color="#DD8452", label="(mean confidence, accuracy) of the bin")
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="share of top levels that are right")
        ax.set_title(
            f"{r.model} on {r.split}: ECE {r.metrics['ECE']:.3f}, accuracy {r.metrics['accuracy']:.3f}"
        )
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        counts = axes[1, col]
        counts.bar(mids, [b["n"] for b in table], width=width * 0.9, color="0.55")
        counts.set(
            xlim=(0, 1), xlabel="probability of the most likely level (confidence)", ylabel="predictions"
        )
        counts.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def row(r: Scored) -> dict[str, Any]:
    m = r.metrics
    return {
        "split": r.split,
        "model": r.model,
        **{k: m[k] for k in ("accuracy", "RMSE", "RMSE level")},
        "ECE": m.get("ECE"),
        "confidence": m.get("confidence"),
        "n": r.n,
        "left out": r.left_out,
        "fit s": r.fit_s,
    }


def shown(r: dict[str, Any]) -> dict[str, Any]:
    return {k: f"{v:.4f}" if isinstance(v, float) and k != "fit s" else v for k, v in r.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"default: {', '.join(MODELS)}")
    ap.add_argument("--splits", default=",".join(SPLITS), help="u1..u5, chapter (default: u1,chapter)")
    ap.add_argument("--bins", type=int, default=BINS, help="confidence bins for ECE and the plot")
    ap.add_argument("--plot", metavar="PATH", help="the reliability diagram, as PNG")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("chapter", "u1", "u2", "u3", "u4", "u5")]
    if bad or args.bins < 1:
        ap.error(f"unknown split {bad} (expected chapter or u1..u5), or --bins below 1")

    from collabkit.data import load_ratings
    from collabkit.models import check_model_name

    for m in models:
        check_model_name(m)
    table = load_ratings("ml-100k", progress=False)
    results = []
    for split in splits:
        for model in models:
            results.append(score(table, split, model, args.bins))
            print(f"  {split} {model}: accuracy {results[-1].metrics['accuracy']:.4f}", flush=True)
    rows = [row(r) for r in results]
    print()
    print_table([shown(r) for r in rows], COLUMNS)
    if args.plot:
        plot(results, args.plot)
    write_json(
        args.json,
        {"bench": "classifier", "bins": args.bins, "rows": rows,
         "reliability": {f"{r.split} {r.model}": r.metrics["reliability"] for r in results
                         if "reliability" in r.metrics}},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
