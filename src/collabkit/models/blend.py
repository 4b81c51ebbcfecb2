"""`easeknn`: EASE and user kNN blended, each user's two score vectors scaled to the same size.

EASE learns item-to-item weights from co-occurrence over the whole table; user kNN on the ratings
matrix draws on a handful of like-minded users and on how much they liked what they rated. Their
mistakes differ, so a blend ranks better than either (on a validation part of ML-100k u1's training
rows, see bench/ranking.py --tune). For user u:

    score(u, j) = (x_u B)_j / max|x_u B| + weight * (s_u R)_j / max|s_u R|

with x_u the user's binary row, B EASE's weights, s_u their k-neighbour similarity row and R the
ratings matrix. The per-user scales go into the user row [x_u / scale, weight * s_u / scale], and
a block's scores are EASE's product plus user kNN's sparse sum.

Memory: EASE's and user kNN's (see those files): X and R sparse, B (items x items, or N x N under
`max_items`).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, register
from collabkit.models.ease import EASE, EASESettings, max_items_field
from collabkit.models.knn import KNNSettings, UserKNN, neighbours_field, shrink_field, sum_rows
from collabkit.models.ranking_base import RankingModel, min_rating_field
from collabkit.models.settings import FamilySettings
from collabkit.models.sparse import CSR, mostly_zero_times


class EASEKNNSettings(FamilySettings):
    l2: float = Field(500.0, gt=0, description="EASE's ridge penalty")
    dropout: float = Field(0.0, ge=0.0, le=0.95, description="EASE's EDLAE dropout")
    k: int = neighbours_field(30)
    shrink: float = shrink_field()
    weight: float = Field(0.5, ge=0, description="weight of the user kNN part (0: EASE alone)")
    min_rating: float | None = min_rating_field()
    max_items: int | None = max_items_field()


@register("easeknn")
class EASEUserKNN(RankingModel):
    """EASE (binary) + user kNN (on ratings), blended per user. Settings: EASE's `l2`, `dropout`;
    user kNN's `k`, `shrink`; `weight` of the kNN part. Defaults: EASE's l2 500 (its own tuned
    value); k 30 and weight 0.5 chosen on a validation part of ML-100k u1's training rows
    (bench/ranking.py --tune: 0.266 NDCG@10 against EASE alone's 0.261; l2 250 ties, 0.2666 against
    0.2662). Counting only ratings of 4 or more, `-o min_rating=4 -o l2=250 -o k=50 -o weight=0.25`
    ranks best there, 0.274 (u1 test 0.465 against 0.463); not the default, as for EASE: the
    threshold is on the table's rating scale."""

    settings: EASEKNNSettings
    Settings = EASEKNNSettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        s, n_users, n_items = self.settings, config.n_users, config.n_items
        ease = EASESettings(
            l2=s.l2, dropout=s.dropout, values="binary", min_rating=s.min_rating, max_items=s.max_items
        )
        self.ease = EASE(ModelConfig("ease", n_users, n_items, ease))
        knn = KNNSettings(k=s.k, shrink=s.shrink, values="rating", min_rating=s.min_rating)
        self.knn = UserKNN(ModelConfig("userknn", n_users, n_items, knn))

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        self.ease.fit_direct(x, y)
        self.knn.fit_direct(x, y)

    def attach_training(self, x: Tensor, y: Tensor) -> None:
        self.ease.attach_training(x, y)
        self.knn.attach_training(x, y)

    def scored_items(self) -> Tensor | None:
        return self.ease.scored_items()

    def user_vectors(self) -> CSR:
        return self.ease.user_vectors()  # (n_users, n_kept) binary rows

    def item_vectors(self) -> CSR:
        return self.ease.item_vectors()  # (n_items, n_users) interaction columns

    def _blend_rows(self, binary: Tensor, neighbours: Tensor) -> Tensor:
        """(B, n_kept + n_users) [x_u / scale, weight * s_u / scale]: see the module docstring."""
        e_scores = mostly_zero_times(binary, self.ease.weights)  # (B, n_kept)
        e_scale = e_scores.abs().amax(1, keepdim=True).clamp_min(1e-12)  # (B, 1)
        k_scores = sum_rows(neighbours, self.knn.interactions)  # (B, n_items)
        k_scale = k_scores.abs().amax(1, keepdim=True).clamp_min(1e-12)
        return torch.cat([binary / e_scale, self.settings.weight * neighbours / k_scale], 1)

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self._blend_rows(self.ease.user_rows(user_idx), self.knn.user_rows(user_idx))

    def item_side(self, item_idx: Tensor) -> tuple[Tensor, CSR]:
        return self.ease.item_side(item_idx), self.knn.item_side(item_idx)

    def score_block(self, rows: Tensor, side: tuple[Tensor, CSR]) -> Tensor:
        n = self.ease.n_kept
        return self.ease.score_block(rows[:, :n], side[0]) + self.knn.score_block(rows[:, n:], side[1])

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_kept + n_users,) the new user's row from both parts' exact fold-ins (no solve)."""
        binary = self.ease.fold_in(item_idx, ratings, prior, strength)
        neighbours = self.knn.fold_in(item_idx, ratings, prior, strength)
        return self._blend_rows(binary[None], neighbours[None])[0]
