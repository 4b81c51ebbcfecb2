"""Neighbourhood models on the binarised interactions: item kNN and user kNN, cosine with shrinkage.

Both score a block of users at once and loop over neither users nor items.

- `itemknn` (implicit's ItemItemRecommender / CosineRecommender): every item keeps its k most
  similar items; a user's score for item j sums the similarities of the items they picked to j.
- `userknn`: every user keeps their k most similar users; a user's score for item j sums the
  similarities of those neighbours who picked j. A user's row is computed when asked (one sparse
  product with the interactions), so a new user folds in exactly as a trained one is scored.

Memory: the interactions are sparse (`models.sparse.CSR`); itemknn saves each item's k neighbours
and their similarities, (n_items x k) twice, never an items x items matrix; the similarities are
found a block of items at a time. A score sums only the stored entries (a user's picks and their
neighbour lists), so scoring costs the ratings touched, not users x items.
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
    cosine_top_k,
    interaction_row,
    min_rating_field,
    neighbour_csr,
    values_field,
)
from collabkit.models.settings import FamilySettings
from collabkit.models.sparse import CSR, blocks

MAX_NEIGHBOURS = 1_000_000
SIM_BUDGET = 2**25  # similarities held at once while neighbours are found (128 MB of float32)


def neighbours_field(default: int) -> Any:
    return Field(default, ge=1, le=MAX_NEIGHBOURS, description="neighbours kept per item or user")


def shrink_field() -> Any:
    return Field(0.0, ge=0.0, description="cosine shrinkage: x.y / (|x||y| + shrink)")


class KNNSettings(FamilySettings):
    k: int = neighbours_field(20)
    shrink: float = shrink_field()
    values: Values = values_field("binary")
    min_rating: float | None = min_rating_field()


def sum_rows(weights: Tensor, table: CSR) -> Tensor:
    """(B, table.n_cols) dense `weights` (B, table.n_rows) times the sparse `table`, summing over
    the non-zero weights only (a user's picks, or their k neighbours)."""
    which, row = torch.nonzero(weights, as_tuple=True)
    return table.weighted_rows(which, row, weights[which, row], len(weights))


@register("itemknn")
class ItemKNN(RankingModel):
    """Item-item cosine kNN. `-o k=20 -o shrink=0 -o values=binary`: implicit's defaults (K 20,
    plain cosine). On a validation part of ML-100k u1's training rows `-o k=200 -o values=rating`
    ranked 0.236 NDCG@10 against 0.219, and `-o k=800 -o values=rating -o min_rating=3` best, 0.240
    (bench/ranking.py --tune; u1 test 0.408 against 0.400)."""

    neighbours: Tensor  # (n_items, k) each item's k most similar items
    similarity: Tensor  # (n_items, k) their cosine similarity (0: no neighbour)

    settings: KNNSettings
    Settings = KNNSettings
    uses_interactions = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k = min(self.settings.k, self.n_items)
        self.register_buffer("neighbours", torch.zeros(self.n_items, k, dtype=torch.long))
        self.register_buffer("similarity", torch.zeros(self.n_items, k))

    @classmethod
    def upgrade_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        shapes = super().upgrade_shapes(shapes)
        sim = shapes.get("similarity")
        if "neighbours" not in shapes and sim is not None and len(sim) == 2 and sim[0] == sim[1]:
            return {**shapes, "neighbours": sim, "similarity": sim}  # k is known only from the data
        return shapes

    @classmethod
    def upgrade_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Earlier itemknn folders saved an (n_items, n_items) matrix with each row's k largest
        similarities kept: made into the neighbour lists it holds."""
        state = super().upgrade_state(state)
        sim = state.get("similarity")
        if "neighbours" in state or sim is None or sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
            return state
        k = max(1, int((sim != 0).sum(1).max()))
        top, at = sim.topk(k, dim=1)
        return {**state, "neighbours": at, "similarity": top}

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        self.attach_training(x, y)
        idx, sims = cosine_top_k(self.interactions.transpose(), self.settings.k, self.settings.shrink)
        self.neighbours.copy_(idx)
        self.similarity.copy_(sims)

    def user_vectors(self) -> CSR:
        return self.interactions  # (n_users, n_items)

    def item_vectors(self) -> CSR:
        return self.interactions.transpose()  # (n_items, n_users): cosine of these is the similarity

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.interactions.dense_rows(user_idx)  # (B, n_items)

    def item_side(self, item_idx: Tensor) -> CSR:
        """The neighbour lists (n_items, m) on the candidate items' columns, prepared once."""
        lists = neighbour_csr(self.neighbours, self.similarity, self.n_items)
        return _columns(lists.transpose(), item_idx.to(self.device)).transpose()

    def score_block(self, rows: Tensor, side: CSR) -> Tensor:
        return sum_rows(rows, side)  # (B, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_items,) the new user's interaction row (prior, strength unused: nothing to fit)."""
        self.check_fold_in(item_idx, ratings)
        s = self.settings
        return interaction_row(item_idx, ratings, self.n_items, self.device, s.values, s.min_rating)


def _keep_top(sim: Tensor, k: int) -> Tensor:
    """`sim` (B, n) with all but each row's k largest set to 0 (negative similarities too)."""
    top, at = sim.topk(min(k, sim.shape[1]), dim=1)
    return torch.zeros_like(sim).scatter_(1, at, top.clamp_min(0.0))


def _columns(by_col: CSR, col_idx: Tensor) -> CSR:
    """The rows `col_idx` of a transposed matrix, repeats allowed: (len(col_idx), n_rows) CSR."""
    which, pos = by_col.entries(col_idx)
    return CSR.from_pairs(which, by_col.indices[pos], by_col.values[pos], len(col_idx), by_col.n_cols)


@register("userknn")
class UserKNN(RankingModel):
    """User-user cosine kNN. `-o k=20 -o shrink=0 -o values=binary` by default, as itemknn; on a
    validation part of ML-100k u1's training rows `-o k=50 -o values=rating` ranked 0.252 NDCG@10
    against 0.224 (bench/ranking.py --tune); adding `-o min_rating=3` 0.253 there, yet on each of
    u1..u5 the thresholded choice tuned on that fold's training rows tests a little lower (u1
    0.439 against 0.442), so the benefit is not clear."""

    settings: KNNSettings
    Settings = KNNSettings
    uses_interactions = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("_device_mark", torch.zeros(0), persistent=False)  # where it runs
        self._item_major: CSR | None = None  # the interactions by item, made when first needed
        self._work: Tensor | None = None  # (n_users,) co-occurrences behind each user's similarities
        self._user_norms: Tensor | None = None  # (n_users,) made with the interactions, when first needed

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        self.attach_training(x, y)

    def attach_training(self, x: Tensor, y: Tensor) -> None:
        super().attach_training(x, y)
        self._item_major, self._work, self._user_norms = None, None, None  # made again from these

    def user_vectors(self) -> CSR:
        return self.interactions  # (n_users, n_items): cosine of these is the model's similarity

    def item_vectors(self) -> CSR:
        return self.interactions.transpose()  # (n_items, n_users)

    def neighbour_rows(self, vectors: Tensor, exclude: Tensor | None) -> Tensor:
        """(B, n_users) each row's k most similar trained users and their similarity, others 0.

        `vectors` (B, n_items) are interaction rows; `exclude` (B,) the users' own indices (a user
        is not their own neighbour), or None for new users.
        """
        xs = self.interactions
        dots = xs.matmul(vectors.T).T  # (B, n_users)
        own = vectors.norm(dim=1)  # (B,)
        sim = dots / (own[:, None] * self._norms()[None, :] + self.settings.shrink).clamp_min(1e-12)
        if exclude is not None:
            sim[torch.arange(len(sim), device=sim.device), exclude.to(sim.device)] = 0.0
        return _keep_top(sim, self.settings.k)

    def neighbours_of_trained(self, user_idx: Tensor) -> Tensor:
        """`neighbour_rows` of trained users, their dot products from co-occurrences (the items they
        share with each other user), so the cost follows the ratings, not users x items."""
        xs, by_item = self.interactions, self._by_item()
        dots = xs.gram_rows(user_idx, by_item)  # (B, n_users)
        own = self._norms()
        sim = dots / (own[user_idx, None] * own[None, :] + self.settings.shrink).clamp_min(1e-12)
        sim[torch.arange(len(sim), device=sim.device), user_idx] = 0.0
        return _keep_top(sim, self.settings.k)

    def _norms(self) -> Tensor:
        """(n_users,) each user's interaction length, made once (every block of neighbours needs it)."""
        if self._user_norms is None:
            self._user_norms = self.interactions.row_norms()
        return self._user_norms

    def _by_item(self) -> CSR:
        if self._item_major is None:
            self._item_major = self.interactions.transpose()
            self._work = self.interactions.gram_work(self._item_major)
        return self._item_major

    def user_rows(self, user_idx: Tensor) -> Tensor:
        user_idx = user_idx.to(self.device)
        self._by_item()
        assert self._work is not None
        out = torch.empty(len(user_idx), self.n_users, device=self.device)
        for start, stop in blocks(self._work[user_idx], SIM_BUDGET, self.n_users):
            out[start:stop] = self.neighbours_of_trained(user_idx[start:stop])
        return out  # (B, n_users)

    def item_side(self, item_idx: Tensor) -> CSR:
        """The interactions (n_users, m) on the candidate items' columns, prepared once."""
        return _columns(self._by_item(), item_idx.to(self.device)).transpose()

    def score_block(self, rows: Tensor, side: CSR) -> Tensor:
        return sum_rows(rows, side)  # (B, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(n_users,) the new user's neighbours, found as a trained user's are (prior, strength unused)."""
        self.check_fold_in(item_idx, ratings)
        s = self.settings
        row = interaction_row(item_idx, ratings, self.n_items, self.device, s.values, s.min_rating)
        return self.neighbour_rows(row[None], None)[0]
