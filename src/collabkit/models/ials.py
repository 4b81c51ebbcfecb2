"""Implicit ALS (Hu, Koren & Volinsky 2008): factors fitted to every cell of the interaction matrix.

Every (user, item) cell has preference p = 1 if the user rated the item, else 0, and confidence
c = 1 + alpha * v (v = 1, or the rating with `-o values=rating`) where rated, else 1. ALS minimises
sum c (p - u.i)^2 + reg (|U|^2 + |I|^2) by alternating solves, all rows of one side at once:

    A_u x_u = b_u,   A_u = I^T I + reg + sum_{i rated} (c_ui - 1) i i^T,   b_u = sum_{i rated} c_ui i

Building every A_u costs nnz * k^2 per sweep; instead each sweep takes three conjugate-gradient
steps (Takacs, Pilaszy & Tikk 2011; implicit's `cg_steps=3`) from the previous sweep's factors,
which only ever multiply A_u by a vector:

    A_u p = (I^T I + reg) p + sum_{i rated} (c_ui - 1) (i . p) i

The sum over rated cells is one sampled product (every rated cell's i . p_u, `sampled_addmm` on
the CSR of the ratings) and one sparse-dense product, for all users at once: about 8 nnz k per CG
step, float32, no loop over users or items. `solve_exact` (batched Cholesky over the k x k
systems, float64) is the reference that the CG steps converge to, kept for tests and checks.

A new user folds in exactly as a trained user is solved, by an exact k x k solve.
"""

from __future__ import annotations

import warnings

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, numeric_failure, register, require_finite
from collabkit.models.ranking_base import RankingModel, Values, kept_ratings, min_rating_field, values_field
from collabkit.models.settings import MAX_FACTORS, FamilySettings
from collabkit.models.shards import Shards, current_shards
from collabkit.models.sparse import last_of_each

CG_STEPS = 3  # conjugate-gradient steps per row and sweep: implicit's default, and enough (see fit_direct)
_TINY = torch.finfo(torch.float32).tiny
_EPS = torch.finfo(torch.float32).eps


class IALSSettings(FamilySettings):
    n_factors: int = Field(64, ge=1, le=MAX_FACTORS, description="factors per user and item")
    reg: float = Field(30.0, gt=0, description="L2 penalty on each factor row")
    alpha: float = Field(0.5, ge=0, description="confidence of a rated cell: 1 + alpha * value")
    iterations: int = Field(15, ge=1, le=10_000, description="alternating sweeps (users, then items)")
    values: Values = values_field("rating")
    min_rating: float | None = min_rating_field()


@register("ials")
class ImplicitALS(RankingModel):
    """Hu/Koren/Volinsky implicit ALS, each sweep three conjugate-gradient steps per row.

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

    def rated_cells(self, x: Tensor, y: Tensor, shards: Shards | None = None) -> tuple[Rated, Rated]:
        """The rated cells with their c - 1, by user and by item; a repeated pair keeps its last
        rating, as the dense models do. With `shards`, only this process's share of the users
        (and of the items), numbered from the share's first row."""
        dev = self.item_factors.device
        x, y = kept_ratings(x.to(dev), y.to(dev), self.settings.min_rating)
        key = x[:, 0] * self.n_items + x[:, 1]
        key, last = last_of_each(key)
        c1 = self._confidence(y.to(dev)[last])  # (nnz,) c - 1
        users, items = key // self.n_items, key % self.n_items
        if shards is None:
            by_user = Rated(users, items, c1, self.n_users, self.n_items)
            return by_user, Rated(items, users, c1, self.n_items, self.n_users)
        (ulo, uhi), (ilo, ihi) = shards.share(self.n_users), shards.share(self.n_items)
        mine = (users >= ulo) & (users < uhi)
        by_user = Rated(users[mine] - ulo, items[mine], c1[mine], uhi - ulo, self.n_items)
        mine = (items >= ilo) & (items < ihi)
        return by_user, Rated(items[mine] - ilo, users[mine], c1[mine], ihi - ilo, self.n_users)

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        """Alternating sweeps; under torchrun each process solves its share of the users, then of
        the items, and the shares are all-gathered (`models.shards`): the same factors as one process."""
        self.check_fit_input(x, y)
        shards = current_shards()
        by_user, by_item = self.rated_cells(x, y, shards)
        s = self.settings
        u, it = torch.zeros_like(self.user_factors), self.item_factors.clone()
        # the first sweep starts the users at zero and solves them from the random items
        used = {"reg": s.reg, "alpha": s.alpha, "n_factors": s.n_factors}
        way_out = "a larger reg (or a smaller alpha) keeps every k x k system well conditioned"

        def solve(rated: Rated, x: Tensor, other: Tensor) -> Tensor:
            if shards is None:
                out = solve_cg(rated, x, other, s.reg, CG_STEPS)
            else:  # this process's rows only, then every process's
                lo, hi = shards.share(len(x))
                out = solve_cg(rated, x[lo:hi], other, s.reg, CG_STEPS)
                out = None if out is None else shards.gather(out, len(x))
            if out is None:  # the k x k Gram plus reg is singular in float32 (on every process alike)
                raise numeric_failure(self.name, "the alternating solve", used, way_out)
            return out

        for _ in range(s.iterations):
            u = solve(by_user, u, it)
            it = solve(by_item, it, u)
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
        if self.settings.min_rating is not None:  # only the ratings that count, as in training
            keep = ratings >= self.settings.min_rating
            item_idx, ratings = item_idx[keep], ratings[keep]
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


class Rated:
    """One side's rated cells as a CSR pattern (rows: the side being solved) with c - 1 and c.

    Two CSR tensors share the pattern: `dots` receives every rated cell's x_row . other_col in
    place, `weights` the per-cell factors of the sparse-dense product. Indices are int32 (when
    they fit) because MKL's sparse products take 32-bit indices: int64 ones are copied every call.
    """

    def __init__(self, rows: Tensor, cols: Tensor, c1: Tensor, n_rows: int, n_cols: int) -> None:
        order = torch.argsort(rows * n_cols + cols)
        index = torch.int32 if len(rows) < 2**31 - 1 else torch.int64
        crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
        crow, col = crow.to(index), cols[order].to(index)
        self.c1 = c1[order].float().contiguous()  # (nnz,) c - 1
        self.c = self.c1 + 1.0  # (nnz,) c
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products are all we use
            warnings.simplefilter("ignore", UserWarning)
            self.dots = torch.sparse_csr_tensor(crow, col, torch.zeros_like(self.c1), (n_rows, n_cols))
            self.weights = torch.sparse_csr_tensor(crow, col, torch.zeros_like(self.c1), (n_rows, n_cols))

    def _dots(self, x: Tensor, other: Tensor) -> Tensor:
        """(nnz,) x_row . other_col for every rated cell (written into `self.dots`)."""
        torch.sparse.sampled_addmm(self.dots, x, other.T, beta=0.0, out=self.dots)
        return self.dots.values()

    def residual(self, x: Tensor, other: Tensor, g: Tensor) -> Tensor:
        """(n_rows, k) b - A x = sum c_ui i - (G x + sum (c_ui - 1)(i . x) i) for every row."""
        torch.addcmul(self.c, self.c1, self._dots(x, other), value=-1.0, out=self.weights.values())
        return torch.addmm(x @ g, self.weights, other, beta=-1.0)

    def times(self, p: Tensor, other: Tensor, g: Tensor) -> Tensor:
        """(n_rows, k) A p = G p + sum (c_ui - 1)(i . p) i for every row."""
        torch.mul(self.c1, self._dots(p, other), out=self.weights.values())
        return torch.addmm(p @ g, self.weights, other)

    def pairs(self) -> tuple[Tensor, Tensor]:
        """(nnz,) row and (nnz,) column of every rated cell, int64."""
        crow, col = self.dots.crow_indices().long(), self.dots.col_indices().long()
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow.diff())
        return rows, col


def gram(other: Tensor, reg: float) -> Tensor | None:
    """(k, k) other^T other + reg I, or None where it is singular in float32 (then some A_u may be:
    too small a reg with fewer rows in `other` than factors, or overflowing confidences)."""
    k = other.shape[1]
    g = torch.addmm(torch.eye(k, device=other.device).mul_(reg), other.T, other)
    chol, info = torch.linalg.cholesky_ex(g.double())
    pivots = torch.diagonal(chol).square()
    if int(info) != 0 or not bool(pivots.min() > _EPS * pivots.max()):
        return None
    return g


def solve_cg(rated: Rated, x: Tensor, other: Tensor, reg: float, steps: int) -> Tensor | None:
    """(n_rows, k) every row's solution against the fixed `other` (n_cols, k), by `steps`
    conjugate-gradient steps from `x` (n_rows, k) (None: the system is singular, see `gram`).

    Rows are independent systems run in lockstep; a row that has converged (or has no rated cells
    and sits at 0) gets a zero step, not a division by zero. A NaN stays a NaN for the caller to see.
    """
    g = gram(other, reg)
    if g is None:
        return None
    r = rated.residual(x, other, g)
    x = x.clone()
    p = r.clone()
    rs = torch.linalg.vecdot(r, r)  # (n_rows,)
    for _ in range(steps):
        ap = rated.times(p, other, g)
        a = rs / torch.linalg.vecdot(p, ap).clamp_min(_TINY)  # (n_rows,) 0 where p = 0
        x.addcmul_(a[:, None], p)
        r.addcmul_(a[:, None], ap, value=-1.0)
        rs_new = torch.linalg.vecdot(r, r)
        p = torch.addcmul(r, (rs_new / rs.clamp_min(_TINY))[:, None], p)
        rs = rs_new
    return x


def solve_exact(rated: Rated, other: Tensor, reg: float) -> Tensor:
    """(n_rows, k) every row's exact solution against `other`, by batched Cholesky in float64.

    Costs nnz * k^2 and n_rows * k^2 memory: the reference the CG steps converge to (tests).
    Raises torch.linalg.LinAlgError where a system is singular.
    """
    n_cols, k = other.shape
    o = other.double()
    outer = (o[:, :, None] * o[:, None, :]).reshape(n_cols, k * k)  # (n_cols, k*k)
    rows, cols = rated.pairs()
    n_rows = rated.dots.shape[0]
    a = torch.zeros(n_rows, k * k, dtype=torch.float64, device=o.device)
    a.index_add_(0, rows, outer[cols] * rated.c1.double()[:, None])
    a = a.reshape(-1, k, k) + o.T @ o + reg * torch.eye(k, dtype=torch.float64, device=o.device)
    b = torch.zeros(n_rows, k, dtype=torch.float64, device=o.device)
    b.index_add_(0, rows, o[cols] * rated.c.double()[:, None])
    chol = torch.linalg.cholesky(a)
    return torch.cholesky_solve(b[:, :, None], chol)[:, :, 0].float()
