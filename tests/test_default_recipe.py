"""The dot models' default recipe fits the table: held-aside training rows choose among the
biases-only start and every epoch, then the model trains again on every training row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.baselines import fit_biases, fit_range_biases
from collabkit.data import load_ratings
from collabkit.models.core import sigmoid_range
from collabkit.workflows import INNER_VALID, TrainConfig, train


def _biased_table(seed: int = 0) -> pd.DataFrame:
    """60 users x 50 items, each user rating 30: strong user and item biases, no interaction signal."""
    rng = np.random.default_rng(seed)
    ub, ib = rng.normal(scale=0.6, size=60), rng.normal(scale=0.8, size=50)
    rows = [(u, i) for u in range(60) for i in rng.choice(50, 30, replace=False)]
    users, items = np.array(rows).T
    rating = np.clip(np.rint(3.2 + ub[users] + ib[items] + rng.normal(scale=0.5, size=len(rows))), 1, 5)
    return pd.DataFrame({"user": users + 1, "item": items + 1, "rating": rating.astype("float32")})


def _factor_table(seed: int = 0) -> pd.DataFrame:
    """80 users x 60 items, 70% rated, ratings mostly from two hidden factors: epochs pay off."""
    rng = np.random.default_rng(seed)
    uf, itf = rng.normal(size=(80, 2)), rng.normal(size=(60, 2))
    users, items = np.nonzero(rng.random((80, 60)) < 0.7)
    rating = np.clip(3 + (uf[users] * itf[items]).sum(1) + rng.normal(scale=0.2, size=len(users)), 1, 5)
    return pd.DataFrame({"user": users + 1, "item": items + 1, "rating": rating.astype("float32")})


def test_a_table_of_biases_gets_a_model_no_worse_than_the_biases_only_baseline() -> None:
    res = train(_biased_table(), TrainConfig(), log=None)
    assert res.valid["fallback"] == 0  # every held-out user and item was trained on: a fair comparison
    biases = res.valid["baselines"]["biases"]["rmse"]
    assert res.valid["rmse"] <= biases * 1.01, (res.valid["rmse"], biases, res.best)
    chapter = train(_biased_table(), TrainConfig(recipe="chapter"), log=None)
    assert res.valid["rmse"] < chapter.valid["rmse"]  # the chapter's recipe overfits a table this small


def test_the_choice_is_the_lowest_held_aside_loss_and_the_model_trains_that_many_epochs() -> None:
    res = train(_factor_table(), TrainConfig(bs=64), log=None)
    best = res.best
    assert best is not None and best["held_aside"] == int(res.n_train * INNER_VALID)
    losses = best["losses"]
    assert len(losses) == res.settings["epochs"] + 1 and losses[0] is not None  # the start, then each epoch
    assert best["best_epoch"] == int(np.argmin(losses)) > 0  # factors to learn: some epochs beat the start
    assert len(res.history) == best["best_epoch"]  # trained again on every training row, to that epoch
    assert res.valid["rmse"] < res.valid["baselines"]["biases"]["rmse"]


def test_a_table_with_nothing_beyond_biases_keeps_the_biases_only_start() -> None:
    res = train(_biased_table(), TrainConfig(epochs=2), log=None)  # 2 epochs of 2 steps: nothing learned
    assert res.best is not None and res.best["best_epoch"] == 0 and res.history == []
    assert res.best["losses"][0] < min(res.best["losses"][1:])


def test_the_choice_never_reads_the_test_rows() -> None:
    table = _factor_table()
    other = table.copy()
    first = train(table, TrainConfig(bs=64, epochs=3), log=None)
    # the same split (random 20%, seed 42): rewrite the held-out ratings only
    from collabkit.data.splits import make_split

    _, test_rows = make_split(table, first.split)
    other.loc[other.index[test_rows], "rating"] = 1.0
    second = train(other, TrainConfig(bs=64, epochs=3), log=None)
    assert first.best == second.best
    assert first.valid["rmse"] != second.valid["rmse"]  # the test rows did change


def test_the_dot_model_without_biases_has_no_start_to_keep() -> None:
    res = train(_factor_table(), TrainConfig(model="dot", bs=64, epochs=2), log=None)
    assert res.best is not None and res.best["losses"][0] is None and res.best["best_epoch"] >= 1


def test_biases_in_the_models_own_range_fit_a_table_made_of_them() -> None:
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 30, 3000), rng.integers(0, 20, 3000)
    bu, bi = rng.normal(scale=0.5, size=30), rng.normal(scale=0.5, size=20)
    y_range = (0.0, 5.5)
    ratings = sigmoid_range(torch.tensor(0.4 + bu[users] + bi[items]), *y_range).numpy()
    fit = fit_range_biases(users, items, ratings, 30, 20, y_range, reg=0.0, sweeps=30)
    pred = sigmoid_range(torch.tensor(fit.offset + fit.user[users] + fit.item[items]), *y_range).numpy()
    np.testing.assert_allclose(pred, ratings, atol=1e-3)  # exact through the curve, not linearised
    linear = fit_biases(users, items, ratings, 30, 20, reg=0.0, sweeps=30)
    assert np.abs(pred - ratings).max() < np.abs(linear.predict(users, items) - ratings).max()


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_biases_in_range_follow_the_rating_scale(scale: float) -> None:
    """A 1..10 table is damped as the same table in 1..5: the same logit biases."""
    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 40, 500), rng.integers(0, 30, 500)
    ratings = rng.integers(1, 6, 500).astype(float)
    a = fit_range_biases(users, items, ratings, 40, 30, (0.0, 5.5))
    b = fit_range_biases(users, items, ratings * scale, 40, 30, (0.0, 5.5 * scale))
    assert a.offset == pytest.approx(b.offset)
    np.testing.assert_allclose(a.item, b.item, atol=1e-9)
    np.testing.assert_allclose(a.user, b.user, atol=1e-9)


def test_a_default_run_stopped_after_its_choice_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the run on every training row: `resume` makes the same choice again (the held-aside
    rows and the seed are the same) and continues the checkpoint to the straight run's weights."""
    from collabkit.persist import load_model
    from collabkit.train.learner import Learner
    from collabkit.workflows import resume

    path = tmp_path / "t.csv"
    _factor_table().to_csv(path, index=False)
    table = load_ratings(str(path), progress=False)
    config = TrainConfig(bs=64, epochs=3, settings={"n_factors": 4})
    straight = train(table, config, out=tmp_path / "straight", log=None, data_name=str(path))
    assert straight.best is not None and straight.best["best_epoch"] >= 2  # the refit has 2+ epochs

    real, calls = Learner.validate, {"n": 0}

    def ctrl_c_in_the_refits_epoch_1(self: Learner, dl: Any = None) -> dict[str, float]:
        if dl is None:
            calls["n"] += 1
            if calls["n"] == 1 + 3 + 2:  # the start and 3 epochs chosen among, then the refit's 2nd
                raise KeyboardInterrupt
        return real(self, dl)

    monkeypatch.setattr(Learner, "validate", ctrl_c_in_the_refits_epoch_1)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(table, config, out=run, log=None, checkpoint_every=1, data_name=str(path))
    monkeypatch.setattr(Learner, "validate", real)
    resumed = resume(run, log=None)
    assert resumed.best == straight.best
    a, b = load_model(tmp_path / "straight"), load_model(run)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=k)
