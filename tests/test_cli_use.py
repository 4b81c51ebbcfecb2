"""`collabkit recommend | similar | evaluate --ranking` through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit import CollabDataLoaders, collab_learner, set_seed
from collabkit.cli import app

runner = CliRunner()

TITLES = {100: "Star Wars (1977)", 101: "Titanic (1997)", 102: "2 + 2 = 4 (1999)"}


def titled_board(n_users: int = 30, n_items: int = 20, seed: int = 0) -> pd.DataFrame:
    """Users 1, 3, .. like even items, users 2, 4, .. odd items; items have titles, one with '='."""
    rng = np.random.default_rng(seed)
    rows = [
        (u, i, float(rng.integers(4, 6) if u % 2 != i % 2 else rng.integers(1, 3)))
        for u in range(1, n_users + 1)
        for i in range(100, 100 + n_items)
        if rng.random() < 0.7
    ]
    table = pd.DataFrame(rows, columns=["user", "item", "rating"])
    table["title"] = [TITLES.get(i, f"Movie {i} (2000)") for i in table["item"]]
    return table


@pytest.fixture(scope="module")
def board() -> pd.DataFrame:
    return titled_board()


@pytest.fixture(scope="module")
def model_dir(board: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    set_seed(0)
    dls = CollabDataLoaders.from_df(
        board, user_name="user", item_name="item", rating_name="rating", valid_pct=0.0
    )
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False)
    learn.fit_one_cycle(5, 3e-2)
    return Path(learn.export(str(tmp_path_factory.mktemp("m") / "dotbias")))


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails_with(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("collabkit: error: ") and message in err[0], result.stderr


def test_recommend_for_a_user(model_dir: Path, board: pd.DataFrame) -> None:
    res = run_json("recommend", str(model_dir), "--user", "1", "-n", "4")
    assert res["mode"] == "user" and res["user"] == 1
    items = [r["item"] for r in res["recommendations"]]
    assert len(items) == 4 and [r["rank"] for r in res["recommendations"]] == [1, 2, 3, 4]
    assert not set(items) & set(board.loc[board["user"] == 1, "item"])
    own = [i % 2 == 0 for i in items]  # the unseen items of the user's own group come first
    assert own[0] and own == sorted(own, reverse=True)
    scores = [r["score"] for r in res["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    seen = run_json("recommend", str(model_dir), "--user", "1", "-n", "20", "--include-seen")
    assert len(seen["recommendations"]) == 20
    text = runner.invoke(app, ["recommend", str(model_dir), "--user", "1", "-n", "2"])
    assert text.exit_code == 0 and text.stdout.startswith("top 2 for user 1")


def test_recommend_for_a_new_user_by_title(model_dir: Path) -> None:
    res = run_json(
        "recommend", str(model_dir), "--rate", "2 + 2 = 4 (1999)=5", "--rate", "titanic (1997)=1", "-n", "3"
    )
    assert res["mode"] == "new_user"
    assert res["ratings"] == [
        {"item": 102, "title": "2 + 2 = 4 (1999)", "rating": 5.0},
        {"item": 101, "title": "Titanic (1997)", "rating": 1.0},
    ]
    items = [r["item"] for r in res["recommendations"]]
    assert len(items) == 3 and not {101, 102} & set(items) and all(i % 2 == 0 for i in items)


def test_recommend_with_nothing_is_the_popularity_list(model_dir: Path) -> None:
    res = run_json("recommend", str(model_dir), "-n", "5", "--min-count", "10")
    assert res["mode"] == "popular" and len(res["recommendations"]) == 5


def test_similar_items_and_users(model_dir: Path) -> None:
    res = run_json("similar", str(model_dir), "Star Wars (1977)", "-n", "3")
    assert res["items"] == [{"item": 100, "title": "Star Wars (1977)", "n_ratings": 22}]
    near = [r["item"] for r in res["similar_items"]]
    assert len(near) == 3 and 100 not in near and all(i % 2 == 0 for i in near)
    assert res["min_count"] == 10 and all(r["n_ratings"] >= 10 for r in res["similar_items"])
    both = run_json("similar", str(model_dir), "100", "104", "-n", "2")
    assert not {100, 104} & {r["item"] for r in both["similar_items"]}
    users = run_json("similar", str(model_dir), "--users", "2", "-n", "3")
    assert all(r["user"] % 2 == 0 and r["user"] != 2 for r in users["similar_users"])
    assert all(r["n_ratings"] >= 10 for r in users["similar_users"])
    text = runner.invoke(app, ["similar", str(model_dir), "Star Wars (1977)", "-n", "2"])
    assert text.exit_code == 0 and "most like Star Wars (1977)" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "{m}", "--user", "999"], "user '999'"),
        (["recommend", "{m}", "--user", "1", "--rate", "100=5"], "not both"),
        (["recommend", "{m}", "--rate", "Star Wars (1977)"], "must be ITEM=RATING"),
        (["recommend", "{m}", "--rate", "Star Wars (1977)=great"], "is not a number"),
        (["recommend", "{m}", "--rate", "100=5", "--rate", "Star Wars (1977)=4"], "rated twice"),
        (["recommend", "{m}", "--rate", "Star Wars=5"], "did you mean 'Star Wars (1977)'"),
        (["recommend", "{m}", "--include-seen"], "--include-seen"),
        (["recommend", "{m}", "-n", "0"], "n must be"),
        (["similar", "{m}", "Star War (1977)"], "did you mean"),
        (["similar", "{m}", "--users", "1", "2"], "exactly one user"),
        (["recommend", "/nonexistent/model"], "no model folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_dir: Path, args: list[str], message: str) -> None:
    fails_with([a.replace("{m}", str(model_dir)) for a in args], message)


@pytest.mark.parametrize("command", ["recommend", "similar", "evaluate"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--json" in result.stdout
    if command == "evaluate":
        assert "--ranking" in result.stdout and "--top-k" in result.stdout


def test_evaluate_ranking(tmp_path: Path, ratings: pd.DataFrame) -> None:
    csv = tmp_path / "ratings.csv"
    ratings.to_csv(csv, index=False)
    out = tmp_path / "m"
    trained = runner.invoke(
        app, ["train", "--data", str(csv), "--out", str(out), "--epochs", "2", "--bs", "128", "--quiet"]
    )
    assert trained.exit_code == 0, trained.output
    res = run_json("evaluate", str(out), "--data", str(csv), "--ranking", "--top-k", "5")
    rk = res["ranking"]
    assert rk["k"] == 5 and set(rk["metrics"]) == {
        "precision@5",
        "recall@5",
        "ndcg@5",
        "map@5",
        "hit_rate@5",
        "coverage@5",
        "mean_popularity@5",
    }
    shares = {k: v for k, v in rk["metrics"].items() if not k.startswith("mean_popularity")}
    assert all(0 <= v <= 1 for v in shares.values()) and rk["users"]["counted"] > 0
    assert rk["metrics"]["mean_popularity@5"] >= 1  # training ratings of a recommended item
    assert "rmse" in res["metrics"]
    text = runner.invoke(app, ["evaluate", str(out), "--data", str(csv), "--ranking"])
    assert (
        text.exit_code == 0
        and "precision@10" in text.stdout
        and "users with a held-out rating" in text.stdout
    )


def test_a_family_without_vectors_is_refused_in_one_line(tmp_path: Path, board: pd.DataFrame) -> None:
    from collabkit.workflows import TrainConfig, train

    train(board, TrainConfig(model="popular"), out=tmp_path / "popular", log=None)
    fails_with(["similar", str(tmp_path / "popular"), "100"], "model 'popular' has no item vectors, so no")
    fails_with(["similar", str(tmp_path / "popular"), "--users", "1"], "model 'popular' has no user vectors")
    top = run_json("recommend", str(tmp_path / "popular"), "--user", "1", "-n", "3")
    assert top["score_kind"] == "score" and len(top["recommendations"]) == 3


def test_plain_outputs_name_titles_and_count_right(tmp_path: Path) -> None:
    from tests.conftest import make_ratings

    table = make_ratings()
    table["title"] = [f"Film {i}" for i in table["item"]]
    csv = tmp_path / "r.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "m"
    assert runner.invoke(app, ["train", "--data", str(csv), "--out", str(out), "-q"]).exit_code == 0
    user, item = int(table["user"].iloc[0]), int(table["item"].iloc[0])
    res = runner.invoke(app, ["predict", str(out), "--user", str(user), "--item", str(item)])
    assert res.exit_code == 0 and res.output.strip().split("\t")[:2] == [str(user), str(item)]
    assert res.output.strip().split("\t")[3] == f"Film {item}"  # the title, as --json gives it
    res = runner.invoke(app, ["recommend", str(out), "--rate", f"{item}=5", "-n", "3"])
    assert res.exit_code == 0 and "a new user with 1 rating" in res.output and "1 ratings" not in res.output
