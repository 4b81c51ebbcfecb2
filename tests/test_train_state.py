"""The Learner's state as one object (TrainState), its declared config, and the run folder: a run
with any checkpoint can be resumed wherever a kill landed."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from collabkit import CollabDataLoaders, CollabkitError, Learner, collab_learner, set_seed
from collabkit.train import run_folder
from collabkit.train.checkpoint import CheckpointCallback
from collabkit.train.run_folder import read_checkpoint, read_run, run_record
from collabkit.train.state import FitSettings, Position, TrainState

SRC = Path(__file__).resolve().parents[1] / "src" / "collabkit"
RUN = run_record("ratings.csv", {"model": "dotbias", "epochs": 3}, user_col="user", checkpoint_every=1)


def _learn(ratings: pd.DataFrame, tmp_path: Path) -> Learner:
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=128, seed=1)
    return collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False, path=tmp_path)


def _run_dir(ratings: pd.DataFrame, tmp_path: Path, epochs: int = 2) -> Path:
    """A run folder after `epochs` of a 3-epoch run, as `train --checkpoint-every 1` leaves it."""
    run = tmp_path / "run"
    learn = _learn(ratings, tmp_path)

    class Stop(CheckpointCallback):
        def after_epoch(self) -> None:
            super().after_epoch()
            if self.learn.epoch_in_fit + 1 == epochs:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learn.fit_one_cycle(3, 1e-2, cbs=Stop(run / "checkpoints", run=RUN))
    return run


def test_train_state_round_trips_through_its_state_dict() -> None:
    state = TrainState(
        model={"w": torch.arange(6.0).reshape(2, 3)},
        opt={"0.0.exp_avg": torch.ones(2)},
        rng_loader=torch.Generator().get_state(),
        rng_torch=torch.get_rng_state(),
        position=Position(2, 5, 12.25, 640),
        epochs_done=2,
        n_epoch=4,
        history=[{"epoch": 0.0, "train_loss": 1.5}],
        fit=FitSettings("one_cycle", 5e-3, 0.1, 4),
    )
    again = TrainState.from_state_dict(state.state_dict())
    assert again.position == state.position and again.fit == state.fit and again.history == state.history
    assert torch.equal(again.model["w"], state.model["w"]) and torch.equal(
        again.opt["0.0.exp_avg"], torch.ones(2)
    )
    assert (again.epochs_done, again.n_epoch) == (2, 4)
    assert json.dumps(state.state_dict()["meta"])  # the numbers half is plain JSON


def test_a_learner_gives_and_takes_its_state(ratings: pd.DataFrame, tmp_path: Path) -> None:
    a = _learn(ratings, tmp_path)
    a.fit_one_cycle(2, 1e-2, wd=0.05)
    state = a.train_state()
    assert state.position == Position(2) and state.epochs_done == 2 and state.opt is not None
    assert state.fit == FitSettings("one_cycle", 1e-2, 0.05, 2)
    b = _learn(ratings, tmp_path)
    assert b.load_train_state(state) == 2 and b.epoch == 2 and b.history == a.history
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert b.opt_state() is not None and set(b.opt_state()) == set(state.opt)


def test_checkpoint_code_reads_no_private_field_of_the_learner() -> None:
    tree = ast.parse((SRC / "train" / "checkpoint.py").read_text(encoding="utf-8"))
    private = [
        n.attr for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
    ]  # fmt: skip
    assert private == []


def test_the_learner_declares_its_config(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0)
    built = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    again = Learner(dls, built.model, config=built.config, log=None)
    assert again.config is built.config
    assert Learner(dls, built.model, log=None).config is None


def test_a_checkpoint_carries_the_run_record(ratings: pd.DataFrame, tmp_path: Path) -> None:
    run = _run_dir(ratings, tmp_path)
    state, carried = read_checkpoint(run / "checkpoints")
    assert carried is not None and carried["data"] == "ratings.csv" and carried["format"] == "collabkit-run"
    assert state.epochs_done == 2 and state.n_epoch == 3
    record = read_run(run)
    assert (record.data, record.config, record.epochs_done, record.n_epoch) == (
        "ratings.csv",
        RUN["config"],
        2,
        3,
    )
    assert (
        record.info == {"user_col": "user", "checkpoint_every": 1}
        and record.checkpoints == run / "checkpoints"
    )


def test_a_kill_between_the_checkpoint_and_run_json_leaves_a_resumable_run(
    ratings: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: object) -> None:
        raise SystemExit("killed")  # the process dies right after the checkpoint is in place

    monkeypatch.setattr(run_folder, "write_run_file", killed)
    learn = _learn(ratings, tmp_path)
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        learn.fit_one_cycle(3, 1e-2, cbs=CheckpointCallback(run / "checkpoints", run=RUN))
    assert (run / "checkpoints" / "checkpoint.safetensors").is_file()
    assert not (run / "checkpoints" / "run.json").exists()
    monkeypatch.undo()
    record = read_run(run)  # the record comes from the checkpoint, and run.json is written again
    assert record.data == "ratings.csv" and record.epochs_done == 1
    assert json.loads((run / "checkpoints" / "run.json").read_text())["config"] == RUN["config"]
    assert run_folder.is_run_folder(run)


def test_a_run_left_aside_by_a_killed_final_save_is_put_back(ratings: pd.DataFrame, tmp_path: Path) -> None:
    run = _run_dir(ratings, tmp_path)
    aside = tmp_path / f".{run.name}.old-12345"
    run.rename(aside)  # the save renamed the run away and was killed before its second rename
    record = read_run(run)
    assert run.is_dir() and not aside.exists() and record.epochs_done == 2


def test_read_run_errors_say_what_is_there(ratings: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(CollabkitError, match="no run to resume here"):
        read_run(tmp_path / "nothing")
    finished = tmp_path / "model"
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    with pytest.raises(CollabkitError, match="has finished and its model is saved there"):
        read_run(finished)
    run = _run_dir(ratings, tmp_path)
    (run / "checkpoints" / "run.json").write_text("{damaged")
    assert read_run(run).data == "ratings.csv"  # repaired from the checkpoint's copy
    (run / "checkpoints" / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CollabkitError, match="damaged checkpoint"):
        read_run(run)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(CollabkitError, match="no run to resume here"):
        read_run(run)


def test_a_resume_from_the_run_folder_ends_where_a_straight_run_does(
    ratings: pd.DataFrame, tmp_path: Path
) -> None:
    straight = _learn(ratings, tmp_path)
    straight.fit_one_cycle(3, 1e-2)
    run = _run_dir(ratings, tmp_path, epochs=1)
    record = read_run(run)
    resumed = _learn(ratings, tmp_path)
    start = resumed.load_checkpoint(record.checkpoints)
    assert start == record.epochs_done == 1
    resumed.fit_one_cycle(record.n_epoch, 1e-2, start_epoch=start)
    for (k, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_a_checkpoint_for_another_epoch_is_refused(ratings: pd.DataFrame, tmp_path: Path) -> None:
    from collabkit.train.callbacks import Callback

    class Interrupt(Callback):
        def after_batch(self) -> None:
            if self.learn.epoch_in_fit == 1 and self.learn.iter == 3:
                raise KeyboardInterrupt

    first = _learn(ratings, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        first.fit_one_cycle(3, 1e-2, cbs=[CheckpointCallback(tmp_path / "ck"), Interrupt()])
    again = _learn(ratings, tmp_path)
    assert again.load_checkpoint(tmp_path / "ck") == 1
    with pytest.raises(
        CollabkitError, match="stopped inside epoch 1 of its schedule; fit with start_epoch=1"
    ):
        again.fit_one_cycle(3, 1e-2, start_epoch=0)
