"""The most-rated items: the baseline every ranking model must beat, and the honest cold-start list."""

from __future__ import annotations

import torch
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import ModelConfig, register
from collabkit.models.ranking_base import RankingModel
from collabkit.models.settings import FamilySettings


@register("popular")
class Popular(RankingModel):
    """Scores each item by its number of training ratings, the same list for every user.

    A user row is the single number 1 and an item side its count, so the block engine ranks it as
    any other model; items the user rated are left out by the engine as usual.
    """

    counts: Tensor  # (n_items,)
    Settings = FamilySettings  # nothing to set
    has_item_vectors = False
    has_user_vectors = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("counts", torch.zeros(self.n_items))  # (n_items,) training ratings

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        counts = torch.bincount(x[:, 1].cpu(), minlength=self.n_items).float()
        self.counts.copy_(counts.to(self.counts.device))

    def user_vectors(self) -> Tensor:
        raise CollabkitError("model 'popular' gives every user the same list: it has no user vectors")

    def item_vectors(self) -> Tensor:
        raise CollabkitError(
            "model 'popular' knows only how often each item was rated: it has no item vectors to compare; "
            "use ease, itemknn or ials for similar items"
        )

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return torch.ones(len(user_idx), 1, device=self.counts.device)  # (B, 1)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return self.counts[item_idx][None, :]  # (1, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(1,) the same row as everyone's: popularity does not depend on what the user rated."""
        self.check_fold_in(item_idx, ratings)
        return torch.ones(1, device=self.counts.device)
