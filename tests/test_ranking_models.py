"""The ranking families (ease, popular, itemknn, userknn, ials, easeknn, bpr) on a table with a known answer.

Two groups of users each like a block of ten items; every user leaves one item of their block
unrated and has their last rating (also in their block) held out. A ranking model must put the
two unrated items of the user's own block first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.data.splits import SplitSpec
from collabkit.errors import CollabkitError
from collabkit.persist import load_model, save_model
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, train

LAST = SplitSpec(kind="last", last_n=1)
# small settings where the defaults are sized for MovieLens
OPTIONS: dict[str, dict[str, Any]] = {
    "ease": {"l2": 5.0},
    "itemknn": {"k": 20, "shrink": 1.0},
    "userknn": {"k": 8, "values": "rating"},
    "ials": {"n_factors": 2, "iterations": 10, "reg": 0.1, "alpha": 5.0},  # the table's true rank
    "easeknn": {"l2": 5.0, "k": 8},
    "bpr": {"n_factors": 4, "epochs": 40, "bs": 16, "lr": 0.05, "reg": 0.001},
}
FACTOR_MODELS = list(OPTIONS)
BLOCK_A = list(range(100, 110))
BLOCK_B = list(range(200, 210))


def block_table(n_per_group: int = 12) -> pd.DataFrame:
    """Users 1..n like block A (items 100..109), users n+1..2n block B (200..209)."""
    rows = []
    for u in range(1, 2 * n_per_group + 1):
        own = BLOCK_A if u <= n_per_group else BLOCK_B
        skip = u % 10  # never rated
        order = [j for j in range(10) if j != skip]
        order = order[u % 9 :] + order[: u % 9]  # each user's last (held-out) item differs
        for t, j in enumerate(order, start=1):
            rows.append((u, own[j], 4.0 + (t % 2), t))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return block_table()


@pytest.fixture(scope="module")
def saved(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family trained once on the block table (last rating of each user held out) and saved."""
    out = {}
    for name in [*OPTIONS, "popular"]:
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        train(
            table, TrainConfig(model=name, split=LAST, settings=OPTIONS.get(name, {})), out=folder, log=None
        )
        out[name] = folder
    return out


def held_out(table: pd.DataFrame) -> dict[int, int]:
    """Each user's held-out (last) item."""
    last = table.sort_values("timestamp").groupby("user").tail(1)
    return dict(zip(last["user"], last["item"], strict=True))


@pytest.mark.parametrize("name", FACTOR_MODELS)
def test_own_block_ranks_first(name: str, table: pd.DataFrame, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    users = sorted(table["user"].unique())
    top = rec.recommend_many(users, n=2, min_count=1)  # every trained item: the blocks are small
    test_item = held_out(table)
    for u, items in zip(users, top.items, strict=True):
        own = BLOCK_A if u <= 12 else BLOCK_B
        rated = set(table.loc[(table["user"] == u) & (table["item"] != test_item[u]), "item"])
        unrated_own = {i for i in own if i not in rated}
        assert set(items) == unrated_own, (name, u, items, unrated_own)
        assert test_item[u] in items
    assert top.score_kind == "score"


def test_popular_is_the_most_rated_list(table: pd.DataFrame, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved["popular"])
    counts = rec.item_counts.numpy()
    top = rec.popular(n=20)
    idx = [int(rec.items.o2i[i]) for i in top.items]
    assert list(top.scores) == sorted(top.scores, reverse=True)
    assert top.scores == pytest.approx(counts[idx])
    assert counts[idx[0]] == counts.max()
    first = rec.recommend(1, n=3)  # a trained user gets the same list, less what they rated
    seen = set(table.loc[table["user"] == 1, "item"])
    unseen = sorted((c for i, c in zip(rec.items, counts, strict=True) if i not in seen and c), reverse=True)
    assert first.scores == pytest.approx(unseen[:3])


@pytest.mark.parametrize("name", [*FACTOR_MODELS, "popular"])
def test_save_then_load_gives_identical_recommendations(
    name: str, saved: dict[str, Path], tmp_path: Path
) -> None:
    first = load_model(saved[name])
    # what train saved is the fitted model, not the zeros that from_config builds
    assert all(bool(t.abs().sum() > 0) for t in first.model.state_dict().values())
    save_model(tmp_path / "again", first)
    again = load_model(tmp_path / "again")
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    users = list(first.users)[1:]
    a, b = Recommender(first).recommend_many(users, n=5), Recommender(again).recommend_many(users, n=5)
    assert np.array_equal(a.item_idx, b.item_idx)
    assert np.array_equal(a.scores, b.scores, equal_nan=True)
    used = first.config.settings.used()
    assert {k: used[k] for k in OPTIONS.get(name, {})} == OPTIONS.get(name, {})
    assert set(used) == set(type(first.model).Settings.model_fields)  # every setting used, no other


@pytest.mark.parametrize("name", [*FACTOR_MODELS, "popular"])
def test_pair_scores_are_the_engines_scores(name: str, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    top = rec.recommend(3, n=5)
    u = int(rec.users.o2i[3])
    x = torch.tensor([[u, int(rec.items.o2i[i])] for i in top.items])
    assert rec.model(x).numpy() == pytest.approx(top.scores, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", [*FACTOR_MODELS, "popular"])
def test_predict_is_refused(name: str, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    with pytest.raises(CollabkitError, match="does not predict ratings"):
        rec.predict([1], [100])


@pytest.mark.parametrize("name", FACTOR_MODELS)
def test_fold_in_of_a_block_a_fan_recommends_block_a(name: str, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    new = rec.fold_in({100: 5, 101: 5, 102: 4, 103: 5})
    top = rec.recommend_for_ratings(new, n=4)
    assert set(top.items) <= set(BLOCK_A[4:]), top.items
    assert rec.fold_in({200: 5, 201: 4}).row.shape == rec.model.user_rows(torch.tensor([1])).shape[1:]


@pytest.mark.parametrize("name", ["ease", "itemknn", "ials", "easeknn"])
def test_similar_items_are_from_the_same_block(name: str, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    assert set(rec.similar_items(100, n=5).items) <= set(BLOCK_A)


def test_similar_items_of_popular_is_refused_with_a_reason(saved: dict[str, Path]) -> None:
    with pytest.raises(CollabkitError, match="no item vectors"):
        Recommender.load(saved["popular"]).similar_items(100)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ease", {"lambda": 500}, "unknown setting 'lambda'; it takes: l2=500.0"),
        ("ease", {"l2": -1}, "l2=-1: Input should be greater than 0"),
        ("ease", {"l2": "big"}, "valid number"),
        ("itemknn", {"k": 2.5}, "valid integer"),
        ("userknn", {"values": "stars"}, "'binary' or 'rating'"),
        ("ials", {"n_factors": 0}, "n_factors=0: Input should be greater than or equal to 1"),
        ("popular", {"k": 3}, "takes: none"),
    ],
)
def test_bad_options_are_refused(
    name: str, options: dict[str, Any], message: str, table: pd.DataFrame
) -> None:
    with pytest.raises(CollabkitError, match=message):
        train(table, TrainConfig(model=name, split=LAST, settings=options), log=None)


@pytest.mark.slow
def test_ease_on_ml100k_u1_reaches_ndcg(ml100k: pd.DataFrame, tmp_path: Path) -> None:
    from collabkit.workflows import evaluate_saved

    train(ml100k, TrainConfig(model="ease", split=SplitSpec(kind="u1")), out=tmp_path / "ease", log=None)
    ev = evaluate_saved(tmp_path / "ease", ml100k, ranking_k=10)
    assert ev.ranking is not None and ev.ranking["users"]["counted"] == 456
    assert ev.ranking["metrics"]["ndcg@10"] >= 0.44
