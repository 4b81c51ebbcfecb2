"""The fast fits of ials (conjugate-gradient steps on the CSR) and bpr (manual gradients on large
batches) against what they stand in for: the exact alternating solve, and a planted ranking.

No timing here: bench/ranking_speed.py measures the seconds beside implicit.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
import torch

from collabkit.models import bpr as bpr_module
from collabkit.models import build_model
from collabkit.models.base import ModelConfig
from collabkit.models.bpr import BPR
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


def bpr(n_users: int, n_items: int, **settings: Any) -> BPR:
    model = build_model(ModelConfig("bpr", n_users, n_items, **settings))
    if not isinstance(model, BPR):
        raise TypeError(f"expected BPR, got {type(model).__name__}")
    return model


def planted(n_per_group: int = 20, block: int = 10, kept: int = 7) -> tuple[torch.Tensor, list[set[int]]]:
    """Users 0..n-1 rate `kept` of items 0..block-1, users n..2n-1 `kept` of items block..2 block-1;
    each user's own unrated block items (what must rank first)."""
    g = torch.Generator().manual_seed(0)
    pairs, unrated = [], []
    for u in range(2 * n_per_group):
        own = list(range(block)) if u < n_per_group else list(range(block, 2 * block))
        order = torch.randperm(block, generator=g).tolist()
        pairs += [(u, own[o]) for o in order[:kept]]
        unrated.append({own[o] for o in order[kept:]})
    return torch.tensor(pairs), unrated


def test_bpr_ranks_the_planted_block_first() -> None:
    x, unrated = planted()
    torch.manual_seed(0)
    model = bpr(40, 20, n_factors=4, epochs=60, bs=64)
    model.fit_direct(x, torch.ones(len(x)))
    scores = model.user_rows(torch.arange(40)) @ model.item_side(torch.arange(20))  # (40, 20)
    scores[x[:, 0], x[:, 1]] = -torch.inf  # rated items are not candidates
    top = scores.topk(3, dim=1).indices
    for u in range(40):
        assert set(top[u].tolist()) == unrated[u], (u, top[u].tolist(), unrated[u])


def test_bpr_reports_each_epoch_and_its_loss_falls() -> None:
    x, _ = planted()
    model = bpr(40, 20, n_factors=4, epochs=40, bs=64)
    lines: list[str] = []
    model.log = lines.append
    model.show_progress = False
    threads = torch.get_num_threads()
    model.fit_direct(x, torch.ones(len(x)))
    assert torch.get_num_threads() == threads  # the one-thread loop gives the threads back
    assert [line.split(":")[0] for line in lines] == [f"bpr epoch {e}/40" for e in range(1, 41)]
    losses = [float(line.split("loss ")[1].split()[0]) for line in lines]
    assert 0.68 < losses[0] < 0.71  # ln 2 = 0.693 from factors near 0
    assert max(losses[-5:]) < 0.4  # the blocks are learnt


def test_bpr_shows_a_bar_on_a_terminal(monkeypatch: Any) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    x, _ = planted()
    bpr(40, 20, n_factors=4, epochs=3, bs=64).fit_direct(x, torch.ones(len(x)))
    assert "bpr epochs" in screen.getvalue()


@pytest.mark.parametrize("dense", [True, False])
def test_the_rated_pair_lookup_matches_a_set(dense: bool, monkeypatch: Any) -> None:
    monkeypatch.setattr(bpr_module, "DENSE_PAIRS", 10**9 if dense else 0)
    x, y = made_up(n_users=30, n_items=25, n=200)
    rated = bpr_module._PairSet(x[:, 0], x[:, 1], 30, 25)
    assert rated.dense is dense
    users, items = torch.meshgrid(torch.arange(30), torch.arange(25), indexing="ij")
    got = rated(users.reshape(-1), items.reshape(-1))
    truth = {(int(u), int(i)) for u, i in x}
    want = [(u, i) in truth for u in range(30) for i in range(25)]
    assert got.tolist() == want


def test_train_passes_its_log_to_bpr_and_quiet_means_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    """`collabkit train -q` (log None) shows no bpr progress; a log gets one line per epoch."""
    from collabkit.data.splits import SplitSpec
    from collabkit.workflows import TrainConfig, train
    from tests.conftest import make_ratings

    table = make_ratings(n_users=30, n_items=20, n=300, seed=1)
    config = TrainConfig(model="bpr", settings={"epochs": 3, "n_factors": 4}, split=SplitSpec())
    train(table, config, log=None)
    assert capfd.readouterr().err == ""
    lines: list[str] = []
    train(table, config, log=lines.append)
    assert sum("epoch" in line for line in lines) >= 3, lines
