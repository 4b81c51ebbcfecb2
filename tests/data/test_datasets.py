"""MovieLens by name: the real download code against a local server, the offline route, errors."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from collabkit.data import datasets
from collabkit.data.datasets import (
    ML100K_GENRES,
    MOVIELENS,
    cache_dir,
    convert_recbole_ml100k,
    load_movielens,
    movielens_users,
)
from collabkit.errors import CollabkitError


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


# Tiny releases in GroupLens's layouts. Ratings are deliberately not sorted, so that a
# reader that reorders rows fails; each ends with its expected (user, item, rating,
# timestamp, title, genres) rows.
ML100K = {
    "ml-100k/u.data": "3\t20\t4\t881250949\n1\t10\t5\t874965758\n2\t10\t1\t876893171\n",
    "ml-100k/u.item": (
        f"10|Richard III (1995)|22-Jan-1996||http://us.imdb.com/M/title-exact?R3|{_flags('Drama', 'War')}\n"
        f"20|Misérables, Les (1995)|01-Jan-1995|||{_flags('Drama', 'Musical')}\n"
    ).encode("latin-1"),
    "ml-100k/u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
}
ML100K_ROWS = [
    (3, 20, 4.0, 881250949, "Misérables, Les (1995)", "Drama|Musical"),
    (1, 10, 5.0, 874965758, "Richard III (1995)", "Drama|War"),
    (2, 10, 1.0, 876893171, "Richard III (1995)", "Drama|War"),
]
ML1M = {
    "ml-1m/ratings.dat": "2::1193::5::978300760\n1::661::3::978302109\n1::1193::4::978301968\n",
    "ml-1m/movies.dat": (
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::Misérables, Les (1995)::Drama\n"
    ).encode("latin-1"),
    "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
}
ML1M_ROWS = [
    (2, 1193, 5.0, 978300760, "Misérables, Les (1995)", "Drama"),
    (1, 661, 3.0, 978302109, "James and the Giant Peach (1996)", "Animation|Children's|Musical"),
    (1, 1193, 4.0, 978301968, "Misérables, Les (1995)", "Drama"),
]
ML10M = {
    "ml-10M100K/ratings.dat": "5::122::3.5::838985046\n1::185::5::838983525\n",
    "ml-10M100K/movies.dat": "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n",
}
ML10M_ROWS = [
    (5, 122, 3.5, 838985046, "Boomerang (1992)", "Comedy|Romance"),
    (1, 185, 5.0, 838983525, "Net, The (1995)", "Action"),
]
ML_SMALL = {
    "ml-latest-small/ratings.csv": (
        "userId,movieId,rating,timestamp\n2,50,3.5,1112486027\n1,1,4.0,964982703\n1,50,0.5,964982931\n"
    ),
    "ml-latest-small/movies.csv": (
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n"
        '50,"Usual Suspects, The (1995)",Crime|Mystery|Thriller\n'
    ),
}
ML_SMALL_ROWS = [
    (2, 50, 3.5, 1112486027, "Usual Suspects, The (1995)", "Crime|Mystery|Thriller"),
    (1, 1, 4.0, 964982703, "Toy Story (1995)", "Adventure|Animation"),
    (1, 50, 0.5, 964982931, "Usual Suspects, The (1995)", "Crime|Mystery|Thriller"),
]
RELEASES = {
    "ml-100k": (ML100K, ML100K_ROWS),
    "ml-1m": (ML1M, ML1M_ROWS),
    "ml-10m": (ML10M, ML10M_ROWS),
    "ml-latest-small": (ML_SMALL, ML_SMALL_ROWS),
}


def _zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@dataclasses.dataclass
class FakeGroupLens:
    """A local HTTP server standing in for files.grouplens.org."""

    served: Path
    cache: Path
    requests: list[str]
    monkeypatch: pytest.MonkeyPatch

    def publish(self, name: str, data: bytes | None = None) -> bytes:
        """Serve a release's zip; give it that zip's sha256 unless it has no checksum."""
        data = _zip(RELEASES[name][0]) if data is None else data
        release = MOVIELENS[name]
        (self.served / release.filename).write_bytes(data)
        if release.checksum is not None:
            patched = dataclasses.replace(
                release, checksum=hashlib.sha256(data).hexdigest(), checksum_algo="sha256",
                size=len(data),
            )  # fmt: skip
            self.monkeypatch.setitem(MOVIELENS, name, patched)
        if (
            name == "ml-100k"
        ):  # this stand-in's u.data is the one to expect, as GroupLens's is for the real one
            self.monkeypatch.setattr(
                datasets, "ML100K_UDATA_SHA256", _sha256(RELEASES[name][0]["ml-100k/u.data"])
            )
        return data


@pytest.fixture
def grouplens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGroupLens]:
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("COLLABKIT_MOVIELENS_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy must not intercept the local server
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("COLLABKIT_OFFLINE", raising=False)
    # No test here may reach PyPI unless it says so.
    monkeypatch.setattr(datasets, "_pip_download", _no_pip)
    yield FakeGroupLens(served, tmp_path / "cache", requests, monkeypatch)
    server.shutdown()
    server.server_close()
    thread.join()


def _no_pip(*args: object) -> Path:
    raise AssertionError("the recbole fallback should not run in this test")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _rows(df: pd.DataFrame) -> list[tuple[object, ...]]:
    cols = ["user", "item", "rating", "timestamp", "title", "genres"]
    return list(df[cols].itertuples(index=False, name=None))


@pytest.mark.parametrize("name", list(RELEASES))
def test_download_reads_one_tidy_table_in_file_order(grouplens: FakeGroupLens, name: str) -> None:
    grouplens.publish(name)
    df = load_movielens(name, progress=False)
    assert _rows(df) == RELEASES[name][1]
    assert list(df.columns[:6]) == ["user", "item", "rating", "timestamp", "title", "genres"]
    assert df["user"].dtype == "int64" and df["item"].dtype == "int64"
    assert df["rating"].dtype == "float32" and df["timestamp"].dtype == "int64"
    assert pd.api.types.is_string_dtype(df["title"])
    assert df.attrs["source"].startswith("grouplens")
    assert df.attrs["dataset"] == name
    assert grouplens.requests == [f"/{MOVIELENS[name].filename}"]


def test_ml100k_keeps_its_extra_item_columns(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-100k")
    df = load_movielens("ml-100k", progress=False)
    assert list(df.columns[6:]) == ["release_date", "video_release_date", "imdb_url"]
    first = df.iloc[1]
    assert first["release_date"] == "22-Jan-1996"
    assert pd.isna(first["video_release_date"])
    assert first["imdb_url"] == "http://us.imdb.com/M/title-exact?R3"
    assert all(pd.api.types.is_string_dtype(df[c]) for c in df.columns[6:])


def test_second_load_uses_the_cache(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-1m")
    first = load_movielens("ml-1m", progress=False)
    folder = grouplens.cache / "ml-1m"
    assert (folder / "collabkit-ratings-v1.parquet").is_file()
    second = load_movielens("ml-1m", progress=False)
    pd.testing.assert_frame_equal(first, second)
    assert second.attrs == first.attrs
    (folder / "collabkit-ratings-v1.parquet").unlink()  # the extracted files are enough too
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS
    assert len(grouplens.requests) == 1


def test_cache_dir_argument_wins_over_the_environment(grouplens: FakeGroupLens, tmp_path: Path) -> None:
    grouplens.publish("ml-latest-small")
    load_movielens("ml-latest-small", cache_dir=tmp_path / "elsewhere", progress=False)
    assert (tmp_path / "elsewhere" / "ml-latest-small" / "ratings.csv").is_file()
    assert not grouplens.cache.exists()


def test_checksum_mismatch_raises_and_keeps_nothing(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouplens.publish("ml-100k")
    bad = dataclasses.replace(MOVIELENS["ml-100k"], checksum="0" * 64)
    monkeypatch.setitem(MOVIELENS, "ml-100k", bad)
    with pytest.raises(CollabkitError, match="does not match the published 0000.*nothing was kept"):
        load_movielens("ml-100k", progress=False)  # and no fallback: _pip_download would fail
    assert _files_under(grouplens.cache) == []


def test_release_without_checksum_still_rejects_a_broken_zip(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-latest-small", data=_zip(ML_SMALL)[:-30])
    with pytest.raises(CollabkitError, match="not a zip file"):
        load_movielens("ml-latest-small", progress=False)
    assert _files_under(grouplens.cache) == []


def test_progress_bar_goes_to_stderr(grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str]) -> None:
    grouplens.publish("ml-1m")
    assert _rows(load_movielens("ml-1m", progress=True)) == ML1M_ROWS
    assert capsys.readouterr().out == ""  # stdout stays clean for --json output


def test_zip_put_by_hand_is_verified_and_used_offline(grouplens: FakeGroupLens) -> None:
    data = grouplens.publish("ml-1m")
    grouplens.cache.mkdir()
    (grouplens.cache / "ml-1m.zip").write_bytes(data)
    assert _rows(load_movielens("ml-1m", offline=True, progress=False)) == ML1M_ROWS
    assert grouplens.requests == []


def test_wrong_zip_put_by_hand_is_reported_not_deleted(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-1m")
    grouplens.cache.mkdir()
    (grouplens.cache / "ml-1m.zip").write_bytes(b"not the zip")
    with pytest.raises(CollabkitError, match=r"ml-1m\.zip: sha256 .* delete it to download"):
        load_movielens("ml-1m", progress=False)
    assert (grouplens.cache / "ml-1m.zip").exists()
    assert grouplens.requests == []


def test_unreachable_grouplens_says_where_to_put_the_zip(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _closed_port_url()
    monkeypatch.setenv("COLLABKIT_MOVIELENS_URL", url)
    with pytest.raises(CollabkitError) as info:
        load_movielens("ml-1m", progress=False)
    message = str(info.value)
    assert f"could not reach {url}/ml-1m.zip" in message
    assert str(grouplens.cache / "ml-1m.zip") in message
    assert _files_under(grouplens.cache) == []


def test_bad_base_url_is_a_setting_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLLABKIT_MOVIELENS_URL", "127.0.0.1:8000")
    monkeypatch.setattr(datasets, "_pip_download", _no_pip)  # not an outage: no fallback
    with pytest.raises(CollabkitError, match="bad MovieLens URL '127.0.0.1:8000/ml-100k.zip'"):
        load_movielens("ml-100k", cache_dir=tmp_path, offline=False, progress=False)


def test_offline_env_never_contacts_grouplens(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouplens.publish("ml-1m")
    monkeypatch.setenv("COLLABKIT_OFFLINE", "1")
    with pytest.raises(CollabkitError, match="offline mode is on.*ml-1m.zip"):
        load_movielens("ml-1m", progress=False)
    assert grouplens.requests == []


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(CollabkitError) as info:
        load_movielens("ml-99k")
    assert str(info.value) == (
        "unknown dataset 'ml-99k'; expected one of: "
        "ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small"
    )


def test_cache_dir_honours_collabkit_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path / "ck"))
    assert cache_dir() == tmp_path / "ck"
    monkeypatch.delenv("COLLABKIT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "collabkit"


def test_user_tables(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-100k")
    grouplens.publish("ml-1m")
    users = movielens_users("ml-100k", progress=False)
    assert list(users.itertuples(index=False, name=None))[0] == (1, 24, "M", "technician", "85711")
    users = movielens_users("ml-1m", progress=False)
    assert list(users.columns) == ["user", "age", "gender", "occupation", "zip_code"]
    assert list(users.itertuples(index=False, name=None)) == [
        (1, 1, "F", 10, "48067"),
        (2, 56, "M", 16, "70072"),
    ]
    with pytest.raises(CollabkitError, match="ml-20m has no user table"):
        movielens_users("ml-20m")


# --- the offline route: ML-100k from the recbole wheel ----------------------------------

RECBOLE = "recbole/dataset_example/ml-100k/ml-100k."
RECBOLE_FILES = {
    RECBOLE + "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t1412\t3\t881250949\n22\t267\t1\t878887116\n196\t1\t5\t881251000\n",
    RECBOLE + "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "543\tMisérables, Les\t1995\tDrama Musical\n"
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n",
    RECBOLE + "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "22\t25\tM\twriter\t40206\n196\t49\tM\twriter\t55105\n",
}
RECBOLE_UDATA = "196\t1412\t3\t881250949\n22\t267\t1\t878887116\n196\t1\t5\t881251000\n"


def _fake_wheel(path: Path) -> Path:
    path.write_bytes(_zip(RECBOLE_FILES))
    return path


def test_recbole_conversion_writes_grouplens_files(tmp_path: Path) -> None:
    out = convert_recbole_ml100k(_fake_wheel(tmp_path / "recbole.whl"), tmp_path / "out")
    assert (out / "u.data").read_text() == RECBOLE_UDATA
    assert (out / "u.item").read_text(encoding="latin-1").splitlines() == [
        "1|Toy Story (1995)||||" + _flags("Animation", "Children's", "Comedy"),
        f"267|unknown||||{_flags('unknown')}",
        f"543|Misérables, Les (1995)||||{_flags('Drama', 'Musical')}",
        "1412|Land Before Time III: The Time of the Great Giving (1995) (V)||||"
        + _flags("Animation", "Children's"),
    ]
    assert (out / "u.item").read_bytes().count("é".encode("latin-1")) == 1  # latin-1, as GroupLens
    assert (out / "u.user").read_text() == "22|25|M|writer|40206\n196|49|M|writer|55105\n"


def test_ml100k_falls_back_to_recbole_when_grouplens_is_down(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wheel = _fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    monkeypatch.setattr(datasets, "_pip_download", lambda *args: wheel)
    monkeypatch.setattr(datasets, "ML100K_UDATA_SHA256", hashlib.sha256(RECBOLE_UDATA.encode()).hexdigest())
    monkeypatch.setenv("COLLABKIT_MOVIELENS_URL", _closed_port_url())
    df = load_movielens("ml-100k", progress=False)
    assert df.attrs["source"] == datasets.RECBOLE_SOURCE
    assert _rows(df) == [
        (196, 1412, 3.0, 881250949, "Land Before Time III: The Time of the Great Giving (1995) (V)",
         "Animation|Children's"),
        (22, 267, 1.0, 878887116, "unknown", "unknown"),
        (196, 1, 5.0, 881251000, "Toy Story (1995)", "Animation|Children's|Comedy"),
    ]  # fmt: skip
    assert df["release_date"].isna().all() and df["imdb_url"].isna().all()
    assert movielens_users("ml-100k")["user"].tolist() == [22, 196]


def test_recbole_copy_must_match_grouplens_u_data(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wheel = _fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    monkeypatch.setattr(datasets, "_pip_download", lambda *args: wheel)
    with pytest.raises(CollabkitError, match="u.data sha256 .* not GroupLens's 06416e59"):
        load_movielens("ml-100k", offline=True, progress=False)
    assert _files_under(grouplens.cache) == []
    assert grouplens.requests == []


@pytest.mark.slow
def test_real_ml100k_from_the_recbole_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip-downloads recbole 1.2.1 (~2 MB from PyPI) and checks it is GroupLens's ML-100k."""
    monkeypatch.setenv("COLLABKIT_OFFLINE", "1")
    monkeypatch.setenv("COLLABKIT_HOME", str(tmp_path))
    df = load_movielens("ml-100k", progress=False)
    u_data = (tmp_path / "ml-100k" / "u.data").read_bytes()
    assert hashlib.sha256(u_data).hexdigest() == datasets.ML100K_UDATA_SHA256
    assert len(df) == 100_000
    assert df["user"].nunique() == 943
    assert df["item"].nunique() == 1682
    assert df["title"].nunique() == 1664
    assert df.loc[df["item"] == 50, "title"].iloc[0] == "Star Wars (1977)"
    assert df.attrs["source"] == datasets.RECBOLE_SOURCE
    assert tuple(df.iloc[0][["user", "item", "rating", "timestamp"]]) == (196, 242, 3.0, 881250949)


# --- a damaged cache is found on use, reported in one line and rebuilt --------------------------


def _damage_message(err: str, what: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "is damaged" in lines[0] and what in lines[0] and "rebuilding" in lines[0], err


@pytest.mark.parametrize("parquet", [True, False], ids=["with parquet", "without parquet"])
def test_truncated_u_data_is_rebuilt_from_the_kept_zip(
    grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str], parquet: bool
) -> None:
    grouplens.publish("ml-100k")
    load_movielens("ml-100k", progress=False)
    folder = grouplens.cache / "ml-100k"
    if not parquet:
        (folder / "collabkit-ratings-v1.parquet").unlink()
    u_data = folder / "u.data"
    u_data.write_bytes(u_data.read_bytes()[:-20])  # a torn write: the last row and a half gone
    capsys.readouterr()
    df = load_movielens("ml-100k", progress=False)
    assert _rows(df) == ML100K_ROWS  # all three rows, not the two left in the damaged file
    _damage_message(capsys.readouterr().err, "u.data")
    assert grouplens.requests == ["/ml-100k.zip"]  # rebuilt from the kept zip, not downloaded again
    assert load_movielens("ml-100k", progress=False).shape == df.shape
    assert capsys.readouterr().err == ""  # and the rebuilt folder passes quietly


@pytest.mark.parametrize("damage", ["truncated", "same size, new bytes", "manifest garbled"])
def test_damaged_ratings_file_fails_its_manifest(
    grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    grouplens.publish("ml-1m")
    load_movielens("ml-1m", progress=False)
    folder = grouplens.cache / "ml-1m"
    manifest = json.loads((folder / "collabkit-manifest.json").read_text())
    assert manifest["ratings"]["rows"] == 3 and manifest["ratings"]["size"] == len(ML1M["ml-1m/ratings.dat"])
    (folder / "collabkit-ratings-v1.parquet").unlink()
    ratings = folder / "ratings.dat"
    text = ratings.read_text()
    if damage == "truncated":
        ratings.write_text(text[: len(text) // 2])
    elif damage == "same size, new bytes":
        ratings.write_text(text.replace("::5::", "::1::"))
    else:
        (folder / "collabkit-manifest.json").write_text("{not json")
    capsys.readouterr()
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS
    _damage_message(capsys.readouterr().err, "ml-1m")
    assert len(grouplens.requests) == 1


def test_damaged_release_without_its_zip_is_downloaded_again(
    grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str]
) -> None:
    grouplens.publish("ml-latest-small")
    load_movielens("ml-latest-small", progress=False)
    (grouplens.cache / "ml-latest-small.zip").unlink()
    ratings = grouplens.cache / "ml-latest-small" / "ratings.csv"
    ratings.write_text(ratings.read_text()[:40])
    capsys.readouterr()
    assert _rows(load_movielens("ml-latest-small", progress=False)) == ML_SMALL_ROWS
    _damage_message(capsys.readouterr().err, "ratings.csv")
    assert len(grouplens.requests) == 2


def test_damaged_offline_copy_is_rebuilt_by_the_offline_route(
    grouplens: FakeGroupLens,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wheel = _fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    fetched: list[object] = []
    monkeypatch.setattr(datasets, "_pip_download", lambda *args: fetched.append(args) or wheel)
    monkeypatch.setattr(datasets, "ML100K_UDATA_SHA256", _sha256(RECBOLE_UDATA))
    load_movielens("ml-100k", offline=True, progress=False)
    u_data = grouplens.cache / "ml-100k" / "u.data"
    u_data.write_text(RECBOLE_UDATA.splitlines()[0] + "\n")
    capsys.readouterr()
    assert len(load_movielens("ml-100k", offline=True, progress=False)) == 3
    _damage_message(capsys.readouterr().err, "u.data")
    assert len(fetched) == 2 and grouplens.requests == []


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "rows record"])
def test_damaged_parquet_copy_is_rebuilt_from_the_ratings_file(
    grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    grouplens.publish("ml-1m")
    first = load_movielens("ml-1m", progress=False)
    parquet = grouplens.cache / "ml-1m" / "collabkit-ratings-v1.parquet"
    blob = bytearray(parquet.read_bytes())
    if damage == "truncated":
        parquet.write_bytes(bytes(blob[:-100]))
    elif damage == "bit flip":
        blob[len(blob) // 4] ^= 0x10
        parquet.write_bytes(bytes(blob))
    else:
        record = parquet.with_name(parquet.name + ".manifest.json")
        doc = json.loads(record.read_text())
        record.write_text(json.dumps({**doc, "rows": 2}))
    capsys.readouterr()
    pd.testing.assert_frame_equal(load_movielens("ml-1m", progress=False), first)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the cached table {parquet} is damaged" in err
    pd.testing.assert_frame_equal(load_movielens("ml-1m", progress=False), first)
    assert capsys.readouterr().err == ""


def test_folder_from_an_older_collabkit_is_checked_against_the_zip(
    grouplens: FakeGroupLens, capsys: pytest.CaptureFixture[str]
) -> None:
    grouplens.publish("ml-1m")
    load_movielens("ml-1m", progress=False)
    folder = grouplens.cache / "ml-1m"
    (folder / "collabkit-manifest.json").unlink()  # as an older collabkit left it
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS
    assert (folder / "collabkit-manifest.json").is_file() and capsys.readouterr().err == ""
    (folder / "collabkit-manifest.json").unlink()
    (folder / "collabkit-ratings-v1.parquet").unlink()
    (folder / "ratings.dat").write_text("2::1193::5::978300760\n")
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS
    _damage_message(capsys.readouterr().err, "where the zip holds")


def test_damaged_folder_collabkit_did_not_fill_is_left_alone(grouplens: FakeGroupLens) -> None:
    grouplens.publish("ml-100k")
    folder = grouplens.cache / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t2\t3\t4\n")
    (folder / "u.item").write_text("2|x||||" + _flags("Drama") + "\n")
    with pytest.raises(CollabkitError, match="collabkit did not fill this folder, so it is left alone"):
        load_movielens("ml-100k", progress=False)
    assert (folder / "u.data").read_text() == "1\t2\t3\t4\n" and grouplens.requests == []


def _read_only(monkeypatch: pytest.MonkeyPatch, root: Path, code: int = errno.EROFS) -> None:
    """Refuse every new file or folder under `root`, as a read-only (or full) file system does.

    chmod cannot stop root, which these tests may run as, so the refusal is patched in.
    """
    import os
    import tempfile

    def inside(path: object) -> bool:
        return path is not None and Path(str(path)).resolve().is_relative_to(root.resolve())

    def refuse(path: object) -> OSError:
        return OSError(code, os.strerror(code), str(path))

    real_mkdir, real_mkstemp, real_mkdtemp = os.mkdir, tempfile.mkstemp, tempfile.mkdtemp

    def mkdir(path: object, *args: object, **kwargs: object) -> None:
        if inside(path):
            raise refuse(path)
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    def mkstemp(
        suffix: object = None, prefix: object = None, dir: object = None, text: bool = False
    ) -> object:
        if inside(dir):
            raise refuse(dir)
        return real_mkstemp(suffix, prefix, dir, text)  # type: ignore[call-overload]

    def mkdtemp(suffix: object = None, prefix: object = None, dir: object = None) -> object:
        if inside(dir):
            raise refuse(dir)
        return real_mkdtemp(suffix, prefix, dir)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC], ids=["read-only", "full"])
def test_unwritable_cache_only_costs_speed(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    grouplens.publish("ml-1m")
    grouplens.cache.mkdir()
    _read_only(monkeypatch, grouplens.cache, code)
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS  # nothing cached: a temporary folder
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "warning: cannot write the cache folder" in err[0] and "nothing is kept" in err[0]
    )
    assert _files_under(grouplens.cache) == []


def test_cached_release_in_an_unwritable_folder_is_read_without_its_parquet(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grouplens.publish("ml-1m")
    load_movielens("ml-1m", progress=False)
    (grouplens.cache / "ml-1m" / "collabkit-ratings-v1.parquet").unlink()
    _read_only(monkeypatch, grouplens.cache)
    capsys.readouterr()
    assert _rows(load_movielens("ml-1m", progress=False)) == ML1M_ROWS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning: cannot cache the table" in err[0]


def test_user_table_from_an_unwritable_cache(
    grouplens: FakeGroupLens, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grouplens.publish("ml-1m")
    grouplens.cache.mkdir()
    _read_only(monkeypatch, grouplens.cache)
    assert movielens_users("ml-1m", progress=False)["user"].tolist() == [1, 2]
    assert "warning: cannot write the cache folder" in capsys.readouterr().err


def test_movielens_path_is_the_verified_release_folder(grouplens: FakeGroupLens) -> None:
    """collabkit's `untar_data(URLs.ML_100k)`: the folder of the release's files, downloaded once."""
    from collabkit.data.datasets import movielens_path

    grouplens.publish("ml-100k")
    folder = movielens_path("ml-100k", progress=False)
    assert folder == grouplens.cache / "ml-100k"
    files = RELEASES["ml-100k"][0]
    assert isinstance(files, dict) and (folder / "u.data").read_text() == files["ml-100k/u.data"]
    assert movielens_path("ml-100k", progress=False) == folder
    assert grouplens.requests == ["/ml-100k.zip"]
    with pytest.raises(CollabkitError, match="unknown dataset 'ml-7'"):
        movielens_path("ml-7")
