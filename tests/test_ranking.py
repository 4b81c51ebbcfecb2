"""Ranking metrics: answers worked out by hand, properties of any list, one evaluation end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from collabkit import Vocab
from collabkit.bundle import TrainedModel
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model
from collabkit.ranking import (
    average_precision_at_k,
    catalogue_coverage,
    evaluate_ranking,
    hit_rate_at_k,
    hits_matrix,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from collabkit.recommend import Recommender


# -- known answers ----------------------------------------------------------------------------
def test_three_item_list_by_hand() -> None:
    # ranks 1 and 3 relevant, 2 relevant items in all
    hits = np.array([[True, False, True]])
    n_rel = np.array([2])
    assert precision_at_k(hits)[0] == pytest.approx(2 / 3)
    assert recall_at_k(hits, n_rel)[0] == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)  # 1.5
    idcg = 1 / math.log2(2) + 1 / math.log2(3)  # 1.6309
    assert ndcg_at_k(hits, n_rel)[0] == pytest.approx(dcg / idcg)
    assert ndcg_at_k(hits, n_rel)[0] == pytest.approx(0.919721, abs=1e-6)
    assert average_precision_at_k(hits, n_rel)[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert hit_rate_at_k(hits)[0] == 1.0


def test_more_relevant_items_than_k_and_misses() -> None:
    hits = np.array([[False, True], [False, False], [True, True]])
    n_rel = np.array([5, 3, 2])
    np.testing.assert_allclose(precision_at_k(hits), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(recall_at_k(hits, n_rel), [0.2, 0.0, 1.0])
    # the ideal list for 5 relevant and k = 2 is two hits
    ideal = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel), [(1 / math.log2(3)) / ideal, 0.0, 1.0])
    np.testing.assert_allclose(average_precision_at_k(hits, n_rel), [(1 / 2) / 2, 0.0, 1.0])
    np.testing.assert_allclose(hit_rate_at_k(hits), [1, 0, 1])


def test_users_with_nothing_relevant_give_nan() -> None:
    hits = np.array([[False, False]])
    assert np.isnan(recall_at_k(hits, np.array([0]))[0])
    assert np.isnan(ndcg_at_k(hits, np.array([0]))[0])
    assert np.isnan(average_precision_at_k(hits, np.array([0]))[0])


def test_hits_matrix_ignores_padding() -> None:
    rec = np.array([[3, 1, -1], [0, 2, 5]])
    hits = hits_matrix(rec, [np.array([1, 7]), [5, 0]])
    assert hits.tolist() == [[False, True, False], [True, False, True]]
    assert hits_matrix(np.zeros((0, 3), np.int64), []).shape == (0, 3)
    with pytest.raises(CollabkitError, match="one row per relevant set"):
        hits_matrix(rec, [[1]])


def test_catalogue_coverage() -> None:
    assert catalogue_coverage(np.array([[1, 2], [2, 3], [3, -1]]), 10) == pytest.approx(0.3)


def fixed_order_model() -> Recommender:
    """A dotbias model whose scores follow the item biases for every user: 10 > 11 > 12 > 13 > 14."""
    config = ModelConfig("dotbias", n_users=3, n_items=6, n_factors=2, y_range=(0.0, 5.5))
    model = build_model(config)
    with torch.no_grad():
        for table in (model.u_weight, model.i_weight, model.u_bias):
            table.weight.zero_()
        model.i_bias.weight[:, 0] = torch.tensor([0.0, 2.0, 1.5, 1.0, 0.5, 0.0])
    # user A rated item 10, user B item 11, in training; every item has a training rating
    train_x = torch.tensor([[1, 1], [2, 2], [1, 3], [2, 4], [2, 5]])
    saved = TrainedModel(
        model,
        config,
        Vocab(["A", "B"], name="user"),
        Vocab([10, 11, 12, 13, 14], name="item"),
        train_x,
        torch.full((5,), 3.0),
    )
    return Recommender(saved)


def test_evaluate_ranking_by_hand() -> None:
    rec = fixed_order_model()
    # A saw 10, 12 -> ranks 11, 13, 14: top 2 = 11, 13. Relevant for A: 11 and 14.
    # B saw 11, 13, 14 -> ranks 10, 12: top 2 = 10, 12. B has no relevant held-out item.
    # C is not in the model: cold.
    test = pd.DataFrame(
        {
            "user": ["A", "A", "A", "B", "C"],
            "item": [11, 14, 13, 12, 10],
            "rating": [5.0, 4.0, 2.0, 3.0, 5.0],
        }
    )
    result = evaluate_ranking(rec, test, k=2, min_count=1)  # every trained item: 1 to 3 ratings each
    m = result["metrics"]
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["map@2"] == pytest.approx(0.5)
    assert m["hit_rate@2"] == 1.0
    assert m["coverage@2"] == pytest.approx(4 / 5)  # 11, 13, 10, 12 of 5 items
    assert result["users"] == {"counted": 1, "no_relevant": 1, "cold": 1}
    assert result["random_precision@2"] == pytest.approx(2 / 3)  # A: 2 relevant of 3 candidates
    assert result["candidate_items"] == 5
    with pytest.raises(CollabkitError, match="no column 'rating'"):
        evaluate_ranking(rec, test.rename(columns={"rating": "stars"}), k=2)
    with pytest.raises(CollabkitError, match="k must be"):
        evaluate_ranking(rec, test, k=0)


def test_evaluate_ranking_threshold() -> None:
    result = evaluate_ranking(
        fixed_order_model(),
        pd.DataFrame({"user": ["A", "A"], "item": [11, 14], "rating": [5.0, 4.0]}),
        k=1,
        relevant_threshold=4.5,
        min_count=1,
    )
    assert result["metrics"]["precision@1"] == 1.0 and result["metrics"]["recall@1"] == 1.0


# -- properties -------------------------------------------------------------------------------
hits_arrays = hnp.arrays(bool, st.tuples(st.integers(1, 8), st.integers(1, 10)))


@settings(max_examples=100, deadline=None)
@given(hits=hits_arrays, extra=st.integers(0, 5))
def test_metrics_lie_in_zero_one_and_agree(hits: np.ndarray, extra: int) -> None:
    n_rel = hits.sum(1) + extra  # a user has at least as many relevant items as hits
    counted = n_rel > 0
    for values in (
        precision_at_k(hits),
        recall_at_k(hits, n_rel)[counted],
        ndcg_at_k(hits, n_rel)[counted],
        average_precision_at_k(hits, n_rel)[counted],
        hit_rate_at_k(hits),
    ):
        assert ((values >= -1e-12) & (values <= 1 + 1e-12)).all()
    assert ((precision_at_k(hits) > 0) == (hit_rate_at_k(hits) > 0)).all()
    ndcg = ndcg_at_k(hits, n_rel)
    assert (ndcg[counted & ~hits.any(1)] == 0).all()


@settings(max_examples=50, deadline=None)
@given(k=st.integers(1, 10), n_rel=st.integers(1, 12))
def test_a_perfect_list_scores_one(k: int, n_rel: int) -> None:
    hits = np.zeros((1, k), bool)
    hits[0, : min(k, n_rel)] = True
    rel = np.array([n_rel])
    assert ndcg_at_k(hits, rel)[0] == pytest.approx(1.0)
    assert average_precision_at_k(hits, rel)[0] == pytest.approx(1.0)
    assert recall_at_k(hits, rel)[0] == pytest.approx(min(k, n_rel) / n_rel)


@settings(max_examples=50, deadline=None)
@given(
    rec=hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=st.integers(-1, 9)),
    data=st.data(),
)
def test_hits_matrix_matches_a_plain_loop(rec: np.ndarray, data: st.DataObject) -> None:
    relevant = [data.draw(st.sets(st.integers(0, 9), max_size=5)) for _ in range(len(rec))]
    expected = [[int(i) in rel for i in row] for row, rel in zip(rec, relevant, strict=True)]
    assert hits_matrix(rec, relevant).tolist() == expected
