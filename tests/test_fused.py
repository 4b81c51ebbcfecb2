"""The fused step of the dot models computes what autograd + AdamW compute, step for step."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from collabkit import (
    CollabDataLoaders,
    CollabkitError,
    DotProduct,
    EmbeddingDotBias,
    EmbeddingNN,
    Learner,
    set_seed,
)
from collabkit.collab import collab_learner
from collabkit.train.fused import FusedDotTrainer, supports_fused


@pytest.mark.parametrize("y_range", [(0.0, 5.5), None])
@pytest.mark.parametrize("cls", ["dotbias", "dot"])
def test_fused_fit_equals_autograd_fit(ratings: pd.DataFrame, cls: str, y_range: tuple | None) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=3)
    results = []
    for fused in (True, False):
        set_seed(11)
        dls.train.generator.manual_seed(3)
        learn = collab_learner(dls, model=cls, n_factors=6, y_range=y_range, log=None, fused=fused)
        learn.fit_one_cycle(2, 5e-3, wd=0.1)
        results.append((learn.model.state_dict(), learn.history))
    (a, hist_a), (b, hist_b) = results
    for name in a:
        assert torch.allclose(a[name], b[name], atol=2e-5), name
    assert hist_a[-1]["valid_loss"] == pytest.approx(hist_b[-1]["valid_loss"], abs=1e-4)


def test_repeated_rows_in_a_batch_add_up_as_autograd() -> None:
    from collabkit import MSELossFlat
    from collabkit.train.optim import make_adam, set_hyper

    torch.manual_seed(0)
    model = EmbeddingDotBias(3, 4, 4, y_range=(0, 5.5))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    twin = copy.deepcopy(model)
    x = torch.tensor([[1, 2], [1, 2], [1, 3], [0, 2]])  # user 1 and item 2 appear more than once
    y = torch.tensor([4.0, 5.0, 1.0, 3.0])
    lrs, moms = [0.05, 0.02, 0.01], [0.9, 0.88, 0.86]
    trainer = FusedDotTrainer(model, lrs, moms, wd=0.1)
    opt = make_adam(twin, lr=lrs[0], wd=0.1)
    for t in range(3):
        trainer.step(x, y)
        set_hyper(opt, lrs[t], moms[t])
        opt.zero_grad()
        MSELossFlat()(twin(x), y).backward()
        opt.step()
    trainer.sync()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_fused_only_where_it_applies(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=3)
    assert supports_fused(EmbeddingDotBias(2, 3, 3)) and supports_fused(DotProduct(3, 3, 2))
    assert not supports_fused(EmbeddingNN([(3, 2), (3, 2)]))
    learn = Learner(dls, EmbeddingNN([(dls.n_users, 4), (dls.n_items, 4)], layers=[4]), log=None, fused=True)
    with pytest.raises(CollabkitError, match="fused=True needs a built-in dot model"):
        learn.fit(1)


def test_plain_adamw_fallback_matches_the_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import collabkit.train.optim as optim

    def run() -> torch.Tensor:
        torch.manual_seed(0)
        p = torch.randn(5, 3)
        m, v, s = torch.zeros_like(p), torch.zeros_like(p), torch.zeros(())
        for t in range(3):
            g = torch.randn(5, 3)
            optim.adamw_update([p], [g], [m], [v], [s], lr=0.1, beta1=0.9 - 0.01 * t, beta2=0.99,
                               weight_decay=0.1, eps=1e-5)  # fmt: skip
        return p

    fused = run()
    monkeypatch.setitem(optim._fused_ok, "cpu", False)
    assert torch.allclose(run(), fused, atol=1e-6)


def test_big_batch_branch_equals_autograd(ratings: pd.DataFrame) -> None:
    # bs 4096 and over take the scatter_add_ path; 2000 rows in one batch would not, so repeat rows
    big = pd.concat([ratings] * 3, ignore_index=True)
    dls = CollabDataLoaders.from_df(big, bs=4096, seed=3)
    states = []
    for fused in (True, False):
        set_seed(11)
        dls.train.generator.manual_seed(3)
        learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5), log=None, fused=fused)
        learn.fit_one_cycle(2, 1e-2, wd=0.1)
        states.append(learn.model.state_dict())
    for name in states[0]:
        assert torch.allclose(states[0][name], states[1][name], atol=2e-5), name
