"""Biased matrix factorisation for ratings, fitted by alternating least squares.

The rating of user u for item i is predicted as

    r_ui ~ mu + b_u + b_i + p_u . q_i      (mu: the training mean, a fixed offset)

and ALS minimises sum_(u,i rated) (r_ui - mu - b_u - b_i - p_u . q_i)^2 + penalty by alternating
closed-form solves. The biases are solved jointly with the factors by the usual trick of a
constant column: with the items fixed, user u's unknowns w_u = [p_u, b_u] (k + 1) meet the design
rows x_i = [q_i, 1] and the targets t_ui = r_ui - mu - b_i, so

    (sum_(i in N(u)) x_i x_i^T + lambda_u I) w_u = sum_(i in N(u)) t_ui x_i,   lambda_u = reg

and the items likewise against [p_u, 1] with targets r_ui - mu - b_u. The plain penalty fits
ML-100k better than the weighted-lambda one of Zhou, Wilkinson, Schreiber & Pan (2008),
`lambda_u = reg * |N(u)|`: see `WEIGHTED`.

Every row of one side is solved at once: the (k + 1) x (k + 1) Gram matrices of a block of rows
are sparse-dense products (the CSR of their ratings times the other side's outer products, a few
columns at a time) and the systems are batched Cholesky solves in float64, as `ials` batches its
solves. Memory grows with the ratings and the rows, never with users x items.

A new user folds in exactly as a trained user is solved: one ridge solve of [p, b_u] against the
rated items' [q_i, 1] with targets r - mu - b_i.
"""

from __future__ import annotations

import math
import warnings

import torch
from pydantic import Field
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import (
    CollabModel,
    Explanation,
    ModelConfig,
    numeric_failure,
    register,
    require_finite,
)
from collabkit.models.settings import MAX_FACTORS, FamilySettings
from collabkit.models.sparse import last_of_each

# A plain penalty `reg`, not weighted-lambda (reg x the row's count): on a validation tenth of ML-100k
# u1.base (u1.test unread), each tuned over reg and n_factors with 20 sweeps, plain reached RMSE
# 0.9134 (mean of 4 seeds; 6 factors, reg 11) against weighted-lambda's best 0.9181 (80 factors,
# reg 0.12; 0.9209 at 40 factors), 0.9210 to 0.9215 over the same seeds at 40. Weighted-lambda
# shrinks every bias by the same fraction 1 / (1 + reg), however many ratings support it, so the
# biases of heavy raters and popular items stay under-fitted; the plain penalty damps the bias of
# a row with a handful of ratings and leaves a well-supported one nearly untouched (a baseline
# predictor's damping), and it needs a tenth of the factors. `solve_rows` keeps both for comparison.
WEIGHTED = False
BLOCK = 2**22  # float64 values per intermediate block (Gram matrices, outer products): 32 MiB


class ALSSettings(FamilySettings):
    n_factors: int = Field(6, ge=1, le=MAX_FACTORS, description="factors per user and item")
    reg: float = Field(
        11.0, gt=0, le=1e9, description="L2 penalty on each user's and item's factors and bias"
    )
    iterations: int = Field(20, ge=1, le=10_000, description="alternating sweeps (users, then items)")


@register("als")
class BiasedALS(CollabModel):
    """Biased MF (mu + b_u + b_i + p_u . q_i) by alternating least squares, plain L2 penalty.

    Defaults (6 factors, reg 11, 20 sweeps) chosen on a validation tenth of ML-100k u1.base (4 to 80
    factors, reg 7 to 25, 5 to 30 sweeps tried; see `WEIGHTED`); u1's test rows were not read.
    """

    trains_by_gradient = False
    has_biases = True
    can_explain = True
    default_fold_in_strength = 0.0  # the training penalty already shrinks; strength adds a pull

    user_factors: Tensor  # (n_users, k)
    item_factors: Tensor  # (n_items, k)
    user_bias: Tensor  # (n_users,)
    item_bias: Tensor  # (n_items,)
    offset: Tensor  # () the training mean
    bounds: Tensor  # (2,) lowest and highest training rating: predictions are clipped into them

    settings: ALSSettings
    Settings = ALSSettings

    def __init__(self, config: ModelConfig) -> None:
        self.n_users, self.n_items = config.n_users, config.n_items
        self.settings = config.settings  # type: ignore[assignment]  # checked by ModelConfig
        k = self.settings.n_factors
        self.register_buffer("user_factors", torch.zeros(self.n_users, k))
        self.register_buffer("item_factors", torch.zeros(self.n_items, k))
        self.register_buffer("user_bias", torch.zeros(self.n_users))
        self.register_buffer("item_bias", torch.zeros(self.n_items))
        self.register_buffer("offset", torch.zeros(()))
        self.register_buffer("bounds", torch.tensor([-math.inf, math.inf]))

    @classmethod
    def from_config(cls, config: ModelConfig) -> BiasedALS:
        return cls(config)

    # -- fitting ---------------------------------------------------------------------------------
    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        """Alternating sweeps over every training pair (a repeated pair keeps its last rating)."""
        self._check_fit_input(x, y)
        dev = self.user_factors.device
        key, last = last_of_each(x[:, 0].to(dev).long() * self.n_items + x[:, 1].to(dev).long())
        users, items, r = key // self.n_items, key % self.n_items, y.to(dev)[last].double()
        by_user = Side(users, items, r, self.n_users, self.n_items)
        by_item = Side(items, users, r, self.n_items, self.n_users)
        s, k = self.settings, self.settings.n_factors
        mu = float(r.mean())
        # the items start small and random (seeded by train's seed), their biases at zero
        item_w = torch.cat(
            [torch.randn(self.n_items, k, dtype=torch.float64, device=dev) * 0.1,
             torch.zeros(self.n_items, 1, dtype=torch.float64, device=dev)], dim=1,
        )  # fmt: skip
        user_w = torch.zeros(self.n_users, k + 1, dtype=torch.float64, device=dev)
        used = {"n_factors": k, "reg": s.reg}
        for _ in range(s.iterations):
            user_w = self._half_step(by_user, item_w, mu, used)
            item_w = self._half_step(by_item, user_w, mu, used)
        require_finite(
            self.name, "the alternating solve", {"user_factors": user_w, "item_factors": item_w}, used,
            "check the ratings for extreme values",
        )  # fmt: skip
        self.user_factors.copy_(user_w[:, :k])
        self.user_bias.copy_(user_w[:, k])
        self.item_factors.copy_(item_w[:, :k])
        self.item_bias.copy_(item_w[:, k])
        self.offset.fill_(mu)
        self.bounds.copy_(torch.stack([r.min(), r.max()]).float())

    def _half_step(self, side: Side, other_w: Tensor, mu: float, used: dict[str, float]) -> Tensor:
        """(n_rows, k + 1) every row's [factors, bias] against the other side's fixed [factors, bias]."""
        k = other_w.shape[1] - 1
        target = side.r - mu - other_w[side.col, k]  # the other side's bias is part of the target
        design = torch.cat([other_w[:, :k], torch.ones_like(other_w[:, k:])], dim=1)  # (n_cols, k + 1)
        out = solve_rows(side, design, target, self.settings.reg, WEIGHTED)
        if out is None:
            raise numeric_failure(self.name, "the alternating solve", used, "a larger reg")
        return out

    def _check_fit_input(self, x: Tensor, y: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != 2 or y.ndim != 1 or len(x) != len(y):
            raise CollabkitError(
                f"{self.name}: fit_direct needs x (N, 2) user/item indices and y (N,) ratings, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if len(x) == 0:
            raise CollabkitError(f"{self.name}: no training ratings to fit on (x and y have 0 rows)")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise CollabkitError(f"{self.name}: x must hold integer indices, got {x.dtype}")
        if int(x.min()) < 0 or int(x[:, 0].max()) >= self.n_users or int(x[:, 1].max()) >= self.n_items:
            raise CollabkitError(
                f"{self.name}: training indices outside the model's {self.n_users} users and "
                f"{self.n_items} items (the model was built for another table)"
            )
        if not bool(torch.isfinite(y.double()).all()):
            raise CollabkitError(f"{self.name}: the training ratings hold NaN or infinite values")

    # -- scoring: [p_u, b_u, 1] . [q_i, 1, mu + b_i] ---------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        users, items = x[:, 0], x[:, 1]
        dots = (self.user_factors[users] * self.item_factors[items]).sum(1)
        return self.raw_to_rating(self.offset + self.user_bias[users] + self.item_bias[items] + dots)

    def user_rows(self, user_idx: Tensor) -> Tensor:
        ones = torch.ones(len(user_idx), 1, device=self.user_factors.device)
        return torch.cat([self.user_factors[user_idx], self.user_bias[user_idx][:, None], ones], dim=1)

    def item_side(self, item_idx: Tensor) -> Tensor:
        ones = torch.ones(len(item_idx), 1, device=self.item_factors.device)
        bias = (self.offset + self.item_bias[item_idx])[:, None]
        return torch.cat([self.item_factors[item_idx], ones, bias], dim=1).T.contiguous()  # (k + 2, m)

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        return raw.clamp(float(self.bounds[0]), float(self.bounds[1]))

    def user_vectors(self) -> Tensor:
        return self.user_factors

    def item_vectors(self) -> Tensor:
        return self.item_factors

    def user_biases(self) -> Tensor:
        return self.user_bias

    def item_biases(self) -> Tensor:
        return self.item_bias

    def explain(self, user_idx: int, item_idx: int) -> Explanation:
        """offset + user bias + item bias + one product per factor (unclipped)."""
        products = self.user_factors[user_idx].double() * self.item_factors[item_idx].double()
        ub, ib, off = float(self.user_bias[user_idx]), float(self.item_bias[item_idx]), float(self.offset)
        return Explanation(off, ub, ib, products.cpu(), off + ub + ib + float(products.sum()))

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(k + 2,) a new user's row [p, b_u, 1]: the same ridge solve as a trained user's, against
        the rated items' [q_i, 1] with targets r - mu - b_i and the training penalty, plus
        `strength` x |w - prior|^2 (the average trained user's [p, b_u]; 0: no pull)."""
        k = self.item_factors.shape[1]
        idx = item_idx.to(self.item_factors.device)
        q = self.item_factors[idx].double().cpu()  # (m, k)
        m = len(q)
        design = torch.cat([q, torch.ones(m, 1, dtype=torch.float64)], dim=1)  # (m, k + 1)
        target = ratings.double().cpu() - float(self.offset) - self.item_bias[idx].double().cpu()
        lam = self.settings.reg * (max(m, 1) if WEIGHTED else 1.0)
        start = prior.double().cpu()[: k + 1]
        gram = design.T @ design + (lam + strength) * torch.eye(k + 1, dtype=torch.float64)
        rhs = design.T @ target + strength * start
        try:
            w = torch.linalg.solve(gram, rhs)
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name, "folding in the new user", {"reg": self.settings.reg, "strength": strength},
                "a larger reg or strength",
            ) from None  # fmt: skip
        return torch.cat([w, torch.ones(1, dtype=torch.float64)]).float().to(prior.device)


class Side:
    """One side's ratings sorted by row (the side being solved): CSR row pointers, the other side's
    index of each rating (`col`) and its rating (`r`, float64), in that order."""

    def __init__(self, rows: Tensor, cols: Tensor, r: Tensor, n_rows: int, n_cols: int) -> None:
        order = torch.argsort(rows * n_cols + cols)
        self.col, self.r = cols[order].contiguous(), r[order].contiguous()
        self.count = torch.bincount(rows, minlength=n_rows)  # (n_rows,) ratings per row
        self.crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(self.count, 0, out=self.crow[1:])
        self.n_rows, self.n_cols = n_rows, n_cols

    def block(self, lo: int, hi: int, values: Tensor) -> Tensor:
        """The (hi - lo, n_cols) CSR of rows lo..hi with `values` (nnz,), given in row order."""
        a, b = int(self.crow[lo]), int(self.crow[hi])
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products are all we use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.crow[lo : hi + 1] - a, self.col[a:b], values[a:b], (hi - lo, self.n_cols),
                check_invariants=False,
            )  # fmt: skip


def solve_rows(side: Side, design: Tensor, target: Tensor, reg: float, weighted: bool) -> Tensor | None:
    """(n_rows, d) the ridge solution of every row of `side` at once (None: a system is singular).

    Row u solves (sum_(c in row u) x_c x_c^T + lambda_u I) w = sum_(c in row u) t_uc x_c, where
    x_c = `design`[c] (n_cols, d) and t_uc = `target` (nnz,), in the side's row order;
    lambda_u = reg x count_u with `weighted` (reg for a row without ratings), else reg. Rows go a
    block at a time and the Gram matrices a few of their columns at a time, so no intermediate
    exceeds about BLOCK floats (beyond one row's d x d system).
    """
    design, target = design.double(), target.double()
    n_cols, d = design.shape
    out = torch.empty(side.n_rows, d, dtype=torch.float64, device=design.device)
    lam = reg * (
        side.count.clamp_min(1).double() if weighted else torch.ones(side.n_rows, dtype=torch.float64)
    )
    lam = lam.to(design.device)
    eye = torch.eye(d, dtype=torch.float64, device=design.device)
    ones = torch.ones_like(side.r, dtype=torch.float64)
    rows_per_block = max(1, BLOCK // (d * d))
    cols_per_step = max(1, min(d, BLOCK // max(1, n_cols * d)))  # Gram columns per product
    for lo in range(0, side.n_rows, rows_per_block):
        hi = min(side.n_rows, lo + rows_per_block)
        pattern = side.block(lo, hi, ones)
        gram = torch.empty(hi - lo, d, d, dtype=torch.float64, device=design.device)
        for j in range(0, d, cols_per_step):
            jj = slice(j, min(d, j + cols_per_step))
            outer = (design[:, jj, None] * design[:, None, :]).reshape(n_cols, -1)  # (n_cols, w * d)
            gram[:, jj, :] = (pattern @ outer).reshape(hi - lo, -1, d)
        gram += lam[lo:hi, None, None] * eye
        rhs = side.block(lo, hi, target) @ design  # (rows, d)
        chol, info = torch.linalg.cholesky_ex(gram)
        if bool((info != 0).any()):
            return None
        out[lo:hi] = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
    return out
