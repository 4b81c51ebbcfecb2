"""A dot model whose fast recipe keeps its biases-only start (its held-aside rows scored every epoch
worse) is served honestly: its factors are zero, not random, so nothing poses as learned vectors;
similar items and the map are refused with the reason, the page is told it has no vectors, and its
predictions are the biases-only model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from collabkit.data.splits import SplitSpec
from collabkit.errors import CollabkitError
from collabkit.recommend import Recommender
from collabkit.service import create_app
from collabkit.workflows import TrainConfig, train


def biases_only_table(n_users: int = 80, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Ratings = a user offset + an item offset + noise: nothing for factors to learn."""
    rng = np.random.default_rng(seed)
    users, items = np.meshgrid(np.arange(1, n_users + 1), np.arange(1, n_items + 1), indexing="ij")
    keep = rng.random(users.shape) < 0.35
    u, i = users[keep], items[keep]
    bu, bi = rng.normal(0, 0.6, n_users + 1), rng.normal(0, 0.8, n_items + 1)
    r = np.clip(np.round(3.4 + bu[u] + bi[i] + rng.normal(0, 0.9, len(u))), 1, 5)
    return pd.DataFrame({"user": u, "item": i, "rating": r.astype(float)})


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("kept") / "m"
    result = train(biases_only_table(), TrainConfig(model="dotbias", split=SplitSpec()), out=folder, log=None)
    return folder, result.best or {}


def test_the_kept_start_has_zero_factors_and_refuses_to_compare_them(kept: tuple[Path, dict]) -> None:
    folder, best = kept
    if best.get("best_epoch") != 0:
        pytest.fail(
            f"the held-aside rows chose epoch {best.get('best_epoch')} on a biases-only table: {best}"
        )
    rec = Recommender.load(folder)
    assert not bool(rec.model.item_vectors().ne(0).any()) and not bool(rec.model.user_vectors().ne(0).any())
    item = rec.items[int(np.argmax(rec.item_counts.numpy()))]
    with pytest.raises(
        CollabkitError, match="item factors are all zero: training kept its biases-only start"
    ):
        rec.similar_items(item)
    assert len(rec.recommend_many([rec.users[1]], n=5, min_count=1)[0].items) == 5  # biases rank


def test_the_service_says_it_has_no_vectors(kept: tuple[Path, dict]) -> None:
    folder, _ = kept
    with TestClient(create_app(folder), raise_server_exceptions=False) as client:
        caps = client.get("/health").json()["capabilities"]
        assert caps["item_vectors"] is False and caps["user_vectors"] is False and caps["biases"] is True
        rec = Recommender.load(folder)
        item = rec.items[int(np.argmax(rec.item_counts.numpy()))]
        refused = client.get("/similar", params={"item": str(item)})
        assert 400 <= refused.status_code < 500
        assert client.get("/recommend", params={"user": str(rec.users[1]), "n": 3}).status_code == 200


def test_a_start_kept_model_predicts_as_the_biases_only_baseline(kept: tuple[Path, dict]) -> None:
    from collabkit.baselines import fit_biases

    folder, _ = kept
    rec = Recommender.load(folder)
    x = rec.trained.train_x.numpy()
    base = fit_biases(x[:, 0], x[:, 1], rec.trained.train_y.numpy(), len(rec.users), len(rec.items))
    with torch.inference_mode():
        got = rec.model.output_to_rating(rec.model(rec.trained.train_x[:200])).reshape(-1).numpy()
    want = base.predict(x[:200, 0], x[:200, 1])
    assert np.abs(got - want).mean() < 0.1  # the same biases, fitted through the model's sigmoid range


def test_interpret_says_why_there_are_no_neighbours_or_map(kept: tuple[Path, dict]) -> None:
    from collabkit.interpret import interpret_model

    folder, _ = kept
    result = interpret_model(Recommender.load(folder).trained)
    assert result.neighbours == {} and result.embedding is None
    said = " ".join(result.notes)
    assert "no similar items: the model's item factors are all zero" in said and "no embedding map" in said
