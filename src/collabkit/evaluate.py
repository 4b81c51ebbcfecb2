"""Rating-error metrics as plain functions, and a model's error on index pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.models import CollabModel
from collabkit.models.base import model_device, nearest_level
from collabkit.models.classifier import expected_rating

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


@torch.inference_mode()
def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, bs: int = 65536) -> dict[str, float]:
    """MSE, RMSE and MAE of a model on index pairs `x` (N, 2) against ratings `y` (N,), and the
    model's own further metrics (a classifier's accuracy)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    outs = [model(x[i : i + bs].to(device)).float().cpu() for i in range(0, len(y), bs)]
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.empty(0)
    p = model.output_to_rating(out) if isinstance(model, CollabModel) else out.reshape(-1)
    result = {"mse": mse(p, y), "rmse": rmse(p, y), "mae": mae(p, y), "n": float(len(y))}
    if isinstance(model, CollabModel) and len(y):
        for metric in model.default_metrics():
            name = getattr(metric, "__name__", type(metric).__name__)
            if name not in result:
                result[name] = float(metric(out, y.cpu()))
    return result


def summarize_folds(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof=1) of each metric over folds."""
    keys = [k for k in results[0] if k != "n"]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([r[k] for r in results], dtype=float)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
