"""The hybrid deep model and the side columns it reads (`collabkit.data.side`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit import collab_learner, load_model
from collabkit.cli import app
from collabkit.data.loaders import CollabDataLoaders
from collabkit.data.side import column_codes, describe_columns, with_movielens_users
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError, DataError
from collabkit.recommend import Recommender

runner = CliRunner()


def side_table(n_users: int = 300, n_items: int = 120, per_user: int = 5, seed: int = 0) -> pd.DataFrame:
    """Ratings decided by the side columns alone: a user of group "a" likes genre X and dislikes
    Y, a "b" user the reverse (plus noise). Each user rates only a few items, so a model without
    the side columns cannot learn a user's taste from their ratings; one with them can."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n_users)
    age = rng.integers(18, 70, n_users)
    genre = rng.choice(["X", "Y"], n_items)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            likes = (group[u] == "a") == (genre[i] == "X")
            rating = 3 + (1.5 if likes else -1.5) + rng.normal(0, 0.3)
            rows.append((f"u{u}", f"i{i}", float(np.clip(rating, 1, 5)), group[u], int(age[u]),
                         f"{genre[i]}|Z" if i % 3 == 0 else genre[i]))  # fmt: skip
    return pd.DataFrame(rows, columns=["user", "item", "rating", "group", "age", "genres"])


def held_out_rmse(model: str, table: pd.DataFrame, **settings: object) -> float:
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(table, valid_pct=0.25, seed=1, bs=64)
    learn = collab_learner(
        dls, model=model, y_range=(0.5, 5.5), settings=settings, show_progress=False, log=None
    )
    learn.fit_one_cycle(8, 1e-2, wd=0.01)
    preds, targets = learn.get_preds()
    return float(((preds - targets) ** 2).mean().sqrt())


def test_side_columns_carry_taste_that_ratings_alone_cannot() -> None:
    table = side_table()
    hybrid = held_out_rmse("hybrid", table, user_columns=["group"], item_columns=["genres"])
    plain = held_out_rmse("nn", table)
    without = held_out_rmse("hybrid", table, user_columns=[], item_columns=[], embed_p=0.0)
    assert hybrid < 0.8, hybrid  # the side columns explain +-1.5 stars
    assert hybrid < plain - 0.4, (hybrid, plain)
    assert without == pytest.approx(plain, abs=1e-6)  # no side columns: exactly the chapter's network


def test_each_kind_of_side_column_is_coded_by_the_vocabulary() -> None:
    table = side_table(n_users=100, n_items=30)
    cols = describe_columns(table, "user", ["group", "age"], "user", bins=4)
    group, age = cols
    assert (group.kind, group.levels) == ("category", ["a", "b"])
    assert age.kind == "number" and len(age.levels) == 4 and len(age.edges) == 3
    (genres,) = describe_columns(table, "item", ["genres"], "item", bins=4)
    assert genres.kind == "tags" and genres.levels == ["X", "Y", "Z"] and genres.width == 2

    users = Vocab.from_values(list(table["user"]) + ["new"], name="user")
    codes = column_codes(table, "user", users, group)
    first = table.drop_duplicates("user").set_index("user")["group"]
    for uid in ("u0", "u1", "u7"):
        assert codes[users.encode([uid])[0], 0] == group.levels.index(first[uid]) + 1
    assert codes[users.encode(["new"])[0], 0] == 0 and codes[0, 0] == 0  # unknown and #na#: code 0

    age_codes = column_codes(table, "user", users, age)[:, 0]
    ages = table.drop_duplicates("user").set_index("user")["age"]
    oldest, youngest = ages.idxmax(), ages.idxmin()
    assert age_codes[users.encode([oldest])[0]] == 4 and age_codes[users.encode([youngest])[0]] == 1

    items = Vocab.from_values(table["item"], name="item")
    tag_codes = column_codes(table, "item", items, genres)
    row = tag_codes[items.encode(["i0"])[0]]  # i0 is "X|Z" or "Y|Z"
    assert sorted(row.tolist())[-1] == 3 and (row > 0).sum() == 2


def test_a_side_column_must_hold_one_value_per_user() -> None:
    table = side_table(n_users=20, n_items=20)
    table.loc[7, "group"] = "c"  # this row's user now has two groups
    who = table.loc[7, "user"]
    with pytest.raises(DataError, match=rf"side column 'group' has two values for user '{who}'.*table row 7"):
        describe_columns(table, "user", ["group"], "user", bins=8)
    with pytest.raises(DataError, match=r"no user side column 'colour'; the table has: user, item, rating"):
        describe_columns(table, "user", ["colour"], "user", bins=8)
    with pytest.raises(DataError, match=r"'rating' is a ratings column"):
        describe_columns(table, "user", ["rating"], "user", bins=8)
    ids = table.assign(serial=np.arange(len(table)).astype(str))  # one per row: an id, not a kind
    with pytest.raises(DataError, match=r"side column 'serial' has two values for item"):
        describe_columns(ids, "item", ["serial"], "item", bins=8)


def test_saved_hybrid_answers_with_its_side_codes(tmp_path: Path) -> None:
    table = side_table(n_users=60, n_items=40)
    csv = tmp_path / "ratings.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "m"
    res = runner.invoke(
        app,
        ["train", "--data", str(csv), "--model", "hybrid", "--out", str(out), "--epochs", "2",
         "-o", "user_columns=group,age", "-o", "item_columns=genres"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "side group 2 values, age 8 bins, genres 3 tags" in res.output
    saved = load_model(out)
    model = saved.model
    assert [c.name for c in model.side] == ["group", "age", "genres"]
    assert int(model.user_codes[1:, 0].min()) >= 1 and int(model.item_codes[1:, 0].min()) >= 1
    x = torch.tensor([[1, 1], [2, 3], [5, 7]])
    again = load_model(out).model
    assert torch.equal(model.user_codes, again.user_codes) and torch.allclose(model(x), again(x))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("user_columns=colour", "no user side column 'colour'"),
        ("item_columns=group", "side column 'group' has two values for item"),
        ("bins=1", "bins=1: Input should be greater than or equal to 2"),
    ],
)
def test_bad_side_columns_are_one_line_and_write_nothing(tmp_path: Path, option: str, message: str) -> None:
    csv = tmp_path / "ratings.csv"
    side_table(n_users=30, n_items=20).to_csv(csv, index=False)
    res = runner.invoke(
        app, ["train", "--data", str(csv), "--model", "hybrid", "--out", str(tmp_path / "m"), "-o", option]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_movielens_user_table_joins_by_user(ml100k: pd.DataFrame) -> None:
    joined = with_movielens_users(ml100k, "ml-100k")
    assert len(joined) == len(ml100k) and (joined["user"].to_numpy() == ml100k["user"].to_numpy()).all()
    assert joined[["age", "gender", "occupation"]].notna().all().all()
    assert set(joined["gender"]) == {"F", "M"}
    assert with_movielens_users(ml100k, "my-table") is ml100k
    dls = CollabDataLoaders.from_df(
        joined.head(5000), user_name="user", item_name="item", rating_name="rating"
    )
    learn = collab_learner(dls, model="hybrid", show_progress=False, log=None)
    side = {c.name: c for c in learn.model.side}
    assert list(side) == ["age", "gender", "occupation", "genres"]
    assert side["gender"].levels == ["F", "M"] and side["genres"].kind == "tags"
    assert side["age"].kind == "number" and side["occupation"].kind == "category"


def test_hybrid_needs_the_table_for_its_columns() -> None:
    table = side_table(n_users=20, n_items=20)
    dls = CollabDataLoaders.from_df(table)
    dls.table = None
    with pytest.raises(CollabkitError, match="need the ratings table"):
        collab_learner(
            dls, model="hybrid", settings={"user_columns": ["group"]}, show_progress=False, log=None
        )


@pytest.fixture(scope="module")
def side_rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    """A hybrid trained on `side_table` (its group and genres columns), saved and loaded."""
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(side_table(), valid_pct=0.1, seed=1, bs=64)
    learn = collab_learner(
        dls, model="hybrid", y_range=(0.5, 5.5), settings={"user_columns": ["group", "age"]},
        show_progress=False, log=None,
    )  # fmt: skip
    learn.fit_one_cycle(8, 1e-2, wd=0.01)
    return Recommender.load(learn.export(str(tmp_path_factory.mktemp("side") / "m")))


def genre_share(rec: Recommender, items: list, genre: str) -> float:
    table = side_table()
    genres = dict(zip(table["item"], table["genres"], strict=False))
    return sum(genre in genres[i].split("|") for i in items) / len(items)


def test_a_new_user_who_states_their_group_gets_their_groups_list(side_rec: Recommender) -> None:
    """With no ratings at all, a user of group "a" (who like genre X) gets X first, a "b" user Y."""
    a = side_rec.recommend_for_ratings({}, n=10, min_count=1, about={"group": "a"})
    b = side_rec.recommend_for_ratings({}, n=10, min_count=1, about={"group": "b"})
    assert genre_share(side_rec, list(a.items), "X") >= 0.9, a.titles
    assert genre_share(side_rec, list(b.items), "Y") >= 0.9, b.titles
    anyone = side_rec.fold_in({})
    stated = side_rec.fold_in({}, about={"group": "a", "age": 33})
    assert stated.about == {"group": "a", "age": 33} and anyone.about == {}
    with pytest.raises(CollabkitError, match="side column 'age' holds numbers; 'old' is not one"):
        side_rec.fold_in({}, about={"age": "old"})
    with pytest.raises(
        CollabkitError, match="'genres' is not a side column of this model's users; it reads: group, age"
    ):
        side_rec.fold_in({}, about={"genres": "X"})
    with pytest.raises(CollabkitError, match="about must be a dict"):
        side_rec.fold_in({}, about=["group"])  # type: ignore[arg-type]


def test_the_service_takes_what_a_new_user_states(side_rec: Recommender) -> None:
    from fastapi.testclient import TestClient

    from collabkit.service import create_app

    with TestClient(create_app(side_rec)) as client:
        about = client.get("/catalogue").json()["about"]
        assert [(c["name"], c["kind"], c["levels"]) for c in about][0] == ("group", "category", ["a", "b"])
        assert about[1]["name"] == "age" and about[1]["kind"] == "number"
        res = client.post("/recommend", json={"ratings": {}, "about": {"group": "b"}, "min_count": 1})
        assert res.status_code == 200, res.text
        items = [r["item"] for r in res.json()["recommendations"]]
        assert genre_share(side_rec, items, "Y") >= 0.9
        bad = client.post("/recommend", json={"ratings": {}, "about": {"group": "c"}})
        assert bad.status_code == 422 and "no 'group' value 'c'; it has: a, b" in bad.json()["detail"]


def test_only_a_family_that_reads_side_columns_gets_the_user_table() -> None:
    from collabkit.models import family

    assert family("hybrid").reads_side_columns({}) and not family("dotbias").reads_side_columns({})
    assert family("blend").reads_side_columns({"members": "dotbias,hybrid"})
    assert not family("blend").reads_side_columns({"members": "dotbias,nn"})
    assert not family("blend").reads_side_columns({"members": "dotbias,nosuch"})  # refused later, in one line


def test_a_table_without_the_models_side_column_is_refused() -> None:
    table = side_table(n_users=30, n_items=20)
    (group,) = describe_columns(table, "user", ["group"], "user", bins=8)
    users = Vocab.from_values(table["user"], name="user")
    with pytest.raises(DataError, match="the model reads user side column 'group', and this table has none"):
        column_codes(table.drop(columns="group"), "user", users, group)
