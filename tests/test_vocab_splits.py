"""Vocabularies and splits: round trips, partitions, and the canonical ML-100k layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabkit import CollabkitError, UnknownIdError, Vocab, kfold, last_n_per_user, make_split, random_split
from collabkit.data.splits import ml100k_split, time_cutoff


@given(st.lists(st.one_of(st.integers(-1000, 1000)), min_size=1, max_size=50))
def test_vocab_round_trip_ints(values: list[int]) -> None:
    v = Vocab.from_values(values, name="user")
    idx = v.encode(values)
    assert (idx >= 1).all()
    assert v.decode(idx) == values
    assert v[0] == "#na#" and len(v) == len(set(values)) + 1
    assert list(v.items[1:]) == sorted(set(values))


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=30))
def test_vocab_round_trip_titles(values: list[str]) -> None:
    values = [x for x in values if x != "#na#"] or ["a"]
    v = Vocab.from_values(values, name="title")
    assert v.decode(v.encode(values)) == values
    assert all(v.o2i[x] == i for i, x in enumerate(v.items))


def test_vocab_unknown_policy() -> None:
    v = Vocab.from_values([5, 7], name="user")
    assert v.encode([7, 6]).tolist() == [2, 0]
    with pytest.raises(UnknownIdError, match="user 6 is not in the model's vocabulary"):
        v.encode([7, 6], unknown="error")
    assert 0 not in v and "#na#" not in v and 5 in v


def test_random_split_matches_fastai_randomsplitter() -> None:
    import torch

    train, valid = random_split(1000, 0.2, seed=42)
    torch.manual_seed(42)  # fastai's RandomSplitter seeds the global generator, then randperm
    perm = torch.randperm(1000).numpy()
    assert valid.tolist() == perm[:200].tolist()
    assert train.tolist() == perm[200:].tolist()


@settings(max_examples=30)
@given(st.integers(2, 300), st.floats(0.0, 0.9), st.integers(0, 2**31))
def test_random_split_partitions(n: int, pct: float, seed: int) -> None:
    train, valid = random_split(n, pct, seed)
    assert len(valid) == int(pct * n)
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(n))


@settings(max_examples=20)
@given(st.integers(5, 200), st.integers(2, 5), st.integers(0, 1000))
def test_kfold_every_row_in_exactly_one_fold(n: int, k: int, seed: int) -> None:
    valids = [v for _, v in kfold(n, k, seed)]
    assert sorted(np.concatenate(valids).tolist()) == list(range(n))
    for train, valid in kfold(n, k, seed):
        assert not set(train.tolist()) & set(valid.tolist())


def test_last_n_per_user_holds_out_latest(ratings: pd.DataFrame) -> None:
    train, valid = last_n_per_user(ratings, 2)
    held = ratings.iloc[valid]
    assert (held.groupby("user").size() == 2).all()
    kept = ratings.iloc[train]
    latest_kept = kept.groupby("user")["timestamp"].max()
    earliest_held = held.groupby("user")["timestamp"].min()
    assert (latest_kept.reindex(earliest_held.index) <= earliest_held).all()


def test_time_cutoff(ratings: pd.DataFrame) -> None:
    train, valid = time_cutoff(ratings, valid_pct=0.25)
    assert ratings.iloc[train]["timestamp"].max() < ratings.iloc[valid]["timestamp"].min()
    assert abs(len(valid) / len(ratings) - 0.25) < 0.01
    cut = int(ratings["timestamp"].median())
    _, valid = time_cutoff(ratings, cutoff=cut)
    assert (ratings.iloc[valid]["timestamp"] >= cut).all()


def test_ml100k_u_splits_are_the_five_file_blocks(ml100k: pd.DataFrame) -> None:
    table = ml100k
    tests = []
    for i in range(1, 6):
        train, test = ml100k_split(table, f"u{i}")
        assert len(test) == 20_000 and len(train) == 80_000
        assert set(test.tolist()) == set(range((i - 1) * 20_000, i * 20_000))
        sub = table.iloc[test]
        assert (np.diff(sub["user"].to_numpy()) >= 0).all()  # sorted by user as mku.sh sorts
        tests.append(test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(100_000))


def test_ml100k_ua_ub_hold_first_and_next_ten_per_user(ml100k: pd.DataFrame) -> None:
    table = ml100k
    _, ua = ml100k_split(table, "ua")
    _, ub = ml100k_split(table, "ub")
    assert len(ua) == 9430 and len(ub) == 9430 and not set(ua.tolist()) & set(ub.tolist())
    rows_of_user_7 = np.flatnonzero(table["user"].to_numpy() == 7)
    assert set(rows_of_user_7[:10].tolist()) <= set(ua.tolist())
    assert set(rows_of_user_7[10:20].tolist()) <= set(ub.tolist())


def test_split_errors_name_the_choices(ratings: pd.DataFrame) -> None:
    with pytest.raises(CollabkitError, match="unknown split 'u9'; expected one of: random, u1"):
        make_split(ratings, "u9")
    with pytest.raises(CollabkitError, match="defined on ML-100k's 100,000 rows"):
        make_split(ratings, "u1")


def test_ml100k_splits_refuse_another_table_of_100k_rows(ml100k: pd.DataFrame) -> None:
    """Rows, not counts: a reordered, relabelled or edited copy of u.data is not GroupLens's split."""
    shuffled = ml100k.sample(frac=1.0, random_state=0).reset_index(drop=True)  # same rows, new order
    relabelled = ml100k.assign(user=ml100k["user"] % 500 + 1)
    edited = ml100k.copy()
    edited.loc[5, "rating"] = 6 - edited.loc[5, "rating"]
    for table in (shuffled, relabelled, edited):
        with pytest.raises(CollabkitError, match="not u.data's .user, item, rating. rows in that order"):
            ml100k_split(table, "u1")
    text_ids = ml100k.assign(user=ml100k["user"].astype(str))
    with pytest.raises(CollabkitError, match="not u.data's"):
        make_split(text_ids, "ua")


@given(
    st.lists(st.integers(-50, 50), min_size=1, max_size=30, unique=True),
    st.lists(st.integers(-100, 100), min_size=1, max_size=30),
)
def test_unknown_ids_are_never_a_silent_index(known: list[int], asked: list[int]) -> None:
    v = Vocab.from_values(known)
    idx = v.encode(asked)  # fastai's policy: unknown -> 0, the `#na#` row, and only unknowns
    assert all((i == 0) == (a not in known) for a, i in zip(asked, idx, strict=True))
    if any(a not in known for a in asked):
        with pytest.raises(UnknownIdError):
            v.encode(asked, "error")
    else:
        assert v.decode(v.encode(asked, "error")) == asked


@settings(max_examples=40, deadline=None)
@given(
    st.integers(20, 120),
    st.sampled_from(["random", "kfold", "last", "recent", "time"]),
    st.integers(0, 10_000),
)
def test_every_split_partitions_the_rows_and_keeps_test_pairs_out_of_training(
    n: int, kind: str, seed: int
) -> None:
    from collabkit.data.splits import SplitSpec

    rng = np.random.default_rng(seed)
    pairs = rng.choice(12 * 15, size=min(n, 12 * 15), replace=False)
    table = pd.DataFrame(
        {"user": pairs // 15, "item": pairs % 15, "rating": 3.0, "timestamp": rng.integers(0, 50, len(pairs))}
    )
    train, test = make_split(table, SplitSpec(kind, seed=seed, k=3, fold=seed % 3, last_n=1))
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(table)))  # each row once
    key = table["user"] * 100 + table["item"]
    assert not set(key.iloc[train]) & set(key.iloc[test])


def test_recent_holds_out_each_users_latest_share(ratings: pd.DataFrame) -> None:
    from collabkit.data.splits import SplitSpec

    train, test = make_split(ratings, SplitSpec("recent", valid_pct=0.25))
    sizes = ratings.groupby("user").size()
    held = ratings.iloc[test].groupby("user").size().reindex(sizes.index, fill_value=0)
    assert (held == np.floor(0.25 * sizes)).all()
    latest_train = ratings.iloc[train].groupby("user")["timestamp"].max()
    earliest_test = ratings.iloc[test].groupby("user")["timestamp"].min()
    common = earliest_test.index
    assert (latest_train[common] <= earliest_test).all()


def test_encode_pairs_is_the_models_input_layout() -> None:
    from collabkit.data.vocab import encode_pairs

    users, items = Vocab.from_values([5, 7], name="user"), Vocab.from_values(["a", "b"], name="item")
    x = encode_pairs(users, items, [7, 5, 9], ["a", "b", "b"])
    assert x.dtype == np.int64 and x.shape == (3, 2)
    assert x.tolist() == [[2, 1], [1, 2], [0, 2]]  # the unknown user 9 lands on #na#
    with pytest.raises(UnknownIdError, match="user 9"):
        encode_pairs(users, items, [7, 5, 9], ["a", "b", "b"], unknown="error")
    with pytest.raises(ValueError, match="2 user ids but 1 item ids"):
        encode_pairs(users, items, [7, 5], ["a"])


def test_vocab_encode_refuses_a_policy_it_does_not_have() -> None:
    """`"mean"` is the recommender's answer for an unknown id, not an encoding; it used to pass as "na"."""
    v = Vocab.from_values([5, 7], name="user")
    with pytest.raises(ValueError, match="expected 'na' or 'error'"):
        v.encode([5, 6], unknown="mean")  # type: ignore[arg-type]
