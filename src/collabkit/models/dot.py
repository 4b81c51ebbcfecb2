"""Dot-product models: the chapter's `DotProduct` and fastai's `EmbeddingDotBias`."""

from __future__ import annotations

from torch import Tensor

from collabkit.models.core import Embedding, Module, sigmoid_range

YRange = tuple[float, float] | None


class DotProduct(Module):
    """rating = user factors . item factors, optionally squeezed into `y_range`."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50, y_range: YRange = None) -> None:
        self.user_factors = Embedding(n_users, n_factors)
        self.item_factors = Embedding(n_items, n_factors)
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 2) user and item indices -> (B,)
        res = (self.user_factors(x[:, 0]) * self.item_factors(x[:, 1])).sum(dim=1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)


class EmbeddingDotBias(Module):
    """fastai's bias model: dot product of factors + user bias + item bias, in `y_range`.

    The parameter names (`u_weight`, `i_weight`, `u_bias`, `i_bias`) are fastai's, so the chapter's
    interpretation code (`learn.model.i_bias.weight`) runs unchanged.
    """

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: YRange = None) -> None:
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.u_weight = Embedding(n_users, n_factors)
        self.i_weight = Embedding(n_items, n_factors)
        self.u_bias = Embedding(n_users, 1)
        self.i_bias = Embedding(n_items, 1)

    def forward(self, x: Tensor) -> Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.u_weight(users) * self.i_weight(items)).sum(dim=1)  # (B,)
        res = dot + self.u_bias(users).squeeze(1) + self.i_bias(items).squeeze(1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)
