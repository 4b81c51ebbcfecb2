"""interpret on a table where no item has MIN_COUNT ratings: a labelled answer, not a refusal (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit.bundle import TrainedModel
from collabkit.cli import app
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError
from collabkit.interpret import fallback_count, interpret_model, item_biases
from collabkit.models import ModelConfig, build_model

runner = CliRunner()


def staircase() -> TrainedModel:
    """6 users x 6 items: item j is rated by users 1..7-j, so items have 6, 5, 4, 3, 2, 1 ratings
    and users 6, 5, 4, 3, 2, 1: nobody reaches MIN_COUNT (10)."""
    torch.manual_seed(0)
    config = ModelConfig("dotbias", n_users=7, n_items=7, n_factors=3, y_range=(0.0, 5.5))
    pairs = [(u, i) for i in range(1, 7) for u in range(1, 8 - i)]
    x = torch.tensor(pairs, dtype=torch.int64)
    y = torch.tensor([float(1 + (u * i) % 5) for u, i in pairs])
    users = Vocab([f"u{u}" for u in range(1, 7)], name="user")
    items = Vocab([f"book{i}" for i in range(1, 7)], name="item")
    return TrainedModel(build_model(config).eval(), config, users, items, x, y)


def test_fallback_count_keeps_the_most_rated() -> None:
    counts = torch.tensor([0, 6, 5, 4, 3, 2, 1])  # index 0 is #na#
    assert fallback_count(counts, 10, need=3) == 4  # the third most rated has 4
    assert fallback_count(counts, 10, need=1) == 6
    assert fallback_count(counts, 10, need=100) == 1  # fewer than asked: every trained item
    assert fallback_count(counts, 5, need=3) == 5  # an item has 6 >= 5: min_count as asked


def test_interpret_lowers_the_threshold_and_says_so() -> None:
    saved = staircase()
    it = interpret_model(saved, n=2)  # MIN_COUNT 10; items need max(n, k + 1) = 4 for the map
    assert it.min_count == 10 and it.item_min_count == 3 and it.user_min_count == 5
    assert it.fallbacks == [
        "no item has 10 training ratings (the most rated has 6); showing items with at least 3, "
        "whose estimates rest on few ratings",
        "no user has 10 training ratings (the most rated has 6); showing users with at least 5, "
        "whose estimates rest on few ratings",
    ]
    assert set(it.fallbacks) <= set(it.notes)  # the report shows the notes
    assert it.item_biases is not None and it.user_biases is not None
    assert it.item_biases["n_ratings"].min() >= 3 and it.user_biases["n_ratings"].min() >= 5
    assert "book5" not in set(it.item_biases["item"])  # 2 ratings: below the lowered threshold
    assert it.embedding is not None and len(it.embedding.scores) == 4  # the 4 items with >= 3 ratings
    for table in it.neighbours.values():
        assert set(table["n_ratings"]) <= {6, 5, 4, 3}
    d = it.to_dict()
    assert (d["min_count"], d["item_min_count"], d["user_min_count"]) == (10, 3, 5)


def test_a_threshold_some_items_reach_is_kept() -> None:
    it = interpret_model(staircase(), n=2, min_count=4)
    assert it.item_min_count == 4 and it.user_min_count == 4 and it.fallbacks == []
    with pytest.raises(CollabkitError, match="no item has at least 10 training ratings"):
        item_biases(staircase())  # one table asked for directly still refuses, naming the most rated


def test_the_command_answers_a_small_table_with_a_labelled_threshold(tmp_path: Path) -> None:
    rows = [(f"r{r}", f"book{b}", float((r * 3 + b) % 10 + 1)) for b in range(6) for r in range(7 - b)]
    csv = tmp_path / "tiny.csv"
    pd.DataFrame(rows, columns=["reader", "book", "stars"]).to_csv(csv, index=False)
    out = tmp_path / "m"
    args = ["--user-col", "reader", "--item-col", "book", "--rating-col", "stars", "--valid-pct", "0.1"]
    trained = runner.invoke(
        app, ["train", "--data", str(csv), *args, "--epochs", "1", "--out", str(out), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    res = runner.invoke(app, ["interpret", str(out), "-n", "2"])
    assert res.exit_code == 0, res.output  # was: refused, no item has at least 10 training ratings
    first = res.output.splitlines()[0]
    assert first.startswith("no item has 10 training ratings (the most rated has ")
    assert "showing items with at least " in first
    shown = json.loads(runner.invoke(app, ["interpret", str(out), "-n", "2", "--json"]).stdout)
    assert shown["min_count"] == 10 and 1 <= shown["item_min_count"] < 10
    assert f"showing items with at least {shown['item_min_count']}," in shown["fallbacks"][0]
    listed = shown["item_biases"]["lowest"] + shown["item_biases"]["highest"]
    assert listed and min(r["n_ratings"] for r in listed) >= shown["item_min_count"]
