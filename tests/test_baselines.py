"""The baselines every rating model is shown beside, and the flag for a model that does not beat them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.baselines import fit_biases, rating_baselines
from collabkit.cli import app

runner = CliRunner()


def test_biases_of_a_table_worked_out_by_hand() -> None:
    # user 1 rates items 1, 2 at 5, 3; user 2 rates item 1 at 3: mean 11/3
    users, items, ratings = np.array([1, 1, 2]), np.array([1, 2, 1]), np.array([5.0, 3.0, 3.0])
    b = fit_biases(users, items, ratings, 3, 3, reg=0.0, sweeps=50)
    fitted = b.predict(users, items)
    np.testing.assert_allclose(fitted, ratings, atol=1e-6)  # 3 ratings, 4 free biases: exact
    assert b.user[0] == 0 and b.item[0] == 0  # index 0 (#na#) never rated: no bias
    damped = fit_biases(users, items, ratings, 3, 3, reg=10.0)
    assert np.abs(damped.item).max() < np.abs(b.item).max()  # damping shrinks towards the mean


def test_baselines_on_held_out_pairs() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 40
    ub, ib = rng.normal(size=n_users), rng.normal(size=n_items)
    x = np.stack([rng.integers(1, n_users, 3000), rng.integers(1, n_items, 3000)], 1)
    y = 3 + ub[x[:, 0]] + ib[x[:, 1]] + rng.normal(scale=0.1, size=3000)
    base = rating_baselines(x[:2500], y[:2500], x[2500:], y[2500:], n_users, n_items)
    assert base["biases"]["rmse"] < 0.3 < base["global_mean"]["rmse"]  # the table is all biases


def test_train_prints_the_baselines_and_flags_a_model_that_does_not_beat_them(
    ratings_csv: Path, tmp_path: Path
) -> None:
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "baselines on the same rows: rmse" in res.output and "with user and item biases only" in res.output
    # one epoch at a tiny learning rate cannot beat the biases: said so (the chapter's recipe: the
    # default keeps its best, and its biases-only start would be kept here)
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--out", str(tmp_path / "weak"),
                              "--epochs", "1", "--lr", "1e-6", "--recipe", "chapter"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "does not beat the biases-only baseline" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "weak"), "--data", str(ratings_csv)])
    assert "does not beat the biases-only baseline" in res.output


@pytest.mark.parametrize("recipe", ["fast", "chapter"])
def test_crossval_shows_the_biases_rmse_per_fold(ratings: pd.DataFrame, recipe: str, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    ratings.to_csv(path, index=False)
    res = runner.invoke(
        app, ["crossval", "--data", str(path), "--k", "2", "--epochs", "1", "--recipe", recipe]
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("biases_rmse") == 2


def test_a_ranking_evaluation_carries_the_most_rated_list_scored_the_same_way(tmp_path: Path) -> None:
    from collabkit.data.splits import SplitSpec
    from collabkit.persist import load_model
    from collabkit.ranking import evaluate_ranking
    from collabkit.workflows import TrainConfig, train
    from tests.conftest import make_ratings

    table = make_ratings(n_users=60, n_items=40, n=1500, seed=4)
    test = table.sample(frac=0.2, random_state=0)
    rest = table.drop(test.index)
    train(rest, TrainConfig(model="ease", split=SplitSpec(valid_pct=0.0)), out=tmp_path / "e", log=None)
    train(rest, TrainConfig(model="popular", split=SplitSpec(valid_pct=0.0)), out=tmp_path / "p", log=None)
    res = evaluate_ranking(load_model(tmp_path / "e"), test, min_count=1)
    popular = evaluate_ranking(load_model(tmp_path / "p"), test, min_count=1)
    assert "baseline" not in popular  # the most-rated list is not compared with itself
    assert res["baseline"]["metrics"] == popular["metrics"]
    assert res["beats_popular"] == (res["metrics"]["ndcg@10"] > popular["metrics"]["ndcg@10"])


def test_the_command_flags_a_ranking_model_that_does_not_beat_the_most_rated_list() -> None:
    from collabkit.cli.core import ranking_baseline_lines

    base = {"ndcg@10": 0.3, "precision@10": 0.2, "recall@10": 0.1}
    beaten = {"k": 10, "baseline": {"model": "popular", "metrics": base}, "beats_popular": True}
    lines = ranking_baseline_lines(beaten)
    assert lines == ["baseline on the same users and candidates, the most-rated list: "
                     "ndcg@10 0.3000  precision@10 0.2000  recall@10 0.1000"]  # fmt: skip
    lines = ranking_baseline_lines({**beaten, "beats_popular": False})
    assert len(lines) == 2 and lines[1].startswith("note: this model does not beat the most-rated list")


def test_train_of_a_ranking_model_prints_its_top_10_beside_the_most_rated_list(tmp_path: Path) -> None:
    from tests.conftest import make_ratings

    make_ratings(n_users=60, n_items=40, n=1500, seed=4).to_csv(tmp_path / "r.csv", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "r.csv"), "--model", "ease", "--out",
                                   str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "(held-out ndcg@10 " in res.output and "the most-rated list: ndcg@10 " in res.output


def test_a_model_that_does_not_beat_the_training_mean_is_flagged() -> None:
    from collabkit.cli.core import baseline_lines

    base = {"global_mean": {"rmse": 1.0, "mae": 0.8}, "biases": {"rmse": 1.1, "mae": 0.9}}
    worse = baseline_lines({"rmse": 1.05, "baselines": base, "beats_mean": False, "beats_biases": True})
    assert len(worse) == 2 and worse[1].startswith(
        "note: this model does not beat predicting the training mean"
    )
    better = baseline_lines({"rmse": 0.9, "baselines": base, "beats_mean": True, "beats_biases": True})
    assert len(better) == 1
