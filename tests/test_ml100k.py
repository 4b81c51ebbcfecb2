"""The chapter on the real MovieLens 100k: its vocabulary sizes, splits and the bias model's accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collabkit import CollabDataLoaders, collab_learner, get_emb_sz, ml100k_split, set_seed

pytestmark = pytest.mark.slow


def test_chapter_vocabulary(ml100k: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(
        ml100k[["user", "item", "rating", "timestamp", "title"]], item_name="title", bs=64, seed=42
    )
    assert len(dls.classes["user"]) == 944 and len(dls.classes["title"]) == 1665
    assert dls.classes["title"][0] == "#na#"
    star_wars = dls.classes["title"].o2i["Star Wars (1977)"]
    assert dls.classes["title"][star_wars] == "Star Wars (1977)"
    assert get_emb_sz(dls) == [(944, 74), (1665, 102)]
    assert len(dls.train) == 1250  # 80,000 rows at bs 64


def test_canonical_splits(ml100k: pd.DataFrame) -> None:
    tests = [ml100k_split(ml100k, f"u{i}")[1] for i in range(1, 6)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(100_000))
    train, ua = ml100k_split(ml100k, "ua")
    assert len(ua) == 9430 and len(train) == 90_570
    _, ub = ml100k_split(ml100k, "ub")
    assert len(ub) == 9430 and not set(ua.tolist()) & set(ub.tolist())
    # u1.test begins, as GroupLens's file does, with user 1's ratings sorted by item
    u1 = ml100k.iloc[tests[0]]
    assert u1.iloc[0][["user", "item"]].tolist() == [1, 6]


def test_chapter_bias_model_reaches_its_mse(ml100k: pd.DataFrame) -> None:
    ratings = ml100k[["user", "item", "rating", "timestamp", "title"]]
    dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64, seed=42)
    set_seed(42)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), log=None)
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    assert learn.history[-1]["valid_loss"] <= 0.83
    # the chapter's interpretation still works on the model's own attributes
    top = learn.model.i_bias.weight.squeeze().argsort(descending=True)[:15]
    titles = [dls.classes["title"][int(i)] for i in top]
    assert {
        "Titanic (1997)",
        "Schindler's List (1993)",
        "Shawshank Redemption, The (1994)",
        "Star Wars (1977)",
    } & set(titles)
