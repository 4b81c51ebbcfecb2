"""Biased ALS (`als`): each half-step is the closed-form ridge solution, the fit recovers planted
structure, predictions stay in the training range, fold-in repeats a trained user's solve, and bad
input is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit.models.als as als
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model
from collabkit.models.als import BiasedALS, Side, solve_rows
from tests.conftest import planted_mf as planted


def fitted(x: torch.Tensor, y: torch.Tensor, n_users: int, n_items: int, **settings: object) -> BiasedALS:
    torch.manual_seed(0)
    model = build_model(ModelConfig("als", n_users, n_items, **settings))
    assert isinstance(model, BiasedALS)
    model.fit_direct(x, y)
    return model


def biases_only_rmse(x: torch.Tensor, y: torch.Tensor, held: torch.Tensor, truth: torch.Tensor) -> float:
    """Held-out RMSE of mu + b_u + b_i fitted by numpy least squares (a small ridge), independently."""
    u, i, r = x[:, 0].numpy(), x[:, 1].numpy(), y.double().numpy()
    n_u, n_i = int(held[:, 0].max()) + 1, int(held[:, 1].max()) + 1
    design = np.zeros((len(r), n_u + n_i))
    design[np.arange(len(r)), u] = 1.0
    design[np.arange(len(r)), n_u + i] = 1.0
    mu = r.mean()
    w = np.linalg.solve(design.T @ design + 1e-3 * np.eye(n_u + n_i), design.T @ (r - mu))
    pred = mu + w[held[:, 0].numpy()] + w[n_u + held[:, 1].numpy()]
    return float(np.sqrt(np.mean((pred - truth.double().numpy()) ** 2)))


def test_it_recovers_a_planted_low_rank_matrix_with_biases() -> None:
    pairs, ratings, seen = planted()
    model = fitted(pairs[seen], ratings[seen], 60, 40, n_factors=2, reg=0.5, iterations=30)
    held = ~seen
    rmse = float((model(pairs[held]) - ratings[held]).square().mean().sqrt())
    baseline = biases_only_rmse(pairs[seen], ratings[seen], pairs[held], ratings[held])
    assert baseline > 0.8  # the planted products are far from negligible
    assert rmse < 0.25 * baseline  # near the noise (0.1), far below the biases-only fit
    assert rmse < 0.2


@pytest.mark.parametrize("weighted", [False, True])
def test_a_half_step_is_each_users_closed_form_ridge_solution(
    weighted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """solve_rows, run in several row blocks and Gram column steps, against numpy for every user."""
    monkeypatch.setattr(als, "BLOCK", 40)  # 3 rows a block, 1 Gram column a product: all paths run
    g = torch.Generator().manual_seed(1)
    n_users, n_items, d, reg = 11, 9, 4, 0.7
    pairs = torch.cartesian_prod(torch.arange(n_users), torch.arange(n_items))
    pairs = pairs[torch.rand(len(pairs), generator=g) < 0.4]
    pairs = pairs[pairs[:, 0] != 5]  # user 5 has no ratings: its row solves to 0
    r = torch.randn(len(pairs), generator=g, dtype=torch.float64)
    side = Side(pairs[:, 0], pairs[:, 1], r, n_users, n_items)
    design = torch.randn(n_items, d, generator=g, dtype=torch.float64)
    target = side.r * 2 - 1  # any per-rating targets, in the side's row order
    out = solve_rows(side, design, target, reg, weighted)
    assert out is not None
    x, t, u_of = design.numpy(), target.numpy(), np.repeat(np.arange(n_users), side.count.numpy())
    for u in range(n_users):
        mine = u_of == u
        rated = side.col.numpy()[mine]
        lam = reg * (max(int(mine.sum()), 1) if weighted else 1.0)
        a = x[rated].T @ x[rated] + lam * np.eye(d)
        expected = np.linalg.solve(a, x[rated].T @ t[mine])
        np.testing.assert_allclose(out[u].numpy(), expected, rtol=1e-9, atol=1e-12)
    assert bool((out[5] == 0).all())


def test_the_fit_solves_users_against_the_items_factors_and_biases() -> None:
    """A user's fold-in (strength 0) is the user half-step; numpy's ridge of [p, b_u] against the
    rated items' [q_i, 1] with targets r - mu - b_i gives the same row."""
    pairs, ratings, seen = planted(n_users=30, n_items=20, seed=2)
    model = fitted(pairs[seen], ratings[seen], 30, 20, n_factors=3, reg=2.0, iterations=5)
    x, y = pairs[seen], ratings[seen]
    mine = x[:, 0] == 7
    items, r = x[mine, 1], y[mine].double().numpy()
    q = model.item_factors[items].double().numpy()
    design = np.hstack([q, np.ones((len(q), 1))])
    target = r - float(model.offset) - model.item_bias[items].double().numpy()
    expected = np.linalg.solve(design.T @ design + 2.0 * np.eye(4), design.T @ target)
    prior = model.user_rows(torch.arange(1, 30)).mean(0)
    row = model.fold_in(items, y[mine], prior, 0.0)
    np.testing.assert_allclose(row[:4].double().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert float(row[4]) == 1.0
    pulled = model.fold_in(items, y[mine], prior, 1e6)  # a huge strength: the average user
    assert torch.allclose(pulled[:4], prior[:4], atol=1e-3)


def test_fold_in_of_a_trained_users_ratings_gives_their_row() -> None:
    pairs, ratings, seen = planted(seed=3)
    model = fitted(pairs[seen], ratings[seen], 60, 40, n_factors=2, reg=1.0, iterations=60)
    x, y = pairs[seen], ratings[seen]
    prior = model.user_rows(torch.arange(60)).mean(0)
    for user in (0, 17, 42):
        mine = x[:, 0] == user
        row = model.fold_in(x[mine, 1], y[mine], prior, 0.0)
        trained = model.user_rows(torch.tensor([user]))[0]
        assert torch.allclose(row, trained, atol=1e-3), (row, trained)
        other = model.user_rows(torch.tensor([(user + 1) % 60]))[0]
        assert not torch.allclose(row, other, atol=1e-1)  # close to its own row, not any row


def test_predictions_are_clipped_to_the_training_range_and_rows_times_side_scores_them() -> None:
    # user 0 rates everything 5 and item 0 is rated 5 by everyone: the unclipped score passes 5
    pairs = torch.cartesian_prod(torch.arange(8), torch.arange(6))
    g = torch.Generator().manual_seed(4)
    ratings = torch.randint(1, 6, (len(pairs),), generator=g).float()
    ratings[(pairs[:, 0] == 0) | (pairs[:, 1] == 0)] = 5.0
    train = pairs[:, 0] + pairs[:, 1] != 0  # (0, 0) held out
    model = fitted(pairs[train], ratings[train], 8, 6, n_factors=2, reg=0.05, iterations=10)
    parts = model.explain(0, 0)
    assert parts.raw > 5.0  # the model's raw score leaves the range...
    assert parts.raw == pytest.approx(
        parts.offset + parts.user_bias + parts.item_bias + float(parts.factor_products.sum())
    )
    preds = model(pairs)
    assert float(preds.max()) <= 5.0 and float(preds.min()) >= 1.0  # ...the prediction does not
    assert float(model(torch.tensor([[0, 0]]))) == 5.0
    block = model.score_block(model.user_rows(torch.arange(8)), model.item_side(torch.arange(6)))
    assert torch.allclose(model.raw_to_rating(block).flatten(), preds, atol=1e-5)
    assert model.user_vectors().shape == (8, 2) and model.item_vectors().shape == (6, 2)
    assert model.item_biases() is model.item_bias and model.user_biases() is model.user_bias


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0), "no training ratings"),
        (torch.zeros(3, 3, dtype=torch.long), torch.ones(3), r"x \(N, 2\)"),
        (torch.tensor([[1, 1], [9, 1]]), torch.ones(2), "outside the model's 5 users"),
        (torch.tensor([[1, 1], [2, 2]]), torch.tensor([1.0, float("nan")]), "NaN"),
        (torch.tensor([[1.0, 1.0]]), torch.ones(1), "integer indices"),
    ],
)
def test_bad_fit_input_is_a_one_line_error(x: torch.Tensor, y: torch.Tensor, message: str) -> None:
    model = build_model(ModelConfig("als", 5, 4, n_factors=2))
    with pytest.raises(CollabkitError, match=message) as err:
        model.fit_direct(x, y)
    assert "\n" not in str(err.value) and str(err.value).startswith("als: ")


def test_bad_settings_are_one_line_errors_naming_the_setting() -> None:
    for values, name in (
        ({"reg": 0}, "reg"),
        ({"n_factors": 0}, "n_factors"),
        ({"iterations": 0}, "iterations"),
    ):
        with pytest.raises(CollabkitError, match=name) as err:
            ModelConfig("als", 5, 4, **values)
        assert "\n" not in str(err.value)
    assert ModelConfig("als", 5, 4).settings.used() == {"n_factors": 6, "reg": 11.0, "iterations": 20}
