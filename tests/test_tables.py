"""Reading any ratings table: columns by name, and bad cells reported by file, line and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from collabkit import CollabDataLoaders, DataError, read_ratings


def test_csv_with_named_columns(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("who,what,stars,when\n1,a,4.5,10\n2,b,3,11\n")
    t = read_ratings(f, user="who", item="what", rating="stars", timestamp="when")
    assert list(t.columns) == ["user", "item", "rating", "timestamp"]
    assert t["user"].tolist() == [1, 2] and t["item"].tolist() == ["a", "b"]
    assert t["rating"].dtype == "float32" and t["timestamp"].tolist() == [10, 11]


def test_tsv_and_parquet(tmp_path: Path) -> None:
    f = tmp_path / "r.tsv"
    f.write_text("user\titem\trating\n1\t2\t3\n")
    assert read_ratings(f)["rating"].tolist() == [3.0]
    p = tmp_path / "r.parquet"
    pd.DataFrame({"u": [1], "i": [2], "r": [4.0]}).to_parquet(p)
    assert read_ratings(p, user="u", item="i", rating="r")["rating"].tolist() == [4.0]


def test_bad_rating_names_file_line_column(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,2,4\n1,3,four\n")
    with pytest.raises(DataError) as e:
        read_ratings(f)
    assert str(e.value) == f"{f}, line 3, column 'rating': 'four' is not a finite number"


def test_missing_column_lists_what_is_there(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,movie,rating\n1,2,4\n")
    with pytest.raises(DataError, match="no column 'item'; the table has: user, movie, rating"):
        read_ratings(f)


def test_empty_id_and_ragged_row(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,2,4\n,3,5\n")
    with pytest.raises(DataError, match="line 3, column 'user': empty user id"):
        read_ratings(f)
    g = tmp_path / "g.csv"
    g.write_text("user,item,rating\n1,2,4,9,9\n")
    with pytest.raises(DataError) as e:
        read_ratings(g)
    assert str(e.value) == f"{g}, line 2: expected 3 fields, found 5"
    h = tmp_path / "h.csv"
    h.write_text("user,item,rating\n007,2,4\n")
    assert read_ratings(h)["user"].tolist() == ["007"]  # not a plain integer: kept as text


def test_from_df_uses_fastai_column_defaults(ratings: pd.DataFrame) -> None:
    table = ratings.rename(columns={"user": "u", "item": "movie", "rating": "r"})
    dls = CollabDataLoaders.from_df(table, bs=32, seed=0)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("u", "movie", "r")
    x, y = dls.one_batch()
    assert x.shape == (32, 2) and y.shape == (32,) and x.dtype.is_floating_point is False
    assert dls.classes["movie"].o2i[dls.classes["movie"][3]] == 3
    shown = dls.show_batch(4, show=False)
    assert list(shown.columns) == ["u", "movie", "r"] and len(shown) == 4


def test_from_df_rejects_non_numeric_ratings() -> None:
    df = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4, "x"]})
    with pytest.raises(DataError, match="rating 'x' in row 1"):
        CollabDataLoaders.from_df(df)


def test_big_files_are_cached_as_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collabkit.data as data

    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "home"))
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating,when\n1,a,4.5,10\n2,b,3,11\n")
    first = data.load_ratings(f, timestamp="when", cache=True)
    cached = list((tmp_path / "home" / "tables").glob("r-*.parquet"))
    assert len(cached) == 1

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(data, "read_ratings", no_parse)
    again = data.load_ratings(f, timestamp="when", cache=True)
    pd.testing.assert_frame_equal(first, again)
    f.write_text("user,item,rating,when\n1,a,1,10\n")  # a changed file is parsed again
    monkeypatch.undo()
    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "home"))
    assert data.load_ratings(f, timestamp="when", cache=True)["rating"].tolist() == [1.0]


def test_half_star_ratings_give_ten_classifier_levels(tmp_path: Path) -> None:
    from collabkit import collab_learner

    rows = ["userId,movieId,rating,timestamp"]
    rows += [
        f"{u},{i},{((u * 7 + i * 3) % 10 + 1) / 2},{u * 100 + i}" for u in range(1, 41) for i in range(1, 31)
    ]
    f = tmp_path / "ratings.csv"
    f.write_text("\n".join(rows) + "\n")
    table = read_ratings(f, user="userId", item="movieId", rating="rating", timestamp="timestamp")
    dls = CollabDataLoaders.from_df(table, bs=128, seed=0)
    assert dls.rating_levels() == [x / 2 for x in range(1, 11)]
    learn = collab_learner(dls, model="classifier", layers=[8], log=None)
    assert learn.config.levels == [x / 2 for x in range(1, 11)]
    learn.fit(1, 1e-3)
