"""A model folder's own table and settings as the defaults of the commands that take one (issue 17).

A newcomer trains on their file with their column names (reader, book, stars on a 2..10 scale);
`crossval MODEL_DIR` and `evaluate MODEL_DIR` then read that file as it was read, and say so; an
explicit --data wins. `evaluate --ranking` ranks what `recommend` serves (min_count 10) and says it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.defaults import MIN_COUNT
from tests.conftest import make_ratings

runner = CliRunner()
COLUMNS = ["--user-col", "reader", "--item-col", "book", "--rating-col", "stars"]


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the CSV, the model folder trained on it through the command with its own column names)."""
    folder = tmp_path_factory.mktemp("books")
    table = make_ratings().drop(columns="timestamp")
    table = table.rename(columns={"user": "reader", "item": "book", "rating": "stars"})
    table["stars"] = table["stars"] * 2  # a 2..10 scale
    rare = pd.DataFrame({"reader": [1, 2, 3, 4, 5, 6], "book": [900, 900, 901, 901, 902, 902], "stars": 8.0})
    table = pd.concat([table, rare], ignore_index=True)  # three books with 2 ratings each
    csv = folder / "books.csv"
    table.to_csv(csv, index=False)
    out = folder / "m"
    args = ["train", "--data", str(csv), *COLUMNS, "--epochs", "2", "--factors", "8", "--out", str(out), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return csv, out


def test_crossval_of_a_model_folder_reads_its_table_as_it_was_read(books: tuple[Path, Path]) -> None:
    csv, out = books
    res = runner.invoke(app, ["crossval", str(out), "--k", "2"])  # no --data, no column options
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert (
        lines[0] == f"data: {csv}, the table the model was trained on (recorded in {out})"
    )  # evaluate's words
    assert lines[1].startswith("model: dotbias, trained with epochs 2, n_factors 8 and seed 42")
    settings = lines[2]
    assert "n_factors 8" in settings and "epochs 2" in settings  # the settings it was given, again
    assert "y_range [0, 11]" in settings  # from the stars column (2..10), not a 1..5 default
    assert "2 folds of kfold" in settings and lines[-1].startswith("mean")


def test_crossval_options_given_win_over_the_folder(books: tuple[Path, Path], tmp_path: Path) -> None:
    csv, out = books
    res = runner.invoke(
        app, ["crossval", str(out), "--k", "2", "--epochs", "1", "-o", "n_factors=4", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert (
        "n_factors 4" in json.loads(res.stdout)["settings"]
        and "epochs 1" in json.loads(res.stdout)["settings"]
    )
    plain = tmp_path / "plain.csv"  # user, item, rating: read with the options given, as evaluate does
    make_ratings().to_csv(plain, index=False)
    res = runner.invoke(app, ["crossval", str(out), "--data", str(plain), "--k", "2"])
    assert res.exit_code == 0, res.output
    assert "the table the model was trained on" not in res.output and "y_range [0, 5.5]" in res.output
    assert "n_factors 8" in res.output  # the folder's settings still apply
    # the folder's columns are not applied to an explicit --data: its own columns are named instead
    res = runner.invoke(app, ["crossval", str(out), "--data", str(csv), "--k", "2"])
    assert res.exit_code == 2 and "reader" in res.output
    res = runner.invoke(app, ["crossval", str(out), "--k", "2", "--model", "ease"])
    assert res.exit_code == 0, res.output
    assert f"model: ease, as given ({out} holds a dotbias model: its settings unused)" in res.output


def test_crossval_says_which_table_it_reads_without_data_or_folder(tmp_path: Path) -> None:
    res = runner.invoke(app, ["crossval", "--k", "0"])  # refused before ml-100k is read
    assert res.exit_code == 2 and "--k must be at least 2 folds" in res.output
    assert res.output.startswith("data: ml-100k, the default (give --data FILE, or a model folder")
    res = runner.invoke(app, ["crossval", str(tmp_path / "nothing"), "--k", "2"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1  # one line, no traceback


def test_evaluate_ranking_ranks_what_recommend_serves_and_says_so(books: tuple[Path, Path]) -> None:
    from collabkit.persist import load_model

    _, out = books
    counts = load_model(out).item_counts.numpy()[1:]  # training ratings per item (#na# left out)
    res = runner.invoke(app, ["evaluate", str(out), "--ranking", "--top-k", "5"])
    assert res.exit_code == 0, res.output
    assert (
        "min_count 10: items with at least 10 training ratings, as recommend serves by default" in res.output
    )
    ranked = json.loads(
        runner.invoke(app, ["evaluate", str(out), "--ranking", "--top-k", "5", "--json"]).stdout
    )
    assert ranked["ranking"]["min_count"] == MIN_COUNT
    assert ranked["ranking"]["candidate_items"] == int((counts >= MIN_COUNT).sum())
    every = json.loads(
        runner.invoke(
            app, ["evaluate", str(out), "--ranking", "--top-k", "5", "--min-count", "1", "--json"]
        ).stdout
    )
    assert every["ranking"]["min_count"] == 1
    assert (
        every["ranking"]["candidate_items"] == int((counts >= 1).sum()) > ranked["ranking"]["candidate_items"]
    )
    served = json.loads(runner.invoke(app, ["recommend", str(out), "--user", "1", "--json"]).stdout)
    assert served["min_count"] == ranked["ranking"]["min_count"]  # the lists scored are the lists shown
    assert not {900, 901, 902} & {r["item"] for r in served["recommendations"]}


def test_evaluate_ranking_defaults_to_min_count_and_labels_an_empty_catalogue(
    books: tuple[Path, Path],
) -> None:
    from collabkit.persist import load_model
    from collabkit.ranking import evaluate_ranking

    csv, out = books
    trained = load_model(out)
    test = pd.read_csv(csv).rename(columns={"reader": "user", "book": "item", "stars": "rating"}).iloc[:300]
    default = evaluate_ranking(trained, test, k=5)
    same = evaluate_ranking(trained, test, k=5, min_count=MIN_COUNT)
    assert default["min_count"] == MIN_COUNT and json.dumps(default) == json.dumps(same)
    assert "note" not in default
    none = evaluate_ranking(trained, test, k=5, min_count=10**6)
    assert none["candidate_items"] == 0 and "no item has 1000000 training ratings" in none["note"]
    shares = [none["metrics"][f"{m}@5"] for m in ("precision", "recall", "ndcg", "map", "hit_rate")]
    assert shares == [0.0] * 5 and not np.isnan(shares).any()  # empty lists score 0, not NaN


def test_a_table_named_by_a_relative_path_is_found_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    make_ratings(n=600).to_csv(project / "r.csv", index=False)
    monkeypatch.chdir(project)
    res = runner.invoke(
        app, ["train", "--data", "r.csv", "--epochs", "1", "--out", str(tmp_path / "m"), "-q"]
    )
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(elsewhere)  # r.csv is not here
    res = runner.invoke(app, ["evaluate", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"data: {project / 'r.csv'}, the table the model was trained on")
