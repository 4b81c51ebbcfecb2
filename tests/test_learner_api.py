"""The chapter reader's next cells: lr_find, callbacks, the recorder, save and load, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit import CollabDataLoaders, CollabkitError, collab_learner, set_seed
from collabkit.collab import load_learner
from collabkit.train.callbacks import (
    Callback,
    CancelFitException,
    CSVLogger,
    EarlyStoppingCallback,
    SaveModelCallback,
)
from collabkit.train.checkpoint import CheckpointCallback
from collabkit.train.schedule import one_cycle_lr


def _learn(ratings: pd.DataFrame, tmp_path: Path, model: str = "dotbias", **kw: object):  # noqa: ANN202
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=128, seed=1)
    sizes: dict[str, object] = {"layers": [8]} if model in ("nn", "classifier") else {"n_factors": 4}
    return collab_learner(dls, model=model, y_range=(0, 5.5), log=None, show_progress=False,
                          path=tmp_path, **sizes, **kw)  # fmt: skip


def _scripted_valid(learn, losses: list[float]) -> None:  # noqa: ANN001
    """Make validate() return these valid_loss values in turn (and the real metrics)."""
    real = learn.validate
    it = iter(losses)

    def validate(dl=None):  # noqa: ANN001, ANN202
        out = real(dl)
        return {**out, "valid_loss": next(it)} if dl is None else out

    learn.validate = validate


def test_lr_find_suggests_and_restores_the_weights(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    sugg = learn.lr_find(num_it=60, show_plot=False)
    for value in sugg:
        assert 1e-7 <= value <= 10
    assert sugg.minimum < sugg.valley * 100 and sugg.valley == sugg[0]
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    lrs = learn.lr_find_result.lrs
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)


def test_callback_events_in_order_and_cancel(ratings: pd.DataFrame, tmp_path: Path) -> None:
    seen: list[str] = []

    class Spy(Callback):
        def before_fit(self) -> None:
            seen.append("before_fit")

        def before_epoch(self) -> None:
            seen.append("before_epoch")

        def after_epoch(self) -> None:
            seen.append("after_epoch")
            if self.learn.epoch == 1:  # the second epoch (numbered from 0, as in fastai)
                raise CancelFitException()

        def after_fit(self) -> None:
            seen.append("after_fit")

    learn = _learn(ratings, tmp_path)
    rows = learn.fit_one_cycle(5, 1e-2, cbs=Spy())
    assert seen == ["before_fit"] + ["before_epoch", "after_epoch"] * 2 + ["after_fit"]
    assert len(rows) == 2 and learn.epoch == 2 and not learn.cbs  # fit-only callbacks are removed


def test_after_batch_only_runs_when_asked(ratings: pd.DataFrame, tmp_path: Path) -> None:
    calls = []

    class Batches(Callback):
        def after_batch(self) -> None:
            calls.append(float(self.learn.loss))

    learn = _learn(ratings, tmp_path, cbs=[Batches()])
    learn.fit(1, 1e-2)
    assert len(calls) == len(learn.dls.train) and all(np.isfinite(calls))


def test_early_stopping_ends_the_fit(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    _scripted_valid(learn, [1.0, 0.9, 0.95, 0.96, 0.5, 0.4])
    early = EarlyStoppingCallback(patience=2)
    rows = learn.fit_one_cycle(6, 1e-2, cbs=early)
    assert [r["valid_loss"] for r in rows] == [1.0, 0.9, 0.95, 0.96] and early.stopped_epoch == 3


def test_save_model_callback_leaves_the_best_epoch(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    _scripted_valid(learn, [1.0, 0.8, 0.9, 0.95])
    best: dict[str, torch.Tensor] = {}

    class Grab(Callback):
        order = 50

        def after_epoch(self) -> None:
            if self.learn.epoch == 1:  # epoch 1, the best
                best.update({k: v.clone() for k, v in self.learn.model.state_dict().items()})

    save = SaveModelCallback(fname="best")
    learn.fit_one_cycle(4, 1e-2, cbs=[save, Grab()])
    assert save.best_epoch == 1 and (tmp_path / "models" / "best.safetensors").is_file()
    final = learn.model.state_dict()
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_csv_logger_and_recorder(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    logger = CSVLogger()
    learn.fit_one_cycle(3, 1e-2, cbs=logger)
    log = pd.read_csv(tmp_path / "history.csv")
    assert list(log["epoch"]) == [0, 1, 2] and "valid_loss" in log.columns
    rec = learn.recorder
    assert len(rec.values) == 3 and len(rec.values[0]) == 3  # train_loss, valid_loss, rmse
    n = 3 * len(learn.dls.train)
    assert len(rec.losses) == n and len(rec.lrs) == n
    assert max(rec.lrs) == pytest.approx(one_cycle_lr(0.25, 1e-2), rel=0.05)
    assert rec.lrs[0] == pytest.approx(1e-2 / 25)
    assert rec.plot_loss().axes and rec.plot_sched().axes


def test_show_results_summary_predict_rows(ratings: pd.DataFrame, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    learn = _learn(ratings, tmp_path)
    learn.fit(1, 1e-2)
    frame = learn.show_results(n=5, show=False)
    assert list(frame.columns) == ["user", "item", "rating", "rating_pred"] and len(frame) == 5
    assert learn.show_results(n=3) is None and len(capsys.readouterr().out.splitlines()) == 4  # shown once
    assert learn.dls.show_batch(max_n=2) is None
    text = str(learn.summary())
    total = sum(p.numel() for p in learn.model.parameters())
    assert f"Total parameters: {total:,}" in text and "u_weight" in text
    row = ratings.iloc[0]
    one = learn.predict(row)
    assert isinstance(one, float) and one == pytest.approx(learn.predict(ratings.iloc[:1])[0])
    assert learn.predict({"user": row["user"], "item": row["item"]}) == pytest.approx(one)
    with pytest.raises(CollabkitError, match="no 'item'"):
        learn.predict({"user": 1})
    assert "Learner(EmbeddingDotBias" in repr(learn) and "bs 128" in repr(learn.dls)


def test_save_load_with_opt(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    learn.fit_one_cycle(1, 1e-2)
    path = learn.save("stage1", with_opt=True)
    assert path == tmp_path / "models" / "stage1.safetensors"
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, 1e-2)
    learn.load("stage1", with_opt=True)
    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())
    learn.fit(1, 1e-3)  # the saved moments go into the new fit's optimiser
    with pytest.raises(CollabkitError, match="no saved weights"):
        learn.load("nothing")


@pytest.mark.parametrize("model", ["dotbias", "nn"])
def test_export_load_learner_predicts_identically_and_trains_on(
    ratings: pd.DataFrame, tmp_path: Path, model: str
) -> None:
    learn = _learn(ratings, tmp_path, model=model)
    learn.fit_one_cycle(2, 1e-2)
    folder = Path(learn.export())
    assert folder == tmp_path / "export"
    again = load_learner(folder)
    dl = learn.dls.test_dl(ratings.iloc[:50])
    torch.testing.assert_close(again.get_preds(dl=dl)[0], learn.get_preds(dl=dl)[0])
    assert again.epoch == 2 and len(again.recorder.values) == 2
    fresh = _learn(ratings, tmp_path, model=model)
    again.dls = fresh.dls
    again.fit_one_cycle(1, 1e-3)  # trains on from the saved weights, not from scratch
    fresh.fit_one_cycle(1, 1e-3)
    assert again.history[-1]["valid_loss"] < fresh.history[-1]["valid_loss"]


@pytest.mark.parametrize(("model", "fused"), [("dotbias", True), ("dotbias", False), ("nn", False)])
def test_resume_from_a_checkpoint_ends_with_the_same_weights(
    ratings: pd.DataFrame, tmp_path: Path, model: str, fused: bool
) -> None:
    straight = _learn(ratings, tmp_path, model=model, fused=fused)
    straight.fit_one_cycle(4, 1e-2)

    class Interrupt(Callback):
        def after_batch(self) -> None:
            if self.learn.epoch_in_fit == 2 and self.learn.iter == 5:
                raise KeyboardInterrupt

    first = _learn(ratings, tmp_path, model=model, fused=fused)
    with pytest.raises(KeyboardInterrupt):
        first.fit_one_cycle(4, 1e-2, cbs=[CheckpointCallback(tmp_path / "ck"), Interrupt()])
    resumed = _learn(ratings, tmp_path, model=model, fused=fused)
    start = resumed.load_checkpoint(tmp_path / "ck")
    assert start == 2 and resumed.epoch == 2
    resumed.fit_one_cycle(4, 1e-2, start_epoch=start)
    for (k, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    assert [round(r["train_loss"], 5) for r in resumed.history] == [
        round(r["train_loss"], 5) for r in straight.history
    ]


@pytest.mark.parametrize("model", ["ease", "popular", "ials", "bpr"])
def test_lr_find_and_fit_refuse_a_family_that_fits_itself(
    ratings: pd.DataFrame, tmp_path: Path, model: str
) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=128, seed=1)
    learn = collab_learner(dls, model=model, log=None, show_progress=False, path=tmp_path)
    assert not type(learn.model).capabilities().lr_find
    with pytest.raises(CollabkitError, match=rf"^model '{model}' is fitted in closed form or by its own "
                       "solver, so it has no learning rate to find$"):  # fmt: skip
        learn.lr_find(num_it=20, show_plot=False)
    with pytest.raises(CollabkitError, match=f"model '{model}' is fitted in closed form.*no epochs to fit"):
        learn.fit_one_cycle(1, 1e-2)


def test_summary_shows_the_last_fit_s_weight_decay_and_rate(ratings: pd.DataFrame, tmp_path: Path) -> None:
    learn = _learn(ratings, tmp_path)
    assert "Not fitted yet: weight decay 0.01 and lr 0.001" in str(learn.summary())
    learn.fit(1, 3e-3, wd=0.1)
    text = str(learn.summary())
    assert "Last fit: weight decay 0.1, lr 0.003, 1 epoch" in text and "weight decay 0.01" not in text
    learn.fit_one_cycle(2, 5e-3, wd=0.2)
    assert "Last fit: weight decay 0.2, lr 0.005 (one-cycle peak), 2 epochs" in str(learn.summary())
