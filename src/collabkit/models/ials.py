"""Implicit ALS (Hu, Koren & Volinsky 2008): factors fitted to every cell of the interaction matrix.

Every (user, item) cell has preference p = 1 if the user rated the item, else 0, and confidence
c = 1 + alpha * v (v = 1, or the rating with `-o values=rating`) where rated, else 1. ALS minimises
sum c (p - u.i)^2 + reg (|U|^2 + |I|^2) by exact alternating solves, all rows of one side at once:

    A_u = I^T I + sum_{i rated} (c_ui - 1) i i^T + reg,   b_u = sum_{i rated} c_ui i

The middle term of every A_u comes from one sparse product, (C - 1) (n_users, n_items) times the
items' flattened outer products (n_items, k*k), and the k x k systems are solved by one batched
Cholesky, so there is no loop over users or items; each sweep costs about nnz * k^2.

A new user folds in exactly as a trained user is solved: one k x k system from their ratings.
"""

from __future__ import annotations

import warnings

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, numeric_failure, register, require_finite
from collabkit.models.ranking_base import RankingModel, Values, values_field
from collabkit.models.settings import MAX_FACTORS, FamilySettings


class IALSSettings(FamilySettings):
    n_factors: int = Field(64, ge=1, le=MAX_FACTORS, description="factors per user and item")
    reg: float = Field(30.0, gt=0, description="L2 penalty on each factor row")
    alpha: float = Field(0.5, ge=0, description="confidence of a rated cell: 1 + alpha * value")
    iterations: int = Field(15, ge=1, le=10_000, description="alternating sweeps (users, then items)")
    values: Values = values_field("rating")


@register("ials")
class ImplicitALS(RankingModel):
    """Hu/Koren/Volinsky implicit ALS, solved exactly by batched Cholesky.

    `--factors 64 -o reg=30 -o alpha=0.5 -o iterations=15 -o values=rating`: reg, alpha and values
    chosen on a validation part of ML-100k u1's training rows (bench/ranking.py --tune; u1's test
    rows unread), where a strong penalty and a low confidence on ratings ranked best (0.274 NDCG@10
    against 0.191-0.268 for the rest of the grid); factors and iterations are the usual 64 and 15.
    """

    user_factors: Tensor  # (n_users, factors)
    item_factors: Tensor  # (n_items, factors)

    settings: IALSSettings
    Settings = IALSSettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k = self.settings.n_factors
        # small random start (seeded by train's seed): the item side must not start at zero
        self.register_buffer("user_factors", torch.randn(self.n_users, k) * 0.01)
        self.register_buffer("item_factors", torch.randn(self.n_items, k) * 0.01)

    def _confidence(self, ratings: Tensor) -> Tensor:
        """(N,) c - 1 = alpha * value for rated cells."""
        v = torch.ones_like(ratings) if self.settings.values == "binary" else ratings
        return self.settings.alpha * v.float()

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        dev = self.item_factors.device
        # one value per (user, item): a repeated pair keeps its last rating, as the dense models do
        key = x[:, 0].to(dev) * self.n_items + x[:, 1].to(dev)
        key, last = _last_of_each(key)
        c1 = self._confidence(y.to(dev)[last])  # (nnz,) c - 1
        users, items = key // self.n_items, key % self.n_items
        by_user = _csr(users, items, c1, self.n_users, self.n_items)  # (n_users, n_items)
        by_item = _csr(items, users, c1, self.n_items, self.n_users)  # (n_items, n_users)
        ones_u = _csr(users, items, torch.ones_like(c1), self.n_users, self.n_items)
        ones_i = _csr(items, users, torch.ones_like(c1), self.n_items, self.n_users)
        reg = self.settings.reg
        u, it = self.user_factors.clone(), self.item_factors.clone()
        u.zero_()  # the first sweep solves the users from the random items
        s = self.settings
        used = {"reg": s.reg, "alpha": s.alpha, "n_factors": s.n_factors}
        way_out = "a larger reg (or a smaller alpha) keeps every k x k system well conditioned"
        try:
            for _ in range(s.iterations):
                u = _solve_side(by_user, ones_u, it, reg)
                it = _solve_side(by_item, ones_i, u, reg)
        except torch.linalg.LinAlgError:
            raise numeric_failure(self.name, "the alternating solve", used, way_out) from None
        require_finite(
            self.name, "the alternating solve", {"user_factors": u, "item_factors": it}, used, way_out
        )
        self.user_factors.copy_(u)
        self.item_factors.copy_(it)

    def user_vectors(self) -> Tensor:
        return self.user_factors

    def item_vectors(self) -> Tensor:
        return self.item_factors

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.user_factors[user_idx]  # (B, k)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return self.item_factors[item_idx].T.contiguous()  # (k, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(k,) the new user's factors: the same least-squares solve as a trained user's, from
        their rated items (prior and strength unused: ALS's own penalty `reg` is the shrinkage)."""
        self.check_fold_in(item_idx, ratings)
        items = self.item_factors.double()  # (n_items, k)
        rated = items[item_idx.to(items.device)]  # (m, k)
        c1 = self._confidence(ratings.to(items.device)).double()  # (m,)
        k = items.shape[1]
        a = items.T @ items + (rated.T * c1) @ rated + self.settings.reg * torch.eye(k, dtype=items.dtype)
        b = rated.T @ (1.0 + c1)  # (k,)
        try:
            return torch.linalg.solve(a, b).float()
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name, "folding in the new user", {"reg": self.settings.reg}, "a larger reg"
            ) from None


def _last_of_each(key: Tensor) -> tuple[Tensor, Tensor]:
    """(distinct keys, the position of each one's last occurrence in `key`)."""
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    is_last = torch.ones_like(sorted_key, dtype=torch.bool)
    is_last[:-1] = sorted_key[1:] != sorted_key[:-1]
    return sorted_key[is_last], order[is_last]


def _csr(rows: Tensor, cols: Tensor, values: Tensor, n_rows: int, n_cols: int) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products are all we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values.float(), (n_rows, n_cols))
        return coo.coalesce().to_sparse_csr()


def _solve_side(conf1: Tensor, ones: Tensor, other: Tensor, reg: float) -> Tensor:
    """(n_rows, k) every row's exact least-squares solution against the fixed `other` (n_cols, k).

    conf1 (n_rows, n_cols) sparse holds c - 1 on rated cells; `ones` the same cells with 1.
    """
    n_cols, k = other.shape
    outer = (other[:, :, None] * other[:, None, :]).reshape(n_cols, k * k)  # (n_cols, k*k)
    a = (conf1 @ outer).reshape(-1, k, k).double()  # (n_rows, k, k): sum (c - 1) i i^T
    a += (other.T @ other).double() + reg * torch.eye(k, dtype=torch.float64, device=other.device)
    b = (conf1 @ other + ones @ other).double()  # (n_rows, k): sum c i over rated cells
    chol = torch.linalg.cholesky(a)
    return torch.cholesky_solve(b[:, :, None], chol)[:, :, 0].float()
