"""The contract every registered model family keeps, through the library and through the command.

Parametrised over the registry (`model_names()`), not a hand-written list: a family added later runs
through all of it without editing this file. What a family cannot do (its `capabilities()` say so)
must be a one-line refusal: CollabkitError in the library, exit 2 and one `collabkit: error:` line in
the command; never exit 70, never a traceback. The service's and the page's side of the contract are
in tests/test_service_contract.py and tests/test_page.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.data.splits import SplitSpec
from collabkit.errors import CollabkitError
from collabkit.interpret import interpret_model
from collabkit.models import family, model_names
from collabkit.persist import load_model
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, evaluate_saved, find_lr, train
from tests.conftest import make_ratings

FAMILIES = model_names()
runner = CliRunner()


def quick(name: str) -> dict[str, Any]:
    """Training options that keep a family's run short: one epoch of the chapter's recipe where the
    Learner trains it (the fast recipe may keep its biases-only start on so small a table, with no
    factors to compare: tests/test_kept_start.py covers that case)."""
    recipes = family(name).recipes
    return {"epochs": 1, "recipe": "chapter" if "chapter" in recipes else None} if recipes else {}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Ratings with one side column of the users (a family that reads side columns takes it)."""
    ratings = make_ratings(n_users=50, n_items=30, n=900, seed=3)
    return ratings.assign(gender=np.where(ratings["user"] % 2 == 0, "F", "M"))


@pytest.fixture(scope="module")
def csv(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contract") / "ratings.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def saved(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family trained once through the library and saved."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for name in FAMILIES:
        out[name] = root / name
        train(
            table,
            TrainConfig(model=name, split=SplitSpec("random", 0.2), **quick(name)),
            out=out[name],
            log=None,
        )
    return out


def refusal(output: str) -> None:
    """A refusal is one line, with no traceback."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("collabkit: error:"), output
    assert "internal error" not in output and "Traceback" not in output


@pytest.mark.parametrize("name", FAMILIES)
def test_library_train_save_load_evaluate(name: str, saved: dict[str, Path], table: pd.DataFrame) -> None:
    trained = load_model(saved[name])
    caps = type(trained.model).capabilities()
    assert trained.config.family == name
    assert set(trained.config.settings.used()) == set(type(trained.model).Settings.model_fields)
    result = evaluate_saved(saved[name], table, ranking_k=5)
    assert result.n > 0 and result.ranking is not None
    assert 0.0 <= result.ranking["metrics"]["ndcg@5"] <= 1.0
    if caps.ratings:
        assert np.isfinite(result.metrics["rmse"]) and result.metrics["rmse"] < 3
    else:
        assert "rmse" not in result.metrics and "ranking model" in result.metrics["note"]


@pytest.mark.parametrize("name", FAMILIES)
def test_library_recommend_similar_cold_start(name: str, saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved[name])
    caps = type(rec.model).capabilities()
    user = rec.users[1]
    top = rec.recommend(user, n=5)
    assert len(top) == 5 and list(top.scores) == sorted(top.scores, reverse=True)
    item = top.items[0]
    if caps.item_vectors:
        assert item not in rec.similar_items(item, n=3).items
    else:
        with pytest.raises(CollabkitError, match=name):
            rec.similar_items(item, n=3)
    if caps.user_vectors:
        assert len(rec.similar_users(user, n=3)) > 0
    else:
        with pytest.raises(CollabkitError, match=name):
            rec.similar_users(user, n=3)
    rated = {rec.items[1]: 5.0, rec.items[2]: 1.0}
    if caps.fold_in:
        new = rec.recommend_for_ratings(rated, n=5)
        assert len(new) == 5 and not set(new.items) & set(rated)
    else:
        with pytest.raises(CollabkitError, match=name):
            rec.recommend_for_ratings(rated, n=5)
    if caps.ratings:
        assert np.all(np.isfinite(rec.predict([user], [item])))
    else:
        with pytest.raises(CollabkitError, match="rank"):
            rec.predict([user], [item])


@pytest.mark.parametrize("name", FAMILIES)
def test_a_new_users_side_columns_used_or_refused(name: str, saved: dict[str, Path]) -> None:
    """A new user may state side columns (`about`) to a family that reads them; any other refuses."""
    rec = Recommender.load(saved[name])
    model_dir = str(saved[name])
    if rec.model.user_side_columns():
        assert [c.name for c in rec.model.user_side_columns()] == ["gender"]
        f, m = (rec.fold_in({}, about={"gender": g}) for g in ("F", "M"))
        assert f.about == {"gender": "F"} and not np.allclose(f.row.numpy(), m.row.numpy())
        assert len(rec.recommend_for_ratings({rec.items[1]: 5.0}, n=3, about={"gender": "F"})) == 3
        with pytest.raises(CollabkitError, match="no 'gender' value 'X'; it has: F, M"):
            rec.fold_in({}, about={"gender": "X"})
        with pytest.raises(CollabkitError, match="'age' is not a side column of this model's users"):
            rec.fold_in({}, about={"age": 30})
        res = runner.invoke(app, ["recommend", model_dir, "--about", "gender=F", "-n", "3"])
        assert res.exit_code == 0 and "(gender F)" in res.output, res.output
        res = runner.invoke(app, ["recommend", model_dir, "--about", "gender=X"])
    else:
        with pytest.raises(CollabkitError, match=name):
            rec.fold_in({}, about={"gender": "F"})
        res = runner.invoke(app, ["recommend", model_dir, "--about", "gender=F"])
    assert res.exit_code == 2
    refusal(res.output)


@pytest.mark.parametrize("name", FAMILIES)
def test_library_interpret(name: str, saved: dict[str, Path]) -> None:
    trained = load_model(saved[name])
    caps = type(trained.model).capabilities()
    it = interpret_model(trained, n=3)
    assert (it.item_biases is not None) == caps.biases
    assert (it.embedding is not None) == caps.item_vectors
    if not (caps.biases and caps.item_vectors):
        assert it.notes  # what the family cannot show is said, not left blank


@pytest.mark.parametrize("name", FAMILIES)
def test_library_lr_find(name: str, table: pd.DataFrame, tmp_path: Path) -> None:
    config = TrainConfig(model=name, split=SplitSpec("random", 0.2))
    if family(name).capabilities().lr_find:
        found = find_lr(table, config, num_it=10, plot_path=tmp_path / "lr.png")
        assert found["suggestions"]["valley"] > 0 and (tmp_path / "lr.png").stat().st_size > 0
    else:
        with pytest.raises(CollabkitError, match=f"{name} fits itself"):
            find_lr(table, config, num_it=10)


@pytest.mark.parametrize("name", FAMILIES)
def test_command_every_way_in(name: str, csv: Path, tmp_path: Path) -> None:
    caps = family(name).capabilities()
    out = tmp_path / "m"
    recipes = family(name).recipes
    epochs = ["--epochs", "1", *(["--recipe", "chapter"] if "chapter" in recipes else [])] if recipes else []
    res = runner.invoke(app, ["train", "--data", str(csv), "--model", name, "--out", str(out), "-q", *epochs])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(out), "--data", str(csv), "--ranking", "--top-k", "5"])
    assert res.exit_code == 0, res.output
    assert ("rmse" in res.output) == caps.ratings and "ndcg@5" in res.output
    trained = load_model(out)
    user, item = trained.users[1], trained.items[1]
    res = runner.invoke(app, ["recommend", str(out), "--user", str(user), "-n", "3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", str(out), "--rate", f"{item}=5", "-n", "3"])
    assert res.exit_code == (0 if caps.fold_in else 2), res.output
    res = runner.invoke(app, ["similar", str(out), str(item), "-n", "3"])
    if caps.item_vectors:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 2
        refusal(res.output)
    res = runner.invoke(app, ["predict", str(out), "--user", str(user), "--item", str(item)])
    if caps.ratings:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 2
        refusal(res.output)
    res = runner.invoke(app, ["interpret", str(out), "--out", str(tmp_path / "report"), "-n", "3"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    text = re.sub(r"data:[^\"')]+", "", html)  # embedded images are base64, where any letters occur
    assert "NaN" not in text and "undefined" not in text and name in text
    res = runner.invoke(app, ["lr-find", "--data", str(csv), "--model", name, "--num-it", "10",
                              "--plot", str(tmp_path / "lr.png")])  # fmt: skip
    if caps.lr_find:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 2
        refusal(res.output)


@pytest.mark.parametrize("name", FAMILIES)
def test_command_refuses_settings_the_family_does_not_take(name: str, csv: Path, tmp_path: Path) -> None:
    fields = family(name).Settings.model_fields
    res = runner.invoke(
        app, ["train", "--data", str(csv), "--model", name, "--out", str(tmp_path / "m"), "-o", "no_such=1"]
    )
    assert res.exit_code == 2
    refusal(res.output)
    assert "no_such" in res.output and all(f in res.output for f in fields)
    assert not (tmp_path / "m").exists()
    if "n_factors" not in fields:
        res = runner.invoke(app, ["train", "--data", str(csv), "--model", name, "--out", str(tmp_path / "m"),
                                  "--factors", "8"])  # fmt: skip
        assert res.exit_code == 2
        refusal(res.output)
    if not family(name).recipes:
        for flag in ("--recipe", "--step"):
            value = "chapter" if flag == "--recipe" else "fused"
            res = runner.invoke(app, ["train", "--data", str(csv), "--model", name, "--out",
                                      str(tmp_path / "m"), flag, value])  # fmt: skip
            assert res.exit_code == 2
            refusal(res.output)
