"""The Learner's command-line side: lr-find, checkpoints, Ctrl-C and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.errors import CollabkitError
from collabkit.persist import load_model

runner = CliRunner()


def test_lr_find_prints_the_suggestion_and_writes_the_plot(ratings_csv: Path, tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    result = runner.invoke(app, ["lr-find", "--data", str(ratings_csv), "--bs", "64", "--num-it", "40",
                                 "--plot", str(plot), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert 1e-7 <= res["suggestions"]["valley"] <= 10 and len(res["lrs"]) <= 40
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(app, ["lr-find", "--data", str(ratings_csv), "--plot", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and "must name a .png" in bad.stderr


@pytest.mark.parametrize("model", ["dotbias", "nn"])
def test_interrupted_run_resumes_to_the_same_weights(
    ratings_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    # dotbias: the chapter's recipe (the default chooses its epochs first; on this table it keeps
    # its biases-only start and trains no epoch to interrupt)
    sizes = ["--factors", "4", "--recipe", "chapter"] if model == "dotbias" else ["--layers", "8"]
    args = ["train", "--data", str(ratings_csv), "--model", model, "--epochs", "3", "--bs", "128",
            *sizes, "-q"]  # fmt: skip
    straight = runner.invoke(app, [*args, "--out", str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output

    from collabkit.train.learner import Learner

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
    stopped = runner.invoke(app, [*args, "--out", str(run), "--checkpoint-every", "1"])
    assert stopped.exit_code == 130 and f"collabkit train --resume {run}" in stopped.stderr
    assert (run / "checkpoints" / "checkpoint.safetensors").is_file() and not (run / "config.json").exists()
    monkeypatch.setattr(Learner, "validate", real)
    resumed = runner.invoke(app, ["train", "--resume", str(run), "-q"])
    assert resumed.exit_code == 0, resumed.output
    a, b = load_model(tmp_path / "straight"), load_model(run)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=k)
    assert len(b.history) == 3 and not (run / "checkpoints").exists()  # the finished model replaces the run


def test_a_run_stopped_while_saving_its_model_resumes(
    ratings_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its last epoch, before the model replaced the run folder: the checkpoint is
    one a resume can continue (it redoes the last epoch), so `--resume` saves the same model."""
    from collabkit.train.checkpoint import CheckpointCallback

    args = ["train", "--data", str(ratings_csv), "--epochs", "3", "--bs", "128", "--factors", "4", "-q",
            "--recipe", "chapter"]  # fmt: skip
    straight = runner.invoke(app, [*args, "--out", str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output

    def killed(self: CheckpointCallback) -> None:
        raise KeyboardInterrupt  # the fit is over; the model is not saved yet

    monkeypatch.setattr(CheckpointCallback, "after_fit", killed, raising=False)
    run = tmp_path / "run"
    stopped = runner.invoke(app, [*args, "--out", str(run), "--checkpoint-every", "1"])
    assert stopped.exit_code == 130 and (run / "checkpoints" / "run.json").is_file()
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run), "-q"])
    assert resumed.exit_code == 0, resumed.output
    a, b = load_model(tmp_path / "straight"), load_model(run)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=k)
    assert len(b.history) == 3


def test_resume_needs_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "no run to resume here" in result.stderr


def test_the_report_shows_the_training_curve(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    trained = runner.invoke(
        app, ["train", "--data", str(ratings_csv), "--out", str(out), "--epochs", "3", "-q",
              "--recipe", "chapter"],  # a curve to show: the default keeps its biases-only start here
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    shown = runner.invoke(app, ["interpret", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert 'alt="Training and validation loss by epoch" src="data:image/png;base64,' in page


def test_a_run_killed_at_a_random_moment_resumes(ratings_csv: Path, tmp_path: Path) -> None:
    """kill -9 (no chance to clean up) once a checkpoint exists: while checkpoints are written, or
    while the finished model replaces the run folder. Either the model is saved (the run finished
    before the kill landed) or `--resume` finishes the run."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from collabkit.persist import is_model_folder
    from collabkit.train.run_folder import read_run

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "collabkit.cli", "train", "--data", str(ratings_csv), "--epochs", "40",
           "--bs", "16", "--recipe", "chapter", "--checkpoint-every", "1", "--out", str(run),
           "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints" / "checkpoint.safetensors"
    deadline = time.monotonic() + 300  # a busy machine can take long to import torch
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ckpt.exists() or proc.poll() is not None, "no checkpoint within the deadline"
    delay = random.Random().uniform(0.0, 0.8)  # 40 epochs take about 0.7 s after the first
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0 or is_model_folder(run):  # the model was saved before the kill landed
        with pytest.raises(CollabkitError, match="has finished"):
            read_run(run)
        assert len(load_model(run).history) == 40
        return
    resumed = runner.invoke(app, ["train", "--resume", str(run), "-q"])
    assert resumed.exit_code == 0, f"killed {delay:.3f} s after the first checkpoint: {resumed.output}"
    assert len(load_model(run).history) == 40
