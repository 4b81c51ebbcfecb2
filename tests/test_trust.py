"""Answers a user can trust: each test here pins a silent wrong answer that collabkit used to give."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit import CollabDataLoaders, CollabkitError, UnknownIdError, Vocab
from collabkit.bundle import MIN_COUNT, TrainedModel
from collabkit.cli import app
from collabkit.data.resolver import IdResolver
from collabkit.data.splits import SplitSpec, make_split
from collabkit.errors import AmbiguousIdError
from collabkit.models import ModelConfig, build_model
from collabkit.ranking import evaluate_ranking
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, train

runner = CliRunner()


def _cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- 1. evaluate scores the model's own held-out rows ------------------------------------------------
def test_evaluate_without_split_uses_the_models_own_split(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    trained = _cli("train", "--data", str(ratings_csv), "--out", str(out), "--split", "kfold", "--k", "4",
                   "--fold", "2", "--epochs", "2", "-q")  # fmt: skip
    res = _cli("evaluate", str(out), "--data", str(ratings_csv))
    assert res["split"] == "kfold 2/4 (seed 42)" and res["overlap"] == 0
    assert res["n"] == trained["n_valid"]
    assert res["metrics"]["rmse"] == pytest.approx(trained["valid"]["rmse"], rel=1e-6)


def test_a_split_that_holds_training_rows_is_refused_then_counted(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    _cli("train", "--data", str(ratings_csv), "--out", str(out), "--epochs", "1", "-q")
    refused = runner.invoke(app, ["evaluate", str(out), "--data", str(ratings_csv), "--split", "random",
                                  "--seed", "7"])  # fmt: skip
    assert refused.exit_code == 2
    assert "were trained on" in refused.stderr and "--allow-overlap" in refused.stderr
    counted = _cli("evaluate", str(out), "--data", str(ratings_csv), "--split", "random", "--seed", "7",
                   "--allow-overlap")  # fmt: skip
    assert 200 < counted["overlap"] < 400  # ~80% of the 400 rows were in the model's training 80%
    assert any("trained on" in note for note in counted["notes"])


def test_another_table_is_named_and_needs_an_explicit_split(
    ratings_csv: Path, tmp_path: Path, ratings: pd.DataFrame
) -> None:
    out = tmp_path / "m"
    _cli("train", "--data", str(ratings_csv), "--out", str(out), "--epochs", "1", "-q")
    other = tmp_path / "other.csv"
    changed = ratings.copy()
    changed.loc[0, "rating"] = 6 - changed.loc[0, "rating"] if changed.loc[0, "rating"] != 3 else 1
    changed.to_csv(other, index=False)
    refused = runner.invoke(app, ["evaluate", str(out), "--data", str(other)])
    assert refused.exit_code == 2 and "is a different one" in refused.stderr


# -- 2. ambiguous titles -----------------------------------------------------------------------------
def test_an_ambiguous_title_is_an_error_listing_the_candidates() -> None:
    items = Vocab([246, 268, 300], name="item")
    titles = {246: "Chasing Amy (1997)", 268: "Chasing Amy (1997)", 300: "Air Force One (1997)"}
    resolve = IdResolver(Vocab([1]), items, titles, np.array([0, 124, 255, 431]))
    with pytest.raises(
        AmbiguousIdError, match=r"names 2 items: id 246 \(124 ratings\); id 268 \(255 ratings\)"
    ) as e:
        resolve.item("Chasing Amy (1997)")
    assert [c["item"] for c in e.value.candidates] == [246, 268]
    assert resolve.item(" 268 ") == 268 and resolve.item(246) == 246  # ids always work
    assert resolve.item("air force one (1997)") == 300
    assert resolve.ambiguous_titles() == {"Chasing Amy (1997)": [246, 268]}


@pytest.mark.slow
def test_ml100k_chasing_amy_is_not_its_own_neighbour(ml100k: pd.DataFrame, tmp_path: Path) -> None:
    train(ml100k, TrainConfig(split=SplitSpec("u1")), data_name="ml-100k", out=tmp_path / "m", log=None)
    rec = Recommender.load(tmp_path / "m")
    assert len(rec.resolve.ambiguous_titles()) == 18
    with pytest.raises(AmbiguousIdError, match="246"):
        rec.similar_items("Chasing Amy (1997)")
    near = rec.similar_items(246, n=10)
    assert "Chasing Amy (1997)" not in near.titles  # neither itself nor its twin id 268


# -- 3. ranking metrics count every relevant item ------------------------------------------------------
def test_recall_counts_relevant_items_the_model_does_not_know() -> None:
    config = ModelConfig("dotbias", n_users=2, n_items=4, n_factors=2, y_range=(0.0, 5.5))
    model = build_model(config)
    with torch.no_grad():
        for t in (model.u_weight, model.i_weight, model.u_bias):
            t.weight.zero_()
        model.i_bias.weight[:, 0] = torch.tensor([0.0, 2.0, 1.0, 0.5])
    # A rated item 12 in training; items 10 and 11 have training ratings too (from index 0's row)
    trained = TrainedModel(model, config, Vocab(["A"], name="user"), Vocab([10, 11, 12], name="item"),
                           torch.tensor([[1, 3], [0, 1], [0, 2]]), torch.tensor([4.0, 4.0, 4.0]))  # fmt: skip
    # two relevant items the model knows (10, 11), two it has never heard of (98, 99)
    test = pd.DataFrame({"user": ["A"] * 4, "item": [10, 11, 98, 99], "rating": [5.0] * 4})
    m = evaluate_ranking(trained, test, k=2, min_count=1)["metrics"]  # every trained item
    assert m["recall@2"] == pytest.approx(2 / 4)  # was 2/3: the unknown ones merged into one
    assert m["precision@2"] == pytest.approx(1.0)


# -- 4. untrained items follow the unknown-item policy ---------------------------------------------
def _model_with_an_untrained_item(ratings: pd.DataFrame) -> Recommender:
    from collabkit import collab_learner
    from collabkit.bundle import trained_from_learner

    table = ratings.copy()
    only_valid = int(table["item"].max()) + 1
    table = pd.concat(
        [table, pd.DataFrame({"user": [1], "item": [only_valid], "rating": [4.0], "timestamp": [0]})]
    )
    rows = np.arange(len(table))
    dls = CollabDataLoaders.from_df(table, bs=256, train_rows=rows[:-1], valid_rows=rows[-1:])
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    learn.fit(1, 1e-2)
    return Recommender(trained_from_learner(learn))


def test_untrained_items_are_refused_or_flagged(ratings: pd.DataFrame) -> None:
    rec = _model_with_an_untrained_item(ratings)
    untrained = rec.items[-1]
    with pytest.raises(UnknownIdError, match="no training ratings"):
        rec.predict([1], [untrained])
    details = rec.predict_details([1, 1], [100, untrained], unknown="mean")
    assert details["fallback"].tolist() == [False, True]
    assert details["rating"].iloc[1] == pytest.approx(rec.global_mean)
    with pytest.raises(UnknownIdError, match="no training ratings"):
        rec.similar_items(untrained)
    assert untrained not in rec.recommend(2, n=50).items
    assert untrained not in rec.similar_items(100, n=50).items


def test_one_min_count_default_everywhere() -> None:
    import inspect

    from collabkit import interpret

    assert MIN_COUNT == 10  # defaults.py says why: one-rating items are noise as answers
    for fn in (interpret.item_biases, interpret.embedding_map, interpret.similar_items_table):
        assert inspect.signature(fn).parameters["min_count"].default == MIN_COUNT
    for fn in (Recommender.recommend_many, Recommender.similar_items, Recommender.popular):
        assert inspect.signature(fn).parameters["min_count"].default == MIN_COUNT
    for command in ("interpret", "similar", "recommend"):
        text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "--min-count" in text and f"[default: {MIN_COUNT}]" in text


# -- 5. cold start personalises; ratings outside the scale are refused --------------------------------
def test_fold_in_refuses_ratings_outside_the_scale(ratings: pd.DataFrame) -> None:
    rec = _model_with_an_untrained_item(ratings)
    with pytest.raises(
        CollabkitError, match="outside the model's scale; the model's ratings run from 1 to 5"
    ):
        rec.fold_in({100: 9})
    with pytest.raises(CollabkitError, match="strength"):
        rec.fold_in({100: 4}, strength=-1)
    weak = rec.fold_in({100: 5, 101: 1}, strength=1e-3).row
    strong = rec.fold_in({100: 5, 101: 1}, strength=1e3).row
    prior = rec.fold_in({}).row
    assert float((strong - prior).norm()) < float((weak - prior).norm())


@pytest.mark.slow
def test_ml100k_opposite_new_users_get_different_lists(ml100k: pd.DataFrame, tmp_path: Path) -> None:
    train(ml100k, TrainConfig(split=SplitSpec("u1")), data_name="ml-100k", out=tmp_path / "m", log=None)
    rec = Recommender.load(tmp_path / "m")
    kids = {"Toy Story (1995)": 5, "Aladdin (1992)": 5, "Lion King, The (1994)": 5,
            "Pulp Fiction (1994)": 1, "Reservoir Dogs (1992)": 1}  # fmt: skip
    action = {"Star Wars (1977)": 5, "Alien (1979)": 5, "Terminator, The (1984)": 5,
              "Sense and Sensibility (1995)": 1, "Emma (1996)": 1}  # fmt: skip
    a = set(rec.recommend_for_ratings(kids, 10).items)
    b = set(rec.recommend_for_ratings(action, 10).items)
    assert len(a & b) <= 3


# -- 6. the settings a run uses are said ------------------------------------------------------------
def test_train_help_shows_every_default() -> None:
    text = runner.invoke(app, ["train", "--help"], terminal_width=250).output
    text = re.sub(r"[\s│]+", " ", text)  # rich wraps the help in a box: read it as one line
    for option in ("--recipe", "--factors", "--split", "--valid-pct", "--seed", "--model"):
        assert option in text
    assert "Default: fast." in text and "[default: random]" in text
    assert "default: the recipe's" in text and "default: from the data" in text
    assert "default: the family's" in text  # --factors: each family declares its own


def test_recipe_is_explicit_and_given_settings_win(ratings: pd.DataFrame) -> None:
    res = train(ratings, TrainConfig(recipe="fast", epochs=1, lr=5e-3, wd=0.1), log=None)
    assert res.settings["bs"] == 768 and res.sources["bs"] == "fast recipe"
    assert res.sources["epochs"] == "given" and res.settings["epochs"] == 1
    chapter = train(ratings, TrainConfig(recipe="chapter", epochs=1), log=None)
    assert chapter.settings["bs"] == 64
    with pytest.raises(CollabkitError, match="learning rate must be a positive number"):
        train(ratings, TrainConfig(lr=-1e-3), log=None)
    with pytest.raises(CollabkitError, match="weight decay must be 0 or more"):
        train(ratings, TrainConfig(wd=-0.1), log=None)


def test_y_range_comes_from_the_data_or_is_checked_against_it(ratings: pd.DataFrame) -> None:
    tens = ratings.assign(rating=ratings["rating"] * 2)  # 2..10
    res = train(tens, TrainConfig(epochs=1), log=None)
    assert res.settings["y_range"] == [0.0, 11.0] and res.sources["y_range"] == "the data"
    with pytest.raises(CollabkitError, match="cannot hold the ratings, which run from 2 to 10"):
        train(tens, TrainConfig(epochs=1, settings={"y_range": (0.0, 5.5)}), log=None)


# -- 7. splits use the user's columns and check their arguments ---------------------------------------
def test_splits_use_the_tables_own_column_names(ratings: pd.DataFrame) -> None:
    renamed = ratings.rename(columns={"user": "uid", "item": "movie", "rating": "stars", "timestamp": "when"})
    dls = CollabDataLoaders.from_df(renamed, user_name="uid", item_name="movie", rating_name="stars",
                                    split="last", last_n=2, timestamp_name="when")  # fmt: skip
    per_user = renamed.iloc[dls.valid_rows].groupby("uid").size()
    assert (per_user == 2).all()
    assert dls.split is not None and dls.split.columns["timestamp"] == "when"
    assert "split each user's last 2" in repr(dls)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "time", "valid_pct": 0.0}, "above 0 and below 1 for a time split"),
        ({"kind": "random", "valid_pct": 1.5}, "at least 0 and below 1"),
        ({"kind": "kfold", "k": 0}, "at least 2"),
        ({"kind": "kfold", "k": 3, "fold": 3}, r"fold must be in 0\.\.2"),
        ({"kind": "last", "last_n": 0}, "last_n must be at least 1"),
        ({"kind": "u9"}, "unknown split 'u9'"),
    ],
)
def test_split_arguments_are_checked(spec: dict, message: str) -> None:
    with pytest.raises(CollabkitError, match=message):
        SplitSpec(**spec)


def test_a_split_that_leaves_no_training_rows_is_refused(ratings: pd.DataFrame) -> None:
    late = ratings.assign(timestamp=1)  # every row at the cut-off: all held out
    with pytest.raises(CollabkitError, match="leaves no training rows"):
        CollabDataLoaders.from_df(late, split="time", valid_pct=0.2)
    train_rows, valid_rows = make_split(ratings, SplitSpec("time", valid_pct=0.25))
    assert len(valid_rows) and len(train_rows)


def test_a_popularity_penalty_recommends_less_popular_items(ratings: pd.DataFrame) -> None:
    rec = _model_with_an_untrained_item(ratings)
    users = sorted(rec.users[1:])[:30]
    counts = rec.item_counts.numpy()
    plain = rec.recommend_many(users, n=5)
    penalised = rec.recommend_many(users, n=5, popularity_penalty=2.0)
    assert (
        counts[penalised.item_idx[penalised.item_idx > 0]].mean()
        < counts[plain.item_idx[plain.item_idx > 0]].mean()
    )
    assert np.array_equal(rec.recommend_many(users, n=5, popularity_penalty=0.0).item_idx, plain.item_idx)
    with pytest.raises(CollabkitError, match="popularity_penalty"):
        rec.recommend(users[0], popularity_penalty=-1)


def test_held_out_rows_that_repeat_a_trained_pair_are_counted_and_noted(ratings: pd.DataFrame) -> None:
    doubled = pd.concat([ratings, ratings.iloc[:300]], ignore_index=True)  # 300 pairs rated twice
    res = train(doubled, TrainConfig(epochs=1), log=None)
    assert res.valid["overlap"] > 0 and "flattered" in res.valid["note"]
    clean = train(ratings, TrainConfig(epochs=1), log=None)
    assert "overlap" not in clean.valid


def test_evaluate_reads_the_table_the_model_was_trained_on_as_it_was_read(
    ratings: pd.DataFrame, tmp_path: Path
) -> None:
    books = ratings.rename(columns={"user": "reader", "item": "book", "rating": "stars"})
    books["stars"] = books["stars"] * 2  # a 2..10 scale
    csv = tmp_path / "books.csv"
    books.to_csv(csv, index=False)
    out = tmp_path / "m"
    args = ["--user-col", "reader", "--item-col", "book", "--rating-col", "stars"]
    trained = runner.invoke(app, ["train", "--data", str(csv), *args, "--out", str(out), "--json", "-q"])
    assert trained.exit_code == 0, trained.output
    res = runner.invoke(app, ["evaluate", str(out)])  # no --data, no column options
    assert res.exit_code == 0, res.output
    assert f"data: {csv}, the table the model was trained on" in res.output
    rmse = json.loads(trained.stdout)["valid"]["rmse"]
    assert f"rmse {rmse:.4f}" in res.output  # its own held-out rows, the figure train printed
    from_rows = runner.invoke(app, ["evaluate", str(out), "--data", str(csv)])  # columns not given
    assert from_rows.exit_code == 2 and "reader" in from_rows.output  # the file's columns, named
