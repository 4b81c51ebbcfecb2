"""Neighbourhood models on the binarised interactions: item kNN and user kNN, cosine with shrinkage.

Both score in one matrix product per block of users and loop over neither users nor items.

- `itemknn` (implicit's ItemItemRecommender / CosineRecommender): every item keeps its k most
  similar items; a user's score for item j sums the similarities of the items they picked to j.
- `userknn`: every user keeps their k most similar users; a user's score for item j sums the
  similarities of those neighbours who picked j. A user's row is computed when asked (one product
  with the interaction matrix), so a new user folds in exactly as a trained one is scored.

Memory: the dense interaction matrix (see `ranking_base`), and for itemknn an (n_items, n_items)
similarity matrix: 11 MB for ML-100k, 55 MB for ML-1M.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, register
from collabkit.models.ranking_base import (
    RankingModel,
    Values,
    cosine_similarity,
    interaction_matrix,
    interaction_row,
    keep_top_k,
    values_field,
)
from collabkit.models.settings import FamilySettings

MAX_NEIGHBOURS = 1_000_000


def neighbours_field(default: int) -> Any:
    return Field(default, ge=1, le=MAX_NEIGHBOURS, description="neighbours kept per item or user")


def shrink_field() -> Any:
    return Field(0.0, ge=0.0, description="cosine shrinkage: x.y / (|x||y| + shrink)")


class KNNSettings(FamilySettings):
    k: int = neighbours_field(20)
    shrink: float = shrink_field()
    values: Values = values_field("binary")


@register("itemknn")
class ItemKNN(RankingModel):
    """Item-item cosine kNN. `-o k=20 -o shrink=0 -o values=binary`: implicit's defaults (K 20,
    plain cosine). On a validation part of ML-100k u1's training rows `-o k=200 -o values=rating`
    ranked best (bench/ranking.py --tune; 0.236 NDCG@10 against 0.219)."""

    interactions: Tensor  # (n_users, n_items) X, binary
    similarity: Tensor  # (n_items, n_items) row i: item i's k neighbours, others 0

    settings: KNNSettings
    Settings = KNNSettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("interactions", torch.zeros(self.n_users, self.n_items))
        self.register_buffer("similarity", torch.zeros(self.n_items, self.n_items))

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        xs = interaction_matrix(
            x, y, self.n_users, self.n_items, self.interactions.device, self.settings.values
        )
        sim = cosine_similarity(xs, self.settings.shrink)  # (n_items, n_items)
        self.interactions.copy_(xs)
        self.similarity.copy_(keep_top_k(sim, self.settings.k, dim=1))

    def user_vectors(self) -> Tensor:
        return self.interactions  # (n_users, n_items)

    def item_vectors(self) -> Tensor:
        return self.interactions.T  # (n_items, n_users): cosine of these is the model's similarity

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.interactions[user_idx]  # (B, n_items)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return self.similarity[:, item_idx]  # (n_items, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_items,) the new user's interaction row (prior, strength unused: nothing to fit)."""
        self.check_fold_in(item_idx, ratings)
        return interaction_row(
            item_idx, ratings, self.n_items, self.interactions.device, self.settings.values
        )


@register("userknn")
class UserKNN(RankingModel):
    """User-user cosine kNN. `-o k=20 -o shrink=0 -o values=binary` by default, as itemknn; on a
    validation part of ML-100k u1's training rows `-o k=50 -o values=rating` ranked best
    (bench/ranking.py --tune; 0.252 NDCG@10 against 0.224)."""

    interactions: Tensor  # (n_users, n_items) X, binary

    settings: KNNSettings
    Settings = KNNSettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("interactions", torch.zeros(self.n_users, self.n_items))

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        self.interactions.copy_(
            interaction_matrix(
                x, y, self.n_users, self.n_items, self.interactions.device, self.settings.values
            )
        )

    def user_vectors(self) -> Tensor:
        return self.interactions  # (n_users, n_items): cosine of these is the model's similarity

    def item_vectors(self) -> Tensor:
        return self.interactions.T  # (n_items, n_users)

    def neighbour_rows(self, vectors: Tensor, exclude: Tensor | None) -> Tensor:
        """(B, n_users) each row's k most similar trained users and their similarity, others 0.

        `vectors` (B, n_items) are interaction rows; `exclude` (B,) the users' own indices (a user
        is not their own neighbour), or None for new users.
        """
        xs = self.interactions
        norms = xs.norm(dim=1)  # (n_users,)
        dots = vectors @ xs.T  # (B, n_users)
        own = vectors.norm(dim=1)  # (B,)
        sim = dots / (own[:, None] * norms[None, :] + self.settings.shrink).clamp_min(1e-12)
        if exclude is not None:
            sim[torch.arange(len(sim), device=sim.device), exclude] = 0.0
        return keep_top_k(sim, self.settings.k, dim=1)

    def user_rows(self, user_idx: Tensor) -> Tensor:
        out = torch.empty(len(user_idx), self.n_users, device=self.interactions.device)
        for start in range(0, len(user_idx), 4096):  # blocks bound the (B, n_users) products' memory
            idx = user_idx[start : start + 4096]
            out[start : start + len(idx)] = self.neighbour_rows(self.interactions[idx], idx)
        return out  # (B, n_users)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return self.interactions[:, item_idx]  # (n_users, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_users,) the new user's neighbours, found as a trained user's are (prior, strength unused)."""
        self.check_fold_in(item_idx, ratings)
        row = interaction_row(item_idx, ratings, self.n_items, self.interactions.device, self.settings.values)
        return self.neighbour_rows(row[None], None)[0]
