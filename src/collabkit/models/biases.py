"""The biases-only model (Koren's baseline predictor) fitted in closed form, in rating units and
through a dot model's sigmoid range: the baseline every model is shown beside (`collabkit.baselines`)
and where a dot model with biases starts when its recipe keeps its best (`models.dot`).

b_i = sum(r - mu - b_u) / (reg + n_i), then b_u = sum(r - mu - b_i) / (reg + n_u), a few sweeps:
no learning rate, no epochs, a fraction of a second; Surprise's BaselineOnly (ALS), LensKit's Bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIAS_REG = 10.0  # damping, in ratings: an item with 10 ratings gets half its raw mean offset
BIAS_SWEEPS = 10


@dataclass(frozen=True)
class Biases:
    """mu + b_u + b_i, fitted on training index pairs."""

    mean: float
    user: np.ndarray  # (n_users,) 0 for users with no training ratings
    item: np.ndarray  # (n_items,)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        ok_u = (u >= 0) & (u < len(self.user))
        ok_i = (i >= 0) & (i < len(self.item))
        out = np.full(len(u), self.mean)
        out[ok_u] += self.user[u[ok_u]]
        out[ok_i] += self.item[i[ok_i]]
        return out


def fit_biases(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    reg: float = BIAS_REG, sweeps: int = BIAS_SWEEPS,
) -> Biases:  # fmt: skip
    """The biases-only model of training index pairs, by alternating damped means (see the module)."""
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    r = np.asarray(ratings, dtype=np.float64)
    mean = float(r.mean()) if len(r) else 0.0
    n_u = np.bincount(u, minlength=n_users).astype(np.float64)
    n_i = np.bincount(i, minlength=n_items).astype(np.float64)
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(sweeps):
        bi = _damped(np.bincount(i, weights=r - mean - bu[u], minlength=n_items), reg + n_i)
        bu = _damped(np.bincount(u, weights=r - mean - bi[i], minlength=n_users), reg + n_u)
    return Biases(mean, bu, bi)


@dataclass(frozen=True)
class RangeBiases:
    """The biases-only model in a dot model's own link: lo + (hi - lo) * sigmoid(offset + b_u + b_i)."""

    offset: float  # the training mean's logit in the range
    user: np.ndarray  # (n_users,) 0 for users with no training ratings
    item: np.ndarray  # (n_items,)


def fit_range_biases(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    y_range: tuple[float, float], reg: float = BIAS_REG, sweeps: int = BIAS_SWEEPS,
) -> RangeBiases:  # fmt: skip
    """`fit_biases` through `sigmoid_range`: where a dot model with biases starts when it keeps its best.

    Why not the closed-form biases linearised through the sigmoid: that start is off wherever the
    curve bends (generous users of popular items), and the model then spends its epochs undoing it.
    Here each sweep is one damped Gauss-Newton step per item, then per user, on the squared error
    in rating units; `reg` damps as in `fit_biases`: `reg` pseudo-ratings at the bias's own mean
    slope (so a 1..10 table is damped as a 1..5 one, and a bias near the range's end as one in the
    middle).
    """
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    r = np.asarray(ratings, dtype=np.float64)
    lo, hi = float(y_range[0]), float(y_range[1])
    span = hi - lo
    p = float(np.clip(((r.mean() if len(r) else (lo + hi) / 2) - lo) / span, 1e-3, 1 - 1e-3))
    offset = float(np.log(p / (1 - p)))
    n_u = np.bincount(u, minlength=n_users).astype(np.float64)
    n_i = np.bincount(i, minlength=n_items).astype(np.float64)
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(sweeps):
        for side in ("offset", "item", "user"):
            s = 1.0 / (1.0 + np.exp(-(offset + bu[u] + bi[i])))
            slope = span * s * (1 - s)  # d rating / d logit, per rating
            err = lo + span * s - r
            grad, curv = slope * err, slope * slope
            if side == "offset":
                offset -= float(grad.sum() / max(curv.sum(), 1e-12))
            elif side == "item":
                bi -= _damped_step(np.bincount(i, grad, n_items), np.bincount(i, curv, n_items), n_i, bi, reg)
            else:
                bu -= _damped_step(np.bincount(u, grad, n_users), np.bincount(u, curv, n_users), n_u, bu, reg)
    return RangeBiases(offset, bu, bi)


def _damped_step(
    grad: np.ndarray, curv: np.ndarray, counts: np.ndarray, b: np.ndarray, reg: float
) -> np.ndarray:
    """One damped Gauss-Newton step per bias: `reg` pseudo-ratings at the bias's own mean slope, so
    a bias near the range's end (where the curve is flat) is damped as much as one at the middle."""
    damp = reg * np.divide(curv, counts, out=np.zeros_like(curv), where=counts > 0)
    return np.divide(grad + damp * b, curv + damp, out=np.zeros_like(b), where=counts > 0)


def _damped(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sums / counts, 0 where nothing was rated (a user or item with no training ratings)."""
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
