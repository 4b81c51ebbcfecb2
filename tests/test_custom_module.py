"""Your own nn.Module, trained with the Learner and exported, is used by `Recommender` and the service.

The module is the chapter's `DotProductBias` written by hand (a plain nn.Module, not a collabkit
family); the data is a checkerboard whose right answer is known: each user's unrated items of their
own group must come first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from collabkit import CollabDataLoaders, CollabkitError, set_seed
from collabkit.bundle import trained_from_learner
from collabkit.interpret import explain_prediction, item_biases, similar_items_table
from collabkit.models.core import sigmoid_range
from collabkit.models.custom import CustomModule
from collabkit.recommend import Recommender
from collabkit.train.learner import Learner


class DotProductBias(nn.Module):
    """rating = sigmoid_range(user . item + user bias + item bias): (B, 2) indices -> (B, 1)."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 4) -> None:
        super().__init__()
        self.user_factors, self.user_bias = nn.Embedding(n_users, n_factors), nn.Embedding(n_users, 1)
        self.item_factors, self.item_bias = nn.Embedding(n_items, n_factors), nn.Embedding(n_items, 1)
        for emb in (self.user_factors, self.item_factors, self.user_bias, self.item_bias):
            nn.init.normal_(emb.weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        users, items = self.user_factors(x[:, 0]), self.item_factors(x[:, 1])
        raw = (users * items).sum(dim=1, keepdim=True) + self.user_bias(x[:, 0]) + self.item_bias(x[:, 1])
        return sigmoid_range(raw, 0.0, 5.5)  # (B, 1)


def checkerboard(n_users: int = 30, n_items: int = 20, seed: int = 0) -> pd.DataFrame:
    """Odd users like odd items (4-5 stars), dislike even ones (1-2); each rates ~70% of the items."""
    rng = np.random.default_rng(seed)
    rows = [
        (u, i, float(rng.integers(4, 6) if u % 2 == i % 2 else rng.integers(1, 3)))
        for u in range(1, n_users + 1)
        for i in range(100, 100 + n_items)
        if rng.random() < 0.7
    ]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.fixture(scope="module")
def board() -> pd.DataFrame:
    return checkerboard()


@pytest.fixture(scope="module")
def exported(board: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Learner]:
    set_seed(0)
    dls = CollabDataLoaders.from_df(board, valid_pct=0.0, seed=0, bs=64)
    learn = Learner(dls, DotProductBias(dls.n_users, dls.n_items), log=None, show_progress=False)
    learn.fit_one_cycle(8, 5e-2)
    return Path(learn.export(str(tmp_path_factory.mktemp("custom") / "mine"))), learn


@pytest.fixture(scope="module")
def rec(exported: tuple[Path, Learner], board: pd.DataFrame) -> Recommender:
    path, _ = exported
    n_users, n_items = board["user"].nunique() + 1, board["item"].nunique() + 1
    return Recommender.load(path, model=DotProductBias(n_users, n_items))


def test_exported_module_loads_into_a_recommender(rec: Recommender, exported: tuple[Path, Learner]) -> None:
    path, learn = exported
    assert isinstance(rec.model, CustomModule) and rec.trained.config is None
    assert rec.trained.name == "custom" and rec.model.score_kind == "rating"
    caps = type(rec.model).capabilities()
    assert caps.ratings and not (caps.item_vectors or caps.user_vectors or caps.biases)
    assert not (caps.fold_in or caps.explain)
    with pytest.raises(CollabkitError, match="holds the weights of your own module"):
        Recommender.load(path)  # a custom module cannot be rebuilt without the instance


def test_predictions_are_the_modules_own(rec: Recommender, exported: tuple[Path, Learner]) -> None:
    _, learn = exported
    users, items = [1, 2, 3, 4], [100, 101, 102, 103]
    x = torch.tensor(
        [[rec.users.o2i[u], rec.items.o2i[i]] for u, i in zip(users, items, strict=True)], dtype=torch.long
    )
    with torch.no_grad():
        expected = learn.model.eval()(x).reshape(-1).numpy()
    np.testing.assert_allclose(rec.predict(users, items), expected, rtol=1e-6)


def test_recommendations_put_the_users_own_group_first(rec: Recommender, board: pd.DataFrame) -> None:
    users = sorted(board["user"].unique())
    top = rec.recommend_many(users, n=20)
    for row, user in enumerate(users):
        items = [i for i in top.items[row] if i is not None]
        unseen = set(range(100, 120)) - set(board.loc[board["user"] == user, "item"])
        assert set(items) == unseen  # every unseen item, no seen one
        own = [user % 2 == i % 2 for i in items]
        assert own == sorted(own, reverse=True), f"user {user}: an other-group item ranks first"
        scores = top[row].scores
        assert list(scores) == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, rec.predict([user] * len(items), items), rtol=1e-5)


def test_small_chunks_give_the_same_lists(rec: Recommender) -> None:
    t = rec.trained
    wrapped = rec.model
    assert isinstance(wrapped, CustomModule)
    small = CustomModule(wrapped.module, len(t.users), len(t.items), max_pairs=7)
    other = Recommender(
        type(t)(small, None, t.users, t.items, t.train_x, t.train_y), score_budget=50
    )  # 2 users per block, 7 pairs per forward call
    users = list(t.users)[1:]
    a, b = rec.recommend_many(users, n=5), other.recommend_many(users, n=5)
    np.testing.assert_array_equal(a.item_idx, b.item_idx)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_what_the_module_cannot_answer_is_refused_in_one_line(rec: Recommender) -> None:
    for call, message in (
        (lambda: rec.similar_items(100), "has no item vectors"),
        (lambda: rec.similar_users(1), "has no user vectors"),
        (lambda: rec.fold_in({100: 5}), "cannot fold in a new user"),
        (lambda: rec.popular(), "no average user"),
        (lambda: explain_prediction(rec, 1, 100), "has no additive explanation"),
        (lambda: item_biases(rec), "has no item biases"),
        (lambda: similar_items_table(rec, 100), "has no item vectors"),
    ):
        with pytest.raises(CollabkitError, match=message) as e:
            call()
        assert "\n" not in str(e.value) and "model 'custom'" in str(e.value)


def test_a_forward_of_the_wrong_shape_is_refused() -> None:
    class TwoColumns(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.float()  # (B, 2): not ratings

    with pytest.raises(CollabkitError, match=r"returned \(3, 2\) for 3 pairs; expected \(B,\) or \(B, 1\)"):
        CustomModule(TwoColumns(), 4, 4)(torch.zeros(3, 2, dtype=torch.long))


def test_a_learner_of_your_own_module_is_used_without_exporting(exported: tuple[Path, Learner]) -> None:
    _, learn = exported
    live = Recommender(trained_from_learner(learn))
    assert isinstance(live.model, CustomModule)
    assert len(live.recommend(1, n=3)) == 3


def test_the_service_serves_a_recommender_of_your_module(rec: Recommender) -> None:
    from fastapi.testclient import TestClient

    from collabkit.service.app import create_app

    client = TestClient(create_app(rec))
    got = client.get("/recommend", params={"user": "1", "n": 3})
    assert got.status_code == 200, got.text
    assert [r["item"] for r in got.json()["recommendations"]] == rec.recommend(1, n=3).items
    pred = client.get("/predict", params={"user": "1", "item": "100"})
    assert pred.status_code == 200 and pred.json()["rating"] == pytest.approx(rec.predict([1], [100])[0])
    refused = client.get("/similar", params={"item": "100"})
    assert refused.status_code == 422 and "model 'custom'" in refused.json()["detail"]
