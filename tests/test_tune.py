"""`collabkit tune`: the search space, the rows a tune may read, best.json into `train --config`,
resume, pruning, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

import collabkit.tuning as tuning
from collabkit.cli import app
from collabkit.data.splits import SplitSpec, make_split
from collabkit.errors import CollabkitError
from collabkit.tuning import Dimension, parse_space, search_space, tune

from .conftest import make_ratings

runner = CliRunner()
SMALL = ["-o", "n_factors=4", "-o", "epochs=1"]  # dotbias trials of a fraction of a second


def _tune(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["tune", *args])
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(code: int, stderr: str, words: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("collabkit: error: "), stderr
    assert words in lines[0], lines[0]


def test_search_space_comes_from_the_family_settings_and_recipe() -> None:
    ratings = np.array([1, 2, 3, 4, 5], dtype=np.float32)
    dot = search_space("dotbias")
    assert dot["lr"] == Dimension("float", 5e-4, 5e-2, log=True)  # a tenth to ten times the fast recipe
    assert dot["epochs"] == Dimension("int", 3, 12) and dot["n_factors"].log
    assert "y_range" not in dot and "bs" not in dot  # from the data; a speed choice
    ease = search_space("ease", ratings)
    assert ease["l2"] == Dimension("float", 50, 5000, log=True)
    assert ease["min_rating"].choices == (None, 2.0, 3.0, 4.0, 5.0)  # on the table's own scale
    assert ease["values"].choices == ("binary", "rating")
    assert "min_rating" not in search_space("ease")  # no ratings: no threshold to offer
    assert search_space("popular") == {}
    narrowed = parse_space("dotbias", {"n_factors": "8:32", "lr": "0.001:0.01", "wd": "0,0.1"})
    assert narrowed["n_factors"] == Dimension("int", 8, 32, log=True)
    assert narrowed["wd"].choices == (0, 0.1)
    with pytest.raises(CollabkitError, match="n_factors"):
        parse_space("dotbias", {"n_factors": "0:10"})  # below the setting's declared range
    with pytest.raises(CollabkitError, match="no setting 'l2'"):
        parse_space("dotbias", {"l2": "1:10"})


def test_trials_never_see_the_held_out_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = make_ratings(n_users=60, n_items=40, n=2000)
    split = SplitSpec("random", 0.2, 42)
    _, heldout = make_split(table, split)
    table.loc[heldout, "rating"] = 1000.0  # poisoned: a trial that saw one would show it
    seen: list[pd.DataFrame] = []
    real_train = tuning.train

    def spy(fit_table: pd.DataFrame, *args: object, **kwargs: object) -> object:
        seen.append(fit_table)
        return real_train(fit_table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tuning, "train", spy)
    result = tune(
        table,
        "dotbias",
        out=tmp_path / "t",
        split=split,
        trials=2,
        fixed={"n_factors": 4, "epochs": 1},
        log=None,
    )
    assert len(seen) == 2 and all(t["rating"].max() <= 5 for t in seen)
    assert len(seen[0]) == 1600  # the split's training rows, no more
    assert 0 < result.best_value < 3  # a 1000 anywhere would make it hundreds
    written = pd.read_csv(tmp_path / "t" / "validation_rows.csv")
    assert len(written) == 160 and not set(written["row"]) & set(heldout)
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["tuned"]["rows"]["heldout_unused"] == 400 and "not used" in best["tuned"]["rows"]["how"]


def test_best_json_trains_the_same_settings(ratings_csv: Path, tmp_path: Path) -> None:
    code, out, err = _tune(
        "--data",
        str(ratings_csv),
        "--model",
        "dotbias",
        "--trials",
        "2",
        *SMALL,
        "--out",
        str(tmp_path / "t"),
        "--json",
    )
    assert code == 0, err
    found = json.loads(out)
    lines = err.strip().splitlines()  # with --json, the progress goes to stderr
    assert lines[0].startswith("tuning dotbias on ") and "held-out rows are not used" in lines[0]
    assert lines[2].startswith("[1/2] trial 0  lr 0.005 wd 0.1") and "best" in lines[2]
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["options"]["model"] == "dotbias" and best["options"]["settings"] == {"n_factors": 4}
    result = runner.invoke(
        app, ["train", "--config", str(tmp_path / "t" / "best.json"), "--out", str(tmp_path / "m"), "--json"]
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    for key, value in found["best_params"].items():
        assert trained["settings"][key] == pytest.approx(value)
    assert trained["settings"]["n_factors"] == 4 and trained["settings"]["epochs"] == 1
    assert trained["split"] == SplitSpec("random", 0.2, 42).to_dict()  # the split it was tuned on
    assert "none of the 400 held-out rows here was among them" in result.stderr
    # a typed option wins over the file's
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(tmp_path / "t" / "best.json"),
            "--factors",
            "3",
            "--out",
            str(tmp_path / "m2"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["n_factors"] == 3


def test_settings_are_not_scored_on_rows_they_were_tuned_on(ratings_csv: Path, tmp_path: Path) -> None:
    code, _, err = _tune(
        "--data", str(ratings_csv), "--model", "ease", "--trials", "1", "--out", str(tmp_path / "t")
    )
    assert code == 0, err
    config = str(tmp_path / "t" / "best.json")
    # another seed's held-out rows are mostly the tuned split's training rows
    result = runner.invoke(app, ["train", "--config", config, "--seed", "7", "--out", str(tmp_path / "m")])
    _one_error_line(
        result.exit_code, result.stderr, "held-out rows of split random 20% (seed 7) are among them"
    )
    assert not (tmp_path / "m").exists()
    result = runner.invoke(app, ["crossval", "--config", config, "--k", "2"])
    _one_error_line(result.exit_code, result.stderr, "its figures would be flattered")


def test_resume_continues_the_study_and_refuses_another(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    base = ["--data", str(ratings_csv), "--model", "ease", "--space", "l2=10:1000", "--out", str(out)]
    code, _, err = _tune(*base, "--trials", "2")
    assert code == 0, err
    first = pd.read_csv(out / "trials.csv")
    code, stdout, err = _tune(*base, "--trials", "3", "--resume")
    assert code == 0, err
    assert "resuming the study in" in stdout and "2 of 3 trials done" in stdout
    again = pd.read_csv(out / "trials.csv")
    assert list(again["trial"]) == [0, 1, 2]  # the same study, one more trial
    pd.testing.assert_frame_equal(
        again.iloc[:2][first.columns].drop(columns="seconds"), first.drop(columns="seconds")
    )
    code, _, err = _tune(*base, "--trials", "3", "--resume", "--split", "kfold")
    _one_error_line(code, err, "tunes with split random 20% (seed 42), this run asks for kfold 0/5")
    code, _, err = _tune(*[a if a != "ease" else "easeknn" for a in base], "--resume")
    _one_error_line(code, err, 'tunes with model "ease", this run asks for "easeknn"')
    code, _, err = _tune(*base)  # no --resume: the study is kept, not replaced
    _one_error_line(code, err, "holds a collabkit tune already; add --resume")
    assert len(pd.read_csv(out / "trials.csv")) == 3


def test_pruning_stops_a_hopeless_learning_rate(tmp_path: Path) -> None:
    table = make_ratings(n_users=100, n_items=60, n=4000)
    result = tune(
        table,
        "dotbias",
        out=tmp_path / "t",
        split=SplitSpec("random", 0.2, 42),
        trials=3,
        recipe="chapter",
        fixed={"n_factors": 4, "epochs": 2},
        space={"lr": "1e-6:0.05", "wd": "0.1"},
        log=None,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
        enqueue=[{"lr": 0.01}, {"lr": 0.02}, {"lr": 1e-6}],
    )
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "complete", "pruned"], result.trials
    assert result.trials[2]["note"].startswith("pruned after 1 of 2 epochs")
    assert result.counts == {"complete": 2, "pruned": 1, "failed": 0}


def test_bad_input_is_one_line_and_exit_2(ratings_csv: Path, tmp_path: Path) -> None:
    data = ["--data", str(ratings_csv)]
    code, _, err = _tune(*data, "--model", "dott", "--out", str(tmp_path / "a"))
    _one_error_line(code, err, "dott")
    code, _, err = _tune(*data, "--model", "popular", "--out", str(tmp_path / "b"))
    _one_error_line(code, err, "popular has nothing to search")
    code, _, err = _tune(*data, "--model", "ease", "--space", "l2", "--out", str(tmp_path / "c"))
    _one_error_line(code, err, "--space 'l2' must be KEY=LOW:HIGH")
    code, _, err = _tune(*data, "--model", "ease", "--trials", "0", "--out", str(tmp_path / "d"))
    _one_error_line(code, err, "trials must be a whole number, at least 1")
    code, _, err = _tune(*data, "--model", "ease", "--out", str(tmp_path / "e"), "--resume")
    _one_error_line(code, err, "nothing to resume")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = _tune(*data, "--model", "ease", "--out", str(mine))
    _one_error_line(code, err, "is not a collabkit tune folder")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"options": {"model": "dotbias", "settings": {"n_factors": -1}}}))
    result = runner.invoke(app, ["train", *data, "--config", str(bad), "--out", str(tmp_path / "m")])
    _one_error_line(result.exit_code, result.stderr, "n_factors")
    bad.write_text(json.dumps({"options": {"lr": "fast"}}))
    result = runner.invoke(app, ["train", *data, "--config", str(bad), "--out", str(tmp_path / "m")])
    _one_error_line(result.exit_code, result.stderr, f"--config {bad}: option 'lr'")
