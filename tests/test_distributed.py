"""Two processes under torchrun on 127.0.0.1 train the same model as one process with twice the batch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from collabkit import Recommender
from tests.conftest import make_ratings

TOLERANCE = 1e-4  # float summation order differs between one process and an all-reduce of two


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(args: list[str], procs: int, cwd: Path) -> dict:
    cmd = [sys.executable, "-m", "collabkit.cli", "train", *args, "--json", "--quiet"]
    if procs > 1:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}",
            "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "collabkit.cli", "train",
            *args, "--json", "--quiet",
        ]  # fmt: skip
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("step", ["fused", "autograd"])
def test_two_processes_match_one(tmp_path: Path, step: str) -> None:
    table = make_ratings(n_users=60, n_items=40, n=2240, seed=5)  # 1792 training rows = 14 batches of 128
    table.to_csv(tmp_path / "r.csv", index=False)
    common = ["--data", "r.csv", "--model", "dotbias", "--epochs", "2", "--seed", "7", "--step", step]
    one = _train([*common, "--bs", "128", "--out", "one"], 1, tmp_path)
    two = _train([*common, "--bs", "64", "--out", "two"], 2, tmp_path)
    assert one["world_size"] == 1 and two["world_size"] == 2
    a, b = Recommender.load(tmp_path / "one"), Recommender.load(tmp_path / "two")
    users, items = table["user"].tolist(), table["item"].tolist()
    diff = np.abs(a.predict(users, items) - b.predict(users, items)).max()
    assert diff < TOLERANCE
    assert abs(one["valid"]["mse"] - two["valid"]["mse"]) < TOLERANCE


@pytest.mark.parametrize("n_users,n_items", [(61, 41), (60, 40)])  # shares of uneven and even size
def test_two_processes_solve_ials_as_one(tmp_path: Path, n_users: int, n_items: int) -> None:
    """ials under torchrun: each process solves its share of the users, then of the items, and the
    shares are all-gathered; the factors are a single process's to 1e-5."""
    table = make_ratings(n_users=n_users, n_items=n_items, n=1500, seed=6)
    table.to_csv(tmp_path / "r.csv", index=False)
    common = ["--data", "r.csv", "--model", "ials", "--factors", "8", "-o", "iterations=6", "--seed", "3"]
    one = _train([*common, "--out", "one"], 1, tmp_path)
    two = _train([*common, "--out", "two"], 2, tmp_path)
    assert one["world_size"] == 1 and two["world_size"] == 2
    a, b = Recommender.load(tmp_path / "one").model, Recommender.load(tmp_path / "two").model
    for side in ("user_factors", "item_factors"):
        x, y = getattr(a, side), getattr(b, side)
        assert float(x.abs().max()) > 0.01  # factors were learned, not left at the start
        assert float((x - y).abs().max()) < 1e-5, side


# --- a distributed environment that cannot work: a clear error naming the variable, never a hang ---


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5"])
def test_junk_world_size_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from collabkit.errors import CollabkitError
    from collabkit.train import distributed

    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(CollabkitError, match=f"WORLD_SIZE='{value}' in the environment"):
        distributed.init_from_env("cpu")


@pytest.mark.parametrize("rank", ["0", "1"])
def test_world_size_without_peers_times_out_with_one_line(tmp_path: Path, rank: str) -> None:
    import os

    make_ratings(n=300).to_csv(tmp_path / "r.csv", index=False)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "COLLABKIT_DIST_TIMEOUT": "3"}  # fmt: skip
    cmd = [sys.executable, "-m", "collabkit.cli", "train", "--data", "r.csv", "--out", "m", "--epochs", "1"]
    try:
        done = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("training with WORLD_SIZE=2 and no peers hung")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]  # PyTorch's C++ connection log is held back
    line = lines[0]
    assert line.startswith("collabkit: error: could not join a process group of 2 within 3 s"), done.stderr
    assert "WORLD_SIZE='2'" in line and "MASTER_PORT=" in line and "unset WORLD_SIZE" in line
    assert not (tmp_path / "m").exists()
