"""Reading any ratings table: columns by name, and bad cells reported by file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_show_batch_prints_once(ratings: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a notebook the batch is printed (a header and one line per row) and None returned."""
    dls = CollabDataLoaders.from_df(ratings, bs=32, seed=0)
    assert dls.show_batch(5) is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[0].split() == ["user", "item", "rating"]


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
    assert type(learn.model).describe_config(learn.config)["levels"] == [x / 2 for x in range(1, 11)]
    learn.fit(1, 1e-3)


# --- bad files: each one DataError line naming the file, never a hang, a crash or an empty table ---


def _one_data_error(source: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as e:
        read_ratings(source, **kwargs)  # type: ignore[arg-type]
    message = str(e.value)
    assert "\n" not in message and str(source) in message
    return message


def test_empty_and_header_only_files_have_no_ratings(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty" in _one_data_error(empty)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    assert "no ratings" in _one_data_error(blank)
    header = tmp_path / "header.csv"
    header.write_text("user,item,rating\n")
    assert _one_data_error(header) == f"{header}: the table has no rows: no ratings"


def test_folder_and_fifo_are_refused_without_opening(tmp_path: Path) -> None:
    import os
    import threading

    folder = tmp_path / "ratings.csv"
    folder.mkdir()
    assert _one_data_error(folder) == f"{folder}: is a folder, not a ratings file"
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(_one_data_error(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # free the reader so the test run can end, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert result and "not a regular file" in result[0]


def test_binary_garbage_is_a_data_error_with_a_short_excerpt(tmp_path: Path) -> None:
    import numpy as np

    junk = tmp_path / "junk.csv"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _one_data_error(junk)
    ascii_junk = tmp_path / "ascii.csv"
    ascii_junk.write_text("x" * 5000 + ",y\n1,2\n")
    message = _one_data_error(ascii_junk)
    assert len(message) < len(str(ascii_junk)) + 200  # the 5000-character column name is cut
    long_cell = tmp_path / "cell.csv"
    long_cell.write_text("user,item,rating\n1,2," + "z" * 5000 + "\n")
    message = _one_data_error(long_cell)
    assert "line 2, column 'rating'" in message and len(message) < len(str(long_cell)) + 120
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"user,item,rating\n1,2,\x003\n")
    _one_data_error(nul)
    garbage_parquet = tmp_path / "r.parquet"
    garbage_parquet.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in _one_data_error(garbage_parquet)


@pytest.mark.parametrize(
    "cell", ["True", "false", "0x5", "0X1F", "1_000", "nan", "NaN", "inf", "-Infinity", "1e39"]
)
def test_ratings_must_be_finite_decimal_numbers(tmp_path: Path, cell: str) -> None:
    f = tmp_path / "r.csv"
    f.write_text(f"user,item,rating\n1,2,4\n1,3,{cell}\n")
    assert _one_data_error(f) == f"{f}, line 3, column 'rating': {cell!r} is not a finite number"
    g = tmp_path / "r.tsv"
    g.write_text(f"user\titem\trating\n1\t3\t{cell}\n")  # the same through a tab-separated file
    assert "line 2, column 'rating'" in _one_data_error(g)


@pytest.mark.parametrize("cell", ["0x10", "True", "1.5", "1e30"])
def test_timestamps_must_be_decimal_integers(tmp_path: Path, cell: str) -> None:
    f = tmp_path / "r.csv"
    f.write_text(f"user,item,rating,t\n1,2,4,10\n1,3,5,{cell}\n")
    assert _one_data_error(f, timestamp="t") == f"{f}, line 3, column 't': {cell!r} is not an integer"


def test_decimal_ratings_in_any_plain_spelling_are_read(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,2,+4\n1,3,.5\n1,4,5.\n1,5,2e0\n1,6, 3 \n")
    assert read_ratings(f)["rating"].tolist() == [4.0, 0.5, 5.0, 2.0, 3.0]


def test_parquet_bool_ratings_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [True, False]}).to_parquet(p)
    assert _one_data_error(p) == f"{p}, line 1, column 'rating': 'True' is not a finite number"


def test_spaces_around_ids_do_not_make_new_ids(tmp_path: Path) -> None:
    fast = tmp_path / "fast.csv"  # one-character separator: the pyarrow reader
    fast.write_text("user,item,rating\n 2,a ,4\n2,a,5\n007 ,b,1\n")
    slow = tmp_path / "slow.dat"  # `::`: the careful pandas reader
    slow.write_text("user::item::rating\n 2::a ::4\n2::a::5\n007 ::b::1\n")
    for f in (fast, slow):  # (" 2", "a ") and ("2", "a") are one pair: a duplicate
        assert "first user '2' item 'a' at lines 2 and 3" in _one_data_error(f)
        t = read_ratings(f, duplicates="last")
        assert t["user"].tolist() == ["2", "007"] and t["item"].tolist() == ["a", "b"]
        assert t["rating"].tolist() == [5.0, 1.0] and t.attrs["duplicates_dropped"] == 1
    ints = tmp_path / "ints.csv"
    ints.write_text("user,item,rating\n 2,3 ,4\n2,4,5\n")
    t = read_ratings(ints)
    assert t["user"].tolist() == [2, 2] and t["item"].tolist() == [3, 4]
    assert t["user"].dtype == "int64"
    ints_slow = tmp_path / "ints.dat"
    ints_slow.write_text("user::item::rating\n 2::3 ::4\n2::4::5\n")
    assert read_ratings(ints_slow)["user"].tolist() == [2, 2]
    blank_id = tmp_path / "blank.csv"
    blank_id.write_text("user,item,rating\n1,2,4\n  ,3,5\n")
    assert "line 3, column 'user': empty user id" in _one_data_error(blank_id)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("user,item,rating\n1,2,4\n\n\n1,3,five\n", "line 5, column 'rating': 'five' is not"),  # blank lines
        ('user,item,rating\n"a\nb",2,4\n1,3,five\n', "line 4, column 'rating'"),  # a quoted line break
        ("user,item,rating\r\n1,2,4\r\n\r\n1,3,five\r\n", "line 4, column 'rating'"),
        ("user,item,rating\n1,2,4\njunk\n1,3,5\n", "line 3: expected 3 fields, found 1"),  # short row
        ("user::item::rating\n1::2::4\n\n1::3::five\n", "line 4, column 'rating'"),
    ],
    ids=["blank lines", "quoted line break", "crlf", "short row", "double colon"],
)
def test_bad_cells_are_located_on_the_right_line(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / ("r.dat" if "::" in text else "r.csv")
    f.write_bytes(text.encode())
    assert where in _one_data_error(f)


def test_unreadable_file_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,2,4\n")
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # as if chmod 000 (root ignores it)
    assert "permission denied" in _one_data_error(f)


# --- the Parquet cache of big files: damage is found and rebuilt, an unwritable folder costs speed ---


def _cached_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, pd.DataFrame]:
    import collabkit.data as data

    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "home"))
    f = tmp_path / "r.csv"
    rows = [f"{u},{i},{(u + i) % 5 + 1},{u * 1000 + i}" for u in range(1, 60) for i in range(1, 40)]
    f.write_text("user,item,rating,when\n" + "\n".join(rows) + "\n")
    first = data.load_ratings(f, timestamp="when", cache=True)
    (cached,) = (tmp_path / "home" / "tables").glob("r-*.parquet")
    return f, cached, first


def _load_counting_parses(f: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pd.DataFrame, int]:
    import collabkit.data as data

    calls = []
    real = data.read_ratings

    def counting(*args: object, **kwargs: object) -> pd.DataFrame:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "read_ratings", counting)
    table = data.load_ratings(f, timestamp="when", cache=True)
    monkeypatch.setattr(data, "read_ratings", real)
    return table, len(calls)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bit flip, same size and mtime", "no record"])
def test_damaged_parquet_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    import os

    f, cached, first = _cached_once(tmp_path, monkeypatch)
    capsys.readouterr()
    blob = bytearray(cached.read_bytes())
    st = cached.stat()
    if damage == "truncated":
        cached.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        cached.write_bytes(b"\x00" * len(blob))
    elif damage == "no record":
        cached.with_name(cached.name + ".manifest.json").unlink()
    else:
        blob[len(blob) // 3] ^= 0xFF
        cached.write_bytes(bytes(blob))
        os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    table, parses = _load_counting_parses(f, monkeypatch)
    pd.testing.assert_frame_equal(table, first)
    assert parses == 1
    err = capsys.readouterr().err
    if damage == "no record":
        assert err == ""  # an older collabkit's cache: rebuilt quietly
    else:
        assert err.count("\n") == 1 and f"the cached table {cached} is damaged" in err and "rebuilding" in err
    again, parses = _load_counting_parses(f, monkeypatch)  # the rebuilt cache is used, silently
    pd.testing.assert_frame_equal(again, first)
    assert parses == 0 and capsys.readouterr().err == ""


@pytest.mark.parametrize("code", ["EROFS", "ENOSPC", "EACCES"])
def test_unwritable_cache_folder_only_costs_speed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: str
) -> None:
    import errno
    import os
    import tempfile

    import collabkit.data as data

    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "home"))
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,a,4.5\n2,b,3\n")
    number = getattr(errno, code)

    def refuse(*args: object, **kwargs: object) -> None:  # chmod does not stop root: refuse here
        raise OSError(number, os.strerror(number), str(tmp_path / "home" / "tables"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for _ in range(2):
        table = data.load_ratings(f, cache=True)
        assert table["rating"].tolist() == [4.5, 3.0]
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "warning: cannot cache the table" in err and "slower" in err
    assert not list((tmp_path / "home").rglob("*.parquet"))


# --- properties (hypothesis): what the reader accepts round-trips; a mutated file never crashes it ---

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_ID_CHARS = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp")
)  # no control characters or line breaks
text_ids = st.text(_ID_CHARS, min_size=1, max_size=8).filter(lambda s: s == s.strip() and s != "")
int_ids = st.integers(min_value=-(10**12), max_value=10**12).map(str)
ratings_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def rating_tables(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=30))
    ids = st.one_of(int_ids, text_ids)
    return pd.DataFrame(
        {
            "user": draw(st.lists(draw(st.sampled_from([int_ids, ids])), min_size=n, max_size=n)),
            "item": draw(st.lists(draw(st.sampled_from([int_ids, ids])), min_size=n, max_size=n)),
            "rating": draw(st.lists(ratings_values, min_size=n, max_size=n)),
        }
    ).drop_duplicates(["user", "item"], ignore_index=True)  # one rating per pair: see test_reader_properties


@PROPERTY
@given(table=rating_tables(), sep=st.sampled_from([",", "\t", "|"]))
def test_any_table_the_reader_accepts_round_trips(tmp_path: Path, table: pd.DataFrame, sep: str) -> None:
    f = tmp_path / "r.csv"
    table.to_csv(f, index=False, sep=sep)
    back = read_ratings(f, sep=sep)  # non-empty ids without outer spaces and finite ratings: all valid
    assert len(back) == len(table)
    for col in ("user", "item"):
        assert [str(v) for v in back[col]] == [str(v) for v in table[col]]
    assert back["rating"].tolist() == table["rating"].astype("float32").tolist()


VALID = b"user,item,rating,when\n1,10,4,100\n2,10,3.5,101\n 3,007,5,102\n2,11,1,103\n"


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(
            st.sampled_from(["truncate", "inject", "drop delimiter", "swap columns", "junk rows", "crlf"])
        )
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "truncate":
            data = data[:at]
        elif op == "inject":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "drop delimiter" and b"," in data:
            commas = [i for i, b in enumerate(data) if b == ord(",")]
            del data[commas[draw(st.integers(min_value=0, max_value=len(commas) - 1))]]
        elif op == "swap columns":
            a, b = draw(st.permutations(range(4)))[:2]
            rows = [line.split(b",") for line in bytes(data).split(b"\n")]
            for row in rows:
                if len(row) > max(a, b):
                    row[a], row[b] = row[b], row[a]
            data = bytearray(b"\n".join(b",".join(row) for row in rows))
        elif op == "junk rows":
            junk = draw(st.lists(st.text(max_size=20), min_size=1, max_size=3))
            data += "\n".join(junk).encode("utf-8", "surrogatepass") + b"\n"
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\n", b"\r\n"))
    return bytes(data)


@PROPERTY
@given(blob=mutated_files(), timestamp=st.sampled_from([None, "when"]))
def test_a_mutated_file_gives_a_table_or_a_data_error(
    tmp_path: Path, blob: bytes, timestamp: str | None
) -> None:
    f = tmp_path / "r.csv"
    f.write_bytes(blob)
    try:
        table = read_ratings(f, timestamp=timestamp)
    except DataError as e:
        message = str(e)
        assert "\n" not in message and message.startswith(str(f)) and len(message) < len(str(f)) + 200
        return
    assert len(table) > 0 and table["rating"].dtype == "float32"
    assert bool(np.isfinite(table["rating"].to_numpy()).all())
    for col in ("user", "item"):
        assert not table[col].isna().any() and all(str(v).strip() == str(v) != "" for v in table[col])


def test_lists_and_dicts_are_not_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user": [1, [2, 3]], "item": [1, 2], "rating": [4.0, 5.0]})
    with pytest.raises(
        DataError, match=r"column 'user': user id '\[2, 3\]' is a list; ids must be numbers or text"
    ):
        read_ratings(frame)
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [{"a": 1}, {"b": 2}], "rating": [4.0, 5.0]}).to_parquet(p)
    assert "item id" in _one_data_error(p) and "ids must be numbers or text" in _one_data_error(p)


def test_not_utf8_names_the_line_and_offset_in_the_file(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_bytes(("user,item,rating\n" + "1,a,4\n" * 20000 + "1,caf\xe9,4\n").encode("latin-1"))
    assert _one_data_error(f) == (
        f"{f}, line 20002: not UTF-8 text (byte 0xE9 at offset 120,022); save the file as UTF-8"
    )


def test_a_wide_header_is_listed_in_short(tmp_path: Path) -> None:
    f = tmp_path / "wide.csv"
    f.write_text(",".join(f"column_number_{i}" for i in range(500)) + "\n" + ",".join("1" * 500) + "\n")
    message = _one_data_error(f)
    assert message.endswith("more)") and len(message) < len(str(f)) + 200


@pytest.mark.parametrize("sep", [",", "::"], ids=["fast path", "careful path"])
def test_a_wide_table_is_read_without_fragmenting(tmp_path: Path, sep: str) -> None:
    import warnings

    f = tmp_path / ("wide.csv" if sep == "," else "wide.dat")
    names = ["user", "item", "rating", *(f"extra_{i}" for i in range(300))]
    f.write_text(sep.join(names) + "\n" + sep.join(["1", "2", "4", *("7" * 300)]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns when a frame is built column by column
        table = read_ratings(f)
    assert list(table.columns) == ["user", "item", "rating", *names[3:]]
    assert str(table["extra_299"].iloc[0]) == "7"
