"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item-item matrix in closed form.

B minimises |X - XB|^2 + l2 |B|^2 with diag(B) = 0, X the binarised (n_users, n_items) training
interactions: with P = (X^T X + l2 I)^-1, B = I - P / diag(P) (each column j divided by P_jj).
A user's scores are their interaction row times B, so a new user folds in exactly: their row is
their rated items, no solve at all.

Memory: B is (n_items, n_items) and X (n_users, n_items), both dense float32, plus a float64
inverse while fitting: 11 MB + 6 MB for ML-100k, 55 MB + 90 MB for ML-1M. Past some 20k items
(ML-20M's 27k: 3 GB for B, 6 GB for the inverse) a dense EASE does not fit a laptop.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, numeric_failure, register
from collabkit.models.ranking_base import (
    RankingModel,
    Values,
    interaction_matrix,
    interaction_row,
    values_field,
)
from collabkit.models.settings import FamilySettings


class EASESettings(FamilySettings):
    l2: float = Field(500.0, gt=0, description="ridge penalty on B")
    dropout: float = Field(0.0, ge=0.0, le=0.95, description="EDLAE dropout share, 0 for plain EASE")
    values: Values = values_field("binary")


@register("ease")
class EASE(RankingModel):
    """Steck's EASE. `-o l2=500`: the ridge penalty (Steck's ML-20M value is 500; on ML-100k u1 a
    validation part of the training rows prefers a similar size, see bench/ranking.py --tune).

    `-o dropout=p` (default 0) adds Steck 2020's emphasised-denoising penalty ("Autoencoders that
    don't overfit towards the identity", EDLAE): l2 + p / (1 - p) * (X^T X)_jj on item j's
    diagonal, so popular items are regularised more.
    """

    interactions: Tensor  # (n_users, n_items) X, binary
    weights: Tensor  # (n_items, n_items) B

    settings: EASESettings
    Settings = EASESettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("interactions", torch.zeros(self.n_users, self.n_items))  # X
        self.register_buffer("weights", torch.zeros(self.n_items, self.n_items))  # B, zero diagonal

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        dev = self.interactions.device
        # (n_users, n_items)
        xs = interaction_matrix(x, y, self.n_users, self.n_items, dev, self.settings.values)
        gram = xs.T.double() @ xs.double()  # (n_items, n_items); float64: a stable inverse
        p = self.settings.dropout
        penalty = self.settings.l2 + p / (1.0 - p) * gram.diagonal()
        gram.diagonal().add_(penalty)
        try:
            inv = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # gram is SPD: half inv's time
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name,
                "the closed-form inverse",
                {"l2": self.settings.l2, "dropout": p},
                "a larger l2 keeps X'X + l2 I invertible",
            ) from None
        b = -inv / inv.diagonal()[None, :]  # B_ij = -P_ij / P_jj
        b.fill_diagonal_(0.0)
        self.interactions.copy_(xs)
        self.weights.copy_(b.float())

    def user_vectors(self) -> Tensor:
        return self.interactions  # (n_users, n_items): cosine = users who picked the same items

    def item_vectors(self) -> Tensor:
        # (n_items, n_users) each item's interaction column: cosine between them is item-item
        # co-occurrence cosine, the classic "people who picked this also picked" neighbourhood
        return self.interactions.T

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.interactions[user_idx]  # (B, n_items)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return self.weights[:, item_idx]  # (n_items, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_items,) the new user's interaction row: EASE needs no solve (prior, strength unused)."""
        self.check_fold_in(item_idx, ratings)
        return interaction_row(
            item_idx, ratings, self.n_items, self.interactions.device, self.settings.values
        )
