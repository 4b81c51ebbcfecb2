"""A fit or solve that fails numerically is one CollabkitError naming the setting behind it, reached
through the public API: a singular fold-in, a Cholesky failure at extreme settings, a NaN loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit import CollabDataLoaders, CollabkitError, Recommender, collab_learner, set_seed
from collabkit.bundle import trained_from_learner
from collabkit.train.callbacks import SaveModelCallback
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def dls() -> CollabDataLoaders:
    set_seed(0)
    return CollabDataLoaders.from_df(make_ratings(n_users=30, n_items=20, n=400), bs=64, seed=1)


def test_a_singular_fold_in_names_strength(dls: CollabDataLoaders) -> None:
    """strength 0 with one rated item: the ridge system for k factors and a bias is singular."""
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False)
    learn.fit_one_cycle(1, 1e-2)
    rec = Recommender(trained_from_learner(learn))
    with pytest.raises(CollabkitError, match=r"failed numerically with strength=0") as e:
        rec.fold_in({100: 4.0}, strength=0)
    assert "\n" not in str(e.value)
    with pytest.raises(CollabkitError, match=r"strength=0"):
        rec.recommend_for_ratings({100: 4.0}, strength=0)
    assert torch.isfinite(rec.fold_in({100: 4.0}, strength=1.0).row).all()  # a pull: a fine answer


@pytest.mark.parametrize(("setting", "value"), [("reg", 1e-300), ("alpha", 1e300)])
def test_ials_cholesky_failure_names_the_setting(dls: CollabDataLoaders, setting: str, value: float) -> None:
    learn = collab_learner(dls, model="ials", settings={setting: value, "iterations": 2}, log=None)
    before = learn.model.user_factors.clone()
    with pytest.raises(CollabkitError, match=r"ials: .*failed numerically with ") as e:
        learn.model.fit_direct(dls.train.x, dls.train.y)
    assert f"{setting}={value:g}" in str(e.value)
    assert torch.equal(learn.model.user_factors, before)  # nothing half-written


def test_ease_singular_gram_names_l2() -> None:
    """Two items rated by exactly the same users: X'X is singular and l2 1e-300 adds nothing."""
    users = np.repeat(np.arange(1, 11), 2)
    items = np.tile([100, 101], 10)
    table = pd.DataFrame({"user": users, "item": items, "rating": 4.0})
    data = CollabDataLoaders.from_df(table, valid_pct=0.0, seed=0)
    learn = collab_learner(data, model="ease", settings={"l2": 1e-300}, log=None)
    try:
        learn.model.fit_direct(data.train.x, data.train.y)
    except CollabkitError as e:
        assert "l2=1e-300" in str(e) and "numerically" in str(e)
    else:  # the factorisation got through on rounding: then the weights must be finite
        assert torch.isfinite(learn.model.weights).all()


class NanAfter(torch.nn.Module):
    """MSE, but NaN from the `after`-th call on: a loss that blows up mid-fit."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = torch.nn.functional.mse_loss(preds.reshape(-1), targs.reshape(-1).float())
        return loss * float("nan") if self.calls > self.after else loss


@pytest.mark.parametrize("per_batch", [False, True])
def test_a_nan_loss_stops_the_fit_naming_epoch_and_rate_before_anything_is_saved(
    dls: CollabDataLoaders, tmp_path: Path, per_batch: bool
) -> None:
    class EveryBatch(SaveModelCallback):
        def after_batch(self) -> None:  # a callback that would save mid-epoch
            self.learn.save("batch")

    n_iter = len(dls.train)
    loss = NanAfter(n_iter + 2)  # epoch 0 is fine; epoch 1 turns NaN on its third batch
    cbs: list[Any] = [SaveModelCallback(fname="best", every_epoch=True)]
    if per_batch:
        cbs = [EveryBatch(fname="best", every_epoch=True)]
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), loss_func=loss, log=None,
                           show_progress=False, path=tmp_path, fused=False)  # fmt: skip
    with pytest.raises(
        CollabkitError, match=r"diverged in epoch 1: the loss became nan at learning rate"
    ) as e:
        learn.fit_one_cycle(3, 1e-2, cbs=cbs)
    assert "(the fit's learning rate 0.01)" in str(e.value)
    saved = sorted(p.name for p in (tmp_path / "models").glob("*"))
    if per_batch:  # saved after each fine batch, never after the NaN one: the file's weights are finite
        from safetensors.torch import load_file

        assert "batch.safetensors" in saved
        weights = load_file(str(tmp_path / "models" / "batch.safetensors"))
        assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    else:
        assert saved == ["best_0.safetensors"]  # epoch 0's file only: epoch 1 was never saved
    assert len(learn.history) == 1


def test_a_nan_loss_from_a_huge_learning_rate_names_it(dls: CollabDataLoaders) -> None:
    learn = collab_learner(dls, n_factors=4, log=None, show_progress=False)
    with pytest.raises(CollabkitError, match=r"epoch 0: the loss became (nan|inf) at learning rate 1e\+30"):
        learn.fit(1, 1e30)
