"""The baselines every model is shown beside: the training mean, and biases only.

A held-out RMSE means little alone: 0.90 is good on ML-100k and poor on a table whose ratings barely
vary. `train` and `evaluate` print these two beside the model's figure and flag a model that does not
beat the biases-only baseline (a model that does not is underfitted, or the table has no signal
beyond who is generous and what is liked).

The biases-only model is Koren's baseline predictor, fitted in closed form by alternating damped
means: b_i = sum(r - mu - b_u) / (reg + n_i), then b_u = sum(r - mu - b_i) / (reg + n_u), a few
sweeps. It needs no learning rate, no epochs and a fraction of a second, so it is fair to every
table, and it is what Surprise calls BaselineOnly (ALS) and LensKit Bias.
"""

from __future__ import annotations

import numpy as np

from collabkit.evaluate import mae, rmse
from collabkit.models.biases import BIAS_REG, BIAS_SWEEPS, Biases, RangeBiases, fit_biases, fit_range_biases

# re-exported: looked for here; they live in models/ so that a dot model can start from them
__all__ = [
    "BIAS_REG",
    "BIAS_SWEEPS",
    "Biases",
    "RangeBiases",
    "fit_biases",
    "fit_range_biases",
    "rating_baselines",
]


def rating_baselines(
    train_x: np.ndarray, train_y: np.ndarray, valid_x: np.ndarray, valid_y: np.ndarray,
    n_users: int, n_items: int,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """RMSE and MAE on held-out index pairs of the training mean and of the biases-only model."""
    train_x, valid_x = np.asarray(train_x), np.asarray(valid_x)
    y = np.asarray(valid_y, dtype=np.float64)
    train_y = np.asarray(train_y, dtype=np.float64)
    mean = float(train_y.mean()) if len(train_y) else 0.0
    flat = np.full(len(y), mean)
    biases = fit_biases(train_x[:, 0], train_x[:, 1], train_y, n_users, n_items)
    fitted = biases.predict(valid_x[:, 0], valid_x[:, 1])
    return {
        "global_mean": {"rmse": rmse(flat, y), "mae": mae(flat, y)},
        "biases": {"rmse": rmse(fitted, y), "mae": mae(fitted, y)},
    }
