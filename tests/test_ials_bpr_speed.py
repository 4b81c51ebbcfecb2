"""The fast fits of ials (conjugate-gradient steps on the CSR) and bpr (manual gradients on large
batches) against what they stand in for: the exact alternating solve, and a planted ranking.

No timing here: bench/ranking_speed.py measures the seconds beside implicit.
"""

from __future__ import annotations

from typing import Any

import torch

from collabkit.models import build_model
from collabkit.models.base import ModelConfig
from collabkit.models.ials import ImplicitALS, solve_cg, solve_exact


def made_up(
    n_users: int = 30, n_items: int = 25, n: int = 300, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2) distinct (user, item) pairs and (n,) ratings 1..5, every user and item rated."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(n_users * n_items, generator=g)[:n]
    x = torch.stack([keys // n_items, keys % n_items], 1)
    x[:n_users, 0] = torch.arange(n_users)  # every user and every item has a rating
    x[:n_items, 1] = torch.arange(n_items)
    y = torch.randint(1, 6, (n,), generator=g).float()
    return x, y


def ials(n_users: int, n_items: int, **settings: Any) -> ImplicitALS:
    model = build_model(ModelConfig("ials", n_users, n_items, **settings))
    if not isinstance(model, ImplicitALS):
        raise TypeError(f"expected ImplicitALS, got {type(model).__name__}")
    return model


def test_cg_steps_reach_the_exact_solution_of_every_row() -> None:
    x, y = made_up()
    model = ials(30, 25, n_factors=6, reg=0.5, alpha=2.0)
    by_user, _ = model.rated_cells(x, y)
    items = torch.randn(25, 6, generator=torch.Generator().manual_seed(1))
    exact = solve_exact(by_user, items, 0.5)
    start = torch.zeros(30, 6)
    three = solve_cg(by_user, start, items, 0.5, 3)
    many = solve_cg(by_user, start, items, 0.5, 30)
    assert three is not None and many is not None
    err_three = (three - exact).norm() / exact.norm()
    assert (many - exact).norm() / exact.norm() < 1e-4
    assert err_three > 1e-4  # 3 steps from 0 on 6 unknowns are not exact: the test can tell
    # warm starts: 3 steps at a time from the last answer converge to the same solution
    warm = start
    for _ in range(10):
        nxt = solve_cg(by_user, warm, items, 0.5, 3)
        assert nxt is not None
        warm = nxt
    assert (warm - exact).norm() / exact.norm() < 1e-4


def test_a_fit_with_as_many_cg_steps_as_factors_is_exact_als() -> None:
    """With 3 factors, 3 CG steps solve each 3 x 3 system exactly: fit_direct must then equal ALS
    by exact Cholesky solves from the same start, sweep for sweep."""
    x, y = made_up(seed=2)
    torch.manual_seed(0)
    model = ials(30, 25, n_factors=3, reg=1.0, alpha=1.0, iterations=5)
    items = model.item_factors.clone()
    by_user, by_item = model.rated_cells(x, y)
    users = torch.zeros(30, 3)
    for _ in range(5):
        users = solve_exact(by_user, items, 1.0)
        items = solve_exact(by_item, users, 1.0)
    model.fit_direct(x, y)
    assert torch.allclose(model.user_factors, users, atol=1e-4, rtol=1e-3)
    assert torch.allclose(model.item_factors, items, atol=1e-4, rtol=1e-3)


def test_a_repeated_pair_keeps_its_last_rating() -> None:
    x = torch.tensor([[0, 0], [0, 1], [1, 1], [0, 0]])
    y = torch.tensor([1.0, 2.0, 3.0, 5.0])
    model = ials(2, 2, n_factors=2, alpha=1.0)
    by_user, _ = model.rated_cells(x, y)
    assert by_user.c1.tolist() == [5.0, 2.0, 3.0]  # (0,0) rated 5 last, then (0,1) and (1,1)
    assert by_user.dots.crow_indices().tolist() == [0, 2, 3]
