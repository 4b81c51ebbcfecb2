"""The command through Typer's test runner: train, evaluate, crossval, predict, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.models import family
from tests.conftest import epoch_families

runner = CliRunner()


def _train(ratings_csv: Path, out: Path, *extra: str) -> dict:
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(ratings_csv),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--bs",
            "128",
            "--json",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("model", epoch_families())
def test_train_every_model_json(ratings_csv: Path, tmp_path: Path, model: str) -> None:
    sizes = ["--factors", "8"] if "n_factors" in family(model).Settings.model_fields else ["--layers", "16,8"]
    res = _train(ratings_csv, tmp_path / model, "--model", model, *sizes)
    used = json.loads((tmp_path / model / "config.json").read_text())["model"]["settings"]
    assert used.get("n_factors", 8) == 8 and used.get("layers", [16, 8]) == [16, 8]
    assert res["model"] == model and res["out"] == str(tmp_path / model)
    # the dot models' default chooses its epoch count on held-aside rows (0: its biases-only start)
    epochs = res["best"]["best_epoch"] if res.get("best") else 2
    assert len(res["history"]) == epochs and all(e["time"] > 0 for e in res["history"])
    assert res["n_train"] + res["n_valid"] == 2000 and res["n_valid"] == 400
    assert 0 < res["valid"]["mse"] < 5
    assert (tmp_path / model / "weights.safetensors").exists()
    if model == "classifier":
        assert 0 <= res["valid"]["accuracy"] <= 1


def test_train_prints_epoch_table(ratings_csv: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--data", str(ratings_csv), "--out", str(tmp_path / "m"), "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # the settings come first, each one not given saying where it came from
    assert lines[0].startswith(
        "dotbias: n_factors 50, y_range [0, 5.5], bs 768, epochs 2, lr 0.005, wd 0.1, recipe fast "
        "(y_range from the data; bs, lr, wd from the fast recipe); split random 20% (seed 42)"
    )
    # then how the default chooses its epoch count, and the epochs scored on the held-aside rows
    assert lines[1].startswith("choosing the epoch count (0: the biases-only start) by the loss on 160")
    assert lines[2].split() == ["epoch", "train_loss", "valid_loss", "rmse", "time"]
    saved = [i for i, line in enumerate(lines) if line.startswith(f"saved dotbias model to {tmp_path / 'm'}")]
    assert saved and lines[saved[0] + 1].startswith("baselines on the same rows: rmse")


def test_evaluate_matches_training_split(ratings_csv: Path, tmp_path: Path) -> None:
    trained = _train(ratings_csv, tmp_path / "m")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "m"), "--data", str(ratings_csv), "--json"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["n"] == 400 and res["overlap"] == 0 and res["same_data"] is True
    assert res["metrics"]["mse"] == pytest.approx(trained["valid"]["mse"], rel=1e-5)


@pytest.mark.parametrize(
    "split",
    [
        ["--split", "kfold", "--k", "4", "--fold", "1"],
        ["--split", "last", "--last-n", "2"],
        ["--split", "time"],
    ],
)
def test_train_with_other_splits(ratings_csv: Path, tmp_path: Path, split: list[str]) -> None:
    res = _train(ratings_csv, tmp_path / "m", "--timestamp-col", "timestamp", *split)
    assert res["split"]["kind"] == split[1] and res["n_valid"] > 0


def test_crossval_reports_mean_and_spread(ratings_csv: Path) -> None:
    result = runner.invoke(
        app, ["crossval", "--data", str(ratings_csv), "--k", "3", "--epochs", "1", "--bs", "256", "--json"]
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert [f["fold"] for f in res["folds"]] == [f"kfold {i}/3 (seed 42)" for i in range(3)]
    mses = [f["mse"] for f in res["folds"]]
    assert res["summary"]["mse"]["mean"] == pytest.approx(sum(mses) / 3)
    assert res["summary"]["mse"]["std"] > 0


def test_predict_by_raw_ids(ratings_csv: Path, tmp_path: Path, ratings: pd.DataFrame) -> None:
    _train(ratings_csv, tmp_path / "m")
    u, i = ratings.iloc[0][["user", "item"]]
    result = runner.invoke(
        app, ["predict", str(tmp_path / "m"), "--user", str(int(u)), "--item", str(int(i)), "--json"]
    )
    assert result.exit_code == 0, result.output
    pred = json.loads(result.stdout)["predictions"][0]
    assert pred["user"] == int(u) and 0 < pred["rating"] < 5.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "ml-99k", "--out", "x"], "unknown dataset 'ml-99k'"),
        (
            ["train", "--data", "{csv}", "--out", "x", "--model", "dott"],
            "unknown model 'dott'; expected one of: dot, dotbias",
        ),
        (["train", "--data", "{csv}", "--out", "x", "--split", "u7"], "unknown split 'u7'"),
        (["train", "--data", "{csv}", "--out", "x", "--layers", "a,b"], "--layers must be comma-separated"),
        (["train", "--data", "{csv}", "--out", "x", "--device", "cuda:0"], "no CUDA GPU"),
        (["train", "--data", "{csv}", "--out", "x", "--rating-col", "stars"], "no column 'stars'"),
        (["predict", "{tmp}/none", "--user", "1", "--item", "2"], "no model folder here"),
    ],
)
def test_bad_input_one_line_exit_2(ratings_csv: Path, tmp_path: Path, args: list[str], message: str) -> None:
    if args[0] == "train" and "cuda" in args and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU, so cuda:0 is valid input")
    args = [a.replace("{csv}", str(ratings_csv)).replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("collabkit: error: ") and message in err[0], result.stderr
    assert not (tmp_path / "x").exists() and not Path("x").exists()


def test_bad_cell_in_file_is_located(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,1,4\n2,1,five\n")
    result = runner.invoke(app, ["train", "--data", str(f), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"collabkit: error: {f}, line 3, column 'rating': 'five' is not a finite number"
    )
    assert not (tmp_path / "m").exists()


def test_help_for_every_command() -> None:
    for cmd in ["train", "evaluate", "crossval", "predict"]:
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "--json" in result.output


def test_crossval_with_ranking_reports_ranking_per_fold(ratings_csv: Path) -> None:
    result = runner.invoke(app, ["crossval", "--data", str(ratings_csv), "--k", "2", "--epochs", "1",
                                 "--ranking", "--top-k", "5", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert all(0 <= f["ndcg@5"] <= 1 for f in res["folds"]) and "precision@5" in res["summary"]


def test_task_ranking_picks_the_ranking_model_and_says_what_it_uses(
    ratings_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    result = runner.invoke(app, ["train", "--data", str(ratings_csv), "--task", "ranking", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("easeknn: l2 500, dropout 0, k 30, shrink 0, weight 0.5; split")
    assert "bs" not in result.output.splitlines()[0]  # no batch size or epochs for a family that fits itself
    assert "(held-out ndcg@10 " in result.output  # a ranking model's held-out figures are its top 10's
    assert "the most-rated list: ndcg@10 " in result.output
    res = runner.invoke(app, ["evaluate", str(out), "--data", str(ratings_csv), "--ranking", "--json"])
    assert res.exit_code == 0, res.output
    assert 0 < json.loads(res.stdout)["ranking"]["metrics"]["ndcg@10"] <= 1
    bad = runner.invoke(
        app, ["train", "--data", str(ratings_csv), "--task", "stars", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "unknown task 'stars'" in bad.stderr


def test_interpret_a_model_without_vectors_says_so(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert (
        runner.invoke(
            app, ["train", "--data", str(ratings_csv), "--model", "popular", "--out", str(out)]
        ).exit_code
        == 0
    )
    res = runner.invoke(app, ["interpret", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert any("no item vectors, so no similar items" in note for note in json.loads(res.stdout)["notes"])


def test_crossval_header_names_every_fold(ratings_csv: Path) -> None:
    res = runner.invoke(app, ["crossval", "--data", str(ratings_csv), "--k", "3", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0]
    assert "3 folds of kfold (seed 42)" in header and "split kfold 0/3" not in header
