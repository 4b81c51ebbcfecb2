"""The fused step of the dot models computes what autograd + AdamW compute, step for step."""

from __future__ import annotations

import copy
from pathlib import Path

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


# --- the lazy AdamW update: the batch's rows, the others brought up to date in closed form ---------


def _random_fit(update: str, eps: float, window: int = 16, y_range: tuple | None = (0.0, 5.5),
                sync_every: int = 0) -> torch.Tensor:  # fmt: skip
    """300 steps of batches of 4 on a 30 x 20 table under a one-cycle-like schedule; the weights."""
    torch.manual_seed(0)
    model = EmbeddingDotBias(5, 30, 20, y_range=y_range)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    n = 300
    lrs = [0.01 * (1 + 4 * min(i, n - i) / n) for i in range(n)]
    moms = [0.95 - 0.1 * min(i, n - i) / n for i in range(n)]
    g = torch.Generator().manual_seed(1)
    trainer = FusedDotTrainer(model, lrs, moms, wd=0.1, eps=eps, update=update, window=window)  # type: ignore[arg-type]
    for i in range(n):
        x = torch.stack([torch.randint(0, 30, (4,), generator=g), torch.randint(0, 20, (4,), generator=g)], 1)
        trainer.step(x, torch.rand(4, generator=g) * 5)
        if sync_every and i % sync_every == 0:
            trainer.sync()
    trainer.sync()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("y_range", [(0.0, 5.5), None])
def test_lazy_update_is_the_dense_update_where_eps_is_negligible(y_range: tuple | None) -> None:
    # rows sit out most steps (8 of 50 rows a step) across many windows of 16 steps
    dense = _random_fit("dense", eps=1e-20, y_range=y_range)
    lazy = _random_fit("lazy", eps=1e-20, y_range=y_range)
    assert float(dense.abs().max()) > 0.2
    assert torch.allclose(lazy, dense, atol=2e-6)


def test_lazy_update_stays_close_to_the_dense_update_with_eps() -> None:
    # the catch-up takes eps at its momentum-weighted mean over the sat-out steps (first order in eps)
    dense, lazy = _random_fit("dense", eps=1e-5), _random_fit("lazy", eps=1e-5)
    assert float((lazy - dense).abs().max()) < 2e-4


def test_catching_up_early_changes_nothing_but_rounding() -> None:
    # sync() (every validation and checkpoint) brings every row up to date mid-window; with eps the
    # shorter gaps only take eps more exactly (the dense update's own figure is 4e-5 away)
    for eps, tol in ((1e-20, 1e-6), (1e-5, 1e-5)):
        once = _random_fit("lazy", eps)
        assert torch.allclose(_random_fit("lazy", eps, sync_every=7), once, atol=tol)
        assert torch.allclose(_random_fit("lazy", eps, window=5), once, atol=tol)


def test_auto_goes_lazy_only_where_the_batch_uses_few_of_the_rows() -> None:
    small, large = EmbeddingDotBias(4, 50, 50), EmbeddingDotBias(4, 5000, 4000)
    assert not FusedDotTrainer(small, [1e-3], [0.9], 0.1).uses_lazy(64)
    trainer = FusedDotTrainer(large, [1e-3], [0.9], 0.1)
    assert trainer.update == "auto" and trainer.uses_lazy(64) and not trainer.uses_lazy(1024)
    assert not FusedDotTrainer(large, [1e-3], [0.9], 0.1, update="dense").uses_lazy(64)
    assert FusedDotTrainer(small, [1e-3], [0.9], 0.1, update="lazy").uses_lazy(64)
    # beta1 = 0 has no inverse for the closed form: the dense update
    assert FusedDotTrainer(large, [1e-3], [0.0], 0.1, update="lazy").update == "dense"
    with pytest.raises(ValueError, match="unknown update 'sparse'; expected one of: auto, lazy, dense"):
        FusedDotTrainer(small, [1e-3], [0.9], 0.1, update="sparse")  # type: ignore[arg-type]


def test_lazy_fit_through_the_learner_ends_near_the_dense_fit(
    ratings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=3)
    states, losses = [], []
    for update in ("dense", "lazy"):
        monkeypatch.setattr(FusedDotTrainer, "default_update", update)
        set_seed(11)
        dls.train.generator.manual_seed(3)
        learn = collab_learner(dls, n_factors=6, y_range=(0, 5.5), log=None)
        learn.fit_one_cycle(3, 5e-3, wd=0.1)
        assert learn._opt.uses_lazy(64) == (update == "lazy")
        states.append(learn.model.state_dict())
        losses.append(learn.history[-1]["valid_loss"])
    for name in states[0]:
        assert torch.allclose(states[0][name], states[1][name], atol=1e-4), name
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)


def test_lazy_resume_from_a_checkpoint_ends_near_the_straight_run(
    ratings: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collabkit.train.callbacks import Callback
    from collabkit.train.checkpoint import CheckpointCallback

    monkeypatch.setattr(FusedDotTrainer, "default_update", "lazy")

    def learner() -> Learner:
        set_seed(0)
        dls = CollabDataLoaders.from_df(ratings, bs=128, seed=1)
        return collab_learner(
            dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False, path=tmp_path
        )

    class Interrupt(Callback):
        def after_batch(self) -> None:
            if self.learn.epoch_in_fit == 2 and self.learn.iter == 5:
                raise KeyboardInterrupt

    straight = learner()
    straight.fit_one_cycle(4, 1e-2)
    first = learner()
    with pytest.raises(KeyboardInterrupt):  # the moments saved are brought up to date first
        first.fit_one_cycle(4, 1e-2, cbs=[CheckpointCallback(tmp_path / "ck"), Interrupt()])
    resumed = learner()
    resumed.fit_one_cycle(4, 1e-2, start_epoch=resumed.load_checkpoint(tmp_path / "ck"))
    for (k, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5, msg=k)


def test_a_big_table_is_batched_through_the_permutation_into_the_same_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collabkit.data import loaders

    x = torch.randint(0, 50, (1000, 2))
    y = torch.rand(1000)

    def epoch(limit: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        monkeypatch.setattr(loaders, "EPOCH_COPY_BYTES", limit)
        return list(loaders.DataLoader(x, y, bs=64, shuffle=True, seed=3, drop_last=True))

    copied, gathered = epoch(2**40), epoch(0)  # one shuffled copy; each batch gathered alone
    assert len(copied) == len(gathered) == 1000 // 64
    for (xa, ya), (xb, yb) in zip(copied, gathered, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(copied[0][0], x[:64])  # shuffled, not the table's order
