"""Rating-error metrics as plain functions, and k-fold cross-validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.models import RatingClassifier, predict_ratings

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _t(x: ArrayLike) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float64).reshape(-1)


def mse(preds: ArrayLike, targs: ArrayLike) -> float:
    """Mean squared error."""
    return float(((_t(preds) - _t(targs)) ** 2).mean())


def rmse(preds: ArrayLike, targs: ArrayLike) -> float:
    """Root mean squared error."""
    return mse(preds, targs) ** 0.5


def mae(preds: ArrayLike, targs: ArrayLike) -> float:
    """Mean absolute error."""
    return float((_t(preds) - _t(targs)).abs().mean())


class LevelAccuracy:
    """Share of ratings whose most likely level (from a classifier's logits) is the true one."""

    __name__ = "accuracy"

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = torch.tensor(list(levels), dtype=torch.float32)

    def __call__(self, logits: Tensor, ratings: Tensor) -> float:
        target = (ratings.view(-1, 1).cpu() - self.levels.view(1, -1)).abs().argmin(dim=1)
        return float((logits.argmax(dim=1).cpu() == target).float().mean())


class ExpectedRatingRMSE:
    """RMSE of the expected rating under a classifier's softmax."""

    __name__ = "rmse"

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = torch.tensor(list(levels), dtype=torch.float32)

    def __call__(self, logits: Tensor, ratings: Tensor) -> float:
        return rmse(logits.float().cpu().softmax(dim=1) @ self.levels, ratings.cpu())


@torch.inference_mode()
def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, bs: int = 65536) -> dict[str, float]:
    """MSE, RMSE and MAE of a model on index pairs `x` (N, 2) against ratings `y` (N,); + accuracy
    for a classifier."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds, logits = [], []
    for i in range(0, len(y), bs):
        xb = x[i : i + bs].to(device)
        if isinstance(model, RatingClassifier):
            out = model(xb)
            logits.append(out.cpu())
            preds.append(model.expected_rating(out).cpu())
        else:
            preds.append(predict_ratings(model, xb).cpu())
    model.train(was_training)
    p = torch.cat(preds) if preds else torch.empty(0)
    result = {"mse": mse(p, y), "rmse": rmse(p, y), "mae": mae(p, y), "n": float(len(y))}
    if logits:
        assert isinstance(model, RatingClassifier)
        result["accuracy"] = LevelAccuracy(model.levels.tolist())(torch.cat(logits), y)
    return result


def summarize_folds(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof=1) of each metric over folds."""
    keys = [k for k in results[0] if k != "n"]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([r[k] for r in results], dtype=float)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out


def cross_validate(
    run_fold: Callable[[int], dict[str, Any]], k: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Run `run_fold(i)` for i in 0..k-1 (each trains on fold i and returns its metrics); mean and spread."""
    results = [run_fold(i) for i in range(k)]
    return results, summarize_folds(results)
