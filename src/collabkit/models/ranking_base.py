"""What the ranking families share: the interaction matrix, the "score" protocol defaults, and the
`values` setting (which ratings count, and how much).

A ranking model learns which items a user will pick, not how many stars they would give: it is
fitted in closed form (or by alternating solves) on the (binarised) interaction matrix, so it has
`score_kind = "score"` (the facade refuses `predict` for it and labels its lists as scores) and
`trains_by_gradient = False` (`train` calls `fit_direct(x, y)` once with every training pair).

The interaction matrix is kept dense, (n_users, n_items) float32: 6 MB for ML-100k and 90 MB for
ML-1M; beyond some 30k users x 30k items (ML-20M) it needs a sparse layout, which the state_dict to
safetensors path does not carry today.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel, ModelConfig


class RankingModel(CollabModel):
    """Base of the ranking families: typed settings (`config.settings`); scores, not ratings.

    A subclass sets `Settings` and implements `fit_direct`, `user_rows`, `item_side` (and, where
    scoring is not `rows @ side`, `score_block`), `item_vectors` and `fold_in`.
    """

    score_kind = "score"
    trains_by_gradient = False

    def __init__(self, config: ModelConfig) -> None:
        self.n_users, self.n_items = config.n_users, config.n_items
        self.settings: Any = config.settings  # the family's own Settings, checked by ModelConfig

    @classmethod
    def from_config(cls, config: ModelConfig) -> CollabModel:
        return cls(config)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) ranking scores of (user, item) pairs x (B, 2); not ratings."""
        rows = self.user_rows(x[:, 0])  # (B, d)
        side = self.item_side(x[:, 1])  # (d, B)
        return (rows * side.T).sum(1)

    def check_fit_input(self, x: Tensor, y: Tensor) -> None:
        """Refuse training pairs that do not fit the model's users and items."""
        if x.ndim != 2 or x.shape[1] != 2 or len(x) != len(y):
            raise CollabkitError(
                f"{self.name}: fit_direct needs x (N, 2) user/item indices and y (N,) ratings, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if len(x) == 0:
            raise CollabkitError(f"{self.name}: no training ratings to fit on")
        if int(x.min()) < 0 or int(x[:, 0].max()) >= self.n_users or int(x[:, 1].max()) >= self.n_items:
            raise CollabkitError(
                f"{self.name}: training indices outside the model's {self.n_users} users and "
                f"{self.n_items} items (the model was built for another table)"
            )

    def check_fold_in(self, item_idx: Tensor, ratings: Tensor) -> None:
        if item_idx.ndim != 1 or item_idx.shape != ratings.shape:
            raise CollabkitError(
                f"{self.name}: fold_in needs item indices and ratings of one length, "
                f"got {tuple(item_idx.shape)} and {tuple(ratings.shape)}"
            )
        if len(item_idx) and (int(item_idx.min()) < 0 or int(item_idx.max()) >= self.n_items):
            raise CollabkitError(f"{self.name}: fold_in item indices outside 0..{self.n_items - 1}")


Values = Literal["binary", "rating"]
VALUES_HELP = "interaction values: 1, or the rating"


def values_field(default: Values) -> Any:
    """The `values` setting: a rated cell counts 1, or its rating."""
    return Field(default, description=VALUES_HELP)


def interaction_matrix(
    x: Tensor, y: Tensor, n_users: int, n_items: int, device: torch.device, values: str = "binary"
) -> Tensor:
    """(n_users, n_items) float32: 1 (or the rating, `values="rating"`) where the user rated the
    item in training, else 0."""
    out = torch.zeros(n_users, n_items, device=device)
    vals = torch.ones(len(x), device=device) if values == "binary" else y.to(device).float()
    out[x[:, 0].to(device), x[:, 1].to(device)] = vals
    return out


def interaction_row(
    item_idx: Tensor, ratings: Tensor, n_items: int, device: torch.device, values: str = "binary"
) -> Tensor:
    """(n_items,) float32: a new user's interaction vector, as `interaction_matrix` makes a row."""
    row = torch.zeros(n_items, device=device)
    row[item_idx.to(device)] = 1.0 if values == "binary" else ratings.to(device).float()
    return row


def cosine_similarity(x: Tensor, shrink: float) -> Tensor:
    """(n, n) cosine similarity of the columns of x (m, n), shrunk: x_i.x_j / (|x_i||x_j| + shrink).

    Shrinkage (Koren 2008) pulls the similarity of rarely co-rated pairs towards zero; float64
    keeps the dot products of long columns exact. The diagonal is zero: an item is not its own
    neighbour.
    """
    xd = x.double()
    gram = xd.T @ xd  # (n, n)
    norms = gram.diagonal().sqrt()
    sim = gram / (norms[:, None] * norms[None, :] + shrink).clamp_min(1e-12)
    sim.fill_diagonal_(0.0)
    return sim.float()


def keep_top_k(sim: Tensor, k: int, dim: int = 1) -> Tensor:
    """`sim` with all but the k largest values along `dim` set to 0 (negative similarities dropped)."""
    k = min(k, sim.shape[dim])
    top, at = sim.topk(k, dim=dim)
    out = torch.zeros_like(sim)
    out.scatter_(dim, at, top.clamp_min(0.0))
    return out
