"""bpr's SGD worked out by hand, its threshold on ratings (`-o min_rating`), and its parallel lanes.

tests/test_ials_bpr_speed.py covers the planted ranking, the per-epoch log and the bar.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from collabkit.errors import CollabkitError
from collabkit.models import bpr as bpr_module
from collabkit.models import build_model
from collabkit.models.base import ModelConfig
from collabkit.models.bpr import BPR
from tests.test_ials_bpr_speed import planted


def bpr(n_users: int, n_items: int, **settings: Any) -> BPR:
    model = build_model(ModelConfig("bpr", n_users, n_items, **settings))
    if not isinstance(model, BPR):
        raise TypeError(f"expected BPR, got {type(model).__name__}")
    return model


def test_one_step_and_its_penalty_by_hand() -> None:
    """User (1, 0) prefers item 0 (0, 1; bias 0.5) to item 1 (1, 0; bias 0): x = -1 + 0.5 = -0.5,
    the step is lr sigmoid(0.5) times (i - j) for the user and +-(u, 1) for the items, then every
    drawn row (the user's 1 aside) decays by (1 - lr reg)."""
    users = torch.tensor([[1.0, 0.0, 1.0]])  # (1, k + 1): ends in the 1
    items = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]])  # (2, k + 1): ends in the bias
    lr, reg = 0.1, 0.2
    x = torch.tensor([[0, 0]])
    sgd = bpr_module._SGD(users, items, bpr_module._Triples(x, 1, 2), lr, reg, bs=1)
    u, i, j = torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    loss = sgd.step(u, i, j, sgd.buffers[0][:, :1])
    z = lr / (1 + math.exp(-0.5))  # lr * sigmoid(-x)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(0.5)))  # -ln sigmoid(-0.5)
    assert torch.allclose(users, torch.tensor([[1.0 - z, z, 1.0]]))
    assert torch.allclose(items, torch.tensor([[z, 1.0, 0.5 + z], [1.0 - z, 0.0, -z]]))
    sgd.decay(torch.tensor([1]), torch.tensor([1, 1]))
    keep = 1 - lr * reg
    assert torch.allclose(users, torch.tensor([[(1.0 - z) * keep, z * keep, 1.0]]))
    assert torch.allclose(
        items, torch.tensor([[z * keep, keep, (0.5 + z) * keep], [(1.0 - z) * keep, 0.0, -z * keep]])
    )


def test_a_threshold_above_every_rating_is_refused_in_one_line() -> None:
    x, _ = planted()
    model = bpr(40, 20, min_rating=4.0)
    with pytest.raises(
        CollabkitError,
        match=r"^min_rating 4 keeps none of the 280 training ratings \(they run 1\.\.1\)[^\n]*$",
    ):
        model.fit_direct(x, torch.ones(len(x)))


def test_min_rating_trains_on_the_kept_ratings_alone() -> None:
    """With min_rating 3, the fit is the fit on the rows rated 3 or more, draw for draw."""
    x, _ = planted()
    y = torch.tensor([1.0, 5.0, 3.0, 2.0])[torch.arange(len(x)) % 4]
    kept = y >= 3
    torch.manual_seed(0)
    a = bpr(40, 20, n_factors=4, epochs=5, bs=16, min_rating=3.0)
    a.fit_direct(x, y)
    torch.manual_seed(0)
    b = bpr(40, 20, n_factors=4, epochs=5, bs=16)
    b.fit_direct(x[kept], y[kept])
    assert torch.equal(a.user_factors, b.user_factors)
    assert torch.equal(a.item_factors, b.item_factors)
    assert torch.equal(a.item_bias, b.item_bias)


def test_fold_in_counts_only_the_ratings_at_the_threshold() -> None:
    x, _ = planted()
    model = bpr(40, 20, n_factors=4, epochs=2, bs=16, min_rating=4.0)
    model.fit_direct(x, torch.full((len(x),), 5.0))
    prior = torch.cat([model.user_factors.mean(0), torch.ones(1)])
    liked = model.fold_in(torch.tensor([0, 1]), torch.tensor([5.0, 4.0]), prior, 1.0)
    with_a_dislike = model.fold_in(torch.tensor([0, 1, 15]), torch.tensor([5.0, 4.0, 1.0]), prior, 1.0)
    assert torch.equal(liked, with_a_dislike)


def test_parallel_lanes_learn_the_planted_block_and_give_the_threads_back(monkeypatch: Any) -> None:
    """From 2 x `LANE_MIN` triples an epoch, one thread per torch thread steps at once (hogwild)."""
    monkeypatch.setattr(bpr_module, "LANE_MIN", 100)  # 280 pairs: 2 lanes
    x, unrated = planted()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        model = bpr(40, 20, n_factors=4, epochs=60, bs=16)
        lanes: list[int] = []
        real = bpr_module._SGD.__enter__

        def seen(self: Any) -> Any:
            lanes.append(self.lanes)
            return real(self)

        monkeypatch.setattr(bpr_module._SGD, "__enter__", seen)
        model.fit_direct(x, torch.ones(len(x)))
        assert lanes == [2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    scores = model.user_rows(torch.arange(40)) @ model.item_side(torch.arange(20))  # (40, 20)
    scores[x[:, 0], x[:, 1]] = -torch.inf
    top = scores.topk(3, dim=1).indices
    hits = sum(set(top[u].tolist()) == unrated[u] for u in range(40))
    assert hits >= 36, hits  # hogwild's lost updates are rare; allow a few users


@pytest.mark.parametrize(
    ("threads", "n", "lanes"), [(1, 10**6, 1), (8, 80_000, 2), (8, 10**6, 8), (2, 1000, 1)]
)
def test_lanes_are_the_threads_with_enough_triples_each(threads: int, n: int, lanes: int) -> None:
    """One lane per torch thread, each with at least `LANE_MIN` triples an epoch (ML-100k u1's
    80,000 pairs: 2 lanes however many threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.zeros(n, 2, dtype=torch.long)
        sgd = bpr_module._SGD(
            torch.zeros(1, 3), torch.zeros(1, 3), bpr_module._Triples(x, 1, 1), 0.1, 0.0, 4096
        )
        assert sgd.lanes == lanes
    finally:
        torch.set_num_threads(before)
