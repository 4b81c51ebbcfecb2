"""`train --resume` continues only what it can stand behind: the same data, an intact checkpoint,
and no options that it would silently ignore."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.train.learner import Learner

runner = CliRunner()


@pytest.fixture
def stopped_run(ratings_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run stopped by Ctrl-C in its second epoch, with a checkpoint of the first."""
    real = Learner.validate
    calls = {"n": 0}

    def ctrl_c_in_epoch_1(self, dl=None):  # noqa: ANN001, ANN202
        if dl is None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(self, dl)

    monkeypatch.setattr(Learner, "validate", ctrl_c_in_epoch_1)
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--epochs", "3", "--factors", "4",
                              "--recipe", "chapter",  # the default would choose its biases-only start here
                              "--checkpoint-every", "1", "--out", str(run), "-q"])  # fmt: skip
    assert res.exit_code == 130, res.output
    monkeypatch.setattr(Learner, "validate", real)
    return run


def test_resume_refuses_a_changed_table(stopped_run: Path, ratings_csv: Path) -> None:
    table = pd.read_csv(ratings_csv)
    table.assign(rating=6 - table["rating"]).to_csv(ratings_csv, index=False)  # every rating changed
    res = runner.invoke(app, ["train", "--resume", str(stopped_run), "-q"])
    assert res.exit_code == 2 and "has changed since the run" in res.output


def test_resume_refuses_a_checkpoint_whose_bytes_changed(stopped_run: Path) -> None:
    path = stopped_run / "checkpoints" / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    name = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel())
    tensors[name].view(-1)[0] += 1.0  # a flipped value, the header and metadata kept
    save_file(tensors, str(path), metadata=metadata)
    res = runner.invoke(app, ["train", "--resume", str(stopped_run), "-q"])
    assert res.exit_code == 2 and "damaged checkpoint" in res.output


def test_resume_refuses_options_it_would_ignore(stopped_run: Path) -> None:
    res = runner.invoke(app, ["train", "--resume", str(stopped_run), "--epochs", "9", "--model", "nn"])
    assert res.exit_code == 2 and "drop --epochs, --model" in res.output
    res = runner.invoke(app, ["train", "--resume", str(stopped_run), "-q"])  # the run itself still resumes
    assert res.exit_code == 0, res.output
