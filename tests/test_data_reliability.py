"""Reliability, round two (data): each class of silent wrong answer or crash, refused in one line."""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collabkit import CollabDataLoaders, CollabkitError, DataError, UnknownIdError, read_ratings
from collabkit.data import load_ratings
from collabkit.data.resolver import IdResolver
from collabkit.data.splits import SplitSpec, kfold, kfold_split, make_split, random_split
from collabkit.data.tables import read_item_genres
from collabkit.data.vocab import Vocab


def _error(path: Path, **options: object) -> str:
    with pytest.raises(DataError) as e:
        read_ratings(path, **options)  # type: ignore[arg-type]
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# 1. a row with too few or too many fields is refused, never padded into shifted columns
@pytest.mark.parametrize("sep", [",", "\t", "|", "::"])
def test_short_or_long_row_is_refused_with_its_line(tmp_path: Path, sep: str) -> None:
    f = tmp_path / "r.txt"
    head = sep.join(["user", "item", "rating", "timestamp"])
    f.write_text(
        f"{head}\n" + sep.join(["12", "4", "100"] + ["4"]) + "\n" + sep.join(["1", "3", "881250949"]) + "\n"
    )
    assert _error(f).endswith("line 3: expected 4 fields, found 3")  # without asking for the timestamp
    g = tmp_path / "g.txt"
    g.write_text(f"{head}\n" + sep.join(["1", "3", "4", "5", "6"]) + "\n")
    assert _error(g).endswith("line 2: expected 4 fields, found 5")


# 2. a column used for ordering is numbers or dates, never text ordered as text
def test_time_splits_order_numbers_and_dates_never_text() -> None:
    text_numbers = pd.DataFrame(
        {"user": [1, 1, 1], "item": [1, 2, 3], "rating": 3.0, "timestamp": ["900", "1000", "95"]}
    )
    _, valid = make_split(text_numbers, "last")
    assert valid.tolist() == [1]  # 1000 is the latest; as text "95" would be
    dates = text_numbers.assign(timestamp=["2023-01-02", "2023-01-10", "2022-12-31T23:00:00"])
    assert make_split(dates, "last")[1].tolist() == [1]
    words = text_numbers.assign(timestamp=["b", "a", "c"])
    with pytest.raises(
        CollabkitError, match="column 'timestamp', which must hold numbers or dates; row 0 holds 'b'"
    ):
        make_split(words, "last")
    for kind in ("recent", "time"):
        with pytest.raises(CollabkitError, match="must hold numbers or dates"):
            make_split(words, SplitSpec(kind, valid_pct=0.5))


def test_reader_reads_iso_dates_as_unix_seconds(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating,when\n1,2,4,2023-01-02\n1,3,5,2023-01-02T00:00:10\n")
    assert read_ratings(f, timestamp="when")["timestamp"].tolist() == [1672617600, 1672617610]
    g = tmp_path / "g.csv"
    g.write_text("user,item,rating,when\n1,2,4,2023-01-02\n1,3,5,yesterday\n")
    assert "line 3, column 'when': 'yesterday' is not an ISO date or time" in _error(g, timestamp="when")


# 3. a typed id matches what the table holds, nothing more
@pytest.mark.parametrize("text", ["1_0", "+10", "010", "10.0", "１０", "١٠", "-10", "1 0"])
def test_text_ids_are_not_normalised_beyond_trimming(text: str) -> None:
    resolver = IdResolver(Vocab.from_values([10, 20], name="user"), Vocab.from_values([1, 2], name="item"))
    assert resolver.user("10") == 10 and resolver.user(" 10 ") == 10
    with pytest.raises(UnknownIdError):
        resolver.user(text)
    assert Vocab.from_values([10]).find(text) is None


# 4. duplicate (user, item) pairs: one rule, in the reader and in from_df
def test_duplicates_are_refused_by_default_or_resolved_as_asked(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating,t\n1,2,4,100\n1,3,5,100\n1,2,2,50\n2,2,1,10\n")
    message = _error(f)
    assert "1 row repeats a (user, item) pair (1 pair), first user '1' item '2' at lines 2 and 4" in message
    assert message.endswith("keep one with duplicates='last' or 'mean' (--duplicates)")
    last = read_ratings(f, timestamp="t", duplicates="last")  # the latest by timestamp: line 2's
    assert last["rating"].tolist() == [4.0, 5.0, 1.0] and last.attrs["duplicates_dropped"] == 1
    no_time = read_ratings(f, duplicates="last")  # no timestamp asked: the last row
    assert no_time["rating"].tolist() == [5.0, 2.0, 1.0]
    mean = read_ratings(f, duplicates="mean")
    assert mean["rating"].tolist() == [5.0, 3.0, 1.0] and mean.attrs["duplicates_dropped"] == 1
    frame = pd.DataFrame({"u": [1, 1, 2], "i": [2, 2, 2], "r": [4.0, 2.0, 1.0]})
    with pytest.raises(DataError, match="at rows 0 and 1"):
        CollabDataLoaders.from_df(frame, seed=0, duplicates="error")
    kept = CollabDataLoaders.from_df(
        frame, seed=0, valid_pct=0.0
    )  # the chapter's API keeps them, and says so
    assert (
        kept.train.n == 3 and kept.duplicates_kept == 1 and "1 rows repeat a (user, item) pair" in repr(kept)
    )
    dls = CollabDataLoaders.from_df(frame, seed=0, duplicates="mean", valid_pct=0.0)
    assert dls.table["r"].tolist() == [3.0, 1.0] and dls.table.attrs["duplicates_dropped"] == 1


def test_movielens_has_no_duplicates_and_loads_unchanged(ml100k: pd.DataFrame) -> None:
    table = load_ratings("ml-100k", progress=False)
    assert len(table) == 100_000 and table.attrs["duplicates_dropped"] == 0
    assert table[["user", "item"]].equals(ml100k[["user", "item"]])


# 6. stale inputs: a content-keyed cache, from_df's ids and ratings
def test_cache_sees_an_edit_that_keeps_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "home"))
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,2,4\n1,3,5\n")
    stat = f.stat()
    assert load_ratings(f, cache=True)["rating"].tolist() == [4.0, 5.0]
    f.write_text("user,item,rating\n1,2,1\n1,3,5\n")  # same size
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    assert load_ratings(f, cache=True)["rating"].tolist() == [1.0, 5.0]


def test_from_df_refuses_empty_ids_and_boolean_ratings() -> None:
    with pytest.raises(DataError, match="column 'u': empty user id .NaN or None. in row 1"):
        CollabDataLoaders.from_df(pd.DataFrame({"u": [1, None, 2], "i": [1, 2, 3], "r": [1.0, 2, 3]}))
    with pytest.raises(DataError, match="column 'i': empty item id .NaN or None. in row 2"):
        CollabDataLoaders.from_df(pd.DataFrame({"u": [1, 2, 3], "i": ["a", "b", None], "r": [1.0, 2, 3]}))
    with pytest.raises(DataError, match="column 'r': rating True in row 0 is not a number"):
        CollabDataLoaders.from_df(pd.DataFrame({"u": [1, 2, 3], "i": [1, 2, 3], "r": [True, False, True]}))


# 7. bad input that used to crash: damaged compressed files, seeds, k, a genres file
def _damaged(path: Path, kind: str) -> None:
    body = b"user,item,rating\n" + b"".join(b"%d,%d,4\n" % (u, u) for u in range(1, 400))
    if kind == "gz":
        data = gzip.compress(body)
    elif kind == "bz2":
        data = bz2.compress(body)
    elif kind == "xz":
        data = lzma.compress(body)
    elif kind == "zst":
        import pyarrow as pa

        data = pa.compress(body, codec="zstd", asbytes=True)
    else:
        return
    path.write_bytes(data[: len(data) // 2] + b"\x00garbage" * 4)


@pytest.mark.parametrize(
    ("suffix", "word"), [("gz", "gzip"), ("bz2", "bzip2"), ("xz", "xz"), ("zst", "zstd")]
)
def test_damaged_compressed_file_is_one_line_naming_the_compression(
    tmp_path: Path, suffix: str, word: str
) -> None:
    f = tmp_path / f"r.csv.{suffix}"
    _damaged(f, suffix)
    assert f": not a readable {word} file (" in _error(f)
    good = tmp_path / f"ok.dat.{suffix}"  # and a whole one is read, `::` (the careful reader) included
    body = b"user::item::rating\n1::2::4\n"
    if suffix == "zst":
        import pyarrow as pa

        good.write_bytes(pa.compress(body, codec="zstd", asbytes=True))
    else:
        good.write_bytes({"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[suffix](body))
    assert read_ratings(good)["rating"].tolist() == [4.0]


def test_compressed_files_are_read_and_archives_refused(tmp_path: Path) -> None:
    body = "user\titem\trating\n1\t2\t4\n2\t3\t5\n"
    gz = tmp_path / "r.tsv.gz"
    gz.write_bytes(gzip.compress(body.encode()))
    assert read_ratings(gz)["rating"].tolist() == [4.0, 5.0]  # tab-separated by its inner suffix
    zp = tmp_path / "r.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.writestr("r.csv", body.replace("\t", ","))
    assert read_ratings(zp)["item"].tolist() == [2, 3]
    with zipfile.ZipFile(zp, "w") as z:
        z.writestr("a.csv", "x")
        z.writestr("b.csv", "y")
    assert "a zip of 2 files" in _error(zp)
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 not a zip")
    assert "not a readable zip file" in _error(bad_zip)
    tar = tmp_path / "r.tar"
    with tarfile.open(tar, "w") as t:
        t.add(gz, arcname="r.tsv.gz")
    assert "is a tar archive" in _error(tar)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70, True])
def test_seed_out_of_range_is_one_line(seed: int) -> None:
    table = pd.DataFrame({"user": [1, 2, 3, 4], "item": [1, 2, 3, 4], "rating": 3.0})
    for kind in ("random", "kfold"):
        with pytest.raises(CollabkitError, match="seed must be a whole number from 0 to 4,294,967,295"):
            make_split(table, SplitSpec(kind, seed=seed, k=2))
    with pytest.raises(CollabkitError, match="seed must be"):
        random_split(10, 0.2, seed)
    assert len(random_split(10, 0.2, 2**32 - 1)[1]) == 2


@pytest.mark.parametrize("k", [0, 1, 5])
def test_k_out_of_range_is_one_line(k: int) -> None:
    table = pd.DataFrame({"user": [1, 2, 3, 4], "item": [1, 2, 3, 4], "rating": 3.0})
    with pytest.raises(CollabkitError, match="k .the number of folds. must be a whole number"):
        make_split(table, SplitSpec("kfold", k=k) if k >= 2 else "kfold", k=k)


def test_genres_file_is_read_or_refused_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "g.csv"
    f.write_text("item,genres\n1,Action|Comedy\n2,\n")
    assert read_item_genres(f) == {1: "Action|Comedy", 2: ""}
    f.write_text("item,genres\n1,Action\n2\n")
    with pytest.raises(DataError, match="line 3: expected 2 fields, found 1"):
        read_item_genres(f)
    f.write_text("item,genres\n1,Action\n1,Drama\n")
    with pytest.raises(
        DataError, match="line 3, column 'genres': item '1' has genres 'Drama' here and 'Action' on line 2"
    ):
        read_item_genres(f)
    f.write_text("film,genres\n1,Action\n")
    with pytest.raises(DataError, match="no column 'item'"):
        read_item_genres(f)


# 8. kfold builds only the fold asked
def test_kfold_builds_one_fold_with_the_same_rows_as_all_folds() -> None:
    folds = list(kfold(103, 7, seed=3))
    for i in (0, 3, 6):
        train, valid = kfold_split(103, 7, 3, i)
        assert train.tolist() == folds[i][0].tolist() and valid.tolist() == folds[i][1].tolist()
    table = pd.DataFrame({"user": np.arange(4000), "item": 1, "rating": 3.0})
    import tracemalloc

    tracemalloc.start()
    train, valid = make_split(table, SplitSpec("kfold", k=2000, fold=1999))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(valid) == 2 and len(train) == 3998
    assert peak < 4000 * 8 * 20  # a few arrays of n, not k of them (2000 * 4000 * 9 bytes before)


def test_an_edited_item_file_is_caught_like_u_data(ml100k: pd.DataFrame, tmp_path: Path) -> None:
    """u.item (titles, genres) is hashed on every use against its record, as u.data is."""
    import shutil

    from collabkit.data import datasets

    source = datasets.movielens_path("ml-100k", progress=False)
    folder = tmp_path / "ml-100k"
    shutil.copytree(source, folder)
    release = datasets._release("ml-100k")
    assert datasets._verify_release(folder, release, tmp_path / "none.zip") is None  # records u.item
    items = folder / "u.item"
    data = bytearray(items.read_bytes())
    at = data.index(b"Toy Story")
    data[at : at + 3] = b"Boy"  # same size
    stat = items.stat()
    items.write_bytes(bytes(data))
    import os

    os.utime(items, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    problem = datasets._verify_release(folder, release, tmp_path / "none.zip")
    assert problem is not None and problem.startswith("u.item has sha256")
