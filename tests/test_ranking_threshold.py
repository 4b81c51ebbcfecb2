"""`-o min_rating=X` changes what counts as an interaction, and so what a ranking family recommends.

A made-up table where a low rating marks a dislike: group A users love block A (5 stars) and have
also watched, and disliked (1 star), most of block B, which group B users love. Counting every
rating, block B is what group A "interacts" with most, so the models push its unwatched items to
group A; counting only ratings of 4 or more, group A's rows hold block A alone and its unwatched
items rank first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from collabkit.data.splits import SplitSpec
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, train

BLOCK_A = list(range(100, 110))
BLOCK_B = list(range(200, 220))
N = 12  # users per group
LAST = SplitSpec(kind="last", last_n=1)
OPTIONS: dict[str, dict[str, Any]] = {  # small settings where the defaults are sized for MovieLens
    "ease": {"l2": 5.0},
    "itemknn": {"k": 20},
    "userknn": {"k": 8},
    "easeknn": {"l2": 5.0, "k": 8},
    "bpr": {"n_factors": 4, "epochs": 40, "bs": 16, "lr": 0.05, "reg": 0.001},
}


def likes_and_dislikes() -> pd.DataFrame:
    """Users 1..N: block A at 5 stars, 18 of block B's 20 items at 1; users N+1..2N: block B at 5.
    Each user leaves one item of the block they love unrated; their last row (held out) is in it."""
    rows = []
    for u in range(1, 2 * N + 1):
        t = 0
        if u <= N:
            for k, item in enumerate(BLOCK_B):
                if k not in (u % 20, (u + 7) % 20):
                    t += 1
                    rows.append((u, item, 1.0, t))
        own = BLOCK_A if u <= N else BLOCK_B
        order = [j for j in range(len(own)) if j != u % len(own)]
        order = order[u % 9 :] + order[: u % 9]  # each user's held-out item differs
        for j in order:
            t += 1
            rows.append((u, own[j], 5.0, t))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def first_choices(name: str, min_rating: float | None, out: Path) -> list[Any]:
    """Group A's top item each, from `name` trained with `min_rating` and loaded from its folder."""
    settings = {**OPTIONS[name], "min_rating": min_rating}
    train(likes_and_dislikes(), TrainConfig(model=name, split=LAST, settings=settings), out=out, log=None)
    rec = Recommender.load(out)
    config = rec.trained.config
    assert config is not None and config.settings.model_dump()["min_rating"] == min_rating  # as saved
    return list(rec.recommend_many(list(range(1, N + 1)), 3, min_count=1).items[:, 0])


@pytest.mark.parametrize("name", list(OPTIONS))
def test_min_rating_ranks_the_liked_block_first(name: str, tmp_path: Path) -> None:
    every = first_choices(name, None, tmp_path / "every")
    liked = first_choices(name, 4.0, tmp_path / "liked")
    assert all(item in BLOCK_A for item in liked)  # only the 5-star rows count: block A first
    assert sum(item in BLOCK_A for item in every) < N  # the 1-star rows pull block B up


@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_disliked_item_is_still_seen(name: str, tmp_path: Path) -> None:
    """min_rating changes what the model learns from, not what a user has seen: an item they rated
    1 star is never recommended back to them."""
    table = likes_and_dislikes()
    settings = {**OPTIONS[name], "min_rating": 4.0}
    train(table, TrainConfig(model=name, split=LAST, settings=settings), out=tmp_path, log=None)
    rec = Recommender.load(tmp_path)
    users = list(range(1, N + 1))
    disliked = table[table["rating"] < 4].groupby("user")["item"].agg(set)
    top = rec.recommend_many(users, 20, min_count=1).items  # (N, 20) raw ids, None for padding
    for user, items in zip(users, top, strict=True):
        assert not set(items) & disliked[user]
