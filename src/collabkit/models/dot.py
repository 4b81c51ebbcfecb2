"""Dot-product models: the chapter's `DotProduct` and fastai's `EmbeddingDotBias`.

For scoring, a user row is [factors, bias, 1] and an item column [factors, 1, bias], so one
matrix product gives u.i + b_u + b_i; a model without biases scores with the factors alone.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field, field_validator
from torch import Tensor

from collabkit.models.base import CollabModel, DotTables, Explanation, ModelConfig, numeric_failure, register
from collabkit.models.biases import fit_biases, fit_range_biases
from collabkit.models.core import Embedding, sigmoid_range
from collabkit.models.settings import CHAPTER, MAX_FACTORS, FamilySettings, Recipe, check_y_range

YRange = tuple[float, float] | None


class DotSettings(FamilySettings):
    """The dot models' settings: factor count and output range."""

    n_factors: int = Field(50, ge=1, le=MAX_FACTORS, description="latent factors per user and item")
    y_range: tuple[float, float] | None = Field(
        None, description="output range (low, high); the command sets it from the data"
    )

    _y = field_validator("y_range")(check_y_range)


# Tuned on ML-100k's random 20% split (seed 42): see bench/speed.py. Raising the learning rate with
# the batch overfits; a moderate batch and one more epoch do not. keep_best: a tenth of the training
# rows choose among the biases-only start and each epoch, then the model trains again on every
# training row for the chosen count (see `refit_best`); bench/defaults.py measures it on ML-100k,
# ml-latest-small, a 1..10 table and a sparse long-tail one.
DOT_RECIPES = {"fast": Recipe(bs=768, epochs=6, lr=5e-3, wd=0.1, keep_best=True), "chapter": CHAPTER}


class _DotFamily(CollabModel):
    """What the two dot models share: scoring, the map to a rating, fold-in and explanation.

    The default ("fast") recipe keeps its best: 10% of the training rows are held aside and score
    the biases-only start (the model with biases) and every epoch; the model then trains again on
    all training rows for the epoch count that scored best (0: it is its biases-only start, with
    the factors as initialised). So on a table whose ratings say little beyond who is generous and
    what is liked, the default ends near the biases-only baseline instead of below the mean.
    """

    y_range: YRange
    Settings = DotSettings
    recipes = DOT_RECIPES
    # keep_best chooses the epoch count on held-aside rows, then trains again on every training
    # row: a tenth fewer rows cost ML-100k 0.006 RMSE, more than the choice gains there
    refit_best = True
    # chosen by bench/coldstart.py: the best NDCG@10 of 188 simulated new users with 5 ratings each
    default_fold_in_strength = 3.0
    can_explain = True

    def _tables(self) -> DotTables:
        raise NotImplementedError

    def dot_tables(self) -> DotTables | None:
        # a subclass with its own forward computes something else: it trains by autograd
        plain = type(self).forward in (DotProduct.forward, EmbeddingDotBias.forward)
        return self._tables() if plain else None

    def user_vectors(self) -> Tensor:
        return self._tables().users.detach()

    def item_vectors(self) -> Tensor:
        return self._tables().items.detach()

    def user_biases(self) -> Tensor | None:
        b = self._tables().user_bias
        return None if b is None else b.detach()[:, 0]

    def item_biases(self) -> Tensor | None:
        b = self._tables().item_bias
        return None if b is None else b.detach()[:, 0]

    def user_rows(self, user_idx: Tensor) -> Tensor:
        vecs = self.user_vectors()[user_idx].float()
        bias = self.user_biases()
        if bias is None:
            return vecs
        ones = torch.ones(len(vecs), 1, device=vecs.device)
        return torch.cat([vecs, bias[user_idx].float()[:, None], ones], dim=1)  # (B, k + 2)

    def item_side(self, item_idx: Tensor) -> Tensor:
        items = self.item_vectors()[item_idx].float()
        bias = self.item_biases()
        if bias is not None:
            ones = torch.ones(len(items), 1, device=items.device)
            items = torch.cat([items, ones, bias[item_idx].float()[:, None]], dim=1)
        return items.T.contiguous()  # (k [+ 2], m)

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        return raw if self.y_range is None else sigmoid_range(raw, *self.y_range)

    def start_from_biases(self, x: Tensor, y: Tensor, zero_factors: bool = False) -> bool:
        """Set the biases to the biases-only model of training pairs `x` (N, 2), ratings `y` (N,).

        The model's own link is fitted (`fit_range_biases`), the mean's logit split between the two
        bias tables; the factors are left as they are, or set to 0 with `zero_factors` (the model
        kept as its final answer: random factors would be noise posing as learned vectors, and
        `similar_items` refuses all-zero ones). Returns False for a model without biases.
        """
        tables = self._tables()
        if tables.user_bias is None or tables.item_bias is None:
            return False
        u, i = x[:, 0].cpu().numpy(), x[:, 1].cpu().numpy()
        r = y.detach().cpu().numpy()
        n_users, n_items = len(tables.user_bias), len(tables.item_bias)
        if self.y_range is None:
            lin = fit_biases(u, i, r, n_users, n_items)
            offset, bu, bi = lin.mean, lin.user, lin.item
        else:
            fit = fit_range_biases(u, i, r, n_users, n_items, self.y_range)
            offset, bu, bi = fit.offset, fit.user, fit.item
        with torch.no_grad():
            for table, values in ((tables.user_bias, bu), (tables.item_bias, bi)):
                table[:, 0] = torch.as_tensor(values + offset / 2, dtype=table.dtype, device=table.device)
            if zero_factors:
                tables.users.zero_()
                tables.items.zero_()
        return True

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """One ridge solve in pre-sigmoid space: ratings through the inverse of sigmoid_range
        (clipped into the open range), minus the item biases, for [vector, bias], shrunk towards
        `prior` with weight `strength` (float64 on the CPU: a few dozen unknowns)."""
        side = self.item_side(item_idx.to(self.item_vectors().device)).T.cpu().double()  # (m, d)
        target = ratings.cpu().double()
        if self.y_range is not None:
            lo, hi = self.y_range
            p = ((target - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
            target = torch.log(p / (1 - p))
        prior = prior.cpu().double()
        has_bias = self.item_biases() is not None
        if has_bias:  # columns k (x 1: the user's bias) and k + 1 (x item bias: fixed, weight 1)
            k = side.shape[1] - 2
            target = target - side[:, k + 1]
            design, start = side[:, : k + 1], prior[: k + 1]
        else:
            design, start = side, prior
        if strength == 0 and len(target) < design.shape[1]:  # LU may not notice: the answer is arbitrary
            raise numeric_failure(
                self.name, "folding in the new user", {"strength": strength},
                f"with strength 0, {len(target)} ratings cannot determine {design.shape[1]} unknowns: "
                "give a strength above 0",
            )  # fmt: skip
        resid = target - design @ start
        gram = design.T @ design + strength * torch.eye(design.shape[1], dtype=torch.float64)
        try:
            sol = start + torch.linalg.solve(gram, design.T @ resid)
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name,
                "folding in the new user",
                {"strength": strength},
                "with strength 0 a few ratings cannot determine every factor: give a strength above 0",
            ) from None
        if has_bias:
            sol = torch.cat([sol, torch.ones(1, dtype=torch.float64)])
        return sol.float().to(prior.device)

    def explain(self, user_idx: int, item_idx: int) -> Explanation:
        products = (self.user_vectors()[user_idx].double() * self.item_vectors()[item_idx].double()).cpu()
        ub, ib = self.user_biases(), self.item_biases()
        u_b = None if ub is None else float(ub[user_idx])
        i_b = None if ib is None else float(ib[item_idx])
        raw = float(products.sum()) + (u_b or 0.0) + (i_b or 0.0)
        return Explanation(0.0, u_b, i_b, products, raw)


@register("dot")
class DotProduct(_DotFamily):
    """rating = user factors . item factors, optionally squeezed into `y_range`."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50, y_range: YRange = None) -> None:
        self.user_factors = Embedding(n_users, n_factors)  # the chapter's names
        self.item_factors = Embedding(n_items, n_factors)
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))

    @classmethod
    def from_config(cls, config: ModelConfig) -> DotProduct:
        s = cast(DotSettings, config.settings)  # ModelConfig checked it against DotSettings
        return cls(config.n_users, config.n_items, s.n_factors, y_range=s.y_range)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 2) user and item indices -> (B,)
        res = (self.user_factors(x[:, 0]) * self.item_factors(x[:, 1])).sum(dim=1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)

    def _tables(self) -> DotTables:
        return DotTables(self.user_factors.weight, self.item_factors.weight, None, None, self.y_range)


@register("dotbias")
class EmbeddingDotBias(_DotFamily):
    """fastai's bias model: dot product of factors + user bias + item bias, in `y_range`.

    The parameter names (`u_weight`, `i_weight`, `u_bias`, `i_bias`) are fastai's, so the chapter's
    interpretation code (`learn.model.i_bias.weight`) runs unchanged.
    """

    has_biases = True

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: YRange = None) -> None:
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.u_weight = Embedding(n_users, n_factors)
        self.i_weight = Embedding(n_items, n_factors)
        self.u_bias = Embedding(n_users, 1)
        self.i_bias = Embedding(n_items, 1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> EmbeddingDotBias:
        s = cast(DotSettings, config.settings)  # ModelConfig checked it against DotSettings
        return cls(s.n_factors, config.n_users, config.n_items, y_range=s.y_range)

    def forward(self, x: Tensor) -> Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.u_weight(users) * self.i_weight(items)).sum(dim=1)  # (B,)
        res = dot + self.u_bias(users).squeeze(1) + self.i_bias(items).squeeze(1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)

    def _tables(self) -> DotTables:
        return DotTables(
            self.u_weight.weight, self.i_weight.weight, self.u_bias.weight, self.i_bias.weight, self.y_range
        )
