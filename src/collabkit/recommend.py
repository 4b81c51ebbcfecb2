"""A trained model behind raw ids: predictions, top-N recommendations, similar items, new users.

Scores for many users come from matrix products over every item at once, a block of users at a
time (the block is sized so one block's scores fit in `score_budget` float32 values), followed by
`torch.topk`; there is no Python loop over items, so every user of ML-25M can be served.

Which items can be recommended: an item needs at least `min_count` training ratings (default 1).
The vocabulary also holds items seen only in validation rows; the model learned nothing about
them, so with the default they are never recommended. A new item (not in the model at all) cannot
be recommended until the model is retrained; `predict(..., unknown="mean")` scores it at the
global mean rating. A new user is served by `fold_in` / `recommend_for_ratings`, a user with no
ratings at all by `popular`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from collabkit.data.vocab import UnknownPolicy as VocabPolicy
from collabkit.errors import CollabkitError, UnknownIdError
from collabkit.models import (
    DotProduct,
    EmbeddingDotBias,
    EmbeddingNN,
    RatingClassifier,
    bias_tables,
    factor_tables,
    predict_ratings,
    sigmoid_range,
)
from collabkit.persist import SavedModel, load_model

UnknownPolicy = Literal["error", "mean"]
UnknownUserPolicy = Literal["error", "popular"]

DEFAULT_SCORE_BUDGET = 2**24  # float32 values per scoring block (64 MiB)
GATHER_ROWS = 2**16  # users whose vectors are gathered at once by recommend_many


@dataclass
class Recommendations:
    """A ranked list of items for one user (or one query), best first, at most n long.

    `scores` are predicted ratings for `recommend`, `popular` and `recommend_for_ratings`, and
    cosine similarities for `similar_items`.
    """

    items: list[Any]
    titles: list[str]
    scores: np.ndarray  # (len,) float32
    user: Any = None  # the raw user id; None for a new user, a popularity list or a similarity query

    def __len__(self) -> int:
        return len(self.items)

    def to_frame(self) -> pd.DataFrame:
        """One row per item: rank (1-based), item, title, score."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(self) + 1),
                "item": self.items,
                "title": self.titles,
                "score": self.scores,
            }
        )

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: rank, item, title, score."""
        return [
            {"rank": r + 1, "item": _plain(i), "title": t, "score": float(s)}
            for r, (i, t, s) in enumerate(zip(self.items, self.titles, self.scores, strict=True))
        ]


@dataclass
class BatchRecommendations:
    """Top-n items for many users as arrays, one row per user, best first.

    A row with fewer than n candidates is padded with item index -1, item None and score NaN.
    """

    users: list[Any]
    item_idx: np.ndarray  # (n_users, n) int64 item indices, -1 for padding
    items: np.ndarray  # (n_users, n) object raw item ids, None for padding
    titles: np.ndarray  # (n_users, n) object
    scores: np.ndarray  # (n_users, n) float32 predicted ratings, NaN for padding

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, row: int) -> Recommendations:
        keep = self.item_idx[row] >= 0
        return Recommendations(
            items=list(self.items[row][keep]),
            titles=[str(t) for t in self.titles[row][keep]],
            scores=self.scores[row][keep],
            user=self.users[row],
        )

    def to_frame(self) -> pd.DataFrame:
        """A long table: user, rank (1-based), item, title, score; padding left out."""
        n_users, n = self.item_idx.shape
        keep = (self.item_idx >= 0).reshape(-1)
        users = np.repeat(np.asarray(self.users, dtype=object), n)
        ranks = np.tile(np.arange(1, n + 1), n_users)
        return pd.DataFrame(
            {
                "user": users[keep],
                "rank": ranks[keep],
                "item": self.items.reshape(-1)[keep],
                "title": self.titles.reshape(-1)[keep],
                "score": self.scores.reshape(-1)[keep],
            }
        )


@dataclass
class SimilarUsers:
    """Users nearest a user by cosine similarity of their factors, nearest first."""

    users: list[Any]
    scores: np.ndarray  # (len,) cosine similarities

    def __len__(self) -> int:
        return len(self.users)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"rank": np.arange(1, len(self) + 1), "user": self.users, "score": self.scores})


@dataclass
class NewUser:
    """A user folded into a trained model: a factor vector (and bias) fitted to their ratings.

    The item side of the model is unchanged; `Recommender.recommend_for_ratings` and
    `Recommender.predict_new` use it like a trained user.
    """

    vector: Tensor  # (n_factors,) or, for the deep models, the user embedding width
    bias: float | None  # None for models without a user bias
    rated: dict[Any, float]  # raw item id -> rating, the ratings used
    rated_idx: np.ndarray  # item indices of `rated`, excluded from recommendations
    ignored: list[Any] = field(default_factory=list)  # rated items the model has no training data for


def cosine_neighbours(
    table: Tensor, query_idx: Sequence[int], n: int, candidates: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the n rows of `table` nearest the query rows, best first.

    Several query rows are combined as the mean of their normalised vectors; the query rows are
    never returned. `candidates` is an optional (N,) bool mask of rows allowed in the answer.
    """
    t = table.detach().float()
    unit = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, k)
    q = torch.as_tensor(list(query_idx), dtype=torch.long)
    centre = unit[q].mean(0)
    centre = centre / centre.norm().clamp_min(1e-12)
    sims = unit @ centre  # (N,)
    allowed = torch.ones(len(t), dtype=torch.bool) if candidates is None else candidates.clone()
    allowed[q] = False
    sims = sims.masked_fill(~allowed, float("-inf"))
    take = min(int(n), int(allowed.sum()))
    top, idx = sims.topk(take)
    return idx.numpy(), top.numpy()


class Recommender:
    """Raw user and item ids in, answers out. Build it with `Recommender.load(folder)`.

    Items can be named by raw id or, where the model knows titles, by title. It keeps ready-made
    copies of the item side for speed: after training the model further, make a new Recommender.
    `score_budget` is the number of float32 scores computed at once (users x items, times the
    hidden width for the deep models); lower it to save memory, raise it for speed.
    """

    def __init__(self, saved: SavedModel, score_budget: int = DEFAULT_SCORE_BUDGET) -> None:
        self.saved = saved
        self.model = saved.model.eval()
        self.users, self.items = saved.users, saved.items
        self.global_mean = float(saved.train_y.mean()) if len(saved.train_y) else 0.0
        self.score_budget = int(score_budget)
        self._title_to_item = {str(t): i for i, t in saved.item_titles.items()}
        self._title_casefold: dict[str, Any] = {}
        for t, i in self._title_to_item.items():
            self._title_casefold.setdefault(t.casefold(), i)
        self._seen: tuple[Tensor, Tensor, Tensor] | None = None  # (col_of, indptr, columns)
        self._scoring: tuple[Tensor, Any] | None = None  # (candidates, what _scoring_for made)
        self._item_pre: Tensor | None = None
        self._mean: tuple[Tensor, Tensor | None] | None = None
        self._dev = _device(self.model)
        if isinstance(self.model, (EmbeddingDotBias, DotProduct)):
            self._kind = "dot"
        elif isinstance(self.model, EmbeddingNN):
            self._kind = "net"
        else:
            raise CollabkitError(f"{type(self.model).__name__} is not a built-in collabkit model")

    # computed on first use, so that a Recommender made only to parse ids stays cheap
    @cached_property
    def item_counts(self) -> Tensor:
        """(n_items,) training ratings of each item index."""
        return self.saved.item_counts().cpu()

    @cached_property
    def user_counts(self) -> Tensor:
        """(n_users,) training ratings of each user index."""
        return self.saved.user_counts().cpu()

    @cached_property
    def _item_ids(self) -> np.ndarray:
        ids = np.empty(len(self.items), dtype=object)
        ids[:] = list(self.items)
        ids[0] = None
        return ids

    @cached_property
    def _item_titles(self) -> np.ndarray:
        return np.array([self.title(i) for i in self.items], dtype=object)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Recommender:
        """Load a model folder written by `collabkit train` or `Learner.export`."""
        return cls(load_model(path, device=device))

    # -- ids -------------------------------------------------------------------------------
    def parse_user(self, text: Any) -> Any:
        """The raw user id a command-line string stands for (ids may be numbers)."""
        return _match(text, self.users, {}, {}, "user")

    def parse_item(self, text: Any) -> Any:
        """The raw item id a string stands for: an id, or a title the model knows (any case)."""
        return _match(text, self.items, self._title_to_item, self._title_casefold, "item")

    def title(self, item: Any) -> str:
        """The item's title where the model knows one, else its id as text."""
        return str(self.saved.item_titles.get(item, item))

    # -- predictions -----------------------------------------------------------------------
    @torch.inference_mode()
    def predict(
        self, users: Sequence[Any], items: Sequence[Any], unknown: UnknownPolicy = "error"
    ) -> np.ndarray:
        """Predicted ratings for the pairs (users[k], items[k]).

        `unknown="error"` raises for an id the model never saw; `"mean"` answers the training mean
        rating for such a pair (Surprise's fallback), since the model has nothing to say about it.
        This is also the answer for a new item: it has no factors until the model is retrained.
        """
        users, items = list(users), list(items)
        if len(users) != len(items):
            raise CollabkitError(f"users and items must pair up: {len(users)} users, {len(items)} items")
        policy: VocabPolicy = "error" if unknown == "error" else "na"
        u = self.users.encode(users, policy)
        i = self.items.encode(items, policy)
        x = torch.from_numpy(np.stack([u, i], axis=1)).to(_device(self.model))
        preds = predict_ratings(self.model, x).float().cpu().numpy() if len(x) else np.zeros(0, np.float32)
        if unknown == "mean":
            preds[(u == 0) | (i == 0)] = self.global_mean
        return preds

    # -- top-N for known users -------------------------------------------------------------
    def recommend(
        self,
        user: Any,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        min_count: int = 1,
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        unknown: UnknownUserPolicy = "error",
    ) -> Recommendations:
        """The n items with the highest predicted rating for `user`, best first.

        Args:
            exclude_seen: leave out the items the user rated in training (implicit's
                `filter_already_liked_items`).
            min_count: only items with at least this many training ratings (1 leaves out items
                the model never trained on).
            items: an allow-list of raw item ids to rank among; `exclude`: items never to return.
            unknown: for a user the model has no training ratings for, "error" raises
                UnknownIdError, "popular" answers `popular(n, min_count)`.
        """
        return self.recommend_many(
            [user],
            n,
            exclude_seen=exclude_seen,
            min_count=min_count,
            items=items,
            exclude=exclude,
            unknown=unknown,
        )[0]

    @torch.inference_mode()
    def recommend_many(
        self,
        users: Sequence[Any],
        n: int = 10,
        *,
        exclude_seen: bool = True,
        min_count: int = 1,
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        unknown: UnknownUserPolicy = "error",
    ) -> BatchRecommendations:
        """`recommend` for many users at once (batch-first): arrays of shape (n_users, n).

        Row k answers exactly what `recommend(users[k], ...)` answers; the users are scored in
        blocks against every candidate item with one matrix product and one `topk` per block.
        """
        users = list(users)
        n = _check_n(n)
        cand = self._candidates(min_count, items, exclude)
        u_idx = self._user_indices(users, unknown)
        known = u_idx > 0
        out_idx = np.full((len(users), n), -1, dtype=np.int64)
        out_sc = np.full((len(users), n), np.nan, dtype=np.float32)
        rows = np.flatnonzero(known)
        for start in range(0, len(rows), GATHER_ROWS):  # user vectors gathered a slice at a time
            part = rows[start : start + GATHER_ROWS]
            ku = torch.from_numpy(u_idx[part])
            vecs, bias = self._user_rows(ku)
            seen = (lambda sl, col_of, ku=ku: self._seen_pairs(ku[sl], col_of)) if exclude_seen else None
            out_idx[part], out_sc[part] = self._rank(vecs, bias, n, cand, seen)
        if not known.all():  # unknown="popular": the average user's list
            idx, sc = self._rank(*self._mean_user(), n, cand, None)
            out_idx[~known], out_sc[~known] = idx[0], sc[0]
        return self._batch(users, out_idx, out_sc)

    # -- users with no or few ratings ------------------------------------------------------
    @torch.inference_mode()
    def popular(
        self, n: int = 10, *, min_count: int = 1, exclude: Sequence[Any] | None = None
    ) -> Recommendations:
        """The n items an average user is predicted to rate highest: the list for a user with no ratings.

        The average user is the mean factor vector (and mean bias) of the users with training
        ratings, so the list follows the model's item biases and factors rather than raw counts
        or raw means; raise `min_count` to leave out items with few ratings.
        """
        n = _check_n(n)
        cand = self._candidates(min_count, None, exclude)
        idx, sc = self._rank(*self._mean_user(), n, cand, None)
        return self._batch([None], idx, sc)[0]

    def fold_in(
        self,
        ratings: Mapping[Any, float],
        *,
        reg: float | None = None,
        steps: int = 50,
        lr: float = 0.05,
    ) -> NewUser:
        """A new user's factors fitted to `ratings` (raw item id or title -> rating), item side fixed.

        No retraining, milliseconds. For dot and dotbias: one regularised least-squares solve in
        the model's pre-sigmoid space (ratings mapped through the inverse of sigmoid_range, clipped
        into the open range, minus the item biases) for [vector, bias], shrunk towards the average
        user with ridge weight `reg` (default 10: the best held-out RMSE of 0.1..100 on ML-100k u1).
        For nn and classifier: `steps` Adam steps on a user embedding that starts at the average
        user's, with the network and items frozen, on the model's own loss (MSE, or cross-entropy
        for the classifier) plus `reg` (default 0.1) times the squared distance from the average
        user. With no ratings the new user is the average user, whose list is `popular`. Rated
        items the model has no training ratings for are left out and listed in `ignored`.
        """
        rated: dict[Any, float] = {}
        for key, value in ratings.items():
            item = self.parse_item(key)
            try:
                r = float(value)
            except (TypeError, ValueError):
                raise CollabkitError(f"rating {value!r} for item {key!r} is not a number") from None
            if not np.isfinite(r):
                raise CollabkitError(f"rating {value!r} for item {key!r} is not a finite number")
            rated[item] = r
        idx = self.items.encode(list(rated), "error")
        used = self.item_counts[torch.from_numpy(idx)].numpy() > 0 if len(idx) else np.zeros(0, bool)
        ignored = [item for item, ok in zip(rated, used, strict=True) if not ok]
        fit_idx = torch.from_numpy(idx[used])
        y = torch.tensor([r for r, ok in zip(rated.values(), used, strict=True) if ok], dtype=torch.float32)
        mean_vec, mean_bias = self._mean_user()
        with _one_thread(self._dev):
            if len(fit_idx) == 0:
                vec, bias = mean_vec[0], None if mean_bias is None else float(mean_bias[0])
            elif self._kind == "dot":
                vec, bias = self._fold_in_dot(
                    fit_idx, y, mean_vec[0], mean_bias, 10.0 if reg is None else reg
                )
            else:
                vec, bias = self._fold_in_net(fit_idx, y, mean_vec[0], 0.1 if reg is None else reg, steps, lr)
        return NewUser(vec.detach().clone(), bias, rated, idx, ignored)

    def recommend_for_ratings(
        self,
        ratings: Mapping[Any, float] | NewUser,
        n: int = 10,
        *,
        min_count: int = 1,
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
    ) -> Recommendations:
        """Recommendations for a new user given only their ratings (cold start), rated items left out."""
        n = _check_n(n)
        new = ratings if isinstance(ratings, NewUser) else self.fold_in(ratings)
        with torch.inference_mode():
            cand = self._candidates(min_count, items, exclude)
            cand[torch.from_numpy(new.rated_idx)] = False
            vecs, bias = self._new_rows(new)
            idx, sc = self._rank(vecs, bias, n, cand, None)
        return self._batch([None], idx, sc)[0]

    @torch.inference_mode()
    def predict_new(self, new: NewUser, items: Sequence[Any]) -> np.ndarray:
        """Predicted ratings of a folded-in user for raw item ids (or titles)."""
        idx = self.items.encode([self.parse_item(i) for i in items], "error")
        vecs, bias = self._new_rows(new)
        raw = self._raw_scores(vecs, bias, torch.from_numpy(idx))
        return self._finish(raw)[0].float().cpu().numpy()

    # -- similarity ------------------------------------------------------------------------
    @torch.inference_mode()
    def similar_items(self, items: Any, n: int = 10, *, min_count: int = 1) -> Recommendations:
        """The n items whose factors point most nearly the same way (cosine similarity).

        `items` is one raw id or title, or a list of them; a list is combined as the mean of the
        normalised item vectors, and the query items are never returned.
        """
        n = _check_n(n)
        query = list(items) if isinstance(items, (list, tuple, set, np.ndarray, pd.Series)) else [items]
        if not query:
            raise CollabkitError("similar_items needs at least one item")
        q_idx = self.items.encode([self.parse_item(i) for i in query], "error")
        _, table = factor_tables(self.model)
        cand = self._candidates(min_count, None, None)
        idx, sims = cosine_neighbours(table.cpu(), q_idx.tolist(), n, cand)
        return Recommendations(
            items=[self.items[int(i)] for i in idx],
            titles=[str(self._item_titles[int(i)]) for i in idx],
            scores=sims.astype(np.float32),
        )

    @torch.inference_mode()
    def similar_users(self, user: Any, n: int = 10, *, min_count: int = 1) -> SimilarUsers:
        """The n users whose factors point most nearly the same way as `user`'s (cosine similarity)."""
        n = _check_n(n)
        u_idx = self._user_indices([user], "error")
        table, _ = factor_tables(self.model)
        cand = self.user_counts >= max(int(min_count), 0)
        cand[0] = False
        idx, sims = cosine_neighbours(table.cpu(), u_idx.tolist(), n, cand)
        return SimilarUsers(users=[self.users[int(i)] for i in idx], scores=sims.astype(np.float32))

    # -- internals -------------------------------------------------------------------------
    def _user_indices(self, users: list[Any], unknown: UnknownUserPolicy) -> np.ndarray:
        """Indices of users the model trained on; 0 for the others under unknown="popular"."""
        if unknown not in ("error", "popular"):
            raise CollabkitError(f"unknown={unknown!r}; expected 'error' or 'popular'")
        idx = self.users.encode(users, "na")
        counts = self.user_counts[torch.from_numpy(idx)].numpy() if len(idx) else np.zeros(0)
        cold = (idx == 0) | (counts == 0)
        if cold.any() and unknown == "error":
            bad = users[int(np.flatnonzero(cold)[0])]
            what = "is not in the model's vocabulary" if bad not in self.users else "has no training ratings"
            raise UnknownIdError(
                f"user {bad!r} {what}; use popular() for a user with no ratings, "
                "fold_in/recommend_for_ratings for a new user with some"
            )
        idx[cold] = 0
        return idx

    def _candidates(
        self, min_count: int, items: Sequence[Any] | None, exclude: Sequence[Any] | None
    ) -> Tensor:
        """(n_items,) bool: the items that may be returned."""
        if int(min_count) < 0:
            raise CollabkitError(f"min_count must be 0 or more, got {min_count}")
        cand = self.item_counts >= int(min_count)
        if items is not None:
            allow = torch.zeros_like(cand)
            allow[torch.from_numpy(self.items.encode([self.parse_item(i) for i in items], "error"))] = True
            cand &= allow
        if exclude is not None and len(exclude):
            cand[torch.from_numpy(self.items.encode([self.parse_item(i) for i in exclude], "error"))] = False
        cand[0] = False  # `#na#` is never an answer
        return cand

    def _seen_pairs(self, u_idx: Tensor, col_of: Tensor) -> tuple[Tensor, Tensor]:
        """(rows, candidate columns) of the training ratings of a block of users, for masking.

        `col_of` maps an item index to its column among the candidates (-1: not a candidate). The
        user -> rated columns lists are built once per candidate set and reused for every block.
        """
        if self._seen is None or not torch.equal(self._seen[0], col_of.cpu()):
            x = self.saved.train_x.cpu()
            pos = col_of.cpu()[x[:, 1]]
            keep = pos >= 0
            users, pos = x[keep, 0], pos[keep]
            order = torch.argsort(users, stable=True)
            counts = torch.bincount(users, minlength=len(self.users))
            indptr = torch.zeros(len(self.users) + 1, dtype=torch.long)
            indptr[1:] = torch.cumsum(counts, 0)
            self._seen = (col_of.cpu(), indptr, pos[order].contiguous())
        _, indptr, seen_cols = self._seen
        starts, lengths = indptr[u_idx], indptr[u_idx + 1] - indptr[u_idx]
        rows = torch.repeat_interleave(torch.arange(len(u_idx)), lengths)
        # position of each pair in seen_cols: its user's start plus its rank within the user
        shift = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
        return rows, seen_cols[shift + torch.arange(len(shift))]

    def _user_rows(self, u_idx: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, k) user vectors and (B,) biases (None without biases) of user indices."""
        users, _ = factor_tables(self.model)
        biases = bias_tables(self.model)
        u_idx = u_idx.to(self._dev)
        return users[u_idx].float(), None if biases is None else biases[0][u_idx].float()

    def _mean_user(self) -> tuple[Tensor, Tensor | None]:
        """The average trained user: (1, k) mean vector and (1,) mean bias of users with ratings."""
        if self._mean is None:
            trained = torch.nonzero(self.user_counts > 0).squeeze(1)
            if len(trained) == 0:
                trained = torch.arange(1, len(self.users))
            vecs, bias = self._user_rows(trained)
            self._mean = (vecs.mean(0, keepdim=True), None if bias is None else bias.mean(0, keepdim=True))
        return self._mean

    def _new_rows(self, new: NewUser) -> tuple[Tensor, Tensor | None]:
        vec = new.vector.float().reshape(1, -1).to(self._dev)
        return vec, None if new.bias is None else torch.tensor([new.bias], device=self._dev)

    def _block_rows(self) -> int:
        """Users per scoring block so that one block stays within `score_budget` values."""
        width = 1 if self._kind == "dot" else self._hidden_width()
        return max(1, self.score_budget // max(1, len(self.items) * width))

    def _rank(
        self,
        vecs: Tensor,
        bias: Tensor | None,
        n: int,
        cand: Tensor,
        seen: Callable[[slice, Tensor], tuple[Tensor, Tensor]] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item indices (-1 padded) and predicted ratings (NaN padded) for user rows."""
        n_rows = len(vecs)
        out_idx = np.full((n_rows, n), -1, dtype=np.int64)
        out_sc = np.full((n_rows, n), np.nan, dtype=np.float32)
        take = min(n, int(cand.sum()))
        if take == 0:
            return out_idx, out_sc
        block = self._block_rows()
        cols, col_of, score_block = self._scoring_for(cand)
        for start in range(0, n_rows, block):
            sl = slice(start, min(start + block, n_rows))
            raw = score_block(vecs[sl], None if bias is None else bias[sl])  # (B, n candidates)
            if seen is not None:
                rows, pos = seen(sl, col_of)
                raw[rows.to(self._dev), pos.to(self._dev)] = float("-inf")
            top, at = raw.topk(take, dim=1)  # sorted, best first
            idx = cols[at].cpu()
            top = top.float().cpu()
            valid = torch.isfinite(top)
            scores = self._finish(top).masked_fill(~valid, float("nan"))
            out_idx[sl, :take] = idx.masked_fill(~valid, -1).numpy()
            out_sc[sl, :take] = scores.numpy()
        return out_idx, out_sc

    def _scoring_for(self, cand: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor, Tensor | None], Tensor]]:
        """(candidate columns, item -> column map, block scorer) for a candidate set, kept for reuse:
        one user's top-N then costs a product and a topk, not a copy of the item table."""
        cached = self._scoring
        if cached is not None and torch.equal(cached[0], cand):
            return cached[1]
        cols = torch.nonzero(cand).squeeze(1).to(self._dev)  # score candidate items only: no masking pass
        col_of = torch.full((len(cand),), -1, dtype=torch.long, device=self._dev)
        col_of[cols] = torch.arange(len(cols), device=self._dev)
        made = (cols, col_of, self._block_scorer(cols))
        self._scoring = (cand.clone(), made)
        return made

    def _block_scorer(self, cols: Tensor) -> Callable[[Tensor, Tensor | None], Tensor]:
        """A function (user rows, biases) -> (B, len(cols)) ranking scores against items `cols`.

        For the dot models the biases ride inside one matrix product: users [v, b_u, 1] times
        items [w, 1, b_i] gives v.w + b_u + b_i without two more passes over the block.
        """
        if self._kind != "dot":
            return lambda vecs, bias: self._raw_scores(vecs, bias, cols)
        _, table = factor_tables(self.model)
        biases = bias_tables(self.model)
        items = table.float()[cols]  # (m, k)
        if biases is None:
            return lambda vecs, bias: vecs @ items.T
        ones = torch.ones(len(cols), 1, device=items.device)
        items_aug = torch.cat([items, ones, biases[1].float()[cols, None]], dim=1).T.contiguous()  # (k+2, m)

        def score(vecs: Tensor, bias: Tensor | None) -> Tensor:
            b = torch.zeros(len(vecs), device=vecs.device) if bias is None else bias
            users_aug = torch.cat([vecs, b[:, None], torch.ones(len(vecs), 1, device=vecs.device)], dim=1)
            return users_aug @ items_aug

        return score

    def _batch(self, users: list[Any], idx: np.ndarray, scores: np.ndarray) -> BatchRecommendations:
        safe = np.where(idx >= 0, idx, 0)
        titles = self._item_titles[safe]
        titles[idx < 0] = None
        return BatchRecommendations(users, idx, self._item_ids[safe], titles, scores)

    # scoring: "raw" is what topk ranks; `_finish` turns it into predicted ratings
    def _raw_scores(self, vecs: Tensor, bias: Tensor | None, item_idx: Tensor | None = None) -> Tensor:
        """(B, m) ranking scores of user rows against items (all items when item_idx is None)."""
        if self._kind == "dot":
            _, table = factor_tables(self.model)
            table = table.float()
            if item_idx is not None:
                item_idx = item_idx.to(self._dev)
            cols = table if item_idx is None else table[item_idx]
            raw = vecs @ cols.T  # (B, m)
            biases = bias_tables(self.model)
            if biases is not None and bias is not None:
                ib = biases[1].float()
                raw += bias[:, None] + (ib if item_idx is None else ib[item_idx])[None, :]
            return raw
        item_pre = self._item_hidden()
        if item_idx is not None:
            item_pre = item_pre[item_idx.to(self._dev)]
        chunk = max(1, self.score_budget // max(1, len(vecs) * self._hidden_width()))
        parts = [self._net_from_pre(vecs, item_pre[s : s + chunk]) for s in range(0, len(item_pre), chunk)]
        return torch.cat(parts, dim=1) if parts else torch.zeros(len(vecs), 0, device=self._dev)

    def _finish(self, raw: Tensor) -> Tensor:
        y_range = getattr(self.model, "y_range", None)
        if self._kind == "dot" and y_range is not None:
            return sigmoid_range(raw, *y_range)
        return raw

    # the deep models: the first linear layer acts on [user emb, item emb], so it splits into a
    # user part and an item part; the item part is computed once for all items
    def _net(self) -> EmbeddingNN:
        if not isinstance(self.model, EmbeddingNN):
            raise CollabkitError(f"{type(self.model).__name__} has no embedding network")
        return self.model

    def _first_linear(self) -> tuple[nn.Linear, list[nn.Module]]:
        net = self._net()
        seq: list[nn.Module] = [*net.layers, net.head]
        first = seq[0]
        if not isinstance(first, nn.Linear):
            raise CollabkitError(f"the network starts with {type(first).__name__}, not a linear layer")
        return first, seq[1:]

    def _hidden_width(self) -> int:
        """The widest activation per (user, item) pair inside the network."""
        first, rest = self._first_linear()
        return max([first.out_features] + [m.out_features for m in rest if isinstance(m, nn.Linear)])

    def _user_width(self) -> int:
        return int(cast(nn.Embedding, self._net().embeds[0]).weight.shape[1])

    def _item_hidden(self) -> Tensor:
        """(n_items, h) the item embeddings' share of the first layer (plus its bias)."""
        if self._item_pre is None:
            first, _ = self._first_linear()
            item_emb = cast(nn.Embedding, self._net().embeds[1]).weight.detach()
            pre = item_emb @ first.weight.detach()[:, self._user_width() :].T
            if first.bias is not None:
                pre = pre + first.bias.detach()
            self._item_pre = pre.float()
        return self._item_pre

    def _net_logits(self, vecs: Tensor, item_pre: Tensor) -> Tensor:
        """(B, m, out) network outputs before the output range, from user rows and item shares."""
        first, rest = self._first_linear()
        w_user = first.weight[:, : self._user_width()]
        pre_user = vecs @ w_user.T  # (B, h)
        x = (pre_user[:, None, :] + item_pre[None, :, :]).reshape(-1, first.out_features)
        for layer in rest:
            x = layer(x)
        return x.reshape(len(vecs), len(item_pre), -1)

    def _net_from_pre(self, vecs: Tensor, item_pre: Tensor) -> Tensor:
        logits = self._net_logits(vecs, item_pre)
        b, m, out = logits.shape
        flat = logits.reshape(b * m, out)
        if isinstance(self.model, RatingClassifier):
            rating = self.model.expected_rating(flat)
        else:
            rating = self._net().out_range(flat).reshape(-1)
        return rating.reshape(b, m).float()

    # fold-in
    def _fold_in_dot(
        self, idx: Tensor, y: Tensor, mean_vec: Tensor, mean_bias: Tensor | None, reg: float
    ) -> tuple[Tensor, float | None]:
        _, table = factor_tables(self.model)
        item_vecs = table.cpu().double()[idx]  # (m, k); solved on the CPU in float64
        y_range = getattr(self.model, "y_range", None)
        target = y.double()
        if y_range is not None:
            lo, hi = y_range
            p = ((target - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
            target = torch.log(p / (1 - p))  # inverse sigmoid_range
        biases = bias_tables(self.model)
        has_bias = biases is not None and mean_bias is not None
        if biases is not None and mean_bias is not None:
            target = target - biases[1].cpu().double()[idx]
            design = torch.cat([item_vecs, torch.ones(len(idx), 1, dtype=torch.float64)], dim=1)
            prior = torch.cat([mean_vec.cpu().double(), mean_bias.cpu().double()])
        else:
            design, prior = item_vecs, mean_vec.cpu().double()
        # ridge towards the average user: solve for the offset from `prior`
        resid = target - design @ prior
        gram = design.T @ design + reg * torch.eye(design.shape[1], dtype=torch.float64)
        sol = prior + torch.linalg.solve(gram, design.T @ resid)
        if has_bias:
            return sol[:-1].float(), float(sol[-1])
        return sol.float(), None

    def _fold_in_net(
        self, idx: Tensor, y: Tensor, mean_vec: Tensor, reg: float, steps: int, lr: float
    ) -> tuple[Tensor, None]:
        # clones made outside inference mode: a caller's inference tensors cannot enter autograd
        with torch.inference_mode(False), torch.enable_grad():
            item_pre = self._item_hidden()[idx.to(self._dev)].clone()
            y = y.to(self._dev).clone()
            start = mean_vec.to(self._dev).clone().reshape(1, -1)
            classifier = isinstance(self.model, RatingClassifier)
            if classifier:
                levels = cast(Tensor, self.model.levels).clone()
                target = (y.view(-1, 1) - levels.view(1, -1)).abs().argmin(dim=1)
            vec = start.clone().requires_grad_(True)
            opt = torch.optim.Adam([vec], lr=lr)
            for _ in range(int(steps)):
                logits = self._net_logits(vec, item_pre)[0]  # (m, out)
                if classifier:
                    loss = nn.functional.cross_entropy(logits, target)
                else:
                    pred = self._net().out_range(logits).reshape(-1)
                    loss = ((pred - y) ** 2).mean()
                loss = loss + reg * ((vec - start) ** 2).sum()
                (grad,) = torch.autograd.grad(loss, [vec])  # the model's weights get no gradient
                vec.grad = grad
                opt.step()
        return vec.detach()[0], None


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run tiny CPU work on one thread: on a busy machine, waking a thread pool for each of
    hundreds of small ops costs 10-100x the work itself (a fold-in went from 50 ms to seconds)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise CollabkitError(f"n must be a positive whole number, got {n!r}")
    return int(n)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _match(text: Any, vocab: Any, titles: dict[str, Any], folded: dict[str, Any], kind: str) -> Any:
    if text in vocab:
        return text
    if isinstance(text, str):
        stripped = text.strip()
        if stripped in vocab:
            return stripped
        try:
            number = int(stripped)
        except ValueError:
            number = None
        if number is not None and number in vocab:
            return number
        if stripped in titles:
            return titles[stripped]
        if stripped.casefold() in folded:
            return folded[stripped.casefold()]
        if titles:
            close = difflib.get_close_matches(stripped, list(titles), n=3, cutoff=0.6)
            if close:
                hint = ", ".join(repr(c) for c in close)
                raise UnknownIdError(
                    f"{kind} {text!r} is not an id or title the model knows; did you mean {hint}?"
                )
    hint = " or title" if titles else ""
    raise UnknownIdError(f"{kind} {text!r} is not an id{hint} the model knows ({len(vocab) - 1} {kind}s)")
