"""Rating-error metrics as plain functions of predictions and targets (arrays or tensors).

A leaf: it imports nothing from the rest of collabkit, so the models can use its metrics without
an import circle. Scoring a model (index pairs in, figures out) is in `collabkit.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _t(x: ArrayLike) -> Tensor:
    return torch.as_tensor(
        np.array(x, dtype=np.float64) if not isinstance(x, Tensor) else x, dtype=torch.float64
    ).reshape(-1)


def mse(preds: ArrayLike, targs: ArrayLike) -> float:
    """Mean squared error."""
    return float(((_t(preds) - _t(targs)) ** 2).mean())


def rmse(preds: ArrayLike, targs: ArrayLike) -> float:
    """Root mean squared error."""
    return mse(preds, targs) ** 0.5


def mae(preds: ArrayLike, targs: ArrayLike) -> float:
    """Mean absolute error."""
    return float((_t(preds) - _t(targs)).abs().mean())


def nearest_level(ratings: Tensor, levels: Tensor) -> Tensor:
    """Index of the level nearest each rating: the one map from a rating to a classifier's class."""
    return (ratings.reshape(-1, 1).to(levels.dtype) - levels.reshape(1, -1)).abs().argmin(dim=1)


def expected_rating(logits: Tensor, levels: Tensor) -> Tensor:
    """(B, L) logits -> (B,) the rating expected under their softmax over the levels (L,)."""
    return logits.float().softmax(dim=1) @ levels.to(logits.device).float()


class LevelAccuracy:
    """Share of ratings whose most likely level (from a classifier's logits) is the true one."""

    __name__ = "accuracy"

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = torch.tensor(list(levels), dtype=torch.float32)

    def __call__(self, logits: Tensor, ratings: Tensor) -> float:
        target = nearest_level(ratings.cpu(), self.levels)
        return float((logits.argmax(dim=1).cpu() == target).float().mean())


class ExpectedRatingRMSE:
    """RMSE of the expected rating under a classifier's softmax."""

    __name__ = "rmse"

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = torch.tensor(list(levels), dtype=torch.float32)

    def __call__(self, logits: Tensor, ratings: Tensor) -> float:
        return rmse(expected_rating(logits.cpu(), self.levels), ratings.cpu())


def metric_name(metric: Any) -> str:
    """The name a metric is shown and stored under (its `__name__`, else its class's name)."""
    return getattr(metric, "__name__", type(metric).__name__)


def summarize_folds(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof=1) of each metric over folds."""
    keys = [k for k in results[0] if k != "n"]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([r[k] for r in results], dtype=float)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
