"""What recommending returns: ranked lists for one user or many, similar users, a folded-in user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor


@dataclass
class Recommendations:
    """A ranked list of items for one user (or one query), best first, at most n long.

    `scores` are what ordered the list, so they never increase down it. `score_kind` says what the
    model's own scores are: "rating" (predicted stars, for `recommend`, `popular` and
    `recommend_for_ratings` of a rating model, clipped to the training ratings' range), "score" (a
    ranking model's score: larger is better, not stars) or "cosine" (similarities, for
    `similar_items`). With a popularity penalty the list is ordered by the model's score lowered
    for popularity: `scores` holds those, and `model_scores` the model's own (its predicted ratings,
    for a rating model); without one `model_scores` is None, the model's own scores ordered the list.
    """

    items: list[Any]
    titles: list[str]
    scores: np.ndarray  # (len,) float32, what ordered the list: never increasing
    user: Any = None  # the raw user id; None for a new user, a popularity list or a similarity query
    score_kind: str = "rating"
    model_scores: np.ndarray | None = None  # (len,) the model's own, where a penalty ordered the list

    def __len__(self) -> int:
        return len(self.items)

    def to_frame(self) -> pd.DataFrame:
        """One row per item: rank (1-based), item, title, score (and model_score with a penalty)."""
        cols: dict[str, Any] = {
            "rank": np.arange(1, len(self) + 1),
            "item": self.items,
            "title": self.titles,
            "score": self.scores,
        }
        if self.model_scores is not None:
            cols["model_score"] = self.model_scores
        return pd.DataFrame(cols)

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: rank, item, title, score (what ordered the list), and with a popularity
        penalty model_score (the model's own rating or score)."""
        rows = [
            {"rank": r + 1, "item": _plain(i), "title": t, "score": float(s)}
            for r, (i, t, s) in enumerate(zip(self.items, self.titles, self.scores, strict=True))
        ]
        if self.model_scores is not None:
            for row, m in zip(rows, self.model_scores, strict=True):
                row["model_score"] = float(m)
        return rows


@dataclass
class BatchRecommendations:
    """Top-n items for many users as arrays, one row per user, best first.

    A row with fewer than n candidates is padded with item index -1, item None and score NaN.
    `scores` and `model_scores` as in `Recommendations`: `scores` ordered each row.
    """

    users: list[Any]
    item_idx: np.ndarray  # (n_users, n) int64 item indices, -1 for padding
    items: np.ndarray  # (n_users, n) object raw item ids, None for padding
    titles: np.ndarray  # (n_users, n) object
    scores: np.ndarray  # (n_users, n) float32 what ordered each row (clipped ratings, or scores), NaN padding
    score_kind: str = "rating"
    model_scores: np.ndarray | None = None  # (n_users, n) the model's own, where a penalty ordered rows

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, row: int) -> Recommendations:
        keep = self.item_idx[row] >= 0
        return Recommendations(
            items=list(self.items[row][keep]),
            titles=[str(t) for t in self.titles[row][keep]],
            scores=self.scores[row][keep],
            user=self.users[row],
            score_kind=self.score_kind,
            model_scores=None if self.model_scores is None else self.model_scores[row][keep],
        )

    def to_frame(self) -> pd.DataFrame:
        """A long table: user, rank (1-based), item, title, score (and model_score with a penalty);
        padding left out."""
        n_users, n = self.item_idx.shape
        keep = (self.item_idx >= 0).reshape(-1)
        users = np.repeat(np.asarray(self.users, dtype=object), n)
        ranks = np.tile(np.arange(1, n + 1), n_users)
        cols: dict[str, Any] = {
            "user": users[keep],
            "rank": ranks[keep],
            "item": self.items.reshape(-1)[keep],
            "title": self.titles.reshape(-1)[keep],
            "score": self.scores.reshape(-1)[keep],
        }
        if self.model_scores is not None:
            cols["model_score"] = self.model_scores.reshape(-1)[keep]
        return pd.DataFrame(cols)


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

    row: Tensor  # (d,) the user's row as the model scores it (see CollabModel.user_rows)
    rated: dict[Any, float]  # raw item id -> rating, the ratings used
    rated_idx: np.ndarray  # item indices of `rated`, excluded from recommendations
    ignored: list[Any] = field(default_factory=list)  # rated items the model has no training data for
    strength: float = 0.0  # how strongly the row was pulled towards the average user
    about: dict[str, Any] = field(default_factory=dict)  # side columns the user stated (hybrid)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
