"""What the page needs beyond one model: a ranking model beside a rating model, the catalogue's
filters (genre, year, ratings), the rating scale, and reasons in plain words.

A rating model (dotbias) ranks a new user's candidates by predicted stars, which is nearly the
same list for everyone: the items' biases dominate. A ranking model ranks by what people with the
same liked items rated, and personalises far better (NDCG@10 on ML-100k u1: 0.463 for easeknn
against 0.178 for dotbias). So when the served model predicts ratings, `Ranker` fits a ranking
model beside it at start-up, from the served model's own training rows and vocabularies, and the
page orders a new user's list with it; the stars shown stay the rating model's prediction.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from collabkit.bundle import TrainedModel
from collabkit.models import ModelConfig, build_model
from collabkit.models.sparse import CSR, cosines
from collabkit.recommend import Recommender

RANKER_FAMILY = "easeknn"  # the best ranking family of bench/ranking.py on ML-100k with its defaults
RANKER_MAX_ITEMS = 20_000  # its item-by-item matrix is dense: beyond this the page keeps one model
LIKED_SHARE = 0.6  # a rating in the top 40% of the scale is "liked" (4 and 5 of 1-5, 7+ of 1-10)
YEAR = re.compile(r"\((\d{4})\)\s*$")  # "Toy Story (1995)": the MovieLens title suffix
MOVIELENS_SOURCES = ("movielens", "grouplens")


@dataclass(frozen=True)
class Scale:
    """The model's rating scale, from its training ratings: lowest, highest, step between values."""

    low: float
    high: float
    step: float

    @property
    def liked(self) -> float:
        """The lowest rating that counts as "liked"."""
        raw = self.low + LIKED_SHARE * (self.high - self.low)
        return self.low + math.ceil((raw - self.low) / self.step - 1e-9) * self.step

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "step": self.step, "liked": self.liked}


def rating_scale(trained: TrainedModel) -> Scale:
    """The scale the model was trained on (1-5 whole stars when it has no training rows)."""
    span = trained.rating_range()
    if span is None:
        return Scale(1.0, 5.0, 1.0)
    y = np.unique(trained.train_y.cpu().numpy().astype(np.float64))
    whole = bool(np.allclose(y, np.round(y)))
    halves = bool(np.allclose(y * 2, np.round(y * 2)))
    step = 1.0 if whole else 0.5 if halves else 0.1
    return Scale(float(span[0]), float(span[1]), step)


def is_movielens(trained: TrainedModel) -> bool:
    """Whether the model's data is a MovieLens release (the page then says "movies")."""
    data = trained.data
    if data is None:
        return False
    name, source = data.name.lower(), data.source.lower()
    return name.startswith("ml-") or any(s in source for s in MOVIELENS_SOURCES)


def title_year(title: str) -> int | None:
    """The year of a "(1995)" title suffix, or None."""
    m = YEAR.search(title)
    return int(m.group(1)) if m else None


@dataclass
class Ranker:
    """A ranking model fitted beside a rating model on the same training rows and vocabularies."""

    rec: Recommender
    seconds: float  # how long building and fitting it took

    @property
    def name(self) -> str:
        return self.rec.trained.name


def fit_ranker(rec: Recommender, family: str = RANKER_FAMILY) -> Ranker | None:
    """A ranking model beside `rec`, or None when `rec` already ranks, cannot fold in a new user, or
    its catalogue is too large for a dense item-by-item model."""
    t = rec.trained
    if rec.model.score_kind != "rating" or not rec.capabilities.fold_in or len(t.train_y) == 0:
        return None
    if len(t.items) > RANKER_MAX_ITEMS:
        return None
    start = time.perf_counter()
    config = ModelConfig(family, len(t.users), len(t.items))
    model = build_model(config)
    model.fit_direct(t.train_x, t.train_y)
    beside = dataclasses.replace(
        t, model=model.eval(), config=config, history=[], results={}
    )  # the same vocabularies, titles and training rows: raw ids mean the same items
    return Ranker(Recommender(beside), time.perf_counter() - start)


def allowed_items(
    titles: Sequence[str],
    item_ids: Sequence[Any],
    counts: np.ndarray,
    genres: Mapping[Any, str],
    *,
    genre: str | None = None,
    year_min: int | None = None,
    year_max: int | None = None,
    min_count: int = 1,
) -> list[Any]:
    """The raw ids of catalogue items passing the page's filters (an item with no year fails a year
    filter; one with no genres fails a genre filter)."""
    out = []
    for item, title, count in zip(item_ids, titles, counts, strict=True):
        if int(count) < min_count:
            continue
        if genre and genre not in str(genres.get(item) or "").split("|"):
            continue
        if year_min is not None or year_max is not None:
            year = title_year(title)
            if year is None or (year_min is not None and year < year_min):
                continue
            if year_max is not None and year > year_max:
                continue
        out.append(item)
    return out


def closest_liked(
    unit: Tensor | CSR | np.ndarray | None,
    rec_idx: np.ndarray,
    liked_idx: np.ndarray,
    most: int = 2,
    near: float = 0.8,
) -> list[list[tuple[int, float]]]:
    """For each recommended item, the liked items closest to it: (position in `liked_idx`, cosine).

    The closest always, then others only as close as `near` times it, at most `most`: an item near
    one liked title is explained by that title alone, so different items get different reasons.
    """
    if unit is None or len(liked_idx) == 0 or len(rec_idx) == 0:
        return [[] for _ in rec_idx]
    sims = cosines(unit, rec_idx, liked_idx)  # (n_rec, n_liked)
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")
        best = float(row[order[0]])
        keep = [int(p) for p in order[:most] if row[p] > 0 and row[p] >= near * best]
        out.append([(p, float(row[p])) for p in keep])
    return out


ARTICLE = re.compile(r"^(.*), (The|A|An|Il|La|Le|Les|Das|Der|Die)$")  # "Terminator, The"


def short_title(title: str) -> str:
    """A title as a sentence names it: no year suffix, its article in front ("The Terminator")."""
    bare = YEAR.sub("", title).strip()
    m = ARTICLE.match(bare)
    return f"{m.group(2)} {m.group(1)}" if m else bare or title


def plain_reason(liked: Sequence[str], n_liked: int, about: Mapping[str, Any] | None = None) -> str:
    """The reason for one recommended item in plain words, from the liked titles closest to it
    (or, with nothing liked, from what the user said about themselves)."""
    liked = [short_title(t) for t in liked]
    if not liked:
        if n_liked:
            return "people who liked what you liked also liked this"
        if about:
            said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in about.items())
            return (
                f"you have not liked anything yet: people like you ({said}) are predicted to rate this highly"
            )
        return "you have not liked anything yet: this is what people who rated the same titles chose"
    names = liked[0] if len(liked) == 1 else f"{', '.join(liked[:-1])} and {liked[-1]}"
    those = "that" if len(liked) == 1 else "those"
    return f"because you liked {names}; people who liked {those} liked this"


__all__ = [
    "Ranker",
    "Scale",
    "allowed_items",
    "closest_liked",
    "fit_ranker",
    "is_movielens",
    "plain_reason",
    "rating_scale",
    "short_title",
    "title_year",
]
