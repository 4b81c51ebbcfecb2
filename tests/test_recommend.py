"""Recommendations: a checkerboard whose answer is known, hand-set models, and a contract every model runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collabkit import CollabDataLoaders, UnknownIdError, Vocab, collab_learner, set_seed
from collabkit.bundle import SeenItems, TrainedModel
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model, sigmoid_range
from collabkit.recommend import BatchRecommendations, Recommendations, Recommender, cosine_neighbours
from tests.conftest import epoch_families, small_settings

MODELS = epoch_families()


def checkerboard(n_users: int = 40, n_items: int = 30, density: float = 0.7, seed: int = 0) -> pd.DataFrame:
    """Two groups of users who like two disjoint groups of items: users 1, 3, 5.. like items 101, 103..

    Own-group ratings are 4 or 5, other-group ratings 1 or 2; each user rates ~70% of the items,
    so every user has unrated items of both groups.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for i in range(100, 100 + n_items):
            if rng.random() < density:
                same = u % 2 == i % 2
                rows.append((u, i, float(rng.integers(4, 6) if same else rng.integers(1, 3))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def same_group(user: Any, item: Any) -> bool:
    return user % 2 == item % 2


@pytest.fixture(scope="module")
def board() -> pd.DataFrame:
    return checkerboard()


@pytest.fixture(scope="module")
def recs(board: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recommender]:
    """Every built-in model trained on the checkerboard, saved and loaded back (a second or two each)."""
    out = {}
    for name in MODELS:
        set_seed(0)
        dls = CollabDataLoaders.from_df(board, valid_pct=0.0, seed=0, bs=64)
        shape = small_settings(name)  # the settings each family takes (a classifier predicts levels)
        learn = collab_learner(dls, model=name, log=None, show_progress=False, **shape)
        learn.fit_one_cycle(8 if name == "classifier" else 5, 1e-2 if name == "classifier" else 3e-2)
        path = learn.export(str(tmp_path_factory.mktemp(name) / "m"))
        out[name] = Recommender.load(path)
    return out


def seen_items(board: pd.DataFrame, user: Any) -> set[Any]:
    return set(board.loc[board["user"] == user, "item"])


def assert_same_ranking(a: Recommendations, b: Recommendations, atol: float = 1e-4) -> None:
    """Equal lists up to float noise: scores close, items equal except inside near-ties."""
    assert len(a) == len(b)
    np.testing.assert_allclose(a.scores, b.scores, atol=atol)
    for j, (x, y) in enumerate(zip(a.items, b.items, strict=True)):
        if x != y:
            assert (np.abs(a.scores - a.scores[j]) < 2 * atol).sum() > 1, f"rank {j}: {x} != {y}"


def assert_same_lists(a: BatchRecommendations, b: BatchRecommendations) -> None:
    assert a.item_idx.shape == b.item_idx.shape
    for row in range(len(a)):
        assert_same_ranking(a[row], b[row])


# -- the checkerboard: known answers ---------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_unrated_own_group_items_rank_first(
    recs: dict[str, Recommender], board: pd.DataFrame, name: str
) -> None:
    rec = recs[name]
    users = sorted(board["user"].unique())
    top = rec.recommend_many(users, n=30)
    for row, user in enumerate(users):
        items = [i for i in top.items[row] if i is not None]
        unseen = set(range(100, 130)) - seen_items(board, user)
        assert set(items) == unseen  # every unseen item, nothing else
        own = [same_group(user, i) for i in items]
        assert own == sorted(own, reverse=True), f"{name}: user {user} ranks an other-group item first"


@pytest.mark.parametrize("name", ["dot", "dotbias", "nn"])
def test_similar_items_and_users_stay_in_their_group(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    near = rec.similar_items(101, n=5)
    assert 101 not in near.items and all(i % 2 == 1 for i in near.items)
    both = rec.similar_items([101, "103"], n=5)
    assert not {101, 103} & set(both.items) and all(i % 2 == 1 for i in both.items)
    assert list(both.scores) == sorted(both.scores, reverse=True) and both.scores[0] <= 1 + 1e-6
    users = rec.similar_users(2, n=5)
    assert 2 not in users.users and all(u % 2 == 0 for u in users.users)


@pytest.mark.parametrize("name", MODELS)
def test_fold_in_a_new_user_of_one_group(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    ratings = {101: 5.0, 103: 5.0, 105: 4.0, 100: 1.0, 102: 2.0}
    got = rec.recommend_for_ratings(ratings, n=5)
    assert len(got) == 5 and not set(ratings) & set(got.items)
    assert all(i % 2 == 1 for i in got.items), f"{name}: {got.items}"
    new = rec.fold_in(ratings)
    odd, even = rec.predict_new(new, [107, 109, 111]), rec.predict_new(new, [104, 106, 108])
    assert odd.min() > even.max()


@pytest.mark.parametrize("name", MODELS)
def test_fold_in_of_a_users_own_ratings_matches_the_user(
    recs: dict[str, Recommender], board: pd.DataFrame, name: str
) -> None:
    rec = recs[name]
    for user in (1, 2, 7):
        rows = board[board["user"] == user]
        new = rec.fold_in(dict(zip(rows["item"], rows["rating"], strict=True)))
        preds = rec.predict_new(new, rows["item"].tolist())
        assert np.corrcoef(preds, rows["rating"])[0, 1] > 0.8
        mine = set(rec.recommend(user, n=5).items)
        folded = set(rec.recommend_for_ratings(new, n=5).items)
        assert len(mine & folded) >= 3


@pytest.mark.parametrize("name", MODELS)
def test_fold_in_with_no_ratings_is_the_average_user(recs: dict[str, Recommender], name: str) -> None:
    rec = Recommender(recs[name].trained)  # fresh caches: popular() first, then a fold-in
    popular = rec.popular(n=8).items  # caches the average user inside inference mode
    assert len(rec.recommend_for_ratings({101: 5.0}, n=3)) == 3  # which a fold-in can still train from
    assert rec.recommend_for_ratings({}, n=8).items == popular
    assert rec.fold_in({}).rated == {}


# -- the contract every model runs --------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_batch_equals_one_by_one(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    users = [3, 1, 40, 2, 17]
    batch = rec.recommend_many(users, n=7, min_count=20)
    for row, user in enumerate(users):
        one = rec.recommend(user, n=7, min_count=20)
        assert one.user == batch[row].user == user
        assert_same_ranking(one, batch[row])


@pytest.mark.parametrize("name", MODELS)
def test_small_blocks_give_the_same_answers(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    users = sorted(rec.users[1:])
    big = rec.recommend_many(users, n=6)
    small = Recommender(rec.trained, score_budget=7)  # one user per block; the deep models chunk items too
    assert small.engine.block_rows(len(rec.items)) == 1
    assert_same_lists(big, small.recommend_many(users, n=6))


@pytest.mark.parametrize("name", MODELS)
def test_scores_are_the_models_predicted_ratings(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    top = rec.recommend(5, n=10, exclude_seen=False)
    np.testing.assert_allclose(top.scores, rec.predict([5] * len(top), top.items), atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_seen_items_excluded_unless_asked(
    recs: dict[str, Recommender], board: pd.DataFrame, name: str
) -> None:
    rec = recs[name]
    for user in (1, 2, 33):
        seen = seen_items(board, user)
        assert not seen & set(rec.recommend(user, n=30).items)
        everything = rec.recommend(user, n=30, exclude_seen=False)
        assert set(everything.items) == set(range(100, 130))


@pytest.mark.parametrize("name", MODELS)
def test_unknown_ids_follow_the_policy(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    with pytest.raises(UnknownIdError, match="user 999"):
        rec.recommend(999)
    fallback = rec.recommend(999, n=4, unknown="popular")
    assert fallback.items == rec.popular(n=4).items and fallback.user == 999
    mixed = rec.recommend_many([1, 999], n=4, unknown="popular")
    assert list(mixed.items[1]) == rec.popular(n=4).items
    assert list(mixed.items[0]) == rec.recommend(1, n=4).items
    with pytest.raises(UnknownIdError, match="item 'nope'"):
        rec.similar_items("nope")
    with pytest.raises(UnknownIdError):
        rec.recommend(1, items=[100, 5000])
    with pytest.raises(UnknownIdError):
        rec.fold_in({5000: 4.0})
    assert rec.predict([999, 1], [100, 5000], unknown="mean") == pytest.approx([rec.global_mean] * 2)


@pytest.mark.parametrize("name", MODELS)
def test_top_n_is_sorted_unique_and_bounded(recs: dict[str, Recommender], name: str) -> None:
    rec = recs[name]
    users = sorted(rec.users[1:])
    for n in (1, 3, 40):
        top = rec.recommend_many(users, n=n)
        assert top.item_idx.shape == (len(users), min(n, 30))  # never wider than the 30 trained items
        for row in range(len(users)):
            r = top[row]
            assert len(r) <= n and len(set(r.items)) == len(r)
            assert list(r.scores) == sorted(r.scores, reverse=True)
            assert "#na#" not in r.items and None not in r.items
        if n == 40:  # more than the unseen items: padded with -1 / None / NaN
            assert (top.item_idx == -1).any() and np.isnan(top.scores[top.item_idx == -1]).all()


@pytest.mark.parametrize("name", MODELS)
def test_allow_list_exclude_and_min_count(
    recs: dict[str, Recommender], board: pd.DataFrame, name: str
) -> None:
    rec = recs[name]
    allowed = [101, 103, 100, 129]
    got = rec.recommend(1, n=10, items=allowed, exclude_seen=False)
    assert set(got.items) <= set(allowed)
    got = rec.recommend(1, n=10, exclude=[101, 103], exclude_seen=False)
    assert not {101, 103} & set(got.items)
    counts = board["item"].value_counts()
    threshold = int(counts.median())
    got = rec.recommend(1, n=30, min_count=threshold, exclude_seen=False)
    assert set(got.items) == set(counts[counts >= threshold].index)
    with pytest.raises(CollabkitError, match="n must be"):
        rec.recommend(1, n=0)


def test_frames_and_records(recs: dict[str, Recommender]) -> None:
    rec = recs["dotbias"]
    one = rec.recommend(1, n=3)
    frame = one.to_frame()
    assert list(frame.columns) == ["rank", "item", "title", "score"] and list(frame["rank"]) == [1, 2, 3]
    assert one.to_records()[0]["item"] == one.items[0]
    long = rec.recommend_many([1, 2], n=3).to_frame()
    assert list(long["user"]) == [1, 1, 1, 2, 2, 2]


# -- hand-set models: answers worked out on paper ---------------------------------------------
def hand_model(
    item_bias: list[float],
    user_vecs: np.ndarray | None = None,
    item_vecs: np.ndarray | None = None,
    train: Sequence[tuple[int, int]] = (),
    titles: dict[Any, str] | None = None,
    y_range: tuple[float, float] = (0.0, 5.5),
    ratings: Sequence[float] | None = None,
) -> Recommender:
    """A dotbias model with the given weights; raw user ids 'u1'.., item ids 10, 11, ...

    The training ratings are `ratings`, or 1, 2, .. 5 in turn (their range is the scale answers are
    clipped to)."""
    n_items = len(item_bias)
    k = 2 if item_vecs is None else item_vecs.shape[1]
    n_users = 3 if user_vecs is None else len(user_vecs)
    config = ModelConfig("dotbias", n_users=n_users + 1, n_items=n_items + 1, n_factors=k, y_range=y_range)
    model = build_model(config)
    with torch.no_grad():
        model.u_weight.weight.zero_()
        model.i_weight.weight.zero_()
        model.u_bias.weight.zero_()
        model.i_bias.weight[1:, 0] = torch.tensor(item_bias)
        if user_vecs is not None:
            model.u_weight.weight[1:] = torch.tensor(user_vecs, dtype=torch.float32)
        if item_vecs is not None:
            model.i_weight.weight[1:] = torch.tensor(item_vecs, dtype=torch.float32)
    pairs = list(train) or [(u, i) for u in range(1, n_users + 1) for i in range(1, n_items + 1)]
    x = torch.tensor(pairs, dtype=torch.int64)
    saved = TrainedModel(
        model,
        config,
        Vocab([f"u{j}" for j in range(1, n_users + 1)], name="user"),
        Vocab(list(range(10, 10 + n_items)), name="item"),
        x,
        torch.tensor([1.0 + k % 5 for k in range(len(x))] if ratings is None else list(ratings)),
        titles or {},
    )
    return Recommender(saved)


def test_popular_follows_item_biases_and_min_count() -> None:
    # user 1 rated items 10 and 11; user 2 rated 11, 12, 13; item 14 has one rating
    rec = hand_model([0.5, 2.0, -1.0, 1.0, 3.0], train=[(1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 5)])
    assert rec.popular(n=5, min_count=1).items == [14, 11, 13, 10, 12]
    assert rec.popular(n=5, min_count=2).items == [11]
    assert rec.popular(n=5).items == []  # the default MIN_COUNT: no item here has 10 ratings
    expected = sigmoid_range(torch.tensor(3.0), 0.0, 5.5).item()
    assert expected > 5.0  # past the training ratings' range (1 to 5): clipped to 5
    assert rec.popular(n=1, min_count=1).scores[0] == pytest.approx(5.0)
    assert rec.recommend("u1", n=5, min_count=1).items == [14, 13, 12]  # 10 and 11 were rated


def test_recommend_with_factors_worked_out() -> None:
    # scores: u1 . items = [1, 0, -1]; user u2 the opposite; zero biases
    rec = hand_model(
        [0.0, 0.0, 0.0],
        user_vecs=np.array([[1.0, 0.0], [-1.0, 0.0]]),
        item_vecs=np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
        train=[(1, 1), (2, 1)],
        ratings=[1.0, 5.0],
    )
    # items 11 and 12 have no training ratings: never answers, whatever min_count says
    assert rec.recommend("u1", n=2, min_count=1).items == []
    with pytest.raises(CollabkitError, match="min_count must be a whole number of at least 1"):
        rec.recommend("u1", n=2, min_count=0)
    top = rec.recommend("u1", n=2, exclude_seen=False, min_count=1)
    assert top.items == [10]
    np.testing.assert_allclose(top.scores, [5.5 / (1 + np.exp(-1))], rtol=1e-6)
    u2 = rec.recommend("u2", n=1, exclude_seen=False, min_count=1)
    assert u2.scores[0] == pytest.approx(5.5 / (1 + np.exp(1)))


def test_recommenders_share_what_their_model_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    rec = hand_model([0.5, 2.0, -1.0, 1.0], item_vecs=vecs, train=[(1, 1), (1, 2), (2, 2), (2, 3), (3, 4)])
    t = rec.trained
    built: list[int] = []
    original = SeenItems.of.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(SeenItems, "of", classmethod(lambda cls, *a: built.append(1) or original(cls, *a)))
    again = Recommender(t)
    assert again.resolve is rec.resolve is t.resolver  # one resolver per model, not per facade
    assert again.engine.seen is rec.engine.seen is t.seen and built == []  # the CSR is not rebuilt
    assert (
        again.recommend("u1", n=5, min_count=1).items
        == rec.recommend("u1", n=5, min_count=1).items
        == [13, 12]
    )
    assert (
        again.similar_items(10, n=3, min_count=1).items
        == rec.similar_items(10, n=3, min_count=1).items
        == [13, 12, 11]
    )
    assert t.unit_item_vectors[1:].norm(dim=1).numpy() == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), max_size=40),
    users=st.lists(st.integers(0, 5), max_size=8),
)
def test_seen_items_rows_match_the_training_rows(pairs: list[tuple[int, int]], users: list[int]) -> None:
    x = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    y = torch.arange(len(pairs), dtype=torch.float32)  # each row's rating is its position
    seen = SeenItems.of(x, y, 6)
    for u in range(6):
        items, ratings = seen.row(u)
        mine = [(i, float(k)) for k, (v, i) in enumerate(pairs) if v == u]
        assert list(zip(items.tolist(), ratings.tolist(), strict=True)) == mine  # training order kept
        for i in range(7):
            first = next((r for j, r in mine if j == i), None)
            assert seen.rating(u, i) == first
    rows, items = seen.pairs(torch.tensor(users, dtype=torch.long))
    expected = sorted((p, i) for p, u in enumerate(users) for v, i in pairs if v == u)
    assert sorted(zip(rows.tolist(), items.tolist(), strict=True)) == expected


def test_fold_in_recovers_the_user_that_made_the_ratings() -> None:
    rng = np.random.default_rng(3)
    item_vecs = rng.normal(size=(12, 3))
    bias = rng.normal(scale=0.5, size=12)
    rec = hand_model(list(bias), item_vecs=item_vecs, user_vecs=rng.normal(size=(3, 3)))
    true_vec, true_bias = np.array([0.4, -0.3, 0.2]), 0.25
    logits = item_vecs @ true_vec + true_bias + bias
    ratings = {10 + j: float(5.5 / (1 + np.exp(-z))) for j, z in enumerate(logits)}
    new = rec.fold_in(ratings, strength=1e-6)
    np.testing.assert_allclose(new.row[:3].numpy(), true_vec, atol=1e-3)  # row: [vector, bias, 1]
    assert float(new.row[3]) == pytest.approx(true_bias, abs=1e-3)
    np.testing.assert_allclose(rec.predict_new(new, list(ratings)), list(ratings.values()), atol=1e-3)


def test_fold_in_rejects_bad_ratings() -> None:
    rec = hand_model([0.0, 1.0])
    with pytest.raises(CollabkitError, match="not a number"):
        rec.fold_in({10: "great"})
    with pytest.raises(CollabkitError, match="finite"):
        rec.fold_in({10: float("nan")})


def test_items_by_title_any_case_and_close_titles_suggested() -> None:
    rec = hand_model([0.0, 1.0], titles={10: "Star Wars (1977)", 11: "Titanic (1997)"})
    assert rec.parse_item("star wars (1977)") == 10 and rec.parse_item(" 11 ") == 11
    with pytest.raises(UnknownIdError, match="did you mean 'Star Wars \\(1977\\)'"):
        rec.parse_item("Star Wars")


def test_cosine_neighbours_worked_out() -> None:
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    idx, sims = cosine_neighbours(table, [1], n=3)  # row 0 is a zero vector: similarity 0, like row 3
    assert idx[0] == 2 and set(idx[1:].tolist()) == {0, 3}
    assert sims[0] == pytest.approx(2 / np.hypot(2, 0.1))
    idx, _ = cosine_neighbours(table, [1, 3], n=2, candidates=torch.tensor([False, True, True, True, True]))
    assert idx.tolist() == [2, 4] and 1 not in idx and 3 not in idx


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_items=st.integers(1, 12),
    n=st.integers(1, 15),
    min_count=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    exclude_seen=st.booleans(),
)
def test_top_n_properties(n_items: int, n: int, min_count: int, seed: int, exclude_seen: bool) -> None:
    rng = np.random.default_rng(seed)
    train = [(u, i) for u in range(1, 4) for i in range(1, n_items + 1) if rng.random() < 0.5]
    train += [(u, 1) for u in range(1, 4) if all(pu != u for pu, _ in train)]  # every user has a rating
    rec = hand_model(
        list(rng.normal(size=n_items)),
        user_vecs=rng.normal(size=(3, 2)),
        item_vecs=rng.normal(size=(n_items, 2)),
        train=train,
    )
    counts = rec.item_counts.numpy()
    top = rec.recommend_many(["u1", "u2", "u3"], n=n, min_count=min_count, exclude_seen=exclude_seen)
    for row, user in enumerate(["u1", "u2", "u3"]):
        r = top[row]
        assert len(r) <= n and len(set(r.items)) == len(r)
        assert all(np.diff(r.scores) <= 0)
        assert all(counts[i - 9] >= min_count for i in r.items) and "#na#" not in r.items
        if exclude_seen:
            seen = {i + 9 for u, i in train if u == row + 1}
            assert not seen & set(r.items)
        one = rec.recommend(user, n=n, min_count=min_count, exclude_seen=exclude_seen)
        assert one.items == r.items


# -- real data --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml100k_u1(ml100k: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from collabkit.data.splits import SplitSpec
    from collabkit.workflows import TrainConfig, train

    out = tmp_path_factory.mktemp("u1") / "dotbias"
    train(ml100k, TrainConfig(split=SplitSpec("u1")), data_name="ml-100k", out=out, log=None)
    return out


@pytest.mark.slow
def test_ml100k_ranking_beats_random_and_star_wars_fans_get_sci_fi(
    ml100k: pd.DataFrame, ml100k_u1: Path
) -> None:
    from collabkit.data.splits import make_split
    from collabkit.ranking import evaluate_ranking

    rec = Recommender.load(ml100k_u1)
    _, test_rows = make_split(ml100k, "u1")
    result = evaluate_ranking(rec, ml100k.iloc[test_rows], k=10)
    m = result["metrics"]
    assert result["users"]["counted"] > 400
    assert m["precision@10"] > 5 * result["random_precision@10"] and m["precision@10"] > 0.08
    assert m["hit_rate@10"] > 0.4 and 0 < m["ndcg@10"] <= 1 and 0 < m["coverage@10"] <= 1

    fan = rec.fold_in({"Star Wars (1977)": 5, "Return of the Jedi (1983)": 5})
    average = rec.fold_in({})
    sci_fi = ["Empire Strikes Back, The (1980)", "Alien (1979)", "Blade Runner (1982)", "Aliens (1986)"]
    others = ["Sense and Sensibility (1995)", "English Patient, The (1996)", "Fargo (1996)", "Titanic (1997)"]
    lift_sci = rec.predict_new(fan, sci_fi) - rec.predict_new(average, sci_fi)
    lift_other = rec.predict_new(fan, others) - rec.predict_new(average, others)
    assert lift_sci.mean() > lift_other.mean()
    empire = rec.parse_item("Empire Strikes Back, The (1980)")
    fan_list = rec.recommend_for_ratings(fan, n=100).items
    popular_list = rec.popular(n=100).items
    assert fan_list.index(empire) < popular_list.index(empire)
