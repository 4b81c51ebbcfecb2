"""A model family added in one file (here, in this test) works everywhere without touching the library."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import Field
from torch import Tensor

from collabkit import CollabModel, ModelConfig, register
from collabkit.interpret import interpret_model, similar_items_table
from collabkit.models.core import Embedding, sigmoid_range
from collabkit.models.settings import FamilySettings, Recipe
from collabkit.persist import load_model
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, evaluate_saved, train


class ItemFirstSettings(FamilySettings):
    n_factors: int = Field(8, ge=1, description="factors per user and item")
    y_range: tuple[float, float] | None = Field(None, description="output range")


@register("itemfirst")
class ItemFirst(CollabModel):
    """rating = sigmoid_range(item bias + user . item): a bias model without user biases."""

    Settings = ItemFirstSettings
    recipes = {"fast": Recipe(bs=64, epochs=2, lr=5e-3, wd=0.1)}
    has_biases = True  # item biases only: interpretation says there are no user biases

    def __init__(self, n_users: int, n_items: int, k: int, y_range: tuple[float, float]) -> None:
        self.users, self.items, self.item_bias = (
            Embedding(n_users, k),
            Embedding(n_items, k),
            Embedding(n_items, 1),
        )
        self.y_range = y_range

    @classmethod
    def from_config(cls, config: ModelConfig) -> ItemFirst:
        s = config.settings
        assert isinstance(s, ItemFirstSettings)
        return cls(config.n_users, config.n_items, s.n_factors, s.y_range or (0.0, 5.5))

    def forward(self, x: Tensor) -> Tensor:
        raw = (self.users(x[:, 0]) * self.items(x[:, 1])).sum(1) + self.item_bias(x[:, 1])[:, 0]
        return sigmoid_range(raw, *self.y_range)

    def user_vectors(self) -> Tensor:
        return self.users.weight.detach()

    def item_vectors(self) -> Tensor:
        return self.items.weight.detach()

    def item_biases(self) -> Tensor:
        return self.item_bias.weight.detach()[:, 0]

    def item_side(self, item_idx: Tensor) -> Tensor:  # (k + 1, m): factors, then the bias against a 1
        return torch.cat([self.item_vectors()[item_idx], self.item_biases()[item_idx, None]], 1).T

    def user_rows(self, user_idx: Tensor) -> Tensor:  # (B, k + 1)
        vecs = self.user_vectors()[user_idx]
        return torch.cat([vecs, torch.ones(len(vecs), 1)], 1)

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        return sigmoid_range(raw, *self.y_range)


def test_a_model_added_in_one_file_trains_saves_loads_recommends_and_is_interpreted(
    ratings: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    res = train(
        ratings, TrainConfig(model="itemfirst", settings={"n_factors": 4}, epochs=3), out=out, log=None
    )
    assert res.valid["rmse"] < 1.5  # it learned (ratings 1..5)
    rec = Recommender.load(out)
    assert isinstance(rec.model, ItemFirst)
    user = rec.users[1]
    top = rec.recommend(user, n=5)
    assert len(top) == 5 and list(top.scores) == sorted(top.scores, reverse=True)
    # the engine's block scores are the model's own predictions
    assert rec.predict([user] * 5, top.items) == pytest.approx(top.scores, abs=1e-5)
    assert len(rec.similar_items(top.items[0], n=3)) == 3
    again = evaluate_saved(out, ratings)
    assert again.metrics["rmse"] == pytest.approx(res.valid["rmse"])
    trained = load_model(out)
    it = interpret_model(trained, n=3)
    assert it.item_biases is not None and it.user_biases is None  # it has item biases only: said so
    assert any("no user biases" in note for note in it.notes)
    assert it.embedding is not None and len(similar_items_table(trained, top.items[0], n=3)) == 3
    assert it.example is None  # no additive explanation offered: said in the notes
