"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item-item matrix in closed form.

B minimises |X - XB|^2 + l2 |B|^2 with diag(B) = 0, X the binarised (n_users, n_items) training
interactions: with P = (X^T X + l2 I)^-1, B = I - P / diag(P) (each column j divided by P_jj).
A user's scores are their interaction row times B, so a new user folds in exactly: their row is
their rated items, no solve at all.

Memory: B is dense (items x items) and fitting it holds the Gram matrix in float64 besides (factored
and inverted in place), about items^2 x 12 bytes at the peak (ML-100k 34 MB, ML-1M 0.16 GB, 59,047
items of ML-25M 42 GB). X stays sparse. Before it allocates, the fit compares that figure with the memory the
machine has and, when it would not fit, refuses with the figure and the way out: `-o max_items=N`
keeps the N most-rated items (B is then N x N; the other items are never recommended, and `train`
says how many were left out).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import MAX_TABLE, ModelConfig, numeric_failure, register
from collabkit.models.ranking_base import (
    RankingModel,
    Values,
    available_memory,
    gb,
    interaction_row,
    min_rating_field,
    values_field,
)
from collabkit.models.settings import FamilySettings
from collabkit.models.sparse import CSR, blocks, mostly_zero_times

BYTES_PER_CELL = 12  # fitting: the Gram matrix, inverted in place (float64), then B (float32)
GRAM_BUDGET = 2**25  # co-occurrences (and Gram values) summed at once while X^T X is built


def max_items_field() -> Any:
    """The `max_items` setting: EASE's item cap, where items x items does not fit in memory."""
    return Field(None, ge=2, le=MAX_TABLE, description="keep only the N most-rated items (B is N x N)")


class EASESettings(FamilySettings):
    l2: float = Field(500.0, gt=0, description="ridge penalty on B")
    dropout: float = Field(0.0, ge=0.0, le=0.95, description="EDLAE dropout share, 0 for plain EASE")
    values: Values = values_field("binary")
    min_rating: float | None = min_rating_field()
    max_items: int | None = max_items_field()


def ease_memory(n_items: int) -> int:
    """Bytes EASE's fit needs at its peak for `n_items` items."""
    return BYTES_PER_CELL * n_items * n_items


@register("ease")
class EASE(RankingModel):
    """Steck's EASE. `-o l2=500`: the ridge penalty (Steck's ML-20M value is 500, and the best of
    100-1000 on a validation part of ML-100k u1's training rows counting every rating: 0.261
    NDCG@10, bench/ranking.py --tune). Counting only ratings of 4 or more ranks better there:
    `-o min_rating=4 -o l2=250` 0.273 (u1 test 0.466 against the defaults' 0.448). min_rating is
    not the default because it is on the table's rating scale: above every rating (a table of 1s,
    clicks) it would leave nothing to learn from.

    `-o dropout=p` (default 0) adds Steck 2020's emphasised-denoising penalty ("Autoencoders that
    don't overfit towards the identity", EDLAE): l2 + p / (1 - p) * (X^T X)_jj on item j's
    diagonal, so popular items are regularised more. `-o max_items=N` keeps the N most-rated items
    where items x items does not fit in memory.
    """

    weights: Tensor  # (n_kept, n_kept) B, zero diagonal

    settings: EASESettings
    Settings = EASESettings
    uses_interactions = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        cap = self.settings.max_items
        self.n_kept = self.n_items if cap is None else min(cap, self.n_items)
        self.register_buffer("weights", torch.zeros(self.n_kept, self.n_kept))
        self._kept: Tensor | None = None  # (n_kept,) item indices, set with the interactions
        self._pos: Tensor | None = None  # (n_items,) each item's position among them, -1 if left out
        self._full: CSR | None = None  # X on every item: the item vectors

    # -- interactions: X on the kept items ----------------------------------------------------------
    def make_interactions(self, x: Tensor, y: Tensor) -> CSR:
        full = super().make_interactions(x, y)
        counts = torch.bincount(x[:, 1], minlength=self.n_items)
        # the most-rated items, ties to the lower index; kept in index order
        order = torch.argsort(-counts, stable=True)[: self.n_kept]
        kept = order.sort().values
        pos = torch.full((self.n_items,), -1, dtype=torch.long, device=x.device)
        pos[kept] = torch.arange(len(kept), device=x.device)
        self._kept, self._pos = kept, pos
        self._full = full  # every item's column: the item vectors (co-rating cosine)
        return full if self.n_kept == self.n_items else full.keep_columns(pos, self.n_kept)

    def scored_items(self) -> Tensor | None:
        if self.n_kept == self.n_items:
            return None
        self.interactions  # noqa: B018  (refuses before training)
        assert self._pos is not None
        return self._pos.cpu() >= 0

    def left_out(self) -> int:
        """How many items the item cap leaves out (0 without one)."""
        return self.n_items - self.n_kept

    def check_memory(self) -> None:
        """Refuse, before allocating, a fit that would not fit in this machine's memory."""
        need, have = ease_memory(self.n_kept), available_memory()
        if have and need > have:
            fits = int((0.8 * have / BYTES_PER_CELL) ** 0.5) // 1000 * 1000 or 1000
            raise CollabkitError(
                f"ease: {self.n_kept:,} items need {gb(need)} to fit (items^2 x {BYTES_PER_CELL} bytes: "
                f"the Gram matrix in float64, inverted in place, then B) and {gb(have)} is available; "
                f"keep the most-rated items with -o max_items={fits} (about {gb(ease_memory(fits))})"
            )

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        self.check_memory()
        self.attach_training(x, y)
        xs = self.interactions  # (n_users, n_kept)
        xt = xs.transpose()  # (n_kept, n_users)
        n = self.n_kept
        gram = torch.empty(n, n, dtype=torch.float64, device=self.device)  # float64: a stable inverse
        for start, stop in blocks(xt.gram_work(xs), GRAM_BUDGET, n):  # X^T X from co-occurrences
            rows = torch.arange(start, stop, device=self.device)
            gram[start:stop] = xt.gram_rows(rows, xs).double()
        p = self.settings.dropout
        penalty = self.settings.l2 + p / (1.0 - p) * gram.diagonal()
        gram.diagonal().add_(penalty)
        # gram is symmetric, so its transpose is the same matrix in LAPACK's column-major layout:
        # factored and inverted in place there, no copy (items^2 x 8 bytes less at the peak)
        lapack = gram.T
        try:
            torch.linalg.cholesky(lapack, out=lapack)
            torch.cholesky_inverse(lapack, out=lapack)  # SPD: half a general inverse's time
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name,
                "the closed-form inverse",
                {"l2": self.settings.l2, "dropout": p},
                "a larger l2 keeps X'X + l2 I invertible",
            ) from None
        inv = gram  # P = (X^T X + l2 I)^-1, symmetric
        inv.div_(-inv.diagonal()[None, :].clone())  # B_ij = -P_ij / P_jj
        inv.fill_diagonal_(0.0)
        self.weights.copy_(inv)

    def user_vectors(self) -> CSR:
        return self.interactions  # users who picked the same (kept) items point the same way

    def item_vectors(self) -> CSR:
        # (n_items, n_users) each item's interaction column: cosine between them is item-item
        # co-occurrence cosine, the classic "people who picked this also picked" neighbourhood
        self.interactions  # noqa: B018  (refuses before training)
        assert self._full is not None
        return self._full.transpose()

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.interactions.dense_rows(user_idx)  # (B, n_kept)

    def score_block(self, rows: Tensor, side: Tensor) -> Tensor:
        return mostly_zero_times(rows, side)  # interaction rows are mostly zeros

    def item_side(self, item_idx: Tensor) -> Tensor:
        self.interactions  # noqa: B018  (refuses before training)
        assert self._pos is not None
        pos = self._pos[item_idx.to(self.device)]
        side = torch.zeros(self.n_kept, len(pos), device=self.device)  # a left-out item scores 0
        ok = pos >= 0
        side[:, ok] = self.weights[:, pos[ok]]
        return side  # (n_kept, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_kept,) the new user's interaction row: EASE needs no solve (prior, strength unused)."""
        self.check_fold_in(item_idx, ratings)
        s = self.settings
        row = interaction_row(item_idx, ratings, self.n_items, self.device, s.values, s.min_rating)
        self.interactions  # noqa: B018  (refuses before training)
        assert self._kept is not None
        return row[self._kept]
